/*
 * Domain definition -> QEMU command line.
 *
 * Pure: builds an argv, starts nothing. The names it gives QEMU objects are
 * stable and known to the rest of the driver: disks are "-blockdev" pairs
 * named by qemu_domain_disk_file_node_name() (protocol) and
 * qemu_domain_disk_node_name() (format) with the guest device
 * qemu_domain_disk_device_id(); the QMP monitor chardev is "monitor"; guest
 * RAM, when it lives in a memory backend, is the object "ram0"; the serial
 * port N is the chardev "charserialN" on the device "serialN"; the network
 * interface N is the netdev "netN" on the device "netNdev".
 */
#pragma once

#include <glib.h>
#include <stdbool.h>

#include "qemu_domain.h"

typedef struct {
    const char *emulator;             /* QEMU binary; NULL: the domain's <emulator> */
    const char *qmp_socket_path;      /* UNIX socket QEMU listens on for QMP, or NULL */
    bool start_paused;                /* -S */
    const char *incoming;             /* -incoming argument ("defer"), or NULL */
    const char *accel;                /* "kvm" or "tcg"; NULL: from the domain type */
    const char *const *firmware_dirs; /* NULL-terminated, one -L each; may be NULL */
    const char *machine_override;     /* concrete machine type replacing the domain's */
    /* CPR transfer (QEMU 10.0+): aux-ram-share=on on the machine when guest
     * RAM is a shared memfd backend, so that every RAM block (ROMs too) can
     * be handed over as a memfd; and, for the new QEMU of a CPR transfer,
     * the UNIX socket of its CPR channel (a second -incoming, JSON form),
     * or NULL. */
    bool aux_ram_share;
    const char *cpr_channel_path;
} QemuCommandOptions;

/* The command line to start def (argv[0] the emulator; g_strfreev it), or NULL
 * and an HO_ERR_INVALID_ARG error when def or opts cannot be turned into one. */
char **qemu_command_build(const QemuDomainDef *def, const QemuCommandOptions *opts);
/* value with each ',' doubled, as QEMU's option syntax wants (g_free it). */
char *qemu_command_escape_comma(const char *value);
/* The two -blockdev JSON values of a disk, protocol node then format node
 * (g_free both); the same objects suit blockdev-add. */
void qemu_command_disk_blockdev_json(const QemuDomainDiskDef *disk, char **file_json,
                                     char **format_json);
