/* datos_metrics.h - the module's Prometheus metrics, kept in memory that
 * every httpd process shares, updated with atomic operations only.
 *
 * mod_datos maps one block of shared memory (datos_metrics_size() bytes)
 * before httpd forks; each process counts into it without a lock, and the
 * datos-metrics handler renders the sums in the Prometheus text format
 * 0.0.4 (what `promtool check metrics` accepts). Nothing here takes a
 * lock, so a scrape never waits for a cache or a fetch.
 *
 * Metrics:
 *   datos_http_requests_total{handler,code}         counter
 *   datos_http_request_duration_seconds{handler}    histogram
 *   datos_cache_lookups_total{tier,result}          counter
 *   datos_backend_queries_total{outcome}            counter
 *   datos_backend_query_duration_seconds            histogram
 *   datos_backend_bytes_processed_total             counter
 *   datos_backend_bytes_billed_total                counter
 *   datos_cache_store_failures_total{tier}          counter
 *   datos_cache_oversized_total                     counter
 *   datos_cache_entries_refused_total{tier,reason}  counter (entries not trusted: seal, future)
 *   datos_cache_age_seconds{table}                  gauge (now - fetch time of the newest answer)
 *   datos_backend_last_success_timestamp_seconds{table} gauge
 *   datos_backend_waiting_requests                  gauge (requests waiting on BigQuery, host-wide)
 *   datos_backend_wait_rejected_total               counter (503s because too many waited)
 *   datos_keepalive_lingers_total{outcome}          counter (DatosKeepAliveLinger waits)
 *   datos_ingest_requests_total{code}               counter
 *   datos_ingest_publish_duration_seconds           histogram
 */
#ifndef DATOS_METRICS_H
#define DATOS_METRICS_H

#include <apr_pools.h>
#include <apr_time.h>

typedef enum {
    DATOS_HANDLER_DATOS = 0, /* "datos" */
    DATOS_HANDLER_HEALTH,    /* "health" */
    DATOS_HANDLER_METRICS,   /* "metrics" */
    DATOS_HANDLER_INGEST,    /* "ingest" (POST /datos) */
    DATOS_HANDLER_COUNT
} datos_handler_t;

typedef enum {
    DATOS_TIER_L1 = 0, /* "process" */
    DATOS_TIER_L2,     /* "shared" */
    DATOS_TIER_STATE,  /* "state_dir" */
    DATOS_TIER_COUNT
} datos_tier_t;

/* Why an entry read from a cache tier was not trusted. */
typedef enum {
    DATOS_REFUSED_SEAL = 0, /* "seal": not sealed with this tier's secret
                               under this key, or changed */
    DATOS_REFUSED_FUTURE,   /* "future": fetched later than now allows */
    DATOS_REFUSED_COUNT
} datos_refused_t;

/* How a worker's wait for a kept-alive connection's next request ended
 * (DatosKeepAliveLinger). */
typedef enum {
    DATOS_LINGER_REQUEST = 0, /* "request": it came, and the worker reads it */
    DATOS_LINGER_IDLE,        /* "idle": none came; back to the MPM's poll */
    DATOS_LINGER_CLOSED,      /* "closed": the client closed the connection */
    DATOS_LINGER_SKIPPED,     /* "skipped": half the process's workers were
                                 waiting already */
    DATOS_LINGER_COUNT
} datos_linger_t;

typedef enum {
    DATOS_LOOKUP_HIT = 0, /* "hit": fresh */
    DATOS_LOOKUP_STALE,   /* "stale": past its freshness, servable */
    DATOS_LOOKUP_MISS,    /* "miss" */
    DATOS_LOOKUP_ERROR,   /* "error": the tier failed (not a miss) */
    DATOS_LOOKUP_COUNT
} datos_lookup_t;

/* Tables whose age and last success are reported separately; further
 * tables share the last one's gauges. */
#define DATOS_METRICS_TABLES 16

typedef struct datos_metrics_t datos_metrics_t;

/* Bytes of shared memory the metrics take; the memory must be zeroed (or
 * passed through datos_metrics_init) before first use, and aligned to 8. */
apr_size_t datos_metrics_size(void);
datos_metrics_t *datos_metrics_init(void *mem);
/* Whether mem is a block of this layout (a block kept across a graceful
 * restart may come from an older module). */
int datos_metrics_current(const void *mem);

/* The index of a table's gauges (0..DATOS_METRICS_TABLES-1): the first
 * call with a name takes a free index, later ones find it. Call in the
 * parent (post_config), before any process counts. The name is kept in the
 * block (cut on a UTF-8 boundary past 2111 bytes) as the table label. */
int datos_metrics_table(datos_metrics_t *m, const char *table);

/* Counting; m may be NULL (then nothing happens). code is the HTTP status
 * sent; codes outside 100..599 count as 0. */
void datos_metrics_request(datos_metrics_t *m, datos_handler_t h, int code,
                           apr_interval_time_t duration);
void datos_metrics_lookup(datos_metrics_t *m, datos_tier_t tier,
                          datos_lookup_t result);
/* outcome: "ok" or a datos_status_name() ("timeout", "backend_error"...). */
void datos_metrics_backend(datos_metrics_t *m, const char *outcome,
                           apr_interval_time_t duration,
                           apr_int64_t bytes_processed);
/* What BigQuery billed a successful fetch (totalBytesBilled, or its rule
 * when the answer does not say). */
void datos_metrics_backend_billed(datos_metrics_t *m, apr_int64_t bytes_billed);
void datos_metrics_store_failure(datos_metrics_t *m, datos_tier_t tier);
void datos_metrics_oversized(datos_metrics_t *m);
void datos_metrics_linger(datos_metrics_t *m, datos_linger_t outcome);
void datos_metrics_refused(datos_metrics_t *m, datos_tier_t tier,
                           datos_refused_t why);
/* Both gauges only move forward: a process reporting an older answer (or
 * success) than another already did leaves them as they are. */
void datos_metrics_fetched(datos_metrics_t *m, int table, apr_time_t fetched);
void datos_metrics_success(datos_metrics_t *m, int table, apr_time_t when);
/* publish_duration <= 0: nothing was published (a 400, 413 or 415), so
 * only the code counts. */
void datos_metrics_ingest(datos_metrics_t *m, int code,
                          apr_interval_time_t publish_duration);

/* The host-wide count of requests that wait on BigQuery (in a fetch, or
 * for another request's fetch), kept here because every process shares
 * this memory. enter returns 1 and counts the request while fewer than
 * bound wait; otherwise it returns 0 and counts a rejection. Each enter
 * that returned 1 is paired with one leave. With m NULL there is no
 * shared count and enter always returns 1. */
int datos_metrics_wait_enter(datos_metrics_t *m, int bound);
void datos_metrics_wait_leave(datos_metrics_t *m);

/* ------------------------------------------------ the status page's part
 *
 * What GET /datos-status shows beyond the series above: the last fetches
 * of each table (a ring of DATOS_METRICS_FETCHES in the block, so every
 * process's fetches are seen and a graceful restart keeps them) and the
 * answers the quick path served. None of it is rendered in /metrics. */

#define DATOS_METRICS_FETCHES 20

typedef struct datos_fetch_rec_t {
    apr_time_t started;           /* when the fetch began */
    apr_interval_time_t duration; /* how long it took, whatever its outcome */
    int pages;                    /* answers read (datos_latest_t.pages) */
    int rows;                     /* rows of the answer */
    apr_int64_t bytes_processed;  /* -1: not known (a failed fetch) */
    apr_int64_t bytes_billed;     /* -1: not known */
    const char *outcome;          /* "ok" or a datos_status_name(); static */
} datos_fetch_rec_t;

/* Records one fetch of a table (an index of datos_metrics_table). Two
 * fetches of one table recorded at once each take a slot of their own;
 * a reader skips a slot being written. */
void datos_metrics_fetch_log(datos_metrics_t *m, int table,
                             const datos_fetch_rec_t *f);
/* The table's recorded fetches, newest first, into out (room for
 * DATOS_METRICS_FETCHES); returns how many. */
int datos_metrics_fetches(const datos_metrics_t *m, int table,
                          datos_fetch_rec_t *out);
/* An answer the quick path served (200 or 304). */
void datos_metrics_quick(datos_metrics_t *m);

/* The counters, read once each (not a consistent snapshot). */
typedef struct datos_metrics_counts_t {
    unsigned long long lookups[DATOS_TIER_COUNT][DATOS_LOOKUP_COUNT];
    unsigned long long refused[DATOS_TIER_COUNT][DATOS_REFUSED_COUNT];
    unsigned long long store_failures[DATOS_TIER_COUNT];
    unsigned long long oversized;
    unsigned long long quick;
    unsigned long long linger[DATOS_LINGER_COUNT];
    unsigned long long backend_ok, backend_failed, backend_bytes;
    long long waiting;
    unsigned long long wait_rejected;
    /* POST /datos by status: [code] for 100..599, [0] anything else. */
    unsigned long long ingest[600];
} datos_metrics_counts_t;

void datos_metrics_counts(const datos_metrics_t *m, datos_metrics_counts_t *c);

/* The tier, result and refusal names /metrics uses as labels. */
const char *datos_metrics_tier_name(datos_tier_t tier);
const char *datos_metrics_lookup_name(datos_lookup_t result);
const char *datos_metrics_refused_name(datos_refused_t why);
const char *datos_metrics_linger_name(datos_linger_t outcome);

/* The text exposition at `now`, in p; NULL when m is not a block that
 * datos_metrics_init (or zeroing) prepared. */
char *datos_metrics_render(apr_pool_t *p, const datos_metrics_t *m,
                           apr_time_t now, apr_size_t *len);

#endif
