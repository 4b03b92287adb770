/*
 * Typed QMP commands: one small function per command on top of
 * qemu_monitor_send(). Each builds the arguments, sends, and turns the
 * reply into C values; none holds policy. QMP strings become the enums
 * below here and nowhere else: an unknown value maps to the _UNKNOWN
 * member and is logged, never fatal.
 *
 * Callbacks run exactly once. On failure err is set and the typed result
 * is NULL (or zeroed); result pointers are valid only during the callback.
 * A reply that does not have the documented shape fails the command with
 * an HO_ERR_JSON error naming the field.
 */
#pragma once

#include <glib.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "qemu_monitor.h"

/* MigrationStatus, all values through QEMU 10.0 (qapi/migration.json). */
typedef enum {
    QEMU_MIGRATION_STATUS_UNKNOWN = 0,   /* a value newer than this code */
    QEMU_MIGRATION_STATUS_NONE,
    QEMU_MIGRATION_STATUS_SETUP,
    QEMU_MIGRATION_STATUS_CANCELLING,
    QEMU_MIGRATION_STATUS_CANCELLED,
    QEMU_MIGRATION_STATUS_ACTIVE,
    QEMU_MIGRATION_STATUS_POSTCOPY_ACTIVE,
    QEMU_MIGRATION_STATUS_POSTCOPY_PAUSED,
    QEMU_MIGRATION_STATUS_POSTCOPY_RECOVER_SETUP, /* 9.1 */
    QEMU_MIGRATION_STATUS_POSTCOPY_RECOVER,
    QEMU_MIGRATION_STATUS_COMPLETED,
    QEMU_MIGRATION_STATUS_FAILED,
    QEMU_MIGRATION_STATUS_COLO,
    QEMU_MIGRATION_STATUS_PRE_SWITCHOVER,
    QEMU_MIGRATION_STATUS_DEVICE,
    QEMU_MIGRATION_STATUS_WAIT_UNPLUG,
    QEMU_MIGRATION_STATUS_LAST
} QemuMigrationStatus;

/* RunState (query-status). */
typedef enum {
    QEMU_RUN_STATE_UNKNOWN = 0,
    QEMU_RUN_STATE_DEBUG,
    QEMU_RUN_STATE_INMIGRATE,
    QEMU_RUN_STATE_INTERNAL_ERROR,
    QEMU_RUN_STATE_IO_ERROR,
    QEMU_RUN_STATE_PAUSED,
    QEMU_RUN_STATE_POSTMIGRATE,
    QEMU_RUN_STATE_PRELAUNCH,
    QEMU_RUN_STATE_FINISH_MIGRATE,
    QEMU_RUN_STATE_RESTORE_VM,
    QEMU_RUN_STATE_RUNNING,
    QEMU_RUN_STATE_SAVE_VM,
    QEMU_RUN_STATE_SHUTDOWN,
    QEMU_RUN_STATE_SUSPENDED,
    QEMU_RUN_STATE_WATCHDOG,
    QEMU_RUN_STATE_GUEST_PANICKED,
    QEMU_RUN_STATE_COLO,
    QEMU_RUN_STATE_LAST
} QemuRunState;

/* JobStatus (query-jobs, query-block-jobs, JOB_STATUS_CHANGE). */
typedef enum {
    QEMU_JOB_STATUS_UNKNOWN = 0,
    QEMU_JOB_STATUS_UNDEFINED,
    QEMU_JOB_STATUS_CREATED,
    QEMU_JOB_STATUS_RUNNING,
    QEMU_JOB_STATUS_PAUSED,
    QEMU_JOB_STATUS_READY,
    QEMU_JOB_STATUS_STANDBY,
    QEMU_JOB_STATUS_WAITING,
    QEMU_JOB_STATUS_PENDING,
    QEMU_JOB_STATUS_ABORTING,
    QEMU_JOB_STATUS_CONCLUDED,
    QEMU_JOB_STATUS_NULL,
    QEMU_JOB_STATUS_LAST
} QemuJobStatus;

/* MigMode (migrate-set-parameters "mode", QEMU 8.2+). */
typedef enum {
    QEMU_MIG_MODE_UNKNOWN = 0,
    QEMU_MIG_MODE_NORMAL,
    QEMU_MIG_MODE_CPR_REBOOT,
    QEMU_MIG_MODE_CPR_TRANSFER, /* 10.0 */
    QEMU_MIG_MODE_LAST
} QemuMigMode;

/* String tables: name of a value ("pre-switchover"), and value of a name
 * (the _UNKNOWN member, logged, for a name this code does not know). */
const char *qemu_migration_status_to_string(QemuMigrationStatus st);
QemuMigrationStatus qemu_migration_status_from_string(const char *s);
const char *qemu_run_state_to_string(QemuRunState st);
QemuRunState qemu_run_state_from_string(const char *s);
const char *qemu_job_status_to_string(QemuJobStatus st);
QemuJobStatus qemu_job_status_from_string(const char *s);
const char *qemu_mig_mode_to_string(QemuMigMode m);
QemuMigMode qemu_mig_mode_from_string(const char *s);

/* ---- reply types ---- */

typedef struct {
    int major, minor, micro;
    char *package;
} QemuMonitorVersion;

typedef struct {
    QemuRunState state;
    bool running;
} QemuMonitorStatus;

typedef struct {
    uint64_t transferred, remaining, total, duplicate, normal, normal_bytes;
    uint64_t dirty_pages_rate, dirty_sync_count, postcopy_requests, page_size;
    uint64_t precopy_bytes, downtime_bytes, postcopy_bytes;
    double mbps;
    uint64_t pages_per_second;
} QemuMigrationRam;

typedef struct {
    QemuMigrationStatus status;
    bool has_ram;
    QemuMigrationRam ram;
    bool has_total_time, has_downtime, has_expected_downtime, has_setup_time;
    int64_t total_time, downtime, expected_downtime, setup_time; /* ms */
    char *error_desc; /* NULL when absent */
} QemuMigrationInfo;

typedef struct {
    char *name;
    bool state;
} QemuMigrationCapability;

typedef struct {
    /* has_* says whether QEMU reported the field */
    bool has_max_bandwidth, has_downtime_limit, has_multifd_channels, has_max_postcopy_bandwidth;
    bool has_mode;
    uint64_t max_bandwidth;       /* bytes/s */
    uint64_t downtime_limit;      /* ms */
    int64_t multifd_channels;
    uint64_t max_postcopy_bandwidth;
    QemuMigMode mode;
    json_object *raw; /* the whole reply, for fields not listed here */
} QemuMigrationParams;

typedef struct {
    char *type;    /* "mirror" */
    char *device;  /* the job id */
    uint64_t len, offset, speed;
    bool busy, paused, ready;
    QemuJobStatus status;
} QemuBlockJobInfo;

typedef struct {
    char *id;
    char *type;
    QemuJobStatus status;
    int64_t current_progress, total_progress;
    char *error; /* NULL when absent */
} QemuJobInfo;

typedef struct {
    char *node_name;
    char *drv;
    char *file;
    bool ro;
    /* From "image" (ImageInfo), when QEMU gave it: */
    bool has_virtual_size;
    uint64_t virtual_size;   /* bytes */
    char *backing_file;      /* "full-backing-filename", else "backing-filename", or NULL */
    char *backing_format;    /* "backing-filename-format", or NULL */
} QemuBlockNodeInfo;

/* One machine type of query-machines. */
typedef struct {
    char *name;      /* "pc-i440fx-7.2" */
    char *alias;     /* "pc", or NULL */
    bool is_default; /* QEMU's default machine */
    bool deprecated; /* false when QEMU does not say */
    int64_t cpu_max;
} QemuMachineInfo;

/* Free functions accept NULL. */
void qemu_monitor_version_free(QemuMonitorVersion *v);
void qemu_machine_info_free(QemuMachineInfo *m);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(QemuMachineInfo, qemu_machine_info_free)
void qemu_migration_info_free(QemuMigrationInfo *info);
void qemu_migration_params_free(QemuMigrationParams *p);

/* ---- parsers: reply value -> C; -1 and an HO_ERR_JSON error naming the field ---- */
int qemu_monitor_json_parse_version(json_object *ret, QemuMonitorVersion *out);
int qemu_monitor_json_parse_status(json_object *ret, QemuMonitorStatus *out);
int qemu_monitor_json_parse_migration_info(json_object *ret, QemuMigrationInfo *out);
int qemu_monitor_json_parse_migration_params(json_object *ret, QemuMigrationParams *out);
/* Arrays of structs: GPtrArray with free functions set. */
GPtrArray *qemu_monitor_json_parse_migration_caps(json_object *ret);
GPtrArray *qemu_monitor_json_parse_block_jobs(json_object *ret);
GPtrArray *qemu_monitor_json_parse_jobs(json_object *ret);
GPtrArray *qemu_monitor_json_parse_named_nodes(json_object *ret);
GPtrArray *qemu_monitor_json_parse_machines(json_object *ret);
/* [{"name": ...}, ...] (query-commands, query-events) -> strv. */
char **qemu_monitor_json_parse_name_list(json_object *ret);

/* ---- callbacks ---- */
typedef void (*QemuMonitorDoneFunc)(QemuMonitor *mon, const HoError *err, void *opaque);
typedef void (*QemuMonitorJsonFunc)(QemuMonitor *mon, json_object *ret, const HoError *err,
                                    void *opaque);
typedef void (*QemuMonitorVersionFunc)(QemuMonitor *mon, const QemuMonitorVersion *v,
                                       const HoError *err, void *opaque);
typedef void (*QemuMonitorStatusFunc)(QemuMonitor *mon, const QemuMonitorStatus *st,
                                      const HoError *err, void *opaque);
typedef void (*QemuMonitorMigrationInfoFunc)(QemuMonitor *mon, const QemuMigrationInfo *info,
                                             const HoError *err, void *opaque);
typedef void (*QemuMonitorMigrationParamsFunc)(QemuMonitor *mon,
                                               const QemuMigrationParams *params,
                                               const HoError *err, void *opaque);
/* list: GPtrArray of the type the command names; names: NULL-terminated strv. */
typedef void (*QemuMonitorListFunc)(QemuMonitor *mon, GPtrArray *list, const HoError *err,
                                    void *opaque);
typedef void (*QemuMonitorNamesFunc)(QemuMonitor *mon, char **names, const HoError *err,
                                     void *opaque);
typedef void (*QemuMonitorStringFunc)(QemuMonitor *mon, const char *str, const HoError *err,
                                      void *opaque);

/* ---- commands ---- */
/* query-version */
void qemu_monitor_json_query_version(QemuMonitor *mon, QemuMonitorVersionFunc cb, void *opaque);
/* query-commands -> command names */
void qemu_monitor_json_query_commands(QemuMonitor *mon, QemuMonitorNamesFunc cb, void *opaque);
/* query-events -> event names */
void qemu_monitor_json_query_events(QemuMonitor *mon, QemuMonitorNamesFunc cb, void *opaque);
/* query-qmp-schema -> the raw schema array */
void qemu_monitor_json_query_qmp_schema(QemuMonitor *mon, QemuMonitorJsonFunc cb, void *opaque);
/* query-machines -> the raw array */
void qemu_monitor_json_query_machines(QemuMonitor *mon, QemuMonitorJsonFunc cb, void *opaque);
/* query-machines -> GPtrArray of QemuMachineInfo */
void qemu_monitor_json_query_machine_list(QemuMonitor *mon, QemuMonitorListFunc cb,
                                          void *opaque);
/* query-status */
void qemu_monitor_json_query_status(QemuMonitor *mon, QemuMonitorStatusFunc cb, void *opaque);
/* stop, cont, quit */
void qemu_monitor_json_stop(QemuMonitor *mon, QemuMonitorDoneFunc cb, void *opaque);
void qemu_monitor_json_cont(QemuMonitor *mon, QemuMonitorDoneFunc cb, void *opaque);
void qemu_monitor_json_quit(QemuMonitor *mon, QemuMonitorDoneFunc cb, void *opaque);
/* system_powerdown: ask the guest (ACPI) to power off; it may not answer */
void qemu_monitor_json_system_powerdown(QemuMonitor *mon, QemuMonitorDoneFunc cb, void *opaque);

/* query-migrate */
void qemu_monitor_json_query_migrate(QemuMonitor *mon, QemuMonitorMigrationInfoFunc cb,
                                     void *opaque);
/* query-migrate-capabilities -> GPtrArray of QemuMigrationCapability */
void qemu_monitor_json_query_migrate_capabilities(QemuMonitor *mon, QemuMonitorListFunc cb,
                                                  void *opaque);
/* migrate-set-capabilities; names and states are parallel, n entries */
void qemu_monitor_json_migrate_set_capabilities(QemuMonitor *mon, const char *const *names,
                                                const bool *states, size_t n,
                                                QemuMonitorDoneFunc cb, void *opaque);
/* query-migrate-parameters */
void qemu_monitor_json_query_migrate_parameters(QemuMonitor *mon,
                                                QemuMonitorMigrationParamsFunc cb,
                                                void *opaque);
/* migrate-set-parameters; params is an object of QEMU parameter names (consumed) */
void qemu_monitor_json_migrate_set_parameters(QemuMonitor *mon, json_object *params,
                                              QemuMonitorDoneFunc cb, void *opaque);
/* migrate {"uri": uri} (resume adds "resume": true) */
void qemu_monitor_json_migrate(QemuMonitor *mon, const char *uri, bool resume,
                               QemuMonitorDoneFunc cb, void *opaque);
/* migrate {"channels": channels} (consumed; QEMU 8.2+, CPR transfer) */
void qemu_monitor_json_migrate_channels(QemuMonitor *mon, json_object *channels,
                                        QemuMonitorDoneFunc cb, void *opaque);
/* migrate-incoming {"uri": uri} */
void qemu_monitor_json_migrate_incoming(QemuMonitor *mon, const char *uri,
                                        QemuMonitorDoneFunc cb, void *opaque);
/* migrate-continue {"state": state} */
void qemu_monitor_json_migrate_continue(QemuMonitor *mon, QemuMigrationStatus state,
                                        QemuMonitorDoneFunc cb, void *opaque);
/* migrate_cancel */
void qemu_monitor_json_migrate_cancel(QemuMonitor *mon, QemuMonitorDoneFunc cb, void *opaque);
/* migrate-start-postcopy */
void qemu_monitor_json_migrate_start_postcopy(QemuMonitor *mon, QemuMonitorDoneFunc cb,
                                              void *opaque);
/* migrate-recover {"uri": uri} */
void qemu_monitor_json_migrate_recover(QemuMonitor *mon, const char *uri,
                                       QemuMonitorDoneFunc cb, void *opaque);
/* migrate-pause */
void qemu_monitor_json_migrate_pause(QemuMonitor *mon, QemuMonitorDoneFunc cb, void *opaque);

/* blockdev-add; props is the BlockdevOptions object (consumed) */
void qemu_monitor_json_blockdev_add(QemuMonitor *mon, json_object *props,
                                    QemuMonitorDoneFunc cb, void *opaque);
/* blockdev-del {"node-name": node} */
void qemu_monitor_json_blockdev_del(QemuMonitor *mon, const char *node, QemuMonitorDoneFunc cb,
                                    void *opaque);

/* Options of blockdev-mirror beyond job id, device and target. */
typedef struct {
    const char *sync;        /* "full" or "top"; required */
    bool has_speed;
    uint64_t speed;          /* bytes/s */
    bool has_granularity;
    uint32_t granularity;
    bool has_buf_size;
    int64_t buf_size;
    const char *copy_mode;   /* "background" or "write-blocking"; NULL: QEMU's default */
    bool auto_finalize_false; /* send "auto-finalize": false */
    bool auto_dismiss_false;  /* send "auto-dismiss": false */
} QemuMirrorOptions;

/* blockdev-mirror {"job-id", "device", "target", ...} */
void qemu_monitor_json_blockdev_mirror(QemuMonitor *mon, const char *job_id,
                                       const char *device, const char *target,
                                       const QemuMirrorOptions *opts, QemuMonitorDoneFunc cb,
                                       void *opaque);
/* block-job-cancel {"device": job_id, "force": force} (force sent only when true) */
void qemu_monitor_json_block_job_cancel(QemuMonitor *mon, const char *job_id, bool force,
                                        QemuMonitorDoneFunc cb, void *opaque);
/* block-job-complete {"device": job_id} */
void qemu_monitor_json_block_job_complete(QemuMonitor *mon, const char *job_id,
                                          QemuMonitorDoneFunc cb, void *opaque);
/* query-block-jobs -> GPtrArray of QemuBlockJobInfo */
void qemu_monitor_json_query_block_jobs(QemuMonitor *mon, QemuMonitorListFunc cb,
                                        void *opaque);
/* query-jobs -> GPtrArray of QemuJobInfo */
void qemu_monitor_json_query_jobs(QemuMonitor *mon, QemuMonitorListFunc cb, void *opaque);
/* job-dismiss {"id": id} */
void qemu_monitor_json_job_dismiss(QemuMonitor *mon, const char *id, QemuMonitorDoneFunc cb,
                                   void *opaque);

/* nbd-server-start {"addr": {"type":"fd","data":{"str"}}}: a listening
 * socket passed before with getfd under fdname (SocketAddressLegacy, the
 * same in 7.2 and 10.0) */
void qemu_monitor_json_nbd_server_start_fd(QemuMonitor *mon, const char *fdname,
                                           QemuMonitorDoneFunc cb, void *opaque);
/* nbd-server-start {"addr": {"type":"unix","data":{"path"}}} */
void qemu_monitor_json_nbd_server_start_unix(QemuMonitor *mon, const char *path,
                                             QemuMonitorDoneFunc cb, void *opaque);
/* nbd-server-stop */
void qemu_monitor_json_nbd_server_stop(QemuMonitor *mon, QemuMonitorDoneFunc cb, void *opaque);
/* block-export-add {"type":"nbd","id","node-name","name","writable"} */
void qemu_monitor_json_block_export_add(QemuMonitor *mon, const char *id, const char *node,
                                        const char *export_name, bool writable,
                                        QemuMonitorDoneFunc cb, void *opaque);
/* block-export-del {"id": id} */
void qemu_monitor_json_block_export_del(QemuMonitor *mon, const char *id,
                                        QemuMonitorDoneFunc cb, void *opaque);
/* query-named-block-nodes {"flat": true} -> GPtrArray of QemuBlockNodeInfo */
void qemu_monitor_json_query_named_block_nodes(QemuMonitor *mon, QemuMonitorListFunc cb,
                                               void *opaque);

/* getfd {"fdname": name}, passing fd (not consumed) */
void qemu_monitor_json_getfd(QemuMonitor *mon, const char *fdname, int fd,
                             QemuMonitorDoneFunc cb, void *opaque);
/* human-monitor-command {"command-line": cmdline} -> HMP's output text.
 * HMP reports many errors as output text in a successful reply: the
 * caller decides what the text means. */
void qemu_monitor_json_human_command(QemuMonitor *mon, const char *cmdline,
                                     QemuMonitorStringFunc cb, void *opaque);
