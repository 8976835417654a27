/* mod_datos.h - shared declarations of the module's glue files.
 *
 * The module is thin: directives (mod_datos_config.c), hooks and the log
 * sink (mod_datos.c), the runtimes and their shared state
 * (mod_datos_runtime.c), the cache tiers (mod_datos_cache.c), the handlers
 * (mod_datos_handler.c) and httpd's own error pages on our paths
 * (mod_datos_httpd_errors.c). Everything about Google, JSON and the record lives
 * in libdatos.
 *
 * Lock order, outermost first; no lock is taken out of this order:
 *   1. a runtime's refresh mutex (global: one fetch per host at a time),
 *      held across a BigQuery fetch, which DatosTimeout bounds;
 *   2. the cache mutex (global, only for providers that are not MP-safe,
 *      such as shmcb), held around one socache call, never across network
 *      I/O;
 *   3. libdatos's own per-process mutexes (credentials, BigQuery client,
 *      the process copy's writers), each held for one operation.
 * A cache hit takes none of them.
 */
#ifndef MOD_DATOS_H
#define MOD_DATOS_H

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "ap_socache.h"
#include "apr_global_mutex.h"
#include "apr_hash.h"
#include "apr_thread_mutex.h"

#include "datos_answer.h"
#include "datos_auth.h"
#include "datos_bq.h"
#include "datos_error.h"
#include "datos_metrics.h"
#include "datos_record.h"
#include "datos_process_cache.h"

extern module AP_MODULE_DECLARE_DATA datos_module;

#define MOD_DATOS_UNSET (-1)

/* Mutex types, for the Mutex directive. */
#define MOD_DATOS_REFRESH_MUTEX "datos-refresh"
#define MOD_DATOS_CACHE_MUTEX   "datos-cache"

typedef struct mod_datos_rt_t mod_datos_rt_t;

typedef struct mod_datos_conf_t {
    /* Directives; MOD_DATOS_UNSET / NULL until set, defaults applied by
     * mod_datos_conf_finish once the whole configuration is read. */
    const char *project;
    const char *table_name;
    datos_table_ref_t table;
    const char *location;
    const char *credentials; /* NULL: Application Default Credentials */
    const char *bigquery_url;
    int allow_insecure;
    const char *ca_file;
    int limit_default;
    int limit_max;
    apr_interval_time_t timeout;
    int lookback_days;
    apr_int64_t max_bytes_billed; /* 0: explicitly off */
    apr_int64_t max_payload;
    apr_interval_time_t fresh_for; /* 0: no cache (one query per request) */
    apr_interval_time_t stale_while_revalidate;
    apr_interval_time_t stale_if_error;
    apr_interval_time_t cold_wait;
    const char *state_dir; /* "" after finish: none */
    int max_waiting;       /* 0 after finish: derived from the MPM */

    /* POST /datos (DatosIngest On). After finish, topic is the full name,
     * or the short one when the project is only known from the metadata
     * server (the first POST asks it). */
    int ingest;
    const char *topic;
    const char *pubsub_url;
    apr_int64_t max_body;
    int max_batch;
    int pubsub_url_from_emulator_env;

    /* Resolved at check_config: where the BigQuery URL came from, and
     * whether plain http was allowed because it is an emulator. */
    int url_from_emulator_env;

    /* Built in post_config: the runtime this configuration shares with
     * every other server whose settings are the same. */
    mod_datos_rt_t *rt;
} mod_datos_conf_t;

/* The module-wide settings (DatosCache), and what post_config made of
 * them: one socache instance for every runtime. */
typedef struct mod_datos_global_t {
    const char *cache_spec;                /* as written; NULL: the default */
    const ap_socache_provider_t *provider; /* NULL: no shared tier ("none") */
    const char *provider_name;
    const char *provider_args;
    ap_socache_instance_t *cache;
    apr_global_mutex_t
        *cache_mutex;         /* only for providers that are not MP-safe */
    int fleet;                /* memcache/redis: shared by hosts */
    datos_metrics_t *metrics; /* in shared memory */
    int max_waiting;          /* requests waiting on BigQuery, host-wide */
    int max_waiting_process;  /* ... and per process */
    int idle_reserve; /* idle workers that must remain for one more to wait */
    int server_limit, thread_limit; /* the scoreboard's dimensions */
} mod_datos_global_t;

extern mod_datos_global_t mod_datos_global;

/* Host-wide state of a runtime, in shared memory: atomics only. */
typedef struct mod_datos_host_t {
    volatile apr_uint64_t
        fetched; /* fetch time of the newest answer any process stored */
    volatile apr_uint64_t
        next_attempt; /* no query before this, after a failure */
    volatile apr_uint64_t last_status; /* the failure that set next_attempt */
} mod_datos_host_t;

/* One runtime per distinct configuration: the credentials, the BigQuery
 * client, the process copy of the answer and the cache key. */
struct mod_datos_rt_t {
    int index;              /* mutex instance, metrics table */
    const char *id;         /* the settings that made it, for the registry */
    mod_datos_conf_t *conf; /* the first configuration that asked for it */
    server_rec *s;
    datos_creds_t *creds;
    datos_bq_t *bq;
    const char *l2_key;     /* "datos:v1:<32 hex>" */
    const char *l2_marker;  /* l2_key + ":refreshing", fleets only */
    const char *state_file; /* NULL: no state directory */
    apr_size_t envelope_max;
    datos_answer_opts_t answer_opts;
    const char *cache_control; /* of every 200 and 304 */
    apr_global_mutex_t *refresh_mutex;
    mod_datos_host_t *host; /* in shared memory */
    int metrics_table;

    /* Per process (child_init). */
    datos_process_cache_t *l1;
    apr_thread_mutex_t *proc_mutex; /* the fields below */
    apr_time_t l2_down_until; /* a failing shared tier is skipped until then */
    apr_time_t l2_checked;    /* last look at a fleet cache while stale */
    apr_time_t oversize_logged; /* once per window */
    apr_time_t error_logged;    /* one error line per window */
    int errors_unlogged;        /* failures since that line */
    volatile apr_uint32_t
        waiting; /* requests of this process waiting on BigQuery */

    /* POST /datos: NULL when DatosIngest is off (mod_datos_ingest.c). */
    struct mod_datos_ingest_t *ingest;
};

extern const command_rec mod_datos_cmds[];

void *mod_datos_create_srv_conf(apr_pool_t *p, server_rec *s);
void *mod_datos_merge_srv_conf(apr_pool_t *p, void *basev, void *addv);

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

static APR_INLINE mod_datos_conf_t *mod_datos_conf(const server_rec *s)
{
    return (mod_datos_conf_t *)ap_get_module_config(s->module_config,
                                                    &datos_module);
}

/* ------------------------------------------------------------ runtimes */

/* pre_config: mutex types; post_config: the runtimes, the shared tier,
 * the mutexes and the shared memory; child_init: their per-process side.
 * Errors are logged where they happen; a non-OK return stops httpd. */
int mod_datos_runtime_pre_config(apr_pool_t *pconf);
int mod_datos_runtime_post_config(apr_pool_t *pconf, apr_pool_t *ptemp,
                                  server_rec *s);
void mod_datos_runtime_child_init(apr_pool_t *pchild, server_rec *s);

/* ---------------------------------------------------------------- cache */

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
 * the state file or BigQuery, following docs/design.md's cache semantics. On
 * failure err says why (the handler maps it to 502/503/504) and
 * retry_after when the client should come back. */
apr_status_t mod_datos_entry_get(request_rec *r, mod_datos_conf_t *conf,
                                 mod_datos_entry_t *entry, datos_err_t *err);

/* Readiness for /health?deep=1, without a fetch when none is needed. */
typedef enum {
    MOD_DATOS_READY_PASS, /* fresh */
    MOD_DATOS_READY_WARN, /* stale, still servable */
    MOD_DATOS_READY_FAIL  /* /datos would answer 503 */
} mod_datos_ready_t;

/* ------------------------------------------------------------- handlers */

int mod_datos_handler(request_rec *r);

/* The error body every handler sends, {"error":{"code":N,"message":"..."}},
 * with Retry-After when retry_after > 0 and Cache-Control: no-store. */
int mod_datos_send_error(request_rec *r, int status, const char *message,
                         long retry_after);
/* The status a failed Google call maps to: 504 for a timeout, 503 for a
 * refusal that passes (rate limit, quota, auth), 502 otherwise. */
int mod_datos_backend_status(apr_status_t rv);

/* ------------------------------------------------------------ ingestion */

typedef struct mod_datos_ingest_t mod_datos_ingest_t;

/* post_config: the Pub/Sub side of a runtime whose configuration has
 * DatosIngest On; child_init: its connections. Errors are logged here. */
apr_status_t mod_datos_ingest_make(apr_pool_t *pconf, mod_datos_rt_t *rt);
void mod_datos_ingest_child_init(apr_pool_t *pchild, mod_datos_rt_t *rt,
                                 int threads);

/* POST /datos. */
int mod_datos_ingest(request_rec *r, mod_datos_conf_t *conf);

/* check_config: warns (so `apache2 -t` shows it) about every section that
 * hands requests to the datos handler on a server with DatosIngest On
 * while nothing in httpd's own access control restricts POST there. */
void mod_datos_ingest_check_access(apr_pool_t *ptemp, server_rec *s);

/* How long a client should wait after err, in whole seconds (1..3600). */
long mod_datos_retry_after(const datos_err_t *err);

/* JSON error pages for what httpd answers itself on the module's paths
 * (mod_datos_httpd_errors.c). */
void mod_datos_httpd_errors_register_hooks(apr_pool_t *p);
void mod_datos_httpd_errors_post_config(apr_pool_t *pconf, server_rec *s);
/* Whether r is for a path that maps to the module's handlers. */
int mod_datos_is_our_path(request_rec *r);

/* A libdatos status named in words for a log line ("timeout",
 * "backend_error"...); APR's own statuses pass through unchanged, so that
 * ap_log_* gets a status it can describe and libdatos's are named in the
 * text instead of "APR does not understand this error code". */
apr_status_t mod_datos_log_status(apr_status_t rv);

#endif
