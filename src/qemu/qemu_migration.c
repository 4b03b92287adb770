/*
 * The migration orchestrator (DESIGN.md §2-§3). See qemu_migration.h.
 */
#define _GNU_SOURCE /* accept4 */
#define HO_LOG_MODULE "qemu.migration"

#include "qemu_migration.h"

#include <errno.h>
#include <gio/gio.h>
#include <glib-unix.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ho_error.h"
#include "ho_i18n.h"
#include "ho_json.h"
#include "ho_log.h"
#include "ho_socket.h"
#include "ho_uri.h"
#include "qemu_blockjob.h"
#include "qemu_monitor_json.h"
#include "qemu_process.h"
#include "qemu_recorder.h"

static const char *const phase_names[] = {
    [QEMU_MIGRATION_PHASE_NONE] = "none",
    [QEMU_MIGRATION_PHASE_BEGIN] = "begin",
    [QEMU_MIGRATION_PHASE_PREPARE] = "prepare",
    [QEMU_MIGRATION_PHASE_MIRROR] = "mirror",
    [QEMU_MIGRATION_PHASE_PERFORM] = "perform",
    [QEMU_MIGRATION_PHASE_PRE_SWITCHOVER] = "pre-switchover",
    [QEMU_MIGRATION_PHASE_SWITCHOVER] = "switchover",
    [QEMU_MIGRATION_PHASE_FINISH] = "finish",
    [QEMU_MIGRATION_PHASE_CONFIRM] = "confirm",
    [QEMU_MIGRATION_PHASE_POSTCOPY] = "postcopy",
    [QEMU_MIGRATION_PHASE_POSTCOPY_PAUSED] = "postcopy-paused",
    [QEMU_MIGRATION_PHASE_POSTCOPY_RECOVER] = "postcopy-recover",
    [QEMU_MIGRATION_PHASE_COMPLETED] = "completed",
    [QEMU_MIGRATION_PHASE_FAILED] = "failed",
    [QEMU_MIGRATION_PHASE_CANCELLED] = "cancelled",
};
G_STATIC_ASSERT(G_N_ELEMENTS(phase_names) == QEMU_MIGRATION_PHASE_LAST);

const char *
qemu_migration_phase_to_string(QemuMigrationPhase phase)
{
    if ((int)phase < 0 || phase >= QEMU_MIGRATION_PHASE_LAST)
        return "unknown";
    return phase_names[phase];
}

QemuMigrationPhase
qemu_migration_phase_from_string(const char *s)
{
    for (int i = 0; s && i < QEMU_MIGRATION_PHASE_LAST; i++) {
        if (g_str_equal(phase_names[i], s))
            return i;
    }
    return QEMU_MIGRATION_PHASE_LAST;
}

bool
qemu_migration_phase_is_terminal(QemuMigrationPhase phase)
{
    return phase == QEMU_MIGRATION_PHASE_COMPLETED || phase == QEMU_MIGRATION_PHASE_FAILED ||
           phase == QEMU_MIGRATION_PHASE_CANCELLED;
}

/* ---- arguments ------------------------------------------------------------ */

void
qemu_migration_args_clear(QemuMigrationArgs *args)
{
    if (!args)
        return;
    g_free(args->dname);
    g_free(args->dxml);
    g_free(args->migrate_uri);
    g_free(args->listen_address);
    g_free(args->record_path);
    g_strfreev(args->migrate_disks);
    g_free(args->disks_uri);
    g_free(args->mode);
    memset(args, 0, sizeof(*args));
}

static const char *const args_fields[] = {
    "live", "persistent", "undefine_source", "paused", "dname", "xml", "migrate_uri",
    "listen_address", "bandwidth_mib", "max_downtime_ms", "auto_converge", "parallel",
    "parallel_connections", "timeout_s", "timeout_abort", "unsafe", "record", "copy_storage_all",
    "copy_storage_inc", "copy_storage_synchronous_writes", "migrate_disks", "disks_port",
    "disks_uri", "postcopy", "postcopy_after_precopy", "postcopy_bandwidth_mib", "mode", NULL,
};

static int
args_opt_uint(json_object *obj, const char *key, uint64_t max, bool *has, uint64_t *out)
{
    uint64_t v = 0;
    int rc = ho_json_opt_uint64(obj, key, &v);

    if (rc < 0)
        return -1;
    if (rc == 0)
        return 0;
    if (v > max) {
        ho_error_report(HO_ERR_INVALID_ARG, _("migration parameter '%1$s' is out of range"), key);
        return -1;
    }
    if (has)
        *has = true;
    *out = v;
    return 0;
}

static int
args_opt_str(json_object *obj, const char *key, char **out)
{
    const char *s = NULL;
    int rc = ho_json_opt_string(obj, key, &s);

    if (rc < 0)
        return -1;
    if (rc > 0) {
        if (!*s) {
            ho_error_report(HO_ERR_INVALID_ARG, _("migration parameter '%1$s' is empty"), key);
            return -1;
        }
        *out = g_strdup(s);
    }
    return 0;
}

/* "migrate_disks": a non-empty array of non-empty, distinct disk names. */
#define MAX_MIGRATE_DISKS 256
static int
args_opt_disks(json_object *obj, char ***out)
{
    json_object *arr = NULL;
    g_auto(GStrv) disks = NULL;
    int rc = ho_json_opt_array(obj, "migrate_disks", &arr);

    if (rc <= 0)
        return rc;
    if (!(disks = ho_json_array_to_strv(arr, "migrate_disks")))
        return -1;
    if (!disks[0] || g_strv_length(disks) > MAX_MIGRATE_DISKS) {
        ho_error_report(HO_ERR_INVALID_ARG, _("migration parameter '%1$s' is out of range"),
                        "migrate_disks");
        return -1;
    }
    for (size_t i = 0; disks[i]; i++) {
        if (!*disks[i]) {
            ho_error_report(HO_ERR_INVALID_ARG, _("migration parameter '%1$s' is empty"),
                            "migrate_disks");
            return -1;
        }
        for (size_t j = 0; j < i; j++) {
            if (g_str_equal(disks[i], disks[j])) {
                ho_error_report(HO_ERR_INVALID_ARG,
                                _("disk '%1$s' is named twice in 'migrate_disks'"), disks[i]);
                return -1;
            }
        }
    }
    *out = g_steal_pointer(&disks);
    return 0;
}

int
qemu_migration_args_from_json(json_object *obj, QemuMigrationArgs *args)
{
    QemuMigrationArgs a = {0};
    uint64_t v;

    if (!obj || !json_object_is_type(obj, json_type_object)) {
        ho_error_report(HO_ERR_INVALID_ARG, "%s", _("migration parameters must be a JSON object"));
        return -1;
    }
    json_object_object_foreach(obj, key, val) {
        bool known = false;

        (void)val;
        for (size_t i = 0; args_fields[i]; i++)
            known = known || g_str_equal(args_fields[i], key);
        if (!known) {
            ho_error_report(HO_ERR_INVALID_ARG, _("unknown migration parameter '%1$s'"), key);
            return -1;
        }
    }
    if (ho_json_opt_bool(obj, "live", &a.live) < 0 ||
        ho_json_opt_bool(obj, "persistent", &a.persistent) < 0 ||
        ho_json_opt_bool(obj, "undefine_source", &a.undefine_source) < 0 ||
        ho_json_opt_bool(obj, "paused", &a.paused) < 0 ||
        ho_json_opt_bool(obj, "auto_converge", &a.auto_converge) < 0 ||
        ho_json_opt_bool(obj, "parallel", &a.parallel) < 0 ||
        ho_json_opt_bool(obj, "timeout_abort", &a.timeout_abort) < 0 ||
        ho_json_opt_bool(obj, "unsafe", &a.unsafe) < 0 ||
        args_opt_str(obj, "dname", &a.dname) < 0 || args_opt_str(obj, "xml", &a.dxml) < 0 ||
        args_opt_str(obj, "migrate_uri", &a.migrate_uri) < 0 ||
        args_opt_str(obj, "listen_address", &a.listen_address) < 0 ||
        args_opt_str(obj, "record", &a.record_path) < 0 ||
        ho_json_opt_bool(obj, "copy_storage_all", &a.copy_storage_all) < 0 ||
        ho_json_opt_bool(obj, "copy_storage_inc", &a.copy_storage_inc) < 0 ||
        ho_json_opt_bool(obj, "copy_storage_synchronous_writes",
                         &a.copy_storage_synchronous_writes) < 0 ||
        args_opt_str(obj, "disks_uri", &a.disks_uri) < 0 ||
        args_opt_uint(obj, "bandwidth_mib", G_MAXUINT64 / (1024 * 1024), &a.has_bandwidth,
                      &a.bandwidth_mib) < 0 ||
        args_opt_uint(obj, "max_downtime_ms", 2000000, &a.has_max_downtime,
                      &a.max_downtime_ms) < 0)
        goto error;
    v = 0;
    if (args_opt_uint(obj, "parallel_connections", 255, NULL, &v) < 0)
        goto error;
    a.parallel_connections = (unsigned int)v;
    v = 0;
    if (args_opt_uint(obj, "timeout_s", G_MAXINT / 1000, NULL, &v) < 0)
        goto error;
    a.timeout_s = (unsigned int)v;
    v = 0;
    if (args_opt_uint(obj, "disks_port", 65535, NULL, &v) < 0)
        goto error;
    a.disks_port = (int)v;
    if (args_opt_disks(obj, &a.migrate_disks) < 0)
        goto error;
    if (ho_json_opt_bool(obj, "postcopy", &a.postcopy) < 0 ||
        ho_json_opt_bool(obj, "postcopy_after_precopy", &a.postcopy_after_precopy) < 0 ||
        args_opt_uint(obj, "postcopy_bandwidth_mib", G_MAXUINT64 / (1024 * 1024),
                      &a.has_postcopy_bandwidth, &a.postcopy_bandwidth_mib) < 0 ||
        args_opt_str(obj, "mode", &a.mode) < 0)
        goto error;
    if (a.mode && !g_str_equal(a.mode, "normal") && !g_str_equal(a.mode, "cpr-transfer")) {
        ho_error_report(HO_ERR_INVALID_ARG, _("unknown migration mode '%1$s'"), a.mode);
        goto error;
    }
    if ((a.postcopy_after_precopy || a.has_postcopy_bandwidth) && !a.postcopy) {
        ho_error_report(HO_ERR_INVALID_ARG, "%s",
                        _("migration parameters 'postcopy_after_precopy' and "
                          "'postcopy_bandwidth_mib' need 'postcopy'"));
        goto error;
    }
    if (a.parallel_connections && !a.parallel) {
        ho_error_report(HO_ERR_INVALID_ARG, "%s",
                        _("migration parameter 'parallel_connections' needs 'parallel'"));
        goto error;
    }
    if (a.timeout_abort && !a.timeout_s) {
        ho_error_report(HO_ERR_INVALID_ARG, "%s",
                        _("migration parameter 'timeout_abort' needs 'timeout_s'"));
        goto error;
    }
    qemu_migration_args_clear(args);
    *args = a;
    return 0;

 error:
    qemu_migration_args_clear(&a);
    return -1;
}

json_object *
qemu_migration_args_to_json(const QemuMigrationArgs *args)
{
    json_object *obj = json_object_new_object();

    ho_json_add_bool(obj, "live", args->live);
    ho_json_add_bool(obj, "persistent", args->persistent);
    ho_json_add_bool(obj, "undefine_source", args->undefine_source);
    ho_json_add_bool(obj, "paused", args->paused);
    if (args->dname)
        ho_json_add_string(obj, "dname", args->dname);
    if (args->dxml)
        ho_json_add_string(obj, "xml", args->dxml);
    if (args->migrate_uri)
        ho_json_add_string(obj, "migrate_uri", args->migrate_uri);
    if (args->listen_address)
        ho_json_add_string(obj, "listen_address", args->listen_address);
    if (args->has_bandwidth)
        ho_json_add_int64(obj, "bandwidth_mib", (int64_t)args->bandwidth_mib);
    if (args->has_max_downtime)
        ho_json_add_int64(obj, "max_downtime_ms", (int64_t)args->max_downtime_ms);
    ho_json_add_bool(obj, "auto_converge", args->auto_converge);
    ho_json_add_bool(obj, "parallel", args->parallel);
    if (args->parallel_connections)
        ho_json_add_int64(obj, "parallel_connections", args->parallel_connections);
    if (args->timeout_s)
        ho_json_add_int64(obj, "timeout_s", args->timeout_s);
    ho_json_add_bool(obj, "timeout_abort", args->timeout_abort);
    ho_json_add_bool(obj, "unsafe", args->unsafe);
    if (args->record_path)
        ho_json_add_string(obj, "record", args->record_path);
    ho_json_add_bool(obj, "copy_storage_all", args->copy_storage_all);
    ho_json_add_bool(obj, "copy_storage_inc", args->copy_storage_inc);
    ho_json_add_bool(obj, "copy_storage_synchronous_writes",
                     args->copy_storage_synchronous_writes);
    if (args->migrate_disks) {
        json_object *arr = json_object_new_array();

        for (size_t i = 0; args->migrate_disks[i]; i++)
            json_object_array_add(arr, json_object_new_string(args->migrate_disks[i]));
        ho_json_add(obj, "migrate_disks", arr);
    }
    if (args->disks_port)
        ho_json_add_int64(obj, "disks_port", args->disks_port);
    if (args->disks_uri)
        ho_json_add_string(obj, "disks_uri", args->disks_uri);
    ho_json_add_bool(obj, "postcopy", args->postcopy);
    ho_json_add_bool(obj, "postcopy_after_precopy", args->postcopy_after_precopy);
    if (args->has_postcopy_bandwidth)
        ho_json_add_int64(obj, "postcopy_bandwidth_mib", (int64_t)args->postcopy_bandwidth_mib);
    if (args->mode)
        ho_json_add_string(obj, "mode", args->mode);
    return obj;
}

/* ---- the orchestrator ------------------------------------------------------- */

/* Bounded waits for events that may never come. */
#define CANCEL_WAIT_S 30        /* migrate_cancel -> cancelled/failed */
#define INCOMING_WAIT_S 30      /* dst: the source's completed -> our own completed */
#define STATS_RETRIES 3         /* query-migrate after completed while downtime is 0 */
#define DEFAULT_PORT_MIN 49152
#define DEFAULT_PORT_MAX 49215
#define DEFAULT_PROGRESS_MS 500
#define DEFAULT_NBD_PORT_MIN 10809
#define DEFAULT_NBD_PORT_MAX 10872
#define DEFAULT_MIRROR_STALL_S 60
/* The automatic stream buffer: a window for 10 Gb/s (1250 bytes a
 * microsecond) at the round trip to the peer daemon, at least 32 KiB;
 * above 4 MiB the kernel's autotuning does as well. */
#define STREAM_BYTES_PER_US 1250
#define STREAM_BUFFER_MIN (32 * 1024)
#define STREAM_BUFFER_AUTO_MAX (4 * 1024 * 1024)
#define STREAM_BUFFER_MAX (64 * 1024 * 1024)
/* The fd name of the migration stream in both QEMUs (getfd). */
#define STREAM_FD_NAME "migration-stream"
/* How long the source daemon tries to connect the stream. */
#define STREAM_CONNECT_WAIT_S 30
#define MIRROR_END_WAIT_S 30    /* block-job-cancel -> the mirror gone */
#define MAX_STORAGE_DISKS 256
#define DEFAULT_POSTCOPY_STALL_S 10
/* No --bandwidth: as fast as the link goes (QEMU's own default throttles to
 * 128 MiB/s, or 32 MiB/s in older versions). */
#define UNLIMITED_BANDWIDTH (G_GUINT64_CONSTANT(1) << 53)
/* QEMU's downtime-limit when nobody sets it (7.2 and 10.0): the top of the
 * downtime ramp without --max-downtime. */
#define QEMU_DEFAULT_DOWNTIME_MS 300

/* A stream_buffer the peer sent (cookie or Prepare answer): out of
 * range is the kernel's buffers (0), as from a peer without it. */
static guint64
stream_buffer_from_peer(int64_t bytes)
{
    return bytes > 0 && (guint64)bytes <= STREAM_BUFFER_MAX ? (guint64)bytes : 0;
}

typedef struct _Job Job;

/* What the pending destination answer is. */
typedef enum {
    REPLY_PREPARE = 0,   /* an error on failure */
    REPLY_FINISH,        /* {"state": "running"|"paused"}, or {"state": "shutoff", "error"} */
    REPLY_FINISH_ABORT,  /* {} once the QEMU is gone */
} ReplyKind;

struct _QemuMigration {
    QemuDriver *drv;
    GMainContext *ctx;
    char *host_uuid;
    char *hostname;
    char *migration_address;
    int port_min;
    int port_max;
    char *record_dir;
    unsigned int progress_interval_ms;
    int nbd_port_min;
    int nbd_port_max;
    unsigned int mirror_stall_s;
    char *qemu_img;
    unsigned int postcopy_stall_s;
    unsigned int switchover_boost; /* nice levels; 0: off */
    unsigned int downtime_start_ms; /* the downtime ramp's first limit; 0: off */
    guint64 mirror_buf_size;        /* blockdev-mirror buf-size; 0: QEMU's */
    guint64 stream_buffer;          /* the stream's socket buffers; 0: automatic */
    bool boost_warned;
    QemuMigrationEventFunc event_cb;
    void *opaque;
    GHashTable *jobs;      /* uuid -> Job (a reference) */
    GHashTable *completed; /* uuid -> json_object: the last finished job's info */
    GQueue events;         /* PendingEvent, emitted from an idle callback */
    GSource *events_source;
};

struct _Job {
    gint refs;
    QemuMigration *mig; /* NULL once the orchestrator is gone: callbacks only unref */
    QemuDomainObj *dom; /* a reference; NULL on dst until its QEMU is starting */
    char *uuid;
    char *name;         /* on this host */
    bool src;
    QemuMigrationPhase phase;
    bool ended;
    QemuMigrationArgs args;
    gint64 start_us;    /* monotonic */
    gint64 start_wall_ms;
    char *peer_host_uuid;
    char *peer_hostname;
    char *uri;          /* the incoming QEMU's address: tcp:HOST:PORT */

    /* source */
    const QemuMigrationPeerOps *ops;
    void *peer;
    QemuMigrationDoneFunc done_cb;
    void *done_opaque;
    json_object *cookie;
    bool was_running;
    bool use_pbs;          /* pause-before-switchover on */
    /* The source QEMU's migration capabilities and parameters: sent while
     * the mirrors copy (or at Perform without disks), so that `migrate`
     * follows the last BLOCK_JOB_READY at once. */
    enum { SETTINGS_UNSENT, SETTINGS_SENT, SETTINGS_IN } settings;
    bool perform_waiting;  /* Perform is due once the settings are in */
    bool prepared;         /* the destination has a QEMU for us */
    /* The migration stream's socket buffers in bytes (0: the kernel's).
     * Source: offered in the cookie, then what the destination applied;
     * destination: what the source asked for, 0 once declined. */
    guint64 stream_buffer;
    /* Destination, QEMU 8.2 and later: the listening socket this daemon
     * accepts the stream on (-1: none), and its watch. */
    int stream_lfd;
    GSource *stream_accept_src;
    bool prepare_pending;
    bool migrate_sent;
    bool cancel_sent;
    bool finish_sent;
    bool peer_gone;
    bool unwinding;
    bool qemu_gone;        /* our QEMU exited */
    bool quitting;         /* success: quitting the source QEMU */
    bool dst_ran;
    char *guest_lost;   /* dst: why the guest is lost (its QEMU died or failed in postcopy) */
    /* dst: `cont` went out and QEMU has not refused it: from here on,
     * QEMU may have run a vCPU even if it dies without a RESUME (the
     * event can be lost with the process), so its death is no proof that
     * the guest never ran here. */
    bool cont_sent;
    QemuMigrationStatus qstatus; /* the last MIGRATION status seen */
    gint64 completed_us;   /* source completed */
    gint64 finish_reply_us;
    json_object *stats;    /* the completed info */

    /* destination */
    QemuMigrationReplyFunc reply_cb; /* the pending prepare or finish answer */
    void *reply_opaque;
    bool incoming_completed;
    bool finish_waiting;
    const char *listen_host; /* borrowed from listen_host_owned */
    char *listen_host_owned;
    char *public_host;
    int port;
    int port_last;

    QemuDomainDef *def;      /* what Prepare starts */
    char *emulator;          /* this host's emulator for it, NULL: the default */
    int reply_kind;          /* ReplyKind of reply_cb */

    QemuMonitor *mon;
    guint mig_sub;
    guint stop_sub;     /* source: STOP, to boost the paused guest's QEMU */
    GSource *boost_src; /* the boost, due once the loop has nothing more urgent */
    int boost_pid;      /* the QEMU boosted for the switchover, 0: none (any more) */
    QemuProcessNice boost_orig; /* its nice values before */
    bool boosted;       /* it was, at boosted_nice (job info) */
    int boosted_nice;
    guint exit_watch;
    QemuRecorder *rec;
    char *record_path;
    GSource *timeout_src;
    GSource *progress_src;
    GSource *bound_src;
    GSource *mirror_src; /* the bound on mirrors ending (switchover, teardown) */
    HoError *err;      /* the first error */
    struct _CprJob *cpr; /* CPR transfer (issue 6): its state, see the CPR section */
    bool cancelled;    /* ends CANCELLED rather than FAILED */

    /* storage copy (both sides) */
    GPtrArray *disks;        /* StorageDisk: the disks copied, in definition order */
    GPtrArray *warnings;     /* char *: said once as "warning" events, kept in the info */
    /* source */
    QemuBlockJobSet *mirrors; /* the mirrors, once MIRROR started */
    char *nbd_host;          /* the destination's NBD server: host and port, */
    int nbd_port;
    char *nbd_path;          /* or UNIX socket */
    bool dst_late_activate;  /* the destination activates its images at cont */
    bool nbd_stop_sent;
    bool teardown;           /* unwinding: ending mirrors and NBD client nodes */
    guint teardown_pending;  /* blockdev-del replies still to come */
    gint64 pbs_us;           /* pre-switchover received */
    gint64 cancel_us;        /* block-job-cancels sent */
    gint64 gone_us;          /* the last mirror gone */
    gint64 nbd_wait_us;      /* time spent waiting for the peer's nbd_stop in the window */
    gint64 continue_us;      /* migrate-continue sent */
    uint64_t disk_last_processed;
    gint64 mirror_start_us;    /* MIRROR began */
    uint64_t disk_avg_bps;     /* the bulk copy's average, once every mirror was ready */
    gint64 disk_last_us;
    uint64_t disk_bps;
    /* destination */
    GPtrArray *created;      /* char *: image paths this job created */
    guint create_next;       /* the next disk to check or create */
    bool nbd_running;
    int nbd_port_last;
    guint exports_pending;

    /* postcopy (both sides) */
    bool postcopy_started;   /* postcopy-active was seen: the source never runs again */
    guint pass_sub;          /* src: MIGRATION_PASS (--postcopy-after-precopy, the ramp) */
    unsigned int downtime_ms;     /* src: the downtime limit set in QEMU; 0: QEMU's own */
    unsigned int downtime_asked_ms; /* src: the last one asked for (answered or not) */
    unsigned int downtime_top_ms; /* src: where the ramp stops; 0: no ramp */
    bool postcopy_switch_sent; /* src: migrate-start-postcopy went out */
    GSource *stall_src;      /* src: the progress check in POSTCOPY */
    uint64_t stall_bytes;    /* src: transferred bytes at the last check that moved */
    gint64 stall_us;         /* src: when they last moved */
    bool pause_sent;         /* migrate-pause went out since the last postcopy-active */
    GSource *recover_src;    /* src: the bound on a recovery attempt */
    QemuMigrationDoneFunc resume_cb; /* src: the pending recovery attempt's caller */
    void *resume_opaque;
    GPtrArray *old_peers;    /* src: peers replaced by a recovery, freed with the job */
    char *recover_uri;       /* dst: migrate-recover listens here (until QEMU used it) */
    int recover_port;        /* dst: the port being tried */
    QemuMigrationReplyFunc recover_cb; /* dst: the pending recover answer */
    void *recover_opaque;
};

/* One disk of a storage copy. */
typedef struct {
    char *target;            /* "vda" */
    char *node;              /* its format node (mirror source, export node and name) */
    char *format;            /* "qcow2", "raw" */
    uint64_t size;           /* virtual size, bytes */
    char *backing;           /* src: the top image's backing file (--copy-storage-inc) */
    char *backing_format;
    char *export_name;       /* src: the destination's export of it */
    bool node_added;         /* src: its NBD client node exists */
} StorageDisk;

static void
storage_disk_free(StorageDisk *d)
{
    if (!d)
        return;
    g_free(d->target);
    g_free(d->node);
    g_free(d->format);
    g_free(d->backing);
    g_free(d->backing_format);
    g_free(d->export_name);
    g_free(d);
}

/* Names of what a storage copy creates in the source QEMU (stable, so
 * that a restarted daemon finds them): the NBD client node and the job. */
static char *
storage_client_node(const StorageDisk *d)
{
    return g_strdup_printf("migration-%s-storage", d->target);
}

static char *
storage_job_id(const StorageDisk *d)
{
    return g_strdup_printf("mirror-%s", d->target);
}

/* The disk (its target name, "vdb") a mirror job id belongs to. */
static const char *
storage_job_disk(const char *job_id)
{
    return g_str_has_prefix(job_id, "mirror-") ? job_id + strlen("mirror-") : job_id;
}

static Job *
job_ref(Job *job)
{
    g_atomic_int_inc(&job->refs);
    return job;
}

static void
clear_source(GSource **src)
{
    if (*src) {
        g_source_destroy(*src);
        g_clear_pointer(src, g_source_unref);
    }
}

static void
job_unref(Job *job)
{
    if (!job || !g_atomic_int_dec_and_test(&job->refs))
        return;
    clear_source(&job->timeout_src);
    clear_source(&job->progress_src);
    clear_source(&job->bound_src);
    clear_source(&job->mirror_src);
    clear_source(&job->stall_src);
    clear_source(&job->recover_src);
    if (job->old_peers)
        g_ptr_array_unref(job->old_peers);
    g_free(job->recover_uri);
    qemu_block_job_set_free(job->mirrors);
    if (job->disks)
        g_ptr_array_unref(job->disks);
    if (job->warnings)
        g_ptr_array_unref(job->warnings);
    if (job->created)
        g_ptr_array_unref(job->created);
    g_free(job->nbd_host);
    g_free(job->nbd_path);
    if (job->ops && job->ops->free && job->peer)
        job->ops->free(job->peer);
    qemu_monitor_unref(job->mon);
    qemu_recorder_unref(job->rec);
    qemu_domain_obj_unref(job->dom);
    qemu_migration_args_clear(&job->args);
    json_object_put(job->cookie);
    json_object_put(job->stats);
    qemu_domain_def_free(job->def);
    g_free(job->emulator);
    ho_error_free(job->err);
    g_free(job->uuid);
    g_free(job->name);
    g_free(job->peer_host_uuid);
    g_free(job->peer_hostname);
    g_free(job->uri);
    g_free(job->listen_host_owned);
    g_free(job->public_host);
    g_free(job->record_path);
    g_free(job->guest_lost);
    g_free(job);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(Job, job_unref)

/* Whether a callback of this job still has work to do. */
static bool
job_live(Job *job)
{
    return job->mig && !job->ended;
}

static GSource *
job_timeout(Job *job, guint ms, GSourceFunc fn)
{
    GSource *src = g_timeout_source_new(ms);

    g_source_set_callback(src, fn, job_ref(job), (GDestroyNotify)job_unref);
    g_source_attach(src, job->mig->ctx);
    return src;
}

static void cpr_record(Job *job, json_object *obj);
static bool cpr_recover_job(Job *job, json_object *rec);

/* The error a failed call reported (taken), or a generic one if it
 * reported none. */
static HoError *
error_steal_or_unknown(void)
{
    HoError *err = ho_error_steal();

    return err ? err : ho_error_new(HO_ERR_INTERNAL, "%s", _("unknown error"));
}

/* Keep the first error; consumes err. */
static void
job_keep_error(Job *job, HoError *err)
{
    if (!job->err)
        job->err = err;
    else
        ho_error_free(err);
}

static const char *
job_side(const Job *job)
{
    return job->src ? "src" : "dst";
}

/* ---- job events (delivered from an idle callback, in order) ---------------- */

typedef struct {
    char *name;
    char *uuid;
    char *event;
    json_object *data;
} PendingEvent;

static void
pending_event_free(PendingEvent *e)
{
    g_free(e->name);
    g_free(e->uuid);
    g_free(e->event);
    json_object_put(e->data);
    g_free(e);
}

/* Deliver the queued job events, in order. */
static void
events_flush(QemuMigration *mig)
{
    PendingEvent *e;

    clear_source(&mig->events_source);
    while ((e = g_queue_pop_head(&mig->events))) {
        if (mig->event_cb)
            mig->event_cb(mig, e->name, e->uuid, e->event, e->data, mig->opaque);
        pending_event_free(e);
    }
}

static gboolean
events_dispatch(gpointer opaque)
{
    events_flush(opaque);
    return G_SOURCE_REMOVE;
}

/* Queue a job event; data consumed. Events never run inside the step that
 * caused them: nothing but QEMU's and the peer's work sits in the
 * switchover window. */
static void
job_emit(Job *job, const char *event, json_object *data)
{
    QemuMigration *mig = job->mig;
    PendingEvent *e;

    if (!mig) {
        json_object_put(data);
        return;
    }
    e = g_new0(PendingEvent, 1);
    e->name = g_strdup(job->name);
    e->uuid = g_strdup(job->uuid);
    e->event = g_strdup(event);
    e->data = data ? data : json_object_new_object();
    g_queue_push_tail(&mig->events, e);
    if (!mig->events_source) {
        mig->events_source = g_idle_source_new();
        g_source_set_callback(mig->events_source, events_dispatch, mig, NULL);
        g_source_attach(mig->events_source, mig->ctx);
    }
}

/* ---- the job record (persisted in the domain's status file) --------------- */

static json_object *
job_record(Job *job)
{
    json_object *obj = json_object_new_object();

    ho_json_add_int64(obj, "format", 1);
    ho_json_add_string(obj, "side", job_side(job));
    ho_json_add_string(obj, "phase", qemu_migration_phase_to_string(job->phase));
    ho_json_add_string(obj, "uuid", job->uuid);
    ho_json_add_string(obj, "name", job->name);
    if (job->peer_host_uuid)
        ho_json_add_string(obj, "peer_host_uuid", job->peer_host_uuid);
    if (job->peer_hostname)
        ho_json_add_string(obj, "peer_hostname", job->peer_hostname);
    ho_json_add_int64(obj, "start_ms", job->start_wall_ms);
    ho_json_add(obj, "args", qemu_migration_args_to_json(&job->args));
    if (job->uri)
        ho_json_add_string(obj, "uri", job->uri);
    if (job->src) {
        ho_json_add_bool(obj, "was_running", job->was_running);
        ho_json_add_bool(obj, "pause_before_switchover", job->use_pbs);
        /* Written with PERFORM, before `migrate`: from here until CONFIRM
         * the phases live in memory only (the switchover window); after a
         * restart QEMU's own migration status says where it got to. */
        ho_json_add_bool(obj, "migrate_issued", job->phase >= QEMU_MIGRATION_PHASE_PERFORM);
        ho_json_add_bool(obj, "destination_ran", job->dst_ran);
    }
    if (job->record_path)
        ho_json_add_string(obj, "record", job->record_path);
    if (job->cpr)
        cpr_record(job, obj);
    if (job->disks && job->disks->len) {
        /* A restarted daemon ends the mirrors and NBD client nodes of
         * these disks (source) by their stable names. */
        json_object *arr = json_object_new_array();

        for (guint i = 0; i < job->disks->len; i++) {
            const StorageDisk *d = g_ptr_array_index(job->disks, i);

            json_object_array_add(arr, json_object_new_string(d->target));
        }
        ho_json_add(obj, "storage_disks", arr);
    }
    if (job->created && job->created->len) {
        /* A restarted daemon removes these when it unwinds (destination). */
        json_object *arr = json_object_new_array();

        for (guint i = 0; i < job->created->len; i++)
            json_object_array_add(arr,
                                  json_object_new_string(g_ptr_array_index(job->created, i)));
        ho_json_add(obj, "created_images", arr);
    }
    return obj;
}

/* Phases written to disk. The others (pre-switchover, switchover, finish)
 * sit inside the switchover window, which has no disk writes in it
 * (DESIGN.md §2 invariant 5): PERFORM is persisted before `migrate`, and
 * the next write is CONFIRM on the source (after the destination
 * answered) and the finished domain on the destination (after `cont`). */
static bool
phase_persisted(QemuMigrationPhase phase)
{
    switch (phase) {
    case QEMU_MIGRATION_PHASE_BEGIN:
    case QEMU_MIGRATION_PHASE_PREPARE:
    case QEMU_MIGRATION_PHASE_MIRROR:
    case QEMU_MIGRATION_PHASE_PERFORM:
    case QEMU_MIGRATION_PHASE_CONFIRM:
    /* Postcopy: the destination resumed itself at postcopy-active, so
     * these writes sit in no switchover window. */
    case QEMU_MIGRATION_PHASE_POSTCOPY:
    case QEMU_MIGRATION_PHASE_POSTCOPY_PAUSED:
    case QEMU_MIGRATION_PHASE_POSTCOPY_RECOVER:
        return true;
    default:
        return false;
    }
}

/* Whether a job may move from old to phase. */
static bool
phase_allowed(bool src, QemuMigrationPhase old, QemuMigrationPhase phase)
{
    if (qemu_migration_phase_is_terminal(old))
        return false;
    switch (phase) {
    case QEMU_MIGRATION_PHASE_BEGIN:
        return src && old == QEMU_MIGRATION_PHASE_NONE;
    case QEMU_MIGRATION_PHASE_PREPARE:
        return src ? old == QEMU_MIGRATION_PHASE_BEGIN : old == QEMU_MIGRATION_PHASE_NONE;
    case QEMU_MIGRATION_PHASE_MIRROR:
        return src && old == QEMU_MIGRATION_PHASE_PREPARE;
    case QEMU_MIGRATION_PHASE_PERFORM:
        return old == QEMU_MIGRATION_PHASE_PREPARE ||
               (src && old == QEMU_MIGRATION_PHASE_MIRROR);
    case QEMU_MIGRATION_PHASE_PRE_SWITCHOVER:
        return src && old == QEMU_MIGRATION_PHASE_PERFORM;
    case QEMU_MIGRATION_PHASE_SWITCHOVER:
        return src && (old == QEMU_MIGRATION_PHASE_PERFORM ||
                       old == QEMU_MIGRATION_PHASE_PRE_SWITCHOVER);
    case QEMU_MIGRATION_PHASE_FINISH:
        return (src ? old == QEMU_MIGRATION_PHASE_SWITCHOVER : old == QEMU_MIGRATION_PHASE_PERFORM) ||
               old == QEMU_MIGRATION_PHASE_POSTCOPY;
    case QEMU_MIGRATION_PHASE_CONFIRM:
        return src && old == QEMU_MIGRATION_PHASE_FINISH;
    case QEMU_MIGRATION_PHASE_POSTCOPY:
        /* postcopy-active: after precopy (with or without the pause), or
         * again after a recovery. */
        return old == QEMU_MIGRATION_PHASE_PERFORM ||
               old == QEMU_MIGRATION_PHASE_POSTCOPY_PAUSED ||
               old == QEMU_MIGRATION_PHASE_POSTCOPY_RECOVER ||
               (src && (old == QEMU_MIGRATION_PHASE_PRE_SWITCHOVER ||
                        old == QEMU_MIGRATION_PHASE_SWITCHOVER));
    case QEMU_MIGRATION_PHASE_POSTCOPY_PAUSED:
        return old == QEMU_MIGRATION_PHASE_POSTCOPY || old == QEMU_MIGRATION_PHASE_POSTCOPY_RECOVER;
    case QEMU_MIGRATION_PHASE_POSTCOPY_RECOVER:
        return old == QEMU_MIGRATION_PHASE_POSTCOPY_PAUSED;
    case QEMU_MIGRATION_PHASE_COMPLETED:
        return src ? old == QEMU_MIGRATION_PHASE_CONFIRM : old == QEMU_MIGRATION_PHASE_FINISH;
    case QEMU_MIGRATION_PHASE_FAILED:
    case QEMU_MIGRATION_PHASE_CANCELLED:
        return true;
    default:
        return false;
    }
}

/* The one phase setter: checks the old phase, logs, persists (phases
 * outside the window; a terminal phase clears the record), emits the
 * event. -1 and an error: nothing changed. */
static int
job_set_phase(Job *job, QemuMigrationPhase phase)
{
    QemuMigrationPhase old = job->phase;
    QemuDriver *drv = job->mig->drv;
    json_object *data;

    if (!phase_allowed(job->src, old, phase)) {
        ho_error_report(HO_ERR_INTERNAL,
                        _("migration job of domain '%1$s' cannot go from phase '%2$s' to '%3$s'"),
                        job->name, qemu_migration_phase_to_string(old),
                        qemu_migration_phase_to_string(phase));
        return -1;
    }
    HO_INFO("domain '%s': %s migration %s -> %s", job->name, job_side(job),
            qemu_migration_phase_to_string(old), qemu_migration_phase_to_string(phase));
    job->phase = phase;
    if (job->dom && qemu_domain_obj_is_active(job->dom)) {
        int rc = 0;

        if (qemu_migration_phase_is_terminal(phase)) {
            if (qemu_domain_obj_get_job(job->dom))
                rc = qemu_driver_domain_set_job(drv, job->dom, NULL);
        } else if (phase_persisted(phase)) {
            rc = qemu_driver_domain_set_job(drv, job->dom, job_record(job));
        }
        if (rc < 0) {
            if (qemu_migration_phase_is_terminal(phase)) {
                /* The job ended anyway; a stale record is recovered later. */
                HO_WARN("domain '%s': %s", job->name, ho_error_last_message());
                ho_error_reset();
            } else {
                job->phase = old;
                return -1;
            }
        }
    }
    if (!qemu_migration_phase_is_terminal(phase)) {
        data = json_object_new_object();
        ho_json_add_string(data, "phase", qemu_migration_phase_to_string(phase));
        ho_json_add_string(data, "side", job_side(job));
        job_emit(job, "phase", data);
    }
    return 0;
}

/* ---- statistics ----------------------------------------------------------- */

static json_object *
job_info_base(Job *job)
{
    json_object *info = json_object_new_object();

    ho_json_add_string(info, "phase", qemu_migration_phase_to_string(job->phase));
    ho_json_add_string(info, "side", job_side(job));
    ho_json_add_int64(info, "elapsed_ms", (ho_time_now_us() - job->start_us) / 1000);
    if (job->boosted)
        ho_json_add_int64(info, "switchover_nice", job->boosted_nice);
    if (job->downtime_ms)
        ho_json_add_int64(info, "downtime_limit_ms", job->downtime_ms);
    return info;
}

static void
info_add_qemu(json_object *info, const QemuMigrationInfo *qi)
{
    if (qi->has_setup_time)
        ho_json_add_int64(info, "setup_ms", qi->setup_time);
    if (qi->has_ram) {
        const QemuMigrationRam *r = &qi->ram;

        ho_json_add_int64(info, "data_total", (int64_t)r->total);
        ho_json_add_int64(info, "data_processed", (int64_t)r->transferred);
        ho_json_add_int64(info, "data_remaining", (int64_t)r->remaining);
        ho_json_add_int64(info, "memory_total", (int64_t)r->total);
        ho_json_add_int64(info, "memory_processed", (int64_t)r->transferred);
        ho_json_add_int64(info, "memory_remaining", (int64_t)r->remaining);
        /* mbps is megabits per second. */
        ho_json_add_int64(info, "bandwidth_bps", (int64_t)(r->mbps * 1000000.0 / 8.0));
        ho_json_add_int64(info, "dirty_rate_pps", (int64_t)r->dirty_pages_rate);
        ho_json_add_int64(info, "iteration", (int64_t)r->dirty_sync_count);
        if (qi->status == QEMU_MIGRATION_STATUS_POSTCOPY_ACTIVE ||
            qi->status == QEMU_MIGRATION_STATUS_POSTCOPY_PAUSED ||
            qi->status == QEMU_MIGRATION_STATUS_POSTCOPY_RECOVER_SETUP ||
            qi->status == QEMU_MIGRATION_STATUS_POSTCOPY_RECOVER || r->postcopy_requests ||
            r->postcopy_bytes) {
            ho_json_add_int64(info, "postcopy_requests", (int64_t)r->postcopy_requests);
            ho_json_add_int64(info, "postcopy_bytes", (int64_t)r->postcopy_bytes);
        }
    }
    if (qi->has_expected_downtime)
        ho_json_add_int64(info, "expected_downtime_ms", qi->expected_downtime);
    ho_json_add_string(info, "qemu_status", qemu_migration_status_to_string(qi->status));
}

/* Disk copy statistics (storage copy): the mirrors' totals as last seen. */
static void
info_add_storage(json_object *info, Job *job)
{
    uint64_t total = 0, processed = 0;

    if (!job->mirrors)
        return;
    qemu_block_job_set_totals(job->mirrors, &total, &processed);
    ho_json_add_int64(info, "disk_total", (int64_t)total);
    ho_json_add_int64(info, "disk_processed", (int64_t)processed);
    ho_json_add_int64(info, "disk_remaining", (int64_t)(total - processed));
    /* While the disks copy, the latest rate; after that the bulk copy's
     * average (the latest rate is only the guest's writes by then). */
    ho_json_add_int64(info, "disk_bandwidth_bps",
                      (int64_t)(job->disk_avg_bps ? job->disk_avg_bps : job->disk_bps));
}

/* The switchover window's split, once migrate-continue went out. */
static void
info_add_switchover(json_object *info, Job *job)
{
    gint64 total, qemu;

    if (!job->pbs_us || !job->continue_us)
        return;
    total = job->continue_us - job->pbs_us;
    qemu = (job->cancel_us ? job->gone_us - job->cancel_us : 0) + job->nbd_wait_us;
    qemu = CLAMP(qemu, 0, total);
    ho_json_add_int64(info, "switchover_ms", total / 1000);
    ho_json_add_int64(info, "switchover_qemu_ms", qemu / 1000);
    ho_json_add_int64(info, "switchover_own_ms", (total - qemu) / 1000);
    ho_json_add_int64(info, "switchover_us", total);
    ho_json_add_int64(info, "switchover_qemu_us", qemu);
    ho_json_add_int64(info, "switchover_own_us", total - qemu);
}

static void
info_add_warnings(json_object *info, Job *job)
{
    json_object *arr;

    if (!job->warnings || !job->warnings->len)
        return;
    arr = json_object_new_array();
    for (guint i = 0; i < job->warnings->len; i++)
        json_object_array_add(arr, json_object_new_string(g_ptr_array_index(job->warnings, i)));
    ho_json_add(info, "warnings", arr);
}

static void
error_to_json(json_object *obj, const HoError *err)
{
    json_object *e = json_object_new_object();

    ho_json_add_string(e, "code", ho_error_code_name(err->code));
    ho_json_add_string(e, "message", err->message);
    ho_json_add(obj, "error", e);
}

/* ---- ending a job ------------------------------------------------------------ */

/* While the guest is paused for the switchover, its QEMU on this side
 * runs switchover_boost nice levels higher (at most -20) than it ran:
 * with many migrations sharing the host's CPUs, the paused guest's last
 * steps (the final RAM and device state, the mirrors' end, loading the
 * state on the destination, cont) go first. Once per job; job_unboost
 * undoes it at the job's end. Without CAP_SYS_NICE it warns once per
 * daemon and the migration goes on unboosted. */
static void
job_boost(Job *job)
{
    QemuMigration *mig = job->mig;
    QemuProcessNice orig, target;
    int pid;

    if (!mig || !mig->switchover_boost || job->boosted || !job->dom)
        return;
    pid = qemu_domain_obj_pid(job->dom);
    if (pid <= 0)
        return;
    if (qemu_process_boost(pid, mig->switchover_boost, &orig, &target) < 0) {
        if (!mig->boost_warned)
            HO_WARN("domain '%s': the switchover runs without a priority boost "
                    "(migration_switchover_boost = 0 turns it off): %s",
                    job->name, ho_error_last_message());
        mig->boost_warned = true;
        ho_error_reset();
        return;
    }
    job->boost_pid = pid;
    job->boost_orig = orig;
    job->boosted = true;
    job->boosted_nice = target.threads;
    HO_DEBUG("domain '%s': QEMU %d at nice %d for the switchover", job->name, pid,
             target.threads);
}

static gboolean
job_boost_idle(gpointer opaque)
{
    Job *job = opaque;

    g_clear_pointer(&job->boost_src, g_source_unref);
    if (job_live(job))
        job_boost(job);
    return G_SOURCE_REMOVE;
}

/* The boost, from the loop below the default priority: the QMP writes
 * (the monitor writes from the loop) and the events already due go
 * first, so it never delays a command of the switchover. */
static void
job_boost_soon(Job *job)
{
    if (!job->mig || !job->mig->switchover_boost || job->boosted || job->boost_src)
        return;
    job->boost_src = g_idle_source_new();
    g_source_set_priority(job->boost_src, G_PRIORITY_DEFAULT + 1);
    g_source_set_callback(job->boost_src, job_boost_idle, job_ref(job),
                          (GDestroyNotify)job_unref);
    g_source_attach(job->boost_src, job->mig->ctx);
}

static void
job_unboost(Job *job)
{
    int pid = job->boost_pid;

    if (!pid)
        return;
    job->boost_pid = 0;
    if (job->quitting || job->qemu_gone || !job->dom || qemu_domain_obj_pid(job->dom) != pid)
        return;
    if (qemu_process_set_nice(pid, &job->boost_orig) < 0) {
        HO_WARN("domain '%s': %s", job->name, ho_error_last_message());
        ho_error_reset();
        return;
    }
    HO_DEBUG("domain '%s': QEMU %d back at nice %d", job->name, pid, job->boost_orig.threads);
}

/* A job found again after a restart: a QEMU the daemon that died left
 * boosted runs at a lower nice value than QEMUs start at (or its
 * autogroup below 0, where a new session starts); put it back. */
static void
job_unboost_recovered(Job *job)
{
    int pid = job->dom ? qemu_domain_obj_pid(job->dom) : 0;
    QemuProcessNice cur, start;

    if (pid <= 0 || qemu_process_get_nice(pid, &cur) < 0) {
        ho_error_reset();
        return;
    }
    start = cur;
    start.threads = MAX(cur.threads, qemu_driver_qemu_nice(job->mig->drv));
    start.group = MAX(cur.group, 0);
    if ((start.threads == cur.threads && start.group == cur.group) ||
        qemu_process_set_nice(pid, &start) < 0) {
        ho_error_reset();
        return;
    }
    HO_INFO("domain '%s': QEMU %d back from nice %d to %d after the restart", job->name, pid,
            cur.threads, start.threads);
}

/* Source: the guest stopped after `migrate` (the switchover begins). */
static void
src_stop_event(QemuMonitor *mon, const char *name, json_object *data, gint64 qemu_ts_us,
               gint64 recv_ts_us, void *opaque)
{
    Job *job = opaque;

    if (job_live(job) && job->migrate_sent && !job->unwinding)
        job_boost_soon(job);
}

static void
dst_stream_listener_close(Job *job)
{
    clear_source(&job->stream_accept_src);
    if (job->stream_lfd >= 0) {
        close(job->stream_lfd);
        job->stream_lfd = -1;
    }
}

static void
job_detach(Job *job)
{
    clear_source(&job->timeout_src);
    clear_source(&job->progress_src);
    clear_source(&job->bound_src);
    clear_source(&job->mirror_src);
    clear_source(&job->stall_src);
    clear_source(&job->recover_src);
    clear_source(&job->boost_src);
    dst_stream_listener_close(job);
    if (job->mon && job->mig_sub) {
        qemu_monitor_unsubscribe(job->mon, job->mig_sub);
        job->mig_sub = 0;
    }
    if (job->mon && job->stop_sub) {
        qemu_monitor_unsubscribe(job->mon, job->stop_sub);
        job->stop_sub = 0;
    }
    if (job->mon && job->pass_sub) {
        qemu_monitor_unsubscribe(job->mon, job->pass_sub);
        job->pass_sub = 0;
    }
    if (job->mon && job->rec) {
        /* Back to the daemon-wide recorder, if any. */
        qemu_monitor_set_recorder(job->mon, job->mig ? qemu_driver_recorder(job->mig->drv) : NULL);
    }
    if (job->dom && job->exit_watch) {
        qemu_domain_obj_remove_exit_watch(job->dom, job->exit_watch);
        job->exit_watch = 0;
    }
    g_clear_pointer(&job->mirrors, qemu_block_job_set_free);
}

/* Destination, on failure: remove the images this job created, never
 * one a live QEMU still holds (kept paused after an unknown outcome). */
static void
dst_remove_created(Job *job)
{
    if (!job->created || (job->dom && qemu_domain_obj_is_active(job->dom)))
        return;
    for (guint i = 0; i < job->created->len; i++) {
        const char *path = g_ptr_array_index(job->created, i);

        if (unlink(path) < 0 && errno != ENOENT)
            HO_WARN("domain '%s': cannot remove the image '%s' created for the migration: %s",
                    job->name, path, g_strerror(errno));
        else
            HO_INFO("domain '%s': removed the image '%s' created for the migration", job->name,
                    path);
    }
    g_ptr_array_set_size(job->created, 0);
}

/* Say a warning once: a "warning" event, and in the job info. */
static void
job_warn(Job *job, const char *msg)
{
    json_object *data = json_object_new_object();

    HO_WARN("domain '%s': %s", job->name, msg);
    if (!job->warnings)
        job->warnings = g_ptr_array_new_with_free_func(g_free);
    g_ptr_array_add(job->warnings, g_strdup(msg));
    ho_json_add_string(data, "message", msg);
    job_emit(job, "warning", data);
}

static void postcopy_job_ended(Job *job, QemuMigrationPhase phase, json_object *info);

/* The job reached a terminal phase: persist (clears the record), keep
 * its info, emit, tell the source's caller, forget it. */
static void
job_end(Job *job, QemuMigrationPhase phase)
{
    QemuMigration *mig = job->mig;
    g_autoptr(Job) hold = job_ref(job);
    json_object *info;
    const char *event;

    if (!job_live(job))
        return;
    if (phase != QEMU_MIGRATION_PHASE_COMPLETED && !job->err)
        job->err = ho_error_new(HO_ERR_INTERNAL, "%s", _("the migration failed"));
    if (job_set_phase(job, phase) < 0) {
        /* Not allowed by the table: a bug, but the job must end. */
        HO_ERROR("domain '%s': %s", job->name, ho_error_last_message());
        ho_error_reset();
        job->phase = phase;
    }
    job->ended = true;
    job_unboost(job);
    job_detach(job);
    if (!job->src && phase != QEMU_MIGRATION_PHASE_COMPLETED)
        dst_remove_created(job);

    info = job->stats ? json_object_get(job->stats) : job_info_base(job);
    if (!job->stats)
        info_add_warnings(info, job);
    json_object_object_del(info, "phase");
    ho_json_add_string(info, "phase", qemu_migration_phase_to_string(phase));
    if (!json_object_object_get_ex(info, "total_ms", NULL))
        ho_json_add_int64(info, "total_ms", (ho_time_now_us() - job->start_us) / 1000);
    if (phase != QEMU_MIGRATION_PHASE_COMPLETED)
        error_to_json(info, job->err);
    if (job->guest_lost)
        ho_json_add_string(info, "guest_lost", job->guest_lost);
    g_hash_table_replace(mig->completed, g_strdup(job->uuid), json_object_get(info));

    if (phase == QEMU_MIGRATION_PHASE_COMPLETED) {
        HO_INFO("domain '%s': %s migration completed", job->name, job_side(job));
        event = "completed";
    } else {
        HO_WARN("domain '%s': %s migration %s: %s", job->name, job_side(job),
                qemu_migration_phase_to_string(phase), job->err->message);
        event = phase == QEMU_MIGRATION_PHASE_CANCELLED ? "cancelled" : "failed";
    }
    job_emit(job, event, json_object_get(info));
    g_hash_table_remove(mig->jobs, job->uuid);
    postcopy_job_ended(job, phase, info);
    /* The caller hears of the end after every event of the job, the
     * phases and the end itself, so nothing the job emitted is missed or
     * arrives after it (the switchover window is over). */
    events_flush(mig);
    if (job->done_cb)
        job->done_cb(mig, job->uuid, phase == QEMU_MIGRATION_PHASE_COMPLETED ? NULL : job->err,
                     info, job->done_opaque);
    json_object_put(info);
}

static void
job_end_failed(Job *job)
{
    job_end(job, job->cancelled ? QEMU_MIGRATION_PHASE_CANCELLED : QEMU_MIGRATION_PHASE_FAILED);
}

/* ---- the flight recorder ---------------------------------------------------- */

/* "2024-05-01T12-00-00.123" for file names. */
static char *
record_stamp(void)
{
    g_autoptr(GDateTime) now = g_date_time_new_now_utc();
    g_autofree char *base = g_date_time_format(now, "%Y%m%dT%H%M%S");

    return g_strdup_printf("%s.%03d", base, g_date_time_get_microsecond(now) / 1000);
}

/* Open the job's recording (job->record_path) and attach it to mon. A
 * recording that cannot be opened is worth a warning, not a failed job. */
static void
job_attach_recorder(Job *job, QemuMonitor *mon)
{
    if (!job->record_path || job->rec)
        return;
    job->rec = qemu_recorder_open(job->record_path);
    if (!job->rec) {
        HO_WARN("domain '%s': no flight recording: %s", job->name, ho_error_last_message());
        ho_error_reset();
        g_clear_pointer(&job->record_path, g_free);
        return;
    }
    qemu_recorder_mark(job->rec, job_side(job), "open", job->name);
    qemu_monitor_set_recorder(mon, job->rec);
}

/* ---- source ------------------------------------------------------------------ */

static void src_unwind(Job *job);
static void src_resume_if_needed(Job *job);
static void src_cancel_mirrors(Job *job, bool force);
static void src_delete_nodes(Job *job, QemuMonitorDoneFunc cb);
static void src_node_del_done(QemuMonitor *mon, const HoError *err, void *opaque);
static gboolean src_mirror_end_timeout(gpointer opaque);
static void src_switchover_continue(Job *job);
static void src_postcopy_lost(Job *job);
static void src_postcopy_event(Job *job, QemuMigrationStatus st);
static void postcopy_src_caps(Job *job, const QemuCaps *caps, const char **names, bool *states,
                              size_t *n);
static void postcopy_src_params(Job *job, json_object *params);
static void src_passes_begin(Job *job, QemuMonitor *mon);

static Job *
mig_find_job(QemuMigration *mig, const char *uuid)
{
    return uuid ? g_hash_table_lookup(mig->jobs, uuid) : NULL;
}

/* Fail the job with err (consumed) and unwind (source). */
static void
src_fail(Job *job, HoError *err)
{
    job_keep_error(job, err);
    src_unwind(job);
}

static void
src_fail_take(Job *job)
{
    src_fail(job, error_steal_or_unknown());
}

static bool src_teardown(Job *job);

/* Done with the unwinding: end the mirrors and NBD client nodes (storage
 * copy), then the job. */
static void
src_unwind_done(Job *job)
{
    if (src_teardown(job))
        return;
    job_end_failed(job);
}

static void
src_cont_done(QemuMonitor *mon, const HoError *err, void *opaque)
{
    g_autoptr(Job) job = opaque;

    if (!job_live(job))
        return;
    if (err) {
        g_autofree char *msg = g_strdup_printf(
            _("domain '%1$s' could not be resumed on the source after the failed migration: %2$s"),
            job->name, err->message);

        HO_WARN("%s", msg);
        if (job->err) {
            /* Keep the first error but say the guest stayed paused. */
            g_autofree char *both = g_strdup_printf("%s; %s", job->err->message, msg);

            g_free(job->err->message);
            job->err->message = g_steal_pointer(&both);
        }
    } else {
        HO_INFO("domain '%s': resumed on the source", job->name);
    }
    src_unwind_done(job);
}

static void
src_status_done(QemuMonitor *mon, const QemuMonitorStatus *st, const HoError *err,
                void *opaque)
{
    g_autoptr(Job) job = opaque;

    if (!job_live(job))
        return;
    if (err) {
        HO_WARN("domain '%s': query-status failed while unwinding: %s", job->name,
                err->message);
        src_unwind_done(job);
        return;
    }
    /* QEMU may already have resumed the guest itself (a cancel in
     * pre-switchover does); resume only what we know was running. */
    if (!st->running && job->was_running && st->state != QEMU_RUN_STATE_SHUTDOWN &&
        st->state != QEMU_RUN_STATE_GUEST_PANICKED && st->state != QEMU_RUN_STATE_INTERNAL_ERROR) {
        qemu_monitor_json_cont(mon, src_cont_done, job_ref(job));
        return;
    }
    src_unwind_done(job);
}

static void
src_resume_if_needed(Job *job)
{
    QemuMonitor *mon = job->dom ? qemu_domain_obj_monitor(job->dom) : NULL;

    /* DESIGN.md §2 invariant 4: after postcopy-active the destination ran
     * the guest; the source's RAM and disks are stale. */
    if (job->qemu_gone || !mon || job->postcopy_started) {
        src_unwind_done(job);
        return;
    }
    qemu_monitor_json_query_status(mon, src_status_done, job_ref(job));
}

static void
src_peer_finish_failed_done(json_object *result, const HoError *err, void *opaque)
{
    g_autoptr(Job) job = opaque;

    if (err)
        HO_WARN("domain '%s': the destination did not confirm the unwinding: %s", job->name,
                err->message);
}

/* Tell the destination to drop its QEMU (not waited for: the source's
 * guest does not wait for the destination's cleanup). */
static void
src_tell_peer_failed(Job *job)
{
    json_object *args;

    if (!job->prepared || job->peer_gone || job->finish_sent || !job->ops || !job->ops->finish ||
        job->postcopy_started)
        return;
    job->finish_sent = true;
    args = json_object_new_object();
    ho_json_add_string(args, "uuid", job->uuid);
    ho_json_add_bool(args, "success", false);
    if (job->err)
        error_to_json(args, job->err);
    job->ops->finish(job->peer, args, src_peer_finish_failed_done, job_ref(job));
}

static gboolean
src_cancel_timeout(gpointer opaque)
{
    Job *job = opaque;

    g_clear_pointer(&job->bound_src, g_source_unref);
    if (!job_live(job))
        return G_SOURCE_REMOVE;
    HO_WARN("domain '%s': QEMU did not finish cancelling the migration within %u s", job->name,
            (unsigned int)CANCEL_WAIT_S);
    job->qstatus = QEMU_MIGRATION_STATUS_CANCELLED;
    src_resume_if_needed(job);
    return G_SOURCE_REMOVE;
}

static void
src_cancel_done(QemuMonitor *mon, const HoError *err, void *opaque)
{
    g_autoptr(Job) job = opaque;

    if (!job_live(job) || !err)
        return;
    /* The MIGRATION event may never come now: ask QEMU where it is. */
    HO_WARN("domain '%s': migrate_cancel failed: %s", job->name, err->message);
    clear_source(&job->bound_src);
    src_resume_if_needed(job);
}

static bool
qstatus_is_final(QemuMigrationStatus st)
{
    return st == QEMU_MIGRATION_STATUS_COMPLETED || st == QEMU_MIGRATION_STATUS_FAILED ||
           st == QEMU_MIGRATION_STATUS_CANCELLED || st == QEMU_MIGRATION_STATUS_NONE;
}

/* Failure or abort before the source completed (DESIGN.md §2 invariant 3):
 * cancel QEMU's migration if it runs, tell the destination to drop its
 * QEMU, resume the source if it ran before. Idempotent. */
static void
src_unwind(Job *job)
{
    QemuMonitor *mon;

    if (!job_live(job) || job->unwinding)
        return;
    if (job->postcopy_started) {
        src_postcopy_lost(job);
        return;
    }
    job->unwinding = true;
    clear_source(&job->timeout_src);
    clear_source(&job->progress_src);
    HO_INFO("domain '%s': unwinding the migration (%s)", job->name,
            job->err ? job->err->message : "-");
    if (job->prepare_pending)
        return; /* the Prepare answer continues the unwinding */
    src_tell_peer_failed(job);
    mon = job->dom ? qemu_domain_obj_monitor(job->dom) : NULL;
    if (job->migrate_sent && !qstatus_is_final(job->qstatus) && !job->qemu_gone && mon) {
        job->cancel_sent = true;
        qemu_monitor_json_migrate_cancel(mon, src_cancel_done, job_ref(job));
        job->bound_src = job_timeout(job, CANCEL_WAIT_S * 1000, src_cancel_timeout);
        return; /* the cancelled (or failed) event continues */
    }
    src_resume_if_needed(job);
}

/* --- success: confirm ---- */

static void
src_quit_done(QemuDriver *drv, QemuDomainObj *dom, const HoError *err, void *opaque)
{
    g_autoptr(Job) job = opaque;

    if (!job_live(job))
        return;
    if (err)
        HO_WARN("domain '%s': quitting the source QEMU: %s", job->name, err->message);
    if (job->args.undefine_source && qemu_domain_obj_is_persistent(dom) &&
        qemu_driver_undefine(drv, dom) < 0) {
        HO_WARN("domain '%s': cannot undefine it on the source: %s", job->name,
                ho_error_last_message());
        ho_error_reset();
    }
    job_end(job, QEMU_MIGRATION_PHASE_COMPLETED);
}

static void
src_confirm_quit(Job *job)
{
    job->quitting = true;
    if (job->qemu_gone) {
        src_quit_done(job->mig->drv, job->dom, NULL, job_ref(job));
        return;
    }
    qemu_driver_domain_quit_migrated(job->mig->drv, job->dom, src_quit_done, job_ref(job));
}

typedef struct {
    Job *job;
    int tries;
} StatsCall;

static void
src_stats_done(QemuMonitor *mon, const QemuMigrationInfo *qi, const HoError *err,
               void *opaque)
{
    StatsCall *call = opaque;
    g_autoptr(Job) job = call->job;

    if (!job_live(job)) {
        g_free(call);
        return;
    }
    if (!err && qi->status == QEMU_MIGRATION_STATUS_COMPLETED && qi->has_downtime &&
        qi->downtime == 0 && ++call->tries < STATS_RETRIES) {
        /* Right after completed QEMU sometimes says 0 (DESIGN.md §6). */
        call->job = job_ref(job);
        qemu_monitor_json_query_migrate(mon, src_stats_done, call);
        return;
    }
    g_free(call);
    json_object_put(job->stats);
    job->stats = job_info_base(job);
    if (err) {
        HO_WARN("domain '%s': no statistics of the completed migration: %s", job->name,
                err->message);
    } else {
        info_add_qemu(job->stats, qi);
        if (qi->has_downtime)
            ho_json_add_int64(job->stats, "downtime_ms", qi->downtime);
        if (qi->has_total_time)
            ho_json_add_int64(job->stats, "qemu_total_ms", qi->total_time);
    }
    info_add_storage(job->stats, job);
    info_add_switchover(job->stats, job);
    info_add_warnings(job->stats, job);
    ho_json_add_int64(job->stats, "total_ms", (ho_time_now_us() - job->start_us) / 1000);
    ho_json_add_int64(job->stats, "orchestrator_ms",
                      (job->finish_reply_us - job->completed_us) / 1000);
    ho_json_add_int64(job->stats, "orchestrator_us", job->finish_reply_us - job->completed_us);
    src_confirm_quit(job);
}

static void
src_confirm(Job *job)
{
    QemuMonitor *mon = qemu_domain_obj_monitor(job->dom);
    StatsCall *call;

    job->dst_ran = true;
    if (job_set_phase(job, QEMU_MIGRATION_PHASE_CONFIRM) < 0) {
        /* The destination runs the guest: the source must not run again. */
        HO_ERROR("domain '%s': %s", job->name, ho_error_last_message());
        ho_error_reset();
    }
    if (job->qemu_gone || !mon) {
        src_confirm_quit(job);
        return;
    }
    call = g_new0(StatsCall, 1);
    call->job = job_ref(job);
    qemu_monitor_json_query_migrate(mon, src_stats_done, call);
}

static void
src_finish_done(json_object *result, const HoError *err, void *opaque)
{
    g_autoptr(Job) job = opaque;
    const char *state = NULL;

    if (!job_live(job))
        return;
    job->finish_reply_us = ho_time_now_us();
    if (!err && (ho_json_get_string(result, "state", &state) < 0)) {
        ho_error_reset();
        state = NULL;
    }
    if (!err && state && (g_str_equal(state, "running") || g_str_equal(state, "paused"))) {
        HO_INFO("domain '%s': the destination is %s, %" G_GINT64_FORMAT " us after completed",
                job->name, state, job->finish_reply_us - job->completed_us);
        src_confirm(job);
        return;
    }
    if (!err && state && g_str_equal(state, "shutoff")) {
        /* The destination's QEMU is gone and never ran a vCPU: the source
         * reactivates its disks with cont and runs again. */
        json_object *e = NULL;
        const char *msg = NULL;

        if (ho_json_opt_object(result, "error", &e) > 0 && e &&
            ho_json_opt_string(e, "message", &msg) < 0)
            msg = NULL;
        ho_error_reset();
        job_keep_error(job, ho_error_new(HO_ERR_OPERATION_INVALID,
                                         _("the destination could not run domain '%1$s': %2$s"),
                                         job->name, msg ? msg : _("unknown error")));
        job->unwinding = true;
        src_resume_if_needed(job);
        return;
    }
    /* Whether the destination ran the guest is unknown: never guess into
     * two writers. */
    if (qemu_domain_obj_is_active(job->dom))
        job_keep_error(job, ho_error_new(HO_ERR_OPERATION_INVALID,
            _("migration of domain '%1$s' completed on the source but the destination's answer "
              "is unknown (%2$s): the domain stays paused on the source; check the destination "
              "before resuming it"),
            job->name, err ? err->message : _("malformed answer")));
    else
        job_keep_error(job, ho_error_new(HO_ERR_OPERATION_INVALID,
            _("migration of domain '%1$s' completed on the source but the destination's answer "
              "is unknown (%2$s); check the destination"),
            job->name, err ? err->message : _("malformed answer")));
    job->unwinding = true;
    job_end(job, QEMU_MIGRATION_PHASE_FAILED);
}

/* Storage copy, after Finish went out (outside the guest's pause): the
 * NBD client nodes go; without pause-before-switchover the mirrors are
 * still running and end first. */
static void
src_storage_completed(Job *job)
{
    if (!job->disks || !job->disks->len || !job->mon)
        return;
    if (job->mirrors && !qemu_block_job_set_all_gone(job->mirrors)) {
        src_cancel_mirrors(job, false);
        return; /* src_mirror_changed deletes the nodes */
    }
    src_delete_nodes(job, src_node_del_done);
}

/* QEMU on the source completed: the one hop to the destination's cont.
 * No queries, no disk writes. */
static void
src_completed(Job *job)
{
    json_object *args;

    job->completed_us = ho_time_now_us();
    clear_source(&job->timeout_src);
    clear_source(&job->progress_src);
    clear_source(&job->bound_src);
    if (job->phase == QEMU_MIGRATION_PHASE_PERFORM &&
        job_set_phase(job, QEMU_MIGRATION_PHASE_SWITCHOVER) < 0)
        ho_error_reset();
    if (job_set_phase(job, QEMU_MIGRATION_PHASE_FINISH) < 0) {
        HO_ERROR("domain '%s': %s", job->name, ho_error_last_message());
        ho_error_reset();
    }
    if ((job->peer_gone || !job->ops) && job->postcopy_started) {
        /* Postcopy: the destination has run the guest since
         * postcopy-active and now has every page; no answer is needed
         * (the source never runs again either way): its part is done. */
        HO_INFO("domain '%s': postcopy completed without the destination daemon: the "
                "destination runs the guest, the source QEMU quits", job->name);
        src_confirm(job);
        return;
    }
    if (job->peer_gone || !job->ops) {
        job_keep_error(job, ho_error_new(HO_ERR_RPC,
            _("migration of domain '%1$s' completed on the source but the destination daemon "
              "is gone: the domain stays paused on the source; check the destination before "
              "resuming it"),
            job->name));
        job_end(job, QEMU_MIGRATION_PHASE_FAILED);
        return;
    }
    /* A cancel that lost the race: the destination has the whole state now. */
    job->unwinding = false;
    job->cancelled = false;
    g_clear_pointer(&job->err, ho_error_free);
    job->finish_sent = true;
    args = json_object_new_object();
    ho_json_add_string(args, "uuid", job->uuid);
    ho_json_add_bool(args, "success", true);
    job->ops->finish(job->peer, args, src_finish_done, job_ref(job));
    src_storage_completed(job);
}

static void
src_continue_done(QemuMonitor *mon, const HoError *err, void *opaque)
{
    g_autoptr(Job) job = opaque;

    if (!job_live(job) || !err)
        return;
    if (job->qstatus == QEMU_MIGRATION_STATUS_COMPLETED)
        return;
    src_fail(job, ho_error_new(err->code, _("migrate-continue failed for domain '%1$s': %2$s"),
                               job->name, err->message));
}

static void
src_failed_info_done(QemuMonitor *mon, const QemuMigrationInfo *qi, const HoError *err,
                     void *opaque)
{
    g_autoptr(Job) job = opaque;

    if (!job_live(job))
        return;
    src_fail(job, ho_error_new(HO_ERR_QMP, _("QEMU failed the migration of domain '%1$s': %2$s"),
                               job->name,
                               (!err && qi->error_desc) ? qi->error_desc : _("no reason given")));
}

static void
src_migration_event(QemuMonitor *mon, const char *name, json_object *data, gint64 qemu_ts_us,
                    gint64 recv_ts_us, void *opaque)
{
    Job *job = opaque;
    const char *status = NULL;
    QemuMigrationStatus st;

    if (!job_live(job) || !data || ho_json_get_string(data, "status", &status) < 0) {
        ho_error_reset();
        return;
    }
    st = qemu_migration_status_from_string(status);
    HO_DEBUG("domain '%s': source migration status %s", job->name, status);
    if (!job->migrate_sent)
        return; /* left over from an earlier migration */
    job->qstatus = st;
    switch (st) {
    case QEMU_MIGRATION_STATUS_PRE_SWITCHOVER:
        if (job->unwinding)
            return; /* the cancel is on its way */
        job->pbs_us = recv_ts_us ? recv_ts_us : ho_time_now_us();
        if (job_set_phase(job, QEMU_MIGRATION_PHASE_PRE_SWITCHOVER) < 0) {
            src_fail_take(job);
            return;
        }
        if (job->mirrors && !qemu_block_job_set_all_gone(job->mirrors)) {
            /* End what still writes to the disks: every mirror at once
             * (a READY mirror cancelled completes without pivot); the
             * last one gone continues (src_mirror_changed). */
            src_cancel_mirrors(job, false);
            job->cancel_us = ho_time_now_us();
            job->mirror_src = job_timeout(job, MIRROR_END_WAIT_S * 1000,
                                          src_mirror_end_timeout);
            return;
        }
        /* Nothing writes to the disks: continue at once, in this very
         * iteration. */
        src_switchover_continue(job);
        return;
    case QEMU_MIGRATION_STATUS_COMPLETED:
        src_completed(job);
        return;
    case QEMU_MIGRATION_STATUS_POSTCOPY_ACTIVE:
    case QEMU_MIGRATION_STATUS_POSTCOPY_PAUSED:
    case QEMU_MIGRATION_STATUS_POSTCOPY_RECOVER_SETUP:
    case QEMU_MIGRATION_STATUS_POSTCOPY_RECOVER:
        src_postcopy_event(job, st);
        return;
    case QEMU_MIGRATION_STATUS_FAILED:
        if (job->unwinding) {
            clear_source(&job->bound_src);
            src_resume_if_needed(job);
            return;
        }
        qemu_monitor_json_query_migrate(mon, src_failed_info_done, job_ref(job));
        return;
    case QEMU_MIGRATION_STATUS_CANCELLED:
        if (!job->unwinding) {
            job->cancelled = true;
            src_fail(job, ho_error_new(HO_ERR_OPERATION_INVALID,
                                       _("migration of domain '%1$s' was cancelled in QEMU"),
                                       job->name));
            return;
        }
        clear_source(&job->bound_src);
        src_resume_if_needed(job);
        return;
    default:
        return;
    }
}

static void
src_qemu_exited(QemuDomainObj *dom, const char *how, void *opaque)
{
    Job *job = opaque;

    job->exit_watch = 0;
    job->qemu_gone = true;
    if (!job_live(job) || job->quitting)
        return;
    if (job->finish_sent && !job->unwinding)
        return; /* the destination's answer decides */
    if (job->postcopy_started)
        job_keep_error(job, ho_error_new(HO_ERR_SYSTEM,
                                         _("the source QEMU of domain '%1$s' %2$s during postcopy: "
                                           "the guest on the destination has lost the memory it "
                                           "had not received yet"),
                                         job->name, how));
    job_keep_error(job, ho_error_new(HO_ERR_SYSTEM,
                                     _("QEMU of domain '%1$s' %2$s during the migration"),
                                     job->name, how));
    if (job->unwinding) {
        job_end_failed(job);
        return;
    }
    job->unwinding = true;
    clear_source(&job->bound_src);
    src_tell_peer_failed(job);
    job_end_failed(job);
}

static gboolean
src_progress_tick(gpointer opaque);

static void
src_progress_done(QemuMonitor *mon, const QemuMigrationInfo *qi, const HoError *err,
                  void *opaque)
{
    g_autoptr(Job) job = opaque;
    json_object *info;

    if (!job_live(job) || err || job->phase != QEMU_MIGRATION_PHASE_PERFORM)
        return;
    info = job_info_base(job);
    info_add_qemu(info, qi);
    info_add_storage(info, job);
    job_emit(job, "progress", info);
}

static gboolean
src_progress_tick(gpointer opaque)
{
    Job *job = opaque;
    QemuMonitor *mon;

    if (!job_live(job) || job->phase != QEMU_MIGRATION_PHASE_PERFORM || job->unwinding)
        return G_SOURCE_CONTINUE;
    mon = qemu_domain_obj_monitor(job->dom);
    if (mon)
        qemu_monitor_json_query_migrate(mon, src_progress_done, job_ref(job));
    return G_SOURCE_CONTINUE;
}

static void
src_timeout_stop_done(QemuMonitor *mon, const HoError *err, void *opaque)
{
    g_autoptr(Job) job = opaque;

    if (job_live(job) && err)
        HO_WARN("domain '%s': cannot pause the guest after the timeout: %s", job->name,
                err->message);
}

static gboolean
src_timeout_fired(gpointer opaque)
{
    Job *job = opaque;
    QemuMonitor *mon;

    g_clear_pointer(&job->timeout_src, g_source_unref);
    if (!job_live(job) || job->unwinding || job->phase != QEMU_MIGRATION_PHASE_PERFORM)
        return G_SOURCE_REMOVE;
    if (job->args.timeout_abort) {
        job->cancelled = true;
        src_fail(job, ho_error_new(HO_ERR_TIMEOUT,
                                   _("migration of domain '%1$s' did not finish within %2$u "
                                     "seconds: aborted"),
                                   job->name, job->args.timeout_s));
        return G_SOURCE_REMOVE;
    }
    mon = qemu_domain_obj_monitor(job->dom);
    HO_INFO("domain '%s': migration timeout: pausing the guest so that it converges", job->name);
    if (mon)
        qemu_monitor_json_stop(mon, src_timeout_stop_done, job_ref(job));
    return G_SOURCE_REMOVE;
}

static void
src_migrate_done(QemuMonitor *mon, const HoError *err, void *opaque)
{
    g_autoptr(Job) job = opaque;

    if (!job_live(job))
        return;
    if (err) {
        /* QEMU did not start migrating: nothing to cancel. */
        job->migrate_sent = false;
        src_fail(job, ho_error_new(err->code, _("cannot migrate domain '%1$s': %2$s"),
                                   job->name, err->message));
        return;
    }
    if (job->unwinding && !job->cancel_sent) {
        /* Aborted while `migrate` was in flight. */
        job->unwinding = false;
        src_unwind(job);
    }
}

static void
src_send_migrate(Job *job, QemuMonitor *mon, const char *uri)
{
    guint interval = job->mig->progress_interval_ms;

    job->migrate_sent = true;
    job->qstatus = QEMU_MIGRATION_STATUS_SETUP;
    qemu_monitor_json_migrate(mon, uri, false, src_migrate_done, job_ref(job));
    if (job->args.timeout_s)
        job->timeout_src = job_timeout(job, job->args.timeout_s * 1000, src_timeout_fired);
    job->progress_src = job_timeout(job, interval, src_progress_tick);
}

/* getfd of the stream's socket (either side): the migrate or
 * migrate-incoming queued behind it then fails too and reports the job's
 * error; this only says why. */
static void
stream_getfd_done(QemuMonitor *mon, const HoError *err, void *opaque)
{
    g_autoptr(Job) job = opaque;

    if (err && job_live(job))
        HO_WARN("domain '%s': cannot pass the migration stream's socket to QEMU: %s", job->name,
                err->message);
}

/* The stream is connected: its buffers fixed, handed to QEMU (getfd),
 * and `migrate fd:` right behind it on the same monitor. */
static void
src_stream_connected(GObject *client, GAsyncResult *res, gpointer opaque)
{
    g_autoptr(Job) job = opaque;
    g_autoptr(GError) gerr = NULL;
    g_autoptr(GSocketConnection) conn =
        g_socket_client_connect_to_host_finish(G_SOCKET_CLIENT(client), res, &gerr);
    QemuMonitor *mon;
    int fd;

    if (!job_live(job) || job->unwinding)
        return; /* conn closes with its last reference */
    mon = qemu_domain_obj_monitor(job->dom);
    if (!conn) {
        src_fail(job, ho_error_new(HO_ERR_SYSTEM,
                                   _("cannot connect the migration stream of domain '%1$s' "
                                     "to %2$s: %3$s"),
                                   job->name, job->uri, gerr->message));
        return;
    }
    fd = g_socket_get_fd(g_socket_connection_get_socket(conn));
    if (ho_socket_set_nodelay(fd) < 0 ||
        ho_socket_set_buffers(fd, (int)job->stream_buffer, 0) < 0 || !mon) {
        src_fail(job, mon ? error_steal_or_unknown()
                          : ho_error_new(HO_ERR_OPERATION_INVALID,
                                         _("the monitor of domain '%1$s' is not available"),
                                         job->name));
        return;
    }
    HO_DEBUG("domain '%s': migration stream connected to %s, %" G_GUINT64_FORMAT
             "-byte send buffer",
             job->name, job->uri, job->stream_buffer);
    /* getfd copies the fd into the message it queues. */
    qemu_monitor_json_getfd(mon, STREAM_FD_NAME, fd, stream_getfd_done, job_ref(job));
    src_send_migrate(job, mon, "fd:" STREAM_FD_NAME);
}

/* `migrate`: to the URI, or, when the destination fixed its receive
 * buffer, over a connection this daemon makes with the matching send
 * buffer (both ends must be small, or the larger one holds the backlog;
 * and a small send buffer facing a large window stalls on delayed ACKs). */
static void
src_issue_migrate(Job *job, QemuMonitor *mon)
{
    GSocketClient *client;

    if (!job->stream_buffer) {
        src_send_migrate(job, mon, job->uri);
        return;
    }
    client = g_socket_client_new();
    g_socket_client_set_timeout(client, STREAM_CONNECT_WAIT_S);
    /* Straight to the destination, as QEMU itself would connect: never
     * through a proxy the environment may name. */
    g_socket_client_set_enable_proxy(client, FALSE);
    g_main_context_push_thread_default(job->mig->ctx);
    g_socket_client_connect_to_host_async(client, job->uri + strlen("tcp:"), 0, NULL,
                                          src_stream_connected, job_ref(job));
    g_main_context_pop_thread_default(job->mig->ctx);
    g_object_unref(client);
}

static void
src_stop_done(QemuMonitor *mon, const HoError *err, void *opaque)
{
    g_autoptr(Job) job = opaque;

    if (!job_live(job) || job->unwinding)
        return;
    if (err) {
        src_fail(job, ho_error_new(err->code, _("cannot pause domain '%1$s' for an offline "
                                                "migration: %2$s"),
                                   job->name, err->message));
        return;
    }
    src_issue_migrate(job, mon);
}

/* Perform proper: the settings are in. */
static void
src_perform_go(Job *job)
{
    /* Persisted before `migrate`: the last write until the destination
     * answered Finish. */
    if (job_set_phase(job, QEMU_MIGRATION_PHASE_PERFORM) < 0) {
        src_fail_take(job);
        return;
    }
    if (!job->args.live && job->was_running) {
        qemu_monitor_json_stop(job->mon, src_stop_done, job_ref(job));
        return;
    }
    src_issue_migrate(job, job->mon);
}

static void
src_params_done(QemuMonitor *mon, const HoError *err, void *opaque)
{
    g_autoptr(Job) job = opaque;

    if (!job_live(job) || job->unwinding)
        return;
    if (err) {
        src_fail(job, ho_error_new(err->code,
                                   _("cannot set the migration parameters of domain '%1$s': %2$s"),
                                   job->name, err->message));
        return;
    }
    job->settings = SETTINGS_IN;
    if (job->perform_waiting)
        src_perform_go(job);
}

static void
src_caps_done(QemuMonitor *mon, const HoError *err, void *opaque)
{
    g_autoptr(Job) job = opaque;
    json_object *params;
    const QemuMigrationArgs *a = &job->args;

    if (!job_live(job) || job->unwinding)
        return;
    if (err) {
        src_fail(job, ho_error_new(err->code,
                                   _("cannot set the migration capabilities of domain '%1$s': "
                                     "%2$s"),
                                   job->name, err->message));
        return;
    }
    params = json_object_new_object();
    ho_json_add_int64(params, "max-bandwidth",
                      (int64_t)(a->has_bandwidth ? a->bandwidth_mib * 1024 * 1024
                                                 : UNLIMITED_BANDWIDTH));
    if (job->downtime_ms)
        ho_json_add_int64(params, "downtime-limit", (int64_t)job->downtime_ms);
    if (a->parallel && a->parallel_connections)
        ho_json_add_int64(params, "multifd-channels", a->parallel_connections);
    postcopy_src_params(job, params);
    qemu_monitor_json_migrate_set_parameters(mon, params, src_params_done, job_ref(job));
}

/* Send the migration capabilities, then the parameters (once). */
static void
src_settings_send(Job *job)
{
    QemuMonitor *mon = qemu_domain_obj_monitor(job->dom);
    const QemuCaps *caps = qemu_domain_obj_caps(job->dom);
    const char *names[6];
    bool states[6];
    size_t n = 0;

    if (job->settings != SETTINGS_UNSENT)
        return;
    if (!mon || !caps) {
        src_fail(job, ho_error_new(HO_ERR_OPERATION_INVALID,
                                   _("the monitor of domain '%1$s' is not available"),
                                   job->name));
        return;
    }
    job->settings = SETTINGS_SENT;
    names[n] = "events";
    states[n++] = true;
    if (qemu_caps_has(caps, QEMU_CAPS_PAUSE_BEFORE_SWITCHOVER)) {
        names[n] = "pause-before-switchover";
        states[n++] = job->use_pbs;
    }
    /* Set both ways: QEMU keeps capabilities from an earlier migration. */
    if (qemu_caps_has(caps, QEMU_CAPS_AUTO_CONVERGE)) {
        names[n] = "auto-converge";
        states[n++] = job->args.auto_converge;
    }
    if (qemu_caps_has(caps, QEMU_CAPS_MULTIFD)) {
        names[n] = "multifd";
        states[n++] = job->args.parallel;
    }
    postcopy_src_caps(job, caps, names, states, &n);
    qemu_monitor_json_migrate_set_capabilities(mon, names, states, n, src_caps_done,
                                               job_ref(job));
}

/* The destination is prepared (and the disks copied): start moving RAM
 * once the settings are in. */
static void
src_perform(Job *job)
{
    if (job->settings == SETTINGS_IN) {
        src_perform_go(job);
        return;
    }
    job->perform_waiting = true;
    src_settings_send(job);
}

/* ---- storage copy on the source: NBD client nodes and mirrors ---- */

/* The destination's NBD server and exports from its Prepare answer. */
static int
src_parse_nbd(Job *job, json_object *result)
{
    json_object *nbd = NULL, *exports = NULL;
    const char *host = NULL, *path = NULL;
    int64_t port = 0;

    if (ho_json_opt_object(result, "nbd", &nbd) < 0)
        return -1;
    if (!nbd) {
        ho_error_report(HO_ERR_RPC, _("the destination did not export the disks of domain "
                                      "'%1$s' (no NBD server in its answer)"),
                        job->name);
        return -1;
    }
    if (ho_json_opt_string(nbd, "host", &host) < 0 ||
        ho_json_opt_string(nbd, "path", &path) < 0 ||
        ho_json_opt_int64(nbd, "port", &port) < 0 ||
        ho_json_get_array(nbd, "exports", &exports) < 0 ||
        ho_json_opt_bool(nbd, "late_block_activate", &job->dst_late_activate) < 0)
        return -1;
    if (!path && (!host || port <= 0 || port > 65535)) {
        ho_error_report(HO_ERR_RPC, "%s",
                        _("malformed NBD server in the destination's answer"));
        return -1;
    }
    job->nbd_host = g_strdup(host);
    job->nbd_port = (int)port;
    job->nbd_path = g_strdup(path);
    for (guint i = 0; i < job->disks->len; i++) {
        StorageDisk *d = g_ptr_array_index(job->disks, i);

        for (size_t j = 0; j < json_object_array_length(exports) && !d->export_name; j++) {
            json_object *e = json_object_array_get_idx(exports, j);
            const char *target = NULL, *name = NULL;

            if (ho_json_get_string(e, "target", &target) < 0 ||
                ho_json_get_string(e, "name", &name) < 0)
                return -1;
            if (g_str_equal(target, d->target))
                d->export_name = g_strdup(name);
        }
        if (!d->export_name) {
            ho_error_report(HO_ERR_RPC, _("the destination did not export disk '%1$s'"),
                            d->target);
            return -1;
        }
    }
    return 0;
}

static void src_mirror_changed(QemuBlockJobSet *set, QemuBlockJob *bj, void *opaque);
static void src_teardown_next(Job *job);

typedef struct {
    Job *job;
    guint disk;
} DiskCall;

static DiskCall *
disk_call_new(Job *job, guint disk)
{
    DiskCall *c = g_new0(DiskCall, 1);

    c->job = job_ref(job);
    c->disk = disk;
    return c;
}

static void
src_nbd_node_done(QemuMonitor *mon, const HoError *err, void *opaque)
{
    DiskCall *c = opaque;
    g_autoptr(Job) job = c->job;
    StorageDisk *d = job->disks ? g_ptr_array_index(job->disks, c->disk) : NULL;

    g_free(c);
    if (!d)
        return;
    if (!err) {
        d->node_added = true;
        return;
    }
    /* Its mirror fails too (no target): that failure ends the job. */
    HO_WARN("domain '%s': cannot connect disk '%s' to the destination: %s", job->name, d->target,
            err->message);
}

static void
src_mirror_started(QemuMonitor *mon, const HoError *err, void *opaque)
{
    DiskCall *c = opaque;
    g_autoptr(Job) job = c->job;
    guint i = c->disk;
    g_autofree char *id = NULL;
    QemuBlockJob *bj;

    g_free(c);
    if (!job->mirrors || !job->disks)
        return;
    id = storage_job_id(g_ptr_array_index(job->disks, i));
    if ((bj = qemu_block_job_set_find(job->mirrors, id)))
        qemu_block_job_set_started(job->mirrors, bj, err ? err->message : NULL);
}

/* Bytes per second copied since the last sample. */
static void
src_disk_sample(Job *job)
{
    uint64_t total = 0, processed = 0;
    gint64 now = ho_time_now_us();

    qemu_block_job_set_totals(job->mirrors, &total, &processed);
    if (job->disk_last_us && now > job->disk_last_us && processed >= job->disk_last_processed)
        job->disk_bps = (processed - job->disk_last_processed) * G_USEC_PER_SEC /
                        (uint64_t)(now - job->disk_last_us);
    job->disk_last_us = now;
    job->disk_last_processed = processed;
}

static void
src_mirror_jobs_done(QemuMonitor *mon, GPtrArray *list, const HoError *err, void *opaque)
{
    g_autoptr(Job) job = opaque;
    gint64 now = ho_time_now_us();
    guint stall_s = job->mig ? job->mig->mirror_stall_s : DEFAULT_MIRROR_STALL_S;
    json_object *info;

    if (!job_live(job) || job->unwinding || job->phase != QEMU_MIGRATION_PHASE_MIRROR ||
        !job->mirrors)
        return;
    if (err) {
        HO_DEBUG("domain '%s': query-block-jobs: %s", job->name, err->message);
        return;
    }
    qemu_block_job_set_update(job->mirrors, list, now);
    src_disk_sample(job);
    for (guint i = 0; i < qemu_block_job_set_count(job->mirrors); i++) {
        QemuBlockJob *bj = qemu_block_job_set_get(job->mirrors, i);

        if (bj->state != QEMU_BLOCK_JOB_STATE_RUNNING && bj->state != QEMU_BLOCK_JOB_STATE_NEW)
            continue;
        if (now - bj->moved_us > (gint64)stall_s * G_USEC_PER_SEC) {
            src_fail(job, ho_error_new(HO_ERR_TIMEOUT,
                                       _("the copy of disk '%1$s' of domain '%2$s' made no "
                                         "progress for %3$u seconds"),
                                       bj->id, job->name, stall_s));
            return;
        }
    }
    info = job_info_base(job);
    info_add_storage(info, job);
    job_emit(job, "progress", info);
}

/* MIRROR: progress for the user, and the only way to see a stalled
 * mirror (no event says "nothing moves"). */
static gboolean
src_mirror_tick(gpointer opaque)
{
    Job *job = opaque;

    if (!job_live(job) || job->unwinding || job->phase != QEMU_MIGRATION_PHASE_MIRROR)
        return G_SOURCE_CONTINUE;
    qemu_monitor_json_query_block_jobs(job->mon, src_mirror_jobs_done, job_ref(job));
    return G_SOURCE_CONTINUE;
}

/* The destination exports the disks: an NBD client node per disk, then a
 * mirror per disk, all sent at once (QMP runs them in order: every node
 * exists before the mirrors start). */
static void
src_mirror(Job *job)
{
    QemuMonitor *mon = job->mon;

    if (job_set_phase(job, QEMU_MIGRATION_PHASE_MIRROR) < 0) {
        src_fail_take(job);
        return;
    }
    job->mirror_start_us = ho_time_now_us();
    job->mirrors = qemu_block_job_set_new(mon, src_mirror_changed, job);
    for (guint i = 0; i < job->disks->len; i++) {
        StorageDisk *d = g_ptr_array_index(job->disks, i);
        g_autofree char *node = storage_client_node(d);
        g_autofree char *id = storage_job_id(d);
        json_object *props = json_object_new_object();
        json_object *server = json_object_new_object();

        ho_json_add_string(props, "driver", "nbd");
        ho_json_add_string(props, "node-name", node);
        if (job->nbd_path) {
            ho_json_add_string(server, "type", "unix");
            ho_json_add_string(server, "path", job->nbd_path);
        } else {
            char port[16];

            g_snprintf(port, sizeof(port), "%d", job->nbd_port);
            ho_json_add_string(server, "type", "inet");
            ho_json_add_string(server, "host", job->nbd_host);
            ho_json_add_string(server, "port", port);
        }
        ho_json_add(props, "server", server);
        ho_json_add_string(props, "export", d->export_name);
        qemu_monitor_json_blockdev_add(mon, props, src_nbd_node_done, disk_call_new(job, i));
        qemu_block_job_set_add(job->mirrors, id, d->node, node);
    }
    for (guint i = 0; i < job->disks->len; i++) {
        StorageDisk *d = g_ptr_array_index(job->disks, i);
        g_autofree char *node = storage_client_node(d);
        g_autofree char *id = storage_job_id(d);
        QemuMirrorOptions opts = {0};

        opts.sync = job->args.copy_storage_inc ? "top" : "full";
        if (job->args.copy_storage_synchronous_writes)
            opts.copy_mode = "write-blocking";
        if (job->mig->mirror_buf_size) {
            opts.has_buf_size = true;
            opts.buf_size = (int64_t)job->mig->mirror_buf_size;
        }
        qemu_monitor_json_blockdev_mirror(mon, id, d->node, node, &opts, src_mirror_started,
                                          disk_call_new(job, i));
    }
    job->disk_last_us = 0;
    job->progress_src = job_timeout(job, job->mig->progress_interval_ms, src_mirror_tick);
    /* While the disks copy: nothing of it waits for them. */
    src_settings_send(job);
}

static void
src_cancel_mirror_done(QemuMonitor *mon, const HoError *err, void *opaque)
{
    DiskCall *c = opaque;
    g_autoptr(Job) job = c->job;
    guint i = c->disk;
    g_autofree char *id = NULL;
    QemuBlockJob *bj;

    g_free(c);
    if (!err || !job->mirrors || !job->disks)
        return;
    id = storage_job_id(g_ptr_array_index(job->disks, i));
    HO_WARN("domain '%s': block-job-cancel '%s': %s", job->name, id, err->message);
    /* QEMU does not know the job (it ended, or never started): gone. */
    if ((bj = qemu_block_job_set_find(job->mirrors, id)) && qemu_block_job_is_live(bj) &&
        bj->state != QEMU_BLOCK_JOB_STATE_NEW)
        qemu_block_job_set_started(job->mirrors, bj, err->message);
}

/* block-job-cancel for every live mirror, back to back in this iteration. */
static void
src_cancel_mirrors(Job *job, bool force)
{
    for (guint i = 0; job->mirrors && i < job->disks->len; i++) {
        g_autofree char *id = storage_job_id(g_ptr_array_index(job->disks, i));
        QemuBlockJob *bj = qemu_block_job_set_find(job->mirrors, id);

        if (!bj || !qemu_block_job_is_live(bj))
            continue;
        qemu_monitor_json_block_job_cancel(job->mon, id, force, src_cancel_mirror_done,
                                           disk_call_new(job, i));
    }
}

static void
src_node_del_done(QemuMonitor *mon, const HoError *err, void *opaque)
{
    DiskCall *c = opaque;
    g_autoptr(Job) job = c->job;

    if (err)
        HO_WARN("domain '%s': cannot delete the NBD client node of disk %u: %s", job->name,
                c->disk, err->message);
    g_free(c);
}

/* blockdev-del of every NBD client node (no mirror uses them any more). */
static void
src_delete_nodes(Job *job, QemuMonitorDoneFunc cb)
{
    for (guint i = 0; job->disks && i < job->disks->len; i++) {
        StorageDisk *d = g_ptr_array_index(job->disks, i);
        g_autofree char *node = storage_client_node(d);

        if (!d->node_added)
            continue;
        d->node_added = false;
        if (cb != src_node_del_done)
            job->teardown_pending++;
        qemu_monitor_json_blockdev_del(job->mon, node, cb, disk_call_new(job, i));
    }
}

static gboolean
src_mirror_end_timeout(gpointer opaque)
{
    Job *job = opaque;

    g_clear_pointer(&job->mirror_src, g_source_unref);
    if (!job_live(job))
        return G_SOURCE_REMOVE;
    if (job->teardown) {
        HO_WARN("domain '%s': the disk mirrors did not end within %u s", job->name,
                (unsigned int)MIRROR_END_WAIT_S);
        src_teardown_next(job);
        return G_SOURCE_REMOVE;
    }
    if (job->phase == QEMU_MIGRATION_PHASE_PRE_SWITCHOVER && !job->unwinding)
        src_fail(job, ho_error_new(HO_ERR_TIMEOUT,
                                   _("the disk mirrors of domain '%1$s' did not end within %2$u "
                                     "seconds of their cancel"),
                                   job->name, (unsigned int)MIRROR_END_WAIT_S));
    return G_SOURCE_REMOVE;
}

/* A mirror changed: the job's next step, by phase. */
static void
src_mirror_changed(QemuBlockJobSet *set, QemuBlockJob *bj, void *opaque)
{
    Job *job = opaque;
    QemuBlockJob *bad;

    if (!job_live(job))
        return;
    if (job->teardown) {
        if (qemu_block_job_set_all_gone(set))
            src_teardown_next(job);
        return;
    }
    if (job->unwinding)
        return;
    bad = qemu_block_job_set_first_error(set);
    switch (job->phase) {
    case QEMU_MIGRATION_PHASE_MIRROR:
    case QEMU_MIGRATION_PHASE_PERFORM:
        if (bad) {
            src_fail(job, ho_error_new(HO_ERR_QMP,
                                       _("the copy of disk '%1$s' of domain '%2$s' failed: %3$s"),
                                       storage_job_disk(bad->id), job->name,
                                       bad->error ? bad->error : "-"));
            return;
        }
        if (job->phase == QEMU_MIGRATION_PHASE_MIRROR && qemu_block_job_set_all_ready(set)) {
            HO_INFO("domain '%s': all %u disk mirrors are ready", job->name,
                    qemu_block_job_set_count(set));
            clear_source(&job->progress_src);
            src_disk_sample(job);
            if (job->mirror_start_us && job->disk_last_us > job->mirror_start_us)
                job->disk_avg_bps = job->disk_last_processed * G_USEC_PER_SEC /
                                    (uint64_t)(job->disk_last_us - job->mirror_start_us);
            src_perform(job);
        }
        return;
    case QEMU_MIGRATION_PHASE_PRE_SWITCHOVER:
        if (bad) {
            /* A mirror that ended with an error did not copy everything. */
            src_fail(job, ho_error_new(HO_ERR_QMP,
                                       _("the copy of disk '%1$s' of domain '%2$s' failed while "
                                         "it ended: %3$s"),
                                       storage_job_disk(bad->id), job->name,
                                       bad->error ? bad->error : "-"));
            return;
        }
        if (qemu_block_job_set_all_gone(set)) {
            job->gone_us = ho_time_now_us();
            clear_source(&job->mirror_src);
            src_switchover_continue(job);
        }
        return;
    default:
        /* After the switchover (QEMU without pause-before-switchover):
         * the mirrors were cancelled after completed; their nodes go
         * once they are gone. */
        if (qemu_block_job_set_all_gone(set) && job->qstatus == QEMU_MIGRATION_STATUS_COMPLETED)
            src_delete_nodes(job, src_node_del_done);
        return;
    }
}

static void
src_nbd_stop_done(json_object *result, const HoError *err, void *opaque)
{
    g_autoptr(Job) job = opaque;

    if (err)
        HO_WARN("domain '%s': the destination could not stop its NBD server: %s", job->name,
                err->message);
}

static void
src_issue_continue(Job *job)
{
    if (job_set_phase(job, QEMU_MIGRATION_PHASE_SWITCHOVER) < 0) {
        src_fail_take(job);
        return;
    }
    qemu_monitor_json_migrate_continue(job->mon, QEMU_MIGRATION_STATUS_PRE_SWITCHOVER,
                                       src_continue_done, job_ref(job));
    job->continue_us = ho_time_now_us();
    if (job->disks && job->disks->len && job->ops->nbd_stop && !job->nbd_stop_sent &&
        !job->peer_gone) {
        json_object *args = json_object_new_object();

        /* In parallel with migrate-continue: the destination activates
         * its images only at cont (late-block-activate). */
        job->nbd_stop_sent = true;
        ho_json_add_string(args, "uuid", job->uuid);
        job->ops->nbd_stop(job->peer, args, src_nbd_stop_done, job_ref(job));
    }
}

static void
src_nbd_stopped_first(json_object *result, const HoError *err, void *opaque)
{
    g_autoptr(Job) job = opaque;
    gint64 sent = job->nbd_wait_us;

    job->nbd_wait_us = ho_time_now_us() - sent;
    if (!job_live(job) || job->unwinding)
        return;
    if (err) {
        src_fail(job, ho_error_new(err->code,
                                   _("the destination could not stop its NBD server for domain "
                                     "'%1$s': %2$s"),
                                   job->name, err->message));
        return;
    }
    src_issue_continue(job);
}

/* All mirrors are gone: migrate-continue (after the destination stopped
 * its NBD server when it would activate its images before cont). */
static void
src_switchover_continue(Job *job)
{
    if (job->disks && job->disks->len && !job->dst_late_activate && job->ops->nbd_stop &&
        !job->peer_gone) {
        json_object *args = json_object_new_object();

        job->nbd_stop_sent = true;
        job->nbd_wait_us = ho_time_now_us(); /* start; the reply makes it a duration */
        ho_json_add_string(args, "uuid", job->uuid);
        job->ops->nbd_stop(job->peer, args, src_nbd_stopped_first, job_ref(job));
        return;
    }
    src_issue_continue(job);
}

/* Unwinding with mirrors: force-cancel the live ones, wait until they are
 * gone (bounded), delete the NBD client nodes, then end the job. */
static void
src_teardown_del_done(QemuMonitor *mon, const HoError *err, void *opaque)
{
    DiskCall *c = opaque;
    g_autoptr(Job) job = c->job;

    if (err)
        HO_WARN("domain '%s': cannot delete the NBD client node of disk %u: %s", job->name,
                c->disk, err->message);
    g_free(c);
    if (job->teardown_pending && --job->teardown_pending == 0 && job_live(job))
        job_end_failed(job);
}

static void
src_teardown_next(Job *job)
{
    clear_source(&job->mirror_src);
    if (job->mirrors)
        qemu_block_job_set_mute(job->mirrors);
    src_delete_nodes(job, src_teardown_del_done);
    if (!job->teardown_pending)
        job_end_failed(job);
}

/* Returns true when the teardown continues later. */
static bool
src_teardown(Job *job)
{
    if (job->teardown || !job->disks || job->qemu_gone || !job->mon ||
        qemu_monitor_is_closed(job->mon))
        return false;
    job->teardown = true;
    clear_source(&job->mirror_src);
    if (job->mirrors && !qemu_block_job_set_all_gone(job->mirrors)) {
        src_cancel_mirrors(job, true);
        job->mirror_src = job_timeout(job, MIRROR_END_WAIT_S * 1000, src_mirror_end_timeout);
        return true;
    }
    src_delete_nodes(job, src_teardown_del_done);
    return job->teardown_pending > 0;
}

static void
src_prepare_done(json_object *result, const HoError *err, void *opaque)
{
    g_autoptr(Job) job = opaque;
    const char *uri = NULL;
    const char *host_uuid = NULL;
    const char *hostname = NULL;
    int64_t stream_buffer = 0;

    job->prepare_pending = false;
    if (!job_live(job)) {
        /* The job ended meanwhile: the destination must not keep a QEMU. */
        if (!err && job->mig && !job->peer_gone) {
            job->prepared = true;
            src_tell_peer_failed(job);
        }
        return;
    }
    if (err) {
        job_keep_error(job, ho_error_copy(err));
        job->unwinding = false;
        src_unwind(job);
        return;
    }
    job->prepared = true;
    if (ho_json_get_string(result, "uri", &uri) < 0 ||
        ho_json_opt_string(result, "host_uuid", &host_uuid) < 0 ||
        ho_json_opt_string(result, "hostname", &hostname) < 0 ||
        ho_json_opt_int64(result, "stream_buffer", &stream_buffer) < 0) {
        HoError *perr = ho_error_steal();

        job_keep_error(job, ho_error_new(HO_ERR_RPC,
                                         _("malformed Prepare answer from the destination: %1$s"),
                                         perr ? perr->message : "?"));
        ho_error_free(perr);
        job->unwinding = false;
        src_unwind(job);
        return;
    }
    if (job->unwinding) {
        /* Aborted (or the destination is unwanted) while it prepared. */
        job->unwinding = false;
        src_unwind(job);
        return;
    }
    if (host_uuid && job->mig->host_uuid && g_str_equal(host_uuid, job->mig->host_uuid)) {
        src_fail(job, ho_error_new(HO_ERR_OPERATION_INVALID,
                                   _("cannot migrate domain '%1$s' to the host it runs on "
                                     "(host UUID %2$s)"),
                                   job->name, host_uuid));
        return;
    }
    if (!g_str_has_prefix(uri, "tcp:")) {
        src_fail(job, ho_error_new(HO_ERR_RPC,
                                   _("the destination offered an unsupported migration URI '%1$s'"),
                                   uri));
        return;
    }
    g_free(job->uri);
    job->uri = g_strdup(uri);
    /* The destination fixed its receive buffer only if it says so; a
     * small send buffer alone would stall on delayed ACKs. */
    job->stream_buffer = stream_buffer_from_peer(stream_buffer);
    if (hostname && !job->peer_hostname)
        job->peer_hostname = g_strdup(hostname);
    if (job->disks && job->disks->len) {
        if (src_parse_nbd(job, result) < 0) {
            src_fail_take(job);
            return;
        }
        src_mirror(job);
        return;
    }
    src_perform(job);
}

static void
src_send_prepare(Job *job)
{
    if (job->unwinding) {
        job->unwinding = false;
        src_unwind(job);
        return;
    }
    if (job_set_phase(job, QEMU_MIGRATION_PHASE_PREPARE) < 0) {
        src_fail_take(job);
        return;
    }
    job->prepare_pending = true;
    job->ops->prepare(job->peer, json_object_get(job->cookie), src_prepare_done, job_ref(job));
}

/* The copied disks' sizes and backing files: into the cookie. */
static void
src_nodes_done(QemuMonitor *mon, GPtrArray *list, const HoError *err, void *opaque)
{
    g_autoptr(Job) job = opaque;
    json_object *arr;

    if (!job_live(job))
        return;
    if (job->unwinding) {
        /* Aborted meanwhile. */
        job->unwinding = false;
        src_unwind(job);
        return;
    }
    if (err) {
        src_fail(job, ho_error_new(err->code,
                                   _("cannot read the disk sizes of domain '%1$s': %2$s"),
                                   job->name, err->message));
        return;
    }
    arr = json_object_new_array();
    for (guint i = 0; i < job->disks->len; i++) {
        StorageDisk *d = g_ptr_array_index(job->disks, i);
        const QemuBlockNodeInfo *node = NULL;
        json_object *obj;

        for (guint j = 0; j < list->len && !node; j++) {
            const QemuBlockNodeInfo *n = g_ptr_array_index(list, j);

            if (g_strcmp0(n->node_name, d->node) == 0)
                node = n;
        }
        if (!node || !node->has_virtual_size) {
            json_object_put(arr);
            src_fail(job, ho_error_new(HO_ERR_QMP,
                                       _("QEMU did not say the size of disk '%1$s' of domain "
                                         "'%2$s'"),
                                       d->target, job->name));
            return;
        }
        d->size = node->virtual_size;
        g_free(d->backing);
        d->backing = g_strdup(node->backing_file);
        g_free(d->backing_format);
        d->backing_format = g_strdup(node->backing_format);
        if (job->args.copy_storage_inc && d->backing && !g_path_is_absolute(d->backing)) {
            json_object_put(arr);
            src_fail(job, ho_error_new(HO_ERR_OPERATION_INVALID,
                                       _("the backing file '%1$s' of disk '%2$s' has no absolute "
                                         "path: '--copy-storage-inc' cannot name it to the "
                                         "destination"),
                                       d->backing, d->target));
            return;
        }
        obj = json_object_new_object();
        ho_json_add_string(obj, "target", d->target);
        ho_json_add_string(obj, "node", d->node);
        ho_json_add_string(obj, "format", d->format);
        ho_json_add_int64(obj, "size", (int64_t)d->size);
        if (job->args.copy_storage_inc && d->backing) {
            ho_json_add_string(obj, "backing", d->backing);
            if (d->backing_format)
                ho_json_add_string(obj, "backing_format", d->backing_format);
        }
        json_object_array_add(arr, obj);
    }
    ho_json_add(job->cookie, "storage_disks", arr);
    src_send_prepare(job);
}

/* From an idle callback after begin returned: learn the disks' sizes
 * (storage copy), then ask the destination. */
static gboolean
src_start(gpointer opaque)
{
    Job *job = opaque;

    clear_source(&job->bound_src);
    if (!job_live(job))
        return G_SOURCE_REMOVE;
    if (job->disks && job->disks->len && !job->unwinding) {
        qemu_monitor_json_query_named_block_nodes(job->mon, src_nodes_done, job_ref(job));
        return G_SOURCE_REMOVE;
    }
    src_send_prepare(job);
    return G_SOURCE_REMOVE;
}

/* ---- begin (source) ------------------------------------------------------------ */

static bool
name_is_valid(const char *name)
{
    return name && *name && strlen(name) <= 200 && !strchr(name, '/') && name[0] != '.' &&
           g_utf8_validate(name, -1, NULL);
}

static bool
storage_copy(const QemuMigrationArgs *args)
{
    return args->copy_storage_all || args->copy_storage_inc;
}

/* Whether a disk is copied: with storage copy, the disks --migrate-disks
 * names, else every writable disk (a read-only one is the same on both
 * hosts or shared). */
static bool
disk_is_copied(const QemuMigrationArgs *args, const QemuDomainDiskDef *disk)
{
    if (!storage_copy(args))
        return false;
    if (args->migrate_disks)
        return g_strv_contains((const char *const *)args->migrate_disks, disk->target);
    return !disk->readonly;
}

/* The storage copy flags: consistent, disks known, QEMU able. */
static int
src_check_storage(const char *name, const QemuDomainDef *def, const QemuCaps *caps,
                  const QemuMigrationArgs *args)
{
    const char *needs = NULL;

    if (args->copy_storage_all && args->copy_storage_inc) {
        ho_error_report(HO_ERR_INVALID_ARG, "%s",
                        _("'--copy-storage-all' and '--copy-storage-inc' cannot be combined"));
        return -1;
    }
    if (!storage_copy(args)) {
        if (args->migrate_disks)
            needs = "--migrate-disks";
        else if (args->disks_port)
            needs = "--disks-port";
        else if (args->disks_uri)
            needs = "--disks-uri";
        else if (args->copy_storage_synchronous_writes)
            needs = "--copy-storage-synchronous-writes";
        if (needs) {
            ho_error_report(HO_ERR_INVALID_ARG,
                            _("'%1$s' needs '--copy-storage-all' or '--copy-storage-inc'"),
                            needs);
            return -1;
        }
        return 0;
    }
    if (args->disks_port && args->disks_uri) {
        ho_error_report(HO_ERR_INVALID_ARG, "%s",
                        _("'--disks-port' and '--disks-uri' cannot be combined"));
        return -1;
    }
    if (args->disks_uri && !g_str_has_prefix(args->disks_uri, "tcp://") &&
        !g_str_has_prefix(args->disks_uri, "unix:")) {
        ho_error_report(HO_ERR_URI,
                        _("unsupported disks URI '%1$s': expected tcp://HOST[:PORT] or "
                          "unix:PATH"),
                        args->disks_uri);
        return -1;
    }
    for (size_t i = 0; args->migrate_disks && args->migrate_disks[i]; i++) {
        const QemuDomainDiskDef *disk = qemu_domain_def_find_disk(def, args->migrate_disks[i]);

        if (!disk) {
            ho_error_report(HO_ERR_INVALID_ARG,
                            _("domain '%1$s' has no disk '%2$s' to copy (--migrate-disks)"),
                            name, args->migrate_disks[i]);
            return -1;
        }
        if (disk->readonly) {
            ho_error_report(HO_ERR_INVALID_ARG,
                            _("disk '%1$s' of domain '%2$s' is read-only and cannot be copied"),
                            disk->target, name);
            return -1;
        }
    }
    if (!qemu_caps_has(caps, QEMU_CAPS_BLOCKDEV_MIRROR)) {
        ho_error_report(HO_ERR_NO_SUPPORT,
                        _("the QEMU of domain '%1$s' on the source does not support '%2$s'"),
                        name, args->copy_storage_inc ? "--copy-storage-inc"
                                                     : "--copy-storage-all");
        return -1;
    }
    return 0;
}

/* The checks of Begin that need no QEMU or peer round trip; -1 and an error. */
static int
src_check(QemuMigration *mig, QemuDomainObj *dom, const QemuMigrationArgs *args,
          const QemuMigrationPeerOps *ops, void *peer)
{
    const char *name = qemu_domain_obj_name(dom);
    const QemuDomainDef *def = qemu_domain_obj_def(dom, false);
    const QemuCaps *caps = qemu_domain_obj_caps(dom);
    QemuDomainState state = qemu_domain_obj_state(dom);
    const char *peer_uuid = ops->host_uuid ? ops->host_uuid(peer) : NULL;
    const char *target = args->dname ? args->dname : name;

    if (!ops->prepare || !ops->finish) {
        ho_error_report(HO_ERR_INTERNAL, "%s", _("the peer operations are incomplete"));
        return -1;
    }
    if (mig_find_job(mig, qemu_domain_obj_uuid(dom)) || qemu_domain_obj_get_job(dom)) {
        ho_error_report(HO_ERR_OPERATION_INVALID, _("domain '%1$s' is already in a migration job"),
                        name);
        return -1;
    }
    if (!qemu_domain_obj_is_active(dom) || !qemu_domain_obj_monitor(dom) ||
        qemu_domain_obj_is_reconnecting(dom) || !def ||
        (state != QEMU_DOMAIN_STATE_RUNNING && state != QEMU_DOMAIN_STATE_PAUSED)) {
        ho_error_report(HO_ERR_OPERATION_INVALID,
                        _("domain '%1$s' is not running (or its monitor is not available)"), name);
        return -1;
    }
    if (!caps) {
        ho_error_report(HO_ERR_OPERATION_INVALID,
                        _("the capabilities of the QEMU of domain '%1$s' are not known"), name);
        return -1;
    }
    if (!qemu_caps_has(caps, QEMU_CAPS_EVENTS_CAP)) {
        ho_error_report(HO_ERR_NO_SUPPORT,
                        _("the QEMU of domain '%1$s' has no migration events: it cannot be "
                          "migrated"), name);
        return -1;
    }
    if (args->auto_converge && !qemu_caps_has(caps, QEMU_CAPS_AUTO_CONVERGE)) {
        ho_error_report(HO_ERR_NO_SUPPORT,
                        _("the QEMU of domain '%1$s' on the source does not support '%2$s'"),
                        name, "--auto-converge");
        return -1;
    }
    if (args->parallel && !qemu_caps_has(caps, QEMU_CAPS_MULTIFD)) {
        ho_error_report(HO_ERR_NO_SUPPORT,
                        _("the QEMU of domain '%1$s' on the source does not support '%2$s'"),
                        name, "--parallel");
        return -1;
    }
    if (args->postcopy && !qemu_caps_has(caps, QEMU_CAPS_POSTCOPY_RAM)) {
        ho_error_report(HO_ERR_NO_SUPPORT,
                        _("the QEMU of domain '%1$s' on the source does not support '%2$s'"),
                        name, "--postcopy");
        return -1;
    }
    if (src_check_storage(name, def, caps, args) < 0)
        return -1;
    for (guint i = 0; !args->unsafe && i < def->disks->len; i++) {
        const QemuDomainDiskDef *disk = g_ptr_array_index(def->disks, i);

        /* A copied disk is not shared: its cache mode does not matter. */
        if (disk->readonly || disk->cache == QEMU_DOMAIN_DISK_CACHE_NONE ||
            disk->cache == QEMU_DOMAIN_DISK_CACHE_DIRECTSYNC ||
            disk_is_copied(args, disk))
            continue;
        ho_error_report(HO_ERR_OPERATION_INVALID,
                        _("disk '%1$s' of domain '%2$s' uses cache mode '%3$s', which is unsafe "
                          "for a migration on shared storage: use 'none' or 'directsync', or "
                          "--unsafe"),
                        disk->target, name, qemu_domain_disk_cache_to_string(disk->cache));
        return -1;
    }
    if (peer_uuid && mig->host_uuid && g_str_equal(peer_uuid, mig->host_uuid)) {
        ho_error_report(HO_ERR_OPERATION_INVALID,
                        _("cannot migrate domain '%1$s' to the host it runs on (host UUID %2$s)"),
                        name, peer_uuid);
        return -1;
    }
    if (args->dname && !name_is_valid(args->dname)) {
        ho_error_report(HO_ERR_INVALID_ARG, _("invalid destination name '%1$s'"), args->dname);
        return -1;
    }
    if (args->dxml) {
        g_autoptr(QemuDomainDef) xdef = qemu_domain_def_parse_string(args->dxml, "--xml");
        char uuid[37];

        if (!xdef)
            return -1;
        qemu_domain_uuid_format(xdef->uuid, uuid);
        if (!g_str_equal(uuid, qemu_domain_obj_uuid(dom))) {
            ho_error_report(HO_ERR_INVALID_ARG,
                            _("the destination XML has UUID '%1$s', but domain '%2$s' has '%3$s'"),
                            uuid, name, qemu_domain_obj_uuid(dom));
            return -1;
        }
        if (!g_str_equal(xdef->name, target)) {
            ho_error_report(HO_ERR_INVALID_ARG,
                            _("the destination XML names domain '%1$s', but the destination "
                              "name is '%2$s'"),
                            xdef->name, target);
            return -1;
        }
    }
    if (args->migrate_uri) {
        g_autofree char *host = NULL;
        int port = 0;
        const char *hp = args->migrate_uri;

        if (g_str_has_prefix(hp, "tcp://"))
            hp += strlen("tcp://");
        else if (g_str_has_prefix(hp, "tcp:"))
            hp += strlen("tcp:");
        else {
            ho_error_report(HO_ERR_URI,
                            _("unsupported migration URI '%1$s': expected tcp://HOST[:PORT]"),
                            args->migrate_uri);
            return -1;
        }
        if (strchr(hp, ':') && !(hp[0] == '[' && !strstr(hp, "]:"))) {
            if (ho_uri_parse_hostport(hp, &host, &port) < 0)
                return -1;
        } else if (!*hp) {
            ho_error_report(HO_ERR_URI, _("migration URI '%1$s' has no host"), args->migrate_uri);
            return -1;
        }
    }
    return 0;
}

static void
args_copy(QemuMigrationArgs *dst, const QemuMigrationArgs *src)
{
    *dst = *src;
    dst->dname = g_strdup(src->dname);
    dst->dxml = g_strdup(src->dxml);
    dst->migrate_uri = g_strdup(src->migrate_uri);
    dst->listen_address = g_strdup(src->listen_address);
    dst->record_path = g_strdup(src->record_path);
    dst->migrate_disks = g_strdupv(src->migrate_disks);
    dst->disks_uri = g_strdup(src->disks_uri);
    dst->mode = g_strdup(src->mode);
}

static Job *
job_new(QemuMigration *mig, bool src, const char *name, const char *uuid)
{
    Job *job = g_new0(Job, 1);

    job->refs = 1;
    job->mig = mig;
    job->src = src;
    job->name = g_strdup(name);
    job->uuid = g_strdup(uuid);
    job->start_us = ho_time_now_us();
    job->start_wall_ms = g_get_real_time() / 1000;
    job->qstatus = QEMU_MIGRATION_STATUS_NONE;
    job->stream_lfd = -1;
    return job;
}

/* The socket buffers to ask for (0: none, the kernel's autotuning).
 * They bound how much of the stream can wait in the two kernels, and so
 * how far the source may run ahead of the destination: an idle guest's
 * zero pages take about 12 bytes each on the wire, so a few megabytes of
 * buffers hold tens of milliseconds of the destination's work, and all of
 * it lands inside the guest's pause (docs/bench.md, "The destination's
 * backlog"). Only for one precopy stream: multifd and postcopy open more
 * connections to the URI themselves. */
static guint64
src_stream_buffer(Job *job)
{
    int rtt;
    guint64 bytes;

    if (job->args.parallel || job->args.postcopy)
        return 0;
    if (job->mig->stream_buffer)
        return job->mig->stream_buffer;
    rtt = job->ops && job->ops->rtt_us ? job->ops->rtt_us(job->peer) : -1;
    if (rtt < 0)
        return 0;
    bytes = MAX((guint64)rtt * STREAM_BYTES_PER_US, STREAM_BUFFER_MIN);
    return bytes > STREAM_BUFFER_AUTO_MAX ? 0 : bytes;
}

static json_object *
src_cookie(Job *job)
{
    const QemuDomainDef *def = qemu_domain_obj_def(job->dom, false);
    const QemuCaps *caps = qemu_domain_obj_caps(job->dom);
    g_autofree char *xml = qemu_domain_def_format(def);
    json_object *cookie = json_object_new_object();
    json_object *wanted = json_object_new_object();
    unsigned int v = qemu_caps_version(caps);
    g_autofree char *version =
        g_strdup_printf("%u.%u.%u", v / 1000000, (v / 1000) % 1000, v % 1000);

    ho_json_add_string(cookie, "name", job->name);
    ho_json_add_string(cookie, "uuid", job->uuid);
    ho_json_add_string(cookie, "xml", xml);
    ho_json_add_string(cookie, "machine", def->machine);
    if (job->mig->host_uuid)
        ho_json_add_string(cookie, "host_uuid", job->mig->host_uuid);
    if (job->mig->hostname)
        ho_json_add_string(cookie, "hostname", job->mig->hostname);
    ho_json_add_string(cookie, "qemu_version", version);
    ho_json_add(cookie, "args", qemu_migration_args_to_json(&job->args));
    job->stream_buffer = src_stream_buffer(job);
    if (job->stream_buffer)
        ho_json_add_int64(cookie, "stream_buffer", (int64_t)job->stream_buffer);
    /* What the destination's QEMU must match; pause-before-switchover is
     * the source's alone. */
    ho_json_add_bool(wanted, "events", true);
    ho_json_add_bool(wanted, "auto-converge", job->args.auto_converge);
    ho_json_add_bool(wanted, "multifd", job->args.parallel);
    ho_json_add_bool(wanted, "postcopy-ram", job->args.postcopy);
    ho_json_add(cookie, "caps", wanted);
    if (job->record_path) {
        json_object *rec = json_object_new_object();

        ho_json_add_string(rec, "path", job->record_path);
        ho_json_add(cookie, "record", rec);
    }
    return cookie;
}

int
qemu_migration_src_begin(QemuMigration *mig, QemuDomainObj *dom, const QemuMigrationArgs *args,
                         const QemuMigrationPeerOps *ops, void *peer, QemuMigrationDoneFunc cb,
                         void *opaque)
{
    g_autoptr(Job) job = NULL;
    const QemuCaps *caps;
    QemuMonitor *mon;

    if (src_check(mig, dom, args, ops, peer) < 0) {
        if (ops->free && peer)
            ops->free(peer);
        return -1;
    }
    caps = qemu_domain_obj_caps(dom);
    mon = qemu_domain_obj_monitor(dom);
    job = job_new(mig, true, qemu_domain_obj_name(dom), qemu_domain_obj_uuid(dom));
    job->dom = qemu_domain_obj_ref(dom);
    args_copy(&job->args, args);
    job->ops = ops;
    job->peer = peer;
    job->done_cb = cb;
    job->done_opaque = opaque;
    job->was_running = qemu_domain_obj_state(dom) == QEMU_DOMAIN_STATE_RUNNING;
    /* A paused guest arrives paused, as with virsh: the user paused it. */
    if (!job->was_running)
        job->args.paused = true;
    job->use_pbs = qemu_caps_has(caps, QEMU_CAPS_PAUSE_BEFORE_SWITCHOVER) &&
                   qemu_caps_has(caps, QEMU_CAPS_MIGRATE_CONTINUE);
    if (!job->use_pbs)
        HO_WARN("domain '%s': QEMU has no pause-before-switchover: the switchover cannot be "
                "held for cleanup", job->name);
    if (storage_copy(args)) {
        const QemuDomainDef *def = qemu_domain_obj_def(dom, false);

        job->disks = g_ptr_array_new_with_free_func((GDestroyNotify)storage_disk_free);
        for (guint i = 0; i < def->disks->len && job->disks->len < MAX_STORAGE_DISKS; i++) {
            const QemuDomainDiskDef *disk = g_ptr_array_index(def->disks, i);
            StorageDisk *d;

            if (!disk_is_copied(args, disk))
                continue;
            d = g_new0(StorageDisk, 1);
            d->target = g_strdup(disk->target);
            d->node = qemu_domain_disk_node_name(disk);
            d->format = g_strdup(qemu_domain_disk_format_to_string(disk->format));
            g_ptr_array_add(job->disks, d);
        }
        if (!job->use_pbs && job->disks->len)
            job_warn(job, _("the source QEMU has no pause-before-switchover: the disk mirrors "
                            "can only be ended after the migration completed, an order that "
                            "is unsafe for the copied disks"));
    }
    if (ops->host_uuid && ops->host_uuid(peer))
        job->peer_host_uuid = g_strdup(ops->host_uuid(peer));
    if (ops->hostname && ops->hostname(peer))
        job->peer_hostname = g_strdup(ops->hostname(peer));
    if (args->record_path) {
        job->record_path = g_strdup(args->record_path);
    } else if (mig->record_dir) {
        g_autofree char *stamp = record_stamp();
        g_autofree char *file = g_strdup_printf("%s-%s-src.jsonl", job->name, stamp);

        job->record_path = g_build_filename(mig->record_dir, file, NULL);
    }
    job->mon = qemu_monitor_ref(mon);
    job_attach_recorder(job, mon);
    job->cookie = src_cookie(job);

    g_hash_table_insert(mig->jobs, g_strdup(job->uuid), job_ref(job));
    job->mig_sub = qemu_monitor_subscribe(mon, "MIGRATION", src_migration_event, job);
    job->stop_sub = qemu_monitor_subscribe(mon, "STOP", src_stop_event, job);
    src_passes_begin(job, mon);
    job->exit_watch = qemu_domain_obj_add_exit_watch(dom, src_qemu_exited, job);
    if (job_set_phase(job, QEMU_MIGRATION_PHASE_BEGIN) < 0) {
        HoError *saved = ho_error_save();

        job->ended = true;
        job_detach(job);
        g_hash_table_remove(mig->jobs, job->uuid);
        /* peer is consumed: the job frees it */
        ho_error_restore(&saved);
        return -1;
    }
    HO_INFO("domain '%s': migration to %s begins", job->name,
            job->peer_hostname ? job->peer_hostname : "?");
    job->bound_src = g_idle_source_new();
    g_source_set_callback(job->bound_src, src_start, job_ref(job), (GDestroyNotify)job_unref);
    g_source_attach(job->bound_src, mig->ctx);
    return 0;
}

static bool postcopy_peer_lost(Job *job);

void
qemu_migration_src_peer_lost(QemuMigration *mig, const char *uuid, const HoError *err)
{
    Job *job = mig_find_job(mig, uuid);
    g_autoptr(Job) hold = NULL;

    if (!job || !job->src || !job_live(job))
        return;
    hold = job_ref(job);
    job->peer_gone = true;
    HO_WARN("domain '%s': lost the destination daemon: %s", job->name,
            err ? err->message : "-");
    if (postcopy_peer_lost(job))
        return;
    if (job->phase >= QEMU_MIGRATION_PHASE_CONFIRM)
        return; /* the destination runs the guest */
    if (job->finish_sent && !job->unwinding) {
        g_autoptr(HoError) lost = err ? ho_error_copy(err)
                                      : ho_error_new(HO_ERR_RPC, "%s",
                                                     _("the destination daemon is gone"));

        src_finish_done(NULL, lost, job_ref(job));
        return;
    }
    job_keep_error(job, err ? ho_error_new(err->code,
                                           _("lost the destination daemon during the migration "
                                             "of domain '%1$s': %2$s"),
                                           job->name, err->message)
                            : ho_error_new(HO_ERR_RPC,
                                           _("lost the destination daemon during the migration "
                                             "of domain '%1$s'"),
                                           job->name));
    if (job->prepare_pending) {
        job->prepare_pending = false;
        job->unwinding = false;
    }
    src_unwind(job);
}

/* ---- destination ------------------------------------------------------------- */

typedef struct {
    QemuMigrationReplyFunc cb;
    void *opaque;
    json_object *result;
    HoError *err;
} ReplyLater;

static gboolean
reply_later_run(gpointer opaque)
{
    ReplyLater *r = opaque;

    r->cb(r->result, r->err, r->opaque);
    return G_SOURCE_REMOVE;
}

static void
reply_later_free(gpointer opaque)
{
    ReplyLater *r = opaque;

    json_object_put(r->result);
    ho_error_free(r->err);
    g_free(r);
}

/* Answer from an idle callback, never from inside the call; consumes both. */
static void
reply_later(QemuMigration *mig, QemuMigrationReplyFunc cb, void *opaque, json_object *result,
            HoError *err)
{
    ReplyLater *r = g_new0(ReplyLater, 1);
    GSource *src = g_idle_source_new();

    r->cb = cb;
    r->opaque = opaque;
    r->result = result;
    r->err = err;
    g_source_set_callback(src, reply_later_run, r, reply_later_free);
    g_source_attach(src, mig->ctx);
    g_source_unref(src);
}

static void dst_nbd_stop(Job *job, QemuMigrationReplyFunc cb, void *opaque);
static json_object *dst_nbd_json(Job *job);

/* Give the pending answer (result and err consumed). */
static void
dst_reply(Job *job, json_object *result, HoError *err)
{
    QemuMigrationReplyFunc cb = job->reply_cb;
    void *opaque = job->reply_opaque;

    job->reply_cb = NULL;
    job->reply_opaque = NULL;
    if (!cb) {
        json_object_put(result);
        ho_error_free(err);
        return;
    }
    cb(result, err, opaque);
    json_object_put(result);
    ho_error_free(err);
}

/* The failure answer of the pending request. */
static void
dst_reply_failure(Job *job)
{
    json_object *obj;

    switch ((ReplyKind)job->reply_kind) {
    case REPLY_PREPARE:
        dst_reply(job, NULL, ho_error_copy(job->err));
        return;
    case REPLY_FINISH:
        if (job->cont_sent) {
            /* Our QEMU was told to run and did not answer: an error, which
             * the source takes as "outcome unknown" and stays paused. */
            dst_reply(job, NULL,
                      ho_error_new(HO_ERR_OPERATION_INVALID,
                                   _("the destination QEMU of domain '%1$s' ended after it was "
                                     "told to run (%2$s); whether it ran the guest is unknown"),
                                   job->name, job->err ? job->err->message : _("no reason given")));
            return;
        }
        /* Our QEMU is gone and never ran a vCPU: the source may resume. */
        obj = json_object_new_object();
        ho_json_add_string(obj, "state", "shutoff");
        error_to_json(obj, job->err);
        dst_reply(job, obj, NULL);
        return;
    case REPLY_FINISH_ABORT:
        dst_reply(job, json_object_new_object(), NULL);
        return;
    }
}

static void
dst_unwind_done(QemuDriver *drv, QemuDomainObj *dom, const HoError *err, void *opaque)
{
    g_autoptr(Job) job = opaque;

    if (err)
        HO_WARN("domain '%s': destroying the incoming QEMU: %s", job->name, err->message);
    if (!job->mig)
        return;
    dst_reply_failure(job);
    job_end_failed(job);
}

/* Failure or abort before the destination ran the guest: kill the
 * incoming QEMU (the domain goes with it unless it was defined here),
 * answer, end. Idempotent. */
static void
dst_unwind(Job *job)
{
    if (!job_live(job) || job->unwinding)
        return;
    job->unwinding = true;
    clear_source(&job->bound_src);
    if (job->dom && job->exit_watch) {
        qemu_domain_obj_remove_exit_watch(job->dom, job->exit_watch);
        job->exit_watch = 0;
    }
    HO_INFO("domain '%s': unwinding the incoming migration (%s)", job->name,
            job->err ? job->err->message : "-");
    if (job->dom && qemu_domain_obj_pid(job->dom) > 0) {
        qemu_driver_domain_destroy(job->mig->drv, job->dom, dst_unwind_done, job_ref(job));
        return;
    }
    if (job->dom && qemu_domain_obj_is_active(job->dom))
        return; /* still starting: dst_started sees the unwinding and destroys it */
    dst_reply_failure(job);
    job_end_failed(job);
}

static void
dst_fail(Job *job, HoError *err)
{
    job_keep_error(job, err);
    dst_unwind(job);
}

static void
dst_fail_take(Job *job)
{
    dst_fail(job, error_steal_or_unknown());
}

static void
dst_finished(Job *job, bool running)
{
    QemuDriver *drv = job->mig->drv;
    json_object *obj = json_object_new_object();

    clear_source(&job->bound_src);
    /* The answer first: the guest runs, the source may quit. */
    ho_json_add_string(obj, "state", running ? "running" : "paused");
    dst_reply(job, obj, NULL);
    if (qemu_driver_domain_incoming_finished(drv, job->dom, running) < 0) {
        HO_WARN("domain '%s': %s", job->name, ho_error_last_message());
        ho_error_reset();
    }
    if (job->args.persistent) {
        g_autofree char *xml = qemu_domain_def_format(qemu_domain_obj_def(job->dom, false));

        if (!qemu_driver_define(drv, xml)) {
            HO_WARN("domain '%s': cannot make it persistent here: %s", job->name,
                    ho_error_last_message());
            ho_error_reset();
        }
    }
    job->stats = job_info_base(job);
    ho_json_add_int64(job->stats, "total_ms", (ho_time_now_us() - job->start_us) / 1000);
    job_end(job, QEMU_MIGRATION_PHASE_COMPLETED);
}

static void
dst_cont_done(QemuMonitor *mon, const HoError *err, void *opaque)
{
    g_autoptr(Job) job = opaque;

    if (!job_live(job))
        return;
    if (err) {
        /* QEMU refusing `cont` (a QMP error) did not start a vCPU; a
         * connection that broke instead says nothing either way. */
        if (err->code == HO_ERR_QMP)
            job->cont_sent = false;
        dst_fail(job, ho_error_new(err->code,
                                   _("cannot run domain '%1$s' on the destination: %2$s"),
                                   job->name, err->message));
        return;
    }
    dst_finished(job, true);
}

/* Both conditions met: the source completed (Finish came) and so did our
 * own incoming migration. One QMP command, nothing else. */
static void
dst_run(Job *job)
{
    QemuMonitor *mon = qemu_domain_obj_monitor(job->dom);

    job->finish_waiting = false;
    /* Storage copy: the export must be gone before the images activate
     * (at cont with late-block-activate). Usually the source had it
     * stopped already (nbd_stop); else it goes now, queued before cont. */
    if (job->nbd_running)
        dst_nbd_stop(job, NULL, NULL);
    if (job->args.paused) {
        dst_finished(job, false);
        return;
    }
    if (job->postcopy_started && job->cont_sent) {
        /* Resumed at postcopy-active already. */
        dst_finished(job, true);
        return;
    }
    if (!mon) {
        dst_fail(job, ho_error_new(HO_ERR_OPERATION_INVALID,
                                   _("the monitor of domain '%1$s' is not available"),
                                   job->name));
        return;
    }
    job->cont_sent = true;
    qemu_monitor_json_cont(mon, dst_cont_done, job_ref(job));
}

static bool dst_postcopy_event(Job *job, QemuMigrationStatus st);
static void dst_postcopy_completed_alone(Job *job);
static bool dst_postcopy_exited(Job *job, const char *how);

static void
dst_migration_event(QemuMonitor *mon, const char *name, json_object *data, gint64 qemu_ts_us,
                    gint64 recv_ts_us, void *opaque)
{
    Job *job = opaque;
    const char *status = NULL;
    QemuMigrationStatus st;

    if (!job_live(job) || job->unwinding || !data ||
        ho_json_get_string(data, "status", &status) < 0) {
        ho_error_reset();
        return;
    }
    st = qemu_migration_status_from_string(status);
    HO_DEBUG("domain '%s': incoming migration status %s", job->name, status);
    job->qstatus = st;
    if (st == QEMU_MIGRATION_STATUS_COMPLETED) {
        job->incoming_completed = true;
        if (job->finish_waiting)
            dst_run(job);
        else
            dst_postcopy_completed_alone(job);
    } else if (dst_postcopy_event(job, st)) {
        return;
    } else if (st == QEMU_MIGRATION_STATUS_FAILED || st == QEMU_MIGRATION_STATUS_CANCELLED) {
        dst_fail(job, ho_error_new(HO_ERR_QMP,
                                   _("the incoming migration of domain '%1$s' failed in QEMU"),
                                   job->name));
    }
}

static void
dst_qemu_exited(QemuDomainObj *dom, const char *how, void *opaque)
{
    Job *job = opaque;

    job->exit_watch = 0;
    if (!job_live(job) || job->unwinding)
        return;
    if (dst_postcopy_exited(job, how))
        return;
    dst_fail(job, ho_error_new(HO_ERR_SYSTEM,
                               _("QEMU of domain '%1$s' %2$s during the incoming migration"),
                               job->name, how));
}

static void dst_try_port(Job *job);

static void dst_listening(Job *job);

static void
dst_incoming_done(QemuMonitor *mon, const HoError *err, void *opaque)
{
    g_autoptr(Job) job = opaque;

    if (!job_live(job) || job->unwinding)
        return;
    if (err) {
        if (err->code == HO_ERR_QMP && job->port < job->port_last) {
            /* Most likely in use: the next one. */
            HO_DEBUG("domain '%s': port %d: %s", job->name, job->port, err->message);
            job->port++;
            dst_try_port(job);
            return;
        }
        dst_fail(job, ho_error_new(err->code,
                                   _("cannot listen for the incoming migration of domain '%1$s' "
                                     "(last port tried %2$d): %3$s"),
                                   job->name, job->port, err->message));
        return;
    }
    dst_listening(job);
}

/* Listening (QEMU, or this daemon for QEMU): Prepare's answer. */
static void
dst_listening(Job *job)
{
    g_autofree char *hostport = NULL;
    json_object *obj;

    hostport = ho_uri_format_hostport(job->public_host, job->port);
    g_free(job->uri);
    job->uri = g_strdup_printf("tcp:%s", hostport);
    if (job->stream_buffer)
        HO_INFO("domain '%s': incoming migration listens on %s, %" G_GUINT64_FORMAT
                "-byte receive buffer",
                job->name, job->uri, job->stream_buffer);
    else
        HO_INFO("domain '%s': incoming migration listens on %s", job->name, job->uri);
    obj = json_object_new_object();
    ho_json_add_string(obj, "uri", job->uri);
    if (job->mig->host_uuid)
        ho_json_add_string(obj, "host_uuid", job->mig->host_uuid);
    if (job->mig->hostname)
        ho_json_add_string(obj, "hostname", job->mig->hostname);
    if (job->disks)
        ho_json_add(obj, "nbd", dst_nbd_json(job));
    if (job->stream_buffer)
        ho_json_add_int64(obj, "stream_buffer", (int64_t)job->stream_buffer);
    dst_reply(job, obj, NULL);
}

/* Whether host:port can be bound now: a quick bind-and-close that skips
 * ports another process listens on before QEMU is asked. QEMU 10.0 cannot
 * retry migrate-incoming after a failed one (its incoming state stays
 * "setup"), so a busy port must be found here, not by QEMU's error. The
 * window between this check and QEMU's own bind is a few milliseconds. */
static bool
dst_port_free(const char *host, int port)
{
    int fd = ho_socket_tcp_listen(host, port, 1, NULL);

    if (fd < 0) {
        ho_error_reset();
        return false;
    }
    close(fd);
    return true;
}

/* Whether another incoming job of this daemon already chose port (for
 * its stream or its NBD server): two jobs probing at once would both find
 * it free before either QEMU binds it. */
static bool
dst_port_taken(Job *self, int port)
{
    GHashTableIter it;
    gpointer value;

    g_hash_table_iter_init(&it, self->mig->jobs);
    while (g_hash_table_iter_next(&it, NULL, &value)) {
        Job *other = value;

        if (other == self || other->src || other->ended)
            continue;
        if (other->port == port || other->nbd_port == port)
            return true;
    }
    return false;
}

/* Whether this QEMU listens on a socket passed to it: QEMU before 8.2
 * reads "tcp:fd:NAME" as a listening socket (its socket address parser
 * takes "fd:"); 8.2 and later take only a connected stream as fd, which
 * this daemon then accepts for it (dst_stream_accept). */
static bool
dst_stream_fd_ok(Job *job)
{
    const QemuCaps *caps = qemu_domain_obj_caps(job->dom);

    return caps && qemu_caps_version(caps) < 8002000;
}

static void
dst_stream_incoming_done(QemuMonitor *mon, const HoError *err, void *opaque)
{
    g_autoptr(Job) job = opaque;

    if (!job_live(job) || job->unwinding || !err)
        return;
    dst_fail(job, ho_error_new(err->code,
                               _("cannot hand the incoming migration stream of domain '%1$s' "
                                 "to QEMU: %2$s"),
                               job->name, err->message));
}

/* QEMU 8.2 and later, the source connected: the connection, with the
 * listener's receive buffer, goes to QEMU (getfd, migrate-incoming
 * fd:NAME), and the listener closes. The first connection is taken, as
 * QEMU's own listener would. */
static gboolean
dst_stream_accept(gint lfd, GIOCondition cond, gpointer opaque)
{
    Job *job = opaque;
    QemuMonitor *mon = job->dom ? qemu_domain_obj_monitor(job->dom) : NULL;
    int afd;
    int e;

    (void)cond;
    if (!job_live(job) || job->unwinding) {
        dst_stream_listener_close(job);
        return G_SOURCE_REMOVE;
    }
    afd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    e = errno;
    if (afd < 0 && (e == EAGAIN || e == EINTR || e == ECONNABORTED))
        return G_SOURCE_CONTINUE;
    /* GLib holds its own reference to the job until this returns. */
    dst_stream_listener_close(job);
    if (afd < 0 || !mon) {
        if (afd >= 0)
            close(afd);
        dst_fail(job, afd < 0 ? ho_error_new(HO_ERR_SYSTEM,
                                             _("cannot accept the migration stream of domain "
                                               "'%1$s': %2$s"),
                                             job->name, g_strerror(e))
                              : ho_error_new(HO_ERR_OPERATION_INVALID,
                                             _("the monitor of domain '%1$s' is not available"),
                                             job->name));
        return G_SOURCE_REMOVE;
    }
    HO_DEBUG("domain '%s': migration stream accepted", job->name);
    qemu_monitor_json_getfd(mon, STREAM_FD_NAME, afd, stream_getfd_done, job_ref(job));
    close(afd);
    qemu_monitor_json_migrate_incoming(mon, "fd:" STREAM_FD_NAME, dst_stream_incoming_done,
                                       job_ref(job));
    return G_SOURCE_REMOVE;
}

/* QEMU listens and accepts itself (migrate-incoming tcp:...), never on
 * a connection we accept and pass: the stream then goes straight from the
 * network into QEMU with no copy through the daemon, QEMU keeps listening
 * if this daemon restarts, and it owns the channel it must re-establish
 * itself for postcopy recovery (migrate-recover) later. When the source
 * asked for a fixed stream buffer and this QEMU can take it, the
 * listening socket is bound here with that receive buffer and passed with
 * getfd ("tcp:fd:NAME"); QEMU still accepts on it. */
static void
dst_try_port(Job *job)
{
    QemuMonitor *mon = qemu_domain_obj_monitor(job->dom);
    g_autofree char *hostport = NULL;
    g_autofree char *uri = NULL;
    int lfd = -1;

    if (!mon) {
        dst_fail(job, ho_error_new(HO_ERR_OPERATION_INVALID,
                                   _("the monitor of domain '%1$s' is not available"),
                                   job->name));
        return;
    }
    while (job->port < job->port_last) {
        if (!dst_port_taken(job, job->port)) {
            if (!job->stream_buffer && dst_port_free(job->listen_host, job->port))
                break;
            if (job->stream_buffer &&
                (lfd = ho_socket_tcp_listen(job->listen_host, job->port, 1, NULL)) >= 0)
                break;
            ho_error_reset();
        }
        job->port++;
    }
    if (lfd < 0) {
        hostport = ho_uri_format_hostport(job->listen_host, job->port);
        uri = g_strdup_printf("tcp:%s", hostport);
        qemu_monitor_json_migrate_incoming(mon, uri, dst_incoming_done, job_ref(job));
        return;
    }
    /* Connections accepted from it inherit the receive buffer. */
    if (ho_socket_set_buffers(lfd, 0, (int)job->stream_buffer) < 0) {
        close(lfd);
        dst_fail(job, error_steal_or_unknown());
        return;
    }
    if (dst_stream_fd_ok(job)) {
        /* QEMU listens on, and accepts from, the socket bound here. */
        qemu_monitor_json_getfd(mon, STREAM_FD_NAME, lfd, stream_getfd_done, job_ref(job));
        close(lfd);
        qemu_monitor_json_migrate_incoming(mon, "tcp:fd:" STREAM_FD_NAME, dst_incoming_done,
                                           job_ref(job));
        return;
    }
    /* QEMU takes only a connection: this daemon accepts it. */
    if (ho_socket_set_nonblock(lfd, true) < 0) {
        close(lfd);
        dst_fail(job, error_steal_or_unknown());
        return;
    }
    job->stream_lfd = lfd;
    job->stream_accept_src = g_unix_fd_source_new(lfd, G_IO_IN);
    g_source_set_callback(job->stream_accept_src, G_SOURCE_FUNC(dst_stream_accept), job_ref(job),
                          (GDestroyNotify)job_unref);
    g_source_attach(job->stream_accept_src, job->mig->ctx);
    dst_listening(job);
}

/* Where to listen and what to tell the source. */
static int
dst_choose_address(Job *job)
{
    QemuMigration *mig = job->mig;
    g_autofree char *uri_host = NULL;
    int uri_port = 0;

    if (job->args.migrate_uri) {
        const char *hp = job->args.migrate_uri;

        if (g_str_has_prefix(hp, "tcp://"))
            hp += strlen("tcp://");
        else if (g_str_has_prefix(hp, "tcp:"))
            hp += strlen("tcp:");
        if (strchr(hp, ':') && !(hp[0] == '[' && !strstr(hp, "]:"))) {
            if (ho_uri_parse_hostport(hp, &uri_host, &uri_port) < 0)
                return -1;
        } else if (hp[0] == '[') {
            uri_host = g_strndup(hp + 1, strlen(hp) > 2 ? strlen(hp) - 2 : 0);
        } else {
            uri_host = g_strdup(hp);
        }
    }
    if (job->args.listen_address)
        job->listen_host_owned = g_strdup(job->args.listen_address);
    else if (mig->migration_address)
        job->listen_host_owned = g_strdup(mig->migration_address);
    else
        job->listen_host_owned = g_strdup("0.0.0.0");
    job->listen_host = job->listen_host_owned;
    if (uri_host)
        job->public_host = g_steal_pointer(&uri_host);
    else if (!g_str_equal(job->listen_host, "0.0.0.0") && !g_str_equal(job->listen_host, "::"))
        job->public_host = g_strdup(job->listen_host);
    else
        job->public_host = g_strdup(mig->hostname ? mig->hostname : "localhost");
    if (uri_port > 0) {
        job->port = job->port_last = uri_port;
    } else {
        job->port = mig->port_min;
        job->port_last = mig->port_max;
    }
    return 0;
}

/* Ready for the stream: PERFORM, then migrate-incoming. */
static void
dst_listen(Job *job)
{
    if (job_set_phase(job, QEMU_MIGRATION_PHASE_PERFORM) < 0) {
        dst_fail_take(job);
        return;
    }
    dst_try_port(job);
}

/* ---- storage copy on the destination: the NBD server and its exports ---- */

static void
dst_export_done(QemuMonitor *mon, const HoError *err, void *opaque)
{
    DiskCall *c = opaque;
    g_autoptr(Job) job = c->job;
    guint i = c->disk;

    g_free(c);
    if (job->exports_pending)
        job->exports_pending--;
    if (!job_live(job) || job->unwinding)
        return;
    if (err) {
        const StorageDisk *d = g_ptr_array_index(job->disks, i);

        dst_fail(job, ho_error_new(err->code,
                                   _("cannot export disk '%1$s' of domain '%2$s' for the copy: "
                                     "%3$s"),
                                   d->target, job->name, err->message));
        return;
    }
    if (!job->exports_pending)
        dst_listen(job);
}

static void
dst_nbd_started(QemuMonitor *mon, const HoError *err, void *opaque)
{
    g_autoptr(Job) job = opaque;

    if (!job_live(job) || job->unwinding)
        return;
    if (err) {
        dst_fail(job, ho_error_new(err->code,
                                   _("cannot start the NBD server for the disks of domain '%1$s': "
                                     "%2$s"),
                                   job->name, err->message));
        return;
    }
    job->nbd_running = true;
    HO_INFO("domain '%s': NBD server for the disk copy on %s%s%d", job->name,
            job->nbd_path ? job->nbd_path : job->listen_host, job->nbd_path ? "" : " port ",
            job->nbd_path ? 0 : job->nbd_port);
    /* Every export at once; the last answer goes on. */
    for (guint i = 0; i < job->disks->len; i++) {
        const StorageDisk *d = g_ptr_array_index(job->disks, i);

        job->exports_pending++;
        qemu_monitor_json_block_export_add(mon, d->node, d->node, d->node, true, dst_export_done,
                                           disk_call_new(job, i));
    }
}

/* The NBD server's listening socket: bound here, Nagle turned off on it
 * (and so on every connection QEMU accepts from it), handed to QEMU with
 * getfd. QEMU 7.2's NBD server leaves Nagle on: a reply written while the
 * one before it is unacknowledged waits for the client's delayed ACK, 40 ms
 * on Linux. At the switchover that is the source's drain waiting for its
 * last mirror write with the guest paused (docs/bench.md, "Where a busy
 * guest's pause went"). Binding here also leaves no window between finding
 * a port free and QEMU taking it. */
#define NBD_LISTEN_FDNAME "handover-nbd"
#define NBD_LISTEN_BACKLOG 64

static int
dst_nbd_listen(Job *job)
{
    int fd = -1;

    for (;; job->nbd_port++) {
        if (!dst_port_taken(job, job->nbd_port)) {
            ho_error_reset();
            fd = ho_socket_tcp_listen(job->nbd_host, job->nbd_port, NBD_LISTEN_BACKLOG, NULL);
            if (fd >= 0)
                break;
        }
        if (job->nbd_port >= job->nbd_port_last)
            break;
    }
    if (fd < 0) {
        g_autofree char *why = g_strdup(ho_error_last()
                                            ? ho_error_last_message()
                                            : _("every port is taken by other migrations"));

        ho_error_report(HO_ERR_SYSTEM,
                        _("cannot listen for the NBD server of domain '%1$s' (last port tried "
                          "%2$d): %3$s"),
                        job->name, job->nbd_port, why);
        return -1;
    }
    if (ho_socket_set_nodelay(fd) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void
dst_nbd_try_port(Job *job)
{
    int fd;

    if (job->nbd_path) {
        qemu_monitor_json_nbd_server_start_unix(job->mon, job->nbd_path, dst_nbd_started,
                                                job_ref(job));
        return;
    }
    if ((fd = dst_nbd_listen(job)) < 0) {
        dst_fail_take(job);
        return;
    }
    /* The monitor sends its own copy; QEMU's nbd-server-stop closes it.
     * A failed getfd shows in nbd-server-start's answer (no such fd). */
    qemu_monitor_json_getfd(job->mon, NBD_LISTEN_FDNAME, fd, NULL, NULL);
    close(fd);
    qemu_monitor_json_nbd_server_start_fd(job->mon, NBD_LISTEN_FDNAME, dst_nbd_started,
                                          job_ref(job));
}

/* Where the NBD server listens: --disks-uri, else the migration's listen
 * address with --disks-port or a port of the configured range. */
static void
dst_nbd_start(Job *job)
{
    const char *uri = job->args.disks_uri;

    if (uri && g_str_has_prefix(uri, "unix:")) {
        job->nbd_path = g_strdup(uri + strlen("unix:"));
    } else if (uri && g_str_has_prefix(uri, "tcp://")) {
        const char *hp = uri + strlen("tcp://");
        g_autofree char *host = NULL;
        int port = 0;

        if (strchr(hp, ':') && !(hp[0] == '[' && !strstr(hp, "]:"))) {
            if (ho_uri_parse_hostport(hp, &host, &port) < 0) {
                dst_fail_take(job);
                return;
            }
        } else if (hp[0] == '[') {
            host = g_strndup(hp + 1, strlen(hp) > 2 ? strlen(hp) - 2 : 0);
        } else {
            host = g_strdup(hp);
        }
        job->nbd_host = g_steal_pointer(&host);
        job->nbd_port = job->nbd_port_last = port > 0 ? port : job->mig->nbd_port_min;
    } else if (uri) {
        dst_fail(job, ho_error_new(HO_ERR_URI,
                                   _("unsupported disks URI '%1$s': expected tcp://HOST[:PORT] "
                                     "or unix:PATH"),
                                   uri));
        return;
    }
    if (!job->nbd_path && !job->nbd_host) {
        job->nbd_host = g_strdup(job->listen_host);
        if (job->args.disks_port > 0) {
            job->nbd_port = job->nbd_port_last = job->args.disks_port;
        } else {
            job->nbd_port = job->mig->nbd_port_min;
            job->nbd_port_last = job->mig->nbd_port_max;
        }
    }
    dst_nbd_try_port(job);
}

/* The NBD part of the Prepare answer. */
static json_object *
dst_nbd_json(Job *job)
{
    json_object *nbd = json_object_new_object();
    json_object *exports = json_object_new_array();
    const QemuCaps *caps = job->dom ? qemu_domain_obj_caps(job->dom) : NULL;

    if (job->nbd_path) {
        ho_json_add_string(nbd, "path", job->nbd_path);
    } else {
        /* A wildcard listen address is no address for the source. */
        bool wildcard = g_str_equal(job->nbd_host, "0.0.0.0") || g_str_equal(job->nbd_host, "::");

        ho_json_add_string(nbd, "host", wildcard ? job->public_host : job->nbd_host);
        ho_json_add_int64(nbd, "port", job->nbd_port);
    }
    for (guint i = 0; i < job->disks->len; i++) {
        const StorageDisk *d = g_ptr_array_index(job->disks, i);
        json_object *e = json_object_new_object();

        ho_json_add_string(e, "target", d->target);
        ho_json_add_string(e, "name", d->node);
        json_object_array_add(exports, e);
    }
    ho_json_add(nbd, "exports", exports);
    ho_json_add_bool(nbd, "late_block_activate",
                     caps && qemu_caps_has(caps, QEMU_CAPS_LATE_BLOCK_ACTIVATE));
    return nbd;
}

static void
dst_nbd_stop_done(QemuMonitor *mon, const HoError *err, void *opaque)
{
    ReplyLater *r = opaque;

    if (r->cb)
        r->cb(err ? NULL : r->result, err, r->opaque);
    reply_later_free(r);
}

/* nbd-server-stop, once; cb (may be NULL) gets {} or the error. */
static void
dst_nbd_stop(Job *job, QemuMigrationReplyFunc cb, void *opaque)
{
    ReplyLater *r;

    if (!job->nbd_running || !job->mon || qemu_monitor_is_closed(job->mon)) {
        if (cb)
            reply_later(job->mig, cb, opaque, json_object_new_object(), NULL);
        return;
    }
    job->nbd_running = false;
    r = g_new0(ReplyLater, 1);
    r->cb = cb;
    r->opaque = opaque;
    r->result = json_object_new_object();
    qemu_monitor_json_nbd_server_stop(job->mon, dst_nbd_stop_done, r);
}

void
qemu_migration_dst_nbd_stop(QemuMigration *mig, json_object *args, QemuMigrationReplyFunc cb,
                            void *opaque)
{
    const char *uuid = NULL;
    Job *job;

    if (!args || ho_json_get_string(args, "uuid", &uuid) < 0) {
        reply_later(mig, cb, opaque, NULL, ho_error_steal());
        return;
    }
    job = mig_find_job(mig, uuid);
    if (!job || job->src || !job_live(job)) {
        reply_later(mig, cb, opaque, NULL,
                    ho_error_new(HO_ERR_OPERATION_INVALID,
                                 _("no incoming migration of domain '%1$s' here"), uuid));
        return;
    }
    dst_nbd_stop(job, cb, opaque);
    /* Sent with migrate-continue: the switchover is under way. */
    job_boost_soon(job);
}

static void
dst_params_done(QemuMonitor *mon, const HoError *err, void *opaque)
{
    g_autoptr(Job) job = opaque;

    if (!job_live(job) || job->unwinding)
        return;
    if (err) {
        dst_fail(job, ho_error_new(err->code,
                                   _("cannot set the migration parameters of domain '%1$s': %2$s"),
                                   job->name, err->message));
        return;
    }
    if (dst_choose_address(job) < 0) {
        dst_fail_take(job);
        return;
    }
    if (job->disks) {
        dst_nbd_start(job);
        return;
    }
    dst_listen(job);
}

static void
dst_caps_set_done(QemuMonitor *mon, const HoError *err, void *opaque)
{
    g_autoptr(Job) job = opaque;
    json_object *params;

    if (!job_live(job) || job->unwinding)
        return;
    if (err) {
        dst_fail(job, ho_error_new(err->code,
                                   _("cannot set the migration capabilities of domain '%1$s': "
                                     "%2$s"),
                                   job->name, err->message));
        return;
    }
    if (!(job->args.parallel && job->args.parallel_connections)) {
        dst_params_done(mon, NULL, job_ref(job));
        return;
    }
    params = json_object_new_object();
    ho_json_add_int64(params, "multifd-channels", job->args.parallel_connections);
    qemu_monitor_json_migrate_set_parameters(mon, params, dst_params_done, job_ref(job));
}

static void
dst_started(QemuDriver *drv, QemuDomainObj *dom, const HoError *err, void *opaque)
{
    g_autoptr(Job) job = opaque;
    QemuMonitor *mon;
    const QemuCaps *caps;
    const char *names[6];
    bool states[6];
    size_t n = 0;

    if (!job->mig)
        return;
    if (err) {
        if (!job_live(job))
            return;
        job_keep_error(job, ho_error_copy(err));
        job->unwinding = true;
        dst_reply_failure(job);
        job_end_failed(job);
        return;
    }
    if (!job_live(job) || job->unwinding) {
        /* Aborted while it started. */
        qemu_driver_domain_destroy(drv, dom, job->ended ? NULL : dst_unwind_done,
                                   job->ended ? NULL : job_ref(job));
        return;
    }
    mon = qemu_domain_obj_monitor(dom);
    caps = qemu_domain_obj_caps(dom);
    if (!mon || !caps) {
        dst_fail(job, ho_error_new(HO_ERR_OPERATION_INVALID,
                                   _("the monitor of domain '%1$s' is not available"),
                                   job->name));
        return;
    }
    job->mon = qemu_monitor_ref(mon);
    job_attach_recorder(job, mon);
    job->mig_sub = qemu_monitor_subscribe(mon, "MIGRATION", dst_migration_event, job);
    job->exit_watch = qemu_domain_obj_add_exit_watch(dom, dst_qemu_exited, job);
    names[n] = "events";
    states[n++] = true;
    /* Storage copy: the images activate only at cont, so the NBD server
     * can stop in parallel with the source's migrate-continue. */
    if (job->disks && qemu_caps_has(caps, QEMU_CAPS_LATE_BLOCK_ACTIVATE)) {
        names[n] = "late-block-activate";
        states[n++] = true;
    }
    if (qemu_caps_has(caps, QEMU_CAPS_MULTIFD)) {
        names[n] = "multifd";
        states[n++] = job->args.parallel;
    }
    /* postcopy-ram on both sides: a destination without it dies on the
     * first postcopy message (a fresh QEMU has it off). */
    if (job->args.postcopy && qemu_caps_has(caps, QEMU_CAPS_POSTCOPY_RAM)) {
        names[n] = "postcopy-ram";
        states[n++] = job->args.postcopy;
    }
    qemu_monitor_json_migrate_set_capabilities(mon, names, states, n, dst_caps_set_done,
                                               job_ref(job));
}

static char *
caps_version_string(const QemuCaps *caps)
{
    unsigned int v = qemu_caps_version(caps);

    return g_strdup_printf("%u.%u.%u", v / 1000000, (v / 1000) % 1000, v % 1000);
}

static void
dst_start_qemu(Job *job)
{
    QemuDomainObj *dom;

    dom = qemu_driver_domain_start_incoming(job->mig->drv, job->def, job->emulator,
                                            job_record(job), dst_started, job_ref(job));
    if (!dom) {
        job_unref(job); /* the callback's reference */
        dst_fail_take(job);
        return;
    }
    job->dom = qemu_domain_obj_ref(dom);
}

/* The qemu-img that creates target images. */
static char *
dst_qemu_img(Job *job)
{
    const char *emulator = job->emulator ? job->emulator
                                         : qemu_driver_host_emulator(job->mig->drv);
    g_autofree char *dir = NULL;
    g_autofree char *beside = NULL;

    if (job->mig->qemu_img)
        return g_strdup(job->mig->qemu_img);
    if (emulator && g_path_is_absolute(emulator)) {
        dir = g_path_get_dirname(emulator);
        beside = g_build_filename(dir, "qemu-img", NULL);
        if (g_file_test(beside, G_FILE_TEST_IS_EXECUTABLE))
            return g_steal_pointer(&beside);
    }
    return g_strdup("qemu-img");
}

typedef struct {
    Job *job;
    char *path;
} CreateCall;

static void dst_create_next(Job *job);

static void
dst_create_done(GObject *obj, GAsyncResult *res, gpointer opaque)
{
    CreateCall *c = opaque;
    g_autoptr(Job) job = c->job;
    g_autofree char *path = c->path;
    GSubprocess *proc = G_SUBPROCESS(obj);
    g_autofree char *out = NULL;
    g_autoptr(GError) gerr = NULL;

    g_free(c);
    if (!g_subprocess_communicate_utf8_finish(proc, res, &out, NULL, &gerr) ||
        !g_subprocess_get_if_exited(proc) || g_subprocess_get_exit_status(proc) != 0) {
        if (!gerr) {
            /* It may have created a partial file: ours to remove. */
            if (job->created)
                g_ptr_array_add(job->created, g_strdup(path));
        }
        g_strstrip(out ? out : (out = g_strdup("")));
        if (job_live(job))
            dst_fail(job, ho_error_new(HO_ERR_SYSTEM,
                                       _("cannot create the image '%1$s' for the migration: %2$s"),
                                       path, gerr ? gerr->message : out));
        else if (job->created)
            dst_remove_created(job);
        return;
    }
    if (job->created)
        g_ptr_array_add(job->created, g_strdup(path));
    if (!job_live(job)) {
        dst_remove_created(job);
        return;
    }
    HO_INFO("domain '%s': created the image '%s' for the migration", job->name, path);
    if (job->unwinding)
        return;
    dst_create_next(job);
}

/* Check or create the target image of the next disk (qemu-img in a
 * subprocess, never on the loop); all done: start the QEMU. */
static void
dst_create_next(Job *job)
{
    g_autoptr(GPtrArray) argv = NULL;
    g_autoptr(GSubprocess) proc = NULL;
    g_autoptr(GError) gerr = NULL;
    const QemuDomainDiskDef *disk;
    StorageDisk *d;
    CreateCall *c;

    if (!job_live(job) || job->unwinding)
        return;
    if (job->create_next >= job->disks->len) {
        dst_start_qemu(job);
        return;
    }
    d = g_ptr_array_index(job->disks, job->create_next++);
    disk = qemu_domain_def_find_disk(job->def, d->target);
    if (g_file_test(disk->src, G_FILE_TEST_EXISTS)) {
        dst_create_next(job);
        return;
    }
    if (disk->type == QEMU_DOMAIN_DISK_TYPE_BLOCK) {
        dst_fail(job, ho_error_new(HO_ERR_OPERATION_INVALID,
                                   _("the block device '%1$s' of disk '%2$s' does not exist on "
                                     "the destination"),
                                   disk->src, d->target));
        return;
    }
    if (job->args.copy_storage_inc && d->backing &&
        !g_file_test(d->backing, G_FILE_TEST_EXISTS)) {
        dst_fail(job, ho_error_new(HO_ERR_OPERATION_INVALID,
                                   _("the backing file '%1$s' of disk '%2$s' is missing on the "
                                     "destination: '--copy-storage-inc' copies only the top "
                                     "image"),
                                   d->backing, d->target));
        return;
    }
    argv = g_ptr_array_new_with_free_func(g_free);
    g_ptr_array_add(argv, dst_qemu_img(job));
    g_ptr_array_add(argv, g_strdup("create"));
    g_ptr_array_add(argv, g_strdup("-q"));
    g_ptr_array_add(argv, g_strdup("-f"));
    g_ptr_array_add(argv, g_strdup(d->format));
    if (job->args.copy_storage_inc && d->backing) {
        g_ptr_array_add(argv, g_strdup("-b"));
        g_ptr_array_add(argv, g_strdup(d->backing));
        if (d->backing_format) {
            g_ptr_array_add(argv, g_strdup("-F"));
            g_ptr_array_add(argv, g_strdup(d->backing_format));
        }
    }
    g_ptr_array_add(argv, g_strdup(disk->src));
    g_ptr_array_add(argv, g_strdup_printf("%" G_GUINT64_FORMAT, d->size));
    g_ptr_array_add(argv, NULL);
    proc = g_subprocess_newv((const char *const *)argv->pdata,
                             G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_MERGE,
                             &gerr);
    if (!proc) {
        dst_fail(job, ho_error_new(HO_ERR_SYSTEM,
                                   _("cannot create the image '%1$s' for the migration: %2$s"),
                                   disk->src, gerr->message));
        return;
    }
    HO_INFO("domain '%s': creating the image '%s' (%s, %" G_GUINT64_FORMAT " bytes)", job->name,
            disk->src, d->format, d->size);
    c = g_new0(CreateCall, 1);
    c->job = job_ref(job);
    c->path = g_strdup(disk->src);
    /* The completion runs on the job's context, not the thread's default. */
    g_main_context_push_thread_default(job->mig->ctx);
    g_subprocess_communicate_utf8_async(proc, NULL, NULL, dst_create_done, c);
    g_main_context_pop_thread_default(job->mig->ctx);
}

static void
dst_caps_ready(QemuDriver *drv, const QemuCaps *caps, const HoError *err, void *opaque)
{
    g_autoptr(Job) job = opaque;
    g_autofree char *version = NULL;
    const char *flag = NULL;

    if (!job_live(job))
        return;
    if (err) {
        dst_fail(job, ho_error_copy(err));
        return;
    }
    if (job->unwinding)
        return;
    version = caps_version_string(caps);
    if (!qemu_caps_has(caps, QEMU_CAPS_EVENTS_CAP))
        flag = "events";
    else if (job->args.auto_converge && !qemu_caps_has(caps, QEMU_CAPS_AUTO_CONVERGE))
        flag = "--auto-converge";
    else if (job->args.parallel && !qemu_caps_has(caps, QEMU_CAPS_MULTIFD))
        flag = "--parallel";
    else if (job->args.postcopy && !qemu_caps_has(caps, QEMU_CAPS_POSTCOPY_RAM))
        flag = "--postcopy";
    else if (job->disks && (!qemu_caps_has(caps, QEMU_CAPS_BLOCK_EXPORT_ADD) ||
                            !qemu_caps_has_command(caps, "nbd-server-start")))
        flag = job->args.copy_storage_inc ? "--copy-storage-inc" : "--copy-storage-all";
    if (flag) {
        dst_fail(job, ho_error_new(HO_ERR_NO_SUPPORT,
                                   _("the destination's QEMU %1$s cannot honour '%2$s'"),
                                   version, flag));
        return;
    }
    if (job_set_phase(job, QEMU_MIGRATION_PHASE_PREPARE) < 0) {
        dst_fail_take(job);
        return;
    }
    if (job->disks) {
        job->created = g_ptr_array_new_with_free_func(g_free);
        job->create_next = 0;
        dst_create_next(job);
        return;
    }
    dst_start_qemu(job);
}

/* Where the destination records when the source asked for a recording. */
static char *
dst_record_path(QemuMigration *mig, const char *name, json_object *cookie)
{
    json_object *rec = NULL;
    const char *src_path = NULL;
    g_autofree char *dir = NULL;

    if (ho_json_opt_object(cookie, "record", &rec) <= 0 || !rec ||
        ho_json_opt_string(rec, "path", &src_path) < 0) {
        ho_error_reset();
        return NULL;
    }
    if (mig->record_dir) {
        g_autofree char *stamp = record_stamp();
        g_autofree char *file = g_strdup_printf("%s-%s-dst.jsonl", name, stamp);

        return g_build_filename(mig->record_dir, file, NULL);
    }
    if (!src_path)
        return NULL;
    /* Next to the source's, when that directory exists here too (both
     * daemons on one machine: one clock, two files side by side). */
    dir = g_path_get_dirname(src_path);
    if (!g_file_test(dir, G_FILE_TEST_IS_DIR))
        return NULL;
    if (g_str_has_suffix(src_path, ".jsonl"))
        return g_strdup_printf("%.*s-dst.jsonl", (int)(strlen(src_path) - strlen(".jsonl")),
                               src_path);
    return g_strdup_printf("%s.dst", src_path);
}

/* The disks to copy from the cookie, each matched to a disk of the
 * definition this host starts; -1 and an error. */
static int
dst_parse_disks(Job *job, json_object *cookie)
{
    json_object *arr = NULL;
    size_t n;

    if (ho_json_get_array(cookie, "storage_disks", &arr) < 0)
        return -1;
    n = json_object_array_length(arr);
    if (n > MAX_STORAGE_DISKS) {
        ho_error_report(HO_ERR_INVALID_ARG, "%s", _("too many disks to copy"));
        return -1;
    }
    job->disks = g_ptr_array_new_with_free_func((GDestroyNotify)storage_disk_free);
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(arr, i);
        const char *target = NULL, *node = NULL, *format = NULL, *backing = NULL, *bfmt = NULL;
        const QemuDomainDiskDef *disk;
        uint64_t size = 0;
        StorageDisk *d;

        if (ho_json_get_string(e, "target", &target) < 0 ||
            ho_json_get_string(e, "node", &node) < 0 ||
            ho_json_get_string(e, "format", &format) < 0 ||
            ho_json_get_uint64(e, "size", &size) < 0 ||
            ho_json_opt_string(e, "backing", &backing) < 0 ||
            ho_json_opt_string(e, "backing_format", &bfmt) < 0)
            return -1;
        if (!(disk = qemu_domain_def_find_disk(job->def, target))) {
            ho_error_report(HO_ERR_INVALID_ARG,
                            _("the destination definition of domain '%1$s' has no disk '%2$s' "
                              "to copy into"),
                            job->name, target);
            return -1;
        }
        if (!g_str_equal(format, qemu_domain_disk_format_to_string(disk->format))) {
            ho_error_report(HO_ERR_INVALID_ARG,
                            _("disk '%1$s' is %2$s on the source but %3$s in the destination "
                              "definition"),
                            target, format, qemu_domain_disk_format_to_string(disk->format));
            return -1;
        }
        d = g_new0(StorageDisk, 1);
        d->target = g_strdup(target);
        d->node = qemu_domain_disk_node_name(disk);
        d->format = g_strdup(format);
        d->size = size;
        d->backing = g_strdup(backing);
        d->backing_format = g_strdup(bfmt);
        g_ptr_array_add(job->disks, d);
    }
    return 0;
}

void
qemu_migration_dst_prepare(QemuMigration *mig, json_object *cookie, QemuMigrationReplyFunc cb,
                           void *opaque)
{
    g_autoptr(Job) job = NULL;
    g_autoptr(QemuDomainDef) def = NULL;
    QemuMigrationArgs args = {0};
    const char *name, *uuid, *xml, *machine, *host_uuid;
    const char *hostname = NULL;
    json_object *args_obj;
    int64_t stream_buffer = 0;
    char def_uuid[37];
    const char *target;

    if (!cookie || ho_json_get_string(cookie, "name", &name) < 0 ||
        ho_json_get_string(cookie, "uuid", &uuid) < 0 ||
        ho_json_get_string(cookie, "xml", &xml) < 0 ||
        ho_json_get_string(cookie, "machine", &machine) < 0 ||
        ho_json_get_string(cookie, "host_uuid", &host_uuid) < 0 ||
        ho_json_opt_string(cookie, "hostname", &hostname) < 0 ||
        ho_json_get_object(cookie, "args", &args_obj) < 0 ||
        qemu_migration_args_from_json(args_obj, &args) < 0)
        goto refuse;
    if (mig->host_uuid && g_str_equal(host_uuid, mig->host_uuid)) {
        ho_error_report(HO_ERR_OPERATION_INVALID,
                        _("cannot migrate domain '%1$s' to the host it runs on (host UUID %2$s)"),
                        name, host_uuid);
        goto refuse;
    }
    target = args.dname ? args.dname : name;
    if (!name_is_valid(target)) {
        ho_error_report(HO_ERR_INVALID_ARG, _("invalid destination name '%1$s'"), target);
        goto refuse;
    }
    if (mig_find_job(mig, uuid)) {
        ho_error_report(HO_ERR_OPERATION_INVALID,
                        _("domain '%1$s' is already in a migration job on this host"), target);
        goto refuse;
    }
    if (!(def = qemu_domain_def_parse_string(args.dxml ? args.dxml : xml,
                                             args.dxml ? "--xml" : "migration cookie")))
        goto refuse;
    qemu_domain_uuid_format(def->uuid, def_uuid);
    if (!g_str_equal(def_uuid, uuid)) {
        ho_error_report(HO_ERR_INVALID_ARG,
                        _("the domain XML has UUID '%1$s', but the migrated domain has '%2$s'"),
                        def_uuid, uuid);
        goto refuse;
    }
    job = job_new(mig, false, target, uuid);
    /* This host's emulator: the one a --xml names, else the default;
     * never the source's path. The machine is the source's concrete one. */
    if (args.dxml)
        job->emulator = g_strdup(def->emulator);
    g_clear_pointer(&def->emulator, g_free);
    g_free(def->name);
    def->name = g_strdup(target);
    g_free(def->machine);
    def->machine = g_strdup(machine);
    job->def = g_steal_pointer(&def);
    job->args = args;
    memset(&args, 0, sizeof(args));
    job->peer_host_uuid = g_strdup(host_uuid);
    job->peer_hostname = g_strdup(hostname);
    if (ho_json_opt_int64(cookie, "stream_buffer", &stream_buffer) < 0) {
        g_clear_pointer(&job, job_unref);
        goto refuse;
    }
    job->stream_buffer = stream_buffer_from_peer(stream_buffer);
    if (storage_copy(&job->args) && dst_parse_disks(job, cookie) < 0) {
        g_clear_pointer(&job, job_unref);
        goto refuse;
    }
    job->reply_cb = cb;
    job->reply_opaque = opaque;
    job->reply_kind = REPLY_PREPARE;
    job->record_path = dst_record_path(mig, target, cookie);
    g_hash_table_insert(mig->jobs, g_strdup(job->uuid), job_ref(job));
    HO_INFO("domain '%s': preparing an incoming migration from %s", job->name,
            hostname ? hostname : host_uuid);
    qemu_driver_get_caps(mig->drv, job->emulator, dst_caps_ready, job_ref(job));
    return;

 refuse:
    qemu_migration_args_clear(&args);
    reply_later(mig, cb, opaque, NULL, ho_error_steal());
}

static gboolean
dst_finish_timeout(gpointer opaque)
{
    Job *job = opaque;

    g_clear_pointer(&job->bound_src, g_source_unref);
    if (job_live(job) && job->finish_waiting)
        dst_fail(job, ho_error_new(HO_ERR_TIMEOUT,
                                   _("the incoming migration of domain '%1$s' did not complete "
                                     "within %2$u seconds of the source's"),
                                   job->name, (unsigned int)INCOMING_WAIT_S));
    return G_SOURCE_REMOVE;
}

void
qemu_migration_dst_finish(QemuMigration *mig, json_object *args, QemuMigrationReplyFunc cb,
                          void *opaque)
{
    const char *uuid = NULL;
    bool success = false;
    Job *job;
    g_autoptr(Job) hold = NULL;

    if (!args || ho_json_get_string(args, "uuid", &uuid) < 0 ||
        ho_json_get_bool(args, "success", &success) < 0) {
        reply_later(mig, cb, opaque, NULL, ho_error_steal());
        return;
    }
    job = mig_find_job(mig, uuid);
    if (!job || job->src || !job_live(job)) {
        QemuDomainObj *dom = qemu_driver_lookup(mig->drv, uuid);
        json_object *obj = json_object_new_object();

        ho_error_reset();
        if (dom && qemu_domain_obj_state(dom) == QEMU_DOMAIN_STATE_RUNNING && success) {
            ho_json_add_string(obj, "state", "running");
        } else if (success && dom && qemu_domain_obj_is_active(dom)) {
            /* A QEMU of that domain exists here but no job knows it (kept
             * paused after the source was lost, say): the source must not
             * resume on our word. */
            json_object_put(obj);
            reply_later(mig, cb, opaque, NULL,
                        ho_error_new(HO_ERR_OPERATION_INVALID,
                                     _("domain '%1$s' is here but not running and has no "
                                       "incoming migration; whether it ran is unknown"),
                                     qemu_domain_obj_name(dom)));
            return;
        } else if (success) {
            g_autoptr(HoError) e = ho_error_new(HO_ERR_OPERATION_INVALID,
                                                _("no incoming migration of domain '%1$s' here"),
                                                uuid);

            ho_json_add_string(obj, "state", "shutoff");
            error_to_json(obj, e);
        }
        reply_later(mig, cb, opaque, obj, NULL);
        return;
    }
    hold = job_ref(job);
    if (job->reply_cb) {
        reply_later(mig, cb, opaque, NULL,
                    ho_error_new(HO_ERR_OPERATION_INVALID,
                                 _("the incoming migration of domain '%1$s' is busy"), job->name));
        return;
    }
    if (!success && job->postcopy_started) {
        /* The guest runs here: nothing to unwind (DESIGN.md §2 invariant 4). */
        reply_later(mig, cb, opaque, NULL,
                    ho_error_new(HO_ERR_OPERATION_INVALID,
                                 _("domain '%1$s' runs here in postcopy: the migration cannot be "
                                   "abandoned"),
                                 job->name));
        return;
    }
    job->reply_cb = cb;
    job->reply_opaque = opaque;
    if (!success) {
        json_object *e = NULL;
        const char *msg = NULL;

        job->reply_kind = REPLY_FINISH_ABORT;
        if (ho_json_opt_object(args, "error", &e) > 0 && e)
            (void)ho_json_opt_string(e, "message", &msg);
        ho_error_reset();
        dst_fail(job, msg ? ho_error_new(HO_ERR_OPERATION_INVALID,
                                         _("the source abandoned the migration of domain "
                                           "'%1$s': %2$s"),
                                         job->name, msg)
                          : ho_error_new(HO_ERR_OPERATION_INVALID,
                                         _("the source abandoned the migration of domain '%1$s'"),
                                         job->name));
        return;
    }
    job->reply_kind = REPLY_FINISH;
    if (job->phase != QEMU_MIGRATION_PHASE_PERFORM &&
        !(job->postcopy_started && job->phase == QEMU_MIGRATION_PHASE_POSTCOPY)) {
        dst_fail(job, ho_error_new(HO_ERR_OPERATION_INVALID,
                                   _("the incoming migration of domain '%1$s' cannot finish in "
                                     "phase '%2$s'"),
                                   job->name, qemu_migration_phase_to_string(job->phase)));
        return;
    }
    if (job_set_phase(job, QEMU_MIGRATION_PHASE_FINISH) < 0) {
        dst_fail_take(job);
        return;
    }
    /* The guest is still paused; the boost comes once cont is written. */
    if (!job->postcopy_started)
        job_boost_soon(job);
    if (job->incoming_completed) {
        dst_run(job);
        return;
    }
    /* The source's completed came first; ours follows within milliseconds. */
    job->finish_waiting = true;
    job->bound_src = job_timeout(job, INCOMING_WAIT_S * 1000, dst_finish_timeout);
}

void
qemu_migration_dst_peer_lost(QemuMigration *mig, const char *uuid)
{
    Job *job = mig_find_job(mig, uuid);
    g_autoptr(Job) hold = NULL;

    if (!job || job->src || !job_live(job))
        return;
    hold = job_ref(job);
    if (postcopy_peer_lost(job))
        return;
    if (job->phase >= QEMU_MIGRATION_PHASE_FINISH)
        return; /* the source asked us to run: we do */
    if (job->incoming_completed) {
        job_keep_error(job, ho_error_new(HO_ERR_RPC,
            _("the source daemon went away after the incoming migration of domain '%1$s' "
              "completed: the domain stays paused here; whether the source still runs it is "
              "unknown"),
            job->name));
        dst_reply_failure(job);
        job_end(job, QEMU_MIGRATION_PHASE_FAILED);
        return;
    }
    dst_fail(job, ho_error_new(HO_ERR_RPC,
                               _("the source daemon went away during the incoming migration of "
                                 "domain '%1$s'"),
                               job->name));
}

/* ---- both ---------------------------------------------------------------------- */

static int cpr_abort(Job *job);
static bool cpr_src_completed(Job *job);

int
qemu_migration_any_abort(QemuMigration *mig, QemuDomainObj *dom)
{
    Job *job = mig_find_job(mig, qemu_domain_obj_uuid(dom));
    g_autoptr(Job) hold = NULL;

    if (!job || !job_live(job)) {
        ho_error_report(HO_ERR_OPERATION_INVALID, _("domain '%1$s' has no migration job"),
                        qemu_domain_obj_name(dom));
        return -1;
    }
    hold = job_ref(job);
    if (job->postcopy_started) {
        ho_error_report(HO_ERR_OPERATION_INVALID,
                        _("the migration of domain '%1$s' is in postcopy (phase '%2$s'): the guest "
                          "already runs on the destination and cannot go back to the source; use "
                          "--postcopy to pause the migration instead"),
                        job->name, qemu_migration_phase_to_string(job->phase));
        return -1;
    }
    if (!job->src ? job->phase >= QEMU_MIGRATION_PHASE_FINISH
                  : (job->phase >= QEMU_MIGRATION_PHASE_SWITCHOVER || job->finish_sent ||
                     (job->cpr && cpr_src_completed(job)))) {
        ho_error_report(HO_ERR_OPERATION_INVALID,
                        _("the migration of domain '%1$s' is past the point where it can be "
                          "aborted (phase '%2$s')"),
                        job->name, qemu_migration_phase_to_string(job->phase));
        return -1;
    }
    if (job->unwinding) {
        ho_error_report(HO_ERR_OPERATION_INVALID,
                        _("the migration of domain '%1$s' is already being cancelled"), job->name);
        return -1;
    }
    HO_INFO("domain '%s': abort requested in phase %s", job->name,
            qemu_migration_phase_to_string(job->phase));
    job->cancelled = true;
    job_keep_error(job, ho_error_new(HO_ERR_OPERATION_INVALID,
                                     _("migration of domain '%1$s' was cancelled"), job->name));
    if (job->cpr)
        return cpr_abort(job);
    if (!job->src) {
        dst_unwind(job);
        return 0;
    }
    if (job->phase == QEMU_MIGRATION_PHASE_BEGIN || job->prepare_pending) {
        job->unwinding = true; /* src_start or the Prepare answer continues */
        return 0;
    }
    src_unwind(job);
    return 0;
}

bool
qemu_migration_any_has_job(QemuMigration *mig, QemuDomainObj *dom)
{
    Job *job = mig_find_job(mig, qemu_domain_obj_uuid(dom));

    return job && job_live(job);
}

typedef struct {
    QemuMigrationInfoFunc cb;
    void *opaque;
    json_object *info;
    HoError *err;
    Job *job;
} InfoCall;

static void
info_call_free(gpointer opaque)
{
    InfoCall *c = opaque;

    json_object_put(c->info);
    ho_error_free(c->err);
    job_unref(c->job);
    g_free(c);
}

static gboolean
info_later_run(gpointer opaque)
{
    InfoCall *c = opaque;

    c->cb(c->info, c->err, c->opaque);
    return G_SOURCE_REMOVE;
}

static void
info_later(QemuMigration *mig, InfoCall *c)
{
    GSource *src = g_idle_source_new();

    g_source_set_callback(src, info_later_run, c, info_call_free);
    g_source_attach(src, mig->ctx);
    g_source_unref(src);
}

static void
info_query_done(QemuMonitor *mon, const QemuMigrationInfo *qi, const HoError *err,
                void *opaque)
{
    InfoCall *c = opaque;

    c->info = job_info_base(c->job);
    if (!err)
        info_add_qemu(c->info, qi);
    info_add_storage(c->info, c->job);
    info_add_warnings(c->info, c->job);
    c->cb(c->info, NULL, c->opaque);
    info_call_free(c);
}

void
qemu_migration_any_job_info(QemuMigration *mig, QemuDomainObj *dom, bool completed,
                            QemuMigrationInfoFunc cb, void *opaque)
{
    InfoCall *c = g_new0(InfoCall, 1);
    Job *job = mig_find_job(mig, qemu_domain_obj_uuid(dom));
    QemuMonitor *mon;

    c->cb = cb;
    c->opaque = opaque;
    if (completed) {
        json_object *info = g_hash_table_lookup(mig->completed, qemu_domain_obj_uuid(dom));

        if (info)
            c->info = json_object_get(info);
        else
            c->err = ho_error_new(HO_ERR_OPERATION_INVALID,
                                  _("domain '%1$s' has no completed migration job"),
                                  qemu_domain_obj_name(dom));
        info_later(mig, c);
        return;
    }
    if (!job || !job_live(job)) {
        c->err = ho_error_new(HO_ERR_OPERATION_INVALID, _("domain '%1$s' has no migration job"),
                              qemu_domain_obj_name(dom));
        info_later(mig, c);
        return;
    }
    c->job = job_ref(job);
    mon = job->dom ? qemu_domain_obj_monitor(job->dom) : NULL;
    if (job->src && job->migrate_sent && mon) {
        qemu_monitor_json_query_migrate(mon, info_query_done, c);
        return;
    }
    c->info = job_info_base(job);
    info_add_storage(c->info, job);
    info_add_warnings(c->info, job);
    info_later(mig, c);
}

/* ---- recovery after a daemon restart ------------------------------------------ */

static void
recover_dst_migrate_done(QemuMonitor *mon, const QemuMigrationInfo *qi, const HoError *err,
                         void *opaque)
{
    g_autoptr(Job) job = opaque;

    if (!job_live(job))
        return;
    if (!err && qi->status == QEMU_MIGRATION_STATUS_COMPLETED) {
        job_keep_error(job, ho_error_new(HO_ERR_OPERATION_INVALID,
            _("the daemon restarted after the incoming migration of domain '%1$s' completed: "
              "the domain stays paused here; whether the source still runs it is unknown"),
            job->name));
        job_end(job, QEMU_MIGRATION_PHASE_FAILED);
        return;
    }
    job_keep_error(job, ho_error_new(HO_ERR_OPERATION_INVALID,
                                     _("the daemon restarted during the incoming migration of "
                                       "domain '%1$s'"),
                                     job->name));
    dst_unwind(job);
}

static void
recover_dst_status_done(QemuMonitor *mon, const QemuMonitorStatus *st, const HoError *err,
                        void *opaque)
{
    g_autoptr(Job) job = opaque;

    if (!job_live(job))
        return;
    if (!err && st->running) {
        /* cont was sent before the restart: it finished. */
        job->phase = QEMU_MIGRATION_PHASE_FINISH;
        dst_finished(job, true);
        return;
    }
    qemu_monitor_json_query_migrate(mon, recover_dst_migrate_done, job_ref(job));
}

static void
recover_src_migrate_done(QemuMonitor *mon, const QemuMigrationInfo *qi, const HoError *err,
                         void *opaque)
{
    g_autoptr(Job) job = opaque;

    if (!job_live(job))
        return;
    if (!err && qi->status == QEMU_MIGRATION_STATUS_COMPLETED) {
        job_keep_error(job, ho_error_new(HO_ERR_OPERATION_INVALID,
            _("the daemon restarted after the migration of domain '%1$s' completed on the "
              "source: the domain stays paused here; check the destination before resuming it"),
            job->name));
        job_end(job, QEMU_MIGRATION_PHASE_FAILED);
        return;
    }
    job->qstatus = err ? QEMU_MIGRATION_STATUS_NONE : qi->status;
    job->migrate_sent = !qstatus_is_final(job->qstatus);
    src_unwind(job);
}

/* The storage copy part of a job record: the source's disks (their
 * mirrors and NBD client nodes have stable names), the destination's
 * created images. */
static void
recover_storage(Job *job, json_object *rec)
{
    json_object *arr = NULL;

    if (ho_json_opt_array(rec, "storage_disks", &arr) > 0 && job->src) {
        job->disks = g_ptr_array_new_with_free_func((GDestroyNotify)storage_disk_free);
        job->mirrors = qemu_block_job_set_new(job->mon, src_mirror_changed, job);
        for (size_t i = 0; i < json_object_array_length(arr) && i < MAX_STORAGE_DISKS; i++) {
            json_object *e = json_object_array_get_idx(arr, i);
            StorageDisk *d;
            g_autofree char *id = NULL;
            g_autofree char *node = NULL;

            if (!json_object_is_type(e, json_type_string))
                continue;
            d = g_new0(StorageDisk, 1);
            d->target = g_strdup(json_object_get_string(e));
            d->node_added = true; /* maybe: deleting a missing node only warns */
            id = storage_job_id(d);
            node = storage_client_node(d);
            g_ptr_array_add(job->disks, d);
            qemu_block_job_set_adopt(job->mirrors, id, NULL, node);
        }
    }
    arr = NULL;
    if (ho_json_opt_array(rec, "created_images", &arr) > 0 && !job->src) {
        job->created = g_ptr_array_new_with_free_func(g_free);
        for (size_t i = 0; i < json_object_array_length(arr); i++) {
            json_object *e = json_object_array_get_idx(arr, i);

            if (json_object_is_type(e, json_type_string))
                g_ptr_array_add(job->created, g_strdup(json_object_get_string(e)));
        }
    }
    ho_error_reset();
}

static bool postcopy_recover_job(Job *job);

void
qemu_migration_any_recover_domain(QemuMigration *mig, QemuDomainObj *dom)
{
    json_object *rec = qemu_domain_obj_get_job(dom);
    g_autoptr(Job) job = NULL;
    json_object *args_obj = NULL;
    const char *side = NULL, *phase_s = NULL;
    bool was_running = false, dst_ran = false;
    QemuMigrationPhase phase;
    QemuMonitor *mon;

    if (!rec || mig_find_job(mig, qemu_domain_obj_uuid(dom)) || !qemu_domain_obj_is_active(dom) ||
        qemu_domain_obj_is_reconnecting(dom))
        return;
    mon = qemu_domain_obj_monitor(dom);
    job = job_new(mig, false, qemu_domain_obj_name(dom), qemu_domain_obj_uuid(dom));
    if (ho_json_get_string(rec, "side", &side) < 0 ||
        ho_json_get_string(rec, "phase", &phase_s) < 0 ||
        ho_json_opt_object(rec, "args", &args_obj) < 0 ||
        (args_obj && qemu_migration_args_from_json(args_obj, &job->args) < 0) ||
        ho_json_opt_bool(rec, "was_running", &was_running) < 0 ||
        ho_json_opt_bool(rec, "destination_ran", &dst_ran) < 0) {
        HO_WARN("domain '%s': unreadable migration job record: %s", job->name,
                ho_error_last_message());
        ho_error_reset();
        side = "src";
        phase_s = "perform";
    }
    phase = qemu_migration_phase_from_string(phase_s);
    if (phase == QEMU_MIGRATION_PHASE_LAST || qemu_migration_phase_is_terminal(phase))
        phase = QEMU_MIGRATION_PHASE_PERFORM;
    job->src = g_str_equal(side, "src");
    job->phase = phase;
    job->was_running = was_running;
    job->dst_ran = dst_ran;
    job->dom = qemu_domain_obj_ref(dom);
    job->peer_gone = true; /* the connection did not survive the restart */
    job_unboost_recovered(job);
    job->reply_kind = REPLY_FINISH_ABORT;
    g_hash_table_insert(mig->jobs, g_strdup(job->uuid), job_ref(job));
    HO_INFO("domain '%s': recovering a %s migration job in phase %s", job->name, side,
            qemu_migration_phase_to_string(phase));
    if (!mon) {
        job_keep_error(job, ho_error_new(HO_ERR_OPERATION_INVALID,
                                         _("the daemon restarted during the migration of domain "
                                           "'%1$s' and its monitor is not available: left as it "
                                           "is"),
                                         job->name));
        job_end(job, QEMU_MIGRATION_PHASE_FAILED);
        return;
    }
    job->mon = qemu_monitor_ref(mon);
    if (cpr_recover_job(job, rec))
        return;
    recover_storage(job, rec);
    if (postcopy_recover_job(job))
        return;
    if (!job->src) {
        job->exit_watch = qemu_domain_obj_add_exit_watch(dom, dst_qemu_exited, job);
        qemu_monitor_json_query_status(mon, recover_dst_status_done, job_ref(job));
        return;
    }
    job->exit_watch = qemu_domain_obj_add_exit_watch(dom, src_qemu_exited, job);
    job->mig_sub = qemu_monitor_subscribe(mon, "MIGRATION", src_migration_event, job);
    if (phase == QEMU_MIGRATION_PHASE_CONFIRM && dst_ran) {
        /* The destination runs the guest: finish the source's part. */
        src_confirm_quit(job);
        return;
    }
    job_keep_error(job, ho_error_new(HO_ERR_OPERATION_INVALID,
                                     _("the daemon restarted during the migration of domain "
                                       "'%1$s'"),
                                     job->name));
    if (phase < QEMU_MIGRATION_PHASE_PERFORM) {
        src_unwind(job);
        return;
    }
    qemu_monitor_json_query_migrate(mon, recover_src_migrate_done, job_ref(job));
}

void
qemu_migration_any_recover(QemuMigration *mig)
{
    g_autoptr(GPtrArray) doms = qemu_driver_list(mig->drv);

    for (guint i = 0; i < doms->len; i++)
        qemu_migration_any_recover_domain(mig, g_ptr_array_index(doms, i));
}

static void
json_put(gpointer obj)
{
    json_object_put(obj);
}

/* ---- the orchestrator object ------------------------------------------------------ */

QemuMigration *
qemu_migration_new(QemuDriver *drv, const QemuMigrationConfig *cfg,
                   QemuMigrationEventFunc event_cb, void *opaque)
{
    QemuMigration *mig = g_new0(QemuMigration, 1);

    mig->drv = drv;
    mig->ctx = g_main_context_ref(qemu_driver_context(drv));
    mig->host_uuid = g_strdup(cfg ? cfg->host_uuid : NULL);
    mig->hostname = g_strdup(cfg ? cfg->hostname : NULL);
    mig->migration_address = g_strdup(cfg ? cfg->migration_address : NULL);
    mig->record_dir = g_strdup(cfg ? cfg->record_dir : NULL);
    mig->port_min = cfg && cfg->migration_port_min > 0 ? cfg->migration_port_min
                                                       : DEFAULT_PORT_MIN;
    mig->port_max = cfg && cfg->migration_port_max >= mig->port_min ? cfg->migration_port_max
                                                                    : MAX(mig->port_min,
                                                                          DEFAULT_PORT_MAX);
    mig->progress_interval_ms = cfg && cfg->progress_interval_ms ? cfg->progress_interval_ms
                                                                 : DEFAULT_PROGRESS_MS;
    mig->nbd_port_min = cfg && cfg->nbd_port_min > 0 ? cfg->nbd_port_min : DEFAULT_NBD_PORT_MIN;
    mig->nbd_port_max = cfg && cfg->nbd_port_max >= mig->nbd_port_min
                            ? cfg->nbd_port_max
                            : MAX(mig->nbd_port_min, DEFAULT_NBD_PORT_MAX);
    mig->mirror_stall_s = cfg && cfg->mirror_stall_s ? cfg->mirror_stall_s
                                                     : DEFAULT_MIRROR_STALL_S;
    mig->qemu_img = g_strdup(cfg ? cfg->qemu_img : NULL);
    mig->postcopy_stall_s = cfg && cfg->postcopy_stall_s ? cfg->postcopy_stall_s
                                                         : DEFAULT_POSTCOPY_STALL_S;
    mig->switchover_boost = cfg ? cfg->switchover_boost : 0;
    mig->downtime_start_ms = cfg ? cfg->downtime_start_ms : 0;
    mig->mirror_buf_size = cfg ? cfg->mirror_buf_size : 0;
    mig->stream_buffer = cfg ? cfg->stream_buffer : 0;
    mig->event_cb = event_cb;
    mig->opaque = opaque;
    mig->jobs = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                      (GDestroyNotify)job_unref);
    mig->completed = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, json_put);
    g_queue_init(&mig->events);
    return mig;
}

void
qemu_migration_free(QemuMigration *mig)
{
    GHashTableIter iter;
    gpointer value;

    if (!mig)
        return;
    g_hash_table_iter_init(&iter, mig->jobs);
    while (g_hash_table_iter_next(&iter, NULL, &value)) {
        Job *job = value;

        job_detach(job);
        job->mig = NULL;
        job->done_cb = NULL;
        /* A pending destination answer is never given: its caller is the
         * peer connection, which goes with the daemon. */
        job->reply_cb = NULL;
    }
    g_hash_table_unref(mig->jobs);
    g_hash_table_unref(mig->completed);
    clear_source(&mig->events_source);
    g_queue_clear_full(&mig->events, (GDestroyNotify)pending_event_free);
    g_main_context_unref(mig->ctx);
    g_free(mig->host_uuid);
    g_free(mig->hostname);
    g_free(mig->migration_address);
    g_free(mig->record_dir);
    g_free(mig->qemu_img);
    g_free(mig);
}

/* ==== Postcopy and its recovery (issue 6; helper P1's section) ========== */

/* From postcopy-active on (DESIGN.md §2 invariant 4) the destination runs
 * the guest and the source only holds the RAM still to send: the source
 * is never resumed again, a broken stream leaves both QEMUs in
 * postcopy-paused and the job alive there (persisted, no timeout ends
 * it) until a recovery or an explicit destroy. The destination resumes
 * itself at its own postcopy-active (no daemon hop): its QEMU reaches
 * that state only after the source's QEMU stopped the guest. */

#define POSTCOPY_TICK_MIN_MS 500

static bool
job_postcopy_phase(const Job *job)
{
    return job->phase == QEMU_MIGRATION_PHASE_POSTCOPY ||
           job->phase == QEMU_MIGRATION_PHASE_POSTCOPY_PAUSED ||
           job->phase == QEMU_MIGRATION_PHASE_POSTCOPY_RECOVER;
}

/* Move to phase unless already there; errors are logged (the phases of
 * postcopy follow QEMU, which has already moved). */
static void
postcopy_set_phase(Job *job, QemuMigrationPhase phase)
{
    if (job->phase == phase)
        return;
    if (job_set_phase(job, phase) < 0) {
        HO_ERROR("domain '%s': %s", job->name, ho_error_last_message());
        ho_error_reset();
    }
}

/* The pending recovery attempt ended (err NULL: the migration completed). */
static void
src_resume_reply(Job *job, const HoError *err)
{
    QemuMigrationDoneFunc cb = job->resume_cb;
    void *opaque = job->resume_opaque;

    job->resume_cb = NULL;
    job->resume_opaque = NULL;
    clear_source(&job->recover_src);
    if (cb && job->mig)
        cb(job->mig, job->uuid, err, NULL, opaque);
}

static void
postcopy_job_ended(Job *job, QemuMigrationPhase phase, json_object *info)
{
    QemuMigrationDoneFunc cb = job->resume_cb;
    void *opaque = job->resume_opaque;

    job->resume_cb = NULL;
    job->resume_opaque = NULL;
    if (cb)
        cb(job->mig, job->uuid, phase == QEMU_MIGRATION_PHASE_COMPLETED ? NULL : job->err, info,
           opaque);
}

/* Say that the job is paused and recoverable: the "postcopy-paused" event. */
static void
postcopy_emit_paused(Job *job)
{
    json_object *data = json_object_new_object();
    g_autofree char *msg = g_strdup_printf(
        _("postcopy migration of domain '%1$s' is paused: recoverable with "
          "'handover migrate --postcopy-resume %2$s DEST-URI'"),
        job->name, job->name);

    /* Paused: a destination's pending grace-period pause is moot. */
    if (!job->src)
        clear_source(&job->stall_src);
    HO_WARN("%s", msg);
    ho_json_add_string(data, "side", job_side(job));
    ho_json_add_bool(data, "recoverable", true);
    ho_json_add_string(data, "message", msg);
    job_emit(job, "postcopy-paused", data);
}

/* Source in postcopy with nothing left to recover (its QEMU failed the
 * migration or is gone): the guest is lost; the source stays as it is. */
static void
src_postcopy_lost(Job *job)
{
    HoError *lost;

    lost = ho_error_new(HO_ERR_OPERATION_INVALID,
                        _("postcopy migration of domain '%1$s' cannot go on (%2$s): the guest "
                          "that ran on the destination is lost; the source keeps its stale copy "
                          "paused for inspection and is never resumed"),
                        job->name, job->err ? job->err->message : _("unknown error"));
    ho_error_free(job->err);
    job->err = lost;
    job->unwinding = true;
    job_end(job, QEMU_MIGRATION_PHASE_FAILED);
}

static void
postcopy_pause_done(QemuMonitor *mon, const HoError *err, void *opaque)
{
    g_autoptr(Job) job = opaque;

    if (!job_live(job) || !err)
        return;
    /* QEMU may have paused by itself in the meantime: its event says so. */
    HO_WARN("domain '%s': migrate-pause failed: %s", job->name, err->message);
    job->pause_sent = false;
}

/* The destination's answer to a pause: {} (paused, or pausing), or
 * {"state": "lost", "error"} when its QEMU died or failed in postcopy.
 * Then nothing can be recovered: the job ends, the source stays paused. */
static void
postcopy_peer_pause_done(json_object *result, const HoError *err, void *opaque)
{
    g_autoptr(Job) job = opaque;
    const char *state = NULL;
    json_object *e = NULL;
    const char *msg = NULL;

    if (err) {
        HO_WARN("domain '%s': the destination could not pause its postcopy migration: %s",
                job->name, err->message);
        return;
    }
    if (ho_json_opt_string(result, "state", &state) <= 0 || !g_str_equal(state, "lost")) {
        ho_error_reset();
        return;
    }
    if (ho_json_opt_object(result, "error", &e) > 0 && e &&
        ho_json_opt_string(e, "message", &msg) <= 0)
        msg = NULL;
    ho_error_reset();
    if (!job_live(job) || !job->postcopy_started)
        return;
    job_keep_error(job, ho_error_new(HO_ERR_OPERATION_INVALID, "%s",
                                     msg ? msg : _("the destination QEMU is gone")));
    src_postcopy_lost(job);
}

/* The source's QEMU paused its postcopy migration by itself (the stream
 * broke): ask the destination to pause too. Its answer also tells
 * whether its QEMU is still there to recover with; a destination QEMU
 * that died breaks the stream in just this way. */
static void
src_postcopy_ask_peer(Job *job)
{
    json_object *args;

    if (job->peer_gone || !job->ops || !job->ops->pause)
        return;
    args = json_object_new_object();
    ho_json_add_string(args, "uuid", job->uuid);
    job->ops->pause(job->peer, args, postcopy_peer_pause_done, job_ref(job));
}

/* Force postcopy-paused on this side's QEMU (and, from the source, ask
 * the destination's too): a link that silently drops traffic is not
 * noticed by QEMU for a long time (DESIGN.md §6). */
static void
postcopy_force_pause(Job *job, bool peer_too)
{
    if (job->phase != QEMU_MIGRATION_PHASE_POSTCOPY || !job->mon || job->qemu_gone)
        return;
    if (!job->pause_sent) {
        job->pause_sent = true;
        qemu_monitor_json_migrate_pause(job->mon, postcopy_pause_done, job_ref(job));
    }
    if (peer_too && job->src && !job->peer_gone && job->ops && job->ops->pause) {
        json_object *args = json_object_new_object();

        ho_json_add_string(args, "uuid", job->uuid);
        job->ops->pause(job->peer, args, postcopy_peer_pause_done, job_ref(job));
    }
}

/* ---- the source's stall check in POSTCOPY ---- */

static void
src_stall_done(QemuMonitor *mon, const QemuMigrationInfo *qi, const HoError *err,
               void *opaque)
{
    g_autoptr(Job) job = opaque;
    gint64 now = ho_time_now_us();
    json_object *info;

    if (!job_live(job) || job->phase != QEMU_MIGRATION_PHASE_POSTCOPY || err ||
        qi->status != QEMU_MIGRATION_STATUS_POSTCOPY_ACTIVE)
        return;
    info = job_info_base(job);
    info_add_qemu(info, qi);
    job_emit(job, "progress", info);
    if (!qi->has_ram || qi->ram.transferred != job->stall_bytes) {
        job->stall_bytes = qi->has_ram ? qi->ram.transferred : 0;
        job->stall_us = now;
        return;
    }
    if (now - job->stall_us < (gint64)job->mig->postcopy_stall_s * G_USEC_PER_SEC ||
        job->pause_sent)
        return;
    {
        g_autofree char *msg = g_strdup_printf(
            _("postcopy migration of domain '%1$s' made no progress for %2$u seconds: "
              "pausing it so that it can be recovered"),
            job->name, job->mig->postcopy_stall_s);

        job_warn(job, msg);
    }
    postcopy_force_pause(job, true);
}

static gboolean
src_stall_tick(gpointer opaque)
{
    Job *job = opaque;

    if (!job_live(job) || job->phase != QEMU_MIGRATION_PHASE_POSTCOPY || !job->mon)
        return G_SOURCE_CONTINUE;
    qemu_monitor_json_query_migrate(job->mon, src_stall_done, job_ref(job));
    return G_SOURCE_CONTINUE;
}

static void
src_stall_start(Job *job)
{
    guint ms = MAX(POSTCOPY_TICK_MIN_MS, job->mig->postcopy_stall_s * 1000 / 4);

    clear_source(&job->stall_src);
    job->stall_bytes = G_MAXUINT64;
    job->stall_us = ho_time_now_us();
    job->stall_src = job_timeout(job, ms, src_stall_tick);
}

/* ---- source events ---- */

static void
src_postcopy_event(Job *job, QemuMigrationStatus st)
{
    switch (st) {
    case QEMU_MIGRATION_STATUS_POSTCOPY_ACTIVE:
        if (!job->postcopy_started) {
            /* From here on the destination runs the guest. */
            job->postcopy_started = true;
            job->dst_ran = true;
            job->unwinding = false;
            clear_source(&job->timeout_src);
            clear_source(&job->progress_src);
            HO_INFO("domain '%s': postcopy: the destination runs the guest", job->name);
        } else if (job->phase != QEMU_MIGRATION_PHASE_POSTCOPY) {
            HO_INFO("domain '%s': postcopy recovered", job->name);
            clear_source(&job->recover_src);
        }
        job->pause_sent = false;
        postcopy_set_phase(job, QEMU_MIGRATION_PHASE_POSTCOPY);
        src_stall_start(job);
        return;
    case QEMU_MIGRATION_STATUS_POSTCOPY_PAUSED: {
        bool attempt = job->phase == QEMU_MIGRATION_PHASE_POSTCOPY_RECOVER;

        clear_source(&job->stall_src);
        if (job->phase == QEMU_MIGRATION_PHASE_POSTCOPY_PAUSED)
            return;
        postcopy_set_phase(job, QEMU_MIGRATION_PHASE_POSTCOPY_PAUSED);
        postcopy_emit_paused(job);
        src_postcopy_ask_peer(job);
        if (!job_live(job))
            return;
        if (attempt) {
            g_autoptr(HoError) err = ho_error_new(
                HO_ERR_OPERATION_INVALID,
                _("the recovery of the postcopy migration of domain '%1$s' failed: QEMU could "
                  "not reach the destination; the migration stays paused and recoverable"),
                job->name);

            src_resume_reply(job, err);
        } else if (job->resume_cb) {
            /* An earlier recovery brought it back to postcopy-active: its
             * caller learns that it broke again, so that a new recovery
             * can start (one attempt at a time). */
            g_autoptr(HoError) err = ho_error_new(
                HO_ERR_OPERATION_INVALID,
                _("the postcopy migration of domain '%1$s' broke again after its recovery: "
                  "it is paused and recoverable"),
                job->name);

            src_resume_reply(job, err);
        }
        return;
    }
    case QEMU_MIGRATION_STATUS_POSTCOPY_RECOVER_SETUP:
        /* QEMU 9.1+: still paused; recover or paused follows. */
        return;
    case QEMU_MIGRATION_STATUS_POSTCOPY_RECOVER:
        clear_source(&job->recover_src);
        if (job->phase == QEMU_MIGRATION_PHASE_POSTCOPY_PAUSED)
            postcopy_set_phase(job, QEMU_MIGRATION_PHASE_POSTCOPY_RECOVER);
        return;
    default:
        return;
    }
}

/* ---- source setup ---- */

static void
postcopy_src_caps(Job *job, const QemuCaps *caps, const char **names, bool *states, size_t *n)
{
    /* Only when asked: a precopy source keeps the capability list it
     * always had (a source that ran a postcopy migration before is gone
     * or paused for good). */
    if (job->args.postcopy && qemu_caps_has(caps, QEMU_CAPS_POSTCOPY_RAM)) {
        names[*n] = "postcopy-ram";
        states[(*n)++] = job->args.postcopy;
    }
}

static void
postcopy_src_params(Job *job, json_object *params)
{
    if (job->args.postcopy && job->args.has_postcopy_bandwidth)
        ho_json_add_int64(params, "max-postcopy-bandwidth",
                          (int64_t)(job->args.postcopy_bandwidth_mib * 1024 * 1024));
}

static void
src_start_postcopy_done(QemuMonitor *mon, const HoError *err, void *opaque)
{
    g_autoptr(Job) job = opaque;

    if (!job_live(job) || !err)
        return;
    job->postcopy_switch_sent = false;
    if (job->qstatus == QEMU_MIGRATION_STATUS_COMPLETED || job->postcopy_started)
        return; /* precopy won the race */
    {
        g_autofree char *msg = g_strdup_printf(
            _("cannot switch the migration of domain '%1$s' to postcopy: %2$s"), job->name,
            err->message);

        job_warn(job, msg);
    }
}

static void
src_send_start_postcopy(Job *job)
{
    job->postcopy_switch_sent = true;
    HO_INFO("domain '%s': switching to postcopy", job->name);
    qemu_monitor_json_migrate_start_postcopy(job->mon, src_start_postcopy_done, job_ref(job));
}

typedef struct {
    Job *job;
    unsigned int limit_ms;
} DowntimeCall;

/* QMP answers in order: the last raise answered is the limit in force. */
static void
downtime_raised(QemuMonitor *mon, const HoError *err, void *opaque)
{
    DowntimeCall *c = opaque;
    g_autoptr(Job) job = c->job;
    unsigned int limit = c->limit_ms;

    g_free(c);
    if (!job_live(job))
        return;
    if (err) {
        g_autofree char *msg = g_strdup_printf(
            _("cannot raise the downtime limit to %1$u ms (it stays at %2$u ms): %3$s"), limit,
            job->downtime_ms, err->message);

        /* The migration goes on with the limit it had. */
        job_warn(job, msg);
        return;
    }
    job->downtime_ms = limit;
}

/* Pass n's dirty sync (n >= 3) means the attempt at pass n - 1 did not end
 * the migration: QEMU syncs when what is left looks like it fits the
 * limit, and goes on when it does not. Each such pass doubles the limit,
 * from the ramp's start up to its top. */
static void
downtime_ramp(Job *job, int64_t pass)
{
    QemuMonitor *mon = qemu_domain_obj_monitor(job->dom);
    unsigned int want = job->downtime_top_ms;
    DowntimeCall *c;
    json_object *params;

    if (!job->downtime_top_ms || job->downtime_asked_ms >= job->downtime_top_ms || pass < 3 ||
        !mon)
        return;
    if (pass - 2 < 20 && ((guint64)job->mig->downtime_start_ms << (pass - 2)) < want)
        want = (unsigned int)(job->mig->downtime_start_ms << (pass - 2));
    if (want <= job->downtime_asked_ms)
        return;
    job->downtime_asked_ms = want;
    HO_INFO("domain '%s': pass %" G_GINT64_FORMAT " did not converge; downtime limit %u ms",
            job->name, pass, want);
    c = g_new0(DowntimeCall, 1);
    c->job = job_ref(job);
    c->limit_ms = want;
    params = json_object_new_object();
    ho_json_add_int64(params, "downtime-limit", (int64_t)want);
    qemu_monitor_json_migrate_set_parameters(mon, params, downtime_raised, c);
}

/* The source's MIGRATION_PASS: the downtime ramp, and
 * --postcopy-after-precopy's switch once the first full pass is done. */
static void
src_pass_event(QemuMonitor *mon, const char *name, json_object *data, gint64 qemu_ts_us,
               gint64 recv_ts_us, void *opaque)
{
    Job *job = opaque;
    int64_t pass = 0;

    if (!job_live(job) || !data || ho_json_get_int64(data, "pass", &pass) < 0) {
        ho_error_reset();
        return;
    }
    if (pass < 2 || !job->migrate_sent || job->unwinding || job->postcopy_switch_sent ||
        job->postcopy_started || job->phase != QEMU_MIGRATION_PHASE_PERFORM ||
        job->qstatus != QEMU_MIGRATION_STATUS_ACTIVE)
        return;
    if (job->args.postcopy && job->args.postcopy_after_precopy)
        src_send_start_postcopy(job);
    else
        downtime_ramp(job, pass);
}

/* The limit the migration starts with, and where the ramp stops. */
static void
downtime_plan(Job *job)
{
    const QemuMigrationArgs *a = &job->args;
    unsigned int top = a->has_max_downtime ? (unsigned int)a->max_downtime_ms
                                           : QEMU_DEFAULT_DOWNTIME_MS;
    unsigned int start = job->mig->downtime_start_ms;

    job->downtime_top_ms = 0;
    job->downtime_ms = a->has_max_downtime ? top : 0;
    if (start && start < top && !(a->postcopy && a->postcopy_after_precopy)) {
        job->downtime_ms = start;
        job->downtime_top_ms = top;
    }
    job->downtime_asked_ms = job->downtime_ms;
}

/* What the source's MIGRATION_PASS events drive: the downtime ramp (its
 * plan made here) or --postcopy-after-precopy's switch; subscribed only
 * when one of them is on. */
static void
src_passes_begin(Job *job, QemuMonitor *mon)
{
    downtime_plan(job);
    if ((job->args.postcopy && job->args.postcopy_after_precopy) || job->downtime_top_ms)
        job->pass_sub = qemu_monitor_subscribe(mon, "MIGRATION_PASS", src_pass_event, job);
}

/* ---- the peer lost, either side ---- */

/* True when postcopy handled it: in POSTCOPY the side that can pauses
 * (never an unwinding); paused or recovering jobs just stay. */
#define DST_PAUSE_GRACE_MS 2000

static gboolean
postcopy_dst_pause_grace(gpointer opaque)
{
    Job *job = opaque;

    g_clear_pointer(&job->stall_src, g_source_unref);
    if (!job_live(job))
        return G_SOURCE_REMOVE;
    if (job->phase == QEMU_MIGRATION_PHASE_POSTCOPY) {
        HO_WARN("domain '%s': still in postcopy without its peer: forcing postcopy-paused",
                job->name);
        postcopy_force_pause(job, false);
    }
    return G_SOURCE_REMOVE;
}

static bool
postcopy_peer_lost(Job *job)
{
    if (!job->postcopy_started || !job_postcopy_phase(job))
        return false;
    if (!job->src && job->incoming_completed) {
        /* Everything arrived: the guest runs here. */
        job->phase = QEMU_MIGRATION_PHASE_FINISH;
        dst_finished(job, !job->args.paused);
        return true;
    }
    if (!job->src)
        job->peer_gone = true; /* no Finish will come: see dst_postcopy_completed_alone() */
    if (job->phase == QEMU_MIGRATION_PHASE_POSTCOPY) {
        if (!job->src) {
            /* The source pauses the stream from its side and this QEMU
             * then pauses by itself; pausing both ends at the same moment
             * made a QEMU 10.0 destination exit. Only if it has not paused
             * after a grace period does the destination force it. */
            HO_WARN("domain '%s': the peer daemon is lost in postcopy: pausing in %u ms "
                    "unless QEMU pauses by itself", job->name, (unsigned int)DST_PAUSE_GRACE_MS);
            clear_source(&job->stall_src);
            job->stall_src = job_timeout(job, DST_PAUSE_GRACE_MS, postcopy_dst_pause_grace);
            return true;
        }
        HO_WARN("domain '%s': the peer daemon is lost in postcopy: forcing postcopy-paused",
                job->name);
        postcopy_force_pause(job, false);
    }
    return true;
}

/* ---- destination ---- */

static void
dst_postcopy_cont_done(QemuMonitor *mon, const HoError *err, void *opaque)
{
    g_autoptr(Job) job = opaque;

    if (!job_live(job) || !err)
        return;
    {
        g_autofree char *msg = g_strdup_printf(
            _("cannot run domain '%1$s' on the destination in postcopy: %2$s"), job->name,
            err->message);

        job_warn(job, msg);
    }
}

static bool
dst_postcopy_event(Job *job, QemuMigrationStatus st)
{
    switch (st) {
    case QEMU_MIGRATION_STATUS_POSTCOPY_ACTIVE:
        if (!job->postcopy_started) {
            QemuMonitor *mon = qemu_domain_obj_monitor(job->dom);

            /* The source's QEMU stopped the guest before it sent what
             * puts us here: run at once (cont during an incoming
             * migration takes effect when QEMU starts the vCPUs). */
            job->postcopy_started = true;
            postcopy_set_phase(job, QEMU_MIGRATION_PHASE_POSTCOPY);
            if (!job->args.paused && mon) {
                job->cont_sent = true;
                qemu_monitor_json_cont(mon, dst_postcopy_cont_done, job_ref(job));
            }
            return true;
        }
        job->pause_sent = false;
        postcopy_set_phase(job, QEMU_MIGRATION_PHASE_POSTCOPY);
        return true;
    case QEMU_MIGRATION_STATUS_POSTCOPY_PAUSED:
        if (!job->postcopy_started || job->phase == QEMU_MIGRATION_PHASE_POSTCOPY_PAUSED)
            return true;
        /* A listener of an earlier migrate-recover was used up. */
        g_clear_pointer(&job->recover_uri, g_free);
        postcopy_set_phase(job, QEMU_MIGRATION_PHASE_POSTCOPY_PAUSED);
        postcopy_emit_paused(job);
        return true;
    case QEMU_MIGRATION_STATUS_POSTCOPY_RECOVER_SETUP:
        return true;
    case QEMU_MIGRATION_STATUS_POSTCOPY_RECOVER:
        g_clear_pointer(&job->recover_uri, g_free);
        if (job->phase == QEMU_MIGRATION_PHASE_POSTCOPY_PAUSED)
            postcopy_set_phase(job, QEMU_MIGRATION_PHASE_POSTCOPY_RECOVER);
        return true;
    case QEMU_MIGRATION_STATUS_FAILED:
    case QEMU_MIGRATION_STATUS_CANCELLED:
        if (!job->postcopy_started)
            return false;
        job_keep_error(job, ho_error_new(HO_ERR_QMP,
                                         _("the incoming postcopy migration of domain '%1$s' "
                                           "failed in QEMU: the guest is lost; its QEMU is left "
                                           "as it is for inspection"),
                                         job->name));
        job->guest_lost = g_strdup(_("the destination QEMU failed the incoming postcopy "
                                     "migration"));
        job->unwinding = true;
        dst_reply_failure(job);
        job_end(job, QEMU_MIGRATION_PHASE_FAILED);
        return true;
    default:
        return false;
    }
}

static bool
dst_postcopy_exited(Job *job, const char *how)
{
    if (!job->postcopy_started)
        return false;
    job_keep_error(job, ho_error_new(HO_ERR_SYSTEM,
                                     _("the destination QEMU of domain '%1$s' %2$s in postcopy: "
                                       "the guest is lost; the source keeps a stale copy paused "
                                       "and never resumes it"),
                                     job->name, how));
    job->guest_lost = g_strdup_printf(_("the destination QEMU %1$s in postcopy"), how);
    job->unwinding = true;
    dst_reply_failure(job);
    job_end(job, QEMU_MIGRATION_PHASE_FAILED);
    return true;
}

/* The incoming postcopy migration completed while no source daemon is
 * there to send Finish (it went away, or this daemon restarted and no
 * source came back for a recovery): the guest already runs here and has
 * every page, so the job is done. */
static void
dst_postcopy_completed_alone(Job *job)
{
    if (!job->postcopy_started || !job->peer_gone || job->phase != QEMU_MIGRATION_PHASE_POSTCOPY)
        return;
    HO_INFO("domain '%s': postcopy completed without the source daemon: the guest runs here",
            job->name);
    postcopy_set_phase(job, QEMU_MIGRATION_PHASE_FINISH);
    dst_finished(job, !job->args.paused);
}

/* ---- after a daemon restart ---- */

static void
recover_postcopy_done(QemuMonitor *mon, const QemuMigrationInfo *qi, const HoError *err,
                      void *opaque)
{
    g_autoptr(Job) job = opaque;
    QemuMigrationStatus st = err ? QEMU_MIGRATION_STATUS_NONE : qi->status;

    if (!job_live(job))
        return;
    job->qstatus = st;
    switch (st) {
    case QEMU_MIGRATION_STATUS_POSTCOPY_ACTIVE:
        if (job->phase != QEMU_MIGRATION_PHASE_POSTCOPY) {
            /* paused/recover -> active: allowed; persist what QEMU says */
            postcopy_set_phase(job, QEMU_MIGRATION_PHASE_POSTCOPY);
        }
        if (job->src)
            src_stall_start(job);
        return;
    case QEMU_MIGRATION_STATUS_POSTCOPY_PAUSED:
    case QEMU_MIGRATION_STATUS_POSTCOPY_RECOVER_SETUP:
        if (job->phase == QEMU_MIGRATION_PHASE_POSTCOPY_RECOVER)
            postcopy_set_phase(job, QEMU_MIGRATION_PHASE_POSTCOPY_PAUSED);
        else if (job->phase == QEMU_MIGRATION_PHASE_POSTCOPY)
            postcopy_set_phase(job, QEMU_MIGRATION_PHASE_POSTCOPY_PAUSED);
        postcopy_emit_paused(job);
        return;
    case QEMU_MIGRATION_STATUS_POSTCOPY_RECOVER:
        if (job->phase == QEMU_MIGRATION_PHASE_POSTCOPY)
            postcopy_set_phase(job, QEMU_MIGRATION_PHASE_POSTCOPY_PAUSED);
        postcopy_set_phase(job, QEMU_MIGRATION_PHASE_POSTCOPY_RECOVER);
        return;
    case QEMU_MIGRATION_STATUS_COMPLETED:
        if (!job->src) {
            job->phase = QEMU_MIGRATION_PHASE_FINISH;
            dst_finished(job, !job->args.paused);
            return;
        }
        /* It completed while the daemon was away: the destination, which
         * has run the guest since postcopy-active, has every page. QEMU
         * completes from postcopy-active only. */
        postcopy_set_phase(job, QEMU_MIGRATION_PHASE_POSTCOPY);
        src_completed(job);
        return;
    default:
        job_keep_error(job, ho_error_new(HO_ERR_OPERATION_INVALID,
                                         _("the daemon restarted during the postcopy migration "
                                           "of domain '%1$s' and QEMU reports '%2$s'"),
                                         job->name, qemu_migration_status_to_string(st)));
        if (job->src)
            src_postcopy_lost(job);
        else
            dst_postcopy_exited(job, _("failed"));
        return;
    }
}

static bool
postcopy_recover_job(Job *job)
{
    if (!job_postcopy_phase(job))
        return false;
    job->postcopy_started = true;
    job->migrate_sent = true;
    if (job->src) {
        job->dst_ran = true;
        job->exit_watch = qemu_domain_obj_add_exit_watch(job->dom, src_qemu_exited, job);
        job->mig_sub = qemu_monitor_subscribe(job->mon, "MIGRATION", src_migration_event, job);
    } else {
        job->cont_sent = true;
        job->exit_watch = qemu_domain_obj_add_exit_watch(job->dom, dst_qemu_exited, job);
        job->mig_sub = qemu_monitor_subscribe(job->mon, "MIGRATION", dst_migration_event, job);
    }
    HO_INFO("domain '%s': the %s job stays in postcopy: asking QEMU where it is", job->name,
            job_side(job));
    qemu_monitor_json_query_migrate(job->mon, recover_postcopy_done, job_ref(job));
    return true;
}

/* ---- the API ---- */

static Job *
postcopy_find(QemuMigration *mig, QemuDomainObj *dom)
{
    Job *job = mig_find_job(mig, qemu_domain_obj_uuid(dom));

    if (!job || !job_live(job)) {
        ho_error_report(HO_ERR_OPERATION_INVALID, _("domain '%1$s' has no migration job"),
                        qemu_domain_obj_name(dom));
        return NULL;
    }
    return job;
}

int
qemu_migration_src_start_postcopy(QemuMigration *mig, QemuDomainObj *dom)
{
    Job *job = postcopy_find(mig, dom);

    if (!job)
        return -1;
    if (!job->src || !job->args.postcopy) {
        ho_error_report(HO_ERR_OPERATION_INVALID,
                        _("the migration of domain '%1$s' was not started with --postcopy"),
                        job->name);
        return -1;
    }
    if (job->postcopy_started || job->postcopy_switch_sent) {
        ho_error_report(HO_ERR_OPERATION_INVALID,
                        _("the migration of domain '%1$s' is already switching to postcopy"),
                        job->name);
        return -1;
    }
    if (job->phase != QEMU_MIGRATION_PHASE_PERFORM || !job->migrate_sent || job->unwinding ||
        job->qstatus != QEMU_MIGRATION_STATUS_ACTIVE) {
        ho_error_report(HO_ERR_OPERATION_INVALID,
                        _("the migration of domain '%1$s' cannot switch to postcopy in phase "
                          "'%2$s' (QEMU status '%3$s')"),
                        job->name, qemu_migration_phase_to_string(job->phase),
                        qemu_migration_status_to_string(job->qstatus));
        return -1;
    }
    src_send_start_postcopy(job);
    return 0;
}

int
qemu_migration_any_pause_postcopy(QemuMigration *mig, QemuDomainObj *dom)
{
    Job *job = postcopy_find(mig, dom);

    if (!job)
        return -1;
    if (job->phase != QEMU_MIGRATION_PHASE_POSTCOPY || !job->mon) {
        ho_error_report(HO_ERR_OPERATION_INVALID,
                        _("the migration of domain '%1$s' is not in postcopy (phase '%2$s'): "
                          "nothing to pause"),
                        job->name, qemu_migration_phase_to_string(job->phase));
        return -1;
    }
    HO_INFO("domain '%s': pausing the postcopy migration on request", job->name);
    postcopy_force_pause(job, false);
    return 0;
}

typedef struct {
    QemuMigration *mig;
    char *uuid;
    QemuMigrationReplyFunc cb;
    void *opaque;
} PauseCall;

/* The answer that the guest is lost here: {"state": "lost", "error"}. */
static json_object *
dst_lost_result(const char *message)
{
    json_object *res = json_object_new_object();
    json_object *e = json_object_new_object();

    ho_json_add_string(res, "state", "lost");
    ho_json_add_string(e, "message", message);
    ho_json_add(res, "error", e);
    return res;
}

static void
dst_pause_done(QemuMonitor *mon, const HoError *err, void *opaque)
{
    PauseCall *c = opaque;
    json_object *res = err ? NULL : json_object_new_object();

    if (err && qemu_monitor_is_closed(mon)) {
        /* Our QEMU went away under the pause: in postcopy it held the
         * only running copy of the guest. */
        g_autofree char *msg = g_strdup_printf(
            _("the destination QEMU is gone in postcopy (%1$s)"), err->message);

        res = dst_lost_result(msg);
        err = NULL;
    }
    c->cb(res, err, c->opaque);
    json_object_put(res);
    g_free(c->uuid);
    g_free(c);
}

void
qemu_migration_dst_pause(QemuMigration *mig, json_object *args, QemuMigrationReplyFunc cb,
                         void *opaque)
{
    const char *uuid = NULL;
    Job *job;
    PauseCall *c;

    if (!args || ho_json_get_string(args, "uuid", &uuid) < 0) {
        reply_later(mig, cb, opaque, NULL, ho_error_steal());
        return;
    }
    job = mig_find_job(mig, uuid);
    if (job && !job->src && job_live(job) && job->postcopy_started && job->qemu_gone) {
        reply_later(mig, cb, opaque,
                    dst_lost_result(job->guest_lost ? job->guest_lost
                                                    : _("the destination QEMU is gone")),
                    NULL);
        return;
    }
    if (!job || !job_live(job)) {
        /* Ended here already: with the guest lost, say so. */
        json_object *info = g_hash_table_lookup(mig->completed, uuid);
        const char *why = NULL;

        if (info && ho_json_opt_string(info, "guest_lost", &why) > 0 && why) {
            reply_later(mig, cb, opaque, dst_lost_result(why), NULL);
            return;
        }
        ho_error_reset();
    }
    if (!job || job->src || !job_live(job) || !job_postcopy_phase(job) || !job->mon) {
        QemuDomainObj *dom = qemu_driver_lookup(mig->drv, uuid);

        ho_error_reset();
        reply_later(mig, cb, opaque, NULL,
                    dom ? ho_error_new(HO_ERR_OPERATION_INVALID,
                                       _("domain '%1$s' has no incoming postcopy migration here"),
                                       qemu_domain_obj_name(dom))
                        : ho_error_new(HO_ERR_OPERATION_INVALID,
                                       _("no incoming postcopy migration of the domain with UUID "
                                         "'%1$s' here"),
                                       uuid));
        return;
    }
    if (job->phase != QEMU_MIGRATION_PHASE_POSTCOPY || job->pause_sent) {
        reply_later(mig, cb, opaque, json_object_new_object(), NULL);
        return;
    }
    HO_INFO("domain '%s': the source asks to pause the postcopy migration", job->name);
    job->pause_sent = true;
    c = g_new0(PauseCall, 1);
    c->mig = mig;
    c->uuid = g_strdup(uuid);
    c->cb = cb;
    c->opaque = opaque;
    qemu_monitor_json_migrate_pause(job->mon, dst_pause_done, c);
}

/* ---- recovery, destination ---- */

static void dst_recover_try(Job *job);

static void
dst_recover_answer(Job *job, json_object *result, HoError *err)
{
    QemuMigrationReplyFunc cb = job->recover_cb;
    void *opaque = job->recover_opaque;

    job->recover_cb = NULL;
    job->recover_opaque = NULL;
    if (cb)
        cb(result, err, opaque);
    json_object_put(result);
    ho_error_free(err);
}

static json_object *
dst_recover_result(Job *job)
{
    json_object *obj = json_object_new_object();

    ho_json_add_string(obj, "uri", job->recover_uri);
    return obj;
}

static void
dst_recover_done(QemuMonitor *mon, const HoError *err, void *opaque)
{
    g_autoptr(Job) job = opaque;
    g_autofree char *hostport = NULL;

    if (!job->mig)
        return;
    if (!job_live(job)) {
        dst_recover_answer(job, NULL,
                           ho_error_new(HO_ERR_OPERATION_INVALID,
                                        _("the incoming migration of domain '%1$s' ended"),
                                        job->name));
        return;
    }
    if (err) {
        if (err->code == HO_ERR_QMP && job->recover_port < job->port_last) {
            job->recover_port++;
            dst_recover_try(job);
            return;
        }
        dst_recover_answer(job, NULL,
                           ho_error_new(err->code,
                                        _("cannot listen for the recovery of the postcopy "
                                          "migration of domain '%1$s' (last port tried %2$d): "
                                          "%3$s"),
                                        job->name, job->recover_port, err->message));
        return;
    }
    hostport = ho_uri_format_hostport(job->public_host, job->recover_port);
    g_free(job->recover_uri);
    job->recover_uri = g_strdup_printf("tcp:%s", hostport);
    HO_INFO("domain '%s': postcopy recovery listens on %s", job->name, job->recover_uri);
    dst_recover_answer(job, dst_recover_result(job), NULL);
}

static void
dst_recover_try(Job *job)
{
    g_autofree char *hostport = NULL;
    g_autofree char *uri = NULL;

    while (job->recover_port < job->port_last &&
           !dst_port_free(job->listen_host, job->recover_port))
        job->recover_port++;
    hostport = ho_uri_format_hostport(job->listen_host, job->recover_port);
    uri = g_strdup_printf("tcp:%s", hostport);
    qemu_monitor_json_migrate_recover(job->mon, uri, dst_recover_done, job_ref(job));
}

void
qemu_migration_dst_recover(QemuMigration *mig, json_object *args, QemuMigrationReplyFunc cb,
                           void *opaque)
{
    const char *uuid = NULL;
    Job *job;

    if (!args || ho_json_get_string(args, "uuid", &uuid) < 0) {
        reply_later(mig, cb, opaque, NULL, ho_error_steal());
        return;
    }
    job = mig_find_job(mig, uuid);
    if (!job || job->src || !job_live(job) || !job->postcopy_started || !job->mon) {
        QemuDomainObj *dom = qemu_driver_lookup(mig->drv, uuid);

        ho_error_reset();
        reply_later(mig, cb, opaque, NULL,
                    dom && qemu_domain_obj_is_active(dom)
                        ? ho_error_new(HO_ERR_OPERATION_INVALID,
                                       _("domain '%1$s' has no incoming postcopy migration to "
                                         "recover here"),
                                       qemu_domain_obj_name(dom))
                        : ho_error_new(HO_ERR_OPERATION_INVALID,
                                       _("no incoming postcopy migration of domain '%1$s' here: "
                                         "if its QEMU died in postcopy, the guest is lost"),
                                       uuid));
        return;
    }
    if (job->phase != QEMU_MIGRATION_PHASE_POSTCOPY_PAUSED || job->recover_cb) {
        reply_later(mig, cb, opaque, NULL,
                    ho_error_new(HO_ERR_OPERATION_INVALID,
                                 _("the incoming migration of domain '%1$s' cannot be recovered "
                                   "in phase '%2$s'"),
                                 job->name, qemu_migration_phase_to_string(job->phase)));
        return;
    }
    /* A source daemon drives the job again: its Finish ends it. */
    job->peer_gone = false;
    if (job->recover_uri) {
        /* QEMU still listens from an earlier attempt the source did not
         * complete (QEMU 7.2 refuses a second migrate-recover then). */
        reply_later(mig, cb, opaque, dst_recover_result(job), NULL);
        return;
    }
    if (!job->listen_host && dst_choose_address(job) < 0) {
        reply_later(mig, cb, opaque, NULL, ho_error_steal());
        return;
    }
    job->recover_cb = cb;
    job->recover_opaque = opaque;
    /* A fixed port (--migrateuri HOST:PORT) again, else the range anew:
     * QEMU closed the first listener once the source connected. */
    job->recover_port = job->port == job->port_last ? job->port : job->mig->port_min;
    dst_recover_try(job);
}

/* ---- recovery, source ---- */

typedef struct {
    const QemuMigrationPeerOps *ops;
    void *peer;
} OldPeer;

static void
old_peer_free(gpointer p)
{
    OldPeer *o = p;

    if (o->ops && o->ops->free && o->peer)
        o->ops->free(o->peer);
    g_free(o);
}

static void
src_recover_failed(Job *job, HoError *err)
{
    if (job->phase == QEMU_MIGRATION_PHASE_POSTCOPY_RECOVER) {
        postcopy_set_phase(job, QEMU_MIGRATION_PHASE_POSTCOPY_PAUSED);
        postcopy_emit_paused(job); /* as QEMU's own postcopy-paused does */
    }
    HO_WARN("domain '%s': %s", job->name, err->message);
    src_resume_reply(job, err);
    ho_error_free(err);
}

static void
src_recover_bound_info(QemuMonitor *mon, const QemuMigrationInfo *qi, const HoError *err,
                       void *opaque)
{
    g_autoptr(Job) job = opaque;

    if (!job_live(job) || job->phase != QEMU_MIGRATION_PHASE_POSTCOPY_RECOVER)
        return;
    if (!err && qi->status != QEMU_MIGRATION_STATUS_POSTCOPY_PAUSED &&
        qi->status != QEMU_MIGRATION_STATUS_POSTCOPY_RECOVER_SETUP)
        return; /* moving: its events follow */
    src_recover_failed(job, ho_error_new(HO_ERR_TIMEOUT,
        _("the recovery of the postcopy migration of domain '%1$s' made no progress within "
          "%2$u seconds (this QEMU reports no event when it cannot set up the channel): the "
          "migration stays paused and recoverable"),
        job->name, job->mig->postcopy_stall_s));
}

static gboolean
src_recover_bound(gpointer opaque)
{
    Job *job = opaque;

    g_clear_pointer(&job->recover_src, g_source_unref);
    if (job_live(job) && job->phase == QEMU_MIGRATION_PHASE_POSTCOPY_RECOVER && job->mon)
        qemu_monitor_json_query_migrate(job->mon, src_recover_bound_info, job_ref(job));
    return G_SOURCE_REMOVE;
}

static void
src_resume_migrate_done(QemuMonitor *mon, const HoError *err, void *opaque)
{
    g_autoptr(Job) job = opaque;

    if (!job_live(job) || job->phase != QEMU_MIGRATION_PHASE_POSTCOPY_RECOVER)
        return;
    if (err) {
        src_recover_failed(job, ho_error_new(err->code,
                                             _("cannot recover the postcopy migration of domain "
                                               "'%1$s': %2$s"),
                                             job->name, err->message));
        return;
    }
    /* QEMU 9.1+ says recover-setup -> recover or -> paused; older ones
     * stay silent in postcopy-paused when the channel fails: a bound. */
    clear_source(&job->recover_src);
    job->recover_src = job_timeout(job, job->mig->postcopy_stall_s * 1000, src_recover_bound);
}

static void
src_recover_reply(json_object *result, const HoError *err, void *opaque)
{
    g_autoptr(Job) job = opaque;
    const char *uri = NULL;

    if (!job_live(job) || job->phase != QEMU_MIGRATION_PHASE_POSTCOPY_RECOVER)
        return;
    if (err) {
        src_recover_failed(job, ho_error_new(err->code,
                                             _("the destination cannot recover the postcopy "
                                               "migration of domain '%1$s': %2$s"),
                                             job->name, err->message));
        return;
    }
    if (ho_json_get_string(result, "uri", &uri) < 0) {
        src_recover_failed(job, ho_error_steal());
        return;
    }
    g_free(job->uri);
    job->uri = g_strdup(uri);
    HO_INFO("domain '%s': resuming the postcopy migration to %s", job->name, uri);
    qemu_monitor_json_migrate(job->mon, uri, true, src_resume_migrate_done, job_ref(job));
}

int
qemu_migration_src_postcopy_resume(QemuMigration *mig, QemuDomainObj *dom,
                                   const QemuMigrationPeerOps *ops, void *peer,
                                   QemuMigrationDoneFunc cb, void *opaque)
{
    Job *job = postcopy_find(mig, dom);
    json_object *args;
    const QemuCaps *caps = qemu_domain_obj_caps(dom);

    if (!job || !job->src || job->phase != QEMU_MIGRATION_PHASE_POSTCOPY_PAUSED || !job->mon ||
        job->resume_cb || !ops || !ops->recover) {
        if (job && (!job->src || job->phase != QEMU_MIGRATION_PHASE_POSTCOPY_PAUSED))
            ho_error_report(HO_ERR_OPERATION_INVALID,
                            _("the migration of domain '%1$s' is not a paused postcopy "
                              "migration (phase '%2$s')"),
                            job->name, qemu_migration_phase_to_string(job->phase));
        else if (job && job->resume_cb)
            ho_error_report(HO_ERR_OPERATION_INVALID,
                            _("a recovery of the migration of domain '%1$s' is under way"),
                            job->name);
        else if (job)
            ho_error_report(HO_ERR_INTERNAL, "%s", _("the peer operations are incomplete"));
        if (ops && ops->free && peer)
            ops->free(peer);
        return -1;
    }
    if (caps && !qemu_caps_has(caps, QEMU_CAPS_MIGRATE_RECOVER)) {
        ho_error_report(HO_ERR_NO_SUPPORT,
                        _("the QEMU of domain '%1$s' cannot recover a postcopy migration"),
                        job->name);
        if (ops->free && peer)
            ops->free(peer);
        return -1;
    }
    if (job->peer && job->ops) {
        OldPeer *o = g_new0(OldPeer, 1);

        /* Callbacks may still be pending on it: freed with the job. */
        o->ops = job->ops;
        o->peer = job->peer;
        if (!job->old_peers)
            job->old_peers = g_ptr_array_new_with_free_func(old_peer_free);
        g_ptr_array_add(job->old_peers, o);
    }
    job->ops = ops;
    job->peer = peer;
    job->peer_gone = false;
    job->finish_sent = false;
    job->prepared = true;
    if (ops->host_uuid && ops->host_uuid(peer)) {
        g_free(job->peer_host_uuid);
        job->peer_host_uuid = g_strdup(ops->host_uuid(peer));
    }
    if (job_set_phase(job, QEMU_MIGRATION_PHASE_POSTCOPY_RECOVER) < 0)
        return -1; /* the peer is the job's now */
    job->resume_cb = cb;
    job->resume_opaque = opaque;
    args = json_object_new_object();
    ho_json_add_string(args, "uuid", job->uuid);
    ops->recover(peer, args, src_recover_reply, job_ref(job));
    return 0;
}

/* ==== CPR transfer (issue 6; helper P2's section) ========================= */

/*
 * `handover migrate --mode cpr-transfer`: the domain's QEMU is replaced by
 * a new one on this host, guest RAM handed over as memfds (DESIGN.md §3).
 * The job is a source job of this daemon with no peer: BEGIN (checks),
 * PREPARE (the new QEMU starts: -S, -incoming defer and its CPR channel;
 * its monitor connects at once through the passed socket, its greeting
 * comes once it has read the CPR state), PERFORM (migrate with the main
 * and CPR channels; QEMU stops the guest itself), SWITCHOVER (the old
 * QEMU completed; waiting for the new one's own completed), FINISH (the
 * driver switches the domain to the new QEMU, cont), CONFIRM (the old
 * QEMU quits), COMPLETED. Before the old QEMU completed, a failure or
 * cancel ends the new QEMU and leaves the old one to QEMU's own resume:
 * the run state is checked and cont sent only if QEMU did not resume the
 * guest within a bound (never a second resume).
 */

#define CPR_GREETING_WAIT_S 30  /* migrate sent -> the new QEMU's monitor answered */
#define CPR_INCOMING_WAIT_S 30  /* old completed -> the new QEMU completed */
#define CPR_RESUME_WAIT_S 10    /* old failed/cancelled -> QEMU's own RESUME */
#define CPR_EXIT_WAIT_S 10      /* a QEMU told to go -> it exited */
/* The old QEMU leaves finish-migrate shortly after its completed event,
 * with no event of its own: query-status again this often, this long. */
#define CPR_FINALIZE_POLL_MS 20
#define CPR_FINALIZE_WAIT_S 10

typedef struct _CprJob {
    QemuDomainCpr *other;     /* the new QEMU, after the switch the old one */
    bool switched;            /* the domain runs the new QEMU */
    bool other_gone;          /* the other QEMU exited */
    bool new_completed;       /* the new QEMU's incoming completed */
    bool src_completed;       /* the old QEMU's migration completed */
    bool incoming_sent;
    bool cont_sent;           /* cont went to the new QEMU */
    bool resumed;             /* a RESUME from the old QEMU after migrate */
    bool status_asked;        /* the failure path: query-status went to the old QEMU */
    bool status_pending;      /* ... and its answer has not come yet */
    gint64 finalize_until_us; /* re-asking while QEMU is in finish-migrate, until then */
    bool cont_pending;        /* the failure path: cont went to the old QEMU, no answer yet */
    bool resuming;            /* the failure path: awaiting QEMU's own RESUME */
    bool ending;              /* the failure path: waiting for the new QEMU to exit */
    guint new_sub;            /* MIGRATION on the new QEMU */
    GFileMonitor *chan_watch; /* waiting for the new QEMU's CPR channel socket */
    GSource *chan_retry;      /* the socket exists, not yet listening: look again */
    guint chan_tries;
    bool chan_ready;
    guint resume_sub;         /* RESUME on the old QEMU */
    QemuMonitor *resume_mon;  /* ... on this monitor (a reference) */
    gint64 completed_us;
    gint64 running_us;
} CprJob;

static void cpr_fail(Job *job, HoError *err);
static void cpr_unwind(Job *job);
static void cpr_cont_old_done(QemuMonitor *mon, const HoError *err, void *opaque);
static void cpr_confirm(Job *job);
static void cpr_chan_changed(GFileMonitor *monitor, GFile *file, GFile *other_file,
                             GFileMonitorEvent event, gpointer opaque);
static void cpr_chan_check(Job *job);

static void
cpr_job_free(CprJob *c)
{
    if (!c)
        return;
    if (c->chan_watch) {
        g_signal_handlers_disconnect_matched(c->chan_watch, G_SIGNAL_MATCH_FUNC, 0, 0, NULL,
                                             (gpointer)cpr_chan_changed, NULL);
        g_file_monitor_cancel(c->chan_watch);
        g_clear_object(&c->chan_watch);
    }
    clear_source(&c->chan_retry);
    if (c->resume_mon && c->resume_sub)
        qemu_monitor_unsubscribe(c->resume_mon, c->resume_sub);
    qemu_monitor_unref(c->resume_mon);
    if (c->other && c->new_sub && qemu_domain_cpr_monitor(c->other))
        qemu_monitor_unsubscribe(qemu_domain_cpr_monitor(c->other), c->new_sub);
    qemu_domain_cpr_free(c->other);
    g_free(c);
}

/* End the job (terminal phase), dropping the CPR state first. */
static void
cpr_end(Job *job, QemuMigrationPhase phase)
{
    g_autoptr(Job) hold = job_ref(job);

    clear_source(&job->bound_src);
    g_clear_pointer(&job->cpr, cpr_job_free);
    job_end(job, phase);
}

static gboolean
cpr_bound_fired(gpointer opaque)
{
    Job *job = opaque;

    g_clear_pointer(&job->bound_src, g_source_unref);
    if (!job_live(job) || !job->cpr)
        return G_SOURCE_REMOVE;
    if (job->cpr->switched) {
        /* The old QEMU was told to quit (and then killed) but is still there. */
        HO_WARN("domain '%s': the old QEMU did not exit within %u s", job->name,
                (unsigned int)CPR_EXIT_WAIT_S);
        job->cpr->other_gone = true;
        if (job->err)
            cpr_end(job, QEMU_MIGRATION_PHASE_FAILED);
        else
            cpr_confirm(job);
    } else if (job->cpr->ending && !job->cpr->other_gone) {
        /* The new QEMU was SIGKILLed and did not go: end anyway. */
        HO_WARN("domain '%s': the new QEMU did not exit within %u s", job->name,
                (unsigned int)CPR_EXIT_WAIT_S);
        job->cpr->other_gone = true;
        cpr_unwind(job);
    } else if (job->cpr->resuming) {
        /* QEMU did not resume the guest itself: we do, once. */
        HO_WARN("domain '%s': QEMU did not resume the guest within %u s of the failed CPR "
                "transfer: sending cont", job->name, (unsigned int)CPR_RESUME_WAIT_S);
        job->cpr->resuming = false;
        job->cpr->cont_pending = true;
        qemu_monitor_json_cont(job->mon, cpr_cont_old_done, job_ref(job));
    } else if (job->unwinding && job->cancel_sent && !qstatus_is_final(job->qstatus)) {
        HO_WARN("domain '%s': QEMU did not finish cancelling the CPR transfer within %u s",
                job->name, (unsigned int)CANCEL_WAIT_S);
        job->qstatus = QEMU_MIGRATION_STATUS_CANCELLED;
        cpr_unwind(job);
    } else if (job->cpr->src_completed || job->cpr->incoming_sent) {
        cpr_fail(job, ho_error_new(HO_ERR_TIMEOUT,
                                   _("the CPR transfer of domain '%1$s' did not complete within "
                                     "%2$u seconds"),
                                   job->name, (unsigned int)CPR_INCOMING_WAIT_S));
    } else {
        cpr_fail(job, ho_error_new(HO_ERR_TIMEOUT,
                                   _("the new QEMU of domain '%1$s' did not answer within %2$u "
                                     "seconds of the CPR transfer's start"),
                                   job->name, (unsigned int)CPR_GREETING_WAIT_S));
    }
    return G_SOURCE_REMOVE;
}

static void
cpr_bound(Job *job, guint seconds)
{
    clear_source(&job->bound_src);
    job->bound_src = job_timeout(job, seconds * 1000, cpr_bound_fired);
}

/* ---- failure and cancel ---- */

static void
cpr_cont_old_done(QemuMonitor *mon, const HoError *err, void *opaque)
{
    g_autoptr(Job) job = opaque;

    if (!job_live(job) || !job->cpr)
        return;
    job->cpr->cont_pending = false;
    if (err)
        HO_WARN("domain '%s': the guest could not be resumed in its old QEMU: %s", job->name,
                err->message);
    else
        HO_INFO("domain '%s': resumed in its old QEMU", job->name);
    job->cpr->resumed = true;
    cpr_unwind(job);
}

static void cpr_old_status_done(QemuMonitor *mon, const QemuMonitorStatus *st,
                                const HoError *err, void *opaque);

static gboolean
cpr_old_status_again(gpointer opaque)
{
    Job *job = opaque;

    g_clear_pointer(&job->bound_src, g_source_unref);
    if (!job_live(job) || !job->cpr)
        return G_SOURCE_REMOVE;
    if (job->qemu_gone || qemu_monitor_is_closed(job->mon)) {
        job->cpr->status_pending = false;
        cpr_unwind(job);
        return G_SOURCE_REMOVE;
    }
    qemu_monitor_json_query_status(job->mon, cpr_old_status_done, job_ref(job));
    return G_SOURCE_REMOVE;
}

static void
cpr_old_status_done(QemuMonitor *mon, const QemuMonitorStatus *st, const HoError *err,
                    void *opaque)
{
    g_autoptr(Job) job = opaque;
    CprJob *c;

    if (!job_live(job) || !(c = job->cpr))
        return;
    c->status_pending = false;
    if (err) {
        HO_WARN("domain '%s': query-status after the failed CPR transfer: %s", job->name,
                err->message);
        c->resumed = true; /* nothing more can be done */
        cpr_unwind(job);
        return;
    }
    HO_INFO("domain '%s': after the failed CPR transfer the old QEMU is %s", job->name,
            qemu_run_state_to_string(st->state));
    if (st->running || !job->was_running || c->resumed) {
        c->resumed = true;
        cpr_unwind(job);
        return;
    }
    if (c->src_completed && st->state == QEMU_RUN_STATE_FINISH_MIGRATE) {
        /* Right after its completed event QEMU is still finalizing the
         * migration and refuses cont; it says nothing when done. */
        gint64 now = ho_time_now_us();

        if (!c->finalize_until_us)
            c->finalize_until_us = now + (gint64)CPR_FINALIZE_WAIT_S * G_USEC_PER_SEC;
        if (now < c->finalize_until_us) {
            c->status_pending = true;
            job->bound_src = job_timeout(job, CPR_FINALIZE_POLL_MS, cpr_old_status_again);
            return;
        }
        HO_WARN("domain '%s': the old QEMU stayed in finish-migrate for %u seconds after the "
                "failed CPR transfer", job->name, (unsigned int)CPR_FINALIZE_WAIT_S);
    }
    if (c->src_completed) {
        /* QEMU's migration completed, so QEMU does not resume the guest;
         * it never ran in the new QEMU (no cont went there). */
        c->cont_pending = true;
        qemu_monitor_json_cont(mon, cpr_cont_old_done, job_ref(job));
        return;
    }
    /* QEMU resumes the guest itself after a failed or cancelled CPR
     * transfer: wait for that RESUME, bounded. */
    c->resuming = true;
    cpr_bound(job, CPR_RESUME_WAIT_S);
}

/* The failure path, called again as each step completes:
 * 1. the old QEMU's migration reaches a final status (cancelled if needed);
 * 2. the new QEMU is killed and has exited;
 * 3. the old guest's run state is known: QEMU's own resume, or ours once
 *    when QEMU did not (a migration that completed, or no RESUME in time);
 * then the job ends. */
static void
cpr_unwind(Job *job)
{
    CprJob *c = job->cpr;
    QemuMonitor *old_mon = job->mon;

    if (!job_live(job) || !c)
        return;
    job->unwinding = true;
    if (job->migrate_sent && !qstatus_is_final(job->qstatus) && !job->qemu_gone) {
        if (!job->cancel_sent) {
            job->cancel_sent = true;
            HO_INFO("domain '%s': cancelling the CPR transfer", job->name);
            qemu_monitor_json_migrate_cancel(old_mon, NULL, NULL);
            cpr_bound(job, CANCEL_WAIT_S);
        }
        return; /* the final MIGRATION event (or the bound) continues */
    }
    if (c->other && !c->other_gone) {
        if (!c->ending) {
            c->ending = true;
            qemu_domain_cpr_end(c->other, false);
            cpr_bound(job, CPR_EXIT_WAIT_S);
        }
        return; /* its exit (or the bound) continues */
    }
    if (c->resuming || c->status_pending || c->cont_pending)
        return; /* QEMU's RESUME (or the bound), query-status's or cont's answer continues */
    if (!c->resumed && !c->status_asked && !job->qemu_gone && !qemu_monitor_is_closed(old_mon)) {
        c->status_asked = true;
        c->status_pending = true;
        clear_source(&job->bound_src);
        qemu_monitor_json_query_status(old_mon, cpr_old_status_done, job_ref(job));
        return;
    }
    /* Only when nothing told the run state (the monitor went away): a
     * guest that QEMU or we resumed is never reported as paused. */
    if (!c->resumed && !c->status_asked && job->was_running && !job->qemu_gone)
        HO_WARN("domain '%s': the run state of the guest in its old QEMU is unknown after the "
                "failed CPR transfer", job->name);
    cpr_end(job, job->cancelled ? QEMU_MIGRATION_PHASE_CANCELLED : QEMU_MIGRATION_PHASE_FAILED);
}

/* Fail (err consumed) before the guest runs in the new QEMU. */
static void
cpr_fail(Job *job, HoError *err)
{
    job_keep_error(job, err);
    cpr_unwind(job);
}

static void
cpr_fail_take(Job *job)
{
    cpr_fail(job, error_steal_or_unknown());
}

/* The CPR part of qemu_migration_any_abort, after its checks passed. */
static int
cpr_abort(Job *job)
{
    if (job->phase == QEMU_MIGRATION_PHASE_BEGIN) {
        job->unwinding = true; /* the start sees it */
        return 0;
    }
    cpr_unwind(job);
    return 0;
}

/* Whether the old QEMU already reported the CPR transfer completed. */
static bool
cpr_src_completed(Job *job)
{
    return job->cpr && job->cpr->src_completed;
}

/* ---- success ---- */

static void
cpr_confirm(Job *job)
{
    CprJob *c = job->cpr;

    /* The old QEMU is gone: done. */
    if (c->other && !c->other_gone)
        return;
    HO_INFO("domain '%s': CPR transfer completed, now QEMU pid %d", job->name,
            qemu_domain_obj_pid(job->dom));
    cpr_end(job, QEMU_MIGRATION_PHASE_COMPLETED);
}

static void
cpr_new_cont_done(QemuMonitor *mon, const HoError *err, void *opaque)
{
    g_autoptr(Job) job = opaque;
    CprJob *c;

    if (!job_live(job) || !(c = job->cpr))
        return;
    if (err) {
        /* The new QEMU holds the guest and refused to run it; the old
         * one's state is older than the new one's: keep the domain
         * paused in the new QEMU, end the old. */
        job_keep_error(job, ho_error_new(HO_ERR_QMP,
                                         _("the new QEMU of domain '%1$s' refused cont after the "
                                           "CPR transfer: %2$s"),
                                         job->name, err->message));
    } else {
        c->running_us = ho_time_now_us();
    }
    if (job_set_phase(job, QEMU_MIGRATION_PHASE_CONFIRM) < 0) {
        HO_WARN("domain '%s': %s", job->name, ho_error_last_message());
        ho_error_reset();
    }
    /* The old QEMU (in postmigrate) quits; its exit ends the job. */
    qemu_domain_cpr_end(c->other, true);
    cpr_bound(job, CPR_EXIT_WAIT_S);
}

/* Both QEMUs completed: the domain takes the new QEMU, which runs. */
static void
cpr_switch(Job *job)
{
    CprJob *c = job->cpr;
    QemuMonitor *new_mon;

    if (!c->src_completed || !c->new_completed || c->switched)
        return;
    clear_source(&job->bound_src);
    /* The new QEMU may have died after its completed event was sent, its
     * exit not seen yet: the guest never ran there (no cont went to it),
     * so the old QEMU takes it back, as after any failure. */
    new_mon = qemu_domain_cpr_monitor(c->other);
    if (!new_mon || qemu_monitor_is_closed(new_mon) || qemu_domain_cpr_exited(c->other)) {
        cpr_fail(job, ho_error_new(HO_ERR_SYSTEM,
                                   _("the new QEMU of domain '%1$s' exited before the guest was "
                                     "switched to it"),
                                   job->name));
        return;
    }
    if (job_set_phase(job, QEMU_MIGRATION_PHASE_FINISH) < 0) {
        cpr_fail_take(job);
        return;
    }
    if (c->new_sub) {
        qemu_monitor_unsubscribe(new_mon, c->new_sub);
        c->new_sub = 0;
    }
    /* Our subscriptions stay with the old monitor (job->mon). */
    if (qemu_driver_domain_cpr_switch(job->mig->drv, job->dom, c->other) < 0) {
        cpr_fail_take(job);
        return;
    }
    c->switched = true;
    c->other_gone = false;
    if (job->args.paused || !job->was_running) {
        cpr_new_cont_done(new_mon, NULL, job_ref(job));
        return;
    }
    c->cont_sent = true;
    qemu_monitor_json_cont(new_mon, cpr_new_cont_done, job_ref(job));
}

/* ---- the QEMUs' events ---- */

/* MIGRATION on the old QEMU. */
static void
cpr_src_event(QemuMonitor *mon, const char *name, json_object *data, gint64 qemu_ts_us,
              gint64 recv_ts_us, void *opaque)
{
    Job *job = opaque;
    g_autoptr(Job) hold = NULL;
    const char *status = NULL;
    QemuMigrationStatus st;

    if (!job_live(job) || !job->cpr || !data || ho_json_opt_string(data, "status", &status) <= 0) {
        ho_error_reset();
        return;
    }
    hold = job_ref(job);
    st = qemu_migration_status_from_string(status);
    job->qstatus = st;
    switch (st) {
    case QEMU_MIGRATION_STATUS_COMPLETED:
        job->cpr->src_completed = true;
        job->cpr->completed_us = ho_time_now_us();
        if (job->unwinding) {
            cpr_unwind(job);
            return;
        }
        if (job_set_phase(job, QEMU_MIGRATION_PHASE_SWITCHOVER) < 0) {
            cpr_fail_take(job);
            return;
        }
        if (!job->cpr->new_completed)
            cpr_bound(job, CPR_INCOMING_WAIT_S);
        cpr_switch(job);
        break;
    case QEMU_MIGRATION_STATUS_FAILED:
        if (!job->cancelled)
            job_keep_error(job, ho_error_new(HO_ERR_QMP,
                                             _("QEMU reported the CPR transfer of domain '%1$s' "
                                               "as failed"),
                                             job->name));
        cpr_unwind(job);
        break;
    case QEMU_MIGRATION_STATUS_CANCELLED:
        if (!job->cancelled)
            job_keep_error(job, ho_error_new(HO_ERR_QMP,
                                             _("the CPR transfer of domain '%1$s' was cancelled "
                                               "in QEMU"),
                                             job->name));
        cpr_unwind(job);
        break;
    default:
        break;
    }
}

/* RESUME on the old QEMU: QEMU's own resume after a failure or cancel. */
static void
cpr_src_resume(QemuMonitor *mon, const char *name, json_object *data, gint64 qemu_ts_us,
               gint64 recv_ts_us, void *opaque)
{
    Job *job = opaque;
    g_autoptr(Job) hold = NULL;

    if (!job_live(job) || !job->cpr || !job->migrate_sent)
        return;
    hold = job_ref(job);
    HO_INFO("domain '%s': QEMU resumed the guest in its old QEMU", job->name);
    job->cpr->resumed = true;
    if (job->cpr->resuming) {
        job->cpr->resuming = false;
        clear_source(&job->bound_src);
        cpr_unwind(job);
    }
}

/* MIGRATION on the new QEMU (its incoming side). */
static void
cpr_new_event(QemuMonitor *mon, const char *name, json_object *data, gint64 qemu_ts_us,
              gint64 recv_ts_us, void *opaque)
{
    Job *job = opaque;
    g_autoptr(Job) hold = NULL;
    const char *status = NULL;
    QemuMigrationStatus st;

    if (!job_live(job) || !job->cpr || !data || ho_json_opt_string(data, "status", &status) <= 0) {
        ho_error_reset();
        return;
    }
    hold = job_ref(job);
    st = qemu_migration_status_from_string(status);
    if (st == QEMU_MIGRATION_STATUS_COMPLETED) {
        job->cpr->new_completed = true;
        if (!job->unwinding)
            cpr_switch(job);
    } else if (st == QEMU_MIGRATION_STATUS_FAILED) {
        /* The old QEMU's migration fails too; its event drives the unwinding. */
        job_keep_error(job, ho_error_new(HO_ERR_QMP,
                                         _("the new QEMU of domain '%1$s' failed to receive the "
                                           "CPR transfer"),
                                         job->name));
        if (job->cpr->src_completed)
            cpr_unwind(job);
    }
}

/* The other QEMU exited: before the switch the new one, after it the old. */
static void
cpr_other_exited(QemuDomainCpr *cpr, const char *how, void *opaque)
{
    Job *job = opaque;
    g_autoptr(Job) hold = NULL;
    CprJob *c;

    if (!job_live(job) || !(c = job->cpr))
        return;
    hold = job_ref(job);
    c->other_gone = true;
    if (c->switched) {
        clear_source(&job->bound_src);
        if (job->err) {
            cpr_end(job, QEMU_MIGRATION_PHASE_FAILED);
            return;
        }
        cpr_confirm(job);
        return;
    }
    if (!c->ending)
        job_keep_error(job, ho_error_new(HO_ERR_SYSTEM,
                                         _("the new QEMU of domain '%1$s' %2$s during the CPR "
                                           "transfer"),
                                         job->name, how));
    if (c->ending)
        clear_source(&job->bound_src);
    cpr_unwind(job);
}

/* The domain's QEMU exited: before the switch the old one, after it the new one. */
static void
cpr_dom_exited(QemuDomainObj *dom, const char *how, void *opaque)
{
    Job *job = opaque;
    g_autoptr(Job) hold = NULL;
    CprJob *c;

    job->exit_watch = 0; /* removed after it ran */
    if (!job_live(job) || !(c = job->cpr))
        return;
    hold = job_ref(job);
    job->qemu_gone = true;
    if (c->switched) {
        job_keep_error(job, ho_error_new(HO_ERR_SYSTEM,
                                         _("the new QEMU of domain '%1$s' %2$s right after the "
                                           "CPR transfer: the guest is lost"),
                                         job->name, how));
        if (c->other && !c->other_gone)
            qemu_domain_cpr_end(c->other, false);
        cpr_end(job, QEMU_MIGRATION_PHASE_FAILED);
        return;
    }
    job_keep_error(job, ho_error_new(HO_ERR_SYSTEM,
                                     _("the QEMU of domain '%1$s' %2$s during the CPR transfer"),
                                     job->name, how));
    job->qstatus = QEMU_MIGRATION_STATUS_FAILED;
    cpr_unwind(job);
}

/* ---- the start ---- */

static void
cpr_migrate_done(QemuMonitor *mon, const HoError *err, void *opaque)
{
    g_autoptr(Job) job = opaque;

    if (!job_live(job) || !job->cpr || !err)
        return;
    /* Refused at once (say a RAM block that is not shareable): QEMU's
     * migration never started, the guest was not stopped. */
    job->qstatus = QEMU_MIGRATION_STATUS_FAILED;
    cpr_fail(job, ho_error_new(HO_ERR_QMP, _("the CPR transfer of domain '%1$s' failed: %2$s"),
                               job->name, err->message));
}

static json_object *
cpr_channel(const char *type, const char *path)
{
    json_object *chan = json_object_new_object();
    json_object *addr = json_object_new_object();

    ho_json_add_string(addr, "transport", "socket");
    ho_json_add_string(addr, "type", "unix");
    ho_json_add_string(addr, "path", path);
    ho_json_add_string(chan, "channel-type", type);
    ho_json_add(chan, "addr", addr);
    return chan;
}

static void
cpr_src_params_done(QemuMonitor *mon, const HoError *err, void *opaque)
{
    g_autoptr(Job) job = opaque;
    json_object *channels;
    CprJob *c;

    if (!job_live(job) || !(c = job->cpr) || job->unwinding)
        return;
    if (err) {
        cpr_fail(job, ho_error_copy(err));
        return;
    }
    if (job_set_phase(job, QEMU_MIGRATION_PHASE_PERFORM) < 0) {
        cpr_fail_take(job);
        return;
    }
    /* The phase event's listeners run inside job_set_phase: an abort
     * there already unwound (the new QEMU is being killed): no migrate. */
    if (job->unwinding || !job->cpr)
        return;
    channels = json_object_new_array();
    json_object_array_add(channels, cpr_channel("main", qemu_domain_cpr_main_path(c->other)));
    json_object_array_add(channels, cpr_channel("cpr", qemu_domain_cpr_channel_path(c->other)));
    job->migrate_sent = true;
    qemu_monitor_json_migrate_channels(mon, channels, cpr_migrate_done, job_ref(job));
    /* The new QEMU's monitor answers once it has read the CPR state. */
    cpr_bound(job, CPR_GREETING_WAIT_S);
}

static void
cpr_src_caps_done(QemuMonitor *mon, const HoError *err, void *opaque)
{
    g_autoptr(Job) job = opaque;
    json_object *params;

    if (!job_live(job) || !job->cpr || job->unwinding)
        return;
    if (err) {
        cpr_fail(job, ho_error_copy(err));
        return;
    }
    params = json_object_new_object();
    ho_json_add_string(params, "mode", qemu_mig_mode_to_string(QEMU_MIG_MODE_CPR_TRANSFER));
    qemu_monitor_json_migrate_set_parameters(mon, params, cpr_src_params_done, job_ref(job));
}

static void
cpr_incoming_done(QemuMonitor *mon, const HoError *err, void *opaque)
{
    g_autoptr(Job) job = opaque;

    if (!job_live(job) || !job->cpr || !err)
        return;
    if (job->cpr->ending || job->cpr->other_gone)
        return; /* killed by us, or its exit says more */
    cpr_fail(job, ho_error_new(HO_ERR_QMP,
                               _("the new QEMU of domain '%1$s' refused the incoming CPR "
                                 "transfer: %2$s"),
                               job->name, err->message));
}

static void
cpr_new_caps_done(QemuMonitor *mon, const HoError *err, void *opaque)
{
    g_autoptr(Job) job = opaque;
    CprJob *c;

    if (!job_live(job) || !(c = job->cpr) || c->ending || c->other_gone)
        return;
    if (err) {
        cpr_fail(job, ho_error_new(HO_ERR_QMP,
                                   _("the new QEMU of domain '%1$s' did not take the migration "
                                     "settings: %2$s"),
                                   job->name, err->message));
        return;
    }
    /* The monitor answered: the CPR state is in. Now the main channel. */
    c->incoming_sent = true;
    {
        g_autofree char *uri = g_strdup_printf("unix:%s", qemu_domain_cpr_main_path(c->other));

        qemu_monitor_json_migrate_incoming(mon, uri, cpr_incoming_done, job_ref(job));
    }
    cpr_bound(job, CPR_INCOMING_WAIT_S);
}

#define CPR_CHAN_RETRY_MS 10
#define CPR_CHAN_MAX_TRIES 500
#define PROC_NET_UNIX_MAX (16 * 1024 * 1024)
#define SO_ACCEPTCON_FLAG 0x10000 /* /proc/net/unix "Flags": a listening socket */

/* Whether a UNIX socket bound at path listens (per /proc/net/unix): QEMU
 * binds, then listens; a connect in between is refused, and the refused
 * CPR channel fails the source's migrate (seen on 10.0). */
static bool
cpr_socket_listening(const char *path)
{
    g_autofree char *text = NULL;
    gsize len = 0;
    char *line, *save = NULL;

    if (!g_file_get_contents("/proc/net/unix", &text, &len, NULL) || len > PROC_NET_UNIX_MAX)
        return g_file_test(path, G_FILE_TEST_EXISTS); /* no better knowledge */
    for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        g_auto(GStrv) f = g_strsplit_set(line, " ", -1);
        const char *fields[8] = {0};
        guint n = 0;
        guint64 flags;

        for (guint i = 0; f[i] && n < G_N_ELEMENTS(fields); i++)
            if (f[i][0])
                fields[n++] = f[i];
        /* Num RefCount Protocol Flags Type St Inode Path */
        if (n < 8 || !g_str_equal(fields[7], path))
            continue;
        flags = g_ascii_strtoull(fields[3], NULL, 16);
        if (flags & SO_ACCEPTCON_FLAG)
            return true;
    }
    return false;
}

static gboolean
cpr_chan_retry_fired(gpointer opaque)
{
    Job *job = opaque;

    if (job->cpr)
        g_clear_pointer(&job->cpr->chan_retry, g_source_unref);
    cpr_chan_check(job);
    return G_SOURCE_REMOVE;
}

/* Once the CPR channel socket listens: the source's settings, then migrate. */
static void
cpr_chan_check(Job *job)
{
    CprJob *c = job->cpr;

    if (!job_live(job) || !c || c->chan_ready || !c->other || job->unwinding ||
        !g_file_test(qemu_domain_cpr_channel_path(c->other), G_FILE_TEST_EXISTS))
        return;
    if (!cpr_socket_listening(qemu_domain_cpr_channel_path(c->other))) {
        /* Bound to listen within microseconds of its creation (no event
         * says when): look again shortly, a bounded number of times; the
         * greeting bound ends the job in any case. */
        if (!c->chan_retry && c->chan_tries++ < CPR_CHAN_MAX_TRIES)
            c->chan_retry = job_timeout(job, CPR_CHAN_RETRY_MS, cpr_chan_retry_fired);
        return;
    }
    c->chan_ready = true;
    if (c->chan_watch) {
        g_signal_handlers_disconnect_matched(c->chan_watch, G_SIGNAL_MATCH_DATA, 0, 0, NULL,
                                             NULL, job);
        g_file_monitor_cancel(c->chan_watch);
        g_clear_object(&c->chan_watch);
    }
    {
        static const char *const names[] = {"events"};
        static const bool states[] = {true};

        qemu_monitor_json_migrate_set_capabilities(job->mon, names, states, 1, cpr_src_caps_done,
                                                   job_ref(job));
    }
}

static void
cpr_chan_changed(GFileMonitor *monitor, GFile *file, GFile *other_file,
                 GFileMonitorEvent event, gpointer opaque)
{
    Job *job = opaque;
    g_autoptr(Job) hold = job_ref(job);

    cpr_chan_check(job);
}

/* The new QEMU's capabilities are known: it must do CPR transfer too. */
static void
cpr_caps_ready(QemuDriver *drv, const QemuCaps *caps, const HoError *err, void *opaque)
{
    g_autoptr(Job) job = opaque;
    CprJob *c;
    QemuMonitor *new_mon;
    static const char *const names[] = {"events"};
    static const bool states[] = {true};

    if (!job_live(job) || !(c = job->cpr))
        return;
    if (job->unwinding) {
        cpr_unwind(job);
        return;
    }
    if (err) {
        cpr_fail(job, ho_error_copy(err));
        return;
    }
    if (!qemu_caps_has(caps, QEMU_CAPS_CPR_TRANSFER)) {
        cpr_fail(job, ho_error_new(HO_ERR_NO_SUPPORT,
                                   _("the new QEMU '%1$s' for domain '%2$s' cannot do a CPR "
                                     "transfer"),
                                   job->emulator ? job->emulator
                                                 : qemu_domain_obj_emulator(job->dom),
                                   job->name));
        return;
    }
    if (job_set_phase(job, QEMU_MIGRATION_PHASE_PREPARE) < 0) {
        cpr_fail_take(job);
        return;
    }
    if (job->unwinding || !job->cpr)
        return; /* aborted by a listener of the phase event: it unwinds */
    c->other = qemu_driver_domain_cpr_spawn(drv, job->dom, job->emulator, caps, cpr_other_exited,
                                            job);
    if (!c->other) {
        cpr_fail_take(job);
        return;
    }
    /* The record names the new QEMU before anything else happens (the
     * guest still runs in the old one): a daemon that restarts from here
     * on ends it (cpr_recover_job) instead of leaving it behind. */
    if (qemu_driver_domain_set_job(drv, job->dom, job_record(job)) < 0) {
        cpr_fail_take(job);
        return;
    }
    new_mon = qemu_domain_cpr_monitor(c->other);
    if (job->rec)
        qemu_monitor_set_recorder(new_mon, job->rec);
    c->new_sub = qemu_monitor_subscribe(new_mon, "MIGRATION", cpr_new_event, job);
    /* Queued until its greeting, which comes after the source's migrate. */
    qemu_monitor_json_migrate_set_capabilities(new_mon, names, states, 1, cpr_new_caps_done,
                                               job_ref(job));
    /* The source may connect only once the new QEMU listens on its CPR
     * channel (QEMU 10.0 takes no passed fd there): wait for the socket
     * file (inotify; QEMU listens right after it binds), bounded. */
    {
        g_autofree char *dir = g_path_get_dirname(qemu_domain_cpr_channel_path(c->other));
        g_autoptr(GFile) gdir = g_file_new_for_path(dir);
        g_autoptr(GError) gerr = NULL;

        c->chan_watch = g_file_monitor_directory(gdir, G_FILE_MONITOR_NONE, NULL, &gerr);
        if (!c->chan_watch) {
            cpr_fail(job, ho_error_new(HO_ERR_SYSTEM, _("cannot watch '%1$s': %2$s"), dir,
                                       gerr->message));
            return;
        }
        g_signal_connect(c->chan_watch, "changed", G_CALLBACK(cpr_chan_changed), job);
    }
    cpr_bound(job, CPR_GREETING_WAIT_S);
    cpr_chan_check(job);
}

static gboolean
cpr_start(gpointer opaque)
{
    Job *job = opaque;

    g_clear_pointer(&job->bound_src, g_source_unref);
    if (!job_live(job))
        return G_SOURCE_REMOVE;
    if (job->unwinding) {
        cpr_unwind(job);
        return G_SOURCE_REMOVE;
    }
    qemu_driver_get_caps(job->mig->drv,
                         job->emulator ? job->emulator : qemu_domain_obj_emulator(job->dom),
                         cpr_caps_ready, job_ref(job));
    return G_SOURCE_REMOVE;
}

/* The checks before anything is touched; -1 and an error. */
static int
cpr_check(QemuMigration *mig, QemuDomainObj *dom, const QemuMigrationArgs *args,
          char **emulator)
{
    const char *name = qemu_domain_obj_name(dom);
    const QemuDomainDef *def = qemu_domain_obj_def(dom, false);
    const QemuCaps *caps = qemu_domain_obj_caps(dom);
    QemuDomainState state = qemu_domain_obj_state(dom);

    if (mig_find_job(mig, qemu_domain_obj_uuid(dom)) || qemu_domain_obj_get_job(dom)) {
        ho_error_report(HO_ERR_OPERATION_INVALID, _("domain '%1$s' is already in a migration job"),
                        name);
        return -1;
    }
    if (!qemu_domain_obj_is_active(dom) || !qemu_domain_obj_monitor(dom) ||
        qemu_domain_obj_is_reconnecting(dom) || !def || !caps ||
        (state != QEMU_DOMAIN_STATE_RUNNING && state != QEMU_DOMAIN_STATE_PAUSED)) {
        ho_error_report(HO_ERR_OPERATION_INVALID,
                        _("domain '%1$s' is not running (or its monitor is not available)"), name);
        return -1;
    }
    if (!qemu_caps_has(caps, QEMU_CAPS_CPR_TRANSFER) ||
        !qemu_caps_has(caps, QEMU_CAPS_MIGRATE_CHANNELS) ||
        !qemu_caps_has(caps, QEMU_CAPS_EVENTS_CAP)) {
        unsigned int v = qemu_caps_version(caps);
        g_autofree char *version =
            g_strdup_printf("%u.%u.%u", v / 1000000, (v / 1000) % 1000, v % 1000);

        ho_error_report(HO_ERR_NO_SUPPORT,
                        _("the QEMU of domain '%1$s' (version %2$s) cannot do a CPR transfer "
                          "(migration mode 'cpr-transfer' needs QEMU 10.0 or later)"),
                        name, version);
        return -1;
    }
    if (!def->memfd || !def->shared) {
        ho_error_report(HO_ERR_OPERATION_INVALID,
                        _("domain '%1$s' needs its memory in a shared memfd backend "
                          "(<memoryBacking><source type='memfd'/><access mode='shared'/>) for a "
                          "CPR transfer"),
                        name);
        return -1;
    }
    if (args->postcopy || args->postcopy_after_precopy || storage_copy(args) || args->parallel ||
        args->migrate_uri || args->listen_address || args->dname || args->auto_converge ||
        args->persistent || args->undefine_source || args->timeout_s) {
        ho_error_report(HO_ERR_INVALID_ARG, "%s",
                        _("a CPR transfer takes no postcopy, storage copy, parallel, URI, "
                          "dname, auto-converge, persistent, undefinesource or timeout options"));
        return -1;
    }
    *emulator = NULL;
    if (args->dxml) {
        g_autoptr(QemuDomainDef) nd = qemu_domain_def_parse_string(args->dxml, NULL);

        if (!nd)
            return -1;
        if (!g_str_equal(nd->name, def->name) || memcmp(nd->uuid, def->uuid, 16) != 0) {
            ho_error_report(HO_ERR_INVALID_ARG,
                            _("the XML for the CPR transfer of domain '%1$s' names another "
                              "domain"),
                            name);
            return -1;
        }
        *emulator = g_strdup(nd->emulator);
    }
    return 0;
}

int
qemu_migration_src_cpr_transfer(QemuMigration *mig, QemuDomainObj *dom,
                                const QemuMigrationArgs *args, QemuMigrationDoneFunc cb,
                                void *opaque)
{
    g_autoptr(Job) job = NULL;
    g_autofree char *emulator = NULL;
    QemuMonitor *mon;

    if (cpr_check(mig, dom, args, &emulator) < 0)
        return -1;
    mon = qemu_domain_obj_monitor(dom);
    job = job_new(mig, true, qemu_domain_obj_name(dom), qemu_domain_obj_uuid(dom));
    job->dom = qemu_domain_obj_ref(dom);
    args_copy(&job->args, args);
    job->emulator = g_steal_pointer(&emulator);
    job->done_cb = cb;
    job->done_opaque = opaque;
    job->was_running = qemu_domain_obj_state(dom) == QEMU_DOMAIN_STATE_RUNNING;
    job->cpr = g_new0(CprJob, 1);
    job->peer_host_uuid = g_strdup(mig->host_uuid);
    job->peer_hostname = g_strdup(mig->hostname);
    if (args->record_path) {
        job->record_path = g_strdup(args->record_path);
    } else if (mig->record_dir) {
        g_autofree char *stamp = record_stamp();
        g_autofree char *file = g_strdup_printf("%s-%s-cpr.jsonl", job->name, stamp);

        job->record_path = g_build_filename(mig->record_dir, file, NULL);
    }
    job->mon = qemu_monitor_ref(mon);
    job_attach_recorder(job, mon);

    g_hash_table_insert(mig->jobs, g_strdup(job->uuid), job_ref(job));
    job->mig_sub = qemu_monitor_subscribe(mon, "MIGRATION", cpr_src_event, job);
    job->cpr->resume_mon = qemu_monitor_ref(mon);
    job->cpr->resume_sub = qemu_monitor_subscribe(mon, "RESUME", cpr_src_resume, job);
    job->exit_watch = qemu_domain_obj_add_exit_watch(dom, cpr_dom_exited, job);
    if (job_set_phase(job, QEMU_MIGRATION_PHASE_BEGIN) < 0) {
        HoError *saved = ho_error_save();

        job->ended = true;
        job_detach(job);
        g_clear_pointer(&job->cpr, cpr_job_free);
        g_hash_table_remove(mig->jobs, job->uuid);
        ho_error_restore(&saved);
        return -1;
    }
    HO_INFO("domain '%s': CPR transfer begins", job->name);
    job->bound_src = g_idle_source_new();
    g_source_set_callback(job->bound_src, cpr_start, job_ref(job), (GDestroyNotify)job_unref);
    g_source_attach(job->bound_src, mig->ctx);
    return 0;
}

/* ---- a daemon restart during a CPR transfer ---- */

/*
 * The job record of a CPR job (written with BEGIN, PREPARE, PERFORM and
 * CONFIRM) names both QEMUs by pid and start time: "cpr_old_pid" (the
 * domain's QEMU when the job began) and, once it was started,
 * "cpr_new_pid". A restarted daemon finds the domain on one of them (the
 * driver's status file is rewritten at the switch, before cont):
 *
 * - on the old QEMU (no switch happened): the new QEMU, if recorded and
 *   still the same process, is killed; the old QEMU's migration status
 *   and run state then go through the failure path above (cancel if
 *   still running, QEMU's own RESUME awaited within a bound, cont only
 *   when QEMU's migration had completed or QEMU did not resume it); the
 *   job ends failed;
 * - on the new QEMU (the switch happened): the old QEMU, if still the
 *   same process, is killed (it is in postmigrate, its state handed
 *   over); the new QEMU gets cont if the guest ran before and is still
 *   paused; the job ends completed.
 */

#define CPR_REC_NEW_PID "cpr_new_pid"
#define CPR_REC_NEW_START "cpr_new_start"
#define CPR_REC_OLD_PID "cpr_old_pid"
#define CPR_REC_OLD_START "cpr_old_start"

static void
cpr_record(Job *job, json_object *obj)
{
    CprJob *c = job->cpr;
    unsigned long long start = 0;
    int pid;

    if (!c->switched && job->dom && (pid = qemu_domain_obj_pid(job->dom)) > 0 &&
        qemu_process_start_time(pid, &start) == 0) {
        ho_json_add_int64(obj, CPR_REC_OLD_PID, pid);
        ho_json_add_int64(obj, CPR_REC_OLD_START, (gint64)start);
    }
    ho_error_reset();
    if (!c->switched && c->other && (pid = qemu_domain_cpr_pid(c->other)) > 0 &&
        qemu_process_start_time(pid, &start) == 0) {
        ho_json_add_int64(obj, CPR_REC_NEW_PID, pid);
        ho_json_add_int64(obj, CPR_REC_NEW_START, (gint64)start);
    }
    ho_error_reset();
    if (c->switched && job->dom && (pid = qemu_domain_obj_pid(job->dom)) > 0) {
        /* CONFIRM: the domain runs the new QEMU; the old one is c->other. */
        ho_json_add_int64(obj, CPR_REC_NEW_PID, pid);
        if (qemu_process_start_time(pid, &start) == 0)
            ho_json_add_int64(obj, CPR_REC_NEW_START, (gint64)start);
        if (c->other && (pid = qemu_domain_cpr_pid(c->other)) > 0 &&
            qemu_process_start_time(pid, &start) == 0) {
            ho_json_add_int64(obj, CPR_REC_OLD_PID, pid);
            ho_json_add_int64(obj, CPR_REC_OLD_START, (gint64)start);
        }
        ho_error_reset();
    }
}

/* SIGKILL the recorded process pid_key if it is still the one started at
 * start_key (a pidfd: never a later process with that pid). */
static void
cpr_kill_recorded(Job *job, json_object *rec, const char *pid_key, const char *start_key)
{
    gint64 pid = 0, start = 0;
    unsigned long long now_start = 0;
    int pidfd;

    if (ho_json_opt_int64(rec, pid_key, &pid) <= 0 || pid <= 0 ||
        ho_json_opt_int64(rec, start_key, &start) <= 0) {
        ho_error_reset();
        return;
    }
    pidfd = qemu_process_pidfd_open((pid_t)pid);
    if (pidfd < 0) {
        ho_error_reset(); /* gone already */
        return;
    }
    if (qemu_process_start_time((pid_t)pid, &now_start) == 0 &&
        now_start == (unsigned long long)start) {
        HO_INFO("domain '%s': killing the QEMU pid %d left by the interrupted CPR transfer",
                job->name, (int)pid);
        if (qemu_process_pidfd_send_signal(pidfd, SIGKILL) < 0)
            ho_error_reset();
    }
    ho_error_reset();
    close(pidfd);
}

static void
cpr_recover_new_status_done(QemuMonitor *mon, const QemuMonitorStatus *st, const HoError *err,
                            void *opaque)
{
    g_autoptr(Job) job = opaque;

    if (!job_live(job))
        return;
    if (!err && !st->running && job->was_running) {
        HO_INFO("domain '%s': resuming the guest in its new QEMU after the restart", job->name);
        qemu_monitor_json_cont(mon, NULL, NULL);
    }
    g_clear_pointer(&job->cpr, cpr_job_free);
    job_end(job, QEMU_MIGRATION_PHASE_COMPLETED);
}

static void
cpr_recover_old_migrate_done(QemuMonitor *mon, const QemuMigrationInfo *qi, const HoError *err,
                             void *opaque)
{
    g_autoptr(Job) job = opaque;

    if (!job_live(job) || !job->cpr)
        return;
    job->qstatus = err ? QEMU_MIGRATION_STATUS_NONE : qi->status;
    job->cpr->src_completed = job->qstatus == QEMU_MIGRATION_STATUS_COMPLETED;
    /* Not final: cancelled through the failure path (QEMU then resumes
     * the guest itself); final: its run state decides. */
    job->migrate_sent = job->phase >= QEMU_MIGRATION_PHASE_PERFORM &&
                        job->qstatus != QEMU_MIGRATION_STATUS_NONE;
    cpr_unwind(job);
}

/* A recovered job record of a CPR transfer: true when it is one (the job
 * then carries on here), false for any other job. */
static bool
cpr_recover_job(Job *job, json_object *rec)
{
    gint64 new_pid = 0;

    if (!job->src || !job->args.mode || !g_str_equal(job->args.mode, "cpr-transfer"))
        return false;
    job->cpr = g_new0(CprJob, 1);
    job->peer_gone = false;
    if (ho_json_opt_int64(rec, CPR_REC_NEW_PID, &new_pid) <= 0)
        new_pid = 0;
    ho_error_reset();
    if (new_pid > 0 && new_pid == qemu_domain_obj_pid(job->dom)) {
        /* The switch happened: the domain is on the new QEMU. */
        HO_INFO("domain '%s': the CPR transfer had switched to QEMU pid %d before the restart",
                job->name, (int)new_pid);
        cpr_kill_recorded(job, rec, CPR_REC_OLD_PID, CPR_REC_OLD_START);
        qemu_monitor_json_query_status(job->mon, cpr_recover_new_status_done, job_ref(job));
        return true;
    }
    /* Still on the old QEMU: the new one goes, the old one is unwound. */
    cpr_kill_recorded(job, rec, CPR_REC_NEW_PID, CPR_REC_NEW_START);
    job_keep_error(job, ho_error_new(HO_ERR_OPERATION_INVALID,
                                     _("the daemon restarted during the CPR transfer of domain "
                                       "'%1$s': the guest stays with its old QEMU"),
                                     job->name));
    job->mig_sub = qemu_monitor_subscribe(job->mon, "MIGRATION", cpr_src_event, job);
    job->cpr->resume_mon = qemu_monitor_ref(job->mon);
    job->cpr->resume_sub = qemu_monitor_subscribe(job->mon, "RESUME", cpr_src_resume, job);
    job->exit_watch = qemu_domain_obj_add_exit_watch(job->dom, cpr_dom_exited, job);
    if (job->phase < QEMU_MIGRATION_PHASE_PERFORM) {
        cpr_unwind(job);
        return true;
    }
    qemu_monitor_json_query_migrate(job->mon, cpr_recover_old_migrate_done, job_ref(job));
    return true;
}
