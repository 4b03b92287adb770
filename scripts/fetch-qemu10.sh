#!/usr/bin/env bash
# Unpack QEMU 10.0 from Debian 12's backports suite into a private prefix,
# beside (never over) the system QEMU 7.2.
#
# The mirror is read from this machine's own apt sources so that no host
# name is written into the project. Packages are downloaded with
# `apt-get download` through a private apt configuration and unpacked with
# `dpkg -x`; nothing is installed. The binary then runs with -L pointing at
# the prefix's firmware directories (see qemu10_firmware_args below).
#
# Usage: scripts/fetch-qemu10.sh [PREFIX]   (default: <repo>/.qemu/10.0)
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
prefix=${1:-$top/.qemu/10.0}
suite=bookworm-backports
pkgs=(qemu-system-x86 qemu-system-common qemu-system-data seabios)

if [ -x "$prefix/usr/bin/qemu-system-x86_64" ]; then
    echo "fetch-qemu10: already unpacked in $prefix"
    exit 0
fi

# The first Debian mirror named in the machine's apt sources.
mirror=""
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    mirror=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' \
        /etc/apt/sources.list.d/debian.sources)
fi
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
    mirror=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) { print $i; exit } }' \
        /etc/apt/sources.list)
fi
if [ -z "$mirror" ]; then
    echo "fetch-qemu10: no Debian mirror found in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list" >&2
    exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/etc/sources.list.d" "$work/etc/preferences.d" "$work/lists/partial" \
         "$work/cache/archives/partial" "$work/debs"
cat > "$work/etc/sources.list" <<SRC
deb $mirror $suite main
SRC
# Private apt state: the machine's own configuration and lists stay untouched.
aptopts=(-o "Dir::Etc::SourceList=$work/etc/sources.list"
         -o "Dir::Etc::SourceParts=$work/etc/sources.list.d"
         -o "Dir::Etc::Preferences=$work/etc/preferences"
         -o "Dir::Etc::PreferencesParts=$work/etc/preferences.d"
         -o "Dir::State::Lists=$work/lists"
         -o "Dir::Cache=$work/cache"
         -o "Dir::State::status=/var/lib/dpkg/status"
         -o "APT::Get::List-Cleanup=0"
         -o "APT::Sandbox::User=root")
echo "fetch-qemu10: reading $suite from the machine's Debian mirror"
apt-get "${aptopts[@]}" update -qq
(cd "$work/debs" && apt-get "${aptopts[@]}" download -qq \
    $(for p in "${pkgs[@]}"; do printf '%s/%s ' "$p" "$suite"; done))

rm -rf "$prefix.tmp"
mkdir -p "$prefix.tmp"
for deb in "$work"/debs/*.deb; do
    echo "fetch-qemu10: unpacking $(basename "$deb")"
    dpkg -x "$deb" "$prefix.tmp"
done
ver=$("$prefix.tmp/usr/bin/qemu-system-x86_64" -L "$prefix.tmp/usr/share/qemu" \
      -L "$prefix.tmp/usr/share/seabios" --version | head -n 1)
case "$ver" in
    *"version 10."*) ;;
    *) echo "fetch-qemu10: unexpected version: $ver" >&2; exit 1 ;;
esac
rm -rf "$prefix"
mv "$prefix.tmp" "$prefix"
echo "fetch-qemu10: $ver in $prefix"
