/* test_backoff.c - truncated exponential backoff with full jitter: the
 * bounds of every wait, what is worth retrying, Retry-After as a floor,
 * the total deadline. */
#include <string.h>

#include "dt_support.h"
#include "datos_backoff.h"
#include "datos_google_classify.h"

#define MS(n) ((apr_interval_time_t)(n)*1000)
#define T0    apr_time_from_sec(1700000000)

static apr_uint64_t fixed_value;

static apr_uint64_t fixed(void *baton)
{
    (void)baton;
    return fixed_value;
}

/* Every wait lies in [0, min(max, initial * 2^n)]; over many draws the
 * whole range is used (full jitter), and the bound stops at max. */
static void waits_stay_within_the_bound(void **state)
{
    static const apr_interval_time_t want[] = {MS(100),  MS(200),  MS(400),
                                               MS(800),  MS(1600), MS(3200),
                                               MS(5000), MS(5000), MS(5000)};
    datos_backoff_t b;
    datos_err_t err = {0};
    int n, k;

    (void)state;
    err.rv = DATOS_EBACKEND;
    for (n = 0; n < (int)(sizeof(want) / sizeof(want[0])); n++) {
        apr_interval_time_t lo = want[n], hi = 0, w;

        for (k = 0; k < 2000; k++) {
            datos_backoff_init(&b, MS(100), MS(5000), 0);
            datos_backoff_seed(&b, (apr_uint64_t)(n * 100000 + k));
            b.attempts = n;
            assert_int_equal(datos_backoff_bound(&b), want[n]);
            assert_int_equal(
                datos_backoff_next(&b, DATOS_EBACKEND, &err, T0, &w), 1);
            assert_true(w >= 0 && w <= want[n]);
            assert_int_equal(b.attempts, n + 1);
            lo = w < lo ? w : lo;
            hi = w > hi ? w : hi;
        }
        /* uniform over the range: both ends are approached */
        assert_true(lo < want[n] / 50);
        assert_true(hi > want[n] - want[n] / 50);
    }
}

/* The ends of the range come from the source: an injected one decides
 * them exactly. */
static void injected_source_decides(void **state)
{
    datos_backoff_t b;
    apr_interval_time_t w;

    (void)state;
    datos_backoff_init(&b, MS(250), MS(1000), 0);
    b.rand = fixed;
    fixed_value = 0;
    assert_int_equal(datos_backoff_next(&b, APR_TIMEUP, NULL, T0, &w), 1);
    assert_int_equal(w, 0);
    fixed_value = ~(apr_uint64_t)0 - (~(apr_uint64_t)0 % (MS(500) + 1)) - 1;
    assert_int_equal(datos_backoff_next(&b, DATOS_ECONNECT, NULL, T0, &w), 1);
    assert_int_equal(w, MS(500)); /* the bound of attempt 1 */
    fixed_value = 12345;
    assert_int_equal(datos_backoff_next(&b, DATOS_ERATELIMIT, NULL, T0, &w), 1);
    assert_int_equal(w, 12345 % (MS(1000) + 1));
    assert_int_equal(b.attempts, 3);

    /* the same seed gives the same waits */
    {
        datos_backoff_t x, y;
        apr_interval_time_t a, c;
        int i;

        datos_backoff_init(&x, MS(10), MS(10000), 0);
        datos_backoff_init(&y, MS(10), MS(10000), 0);
        datos_backoff_seed(&x, 42);
        datos_backoff_seed(&y, 42);
        for (i = 0; i < 20; i++) {
            assert_int_equal(
                datos_backoff_next(&x, DATOS_EBACKEND, NULL, T0, &a), 1);
            assert_int_equal(
                datos_backoff_next(&y, DATOS_EBACKEND, NULL, T0, &c), 1);
            assert_int_equal(a, c);
        }
    }
}

/* Only transient failures are retried (docs/design.md 5, docs/google-apis.md 4.1). */
static void what_is_retried(void **state)
{
    static const struct {
        apr_status_t rv;
        int retry;
    } cases[] = {
        {APR_TIMEUP, 1},       {DATOS_ECONNECT, 1},    {DATOS_EBACKEND, 1},
        {DATOS_ERATELIMIT, 1}, {DATOS_EAUTH, 0},       {DATOS_EREJECTED, 0},
        {DATOS_EQUOTA, 0},     {DATOS_EEXISTS, 0},     {DATOS_ECONFIG, 0},
        {DATOS_EMALFORMED, 0}, {DATOS_EBYTESLIMIT, 0}, {DATOS_ETOOLARGE, 0},
        {DATOS_EINSECURE, 0},  {APR_EINVAL, 0},        {APR_SUCCESS, 0},
    };
    apr_pool_t *p = DT_POOL(state);
    datos_backoff_t b;
    datos_err_t err = {0};
    apr_interval_time_t w;
    size_t i;
    const char *ratelimit =
        "{\"error\":{\"code\":403,\"message\":\"Exceeded rate limits\",\"errors\":"
        "[{\"domain\":\"usageLimits\",\"reason\":\"rateLimitExceeded\"}],\"status\":\"PERMISSION_DENIED\"}}";
    const char *denied =
        "{\"error\":{\"code\":403,\"message\":\"Access Denied\",\"errors\":"
        "[{\"reason\":\"accessDenied\"}],\"status\":\"PERMISSION_DENIED\"}}";

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        datos_backoff_init(&b, MS(1), MS(2), T0 + apr_time_from_sec(60));
        w = -1;
        assert_int_equal(datos_backoff_next(&b, cases[i].rv, NULL, T0, &w),
                         cases[i].retry);
        assert_int_equal(datos_backoff_retryable(cases[i].rv, NULL),
                         cases[i].retry);
        if (!cases[i].retry) {
            assert_int_equal(w, -1);
            assert_int_equal(b.attempts, 0);
        }
    }

    /* BigQuery's 403 rateLimitExceeded is retried, and not sooner than 1 s;
     * its other 403s are not retried */
    datos_backoff_init(&b, MS(1), MS(2), T0 + apr_time_from_sec(60));
    assert_int_equal(datos_google_classify(p, DATOS_GOOGLE_API, 403, ratelimit,
                                           strlen(ratelimit), 0, &err),
                     DATOS_ERATELIMIT);
    assert_int_equal(datos_backoff_next(&b, err.rv, &err, T0, &w), 1);
    assert_int_equal(w, apr_time_from_sec(1));
    assert_int_equal(datos_google_classify(p, DATOS_GOOGLE_API, 403, denied,
                                           strlen(denied), 0, &err),
                     DATOS_EAUTH);
    assert_int_equal(datos_backoff_next(&b, err.rv, &err, T0, &w), 0);
}

/* What the server asked for is a floor, whatever the jitter drew. */
static void retry_after_is_a_floor(void **state)
{
    datos_backoff_t b;
    datos_err_t err = {0};
    apr_interval_time_t w;
    int i;

    (void)state;
    err.rv = DATOS_ERATELIMIT;
    err.retry_after = apr_time_from_sec(7);
    datos_backoff_init(&b, MS(100), MS(1000), T0 + apr_time_from_sec(600));
    for (i = 0; i < 50; i++) {
        assert_int_equal(datos_backoff_next(&b, DATOS_ERATELIMIT, &err, T0, &w),
                         1);
        assert_int_equal(w, apr_time_from_sec(7));
    }
    /* a smaller Retry-After leaves the jitter alone above it */
    err.retry_after = MS(10);
    datos_backoff_init(&b, MS(1000), MS(1000), 0);
    b.rand = fixed;
    fixed_value = MS(600);
    assert_int_equal(datos_backoff_next(&b, DATOS_EBACKEND, &err, T0, &w), 1);
    assert_int_equal(w, MS(600));
}

/* No wait ends past the total deadline: the caller stops instead. */
static void deadline_ends_the_retries(void **state)
{
    datos_backoff_t b;
    datos_err_t err = {0};
    apr_interval_time_t w;

    (void)state;
    datos_backoff_init(&b, MS(100), MS(100), T0 + apr_time_from_sec(1));
    b.rand = fixed;
    fixed_value = MS(100);
    assert_int_equal(datos_backoff_next(&b, DATOS_EBACKEND, NULL, T0, &w), 1);
    assert_int_equal(w, MS(100));
    /* 0.95 s in: 100 ms more would pass the deadline */
    assert_int_equal(
        datos_backoff_next(&b, DATOS_EBACKEND, NULL, T0 + MS(950), &w), 0);
    assert_int_equal(b.attempts, 1);
    /* past it: nothing */
    assert_int_equal(
        datos_backoff_next(&b, DATOS_EBACKEND, NULL, T0 + MS(2000), &w), 0);
    /* a Retry-After beyond the deadline is not waited for */
    err.retry_after = apr_time_from_sec(5);
    fixed_value = 0;
    assert_int_equal(datos_backoff_next(&b, DATOS_ERATELIMIT, &err, T0, &w), 0);
    /* no deadline: only the bound */
    datos_backoff_init(&b, MS(100), MS(100), 0);
    assert_int_equal(datos_backoff_next(&b, DATOS_EBACKEND, &err,
                                        T0 + apr_time_from_sec(99999), &w),
                     1);
    assert_int_equal(w, apr_time_from_sec(5));
}

/* Odd parameters still give sane bounds, and many attempts saturate. */
static void odd_parameters(void **state)
{
    datos_backoff_t b;

    (void)state;
    datos_backoff_init(&b, 0, -5, 0);
    assert_int_equal(b.initial, MS(1));
    assert_int_equal(b.max, MS(1));
    datos_backoff_init(&b, MS(1), apr_time_from_sec(60), 0);
    b.attempts = 1000000;
    assert_int_equal(datos_backoff_bound(&b), apr_time_from_sec(60));
    b.multiplier = 1.3;
    b.attempts = 3;
    assert_int_equal(datos_backoff_bound(&b), 2197); /* 1 ms * 1.3^3 */
}

/* ------------------------------------------------------------ iterator */

typedef struct {
    int logged;
    int stop_after; /* set the flag once this many retries were logged */
    volatile sig_atomic_t *flag;
} log_state_t;

static void count_retry(void *baton, apr_status_t rv, const datos_err_t *err,
                        apr_interval_time_t wait)
{
    log_state_t *ls = baton;

    (void)rv;
    (void)err;
    assert_true(wait >= 0 && wait <= MS(2));
    if (++ls->logged == ls->stop_after && ls->flag) {
        *ls->flag = 1;
    }
}

/* Attempts until success, each failure logged and its error cleared. */
static void iterator_retries_until_success(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_retry_t rt;
    datos_err_t err;
    log_state_t ls = {0, 0, NULL};
    apr_status_t rv = APR_EGENERAL; /* not looked at first */
    int calls = 0;

    datos_err_init(&err, p);
    datos_retry_init(&rt, MS(1), MS(2), 0);
    rt.log = count_retry;
    rt.log_baton = &ls;
    while (datos_retry_again(&rt, rv, &err)) {
        assert_null(err.message); /* cleared for every attempt */
        rv = ++calls < 4
                 ? datos_err_set(&err, p, DATOS_EBACKEND, 503, NULL, "busy")
                 : APR_SUCCESS;
    }
    assert_int_equal(rv, APR_SUCCESS);
    assert_int_equal(calls, 4);
    assert_int_equal(ls.logged, 3);
    assert_int_equal(rt.attempts, 5); /* 4 attempts, and the final answer */
}

/* What is not worth retrying ends the loop with its error kept. */
static void iterator_stops_on_refusals(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_retry_t rt;
    datos_err_t err;
    apr_status_t rv = APR_SUCCESS;
    int calls = 0;

    datos_err_init(&err, p);
    datos_retry_init(&rt, MS(1), MS(2), 0);
    while (datos_retry_again(&rt, rv, &err)) {
        calls++;
        rv = datos_err_set(&err, p, DATOS_EREJECTED, 400, NULL, "no");
    }
    assert_int_equal(calls, 1);
    assert_int_equal(rv, DATOS_EREJECTED);
    assert_string_equal(err.message, "no");
}

/* A stop ends a call at once, unless it has a grace: then it goes on,
 * within it, and calls sharing stop_by share the end. */
static void iterator_and_the_stop(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    volatile sig_atomic_t flag = 0;
    log_state_t ls = {0, 2, &flag};
    apr_time_t stop_by = 0;
    datos_retry_t rt;
    datos_err_t err;
    apr_status_t rv = APR_SUCCESS;
    int calls = 0;

    datos_err_init(&err, p);
    datos_retry_init(&rt, MS(1), MS(2), 0);
    rt.stop = &flag;
    rt.log = count_retry;
    rt.log_baton = &ls;
    while (datos_retry_again(&rt, rv, &err)) {
        calls++;
        rv = datos_err_set(&err, p, DATOS_ECONNECT, 0, NULL, "down");
    }
    /* the flag went up during the second wait: no third attempt */
    assert_int_equal(calls, 2);
    assert_int_equal(rv, DATOS_ECONNECT);

    /* with a grace that is already over, the call still gets its first
     * attempt and then ends; the end is shared through stop_by */
    flag = 1;
    datos_retry_init(&rt, MS(1), MS(2), 0);
    rt.stop = &flag;
    rt.stop_grace = 1;
    rt.stop_by = &stop_by;
    calls = 0;
    rv = APR_SUCCESS;
    while (datos_retry_again(&rt, rv, &err)) {
        calls++;
        rv = datos_err_set(&err, p, DATOS_ECONNECT, 0, NULL, "down");
        apr_sleep(MS(1)); /* past the 1 us grace */
    }
    assert_int_equal(calls, 1);
    assert_true(stop_by > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        DT_TEST(waits_stay_within_the_bound),
        DT_TEST(injected_source_decides),
        DT_TEST(what_is_retried),
        DT_TEST(retry_after_is_a_floor),
        DT_TEST(deadline_ends_the_retries),
        DT_TEST(odd_parameters),
        DT_TEST(iterator_retries_until_success),
        DT_TEST(iterator_stops_on_refusals),
        DT_TEST(iterator_and_the_stop),
    };
    return cmocka_run_group_tests(tests, dt_group_setup, dt_group_teardown);
}
