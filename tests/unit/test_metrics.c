/* test_metrics.c - the shared metrics block: exact sums from many threads
 * and forked processes, the wait bound under races, and the exposition
 * text line by line and through promtool. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dt_support.h"
#include "datos_metrics.h"

#define SEC(s) apr_time_from_sec(s)

/* A block in memory like mod_datos's: anonymous, shared, page-aligned. */
static datos_metrics_t *map_block(apr_size_t extra, void **tail)
{
    apr_size_t size = datos_metrics_size();
    void *mem = mmap(NULL, size + extra, PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    datos_metrics_t *m;

    assert_true(mem != MAP_FAILED);
    memset(mem, 0xA5, size + extra); /* init must not rely on zeroed pages */
    m = datos_metrics_init(mem);
    assert_ptr_equal(m, mem);
    if (tail) {
        *tail = (char *)mem + size;
        memset(*tail, 0, extra);
    }
    return m;
}

static void unmap_block(datos_metrics_t *m, apr_size_t extra)
{
    munmap(m, datos_metrics_size() + extra);
}

static char *render(apr_pool_t *p, const datos_metrics_t *m, apr_time_t now)
{
    apr_size_t len = 12345;
    char *text = datos_metrics_render(p, m, now, &len);

    assert_non_null(text);
    assert_int_equal(len, strlen(text));
    assert_true(len > 0 && text[len - 1] == '\n');
    return text;
}

/* The value of one series (name and labels exactly as rendered); fails
 * the test when the series is absent. */
static const char *series_text(apr_pool_t *p, const char *text,
                               const char *series)
{
    const char *key = apr_pstrcat(p, "\n", series, " ", NULL);
    const char *at = strstr(text, key);
    const char *end;

    if (!at) {
        fail_msg("no series %s in:\n%s", series, text);
    }
    at += strlen(key);
    end = strchr(at, '\n');
    return apr_pstrndup(p, at, (apr_size_t)(end - at));
}

static unsigned long long series_value(apr_pool_t *p, const char *text,
                                       const char *series)
{
    const char *v = series_text(p, text, series);
    char *end;
    unsigned long long n = strtoull(v, &end, 10);

    if (*end) {
        fail_msg("%s has a non-integer value '%s'", series, v);
    }
    return n;
}

static int has_series(apr_pool_t *p, const char *text, const char *series)
{
    return strstr(text, apr_pstrcat(p, "\n", series, " ", NULL)) != NULL;
}

/* Compares the whole text with the expected lines, naming the first one
 * that differs. */
static void lines_are(const char *text, const char *const *want, size_t n)
{
    size_t i;
    const char *line = text;

    for (i = 0; i < n; i++) {
        const char *nl = strchr(line, '\n');
        size_t len;
        if (!nl) {
            fail_msg("line %zu: text ends; want '%s'", i + 1, want[i]);
        }
        len = (size_t)(nl - line);
        if (len != strlen(want[i]) || memcmp(line, want[i], len) != 0) {
            fail_msg("line %zu: got '%.*s'\n          want '%s'", i + 1,
                     (int)len, line, want[i]);
        }
        line = nl + 1;
    }
    if (*line) {
        fail_msg("extra text after line %zu: '%s'", n, line);
    }
}

/* ------------------------------------------------------------ layout */

static void atomics_are_lock_free(void **state)
{
    atomic_ullong u;
    atomic_llong s;
    (void)state;

    /* Lock-based atomics keep their locks in process-private memory and
     * would not exclude another httpd child: the block needs these. */
    atomic_init(&u, 0);
    atomic_init(&s, 0);
    assert_true(atomic_is_lock_free(&u));
    assert_true(atomic_is_lock_free(&s));
    assert_int_equal(ATOMIC_LLONG_LOCK_FREE, 2);
    assert_int_equal(sizeof(u), 8);
}

static void init_prepares_the_block(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    apr_size_t size = datos_metrics_size();
    void *raw = apr_palloc(p, size + 16);
    char *aligned = (char *)(((uintptr_t)raw + 7) & ~(uintptr_t)7);
    datos_metrics_t *m;
    char *fresh, *zeroed;

    assert_true(size > 0);
    assert_int_equal(size % 64, 0);
    assert_null(datos_metrics_init(aligned + 4)); /* not 8-aligned */
    assert_null(datos_metrics_init(NULL));

    /* Garbage is not a block; init turns it into an empty one. */
    memset(aligned, 0x5A, size);
    assert_null(
        datos_metrics_render(p, (datos_metrics_t *)aligned, SEC(1), NULL));
    assert_false(datos_metrics_current(aligned));
    m = datos_metrics_init(aligned);
    assert_ptr_equal(m, aligned);
    /* a block kept across a graceful restart is reused only when it is of
     * this layout */
    assert_true(datos_metrics_current(aligned));
    assert_false(datos_metrics_current(aligned + 4));
    assert_false(datos_metrics_current(NULL));
    fresh = render(p, m, SEC(1));
    assert_int_equal(
        series_value(p, fresh, "datos_backend_bytes_processed_total"), 0);
    assert_int_equal(series_value(p, fresh, "datos_backend_waiting_requests"),
                     0);
    assert_null(strstr(fresh, "datos_http_requests_total{"));

    /* Zeroed memory counts and renders the same as an initialised block. */
    memset(aligned, 0, size);
    zeroed = render(p, (datos_metrics_t *)aligned, SEC(1));
    assert_string_equal(zeroed, fresh);
    datos_metrics_oversized((datos_metrics_t *)aligned);
    zeroed = render(p, (datos_metrics_t *)aligned, SEC(1));
    assert_int_equal(series_value(p, zeroed, "datos_cache_oversized_total"), 1);

    assert_null(datos_metrics_render(p, NULL, SEC(1), NULL));
}

/* ------------------------------------------------------------ exact text */

static const char *const known_text[] = {
    "# HELP datos_http_requests_total Requests answered by the module's handlers, by handler and HTTP status sent.",
    "# TYPE datos_http_requests_total counter",
    "datos_http_requests_total{handler=\"datos\",code=\"200\"} 2",
    "datos_http_requests_total{handler=\"datos\",code=\"503\"} 1",
    "datos_http_requests_total{handler=\"health\",code=\"200\"} 1",
    "datos_http_requests_total{handler=\"metrics\",code=\"0\"} 1",
    "datos_http_requests_total{handler=\"ingest\",code=\"202\"} 1",
    "# HELP datos_http_request_duration_seconds Time the module's handlers took to answer, by handler.",
    "# TYPE datos_http_request_duration_seconds histogram",
    "datos_http_request_duration_seconds_bucket{handler=\"datos\",le=\"0.0005\"} 2",
    "datos_http_request_duration_seconds_bucket{handler=\"datos\",le=\"0.001\"} 2",
    "datos_http_request_duration_seconds_bucket{handler=\"datos\",le=\"0.0025\"} 2",
    "datos_http_request_duration_seconds_bucket{handler=\"datos\",le=\"0.005\"} 2",
    "datos_http_request_duration_seconds_bucket{handler=\"datos\",le=\"0.01\"} 2",
    "datos_http_request_duration_seconds_bucket{handler=\"datos\",le=\"0.025\"} 2",
    "datos_http_request_duration_seconds_bucket{handler=\"datos\",le=\"0.05\"} 2",
    "datos_http_request_duration_seconds_bucket{handler=\"datos\",le=\"0.1\"} 2",
    "datos_http_request_duration_seconds_bucket{handler=\"datos\",le=\"0.25\"} 2",
    "datos_http_request_duration_seconds_bucket{handler=\"datos\",le=\"0.5\"} 2",
    "datos_http_request_duration_seconds_bucket{handler=\"datos\",le=\"1\"} 2",
    "datos_http_request_duration_seconds_bucket{handler=\"datos\",le=\"2.5\"} 2",
    "datos_http_request_duration_seconds_bucket{handler=\"datos\",le=\"5\"} 2",
    "datos_http_request_duration_seconds_bucket{handler=\"datos\",le=\"10\"} 3",
    "datos_http_request_duration_seconds_bucket{handler=\"datos\",le=\"+Inf\"} 3",
    "datos_http_request_duration_seconds_sum{handler=\"datos\"} 5.000901",
    "datos_http_request_duration_seconds_count{handler=\"datos\"} 3",
    "datos_http_request_duration_seconds_bucket{handler=\"health\",le=\"0.0005\"} 0",
    "datos_http_request_duration_seconds_bucket{handler=\"health\",le=\"0.001\"} 1",
    "datos_http_request_duration_seconds_bucket{handler=\"health\",le=\"0.0025\"} 1",
    "datos_http_request_duration_seconds_bucket{handler=\"health\",le=\"0.005\"} 1",
    "datos_http_request_duration_seconds_bucket{handler=\"health\",le=\"0.01\"} 1",
    "datos_http_request_duration_seconds_bucket{handler=\"health\",le=\"0.025\"} 1",
    "datos_http_request_duration_seconds_bucket{handler=\"health\",le=\"0.05\"} 1",
    "datos_http_request_duration_seconds_bucket{handler=\"health\",le=\"0.1\"} 1",
    "datos_http_request_duration_seconds_bucket{handler=\"health\",le=\"0.25\"} 1",
    "datos_http_request_duration_seconds_bucket{handler=\"health\",le=\"0.5\"} 1",
    "datos_http_request_duration_seconds_bucket{handler=\"health\",le=\"1\"} 1",
    "datos_http_request_duration_seconds_bucket{handler=\"health\",le=\"2.5\"} 1",
    "datos_http_request_duration_seconds_bucket{handler=\"health\",le=\"5\"} 1",
    "datos_http_request_duration_seconds_bucket{handler=\"health\",le=\"10\"} 1",
    "datos_http_request_duration_seconds_bucket{handler=\"health\",le=\"+Inf\"} 1",
    "datos_http_request_duration_seconds_sum{handler=\"health\"} 0.001",
    "datos_http_request_duration_seconds_count{handler=\"health\"} 1",
    "datos_http_request_duration_seconds_bucket{handler=\"metrics\",le=\"0.0005\"} 0",
    "datos_http_request_duration_seconds_bucket{handler=\"metrics\",le=\"0.001\"} 0",
    "datos_http_request_duration_seconds_bucket{handler=\"metrics\",le=\"0.0025\"} 0",
    "datos_http_request_duration_seconds_bucket{handler=\"metrics\",le=\"0.005\"} 0",
    "datos_http_request_duration_seconds_bucket{handler=\"metrics\",le=\"0.01\"} 0",
    "datos_http_request_duration_seconds_bucket{handler=\"metrics\",le=\"0.025\"} 0",
    "datos_http_request_duration_seconds_bucket{handler=\"metrics\",le=\"0.05\"} 0",
    "datos_http_request_duration_seconds_bucket{handler=\"metrics\",le=\"0.1\"} 0",
    "datos_http_request_duration_seconds_bucket{handler=\"metrics\",le=\"0.25\"} 0",
    "datos_http_request_duration_seconds_bucket{handler=\"metrics\",le=\"0.5\"} 0",
    "datos_http_request_duration_seconds_bucket{handler=\"metrics\",le=\"1\"} 0",
    "datos_http_request_duration_seconds_bucket{handler=\"metrics\",le=\"2.5\"} 0",
    "datos_http_request_duration_seconds_bucket{handler=\"metrics\",le=\"5\"} 0",
    "datos_http_request_duration_seconds_bucket{handler=\"metrics\",le=\"10\"} 0",
    "datos_http_request_duration_seconds_bucket{handler=\"metrics\",le=\"+Inf\"} 1",
    "datos_http_request_duration_seconds_sum{handler=\"metrics\"} 12",
    "datos_http_request_duration_seconds_count{handler=\"metrics\"} 1",
    "datos_http_request_duration_seconds_bucket{handler=\"ingest\",le=\"0.0005\"} 0",
    "datos_http_request_duration_seconds_bucket{handler=\"ingest\",le=\"0.001\"} 0",
    "datos_http_request_duration_seconds_bucket{handler=\"ingest\",le=\"0.0025\"} 0",
    "datos_http_request_duration_seconds_bucket{handler=\"ingest\",le=\"0.005\"} 0",
    "datos_http_request_duration_seconds_bucket{handler=\"ingest\",le=\"0.01\"} 0",
    "datos_http_request_duration_seconds_bucket{handler=\"ingest\",le=\"0.025\"} 0",
    "datos_http_request_duration_seconds_bucket{handler=\"ingest\",le=\"0.05\"} 1",
    "datos_http_request_duration_seconds_bucket{handler=\"ingest\",le=\"0.1\"} 1",
    "datos_http_request_duration_seconds_bucket{handler=\"ingest\",le=\"0.25\"} 1",
    "datos_http_request_duration_seconds_bucket{handler=\"ingest\",le=\"0.5\"} 1",
    "datos_http_request_duration_seconds_bucket{handler=\"ingest\",le=\"1\"} 1",
    "datos_http_request_duration_seconds_bucket{handler=\"ingest\",le=\"2.5\"} 1",
    "datos_http_request_duration_seconds_bucket{handler=\"ingest\",le=\"5\"} 1",
    "datos_http_request_duration_seconds_bucket{handler=\"ingest\",le=\"10\"} 1",
    "datos_http_request_duration_seconds_bucket{handler=\"ingest\",le=\"+Inf\"} 1",
    "datos_http_request_duration_seconds_sum{handler=\"ingest\"} 0.03",
    "datos_http_request_duration_seconds_count{handler=\"ingest\"} 1",
    "# HELP datos_cache_lookups_total Cache lookups by tier and result (hit fresh, stale servable, miss, error of the tier).",
    "# TYPE datos_cache_lookups_total counter",
    "datos_cache_lookups_total{tier=\"process\",result=\"hit\"} 2",
    "datos_cache_lookups_total{tier=\"process\",result=\"stale\"} 0",
    "datos_cache_lookups_total{tier=\"process\",result=\"miss\"} 0",
    "datos_cache_lookups_total{tier=\"process\",result=\"error\"} 0",
    "datos_cache_lookups_total{tier=\"shared\",result=\"hit\"} 0",
    "datos_cache_lookups_total{tier=\"shared\",result=\"stale\"} 0",
    "datos_cache_lookups_total{tier=\"shared\",result=\"miss\"} 1",
    "datos_cache_lookups_total{tier=\"shared\",result=\"error\"} 0",
    "datos_cache_lookups_total{tier=\"state_dir\",result=\"hit\"} 0",
    "datos_cache_lookups_total{tier=\"state_dir\",result=\"stale\"} 0",
    "datos_cache_lookups_total{tier=\"state_dir\",result=\"miss\"} 0",
    "datos_cache_lookups_total{tier=\"state_dir\",result=\"error\"} 1",
    "# HELP datos_backend_queries_total BigQuery fetches by outcome: ok or the class of the failure.",
    "# TYPE datos_backend_queries_total counter",
    "datos_backend_queries_total{outcome=\"ok\"} 1",
    "datos_backend_queries_total{outcome=\"timeout\"} 1",
    "datos_backend_queries_total{outcome=\"connect_error\"} 0",
    "datos_backend_queries_total{outcome=\"backend_error\"} 0",
    "datos_backend_queries_total{outcome=\"malformed\"} 0",
    "datos_backend_queries_total{outcome=\"rate_limited\"} 0",
    "datos_backend_queries_total{outcome=\"quota\"} 0",
    "datos_backend_queries_total{outcome=\"auth\"} 0",
    "datos_backend_queries_total{outcome=\"rejected\"} 0",
    "datos_backend_queries_total{outcome=\"bytes_limit\"} 0",
    "datos_backend_queries_total{outcome=\"too_large\"} 0",
    "datos_backend_queries_total{outcome=\"config\"} 0",
    "datos_backend_queries_total{outcome=\"insecure_url\"} 0",
    "datos_backend_queries_total{outcome=\"error\"} 2",
    "# HELP datos_backend_query_duration_seconds Time each BigQuery fetch took, whatever its outcome.",
    "# TYPE datos_backend_query_duration_seconds histogram",
    "datos_backend_query_duration_seconds_bucket{le=\"0.05\"} 0",
    "datos_backend_query_duration_seconds_bucket{le=\"0.1\"} 0",
    "datos_backend_query_duration_seconds_bucket{le=\"0.25\"} 1",
    "datos_backend_query_duration_seconds_bucket{le=\"0.5\"} 1",
    "datos_backend_query_duration_seconds_bucket{le=\"1\"} 1",
    "datos_backend_query_duration_seconds_bucket{le=\"2.5\"} 1",
    "datos_backend_query_duration_seconds_bucket{le=\"5\"} 2",
    "datos_backend_query_duration_seconds_bucket{le=\"10\"} 2",
    "datos_backend_query_duration_seconds_bucket{le=\"20\"} 2",
    "datos_backend_query_duration_seconds_bucket{le=\"30\"} 3",
    "datos_backend_query_duration_seconds_bucket{le=\"+Inf\"} 4",
    "datos_backend_query_duration_seconds_sum 66.25",
    "datos_backend_query_duration_seconds_count 4",
    "# HELP datos_backend_bytes_processed_total Bytes BigQuery reported as processed by the module's queries.",
    "# TYPE datos_backend_bytes_processed_total counter",
    "datos_backend_bytes_processed_total 1048576",
    "# HELP datos_backend_bytes_billed_total Bytes BigQuery billed for the module's queries (at least 10 MiB a query).",
    "# TYPE datos_backend_bytes_billed_total counter",
    "datos_backend_bytes_billed_total 10485760",
    "# HELP datos_cache_store_failures_total Fetched answers a cache tier failed to store, by tier.",
    "# TYPE datos_cache_store_failures_total counter",
    "datos_cache_store_failures_total{tier=\"process\"} 0",
    "datos_cache_store_failures_total{tier=\"shared\"} 1",
    "datos_cache_store_failures_total{tier=\"state_dir\"} 0",
    "# HELP datos_cache_oversized_total Answers larger than DatosMaxPayload, kept in process memory only.",
    "# TYPE datos_cache_oversized_total counter",
    "datos_cache_oversized_total 1",
    "# HELP datos_cache_entries_refused_total Entries read from a cache tier and refused as untrusted: a seal that does not match (another secret, key or bytes), or a fetch time in the future.",
    "# TYPE datos_cache_entries_refused_total counter",
    "datos_cache_entries_refused_total{tier=\"shared\",reason=\"seal\"} 2",
    "datos_cache_entries_refused_total{tier=\"shared\",reason=\"future\"} 0",
    "datos_cache_entries_refused_total{tier=\"state_dir\",reason=\"seal\"} 0",
    "datos_cache_entries_refused_total{tier=\"state_dir\",reason=\"future\"} 1",
    "# HELP datos_cache_age_seconds Seconds since the newest answer for the table was fetched from BigQuery.",
    "# TYPE datos_cache_age_seconds gauge",
    "datos_cache_age_seconds{table=\"latam_dataset.datos\"} 12.5",
    "# HELP datos_backend_last_success_timestamp_seconds Unix time of the last successful BigQuery fetch for the table.",
    "# TYPE datos_backend_last_success_timestamp_seconds gauge",
    "datos_backend_last_success_timestamp_seconds{table=\"latam_dataset.datos\"} 1705240800.25",
    "# HELP datos_backend_waiting_requests Requests on this host waiting on BigQuery now, in a fetch or for another request's fetch.",
    "# TYPE datos_backend_waiting_requests gauge",
    "datos_backend_waiting_requests 1",
    "# HELP datos_backend_wait_rejected_total Requests answered 503 because the bound on requests waiting on BigQuery was reached.",
    "# TYPE datos_backend_wait_rejected_total counter",
    "datos_backend_wait_rejected_total 1",
    "# HELP datos_keepalive_lingers_total Waits of the worker that answered /datos for its kept-alive connection's next request (DatosKeepAliveLinger), by how they ended.",
    "# TYPE datos_keepalive_lingers_total counter",
    "datos_keepalive_lingers_total{outcome=\"request\"} 2",
    "datos_keepalive_lingers_total{outcome=\"idle\"} 1",
    "datos_keepalive_lingers_total{outcome=\"closed\"} 0",
    "datos_keepalive_lingers_total{outcome=\"skipped\"} 1",
    "# HELP datos_ingest_requests_total POST /datos requests by HTTP status sent.",
    "# TYPE datos_ingest_requests_total counter",
    "datos_ingest_requests_total{code=\"202\"} 1",
    "datos_ingest_requests_total{code=\"400\"} 1",
    "# HELP datos_ingest_publish_duration_seconds Time each Pub/Sub publish of an ingested body took.",
    "# TYPE datos_ingest_publish_duration_seconds histogram",
    "datos_ingest_publish_duration_seconds_bucket{le=\"0.005\"} 0",
    "datos_ingest_publish_duration_seconds_bucket{le=\"0.01\"} 0",
    "datos_ingest_publish_duration_seconds_bucket{le=\"0.025\"} 0",
    "datos_ingest_publish_duration_seconds_bucket{le=\"0.05\"} 1",
    "datos_ingest_publish_duration_seconds_bucket{le=\"0.1\"} 1",
    "datos_ingest_publish_duration_seconds_bucket{le=\"0.25\"} 1",
    "datos_ingest_publish_duration_seconds_bucket{le=\"0.5\"} 1",
    "datos_ingest_publish_duration_seconds_bucket{le=\"1\"} 1",
    "datos_ingest_publish_duration_seconds_bucket{le=\"2.5\"} 1",
    "datos_ingest_publish_duration_seconds_bucket{le=\"5\"} 1",
    "datos_ingest_publish_duration_seconds_bucket{le=\"10\"} 1",
    "datos_ingest_publish_duration_seconds_bucket{le=\"+Inf\"} 1",
    "datos_ingest_publish_duration_seconds_sum 0.03",
    "datos_ingest_publish_duration_seconds_count 1",
};

/* The state behind known_text: a few of everything, with durations on
 * and just past bucket bounds (le is inclusive). */
static void count_known_state(datos_metrics_t *m)
{
    int t = datos_metrics_table(m, "latam_dataset.datos");
    apr_time_t fetched = SEC(1705240800) + 250000;

    assert_int_equal(t, 0);
    datos_metrics_request(m, DATOS_HANDLER_DATOS, 200, 400);
    datos_metrics_request(m, DATOS_HANDLER_DATOS, 200, 500);
    datos_metrics_request(m, DATOS_HANDLER_DATOS, 503, 5000001);
    datos_metrics_request(m, DATOS_HANDLER_HEALTH, 200, 1000);
    datos_metrics_request(m, DATOS_HANDLER_METRICS, 600, SEC(12));
    datos_metrics_request(m, DATOS_HANDLER_INGEST, 202, 30000);
    datos_metrics_lookup(m, DATOS_TIER_L1, DATOS_LOOKUP_HIT);
    datos_metrics_lookup(m, DATOS_TIER_L1, DATOS_LOOKUP_HIT);
    datos_metrics_lookup(m, DATOS_TIER_L2, DATOS_LOOKUP_MISS);
    datos_metrics_lookup(m, DATOS_TIER_STATE, DATOS_LOOKUP_ERROR);
    datos_metrics_backend(m, "ok", 250000, 1048576);
    datos_metrics_backend_billed(m, 10485760);
    datos_metrics_backend_billed(m, -1); /* not known: not counted */
    datos_metrics_backend(m, "timeout", SEC(5), 0);
    datos_metrics_backend(m, "no_such_outcome", SEC(31), -5);
    datos_metrics_backend(m, NULL, SEC(30), 0);
    datos_metrics_store_failure(m, DATOS_TIER_L2);
    datos_metrics_oversized(m);
    datos_metrics_refused(m, DATOS_TIER_L2, DATOS_REFUSED_SEAL);
    datos_metrics_refused(m, DATOS_TIER_L2, DATOS_REFUSED_SEAL);
    datos_metrics_refused(m, DATOS_TIER_STATE, DATOS_REFUSED_FUTURE);
    datos_metrics_fetched(m, t, fetched);
    datos_metrics_success(m, t, fetched);
    assert_int_equal(datos_metrics_wait_enter(m, 1), 1);
    assert_int_equal(datos_metrics_wait_enter(m, 1), 0);
    datos_metrics_ingest(m, 202, 30000);
    datos_metrics_ingest(m, 400, 0);
    datos_metrics_linger(m, DATOS_LINGER_REQUEST);
    datos_metrics_linger(m, DATOS_LINGER_REQUEST);
    datos_metrics_linger(m, DATOS_LINGER_IDLE);
    datos_metrics_linger(m, DATOS_LINGER_SKIPPED);
}

static void render_known_state(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_metrics_t *m = map_block(0, NULL);

    count_known_state(m);
    lines_are(render(p, m, SEC(1705240812) + 750000), known_text,
              sizeof(known_text) / sizeof(known_text[0]));
    unmap_block(m, 0);
}

static void out_of_range_arguments(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_metrics_t *m = map_block(0, NULL);
    char *text;
    int i;

    /* Nothing happens without a block, and nothing crashes. */
    datos_metrics_request(NULL, DATOS_HANDLER_DATOS, 200, 1);
    datos_metrics_lookup(NULL, DATOS_TIER_L1, DATOS_LOOKUP_HIT);
    datos_metrics_backend(NULL, "ok", 1, 1);
    datos_metrics_store_failure(NULL, DATOS_TIER_L1);
    datos_metrics_oversized(NULL);
    datos_metrics_refused(NULL, DATOS_TIER_L2, DATOS_REFUSED_SEAL);
    datos_metrics_fetched(NULL, 0, SEC(1));
    datos_metrics_success(NULL, 0, SEC(1));
    datos_metrics_ingest(NULL, 202, 1);
    datos_metrics_linger(NULL, DATOS_LINGER_REQUEST);
    datos_metrics_wait_leave(NULL);
    assert_int_equal(datos_metrics_wait_enter(NULL, 0), 1);
    assert_int_equal(datos_metrics_table(NULL, "x"), 0);

    /* Unknown enums and table indexes are dropped, not written past. */
    datos_metrics_request(m, (datos_handler_t)DATOS_HANDLER_COUNT, 200, 1);
    datos_metrics_request(m, (datos_handler_t)-1, 200, 1);
    datos_metrics_lookup(m, (datos_tier_t)DATOS_TIER_COUNT, DATOS_LOOKUP_HIT);
    datos_metrics_lookup(m, DATOS_TIER_L1, (datos_lookup_t)DATOS_LOOKUP_COUNT);
    datos_metrics_store_failure(m, (datos_tier_t)-1);
    datos_metrics_refused(m, (datos_tier_t)DATOS_TIER_COUNT,
                          DATOS_REFUSED_SEAL);
    datos_metrics_refused(m, DATOS_TIER_L2,
                          (datos_refused_t)DATOS_REFUSED_COUNT);
    datos_metrics_fetched(m, DATOS_METRICS_TABLES, SEC(5));
    datos_metrics_fetched(m, -1, SEC(5));
    datos_metrics_success(m, DATOS_METRICS_TABLES, SEC(5));
    datos_metrics_linger(m, (datos_linger_t)DATOS_LINGER_COUNT);
    datos_metrics_linger(m, (datos_linger_t)-1);
    assert_string_equal(datos_metrics_linger_name(DATOS_LINGER_SKIPPED),
                        "skipped");
    assert_string_equal(
        datos_metrics_linger_name((datos_linger_t)DATOS_LINGER_COUNT), "?");
    text = render(p, m, SEC(10));
    assert_null(strstr(text, "datos_http_requests_total{"));
    assert_null(strstr(text, "datos_cache_age_seconds{"));
    assert_null(strstr(text, "datos_backend_last_success_timestamp_seconds{"));
    assert_null(strstr(text, "} 1\n"));

    /* Statuses outside 100..599 count as code 0; the bounds themselves
     * are real codes. A negative duration counts as zero. */
    datos_metrics_request(m, DATOS_HANDLER_HEALTH, 99, -7);
    datos_metrics_request(m, DATOS_HANDLER_HEALTH, 100, 0);
    datos_metrics_request(m, DATOS_HANDLER_HEALTH, 599, 0);
    datos_metrics_request(m, DATOS_HANDLER_HEALTH, -200, 0);
    datos_metrics_ingest(m, 1000, -1);
    text = render(p, m, SEC(10));
    assert_int_equal(
        series_value(
            p, text,
            "datos_http_requests_total{handler=\"health\",code=\"0\"}"),
        2);
    assert_int_equal(
        series_value(
            p, text,
            "datos_http_requests_total{handler=\"health\",code=\"100\"}"),
        1);
    assert_int_equal(
        series_value(
            p, text,
            "datos_http_requests_total{handler=\"health\",code=\"599\"}"),
        1);
    assert_false(has_series(
        p, text, "datos_http_requests_total{handler=\"health\",code=\"99\"}"));
    assert_int_equal(
        series_value(
            p, text,
            "datos_http_request_duration_seconds_bucket{handler=\"health\",le=\"0.0005\"}"),
        4);
    assert_string_equal(
        series_text(
            p, text,
            "datos_http_request_duration_seconds_sum{handler=\"health\"}"),
        "0");
    assert_int_equal(
        series_value(p, text, "datos_ingest_requests_total{code=\"0\"}"), 1);
    assert_int_equal(
        series_value(p, text, "datos_ingest_publish_duration_seconds_count"),
        0);

    /* Every datos_status_name() is its own outcome. */
    {
        static const char *const names[] = {
            "ok",           "timeout",      "connect_error", "backend_error",
            "malformed",    "rate_limited", "quota",         "auth",
            "rejected",     "bytes_limit",  "too_large",     "config",
            "insecure_url", "error"};
        for (i = 0; i < (int)(sizeof(names) / sizeof(names[0])); i++) {
            int k;
            for (k = 0; k <= i; k++) {
                datos_metrics_backend(m, names[i], 1, 0);
            }
        }
        datos_metrics_backend(m, "TIMEOUT", 1, 0); /* unknown: error */
        text = render(p, m, SEC(10));
        for (i = 0; i < (int)(sizeof(names) / sizeof(names[0])); i++) {
            const char *s = apr_psprintf(
                p, "datos_backend_queries_total{outcome=\"%s\"}", names[i]);
            assert_int_equal(series_value(p, text, s),
                             (unsigned long long)i + 1
                                 + (strcmp(names[i], "error") == 0));
        }
    }
    unmap_block(m, 0);
}

/* ------------------------------------------------------------ tables */

static void table_gauges(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_metrics_t *m = map_block(0, NULL);
    const char *weird = "odd\"name\\with\nnewline";
    char *text;
    int i, a, b, w;

    a = datos_metrics_table(m, "ds.a");
    b = datos_metrics_table(m, "ds.b");
    w = datos_metrics_table(m, weird);
    assert_int_equal(a, 0);
    assert_int_equal(b, 1);
    assert_int_equal(w, 2);
    assert_int_equal(datos_metrics_table(m, "ds.a"), a);
    assert_int_equal(datos_metrics_table(m, weird), w);

    /* Only moves forward: a process with an older answer reports late. */
    datos_metrics_fetched(m, a, SEC(1000));
    datos_metrics_fetched(m, a, SEC(900));
    datos_metrics_success(m, a, SEC(1000));
    datos_metrics_success(m, a, SEC(990));
    /* A fetch time after `now` (clock stepped back) is age 0, not negative. */
    datos_metrics_fetched(m, b, SEC(2000));
    datos_metrics_fetched(m, w, SEC(1030) - 1);
    text = render(p, m, SEC(1030));
    assert_string_equal(
        series_text(p, text, "datos_cache_age_seconds{table=\"ds.a\"}"), "30");
    assert_string_equal(
        series_text(
            p, text,
            "datos_backend_last_success_timestamp_seconds{table=\"ds.a\"}"),
        "1000");
    assert_string_equal(
        series_text(p, text, "datos_cache_age_seconds{table=\"ds.b\"}"), "0");
    assert_false(has_series(
        p, text,
        "datos_backend_last_success_timestamp_seconds{table=\"ds.b\"}"));
    /* Escaped: backslash, quote and newline, each as the format says. */
    assert_string_equal(
        series_text(
            p, text,
            "datos_cache_age_seconds{table=\"odd\\\"name\\\\with\\nnewline\"}"),
        "0.000001");
    assert_null(strstr(text, "with\nnewline"));

    /* Past DATOS_METRICS_TABLES, names share the last index. */
    for (i = 3; i < DATOS_METRICS_TABLES; i++) {
        assert_int_equal(datos_metrics_table(m, apr_psprintf(p, "ds.t%d", i)),
                         i);
    }
    assert_int_equal(datos_metrics_table(m, "ds.one_too_many"),
                     DATOS_METRICS_TABLES - 1);
    assert_int_equal(datos_metrics_table(m, "ds.another"),
                     DATOS_METRICS_TABLES - 1);
    assert_int_equal(datos_metrics_table(m, "ds.b"), b);
    unmap_block(m, 0);
}

static void long_table_name_cut_on_utf8_boundary(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_metrics_t *m = map_block(0, NULL);
    /* 1100 two-byte characters: 2200 bytes, past the 2111 kept. */
    char *name = apr_palloc(p, 2201);
    char *kept;
    const char *label;
    int i, t;

    for (i = 0; i < 1100; i++) {
        name[2 * i] = (char)0xC3;
        name[2 * i + 1] = (char)0xA9; /* é */
    }
    name[2200] = '\0';
    t = datos_metrics_table(m, name);
    assert_int_equal(datos_metrics_table(m, name), t);
    datos_metrics_fetched(m, t, SEC(1));
    kept = apr_pstrndup(p, name, 2110); /* 1055 whole characters */
    label =
        apr_pstrcat(p, "datos_cache_age_seconds{table=\"", kept, "\"}", NULL);
    assert_string_equal(series_text(p, render(p, m, SEC(3)), label), "2");
    unmap_block(m, 0);
}

/* ------------------------------------------------------------ wait bound */

static void wait_bound_sequential(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_metrics_t *m = map_block(0, NULL);
    char *text;

    assert_int_equal(datos_metrics_wait_enter(m, 0), 0);
    assert_int_equal(datos_metrics_wait_enter(m, 2), 1);
    assert_int_equal(datos_metrics_wait_enter(m, 2), 1);
    assert_int_equal(datos_metrics_wait_enter(m, 2), 0);
    text = render(p, m, SEC(1));
    assert_int_equal(series_value(p, text, "datos_backend_waiting_requests"),
                     2);
    assert_int_equal(series_value(p, text, "datos_backend_wait_rejected_total"),
                     2);
    /* A larger bound (another vhost's) admits more. */
    assert_int_equal(datos_metrics_wait_enter(m, 3), 1);
    datos_metrics_wait_leave(m);
    datos_metrics_wait_leave(m);
    assert_int_equal(datos_metrics_wait_enter(m, 2), 1);
    datos_metrics_wait_leave(m);
    datos_metrics_wait_leave(m);
    /* An unpaired leave must not open an extra place. */
    datos_metrics_wait_leave(m);
    assert_int_equal(datos_metrics_wait_enter(m, 1), 1);
    assert_int_equal(datos_metrics_wait_enter(m, 1), 0);
    datos_metrics_wait_leave(m);
    text = render(p, m, SEC(1));
    assert_int_equal(series_value(p, text, "datos_backend_waiting_requests"),
                     0);
    assert_int_equal(series_value(p, text, "datos_backend_wait_rejected_total"),
                     3);
    unmap_block(m, 0);
}

/* What the racing waiters saw, in memory shared with forked children. */
typedef struct {
    atomic_llong inside; /* admitted and not yet leaving, as counted here */
    atomic_llong max_inside;
    atomic_ullong admitted;
    atomic_ullong rejected;
} wait_seen_t;

#define WAIT_BOUND  2
#define WAIT_ADMITS 16000 /* places each waiter takes before it stops */

typedef struct {
    datos_metrics_t *m;
    wait_seen_t *seen;
} wait_arg_t;

/* Keeps asking until admitted WAIT_ADMITS times, so every waiter stays in
 * the race to the end instead of spending its attempts while the places
 * are taken. */
static void *wait_worker(void *data)
{
    wait_arg_t *a = data;
    unsigned long long admitted = 0, rejected = 0;
    int k;

    while (admitted < WAIT_ADMITS) {
        long long now, max;
        if (!datos_metrics_wait_enter(a->m, WAIT_BOUND)) {
            if (++rejected % 64 == 0) {
                sched_yield(); /* let a holder that lost its core leave */
            }
            continue;
        }
        admitted++;
        /* Counted after enter and uncounted before leave, so this never
         * exceeds the block's own count: above the bound means the bound
         * let too many in. */
        now = atomic_fetch_add(&a->seen->inside, 1) + 1;
        max = atomic_load(&a->seen->max_inside);
        while (
            now > max
            && !atomic_compare_exchange_weak(&a->seen->max_inside, &max, now)) {
        }
        /* Hold the place a little, at times across a reschedule, so that
         * others arrive while it is taken. */
        for (k = 0; k < 100; k++) {
            atomic_signal_fence(memory_order_seq_cst);
        }
        if (admitted % 8 == 0) {
            sched_yield();
        }
        atomic_fetch_sub(&a->seen->inside, 1);
        datos_metrics_wait_leave(a->m);
    }
    atomic_fetch_add(&a->seen->admitted, admitted);
    atomic_fetch_add(&a->seen->rejected, rejected);
    return NULL;
}

static void wait_seen_check(apr_pool_t *p, const datos_metrics_t *m,
                            wait_seen_t *seen)
{
    char *text = render(p, m, SEC(1));
    long long max = atomic_load(&seen->max_inside);

    print_message(
        "wait race: %llu admitted, %llu rejected, at most %lld at once (bound %d)\n",
        (unsigned long long)atomic_load(&seen->admitted),
        (unsigned long long)atomic_load(&seen->rejected), max, WAIT_BOUND);
    /* Every place was taken at some moment (the race was real), never one
     * more. */
    assert_int_equal(max, WAIT_BOUND);
    assert_int_equal(series_value(p, text, "datos_backend_wait_rejected_total"),
                     atomic_load(&seen->rejected));
    assert_int_equal(series_value(p, text, "datos_backend_waiting_requests"),
                     0);
}

static void wait_bound_thread_race(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    enum {
        THREADS = 8
    };
    datos_metrics_t *m = map_block(0, NULL);
    wait_seen_t seen = {0};
    wait_arg_t arg = {m, &seen};
    pthread_t th[THREADS];
    int i;

    for (i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_create(&th[i], NULL, wait_worker, &arg), 0);
    }
    for (i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
    }
    wait_seen_check(p, m, &seen);
    unmap_block(m, 0);
}

/* ------------------------------------------------------------ exact sums */

/* A multiple of 12 and 20, so every (handler, code), (tier, result) and
 * duration pattern repeats a whole number of times. */
#define ITER            60000
#define BYTES_PER_QUERY 10
#define FETCH_BASE      SEC(1700000000)

static const int codes[3] = {200, 304, 503};
static const char *const outcomes[3] = {"ok", "timeout", "not_a_status_name"};

static void *count_worker(void *data)
{
    datos_metrics_t *m = data;
    int i;

    for (i = 0; i < ITER; i++) {
        datos_metrics_request(m, (datos_handler_t)(i % 4), codes[i % 3],
                              (apr_interval_time_t)(i % 5) * 1000);
        datos_metrics_lookup(m, (datos_tier_t)(i % 3), (datos_lookup_t)(i % 4));
        datos_metrics_backend(m, outcomes[i % 3], 1000, BYTES_PER_QUERY);
        datos_metrics_store_failure(m, (datos_tier_t)(i % 3));
        datos_metrics_oversized(m);
        datos_metrics_ingest(m, codes[i % 3], 2000);
        datos_metrics_fetched(m, 0, FETCH_BASE + i);
    }
    return NULL;
}

/* The sums `workers` count_worker runs must give, read from the text. */
static void counts_check(apr_pool_t *p, const datos_metrics_t *m, int workers)
{
    const unsigned long long n = (unsigned long long)workers * ITER;
    char *text = render(p, m, FETCH_BASE + ITER - 1 + SEC(2));
    int h, c, t, r;
    static const char *const handlers[4] = {"datos", "health", "metrics",
                                            "ingest"};
    static const char *const tiers[3] = {"process", "shared", "state_dir"};
    static const char *const results[4] = {"hit", "stale", "miss", "error"};

    for (h = 0; h < 4; h++) {
        for (c = 0; c < 3; c++) {
            assert_int_equal(
                series_value(
                    p, text,
                    apr_psprintf(
                        p,
                        "datos_http_requests_total{handler=\"%s\",code=\"%d\"}",
                        handlers[h], codes[c])),
                n / 12);
        }
        assert_int_equal(
            series_value(
                p, text,
                apr_psprintf(
                    p,
                    "datos_http_request_duration_seconds_count{handler=\"%s\"}",
                    handlers[h])),
            n / 4);
        /* Durations 0..4 ms, each n/20 times per handler: 0 and 1 ms
         * fall in le=0.001. */
        assert_int_equal(
            series_value(
                p, text,
                apr_psprintf(
                    p,
                    "datos_http_request_duration_seconds_bucket{handler=\"%s\",le=\"0.001\"}",
                    handlers[h])),
            n / 20 * 2);
        /* Sum: n/20 x (0+1+2+3+4) ms = n/2 ms, exact in microseconds. */
        assert_string_equal(
            series_text(
                p, text,
                apr_psprintf(
                    p,
                    "datos_http_request_duration_seconds_sum{handler=\"%s\"}",
                    handlers[h])),
            apr_psprintf(p, "%" APR_UINT64_T_FMT, (apr_uint64_t)(n / 2000)));
    }
    for (t = 0; t < 3; t++) {
        for (r = 0; r < 4; r++) {
            assert_int_equal(
                series_value(
                    p, text,
                    apr_psprintf(
                        p,
                        "datos_cache_lookups_total{tier=\"%s\",result=\"%s\"}",
                        tiers[t], results[r])),
                n / 12);
        }
        assert_int_equal(
            series_value(
                p, text,
                apr_psprintf(p, "datos_cache_store_failures_total{tier=\"%s\"}",
                             tiers[t])),
            n / 3);
    }
    assert_int_equal(
        series_value(p, text, "datos_backend_queries_total{outcome=\"ok\"}"),
        n / 3);
    assert_int_equal(
        series_value(p, text,
                     "datos_backend_queries_total{outcome=\"timeout\"}"),
        n / 3);
    assert_int_equal(
        series_value(p, text, "datos_backend_queries_total{outcome=\"error\"}"),
        n / 3);
    assert_int_equal(
        series_value(p, text, "datos_backend_query_duration_seconds_count"), n);
    assert_string_equal(
        series_text(p, text, "datos_backend_query_duration_seconds_sum"),
        apr_psprintf(p, "%" APR_UINT64_T_FMT, (apr_uint64_t)(n / 1000)));
    assert_int_equal(
        series_value(p, text, "datos_backend_bytes_processed_total"),
        n * BYTES_PER_QUERY);
    assert_int_equal(series_value(p, text, "datos_cache_oversized_total"), n);
    for (c = 0; c < 3; c++) {
        assert_int_equal(
            series_value(
                p, text,
                apr_psprintf(p, "datos_ingest_requests_total{code=\"%d\"}",
                             codes[c])),
            n / 3);
    }
    assert_int_equal(
        series_value(
            p, text,
            "datos_ingest_publish_duration_seconds_bucket{le=\"0.005\"}"),
        n);
    assert_string_equal(
        series_text(p, text, "datos_ingest_publish_duration_seconds_sum"),
        apr_psprintf(p, "%" APR_UINT64_T_FMT, (apr_uint64_t)(n * 2 / 1000)));
    /* The newest fetch any worker reported, whatever the interleaving. */
    assert_string_equal(
        series_text(p, text, "datos_cache_age_seconds{table=\"ds.t\"}"), "2");
}

static void threads_sum_exactly(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    enum {
        THREADS = 4
    };
    datos_metrics_t *m = map_block(0, NULL);
    pthread_t th[THREADS];
    int i;

    assert_int_equal(datos_metrics_table(m, "ds.t"), 0);
    for (i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_create(&th[i], NULL, count_worker, m), 0);
    }
    for (i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
    }
    counts_check(p, m, THREADS);
    unmap_block(m, 0);
}

/* Forked children count into one MAP_SHARED block, as httpd's children
 * do: two counting threads and two racing waiters in each. */
static void processes_sum_exactly(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    enum {
        CHILDREN = 4,
        COUNTERS = 2,
        WAITERS = 2
    };
    void *tail;
    datos_metrics_t *m = map_block(sizeof(wait_seen_t), &tail);
    wait_seen_t *seen = tail;
    pid_t pid[CHILDREN];
    int i;

    assert_int_equal(datos_metrics_table(m, "ds.t"), 0);
    for (i = 0; i < CHILDREN; i++) {
        pid[i] = fork();
        assert_true(pid[i] >= 0);
        if (pid[i] == 0) {
            pthread_t th[COUNTERS + WAITERS];
            wait_arg_t arg = {m, seen};
            int k, ok = 1;
            for (k = 0; k < COUNTERS; k++) {
                ok &= pthread_create(&th[k], NULL, count_worker, m) == 0;
            }
            for (; k < COUNTERS + WAITERS; k++) {
                ok &= pthread_create(&th[k], NULL, wait_worker, &arg) == 0;
            }
            for (k = 0; ok && k < COUNTERS + WAITERS; k++) {
                pthread_join(th[k], NULL);
            }
            _exit(ok ? 0 : 1);
        }
    }
    for (i = 0; i < CHILDREN; i++) {
        int st = 0;
        assert_int_equal(waitpid(pid[i], &st, 0), pid[i]);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
    }
    counts_check(p, m, CHILDREN * COUNTERS);
    wait_seen_check(p, m, seen);
    unmap_block(m, sizeof(wait_seen_t));
}

/* ------------------------------------------------------------ promtool */

static int have_promtool(apr_pool_t *p)
{
    if (dt_system(p, "command -v promtool >/dev/null 2>&1") != 0) {
        print_message(
            "promtool not found (make deps installs the prometheus package): skipped\n");
        return 0;
    }
    return 1;
}

static void promtool_check(apr_pool_t *p, const char *text)
{
    const char *dir = dt_tmpdir(p);
    const char *file =
        dt_write_file(p, dir, "metrics.prom", text, strlen(text), 0644);
    const char *log = apr_pstrcat(p, dir, "/promtool.log", NULL);
    int rc = dt_system(p, "promtool check metrics <'%s' >'%s' 2>&1", file, log);

    if (rc != 0) {
        fail_msg("promtool check metrics: exit %d\n%s", rc,
                 dt_read_file(p, log, NULL));
    }
}

static void promtool_accepts_the_exposition(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_metrics_t *m;
    int i;

    if (!have_promtool(p)) {
        skip();
    }
    /* An empty block: every family declared, few series. */
    m = map_block(0, NULL);
    promtool_check(p, render(p, m, SEC(1)));

    /* Everything at once: all codes, hostile table names, every outcome. */
    count_known_state(m);
    for (i = 0; i <= 700; i++) {
        datos_metrics_request(m, (datos_handler_t)(i % DATOS_HANDLER_COUNT), i,
                              i * 1000);
        datos_metrics_ingest(m, i, i * 100);
    }
    for (i = 1; i < DATOS_METRICS_TABLES + 2; i++) {
        int t = datos_metrics_table(m, apr_psprintf(p, "ds\\%d\"x\ny\"\\", i));
        datos_metrics_fetched(m, t, SEC(100 + i));
        datos_metrics_success(m, t, SEC(100 + i) + 1);
    }
    datos_metrics_backend(m, "quota", SEC(40), APR_INT64_C(1) << 40);
    promtool_check(p, render(p, m, SEC(1000)));
    unmap_block(m, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        DT_TEST(atomics_are_lock_free),
        DT_TEST(init_prepares_the_block),
        DT_TEST(render_known_state),
        DT_TEST(out_of_range_arguments),
        DT_TEST(table_gauges),
        DT_TEST(long_table_name_cut_on_utf8_boundary),
        DT_TEST(wait_bound_sequential),
        DT_TEST(wait_bound_thread_race),
        DT_TEST(threads_sum_exactly),
        DT_TEST(processes_sum_exactly),
        DT_TEST(promtool_accepts_the_exposition),
    };
    return cmocka_run_group_tests(tests, dt_group_setup, dt_group_teardown);
}
