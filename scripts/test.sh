#!/usr/bin/env bash
# Set up and run every check: lint, types, the import contracts, the test suite against the real
# services (ffmpeg, SeaweedFS, PostgreSQL started by the tests) and the USB hot-plug tests under
# umockdev.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --dev

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/lint-imports  # the layers: contracts in pyproject.toml [tool.importlinter]

# The USB tests run in their own process: umockdev's preload library mocks /sys for every
# child process while a testbed exists.
.venv/bin/pytest -m "not usb" "$@"
umockdev-wrapper .venv/bin/pytest -m usb tests/integration/usb "$@"
