/* Tests for src/util/ho_file: atomic writes, bounded reads, trees. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "ho_error.h"
#include "ho_file.h"
#include "testutils.h"

static gint
compare_names(gconstpointer a, gconstpointer b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Names in dir, sorted and joined with ','. */
static char *
list_dir(const char *dir)
{
    g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
    g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
    const char *name;

    g_assert_nonnull(d);
    while ((name = g_dir_read_name(d)))
        g_ptr_array_add(names, g_strdup(name));
    g_ptr_array_sort(names, compare_names);
    g_ptr_array_add(names, NULL);
    return g_strjoinv(",", (char **)names->pdata);
}

static char *
read_text(const char *path)
{
    char *data = NULL;

    g_assert_true(g_file_get_contents(path, &data, NULL, NULL));
    return data;
}

typedef int (*WriteFunc)(const char *path, const void *data, size_t len, mode_t mode);

/* ho_file_write_atomic, and ho_file_write_atomic_volatile (the same but
 * for the fsyncs, which a test cannot see). */
static void
test_write_atomic(gconstpointer data)
{
    WriteFunc write = (WriteFunc)data;
    g_autofree char *dir = test_make_tmpdir("file");
    g_autofree char *path = g_build_filename(dir, "state.xml", NULL);
    g_autofree char *text = NULL;
    g_autofree char *names = NULL;
    struct stat st;
    mode_t old_umask = umask(077);

    g_assert_cmpint(write(path, "first", 5, 0644), ==, 0);
    umask(old_umask);
    text = read_text(path);
    g_assert_cmpstr(text, ==, "first");
    /* The mode asked for, whatever the umask. */
    g_assert_cmpint(stat(path, &st), ==, 0);
    g_assert_cmpint(st.st_mode & 07777, ==, 0644);

    /* Replacing: new content, new mode, the same name, nothing else. */
    g_assert_cmpint(write(path, "second\0x", 8, 0600), ==, 0);
    g_assert_cmpint(stat(path, &st), ==, 0);
    g_assert_cmpint(st.st_mode & 07777, ==, 0600);
    g_assert_cmpint(st.st_size, ==, 8);
    g_clear_pointer(&text, g_free);
    text = read_text(path);
    g_assert_cmpmem(text, 8, "second\0x", 8);
    names = list_dir(dir);
    g_assert_cmpstr(names, ==, "state.xml");

    /* Empty content. */
    g_assert_cmpint(write(path, NULL, 0, 0600), ==, 0);
    g_assert_cmpint(stat(path, &st), ==, 0);
    g_assert_cmpint(st.st_size, ==, 0);
}

static void
test_write_atomic_no_dir(void)
{
    g_autofree char *dir = test_make_tmpdir("file");
    g_autofree char *path = g_build_filename(dir, "missing", "state.xml", NULL);
    g_autofree char *expected = g_strdup_printf(
        "cannot create a temporary file to write '%s': %s", path, g_strerror(ENOENT));
    g_autofree char *names = NULL;

    g_assert_cmpint(ho_file_write_atomic(path, "x", 1, 0600), ==, -1);
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_SYSTEM);
    g_assert_cmpstr(ho_error_last_message(), ==, expected);
    names = list_dir(dir);
    g_assert_cmpstr(names, ==, "");
    ho_error_reset();
}

/* The rename fails (the target is a directory that is not empty): the
 * target stays as it was and the temporary file is gone. */
static void
test_write_atomic_rename_fails(void)
{
    g_autofree char *dir = test_make_tmpdir("file");
    g_autofree char *path = g_build_filename(dir, "target", NULL);
    g_autofree char *inner = g_build_filename(path, "keep", NULL);
    g_autofree char *names = NULL;
    g_autofree char *text = NULL;

    g_assert_cmpint(g_mkdir(path, 0700), ==, 0);
    g_assert_true(g_file_set_contents(inner, "kept", -1, NULL));
    g_assert_cmpint(ho_file_write_atomic(path, "new", 3, 0600), ==, -1);
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_SYSTEM);
    g_assert_true(g_str_has_prefix(ho_error_last_message(), "cannot rename '"));
    g_assert_nonnull(strstr(ho_error_last_message(), path));
    names = list_dir(dir);
    g_assert_cmpstr(names, ==, "target");
    text = read_text(inner);
    g_assert_cmpstr(text, ==, "kept");
    ho_error_reset();
}

/* Without write permission on the directory the old file is untouched.
 * root ignores permissions, so this part only runs for other users. */
static void
test_write_atomic_readonly_dir(void)
{
    g_autofree char *dir = test_make_tmpdir("file");
    g_autofree char *sub = g_build_filename(dir, "ro", NULL);
    g_autofree char *path = g_build_filename(sub, "state", NULL);
    g_autofree char *text = NULL;
    g_autofree char *names = NULL;

    if (geteuid() == 0) {
        g_test_skip("root ignores directory permissions");
        return;
    }
    g_assert_cmpint(g_mkdir(sub, 0700), ==, 0);
    g_assert_cmpint(ho_file_write_atomic(path, "old", 3, 0600), ==, 0);
    g_assert_cmpint(chmod(sub, 0500), ==, 0);
    g_assert_cmpint(ho_file_write_atomic(path, "new", 3, 0600), ==, -1);
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_SYSTEM);
    g_assert_cmpint(chmod(sub, 0700), ==, 0);
    text = read_text(path);
    g_assert_cmpstr(text, ==, "old");
    names = list_dir(sub);
    g_assert_cmpstr(names, ==, "state");
    ho_error_reset();
}

static void
test_read_all(void)
{
    g_autofree char *dir = test_make_tmpdir("file");
    g_autofree char *path = g_build_filename(dir, "ten", NULL);
    g_autofree char *empty = g_build_filename(dir, "empty", NULL);
    g_autofree char *big = g_build_filename(dir, "big", NULL);
    g_autofree char *big_data = g_strnfill(100000, 'b');
    char *data = NULL;
    size_t len = 0;

    g_assert_true(g_file_set_contents(path, "0123456789", 10, NULL));
    g_assert_true(g_file_set_contents(empty, "", 0, NULL));
    g_assert_true(g_file_set_contents(big, big_data, 100000, NULL));

    g_assert_cmpint(ho_file_read_all(path, 10, &data, &len), ==, 0);
    g_assert_cmpstr(data, ==, "0123456789"); /* NUL-terminated */
    g_assert_cmpuint(len, ==, 10);
    g_clear_pointer(&data, g_free);

    g_assert_cmpint(ho_file_read_all(empty, 10, &data, NULL), ==, 0);
    g_assert_cmpstr(data, ==, "");
    g_clear_pointer(&data, g_free);

    g_assert_cmpint(ho_file_read_all(big, 1 << 20, &data, &len), ==, 0);
    g_assert_cmpuint(len, ==, 100000);
    g_assert_cmpmem(data, len, big_data, 100000);
    g_clear_pointer(&data, g_free);
}

static void
test_read_all_limit(void)
{
    g_autofree char *dir = test_make_tmpdir("file");
    g_autofree char *path = g_build_filename(dir, "ten", NULL);
    g_autofree char *expected = g_strdup_printf("file '%s' is larger than 9 bytes", path);
    char *data = (char *)"untouched";
    size_t len = 42;

    g_assert_true(g_file_set_contents(path, "0123456789", 10, NULL));
    g_assert_cmpint(ho_file_read_all(path, 9, &data, &len), ==, -1);
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_LIMIT);
    g_assert_cmpstr(ho_error_last_message(), ==, expected);
    g_assert_cmpstr(data, ==, "untouched");
    g_assert_cmpuint(len, ==, 42);
    ho_error_reset();

    g_assert_cmpint(ho_file_read_all(path, 0, &data, &len), ==, -1);
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_LIMIT);
    ho_error_reset();
}

/* Files whose size stat does not tell (/proc) are bounded by reading. */
static void
test_read_all_proc(void)
{
    char *data = NULL;
    size_t len = 0;

    g_assert_cmpint(ho_file_read_all("/proc/self/status", 1 << 20, &data, &len), ==, 0);
    g_assert_cmpuint(len, >, 20);
    g_assert_cmpuint(strlen(data), ==, len);
    g_assert_nonnull(strstr(data, "Pid:"));
    g_free(data);
    data = NULL;

    g_assert_cmpint(ho_file_read_all("/proc/self/status", 10, &data, &len), ==, -1);
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_LIMIT);
    g_assert_cmpstr(ho_error_last_message(), ==,
                    "file '/proc/self/status' is larger than 10 bytes");
    g_assert_null(data);
    ho_error_reset();
}

static void
test_read_all_errors(void)
{
    g_autofree char *dir = test_make_tmpdir("file");
    g_autofree char *path = g_build_filename(dir, "nope", NULL);
    g_autofree char *expected = g_strdup_printf("cannot open '%s': %s", path,
                                                g_strerror(ENOENT));
    g_autofree char *expected_dir = g_strdup_printf("cannot read '%s': %s", dir,
                                                    g_strerror(EISDIR));
    char *data = NULL;

    g_assert_cmpint(ho_file_read_all(path, 100, &data, NULL), ==, -1);
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_SYSTEM);
    g_assert_cmpstr(ho_error_last_message(), ==, expected);
    g_assert_cmpint(ho_file_read_all(dir, 100, &data, NULL), ==, -1);
    g_assert_cmpstr(ho_error_last_message(), ==, expected_dir);
    g_assert_null(data);
    ho_error_reset();
}

static void
test_ensure_dir(void)
{
    g_autofree char *dir = test_make_tmpdir("file");
    g_autofree char *deep = g_build_filename(dir, "a", "b", "c", NULL);
    g_autofree char *file = g_build_filename(dir, "file", NULL);
    g_autofree char *below_file = g_build_filename(file, "sub", NULL);
    struct stat st;
    mode_t old_umask = umask(022);

    g_assert_cmpint(ho_file_ensure_dir(deep, 0750), ==, 0);
    umask(old_umask);
    g_assert_cmpint(stat(deep, &st), ==, 0);
    g_assert_true(S_ISDIR(st.st_mode));
    g_assert_cmpint(st.st_mode & 0777, ==, 0750);
    /* Existing: fine, and left as it is. */
    g_assert_cmpint(ho_file_ensure_dir(deep, 0700), ==, 0);
    g_assert_cmpint(stat(deep, &st), ==, 0);
    g_assert_cmpint(st.st_mode & 0777, ==, 0750);

    g_assert_true(g_file_set_contents(file, "x", 1, NULL));
    g_assert_cmpint(ho_file_ensure_dir(file, 0700), ==, -1);
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_SYSTEM);
    g_assert_true(g_str_has_prefix(ho_error_last_message(), "cannot create directory '"));
    g_assert_nonnull(strstr(ho_error_last_message(), file));
    ho_error_reset();
    g_assert_cmpint(ho_file_ensure_dir(below_file, 0700), ==, -1);
    g_assert_nonnull(strstr(ho_error_last_message(), below_file));
    ho_error_reset();
    g_assert_cmpint(ho_file_ensure_dir("", 0700), ==, -1);
    ho_error_reset();
}

static void
make_file(const char *dir, const char *name, const char *text)
{
    g_autofree char *path = g_build_filename(dir, name, NULL);

    g_assert_true(g_file_set_contents(path, text, -1, NULL));
}

static void
test_remove_tree(void)
{
    g_autofree char *dir = test_make_tmpdir("file");
    g_autofree char *outside = g_build_filename(dir, "outside", NULL);
    g_autofree char *outside_file = g_build_filename(outside, "precious", NULL);
    g_autofree char *tree = g_build_filename(dir, "tree", NULL);
    g_autofree char *sub = g_build_filename(tree, "sub", "subsub", NULL);
    g_autofree char *empty = g_build_filename(tree, "empty", NULL);
    g_autofree char *link_dir = g_build_filename(tree, "link-to-outside", NULL);
    g_autofree char *link_file = g_build_filename(tree, "sub", "link-to-file", NULL);
    g_autofree char *locked = g_build_filename(tree, "locked", NULL);
    g_autofree char *inner = g_build_filename(locked, "inner", NULL);
    g_autofree char *names = NULL;
    g_autofree char *text = NULL;

    g_assert_cmpint(g_mkdir(outside, 0700), ==, 0);
    make_file(outside, "precious", "keep me");
    g_assert_cmpint(ho_file_ensure_dir(sub, 0700), ==, 0);
    g_assert_cmpint(ho_file_ensure_dir(empty, 0700), ==, 0);
    g_assert_cmpint(ho_file_ensure_dir(locked, 0700), ==, 0);
    make_file(tree, "top", "1");
    make_file(sub, "deep", "2");
    make_file(locked, "inner", "3");
    /* A read-only file in a writable directory can be removed. */
    g_assert_cmpint(chmod(inner, 0), ==, 0);
    g_assert_cmpint(symlink(outside, link_dir), ==, 0);
    g_assert_cmpint(symlink(outside_file, link_file), ==, 0);

    g_assert_cmpint(ho_file_remove_tree(tree), ==, 0);
    g_assert_false(g_file_test(tree, G_FILE_TEST_EXISTS));
    /* Links were removed, not followed. */
    text = read_text(outside_file);
    g_assert_cmpstr(text, ==, "keep me");
    names = list_dir(dir);
    g_assert_cmpstr(names, ==, "outside");

    /* Already gone: not an error. */
    g_assert_cmpint(ho_file_remove_tree(tree), ==, 0);
    g_assert_null(ho_error_last());
}

static void
test_remove_tree_special(void)
{
    g_autofree char *dir = test_make_tmpdir("file");
    g_autofree char *target = g_build_filename(dir, "target", NULL);
    g_autofree char *link = g_build_filename(dir, "link", NULL);
    g_autofree char *file = g_build_filename(dir, "file", NULL);
    g_autofree char *below_file = g_build_filename(file, "x", NULL);
    g_autofree char *names = NULL;
    g_autofree char *expected = g_strdup_printf("cannot stat '%s': %s", below_file,
                                                g_strerror(ENOTDIR));
    g_autofree char *deep = g_strdup(dir);
    int i;

    /* A symlink given as the tree: only the link goes. */
    g_assert_cmpint(g_mkdir(target, 0700), ==, 0);
    make_file(target, "f", "x");
    g_assert_cmpint(symlink(target, link), ==, 0);
    g_assert_cmpint(ho_file_remove_tree(link), ==, 0);
    g_assert_true(g_file_test(target, G_FILE_TEST_IS_DIR));
    g_assert_false(g_file_test(link, G_FILE_TEST_EXISTS));

    /* A plain file is removed too. */
    make_file(dir, "file", "x");
    g_assert_cmpint(ho_file_remove_tree(below_file), ==, -1);
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_SYSTEM);
    g_assert_cmpstr(ho_error_last_message(), ==, expected);
    ho_error_reset();
    g_assert_cmpint(ho_file_remove_tree(file), ==, 0);
    names = list_dir(dir);
    g_assert_cmpstr(names, ==, "target");

    /* A deep tree (well within the limit). */
    for (i = 0; i < 100; i++) {
        char *next = g_build_filename(deep, "d", NULL);

        g_free(deep);
        deep = next;
    }
    g_assert_cmpint(ho_file_ensure_dir(deep, 0700), ==, 0);
    make_file(deep, "leaf", "x");
    g_clear_pointer(&deep, g_free);
    deep = g_build_filename(dir, "d", NULL);
    g_assert_cmpint(ho_file_remove_tree(deep), ==, 0);
    g_assert_false(g_file_test(deep, G_FILE_TEST_EXISTS));

    g_assert_cmpint(ho_file_remove_tree(""), ==, -1);
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_INVALID_ARG);
    ho_error_reset();
}

/* Run test_compare_to_file with stderr captured into *err_text. */
static int
compare_captured(const char *actual, const char *path, char **err_text)
{
    g_autofree char *dir = test_make_tmpdir("stderr");
    g_autofree char *capture = g_build_filename(dir, "stderr", NULL);
    int fd = open(capture, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int saved = dup(STDERR_FILENO);
    int rc;

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(saved, >=, 0);
    fflush(stderr);
    g_assert_cmpint(dup2(fd, STDERR_FILENO), ==, STDERR_FILENO);
    rc = test_compare_to_file(actual, path);
    fflush(stderr);
    g_assert_cmpint(dup2(saved, STDERR_FILENO), ==, STDERR_FILENO);
    close(saved);
    close(fd);
    *err_text = read_text(capture);
    return rc;
}

static void
test_testutils_compare(void)
{
    g_autofree char *dir = test_make_tmpdir("cmp");
    g_autofree char *path = g_build_filename(dir, "x.result", NULL);
    g_autofree char *missing = g_build_filename(dir, "none.result", NULL);
    g_autofree char *err = NULL;
    g_autofree char *text = NULL;
    const char *old_regen = g_getenv("HANDOVER_TEST_REGENERATE");
    g_autofree char *saved_regen = g_strdup(old_regen);
    int rc;

    g_unsetenv("HANDOVER_TEST_REGENERATE");
    make_file(dir, "x.result", "one\ntwo\nthree\n");
    rc = compare_captured("one\ntwo\nthree\n", path, &err);
    g_assert_cmpint(rc, ==, 0);
    g_assert_cmpstr(err, ==, "");
    g_clear_pointer(&err, g_free);

    /* A difference: -1 and a unified diff on stderr. */
    rc = compare_captured("one\nTWO\nthree\n", path, &err);
    g_assert_cmpint(rc, ==, -1);
    g_assert_nonnull(strstr(err, "@@ -1,3 +1,3 @@"));
    g_assert_nonnull(strstr(err, "\n-two\n+TWO\n"));
    g_clear_pointer(&err, g_free);

    rc = compare_captured("x", missing, &err);
    g_assert_cmpint(rc, ==, -1);
    g_assert_nonnull(strstr(err, "HANDOVER_TEST_REGENERATE=1"));
    g_clear_pointer(&err, g_free);

    /* Regeneration writes the expected file instead. */
    g_setenv("HANDOVER_TEST_REGENERATE", "1", TRUE);
    g_assert_true(test_regenerate());
    rc = compare_captured("new\n", path, &err);
    g_assert_cmpint(rc, ==, 0);
    if (saved_regen)
        g_setenv("HANDOVER_TEST_REGENERATE", saved_regen, TRUE);
    else
        g_unsetenv("HANDOVER_TEST_REGENERATE");
    text = read_text(path);
    g_assert_cmpstr(text, ==, "new\n");
}

static void
test_testutils_paths(void)
{
    g_autofree char *data = test_data_path("hofiletest.c");
    g_autofree char *a = test_make_tmpdir("a/b c");
    g_autofree char *b = test_make_tmpdir("a/b c");
    g_autofree char *base = g_path_get_basename(a);

    /* The test source itself is in the source tree. */
    g_assert_true(g_file_test(data, G_FILE_TEST_IS_REGULAR));
    g_assert_true(g_file_test(a, G_FILE_TEST_IS_DIR));
    g_assert_true(g_file_test(b, G_FILE_TEST_IS_DIR));
    g_assert_cmpstr(a, !=, b);
    g_assert_true(g_str_has_prefix(base, "a_b_c-"));
    g_assert_true(g_str_has_prefix(a, g_get_tmp_dir()));
    g_assert_nonnull(strstr(a, "/handover-test-"));
}

static gboolean
set_flag_cb(gpointer data)
{
    *(bool *)data = true;
    return G_SOURCE_REMOVE;
}

static void
test_testutils_iterate(void)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    GSource *src = g_timeout_source_new(10);
    bool flag = false;
    bool never = false;
    gint64 start;

    g_source_set_callback(src, set_flag_cb, &flag, NULL);
    g_source_attach(src, ctx);
    g_source_unref(src);
    g_assert_true(test_iterate_until(ctx, &flag, 5000));
    g_assert_true(flag);

    start = g_get_monotonic_time();
    g_assert_false(test_iterate_until(ctx, &never, 50));
    g_assert_cmpint(g_get_monotonic_time() - start, >=, 50 * 1000);
    /* The timeout source is gone afterwards. */
    g_assert_false(g_main_context_pending(ctx));
}

/* Appends on the writer thread: every one lands, in the order asked
 * for, interleaved over two files; flush returns only when all are on the
 * file; the caller never opens the files itself. */
static void
test_append_async(void)
{
    g_autofree char *dir = test_make_tmpdir("file");
    g_autofree char *a = g_build_filename(dir, "a.log", NULL);
    g_autofree char *b = g_build_filename(dir, "b.log", NULL);
    g_autoptr(GString) want_a = g_string_new(NULL);
    g_autoptr(GString) want_b = g_string_new(NULL);
    g_autofree char *got_a = NULL, *got_b = NULL;
    const guint n = HO_FILE_APPEND_MAX_PENDING + 500; /* more than may wait */

    for (guint i = 0; i < n; i++) {
        g_autofree char *line = g_strdup_printf("line %u\n", i);
        GString *want = i % 3 ? want_a : want_b;

        ho_file_append_async(i % 3 ? a : b, line, strlen(line));
        g_string_append(want, line);
    }
    ho_file_append_flush();
    g_assert_true(g_file_get_contents(a, &got_a, NULL, NULL));
    g_assert_true(g_file_get_contents(b, &got_b, NULL, NULL));
    g_assert_cmpstr(got_a, ==, want_a->str);
    g_assert_cmpstr(got_b, ==, want_b->str);
    {
        struct stat st;

        g_assert_cmpint(stat(a, &st), ==, 0);
        g_assert_cmpint(st.st_mode & 0077, ==, 0); /* 0600 less the umask */
    }
    (void)ho_file_remove_tree(dir);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    g_test_add_data_func("/file/write-atomic", (gconstpointer)ho_file_write_atomic,
                         test_write_atomic);
    g_test_add_data_func("/file/write-atomic-volatile",
                         (gconstpointer)ho_file_write_atomic_volatile, test_write_atomic);
    g_test_add_func("/file/write-atomic-no-dir", test_write_atomic_no_dir);
    g_test_add_func("/file/write-atomic-rename-fails", test_write_atomic_rename_fails);
    g_test_add_func("/file/write-atomic-readonly-dir", test_write_atomic_readonly_dir);
    g_test_add_func("/file/read-all", test_read_all);
    g_test_add_func("/file/read-all-limit", test_read_all_limit);
    g_test_add_func("/file/read-all-proc", test_read_all_proc);
    g_test_add_func("/file/read-all-errors", test_read_all_errors);
    g_test_add_func("/file/ensure-dir", test_ensure_dir);
    g_test_add_func("/file/remove-tree", test_remove_tree);
    g_test_add_func("/file/remove-tree-special", test_remove_tree_special);
    g_test_add_func("/file/append-async", test_append_async);
    g_test_add_func("/testutils/compare", test_testutils_compare);
    g_test_add_func("/testutils/paths", test_testutils_paths);
    g_test_add_func("/testutils/iterate", test_testutils_iterate);

    return g_test_run();
}
