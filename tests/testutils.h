/* Helpers shared by the tests. */
#pragma once

#include <glib.h>
#include <stdbool.h>

/* The source tree (HANDOVER_SRCDIR, else the one this was built from). */
const char *test_srcdir(void);
/* srcdir/tests/<rel> (g_free it). */
char *test_data_path(const char *rel);
/* HANDOVER_TEST_REGENERATE=1: tests rewrite their expected files for review. */
bool test_regenerate(void);
/* Compare text with the file at path; on a difference print a unified diff
 * to stderr and return -1. With regeneration on, write the file instead. */
int test_compare_to_file(const char *actual, const char *path);
/* A new temporary directory, removed (recursively) at exit even when a test
 * fails; g_free the returned path. */
char *test_make_tmpdir(const char *tag);
/* Run ctx until *flag becomes true or timeout_ms passes; false on timeout. */
bool test_iterate_until(GMainContext *ctx, const bool *flag, guint timeout_ms);
