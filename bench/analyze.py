#!/usr/bin/env python3
"""Figures of the benchmark (bench/run, docs/bench.md) from flight recordings.

  analyze.py sample --contender NAME --qemu V --round N --src FILE[:SIDE]
                    --dst FILE[:SIDE] [--wall-ms MS] [--driver-json JSON]
                    [--jobinfo FILE] [--daemon SIDE:CPU RSS HWM:CPU RSS HWM]...
                    [--workload idle|busy] [--verify-json JSON]
      one JSON line with the figures of one migration (--verify-json: what
      bench/run checked of the busy guest afterwards, kept as "verify")
  analyze.py report --samples FILE --out FILE [--idle "CPU RSS HWM"]
                    [--fifty "CPU RSS HWM"] [--meta KEY=VALUE]...
      medians and ratios on stdout, every sample in the JSON file
  analyze.py batch --contender NAME --qemu V --round N --wall-ms MS
                   --pair SRC,DST... [--driver-json JSON]... [--daemon ...]...
      one JSON line for N migrations run at once (the scale workload)
  analyze.py libvirt-log LOG OUT [--start-us US]
      libvirtd's debug log of its QMP traffic as a recording

Recordings are the flight recorder's JSON lines ({"ts","side","dir","msg"},
src/qemu/qemu_recorder.h); FILE:SIDE keeps only the lines of that side
(the minimal driver records both QEMUs into one file). Every contender's
figures come from the same code here, from what the QEMUs said and when:
timestamps of both files share CLOCK_MONOTONIC (one machine), and QEMU's
own event timestamps share the wall clock.
"""
import argparse
import datetime
import json
import statistics
import sys


def load(spec):
    path, _, side = spec.partition(":")
    lines = []
    with open(path, encoding="utf-8") as f:
        for raw in f:
            raw = raw.strip()
            if not raw or raw.startswith("#"):
                continue
            rec = json.loads(raw)
            if "ts" not in rec:  # a transcript's meta line
                continue
            if side and rec.get("side") != side:
                continue
            lines.append(rec)
    return lines


def events(lines, name=None):
    for rec in lines:
        msg = rec.get("msg") or {}
        if rec.get("dir") == "recv" and "event" in msg and (name is None or msg["event"] == name):
            yield rec, msg


def qemu_ts_us(msg):
    t = msg.get("timestamp") or {}
    return t.get("seconds", 0) * 1000000 + t.get("microseconds", 0)


def first_event(lines, name, status=None, after=None):
    for rec, msg in events(lines, name):
        if after is not None and rec["ts"] < after:
            continue
        if status is None or (msg.get("data") or {}).get("status") == status:
            return rec, msg
    return None, None


def last_event(lines, name, status=None, before=None):
    found = (None, None)
    for rec, msg in events(lines, name):
        if before is not None and rec["ts"] > before:
            break
        if status is None or (msg.get("data") or {}).get("status") == status:
            found = (rec, msg)
    return found


def sends(lines, command=None):
    for rec in lines:
        msg = rec.get("msg") or {}
        if rec.get("dir") == "send" and "execute" in msg and \
                (command is None or msg["execute"] == command):
            yield rec, msg


def replies(lines):
    """id -> receive ts of its reply."""
    out = {}
    for rec in lines:
        msg = rec.get("msg") or {}
        if rec.get("dir") == "recv" and "id" in msg and ("return" in msg or "error" in msg):
            out.setdefault(msg["id"], rec["ts"])
    return out


def busy_intervals(lines, lo, hi):
    """Intervals in [lo, hi] where QEMU had work of ours outstanding: a
    command sent and not yet answered, or a block-job-cancel whose job has
    not yet ended (BLOCK_JOB_COMPLETED or _CANCELLED)."""
    rep = replies(lines)
    ivs = []
    for rec, msg in sends(lines):
        if rec["ts"] > hi:
            break
        end = rep.get(msg.get("id"), hi)
        if msg["execute"] == "block-job-cancel":
            dev = (msg.get("arguments") or {}).get("device")
            for erec, emsg in events(lines):
                if (erec["ts"] >= rec["ts"]
                        and emsg["event"] in ("BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED")
                        and (emsg.get("data") or {}).get("device") == dev):
                    end = max(end, erec["ts"])
                    break
        a, b = max(rec["ts"], lo), min(end, hi)
        if b > a:
            ivs.append((a, b))
    return ivs


def union_len(ivs):
    total, cur_a, cur_b = 0, None, None
    for a, b in sorted(ivs):
        if cur_b is None or a > cur_b:
            if cur_b is not None:
                total += cur_b - cur_a
            cur_a, cur_b = a, b
        else:
            cur_b = max(cur_b, b)
    if cur_b is not None:
        total += cur_b - cur_a
    return total


def ms(us):
    return None if us is None else round(us / 1000.0, 3)


def figures(src, dst):
    f = {}
    start = next((r["ts"] for r in src if r.get("dir") == "open" and r.get("reason")), src[0]["ts"])
    end = next((r["ts"] for r in src if r.get("dir") == "close" and r["ts"] > start), src[-1]["ts"])
    src = [r for r in src if r["ts"] >= start]

    comp_rec, _ = first_event(src, "MIGRATION", "completed")
    if not comp_rec:
        raise SystemExit("analyze: the source never reported 'completed'")
    stop_rec, stop_msg = last_event(src, "STOP", before=comp_rec["ts"])
    resume_rec, resume_msg = first_event(dst, "RESUME", after=comp_rec["ts"])
    if stop_rec and resume_rec:
        f["pause_ms"] = ms(qemu_ts_us(resume_msg) - qemu_ts_us(stop_msg))
        f["pause_recv_ms"] = ms(resume_rec["ts"] - stop_rec["ts"])

    qm = None
    rep = {}
    for rec in src:
        msg = rec.get("msg") or {}
        if rec.get("dir") == "recv" and isinstance(msg.get("return"), dict) and \
                msg["return"].get("status") == "completed" and "downtime" in msg["return"]:
            rep = msg["return"]
            if rep.get("downtime"):
                qm = rep
    qm = qm or rep
    if qm:
        f["qemu_downtime_ms"] = qm.get("downtime")
        f["qemu_total_ms"] = qm.get("total-time")

    pre_rec, _ = first_event(src, "MIGRATION", "pre-switchover")
    cont_src = next((r for r, _ in sends(src, "migrate-continue")), None)
    if pre_rec and cont_src:
        lo, hi = pre_rec["ts"], cont_src["ts"]
        busy = union_len(busy_intervals(src, lo, hi) + busy_intervals(dst, lo, hi))
        f["preswitch_to_continue_ms"] = ms(hi - lo)
        f["preswitch_qemu_ms"] = ms(busy)
        f["preswitch_own_ms"] = ms(hi - lo - busy)
    cont_dst = next((r for r, _ in sends(dst, "cont") if r["ts"] >= comp_rec["ts"]), None)
    if cont_dst:
        f["completed_to_cont_ms"] = ms(cont_dst["ts"] - comp_rec["ts"])
        dcomp, _ = first_event(dst, "MIGRATION", "completed")
        if dcomp:
            f["dst_completed_after_src_ms"] = ms(dcomp["ts"] - comp_rec["ts"])

    # Phases, on the recorder's clock. Prepare ends with the last answer
    # from the destination before the source starts moving data (its
    # first blockdev-mirror, else its migrate): the destination's
    # migrate-incoming, or, where its daemon accepts the stream for a QEMU
    # of 8.2 or later and sends migrate-incoming only then, its exports.
    ready = [r["ts"] for r, _ in events(src, "BLOCK_JOB_READY")]
    mirror0 = next((r["ts"] for r, _ in sends(src, "blockdev-mirror")), None)
    migrate0 = next((r["ts"] for r, _ in sends(src, "migrate")), None)
    data0 = mirror0 if mirror0 is not None else migrate0
    dst_ready = max((ts for ts in replies(dst).values()
                     if data0 is not None and start <= ts <= data0), default=None)
    ph = {}
    if dst_ready:
        ph["prepare"] = ms(dst_ready - start)
    if mirror0 and ready:
        ph["disk_copy"] = ms(max(ready) - mirror0)
    if ready and pre_rec:
        ph["memory_copy"] = ms(pre_rec["ts"] - max(ready))
    if pre_rec and resume_rec:
        ph["switchover"] = ms(resume_rec["ts"] - pre_rec["ts"])
    if resume_rec:
        ph["confirm"] = ms(end - resume_rec["ts"])
    f["phases_ms"] = ph
    f["job_span_ms"] = ms(end - start)

    def count(lines):
        return sum(1 for r, m in sends(lines)
                   if start <= r["ts"] <= end and m["execute"] != "qmp_capabilities")
    f["qmp_src"] = count(src)
    f["qmp_dst"] = count(dst)
    return f


LOG_KINDS = {"QEMU_MONITOR_IO_WRITE: ": ("send", "buf="),
             "QEMU_MONITOR_RECV_REPLY: ": ("recv", "reply="),
             "QEMU_MONITOR_RECV_EVENT: ": ("recv", "event=")}


def cmd_libvirt_log(a):
    """libvirtd's debug log of the monitor -> a recording. The log's clock
    is the wall clock with millisecond resolution; a write is taken when
    libvirt wrote it to the socket (QEMU_MONITOR_IO_WRITE)."""
    dec = json.JSONDecoder()
    out = []
    if a.start_us:
        out.append({"ts": int(a.start_us), "side": "libvirt", "dir": "open", "reason": "migrate"})
    with open(a.log, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line[:2] != "20" or ": info : " not in line:
                continue
            stamp = line[:23]
            try:
                t = datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f")
            except ValueError:
                continue
            ts = int(t.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000000)
            if "QEMU_MONITOR_CLOSE: " in line:
                out.append({"ts": ts, "side": "libvirt", "dir": "close",
                            "reason": "monitor closed"})
                continue
            for kind, (direction, key) in LOG_KINDS.items():
                i = line.find(kind)
                if i < 0:
                    continue
                j = line.find(key, i)
                try:
                    msg, _ = dec.raw_decode(line[j + len(key):])
                except ValueError:
                    break
                out.append({"ts": ts, "side": "libvirt", "dir": direction, "msg": msg})
                break
    with open(a.out, "w", encoding="utf-8") as f:
        for rec in out:
            f.write(json.dumps(rec) + "\n")


def parse_proc(text):
    cpu, rss, hwm = text.split()
    return {"cpu_ms": float(cpu), "rss_kib": int(rss), "hwm_kib": int(hwm)}


def cmd_sample(a):
    src, dst = load(a.src), load(a.dst)
    s = {"contender": a.contender, "qemu": a.qemu, "round": a.round,
         "workload": a.workload}
    s.update(figures(src, dst))
    if a.verify_json:
        s["verify"] = json.loads(a.verify_json)
    if a.wall_ms:
        s["wall_ms"] = round(float(a.wall_ms), 3)
    if a.driver_json:
        d = json.loads(a.driver_json)
        s["wall_ms"] = round(d["wall_ms"], 3)
        s["cpu_ms"] = round(d["cpu_ms"], 3)
        s["peak_rss_kib"] = d["peak_rss_kib"]
    if a.jobinfo:
        with open(a.jobinfo, encoding="utf-8") as f:
            s["jobinfo"] = json.load(f)
    add_daemons(s, a.daemon)
    print(json.dumps(s, sort_keys=True))


def add_daemons(s, specs):
    """--daemon SIDE:BEFORE:AFTER (/proc figures): CPU used in between by
    both daemons, the larger peak RSS."""
    cpu, hwm = 0, 0
    for spec in specs or []:
        side, before, after = spec.split(":")
        b, e = parse_proc(before), parse_proc(after)
        s["daemon_" + side] = {"cpu_ms": round(e["cpu_ms"] - b["cpu_ms"], 3),
                               "hwm_kib": e["hwm_kib"],
                               "rss_kib": e["rss_kib"]}
        cpu += e["cpu_ms"] - b["cpu_ms"]
        hwm = max(hwm, e["hwm_kib"])
    if specs:
        s["cpu_ms"] = round(cpu, 3)
        s["peak_rss_kib"] = hwm


def cmd_batch(a):
    """N migrations at once: one sample with the batch's figures and every
    guest's own."""
    guests = []
    for pair in a.pair or []:
        src_spec, dst_spec = pair.split(",")
        guests.append(figures(load(src_spec), load(dst_spec)))
    s = {"contender": a.contender, "qemu": a.qemu, "round": a.round,
         "scale": a.scale or len(guests),
         "wall_ms": round(float(a.wall_ms), 3), "per_guest": guests}
    pauses = [g["pause_ms"] for g in guests if g.get("pause_ms") is not None]
    if pauses:
        s["pause_ms"] = statistics.median(pauses)
        s["pause_max_ms"] = max(pauses)
    for key in ("preswitch_own_ms", "completed_to_cont_ms"):
        vals = [g[key] for g in guests if g.get(key) is not None]
        if vals:
            s[key] = statistics.median(vals)
    if a.driver_json:
        drivers = [json.loads(d) for d in a.driver_json]
        s["cpu_ms"] = round(sum(d["cpu_ms"] for d in drivers), 3)
        s["peak_rss_kib"] = sum(d["peak_rss_kib"] for d in drivers)
    add_daemons(s, a.daemon)
    print(json.dumps(s, sort_keys=True))


SCALE_ROWS = [
    ("wall time of the whole batch", ("wall_ms",), "ms"),
    ("guest pause, median of the guests", ("pause_ms",), "ms"),
    ("guest pause, worst guest", ("pause_max_ms",), "ms"),
    ("pre-switchover gap, orchestrator's part (median)", ("preswitch_own_ms",), "ms"),
    ("src completed -> dst cont sent (median)", ("completed_to_cont_ms",), "ms"),
    ("CPU time of the orchestrator(s)", ("cpu_ms",), "ms"),
    ("peak RSS of the orchestrator(s)", ("peak_rss_kib",), "KiB"),
]


# Rows of the table: (label, key path, unit)
ROWS = [
    ("guest pause (src STOP -> dst RESUME)", ("pause_ms",), "ms"),
    ("QEMU downtime (query-migrate)", ("qemu_downtime_ms",), "ms"),
    ("QEMU total time (query-migrate)", ("qemu_total_ms",), "ms"),
    ("pre-switchover -> migrate-continue", ("preswitch_to_continue_ms",), "ms"),
    ("  of it QEMU (cancel -> COMPLETED, replies)", ("preswitch_qemu_ms",), "ms"),
    ("  of it the orchestrator", ("preswitch_own_ms",), "ms"),
    ("src completed -> dst cont sent", ("completed_to_cont_ms",), "ms"),
    ("wall time of the migrate command", ("wall_ms",), "ms"),
    ("  prepare (job start -> dst ready for the data)", ("phases_ms", "prepare"), "ms"),
    ("  disk copy (mirror -> all READY)", ("phases_ms", "disk_copy"), "ms"),
    ("  memory copy (READY -> pre-switchover)", ("phases_ms", "memory_copy"), "ms"),
    ("  switchover (pre-switchover -> dst RESUME)", ("phases_ms", "switchover"), "ms"),
    ("  confirm (dst RESUME -> src QEMU gone)", ("phases_ms", "confirm"), "ms"),
    ("QMP commands sent to src", ("qmp_src",), ""),
    ("QMP commands sent to dst", ("qmp_dst",), ""),
    ("CPU time of the orchestrator", ("cpu_ms",), "ms"),
    ("peak RSS of the orchestrator", ("peak_rss_kib",), "KiB"),
]


def get(sample, path):
    v = sample
    for k in path:
        if not isinstance(v, dict) or k not in v:
            return None
        v = v[k]
    return v


def median(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float) and not v.is_integer():
        return "%.2f" % v if abs(v) < 100 else "%.0f" % v
    return str(int(v))


def table(out, title, samples, rows):
    """Medians per contender of samples (one QEMU, one workload) and the
    ratios to the first contender (and handover/libvirt); returns them."""
    contenders = []
    for s in samples:
        if s["contender"] not in contenders:
            contenders.append(s["contender"])
    med = {}
    for c in contenders:
        med[c] = {}
        for label, path, unit in rows:
            med[c][".".join(path)] = median(get(s, path) for s in samples if s["contender"] == c)
    n = {c: sum(1 for s in samples if s["contender"] == c) for c in contenders}
    ratios = [c for c in contenders if c != contenders[0]]
    both = "handover" in contenders and "libvirt" in contenders
    head = ["%s, median of %s" % (title, "/".join(str(n[c]) for c in contenders))]
    head += contenders + ["%s/%s" % (c, contenders[0]) for c in ratios]
    if both:
        head.append("handover/libvirt")
    lines = [head]
    for label, path, unit in rows:
        key = ".".join(path)
        vals = [med[c][key] for c in contenders]
        if all(v is None for v in vals):
            continue
        row = ["%s%s" % (label, " [%s]" % unit if unit else "")] + [fmt(v) for v in vals]
        base = med[contenders[0]][key]
        for c in ratios:
            v = med[c][key]
            row.append("%.2fx" % (v / base) if v is not None and base else "-")
        if both:
            v, b = med["handover"][key], med["libvirt"][key]
            row.append("%.2fx" % (v / b) if v is not None and b else "-")
        lines.append(row)
    widths = [max(len(r[i]) for r in lines) for i in range(len(head))]
    out.write("\n")
    for i, r in enumerate(lines):
        out.write("  ".join(r[0].ljust(widths[0]) if j == 0 else r[j].rjust(widths[j])
                            for j in range(len(r))).rstrip() + "\n")
        if i == 0:
            out.write("-" * (sum(widths) + 2 * (len(widths) - 1)) + "\n")
    return med


def report_single(out, medians, q, workload, mine):
    """The table of single migrations on one QEMU with one workload."""
    if workload == "idle":
        medians[q] = table(out, "QEMU %s" % q, mine, ROWS)
    else:
        medians["%s %s" % (q, workload)] = table(out, "QEMU %s, %s guest" % (q, workload),
                                                 mine, ROWS)
        ver = [s["verify"] for s in mine if "verify" in s]
        if ver:
            out.write("busy guest checked after each of these %d migrations: the destination's "
                      "disk holds every write the guest reported (seqcheck --min-seq %s..%s), "
                      "the RAM check passed on the destination\n"
                      % (len(ver), min(v["min_seq"] for v in ver), max(v["min_seq"] for v in ver)))
    jobinfo = [s["jobinfo"] for s in mine if "jobinfo" in s]
    if jobinfo:
        sw = median(j.get("switchover_us") for j in jobinfo)
        swq = median(j.get("switchover_qemu_us") for j in jobinfo)
        swo = median(j.get("switchover_own_us") for j in jobinfo)
        orch = median(j.get("orchestrator_ms") for j in jobinfo)
        out.write("handover's own view (domjobinfo --completed, medians): switchover %s us "
                  "(QEMU %s us, handover %s us), orchestrator time %s ms\n"
                  % (fmt(sw), fmt(swq), fmt(swo), fmt(orch)))


def cmd_report(a):
    samples = []
    with open(a.samples, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                samples.append(json.loads(line))
    meta = dict(m.split("=", 1) for m in a.meta or [])
    out = sys.stdout
    medians = {}
    single = [s for s in samples if "scale" not in s]
    for q in sorted({s["qemu"] for s in single}, key=lambda v: [int(x) for x in v.split(".")]):
        for w in ("idle", "busy"):
            mine = [s for s in single if s["qemu"] == q and s.get("workload", "idle") == w]
            if mine:
                report_single(out, medians, q, w, mine)
    scale = [s for s in samples if "scale" in s]
    for q in sorted({s["qemu"] for s in scale}, key=lambda v: [int(x) for x in v.split(".")]):
        for n in sorted({s["scale"] for s in scale if s["qemu"] == q}):
            mine = [s for s in scale if s["qemu"] == q and s["scale"] == n]
            title = "QEMU %s, %d small guest%s at once" % (q, n, "" if n == 1 else "s")
            medians["%s x%d" % (q, n)] = table(out, title, mine, SCALE_ROWS)
    mem = {}
    if a.idle:
        mem["idle"] = parse_proc(a.idle)
    if a.fifty:
        mem["fifty_defined"] = parse_proc(a.fifty)
    if mem:
        out.write("\nhandoverd RSS: idle %s KiB (target < 8192), with 50 defined guests %s KiB "
                  "(target < 16384)\n" % (mem.get("idle", {}).get("rss_kib", "-"),
                                          mem.get("fifty_defined", {}).get("rss_kib", "-")))
    doc = {"meta": meta, "medians": medians, "daemon_memory": mem, "samples": samples}
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sample")
    s.add_argument("--contender", required=True)
    s.add_argument("--qemu", required=True)
    s.add_argument("--round", type=int, required=True)
    s.add_argument("--src", required=True)
    s.add_argument("--dst", required=True)
    s.add_argument("--wall-ms")
    s.add_argument("--driver-json")
    s.add_argument("--jobinfo")
    s.add_argument("--daemon", action="append")
    s.add_argument("--workload", default="idle", choices=("idle", "busy"))
    s.add_argument("--verify-json")
    r = sub.add_parser("report")
    r.add_argument("--samples", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--idle")
    r.add_argument("--fifty")
    r.add_argument("--meta", action="append")
    b = sub.add_parser("batch")
    b.add_argument("--contender", required=True)
    b.add_argument("--qemu", required=True)
    b.add_argument("--round", type=int, required=True)
    b.add_argument("--wall-ms", required=True)
    b.add_argument("--pair", action="append")
    b.add_argument("--scale", type=int)
    b.add_argument("--driver-json", action="append")
    b.add_argument("--daemon", action="append")
    lv = sub.add_parser("libvirt-log")
    lv.add_argument("log")
    lv.add_argument("out")
    lv.add_argument("--start-us")
    a = p.parse_args()
    if a.cmd == "sample":
        cmd_sample(a)
    elif a.cmd == "batch":
        cmd_batch(a)
    elif a.cmd == "libvirt-log":
        cmd_libvirt_log(a)
    else:
        cmd_report(a)


if __name__ == "__main__":
    main()
