/* mod_datos_reply.h - the bottom layer of the module: how every answer of
 * ours is written (JSON error bodies, Cache-Control: no-store,
 * Retry-After), the status a failed Google call maps to, and how a
 * failure is named and counted in the error log. It calls nothing else of
 * the module. */
#ifndef MOD_DATOS_REPLY_H
#define MOD_DATOS_REPLY_H

#include "httpd.h"
#include "apr_thread_mutex.h"

#include "datos_error.h"

#define MOD_DATOS_JSON_TYPE "application/json"

/* The error body of every answer of ours and of httpd's own errors on our
 * paths: {"error":{"code":N,"message":"..."}}. message is ours: plain
 * ASCII that needs no JSON escaping. */
const char *mod_datos_error_body(apr_pool_t *p, int status,
                                 const char *message);

/* Content-Type and Cache-Control: no-store, the headers of every answer
 * that is not a cacheable /datos answer. */
void mod_datos_reply_headers(request_rec *r, const char *type);

/* A whole answer: status (0 keeps r->status), those headers, and the
 * body with its length (none for HEAD). Returns OK for the handler. */
int mod_datos_reply(request_rec *r, int status, const char *type,
                    const char *body, apr_size_t len);

/* An error answer with the error body, and Retry-After when
 * retry_after > 0. Returns OK for the handler. */
int mod_datos_send_error(request_rec *r, int status, const char *message,
                         long retry_after);

/* Retry-After: secs. */
void mod_datos_reply_retry_after(request_rec *r, long secs);

/* How long a client should wait after err, in whole seconds (1..3600). */
long mod_datos_retry_after(const datos_err_t *err);

/* The status a failed Google call maps to: 504 for a timeout, 503 for a
 * refusal that passes (rate limit, quota, auth), 502 otherwise. */
int mod_datos_backend_status(apr_status_t rv);

/* A libdatos status named in words for a log line ("timeout",
 * "backend_error"...); APR's own statuses pass through unchanged, so that
 * ap_log_* gets a status it can describe and libdatos's are named in the
 * text instead of "APR does not understand this error code". */
apr_status_t mod_datos_log_status(apr_status_t rv);

/* One error line per window for a run of failures, saying how many it
 * stands for, so an outage cannot flood the log. */
typedef struct mod_datos_log_window_t {
    apr_time_t logged; /* when the last line was written */
    int unlogged;      /* failures since, not written */
} mod_datos_log_window_t;

/* Whether the failure at now gets its line; if so, *more is how many
 * failures went without one since the last. mutex guards w. */
int mod_datos_log_window_take(mod_datos_log_window_t *w,
                              apr_thread_mutex_t *mutex, apr_time_t now,
                              apr_interval_time_t window, int *more);

#endif
