/* mod_datos.c - module declaration, hooks and the libdatos log sink.
 *
 * Life cycle, as httpd runs it:
 * - check_config (every configuration pass, also under `apache2 -t`):
 *   defaults and cross-directive checks, including a trial load of the key.
 * - post_config (parent, still root and single-threaded): curl_global_init
 *   once, the credentials (a 0600 key owned by root works), one BigQuery
 *   client per server configuration.
 * - child_init: per-process mutexes; tokens inherited over fork are dropped.
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
#include "mod_datos.h"

static void log_sink(void *baton, const char *file, int line,
                     datos_log_level_t level, apr_status_t rv,
                     const char *msg)
{
    server_rec *s = baton;

    ap_log_error(file, line, APLOG_MODULE_INDEX, (int)level, rv, s, "%s", msg);
}

static int log_is_level(void *baton, datos_log_level_t level)
{
    server_rec *s = baton;

    return APLOG_IS_LEVEL(s, (int)level);
}

static int mod_datos_check_config(apr_pool_t *pconf, apr_pool_t *plog,
                                  apr_pool_t *ptemp, server_rec *s)
{
    server_rec *vs;
    const char *msg;

    (void)plog;
    for (vs = s; vs; vs = vs->next) {
        if ((msg = mod_datos_conf_finish(pconf, ptemp, vs,
                                         mod_datos_conf(vs)))) {
            ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_EMERG, 0, NULL,
                         DATOS_LOGNO(0001) "%s (server %s:%u, defined in %s)",
                         msg, vs->server_hostname ? vs->server_hostname : "*",
                         vs->port, vs->defn_name ? vs->defn_name : "?");
            return HTTP_INTERNAL_SERVER_ERROR;
        }
    }
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
    server_rec *vs;
    datos_err_t err;
    apr_status_t rv;

    (void)plog;
    (void)ptemp;
    datos_log_set_sink(log_sink, log_is_level, s);
    mod_datos_errors_post_config(pconf, s);

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
    /* Registered before the clients' cleanups, so it runs after them. */
    apr_pool_cleanup_register(pconf, NULL, http_global_cleanup,
                              apr_pool_cleanup_null);

    for (vs = s; vs; vs = vs->next) {
        mod_datos_conf_t *conf = mod_datos_conf(vs);
        datos_bq_conf_t bqc;

        /* The key is read here, while the process is still root, so it
         * may be readable by root only. */
        datos_err_clear(&err);
        rv = datos_creds_load(pconf, conf->credentials, DATOS_SCOPE_BIGQUERY,
                              conf->allow_insecure
                                  || conf->url_from_emulator_env,
                              &conf->creds, &err);
        if (rv != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_EMERG, rv, vs,
                         DATOS_LOGNO(0007) "DatosCredentials: %s", err.message);
            return HTTP_INTERNAL_SERVER_ERROR;
        }

        memset(&bqc, 0, sizeof(bqc));
        bqc.base_url = conf->bigquery_url;
        bqc.project = conf->project ? conf->project : conf->table.project;
        bqc.table = conf->table;
        bqc.location = conf->location;
        bqc.lookback_days = conf->lookback_days;
        bqc.max_bytes_billed = conf->max_bytes_billed;
        bqc.max_payload = (apr_size_t)conf->max_payload;
        bqc.max_rows = conf->limit_max;
        bqc.timeout = conf->timeout;
        bqc.creds = conf->creds;
        datos_http_opts_default(&bqc.http);
        bqc.http.timeout = conf->timeout;
        if (bqc.http.connect_timeout > conf->timeout)
            bqc.http.connect_timeout = conf->timeout;
        bqc.http.ca_file = conf->ca_file;
        bqc.http.allow_insecure = conf->allow_insecure
                                  || conf->url_from_emulator_env;
        bqc.http.user_agent = "mod_datos/" AP_SERVER_BASEREVISION;

        datos_err_clear(&err);
        rv = datos_bq_create(pconf, &bqc, &conf->bq, &err);
        if (rv != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_EMERG, rv, vs,
                         DATOS_LOGNO(0003) "BigQuery client for %s: %s",
                         conf->table_name, err.message);
            return HTTP_INTERNAL_SERVER_ERROR;
        }
        if (vs == s)
            ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                         DATOS_LOGNO(0004) "serving %s from %s with %s",
                         conf->table_name, conf->bigquery_url,
                         datos_creds_describe(conf->creds));
    }
    return OK;
}

static void mod_datos_child_init(apr_pool_t *pchild, server_rec *s)
{
    apr_hash_t *done = apr_hash_make(pchild);
    server_rec *vs;
    apr_status_t rv;

    for (vs = s; vs; vs = vs->next) {
        mod_datos_conf_t *conf = mod_datos_conf(vs);

        if (conf->creds && !apr_hash_get(done, &conf->creds, sizeof(void *))) {
            apr_hash_set(done, apr_pmemdup(pchild, &conf->creds,
                                           sizeof(void *)),
                         sizeof(void *), conf);
            if ((rv = datos_creds_child_init(conf->creds, pchild)))
                ap_log_error(APLOG_MARK, APLOG_CRIT, rv, vs,
                             DATOS_LOGNO(0005) "credentials child init");
        }
        if (conf->bq && !apr_hash_get(done, &conf->bq, sizeof(void *))) {
            apr_hash_set(done, apr_pmemdup(pchild, &conf->bq, sizeof(void *)),
                         sizeof(void *), conf);
            if ((rv = datos_bq_child_init(conf->bq, pchild)))
                ap_log_error(APLOG_MARK, APLOG_CRIT, rv, vs,
                             DATOS_LOGNO(0006) "BigQuery client child init");
        }
    }
}

static void mod_datos_register_hooks(apr_pool_t *p)
{
    ap_hook_check_config(mod_datos_check_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(mod_datos_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(mod_datos_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(mod_datos_handler, NULL, NULL, APR_HOOK_MIDDLE);
    mod_datos_errors_register_hooks(p);
}

AP_DECLARE_MODULE(datos) = {
    STANDARD20_MODULE_STUFF,
    NULL,                       /* per-directory config: none */
    NULL,
    mod_datos_create_srv_conf,
    mod_datos_merge_srv_conf,
    mod_datos_cmds,
    mod_datos_register_hooks,
    AP_MODULE_FLAG_NONE
};
