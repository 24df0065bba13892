#!/usr/bin/env bash
# Builds evercert's .deb with dpkg-deb from the packaging that `cargo deb` would use:
# [package.metadata.deb] in Cargo.toml (assets, conffiles, maintainer scripts in debian/,
# descriptions) is read here, so the two cannot drift apart. For machines without cargo-deb
# (CI, the end-to-end test under a real systemd: tests/it/systemd_e2e.rs).
#
#   scripts/build-deb.sh [--binary FILE] [--out DIR] [--fast]
#
#   --binary FILE  the evercert binary to package (default target/release/evercert; the
#                  end-to-end test packages its debug build). It is stripped, like cargo-deb does.
#   --out DIR      where the .deb goes (default target/debian)
#   --fast         gzip -1 instead of xz (seconds instead of a minute; for tests)
#
# Prints the path of the .deb on its last line of standard output. Needs dpkg-deb,
# dpkg-shlibdeps (Debian dpkg-dev) and strip (binutils); scripts/ensure-deps.sh installs them.
set -euo pipefail
cd "$(dirname "$0")/.."

binary=target/release/evercert
out=target/debian
compress=(-Zxz)
while [ $# -gt 0 ]; do
    case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --fast) compress=(-Zgzip -z1); shift ;;
    *) echo "build-deb.sh: unknown argument $1 (see the top of scripts/build-deb.sh)" >&2; exit 2 ;;
    esac
done
for tool in dpkg-deb dpkg-shlibdeps strip; do
    command -v "$tool" >/dev/null || { echo "build-deb.sh: $tool is missing: run scripts/ensure-deps.sh" >&2; exit 1; }
done
[ -x "$binary" ] || { echo "build-deb.sh: no executable $binary: build it first (cargo build --release --locked)" >&2; exit 1; }

# The [package] and [package.metadata.deb] values this script needs, read with a small state
# machine over Cargo.toml (the file is ours and keeps one key per line).
section=""
in_assets=0; in_extended=0
version=""; description=""; maintainer=""; deb_section=""; priority=""; extended=""
license=""; copyright=""
assets=(); conffiles=()
while IFS= read -r line; do
    if [ $in_extended = 1 ]; then
        if [[ "$line" == *'"""' ]]; then in_extended=0; line="${line%'"""'}"; fi
        extended+="${line%\\}"
        continue
    fi
    if [ $in_assets = 1 ]; then
        if [[ "$line" =~ ^\]$ ]]; then in_assets=0; continue; fi
        if [[ "$line" =~ ^[[:space:]]*\[\"([^\"]+)\",[[:space:]]*\"([^\"]+)\",[[:space:]]*\"([0-7]+)\"\] ]]; then
            assets+=("${BASH_REMATCH[1]}|${BASH_REMATCH[2]}|${BASH_REMATCH[3]}")
        else
            echo "build-deb.sh: cannot read this asset line of Cargo.toml: $line" >&2; exit 1
        fi
        continue
    fi
    if [[ "$line" =~ ^\[(.*)\]$ ]]; then section="${BASH_REMATCH[1]}"; continue; fi
    if [[ "$line" =~ ^([a-z-]+)[[:space:]]*=[[:space:]]*(.*)$ ]]; then
        key="${BASH_REMATCH[1]}"; value="${BASH_REMATCH[2]}"
        unquoted="${value#\"}"; unquoted="${unquoted%\"}"
        case "$section:$key" in
        package:version) version="$unquoted" ;;
        package:description) description="$unquoted" ;;
        package:license) license="$unquoted" ;;
        package.metadata.deb:copyright) copyright="$unquoted" ;;
        package.metadata.deb:maintainer) maintainer="$unquoted" ;;
        package.metadata.deb:section) deb_section="$unquoted" ;;
        package.metadata.deb:priority) priority="$unquoted" ;;
        package.metadata.deb:extended-description) in_extended=1 ;;
        package.metadata.deb:assets) in_assets=1 ;;
        package.metadata.deb:conf-files)
            while [[ "$value" =~ \"([^\"]+)\"(.*) ]]; do
                conffiles+=("${BASH_REMATCH[1]}"); value="${BASH_REMATCH[2]}"
            done ;;
        esac
    fi
done < Cargo.toml
for name in version description maintainer extended license copyright; do
    [ -n "${!name}" ] || { echo "build-deb.sh: no $name found in Cargo.toml" >&2; exit 1; }
done
[ ${#assets[@]} -gt 0 ] || { echo "build-deb.sh: no assets found in Cargo.toml" >&2; exit 1; }

arch="$(dpkg --print-architecture)"
work="$(mktemp -d "${TMPDIR:-/tmp}/evercert-deb.XXXXXX")"
trap 'rm -rf "$work"' EXIT
root="$work/root"
install -d -m 0755 "$root/DEBIAN"

# Assets, as cargo-deb places them: a destination ending in / is a directory that keeps the
# source's file name; target/release/evercert is the binary given here.
for asset in "${assets[@]}"; do
    IFS='|' read -r source dest mode <<<"$asset"
    [ "$source" = target/release/evercert ] && source="$binary"
    # shellcheck disable=SC2206 # the glob in docs/*.md must expand
    sources=($source)
    for file in "${sources[@]}"; do
        [ -f "$file" ] || { echo "build-deb.sh: asset $file (Cargo.toml) does not exist" >&2; exit 1; }
        if [[ "$dest" == */ ]]; then target="$root/$dest$(basename "$file")"; else target="$root/$dest"; fi
        install -D -m "$mode" "$file" "$target"
    done
done
strip "$root/usr/bin/evercert"
# Debian policy 12.5: every package carries its copyright file (cargo-deb writes the same).
printf 'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: evercert\n\nFiles: *\nCopyright: %s\nLicense: %s\n' \
    "$copyright" "$license" | install -D -m 0644 /dev/stdin "$root/usr/share/doc/evercert/copyright"

for script in postinst prerm postrm preinst; do
    [ -f "debian/$script" ] && install -m 0755 "debian/$script" "$root/DEBIAN/$script"
done
: >"$root/DEBIAN/conffiles"
for conffile in "${conffiles[@]}"; do
    [ -f "$root$conffile" ] || { echo "build-deb.sh: conffile $conffile is not among the assets" >&2; exit 1; }
    echo "$conffile" >>"$root/DEBIAN/conffiles"
done

# Depends: computed from the binary's shared libraries, as cargo-deb's "$auto" does.
mkdir -p "$work/shlibs/debian"
printf 'Source: evercert\n\nPackage: evercert\nArchitecture: any\n' >"$work/shlibs/debian/control"
depends="$(cd "$work/shlibs" && dpkg-shlibdeps -O -e"$root/usr/bin/evercert" 2>/dev/null \
    | sed -n 's/^shlibs:Depends=//p')"
[ -n "$depends" ] || { echo "build-deb.sh: dpkg-shlibdeps found no dependencies for the binary" >&2; exit 1; }

installed_size="$(du -sk --exclude=DEBIAN "$root" | cut -f1)"
{
    echo "Package: evercert"
    echo "Version: $version"
    echo "Architecture: $arch"
    echo "Maintainer: $maintainer"
    echo "Installed-Size: $installed_size"
    echo "Depends: $depends"
    [ -n "$deb_section" ] && echo "Section: $deb_section"
    [ -n "$priority" ] && echo "Priority: $priority"
    echo "Description: $description"
    echo "$extended" | fold -s -w 78 | sed 's/^/ /; s/ *$//'
} >"$root/DEBIAN/control"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z \
    | xargs -0 md5sum) >"$root/DEBIAN/md5sums"

mkdir -p "$out"
deb="$out/evercert_${version}_${arch}.deb"
dpkg-deb --root-owner-group "${compress[@]}" --build "$root" "$deb" >/dev/null
echo "$deb"
