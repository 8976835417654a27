/* test_bq_parse.c - jobs.query / getQueryResults answers and the error
 * envelope mapping (docs/google-apis.md sections 0.4, 2.3-2.5, 2.10). */
#include <string.h>

#include "dt_support.h"
#include "datos_bq_page.h"
#include "datos_google_classify.h"

#define SCHEMA                                                                             \
    "\"schema\":{\"fields\":[{\"name\":\"id\",\"type\":\"STRING\",\"mode\":\"REQUIRED\"}," \
    "{\"name\":\"contenido\",\"type\":\"STRING\",\"mode\":\"NULLABLE\"},"                  \
    "{\"name\":\"timestamp\",\"type\":\"TIMESTAMP\",\"mode\":\"REQUIRED\"}]}"

static apr_status_t parse(apr_pool_t *p, const char *body, datos_bq_page_t *pg,
                          datos_err_t *err)
{
    datos_err_clear(err);
    return datos_bq_parse_page(p, body, strlen(body), pg, err);
}

static const datos_row_t *row(const datos_bq_page_t *pg, int i)
{
    return &APR_ARRAY_IDX(pg->rows, i, datos_row_t);
}

/* jobs.query's answer says what the query billed; a value that is not
 * an int64 is a malformed answer. */
static void page_bytes_billed(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_bq_page_t pg;
    datos_err_t err = {0};

    assert_int_equal(
        parse(p,
              "{\"kind\":\"bigquery#queryResponse\"," SCHEMA ","
              "\"jobReference\":{\"jobId\":\"j\",\"location\":\"US\"},"
              "\"totalBytesProcessed\":\"1024\","
              "\"totalBytesBilled\":\"10485760\",\"jobComplete\":true}",
              &pg, &err),
        APR_SUCCESS);
    assert_int_equal(pg.total_bytes_billed, 10485760);
    assert_int_equal(parse(p,
                           "{\"kind\":\"bigquery#queryResponse\"," SCHEMA ","
                           "\"totalBytesBilled\":true,\"jobComplete\":true}",
                           &pg, &err),
                     DATOS_EMALFORMED);
}

static void page_complete(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_bq_page_t pg;
    datos_err_t err = {0};
    const char *body =
        "{\"kind\":\"bigquery#queryResponse\"," SCHEMA ","
        "\"jobReference\":{\"projectId\":\"my-proj\",\"jobId\":\"job_Xb3\",\"location\":\"US\"},"
        "\"totalRows\":\"2\","
        "\"rows\":[{\"f\":[{\"v\":\"789\"},{\"v\":\"Prueba autom\\u00e1tica\"},{\"v\":\"1705240800000000\"}]},"
        "{\"f\":[{\"v\":\"790\"},{\"v\":null},{\"v\":\"1705240801500000\"}]}],"
        "\"totalBytesProcessed\":\"1024\",\"jobComplete\":true,\"cacheHit\":false}";

    assert_int_equal(parse(p, body, &pg, &err), APR_SUCCESS);
    assert_true(pg.job_complete);
    assert_string_equal(pg.job_id, "job_Xb3");
    assert_string_equal(pg.location, "US");
    assert_null(pg.page_token);
    assert_int_equal(pg.total_bytes_processed, 1024);
    assert_int_equal(pg.total_bytes_billed, -1);
    assert_int_equal(pg.rows->nelts, 2);
    assert_string_equal(row(&pg, 0)->id, "789");
    assert_int_equal(row(&pg, 0)->id_len, 3);
    assert_string_equal(row(&pg, 0)->contenido, "Prueba autom\xc3\xa1tica");
    assert_int_equal(row(&pg, 0)->contenido_len, 18);
    assert_int_equal(row(&pg, 0)->timestamp_us, APR_INT64_C(1705240800000000));
    assert_null(row(&pg, 1)->contenido);
    assert_int_equal(row(&pg, 1)->timestamp_us, APR_INT64_C(1705240801500000));
    assert_int_equal(pg.row_bytes, 3 + 18 + 3);
}

static void page_incomplete(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_bq_page_t pg;
    datos_err_t err = {0};

    assert_int_equal(
        parse(
            p,
            "{\"kind\":\"bigquery#queryResponse\",\"jobReference\":"
            "{\"projectId\":\"my-proj\",\"jobId\":\"job_1\",\"location\":\"EU\"},"
            "\"jobComplete\":false}",
            &pg, &err),
        APR_SUCCESS);
    assert_false(pg.job_complete);
    assert_string_equal(pg.job_id, "job_1");
    assert_string_equal(pg.location, "EU");
    assert_non_null(pg.rows);
    assert_int_equal(pg.rows->nelts, 0);
    assert_int_equal(pg.total_bytes_processed, -1);
    /* an absent jobComplete is not complete */
    assert_int_equal(parse(p, "{}", &pg, &err), APR_SUCCESS);
    assert_false(pg.job_complete);
    assert_null(pg.job_id);
}

static void page_no_rows_and_token(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_bq_page_t pg;
    datos_err_t err = {0};

    /* rows omitted for an empty result */
    assert_int_equal(
        parse(p, "{" SCHEMA ",\"totalRows\":\"0\",\"jobComplete\":true}", &pg,
              &err),
        APR_SUCCESS);
    assert_non_null(pg.rows);
    assert_int_equal(pg.rows->nelts, 0);
    assert_int_equal(pg.row_bytes, 0);

    assert_int_equal(
        parse(p,
              "{" SCHEMA ",\"jobComplete\":true,\"pageToken\":\"BHJ==x\","
              "\"totalBytesProcessed\":77,"
              "\"rows\":[{\"f\":[{\"v\":\"a\"},{\"v\":\"\"},{\"v\":\"-1\"}]}]}",
              &pg, &err),
        APR_SUCCESS);
    assert_string_equal(pg.page_token, "BHJ==x");
    assert_int_equal(pg.total_bytes_processed, 77);
    assert_int_equal(pg.rows->nelts, 1);
    assert_string_equal(row(&pg, 0)->contenido, "");
    assert_int_equal(row(&pg, 0)->timestamp_us, -1);
    /* an empty pageToken is no token */
    assert_int_equal(
        parse(p, "{" SCHEMA ",\"jobComplete\":true,\"pageToken\":\"\"}", &pg,
              &err),
        APR_SUCCESS);
    assert_null(pg.page_token);
}

static void page_columns_reordered(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_bq_page_t pg;
    datos_err_t err = {0};
    const char *body =
        "{\"jobComplete\":true,\"schema\":{\"fields\":["
        "{\"name\":\"timestamp\",\"type\":\"TIMESTAMP\"},{\"name\":\"extra\",\"type\":\"INT64\"},"
        "{\"name\":\"contenido\",\"type\":\"STRING\"},{\"name\":\"id\",\"type\":\"STRING\"}]},"
        "\"rows\":[{\"f\":[{\"v\":\"1.7052408E9\"},{\"v\":{\"f\":[]}},{\"v\":\"c\"},{\"v\":\"id\\u0000x\"}]}]}";

    assert_int_equal(parse(p, body, &pg, &err), APR_SUCCESS);
    assert_int_equal(pg.rows->nelts, 1);
    assert_int_equal(row(&pg, 0)->id_len, 4);
    assert_memory_equal(row(&pg, 0)->id, "id\0x", 4);
    assert_string_equal(row(&pg, 0)->contenido, "c");
    assert_int_equal(row(&pg, 0)->timestamp_us, APR_INT64_C(1705240800000000));
}

static void malformed(apr_pool_t *p, const char *body, const char *needle)
{
    datos_bq_page_t pg;
    datos_err_t err = {0};

    memset(&pg, 0x5a, sizeof(pg));
    if (parse(p, body, &pg, &err) != DATOS_EMALFORMED) {
        fail_msg("accepted: %s", body);
    }
    assert_non_null(err.message);
    if (needle && !strstr(err.message, needle)) {
        fail_msg("message '%s' lacks '%s'", err.message, needle);
    }
    assert_int_equal(pg.job_complete, 0x5a5a5a5a); /* untouched */
}

static void page_malformed_shapes(void **state)
{
    apr_pool_t *p = DT_POOL(state);

    malformed(p, "", "not JSON");
    malformed(p, "<html>502</html>", "not JSON");
    malformed(p, "{\"jobComplete\":true", "not JSON");
    malformed(p, "[]", "not a JSON object");
    malformed(p, "{\"jobComplete\":\"yes\"}", "jobComplete");
    malformed(p, "{\"jobComplete\":true}", "schema");
    malformed(p, "{\"jobComplete\":true,\"schema\":{}}", "schema");
    malformed(
        p, "{\"jobComplete\":true,\"schema\":{\"fields\":[{\"name\":\"id\"}]}}",
        "contenido");
    malformed(p,
              "{\"jobComplete\":true,\"schema\":{\"fields\":["
              "{\"name\":\"id\",\"type\":\"INT64\"},{\"name\":\"contenido\"},"
              "{\"name\":\"timestamp\"}]}}",
              "id STRING");
    malformed(p, "{\"jobComplete\":true," SCHEMA ",\"rows\":{}}", "rows");
    malformed(p,
              "{\"jobComplete\":true," SCHEMA
              ",\"rows\":[{\"f\":[{\"v\":\"a\"}]}]}",
              "row 0: cell count");
    malformed(p, "{\"jobComplete\":true," SCHEMA ",\"rows\":[{}]}", "row 0");
    malformed(p,
              "{\"jobComplete\":true," SCHEMA ",\"rows\":["
              "{\"f\":[{\"v\":\"a\"},{\"v\":null},{\"v\":\"1\"}]},"
              "{\"f\":[{\"v\":null},{\"v\":null},{\"v\":\"1\"}]}]}",
              "row 1: id is NULL");
    malformed(p,
              "{\"jobComplete\":true," SCHEMA ",\"rows\":["
              "{\"f\":[{\"v\":7},{\"v\":null},{\"v\":\"1\"}]}]}",
              "row 0: id is not a string");
    malformed(p,
              "{\"jobComplete\":true," SCHEMA ",\"rows\":["
              "{\"f\":[{\"v\":\"a\"},{\"v\":1},{\"v\":\"1\"}]}]}",
              "contenido");
    malformed(p,
              "{\"jobComplete\":true," SCHEMA ",\"rows\":["
              "{\"f\":[{\"v\":\"a\"},{\"v\":null},{\"v\":null}]}]}",
              "timestamp is NULL");
    malformed(p,
              "{\"jobComplete\":true," SCHEMA ",\"rows\":["
              "{\"f\":[{\"v\":\"a\"},{\"v\":null},{\"v\":\"soon\"}]}]}",
              "row 0: timestamp");
    malformed(
        p,
        "{\"jobComplete\":true," SCHEMA ",\"rows\":["
        "{\"f\":[{\"v\":\"a\"},{\"v\":null},{\"v\":\"999999999999999999999\"}]}]}",
        "timestamp");
    malformed(p,
              "{\"jobComplete\":true," SCHEMA ",\"totalBytesProcessed\":\"x\"}",
              "totalBytesProcessed");
}

/* ------------------------------------------------------------- errors */

typedef struct {
    int status;
    const char *body;
    apr_status_t want;
    const char *reason;
} error_case_t;

static void error_mapping(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    static const error_case_t cases[] = {
        {401,
         "{\"error\":{\"code\":401,\"message\":\"Request had invalid authentication credentials.\","
         "\"errors\":[{\"message\":\"Invalid Credentials\",\"domain\":\"global\",\"reason\":\"authError\","
         "\"location\":\"Authorization\",\"locationType\":\"header\"}],\"status\":\"UNAUTHENTICATED\"}}",
         DATOS_EAUTH, "authError"},
        {403,
         "{\"error\":{\"code\":403,\"message\":\"Exceeded rate limits: too many api requests\","
         "\"errors\":[{\"domain\":\"usageLimits\",\"message\":\"Exceeded rate limits\","
         "\"reason\":\"rateLimitExceeded\"}],\"status\":\"PERMISSION_DENIED\"}}",
         DATOS_ERATELIMIT, "rateLimitExceeded"},
        {429,
         "{\"error\":{\"code\":429,\"message\":\"Too many\",\"status\":\"RESOURCE_EXHAUSTED\"}}",
         DATOS_ERATELIMIT, "RESOURCE_EXHAUSTED"},
        {429, "", DATOS_ERATELIMIT, NULL},
        {403,
         "{\"error\":{\"code\":403,\"message\":\"Quota exceeded\",\"errors\":[{\"reason\":\"quotaExceeded\"}]}}",
         DATOS_EQUOTA, "quotaExceeded"},
        {403,
         "{\"error\":{\"code\":403,\"message\":\"Access Denied: Table p:d.t\","
         "\"errors\":[{\"reason\":\"accessDenied\"}],\"status\":\"PERMISSION_DENIED\"}}",
         DATOS_EAUTH, "accessDenied"},
        {403,
         "{\"error\":{\"code\":403,\"message\":\"Billing\",\"errors\":[{\"reason\":\"billingNotEnabled\"}]}}",
         DATOS_EAUTH, "billingNotEnabled"},
        {400,
         "{\"error\":{\"code\":400,\"message\":\"Query exceeded limit for bytes billed: 10485760. 20971520 or higher required.\","
         "\"errors\":[{\"message\":\"Query exceeded limit for bytes billed\",\"domain\":\"global\","
         "\"reason\":\"bytesBilledLimitExceeded\"}],\"status\":\"INVALID_ARGUMENT\"}}",
         DATOS_EBYTESLIMIT, "bytesBilledLimitExceeded"},
        {400,
         "{\"error\":{\"code\":400,\"message\":\"Syntax error: Unexpected keyword at [1:8]\","
         "\"errors\":[{\"reason\":\"invalidQuery\",\"location\":\"q\"}],\"status\":\"INVALID_ARGUMENT\"}}",
         DATOS_EREJECTED, "invalidQuery"},
        {404,
         "{\"error\":{\"code\":404,\"message\":\"Not found: Table my-proj:ds.events\","
         "\"errors\":[{\"message\":\"Not found\",\"domain\":\"global\",\"reason\":\"notFound\"}],"
         "\"status\":\"NOT_FOUND\"}}",
         DATOS_EREJECTED, "notFound"},
        /* a taken job id: the loader must tell it apart (jobs.get that job) */
        {409,
         "{\"error\":{\"code\":409,\"message\":\"Already Exists: Job\",\"errors\":[{\"reason\":\"duplicate\"}]}}",
         DATOS_EEXISTS, "duplicate"},
        {500,
         "{\"error\":{\"code\":500,\"message\":\"An internal error occurred\","
         "\"errors\":[{\"reason\":\"backendError\"}],\"status\":\"INTERNAL\"}}",
         DATOS_EBACKEND, "backendError"},
        {503,
         "{\"error\":{\"code\":503,\"message\":\"The service is currently unavailable.\",\"status\":\"UNAVAILABLE\"}}",
         DATOS_EBACKEND, "UNAVAILABLE"},
        {502,
         "<!DOCTYPE html>\n<html lang=en><title>Error 502 (Server Error)!!1</title></html>",
         DATOS_EBACKEND, NULL},
        {502, "", DATOS_EBACKEND, NULL},
        {504, "upstream request timeout", DATOS_EBACKEND, NULL},
        {400,
         "{\"error\":{\"code\":400,\"message\":\"job failed\",\"errors\":[{\"reason\":\"internalError\"}]}}",
         DATOS_EBACKEND, "internalError"},
        {400,
         "{\"error\":{\"code\":400,\"errors\":[{\"reason\":\"badGateway\"}]}}",
         DATOS_EBACKEND, "badGateway"},
        {404, "{\"a\":1}", DATOS_EREJECTED, NULL},
        {400, "[1,2]", DATOS_EREJECTED, NULL},
        {400,
         "{\"error\":\"invalid_grant\",\"error_description\":\"Invalid JWT Signature.\"}",
         DATOS_EREJECTED, "invalid_grant"},
        {401, "", DATOS_EAUTH, NULL},
        {403, "{\"error\":{\"code\":403,\"errors\":[]}}", DATOS_EAUTH, NULL},
        {302, "", DATOS_EBACKEND, NULL},
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        datos_err_t err = {0};
        apr_status_t rv;

        datos_err_clear(&err);
        rv = datos_google_classify(p, DATOS_GOOGLE_API, cases[i].status,
                                   cases[i].body, strlen(cases[i].body),
                                   apr_time_from_sec(7), &err);
        if (rv != cases[i].want || err.rv != rv) {
            fail_msg("case %zu (HTTP %d): got %d, want %d", i, cases[i].status,
                     rv, cases[i].want);
        }
        assert_int_equal(err.http_status, cases[i].status);
        assert_int_equal(err.retry_after, apr_time_from_sec(7));
        assert_non_null(err.message);
        if (cases[i].reason) {
            assert_non_null(err.reason);
            assert_string_equal(err.reason, cases[i].reason);
        }
        else {
            assert_null(err.reason);
        }
    }
}

static void error_messages(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_err_t err = {0};
    const char *html = "<html>\n<body>bad gateway</body></html>", *body;
    char *big;

    datos_err_clear(&err);
    body = "{\"error\":{\"code\":404,\"message\":\"Not found: Table p:d.t\","
           "\"errors\":[{\"reason\":\"notFound\"}]}}";
    datos_google_classify(p, DATOS_GOOGLE_API, 404, body, strlen(body), 0,
                          &err);
    assert_string_equal(err.message,
                        "HTTP 404 notFound: Not found: Table p:d.t");

    datos_google_classify(p, DATOS_GOOGLE_API, 502, html, strlen(html), 0,
                          &err);
    assert_string_equal(err.message, "HTTP 502 with a non-JSON body");
    assert_null(strstr(err.message, "<html>"));

    datos_google_classify(p, DATOS_GOOGLE_API, 503, NULL, 0, 0, &err);
    assert_string_equal(err.message, "HTTP 503 with an empty body");

    /* control characters cannot forge log lines; huge messages are cut */
    body = "{\"error\":{\"message\":\"a\\nb\\r\\u001bc\"}}";
    datos_google_classify(p, DATOS_GOOGLE_API, 400, body, strlen(body), 0,
                          &err);
    assert_string_equal(err.message, "HTTP 400: a b  c");
    big = apr_pstrcat(p, "{\"error\":{\"message\":\"",
                      apr_psprintf(p, "%0*d", 5000, 0), "\"}}", NULL);
    datos_google_classify(p, DATOS_GOOGLE_API, 400, big, strlen(big), 0, &err);
    assert_true(strlen(err.message) < 600);

    /* a NULL err still maps */
    assert_int_equal(
        datos_google_classify(p, DATOS_GOOGLE_API, 500, "", 0, 0, NULL),
        DATOS_EBACKEND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        DT_TEST(page_complete),          DT_TEST(page_bytes_billed),
        DT_TEST(page_incomplete),        DT_TEST(page_no_rows_and_token),
        DT_TEST(page_columns_reordered), DT_TEST(page_malformed_shapes),
        DT_TEST(error_mapping),          DT_TEST(error_messages),
    };
    return cmocka_run_group_tests(tests, dt_group_setup, dt_group_teardown);
}
