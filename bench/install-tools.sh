#!/usr/bin/env bash
# Tools the benchmarks use, from Debian's packages, installed only when missing:
# wrk (HTTP load), redis-benchmark (raw Redis ceiling), and chromium with its driver
# (click-to-result, via scripts/install-browser.sh). Without them `python -m bench`
# still runs: a Python load generator replaces wrk, the other rows say "not measured".
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v redis-benchmark >/dev/null || missing+=(redis-tools)
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing ${missing[*]} (benchmarks)..."
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
bash scripts/install-browser.sh
