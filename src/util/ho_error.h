/*
 * Error reporting.
 *
 * The function that finds an error reports it, once, into the calling
 * thread's last-error slot, and returns -1 / NULL / false. Callers pass the
 * failure up without reporting it again. Messages are translatable and
 * whole, with positional arguments: the format of
 * ho_error_report(HO_ERR_INVALID_ARG, ...) is "unknown disk '%1$s'" marked
 * for translation.
 *
 * An asynchronous completion (a QMP reply arriving later on the loop) does
 * not use the per-thread slot: it hands its own HoError to the callback.
 */
#pragma once

#include <glib.h>
#include <stdbool.h>

typedef enum {
    HO_ERR_NONE = 0,
    HO_ERR_INTERNAL,          /* a bug: an invariant of our own was broken */
    HO_ERR_INVALID_ARG,       /* bad input from a caller or user */
    HO_ERR_SYSTEM,            /* a system call failed; message carries strerror */
    HO_ERR_JSON,              /* malformed JSON, or a field missing or mistyped */
    HO_ERR_XML,               /* malformed or unsupported domain XML */
    HO_ERR_URI,               /* malformed URI */
    HO_ERR_QMP,               /* QEMU answered a command with an error */
    HO_ERR_MONITOR,           /* the QMP connection broke or misbehaved */
    HO_ERR_TIMEOUT,           /* a bounded wait ran out */
    HO_ERR_NO_SUPPORT,        /* this QEMU or host cannot do what was asked */
    HO_ERR_OPERATION_INVALID, /* not possible in the current state */
    HO_ERR_LIMIT,             /* a size or count limit was hit */
    HO_ERR_RPC,               /* the daemon protocol was broken */
    HO_ERR_NO_DOMAIN,         /* no such domain */
    HO_ERR_LAST
} HoErrorCode;

typedef struct {
    HoErrorCode code;
    char *qmp_class; /* QMP error class ("GenericError", ...) for HO_ERR_QMP, else NULL */
    char *message;   /* translated, whole, no trailing full stop */
} HoError;

/* Stable lower-case name of an error code ("qmp", "timeout", ...). */
const char *ho_error_code_name(HoErrorCode code);

/* A new error object with a printf-style message. */
HoError *ho_error_new(HoErrorCode code, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
/* A new HO_ERR_QMP error with QEMU's class and description. */
HoError *ho_error_new_qmp(const char *qmp_class, const char *desc);
/* A deep copy; NULL for NULL. */
HoError *ho_error_copy(const HoError *err);
/* Free an error; accepts NULL. */
void ho_error_free(HoError *err);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(HoError, ho_error_free)

/* Report into this thread's slot, replacing what was there; logs at debug. */
void ho_error_report(HoErrorCode code, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
/* Same, with ": <strerror(errnum)>" appended to the message. */
void ho_error_report_errno(HoErrorCode code, int errnum, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);
/* Report a GError from a GLib call site (converted at once); does not free it. */
void ho_error_report_gerror(HoErrorCode code, const GError *gerr);
/* Put an error object into this thread's slot; consumes err. */
void ho_error_set(HoError *err);

/* This thread's last error, or NULL. Owned by the slot. */
const HoError *ho_error_last(void);
/* Message of the last error, or a generic text when none was reported. */
const char *ho_error_last_message(void);
/* Take the last error out of the slot (caller owns it), leaving it empty. */
HoError *ho_error_steal(void);
/* Empty this thread's slot. */
void ho_error_reset(void);

/*
 * Rollback keeps the first error: save it before cleanup that may report
 * errors of its own, then restore it.
 */
HoError *ho_error_save(void);
/* Put a saved error back, replacing whatever cleanup reported; consumes *saved. */
void ho_error_restore(HoError **saved);
