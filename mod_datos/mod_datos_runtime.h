/* mod_datos_runtime.h - what post_config makes of the configuration: one
 * runtime per distinct configuration, the shared tier and the memory
 * every process of the host shares.
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
#include "mod_datos_config.h"
#include "mod_datos_reply.h"

/* Mutex types, for the Mutex directive. */
#define MOD_DATOS_REFRESH_MUTEX "datos-refresh"
#define MOD_DATOS_CACHE_MUTEX   "datos-cache"

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
typedef struct mod_datos_rt_t {
    int index;              /* mutex instance, metrics table, runtimes[] */
    const char *id;         /* the settings that made it, for the registry */
    mod_datos_conf_t *conf; /* the first configuration that asked for it */
    server_rec *s;
    datos_creds_t *creds;
    datos_bq_t *bq;
    const char *l2_key;     /* "datos:v1:<32 hex>" */
    const char *l2_marker;  /* l2_key + ":refreshing", fleets only */
    const char *state_file; /* NULL: no state directory */
    datos_seal_t seal;      /* of every entry this runtime stores */
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
    apr_time_t oversize_logged;    /* once per window */
    mod_datos_log_window_t errors; /* one error line per window */
    volatile apr_uint32_t
        waiting; /* requests of this process waiting on BigQuery */
} mod_datos_rt_t;

/* pre_config: mutex types; post_config: the runtimes, the shared tier,
 * the mutexes and the shared memory; child_init: their per-process side.
 * Errors are logged where they happen; a non-OK return stops httpd. */
int mod_datos_runtime_pre_config(apr_pool_t *pconf);
int mod_datos_runtime_post_config(apr_pool_t *pconf, apr_pool_t *ptemp,
                                  server_rec *s);
void mod_datos_runtime_child_init(apr_pool_t *pchild, server_rec *s);

/* The runtimes of the running configuration (mod_datos_rt_t *), in the
 * order of their index; NULL before post_config made them. */
const apr_array_header_t *mod_datos_runtimes(void);

#endif
