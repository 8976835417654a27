/* datos_backoff.c - truncated exponential backoff with full jitter, and
 * the retry iterator built on it. */
#include <string.h>
#include <unistd.h>
#include <apr_general.h>

#include "datos_backoff.h"

#define RATE_LIMIT_MIN_WAIT apr_time_from_sec(1)

/* splitmix64: small, fast, and good enough to spread retries of many
 * hosts; nothing secret depends on it. */
static apr_uint64_t builtin_rand(void *baton)
{
    datos_backoff_t *b = baton;
    apr_uint64_t z = (b->state += APR_UINT64_C(0x9E3779B97F4A7C15));

    z = (z ^ (z >> 30)) * APR_UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * APR_UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

void datos_backoff_init(datos_backoff_t *b, apr_interval_time_t initial,
                        apr_interval_time_t max, apr_time_t deadline)
{
    apr_uint64_t seed;

    memset(b, 0, sizeof(*b));
    b->initial = initial > 0 ? initial : 1000;
    b->max = max >= b->initial ? max : b->initial;
    b->deadline = deadline;
    b->multiplier = 2.0;
    if (apr_generate_random_bytes((unsigned char *)&seed, sizeof(seed))
        != APR_SUCCESS) {
        /* Hosts retrying in step is what jitter prevents: the clock and
         * the pid still tell them apart. */
        seed = (apr_uint64_t)apr_time_now() ^ ((apr_uint64_t)getpid() << 32);
    }
    b->state = seed;
}

void datos_backoff_seed(datos_backoff_t *b, apr_uint64_t seed)
{
    b->rand = NULL;
    b->state = seed;
}

int datos_backoff_retryable(apr_status_t rv, const datos_err_t *err)
{
    (void)err;
    return APR_STATUS_IS_TIMEUP(rv) || rv == DATOS_ECONNECT
           || rv == DATOS_EBACKEND || rv == DATOS_ERATELIMIT;
}

apr_interval_time_t datos_backoff_bound(const datos_backoff_t *b)
{
    double bound = (double)b->initial;
    int i;

    /* Grown step by step so that it saturates instead of overflowing. */
    for (i = 0; i < b->attempts && bound < (double)b->max; i++) {
        bound *= b->multiplier > 1.0 ? b->multiplier : 1.0;
    }
    return bound >= (double)b->max ? b->max : (apr_interval_time_t)bound;
}

int datos_backoff_next(datos_backoff_t *b, apr_status_t rv,
                       const datos_err_t *err, apr_time_t now,
                       apr_interval_time_t *wait)
{
    apr_interval_time_t bound, w;
    apr_uint64_t r;

    if (!datos_backoff_retryable(rv, err)) {
        return 0;
    }
    bound = datos_backoff_bound(b);
    r = b->rand ? b->rand(b->rand_baton) : builtin_rand(b);
    /* Full jitter: uniform over [0, bound]; the modulo bias is at most
     * bound / 2^64. */
    w = (apr_interval_time_t)(r % ((apr_uint64_t)bound + 1));
    if (err && err->retry_after > w) {
        w = err->retry_after;
    }
    if (rv == DATOS_ERATELIMIT && err && err->reason
        && !strcmp(err->reason, "rateLimitExceeded")
        && w < RATE_LIMIT_MIN_WAIT) {
        w = RATE_LIMIT_MIN_WAIT;
    }
    if (b->deadline && now + w >= b->deadline) {
        return 0;
    }
    b->attempts++;
    *wait = w;
    return 1;
}

void datos_retry_init(datos_retry_t *rt, apr_interval_time_t initial,
                      apr_interval_time_t max, apr_interval_time_t total)
{
    memset(rt, 0, sizeof(*rt));
    datos_backoff_init(&rt->b, initial, max,
                       total > 0 ? apr_time_now() + total : 0);
}

/* Whether the stop flag ends the retries now; the first sight of it with a
 * grace brings the deadline in. */
static int stopped(datos_retry_t *rt)
{
    apr_time_t *by = rt->stop_by ? rt->stop_by : &rt->own_stop_by;

    if (!rt->stop || !*rt->stop) {
        return 0;
    }
    if (!rt->stop_grace) {
        return 1;
    }
    if (!*by) {
        *by = apr_time_now() + rt->stop_grace;
    }
    if (!rt->b.deadline || *by < rt->b.deadline) {
        rt->b.deadline = *by;
    }
    return 0;
}

int datos_retry_again(datos_retry_t *rt, apr_status_t rv, datos_err_t *err)
{
    apr_interval_time_t wait = 0;
    apr_time_t until;

    if (!rt->attempts++) {
        return 1;
    }
    if (rv == APR_SUCCESS || stopped(rt)
        || !datos_backoff_next(&rt->b, rv, err, apr_time_now(), &wait)) {
        return 0;
    }
    if (rt->log) {
        rt->log(rt->log_baton, rv, err, wait);
    }
    until = apr_time_now() + wait;
    for (;;) {
        apr_time_t now = apr_time_now();
        apr_interval_time_t left = until - now;

        if (left <= 0) {
            break;
        }
        if (stopped(rt)) {
            return 0;
        }
        if (rt->b.deadline && now >= rt->b.deadline) {
            return 0;
        }
        apr_sleep(left > apr_time_from_msec(100) ? apr_time_from_msec(100)
                                                 : left);
    }
    if (err) {
        datos_err_init(err, err->pool);
    }
    return 1;
}
