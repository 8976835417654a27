/* loader_textfile.c - the node_exporter textfile (docs/design.md section 5).
 *
 * Each run rewrites the file whole, atomically (a temporary file in the
 * same directory, renamed over it), so node_exporter never reads half of
 * it. Counters carry on from the values the file held: a run adds what it
 * did, so a counter only ever grows (a deleted file restarts it, which
 * Prometheus reads as a reset). The last success time is kept from the
 * file when the run failed, so an alert on its age keeps working.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include <apr_strings.h>
#include <apr_file_io.h>

#include "datos_file.h"
#include "loader.h"

/* The value of one series in the previous file (0 when absent). */
static double previous(const char *old, const char *series)
{
    apr_size_t n = strlen(series);
    const char *at = old;

    while (at && *at) {
        if (!strncmp(at, series, n) && at[n] == ' ')
            return strtod(at + n + 1, NULL);
        at = strchr(at, '\n');
        if (at)
            at++;
    }
    return 0;
}

typedef struct {
    apr_pool_t *p;
    const char *old;
    char *out;
} text_t;

static void add(text_t *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void add(text_t *t, const char *fmt, ...)
{
    va_list ap;
    char *s;

    va_start(ap, fmt);
    s = apr_pvsprintf(t->p, fmt, ap);
    va_end(ap);
    t->out = apr_pstrcat(t->p, t->out, s, NULL);
}

static void counter(text_t *t, const char *series, apr_int64_t now)
{
    add(t, "%s %.0f\n", series, previous(t->old, series) + (double)now);
}

/* A gauge of this run, or the file's previous value when this run does
 * not know it (a redrive); none when neither exists. */
static void gauge(text_t *t, const char *series, const char *help,
                  apr_int64_t now)
{
    const char *at = strstr(t->old, apr_pstrcat(t->p, "\n", series, " ", NULL));

    add(t, "# HELP %s %s\n# TYPE %s gauge\n", series, help, series);
    if (now >= 0)
        add(t, "%s %" APR_INT64_T_FMT "\n", series, now);
    else if (at)
        add(t, "%s %.0f\n", series, previous(t->old, series));
}

apr_status_t loader_textfile_write(apr_pool_t *p, const char *path,
                                   const loader_counts_t *k,
                                   const loader_run_seen_t *seen,
                                   apr_time_t started, apr_time_t finished,
                                   int ok, const char **why)
{
    text_t t;
    char *old = NULL;
    apr_size_t oldlen = 0;
    apr_file_t *f = NULL;
    apr_status_t rv;
    mode_t old_mask;
    apr_finfo_t fi;
    int r;

    *why = NULL;
    t.p = p;
    t.out = "";
    if (apr_file_open(&f, path, APR_FOPEN_READ, 0, p) == APR_SUCCESS) {
        if (apr_file_info_get(&fi, APR_FINFO_SIZE, f) == APR_SUCCESS
            && fi.size > 0 && fi.size < 1024 * 1024) {
            old = apr_palloc(p, (apr_size_t)fi.size + 1);
            if (apr_file_read_full(f, old, (apr_size_t)fi.size, &oldlen)
                != APR_SUCCESS)
                oldlen = 0;
            old[oldlen] = '\0';
        }
        apr_file_close(f);
        f = NULL;
    }
    t.old = old ? old : "";

    add(&t,
        "# HELP datos_loader_last_run_timestamp_seconds When the last "
        "run of datos-loader ended.\n"
        "# TYPE datos_loader_last_run_timestamp_seconds gauge\n"
        "datos_loader_last_run_timestamp_seconds %.3f\n",
        (double)finished / APR_USEC_PER_SEC);
    add(&t, "# HELP datos_loader_last_success_timestamp_seconds When a run "
            "last ended with nothing left failing.\n"
            "# TYPE datos_loader_last_success_timestamp_seconds gauge\n");
    if (ok)
        add(&t, "datos_loader_last_success_timestamp_seconds %.3f\n",
            (double)finished / APR_USEC_PER_SEC);
    else if (previous(t.old, "datos_loader_last_success_timestamp_seconds") > 0)
        add(&t, "datos_loader_last_success_timestamp_seconds %.3f\n",
            previous(t.old, "datos_loader_last_success_timestamp_seconds"));
    add(&t,
        "# HELP datos_loader_run_duration_seconds How long the last run "
        "took.\n# TYPE datos_loader_run_duration_seconds gauge\n"
        "datos_loader_run_duration_seconds %.3f\n",
        (double)(finished - started) / APR_USEC_PER_SEC);
    add(&t, "# HELP datos_loader_messages_pulled_total Messages received "
            "from the subscription (every delivery).\n"
            "# TYPE datos_loader_messages_pulled_total counter\n");
    counter(&t, "datos_loader_messages_pulled_total", k->pulled);
    add(&t, "# HELP datos_loader_rows_loaded_total Rows committed to "
            "BigQuery by load jobs.\n"
            "# TYPE datos_loader_rows_loaded_total counter\n");
    counter(&t, "datos_loader_rows_loaded_total", k->loaded);
    add(&t, "# HELP datos_loader_messages_invalid_total Messages sent to "
            "the dead-letter topic, by reason.\n"
            "# TYPE datos_loader_messages_invalid_total counter\n");
    for (r = 1; r < DATOS_REASON_COUNT; r++)
        counter(&t,
                apr_psprintf(p,
                             "datos_loader_messages_invalid_total"
                             "{reason=\"%s\"}",
                             datos_reason_name((datos_reason_t)r)),
                k->invalid[r]);
    add(&t, "# HELP datos_loader_load_jobs_total Load jobs, by outcome.\n"
            "# TYPE datos_loader_load_jobs_total counter\n");
    counter(&t, "datos_loader_load_jobs_total{outcome=\"succeeded\"}",
            k->jobs_succeeded);
    counter(&t, "datos_loader_load_jobs_total{outcome=\"retried\"}",
            k->jobs_retried);
    counter(&t, "datos_loader_load_jobs_total{outcome=\"invalid\"}",
            k->jobs_invalid);
    counter(&t, "datos_loader_load_jobs_total{outcome=\"quota_exceeded\"}",
            k->jobs_quota);
    counter(&t, "datos_loader_load_jobs_total{outcome=\"failed\"}",
            k->jobs_failed);
    add(&t, "# HELP datos_loader_messages_unrouted_total Messages given "
            "back to the subscription's own dead-letter policy (they could "
            "not be read or dead-lettered).\n"
            "# TYPE datos_loader_messages_unrouted_total counter\n");
    counter(&t, "datos_loader_messages_unrouted_total", k->unrouted);
    add(&t, "# HELP datos_loader_messages_redriven_total Dead-letter "
            "messages put back on the topic by --redrive.\n"
            "# TYPE datos_loader_messages_redriven_total counter\n");
    counter(&t, "datos_loader_messages_redriven_total", k->redriven);
    gauge(&t, "datos_loader_backlog_messages",
          "Messages the last drain run found waiting: the deliveries it "
          "pulled (a floor when it ended before an empty pull).",
          seen->backlog);
    gauge(&t, "datos_loader_last_run_drained",
          "1 when the last drain run ended on an empty pull, 0 when a "
          "bound or a failure ended it first.",
          seen->drained);
    gauge(&t, "datos_loader_load_jobs_today",
          "Load jobs this host's runs started this UTC day (the state "
          "directory's history.json).",
          seen->jobs_today);
    gauge(&t, "datos_loader_load_jobs_quota",
          "BigQuery's load jobs per table per day, for all hosts together.",
          seen->jobs_quota);

    /* node_exporter reads it as a user of its own: 0644 whatever the
     * umask (the systemd unit's is 0077, for the journal's sake). */
    old_mask = umask(022);
    rv = datos_file_replace(p, path, t.out, strlen(t.out),
                            APR_FPROT_UREAD | APR_FPROT_UWRITE | APR_FPROT_GREAD
                                | APR_FPROT_WREAD);
    umask(old_mask);
    if (rv != APR_SUCCESS) {
        char buf[256];
        *why = apr_psprintf(p, "cannot write %s: %s", path,
                            apr_strerror(rv, buf, sizeof(buf)));
    }
    return rv;
}
