#!/usr/bin/env bash
# The benchmarks of docs/benchmarks.md: evercert's check/status over 10,000 files, issuance
# against a local Pebble, and lego, certbot and uacme side by side in the same run.
# Installs what is missing (root or sudo needed for that), builds release, and prints a
# markdown report (also saved to target/bench/report.md). Takes about 5 minutes.
# Flags go to the bench: --runs N --peer-runs N --files N --peers lego,certbot,uacme|none
#   --skip-inventory --skip-issuance
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

bash scripts/ensure-deps.sh

# Tools the bench needs (python3 reads wait4(2) figures; unshare runs uacme with Pebble's root).
missing=()
command -v python3 >/dev/null 2>&1 || missing+=(python3)
command -v hyperfine >/dev/null 2>&1 || missing+=(hyperfine)
command -v unshare >/dev/null 2>&1 || missing+=(util-linux)
# The peers, each skipped with a note if its package does not exist here.
for peer in lego certbot uacme; do
  command -v "$peer" >/dev/null 2>&1 || missing+=("$peer")
done
if [ "${#missing[@]}" -gt 0 ]; then
  $SUDO apt-get update -qq || true
  for package in "${missing[@]}"; do
    if apt-cache show "$package" >/dev/null 2>&1; then
      echo "installing $package ..." >&2
      $SUDO apt-get install -y -qq "$package" >/dev/null
    else
      echo "note: no package '$package' here; the bench skips it" >&2
    fi
  done
fi

cargo build --quiet --release --bin evercert --example bench

# A quiet machine matters: wait (at most ~15 minutes) while the 1-minute load is above 1.5.
for _ in $(seq 1 30); do
  load=$(cut -d' ' -f1 /proc/loadavg)
  if awk -v load="$load" 'BEGIN { exit !(load <= 1.5) }'; then break; fi
  echo "load average $load > 1.5: waiting 30 s for a quieter machine ..." >&2
  sleep 30
done

mkdir -p target/bench
target/release/examples/bench "$@" | tee target/bench/report.md
echo "report saved to target/bench/report.md" >&2
