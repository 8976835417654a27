/* datos_policy.c - the cache policy of GET /datos (docs/design.md 4.3).
 *
 * Every time here may come from a cache entry another host wrote, so no
 * sum or difference is computed without a bound: they saturate at the
 * ends of apr_time_t instead of wrapping.
 */
#include <stdio.h>
#include <string.h>

#include "datos_error.h"
#include "datos_policy.h"

/* After a failed fetch, the next one waits for the upstream's Retry-After
 * (up to this), else for the freshness window (up to BACKOFF_DEFAULT_MAX,
 * at least BACKOFF_MIN). */
#define BACKOFF_MAX         apr_time_from_sec(60)
#define BACKOFF_DEFAULT_MAX apr_time_from_sec(5)
#define BACKOFF_MIN         apr_time_from_sec(1)
/* A request turned away because too many wait is told to come back in
 * this long. */
#define NO_ROOM_RETRY apr_time_from_sec(1)

apr_time_t datos_time_add(apr_time_t t, apr_interval_time_t d)
{
    apr_time_t r;

    if (__builtin_add_overflow(t, d, &r))
        return d > 0 ? APR_INT64_MAX : APR_INT64_MIN;
    return r;
}

/* a - b, saturating. */
static apr_int64_t diff(apr_time_t a, apr_time_t b)
{
    apr_int64_t r;

    if (__builtin_sub_overflow(a, b, &r))
        return b < 0 ? APR_INT64_MAX : APR_INT64_MIN;
    return r;
}

/* Whole seconds, rounded up, of a positive interval. */
static apr_int64_t ceil_sec(apr_int64_t us)
{
    return us / APR_USEC_PER_SEC + (us % APR_USEC_PER_SEC != 0);
}

static apr_interval_time_t longer(apr_interval_time_t a, apr_interval_time_t b)
{
    return a > b ? a : b;
}

static void fail(datos_policy_decision_t *out, const datos_policy_state_t *st,
                 apr_status_t status, apr_interval_time_t retry_after)
{
    if (!st->may_wait) {
        out->act = DATOS_ACT_DECLINE;
        return;
    }
    out->act = DATOS_ACT_FAIL;
    out->status = status;
    out->retry_after = retry_after > 0 ? retry_after : BACKOFF_MIN;
}

static void serve(datos_policy_decision_t *out, datos_act_t act,
                  datos_how_t how)
{
    out->act = act;
    out->how = how;
}

void datos_policy_decide(const datos_policy_windows_t *w,
                         const datos_policy_state_t *st,
                         datos_policy_decision_t *out)
{
    int failing = st->next_attempt && st->now < st->next_attempt;
    apr_time_t fresh_until;

    memset(out, 0, sizeof(*out));
    /* Fresh at `now`: fetched after now - F. */
    out->want_after = datos_time_add(st->now, 1 - w->fresh_for);
    if (!st->have) {
        if (failing)
            fail(out, st, st->last_status, diff(st->next_attempt, st->now));
        else
            out->act = st->may_wait ? DATOS_ACT_WAIT : DATOS_ACT_DECLINE;
        return;
    }
    fresh_until = datos_time_add(st->fetched, w->fresh_for);
    if (st->now < fresh_until) {
        serve(out, DATOS_ACT_SERVE, DATOS_HOW_HIT);
    }
    else if (st->now < datos_time_add(fresh_until, w->stale_while_revalidate)) {
        /* While BigQuery fails, the back-off decides when to ask again. */
        if (failing)
            serve(out, DATOS_ACT_SERVE, DATOS_HOW_STALE_ERROR);
        else
            serve(out, DATOS_ACT_SERVE_REFRESH, DATOS_HOW_STALE);
    }
    else if (failing) {
        if (st->now < datos_time_add(fresh_until, w->stale_if_error))
            serve(out, DATOS_ACT_SERVE, DATOS_HOW_STALE_ERROR);
        else
            fail(out, st, st->last_status, diff(st->next_attempt, st->now));
    }
    else {
        /* Too stale to serve without asking BigQuery first. */
        out->act = st->may_wait ? DATOS_ACT_WAIT : DATOS_ACT_DECLINE;
    }
}

void datos_policy_after_wait(const datos_policy_windows_t *w,
                             const datos_policy_state_t *st,
                             const datos_policy_waited_t *waited,
                             datos_policy_decision_t *out)
{
    memset(out, 0, sizeof(*out));
    out->want_after = datos_time_add(st->now, 1 - w->fresh_for);
    if (waited->end == DATOS_WAIT_ANSWERED) {
        serve(out, DATOS_ACT_SERVE,
              !waited->started ? DATOS_HOW_COLLAPSED
              : st->have       ? DATOS_HOW_REFRESHED
                               : DATOS_HOW_MISS_STORED);
        return;
    }
    if (st->have
        && st->now < datos_time_add(datos_time_add(st->fetched, w->fresh_for),
                                    w->stale_if_error)) {
        /* Turned away before waiting: stale because of the load, not of
         * BigQuery. */
        serve(out, DATOS_ACT_SERVE,
              waited->end == DATOS_WAIT_NO_ROOM ? DATOS_HOW_STALE
                                                : DATOS_HOW_STALE_ERROR);
        return;
    }
    switch (waited->end) {
    case DATOS_WAIT_FAILED:
        fail(out, st, waited->status, waited->retry_after);
        break;
    case DATOS_WAIT_TIMED_OUT: fail(out, st, DATOS_ERATELIMIT, w->wait); break;
    default: fail(out, st, DATOS_ERATELIMIT, NO_ROOM_RETRY); break;
    }
}

apr_interval_time_t datos_policy_backoff(apr_interval_time_t retry_after,
                                         apr_interval_time_t fresh_for)
{
    apr_interval_time_t b;

    if (retry_after > 0)
        return retry_after > BACKOFF_MAX ? BACKOFF_MAX : retry_after;
    b = fresh_for > BACKOFF_DEFAULT_MAX ? BACKOFF_DEFAULT_MAX : fresh_for;
    return b < BACKOFF_MIN ? BACKOFF_MIN : b;
}

apr_time_t datos_policy_keep_until(const datos_policy_windows_t *w,
                                   apr_time_t fetched)
{
    return datos_time_add(datos_time_add(fetched, w->fresh_for),
                          longer(w->stale_while_revalidate, w->stale_if_error));
}

int datos_policy_fetched_ok(apr_time_t fetched, apr_time_t now)
{
    return fetched > 0 && fetched <= datos_time_add(now, DATOS_POLICY_SKEW);
}

int datos_policy_lease_live(apr_time_t taken, apr_time_t now,
                            apr_interval_time_t timeout)
{
    return taken > 0 && taken <= datos_time_add(now, DATOS_POLICY_SKEW)
           && now < datos_time_add(taken, timeout);
}

apr_int64_t datos_policy_age(apr_time_t fetched, apr_time_t now)
{
    apr_int64_t d = diff(now, fetched);

    return d > 0 ? d / APR_USEC_PER_SEC : 0;
}

void datos_policy_cache_status(char *buf, datos_how_t how, apr_time_t fetched,
                               apr_interval_time_t fresh_for, apr_time_t now)
{
    apr_time_t fresh_until = datos_time_add(fetched, fresh_for);
    apr_int64_t d;

    switch (how) {
    case DATOS_HOW_HIT:
        d = diff(fresh_until, now);
        snprintf(buf, DATOS_POLICY_STATUS_SIZE,
                 "datos; hit; ttl=%" APR_INT64_T_FMT,
                 d > 0 ? d / APR_USEC_PER_SEC : 0);
        break;
    case DATOS_HOW_STALE:
    case DATOS_HOW_STALE_ERROR:
        /* Past its freshness by at least a second, however little. */
        d = diff(now, fresh_until);
        snprintf(buf, DATOS_POLICY_STATUS_SIZE,
                 "datos; hit; ttl=-%" APR_INT64_T_FMT "%s",
                 d > 0 ? ceil_sec(d) : 1,
                 how == DATOS_HOW_STALE_ERROR ? "; detail=stale-if-error" : "");
        break;
    case DATOS_HOW_MISS_STORED:
        snprintf(buf, DATOS_POLICY_STATUS_SIZE, "datos; fwd=miss; stored");
        break;
    case DATOS_HOW_COLLAPSED:
        snprintf(buf, DATOS_POLICY_STATUS_SIZE, "datos; fwd=miss; collapsed");
        break;
    case DATOS_HOW_REFRESHED:
        snprintf(buf, DATOS_POLICY_STATUS_SIZE,
                 "datos; fwd=stale; fwd-status=200; stored");
        break;
    default: snprintf(buf, DATOS_POLICY_STATUS_SIZE, "datos; fwd=bypass");
    }
}
