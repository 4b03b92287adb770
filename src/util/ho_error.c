/*
 * Error reporting: one last-error slot per thread.
 *
 * The slot is a GPrivate whose destroy notify frees the error when the
 * thread exits, so a worker thread that reports and ends leaks nothing.
 * Reporting logs the message at debug level; the log code never reports
 * errors itself, so the two cannot recurse into each other.
 */
#define HO_LOG_MODULE "util.error"

#include "ho_error.h"

#include <errno.h>

#include "ho_i18n.h"
#include "ho_log.h"

static void
error_slot_free(gpointer data)
{
    ho_error_free(data);
}

static GPrivate last_error = G_PRIVATE_INIT(error_slot_free);

static const char *const error_code_names[] = {
    [HO_ERR_NONE] = "none",
    [HO_ERR_INTERNAL] = "internal",
    [HO_ERR_INVALID_ARG] = "invalid-arg",
    [HO_ERR_SYSTEM] = "system",
    [HO_ERR_JSON] = "json",
    [HO_ERR_XML] = "xml",
    [HO_ERR_URI] = "uri",
    [HO_ERR_QMP] = "qmp",
    [HO_ERR_MONITOR] = "monitor",
    [HO_ERR_TIMEOUT] = "timeout",
    [HO_ERR_NO_SUPPORT] = "no-support",
    [HO_ERR_OPERATION_INVALID] = "operation-invalid",
    [HO_ERR_LIMIT] = "limit",
    [HO_ERR_RPC] = "rpc",
    [HO_ERR_NO_DOMAIN] = "no-domain",
};
/* A new code without a name fails the build here. */
G_STATIC_ASSERT(G_N_ELEMENTS(error_code_names) == HO_ERR_LAST);

const char *
ho_error_code_name(HoErrorCode code)
{
    if ((int)code < 0 || code >= HO_ERR_LAST || !error_code_names[code])
        return "unknown";
    return error_code_names[code];
}

static HoError *
error_new_take(HoErrorCode code, char *message)
{
    HoError *err = g_new0(HoError, 1);

    err->code = code;
    err->message = message;
    return err;
}

HoError *
ho_error_new(HoErrorCode code, const char *fmt, ...)
{
    va_list ap;
    char *message;

    va_start(ap, fmt);
    message = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    return error_new_take(code, message);
}

HoError *
ho_error_new_qmp(const char *qmp_class, const char *desc)
{
    HoError *err;

    if (desc)
        err = error_new_take(HO_ERR_QMP, g_strdup(desc));
    else
        err = error_new_take(HO_ERR_QMP,
                             g_strdup(_("QEMU reported an error without a description")));
    err->qmp_class = g_strdup(qmp_class);
    return err;
}

HoError *
ho_error_copy(const HoError *err)
{
    HoError *copy;

    if (!err)
        return NULL;
    copy = error_new_take(err->code, g_strdup(err->message));
    copy->qmp_class = g_strdup(err->qmp_class);
    return copy;
}

void
ho_error_free(HoError *err)
{
    if (!err)
        return;
    g_free(err->qmp_class);
    g_free(err->message);
    g_free(err);
}

void
ho_error_set(HoError *err)
{
    /* Callers often check errno right after a report: keep it. */
    int saved_errno = errno;

    if (err) {
        HO_DEBUG("error %s: %s", ho_error_code_name(err->code),
                 err->message ? err->message : "");
    }
    g_private_replace(&last_error, err);
    errno = saved_errno;
}

void
ho_error_report(HoErrorCode code, const char *fmt, ...)
{
    int saved_errno = errno;
    va_list ap;
    char *message;

    va_start(ap, fmt);
    message = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    ho_error_set(error_new_take(code, message));
    errno = saved_errno;
}

void
ho_error_report_errno(HoErrorCode code, int errnum, const char *fmt, ...)
{
    int saved_errno = errno;
    g_autofree char *text = NULL;
    va_list ap;

    va_start(ap, fmt);
    text = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    ho_error_set(error_new_take(code, g_strdup_printf("%s: %s", text, g_strerror(errnum))));
    errno = saved_errno;
}

void
ho_error_report_gerror(HoErrorCode code, const GError *gerr)
{
    if (gerr && gerr->message)
        ho_error_set(error_new_take(code, g_strdup(gerr->message)));
    else
        ho_error_set(error_new_take(code, g_strdup(_("an unknown error occurred"))));
}

const HoError *
ho_error_last(void)
{
    return g_private_get(&last_error);
}

const char *
ho_error_last_message(void)
{
    const HoError *err = g_private_get(&last_error);

    if (!err || !err->message || !*err->message)
        return _("an unknown error occurred");
    return err->message;
}

HoError *
ho_error_steal(void)
{
    HoError *err = g_private_get(&last_error);

    /* g_private_set does not call the destroy notify: ownership moves out. */
    g_private_set(&last_error, NULL);
    return err;
}

void
ho_error_reset(void)
{
    int saved_errno = errno;

    g_private_replace(&last_error, NULL);
    errno = saved_errno;
}

HoError *
ho_error_save(void)
{
    return ho_error_steal();
}

void
ho_error_restore(HoError **saved)
{
    /* Nothing was saved: the cleanup's own error, if any, is the first one. */
    int saved_errno = errno;

    if (!saved || !*saved)
        return;
    /* Not ho_error_set: it was logged when first reported. */
    g_private_replace(&last_error, g_steal_pointer(saved));
    errno = saved_errno;
}
