/* mod_datos_cache.c - the answer a request gets.
 *
 * The decision is the cache policy's (datos_policy.h, unit-tested without
 * httpd): from the answer this process holds (or finds in the shared tier
 * or the state file when its own is not fresh), the windows and the
 * back-off, it says serve, serve stale and ask the refresher, wait for the
 * refresher, fail, or (the quick path) decline. This file only carries
 * the decision out: it holds the answer for the request, asks and waits
 * for the refresher (mod_datos_refresh.c), and bounds the workers that
 * wait, so /health and cache hits always find one. A request never
 * fetches, and never waits while a servable answer exists.
 */
#include <string.h>

#include "apr_atomic.h"
#include "apr_strings.h"

#include "httpd.h"
#include "http_log.h"
#include "scoreboard.h"

#include "datos_log.h"
#include "mod_datos_cache.h"
#include "mod_datos_refresh.h"
#include "mod_datos_reply.h"
#include "mod_datos_runtime.h"
#include "mod_datos_tiers.h"

APLOG_USE_MODULE(datos);

/* A request turned away because too many wait comes back in this long. */
#define NO_ROOM_RETRY apr_time_from_sec(1)
/* A request over the bound on waiting workers may still hold its worker
 * this long, looking for the answer a fetch in flight brings: enough for a
 * fast BigQuery, short enough that /health always finds a worker. */
#define BRIEF_WAIT apr_time_from_sec(1)

typedef struct {
    request_rec *r;
    mod_datos_conf_t *conf;
    mod_datos_rt_t *rt;
    mod_datos_store_t *st;
    mod_datos_global_t *g;
    mod_datos_op_t op;
    datos_policy_windows_t w;
    mod_datos_entry_t *entry;
    datos_err_t *err;
} ctx_t;

/* ------------------------------------------------------------- holding */

typedef struct {
    mod_datos_store_t *st; /* NULL: not from the process copy */
    datos_answer_t *a;
} hold_t;

static apr_status_t hold_release(void *data)
{
    hold_t *h = data;

    if (h->st)
        mod_datos_tiers_release(h->st, h->a);
    else
        datos_answer_free(h->a);
    return APR_SUCCESS;
}

/* The answer stays alive until the request's pool goes, which httpd does
 * only once the body is written: the body is sent straight from it. */
static datos_answer_t *hold(ctx_t *c, datos_answer_t *a,
                            mod_datos_store_t *from)
{
    hold_t *h;

    if (!a)
        return NULL;
    h = apr_palloc(c->r->pool, sizeof(*h));
    h->st = from;
    h->a = a;
    apr_pool_cleanup_register(c->r->pool, h, hold_release,
                              apr_pool_cleanup_null);
    return a;
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

static void wait_leave(ctx_t *c)
{
    datos_metrics_wait_leave(c->g->metrics);
    apr_atomic_dec32(&c->rt->waiting);
}

/* ------------------------------------------------------------ outcomes */

static apr_status_t fail_with(ctx_t *c, apr_status_t rv,
                              apr_interval_time_t retry_after, const char *why)
{
    datos_err_set(c->err, c->r->pool, rv, 0, NULL, "%s", why);
    c->err->retry_after = retry_after;
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, c->r,
                  DATOS_LOGNO(0306) "no answer for this request: %s", why);
    return rv;
}

/* DatosFreshFor 0: the design datos replaces, one query per request, kept
 * for comparison; still bounded in the workers it takes. */
static apr_status_t uncached(ctx_t *c)
{
    datos_answer_t *a = NULL;
    apr_status_t rv;

    if (!wait_enter(c))
        return fail_with(c, DATOS_ERATELIMIT, NO_ROOM_RETRY,
                         "too many requests are waiting on BigQuery");
    rv = mod_datos_refresh_uncached(c->r, c->rt, &a, c->err);
    wait_leave(c);
    if (rv == APR_SUCCESS) {
        c->entry->answer = hold(c, a, NULL);
        c->entry->how = DATOS_HOW_UNCACHED;
    }
    return rv;
}

/* ------------------------------------------------------------- lookups */

/* The answer this process holds, or a newer one from the shared tier or
 * the state file when its own is not fresh; held for the request. *l1 is
 * what the process copy alone gave, for /metrics. */
static datos_answer_t *lookup(ctx_t *c, datos_lookup_t *l1)
{
    datos_answer_t *a = hold(c, mod_datos_tiers_current(c->st), c->st);
    datos_answer_t *b;

    if (a && c->op.now < datos_time_add(a->fetched, c->w.fresh_for)) {
        *l1 = DATOS_LOOKUP_HIT;
        return a;
    }
    *l1 = a ? DATOS_LOOKUP_STALE : DATOS_LOOKUP_MISS;
    b = mod_datos_tiers_newer(&c->op, a ? a->fetched : 0, 0);
    return b ? hold(c, b, c->st) : a;
}

static void state_of(ctx_t *c, const datos_answer_t *a, int may_wait,
                     datos_policy_state_t *state)
{
    memset(state, 0, sizeof(*state));
    state->have = a != NULL;
    state->fetched = a ? a->fetched : 0;
    state->now = c->op.now;
    state->next_attempt =
        (apr_time_t)apr_atomic_read64(&c->st->host->next_attempt);
    state->last_status =
        (apr_status_t)apr_atomic_read64(&c->st->host->last_status);
    state->may_wait = may_wait;
}

/* Why a wait ended without an answer, for the debug log. */
static const char *why(datos_wait_end_t end)
{
    switch (end) {
    case DATOS_WAIT_FAILED: return "the refresh this request waited for failed";
    case DATOS_WAIT_TIMED_OUT:
        return "no answer yet: the fetch in progress did not finish within "
               "DatosColdWait";
    default: return "too many requests are waiting on BigQuery";
    }
}

/* The decision carried out; failure says why for a DATOS_ACT_FAIL. */
static apr_status_t carry_out(ctx_t *c, const datos_policy_decision_t *d,
                              datos_answer_t *a, const char *failure)
{
    switch (d->act) {
    case DATOS_ACT_SERVE_REFRESH:
        mod_datos_refresh_want(c->st, d->want_after, NULL);
        /* fall through */
    case DATOS_ACT_SERVE:
        c->entry->answer = a;
        c->entry->how = d->how;
        return APR_SUCCESS;
    case DATOS_ACT_DECLINE: return MOD_DATOS_DECLINED;
    case DATOS_ACT_FAIL:
        return fail_with(c, d->status, d->retry_after, failure);
    default:
        /* The policy never asks to wait twice. */
        return fail_with(c, APR_EGENERAL, NO_ROOM_RETRY, "no decision");
    }
}

/* DATOS_ACT_WAIT: ask the refresher, and wait for it while the bound on
 * waiting workers allows. */
static apr_status_t wait_for_refresh(ctx_t *c, datos_policy_state_t *state,
                                     const datos_policy_decision_t *d,
                                     datos_answer_t *a)
{
    datos_policy_waited_t waited;
    datos_policy_decision_t after;
    apr_uint64_t ticket;

    memset(&waited, 0, sizeof(waited));
    ticket = mod_datos_refresh_want(c->st, d->want_after, &waited.started);
    if (!wait_enter(c)) {
        waited.end = mod_datos_refresh_wait(
            c->st, ticket, d->want_after, datos_time_add(c->op.now, BRIEF_WAIT),
            &waited.status, &waited.retry_after);
        if (waited.end != DATOS_WAIT_ANSWERED)
            waited.end = DATOS_WAIT_NO_ROOM;
    }
    else {
        waited.end = mod_datos_refresh_wait(
            c->st, ticket, d->want_after,
            datos_time_add(c->op.now, c->conf->cold_wait), &waited.status,
            &waited.retry_after);
        wait_leave(c);
    }
    c->op.now = c->entry->now = apr_time_now();
    state->now = c->op.now;
    if (waited.end == DATOS_WAIT_ANSWERED)
        a = hold(c, mod_datos_tiers_current(c->st), c->st);
    datos_policy_after_wait(&c->w, state, &waited, &after);
    return carry_out(c, &after, a, why(waited.end));
}

apr_status_t mod_datos_entry_get(request_rec *r, mod_datos_conf_t *conf,
                                 int quick, mod_datos_entry_t *entry,
                                 datos_err_t *err)
{
    datos_policy_state_t state;
    datos_policy_decision_t d;
    datos_lookup_t l1 = DATOS_LOOKUP_MISS;
    datos_answer_t *a = NULL;
    apr_status_t rv;
    ctx_t c;

    memset(&c, 0, sizeof(c));
    c.r = r;
    c.conf = conf;
    c.rt = conf->rt;
    c.st = c.rt->store;
    c.g = &mod_datos_global;
    c.entry = entry;
    c.err = err;
    c.op.st = c.st;
    c.op.s = r->server;
    c.op.pool = r->pool;
    c.op.now = entry->now = apr_time_now();
    c.w.fresh_for = conf->fresh_for;
    c.w.stale_while_revalidate = conf->stale_while_revalidate;
    c.w.stale_if_error = conf->stale_if_error;
    c.w.wait = conf->cold_wait;

    if (!c.st) {
        rv = quick ? MOD_DATOS_DECLINED : uncached(&c);
    }
    else {
        a = lookup(&c, &l1);
        state_of(&c, a, !quick, &state);
        datos_policy_decide(&c.w, &state, &d);
        /* A request the quick path passes on is counted by the handler. */
        if (d.act != DATOS_ACT_DECLINE)
            datos_metrics_lookup(c.g->metrics, DATOS_TIER_L1, l1);
        rv = d.act == DATOS_ACT_WAIT
                 ? wait_for_refresh(&c, &state, &d, a)
                 : carry_out(&c, &d, a,
                             "BigQuery failed moments ago; not asking again "
                             "yet");
    }
    return rv;
}

int mod_datos_entry_ready(mod_datos_conf_t *conf)
{
    mod_datos_store_t *st = conf->rt ? conf->rt->store : NULL;
    datos_answer_t *a;

    if (!st || apr_atomic_read64(&st->host->fetched) > 0)
        return 1;
    a = mod_datos_tiers_current(st);
    mod_datos_tiers_release(st, a);
    return a != NULL;
}
