/* mod_datos_runtime.h - what post_config makes of the configuration: one
 * runtime per distinct configuration, one store per cache entry, the
 * shared tier, the secrets that seal its entries, and the memory every
 * process of the host shares.
 *
 * Lock order, outermost first; no lock is taken out of this order:
 *   1. a store's refresh mutex (global: one fetch per host at a time),
 *      taken only by refresher threads, held across a BigQuery fetch,
 *      which DatosTimeout bounds, and a fleet lease wait, which it bounds
 *      too;
 *   2. a refresher's own thread mutex (what is asked of it, what it did),
 *      never held across I/O;
 *   3. the cache mutex (global, only for providers that are not MP-safe,
 *      such as shmcb), held around one socache call, never across network
 *      I/O;
 *   4. libdatos's own per-process mutexes (credentials, BigQuery client,
 *      the process copy's writers), each held for one operation.
 * A cache hit takes none of them.
 */
#ifndef MOD_DATOS_RUNTIME_H
#define MOD_DATOS_RUNTIME_H

#include "httpd.h"
#include "ap_socache.h"
#include "apr_global_mutex.h"
#include "apr_thread_mutex.h"

#include "datos_answer.h"
#include "datos_auth.h"
#include "datos_bq.h"
#include "datos_metrics.h"
#include "datos_process_cache.h"
#include "datos_trust.h"
#include "mod_datos_config.h"
#include "mod_datos_reply.h"

/* Mutex types, for the Mutex directive. */
#define MOD_DATOS_REFRESH_MUTEX "datos-refresh"
#define MOD_DATOS_CACHE_MUTEX   "datos-cache"

/* The file of a host's own secret in DatosStateDir. */
#define MOD_DATOS_STATE_SECRET "hmac.key"

/* What post_config made for every runtime: the shared tier (DatosCache,
 * started), the metrics and the bounds on waiting workers. */
typedef struct mod_datos_global_t {
    const ap_socache_provider_t *provider; /* NULL: no shared tier */
    const char *provider_name;
    ap_socache_instance_t *cache;
    apr_global_mutex_t
        *cache_mutex;         /* only for providers that are not MP-safe */
    int fleet;                /* memcache/redis: shared by hosts */
    datos_metrics_t *metrics; /* in shared memory */
    int max_waiting;          /* requests waiting on BigQuery, host-wide */
    int max_waiting_process;  /* ... and per process */
    int idle_reserve; /* idle workers that must remain for one more to wait */
    int server_limit, thread_limit; /* the scoreboard's dimensions */
    int threads;                    /* of a process, as the MPM reports */
    /* The secret of the shared tier's seals: DatosCacheSecretFile's for a
     * fleet, else one made for this configuration (shmcb lives no longer
     * than it). */
    datos_secret_t *l2_secret;
} mod_datos_global_t;

extern mod_datos_global_t mod_datos_global;

/* Host-wide state of a store, in shared memory: atomics only. */
typedef struct mod_datos_host_t {
    volatile apr_uint64_t
        fetched; /* fetch time of the newest answer any process holds */
    volatile apr_uint64_t
        next_attempt; /* no query before this, after a failure */
    volatile apr_uint64_t last_status; /* the failure that set next_attempt */
} mod_datos_host_t;

struct mod_datos_rt_t;
struct mod_datos_refresher_t;

/* One cache entry of the host: what every runtime whose settings shape
 * the same answer (the same entry key) shares, so they fetch once, store
 * in one place and write one state file under one mutex. */
typedef struct mod_datos_store_t {
    int index;                 /* mutex instance, host state */
    const char *key;           /* "datos:v1:<32 hex>" */
    const char *lease_key;     /* key + ":refreshing", fleets only */
    const char *state_file;    /* NULL: no state directory */
    struct mod_datos_rt_t *rt; /* the first runtime: its client fetches */
    apr_size_t envelope_max;
    datos_answer_opts_t answer_opts;
    datos_seal_t l2_seal;    /* entries and leases in the shared tier */
    datos_seal_t state_seal; /* the state file (the directory's secret) */
    apr_global_mutex_t *refresh_mutex;
    mod_datos_host_t *host; /* in shared memory */
    int metrics_table;
    /* The state file's answer, read by the parent in post_config and
     * handed to every child (copy on write). */
    datos_answer_t *seed;
    apr_pool_t *seed_pool;

    /* Per process (child_init). */
    datos_process_cache_t *l1;
    apr_thread_mutex_t *proc_mutex; /* the fields below */
    apr_time_t l2_down_until; /* a failing shared tier is skipped until then */
    apr_time_t l2_checked;    /* last look at a fleet cache while stale */
    apr_time_t oversize_logged;     /* once per window */
    mod_datos_log_window_t errors;  /* one fetch error line per window */
    mod_datos_log_window_t refused; /* one refused-entry line per window */
    struct mod_datos_refresher_t *refresher;
} mod_datos_store_t;

/* One runtime per distinct configuration: the credentials, the BigQuery
 * client, and the store of its answer. */
typedef struct mod_datos_rt_t {
    int index;              /* metrics table, runtimes[] */
    const char *id;         /* the settings that made it, for the registry */
    mod_datos_conf_t *conf; /* the first configuration that asked for it */
    server_rec *s;
    datos_creds_t *creds;
    datos_bq_t *bq;
    datos_answer_opts_t answer_opts;
    const char *cache_control; /* of every 200 and 304 */
    mod_datos_store_t *store;  /* NULL: DatosFreshFor 0 */
    int metrics_table;

    /* Per process (child_init). */
    apr_thread_mutex_t *proc_mutex; /* errors */
    mod_datos_log_window_t errors;  /* DatosFreshFor 0: one line a window */
    volatile apr_uint32_t
        waiting; /* requests of this process waiting on BigQuery */
} mod_datos_rt_t;

/* pre_config: mutex types; post_config: the runtimes, the stores, the
 * shared tier, the secrets, the mutexes and the shared memory;
 * child_init: their per-process side. Errors are logged where they
 * happen; a non-OK return stops httpd. */
int mod_datos_runtime_pre_config(apr_pool_t *pconf);
int mod_datos_runtime_post_config(apr_pool_t *pconf, apr_pool_t *ptemp,
                                  server_rec *s);
void mod_datos_runtime_child_init(apr_pool_t *pchild, server_rec *s);

/* The runtimes (mod_datos_rt_t *) and stores (mod_datos_store_t *) of the
 * running configuration, in the order of their index; NULL before
 * post_config made them. */
const apr_array_header_t *mod_datos_runtimes(void);
const apr_array_header_t *mod_datos_stores(void);

#endif
