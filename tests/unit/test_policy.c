/* test_policy.c - the cache policy of GET /datos: every decision at every
 * boundary of an answer's time line, with and without a back-off, for
 * the handler and for the quick path; after a wait; the trust rules on
 * times read from a cache; Cache-Status; and times at the ends of
 * apr_time_t, where the sanitizer build fails on any overflow. */
#include <stdio.h>
#include <string.h>

#include "dt_support.h"
#include "datos_error.h"
#include "datos_policy.h"

#define SEC(n) apr_time_from_sec(n)
#define T0     ((apr_time_t)1705240800000000LL) /* 2024-01-14T14:00:00Z */
#define WEEK   SEC(7 * 86400)

static const datos_policy_windows_t W = {
    .fresh_for = SEC(30),
    .stale_while_revalidate = SEC(60),
    .stale_if_error = SEC(3600),
    .wait = SEC(5),
};

static datos_policy_decision_t decide_at(const datos_policy_windows_t *w,
                                         int have, apr_time_t now,
                                         apr_time_t next_attempt, int may_wait)
{
    datos_policy_state_t st = {.have = have,
                               .fetched = T0,
                               .now = now,
                               .next_attempt = next_attempt,
                               .last_status = DATOS_ERATELIMIT,
                               .may_wait = may_wait};
    datos_policy_decision_t d;

    datos_policy_decide(w, &st, &d);
    return d;
}

typedef struct {
    const char *what;
    int have;
    apr_interval_time_t at;     /* now - T0 */
    int failing;                /* a back-off runs past now */
    datos_act_t act, quick_act; /* handler, quick path */
    datos_how_t how;            /* when served */
} case_t;

/* Boundaries: fresh until T0+30s, stale-while-revalidate until T0+90s,
 * stale-if-error until T0+3630s. */
static const case_t cases[] = {
    {"fresh at fetch", 1, 0, 0, DATOS_ACT_SERVE, DATOS_ACT_SERVE,
     DATOS_HOW_HIT},
    {"fresh, last microsecond", 1, SEC(30) - 1, 0, DATOS_ACT_SERVE,
     DATOS_ACT_SERVE, DATOS_HOW_HIT},
    {"fresh while failing", 1, SEC(10), 1, DATOS_ACT_SERVE, DATOS_ACT_SERVE,
     DATOS_HOW_HIT},
    {"stale at once", 1, SEC(30), 0, DATOS_ACT_SERVE_REFRESH,
     DATOS_ACT_SERVE_REFRESH, DATOS_HOW_STALE},
    {"stale, last microsecond of SWR", 1, SEC(90) - 1, 0,
     DATOS_ACT_SERVE_REFRESH, DATOS_ACT_SERVE_REFRESH, DATOS_HOW_STALE},
    {"stale while failing: no refresh", 1, SEC(30), 1, DATOS_ACT_SERVE,
     DATOS_ACT_SERVE, DATOS_HOW_STALE_ERROR},
    {"past SWR: wait", 1, SEC(90), 0, DATOS_ACT_WAIT, DATOS_ACT_DECLINE, 0},
    {"long past: wait", 1, SEC(7200), 0, DATOS_ACT_WAIT, DATOS_ACT_DECLINE, 0},
    {"past SWR, failing: stale-if-error", 1, SEC(90), 1, DATOS_ACT_SERVE,
     DATOS_ACT_SERVE, DATOS_HOW_STALE_ERROR},
    {"last microsecond of SIE, failing", 1, SEC(3630) - 1, 1, DATOS_ACT_SERVE,
     DATOS_ACT_SERVE, DATOS_HOW_STALE_ERROR},
    {"past SIE, failing: error", 1, SEC(3630), 1, DATOS_ACT_FAIL,
     DATOS_ACT_DECLINE, 0},
    {"cold", 0, 0, 0, DATOS_ACT_WAIT, DATOS_ACT_DECLINE, 0},
    {"cold, failing", 0, 0, 1, DATOS_ACT_FAIL, DATOS_ACT_DECLINE, 0},
};

static void decisions_at_every_boundary(void **state)
{
    size_t i;
    int quick;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const case_t *c = &cases[i];

        for (quick = 0; quick <= 1; quick++) {
            apr_time_t now = T0 + c->at;
            datos_policy_decision_t d = decide_at(
                &W, c->have, now, c->failing ? now + SEC(2) : 0, !quick);
            datos_act_t want = quick ? c->quick_act : c->act;

            if (d.act != want)
                fail_msg("%s (%s): act %d, expected %d", c->what,
                         quick ? "quick" : "handler", d.act, want);
            if ((want == DATOS_ACT_SERVE || want == DATOS_ACT_SERVE_REFRESH)
                && d.how != c->how)
                fail_msg("%s: how %d, expected %d", c->what, d.how, c->how);
            /* a refresh must bring an answer that is fresh now */
            if (want == DATOS_ACT_SERVE_REFRESH || want == DATOS_ACT_WAIT) {
                assert_true(d.want_after + W.fresh_for > now);
                assert_true(d.want_after + W.fresh_for - 1 <= now);
            }
            if (want == DATOS_ACT_FAIL) {
                assert_int_equal(d.status, DATOS_ERATELIMIT);
                assert_int_equal(d.retry_after, SEC(2));
            }
        }
    }
}

/* A back-off that ended is no back-off: next_attempt == now. */
static void a_backoff_ends_at_next_attempt(void **state)
{
    datos_policy_decision_t d;

    (void)state;
    d = decide_at(&W, 1, T0 + SEC(40), T0 + SEC(40), 1);
    assert_int_equal(d.act, DATOS_ACT_SERVE_REFRESH);
    d = decide_at(&W, 1, T0 + SEC(40), T0 + SEC(40) + 1, 1);
    assert_int_equal(d.act, DATOS_ACT_SERVE);
    assert_int_equal(d.how, DATOS_HOW_STALE_ERROR);
    d = decide_at(&W, 0, T0, T0, 1);
    assert_int_equal(d.act, DATOS_ACT_WAIT);
}

/* Walking an answer's life a microsecond past each boundary, the handler's
 * decisions only move forward: hit, stale, wait. The quick path never
 * waits and never fails. */
static void the_time_line_only_moves_forward(void **state)
{
    static const apr_interval_time_t steps[] = {0,
                                                1,
                                                SEC(30) - 1,
                                                SEC(30),
                                                SEC(30) + 1,
                                                SEC(90) - 1,
                                                SEC(90),
                                                SEC(90) + 1,
                                                SEC(3630) - 1,
                                                SEC(3630),
                                                SEC(3630) + 1,
                                                WEEK};
    int last = -1;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        datos_policy_decision_t d = decide_at(&W, 1, T0 + steps[i], 0, 1);
        datos_policy_decision_t q = decide_at(&W, 1, T0 + steps[i], 0, 0);
        int rank = d.act == DATOS_ACT_SERVE           ? 0
                   : d.act == DATOS_ACT_SERVE_REFRESH ? 1
                                                      : 2;

        assert_true(rank >= last);
        last = rank;
        assert_true(q.act != DATOS_ACT_WAIT && q.act != DATOS_ACT_FAIL);
        if (d.act != DATOS_ACT_WAIT)
            assert_int_equal(q.act, d.act);
        else
            assert_int_equal(q.act, DATOS_ACT_DECLINE);
    }
}

/* Zero-length stale windows: straight from fresh to waiting. */
static void zero_windows(void **state)
{
    datos_policy_windows_t w = {SEC(1), 0, 0, SEC(1)};
    datos_policy_decision_t d;

    (void)state;
    d = decide_at(&w, 1, T0 + SEC(1) - 1, 0, 1);
    assert_int_equal(d.act, DATOS_ACT_SERVE);
    d = decide_at(&w, 1, T0 + SEC(1), 0, 1);
    assert_int_equal(d.act, DATOS_ACT_WAIT);
    d = decide_at(&w, 1, T0 + SEC(1), T0 + SEC(5), 1);
    assert_int_equal(d.act, DATOS_ACT_FAIL);
}

/* ------------------------------------------------------------ after a wait */

static datos_policy_decision_t waited(int have, apr_interval_time_t at,
                                      datos_wait_end_t end, int started)
{
    datos_policy_state_t st = {
        .have = have, .fetched = T0, .now = T0 + at, .may_wait = 1};
    datos_policy_waited_t w = {.end = end,
                               .started = started,
                               .status = DATOS_EBACKEND,
                               .retry_after = SEC(3)};
    datos_policy_decision_t d;

    datos_policy_after_wait(&W, &st, &w, &d);
    return d;
}

static void after_a_wait(void **state)
{
    datos_policy_decision_t d;

    (void)state;
    /* The answer came: who started the fetch says how it was found. */
    d = waited(0, 0, DATOS_WAIT_ANSWERED, 1);
    assert_int_equal(d.act, DATOS_ACT_SERVE);
    assert_int_equal(d.how, DATOS_HOW_MISS_STORED);
    d = waited(1, SEC(100), DATOS_WAIT_ANSWERED, 1);
    assert_int_equal(d.how, DATOS_HOW_REFRESHED);
    d = waited(1, SEC(100), DATOS_WAIT_ANSWERED, 0);
    assert_int_equal(d.how, DATOS_HOW_COLLAPSED);
    d = waited(0, 0, DATOS_WAIT_ANSWERED, 0);
    assert_int_equal(d.how, DATOS_HOW_COLLAPSED);

    /* No answer came: the old one while stale-if-error lasts. */
    d = waited(1, SEC(100), DATOS_WAIT_FAILED, 1);
    assert_int_equal(d.act, DATOS_ACT_SERVE);
    assert_int_equal(d.how, DATOS_HOW_STALE_ERROR);
    d = waited(1, SEC(100), DATOS_WAIT_TIMED_OUT, 0);
    assert_int_equal(d.how, DATOS_HOW_STALE_ERROR);
    d = waited(1, SEC(100), DATOS_WAIT_NO_ROOM, 0);
    assert_int_equal(d.how, DATOS_HOW_STALE);
    d = waited(1, SEC(3630) - 1, DATOS_WAIT_FAILED, 1);
    assert_int_equal(d.act, DATOS_ACT_SERVE);

    /* ... then an error, with the cause and when to come back. */
    d = waited(1, SEC(3630), DATOS_WAIT_FAILED, 1);
    assert_int_equal(d.act, DATOS_ACT_FAIL);
    assert_int_equal(d.status, DATOS_EBACKEND);
    assert_int_equal(d.retry_after, SEC(3));
    d = waited(0, 0, DATOS_WAIT_TIMED_OUT, 0);
    assert_int_equal(d.act, DATOS_ACT_FAIL);
    assert_int_equal(d.status, DATOS_ERATELIMIT);
    assert_int_equal(d.retry_after, W.wait);
    d = waited(0, 0, DATOS_WAIT_NO_ROOM, 0);
    assert_int_equal(d.status, DATOS_ERATELIMIT);
    assert_int_equal(d.retry_after, SEC(1));
}

/* A failure without a Retry-After still tells the client when. */
static void a_failure_always_has_a_retry_after(void **state)
{
    datos_policy_state_t st = {.have = 0, .now = T0, .may_wait = 1};
    datos_policy_waited_t w = {.end = DATOS_WAIT_FAILED,
                               .status = DATOS_EBACKEND};
    datos_policy_decision_t d;

    (void)state;
    datos_policy_after_wait(&W, &st, &w, &d);
    assert_int_equal(d.act, DATOS_ACT_FAIL);
    assert_true(d.retry_after >= SEC(1));
}

/* ------------------------------------------------------------ back-off */

static void backoff(void **state)
{
    (void)state;
    assert_int_equal(datos_policy_backoff(SEC(3), SEC(30)), SEC(3));
    assert_int_equal(datos_policy_backoff(SEC(3600), SEC(30)), SEC(60));
    assert_int_equal(datos_policy_backoff(0, SEC(30)), SEC(5));
    assert_int_equal(datos_policy_backoff(0, SEC(2)), SEC(2));
    assert_int_equal(datos_policy_backoff(0, apr_time_from_msec(100)), SEC(1));
    assert_int_equal(datos_policy_backoff(-5, WEEK), SEC(5));
}

/* ------------------------------------------------------------ trust */

static void fetch_times_from_a_cache(void **state)
{
    apr_time_t now = T0;

    (void)state;
    assert_true(datos_policy_fetched_ok(now, now));
    assert_true(datos_policy_fetched_ok(now - WEEK, now));
    assert_true(datos_policy_fetched_ok(now + DATOS_POLICY_SKEW, now));
    /* dated in the future: it would stay fresh and freeze every host */
    assert_false(datos_policy_fetched_ok(now + DATOS_POLICY_SKEW + 1, now));
    assert_false(datos_policy_fetched_ok(APR_INT64_MAX, now));
    assert_false(datos_policy_fetched_ok(0, now));
    assert_false(datos_policy_fetched_ok(-1, now));
    assert_false(datos_policy_fetched_ok(APR_INT64_MIN, now));
    /* a clock at the end of time overflows nothing */
    assert_true(datos_policy_fetched_ok(APR_INT64_MAX, APR_INT64_MAX));
}

static void a_lease_lasts_at_most_the_timeout(void **state)
{
    apr_interval_time_t t = SEC(5);

    (void)state;
    assert_true(datos_policy_lease_live(T0, T0, t));
    assert_true(datos_policy_lease_live(T0, T0 + t - 1, t));
    assert_false(datos_policy_lease_live(T0, T0 + t, t));
    /* a lease "for ever": taken far in the future, or at the end of time */
    assert_false(datos_policy_lease_live(T0 + DATOS_POLICY_SKEW + 1, T0, t));
    assert_false(datos_policy_lease_live(APR_INT64_MAX, T0, t));
    assert_true(datos_policy_lease_live(T0 + DATOS_POLICY_SKEW, T0, t));
    assert_false(datos_policy_lease_live(0, T0, t));
    assert_false(datos_policy_lease_live(APR_INT64_MIN, T0, APR_INT64_MAX));
    assert_false(datos_policy_lease_live(T0, APR_INT64_MAX, APR_INT64_MAX));
}

/* ------------------------------------------------------------ headers */

static const char *status_of(datos_how_t how, apr_time_t fetched,
                             apr_interval_time_t fresh_for, apr_time_t now)
{
    static char buf[DATOS_POLICY_STATUS_SIZE];

    datos_policy_cache_status(buf, how, fetched, fresh_for, now);
    return buf;
}

static void cache_status(void **state)
{
    (void)state;
    assert_string_equal(status_of(DATOS_HOW_HIT, T0, SEC(30), T0),
                        "datos; hit; ttl=30");
    assert_string_equal(status_of(DATOS_HOW_HIT, T0, SEC(30), T0 + 1),
                        "datos; hit; ttl=29");
    assert_string_equal(status_of(DATOS_HOW_HIT, T0, SEC(30), T0 + SEC(31)),
                        "datos; hit; ttl=0");
    /* stale by a microsecond is stale by a second */
    assert_string_equal(status_of(DATOS_HOW_STALE, T0, SEC(30), T0 + SEC(30)),
                        "datos; hit; ttl=-1");
    assert_string_equal(
        status_of(DATOS_HOW_STALE, T0, SEC(30), T0 + SEC(30) + 1),
        "datos; hit; ttl=-1");
    assert_string_equal(
        status_of(DATOS_HOW_STALE_ERROR, T0, SEC(30), T0 + SEC(32) + 1),
        "datos; hit; ttl=-3; detail=stale-if-error");
    assert_string_equal(status_of(DATOS_HOW_MISS_STORED, T0, SEC(30), T0),
                        "datos; fwd=miss; stored");
    assert_string_equal(status_of(DATOS_HOW_COLLAPSED, T0, SEC(30), T0),
                        "datos; fwd=miss; collapsed");
    assert_string_equal(status_of(DATOS_HOW_REFRESHED, T0, SEC(30), T0),
                        "datos; fwd=stale; fwd-status=200; stored");
    assert_string_equal(status_of(DATOS_HOW_UNCACHED, T0, 0, T0),
                        "datos; fwd=bypass");
}

static void age(void **state)
{
    (void)state;
    assert_int_equal(datos_policy_age(T0, T0), 0);
    assert_int_equal(datos_policy_age(T0, T0 + SEC(2) - 1), 1);
    assert_int_equal(datos_policy_age(T0 + SEC(3), T0), 0); /* a clock behind */
    assert_int_equal(datos_policy_age(APR_INT64_MIN, APR_INT64_MAX),
                     APR_INT64_MAX / APR_USEC_PER_SEC);
    assert_int_equal(datos_policy_age(APR_INT64_MAX, APR_INT64_MIN), 0);
}

/* ------------------------------------------------------------ the ends of time */

/* Fetch times, clocks and windows at their extremes: no decision may
 * overflow (the sanitizer build aborts on signed overflow), and an answer
 * fetched at the end of time never turns a stale answer into a hit at a
 * sane clock, nor the reverse. */
static void extreme_times_overflow_nothing(void **state)
{
    static const apr_time_t times[] = {
        APR_INT64_MIN, -1, 0, 1, T0, APR_INT64_MAX - 1, APR_INT64_MAX};
    datos_policy_windows_t wmax = {WEEK, WEEK, WEEK, SEC(300)};
    datos_policy_windows_t wbig = {APR_INT64_MAX, APR_INT64_MAX, APR_INT64_MAX,
                                   APR_INT64_MAX};
    const datos_policy_windows_t *ws[] = {&W, &wmax, &wbig};
    char buf[DATOS_POLICY_STATUS_SIZE];
    size_t i, j, k, n;
    int how;

    (void)state;
    for (i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
        for (j = 0; j < sizeof(times) / sizeof(times[0]); j++) {
            for (k = 0; k < sizeof(ws) / sizeof(ws[0]); k++) {
                for (n = 0; n < sizeof(times) / sizeof(times[0]); n++) {
                    datos_policy_state_t st = {.have = 1,
                                               .fetched = times[i],
                                               .now = times[j],
                                               .next_attempt = times[n],
                                               .last_status = DATOS_EBACKEND,
                                               .may_wait = 1};
                    datos_policy_waited_t wt = {.end = DATOS_WAIT_FAILED,
                                                .status = DATOS_EBACKEND};
                    datos_policy_decision_t d;

                    datos_policy_decide(ws[k], &st, &d);
                    if (d.act == DATOS_ACT_FAIL)
                        assert_true(d.retry_after > 0);
                    datos_policy_after_wait(ws[k], &st, &wt, &d);
                }
                for (how = DATOS_HOW_HIT; how <= DATOS_HOW_UNCACHED; how++) {
                    datos_policy_cache_status(buf, (datos_how_t)how, times[i],
                                              ws[k]->fresh_for, times[j]);
                    assert_true(strncmp(buf, "datos; ", 7) == 0);
                }
                (void)datos_policy_keep_until(ws[k], times[i]);
                (void)datos_policy_lease_live(times[i], times[j], ws[k]->wait);
            }
            (void)datos_policy_age(times[i], times[j]);
            (void)datos_policy_fetched_ok(times[i], times[j]);
        }
    }
    /* fetched at the end of time, windows at their largest: fresh, and
     * the keep time saturates instead of wrapping into the past */
    assert_int_equal(decide_at(&wmax, 1, T0, 0, 1).act, DATOS_ACT_SERVE);
    assert_int_equal(datos_policy_keep_until(&wmax, APR_INT64_MAX - 1),
                     APR_INT64_MAX);
    assert_int_equal(datos_policy_keep_until(&wmax, T0), T0 + 2 * WEEK);
    {
        datos_policy_state_t st = {
            .have = 1, .fetched = APR_INT64_MAX, .now = T0, .may_wait = 1};
        datos_policy_decision_t d;

        datos_policy_decide(&wmax, &st, &d);
        assert_int_equal(d.act, DATOS_ACT_SERVE);
        assert_int_equal(d.how, DATOS_HOW_HIT);
        /* and one fetched at the start of time is long stale */
        st.fetched = APR_INT64_MIN;
        datos_policy_decide(&wmax, &st, &d);
        assert_int_equal(d.act, DATOS_ACT_WAIT);
    }
    assert_int_equal(datos_time_add(APR_INT64_MAX, 1), APR_INT64_MAX);
    assert_int_equal(datos_time_add(APR_INT64_MIN, -1), APR_INT64_MIN);
    assert_int_equal(datos_time_add(T0, -SEC(1)), T0 - SEC(1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        DT_TEST(decisions_at_every_boundary),
        DT_TEST(a_backoff_ends_at_next_attempt),
        DT_TEST(the_time_line_only_moves_forward),
        DT_TEST(zero_windows),
        DT_TEST(after_a_wait),
        DT_TEST(a_failure_always_has_a_retry_after),
        DT_TEST(backoff),
        DT_TEST(fetch_times_from_a_cache),
        DT_TEST(a_lease_lasts_at_most_the_timeout),
        DT_TEST(cache_status),
        DT_TEST(age),
        DT_TEST(extreme_times_overflow_nothing),
    };

    return cmocka_run_group_tests(tests, dt_group_setup, dt_group_teardown);
}
