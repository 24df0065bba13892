#!/usr/bin/env bash
# Fleet mode end to end: a 3-member etcd and Pebble on loopback, three hosts running the real
# agent, one renewal; every host ends up serving the same new certificate, with one order.
# EVERCERT_DEMO_PROFILE=dev runs it on the unoptimised build (as scripts/demo.sh does): no
# release build of every dependency, for runs in a loop or beside the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
profile="${EVERCERT_DEMO_PROFILE:-release}"
cargo build --quiet --profile "$profile" --bin evercert --example fleet_demo
exec cargo run --quiet --profile "$profile" --example fleet_demo
