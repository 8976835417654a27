/* datos_backoff.h - truncated exponential backoff with full jitter
 * (docs/google-apis.md 4.2) for the callers of single-attempt clients: the wait
 * before attempt n+1 is uniform in [0, min(max, initial * multiplier^n)],
 * at least what the server asked for (Retry-After, RetryInfo), and no wait
 * is handed out that would end past the total deadline.
 *
 *     datos_backoff_t b;
 *     apr_interval_time_t wait;
 *     datos_backoff_init(&b, apr_time_from_msec(100), apr_time_from_sec(32),
 *                        apr_time_now() + apr_time_from_sec(600));
 *     while ((rv = call(..., &err)) != APR_SUCCESS
 *            && datos_backoff_next(&b, rv, &err, apr_time_now(), &wait)) {
 *         apr_sleep(wait);
 *     }
 *
 * or, with the waiting, a stop flag and a log line per retry done by the
 * retry iterator below:
 *
 *     datos_retry_t rt;
 *     datos_retry_init(&rt, initial, max, apr_time_from_sec(600));
 *     while (datos_retry_again(&rt, rv, &err))
 *         rv = call(..., &err);
 */
#ifndef DATOS_BACKOFF_H
#define DATOS_BACKOFF_H

#include <signal.h>
#include <apr_time.h>
#include "datos_error.h"

/* A source of uniformly distributed 64-bit values. */
typedef apr_uint64_t datos_backoff_rand_fn(void *baton);

typedef struct datos_backoff_t {
    apr_interval_time_t initial; /* the first wait's bound, > 0 */
    apr_interval_time_t max; /* no wait's bound passes it (Retry-After may) */
    apr_time_t deadline;     /* absolute end of all attempts; 0: none */
    double multiplier;       /* growth of the bound per attempt; init: 2 */
    int attempts;            /* waits handed out so far */
    datos_backoff_rand_fn *rand; /* NULL: the built-in generator; set after
                                    * init to inject a source */
    void *rand_baton;
    apr_uint64_t state; /* the built-in generator's */
} datos_backoff_t;

/* multiplier 2, the built-in generator seeded from the system's random
 * source. initial <= 0 is taken as 1 ms, max < initial as initial. */
void datos_backoff_init(datos_backoff_t *b, apr_interval_time_t initial,
                        apr_interval_time_t max, apr_time_t deadline);

/* Reproducible waits (tests, benchmarks). */
void datos_backoff_seed(datos_backoff_t *b, apr_uint64_t seed);

/* Whether (rv, err) is worth another attempt at all: timeouts, connection
 * errors, DATOS_EBACKEND and DATOS_ERATELIMIT (which includes BigQuery's
 * 403 rateLimitExceeded); never DATOS_EAUTH, DATOS_EREJECTED, DATOS_EQUOTA,
 * DATOS_EEXISTS, DATOS_ECONFIG or anything else. */
int datos_backoff_retryable(apr_status_t rv, const datos_err_t *err);

/* After a failed attempt: 1 with *wait set when another attempt is
 * worthwhile - rv is retryable and now + *wait is not past the deadline -
 * else 0. The wait is uniform in [0, bound] where bound = min(max, initial
 * * multiplier^attempts), raised to err->retry_after when that is larger,
 * and to 1 s for a rateLimitExceeded reason (docs/google-apis.md 4.1). Counts the
 * attempt. */
int datos_backoff_next(datos_backoff_t *b, apr_status_t rv,
                       const datos_err_t *err, apr_time_t now,
                       apr_interval_time_t *wait);

/* The bound the next wait is drawn under (for logs). */
apr_interval_time_t datos_backoff_bound(const datos_backoff_t *b);

/* ------------------------------------------------------------ iterator */

/* Told of each retry before its wait: what failed, and the wait. */
typedef void datos_retry_log_fn(void *baton, apr_status_t rv,
                                const datos_err_t *err,
                                apr_interval_time_t wait);

typedef struct datos_retry_t {
    datos_backoff_t b;
    int attempts;                      /* made so far */
    const volatile sig_atomic_t *stop; /* NULL, or a flag that ends them */
    apr_interval_time_t stop_grace;    /* once stop is set: 0 makes no more
                                     * attempts; otherwise they go on until
                                     * this long after it was first seen */
    apr_time_t *stop_by; /* NULL, or where the end of that grace is kept, so
                          * that every call sharing it ends by the same
                          * time (0 until the stop is seen) */
    apr_time_t own_stop_by;
    datos_retry_log_fn *log; /* NULL: none */
    void *log_baton;
} datos_retry_t;

/* Attempts of one call, with datos_backoff_init's waits, for at most
 * total from now (0: no bound). Set stop, stop_grace and log afterwards. */
void datos_retry_init(datos_retry_t *rt, apr_interval_time_t initial,
                      apr_interval_time_t max, apr_interval_time_t total);

/* The loop of one call, `while (datos_retry_again(&rt, rv, &err)) rv =
 * call(..., &err);`: 1 for the first attempt (rv is not looked at), then,
 * after each, 0 once rv is APR_SUCCESS, not worth another attempt
 * (datos_backoff_next), past the total or stopped; otherwise it logs,
 * waits the backoff in slices of at most 100 ms (so a stop ends the wait),
 * clears err for the next attempt (keeping its pool) and answers 1. After
 * the loop, rv and err are those of the last attempt. */
int datos_retry_again(datos_retry_t *rt, apr_status_t rv, datos_err_t *err);

#endif
