#!/usr/bin/env bash
# Set up and run the docking daemon on the embedded default: SQLite catalog, local object store,
# the dock folder and USB watched. Data goes to $EVIDENCE_AGENT_DATA_DIR (default /var/lib/evidence-agent).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/evidence-agent run "$@"
