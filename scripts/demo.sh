#!/usr/bin/env bash
# The main job: renew an expiring certificate against a local Pebble CA, end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
cargo build --quiet --release --bin evercert --example demo
exec cargo run --quiet --release --example demo
