/*
 * A mock QMP server playing transcripts (see qemu_mock.h for the format).
 *
 * Every line of the transcript becomes a record; each side walks its own
 * records with a cursor. Events (a connection, a client line, a timer,
 * a writable socket) only change state and then call mock_pump(), which
 * moves every side's cursor as far as it can go. One function decides
 * everything, so the order of GLib dispatch never matters.
 *
 * Messages here are test diagnostics, never shown to users: not
 * translated.
 */
#define _GNU_SOURCE /* accept4 */
#define HO_LOG_MODULE "tests.mock"

#include "qemu_mock.h"

#include <errno.h>
#include <glib-unix.h>
#include <glib/gstdio.h>
#include <json-c/json.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ho_error.h"
#include "ho_file.h"
#include "ho_json.h"
#include "ho_log.h"
#include "ho_socket.h"
#include "qemu_qapi.h"
#include "testutils.h"

/* A client line longer than this is a failure (QMP commands are small). */
#define MOCK_MAX_LINE (1024 * 1024)
#define MOCK_MAX_TRANSCRIPT (64 * 1024 * 1024)
#define MOCK_DEFAULT_MAX_DELAY 200
#define MOCK_MAX_SIDES 16
#define MOCK_MAX_SIDE_NAME 32
/* Lines of per-field differences shown before "...". */
#define MOCK_MAX_DIFFS 10
/* A value quoted inside a difference line is cut after this many bytes. */
#define MOCK_MAX_QUOTE 160
#define MOCK_READ_CHUNK 65536

typedef enum {
    MOCK_OPEN,
    MOCK_SEND,
    MOCK_RECV,
    MOCK_CLOSE,
} MockKind;

static const char *const mock_kind_names[] = {"open", "send", "recv", "close"};

typedef struct {
    MockKind kind;
    guint line;       /* in the transcript, 1-based */
    guint side;       /* index into mock->sides */
    gint64 ts;        /* recorded µs, -1 when absent */
    json_object *msg; /* send and recv; NULL for a raw recv */
    char *raw;        /* recv of text that was not JSON, written verbatim */
    bool by_client;   /* close: wait for the client to drop the connection */
    guint quiet_ms;   /* recv: the client must send nothing for this long first */
    bool done;
} MockRecord;

typedef struct {
    char *text;
    enum json_type type; /* how a whole "${x}" substitutes it */
} MockBinding;

typedef struct {
    bool capture;
    char *text; /* literal text, or the placeholder's name */
} MockSeg;

typedef struct _MockSide MockSide;

struct _QemuMock {
    GMainContext *ctx;
    char *file; /* the transcript as named in messages */
    char *dir;  /* private temp dir for the sockets */
    GArray *recs;
    guint floor; /* index of the first send record not matched yet */
    GPtrArray *sides;
    char **side_names;
    GHashTable *schemas;  /* schema name -> QemuQapi */
    GHashTable *bindings; /* placeholder -> MockBinding */
    guint max_delay;
    char *failure;
    bool pumping;
    bool again;
    QemuMockCloseFunc close_cb;
    void *close_opaque;
    QemuMockHistoryFunc history_cb;
    void *history_opaque;
    GPtrArray *history; /* char *: what was played, in order */
};

struct _MockSide {
    QemuMock *mock;
    char *name;
    char *path;
    char *schema_name;
    QemuQapi *schema; /* borrowed from mock->schemas */
    GArray *recs;     /* guint indices into mock->recs */
    guint cursor;
    int listen_fd;
    GSource *listen_src;
    int fd; /* the client connection, -1 when none */
    GSource *in_src;
    GSource *out_src;
    GString *in;
    GString *out;
    char *rbuf;
    GQueue queue; /* json_object: commands read, not yet compared */
    GSource *delay_src;
    bool delay_over;
    GHashTable *ids; /* recorded id (JSON text) -> client's id, NULL for none */
    GArray *fds;     /* int: fds the client passed (getfd), held open as QEMU
                      * holds them (a listening socket keeps listening) until
                      * the connection ends */
};

static void mock_pump(QemuMock *mock);
static void side_drop_source(GSource **src);
static void mock_history_add(QemuMock *mock, char *line);
static const char *mock_cmd_name(json_object *msg);
static int mock_load_schemas(QemuMock *mock, GHashTable *schema_of);
static void mock_advance_floor(QemuMock *mock);
static void mock_fail(QemuMock *mock, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static MockRecord *
mock_rec(QemuMock *mock, guint idx)
{
    return &g_array_index(mock->recs, MockRecord, idx);
}

/* The record at side's cursor, or NULL at the end of the side. */
static MockRecord *
side_current(MockSide *side)
{
    if (side->cursor >= side->recs->len)
        return NULL;
    return mock_rec(side->mock, g_array_index(side->recs, guint, side->cursor));
}

static guint
side_current_index(MockSide *side)
{
    return g_array_index(side->recs, guint, side->cursor);
}

static void
mock_record_clear(gpointer p)
{
    MockRecord *rec = p;

    json_object_put(rec->msg);
    g_free(rec->raw);
}

static void
mock_binding_free(gpointer p)
{
    MockBinding *b = p;

    if (!b)
        return;
    g_free(b->text);
    g_free(b);
}

static MockBinding *
mock_binding_new(const char *text, enum json_type type)
{
    MockBinding *b = g_new0(MockBinding, 1);

    b->text = g_strdup(text);
    b->type = type;
    return b;
}

static void
mock_seg_clear(gpointer p)
{
    g_free(((MockSeg *)p)->text);
}

/* Compact JSON, cut to MOCK_MAX_QUOTE bytes for messages. */
static char *
mock_quote(json_object *obj)
{
    g_autofree char *s = ho_json_to_string(obj);

    if (strlen(s) > MOCK_MAX_QUOTE)
        return g_strdup_printf("%.*s...", MOCK_MAX_QUOTE, s);
    return g_steal_pointer(&s);
}

static char *
mock_pretty(json_object *obj)
{
    if (!obj)
        return g_strdup("(none)");
    return g_strdup(json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PRETTY |
                                                            JSON_C_TO_STRING_NOSLASHESCAPE));
}

/* The text a scalar binds a placeholder to. */
static char *
mock_scalar_text(json_object *obj)
{
    if (json_object_is_type(obj, json_type_string))
        return g_strdup(json_object_get_string(obj));
    return ho_json_to_string(obj);
}

static bool
mock_is_scalar(json_object *obj)
{
    enum json_type t = json_object_get_type(obj);

    return t == json_type_string || t == json_type_int || t == json_type_double ||
           t == json_type_boolean;
}

static bool
mock_name_char(char c)
{
    return g_ascii_isalnum(c) || c == '_' || c == '-' || c == '.';
}

/* Split a string into literal text and ${name} placeholders; NULL when it
 * holds none. "${" not followed by a name and "}" is literal text. */
static GArray *
mock_template_parse(const char *s)
{
    g_autoptr(GArray) segs = g_array_new(FALSE, TRUE, sizeof(MockSeg));
    const char *lit = s;
    const char *p = s;
    bool any = false;

    g_array_set_clear_func(segs, mock_seg_clear);
    while ((p = strstr(p, "${"))) {
        const char *name = p + 2;
        const char *end = name;
        MockSeg seg;

        while (mock_name_char(*end))
            end++;
        if (end == name || *end != '}') {
            p += 2;
            continue;
        }
        if (p > lit) {
            seg = (MockSeg){.capture = false, .text = g_strndup(lit, p - lit)};
            g_array_append_val(segs, seg);
        }
        seg = (MockSeg){.capture = true, .text = g_strndup(name, end - name)};
        g_array_append_val(segs, seg);
        any = true;
        p = lit = end + 1;
    }
    if (!any)
        return NULL;
    if (*lit) {
        MockSeg seg = {.capture = false, .text = g_strdup(lit)};
        g_array_append_val(segs, seg);
    }
    return g_steal_pointer(&segs);
}

static bool
mock_template_whole(GArray *segs)
{
    return segs->len == 1 && g_array_index(segs, MockSeg, 0).capture;
}

/* ---- loading ---------------------------------------------------------- */

/* Placeholders in a send line must be matchable: two in a row could split
 * the text anywhere. Returns the offending string or NULL. */
static const char *
mock_check_adjacent(json_object *obj)
{
    switch (json_object_get_type(obj)) {
    case json_type_string: {
        g_autoptr(GArray) segs = mock_template_parse(json_object_get_string(obj));

        for (guint i = 0; segs && i + 1 < segs->len; i++) {
            if (g_array_index(segs, MockSeg, i).capture &&
                g_array_index(segs, MockSeg, i + 1).capture)
                return json_object_get_string(obj);
        }
        return NULL;
    }
    case json_type_object: {
        json_object_object_foreach(obj, key, val)
        {
            const char *bad = mock_check_adjacent(val);
            (void)key;
            if (bad)
                return bad;
        }
        return NULL;
    }
    case json_type_array:
        for (size_t i = 0; i < json_object_array_length(obj); i++) {
            const char *bad = mock_check_adjacent(json_object_array_get_idx(obj, i));
            if (bad)
                return bad;
        }
        return NULL;
    default:
        return NULL;
    }
}

static bool
mock_side_name_valid(const char *name)
{
    size_t len = strlen(name);

    if (len == 0 || len > MOCK_MAX_SIDE_NAME)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!g_ascii_isalnum(name[i]) && name[i] != '_' && name[i] != '-')
            return false;
    }
    return true;
}

static MockSide *
mock_find_side(QemuMock *mock, const char *name)
{
    for (guint i = 0; i < mock->sides->len; i++) {
        MockSide *side = mock->sides->pdata[i];
        if (strcmp(side->name, name) == 0)
            return side;
    }
    return NULL;
}

static void
side_close_fds(MockSide *side)
{
    for (guint i = 0; side->fds && i < side->fds->len; i++)
        close(g_array_index(side->fds, int, i));
    if (side->fds)
        g_array_set_size(side->fds, 0);
}

static void
mock_side_free(gpointer p)
{
    MockSide *side = p;
    json_object *cmd;

    if (!side)
        return;
    if (side->listen_src) {
        g_source_destroy(side->listen_src);
        g_source_unref(side->listen_src);
    }
    if (side->in_src) {
        g_source_destroy(side->in_src);
        g_source_unref(side->in_src);
    }
    if (side->out_src) {
        g_source_destroy(side->out_src);
        g_source_unref(side->out_src);
    }
    if (side->delay_src) {
        g_source_destroy(side->delay_src);
        g_source_unref(side->delay_src);
    }
    if (side->fd >= 0)
        close(side->fd);
    if (side->listen_fd >= 0)
        close(side->listen_fd);
    if (side->path)
        (void)g_unlink(side->path);
    while ((cmd = g_queue_pop_head(&side->queue)))
        json_object_put(cmd);
    g_free(side->name);
    g_free(side->path);
    g_free(side->schema_name);
    g_free(side->rbuf);
    side_close_fds(side);
    if (side->fds)
        g_array_unref(side->fds);
    if (side->recs)
        g_array_unref(side->recs);
    if (side->in)
        g_string_free(side->in, TRUE);
    if (side->out)
        g_string_free(side->out, TRUE);
    if (side->ids)
        g_hash_table_unref(side->ids);
    g_free(side);
}

static void
mock_json_put(gpointer p)
{
    json_object_put(p);
}

static MockSide *
mock_side_new(QemuMock *mock, const char *name)
{
    MockSide *side = g_new0(MockSide, 1);

    side->mock = mock;
    side->name = g_strdup(name);
    side->recs = g_array_new(FALSE, FALSE, sizeof(guint));
    side->listen_fd = -1;
    side->fd = -1;
    side->in = g_string_new(NULL);
    side->out = g_string_new(NULL);
    side->rbuf = g_malloc(MOCK_READ_CHUNK);
    g_queue_init(&side->queue);
    side->ids = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, mock_json_put);
    g_ptr_array_add(mock->sides, side);
    return side;
}

static int
mock_parse_meta(QemuMock *mock, json_object *meta, guint line, GHashTable *schema_of)
{
    json_object *schema;

    if (!json_object_is_type(meta, json_type_object)) {
        ho_error_report(HO_ERR_INVALID_ARG, "%s:%u: \"meta\" must be an object", mock->file, line);
        return -1;
    }
    if (!json_object_object_get_ex(meta, "schema", &schema))
        return 0;
    if (!json_object_is_type(schema, json_type_object)) {
        ho_error_report(HO_ERR_INVALID_ARG, "%s:%u: \"meta.schema\" must be an object", mock->file,
                        line);
        return -1;
    }
    json_object_object_foreach(schema, side, name)
    {
        const char *s = json_object_get_string(name);

        if (!json_object_is_type(name, json_type_string) || !*s || strchr(s, '/')) {
            ho_error_report(HO_ERR_INVALID_ARG,
                            "%s:%u: schema of side '%s' must name a file in schema/", mock->file,
                            line, side);
            return -1;
        }
        g_hash_table_insert(schema_of, g_strdup(side), g_strdup(s));
    }
    return 0;
}

static void
mock_add_record(QemuMock *mock, MockSide *side, MockRecord *rec)
{
    guint idx = mock->recs->len;

    g_array_append_val(mock->recs, *rec);
    g_array_append_val(side->recs, idx);
}

/* One JSON line of the transcript. open_sides tracks which sides have a
 * connection at this point of the file, to add the implicit "open". */
static int
mock_parse_record(QemuMock *mock, json_object *obj, guint line, GHashTable *open_sides)
{
    const char *side_name = NULL;
    const char *dir = NULL;
    json_object *val;
    MockRecord rec = {.line = line, .ts = -1};
    MockSide *side;
    bool connected;
    guint k;

    if (!json_object_is_type(obj, json_type_object) ||
        !json_object_object_get_ex(obj, "side", &val) ||
        !json_object_is_type(val, json_type_string) ||
        !mock_side_name_valid(side_name = json_object_get_string(val))) {
        ho_error_report(HO_ERR_INVALID_ARG,
                        "%s:%u: a record needs \"side\": a name of letters, digits, '-', '_'",
                        mock->file, line);
        return -1;
    }
    if (!json_object_object_get_ex(obj, "dir", &val) ||
        !json_object_is_type(val, json_type_string)) {
        ho_error_report(HO_ERR_INVALID_ARG, "%s:%u: a record needs \"dir\"", mock->file, line);
        return -1;
    }
    dir = json_object_get_string(val);
    for (k = 0; k < G_N_ELEMENTS(mock_kind_names); k++) {
        if (strcmp(dir, mock_kind_names[k]) == 0)
            break;
    }
    if (k == G_N_ELEMENTS(mock_kind_names)) {
        ho_error_report(HO_ERR_INVALID_ARG,
                        "%s:%u: unknown \"dir\" '%s' (send, recv, open or close)", mock->file,
                        line, dir);
        return -1;
    }
    rec.kind = (MockKind)k;

    if (json_object_object_get_ex(obj, "ts", &val)) {
        if (!json_object_is_type(val, json_type_int)) {
            ho_error_report(HO_ERR_INVALID_ARG, "%s:%u: \"ts\" must be an integer", mock->file,
                            line);
            return -1;
        }
        rec.ts = json_object_get_int64(val);
    }

    if (rec.kind == MOCK_CLOSE && json_object_object_get_ex(obj, "by", &val)) {
        if (!json_object_is_type(val, json_type_string) ||
            strcmp(json_object_get_string(val), "client") != 0) {
            ho_error_report(HO_ERR_INVALID_ARG, "%s:%u: \"by\" of a close can only be \"client\"",
                            mock->file, line);
            return -1;
        }
        rec.by_client = true;
    }
    if (json_object_object_get_ex(obj, "quiet_ms", &val)) {
        gint64 q = json_object_get_int64(val);

        if (rec.kind != MOCK_RECV || !json_object_is_type(val, json_type_int) || q <= 0 ||
            q > 10000) {
            ho_error_report(HO_ERR_INVALID_ARG,
                            "%s:%u: \"quiet_ms\" is for a recv line: 1 to 10000 (ms)",
                            mock->file, line);
            return -1;
        }
        rec.quiet_ms = (guint)q;
    }
    if (rec.kind == MOCK_SEND || rec.kind == MOCK_RECV) {
        json_object *raw = NULL;

        if (json_object_object_get_ex(obj, "msg", &val) &&
            json_object_is_type(val, json_type_object)) {
            rec.msg = json_object_get(val);
        } else if (rec.kind == MOCK_RECV && json_object_object_get_ex(obj, "raw", &raw) &&
                   json_object_is_type(raw, json_type_string)) {
            rec.raw = g_strdup(json_object_get_string(raw));
        } else {
            ho_error_report(HO_ERR_INVALID_ARG, "%s:%u: a %s record needs an object \"msg\"",
                            mock->file, line, dir);
            mock_record_clear(&rec);
            return -1;
        }
    }
    if (rec.kind == MOCK_SEND) {
        const char *bad;

        if ((!json_object_object_get_ex(rec.msg, "execute", &val) &&
             !json_object_object_get_ex(rec.msg, "exec-oob", &val)) ||
            !json_object_is_type(val, json_type_string)) {
            ho_error_report(HO_ERR_INVALID_ARG, "%s:%u: a send record's msg needs \"execute\"",
                            mock->file, line);
            json_object_put(rec.msg);
            return -1;
        }
        if ((bad = mock_check_adjacent(rec.msg))) {
            ho_error_report(HO_ERR_INVALID_ARG,
                            "%s:%u: adjacent placeholders in '%s' cannot be matched", mock->file,
                            line, bad);
            json_object_put(rec.msg);
            return -1;
        }
    }

    if (!(side = mock_find_side(mock, side_name))) {
        if (mock->sides->len >= MOCK_MAX_SIDES) {
            ho_error_report(HO_ERR_INVALID_ARG, "%s:%u: more than %d sides", mock->file, line,
                            MOCK_MAX_SIDES);
            mock_record_clear(&rec);
            return -1;
        }
        side = mock_side_new(mock, side_name);
    }
    for (guint i = 0; i < mock->sides->len; i++) {
        if (mock->sides->pdata[i] == side)
            rec.side = i;
    }

    connected = g_hash_table_contains(open_sides, side->name);
    if (rec.kind == MOCK_OPEN && connected) {
        ho_error_report(HO_ERR_INVALID_ARG,
                        "%s:%u: \"open\" on side '%s' whose connection is open (no \"close\")",
                        mock->file, line, side->name);
        mock_record_clear(&rec);
        return -1;
    }
    if (rec.kind != MOCK_OPEN && !connected) {
        /* The side starts (or restarts after "close") with a connection. */
        MockRecord open = {.kind = MOCK_OPEN, .line = line, .side = rec.side, .ts = -1};
        mock_add_record(mock, side, &open);
    }
    if (rec.kind == MOCK_CLOSE)
        g_hash_table_remove(open_sides, side->name);
    else
        g_hash_table_add(open_sides, g_strdup(side->name));
    mock_add_record(mock, side, &rec);
    return 0;
}

/* An "include" line being expanded: the included file's only side
 * becomes side; its records start at the first command named start_at
 * and stop before the first command named stop_at; the return of a
 * command named in replace_return is replaced. */
typedef struct {
    const char *side;
    const char *from_side; /* the included file's side, once seen */
    const char *start_at;
    bool started;
    const char *stop_at;
    json_object *replace_return;
    char *last_cmd; /* the last command of the included side */
    bool stopped;
    guint line; /* of the include line in the outer transcript */
} MockInclude;

static int mock_parse_lines(QemuMock *mock, char *data, const char *dir, GHashTable *open_sides,
                            GHashTable *schema_of, MockInclude *inc);

/* {"include": FILE, "side": SIDE, "start_at": CMD, "stop_at": CMD,
 *  "replace_return": {CMD: VALUE}}:
 * the records of FILE (relative to the including transcript's directory,
 * one side only, no nested include) as side SIDE. */
static int
mock_parse_include(QemuMock *mock, json_object *obj, guint line, const char *dir,
                   GHashTable *open_sides, GHashTable *schema_of)
{
    MockInclude inc = {.line = line};
    g_autofree char *path = NULL;
    g_autofree char *data = NULL;
    json_object *val;
    const char *file;
    size_t len = 0;
    int ret;

    if (!json_object_object_get_ex(obj, "include", &val) ||
        !json_object_is_type(val, json_type_string) || !*(file = json_object_get_string(val)) ||
        !json_object_object_get_ex(obj, "side", &val) ||
        !json_object_is_type(val, json_type_string) ||
        !mock_side_name_valid(inc.side = json_object_get_string(val))) {
        ho_error_report(HO_ERR_INVALID_ARG,
                        "%s:%u: an include needs \"include\" (a file) and \"side\"", mock->file,
                        line);
        return -1;
    }
    if (json_object_object_get_ex(obj, "stop_at", &val)) {
        if (!json_object_is_type(val, json_type_string)) {
            ho_error_report(HO_ERR_INVALID_ARG, "%s:%u: \"stop_at\" must name a command",
                            mock->file, line);
            return -1;
        }
        inc.stop_at = json_object_get_string(val);
    }
    if (json_object_object_get_ex(obj, "start_at", &val)) {
        if (!json_object_is_type(val, json_type_string)) {
            ho_error_report(HO_ERR_INVALID_ARG, "%s:%u: \"start_at\" must name a command",
                            mock->file, line);
            return -1;
        }
        inc.start_at = json_object_get_string(val);
    }
    if (json_object_object_get_ex(obj, "replace_return", &val)) {
        if (!json_object_is_type(val, json_type_object)) {
            ho_error_report(HO_ERR_INVALID_ARG, "%s:%u: \"replace_return\" must be an object",
                            mock->file, line);
            return -1;
        }
        inc.replace_return = val;
    }
    path = g_path_is_absolute(file) ? g_strdup(file) : g_build_filename(dir, file, NULL);
    if (ho_file_read_all(path, MOCK_MAX_TRANSCRIPT, &data, &len) < 0) {
        ho_error_report(HO_ERR_INVALID_ARG, "%s:%u: include: %s", mock->file, line,
                        ho_error_last_message());
        return -1;
    }
    if (memchr(data, '\0', len)) {
        ho_error_report(HO_ERR_INVALID_ARG, "%s:%u: the included file holds a NUL byte",
                        mock->file, line);
        return -1;
    }
    ret = mock_parse_lines(mock, data, NULL, open_sides, schema_of, &inc);
    g_free(inc.last_cmd);
    if (ret == 0 && inc.start_at && !inc.started) {
        ho_error_report(HO_ERR_INVALID_ARG, "%s:%u: the included file has no command '%s'",
                        mock->file, line, inc.start_at);
        return -1;
    }
    return ret;
}

/* A record of an included file: renamed to its side, cut at stop_at,
 * replies replaced. 1 to add it (obj changed in place), 0 to skip it,
 * -1 on error. */
static int
mock_include_record(QemuMock *mock, MockInclude *inc, json_object *obj)
{
    json_object *val;
    json_object *msg;
    const char *side;
    const char *dir;

    if (inc->stopped)
        return 0;
    if (!json_object_is_type(obj, json_type_object) ||
        !json_object_object_get_ex(obj, "side", &val) ||
        !json_object_is_type(val, json_type_string) ||
        !json_object_object_get_ex(obj, "dir", &val) ||
        !json_object_is_type(val, json_type_string)) {
        ho_error_report(HO_ERR_INVALID_ARG, "%s:%u: an included record needs \"side\" and \"dir\"",
                        mock->file, inc->line);
        return -1;
    }
    dir = json_object_get_string(val);
    json_object_object_get_ex(obj, "side", &val);
    side = json_object_get_string(val);
    if (!inc->from_side) {
        inc->from_side = g_intern_string(side);
    } else if (strcmp(inc->from_side, side) != 0) {
        ho_error_report(HO_ERR_INVALID_ARG, "%s:%u: an included file must have one side only",
                        mock->file, inc->line);
        return -1;
    }
    json_object_object_add(obj, "side", json_object_new_string(inc->side));
    if (!json_object_object_get_ex(obj, "msg", &msg) || !json_object_is_type(msg, json_type_object))
        return inc->start_at && !inc->started ? 0 : 1;
    if (inc->start_at && !inc->started) {
        const char *cmd = strcmp(dir, "send") == 0 ? mock_cmd_name(msg) : NULL;

        /* Everything before the first start_at command is left out. */
        if (!cmd || strcmp(cmd, inc->start_at) != 0)
            return 0;
        inc->started = true;
    }
    if (strcmp(dir, "send") == 0) {
        const char *cmd = mock_cmd_name(msg);

        if (cmd && inc->stop_at && strcmp(cmd, inc->stop_at) == 0) {
            inc->stopped = true;
            return 0;
        }
        g_free(inc->last_cmd);
        inc->last_cmd = g_strdup(cmd);
    } else if (strcmp(dir, "recv") == 0 && inc->last_cmd && inc->replace_return &&
               json_object_object_get_ex(msg, "return", NULL) &&
               json_object_object_get_ex(inc->replace_return, inc->last_cmd, &val)) {
        json_object *copy = NULL;

        if (json_object_deep_copy(val, &copy, NULL) < 0) {
            ho_error_report(HO_ERR_INVALID_ARG, "%s:%u: cannot copy a replacement", mock->file,
                            inc->line);
            return -1;
        }
        json_object_object_add(msg, "return", copy);
    }
    return 1;
}

static int
mock_parse(QemuMock *mock, char *data, const char *dir)
{
    g_autoptr(GHashTable) open_sides =
        g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    g_autoptr(GHashTable) schema_of =
        g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);

    if (mock_parse_lines(mock, data, dir, open_sides, schema_of, NULL) < 0)
        return -1;
    return mock_load_schemas(mock, schema_of);
}

static int
mock_parse_lines(QemuMock *mock, char *data, const char *dir, GHashTable *open_sides,
                 GHashTable *schema_of, MockInclude *inc)
{
    g_auto(GStrv) lines = g_strsplit(data, "\n", -1);
    bool seen_json = false;

    for (guint i = 0; lines[i]; i++) {
        char *line = g_strstrip(lines[i]);
        g_autoptr(json_object) obj = NULL;
        json_object *meta;

        if (!*line || *line == '#')
            continue;
        if (!(obj = ho_json_parse(line, strlen(line)))) {
            ho_error_report(HO_ERR_INVALID_ARG, "%s:%u: %s", mock->file, i + 1,
                            ho_error_last_message());
            return -1;
        }
        if (json_object_is_type(obj, json_type_object) &&
            json_object_object_get_ex(obj, "meta", &meta)) {
            if (inc) {
                json_object *schema;

                /* The included side's schema, unless the outer file named one. */
                if (json_object_is_type(meta, json_type_object) &&
                    json_object_object_get_ex(meta, "schema", &schema) &&
                    json_object_is_type(schema, json_type_object) &&
                    !g_hash_table_contains(schema_of, inc->side)) {
                    json_object_object_foreach(schema, from, name)
                    {
                        const char *s = json_object_get_string(name);

                        (void)from;
                        if (json_object_is_type(name, json_type_string) && *s && !strchr(s, '/'))
                            g_hash_table_insert(schema_of, g_strdup(inc->side), g_strdup(s));
                        break;
                    }
                }
                continue;
            }
            if (seen_json) {
                ho_error_report(HO_ERR_INVALID_ARG,
                                "%s:%u: the \"meta\" line must be the first JSON line", mock->file,
                                i + 1);
                return -1;
            }
            seen_json = true;
            if (mock_parse_meta(mock, meta, i + 1, schema_of) < 0)
                return -1;
            continue;
        }
        seen_json = true;
        if (inc) {
            int r = mock_include_record(mock, inc, obj);

            if (r < 0)
                return -1;
            if (r == 0)
                continue;
            if (mock_parse_record(mock, obj, inc->line, open_sides) < 0)
                return -1;
            continue;
        }
        if (json_object_is_type(obj, json_type_object) &&
            json_object_object_get_ex(obj, "include", NULL)) {
            if (mock_parse_include(mock, obj, i + 1, dir, open_sides, schema_of) < 0)
                return -1;
            continue;
        }
        if (mock_parse_record(mock, obj, i + 1, open_sides) < 0)
            return -1;
    }
    if (!inc && mock->recs->len == 0) {
        ho_error_report(HO_ERR_INVALID_ARG, "%s: the transcript has no records", mock->file);
        return -1;
    }
    return 0;
}

static int
mock_load_schemas(QemuMock *mock, GHashTable *schema_of)
{
    for (guint i = 0; i < mock->sides->len; i++) {
        MockSide *side = mock->sides->pdata[i];
        const char *name = g_hash_table_lookup(schema_of, side->name);
        QemuQapi *qapi;

        if (!name)
            continue;
        if (!(qapi = g_hash_table_lookup(mock->schemas, name))) {
            g_autofree char *rel = g_strdup_printf("qemumonitorjsondata/schema/%s.json", name);
            g_autofree char *path = test_data_path(rel);

            if (!(qapi = qemu_qapi_load(path))) {
                ho_error_report(HO_ERR_INVALID_ARG, "%s: schema '%s' of side '%s': %s", mock->file,
                                name, side->name, ho_error_last_message());
                return -1;
            }
            g_hash_table_insert(mock->schemas, g_strdup(name), qapi);
        }
        side->schema = qapi;
        side->schema_name = g_strdup(name);
    }
    return 0;
}

static int
mock_listen(QemuMock *mock)
{
    /* A test dir: removed at exit, and by the next test run when this
     * process dies on an assertion. */
    mock->dir = test_make_tmpdir("mock");
    for (guint i = 0; i < mock->sides->len; i++) {
        MockSide *side = mock->sides->pdata[i];
        g_autofree char *base = g_strdup_printf("%s.sock", side->name);

        side->path = g_build_filename(mock->dir, base, NULL);
        if ((side->listen_fd = ho_socket_unix_listen(side->path, 0600, 4)) < 0 ||
            ho_socket_set_nonblock(side->listen_fd, true) < 0)
            return -1;
    }
    return 0;
}

QemuMock *
qemu_mock_new(const char *transcript, GMainContext *ctx)
{
    g_autoptr(QemuMock) mock = g_new0(QemuMock, 1);
    g_autofree char *path = NULL;
    g_autofree char *data = NULL;
    size_t len = 0;

    mock->ctx = ctx ? g_main_context_ref(ctx) : g_main_context_ref_thread_default();
    mock->file = g_strdup(transcript);
    mock->recs = g_array_new(FALSE, TRUE, sizeof(MockRecord));
    g_array_set_clear_func(mock->recs, mock_record_clear);
    mock->sides = g_ptr_array_new_with_free_func(mock_side_free);
    mock->schemas =
        g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)qemu_qapi_free);
    mock->bindings = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, mock_binding_free);
    mock->max_delay = MOCK_DEFAULT_MAX_DELAY;
    mock->history = g_ptr_array_new_with_free_func(g_free);

    if (g_path_is_absolute(transcript)) {
        path = g_strdup(transcript);
    } else {
        g_autofree char *rel = g_build_filename("qemumonitorjsondata", transcript, NULL);
        path = test_data_path(rel);
    }
    if (ho_file_read_all(path, MOCK_MAX_TRANSCRIPT, &data, &len) < 0)
        return NULL;
    if (memchr(data, '\0', len)) {
        ho_error_report(HO_ERR_INVALID_ARG, "%s: the transcript holds a NUL byte", mock->file);
        return NULL;
    }
    {
        g_autofree char *dir = g_path_get_dirname(path);

        if (mock_parse(mock, data, dir) < 0)
            return NULL;
    }

    mock->side_names = g_new0(char *, mock->sides->len + 1);
    for (guint i = 0; i < mock->sides->len; i++)
        mock->side_names[i] = ((MockSide *)mock->sides->pdata[i])->name;

    if (mock_listen(mock) < 0)
        return NULL;

    mock_advance_floor(mock);
    HO_DEBUG("%s: %u records, %u sides in %s", mock->file, mock->recs->len, mock->sides->len,
             mock->dir);
    mock_pump(mock);
    return g_steal_pointer(&mock);
}

void
qemu_mock_free(QemuMock *mock)
{
    if (!mock)
        return;
    /* Sides first: they close sockets that live in dir. */
    g_clear_pointer(&mock->sides, g_ptr_array_unref);
    if (mock->dir)
        (void)g_rmdir(mock->dir);
    g_free(mock->side_names);
    if (mock->recs)
        g_array_unref(mock->recs);
    g_clear_pointer(&mock->schemas, g_hash_table_unref);
    g_clear_pointer(&mock->bindings, g_hash_table_unref);
    g_clear_pointer(&mock->history, g_ptr_array_unref);
    g_main_context_unref(mock->ctx);
    g_free(mock->file);
    g_free(mock->dir);
    g_free(mock->failure);
    g_free(mock);
}

/* ---- accessors -------------------------------------------------------- */

const char *
qemu_mock_socket_path(QemuMock *mock, const char *side)
{
    MockSide *s = mock_find_side(mock, side);

    return s ? s->path : NULL;
}

const char *const *
qemu_mock_sides(QemuMock *mock)
{
    return (const char *const *)mock->side_names;
}

void
qemu_mock_bind(QemuMock *mock, const char *name, const char *value)
{
    g_hash_table_insert(mock->bindings, g_strdup(name), mock_binding_new(value, json_type_string));
}

const char *
qemu_mock_lookup(QemuMock *mock, const char *name)
{
    MockBinding *b = g_hash_table_lookup(mock->bindings, name);

    return b ? b->text : NULL;
}

void
qemu_mock_set_max_delay(QemuMock *mock, guint ms)
{
    mock->max_delay = ms;
}

int
qemu_mock_side_listen_at(QemuMock *mock, const char *side_name, const char *path)
{
    MockSide *side = mock_find_side(mock, side_name);
    int fd;

    if (!side) {
        ho_error_report(HO_ERR_INVALID_ARG, "%s: no side '%s'", mock->file, side_name);
        return -1;
    }
    if ((fd = ho_socket_unix_listen(path, 0600, 4)) < 0)
        return -1;
    if (ho_socket_set_nonblock(fd, true) < 0) {
        close(fd);
        (void)g_unlink(path);
        return -1;
    }
    side_drop_source(&side->listen_src);
    if (side->listen_fd >= 0)
        close(side->listen_fd);
    if (side->path)
        (void)g_unlink(side->path);
    side->listen_fd = fd;
    g_free(side->path);
    side->path = g_strdup(path);
    mock_pump(mock);
    return 0;
}

void
qemu_mock_set_close_func(QemuMock *mock, QemuMockCloseFunc fn, void *opaque)
{
    mock->close_cb = fn;
    mock->close_opaque = opaque;
}

void
qemu_mock_set_history_func(QemuMock *mock, QemuMockHistoryFunc fn, void *opaque)
{
    mock->history_cb = fn;
    mock->history_opaque = opaque;
}

const GPtrArray *
qemu_mock_history(QemuMock *mock)
{
    return mock->history;
}

const char *
qemu_mock_failure(QemuMock *mock)
{
    return mock->failure;
}

bool
qemu_mock_done(QemuMock *mock)
{
    if (mock->failure)
        return false;
    for (guint i = 0; i < mock->sides->len; i++) {
        MockSide *side = mock->sides->pdata[i];

        if (side_current(side) || side->queue.length > 0 || side->out->len > 0)
            return false;
    }
    return true;
}

/* ---- failure ---------------------------------------------------------- */

static void
mock_stop_side(MockSide *side)
{
    GSource **srcs[] = {&side->listen_src, &side->in_src, &side->out_src, &side->delay_src};

    for (size_t i = 0; i < G_N_ELEMENTS(srcs); i++) {
        if (*srcs[i]) {
            g_source_destroy(*srcs[i]);
            g_source_unref(*srcs[i]);
            *srcs[i] = NULL;
        }
    }
}

/* Keep the first failure and stop answering: every source goes, the
 * connections stay open so the client sees silence, not EOF. */
static void
mock_fail(QemuMock *mock, const char *fmt, ...)
{
    va_list ap;

    if (mock->failure)
        return;
    va_start(ap, fmt);
    mock->failure = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    HO_DEBUG("mock failure: %s", mock->failure);
    for (guint i = 0; i < mock->sides->len; i++)
        mock_stop_side(mock->sides->pdata[i]);
}

/* ---- matching --------------------------------------------------------- */

typedef struct {
    QemuMock *mock;
    GHashTable *pending; /* bindings made by this match, committed on success */
    GPtrArray *diffs;
    guint ndiffs;
} MockMatch;

static void mock_diff(MockMatch *m, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static void
mock_diff(MockMatch *m, const char *fmt, ...)
{
    va_list ap;

    m->ndiffs++;
    if (m->diffs->len >= MOCK_MAX_DIFFS)
        return;
    va_start(ap, fmt);
    g_ptr_array_add(m->diffs, g_strdup_vprintf(fmt, ap));
    va_end(ap);
}

static MockBinding *
mock_match_lookup(MockMatch *m, const char *name)
{
    MockBinding *b = g_hash_table_lookup(m->pending, name);

    return b ? b : g_hash_table_lookup(m->mock->bindings, name);
}

static const char *
mock_path_name(const char *path)
{
    return *path ? path : "(message)";
}

/* The bound placeholders of a template, as " (${a}=\"x\", ...)", for a
 * difference line; "" when none is bound. */
static char *
mock_bound_note(MockMatch *m, GArray *segs)
{
    GString *s = g_string_new(NULL);

    for (guint i = 0; i < segs->len; i++) {
        MockSeg *seg = &g_array_index(segs, MockSeg, i);
        MockBinding *b;

        if (!seg->capture || !(b = mock_match_lookup(m, seg->text)))
            continue;
        g_string_append_printf(s, "%s${%s} is bound to \"%s\"", s->len ? ", " : " (", seg->text,
                               b->text);
    }
    if (s->len)
        g_string_append_c(s, ')');
    return g_string_free(s, FALSE);
}

/* Match an actual string against literal text and placeholders; binds the
 * unbound ones into m->pending (only when the whole string matches). */
static bool
mock_match_template(MockMatch *m, GArray *segs, const char *actual)
{
    g_autoptr(GHashTable) local = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    const char *pos = actual;

    for (guint i = 0; i < segs->len; i++) {
        MockSeg *seg = &g_array_index(segs, MockSeg, i);
        const char *lit = NULL;
        MockBinding *b;

        if (!seg->capture)
            lit = seg->text;
        else if ((b = mock_match_lookup(m, seg->text)))
            lit = b->text;
        else
            lit = g_hash_table_lookup(local, seg->text);

        if (lit) {
            size_t len = strlen(lit);

            if (strncmp(pos, lit, len) != 0)
                return false;
            pos += len;
            continue;
        }

        /* An unbound capture: up to the next literal, or the rest. */
        if (i + 1 == segs->len) {
            g_hash_table_insert(local, g_strdup(seg->text), g_strdup(pos));
            pos += strlen(pos);
        } else {
            MockSeg *next = &g_array_index(segs, MockSeg, i + 1);
            const char *nlit = NULL;
            const char *found;

            if (!next->capture)
                nlit = next->text;
            else if ((b = mock_match_lookup(m, next->text)))
                nlit = b->text;
            else
                nlit = g_hash_table_lookup(local, next->text);
            if (!nlit || !(found = strstr(pos, nlit)))
                return false;
            g_hash_table_insert(local, g_strdup(seg->text), g_strndup(pos, found - pos));
            pos = found;
        }
    }
    if (*pos)
        return false;

    {
        GHashTableIter it;
        gpointer k, v;

        g_hash_table_iter_init(&it, local);
        while (g_hash_table_iter_next(&it, &k, &v))
            g_hash_table_insert(m->pending, g_strdup(k), mock_binding_new(v, json_type_string));
    }
    return true;
}

static bool
mock_scalar_equal(json_object *a, json_object *b)
{
    enum json_type ta = json_object_get_type(a);
    enum json_type tb = json_object_get_type(b);

    if ((ta == json_type_int || ta == json_type_double) &&
        (tb == json_type_int || tb == json_type_double)) {
        if (ta == json_type_int && tb == json_type_int)
            return json_object_get_int64(a) == json_object_get_int64(b);
        return json_object_get_double(a) == json_object_get_double(b);
    }
    if (ta != tb)
        return false;
    switch (ta) {
    case json_type_null:
        return true;
    case json_type_boolean:
        return json_object_get_boolean(a) == json_object_get_boolean(b);
    case json_type_string:
        return strcmp(json_object_get_string(a), json_object_get_string(b)) == 0;
    default:
        return false;
    }
}

static void mock_match_value(MockMatch *m, json_object *exp, json_object *act, const char *path,
                             bool top);

static void
mock_match_string(MockMatch *m, json_object *exp, json_object *act, const char *path)
{
    g_autoptr(GArray) segs = mock_template_parse(json_object_get_string(exp));
    g_autofree char *qexp = mock_quote(exp);
    g_autofree char *qact = mock_quote(act);

    if (!segs) {
        if (!mock_scalar_equal(exp, act))
            mock_diff(m, "%s: expected %s, got %s", mock_path_name(path), qexp, qact);
        return;
    }

    if (mock_template_whole(segs)) {
        const char *name = g_array_index(segs, MockSeg, 0).text;
        MockBinding *b = mock_match_lookup(m, name);
        g_autofree char *text = NULL;

        if (!mock_is_scalar(act)) {
            mock_diff(m, "%s: expected a scalar for %s, got %s", mock_path_name(path), qexp, qact);
            return;
        }
        text = mock_scalar_text(act);
        if (!b) {
            g_hash_table_insert(m->pending, g_strdup(name),
                                mock_binding_new(text, json_object_get_type(act)));
        } else if (strcmp(b->text, text) != 0) {
            mock_diff(m, "%s: expected %s (bound to \"%s\"), got %s", mock_path_name(path), qexp,
                      b->text, qact);
        }
        return;
    }

    if (!json_object_is_type(act, json_type_string) ||
        !mock_match_template(m, segs, json_object_get_string(act))) {
        g_autofree char *note = mock_bound_note(m, segs);
        mock_diff(m, "%s: expected %s%s, got %s", mock_path_name(path), qexp, note, qact);
    }
}

static char *
mock_path_key(const char *path, const char *key)
{
    return *path ? g_strdup_printf("%s.%s", path, key) : g_strdup(key);
}

static void
mock_match_object(MockMatch *m, json_object *exp, json_object *act, const char *path, bool top)
{
    json_object_object_foreach(exp, ekey, evalue)
    {
        g_autofree char *kpath = mock_path_key(path, ekey);
        json_object *avalue;

        if (top && strcmp(ekey, "id") == 0)
            continue;
        if (!json_object_object_get_ex(act, ekey, &avalue)) {
            g_autofree char *q = mock_quote(evalue);
            mock_diff(m, "%s: missing, expected %s", kpath, q);
            continue;
        }
        mock_match_value(m, evalue, avalue, kpath, false);
    }
    json_object_object_foreach(act, akey, avalue)
    {
        if (top && strcmp(akey, "id") == 0)
            continue;
        if (!json_object_object_get_ex(exp, akey, NULL)) {
            g_autofree char *kpath = mock_path_key(path, akey);
            g_autofree char *q = mock_quote(avalue);
            mock_diff(m, "%s: not expected, got %s", kpath, q);
        }
    }
}

static void
mock_match_value(MockMatch *m, json_object *exp, json_object *act, const char *path, bool top)
{
    enum json_type te = json_object_get_type(exp);

    if (te == json_type_string) {
        mock_match_string(m, exp, act, path);
        return;
    }
    if (te != json_object_get_type(act) && (te == json_type_object || te == json_type_array ||
                                            json_object_get_type(act) == json_type_object ||
                                            json_object_get_type(act) == json_type_array)) {
        g_autofree char *qexp = mock_quote(exp);
        g_autofree char *qact = mock_quote(act);
        mock_diff(m, "%s: expected %s, got %s", mock_path_name(path), qexp, qact);
        return;
    }
    if (te == json_type_object) {
        mock_match_object(m, exp, act, path, top);
    } else if (te == json_type_array) {
        size_t ne = json_object_array_length(exp);
        size_t na = json_object_array_length(act);

        if (ne != na)
            mock_diff(m, "%s: expected %zu elements, got %zu", mock_path_name(path), ne, na);
        for (size_t i = 0; i < ne && i < na; i++) {
            g_autofree char *ipath = g_strdup_printf("%s[%zu]", path, i);
            mock_match_value(m, json_object_array_get_idx(exp, i),
                             json_object_array_get_idx(act, i), ipath, false);
        }
    } else if (!mock_scalar_equal(exp, act)) {
        g_autofree char *qexp = mock_quote(exp);
        g_autofree char *qact = mock_quote(act);
        mock_diff(m, "%s: expected %s, got %s", mock_path_name(path), qexp, qact);
    }
}

/* ---- substitution ----------------------------------------------------- */

static json_object *
mock_binding_value(MockBinding *b)
{
    switch (b->type) {
    case json_type_int:
        return json_object_new_int64(g_ascii_strtoll(b->text, NULL, 10));
    case json_type_double:
        return json_object_new_double(g_ascii_strtod(b->text, NULL));
    case json_type_boolean:
        return json_object_new_boolean(strcmp(b->text, "true") == 0);
    default:
        return json_object_new_string(b->text);
    }
}

/* The value a recv string becomes, NULL when it has no placeholder;
 * *unbound names the first unbound one. */
static json_object *
mock_substitute_string(QemuMock *mock, const char *s, char **unbound)
{
    g_autoptr(GArray) segs = mock_template_parse(s);
    GString *out;

    if (!segs)
        return NULL;
    if (mock_template_whole(segs)) {
        const char *name = g_array_index(segs, MockSeg, 0).text;
        MockBinding *b = g_hash_table_lookup(mock->bindings, name);

        if (!b) {
            *unbound = g_strdup(name);
            return NULL;
        }
        return mock_binding_value(b);
    }
    out = g_string_new(NULL);
    for (guint i = 0; i < segs->len; i++) {
        MockSeg *seg = &g_array_index(segs, MockSeg, i);
        MockBinding *b;

        if (!seg->capture) {
            g_string_append(out, seg->text);
        } else if ((b = g_hash_table_lookup(mock->bindings, seg->text))) {
            g_string_append(out, b->text);
        } else {
            *unbound = g_strdup(seg->text);
            g_string_free(out, TRUE);
            return NULL;
        }
    }
    {
        json_object *res = json_object_new_string(out->str);
        g_string_free(out, TRUE);
        return res;
    }
}

/* Replace placeholders in every string value of obj, in place; -1 with
 * *unbound set when one is not bound. */
static int
mock_substitute(QemuMock *mock, json_object *obj, char **unbound)
{
    if (json_object_is_type(obj, json_type_object)) {
        json_object_object_foreach(obj, key, val)
        {
            json_object *repl;

            if (json_object_is_type(val, json_type_string)) {
                repl = mock_substitute_string(mock, json_object_get_string(val), unbound);
                if (*unbound)
                    return -1;
                /* Replacing an existing key's value keeps the iteration valid. */
                if (repl)
                    json_object_object_add(obj, key, repl);
            } else if (mock_substitute(mock, val, unbound) < 0) {
                return -1;
            }
        }
    } else if (json_object_is_type(obj, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(obj); i++) {
            json_object *val = json_object_array_get_idx(obj, i);
            json_object *repl;

            if (json_object_is_type(val, json_type_string)) {
                repl = mock_substitute_string(mock, json_object_get_string(val), unbound);
                if (*unbound)
                    return -1;
                if (repl)
                    json_object_array_put_idx(obj, i, repl);
            } else if (mock_substitute(mock, val, unbound) < 0) {
                return -1;
            }
        }
    }
    return 0;
}

/* ---- connections ------------------------------------------------------ */

static void
side_drop_source(GSource **src)
{
    if (*src) {
        g_source_destroy(*src);
        g_source_unref(*src);
        *src = NULL;
    }
}

/* The connection is gone (client EOF, error, or our "close"). */
static void
side_disconnect(MockSide *side, const char *why)
{
    if (side->fd < 0)
        return;
    HO_DEBUG("side '%s': connection ends: %s", side->name, why);
    side_drop_source(&side->in_src);
    side_drop_source(&side->out_src);
    close(side->fd);
    side->fd = -1;
    side_close_fds(side);
    g_string_truncate(side->in, 0);
    g_string_truncate(side->out, 0);
}

static gboolean side_out_ready(gint fd, GIOCondition cond, gpointer opaque);

static void
side_flush(MockSide *side)
{
    while (side->fd >= 0 && side->out->len > 0) {
        ssize_t n = send(side->fd, side->out->str, side->out->len, MSG_NOSIGNAL);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (!side->out_src) {
                    side->out_src = g_unix_fd_source_new(side->fd, G_IO_OUT);
                    g_source_set_callback(side->out_src, G_SOURCE_FUNC(side_out_ready), side,
                                          NULL);
                    g_source_attach(side->out_src, side->mock->ctx);
                }
                return;
            }
            side_disconnect(side, g_strerror(errno));
            return;
        }
        g_string_erase(side->out, 0, n);
    }
    side_drop_source(&side->out_src);
}

static gboolean
side_out_ready(gint fd, GIOCondition cond, gpointer opaque)
{
    MockSide *side = opaque;

    /* The source ends here; side_flush makes a new one if still needed. */
    g_source_unref(side->out_src);
    side->out_src = NULL;
    side_flush(side);
    mock_pump(side->mock);
    return G_SOURCE_REMOVE;
}

static const char *
mock_cmd_name(json_object *msg)
{
    json_object *val;

    if ((json_object_object_get_ex(msg, "execute", &val) ||
         json_object_object_get_ex(msg, "exec-oob", &val)) &&
        json_object_is_type(val, json_type_string))
        return json_object_get_string(val);
    return NULL;
}

/* "<file>:<line>" of the side's current record, or "<file>:end". */
static char *
side_where(MockSide *side)
{
    MockRecord *rec = side_current(side);

    if (!rec)
        return g_strdup_printf("%s:end", side->mock->file);
    return g_strdup_printf("%s:%u", side->mock->file, rec->line);
}

/* One complete line from the client. */
static void
side_take_line(MockSide *side, const char *line, size_t len)
{
    QemuMock *mock = side->mock;
    g_autoptr(json_object) msg = NULL;
    g_autofree char *where = side_where(side);
    const char *cmd;

    while (len > 0 && g_ascii_isspace(line[len - 1]))
        len--;
    while (len > 0 && g_ascii_isspace(*line)) {
        line++;
        len--;
    }
    if (len == 0)
        return;
    if (!(msg = ho_json_parse(line, len))) {
        mock_fail(mock, "%s: side '%s': malformed JSON from the client: %s", where, side->name,
                  ho_error_last_message());
        return;
    }
    if (!json_object_is_type(msg, json_type_object) || !(cmd = mock_cmd_name(msg))) {
        g_autofree char *q = mock_quote(msg);
        mock_fail(mock, "%s: side '%s': not a QMP command: %s", where, side->name, q);
        return;
    }
    if (side->schema) {
        json_object *args = NULL;

        (void)json_object_object_get_ex(msg, "arguments", &args);
        if (qemu_qapi_check_command(side->schema, cmd, args) < 0) {
            g_autofree char *pretty = mock_pretty(msg);
            mock_fail(mock, "%s: side '%s': command violates schema %s: %s\nactual:\n%s", where,
                      side->name, side->schema_name, ho_error_last_message(), pretty);
            return;
        }
    }
    if (!side_current(side)) {
        g_autofree char *q = mock_quote(msg);
        mock_fail(mock, "%s: side '%s': unexpected command after end of transcript: %s",
                  mock->file, side->name, q);
        return;
    }
    g_queue_push_tail(&side->queue, g_steal_pointer(&msg));
}

static gboolean
side_in_ready(gint fd, GIOCondition cond, gpointer opaque)
{
    MockSide *side = opaque;
    QemuMock *mock = side->mock;

    while (side->fd >= 0 && !mock->failure) {
        int fds[HO_SOCKET_MAX_FDS];
        size_t nfds = 0;
        ssize_t n = ho_socket_recv_fds(side->fd, side->rbuf, MOCK_READ_CHUNK, fds,
                                       HO_SOCKET_MAX_FDS, &nfds);
        char *nl;

        for (size_t i = 0; i < nfds; i++) {
            if (n < 0) {
                close(fds[i]);
                continue;
            }
            if (!side->fds)
                side->fds = g_array_new(FALSE, FALSE, sizeof(int));
            g_array_append_val(side->fds, fds[i]);
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                side_disconnect(side, g_strerror(errno));
            break;
        }
        if (n == 0) {
            side_disconnect(side, "EOF");
            break;
        }
        g_string_append_len(side->in, side->rbuf, n);
        while (!mock->failure && (nl = memchr(side->in->str, '\n', side->in->len))) {
            size_t len = nl - side->in->str;

            if (len > MOCK_MAX_LINE)
                break;
            side_take_line(side, side->in->str, len);
            g_string_erase(side->in, 0, len + 1);
        }
        /* What is left is an incomplete line, or one that is too long. */
        if (!mock->failure && side->in->len > MOCK_MAX_LINE) {
            g_autofree char *where = side_where(side);
            mock_fail(mock, "%s: side '%s': client line over %d bytes", where, side->name,
                      MOCK_MAX_LINE);
        }
    }
    mock_pump(mock);
    /* side_disconnect or mock_fail dropped the source if it is done. */
    return side->in_src ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
}

static gboolean
side_accept(gint lfd, GIOCondition cond, gpointer opaque)
{
    MockSide *side = opaque;
    QemuMock *mock = side->mock;
    MockRecord *rec = side_current(side);
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

    if (fd < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            mock_fail(mock, "side '%s': accept: %s", side->name, g_strerror(errno));
        return side->listen_src ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
    }
    if (!rec || rec->kind != MOCK_OPEN || side->fd >= 0) {
        g_autofree char *where = side_where(side);
        close(fd);
        mock_fail(mock, "%s: side '%s': unexpected connection%s", where, side->name,
                  rec ? "" : " after end of transcript");
        return G_SOURCE_REMOVE;
    }
    HO_DEBUG("side '%s': client connected (%s:%u)", side->name, mock->file, rec->line);
    side->fd = fd;
    g_hash_table_remove_all(side->ids);
    side->in_src = g_unix_fd_source_new(fd, G_IO_IN | G_IO_HUP | G_IO_ERR);
    g_source_set_callback(side->in_src, G_SOURCE_FUNC(side_in_ready), side, NULL);
    g_source_attach(side->in_src, mock->ctx);
    rec->done = true;
    side->cursor++;
    mock_pump(mock);
    return side->listen_src ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
}

/* Listen while a connection is expected, and after the end (to catch
 * one that is not); otherwise leave callers waiting in the backlog. */
static void
side_update_listen(MockSide *side)
{
    MockRecord *rec = side_current(side);
    bool want = !side->mock->failure && (!rec || (rec->kind == MOCK_OPEN && side->fd < 0));

    if (want && !side->listen_src) {
        side->listen_src = g_unix_fd_source_new(side->listen_fd, G_IO_IN);
        g_source_set_callback(side->listen_src, G_SOURCE_FUNC(side_accept), side, NULL);
        g_source_attach(side->listen_src, side->mock->ctx);
    } else if (!want) {
        side_drop_source(&side->listen_src);
    }
}

/* ---- playing ---------------------------------------------------------- */

static gboolean
side_delay_over(gpointer opaque)
{
    MockSide *side = opaque;

    g_source_unref(side->delay_src);
    side->delay_src = NULL;
    side->delay_over = true;
    mock_pump(side->mock);
    return G_SOURCE_REMOVE;
}

/* The recorded time since the previous line of the side, capped; a
 * line's quiet_ms instead. */
static guint
side_delay_ms(MockSide *side)
{
    MockRecord *rec = side_current(side);
    MockRecord *prev;
    gint64 ms;

    if (rec->quiet_ms)
        return rec->quiet_ms;
    if (side->cursor == 0 || rec->ts < 0)
        return 0;
    prev = mock_rec(side->mock, g_array_index(side->recs, guint, side->cursor - 1));
    if (prev->ts < 0 || rec->ts <= prev->ts)
        return 0;
    ms = (rec->ts - prev->ts) / 1000;
    return ms > side->mock->max_delay ? side->mock->max_delay : (guint)ms;
}

static void
mock_advance_floor(QemuMock *mock)
{
    while (mock->floor < mock->recs->len) {
        MockRecord *rec = mock_rec(mock, mock->floor);

        if (rec->kind == MOCK_SEND && !rec->done)
            break;
        mock->floor++;
    }
}

static void
side_finish_record(MockSide *side, MockRecord *rec)
{
    rec->done = true;
    side->cursor++;
    side->delay_over = false;
    side_drop_source(&side->delay_src);
    mock_advance_floor(side->mock);
}

static void
side_compare(MockSide *side, MockRecord *rec, json_object *actual)
{
    QemuMock *mock = side->mock;
    g_autoptr(GHashTable) pending =
        g_hash_table_new_full(g_str_hash, g_str_equal, g_free, mock_binding_free);
    g_autoptr(GPtrArray) diffs = g_ptr_array_new_with_free_func(g_free);
    MockMatch m = {.mock = mock, .pending = pending, .diffs = diffs};
    json_object *rid;
    GHashTableIter it;
    gpointer k, v;

    mock_match_value(&m, rec->msg, actual, "", true);
    if (m.ndiffs > 0) {
        g_autofree char *pexp = mock_pretty(rec->msg);
        g_autofree char *pact = mock_pretty(actual);
        GString *d = g_string_new(NULL);

        for (guint i = 0; i < diffs->len; i++)
            g_string_append_printf(d, "\n  %s", (char *)diffs->pdata[i]);
        if (m.ndiffs > diffs->len)
            g_string_append_printf(d, "\n  ... %u more", m.ndiffs - diffs->len);
        mock_fail(mock,
                  "%s:%u: side '%s': the command differs from the transcript\n"
                  "expected:\n%s\nactual:\n%s\ndifferences:%s",
                  mock->file, rec->line, side->name, pexp, pact, d->str);
        g_string_free(d, TRUE);
        return;
    }

    g_hash_table_iter_init(&it, pending);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        HO_DEBUG("placeholder ${%s} = '%s'", (char *)k, ((MockBinding *)v)->text);
        g_hash_table_iter_steal(&it);
        g_hash_table_insert(mock->bindings, k, v);
    }

    if (json_object_object_get_ex(rec->msg, "id", &rid)) {
        json_object *cid = NULL;

        (void)json_object_object_get_ex(actual, "id", &cid);
        g_hash_table_insert(side->ids, ho_json_to_string(rid), cid ? json_object_get(cid) : NULL);
    }
    mock_history_add(mock,
                    g_strdup_printf("%s send %s", side->name, mock_cmd_name(actual)));
    side_finish_record(side, rec);
}

/* Note a played line (line is consumed). */
static void
mock_history_add(QemuMock *mock, char *line)
{
    g_ptr_array_add(mock->history, line);
    if (mock->history_cb)
        mock->history_cb(mock, line, mock->history_opaque);
}

/* "SIDE recv EVENT [status]" or "SIDE recv return|error". */
static void
mock_history_recv(MockSide *side, json_object *msg)
{
    json_object *ev;
    json_object *data;
    json_object *status;

    if (json_object_object_get_ex(msg, "event", &ev)) {
        if (json_object_object_get_ex(msg, "data", &data) &&
            json_object_is_type(data, json_type_object) &&
            json_object_object_get_ex(data, "status", &status) &&
            json_object_is_type(status, json_type_string))
            mock_history_add(side->mock,
                            g_strdup_printf("%s recv %s %s", side->name,
                                            json_object_get_string(ev),
                                            json_object_get_string(status)));
        else
            mock_history_add(side->mock, g_strdup_printf("%s recv %s", side->name,
                                                                 json_object_get_string(ev)));
    } else if (json_object_object_get_ex(msg, "error", NULL)) {
        mock_history_add(side->mock, g_strdup_printf("%s recv error", side->name));
    } else if (json_object_object_get_ex(msg, "return", NULL)) {
        mock_history_add(side->mock, g_strdup_printf("%s recv return", side->name));
    }
}

static void
side_write_recv(MockSide *side, MockRecord *rec)
{
    QemuMock *mock = side->mock;
    g_autoptr(json_object) msg = NULL;
    g_autofree char *unbound = NULL;
    json_object *rid;

    if (rec->raw) {
        g_string_append(side->out, rec->raw);
        g_string_append(side->out, "\r\n");
        side_flush(side);
        return;
    }

    if (json_object_deep_copy(rec->msg, &msg, NULL) < 0) {
        mock_fail(mock, "%s:%u: cannot copy the message", mock->file, rec->line);
        return;
    }
    if (mock_substitute(mock, msg, &unbound) < 0) {
        mock_fail(mock, "%s:%u: side '%s': placeholder ${%s} is used before it is bound",
                  mock->file, rec->line, side->name, unbound);
        return;
    }
    if (json_object_object_get_ex(msg, "id", &rid)) {
        g_autofree char *key = ho_json_to_string(rid);
        gpointer cid;

        if (g_hash_table_lookup_extended(side->ids, key, NULL, &cid)) {
            if (cid)
                json_object_object_add(msg, "id", json_object_get(cid));
            else
                json_object_object_del(msg, "id");
        }
    }
    mock_history_recv(side, msg);
    if (json_object_object_get_ex(msg, "event", NULL)) {
        gint64 now = g_get_real_time();
        json_object *ts = json_object_new_object();

        json_object_object_add(ts, "seconds", json_object_new_int64(now / G_USEC_PER_SEC));
        json_object_object_add(ts, "microseconds", json_object_new_int64(now % G_USEC_PER_SEC));
        json_object_object_add(msg, "timestamp", ts);
    }
    g_string_append(side->out, json_object_to_json_string_ext(msg, JSON_C_TO_STRING_PLAIN));
    g_string_append(side->out, "\r\n");
    side_flush(side);
}

/* A "close" was played: QEMU of that side is gone. */
static void
mock_closed(MockSide *side)
{
    mock_history_add(side->mock, g_strdup_printf("%s close", side->name));
    if (side->mock->close_cb)
        side->mock->close_cb(side->mock, side->name, side->mock->close_opaque);
}

/* Play the side's current record if it can be; true when it moved on. */
static bool
side_step(MockSide *side)
{
    QemuMock *mock = side->mock;
    MockRecord *rec = side_current(side);
    json_object *cmd;
    guint delay;

    if (mock->failure)
        return false;
    if (!rec) {
        if ((cmd = g_queue_pop_head(&side->queue))) {
            g_autofree char *q = mock_quote(cmd);
            json_object_put(cmd);
            mock_fail(mock, "%s: side '%s': unexpected command after end of transcript: %s",
                      mock->file, side->name, q);
        }
        return false;
    }

    switch (rec->kind) {
    case MOCK_OPEN:
        return false; /* side_accept moves on */

    case MOCK_SEND:
        if ((cmd = g_queue_pop_head(&side->queue))) {
            side_compare(side, rec, cmd);
            json_object_put(cmd);
            return !mock->failure;
        }
        if (side->fd < 0) {
            g_autofree char *q = mock_quote(rec->msg);
            mock_fail(mock, "%s:%u: side '%s': the client disconnected; expected %s", mock->file,
                      rec->line, side->name, q);
        }
        return false;

    case MOCK_RECV:
    case MOCK_CLOSE:
        /* QEMU's output follows the input that caused it. */
        if (side_current_index(side) > mock->floor)
            return false;
        if (rec->kind == MOCK_CLOSE && rec->by_client && side->fd >= 0)
            return false; /* side_disconnect pumps when the client leaves */
        if (side->fd < 0) {
            /* The client left: what QEMU would have said goes nowhere. */
            side_finish_record(side, rec);
            if (rec->kind == MOCK_CLOSE)
                mock_closed(side);
            return true;
        }
        if (!side->delay_over && !side->delay_src && (delay = side_delay_ms(side)) > 0) {
            side->delay_src = g_timeout_source_new(delay);
            g_source_set_callback(side->delay_src, side_delay_over, side, NULL);
            g_source_attach(side->delay_src, mock->ctx);
            return false;
        }
        if (rec->quiet_ms && side->queue.length > 0) {
            json_object *early = g_queue_peek_head(&side->queue);
            g_autofree char *q = mock_quote(early);
            g_autofree char *want = mock_quote(rec->msg);

            mock_fail(mock, "%s:%u: side '%s': command %s sent before %s (the client must "
                      "wait for it)", mock->file, rec->line, side->name, q, want);
            return false;
        }
        if (side->delay_src)
            return false;
        if (rec->kind == MOCK_RECV) {
            side_write_recv(side, rec);
        } else {
            /* What QEMU wrote before it died still arrives. */
            side_flush(side);
            if (side->out->len > 0)
                return false;
            side_disconnect(side, "\"close\" in the transcript");
            /* Commands sent to a QEMU that died never reached it. */
            while ((cmd = g_queue_pop_head(&side->queue)))
                json_object_put(cmd);
        }
        if (mock->failure)
            return false;
        side_finish_record(side, rec);
        if (rec->kind == MOCK_CLOSE)
            mock_closed(side);
        return true;
    }
    return false;
}

static void
mock_pump(QemuMock *mock)
{
    if (mock->pumping) {
        mock->again = true;
        return;
    }
    mock->pumping = true;
    do {
        bool progress;

        mock->again = false;
        do {
            progress = false;
            for (guint i = 0; i < mock->sides->len && !mock->failure; i++) {
                while (side_step(mock->sides->pdata[i]))
                    progress = true;
            }
        } while (progress && !mock->failure);
    } while (mock->again && !mock->failure);
    for (guint i = 0; i < mock->sides->len; i++)
        side_update_listen(mock->sides->pdata[i]);
    mock->pumping = false;
}

/* ---- running ---------------------------------------------------------- */

static char *
side_waiting_for(MockSide *side)
{
    QemuMock *mock = side->mock;
    MockRecord *rec = side_current(side);

    if (!rec) {
        if (side->out->len > 0)
            return g_strdup_printf("%s: side '%s' writing its last reply", mock->file, side->name);
        return NULL;
    }
    switch (rec->kind) {
    case MOCK_OPEN:
        return g_strdup_printf("%s:%u: side '%s' waiting for the client to connect", mock->file,
                               rec->line, side->name);
    case MOCK_SEND: {
        g_autofree char *q = mock_quote(rec->msg);
        return g_strdup_printf("%s:%u: side '%s' waiting for the command %s", mock->file,
                               rec->line, side->name, q);
    }
    case MOCK_RECV:
    case MOCK_CLOSE:
        if (rec->kind == MOCK_CLOSE && rec->by_client && side_current_index(side) <= mock->floor)
            return g_strdup_printf("%s:%u: side '%s' waiting for the client to close the "
                                   "connection",
                                   mock->file, rec->line, side->name);
        if (side_current_index(side) > mock->floor) {
            MockRecord *block = mock_rec(mock, mock->floor);
            MockSide *bside = mock->sides->pdata[block->side];
            return g_strdup_printf("%s:%u: side '%s' holding its %s until the command at "
                                   "%s:%u (side '%s') arrives",
                                   mock->file, rec->line, side->name, mock_kind_names[rec->kind],
                                   mock->file, block->line, bside->name);
        }
        return g_strdup_printf("%s:%u: side '%s' about to play its %s", mock->file, rec->line,
                               side->name, mock_kind_names[rec->kind]);
    }
    return NULL;
}

static gboolean
mock_run_timeout(gpointer opaque)
{
    *(bool *)opaque = true;
    return G_SOURCE_REMOVE;
}

int
qemu_mock_run(QemuMock *mock, guint timeout_ms)
{
    bool timed_out = false;
    GSource *timer = g_timeout_source_new(timeout_ms);

    g_source_set_callback(timer, mock_run_timeout, &timed_out, NULL);
    g_source_attach(timer, mock->ctx);
    while (!mock->failure && !qemu_mock_done(mock) && !timed_out)
        g_main_context_iteration(mock->ctx, TRUE);
    g_source_destroy(timer);
    g_source_unref(timer);

    if (mock->failure) {
        ho_error_report(HO_ERR_INVALID_ARG, "%s", mock->failure);
        return -1;
    }
    if (!qemu_mock_done(mock)) {
        GString *where = g_string_new(NULL);

        for (guint i = 0; i < mock->sides->len; i++) {
            g_autofree char *w = side_waiting_for(mock->sides->pdata[i]);
            if (w)
                g_string_append_printf(where, "%s%s", where->len ? "; " : "", w);
        }
        ho_error_report(HO_ERR_TIMEOUT, "timed out after %u ms at %s", timeout_ms, where->str);
        g_string_free(where, TRUE);
        return -1;
    }
    return 0;
}
