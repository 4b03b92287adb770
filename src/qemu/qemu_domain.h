/*
 * Domain definition: the subset of libvirt's domain XML that a migration
 * user needs, parsed into structs and formatted back.
 *
 * What we model is interpreted (the command line is built from it). What
 * `virsh dumpxml` writes but only describes placement, defaults or host-side
 * policy (address, alias, controller, memballoon, features, clock, pm,
 * resource, seclabel, input, title, description, metadata, backingStore) is
 * kept as it was and written back in libvirt's order, so a definition from
 * virsh survives a parse/format round trip. Anything else, in particular
 * whatever would change guest hardware we cannot provide, is rejected with
 * an error naming its XPath-like location, and nothing is defined.
 *
 * Defaults follow libvirt: memory in KiB, one vCPU, the disk format raw, the
 * lifecycle actions destroy/restart/destroy; a missing UUID or MAC address
 * is generated.
 */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

/* Largest domain XML accepted, in bytes. */
#define QEMU_DOMAIN_XML_MAX (1024 * 1024)

typedef enum {
    QEMU_DOMAIN_VIRT_KVM = 0,
    QEMU_DOMAIN_VIRT_QEMU,
    QEMU_DOMAIN_VIRT_LAST
} QemuDomainVirtType;

typedef enum {
    QEMU_DOMAIN_CPU_MODE_NONE = 0, /* no <cpu> element */
    QEMU_DOMAIN_CPU_MODE_HOST_PASSTHROUGH,
    QEMU_DOMAIN_CPU_MODE_HOST_MODEL,
    QEMU_DOMAIN_CPU_MODE_CUSTOM,
    QEMU_DOMAIN_CPU_MODE_LAST
} QemuDomainCpuMode;

typedef enum {
    QEMU_DOMAIN_CPU_FEATURE_FORCE = 0,
    QEMU_DOMAIN_CPU_FEATURE_REQUIRE,
    QEMU_DOMAIN_CPU_FEATURE_OPTIONAL,
    QEMU_DOMAIN_CPU_FEATURE_DISABLE,
    QEMU_DOMAIN_CPU_FEATURE_FORBID,
    QEMU_DOMAIN_CPU_FEATURE_LAST
} QemuDomainCpuFeaturePolicy;

typedef enum {
    QEMU_DOMAIN_LIFECYCLE_DESTROY = 0,
    QEMU_DOMAIN_LIFECYCLE_RESTART,
    QEMU_DOMAIN_LIFECYCLE_PRESERVE,
    QEMU_DOMAIN_LIFECYCLE_RENAME_RESTART,
    QEMU_DOMAIN_LIFECYCLE_COREDUMP_DESTROY, /* on_crash only */
    QEMU_DOMAIN_LIFECYCLE_COREDUMP_RESTART, /* on_crash only */
    QEMU_DOMAIN_LIFECYCLE_LAST
} QemuDomainLifecycleAction;

typedef enum {
    QEMU_DOMAIN_DISK_TYPE_FILE = 0,
    QEMU_DOMAIN_DISK_TYPE_BLOCK,
    QEMU_DOMAIN_DISK_TYPE_LAST
} QemuDomainDiskType;

typedef enum {
    QEMU_DOMAIN_DISK_FORMAT_RAW = 0,
    QEMU_DOMAIN_DISK_FORMAT_QCOW2,
    QEMU_DOMAIN_DISK_FORMAT_LAST
} QemuDomainDiskFormat;

typedef enum {
    QEMU_DOMAIN_DISK_CACHE_DEFAULT = 0, /* no cache attribute: writeback */
    QEMU_DOMAIN_DISK_CACHE_NONE,
    QEMU_DOMAIN_DISK_CACHE_WRITEBACK,
    QEMU_DOMAIN_DISK_CACHE_WRITETHROUGH,
    QEMU_DOMAIN_DISK_CACHE_DIRECTSYNC,
    QEMU_DOMAIN_DISK_CACHE_UNSAFE,
    QEMU_DOMAIN_DISK_CACHE_LAST
} QemuDomainDiskCache;

typedef enum {
    QEMU_DOMAIN_DISK_IO_DEFAULT = 0, /* native with O_DIRECT caches, else threads */
    QEMU_DOMAIN_DISK_IO_THREADS,
    QEMU_DOMAIN_DISK_IO_NATIVE,
    QEMU_DOMAIN_DISK_IO_LAST
} QemuDomainDiskIo;

typedef enum {
    QEMU_DOMAIN_DISK_DISCARD_DEFAULT = 0,
    QEMU_DOMAIN_DISK_DISCARD_UNMAP,
    QEMU_DOMAIN_DISK_DISCARD_IGNORE,
    QEMU_DOMAIN_DISK_DISCARD_LAST
} QemuDomainDiskDiscard;

typedef enum {
    QEMU_DOMAIN_DISK_BUS_VIRTIO = 0,
    QEMU_DOMAIN_DISK_BUS_SATA,
    QEMU_DOMAIN_DISK_BUS_SCSI,
    QEMU_DOMAIN_DISK_BUS_LAST
} QemuDomainDiskBus;

typedef enum {
    QEMU_DOMAIN_NET_MODEL_DEFAULT = 0, /* no <model>: virtio on the command line */
    QEMU_DOMAIN_NET_MODEL_VIRTIO,
    QEMU_DOMAIN_NET_MODEL_E1000,
    QEMU_DOMAIN_NET_MODEL_LAST
} QemuDomainNetModel;

typedef enum {
    QEMU_DOMAIN_CHR_TYPE_PTY = 0,
    QEMU_DOMAIN_CHR_TYPE_FILE,
    QEMU_DOMAIN_CHR_TYPE_LAST
} QemuDomainChrType;

typedef enum {
    QEMU_DOMAIN_TRISTATE_ABSENT = 0,
    QEMU_DOMAIN_TRISTATE_ON,
    QEMU_DOMAIN_TRISTATE_OFF,
    QEMU_DOMAIN_TRISTATE_LAST
} QemuDomainTristate;

/* An element we keep without interpreting it (an XML subtree, no xmlDoc). */
typedef struct _QemuDomainXmlNode QemuDomainXmlNode;

typedef struct {
    char *name; /* "vmx", "pdpe1gb" */
    QemuDomainCpuFeaturePolicy policy;
} QemuDomainCpuFeature;

typedef struct {
    QemuDomainCpuMode mode;
    char *model;      /* <model>: a QEMU CPU model name, or NULL */
    char *fallback;   /* <model fallback=>: allow, forbid; kept */
    char *match;      /* minimum, exact, strict; kept */
    char *check;      /* none, partial, full; kept */
    char *migratable; /* on, off; kept */
    char *vendor;     /* <vendor>; kept */
    /* <topology>; all 0 when absent, else sockets*dies*cores*threads == vcpus */
    unsigned int sockets;
    unsigned int dies;
    unsigned int cores;
    unsigned int threads;
    GPtrArray *features; /* QemuDomainCpuFeature */
} QemuDomainCpuDef;

typedef struct {
    QemuDomainDiskType type;
    QemuDomainDiskFormat format;
    QemuDomainDiskCache cache;
    QemuDomainDiskIo io;
    QemuDomainDiskDiscard discard;
    char *src;    /* <source file=> or <source dev=> */
    char *target; /* "vda", "sdb" */
    QemuDomainDiskBus bus;
    bool readonly;
    unsigned int boot_order; /* <boot order=>, 0 when absent */
    char *serial;            /* <serial>, or NULL */
    char *node_name;         /* format node of -blockdev, as qemu_domain_disk_node_name() */
    QemuDomainXmlNode *backing_store; /* kept, never interpreted; or NULL */
    GPtrArray *extras;                /* kept children: alias, address (QemuDomainXmlNode) */
} QemuDomainDiskDef;

typedef struct {
    QemuDomainNetModel model;
    uint8_t mac[6];
    GPtrArray *extras; /* kept children: alias, address */
} QemuDomainNetDef;

/* A <serial>, or a <console> (whose target is the serial port of the same number). */
typedef struct {
    QemuDomainChrType type;
    char *path;                /* <source path=> of a file; NULL for pty */
    QemuDomainTristate append; /* <source append=> of a file */
    unsigned int port;         /* <target port=>, 0..3 */
    GPtrArray *extras;         /* kept children: alias */
} QemuDomainChrDef;

typedef struct {
    QemuDomainVirtType virt_type;
    char *name;
    uint8_t uuid[16];
    uint64_t memory_kib;         /* <memory> */
    uint64_t current_memory_kib; /* <currentMemory>, at most memory_kib */
    unsigned int vcpus;
    char *vcpu_placement; /* static or auto */
    char *vcpu_cpuset;    /* host CPUs; kept, or NULL */

    char *arch;    /* "x86_64" */
    char *machine; /* <type machine=>, or NULL for QEMU's default */
    char *os_kernel;
    char *os_initrd;
    char *os_cmdline;
    bool os_boot_hd;      /* <os><boot dev='hd'/> */
    GPtrArray *os_extras; /* kept children of <os>: bootmenu */

    QemuDomainCpuDef cpu;

    bool memfd;  /* <memoryBacking><source type='memfd'/> */
    bool shared; /* <memoryBacking><access mode='shared'/> */

    QemuDomainLifecycleAction on_poweroff;
    QemuDomainLifecycleAction on_reboot;
    QemuDomainLifecycleAction on_crash;

    char *emulator;      /* <devices><emulator>, or NULL */
    GPtrArray *disks;    /* QemuDomainDiskDef */
    GPtrArray *nets;     /* QemuDomainNetDef */
    GPtrArray *serials;  /* QemuDomainChrDef */
    GPtrArray *consoles; /* QemuDomainChrDef */

    GPtrArray *extras;        /* kept children of <domain> (QemuDomainXmlNode) */
    GPtrArray *device_extras; /* kept children of <devices>: controller, input, memballoon */
} QemuDomainDef;

/* Stable names of the enum values, as written in the XML. */
const char *qemu_domain_virt_type_to_string(QemuDomainVirtType type);
/* "host-passthrough", ...; "" for QEMU_DOMAIN_CPU_MODE_NONE. */
const char *qemu_domain_cpu_mode_to_string(QemuDomainCpuMode mode);
/* "require", "disable", ... */
const char *qemu_domain_cpu_feature_policy_to_string(QemuDomainCpuFeaturePolicy policy);
/* "destroy", "restart", ... */
const char *qemu_domain_lifecycle_action_to_string(QemuDomainLifecycleAction action);
/* "file" or "block". */
const char *qemu_domain_disk_type_to_string(QemuDomainDiskType type);
/* "raw" or "qcow2" (also QEMU's driver names). */
const char *qemu_domain_disk_format_to_string(QemuDomainDiskFormat format);
/* "none", "writeback", ...; "default" for QEMU_DOMAIN_DISK_CACHE_DEFAULT. */
const char *qemu_domain_disk_cache_to_string(QemuDomainDiskCache cache);
/* "virtio", "sata" or "scsi". */
const char *qemu_domain_disk_bus_to_string(QemuDomainDiskBus bus);
/* "pty" or "file". */
const char *qemu_domain_chr_type_to_string(QemuDomainChrType type);

/* Parse domain XML (at most QEMU_DOMAIN_XML_MAX bytes); filename (or NULL) only
 * names the source in error messages. NULL and an HO_ERR_XML error on failure. */
QemuDomainDef *qemu_domain_def_parse_string(const char *xml, const char *filename);
/* Read and parse a domain XML file; NULL and an error naming path on failure. */
QemuDomainDef *qemu_domain_def_parse_file(const char *path);
/* The definition as XML, indented by 2 spaces as virsh writes it (g_free it). */
char *qemu_domain_def_format(const QemuDomainDef *def);
/* A deep copy that shares nothing with def. */
QemuDomainDef *qemu_domain_def_copy(const QemuDomainDef *def);
/* Free a definition; accepts NULL. */
void qemu_domain_def_free(QemuDomainDef *def);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(QemuDomainDef, qemu_domain_def_free)

/* Free a disk definition; accepts NULL. */
void qemu_domain_disk_def_free(QemuDomainDiskDef *disk);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(QemuDomainDiskDef, qemu_domain_disk_def_free)
/* The disk with this target ("vda"), or NULL; reports nothing. */
QemuDomainDiskDef *qemu_domain_def_find_disk(const QemuDomainDef *def, const char *target);

/* Node name of a disk's format node, the one block jobs and exports use:
 * "drive-<target>-fmt" (g_free it). */
char *qemu_domain_disk_node_name(const QemuDomainDiskDef *disk);
/* Node name of a disk's protocol (file or host_device) node: "drive-<target>-file". */
char *qemu_domain_disk_file_node_name(const QemuDomainDiskDef *disk);
/* Id of a disk's guest device (-device id=): "disk-<target>". */
char *qemu_domain_disk_device_id(const QemuDomainDiskDef *disk);
/* Index of a target name: "vda"/"sda" -> 0, "vdz" -> 25, "vdaa" -> 26; -1 if malformed. */
int qemu_domain_disk_target_index(const char *target);

/* Text form of a UUID: 36 lower-case characters and the NUL. */
void qemu_domain_uuid_format(const uint8_t uuid[16], char out[37]);
/* Parse a UUID: 32 hex digits, dashes allowed between bytes; false if malformed. */
bool qemu_domain_uuid_parse(const char *str, uint8_t uuid[16]);
/* Text form of a MAC address: "52:54:00:12:34:56" and the NUL. */
void qemu_domain_mac_format(const uint8_t mac[6], char out[18]);
