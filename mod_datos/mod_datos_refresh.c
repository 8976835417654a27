/* mod_datos_refresh.c - BigQuery, off the request path.
 *
 * Each process runs one refresher thread per store. A request that finds
 * the answer stale asks it for a newer one and is answered at once with
 * the stale answer; only a request with nothing servable (a cold host, an
 * answer past stale-while-revalidate) waits for it, up to DatosColdWait.
 * So no request waits on a refresh while a servable answer exists, and
 * the worker that noticed the staleness is free at once. A thread rather
 * than work after the response: the event MPM would keep the connection's
 * next request waiting behind it, and prefork the whole process.
 *
 * One attempt, for "an answer fetched at or after T":
 *   1. the process copy may have it already; else the shared tier or the
 *      state file (another process of the host, or another host, fetched);
 *   2. while a back-off after a failure runs, nothing is asked;
 *   3. the store's refresh mutex (global) makes one process of the host
 *      fetch while the others wait for it and then read what it stored;
 *   4. on a fleet tier, a lease in the shared tier makes one host fetch
 *      while the others wait for its answer (below);
 *   5. the fetch, stored in every tier, made current in this process.
 *
 * The fleet's lease. Apache's socache API has no atomic add-if-absent, so
 * a host takes the lease by writing a sealed lease (its random token and
 * the time) under the entry's lease key, waiting LEASE_SETTLE, and reading
 * it back: if the token is still its own, it fetches; if another host's
 * token is there, that host wrote later and fetches, and this one waits
 * for its answer. Two hosts both fetch only when one of them takes longer
 * than LEASE_SETTLE between finding no lease and writing its own. A lease
 * is obeyed for at most DatosTimeout from its time (datos_policy_lease_
 * live), and one not sealed with the fleet's secret not at all, so nobody
 * can stop the fleet's refreshes with a lease that never ends.
 */
#include <signal.h>
#include <string.h>
#include <pthread.h>

#include "apr_atomic.h"
#include "apr_strings.h"
#include "apr_thread_cond.h"
#include "apr_thread_proc.h"

#include "httpd.h"
#include "http_log.h"

#include "datos_log.h"
#include "datos_policy.h"
#include "mod_datos_refresh.h"
#include "mod_datos_tiers.h"

APLOG_USE_MODULE(datos);

/* Between writing a lease and reading it back (see above). */
#define LEASE_SETTLE apr_time_from_msec(50)
/* How often a host waiting for another's fetch looks for its answer. */
#define FLEET_POLL apr_time_from_msec(50)
/* The refresh mutex is waited for in slices this long. */
#define MUTEX_SLICE apr_time_from_msec(200)
/* Error lines: one per window per process, at least this long. */
#define LOG_WINDOW_MIN apr_time_from_sec(10)

typedef struct mod_datos_refresher_t {
    mod_datos_store_t *st;
    server_rec *s;
    apr_thread_t *thread;
    apr_thread_mutex_t *mutex; /* the fields below */
    apr_thread_cond_t *work;   /* something is asked, or stopping */
    apr_thread_cond_t *done;   /* an attempt ended */
    apr_time_t want_after;     /* 0: nothing asked */
    apr_uint64_t started, finished;
    apr_status_t result; /* of the attempt `finished` */
    apr_interval_time_t retry_after;
    int running;
    volatile int stopping;
} mod_datos_refresher_t;

/* ------------------------------------------------------------- failures */

/* One error line per window per process, saying how many failures it
 * stands for, so an outage cannot flood the log. */
static void log_failure(server_rec *s, apr_pool_t *p, mod_datos_rt_t *rt,
                        mod_datos_log_window_t *w, apr_thread_mutex_t *mutex,
                        apr_time_t now, apr_status_t rv, const datos_err_t *err,
                        const char *what)
{
    apr_interval_time_t window = rt->conf->fresh_for > LOG_WINDOW_MIN
                                     ? rt->conf->fresh_for
                                     : LOG_WINDOW_MIN;
    int more;

    if (!mod_datos_log_window_take(w, mutex, now, window, &more))
        return;
    ap_log_error(APLOG_MARK, APLOG_ERR, mod_datos_log_status(rv), s,
                 DATOS_LOGNO(0201) "BigQuery fetch for %s failed (%s, HTTP "
                                   "%d%s%s): %s; %s%s",
                 rt->conf->table_name, datos_status_name(rv), err->http_status,
                 err->reason ? " " : "", err->reason ? err->reason : "",
                 err->message ? err->message : "no detail", what,
                 more ? apr_psprintf(p,
                                     " (%d more failures in this "
                                     "process since the last report)",
                                     more)
                      : "");
}

/* --------------------------------------------------------------- fetch */

/* One BigQuery fetch made into an answer, in its own pool. prev gives the
 * watermark. */
static apr_status_t fetch(apr_pool_t *p, server_rec *s, mod_datos_rt_t *rt,
                          const datos_answer_t *prev, int gzip,
                          datos_answer_t **out, datos_err_t *err)
{
    datos_answer_opts_t opts = rt->answer_opts;
    datos_latest_t *latest = NULL;
    datos_fetch_rec_t rec;
    apr_time_t start = apr_time_now();
    apr_pool_t *tmp;
    apr_status_t rv;

    apr_pool_create(&tmp, p);
    if (prev && prev->watermark_us)
        rv =
            datos_bq_fetch_since(rt->bq, tmp, prev->watermark_us, &latest, err);
    else
        rv = datos_bq_fetch_latest(rt->bq, tmp, &latest, err);
    memset(&rec, 0, sizeof(rec));
    rec.started = start;
    rec.duration = apr_time_now() - start;
    rec.outcome = rv == APR_SUCCESS ? "ok" : datos_status_name(rv);
    rec.bytes_processed = rec.bytes_billed = -1;
    if (latest) {
        rec.pages = latest->pages;
        rec.rows = latest->rows->nelts;
        rec.bytes_processed = latest->bytes_processed;
        rec.bytes_billed = latest->bytes_billed;
    }
    datos_metrics_backend(mod_datos_global.metrics, rec.outcome, rec.duration,
                          latest ? latest->bytes_processed : 0);
    datos_metrics_backend_billed(mod_datos_global.metrics,
                                 latest ? latest->bytes_billed : 0);
    /* For GET /datos-status's history of the table's fetches. */
    datos_metrics_fetch_log(mod_datos_global.metrics, rt->metrics_table, &rec);
    if (rv != APR_SUCCESS)
        goto leave;
    if (latest->capped)
        ap_log_error(
            APLOG_MARK, APLOG_WARNING, 0, s,
            DATOS_LOGNO(0101) "widening the lookback past %d days would exceed "
                              "DatosMaxBytesBilled; serving the %d rows found",
            latest->window_days, latest->rows->nelts);
    if (latest->truncated)
        ap_log_error(
            APLOG_MARK, APLOG_WARNING, 0, s,
            DATOS_LOGNO(0102) "rows reached DatosMaxPayload (%" APR_INT64_T_FMT
                              " bytes); serving the first %d",
            rt->conf->max_payload, latest->rows->nelts);
    ap_log_error(
        APLOG_MARK, APLOG_DEBUG, 0, s,
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
    if (rv == APR_SUCCESS)
        datos_metrics_success(mod_datos_global.metrics, rt->metrics_table,
                              opts.fetched);
leave:
    if (rv != APR_SUCCESS && err->message)
        err->message = apr_pstrdup(p, err->message);
    if (rv != APR_SUCCESS && err->reason)
        err->reason = apr_pstrdup(p, err->reason);
    apr_pool_destroy(tmp);
    return rv;
}

apr_status_t mod_datos_refresh_uncached(request_rec *r, mod_datos_rt_t *rt,
                                        datos_answer_t **out, datos_err_t *err)
{
    apr_status_t rv = fetch(r->pool, r->server, rt, NULL, 0, out, err);

    if (rv != APR_SUCCESS)
        log_failure(r->server, r->pool, rt, &rt->errors, rt->proc_mutex,
                    apr_time_now(), rv, err, "answering with an error");
    return rv;
}

/* ------------------------------------------------------------- attempts */

/* Whether the process holds an answer fetched at or after want_after;
 * *have is the fetch time of what it holds (0: nothing). */
static int holds(mod_datos_store_t *st, apr_time_t want_after, apr_time_t *have)
{
    datos_answer_t *a = mod_datos_tiers_current(st);

    *have = a ? a->fetched : 0;
    mod_datos_tiers_release(st, a);
    return a && *have >= want_after;
}

/* Whether the shared tier or the state file has what is wanted (it is
 * then the process copy); *have moves to what was found. */
static int found(mod_datos_op_t *op, apr_time_t want_after, apr_time_t *have)
{
    datos_answer_t *b;
    int ok;

    op->now = apr_time_now();
    b = mod_datos_tiers_newer(op, *have, 1);
    if (!b)
        return 0;
    *have = b->fetched;
    ok = *have >= want_after;
    mod_datos_tiers_release(op->st, b);
    return ok;
}

/* Whether a back-off after a failed fetch runs: *rv is that failure. */
static int backing_off(mod_datos_op_t *op, apr_status_t *rv,
                       apr_interval_time_t *retry_after)
{
    mod_datos_host_t *h = op->st->host;
    apr_time_t next = (apr_time_t)apr_atomic_read64(&h->next_attempt);

    if (!next || op->now >= next)
        return 0;
    *rv = (apr_status_t)apr_atomic_read64(&h->last_status);
    *retry_after = next - op->now;
    return 1;
}

/* The fleet's lease (see the top of the file). Returns 1 when this host
 * is to fetch (*mine: it holds the lease, to drop after), 0 when another
 * host's answer came meanwhile. Other hosts' leases are waited on for at
 * most DatosTimeout in all, however often they are written again. */
static int lease(mod_datos_refresher_t *rf, mod_datos_op_t *op,
                 apr_time_t want_after, apr_time_t *have, int *mine)
{
    apr_interval_time_t timeout = op->st->rt->conf->timeout;
    apr_time_t deadline = datos_time_add(apr_time_now(), timeout);
    datos_lease_t theirs, ours;
    int round;

    *mine = 0;
    for (round = 0; round < 2; round++) {
        op->now = apr_time_now();
        if (mod_datos_tiers_lease_get(op, &theirs)
            && datos_policy_lease_live(theirs.taken, op->now, timeout)) {
            /* Another host fetches: its answer, while its lease lives. */
            while (!rf->stopping && op->now < deadline
                   && datos_policy_lease_live(theirs.taken, op->now, timeout)) {
                apr_sleep(FLEET_POLL);
                if (found(op, want_after, have))
                    return 0;
                /* Dropped with no answer: its fetch failed. */
                if (!mod_datos_tiers_lease_get(op, &theirs))
                    break;
            }
            if (op->now >= deadline)
                return 1; /* waited long enough: fetch */
            continue;
        }
        if (datos_lease_new(op->now, &ours) != APR_SUCCESS
            || mod_datos_tiers_lease_put(op, &ours) != APR_SUCCESS)
            return 1; /* no lease to be had: fetch all the same */
        apr_sleep(LEASE_SETTLE);
        op->now = apr_time_now();
        if (!mod_datos_tiers_lease_get(op, &theirs)
            || !memcmp(theirs.token, ours.token, DATOS_LEASE_TOKEN_LEN)) {
            *mine = 1;
            /* A host that finished just before may have stored it. */
            if (found(op, want_after, have)) {
                mod_datos_tiers_lease_drop(op);
                *mine = 0;
                return 0;
            }
            return 1;
        }
        /* Another host wrote after this one: it fetches. */
    }
    return 1;
}

/* What the attempt does under the store's refresh mutex. */
static apr_status_t locked(mod_datos_refresher_t *rf, mod_datos_op_t *op,
                           apr_time_t want_after, apr_time_t have,
                           apr_interval_time_t *retry_after)
{
    mod_datos_store_t *st = rf->st;
    mod_datos_rt_t *rt = st->rt;
    datos_answer_t *prev, *fresh = NULL, *cur;
    apr_status_t rv;
    datos_err_t err;
    int mine = 0;

    /* Whoever held the mutex may have fetched what is wanted. */
    if ((apr_time_t)apr_atomic_read64(&st->host->fetched) >= want_after
        && found(op, want_after, &have))
        return APR_SUCCESS;
    op->now = apr_time_now();
    if (backing_off(op, &rv, retry_after))
        return rv;
    if (mod_datos_global.fleet && !lease(rf, op, want_after, &have, &mine))
        return APR_SUCCESS;

    datos_err_clear(&err);
    prev = mod_datos_tiers_current(st);
    rv = fetch(op->pool, op->s, rt, prev, 1, &fresh, &err);
    op->now = apr_time_now();
    if (rv != APR_SUCCESS) {
        apr_interval_time_t b =
            datos_policy_backoff(err.retry_after, rt->conf->fresh_for);

        apr_atomic_set64(&st->host->next_attempt,
                         (apr_uint64_t)datos_time_add(op->now, b));
        apr_atomic_set64(&st->host->last_status, (apr_uint64_t)rv);
        *retry_after = b;
        log_failure(op->s, op->pool, rt, &st->errors, st->proc_mutex, op->now,
                    rv, &err,
                    prev ? "the last good answer is served while "
                           "DatosStaleIfError allows"
                         : "requests get an error until a fetch succeeds");
    }
    mod_datos_tiers_release(st, prev);
    if (rv == APR_SUCCESS) {
        /* Stored before the host learns of it, so that the other processes
         * that look find it. */
        mod_datos_tiers_store(op, fresh);
        mod_datos_tiers_host_fetched(st, fresh->fetched);
        apr_atomic_set64(&st->host->next_attempt, 0);
        datos_metrics_fetched(mod_datos_global.metrics, st->metrics_table,
                              fresh->fetched);
        cur = mod_datos_tiers_install(op, fresh);
        mod_datos_tiers_release(st, cur);
    }
    if (mine)
        mod_datos_tiers_lease_drop(op);
    return rv;
}

static apr_status_t attempt(mod_datos_refresher_t *rf, apr_pool_t *pool,
                            apr_time_t want_after,
                            apr_interval_time_t *retry_after)
{
    mod_datos_store_t *st = rf->st;
    apr_interval_time_t bound = 2 * st->rt->conf->timeout + LEASE_SETTLE;
    apr_interval_time_t total = bound;
    mod_datos_op_t op;
    apr_time_t have;
    apr_status_t rv;

    *retry_after = 0;
    op.st = st;
    op.s = rf->s;
    op.pool = pool;
    op.now = apr_time_now();
    if (holds(st, want_after, &have) || found(&op, want_after, &have))
        return APR_SUCCESS;
    if (backing_off(&op, &rv, retry_after))
        return rv;
    /* Another process of the host fetches: wait for it, as long as a fetch
     * and a fleet lease may take, in slices so that a child stopping does
     * not wait the whole of it. */
    do {
        rv = apr_global_mutex_timedlock(st->refresh_mutex, MUTEX_SLICE);
        bound -= MUTEX_SLICE;
    } while (APR_STATUS_IS_TIMEUP(rv) && bound > 0 && !rf->stopping);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_DEBUG, rv, rf->s,
                     DATOS_LOGNO(0311) "no refresh of %s: the host's fetch "
                                       "did not end within %" APR_TIME_T_FMT
                                       " ms",
                     st->rt->conf->table_name, apr_time_as_msec(total));
        return APR_TIMEUP;
    }
    rv = locked(rf, &op, want_after, have, retry_after);
    apr_global_mutex_unlock(st->refresh_mutex);
    return rv;
}

/* ------------------------------------------------------------ the thread */

static void *APR_THREAD_FUNC refresher_main(apr_thread_t *t, void *data)
{
    mod_datos_refresher_t *rf = data;
    apr_interval_time_t retry;
    apr_uint64_t n;
    apr_time_t after;
    apr_status_t rv;
    apr_pool_t *tmp = NULL;

    /* A pool of its own, with its own allocator: the MPM's threads use the
     * child's pools, and an allocator is not shared between threads
     * without a mutex. */
    if (apr_pool_create_unmanaged_ex(&tmp, NULL, NULL) != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, rf->s,
                     DATOS_LOGNO(0312) "the refresher of %s has no memory; "
                                       "answers of this process will not be "
                                       "refreshed",
                     rf->st->rt->conf->table_name);
        rf->stopping = 1;
    }
    apr_thread_mutex_lock(rf->mutex);
    for (;;) {
        while (!rf->want_after && !rf->stopping)
            apr_thread_cond_wait(rf->work, rf->mutex);
        if (rf->stopping)
            break;
        after = rf->want_after;
        rf->want_after = 0;
        n = ++rf->started;
        rf->running = 1;
        apr_thread_mutex_unlock(rf->mutex);

        rv = attempt(rf, tmp, after, &retry);
        apr_pool_clear(tmp);

        apr_thread_mutex_lock(rf->mutex);
        rf->running = 0;
        rf->finished = n;
        rf->result = rv;
        rf->retry_after = retry;
        apr_thread_cond_broadcast(rf->done);
    }
    apr_thread_mutex_unlock(rf->mutex);
    if (tmp)
        apr_pool_destroy(tmp);
    apr_thread_exit(t, APR_SUCCESS);
    return NULL;
}

apr_uint64_t mod_datos_refresh_want(mod_datos_store_t *st,
                                    apr_time_t want_after, int *started)
{
    mod_datos_refresher_t *rf = st->refresher;
    apr_uint64_t ticket;

    if (want_after < 1)
        want_after = 1;
    apr_thread_mutex_lock(rf->mutex);
    if (started)
        *started = !rf->running && !rf->want_after;
    if (want_after > rf->want_after)
        rf->want_after = want_after;
    ticket = rf->started + 1;
    apr_thread_cond_signal(rf->work);
    apr_thread_mutex_unlock(rf->mutex);
    return ticket;
}

datos_wait_end_t mod_datos_refresh_wait(
    mod_datos_store_t *st, apr_uint64_t ticket, apr_time_t want_after,
    apr_time_t deadline, apr_status_t *status, apr_interval_time_t *retry_after)
{
    mod_datos_refresher_t *rf = st->refresher;
    datos_wait_end_t end;
    apr_time_t have, now;

    *status = APR_SUCCESS;
    *retry_after = 0;
    apr_thread_mutex_lock(rf->mutex);
    for (;;) {
        if (holds(st, want_after, &have)) {
            end = DATOS_WAIT_ANSWERED;
            break;
        }
        if (rf->finished >= ticket && rf->result != APR_SUCCESS) {
            end = DATOS_WAIT_FAILED;
            *status = rf->result;
            *retry_after = rf->retry_after;
            break;
        }
        now = apr_time_now();
        if (rf->stopping || now >= deadline) {
            end = DATOS_WAIT_TIMED_OUT;
            break;
        }
        apr_thread_cond_timedwait(rf->done, rf->mutex, deadline - now);
    }
    apr_thread_mutex_unlock(rf->mutex);
    return end;
}

static apr_status_t refresher_stop(void *data)
{
    mod_datos_refresher_t *rf = data;
    apr_status_t trv;

    apr_thread_mutex_lock(rf->mutex);
    rf->stopping = 1;
    apr_thread_cond_broadcast(rf->work);
    apr_thread_cond_broadcast(rf->done);
    apr_thread_mutex_unlock(rf->mutex);
    /* At most the fetch in flight, which DatosTimeout bounds. */
    apr_thread_join(&trv, rf->thread);
    return APR_SUCCESS;
}

static void child_fail(server_rec *s, apr_status_t rv, const char *what)
{
    ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                 DATOS_LOGNO(0006) "child cannot start: %s", what);
    exit(APEXIT_CHILDSICK);
}

static void refresher_start(apr_pool_t *pchild, server_rec *s,
                            mod_datos_store_t *st)
{
    mod_datos_refresher_t *rf = apr_pcalloc(pchild, sizeof(*rf));
    sigset_t all, old;
    apr_status_t rv;

    rf->st = st;
    rf->s = st->rt->s;
    if ((rv = apr_thread_mutex_create(&rf->mutex, APR_THREAD_MUTEX_DEFAULT,
                                      pchild))
            != APR_SUCCESS
        || (rv = apr_thread_cond_create(&rf->work, pchild)) != APR_SUCCESS
        || (rv = apr_thread_cond_create(&rf->done, pchild)) != APR_SUCCESS)
        child_fail(s, rv, "the refresher's mutex");
    /* Signals are the MPM's business, in its own threads: the refresher
     * takes none (a handler run here would stop the child from inside the
     * thread it then joins). */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    rv = apr_thread_create(&rf->thread, NULL, refresher_main, rf, pchild);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rv != APR_SUCCESS)
        child_fail(s, rv, "the refresher thread");
    /* Before anything of the pool goes: the thread uses the process copy
     * and the runtimes until it is joined. */
    apr_pool_pre_cleanup_register(pchild, rf, refresher_stop);
    st->refresher = rf;
}

void mod_datos_refresh_child_init(apr_pool_t *pchild, server_rec *s)
{
    const apr_array_header_t *stores = mod_datos_stores();
    int i;

    for (i = 0; stores && i < stores->nelts; i++) {
        mod_datos_store_t *st = APR_ARRAY_IDX(stores, i, mod_datos_store_t *);
        apr_time_t host = (apr_time_t)apr_atomic_read64(&st->host->fetched);
        apr_time_t have;

        refresher_start(pchild, s, st);
        /* The warm start: an answer before traffic needs one. */
        if (!holds(st, host > 0 ? host : 1, &have))
            mod_datos_refresh_want(st, host > 0 ? host : 1, NULL);
    }
}
