/* mod_datos_cache.h - the answer a request gets: the cache policy
 * (datos_policy.h) carried out against the tiers and the refresher. */
#ifndef MOD_DATOS_CACHE_H
#define MOD_DATOS_CACHE_H

#include "httpd.h"

#include "datos_answer.h"
#include "datos_error.h"
#include "datos_policy.h"
#include "mod_datos_config.h"

/* What mod_datos_entry_get returns on the quick path when the request
 * needs more than a cache hit: the handler decides it. */
#define MOD_DATOS_DECLINED APR_INCOMPLETE

typedef struct mod_datos_entry_t {
    const datos_answer_t *answer; /* held until the request's pool goes */
    datos_how_t how;
    apr_time_t now;
} mod_datos_entry_t;

/* The answer for this request, following docs/design.md's cache
 * semantics. quick: the quick path, which takes an answer only when it
 * can be served at once (else MOD_DATOS_DECLINED). On failure err says
 * why (the handler maps it to 502/503/504) and retry_after when the
 * client should come back. */
apr_status_t mod_datos_entry_get(request_rec *r, mod_datos_conf_t *conf,
                                 int quick, mod_datos_entry_t *entry,
                                 datos_err_t *err);

/* Whether the host has an answer for conf's table (or needs none:
 * DatosFreshFor 0): GET /health?ready. */
int mod_datos_entry_ready(mod_datos_conf_t *conf);

#endif
