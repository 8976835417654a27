/* mod_datos_reply.c - how the module answers and names its failures.
 *
 * Our handlers answer every outcome themselves, as JSON (or the
 * Prometheus text format): an httpd HTML error page never reaches a client
 * of the API, and a backend failure is never a 500. Everything here is
 * below the handlers and the cache, and depends on none of them.
 */
#include <string.h>

#include "apr_strings.h"

#include "httpd.h"
#include "http_protocol.h"

#include "mod_datos_reply.h"

/* When the upstream gave no Retry-After, clients wait this long. */
#define DEFAULT_RETRY_AFTER_SEC 5

const char *mod_datos_error_body(apr_pool_t *p, int status, const char *message)
{
    return apr_psprintf(p, "{\"error\":{\"code\":%d,\"message\":\"%s\"}}",
                        status, message);
}

void mod_datos_reply_headers(request_rec *r, const char *type)
{
    ap_set_content_type(r, type);
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
}

int mod_datos_reply(request_rec *r, int status, const char *type,
                    const char *body, apr_size_t len)
{
    if (status)
        r->status = status;
    mod_datos_reply_headers(r, type);
    ap_set_content_length(r, len);
    if (!r->header_only && len)
        ap_rwrite(body, (int)len, r);
    return OK;
}

void mod_datos_reply_retry_after(request_rec *r, long secs)
{
    apr_table_setn(r->headers_out, "Retry-After",
                   apr_psprintf(r->pool, "%ld", secs));
}

int mod_datos_send_error(request_rec *r, int status, const char *message,
                         long retry_after)
{
    const char *body = mod_datos_error_body(r->pool, status, message);

    if (retry_after > 0)
        mod_datos_reply_retry_after(r, retry_after);
    return mod_datos_reply(r, status, MOD_DATOS_JSON_TYPE, body, strlen(body));
}

long mod_datos_retry_after(const datos_err_t *err)
{
    apr_interval_time_t t = err ? err->retry_after : 0;
    long secs;

    if (t <= 0)
        return DEFAULT_RETRY_AFTER_SEC;
    secs = (long)((t + APR_USEC_PER_SEC - 1) / APR_USEC_PER_SEC);
    return secs < 1 ? 1 : secs > 3600 ? 3600 : secs;
}

int mod_datos_backend_status(apr_status_t rv)
{
    if (APR_STATUS_IS_TIMEUP(rv))
        return HTTP_GATEWAY_TIME_OUT;
    switch (rv) {
    case DATOS_ERATELIMIT:
    case DATOS_EQUOTA:
    case DATOS_EAUTH:
    case DATOS_EBYTESLIMIT:
    case DATOS_ECONFIG: return HTTP_SERVICE_UNAVAILABLE;
    default: return HTTP_BAD_GATEWAY;
    }
}

apr_status_t mod_datos_log_status(apr_status_t rv)
{
    return rv >= DATOS_ERR_BASE && rv < DATOS_ERR_BASE + 100 ? 0 : rv;
}

int mod_datos_log_window_take(mod_datos_log_window_t *w,
                              apr_thread_mutex_t *mutex, apr_time_t now,
                              apr_interval_time_t window, int *more)
{
    int log;

    *more = 0;
    apr_thread_mutex_lock(mutex);
    log = now >= w->logged + window;
    if (log) {
        *more = w->unlogged;
        w->unlogged = 0;
        w->logged = now;
    }
    else {
        w->unlogged++;
    }
    apr_thread_mutex_unlock(mutex);
    return log;
}
