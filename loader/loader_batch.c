/* loader_batch.c - one load batch: pulled within a size bound, validated,
 * its invalid messages dead-lettered (loader_settle.c), its leases kept
 * (docs/design.md section 5).
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
