#!/usr/bin/env bash
# Headless Chromium and its driver for the Dash browser tests, from Debian's packages,
# installed only when missing. Needs root or sudo the first time.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing chromium and chromium-driver (Dash browser tests)..."
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
