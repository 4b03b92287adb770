/*
 * The migration orchestrator (DESIGN.md §2-§3): peer-to-peer live
 * migration of a running domain to another host's daemon.
 *
 * Where a function runs is in its name:
 *   qemu_migration_src_*  only on the source host (the daemon that drives);
 *   qemu_migration_dst_*  only on the destination host;
 *   qemu_migration_any_*  on both.
 *
 * One QemuMigration per daemon, on top of its QemuDriver. A domain has at
 * most one job; the job is an explicit state machine (QemuMigrationPhase)
 * whose every change goes through one setter that checks the old phase,
 * logs, persists the job into the domain's status file (the driver's
 * qemu_driver_domain_set_job) and only then acts, and emits a job event.
 *
 * The source talks to the destination daemon only through the peer
 * operations below: the daemon implements them over its TCP peer
 * connection, tests call a destination QemuMigration in the same process.
 * Nothing here blocks the loop; every wait is for an event (QMP event,
 * reply, peer reply, process exit) and bounded where the event may never
 * come.
 */
#pragma once

#include <glib.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "ho_error.h"
#include "qemu_driver.h"

typedef struct _QemuMigration QemuMigration;

/* The phases of a job. The source walks BEGIN, PREPARE, MIRROR (only
 * with storage copy), PERFORM,
 * PRE_SWITCHOVER (only when QEMU has pause-before-switchover), SWITCHOVER,
 * FINISH, CONFIRM and ends in COMPLETED, FAILED or CANCELLED. The
 * destination walks PREPARE, PERFORM (its QEMU receiving), FINISH, and
 * ends the same way. */
typedef enum {
    QEMU_MIGRATION_PHASE_NONE = 0,
    QEMU_MIGRATION_PHASE_BEGIN,          /* src: checks, capabilities, cookie */
    QEMU_MIGRATION_PHASE_PREPARE,        /* src: waiting for the destination's Prepare;
                                          * dst: starting the incoming QEMU */
    QEMU_MIGRATION_PHASE_MIRROR,         /* src: block mirrors copying the disks to the
                                          * destination's NBD exports, until all READY */
    QEMU_MIGRATION_PHASE_PERFORM,        /* src: migrate issued, RAM moving;
                                          * dst: incoming QEMU receiving */
    QEMU_MIGRATION_PHASE_PRE_SWITCHOVER, /* src: QEMU stopped the guest before switchover;
                                          * what still writes is ended here */
    QEMU_MIGRATION_PHASE_SWITCHOVER,     /* src: migrate-continue sent (or no pause),
                                          * waiting for completed */
    QEMU_MIGRATION_PHASE_FINISH,         /* src: completed, destination asked to run;
                                          * dst: cont being issued */
    QEMU_MIGRATION_PHASE_CONFIRM,        /* src: quitting the source QEMU, or unwinding */
    /* Postcopy (issue 6): from POSTCOPY on the destination runs the guest
     * and the source is never resumed again. */
    QEMU_MIGRATION_PHASE_POSTCOPY,        /* both: postcopy-active */
    QEMU_MIGRATION_PHASE_POSTCOPY_PAUSED, /* both: postcopy-paused (or the source's
                                           * postcopy-recover-setup): recoverable */
    QEMU_MIGRATION_PHASE_POSTCOPY_RECOVER, /* both: recovery under way (migrate-recover on
                                            * the destination, migrate resume on the source) */
    QEMU_MIGRATION_PHASE_COMPLETED,      /* terminal */
    QEMU_MIGRATION_PHASE_FAILED,         /* terminal */
    QEMU_MIGRATION_PHASE_CANCELLED,      /* terminal */
    QEMU_MIGRATION_PHASE_LAST
} QemuMigrationPhase;

/* "begin", "prepare", "mirror", "perform", "pre-switchover", "switchover", "finish",
 * "confirm", "postcopy", "postcopy-paused", "postcopy-recover", "completed", "failed",
 * "cancelled" ("none" for NONE). */
const char *qemu_migration_phase_to_string(QemuMigrationPhase phase);
/* QEMU_MIGRATION_PHASE_LAST for an unknown name. */
QemuMigrationPhase qemu_migration_phase_from_string(const char *s);
/* Whether a phase ends a job. */
bool qemu_migration_phase_is_terminal(QemuMigrationPhase phase);

/* What the user asked for: virsh migrate's flags. Strings are owned. */
typedef struct {
    bool live;                   /* --live; without it the source is paused first */
    bool persistent;             /* --persistent: define on the destination */
    bool undefine_source;        /* --undefinesource */
    bool paused;                 /* --paused: leave the destination paused */
    char *dname;                 /* --dname: name on the destination, or NULL */
    char *dxml;                  /* --xml: destination domain XML (text), or NULL */
    char *migrate_uri;           /* --migrateuri tcp://HOST[:PORT], or NULL */
    char *listen_address;        /* --listen-address for the destination QEMU, or NULL */
    bool has_bandwidth;
    uint64_t bandwidth_mib;      /* --bandwidth, MiB/s */
    bool has_max_downtime;
    uint64_t max_downtime_ms;    /* --max-downtime */
    bool auto_converge;          /* --auto-converge */
    bool parallel;               /* --parallel (multifd) */
    unsigned int parallel_connections; /* --parallel-connections; 0: QEMU's default */
    unsigned int timeout_s;      /* --timeout; 0: none */
    bool timeout_abort;          /* --timeout-abort: abort instead of pausing the guest */
    bool unsafe;                 /* --unsafe: skip the disk cache check */
    char *record_path;           /* --record: flight recorder file for this job, or NULL */
    /* Storage copy (issue 5). */
    bool copy_storage_all;       /* --copy-storage-all: mirror whole disks (sync full) */
    bool copy_storage_inc;       /* --copy-storage-inc: only the top image (sync top); the
                                  * destination already has the backing chain */
    bool copy_storage_synchronous_writes; /* write-blocking mirrors */
    char **migrate_disks;        /* --migrate-disks vda,vdb: the disks to copy (target
                                  * names); NULL: every disk that is not shared */
    int disks_port;              /* --disks-port: NBD port on the destination; 0: range */
    char *disks_uri;             /* --disks-uri tcp://HOST[:PORT] or unix:PATH, or NULL */
    /* Postcopy and CPR (issue 6). */
    bool postcopy;               /* --postcopy: postcopy-ram on both sides, switch allowed */
    bool postcopy_after_precopy; /* --postcopy-after-precopy: switch after the first pass */
    bool has_postcopy_bandwidth;
    uint64_t postcopy_bandwidth_mib; /* --postcopy-bandwidth, MiB/s */
    char *mode;                  /* --mode: NULL or "normal", or "cpr-transfer" */
} QemuMigrationArgs;

void qemu_migration_args_clear(QemuMigrationArgs *args);
/* From the JSON object of the domain.migrate method (the field names are
 * documented in docs/protocol.md: "live", "persistent", "undefine_source",
 * "paused", "dname", "xml", "migrate_uri", "listen_address",
 * "bandwidth_mib", "max_downtime_ms", "auto_converge", "parallel",
 * "parallel_connections", "timeout_s", "timeout_abort", "unsafe",
 * "record", "copy_storage_all", "copy_storage_inc",
 * "copy_storage_synchronous_writes", "migrate_disks" (array of strings),
 * "disks_port", "disks_uri", "postcopy", "postcopy_after_precopy",
 * "postcopy_bandwidth_mib", "mode"). Unknown fields are refused. 0, or -1 and an error naming the
 * field; *args is untouched on failure. */
int qemu_migration_args_from_json(json_object *obj, QemuMigrationArgs *args);
/* The same fields back (a new object), for the job record and the cookie. */
json_object *qemu_migration_args_to_json(const QemuMigrationArgs *args);

/* ---- the per-daemon orchestrator ---- */

typedef struct {
    const char *host_uuid;      /* this host's identity (same-host refusal) */
    const char *hostname;
    /* Where incoming migration streams listen when the source gives no
     * --migrateuri/--listen-address (the destination's migration address),
     * and the port range tried in order (a port in use is skipped). */
    const char *migration_address;
    int migration_port_min;
    int migration_port_max;
    /* Directory for per-job flight recordings when every job records
     * (daemon setting), or NULL; --record overrides it per job. */
    const char *record_dir;
    /* How often progress events are emitted while a job runs (ms); 0: 500. */
    unsigned int progress_interval_ms;
    /* Storage copy, destination: the NBD server's port range, tried in
     * order (a port in use is skipped); 0: 10809-10872. --disks-port or a
     * port in --disks-uri overrides it. */
    int nbd_port_min;
    int nbd_port_max;
    /* Storage copy, source: a mirror that copies nothing for this many
     * seconds before it is ready aborts the migration; 0: 60. */
    unsigned int mirror_stall_s;
    /* Storage copy, destination: the qemu-img that creates missing target
     * images; NULL: the one next to the emulator, else qemu-img on PATH. */
    const char *qemu_img;
    /* Postcopy: a postcopy-active migration whose transferred bytes do not
     * move for this many seconds while the guest faults on missing pages,
     * or whose peer connection is lost, is forced into postcopy-paused
     * with migrate-pause so recovery can start; 0: 10. */
    unsigned int postcopy_stall_s;
    /* While a guest is paused for its switchover, its QEMU on this side
     * runs this many nice levels higher (down to -20); 0: off. Needs
     * CAP_SYS_NICE. */
    unsigned int switchover_boost;
    /* Precopy, source: the downtime limit the migration starts with, in
     * ms; each dirty-sync pass that did not end the migration doubles it,
     * up to --max-downtime (else QEMU's default, 300 ms). 0: off, the limit
     * is --max-downtime (or QEMU's) from the start. */
    unsigned int downtime_start_ms;
    /* Storage copy, source: the buf-size of each disk's mirror, the most
     * it keeps in flight to the destination, in bytes. QEMU frees the
     * buffer as the job ends, which is inside the guest's pause, and the
     * cost grows with its size. 0: QEMU's default (16 MiB). */
    guint64 mirror_buf_size;
    /* Precopy over one stream: the socket buffers of the migration
     * connection, in bytes, fixed on the destination's listening socket
     * (receive; QEMU before 8.2 listens on it, a later one is handed the
     * connection the destination daemon accepts) and on the connection
     * the source daemon makes for its QEMU (send). They bound how far
     * the source may run ahead of the destination. 0: automatic, a
     * window for 10 Gb/s at the round-trip time to the peer daemon, at
     * least 32 KiB; left to the kernel when that comes to more than
     * 4 MiB or the round trip is unknown. */
    guint64 stream_buffer;
} QemuMigrationConfig;

/* A job event: the domain (name and uuid), the event ("phase",
 * "progress", "warning", "completed", "failed", "cancelled") and its data
 * (borrowed: {"phase": ...} for "phase", the job info for "progress" and
 * the terminal events, plus "error" {code, message} when it failed;
 * {"message": ...} for "warning", e.g. a storage copy on a QEMU without
 * pause-before-switchover, whose mirrors can only end after completed). */
typedef void (*QemuMigrationEventFunc)(QemuMigration *mig, const char *name, const char *uuid,
                                       const char *event, json_object *data, void *opaque);

/* Create the orchestrator; the driver must outlive it. cfg is copied. */
QemuMigration *qemu_migration_new(QemuDriver *drv, const QemuMigrationConfig *cfg,
                                  QemuMigrationEventFunc event_cb, void *opaque);
/* Free. Running jobs are left as persisted (a restarted daemon finds them
 * with qemu_migration_any_recover); their callbacks do not run. Accepts NULL. */
void qemu_migration_free(QemuMigration *mig);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(QemuMigration, qemu_migration_free)

/* After a daemon restart, once the driver has reconnected to its domains:
 * every domain whose status holds a job is finished or unwound by
 * DESIGN.md §2: a source job before SWITCHOVER is cancelled and the source
 * resumed if it was running; a destination job before FINISH kills its
 * QEMU; a job whose outcome cannot be known (source after completed
 * without the destination's answer) leaves the source paused and fails
 * with an error saying so. Events report each outcome. */
void qemu_migration_any_recover(QemuMigration *mig);
/* The same for one domain; does nothing while the driver is still
 * reconnecting to it (call it again from the driver's "started"
 * "reconnected" event) or when it has no job record. Idempotent. */
void qemu_migration_any_recover_domain(QemuMigration *mig, QemuDomainObj *dom);

/* ---- talking to the peer daemon ---- */

/* A peer's answer: result borrowed on success, or err. */
typedef void (*QemuMigrationReplyFunc)(json_object *result, const HoError *err, void *opaque);

typedef struct {
    /* Prepare on the destination: cookie consumed; the reply is what
     * qemu_migration_dst_prepare answers. */
    void (*prepare)(void *peer, json_object *cookie, QemuMigrationReplyFunc cb, void *opaque);
    /* Finish on the destination: args consumed ({"uuid", "success"} and,
     * on success, the source's completion facts); the reply is what
     * qemu_migration_dst_finish answers. */
    void (*finish)(void *peer, json_object *args, QemuMigrationReplyFunc cb, void *opaque);
    /* The peer's identity from its hello: host_uuid and hostname (borrowed). */
    const char *(*host_uuid)(void *peer);
    const char *(*hostname)(void *peer);
    /* Drop the peer object (the job ended); may be NULL. */
    void (*free)(void *peer);
    /* Storage copy, optional (may be NULL): stop the destination's NBD
     * server now. args consumed: {"uuid": the domain's uuid}; the reply is
     * what qemu_migration_dst_nbd_stop answers ({} once the destination
     * QEMU stopped it, or an error). The source calls it in the
     * switchover window, once all mirrors are gone: in parallel with
     * migrate-continue when the destination has late-block-activate
     * (its images activate only at cont), else before migrate-continue.
     * Without it the destination stops the server itself in Finish,
     * right before cont. */
    void (*nbd_stop)(void *peer, json_object *args, QemuMigrationReplyFunc cb, void *opaque);
    /* Postcopy recovery: ask the destination to listen again. args
     * consumed: {"uuid"}; the reply is what qemu_migration_dst_recover
     * answers: {"uri": "tcp:HOST:PORT"} once migrate-recover was accepted. */
    void (*recover)(void *peer, json_object *args, QemuMigrationReplyFunc cb, void *opaque);
    /* Postcopy: force the destination into postcopy-paused (migrate-pause
     * there). args consumed: {"uuid"}; reply {} or an error. May be NULL. */
    void (*pause)(void *peer, json_object *args, QemuMigrationReplyFunc cb, void *opaque);
    /* The round-trip time to the peer daemon in microseconds, or -1 when
     * unknown. May be NULL. */
    int (*rtt_us)(void *peer);
} QemuMigrationPeerOps;

/* ---- source ---- */

/* A job ended: uuid of the domain, err NULL on success; stats is the
 * completed job info (borrowed, may be NULL). */
typedef void (*QemuMigrationDoneFunc)(QemuMigration *mig, const char *uuid, const HoError *err,
                                      json_object *stats, void *opaque);

/* Begin a migration of a running (or paused) domain to the peer. The
 * checks that need no QEMU or peer round trip run now: -1 and an error,
 * nothing changed (no domain, already in a job, not running, unsafe disk
 * cache without args->unsafe, same host by the peer's host_uuid, bad
 * dname/xml). Otherwise 0: the job runs on the loop, peer (consumed,
 * freed with ops->free when the job ends) carries it to the destination,
 * and cb runs exactly once when it ends. */
int qemu_migration_src_begin(QemuMigration *mig, QemuDomainObj *dom,
                             const QemuMigrationArgs *args, const QemuMigrationPeerOps *ops,
                             void *peer, QemuMigrationDoneFunc cb, void *opaque);
/* The connection to the peer daemon broke (its keepalive failed, or it
 * closed): the job of that domain unwinds if it can (before completed),
 * else leaves the source paused and fails saying so. */
void qemu_migration_src_peer_lost(QemuMigration *mig, const char *uuid, const HoError *err);

/* ---- destination ---- */

/* Prepare: the cookie from the source (borrowed). Refuses the same host,
 * flags this host's QEMU cannot honour, an existing domain of that name
 * or UUID that is active; starts the destination QEMU (this host's
 * emulator, the source's concrete machine type, -S -incoming defer), sets
 * the capabilities both sides need and issues migrate-incoming. cb gets
 * {"uri": "tcp:HOST:PORT", "host_uuid", "hostname"} or the error; on
 * error nothing is left behind. With storage copy it first creates the
 * missing target images (qemu-img, the source's size and format; only
 * the top image with --copy-storage-inc, on the backing file that must
 * be here already), remembers them in the job record and removes only
 * those on failure; after the QEMU started it sets late-block-activate
 * (when QEMU has it), starts the NBD server and exports each disk
 * writable (export name: the disk's format node name), and the answer
 * adds {"nbd": {"host", "port" | "path", "exports": [{"target", "name"}],
 * "late_block_activate": bool}}. */
void qemu_migration_dst_prepare(QemuMigration *mig, json_object *cookie,
                                QemuMigrationReplyFunc cb, void *opaque);
/* Finish: args {"uuid", "success", ...} (borrowed). success: wait for the
 * incoming QEMU's own completed, cont (unless paused was asked), persist
 * the domain (defined if persistent was asked); cb gets {"state":
 * "running"|"paused"}. failure: kill the incoming QEMU, drop the domain,
 * cb gets {}. */
void qemu_migration_dst_finish(QemuMigration *mig, json_object *args, QemuMigrationReplyFunc cb,
                               void *opaque);
/* Storage copy: stop the NBD server of the incoming QEMU of args
 * {"uuid"} (borrowed). cb gets {} once QEMU answered nbd-server-stop (at
 * once when it is not running), or an error (no such incoming job, QEMU
 * refused). Never fails the job itself: Finish stops the server again if
 * needed. */
void qemu_migration_dst_nbd_stop(QemuMigration *mig, json_object *args,
                                 QemuMigrationReplyFunc cb, void *opaque);
/* The source daemon's connection closed: incoming jobs it had not
 * finished are unwound (QEMU killed) unless the incoming QEMU already
 * completed, in which case the domain stays paused and the job fails
 * saying the outcome is unknown. */
void qemu_migration_dst_peer_lost(QemuMigration *mig, const char *uuid);

/* ---- both ---- */

/* Abort the domain's job (domjobabort): allowed in every phase before
 * SWITCHOVER; -1 and an error otherwise (no job, too late). The job then
 * ends CANCELLED through its done callback. */
int qemu_migration_any_abort(QemuMigration *mig, QemuDomainObj *dom);

/* Job information (domjobinfo): the running job's statistics, fresh from
 * query-migrate, or with completed the last finished job's. Fields:
 * "phase", "side", "elapsed_ms", "setup_ms", "data_total",
 * "data_processed", "data_remaining", "memory_total",
 * "memory_processed", "memory_remaining", "bandwidth_bps",
 * "dirty_rate_pps", "iteration", "expected_downtime_ms"; after
 * completion "downtime_ms", "total_ms", "orchestrator_ms" (source
 * completed -> destination running), "error" when it failed. With
 * storage copy also "disk_total", "disk_processed", "disk_remaining",
 * "disk_bandwidth_bps", and after completion "switchover_ms"
 * (pre-switchover event -> migrate-continue sent) split into
 * "switchover_qemu_ms" (block-job-cancel sent -> the last mirror gone,
 * and other QMP replies awaited) and "switchover_own_ms" (the rest).
 * "switchover_nice": the nice value this side's QEMU ran at while the
 * guest was paused for the switchover (QemuMigrationConfig
 * switchover_boost), when it was boosted. */
typedef void (*QemuMigrationInfoFunc)(json_object *info, const HoError *err, void *opaque);
void qemu_migration_any_job_info(QemuMigration *mig, QemuDomainObj *dom, bool completed,
                                 QemuMigrationInfoFunc cb, void *opaque);
/* Whether the domain has a running job. */
bool qemu_migration_any_has_job(QemuMigration *mig, QemuDomainObj *dom);

/* ---- postcopy and its recovery (issue 6) ---- */

/* `handover migrate-postcopy`: switch the domain's running precopy job
 * to postcopy (migrate-start-postcopy). Refused (-1 and an error) without
 * a job, when the job was not started with postcopy, or past PERFORM. */
int qemu_migration_src_start_postcopy(QemuMigration *mig, QemuDomainObj *dom);
/* `handover migrate --postcopy-resume DOMAIN DEST-URI`: recover a job in
 * POSTCOPY_PAUSED. The peer (consumed) is a fresh connection to the
 * destination daemon; its recover op gets a fresh URI, then the source
 * issues migrate {"uri", "resume": true}. cb runs once when this attempt
 * ends: err NULL when the migration completed, or the attempt's error
 * (the job then stays recoverable in POSTCOPY_PAUSED). -1 and an error
 * when there is no paused job. */
int qemu_migration_src_postcopy_resume(QemuMigration *mig, QemuDomainObj *dom,
                                       const QemuMigrationPeerOps *ops, void *peer,
                                       QemuMigrationDoneFunc cb, void *opaque);
/* Destination side of the recovery: args {"uuid"} (borrowed);
 * migrate-recover on a port from the range; cb gets {"uri"} or the error. */
void qemu_migration_dst_recover(QemuMigration *mig, json_object *args,
                                QemuMigrationReplyFunc cb, void *opaque);
/* `handover domjobabort --postcopy`, or the peer's pause op: migrate-pause
 * on this side's QEMU; -1 and an error when the job is not in POSTCOPY. */
int qemu_migration_any_pause_postcopy(QemuMigration *mig, QemuDomainObj *dom);
/* The destination side of the peer's pause op: args {"uuid"} borrowed. */
void qemu_migration_dst_pause(QemuMigration *mig, json_object *args, QemuMigrationReplyFunc cb,
                              void *opaque);

/* ---- CPR transfer (issue 6, QEMU 10.0+) ---- */

/* `handover migrate --mode cpr-transfer DOMAIN`: replace the domain's
 * QEMU on this host by a new one (this host's emulator, or args->dxml's)
 * with guest RAM handed over as memfds. Refused at once (-1 and an
 * error, nothing touched) when QEMU lacks cpr-transfer or the domain's
 * memory is not a shared memfd backend. cb runs once when the job ends;
 * on failure or cancel QEMU itself resumes the guest (never twice). */
int qemu_migration_src_cpr_transfer(QemuMigration *mig, QemuDomainObj *dom,
                                    const QemuMigrationArgs *args, QemuMigrationDoneFunc cb,
                                    void *opaque);
