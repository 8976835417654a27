/* test_load_client.c - the BigQuery load client against the scripted loopback
 * server: tables.get, jobs.insert as a multipart upload (framing byte for
 * byte, a boundary absent from the data) and as a resumable upload (the
 * Content-Range sequence, 308 + Range, resuming after a failed chunk),
 * the 409 of a taken job id, and jobs.get. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dt_support.h"
#include "datos_load_client.h"

#define TOKEN \
    "{\"access_token\":\"load-tok\",\"expires_in\":3600,\"token_type\":\"Bearer\"}"
#define JOB_ID "datos_0123456789abcdef_g0"
#define LOC    "southamerica-east1"
#define TABLES_GET \
    "/bigquery/v2/projects/data-proj/datasets/latam_dataset/tables/datos"
#define JOB(state)                                                                               \
    "{\"kind\":\"bigquery#job\",\"jobReference\":{\"projectId\":\"my-proj\",\"jobId\":\"" JOB_ID \
    "\",\"location\":\"" LOC "\"},\"status\":{\"state\":\"" state "\"}}"
#define CHUNK (256 * 1024)

typedef struct {
    apr_pool_t *p;
    dt_server_t *srv;
    const char *base;
    datos_creds_t *creds;
    datos_load_client_conf_t conf;
} fx_t;

static int fx_setup(void **state)
{
    apr_pool_t *p;
    fx_t *fx;

    if (apr_pool_create(&p, NULL) != APR_SUCCESS) {
        return -1;
    }
    fx = apr_pcalloc(p, sizeof(*fx));
    fx->p = p;
    fx->srv = dt_server_start();
    fx->base = dt_server_url(fx->srv, p);
    fx->creds = dt_server_creds(p, fx->base, datos_scopes_bigquery_pubsub);
    fx->conf.base_url = apr_pstrcat(p, fx->base, "/bigquery/v2/", NULL);
    fx->conf.project = "my-proj";
    fx->conf.table.project = "data-proj";
    fx->conf.table.dataset = "latam_dataset";
    fx->conf.table.table = "datos";
    fx->conf.location = LOC;
    datos_http_opts_default(&fx->conf.http);
    fx->conf.creds = fx->creds;
    fx->conf.resumable_above = 600 * 1024;
    fx->conf.chunk_size = CHUNK;
    *state = fx;
    return 0;
}

static int fx_teardown(void **state)
{
    fx_t *fx = *state;
    dt_server_stop(fx->srv);
    apr_pool_destroy(fx->p);
    return 0;
}

#define FX_TEST(f) cmocka_unit_test_setup_teardown(f, fx_setup, fx_teardown)

static void show(const datos_err_t *err)
{
    if (getenv("DT_DEBUG") && err->message) {
        print_message("err: %s\n", err->message);
    }
}

static datos_load_client_t *client(fx_t *fx)
{
    datos_load_client_t *bl;
    datos_err_t err = {0};

    if (datos_load_client_create(fx->p, &fx->conf, &bl, &err) != APR_SUCCESS) {
        fail_msg("create: %s", err.message);
    }
    return bl;
}

static dt_request_t *req(fx_t *fx, int i)
{
    return dt_server_request(fx->srv, fx->p, i);
}

static const char *hdr(fx_t *fx, int i, const char *name)
{
    return dt_request_header(fx->p, req(fx, i), name);
}

/* n bytes of NDJSON, lines of about 100 bytes */
static char *ndjson(apr_pool_t *p, apr_size_t n)
{
    char *d = apr_palloc(p, n + 1);
    apr_size_t i = 0;
    int row = 0;

    while (i < n) {
        int k = snprintf(d + i, n + 1 - i,
                         "{\"id\":\"%08d\",\"contenido\":\"%s\",\"timestamp\":"
                         "\"2024-01-14T14:00:00Z\"}\n",
                         row++, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
        i += (apr_size_t)k;
    }
    d[n] = '\0';
    return d;
}

static const char *resource(fx_t *fx, const char *location)
{
    datos_loadjob_conf_t lc;
    datos_err_t err = {0};
    const char *json;
    apr_size_t len;

    memset(&lc, 0, sizeof(lc));
    lc.project = "my-proj";
    lc.job_id = JOB_ID;
    lc.location = location;
    lc.table_project = "data-proj";
    lc.dataset = "latam_dataset";
    lc.table = "datos";
    assert_int_equal(datos_loadjob_resource(fx->p, &lc, &json, &len, &err),
                     APR_SUCCESS);
    return json;
}

static void create_checks(void **state)
{
    fx_t *fx = *state;
    datos_load_client_conf_t c;
    datos_load_client_t *bl;
    datos_err_t err = {0};

    c = fx->conf;
    c.base_url = apr_pstrcat(fx->p, fx->base, "/projects", NULL);
    assert_int_equal(datos_load_client_create(fx->p, &c, &bl, &err),
                     DATOS_ECONFIG);
    assert_non_null(strstr(err.message, "does not end in /bigquery/v2"));
    c = fx->conf;
    c.chunk_size = 100000;
    assert_int_equal(datos_load_client_create(fx->p, &c, &bl, &err),
                     DATOS_ECONFIG);
    assert_non_null(strstr(err.message, "256 KiB"));
    c = fx->conf;
    c.project = "My_Project";
    assert_int_equal(datos_load_client_create(fx->p, &c, &bl, &err),
                     DATOS_ECONFIG);
    c = fx->conf;
    c.table.table = NULL;
    assert_int_equal(datos_load_client_create(fx->p, &c, &bl, &err),
                     DATOS_ECONFIG);
    c = fx->conf;
    c.base_url = "http://bq.example.com/bigquery/v2";
    assert_int_equal(datos_load_client_create(fx->p, &c, &bl, &err),
                     DATOS_EINSECURE);
    assert_string_equal(err.reason, DATOS_REASON_PLAIN_HTTP);
    c.http.allow_insecure = 1;
    assert_int_equal(datos_load_client_create(fx->p, &c, &bl, &err),
                     APR_SUCCESS);
    c = fx->conf;
    c.http.timeout = 0;
    assert_int_equal(datos_load_client_create(fx->p, &c, &bl, &err),
                     DATOS_ECONFIG);
}

static void table_info(void **state)
{
    fx_t *fx = *state;
    datos_load_client_t *bl = client(fx);
    datos_table_info_t info;
    datos_err_t err = {0};

    dt_server_json(fx->srv, 200, TOKEN);
    dt_server_json(
        fx->srv, 200,
        "{\"kind\":\"bigquery#table\",\"location\":\"" LOC
        "\",\"schema\":{\"fields\":["
        "{\"name\":\"id\",\"type\":\"STRING\",\"mode\":\"REQUIRED\"},"
        "{\"name\":\"contenido\",\"type\":\"STRING\"},"
        "{\"name\":\"timestamp\",\"type\":\"TIMESTAMP\",\"mode\":\"REQUIRED\"},"
        "{\"name\":\"message_id\",\"type\":\"STRING\"}]}}");
    dt_server_json(
        fx->srv, 200,
        "{\"location\":\"US\",\"schema\":{\"fields\":["
        "{\"name\":\"id\",\"type\":\"STRING\"},{\"name\":\"contenido\",\"type\":\"BYTES\"},"
        "{\"name\":\"timestamp\",\"type\":\"TIMESTAMP\"}]}}");
    dt_server_json(fx->srv, 404,
                   "{\"error\":{\"code\":404,\"message\":\"Not found: Table "
                   "data-proj:latam_dataset.datos\",\"errors\":[{\"reason\":"
                   "\"notFound\"}],\"status\":\"NOT_FOUND\"}}");
    assert_int_equal(datos_load_client_table(bl, fx->p, 0, &info, &err),
                     APR_SUCCESS);
    assert_string_equal(info.location, LOC);
    assert_true(info.has_message_id);
    assert_false(info.has_publish_time);
    assert_string_equal(req(fx, 1)->method, "GET");
    assert_string_equal(req(fx, 1)->target, TABLES_GET);
    assert_string_equal(hdr(fx, 1, "Authorization"), "Bearer load-tok");
    /* a record column of the wrong type is a configuration error naming it */
    assert_int_equal(datos_load_client_table(bl, fx->p, 0, &info, &err),
                     DATOS_ECONFIG);
    assert_non_null(
        strstr(err.message, "column contenido is BYTES, not STRING"));
    assert_int_equal(datos_load_client_table(bl, fx->p, 0, &info, &err),
                     DATOS_EREJECTED);
    assert_string_equal(err.message,
                        "tables.get: HTTP 404 notFound: Not found: Table "
                        "data-proj:latam_dataset.datos");
}

/* Check the multipart framing of request i around data; returns the
 * boundary. */
static const char *check_multipart(fx_t *fx, int i, const char *data,
                                   apr_size_t len, const char *json)
{
    dt_request_t *r = req(fx, i);
    const char *ct = hdr(fx, i, "Content-Type"), *b;
    const char *head, *mid, *tail;
    apr_size_t off;

    assert_string_equal(r->method, "POST");
    assert_string_equal(
        r->target,
        "/upload/bigquery/v2/projects/my-proj/jobs?uploadType=multipart");
    assert_int_equal(strncmp(ct, "multipart/related; boundary=datos_", 34), 0);
    b = ct + 28;
    assert_int_equal(strlen(b), 38);
    head =
        apr_pstrcat(fx->p, "--", b,
                    "\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n",
                    json, "\r\n--", b,
                    "\r\nContent-Type: application/octet-stream\r\n\r\n", NULL);
    tail = apr_pstrcat(fx->p, "\r\n--", b, "--\r\n", NULL);
    assert_int_equal(r->body_len, strlen(head) + len + strlen(tail));
    assert_memory_equal(r->body, head, strlen(head));
    off = strlen(head);
    assert_memory_equal(r->body + off, data, len);
    assert_memory_equal(r->body + off + len, tail, strlen(tail));
    assert_string_equal(hdr(fx, i, "Content-Length"),
                        apr_psprintf(fx->p, "%" APR_SIZE_T_FMT, r->body_len));
    mid = memmem(data, len, b, strlen(b));
    assert_null(mid);
    return b;
}

static void insert_multipart(void **state)
{
    fx_t *fx = *state;
    datos_load_client_t *bl = client(fx);
    datos_loadjob_t *job = NULL;
    datos_err_t err = {0};
    const char *small =
        "{\"id\":\"1\",\"contenido\":\"hola\",\"timestamp\":\"2024-01-14T14:00:00Z\"}\n";
    apr_size_t n = 590 * 1024; /* under the threshold */
    char *big = ndjson(fx->p, n);
    const char *b1, *b2;

    dt_server_json(fx->srv, 200, TOKEN);
    dt_server_json(fx->srv, 200, JOB("RUNNING"));
    dt_server_json(fx->srv, 200, JOB("DONE"));
    assert_int_equal(datos_load_client_insert(
                         bl, fx->p, apr_time_now() + apr_time_from_sec(10),
                         JOB_ID, NULL, small, strlen(small), &job, &err),
                     APR_SUCCESS);
    assert_int_equal(job->state, DATOS_JOB_RUNNING);
    assert_string_equal(job->job_id, JOB_ID);
    assert_string_equal(job->location, LOC);
    b1 = check_multipart(fx, 1, small, strlen(small), resource(fx, LOC));
    assert_string_equal(hdr(fx, 1, "Authorization"), "Bearer load-tok");

    /* the location given wins over the configured one */
    assert_int_equal(datos_load_client_insert(bl, fx->p, 0, JOB_ID, "US", big,
                                              n, &job, &err),
                     APR_SUCCESS);
    assert_int_equal(job->state, DATOS_JOB_DONE);
    b2 = check_multipart(fx, 2, big, n, resource(fx, "US"));
    assert_string_not_equal(b1, b2); /* random per request */
    assert_int_equal(dt_server_count(fx->srv), 3);
}

/* The data may hold what looks like a boundary; the one chosen never
 * occurs in it. Without a configured location none is sent. */
static void multipart_boundary_and_no_location(void **state)
{
    fx_t *fx = *state;
    datos_load_client_t *bl;
    datos_loadjob_t *job;
    datos_err_t err = {0};
    const char *data =
        "{\"id\":\"--datos_\",\"contenido\":\"\\r\\n--datos_00\"}\n";

    fx->conf.location = NULL;
    bl = client(fx);
    dt_server_json(fx->srv, 200, TOKEN);
    dt_server_json(fx->srv, 200, JOB("PENDING"));
    assert_int_equal(datos_load_client_insert(bl, fx->p, 0, JOB_ID, NULL, data,
                                              strlen(data), &job, &err),
                     APR_SUCCESS);
    check_multipart(fx, 1, data, strlen(data), resource(fx, NULL));
    assert_null(strstr(req(fx, 1)->body, "\"location\""));
}

/* A taken job id is DATOS_EEXISTS: the caller then asks jobs.get. */
static void duplicate_job_id(void **state)
{
    fx_t *fx = *state;
    datos_load_client_t *bl = client(fx);
    datos_loadjob_t *job = NULL;
    datos_err_t err = {0};

    dt_server_json(fx->srv, 200, TOKEN);
    dt_server_json(fx->srv, 409,
                   "{\"error\":{\"code\":409,\"message\":\"Already Exists: Job "
                   "my-proj:" LOC "." JOB_ID
                   "\",\"errors\":[{\"message\":\"x\","
                   "\"domain\":\"global\",\"reason\":\"duplicate\"}],"
                   "\"status\":\"ALREADY_EXISTS\"}}");
    assert_int_equal(datos_load_client_insert(bl, fx->p, 0, JOB_ID, NULL,
                                              "{}\n", 3, &job, &err),
                     DATOS_EEXISTS);
    assert_null(job);
    assert_int_equal(err.http_status, 409);
    assert_string_equal(err.reason, "duplicate");
    assert_string_equal(err.message,
                        "jobs.insert: HTTP 409 duplicate: Already Exists: Job "
                        "my-proj:" LOC "." JOB_ID);
    /* a bad job id never reaches the wire */
    assert_int_equal(datos_load_client_insert(bl, fx->p, 0, "bad/id", NULL,
                                              "{}\n", 3, &job, &err),
                     APR_EINVAL);
    assert_int_equal(dt_server_count(fx->srv), 2);
}

static void script_session(fx_t *fx)
{
    dt_response_t r;

    memset(&r, 0, sizeof(r));
    r.status = 200;
    r.headers =
        apr_psprintf(fx->p,
                     "Location: %s/upload/bigquery/v2/projects/my-proj/jobs?"
                     "uploadType=resumable&upload_id=ADPycdX1\r\n"
                     "X-GUploader-UploadID: ADPycdX1\r\n",
                     fx->base);
    dt_server_push(fx->srv, &r);
}

static void script_308(fx_t *fx, long last)
{
    dt_response_t r;

    memset(&r, 0, sizeof(r));
    r.status = 308;
    if (last >= 0) {
        r.headers = apr_psprintf(fx->p, "Range: bytes=0-%ld\r\n", last);
    }
    dt_server_push(fx->srv, &r);
}

/* Request i is the PUT of data[from, to) ("final": with the total). */
static void check_put(fx_t *fx, int i, const char *data, apr_size_t len,
                      apr_size_t from, apr_size_t to)
{
    dt_request_t *r = req(fx, i);

    assert_string_equal(r->method, "PUT");
    assert_string_equal(r->target, "/upload/bigquery/v2/projects/my-proj/jobs?"
                                   "uploadType=resumable&upload_id=ADPycdX1");
    assert_string_equal(hdr(fx, i, "Authorization"), "Bearer load-tok");
    if (to == from) {
        assert_string_equal(
            hdr(fx, i, "Content-Range"),
            apr_psprintf(fx->p, "bytes */%" APR_SIZE_T_FMT, len));
        assert_int_equal(r->body_len, 0);
        return;
    }
    assert_string_equal(
        hdr(fx, i, "Content-Range"),
        apr_psprintf(fx->p, "bytes %" APR_SIZE_T_FMT "-%" APR_SIZE_T_FMT "/%s",
                     from, to - 1,
                     to == len ? apr_psprintf(fx->p, "%" APR_SIZE_T_FMT, len)
                               : "*"));
    assert_string_equal(hdr(fx, i, "Content-Type"), "application/octet-stream");
    assert_int_equal(r->body_len, to - from);
    assert_memory_equal(r->body, data + from, to - from);
}

/* Above the threshold: the session POST, then 256 KiB chunks, following
 * the Range of each 308, the last one with the total. */
static void insert_resumable(void **state)
{
    fx_t *fx = *state;
    datos_load_client_t *bl = client(fx);
    datos_loadjob_t *job = NULL;
    datos_err_t err = {0};
    apr_size_t n = 700 * 1024;
    char *data = ndjson(fx->p, n);
    dt_request_t *r;

    dt_server_json(fx->srv, 200, TOKEN);
    script_session(fx);
    script_308(fx, CHUNK - 1);
    /* the server keeps only part of the second chunk: resend from there */
    script_308(fx, CHUNK + 100000 - 1);
    script_308(fx, 2 * CHUNK + 100000 - 1);
    dt_server_json(fx->srv, 201, JOB("RUNNING"));
    datos_load_client_insert(bl, fx->p, apr_time_now() + apr_time_from_sec(20),
                             JOB_ID, NULL, data, n, &job, &err);
    show(&err);
    assert_int_equal(err.rv, APR_SUCCESS);
    assert_int_equal(job->state, DATOS_JOB_RUNNING);
    assert_int_equal(dt_server_count(fx->srv), 6);

    r = req(fx, 1);
    assert_string_equal(r->method, "POST");
    assert_string_equal(
        r->target,
        "/upload/bigquery/v2/projects/my-proj/jobs?uploadType=resumable");
    assert_string_equal(r->body, resource(fx, LOC));
    assert_string_equal(hdr(fx, 1, "Content-Type"),
                        "application/json; charset=UTF-8");
    assert_string_equal(hdr(fx, 1, "X-Upload-Content-Type"),
                        "application/octet-stream");
    assert_string_equal(hdr(fx, 1, "X-Upload-Content-Length"), "716800");
    check_put(fx, 2, data, n, 0, CHUNK);
    check_put(fx, 3, data, n, CHUNK, 2 * CHUNK);
    check_put(fx, 4, data, n, CHUNK + 100000, 2 * CHUNK + 100000);
    check_put(fx, 5, data, n, 2 * CHUNK + 100000, n);
}

/* A failed chunk: wait, ask where the upload stands, go on from there. */
static void resumable_resumes_after_failures(void **state)
{
    fx_t *fx = *state;
    datos_load_client_t *bl = client(fx);
    datos_loadjob_t *job = NULL;
    datos_err_t err = {0};
    apr_size_t n = 700 * 1024;
    char *data = ndjson(fx->p, n);
    dt_response_t r;

    dt_server_json(fx->srv, 200, TOKEN);
    script_session(fx);
    script_308(fx, CHUNK - 1);
    dt_server_json(fx->srv, 503, "<html>unavailable</html>"); /* chunk 2 */
    script_308(fx, CHUNK - 1);                                /* probe */
    memset(&r, 0, sizeof(r));
    r.close_now = 1;
    dt_server_push(fx->srv, &r);   /* chunk 2 again: dropped */
    script_308(fx, 2 * CHUNK - 1); /* probe: it got there */
    memset(&r, 0, sizeof(r));
    r.close_now = 1;
    dt_server_push(fx->srv, &r);               /* the final chunk: lost */
    dt_server_json(fx->srv, 200, JOB("DONE")); /* probe: all in, done */
    assert_int_equal(datos_load_client_insert(
                         bl, fx->p, apr_time_now() + apr_time_from_sec(30),
                         JOB_ID, NULL, data, n, &job, &err),
                     APR_SUCCESS);
    assert_int_equal(job->state, DATOS_JOB_DONE);
    assert_int_equal(dt_server_count(fx->srv), 9);
    check_put(fx, 2, data, n, 0, CHUNK);
    check_put(fx, 3, data, n, CHUNK, 2 * CHUNK);
    check_put(fx, 4, data, n, 0, 0);
    check_put(fx, 5, data, n, CHUNK, 2 * CHUNK);
    check_put(fx, 6, data, n, 0, 0);
    check_put(fx, 7, data, n, 2 * CHUNK, n);
    check_put(fx, 8, data, n, 0, 0);
}

/* What ends a resumable upload: a session on another host (the token
 * would go there), a refusal that asking again cannot change, a server
 * that never moves on, the deadline. */
static void resumable_failures(void **state)
{
    fx_t *fx = *state;
    datos_load_client_t *bl = client(fx);
    datos_loadjob_t *job = NULL;
    datos_err_t err = {0};
    apr_size_t n = 700 * 1024;
    char *data = ndjson(fx->p, n);
    dt_response_t r;
    int i, before;

    dt_server_json(fx->srv, 200, TOKEN);
    memset(&r, 0, sizeof(r));
    r.status = 200;
    r.headers = "Location: http://evil.example.com/upload?upload_id=x\r\n";
    dt_server_push(fx->srv, &r);
    assert_int_equal(datos_load_client_insert(bl, fx->p, 0, JOB_ID, NULL, data,
                                              n, &job, &err),
                     DATOS_EMALFORMED);
    assert_non_null(strstr(err.message, "is not on"));
    r.headers = NULL;
    dt_server_push(fx->srv, &r); /* no Location at all */
    assert_int_equal(datos_load_client_insert(bl, fx->p, 0, JOB_ID, NULL, data,
                                              n, &job, &err),
                     DATOS_EMALFORMED);
    assert_int_equal(dt_server_count(fx->srv), 3);

    /* the session is gone: no retry */
    script_session(fx);
    dt_server_json(fx->srv, 404,
                   "{\"error\":{\"code\":404,\"message\":\"Not found: upload "
                   "session\",\"errors\":[{\"reason\":\"notFound\"}]}}");
    assert_int_equal(datos_load_client_insert(bl, fx->p, 0, JOB_ID, NULL, data,
                                              n, &job, &err),
                     DATOS_EREJECTED);
    assert_int_equal(dt_server_count(fx->srv), 5);

    /* stuck at the same byte: given up, not looped on */
    script_session(fx);
    for (i = 0; i < 5; i++) {
        script_308(fx, CHUNK - 1);
    }
    before = dt_server_count(fx->srv);
    assert_int_equal(datos_load_client_insert(bl, fx->p, 0, JOB_ID, NULL, data,
                                              n, &job, &err),
                     DATOS_EMALFORMED);
    assert_non_null(strstr(err.message, "stays at byte 262144"));
    assert_int_equal(dt_server_count(fx->srv) - before, 1 + 5);

    /* a 308 whose Range passes the data */
    script_session(fx);
    script_308(fx, (long)n + 5);
    assert_int_equal(datos_load_client_insert(bl, fx->p, 0, JOB_ID, NULL, data,
                                              n, &job, &err),
                     DATOS_EMALFORMED);

    /* a failure whose Retry-After reaches past the deadline ends it at
     * once: the session and one chunk, however slow the machine, and the
     * error is reported */
    script_session(fx);
    memset(&r, 0, sizeof(r));
    r.status = 503;
    r.headers = "Retry-After: 3600\r\n";
    dt_server_push(fx->srv, &r);
    before = dt_server_count(fx->srv);
    assert_int_equal(datos_load_client_insert(
                         bl, fx->p, apr_time_now() + apr_time_from_sec(60),
                         JOB_ID, NULL, data, n, &job, &err),
                     DATOS_EBACKEND);
    assert_int_equal(dt_server_count(fx->srv) - before, 2);
    assert_string_equal(err.message,
                        "jobs.insert: HTTP 503 with an empty body");

    /* failures until the deadline: the last error is reported (how many
     * fit in 1.5 s depends on the machine: at most the failure limit) */
    script_session(fx);
    for (i = 0; i < 12; i++) {
        dt_server_json(fx->srv, 503, "");
    }
    before = dt_server_count(fx->srv);
    assert_int_equal(datos_load_client_insert(
                         bl, fx->p, apr_time_now() + apr_time_from_msec(1500),
                         JOB_ID, NULL, data, n, &job, &err),
                     DATOS_EBACKEND);
    assert_true(dt_server_count(fx->srv) - before <= 1 + 10);
    assert_string_equal(err.message,
                        "jobs.insert: HTTP 503 with an empty body");
}

static void get_job(void **state)
{
    fx_t *fx = *state;
    datos_load_client_t *bl = client(fx);
    datos_loadjob_t *job = NULL;
    datos_err_t err = {0};

    dt_server_json(fx->srv, 200, TOKEN);
    dt_server_json(
        fx->srv, 200,
        "{\"jobReference\":{\"projectId\":\"my-proj\",\"jobId\":\"" JOB_ID
        "\",\"location\":\"" LOC
        "\"},\"status\":{\"state\":\"DONE\",\"errorResult\":{\"reason\":\"invalid\","
        "\"message\":\"too many errors\"},\"errors\":[{\"reason\":\"invalid\",\"message\":"
        "\"JSON parsing error in row starting at position 0: No such field: colour.\"}]},"
        "\"statistics\":{\"load\":{\"outputRows\":\"0\",\"badRecords\":\"1\"}}}");
    dt_server_json(fx->srv, 404,
                   "{\"error\":{\"code\":404,\"message\":\"Not found: Job "
                   "my-proj:" JOB_ID
                   "\",\"errors\":[{\"reason\":\"notFound\"}],"
                   "\"status\":\"NOT_FOUND\"}}");
    dt_server_json(fx->srv, 200, JOB("PENDING"));
    assert_int_equal(
        datos_load_client_get(bl, fx->p, 0, JOB_ID, NULL, &job, &err),
        APR_SUCCESS);
    assert_string_equal(req(fx, 1)->method, "GET");
    assert_string_equal(req(fx, 1)->target,
                        "/bigquery/v2/projects/my-proj/jobs/" JOB_ID
                        "?location=" LOC);
    assert_int_equal(job->state, DATOS_JOB_DONE);
    assert_int_equal(datos_loadjob_outcome(job), DATOS_JOB_INVALID);
    assert_int_equal(job->bad_records, 1);
    /* a 404 right after a 409 can lag: the caller sees it as such */
    assert_int_equal(
        datos_load_client_get(bl, fx->p, 0, JOB_ID, "US", &job, &err),
        DATOS_EREJECTED);
    assert_int_equal(err.http_status, 404);
    assert_string_equal(req(fx, 2)->target,
                        "/bigquery/v2/projects/my-proj/jobs/" JOB_ID
                        "?location=US");
    assert_non_null(strstr(err.message, "jobs.get: HTTP 404 notFound"));
    /* without any location: none in the URL */
    fx->conf.location = NULL;
    bl = client(fx);
    assert_int_equal(
        datos_load_client_get(bl, fx->p, 0, JOB_ID, NULL, &job, &err),
        APR_SUCCESS);
    assert_string_equal(req(fx, 3)->target,
                        "/bigquery/v2/projects/my-proj/jobs/" JOB_ID);
    assert_int_equal(job->state, DATOS_JOB_PENDING);
    /* ids that could change the path are refused */
    assert_int_equal(
        datos_load_client_get(bl, fx->p, 0, "../x", NULL, &job, &err),
        APR_EINVAL);
    assert_int_equal(dt_server_count(fx->srv), 4);
    /* after tables.get, the table's location names the jobs */
    dt_server_json(
        fx->srv, 200,
        "{\"location\":\"EU\",\"schema\":{\"fields\":[{\"name\":\"id\",\"type\":\"STRING\"},"
        "{\"name\":\"contenido\",\"type\":\"STRING\"},{\"name\":\"timestamp\",\"type\":\"TIMESTAMP\"}]}}");
    dt_server_json(fx->srv, 200, JOB("DONE"));
    dt_server_json(fx->srv, 200, JOB("DONE"));
    {
        datos_table_info_t info;
        assert_int_equal(datos_load_client_table(bl, fx->p, 0, &info, &err),
                         APR_SUCCESS);
    }
    assert_int_equal(
        datos_load_client_get(bl, fx->p, 0, JOB_ID, NULL, &job, &err),
        APR_SUCCESS);
    assert_string_equal(req(fx, 5)->target,
                        "/bigquery/v2/projects/my-proj/jobs/" JOB_ID
                        "?location=EU");
    assert_int_equal(datos_load_client_insert(bl, fx->p, 0, JOB_ID, NULL,
                                              "{}\n", 3, &job, &err),
                     APR_SUCCESS);
    assert_non_null(strstr(req(fx, 6)->body, resource(fx, "EU")));
}

static int group_setup(void **state)
{
    if (dt_group_setup(state) != 0 || datos_http_global_init() != APR_SUCCESS) {
        return -1;
    }
    unsetenv("GOOGLE_APPLICATION_CREDENTIALS");
    return 0;
}

static int group_teardown(void **state)
{
    datos_http_global_cleanup();
    return dt_group_teardown(state);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        FX_TEST(create_checks),
        FX_TEST(table_info),
        FX_TEST(insert_multipart),
        FX_TEST(multipart_boundary_and_no_location),
        FX_TEST(duplicate_job_id),
        FX_TEST(insert_resumable),
        FX_TEST(resumable_resumes_after_failures),
        FX_TEST(resumable_failures),
        FX_TEST(get_job),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
