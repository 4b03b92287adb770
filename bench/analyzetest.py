#!/usr/bin/env python3
"""Checks bench/analyze.py's figures against a recording whose numbers are
known: tests/qemumonitorjsondata/migrate-storage-7.2-10.0.jsonl (the
minimal flow recorded by qemurecord), where the expected values below were
read off the transcript's lines by hand; and the conversion of libvirtd's
monitor log, and the report's tables per QEMU and workload. Run by meson
test (suite unit); exits non-zero on a mismatch."""
import io
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import analyze  # noqa: E402

failures = []


def check(name, got, want):
    ok = got == want if not isinstance(want, float) else got is not None and abs(got - want) < 1e-6
    print("%s %s: got %r, want %r" % ("ok" if ok else "FAIL", name, got, want))
    if not ok:
        failures.append(name)


def main():
    top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(top, "tests", "qemumonitorjsondata", "migrate-storage-7.2-10.0.jsonl")
    f = analyze.figures(analyze.load(path + ":src"), analyze.load(path + ":dst"))
    # STOP at 1796411488.309113 (QEMU's clock), RESUME at .319503.
    check("pause_ms", f["pause_ms"], 10.39)
    check("qemu_downtime_ms", f["qemu_downtime_ms"], 5)
    check("qemu_total_ms", f["qemu_total_ms"], 18)
    # pre-switchover received at 3185373234, migrate-continue sent at 3185375022;
    # cancels sent at ...3265 and ...3559, the last BLOCK_JOB_COMPLETED at ...4987.
    check("preswitch_to_continue_ms", f["preswitch_to_continue_ms"], 1.788)
    check("preswitch_qemu_ms", f["preswitch_qemu_ms"], 1.722)
    check("preswitch_own_ms", f["preswitch_own_ms"], 0.066)
    # src completed received at 3185376963, dst cont sent at 3185381971.
    check("completed_to_cont_ms", f["completed_to_cont_ms"], 5.008)
    # The job opens at 3185168261; the destination's last answer before
    # the first blockdev-mirror (sent at 3185307242) is migrate-incoming's,
    # at 3185296200.
    check("prepare", f["phases_ms"].get("prepare"), 127.939)

    # The daemons' /proc figures: CPU time to the microsecond, the larger
    # peak RSS of the two.
    s = {}
    analyze.add_daemons(s, ["src:10.250 6000 7000:12.001 6100 7100",
                            "dst:3.000 5000 9000:3.5 5200 9100"])
    check("daemon cpu_ms", s["cpu_ms"], 2.251)
    check("daemon src cpu_ms", s["daemon_src"]["cpu_ms"], 1.751)
    check("daemon peak_rss_kib", s["peak_rss_kib"], 9100)

    # Overlapping and disjoint intervals.
    check("union_len", analyze.union_len([(5, 9), (0, 2), (1, 3), (8, 10)]), 8)

    # libvirtd's log -> a recording.
    log = (
        '2026-12-04 19:40:12.691+0000: 13236: info : qemuMonitorIOWrite:366 : '
        'QEMU_MONITOR_IO_WRITE: mon=0x1 buf={"execute":"cont","id":"libvirt-9"}\r\n'
        ' len=36 ret=36 errno=0\n'
        '2026-12-04 19:40:12.693+0000: 13236: info : qemuMonitorJSONIOProcessLine:208 : '
        'QEMU_MONITOR_RECV_REPLY: mon=0x1 reply={"return": {}, "id": "libvirt-9"}\n'
        '2026-12-04 19:40:12.694+0000: 13236: debug : qemuMonitorJSONIOProcessLine:189 : '
        'Line [{"event": "RESUME"}]\n'
        '2026-12-04 19:40:12.694+0000: 13236: info : qemuMonitorJSONIOProcessEvent:205 : '
        'QEMU_MONITOR_RECV_EVENT: mon=0x1 event={"timestamp": {"seconds": 1, "microseconds": 2}, '
        '"event": "RESUME"}\n')
    with tempfile.TemporaryDirectory() as d:
        src, out = os.path.join(d, "l.log"), os.path.join(d, "l.jsonl")
        with open(src, "w") as fh:
            fh.write(log)

        class A:
            pass
        a = A()
        a.log, a.out, a.start_us = src, out, None
        analyze.cmd_libvirt_log(a)
        with open(out) as fh:
            recs = [json.loads(line) for line in fh]
    check("libvirt records", [(r["dir"], list(r["msg"])[0]) for r in recs],
          [("send", "execute"), ("recv", "return"), ("recv", "timestamp")])
    check("libvirt ts", recs[1]["ts"] - recs[0]["ts"], 2000)

    # The report: a table per QEMU and workload (samples without a
    # workload are idle ones), the busy guest's checks summed up.
    samples = [
        {"contender": "minimal", "qemu": "7.2", "round": 1, "pause_ms": 10.0},
        {"contender": "minimal", "qemu": "7.2", "round": 2, "workload": "idle",
         "pause_ms": 20.0},
        {"contender": "minimal", "qemu": "7.2", "round": 1, "workload": "busy",
         "pause_ms": 300.0, "verify": {"min_seq": 1088, "max_seq": 1100,
                                       "dst_ram_ok_lines": 1}},
        {"contender": "minimal", "qemu": "7.2", "round": 2, "workload": "busy",
         "pause_ms": 100.0, "verify": {"min_seq": 1152, "max_seq": 1160,
                                       "dst_ram_ok_lines": 1}},
    ]
    with tempfile.TemporaryDirectory() as d:
        sp, rp = os.path.join(d, "s.jsonl"), os.path.join(d, "r.json")
        with open(sp, "w") as fh:
            fh.write("".join(json.dumps(x) + "\n" for x in samples))

        class R:
            pass
        r = R()
        r.samples, r.out, r.idle, r.fifty, r.meta = sp, rp, None, None, ["workloads=idle,busy"]
        real_stdout, sys.stdout = sys.stdout, io.StringIO()
        try:
            analyze.cmd_report(r)
            text = sys.stdout.getvalue()
        finally:
            sys.stdout = real_stdout
        with open(rp) as fh:
            doc = json.load(fh)
    check("report medians keys", sorted(doc["medians"]), ["7.2", "7.2 busy"])
    check("report idle pause", doc["medians"]["7.2"]["minimal"]["pause_ms"], 15.0)
    check("report busy pause", doc["medians"]["7.2 busy"]["minimal"]["pause_ms"], 200.0)
    check("report busy table", "QEMU 7.2, busy guest, median of 2" in text, True)
    check("report busy checks", "these 2 migrations" in text and "--min-seq 1088..1152" in text,
          True)
    if failures:
        print("%d check(s) failed: %s" % (len(failures), ", ".join(failures)))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
