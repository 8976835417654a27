/* mod_datos_cache.c - where a request's answer comes from.
 *
 * Tiers, nearest first:
 *   L1  the process copy, an immutable answer in a lock-free slot,
 *       trusted until its fresh-until time: a hit is an atomic increment;
 *   L2  the socache provider (shmcb for a host, memcache/redis for a
 *       fleet), read only when L1 is stale or cold and something newer
 *       may be there, written by the request that fetched;
 *   the state file (DatosStateDir), the last good answer on disk, which
 *       seeds an empty cache (after a restart) and carries answers too
 *       big for L2 between the host's processes;
 *   BigQuery, at most once per freshness window per host: the refresh
 *       mutex makes one request fetch while the others serve the stale
 *       answer (stale-while-revalidate) or, on a cold cache, wait up to
 *       DatosColdWait for it.
 *
 * Time line of an answer fetched at t (F = DatosFreshFor):
 *   [t, t+F)        fresh: served from L1 with no lock;
 *   [t+F, t+F+SWR)  stale: served at once; one request refreshes;
 *   later           a request must refresh, and waits for it; when
 *                   BigQuery fails the answer is still served until
 *                   t+F+DatosStaleIfError (stale-if-error).
 * After a failure no request asks BigQuery again before a back-off
 * (Retry-After, else up to 5 s), so an outage never costs a query per
 * request and logs one error line per window.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "apr_atomic.h"
#include "apr_strings.h"
#include "apr_file_io.h"

#include "httpd.h"
#include "http_log.h"
#include "http_request.h"
#include "scoreboard.h"

#include "datos_log.h"
#include "datos_file.h"
#include "mod_datos_cache.h"
#include "mod_datos_reply.h"
#include "mod_datos_runtime.h"

APLOG_USE_MODULE(datos);

/* A shared tier that failed is left alone this long. */
#define L2_BACKOFF apr_time_from_sec(30)
/* A fleet tier is looked at no more than this often while stale, since
 * another host's refresh leaves no trace on this one. */
#define FLEET_LOOK_EVERY apr_time_from_sec(1)
#define FLEET_POLL       apr_time_from_msec(100)
/* After a failed fetch, the next one waits for the upstream's Retry-After
 * (up to this), else for the freshness window (up to BACKOFF_DEFAULT_MAX). */
#define BACKOFF_MAX         apr_time_from_sec(60)
#define BACKOFF_DEFAULT_MAX apr_time_from_sec(5)
/* Error lines: one per window per process, at least this long. */
#define LOG_WINDOW_MIN apr_time_from_sec(10)

typedef struct {
    request_rec *r;
    mod_datos_conf_t *conf;
    mod_datos_rt_t *rt;
    mod_datos_global_t *g;
    apr_time_t now;
} ctx_t;

/* ---------------------------------------------------------------- time */

static int is_fresh(const ctx_t *c, const datos_answer_t *a)
{
    return c->now < a->fetched + c->conf->fresh_for;
}

static int within_swr(const ctx_t *c, const datos_answer_t *a)
{
    return c->now
           < a->fetched + c->conf->fresh_for + c->conf->stale_while_revalidate;
}

static int within_sie(const ctx_t *c, const datos_answer_t *a)
{
    return c->now < a->fetched + c->conf->fresh_for + c->conf->stale_if_error;
}

static void host_fetched(mod_datos_host_t *h, apr_time_t fetched)
{
    apr_uint64_t cur = apr_atomic_read64(&h->fetched);

    while (cur < (apr_uint64_t)fetched) {
        apr_uint64_t seen =
            apr_atomic_cas64(&h->fetched, (apr_uint64_t)fetched, cur);
        if (seen == cur)
            break;
        cur = seen;
    }
}

/* ------------------------------------------------------------- holding */

typedef struct {
    mod_datos_rt_t *rt;
    datos_answer_t *a;
    int from_slot;
} hold_t;

static apr_status_t hold_release(void *data)
{
    hold_t *h = data;

    if (h->from_slot)
        datos_process_cache_release(h->rt->l1, h->a);
    else
        datos_answer_free(h->a);
    return APR_SUCCESS;
}

/* The answer stays alive until the request's pool goes, which httpd does
 * only once the body is written: the body is sent straight from it. */
static void hold(ctx_t *c, datos_answer_t *a, int from_slot)
{
    hold_t *h = apr_palloc(c->r->pool, sizeof(*h));

    h->rt = c->rt;
    h->a = a;
    h->from_slot = from_slot;
    apr_pool_cleanup_register(c->r->pool, h, hold_release,
                              apr_pool_cleanup_null);
}

/* Makes a current in this process and returns it held for the request
 * (or a newer one another thread published meanwhile). */
static datos_answer_t *install(ctx_t *c, datos_answer_t *a)
{
    datos_answer_t *cur;

    if (datos_process_cache_publish(c->rt->l1, a) != APR_SUCCESS) {
        /* Every slot entry is held by slow readers: serve this one to this
         * request alone. */
        hold(c, a, 0);
        return a;
    }
    cur = datos_process_cache_acquire(c->rt->l1);
    if (cur)
        hold(c, cur, 1);
    return cur;
}

/* An entry read from the shared tier or the state file, made into an
 * answer and counted; NULL when it is not usable (another format version,
 * or damage), logged. */
static datos_answer_t *decode(ctx_t *c, apr_pool_t *tmp, datos_tier_t tier,
                              const char *bytes, apr_size_t len)
{
    datos_answer_t *a = NULL;
    datos_err_t err;

    datos_err_clear(&err);
    if (datos_answer_decode(tmp, bytes, len, &c->rt->seal, &a, &err)
        != APR_SUCCESS) {
        if (tier == DATOS_TIER_L2) {
            ap_log_rerror(
                APLOG_MARK, APLOG_INFO, 0, c->r,
                DATOS_LOGNO(0302) "DatosCache %s: entry %s is not usable (%s); "
                                  "treated as a miss",
                c->g->provider_name, c->rt->l2_key, err.message);
            datos_metrics_lookup(c->g->metrics, tier, DATOS_LOOKUP_MISS);
        }
        else {
            ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, c->r,
                          DATOS_LOGNO(0304) "DatosStateDir: %s is not usable "
                                            "(%s); ignored",
                          c->rt->state_file, err.message);
        }
        return NULL;
    }
    datos_metrics_lookup(c->g->metrics, tier,
                         is_fresh(c, a) ? DATOS_LOOKUP_HIT
                                        : DATOS_LOOKUP_STALE);
    return a;
}

/* ------------------------------------------------------------------ L2 */

static int l2_usable(ctx_t *c)
{
    apr_time_t until;

    if (!c->g->cache)
        return 0;
    apr_thread_mutex_lock(c->rt->proc_mutex);
    until = c->rt->l2_down_until;
    apr_thread_mutex_unlock(c->rt->proc_mutex);
    return c->now >= until;
}

static void l2_failed(ctx_t *c, apr_status_t rv, const char *what)
{
    int log;

    apr_thread_mutex_lock(c->rt->proc_mutex);
    log = c->now >= c->rt->l2_down_until;
    c->rt->l2_down_until = c->now + L2_BACKOFF;
    apr_thread_mutex_unlock(c->rt->proc_mutex);
    datos_metrics_lookup(c->g->metrics, DATOS_TIER_L2, DATOS_LOOKUP_ERROR);
    if (log)
        ap_log_rerror(
            APLOG_MARK, APLOG_WARNING, rv, c->r,
            DATOS_LOGNO(
                0301) "DatosCache %s: %s failed; the shared tier is skipped "
                      "for %d s (answers come from this process and "
                      "BigQuery)",
            c->g->provider_name, what, (int)apr_time_sec(L2_BACKOFF));
}

static void cache_lock(ctx_t *c)
{
    if (c->g->cache_mutex)
        apr_global_mutex_lock(c->g->cache_mutex);
}

static void cache_unlock(ctx_t *c)
{
    if (c->g->cache_mutex)
        apr_global_mutex_unlock(c->g->cache_mutex);
}

/* The shared tier's answer, if it holds one; NULL on a miss or a
 * failure (logged). */
static datos_answer_t *l2_get(ctx_t *c)
{
    unsigned char *buf;
    unsigned int len;
    apr_status_t rv;
    datos_answer_t *a = NULL;
    apr_pool_t *tmp;

    if (!l2_usable(c))
        return NULL;
    apr_pool_create(&tmp, c->r->pool);
    len = (unsigned int)c->rt->envelope_max;
    buf = apr_palloc(tmp, len);
    cache_lock(c);
    rv = c->g->provider->retrieve(
        c->g->cache, c->r->server, (const unsigned char *)c->rt->l2_key,
        (unsigned int)strlen(c->rt->l2_key), buf, &len, tmp);
    cache_unlock(c);
    if (APR_STATUS_IS_NOTFOUND(rv)) {
        datos_metrics_lookup(c->g->metrics, DATOS_TIER_L2, DATOS_LOOKUP_MISS);
        goto leave;
    }
    if (rv != APR_SUCCESS) {
        l2_failed(c, rv, "a read");
        goto leave;
    }
    a = decode(c, tmp, DATOS_TIER_L2, (const char *)buf, len);
leave:
    apr_pool_destroy(tmp);
    return a;
}

static apr_status_t l2_store(ctx_t *c, const char *key, const void *data,
                             apr_size_t len, apr_time_t expiry)
{
    apr_status_t rv;

    /* Providers take an absolute expiry, and memcache/redis need it at
     * least a second ahead. */
    if (expiry < c->now + apr_time_from_sec(2))
        expiry = c->now + apr_time_from_sec(2);
    cache_lock(c);
    rv = c->g->provider->store(
        c->g->cache, c->r->server, (const unsigned char *)key,
        (unsigned int)strlen(key), expiry, (unsigned char *)data,
        (unsigned int)len, c->r->pool);
    cache_unlock(c);
    return rv;
}

/* Once per window per process: an answer the shared tier cannot take
 * stays in this process (and the state file) for its window. */
static void oversized(ctx_t *c, apr_size_t len, apr_status_t rv)
{
    int log;

    apr_thread_mutex_lock(c->rt->proc_mutex);
    log = c->now >= c->rt->oversize_logged + c->conf->fresh_for;
    if (log)
        c->rt->oversize_logged = c->now;
    apr_thread_mutex_unlock(c->rt->proc_mutex);
    datos_metrics_oversized(c->g->metrics);
    if (log)
        ap_log_rerror(
            APLOG_MARK, APLOG_INFO, rv, c->r,
            DATOS_LOGNO(
                0303) "DatosCache %s cannot hold the %" APR_SIZE_T_FMT
                      "-byte answer of %s; it is kept in each process (and "
                      "DatosStateDir) for its window",
            c->g->provider_name, len, c->conf->table_name);
}

static void l2_put(ctx_t *c, const datos_answer_t *a, const char *bytes,
                   apr_size_t len)
{
    apr_interval_time_t keep =
        c->conf->stale_while_revalidate > c->conf->stale_if_error
            ? c->conf->stale_while_revalidate
            : c->conf->stale_if_error;
    apr_status_t rv;

    if (!l2_usable(c))
        return;
    rv = l2_store(c, c->rt->l2_key, bytes, len,
                  a->fetched + c->conf->fresh_for + keep);
    if (rv == APR_SUCCESS)
        return;
    /* shmcb says ENOSPC for an object larger than a subcache; memcached
     * refuses items over its item size (1 MiB by default) with a plain
     * error. */
    if (APR_STATUS_IS_ENOSPC(rv) || (c->g->fleet && len >= 1024 * 1024 - 4096))
        oversized(c, len, rv);
    else {
        datos_metrics_store_failure(c->g->metrics, DATOS_TIER_L2);
        l2_failed(c, rv, "a write");
    }
}

/* Fleets: a marker says another host is fetching (best effort: two hosts
 * that look at the same moment both fetch; docs/design.md section 4). */
static int fleet_marker_present(ctx_t *c)
{
    unsigned char buf[8];
    unsigned int len = sizeof(buf);
    apr_status_t rv;

    if (!c->g->fleet || !l2_usable(c))
        return 0;
    rv = c->g->provider->retrieve(
        c->g->cache, c->r->server, (const unsigned char *)c->rt->l2_marker,
        (unsigned int)strlen(c->rt->l2_marker), buf, &len, c->r->pool);
    return rv == APR_SUCCESS;
}

static void fleet_marker(ctx_t *c, int on)
{
    if (!c->g->fleet || !l2_usable(c))
        return;
    if (on)
        l2_store(c, c->rt->l2_marker, "1", 1, c->now + 2 * c->conf->timeout);
    else
        c->g->provider->remove(
            c->g->cache, c->r->server, (const unsigned char *)c->rt->l2_marker,
            (unsigned int)strlen(c->rt->l2_marker), c->r->pool);
}

/* ---------------------------------------------------------- state file */

static datos_answer_t *state_read(ctx_t *c)
{
    apr_pool_t *tmp;
    apr_file_t *f = NULL;
    apr_finfo_t fi;
    datos_answer_t *a = NULL;
    apr_status_t rv;
    char *buf;
    apr_size_t len;

    if (!c->rt->state_file)
        return NULL;
    apr_pool_create(&tmp, c->r->pool);
    rv = apr_file_open(&f, c->rt->state_file, APR_FOPEN_READ, 0, tmp);
    if (rv != APR_SUCCESS) {
        if (!APR_STATUS_IS_ENOENT(rv))
            datos_metrics_lookup(c->g->metrics, DATOS_TIER_STATE,
                                 DATOS_LOOKUP_ERROR);
        goto leave;
    }
    if (apr_file_info_get(&fi, APR_FINFO_SIZE, f) != APR_SUCCESS || fi.size <= 0
        || (apr_size_t)fi.size > c->rt->envelope_max)
        goto leave;
    len = (apr_size_t)fi.size;
    buf = apr_palloc(tmp, len);
    if (apr_file_read_full(f, buf, len, &len) == APR_SUCCESS)
        a = decode(c, tmp, DATOS_TIER_STATE, buf, len);
leave:
    if (f)
        apr_file_close(f);
    apr_pool_destroy(tmp);
    return a;
}

/* Written next to the file and renamed over it, so a reader or a crash
 * never sees half an answer. */
static void state_write(ctx_t *c, const char *bytes, apr_size_t len)
{
    apr_status_t rv;

    if (!c->rt->state_file)
        return;
    rv = datos_file_replace(c->r->pool, c->rt->state_file, bytes, len,
                            APR_FPROT_UREAD | APR_FPROT_UWRITE);
    if (rv != APR_SUCCESS) {
        datos_metrics_store_failure(c->g->metrics, DATOS_TIER_STATE);
        ap_log_rerror(
            APLOG_MARK, APLOG_WARNING, rv, c->r,
            DATOS_LOGNO(
                0305) "DatosStateDir: cannot write %s; the last good answer "
                      "will not survive a restart",
            c->rt->state_file);
    }
}

/* ---------------------------------------------------------- the bound */

/* Whether at least `reserve` workers of the host stand idle, by the
 * scoreboard. The fixed bounds are fractions of MaxRequestWorkers, but a
 * server that has not spawned them yet (prefork starts with a few
 * processes) must keep some free for /health too. */
static int idle_workers(int reserve)
{
    const mod_datos_global_t *g = &mod_datos_global;
    int i, j, idle = 0;

    if (!ap_exists_scoreboard_image() || g->server_limit <= 0
        || g->thread_limit <= 0)
        return 1;
    for (i = 0; i < g->server_limit; i++) {
        for (j = 0; j < g->thread_limit; j++) {
            const worker_score *ws =
                ap_get_scoreboard_worker_from_indexes(i, j);
            if (ws && ws->status == SERVER_READY && ++idle >= reserve)
                return 1;
        }
    }
    return 0;
}

static int wait_enter(ctx_t *c)
{
    apr_uint32_t cur = apr_atomic_read32(&c->rt->waiting);

    /* Per process first: a process whose threads all wait cannot answer
     * /health even when the host has room. */
    for (;;) {
        if (cur >= (apr_uint32_t)c->g->max_waiting_process) {
            datos_metrics_wait_enter(c->g->metrics, 0);
            return 0;
        }
        if (apr_atomic_cas32(&c->rt->waiting, cur + 1, cur) == cur)
            break;
        cur = apr_atomic_read32(&c->rt->waiting);
    }
    if (!datos_metrics_wait_enter(c->g->metrics, c->g->max_waiting)) {
        apr_atomic_dec32(&c->rt->waiting);
        return 0;
    }
    if (!idle_workers(c->g->idle_reserve)) {
        datos_metrics_wait_leave(c->g->metrics);
        datos_metrics_wait_enter(c->g->metrics, 0);
        apr_atomic_dec32(&c->rt->waiting);
        return 0;
    }
    return 1;
}

/* The request that holds the refresh mutex fetches whatever the bounds
 * say: it is one per host, and the others wait for it. Counted all the
 * same. */
static void fetcher_enter(ctx_t *c)
{
    apr_atomic_inc32(&c->rt->waiting);
    datos_metrics_wait_enter(c->g->metrics, 0x7fffffff);
}

static void wait_leave(ctx_t *c)
{
    datos_metrics_wait_leave(c->g->metrics);
    apr_atomic_dec32(&c->rt->waiting);
}

/* ----------------------------------------------------------- failures */

/* One error line per window per process, saying how many failures it
 * stands for, so an outage cannot flood the log. */
static void log_failure(ctx_t *c, apr_status_t rv, const datos_err_t *err,
                        const char *what)
{
    apr_interval_time_t window = c->conf->fresh_for > LOG_WINDOW_MIN
                                     ? c->conf->fresh_for
                                     : LOG_WINDOW_MIN;
    int more;

    if (!mod_datos_log_window_take(&c->rt->errors, c->rt->proc_mutex, c->now,
                                   window, &more))
        return;
    ap_log_rerror(APLOG_MARK, APLOG_ERR, mod_datos_log_status(rv), c->r,
                  DATOS_LOGNO(0201) "BigQuery fetch for %s failed (%s, HTTP "
                                    "%d%s%s): %s; %s%s",
                  c->conf->table_name, datos_status_name(rv), err->http_status,
                  err->reason ? " " : "", err->reason ? err->reason : "",
                  err->message ? err->message : "no detail", what,
                  more ? apr_psprintf(c->r->pool,
                                      " (%d more failures in this "
                                      "process since the last report)",
                                      more)
                       : "");
}

static apr_interval_time_t backoff(const ctx_t *c, const datos_err_t *err)
{
    apr_interval_time_t b;

    if (err->retry_after > 0)
        return err->retry_after > BACKOFF_MAX ? BACKOFF_MAX : err->retry_after;
    b = c->conf->fresh_for;
    if (b > BACKOFF_DEFAULT_MAX)
        b = BACKOFF_DEFAULT_MAX;
    return b < apr_time_from_sec(1) ? apr_time_from_sec(1) : b;
}

/* --------------------------------------------------------------- fetch */

/* One BigQuery fetch made into an answer. prev gives the watermark. */
static apr_status_t fetch(ctx_t *c, const datos_answer_t *prev, int gzip,
                          datos_answer_t **out, datos_err_t *err)
{
    datos_answer_opts_t opts = c->rt->answer_opts;
    datos_latest_t *latest = NULL;
    apr_time_t start = apr_time_now();
    apr_pool_t *tmp;
    apr_status_t rv;

    apr_pool_create(&tmp, c->r->pool);
    if (prev && prev->watermark_us)
        rv = datos_bq_fetch_since(c->rt->bq, tmp, prev->watermark_us, &latest,
                                  err);
    else
        rv = datos_bq_fetch_latest(c->rt->bq, tmp, &latest, err);
    datos_metrics_backend(
        c->g->metrics, rv == APR_SUCCESS ? "ok" : datos_status_name(rv),
        apr_time_now() - start, latest ? latest->bytes_processed : 0);
    if (rv != APR_SUCCESS)
        goto leave;
    if (latest->capped)
        ap_log_rerror(
            APLOG_MARK, APLOG_WARNING, 0, c->r,
            DATOS_LOGNO(0101) "widening the lookback past %d days would exceed "
                              "DatosMaxBytesBilled; serving the %d rows found",
            latest->window_days, latest->rows->nelts);
    if (latest->truncated)
        ap_log_rerror(
            APLOG_MARK, APLOG_WARNING, 0, c->r,
            DATOS_LOGNO(0102) "rows reached DatosMaxPayload (%" APR_INT64_T_FMT
                              " bytes); serving the first %d",
            c->conf->max_payload, latest->rows->nelts);
    ap_log_rerror(
        APLOG_MARK, APLOG_DEBUG, 0, c->r,
        DATOS_LOGNO(
            0103) "fetched %d rows with %d queries (%d polls), %" APR_INT64_T_FMT
                  " bytes processed, last window %d days",
        latest->rows->nelts, latest->queries, latest->polls,
        latest->bytes_processed, latest->window_days);
    opts.fetched = apr_time_now();
    opts.watermark_us = datos_bq_watermark(latest);
    if (!gzip)
        opts.gzip_count = 0;
    rv = datos_answer_build(tmp, (const datos_row_t *)latest->rows->elts,
                            latest->rows->nelts, &opts, out, err);
    if (rv == APR_SUCCESS) {
        host_fetched(c->rt->host, opts.fetched);
        apr_atomic_set64(&c->rt->host->next_attempt, 0);
        datos_metrics_success(c->g->metrics, c->rt->metrics_table,
                              opts.fetched);
        datos_metrics_fetched(c->g->metrics, c->rt->metrics_table,
                              opts.fetched);
    }
leave:
    if (rv != APR_SUCCESS && err->message)
        err->message = apr_pstrdup(c->r->pool, err->message);
    if (rv != APR_SUCCESS && err->reason)
        err->reason = apr_pstrdup(c->r->pool, err->reason);
    apr_pool_destroy(tmp);
    return rv;
}

/* A fetch made while holding the refresh mutex: stored in every tier,
 * made current in this process. */
static apr_status_t refresh(ctx_t *c, datos_answer_t *prev,
                            datos_answer_t **out, datos_err_t *err)
{
    datos_answer_t *a = NULL;
    const char *bytes;
    apr_size_t len;
    apr_status_t rv;

    fleet_marker(c, 1);
    rv = fetch(c, prev, 1, &a, err);
    if (rv != APR_SUCCESS) {
        fleet_marker(c, 0);
        apr_atomic_set64(&c->rt->host->next_attempt,
                         (apr_uint64_t)(c->now + backoff(c, err)));
        apr_atomic_set64(&c->rt->host->last_status, (apr_uint64_t)rv);
        return rv;
    }
    c->now = apr_time_now();
    if (datos_answer_encode(c->r->pool, a, &c->rt->seal, &bytes, &len, NULL)
        == APR_SUCCESS) {
        if (c->g->cache)
            l2_put(c, a, bytes, len);
        state_write(c, bytes, len);
    }
    fleet_marker(c, 0);
    *out = install(c, a);
    return APR_SUCCESS;
}

/* Something newer than a (NULL: anything) in the shared tier, or in the
 * state file when the shared tier does not have it (a cold start, or an
 * answer too big for the shared tier). Installed in this process. */
static datos_answer_t *newer_shared(ctx_t *c, datos_answer_t *a, int cold)
{
    apr_time_t have = a ? a->fetched : 0;
    apr_uint64_t host = apr_atomic_read64(&c->rt->host->fetched);
    datos_answer_t *b = NULL;
    int look = cold || host > (apr_uint64_t)have;

    if (!look && c->g->fleet) {
        apr_thread_mutex_lock(c->rt->proc_mutex);
        look = c->now >= c->rt->l2_checked + FLEET_LOOK_EVERY;
        if (look)
            c->rt->l2_checked = c->now;
        apr_thread_mutex_unlock(c->rt->proc_mutex);
    }
    if (!look)
        return NULL;
    if (c->g->cache)
        b = l2_get(c);
    if (b && b->fetched <= have) {
        datos_answer_free(b);
        b = NULL;
    }
    if (!b && (cold || host > (apr_uint64_t)have)) {
        b = state_read(c);
        if (b && b->fetched <= have) {
            datos_answer_free(b);
            b = NULL;
        }
        if (b && cold && c->g->cache) {
            /* Seeded from disk: the shared tier gets it too, with its
             * original fetch time, so the other processes need not read
             * the file. */
            const char *bytes;
            apr_size_t len;
            if (datos_answer_encode(c->r->pool, b, &c->rt->seal, &bytes, &len,
                                    NULL)
                == APR_SUCCESS)
                l2_put(c, b, bytes, len);
        }
    }
    if (!b)
        return NULL;
    host_fetched(c->rt->host, b->fetched);
    datos_metrics_fetched(c->g->metrics, c->rt->metrics_table, b->fetched);
    return install(c, b);
}

/* A request over the bound on waiting workers may still hold its worker
 * this long, looking for the answer another request is fetching: enough
 * for a fast BigQuery, short enough that /health always finds a worker. */
#define BRIEF_WAIT apr_time_from_sec(1)
#define BRIEF_POLL apr_time_from_msec(10)

static datos_answer_t *brief_wait(ctx_t *c, datos_answer_t *a)
{
    apr_time_t until = c->now + BRIEF_WAIT;
    apr_uint64_t have = a ? (apr_uint64_t)a->fetched : 0;
    datos_answer_t *b;

    while (c->now < until) {
        apr_sleep(BRIEF_POLL);
        c->now = apr_time_now();
        if (apr_atomic_read64(&c->rt->host->fetched) > have
            && (b = newer_shared(c, a, !a)) && is_fresh(c, b))
            return b;
    }
    return NULL;
}

static apr_status_t fail_with(ctx_t *c, datos_err_t *err, apr_status_t rv,
                              apr_interval_time_t retry_after, const char *fmt,
                              const char *arg)
{
    datos_err_set(err, c->r->pool, rv, 0, NULL, fmt, arg);
    err->retry_after = retry_after;
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, c->r,
                  DATOS_LOGNO(0306) "no answer for this request: %s",
                  err->message);
    return rv;
}

/* DatosFreshFor 0: the design datos replaces, one query per request, kept
 * for comparison; still bounded in the workers it takes. */
static apr_status_t uncached(ctx_t *c, mod_datos_entry_t *entry,
                             datos_err_t *err)
{
    datos_answer_t *a = NULL;
    apr_status_t rv;

    if (!wait_enter(c))
        return fail_with(c, err, DATOS_ERATELIMIT, apr_time_from_sec(1), "%s",
                         "too many requests are waiting on BigQuery");
    rv = fetch(c, NULL, 0, &a, err);
    wait_leave(c);
    if (rv != APR_SUCCESS) {
        log_failure(c, rv, err, "answering with an error");
        return rv;
    }
    hold(c, a, 0);
    entry->answer = a;
    entry->how = MOD_DATOS_UNCACHED;
    return APR_SUCCESS;
}

static void serve(mod_datos_entry_t *entry, datos_answer_t *a,
                  mod_datos_how_t how)
{
    entry->answer = a;
    entry->how = how;
}

apr_status_t mod_datos_entry_get(request_rec *r, mod_datos_conf_t *conf,
                                 mod_datos_entry_t *entry, datos_err_t *err)
{
    ctx_t c;
    datos_answer_t *a, *b, *fresh = NULL;
    apr_status_t rv;
    int cold;

    c.r = r;
    c.conf = conf;
    c.rt = conf->rt;
    c.g = &mod_datos_global;
    c.now = entry->now = apr_time_now();
    if (conf->fresh_for <= 0)
        return uncached(&c, entry, err);

    a = datos_process_cache_acquire(c.rt->l1);
    if (a) {
        hold(&c, a, 1);
        if (is_fresh(&c, a)) {
            datos_metrics_lookup(c.g->metrics, DATOS_TIER_L1, DATOS_LOOKUP_HIT);
            serve(entry, a, MOD_DATOS_HIT);
            return APR_SUCCESS;
        }
    }
    datos_metrics_lookup(c.g->metrics, DATOS_TIER_L1,
                         a ? DATOS_LOOKUP_STALE : DATOS_LOOKUP_MISS);
    if ((b = newer_shared(&c, a, !a)))
        a = b;
    if (a && is_fresh(&c, a)) {
        serve(entry, a, MOD_DATOS_HIT);
        return APR_SUCCESS;
    }

    if (a && within_swr(&c, a)) {
        /* Stale but servable at once: one request refreshes. */
        int failing =
            c.now < (apr_time_t)apr_atomic_read64(&c.rt->host->next_attempt);

        if (failing || fleet_marker_present(&c)
            || apr_global_mutex_trylock(c.rt->refresh_mutex) != APR_SUCCESS) {
            serve(entry, a, failing ? MOD_DATOS_STALE_ERROR : MOD_DATOS_STALE);
            return APR_SUCCESS;
        }
        fetcher_enter(&c);
        /* Someone may have refreshed between the look and the lock. */
        if ((b = newer_shared(&c, a, 0)) && is_fresh(&c, b)) {
            apr_global_mutex_unlock(c.rt->refresh_mutex);
            wait_leave(&c);
            serve(entry, b, MOD_DATOS_HIT);
            return APR_SUCCESS;
        }
        rv = refresh(&c, a, &fresh, err);
        apr_global_mutex_unlock(c.rt->refresh_mutex);
        wait_leave(&c);
        if (rv == APR_SUCCESS && fresh) {
            serve(entry, fresh, MOD_DATOS_REFRESHED);
            return APR_SUCCESS;
        }
        log_failure(&c, rv, err, "serving the stale answer");
        serve(entry, a, MOD_DATOS_STALE_ERROR);
        return APR_SUCCESS;
    }

    /* Cold, or too stale to serve without trying BigQuery first. */
    cold = !a;
    if (c.now < (apr_time_t)apr_atomic_read64(&c.rt->host->next_attempt)) {
        if (a && within_sie(&c, a)) {
            serve(entry, a, MOD_DATOS_STALE_ERROR);
            return APR_SUCCESS;
        }
        return fail_with(
            &c, err, (apr_status_t)apr_atomic_read64(&c.rt->host->last_status),
            (apr_time_t)apr_atomic_read64(&c.rt->host->next_attempt) - c.now,
            "%s",
            "BigQuery failed moments ago; not asking "
            "again yet");
    }
    if (apr_global_mutex_trylock(c.rt->refresh_mutex) == APR_SUCCESS) {
        /* Nobody is fetching: this request does. */
        fetcher_enter(&c);
        rv = APR_SUCCESS;
    }
    else if (!wait_enter(&c)) {
        if (a && within_sie(&c, a)) {
            serve(entry, a, MOD_DATOS_STALE);
            return APR_SUCCESS;
        }
        /* No room to wait the whole DatosColdWait; a fetch in progress is
         * often done in a moment, so look for its answer briefly. */
        if ((b = brief_wait(&c, a))) {
            serve(entry, b, MOD_DATOS_COLLAPSED);
            return APR_SUCCESS;
        }
        return fail_with(&c, err, DATOS_ERATELIMIT, apr_time_from_sec(1), "%s",
                         "too many requests are waiting on BigQuery");
    }
    else {
        rv = apr_global_mutex_timedlock(c.rt->refresh_mutex, conf->cold_wait);
    }
    if (rv != APR_SUCCESS) {
        wait_leave(&c);
        c.now = apr_time_now();
        if ((b = newer_shared(&c, a, cold))) {
            serve(entry, b, MOD_DATOS_COLLAPSED);
            return APR_SUCCESS;
        }
        if (a && within_sie(&c, a)) {
            serve(entry, a, MOD_DATOS_STALE_ERROR);
            return APR_SUCCESS;
        }
        return fail_with(&c, err, DATOS_ERATELIMIT, conf->cold_wait, "%s",
                         "no answer yet: the fetch in progress did "
                         "not finish within DatosColdWait");
    }
    c.now = apr_time_now();
    /* Whoever held the mutex may have fetched what this request wants. */
    if ((b = newer_shared(&c, a, cold))) {
        a = b;
        if (is_fresh(&c, a)) {
            apr_global_mutex_unlock(c.rt->refresh_mutex);
            wait_leave(&c);
            serve(entry, a, MOD_DATOS_COLLAPSED);
            return APR_SUCCESS;
        }
    }
    if (fleet_marker_present(&c)) {
        /* Another host is fetching: wait for its answer, with the mutex
         * released so this host's other requests can look too. */
        apr_time_t until = c.now + conf->cold_wait;

        apr_global_mutex_unlock(c.rt->refresh_mutex);
        while (c.now < until) {
            apr_sleep(FLEET_POLL);
            c.now = apr_time_now();
            if ((b = newer_shared(&c, a, 1)) && is_fresh(&c, b)) {
                wait_leave(&c);
                serve(entry, b, MOD_DATOS_COLLAPSED);
                return APR_SUCCESS;
            }
        }
        wait_leave(&c);
        if (a && within_sie(&c, a)) {
            serve(entry, a, MOD_DATOS_STALE_ERROR);
            return APR_SUCCESS;
        }
        return fail_with(&c, err, DATOS_ERATELIMIT, conf->cold_wait, "%s",
                         "no answer yet: another host's fetch did not "
                         "finish within DatosColdWait");
    }
    rv = refresh(&c, a, &fresh, err);
    apr_global_mutex_unlock(c.rt->refresh_mutex);
    wait_leave(&c);
    if (rv == APR_SUCCESS && fresh) {
        serve(entry, fresh, a ? MOD_DATOS_REFRESHED : MOD_DATOS_MISS_STORED);
        return APR_SUCCESS;
    }
    if (a && within_sie(&c, a)) {
        log_failure(&c, rv, err, "serving the last good answer");
        serve(entry, a, MOD_DATOS_STALE_ERROR);
        return APR_SUCCESS;
    }
    log_failure(&c, rv, err, "answering with an error");
    return rv;
}
