/* datos_load_client.c - BigQuery load jobs over HTTP: tables.get, jobs.insert
 * (multipart or resumable upload), jobs.get. The data is sent from the
 * caller's buffer as body segments, never copied. */
#include <string.h>
#include <strings.h>
#include <apr_general.h>
#include <apr_strings.h>

#include "datos_backoff.h"
#include "datos_load_client.h"
#include "datos_google.h"
#include "datos_ids.h"
#include "datos_json.h"

#define API_SUFFIX "/bigquery/v2"
/* Job resources and table descriptions are small; errors[] is bounded. */
#define ANSWER_MAX ((apr_size_t)8 * 1024 * 1024)
/* A resumable upload gives up after this many failures in a row. */
#define RESUME_FAILURES_MAX 10
#define RESUME_WAIT_FIRST   apr_time_from_msec(100)
#define RESUME_WAIT_MAX     apr_time_from_sec(8)
/* Answers that move the upload no further before it is abandoned. */
#define STALLS_MAX 3

struct datos_load_client_t {
    apr_pool_t *pool;
    const char *base;   /* ...API_SUFFIX */
    const char *upload; /* root + /upload/bigquery/v2 */
    const char *origin; /* scheme://authority/ of the upload URL */
    const char *project;
    datos_table_ref_t table;  /* project filled in */
    const char *location;     /* configured, else NULL */
    char table_location[128]; /* the last tables.get's, "" until asked */
    datos_http_t *http;
    datos_creds_t *creds;
    int allow_insecure;
    apr_size_t resumable_above;
    apr_size_t chunk_size;
};

static apr_status_t conf_error(apr_pool_t *p, datos_err_t *err, const char *msg)
{
    return datos_err_set(err, p, DATOS_ECONFIG, 0, NULL,
                         "BigQuery load client: %s", msg);
}

apr_status_t datos_load_client_create(apr_pool_t *p,
                                      const datos_load_client_conf_t *conf,
                                      datos_load_client_t **out,
                                      datos_err_t *err)
{
    apr_status_t rv = DATOS_ECONFIG;
    datos_load_client_t *bl;
    char *base;
    apr_size_t n, k;
    const char *why = NULL, *tproject;

    if (!conf->base_url || !*conf->base_url) {
        conf_error(p, err, "no BigQuery URL");
        goto leave;
    }
    base = apr_pstrdup(p, conf->base_url);
    n = strlen(base);
    while (n > 0 && base[n - 1] == '/') {
        base[--n] = '\0';
    }
    k = strlen(API_SUFFIX);
    if (n <= k || strcmp(base + n - k, API_SUFFIX)) {
        conf_error(
            p, err,
            apr_psprintf(p,
                         "the BigQuery URL %s does not end in " API_SUFFIX
                         " (uploads go to its root + "
                         "/upload" API_SUFFIX ")",
                         datos_err_text(p, base, n, 200)));
        goto leave;
    }
    if (!conf->project || (why = datos_project_id_check(p, conf->project))) {
        conf_error(p, err, conf->project ? why : "no project to run jobs in");
        goto leave;
    }
    tproject = conf->table.project ? conf->table.project : conf->project;
    if ((why = datos_project_id_check(p, tproject))) {
        conf_error(p, err, why);
        goto leave;
    }
    if (!conf->table.dataset || !*conf->table.dataset || !conf->table.table
        || !*conf->table.table) {
        conf_error(p, err, "no dataset and table to load into");
        goto leave;
    }
    if (conf->chunk_size % DATOS_LOAD_CLIENT_CHUNK_UNIT) {
        conf_error(p, err,
                   apr_psprintf(p,
                                "the chunk size %" APR_SIZE_T_FMT
                                " is not a multiple of 256 KiB",
                                conf->chunk_size));
        goto leave;
    }
    rv = datos_http_check_url(p, base, conf->http.allow_insecure, 0, err);
    if (rv != APR_SUCCESS) {
        goto leave;
    }

    bl = apr_pcalloc(p, sizeof(*bl));
    bl->pool = p;
    bl->base = base;
    bl->upload = apr_pstrcat(p, apr_pstrmemdup(p, base, n - k),
                             "/upload" API_SUFFIX, NULL);
    {
        const char *a = strstr(bl->upload, "://") + 3;
        bl->origin = apr_pstrmemdup(p, bl->upload,
                                    (apr_size_t)(a - bl->upload)
                                        + strcspn(a, "/?#") + 1);
    }
    bl->project = apr_pstrdup(p, conf->project);
    bl->table.project = apr_pstrdup(p, tproject);
    bl->table.dataset = apr_pstrdup(p, conf->table.dataset);
    bl->table.table = apr_pstrdup(p, conf->table.table);
    bl->location = conf->location && *conf->location
                       ? apr_pstrdup(p, conf->location)
                       : NULL;
    bl->creds = conf->creds;
    bl->allow_insecure = conf->http.allow_insecure;
    bl->resumable_above = conf->resumable_above
                              ? conf->resumable_above
                              : DATOS_LOAD_CLIENT_RESUMABLE_ABOVE;
    bl->chunk_size =
        conf->chunk_size ? conf->chunk_size : DATOS_LOAD_CLIENT_CHUNK_SIZE;
    rv = datos_http_create(p, &conf->http, &bl->http, err);
    if (rv != APR_SUCCESS) {
        goto leave;
    }
    *out = bl;

leave:
    return rv;
}

/* ------------------------------------------------------------ tables.get */

apr_status_t datos_load_client_table(datos_load_client_t *bl, apr_pool_t *p,
                                     apr_time_t deadline,
                                     datos_table_info_t *info, datos_err_t *err)
{
    apr_status_t rv;
    datos_google_op_t op;
    datos_google_call_t call;
    datos_http_resp_t *resp;

    datos_google_op_init(&op, p, bl->http, bl->creds, deadline, err);
    memset(&call, 0, sizeof(call));
    call.what = "tables.get";
    call.url = apr_pstrcat(
        p, bl->base, "/projects/", datos_http_urlencode(p, bl->table.project),
        "/datasets/", datos_http_urlencode(p, bl->table.dataset), "/tables/",
        datos_http_urlencode(p, bl->table.table), NULL);
    call.max_response = ANSWER_MAX;
    rv = datos_google_call(&op, p, &call, &resp);
    if (rv != APR_SUCCESS) {
        goto leave;
    }
    rv = datos_table_parse_info(p, resp->body, resp->body_len, info, err);
    if (rv == APR_SUCCESS) {
        /* parse_table takes only locations shorter than the buffer */
        apr_cpystrn(bl->table_location, info->location,
                    sizeof(bl->table_location));
    }

leave:
    datos_google_op_done(&op);
    return rv;
}

/* ------------------------------------------------------------ jobs.insert */

/* The location a job is named with: the caller's, the configured one, the
 * table's from tables.get, or none. */
static const char *job_location(const datos_load_client_t *bl,
                                const char *given)
{
    if (given) {
        return given;
    }
    if (bl->location) {
        return bl->location;
    }
    return bl->table_location[0] ? bl->table_location : NULL;
}

/* The job's answer, named after the call when it cannot be read. */
static apr_status_t read_job(apr_pool_t *p, const char *what,
                             const datos_http_resp_t *resp,
                             datos_loadjob_t **job, datos_err_t *err)
{
    apr_status_t rv =
        datos_loadjob_parse(p, resp->body, resp->body_len, job, err);
    if (rv != APR_SUCCESS) {
        if (err) {
            err->http_status = resp->status;
        }
        datos_err_prefix(err, p, "%s: ", what);
    }
    return rv;
}

/* A call whose answer is a job. */
static apr_status_t call_job(datos_google_op_t *op, apr_pool_t *p,
                             const datos_google_call_t *call,
                             datos_loadjob_t **job, datos_err_t *err)
{
    datos_http_resp_t *resp;
    apr_status_t rv = datos_google_call(op, p, call, &resp);

    if (rv == APR_SUCCESS) {
        rv = read_job(p, call->what, resp, job, err);
    }
    return rv;
}

/* A boundary that does not occur in the data: 128 random bits make a
 * clash unlikely, and the data is searched to make it impossible. */
static apr_status_t pick_boundary(apr_pool_t *p, const char *data,
                                  apr_size_t len, const char **out,
                                  datos_err_t *err)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char r[16];
    char b[6 + 32 + 1];
    int tries, i;

    memcpy(b, "datos_", 6);
    for (tries = 0; tries < 8; tries++) {
        if (apr_generate_random_bytes(r, sizeof(r)) != APR_SUCCESS) {
            break;
        }
        for (i = 0; i < 16; i++) {
            b[6 + 2 * i] = hex[r[i] >> 4];
            b[7 + 2 * i] = hex[r[i] & 15];
        }
        b[sizeof(b) - 1] = '\0';
        if (!len || !memmem(data, len, b, sizeof(b) - 1)) {
            *out = apr_pstrdup(p, b);
            return APR_SUCCESS;
        }
    }
    return datos_err_set(err, p, APR_EGENERAL, 0, NULL,
                         "jobs.insert: no multipart boundary absent from the "
                         "data");
}

/* The POST that starts an insert of the given uploadType. */
static void insert_call(const datos_load_client_t *bl, apr_pool_t *p,
                        const char *upload_type, datos_google_call_t *call)
{
    memset(call, 0, sizeof(*call));
    call->what = "jobs.insert";
    call->method = "POST";
    call->url = apr_pstrcat(p, bl->upload, "/projects/",
                            datos_http_urlencode(p, bl->project),
                            "/jobs?uploadType=", upload_type, NULL);
    call->max_response = ANSWER_MAX;
}

/* What comes before a part of a multipart body: its boundary line (after
 * the CRLF that ends the part before, unless first) and its header. */
static const char *part_head(apr_pool_t *p, const char *boundary,
                             const char *type, int first)
{
    return apr_pstrcat(p, first ? "" : "\r\n", "--", boundary,
                       "\r\nContent-Type: ", type, "\r\n\r\n", NULL);
}

static apr_status_t insert_multipart(datos_load_client_t *bl,
                                     datos_google_op_t *op, apr_pool_t *p,
                                     const char *resource, apr_size_t rlen,
                                     const char *data, apr_size_t len,
                                     datos_loadjob_t **job, datos_err_t *err)
{
    apr_status_t rv;
    datos_google_call_t call;
    datos_http_seg_t segs[5];
    const char *boundary = NULL;
    int i;

    rv = pick_boundary(p, data, len, &boundary, err);
    if (rv != APR_SUCCESS) {
        goto leave;
    }
    /* RFC 2046: CRLF line ends, the Job first, the data second. */
    segs[0].data = part_head(p, boundary, "application/json; charset=UTF-8", 1);
    segs[1].data = resource;
    segs[2].data = part_head(p, boundary, "application/octet-stream", 0);
    segs[3].data = data;
    segs[4].data = apr_pstrcat(p, "\r\n--", boundary, "--\r\n", NULL);
    for (i = 0; i < 5; i++) {
        segs[i].len = i == 1 ? rlen : i == 3 ? len : strlen(segs[i].data);
    }
    insert_call(bl, p, "multipart", &call);
    call.content_type =
        apr_pstrcat(p, "multipart/related; boundary=", boundary, NULL);
    call.segs = segs;
    call.nsegs = 5;
    rv = call_job(op, p, &call, job, err);

leave:
    return rv;
}

/* "bytes=0-N" -> N + 1; 0 without a Range (nothing stored); -1 when the
 * header is not of that form. */
static apr_int64_t range_next(const datos_http_resp_t *resp)
{
    const char *r = apr_table_get(resp->headers, "Range");
    apr_int64_t n = 0;
    const char *c;

    if (!r) {
        return 0;
    }
    if (strncasecmp(r, "bytes=0-", 8) || !r[8]) {
        return -1;
    }
    for (c = r + 8; *c; c++) {
        if (*c < '0' || *c > '9' || n > APR_INT64_C(1) << 50) {
            return -1;
        }
        n = n * 10 + (*c - '0');
    }
    return n + 1;
}

/* The session URI carries the token's next requests: only on the host the
 * upload was started on, and under the transport rule. */
static apr_status_t session_check(datos_load_client_t *bl, apr_pool_t *p,
                                  const char *uri, datos_err_t *err)
{
    apr_status_t rv;

    if (!uri || strncasecmp(uri, bl->origin, strlen(bl->origin))) {
        return datos_err_set(
            err, p, DATOS_EMALFORMED, 200, NULL,
            "jobs.insert: the resumable session URI %s is "
            "not on %s",
            uri ? datos_err_text(p, uri, strcspn(uri, "?#"), 200) : "(none)",
            bl->origin);
    }
    rv = datos_http_check_url(p, uri, bl->allow_insecure, 0, err);
    if (rv != APR_SUCCESS) {
        datos_err_prefix(err, p, "jobs.insert: session URI: ");
    }
    return rv;
}

/* One PUT of the upload: a chunk [from, to) of data, or (to == from) a
 * status probe. *next is where the server wants the next byte (-1 when
 * the upload is done and *job set). */
static apr_status_t put_chunk(datos_google_op_t *op, apr_pool_t *cp,
                              const char *session, const char *data,
                              apr_size_t len, apr_size_t from, apr_size_t to,
                              apr_int64_t *next, datos_loadjob_t **job,
                              apr_pool_t *p, datos_err_t *err)
{
    apr_status_t rv;
    datos_google_call_t call;
    datos_http_resp_t *resp;
    datos_http_seg_t seg;
    const char *range;

    if (to > from) {
        range = apr_psprintf(
            cp,
            "Content-Range: bytes %" APR_SIZE_T_FMT "-%" APR_SIZE_T_FMT "/%s",
            from, to - 1,
            to == len ? apr_psprintf(cp, "%" APR_SIZE_T_FMT, len) : "*");
    }
    else {
        range =
            apr_psprintf(cp, "Content-Range: bytes */%" APR_SIZE_T_FMT, len);
    }
    memset(&call, 0, sizeof(call));
    call.what = "jobs.insert";
    call.method = "PUT";
    call.url = session;
    call.headers = apr_array_make(cp, 1, sizeof(const char *));
    APR_ARRAY_PUSH(call.headers, const char *) = range;
    if (to > from) {
        seg.data = data + from;
        seg.len = to - from;
        call.segs = &seg;
        call.nsegs = 1;
        call.content_type = "application/octet-stream";
    }
    call.accept[0] = 308;
    call.max_response = ANSWER_MAX;
    rv = datos_google_call(op, cp, &call, &resp);
    if (rv != APR_SUCCESS) {
        goto leave;
    }
    if (resp->status == 308) {
        *next = range_next(resp);
        if (*next < 0 || *next > (apr_int64_t)len) {
            const char *range = apr_table_get(resp->headers, "Range");
            rv = datos_err_set(err, cp, DATOS_EMALFORMED, 308, NULL,
                               "jobs.insert: the upload answered 308 with "
                               "Range %s for %" APR_SIZE_T_FMT " bytes",
                               datos_err_text(cp, range, strlen(range), 64),
                               len);
        }
        goto leave;
    }
    *next = -1;
    rv = read_job(p, call.what, resp, job, err);

leave:
    return rv;
}

static apr_status_t insert_resumable(datos_load_client_t *bl,
                                     datos_google_op_t *op, apr_pool_t *p,
                                     const char *resource, apr_size_t rlen,
                                     const char *data, apr_size_t len,
                                     datos_loadjob_t **job, datos_err_t *err)
{
    apr_status_t rv;
    datos_google_call_t call;
    datos_http_resp_t *resp;
    datos_backoff_t bo;
    apr_pool_t *cp = NULL;
    const char *session;
    apr_size_t offset = 0;
    apr_int64_t next;
    int failures = 0, stalls = 0, probe = 0, rounds;

    insert_call(bl, p, "resumable", &call);
    call.body = resource;
    call.body_len = rlen;
    call.content_type = "application/json; charset=UTF-8";
    call.headers = apr_array_make(p, 2, sizeof(const char *));
    APR_ARRAY_PUSH(call.headers, const char *) =
        "X-Upload-Content-Type: application/octet-stream";
    APR_ARRAY_PUSH(call.headers, const char *) =
        apr_psprintf(p, "X-Upload-Content-Length: %" APR_SIZE_T_FMT, len);
    rv = datos_google_call(op, p, &call, &resp);
    if (rv != APR_SUCCESS) {
        goto leave;
    }
    session = apr_table_get(resp->headers, "Location");
    rv = session_check(bl, p, session, err);
    if (rv != APR_SUCCESS) {
        goto leave;
    }
    session = apr_pstrdup(p, session);

    datos_backoff_init(&bo, RESUME_WAIT_FIRST, RESUME_WAIT_MAX, op->deadline);
    /* Every round moves the upload on, or is a failure or a stall, each
     * bounded; rounds bounds what a server alternating the two can do. */
    rounds = 4 * (len / bl->chunk_size + 1) + 4 * RESUME_FAILURES_MAX;
    for (;;) {
        apr_size_t to;
        apr_interval_time_t wait;

        if (rounds-- <= 0) {
            rv = datos_err_set(err, p, DATOS_EMALFORMED, 308, NULL,
                               "jobs.insert: the upload of %" APR_SIZE_T_FMT
                               " bytes does not end",
                               len);
            goto leave;
        }
        if (cp) {
            apr_pool_clear(cp);
        }
        else {
            apr_pool_create(&cp, p);
        }
        /* A probe (no bytes, "bytes * / len") asks where the upload stands;
         * once the server holds every byte it also ends it. */
        to = probe || offset == len          ? offset
             : offset + bl->chunk_size < len ? offset + bl->chunk_size
                                             : len;
        rv = put_chunk(op, cp, session, data, len, offset, to, &next, job, p,
                       err);
        if (rv != APR_SUCCESS) {
            if (++failures >= RESUME_FAILURES_MAX
                || !datos_backoff_next(&bo, rv, err, apr_time_now(), &wait)) {
                goto leave;
            }
            apr_sleep(wait);
            probe = 1;
            continue;
        }
        failures = 0;
        probe = 0;
        if (next < 0) {
            break; /* done: *job is set */
        }
        /* The server keeps whole 256 KiB units of a chunk and may ask for
         * bytes again; answers that keep it where it is end the upload. */
        if ((apr_size_t)next > offset) {
            stalls = 0;
        }
        else if (++stalls > STALLS_MAX) {
            rv = datos_err_set(
                err, p, DATOS_EMALFORMED, 308, NULL,
                "jobs.insert: the upload stays at byte %" APR_SIZE_T_FMT
                " of %" APR_SIZE_T_FMT,
                (apr_size_t)next, len);
            goto leave;
        }
        offset = (apr_size_t)next;
    }

leave:
    if (cp) {
        apr_pool_destroy(cp);
    }
    return rv;
}

apr_status_t datos_load_client_insert(datos_load_client_t *bl, apr_pool_t *p,
                                      apr_time_t deadline, const char *job_id,
                                      const char *location, const char *data,
                                      apr_size_t len, datos_loadjob_t **job,
                                      datos_err_t *err)
{
    apr_status_t rv;
    datos_google_op_t op;
    datos_loadjob_conf_t lc;
    const char *resource;
    apr_size_t rlen;

    datos_google_op_init(&op, p, bl->http, bl->creds, deadline, err);
    memset(&lc, 0, sizeof(lc));
    lc.project = bl->project;
    lc.job_id = job_id;
    lc.location = job_location(bl, location);
    lc.table_project = bl->table.project;
    lc.dataset = bl->table.dataset;
    lc.table = bl->table.table;
    rv = datos_loadjob_resource(p, &lc, &resource, &rlen, err);
    if (rv != APR_SUCCESS) {
        datos_err_prefix(err, p, "jobs.insert: ");
        goto leave;
    }
    if (!data && len) {
        rv = datos_err_set(err, p, APR_EINVAL, 0, NULL, "jobs.insert: no data");
        goto leave;
    }
    if (len <= bl->resumable_above) {
        rv = insert_multipart(bl, &op, p, resource, rlen, data, len, job, err);
    }
    else {
        rv = insert_resumable(bl, &op, p, resource, rlen, data, len, job, err);
    }

leave:
    datos_google_op_done(&op);
    return rv;
}

/* ------------------------------------------------------------ jobs.get */

apr_status_t datos_load_client_get(datos_load_client_t *bl, apr_pool_t *p,
                                   apr_time_t deadline, const char *job_id,
                                   const char *location, datos_loadjob_t **job,
                                   datos_err_t *err)
{
    apr_status_t rv;
    datos_google_op_t op;
    datos_google_call_t call;

    datos_google_op_init(&op, p, bl->http, bl->creds, deadline, err);
    if (!datos_loadjob_id_valid(job_id)) {
        rv = datos_err_set(err, p, APR_EINVAL, 0, NULL,
                           "jobs.get: job id is not 1..1024 of [A-Za-z0-9_-]");
        goto leave;
    }
    location = job_location(bl, location);
    memset(&call, 0, sizeof(call));
    call.what = "jobs.get";
    call.url = apr_pstrcat(
        p, bl->base, "/projects/", datos_http_urlencode(p, bl->project),
        "/jobs/", job_id, location ? "?location=" : "",
        location ? datos_http_urlencode(p, location) : "", NULL);
    call.max_response = ANSWER_MAX;
    rv = call_job(&op, p, &call, job, err);

leave:
    datos_google_op_done(&op);
    return rv;
}
