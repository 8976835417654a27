/* loader_run.c - one run of datos-loader (docs/design.md section 5).
 *
 *   lock -> settle the journal -> hold off after a failed run? -> repeat {
 *   a batch: pull (extending every lease), validate, dead-letter the
 *   invalid (loader_batch.c) -> one load job for the valid rows, journal
 *   entry first, polled to DONE, then the acks (loader_load.c) } until the
 *   backlog is drained or a bound is reached -> the journal settled, the
 *   hold-off and the metrics written.
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

#include "datos_http.h"
#include "datos_json.h"
#include "datos_ndjson.h"
#include "datos_version.h"
#include "loader_run.h"
#include "loader_status.h"


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

/* ------------------------------------------------------------ hold-off */

/* state_dir/hold-off: {"until": us, "delay": us}. A run that Google
 * failed (BigQuery failing, quota, the dead-letter topic unreachable) sets
 * it; the runs that follow do
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

/* Credentials, clients and the table: what a run needs before it pulls.
 * A failure here is the configuration's (exit 2) unless it is a transient
 * failure to reach Google (exit 1). */
static int setup(run_t *r)
{
    loader_config_t *c = r->c;
    loader_setup_t *su = &r->setup;
    datos_err_t err;
    datos_http_opts_t opts;
    datos_pubsub_conf_t psc;
    datos_load_client_conf_t blc;
    const char *msg, *why = NULL;
    apr_status_t rv;

    if ((msg = loader_setup(r->p, c, 0, su))) {
        loader_logf("error", su->retry ? "credentials_failed" : "config_error",
                    "%s", msg);
        return su->retry ? LOADER_EXIT_RETRY : LOADER_EXIT_CONFIG;
    }
    datos_table_parse(r->p, c->table, &r->table);
    r->table_canon =
        apr_pstrcat(r->p, r->table.project ? r->table.project : c->project, ".",
                    r->table.dataset, ".", r->table.table, NULL);
    if (loader_journal_open(r->p, c->state_dir, &r->journal_dir, &why)
        != APR_SUCCESS) {
        loader_logf("error", "config_error", "%s", why);
        return LOADER_EXIT_CONFIG;
    }

    loader_http_opts(c, &opts);
    opts.max_response =
        (apr_size_t)c->pull_max_bytes > DATOS_PUBSUB_MESSAGE_ANSWER_MAX
            ? (apr_size_t)c->pull_max_bytes
            : DATOS_PUBSUB_MESSAGE_ANSWER_MAX;
    /* A stop ends the transfers of pulls, publishes and BigQuery calls
     * at once; acks and nacks go on their own connection, and finish. */
    opts.abort_flag = &loader_stop;

    memset(&psc, 0, sizeof(psc));
    psc.base_url = su->pubsub_base;
    psc.http = opts;
    psc.http.allow_insecure = su->pubsub_insecure;
    psc.http.timeout =
        c->pull_timeout > c->http_timeout ? c->pull_timeout : c->http_timeout;
    /* A pull's first byte comes once its whole answer is made, and one of
     * up to pull_max_bytes can take a while: the stall guard (no byte for
     * 10 s) would end it and leave its messages leased. */
    psc.http.low_speed_time = psc.http.timeout;
    psc.creds = su->pubsub_creds_none ? NULL : su->creds;
    datos_err_init(&err, r->p);
    rv = datos_pubsub_create(r->p, &psc, &r->ps, &err);
    if (rv == APR_SUCCESS) {
        psc.http.abort_flag = NULL;
        rv = datos_pubsub_create(r->p, &psc, &r->settle, &err);
    }
    if (rv != APR_SUCCESS) {
        loader_logf("error", "config_error", "pubsub_url: %s", err.message);
        return LOADER_EXIT_CONFIG;
    }
    memset(&blc, 0, sizeof(blc));
    blc.base_url = su->bigquery_base;
    blc.project = c->project;
    blc.table = r->table;
    blc.location = c->location;
    blc.http = opts;
    blc.http.allow_insecure = su->bigquery_insecure;
    blc.creds = su->bigquery_creds_none ? NULL : su->creds;
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
    r->committed_entries = apr_array_make(p, 1, sizeof(void *));
    r->returned = apr_hash_make(p);
    r->pull_max = DATOS_PUBSUB_PUBLISH_MAX_MESSAGES;
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
    r->locked = 1;
    r->deadline = r->started + c->max_seconds;
    return LOADER_EXIT_OK;
}

static int run_over(run_t *r)
{
    return loader_stop || r->stop_pulling || apr_time_now() >= r->deadline
           || (r->c->max_messages && r->pulled_messages >= r->c->max_messages);
}

/* tables.get: the table's location and columns. */
static int read_table(run_t *r)
{
    datos_retry_t rt;
    datos_err_t err;
    apr_status_t rv = APR_SUCCESS;

    datos_err_init(&err, r->p);
    loader_retry(r, &rt, "tables.get", 0);
    while (datos_retry_again(&rt, rv, &err))
        rv = datos_load_client_table(
            r->bl, r->p, loader_call_deadline(r, r->c->http_timeout), &r->info,
            &err);
    if (rv != APR_SUCCESS) {
        loader_log_error(rv == DATOS_ECONFIG ? "config_error"
                                             : "bigquery_failed",
                         "tables.get", rv, &err);
        return rv == DATOS_ECONFIG || rv == DATOS_EAUTH
                       || (rv == DATOS_EREJECTED && err.http_status == 404)
                   ? LOADER_EXIT_CONFIG
                   : LOADER_EXIT_RETRY;
    }
    r->location = r->c->location ? r->c->location : r->info.location;
    r->columns = (r->info.has_message_id ? DATOS_NDJSON_MESSAGE_ID : 0)
                 | (r->info.has_publish_time ? DATOS_NDJSON_PUBLISH_TIME : 0);
    log_ddl_hint(r);
    return LOADER_EXIT_OK;
}

/* The run's line in state_dir/history.json, for --status. Only a run that
 * holds the lock writes it; a dry run loads nothing and leaves none. */
static apr_int64_t record_run(run_t *r, int rc, apr_time_t finished)
{
    loader_history_t h;
    loader_run_record_t rec;
    const char *why = NULL;
    int found = 0;

    if (!r->locked || r->c->dry_run)
        return -1;
    if (loader_history_read(r->p, r->c->state_dir, &h, &found, &why)
        != APR_SUCCESS) {
        /* a history that cannot be read starts again, said once here */
        loader_logf("warning", "history_failed", "%s; starting a new one", why);
        loader_history_init(r->p, &h);
    }
    memset(&rec, 0, sizeof(rec));
    rec.started = r->started;
    rec.finished = finished;
    rec.exit_code = rc;
    rec.outcome = rc == LOADER_EXIT_CONFIG     ? "config_error"
                  : r->held_off_now            ? "held_off"
                  : rc == LOADER_EXIT_UNROUTED ? "unrouted"
                  : loader_stop                ? "stopped"
                  : rc == LOADER_EXIT_OK       ? "ok"
                                               : "failed";
    rec.pulled = r->counts.pulled;
    rec.loaded = r->counts.loaded;
    rec.dead_lettered = r->counts.dead_lettered;
    rec.unrouted = r->counts.unrouted;
    rec.load_jobs = r->jobs_inserted;
    rec.drained = r->drained;
    loader_history_add(r->p, &h, &rec);
    if (loader_history_write(r->p, r->c->state_dir, &h, &why) != APR_SUCCESS)
        loader_logf("warning", "history_failed", "%s", why);
    return loader_history_jobs_today(r->p, &h, finished);
}

static void finish(run_t *r, int rc)
{
    loader_run_seen_t seen;
    const char *why = NULL;
    json_t *ev;

    ev = loader_event(rc == LOADER_EXIT_OK         ? "info"
                      : rc == LOADER_EXIT_UNROUTED ? "warning"
                                                   : "error",
                      "run_finished");
    json_object_set_new(ev, "exit_code", json_integer(rc));
    json_object_set_new(ev, "messages_pulled", json_integer(r->counts.pulled));
    json_object_set_new(ev, "rows_loaded", json_integer(r->counts.loaded));
    json_object_set_new(ev, "dead_lettered",
                        json_integer(r->counts.dead_lettered));
    json_object_set_new(ev, "unrouted", json_integer(r->counts.unrouted));
    json_object_set_new(
        ev, "load_jobs",
        json_integer(r->counts.jobs_succeeded + r->counts.jobs_retried
                     + r->counts.jobs_invalid + r->counts.jobs_quota
                     + r->counts.jobs_failed));
    json_object_set_new(ev, "drained", json_boolean(r->drained));
    if (loader_stop)
        json_object_set_new(ev, "stopped_by_signal", json_true());
    json_object_set_new(
        ev, "seconds",
        json_real((double)(apr_time_now() - r->started) / APR_USEC_PER_SEC));
    loader_emit(ev);
    seen.jobs_today = record_run(r, rc, apr_time_now());
    seen.backlog = r->c->dry_run ? -1 : r->counts.pulled;
    seen.drained = r->c->dry_run ? -1 : r->drained;
    seen.jobs_quota = LOADER_LOAD_JOB_QUOTA;
    if (r->c->metrics_file && rc != LOADER_EXIT_CONFIG
        && loader_textfile_write(
               r->p, r->c->metrics_file, &r->counts, &seen, r->started,
               apr_time_now(),
               rc == LOADER_EXIT_OK || rc == LOADER_EXIT_UNROUTED, &why)
               != APR_SUCCESS)
        loader_logf("warning", "metrics_failed", "%s", why);
}

int loader_run(apr_pool_t *p, loader_config_t *c)
{
    run_t r;
    json_t *ev;
    int rc, skipped;

    rc = begin(&r, p, c, &skipped);
    if (skipped)
        return LOADER_EXIT_OK;
    if (rc != LOADER_EXIT_OK)
        goto done;

    ev = loader_event("info", "run_started");
    json_object_set_new(ev, "subscription", json_string(c->subscription));
    json_object_set_new(ev, "table", json_string(r.table_canon));
    json_object_set_new(ev, "dead_letter_topic",
                        json_string(c->dead_letter_topic));
    if (c->dry_run)
        json_object_set_new(ev, "dry_run", json_true());
    loader_emit(ev);

    if ((rc = read_table(&r)) != LOADER_EXIT_OK)
        goto done;
    if (!c->dry_run && !loader_resolve_journal(&r)) {
        rc = LOADER_EXIT_RETRY;
        goto done;
    }
    {
        apr_time_t until = 0;
        apr_interval_time_t delay = 0;

        if (!c->dry_run && hold_off_read(&r, &until, &delay)
            && apr_time_now() < until) {
            loader_logf("warning", "held_off",
                        "an earlier run failed; not pulling for another "
                        "%" APR_TIME_T_FMT " ms (delete %s to pull now)",
                        apr_time_as_msec(until - apr_time_now()),
                        hold_off_path(&r));
            r.held_off_now = 1;
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
        loader_assemble(&r, &b);
        if (b.items->nelts)
            loader_process(&r, &b);
        apr_pool_destroy(b.pool);
        if (r.drained || c->once)
            break;
    }
    if (!c->dry_run)
        loader_settle_journal(&r);
    rc = r.failed            ? LOADER_EXIT_RETRY
         : r.counts.unrouted ? LOADER_EXIT_UNROUTED
                             : LOADER_EXIT_OK;
    if (!c->dry_run)
        hold_off_update(&r, r.hold_off);

done:
    finish(&r, rc);
    return rc;
}

/* ------------------------------------------------------------- redrive */

/* Publishes out to the topic, retried; a retry sends only what the failed
 * attempt did not get through. *published counts what went. */
static apr_status_t republish(run_t *r, apr_pool_t *p, datos_pubsub_out_t *out,
                              int n, int *published, datos_err_t *err)
{
    datos_retry_t rt;
    apr_status_t rv = APR_SUCCESS;

    *published = 0;
    datos_err_init(err, p);
    loader_retry(r, &rt, "publish", 0);
    while (*published < n && datos_retry_again(&rt, rv, err)) {
        apr_array_header_t *ids = NULL;

        rv = datos_pubsub_publish(
            r->ps, p, loader_call_deadline(r, r->c->http_timeout), r->c->topic,
            out + *published, n - *published, &ids, err);
        *published += ids ? ids->nelts : 0;
    }
    return *published == n ? APR_SUCCESS : rv;
}

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
        datos_pubsub_pulled_t got;
        datos_err_t err;
        apr_array_header_t *back, *keep;
        datos_pubsub_out_t *out;
        int i, n = 0, fresh = 0, published = 0;

        apr_pool_create(&bp, p);
        if (loader_pull(&r, bp, c->dead_letter_subscription, r.pull_max, &got,
                        &err)
            != APR_SUCCESS) {
            loader_log_error("pubsub_failed", "pull", APR_EGENERAL, &err);
            r.failed = 1;
            apr_pool_destroy(bp);
            break;
        }
        if (got.cut && r.pull_max > 1)
            r.pull_max /= 2;
        if (!got.msgs->nelts) {
            apr_pool_destroy(bp);
            if (got.cut)
                continue;
            break;
        }
        out = apr_pcalloc(bp, sizeof(*out) * (apr_size_t)got.msgs->nelts);
        back = apr_array_make(bp, 8, sizeof(const char *));
        keep = apr_array_make(bp, 8, sizeof(const char *));
        for (i = 0; i < got.msgs->nelts; i++) {
            datos_pubsub_msg_t *m =
                &APR_ARRAY_IDX(got.msgs, i, datos_pubsub_msg_t);
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
            apr_status_t rv = republish(&r, bp, out, n, &published, &err);
            apr_array_header_t *sent =
                apr_array_make(bp, published + 1, sizeof(const char *));

            for (i = 0; i < published; i++)
                APR_ARRAY_PUSH(sent, const char *) =
                    APR_ARRAY_IDX(back, i, const char *);
            if (loader_send_acks(&r, c->dead_letter_subscription, sent, -1)
                == APR_SUCCESS)
                r.counts.redriven += published;
            if (rv != APR_SUCCESS) {
                apr_array_header_t *rest =
                    apr_array_make(bp, n - published + 1, sizeof(const char *));
                for (i = published; i < n; i++)
                    APR_ARRAY_PUSH(rest, const char *) =
                        APR_ARRAY_IDX(back, i, const char *);
                loader_log_error("pubsub_failed", "publish", rv, &err);
                loader_send_acks(&r, c->dead_letter_subscription, rest, 0);
                loader_send_acks(&r, c->dead_letter_subscription, keep, 0);
                r.failed = 1;
                apr_pool_destroy(bp);
                break;
            }
        }
        loader_send_acks(&r, c->dead_letter_subscription, keep, 0);
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
        loader_run_seen_t unknown = {-1, -1, -1, LOADER_LOAD_JOB_QUOTA};
        const char *why = NULL;

        if (loader_textfile_write(p, c->metrics_file, &r.counts, &unknown,
                                  r.started, apr_time_now(), 0, &why)
            != APR_SUCCESS)
            loader_logf("warning", "metrics_failed", "%s", why);
    }
    return r.failed ? LOADER_EXIT_RETRY : LOADER_EXIT_OK;
}
