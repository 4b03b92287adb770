/* Tests for src/util/ho_error: per-thread errors, names, rollback. */
#include <errno.h>
#include <string.h>

#include <glib.h>

#include "ho_error.h"
#include "ho_i18n.h"

static void
test_code_names(void)
{
    static const char *const expected[] = {
        "none", "internal", "invalid-arg", "system", "json", "xml", "uri", "qmp",
        "monitor", "timeout", "no-support", "operation-invalid", "limit", "rpc", "no-domain",
    };
    int i;

    /* A new code must get a name here too: the count is checked. */
    g_assert_cmpint(G_N_ELEMENTS(expected), ==, HO_ERR_LAST);
    for (i = 0; i < HO_ERR_LAST; i++)
        g_assert_cmpstr(ho_error_code_name(i), ==, expected[i]);
    g_assert_cmpstr(ho_error_code_name(HO_ERR_LAST), ==, "unknown");
    g_assert_cmpstr(ho_error_code_name(-1), ==, "unknown");
}

static void
test_report_and_last(void)
{
    const HoError *err;

    ho_error_reset();
    g_assert_null(ho_error_last());
    g_assert_cmpstr(ho_error_last_message(), ==, "an unknown error occurred");

    ho_error_report(HO_ERR_INVALID_ARG, _("unknown disk '%1$s' on '%2$s'"), "vda", "dom1");
    err = ho_error_last();
    g_assert_nonnull(err);
    g_assert_cmpint(err->code, ==, HO_ERR_INVALID_ARG);
    g_assert_null(err->qmp_class);
    g_assert_cmpstr(err->message, ==, "unknown disk 'vda' on 'dom1'");
    g_assert_cmpstr(ho_error_last_message(), ==, "unknown disk 'vda' on 'dom1'");

    /* Positional arguments may come in any order. */
    ho_error_report(HO_ERR_XML, "%2$s before %1$s", "one", "two");
    g_assert_cmpstr(ho_error_last_message(), ==, "two before one");
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_XML);

    ho_error_reset();
    g_assert_null(ho_error_last());
}

static void
test_report_errno(void)
{
    g_autofree char *expected = g_strdup_printf("cannot open '/x': %s", g_strerror(ENOENT));

    errno = EBADF;
    ho_error_report_errno(HO_ERR_SYSTEM, ENOENT, "cannot open '%1$s'", "/x");
    /* Reporting leaves errno alone, so callers may still look at it. */
    g_assert_cmpint(errno, ==, EBADF);
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_SYSTEM);
    g_assert_cmpstr(ho_error_last_message(), ==, expected);
    ho_error_reset();
}

static void
test_report_gerror(void)
{
    g_autoptr(GError) gerr = g_error_new_literal(G_FILE_ERROR, G_FILE_ERROR_FAILED, "it broke");

    ho_error_report_gerror(HO_ERR_MONITOR, gerr);
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_MONITOR);
    g_assert_cmpstr(ho_error_last_message(), ==, "it broke");
    /* The GError is still the caller's. */
    g_assert_cmpstr(gerr->message, ==, "it broke");

    ho_error_report_gerror(HO_ERR_INTERNAL, NULL);
    g_assert_cmpstr(ho_error_last_message(), ==, "an unknown error occurred");
    ho_error_reset();
}

static void
test_objects(void)
{
    g_autoptr(HoError) err = ho_error_new(HO_ERR_TIMEOUT, "waited %1$d ms", 250);
    g_autoptr(HoError) qmp = ho_error_new_qmp("GenericError", "Device 'x' not found");
    g_autoptr(HoError) nodesc = ho_error_new_qmp("CommandNotFound", NULL);
    g_autoptr(HoError) copy = NULL;

    g_assert_cmpint(err->code, ==, HO_ERR_TIMEOUT);
    g_assert_cmpstr(err->message, ==, "waited 250 ms");
    g_assert_null(err->qmp_class);

    g_assert_cmpint(qmp->code, ==, HO_ERR_QMP);
    g_assert_cmpstr(qmp->qmp_class, ==, "GenericError");
    g_assert_cmpstr(qmp->message, ==, "Device 'x' not found");
    g_assert_cmpstr(nodesc->qmp_class, ==, "CommandNotFound");
    g_assert_nonnull(nodesc->message);
    g_assert_cmpstr(nodesc->message, !=, "");

    copy = ho_error_copy(qmp);
    g_assert_true(copy != qmp);
    g_assert_true(copy->message != qmp->message);
    g_assert_cmpint(copy->code, ==, HO_ERR_QMP);
    g_assert_cmpstr(copy->qmp_class, ==, "GenericError");
    g_assert_cmpstr(copy->message, ==, "Device 'x' not found");
    g_assert_null(ho_error_copy(NULL));
    ho_error_free(NULL);
}

static void
test_set_and_steal(void)
{
    HoError *stolen;

    ho_error_set(ho_error_new_qmp("DeviceNotFound", "no such device"));
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_QMP);
    g_assert_cmpstr(ho_error_last()->qmp_class, ==, "DeviceNotFound");

    stolen = ho_error_steal();
    g_assert_nonnull(stolen);
    g_assert_null(ho_error_last());
    g_assert_cmpstr(stolen->message, ==, "no such device");
    ho_error_free(stolen);
    g_assert_null(ho_error_steal());

    /* Setting NULL empties the slot. */
    ho_error_report(HO_ERR_RPC, "x");
    ho_error_set(NULL);
    g_assert_null(ho_error_last());
}

/* Rollback keeps the first error even when cleanup reports its own. */
static void
test_save_restore(void)
{
    HoError *saved;

    ho_error_report(HO_ERR_QMP, "migration failed");
    saved = ho_error_save();
    g_assert_nonnull(saved);
    g_assert_null(ho_error_last());

    ho_error_report(HO_ERR_SYSTEM, "cleanup failed too");
    g_assert_cmpstr(ho_error_last_message(), ==, "cleanup failed too");

    ho_error_restore(&saved);
    g_assert_null(saved);
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_QMP);
    g_assert_cmpstr(ho_error_last_message(), ==, "migration failed");

    /* Nothing saved: whatever cleanup reported stays, being the first. */
    ho_error_reset();
    saved = ho_error_save();
    g_assert_null(saved);
    ho_error_report(HO_ERR_SYSTEM, "cleanup error");
    ho_error_restore(&saved);
    g_assert_cmpstr(ho_error_last_message(), ==, "cleanup error");

    /* Saved error, clean cleanup: the saved one comes back. */
    ho_error_report(HO_ERR_TIMEOUT, "first");
    saved = ho_error_save();
    ho_error_restore(&saved);
    g_assert_cmpstr(ho_error_last_message(), ==, "first");
    ho_error_restore(NULL);
    ho_error_reset();
}

typedef struct {
    GMutex lock;
    GCond cond;
    int stage; /* 1: thread reported, 2: main checked, 3: thread done */
    char *thread_seen_before;
    char *thread_seen_after;
} ThreadData;

static void
thread_wait_stage(ThreadData *td, int stage)
{
    g_mutex_lock(&td->lock);
    while (td->stage < stage)
        g_cond_wait(&td->cond, &td->lock);
    g_mutex_unlock(&td->lock);
}

static void
thread_set_stage(ThreadData *td, int stage)
{
    g_mutex_lock(&td->lock);
    td->stage = stage;
    g_cond_broadcast(&td->cond);
    g_mutex_unlock(&td->lock);
}

static gpointer
error_thread(gpointer data)
{
    ThreadData *td = data;

    /* The main thread's error is not visible here. */
    td->thread_seen_before = g_strdup(ho_error_last() ? ho_error_last_message() : "(none)");
    ho_error_report(HO_ERR_MONITOR, "thread error");
    thread_set_stage(td, 1);
    thread_wait_stage(td, 2);
    td->thread_seen_after = g_strdup(ho_error_last_message());
    /* Left in the slot on purpose: the destroy notify frees it at exit
     * (LeakSanitizer would see a leak otherwise). */
    thread_set_stage(td, 3);
    return NULL;
}

static void
test_per_thread(void)
{
    ThreadData td = {0};
    GThread *thread;

    g_mutex_init(&td.lock);
    g_cond_init(&td.cond);

    ho_error_report(HO_ERR_NO_DOMAIN, "main error");
    thread = g_thread_new("errtest", error_thread, &td);
    thread_wait_stage(&td, 1);
    /* The thread reported: our slot is untouched. */
    g_assert_cmpstr(ho_error_last_message(), ==, "main error");
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_NO_DOMAIN);
    ho_error_report(HO_ERR_LIMIT, "main error 2");
    thread_set_stage(&td, 2);
    g_thread_join(thread);

    g_assert_cmpstr(td.thread_seen_before, ==, "(none)");
    g_assert_cmpstr(td.thread_seen_after, ==, "thread error");
    g_assert_cmpstr(ho_error_last_message(), ==, "main error 2");

    g_free(td.thread_seen_before);
    g_free(td.thread_seen_after);
    g_mutex_clear(&td.lock);
    g_cond_clear(&td.cond);
    ho_error_reset();
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    g_test_add_func("/error/code-names", test_code_names);
    g_test_add_func("/error/report", test_report_and_last);
    g_test_add_func("/error/report-errno", test_report_errno);
    g_test_add_func("/error/report-gerror", test_report_gerror);
    g_test_add_func("/error/objects", test_objects);
    g_test_add_func("/error/set-steal", test_set_and_steal);
    g_test_add_func("/error/save-restore", test_save_restore);
    g_test_add_func("/error/per-thread", test_per_thread);

    return g_test_run();
}
