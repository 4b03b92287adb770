/*
 * File helpers: atomic replacement, bounded reads, directory trees.
 */
#define HO_LOG_MODULE "util.file"

#include "ho_file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ho_error.h"
#include "ho_i18n.h"
#include "ho_log.h"

/* Nesting depth ho_file_remove_tree descends to (each level holds an fd). */
#define HO_FILE_MAX_TREE_DEPTH 128

static int
file_write_full(int fd, const void *data, size_t len)
{
    const char *p = data;

    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= n;
    }
    return 0;
}

static int
file_fsync_dir(const char *path)
{
    g_autofree char *dir = g_path_get_dirname(path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0) {
        ho_error_report_errno(HO_ERR_SYSTEM, errno, _("cannot open directory '%1$s'"), dir);
        return -1;
    }
    if (fsync(fd) < 0) {
        ho_error_report_errno(HO_ERR_SYSTEM, errno, _("cannot sync directory '%1$s'"), dir);
        close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

static int
file_write_atomic(const char *path, const void *data, size_t len, mode_t mode, bool sync)
{
    g_autofree char *tmp = g_strdup_printf("%s.XXXXXX", path);
    int fd;

    fd = g_mkstemp_full(tmp, O_WRONLY | O_CLOEXEC, mode & 07777);
    if (fd < 0) {
        ho_error_report_errno(HO_ERR_SYSTEM, errno,
                              _("cannot create a temporary file to write '%1$s'"), path);
        return -1;
    }
    /* The umask applied at creation; the caller asked for this mode. */
    if (fchmod(fd, mode & 07777) < 0) {
        ho_error_report_errno(HO_ERR_SYSTEM, errno, _("cannot set the mode of '%1$s'"), tmp);
        goto error;
    }
    if (file_write_full(fd, data, len) < 0) {
        ho_error_report_errno(HO_ERR_SYSTEM, errno, _("cannot write '%1$s'"), tmp);
        goto error;
    }
    /* The data must be on disk before the rename makes it the file. */
    if (sync && fsync(fd) < 0) {
        ho_error_report_errno(HO_ERR_SYSTEM, errno, _("cannot sync '%1$s'"), tmp);
        goto error;
    }
    if (close(fd) < 0) {
        fd = -1;
        ho_error_report_errno(HO_ERR_SYSTEM, errno, _("cannot write '%1$s'"), tmp);
        goto error;
    }
    fd = -1;
    if (rename(tmp, path) < 0) {
        ho_error_report_errno(HO_ERR_SYSTEM, errno, _("cannot rename '%1$s' to '%2$s'"), tmp,
                              path);
        goto error;
    }
    /* Without this a crash could bring back the old file. */
    if (sync && file_fsync_dir(path) < 0)
        return -1;
    HO_DEBUG("wrote %zu bytes to '%s'%s", len, path, sync ? "" : " (not synced)");
    return 0;

error:
    if (fd >= 0)
        close(fd);
    (void)unlink(tmp);
    return -1;
}

int
ho_file_read_all(const char *path, size_t max, char **data, size_t *len)
{
    g_autofree char *buf = NULL;
    size_t size = 0;
    size_t alloc;
    struct stat st;
    int fd;

    /* Read one byte past max to tell "exactly max" from "larger". */
    if (max >= SIZE_MAX - 1)
        max = SIZE_MAX - 2;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        ho_error_report_errno(HO_ERR_SYSTEM, errno, _("cannot open '%1$s'"), path);
        return -1;
    }
    if (fstat(fd, &st) < 0) {
        ho_error_report_errno(HO_ERR_SYSTEM, errno, _("cannot stat '%1$s'"), path);
        goto error;
    }
    if (S_ISDIR(st.st_mode)) {
        ho_error_report_errno(HO_ERR_SYSTEM, EISDIR, _("cannot read '%1$s'"), path);
        goto error;
    }
    if (S_ISREG(st.st_mode) && (guint64)st.st_size > max)
        goto too_large;

    /* st_size is a hint only: files in /proc say 0, and files grow. */
    alloc = S_ISREG(st.st_mode) && st.st_size > 0 ? (size_t)st.st_size + 1 : 4096;
    if (alloc > max + 1)
        alloc = max + 1;
    buf = g_malloc(alloc + 1);
    for (;;) {
        ssize_t n;

        if (size == alloc) {
            if (alloc > max)
                break;
            alloc = alloc > (max + 1) / 2 ? max + 1 : alloc * 2;
            buf = g_realloc(buf, alloc + 1);
        }
        n = read(fd, buf + size, alloc - size);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            ho_error_report_errno(HO_ERR_SYSTEM, errno, _("cannot read '%1$s'"), path);
            goto error;
        }
        if (n == 0)
            break;
        size += n;
    }
    if (size > max)
        goto too_large;
    close(fd);
    buf[size] = '\0';
    *data = g_steal_pointer(&buf);
    if (len)
        *len = size;
    return 0;

too_large:
    ho_error_report(HO_ERR_LIMIT, _("file '%1$s' is larger than %2$zu bytes"), path, max);
error:
    close(fd);
    return -1;
}

int
ho_file_ensure_dir(const char *path, mode_t mode)
{
    if (!path || !*path) {
        ho_error_report(HO_ERR_INVALID_ARG, _("empty directory path"));
        return -1;
    }
    if (g_mkdir_with_parents(path, mode) < 0) {
        ho_error_report_errno(HO_ERR_SYSTEM, errno, _("cannot create directory '%1$s'"), path);
        return -1;
    }
    return 0;
}

/*
 * Remove name (relative to parent_fd) and, if it is a directory, what it holds.
 * Symlinks are removed, never followed: the directory is opened with
 * O_NOFOLLOW | O_DIRECTORY, so one swapped for a link meanwhile fails.
 */
static int
file_remove_at(int parent_fd, const char *name, const char *path, unsigned depth)
{
    struct stat st;
    DIR *dir;
    struct dirent *ent;
    int fd;
    int ret = 0;

    if (fstatat(parent_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno == ENOENT)
            return 0;
        ho_error_report_errno(HO_ERR_SYSTEM, errno, _("cannot stat '%1$s'"), path);
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        if (unlinkat(parent_fd, name, 0) < 0 && errno != ENOENT) {
            ho_error_report_errno(HO_ERR_SYSTEM, errno, _("cannot remove '%1$s'"), path);
            return -1;
        }
        return 0;
    }
    if (depth >= HO_FILE_MAX_TREE_DEPTH) {
        ho_error_report(HO_ERR_LIMIT, _("cannot remove '%1$s': directory tree too deep"), path);
        return -1;
    }

    fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        ho_error_report_errno(HO_ERR_SYSTEM, errno, _("cannot open directory '%1$s'"), path);
        return -1;
    }
    dir = fdopendir(fd);
    if (!dir) {
        ho_error_report_errno(HO_ERR_SYSTEM, errno, _("cannot open directory '%1$s'"), path);
        close(fd);
        return -1;
    }
    for (;;) {
        g_autofree char *child = NULL;

        errno = 0;
        ent = readdir(dir);
        if (!ent) {
            if (errno != 0) {
                ho_error_report_errno(HO_ERR_SYSTEM, errno, _("cannot read directory '%1$s'"),
                                      path);
                ret = -1;
            }
            break;
        }
        if (g_str_equal(ent->d_name, ".") || g_str_equal(ent->d_name, ".."))
            continue;
        child = g_build_filename(path, ent->d_name, NULL);
        if (file_remove_at(dirfd(dir), ent->d_name, child, depth + 1) < 0) {
            ret = -1;
            break;
        }
    }
    closedir(dir);
    if (ret < 0)
        return -1;
    if (unlinkat(parent_fd, name, AT_REMOVEDIR) < 0 && errno != ENOENT) {
        ho_error_report_errno(HO_ERR_SYSTEM, errno, _("cannot remove directory '%1$s'"), path);
        return -1;
    }
    return 0;
}

int
ho_file_remove_tree(const char *path)
{
    if (!path || !*path) {
        ho_error_report(HO_ERR_INVALID_ARG, _("empty path to remove"));
        return -1;
    }
    /* Like rm -rf: a tree that is already gone is not an error. */
    return file_remove_at(AT_FDCWD, path, path, 0);
}

int
ho_file_write_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
    return file_write_atomic(path, data, len, mode, true);
}

int
ho_file_write_atomic_volatile(const char *path, const void *data, size_t len, mode_t mode)
{
    return file_write_atomic(path, data, len, mode, false);
}

/* ---- appends on a writer thread ---------------------------------------- */

typedef struct {
    char *path;
    char *data;
    size_t len;
} Append;

static GMutex append_lock;
static GCond append_cond;
static GQueue append_queue = G_QUEUE_INIT;
static guint append_pending; /* queued or being written */
static gboolean append_started;

static void
append_write(const Append *a)
{
    int fd = open(a->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    size_t off = 0;

    if (fd < 0) {
        HO_WARN("cannot open '%s': %s", a->path, g_strerror(errno));
        return;
    }
    while (off < a->len) {
        ssize_t n = write(fd, a->data + off, a->len - off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            HO_WARN("cannot write '%s': %s", a->path, n < 0 ? g_strerror(errno) : "short write");
            break;
        }
        off += (size_t)n;
    }
    close(fd);
}

static gpointer
append_thread(gpointer unused)
{
    (void)unused;
    g_mutex_lock(&append_lock);
    for (;;) {
        Append *a;

        while (g_queue_is_empty(&append_queue))
            g_cond_wait(&append_cond, &append_lock);
        a = g_queue_pop_head(&append_queue);
        g_mutex_unlock(&append_lock);
        append_write(a);
        g_free(a->path);
        g_free(a->data);
        g_free(a);
        g_mutex_lock(&append_lock);
        append_pending--;
        g_cond_broadcast(&append_cond);
    }
    return NULL;
}

void
ho_file_append_async(const char *path, const char *data, size_t len)
{
    Append *a = g_new0(Append, 1);

    a->path = g_strdup(path);
    a->data = g_memdup2(data, len);
    a->len = len;
    g_mutex_lock(&append_lock);
    if (!append_started) {
        append_started = TRUE;
        g_thread_unref(g_thread_new("ho-append", append_thread, NULL));
    }
    while (append_pending >= HO_FILE_APPEND_MAX_PENDING)
        g_cond_wait(&append_cond, &append_lock);
    g_queue_push_tail(&append_queue, a);
    append_pending++;
    g_cond_broadcast(&append_cond);
    g_mutex_unlock(&append_lock);
}

void
ho_file_append_flush(void)
{
    g_mutex_lock(&append_lock);
    while (append_pending > 0)
        g_cond_wait(&append_cond, &append_lock);
    g_mutex_unlock(&append_lock);
}
