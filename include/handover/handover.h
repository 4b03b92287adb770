/*
 * libhandover: the C client API of handover.
 *
 * A connection talks to one handoverd (docs/protocol.md). Calls are
 * synchronous and bounded; each connection runs its own private main
 * context, so the library can be used from programs with or without a
 * GLib main loop, one connection per thread.
 *
 * Errors: functions return 0 / -1, a pointer / NULL. After a failure,
 * handover_last_error() describes it (per thread) until the next call.
 */
#ifndef HANDOVER_H
#define HANDOVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with hidden visibility; only what is marked here is
 * exported. */
#if defined(__GNUC__) && __GNUC__ >= 4
# define HANDOVER_API __attribute__((visibility("default")))
#else
# define HANDOVER_API
#endif

#define HANDOVER_VERSION_MAJOR 0
#define HANDOVER_VERSION_MINOR 1

typedef struct _HandoverConnect HandoverConnect;
typedef struct _HandoverDomain HandoverDomain;

/* Error codes; the same stable names as the protocol's error codes. */
typedef enum {
    HANDOVER_ERR_NONE = 0,
    HANDOVER_ERR_INTERNAL,
    HANDOVER_ERR_INVALID_ARG,
    HANDOVER_ERR_SYSTEM,
    HANDOVER_ERR_JSON,
    HANDOVER_ERR_XML,
    HANDOVER_ERR_URI,
    HANDOVER_ERR_QMP,
    HANDOVER_ERR_MONITOR,
    HANDOVER_ERR_TIMEOUT,
    HANDOVER_ERR_NO_SUPPORT,
    HANDOVER_ERR_OPERATION_INVALID,
    HANDOVER_ERR_LIMIT,
    HANDOVER_ERR_RPC,
    HANDOVER_ERR_NO_DOMAIN,
} HandoverErrorCode;

typedef struct {
    HandoverErrorCode code;
    const char *code_name; /* "no-domain", ... */
    const char *message;   /* whole, translated */
} HandoverError;

/* The calling thread's last error, or NULL when the last call succeeded. */
HANDOVER_API
const HandoverError *handover_last_error(void);

/* ---- connections ---- */

/* Open a connection. uri: NULL or "handover:///system" (the default socket:
 * /run/handover/handoverd.sock for root, $XDG_RUNTIME_DIR/handover/handoverd.sock
 * otherwise), "handover+unix:///system?socket=PATH", or
 * "handover+tcp://HOST:PORT/system" (peer methods only). The environment
 * variable HANDOVER_DEFAULT_URI replaces the default. */
HANDOVER_API
HandoverConnect *handover_connect_open(const char *uri);
/* Close and free; accepts NULL. Domains obtained from it stay valid
 * objects but their calls fail. */
HANDOVER_API
void handover_connect_close(HandoverConnect *conn);
/* Per-call timeout in ms for calls that wait on the daemon (default 120000). */
HANDOVER_API
void handover_connect_set_timeout(HandoverConnect *conn, unsigned int timeout_ms);
/* The daemon's version string ("handoverd 0.1.0"); owned by conn. */
HANDOVER_API
const char *handover_connect_get_daemon_version(HandoverConnect *conn);
/* The daemon's hostname and host UUID; owned by conn. */
HANDOVER_API
const char *handover_connect_get_hostname(HandoverConnect *conn);
HANDOVER_API
const char *handover_connect_get_host_uuid(HandoverConnect *conn);
/* The host's QEMU capabilities as a JSON document (free() it); emulator may be NULL. */
HANDOVER_API
char *handover_connect_get_capabilities(HandoverConnect *conn, const char *emulator);
/* Host information as a JSON document (free() it). */
HANDOVER_API
char *handover_connect_get_info(HandoverConnect *conn);

/* ---- domains ---- */

typedef enum {
    HANDOVER_DOMAIN_NOSTATE = 0,
    HANDOVER_DOMAIN_RUNNING,
    HANDOVER_DOMAIN_PAUSED,
    HANDOVER_DOMAIN_SHUTOFF,
    HANDOVER_DOMAIN_CRASHED,
    HANDOVER_DOMAIN_SHUTTING_DOWN,
} HandoverDomainState;

/* "running", "paused", ... */
HANDOVER_API
const char *handover_domain_state_name(HandoverDomainState state);

typedef struct {
    HandoverDomainState state;
    uint64_t max_memory_kib;
    uint64_t memory_kib;
    unsigned int vcpus;
    bool persistent;
    int pid;              /* 0 when not running */
} HandoverDomainInfo;

enum {
    HANDOVER_LIST_ACTIVE = 1 << 0,
    HANDOVER_LIST_INACTIVE = 1 << 1,
};

/* All domains matching flags (0 means both); *domains is a malloc'ed array
 * of n entries, each freed with handover_domain_free, the array with free().
 * Returns n or -1. */
HANDOVER_API
int handover_connect_list_domains(HandoverConnect *conn, HandoverDomain ***domains,
                                  unsigned int flags);
/* Define (or update) a persistent domain from XML. */
HANDOVER_API
HandoverDomain *handover_domain_define_xml(HandoverConnect *conn, const char *xml);
/* Look a domain up by name or UUID string. */
HANDOVER_API
HandoverDomain *handover_domain_lookup_by_name(HandoverConnect *conn, const char *name);
/* Free a domain handle (not the domain); accepts NULL. */
HANDOVER_API
void handover_domain_free(HandoverDomain *dom);

HANDOVER_API
const char *handover_domain_get_name(const HandoverDomain *dom);
HANDOVER_API
const char *handover_domain_get_uuid(const HandoverDomain *dom);

enum { HANDOVER_START_PAUSED = 1 << 0 };
HANDOVER_API
int handover_domain_start(HandoverDomain *dom, unsigned int flags);
/* Ask the guest to power off; waits up to timeout_s (0: default 60) and
 * then kills the QEMU. *forced (may be NULL) says whether it had to. */
HANDOVER_API
int handover_domain_shutdown(HandoverDomain *dom, unsigned int timeout_s, bool *forced);
HANDOVER_API
int handover_domain_destroy(HandoverDomain *dom);
HANDOVER_API
int handover_domain_suspend(HandoverDomain *dom);
HANDOVER_API
int handover_domain_resume(HandoverDomain *dom);
HANDOVER_API
int handover_domain_undefine(HandoverDomain *dom);
HANDOVER_API
int handover_domain_get_info(HandoverDomain *dom, HandoverDomainInfo *info);
/* State and reason (reason may be NULL; *reason is malloc'ed, free() it). */
HANDOVER_API
int handover_domain_get_state(HandoverDomain *dom, HandoverDomainState *state, char **reason);
enum { HANDOVER_XML_INACTIVE = 1 << 0 };
/* The domain XML (free() it). */
HANDOVER_API
char *handover_domain_get_xml_desc(HandoverDomain *dom, unsigned int flags);

/* ---- events ---- */

/* A domain lifecycle event: the domain's name and UUID, the event
 * ("started", "stopped", ...) and its detail (may be NULL). */
typedef void (*HandoverLifecycleFunc)(HandoverConnect *conn, const char *name,
                                      const char *uuid, const char *event,
                                      const char *detail, void *opaque);
/* Subscribe to lifecycle events; one callback per connection. */
HANDOVER_API
int handover_connect_register_lifecycle(HandoverConnect *conn, HandoverLifecycleFunc cb,
                                        void *opaque);
/* Wait up to timeout_ms for events and dispatch them: 1 when at least one
 * was dispatched, 0 on timeout, -1 when the connection failed. */
HANDOVER_API
int handover_connect_run_events(HandoverConnect *conn, unsigned int timeout_ms);

/* ---- migration ---- */

/* What handover_domain_migrate does, with virsh migrate's meanings.
 * Initialise with handover_migrate_params_init(), which sets size: the
 * structure may grow at its end, and the library reads only the first
 * size bytes, so a program built against an older header keeps working.
 * Strings are borrowed for the call. */
typedef struct {
    size_t size;                  /* sizeof(HandoverMigrateParams) of the caller */
    bool live;                    /* --live: keep the guest running while RAM moves */
    bool persistent;              /* --persistent: define the domain on the destination */
    bool undefine_source;         /* --undefinesource: undefine it on the source after */
    bool paused;                  /* --paused: leave the domain paused on the destination */
    const char *dname;            /* --dname: its name on the destination, or NULL */
    const char *xml;              /* --xml: the destination's domain XML (text), or NULL */
    const char *migrate_uri;      /* --migrateuri tcp://HOST[:PORT], or NULL */
    const char *listen_address;   /* --listen-address of the destination QEMU, or NULL */
    bool has_bandwidth;
    uint64_t bandwidth_mib;       /* --bandwidth, MiB/s */
    bool has_max_downtime;
    uint64_t max_downtime_ms;     /* --max-downtime */
    bool auto_converge;           /* --auto-converge */
    bool parallel;                /* --parallel (multifd) */
    unsigned int parallel_connections; /* --parallel-connections; 0: QEMU's default */
    unsigned int timeout_s;       /* --timeout: after it, pause the guest (or abort); 0: none */
    bool timeout_abort;           /* --timeout-abort */
    bool unsafe;                  /* --unsafe: skip the disk cache mode check */
    const char *record_path;      /* --record: flight recording of this job (daemon's path) */
    /* Storage copy (since 0.1, after record_path). */
    bool copy_storage_all;        /* --copy-storage-all: copy whole disks to the destination */
    bool copy_storage_inc;        /* --copy-storage-inc: copy only the top image; the
                                   * destination already holds the backing chain */
    bool copy_storage_synchronous_writes; /* --copy-storage-synchronous-writes: the guest's
                                           * writes complete only once both copies have them */
    const char *const *migrate_disks; /* --migrate-disks: NULL-terminated disk targets
                                       * ("vda") to copy, or NULL for every disk not shared */
    unsigned int disks_port;      /* --disks-port: the destination's NBD port; 0: its range */
    const char *disks_uri;        /* --disks-uri tcp://HOST[:PORT] or unix:PATH, or NULL */
    /* Postcopy and CPR transfer (since 0.1, after disks_uri). */
    bool postcopy;                /* --postcopy: allow switching to postcopy */
    bool postcopy_after_precopy;  /* --postcopy-after-precopy: switch after the first full
                                   * pass (needs postcopy) */
    bool has_postcopy_bandwidth;
    uint64_t postcopy_bandwidth_mib; /* --postcopy-bandwidth, MiB/s (needs postcopy) */
    const char *mode;             /* --mode: NULL or "normal", or "cpr-transfer" (a new
                                   * QEMU on the same host; dest_uri must be NULL) */
} HandoverMigrateParams;

/* Zero params and set its size. */
HANDOVER_API
void handover_migrate_params_init(HandoverMigrateParams *params);

/* A job's statistics (domjobinfo). Numbers are -1 when the daemon did not
 * give them (a phase without them, or before completion). Initialise with
 * handover_job_info_init(); as with the parameters, only the first size
 * bytes are written. */
typedef struct {
    size_t size;                  /* sizeof(HandoverJobInfo) of the caller */
    char phase[32];               /* "begin", "prepare", "mirror", "perform", "pre-switchover",
                                   * "switchover", "finish", "confirm", "postcopy",
                                   * "postcopy-paused", "postcopy-recover", "completed",
                                   * "failed", "cancelled" */
    char side[16];                /* "src" (outgoing) or "dst" (incoming) */
    int64_t elapsed_ms;
    int64_t setup_ms;
    int64_t data_total;           /* bytes */
    int64_t data_processed;
    int64_t data_remaining;
    int64_t memory_total;         /* bytes of guest RAM */
    int64_t memory_processed;
    int64_t memory_remaining;
    int64_t bandwidth_bps;        /* bytes per second */
    int64_t dirty_rate_pps;       /* pages per second */
    int64_t iteration;
    int64_t expected_downtime_ms;
    int64_t downtime_ms;          /* after completion: the guest's real pause */
    int64_t total_ms;             /* after completion: the whole job */
    int64_t orchestrator_ms;      /* after completion: source completed -> destination running */
    char error[1024];             /* why it failed ("" when it did not), maybe truncated */
    /* Storage copy (since 0.1, after error). */
    int64_t disk_total;           /* bytes the disk mirrors copy */
    int64_t disk_processed;
    int64_t disk_remaining;
    int64_t disk_bandwidth_bps;   /* bytes per second */
    int64_t switchover_us;        /* after completion: QEMU's pre-switchover pause ->
                                   * migrate-continue sent, in microseconds */
    int64_t switchover_qemu_us;   /* of which waiting for QEMU (the mirrors ending) */
    int64_t switchover_own_us;    /* of which handover's own work */
    char warning[512];            /* what the job warns about ("" when nothing), such as a
                                   * QEMU without pause-before-switchover; several
                                   * warnings are joined by "; "; in a "warning" event,
                                   * that one warning */
    /* Postcopy (since 0.1, after warning). */
    int64_t postcopy_requests;    /* pages the destination asked for (page faults) */
    int64_t postcopy_bytes;       /* bytes sent since the switch to postcopy */
    /* Since 0.1, after postcopy_bytes. */
    int64_t downtime_limit_ms;    /* source: the downtime limit in force (--max-downtime,
                                   * or the step handoverd's ramp is at) */
} HandoverJobInfo;

/* Set every number to -1, the strings empty, and size. */
HANDOVER_API
void handover_job_info_init(HandoverJobInfo *info);

/* Migrate the running domain name (or UUID) to the daemon at dest_uri
 * ("handover+tcp://HOST[:PORT]/system"). The source daemon drives the
 * whole job; this call returns when it has ended (at most 24 hours): 0
 * and, when completed is non-NULL, the completed job's statistics; -1
 * and an error (refused with nothing changed, or failed and unwound, or
 * cancelled by handover_domain_abort_job). params may be NULL (all off).
 * Closing the connection or ending the program does not abort the job.
 * With params->postcopy the call also returns -1 when the job pauses in
 * postcopy (phase "postcopy-paused"): the job then stays alive and
 * recoverable with handover_domain_migrate_recover. With params->mode
 * "cpr-transfer", dest_uri must be NULL: the domain's QEMU is replaced by
 * a new one on the same host. */
HANDOVER_API
int handover_domain_migrate(HandoverConnect *conn, const char *name, const char *dest_uri,
                            const HandoverMigrateParams *params, HandoverJobInfo *completed);
/* The running job's statistics, or with completed those of the last one
 * that ended. */
HANDOVER_API
int handover_domain_get_job_info(HandoverConnect *conn, const char *name, bool completed,
                                 HandoverJobInfo *info);
/* Abort the domain's job (any phase before the switchover); the job then
 * ends cancelled, which its migrate call reports. In postcopy the daemon
 * refuses: the guest already runs on the destination. */
HANDOVER_API
int handover_domain_abort_job(HandoverConnect *conn, const char *name);
/* Flags of handover_domain_abort_job_flags. */
enum {
    /* Pause a postcopy migration instead (migrate-pause on both sides):
     * the job stays recoverable with handover_domain_migrate_recover. */
    HANDOVER_ABORT_JOB_POSTCOPY = 1 << 0,
};
/* handover_domain_abort_job with flags (0: the same). */
HANDOVER_API
int handover_domain_abort_job_flags(HandoverConnect *conn, const char *name, unsigned int flags);
/* Switch the domain's running migration (started with params->postcopy)
 * to postcopy now. */
HANDOVER_API
int handover_domain_migrate_postcopy(HandoverConnect *conn, const char *name);
/* Recover a migration paused in postcopy through the daemon at dest_uri
 * (the same destination daemon, reached again): returns when this
 * attempt ended, 0 and the completed job's statistics (completed may be
 * NULL) when the migration completed, or -1 and the attempt's error; the
 * job then stays paused and recoverable, and the call can be repeated. */
HANDOVER_API
int handover_domain_migrate_recover(HandoverConnect *conn, const char *name, const char *dest_uri,
                                    HandoverJobInfo *completed);

/* A job event: the domain, the event ("phase", "progress", "warning",
 * "completed", "failed", "cancelled") and what is known of the job
 * (borrowed for the call: phase for every event but "warning", the
 * statistics for progress and the ends, error for a failure, warning for
 * a "warning"). */
typedef void (*HandoverJobEventFunc)(HandoverConnect *conn, const char *name, const char *uuid,
                                     const char *event, const HandoverJobInfo *info,
                                     void *opaque);
/* Subscribe to job events; one callback per connection. They are
 * dispatched by handover_connect_run_events and during any call on conn
 * (handover_domain_migrate included). */
HANDOVER_API
int handover_connect_register_job(HandoverConnect *conn, HandoverJobEventFunc cb, void *opaque);

#ifdef __cplusplus
}
#endif

#endif /* HANDOVER_H */
