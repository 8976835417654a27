/* mod_datos.c - module declaration, hooks and the libdatos log sink.
 *
 * The module is thin: everything about Google, JSON and the record lives
 * in libdatos. Its files form layers: each calls only files listed below
 * it, so their calls form no cycle.
 *
 *   mod_datos.c               the module, its hooks, the log sink
 *   mod_datos_handler.c       GET /datos (the quick handler and the
 *                             handler), /health, /metrics; POST handed on
 *   mod_datos_status.c        GET /datos-status: the numbers it shows
 *   mod_datos_ingest.c        POST /datos, its Pub/Sub clients, the check
 *                             that POST is guarded
 *   mod_datos_httpd_errors.c  JSON for httpd's own errors on our paths
 *   mod_datos_linger.c        after a /datos answer, its worker waits a
 *                             moment for the connection's next request
 *   mod_datos_cache.c         the answer a request gets: the cache policy
 *                             carried out
 *   mod_datos_refresh.c       BigQuery fetches, by a refresher thread per
 *                             store and process; the fleet's lease
 *   mod_datos_tiers.c         the process copy, the shared tier and the
 *                             state file; what is trusted; the seeds
 *   mod_datos_runtime.c       one runtime per distinct configuration, one
 *                             store per cache entry, the shared tier, the
 *                             secrets and the shared memory
 *   mod_datos_config.c        the Datos* directives, from one table
 *   mod_datos_sections.c      the <Location> sections of httpd's
 *                             configuration tree
 *   mod_datos_reply.c         how every answer is written, and failures
 *                             named in the log
 *
 * Each file has its own header, which includes only headers of files
 * below it.
 *
 * Life cycle, as httpd runs it:
 * - pre_config: the settings table checked against the configuration's
 *   fields, and the mutex types (for the Mutex directive); nothing of an
 *   earlier configuration is kept, since the DSO may stay loaded.
 * - check_config (every configuration pass, also under `apache2 -t`):
 *   defaults and cross-directive checks, including a trial load of each
 *   distinct key.
 * - post_config (parent, still root and single-threaded; skipped in the
 *   dry run httpd makes first): curl_global_init once, one runtime per
 *   distinct configuration and one store per cache entry, the shared
 *   tier, the secrets, the mutexes and the shared memory; each store's
 *   state file read (the seed every child starts from); the paths the
 *   quick handler serves; then the Pub/Sub side of the runtimes with
 *   DatosIngest On.
 * - child_init: each runtime's and store's per-process side (mutexes
 *   re-attached, tokens inherited over fork dropped), the seeds made each
 *   process's copy, a refresher thread per store (which fetches at once
 *   when the host has no answer yet: the warm start), then the Pub/Sub
 *   clients, and how many threads may wait for a connection's next
 *   request.
 */
#include <string.h>

#include "apr_strings.h"
#include "apr_hash.h"

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "http_core.h"
#include "ap_mpm.h"

#include "datos_http.h"
#include "datos_log.h"
#include "mod_datos_config.h"
#include "mod_datos_handler.h"
#include "mod_datos_httpd_errors.h"
#include "mod_datos_linger.h"
#include "mod_datos_ingest.h"
#include "mod_datos_refresh.h"
#include "mod_datos_reply.h"
#include "mod_datos_runtime.h"
#include "mod_datos_tiers.h"

static void log_sink(void *baton, const char *file, int line,
                     datos_log_level_t level, apr_status_t rv, const char *msg)
{
    server_rec *s = baton;

    ap_log_error(file, line, APLOG_MODULE_INDEX, (int)level,
                 mod_datos_log_status(rv), s, "%s", msg);
}

static int log_is_level(void *baton, datos_log_level_t level)
{
    server_rec *s = baton;

    return APLOG_IS_LEVEL(s, (int)level);
}

/* The sink points at a server_rec of pconf: when pconf goes (a restart),
 * libdatos falls back to stderr until the next configuration sets it. */
static apr_status_t log_sink_reset(void *data)
{
    (void)data;
    datos_log_set_sink(NULL, NULL, NULL);
    return APR_SUCCESS;
}

static int mod_datos_pre_config(apr_pool_t *pconf, apr_pool_t *plog,
                                apr_pool_t *ptemp)
{
    const char *msg;

    (void)plog;
    (void)ptemp;
    if ((msg = mod_datos_config_pre_config(pconf))) {
        ap_log_perror(APLOG_MARK, APLOG_STARTUP | APLOG_EMERG, 0, pconf,
                      DATOS_LOGNO(0009) "mod_datos: %s", msg);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    return mod_datos_runtime_pre_config(pconf);
}

static int mod_datos_check_config(apr_pool_t *pconf, apr_pool_t *plog,
                                  apr_pool_t *ptemp, server_rec *s)
{
    apr_hash_t *checked = apr_hash_make(ptemp);
    server_rec *vs;
    const char *msg;

    (void)plog;
    if ((msg = mod_datos_cache_conf_check(ptemp))) {
        ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_EMERG, 0, NULL,
                     DATOS_LOGNO(0022) "%s", msg);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    for (vs = s; vs; vs = vs->next) {
        if ((msg = mod_datos_conf_finish(pconf, ptemp, vs, mod_datos_conf(vs),
                                         checked))) {
            ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_EMERG, 0, NULL,
                         DATOS_LOGNO(0001) "%s (server %s:%u, defined in %s)",
                         msg, vs->server_hostname ? vs->server_hostname : "*",
                         vs->port, vs->defn_name ? vs->defn_name : "?");
            return HTTP_INTERNAL_SERVER_ERROR;
        }
    }
    mod_datos_ingest_check_access(ptemp, s);
    return OK;
}

static apr_status_t http_global_cleanup(void *data)
{
    (void)data;
    datos_http_global_cleanup();
    return APR_SUCCESS;
}

static int mod_datos_post_config(apr_pool_t *pconf, apr_pool_t *plog,
                                 apr_pool_t *ptemp, server_rec *s)
{
    apr_status_t rv;
    int status;

    (void)plog;
    datos_log_set_sink(log_sink, log_is_level, s);
    apr_pool_cleanup_register(pconf, NULL, log_sink_reset,
                              apr_pool_cleanup_null);
    mod_datos_httpd_errors_post_config(pconf, s);

    /* httpd runs the configuration twice at start; the first pass only
     * checks it, so nothing is started for it. */
    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG)
        return OK;

    rv = datos_http_global_init();
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s,
                     DATOS_LOGNO(0002) "curl_global_init failed");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    /* Registered before the runtimes' cleanups, so it runs after them. */
    apr_pool_cleanup_register(pconf, NULL, http_global_cleanup,
                              apr_pool_cleanup_null);
    status = mod_datos_runtime_post_config(pconf, ptemp, s);
    if (status != OK)
        return status;
    mod_datos_tiers_seed(pconf, s);
    mod_datos_handler_post_config(pconf, s);
    return mod_datos_ingest_post_config(pconf);
}

static void mod_datos_child_init(apr_pool_t *pchild, server_rec *s)
{
    mod_datos_runtime_child_init(pchild, s);
    mod_datos_tiers_child_init(pchild, s);
    mod_datos_refresh_child_init(pchild, s);
    mod_datos_ingest_child_init(pchild);
    mod_datos_linger_child_init(pchild);
}

static void mod_datos_register_hooks(apr_pool_t *p)
{
    ap_hook_pre_config(mod_datos_pre_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_check_config(mod_datos_check_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(mod_datos_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(mod_datos_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_quick_handler(mod_datos_quick_handler, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(mod_datos_handler, NULL, NULL, APR_HOOK_MIDDLE);
    mod_datos_httpd_errors_register_hooks(p);
    mod_datos_linger_register_hooks(p);
}

AP_DECLARE_MODULE(datos) = {STANDARD20_MODULE_STUFF,
                            NULL, /* per-directory config: none */
                            NULL,
                            mod_datos_create_srv_conf,
                            mod_datos_merge_srv_conf,
                            mod_datos_cmds,
                            mod_datos_register_hooks,
                            AP_MODULE_FLAG_NONE};
