#!/usr/bin/env bash
# Debian's Chromium and ChromeDriver for the status page's browser tests
# (tests/test_status_page.py), installed when missing (as root).
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "scripts/browser.sh: chromium and chromium-driver are needed (as root: apt-get install chromium chromium-driver)" >&2
    exit 1
fi
apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    chromium chromium-driver fonts-dejavu-core >/dev/null
command -v chromium >/dev/null && command -v chromedriver >/dev/null
