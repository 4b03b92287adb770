#!/usr/bin/env bash
# Build the Linux test guest (docs/test-guest.md): Debian's cloud kernel,
# its virtio modules, busybox and the static workload of tests/guest/ in a
# gzipped initramfs.
#
# The two Debian packages (linux-image-cloud-amd64's current kernel and
# busybox-static) are fetched with `apt-get download` from the machine's
# own apt sources and unpacked with `dpkg -x`; nothing is installed and
# nothing else is downloaded. They are kept in OUTDIR/debs, so a change to
# the guest's sources rebuilds without the network.
#
# Quick when nothing changed: the inputs' hash is kept in OUTDIR/guest.env.
# Delete OUTDIR to pick up a newer kernel.
#
# Usage: scripts/build-test-guest.sh [OUTDIR]   (default: <repo>/.guest)
# Prints KERNEL=, INITRD= and the package versions, as in OUTDIR/guest.env.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$top/.guest}
src=$top/tests/guest
modules_wanted=(virtio_pci virtio_blk virtio_net virtio_console)

say() { echo "build-test-guest: $*" >&2; }
die() { say "$*"; exit 1; }

mkdir -p "$out"
out=$(cd "$out" && pwd)
# Tests running side by side may call this at once.
exec 9>"$out/.lock"
flock 9

inputs_hash=$(cat "$0" "$src/init" "$src/workload.c" "$src/seqformat.h" | sha256sum | cut -c1-16)
if [ -f "$out/guest.env" ] && [ -f "$out/vmlinuz" ] && [ -f "$out/initrd.img" ] &&
   grep -qx "INPUTS=$inputs_hash" "$out/guest.env"; then
    grep -v '^INPUTS=' "$out/guest.env"
    exit 0
fi

for tool in apt-get apt-cache dpkg dpkg-deb gcc objcopy gzip sha256sum flock; do
    command -v "$tool" >/dev/null || die "'$tool' is needed and not installed"
done

aptopts=()
if [ "$(id -u)" = 0 ]; then
    # Root downloads into a directory the _apt user cannot write.
    aptopts+=(-o APT::Sandbox::User=root)
fi

# The versioned kernel package the metapackage points at, resolved from
# the apt lists; refresh the lists only when they do not know the package.
resolve_kernel() {
    apt-cache depends linux-image-cloud-amd64 2>/dev/null |
        awk '$1 ~ /Depends:/ && $2 ~ /^linux-image-[0-9]/ { print $2; exit }'
}

mkdir -p "$out/debs"
kpkg=""
if ! compgen -G "$out/debs/linux-image-*-cloud-amd64_*.deb" >/dev/null ||
   ! compgen -G "$out/debs/busybox-static_*.deb" >/dev/null; then
    kpkg=$(resolve_kernel)
    if [ -z "$kpkg" ] || ! apt-cache show busybox-static >/dev/null 2>&1; then
        say "the apt lists do not know the packages: apt-get update"
        apt-get update -qq || die "apt-get update failed"
        kpkg=$(resolve_kernel)
    fi
    [ -n "$kpkg" ] || die "cannot resolve linux-image-cloud-amd64 to a kernel package"
    rm -rf "$out/debs.tmp"
    mkdir -p "$out/debs.tmp"
    say "downloading $kpkg and busybox-static"
    if ! (cd "$out/debs.tmp" && apt-get "${aptopts[@]}" download -qq "$kpkg" busybox-static); then
        # Lists older than the mirror name files it no longer has.
        say "download failed, refreshing the apt lists once"
        apt-get update -qq || die "apt-get update failed"
        kpkg=$(resolve_kernel)
        (cd "$out/debs.tmp" && apt-get "${aptopts[@]}" download -qq "$kpkg" busybox-static) ||
            die "apt-get download $kpkg busybox-static failed"
    fi
    rm -rf "$out/debs"
    mv "$out/debs.tmp" "$out/debs"
fi
kdebs=("$out"/debs/linux-image-*-cloud-amd64_*.deb)
bdebs=("$out"/debs/busybox-static_*.deb)
kdeb=${kdebs[0]}
bdeb=${bdebs[0]}
kname=$(dpkg-deb -f "$kdeb" Package)
kver=$(dpkg-deb -f "$kdeb" Version)
bver=$(dpkg-deb -f "$bdeb" Version)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/pkg" "$work/root"
dpkg -x "$kdeb" "$work/pkg"
dpkg -x "$bdeb" "$work/pkg"

krels=("$work"/pkg/lib/modules/*)
krel=$(basename "${krels[0]}")
vmlinuz=$work/pkg/boot/vmlinuz-$krel
config=$work/pkg/boot/config-$krel
if [ ! -f "$vmlinuz" ] || [ ! -f "$config" ]; then
    die "no kernel or config for '$krel' in $kdeb"
fi
for opt in CONFIG_BLK_DEV_INITRD CONFIG_RD_GZIP CONFIG_DEVTMPFS CONFIG_SERIAL_8250_CONSOLE; do
    grep -qx "$opt=y" "$config" || die "$kname lacks $opt=y"
done

# The wanted drivers and what they need, dependencies first. A driver
# built into the kernel needs no module; one neither built in nor a module
# is an error.
moddir=$work/pkg/lib/modules/$krel
declare -A modpath=() loaded=()
while IFS= read -r -d '' ko; do
    modpath[$(basename "$ko" .ko)]=$ko
done < <(find "$moddir/kernel" -name '*.ko' -print0)
load_order=()
add_module() {
    local m=$1 dep deps
    [ -z "${loaded[$m]:-}" ] || return 0
    loaded[$m]=1
    if [ -z "${modpath[$m]:-}" ]; then
        grep -q "/$m.ko\$" "$moddir/modules.builtin" || die "$kname has no driver '$m'"
        return 0
    fi
    deps=$(objcopy -O binary --only-section=.modinfo "${modpath[$m]}" /dev/stdout |
           tr '\0' '\n' | sed -n 's/^depends=//p' | tr ',' ' ')
    for dep in $deps; do
        add_module "$dep"
    done
    load_order+=("$m")
}
for m in "${modules_wanted[@]}"; do
    add_module "$m"
done

# The static workload.
gcc -static -O2 -s -Wall -Wextra -Werror -o "$work/workload" "$src/workload.c"

# The initramfs tree.
root=$work/root
mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,etc,lib/modules}
cp "$work/pkg/bin/busybox" "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
install -m 0755 "$src/init" "$root/init"
install -m 0755 "$work/workload" "$root/bin/workload"
: > "$root/etc/modules.load"
for m in "${load_order[@]}"; do
    cp "${modpath[$m]}" "$root/lib/modules/$m.ko"
    echo "$m" >> "$root/etc/modules.load"
done
if [ "$(id -u)" = 0 ]; then
    # The kernel opens /dev/console for init before /init can mount devtmpfs.
    mknod -m 600 "$root/dev/console" c 5 1
fi

# cpio (newc): the host's, else busybox's own.
cpio=(cpio)
command -v cpio >/dev/null || cpio=("$root/bin/busybox" cpio)
(cd "$root" && find . -print | LC_ALL=C sort | "${cpio[@]}" -o -H newc 2>/dev/null) |
    gzip -9 > "$work/initrd.img"

cp "$vmlinuz" "$out/vmlinuz.tmp"
mv "$out/vmlinuz.tmp" "$out/vmlinuz"
mv "$work/initrd.img" "$out/initrd.img"
cp "$work/workload" "$out/workload"
cat > "$out/guest.env.tmp" <<ENV
KERNEL=$out/vmlinuz
INITRD=$out/initrd.img
KERNEL_PACKAGE=$kname $kver
KERNEL_RELEASE=$krel
BUSYBOX_PACKAGE=busybox-static $bver
MODULES=${load_order[*]}
INPUTS=$inputs_hash
ENV
mv "$out/guest.env.tmp" "$out/guest.env"
say "built $out/vmlinuz and $out/initrd.img"
grep -v '^INPUTS=' "$out/guest.env"
