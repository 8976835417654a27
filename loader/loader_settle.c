/* loader_settle.c - what becomes of a batch's messages besides their load:
 * acks, lease renewals, give-backs (nacks) and dead letters
 * (docs/design.md section 5, "Dead letters"). Below loader_batch.c and
 * loader_load.c, which both settle messages; above loader_calls.c.
 */
#include <string.h>

#include <apr_strings.h>

#include "loader_run.h"

/* ------------------------------------------------------------------ acks */

static void push_acks(apr_array_header_t *ids, const item_t *it)
{
    int i;

    APR_ARRAY_PUSH(ids, const char *) = it->m->ack_id;
    for (i = 0; it->dup_acks && i < it->dup_acks->nelts; i++)
        APR_ARRAY_PUSH(ids, const char *) =
            APR_ARRAY_IDX(it->dup_acks, i, const char *);
}

/* Every ack id of the batch not yet acked or given back. */
static apr_array_header_t *open_acks(apr_pool_t *p, batch_t *b)
{
    apr_array_header_t *ids =
        apr_array_make(p, b->items->nelts + 1, sizeof(const char *));
    int i;

    for (i = 0; i < b->items->nelts; i++) {
        item_t *it = &APR_ARRAY_IDX(b->items, i, item_t);
        if (!it->done)
            push_acks(ids, it);
    }
    return ids;
}

/* Leases of a batch are extended until its messages are acked: a load job
 * that runs past the ack deadline must not let Pub/Sub hand them out
 * again. */
void loader_renew_leases(run_t *r, batch_t *b, int force)
{
    apr_time_t now = apr_time_now();
    apr_pool_t *tp;

    if (!force && now < b->renew_at)
        return;
    apr_pool_create(&tp, r->p);
    if (loader_send_acks(r, r->c->subscription, open_acks(tp, b),
                         (int)apr_time_sec(r->c->lease))
        == APR_SUCCESS)
        b->renew_at = now + r->c->lease / 3;
    else
        /* Leases that lapse only mean a redelivery, which the job id
         * and the journal make harmless; try again soon. */
        b->renew_at = now + apr_time_from_sec(5);
    apr_pool_destroy(tp);
}

void loader_give_back(run_t *r, batch_t *b)
{
    apr_pool_t *tp;
    int i;

    apr_pool_create(&tp, r->p);
    if (loader_send_acks(r, r->c->subscription, open_acks(tp, b), 0)
        == APR_SUCCESS) {
        for (i = 0; i < b->items->nelts; i++)
            APR_ARRAY_IDX(b->items, i, item_t).done = 1;
    }
    apr_pool_destroy(tp);
}

apr_status_t loader_ack_items(run_t *r, item_t *const *items, int n)
{
    apr_pool_t *tp;
    apr_array_header_t *ids;
    apr_status_t rv;
    int i;

    apr_pool_create(&tp, r->p);
    ids = apr_array_make(tp, n + 1, sizeof(const char *));
    for (i = 0; i < n; i++)
        push_acks(ids, items[i]);
    rv = loader_send_acks(r, r->c->subscription, ids, -1);
    if (rv == APR_SUCCESS)
        for (i = 0; i < n; i++)
            items[i]->done = 1;
    apr_pool_destroy(tp);
    return rv;
}

/* Gives items back to the subscription for good: its dead-letter policy
 * takes them after maxDeliveryAttempts. */
static void return_items(run_t *r, item_t *const *items, int n)
{
    apr_pool_t *tp;
    apr_array_header_t *ids;
    int i;

    if (!n)
        return;
    apr_pool_create(&tp, r->p);
    ids = apr_array_make(tp, n + 1, sizeof(const char *));
    for (i = 0; i < n; i++) {
        push_acks(ids, items[i]);
        apr_hash_set(r->returned, apr_pstrdup(r->p, items[i]->m->message_id),
                     APR_HASH_KEY_STRING, "");
    }
    if (loader_send_acks(r, r->c->subscription, ids, 0) == APR_SUCCESS)
        for (i = 0; i < n; i++)
            items[i]->done = 1;
    r->counts.unrouted += n;
    apr_pool_destroy(tp);
}

/* ------------------------------------------------------- dead-lettering */

/* One dead letter on its way. */
typedef struct {
    item_t *it;
    datos_pubsub_out_t out;
    datos_deadletter_form_t form;
    int published;
} letter_t;

/* A refusal that is about the message, not about the topic or the
 * service: the next message may well go through. */
static int refused_for_itself(apr_status_t rv, const datos_err_t *err)
{
    return rv == APR_EINVAL || rv == DATOS_ETOOLARGE
           || (rv == DATOS_EREJECTED && err->http_status == 400);
}

/* The letter in the first form that fits, from `from` on; 0 when none
 * does (why in *err). */
static int fit(run_t *r, apr_pool_t *p, letter_t *l,
               datos_deadletter_form_t from, datos_err_t *err)
{
    datos_deadletter_form_t f;

    for (f = from; f <= DATOS_DEADLETTER_ENVELOPE; f++) {
        datos_err_init(err, p);
        if (datos_pubsub_deadletter(p, l->it->m, r->c->subscription,
                                    r->c->dead_letter_topic, l->it->reason,
                                    l->it->detail, f, &l->out, err)
            == APR_SUCCESS) {
            l->form = f;
            return 1;
        }
    }
    return 0;
}

static void log_refused(const letter_t *l, const datos_err_t *err)
{
    json_t *ev = loader_event("error", "dead_letter_refused");

    json_object_set_new(ev, "message_id", json_string(l->it->m->message_id));
    json_object_set_new(ev, "reason",
                        json_string(datos_reason_name(l->it->reason)));
    json_object_set_new(
        ev, "message",
        json_string(err && err->message ? err->message : "refused"));
    json_object_set_new(ev, "outcome",
                        json_string("left to the subscription's dead-letter "
                                    "policy"));
    loader_emit(ev);
}

/* Publishes the letters [0, n) not yet published, in as few requests as
 * Pub/Sub allows, retried; a retry sends only what the failed attempt did
 * not get through. */
static apr_status_t publish(run_t *r, apr_pool_t *p, letter_t *ls, int n,
                            datos_err_t *err)
{
    datos_pubsub_out_t *out = apr_palloc(p, sizeof(*out) * (apr_size_t)n);
    int *which = apr_palloc(p, sizeof(*which) * (apr_size_t)n), k = 0, i;
    apr_status_t rv = APR_SUCCESS;
    datos_retry_t rt;
    apr_pool_t *sp;

    for (i = 0; i < n; i++) {
        if (!ls[i].published) {
            which[k] = i;
            out[k++] = ls[i].out;
        }
    }
    apr_pool_create(&sp, p);
    loader_retry(r, &rt, "publish", 0);
    for (i = 0; k > i && datos_retry_again(&rt, rv, err);) {
        apr_array_header_t *ids = NULL;
        int j;

        apr_pool_clear(sp);
        rv = datos_pubsub_publish(
            r->ps, sp, loader_call_deadline(r, r->c->http_timeout),
            r->c->dead_letter_topic, out + i, k - i, &ids, err);
        for (j = 0; ids && j < ids->nelts; j++)
            ls[which[i + j]].published = 1;
        i += ids ? ids->nelts : 0;
    }
    apr_pool_destroy(sp);
    return i == k ? APR_SUCCESS : rv;
}

apr_status_t loader_dead_letter(run_t *r, item_t *const *items, int n)
{
    apr_pool_t *tp;
    letter_t *ls;
    item_t **done, **back;
    datos_err_t err;
    apr_status_t rv = APR_SUCCESS;
    int i, ndone = 0, nback = 0;

    if (!n)
        return APR_SUCCESS;
    apr_pool_create(&tp, r->p);
    ls = apr_pcalloc(tp, sizeof(*ls) * (apr_size_t)n);
    done = apr_palloc(tp, sizeof(*done) * (apr_size_t)n);
    back = apr_palloc(tp, sizeof(*back) * (apr_size_t)n);
    for (i = 0; i < n; i++) {
        ls[i].it = items[i];
        if (!fit(r, tp, &ls[i], DATOS_DEADLETTER_PLAIN, &err)) {
            /* Pub/Sub could take it in no form: published as nothing */
            log_refused(&ls[i], &err);
            ls[i].published = -1;
        }
    }
    datos_err_init(&err, tp);
    rv = publish(r, tp, ls, n, &err);
    if (rv != APR_SUCCESS && refused_for_itself(rv, &err)) {
        /* One message spoils the request for all: one at a time, so that
         * it alone stays behind. */
        rv = APR_SUCCESS;
        for (i = 0; i < n && rv == APR_SUCCESS; i++) {
            if (ls[i].published)
                continue;
            datos_err_init(&err, tp);
            rv = publish(r, tp, &ls[i], 1, &err);
            if (rv != APR_SUCCESS && refused_for_itself(rv, &err)
                && ls[i].form == DATOS_DEADLETTER_PLAIN
                && fit(r, tp, &ls[i], DATOS_DEADLETTER_ENVELOPE, &err)) {
                datos_err_init(&err, tp);
                rv = publish(r, tp, &ls[i], 1, &err);
            }
            if (rv != APR_SUCCESS && refused_for_itself(rv, &err)) {
                log_refused(&ls[i], &err);
                ls[i].published = -1;
                rv = APR_SUCCESS;
            }
        }
    }
    if (rv != APR_SUCCESS)
        loader_log_error("pubsub_failed", "publish", rv, &err);
    for (i = 0; i < n; i++) {
        if (ls[i].published > 0) {
            done[ndone++] = ls[i].it;
            r->counts.invalid[ls[i].it->reason]++;
            r->counts.dead_lettered++;
        }
        else if (ls[i].published < 0) {
            back[nback++] = ls[i].it;
        }
    }
    /* What reached the topic is acked even when the rest failed: sent
     * again, it would be a second copy. */
    if (loader_ack_items(r, done, ndone) != APR_SUCCESS && rv == APR_SUCCESS)
        rv = APR_EGENERAL;
    return_items(r, back, nback);
    apr_pool_destroy(tp);
    return rv;
}
