/* Tests for src/util/ho_uri: handover and QEMU-style URIs, host:port. */
#include <string.h>

#include <glib.h>

#include "ho_error.h"
#include "ho_uri.h"

typedef struct {
    const char *text;
    const char *scheme;
    const char *user;
    const char *host;
    int port;
    const char *path;
    const char *query;
    const char *fragment;
    const char *formatted; /* NULL: same as text */
} UriCase;

static const UriCase uri_cases[] = {
    {.text = "handover:///system", .scheme = "handover", .path = "/system"},
    {.text = "handover+unix:///system?socket=/run/x.sock", .scheme = "handover+unix",
     .path = "/system", .query = "socket=/run/x.sock"},
    {.text = "handover+tcp://[::1]:16509/system", .scheme = "handover+tcp", .host = "::1",
     .port = 16509, .path = "/system"},
    {.text = "handover+tcp://example.org/system", .scheme = "handover+tcp",
     .host = "example.org", .path = "/system"},
    {.text = "handover+tcp://root@10.0.0.2:22/session#frag", .scheme = "handover+tcp",
     .user = "root", .host = "10.0.0.2", .port = 22, .path = "/session", .fragment = "frag"},
    {.text = "HANDOVER:///system", .scheme = "handover", .path = "/system",
     .formatted = "handover:///system"},
    {.text = "handover:///a%20b", .scheme = "handover", .path = "/a b"},
    {.text = "handover+tcp://[fe80::1%25eth0]:1/x", .scheme = "handover+tcp",
     .host = "fe80::1%eth0", .port = 1, .path = "/x"},
    {.text = "handover://", .scheme = "handover", .path = ""},
    {.text = "tcp:127.0.0.1:4444", .scheme = "tcp", .path = "127.0.0.1:4444"},
    {.text = "unix:/run/qemu/mig.sock", .scheme = "unix", .path = "/run/qemu/mig.sock"},
    {.text = "handover+tcp://h/system?b=x%20y&a=1", .scheme = "handover+tcp", .host = "h",
     .path = "/system", .query = "b=x%20y&a=1"},
};

static void
check_uri(const HoUri *uri, const UriCase *c)
{
    g_assert_cmpstr(uri->scheme, ==, c->scheme);
    g_assert_cmpstr(uri->user, ==, c->user);
    g_assert_cmpstr(uri->host, ==, c->host);
    g_assert_cmpint(uri->port, ==, c->port);
    g_assert_cmpstr(uri->path, ==, c->path);
    g_assert_cmpstr(uri->query, ==, c->query);
    g_assert_cmpstr(uri->fragment, ==, c->fragment);
    g_assert_nonnull(uri->params);
}

static void
test_parse_format(void)
{
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(uri_cases); i++) {
        const UriCase *c = &uri_cases[i];
        g_autoptr(HoUri) uri = ho_uri_parse(c->text);
        g_autoptr(HoUri) again = NULL;
        g_autofree char *text = NULL;

        if (!uri)
            g_error("cannot parse '%s': %s", c->text, ho_error_last_message());
        check_uri(uri, c);
        text = ho_uri_format(uri);
        g_assert_cmpstr(text, ==, c->formatted ? c->formatted : c->text);
        /* What we format parses back to the same fields. */
        again = ho_uri_parse(text);
        g_assert_nonnull(again);
        check_uri(again, c);
    }
}

static void
test_params(void)
{
    g_autoptr(HoUri) uri =
        ho_uri_parse("handover+tcp://h/system?a=1&b=x%20y&a=2&flag&c=&&d=%2Fp%3Dq+r&e=a=b");
    g_autoptr(HoUri) none = ho_uri_parse("handover:///system");
    g_autoptr(HoUri) sock = ho_uri_parse("handover+unix:///system?socket=/run/x.sock");

    g_assert_nonnull(uri);
    g_assert_cmpstr(ho_uri_get_param(uri, "a"), ==, "2"); /* the last one wins */
    g_assert_cmpstr(ho_uri_get_param(uri, "b"), ==, "x y");
    g_assert_cmpstr(ho_uri_get_param(uri, "flag"), ==, "");
    g_assert_cmpstr(ho_uri_get_param(uri, "c"), ==, "");
    g_assert_cmpstr(ho_uri_get_param(uri, "d"), ==, "/p=q+r"); /* '+' is not a space */
    g_assert_cmpstr(ho_uri_get_param(uri, "e"), ==, "a=b");
    g_assert_null(ho_uri_get_param(uri, "missing"));
    g_assert_cmpuint(g_hash_table_size(uri->params), ==, 6);

    g_assert_nonnull(none);
    g_assert_cmpuint(g_hash_table_size(none->params), ==, 0);
    g_assert_null(ho_uri_get_param(none, "socket"));

    g_assert_cmpstr(ho_uri_get_param(sock, "socket"), ==, "/run/x.sock");
    g_assert_null(ho_uri_get_param(NULL, "socket"));
    g_assert_null(ho_uri_get_param(sock, NULL));
}

static void
test_parse_bad(void)
{
    static const struct {
        const char *text;
        const char *message; /* exact, or a prefix when it ends in ": " */
    } cases[] = {
        {"", "invalid URI '': it is empty"},
        {"handover:///a b", "invalid URI 'handover:///a b': it contains a space or a control "
                            "character"},
        {"handover:///a\tb", "invalid URI 'handover:///a\tb': it contains a space or a control "
                             "character"},
        {"handover+tcp://host:99999/system", "invalid URI 'handover+tcp://host:99999/system': "},
        {"handover+tcp://host:x/system", "invalid URI 'handover+tcp://host:x/system': "},
        {"handover+tcp://[::1/system", "invalid URI 'handover+tcp://[::1/system': "},
        {"/system", "invalid URI '/system': "},
        {"system", "invalid URI 'system': "},
        {"handover:///%zz", "invalid URI 'handover:///%zz': "},
        {"handover:///x?a=%zz", "invalid URI 'handover:///x?a=%zz': "},
        {"handover:///x?a=%00", "invalid URI 'handover:///x?a=%00': "},
        {"handover:///x?=v", "invalid URI 'handover:///x?=v': malformed query parameter '=v'"},
    };
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(cases); i++) {
        const char *msg;

        ho_error_reset();
        if (ho_uri_parse(cases[i].text))
            g_error("'%s' was accepted", cases[i].text);
        g_assert_nonnull(ho_error_last());
        g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_URI);
        msg = ho_error_last_message();
        if (g_str_has_suffix(cases[i].message, ": ")) {
            g_assert_true(g_str_has_prefix(msg, cases[i].message));
            g_assert_cmpuint(strlen(msg), >, strlen(cases[i].message)); /* a reason follows */
        } else {
            g_assert_cmpstr(msg, ==, cases[i].message);
        }
    }
    ho_error_reset();
    g_assert_null(ho_uri_parse(NULL));
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_URI);
    ho_error_reset();
    ho_uri_free(NULL);
}

static void
test_format_built(void)
{
    HoUri uri = {
        .scheme = (char *)"handover+tcp",
        .host = (char *)"::1",
        .port = 5,
        .path = (char *)"system",
        .query = (char *)"socket=%2Frun",
    };
    HoUri local = {.scheme = (char *)"handover", .path = (char *)"/system"};
    HoUri qemu = {.scheme = (char *)"unix", .path = (char *)"/tmp/a b"};
    g_autofree char *text = ho_uri_format(&uri);
    g_autofree char *local_text = ho_uri_format(&local);
    g_autofree char *qemu_text = ho_uri_format(&qemu);

    /* A relative path gets its '/', the query stays as written. */
    g_assert_cmpstr(text, ==, "handover+tcp://[::1]:5/system?socket=%2Frun");
    g_assert_cmpstr(local_text, ==, "handover:///system");
    g_assert_cmpstr(qemu_text, ==, "unix:/tmp/a%20b");
}

/* QEMU-style migration address: the part after "tcp:". */
static void
test_qemu_tcp(void)
{
    g_autoptr(HoUri) uri = ho_uri_parse("tcp:127.0.0.1:4444");
    g_autofree char *host = NULL;
    int port = 0;

    g_assert_nonnull(uri);
    g_assert_cmpstr(uri->scheme, ==, "tcp");
    g_assert_cmpint(ho_uri_parse_hostport(uri->path, &host, &port), ==, 0);
    g_assert_cmpstr(host, ==, "127.0.0.1");
    g_assert_cmpint(port, ==, 4444);
}

static void
test_hostport(void)
{
    static const struct {
        const char *text;
        const char *host;
        int port;
    } cases[] = {
        {"host:1", "host", 1},
        {"127.0.0.1:4444", "127.0.0.1", 4444},
        {"[::1]:16509", "::1", 16509},
        {"[2001:db8::2]:65535", "2001:db8::2", 65535},
        {"[fe80::1%eth0]:5", "fe80::1%eth0", 5},
        {"my-host.example_1.org:0080", "my-host.example_1.org", 80},
    };
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *host = NULL;
        g_autofree char *back = NULL;
        g_autofree char *host2 = NULL;
        int port = 0;
        int port2 = 0;

        if (ho_uri_parse_hostport(cases[i].text, &host, &port) < 0)
            g_error("'%s': %s", cases[i].text, ho_error_last_message());
        g_assert_cmpstr(host, ==, cases[i].host);
        g_assert_cmpint(port, ==, cases[i].port);
        back = ho_uri_format_hostport(host, port);
        g_assert_cmpint(ho_uri_parse_hostport(back, &host2, &port2), ==, 0);
        g_assert_cmpstr(host2, ==, host);
        g_assert_cmpint(port2, ==, port);
    }
}

static void
test_hostport_bad(void)
{
    static const struct {
        const char *text;
        const char *message;
    } cases[] = {
        {"", "invalid address '': it is empty"},
        {"host", "invalid address 'host': missing port"},
        {"host:", "invalid address 'host:': missing port"},
        {":80", "invalid address ':80': empty host"},
        {"host:0", "invalid address 'host:0': port '0' is not a number from 1 to 65535"},
        {"host:65536", "invalid address 'host:65536': port '65536' is not a number from 1 to "
                       "65535"},
        {"host:99999", "invalid address 'host:99999': port '99999' is not a number from 1 to "
                       "65535"},
        {"host:123456", "invalid address 'host:123456': port '123456' is not a number from 1 "
                        "to 65535"},
        {"host:-1", "invalid address 'host:-1': port '-1' is not a number from 1 to 65535"},
        {"host:+1", "invalid address 'host:+1': port '+1' is not a number from 1 to 65535"},
        {"host:12a", "invalid address 'host:12a': port '12a' is not a number from 1 to 65535"},
        {"host: 1", "invalid address 'host: 1': port ' 1' is not a number from 1 to 65535"},
        {"::1:80", "invalid address '::1:80': an IPv6 address must be written in brackets"},
        {"fe80::1:80", "invalid address 'fe80::1:80': an IPv6 address must be written in "
                       "brackets"},
        {"[::1]", "invalid address '[::1]': missing port"},
        {"[::1]:", "invalid address '[::1]:': missing port"},
        {"[::1]80", "invalid address '[::1]80': expected ':' after ']'"},
        {"[::1:80", "invalid address '[::1:80': missing ']' after the IPv6 address"},
        {"[]:80", "invalid address '[]:80': empty host"},
        {"[host]:80", "invalid address '[host]:80': 'host' is not an IPv6 address"},
        {"[1.2.3.4]:80", "invalid address '[1.2.3.4]:80': '1.2.3.4' is not an IPv6 address"},
        {"ho st:80", "invalid address 'ho st:80': invalid host 'ho st'"},
        {"a/b:80", "invalid address 'a/b:80': invalid host 'a/b'"},
    };
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(cases); i++) {
        char *host = (char *)"untouched";
        int port = 42;

        ho_error_reset();
        if (ho_uri_parse_hostport(cases[i].text, &host, &port) == 0)
            g_error("'%s' was accepted as '%s' port %d", cases[i].text, host, port);
        g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_URI);
        g_assert_cmpstr(ho_error_last_message(), ==, cases[i].message);
        g_assert_cmpstr(host, ==, "untouched");
        g_assert_cmpint(port, ==, 42);
    }
    ho_error_reset();
}

static void
test_format_hostport(void)
{
    g_autofree char *v6 = ho_uri_format_hostport("::1", 16509);
    g_autofree char *v4 = ho_uri_format_hostport("127.0.0.1", 4444);
    g_autofree char *name = ho_uri_format_hostport("host", 1);

    g_assert_cmpstr(v6, ==, "[::1]:16509");
    g_assert_cmpstr(v4, ==, "127.0.0.1:4444");
    g_assert_cmpstr(name, ==, "host:1");
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    g_test_add_func("/uri/parse-format", test_parse_format);
    g_test_add_func("/uri/params", test_params);
    g_test_add_func("/uri/parse-bad", test_parse_bad);
    g_test_add_func("/uri/format-built", test_format_built);
    g_test_add_func("/uri/qemu-tcp", test_qemu_tcp);
    g_test_add_func("/uri/hostport", test_hostport);
    g_test_add_func("/uri/hostport-bad", test_hostport_bad);
    g_test_add_func("/uri/format-hostport", test_format_hostport);

    return g_test_run();
}
