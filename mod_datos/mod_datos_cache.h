/* mod_datos_cache.h - where a request's answer comes from: the process
 * copy, the shared tier, the state file or BigQuery. */
#ifndef MOD_DATOS_CACHE_H
#define MOD_DATOS_CACHE_H

#include "httpd.h"

#include "datos_answer.h"
#include "datos_error.h"
#include "mod_datos_config.h"

/* How a request's answer was found, for Cache-Status. */
typedef enum {
    MOD_DATOS_HIT,         /* fresh */
    MOD_DATOS_STALE,       /* served stale while another request refreshes */
    MOD_DATOS_STALE_ERROR, /* served stale because BigQuery failed */
    MOD_DATOS_MISS_STORED, /* this request fetched it (cold) */
    MOD_DATOS_COLLAPSED,   /* this request waited for another's fetch */
    MOD_DATOS_REFRESHED,   /* this request refreshed a stale answer */
    MOD_DATOS_UNCACHED     /* DatosFreshFor 0 */
} mod_datos_how_t;

typedef struct mod_datos_entry_t {
    const datos_answer_t *answer; /* held until the request's pool goes */
    mod_datos_how_t how;
    apr_time_t now;
} mod_datos_entry_t;

/* The answer for this request, from the process copy, the shared tier,
 * the state file or BigQuery, following docs/design.md's cache semantics.
 * On failure err says why (the handler maps it to 502/503/504) and
 * retry_after when the client should come back. */
apr_status_t mod_datos_entry_get(request_rec *r, mod_datos_conf_t *conf,
                                 mod_datos_entry_t *entry, datos_err_t *err);

#endif
