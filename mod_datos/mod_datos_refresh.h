/* mod_datos_refresh.h - BigQuery fetches, made off the request path by a
 * refresher thread per store in each process. */
#ifndef MOD_DATOS_REFRESH_H
#define MOD_DATOS_REFRESH_H

#include "httpd.h"

#include "datos_policy.h"
#include "mod_datos_runtime.h"

/* child_init: each store's refresher thread in this process, stopped (and
 * joined) when pchild goes. Each is asked at once for an answer when the
 * process has none, or an older one than the host: the warm start. */
void mod_datos_refresh_child_init(apr_pool_t *pchild, server_rec *s);

/* Asks the store's refresher for an answer fetched at or after
 * want_after. Never blocks on I/O. Returns the ticket of the attempt that
 * will see the wish; *started (when not NULL) says whether this wish set
 * an idle refresher going. */
apr_uint64_t mod_datos_refresh_want(mod_datos_store_t *st,
                                    apr_time_t want_after, int *started);

/* Waits until this process holds an answer fetched at or after
 * want_after (DATOS_WAIT_ANSWERED), the attempt of ticket ended without
 * one (DATOS_WAIT_FAILED: *status, and *retry_after when a back-off
 * says), or deadline passed (DATOS_WAIT_TIMED_OUT). */
datos_wait_end_t mod_datos_refresh_wait(mod_datos_store_t *st,
                                        apr_uint64_t ticket,
                                        apr_time_t want_after,
                                        apr_time_t deadline,
                                        apr_status_t *status,
                                        apr_interval_time_t *retry_after);

/* DatosFreshFor 0: one fetch on the request path (no gzip variant), its
 * failure logged once per window per process. */
apr_status_t mod_datos_refresh_uncached(request_rec *r, mod_datos_rt_t *rt,
                                        datos_answer_t **out, datos_err_t *err);

#endif
