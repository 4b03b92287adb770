#!/usr/bin/env bash
# cppcheck over the project with GLib's semantics taught correctly.
#
# cppcheck's own gtk.cfg marks g_source_set_callback(), the *_full()
# source helpers and g_thread_join() "leak-ignore", as if the pointer
# stayed ours; GLib in fact takes the data and frees it with the
# GDestroyNotify passed alongside, and g_thread_join() frees the thread.
# We use a copy of the installed gtk.cfg with those marks removed (made
# here, never committed), plus .ci/glib-extra.cfg for GLib's attribute
# macros. Findings fail the run.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
sys_cfg=""
for f in /usr/lib/*/cppcheck/cfg/gtk.cfg /usr/share/cppcheck/cfg/gtk.cfg; do
    [ -f "$f" ] && { sys_cfg=$f; break; }
done
if [ -z "$sys_cfg" ]; then
    echo "cppcheck.sh: cppcheck's gtk.cfg not found" >&2
    exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed -E '/<function name="(g_source_set_callback|g_idle_add_full|g_timeout_add_full|g_timeout_add_seconds_full|g_child_watch_add_full|g_unix_fd_add_full|g_thread_join)">/,/<\/function>/{/<leak-ignore\/>/d}' \
    "$sys_cfg" > "$work/gtk.cfg"
cppcheck --quiet --error-exitcode=1 --inline-suppr --std=c11 \
    --library="$work/gtk.cfg" --library=.ci/glib-extra.cfg \
    --enable=warning,portability,performance \
    -I src/util -I src/qemu -I src/rpc -I src/daemon -I include -I tests \
    src tools tests bench "$@"
