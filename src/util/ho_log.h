/*
 * Logging: levels, monotonic microsecond timestamps, per-module filters,
 * to stderr or a file.
 *
 * Each source file defines its module before including this header:
 *     #define HO_LOG_MODULE "qemu.monitor"
 * Filters match a module name or a prefix followed by '.':
 *     "qemu:debug,util.json:warn"  (a later, longer match wins)
 * Environment, read by ho_log_init(): HANDOVER_LOG_LEVEL (debug, info,
 * warn, error), HANDOVER_LOG_FILTERS, HANDOVER_LOG_OUTPUT (a file path).
 * Default: warn to stderr.
 */
#pragma once

#include <glib.h>
#include <stdbool.h>

typedef enum {
    HO_LOG_DEBUG = 0,
    HO_LOG_INFO,
    HO_LOG_WARN,
    HO_LOG_ERROR,
    HO_LOG_LAST
} HoLogLevel;

/* Read the environment; safe to call more than once. */
void ho_log_init(void);
/* Name of a level ("debug", ...). */
const char *ho_log_level_name(HoLogLevel level);
/* Parse a level name; -1 and a reported error when unknown. */
int ho_log_level_parse(const char *name, HoLogLevel *level);
/* Set the default level for modules no filter matches. */
void ho_log_set_level(HoLogLevel level);
/* Replace the filters; -1 (nothing changed) on a malformed spec. */
int ho_log_set_filters(const char *spec);
/* Log to this file (appending), or to stderr when path is NULL; -1 on failure. */
int ho_log_set_output(const char *path);
/* Whether a message at this level from this module would be written. */
bool ho_log_enabled(HoLogLevel level, const char *module);
/* Write one line: "<µs> <level> <module> <func>:<line>: <message>". */
void ho_log_message(HoLogLevel level, const char *module, const char *func, int line,
                    const char *fmt, ...) G_GNUC_PRINTF(5, 6);

/* Monotonic clock in microseconds; the same clock as the flight recorder. */
gint64 ho_time_now_us(void);

#ifndef HO_LOG_MODULE
# define HO_LOG_MODULE "handover"
#endif

#define HO_DEBUG(...) ho_log_message(HO_LOG_DEBUG, HO_LOG_MODULE, __func__, __LINE__, __VA_ARGS__)
#define HO_INFO(...) ho_log_message(HO_LOG_INFO, HO_LOG_MODULE, __func__, __LINE__, __VA_ARGS__)
#define HO_WARN(...) ho_log_message(HO_LOG_WARN, HO_LOG_MODULE, __func__, __LINE__, __VA_ARGS__)
#define HO_ERROR(...) ho_log_message(HO_LOG_ERROR, HO_LOG_MODULE, __func__, __LINE__, __VA_ARGS__)
