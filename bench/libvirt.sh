# shellcheck shell=bash
# shellcheck disable=SC2154,SC2034 # $work, $top, ... come from bench/run, lv_reason goes to it
# The libvirt contender of bench/run (sourced by it; docs/bench.md): two
# libvirtd 9.0 on this machine as two hosts, driven by
# virsh migrate --live --copy-storage-all.
#
# What it takes (issue 7): libvirt refuses to migrate to its own host, so
# each libvirtd runs in its own UTS namespace (its own hostname) with its
# own host_uuid, its own /etc/libvirt, /run/libvirt, /var/lib/libvirt,
# /var/cache/libvirt and /var/log/libvirt (a mount namespace with bind
# mounts), in its own network namespace, the two joined by a veth pair;
# security_driver "none", no cgroups, no namespaces in qemu.conf; and
# under a child-subreaper wrapper (bench/subreaper.py), since PID 1 here
# reaps orphans only every ~2 s and libvirtd waits for its QEMUs' reaping.
# Each host's /var/lib/libvirt/images is private, so the guest's disk has
# the same path on both "hosts"; the destination image is created before
# the migration (libvirt wants it to exist).
#
# Figures come from libvirtd's debug log of the QMP traffic
# (QEMU_MONITOR_SEND_MSG, QEMU_MONITOR_RECV_REPLY/EVENT), turned into
# recordings by analyze.py: the log's clock has millisecond resolution,
# so libvirt's gaps are known to +-1 ms; the guest pause uses QEMU's own
# event timestamps (µs) as for the other contenders. Logging the monitor
# at debug level costs libvirtd a little time; that is said in the report.
#
# Uses from bench/run: $work, $top, $samples, $mem_mib, $n_disks, analyze,
# make_image, proc_figures, now_us, qemu_path, uuid_of; for the busy guest
# $workload, $guest_dir, busy_append, wait_line, busy_verify, verify_json.

lv_tag=hb$$
lv_net=10.231.77
lv_started=()
lv_reason=""
declare -A lv_pid=()

# libvirt_check: install libvirt when missing; fails with the reason in
# $lv_reason.
libvirt_check() {
    local missing=()
    for p in libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients; do
        dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "bench: installing ${missing[*]} (no recommends; no service is started)" >&2
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
                "${missing[@]}" >"$work/apt.log" 2>&1; then
            lv_reason="apt-get install ${missing[*]} failed (see $work/apt.log)"
            return 1
        fi
    fi
    # libvirtd's QEMU driver looks its build-time user up before it reads
    # qemu.conf (libvirt-daemon-system would create it, with services).
    if ! getent passwd libvirt-qemu >/dev/null; then
        echo "bench: creating the system user libvirt-qemu libvirtd needs" >&2
        getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
        useradd -r -g libvirt-qemu -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu ||
            { lv_reason="cannot create the user libvirt-qemu"; return 1; }
    fi
    for t in libvirtd virsh ip unshare; do
        command -v "$t" >/dev/null || { lv_reason="$t is not installed"; return 1; }
    done
    if [ "$(id -u)" != 0 ]; then
        lv_reason="needs root (network and mount namespaces)"
        return 1
    fi
    if ! ip netns add "$lv_tag-probe" 2>/dev/null; then
        lv_reason="cannot create network namespaces here"
        return 1
    fi
    ip netns del "$lv_tag-probe"
}

# lv_host NAME INDEX: a libvirtd in namespaces of its own.
lv_host() {
    local h=$1 i=$2 root=$work/libvirt/$1 ns=$lv_tag-$1 sock d
    mkdir -p "$root"/{etc,run,lib/images,cache,log}
    cp -a /etc/libvirt/. "$root/etc/"
    cat >"$root/etc/libvirtd.conf" <<EOF
listen_tls = 0
listen_tcp = 1
listen_addr = "$lv_net.$i"
auth_tcp = "none"
auth_unix_rw = "none"
auth_unix_ro = "none"
host_uuid = "$(cat /proc/sys/kernel/random/uuid)"
log_filters = "1:qemu.qemu_monitor 1:qemu.qemu_monitor_json 3:*"
# A scale batch runs up to 64 migrations at once, each holding a worker
# for its whole Perform call: the default of 20 would queue the rest.
max_workers = 80
log_outputs = "1:file:/var/log/libvirt/libvirtd.log"
EOF
    cat >"$root/etc/qemu.conf" <<EOF
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
stdio_handler = "file"
migration_host = "$lv_net.$i"
# Each storage migration takes two ports of this range on the destination
# (NBD and migration): the default 64 ports would allow 32 at once.
migration_port_min = 49152
migration_port_max = 49407
EOF
    # A shell in the namespaces binds the private directories, names the
    # host, and becomes the subreaper that runs libvirtd.
    # shellcheck disable=SC2016 # expanded by that shell
    ip netns exec "$ns" unshare --uts --mount --propagation private -- bash -c '
        set -e
        root=$1; host=$2; top=$3
        hostname "$host"
        mount --bind "$root/etc" /etc/libvirt
        mkdir -p /run/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt
        mount --bind "$root/run" /run/libvirt
        mount --bind "$root/lib" /var/lib/libvirt
        mount --bind "$root/cache" /var/cache/libvirt
        mount --bind "$root/log" /var/log/libvirt
        exec python3 "$top/bench/subreaper.py" "$root/libvirtd.pid" \
            libvirtd --listen --pid-file /run/libvirt/libvirtd-bench.pid
    ' lv "$root" "bench-$h" "$top" >"$root/libvirtd.out" 2>&1 &
    lv_started+=("$!")
    sock=$root/run/libvirt-sock
    # libvirtd says nothing when it is ready (no notify socket without
    # systemd): wait for its socket to answer, bounded (the first start
    # probes QEMU's capabilities).
    for ((d = 0; d < 600; d++)); do
        if [ -S "$sock" ] && virsh -q -c "qemu+unix:///system?socket=$sock" version >/dev/null 2>&1; then
            lv_pid[$h]=$(cat "$root/libvirtd.pid")
            return 0
        fi
        kill -0 "${lv_started[-1]}" 2>/dev/null || break
        sleep 0.1
    done
    lv_reason="libvirtd '$h' did not start or answer within 60 s: $(
        { cat "$root/libvirtd.out"; grep -a ': error : ' "$root/log/libvirtd.log"; } 2>/dev/null |
        tail -n 2 | tr '\n' ' ')"
    return 1
}

lv_virsh() { local h=$1; shift; virsh -q -c "qemu+unix:///system?socket=$work/libvirt/$h/run/libvirt-sock" "$@"; }

libvirt_teardown() {
    local p
    for p in "${lv_started[@]}"; do
        kill -TERM "$p" 2>/dev/null
    done
    for p in "${lv_pid[@]}"; do
        kill -TERM "$p" 2>/dev/null
    done
    for p in "${lv_started[@]}"; do
        wait "$p" 2>/dev/null
    done
    ip netns del "$lv_tag-src" 2>/dev/null
    ip netns del "$lv_tag-dst" 2>/dev/null
    lv_started=()
}

# libvirt_start: the two hosts; fails with the reason in $lv_reason.
libvirt_start() {
    if ! ip netns add "$lv_tag-src" || ! ip netns add "$lv_tag-dst"; then
        lv_reason="ip netns add failed"
        return 1
    fi
    libvirt_cleanup+=(libvirt_teardown)
    ip link add "${lv_tag}s" type veth peer name "${lv_tag}d" || { lv_reason="cannot create a veth pair"; return 1; }
    ip link set "${lv_tag}s" netns "$lv_tag-src"
    ip link set "${lv_tag}d" netns "$lv_tag-dst"
    ip -n "$lv_tag-src" addr add "$lv_net.1/24" dev "${lv_tag}s"
    ip -n "$lv_tag-dst" addr add "$lv_net.2/24" dev "${lv_tag}d"
    for h in src dst; do
        ip -n "$lv_tag-$h" link set lo up
        ip -n "$lv_tag-$h" link set "${lv_tag}${h:0:1}" up
    done
    lv_host src 1 || return 1
    lv_host dst 2 || return 1
}

# lv_domain_xml EMULATOR [NAME [IMAGE-PREFIX]]; the busy guest (TCG,
# direct kernel boot, its console to a file in each host's private images
# directory: one path, a file per host) when $workload is busy, on QEMU
# $busy_q.
lv_domain_xml() {
    local type=qemu i name=${2:-bench} prefix=${3:-disk}
    if [ -w /dev/kvm ] && [ "$workload" != busy ]; then type=kvm; fi
    cat <<EOF
<domain type='$type'>
  <name>$name</name>
  <uuid>$(uuid_of "$name")</uuid>
  <memory unit='MiB'>$mem_mib</memory>
  <vcpu>1</vcpu>
EOF
    if [ "$workload" = busy ]; then
        cat <<EOF
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$guest_dir/vmlinuz</kernel>
    <initrd>$guest_dir/initrd.img</initrd>
    <cmdline>$(busy_append "$busy_q")</cmdline>
  </os>
EOF
    else
        echo "  <os><type arch='x86_64' machine='pc'>hvm</type></os>"
    fi
    cat <<EOF
  <devices>
    <emulator>$1</emulator>
EOF
    for ((i = 0; i < n_disks; i++)); do
        cat <<EOF
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source file='/var/lib/libvirt/images/$prefix$i.qcow2'/>
      <target dev='vd${letters:i:1}' bus='virtio'/>
    </disk>
EOF
    done
    if [ "$workload" = busy ]; then
        cat <<EOF
    <serial type='file'>
      <source path='/var/lib/libvirt/images/serial.log'/>
    </serial>
EOF
    fi
    cat <<EOF
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
EOF
}

# libvirt_round QEMU ROUND
libvirt_round() {
    local q=$1 r=$2 dir i t0 t1 rc=0 before_s before_d after_s after_d
    local busy_q=$q verified="" vargs=()
    dir=$work/libvirt-$q-$workload-$r
    local srcimg=$work/libvirt/src/lib/images dstimg=$work/libvirt/dst/lib/images
    mkdir -p "$dir"
    for ((i = 0; i < n_disks; i++)); do
        make_image "$srcimg/disk$i.qcow2" "$i"
        rm -f "$dstimg/disk$i.qcow2"
        qemu-img create -q -f qcow2 "$dstimg/disk$i.qcow2" "$disk_size"
    done
    rm -f "$srcimg/serial.log" "$dstimg/serial.log"
    lv_domain_xml "$(qemu_path "$q")" >"$dir/bench.xml"
    lv_virsh src create "$dir/bench.xml" >/dev/null
    if [ "$workload" = idle ]; then
        guest_settle "$(cat "$work/libvirt/src/run/qemu/bench.pid")"
    fi
    if [ "$workload" = busy ] && ! wait_line "$srcimg/serial.log" "$busy_ready" "$busy_wait_s"; then
        tail -n 5 "$srcimg/serial.log" >&2
        echo "bench: libvirt: the busy guest did not start its workload within ${busy_wait_s} s" >&2
        return 1
    fi
    for h in src dst; do : >"$work/libvirt/$h/log/libvirtd.log"; done
    before_s=$(proc_figures "${lv_pid[src]}")
    before_d=$(proc_figures "${lv_pid[dst]}")
    t0=$(now_us)
    ip netns exec "$lv_tag-src" virsh -q \
        -c "qemu+unix:///system?socket=$work/libvirt/src/run/libvirt-sock" \
        migrate --live --copy-storage-all bench "qemu+tcp://$lv_net.2/system" \
        >"$dir/migrate.out" 2>&1 || rc=$?
    t1=$(now_us)
    after_s=$(proc_figures "${lv_pid[src]}")
    after_d=$(proc_figures "${lv_pid[dst]}")
    if [ "$rc" -ne 0 ]; then
        cat "$dir/migrate.out" >&2
        echo "bench: virsh migrate failed on QEMU $q (round $r)" >&2
        return 1
    fi
    lv_virsh src domjobinfo --completed bench >"$dir/jobinfo.txt" 2>&1 || true
    if [ "$workload" = busy ] && ! wait_line "$dstimg/serial.log" "$busy_ready" "$busy_wait_s"; then
        tail -n 5 "$dstimg/serial.log" >&2
        echo "bench: libvirt: busy guest: no 'HANDOVER-RAM ok' on the destination within ${busy_wait_s} s" >&2
        return 1
    fi
    lv_virsh dst suspend bench >/dev/null
    for ((i = 0; i < n_disks; i++)); do
        if [ "$workload" = busy ] && [ "$i" = 0 ]; then continue; fi
        qemu-img compare -q -U "$srcimg/disk$i.qcow2" "$dstimg/disk$i.qcow2" ||
            { echo "bench: libvirt: disk $i differs after the migration" >&2; return 1; }
    done
    lv_virsh dst destroy bench >/dev/null
    if [ "$workload" = busy ]; then
        cp "$srcimg/serial.log" "$dir/src-serial.log"
        cp "$dstimg/serial.log" "$dir/dst-serial.log"
        verified=$(busy_verify "libvirt on QEMU $q, round $r" "$dstimg/disk0.qcow2" \
                   "$dir/src-serial.log" "$dir/dst-serial.log") || return 1
        vargs=(--verify-json "$(verify_json "$verified")")
    fi
    for h in src dst; do
        cp "$work/libvirt/$h/log/libvirtd.log" "$dir/$h.log"
        "${analyze[@]}" libvirt-log "$dir/$h.log" "$dir/$h.jsonl" --start-us "$t0"
    done
    "${analyze[@]}" sample --contender libvirt --qemu "$q" --round "$r" \
        --workload "$workload" "${vargs[@]}" --src "$dir/src.jsonl" --dst "$dir/dst.jsonl" --wall-ms "$((t1 - t0))e-3" \
        --daemon "src:$before_s:$after_s" --daemon "dst:$before_d:$after_d" >>"$samples"
}

# libvirt_batch QEMU ROUND N: N virsh migrate at once (the scale workload).
# Only the batch's figures (wall time, libvirtd CPU and peak RSS): the
# per-guest figures would need libvirt's log split by monitor.
libvirt_batch() {
    local q=$1 r=$2 n=$3 dir i t0 t1 rc=0 pids=() before_s before_d after_s after_d
    local srcimg=$work/libvirt/src/lib/images dstimg=$work/libvirt/dst/lib/images
    # A scale guest has one small disk whatever --disks says (lv_domain_xml
    # reads n_disks).
    local n_disks=1
    dir=$work/libvirt-$q-x$n-$r
    mkdir -p "$dir"
    for ((i = 0; i < n; i++)); do
        make_image "$srcimg/g${i}-0.qcow2"
        rm -f "$dstimg/g${i}-0.qcow2"
        qemu-img create -q -f qcow2 "$dstimg/g${i}-0.qcow2" "$disk_size"
        lv_domain_xml "$(qemu_path "$q")" "bench$i" "g${i}-" >"$dir/bench$i.xml"
        lv_virsh src create "$dir/bench$i.xml" >/dev/null
    done
    for ((i = 0; i < n; i++)); do
        pids+=("$(cat "$work/libvirt/src/run/qemu/bench$i.pid")")
    done
    guest_settle "${pids[@]}"
    pids=()
    before_s=$(proc_figures "${lv_pid[src]}")
    before_d=$(proc_figures "${lv_pid[dst]}")
    t0=$(now_us)
    for ((i = 0; i < n; i++)); do
        ip netns exec "$lv_tag-src" virsh -q \
            -c "qemu+unix:///system?socket=$work/libvirt/src/run/libvirt-sock" \
            migrate --live --copy-storage-all "bench$i" "qemu+tcp://$lv_net.2/system" \
            >"$dir/migrate-$i.out" 2>&1 &
        pids+=("$!")
    done
    for i in "${pids[@]}"; do wait "$i" || rc=$?; done
    t1=$(now_us)
    after_s=$(proc_figures "${lv_pid[src]}")
    after_d=$(proc_figures "${lv_pid[dst]}")
    if [ "$rc" -ne 0 ]; then
        cat "$dir"/migrate-*.out >&2
        echo "bench: virsh migrate failed in a batch of $n on QEMU $q (round $r)" >&2
        return 1
    fi
    for ((i = 0; i < n; i++)); do
        lv_virsh dst suspend "bench$i" >/dev/null
        qemu-img compare -q -U "$srcimg/g${i}-0.qcow2" "$dstimg/g${i}-0.qcow2" ||
            { echo "bench: libvirt: guest $i's disk differs after the migration" >&2; return 1; }
        lv_virsh dst destroy "bench$i" >/dev/null
        rm -f "$srcimg/g${i}-0.qcow2" "$dstimg/g${i}-0.qcow2"
    done
    "${analyze[@]}" batch --contender libvirt --qemu "$q" --round "$r" --scale "$n" \
        --wall-ms "$((t1 - t0))e-3" \
        --daemon "src:$before_s:$after_s" --daemon "dst:$before_d:$after_d" >>"$samples"
}
