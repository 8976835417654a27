/* datos_policy.h - the cache policy of GET /datos, from times alone.
 *
 * Given the times of the answer a host holds (if any), the configured
 * windows, the back-off left by a failed fetch and what kind of request
 * asks, the policy says what the request gets: the answer, the answer
 * while a refresh starts in the background, a bounded wait for a refresh,
 * an error, or (on the quick path, which never waits) nothing. After a
 * wait it says the same from how the wait ended. It also renders the
 * RFC 9211 Cache-Status of the outcome, and holds the time rules by which
 * entries read from a cache are trusted.
 *
 * Time line of an answer fetched at t (F = fresh_for, SWR, SIE):
 *   [t, t+F)        fresh: served;
 *   [t+F, t+F+SWR)  stale: served at once while a refresh runs in the
 *                   background (or, while BigQuery fails, served as
 *                   stale-if-error);
 *   later           a request waits for a refresh; while BigQuery fails
 *                   (a back-off is running) the answer is still served
 *                   until t+F+SIE.
 * Nothing here reads a clock or takes a lock: every function is pure, and
 * all time arithmetic saturates instead of overflowing, whatever the
 * times (an entry's fetch time is read from a cache).
 */
#ifndef DATOS_POLICY_H
#define DATOS_POLICY_H

#include <apr_errno.h>
#include <apr_time.h>

/* How far ahead of this host's clock a fetch time may be and still be
 * trusted: fleet hosts' clocks differ a little. */
#define DATOS_POLICY_SKEW apr_time_from_sec(5)

typedef struct datos_policy_windows_t {
    apr_interval_time_t fresh_for; /* > 0 */
    apr_interval_time_t stale_while_revalidate;
    apr_interval_time_t stale_if_error;
    apr_interval_time_t wait; /* the longest a request waits for a fetch */
} datos_policy_windows_t;

/* How a request's answer was found, for Cache-Status. */
typedef enum {
    DATOS_HOW_HIT,         /* fresh */
    DATOS_HOW_STALE,       /* served stale while a refresh runs */
    DATOS_HOW_STALE_ERROR, /* served stale because BigQuery failed */
    DATOS_HOW_MISS_STORED, /* this request started the fetch (cold) */
    DATOS_HOW_COLLAPSED,   /* this request waited for a fetch others started */
    DATOS_HOW_REFRESHED,   /* this request waited for the refresh it started */
    DATOS_HOW_UNCACHED     /* DatosFreshFor 0 */
} datos_how_t;

typedef enum {
    DATOS_ACT_SERVE,         /* serve the answer held (how) */
    DATOS_ACT_SERVE_REFRESH, /* serve it, and start a background refresh */
    DATOS_ACT_WAIT,          /* start a refresh and wait for it */
    DATOS_ACT_FAIL,          /* answer with an error */
    DATOS_ACT_DECLINE        /* the quick path leaves it to the handler */
} datos_act_t;

typedef struct datos_policy_state_t {
    int have;           /* an answer is held */
    apr_time_t fetched; /* its fetch time */
    apr_time_t now;
    /* No fetch before this (a back-off after a failure); 0: none. */
    apr_time_t next_attempt;
    apr_status_t last_status; /* the failure that set next_attempt */
    int may_wait;             /* 0: the quick path, which never waits */
} datos_policy_state_t;

typedef struct datos_policy_decision_t {
    datos_act_t act;
    datos_how_t how;                 /* SERVE, SERVE_REFRESH */
    apr_status_t status;             /* FAIL */
    apr_interval_time_t retry_after; /* FAIL: > 0 */
    /* SERVE_REFRESH, WAIT: the refresh is done once an answer fetched at
     * or after this is held (one that is fresh at `now`). */
    apr_time_t want_after;
} datos_policy_decision_t;

/* What a request gets before any wait. */
void datos_policy_decide(const datos_policy_windows_t *w,
                         const datos_policy_state_t *st,
                         datos_policy_decision_t *out);

/* How a wait for a refresh ended. */
typedef enum {
    DATOS_WAIT_ANSWERED,  /* an answer fetched at or after want_after came */
    DATOS_WAIT_FAILED,    /* the refresh failed: status, retry_after */
    DATOS_WAIT_TIMED_OUT, /* no answer within the wait */
    DATOS_WAIT_NO_ROOM    /* too many requests wait already */
} datos_wait_end_t;

typedef struct datos_policy_waited_t {
    datos_wait_end_t end;
    int started;                     /* this request's wish started it */
    apr_status_t status;             /* FAILED */
    apr_interval_time_t retry_after; /* FAILED; 0: none given */
} datos_policy_waited_t;

/* What a request that waited gets. st is the state before the wait (the
 * answer held then, if any) with now updated to the end of the wait. */
void datos_policy_after_wait(const datos_policy_windows_t *w,
                             const datos_policy_state_t *st,
                             const datos_policy_waited_t *waited,
                             datos_policy_decision_t *out);

/* The back-off after a failed fetch: the upstream's Retry-After (at most
 * 60 s), else the freshness window, between 1 s and 5 s. */
apr_interval_time_t datos_policy_backoff(apr_interval_time_t retry_after,
                                         apr_interval_time_t fresh_for);

/* Until when an entry fetched at `fetched` is worth keeping in a shared
 * tier: its window and the longer of its stale windows. */
apr_time_t datos_policy_keep_until(const datos_policy_windows_t *w,
                                   apr_time_t fetched);

/* Whether a fetch time read from a cache may be trusted at `now`: after
 * the epoch, and not later than now plus DATOS_POLICY_SKEW (an entry
 * dated in the future would be fresh for too long, and freeze every host
 * that takes it). */
int datos_policy_fetched_ok(apr_time_t fetched, apr_time_t now);

/* Whether a fleet's refresh lease taken at `taken` is still obeyed at
 * `now`: for at most `timeout` (DatosTimeout, the most a fetch takes),
 * and never one dated in the future beyond DATOS_POLICY_SKEW. */
int datos_policy_lease_live(apr_time_t taken, apr_time_t now,
                            apr_interval_time_t timeout);

/* The Age header's value: whole seconds since the fetch, never negative. */
apr_int64_t datos_policy_age(apr_time_t fetched, apr_time_t now);

/* RFC 9211 Cache-Status of an answer served: "datos; hit; ttl=N" and the
 * like, into buf (DATOS_POLICY_STATUS_SIZE bytes). */
#define DATOS_POLICY_STATUS_SIZE 96
void datos_policy_cache_status(char *buf, datos_how_t how, apr_time_t fetched,
                               apr_interval_time_t fresh_for, apr_time_t now);

/* Saturating time arithmetic: t + d clamped to the apr_time_t range. */
apr_time_t datos_time_add(apr_time_t t, apr_interval_time_t d);

#endif
