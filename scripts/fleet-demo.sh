#!/usr/bin/env bash
# Fleet mode end to end: a 3-member etcd and Pebble on loopback, three hosts running the real
# agent, one renewal; every host ends up serving the same new certificate, with one order.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
cargo build --quiet --release --bin evercert --example fleet_demo
exec target/release/examples/fleet_demo
