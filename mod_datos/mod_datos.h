/* mod_datos.h - shared declarations of the module's glue files.
 *
 * The module is thin: directives (mod_datos_config.c), hooks and the log
 * sink (mod_datos.c), the answer source (mod_datos_entry.c) and the
 * handlers (mod_datos_handler.c). Everything about Google, JSON and the
 * record lives in libdatos.
 */
#ifndef MOD_DATOS_H
#define MOD_DATOS_H

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"

#include "datos_auth.h"
#include "datos_bq.h"
#include "datos_error.h"
#include "datos_record.h"

extern module AP_MODULE_DECLARE_DATA datos_module;

#define MOD_DATOS_UNSET (-1)

typedef struct mod_datos_conf_t {
    /* Directives; MOD_DATOS_UNSET / NULL until set, defaults applied by
     * mod_datos_conf_finish once the whole configuration is read. */
    const char *project;
    const char *table_name;
    datos_table_ref_t table;
    const char *location;
    const char *credentials;       /* NULL: Application Default Credentials */
    const char *bigquery_url;
    int allow_insecure;
    const char *ca_file;
    int limit_default;
    int limit_max;
    apr_interval_time_t timeout;
    int lookback_days;
    apr_int64_t max_bytes_billed;  /* 0: explicitly off */
    apr_int64_t max_payload;

    /* Resolved at check_config: where the BigQuery URL came from, and
     * whether plain http was allowed because it is an emulator. */
    int url_from_emulator_env;

    /* Runtime, built in post_config and shared by the process's threads. */
    datos_creds_t *creds;
    datos_bq_t *bq;
} mod_datos_conf_t;

extern const command_rec mod_datos_cmds[];

void *mod_datos_create_srv_conf(apr_pool_t *p, server_rec *s);
void *mod_datos_merge_srv_conf(apr_pool_t *p, void *basev, void *addv);

/* Applies defaults and the checks that need several directives (the
 * transport rule, the credentials). Returns NULL or a message naming the
 * directive at fault. Runs in check_config, so `apache2 -t` reports it. */
const char *mod_datos_conf_finish(apr_pool_t *p, apr_pool_t *ptemp,
                                  server_rec *s, mod_datos_conf_t *conf);

static APR_INLINE mod_datos_conf_t *mod_datos_conf(const server_rec *s)
{
    return (mod_datos_conf_t *)ap_get_module_config(s->module_config,
                                                    &datos_module);
}

/* An answer ready to serve: the rendered rows at the largest limit, of
 * which every ?limit is a slice. */
typedef struct mod_datos_entry_t {
    const datos_rendered_t *rendered;
    apr_time_t fetched;            /* when BigQuery answered */
} mod_datos_entry_t;

/* The answer for this request. Today every call queries BigQuery (the
 * uncached design); the cache tiers slot in here. */
apr_status_t mod_datos_entry_get(request_rec *r, mod_datos_conf_t *conf,
                                 mod_datos_entry_t *entry, datos_err_t *err);

int mod_datos_handler(request_rec *r);

/* JSON error pages for what httpd answers itself on the module's paths
 * (mod_datos_errors.c). */
void mod_datos_errors_register_hooks(apr_pool_t *p);
void mod_datos_errors_post_config(apr_pool_t *pconf, server_rec *s);
/* Whether r is for a path that maps to the module's handlers. */
int mod_datos_is_our_path(request_rec *r);

#endif
