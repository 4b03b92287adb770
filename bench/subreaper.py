#!/usr/bin/env python3
"""Run a command as our child with this process as child subreaper.

  subreaper.py PIDFILE COMMAND [ARGS...]

libvirtd daemonizes its QEMUs, so they are reparented to the nearest
subreaper when their intermediate parent exits; PID 1 on these machines
reaps orphans only every ~2 s (DESIGN.md §6), and libvirtd waits for a
QEMU that exited until it is reaped. Being the subreaper, we reap at once.
SIGTERM and SIGINT go to the command; when it exits, whatever it left
behind (its QEMUs) is killed and reaped, and we exit with its status.
"""
import ctypes
import os
import signal
import sys

PR_SET_CHILD_SUBREAPER = 36


def children(me):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                stat = f.read()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == me:
            out.append(int(d))
    return out


def main():
    if len(sys.argv) < 3:
        sys.stderr.write("usage: subreaper.py PIDFILE COMMAND [ARGS...]\n")
        return 2
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.stderr.write("subreaper: prctl: %s\n" % os.strerror(ctypes.get_errno()))
        return 1
    pid = os.fork()
    if pid == 0:
        os.execvp(sys.argv[2], sys.argv[2:])
    with open(sys.argv[1], "w") as f:
        f.write("%d\n" % pid)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda s, _f: os.kill(pid, s))
    status = 0
    while True:
        p, st = os.wait()
        if p == pid:
            status = os.waitstatus_to_exitcode(st)
            break
    for c in children(os.getpid()):
        try:
            os.kill(c, signal.SIGKILL)
        except ProcessLookupError:
            pass
    while True:
        try:
            os.wait()
        except ChildProcessError:
            break
    return status if status >= 0 else 128 - status


if __name__ == "__main__":
    sys.exit(main())
