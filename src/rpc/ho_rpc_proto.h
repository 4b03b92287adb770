/*
 * Private helpers shared by the two sides of the handoverd protocol
 * (ho_rpc_server.c, ho_rpc_client.c): a line reader with a size limit over
 * a non-blocking fd, an output queue, message encoding, errors to and from
 * their wire form, and an fd watch whose conditions can change.
 * Not installed, not for other modules.
 */
#pragma once

#include <glib.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <sys/types.h>

#include "ho_error.h"

/* Bytes read per wakeup; several messages may come in one read. */
#define HO_RPC_READ_CHUNK (64 * 1024)

/* How much of a message goes into a debug log line. */
#define HO_RPC_LOG_MAX 1024

/* ---- input: lines of at most max bytes, the newline included ---------- */

typedef struct {
    GByteArray *buf;
    size_t start;   /* first byte not handed out yet */
    size_t scanned; /* buf holds no '\n' in [start, scanned) */
    size_t max;     /* longest message accepted, its '\n' included */
} HoRpcReader;

void ho_rpc_reader_init(HoRpcReader *r, size_t max);
void ho_rpc_reader_clear(HoRpcReader *r);
/* Read once from a non-blocking fd (first dropping the lines handed out):
 * bytes read, 0 at EOF, -1 with errno kept (EAGAIN included). */
ssize_t ho_rpc_reader_fill(HoRpcReader *r, int fd);
/* The next complete line, without its '\n': 1 and *line, *len (valid until
 * the next fill); 0 when no complete line is buffered; -1 when the next
 * message is over the limit (complete or not: the reader is then done). */
int ho_rpc_reader_next(HoRpcReader *r, const char **line, size_t *len);
/* Bytes buffered after the lines handed out (an incomplete message). */
size_t ho_rpc_reader_pending(const HoRpcReader *r);

/* ---- output: a byte queue written as the socket takes it --------------- */

typedef struct {
    GByteArray *buf;
    size_t off; /* bytes of buf already written */
} HoRpcWriter;

void ho_rpc_writer_init(HoRpcWriter *w);
void ho_rpc_writer_clear(HoRpcWriter *w);
/* Bytes waiting to be written. */
size_t ho_rpc_writer_queued(const HoRpcWriter *w);
void ho_rpc_writer_append(HoRpcWriter *w, const char *data, size_t len);
/* Write as much as the socket takes now: 0 (data may be left), or -1 with
 * errno kept on a real error (EPIPE, ECONNRESET, ...). Never SIGPIPE. */
int ho_rpc_writer_flush(HoRpcWriter *w, int fd);

/* ---- messages ----------------------------------------------------------- */

/* One message as a line: compact JSON and '\n' (g_free it); *len its length. */
char *ho_rpc_encode(json_object *msg, size_t *len);
/* Parse one received line into a JSON value without touching the calling
 * thread's error slot (the loop may run under someone's synchronous call):
 * the value, or NULL and *err (the parser's message). */
json_object *ho_rpc_parse_line(const char *text, size_t len, HoError **err);
/* Whether the line is empty or only white space (ignored on both sides). */
bool ho_rpc_line_is_blank(const char *text, size_t len);
/* Log a message sent or received at debug level, shortened. */
void ho_rpc_log_message(const char *module, const char *label, const char *dir, const char *text,
                        size_t len);

/* {"code": "<ho_error_code_name>", "message": "..."} */
json_object *ho_rpc_error_to_json(const HoError *err);
/* The wire form back to an error (code mapped back to HoErrorCode); NULL
 * when obj is not an object with a string code and a string message. */
HoError *ho_rpc_error_from_json(json_object *obj);

/* ---- an fd watch on a context ------------------------------------------ */

typedef void (*HoRpcWatchFunc)(GIOCondition cond, void *opaque);

/* A source watching fd for cond, attached to ctx (NULL: the thread's
 * default); fn runs with the conditions that are ready. The caller owns the
 * returned reference and gets rid of it with ho_rpc_watch_free(). */
GSource *ho_rpc_watch_new(int fd, GIOCondition cond, HoRpcWatchFunc fn, void *opaque,
                          const char *name, GMainContext *ctx);
/* Change the conditions watched (no-op when unchanged). */
void ho_rpc_watch_set(GSource *watch, GIOCondition cond);
/* Destroy and release; accepts NULL. */
void ho_rpc_watch_free(GSource *watch);
