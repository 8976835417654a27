/* datos_error.c - status codes and the error detail handed to callers. */
#include <string.h>
#include <apr_strings.h>

#include "datos_error.h"

apr_status_t datos_err_set(datos_err_t *err, apr_pool_t *p, apr_status_t rv,
                           int http_status, const char *reason, const char *fmt,
                           ...)
{
    va_list ap;
    apr_pool_t *owner;

    if (!err) {
        return rv;
    }
    owner = err->pool ? err->pool : p;
    err->rv = rv;
    err->http_status = http_status;
    /* Built before the old texts are replaced: they may be arguments. */
    err->reason = reason ? apr_pstrdup(owner, reason) : NULL;
    if (fmt) {
        va_start(ap, fmt);
        err->message = apr_pvsprintf(owner, fmt, ap);
        va_end(ap);
    }
    else {
        err->message = NULL;
    }
    err->retry_after = 0;
    return rv;
}

void datos_err_clear(datos_err_t *err)
{
    if (err) {
        memset(err, 0, sizeof(*err));
    }
}

void datos_err_init(datos_err_t *err, apr_pool_t *pool)
{
    if (err) {
        memset(err, 0, sizeof(*err));
        err->pool = pool;
    }
}

void datos_err_prefix(datos_err_t *err, apr_pool_t *p, const char *fmt, ...)
{
    va_list ap;
    apr_pool_t *owner;
    const char *prefix;

    if (!err || !err->message) {
        return;
    }
    owner = err->pool ? err->pool : p;
    va_start(ap, fmt);
    prefix = apr_pvsprintf(owner, fmt, ap);
    va_end(ap);
    err->message = apr_pstrcat(owner, prefix, err->message, NULL);
}

apr_pool_t *datos_err_pool_push(datos_err_t *err, apr_pool_t *p)
{
    apr_pool_t *saved;

    if (!err) {
        return NULL;
    }
    saved = err->pool;
    if (!saved) {
        err->pool = p;
    }
    return saved;
}

void datos_err_pool_pop(datos_err_t *err, apr_pool_t *saved)
{
    if (err) {
        err->pool = saved;
    }
}

int datos_status_is_retryable(apr_status_t rv)
{
    return APR_STATUS_IS_TIMEUP(rv) || rv == DATOS_ECONNECT
           || rv == DATOS_EBACKEND || rv == DATOS_ERATELIMIT;
}

const char *datos_status_name(apr_status_t rv)
{
    if (APR_STATUS_IS_TIMEUP(rv)) {
        return "timeout";
    }
    switch (rv) {
    case DATOS_ECONNECT: return "connect_error";
    case DATOS_EBACKEND: return "backend_error";
    case DATOS_EMALFORMED: return "malformed";
    case DATOS_ERATELIMIT: return "rate_limited";
    case DATOS_EQUOTA: return "quota";
    case DATOS_EAUTH: return "auth";
    case DATOS_EREJECTED: return "rejected";
    case DATOS_EBYTESLIMIT: return "bytes_limit";
    case DATOS_ETOOLARGE: return "too_large";
    case DATOS_ECONFIG: return "config";
    case DATOS_EINSECURE: return "insecure_url";
    case DATOS_EEXISTS: return "exists";
    default: return "error";
    }
}

/* Upstream text (an error envelope's message, an OAuth description) ends
 * up in log lines: control bytes could forge lines and a hostile server
 * could send megabytes, so both are neutralised here. Cuts land on a UTF-8
 * boundary so the result stays valid text. */
const char *datos_err_text(apr_pool_t *p, const char *s, apr_size_t len,
                           apr_size_t max)
{
    char *out;
    apr_size_t i, n;

    if (!s) {
        return NULL;
    }
    n = len > max ? max : len;
    if (n < len) {
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) {
            n--;
        }
    }
    out = apr_palloc(p, n + (n < len ? 4 : 1));
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
    }
    if (n < len) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
    return out;
}
