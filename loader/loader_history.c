/* loader_history.c - state_dir/history.json, the runs --status shows.
 *
 * A run that held the lock rewrites it whole at its end (a temporary file
 * renamed over it), so a reader finds the old file or the new one:
 *   {"version":1,"last_success":1765112400000000,
 *    "load_jobs":{"day":"2026-12-07","count":3},
 *    "runs":[{"started":..,"finished":..,"exit_code":0,"outcome":"ok",
 *             "messages_pulled":20,"rows_loaded":20,"dead_lettered":0,
 *             "unrouted":0,"load_jobs":1,"drained":true}, ...]}
 * Times are microseconds since the epoch, runs newest first and at most
 * LOADER_HISTORY_MAX of them. The load jobs are counted per UTC day as
 * BigQuery's quota is; the last success is kept however many failed runs
 * follow it. A run killed with -9 leaves no record (its textfile line is
 * missing too): the next one's is written as usual.
 */
#include <string.h>

#include <apr_strings.h>
#include <apr_file_io.h>

#include "datos_file.h"
#include "datos_json.h"
#include "loader_status.h"

#define HISTORY_VERSION  1
#define HISTORY_MAX_SIZE (1024 * 1024)

const char *loader_utc_day(apr_pool_t *p, apr_time_t t)
{
    apr_time_exp_t x;

    apr_time_exp_gmt(&x, t);
    return apr_psprintf(p, "%04d-%02d-%02d", x.tm_year + 1900, x.tm_mon + 1,
                        x.tm_mday);
}

void loader_history_init(apr_pool_t *p, loader_history_t *h)
{
    memset(h, 0, sizeof(*h));
    h->runs =
        apr_array_make(p, LOADER_HISTORY_MAX, sizeof(loader_run_record_t));
}

static int get_int(const json_t *j, const char *key, apr_int64_t *out)
{
    return datos_json_int64(j, key, out) == APR_SUCCESS && *out >= 0;
}

static const char *parse_run(apr_pool_t *p, const json_t *j, int i,
                             loader_run_record_t *r)
{
    apr_int64_t n;
    const char *outcome = datos_json_str(j, "outcome");

    memset(r, 0, sizeof(*r));
    if (!json_is_object(j) || !outcome || !*outcome
        || !get_int(j, "started", &r->started)
        || !get_int(j, "finished", &r->finished) || !get_int(j, "exit_code", &n)
        || n > 255 || !get_int(j, "messages_pulled", &r->pulled)
        || !get_int(j, "rows_loaded", &r->loaded)
        || !get_int(j, "dead_lettered", &r->dead_lettered)
        || !get_int(j, "unrouted", &r->unrouted)
        || !get_int(j, "load_jobs", &r->load_jobs)
        || !json_is_boolean(json_object_get(j, "drained")))
        return apr_psprintf(p, "run %d is not a run record", i);
    r->exit_code = (int)n;
    r->outcome = apr_pstrdup(p, outcome);
    r->drained = json_is_true(json_object_get(j, "drained"));
    return NULL;
}

const char *loader_history_parse(apr_pool_t *p, const char *text,
                                 apr_size_t len, loader_history_t *h)
{
    json_t *j = NULL, *runs, *jobs;
    datos_err_t err;
    apr_int64_t n;
    const char *day, *msg = NULL;
    size_t i;

    loader_history_init(p, h);
    datos_err_clear(&err);
    if (datos_json_parse(p, text, len, 1, &j, &err) != APR_SUCCESS)
        return apr_psprintf(p, "not JSON: %s", err.message);
    if (!json_is_object(j) || datos_json_int64(j, "version", &n) != APR_SUCCESS
        || n != HISTORY_VERSION)
        return "not a version 1 history";
    if (!get_int(j, "last_success", &h->last_success))
        return "last_success missing";
    jobs = datos_json_obj(j, "load_jobs");
    day = jobs ? datos_json_str(jobs, "day") : NULL;
    if (!jobs || !get_int(jobs, "count", &h->jobs_on_day)
        || (day && strlen(day) != 10))
        return "load_jobs missing";
    h->jobs_day = day ? apr_pstrdup(p, day) : NULL;
    runs = datos_json_arr(j, "runs");
    if (!runs)
        return "runs missing";
    for (i = 0; i < json_array_size(runs) && i < LOADER_HISTORY_MAX; i++) {
        loader_run_record_t *r = apr_array_push(h->runs);
        if ((msg = parse_run(p, json_array_get(runs, i), (int)i, r)))
            return msg;
    }
    return NULL;
}

static const char *history_path(apr_pool_t *p, const char *state_dir)
{
    return apr_pstrcat(p, state_dir, "/history.json", NULL);
}

apr_status_t loader_history_read(apr_pool_t *p, const char *state_dir,
                                 loader_history_t *h, int *found,
                                 const char **why)
{
    const char *path = history_path(p, state_dir), *msg;
    apr_file_t *f = NULL;
    apr_finfo_t fi;
    apr_size_t got = 0;
    apr_status_t rv;
    char *text = NULL, buf[256];

    *found = 0;
    loader_history_init(p, h);
    rv = apr_file_open(&f, path, APR_FOPEN_READ, 0, p);
    if (APR_STATUS_IS_ENOENT(rv))
        return APR_SUCCESS;
    if (rv == APR_SUCCESS)
        rv = apr_file_info_get(&fi, APR_FINFO_SIZE | APR_FINFO_TYPE, f);
    if (rv != APR_SUCCESS)
        goto cleanup;
    if (fi.filetype != APR_REG || fi.size <= 0 || fi.size > HISTORY_MAX_SIZE) {
        rv = APR_EGENERAL;
        *why = apr_psprintf(p, "%s: not a regular file of 1 B to 1 MiB", path);
        goto cleanup;
    }
    text = apr_palloc(p, (apr_size_t)fi.size);
    rv = apr_file_read_full(f, text, (apr_size_t)fi.size, &got);
    if (rv != APR_SUCCESS)
        goto cleanup;
    if ((msg = loader_history_parse(p, text, got, h))) {
        rv = APR_EGENERAL;
        *why = apr_psprintf(p, "%s: %s", path, msg);
        goto cleanup;
    }
    *found = 1;

cleanup:
    if (f)
        apr_file_close(f);
    if (rv != APR_SUCCESS && !*why)
        *why = apr_psprintf(p, "cannot read %s: %s", path,
                            apr_strerror(rv, buf, sizeof(buf)));
    return rv;
}

void loader_run_record_json(json_t *o, const loader_run_record_t *r)
{
    json_object_set_new(o, "exit_code", json_integer(r->exit_code));
    json_object_set_new(o, "outcome", json_string(r->outcome));
    json_object_set_new(o, "messages_pulled", json_integer(r->pulled));
    json_object_set_new(o, "rows_loaded", json_integer(r->loaded));
    json_object_set_new(o, "dead_lettered", json_integer(r->dead_lettered));
    json_object_set_new(o, "unrouted", json_integer(r->unrouted));
    json_object_set_new(o, "load_jobs", json_integer(r->load_jobs));
    json_object_set_new(o, "drained", json_boolean(r->drained));
}

void loader_history_add(apr_pool_t *p, loader_history_t *h,
                        const loader_run_record_t *run)
{
    apr_array_header_t *runs =
        apr_array_make(p, LOADER_HISTORY_MAX, sizeof(loader_run_record_t));
    const char *day = loader_utc_day(p, run->finished);
    int i;

    APR_ARRAY_PUSH(runs, loader_run_record_t) = *run;
    for (i = 0; i < h->runs->nelts && runs->nelts < LOADER_HISTORY_MAX; i++)
        APR_ARRAY_PUSH(runs, loader_run_record_t) =
            APR_ARRAY_IDX(h->runs, i, loader_run_record_t);
    h->runs = runs;
    if (run->exit_code == LOADER_EXIT_OK
        || run->exit_code == LOADER_EXIT_UNROUTED)
        h->last_success = run->finished;
    if (!h->jobs_day || strcmp(h->jobs_day, day)) {
        h->jobs_day = day;
        h->jobs_on_day = 0;
    }
    h->jobs_on_day += run->load_jobs;
}

apr_int64_t loader_history_jobs_today(apr_pool_t *p, const loader_history_t *h,
                                      apr_time_t now)
{
    return h->jobs_day && !strcmp(h->jobs_day, loader_utc_day(p, now))
               ? h->jobs_on_day
               : 0;
}

apr_status_t loader_history_write(apr_pool_t *p, const char *state_dir,
                                  const loader_history_t *h, const char **why)
{
    json_t *j = datos_json_bind(p, json_object()), *runs, *jobs;
    const char *path = history_path(p, state_dir), *text;
    apr_size_t len = 0;
    apr_status_t rv;
    char buf[256];
    int i;

    runs = json_array();
    for (i = 0; i < h->runs->nelts; i++) {
        const loader_run_record_t *r =
            &APR_ARRAY_IDX(h->runs, i, loader_run_record_t);
        json_t *o = json_object();

        json_object_set_new(o, "started", json_integer(r->started));
        json_object_set_new(o, "finished", json_integer(r->finished));
        loader_run_record_json(o, r);
        json_array_append_new(runs, o);
    }
    jobs = json_object();
    json_object_set_new(jobs, "day",
                        h->jobs_day ? json_string(h->jobs_day) : json_null());
    json_object_set_new(jobs, "count", json_integer(h->jobs_on_day));
    json_object_set_new(j, "version", json_integer(HISTORY_VERSION));
    json_object_set_new(j, "last_success", json_integer(h->last_success));
    json_object_set_new(j, "load_jobs", jobs);
    json_object_set_new(j, "runs", runs);
    text = datos_json_dump(p, j, &len);
    if (!text) {
        *why = "cannot encode the run history";
        return APR_ENOMEM;
    }
    rv = datos_file_replace(p, path, text, len,
                            APR_FPROT_UREAD | APR_FPROT_UWRITE
                                | APR_FPROT_GREAD);
    if (rv != APR_SUCCESS)
        *why = apr_psprintf(p, "cannot write %s: %s", path,
                            apr_strerror(rv, buf, sizeof(buf)));
    return rv;
}
