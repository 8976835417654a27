/* mod_datos_config.h - the Datos* directives and what a server's
 * configuration holds once they are read. */
#ifndef MOD_DATOS_CONFIG_H
#define MOD_DATOS_CONFIG_H

#include "httpd.h"
#include "http_config.h"
#include "ap_socache.h"
#include "apr_hash.h"

#include "datos_bq.h"
#include "datos_http.h"

extern module AP_MODULE_DECLARE_DATA datos_module;

#define MOD_DATOS_UNSET (-1)

/* Made from a configuration in post_config (mod_datos_runtime.h). */
struct mod_datos_rt_t;

/* Every field of a server's configuration, once. The struct is made from
 * this list, and mod_datos_config.c checks when httpd starts that each
 * field is set (initialised, merged, defaulted) by exactly one row of its
 * settings table, or is one of the fields derived after the merge. The
 * directive fields stay MOD_DATOS_UNSET / NULL until set; defaults are
 * applied by mod_datos_conf_finish once the whole configuration is read. */
#define MOD_DATOS_CONF_FIELDS(F)                                              \
    F(const char *, project)                                                  \
    F(const char *, table_name)                                               \
    F(datos_table_ref_t, table) /* parsed from table_name */                  \
    F(const char *, location)                                                 \
    F(const char *, credentials) /* NULL: Application Default Credentials */  \
    F(const char *, bigquery_url)                                             \
    F(int, allow_insecure)                                                    \
    F(const char *, ca_file)                                                  \
    F(int, limit_default)                                                     \
    F(int, limit_max)                                                         \
    F(apr_interval_time_t, timeout)                                           \
    F(int, lookback_days)                                                     \
    F(apr_int64_t, max_bytes_billed) /* 0: explicitly off */                  \
    F(apr_int64_t, max_payload)                                               \
    F(apr_interval_time_t, fresh_for) /* 0: no cache (a query a request) */   \
    F(apr_interval_time_t, stale_while_revalidate)                            \
    F(apr_interval_time_t, stale_if_error)                                    \
    F(apr_interval_time_t, cold_wait)                                         \
    F(const char *, state_dir) /* "" after finish: none */                    \
    F(int, max_waiting)        /* 0 after finish: derived from the MPM */     \
    F(int, quick_handler)                                                     \
    F(apr_interval_time_t, keepalive_linger) /* 0: none */                    \
    /* POST /datos (DatosIngest On). After finish, topic is the full name, */ \
    /* or the short one when the project is only known from the metadata */   \
    /* server (the first POST asks it). */                                    \
    F(int, ingest)                                                            \
    F(const char *, topic)                                                    \
    F(const char *, pubsub_url)                                               \
    F(apr_int64_t, max_body)                                                  \
    F(int, max_batch)                                                         \
    /* GET /datos-status: the loader's textfile ("" after finish: none) */    \
    /* and how often the loader is expected to run. */                        \
    F(const char *, loader_metrics_file)                                      \
    F(apr_interval_time_t, loader_interval)                                   \
    /* Derived in check_config: whether each URL came from the emulator's */  \
    /* environment variable (which allows plain http). */                     \
    F(int, url_from_emulator_env)                                             \
    F(int, pubsub_url_from_emulator_env)                                      \
    /* Derived in post_config: the runtime this configuration shares with */  \
    /* every other server whose settings are the same; the paths its */       \
    /* quick handler serves (const char *), NULL: none. */                    \
    F(struct mod_datos_rt_t *, rt)                                            \
    F(apr_array_header_t *, quick_paths)

typedef struct mod_datos_conf_t {
#define MOD_DATOS_CONF_FIELD(type, name) type name;
    MOD_DATOS_CONF_FIELDS(MOD_DATOS_CONF_FIELD)
#undef MOD_DATOS_CONF_FIELD
} mod_datos_conf_t;

/* DatosCache, module-wide: the shared tier as written. Read by
 * post_config, which starts it (mod_datos_runtime.c). */
typedef struct mod_datos_cache_conf_t {
    const char *spec; /* as written; NULL: the default (shmcb) */
    const ap_socache_provider_t *provider; /* NULL: "none" or the default */
    const char *provider_name;
    const char *provider_args;
    const char *secret_file; /* DatosCacheSecretFile; NULL: none */
} mod_datos_cache_conf_t;

extern mod_datos_cache_conf_t mod_datos_cache_conf;

extern const command_rec mod_datos_cmds[];

/* pre_config: forgets the last configuration's DatosCache (the DSO may
 * stay loaded across restarts) and checks the settings table against the
 * fields above. Returns NULL, or what is wrong with the table. */
const char *mod_datos_config_pre_config(apr_pool_t *pconf);

void *mod_datos_create_srv_conf(apr_pool_t *p, server_rec *s);
void *mod_datos_merge_srv_conf(apr_pool_t *p, void *basev, void *addv);

/* The module-wide checks (check_config): a fleet provider needs
 * DatosCacheSecretFile. Returns NULL or a message naming the directive. */
const char *mod_datos_cache_conf_check(apr_pool_t *p);

/* Whether DatosCache names a tier shared by hosts (memcache, redis). */
int mod_datos_cache_is_fleet(const char *provider_name);

/* Applies defaults and the checks that need several directives (the
 * transport rule, the credentials). Returns NULL or a message naming the
 * directive at fault. Runs in check_config, so `apache2 -t` reports it.
 * checked remembers the credentials already tried in this pass. */
const char *mod_datos_conf_finish(apr_pool_t *p, apr_pool_t *ptemp,
                                  server_rec *s, mod_datos_conf_t *conf,
                                  apr_hash_t *checked);

/* The identity of a finished configuration: servers whose identities
 * are equal share one runtime. */
const char *mod_datos_conf_id(apr_pool_t *p, const mod_datos_conf_t *conf);

/* The HTTP options of a client of Google's APIs under this configuration;
 * from_emulator_env: its URL came from the emulator's variable. */
void mod_datos_conf_http_opts(const mod_datos_conf_t *conf,
                              int from_emulator_env, datos_http_opts_t *opts);

static APR_INLINE mod_datos_conf_t *mod_datos_conf(const server_rec *s)
{
    return (mod_datos_conf_t *)ap_get_module_config(s->module_config,
                                                    &datos_module);
}

#endif
