#!/usr/bin/env bash
# Installs what the tests and the demo need from Debian when it is missing: Pebble (the ACME
# test CA, started on loopback by the tests), systemd-analyze (checks the hardening of
# the shipped units), nginx-light (a real web server for the verification tests, started
# by the tests on loopback with their own configuration), and nginx's stream module, Apache
# and HAProxy, whose own configuration checks validate the configurations `evercert discover`
# reads in the tests; etcd (a real cluster for the fleet tests) and protoc with the protobuf
# well-known types (etcd-client's build needs both); BIND 9 and its dig/nsupdate (the authoritative DNS of the dns-01 tests);
# Prometheus' promtool (checks the alerting rules in docs/monitoring.md); Chromium (renders
# the /status page in the tests); debootstrap and systemd-nspawn (a real systemd in a
# container for the service test), dpkg-dev and binutils (scripts/build-deb.sh). Needs root
# or sudo only when something is missing.
set -euo pipefail
missing=()
command -v pebble >/dev/null 2>&1 && command -v pebble-challtestsrv >/dev/null 2>&1 || missing+=(pebble)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
[ -x /usr/sbin/nginx ] || missing+=(nginx-light)
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || missing+=(libnginx-mod-stream)
[ -x /usr/sbin/apache2 ] || missing+=(apache2)
[ -x /usr/sbin/haproxy ] || missing+=(haproxy)
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
# etcd-client's protos import google/protobuf/descriptor.proto and struct.proto: protoc finds
# them in /usr/include only with libprotobuf-dev ("google/protobuf/descriptor.proto: File not found").
[ -e /usr/include/google/protobuf/descriptor.proto ] || missing+=(libprotobuf-dev)
[ -x /usr/sbin/named ] || missing+=(bind9)
command -v nsupdate >/dev/null 2>&1 || missing+=(bind9-dnsutils)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v systemd-nspawn >/dev/null 2>&1 || missing+=(systemd-container)
# scripts/build-deb.sh (the .deb of the systemd end-to-end test): Depends from the binary, strip.
command -v dpkg-shlibdeps >/dev/null 2>&1 || missing+=(dpkg-dev)
command -v strip >/dev/null 2>&1 || missing+=(binutils)
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing ${missing[*]} (Debian packages) ..." >&2
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
