/* test_bq_fetch.c - datos_bq_fetch_latest and datos_creds_token against the
 * scripted loopback server standing in for the token endpoint, the
 * metadata server and BigQuery. The script order is the call order, so
 * every test also pins the sequence of calls. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <jansson.h>

#include "dt_support.h"
#include <apr_thread_proc.h>

#include "datos_bq.h"
#include "datos_json.h"
#include "datos_time.h"

#define TOKEN(t, exp)                                  \
    "{\"access_token\":\"" t "\",\"expires_in\":" #exp \
    ",\"token_type\":\"Bearer\"}"
#define TABLES_GET \
    "/bigquery/v2/projects/my-proj/datasets/latam_dataset/tables/datos"
#define TABLE_FIELDS(extra)                                                       \
    "{\"kind\":\"bigquery#table\",\"location\":\"US\",\"schema\":{\"fields\":["   \
    "{\"name\":\"id\",\"type\":\"STRING\",\"mode\":\"REQUIRED\"},"                \
    "{\"name\":\"contenido\",\"type\":\"STRING\",\"mode\":\"NULLABLE\"},"         \
    "{\"name\":\"timestamp\",\"type\":\"TIMESTAMP\",\"mode\":\"REQUIRED\"}" extra \
    "]}}"
#define TABLE_5COL                                                              \
    TABLE_FIELDS(                                                               \
        ",{\"name\":\"message_id\",\"type\":\"STRING\",\"mode\":\"NULLABLE\"}," \
        "{\"name\":\"publish_time\",\"type\":\"TIMESTAMP\",\"mode\":\"NULLABLE\"}")
#define TABLE_3COL TABLE_FIELDS("")
#define SCHEMA                                                       \
    "\"schema\":{\"fields\":[{\"name\":\"id\",\"type\":\"STRING\"}," \
    "{\"name\":\"contenido\",\"type\":\"STRING\"},{\"name\":\"timestamp\",\"type\":\"TIMESTAMP\"}]}"
#define TS0 1705240800000000LL

typedef struct {
    apr_pool_t *p;
    dt_server_t *srv;
    const char *base; /* http://127.0.0.1:N */
    datos_creds_t *creds;
    datos_bq_conf_t conf;
} fx_t;

static int fx_setup(void **state)
{
    apr_pool_t *p;
    fx_t *fx;
    datos_err_t err = {0};
    const char *key;

    if (apr_pool_create(&p, NULL) != APR_SUCCESS) {
        return -1;
    }
    fx = apr_pcalloc(p, sizeof(*fx));
    fx->p = p;
    fx->srv = dt_server_start();
    fx->base = dt_server_url(fx->srv, p);
    key = dt_write_key_file(p, dt_tmpdir(p),
                            apr_pstrcat(p, fx->base, "/token", NULL));
    datos_err_clear(&err);
    if (datos_creds_load(p, key, NULL, 0, &fx->creds, &err) != APR_SUCCESS) {
        fail_msg("creds: %s", err.message);
    }
    fx->conf.base_url = apr_pstrcat(p, fx->base, "/bigquery/v2/", NULL);
    fx->conf.project = "my-proj";
    assert_null(datos_table_parse(p, "latam_dataset.datos", &fx->conf.table));
    fx->conf.lookback_days = 7;
    fx->conf.max_payload = 1024 * 1024;
    fx->conf.max_rows = 3;
    fx->conf.timeout = apr_time_from_sec(30);
    datos_http_opts_default(&fx->conf.http);
    fx->conf.creds = fx->creds;
    /* tables.get is answered apart from each test's script */
    dt_server_standing(fx->srv, "GET", TABLES_GET, 200, TABLE_5COL);
    *state = fx;
    return 0;
}

static int fx_teardown(void **state)
{
    fx_t *fx = *state;
    dt_server_stop(fx->srv);
    apr_pool_destroy(fx->p);
    unsetenv("GCE_METADATA_HOST");
    return 0;
}

#define FX_TEST(f) cmocka_unit_test_setup_teardown(f, fx_setup, fx_teardown)

static int group_setup(void **state)
{
    if (dt_group_setup(state) != 0 || datos_http_global_init() != APR_SUCCESS) {
        return -1;
    }
    unsetenv("GOOGLE_APPLICATION_CREDENTIALS");
    unsetenv("GCE_METADATA_HOST");
    /* no gcloud well-known file from the environment the tests run in */
    setenv("CLOUDSDK_CONFIG", "/nonexistent/datos-test", 1);
    return 0;
}

static int group_teardown(void **state)
{
    datos_http_global_cleanup();
    return dt_group_teardown(state);
}

/* A complete answer with n rows named prefix0.., newest first. */
static const char *page(apr_pool_t *p, const char *prefix, int first, int n,
                        const char *page_token, const char *job)
{
    const char *rows = "";
    int i;

    for (i = first; i < first + n; i++) {
        rows = apr_psprintf(
            p,
            "%s%s{\"f\":[{\"v\":\"%s%d\"},{\"v\":\"c%d\"},{\"v\":\"%" APR_INT64_T_FMT
            "\"}]}",
            rows, i > first ? "," : "", prefix, i, i,
            (apr_int64_t)(TS0 - (long long)i * 1000000));
    }
    return apr_psprintf(
        p,
        "{\"kind\":\"bigquery#queryResponse\"," SCHEMA ","
        "\"jobReference\":{\"projectId\":\"my-proj\",\"jobId\":\"%s\","
        "\"location\":\"US\"},\"totalRows\":\"%d\",%s%s%s"
        "\"rows\":[%s],\"totalBytesProcessed\":\"100\","
        "\"jobComplete\":true}",
        job ? job : "job_1", n, page_token ? "\"pageToken\":\"" : "",
        page_token ? page_token : "", page_token ? "\"," : "", rows);
}

static const char *incomplete(apr_pool_t *p, const char *job)
{
    return apr_psprintf(
        p,
        "{\"kind\":\"bigquery#queryResponse\",\"jobReference\":"
        "{\"projectId\":\"my-proj\",\"jobId\":\"%s\",\"location\":\"US\"},"
        "\"jobComplete\":false}",
        job);
}

static apr_status_t fetch(fx_t *fx, datos_latest_t **out, datos_err_t *err)
{
    datos_bq_t *bq;
    apr_status_t rv;

    datos_err_clear(err);
    assert_int_equal(datos_bq_create(fx->p, &fx->conf, &bq, err), APR_SUCCESS);
    *out = NULL;
    rv = datos_bq_fetch_latest(bq, fx->p, out, err);
    if (rv != APR_SUCCESS && getenv("DT_DEBUG")) {
        fprintf(stderr, "fetch: %s\n",
                err->message); /* DT_DEBUG=1 shows each failure */
    }
    return rv;
}

static dt_request_t *req(fx_t *fx, int i)
{
    return dt_server_request(fx->srv, fx->p, i);
}

static json_t *body_json(fx_t *fx, int i)
{
    dt_request_t *r = req(fx, i);
    json_error_t jerr;
    json_t *j = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &jerr);

    if (!j) {
        fail_msg("request %d body is not JSON: %s", i, r->body);
    }
    return datos_json_bind(fx->p, j);
}

static const char *row_id(datos_latest_t *l, int i)
{
    return APR_ARRAY_IDX(l->rows, i, datos_row_t).id;
}

/* ------------------------------------------------------------------ */

static void fetch_simple_and_request_shape(void **state)
{
    fx_t *fx = *state;
    datos_latest_t *l;
    datos_err_t err = {0};
    dt_request_t *r;
    json_t *q, *params;
    const char *keys = "", *rid;
    void *it;
    apr_time_t t0;
    apr_int64_t spent_ms;

    dt_server_json(fx->srv, 200, TOKEN("tok-1", 3600));
    dt_server_json(fx->srv, 200, page(fx->p, "r", 0, 3, NULL, NULL));

    fx->conf.timeout = apr_time_from_sec(5);
    t0 = apr_time_now();
    assert_int_equal(fetch(fx, &l, &err), APR_SUCCESS);
    spent_ms = apr_time_as_msec(apr_time_now() - t0) + 1;
    assert_int_equal(l->rows->nelts, 3);
    assert_string_equal(row_id(l, 0), "r0");
    assert_string_equal(row_id(l, 2), "r2");
    assert_int_equal(APR_ARRAY_IDX(l->rows, 0, datos_row_t).timestamp_us, TS0);
    assert_int_equal(l->queries, 1);
    assert_int_equal(l->polls, 0);
    assert_int_equal(l->window_days, 7);
    assert_int_equal(l->bytes_processed, 100);
    /* No totalBytesBilled: BigQuery's rule, at least 10 MiB a query. */
    assert_int_equal(l->bytes_billed, DATOS_BQ_MIN_BILLED);
    assert_int_equal(l->pages, 1);
    assert_false(l->capped);
    assert_false(l->truncated);
    assert_int_equal(dt_server_count(fx->srv), 2);
    /* tables.get once, for the location and the columns */
    assert_int_equal(dt_server_standing_hits(fx->srv, "GET", TABLES_GET), 1);

    /* the JWT-bearer exchange */
    r = req(fx, 0);
    assert_string_equal(r->method, "POST");
    assert_string_equal(r->target, "/token");
    assert_string_equal(dt_request_header(fx->p, r, "Content-Type"),
                        "application/x-www-form-urlencoded");
    {
        static const char form[] =
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type"
            "%3Ajwt-bearer&assertion=";
        apr_size_t n = sizeof(form) - 1;
        assert_memory_equal(r->body, form, n);
        assert_memory_equal(r->body + n, "eyJ", 3);
        /* a compact JWS: base64url and two dots */
        assert_int_equal(
            strspn(r->body + n,
                   "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                   "0123456789-_."),
            r->body_len - n);
    }
    assert_null(dt_request_header(fx->p, r, "Authorization"));

    /* jobs.query */
    r = req(fx, 1);
    assert_string_equal(r->method, "POST");
    assert_string_equal(r->target, "/bigquery/v2/projects/my-proj/queries");
    assert_string_equal(dt_request_header(fx->p, r, "Authorization"),
                        "Bearer tok-1");
    assert_string_equal(dt_request_header(fx->p, r, "Content-Type"),
                        "application/json");
    q = body_json(fx, 1);
    for (it = json_object_iter(q); it; it = json_object_iter_next(q, it)) {
        keys = apr_pstrcat(fx->p, keys, *keys ? "," : "",
                           json_object_iter_key(it), NULL);
    }
    assert_string_equal(
        keys, "query,useLegacySql,parameterMode,queryParameters,location,"
              "timeoutMs,maxResults,formatOptions,requestId");
    assert_string_equal(
        json_string_value(json_object_get(q, "query")),
        datos_bq_latest_sql(fx->p, "`my-proj.latam_dataset.datos`", 7, NULL));
    assert_true(json_is_false(json_object_get(q, "useLegacySql")));
    assert_string_equal(json_string_value(json_object_get(q, "parameterMode")),
                        "NAMED");
    params = json_object_get(q, "queryParameters");
    assert_string_equal(
        datos_json_dump(fx->p, params, NULL),
        "[{\"name\":\"lookback_days\",\"parameterType\":{\"type\":\"INT64\"},"
        "\"parameterValue\":{\"value\":\"7\"}},"
        "{\"name\":\"max_rows\",\"parameterType\":{\"type\":\"INT64\"},"
        "\"parameterValue\":{\"value\":\"3\"}}]");
    assert_string_equal(json_string_value(json_object_get(q, "location")),
                        "US");
    /* what was left of the 5 s budget when the query went out */
    assert_true(json_integer_value(json_object_get(q, "timeoutMs"))
                >= 5000 - spent_ms);
    assert_true(json_integer_value(json_object_get(q, "timeoutMs")) <= 5000);
    assert_int_equal(json_integer_value(json_object_get(q, "maxResults")), 3);
    assert_string_equal(
        datos_json_dump(fx->p, json_object_get(q, "formatOptions"), NULL),
        "{\"useInt64Timestamp\":true}");
    rid = json_string_value(json_object_get(q, "requestId"));
    assert_int_equal(strlen(rid), 36);
    assert_int_equal(strspn(rid, "0123456789abcdef-"), 36);
    assert_true(rid[8] == '-' && rid[13] == '-' && rid[18] == '-'
                && rid[23] == '-');
    assert_int_equal(rid[14], '4');
}

static void second_fetch_reuses_token_and_location(void **state)
{
    fx_t *fx = *state;
    datos_bq_t *bq;
    datos_latest_t *l;
    datos_err_t err = {0};
    json_t *q1, *q2;

    dt_server_json(fx->srv, 200, TOKEN("tok-1", 3600));
    dt_server_json(fx->srv, 200, page(fx->p, "r", 0, 3, NULL, NULL));
    dt_server_json(fx->srv, 200, page(fx->p, "s", 0, 3, NULL, NULL));

    datos_err_clear(&err);
    assert_int_equal(datos_bq_create(fx->p, &fx->conf, &bq, &err), APR_SUCCESS);
    assert_int_equal(datos_bq_child_init(bq, fx->p), APR_SUCCESS);
    assert_int_equal(datos_creds_child_init(fx->creds, fx->p), APR_SUCCESS);
    assert_int_equal(datos_bq_fetch_latest(bq, fx->p, &l, &err), APR_SUCCESS);
    assert_int_equal(datos_bq_fetch_latest(bq, fx->p, &l, &err), APR_SUCCESS);
    assert_string_equal(row_id(l, 0), "s0");
    assert_int_equal(dt_server_count(fx->srv), 3);
    assert_int_equal(dt_server_standing_hits(fx->srv, "GET", TABLES_GET), 1);
    assert_string_equal(req(fx, 2)->target,
                        "/bigquery/v2/projects/my-proj/queries");
    assert_string_equal(dt_request_header(fx->p, req(fx, 2), "Authorization"),
                        "Bearer tok-1");
    /* a fresh requestId per query */
    q1 = body_json(fx, 1);
    q2 = body_json(fx, 2);
    assert_string_not_equal(
        json_string_value(json_object_get(q1, "requestId")),
        json_string_value(json_object_get(q2, "requestId")));
}

static void three_column_table_breaks_ties_by_contenido(void **state)
{
    fx_t *fx = *state;
    datos_latest_t *l;
    datos_err_t err = {0};
    datos_table_info_t info;
    const char *sql;

    dt_server_standing(fx->srv, "GET", TABLES_GET, 200, TABLE_3COL);
    dt_server_json(fx->srv, 200, TOKEN("tok-1", 3600));
    dt_server_json(fx->srv, 200, page(fx->p, "r", 0, 3, NULL, NULL));
    assert_int_equal(fetch(fx, &l, &err), APR_SUCCESS);
    sql = json_string_value(json_object_get(body_json(fx, 1), "query"));
    assert_null(strstr(sql, "publish_time"));
    assert_null(strstr(sql, "message_id"));
    assert_non_null(
        strstr(sql, "ORDER BY timestamp DESC, contenido DESC) = 1"));
    memset(&info, 0, sizeof(info));
    assert_string_equal(
        sql,
        datos_bq_latest_sql(fx->p, "`my-proj.latam_dataset.datos`", 7, &info));
    /* the table as the loader makes it keeps the full rule */
    info.has_publish_time = info.has_message_id = 1;
    assert_non_null(strstr(
        datos_bq_latest_sql(fx->p, "`t`", 7, &info),
        "ORDER BY timestamp DESC, publish_time DESC, message_id DESC) = 1"));
}

static void table_not_holding_the_record_is_a_config_error(void **state)
{
    fx_t *fx = *state;
    datos_latest_t *l;
    datos_err_t err = {0};
    static const struct {
        const char *body;
        const char *says;
    } cases[] = {
        {"{\"location\":\"US\",\"schema\":{\"fields\":[{\"name\":\"id\",\"type\":\"STRING\"},"
         "{\"name\":\"timestamp\",\"type\":\"TIMESTAMP\"}]}}",
         "column contenido (STRING) is missing"},
        {"{\"location\":\"US\",\"schema\":{\"fields\":[{\"name\":\"id\",\"type\":\"INTEGER\"},"
         "{\"name\":\"contenido\",\"type\":\"STRING\"},{\"name\":\"timestamp\",\"type\":\"TIMESTAMP\"}]}}",
         "column id is INTEGER, not STRING"},
        {"{\"location\":\"US\",\"schema\":{\"fields\":[{\"name\":\"id\",\"type\":\"STRING\"},"
         "{\"name\":\"contenido\",\"type\":\"STRING\",\"mode\":\"REQUIRED\"},"
         "{\"name\":\"timestamp\",\"type\":\"TIMESTAMP\"}]}}",
         "column contenido is REQUIRED"},
        {"{\"location\":\"US\",\"schema\":{\"fields\":[{\"name\":\"id\",\"type\":\"STRING\"},"
         "{\"name\":\"contenido\",\"type\":\"STRING\"},{\"name\":\"timestamp\",\"type\":\"STRING\"}]}}",
         "column timestamp is STRING, not TIMESTAMP"},
        {"{\"location\":\"US\",\"schema\":{\"fields\":[{\"name\":\"id\",\"type\":\"STRING\",\"mode\":\"REPEATED\"},"
         "{\"name\":\"contenido\",\"type\":\"STRING\"},{\"name\":\"timestamp\",\"type\":\"TIMESTAMP\"}]}}",
         "column id is REPEATED"},
        {"{\"location\":\"US\",\"schema\":{\"fields\":[{\"name\":\"id\",\"type\":\"STRING\"},"
         "{\"name\":\"contenido\",\"type\":\"STRING\"},{\"name\":\"timestamp\",\"type\":\"TIMESTAMP\"},"
         "{\"name\":\"publish_time\",\"type\":\"STRING\"}]}}",
         "column publish_time is STRING, not TIMESTAMP"},
    };
    size_t i;

    dt_server_json(fx->srv, 200, TOKEN("tok-1", 3600));
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        dt_server_standing(fx->srv, "GET", TABLES_GET, 200, cases[i].body);
        assert_int_equal(fetch(fx, &l, &err), DATOS_ECONFIG);
        if (!strstr(err.message, cases[i].says)) {
            fail_msg("case %d: '%s' does not say '%s'", (int)i, err.message,
                     cases[i].says);
        }
    }
    /* no query was sent for a table that cannot answer */
    for (i = 0; i < (size_t)dt_server_count(fx->srv); i++) {
        assert_string_equal(req(fx, (int)i)->target, "/token");
    }
    /* a table fixed by its owner is read again, without a restart */
    dt_server_standing(fx->srv, "GET", TABLES_GET, 200, TABLE_5COL);
    dt_server_json(fx->srv, 200, page(fx->p, "r", 0, 3, NULL, NULL));
    assert_int_equal(fetch(fx, &l, &err), APR_SUCCESS);
}

static void missing_table_is_rejected(void **state)
{
    fx_t *fx = *state;
    datos_latest_t *l;
    datos_err_t err = {0};

    dt_server_standing(
        fx->srv, "GET", TABLES_GET, 404,
        "{\"error\":{\"code\":404,\"message\":\"Not found: Table my-proj:latam_dataset.datos\","
        "\"errors\":[{\"reason\":\"notFound\",\"message\":\"Not found\"}],"
        "\"status\":\"NOT_FOUND\"}}");
    dt_server_json(fx->srv, 200, TOKEN("tok-1", 3600));
    assert_int_equal(fetch(fx, &l, &err), DATOS_EREJECTED);
    assert_non_null(strstr(err.message, "tables.get"));
    assert_non_null(strstr(err.message, "Not found: Table"));
}

static void location_from_conf_and_bytes_billed(void **state)
{
    fx_t *fx = *state;
    datos_latest_t *l;
    datos_err_t err = {0};
    json_t *q;

    fx->conf.location = "southamerica-east1";
    fx->conf.max_bytes_billed = APR_INT64_C(10) * 1024 * 1024;
    dt_server_json(fx->srv, 200, TOKEN("tok-1", 3600));
    dt_server_json(fx->srv, 200, page(fx->p, "r", 0, 3, NULL, NULL));
    assert_int_equal(fetch(fx, &l, &err), APR_SUCCESS);
    assert_int_equal(dt_server_count(fx->srv), 2);
    q = body_json(fx, 1);
    assert_string_equal(json_string_value(json_object_get(q, "location")),
                        "southamerica-east1");
    assert_string_equal(
        json_string_value(json_object_get(q, "maximumBytesBilled")),
        "10485760");
}

static void poll_until_complete(void **state)
{
    fx_t *fx = *state;
    datos_latest_t *l;
    datos_err_t err = {0};
    dt_request_t *r;
    const char *t;

    fx->conf.location = "US";
    dt_server_json(fx->srv, 200, TOKEN("tok-1", 3600));
    dt_server_json(fx->srv, 200, incomplete(fx->p, "job_abc"));
    dt_server_json(fx->srv, 200, incomplete(fx->p, "job_abc"));
    dt_server_json(fx->srv, 200, page(fx->p, "r", 0, 3, NULL, "job_abc"));
    assert_int_equal(fetch(fx, &l, &err), APR_SUCCESS);
    assert_int_equal(l->queries, 1);
    assert_int_equal(l->polls, 2);
    assert_int_equal(l->rows->nelts, 3);
    r = req(fx, 2);
    assert_string_equal(r->method, "GET");
    t = r->target;
    assert_memory_equal(
        t,
        "/bigquery/v2/projects/my-proj/queries/job_abc?location=US&timeoutMs=",
        strlen(
            "/bigquery/v2/projects/my-proj/queries/job_abc?location=US&timeoutMs="));
    assert_non_null(
        strstr(t, "&maxResults=3&formatOptions.useInt64Timestamp=true"));
    assert_null(strstr(t, "pageToken"));
    assert_string_equal(dt_request_header(fx->p, r, "Authorization"),
                        "Bearer tok-1");
    assert_string_equal(req(fx, 3)->method, "GET");
}

static void poll_past_deadline(void **state)
{
    fx_t *fx = *state;
    datos_latest_t *l;
    datos_err_t err = {0};
    int i;

    fx->conf.location = "US";
    fx->conf.timeout = apr_time_from_msec(400);
    dt_server_json(fx->srv, 200, TOKEN("tok-1", 3600));
    for (i = 0; i < 40; i++) {
        dt_server_json(fx->srv, 200, incomplete(fx->p, "job_slow"));
    }
    /* Polling past the deadline would use up the script and end in its
     * "unscripted" 500, not APR_TIMEUP. */
    assert_int_equal(fetch(fx, &l, &err), APR_TIMEUP);
    assert_null(l);
    /* pauses grow: 20, 40, 80, 160 ms... so only a handful of polls (a
     * slow machine makes fewer) */
    assert_true(dt_server_count(fx->srv) <= 8);
}

static void incomplete_without_job(void **state)
{
    fx_t *fx = *state;
    datos_latest_t *l;
    datos_err_t err = {0};

    fx->conf.location = "US";
    dt_server_json(fx->srv, 200, TOKEN("tok-1", 3600));
    dt_server_json(fx->srv, 200, "{\"jobComplete\":false}");
    assert_int_equal(fetch(fx, &l, &err), DATOS_EMALFORMED);
    assert_non_null(strstr(err.message, "names no job"));
}

static void page_token_followed(void **state)
{
    fx_t *fx = *state;
    datos_latest_t *l;
    datos_err_t err = {0};
    const char *t;

    fx->conf.location = "US";
    dt_server_json(fx->srv, 200, TOKEN("tok-1", 3600));
    dt_server_json(fx->srv, 200, page(fx->p, "r", 0, 1, "BH J/+=", "job_p"));
    dt_server_json(fx->srv, 200, page(fx->p, "r", 1, 2, NULL, "job_p"));
    assert_int_equal(fetch(fx, &l, &err), APR_SUCCESS);
    assert_int_equal(l->rows->nelts, 3);
    assert_int_equal(l->queries, 1);
    assert_int_equal(l->polls, 1);
    assert_int_equal(l->bytes_processed, 100); /* counted once per query */
    assert_false(l->truncated);
    t = req(fx, 2)->target;
    assert_memory_equal(
        t, "/bigquery/v2/projects/my-proj/queries/job_p?location=US&",
        strlen("/bigquery/v2/projects/my-proj/queries/job_p?location=US&"));
    assert_non_null(strstr(t, "&pageToken=BH%20J%2F%2B%3D"));
    assert_string_equal(row_id(l, 2), "r2");
}

static void payload_cap_truncates(void **state)
{
    fx_t *fx = *state;
    datos_latest_t *l;
    datos_err_t err = {0};

    fx->conf.location = "US";
    fx->conf.max_rows = 10;
    /* {"datos":[ + two rendered rows (68 bytes, then 69 with the comma) + ]} */
    fx->conf.max_payload = 12 + 68 + 69;
    dt_server_json(fx->srv, 200, TOKEN("tok-1", 3600));
    dt_server_json(fx->srv, 200, page(fx->p, "r", 0, 2, "more", NULL));
    dt_server_json(fx->srv, 200, page(fx->p, "r", 2, 2, NULL, NULL));
    assert_int_equal(fetch(fx, &l, &err), APR_SUCCESS);
    assert_true(l->truncated);
    assert_int_equal(l->rows->nelts, 2);
    assert_int_equal(l->queries, 1); /* no widening after a truncation */
    assert_int_equal(dt_server_count(fx->srv), 2);
}

/* A complete answer of n rows whose contenido is `width` bytes of 'x'. */
static const char *wide_page(apr_pool_t *p, int n, apr_size_t width,
                             const char *page_token)
{
    char *fill = apr_palloc(p, width + 1);
    apr_array_header_t *parts = apr_array_make(p, n + 2, sizeof(const char *));
    int i;

    memset(fill, 'x', width);
    fill[width] = '\0';
    for (i = 0; i < n; i++) {
        APR_ARRAY_PUSH(parts, const char *) = apr_psprintf(
            p,
            "%s{\"f\":[{\"v\":\"w%d\"},{\"v\":\"%s\"},{\"v\":\"%" APR_INT64_T_FMT
            "\"}]}",
            i ? "," : "", i, fill, (apr_int64_t)(TS0 - (long long)i * 1000000));
    }
    return apr_psprintf(
        p,
        "{\"kind\":\"bigquery#queryResponse\"," SCHEMA ","
        "\"jobReference\":{\"projectId\":\"my-proj\",\"jobId\":\"job_w\","
        "\"location\":\"US\"},\"totalRows\":\"%d\",%s%s%s\"rows\":[%s],"
        "\"jobComplete\":true}",
        n, page_token ? "\"pageToken\":\"" : "", page_token ? page_token : "",
        page_token ? "\"," : "", apr_array_pstrcat(p, parts, 0));
}

/* Rendered size of a wide_page row: {"id":"wN","contenido":"x..x","timestamp":"..."} */
#define WIDE_ROW(width) (7 + 2 + 14 + (width) + 2 + 14 + 25 + 2)

static void payload_cap_holds_within_a_page(void **state)
{
    fx_t *fx = *state;
    datos_latest_t *l;
    datos_err_t err = {0};
    const apr_size_t width = 1000;

    fx->conf.location = "US";
    fx->conf.max_rows = 10;
    /* three rows fit, the fourth is one byte too many */
    fx->conf.max_payload =
        12 + WIDE_ROW(width) + 2 * (WIDE_ROW(width) + 1) + WIDE_ROW(width);
    dt_server_json(fx->srv, 200, TOKEN("tok-1", 3600));
    dt_server_json(fx->srv, 200, wide_page(fx->p, 10, width, NULL));
    assert_int_equal(fetch(fx, &l, &err), APR_SUCCESS);
    assert_true(l->truncated);
    assert_int_equal(l->rows->nelts, 3);
    assert_int_equal(dt_server_count(fx->srv), 2);
}

static void huge_page_is_asked_for_in_smaller_pages(void **state)
{
    fx_t *fx = *state;
    datos_latest_t *l;
    datos_err_t err = {0};
    const apr_size_t width = 200000;
    dt_request_t *r;

    fx->conf.location = "US";
    fx->conf.max_rows = 20;
    fx->conf.max_payload = 12 + 3 * (WIDE_ROW(width) + 1);
    /* 20 rows of 200 kB: 4 MB, beyond the 2 x payload + 1 MiB a page may
     * take; the job named at its start is asked for 10 rows, which fit. */
    dt_server_json(fx->srv, 200, TOKEN("tok-1", 3600));
    dt_server_json(fx->srv, 200, wide_page(fx->p, 20, width, "t1"));
    dt_server_json(fx->srv, 200, wide_page(fx->p, 10, width, "t2"));
    assert_int_equal(fetch(fx, &l, &err), APR_SUCCESS);
    assert_true(l->truncated);
    assert_int_equal(l->rows->nelts, 3);
    assert_string_equal(row_id(l, 0), "w0");
    assert_int_equal(dt_server_count(fx->srv), 3);
    r = req(fx, 2);
    assert_non_null(strstr(r->target, "/queries/job_w?"));
    assert_non_null(strstr(r->target, "location=US"));
    assert_non_null(strstr(r->target, "maxResults=10"));
    assert_null(strstr(r->target, "pageToken"));
    assert_null(strstr(r->target, "startIndex"));
}

static void huge_later_page_resumes_at_its_index(void **state)
{
    fx_t *fx = *state;
    datos_latest_t *l;
    datos_err_t err = {0};
    dt_request_t *r;

    fx->conf.location = "US";
    fx->conf.max_rows = 6;
    fx->conf.max_payload = 4096;
    dt_server_json(fx->srv, 200, TOKEN("tok-1", 3600));
    dt_server_json(fx->srv, 200, page(fx->p, "r", 0, 2, "t1", "job_w"));
    dt_server_json(fx->srv, 200, wide_page(fx->p, 6, 300000, NULL));
    dt_server_json(fx->srv, 200, page(fx->p, "r", 2, 4, NULL, "job_w"));
    assert_int_equal(fetch(fx, &l, &err), APR_SUCCESS);
    assert_false(l->truncated);
    assert_int_equal(l->rows->nelts, 6);
    assert_int_equal(dt_server_count(fx->srv), 4);
    r = req(fx, 2);
    assert_non_null(strstr(r->target, "pageToken=t1"));
    assert_non_null(strstr(r->target, "maxResults=6"));
    r = req(fx, 3);
    assert_non_null(strstr(r->target, "startIndex=2"));
    assert_non_null(strstr(r->target, "maxResults=3"));
    assert_null(strstr(r->target, "pageToken"));
}

static void single_row_larger_than_the_cap_ends_the_answer(void **state)
{
    fx_t *fx = *state;
    datos_latest_t *l;
    datos_err_t err = {0};

    fx->conf.location = "US";
    fx->conf.max_rows = 2;
    fx->conf.max_payload = 4096;
    dt_server_json(fx->srv, 200, TOKEN("tok-1", 3600));
    dt_server_json(fx->srv, 200, wide_page(fx->p, 2, 700000, NULL));
    dt_server_json(fx->srv, 200, wide_page(fx->p, 1, 1200000, NULL));
    assert_int_equal(fetch(fx, &l, &err), APR_SUCCESS);
    assert_true(l->truncated);
    assert_int_equal(l->rows->nelts, 0);
    assert_int_equal(dt_server_count(fx->srv), 3);
    assert_non_null(strstr(req(fx, 2)->target, "maxResults=1"));
}

static void huge_page_without_a_job_fails(void **state)
{
    fx_t *fx = *state;
    datos_latest_t *l;
    datos_err_t err = {0};
    const char *full = wide_page(fx->p, 1, 1100000, NULL);
    /* the same answer with its jobReference taken out */
    const char *ref = strstr(full, "\"jobReference\"");
    const char *body = apr_pstrcat(
        fx->p, apr_pstrmemdup(fx->p, full, (apr_size_t)(ref - full)),
        strchr(ref, '}') + 2, NULL);

    fx->conf.location = "US";
    fx->conf.max_payload = 4096;
    dt_server_json(fx->srv, 200, TOKEN("tok-1", 3600));
    dt_server_json(fx->srv, 200, body);
    assert_int_equal(fetch(fx, &l, &err), DATOS_ETOOLARGE);
    assert_non_null(strstr(err.message, "names no job"));
}

static void repeated_page_token_is_malformed(void **state)
{
    fx_t *fx = *state;
    datos_latest_t *l;
    datos_err_t err = {0};

    fx->conf.location = "US";
    fx->conf.max_rows = 10;
    dt_server_json(fx->srv, 200, TOKEN("tok-1", 3600));
    dt_server_json(fx->srv, 200, page(fx->p, "r", 0, 1, "same", NULL));
    dt_server_json(fx->srv, 200, page(fx->p, "r", 1, 1, "other", NULL));
    dt_server_json(fx->srv, 200, page(fx->p, "r", 2, 1, "same", NULL));
    assert_int_equal(fetch(fx, &l, &err), DATOS_EMALFORMED);
    assert_non_null(strstr(err.message, "repeats a pageToken"));
    assert_int_equal(dt_server_count(fx->srv), 4);
}

static void page_count_is_bounded(void **state)
{
    fx_t *fx = *state;
    datos_latest_t *l;
    datos_err_t err = {0};
    int i;

    fx->conf.location = "US";
    fx->conf.max_rows = 2;
    dt_server_json(fx->srv, 200, TOKEN("tok-1", 3600));
    /* empty pages that always promise another: 2 rows + 8 pages at most */
    for (i = 0; i < 12; i++) {
        dt_server_json(
            fx->srv, 200,
            page(fx->p, "r", 0, 0, apr_psprintf(fx->p, "t%d", i), NULL));
    }
    assert_int_equal(fetch(fx, &l, &err), DATOS_EMALFORMED);
    assert_non_null(strstr(err.message, "more than 10 pages"));
    assert_int_equal(dt_server_count(fx->srv), 1 + 10);
}

static const char *param_days(fx_t *fx, int i)
{
    json_t *q = body_json(fx, i);
    json_t *ps = json_object_get(q, "queryParameters");
    size_t k;

    for (k = 0; k < json_array_size(ps); k++) {
        json_t *pr = json_array_get(ps, k);
        if (!strcmp(json_string_value(json_object_get(pr, "name")),
                    "lookback_days")) {
            return json_string_value(json_object_get(
                json_object_get(pr, "parameterValue"), "value"));
        }
    }
    return NULL;
}

static void widening_stops_when_enough(void **state)
{
    fx_t *fx = *state;
    datos_latest_t *l;
    datos_err_t err = {0};

    fx->conf.location = "US";
    dt_server_json(fx->srv, 200, TOKEN("tok-1", 3600));
    dt_server_json(fx->srv, 200, page(fx->p, "a", 0, 1, NULL, "j1"));
    dt_server_json(fx->srv, 200, page(fx->p, "b", 0, 2, NULL, "j2"));
    dt_server_json(fx->srv, 200, page(fx->p, "c", 0, 3, NULL, "j3"));
    assert_int_equal(fetch(fx, &l, &err), APR_SUCCESS);
    assert_int_equal(l->queries, 3);
    assert_int_equal(l->window_days, 7 * 64);
    assert_int_equal(l->bytes_processed, 300);
    assert_int_equal(l->bytes_billed, 3 * DATOS_BQ_MIN_BILLED);
    assert_int_equal(l->pages, 3);
    assert_int_equal(l->rows->nelts, 3);
    /* the widest window's rows replace the narrower ones */
    assert_string_equal(row_id(l, 0), "c0");
    assert_string_equal(row_id(l, 2), "c2");
    assert_string_equal(param_days(fx, 1), "7");
    assert_string_equal(param_days(fx, 2), "56");
    assert_string_equal(param_days(fx, 3), "448");
    assert_int_equal(dt_server_count(fx->srv), 4);
}

static void widening_to_whole_table(void **state)
{
    fx_t *fx = *state;
    datos_latest_t *l;
    datos_err_t err = {0};
    json_t *q;

    fx->conf.location = "US";
    dt_server_json(fx->srv, 200, TOKEN("tok-1", 3600));
    dt_server_json(fx->srv, 200, page(fx->p, "a", 0, 1, NULL, NULL));
    dt_server_json(fx->srv, 200, page(fx->p, "b", 0, 1, NULL, NULL));
    dt_server_json(fx->srv, 200, page(fx->p, "c", 0, 2, NULL, NULL));
    dt_server_json(fx->srv, 200, page(fx->p, "d", 0, 2, NULL, NULL));
    assert_int_equal(fetch(fx, &l, &err), APR_SUCCESS);
    assert_int_equal(l->queries, 4);
    assert_int_equal(l->window_days, 0);
    assert_int_equal(l->rows->nelts, 2);
    assert_string_equal(row_id(l, 0), "d0");
    q = body_json(fx, 4);
    assert_null(param_days(fx, 4));
    assert_non_null(
        strstr(json_string_value(json_object_get(q, "query")), " WHERE TRUE "));
    assert_int_equal(json_array_size(json_object_get(q, "queryParameters")), 1);
    assert_int_equal(dt_server_count(fx->srv), 5);
}

#define BYTES_LIMIT                                                                             \
    "{\"error\":{\"code\":400,\"message\":\"Query exceeded limit for bytes billed: 10485760. "  \
    "31457280 or higher required.\",\"errors\":[{\"message\":\"Query exceeded limit for bytes " \
    "billed\",\"domain\":\"global\",\"reason\":\"bytesBilledLimitExceeded\"}],"                 \
    "\"status\":\"INVALID_ARGUMENT\"}}"

static void bytes_limit_on_widening_serves_rows(void **state)
{
    fx_t *fx = *state;
    datos_latest_t *l;
    datos_err_t err = {0};

    fx->conf.location = "US";
    fx->conf.max_bytes_billed = APR_INT64_C(10485760);
    dt_server_json(fx->srv, 200, TOKEN("tok-1", 3600));
    dt_server_json(fx->srv, 200, page(fx->p, "a", 0, 1, NULL, NULL));
    dt_server_json(fx->srv, 200, page(fx->p, "b", 0, 2, NULL, NULL));
    dt_server_json(fx->srv, 400, BYTES_LIMIT);
    assert_int_equal(fetch(fx, &l, &err), APR_SUCCESS);
    assert_true(l->capped);
    assert_int_equal(l->queries, 3);
    assert_int_equal(l->rows->nelts, 2);
    assert_string_equal(row_id(l, 0), "b0");
    assert_int_equal(dt_server_count(fx->srv), 4);
}

static void bytes_limit_on_first_query_fails(void **state)
{
    fx_t *fx = *state;
    datos_latest_t *l;
    datos_err_t err = {0};

    fx->conf.location = "US";
    fx->conf.max_bytes_billed = APR_INT64_C(10485760);
    dt_server_json(fx->srv, 200, TOKEN("tok-1", 3600));
    dt_server_json(fx->srv, 400, BYTES_LIMIT);
    assert_int_equal(fetch(fx, &l, &err), DATOS_EBYTESLIMIT);
    assert_null(l);
    assert_string_equal(err.reason, "bytesBilledLimitExceeded");
    assert_int_equal(err.http_status, 400);
    assert_non_null(strstr(err.message, "jobs.query: HTTP 400"));
}

#define UNAUTH                                                                                  \
    "{\"error\":{\"code\":401,\"message\":\"Request had invalid authentication credentials.\"," \
    "\"errors\":[{\"reason\":\"authError\"}],\"status\":\"UNAUTHENTICATED\"}}"

static void unauthorized_refreshes_once(void **state)
{
    fx_t *fx = *state;
    datos_latest_t *l;
    datos_err_t err = {0};
    dt_request_t *r;

    fx->conf.location = "US";
    dt_server_json(fx->srv, 200, TOKEN("tok-1", 3600));
    dt_server_json(fx->srv, 401, UNAUTH);
    dt_server_json(fx->srv, 200, TOKEN("tok-2", 3600));
    dt_server_json(fx->srv, 200, page(fx->p, "r", 0, 3, NULL, NULL));
    assert_int_equal(fetch(fx, &l, &err), APR_SUCCESS);
    assert_int_equal(l->rows->nelts, 3);
    assert_string_equal(req(fx, 2)->target, "/token");
    r = req(fx, 3);
    assert_string_equal(r->target, "/bigquery/v2/projects/my-proj/queries");
    assert_string_equal(dt_request_header(fx->p, r, "Authorization"),
                        "Bearer tok-2");
    /* the replay is the same request: same requestId */
    assert_string_equal(req(fx, 1)->body, req(fx, 3)->body);

    /* the refreshed token is what the cache now holds */
    dt_server_json(fx->srv, 200, page(fx->p, "r", 0, 3, NULL, NULL));
    assert_int_equal(fetch(fx, &l, &err), APR_SUCCESS);
    assert_string_equal(dt_request_header(fx->p, req(fx, 4), "Authorization"),
                        "Bearer tok-2");
}

static void unauthorized_twice_fails(void **state)
{
    fx_t *fx = *state;
    datos_latest_t *l;
    datos_err_t err = {0};

    fx->conf.location = "US";
    dt_server_json(fx->srv, 200, TOKEN("tok-1", 3600));
    dt_server_json(fx->srv, 401, UNAUTH);
    dt_server_json(fx->srv, 200, TOKEN("tok-2", 3600));
    dt_server_json(fx->srv, 401, UNAUTH);
    assert_int_equal(fetch(fx, &l, &err), DATOS_EAUTH);
    assert_int_equal(err.http_status, 401);
    assert_string_equal(err.reason, "authError");
    assert_int_equal(dt_server_count(fx->srv), 4);
    /* no secret in the message */
    assert_null(strstr(err.message, "tok-"));
}

static void token_endpoint_errors(void **state)
{
    fx_t *fx = *state;
    datos_latest_t *l;
    datos_err_t err = {0};

    dt_server_json(fx->srv, 400,
                   "{\"error\":\"invalid_grant\",\"error_description\":"
                   "\"Invalid JWT Signature.\"}");
    assert_int_equal(fetch(fx, &l, &err), DATOS_EAUTH);
    assert_string_equal(err.reason, "invalid_grant");
    assert_non_null(strstr(
        err.message, "/token: HTTP 400 invalid_grant: Invalid JWT Signature."));
    assert_null(strstr(err.message, "eyJ"));

    dt_server_json(fx->srv, 503, "<html>down</html>");
    assert_int_equal(fetch(fx, &l, &err), DATOS_EBACKEND);
    assert_int_equal(err.http_status, 503);
}

typedef struct {
    int status;
    const char *headers;
    const char *body;
    apr_status_t want;
    int retry_after;
} map_case_t;

static void status_mapping(void **state)
{
    fx_t *fx = *state;
    static const map_case_t cases[] = {
        {503, NULL, "<!DOCTYPE html><title>Error 503</title>", DATOS_EBACKEND,
         0},
        {500, NULL,
         "{\"error\":{\"code\":500,\"message\":\"x\",\"errors\":[{\"reason\":\"backendError\"}]}}",
         DATOS_EBACKEND, 0},
        {502, NULL, "", DATOS_EBACKEND, 0},
        {429, "Retry-After: 3\r\n",
         "{\"error\":{\"code\":429,\"message\":\"slow down\"}}",
         DATOS_ERATELIMIT, 3},
        {403, NULL,
         "{\"error\":{\"code\":403,\"message\":\"Exceeded rate limits\","
         "\"errors\":[{\"reason\":\"rateLimitExceeded\"}]}}",
         DATOS_ERATELIMIT, 0},
        {403, NULL,
         "{\"error\":{\"code\":403,\"message\":\"Quota\","
         "\"errors\":[{\"reason\":\"quotaExceeded\"}]}}",
         DATOS_EQUOTA, 0},
        {404, NULL,
         "{\"error\":{\"code\":404,\"message\":\"Not found: Table my-proj:latam_dataset.datos\","
         "\"errors\":[{\"reason\":\"notFound\"}]}}",
         DATOS_EREJECTED, 0},
        {200, NULL, "{\"jobComplete\":true}", DATOS_EMALFORMED, 0},
        {200, NULL, "<html>", DATOS_EMALFORMED, 0},
    };
    size_t i;

    fx->conf.location = "US";
    dt_server_json(fx->srv, 200, TOKEN("tok-1", 3600));
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        datos_latest_t *l;
        datos_err_t err = {0};
        dt_response_t r;
        apr_status_t rv;

        memset(&r, 0, sizeof(r));
        r.status = cases[i].status;
        r.headers = cases[i].headers;
        r.body = cases[i].body;
        dt_server_push(fx->srv, &r);
        rv = fetch(fx, &l, &err);
        if (rv != cases[i].want) {
            fail_msg("case %zu: got %d, want %d (%s)", i, rv, cases[i].want,
                     err.message);
        }
        assert_int_equal(err.rv, rv);
        assert_int_equal(err.http_status, cases[i].status);
        assert_int_equal(err.retry_after,
                         apr_time_from_sec(cases[i].retry_after));
        assert_null(l);
    }
}

static void timeout_mapping(void **state)
{
    fx_t *fx = *state;
    datos_latest_t *l;
    datos_err_t err = {0};
    dt_response_t r;

    fx->conf.location = "US";
    fx->conf.timeout = apr_time_from_msec(400);
    dt_server_json(fx->srv, 200, TOKEN("tok-1", 3600));
    memset(&r, 0, sizeof(r));
    r.hang = 1;
    dt_server_push(fx->srv, &r);
    /* only the timeout ends the hang with APR_TIMEUP (DT_HANG_MS) */
    assert_int_equal(fetch(fx, &l, &err), APR_TIMEUP);
    assert_non_null(strstr(err.message, "jobs.query: POST"));
}

static void rows_normalised(void **state)
{
    fx_t *fx = *state;
    datos_latest_t *l;
    datos_err_t err = {0};
    const char *body =
        "{\"jobComplete\":true," SCHEMA ",\"rows\":["
        "{\"f\":[{\"v\":\"b\"},{\"v\":null},{\"v\":\"100\"}]},"
        "{\"f\":[{\"v\":\"c\"},{\"v\":null},{\"v\":\"300\"}]},"
        "{\"f\":[{\"v\":\"a\"},{\"v\":null},{\"v\":\"100\"}]},"
        "{\"f\":[{\"v\":\"c\"},{\"v\":\"old\"},{\"v\":\"50\"}]},"
        "{\"f\":[{\"v\":\"ab\"},{\"v\":null},{\"v\":\"100\"}]}]}";

    fx->conf.location = "US";
    fx->conf.max_rows = 4;
    dt_server_json(fx->srv, 200, TOKEN("tok-1", 3600));
    dt_server_json(fx->srv, 200, body);
    assert_int_equal(fetch(fx, &l, &err), APR_SUCCESS);
    assert_int_equal(l->queries, 1);
    assert_int_equal(l->rows->nelts, 4);
    assert_string_equal(row_id(l, 0), "c");
    assert_null(APR_ARRAY_IDX(l->rows, 0, datos_row_t).contenido);
    assert_string_equal(row_id(l, 1), "a");
    assert_string_equal(row_id(l, 2), "ab");
    assert_string_equal(row_id(l, 3), "b");
}

static void billing_from_key_and_none(void **state)
{
    fx_t *fx = *state;
    datos_latest_t *l;
    datos_err_t err = {0};
    datos_creds_t *none;

    fx->conf.location = "US";
    fx->conf.project = NULL;
    dt_server_standing(
        fx->srv, "GET",
        "/bigquery/v2/projects/datos-test-project/datasets/latam_dataset/tables/datos",
        200, TABLE_5COL);
    dt_server_json(fx->srv, 200, TOKEN("tok-1", 3600));
    dt_server_json(fx->srv, 200, page(fx->p, "r", 0, 3, NULL, NULL));
    assert_int_equal(fetch(fx, &l, &err), APR_SUCCESS);
    assert_string_equal(req(fx, 1)->target,
                        "/bigquery/v2/projects/datos-test-project/queries");
    assert_non_null(
        strstr(json_string_value(json_object_get(body_json(fx, 1), "query")),
               "`datos-test-project.latam_dataset.datos`"));

    /* no credentials, no project: a configuration error before any call */
    assert_int_equal(datos_creds_load(fx->p, "none", NULL, 0, &none, &err),
                     APR_SUCCESS);
    fx->conf.creds = none;
    assert_int_equal(fetch(fx, &l, &err), DATOS_ECONFIG);
    assert_non_null(strstr(err.message, "no project"));
    assert_int_equal(dt_server_count(fx->srv), 2);

    /* no credentials: no Authorization header at all */
    fx->conf.project = "emu-proj";
    dt_server_standing(
        fx->srv, "GET",
        "/bigquery/v2/projects/emu-proj/datasets/latam_dataset/tables/datos",
        200, TABLE_5COL);
    dt_server_json(fx->srv, 200, page(fx->p, "r", 0, 3, NULL, NULL));
    assert_int_equal(fetch(fx, &l, &err), APR_SUCCESS);
    assert_null(dt_request_header(fx->p, req(fx, 2), "Authorization"));
    assert_string_equal(req(fx, 2)->target,
                        "/bigquery/v2/projects/emu-proj/queries");
}

static void metadata_credentials(void **state)
{
    fx_t *fx = *state;
    datos_latest_t *l;
    datos_err_t err = {0};
    datos_creds_t *md;
    dt_request_t *r;
    dt_response_t resp;

    setenv("GCE_METADATA_HOST",
           apr_psprintf(fx->p, "127.0.0.1:%d", dt_server_port(fx->srv)), 1);
    assert_int_equal(datos_creds_load(fx->p, NULL, datos_scopes_bigquery_pubsub,
                                      0, &md, &err),
                     APR_SUCCESS);
    assert_int_equal(datos_creds_kind(md), DATOS_CREDS_METADATA);
    fx->conf.creds = md;
    fx->conf.project = NULL;
    fx->conf.location = "US";
    dt_server_standing(
        fx->srv, "GET",
        "/bigquery/v2/projects/md-project-1/datasets/latam_dataset/tables/datos",
        200, TABLE_5COL);
    memset(&resp, 0, sizeof(resp));
    resp.status = 200;
    resp.headers =
        "Metadata-Flavor: Google\r\nContent-Type: application/text\r\n";
    resp.body = "md-project-1\n";
    dt_server_push(fx->srv, &resp);
    resp.headers = "Metadata-Flavor: Google\r\n";
    resp.body = TOKEN("md-tok", 3599);
    dt_server_push(fx->srv, &resp);
    dt_server_json(fx->srv, 200, page(fx->p, "r", 0, 3, NULL, NULL));
    dt_server_json(fx->srv, 200, page(fx->p, "r", 0, 3, NULL, NULL));
    assert_int_equal(fetch(fx, &l, &err), APR_SUCCESS);
    /* project and token are each asked once per process */
    assert_int_equal(fetch(fx, &l, &err), APR_SUCCESS);
    assert_int_equal(dt_server_count(fx->srv), 4);

    r = req(fx, 0);
    assert_string_equal(r->method, "GET");
    assert_string_equal(r->target, "/computeMetadata/v1/project/project-id");
    assert_string_equal(dt_request_header(fx->p, r, "Metadata-Flavor"),
                        "Google");
    r = req(fx, 1);
    /* every API the programs use, in one token */
    assert_string_equal(
        r->target,
        "/computeMetadata/v1/instance/service-accounts/default/"
        "token?scopes=https%3A%2F%2Fwww.googleapis.com%2Fauth%2Fbigquery"
        "%2Chttps%3A%2F%2Fwww.googleapis.com%2Fauth%2Fpubsub");
    assert_string_equal(dt_request_header(fx->p, r, "Metadata-Flavor"),
                        "Google");
    r = req(fx, 2);
    assert_string_equal(r->target,
                        "/bigquery/v2/projects/md-project-1/queries");
    assert_string_equal(dt_request_header(fx->p, r, "Authorization"),
                        "Bearer md-tok");
}


/* ------------------------------------------------ watermark refresh */

static apr_status_t fetch_since(fx_t *fx, apr_int64_t wm, datos_latest_t **out,
                                datos_err_t *err)
{
    datos_bq_t *bq;

    datos_err_clear(err);
    assert_int_equal(datos_bq_create(fx->p, &fx->conf, &bq, err), APR_SUCCESS);
    *out = NULL;
    return datos_bq_fetch_since(bq, fx->p, wm, out, err);
}

static void since_enough_rows_one_query(void **state)
{
    fx_t *fx = *state;
    datos_latest_t *l;
    datos_err_t err = {0};
    json_t *q;
    apr_int64_t wm = apr_time_now() - apr_time_from_sec(2 * 86400);

    wm -= wm % APR_INT64_C(86400000000); /* a day boundary */
    fx->conf.location = "US";
    dt_server_json(fx->srv, 200, TOKEN("tok-1", 3600));
    dt_server_json(fx->srv, 200, page(fx->p, "r", 0, 3, NULL, NULL));
    assert_int_equal(fetch_since(fx, wm, &l, &err), APR_SUCCESS);
    assert_int_equal(l->queries, 1);
    assert_int_equal(l->rows->nelts, 3);
    assert_int_equal(l->window_days, 3); /* 2 days and a bit, rounded up */
    q = body_json(fx, 1);
    assert_string_equal(
        json_string_value(json_object_get(q, "query")),
        datos_bq_since_sql(fx->p, "`my-proj.latam_dataset.datos`", NULL));
    {
        json_t *p0 = json_array_get(json_object_get(q, "queryParameters"), 0);
        char buf[DATOS_TS_BUFSIZE];
        datos_ts_format(wm, buf);
        buf[10] = ' ';
        assert_string_equal(json_string_value(json_object_get(p0, "name")),
                            "watermark");
        assert_string_equal(json_string_value(json_object_get(
                                json_object_get(p0, "parameterType"), "type")),
                            "TIMESTAMP");
        /* canonical text with six fraction digits */
        assert_string_equal(
            json_string_value(json_object_get(
                json_object_get(p0, "parameterValue"), "value")),
            apr_pstrcat(fx->p, apr_pstrmemdup(fx->p, buf, 19), ".000000+00:00",
                        NULL));
    }
    assert_int_equal(json_array_size(json_object_get(q, "queryParameters")), 2);
}

static void since_widens_past_the_watermark(void **state)
{
    fx_t *fx = *state;
    datos_latest_t *l;
    datos_err_t err = {0};
    apr_int64_t wm = apr_time_now() - apr_time_from_sec(10 * 86400);

    fx->conf.location = "US";
    dt_server_json(fx->srv, 200, TOKEN("tok-1", 3600));
    dt_server_json(fx->srv, 200, page(fx->p, "a", 0, 1, NULL, NULL));
    dt_server_json(fx->srv, 200, page(fx->p, "b", 0, 2, NULL, NULL));
    dt_server_json(fx->srv, 200, page(fx->p, "c", 0, 3, NULL, NULL));
    assert_int_equal(fetch_since(fx, wm, &l, &err), APR_SUCCESS);
    /* the 7-day window is narrower than the 11-day watermark: skipped */
    assert_int_equal(l->queries, 3);
    assert_null(param_days(fx, 1));
    assert_string_equal(param_days(fx, 2), "56");
    assert_string_equal(param_days(fx, 3), "448");
    assert_int_equal(l->window_days, 448);
    assert_string_equal(row_id(l, 0), "c0");
}

static void since_without_watermark_is_latest(void **state)
{
    fx_t *fx = *state;
    datos_latest_t *l;
    datos_err_t err = {0};

    fx->conf.location = "US";
    dt_server_json(fx->srv, 200, TOKEN("tok-1", 3600));
    dt_server_json(fx->srv, 200, page(fx->p, "r", 0, 3, NULL, NULL));
    assert_int_equal(fetch_since(fx, 0, &l, &err), APR_SUCCESS);
    assert_string_equal(param_days(fx, 1), "7");
    assert_int_equal(l->window_days, 7);
}

static void watermark_of_an_answer(void **state)
{
    fx_t *fx = *state;
    datos_latest_t l;
    datos_row_t rows[3];

    memset(&l, 0, sizeof(l));
    assert_int_equal(datos_bq_watermark(&l), 0);
    assert_int_equal(datos_bq_watermark(NULL), 0);
    memset(rows, 0, sizeof(rows));
    rows[0].timestamp_us = TS0; /* 2024-01-14T14:00:00Z */
    rows[1].timestamp_us = TS0 - APR_INT64_C(86400000000);
    rows[2].timestamp_us = TS0 + 5;
    l.rows = apr_array_make(fx->p, 3, sizeof(datos_row_t));
    for (int i = 0; i < 3; i++) {
        APR_ARRAY_PUSH(l.rows, datos_row_t) = rows[i];
    }
    /* 2024-01-13T00:00:00Z */
    assert_int_equal(datos_bq_watermark(&l), APR_INT64_C(1705104000000000));
    APR_ARRAY_IDX(l.rows, 1, datos_row_t).timestamp_us = -1;
    assert_int_equal(datos_bq_watermark(&l), -APR_INT64_C(86400000000));
}

/* ---------------------------------------------------- token cache */

static const char *token(fx_t *fx, datos_creds_t *c, int force,
                         apr_status_t want)
{
    datos_http_t *http;
    datos_err_t err = {0};
    const char *t = NULL;
    apr_status_t rv;

    datos_err_clear(&err);
    assert_int_equal(datos_http_create(fx->p, &fx->conf.http, &http, &err),
                     APR_SUCCESS);
    rv = datos_creds_token(c, http, fx->p,
                           apr_time_now() + apr_time_from_sec(30), force, &t,
                           &err);
    if (rv != want) {
        fail_msg("token: %d (%s)", rv, err.message ? err.message : "");
    }
    return t;
}

static void token_cache(void **state)
{
    fx_t *fx = *state;

    dt_server_json(fx->srv, 200, TOKEN("t1", 3600));
    dt_server_json(fx->srv, 200, TOKEN("t2", 100));
    dt_server_json(fx->srv, 200, TOKEN("t3", 1));
    dt_server_json(fx->srv, 200, TOKEN("t4", 3600));
    dt_server_json(fx->srv, 200, TOKEN("t5", 3600));

    assert_string_equal(token(fx, fx->creds, 0, APR_SUCCESS), "t1");
    assert_string_equal(token(fx, fx->creds, 0, APR_SUCCESS), "t1");
    assert_int_equal(dt_server_count(fx->srv), 1);
    /* forced after an API 401 */
    assert_string_equal(token(fx, fx->creds, 1, APR_SUCCESS), "t2");
    /* 100 s lifetime: refreshed 50 s before expiry, so still good now */
    assert_string_equal(token(fx, fx->creds, 0, APR_SUCCESS), "t2");
    assert_int_equal(dt_server_count(fx->srv), 2);
    assert_string_equal(token(fx, fx->creds, 1, APR_SUCCESS), "t3");
    /* 1 s lifetime: refreshed once half of it has gone */
    usleep(600 * 1000);
    assert_string_equal(token(fx, fx->creds, 0, APR_SUCCESS), "t4");
    assert_int_equal(dt_server_count(fx->srv), 4);
    /* a new process forgets inherited tokens */
    assert_int_equal(datos_creds_child_init(fx->creds, fx->p), APR_SUCCESS);
    assert_string_equal(token(fx, fx->creds, 0, APR_SUCCESS), "t5");
    assert_string_equal(token(fx, fx->creds, 0, APR_SUCCESS), "t5");
    assert_int_equal(dt_server_count(fx->srv), 5);
}

static void token_failure_keeps_old_token(void **state)
{
    fx_t *fx = *state;

    dt_server_json(fx->srv, 200, TOKEN("t1", 3600));
    dt_server_json(fx->srv, 500, "{\"error\":\"internal_failure\"}");
    assert_string_equal(token(fx, fx->creds, 0, APR_SUCCESS), "t1");
    assert_null(token(fx, fx->creds, 1, DATOS_EBACKEND));
    assert_string_equal(token(fx, fx->creds, 0, APR_SUCCESS), "t1");
    assert_int_equal(dt_server_count(fx->srv), 2);
}

typedef struct {
    fx_t *fx;
    datos_creds_t *creds;
    int ok;
} thread_arg_t;

static void *APR_THREAD_FUNC token_thread(apr_thread_t *t, void *data)
{
    thread_arg_t *a = data;
    apr_pool_t *p;
    datos_http_t *http;
    datos_err_t err = {0};
    const char *tok = NULL;
    int i;

    apr_pool_create(&p, NULL);
    datos_err_clear(&err);
    if (datos_http_create(p, &a->fx->conf.http, &http, &err) == APR_SUCCESS) {
        for (i = 0; i < 20; i++) {
            if (datos_creds_token(a->creds, http, p,
                                  apr_time_now() + apr_time_from_sec(30), 0,
                                  &tok, &err)
                    == APR_SUCCESS
                && !strcmp(tok, "shared")) {
                a->ok++;
            }
        }
    }
    apr_pool_destroy(p);
    /* Returned, not apr_thread_exit(): pthread_exit unwinds past ASan's
     * stack bookkeeping and trips a false stack-buffer-overflow report. */
    (void)t;
    return NULL;
}

static void token_threads_share_one_refresh(void **state)
{
    fx_t *fx = *state;
    apr_thread_t *th[4];
    thread_arg_t args[4];
    apr_status_t rv;
    int i;

    dt_server_json(fx->srv, 200, TOKEN("shared", 3600));
    assert_int_equal(datos_creds_child_init(fx->creds, fx->p), APR_SUCCESS);
    for (i = 0; i < 4; i++) {
        args[i].fx = fx;
        args[i].creds = fx->creds;
        args[i].ok = 0;
        assert_int_equal(
            apr_thread_create(&th[i], NULL, token_thread, &args[i], fx->p),
            APR_SUCCESS);
    }
    for (i = 0; i < 4; i++) {
        apr_thread_join(&rv, th[i]);
        assert_int_equal(args[i].ok, 20);
    }
    assert_int_equal(dt_server_count(fx->srv), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        FX_TEST(fetch_simple_and_request_shape),
        FX_TEST(second_fetch_reuses_token_and_location),
        FX_TEST(location_from_conf_and_bytes_billed),
        FX_TEST(poll_until_complete),
        FX_TEST(poll_past_deadline),
        FX_TEST(incomplete_without_job),
        FX_TEST(page_token_followed),
        FX_TEST(payload_cap_truncates),
        FX_TEST(widening_stops_when_enough),
        FX_TEST(widening_to_whole_table),
        FX_TEST(bytes_limit_on_widening_serves_rows),
        FX_TEST(bytes_limit_on_first_query_fails),
        FX_TEST(unauthorized_refreshes_once),
        FX_TEST(unauthorized_twice_fails),
        FX_TEST(token_endpoint_errors),
        FX_TEST(status_mapping),
        FX_TEST(timeout_mapping),
        FX_TEST(rows_normalised),
        FX_TEST(billing_from_key_and_none),
        FX_TEST(metadata_credentials),
        FX_TEST(since_enough_rows_one_query),
        FX_TEST(since_widens_past_the_watermark),
        FX_TEST(since_without_watermark_is_latest),
        FX_TEST(watermark_of_an_answer),
        FX_TEST(three_column_table_breaks_ties_by_contenido),
        FX_TEST(table_not_holding_the_record_is_a_config_error),
        FX_TEST(missing_table_is_rejected),
        FX_TEST(payload_cap_holds_within_a_page),
        FX_TEST(huge_page_is_asked_for_in_smaller_pages),
        FX_TEST(huge_later_page_resumes_at_its_index),
        FX_TEST(single_row_larger_than_the_cap_ends_the_answer),
        FX_TEST(huge_page_without_a_job_fails),
        FX_TEST(repeated_page_token_is_malformed),
        FX_TEST(page_count_is_bounded),
        FX_TEST(token_cache),
        FX_TEST(token_failure_keeps_old_token),
        FX_TEST(token_threads_share_one_refresh),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
