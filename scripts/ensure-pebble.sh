#!/usr/bin/env bash
# Installs Debian's Pebble ACME test CA when it is missing (the tests and the demo start it
# on loopback). Needs root or sudo; does nothing when pebble is already installed.
set -euo pipefail
if command -v pebble >/dev/null 2>&1 && command -v pebble-challtestsrv >/dev/null 2>&1; then
  exit 0
fi
echo "installing pebble (Debian package) ..." >&2
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq pebble >/dev/null
