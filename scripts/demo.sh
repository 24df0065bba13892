#!/usr/bin/env bash
# The main job: renew an expiring certificate against a local Pebble CA, end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
# EVERCERT_DEMO_PROFILE=dev runs the same demo on the unoptimised build: CI sets it, because
# it has just built that profile for the tests and a release build of every dependency would
# cost it minutes.
profile="${EVERCERT_DEMO_PROFILE:-release}"
cargo build --quiet --profile "$profile" --bin evercert --example demo
exec cargo run --quiet --profile "$profile" --example demo
