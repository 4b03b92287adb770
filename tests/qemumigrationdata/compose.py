#!/usr/bin/env python3
# Composes the scenario transcripts of tests/qemumigrationdata/ from the real
# recordings in ../qemumonitorjsondata/ plus hand-written tails (see README.md).
# Run it after changing a scenario: python3 tests/qemumigrationdata/compose.py
import json, os
D=os.path.dirname(os.path.abspath(__file__))
M=os.path.join(D, '..', 'qemumonitorjsondata')
def R(side, d, msg=None, **kw):
    o={"side":side,"dir":d}
    if msg is not None: o["msg"]=msg
    o.update(kw)
    return json.dumps(o, separators=(',',':'))
def ev(name, status=None):
    m={"event":name}
    if status: m["data"]={"status":status}
    return m
def mig(side,status): return R(side,"recv",ev("MIGRATION",status))
def cmd(side, name, args=None, id=None):
    m={"execute":name}
    if args is not None: m["arguments"]=args
    m["id"]=id
    return R(side,"send",m)
def ret(side, id, val=None):
    return R(side,"recv",{"return":{} if val is None else val,"id":id})
def err(side, id, desc):
    return R(side,"recv",{"error":{"class":"GenericError","desc":desc},"id":id})

MACHINES={
 "7.2":[{"name":"pc-i440fx-7.2","alias":"pc","is-default":True,"cpu-max":255,"hotpluggable-cpus":True,"numa-mem-supported":False,"deprecated":False,"default-cpu-type":"qemu64-x86_64-cpu","default-ram-id":"pc.ram","acpi":True}],
 "10.0":[{"name":"pc-i440fx-10.0","alias":"pc","is-default":True,"cpu-max":255,"hotpluggable-cpus":True,"numa-mem-supported":False,"deprecated":False,"default-cpu-type":"qemu64-x86_64-cpu","default-ram-id":"pc.ram","acpi":True},
         {"name":"pc-i440fx-7.2","cpu-max":255,"hotpluggable-cpus":True,"numa-mem-supported":False,"deprecated":False,"default-cpu-type":"qemu64-x86_64-cpu","default-ram-id":"pc.ram","acpi":True}],
}
def caps_list(v, drop=()):
    for l in open(f'{M}/probe-{v}.jsonl'):
        if '"capability"' in l and '"return"' in l:
            return [c for c in json.loads(l)['msg']['return'] if c['capability'] not in drop]

def write(name, comments, lines, schema):
    with open(f'{D}/{name}','w') as f:
        for c in comments: f.write('# '+c+'\n' if c else '#\n')
        f.write(json.dumps({"meta":{"schema":schema}},separators=(',',':'))+'\n')
        for l in lines: f.write(l+'\n')

def include(side, v, drop=()):
    o={"include":f"../qemumonitorjsondata/probe-{v}.jsonl","side":side,"stop_at":"quit"}
    if drop: o["replace_return"]={"query-migrate-capabilities":caps_list(v,drop)}
    return json.dumps(o,separators=(',',':'))

def start_include(side, v):
    """A domain's start: the driver reuses the emulator's cached probe and
    only checks the QEMU's version (greeting, qmp_capabilities,
    query-version)."""
    o={"include":f"../qemumonitorjsondata/probe-{v}.jsonl","side":side,"stop_at":"query-commands"}
    return json.dumps(o,separators=(',',':'))

# ---- probes of the fake emulators (the driver: qemu_caps_probe + query-machines) ----
for name, v, drop, why in [("qemu-7.2","7.2",(),None),("qemu-10.0","10.0",(),None),
    ("qemu-7.2-nopause","7.2",("pause-before-switchover",),"pause-before-switchover removed by hand: a QEMU before 2.11"),
    ("qemu-7.2-nomig","7.2",("auto-converge","multifd"),"auto-converge and multifd removed by hand: a QEMU that cannot honour --auto-converge or --parallel")]:
    c=[f"The driver's capability probe of emulator {name}: the recorded probe",
       f"of QEMU {v} (../qemumonitorjsondata/probe-{v}.jsonl, without its quit),",
       "then query-machines (composed: machine names as QEMU "+v+" reports them;",
       "10.0 also lists pc-i440fx-7.2, the source machine of 7.2 -> 10.0). The",
       "driver kills the probe QEMU after the reply."]
    if why: c.append("Capabilities: "+why+".")
    write(f"probe-{name}.jsonl", c, [include("src",v,drop), cmd("src","query-machines",id="m1"), ret("src","m1",MACHINES[v])], {"src":"qemu-"+v})

# ---- the recorded migrations, cut into parts ----
def recorded(sv, dv):
    out=[]
    for l in open(f'{M}/migrate-precopy-{sv}-{dv}.jsonl'):
        if l.startswith('{"ts"'): out.append(json.loads(l))
    return out
def line(o):
    return json.dumps(o,separators=(',',':'))

def src_start(v, drop=()):
    return ["# The source domain starts: the driver checks its version against the cached",
            "# probe of the emulator (greeting, qmp_capabilities, query-version), then cont.",
            start_include("src",v), cmd("src","cont",id="s1"), R("src","recv",ev("RESUME")), ret("src","s1")]

def happy(sv, dv, drop=()):
    recs=recorded(sv,dv)
    # drop the recorder's own connection setup (open, greeting, qmp_capabilities) of both sides
    body=[]
    set_caps_id=None
    skip={"src":4,"dst":4}
    for o in recs:
        if skip.get(o["side"],0)>0:
            skip[o["side"]]-=1; continue
        body.append(o)
    # the destination QEMU stays: drop its quit and close
    i=[k for k,o in enumerate(body) if o["side"]=="dst" and o["dir"]=="send" and o["msg"].get("execute")=="quit"][0]
    body=body[:i]
    # The orchestrator sets every capability it cares about both ways (QEMU
    # keeps them from an earlier migration), then the parameters (bandwidth
    # unlimited: 2^53), where the minimal recording driver set only events
    # and pause-before-switchover.
    out=[]
    for o in body:
        m=o.get("msg",{})
        if m.get("execute")=="migrate-set-capabilities":
            c=[{"capability":"events","state":True}]
            if o["side"]=="src":
                c+=[{"capability":"pause-before-switchover","state":True},
                    {"capability":"auto-converge","state":False}]
            c+=[{"capability":"multifd","state":False}]
            m["arguments"]["capabilities"]=c
            set_caps_id=m["id"]
        out.append(o)
        if o["side"]=="src" and o["dir"]=="recv" and m.get("id")==set_caps_id and "return" in m:
            out.append(json.loads(cmd("src","migrate-set-parameters",{"max-bandwidth":1<<53},id="p1")))
            out.append(json.loads(ret("src","p1")))
    return out


def assemble(sv, dv, body, drop_src=()):
    out=src_start(sv, drop_src)
    dst_started=False
    for o in body:
        if isinstance(o,dict) and o["side"]=="dst" and not dst_started:
            out.append("# Prepare: the destination QEMU starts (-S -incoming defer); its version is")
            out.append("# checked against the cached probe, like any.")
            out.append(start_include("dst",dv)); dst_started=True
        out.append(line(o) if isinstance(o,dict) else o)
    return out

HDR=lambda sv,dv: [f"Composed from the recording ../qemumonitorjsondata/migrate-precopy-{sv}-{dv}.jsonl",
  "(qemurecord --scenario migrate, a minimal driver on real QEMUs): its connection",
  "setup replaced by the driver's start (capability probe from probe-VERSION.jsonl,",
  "then cont on the source), the recorder's final quit of the destination removed."]

for sv,dv in [("7.2","7.2"),("10.0","10.0"),("7.2","10.0")]:
    write(f"migrate-{sv}-{dv}.jsonl",
      [f"Happy path, precopy, QEMU {sv} -> QEMU {dv}, pause-before-switchover on the source:",
       "src stops in pre-switchover, gets migrate-continue, completes; the destination",
       "(-S, -incoming defer) gets cont only after the source reported completed;",
       "the source is asked for its final statistics and quit. ${port} is the migration port."]+HDR(sv,dv),
      assemble(sv,dv,happy(sv,dv)), {"src":"qemu-"+sv,"dst":"qemu-"+dv})

# the stream's buffers (QemuMigrationConfig.stream_buffer, or the peer's
# round trip): a 7.2 destination listens on a socket its daemon bound
# (getfd, tcp:fd:NAME), a 10.0 one gets the connection its daemon accepted
# (getfd, fd:NAME, sent once the source connected: the mock keeps each
# side's order only); the source daemon connects and passes the stream
def stream(sv, dv):
    out=[]
    for o in happy(sv,dv):
        m=o.get("msg",{})
        if m.get("execute") in ("migrate-incoming","migrate"):
            out.append({"ts":o["ts"],"side":o["side"],"dir":"send","msg":{"execute":"getfd","arguments":{"fdname":"migration-stream"},"id":"sfd"}})
            out.append({"ts":o["ts"],"side":o["side"],"dir":"recv","msg":{"return":{},"id":"sfd"}})
            m["arguments"]["uri"]=("tcp:" if o["side"]=="dst" and dv=="7.2" else "")+"fd:migration-stream"
        out.append(o)
    if dv=="7.2": return out
    # QEMU 10.0: the destination's getfd and migrate-incoming (with its
    # reply and the setup event around it) come once the source daemon
    # connected, which is right before it sends its own migrate.
    k=[i for i,o in enumerate(out) if o["side"]=="dst" and o.get("msg",{}).get("execute")=="getfd"][0]
    e=[i for i,o in enumerate(out) if o["side"]=="dst" and o["dir"]=="recv" and o["msg"].get("id")=="h3"][0]
    block=out[k:e+1]; out=out[:k]+out[e+1:]
    j=[i for i,o in enumerate(out) if o["side"]=="src" and o.get("msg",{}).get("execute")=="migrate"][0]
    return out[:j+1]+block+out[j+1:]
STREAM_DST={
  "7.2":["daemon binds the listening socket with that receive buffer and passes it",
         "(getfd, migrate-incoming tcp:fd:NAME);"],
  "10.0":["takes no listening socket: its daemon accepts the source daemon's",
          "connection and passes it (getfd, migrate-incoming fd:NAME);"]}
for dv in ("7.2","10.0"):
    write(f"stream-7.2-{dv}.jsonl",
      [f"Precopy 7.2 -> {dv} with a stream buffer agreed in Prepare: the destination"]+
      STREAM_DST[dv]+["the source daemon connects the stream with the same send buffer and",
       "passes it (getfd, migrate fd:NAME)."]+HDR("7.2",dv),
      assemble("7.2",dv,stream("7.2",dv)), {"src":"qemu-7.2","dst":"qemu-"+dv})

# no pause-before-switchover: hand-edited from 7.2-7.2
body=happy("7.2","7.2")
nb=[]; cont_id=None
for o in body:
    m=o.get("msg",{})
    if o["side"]=="src" and m.get("execute")=="migrate-set-capabilities":
        m["arguments"]["capabilities"]=[c for c in m["arguments"]["capabilities"] if c["capability"]!="pause-before-switchover"]
    if o["side"]=="src" and m.get("data",{}).get("status")=="pre-switchover": continue
    if o["side"]=="src" and m.get("execute")=="migrate-continue": cont_id=m["id"]; continue
    if o["side"]=="src" and o["dir"]=="recv" and m.get("id")==cont_id and "return" in m: continue
    nb.append(o)
write("migrate-nopause.jsonl",
  ["Happy path on a source QEMU without pause-before-switchover (before QEMU 2.11):",
   "HAND-EDITED from the 7.2 -> 7.2 recording: the capability is removed from the",
   "source's probe (probe-qemu-7.2-nopause.jsonl, which the domain start reuses) and",
   "from migrate-set-capabilities; QEMU goes active -> (STOP) device -> completed,",
   "with no pre-switchover and no migrate-continue."]+HDR("7.2","7.2"),
  assemble("7.2","7.2",nb,("pause-before-switchover",)), {"src":"qemu-7.2","dst":"qemu-7.2"})

# ---- the downtime ramp (QemuMigrationConfig.downtime_start_ms = 20) ----
def ramp(limits, passes, refused=()):
    """The 7.2 -> 7.2 happy path with the limit at 20 ms from the start;
    after active, hand-written MIGRATION_PASS events (QEMU's dirty syncs
    that did not end the migration), each answered by the raise in limits
    (none where absent); the recording's pass in `device` is made a high
    one, which must raise nothing."""
    out=[]; active=False
    for o in happy("7.2","7.2"):
        m=o.get("msg",{})
        if o["side"]=="src" and m.get("execute")=="migrate-set-parameters":
            m["arguments"]["downtime-limit"]=20
        if o["side"]=="src" and m.get("event")=="MIGRATION_PASS" and active:
            m["data"]["pass"]=passes[-1]+1
        out.append(o)
        if o["side"]=="src" and m.get("data",{}).get("status")=="active":
            active=True
            out.append("# Hand-written: passes that did not end the migration.")
            for p in passes:
                out.append(json.loads(R("src","recv",{"event":"MIGRATION_PASS","data":{"pass":p}})))
                if p in limits:
                    answer=err("src",f"d{p}","Parameter 'downtime-limit' refused by hand") if p in refused else ret("src",f"d{p}")
                    out+=[json.loads(cmd("src","migrate-set-parameters",{"downtime-limit":limits[p]},id=f"d{p}")), json.loads(answer)]
    return out
RAMP=["The limit starts at 20 ms (migration_downtime_start). Pass n >= 3 means the",
      "attempt at pass n - 1 did not end the migration: the limit doubles,",
      "20 << (n - 2), up to its top, and no pass raises it past the top or once",
      "QEMU left `active` (the recorded pass in `device` is renumbered to check",
      "that)."]+HDR("7.2","7.2")
write("downtime-ramp.jsonl",
  ["The downtime ramp without --max-downtime: up to QEMU's default, 300 ms."]+RAMP,
  assemble("7.2","7.2",ramp({3:40,4:80,5:160,6:300},[2,3,4,5,6,7])), {"src":"qemu-7.2","dst":"qemu-7.2"})
write("downtime-ramp-refused.jsonl",
  ["The downtime ramp when QEMU refuses a raise (error written by hand): a",
   "warning, the migration goes on, and the job reports the 20 ms QEMU kept."]+RAMP,
  assemble("7.2","7.2",ramp({3:40},[2,3],refused=(3,))), {"src":"qemu-7.2","dst":"qemu-7.2"})
write("downtime-ramp-max.jsonl",
  ["The downtime ramp with --max-downtime 100: 40, 80, then 100, and no more."]+RAMP,
  assemble("7.2","7.2",ramp({3:40,4:80,5:100},[2,3,4,5,6])), {"src":"qemu-7.2","dst":"qemu-7.2"})

# ---- failure scenarios, from the 7.2 -> 7.2 recording ----
B=happy("7.2","7.2")
def upto(pred):
    out=[]
    for o in B:
        out.append(o)
        if pred(o): return out
    raise Exception("no match")
is_ev=lambda side,st: (lambda o: o["side"]==side and o.get("msg",{}).get("data",{}).get("status")==st)
is_send=lambda side,c: (lambda o: o["side"]==side and o["dir"]=="send" and o["msg"].get("execute")==c)
prepare=upto(lambda o: o["side"]=="dst" and o.get("msg",{}).get("id")=="h3" and "return" in o["msg"])
to_active=upto(is_ev("src","active"))
to_pre=upto(is_ev("src","pre-switchover"))
to_completed=upto(is_ev("src","completed"))
to_dst_completed=upto(is_ev("dst","completed"))
S=lambda v: {"src":"qemu-7.2","dst":"qemu-7.2"}
BASE7=["Composed from the 7.2 -> 7.2 recording (see migrate-7.2-7.2.jsonl) up to the",
       "point named; what follows is written by hand after DESIGN.md §6 (QEMU 7.2",
       "as observed here)."]
dst_gone=['# The orchestrator kills the destination QEMU (invariant 3).', R("dst","close",by="client")]
dst_fails_itself=['# The destination QEMU sees the stream end and exits by itself (code 1).',
       mig("dst","failed"), R("dst","close")]
status=lambda running, st: {"status":st,"singlestep":False,"running":running}

def resumed(running=True, st=None):
    """The unwinding's end on the source: whether the guest runs is asked;
    cont only when it does not."""
    t=["# Unwound: whether the guest runs is asked, not assumed.",
       cmd("src","query-status",id="q1"),
       ret("src","q1",status(running, st or ("running" if running else "postmigrate")))]
    if not running:
        t+=["# It does not: the orchestrator resumes it.", cmd("src","cont",id="q2"),
            R("src","recv",ev("RESUME")), ret("src","q2")]
    return t

write("abort-prepare.jsonl",
  ["domjobabort on the source while it waits for the destination's Prepare:",
   "the destination QEMU was started and is killed; the source never migrated",
   "and keeps running."]+BASE7,
  assemble("7.2","7.2",prepare)+dst_gone+resumed(), S(0))

write("abort-perform.jsonl",
  ["domjobabort on the source while RAM moves (after MIGRATION active):",
   "migrate_cancel -> cancelling -> cancelled; the guest never stopped; the",
   "destination QEMU exits by itself when the stream ends."]+BASE7,
  assemble("7.2","7.2",to_active)+[cmd("src","migrate_cancel",id="c1"), ret("src","c1"),
   mig("src","cancelling"), mig("src","cancelled")]+dst_fails_itself+resumed(), S(0))

def abort_pre(name, comment, evs, running):
    tail=[cmd("src","migrate_cancel",id="c1"),
          "# QEMU had reached pre-switchover (guest stopped) when the cancel arrived.",
          R("src","recv",ev("STOP")), mig("src","pre-switchover"), ret("src","c1")]+evs+dst_fails_itself
    tail+=resumed(running, None if running else "finish-migrate")
    write(name, comment+BASE7, assemble("7.2","7.2",to_active)+tail, S(0))

PRE=["The abort is asked while the orchestrator still is in PERFORM and QEMU has",
     "already stopped the guest in pre-switchover: in this issue the orchestrator",
     "answers pre-switchover at once (nothing to tear down), so this race is the",
     "only way an abort meets QEMU's pre-switchover."]
abort_pre("abort-pre-switchover.jsonl",
  ["domjobabort in pre-switchover: migrate_cancel -> cancelling -> RESUME ->",
   "cancelled (DESIGN.md §6), then query-status shows the guest running."]+PRE,
  [mig("src","cancelling"), R("src","recv",ev("RESUME")), mig("src","cancelled")], True)
abort_pre("abort-pre-switchover-device-paused.jsonl",
  ["domjobabort in pre-switchover where QEMU emits `device` before `cancelled`",
   "and does not resume the guest: query-status says not running, so the",
   "orchestrator sends cont itself."]+PRE,
  [mig("src","cancelling"), mig("src","device"), mig("src","cancelled")], False)
abort_pre("abort-pre-switchover-device-running.jsonl",
  ["domjobabort in pre-switchover where QEMU emits `device` before `cancelled`",
   "and resumes the guest itself: query-status says running, no cont."]+PRE,
  [mig("src","cancelling"), mig("src","device"), R("src","recv",ev("RESUME")), mig("src","cancelled")], True)

write("failed-perform.jsonl",
  ["QEMU reports `failed` on the source while RAM moves: the orchestrator asks",
   "query-migrate for QEMU's reason and reports it; the guest never stopped and",
   "keeps running; the destination QEMU exits by itself."]+BASE7,
  assemble("7.2","7.2",to_active)+[mig("src","failed"),
   cmd("src","query-migrate",id="f1"),
   ret("src","f1",{"status":"failed","error-desc":"Unable to write to socket: Connection reset by peer"})]
   +dst_fails_itself+resumed(), S(0))

dp=assemble("7.2","7.2",prepare)
# cut before the migrate-incoming reply: the dst dies after receiving the command
i=[k for k,l in enumerate(dp) if '"migrate-incoming"' in l][0]
write("dst-dies-prepare.jsonl",
  ["The destination QEMU dies during Prepare, before migrate-incoming answers:",
   "Prepare fails, the source never migrated and keeps running."]+BASE7,
  dp[:i+1]+["# The destination QEMU dies.", R("dst","close")]+resumed(), S(0))

write("dst-dies-perform.jsonl",
  ["The destination QEMU dies while RAM moves: the source's QEMU fails the",
   "migration (its reason from query-migrate); the guest keeps running."]+BASE7,
  assemble("7.2","7.2",to_active)+["# The destination QEMU dies.", R("dst","close"), mig("src","failed"),
   cmd("src","query-migrate",id="f1"),
   ret("src","f1",{"status":"failed","error-desc":"Unable to write to socket: Connection reset by peer"})]+resumed(), S(0))

write("dst-dies-finish.jsonl",
  ["The destination QEMU dies after the source's `completed` and before `cont`:",
   "the destination provably never ran a vCPU (no RESUME, QEMU gone), so the",
   "source (postmigrate, not running) is resumed with cont (DESIGN.md §3 step 5)."]+BASE7,
  assemble("7.2","7.2",to_dst_completed)+["# The destination QEMU dies before the orchestrator's cont arrives.",
   R("dst","close")]+resumed(False), S(0))

write("peer-lost-perform.jsonl",
  ["The daemons lose each other while RAM moves: the source cancels its",
   "migration and keeps running; the destination daemon kills its QEMU."]+BASE7,
  assemble("7.2","7.2",to_active)+[cmd("src","migrate_cancel",id="c1"), ret("src","c1"),
   mig("src","cancelling"), mig("src","cancelled")]+dst_gone+resumed(), S(0))

write("peer-lost-finish.jsonl",
  ["The daemons lose each other after the source's `completed`, while Finish is",
   "in flight: whether the destination runs is unknown, so the source stays",
   "paused (never two writers) and the job fails saying so; the destination's",
   "QEMU had completed too: it stays paused, its job fails the same way."]+BASE7,
  assemble("7.2","7.2",to_dst_completed), S(0))

write("refused.jsonl",
  ["A migration refused at once (same host): only the source domain's start;",
   "the orchestrator sends nothing to any QEMU."],
  src_start("7.2"), {"src":"qemu-7.2"})

write("refused-prepare.jsonl",
  ["A migration the destination refuses in Prepare (a flag its QEMU cannot",
   "honour): only the source domain's start, then the unwinding's query-status;",
   "no destination QEMU is started."],
  src_start("7.2")+resumed(), {"src":"qemu-7.2"})

write("abort-dst-perform.jsonl",
  ["domjobabort on the destination while RAM moves: the destination kills its",
   "QEMU; the source's QEMU fails the migration (reason from query-migrate) and",
   "the source keeps running."]+BASE7,
  assemble("7.2","7.2",to_active)+dst_gone+[mig("src","failed"),
   cmd("src","query-migrate",id="f1"),
   ret("src","f1",{"status":"failed","error-desc":"Unable to write to socket: Connection reset by peer"})]+resumed(), S(0))

write("dst-dies-at-cont.jsonl",
  ["The destination QEMU dies as it receives `cont`, before answering it and",
   "without a RESUME. `cont` was sent: QEMU may have started a vCPU and lost",
   "the event with the process, so whether the guest ran there is unknown.",
   "The source stays paused (postmigrate) and nothing more is sent to it:",
   "never guess into two writers (DESIGN.md §2 invariant 1, §3 step 5)."]+BASE7,
  assemble("7.2","7.2",to_dst_completed)+[cmd("dst","cont",id="x1"),
   "# The destination QEMU dies.", R("dst","close")], S(0))

# ==== storage copy (issue 5) ===============================================
# From the real recordings migrate-storage-*.jsonl and storage-*.jsonl in
# ../qemumonitorjsondata/ (qemurecord --scenario storage*: a minimal driver
# doing the storage flow of DESIGN.md §3 on two disks, vda qcow2 and vdb raw).
# The names below are the orchestrator's; the recordings use the same.
DISKS=["vda","vdb"]
NBD_NODE=lambda t: f"migration-{t}-storage"
JOB=lambda t: f"mirror-{t}"
# The destination's capabilities with storage copy: late-block-activate lets
# the NBD server stop in parallel with migrate-continue (DESIGN.md §6).
DST_STORAGE_CAPS=[{"capability":"events","state":True},{"capability":"late-block-activate","state":True},
                  {"capability":"multifd","state":False}]
def srec(name):
    return [json.loads(l) for l in open(f'{M}/{name}') if l.startswith('{"ts"')]
MIRROR_BUF=4194304
def storage_body(name, pause=True, buf=MIRROR_BUF):
    """The recording without the recorder's connection setup and its final
    stop/quit of the destination, capabilities and parameters as the
    orchestrator sets them; each blockdev-mirror with buf-size buf (the
    test's QemuMigrationConfig.mirror_buf_size, handoverd's default), none
    when buf is 0."""
    body=[]; skip={"src":4,"dst":4}
    for o in srec(name):
        if skip.get(o["side"],0)>0:
            skip[o["side"]]-=1; continue
        body.append(o)
    out=[]; set_caps_id=None
    for o in body:
        m=o.get("msg",{})
        if o["side"]=="dst" and m.get("execute") in ("stop","quit"): break
        if m.get("execute")=="migrate-set-capabilities":
            if o["side"]=="src":
                c=[{"capability":"events","state":True}]
                if pause: c.append({"capability":"pause-before-switchover","state":True})
                c+=[{"capability":"auto-converge","state":False},{"capability":"multifd","state":False}]
                set_caps_id=m["id"]
            else:
                c=DST_STORAGE_CAPS
            m["arguments"]["capabilities"]=c
        if o["side"]=="src" and m.get("execute")=="blockdev-mirror" and buf:
            m["arguments"]["buf-size"]=buf
        if o["side"]=="dst" and m.get("execute")=="nbd-server-start":
            # The daemon binds the listening socket (Nagle off) and passes
            # it: getfd, then nbd-server-start on that fd.
            out.append({"ts":o["ts"],"side":"dst","dir":"send","msg":{"execute":"getfd","arguments":{"fdname":"handover-nbd"},"id":"hfd"}})
            out.append({"ts":o["ts"],"side":"dst","dir":"recv","msg":{"return":{},"id":"hfd"}})
            m["arguments"]={"addr":{"type":"fd","data":{"str":"handover-nbd"}}}
        out.append(o)
        if o["side"]=="src" and o["dir"]=="recv" and m.get("id")==set_caps_id and "return" in m:
            out.append(json.loads(cmd("src","migrate-set-parameters",{"max-bandwidth":1<<53},id="p1")))
            out.append(json.loads(ret("src","p1")))
    # The orchestrator sets the source's migration capabilities and
    # parameters while the mirrors copy (the recording's driver did it
    # after READY): those four lines move to just after the last
    # blockdev-mirror's reply, so that migrate follows the last READY.
    sm=lambda o,c: o["side"]=="src" and o["dir"]=="send" and o.get("msg",{}).get("execute")==c
    ks=[k for k,o in enumerate(out) if sm(o,"migrate-set-capabilities")]
    if ks:
        k=ks[0]; block=out[k:k+4]
        assert block[2].get("msg",{}).get("execute")=="migrate-set-parameters"
        out=out[:k]+out[k+4:]
        last_mirror=[o["msg"]["id"] for o in out if sm(o,"blockdev-mirror")][-1]
        r=[k for k,o in enumerate(out) if o["side"]=="src" and o["dir"]=="recv" and o.get("msg",{}).get("id")==last_mirror][0]
        out=out[:r+1]+block+out[r+1:]
    return out
def cut(body, pred, after=True):
    for k,o in enumerate(body):
        if pred(o): return body[:k+1] if after else body[:k]
    raise Exception("no match")
is_evdev=lambda name,dev: (lambda o: o["side"]=="src" and o.get("msg",{}).get("event")==name and o["msg"].get("data",{}).get("device")==dev)
def quiet_last_completed(body, ms=30):
    """The last mirror's BLOCK_JOB_COMPLETED at pre-switchover comes after
    30 ms of silence on the source: a migrate-continue (or anything else)
    sent before every mirror is gone fails the transcript."""
    k=max(i for i,o in enumerate(body) if o["side"]=="src" and o.get("msg",{}).get("event")=="BLOCK_JOB_COMPLETED")
    body[k]["quiet_ms"]=ms
    return body
SHDR=lambda f: [f"Composed from the recording ../qemumonitorjsondata/{f} (qemurecord",
  "--scenario storage*, a minimal driver on real QEMUs, a firmware guest with two",
  "disks: vda qcow2 16 MiB, vdb raw 8 MiB): its connection setup replaced by the",
  "driver's start (probe, then cont on the source), capabilities and parameters as",
  "the orchestrator sets them (on the source: while the mirrors copy, not after",
  "READY as the recording's driver did), the recorder's final stop/quit of the",
  "destination removed. The destination's NBD server: getfd of a listening socket",
  "the daemon bound (Nagle off, qemu_migration.c dst_nbd_listen), then",
  "nbd-server-start on that fd; the recording has QEMU's own inet listener there."]
S7={"src":"qemu-7.2","dst":"qemu-7.2"}
def jev(name, dev, **data):
    d={"device":dev}; d.update(data)
    return R("src","recv",{"event":name,"data":d})
def force_cancel(ts, cancelled=True):
    """Mirrors still live after a failure: force-cancelled all at once."""
    out=["# Unwinding: every live mirror force-cancelled at once."]
    for k,t in enumerate(ts): out.append(cmd("src","block-job-cancel",{"device":JOB(t),"force":True},id=f"fc{k}"))
    for k,t in enumerate(ts):
        out.append(ret("src",f"fc{k}"))
        if cancelled: out.append(jev("BLOCK_JOB_CANCELLED",JOB(t),len=16777216 if t=="vda" else 8388608,offset=16777216 if t=="vda" else 8388608,speed=0,type="mirror"))
    return out
def del_nodes():
    out=["# The NBD client nodes go."]
    for k,t in enumerate(DISKS): out+=[cmd("src","blockdev-del",{"node-name":NBD_NODE(t)},id=f"bd{k}"), ret("src",f"bd{k}")]
    return out
def mirror_error(t, size):
    """What QEMU 7.2 says when a mirror's write fails (recorded in
    storage-cancel-precopy-7.2-7.2.jsonl: BLOCK_JOB_ERROR, then an errored
    BLOCK_JOB_COMPLETED, no CANCELLED)."""
    return [jev("BLOCK_JOB_ERROR",JOB(t),operation="write",action="report"),
            jev("BLOCK_JOB_COMPLETED",JOB(t),len=size+65536,offset=size,speed=0,type="mirror",error="Input/output error")]
SIZES={"vda":16777216,"vdb":8388608}

for sv,dv in [("7.2","7.2"),("10.0","10.0"),("7.2","10.0")]:
    f=f"migrate-storage-{sv}-{dv}.jsonl"
    write(f"storage-{sv}-{dv}.jsonl",
      [f"Storage copy (--copy-storage-all), two disks, QEMU {sv} -> QEMU {dv}: dst NBD server",
       "and one writable export per disk; src NBD client node and mirror per disk,",
       "both READY before migrate; at pre-switchover one batch of block-job-cancel",
       "(both sent back to back: the first reply is held until the second is sent),",
       "one migrate-continue only once both mirrors are gone (quiet_ms on the last",
       "BLOCK_JOB_COMPLETED), the destination's nbd-server-stop in parallel (the",
       "source's completed is held until it was sent), dst cont after src completed,",
       "src blockdev-del of its NBD client nodes after that."]+SHDR(f),
      assemble(sv,dv,quiet_last_completed(storage_body(f))), {"src":"qemu-"+sv,"dst":"qemu-"+dv})

write("storage-qemu-buf-size.jsonl",
  ["Storage copy as storage-7.2-7.2.jsonl, with QemuMigrationConfig.mirror_buf_size",
   "0: each blockdev-mirror without buf-size, QEMU's own buffer."]+SHDR("migrate-storage-7.2-7.2.jsonl"),
  assemble("7.2","7.2",quiet_last_completed(storage_body("migrate-storage-7.2-7.2.jsonl",buf=0))),
  {"src":"qemu-7.2","dst":"qemu-7.2"})

SB=storage_body("migrate-storage-7.2-7.2.jsonl")
s_prepare=cut(SB, lambda o: o["side"]=="dst" and o.get("msg",{}).get("execute")=="migrate-incoming")
s_ready=cut(SB, is_evdev("BLOCK_JOB_READY",JOB("vdb")))
s_first_ready=cut(SB, is_evdev("BLOCK_JOB_READY",JOB("vda")))
# both mirrors started and the migration settings in (the orchestrator
# sends them right after the mirrors)
s_mirrors_sent=cut(SB, lambda o: o["side"]=="src" and o["dir"]=="recv" and o.get("msg",{}).get("id")=="p1")
s_active=cut(SB, is_ev("src","active"))
s_completed_both=cut(SB, is_ev("dst","completed"))
SBASE=["Composed from the 7.2 -> 7.2 storage recording (storage-7.2-7.2.jsonl, from",
       "../qemumonitorjsondata/migrate-storage-7.2-7.2.jsonl) up to the point named;",
       "the rest is written by hand after DESIGN.md §6 and the recorded cancel",
       "variants (../qemumonitorjsondata/storage-*-7.2-7.2.jsonl)."]
A=lambda body: assemble("7.2","7.2",body)

# without pause-before-switchover: mirrors cancelled after completed
nb=[]; skipping=False
for o in storage_body("migrate-storage-7.2-7.2.jsonl", pause=False):
    m=o.get("msg",{})
    if o["side"]=="src" and m.get("data",{}).get("status")=="pre-switchover":
        skipping=True; continue
    if skipping:
        if o["side"]=="src" and m.get("data",{}).get("status")=="completed":
            skipping=False; nb.append(o); continue
        # keep what the destination says; drop the src's cancels and continue
        if o["side"]=="dst" and m.get("execute")!="nbd-server-stop" and m.get("event")!="BLOCK_EXPORT_DELETED" and not (o["dir"]=="recv" and m.get("id")=="h7"):
            nb.append(o)
        if o["side"]=="src" and m.get("event") in ("MIGRATION","MIGRATION_PASS") : nb.append(o)
        continue
    nb.append(o)
# after completed: cancel both (now), the dst's NBD server stops, then cont
k=[i for i,o in enumerate(nb) if o["side"]=="src" and o.get("msg",{}).get("data",{}).get("status")=="completed"][0]
tail=[R("src","send",{"execute":"block-job-cancel","arguments":{"device":JOB(t)},"id":f"nc{i}"}) for i,t in enumerate(DISKS)]
tail+=[ret("src","nc0"),jev("BLOCK_JOB_COMPLETED",JOB("vda"),len=SIZES["vda"],offset=SIZES["vda"],speed=0,type="mirror"),
       ret("src","nc1"),jev("BLOCK_JOB_COMPLETED",JOB("vdb"),len=SIZES["vdb"],offset=SIZES["vdb"],speed=0,type="mirror")]
J=lambda l: json.loads(l)
rest=nb[k+1:]
ci=[i for i,o in enumerate(rest) if o["side"]=="dst" and o.get("msg",{}).get("execute")=="cont"][0]
# the destination's NBD server goes before its cont
rest=rest[:ci]+[J(cmd("dst","nbd-server-stop",id="ns")),J(R("dst","recv",{"event":"BLOCK_EXPORT_DELETED","data":{"id":"drive-vdb-fmt"}})),
                J(R("dst","recv",{"event":"BLOCK_EXPORT_DELETED","data":{"id":"drive-vda-fmt"}})),J(ret("dst","ns"))]+rest[ci:]
write("storage-nopause.jsonl",
  ["Storage copy on a source QEMU without pause-before-switchover: HAND-EDITED",
   "from the 7.2 -> 7.2 storage recording: no pre-switchover, QEMU goes active ->",
   "device -> completed with the mirrors still running; after completed both",
   "mirrors are cancelled at once (the unsafe order, the command warns), the",
   "destination's NBD server stops before its cont."]+SHDR("migrate-storage-7.2-7.2.jsonl"),
  assemble("7.2","7.2",nb[:k+1]+[J(l) for l in tail]+rest,("pause-before-switchover",)), S7)

write("storage-abort-mirror.jsonl",
  ["domjobabort on the source in MIRROR (vda READY, vdb still copying): both",
   "mirrors force-cancelled at once (BLOCK_JOB_CANCELLED, as recorded in",
   "storage-abort-mirror-7.2-7.2.jsonl), the NBD client nodes deleted, the",
   "destination QEMU killed (its created images removed), the guest never stopped."]+SBASE,
  A(s_first_ready)+dst_gone+resumed()+force_cancel(DISKS)+del_nodes(), S7)

write("storage-abort-perform.jsonl",
  ["domjobabort while RAM moves with both mirrors READY: migrate_cancel ->",
   "cancelled; the destination QEMU exits by itself; a guest write then fails",
   "vda's mirror (BLOCK_JOB_ERROR + errored BLOCK_JOB_COMPLETED, recorded in",
   "storage-cancel-precopy-7.2-7.2.jsonl); vdb is force-cancelled; NBD client nodes",
   "deleted; the guest keeps running."]+SBASE,
  A(s_active)+[cmd("src","migrate_cancel",id="c1"), ret("src","c1"), mig("src","cancelling"), mig("src","cancelled")]
   +dst_fails_itself+mirror_error("vda",SIZES["vda"])+resumed()+force_cancel(["vdb"])+del_nodes(), S7)

# abort while the orchestrator waits for the cancelled mirrors in pre-switchover
pre=cut(SB, lambda o: o["side"]=="src" and o["dir"]=="send" and o.get("msg",{}).get("execute")=="block-job-cancel" and o["msg"]["arguments"]["device"]==JOB("vdb"))
# the recorded ids of the two block-job-cancel commands: their replies follow
CANCEL_IDS=[o["msg"]["id"] for o in pre if o["side"]=="src" and o["dir"]=="send" and o["msg"].get("execute")=="block-job-cancel"]
write("storage-abort-pre-switchover.jsonl",
  ["domjobabort in pre-switchover while the orchestrator waits for its cancelled",
   "mirrors: migrate_cancel (QEMU leaves pre-switchover: cancelling, RESUME,",
   "cancelled, DESIGN.md §6); the cancelled READY mirrors complete as usual; no",
   "migrate-continue; NBD client nodes deleted; query-status shows the guest running.",
   "The mirrors' completion is held until migrate_cancel was sent."]+SBASE,
  A(pre)+[cmd("src","migrate_cancel",id="c1"),
   ret("src",CANCEL_IDS[0]), jev("BLOCK_JOB_COMPLETED",JOB("vda"),len=SIZES["vda"],offset=SIZES["vda"],speed=0,type="mirror"),
   ret("src",CANCEL_IDS[1]), jev("BLOCK_JOB_COMPLETED",JOB("vdb"),len=SIZES["vdb"],offset=SIZES["vdb"],speed=0,type="mirror"),
   ret("src","c1"), mig("src","cancelling"), R("src","recv",ev("RESUME")), mig("src","cancelled")]
   +dst_fails_itself+resumed()+del_nodes(), S7)

write("storage-mirror-error-mirror.jsonl",
  ["A mirror fails while the orchestrator waits for READY (vda: BLOCK_JOB_ERROR",
   "and an errored BLOCK_JOB_COMPLETED, as QEMU 7.2 reports a failed write): the",
   "migration aborts cleanly: vdb force-cancelled, NBD client nodes deleted, the",
   "destination QEMU killed, the guest keeps running."]+SBASE,
  A(s_mirrors_sent)+mirror_error("vda",SIZES["vda"])+dst_gone+resumed()+force_cancel(["vdb"])+del_nodes(), S7)

write("storage-mirror-error-perform.jsonl",
  ["A mirror fails while RAM moves (vda: BLOCK_JOB_ERROR + errored",
   "BLOCK_JOB_COMPLETED): the disk copy is broken, so the migration is",
   "cancelled (migrate_cancel), vdb force-cancelled, NBD client nodes deleted;",
   "the destination QEMU exits by itself; the guest keeps running."]+SBASE,
  A(s_active)+mirror_error("vda",SIZES["vda"])+[cmd("src","migrate_cancel",id="c1"), ret("src","c1"),
   mig("src","cancelling"), mig("src","cancelled")]+dst_fails_itself+resumed()+force_cancel(["vdb"])+del_nodes(), S7)

write("storage-failed-perform.jsonl",
  ["QEMU reports `failed` while RAM moves with both mirrors READY: reason from",
   "query-migrate; both mirrors force-cancelled; NBD client nodes deleted; the",
   "destination QEMU exits by itself; the guest keeps running."]+SBASE,
  A(s_active)+[mig("src","failed"), cmd("src","query-migrate",id="f1"),
   ret("src","f1",{"status":"failed","error-desc":"Unable to write to socket: Connection reset by peer"})]
   +dst_fails_itself+resumed()+force_cancel(DISKS)+del_nodes(), S7)

sp=A(s_prepare)
write("storage-dst-dies-prepare.jsonl",
  ["The destination QEMU dies during Prepare, before migrate-incoming answers",
   "(its NBD server and exports were set up): Prepare fails, the images it",
   "created are removed; the source never mirrored and keeps running."]+SBASE,
  sp+["# The destination QEMU dies.", R("dst","close")]+resumed(), S7)

write("storage-dst-dies-mirror.jsonl",
  ["The destination QEMU dies while the mirrors copy: both mirrors fail",
   "(BLOCK_JOB_ERROR + errored BLOCK_JOB_COMPLETED), the NBD client nodes are",
   "deleted, the guest keeps running."]+SBASE,
  A(s_mirrors_sent)+["# The destination QEMU dies.", R("dst","close")]+mirror_error("vda",SIZES["vda"])
   +mirror_error("vdb",SIZES["vdb"])+resumed()+del_nodes(), S7)

write("storage-dst-dies-perform.jsonl",
  ["The destination QEMU dies while RAM moves: the source's QEMU fails the",
   "migration (reason from query-migrate); the idle READY mirrors are",
   "force-cancelled, NBD client nodes deleted; the guest keeps running."]+SBASE,
  A(s_active)+["# The destination QEMU dies.", R("dst","close"), mig("src","failed"),
   cmd("src","query-migrate",id="f1"),
   ret("src","f1",{"status":"failed","error-desc":"Unable to write to socket: Connection reset by peer"})]
   +resumed()+force_cancel(DISKS)+del_nodes(), S7)

write("storage-dst-dies-finish.jsonl",
  ["The destination QEMU dies after the source's `completed` and before `cont`:",
   "it never ran a vCPU, so the source is resumed; the mirrors were already",
   "gone (cancelled at pre-switchover); the NBD client nodes are deleted."]+SBASE,
  A(s_completed_both)+["# The destination QEMU dies before the orchestrator's cont arrives.",
   R("dst","close")]+del_nodes()+resumed(False), S7)

# ==== postcopy (issue 6) ====================================================
# From the 7.2 -> 7.2 recording up to the source's `active`; the postcopy
# part is written by hand after what QEMU 7.2 did here under a minimal QMP
# script (postcopy-ram on both sides, pause-before-switchover on the source):
# migrate-start-postcopy -> STOP -> pre-switchover -> migrate-continue ->
# postcopy-active (src) -> postcopy-active (dst) -> cont on the destination
# -> RESUME there -> completed on both.
def postcopy_caps(body):
    out=[]
    for o in body:
        m=o.get("msg",{})
        if m.get("execute")=="migrate-set-capabilities":
            m=json.loads(json.dumps(m)); o=dict(o); o["msg"]=m
            m["arguments"]["capabilities"].append({"capability":"postcopy-ram","state":True})
        out.append(o)
    return out
PC=postcopy_caps(to_active)
PC_HDR=["The postcopy part is written by hand after QEMU 7.2 as observed here (a",
        "minimal QMP script, pause-before-switchover on): migrate-start-postcopy ->",
        "STOP -> pre-switchover -> migrate-continue -> postcopy-active on the source;",
        "the destination's postcopy-active comes next and it is resumed at once."]
pc_switch=["# The first full pass is done: --postcopy-after-precopy switches.",
    R("src","recv",{"event":"MIGRATION_PASS","data":{"pass":2}}),
    cmd("src","migrate-start-postcopy",id="pc1"), ret("src","pc1"),
    R("src","recv",ev("STOP")), mig("src","pre-switchover"),
    cmd("src","migrate-continue",{"state":"pre-switchover"},id="pc2"), ret("src","pc2"),
    mig("src","postcopy-active"),
    "# The destination runs the guest at once: cont at its own postcopy-active.",
    mig("dst","postcopy-active"), cmd("dst","cont",id="pc3"),
    R("dst","recv",ev("RESUME")), ret("dst","pc3")]
write("postcopy-7.2-7.2.jsonl",
  ["Postcopy happy path, QEMU 7.2 -> 7.2, --postcopy --postcopy-after-precopy."]+BASE7+PC_HDR+
  ["The source then completes, Finish finds the destination running (no second",
   "cont), the source is asked for its statistics and quit."],
  assemble("7.2","7.2",PC)+pc_switch+[mig("src","completed"), mig("dst","completed"),
   cmd("src","query-migrate",id="pc4"),
   ret("src","pc4",{"status":"completed","setup-time":2,"downtime":3,"total-time":900,
       "ram":{"total":134750208,"postcopy-requests":6,"dirty-sync-count":2,"remaining":0,
              "transferred":1000000,"postcopy-bytes":400000,"duplicate":32000,"normal":200,
              "normal-bytes":819200,"mbps":100.0,"dirty-pages-rate":0}}),
   cmd("src","quit",id="pc5"), R("src","recv",{"event":"SHUTDOWN","data":{"guest":False,"reason":"host-qmp-quit"}}),
   ret("src","pc5"), R("src","close")], S(0))

# ==== postcopy recovery (issue 6) ===========================================
# From the real recordings recordings/postcopy-cut-qemu-V-qemu-V{,-dst}.jsonl:
# tests/qemudrivertest /driver/migrate-postcopy-cut/qemu-V run with
# HANDOVER_TEST_RECORD_DIR (the orchestrator's flight recorder, both QEMUs on
# one clock, a firmware guest, 1 MiB/s postcopy through a TCP relay the test
# cuts in postcopy-active). That run: cut -> both postcopy-paused -> a
# recovery attempt to a closed port (fails) -> a good one -> postcopy-active
# -> a silent drop, the stall check's migrate-pause -> a fresh recovery ->
# completed. The two files are merged by their timestamps; the periodic
# query-migrate of the recording's progress (100 ms) and stall check are
# dropped (the scenarios configure neither), the URIs become placeholders.
RD=os.path.join(D,'recordings')
def rec_merged(v):
    out=[]
    for f,side in [(f'postcopy-cut-qemu-{v}-qemu-{v}.jsonl','src'),(f'postcopy-cut-qemu-{v}-qemu-{v}-dst.jsonl','dst')]:
        for l in open(os.path.join(RD,f)):
            o=json.loads(l)
            if o["dir"] in ("open",): continue
            o["side"]=side
            out.append(o)
    out.sort(key=lambda o:o["ts"])
    return out
def without_polls(recs, keep_ids=()):
    """Drop query-migrate and its reply unless its id is kept."""
    drop=set(o["msg"]["id"] for o in recs if o["dir"]=="send" and o["msg"].get("execute")=="query-migrate" and o["msg"]["id"] not in keep_ids)
    return [o for o in recs if not (o.get("msg",{}).get("id") in drop and (o["dir"]=="send" or "return" in o["msg"] or "error" in o["msg"]))]
def first(recs, pred, start=0):
    for k in range(start,len(recs)):
        if pred(recs[k]): return k
    raise Exception("no match")
st=lambda o: o.get("msg",{}).get("data",{}).get("status") if o.get("msg",{}).get("event")=="MIGRATION" else None
ex=lambda o: o.get("msg",{}).get("execute") if o["dir"]=="send" else None
def strip(o, uris):
    o=json.loads(json.dumps(o)); o.pop("ts",None)
    a=o.get("msg",{}).get("arguments")
    if a and "uri" in a: a["uri"]=uris[a["uri"]]
    return o
BAD_URI="tcp:127.0.0.1:1"   # the harness's failed attempt (qemumigrationtest.c RECOVER_BAD_URI)

def recover_parts(v):
    """The recording cut into: the switch to postcopy, the break, the failed
    attempt, the good attempt after it, a fresh good attempt, the end."""
    R0=rec_merged(v)
    # the final statistics query after completed is the orchestrator's own
    k_done=first(R0, lambda o: o["side"]=="src" and st(o)=="completed")
    k_q=first(R0, lambda o: o["side"]=="src" and ex(o)=="query-migrate", k_done)
    recs=without_polls(R0, keep_ids=(R0[k_q]["msg"]["id"],))
    # 7.2's bound on the failed attempt: its query-migrate (the first one
    # after the first resume) is kept too
    k_res=first(R0, lambda o: o["side"]=="src" and ex(o)=="migrate" and o["msg"]["arguments"].get("resume"))
    bound_q=None
    if v=="7.2":
        kq=first(R0, lambda o: o["side"]=="src" and ex(o)=="query-migrate", k_res)
        bound_q=R0[kq]["msg"]["id"]
        recs=without_polls(R0, keep_ids=(R0[k_q]["msg"]["id"],bound_q))
    i_sw=first(recs, lambda o: o["side"]=="src" and ex(o)=="migrate-start-postcopy")
    i_brk=first(recs, lambda o: st(o)=="postcopy-paused")
    i_brk_end=max(first(recs, lambda o: o["side"]==s and st(o)=="postcopy-paused") for s in ("src","dst"))
    i_rec1=first(recs, lambda o: o["side"]=="dst" and ex(o)=="migrate-recover")
    resumes=[k for k,o in enumerate(recs) if o["side"]=="src" and ex(o)=="migrate" and o["msg"]["arguments"].get("resume")]
    i_pause=first(recs, lambda o: o["side"]=="src" and ex(o)=="migrate-pause")
    i_rec3=first(recs, lambda o: o["side"]=="dst" and ex(o)=="migrate-recover", i_pause)
    act_after=lambda k: max(first(recs, lambda o: o["side"]==s and st(o)=="postcopy-active", k) for s in ("src","dst"))
    i_end=min(first(recs, lambda o: o["side"]==s and st(o)=="completed") for s in ("src","dst"))
    rport=recs[i_rec1]["msg"]["arguments"]["uri"]; rport3=recs[i_rec3]["msg"]["arguments"]["uri"]
    uris={rport:"tcp:127.0.0.1:${rport}", rport3:"tcp:127.0.0.1:${rport}",
          recs[resumes[0]]["msg"]["arguments"]["uri"]:BAD_URI,
          recs[resumes[1]]["msg"]["arguments"]["uri"]:"tcp:127.0.0.1:${rport}",
          recs[resumes[2]]["msg"]["arguments"]["uri"]:"tcp:127.0.0.1:${rport}"}
    S_=lambda a,b: [line(strip(o,uris)) for o in recs[a:b]]
    return {
      "switch": S_(i_sw, i_brk),
      "break": S_(i_brk, i_brk_end+1),
      "fail": S_(i_rec1, resumes[1]),
      "ok_after_fail": S_(resumes[1], act_after(resumes[1])+1),
      "ok_fresh": S_(i_rec3, act_after(i_rec3)+1),
      "end": S_(i_end, len(recs)),
    }

def pc_head(v):
    """The domain start and precopy up to the source's active (the
    orchestrator's own recording of that part, migrate-V-V), postcopy-ram
    set on both sides; the first full pass done: --postcopy-after-precopy
    switches."""
    body=happy(v,v)
    k=[i for i,o in enumerate(body) if o["side"]=="src" and o.get("msg",{}).get("data",{}).get("status")=="active"][0]
    return assemble(v,v,postcopy_caps(body[:k+1]))+["# The first full pass is done: --postcopy-after-precopy switches (by hand).",
        R("src","recv",{"event":"MIGRATION_PASS","data":{"pass":2}})]

REC_HDR=lambda v: [f"Composed (compose.py) from the orchestrator's recording of QEMU {v} -> {v}",
  f"recordings/postcopy-cut-qemu-{v}-qemu-{v}{{,-dst}}.jsonl (qemudrivertest",
  f"/driver/migrate-postcopy-cut/qemu-{v} with HANDOVER_TEST_RECORD_DIR): the",
  f"precopy part from migrate-{v}-{v}.jsonl with postcopy-ram on both sides and a",
  "hand-written MIGRATION_PASS 2; from migrate-start-postcopy on, the recorded",
  "exchanges of both QEMUs (progress polls dropped, URIs as placeholders:",
  "${rport} is the destination's migrate-recover port)."]
SV=lambda v: {"src":"qemu-"+v,"dst":"qemu-"+v}
for v in ("10.0","7.2"):
    P=recover_parts(v)
    seen = ("the source says postcopy-paused -> postcopy-recover-setup -> postcopy-recover ->"
            " postcopy-active; the destination stays postcopy-paused after migrate-recover"
            " until the source connects, then postcopy-recover -> postcopy-active") if v=="10.0" else \
           ("no postcopy-recover-setup: the source goes postcopy-paused -> postcopy-recover ->"
            " postcopy-active; the destination says `setup` after migrate-recover, then"
            " postcopy-recover -> postcopy-active")
    write(f"recover-{v}.jsonl",
      [f"Postcopy recovery, QEMU {v} -> {v}: the link breaks in postcopy-active, both",
       "sides postcopy-paused; recovery: migrate-recover on the destination, then",
       "migrate resume:true on the source to that URI; "+seen+"; completed; the",
       "source is never resumed (no cont), the destination had its one cont."]+REC_HDR(v),
      pc_head(v)+P["switch"]+["# The relay is cut: both sides postcopy-paused (recorded)."]+P["break"]
        +["# The recovery (recorded: the run's third, after its stall-check pause)."]+P["ok_fresh"]
        +["# The end (recorded): final statistics, quit."]+P["end"], SV(v))
    fail = ("postcopy-recover-setup -> postcopy-paused on the source, each with its event"
            " (the destination says nothing)") if v=="10.0" else \
           ("nothing at all: no event on either side (the destination had said `setup` at"
            " migrate-recover); the orchestrator's bound (postcopy_stall_s) fires and its"
            " query-migrate shows postcopy-paused")
    write(f"recover-fail-{v}.jsonl",
      [f"Postcopy recovery on QEMU {v} -> {v} with a failed attempt first: the",
       "attempt's migrate resume:true goes to a closed port (the test rewrote the",
       "URI the destination gave; here the harness's tcp:127.0.0.1:1) and QEMU says",
       fail+";",
       "the destination still listens, so the second attempt gets the same URI",
       "without a new migrate-recover (QEMU refuses a second one), and recovers."]+REC_HDR(v),
      pc_head(v)+P["switch"]+["# The relay is cut: both sides postcopy-paused (recorded)."]+P["break"]
        +["# The failed attempt (recorded)."]+P["fail"]
        +["# The good attempt (recorded)."]+P["ok_after_fail"]
        +["# The end (recorded): final statistics, quit."]+P["end"], SV(v))
