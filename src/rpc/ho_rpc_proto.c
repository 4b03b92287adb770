/*
 * Helpers shared by the server and the client of the handoverd protocol:
 * see ho_rpc_proto.h.
 */
#define HO_LOG_MODULE "rpc.proto"

#include "ho_rpc_proto.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ho_i18n.h"
#include "ho_json.h"
#include "ho_log.h"
#include "ho_rpc_client.h"

/* ---- input -------------------------------------------------------------- */

void
ho_rpc_reader_init(HoRpcReader *r, size_t max)
{
    r->buf = g_byte_array_new();
    r->start = 0;
    r->scanned = 0;
    r->max = max;
}

void
ho_rpc_reader_clear(HoRpcReader *r)
{
    g_clear_pointer(&r->buf, g_byte_array_unref);
    r->start = 0;
    r->scanned = 0;
}

ssize_t
ho_rpc_reader_fill(HoRpcReader *r, int fd)
{
    size_t old;
    ssize_t n;

    /* The lines handed out are done with: drop them before reading more. */
    if (r->start > 0) {
        size_t consumed = r->start;

        g_byte_array_remove_range(r->buf, 0, r->start);
        r->scanned -= r->start;
        r->start = 0;
        if (r->buf->len == 0 && consumed > 4 * HO_RPC_READ_CHUNK) {
            /* Give back the memory of a big message once it is handled. */
            g_byte_array_unref(r->buf);
            r->buf = g_byte_array_new();
        }
    }

    old = r->buf->len;
    g_byte_array_set_size(r->buf, old + HO_RPC_READ_CHUNK);
    do {
        n = read(fd, r->buf->data + old, HO_RPC_READ_CHUNK);
    } while (n < 0 && errno == EINTR);
    {
        int errsv = errno;

        g_byte_array_set_size(r->buf, old + MAX(n, 0));
        errno = errsv;
    }
    return n;
}

int
ho_rpc_reader_next(HoRpcReader *r, const char **line, size_t *len)
{
    const guint8 *data = r->buf->data;
    const guint8 *nl = memchr(data + r->scanned, '\n', r->buf->len - r->scanned);
    size_t end;

    if (!nl) {
        r->scanned = r->buf->len;
        /* Even with its newline still to come, this one is too long already. */
        if (r->buf->len - r->start >= r->max)
            return -1;
        return 0;
    }
    end = nl - data;
    if (end + 1 - r->start > r->max)
        return -1;
    *line = (const char *)data + r->start;
    *len = end - r->start;
    r->start = end + 1;
    r->scanned = r->start;
    return 1;
}

size_t
ho_rpc_reader_pending(const HoRpcReader *r)
{
    return r->buf ? r->buf->len - r->start : 0;
}

/* ---- output ------------------------------------------------------------- */

void
ho_rpc_writer_init(HoRpcWriter *w)
{
    w->buf = g_byte_array_new();
    w->off = 0;
}

void
ho_rpc_writer_clear(HoRpcWriter *w)
{
    g_clear_pointer(&w->buf, g_byte_array_unref);
    w->off = 0;
}

size_t
ho_rpc_writer_queued(const HoRpcWriter *w)
{
    return w->buf ? w->buf->len - w->off : 0;
}

void
ho_rpc_writer_append(HoRpcWriter *w, const char *data, size_t len)
{
    g_byte_array_append(w->buf, (const guint8 *)data, len);
}

int
ho_rpc_writer_flush(HoRpcWriter *w, int fd)
{
    while (w->off < w->buf->len) {
        ssize_t n =
            send(fd, w->buf->data + w->off, w->buf->len - w->off, MSG_NOSIGNAL | MSG_DONTWAIT);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            return -1;
        }
        w->off += n;
    }

    if (w->off == w->buf->len) {
        if (w->buf->len > 4 * HO_RPC_READ_CHUNK) {
            /* Give back the memory of a burst once it is out. */
            g_byte_array_unref(w->buf);
            w->buf = g_byte_array_new();
        } else {
            g_byte_array_set_size(w->buf, 0);
        }
        w->off = 0;
    } else if (w->off > HO_RPC_READ_CHUNK && w->off > w->buf->len / 2) {
        /* Keep appends cheap: move the unwritten rest to the front. */
        g_byte_array_remove_range(w->buf, 0, w->off);
        w->off = 0;
    }
    return 0;
}

/* ---- messages ----------------------------------------------------------- */

char *
ho_rpc_encode(json_object *msg, size_t *len)
{
    size_t n = 0;
    const char *text = json_object_to_json_string_length(
        msg, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
    char *line = g_malloc(n + 2);

    /* JSON text never holds a raw newline (strings escape it): one line. */
    memcpy(line, text, n);
    line[n] = '\n';
    line[n + 1] = '\0';
    *len = n + 1;
    return line;
}

json_object *
ho_rpc_parse_line(const char *text, size_t len, HoError **err)
{
    HoError *saved = ho_error_save();
    json_object *obj = ho_json_parse(text, len);

    if (!obj)
        *err = ho_error_steal();
    if (!obj && !*err)
        *err = ho_error_new(HO_ERR_JSON, _("malformed JSON"));
    ho_error_restore(&saved);
    return obj;
}

bool
ho_rpc_line_is_blank(const char *text, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++) {
        if (text[i] != ' ' && text[i] != '\t' && text[i] != '\r')
            return false;
    }
    return true;
}

void
ho_rpc_log_message(const char *module, const char *label, const char *dir, const char *text,
                   size_t len)
{
    if (!ho_log_enabled(HO_LOG_DEBUG, module))
        return;
    if (len > 0 && text[len - 1] == '\n')
        len--;
    if (len > HO_RPC_LOG_MAX)
        ho_log_message(HO_LOG_DEBUG, module, __func__, __LINE__, "%s %s: %.*s... (%zu bytes)",
                       label, dir, HO_RPC_LOG_MAX, text, len);
    else
        ho_log_message(HO_LOG_DEBUG, module, __func__, __LINE__, "%s %s: %.*s", label, dir,
                       (int)len, text);
}

json_object *
ho_rpc_error_to_json(const HoError *err)
{
    json_object *obj = json_object_new_object();

    ho_json_add_string(obj, "code", ho_error_code_name(err->code));
    ho_json_add_string(obj, "message", err->message ? err->message : "");
    return obj;
}

HoError *
ho_rpc_error_from_json(json_object *obj)
{
    json_object *code;
    json_object *message;

    if (!json_object_is_type(obj, json_type_object) ||
        !json_object_object_get_ex(obj, "code", &code) ||
        !json_object_is_type(code, json_type_string) ||
        !json_object_object_get_ex(obj, "message", &message) ||
        !json_object_is_type(message, json_type_string))
        return NULL;
    return ho_error_new(ho_rpc_error_code_from_name(json_object_get_string(code)), "%s",
                        json_object_get_string(message));
}

HoErrorCode
ho_rpc_error_code_from_name(const char *name)
{
    int code;

    /* HO_ERR_NONE is no error: a daemon sending "none" broke the protocol. */
    for (code = HO_ERR_NONE + 1; code < HO_ERR_LAST; code++) {
        if (g_strcmp0(name, ho_error_code_name(code)) == 0)
            return code;
    }
    return HO_ERR_RPC;
}

/* ---- an fd watch -------------------------------------------------------- */

typedef struct {
    GSource base;
    gpointer tag;
    GIOCondition cond;
    HoRpcWatchFunc fn;
    void *opaque;
} HoRpcWatch;

static gboolean
ho_rpc_watch_dispatch(GSource *source, GSourceFunc callback, gpointer data)
{
    HoRpcWatch *watch = (HoRpcWatch *)source;
    GIOCondition ready = g_source_query_unix_fd(source, watch->tag);

    if (ready)
        watch->fn(ready, watch->opaque);
    return G_SOURCE_CONTINUE;
}

static GSourceFuncs ho_rpc_watch_funcs = {
    .dispatch = ho_rpc_watch_dispatch,
};

GSource *
ho_rpc_watch_new(int fd, GIOCondition cond, HoRpcWatchFunc fn, void *opaque, const char *name,
                 GMainContext *ctx)
{
    GSource *source = g_source_new(&ho_rpc_watch_funcs, sizeof(HoRpcWatch));
    HoRpcWatch *watch = (HoRpcWatch *)source;

    watch->cond = cond;
    watch->fn = fn;
    watch->opaque = opaque;
    watch->tag = g_source_add_unix_fd(source, fd, cond);
    g_source_set_static_name(source, name);
    g_source_attach(source, ctx);
    return source;
}

void
ho_rpc_watch_set(GSource *source, GIOCondition cond)
{
    HoRpcWatch *watch = (HoRpcWatch *)source;

    if (!source || watch->cond == cond)
        return;
    g_source_modify_unix_fd(source, watch->tag, cond);
    watch->cond = cond;
}

void
ho_rpc_watch_free(GSource *source)
{
    if (!source)
        return;
    g_source_destroy(source);
    g_source_unref(source);
}
