/*
 * What a QEMU can do, probed, never assumed: query-version,
 * query-commands, query-events (only where it still exists: QEMU 6.0
 * removed it; event names come from the schema too),
 * query-migrate-capabilities and query-qmp-schema (for enum members such as MigrationStatus and MigMode;
 * introspection numbers non-builtin type names, so the probe follows the
 * types from the commands' arguments and returns).
 */
#pragma once

#include <glib.h>
#include <json-c/json.h>
#include <stdbool.h>

#include "qemu_monitor.h"
#include "qemu_monitor_json.h"

typedef enum {
    QEMU_CAPS_EVENTS_CAP = 0,            /* migration capability "events" */
    QEMU_CAPS_PAUSE_BEFORE_SWITCHOVER,   /* migration capability */
    QEMU_CAPS_POSTCOPY_RAM,              /* migration capability */
    QEMU_CAPS_RETURN_PATH,               /* migration capability */
    QEMU_CAPS_LATE_BLOCK_ACTIVATE,       /* migration capability */
    QEMU_CAPS_AUTO_CONVERGE,             /* migration capability */
    QEMU_CAPS_MULTIFD,                   /* migration capability */
    QEMU_CAPS_POSTCOPY_PREEMPT,          /* migration capability */
    QEMU_CAPS_BLOCK_MIGRATION,           /* migration capability "block" (gone in 9.1) */
    QEMU_CAPS_POSTCOPY_RECOVER_SETUP,    /* MigrationStatus member, 9.1 */
    QEMU_CAPS_CPR_TRANSFER,              /* MigMode member, 10.0 */
    QEMU_CAPS_MIGRATE_CHANNELS,          /* migrate has "channels" */
    QEMU_CAPS_BLOCKDEV_MIRROR,           /* command */
    QEMU_CAPS_BLOCK_EXPORT_ADD,          /* command */
    QEMU_CAPS_MIGRATE_RECOVER,           /* command */
    QEMU_CAPS_MIGRATE_PAUSE,             /* command */
    QEMU_CAPS_MIGRATE_CONTINUE,          /* command */
    QEMU_CAPS_QUERY_JOBS,                /* command */
    QEMU_CAPS_LAST
} QemuCapsFlag;

typedef struct _QemuCaps QemuCaps;

/* Stable name of a flag ("pause-before-switchover", "cpr-transfer", ...). */
const char *qemu_caps_flag_name(QemuCapsFlag flag);

QemuCaps *qemu_caps_new(void);
void qemu_caps_free(QemuCaps *caps);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(QemuCaps, qemu_caps_free)

/* Feature checks. */
bool qemu_caps_has(const QemuCaps *caps, QemuCapsFlag flag);
/* Version, as major * 1000000 + minor * 1000 + micro (7.2.22 -> 7002022). */
unsigned int qemu_caps_version(const QemuCaps *caps);
const char *qemu_caps_package(const QemuCaps *caps);
bool qemu_caps_has_command(const QemuCaps *caps, const char *name);
bool qemu_caps_has_event(const QemuCaps *caps, const char *name);
bool qemu_caps_has_migration_capability(const QemuCaps *caps, const char *name);
/* Members of enums found in the schema (NULL-terminated, owned by caps). */
const char *const *qemu_caps_migration_statuses(const QemuCaps *caps);
const char *const *qemu_caps_mig_modes(const QemuCaps *caps);

/* Fill caps from the raw replies (each borrowed); -1 and an error naming
 * what was malformed. Exposed for data-file tests. */
int qemu_caps_set_version(QemuCaps *caps, json_object *ret);
int qemu_caps_set_commands(QemuCaps *caps, json_object *ret);
int qemu_caps_set_events(QemuCaps *caps, json_object *ret);
int qemu_caps_set_migration_capabilities(QemuCaps *caps, json_object *ret);
int qemu_caps_set_schema(QemuCaps *caps, json_object *schema);

/* Probe asynchronously: the queries above in order, then cb with the
 * filled caps (caller owns them) or NULL and an error. */
typedef void (*QemuCapsProbeFunc)(QemuMonitor *mon, QemuCaps *caps, const HoError *err,
                                  void *opaque);
void qemu_caps_probe(QemuMonitor *mon, QemuCapsProbeFunc cb, void *opaque);

/* A JSON description (version, package, flags, commands, events,
 * migration capabilities, enum members) and back: for the status file,
 * the capabilities command and tests. */
json_object *qemu_caps_to_json(const QemuCaps *caps);
QemuCaps *qemu_caps_from_json(json_object *obj);
/* An independent copy (through the JSON form); NULL and an error only on
 * a bug. */
QemuCaps *qemu_caps_copy(const QemuCaps *caps);
