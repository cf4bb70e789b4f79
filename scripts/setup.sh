#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian 12 machine (run as root): Mesa lavapipe from
# bookworm-backports (SAPIEN needs VK_KHR_external_semaphore_fd, which Debian 12's own
# Mesa lacks), headless Chromium (report test), a venv in .venv, and the package with its
# test extras. A second run only checks stamps and finishes in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
VENV="$ROOT/.venv"
LVP_ICD=/usr/share/vulkan/icd.d/lvp_icd.json

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# 1. Vulkan software renderer (lavapipe) from bookworm-backports.
if [ ! -f "$LVP_ICD" ] || ! dpkg -s libvulkan1 >/dev/null 2>&1; then
    echo "[setup] installing Mesa lavapipe from bookworm-backports"
    if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
        echo "deb http://deb.debian.org/debian bookworm-backports main" \
            | as_root tee /etc/apt/sources.list.d/bookworm-backports.list >/dev/null
    fi
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq -t bookworm-backports \
        mesa-vulkan-drivers libvulkan1
fi

# 2. Headless Chromium: the report test renders index.html and checks that every figure loads.
if ! command -v chromium >/dev/null 2>&1; then
    echo "[setup] installing chromium (headless check of the HTML report)"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium
fi

# 3. Python environment.
if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating $VENV"
    python3 -m venv "$VENV"
fi
STAMP="$VENV/.roboscape-setup-stamp"
WANT="$(cat constraints.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    echo "[setup] installing Python packages (pinned in constraints.txt)"
    "$VENV/bin/pip" install -q --upgrade pip
    # torch first, alone, so the CPU wheel is chosen before anything can ask for another.
    "$VENV/bin/pip" install -q -c constraints.txt torch==2.13.0
    "$VENV/bin/pip" install -q -c constraints.txt -e ".[test]"
    echo "$WANT" > "$STAMP"
fi
echo "[setup] ready: $VENV (VK_ICD_FILENAMES=$LVP_ICD)"
