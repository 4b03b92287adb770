/*
 * Pieces the end-to-end migration tests (tests/migration*test.c) share:
 * the source daemon's domain.job events followed while a background
 * `handover migrate` runs, and facts about the shared storage.
 */
#pragma once

#include <glib.h>
#include <stdbool.h>

#include "ho_rpc_client.h"
#include "testdaemon.h"

/* ---- job events from a daemon ---- */

typedef struct {
    const char *name; /* the domain */
    /* What was seen for it, in order: "phase:<phase>" per phase event,
     * "mirror-copying" once when a mirror phase progress event reports
     * copied bytes, and every other event by name ("completed", ...;
     * "progress" is left out). */
    GPtrArray *seen;
    bool cli_exited;
    bool timed_out;
} TestJobWatch;

/* Connect to d's socket as client, subscribe to events and follow the job
 * of domain name into w; returns the connection (g_autoptr(HoRpcConn);
 * free it before clearing w). The test fails when it cannot. */
HoRpcConn *test_job_watch_open(TestDaemon *d, TestJobWatch *w, const char *name,
                               const char *client);
/* Whether item was seen. */
bool test_job_watch_seen(const TestJobWatch *w, const char *item);
/* What was seen, ", "-separated (g_free it). */
char *test_job_watch_seen_text(const TestJobWatch *w);
/* Wait for item while job (a `handover migrate`) runs; the test fails
 * when the CLI ends first or item does not come in timeout_ms. item
 * NULL: wait (bounded by timeout_ms) until the CLI exits. */
void test_job_watch_wait(TestJobWatch *w, TestCliJob *job, const char *item, guint timeout_ms);
/* Take in every job event the daemon sent before now on c: a call on the
 * same connection is answered after them. */
void test_job_watch_sync(HoRpcConn *c, const char *name);
void test_job_watch_clear(TestJobWatch *w);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(TestJobWatch, test_job_watch_clear)

/* ---- storage ---- */

/* Whether the file at path opens with O_DIRECT (cache='none' needs it;
 * tmpfs refuses it). */
bool test_path_takes_odirect(const char *path);
/* Create dir/disk.raw, mib MiB of zeroes, the shared storage's image
 * (g_free the path). *unsafe: it does not take O_DIRECT, so cache='none'
 * is impossible and the migration needs --unsafe (said in a message). */
char *test_shared_disk_new(const char *dir, guint mib, bool *unsafe);
