/* File helpers. */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Write data to path atomically: a temp file in the same directory, fsync,
 * rename, fsync of the directory. On failure path is unchanged and the temp
 * file removed; -1 and an error naming path. */
int ho_file_write_atomic(const char *path, const void *data, size_t len, mode_t mode);
/* The same without the two fsyncs: for state that describes running
 * processes (a power loss or kernel crash ends them too, and the file is
 * then stale anyway). Readers on this kernel, a restarted process among
 * them, see the old file or the new one, never a mix; only a crash of the
 * whole machine can leave it empty or old. */
int ho_file_write_atomic_volatile(const char *path, const void *data, size_t len, mode_t mode);
/* Read a whole file of at most max bytes (NUL-terminated, g_free it);
 * -1 and an error naming path when missing, unreadable or larger. */
int ho_file_read_all(const char *path, size_t max, char **data, size_t *len);
/* mkdir -p with mode for directories it creates; -1 and an error naming path. */
int ho_file_ensure_dir(const char *path, mode_t mode);
/* Remove a directory tree (does not follow symlinks); -1 and an error on failure. */
int ho_file_remove_tree(const char *path);
/* Append len bytes to path (created 0600) on a writer thread, so that the
 * caller never waits on the file system (on a disk under heavy I/O one
 * small append can take tens of milliseconds). Appends run one at a time
 * in the order asked for; a failure is logged as a warning. At most
 * HO_FILE_APPEND_MAX_PENDING wait: beyond that the caller waits for room. */
#define HO_FILE_APPEND_MAX_PENDING 4096
void ho_file_append_async(const char *path, const char *data, size_t len);
/* Wait until every append asked for so far has been done. */
void ho_file_append_flush(void);
