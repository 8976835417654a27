/* loader_batch.c - one load batch: pulled within a size bound, validated,
 * its invalid messages dead-lettered, its leases kept (docs/design.md
 * section 5).
 *
 * No single message may keep the others from loading. A pull answer too
 * large to hold is read up to the bound and the rest released, and the
 * next pulls ask for fewer messages; one message larger than the bound
 * is dead-lettered as too_large. A dead letter Pub/Sub would refuse as
 * it is travels in an envelope; one refused even so, and a message that
 * cannot be read at all, goes back to the subscription, whose own
 * dead-letter policy is the last resort - and the batch goes on.
 */
#include <string.h>

#include <apr_strings.h>

#include "datos_pubsub_pull.h"
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

/* --------------------------------------------------------------- batch */

static int batch_full(run_t *r, batch_t *b)
{
    return b->valid + b->invalid >= r->c->batch_max_rows
           || b->bytes >= r->c->batch_max_bytes
           || apr_time_now() - b->started >= r->c->batch_max_age;
}

static int run_over(run_t *r)
{
    return loader_stop || r->stop_pulling || apr_time_now() >= r->deadline
           || (r->c->max_messages && r->pulled_messages >= r->c->max_messages);
}

/* maxMessages follows the answers: halved after one past the bound, down
 * to 1, doubled after one well inside it, up to 1,000. */
static void adapt(run_t *r, const datos_pubsub_pulled_t *got, int asked)
{
    int before = r->pull_max;

    if (got->cut && r->pull_max > 1)
        r->pull_max /= 2;
    else if (!got->cut && r->pull_max < DATOS_PUBSUB_PUBLISH_MAX_MESSAGES
             && got->msgs->nelts >= asked
             && got->bytes * 4 <= (apr_size_t)r->c->pull_max_bytes)
        r->pull_max = r->pull_max * 2 > 1000 ? 1000 : r->pull_max * 2;
    if (r->pull_max != before) {
        json_t *ev = loader_event("info", "pull_size");
        json_object_set_new(ev, "max_messages", json_integer(r->pull_max));
        json_object_set_new(ev, "answer_bytes",
                            json_integer((json_int_t)got->bytes));
        loader_emit(ev);
    }
}

/* A message that cannot be processed as delivered goes back to Pub/Sub,
 * whose dead-letter policy is the last resort. */
static void unusable(run_t *r, const datos_pubsub_msg_t *m,
                     apr_array_header_t *nacks)
{
    json_t *ev = loader_event("warning", "message_unusable");

    json_object_set_new(ev, "message_id",
                        json_string(m->message_id ? m->message_id : ""));
    json_object_set_new(ev, "problem", json_string(m->problem));
    loader_emit(ev);
    if (m->ack_id) {
        APR_ARRAY_PUSH(nacks, const char *) = m->ack_id;
        r->counts.unrouted++;
        if (m->message_id)
            apr_hash_set(r->returned, apr_pstrdup(r->p, m->message_id),
                         APR_HASH_KEY_STRING, "");
    }
}

int loader_assemble(run_t *r, batch_t *b)
{
    datos_record_opts_t opts;

    datos_record_opts_init(&opts, apr_time_now());
    opts.max_future_skew = r->c->max_future_skew;
    opts.unknown = r->c->unknown_fields;
    while (!batch_full(r, b) && !run_over(r)) {
        apr_array_header_t *fresh, *nacks, *acks, *acked_ids;
        datos_pubsub_pulled_t got;
        datos_err_t err;
        apr_status_t rv;
        int i, want = r->pull_max, seen_before = 0;

        if (r->c->max_messages) {
            apr_int64_t left = r->c->max_messages - r->pulled_messages;
            want = left < want ? (int)left : want;
        }
        rv = loader_pull(r, b->pool, r->c->subscription, want, &got, &err);
        if (rv != APR_SUCCESS) {
            if (loader_stop)
                return 1;
            loader_log_error("pubsub_failed", "pull", rv, &err);
            r->stop_pulling = 1;
            r->failed = 1;
            return 0;
        }
        adapt(r, &got, want);
        if (!got.msgs->nelts && got.cut && want == 1) {
            /* One message larger than any Pub/Sub delivers: it went back,
             * to the subscription's policy; pulling again would only
             * bring it back. */
            r->counts.unrouted += got.unread->nelts;
            r->drained = 1;
            break;
        }
        if (!got.msgs->nelts) {
            /* An answer cut before its first message was all released:
             * not a drained backlog. */
            if (got.cut)
                continue;
            r->drained = 1;
            break;
        }
        r->pulled_messages += got.msgs->nelts;
        r->counts.pulled += got.msgs->nelts;
        opts.now = apr_time_now();
        fresh = apr_array_make(b->pool, got.msgs->nelts, sizeof(const char *));
        nacks = apr_array_make(b->pool, 1, sizeof(const char *));
        acks = apr_array_make(b->pool, 1, sizeof(const char *));
        acked_ids = apr_array_make(b->pool, 1, sizeof(const char *));
        for (i = 0; i < got.msgs->nelts; i++) {
            datos_pubsub_msg_t *m =
                &APR_ARRAY_IDX(got.msgs, i, datos_pubsub_msg_t);
            item_t *prev, *it;
            datos_invalid_t why;

            if (m->message_id
                && apr_hash_get(r->returned, m->message_id,
                                APR_HASH_KEY_STRING)) {
                /* This run gave it to the subscription's policy already:
                 * back at once, untried. */
                APR_ARRAY_PUSH(nacks, const char *) = m->ack_id;
                seen_before++;
                continue;
            }
            if (m->problem) {
                unusable(r, m, nacks);
                continue;
            }
            if (loader_journal_has(r, m->message_id)) {
                /* Loaded by a job that committed before its acks were
                 * sent: ack, never load again. */
                APR_ARRAY_PUSH(acks, const char *) = m->ack_id;
                APR_ARRAY_PUSH(acked_ids, const char *) = m->message_id;
                continue;
            }
            APR_ARRAY_PUSH(fresh, const char *) = m->ack_id;
            prev = apr_hash_get(b->by_id, m->message_id, APR_HASH_KEY_STRING);
            if (prev) {
                /* A redelivery within the batch: one row, both acked. */
                if (!prev->dup_acks)
                    prev->dup_acks =
                        apr_array_make(b->pool, 1, sizeof(const char *));
                APR_ARRAY_PUSH(prev->dup_acks, const char *) = m->ack_id;
                continue;
            }
            it = apr_array_push(b->items);
            memset(it, 0, sizeof(*it));
            it->m = m;
            apr_hash_set(b->by_id, m->message_id, APR_HASH_KEY_STRING, it);
            b->bytes += (apr_int64_t)m->data_len;
            if (got.msgs->nelts == 1
                && got.bytes > (apr_size_t)r->c->pull_max_bytes) {
                /* Alone in an answer past the bound: what the operator
                 * said no message may be. */
                it->reason = DATOS_REASON_TOO_LARGE;
                it->detail = apr_psprintf(
                    b->pool,
                    "its pull answer is %" APR_SIZE_T_FMT
                    " bytes, past pull_max_bytes (%" APR_INT64_T_FMT ")",
                    got.bytes, r->c->pull_max_bytes);
                b->invalid++;
            }
            else if (datos_record_check(b->pool, (const char *)m->data,
                                        m->data_len, &opts, &it->rec, &why)
                     == APR_SUCCESS) {
                b->valid++;
            }
            else {
                it->reason = why.reason;
                it->detail = why.detail;
                b->invalid++;
            }
        }
        /* Lease everything just pulled for as long as the batch may take. */
        if (loader_send_acks(r, r->c->subscription, fresh,
                             (int)apr_time_sec(r->c->lease))
            == APR_SUCCESS)
            b->renew_at = apr_time_now() + r->c->lease / 3;
        loader_send_acks(r, r->c->subscription, nacks, 0);
        if (acks->nelts
            && loader_send_acks(r, r->c->subscription, acks, -1)
                   == APR_SUCCESS) {
            for (i = 0; i < acked_ids->nelts; i++)
                loader_journal_acked(r,
                                     APR_ARRAY_IDX(acked_ids, i, const char *));
            loader_logf("info", "already_loaded",
                        "acked %d redelivered messages of a load job that "
                        "committed earlier",
                        acks->nelts);
        }
        if (seen_before == got.msgs->nelts) {
            /* Only messages this run already gave back to the
             * subscription's policy: nothing else is waiting. */
            r->drained = 1;
            break;
        }
    }
    return 1;
}

void loader_process(run_t *r, batch_t *b)
{
    item_t **valid, **invalid;
    int nv = 0, ni = 0, i;
    json_t *ev;

    valid =
        apr_palloc(b->pool, sizeof(*valid) * (apr_size_t)(b->items->nelts + 1));
    invalid = apr_palloc(b->pool,
                         sizeof(*invalid) * (apr_size_t)(b->items->nelts + 1));
    for (i = 0; i < b->items->nelts; i++) {
        item_t *it = &APR_ARRAY_IDX(b->items, i, item_t);
        if (it->reason == DATOS_REASON_NONE)
            valid[nv++] = it;
        else
            invalid[ni++] = it;
    }
    ev = loader_event("info", "batch_pulled");
    json_object_set_new(ev, "messages", json_integer(b->items->nelts));
    json_object_set_new(ev, "valid", json_integer(nv));
    json_object_set_new(ev, "invalid", json_integer(ni));
    json_object_set_new(ev, "bytes", json_integer(b->bytes));
    loader_emit(ev);

    if (r->c->dry_run) {
        for (i = 0; i < ni; i++) {
            ev = loader_event("info", "dry_run_invalid");
            json_object_set_new(ev, "message_id",
                                json_string(invalid[i]->m->message_id));
            json_object_set_new(
                ev, "reason",
                json_string(datos_reason_name(invalid[i]->reason)));
            json_object_set_new(ev, "detail", json_string(invalid[i]->detail));
            loader_emit(ev);
            r->counts.invalid[invalid[i]->reason]++;
        }
        loader_give_back(r, b);
        return;
    }
    if (loader_stop) {
        /* Stopped before anything was sent anywhere: all goes back. */
        loader_give_back(r, b);
        return;
    }
    if (loader_dead_letter(r, invalid, ni) != APR_SUCCESS) {
        /* The dead-letter topic cannot be reached: nothing loads before
         * its invalid messages are safe, so all that is left goes back. */
        r->stop_pulling = 1;
        if (!loader_stop) {
            r->failed = 1;
            r->hold_off = 1;
        }
        loader_give_back(r, b);
        return;
    }
    loader_load(r, b, valid, nv);
}
