#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine: set everything up, then show
# what handover does. For now: start a private handoverd and ask it, through
# the `handover` CLI, what each of the two QEMUs (Debian 12's 7.2 and the
# private 10.0) can do for a migration. This command line stays the same
# when the demo becomes a live migration with storage copy between two
# local daemons.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
bash scripts/setup.sh

work=$(mktemp -d "${TMPDIR:-/tmp}/handover-demo-XXXXXX")
daemon_pid=""

stop_daemon() {
    if [ -n "$daemon_pid" ]; then
        # SIGTERM: handoverd closes its clients, removes its socket and exits.
        kill "$daemon_pid" 2>/dev/null || true
        wait "$daemon_pid" 2>/dev/null || true
        daemon_pid=""
    fi
}
trap 'stop_daemon; rm -rf "$work"' EXIT

# start_daemon ROOT: a self-contained handoverd under ROOT; returns once it
# wrote READY on its --ready-fd (a fifo here), or fails with its output.
start_daemon() {
    local root=$1 fifo=$1/ready line=""
    mkfifo "$fifo"
    build/src/daemon/handoverd --root "$root" --ready-fd 3 3>"$fifo" \
        >"$root/handoverd.out" 2>&1 &
    daemon_pid=$!
    # The daemon's open of the fifo waits for this reader; EOF if it dies.
    if ! read -r -t 30 line <"$fifo" || [ "$line" != READY ]; then
        echo "demo: handoverd did not start:" >&2
        cat "$root/handoverd.out" >&2
        return 1
    fi
}

start_daemon "$work"
uri="handover+unix:///system?socket=$work/run/handoverd.sock"
echo "demo: handoverd (pid $daemon_pid) listening on $work/run/handoverd.sock"
for emulator in "$(command -v qemu-system-x86_64)" "$top/.qemu/10.0/usr/bin/qemu-system-x86_64"; do
    echo
    build/tools/handover -c "$uri" capabilities --emulator "$emulator"
done
stop_daemon
