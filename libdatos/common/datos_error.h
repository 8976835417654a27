/* datos_error.h - status codes and error detail shared by libdatos callers.
 *
 * Every libdatos function returns apr_status_t. Failures that the caller must
 * report (and map to an HTTP status, or an exit code) also fill a datos_err_t
 * with the upstream detail; the caller logs it once, where the context is
 * known. libdatos itself logs only at debug/trace level.
 */
#ifndef DATOS_ERROR_H
#define DATOS_ERROR_H

#include <apr_pools.h>
#include <apr_errno.h>
#include <apr_time.h>

#define DATOS_ERR_BASE (APR_OS_START_USERERR + 7300)

/* Timeouts are APR_TIMEUP (APR_STATUS_IS_TIMEUP). */
#define DATOS_ECONNECT \
    (DATOS_ERR_BASE + 1) /* connect/DNS/reset/dropped or truncated response */
#define DATOS_EBACKEND \
    (DATOS_ERR_BASE    \
     + 2) /* upstream 5xx, or a retryable reason (backendError...) */
#define DATOS_EMALFORMED \
    (DATOS_ERR_BASE + 3) /* body is not the JSON shape the API documents */
#define DATOS_ERATELIMIT \
    (DATOS_ERR_BASE + 4) /* 429, 403 rateLimitExceeded: retry with backoff */
#define DATOS_EQUOTA \
    (DATOS_ERR_BASE + 5) /* 403 quotaExceeded: not within this run */
#define DATOS_EAUTH \
    (DATOS_ERR_BASE \
     + 6) /* token refused, 401 after one refresh, accessDenied */
#define DATOS_EREJECTED \
    (DATOS_ERR_BASE + 7) /* other 4xx: permanent (invalidQuery, notFound...) */
#define DATOS_EBYTESLIMIT (DATOS_ERR_BASE + 8) /* bytesBilledLimitExceeded */
#define DATOS_ETOOLARGE \
    (DATOS_ERR_BASE + 9) /* response larger than the configured cap */
#define DATOS_ECONFIG (DATOS_ERR_BASE + 10) /* bad setting, key file, URL */
#define DATOS_EINSECURE \
    (DATOS_ERR_BASE + 11) /* URL breaks the transport rule */
#define DATOS_EEXISTS \
    (DATOS_ERR_BASE   \
     + 12) /* 409 duplicate / ALREADY_EXISTS: the resource (a job id) is taken */

/* A datos_err_t starts zeroed (`datos_err_t err = {0};`, datos_err_clear
 * or datos_err_init): its pool is read by every function that fills it. */
typedef struct datos_err_t {
    apr_pool_t *
        pool; /* where reason and message live; NULL: the pool each setter is given */
    apr_status_t rv;
    int http_status; /* upstream HTTP status, 0 when none */
    const char *
        reason; /* errors[0].reason, status name or OAuth error; NULL when none */
    const char *message; /* human text, safe to log (never a secret) */
    apr_interval_time_t retry_after; /* from Retry-After, 0 when absent */
} datos_err_t;

/* Fills err (when not NULL) and returns rv, so that
 * `return datos_err_set(err, p, DATOS_ECONFIG, 0, NULL, "...")` reads well.
 * reason and message are allocated in err->pool when it is set (so they
 * outlive the scratch pool of the call that failed), else in p. The
 * arguments may point into the err being set (a prefix of its message). */
apr_status_t datos_err_set(datos_err_t *err, apr_pool_t *p, apr_status_t rv,
                           int http_status, const char *reason, const char *fmt,
                           ...) __attribute__((format(printf, 6, 7)));

/* Zeroes err, its pool included. */
void datos_err_clear(datos_err_t *err);

/* Zeroes err and makes pool the owner of what it will hold. */
void datos_err_init(datos_err_t *err, apr_pool_t *pool);

/* Puts the text fmt makes (e.g. "%s: " with the call's name) before the
 * message, in the err's pool (else p); nothing when err or its message is
 * NULL. */
void datos_err_prefix(datos_err_t *err, apr_pool_t *p, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* For a function that fills err and allocates in p: when err has no pool,
 * p becomes its pool until datos_err_pool_pop, so the messages built in
 * the function's scratch pools end up in p. Returns what to pop. */
apr_pool_t *datos_err_pool_push(datos_err_t *err, apr_pool_t *p);
void datos_err_pool_pop(datos_err_t *err, apr_pool_t *saved);

/* Transient failures worth a retry with backoff: timeouts, connection
 * errors, DATOS_EBACKEND, DATOS_ERATELIMIT (never DATOS_EEXISTS, DATOS_EAUTH,
 * DATOS_EREJECTED, DATOS_EQUOTA, DATOS_ECONFIG...). */
int datos_status_is_retryable(apr_status_t rv);

/* Stable snake_case name for logs and metrics labels ("timeout",
 * "connect_error", "backend_error", "malformed", "rate_limited", "quota",
 * "auth", "rejected", "bytes_limit", "too_large", "config", "insecure_url",
 * "exists"),
 * or "error" for anything else. */
const char *datos_status_name(apr_status_t rv);

/* Upstream text made safe for a log line: control characters become
 * spaces and the text is cut (on a UTF-8 boundary, marked "...") to at most
 * max bytes. NULL stays NULL. */
const char *datos_err_text(apr_pool_t *p, const char *s, apr_size_t len,
                           apr_size_t max);

#endif
