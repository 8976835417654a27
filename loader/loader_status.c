/* loader_status.c - `datos-loader --status [--json]` (docs/loader.md,
 * "Status").
 *
 * It reads the files a run leaves in state_dir (history.json, hold-off,
 * journal/), the lock's holder in /proc/locks and whether the metrics
 * textfile exists. It never calls Pub/Sub or BigQuery, and never writes,
 * moves or locks anything: taking the lock even for an instant could make
 * a run that starts at that moment exit as "another run holds it".
 *
 * The verdict follows the Nagios plugin convention, so that the command is
 * a check as it is: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (the state
 * cannot be read). loader_status_judge holds every threshold.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <apr_strings.h>
#include <apr_file_io.h>

#include "datos_json.h"
#include "loader_run.h"
#include "loader_status.h"

#define PROC_LOCKS_MAX (4 * 1024 * 1024)

static const char *const level_names[] = {"ok", "warning", "critical",
                                          "unknown"};
static const char *const nagios_names[] = {"OK", "WARNING", "CRITICAL",
                                           "UNKNOWN"};

/* ------------------------------------------------------------ judging */

apr_time_t loader_status_settle_by(const loader_journal_entry_t *e,
                                   apr_interval_time_t default_lease,
                                   apr_interval_time_t run_interval)
{
    apr_interval_time_t lease = e->lease > 0 ? e->lease : default_lease;

    if (!e->committed)
        return e->written + lease + run_interval;
    return (e->committed_at ? e->committed_at : e->written) + lease
           + LOADER_REDELIVERY_MAX + LOADER_JOURNAL_MARGIN + run_interval;
}

static void problem(apr_pool_t *p, loader_verdict_t *v, int level,
                    const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void problem(apr_pool_t *p, loader_verdict_t *v, int level,
                    const char *code, const char *fmt, ...)
{
    loader_status_problem_t *pr;
    va_list ap;
    int i;

    pr = apr_array_push(v->problems);
    /* worst first, in the order found within a level */
    for (i = v->problems->nelts - 1; i > 0; i--) {
        loader_status_problem_t *before = pr - 1;
        if (before->level >= level)
            break;
        *pr = *before;
        pr--;
    }
    pr->level = level;
    pr->code = code;
    va_start(ap, fmt);
    pr->message = apr_pvsprintf(p, fmt, ap);
    va_end(ap);
    if (level > v->code)
        v->code = level;
}

/* "2026-12-07T13:00:00Z" */
static const char *iso(apr_pool_t *p, apr_time_t t)
{
    apr_time_exp_t x;

    apr_time_exp_gmt(&x, t);
    return apr_psprintf(p, "%04d-%02d-%02dT%02d:%02d:%02dZ", x.tm_year + 1900,
                        x.tm_mon + 1, x.tm_mday, x.tm_hour, x.tm_min, x.tm_sec);
}

/* "3 h 20 min", "42 s": an age for a person. */
static const char *span(apr_pool_t *p, apr_interval_time_t d)
{
    apr_int64_t s = apr_time_sec(d < 0 ? -d : d);

    if (s < 120)
        return apr_psprintf(p, "%" APR_INT64_T_FMT " s", s);
    if (s < 7200)
        return apr_psprintf(p, "%" APR_INT64_T_FMT " min", s / 60);
    if (s < 2 * 86400)
        return apr_psprintf(p,
                            "%" APR_INT64_T_FMT " h %" APR_INT64_T_FMT " min",
                            s / 3600, s % 3600 / 60);
    return apr_psprintf(p, "%" APR_INT64_T_FMT " days", s / 86400);
}

static void judge_runs(apr_pool_t *p, const loader_status_t *s, apr_time_t now,
                       loader_verdict_t *v)
{
    const apr_array_header_t *runs = s->history.runs;
    const loader_run_record_t *last, *oldest;
    apr_interval_time_t stale = LOADER_STALE_INTERVALS * s->run_interval;

    if (!runs->nelts) {
        problem(p, v, LOADER_STATUS_WARNING, "no_runs",
                "no run recorded yet in %s", s->history_file);
        return;
    }
    last = &APR_ARRAY_IDX(runs, 0, loader_run_record_t);
    oldest = &APR_ARRAY_IDX(runs, runs->nelts - 1, loader_run_record_t);
    if (stale > 0 && s->history.last_success
        && now - s->history.last_success > stale)
        problem(p, v, LOADER_STATUS_CRITICAL, "no_success",
                "no successful run for %s, since %s (more than %d run "
                "intervals of %s)",
                span(p, now - s->history.last_success),
                iso(p, s->history.last_success), LOADER_STALE_INTERVALS,
                span(p, s->run_interval));
    else if (stale > 0 && !s->history.last_success
             && now - oldest->started > stale)
        problem(p, v, LOADER_STATUS_CRITICAL, "no_success",
                "no successful run in the %d recorded since %s (more than "
                "%d run intervals of %s)",
                runs->nelts, iso(p, oldest->started), LOADER_STALE_INTERVALS,
                span(p, s->run_interval));
    if (last->exit_code == LOADER_EXIT_CONFIG)
        problem(p, v, LOADER_STATUS_CRITICAL, "last_run_config_error",
                "the last run, at %s, ended with a configuration error "
                "(exit 2): runs will not load until an administrator fixes "
                "it (see its log)",
                iso(p, last->finished));
    else if (last->exit_code == LOADER_EXIT_UNROUTED)
        problem(p, v, LOADER_STATUS_WARNING, "last_run_unrouted",
                "the last run, at %s, left %" APR_INT64_T_FMT
                " messages to the subscription's dead-letter policy "
                "(exit 3)",
                iso(p, last->finished), last->unrouted);
    else if (last->exit_code != LOADER_EXIT_OK
             && strcmp(last->outcome, "held_off"))
        problem(p, v, LOADER_STATUS_WARNING, "last_run_failed",
                "the last run, at %s, failed (exit %d, %s): the next one "
                "retries",
                iso(p, last->finished), last->exit_code, last->outcome);
}

static void judge_journal(apr_pool_t *p, const loader_status_t *s,
                          apr_time_t now, loader_verdict_t *v)
{
    int i, pending = 0, overdue = 0;
    const loader_status_entry_t *worst = NULL;

    for (i = 0; i < s->journal->nelts; i++) {
        const loader_status_entry_t *e =
            &APR_ARRAY_IDX(s->journal, i, loader_status_entry_t);
        if (now > e->settle_by) {
            overdue++;
            if (!worst || e->settle_by < worst->settle_by)
                worst = e;
        }
        else
            pending++;
    }
    if (overdue)
        problem(p, v,
                s->lock_held == 1 ? LOADER_STATUS_WARNING
                                  : LOADER_STATUS_CRITICAL,
                "journal_overdue",
                "%d journal entr%s not settled in time: %s (%s, %d "
                "messages) should have been settled by %s%s",
                overdue, overdue == 1 ? "y was" : "ies were", worst->file,
                worst->committed ? "committed, awaiting acks" : "job in doubt",
                worst->messages, iso(p, worst->settle_by),
                s->lock_held == 1 ? "; a run is at work now"
                                  : "; is the loader running?");
    if (pending && s->lock_held != 1)
        problem(p, v, LOADER_STATUS_WARNING, "journal_pending",
                "%d journal entr%s to be settled by the next run", pending,
                pending == 1 ? "y waits" : "ies wait");
    if (s->corrupt->nelts)
        problem(p, v, LOADER_STATUS_WARNING, "journal_corrupt",
                "%d journal file%s could not be read and %s never trusted "
                "(first: %s): look at %s",
                s->corrupt->nelts, s->corrupt->nelts == 1 ? "" : "s",
                s->corrupt->nelts == 1 ? "is" : "are",
                APR_ARRAY_IDX(s->corrupt, 0, const char *), s->journal_dir);
}

void loader_status_judge(apr_pool_t *p, const loader_status_t *s,
                         apr_time_t now, loader_verdict_t *v)
{
    memset(v, 0, sizeof(*v));
    v->code = LOADER_STATUS_OK;
    v->problems = apr_array_make(p, 4, sizeof(loader_status_problem_t));
    v->day = loader_utc_day(p, now);
    if (s->unreadable) {
        problem(p, v, LOADER_STATUS_UNKNOWN, "state_unreadable", "%s",
                s->unreadable);
        return;
    }
    v->jobs_today = loader_history_jobs_today(p, &s->history, now);

    judge_runs(p, s, now, v);
    if (s->hold_off && s->hold_off_until > now)
        problem(p, v, LOADER_STATUS_WARNING, "hold_off",
                "hold-off until %s (%s from now): an earlier run failed "
                "on Google's side, and runs until then do not pull "
                "(delete %s to pull now)",
                iso(p, s->hold_off_until), span(p, s->hold_off_until - now),
                s->hold_off_file);
    judge_journal(p, s, now, v);
    if (v->jobs_today >= LOADER_QUOTA_CRITICAL)
        problem(p, v, LOADER_STATUS_CRITICAL, "load_quota",
                "%" APR_INT64_T_FMT " of %d load jobs used today (%s UTC): "
                "BigQuery refuses loads into the table past the quota",
                v->jobs_today, LOADER_LOAD_JOB_QUOTA, v->day);
    else if (v->jobs_today >= LOADER_QUOTA_WARNING)
        problem(p, v, LOADER_STATUS_WARNING, "load_quota",
                "%" APR_INT64_T_FMT " of %d load jobs used today (%s UTC)",
                v->jobs_today, LOADER_LOAD_JOB_QUOTA, v->day);
}

/* ------------------------------------------------------------ the lock */

int loader_status_lock_holder(const char *text, unsigned long major,
                              unsigned long minor, unsigned long inode,
                              long *pid)
{
    const char *line = text;

    /* "1: FLOCK  ADVISORY  WRITE 2917 fd:01:1836052 0 EOF"; a waiter's
     * line has "->" after the number and holds nothing. */
    while (line && *line) {
        char kind[16], mode[16], access[16];
        unsigned long ma, mi, ino;
        long holder;

        if (sscanf(line, "%*d: %15s %15s %15s %ld %lx:%lx:%lu", kind, mode,
                   access, &holder, &ma, &mi, &ino)
                == 7
            && !strcmp(kind, "FLOCK") && ma == major && mi == minor
            && ino == inode) {
            *pid = holder;
            return 1;
        }
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return 0;
}

/* 1 held, 0 not, -1 cannot tell. */
static int lock_held(apr_pool_t *p, const char *path, long *pid)
{
    struct stat st;
    FILE *f;
    char *text;
    size_t n = 0, got;
    int held = -1;

    *pid = 0;
    if (stat(path, &st) != 0)
        return errno == ENOENT ? 0 : -1;
    f = fopen("/proc/locks", "r");
    if (!f)
        return -1;
    text = apr_palloc(p, PROC_LOCKS_MAX + 1);
    while (n < PROC_LOCKS_MAX
           && (got = fread(text + n, 1, PROC_LOCKS_MAX - n, f)) > 0)
        n += got;
    if (!ferror(f)) {
        text[n] = '\0';
        held = loader_status_lock_holder(text, major(st.st_dev),
                                         minor(st.st_dev), st.st_ino, pid);
    }
    fclose(f);
    return held;
}

/* ------------------------------------------------------------ reading */

static const char *errtext(apr_pool_t *p, apr_status_t rv)
{
    char buf[256];
    return apr_pstrdup(p, apr_strerror(rv, buf, sizeof(buf)));
}

/* state_dir/hold-off as loader_run.c writes it: NULL or why it cannot be
 * read. */
static const char *read_hold_off(apr_pool_t *p, loader_status_t *s)
{
    apr_file_t *f = NULL;
    apr_status_t rv;
    char buf[256];
    apr_size_t n = sizeof(buf) - 1;
    json_t *j = NULL;
    datos_err_t err;
    apr_int64_t u = 0, d = 0;
    const char *why = NULL;

    rv = apr_file_open(&f, s->hold_off_file, APR_FOPEN_READ, 0, p);
    if (APR_STATUS_IS_ENOENT(rv))
        return NULL;
    if (rv == APR_SUCCESS)
        rv = apr_file_read_full(f, buf, n, &n);
    if (rv != APR_SUCCESS && !APR_STATUS_IS_EOF(rv)) {
        why = apr_psprintf(p, "cannot read %s: %s", s->hold_off_file,
                           errtext(p, rv));
        goto cleanup;
    }
    datos_err_clear(&err);
    if (datos_json_parse(p, buf, n, 1, &j, &err) != APR_SUCCESS
        || datos_json_int64(j, "until", &u) != APR_SUCCESS
        || datos_json_int64(j, "delay", &d) != APR_SUCCESS || d < 0) {
        why = apr_psprintf(p,
                           "%s is not a hold-off ({\"until\":..., "
                           "\"delay\":...})",
                           s->hold_off_file);
        goto cleanup;
    }
    s->hold_off = 1;
    s->hold_off_until = (apr_time_t)u;
    s->hold_off_delay = (apr_interval_time_t)d;

cleanup:
    if (f)
        apr_file_close(f);
    return why;
}

/* The journal, read as it is: NULL or why it cannot be read. */
static const char *read_journal(apr_pool_t *p, const loader_config_t *c,
                                loader_status_t *s)
{
    apr_array_header_t *entries = NULL, *bad = NULL;
    apr_finfo_t fi;
    apr_dir_t *d = NULL;
    const char *why = NULL;
    int i;

    if (apr_stat(&fi, s->journal_dir, APR_FINFO_TYPE, p) != APR_SUCCESS)
        return NULL; /* no run has made it yet */
    if (loader_journal_peek(p, s->journal_dir, &entries, &bad, &why)
        != APR_SUCCESS)
        return why;
    for (i = 0; i < entries->nelts; i++) {
        const loader_journal_entry_t *e =
            APR_ARRAY_IDX(entries, i, loader_journal_entry_t *);
        loader_status_entry_t *o = apr_array_push(s->journal);
        const char *slash = strrchr(e->path, '/');

        o->file = slash ? slash + 1 : e->path;
        o->job_id = e->job_id;
        o->committed = e->committed;
        o->messages = e->message_ids->nelts;
        o->since =
            e->committed && e->committed_at ? e->committed_at : e->written;
        o->settle_by = loader_status_settle_by(e, c->lease, s->run_interval);
    }
    for (i = 0; i < bad->nelts; i++)
        APR_ARRAY_PUSH(s->corrupt, const char *) =
            APR_ARRAY_IDX(bad, i, const char *);
    /* and those a run moved aside before */
    if (apr_dir_open(&d, s->journal_dir, p) == APR_SUCCESS) {
        while (apr_dir_read(&fi, APR_FINFO_NAME, d) == APR_SUCCESS) {
            apr_size_t n = strlen(fi.name);
            if (n > 8 && !strcmp(fi.name + n - 8, ".corrupt"))
                APR_ARRAY_PUSH(s->corrupt, const char *) =
                    apr_pstrcat(p, s->journal_dir, "/", fi.name, NULL);
        }
        apr_dir_close(d);
    }
    return NULL;
}

apr_status_t loader_status_collect(apr_pool_t *p, const loader_config_t *c,
                                   loader_status_t *s)
{
    apr_finfo_t fi;
    apr_status_t rv;
    const char *why = NULL;

    memset(s, 0, sizeof(*s));
    s->state_dir = c->state_dir;
    /* as loader_config_finish makes it, without the project it needs */
    s->lock_file =
        c->lock_file ? c->lock_file
                     : apr_pstrcat(p, c->state_dir, "/datos-loader.lock", NULL);
    s->metrics_file = c->metrics_file;
    s->history_file = apr_pstrcat(p, c->state_dir, "/history.json", NULL);
    s->journal_dir = apr_pstrcat(p, c->state_dir, "/journal", NULL);
    s->hold_off_file = apr_pstrcat(p, c->state_dir, "/hold-off", NULL);
    s->run_interval = c->run_interval;
    s->journal = apr_array_make(p, 4, sizeof(loader_status_entry_t));
    s->corrupt = apr_array_make(p, 1, sizeof(const char *));
    loader_history_init(p, &s->history);
    s->lock_held = lock_held(p, s->lock_file, &s->lock_pid);
    s->metrics_present =
        c->metrics_file
        && apr_stat(&fi, c->metrics_file, APR_FINFO_TYPE, p) == APR_SUCCESS;

    rv = apr_stat(&fi, c->state_dir, APR_FINFO_TYPE, p);
    if (APR_STATUS_IS_ENOENT(rv)) {
        s->unreadable = apr_psprintf(p,
                                     "state_dir %s does not exist: no run "
                                     "has started on this host with this "
                                     "configuration",
                                     c->state_dir);
        goto cleanup;
    }
    if (rv == APR_SUCCESS && fi.filetype != APR_DIR) {
        rv = APR_ENOTDIR;
        s->unreadable =
            apr_psprintf(p, "state_dir %s is not a directory", c->state_dir);
        goto cleanup;
    }
    if (rv != APR_SUCCESS) {
        s->unreadable = apr_psprintf(p, "cannot read state_dir %s: %s",
                                     c->state_dir, errtext(p, rv));
        goto cleanup;
    }
    if ((rv = loader_history_read(p, c->state_dir, &s->history,
                                  &s->history_found, &why))
        != APR_SUCCESS) {
        s->unreadable = why;
        goto cleanup;
    }
    if ((why = read_hold_off(p, s)) || (why = read_journal(p, c, s))) {
        rv = APR_EGENERAL;
        s->unreadable = why;
        goto cleanup;
    }

cleanup:
    return rv;
}

/* ------------------------------------------------------------ printing */

static const char *summary(apr_pool_t *p, const loader_status_t *s,
                           const loader_verdict_t *v)
{
    const loader_run_record_t *last;
    const char *out = "";
    int i;

    if (v->problems->nelts) {
        for (i = 0; i < v->problems->nelts; i++)
            out = apr_pstrcat(
                p, out, i ? "; " : "",
                APR_ARRAY_IDX(v->problems, i, loader_status_problem_t).message,
                NULL);
        return out;
    }
    last = &APR_ARRAY_IDX(s->history.runs, 0, loader_run_record_t);
    return apr_psprintf(
        p,
        "last run %s at %s: %" APR_INT64_T_FMT " rows loaded, %" APR_INT64_T_FMT
        " dead-lettered; %" APR_INT64_T_FMT " of %d load jobs used today%s",
        last->outcome, iso(p, last->finished), last->loaded,
        last->dead_lettered, v->jobs_today, LOADER_LOAD_JOB_QUOTA,
        s->lock_held == 1 ? "; a run is at work now" : "");
}

static const char *perfdata(apr_pool_t *p, const loader_status_t *s,
                            const loader_verdict_t *v, apr_time_t now)
{
    const char *out = apr_psprintf(
        p, "load_jobs_today=%" APR_INT64_T_FMT ";%d;%d;0;%d journal_entries=%d",
        v->jobs_today, LOADER_QUOTA_WARNING, LOADER_QUOTA_CRITICAL,
        LOADER_LOAD_JOB_QUOTA, s->journal->nelts);

    if (s->history.last_success)
        out = apr_psprintf(
            p, "%s last_success_age=%" APR_INT64_T_FMT "s;;%s", out,
            apr_time_sec(now - s->history.last_success),
            s->run_interval ? apr_psprintf(
                p, "%" APR_INT64_T_FMT,
                apr_time_sec(LOADER_STALE_INTERVALS * s->run_interval))
                            : "");
    return out;
}

const char *loader_status_text(apr_pool_t *p, const loader_status_t *s,
                               const loader_verdict_t *v, apr_time_t now)
{
    const char *out;
    int i;

    out = apr_psprintf(p, "DATOS-LOADER %s - %s", nagios_names[v->code],
                       summary(p, s, v));
    if (s->unreadable)
        return apr_pstrcat(p, out, "\n", NULL);
    out = apr_pstrcat(p, out, " | ", perfdata(p, s, v, now), "\n", NULL);

    out = apr_pstrcat(p, out, "runs (newest first):\n", NULL);
    if (!s->history.runs->nelts)
        out = apr_pstrcat(p, out, "  none recorded yet\n", NULL);
    for (i = 0; i < s->history.runs->nelts; i++) {
        const loader_run_record_t *r =
            &APR_ARRAY_IDX(s->history.runs, i, loader_run_record_t);
        out = apr_psprintf(
            p,
            "%s  %s  %-12s exit %d  pulled %" APR_INT64_T_FMT
            ", loaded %" APR_INT64_T_FMT ", dead-lettered %" APR_INT64_T_FMT
            ", load jobs %" APR_INT64_T_FMT "%s (%.1f s)\n",
            out, iso(p, r->finished), r->outcome, r->exit_code, r->pulled,
            r->loaded, r->dead_lettered, r->load_jobs,
            r->drained ? ", drained" : "",
            (double)(r->finished - r->started) / APR_USEC_PER_SEC);
    }
    out = apr_psprintf(p, "%slast success: %s\n", out,
                       s->history.last_success ? apr_psprintf(
                           p, "%s (%s ago)", iso(p, s->history.last_success),
                           span(p, now - s->history.last_success))
                                               : "none recorded");
    out = apr_psprintf(p, "%sjournal: %d entr%s waiting to be settled\n", out,
                       s->journal->nelts, s->journal->nelts == 1 ? "y" : "ies");
    for (i = 0; i < s->journal->nelts; i++) {
        const loader_status_entry_t *e =
            &APR_ARRAY_IDX(s->journal, i, loader_status_entry_t);
        out = apr_psprintf(p,
                           "%s  %s  %s, %d messages, since %s, settle by "
                           "%s%s\n",
                           out, e->file,
                           e->committed ? "committed, awaiting acks"
                                        : "job in doubt",
                           e->messages, iso(p, e->since), iso(p, e->settle_by),
                           now > e->settle_by ? " (overdue)" : "");
    }
    for (i = 0; i < s->corrupt->nelts; i++)
        out =
            apr_pstrcat(p, out, "  unreadable: ",
                        APR_ARRAY_IDX(s->corrupt, i, const char *), "\n", NULL);
    out = apr_psprintf(
        p, "%shold-off: %s\n", out,
        s->hold_off && s->hold_off_until > now ? apr_psprintf(
            p, "until %s (%s from now; delay %s)", iso(p, s->hold_off_until),
            span(p, s->hold_off_until - now), span(p, s->hold_off_delay))
        : s->hold_off ? apr_psprintf(p, "ended at %s; the next run pulls",
                                     iso(p, s->hold_off_until))
                      : "none");
    out = apr_psprintf(p,
                       "%sload jobs today (%s UTC): %" APR_INT64_T_FMT
                       " of %d (warning at %d, critical at %d; this host's "
                       "runs only)\n",
                       out, v->day, v->jobs_today, LOADER_LOAD_JOB_QUOTA,
                       LOADER_QUOTA_WARNING, LOADER_QUOTA_CRITICAL);
    out = apr_psprintf(
        p, "%slock: %s (%s)\nstate: %s\nmetrics: %s\n", out, s->lock_file,
        s->lock_held == 1
            ? (s->lock_pid
                   ? apr_psprintf(p, "a run holds it: pid %ld", s->lock_pid)
                   : "a run holds it")
        : s->lock_held == 0 ? "no run holds it"
                            : "cannot tell whether a run holds it",
        s->state_dir,
        !s->metrics_file ? "not configured (metrics_file)"
        : s->metrics_present
            ? s->metrics_file
            : apr_pstrcat(p, s->metrics_file, " (not written yet)", NULL));
    return out;
}

static json_t *time_or_null(apr_pool_t *p, apr_time_t t)
{
    return t ? json_string(iso(p, t)) : json_null();
}

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

const char *loader_status_json(apr_pool_t *p, const loader_status_t *s,
                               const loader_verdict_t *v, apr_time_t now)
{
    json_t *j = datos_json_bind(p, json_object()), *a, *o;
    const char *text;
    apr_size_t len;
    int i;

    json_object_set_new(j, "version", json_integer(1));
    json_object_set_new(j, "status", json_string(level_names[v->code]));
    json_object_set_new(j, "exit_code", json_integer(v->code));
    json_object_set_new(j, "summary", json_string(summary(p, s, v)));
    json_object_set_new(j, "now", json_string(iso(p, now)));
    a = json_array();
    for (i = 0; i < v->problems->nelts; i++) {
        const loader_status_problem_t *pr =
            &APR_ARRAY_IDX(v->problems, i, loader_status_problem_t);
        o = json_object();
        json_object_set_new(o, "level", json_string(level_names[pr->level]));
        json_object_set_new(o, "code", json_string(pr->code));
        json_object_set_new(o, "message", json_string(pr->message));
        json_array_append_new(a, o);
    }
    json_object_set_new(j, "problems", a);

    o = json_object();
    json_object_set_new(o, "state_dir", str_or_null(s->state_dir));
    json_object_set_new(o, "lock_file", str_or_null(s->lock_file));
    json_object_set_new(o, "metrics_file", str_or_null(s->metrics_file));
    json_object_set_new(o, "metrics_present", json_boolean(s->metrics_present));
    json_object_set_new(o, "history_file", str_or_null(s->history_file));
    json_object_set_new(o, "journal_dir", str_or_null(s->journal_dir));
    json_object_set_new(o, "hold_off_file", str_or_null(s->hold_off_file));
    json_object_set_new(j, "files", o);

    o = json_object();
    json_object_set_new(
        o, "held", s->lock_held < 0 ? json_null() : json_boolean(s->lock_held));
    json_object_set_new(o, "pid",
                        s->lock_pid ? json_integer(s->lock_pid) : json_null());
    json_object_set_new(j, "lock", o);

    a = json_array();
    for (i = 0; s->history.runs && i < s->history.runs->nelts; i++) {
        const loader_run_record_t *r =
            &APR_ARRAY_IDX(s->history.runs, i, loader_run_record_t);
        o = json_object();
        json_object_set_new(o, "started", json_string(iso(p, r->started)));
        json_object_set_new(o, "finished", json_string(iso(p, r->finished)));
        json_object_set_new(
            o, "seconds",
            json_real((double)(r->finished - r->started) / APR_USEC_PER_SEC));
        loader_run_record_json(o, r);
        json_array_append_new(a, o);
    }
    json_object_set_new(j, "runs", a);
    json_object_set_new(j, "last_success",
                        time_or_null(p, s->history.last_success));
    json_object_set_new(j, "run_interval_seconds",
                        json_integer(apr_time_sec(s->run_interval)));

    o = json_object();
    json_object_set_new(o, "active",
                        json_boolean(s->hold_off && s->hold_off_until > now));
    json_object_set_new(o, "until",
                        s->hold_off ? json_string(iso(p, s->hold_off_until))
                                    : json_null());
    json_object_set_new(o, "delay_seconds",
                        s->hold_off
                            ? json_integer(apr_time_sec(s->hold_off_delay))
                            : json_null());
    json_object_set_new(j, "hold_off", o);

    o = json_object();
    a = json_array();
    for (i = 0; s->journal && i < s->journal->nelts; i++) {
        const loader_status_entry_t *e =
            &APR_ARRAY_IDX(s->journal, i, loader_status_entry_t);
        json_t *x = json_object();
        json_object_set_new(x, "file", json_string(e->file));
        json_object_set_new(x, "job_id", json_string(e->job_id));
        json_object_set_new(x, "committed", json_boolean(e->committed));
        json_object_set_new(x, "messages", json_integer(e->messages));
        json_object_set_new(x, "since", json_string(iso(p, e->since)));
        json_object_set_new(x, "settle_by", json_string(iso(p, e->settle_by)));
        json_object_set_new(x, "overdue", json_boolean(now > e->settle_by));
        json_array_append_new(a, x);
    }
    json_object_set_new(o, "entries", a);
    a = json_array();
    for (i = 0; s->corrupt && i < s->corrupt->nelts; i++)
        json_array_append_new(
            a, json_string(APR_ARRAY_IDX(s->corrupt, i, const char *)));
    json_object_set_new(o, "unreadable", a);
    json_object_set_new(j, "journal", o);

    o = json_object();
    json_object_set_new(o, "day", json_string(v->day));
    json_object_set_new(o, "today", json_integer(v->jobs_today));
    json_object_set_new(o, "quota", json_integer(LOADER_LOAD_JOB_QUOTA));
    json_object_set_new(o, "warning_at", json_integer(LOADER_QUOTA_WARNING));
    json_object_set_new(o, "critical_at", json_integer(LOADER_QUOTA_CRITICAL));
    json_object_set_new(j, "load_jobs", o);

    text = datos_json_dump(p, j, &len);
    return text ? apr_pstrcat(p, text, "\n", NULL)
                : "{\"version\":1,\"status\":\"unknown\",\"exit_code\":3}\n";
}

int loader_status(apr_pool_t *pool, const loader_config_t *c, int json,
                  const char *msg)
{
    loader_status_t s;
    loader_verdict_t v;
    apr_time_t now = apr_time_now();
    apr_pool_t *p = NULL;
    int code = LOADER_STATUS_UNKNOWN;

    /* its own pool: a configuration error returns from main without
     * destroying the process's, and the JSON goes with this one */
    if (apr_pool_create(&p, pool) != APR_SUCCESS) {
        fputs("DATOS-LOADER UNKNOWN - out of memory\n", stdout);
        goto cleanup;
    }
    if (msg) {
        memset(&s, 0, sizeof(s));
        loader_history_init(p, &s.history);
        s.lock_held = -1;
        s.unreadable = apr_pstrcat(p, "configuration error: ", msg, NULL);
    }
    else
        loader_status_collect(p, c, &s);
    loader_status_judge(p, &s, now, &v);
    fputs(json ? loader_status_json(p, &s, &v, now)
               : loader_status_text(p, &s, &v, now),
          stdout);
    code = v.code;

cleanup:
    fflush(stdout);
    if (p)
        apr_pool_destroy(p);
    return code;
}
