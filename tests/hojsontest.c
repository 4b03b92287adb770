/* Tests for src/util/ho_json: strict parsing, typed getters, equality. */
#include <stdint.h>
#include <string.h>

#include <glib.h>

#include "ho_error.h"
#include "ho_json.h"

static json_object *
parse_ok(const char *text)
{
    json_object *obj;

    ho_error_reset();
    obj = ho_json_parse(text, strlen(text));
    if (!obj)
        g_error("cannot parse '%s': %s", text, ho_error_last_message());
    g_assert_null(ho_error_last());
    return obj;
}

static void
test_parse_valid(void)
{
    static const struct {
        const char *in;
        const char *out;
    } cases[] = {
        {"{\"a\":1,\"b\":[true,false,null],\"c\":\"x\"}",
         "{\"a\":1,\"b\":[true,false,null],\"c\":\"x\"}"},
        {" \t\r\n[ ] \n", "[]"},
        {"{ }", "{}"},
        {"123", "123"},
        {"-0", "0"},
        {"0", "0"},
        {"1.5", "1.5"},
        {"-2.5e-3", "-2.5e-3"},
        {"1E3", "1E3"},
        {"true", "true"},
        {"false", "false"},
        {"\"str\"", "\"str\""},
        {"\"a\\/b\"", "\"a/b\""},
        {"\"\\\"\\\\\\b\\f\\n\\r\\t\"", "\"\\\"\\\\\\b\\f\\n\\r\\t\""},
        {"9223372036854775807", "9223372036854775807"},
        {"-9223372036854775808", "-9223372036854775808"},
        {"18446744073709551615", "18446744073709551615"},
        {"1e-400", "1e-400"}, /* underflow to zero is not an error */
        {"{\"return\": {}, \"id\": \"libvirt-1\"}", "{\"return\":{},\"id\":\"libvirt-1\"}"},
    };
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autoptr(json_object) obj = parse_ok(cases[i].in);
        g_autofree char *text = ho_json_to_string(obj);

        g_assert_cmpstr(text, ==, cases[i].out);
    }
}

static void
test_parse_unicode(void)
{
    g_autoptr(json_object) obj = parse_ok("[\"\\u00e9\\ud83d\\ude00\", \"\xc3\xa9\"]");

    g_assert_cmpstr(json_object_get_string(json_object_array_get_idx(obj, 0)), ==,
                    "\xc3\xa9\xf0\x9f\x98\x80");
    g_assert_cmpstr(json_object_get_string(json_object_array_get_idx(obj, 1)), ==, "\xc3\xa9");
}

/* The buffer need not be NUL-terminated: only len bytes count. */
static void
test_parse_length(void)
{
    const char buf[] = "[1,2]garbage";
    g_autoptr(json_object) obj = ho_json_parse(buf, 5);
    g_autoptr(json_object) num = ho_json_parse("42}", 2);
    g_autofree char *text = NULL;

    g_assert_nonnull(obj);
    text = ho_json_to_string(obj);
    g_assert_cmpstr(text, ==, "[1,2]");
    g_assert_nonnull(num);
    g_assert_cmpint(json_object_get_int64(num), ==, 42);
}

static char *
nested(unsigned depth)
{
    GString *s = g_string_new(NULL);
    unsigned i;

    for (i = 0; i < depth; i++)
        g_string_append(s, i % 2 ? "{\"k\":" : "[");
    g_string_append(s, "1");
    for (i = depth; i > 0; i--)
        g_string_append(s, (i - 1) % 2 ? "}" : "]");
    return g_string_free(s, FALSE);
}

static void
test_parse_depth(void)
{
    g_autofree char *ok = nested(64);
    g_autofree char *deep = nested(65);
    g_autoptr(json_object) obj = NULL;

    obj = ho_json_parse(ok, strlen(ok));
    g_assert_nonnull(obj);
    g_assert_null(ho_json_parse(deep, strlen(deep)));
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_JSON);
    g_assert_cmpstr(ho_error_last_message(), ==, "malformed JSON at offset 192: nesting too deep");
    ho_error_reset();
}

static void
test_parse_malformed(void)
{
    static const struct {
        const char *in;
        size_t len; /* 0: strlen(in) */
        const char *message;
    } cases[] = {
        {"", 0, "malformed JSON at offset 0: unexpected end of data"},
        {"   ", 0, "malformed JSON at offset 3: unexpected end of data"},
        {"{\"a\":1", 0, "malformed JSON at offset 6: unexpected end of data"},
        {"{\"a\":", 0, "malformed JSON at offset 5: unexpected end of data"},
        {"[1, 2", 0, "malformed JSON at offset 5: unexpected end of data"},
        {"\"abc", 0, "malformed JSON at offset 4: unexpected end of data"},
        {"{\"a\":1}x", 0, "malformed JSON at offset 7: unexpected text after the value"},
        {"{\"a\":1} {\"b\":2}", 0, "malformed JSON at offset 8: unexpected text after the value"},
        {"true false", 0, "malformed JSON at offset 5: unexpected text after the value"},
        {"[1]\0", 4, "malformed JSON at offset 3: unexpected text after the value"},
        {"\0", 1, "malformed JSON at offset 0: unexpected character"},
        {"NaN", 0, "malformed JSON at offset 0: unexpected character"},
        {"[NaN]", 0, "malformed JSON at offset 1: unexpected character"},
        {"-Infinity", 0, "malformed JSON at offset 1: invalid number"},
        {"{\"a\":Infinity}", 0, "malformed JSON at offset 5: unexpected character"},
        {"{'a':1}", 0, "malformed JSON at offset 1: unexpected character"},
        {"['a']", 0, "malformed JSON at offset 1: unexpected character"},
        {"/* c */ 1", 0, "malformed JSON at offset 0: unexpected character"},
        {"[1] // c", 0, "malformed JSON at offset 4: unexpected text after the value"},
        {"[1,]", 0, "malformed JSON at offset 3: unexpected character"},
        {"{\"a\":1,}", 0, "malformed JSON at offset 7: unexpected character"},
        {"{\"a\" 1}", 0, "malformed JSON at offset 5: unexpected character"},
        {"{1:2}", 0, "malformed JSON at offset 1: unexpected character"},
        {"[1 2]", 0, "malformed JSON at offset 3: unexpected character"},
        {"01", 0, "malformed JSON at offset 1: unexpected text after the value"},
        {"1.", 0, "malformed JSON at offset 2: unexpected end of data"},
        {"1.e5", 0, "malformed JSON at offset 2: invalid number"},
        {"1e", 0, "malformed JSON at offset 2: unexpected end of data"},
        {"1e+x", 0, "malformed JSON at offset 3: invalid number"},
        {".5", 0, "malformed JSON at offset 0: unexpected character"},
        {"+1", 0, "malformed JSON at offset 0: unexpected character"},
        {"-", 0, "malformed JSON at offset 1: unexpected end of data"},
        {"0x10", 0, "malformed JSON at offset 1: unexpected text after the value"},
        {"\"a\tb\"", 0, "malformed JSON at offset 2: control character in string"},
        {"\"a\nb\"", 0, "malformed JSON at offset 2: control character in string"},
        {"\"a\0b\"", 5, "malformed JSON at offset 2: control character in string"},
        {"\"\\x\"", 0, "malformed JSON at offset 1: invalid escape in string"},
        {"\"\\u12G4\"", 0, "malformed JSON at offset 1: invalid escape in string"},
        {"\"\\u12", 0, "malformed JSON at offset 5: unexpected end of data"},
        {"\"a\xff\"", 0, "malformed JSON at offset 2: invalid UTF-8 in string"},
        {"\"\xc3\"", 0, "malformed JSON at offset 1: invalid UTF-8 in string"},
        {"18446744073709551616", 0, "malformed JSON at offset 0: number out of range"},
        {"-9223372036854775809", 0, "malformed JSON at offset 0: number out of range"},
        {"[99999999999999999999999]", 0, "malformed JSON at offset 1: number out of range"},
        {"[1e400]", 0, "malformed JSON at offset 1: number out of range"},
        {"-1e400", 0, "malformed JSON at offset 0: number out of range"},
        {"tru", 0, "malformed JSON at offset 3: unexpected end of data"},
        {"trux", 0, "malformed JSON at offset 3: unexpected character"},
        {"nul", 0, "malformed JSON at offset 3: unexpected end of data"},
        {"True", 0, "malformed JSON at offset 0: unexpected character"},
        {"null", 0, "unexpected JSON null value"},
    };
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(cases); i++) {
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].in);
        json_object *obj;

        ho_error_reset();
        obj = ho_json_parse(cases[i].in, len);
        if (obj) {
            g_autofree char *text = ho_json_to_string(obj);

            json_object_put(obj);
            g_error("case %zu '%s' parsed as %s", i, cases[i].in, text);
        }
        g_assert_nonnull(ho_error_last());
        g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_JSON);
        g_assert_cmpstr(ho_error_last_message(), ==, cases[i].message);
    }
    ho_error_reset();
    g_assert_null(ho_json_parse(NULL, 10));
    g_assert_cmpstr(ho_error_last_message(), ==,
                    "malformed JSON at offset 0: unexpected end of data");
    ho_error_reset();
}

#define FIELDS                                                                                 \
    "{\"s\":\"str\",\"b\":true,\"i\":-5,\"u\":18446744073709551615,"                           \
    "\"max\":9223372036854775807,\"d\":1.5,\"o\":{\"x\":1},\"a\":[1,2],\"n\":null,"           \
    "\"neg\":-1,\"di\":2,\"zero\":0}"

static void
test_getters(void)
{
    g_autoptr(json_object) obj = parse_ok(FIELDS);
    const char *s = NULL;
    bool b = false;
    int64_t i = 0;
    uint64_t u = 0;
    double d = 0;
    json_object *o = NULL;
    json_object *a = NULL;

    g_assert_cmpint(ho_json_get_string(obj, "s", &s), ==, 0);
    g_assert_cmpstr(s, ==, "str");
    g_assert_cmpint(ho_json_get_bool(obj, "b", &b), ==, 0);
    g_assert_true(b);
    g_assert_cmpint(ho_json_get_int64(obj, "i", &i), ==, 0);
    g_assert_cmpint(i, ==, -5);
    g_assert_cmpint(ho_json_get_int64(obj, "max", &i), ==, 0);
    g_assert_cmpint(i, ==, INT64_MAX);
    g_assert_cmpint(ho_json_get_uint64(obj, "u", &u), ==, 0);
    g_assert_cmpuint(u, ==, UINT64_MAX);
    g_assert_cmpint(ho_json_get_uint64(obj, "zero", &u), ==, 0);
    g_assert_cmpuint(u, ==, 0);
    g_assert_cmpint(ho_json_get_double(obj, "d", &d), ==, 0);
    g_assert_cmpfloat(d, ==, 1.5);
    /* An integer is a number too. */
    g_assert_cmpint(ho_json_get_double(obj, "di", &d), ==, 0);
    g_assert_cmpfloat(d, ==, 2.0);
    g_assert_cmpint(ho_json_get_object(obj, "o", &o), ==, 0);
    g_assert_true(json_object_is_type(o, json_type_object));
    g_assert_cmpint(ho_json_get_array(obj, "a", &a), ==, 0);
    g_assert_cmpuint(json_object_array_length(a), ==, 2);
    g_assert_null(ho_error_last());
}

static void
check_error(const char *message)
{
    g_assert_nonnull(ho_error_last());
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_JSON);
    g_assert_cmpstr(ho_error_last_message(), ==, message);
    ho_error_reset();
}

static void
test_getters_missing(void)
{
    g_autoptr(json_object) obj = parse_ok(FIELDS);
    const char *s = "untouched";
    bool b = true;
    int64_t i = 77;
    uint64_t u = 77;
    double d = 7.5;
    json_object *o = (json_object *)&i;
    json_object *a = (json_object *)&i;
    const char *missing = "JSON field 'nope' is missing";

    g_assert_cmpint(ho_json_get_string(obj, "nope", &s), ==, -1);
    check_error(missing);
    g_assert_cmpint(ho_json_get_bool(obj, "nope", &b), ==, -1);
    check_error(missing);
    g_assert_cmpint(ho_json_get_int64(obj, "nope", &i), ==, -1);
    check_error(missing);
    g_assert_cmpint(ho_json_get_uint64(obj, "nope", &u), ==, -1);
    check_error(missing);
    g_assert_cmpint(ho_json_get_double(obj, "nope", &d), ==, -1);
    check_error(missing);
    g_assert_cmpint(ho_json_get_object(obj, "nope", &o), ==, -1);
    check_error(missing);
    g_assert_cmpint(ho_json_get_array(obj, "nope", &a), ==, -1);
    check_error(missing);

    /* Outputs untouched on failure. */
    g_assert_cmpstr(s, ==, "untouched");
    g_assert_true(b);
    g_assert_cmpint(i, ==, 77);
    g_assert_cmpuint(u, ==, 77);
    g_assert_cmpfloat(d, ==, 7.5);
    g_assert_true(o == (json_object *)&i);
    g_assert_true(a == (json_object *)&i);
}

static void
test_getters_mistyped(void)
{
    g_autoptr(json_object) obj = parse_ok(FIELDS);
    const char *s = "untouched";
    bool b = true;
    int64_t i = 77;
    uint64_t u = 77;
    double d = 7.5;
    json_object *o = NULL;
    json_object *a = NULL;

    g_assert_cmpint(ho_json_get_string(obj, "b", &s), ==, -1);
    check_error("JSON field 'b' is not a string");
    g_assert_cmpint(ho_json_get_string(obj, "n", &s), ==, -1);
    check_error("JSON field 'n' is not a string");
    g_assert_cmpint(ho_json_get_string(obj, "i", &s), ==, -1);
    check_error("JSON field 'i' is not a string");
    g_assert_cmpint(ho_json_get_bool(obj, "s", &b), ==, -1);
    check_error("JSON field 's' is not a boolean");
    g_assert_cmpint(ho_json_get_bool(obj, "zero", &b), ==, -1);
    check_error("JSON field 'zero' is not a boolean");
    g_assert_cmpint(ho_json_get_int64(obj, "d", &i), ==, -1);
    check_error("JSON field 'd' is not an integer");
    g_assert_cmpint(ho_json_get_int64(obj, "s", &i), ==, -1);
    check_error("JSON field 's' is not an integer");
    g_assert_cmpint(ho_json_get_int64(obj, "u", &i), ==, -1);
    check_error("JSON field 'u' is out of range");
    g_assert_cmpint(ho_json_get_uint64(obj, "d", &u), ==, -1);
    check_error("JSON field 'd' is not an integer");
    g_assert_cmpint(ho_json_get_uint64(obj, "neg", &u), ==, -1);
    check_error("JSON field 'neg' is negative");
    g_assert_cmpint(ho_json_get_uint64(obj, "b", &u), ==, -1);
    check_error("JSON field 'b' is not an integer");
    g_assert_cmpint(ho_json_get_double(obj, "s", &d), ==, -1);
    check_error("JSON field 's' is not a number");
    g_assert_cmpint(ho_json_get_double(obj, "n", &d), ==, -1);
    check_error("JSON field 'n' is not a number");
    g_assert_cmpint(ho_json_get_object(obj, "a", &o), ==, -1);
    check_error("JSON field 'a' is not an object");
    g_assert_cmpint(ho_json_get_array(obj, "o", &a), ==, -1);
    check_error("JSON field 'o' is not an array");

    g_assert_cmpstr(s, ==, "untouched");
    g_assert_true(b);
    g_assert_cmpint(i, ==, 77);
    g_assert_cmpuint(u, ==, 77);
    g_assert_cmpfloat(d, ==, 7.5);
    g_assert_null(o);
    g_assert_null(a);
}

static void
test_getters_not_object(void)
{
    g_autoptr(json_object) arr = parse_ok("[1]");
    const char *s = NULL;
    int64_t i = 0;

    g_assert_cmpint(ho_json_get_string(arr, "x", &s), ==, -1);
    check_error("cannot read JSON field 'x': the value is not an object");
    g_assert_cmpint(ho_json_get_int64(NULL, "y", &i), ==, -1);
    check_error("cannot read JSON field 'y': the value is not an object");
    g_assert_cmpint(ho_json_opt_string(arr, "z", &s), ==, -1);
    check_error("cannot read JSON field 'z': the value is not an object");
}

static void
test_optional(void)
{
    g_autoptr(json_object) obj = parse_ok(FIELDS);
    const char *s = "untouched";
    bool b = false;
    int64_t i = 77;
    uint64_t u = 77;
    json_object *o = NULL;
    json_object *a = NULL;

    /* Absent: 0, output untouched, no error. */
    g_assert_cmpint(ho_json_opt_string(obj, "nope", &s), ==, 0);
    g_assert_cmpint(ho_json_opt_bool(obj, "nope", &b), ==, 0);
    g_assert_cmpint(ho_json_opt_int64(obj, "nope", &i), ==, 0);
    g_assert_cmpint(ho_json_opt_uint64(obj, "nope", &u), ==, 0);
    g_assert_cmpint(ho_json_opt_object(obj, "nope", &o), ==, 0);
    g_assert_cmpint(ho_json_opt_array(obj, "nope", &a), ==, 0);
    g_assert_null(ho_error_last());
    g_assert_cmpstr(s, ==, "untouched");
    g_assert_false(b);
    g_assert_cmpint(i, ==, 77);
    g_assert_cmpuint(u, ==, 77);
    g_assert_null(o);
    g_assert_null(a);

    /* Present: 1 and the value. */
    g_assert_cmpint(ho_json_opt_string(obj, "s", &s), ==, 1);
    g_assert_cmpstr(s, ==, "str");
    g_assert_cmpint(ho_json_opt_bool(obj, "b", &b), ==, 1);
    g_assert_true(b);
    g_assert_cmpint(ho_json_opt_int64(obj, "i", &i), ==, 1);
    g_assert_cmpint(i, ==, -5);
    g_assert_cmpint(ho_json_opt_uint64(obj, "u", &u), ==, 1);
    g_assert_cmpuint(u, ==, UINT64_MAX);
    g_assert_cmpint(ho_json_opt_object(obj, "o", &o), ==, 1);
    g_assert_nonnull(o);
    g_assert_cmpint(ho_json_opt_array(obj, "a", &a), ==, 1);
    g_assert_nonnull(a);
    g_assert_null(ho_error_last());

    /* Present with another type (null included): -1 and an error. */
    g_assert_cmpint(ho_json_opt_string(obj, "n", &s), ==, -1);
    check_error("JSON field 'n' is not a string");
    g_assert_cmpint(ho_json_opt_bool(obj, "s", &b), ==, -1);
    check_error("JSON field 's' is not a boolean");
    g_assert_cmpint(ho_json_opt_int64(obj, "d", &i), ==, -1);
    check_error("JSON field 'd' is not an integer");
    g_assert_cmpint(ho_json_opt_int64(obj, "u", &i), ==, -1);
    check_error("JSON field 'u' is out of range");
    g_assert_cmpint(ho_json_opt_uint64(obj, "neg", &u), ==, -1);
    check_error("JSON field 'neg' is negative");
    g_assert_cmpint(ho_json_opt_object(obj, "s", &o), ==, -1);
    check_error("JSON field 's' is not an object");
    g_assert_cmpint(ho_json_opt_array(obj, "s", &a), ==, -1);
    check_error("JSON field 's' is not an array");
    g_assert_cmpstr(s, ==, "str");
    g_assert_cmpint(i, ==, -5);
    g_assert_cmpuint(u, ==, UINT64_MAX);
}

static bool
equal_text(const char *a, const char *b)
{
    g_autoptr(json_object) ja = parse_ok(a);
    g_autoptr(json_object) jb = parse_ok(b);

    /* Equality must be symmetric. */
    g_assert_cmpint(ho_json_equal(ja, jb), ==, ho_json_equal(jb, ja));
    return ho_json_equal(ja, jb);
}

static void
test_equal(void)
{
    g_autoptr(json_object) obj = parse_ok("{}");

    g_assert_true(equal_text("{\"a\":1,\"b\":[1,2]}", "{\"b\":[1,2],\"a\":1}"));
    g_assert_true(equal_text("{\"x\":{\"p\":true,\"q\":\"s\"},\"y\":null}",
                             "{\"y\":null,\"x\":{\"q\":\"s\",\"p\":true}}"));
    g_assert_true(equal_text("[{\"a\":1,\"b\":2}]", "[{\"b\":2,\"a\":1}]"));
    g_assert_true(equal_text("1", "1"));
    g_assert_true(equal_text("\"a\"", "\"a\""));
    g_assert_true(equal_text("18446744073709551615", "18446744073709551615"));

    g_assert_false(equal_text("1", "1.0"));
    g_assert_false(equal_text("{\"a\":1}", "{\"a\":1.0}"));
    g_assert_false(equal_text("[1,2]", "[2,1]"));
    g_assert_false(equal_text("{\"a\":1}", "{\"a\":1,\"b\":2}"));
    g_assert_false(equal_text("{\"a\":1}", "{\"b\":1}"));
    g_assert_false(equal_text("{\"a\":null}", "{}"));
    g_assert_false(equal_text("{\"a\":{\"b\":1}}", "{\"a\":{\"b\":2}}"));
    g_assert_false(equal_text("\"1\"", "1"));
    g_assert_false(equal_text("true", "1"));
    g_assert_false(equal_text("[]", "{}"));
    g_assert_false(equal_text("-1", "18446744073709551615"));

    g_assert_true(ho_json_equal(NULL, NULL));
    g_assert_false(ho_json_equal(obj, NULL));
    g_assert_false(ho_json_equal(NULL, obj));
}

static void
test_builders(void)
{
    g_autoptr(json_object) obj = json_object_new_object();
    g_autoptr(json_object) arr = json_object_new_array();
    g_autoptr(json_object) back = NULL;
    g_autofree char *text = NULL;
    g_autofree char *null_text = ho_json_to_string(NULL);

    g_assert_true(ho_json_add_string(obj, "s", "a/b\"c") == obj);
    g_assert_true(ho_json_add_bool(obj, "b", true) == obj);
    g_assert_true(ho_json_add_int64(obj, "i", INT64_MIN) == obj);
    g_assert_true(ho_json_add(obj, "o", json_object_new_array()) == obj);
    ho_json_add_string(obj, "n", NULL);
    /* Adding to something that is not an object frees the value. */
    g_assert_true(ho_json_add(arr, "lost", json_object_new_string("x")) == arr);

    text = ho_json_to_string(obj);
    g_assert_cmpstr(text, ==,
                    "{\"s\":\"a/b\\\"c\",\"b\":true,\"i\":-9223372036854775808,\"o\":[],"
                    "\"n\":null}");
    g_assert_cmpstr(null_text, ==, "null");

    /* What we write, we read back the same. */
    back = ho_json_parse(text, strlen(text));
    g_assert_nonnull(back);
    g_assert_true(ho_json_equal(obj, back));
}

static void
test_array_to_strv(void)
{
    g_autoptr(json_object) arr = parse_ok("[\"a\",\"b c\",\"\"]");
    g_autoptr(json_object) empty = parse_ok("[]");
    g_autoptr(json_object) mixed = parse_ok("[\"a\",1]");
    g_autoptr(json_object) obj = parse_ok("{}");
    g_auto(GStrv) strv = ho_json_array_to_strv(arr, "features");
    g_auto(GStrv) none = ho_json_array_to_strv(empty, "features");

    g_assert_nonnull(strv);
    g_assert_cmpuint(g_strv_length(strv), ==, 3);
    g_assert_cmpstr(strv[0], ==, "a");
    g_assert_cmpstr(strv[1], ==, "b c");
    g_assert_cmpstr(strv[2], ==, "");
    g_assert_nonnull(none);
    g_assert_cmpuint(g_strv_length(none), ==, 0);

    g_assert_null(ho_json_array_to_strv(mixed, "features"));
    check_error("element 1 of 'features' is not a string");
    g_assert_null(ho_json_array_to_strv(obj, "features"));
    check_error("'features' is not a JSON array");
    g_assert_null(ho_json_array_to_strv(NULL, "caps"));
    check_error("'caps' is not a JSON array");
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    g_test_add_func("/json/parse/valid", test_parse_valid);
    g_test_add_func("/json/parse/unicode", test_parse_unicode);
    g_test_add_func("/json/parse/length", test_parse_length);
    g_test_add_func("/json/parse/depth", test_parse_depth);
    g_test_add_func("/json/parse/malformed", test_parse_malformed);
    g_test_add_func("/json/get/ok", test_getters);
    g_test_add_func("/json/get/missing", test_getters_missing);
    g_test_add_func("/json/get/mistyped", test_getters_mistyped);
    g_test_add_func("/json/get/not-object", test_getters_not_object);
    g_test_add_func("/json/opt", test_optional);
    g_test_add_func("/json/equal", test_equal);
    g_test_add_func("/json/builders", test_builders);
    g_test_add_func("/json/array-to-strv", test_array_to_strv);

    return g_test_run();
}
