#!/usr/bin/env bash
# Install what the evidence agent needs on a fresh Debian machine, then a virtualenv in .venv.
#   scripts/setup.sh          runtime: ffmpeg and the agent
#   scripts/setup.sh --dev    also the test services and tools (PostgreSQL, umockdev, SeaweedFS,
#                             Chromium for the pages' browser tests, linters)
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
[ "${1:-}" = "--dev" ] && dev=1

# fonts-dejavu-core and fonts-droid-fallback: the disclosure receipt's PDF fonts (Latin and
# other alphabets; Chinese, Japanese and Korean).
packages=(ffmpeg python3-venv openssl util-linux fonts-dejavu-core fonts-droid-fallback)
# faketime: end-to-end tests move the clock of a command ahead (retention) without editing dates.
# poppler-utils: tests render the disclosure receipt's PDF (pdftoppm) and read its text.
[ "$dev" = 1 ] && packages+=(postgresql umockdev gir1.2-umockdev-1.0 systemd sqlite3 chromium faketime poppler-utils)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
# pip runs only when what it installs changed: a station restarts offline (docking workstations
# are usually on isolated networks), and the agent itself is installed editable, so a change of
# code needs no reinstall. The stamp is the hash of what decides the install.
extras=""
[ "$dev" = 1 ] && extras="[dev]"
stamp=.venv/.evidence-agent-setup
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
have="$(cat "$stamp" 2>/dev/null || true)"
# A development install serves the runtime too.
if [ ! -x .venv/bin/evidence-agent ] || { [ "$have" != "$want $extras" ] && [ "$have" != "$want [dev]" ]; }; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".$extras"
    echo "$want $extras" > "$stamp"
fi
