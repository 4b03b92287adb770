/*
 * Helpers shared by the tests.
 *
 * Temporary directories: every directory test_make_tmpdir() hands out lives
 * under one parent per test process, "$TMPDIR/handover-test-<pid>-XXXXXX".
 * An atexit() handler removes that parent when the process exits normally.
 * A failed g_assert() ends the process with abort(), which skips atexit
 * handlers, so the parent of a crashed test would stay behind: to cover
 * that, the first call in every test process also removes the parents of
 * earlier test processes whose pid no longer exists (only directories of
 * our own user, never following symlinks). A leftover therefore lives only
 * until the next test run.
 */
#include "testutils.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ho_error.h"
#include "ho_file.h"

#define TEST_TMP_PREFIX "handover-test-"

static GMutex tmp_lock;
static char *tmp_parent; /* this process's parent directory, or NULL */

const char *
test_srcdir(void)
{
    const char *dir = g_getenv("HANDOVER_SRCDIR");

    if (dir && *dir)
        return dir;
    return HANDOVER_SRCDIR_DEFAULT;
}

char *
test_data_path(const char *rel)
{
    return g_build_filename(test_srcdir(), "tests", rel, NULL);
}

bool
test_regenerate(void)
{
    return g_strcmp0(g_getenv("HANDOVER_TEST_REGENERATE"), "1") == 0;
}

/* Remove a tree without disturbing the calling thread's error slot. */
static void
test_remove_tree_quietly(const char *path)
{
    HoError *saved = ho_error_save();

    if (ho_file_remove_tree(path) < 0)
        fprintf(stderr, "cannot remove '%s': %s\n", path, ho_error_last_message());
    ho_error_reset();
    ho_error_restore(&saved);
}

static void
test_tmp_atexit(void)
{
    g_mutex_lock(&tmp_lock);
    if (tmp_parent) {
        test_remove_tree_quietly(tmp_parent);
        g_clear_pointer(&tmp_parent, g_free);
    }
    g_mutex_unlock(&tmp_lock);
}

/* "handover-test-<pid>-..." -> pid, or 0 when the name is not one of ours. */
static pid_t
test_tmp_name_pid(const char *name)
{
    const char *p = name + strlen(TEST_TMP_PREFIX);
    guint64 pid = 0;

    if (!g_str_has_prefix(name, TEST_TMP_PREFIX) || !g_ascii_isdigit(*p))
        return 0;
    while (g_ascii_isdigit(*p)) {
        pid = pid * 10 + (*p - '0');
        if (pid > G_MAXINT32)
            return 0;
        p++;
    }
    if (*p != '-')
        return 0;
    return (pid_t)pid;
}

static void
test_tmp_remove_stale(void)
{
    const char *base = g_get_tmp_dir();
    g_autoptr(GDir) dir = g_dir_open(base, 0, NULL);
    const char *name;

    if (!dir)
        return;
    while ((name = g_dir_read_name(dir))) {
        pid_t pid = test_tmp_name_pid(name);
        g_autofree char *path = NULL;
        struct stat st;

        if (pid <= 0 || pid == getpid())
            continue;
        /* EPERM: alive, another user's process. */
        if (kill(pid, 0) == 0 || errno != ESRCH)
            continue;
        path = g_build_filename(base, name, NULL);
        if (lstat(path, &st) < 0 || !S_ISDIR(st.st_mode) || st.st_uid != getuid())
            continue;
        test_remove_tree_quietly(path);
    }
}

char *
test_make_tmpdir(const char *tag)
{
    g_autofree char *safe_tag = g_strdup(tag && *tag ? tag : "tmp");
    g_autofree char *path = NULL;

    g_strdelimit(safe_tag, "/ ", '_');

    g_mutex_lock(&tmp_lock);
    if (!tmp_parent) {
        g_autofree char *tmpl = g_strdup_printf(TEST_TMP_PREFIX "%d-XXXXXX", (int)getpid());
        g_autoptr(GError) err = NULL;

        test_tmp_remove_stale();
        tmp_parent = g_dir_make_tmp(tmpl, &err);
        if (!tmp_parent)
            g_error("cannot create a temporary directory: %s", err->message);
        atexit(test_tmp_atexit);
    }
    path = g_strdup_printf("%s/%s-XXXXXX", tmp_parent, safe_tag);
    g_mutex_unlock(&tmp_lock);

    if (!g_mkdtemp(path))
        g_error("cannot create a temporary directory '%s': %s", path, g_strerror(errno));
    return g_steal_pointer(&path);
}

int
test_compare_to_file(const char *actual, const char *path)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *expected = NULL;
    g_autofree char *dir = NULL;
    g_autofree char *actual_path = NULL;
    g_autofree char *out = NULL;
    g_autofree char *errout = NULL;
    int status = 0;

    if (test_regenerate()) {
        if (!g_file_set_contents(path, actual, -1, &err)) {
            fprintf(stderr, "cannot regenerate '%s': %s\n", path, err->message);
            return -1;
        }
        return 0;
    }
    if (!g_file_get_contents(path, &expected, NULL, &err)) {
        fprintf(stderr, "cannot read expected output '%s': %s\n"
                        "(HANDOVER_TEST_REGENERATE=1 creates it)\n",
                path, err->message);
        return -1;
    }
    if (g_str_equal(expected, actual))
        return 0;

    dir = test_make_tmpdir("diff");
    actual_path = g_build_filename(dir, "actual", NULL);
    fprintf(stderr, "'%s' differs from the actual output "
                    "(HANDOVER_TEST_REGENERATE=1 rewrites it):\n", path);
    if (g_file_set_contents(actual_path, actual, -1, &err)) {
        const char *argv[] = {"diff", "-u", "--label", path, "--label", "actual",
                              path, actual_path, NULL};

        if (g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &out,
                         &errout, &status, &err)) {
            fputs(out, stderr);
            fputs(errout, stderr);
        } else {
            fprintf(stderr, "cannot run diff: %s\nactual:\n%s\n", err->message, actual);
        }
    } else {
        fprintf(stderr, "cannot write '%s': %s\nactual:\n%s\n", actual_path, err->message,
                actual);
    }
    test_remove_tree_quietly(dir);
    return -1;
}

static gboolean
test_iterate_timeout(gpointer data)
{
    bool *timed_out = data;

    *timed_out = true;
    return G_SOURCE_REMOVE;
}

bool
test_iterate_until(GMainContext *ctx, const bool *flag, guint timeout_ms)
{
    GSource *timer = g_timeout_source_new(timeout_ms);
    bool timed_out = false;

    g_source_set_callback(timer, test_iterate_timeout, &timed_out, NULL);
    g_source_attach(timer, ctx);
    while (!*flag && !timed_out)
        g_main_context_iteration(ctx, TRUE);
    g_source_destroy(timer);
    g_source_unref(timer);
    return *flag;
}
