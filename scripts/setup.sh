#!/usr/bin/env bash
# Set up a Debian 12 machine for handover: install the build and test
# dependencies with apt-get (only what is missing), unpack QEMU 10.0 into a
# private prefix (scripts/fetch-qemu10.sh), configure and build into build/.
# Idempotent; extra arguments go to `meson setup` on first configuration.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

pkgs=(gcc meson ninja-build pkg-config gettext python3
      libglib2.0-dev libjson-c-dev libxml2-dev
      qemu-system-x86 qemu-utils ipxe-qemu seabios)

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    echo "setup: installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi

bash scripts/fetch-qemu10.sh
# The Linux test guest the real-QEMU migration tests boot (docs/test-guest.md).
bash scripts/build-test-guest.sh >/dev/null

if [ ! -f build/build.ninja ]; then
    meson setup build "$@" >/dev/null
fi
ninja -C build >/dev/null
echo "setup: built in $top/build"
