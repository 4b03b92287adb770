/*
 * URIs: handover's own (handover:///system, handover+unix:///system?socket=P,
 * handover+tcp://HOST:PORT/system) and QEMU-style migration addresses
 * (tcp:HOST:PORT, unix:PATH), with IPv6 literals in brackets.
 */
#pragma once

#include <glib.h>

typedef struct {
    char *scheme;    /* "handover+tcp" */
    char *user;      /* NULL when absent */
    char *host;      /* NULL when absent; IPv6 without brackets */
    int port;        /* 0 when absent */
    char *path;      /* "" when absent */
    char *query;     /* raw query, NULL when absent */
    char *fragment;  /* NULL when absent */
    GHashTable *params; /* decoded query parameters, name -> value (last wins) */
} HoUri;

/* Parse an RFC 3986 URI; NULL and an HO_ERR_URI error naming the text. */
HoUri *ho_uri_parse(const char *text);
/* Format back to text (g_free it). */
char *ho_uri_format(const HoUri *uri);
/* A decoded query parameter, or NULL. */
const char *ho_uri_get_param(const HoUri *uri, const char *name);
/* Free; accepts NULL. */
void ho_uri_free(HoUri *uri);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(HoUri, ho_uri_free)

/* Split "HOST:PORT" or "[V6]:PORT" (port 1-65535); -1 and an error otherwise.
 * *host is g_malloc'ed, brackets removed. Outputs untouched on failure. */
int ho_uri_parse_hostport(const char *text, char **host, int *port);
/* "HOST:PORT", bracketing an IPv6 host (g_free it). */
char *ho_uri_format_hostport(const char *host, int port);
