/*
 * The flight recorder: QMP exchanges appended to a JSON-lines file.
 *
 * Each line is built whole in memory and written with one write() under
 * the recorder's lock, so lines from several monitors (and threads) never
 * interleave. A failed write is logged once and the recording goes on:
 * losing the recording must never break the QEMU it records.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include "qemu_recorder.h"

#include "ho_error.h"
#include "ho_i18n.h"

#define HO_LOG_MODULE "qemu.recorder"
#include "ho_log.h"

struct _QemuRecorder {
    gatomicrefcount refs;
    int fd;
    char *path;
    GMutex lock;       /* serialises writes to fd and write_failed */
    bool write_failed; /* a write error was logged already */
};

QemuRecorder *
qemu_recorder_open(const char *path)
{
    QemuRecorder *rec;
    int fd;

    do {
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        ho_error_report_errno(HO_ERR_SYSTEM, errno, _("cannot open flight recording '%1$s'"),
                              path);
        return NULL;
    }

    rec = g_new0(QemuRecorder, 1);
    g_atomic_ref_count_init(&rec->refs);
    rec->fd = fd;
    rec->path = g_strdup(path);
    g_mutex_init(&rec->lock);
    HO_DEBUG("recording QMP to '%s'", path);
    return rec;
}

QemuRecorder *
qemu_recorder_ref(QemuRecorder *rec)
{
    g_atomic_ref_count_inc(&rec->refs);
    return rec;
}

void
qemu_recorder_unref(QemuRecorder *rec)
{
    if (!rec || !g_atomic_ref_count_dec(&rec->refs))
        return;

    if (close(rec->fd) < 0)
        HO_WARN("cannot close flight recording '%s': %s", rec->path, g_strerror(errno));
    g_mutex_clear(&rec->lock);
    g_free(rec->path);
    g_free(rec);
}

/* Append one line (the object's compact text and '\n'); consumes line. */
static void
qemu_recorder_write(QemuRecorder *rec, json_object *line)
{
    const char *text;
    g_autofree char *buf = NULL;
    size_t len;
    size_t off = 0;

    text = json_object_to_json_string_ext(line,
                                          JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    buf = g_strconcat(text, "\n", NULL);
    json_object_put(line);
    len = strlen(buf);

    g_mutex_lock(&rec->lock);
    /* O_APPEND and one write() keep the line whole; the loop only matters
     * for a short write on a full disk, where the line is lost anyway. */
    while (off < len) {
        ssize_t n = write(rec->fd, buf + off, len - off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (!rec->write_failed) {
                HO_WARN("cannot write flight recording '%s': %s", rec->path,
                        n < 0 ? g_strerror(errno) : "short write");
                rec->write_failed = true;
            }
            break;
        }
        off += n;
    }
    g_mutex_unlock(&rec->lock);
}

static json_object *
qemu_recorder_line_new(const char *side, const char *dir)
{
    json_object *line = json_object_new_object();

    json_object_object_add(line, "ts", json_object_new_int64(ho_time_now_us()));
    if (side)
        json_object_object_add(line, "side", json_object_new_string(side));
    json_object_object_add(line, "dir", json_object_new_string(dir));
    return line;
}

/* Parse exactly one JSON value from text; NULL when it is not valid JSON.
 * json-c directly, not ho_json_parse(): invalid text is not an error here
 * and must not touch the caller's per-thread error. */
static json_object *
qemu_recorder_parse(const char *text, size_t len)
{
    json_tokener *tok;
    json_object *obj;
    size_t off;

    if (len > INT_MAX)
        return NULL;
    tok = json_tokener_new();
    obj = json_tokener_parse_ex(tok, text, (int)len);
    if (json_tokener_get_error(tok) != json_tokener_success) {
        /* Also catches text that ends inside a value (json_tokener_continue). */
        json_object_put(obj);
        json_tokener_free(tok);
        return NULL;
    }
    off = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    for (; off < len; off++) {
        if (!g_ascii_isspace(text[off])) {
            json_object_put(obj);
            return NULL;
        }
    }
    /* "null" parses to NULL: record it as raw text, it is not a QMP message. */
    return obj;
}

void
qemu_recorder_message(QemuRecorder *rec, const char *side, const char *dir, const char *text,
                      size_t len)
{
    json_object *line;
    json_object *msg;

    if (!rec)
        return;

    line = qemu_recorder_line_new(side, dir);
    msg = qemu_recorder_parse(text, len);
    if (msg)
        json_object_object_add(line, "msg", msg);
    else
        json_object_object_add(line, "raw",
                               json_object_new_string_len(text, (int)MIN(len, INT_MAX)));
    qemu_recorder_write(rec, line);
}

void
qemu_recorder_mark(QemuRecorder *rec, const char *side, const char *dir, const char *reason)
{
    json_object *line;

    if (!rec)
        return;

    line = qemu_recorder_line_new(side, dir);
    if (reason)
        json_object_object_add(line, "reason", json_object_new_string(reason));
    qemu_recorder_write(rec, line);
}
