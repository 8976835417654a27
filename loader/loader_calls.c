/* loader_calls.c - the Google calls of a run, each retried by the policy
 * of docs/design.md section 5 ("Retries"): truncated exponential backoff
 * with jitter on what is worth retrying, honouring Retry-After, within
 * retry_deadline. A stop (SIGTERM) ends every call at once but the ones
 * that must finish - acknowledging committed work, giving back what was
 * not sent anywhere - and those get a shared grace, so the run ends well
 * inside the service's TimeoutStopSec.
 */
#include <apr_strings.h>

#include "loader_run.h"

/* Set by SIGTERM (loader_main.c): every call and wait of the run ends at
 * once or, for a call that must finish, after its grace. */
volatile sig_atomic_t loader_stop;

json_t *loader_run_event(const char *level, const char *name)
{
    return loader_event(level, name);
}

void loader_log_error(const char *event_name, const char *what, apr_status_t rv,
                      const datos_err_t *err)
{
    json_t *ev = loader_event("error", event_name);

    json_object_set_new(ev, "call", json_string(what));
    json_object_set_new(ev, "status", json_string(datos_status_name(rv)));
    if (err && err->http_status)
        json_object_set_new(ev, "http_status", json_integer(err->http_status));
    if (err && err->reason)
        json_object_set_new(ev, "reason", json_string(err->reason));
    json_object_set_new(
        ev, "message",
        json_string(err && err->message ? err->message : "no detail"));
    loader_emit(ev);
}

static void log_retry(void *baton, apr_status_t rv, const datos_err_t *err,
                      apr_interval_time_t wait)
{
    json_t *ev = loader_event("warning", "retry");

    json_object_set_new(ev, "call", json_string((const char *)baton));
    json_object_set_new(ev, "status", json_string(datos_status_name(rv)));
    if (err && err->http_status)
        json_object_set_new(ev, "http_status", json_integer(err->http_status));
    json_object_set_new(ev, "wait_ms", json_integer(apr_time_as_msec(wait)));
    json_object_set_new(ev, "message",
                        json_string(err && err->message ? err->message : ""));
    loader_emit(ev);
}

void loader_retry(run_t *r, datos_retry_t *rt, const char *what,
                  int must_finish)
{
    datos_retry_init(rt, r->c->retry_initial, r->c->retry_max,
                     r->c->retry_deadline);
    rt->stop = &loader_stop;
    rt->stop_grace = must_finish ? LOADER_STOP_GRACE : 0;
    rt->stop_by = &r->stop_by;
    rt->log = log_retry;
    rt->log_baton = (void *)what;
}

apr_time_t loader_call_deadline(run_t *r, apr_interval_time_t timeout)
{
    apr_time_t now = apr_time_now(), d = now + timeout;

    if (loader_stop) {
        if (!r->stop_by)
            r->stop_by = now + LOADER_STOP_GRACE;
        if (r->stop_by < d)
            d = r->stop_by;
    }
    return d;
}

void loader_pause(apr_interval_time_t t)
{
    apr_time_t until = apr_time_now() + t;

    while (!loader_stop && apr_time_now() < until) {
        apr_interval_time_t left = until - apr_time_now();
        apr_sleep(left > apr_time_from_msec(100) ? apr_time_from_msec(100)
                                                 : left);
    }
}

apr_status_t loader_send_acks(run_t *r, const char *subscription,
                              apr_array_header_t *ids, int seconds)
{
    const char *what = seconds < 0    ? "acknowledge"
                       : seconds == 0 ? "modifyAckDeadline(0)"
                                      : "modifyAckDeadline";
    datos_retry_t rt;
    datos_err_t err;
    apr_status_t rv = APR_SUCCESS;
    apr_pool_t *sp;

    if (!ids->nelts)
        return APR_SUCCESS;
    apr_pool_create(&sp, r->p);
    datos_err_init(&err, r->p);
    loader_retry(r, &rt, what, 1);
    while (datos_retry_again(&rt, rv, &err)) {
        apr_pool_clear(sp);
        rv = seconds < 0 ? datos_pubsub_ack(
                 r->settle, sp, loader_call_deadline(r, r->c->http_timeout),
                 subscription, (const char *const *)ids->elts, ids->nelts, &err)
                         : datos_pubsub_modack(
                             r->settle, sp,
                             loader_call_deadline(r, r->c->http_timeout),
                             subscription, (const char *const *)ids->elts,
                             ids->nelts, seconds, &err);
    }
    if (rv != APR_SUCCESS)
        loader_log_error("pubsub_failed", what, rv, &err);
    apr_pool_destroy(sp);
    return rv;
}

apr_status_t loader_pull(run_t *r, apr_pool_t *p, const char *subscription,
                         int max, datos_pubsub_pulled_t *got, datos_err_t *err)
{
    apr_size_t bound = (apr_size_t)r->c->pull_max_bytes;
    datos_retry_t rt;
    apr_status_t rv = APR_SUCCESS;

    /* One message is read whatever its size, up to the most one message
     * can make: the run decides what a message past the bound is worth. */
    if (max == 1 && bound < DATOS_PUBSUB_MESSAGE_ANSWER_MAX)
        bound = DATOS_PUBSUB_MESSAGE_ANSWER_MAX;
    datos_err_init(err, r->p);
    loader_retry(r, &rt, "pull", 0);
    while (datos_retry_again(&rt, rv, err)) {
        rv = datos_pubsub_pull_bounded(
            r->ps, p, loader_call_deadline(r, r->c->pull_timeout), subscription,
            max, bound, got, err);
        /* Leased to this run but not read: released now, so the next
         * pull - of this run or the next - can take them. */
        if (got->unread->nelts) {
            json_t *ev = loader_event("warning", "pull_released");
            json_object_set_new(ev, "messages",
                                json_integer(got->unread->nelts));
            json_object_set_new(ev, "answer_bytes",
                                json_integer((json_int_t)got->bytes));
            json_object_set_new(ev, "reason",
                                json_string(rv != APR_SUCCESS
                                                ? "the answer could not be read"
                                                : "past pull_max_bytes"));
            loader_emit(ev);
            loader_send_acks(r, subscription, got->unread, 0);
        }
    }
    return rv;
}
