/*
 * The QMP transport: see qemu_monitor.h for the contract.
 *
 * One non-blocking socket, one GSource on the monitor's context watching
 * it (G_IO_OUT only while something waits to be written). Input is split
 * on '\n' (QEMU ends each message with "\r\n"; we do not support the
 * monitor's pretty=on mode, whose messages span lines), each line is one
 * JSON object: the greeting first, then replies (matched to commands by
 * our "id") and events. Output is a queue of whole messages; a message
 * carrying an fd sends it with its first byte, so a partial write never
 * attaches the fd to the wrong command.
 *
 * Re-entrancy: every callback may unref or close the monitor, so whoever
 * calls out holds a reference, and checks mon->closed before going on.
 * Releasing the last reference closes the monitor first: pending commands
 * still complete (with a "freed" error) so their owners can release the
 * data they passed as opaque; the closed callback does not run then.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "qemu_monitor.h"

#include "ho_i18n.h"
#include "ho_json.h"
#include "ho_socket.h"

#define HO_LOG_MODULE "qemu.monitor"
#include "ho_log.h"

/* Bytes read per wakeup; several messages may come in one read. */
#define QEMU_MONITOR_READ_CHUNK (64 * 1024)
/* How much of a message goes into a debug log line or an error message. */
#define QEMU_MONITOR_LOG_MAX 1024
#define QEMU_MONITOR_ERROR_EXCERPT 200

typedef enum {
    QEMU_MONITOR_STATE_GREETING,    /* waiting for {"QMP": ...} */
    QEMU_MONITOR_STATE_NEGOTIATING, /* qmp_capabilities sent */
    QEMU_MONITOR_STATE_READY,
    QEMU_MONITOR_STATE_CLOSED,
} QemuMonitorState;

typedef struct {
    guint64 id;    /* key in QemuMonitor.pending */
    char *command; /* for messages ("... while 'migrate' was pending") */
    QemuMonitorReplyFunc cb;
    void *opaque;
    bool sent; /* its first byte was written */
} QemuMonitorCommand;

/* One message waiting to be written. */
typedef struct {
    guint64 id;
    char *data; /* the JSON text and "\n" */
    size_t len;
    size_t off; /* bytes already written */
    int fd;     /* our duplicate of the fd to pass with the first byte, or -1 */
} QemuMonitorOutput;

typedef struct {
    guint id;
    char *event; /* NULL: every event */
    QemuMonitorEventFunc fn;
    void *opaque;
    bool removed; /* unsubscribed during a dispatch, freed after it */
} QemuMonitorSubscription;

typedef struct {
    GSource base;
    QemuMonitor *mon; /* not a reference: the monitor destroys the source */
    gpointer tag;
} QemuMonitorSource;

struct _QemuMonitor {
    int refs; /* the monitor lives on one context, hence one thread */
    int fd;
    char *label;
    GMainContext *ctx;
    QemuMonitorCallbacks cbs;
    void *opaque;

    QemuMonitorState state;
    HoError *close_error;  /* why it closed, once closed */
    json_object *greeting; /* the "QMP" member of the greeting */
    bool regreeted;        /* a second greeting came while negotiating */
    bool renegotiating;    /* the qmp_capabilities sent after it is unanswered */

    GSource *watch;
    GIOCondition watch_cond;

    GByteArray *inbuf;
    size_t scanned; /* inbuf holds no '\n' before this offset */
    size_t max_message;
    gint64 recv_ts; /* monotonic time of the read that brought the current input */

    guint64 next_id;
    GHashTable *pending; /* &cmd->id -> QemuMonitorCommand, sent or not */
    GQueue waiting;      /* QemuMonitorOutput queued until the monitor is ready */
    GQueue output;       /* QemuMonitorOutput being written, in order */

    GPtrArray *subs; /* QemuMonitorSubscription, in subscription order */
    guint next_sub_id;
    int dispatching; /* depth of event dispatch; removals wait until 0 */
    bool subs_dirty; /* some subscription is marked removed */

    QemuRecorder *rec;
};

static void qemu_monitor_fail(QemuMonitor *mon, HoError *err, bool notify);
static void qemu_monitor_update_watch(QemuMonitor *mon);
static bool qemu_monitor_read(QemuMonitor *mon);

static void
qemu_monitor_command_free(QemuMonitorCommand *cmd)
{
    if (!cmd)
        return;
    g_free(cmd->command);
    g_free(cmd);
}

static void
qemu_monitor_output_free(QemuMonitorOutput *out)
{
    if (!out)
        return;
    if (out->fd >= 0)
        close(out->fd);
    g_free(out->data);
    g_free(out);
}

static void
qemu_monitor_subscription_free(QemuMonitorSubscription *sub)
{
    if (!sub)
        return;
    g_free(sub->event);
    g_free(sub);
}

/* A short excerpt of a message for an error text (g_free it). */
static char *
qemu_monitor_excerpt(const char *text, size_t len)
{
    if (len > QEMU_MONITOR_ERROR_EXCERPT)
        return g_strdup_printf("%.*s...", QEMU_MONITOR_ERROR_EXCERPT, text);
    return g_strndup(text, len);
}

static void
qemu_monitor_log_message(QemuMonitor *mon, const char *dir, const char *text, size_t len)
{
    if (!ho_log_enabled(HO_LOG_DEBUG, HO_LOG_MODULE))
        return;
    if (len > QEMU_MONITOR_LOG_MAX)
        HO_DEBUG("%s %s: %.*s... (%zu bytes)", mon->label, dir, QEMU_MONITOR_LOG_MAX, text, len);
    else
        HO_DEBUG("%s %s: %.*s", mon->label, dir, (int)len, text);
}

/* ---- completions from an idle source ---------------------------------- */

typedef struct {
    QemuMonitor *mon; /* a reference */
    QemuMonitorReplyFunc cb;
    void *opaque;
    HoError *err;
} QemuMonitorLater;

static gboolean
qemu_monitor_later_run(gpointer data)
{
    QemuMonitorLater *later = data;

    if (later->cb)
        later->cb(later->mon, NULL, later->err, later->opaque);
    return G_SOURCE_REMOVE;
}

static void
qemu_monitor_later_free(gpointer data)
{
    QemuMonitorLater *later = data;

    qemu_monitor_unref(later->mon);
    ho_error_free(later->err);
    g_free(later);
}

/* Complete a command with err from an idle callback on the monitor's
 * context, so the caller of qemu_monitor_send() is never re-entered;
 * consumes err. */
static void
qemu_monitor_complete_later(QemuMonitor *mon, QemuMonitorReplyFunc cb, void *opaque, HoError *err)
{
    QemuMonitorLater *later = g_new0(QemuMonitorLater, 1);
    GSource *src = g_idle_source_new();

    later->mon = qemu_monitor_ref(mon);
    later->cb = cb;
    later->opaque = opaque;
    later->err = err;
    g_source_set_callback(src, qemu_monitor_later_run, later, qemu_monitor_later_free);
    g_source_set_static_name(src, "qemu-monitor-later");
    g_source_attach(src, mon->ctx);
    g_source_unref(src);
}

/* ---- output ------------------------------------------------------------ */

static void
qemu_monitor_flush(QemuMonitor *mon)
{
    while (!g_queue_is_empty(&mon->output)) {
        QemuMonitorOutput *out = g_queue_peek_head(&mon->output);
        ssize_t n;

        if (out->off == 0 && out->len > 0) {
            QemuMonitorCommand *cmd = g_hash_table_lookup(mon->pending, &out->id);

            /* Record once, when the message starts to go out (not at every retry
             * after EAGAIN): the recording's timestamps order what QEMU saw. */
            if (cmd && !cmd->sent) {
                cmd->sent = true;
                qemu_monitor_log_message(mon, "send", out->data, out->len - 1);
                qemu_recorder_message(mon->rec, mon->label, "send", out->data, out->len - 1);
            }
        }

        if (out->fd >= 0) {
            /* ho_socket_send_fds() may report into the per-thread error, which
             * belongs to whatever synchronous chain runs this loop: keep it. */
            HoError *saved = ho_error_save();
            int errsv;

            n = ho_socket_send_fds(mon->fd, out->data + out->off, out->len - out->off, &out->fd,
                                   1);
            errsv = errno;
            ho_error_reset();
            ho_error_restore(&saved);
            errno = errsv;
        } else {
            n = send(mon->fd, out->data + out->off, out->len - out->off,
                     MSG_NOSIGNAL | MSG_DONTWAIT);
        }

        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (errno == EPIPE || errno == ECONNRESET) {
                int errsv = errno;

                /* QEMU went away: what it said before (a reply, SHUTDOWN) is
                 * still unread, and its EOF explains the end better. */
                while (mon->state != QEMU_MONITOR_STATE_CLOSED && qemu_monitor_read(mon))
                    ;
                if (mon->state == QEMU_MONITOR_STATE_CLOSED)
                    return;
                errno = errsv;
            }
            qemu_monitor_fail(mon,
                              ho_error_new(HO_ERR_MONITOR,
                                           _("cannot write to QEMU monitor '%1$s': %2$s"),
                                           mon->label, g_strerror(errno)),
                              true);
            return;
        }

        if (out->fd >= 0 && n > 0) {
            /* The fd went with the first byte; the rest goes without it. */
            close(out->fd);
            out->fd = -1;
        }
        out->off += n;
        if (out->off == out->len)
            qemu_monitor_output_free(g_queue_pop_head(&mon->output));
    }
    qemu_monitor_update_watch(mon);
}

/* Serialize a command; consumes args. fd >= 0 was already duplicated. */
static void
qemu_monitor_queue(QemuMonitor *mon, QemuMonitorCommand *cmd, json_object *args, int fd, bool now)
{
    g_autoptr(json_object) msg = json_object_new_object();
    g_autofree char *idstr = g_strdup_printf("h%" G_GUINT64_FORMAT, cmd->id);
    g_autofree char *text = NULL;
    QemuMonitorOutput *out = g_new0(QemuMonitorOutput, 1);

    ho_json_add_string(msg, "execute", cmd->command);
    if (args)
        ho_json_add(msg, "arguments", args);
    ho_json_add_string(msg, "id", idstr);
    text = ho_json_to_string(msg);

    out->id = cmd->id;
    out->data = g_strconcat(text, "\n", NULL);
    out->len = strlen(out->data);
    out->fd = fd;

    g_hash_table_insert(mon->pending, &cmd->id, cmd);
    if (now) {
        g_queue_push_tail(&mon->output, out);
        qemu_monitor_update_watch(mon);
    } else {
        g_queue_push_tail(&mon->waiting, out);
    }
}

/* ---- closing ----------------------------------------------------------- */

static gint
qemu_monitor_command_compare(gconstpointer a, gconstpointer b)
{
    const QemuMonitorCommand *ca = a;
    const QemuMonitorCommand *cb = b;

    return ca->id < cb->id ? -1 : ca->id > cb->id;
}

/* End the connection: consumes err. Every pending command fails with it,
 * in the order they were sent, then (if notify) the closed callback runs.
 * Nothing runs afterwards. Idempotent. */
static void
qemu_monitor_fail(QemuMonitor *mon, HoError *err, bool notify)
{
    GList *cmds;
    GList *l;

    if (mon->state == QEMU_MONITOR_STATE_CLOSED) {
        ho_error_free(err);
        return;
    }

    qemu_monitor_ref(mon);
    mon->state = QEMU_MONITOR_STATE_CLOSED;
    mon->close_error = err;
    HO_DEBUG("%s closed: %s", mon->label, err->message);
    qemu_recorder_mark(mon->rec, mon->label, "close", err->message);

    if (mon->watch) {
        g_source_destroy(mon->watch);
        g_clear_pointer(&mon->watch, g_source_unref);
    }
    if (mon->fd >= 0) {
        close(mon->fd);
        mon->fd = -1;
    }
    g_queue_clear_full(&mon->waiting, (GDestroyNotify)qemu_monitor_output_free);
    g_queue_clear_full(&mon->output, (GDestroyNotify)qemu_monitor_output_free);

    cmds = g_list_sort(g_hash_table_get_values(mon->pending), qemu_monitor_command_compare);
    g_hash_table_steal_all(mon->pending);
    for (l = cmds; l; l = l->next) {
        QemuMonitorCommand *cmd = l->data;

        if (cmd->cb)
            cmd->cb(mon, NULL, mon->close_error, cmd->opaque);
        qemu_monitor_command_free(cmd);
    }
    g_list_free(cmds);

    if (notify && mon->cbs.closed)
        mon->cbs.closed(mon, mon->close_error, mon->opaque);
    qemu_monitor_unref(mon);
}

/* The oldest command QEMU has seen and not answered, or NULL. */
static QemuMonitorCommand *
qemu_monitor_oldest_sent(QemuMonitor *mon)
{
    GHashTableIter iter;
    gpointer value;
    QemuMonitorCommand *oldest = NULL;

    g_hash_table_iter_init(&iter, mon->pending);
    while (g_hash_table_iter_next(&iter, NULL, &value)) {
        QemuMonitorCommand *cmd = value;

        if (cmd->sent && (!oldest || cmd->id < oldest->id))
            oldest = cmd;
    }
    return oldest;
}

static void
qemu_monitor_fail_eof(QemuMonitor *mon)
{
    QemuMonitorCommand *cmd = qemu_monitor_oldest_sent(mon);
    HoError *err;

    if (cmd)
        err = ho_error_new(HO_ERR_MONITOR,
                           _("QEMU monitor '%1$s' closed the connection while '%2$s' was "
                             "pending"),
                           mon->label, cmd->command);
    else
        err = ho_error_new(HO_ERR_MONITOR, _("QEMU monitor '%1$s' closed the connection"),
                           mon->label);
    qemu_monitor_fail(mon, err, true);
}

/* A protocol violation with an excerpt of the offending message. */
static void
qemu_monitor_fail_unexpected(QemuMonitor *mon, const char *text, size_t len)
{
    g_autofree char *excerpt = qemu_monitor_excerpt(text, len);

    qemu_monitor_fail(mon,
                      ho_error_new(HO_ERR_MONITOR,
                                   _("QEMU monitor '%1$s' sent an unexpected message: %2$s"),
                                   mon->label, excerpt),
                      true);
}

/* ---- input ------------------------------------------------------------- */

static void qemu_monitor_send_caps(QemuMonitor *mon);

static void
qemu_monitor_caps_reply(QemuMonitor *mon, json_object *ret, const HoError *err, void *opaque)
{
    if (mon->state == QEMU_MONITOR_STATE_CLOSED)
        return; /* err is the reason it closed, reported already */

    /* Negotiated again after a repeated greeting: QEMU answers "already
     * complete" (CommandNotFound) when its reset came before our first
     * qmp_capabilities; either way the session now takes commands. */
    if (err && mon->renegotiating && g_strcmp0(err->qmp_class, "CommandNotFound") == 0)
        err = NULL;
    mon->renegotiating = false;
    if (err) {
        qemu_monitor_fail(mon,
                          ho_error_new(HO_ERR_MONITOR,
                                       _("QEMU monitor '%1$s' refused qmp_capabilities: %2$s"),
                                       mon->label, err->message),
                          true);
        return;
    }

    if (mon->regreeted) {
        mon->regreeted = false;
        mon->renegotiating = true;
        qemu_monitor_send_caps(mon);
        return;
    }
    HO_DEBUG("%s ready, %u command(s) queued", mon->label, g_queue_get_length(&mon->waiting));
    mon->state = QEMU_MONITOR_STATE_READY;
    /* Queued commands go first, so those the ready callback sends follow them. */
    while (!g_queue_is_empty(&mon->waiting))
        g_queue_push_tail(&mon->output, g_queue_pop_head(&mon->waiting));
    qemu_monitor_update_watch(mon);

    if (mon->cbs.ready)
        mon->cbs.ready(mon, mon->greeting, mon->opaque);
}

static void
qemu_monitor_handle_greeting(QemuMonitor *mon, json_object *msg, const char *text, size_t len)
{
    json_object *qmp;

    if (!json_object_object_get_ex(msg, "QMP", &qmp) ||
        !json_object_is_type(qmp, json_type_object)) {
        g_autofree char *excerpt = qemu_monitor_excerpt(text, len);

        qemu_monitor_fail(mon,
                          ho_error_new(HO_ERR_MONITOR,
                                       _("QEMU monitor '%1$s' did not start with the QMP "
                                         "greeting: %2$s"),
                                       mon->label, excerpt),
                          true);
        return;
    }

    mon->greeting = json_object_get(qmp);
    mon->state = QEMU_MONITOR_STATE_NEGOTIATING;
    qemu_monitor_send_caps(mon);
}

static void
qemu_monitor_send_caps(QemuMonitor *mon)
{
    QemuMonitorCommand *cmd = g_new0(QemuMonitorCommand, 1);

    cmd->id = mon->next_id++;
    cmd->command = g_strdup("qmp_capabilities");
    cmd->cb = qemu_monitor_caps_reply;
    qemu_monitor_queue(mon, cmd, NULL, -1, true);
}

static void
qemu_monitor_handle_event(QemuMonitor *mon, json_object *msg, const char *text, size_t len)
{
    json_object *name_obj;
    json_object *data = NULL;
    json_object *ts;
    const char *name;
    gint64 qemu_ts = 0;
    guint n;
    guint i;

    if (!json_object_object_get_ex(msg, "event", &name_obj) ||
        !json_object_is_type(name_obj, json_type_string)) {
        qemu_monitor_fail_unexpected(mon, text, len);
        return;
    }
    name = json_object_get_string(name_obj);
    json_object_object_get_ex(msg, "data", &data);
    if (json_object_object_get_ex(msg, "timestamp", &ts) &&
        json_object_is_type(ts, json_type_object)) {
        json_object *sec;
        json_object *usec;

        if (json_object_object_get_ex(ts, "seconds", &sec) &&
            json_object_object_get_ex(ts, "microseconds", &usec))
            qemu_ts = json_object_get_int64(sec) * G_USEC_PER_SEC + json_object_get_int64(usec);
    }

    /* Subscribers added during the dispatch wait for the next event. */
    mon->dispatching++;
    n = mon->subs->len;
    for (i = 0; i < n && mon->state != QEMU_MONITOR_STATE_CLOSED; i++) {
        QemuMonitorSubscription *sub = g_ptr_array_index(mon->subs, i);

        if (sub->removed || (sub->event && strcmp(sub->event, name) != 0))
            continue;
        sub->fn(mon, name, data, qemu_ts, mon->recv_ts, sub->opaque);
    }
    mon->dispatching--;

    if (mon->dispatching == 0 && mon->subs_dirty) {
        i = 0;
        while (i < mon->subs->len) {
            QemuMonitorSubscription *sub = g_ptr_array_index(mon->subs, i);

            if (sub->removed)
                g_ptr_array_remove_index(mon->subs, i); /* frees it */
            else
                i++;
        }
        mon->subs_dirty = false;
    }
}

static void
qemu_monitor_handle_reply(QemuMonitor *mon, json_object *msg, const char *text, size_t len)
{
    json_object *id_obj;
    json_object *ret = NULL;
    json_object *error = NULL;
    const char *idstr = NULL;
    guint64 id = 0;
    QemuMonitorCommand *cmd = NULL;
    g_autoptr(HoError) err = NULL;

    if (!json_object_object_get_ex(msg, "id", &id_obj)) {
        qemu_monitor_fail(mon,
                          ho_error_new(HO_ERR_MONITOR,
                                       _("QEMU monitor '%1$s' sent a reply without an id"),
                                       mon->label),
                          true);
        return;
    }

    if (json_object_is_type(id_obj, json_type_string)) {
        idstr = json_object_get_string(id_obj);
        if (idstr[0] == 'h' && g_ascii_isdigit(idstr[1]) &&
            g_ascii_string_to_unsigned(idstr + 1, 10, 1, G_MAXUINT64, &id, NULL))
            cmd = g_hash_table_lookup(mon->pending, &id);
    }
    if (!cmd || !cmd->sent) {
        g_autofree char *idtext = ho_json_to_string(id_obj);

        qemu_monitor_fail(mon,
                          ho_error_new(HO_ERR_MONITOR,
                                       _("QEMU monitor '%1$s' sent a reply to unknown command "
                                         "id %2$s"),
                                       mon->label, idtext),
                          true);
        return;
    }

    if (json_object_object_get_ex(msg, "error", &error)) {
        json_object *cls;
        json_object *desc;

        if (!json_object_is_type(error, json_type_object) ||
            !json_object_object_get_ex(error, "class", &cls) ||
            !json_object_is_type(cls, json_type_string) ||
            !json_object_object_get_ex(error, "desc", &desc) ||
            !json_object_is_type(desc, json_type_string)) {
            qemu_monitor_fail_unexpected(mon, text, len);
            return;
        }
        err = ho_error_new_qmp(json_object_get_string(cls), json_object_get_string(desc));
    } else {
        json_object_object_get_ex(msg, "return", &ret);
    }

    g_hash_table_remove(mon->pending, &cmd->id);
    if (cmd->cb)
        cmd->cb(mon, err ? NULL : ret, err, cmd->opaque);
    qemu_monitor_command_free(cmd);
}

static void
qemu_monitor_handle_line(QemuMonitor *mon, const char *text, size_t len)
{
    g_autoptr(json_object) msg = NULL;
    g_autoptr(HoError) perr = NULL;
    HoError *saved;
    size_t i;

    for (i = 0; i < len && g_ascii_isspace(text[i]); i++)
        ;
    if (i == len)
        return;

    qemu_monitor_log_message(mon, "recv", text, len);
    qemu_recorder_message(mon->rec, mon->label, "recv", text, len);

    /* A parse error belongs to this connection, not to the thread's slot
     * (which a synchronous caller iterating this loop may be using). */
    saved = ho_error_save();
    msg = ho_json_parse(text, len);
    if (!msg)
        perr = ho_error_steal();
    ho_error_restore(&saved);
    if (!msg) {

        qemu_monitor_fail(mon,
                          ho_error_new(HO_ERR_MONITOR,
                                       _("QEMU monitor '%1$s' sent malformed JSON: %2$s"),
                                       mon->label, perr ? perr->message : "?"),
                          true);
        return;
    }
    if (!json_object_is_type(msg, json_type_object)) {
        g_autofree char *excerpt = qemu_monitor_excerpt(text, len);

        qemu_monitor_fail(mon,
                          ho_error_new(HO_ERR_MONITOR,
                                       _("QEMU monitor '%1$s' sent a message that is not a JSON "
                                         "object: %2$s"),
                                       mon->label, excerpt),
                          true);
        return;
    }

    /* QEMU has a race at startup (seen on 10.0; fixed upstream in late
     * 2025): its monitor I/O thread and main loop both serve a client
     * that connected early, as we do (before QEMU runs). Seen: an event
     * before the greeting, and a second greeting. */
    if (mon->state == QEMU_MONITOR_STATE_GREETING &&
        json_object_object_get_ex(msg, "event", NULL)) {
        /* The same QEMU race can deliver an event the VM's start caused
         * (RESUME) before the greeting: nobody listens yet; dropped. */
        HO_DEBUG("%s: event before the greeting, ignored", mon->label);
    } else if (mon->state == QEMU_MONITOR_STATE_GREETING) {
        qemu_monitor_handle_greeting(mon, msg, text, len);
    } else if (mon->state == QEMU_MONITOR_STATE_NEGOTIATING &&
               json_object_object_get_ex(msg, "QMP", NULL)) {
        /* A second greeting, the session reset to negotiation: the same
         * race. Negotiate once more after the pending answer. */
        HO_DEBUG("%s: QEMU greeted again; negotiating again", mon->label);
        mon->regreeted = true;
    } else if (json_object_object_get_ex(msg, "event", NULL))
        qemu_monitor_handle_event(mon, msg, text, len);
    else if (json_object_object_get_ex(msg, "return", NULL) ||
             json_object_object_get_ex(msg, "error", NULL))
        qemu_monitor_handle_reply(mon, msg, text, len);
    else
        qemu_monitor_fail_unexpected(mon, text, len);
}

static void
qemu_monitor_fail_too_large(QemuMonitor *mon)
{
    qemu_monitor_fail(mon,
                      ho_error_new(HO_ERR_MONITOR,
                                   _("QEMU monitor '%1$s' sent a message larger than %2$zu "
                                     "bytes"),
                                   mon->label, mon->max_message),
                      true);
}

/* Handle every complete line in inbuf, keep the incomplete rest. */
static void
qemu_monitor_process_input(QemuMonitor *mon)
{
    GByteArray *buf = mon->inbuf;
    size_t start = 0;

    while (mon->state != QEMU_MONITOR_STATE_CLOSED) {
        const guint8 *nl = memchr(buf->data + mon->scanned, '\n', buf->len - mon->scanned);
        size_t end;
        size_t len;

        if (!nl)
            break;
        end = nl - buf->data;
        len = end - start;
        if (len > 0 && buf->data[end - 1] == '\r')
            len--;
        mon->scanned = end + 1;
        if (len > mon->max_message) {
            qemu_monitor_fail_too_large(mon);
            return;
        }
        qemu_monitor_handle_line(mon, (const char *)buf->data + start, len);
        start = end + 1;
    }
    if (mon->state == QEMU_MONITOR_STATE_CLOSED)
        return;

    g_byte_array_remove_range(buf, 0, start);
    if (buf->len == 0 && start > 4 * QEMU_MONITOR_READ_CHUNK) {
        /* Give back the memory of a big reply (a schema, say) once it is handled. */
        g_byte_array_unref(buf);
        buf = mon->inbuf = g_byte_array_new();
    }
    mon->scanned = buf->len;
    /* The incomplete rest, less the '\r' of a "\r\n" that is half here. */
    if (buf->len - (buf->len > 0 && buf->data[buf->len - 1] == '\r') > mon->max_message)
        qemu_monitor_fail_too_large(mon);
}

/* Read once and handle what came; true when data came (more may follow). */
static bool
qemu_monitor_read(QemuMonitor *mon)
{
    size_t old = mon->inbuf->len;
    ssize_t n;

    g_byte_array_set_size(mon->inbuf, old + QEMU_MONITOR_READ_CHUNK);
    do {
        n = read(mon->fd, mon->inbuf->data + old, QEMU_MONITOR_READ_CHUNK);
    } while (n < 0 && errno == EINTR);
    g_byte_array_set_size(mon->inbuf, old + MAX(n, 0));

    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return false;
        qemu_monitor_fail(mon,
                          ho_error_new(HO_ERR_MONITOR,
                                       _("cannot read from QEMU monitor '%1$s': %2$s"), mon->label,
                                       g_strerror(errno)),
                          true);
        return false;
    }
    if (n == 0) {
        if (mon->inbuf->len > 0)
            HO_DEBUG("%s: %u bytes of an incomplete message before EOF", mon->label,
                     mon->inbuf->len);
        qemu_monitor_fail_eof(mon);
        return false;
    }

    mon->recv_ts = ho_time_now_us();
    qemu_monitor_process_input(mon);
    return true;
}

/* ---- the fd source ----------------------------------------------------- */

static gboolean
qemu_monitor_source_dispatch(GSource *source, GSourceFunc callback, gpointer data)
{
    QemuMonitorSource *src = (QemuMonitorSource *)source;
    QemuMonitor *mon = src->mon;
    GIOCondition cond = g_source_query_unix_fd(source, src->tag);

    qemu_monitor_ref(mon);
    /* Read even on HUP or ERR: what QEMU wrote before it went comes first,
     * and the read then says how the connection ended. */
    if (cond & (G_IO_IN | G_IO_HUP | G_IO_ERR))
        (void)qemu_monitor_read(mon);
    if ((cond & G_IO_OUT) && mon->state != QEMU_MONITOR_STATE_CLOSED)
        qemu_monitor_flush(mon);
    qemu_monitor_unref(mon);
    return G_SOURCE_CONTINUE;
}

static GSourceFuncs qemu_monitor_source_funcs = {
    .dispatch = qemu_monitor_source_dispatch,
};

static void
qemu_monitor_update_watch(QemuMonitor *mon)
{
    GIOCondition cond = G_IO_IN | G_IO_HUP | G_IO_ERR;

    if (!mon->watch)
        return;
    if (!g_queue_is_empty(&mon->output))
        cond |= G_IO_OUT;
    if (cond != mon->watch_cond) {
        g_source_modify_unix_fd(mon->watch, ((QemuMonitorSource *)mon->watch)->tag, cond);
        mon->watch_cond = cond;
    }
}

/* ---- public API -------------------------------------------------------- */

typedef struct {
    QemuMonitor *mon; /* a reference */
    HoError *err;
} QemuMonitorDeferredFail;

static gboolean
qemu_monitor_deferred_fail_run(gpointer data)
{
    QemuMonitorDeferredFail *d = data;

    qemu_monitor_fail(d->mon, g_steal_pointer(&d->err), true);
    return G_SOURCE_REMOVE;
}

static void
qemu_monitor_deferred_fail_free(gpointer data)
{
    QemuMonitorDeferredFail *d = data;

    qemu_monitor_unref(d->mon);
    ho_error_free(d->err);
    g_free(d);
}

QemuMonitor *
qemu_monitor_new(int fd, const char *label, GMainContext *ctx, const QemuMonitorCallbacks *cbs,
                 void *opaque)
{
    QemuMonitor *mon = g_new0(QemuMonitor, 1);
    QemuMonitorSource *src;
    int flags;

    mon->refs = 1;
    mon->fd = fd;
    mon->label = g_strdup(label);
    mon->ctx = ctx ? g_main_context_ref(ctx) : g_main_context_ref_thread_default();
    if (cbs)
        mon->cbs = *cbs;
    mon->opaque = opaque;
    mon->state = QEMU_MONITOR_STATE_GREETING;
    mon->inbuf = g_byte_array_new();
    mon->max_message = QEMU_MONITOR_DEFAULT_MAX_MESSAGE;
    mon->next_id = 1;
    mon->pending = g_hash_table_new(g_int64_hash, g_int64_equal);
    g_queue_init(&mon->waiting);
    g_queue_init(&mon->output);
    mon->subs = g_ptr_array_new_with_free_func((GDestroyNotify)qemu_monitor_subscription_free);
    mon->next_sub_id = 1;

    flags = fcntl(fd, F_GETFL);
    if (flags < 0 || (!(flags & O_NONBLOCK) && fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)) {
        /* Never NULL: the failure arrives like any other, on the loop. */
        QemuMonitorDeferredFail *d = g_new0(QemuMonitorDeferredFail, 1);
        GSource *idle = g_idle_source_new();

        d->mon = qemu_monitor_ref(mon);
        d->err = ho_error_new(HO_ERR_MONITOR, _("cannot use QEMU monitor '%1$s' socket: %2$s"),
                              mon->label, g_strerror(errno));
        g_source_set_callback(idle, qemu_monitor_deferred_fail_run, d,
                              qemu_monitor_deferred_fail_free);
        g_source_set_static_name(idle, "qemu-monitor-fail");
        g_source_attach(idle, mon->ctx);
        g_source_unref(idle);
        return mon;
    }

    mon->watch = g_source_new(&qemu_monitor_source_funcs, sizeof(QemuMonitorSource));
    src = (QemuMonitorSource *)mon->watch;
    src->mon = mon;
    mon->watch_cond = G_IO_IN | G_IO_HUP | G_IO_ERR;
    src->tag = g_source_add_unix_fd(mon->watch, fd, mon->watch_cond);
    g_source_set_static_name(mon->watch, "qemu-monitor");
    g_source_attach(mon->watch, mon->ctx);

    HO_DEBUG("%s: monitor started on fd %d", mon->label, fd);
    return mon;
}

QemuMonitor *
qemu_monitor_open_unix(const char *path, const char *label, GMainContext *ctx,
                       const QemuMonitorCallbacks *cbs, void *opaque)
{
    int fd = ho_socket_unix_connect(path);

    if (fd < 0)
        return NULL;
    return qemu_monitor_new(fd, label, ctx, cbs, opaque);
}

QemuMonitor *
qemu_monitor_ref(QemuMonitor *mon)
{
    g_assert(mon->refs > 0);
    mon->refs++;
    return mon;
}

void
qemu_monitor_unref(QemuMonitor *mon)
{
    if (!mon)
        return;
    g_assert(mon->refs > 0);
    if (mon->refs > 1) {
        mon->refs--;
        return;
    }

    /* The last reference: close while still holding it, so the pending
     * commands' callbacks get a valid monitor (and may even keep it). */
    if (mon->state != QEMU_MONITOR_STATE_CLOSED)
        qemu_monitor_fail(mon,
                          ho_error_new(HO_ERR_MONITOR,
                                       _("QEMU monitor '%1$s' was freed before the reply came"),
                                       mon->label),
                          false);
    if (--mon->refs > 0)
        return;

    g_assert(g_hash_table_size(mon->pending) == 0);
    g_hash_table_unref(mon->pending);
    g_ptr_array_unref(mon->subs);
    g_byte_array_unref(mon->inbuf);
    json_object_put(mon->greeting);
    ho_error_free(mon->close_error);
    qemu_recorder_unref(mon->rec);
    g_main_context_unref(mon->ctx);
    g_free(mon->label);
    g_free(mon);
}

void
qemu_monitor_close(QemuMonitor *mon)
{
    if (mon->state == QEMU_MONITOR_STATE_CLOSED)
        return;
    qemu_monitor_fail(mon,
                      ho_error_new(HO_ERR_MONITOR,
                                   _("connection to QEMU monitor '%1$s' was closed by us"),
                                   mon->label),
                      true);
}

void
qemu_monitor_set_recorder(QemuMonitor *mon, QemuRecorder *rec)
{
    if (rec)
        qemu_recorder_ref(rec);
    qemu_recorder_unref(mon->rec);
    mon->rec = rec;
    /* Monitors are created and then given their recorder before the loop
     * runs again, so this "open" precedes the greeting in the recording. */
    if (rec && mon->state != QEMU_MONITOR_STATE_CLOSED)
        qemu_recorder_mark(rec, mon->label, "open", NULL);
}

void
qemu_monitor_set_max_message(QemuMonitor *mon, size_t max)
{
    mon->max_message = max;
}

const char *
qemu_monitor_get_label(const QemuMonitor *mon)
{
    return mon->label;
}

bool
qemu_monitor_is_ready(const QemuMonitor *mon)
{
    return mon->state == QEMU_MONITOR_STATE_READY;
}

bool
qemu_monitor_is_closed(const QemuMonitor *mon)
{
    return mon->state == QEMU_MONITOR_STATE_CLOSED;
}

json_object *
qemu_monitor_get_greeting(const QemuMonitor *mon)
{
    return mon->greeting;
}

guint
qemu_monitor_subscribe(QemuMonitor *mon, const char *event, QemuMonitorEventFunc fn, void *opaque)
{
    QemuMonitorSubscription *sub = g_new0(QemuMonitorSubscription, 1);

    sub->id = mon->next_sub_id++;
    sub->event = g_strdup(event);
    sub->fn = fn;
    sub->opaque = opaque;
    g_ptr_array_add(mon->subs, sub);
    return sub->id;
}

void
qemu_monitor_unsubscribe(QemuMonitor *mon, guint id)
{
    guint i;

    for (i = 0; i < mon->subs->len; i++) {
        QemuMonitorSubscription *sub = g_ptr_array_index(mon->subs, i);

        if (sub->id != id || sub->removed)
            continue;
        if (mon->dispatching > 0) {
            /* The dispatch loop walks the array by index: keep it still. */
            sub->removed = true;
            mon->subs_dirty = true;
        } else {
            g_ptr_array_remove_index(mon->subs, i);
        }
        return;
    }
}

guint64
qemu_monitor_send(QemuMonitor *mon, const char *command, json_object *args, int fd,
                  QemuMonitorReplyFunc cb, void *opaque)
{
    QemuMonitorCommand *cmd;
    guint64 id = mon->next_id++;
    int dupfd = -1;

    if (mon->state == QEMU_MONITOR_STATE_CLOSED) {
        json_object_put(args);
        qemu_monitor_complete_later(mon, cb, opaque,
                                    ho_error_new(HO_ERR_MONITOR,
                                                 _("cannot send '%1$s': QEMU monitor '%2$s' is "
                                                   "closed: %3$s"),
                                                 command, mon->label, mon->close_error->message));
        return id;
    }

    /* Our own copy: the caller may close its fd before the message goes out. */
    if (fd >= 0 && (dupfd = fcntl(fd, F_DUPFD_CLOEXEC, 3)) < 0) {
        json_object_put(args);
        qemu_monitor_complete_later(mon, cb, opaque,
                                    ho_error_new(HO_ERR_SYSTEM,
                                                 _("cannot duplicate the fd to pass with '%1$s' "
                                                   "to QEMU monitor '%2$s': %3$s"),
                                                 command, mon->label, g_strerror(errno)));
        return id;
    }

    cmd = g_new0(QemuMonitorCommand, 1);
    cmd->id = id;
    cmd->command = g_strdup(command);
    cmd->cb = cb;
    cmd->opaque = opaque;
    qemu_monitor_queue(mon, cmd, args, dupfd, mon->state == QEMU_MONITOR_STATE_READY);
    return id;
}

/* ---- synchronous helpers ----------------------------------------------- */

static gboolean
qemu_monitor_flag_timeout(gpointer data)
{
    *(bool *)data = true;
    return G_SOURCE_REMOVE;
}

static GSource *
qemu_monitor_add_timeout(QemuMonitor *mon, guint timeout_ms, bool *flag)
{
    GSource *timeout = g_timeout_source_new(timeout_ms);

    g_source_set_callback(timeout, qemu_monitor_flag_timeout, flag, NULL);
    g_source_attach(timeout, mon->ctx);
    return timeout;
}

static void
qemu_monitor_remove_timeout(GSource *timeout)
{
    g_source_destroy(timeout);
    g_source_unref(timeout);
}

int
qemu_monitor_wait_ready(QemuMonitor *mon, guint timeout_ms)
{
    g_autoptr(QemuMonitor) hold = qemu_monitor_ref(mon);
    bool timed_out = false;
    GSource *timeout = qemu_monitor_add_timeout(mon, timeout_ms, &timed_out);

    while (mon->state != QEMU_MONITOR_STATE_READY && mon->state != QEMU_MONITOR_STATE_CLOSED &&
           !timed_out)
        g_main_context_iteration(mon->ctx, TRUE);
    qemu_monitor_remove_timeout(timeout);

    if (mon->state == QEMU_MONITOR_STATE_READY)
        return 0;
    if (mon->state == QEMU_MONITOR_STATE_CLOSED)
        ho_error_set(ho_error_copy(mon->close_error));
    else
        ho_error_report(HO_ERR_TIMEOUT,
                        _("timed out after %2$u ms waiting for QEMU monitor '%1$s' to be ready"),
                        mon->label, timeout_ms);
    return -1;
}

/* Shared between qemu_monitor_send_sync() and its reply callback: whoever
 * comes second frees it, since a timed-out waiter leaves before the reply. */
typedef struct {
    bool done;
    bool abandoned;
    json_object *ret;
    HoError *err;
} QemuMonitorSyncCall;

static void
qemu_monitor_sync_call_free(QemuMonitorSyncCall *call)
{
    json_object_put(call->ret);
    ho_error_free(call->err);
    g_free(call);
}

static void
qemu_monitor_sync_reply(QemuMonitor *mon, json_object *ret, const HoError *err, void *opaque)
{
    QemuMonitorSyncCall *call = opaque;

    if (call->abandoned) {
        qemu_monitor_sync_call_free(call);
        return;
    }
    call->done = true;
    call->ret = json_object_get(ret);
    call->err = ho_error_copy(err);
}

/* The monitor's own fd source does not recurse: called from one of its
 * callbacks, this could only time out. */
int
qemu_monitor_send_sync(QemuMonitor *mon, const char *command, json_object *args, int fd,
                       json_object **ret, guint timeout_ms)
{
    g_autoptr(QemuMonitor) hold = qemu_monitor_ref(mon);
    QemuMonitorSyncCall *call = g_new0(QemuMonitorSyncCall, 1);
    bool timed_out = false;
    GSource *timeout = qemu_monitor_add_timeout(mon, timeout_ms, &timed_out);
    int rc = -1;

    qemu_monitor_send(mon, command, args, fd, qemu_monitor_sync_reply, call);
    while (!call->done && !timed_out)
        g_main_context_iteration(mon->ctx, TRUE);
    qemu_monitor_remove_timeout(timeout);

    if (!call->done) {
        call->abandoned = true;
        ho_error_report(HO_ERR_TIMEOUT,
                        _("timed out after %2$u ms waiting for QEMU monitor '%1$s' to reply "
                          "to '%3$s'"),
                        mon->label, timeout_ms, command);
        return -1;
    }

    if (call->err) {
        ho_error_set(g_steal_pointer(&call->err));
    } else {
        if (ret)
            *ret = g_steal_pointer(&call->ret);
        rc = 0;
    }
    qemu_monitor_sync_call_free(call);
    return rc;
}
