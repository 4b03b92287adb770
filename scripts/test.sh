#!/usr/bin/env bash
# Build (scripts/setup.sh) and run the whole test suite: unit, scenario
# (transcripts on the mock QMP server) and real (QEMU 7.2 and 10.0).
# Prints skipped tests with their reasons, then the summary line
# "N passed, N failed[, N skipped]" counting individual test cases.
# HANDOVER_EXTRA_FAILED=N (CI: checks that ran before the suite, such as
# static analysis and the sanitizer run, and failed) adds N to the failed
# count and to the exit status.
# Usage: scripts/test.sh [BUILDDIR [meson test args...]]
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
builddir=${1:-build}
shift || true

if [ "$builddir" = build ]; then
    bash scripts/setup.sh || { echo "0 passed, 1 failed"; exit 1; }
fi

meson test -C "$builddir" --print-errorlogs "$@"
rc=$?

extra=${HANDOVER_EXTRA_FAILED:-0}
case "$extra" in
    ''|*[!0-9]*) echo "HANDOVER_EXTRA_FAILED must be a count, not '$extra'" >&2; extra=1 ;;
esac

python3 - "$builddir/meson-logs/testlog.json" "$rc" "$extra" <<'PY'
import json, re, sys
passed = failed = skipped = 0
skips = []
try:
    lines = open(sys.argv[1]).read().splitlines()
except OSError as e:
    print(f"no test log: {e}")
    lines = []
for line in lines:
    t = json.loads(line)
    cases = 0
    for out in (t.get("stdout") or "").splitlines():
        m = re.match(r"^(not ok|ok)\b\s*\d*\s*(.*)$", out)
        if not m:
            continue
        cases += 1
        desc = m.group(2)
        if m.group(1) == "not ok":
            failed += 1
        elif re.search(r"#\s*SKIP", desc, re.I):
            skipped += 1
            skips.append(f"{t['name']}: {desc}")
        else:
            passed += 1
    res = t.get("result")
    if res == "SKIP" and cases == 0:
        skipped += 1
        skips.append(f"{t['name']}: skipped")
    elif res not in ("OK", "SKIP", "EXPECTEDFAIL") and not re.search(r"(?m)^not ok", t.get("stdout") or ""):
        # crashed or timed out without a failing test case line
        failed += 1
for s in skips:
    print(f"skipped: {s}")
if failed == 0 and int(sys.argv[2]) != 0:
    failed = 1
failed += int(sys.argv[3])
summary = f"{passed} passed, {failed} failed"
if skipped:
    summary += f", {skipped} skipped"
print(summary)
sys.exit(1 if failed or int(sys.argv[2]) != 0 else 0)
PY
