#!/usr/bin/env bash
# Build (scripts/setup.sh) and run the whole test suite: unit, scenario
# (transcripts on the mock QMP server) and real (QEMU 7.2 and 10.0).
# Prints skipped tests with their reasons, then the summary line
# "N passed, N failed[, N skipped]" counting individual test cases.
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

python3 - "$builddir/meson-logs/testlog.json" "$rc" <<'PY'
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
summary = f"{passed} passed, {failed} failed"
if skipped:
    summary += f", {skipped} skipped"
if failed == 0 and int(sys.argv[2]) != 0:
    failed_run = 1
    summary = f"{passed} passed, 1 failed" + (f", {skipped} skipped" if skipped else "")
print(summary)
sys.exit(1 if failed or int(sys.argv[2]) != 0 else 0)
PY
