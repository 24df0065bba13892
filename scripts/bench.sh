#!/usr/bin/env bash
# The benchmarks of docs/benchmarks.md: evercert's check/status over 10,000 files, issuance
# against a local Pebble, and lego, certbot and uacme side by side in the same run.
# Installs what is missing (root or sudo needed for that), builds release, and prints a
# markdown report (also saved to target/bench/report.md). Takes about 5 minutes.
# Flags go to the bench: --runs N --peer-runs N --files N --peers lego,certbot,uacme|none
#   --skip-inventory --skip-issuance
# The fleet section (issue 11, examples/bench_fleet.rs: three hosts x N due certificates
# through a 3-member etcd) runs after it: --fleet-certs N (default 100), --skip-fleet,
# --fleet-only.
# The dns-01 section (issue 12, examples/bench_dns01.rs: order to issued against a real BIND,
# the propagation check next to a fixed wait, one name and a wildcard pair) runs last:
# --dns-runs N (default 7), --dns-wait SECS (the fixed wait compared, default 10), --skip-dns.
set -euo pipefail
cd "$(dirname "$0")/.."

fleet_certs=100
dns_runs=7
dns_wait=10
run_bench=1
bench_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --fleet-certs) fleet_certs="$2"; shift 2 ;;
    --skip-fleet) fleet_certs=0; shift ;;
    --fleet-only) run_bench=0; shift ;;
    --dns-runs) dns_runs="$2"; shift 2 ;;
    --dns-wait) dns_wait="$2"; shift 2 ;;
    --skip-dns) dns_runs=0; shift ;;
    *) bench_args+=("$1"); shift ;;
  esac
done

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

cargo build --quiet --release --bin evercert --example bench --example bench_fleet \
  --example bench_dns01

# A quiet machine matters: wait (at most ~15 minutes) while the 1-minute load is above 1.5.
for _ in $(seq 1 30); do
  load=$(cut -d' ' -f1 /proc/loadavg)
  if awk -v load="$load" 'BEGIN { exit !(load <= 1.5) }'; then break; fi
  echo "load average $load > 1.5: waiting 30 s for a quieter machine ..." >&2
  sleep 30
done

mkdir -p target/bench
: > target/bench/report.md
if [ "$run_bench" = 1 ]; then
  target/release/examples/bench "${bench_args[@]}" | tee -a target/bench/report.md
fi
if [ "$fleet_certs" != 0 ]; then
  # A 3-member etcd, Pebble, three agents: fails (exit 1) on any order more or less than N.
  target/release/examples/bench_fleet "$fleet_certs" | tee -a target/bench/report.md
fi
if [ "$dns_runs" != 0 ]; then
  # BIND (bind9, from ensure-deps.sh) and Pebble resolving through it; fails on any failed order.
  target/release/examples/bench_dns01 "$dns_runs" "$dns_wait" | tee -a target/bench/report.md
fi
echo "report saved to target/bench/report.md" >&2
