/* loader_run.c - one run of datos-loader (docs/design.md section 5).
 *
 *   lock -> resolve the journal -> repeat { pull into a load batch
 *   (extending every lease) -> validate -> dead-letter the invalid ->
 *   one load job for the valid rows (deterministic job id, journal entry
 *   first) -> poll it to DONE -> ack exactly what is committed or
 *   dead-lettered } until the backlog is drained or a bound is reached.
 *
 * Nothing is acked before it is durable somewhere else: in the table (a
 * load job DONE without error, read back with jobs.get) or in the
 * dead-letter topic (a publish Pub/Sub answered with message ids). Every
 * failure leaves the messages leased or nacked, so Pub/Sub redelivers
 * them, and a job that may have committed is in the journal, so the next
 * run finds out before loading anything again.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include <apr_strings.h>
#include <apr_hash.h>
#include <apr_file_io.h>

#include "datos_auth.h"
#include "datos_backoff.h"
#include "datos_load_client.h"
#include "datos_endpoint.h"
#include "datos_http.h"
#include "datos_json.h"
#include "datos_loadjob.h"
#include "datos_ndjson.h"
#include "datos_pubsub.h"
#include "datos_pubsub_client.h"
#include "datos_table.h"
#include "datos_time.h"
#include "datos_validate.h"
#include "datos_version.h"
#include "loader.h"

/* How many generations of one batch are tried when BigQuery keeps failing
 * the job with a retryable reason, before the run gives up on it. */
#define MAX_GENERATIONS 5
/* Load job polls: 1 s, x1.5, at most 15 s (docs/google-apis.md 2.7). */
#define POLL_FIRST apr_time_from_sec(1)
#define POLL_MAX   apr_time_from_sec(15)
/* A 404 from jobs.get right after a 409 can be lag; it is asked again for
 * this long before it means "no such job". */
#define GET_404_GRACE apr_time_from_sec(30)

/* One delivery of a message in the batch. */
typedef struct {
    datos_pubsub_msg_t *m;
    datos_reason_t reason; /* DATOS_REASON_NONE: valid */
    const char *detail;
    datos_record_t rec; /* valid ones */
    apr_array_header_t
        *dup_acks; /* ack ids of other deliveries of the same message */
    int done;      /* acked or given back */
} item_t;

typedef struct {
    apr_pool_t *pool;
    apr_array_header_t *items; /* item_t */
    apr_hash_t *by_id;         /* message id -> item_t * */
    apr_int64_t bytes;
    int valid;
    int invalid;
    apr_time_t started;
    apr_time_t renew_at; /* next lease extension */
} batch_t;

typedef struct {
    loader_config_t *c;
    apr_pool_t *p;
    datos_creds_t *creds;
    datos_pubsub_t *ps;
    datos_load_client_t *bl;
    datos_table_info_t info;
    datos_table_ref_t table;
    const char *table_canon; /* project.dataset.table */
    const char *location;
    int columns; /* NDJSON optional columns */
    const char *journal_dir;
    apr_hash_t *committed; /* message id -> loader_journal_entry_t * */
    apr_array_header_t *committed_entries;
    apr_time_t started;
    apr_time_t deadline; /* no pulling after this */
    apr_int64_t pulled_messages;
    loader_counts_t counts;
    int stop_pulling;
    int failed;    /* exit 1 */
    int drained;   /* an empty pull was seen */
    int gave_back; /* messages were nacked because of a failure */
} run_t;

volatile sig_atomic_t loader_stop;

/* One scheduler per subscription: a run that finds the lock held exits at
 * once (0: nothing failed), so an overlapping cron never doubles the load
 * jobs. The lock dies with the process, kill -9 included. */
static int take_lock(apr_pool_t *p, const char *path, const char **why)
{
    char *dir = apr_pstrdup(p, path), *slash = strrchr(dir, '/');
    int fd;

    if (slash && slash != dir) {
        *slash = '\0';
        apr_dir_make_recursive(dir, APR_FPROT_OS_DEFAULT, p);
    }
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        *why = apr_psprintf(p, "lock_file: cannot open %s: %s", path,
                            strerror(errno));
        return -2;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(fd);
        if (e == EWOULDBLOCK)
            return -1;
        *why =
            apr_psprintf(p, "lock_file: cannot lock %s: %s", path, strerror(e));
        return -2;
    }
    return fd;
}

/* The lock is taken by the run itself, once the settings are whole (the
 * lock file lives in state_dir by default). */
int loader_lock(apr_pool_t *p, const char *path)
{
    const char *why = NULL;
    int fd = take_lock(p, path, &why);

    if (fd == -2)
        loader_logf("error", "config_error", "%s", why);
    return fd;
}

/* ---------------------------------------------------------------- logs */

static json_t *event(const char *level, const char *name)
{
    return loader_event(level, name);
}

static void log_error(const char *event_name, const char *what, apr_status_t rv,
                      const datos_err_t *err)
{
    json_t *ev = event("error", event_name);

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

/* ------------------------------------------------------------- retries */

/* The Google calls of a run, each made through retrying(). */
typedef enum {
    CALL_ACK,     /* subscriptions.acknowledge of ids */
    CALL_MODACK,  /* subscriptions.modifyAckDeadline of ids to seconds */
    CALL_PULL,    /* subscriptions.pull of up to max messages into msgs */
    CALL_PUBLISH, /* topics.publish of the n messages of out */
    CALL_TABLE,   /* tables.get into info */
    CALL_INSERT,  /* jobs.insert of data as job_id */
    CALL_GET      /* jobs.get of job_id */
} call_kind_t;

/* One call: its name in the log, its arguments, and its results, which
 * are allocated in into (it outlives the scratch pool of each attempt). */
typedef struct {
    call_kind_t kind;
    const char *what;
    const char *name; /* the subscription or topic */
    const char *const *ids;
    int n; /* ack ids, or messages to publish */
    int seconds;
    int max;
    datos_pubsub_out_t *out;
    const char *job_id;
    const char *location;
    const char *data;
    apr_size_t len;
    apr_pool_t *into;
    apr_array_header_t *msgs; /* pulled */
    datos_table_info_t *info; /* from tables.get */
    datos_loadjob_t *job;     /* from jobs.insert or jobs.get */
} call_t;

static apr_time_t call_deadline(run_t *r)
{
    return apr_time_now() + r->c->http_timeout;
}

/* The pulled messages are copied into c->into; the answer and its JSON
 * tree go with a pool of their own (the batch keeps a third of the
 * memory, measured on 100,000 messages). */
static apr_status_t pull(run_t *r, call_t *c, datos_err_t *err)
{
    apr_array_header_t *msgs = NULL;
    apr_pool_t *tp;
    apr_status_t rv;

    apr_pool_create(&tp, c->into);
    rv = datos_pubsub_pull(r->ps, tp, apr_time_now() + r->c->pull_timeout,
                           c->name, c->max, &msgs, err);
    if (rv == APR_SUCCESS)
        c->msgs = datos_pubsub_msgs_copy(c->into, msgs);
    apr_pool_destroy(tp);
    return rv;
}

/* One attempt at c; p is the attempt's scratch pool. */
static apr_status_t attempt(run_t *r, apr_pool_t *p, call_t *c,
                            datos_err_t *err)
{
    apr_array_header_t *ids;

    switch (c->kind) {
    case CALL_ACK:
        return datos_pubsub_ack(r->ps, p, call_deadline(r), c->name, c->ids,
                                c->n, err);
    case CALL_MODACK:
        return datos_pubsub_modack(r->ps, p, call_deadline(r), c->name, c->ids,
                                   c->n, c->seconds, err);
    case CALL_PULL: return pull(r, c, err);
    case CALL_PUBLISH:
        return datos_pubsub_publish(r->ps, p, call_deadline(r), c->name, c->out,
                                    c->n, &ids, err);
    case CALL_TABLE:
        return datos_load_client_table(r->bl, c->into, call_deadline(r),
                                       c->info, err);
    case CALL_INSERT:
        /* the upload gets a millisecond per KiB on top */
        return datos_load_client_insert(
            r->bl, c->into,
            apr_time_now() + r->c->http_timeout
                + (apr_interval_time_t)(c->len / 1024) * 1000,
            c->job_id, c->location, c->data, c->len, &c->job, err);
    case CALL_GET:
        return datos_load_client_get(r->bl, c->into, call_deadline(r),
                                     c->job_id, c->location, &c->job, err);
    }
    return APR_EINVAL;
}

/* Sleeps in short slices, so SIGTERM is seen within 100 ms. */
static void pause_for(apr_interval_time_t t, int interruptible)
{
    apr_time_t until = apr_time_now() + t;

    while (apr_time_now() < until) {
        apr_interval_time_t left = until - apr_time_now();
        if (interruptible && loader_stop)
            return;
        apr_sleep(left > apr_time_from_msec(100) ? apr_time_from_msec(100)
                                                 : left);
    }
}

/* One Google call with the retry policy of docs/design.md section 5: truncated
 * exponential backoff with jitter on what is worth retrying, honouring
 * Retry-After, within retry_deadline. A call that must finish even after
 * SIGTERM (acknowledging committed work) passes must_finish. */
static apr_status_t retrying(run_t *r, call_t *c, int must_finish,
                             datos_err_t *err)
{
    datos_backoff_t b;
    apr_status_t rv;
    apr_pool_t *sp;

    datos_backoff_init(
        &b, r->c->retry_initial, r->c->retry_max,
        r->c->retry_deadline ? apr_time_now() + r->c->retry_deadline : 0);
    apr_pool_create(&sp, r->p);
    for (;;) {
        apr_interval_time_t wait = 0;
        json_t *ev;

        apr_pool_clear(sp);
        datos_err_init(err, r->p);
        rv = attempt(r, sp, c, err);
        if (rv == APR_SUCCESS)
            break;
        if ((loader_stop && !must_finish)
            || !datos_backoff_next(&b, rv, err, apr_time_now(), &wait))
            break;
        ev = event("warning", "retry");
        json_object_set_new(ev, "call", json_string(c->what));
        json_object_set_new(ev, "status", json_string(datos_status_name(rv)));
        if (err->http_status)
            json_object_set_new(ev, "http_status",
                                json_integer(err->http_status));
        json_object_set_new(ev, "wait_ms",
                            json_integer(apr_time_as_msec(wait)));
        json_object_set_new(ev, "message",
                            json_string(err->message ? err->message : ""));
        loader_emit(ev);
        pause_for(wait, !must_finish);
    }
    apr_pool_destroy(sp);
    return rv;
}

/* ------------------------------------------------------------- Pub/Sub */

static apr_status_t send_acks(run_t *r, const char *subscription,
                              apr_array_header_t *ids, int seconds,
                              int must_finish)
{
    call_t a = {.kind = seconds < 0 ? CALL_ACK : CALL_MODACK,
                .what = seconds < 0    ? "acknowledge"
                        : seconds == 0 ? "modifyAckDeadline(0)"
                                       : "modifyAckDeadline",
                .name = subscription,
                .ids = (const char *const *)ids->elts,
                .n = ids->nelts,
                .seconds = seconds};
    datos_err_t err;
    apr_status_t rv;

    if (!ids->nelts)
        return APR_SUCCESS;
    rv = retrying(r, &a, must_finish, &err);
    if (rv != APR_SUCCESS)
        log_error("pubsub_failed",
                  seconds < 0 ? "acknowledge" : "modifyAckDeadline", rv, &err);
    return rv;
}

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
static void renew_leases(run_t *r, batch_t *b, int force)
{
    apr_time_t now = apr_time_now();
    apr_pool_t *tp;

    if (!force && now < b->renew_at)
        return;
    apr_pool_create(&tp, r->p);
    if (send_acks(r, r->c->subscription, open_acks(tp, b),
                  (int)apr_time_sec(r->c->lease), 1)
        == APR_SUCCESS)
        b->renew_at = now + r->c->lease / 3;
    else
        /* Leases that lapse only mean a redelivery, which the job id
         * and the journal make harmless; try again soon. */
        b->renew_at = now + apr_time_from_sec(5);
    apr_pool_destroy(tp);
}

/* Gives the batch's open messages back to Pub/Sub (a nack), for the next
 * run. */
static void give_back(run_t *r, batch_t *b)
{
    apr_pool_t *tp;
    int i;

    apr_pool_create(&tp, r->p);
    if (send_acks(r, r->c->subscription, open_acks(tp, b), 0, 1)
        == APR_SUCCESS) {
        for (i = 0; i < b->items->nelts; i++)
            APR_ARRAY_IDX(b->items, i, item_t).done = 1;
    }
    apr_pool_destroy(tp);
}

static apr_status_t ack_items(run_t *r, item_t *const *items, int n)
{
    apr_pool_t *tp;
    apr_array_header_t *ids;
    apr_status_t rv;
    int i;

    apr_pool_create(&tp, r->p);
    ids = apr_array_make(tp, n + 1, sizeof(const char *));
    for (i = 0; i < n; i++)
        push_acks(ids, items[i]);
    rv = send_acks(r, r->c->subscription, ids, -1, 1);
    if (rv == APR_SUCCESS)
        for (i = 0; i < n; i++)
            items[i]->done = 1;
    apr_pool_destroy(tp);
    return rv;
}

/* ------------------------------------------------------- dead-lettering */

/* Publishes the items to the dead-letter topic with their data unchanged,
 * their own attributes and the datos_* ones; acks them only once the
 * publish succeeded. At-least-once: a publish whose answer was lost is
 * published again, and consumers dedupe on datos_source_message_id. */
static apr_status_t dead_letter(run_t *r, item_t *const *items, int n)
{
    apr_pool_t *tp;
    call_t pb = {.kind = CALL_PUBLISH, .what = "publish", .n = n};
    datos_err_t err;
    apr_status_t rv = APR_SUCCESS;
    int i;

    if (!n)
        return APR_SUCCESS;
    apr_pool_create(&tp, r->p);
    pb.name = r->c->dead_letter_topic;
    pb.out = apr_pcalloc(tp, sizeof(*pb.out) * (apr_size_t)n);
    for (i = 0; i < n; i++) {
        apr_array_header_t *attrs;
        datos_err_clear(&err);
        rv = datos_pubsub_deadletter_attrs(tp, items[i]->m, r->c->subscription,
                                           items[i]->reason, items[i]->detail,
                                           &attrs, &err);
        if (rv != APR_SUCCESS) {
            /* Too many attributes of its own: it cannot be published as
             * Pub/Sub requires, so it goes back; the subscription's own
             * dead-letter policy is its last resort. */
            log_error("dead_letter_refused", "deadletter_attrs", rv, &err);
            goto leave;
        }
        pb.out[i].data = items[i]->m->data;
        pb.out[i].data_len = items[i]->m->data_len;
        pb.out[i].attributes = attrs;
        pb.out[i].ordering_key = NULL;
    }
    rv = retrying(r, &pb, 0, &err);
    if (rv != APR_SUCCESS) {
        log_error("pubsub_failed", "publish", rv, &err);
        goto leave;
    }
    for (i = 0; i < n; i++) {
        r->counts.invalid[items[i]->reason]++;
        r->counts.dead_lettered++;
    }
    rv = ack_items(r, items, n);

leave:
    apr_pool_destroy(tp);
    return rv;
}

/* ------------------------------------------------------------ load jobs */

/* jobs.get, asking again for a while when a job the caller knows exists
 * (a 409 said so) is not found yet. */
static apr_status_t get_job(run_t *r, apr_pool_t *p, const char *job_id,
                            const char *location, int expect, batch_t *b,
                            datos_loadjob_t **job, datos_err_t *err)
{
    apr_time_t until = apr_time_now() + GET_404_GRACE;
    call_t g = {.kind = CALL_GET,
                .what = "jobs.get",
                .job_id = job_id,
                .location = location,
                .into = p};
    apr_status_t rv;

    for (;;) {
        rv = retrying(r, &g, 1, err);
        if (rv == APR_SUCCESS) {
            *job = g.job;
            return rv;
        }
        if (!(expect && err->http_status == 404 && apr_time_now() < until))
            return rv;
        if (b)
            renew_leases(r, b, 0);
        pause_for(apr_time_from_sec(1), 0);
    }
}

/* Polls a job to DONE, extending the batch's leases meanwhile. */
static apr_status_t poll_job(run_t *r, apr_pool_t *p, batch_t *b,
                             const char *job_id, const char *location,
                             datos_loadjob_t **job, datos_err_t *err)
{
    apr_time_t until = apr_time_now() + r->c->job_timeout;
    apr_interval_time_t pause = POLL_FIRST;
    apr_status_t rv;

    while ((*job)->state != DATOS_JOB_DONE) {
        if (apr_time_now() >= until) {
            return datos_err_set(err, r->p, APR_TIMEUP, 0, NULL,
                                 "load job %s not DONE within job_timeout",
                                 job_id);
        }
        pause_for(pause, 0);
        pause = pause * 3 / 2 > POLL_MAX ? POLL_MAX : pause * 3 / 2;
        if (b)
            renew_leases(r, b, 0);
        rv = get_job(r, p, job_id, location, 1, b, job, err);
        if (rv != APR_SUCCESS)
            return rv;
    }
    return APR_SUCCESS;
}

static const char *batch_key(apr_pool_t *p, const char *job_id)
{
    const char *g = strrchr(job_id, '_');
    return g ? apr_pstrmemdup(p, job_id, (apr_size_t)(g - job_id)) : job_id;
}

/* The NDJSON of a set of valid items. */
static apr_status_t ndjson_of(run_t *r, apr_pool_t *p, item_t *const *items,
                              int n, datos_ndjson_t **out)
{
    datos_ndjson_t *nd;
    apr_status_t rv;
    int i;

    rv = datos_ndjson_create(p, r->columns, 4096, &nd);
    for (i = 0; rv == APR_SUCCESS && i < n; i++)
        rv = datos_ndjson_append_record(
            nd, &items[i]->rec, items[i]->m->message_id,
            strlen(items[i]->m->message_id), items[i]->m->publish_time_us);
    *out = nd;
    return rv;
}

static const char *job_message(const datos_loadjob_t *job)
{
    if (job->error_result && job->error_result->message)
        return job->error_result->message;
    return "no detail";
}

static void log_job(const char *level, const char *name,
                    const datos_loadjob_t *job, const char *job_id, int rows)
{
    json_t *ev = event(level, name);

    json_object_set_new(ev, "job_id", json_string(job_id));
    json_object_set_new(ev, "rows", json_integer(rows));
    if (job && job->error_result) {
        if (job->error_result->reason)
            json_object_set_new(ev, "reason",
                                json_string(job->error_result->reason));
        json_object_set_new(ev, "message", json_string(job_message(job)));
    }
    if (job && job->output_rows >= 0)
        json_object_set_new(ev, "output_rows", json_integer(job->output_rows));
    loader_emit(ev);
}

static int load_items(run_t *r, batch_t *b, item_t **items, int n);

/* Loads n valid items as one load job (docs/design.md section 5, "Job
 * outcomes"): 1 when their messages are all acked (loaded or
 * dead-lettered as bigquery_rejected), 0 when the run must stop (they are
 * then given back, or left to the journal). */
static int load_items(run_t *r, batch_t *b, item_t **items, int n)
{
    apr_pool_t *jp;
    int generation = 0, ok = 0, i;

    if (!n)
        return 1;
    apr_pool_create(&jp, r->p);
    for (;;) {
        const char **ids = apr_palloc(jp, sizeof(*ids) * (apr_size_t)n);
        loader_journal_entry_t entry;
        datos_ndjson_t *nd;
        datos_loadjob_t *job = NULL;
        datos_job_outcome_t outcome;
        const char *job_id, *data, *why = NULL;
        int existed = 0;
        apr_size_t len;
        datos_err_t err;
        call_t in = {.kind = CALL_INSERT, .what = "jobs.insert"};
        apr_status_t rv;

        apr_pool_clear(jp);
        ids = apr_palloc(jp, sizeof(*ids) * (apr_size_t)n);
        for (i = 0; i < n; i++)
            ids[i] = items[i]->m->message_id;
        rv = datos_loadjob_id(jp, r->table_canon, ids, n, generation, &job_id);
        if (rv == APR_SUCCESS)
            rv = ndjson_of(r, jp, items, n, &nd);
        if (rv != APR_SUCCESS) {
            loader_logf("error", "batch_failed",
                        "cannot build the load "
                        "batch of %d rows",
                        n);
            goto stop;
        }
        data = datos_ndjson_data(nd, &len);

        /* The journal first: from here on the job may exist. */
        memset(&entry, 0, sizeof(entry));
        entry.job_id = job_id;
        entry.location = r->location;
        entry.table = r->table_canon;
        entry.generation = generation;
        entry.written = apr_time_now();
        entry.message_ids = apr_array_make(jp, n, sizeof(const char *));
        for (i = 0; i < n; i++)
            APR_ARRAY_PUSH(entry.message_ids, const char *) = ids[i];
        if (loader_journal_write(jp, r->journal_dir, batch_key(jp, job_id),
                                 &entry, &why)
            != APR_SUCCESS) {
            loader_logf("error", "journal_failed", "%s", why);
            goto stop;
        }

        in.job_id = job_id;
        in.location = r->location;
        in.data = data;
        in.len = len;
        in.into = jp;
        renew_leases(r, b, 0);
        rv = retrying(r, &in, 0, &err);
        if (rv == DATOS_EEXISTS) {
            /* The job exists (an earlier attempt, or an earlier run, made
             * it): what it did decides, never a second load. */
            existed = 1;
            rv = get_job(r, jp, job_id, r->location, 1, b, &job, &err);
        }
        else {
            job = in.job;
        }
        if (rv != APR_SUCCESS) {
            log_error("bigquery_failed", "jobs.insert", rv, &err);
            goto stop_journal;
        }
        rv = poll_job(r, jp, b, job_id, r->location, &job, &err);
        if (rv != APR_SUCCESS) {
            log_error("bigquery_failed", "jobs.get", rv, &err);
            goto stop_journal;
        }

        outcome = datos_loadjob_outcome(job);
        if (existed
            && (outcome == DATOS_JOB_QUOTA || outcome == DATOS_JOB_FAILED)
            && generation + 1 < MAX_GENERATIONS) {
            /* An earlier run's job under this name failed for a reason of
             * its own time (a spent quota, an outage): its name is used up,
             * so the batch is tried under the next one. */
            log_job("info", "earlier_job_failed", job, job_id, n);
            loader_journal_remove(jp, &entry);
            generation++;
            continue;
        }
        switch (outcome) {
        case DATOS_JOB_SUCCEEDED:
            r->counts.jobs_succeeded++;
            r->counts.loaded += job->output_rows >= 0 ? job->output_rows : n;
            log_job("info", "batch_loaded", job, job_id, n);
            if (ack_items(r, items, n) != APR_SUCCESS)
                /* The rows are in; the journal entry stays, so that the
                 * redeliveries are acked without a second load. */
                goto stop_journal;
            loader_journal_remove(jp, &entry);
            ok = 1;
            goto leave;

        case DATOS_JOB_RETRY:
            r->counts.jobs_retried++;
            log_job("warning", "load_job_retry", job, job_id, n);
            if (++generation >= MAX_GENERATIONS) {
                loader_logf("error", "load_job_gave_up",
                            "batch failed %d "
                            "generations in a row; its messages go back",
                            MAX_GENERATIONS);
                loader_journal_remove(jp, &entry);
                goto stop;
            }
            continue;

        case DATOS_JOB_INVALID: {
            apr_array_header_t *rows = NULL, *lines = NULL;
            item_t **bad, **rest;
            int nbad = 0, nrest = 0, l = 0;

            r->counts.jobs_invalid++;
            log_job("warning", "load_job_rejected_rows", job, job_id, n);
            loader_journal_remove(jp, &entry);
            if (datos_loadjob_rejected(jp, job, &rows) != APR_SUCCESS
                || datos_loadjob_rejected_lines(jp, rows, nd, &lines)
                       != APR_SUCCESS
                || !lines->nelts) {
                /* The errors name no row of this data: halves, until the
                 * rows BigQuery refuses are alone. */
                if (n == 1) {
                    items[0]->reason = DATOS_REASON_BIGQUERY_REJECTED;
                    items[0]->detail = job_message(job);
                    if (dead_letter(r, items, 1) != APR_SUCCESS)
                        goto stop;
                    ok = 1;
                    goto leave;
                }
                ok = load_items(r, b, items, n / 2)
                     && load_items(r, b, items + n / 2, n - n / 2);
                goto leave;
            }
            bad = apr_palloc(r->p, sizeof(*bad) * (apr_size_t)n);
            rest = apr_palloc(r->p, sizeof(*rest) * (apr_size_t)n);
            for (i = 0; i < n; i++) {
                if (l < lines->nelts && APR_ARRAY_IDX(lines, l, int) == i) {
                    items[i]->reason = DATOS_REASON_BIGQUERY_REJECTED;
                    items[i]->detail = job_message(job);
                    for (int k = 0; k < rows->nelts; k++) {
                        const datos_rejected_t *rj =
                            &APR_ARRAY_IDX(rows, k, datos_rejected_t);
                        if (rj->message
                            && (rj->line == i + 1
                                || (rj->position >= 0
                                    && datos_ndjson_line_at(nd, rj->position)
                                           == i)))
                            items[i]->detail = apr_pstrdup(r->p, rj->message);
                    }
                    bad[nbad++] = items[i];
                    l++;
                }
                else {
                    rest[nrest++] = items[i];
                }
            }
            if (dead_letter(r, bad, nbad) != APR_SUCCESS)
                goto stop;
            items = rest;
            n = nrest;
            if (!n) {
                ok = 1;
                goto leave;
            }
            generation++;
            continue;
        }

        case DATOS_JOB_QUOTA:
            r->counts.jobs_quota++;
            log_job("error", "load_quota_exhausted", job, job_id, n);
            loader_journal_remove(jp, &entry);
            goto stop;

        default:
            r->counts.jobs_failed++;
            log_job("error", "load_job_failed", job, job_id, n);
            loader_journal_remove(jp, &entry);
            goto stop;
        }

stop_journal:
        /* The job may exist and may yet commit: the journal entry stays for
         * the next run to resolve; the messages go back meanwhile. */
        goto stop;
    }

stop:
    r->stop_pulling = 1;
    r->failed = 1;
    r->gave_back = 1;
    give_back(r, b);
leave:
    apr_pool_destroy(jp);
    return ok;
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

/* Pulls into a batch until it is full, the backlog is empty or the run's
 * bounds are reached. Returns 0 when the subscription cannot be pulled
 * (the run stops). */
static int assemble(run_t *r, batch_t *b)
{
    datos_record_opts_t opts;

    datos_record_opts_init(&opts, apr_time_now());
    opts.max_future_skew = r->c->max_future_skew;
    opts.unknown = r->c->unknown_fields;
    while (!batch_full(r, b) && !run_over(r)) {
        apr_array_header_t *fresh, *nacks, *acks;
        call_t pl = {.kind = CALL_PULL, .what = "pull"};
        datos_err_t err;
        apr_status_t rv;
        int i, want = 1000;

        if (r->c->max_messages) {
            apr_int64_t left = r->c->max_messages - r->pulled_messages;
            want = left < want ? (int)left : want;
        }
        pl.name = r->c->subscription;
        pl.max = want;
        pl.into = b->pool;
        rv = retrying(r, &pl, 0, &err);
        if (rv != APR_SUCCESS) {
            log_error("pubsub_failed", "pull", rv, &err);
            r->stop_pulling = 1;
            r->failed = 1;
            return 0;
        }
        if (!pl.msgs->nelts) {
            r->drained = 1;
            break;
        }
        r->pulled_messages += pl.msgs->nelts;
        r->counts.pulled += pl.msgs->nelts;
        opts.now = apr_time_now();
        fresh = apr_array_make(b->pool, pl.msgs->nelts, sizeof(const char *));
        nacks = apr_array_make(b->pool, 1, sizeof(const char *));
        acks = apr_array_make(b->pool, 1, sizeof(const char *));
        for (i = 0; i < pl.msgs->nelts; i++) {
            datos_pubsub_msg_t *m =
                &APR_ARRAY_IDX(pl.msgs, i, datos_pubsub_msg_t);
            item_t *prev, *it;
            datos_invalid_t why;

            if (m->problem) {
                /* Not processable as delivered: back to Pub/Sub, whose
                 * dead-letter policy is the last resort. */
                json_t *ev = event("warning", "message_unusable");
                json_object_set_new(
                    ev, "message_id",
                    json_string(m->message_id ? m->message_id : ""));
                json_object_set_new(ev, "problem", json_string(m->problem));
                loader_emit(ev);
                if (m->ack_id)
                    APR_ARRAY_PUSH(nacks, const char *) = m->ack_id;
                continue;
            }
            if (apr_hash_get(r->committed, m->message_id,
                             APR_HASH_KEY_STRING)) {
                /* Loaded by a job that committed before its acks were
                 * sent: ack, never load again. */
                APR_ARRAY_PUSH(acks, const char *) = m->ack_id;
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
            if (datos_record_check(b->pool, (const char *)m->data, m->data_len,
                                   &opts, &it->rec, &why)
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
        if (send_acks(r, r->c->subscription, fresh,
                      (int)apr_time_sec(r->c->lease), 0)
            == APR_SUCCESS)
            b->renew_at = apr_time_now() + r->c->lease / 3;
        send_acks(r, r->c->subscription, nacks, 0, 0);
        if (acks->nelts
            && send_acks(r, r->c->subscription, acks, -1, 0) == APR_SUCCESS)
            loader_logf("info", "already_loaded",
                        "acked %d redelivered "
                        "messages of a load job that committed earlier",
                        acks->nelts);
    }
    return 1;
}

/* Validates, dead-letters and loads one batch. */
static void process(run_t *r, batch_t *b)
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
    ev = event("info", "batch_pulled");
    json_object_set_new(ev, "messages", json_integer(b->items->nelts));
    json_object_set_new(ev, "valid", json_integer(nv));
    json_object_set_new(ev, "invalid", json_integer(ni));
    json_object_set_new(ev, "bytes", json_integer(b->bytes));
    loader_emit(ev);

    if (r->c->dry_run) {
        for (i = 0; i < ni; i++) {
            ev = event("info", "dry_run_invalid");
            json_object_set_new(ev, "message_id",
                                json_string(invalid[i]->m->message_id));
            json_object_set_new(
                ev, "reason",
                json_string(datos_reason_name(invalid[i]->reason)));
            json_object_set_new(ev, "detail", json_string(invalid[i]->detail));
            loader_emit(ev);
            r->counts.invalid[invalid[i]->reason]++;
        }
        give_back(r, b);
        return;
    }
    if (loader_stop) {
        /* Stopped before anything was sent anywhere: all goes back. */
        give_back(r, b);
        return;
    }
    if (dead_letter(r, invalid, ni) != APR_SUCCESS) {
        r->stop_pulling = 1;
        r->failed = 1;
        r->gave_back = 1;
        give_back(r, b);
        return;
    }
    load_items(r, b, valid, nv);
}

/* ------------------------------------------------------------- journal */

/* Before pulling: every job the journal says may be in flight is asked
 * about. Committed ones have their messages acked on sight; failed or
 * unknown ones are forgotten (their messages come back and load anew);
 * one still running is waited for. A job that cannot be resolved stops
 * the run: loading its messages again could duplicate rows. */
static int resolve_journal(run_t *r)
{
    apr_array_header_t *entries, *corrupt;
    const char *why = NULL;
    int i, j;

    if (loader_journal_list(r->p, r->journal_dir, &entries, &corrupt, &why)
        != APR_SUCCESS) {
        loader_logf("error", "journal_failed", "%s", why);
        return 0;
    }
    for (i = 0; i < corrupt->nelts; i++)
        loader_logf("error", "journal_corrupt", "%s: not trusted",
                    APR_ARRAY_IDX(corrupt, i, const char *));
    for (i = 0; i < entries->nelts; i++) {
        loader_journal_entry_t *e =
            APR_ARRAY_IDX(entries, i, loader_journal_entry_t *);
        datos_loadjob_t *job = NULL;
        datos_err_t err;
        apr_status_t rv;
        json_t *ev;

        if (strcmp(e->table, r->table_canon)) {
            loader_logf("warning", "journal_other_table",
                        "%s is for table "
                        "%s, not %s; left alone",
                        e->path, e->table, r->table_canon);
            continue;
        }
        rv = get_job(r, r->p, e->job_id, e->location, 0, NULL, &job, &err);
        if (rv == APR_SUCCESS && job->state != DATOS_JOB_DONE)
            rv = poll_job(r, r->p, NULL, e->job_id, e->location, &job, &err);
        if (rv != APR_SUCCESS && err.http_status == 404) {
            /* Never created: its messages were never loaded. */
            loader_journal_remove(r->p, e);
            loader_logf("info", "journal_resolved",
                        "job %s was never "
                        "created",
                        e->job_id);
            continue;
        }
        if (rv != APR_SUCCESS) {
            log_error("bigquery_failed", "jobs.get", rv, &err);
            return 0;
        }
        ev = event("info", "journal_resolved");
        json_object_set_new(ev, "job_id", json_string(e->job_id));
        if (datos_loadjob_outcome(job) == DATOS_JOB_SUCCEEDED) {
            e->committed = 1;
            for (j = 0; j < e->message_ids->nelts; j++)
                apr_hash_set(r->committed,
                             APR_ARRAY_IDX(e->message_ids, j, const char *),
                             APR_HASH_KEY_STRING, e);
            APR_ARRAY_PUSH(r->committed_entries, loader_journal_entry_t *) = e;
            json_object_set_new(ev, "committed", json_true());
            json_object_set_new(ev, "rows",
                                json_integer(e->message_ids->nelts));
        }
        else {
            loader_journal_remove(r->p, e);
            json_object_set_new(ev, "committed", json_false());
            json_object_set_new(ev, "message", json_string(job_message(job)));
        }
        loader_emit(ev);
    }
    return 1;
}

/* ------------------------------------------------------------ hold-off */

/* state_dir/hold-off: {"until": us, "delay": us}. A run that gave
 * messages back (BigQuery failing, quota) sets it; the runs that follow do
 * not pull before `until`, so a long outage costs each message a
 * delivery attempt per backoff period, doubling, instead of one per cron
 * tick (the subscription's dead-letter policy counts attempts). A clean
 * run removes it. */
static const char *hold_off_path(run_t *r)
{
    return apr_pstrcat(r->p, r->c->state_dir, "/hold-off", NULL);
}

static int hold_off_read(run_t *r, apr_time_t *until,
                         apr_interval_time_t *delay)
{
    apr_file_t *f = NULL;
    char buf[256];
    apr_size_t n = sizeof(buf) - 1;
    json_t *j;
    json_error_t jerr;
    apr_int64_t u = 0, d = 0;
    int ok = 0;

    if (apr_file_open(&f, hold_off_path(r), APR_FOPEN_READ, 0, r->p)
        != APR_SUCCESS)
        return 0;
    if (apr_file_read(f, buf, &n) == APR_SUCCESS) {
        buf[n] = '\0';
        j = json_loads(buf, 0, &jerr);
        if (json_is_object(j) && datos_json_int64(j, "until", &u) == APR_SUCCESS
            && datos_json_int64(j, "delay", &d) == APR_SUCCESS && d >= 0) {
            *until = (apr_time_t)u;
            *delay = (apr_interval_time_t)d;
            ok = 1;
        }
        json_decref(j);
    }
    apr_file_close(f);
    return ok;
}

static void hold_off_update(run_t *r, int failed)
{
    apr_time_t until = 0;
    apr_interval_time_t delay = 0;
    const char *path = hold_off_path(r), *tmp, *text;
    apr_file_t *f = NULL;

    if (!failed) {
        apr_file_remove(path, r->p);
        return;
    }
    if (!r->c->failure_backoff)
        return;
    delay = hold_off_read(r, &until, &delay) && delay > 0
                ? delay * 2
                : r->c->failure_backoff;
    if (delay > r->c->failure_backoff_max)
        delay = r->c->failure_backoff_max;
    until = apr_time_now() + delay;
    text = apr_psprintf(
        r->p, "{\"until\":%" APR_TIME_T_FMT ",\"delay\":%" APR_TIME_T_FMT "}\n",
        until, delay);
    tmp = apr_pstrcat(r->p, path, ".tmp", NULL);
    if (apr_file_open(&f, tmp,
                      APR_FOPEN_WRITE | APR_FOPEN_CREATE | APR_FOPEN_TRUNCATE,
                      APR_FPROT_UREAD | APR_FPROT_UWRITE, r->p)
        == APR_SUCCESS) {
        apr_file_write_full(f, text, strlen(text), NULL);
        apr_file_close(f);
        apr_file_rename(tmp, path, r->p);
    }
    loader_logf("warning", "hold_off",
                "runs until %" APR_TIME_T_FMT " s from "
                "now will not pull (failure_backoff doubling up to "
                "failure_backoff_max)",
                apr_time_sec(delay));
}

/* ------------------------------------------------------------- the run */

static void log_ddl_hint(run_t *r)
{
    if (r->info.has_message_id && r->info.has_publish_time)
        return;
    loader_logf("info", "table_missing_loader_columns",
                "table %s has no %s column: rows are loaded without it. To "
                "add both: ALTER TABLE `%s` ADD COLUMN IF NOT EXISTS "
                "message_id STRING, ADD COLUMN IF NOT EXISTS publish_time "
                "TIMESTAMP",
                r->table_canon,
                !r->info.has_message_id && !r->info.has_publish_time
                    ? "message_id or publish_time"
                : !r->info.has_message_id ? "message_id"
                                          : "publish_time",
                r->table_canon);
}

/* Whether a setting's value came from the environment (its variable's
 * name is the origin loader_config_env records). */
static int from_env(const loader_config_t *c, const char *key)
{
    const char *o =
        c->origin ? apr_hash_get(c->origin, key, APR_HASH_KEY_STRING) : NULL;
    return o && strchr(o, '_') && !strchr(o, ':') && strcmp(o, "default");
}

/* Credentials, clients and the table: what a run needs before it pulls.
 * A failure here is the configuration's (exit 2) unless it is a transient
 * failure to reach Google (exit 1). */
static int setup(run_t *r)
{
    loader_config_t *c = r->c;
    datos_err_t err;
    datos_http_t *http;
    datos_http_opts_t opts;
    datos_pubsub_conf_t psc;
    datos_load_client_conf_t blc;
    const char *project = NULL, *msg, *why;
    datos_endpoint_t ps_ep, bq_ep;
    int creds_configured;
    apr_status_t rv;

    /* Endpoints first: an emulator variable without explicit credentials
     * means no credentials, as Google's client libraries have it. */
    creds_configured = c->credentials && !from_env(c, "credentials");
    datos_err_init(&err, r->p);
    if (datos_endpoint_resolve(r->p, DATOS_API_PUBSUB,
                               from_env(c, "pubsub_url") ? NULL : c->pubsub_url,
                               c->allow_insecure_http, creds_configured, &ps_ep,
                               &err)
            != APR_SUCCESS
        || datos_endpoint_resolve(
               r->p, DATOS_API_BIGQUERY,
               from_env(c, "bigquery_url") ? NULL : c->bigquery_url,
               c->allow_insecure_http, creds_configured, &bq_ep, &err)
               != APR_SUCCESS) {
        loader_logf("error", "config_error", "%s: %s%s",
                    err.message && strstr(err.message, "BIGQUERY")
                        ? "bigquery_url"
                        : "pubsub_url/bigquery_url",
                    err.message,
                    err.reason && !strcmp(err.reason, DATOS_REASON_PLAIN_HTTP)
                        ? " (allow_insecure_http = true)"
                        : "");
        return LOADER_EXIT_CONFIG;
    }
    datos_err_init(&err, r->p);
    rv = datos_creds_load(
        r->p, ps_ep.creds_none && bq_ep.creds_none ? "none" : c->credentials,
        datos_scopes_bigquery_pubsub,
        DATOS_CREDS_ALLOW_USER
            | (c->allow_insecure_http ? DATOS_CREDS_ALLOW_INSECURE : 0),
        &r->creds, &err);
    if (rv != APR_SUCCESS) {
        loader_logf("error", "config_error", "credentials: %s%s", err.message,
                    err.reason && !strcmp(err.reason, DATOS_REASON_PLAIN_HTTP)
                        ? " (allow_insecure_http = true)"
                        : "");
        return LOADER_EXIT_CONFIG;
    }
    datos_http_opts_default(&opts);
    opts.timeout = c->http_timeout;
    opts.ca_file = c->ca_file;
    opts.allow_insecure = c->allow_insecure_http;
    opts.user_agent = "datos-loader/" DATOS_VERSION;
    opts.max_response = (apr_size_t)64 * 1024 * 1024;
    if (!c->project && datos_creds_kind(r->creds) != DATOS_CREDS_NONE) {
        rv = datos_http_create(r->p, &opts, &http, &err);
        if (rv == APR_SUCCESS)
            rv = datos_creds_project(r->creds, http, r->p, call_deadline(r),
                                     &project, &err);
        if (rv != APR_SUCCESS) {
            log_error("credentials_failed", "project", rv, &err);
            return rv == DATOS_ECONFIG || rv == DATOS_EAUTH ? LOADER_EXIT_CONFIG
                                                            : LOADER_EXIT_RETRY;
        }
    }
    if ((msg = loader_config_finish(r->p, c, project))) {
        loader_logf("error", "config_error", "%s", msg);
        return LOADER_EXIT_CONFIG;
    }
    datos_table_parse(r->p, c->table, &r->table);
    r->table_canon =
        apr_pstrcat(r->p, r->table.project ? r->table.project : c->project, ".",
                    r->table.dataset, ".", r->table.table, NULL);
    why = NULL;
    if (loader_journal_open(r->p, c->state_dir, &r->journal_dir, &why)
        != APR_SUCCESS) {
        loader_logf("error", "config_error", "%s", why);
        return LOADER_EXIT_CONFIG;
    }

    memset(&psc, 0, sizeof(psc));
    psc.base_url = ps_ep.base_url;
    psc.http = opts;
    psc.http.allow_insecure = ps_ep.allow_insecure;
    psc.http.timeout =
        c->pull_timeout > c->http_timeout ? c->pull_timeout : c->http_timeout;
    psc.creds = ps_ep.creds_none ? NULL : r->creds;
    rv = datos_pubsub_create(r->p, &psc, &r->ps, &err);
    if (rv != APR_SUCCESS) {
        loader_logf("error", "config_error", "pubsub_url: %s", err.message);
        return LOADER_EXIT_CONFIG;
    }
    memset(&blc, 0, sizeof(blc));
    blc.base_url = bq_ep.base_url;
    blc.project = c->project;
    blc.table = r->table;
    blc.location = c->location;
    blc.http = opts;
    blc.http.allow_insecure = bq_ep.allow_insecure;
    blc.creds = bq_ep.creds_none ? NULL : r->creds;
    blc.resumable_above = (apr_size_t)c->resumable_above;
    rv = datos_load_client_create(r->p, &blc, &r->bl, &err);
    if (rv != APR_SUCCESS) {
        loader_logf("error", "config_error", "bigquery_url: %s", err.message);
        return LOADER_EXIT_CONFIG;
    }
    return LOADER_EXIT_OK;
}

/* What a run and a redrive do first: the run's state, setup, then the
 * lock. LOADER_EXIT_OK to go on, else the exit code; *skipped is set when
 * another run holds the lock (nothing to do: LOADER_EXIT_OK). */
static int begin(run_t *r, apr_pool_t *p, loader_config_t *c, int *skipped)
{
    int rc, lock;

    memset(r, 0, sizeof(*r));
    r->c = c;
    r->p = p;
    r->started = apr_time_now();
    r->committed = apr_hash_make(p);
    r->committed_entries =
        apr_array_make(p, 1, sizeof(loader_journal_entry_t *));
    *skipped = 0;
    rc = setup(r);
    if (rc != LOADER_EXIT_OK)
        return rc;
    lock = loader_lock(p, c->lock_file);
    if (lock == -2)
        return LOADER_EXIT_CONFIG;
    if (lock == -1) {
        loader_logf("info", "run_skipped", "another run holds %s; exiting",
                    c->lock_file);
        *skipped = 1;
        return LOADER_EXIT_OK;
    }
    r->deadline = r->started + c->max_seconds;
    return LOADER_EXIT_OK;
}

int loader_run(apr_pool_t *p, loader_config_t *c)
{
    run_t r;
    call_t tb = {.kind = CALL_TABLE, .what = "tables.get"};
    datos_err_t err;
    apr_status_t rv;
    json_t *ev;
    int rc, skipped, i;
    const char *why = NULL;

    rc = begin(&r, p, c, &skipped);
    if (skipped)
        return LOADER_EXIT_OK;
    if (rc != LOADER_EXIT_OK)
        goto done;

    ev = event("info", "run_started");
    json_object_set_new(ev, "subscription", json_string(c->subscription));
    json_object_set_new(ev, "table", json_string(r.table_canon));
    json_object_set_new(ev, "dead_letter_topic",
                        json_string(c->dead_letter_topic));
    if (c->dry_run)
        json_object_set_new(ev, "dry_run", json_true());
    loader_emit(ev);

    tb.info = &r.info;
    tb.into = p;
    rv = retrying(&r, &tb, 0, &err);
    if (rv != APR_SUCCESS) {
        log_error(rv == DATOS_ECONFIG ? "config_error" : "bigquery_failed",
                  "tables.get", rv, &err);
        rc = rv == DATOS_ECONFIG || rv == DATOS_EAUTH
                     || (rv == DATOS_EREJECTED && err.http_status == 404)
                 ? LOADER_EXIT_CONFIG
                 : LOADER_EXIT_RETRY;
        goto done;
    }
    r.location = c->location ? c->location : r.info.location;
    r.columns = (r.info.has_message_id ? DATOS_NDJSON_MESSAGE_ID : 0)
                | (r.info.has_publish_time ? DATOS_NDJSON_PUBLISH_TIME : 0);
    log_ddl_hint(&r);

    if (!c->dry_run && !resolve_journal(&r)) {
        rc = LOADER_EXIT_RETRY;
        goto done;
    }
    {
        apr_time_t until = 0;
        apr_interval_time_t delay = 0;

        if (!c->dry_run && hold_off_read(&r, &until, &delay)
            && apr_time_now() < until) {
            loader_logf("warning", "held_off",
                        "an earlier run failed; not "
                        "pulling for another %" APR_TIME_T_FMT " ms (delete "
                        "%s to pull now)",
                        apr_time_as_msec(until - apr_time_now()),
                        hold_off_path(&r));
            rc = LOADER_EXIT_RETRY;
            goto done;
        }
    }

    while (!run_over(&r)) {
        batch_t b;

        memset(&b, 0, sizeof(b));
        apr_pool_create(&b.pool, p);
        b.items = apr_array_make(b.pool, 1024, sizeof(item_t));
        b.by_id = apr_hash_make(b.pool);
        b.started = apr_time_now();
        assemble(&r, &b);
        if (b.items->nelts)
            process(&r, &b);
        apr_pool_destroy(b.pool);
        if (r.drained || c->once)
            break;
    }
    /* Committed journal entries whose messages this run did not see again
     * were acked before the crash: once the backlog is drained, they are
     * done. */
    if (r.drained && !r.failed) {
        for (i = 0; i < r.committed_entries->nelts; i++)
            loader_journal_remove(p, APR_ARRAY_IDX(r.committed_entries, i,
                                                   loader_journal_entry_t *));
    }
    rc = r.failed ? LOADER_EXIT_RETRY : LOADER_EXIT_OK;
    if (!c->dry_run)
        hold_off_update(&r, r.gave_back);

done:
    ev = event(rc == LOADER_EXIT_OK ? "info" : "error", "run_finished");
    json_object_set_new(ev, "exit_code", json_integer(rc));
    json_object_set_new(ev, "messages_pulled", json_integer(r.counts.pulled));
    json_object_set_new(ev, "rows_loaded", json_integer(r.counts.loaded));
    json_object_set_new(ev, "dead_lettered",
                        json_integer(r.counts.dead_lettered));
    json_object_set_new(
        ev, "load_jobs",
        json_integer(r.counts.jobs_succeeded + r.counts.jobs_retried
                     + r.counts.jobs_invalid + r.counts.jobs_quota
                     + r.counts.jobs_failed));
    json_object_set_new(ev, "drained", json_boolean(r.drained));
    if (loader_stop)
        json_object_set_new(ev, "stopped_by_signal", json_true());
    json_object_set_new(
        ev, "seconds",
        json_real((double)(apr_time_now() - r.started) / APR_USEC_PER_SEC));
    loader_emit(ev);
    if (c->metrics_file && rc != LOADER_EXIT_CONFIG
        && loader_textfile_write(p, c->metrics_file, &r.counts, r.started,
                                 apr_time_now(), rc == LOADER_EXIT_OK, &why)
               != APR_SUCCESS)
        loader_logf("warning", "metrics_failed", "%s", why);
    return rc;
}

/* ------------------------------------------------------------- redrive */

int loader_redrive(apr_pool_t *p, loader_config_t *c)
{
    run_t r;
    apr_hash_t *seen;
    int rc, skipped;

    rc = begin(&r, p, c, &skipped);
    if (rc != LOADER_EXIT_OK || skipped)
        return rc;
    seen = apr_hash_make(p);
    loader_logf("info", "redrive_started", "from %s to %s",
                c->dead_letter_subscription, c->topic);
    while (!run_over(&r)) {
        apr_pool_t *bp;
        call_t pl = {.kind = CALL_PULL, .what = "pull"};
        datos_err_t err;
        apr_array_header_t *back, *keep;
        datos_pubsub_out_t *out;
        int i, n = 0, fresh = 0;

        apr_pool_create(&bp, p);
        pl.name = c->dead_letter_subscription;
        pl.max = 1000;
        pl.into = bp;
        if (retrying(&r, &pl, 0, &err) != APR_SUCCESS) {
            log_error("pubsub_failed", "pull", APR_EGENERAL, &err);
            r.failed = 1;
            apr_pool_destroy(bp);
            break;
        }
        if (!pl.msgs->nelts) {
            apr_pool_destroy(bp);
            break;
        }
        out = apr_pcalloc(bp, sizeof(*out) * (apr_size_t)pl.msgs->nelts);
        back = apr_array_make(bp, 8, sizeof(const char *));
        keep = apr_array_make(bp, 8, sizeof(const char *));
        for (i = 0; i < pl.msgs->nelts; i++) {
            datos_pubsub_msg_t *m =
                &APR_ARRAY_IDX(pl.msgs, i, datos_pubsub_msg_t);
            apr_array_header_t *attrs;
            int k, ours = 0;

            if (m->problem || !m->message_id) {
                if (m->ack_id)
                    APR_ARRAY_PUSH(keep, const char *) = m->ack_id;
                continue;
            }
            if (!apr_hash_get(seen, m->message_id, APR_HASH_KEY_STRING)) {
                apr_hash_set(seen, apr_pstrdup(p, m->message_id),
                             APR_HASH_KEY_STRING, "");
                fresh++;
            }
            for (k = 0; k < m->attributes->nelts; k++)
                if (!strcmp(APR_ARRAY_IDX(m->attributes, k, datos_attr_t).key,
                            DATOS_ATTR_ERROR))
                    ours = 1;
            if (ours) {
                /* Rejected by the loader for a reason: it stays for
                 * whoever reads the dead-letter topic. */
                APR_ARRAY_PUSH(keep, const char *) = m->ack_id;
                continue;
            }
            /* Moved by the subscription's policy: back to the topic with
             * its data and its own attributes, less Pub/Sub's bookkeeping. */
            attrs =
                apr_array_make(bp, m->attributes->nelts, sizeof(datos_attr_t));
            for (k = 0; k < m->attributes->nelts; k++) {
                datos_attr_t *at =
                    &APR_ARRAY_IDX(m->attributes, k, datos_attr_t);
                if (strncmp(at->key, "CloudPubSubDeadLetter", 21))
                    APR_ARRAY_PUSH(attrs, datos_attr_t) = *at;
            }
            out[n].data = m->data;
            out[n].data_len = m->data_len;
            out[n].attributes = attrs;
            n++;
            APR_ARRAY_PUSH(back, const char *) = m->ack_id;
        }
        if (n) {
            call_t pb = {.kind = CALL_PUBLISH,
                         .what = "publish",
                         .name = c->topic,
                         .out = out,
                         .n = n};

            if (retrying(&r, &pb, 0, &err) != APR_SUCCESS) {
                log_error("pubsub_failed", "publish", APR_EGENERAL, &err);
                send_acks(&r, c->dead_letter_subscription, back, 0, 1);
                r.failed = 1;
                apr_pool_destroy(bp);
                break;
            }
            if (send_acks(&r, c->dead_letter_subscription, back, -1, 1)
                == APR_SUCCESS)
                r.counts.redriven += n;
        }
        send_acks(&r, c->dead_letter_subscription, keep, 0, 1);
        apr_pool_destroy(bp);
        if (!fresh)
            break; /* only messages already looked at came back */
    }
    loader_logf(r.failed ? "error" : "info", "redrive_finished",
                "%" APR_INT64_T_FMT " messages put back on %s",
                r.counts.redriven, c->topic);
    /* A redrive loads nothing: the time of the last successful load stays
     * what the drain runs made it. */
    if (c->metrics_file) {
        const char *why = NULL;

        if (loader_textfile_write(p, c->metrics_file, &r.counts, r.started,
                                  apr_time_now(), 0, &why)
            != APR_SUCCESS)
            loader_logf("warning", "metrics_failed", "%s", why);
    }
    return r.failed ? LOADER_EXIT_RETRY : LOADER_EXIT_OK;
}
