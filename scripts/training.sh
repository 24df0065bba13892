#!/usr/bin/env bash
# The hands-on exercise of docs/training.md: starts a local Pebble CA, a stand-in web server
# and a certificate to look after, prints the configuration path and what to export, and
# keeps running until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
cargo build --quiet --release --bin evercert --example training
exec target/release/examples/training
