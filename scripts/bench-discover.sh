#!/usr/bin/env bash
# The `discover` figure of docs/benchmarks.md: nginx with N virtual hosts (default 1000) in
# include files (10 server blocks per file, each with its own certificate file), checked
# by `nginx -t` first, then `evercert discover` timed RUNS times (wall clock and peak RSS
# from /usr/bin/time). Usage: scripts/bench-discover.sh [N] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
hosts="${1:-1000}"
runs="${2:-10}"
bash scripts/ensure-deps.sh
cargo build --release --quiet --bin evercert
bin="$PWD/target/release/evercert"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/nginx/sites" "$work/tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 60 \
  -subj /CN=bench.example.com -keyout "$work/tls/key.pem" -out "$work/tls/cert.pem" 2>/dev/null
cat > "$work/nginx/nginx.conf" <<CONF
pid $work/nginx.pid;
error_log $work/error.log;
events {}
http {
    access_log off;
    include sites/*.conf;
}
CONF
for ((i = 0; i < hosts; i++)); do
  cp "$work/tls/cert.pem" "$work/tls/site$i.pem"
  file="$work/nginx/sites/$((i / 10)).conf"
  cat >> "$file" <<CONF
server {
    listen 127.0.0.1:8443 ssl;
    server_name site$i.example.com www.site$i.example.com;
    ssl_certificate $work/tls/site$i.pem;
    ssl_certificate_key $work/tls/key.pem;
}
CONF
done
nginx -t -q -p "$work/nginx" -c "$work/nginx/nginx.conf"
found="$("$bin" discover --json --nginx "$work/nginx/nginx.conf" | grep -c '"server": "nginx"')"
[ "$found" = "$hosts" ] || { echo "discover found $found of $hosts certificates" >&2; exit 1; }
for ((r = 0; r < runs; r++)); do
  /usr/bin/time -f "%e %M" -o "$work/time.$r" "$bin" discover --nginx "$work/nginx/nginx.conf" >/dev/null
done
cat "$work"/time.* | sort -n | awk -v hosts="$hosts" -v runs="$runs" '
  { wall[NR] = $1; if ($2 > rss) rss = $2 }
  END { printf "discover, %d nginx virtual hosts in %d include files: wall median %.3f s (min %.3f, max %.3f) over %d runs, peak RSS %.1f MiB\n",
        hosts, (hosts + 9) / 10, wall[int((NR + 1) / 2)], wall[1], wall[NR], runs, rss / 1024 }'
