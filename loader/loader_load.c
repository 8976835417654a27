/* loader_load.c - the load of a batch's valid rows, and the journal that
 * makes it happen once (docs/design.md section 5, "Job outcomes" and "The
 * journal").
 *
 * The batch's NDJSON, its message ids and the hash naming its jobs are
 * made once; each generation (a new job for the same rows after a
 * retryable failure) only gets its own name. They are made again only
 * when the rows change: BigQuery refused some, which go to the
 * dead-letter topic.
 *
 * The journal entry is written before jobs.insert. A job that may exist
 * keeps its entry until the next run knows what it did; its messages stay
 * leased meanwhile when the run was stopped or BigQuery cannot be asked,
 * so that another host cannot load them under another job in the
 * meantime. A committed job keeps its entry until its messages were
 * acked, by this run or a later one, or can no longer come back.
 */
#include <string.h>

#include <apr_strings.h>

#include "datos_loadjob.h"
#include "datos_ndjson.h"
#include "loader_run.h"

/* How many generations of one batch are tried when BigQuery keeps failing
 * the job with a retryable reason, before the run gives up on it. */
#define MAX_GENERATIONS 5
/* Load job polls: 1 s, x1.5, at most 15 s (docs/google-apis.md 2.7). */
#define POLL_FIRST apr_time_from_sec(1)
#define POLL_MAX   apr_time_from_sec(15)
/* A 404 from jobs.get right after a 409 can be lag; it is asked again for
 * this long before it means "no such job". */
#define GET_404_GRACE apr_time_from_sec(30)

/* ------------------------------------------------------------ the journal */

/* A committed entry, and the message ids this run acked of it. */
typedef struct jref_t {
    loader_journal_entry_t *e;
    apr_hash_t *acked;
} jref_t;

int loader_journal_has(run_t *r, const char *message_id)
{
    return message_id
           && apr_hash_get(r->committed, message_id, APR_HASH_KEY_STRING);
}

void loader_journal_acked(run_t *r, const char *message_id)
{
    jref_t *j = apr_hash_get(r->committed, message_id, APR_HASH_KEY_STRING);

    if (j)
        apr_hash_set(j->acked, apr_pstrdup(r->p, message_id),
                     APR_HASH_KEY_STRING, "");
}

static void remember(run_t *r, loader_journal_entry_t *e)
{
    jref_t *j = apr_pcalloc(r->p, sizeof(*j));
    int i;

    j->e = e;
    j->acked = apr_hash_make(r->p);
    for (i = 0; i < e->message_ids->nelts; i++)
        apr_hash_set(r->committed,
                     APR_ARRAY_IDX(e->message_ids, i, const char *),
                     APR_HASH_KEY_STRING, j);
    APR_ARRAY_PUSH(r->committed_entries, jref_t *) = j;
}

/* Whether the messages of a committed entry can no longer come back: the
 * leases of the run that loaded them ended at the latest one lease after
 * the job was first known committed (that run renewed them until then),
 * and Pub/Sub redelivers within its longest retry back-off. */
static int outlived(run_t *r, const loader_journal_entry_t *e)
{
    apr_interval_time_t lease = e->lease > 0 ? e->lease : r->c->lease;

    return e->committed_at
           && apr_time_now() > e->committed_at + lease + LOADER_REDELIVERY_MAX
                                   + LOADER_JOURNAL_MARGIN;
}

static void journal_event(const loader_journal_entry_t *e, const char *what,
                          int rows)
{
    json_t *ev = loader_event("info", "journal_settled");

    json_object_set_new(ev, "job_id", json_string(e->job_id));
    json_object_set_new(ev, "outcome", json_string(what));
    json_object_set_new(ev, "rows", json_integer(rows));
    loader_emit(ev);
}

static const char *entry_key(apr_pool_t *p, const loader_journal_entry_t *e)
{
    const char *g = strrchr(e->job_id, '_');
    return g ? apr_pstrmemdup(p, e->job_id, (apr_size_t)(g - e->job_id))
             : e->job_id;
}

/* Writes e again as committed now. */
static void mark_committed(run_t *r, loader_journal_entry_t *e)
{
    const char *why = NULL;

    e->committed = 1;
    if (!e->committed_at)
        e->committed_at = apr_time_now();
    if (!e->lease)
        e->lease = r->c->lease;
    if (loader_journal_write(r->p, r->journal_dir, entry_key(r->p, e), e, &why)
        != APR_SUCCESS)
        /* The entry on disk still names the job: a later run asks
         * BigQuery again, which says the same. */
        loader_logf("warning", "journal_failed", "%s", why);
}

static const char *job_message(const datos_loadjob_t *job)
{
    if (job->error_result && job->error_result->message)
        return job->error_result->message;
    return "no detail";
}

/* jobs.get, asking again for a while when a job the caller knows exists
 * (a 409 said so) is not found yet. */
static apr_status_t get_job(run_t *r, apr_pool_t *p, const char *job_id,
                            const char *location, int expect, batch_t *b,
                            datos_loadjob_t **job, datos_err_t *err)
{
    apr_time_t until = apr_time_now() + GET_404_GRACE;
    datos_retry_t rt;
    apr_status_t rv;

    for (;;) {
        rv = APR_SUCCESS;
        datos_err_init(err, p);
        loader_retry(r, &rt, "jobs.get", 0);
        while (datos_retry_again(&rt, rv, err))
            rv = datos_load_client_get(
                r->bl, p, loader_call_deadline(r, r->c->http_timeout), job_id,
                location, job, err);
        if (rv == APR_SUCCESS || loader_stop
            || !(expect && err->http_status == 404 && apr_time_now() < until))
            return rv;
        if (b)
            loader_renew_leases(r, b, 0);
        loader_pause(apr_time_from_sec(1));
    }
}

/* Polls a job to DONE, extending the batch's leases meanwhile. A stop
 * ends the polling at once (APR_EINTR): the job goes on without the run,
 * and the journal keeps it for the next. */
static apr_status_t poll_job(run_t *r, apr_pool_t *p, batch_t *b,
                             const char *job_id, const char *location,
                             datos_loadjob_t **job, datos_err_t *err)
{
    apr_time_t until = apr_time_now() + r->c->job_timeout;
    apr_interval_time_t pause = POLL_FIRST;
    apr_status_t rv;

    while ((*job)->state != DATOS_JOB_DONE) {
        if (!loader_stop && apr_time_now() >= until)
            return datos_err_set(err, p, APR_TIMEUP, 0, NULL,
                                 "load job %s not DONE within job_timeout",
                                 job_id);
        loader_pause(pause);
        if (loader_stop)
            return datos_err_set(err, p, APR_EINTR, 0, NULL,
                                 "stopped while load job %s runs", job_id);
        pause = pause * 3 / 2 > POLL_MAX ? POLL_MAX : pause * 3 / 2;
        if (b)
            loader_renew_leases(r, b, 0);
        rv = get_job(r, p, job_id, location, 1, b, job, err);
        if (rv != APR_SUCCESS)
            return rv;
    }
    return APR_SUCCESS;
}

int loader_resolve_journal(run_t *r)
{
    apr_array_header_t *entries, *corrupt;
    const char *why = NULL;
    int i;

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
                        "%s is for table %s, not %s; left alone", e->path,
                        e->table, r->table_canon);
            continue;
        }
        if (e->committed) {
            /* Known committed: only its messages are awaited. */
            if (!e->committed_at)
                mark_committed(r, e);
            if (outlived(r, e)) {
                loader_journal_remove(r->p, e);
                journal_event(e, "forgotten", e->message_ids->nelts);
            }
            else {
                remember(r, e);
            }
            continue;
        }
        rv = get_job(r, r->p, e->job_id, e->location, 0, NULL, &job, &err);
        if (rv == APR_SUCCESS && job->state != DATOS_JOB_DONE)
            rv = poll_job(r, r->p, NULL, e->job_id, e->location, &job, &err);
        if (rv != APR_SUCCESS && err.http_status == 404) {
            /* Never created: its messages were never loaded. */
            loader_journal_remove(r->p, e);
            loader_logf("info", "journal_resolved", "job %s was never created",
                        e->job_id);
            continue;
        }
        if (rv != APR_SUCCESS) {
            if (rv != APR_EINTR)
                loader_log_error("bigquery_failed", "jobs.get", rv, &err);
            return 0;
        }
        ev = loader_event("info", "journal_resolved");
        json_object_set_new(ev, "job_id", json_string(e->job_id));
        if (datos_loadjob_outcome(job) == DATOS_JOB_SUCCEEDED) {
            mark_committed(r, e);
            remember(r, e);
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

void loader_settle_journal(run_t *r)
{
    int i, k;

    for (i = 0; i < r->committed_entries->nelts; i++) {
        jref_t *j = APR_ARRAY_IDX(r->committed_entries, i, jref_t *);
        loader_journal_entry_t *e = j->e;
        apr_array_header_t *left;
        const char *why = NULL;
        int acked = (int)apr_hash_count(j->acked);

        if (acked >= e->message_ids->nelts) {
            loader_journal_remove(r->p, e);
            journal_event(e, "acknowledged", e->message_ids->nelts);
            continue;
        }
        if (outlived(r, e)) {
            loader_journal_remove(r->p, e);
            journal_event(e, "forgotten", e->message_ids->nelts - acked);
            continue;
        }
        if (!acked)
            continue;
        /* Only the messages still awaited stay. */
        left = apr_array_make(r->p, e->message_ids->nelts - acked,
                              sizeof(const char *));
        for (k = 0; k < e->message_ids->nelts; k++) {
            const char *id = APR_ARRAY_IDX(e->message_ids, k, const char *);
            if (!apr_hash_get(j->acked, id, APR_HASH_KEY_STRING))
                APR_ARRAY_PUSH(left, const char *) = id;
        }
        e->message_ids = left;
        if (loader_journal_write(r->p, r->journal_dir, entry_key(r->p, e), e,
                                 &why)
            != APR_SUCCESS)
            loader_logf("warning", "journal_failed", "%s", why);
    }
}

/* ------------------------------------------------------------ the load */

/* What a set of rows needs for its load jobs, made once. */
typedef struct rows_t {
    item_t **items;
    int n;
    apr_array_header_t *ids; /* const char *: the journal's message ids */
    const char *key;         /* the jobs' name, less the generation */
    datos_ndjson_t *nd;
    const char *data;
    apr_size_t len;
} rows_t;

static apr_status_t rows_make(run_t *r, apr_pool_t *p, item_t **items, int n,
                              rows_t *w)
{
    apr_size_t *mid_len = apr_palloc(p, sizeof(*mid_len) * (apr_size_t)(n + 1));
    apr_size_t bound = 0, line;
    apr_status_t rv;
    int i, fits = 1;

    w->items = items;
    w->n = n;
    w->ids = apr_array_make(p, n, sizeof(const char *));
    /* The buffer is made once, as large as the lines can be: growing it
     * line by line would copy and fault it in again at every doubling. */
    for (i = 0; i < n; i++) {
        APR_ARRAY_PUSH(w->ids, const char *) = items[i]->m->message_id;
        mid_len[i] = strlen(items[i]->m->message_id);
        line = datos_ndjson_record_max(r->columns, &items[i]->rec, mid_len[i]);
        if (!line || line > APR_SIZE_MAX / 2 - bound)
            fits = 0;
        else
            bound += line;
    }
    rv = datos_loadjob_key(p, r->table_canon, (const char *const *)w->ids->elts,
                           n, &w->key);
    if (rv == APR_SUCCESS)
        rv = fits ? datos_ndjson_create(p, r->columns, bound, &w->nd)
                  : APR_ENOMEM;
    for (i = 0; rv == APR_SUCCESS && i < n; i++)
        rv = datos_ndjson_append_record(w->nd, &items[i]->rec,
                                        items[i]->m->message_id, mid_len[i],
                                        items[i]->m->publish_time_us);
    if (rv == APR_SUCCESS)
        w->data = datos_ndjson_data(w->nd, &w->len);
    else
        loader_logf("error", "batch_failed",
                    "cannot build the load batch of %d rows", n);
    return rv;
}

static void log_job(const char *level, const char *name,
                    const datos_loadjob_t *job, const char *job_id, int rows)
{
    json_t *ev = loader_event(level, name);

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

/* The run stops; the batch's open messages go back to Pub/Sub (nothing
 * of them can be committed). */
static int stop_give_back(run_t *r, batch_t *b, int hold_off)
{
    r->stop_pulling = 1;
    r->failed = r->failed || !loader_stop; /* a stop is no failure */
    r->hold_off = r->hold_off || (hold_off && !loader_stop);
    loader_give_back(r, b);
    return 0;
}

/* The run stops with a job that may commit: its entry stays for the next
 * run, and its messages stay leased until their lease ends, so no other
 * host takes them meanwhile. */
static int stop_in_doubt(run_t *r, const char *job_id, int hold_off)
{
    json_t *ev = loader_event("warning", "load_in_doubt");

    json_object_set_new(ev, "job_id", json_string(job_id));
    json_object_set_new(ev, "message",
                        json_string("the job may still commit: the journal "
                                    "keeps it for the next run, and its "
                                    "messages stay leased"));
    loader_emit(ev);
    r->stop_pulling = 1;
    r->failed = 1;
    r->hold_off = r->hold_off || (hold_off && !loader_stop);
    return 0;
}

/* The rows of a job BigQuery refused as invalid: those it names go to
 * the dead-letter topic, the rest on in w (made anew). 1 when done, 0 to
 * stop, -1 to try the rest as a new generation. */
static int rejected_rows(run_t *r, batch_t *b, apr_pool_t *p, rows_t *w,
                         const datos_loadjob_t *job)
{
    apr_array_header_t *rows = NULL, *lines = NULL;
    item_t **bad, **rest;
    int nbad = 0, nrest = 0, l = 0, i, k;

    if (datos_loadjob_rejected(p, job, &rows) != APR_SUCCESS
        || datos_loadjob_rejected_lines(p, rows, w->nd, &lines) != APR_SUCCESS
        || !lines->nelts) {
        /* The errors name no row of this data: halves, until the rows
         * BigQuery refuses are alone. */
        if (w->n == 1) {
            w->items[0]->reason = DATOS_REASON_BIGQUERY_REJECTED;
            w->items[0]->detail = apr_pstrdup(r->p, job_message(job));
            return loader_dead_letter(r, w->items, 1) == APR_SUCCESS
                       ? 1
                       : stop_give_back(r, b, 1);
        }
        return loader_load(r, b, w->items, w->n / 2)
               && loader_load(r, b, w->items + w->n / 2, w->n - w->n / 2);
    }
    bad = apr_palloc(r->p, sizeof(*bad) * (apr_size_t)w->n);
    rest = apr_palloc(r->p, sizeof(*rest) * (apr_size_t)w->n);
    for (i = 0; i < w->n; i++) {
        item_t *it = w->items[i];

        if (l < lines->nelts && APR_ARRAY_IDX(lines, l, int) == i) {
            it->reason = DATOS_REASON_BIGQUERY_REJECTED;
            it->detail = apr_pstrdup(r->p, job_message(job));
            for (k = 0; k < rows->nelts; k++) {
                const datos_rejected_t *rj =
                    &APR_ARRAY_IDX(rows, k, datos_rejected_t);
                if (rj->message
                    && (rj->line == i + 1
                        || (rj->position >= 0
                            && datos_ndjson_line_at(w->nd, rj->position) == i)))
                    it->detail = apr_pstrdup(r->p, rj->message);
            }
            bad[nbad++] = it;
            l++;
        }
        else {
            rest[nrest++] = it;
        }
    }
    if (loader_dead_letter(r, bad, nbad) != APR_SUCCESS)
        return stop_give_back(r, b, 1);
    if (!nrest)
        return 1;
    /* Fewer rows: new data, and a new name for it. */
    if (rows_make(r, p, rest, nrest, w) != APR_SUCCESS)
        return stop_give_back(r, b, 0);
    return -1;
}

int loader_load(run_t *r, batch_t *b, item_t **items, int n)
{
    apr_pool_t *lp, *gp;
    rows_t w;
    int generation = 0, ok = 0;

    if (!n)
        return 1;
    apr_pool_create(&lp, r->p);
    apr_pool_create(&gp, lp);
    if (rows_make(r, lp, items, n, &w) != APR_SUCCESS) {
        ok = stop_give_back(r, b, 0);
        goto leave;
    }
    for (;;) {
        loader_journal_entry_t entry;
        datos_loadjob_t *job = NULL;
        datos_job_outcome_t outcome;
        const char *job_id, *why = NULL;
        datos_retry_t rt;
        datos_err_t err;
        apr_status_t rv = APR_SUCCESS;
        int existed = 0, rc;

        apr_pool_clear(gp);
        if (loader_stop) {
            /* Nothing is sent yet: all goes back. */
            ok = stop_give_back(r, b, 0);
            goto leave;
        }
        job_id = datos_loadjob_generation(gp, w.key, generation);

        /* The journal first: from here on the job may exist. */
        memset(&entry, 0, sizeof(entry));
        entry.job_id = job_id;
        entry.location = r->location;
        entry.table = r->table_canon;
        entry.generation = generation;
        entry.written = apr_time_now();
        entry.lease = r->c->lease;
        entry.message_ids = w.ids;
        if (loader_journal_write(gp, r->journal_dir, w.key, &entry, &why)
            != APR_SUCCESS) {
            loader_logf("error", "journal_failed", "%s", why);
            ok = stop_give_back(r, b, 0);
            goto leave;
        }

        loader_renew_leases(r, b, 0);
        datos_err_init(&err, gp);
        loader_retry(r, &rt, "jobs.insert", 0);
        while (datos_retry_again(&rt, rv, &err))
            /* the upload gets a millisecond per KiB on top */
            rv = datos_load_client_insert(
                r->bl, gp,
                loader_call_deadline(
                    r, r->c->http_timeout
                           + (apr_interval_time_t)(w.len / 1024) * 1000),
                job_id, r->location, w.data, w.len, &job, &err);
        if (rv == APR_SUCCESS)
            r->jobs_inserted++; /* each counts against the daily quota */
        if (rv == DATOS_EEXISTS) {
            /* The job exists (an earlier attempt, or an earlier run, made
             * it): what it did decides, never a second load. */
            existed = 1;
            rv = get_job(r, gp, job_id, r->location, 1, b, &job, &err);
        }
        if (rv != APR_SUCCESS) {
            if (loader_stop) {
                ok = stop_in_doubt(r, job_id, 0);
                goto leave;
            }
            /* The job may exist: the entry stays for the next run to
             * resolve, and the messages go back meanwhile. */
            loader_log_error("bigquery_failed", "jobs.insert", rv, &err);
            ok = stop_give_back(r, b, 1);
            goto leave;
        }
        rv = poll_job(r, gp, b, job_id, r->location, &job, &err);
        if (rv != APR_SUCCESS) {
            if (rv != APR_EINTR)
                loader_log_error("bigquery_failed", "jobs.get", rv, &err);
            ok = stop_in_doubt(r, job_id, rv != APR_EINTR);
            goto leave;
        }

        outcome = datos_loadjob_outcome(job);
        if (existed
            && (outcome == DATOS_JOB_QUOTA || outcome == DATOS_JOB_FAILED)
            && generation + 1 < MAX_GENERATIONS) {
            /* An earlier run's job under this name failed for a reason of
             * its own time (a spent quota, an outage): its name is used up,
             * so the batch is tried under the next one. */
            log_job("info", "earlier_job_failed", job, job_id, w.n);
            loader_journal_remove(gp, &entry);
            generation++;
            continue;
        }
        switch (outcome) {
        case DATOS_JOB_SUCCEEDED:
            r->counts.jobs_succeeded++;
            r->counts.loaded += job->output_rows >= 0 ? job->output_rows : w.n;
            log_job("info", "batch_loaded", job, job_id, w.n);
            /* Known committed before the acks go: a run killed in between
             * leaves an entry that needs no question to BigQuery. */
            mark_committed(r, &entry);
            if (loader_ack_items(r, w.items, w.n) != APR_SUCCESS) {
                /* The rows are in; the entry stays, so that the
                 * redeliveries are acked without a second load. */
                r->stop_pulling = 1;
                r->failed = 1;
                goto leave;
            }
            loader_journal_remove(gp, &entry);
            ok = 1;
            goto leave;

        case DATOS_JOB_RETRY:
            r->counts.jobs_retried++;
            log_job("warning", "load_job_retry", job, job_id, w.n);
            loader_journal_remove(gp, &entry);
            if (++generation >= MAX_GENERATIONS) {
                loader_logf("error", "load_job_gave_up",
                            "batch failed %d generations in a row; its "
                            "messages go back",
                            MAX_GENERATIONS);
                ok = stop_give_back(r, b, 1);
                goto leave;
            }
            continue;

        case DATOS_JOB_INVALID:
            r->counts.jobs_invalid++;
            log_job("warning", "load_job_rejected_rows", job, job_id, w.n);
            loader_journal_remove(gp, &entry);
            rc = rejected_rows(r, b, lp, &w, job);
            if (rc >= 0) {
                ok = rc;
                goto leave;
            }
            generation++;
            continue;

        case DATOS_JOB_QUOTA:
            r->counts.jobs_quota++;
            log_job("error", "load_quota_exhausted", job, job_id, w.n);
            loader_journal_remove(gp, &entry);
            ok = stop_give_back(r, b, 1);
            goto leave;

        default:
            r->counts.jobs_failed++;
            log_job("error", "load_job_failed", job, job_id, w.n);
            loader_journal_remove(gp, &entry);
            ok = stop_give_back(r, b, 1);
            goto leave;
        }
    }

leave:
    apr_pool_destroy(lp);
    return ok;
}
