#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine: set everything up, then show
# what handover does. For now: probe both QEMUs (Debian 12's 7.2 and the
# private 10.0) and print what each can do for a migration. This command
# line stays the same when the demo becomes a live migration with storage
# copy between two local daemons.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
bash scripts/setup.sh
for emulator in "$(command -v qemu-system-x86_64)" "$top/.qemu/10.0/usr/bin/qemu-system-x86_64"; do
    echo
    build/tools/handover capabilities --emulator "$emulator"
done
