/* loader_journal.c - load jobs that may be in flight, on disk.
 *
 * Before jobs.insert the loader writes (and fsyncs) the job's id and its
 * message ids; once the job is DONE without error it is written again as
 * committed, then the messages are acked, and the entry goes. A run that
 * finds entries (the last one was killed, stopped or cut off between
 * insert and ack) asks BigQuery about each job before pulling: a job that
 * committed has its messages acked on sight when Pub/Sub redelivers them,
 * so a crash between commit and ack never loads a row twice. Such an
 * entry is kept until some run has acked every one of its messages (it
 * is rewritten with those still awaited), or until they can no longer
 * come back: its lease, Pub/Sub's longest retry back-off and a margin
 * after the job was first seen committed (loader_load.c).
 *
 * One file per load batch (named by the batch: its job id without the
 * generation), rewritten as the batch moves to a new generation:
 *   {"version":1,"job_id":"datos_<hash>_g0","generation":0,
 *    "location":"US","table":"p.d.t","committed":false,
 *    "written":1705240800000000,"committed_at":0,"lease":600000000,
 *    "message_ids":["1","2",...]}
 * (committed_at and lease may be absent: entries of earlier versions.)
 * A file that is not such an entry is moved aside, reported and never
 * trusted: acking on its word could lose messages.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <apr_strings.h>
#include <apr_file_io.h>

#include "datos_file.h"
#include "datos_json.h"
#include "loader.h"

#define JOURNAL_VERSION 1
#define ENTRY_MAX       ((apr_off_t)512 * 1024 * 1024)

static const char *errtext(apr_pool_t *p, apr_status_t rv)
{
    char buf[256];
    return apr_pstrdup(p, apr_strerror(rv, buf, sizeof(buf)));
}

apr_status_t loader_journal_open(apr_pool_t *p, const char *state_dir,
                                 const char **dir, const char **why)
{
    apr_status_t rv;

    *dir = apr_pstrcat(p, state_dir, "/journal", NULL);
    rv = apr_dir_make_recursive(
        *dir, APR_FPROT_UREAD | APR_FPROT_UWRITE | APR_FPROT_UEXECUTE, p);
    if (rv != APR_SUCCESS && !APR_STATUS_IS_EEXIST(rv))
        *why = apr_psprintf(p, "state_dir: cannot create %s: %s", *dir,
                            errtext(p, rv));
    else
        rv = APR_SUCCESS;
    return rv;
}

/* fsync of the directory makes the rename itself durable. */
static apr_status_t sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    apr_status_t rv = APR_SUCCESS;

    if (fd < 0)
        return errno;
    if (fsync(fd) != 0)
        rv = errno;
    close(fd);
    return rv;
}

apr_status_t loader_journal_write(apr_pool_t *p, const char *dir,
                                  const char *batch_key,
                                  loader_journal_entry_t *e, const char **why)
{
    json_t *j = datos_json_bind(p, json_object()), *ids;
    const char *text;
    apr_status_t rv;
    apr_size_t len;
    int i;

    e->path = apr_pstrcat(p, dir, "/", batch_key, ".json", NULL);
    ids = json_array();
    for (i = 0; i < e->message_ids->nelts; i++)
        json_array_append_new(
            ids, json_string(APR_ARRAY_IDX(e->message_ids, i, const char *)));
    json_object_set_new(j, "version", json_integer(JOURNAL_VERSION));
    json_object_set_new(j, "job_id", json_string(e->job_id));
    json_object_set_new(j, "generation", json_integer(e->generation));
    json_object_set_new(j, "location", json_string(e->location));
    json_object_set_new(j, "table", json_string(e->table));
    json_object_set_new(j, "committed", json_boolean(e->committed));
    json_object_set_new(j, "written", json_integer(e->written));
    json_object_set_new(j, "committed_at", json_integer(e->committed_at));
    json_object_set_new(j, "lease", json_integer(e->lease));
    json_object_set_new(j, "message_ids", ids);
    text = datos_json_dump(p, j, &len);
    if (!text) {
        *why = "cannot encode a journal entry";
        return APR_ENOMEM;
    }
    rv = datos_file_replace(p, e->path, text, len,
                            APR_FPROT_UREAD | APR_FPROT_UWRITE);
    if (rv == APR_SUCCESS)
        rv = sync_dir(dir);
    if (rv != APR_SUCCESS) {
        *why = apr_psprintf(p, "cannot write journal entry %s: %s", e->path,
                            errtext(p, rv));
    }
    return rv;
}

static const char *parse_entry(apr_pool_t *p, const char *path,
                               const char *text, apr_size_t len,
                               loader_journal_entry_t **out)
{
    loader_journal_entry_t *e;
    json_t *j = NULL, *ids, *v;
    datos_err_t err;
    apr_int64_t n;
    size_t i;

    datos_err_clear(&err);
    if (datos_json_parse(p, text, len, 1, &j, &err) != APR_SUCCESS)
        return apr_psprintf(p, "not JSON: %s", err.message);
    if (!json_is_object(j))
        return "not a JSON object";
    if (datos_json_int64(j, "version", &n) != APR_SUCCESS
        || n != JOURNAL_VERSION)
        return "not a version 1 entry";
    e = apr_pcalloc(p, sizeof(*e));
    e->path = apr_pstrdup(p, path);
    e->job_id = datos_json_str(j, "job_id");
    e->location = datos_json_str(j, "location");
    e->table = datos_json_str(j, "table");
    if (!e->job_id || !*e->job_id || !e->location || !e->table)
        return "job_id, location or table missing";
    e->job_id = apr_pstrdup(p, e->job_id);
    e->location = apr_pstrdup(p, e->location);
    e->table = apr_pstrdup(p, e->table);
    if (datos_json_int64(j, "generation", &n) != APR_SUCCESS || n < 0
        || n > 1000000)
        return "generation missing or out of range";
    e->generation = (int)n;
    v = json_object_get(j, "committed");
    if (!json_is_boolean(v))
        return "committed missing";
    e->committed = json_is_true(v);
    if (datos_json_int64(j, "written", &n) != APR_SUCCESS)
        return "written missing";
    e->written = (apr_time_t)n;
    v = json_object_get(j, "committed_at");
    if (v && (datos_json_int64(j, "committed_at", &n) != APR_SUCCESS || n < 0))
        return "committed_at is not a time";
    e->committed_at = v ? (apr_time_t)n : 0;
    v = json_object_get(j, "lease");
    if (v && (datos_json_int64(j, "lease", &n) != APR_SUCCESS || n < 0))
        return "lease is not a duration";
    e->lease = v ? (apr_interval_time_t)n : 0;
    ids = datos_json_arr(j, "message_ids");
    if (!ids || !json_array_size(ids))
        return "message_ids missing or empty";
    e->message_ids =
        apr_array_make(p, (int)json_array_size(ids), sizeof(const char *));
    for (i = 0; i < json_array_size(ids); i++) {
        v = json_array_get(ids, i);
        if (!json_is_string(v) || !json_string_length(v))
            return apr_psprintf(p, "message id %d is not a string", (int)i);
        APR_ARRAY_PUSH(e->message_ids, const char *) =
            apr_pstrdup(p, json_string_value(v));
    }
    *out = e;
    return NULL;
}

/* move_aside: a run's listing (a bad file is renamed *.corrupt); --status
 * only looks. */
static apr_status_t list(apr_pool_t *p, const char *dir, int move_aside,
                         apr_array_header_t **entries,
                         apr_array_header_t **corrupt, const char **why)
{
    apr_dir_t *d = NULL;
    apr_finfo_t fi;
    apr_status_t rv;

    *entries = apr_array_make(p, 4, sizeof(loader_journal_entry_t *));
    *corrupt = apr_array_make(p, 1, sizeof(const char *));
    rv = apr_dir_open(&d, dir, p);
    if (rv != APR_SUCCESS) {
        *why =
            apr_psprintf(p, "cannot read journal %s: %s", dir, errtext(p, rv));
        return rv;
    }
    while (
        apr_dir_read(&fi, APR_FINFO_NAME | APR_FINFO_TYPE | APR_FINFO_SIZE, d)
        == APR_SUCCESS) {
        const char *path, *problem = NULL;
        loader_journal_entry_t *e = NULL;
        apr_size_t n = strlen(fi.name), got = 0;
        apr_file_t *f = NULL;
        char *text;

        if (fi.filetype != APR_REG || n < 6 || strcmp(fi.name + n - 5, ".json"))
            continue;
        path = apr_pstrcat(p, dir, "/", fi.name, NULL);
        if (fi.size <= 0 || fi.size > ENTRY_MAX)
            problem = "empty or too large";
        else if (apr_file_open(&f, path, APR_FOPEN_READ, 0, p) != APR_SUCCESS)
            problem = "unreadable";
        else {
            text = apr_palloc(p, (apr_size_t)fi.size);
            if (apr_file_read_full(f, text, (apr_size_t)fi.size, &got)
                != APR_SUCCESS)
                problem = "unreadable";
            else
                problem = parse_entry(p, path, text, got, &e);
            apr_file_close(f);
        }
        if (problem && !move_aside) {
            APR_ARRAY_PUSH(*corrupt, const char *) =
                apr_psprintf(p, "%s (%s)", path, problem);
            continue;
        }
        if (problem) {
            const char *aside = apr_pstrcat(p, path, ".corrupt", NULL);
            apr_file_rename(path, aside, p);
            APR_ARRAY_PUSH(*corrupt, const char *) =
                apr_psprintf(p, "%s (%s; moved to %s)", path, problem, aside);
            continue;
        }
        APR_ARRAY_PUSH(*entries, loader_journal_entry_t *) = e;
    }
    apr_dir_close(d);
    return APR_SUCCESS;
}

apr_status_t loader_journal_list(apr_pool_t *p, const char *dir,
                                 apr_array_header_t **entries,
                                 apr_array_header_t **corrupt, const char **why)
{
    return list(p, dir, 1, entries, corrupt, why);
}

apr_status_t loader_journal_peek(apr_pool_t *p, const char *dir,
                                 apr_array_header_t **entries,
                                 apr_array_header_t **bad, const char **why)
{
    return list(p, dir, 0, entries, bad, why);
}

apr_status_t loader_journal_remove(apr_pool_t *p,
                                   const loader_journal_entry_t *e)
{
    apr_status_t rv = apr_file_remove(e->path, p);

    return APR_STATUS_IS_ENOENT(rv) ? APR_SUCCESS : rv;
}
