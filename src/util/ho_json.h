/*
 * JSON helpers over json-c. Getters report which field is missing or has
 * the wrong type, naming the field, and return -1; on failure the output
 * parameter is untouched.
 */
#pragma once

#include <glib.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

G_DEFINE_AUTOPTR_CLEANUP_FUNC(json_object, json_object_put)

/* Parse exactly one JSON value from buf (len bytes, need not be NUL-terminated);
 * trailing non-space text is an error. NULL and a reported HO_ERR_JSON error
 * on malformed input. */
json_object *ho_json_parse(const char *buf, size_t len);
/* Compact text of a value (g_free it); "null" for NULL. */
char *ho_json_to_string(json_object *obj);
/* Whether two values are equal (objects compare regardless of key order). */
bool ho_json_equal(json_object *a, json_object *b);

/* Required members: -1 and an error naming key when absent or of another type. */
int ho_json_get_object(json_object *obj, const char *key, json_object **out);
int ho_json_get_array(json_object *obj, const char *key, json_object **out);
int ho_json_get_string(json_object *obj, const char *key, const char **out);
int ho_json_get_bool(json_object *obj, const char *key, bool *out);
int ho_json_get_int64(json_object *obj, const char *key, int64_t *out);
/* Rejects negative numbers. */
int ho_json_get_uint64(json_object *obj, const char *key, uint64_t *out);
int ho_json_get_double(json_object *obj, const char *key, double *out);

/* Optional members: 0 when absent (out untouched), 1 when present and of the
 * right type (out set), -1 and an error when present with another type. */
int ho_json_opt_object(json_object *obj, const char *key, json_object **out);
int ho_json_opt_array(json_object *obj, const char *key, json_object **out);
int ho_json_opt_string(json_object *obj, const char *key, const char **out);
int ho_json_opt_bool(json_object *obj, const char *key, bool *out);
int ho_json_opt_int64(json_object *obj, const char *key, int64_t *out);
int ho_json_opt_uint64(json_object *obj, const char *key, uint64_t *out);

/* Builders for the common cases; they return obj for chaining and never fail. */
json_object *ho_json_add_string(json_object *obj, const char *key, const char *val);
json_object *ho_json_add_bool(json_object *obj, const char *key, bool val);
json_object *ho_json_add_int64(json_object *obj, const char *key, int64_t val);
/* Adds val (consumed) under key. */
json_object *ho_json_add(json_object *obj, const char *key, json_object *val);

/* A NULL-terminated string vector from an array of strings; NULL and an
 * error naming what when an element is not a string. */
char **ho_json_array_to_strv(json_object *array, const char *what);
