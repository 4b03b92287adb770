/*
 * Scenario tests of the migration orchestrator (qemu_migration.h) on mock
 * QMP transcripts, both sides at once.
 *
 * Two QemuDriver (own temporary state, runtime and log directories) whose
 * spawn hook stands a `sleep` child in for QEMU and serves the QMP socket
 * from a QemuMock; two QemuMigration (different host UUIDs) joined by peer
 * operations that call the other manager from an idle, never re-entrantly.
 * The source domain is defined and started on the source driver (its
 * start exchange is the head of every transcript), then migrated.
 *
 * Each case of the table names a transcript in tests/qemumigrationdata/
 * (the exact QMP sequence of both sides, in cross-side order), the
 * migration arguments, an action (abort, peer lost, postcopy recovery) taken from the phase
 * event of a side or once the mock played a given line (the orchestrator
 * answers pre-switchover in the same iteration it sees it and emits phase
 * events from an idle, so "while RAM moves" and "QEMU already in
 * pre-switchover" are reached through what QEMU said), and the expected
 * outcome: the error text, the phases each
 * side walked, the final domain state on both sides, and that the mock
 * played every line. A "close" line of a transcript is QEMU dying: the
 * harness kills that side's stand-in process, so the driver sees the exit.
 * Invariant 1 (DESIGN.md §2) is checked on what the mock played: no
 * destination `cont` before the source's MIGRATION completed was sent, and
 * no source `cont` after the destination's.
 *
 * Each emulator is a fake binary (a file the driver only stats, never
 * runs); its capability probe is served by qemumigrationdata/probe-NAME.jsonl
 * before the scenario starts.
 */
#define HO_LOG_MODULE "tests.migration"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ho_error.h"
#include "ho_file.h"
#include "ho_json.h"
#include "ho_log.h"
#include "qemu_driver.h"
#include "qemu_migration.h"
#include "qemu_mock.h"
#include "qemu_process.h"
#include "testutils.h"

#define SRC_HOST_UUID "5a5a5a5a-0000-4000-8000-00000000000a"
#define DST_HOST_UUID "5a5a5a5a-0000-4000-8000-00000000000b"
#define DOM_NAME "vm1"
#define DOM_UUID "0b9e3f7c-1d2a-4c55-9e61-7a3f0c2d4e51"
/* Every wait is bounded by this; a transcript plays in well under it. */
#define CASE_TIMEOUT_MS 20000
#define MAX_STANDINS 16
/* QemuMigrationConfig.switchover_boost of both sides (nice levels). */
#define SWITCHOVER_BOOST 3

/* ---- the table ---------------------------------------------------------- */

typedef enum {
    ACT_NONE = 0,
    ACT_ABORT,     /* qemu_migration_any_abort on that side */
    /* The connection between the daemons breaks: the source is told at
     * once; the destination once the source job ended and every event
     * already sent has been read (so what its QEMU said is known). */
    ACT_PEER_LOST,
    /* Postcopy recovery: once both sides are in postcopy-paused,
     * qemu_migration_src_postcopy_resume with the peer's recover op (as
     * handover migrate --postcopy-resume does); each attempt that ends in
     * an error is followed by the next (Case.recover). */
    ACT_RECOVER,
} ActKind;

/* The URI a failed recovery attempt gets instead of the destination's
 * (a port nobody listens on, as qemudrivertest's real runs do). */
#define RECOVER_BAD_URI "tcp:127.0.0.1:1"
#define MAX_RECOVER 4

typedef enum {
    OUT_COMPLETED = 0,
    OUT_FAILED,
    OUT_CANCELLED,
    OUT_REFUSED, /* qemu_migration_src_begin returns -1 */
} Outcome;

/* A domain state, or "absent" on that host. */
#define ABSENT QEMU_DOMAIN_STATE_LAST

typedef struct {
    const char *name;       /* test path under /migration/ */
    const char *transcript; /* in tests/qemumigrationdata/ */
    const char *src_emu;    /* fake emulators: probe-NAME.jsonl serves their probe */
    const char *dst_emu;
    /* the arguments */
    bool auto_converge;
    bool parallel;
    bool paused;
    bool persistent;
    bool same_host; /* the peer says it is this host */
    bool postcopy;  /* --postcopy --postcopy-after-precopy */
    const char *log_has; /* a substring of the harness log (a refused action's error) */
    /* the action */
    ActKind action;
    bool action_on_dst;
    QemuMigrationPhase action_phase; /* when that side enters it, from the phase event */
    const char *action_after;        /* or: from an idle once the mock played this history line */
    /* the outcome */
    Outcome outcome;
    const char *error; /* a substring of the source's error, NULL when none */
    const char *src_phases; /* phase events of the source job, space-separated */
    const char *dst_phases; /* of the destination job; "" when it never had one */
    /* Also right: the destination may notice its QEMU's death before or
     * after the source's Finish arrives (a race between two processes
     * that a real deployment has too). */
    const char *dst_phases_alt;
    QemuDomainState src_state;
    QemuDomainState dst_state;
    /* Storage copy: the domain has n_disks disks (vda qcow2, vdb raw: real
     * images made with qemu-img in the case's directory), the destination
     * XML (--xml) puts them in a directory of the destination's own. */
    guint n_disks;
    bool copy_storage;  /* --copy-storage-all */
    bool dst_has_vdb;   /* the destination already holds vdb's image: never removed */
    bool warns;         /* the job emits a "warning" event (and only then) */
    const char *warning; /* a substring of its message, when given */
    /* A known disagreement between the orchestrator and these tests: the
     * case reports itself incomplete (TAP TODO) while it holds, and fails
     * once it no longer does (then drop this). */
    const char *known_issue;
    /* ACT_RECOVER: per attempt, NULL when it must recover the migration,
     * else a substring of the error its callback must get (the attempt is
     * given RECOVER_BAD_URI, and the job must stay POSTCOPY_PAUSED). */
    const char *recover[MAX_RECOVER];
    /* History lines that must appear in this order (not necessarily next
     * to each other), NULL-terminated. */
    const char *order[16];
    /* QemuMigrationConfig.postcopy_stall_s, which also bounds a recovery
     * attempt on a QEMU that gives no event (7.2); 0: 3600 (never). */
    unsigned int postcopy_stall_s;
    /* The downtime ramp: QemuMigrationConfig.downtime_start_ms of the
     * source (0: off), --max-downtime (0: not given), and the job info's
     * downtime_limit_ms at the end (0: absent). */
    unsigned int downtime_start;
    unsigned int max_downtime;
    unsigned int downtime_final;
    /* QemuMigrationConfig.mirror_buf_size 0 (QEMU's own buffer) instead
     * of handoverd's default, MIRROR_BUF_SIZE. */
    bool qemu_mirror_buf;
    /* The peer daemon's round trip in µs (peer op rtt_us); 0: unknown
     * (-1), as over a UNIX socket: no stream buffer is asked for. */
    int rtt_us;
} Case;

/* handoverd's migration_mirror_buf_size, which the storage transcripts
 * expect in each blockdev-mirror (compose.py's MIRROR_BUF). */
#define MIRROR_BUF_SIZE (4 * 1024 * 1024)

/* The phase walks used below. */
#define SRC_HAPPY "begin prepare perform pre-switchover switchover finish confirm completed"
#define SRC_NO_PAUSE "begin prepare perform switchover finish confirm completed"
#define DST_HAPPY "prepare perform finish completed"

/* Postcopy recovery (issue 6): the switch, the break, recovery attempts. */
#define SRC_PC_HEAD "begin prepare perform pre-switchover switchover postcopy postcopy-paused"
#define SRC_RECOVERED "postcopy-recover postcopy finish confirm completed"
#define DST_RECOVERED                                                                           \
    "prepare perform postcopy postcopy-paused postcopy-recover postcopy finish completed"
/* The break, then migrate-recover on the destination (answered) before
 * migrate resume:true on the source. Only causal order is checked: the
 * mock plays each side in file order, but the two sides' outputs may
 * interleave either way. */
#define ORDER_RECOVER                                                                           \
    "src recv MIGRATION postcopy-paused", "dst send migrate-recover", "dst recv return",          \
        "src send migrate"
#define RECOVER_CASE(n, v)                                                                      \
    .name = n, .transcript = n ".jsonl", .src_emu = "qemu-" v, .dst_emu = "qemu-" v,              \
    .postcopy = true, .action = ACT_RECOVER, .outcome = OUT_COMPLETED,                          \
    .dst_phases = DST_RECOVERED, .src_state = ABSENT, .dst_state = QEMU_DOMAIN_STATE_RUNNING

/* Storage copy of the two disks. */
#define STORAGE_ARGS .n_disks = 2, .copy_storage = true
#define SRC_STORAGE_HAPPY                                                                       \
    "begin prepare mirror perform pre-switchover switchover finish confirm completed"
#define STORAGE_HAPPY(n, s, d)                                                                  \
    {                                                                                           \
        .name = n, .transcript = n ".jsonl", .src_emu = s, .dst_emu = d, STORAGE_ARGS,           \
        .outcome = OUT_COMPLETED, .src_phases = SRC_STORAGE_HAPPY, .dst_phases = DST_HAPPY,     \
        .src_state = ABSENT, .dst_state = QEMU_DOMAIN_STATE_RUNNING,                            \
    }

/* A happy precopy migration whose peer daemon is rtt µs away. */
#define STREAM_CASE(n, t, s, d, rtt)                                                              \
    {                                                                                             \
        .name = n, .transcript = t, .src_emu = s, .dst_emu = d, .rtt_us = rtt,                    \
        .outcome = OUT_COMPLETED, .src_phases = SRC_HAPPY, .dst_phases = DST_HAPPY,               \
        .src_state = ABSENT, .dst_state = QEMU_DOMAIN_STATE_RUNNING,                              \
    }

static const Case cases[] = {
    /* ---- the whole happy path ---- */
    {
        .name = "precopy-7.2-7.2",
        .transcript = "migrate-7.2-7.2.jsonl",
        .src_emu = "qemu-7.2",
        .dst_emu = "qemu-7.2",
        .outcome = OUT_COMPLETED,
        .src_phases = SRC_HAPPY,
        .dst_phases = DST_HAPPY,
        .src_state = ABSENT,
        .dst_state = QEMU_DOMAIN_STATE_RUNNING,
    },
    {
        /* The downtime ramp: 20 ms at the start, doubled by each pass that
         * did not end the migration, up to QEMU's 300 ms. */
        .name = "precopy-downtime-ramp",
        .transcript = "downtime-ramp.jsonl",
        .src_emu = "qemu-7.2",
        .dst_emu = "qemu-7.2",
        .downtime_start = 20,
        .downtime_final = 300,
        .outcome = OUT_COMPLETED,
        .src_phases = SRC_HAPPY,
        .dst_phases = DST_HAPPY,
        .src_state = ABSENT,
        .dst_state = QEMU_DOMAIN_STATE_RUNNING,
    },
    {
        /* QEMU refuses the raise: a warning, the migration goes on, the
         * job reports the limit QEMU kept. */
        .name = "precopy-downtime-ramp-refused",
        .transcript = "downtime-ramp-refused.jsonl",
        .src_emu = "qemu-7.2",
        .dst_emu = "qemu-7.2",
        .downtime_start = 20,
        .downtime_final = 20,
        .warns = true,
        .warning = "cannot raise the downtime limit to 40 ms (it stays at 20 ms): Parameter "
                   "'downtime-limit' refused by hand",
        .outcome = OUT_COMPLETED,
        .src_phases = SRC_HAPPY,
        .dst_phases = DST_HAPPY,
        .src_state = ABSENT,
        .dst_state = QEMU_DOMAIN_STATE_RUNNING,
    },
    {
        /* The same up to --max-downtime 100. */
        .name = "precopy-downtime-ramp-max",
        .transcript = "downtime-ramp-max.jsonl",
        .src_emu = "qemu-7.2",
        .dst_emu = "qemu-7.2",
        .downtime_start = 20,
        .max_downtime = 100,
        .downtime_final = 100,
        .outcome = OUT_COMPLETED,
        .src_phases = SRC_HAPPY,
        .dst_phases = DST_HAPPY,
        .src_state = ABSENT,
        .dst_state = QEMU_DOMAIN_STATE_RUNNING,
    },
    {
        /* The destination QEMU is not the version whose capabilities are
         * cached: probed in full at its start (the transcript holds the
         * whole probe, and the mock must play every line), then the usual
         * migration. */
        .name = "precopy-caps-version-mismatch",
        .transcript = "caps-version-mismatch.jsonl",
        .src_emu = "qemu-7.2",
        .dst_emu = "qemu-7.2",
        .outcome = OUT_COMPLETED,
        .src_phases = SRC_HAPPY,
        .dst_phases = DST_HAPPY,
        .src_state = ABSENT,
        .dst_state = QEMU_DOMAIN_STATE_RUNNING,
    },
    {
        .name = "precopy-10.0-10.0",
        .transcript = "migrate-10.0-10.0.jsonl",
        .src_emu = "qemu-10.0",
        .dst_emu = "qemu-10.0",
        .outcome = OUT_COMPLETED,
        .src_phases = SRC_HAPPY,
        .dst_phases = DST_HAPPY,
        .src_state = ABSENT,
        .dst_state = QEMU_DOMAIN_STATE_RUNNING,
    },
    {
        .name = "precopy-7.2-10.0",
        .transcript = "migrate-7.2-10.0.jsonl",
        .src_emu = "qemu-7.2",
        .dst_emu = "qemu-10.0",
        .outcome = OUT_COMPLETED,
        .src_phases = SRC_HAPPY,
        .dst_phases = DST_HAPPY,
        .src_state = ABSENT,
        .dst_state = QEMU_DOMAIN_STATE_RUNNING,
    },
    {
        .name = "precopy-no-pause-before-switchover",
        .transcript = "migrate-nopause.jsonl",
        .src_emu = "qemu-7.2-nopause",
        .dst_emu = "qemu-7.2",
        .outcome = OUT_COMPLETED,
        .src_phases = SRC_NO_PAUSE,
        .dst_phases = DST_HAPPY,
        .src_state = ABSENT,
        .dst_state = QEMU_DOMAIN_STATE_RUNNING,
    },
    /* ---- abort in each phase ---- */
    {
        .name = "abort-prepare",
        .transcript = "abort-prepare.jsonl",
        .src_emu = "qemu-7.2",
        .dst_emu = "qemu-7.2",
        .action = ACT_ABORT,
        .action_phase = QEMU_MIGRATION_PHASE_PREPARE,
        .error = "was cancelled",
        .outcome = OUT_CANCELLED,
        .src_phases = "begin prepare cancelled",
        .dst_phases = "prepare perform failed",
        .src_state = QEMU_DOMAIN_STATE_RUNNING,
        .dst_state = ABSENT,
    },
    {
        .name = "abort-perform",
        .transcript = "abort-perform.jsonl",
        .src_emu = "qemu-7.2",
        .dst_emu = "qemu-7.2",
        .action = ACT_ABORT,
        .action_after = "src recv MIGRATION active",
        .error = "was cancelled",
        .outcome = OUT_CANCELLED,
        .src_phases = "begin prepare perform cancelled",
        .dst_phases = "prepare perform failed",
        .src_state = QEMU_DOMAIN_STATE_RUNNING,
        .dst_state = ABSENT,
    },
    {
        .name = "abort-pre-switchover",
        .transcript = "abort-pre-switchover.jsonl",
        .src_emu = "qemu-7.2",
        .dst_emu = "qemu-7.2",
        .action = ACT_ABORT,
        .action_after = "src recv MIGRATION active",
        .error = "was cancelled",
        .outcome = OUT_CANCELLED,
        .src_phases = "begin prepare perform cancelled",
        .dst_phases = "prepare perform failed",
        .src_state = QEMU_DOMAIN_STATE_RUNNING,
        .dst_state = ABSENT,
    },
    {
        /* QEMU says `device` before `cancelled` and has not resumed the
         * guest: query-status shows it paused, the orchestrator conts. */
        .name = "abort-pre-switchover-device-paused",
        .transcript = "abort-pre-switchover-device-paused.jsonl",
        .src_emu = "qemu-7.2",
        .dst_emu = "qemu-7.2",
        .action = ACT_ABORT,
        .action_after = "src recv MIGRATION active",
        .error = "was cancelled",
        .outcome = OUT_CANCELLED,
        .src_phases = "begin prepare perform cancelled",
        .dst_phases = "prepare perform failed",
        .src_state = QEMU_DOMAIN_STATE_RUNNING,
        .dst_state = ABSENT,
    },
    {
        /* `device` before `cancelled`, but QEMU resumed the guest itself:
         * query-status shows it running, no cont. */
        .name = "abort-pre-switchover-device-running",
        .transcript = "abort-pre-switchover-device-running.jsonl",
        .src_emu = "qemu-7.2",
        .dst_emu = "qemu-7.2",
        .action = ACT_ABORT,
        .action_after = "src recv MIGRATION active",
        .error = "was cancelled",
        .outcome = OUT_CANCELLED,
        .src_phases = "begin prepare perform cancelled",
        .dst_phases = "prepare perform failed",
        .src_state = QEMU_DOMAIN_STATE_RUNNING,
        .dst_state = ABSENT,
    },
    /* ---- failed from QEMU ---- */
    {
        .name = "qemu-failed-perform",
        .transcript = "failed-perform.jsonl",
        .src_emu = "qemu-7.2",
        .dst_emu = "qemu-7.2",
        .outcome = OUT_FAILED,
        .error = "Unable to write to socket: Connection reset by peer",
        .src_phases = "begin prepare perform failed",
        .dst_phases = "prepare perform failed",
        .src_state = QEMU_DOMAIN_STATE_RUNNING,
        .dst_state = ABSENT,
    },
    /* ---- the destination QEMU dies ---- */
    {
        .name = "dst-qemu-dies-prepare",
        .transcript = "dst-dies-prepare.jsonl",
        .src_emu = "qemu-7.2",
        .dst_emu = "qemu-7.2",
        .outcome = OUT_FAILED,
        /* Whether the monitor's EOF or the exit is seen first varies. */
        .error = "incoming migration of domain 'vm1'",
        .src_phases = "begin prepare failed",
        .dst_phases = "prepare perform failed",
        .src_state = QEMU_DOMAIN_STATE_RUNNING,
        .dst_state = ABSENT,
    },
    {
        .name = "dst-qemu-dies-perform",
        .transcript = "dst-dies-perform.jsonl",
        .src_emu = "qemu-7.2",
        .dst_emu = "qemu-7.2",
        .error = "Unable to write to socket",
        .outcome = OUT_FAILED,
        .src_phases = "begin prepare perform failed",
        .dst_phases = "prepare perform failed",
        .src_state = QEMU_DOMAIN_STATE_RUNNING,
        .dst_state = ABSENT,
    },
    {
        /* After the source's completed, before cont: the destination never
         * ran a vCPU, so the source is resumed (DESIGN.md §3 step 5). */
        .name = "dst-qemu-dies-finish",
        .transcript = "dst-dies-finish.jsonl",
        .src_emu = "qemu-7.2",
        .dst_emu = "qemu-7.2",
        .error = "the destination could not run domain",
        .outcome = OUT_FAILED,
        .src_phases = "begin prepare perform pre-switchover switchover finish failed",
        .dst_phases = "prepare perform finish failed",
        .dst_phases_alt = "prepare perform failed",
        .src_state = QEMU_DOMAIN_STATE_RUNNING,
        .dst_state = ABSENT,
    },
    {
        /* It dies as it receives cont (no RESUME, no answer): Finish
         * fails, the source resumes. */
        .name = "dst-qemu-dies-at-cont",
        .transcript = "dst-dies-at-cont.jsonl",
        .src_emu = "qemu-7.2",
        .dst_emu = "qemu-7.2",
        .outcome = OUT_FAILED,
        .error = "answer is unknown",
        .src_phases = "begin prepare perform pre-switchover switchover finish failed",
        .dst_phases = "prepare perform finish failed",
        /* `cont` went out before the destination died: whether it ran a
         * vCPU is unknown, so the source is never resumed. */
        .src_state = QEMU_DOMAIN_STATE_PAUSED,
        .dst_state = ABSENT,
    },
    /* ---- the daemons lose each other ---- */
    {
        .name = "peer-lost-perform",
        .transcript = "peer-lost-perform.jsonl",
        .src_emu = "qemu-7.2",
        .dst_emu = "qemu-7.2",
        .action = ACT_PEER_LOST,
        .action_after = "src recv MIGRATION active",
        .error = "lost the destination daemon",
        .outcome = OUT_FAILED,
        .src_phases = "begin prepare perform failed",
        .dst_phases = "prepare perform failed",
        .src_state = QEMU_DOMAIN_STATE_RUNNING,
        .dst_state = ABSENT,
    },
    {
        /* After completed, while Finish is in flight: whether the
         * destination ran is unknown, so the source stays paused. */
        .name = "peer-lost-finish",
        .transcript = "peer-lost-finish.jsonl",
        .src_emu = "qemu-7.2",
        .dst_emu = "qemu-7.2",
        .action = ACT_PEER_LOST,
        .action_phase = QEMU_MIGRATION_PHASE_FINISH,
        .outcome = OUT_FAILED,
        .error = "answer is unknown",
        .src_phases = "begin prepare perform pre-switchover switchover finish failed",
        .dst_phases = "prepare perform failed",
        .src_state = QEMU_DOMAIN_STATE_PAUSED,
        .dst_state = QEMU_DOMAIN_STATE_PAUSED,
    },
    {
        /* The destination daemon dies while the source waits for Prepare:
         * the request never arrives, no destination QEMU is started. */
        .name = "peer-lost-prepare",
        .transcript = "refused-prepare.jsonl",
        .src_emu = "qemu-7.2",
        .dst_emu = "qemu-7.2",
        .action = ACT_PEER_LOST,
        .action_phase = QEMU_MIGRATION_PHASE_PREPARE,
        .outcome = OUT_FAILED,
        .error = "lost the destination daemon",
        .src_phases = "begin prepare failed",
        .dst_phases = "",
        .src_state = QEMU_DOMAIN_STATE_RUNNING,
        .dst_state = ABSENT,
    },
    {
        /* domjobabort on the destination host while RAM moves. */
        .name = "abort-dst-perform",
        .transcript = "abort-dst-perform.jsonl",
        .src_emu = "qemu-7.2",
        .dst_emu = "qemu-7.2",
        .action = ACT_ABORT,
        .action_on_dst = true,
        .action_after = "src recv MIGRATION active",
        .outcome = OUT_FAILED,
        .error = "Unable to write to socket",
        .src_phases = "begin prepare perform failed",
        .dst_phases = "prepare perform cancelled",
        .src_state = QEMU_DOMAIN_STATE_RUNNING,
        .dst_state = ABSENT,
    },
    /* ---- postcopy (issue 6) ---- */
    {
        /* --postcopy-after-precopy: the switch after the first full pass;
         * the destination runs at its own postcopy-active, Finish finds
         * it running (no second cont). */
        .name = "postcopy-7.2-7.2",
        .transcript = "postcopy-7.2-7.2.jsonl",
        .src_emu = "qemu-7.2",
        .dst_emu = "qemu-7.2",
        .postcopy = true,
        .outcome = OUT_COMPLETED,
        .src_phases = "begin prepare perform pre-switchover switchover postcopy finish confirm "
                      "completed",
        .dst_phases = "prepare perform postcopy finish completed",
        .src_state = ABSENT,
        .dst_state = QEMU_DOMAIN_STATE_RUNNING,
    },
    {
        /* domjobabort in postcopy is refused with the explanation (on both
         * sides), and the migration completes (DESIGN.md §2 invariant 4). */
        .name = "postcopy-abort-refused",
        .transcript = "postcopy-7.2-7.2.jsonl",
        .src_emu = "qemu-7.2",
        .dst_emu = "qemu-7.2",
        .postcopy = true,
        .action = ACT_ABORT,
        .action_phase = QEMU_MIGRATION_PHASE_POSTCOPY,
        .log_has = "abort refused: the migration of domain 'vm1' is in postcopy",
        .outcome = OUT_COMPLETED,
        .src_phases = "begin prepare perform pre-switchover switchover postcopy finish confirm "
                      "completed",
        .dst_phases = "prepare perform postcopy finish completed",
        .src_state = ABSENT,
        .dst_state = QEMU_DOMAIN_STATE_RUNNING,
    },
    {
        .name = "postcopy-abort-refused-dst",
        .transcript = "postcopy-7.2-7.2.jsonl",
        .src_emu = "qemu-7.2",
        .dst_emu = "qemu-7.2",
        .postcopy = true,
        .action = ACT_ABORT,
        .action_on_dst = true,
        .action_phase = QEMU_MIGRATION_PHASE_POSTCOPY,
        .log_has = "use --postcopy to pause",
        .outcome = OUT_COMPLETED,
        .src_phases = "begin prepare perform pre-switchover switchover postcopy finish confirm "
                      "completed",
        .dst_phases = "prepare perform postcopy finish completed",
        .src_state = ABSENT,
        .dst_state = QEMU_DOMAIN_STATE_RUNNING,
    },
    /* ---- postcopy recovery (issue 6), from real recordings ---- */
    {
        /* 10.0: src recover-setup -> recover -> active; dst stays paused
         * after migrate-recover until the source connects. */
        RECOVER_CASE("recover-10.0", "10.0"),
        .recover = {NULL},
        .src_phases = SRC_PC_HEAD " " SRC_RECOVERED,
        .order = {ORDER_RECOVER, "src recv MIGRATION postcopy-recover-setup",
                  "src recv MIGRATION postcopy-recover", "src recv MIGRATION postcopy-active",
                  "src recv MIGRATION completed", NULL},
    },
    {
        /* 10.0: the first attempt fails (recover-setup -> paused, with its
         * event): its callback gets the error, the job stays paused and
         * recoverable; the second recovers (the destination still listens:
         * no second migrate-recover). */
        RECOVER_CASE("recover-fail-10.0", "10.0"),
        .recover = {"QEMU could not reach the destination", NULL},
        .src_phases = SRC_PC_HEAD " postcopy-recover postcopy-paused " SRC_RECOVERED,
        .order = {ORDER_RECOVER, "src recv MIGRATION postcopy-recover-setup",
                  "src recv MIGRATION postcopy-paused", "src send migrate",
                  "src recv MIGRATION postcopy-recover-setup",
                  "src recv MIGRATION postcopy-recover", "src recv MIGRATION postcopy-active",
                  "src recv MIGRATION completed", NULL},
    },
    {
        /* 7.2: no recover-setup; the destination says setup at
         * migrate-recover. */
        RECOVER_CASE("recover-7.2", "7.2"),
        .recover = {NULL},
        .src_phases = SRC_PC_HEAD " " SRC_RECOVERED,
        .order = {ORDER_RECOVER, "src recv MIGRATION postcopy-recover",
                  "src recv MIGRATION postcopy-active", "src recv MIGRATION completed", NULL},
    },
    {
        /* 7.2: the failed attempt gives no event at all: the bound (1 s
         * here) fires, query-migrate shows postcopy-paused, the callback
         * gets the error, the job stays recoverable; the second recovers. */
        RECOVER_CASE("recover-fail-7.2", "7.2"),
        .postcopy_stall_s = 1,
        .recover = {"made no progress within 1 seconds", NULL},
        .src_phases = SRC_PC_HEAD " postcopy-recover postcopy-paused " SRC_RECOVERED,
        .order = {ORDER_RECOVER, "src recv return", "src send query-migrate", "src recv return",
                  "src send migrate", "src recv MIGRATION postcopy-recover",
                  "src recv MIGRATION postcopy-active", "src recv MIGRATION completed", NULL},
    },
    /* ---- refusals: nothing changes ---- */
    {
        .name = "refuse-same-host",
        .transcript = "refused.jsonl",
        .src_emu = "qemu-7.2",
        .dst_emu = "qemu-7.2",
        .same_host = true,
        .outcome = OUT_REFUSED,
        .error = "to the host it runs on",
        .src_phases = "",
        .dst_phases = "",
        .src_state = QEMU_DOMAIN_STATE_RUNNING,
        .dst_state = ABSENT,
    },
    {
        .name = "refuse-auto-converge",
        .transcript = "refused-prepare.jsonl",
        .src_emu = "qemu-7.2",
        .dst_emu = "qemu-7.2-nomig",
        .auto_converge = true,
        .outcome = OUT_FAILED,
        .error = "'--auto-converge'",
        .src_phases = "begin prepare failed",
        .dst_phases = "failed",
        .src_state = QEMU_DOMAIN_STATE_RUNNING,
        .dst_state = ABSENT,
    },
    {
        .name = "refuse-parallel",
        .transcript = "refused-prepare.jsonl",
        .src_emu = "qemu-7.2",
        .dst_emu = "qemu-7.2-nomig",
        .parallel = true,
        .outcome = OUT_FAILED,
        .error = "'--parallel'",
        .src_phases = "begin prepare failed",
        .dst_phases = "failed",
        .src_state = QEMU_DOMAIN_STATE_RUNNING,
        .dst_state = ABSENT,
    },
    /* ---- the stream's buffers (migration_stream_buffer, automatic) ---- */
    /* A known round trip: a 7.2 destination takes the buffer (getfd,
     * tcp:fd:), and the source connects the stream itself. */
    STREAM_CASE("stream-7.2-7.2", "stream-7.2-7.2.jsonl", "qemu-7.2", "qemu-7.2", 40),
    /* A 10.0 destination takes no listening socket: its daemon accepts
     * the connection and passes it (fd:). */
    STREAM_CASE("stream-7.2-10.0", "stream-7.2-10.0.jsonl", "qemu-7.2", "qemu-10.0", 40),
    /* A round trip whose window would pass 4 MiB (5 ms at 10 Gb/s): the
     * kernel's buffers, QEMU's own connection. */
    STREAM_CASE("stream-long-rtt-7.2-7.2", "migrate-7.2-7.2.jsonl", "qemu-7.2", "qemu-7.2", 5000),
    /* ---- storage copy (issue 5): two disks, vda qcow2 and vdb raw ---- */
    STORAGE_HAPPY("storage-7.2-7.2", "qemu-7.2", "qemu-7.2"),
    STORAGE_HAPPY("storage-10.0-10.0", "qemu-10.0", "qemu-10.0"),
    STORAGE_HAPPY("storage-7.2-10.0", "qemu-7.2", "qemu-10.0"),
    {
        /* mirror_buf_size 0: blockdev-mirror without buf-size. */
        .name = "storage-qemu-buf-size",
        .transcript = "storage-qemu-buf-size.jsonl",
        .src_emu = "qemu-7.2",
        .dst_emu = "qemu-7.2",
        STORAGE_ARGS,
        .qemu_mirror_buf = true,
        .outcome = OUT_COMPLETED,
        .src_phases = SRC_STORAGE_HAPPY,
        .dst_phases = DST_HAPPY,
        .src_state = ABSENT,
        .dst_state = QEMU_DOMAIN_STATE_RUNNING,
    },
    {
        /* Mirrors cancelled after completed; the command warns. */
        .name = "storage-no-pause-before-switchover",
        .transcript = "storage-nopause.jsonl",
        .src_emu = "qemu-7.2-nopause",
        .dst_emu = "qemu-7.2",
        STORAGE_ARGS,
        .warns = true,
        .outcome = OUT_COMPLETED,
        .src_phases = "begin prepare mirror perform switchover finish confirm completed",
        .dst_phases = DST_HAPPY,
        .src_state = ABSENT,
        .dst_state = QEMU_DOMAIN_STATE_RUNNING,
    },
    {
        /* The destination already holds vdb's image: it is kept. */
        .name = "storage-abort-mirror",
        .transcript = "storage-abort-mirror.jsonl",
        .src_emu = "qemu-7.2",
        .dst_emu = "qemu-7.2",
        STORAGE_ARGS,
        .dst_has_vdb = true,
        .action = ACT_ABORT,
        .action_after = "src recv BLOCK_JOB_READY",
        .error = "was cancelled",
        .outcome = OUT_CANCELLED,
        .src_phases = "begin prepare mirror cancelled",
        .dst_phases = "prepare perform failed",
        .src_state = QEMU_DOMAIN_STATE_RUNNING,
        .dst_state = ABSENT,
    },
    {
        .name = "storage-abort-perform",
        .transcript = "storage-abort-perform.jsonl",
        .src_emu = "qemu-7.2",
        .dst_emu = "qemu-7.2",
        STORAGE_ARGS,
        .action = ACT_ABORT,
        .action_after = "src recv MIGRATION active",
        .error = "was cancelled",
        .outcome = OUT_CANCELLED,
        .src_phases = "begin prepare mirror perform cancelled",
        .dst_phases = "prepare perform failed",
        .src_state = QEMU_DOMAIN_STATE_RUNNING,
        .dst_state = ABSENT,
    },
    {
        /* While the orchestrator waits for its cancelled mirrors. */
        .name = "storage-abort-pre-switchover",
        .transcript = "storage-abort-pre-switchover.jsonl",
        .src_emu = "qemu-7.2",
        .dst_emu = "qemu-7.2",
        STORAGE_ARGS,
        .action = ACT_ABORT,
        .action_phase = QEMU_MIGRATION_PHASE_PRE_SWITCHOVER,
        .error = "was cancelled",
        .outcome = OUT_CANCELLED,
        .src_phases = "begin prepare mirror perform pre-switchover cancelled",
        .dst_phases = "prepare perform failed",
        .src_state = QEMU_DOMAIN_STATE_RUNNING,
        .dst_state = ABSENT,
    },
    {
        .name = "storage-mirror-error-mirror",
        .transcript = "storage-mirror-error-mirror.jsonl",
        .src_emu = "qemu-7.2",
        .dst_emu = "qemu-7.2",
        STORAGE_ARGS,
        .error = "the copy of disk 'vda' of domain 'vm1' failed",
        .outcome = OUT_FAILED,
        .src_phases = "begin prepare mirror failed",
        .dst_phases = "prepare perform failed",
        .src_state = QEMU_DOMAIN_STATE_RUNNING,
        .dst_state = ABSENT,
    },
    {
        .name = "storage-mirror-error-perform",
        .transcript = "storage-mirror-error-perform.jsonl",
        .src_emu = "qemu-7.2",
        .dst_emu = "qemu-7.2",
        STORAGE_ARGS,
        .error = "the copy of disk 'vda' of domain 'vm1' failed",
        .outcome = OUT_FAILED,
        .src_phases = "begin prepare mirror perform failed",
        .dst_phases = "prepare perform failed",
        .src_state = QEMU_DOMAIN_STATE_RUNNING,
        .dst_state = ABSENT,
    },
    {
        .name = "storage-qemu-failed-perform",
        .transcript = "storage-failed-perform.jsonl",
        .src_emu = "qemu-7.2",
        .dst_emu = "qemu-7.2",
        STORAGE_ARGS,
        .error = "Unable to write to socket: Connection reset by peer",
        .outcome = OUT_FAILED,
        .src_phases = "begin prepare mirror perform failed",
        .dst_phases = "prepare perform failed",
        .src_state = QEMU_DOMAIN_STATE_RUNNING,
        .dst_state = ABSENT,
    },
    {
        .name = "storage-dst-qemu-dies-prepare",
        .transcript = "storage-dst-dies-prepare.jsonl",
        .src_emu = "qemu-7.2",
        .dst_emu = "qemu-7.2",
        STORAGE_ARGS,
        .error = "incoming migration of domain 'vm1'",
        .outcome = OUT_FAILED,
        .src_phases = "begin prepare failed",
        .dst_phases = "prepare perform failed",
        .src_state = QEMU_DOMAIN_STATE_RUNNING,
        .dst_state = ABSENT,
    },
    {
        .name = "storage-dst-qemu-dies-mirror",
        .transcript = "storage-dst-dies-mirror.jsonl",
        .src_emu = "qemu-7.2",
        .dst_emu = "qemu-7.2",
        STORAGE_ARGS,
        .error = "the copy of disk 'vda' of domain 'vm1' failed",
        .outcome = OUT_FAILED,
        .src_phases = "begin prepare mirror failed",
        .dst_phases = "prepare perform failed",
        .src_state = QEMU_DOMAIN_STATE_RUNNING,
        .dst_state = ABSENT,
    },
    {
        .name = "storage-dst-qemu-dies-perform",
        .transcript = "storage-dst-dies-perform.jsonl",
        .src_emu = "qemu-7.2",
        .dst_emu = "qemu-7.2",
        STORAGE_ARGS,
        .error = "Unable to write to socket",
        .outcome = OUT_FAILED,
        .src_phases = "begin prepare mirror perform failed",
        .dst_phases = "prepare perform failed",
        .src_state = QEMU_DOMAIN_STATE_RUNNING,
        .dst_state = ABSENT,
    },
    {
        .name = "storage-dst-qemu-dies-finish",
        .transcript = "storage-dst-dies-finish.jsonl",
        .src_emu = "qemu-7.2",
        .dst_emu = "qemu-7.2",
        STORAGE_ARGS,
        .error = "the destination could not run domain",
        .outcome = OUT_FAILED,
        .src_phases = "begin prepare mirror perform pre-switchover switchover finish failed",
        .dst_phases = "prepare perform finish failed",
        .dst_phases_alt = "prepare perform failed",
        .src_state = QEMU_DOMAIN_STATE_RUNNING,
        .dst_state = ABSENT,
    },
};

/* ---- the fixture ---------------------------------------------------------- */

typedef struct _Fx Fx;

typedef struct {
    Fx *fx;
    const char *side; /* "src" or "dst": the transcript side of its domains */
} Host;

typedef struct {
    QemuMock *mock; /* whose side this stands in for */
    char side[16];
    GPid pid;
    int pidfd;
} StandIn;

struct _Fx {
    const Case *c;
    GMainContext *ctx;
    char *dir;
    char *bindir;
    Host src_host;
    Host dst_host;
    QemuDriver *src_drv;
    QemuDriver *dst_drv;
    QemuMigration *src_mig;
    QemuMigration *dst_mig;
    QemuMock *mock;       /* the scenario */
    QemuMock *probe_mock; /* a capability probe being served, or NULL */
    StandIn standins[MAX_STANDINS];
    guint n_standins;
    /* the peer connection */
    bool peer_lost;
    guint peer_calls; /* requests in flight to the destination */
    /* what happened */
    GString *src_phases;
    GString *dst_phases;
    bool src_done;
    HoError *src_err;
    json_object *src_stats;
    bool src_stops; /* the transcript stops the source's guest after migrate */
    bool dst_ended;
    bool src_ended; /* the source's terminal event came */
    bool acted;
    bool dst_told; /* ACT_PEER_LOST: the destination was told */
    bool warned;   /* a job emitted a "warning" event */
    char *warning; /* the first one's message */
    /* ACT_RECOVER */
    bool src_paused; /* the source job is in postcopy-paused (its phase event) */
    bool dst_paused;
    guint attempts;        /* recovery attempts started */
    guint attempts_done;   /* ... and whose callback ran */
    guint paused_events;   /* "postcopy-paused" job events, both sides */
    GString *log; /* unexpected things seen by callbacks */
    /* storage copy */
    char *dst_xml;                 /* --xml, or NULL */
    char *src_images[2];           /* vda, vdb on the source */
    char *dst_images[2];           /* where the destination keeps them */
    char *src_sums[2];             /* the source images' contents before the migration */
};

/* The disks of the storage cases: target, format, size. */
static const struct {
    const char *target;
    const char *format;
    const char *size;
} case_disks[] = {
    {"vda", "qcow2", "16M"},
    {"vdb", "raw", "8M"},
};

static char *
emulator_path(Fx *f, const char *name)
{
    return g_build_filename(f->bindir, name, NULL);
}

static void
standin_child_setup(gpointer data)
{
    (void)data;
    (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
    (void)setsid(); /* as qemu_process_spawn: an autogroup of its own */
}

/* The driver's spawn hook: serve the side from the mock at opts->qmp_path
 * and stand a sleeping child in for QEMU. */
static int
spawn_hook(const QemuProcessSpawn *opts, GPid *pid, void *opaque)
{
    Host *host = opaque;
    Fx *f = host->fx;
    g_autofree char *base = g_path_get_basename(opts->qmp_path);
    bool probe = g_str_has_prefix(base, "probe-");
    QemuMock *mock = probe ? f->probe_mock : f->mock;
    const char *side = probe ? "src" : host->side;
    const char *argv[] = {"/bin/sleep", "3600", NULL};
    g_autoptr(GError) gerr = NULL;
    StandIn *s;
    int fd;

    if (!mock) {
        ho_error_report(HO_ERR_INTERNAL, "test: no mock for a %s spawn on %s",
                        probe ? "probe" : "domain", host->side);
        return -1;
    }
    if (f->n_standins >= MAX_STANDINS) {
        ho_error_report(HO_ERR_INTERNAL, "test: too many QEMU spawns");
        return -1;
    }
    if (qemu_mock_side_listen_at(mock, side, opts->qmp_path) < 0)
        return -1;
    fd = open(opts->log_path, O_WRONLY | O_CREAT | O_CLOEXEC | (opts->log_append ? O_APPEND : O_TRUNC),
              0600);
    if (fd < 0) {
        ho_error_report_errno(HO_ERR_SYSTEM, errno, "test: cannot open '%s'", opts->log_path);
        return -1;
    }
    close(fd);
    if (!g_spawn_async(NULL, (char **)argv, NULL,
                       G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_STDOUT_TO_DEV_NULL |
                           G_SPAWN_STDERR_TO_DEV_NULL,
                       standin_child_setup, NULL, pid, &gerr)) {
        ho_error_report(HO_ERR_SYSTEM, "test: cannot spawn the stand-in: %s", gerr->message);
        return -1;
    }
    s = &f->standins[f->n_standins++];
    s->mock = mock;
    g_strlcpy(s->side, side, sizeof(s->side));
    s->pid = *pid;
    s->pidfd = qemu_process_pidfd_open(*pid);
    g_assert_cmpint(s->pidfd, >=, 0);
    HO_DEBUG("%s QEMU for side %s: stand-in pid %d", probe ? "probe" : "domain", side, (int)*pid);
    return 0;
}

/* A "close" in the transcript: that side's QEMU dies. */
static void
mock_closed(QemuMock *mock, const char *side, void *opaque)
{
    Fx *f = opaque;

    for (guint i = f->n_standins; i-- > 0;) {
        StandIn *s = &f->standins[i];

        if (s->mock == mock && g_str_equal(s->side, side)) {
            if (qemu_process_pidfd_send_signal(s->pidfd, SIGKILL) < 0)
                ho_error_reset(); /* already gone: the driver killed it */
            return;
        }
    }
}

static void
driver_event(QemuDriver *drv, QemuDomainObj *dom, const char *event, const char *detail,
             void *opaque)
{
    (void)drv;
    (void)opaque;
    HO_DEBUG("driver event: %s %s %s", qemu_domain_obj_name(dom), event,
             detail ? detail : "");
}

/* ---- the peer: the destination manager in this process ------------------ */

typedef struct {
    Fx *f;
    json_object *args; /* the request (owned) */
    bool finish;
    bool nbd_stop;
    bool recover;
    bool bad_uri; /* recover: answer RECOVER_BAD_URI instead (a failed attempt) */
    QemuMigrationReplyFunc cb;
    void *opaque;
    json_object *result; /* the destination's answer (a reference) */
    HoError *err;
} PeerCall;

static void
peer_call_free(PeerCall *pc)
{
    json_object_put(pc->args);
    json_object_put(pc->result);
    ho_error_free(pc->err);
    g_free(pc);
}

static gboolean
peer_reply_idle(gpointer opaque)
{
    PeerCall *pc = opaque;
    Fx *f = pc->f;

    f->peer_calls--;
    if (f->peer_lost) {
        /* A lost peer's answer never arrives: the connection fails every
         * call in flight, as the daemon's RPC client does. */
        g_autoptr(HoError) err = ho_error_new(HO_ERR_RPC, "test: the peer connection is closed");

        pc->cb(NULL, err, pc->opaque);
    } else {
        pc->cb(pc->result, pc->err, pc->opaque);
    }
    peer_call_free(pc);
    return G_SOURCE_REMOVE;
}

/* The destination answered: deliver to the source from a fresh idle. */
static void
peer_dst_replied(json_object *result, const HoError *err, void *opaque)
{
    PeerCall *pc = opaque;
    GSource *idle = g_idle_source_new();

    if (result && pc->bad_uri) {
        /* The attempt the case wants to fail: a port nobody listens on. */
        g_assert_cmpint(json_object_deep_copy(result, &pc->result, NULL), ==, 0);
        json_object_object_add(pc->result, "uri", json_object_new_string(RECOVER_BAD_URI));
    } else {
        pc->result = result ? json_object_get(result) : NULL;
    }
    pc->err = ho_error_copy(err);
    g_source_set_callback(idle, peer_reply_idle, pc, NULL);
    g_source_attach(idle, pc->f->ctx);
    g_source_unref(idle);
}

static gboolean
peer_request_idle(gpointer opaque)
{
    PeerCall *pc = opaque;
    Fx *f = pc->f;

    if (f->peer_lost) {
        /* Never reached the destination daemon: fails like one in flight. */
        peer_dst_replied(NULL, NULL, pc);
        return G_SOURCE_REMOVE;
    }
    if (pc->recover)
        qemu_migration_dst_recover(f->dst_mig, pc->args, peer_dst_replied, pc);
    else if (pc->nbd_stop)
        qemu_migration_dst_nbd_stop(f->dst_mig, pc->args, peer_dst_replied, pc);
    else if (pc->finish)
        qemu_migration_dst_finish(f->dst_mig, pc->args, peer_dst_replied, pc);
    else
        qemu_migration_dst_prepare(f->dst_mig, pc->args, peer_dst_replied, pc);
    return G_SOURCE_REMOVE;
}

static void
peer_call(Fx *f, bool finish, json_object *args, QemuMigrationReplyFunc cb, void *opaque)
{
    PeerCall *pc = g_new0(PeerCall, 1);
    GSource *idle = g_idle_source_new();

    pc->f = f;
    pc->finish = finish;
    pc->args = args;
    pc->cb = cb;
    pc->opaque = opaque;
    f->peer_calls++;
    g_source_set_callback(idle, peer_request_idle, pc, NULL);
    g_source_attach(idle, f->ctx);
    g_source_unref(idle);
}

static void
peer_prepare(void *peer, json_object *cookie, QemuMigrationReplyFunc cb, void *opaque)
{
    peer_call(peer, false, cookie, cb, opaque);
}

static void
peer_finish(void *peer, json_object *args, QemuMigrationReplyFunc cb, void *opaque)
{
    peer_call(peer, true, args, cb, opaque);
}

static void
peer_nbd_stop(void *peer, json_object *args, QemuMigrationReplyFunc cb, void *opaque)
{
    Fx *f = peer;
    PeerCall *pc = g_new0(PeerCall, 1);
    GSource *idle = g_idle_source_new();

    pc->f = f;
    pc->nbd_stop = true;
    pc->args = args;
    pc->cb = cb;
    pc->opaque = opaque;
    f->peer_calls++;
    g_source_set_callback(idle, peer_request_idle, pc, NULL);
    g_source_attach(idle, f->ctx);
    g_source_unref(idle);
}

/* The recover op of a recovery attempt (the peer is the fixture again). */
static void
peer_recover(void *peer, json_object *args, QemuMigrationReplyFunc cb, void *opaque)
{
    Fx *f = peer;
    PeerCall *pc = g_new0(PeerCall, 1);
    GSource *idle = g_idle_source_new();

    g_assert_cmpuint(f->attempts, >, 0);
    pc->f = f;
    pc->recover = true;
    pc->bad_uri = f->c->recover[f->attempts - 1] != NULL;
    pc->args = args;
    pc->cb = cb;
    pc->opaque = opaque;
    f->peer_calls++;
    g_source_set_callback(idle, peer_request_idle, pc, NULL);
    g_source_attach(idle, f->ctx);
    g_source_unref(idle);
}

static const char *
peer_host_uuid(void *peer)
{
    Fx *f = peer;

    return f->c->same_host ? SRC_HOST_UUID : DST_HOST_UUID;
}

static const char *
peer_hostname(void *peer)
{
    (void)peer;
    return "dsthost";
}

static int
peer_rtt_us(void *peer)
{
    Fx *f = peer;

    return f->c->rtt_us ? f->c->rtt_us : -1;
}

static const QemuMigrationPeerOps peer_ops = {
    .rtt_us = peer_rtt_us,
    .prepare = peer_prepare,
    .finish = peer_finish,
    .host_uuid = peer_host_uuid,
    .hostname = peer_hostname,
    .free = NULL,
    .nbd_stop = peer_nbd_stop,
    .recover = peer_recover,
};

/* ---- job events and the action -------------------------------------------- */

static gboolean act_idle(gpointer opaque);

/* Start the next recovery attempt from an idle (never from inside the
 * orchestrator's own callback). */
static void
recover_next(Fx *f)
{
    GSource *idle = g_idle_source_new();

    g_source_set_callback(idle, act_idle, f, NULL);
    g_source_attach(idle, f->ctx);
    g_source_unref(idle);
}

/* A recovery attempt ended: its error is the one the case expects, and a
 * failed attempt leaves the job paused and recoverable. */
static void
resume_done(QemuMigration *mig, const char *uuid, const HoError *err, json_object *stats,
            void *opaque)
{
    Fx *f = opaque;
    const char *want = f->c->recover[f->attempts - 1];
    QemuDomainObj *dom;
    json_object *rec;
    const char *phase = NULL;

    (void)mig;
    (void)stats;
    g_assert_cmpstr(uuid, ==, DOM_UUID);
    g_assert_cmpuint(f->attempts_done, <, f->attempts);
    f->attempts_done++;
    g_test_message("%s: recovery attempt %u: %s", f->c->name, f->attempts,
                   err ? err->message : "recovered");
    if (!want) {
        if (err)
            g_error("%s: recovery attempt %u failed: %s", f->c->name, f->attempts,
                    err->message);
        return;
    }
    if (!err)
        g_error("%s: recovery attempt %u succeeded, expected '%s'", f->c->name, f->attempts,
                want);
    if (!strstr(err->message, want))
        g_error("%s: recovery attempt %u: '%s' does not mention '%s'", f->c->name, f->attempts,
                err->message, want);
    /* Still the same job, persisted as paused, and the migration goes on. */
    g_assert_false(f->src_done);
    dom = qemu_driver_lookup(f->src_drv, DOM_NAME);
    g_assert_nonnull(dom);
    g_assert_true(qemu_migration_any_has_job(f->src_mig, dom));
    rec = qemu_domain_obj_get_job(dom);
    g_assert_nonnull(rec);
    g_assert_cmpint(ho_json_get_string(rec, "phase", &phase), ==, 0);
    g_assert_cmpstr(phase, ==, "postcopy-paused");
    g_assert_cmpint(qemu_domain_obj_state(dom), ==, QEMU_DOMAIN_STATE_PAUSED);
    dom = qemu_driver_lookup(f->dst_drv, DOM_NAME);
    g_assert_nonnull(dom);
    g_assert_true(qemu_migration_any_has_job(f->dst_mig, dom));
    g_assert_cmpuint(f->attempts, <, MAX_RECOVER);
    recover_next(f);
}

static void
act(Fx *f, bool on_dst)
{
    QemuDomainObj *dom;
    g_autoptr(HoError) err = NULL;

    f->acted = true;
    HO_DEBUG("acting on the %s", on_dst ? "destination" : "source");
    switch (f->c->action) {
    case ACT_NONE:
        break;
    case ACT_ABORT:
        dom = qemu_driver_lookup(on_dst ? f->dst_drv : f->src_drv, DOM_NAME);
        g_assert_nonnull(dom);
        if (qemu_migration_any_abort(on_dst ? f->dst_mig : f->src_mig, dom) < 0)
            g_string_append_printf(f->log, "abort refused: %s\n", ho_error_last_message());
        break;
    case ACT_RECOVER:
        dom = qemu_driver_lookup(f->src_drv, DOM_NAME);
        g_assert_nonnull(dom);
        f->attempts++;
        if (qemu_migration_src_postcopy_resume(f->src_mig, dom, &peer_ops, f, resume_done, f) < 0)
            g_error("%s: recovery attempt %u refused: %s", f->c->name, f->attempts,
                    ho_error_last_message());
        break;
    case ACT_PEER_LOST:
        f->peer_lost = true;
        err = ho_error_new(HO_ERR_SYSTEM, "test: the connection to the peer broke");
        qemu_migration_src_peer_lost(f->src_mig, DOM_UUID, err);
        break;
    }
}

static void
mig_event(QemuMigration *mig, const char *name, const char *uuid, const char *event,
          json_object *data, void *opaque)
{
    Fx *f = opaque;
    bool dst = mig == f->dst_mig;
    GString *phases = dst ? f->dst_phases : f->src_phases;
    const char *phase = NULL;

    g_assert_cmpstr(uuid, ==, DOM_UUID);
    (void)name;
    if (g_str_equal(event, "progress"))
        return;
    if (g_str_equal(event, "phase")) {
        g_assert_nonnull(data);
        g_assert_cmpint(ho_json_get_string(data, "phase", &phase), ==, 0);
        g_assert_cmpint(qemu_migration_phase_from_string(phase), <, QEMU_MIGRATION_PHASE_LAST);
        /* Terminal phases are reported by their own events. */
        if (qemu_migration_phase_is_terminal(qemu_migration_phase_from_string(phase)))
            return;
        g_string_append_printf(phases, "%s%s", phases->len ? " " : "", phase);
        if (f->c->action == ACT_RECOVER) {
            bool *paused = dst ? &f->dst_paused : &f->src_paused;

            *paused = g_str_equal(phase, "postcopy-paused");
            /* The first attempt once both sides are paused. */
            if (f->src_paused && f->dst_paused && !f->acted) {
                f->acted = true;
                recover_next(f);
            }
            return;
        }
        if (f->c->action != ACT_NONE && !f->c->action_after && !f->acted &&
            f->c->action_on_dst == dst &&
            qemu_migration_phase_from_string(phase) == f->c->action_phase)
            act(f, dst);
        return;
    }
    if (g_str_equal(event, "postcopy-paused")) {
        /* Said each time a side pauses; only where the case expects it. */
        if (f->c->action != ACT_RECOVER)
            g_string_append_printf(f->log, "unexpected postcopy-paused event\n");
        f->paused_events++;
        return;
    }
    if (g_str_equal(event, "warning")) {
        const char *msg = NULL;

        /* Storage copy without pause-before-switchover: the unsafe order;
         * a refused raise of the downtime limit. */
        f->warned = true;
        if (!f->warning && ho_json_get_string(data, "message", &msg) == 0)
            f->warning = g_strdup(msg);
        ho_error_reset();
        return;
    }
    g_assert_true(g_str_equal(event, "completed") || g_str_equal(event, "failed") ||
                  g_str_equal(event, "cancelled"));
    g_string_append_printf(phases, "%s%s", phases->len ? " " : "", event);
    if (dst)
        f->dst_ended = true;
    else
        f->src_ended = true;
}

static gboolean
act_idle(gpointer opaque)
{
    Fx *f = opaque;

    act(f, f->c->action_on_dst);
    return G_SOURCE_REMOVE;
}

static void
mock_played(QemuMock *mock, const char *line, void *opaque)
{
    Fx *f = opaque;
    GSource *idle;

    (void)mock;
    if (!f->c->action_after || f->acted || !g_str_equal(line, f->c->action_after))
        return;
    f->acted = true; /* now: the idle acts */
    idle = g_idle_source_new();
    g_source_set_callback(idle, act_idle, f, NULL);
    g_source_attach(idle, f->ctx);
    g_source_unref(idle);
}

static void
src_done(QemuMigration *mig, const char *uuid, const HoError *err, json_object *stats,
         void *opaque)
{
    Fx *f = opaque;

    (void)mig;
    g_assert_cmpstr(uuid, ==, DOM_UUID);
    g_assert_false(f->src_done);
    /* Every event of the job, its end included, comes before this. */
    g_assert_true(f->src_ended);
    f->src_done = true;
    f->src_err = ho_error_copy(err);
    f->src_stats = stats ? json_object_get(stats) : NULL;
}

/* ---- setup and teardown ------------------------------------------------------ */

static QemuDriver *
open_driver(Fx *f, Host *host, const char *name, const char *dst_default_emu)
{
    g_autofree char *state = g_build_filename(f->dir, name, "state", NULL);
    g_autofree char *run = g_build_filename(f->dir, name, "run", NULL);
    g_autofree char *log = g_build_filename(f->dir, name, "log", NULL);
    g_autofree char *emu = dst_default_emu ? emulator_path(f, dst_default_emu) : NULL;
    QemuDriverConfig cfg = {
        .state_dir = state,
        .runtime_dir = run,
        .log_dir = log,
        .default_emulator = emu,
        .shutdown_timeout_s = 5,
        .spawn_hook = spawn_hook,
        .spawn_hook_opaque = host,
    };
    QemuDriver *drv = qemu_driver_open(&cfg, f->ctx, driver_event, f);

    if (!drv)
        g_error("cannot open the %s driver: %s", name, ho_error_last_message());
    return drv;
}

typedef struct {
    bool done;
    HoError *err;
} Wait;

static void
caps_done(QemuDriver *drv, const QemuCaps *caps, const HoError *err, void *opaque)
{
    Wait *w = opaque;

    (void)drv;
    (void)caps;
    w->err = ho_error_copy(err);
    w->done = true;
}

/* Probe an emulator through the driver, served by probe-EMU.jsonl. */
static void
warm_caps(Fx *f, QemuDriver *drv, const char *emu)
{
    g_autofree char *rel = g_strdup_printf("qemumigrationdata/probe-%s.jsonl", emu);
    g_autofree char *path = test_data_path(rel);
    g_autofree char *bin = emulator_path(f, emu);
    Wait w = {0};

    f->probe_mock = qemu_mock_new(path, f->ctx);
    if (!f->probe_mock)
        g_error("%s", ho_error_last_message());
    qemu_mock_set_max_delay(f->probe_mock, 0);
    qemu_driver_get_caps(drv, bin, caps_done, &w);
    if (!test_iterate_until(f->ctx, &w.done, CASE_TIMEOUT_MS))
        g_error("probing %s did not complete", emu);
    if (w.err)
        g_error("probing %s: %s (mock: %s)", emu, w.err->message,
                qemu_mock_failure(f->probe_mock) ? qemu_mock_failure(f->probe_mock) : "ok");
    if (qemu_mock_run(f->probe_mock, CASE_TIMEOUT_MS) < 0)
        g_error("probe of %s: %s", emu, ho_error_last_message());
    g_clear_pointer(&f->probe_mock, qemu_mock_free);
}

static void
start_done(QemuDriver *drv, QemuDomainObj *dom, const HoError *err, void *opaque)
{
    Wait *w = opaque;

    (void)drv;
    (void)dom;
    w->err = ho_error_copy(err);
    w->done = true;
}

static void
run_tool(const char *const *argv)
{
    g_autoptr(GError) gerr = NULL;
    g_autofree char *err = NULL;
    int status = 0;

    if (!g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_STDOUT_TO_DEV_NULL, NULL, NULL, NULL,
                      &err, &status, &gerr) ||
        !g_spawn_check_wait_status(status, &gerr))
        g_error("%s: %s %s", argv[0], gerr->message, err ? err : "");
}

static char *
file_sum(const char *path)
{
    g_autofree char *data = NULL;
    gsize len = 0;

    if (!g_file_get_contents(path, &data, &len, NULL))
        return NULL;
    return g_compute_checksum_for_data(G_CHECKSUM_SHA256, (const guchar *)data, len);
}

/* The source's images (real ones: qemu-img create, then data written with
 * qemu-io), and the destination's directory; the destination's vdb image
 * when the case says it is already there. */
static void
make_images(Fx *f)
{
    g_autofree char *qemu_img = g_find_program_in_path("qemu-img");
    g_autofree char *qemu_io = g_find_program_in_path("qemu-io");
    g_autofree char *srcdir = g_build_filename(f->dir, "src-images", NULL);
    g_autofree char *dstdir = g_build_filename(f->dir, "dst-images", NULL);

    if (!qemu_img || !qemu_io)
        g_error("qemu-img and qemu-io are needed for the storage scenarios");
    g_assert_cmpint(ho_file_ensure_dir(srcdir, 0700), ==, 0);
    g_assert_cmpint(ho_file_ensure_dir(dstdir, 0700), ==, 0);
    for (guint i = 0; i < f->c->n_disks && i < G_N_ELEMENTS(case_disks); i++) {
        g_autofree char *base = g_strdup_printf("%s.%s", case_disks[i].target,
                                                case_disks[i].format);
        const char *create[] = {qemu_img, "create", "-q", "-f", case_disks[i].format, NULL,
                                case_disks[i].size, NULL};
        const char *io[] = {qemu_io, "-f", case_disks[i].format, "-c", "write -P 0x5a 1M 1M",
                            NULL, NULL};

        f->src_images[i] = g_build_filename(srcdir, base, NULL);
        f->dst_images[i] = g_build_filename(dstdir, base, NULL);
        create[5] = f->src_images[i];
        run_tool(create);
        io[5] = f->src_images[i];
        run_tool(io);
        f->src_sums[i] = file_sum(f->src_images[i]);
        if (i == 1 && f->c->dst_has_vdb) {
            create[5] = f->dst_images[i];
            run_tool(create);
        }
    }
}

/* The domain's XML with this emulator and these disk images. */
static char *
domain_xml(Fx *f, const char *emulator, char *const *images)
{
    GString *xml = g_string_new(NULL);

    g_string_append_printf(xml,
                           "<domain type='qemu'>\n"
                           "  <name>" DOM_NAME "</name>\n"
                           "  <uuid>" DOM_UUID "</uuid>\n"
                           "  <memory unit='MiB'>128</memory>\n"
                           "  <vcpu>1</vcpu>\n"
                           "  <os>\n"
                           "    <type arch='x86_64' machine='pc'>hvm</type>\n"
                           "  </os>\n"
                           "  <devices>\n"
                           "    <emulator>%s</emulator>\n",
                           emulator);
    for (guint i = 0; i < f->c->n_disks && i < G_N_ELEMENTS(case_disks); i++)
        g_string_append_printf(xml,
                               "    <disk type='file' device='disk'>\n"
                               "      <driver name='qemu' type='%s'/>\n"
                               "      <source file='%s'/>\n"
                               "      <target dev='%s' bus='virtio'/>\n"
                               "    </disk>\n",
                               case_disks[i].format, images[i], case_disks[i].target);
    g_string_append(xml, "  </devices>\n"
                         "</domain>\n");
    return g_string_free(xml, FALSE);
}

/* Whether the source's side of a transcript stops the guest (a STOP
 * event) after the source sent migrate. */
static bool
transcript_src_stops(const char *path)
{
    g_autofree char *text = NULL;
    g_auto(GStrv) lines = NULL;
    bool migrated = false;

    g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
    lines = g_strsplit(text, "\n", -1);
    for (guint i = 0; lines[i]; i++) {
        g_autoptr(json_object) line = NULL;
        json_object *msg = NULL;
        const char *side = NULL, *dir = NULL, *execute = NULL, *event = NULL;

        if (lines[i][0] != '{' || !(line = json_tokener_parse(lines[i])))
            continue;
        if (ho_json_opt_string(line, "side", &side) <= 0 || !g_str_equal(side, "src") ||
            ho_json_opt_string(line, "dir", &dir) <= 0 ||
            ho_json_opt_object(line, "msg", &msg) <= 0 || !msg) {
            ho_error_reset();
            continue;
        }
        if (g_str_equal(dir, "send") && ho_json_opt_string(msg, "execute", &execute) > 0 &&
            g_str_equal(execute, "migrate"))
            migrated = true;
        else if (migrated && g_str_equal(dir, "recv") &&
                 ho_json_opt_string(msg, "event", &event) > 0 && g_str_equal(event, "STOP"))
            return true;
        ho_error_reset();
    }
    return false;
}

static void
fx_setup(Fx *f, const Case *c)
{
    static const char *const emus[] = {"qemu-7.2", "qemu-10.0", "qemu-7.2-nopause",
                                       "qemu-7.2-nomig"};
    g_autofree char *transcript = NULL;
    g_autofree char *rel = NULL;
    g_autofree char *xml = NULL;
    g_autofree char *src_emu = NULL;
    QemuMigrationConfig src_cfg = {
        .host_uuid = SRC_HOST_UUID,
        .hostname = "srchost",
        .migration_address = "127.0.0.1",
        .migration_port_min = 49152,
        .migration_port_max = 49215,
        /* No periodic query-migrate: a transcript cannot say when it comes. */
        .progress_interval_ms = 3600 * 1000,
        /* Nor the postcopy stall check's. */
        .postcopy_stall_s = c->postcopy_stall_s ? c->postcopy_stall_s : 3600,
        .switchover_boost = SWITCHOVER_BOOST,
    };
    QemuMigrationConfig dst_cfg = src_cfg;
    QemuDomainObj *dom;
    Wait w = {0};

    memset(f, 0, sizeof(*f));
    f->c = c;
    src_cfg.downtime_start_ms = c->downtime_start;
    src_cfg.mirror_buf_size = c->qemu_mirror_buf ? 0 : MIRROR_BUF_SIZE;
    f->ctx = g_main_context_ref_thread_default();
    f->dir = test_make_tmpdir("migration");
    f->bindir = g_build_filename(f->dir, "bin", NULL);
    f->src_phases = g_string_new(NULL);
    f->dst_phases = g_string_new(NULL);
    f->log = g_string_new(NULL);
    g_assert_cmpint(ho_file_ensure_dir(f->bindir, 0700), ==, 0);
    for (size_t i = 0; i < G_N_ELEMENTS(emus); i++) {
        g_autofree char *p = emulator_path(f, emus[i]);

        /* A fake binary: the driver stats it, the hook never runs it. */
        g_assert_true(g_file_set_contents(p, "#!/bin/false\n", -1, NULL));
    }
    f->src_host = (Host){.fx = f, .side = "src"};
    f->dst_host = (Host){.fx = f, .side = "dst"};
    f->src_drv = open_driver(f, &f->src_host, "src", NULL);
    f->dst_drv = open_driver(f, &f->dst_host, "dst", c->dst_emu);
    warm_caps(f, f->src_drv, c->src_emu);
    warm_caps(f, f->dst_drv, c->dst_emu);

    dst_cfg.host_uuid = DST_HOST_UUID;
    dst_cfg.hostname = "dsthost";
    f->src_mig = qemu_migration_new(f->src_drv, &src_cfg, mig_event, f);
    f->dst_mig = qemu_migration_new(f->dst_drv, &dst_cfg, mig_event, f);
    g_assert_nonnull(f->src_mig);
    g_assert_nonnull(f->dst_mig);

    rel = g_strdup_printf("qemumigrationdata/%s", c->transcript);
    transcript = test_data_path(rel);
    f->src_stops = transcript_src_stops(transcript);
    f->mock = qemu_mock_new(transcript, f->ctx);
    if (!f->mock)
        g_error("%s", ho_error_last_message());
    /* No recorded delays: what the mock can say it says at once, so that
     * draining the loop means every event sent has been read. */
    qemu_mock_set_max_delay(f->mock, 0);
    qemu_mock_set_close_func(f->mock, mock_closed, f);
    qemu_mock_set_history_func(f->mock, mock_played, f);

    /* The source domain: defined and started (the head of the transcript). */
    src_emu = emulator_path(f, c->src_emu);
    if (c->n_disks)
        make_images(f);
    xml = domain_xml(f, src_emu, f->src_images);
    if (c->n_disks) {
        g_autofree char *dst_emu = emulator_path(f, c->dst_emu);

        f->dst_xml = domain_xml(f, dst_emu, f->dst_images);
    }
    dom = qemu_driver_define(f->src_drv, xml);
    if (!dom)
        g_error("define: %s", ho_error_last_message());
    qemu_driver_domain_start(f->src_drv, dom, false, start_done, &w);
    if (!test_iterate_until(f->ctx, &w.done, CASE_TIMEOUT_MS))
        g_error("the source domain did not start: %s",
                qemu_mock_failure(f->mock) ? qemu_mock_failure(f->mock) : "(mock ok)");
    if (w.err)
        g_error("start: %s (mock: %s)", w.err->message,
                qemu_mock_failure(f->mock) ? qemu_mock_failure(f->mock) : "ok");
    g_assert_cmpint(qemu_domain_obj_state(dom), ==, QEMU_DOMAIN_STATE_RUNNING);
}

static bool
standin_alive(StandIn *s)
{
    siginfo_t si = {0};

    /* WNOWAIT: only look; the driver's child watch reaps. */
    return waitid(P_PIDFD, (id_t)s->pidfd, &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
           si.si_pid == 0;
}

static void
fx_teardown(Fx *f)
{
    /* The orchestrators and drivers first: they stop watching. */
    g_clear_pointer(&f->src_mig, qemu_migration_free);
    g_clear_pointer(&f->dst_mig, qemu_migration_free);
    g_clear_pointer(&f->src_drv, qemu_driver_free);
    g_clear_pointer(&f->dst_drv, qemu_driver_free);
    /* Then every stand-in still there is killed and reaped (by pidfd: a
     * pid the driver reaped may already name another process). */
    for (guint i = 0; i < f->n_standins; i++) {
        StandIn *s = &f->standins[i];
        siginfo_t si;

        if (qemu_process_pidfd_send_signal(s->pidfd, SIGKILL) < 0)
            ho_error_reset();
        while (waitid(P_PIDFD, (id_t)s->pidfd, &si, WEXITED) < 0 && errno == EINTR)
            ;
        close(s->pidfd);
    }
    f->n_standins = 0;
    g_clear_pointer(&f->mock, qemu_mock_free);
    g_clear_pointer(&f->probe_mock, qemu_mock_free);
    ho_error_free(f->src_err);
    g_clear_pointer(&f->src_stats, json_object_put);
    g_string_free(f->src_phases, TRUE);
    g_string_free(f->dst_phases, TRUE);
    g_string_free(f->log, TRUE);
    g_free(f->warning);
    for (guint i = 0; i < G_N_ELEMENTS(f->src_images); i++) {
        g_free(f->src_images[i]);
        g_free(f->dst_images[i]);
        g_free(f->src_sums[i]);
    }
    g_free(f->dst_xml);
    g_free(f->bindir);
    g_free(f->dir);
    g_main_context_unref(f->ctx);
}

/* ---- checks ---------------------------------------------------------------- */

static gboolean
quiet_done(gpointer opaque)
{
    *(bool *)opaque = true;
    return G_SOURCE_REMOVE;
}

/* Let everything already queued run (a short, bounded settle after the
 * waited-for conditions: events and exits that follow them). */
static void
settle(Fx *f)
{
    for (int i = 0; i < 3; i++) {
        bool done = false;
        GSource *t = g_timeout_source_new(20);

        g_source_set_callback(t, quiet_done, &done, NULL);
        g_source_attach(t, f->ctx);
        g_source_unref(t);
        (void)test_iterate_until(f->ctx, &done, 1000);
    }
}

/* Dispatch everything that is ready now, without waiting. */
static void
drain(Fx *f)
{
    for (int i = 0; i < 10000 && g_main_context_iteration(f->ctx, FALSE); i++)
        ;
}

/* The number of recovery attempts a case makes: up to the first that
 * must succeed. */
static guint
recover_attempts(const Case *c)
{
    guint n = 0;

    if (c->action != ACT_RECOVER)
        return 0;
    while (n < MAX_RECOVER && c->recover[n])
        n++;
    return n + 1;
}

/* The case's order lines appear in the history in that order. */
static void
check_order(Fx *f)
{
    const GPtrArray *h = qemu_mock_history(f->mock);
    guint at = 0;

    for (guint k = 0; k < G_N_ELEMENTS(f->c->order) && f->c->order[k]; k++) {
        while (at < h->len && !g_str_equal(h->pdata[at], f->c->order[k]))
            at++;
        if (at == h->len)
            g_error("%s: '%s' (order line %u) not in the history after the lines before it",
                    f->c->name, f->c->order[k], k);
        at++;
    }
}

/* Postcopy: the source is never cont'ed once it reached postcopy-active
 * (DESIGN.md §2 invariant 4), the destination exactly once. */
static void
check_postcopy_conts(Fx *f)
{
    const GPtrArray *h = qemu_mock_history(f->mock);
    bool pc = false;
    guint dst_conts = 0;

    for (guint i = 0; i < h->len; i++) {
        const char *l = h->pdata[i];

        if (g_str_equal(l, "src recv MIGRATION postcopy-active"))
            pc = true;
        if (pc && g_str_equal(l, "src send cont"))
            g_error("%s: the source was cont'ed in postcopy (history %u)", f->c->name, i);
        if (g_str_equal(l, "dst send cont"))
            dst_conts++;
    }
    g_assert_true(pc);
    g_assert_cmpuint(dst_conts, ==, 1);
}

static gboolean
case_over(Fx *f)
{
    bool dst_needed = f->c->dst_phases && *f->c->dst_phases;

    if (qemu_mock_failure(f->mock))
        return true; /* reported with its diff */
    if (f->c->action == ACT_RECOVER && f->attempts_done < recover_attempts(f->c))
        return false;
    return f->src_done && (!dst_needed || f->dst_ended) && qemu_mock_done(f->mock);
}

/* Invariant 1 on what the mock played: the destination's `cont` comes
 * after the source's MIGRATION completed was sent, and the source is
 * never cont'ed after the destination was. NULL, or what is wrong. */
static char *
invariant_1_violation(const GPtrArray *h)
{
    gint src_completed = -1;
    gint dst_cont = -1;

    for (guint i = 0; i < h->len; i++) {
        const char *l = h->pdata[i];

        /* DESIGN.md §2 invariant 1: completed, or postcopy-active. */
        if ((g_str_equal(l, "src recv MIGRATION completed") ||
             g_str_equal(l, "src recv MIGRATION postcopy-active")) &&
            src_completed < 0)
            src_completed = i;
        if (g_str_equal(l, "dst send cont") && dst_cont < 0) {
            if (src_completed < 0)
                return g_strdup_printf("destination cont (history %u) before the source's "
                                       "completed",
                                       i);
            dst_cont = i;
        }
        if (g_str_equal(l, "src send cont") && dst_cont >= 0)
            return g_strdup_printf("source cont (history %u) after the destination's "
                                   "(history %d)",
                                   i, dst_cont);
    }
    return NULL;
}

/* false when a known issue of the case showed (reported as incomplete). */
static bool
check_invariant_1(Fx *f)
{
    g_autofree char *bad = invariant_1_violation(qemu_mock_history(f->mock));

    if (bad && f->c->known_issue) {
        g_autofree char *msg = g_strdup_printf("known issue: %s: invariant 1: %s",
                                               f->c->known_issue, bad);

        g_test_incomplete(msg);
        return false;
    }
    if (bad)
        g_error("invariant 1: %s", bad);
    if (f->c->known_issue)
        g_error("%s: the known issue '%s' no longer shows: update the case", f->c->name,
                f->c->known_issue);
    return true;
}

/* The check itself can fail. */
static void
test_invariant_1(void)
{
    static const char *const good[] = {"src recv MIGRATION completed", "dst send cont",
                                       "dst recv RESUME"};
    static const char *const early[] = {"dst send cont", "src recv MIGRATION completed"};
    static const char *const twice[] = {"src recv MIGRATION completed", "dst send cont",
                                        "src send cont"};
    static const char *const unwound[] = {"src send migrate_cancel", "src send cont"};
    const struct {
        const char *const *lines;
        guint n;
        bool ok;
    } t[] = {
        {good, G_N_ELEMENTS(good), true},
        {early, G_N_ELEMENTS(early), false},
        {twice, G_N_ELEMENTS(twice), false},
        {unwound, G_N_ELEMENTS(unwound), true},
    };

    for (size_t i = 0; i < G_N_ELEMENTS(t); i++) {
        g_autoptr(GPtrArray) h = g_ptr_array_new();
        g_autofree char *bad = NULL;

        for (guint j = 0; j < t[i].n; j++)
            g_ptr_array_add(h, (gpointer)t[i].lines[j]);
        bad = invariant_1_violation(h);
        g_assert_true((bad == NULL) == t[i].ok);
    }
}

static void
check_domain(QemuDriver *drv, const char *host, QemuDomainState want)
{
    QemuDomainObj *dom = qemu_driver_lookup(drv, DOM_NAME);

    if (!dom)
        ho_error_reset();
    if (want == ABSENT) {
        if (dom && qemu_domain_obj_is_active(dom))
            g_error("%s: domain is %s, expected it gone", host,
                    qemu_domain_state_to_string(qemu_domain_obj_state(dom)));
        return;
    }
    if (!dom)
        g_error("%s: no domain, expected it %s", host, qemu_domain_state_to_string(want));
    g_assert_cmpstr(qemu_domain_state_to_string(qemu_domain_obj_state(dom)), ==,
                    qemu_domain_state_to_string(want));
}

/* The source's images are untouched whatever happened; the destination
 * keeps the images it created only when the migration completed, and
 * never removes one it did not create. */
static void
check_images(Fx *f)
{
    for (guint i = 0; i < f->c->n_disks && i < G_N_ELEMENTS(case_disks); i++) {
        g_autofree char *sum = file_sum(f->src_images[i]);
        bool pre = i == 1 && f->c->dst_has_vdb;
        bool want = f->c->outcome == OUT_COMPLETED || pre;

        if (g_strcmp0(sum, f->src_sums[i]) != 0)
            g_error("%s: the source image '%s' changed", f->c->name, f->src_images[i]);
        if (g_file_test(f->dst_images[i], G_FILE_TEST_EXISTS) != want)
            g_error("%s: the destination image '%s' is %s, expected it %s", f->c->name,
                    f->dst_images[i], want ? "missing" : "still there",
                    want ? "there" : "removed");
    }
}

/* A switchover boost never outlives its job: every stand-in still
 * running is back at the nice value it started at (the test's own), its
 * autogroup at 0. And a source that stopped its guest for a switchover
 * that completed says at which value its QEMU ran then (one already
 * unwinding when the guest stopped is not boosted). */
static void
check_boost(Fx *f, const char *label)
{
    QemuProcessNice own, now;
    int64_t boosted = 99;
    int has;

    g_assert_cmpint(qemu_process_get_nice(getpid(), &own), ==, 0);
    for (guint i = 0; i < f->n_standins; i++) {
        StandIn *s = &f->standins[i];

        if (!standin_alive(s) || qemu_process_get_nice(s->pid, &now) < 0) {
            ho_error_reset();
            continue;
        }
        if (now.threads != own.threads || (now.has_group && now.group != 0))
            g_error("%s: the %s QEMU (pid %d) is left at nice %d (autogroup %d), not %d (0)",
                    label, s->side, (int)s->pid, now.threads, now.group, own.threads);
    }
    has = f->src_stats ? ho_json_opt_int64(f->src_stats, "switchover_nice", &boosted) : 0;
    g_assert_cmpint(has, >=, 0);
    if (has)
        g_assert_cmpint(boosted, ==, MAX(-20, own.threads - SWITCHOVER_BOOST));
    if (geteuid() == 0 && f->src_stops && f->c->outcome == OUT_COMPLETED && !has)
        g_error("%s: the source's guest stopped for the switchover but its QEMU was not "
                "boosted",
                label);
}

static void
test_case(gconstpointer data)
{
    const Case *c = data;
    g_autofree char *label = g_strdup_printf("%s", c->name);
    QemuMigrationArgs args = {0};
    QemuDomainObj *dom;
    Fx f;
    int rc;

    fx_setup(&f, c);
    args.live = true;
    args.auto_converge = c->auto_converge;
    args.parallel = c->parallel;
    args.has_max_downtime = c->max_downtime > 0;
    args.max_downtime_ms = c->max_downtime;
    args.paused = c->paused;
    args.postcopy = c->postcopy;
    args.postcopy_after_precopy = c->postcopy;
    args.persistent = c->persistent;
    args.copy_storage_all = c->copy_storage;
    args.dxml = f.dst_xml; /* borrowed: args is not cleared */
    dom = qemu_driver_lookup(f.src_drv, DOM_NAME);
    g_assert_nonnull(dom);
    rc = qemu_migration_src_begin(f.src_mig, dom, &args, &peer_ops, &f, src_done, &f);
    if (c->outcome == OUT_REFUSED) {
        g_assert_cmpint(rc, ==, -1);
        g_assert_nonnull(ho_error_last());
        if (c->error && !strstr(ho_error_last_message(), c->error))
            g_error("%s: refusal '%s' does not mention '%s'", label, ho_error_last_message(),
                    c->error);
        ho_error_reset();
        g_assert_false(qemu_migration_any_has_job(f.src_mig, dom));
        f.src_done = true;
    } else {
        g_assert_cmpint(rc, ==, 0);
    }

    /* Wait for the job to end on both sides and the mock to finish. */
    {
        GSource *t = g_timeout_source_new(CASE_TIMEOUT_MS);
        bool timed_out = false;

        g_source_set_callback(t, quiet_done, &timed_out, NULL);
        g_source_attach(t, f.ctx);
        while (!case_over(&f) && !timed_out) {
            g_main_context_iteration(f.ctx, TRUE);
            if (c->action == ACT_PEER_LOST && f.src_done && !f.dst_told) {
                drain(&f);
                f.dst_told = true;
                qemu_migration_dst_peer_lost(f.dst_mig, DOM_UUID);
            }
        }
        g_source_destroy(t);
        g_source_unref(t);
        if (timed_out) {
            (void)qemu_mock_run(f.mock, 1);
            g_error("%s: timed out: src done %d, dst ended %d, src phases '%s', dst phases "
                    "'%s'; mock: %s",
                    label, f.src_done, f.dst_ended, f.src_phases->str, f.dst_phases->str,
                    ho_error_last_message());
        }
    }
    settle(&f);

    /* The exact QMP sequence, both sides. */
    if (qemu_mock_failure(f.mock))
        g_error("%s: %s\n(src phases '%s', dst phases '%s', src error: %s)", label,
                qemu_mock_failure(f.mock), f.src_phases->str, f.dst_phases->str,
                f.src_err ? f.src_err->message : "none");
    if (qemu_mock_run(f.mock, 2000) < 0)
        g_error("%s: %s", label, ho_error_last_message());
    if (!check_invariant_1(&f)) {
        fx_teardown(&f);
        return;
    }
    if (!c->log_has)
        g_assert_cmpstr(f.log->str, ==, "");
    if (c->action != ACT_NONE)
        g_assert_true(f.acted);

    g_test_message("%s: src phases '%s', dst phases '%s', src error: %s", label,
                   f.src_phases->str, f.dst_phases->str, f.src_err ? f.src_err->message : "none");
    /* The outcome. */
    switch (c->outcome) {
    case OUT_COMPLETED:
        if (f.src_err)
            g_error("%s: expected success, got: %s", label, f.src_err->message);
        break;
    case OUT_FAILED:
    case OUT_CANCELLED:
        if (!f.src_err)
            g_error("%s: expected an error, the job succeeded", label);
        if (c->error && !strstr(f.src_err->message, c->error))
            g_error("%s: error '%s' does not mention '%s'", label, f.src_err->message, c->error);
        break;
    case OUT_REFUSED:
        break;
    }
    if (c->log_has && !strstr(f.log->str, c->log_has))
        g_error("%s: the log '%s' does not mention '%s'", label, f.log->str, c->log_has);
    g_assert_cmpstr(f.src_phases->str, ==,
                    c->outcome == OUT_REFUSED ? "" : c->src_phases);
    if (!c->dst_phases_alt || !g_str_equal(f.dst_phases->str, c->dst_phases_alt))
        g_assert_cmpstr(f.dst_phases->str, ==, c->dst_phases);
    check_domain(f.src_drv, "source", c->src_state);
    check_domain(f.dst_drv, "destination", c->dst_state);
    check_images(&f);
    g_assert_cmpint(f.warned, ==, c->warns);
    if (c->warning && (!f.warning || !strstr(f.warning, c->warning)))
        g_error("%s: expected the warning '%s', got '%s'", label, c->warning,
                f.warning ? f.warning : "none");
    if (c->action == ACT_RECOVER) {
        guint n = recover_attempts(c);

        g_assert_cmpuint(f.attempts, ==, n);
        g_assert_cmpuint(f.attempts_done, ==, n);
        /* One per side at the break, one more from the source per failed
         * attempt (the destination stays paused meanwhile). */
        g_assert_cmpuint(f.paused_events, ==, 2 + n - 1);
    }
    if (c->postcopy)
        check_postcopy_conts(&f);
    check_order(&f);
    check_boost(&f, label);
    if (c->outcome == OUT_COMPLETED) {
        int64_t limit = 0;
        int has = ho_json_opt_int64(f.src_stats, "downtime_limit_ms", &limit);

        g_assert_cmpint(has, ==, c->downtime_final ? 1 : 0);
        if (has)
            g_assert_cmpint(limit, ==, c->downtime_final);
    }
    dom = qemu_driver_lookup(f.src_drv, DOM_NAME);
    if (dom)
        g_assert_false(qemu_migration_any_has_job(f.src_mig, dom));
    else
        ho_error_reset();
    /* The last QEMU of each side: gone unless its domain runs (or is paused). */
    for (int side = 0; side < 2; side++) {
        const char *name = side ? "dst" : "src";
        QemuDomainState want = side ? c->dst_state : c->src_state;
        StandIn *last = NULL;

        for (guint i = 0; i < f.n_standins; i++) {
            if (f.standins[i].mock == f.mock && g_str_equal(f.standins[i].side, name))
                last = &f.standins[i];
        }
        if (!last)
            continue;
        if (want == ABSENT && standin_alive(last))
            g_error("%s: the %s QEMU (pid %d) still runs", label, name, (int)last->pid);
        if (want != ABSENT && !standin_alive(last))
            g_error("%s: the %s QEMU is gone but its domain is %s", label, name,
                    qemu_domain_state_to_string(want));
    }
    fx_teardown(&f);
}

/* The mock's additions this harness relies on. */
typedef struct {
    guint closes;
    char *closed_side;
} MockSeen;

static void
mock_test_closed(QemuMock *mock, const char *side, void *opaque)
{
    MockSeen *seen = opaque;

    (void)mock;
    seen->closes++;
    g_free(seen->closed_side);
    seen->closed_side = g_strdup(side);
}

static void
test_mock(void)
{
    g_autofree char *path = test_data_path("qemumigrationdata/mock-include.jsonl");
    g_autofree char *dir = test_make_tmpdir("migration-mock");
    g_autofree char *sock = g_build_filename(dir, "chosen.qmp", NULL);
    GMainContext *ctx = g_main_context_ref_thread_default();
    g_autoptr(QemuMock) mock = qemu_mock_new(path, ctx);
    g_autoptr(json_object) ret = NULL;
    const GPtrArray *h;
    static const char *const want[] = {"a send qmp_capabilities", "a recv return",
                                       "a send query-status",     "a recv return",
                                       "a send cont",             "a recv RESUME",
                                       "a recv return",           "a close"};
    MockSeen seen = {0};
    QemuMonitor *mon;
    bool running = true;

    g_assert_nonnull(mock);
    qemu_mock_set_max_delay(mock, 0);
    qemu_mock_set_close_func(mock, mock_test_closed, &seen);
    g_assert_cmpint(qemu_mock_side_listen_at(mock, "a", sock), ==, 0);
    g_assert_cmpstr(qemu_mock_socket_path(mock, "a"), ==, sock);
    mon = qemu_monitor_open_unix(sock, "a", ctx, NULL, NULL);
    g_assert_nonnull(mon);
    g_assert_cmpint(qemu_monitor_wait_ready(mon, CASE_TIMEOUT_MS), ==, 0);
    /* replace_return: the part's "running" became "paused". */
    g_assert_cmpint(qemu_monitor_send_sync(mon, "query-status", NULL, -1, &ret, CASE_TIMEOUT_MS),
                    ==, 0);
    g_assert_cmpint(ho_json_get_bool(ret, "running", &running), ==, 0);
    g_assert_false(running);
    /* stop_at: the part's quit is not expected; the outer cont is. */
    g_assert_cmpint(qemu_monitor_send_sync(mon, "cont", NULL, -1, NULL, CASE_TIMEOUT_MS), ==, 0);
    /* The close waits for the client. */
    g_assert_false(qemu_mock_done(mock));
    g_assert_cmpuint(seen.closes, ==, 0);
    qemu_monitor_close(mon);
    qemu_monitor_unref(mon);
    g_assert_cmpint(qemu_mock_run(mock, CASE_TIMEOUT_MS), ==, 0);
    g_assert_cmpuint(seen.closes, ==, 1);
    g_assert_cmpstr(seen.closed_side, ==, "a");
    h = qemu_mock_history(mock);
    g_assert_cmpuint(h->len, ==, G_N_ELEMENTS(want));
    for (guint i = 0; i < h->len; i++)
        g_assert_cmpstr(h->pdata[i], ==, want[i]);
    g_free(seen.closed_side);
    g_main_context_unref(ctx);
}

static void
mock_quiet_stop(QemuMonitor *mon, const char *name, json_object *data, gint64 qemu_ts,
                gint64 recv_ts, void *opaque)
{
    (void)mon;
    (void)name;
    (void)data;
    (void)qemu_ts;
    (void)recv_ts;
    *(bool *)opaque = true;
}

/* quiet_ms: a client that waits for the event passes, one that sends its
 * next command before the event fails the transcript. */
static void
test_mock_quiet(void)
{
    g_autofree char *path = test_data_path("qemumigrationdata/mock-quiet.jsonl");
    GMainContext *ctx = g_main_context_ref_thread_default();

    for (int hasty = 0; hasty < 2; hasty++) {
        g_autoptr(QemuMock) mock = qemu_mock_new(path, ctx);
        QemuMonitor *mon;
        bool stopped = false;

        g_assert_nonnull(mock);
        qemu_mock_set_max_delay(mock, 0);
        mon = qemu_monitor_open_unix(qemu_mock_socket_path(mock, "a"), "a", ctx, NULL, NULL);
        g_assert_nonnull(mon);
        (void)qemu_monitor_subscribe(mon, "STOP", mock_quiet_stop, &stopped);
        g_assert_cmpint(qemu_monitor_wait_ready(mon, CASE_TIMEOUT_MS), ==, 0);
        g_assert_cmpint(
            qemu_monitor_send_sync(mon, "query-status", NULL, -1, NULL, CASE_TIMEOUT_MS), ==, 0);
        if (hasty) {
            (void)qemu_monitor_send(mon, "cont", NULL, -1, NULL, NULL);
            g_assert_cmpint(qemu_mock_run(mock, CASE_TIMEOUT_MS), ==, -1);
            g_assert_nonnull(strstr(qemu_mock_failure(mock), "sent before"));
            g_assert_false(stopped);
            ho_error_reset();
        } else {
            g_assert_true(test_iterate_until(ctx, &stopped, CASE_TIMEOUT_MS));
            g_assert_cmpint(qemu_monitor_send_sync(mon, "cont", NULL, -1, NULL, CASE_TIMEOUT_MS),
                            ==, 0);
            qemu_monitor_close(mon);
            g_assert_cmpint(qemu_mock_run(mock, CASE_TIMEOUT_MS), ==, 0);
        }
        qemu_monitor_close(mon);
        qemu_monitor_unref(mon);
    }
    g_main_context_unref(ctx);
}

/* The phase list is part of the contract of these tests: a new phase must
 * come with its scenarios. */
static void
test_phases(void)
{
    static const char *const names[] = {"none", "begin", "prepare", "mirror", "perform",
                                        "pre-switchover",
                                        "switchover", "finish", "confirm", "postcopy",
                                        "postcopy-paused", "postcopy-recover", "completed",
                                        "failed", "cancelled"};

    g_assert_cmpint(QEMU_MIGRATION_PHASE_LAST, ==, 15);
    g_assert_cmpint(G_N_ELEMENTS(names), ==, QEMU_MIGRATION_PHASE_LAST);
    for (int i = 0; i < QEMU_MIGRATION_PHASE_LAST; i++) {
        g_assert_cmpstr(qemu_migration_phase_to_string(i), ==, names[i]);
        g_assert_cmpint(qemu_migration_phase_from_string(names[i]), ==, i);
        g_assert_cmpint(qemu_migration_phase_is_terminal(i), ==,
                        i == QEMU_MIGRATION_PHASE_COMPLETED || i == QEMU_MIGRATION_PHASE_FAILED ||
                            i == QEMU_MIGRATION_PHASE_CANCELLED);
    }
    g_assert_cmpint(qemu_migration_phase_from_string("bogus"), ==, QEMU_MIGRATION_PHASE_LAST);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/migration/phases", test_phases);
    g_test_add_func("/migration/mock", test_mock);
    g_test_add_func("/migration/mock-quiet", test_mock_quiet);
    g_test_add_func("/migration/invariant-1", test_invariant_1);
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *path = g_strdup_printf("/migration/scenario/%s", cases[i].name);

        g_test_add_data_func(path, &cases[i], test_case);
    }
    return g_test_run();
}
