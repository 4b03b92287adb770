/*
 * Flight recordings (src/qemu/qemu_recorder.h) read back in tests: the
 * JSON lines {"ts","side","dir","msg"} a daemon wrote for every QMP
 * exchange, reduced to the events that matter for DESIGN.md §2 invariant 1
 * (never two writers): STOP, RESUME and MIGRATION status changes, and the
 * migrate-continue commands sent, each with the recorder's monotonic
 * timestamp. Two daemons on one machine share
 * that clock, so the events of both sides can be ordered.
 */
#pragma once

#include <glib.h>
#include <stdbool.h>

typedef enum {
    REC_EVENT_STOP = 0,
    REC_EVENT_RESUME,
    REC_EVENT_MIGRATION, /* status in RecEvent.status */
    REC_EVENT_CONTINUE,  /* migrate-continue sent to QEMU (not an event) */
    REC_EVENT_LAST
} RecEventKind;

typedef struct {
    gint64 ts;       /* µs, CLOCK_MONOTONIC */
    RecEventKind kind;
    char *side;      /* the monitor's label (the domain name), or NULL */
    char *status;    /* MIGRATION: "active", "completed", ...; else NULL */
} RecEvent;

typedef struct {
    char *path;
    GPtrArray *events; /* RecEvent, in file order (ts ascending per monitor) */
    guint lines;       /* lines read */
} TestRecording;

/* Read a recording; only events received from QEMU on monitors labelled
 * side (NULL: any monitor except capability probes) are kept. Fails the
 * test when a line is not a recorder line; a missing file is an empty
 * recording. */
TestRecording *test_recording_load(const char *path, const char *side);
void test_recording_free(TestRecording *rec);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(TestRecording, test_recording_free)

/* Number of events of a kind (status for MIGRATION, NULL: any). */
guint test_recording_count(const TestRecording *rec, RecEventKind kind, const char *status);
/* The first event of a kind (and status) at or after ts; NULL if none. */
const RecEvent *test_recording_first(const TestRecording *rec, RecEventKind kind,
                                     const char *status, gint64 after_ts);
/* The last STOP or RESUME strictly before ts; NULL if none. */
const RecEvent *test_recording_last_run_state(const TestRecording *rec, gint64 before_ts);

/* Invariant 1 for a completed migration, from both sides' recordings,
 * looking at events from since_us on (the migration's start): the
 * destination resumed; before that the source's last run-state
 * event is a STOP and the source reported MIGRATION completed; the source
 * never RESUMEs at or after the destination's RESUME. true, and
 * *pause_us = destination RESUME - that source STOP; false and *why (g_free
 * it) otherwise. */
bool test_recording_check_handover(const TestRecording *src, const TestRecording *dst,
                                   gint64 since_us, gint64 *pause_us, char **why);
/* For a migration that did not happen: the destination never RESUMEd
 * from since_us on, and the source is running at the end (no STOP, or its
 * last run-state event is a RESUME). false and *why otherwise. */
bool test_recording_check_no_handover(const TestRecording *src, const TestRecording *dst,
                                      gint64 since_us, char **why);
/* One line per event, for failure messages (g_free it). */
char *test_recording_describe(const TestRecording *rec);

/* Commands sent to QEMU in the recording at path, from since_us on, on
 * monitors labelled side (NULL: any monitor except capability probes),
 * whose "execute" is execute and, with key non-NULL, whose arguments hold
 * the string value under key (a node name, a job id), and that QEMU
 * answered with success (a "return" under the command's id). A missing
 * file counts none; a line that is not a recorder line fails the test. */
guint test_recording_count_done(const char *path, const char *side, gint64 since_us,
                                const char *execute, const char *key, const char *value);
/* The same commands' "arguments" objects (a command without any gives
 * an empty one), in the order they were sent: free the array. */
GPtrArray *test_recording_done_args(const char *path, const char *side, gint64 since_us,
                                    const char *execute, const char *key, const char *value);
