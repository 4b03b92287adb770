/*
 * The QAPI schema a QEMU reports (query-qmp-schema), indexed by name.
 * Used to find enum members (capability probing) and, in tests, to
 * validate QMP commands against a saved query-qmp-schema reply, the way
 * the QEMU it came from would: the command exists, every argument is a
 * member of its arg-type, required members are present, and each value
 * fits its type (builtins, enums by member, objects, arrays, alternates,
 * flat unions by discriminator).
 */
#pragma once

#include <glib.h>
#include <json-c/json.h>

typedef struct _QemuQapi QemuQapi;

/* From the array query-qmp-schema returns (borrowed); NULL and an error. */
QemuQapi *qemu_qapi_new(json_object *schema);
/* From a file holding that array. */
QemuQapi *qemu_qapi_load(const char *path);
void qemu_qapi_free(QemuQapi *schema);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(QemuQapi, qemu_qapi_free)

/* 0 when `command` with `args` (may be NULL) is valid; else -1 and an
 * error naming the command and the path of the offending member
 * ("blockdev-mirror: 'sync': 'fulll' is not a member of MirrorSyncMode"). */
int qemu_qapi_check_command(QemuQapi *schema, const char *command, json_object *args);
/* Members of the enum at a command's argument path ("migrate-set-parameters",
 * "mode"), or of its return ("query-migrate", "status" with ret = TRUE);
 * NULL-terminated, g_strfreev it; NULL when there is no such enum. */
char **qemu_qapi_enum_members(QemuQapi *schema, const char *command, const char *member,
                                gboolean ret);
