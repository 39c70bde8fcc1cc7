#!/usr/bin/env bash
# System packages the tests need (Debian): chromium for the Locust web-UI test.
# Idempotent; installs only what is missing, and only as root (otherwise says what to install).
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install_system_deps: not root; please install: ${need[*]} (the web-UI test is skipped without chromium)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "install_system_deps: installed ${need[*]}"
