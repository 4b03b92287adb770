/*
 * Domain definition -> QEMU command line.
 */
#define HO_LOG_MODULE "qemu.command"

#include "qemu_command.h"

#include <json-c/json.h>
#include <stdarg.h>
#include <string.h>

#include "ho_error.h"
#include "ho_i18n.h"
#include "ho_log.h"

/* Ports of one AHCI controller (matches SATA_PORTS in qemu_domain.c). */
#define AHCI_PORTS 6

char *
qemu_command_escape_comma(const char *value)
{
    GString *buf = g_string_sized_new(strlen(value) + 8);

    for (const char *p = value; *p; p++) {
        if (*p == ',')
            g_string_append_c(buf, ',');
        g_string_append_c(buf, *p);
    }
    return g_string_free(buf, FALSE);
}

static void
arg_add(GPtrArray *argv, const char *arg)
{
    g_ptr_array_add(argv, g_strdup(arg));
}

static void arg_addf(GPtrArray *argv, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static void
arg_addf(GPtrArray *argv, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    g_ptr_array_add(argv, g_strdup_vprintf(fmt, ap));
    va_end(ap);
}

/* What a libvirt cache mode means for QEMU's block layer and the guest device. */
typedef struct {
    bool direct;      /* O_DIRECT on the image */
    bool no_flush;    /* ignore the guest's flushes */
    bool write_cache; /* the device advertises a volatile write cache */
} CacheFlags;

static CacheFlags
cache_flags(QemuDomainDiskCache cache)
{
    switch (cache) {
    case QEMU_DOMAIN_DISK_CACHE_NONE:
        return (CacheFlags){.direct = true, .write_cache = true};
    case QEMU_DOMAIN_DISK_CACHE_WRITETHROUGH:
        return (CacheFlags){0};
    case QEMU_DOMAIN_DISK_CACHE_DIRECTSYNC:
        return (CacheFlags){.direct = true};
    case QEMU_DOMAIN_DISK_CACHE_UNSAFE:
        return (CacheFlags){.no_flush = true, .write_cache = true};
    case QEMU_DOMAIN_DISK_CACHE_DEFAULT:
    case QEMU_DOMAIN_DISK_CACHE_WRITEBACK:
    case QEMU_DOMAIN_DISK_CACHE_LAST:
        break;
    }
    return (CacheFlags){.write_cache = true};
}

static json_object *
cache_json(CacheFlags flags)
{
    json_object *obj = json_object_new_object();

    json_object_object_add(obj, "direct", json_object_new_boolean(flags.direct));
    json_object_object_add(obj, "no-flush", json_object_new_boolean(flags.no_flush));
    return obj;
}

/* Compact JSON with '/' left alone (paths stay readable), then freed. */
static char *
json_take_string(json_object *obj)
{
    char *ret = g_strdup(json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN |
                                                                 JSON_C_TO_STRING_NOSLASHESCAPE));

    json_object_put(obj);
    return ret;
}

void
qemu_command_disk_blockdev_json(const QemuDomainDiskDef *disk, char **file_json,
                                char **format_json)
{
    CacheFlags flags = cache_flags(disk->cache);
    g_autofree char *file_node = qemu_domain_disk_file_node_name(disk);
    g_autofree char *fmt_node = qemu_domain_disk_node_name(disk);
    json_object *file = json_object_new_object();
    json_object *fmt = json_object_new_object();
    bool native;

    native = disk->io == QEMU_DOMAIN_DISK_IO_NATIVE ||
             (disk->io == QEMU_DOMAIN_DISK_IO_DEFAULT && flags.direct);

    json_object_object_add(file, "driver",
                           json_object_new_string(disk->type == QEMU_DOMAIN_DISK_TYPE_BLOCK
                                                      ? "host_device"
                                                      : "file"));
    json_object_object_add(file, "filename", json_object_new_string(disk->src));
    json_object_object_add(file, "node-name", json_object_new_string(file_node));
    json_object_object_add(file, "auto-read-only", json_object_new_boolean(true));
    json_object_object_add(file, "discard",
                           json_object_new_string(disk->discard == QEMU_DOMAIN_DISK_DISCARD_IGNORE
                                                      ? "ignore"
                                                      : "unmap"));
    json_object_object_add(file, "aio", json_object_new_string(native ? "native" : "threads"));
    json_object_object_add(file, "cache", cache_json(flags));
    if (disk->readonly)
        json_object_object_add(file, "read-only", json_object_new_boolean(true));

    json_object_object_add(fmt, "node-name", json_object_new_string(fmt_node));
    json_object_object_add(
        fmt, "driver", json_object_new_string(qemu_domain_disk_format_to_string(disk->format)));
    json_object_object_add(fmt, "file", json_object_new_string(file_node));
    json_object_object_add(fmt, "read-only", json_object_new_boolean(disk->readonly));
    json_object_object_add(fmt, "cache", cache_json(flags));
    /* Guest discards reach the image only if the format node passes them on. */
    if (disk->discard != QEMU_DOMAIN_DISK_DISCARD_DEFAULT)
        json_object_object_add(
            fmt, "discard",
            json_object_new_string(disk->discard == QEMU_DOMAIN_DISK_DISCARD_IGNORE ? "ignore"
                                                                                    : "unmap"));

    *file_json = json_take_string(file);
    *format_json = json_take_string(fmt);
}

/* The bootindex of each disk: the explicit orders, else the first disk boots. */
static unsigned int
disk_bootindex(const QemuDomainDef *def, guint i)
{
    const QemuDomainDiskDef *disk = g_ptr_array_index(def->disks, i);

    for (guint j = 0; j < def->disks->len; j++) {
        const QemuDomainDiskDef *other = g_ptr_array_index(def->disks, j);

        if (other->boot_order)
            return disk->boot_order;
    }
    /* A direct kernel boot does not go through the disks. */
    if (i == 0 && !def->os_kernel)
        return 1;
    return 0;
}

static void
build_disk_controllers(const QemuDomainDef *def, GPtrArray *argv)
{
    int sata_max = -1;
    bool scsi = false;

    for (guint i = 0; i < def->disks->len; i++) {
        const QemuDomainDiskDef *disk = g_ptr_array_index(def->disks, i);
        int idx = qemu_domain_disk_target_index(disk->target);

        if (disk->bus == QEMU_DOMAIN_DISK_BUS_SATA)
            sata_max = MAX(sata_max, idx);
        else if (disk->bus == QEMU_DOMAIN_DISK_BUS_SCSI)
            scsi = true;
    }
    /* Our own AHCI controllers, so that pc and q35 machines look alike. */
    for (int c = 0; sata_max >= 0 && c <= sata_max / AHCI_PORTS; c++) {
        arg_add(argv, "-device");
        arg_addf(argv, "ich9-ahci,id=sata%d", c);
    }
    if (scsi) {
        arg_add(argv, "-device");
        arg_add(argv, "virtio-scsi-pci,id=scsi0");
    }
}

static void
build_disk(const QemuDomainDef *def, guint i, GPtrArray *argv)
{
    const QemuDomainDiskDef *disk = g_ptr_array_index(def->disks, i);
    g_autofree char *file_json = NULL;
    g_autofree char *fmt_json = NULL;
    g_autofree char *fmt_node = qemu_domain_disk_node_name(disk);
    g_autofree char *dev_id = qemu_domain_disk_device_id(disk);
    GString *dev = g_string_new(NULL);
    int idx = qemu_domain_disk_target_index(disk->target);
    unsigned int bootindex = disk_bootindex(def, i);

    qemu_command_disk_blockdev_json(disk, &file_json, &fmt_json);
    arg_add(argv, "-blockdev");
    g_ptr_array_add(argv, g_steal_pointer(&file_json));
    arg_add(argv, "-blockdev");
    g_ptr_array_add(argv, g_steal_pointer(&fmt_json));

    switch (disk->bus) {
    case QEMU_DOMAIN_DISK_BUS_SATA:
        g_string_append_printf(dev, "ide-hd,bus=sata%d.%d,", idx / AHCI_PORTS, idx % AHCI_PORTS);
        break;
    case QEMU_DOMAIN_DISK_BUS_SCSI:
        g_string_append_printf(dev, "scsi-hd,bus=scsi0.0,channel=0,scsi-id=%d,lun=0,", idx);
        break;
    case QEMU_DOMAIN_DISK_BUS_VIRTIO:
    case QEMU_DOMAIN_DISK_BUS_LAST:
        g_string_append(dev, "virtio-blk-pci,");
        break;
    }
    g_string_append_printf(dev, "drive=%s,id=%s", fmt_node, dev_id);
    if (bootindex)
        g_string_append_printf(dev, ",bootindex=%u", bootindex);
    /* Only an explicit cache mode says what the guest should see. */
    if (disk->cache != QEMU_DOMAIN_DISK_CACHE_DEFAULT)
        g_string_append_printf(dev, ",write-cache=%s",
                               cache_flags(disk->cache).write_cache ? "on" : "off");
    if (disk->serial)
        g_string_append_printf(dev, ",serial=%s", disk->serial);
    arg_add(argv, "-device");
    g_ptr_array_add(argv, g_string_free(dev, FALSE));
}

static void
build_net(const QemuDomainNetDef *net, guint i, GPtrArray *argv)
{
    char mac[18];
    const char *model = net->model == QEMU_DOMAIN_NET_MODEL_E1000 ? "e1000" : "virtio-net-pci";

    qemu_domain_mac_format(net->mac, mac);
    arg_add(argv, "-netdev");
    arg_addf(argv, "user,id=net%u", i);
    arg_add(argv, "-device");
    arg_addf(argv, "%s,netdev=net%u,id=net%udev,mac=%s", model, i, i, mac);
}

static void
build_chr(const QemuDomainChrDef *chr, GPtrArray *argv)
{
    arg_add(argv, "-chardev");
    if (chr->type == QEMU_DOMAIN_CHR_TYPE_FILE) {
        g_autofree char *path = qemu_command_escape_comma(chr->path);
        const char *append = "";

        if (chr->append == QEMU_DOMAIN_TRISTATE_ON)
            append = ",append=on";
        else if (chr->append == QEMU_DOMAIN_TRISTATE_OFF)
            append = ",append=off";
        arg_addf(argv, "file,id=charserial%u,path=%s%s", chr->port, path, append);
    } else {
        arg_addf(argv, "pty,id=charserial%u", chr->port);
    }
    arg_add(argv, "-device");
    arg_addf(argv, "isa-serial,chardev=charserial%u,id=serial%u,index=%u", chr->port, chr->port,
             chr->port);
}

static bool
has_serial_port(const QemuDomainDef *def, unsigned int port)
{
    for (guint i = 0; i < def->serials->len; i++) {
        const QemuDomainChrDef *chr = g_ptr_array_index(def->serials, i);

        if (chr->port == port)
            return true;
    }
    return false;
}

static void
build_cpu(const QemuDomainDef *def, bool kvm, GPtrArray *argv)
{
    const QemuDomainCpuDef *cpu = &def->cpu;
    GString *arg = g_string_new(NULL);

    /* "host" exists only under KVM; host-model would need the host's CPU
     * expanded to a named model, which we do not do: QEMU's default then. */
    if (kvm && cpu->mode == QEMU_DOMAIN_CPU_MODE_HOST_PASSTHROUGH)
        g_string_append(arg, "host");
    else if (cpu->mode == QEMU_DOMAIN_CPU_MODE_CUSTOM && cpu->model)
        g_string_append(arg, cpu->model);
    else
        g_string_append(arg, "qemu64");
    for (guint i = 0; cpu->features && i < cpu->features->len; i++) {
        const QemuDomainCpuFeature *f = g_ptr_array_index(cpu->features, i);
        bool on = f->policy != QEMU_DOMAIN_CPU_FEATURE_DISABLE &&
                  f->policy != QEMU_DOMAIN_CPU_FEATURE_FORBID;

        g_string_append_printf(arg, ",%s=%s", f->name, on ? "on" : "off");
    }
    arg_add(argv, "-cpu");
    g_ptr_array_add(argv, g_string_free(arg, FALSE));
}

char **
qemu_command_build(const QemuDomainDef *def, const QemuCommandOptions *opts)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func(g_free);
    const char *emulator = opts->emulator ? opts->emulator : def->emulator;
    const char *accel = opts->accel;
    const char *machine = opts->machine_override ? opts->machine_override : def->machine;
    bool backend = def->memfd || def->shared;
    g_autofree char *name = NULL;
    g_autofree char *machine_esc = NULL;

    if (!emulator || !emulator[0]) {
        ho_error_report(HO_ERR_INVALID_ARG, _("domain '%1$s' names no emulator"), def->name);
        return NULL;
    }
    if (!accel)
        accel = def->virt_type == QEMU_DOMAIN_VIRT_KVM ? "kvm" : "tcg";
    if (!g_str_equal(accel, "kvm") && !g_str_equal(accel, "tcg")) {
        ho_error_report(HO_ERR_INVALID_ARG, _("unsupported accelerator '%1$s'"), accel);
        return NULL;
    }
    if (def->memory_kib == 0 || def->vcpus == 0 || def->memory_kib > G_MAXUINT64 / 1024) {
        ho_error_report(HO_ERR_INVALID_ARG, _("domain '%1$s' has no valid memory or vCPU count"),
                        def->name);
        return NULL;
    }
    /* QEMU's x86 default machine, when neither the domain nor the caller has one. */
    if (!machine)
        machine = "pc";

    arg_add(argv, emulator);
    name = qemu_command_escape_comma(def->name);
    arg_add(argv, "-name");
    arg_addf(argv, "guest=%s,debug-threads=on", name);
    if (opts->start_paused)
        arg_add(argv, "-S");
    arg_add(argv, "-msg");
    arg_add(argv, "timestamp=on");
    for (size_t i = 0; opts->firmware_dirs && opts->firmware_dirs[i]; i++) {
        arg_add(argv, "-L");
        arg_add(argv, opts->firmware_dirs[i]);
    }
    arg_add(argv, "-no-user-config");
    arg_add(argv, "-nodefaults");
    if (opts->qmp_socket_path) {
        g_autofree char *path = qemu_command_escape_comma(opts->qmp_socket_path);

        arg_add(argv, "-chardev");
        arg_addf(argv, "socket,id=monitor,path=%s,server=on,wait=off", path);
        arg_add(argv, "-mon");
        arg_add(argv, "chardev=monitor,mode=control");
    }

    machine_esc = qemu_command_escape_comma(machine);
    arg_add(argv, "-machine");
    arg_addf(argv, "%s,accel=%s%s%s", machine_esc, accel, backend ? ",memory-backend=ram0" : "",
             backend && opts->aux_ram_share && def->memfd && def->shared ? ",aux-ram-share=on"
                                                                         : "");
    if (backend) {
        arg_add(argv, "-object");
        arg_addf(argv, "%s,id=ram0,size=%" G_GUINT64_FORMAT ",share=%s",
                 def->memfd ? "memory-backend-memfd" : "memory-backend-ram",
                 def->memory_kib * 1024, def->shared ? "on" : "off");
    }
    build_cpu(def, g_str_equal(accel, "kvm"), argv);
    arg_add(argv, "-m");
    if (def->memory_kib % 1024 == 0)
        arg_addf(argv, "size=%" G_GUINT64_FORMAT "M", def->memory_kib / 1024);
    else
        arg_addf(argv, "size=%" G_GUINT64_FORMAT "k", def->memory_kib);
    arg_add(argv, "-smp");
    if (def->cpu.sockets)
        arg_addf(argv, "%u,sockets=%u,dies=%u,cores=%u,threads=%u", def->vcpus, def->cpu.sockets,
                 def->cpu.dies, def->cpu.cores, def->cpu.threads);
    else
        arg_addf(argv, "%u", def->vcpus);
    {
        char uuid[37];

        qemu_domain_uuid_format(def->uuid, uuid);
        arg_add(argv, "-uuid");
        arg_add(argv, uuid);
    }
    arg_add(argv, "-display");
    arg_add(argv, "none");
    /* QEMU exits on guest poweroff unless told to wait for us. */
    if (def->on_poweroff == QEMU_DOMAIN_LIFECYCLE_PRESERVE)
        arg_add(argv, "-no-shutdown");
    if (def->on_reboot == QEMU_DOMAIN_LIFECYCLE_DESTROY)
        arg_add(argv, "-no-reboot");
    if (def->os_kernel) {
        arg_add(argv, "-kernel");
        arg_add(argv, def->os_kernel);
    }
    if (def->os_initrd) {
        arg_add(argv, "-initrd");
        arg_add(argv, def->os_initrd);
    }
    if (def->os_cmdline) {
        arg_add(argv, "-append");
        arg_add(argv, def->os_cmdline);
    }

    build_disk_controllers(def, argv);
    for (guint i = 0; i < def->disks->len; i++)
        build_disk(def, i, argv);
    for (guint i = 0; i < def->nets->len; i++)
        build_net(g_ptr_array_index(def->nets, i), i, argv);
    for (guint i = 0; i < def->serials->len; i++)
        build_chr(g_ptr_array_index(def->serials, i), argv);
    /* A console is the serial port of its number; add the port if no <serial> did. */
    for (guint i = 0; i < def->consoles->len; i++) {
        const QemuDomainChrDef *con = g_ptr_array_index(def->consoles, i);
        bool seen = has_serial_port(def, con->port);

        for (guint j = 0; j < i && !seen; j++)
            seen =
                ((const QemuDomainChrDef *)g_ptr_array_index(def->consoles, j))->port == con->port;
        if (!seen)
            build_chr(con, argv);
    }
    if (opts->incoming) {
        arg_add(argv, "-incoming");
        arg_add(argv, opts->incoming);
    }
    if (opts->cpr_channel_path) {
        /* The CPR channel: QEMU reads the CPR state (memfds) from it before
         * it creates anything else, its monitor included. */
        json_object *chan = json_object_new_object();
        json_object *addr = json_object_new_object();

        json_object_object_add(addr, "transport", json_object_new_string("socket"));
        json_object_object_add(addr, "type", json_object_new_string("unix"));
        json_object_object_add(addr, "path", json_object_new_string(opts->cpr_channel_path));
        json_object_object_add(chan, "channel-type", json_object_new_string("cpr"));
        json_object_object_add(chan, "addr", addr);
        arg_add(argv, "-incoming");
        g_ptr_array_add(argv, json_take_string(chan));
    }

    if (ho_log_enabled(HO_LOG_DEBUG, HO_LOG_MODULE)) {
        g_ptr_array_add(argv, NULL);
        g_autofree char *line = g_strjoinv(" ", (char **)argv->pdata);

        HO_DEBUG("command line of '%s': %s", def->name, line);
        g_ptr_array_remove_index(argv, argv->len - 1);
    }
    g_ptr_array_add(argv, NULL);
    return (char **)g_ptr_array_free(g_steal_pointer(&argv), FALSE);
}
