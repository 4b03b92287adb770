/*
 * JSON helpers over json-c.
 *
 * json-c 0.16 accepts more than RFC 8259, even with JSON_TOKENER_STRICT:
 * NaN and Infinity, single-quoted strings, raw control characters in
 * strings, and it silently clamps integers beyond 64 bits. QMP replies and
 * RPC messages come from outside, so ho_json_parse first checks the text
 * against the RFC grammar (with integer ranges and a nesting limit) and only
 * then lets json-c build the tree.
 */
#define HO_LOG_MODULE "util.json"

#include "ho_json.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <string.h>

#include "ho_error.h"
#include "ho_i18n.h"
#include "ho_log.h"

/* Deepest nesting of arrays and objects accepted; QMP needs far less. */
#define HO_JSON_MAX_DEPTH 64

typedef struct {
    const char *buf;
    size_t len;
    size_t pos;         /* next byte to look at */
    size_t err_pos;     /* where the error is */
    const char *reason; /* translated, static */
} JsonScan;

static int
scan_fail(JsonScan *s, size_t pos, const char *reason)
{
    s->err_pos = pos;
    s->reason = reason;
    return -1;
}

static int
scan_eod(JsonScan *s)
{
    return scan_fail(s, s->len, _("unexpected end of data"));
}

static void
scan_ws(JsonScan *s)
{
    while (s->pos < s->len) {
        char c = s->buf[s->pos];

        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        s->pos++;
    }
}

static int
scan_literal(JsonScan *s, const char *word)
{
    size_t n = strlen(word);
    size_t i;

    for (i = 0; i < n; i++) {
        if (s->pos + i >= s->len)
            return scan_eod(s);
        if (s->buf[s->pos + i] != word[i])
            return scan_fail(s, s->pos + i, _("unexpected character"));
    }
    s->pos += n;
    return 0;
}

static int
scan_string(JsonScan *s)
{
    size_t start = ++s->pos; /* after the opening quote */

    while (s->pos < s->len) {
        unsigned char c = s->buf[s->pos];

        if (c == '"') {
            const char *end;

            /* Escapes are ASCII, so the raw span must be valid UTF-8. */
            if (!g_utf8_validate_len(s->buf + start, s->pos - start, &end))
                return scan_fail(s, end - s->buf, _("invalid UTF-8 in string"));
            s->pos++;
            return 0;
        }
        if (c < 0x20)
            return scan_fail(s, s->pos, _("control character in string"));
        if (c == '\\') {
            if (s->pos + 1 >= s->len)
                return scan_eod(s);
            c = s->buf[s->pos + 1];
            if (c == 'u') {
                size_t i;

                for (i = 2; i < 6; i++) {
                    if (s->pos + i >= s->len)
                        return scan_eod(s);
                    if (!g_ascii_isxdigit(s->buf[s->pos + i]))
                        return scan_fail(s, s->pos, _("invalid escape in string"));
                }
                s->pos += 6;
                continue;
            }
            if (!strchr("\"\\/bfnrt", c) || c == '\0')
                return scan_fail(s, s->pos, _("invalid escape in string"));
            s->pos += 2;
            continue;
        }
        s->pos++;
    }
    return scan_eod(s);
}

static size_t
scan_digits(JsonScan *s)
{
    size_t n = 0;

    while (s->pos < s->len && g_ascii_isdigit(s->buf[s->pos])) {
        s->pos++;
        n++;
    }
    return n;
}

static int
scan_number(JsonScan *s)
{
    size_t start = s->pos;
    bool negative = false;
    bool integer = true;
    size_t int_start;
    size_t int_end;

    if (s->buf[s->pos] == '-') {
        negative = true;
        s->pos++;
    }
    int_start = s->pos;
    if (s->pos >= s->len)
        return scan_eod(s);
    if (s->buf[s->pos] == '0') {
        s->pos++;
    } else if (scan_digits(s) == 0) {
        return scan_fail(s, s->pos, _("invalid number"));
    }
    int_end = s->pos;
    if (s->pos < s->len && s->buf[s->pos] == '.') {
        integer = false;
        s->pos++;
        if (s->pos >= s->len)
            return scan_eod(s);
        if (scan_digits(s) == 0)
            return scan_fail(s, s->pos, _("invalid number"));
    }
    if (s->pos < s->len && (s->buf[s->pos] == 'e' || s->buf[s->pos] == 'E')) {
        integer = false;
        s->pos++;
        if (s->pos < s->len && (s->buf[s->pos] == '+' || s->buf[s->pos] == '-'))
            s->pos++;
        if (s->pos >= s->len)
            return scan_eod(s);
        if (scan_digits(s) == 0)
            return scan_fail(s, s->pos, _("invalid number"));
    }

    if (integer) {
        /* json-c would clamp: anything outside int64/uint64 is refused. */
        guint64 limit = negative ? (guint64)G_MAXINT64 + 1 : G_MAXUINT64;
        guint64 val = 0;
        size_t i;

        for (i = int_start; i < int_end; i++) {
            unsigned digit = s->buf[i] - '0';

            if (val > (limit - digit) / 10)
                return scan_fail(s, start, _("number out of range"));
            val = val * 10 + digit;
        }
    } else {
        g_autofree char *text = g_strndup(s->buf + start, s->pos - start);
        double d = g_ascii_strtod(text, NULL);

        if (isinf(d) || isnan(d))
            return scan_fail(s, start, _("number out of range"));
    }
    return 0;
}

static int
scan_value(JsonScan *s, unsigned depth)
{
    char c;

    scan_ws(s);
    if (s->pos >= s->len)
        return scan_eod(s);
    c = s->buf[s->pos];

    switch (c) {
    case '{':
    case '[': {
        char close = c == '{' ? '}' : ']';

        if (depth >= HO_JSON_MAX_DEPTH)
            return scan_fail(s, s->pos, _("nesting too deep"));
        s->pos++;
        scan_ws(s);
        if (s->pos < s->len && s->buf[s->pos] == close) {
            s->pos++;
            return 0;
        }
        for (;;) {
            if (c == '{') {
                scan_ws(s);
                if (s->pos >= s->len)
                    return scan_eod(s);
                if (s->buf[s->pos] != '"')
                    return scan_fail(s, s->pos, _("unexpected character"));
                if (scan_string(s) < 0)
                    return -1;
                scan_ws(s);
                if (s->pos >= s->len)
                    return scan_eod(s);
                if (s->buf[s->pos] != ':')
                    return scan_fail(s, s->pos, _("unexpected character"));
                s->pos++;
            }
            if (scan_value(s, depth + 1) < 0)
                return -1;
            scan_ws(s);
            if (s->pos >= s->len)
                return scan_eod(s);
            if (s->buf[s->pos] == close) {
                s->pos++;
                return 0;
            }
            if (s->buf[s->pos] != ',')
                return scan_fail(s, s->pos, _("unexpected character"));
            s->pos++;
        }
    }
    case '"':
        return scan_string(s);
    case 't':
        return scan_literal(s, "true");
    case 'f':
        return scan_literal(s, "false");
    case 'n':
        return scan_literal(s, "null");
    default:
        if (c == '-' || g_ascii_isdigit(c))
            return scan_number(s);
        return scan_fail(s, s->pos, _("unexpected character"));
    }
}

json_object *
ho_json_parse(const char *buf, size_t len)
{
    JsonScan scan = {.buf = buf, .len = buf ? len : 0};
    json_tokener *tok;
    json_object *obj;
    enum json_tokener_error jerr;

    len = scan.len;
    if (len >= INT_MAX) {
        ho_error_report(HO_ERR_LIMIT, _("JSON text of %1$zu bytes is too large"), len);
        return NULL;
    }

    if (scan_value(&scan, 0) == 0) {
        scan_ws(&scan);
        if (scan.pos < len)
            scan_fail(&scan, scan.pos, _("unexpected text after the value"));
    }
    if (scan.reason) {
        ho_error_report(HO_ERR_JSON, _("malformed JSON at offset %1$zu: %2$s"), scan.err_pos,
                        scan.reason);
        return NULL;
    }

    /* The text is valid: json-c only builds the tree. A margin on the depth
     * keeps its own counting from refusing what the scan accepted. */
    tok = json_tokener_new_ex(HO_JSON_MAX_DEPTH + 2);
    if (!tok) {
        ho_error_report(HO_ERR_INTERNAL, _("cannot create a JSON parser"));
        return NULL;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    obj = json_tokener_parse_ex(tok, buf, (int)len);
    jerr = json_tokener_get_error(tok);
    if (!obj && jerr == json_tokener_continue) {
        /* A bare number at the end of the text: a NUL byte ends it. */
        obj = json_tokener_parse_ex(tok, "", 1);
        jerr = json_tokener_get_error(tok);
    }
    if (!obj) {
        if (jerr == json_tokener_success) {
            ho_error_report(HO_ERR_JSON, _("unexpected JSON null value"));
        } else {
            ho_error_report(HO_ERR_JSON, _("malformed JSON at offset %1$zu: %2$s"),
                            json_tokener_get_parse_end(tok), json_tokener_error_desc(jerr));
        }
    }
    json_tokener_free(tok);
    return obj;
}

char *
ho_json_to_string(json_object *obj)
{
    if (!obj)
        return g_strdup("null");
    return g_strdup(json_object_to_json_string_ext(
        obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
}

bool
ho_json_equal(json_object *a, json_object *b)
{
    /* json_object_equal compares objects member by member through lookups,
     * so key order does not matter (checked by hojsontest); it also keeps
     * integers and doubles apart. */
    return json_object_equal(a, b) != 0;
}

typedef enum {
    JSON_KIND_STRING,
    JSON_KIND_BOOL,
    JSON_KIND_INT,
    JSON_KIND_NUMBER,
    JSON_KIND_OBJECT,
    JSON_KIND_ARRAY,
} JsonKind;

static int
json_mistyped(const char *key, JsonKind kind)
{
    /* One whole message per type, so translators see full sentences. */
    switch (kind) {
    case JSON_KIND_STRING:
        ho_error_report(HO_ERR_JSON, _("JSON field '%1$s' is not a string"), key);
        break;
    case JSON_KIND_BOOL:
        ho_error_report(HO_ERR_JSON, _("JSON field '%1$s' is not a boolean"), key);
        break;
    case JSON_KIND_INT:
        ho_error_report(HO_ERR_JSON, _("JSON field '%1$s' is not an integer"), key);
        break;
    case JSON_KIND_NUMBER:
        ho_error_report(HO_ERR_JSON, _("JSON field '%1$s' is not a number"), key);
        break;
    case JSON_KIND_OBJECT:
        ho_error_report(HO_ERR_JSON, _("JSON field '%1$s' is not an object"), key);
        break;
    case JSON_KIND_ARRAY:
        ho_error_report(HO_ERR_JSON, _("JSON field '%1$s' is not an array"), key);
        break;
    }
    return -1;
}

/* 1 and *val when present (NULL for a JSON null), 0 when absent and
 * optional, -1 and an error otherwise. */
static int
json_lookup(json_object *obj, const char *key, bool required, json_object **val)
{
    if (!key)
        key = "";
    if (!json_object_is_type(obj, json_type_object)) {
        ho_error_report(HO_ERR_JSON,
                        _("cannot read JSON field '%1$s': the value is not an object"), key);
        return -1;
    }
    if (!json_object_object_get_ex(obj, key, val)) {
        if (!required)
            return 0;
        ho_error_report(HO_ERR_JSON, _("JSON field '%1$s' is missing"), key);
        return -1;
    }
    return 1;
}

static int
json_take_int64(const char *key, json_object *val, int64_t *out)
{
    int64_t v;

    if (!json_object_is_type(val, json_type_int))
        return json_mistyped(key, JSON_KIND_INT);
    v = json_object_get_int64(val);
    /* json-c keeps values above INT64_MAX as uint64 and clamps them here. */
    if (v == INT64_MAX && json_object_get_uint64(val) > (uint64_t)INT64_MAX) {
        ho_error_report(HO_ERR_JSON, _("JSON field '%1$s' is out of range"), key);
        return -1;
    }
    *out = v;
    return 0;
}

static int
json_take_uint64(const char *key, json_object *val, uint64_t *out)
{
    if (!json_object_is_type(val, json_type_int))
        return json_mistyped(key, JSON_KIND_INT);
    if (json_object_get_int64(val) < 0) {
        ho_error_report(HO_ERR_JSON, _("JSON field '%1$s' is negative"), key);
        return -1;
    }
    *out = json_object_get_uint64(val);
    return 0;
}

int
ho_json_get_object(json_object *obj, const char *key, json_object **out)
{
    json_object *val;

    if (json_lookup(obj, key, true, &val) < 0)
        return -1;
    if (!json_object_is_type(val, json_type_object))
        return json_mistyped(key, JSON_KIND_OBJECT);
    *out = val;
    return 0;
}

int
ho_json_get_array(json_object *obj, const char *key, json_object **out)
{
    json_object *val;

    if (json_lookup(obj, key, true, &val) < 0)
        return -1;
    if (!json_object_is_type(val, json_type_array))
        return json_mistyped(key, JSON_KIND_ARRAY);
    *out = val;
    return 0;
}

int
ho_json_get_string(json_object *obj, const char *key, const char **out)
{
    json_object *val;

    if (json_lookup(obj, key, true, &val) < 0)
        return -1;
    if (!json_object_is_type(val, json_type_string))
        return json_mistyped(key, JSON_KIND_STRING);
    *out = json_object_get_string(val);
    return 0;
}

int
ho_json_get_bool(json_object *obj, const char *key, bool *out)
{
    json_object *val;

    if (json_lookup(obj, key, true, &val) < 0)
        return -1;
    if (!json_object_is_type(val, json_type_boolean))
        return json_mistyped(key, JSON_KIND_BOOL);
    *out = json_object_get_boolean(val) != 0;
    return 0;
}

int
ho_json_get_int64(json_object *obj, const char *key, int64_t *out)
{
    json_object *val;

    if (json_lookup(obj, key, true, &val) < 0)
        return -1;
    return json_take_int64(key, val, out);
}

int
ho_json_get_uint64(json_object *obj, const char *key, uint64_t *out)
{
    json_object *val;

    if (json_lookup(obj, key, true, &val) < 0)
        return -1;
    return json_take_uint64(key, val, out);
}

int
ho_json_get_double(json_object *obj, const char *key, double *out)
{
    json_object *val;

    if (json_lookup(obj, key, true, &val) < 0)
        return -1;
    if (!json_object_is_type(val, json_type_double) && !json_object_is_type(val, json_type_int))
        return json_mistyped(key, JSON_KIND_NUMBER);
    *out = json_object_get_double(val);
    return 0;
}

int
ho_json_opt_object(json_object *obj, const char *key, json_object **out)
{
    json_object *val;
    int rc = json_lookup(obj, key, false, &val);

    if (rc <= 0)
        return rc;
    if (!json_object_is_type(val, json_type_object))
        return json_mistyped(key, JSON_KIND_OBJECT);
    *out = val;
    return 1;
}

int
ho_json_opt_array(json_object *obj, const char *key, json_object **out)
{
    json_object *val;
    int rc = json_lookup(obj, key, false, &val);

    if (rc <= 0)
        return rc;
    if (!json_object_is_type(val, json_type_array))
        return json_mistyped(key, JSON_KIND_ARRAY);
    *out = val;
    return 1;
}

int
ho_json_opt_string(json_object *obj, const char *key, const char **out)
{
    json_object *val;
    int rc = json_lookup(obj, key, false, &val);

    if (rc <= 0)
        return rc;
    if (!json_object_is_type(val, json_type_string))
        return json_mistyped(key, JSON_KIND_STRING);
    *out = json_object_get_string(val);
    return 1;
}

int
ho_json_opt_bool(json_object *obj, const char *key, bool *out)
{
    json_object *val;
    int rc = json_lookup(obj, key, false, &val);

    if (rc <= 0)
        return rc;
    if (!json_object_is_type(val, json_type_boolean))
        return json_mistyped(key, JSON_KIND_BOOL);
    *out = json_object_get_boolean(val) != 0;
    return 1;
}

int
ho_json_opt_int64(json_object *obj, const char *key, int64_t *out)
{
    json_object *val;
    int rc = json_lookup(obj, key, false, &val);

    if (rc <= 0)
        return rc;
    if (json_take_int64(key, val, out) < 0)
        return -1;
    return 1;
}

int
ho_json_opt_uint64(json_object *obj, const char *key, uint64_t *out)
{
    json_object *val;
    int rc = json_lookup(obj, key, false, &val);

    if (rc <= 0)
        return rc;
    if (json_take_uint64(key, val, out) < 0)
        return -1;
    return 1;
}

json_object *
ho_json_add(json_object *obj, const char *key, json_object *val)
{
    /* json-c asserts on a non-object, and leaves val to us when it fails. */
    if (!json_object_is_type(obj, json_type_object) || !key ||
        json_object_object_add(obj, key, val) < 0)
        json_object_put(val);
    return obj;
}

json_object *
ho_json_add_string(json_object *obj, const char *key, const char *val)
{
    return ho_json_add(obj, key, val ? json_object_new_string(val) : NULL);
}

json_object *
ho_json_add_bool(json_object *obj, const char *key, bool val)
{
    return ho_json_add(obj, key, json_object_new_boolean(val));
}

json_object *
ho_json_add_int64(json_object *obj, const char *key, int64_t val)
{
    return ho_json_add(obj, key, json_object_new_int64(val));
}

char **
ho_json_array_to_strv(json_object *array, const char *what)
{
    g_autoptr(GPtrArray) strv = NULL;
    size_t n;
    size_t i;

    if (!what)
        what = "";
    if (!json_object_is_type(array, json_type_array)) {
        ho_error_report(HO_ERR_JSON, _("'%1$s' is not a JSON array"), what);
        return NULL;
    }
    n = json_object_array_length(array);
    strv = g_ptr_array_new_full(n + 1, g_free);
    for (i = 0; i < n; i++) {
        json_object *elem = json_object_array_get_idx(array, i);

        if (!json_object_is_type(elem, json_type_string)) {
            ho_error_report(HO_ERR_JSON, _("element %1$zu of '%2$s' is not a string"), i, what);
            return NULL;
        }
        g_ptr_array_add(strv, g_strdup(json_object_get_string(elem)));
    }
    g_ptr_array_add(strv, NULL);
    return (char **)g_ptr_array_free(g_steal_pointer(&strv), FALSE);
}
