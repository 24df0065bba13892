#!/usr/bin/env bash
# The whole test suite: unit tests and the integration tests that drive the built binary
# against a real Pebble CA on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
cargo test --locked "$@"
