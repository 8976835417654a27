/* datos_loadjob.c - naming, describing and reading BigQuery load jobs. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <apr_strings.h>
#include <openssl/evp.h>

#include "datos_json.h"
#include "datos_loadjob.h"

/* ------------------------------------------------------------------ job id */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int hash_part(EVP_MD_CTX *ctx, const char *s, apr_size_t n)
{
    unsigned char len[8];
    apr_uint64_t v = n;
    int i;

    for (i = 7; i >= 0; i--) {
        len[i] = (unsigned char)(v & 0xFF);
        v >>= 8;
    }
    return EVP_DigestUpdate(ctx, len, 8) == 1
           && EVP_DigestUpdate(ctx, s, n) == 1;
}

apr_status_t datos_loadjob_id(apr_pool_t *p, const char *table,
                              const char *const *message_ids, int n,
                              int generation, const char **job_id)
{
    const char *key;
    apr_status_t rv;

    if (generation < 0) {
        return APR_EINVAL;
    }
    rv = datos_loadjob_key(p, table, message_ids, n, &key);
    if (rv == APR_SUCCESS) {
        *job_id = datos_loadjob_generation(p, key, generation);
    }
    return rv;
}

const char *datos_loadjob_generation(apr_pool_t *p, const char *key,
                                     int generation)
{
    return apr_psprintf(p, "%s_g%d", key, generation);
}

apr_status_t datos_loadjob_key(apr_pool_t *p, const char *table,
                               const char *const *message_ids, int n,
                               const char **key)
{
    static const char hex[] = "0123456789abcdef";
    static const char domain[] = "datos-load-v1";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char digest[65];
    const char **ids;
    EVP_MD_CTX *ctx = NULL;
    apr_status_t rv = APR_SUCCESS;
    int i, ok;

    if (!table || !*table || !message_ids || n < 1) {
        rv = APR_EINVAL;
        goto leave;
    }
    ids = apr_palloc(p, sizeof(*ids) * (apr_size_t)n);
    for (i = 0; i < n; i++) {
        if (!message_ids[i] || !*message_ids[i]) {
            rv = APR_EINVAL;
            goto leave;
        }
        ids[i] = message_ids[i];
    }
    qsort(ids, (size_t)n, sizeof(*ids), cmp_str);

    ctx = EVP_MD_CTX_new();
    ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1
         && hash_part(ctx, domain, sizeof(domain) - 1)
         && hash_part(ctx, table, strlen(table));
    for (i = 0; ok && i < n; i++) {
        if (i == 0 || strcmp(ids[i - 1], ids[i])) {
            ok = hash_part(ctx, ids[i], strlen(ids[i]));
        }
    }
    ok = ok && EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen == 32;
    if (!ok) {
        rv = APR_EGENERAL;
        goto leave;
    }
    for (i = 0; i < 32; i++) {
        digest[2 * i] = hex[md[i] >> 4];
        digest[2 * i + 1] = hex[md[i] & 15];
    }
    digest[64] = '\0';
    *key = apr_psprintf(p, "datos_%s", digest);

leave:
    if (ctx) {
        EVP_MD_CTX_free(ctx);
    }
    return rv;
}

int datos_loadjob_id_valid(const char *id)
{
    apr_size_t i;

    if (!id || !*id) {
        return 0;
    }
    for (i = 0; id[i]; i++) {
        char c = id[i];
        if (i >= DATOS_JOB_ID_MAX
            || !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
                 || (c >= '0' && c <= '9') || c == '_' || c == '-')) {
            return 0;
        }
    }
    return 1;
}

/* ------------------------------------------------------------------ resource */

/* json_string refuses text that is not UTF-8: NULL there is a bad name. */
static int set_str(json_t *obj, const char *key, const char *value)
{
    json_t *s = value ? json_string(value) : NULL;
    return s && json_object_set_new(obj, key, s) == 0;
}

apr_status_t datos_loadjob_resource(apr_pool_t *p,
                                    const datos_loadjob_conf_t *c,
                                    const char **json, apr_size_t *len,
                                    datos_err_t *err)
{
    json_t *job, *ref, *conf, *load, *dest;
    apr_status_t rv = APR_SUCCESS;
    const char *out;
    int ok;

    if (!c->project || !*c->project || !c->dataset || !*c->dataset || !c->table
        || !*c->table) {
        rv = datos_err_set(err, p, APR_EINVAL, 0, NULL,
                           "a load job needs a project, a dataset and a table");
        goto leave;
    }
    if (!datos_loadjob_id_valid(c->job_id)) {
        rv = datos_err_set(err, p, APR_EINVAL, 0, NULL,
                           "job id is not 1..1024 of [A-Za-z0-9_-]");
        goto leave;
    }
    job = datos_json_bind(p, json_object());
    ref = json_object();
    conf = json_object();
    load = json_object();
    dest = json_object();
    ok = job && ref && conf && load && dest
         && json_object_set_new(job, "jobReference", ref) == 0
         && json_object_set_new(job, "configuration", conf) == 0
         && json_object_set_new(conf, "load", load) == 0
         && json_object_set_new(load, "destinationTable", dest) == 0;
    if (!ok) {
        json_decref(ref);
        json_decref(conf);
        json_decref(load);
        json_decref(dest);
        rv = datos_err_set(err, p, APR_ENOMEM, 0, NULL, "out of memory");
        goto leave;
    }
    ok = set_str(ref, "projectId", c->project)
         && set_str(ref, "jobId", c->job_id)
         && (!c->location || set_str(ref, "location", c->location))
         && set_str(dest, "projectId",
                    c->table_project ? c->table_project : c->project)
         && set_str(dest, "datasetId", c->dataset)
         && set_str(dest, "tableId", c->table)
         && set_str(load, "sourceFormat", "NEWLINE_DELIMITED_JSON")
         && set_str(load, "writeDisposition", "WRITE_APPEND")
         && set_str(load, "createDisposition", "CREATE_NEVER")
         && json_object_set_new(load, "maxBadRecords", json_integer(0)) == 0
         && json_object_set_new(load, "ignoreUnknownValues", json_false()) == 0;
    out = ok ? datos_json_dump(p, job, len) : NULL;
    if (!out) {
        rv = datos_err_set(err, p, APR_EINVAL, 0, NULL,
                           "a name of the load job is not UTF-8 text");
        goto leave;
    }
    *json = out;

leave:
    return rv;
}

/* ------------------------------------------------------------------ answers */

static const char *opt_str(apr_pool_t *p, const json_t *obj, const char *key,
                           int *bad)
{
    json_t *v = json_object_get(obj, key);

    if (v && !json_is_string(v)) {
        *bad = 1;
        return NULL;
    }
    return v ? apr_pstrmemdup(p, json_string_value(v), json_string_length(v))
             : NULL;
}

static apr_status_t read_error(apr_pool_t *p, const json_t *e,
                               datos_job_error_t *out)
{
    int bad = !json_is_object(e);

    if (!bad) {
        out->reason = opt_str(p, e, "reason", &bad);
        out->message = opt_str(p, e, "message", &bad);
        out->location = opt_str(p, e, "location", &bad);
    }
    return bad ? DATOS_EMALFORMED : APR_SUCCESS;
}

static apr_status_t stat_int(const json_t *load, const char *key,
                             apr_int64_t *out)
{
    apr_status_t rv = datos_json_int64(load, key, out);

    if (rv == APR_NOTFOUND) {
        *out = -1;
        rv = APR_SUCCESS;
    }
    return rv;
}

apr_status_t datos_loadjob_parse(apr_pool_t *p, const char *body,
                                 apr_size_t len, datos_loadjob_t **out,
                                 datos_err_t *err)
{
    const json_t *status, *ref, *list, *load;
    const char *state;
    datos_loadjob_t *job;
    apr_status_t rv;
    json_t *j;
    size_t i;
    int bad = 0;

    rv = datos_json_parse(p, body, len, 0, &j, err);
    if (rv != APR_SUCCESS) {
        goto leave;
    }
    if (!json_is_object(j)) {
        rv = datos_err_set(err, p, DATOS_EMALFORMED, 0, NULL,
                           "job answer is not a JSON object");
        goto leave;
    }
    job = apr_pcalloc(p, sizeof(*job));
    ref = datos_json_obj(j, "jobReference");
    if (ref) {
        job->project = opt_str(p, ref, "projectId", &bad);
        job->job_id = opt_str(p, ref, "jobId", &bad);
        job->location = opt_str(p, ref, "location", &bad);
    }
    status = datos_json_obj(j, "status");
    state = datos_json_str(status, "state");
    if (bad || !state) {
        rv = datos_err_set(err, p, DATOS_EMALFORMED, 0, NULL,
                           "job answer has no status.state");
        goto leave;
    }
    if (!strcmp(state, "PENDING")) {
        job->state = DATOS_JOB_PENDING;
    }
    else if (!strcmp(state, "RUNNING")) {
        job->state = DATOS_JOB_RUNNING;
    }
    else if (!strcmp(state, "DONE")) {
        job->state = DATOS_JOB_DONE;
    }
    else {
        rv = datos_err_set(err, p, DATOS_EMALFORMED, 0, NULL,
                           "job state %s is not PENDING, RUNNING or DONE",
                           datos_err_text(p, state, strlen(state), 64));
        goto leave;
    }
    if (json_object_get(status, "errorResult")) {
        datos_job_error_t *e = apr_pcalloc(p, sizeof(*e));
        if (read_error(p, json_object_get(status, "errorResult"), e)
            != APR_SUCCESS) {
            rv = datos_err_set(err, p, DATOS_EMALFORMED, 0, NULL,
                               "job answer: status.errorResult is malformed");
            goto leave;
        }
        job->error_result = e;
    }
    list = json_object_get(status, "errors");
    if (list && !json_is_array(list)) {
        rv = datos_err_set(err, p, DATOS_EMALFORMED, 0, NULL,
                           "job answer: status.errors is not an array");
        goto leave;
    }
    job->errors = apr_array_make(p, list ? (int)json_array_size(list) : 0,
                                 sizeof(datos_job_error_t));
    for (i = 0; list && i < json_array_size(list); i++) {
        if (read_error(p, json_array_get(list, i), apr_array_push(job->errors))
            != APR_SUCCESS) {
            rv = datos_err_set(err, p, DATOS_EMALFORMED, 0, NULL,
                               "job answer: status.errors[%lu] is malformed",
                               (unsigned long)i);
            goto leave;
        }
    }
    load = datos_json_obj(datos_json_obj(j, "statistics"), "load");
    if (stat_int(load, "outputRows", &job->output_rows) != APR_SUCCESS
        || stat_int(load, "badRecords", &job->bad_records) != APR_SUCCESS) {
        rv = datos_err_set(err, p, DATOS_EMALFORMED, 0, NULL,
                           "job answer: statistics.load counts are not int64");
        goto leave;
    }
    *out = job;

leave:
    return rv;
}

datos_job_outcome_t datos_loadjob_outcome(const datos_loadjob_t *job)
{
    static const char *const retry[] = {
        "backendError",    "internalError",    "rateLimitExceeded",
        "jobBackendError", "jobInternalError", "jobRateLimitExceeded",
    };
    const char *reason;
    size_t i;

    if (job->state != DATOS_JOB_DONE) {
        return DATOS_JOB_UNFINISHED;
    }
    if (!job->error_result) {
        return DATOS_JOB_SUCCEEDED;
    }
    reason = job->error_result->reason ? job->error_result->reason : "";
    for (i = 0; i < sizeof(retry) / sizeof(retry[0]); i++) {
        if (!strcmp(reason, retry[i])) {
            return DATOS_JOB_RETRY;
        }
    }
    if (!strcmp(reason, "invalid")) {
        return DATOS_JOB_INVALID;
    }
    if (!strcmp(reason, "quotaExceeded")) {
        return DATOS_JOB_QUOTA;
    }
    return DATOS_JOB_FAILED;
}

/* ------------------------------------------------------------------ rejected rows */

/* The decimal right after `word` (optional ':' and blanks), case
 * insensitive; -1 when absent or out of range. */
static apr_int64_t number_after(const char *s, const char *word)
{
    apr_size_t n = strlen(word);
    const char *at;

    for (at = s; at && *at; at++) {
        apr_int64_t v = 0;
        const char *d;

        if (strncasecmp(at, word, n)) {
            continue;
        }
        d = at + n;
        if (*d == ':') {
            d++;
        }
        while (*d == ' ') {
            d++;
        }
        if (*d < '0' || *d > '9') {
            continue;
        }
        for (; *d >= '0' && *d <= '9'; d++) {
            if (v > (APR_INT64_MAX - 9) / 10) {
                return -1;
            }
            v = v * 10 + (*d - '0');
        }
        return v;
    }
    return -1;
}

static void add_rejected(apr_array_header_t *rows, const datos_job_error_t *e)
{
    apr_int64_t pos =
        e->message ? number_after(e->message, "row starting at position") : -1;
    apr_int64_t line = -1;
    datos_rejected_t *r;

    if (e->location && !strncasecmp(e->location, "line", 4)) {
        line = number_after(e->location, "line");
        if (line < 1) {
            line = -1;
        }
    }
    if (pos < 0 && line < 0) {
        return;
    }
    r = apr_array_push(rows);
    r->position = pos;
    r->line = pos < 0 ? line : -1;
    r->message = e->message;
}

static int cmp_rejected(const void *a, const void *b)
{
    const datos_rejected_t *x = a, *y = b;

    if (x->position != y->position) {
        return x->position < y->position ? -1 : 1;
    }
    if (x->line != y->line) {
        return x->line < y->line ? -1 : 1;
    }
    return 0;
}

apr_status_t datos_loadjob_rejected(apr_pool_t *p, const datos_loadjob_t *job,
                                    apr_array_header_t **rows)
{
    apr_array_header_t *all = apr_array_make(p, 4, sizeof(datos_rejected_t));
    apr_array_header_t *out = apr_array_make(p, 4, sizeof(datos_rejected_t));
    int i;

    if (job->error_result) {
        add_rejected(all, job->error_result);
    }
    for (i = 0; job->errors && i < job->errors->nelts; i++) {
        add_rejected(all, &APR_ARRAY_IDX(job->errors, i, datos_job_error_t));
    }
    qsort(all->elts, (size_t)all->nelts, sizeof(datos_rejected_t),
          cmp_rejected);
    for (i = 0; i < all->nelts; i++) {
        const datos_rejected_t *r = &APR_ARRAY_IDX(all, i, datos_rejected_t);
        if (i
            && !cmp_rejected(r, &APR_ARRAY_IDX(all, i - 1, datos_rejected_t))) {
            continue;
        }
        *(datos_rejected_t *)apr_array_push(out) = *r;
    }
    *rows = out;
    return APR_SUCCESS;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return x < y ? -1 : x > y;
}

apr_status_t datos_loadjob_rejected_lines(apr_pool_t *p,
                                          const apr_array_header_t *rows,
                                          const datos_ndjson_t *nd,
                                          apr_array_header_t **lines)
{
    apr_array_header_t *all =
        apr_array_make(p, rows->nelts ? rows->nelts : 1, sizeof(int));
    apr_array_header_t *out =
        apr_array_make(p, rows->nelts ? rows->nelts : 1, sizeof(int));
    apr_status_t rv = APR_SUCCESS;
    int i, k;

    for (i = 0; i < rows->nelts; i++) {
        const datos_rejected_t *r = &APR_ARRAY_IDX(rows, i, datos_rejected_t);
        k = r->position >= 0
                ? datos_ndjson_line_at(nd, r->position)
                : (r->line >= 1 && r->line <= datos_ndjson_lines(nd)
                       ? (int)(r->line - 1)
                       : -1);
        if (k < 0) {
            rv = APR_NOTFOUND;
            goto leave;
        }
        APR_ARRAY_PUSH(all, int) = k;
    }
    qsort(all->elts, (size_t)all->nelts, sizeof(int), cmp_int);
    for (i = 0; i < all->nelts; i++) {
        k = APR_ARRAY_IDX(all, i, int);
        if (!i || k != APR_ARRAY_IDX(all, i - 1, int)) {
            APR_ARRAY_PUSH(out, int) = k;
        }
    }
    *lines = out;

leave:
    return rv;
}
