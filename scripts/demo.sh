#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine: set everything up, then
# live-migrate a running guest and its local disk between two handoverd on
# this machine, as if they were two hosts.
#
#   1. scripts/setup.sh: dependencies, QEMU 10.0, the build (into build/);
#   2. two daemons, "src" and "dst", each with its own root (state, runtime
#      and log directories, socket), its own host UUID, the destination
#      listening for its peer on a free loopback port;
#   3. a demo guest on the source: firmware only (it sits in SeaBIOS, with
#      KVM when /dev/kvm works, else TCG) and a 256 MiB qcow2 data disk
#      holding 192 MiB of patterns written by qemu-io;
#   4. handover migrate --live --copy-storage-all --verbose: the disk is
#      mirrored to the destination's NBD export, then memory moves, with
#      the progress shown; then domjobinfo --completed, the guest running
#      on the destination, and both images compared;
#   5. everything cleaned up, also on failure or Ctrl-C: guests destroyed,
#      daemons stopped by their PIDs, the temporary directory removed.
#
# Usage: bash scripts/demo.sh [BUILDDIR]
#   BUILDDIR (default build) other than build skips scripts/setup.sh and
#   only rebuilds that directory (for a machine that is set up already).
# Environment: HANDOVER_DEMO_STORAGE=shared migrates with the disk on
#   storage both daemons see (plain --live) instead of copying it;
#   HANDOVER_DEMO_DST_QEMU=PATH runs the guest on the destination with
#   another QEMU (say .qemu/10.0/usr/bin/qemu-system-x86_64: 7.2 -> 10.0).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
build=${1:-build}
storage=${HANDOVER_DEMO_STORAGE:-copy}
case $storage in
    copy|shared) ;;
    *) echo "demo: HANDOVER_DEMO_STORAGE must be 'copy' or 'shared', not '$storage'" >&2; exit 2 ;;
esac

if [ "$build" = build ]; then
    bash scripts/setup.sh
elif ! out=$(ninja -C "$build" 2>&1); then
    echo "$out" >&2
    echo "demo: building $build failed" >&2
    exit 1
fi
handoverd=$top/$build/src/daemon/handoverd
handover=$top/$build/tools/handover
qemu=$(command -v qemu-system-x86_64)
dst_qemu=${HANDOVER_DEMO_DST_QEMU:-$qemu}
case $dst_qemu in /*) ;; *) dst_qemu=$top/$dst_qemu ;; esac

# Not /tmp: it may be a tmpfs, and the disks use cache='none' (O_DIRECT).
work=$(mktemp -d /var/tmp/handover-demo-XXXXXX)
declare -A daemon_pid=()
qemu_pids=()

if [ -t 1 ]; then
    say() { printf '\n\033[1mdemo: %s\033[0m\n' "$*"; }
else
    say() { printf '\ndemo: %s\n' "$*"; }
fi
# The CLI against one of the daemons: ho src|dst ARGS...
ho() { local side=$1; shift; "$handover" -c "handover+unix:///system?socket=$work/$side/run/handoverd.sock" "$@"; }

cleanup() {
    local rc=$? side pid
    trap - EXIT INT TERM
    set +e
    # handoverd leaves running guests running when it stops: destroy them
    # first (bounded), then stop the daemons by PID and wait for them.
    for side in dst src; do
        pid=${daemon_pid[$side]:-}
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            timeout 30 "$handover" -c "handover+unix:///system?socket=$work/$side/run/handoverd.sock" \
                destroy demo >/dev/null 2>&1
            kill "$pid" 2>/dev/null
            wait "$pid" 2>/dev/null
        fi
    done
    # A QEMU left behind by a daemon that died: ours only (its command
    # line names this demo's directory), by PID.
    for pid in "${qemu_pids[@]}"; do
        if grep -qsF "$work" "/proc/$pid/cmdline"; then
            kill -9 "$pid" 2>/dev/null
        fi
    done
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 130 ]; then
        for side in src dst; do
            if [ -s "$work/$side/handoverd.out" ]; then
                echo "demo: the last lines of the $side daemon's log:" >&2
                tail -n 20 "$work/$side/handoverd.out" >&2
            fi
        done
    fi
    if [ "$rc" -ne 0 ]; then
        echo "demo: FAILED (exit status $rc); cleaned up" >&2
    fi
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'echo; echo "demo: interrupted" >&2; exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_daemon SIDE [KEY=VALUE...]: a self-contained handoverd under
# $work/SIDE; returns once it wrote READY on its --ready-fd (a fifo), or
# fails with its output.
start_daemon() {
    local side=$1 root=$work/$1 line="" kv
    shift
    mkdir -p "$root"
    {
        echo "[handoverd]"
        echo "host_uuid = $(cat /proc/sys/kernel/random/uuid)"
        echo "migration_progress_interval = 200"
        echo "log_level = info"
        for kv in "$@"; do echo "$kv"; done
    } >"$root/handoverd.conf"
    mkfifo "$root/ready"
    # A session of its own: Ctrl-C on the terminal reaches this script
    # (which cleans up) and the command in the foreground, not the daemon.
    # (setsid execs in place here, where the shell has no job control, so
    # $! is the daemon's PID.)
    setsid "$handoverd" --root "$root" --config "$root/handoverd.conf" --ready-fd 3 3>"$root/ready" \
        >"$root/handoverd.out" 2>&1 &
    daemon_pid[$side]=$!
    # The daemon's open of the fifo waits for this reader; EOF if it dies.
    if ! read -r -t 30 line <"$root/ready" || [ "$line" != READY ]; then
        echo "demo: the $side handoverd did not start:" >&2
        cat "$root/handoverd.out" >&2
        return 1
    fi
    echo "handoverd '$side' (pid ${daemon_pid[$side]}): socket $root/run/handoverd.sock, host UUID $(sed -n 's/^host_uuid = //p' "$root/handoverd.conf")"
}

# domain_xml DISK [EMULATOR]: the demo guest's definition with its data
# disk at DISK.
domain_xml() {
    local type=qemu
    if [ -w /dev/kvm ]; then type=kvm; fi
    cat <<EOF
<domain type='$type'>
  <name>demo</name>
  <uuid>6f1e3c2a-8b4d-4e5f-9a6b-7c8d9e0f1a2b</uuid>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
  </os>
  <devices>
    <emulator>${2:-$qemu}</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source file='$1'/>
      <target dev='vda' bus='virtio'/>
    </disk>
  </devices>
</domain>
EOF
}

# The pid of the demo guest's QEMU on SIDE (for the cleanup of last resort).
learn_qemu_pid() {
    local pid
    pid=$(ho "$1" dominfo --json demo |
          python3 -c 'import json, sys; print(json.load(sys.stdin).get("pid", ""))')
    if [ -n "$pid" ]; then qemu_pids+=("$pid"); fi
}

say "two daemons on this machine, as two hosts"
start_daemon src
dst_port=$(free_port)
start_daemon dst "listen_address = 127.0.0.1" "listen_port = $dst_port"
dest_uri="handover+tcp://127.0.0.1:$dst_port/system"
echo "the destination serves its peers at $dest_uri"

say "a demo guest with a 256 MiB qcow2 data disk"
src_disk=$work/src/demo-data.qcow2
dst_disk=$work/dst/demo-data.qcow2
qemu-img create -q -f qcow2 "$src_disk" 256M
# Patterns the comparison at the end would notice if a byte were lost.
qemu-io -f qcow2 -c 'write -q -P 0xa5 0 96M' -c 'write -q -P 0x3c 128M 64M' \
    -c 'write -q -P 0x5a 224M 32M' "$src_disk"
qemu-img info "$src_disk" | sed -n 's/^\(virtual size\|disk size\|file format\): /  \1: /p'
domain_xml "$src_disk" >"$work/src/demo.xml"
ho src define "$work/src/demo.xml"
ho src start demo
learn_qemu_pid src
ho src list

migrate_args=(--live --persistent --verbose)
if [ "$storage" = copy ]; then
    # The destination's own definition: the same guest, its disk at a path
    # of the destination "host" (the destination creates the image there).
    domain_xml "$dst_disk" "$dst_qemu" >"$work/dst/demo.xml"
    migrate_args+=(--copy-storage-all --xml "$work/dst/demo.xml")
    say "handover migrate ${migrate_args[*]} demo $dest_uri"
else
    dst_disk=$src_disk
    say "handover migrate ${migrate_args[*]} demo $dest_uri (shared storage)"
fi
ho src migrate "${migrate_args[@]}" demo "$dest_uri"

say "handover domjobinfo --completed demo (on the source)"
ho src domjobinfo --completed demo

say "the guest now runs on the destination"
learn_qemu_pid dst
ho dst list --all
ho src list --all
if [ "$storage" = copy ]; then
    # Paused, so that the destination's copy cannot change while compared.
    ho dst suspend demo
    say "qemu-img compare -U source destination"
    qemu-img compare -U -f qcow2 -F qcow2 "$src_disk" "$dst_disk"
    ho dst resume demo
fi
echo "the guest on the destination: $(ho dst domstate demo)"

say "done; cleaning up"
