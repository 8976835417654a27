/* test_loadjob.c - load job ids, the jobs.insert resource, job answers and
 * the rows a failed load names (docs/google-apis.md 2.6, 2.7, 2.10). */
#include <stdio.h>
#include <string.h>
#include <jansson.h>
#include <openssl/sha.h>

#include "dt_support.h"
#include "datos_loadjob.h"

#define TABLE "my-proj.latam_dataset.datos"

static const char *job_id(apr_pool_t *p, const char *table,
                          const char *const *ids, int n, int k)
{
    const char *id = NULL;

    assert_int_equal(datos_loadjob_id(p, table, ids, n, k, &id), APR_SUCCESS);
    assert_non_null(id);
    return id;
}

/* The construction the header documents, written out independently:
 * length-prefixed parts, ids given here already distinct and in byte order. */
static const char *expected_id(apr_pool_t *p, const char *table,
                               const char *const *sorted, int n, int k)
{
    unsigned char buf[4096], md[SHA256_DIGEST_LENGTH];
    const char *parts[16];
    char hex[65];
    apr_size_t o = 0;
    int i, b, np = 0;

    parts[np++] = "datos-load-v1";
    parts[np++] = table;
    for (i = 0; i < n; i++) {
        parts[np++] = sorted[i];
    }
    for (i = 0; i < np; i++) {
        apr_uint64_t len = strlen(parts[i]);
        for (b = 7; b >= 0; b--) {
            buf[o++] = (unsigned char)(len >> (8 * b));
        }
        memcpy(buf + o, parts[i], strlen(parts[i]));
        o += strlen(parts[i]);
    }
    SHA256(buf, o, md);
    for (i = 0; i < SHA256_DIGEST_LENGTH; i++) {
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    }
    return apr_psprintf(p, "datos_%s_g%d", hex, k);
}

static void job_id_construction(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    /* byte order: digits before capitals before lowercase before UTF-8 */
    static const char *const given[] = {"\xc3\xa9", "a",  "9",
                                        "B",        "10", "11473219786351020"};
    static const char *const sorted[] = {"10", "11473219786351020", "9", "B",
                                         "a",  "\xc3\xa9"};
    const char *id = job_id(p, TABLE, given, 6, 0);

    assert_string_equal(id, expected_id(p, TABLE, sorted, 6, 0));
    assert_int_equal(strlen(id), strlen("datos_") + 64 + strlen("_g0"));
    assert_true(datos_loadjob_id_valid(id));
    assert_string_equal(job_id(p, TABLE, given, 6, 12),
                        expected_id(p, TABLE, sorted, 6, 12));
    /* in two steps, as the loader names a batch's generations */
    {
        const char *key = NULL;
        assert_int_equal(datos_loadjob_key(p, TABLE, given, 6, &key),
                         APR_SUCCESS);
        assert_string_equal(datos_loadjob_generation(p, key, 0), id);
        assert_string_equal(datos_loadjob_generation(p, key, 12),
                            expected_id(p, TABLE, sorted, 6, 12));
    }
}

static void job_id_is_order_independent(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    const char *ids[8] = {"5", "1", "4", "2", "3", "100", "20", "x"};
    const char *first = job_id(p, TABLE, ids, 8, 0);
    const char *dup[10] = {"5", "1", "4", "2", "3", "100", "20", "x", "3", "5"};
    unsigned seed = 1;
    int round, i;

    /* any permutation, and redeliveries inside the batch, name the same job */
    for (round = 0; round < 50; round++) {
        for (i = 7; i > 0; i--) {
            int j;
            const char *t;
            seed = seed * 1103515245u + 12345u;
            j = (int)((seed >> 16) % (unsigned)(i + 1));
            t = ids[i];
            ids[i] = ids[j];
            ids[j] = t;
        }
        assert_string_equal(job_id(p, TABLE, ids, 8, 0), first);
    }
    assert_string_equal(job_id(p, TABLE, dup, 10, 0), first);
    /* a different set, table or generation is a different job */
    assert_string_not_equal(job_id(p, TABLE, ids, 7, 0), first);
    assert_string_not_equal(job_id(p, "my-proj.latam_dataset.other", ids, 8, 0),
                            first);
    assert_string_not_equal(job_id(p, TABLE, ids, 8, 1), first);
    assert_int_equal(
        strncmp(job_id(p, TABLE, ids, 8, 1), first, strlen(first) - 1), 0);
    /* lengths are part of the input: ("ab","c") and ("a","bc") differ */
    {
        static const char *const x[] = {"ab", "c"};
        static const char *const y[] = {"a", "bc"};
        assert_string_not_equal(job_id(p, TABLE, x, 2, 0),
                                job_id(p, TABLE, y, 2, 0));
    }
}

static void job_id_refuses(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    const char *ids[2] = {"1", NULL};
    const char *id = NULL;

    assert_int_equal(datos_loadjob_id(p, TABLE, ids, 0, 0, &id), APR_EINVAL);
    assert_int_equal(datos_loadjob_id(p, TABLE, ids, 2, 0, &id), APR_EINVAL);
    ids[1] = "";
    assert_int_equal(datos_loadjob_id(p, TABLE, ids, 2, 0, &id), APR_EINVAL);
    assert_int_equal(datos_loadjob_id(p, TABLE, ids, 1, -1, &id), APR_EINVAL);
    assert_int_equal(datos_loadjob_id(p, "", ids, 1, 0, &id), APR_EINVAL);
    assert_null(id);
}

static void job_id_rule(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    char *longest = apr_palloc(p, DATOS_JOB_ID_MAX + 2);

    assert_true(datos_loadjob_id_valid("load_events-20240114_g0"));
    assert_false(datos_loadjob_id_valid(""));
    assert_false(datos_loadjob_id_valid(NULL));
    assert_false(datos_loadjob_id_valid("a.b"));
    assert_false(datos_loadjob_id_valid("a b"));
    assert_false(datos_loadjob_id_valid("caf\xc3\xa9"));
    memset(longest, 'a', DATOS_JOB_ID_MAX);
    longest[DATOS_JOB_ID_MAX] = '\0';
    assert_true(datos_loadjob_id_valid(longest));
    longest[DATOS_JOB_ID_MAX] = 'a';
    longest[DATOS_JOB_ID_MAX + 1] = '\0';
    assert_false(datos_loadjob_id_valid(longest));
}

/* ------------------------------------------------------------------ resource */

static void resource_shape(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_loadjob_conf_t c;
    const char *json;
    apr_size_t len;
    datos_err_t err = {0};

    memset(&c, 0, sizeof(c));
    c.project = "my-proj";
    c.job_id = "datos_ab12_g0";
    c.location = "southamerica-east1";
    c.dataset = "latam_dataset";
    c.table = "datos";
    assert_int_equal(datos_loadjob_resource(p, &c, &json, &len, &err),
                     APR_SUCCESS);
    assert_string_equal(
        json,
        "{\"jobReference\":{\"projectId\":\"my-proj\",\"jobId\":\"datos_ab12_g0\","
        "\"location\":\"southamerica-east1\"},"
        "\"configuration\":{\"load\":{\"destinationTable\":{\"projectId\":\"my-proj\","
        "\"datasetId\":\"latam_dataset\",\"tableId\":\"datos\"},"
        "\"sourceFormat\":\"NEWLINE_DELIMITED_JSON\",\"writeDisposition\":\"WRITE_APPEND\","
        "\"createDisposition\":\"CREATE_NEVER\",\"maxBadRecords\":0,"
        "\"ignoreUnknownValues\":false}}}");
    assert_int_equal(len, strlen(json));

    /* no location: omitted; a table in another project */
    c.location = NULL;
    c.table_project = "data-proj";
    assert_int_equal(datos_loadjob_resource(p, &c, &json, &len, &err),
                     APR_SUCCESS);
    assert_null(strstr(json, "location"));
    assert_non_null(strstr(json, "{\"projectId\":\"data-proj\",\"datasetId\""));
    assert_non_null(strstr(json, "{\"projectId\":\"my-proj\",\"jobId\""));
}

static void resource_refuses(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_loadjob_conf_t c;
    const char *json = NULL;
    apr_size_t len;
    datos_err_t err = {0};

    memset(&c, 0, sizeof(c));
    c.project = "my-proj";
    c.dataset = "d";
    c.table = "t";
    c.job_id = "bad.id";
    assert_int_equal(datos_loadjob_resource(p, &c, &json, &len, &err),
                     APR_EINVAL);
    c.job_id = "ok";
    c.table = NULL;
    assert_int_equal(datos_loadjob_resource(p, &c, &json, &len, &err),
                     APR_EINVAL);
    c.table = "t\xff";
    assert_int_equal(datos_loadjob_resource(p, &c, &json, &len, &err),
                     APR_EINVAL);
    assert_null(json);
}

/* ------------------------------------------------------------------ answers */

static datos_loadjob_t *parse(apr_pool_t *p, const char *body)
{
    datos_loadjob_t *job = NULL;
    datos_err_t err = {0};

    datos_err_clear(&err);
    if (datos_loadjob_parse(p, body, strlen(body), &job, &err) != APR_SUCCESS) {
        fail_msg("refused: %s", err.message);
    }
    return job;
}

static void parse_insert_answer(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_loadjob_t *job = parse(
        p,
        "{\"kind\": \"bigquery#job\", \"id\": \"my-proj:US.load_events_20240114T1400_g0_7f3a9c\",\n"
        " \"jobReference\": {\"projectId\": \"my-proj\", \"jobId\": \"load_events_20240114T1400_g0_7f3a9c\", \"location\": \"US\"},\n"
        " \"configuration\": {\"jobType\": \"LOAD\", \"labels\": {\"loader\": \"cron\"},\n"
        "   \"load\": {\"sourceFormat\": \"NEWLINE_DELIMITED_JSON\", \"destinationTable\": {\"projectId\": \"my-proj\", \"datasetId\": \"analytics\", \"tableId\": \"events\"}}},\n"
        " \"status\": {\"state\": \"RUNNING\"}, \"statistics\": {\"creationTime\": \"1705240800123\", \"startTime\": \"1705240800456\"},\n"
        " \"user_email\": \"loader@my-proj.iam.gserviceaccount.com\", \"selfLink\": \"...\", \"etag\": \"...\"}");

    assert_int_equal(job->state, DATOS_JOB_RUNNING);
    assert_string_equal(job->project, "my-proj");
    assert_string_equal(job->job_id, "load_events_20240114T1400_g0_7f3a9c");
    assert_string_equal(job->location, "US");
    assert_null(job->error_result);
    assert_int_equal(job->errors->nelts, 0);
    assert_int_equal(job->output_rows, -1);
    assert_int_equal(datos_loadjob_outcome(job), DATOS_JOB_UNFINISHED);
    job = parse(p, "{\"status\":{\"state\":\"PENDING\"}}");
    assert_int_equal(job->state, DATOS_JOB_PENDING);
    assert_int_equal(datos_loadjob_outcome(job), DATOS_JOB_UNFINISHED);
    assert_null(job->job_id);
}

static void parse_done_answers(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_loadjob_t *job;
    const datos_job_error_t *e;

    job = parse(
        p,
        "{\"status\": {\"state\": \"DONE\"},\n"
        " \"statistics\": {\"creationTime\": \"1705240800123\", \"startTime\": \"1705240800456\", \"endTime\": \"1705240803789\",\n"
        "   \"load\": {\"inputFiles\": \"1\", \"inputFileBytes\": \"123\", \"outputRows\": \"2\", \"outputBytes\": \"64\", \"badRecords\": \"0\"}}}");
    assert_int_equal(job->state, DATOS_JOB_DONE);
    assert_int_equal(job->output_rows, 2);
    assert_int_equal(job->bad_records, 0);
    assert_int_equal(datos_loadjob_outcome(job), DATOS_JOB_SUCCEEDED);

    job = parse(
        p,
        "{\"status\": {\"state\": \"DONE\",\n"
        "  \"errorResult\": {\"reason\": \"invalid\", \"message\": \"Error while reading data, error message: JSON table encountered too many errors, giving up. Rows: 1; errors: 1. Please look into the errors[] collection for more details.\"},\n"
        "  \"errors\": [{\"reason\": \"invalid\", \"message\": \"Error while reading data, error message: JSON table encountered too many errors, giving up. ...\"},\n"
        "             {\"reason\": \"invalid\", \"message\": \"Error while reading data, error message: JSON parsing error in row starting at position 0: No such field: colour.\"}]},\n"
        " \"statistics\": {\"load\": {\"outputRows\": \"0\", \"badRecords\": \"1\"}}}");
    assert_int_equal(datos_loadjob_outcome(job), DATOS_JOB_INVALID);
    assert_string_equal(job->error_result->reason, "invalid");
    assert_null(job->error_result->location);
    assert_int_equal(job->errors->nelts, 2);
    e = &APR_ARRAY_IDX(job->errors, 1, datos_job_error_t);
    assert_non_null(strstr(e->message, "No such field: colour."));
    assert_int_equal(job->output_rows, 0);
    assert_int_equal(job->bad_records, 1);

    job = parse(
        p,
        "{\"status\": {\"state\": \"DONE\", \"errorResult\": {\"reason\": \"quotaExceeded\", \"location\": \"load_job_per_table.long\",\n"
        "  \"message\": \"Quota exceeded: Your table exceeded quota for imports or query appends per table.\"}}}");
    assert_int_equal(datos_loadjob_outcome(job), DATOS_JOB_QUOTA);
    assert_string_equal(job->error_result->location, "load_job_per_table.long");
}

static void outcomes(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    static const struct {
        const char *reason;
        datos_job_outcome_t want;
    } cases[] = {
        {"backendError", DATOS_JOB_RETRY},
        {"internalError", DATOS_JOB_RETRY},
        {"rateLimitExceeded", DATOS_JOB_RETRY},
        {"jobBackendError", DATOS_JOB_RETRY},
        {"jobInternalError", DATOS_JOB_RETRY},
        {"jobRateLimitExceeded", DATOS_JOB_RETRY},
        {"invalid", DATOS_JOB_INVALID},
        {"quotaExceeded", DATOS_JOB_QUOTA},
        {"notFound", DATOS_JOB_FAILED},
        {"accessDenied", DATOS_JOB_FAILED},
        {"duplicate", DATOS_JOB_FAILED},
        {"stopped", DATOS_JOB_FAILED},
        {"BackendError", DATOS_JOB_FAILED},
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        datos_loadjob_t *job = parse(
            p,
            apr_psprintf(
                p,
                "{\"status\":{\"state\":\"DONE\",\"errorResult\":{\"reason\":\"%s\","
                "\"message\":\"m\"}}}",
                cases[i].reason));
        if (datos_loadjob_outcome(job) != cases[i].want) {
            fail_msg("%s: outcome %d, want %d", cases[i].reason,
                     datos_loadjob_outcome(job), cases[i].want);
        }
    }
    /* an errorResult without a reason is a failure, not a success */
    assert_int_equal(
        datos_loadjob_outcome(
            parse(p, "{\"status\":{\"state\":\"DONE\",\"errorResult\":{}}}")),
        DATOS_JOB_FAILED);
}

static void parse_refuses(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    static const char *const bad[] = {
        "",
        "[]",
        "{}",
        "{\"status\":{}}",
        "{\"status\":{\"state\":\"done\"}}",
        "{\"status\":{\"state\":5}}",
        "{\"status\":\"DONE\"}",
        "{\"status\":{\"state\":\"DONE\",\"errorResult\":\"invalid\"}}",
        "{\"status\":{\"state\":\"DONE\",\"errorResult\":{\"reason\":1}}}",
        "{\"status\":{\"state\":\"DONE\",\"errors\":{}}}",
        "{\"status\":{\"state\":\"DONE\",\"errors\":[1]}}",
        "{\"status\":{\"state\":\"DONE\"},\"statistics\":{\"load\":{\"outputRows\":\"2x\"}}}",
        "{\"status\":{\"state\":\"DONE\"},\"statistics\":{\"load\":{\"badRecords\":true}}}",
        "{\"jobReference\":{\"jobId\":7},\"status\":{\"state\":\"DONE\"}}",
    };
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        datos_loadjob_t *job = NULL;
        datos_err_t err = {0};
        datos_err_clear(&err);
        if (datos_loadjob_parse(p, bad[i], strlen(bad[i]), &job, &err)
            != DATOS_EMALFORMED) {
            fail_msg("accepted %s", bad[i]);
        }
        assert_null(job);
        assert_non_null(err.message);
    }
}

/* ------------------------------------------------------------------ rejected rows */

static apr_array_header_t *rejected(apr_pool_t *p, const char *body)
{
    apr_array_header_t *rows = NULL;

    assert_int_equal(datos_loadjob_rejected(p, parse(p, body), &rows),
                     APR_SUCCESS);
    return rows;
}

#define REJ(a, i) (&APR_ARRAY_IDX((a), (i), datos_rejected_t))

static void rejected_rows(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    apr_array_header_t *rows;

    rows = rejected(
        p,
        "{\"status\":{\"state\":\"DONE\",\"errorResult\":{\"reason\":\"invalid\","
        "\"message\":\"Error while reading data, error message: JSON table encountered too "
        "many errors, giving up. Rows: 1; errors: 1. Please look into the errors[] collection "
        "for more details.\"},\"errors\":["
        "{\"reason\":\"invalid\",\"message\":\"Error while reading data, error message: JSON "
        "parsing error in row starting at position 240: No such field: colour.\"},"
        "{\"reason\":\"invalid\",\"message\":\"Error while reading data, error message: JSON "
        "parsing error in row starting at position 0: Could not convert value to string.\"},"
        "{\"reason\":\"invalid\",\"message\":\"JSON parsing error in Row Starting At Position: "
        "240: again\"},"
        "{\"reason\":\"invalid\",\"location\":\"line 3\",\"message\":\"bad timestamp\"},"
        "{\"reason\":\"invalid\",\"location\":\"colour\",\"message\":\"no such field: colour.\"},"
        "{\"reason\":\"stopped\",\"message\":\"\"}]}}");
    /* one entry per row, summaries and field names skipped */
    assert_int_equal(rows->nelts, 3);
    assert_int_equal(REJ(rows, 0)->position, -1);
    assert_int_equal(REJ(rows, 0)->line, 3);
    assert_int_equal(REJ(rows, 1)->position, 0);
    assert_int_equal(REJ(rows, 1)->line, -1);
    assert_non_null(strstr(REJ(rows, 1)->message, "Could not convert"));
    assert_int_equal(REJ(rows, 2)->position, 240);

    rows = rejected(
        p, "{\"status\":{\"state\":\"DONE\",\"errorResult\":{\"reason\":"
           "\"invalid\",\"message\":\"Rows: 1; errors: 1.\"}}}");
    assert_int_equal(rows->nelts, 0);
    rows = rejected(p, "{\"status\":{\"state\":\"DONE\"}}");
    assert_int_equal(rows->nelts, 0);
    rows =
        rejected(p, "{\"status\":{\"state\":\"DONE\",\"errors\":[{\"message\":"
                    "\"row starting at position 99999999999999999999999\"}]}}");
    assert_int_equal(rows->nelts, 0);
}

/* BigQuery's positions are byte offsets into the data we uploaded. */
static void rejected_rows_map_to_lines(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_ndjson_t *nd;
    apr_array_header_t *rows, *lines;
    apr_size_t starts[5];
    const char *s;
    apr_size_t len;
    int i;

    assert_int_equal(datos_ndjson_create(p, 0, 0, &nd), APR_SUCCESS);
    for (i = 0; i < 5; i++) {
        datos_row_t r;
        r.id = apr_psprintf(p, "id-%d", i * 1000);
        r.id_len = strlen(r.id);
        r.contenido = NULL;
        r.contenido_len = 0;
        r.timestamp_us = i;
        assert_int_equal(datos_ndjson_append(nd, &r, NULL, 0, 0), APR_SUCCESS);
        assert_int_equal(datos_ndjson_range(nd, i, 1, &s, &len), APR_SUCCESS);
        starts[i] = (apr_size_t)(s - datos_ndjson_data(nd, NULL));
    }
    rows = rejected(
        p,
        apr_psprintf(
            p,
            "{\"status\":{\"state\":\"DONE\",\"errorResult\":{\"reason\":\"invalid\"},\"errors\":["
            "{\"message\":\"JSON parsing error in row starting at position %lu: x\"},"
            "{\"message\":\"JSON parsing error in row starting at position %lu: y\"},"
            "{\"location\":\"line 4\",\"message\":\"z\"}]}}",
            (unsigned long)starts[3], (unsigned long)starts[1]));
    assert_int_equal(datos_loadjob_rejected_lines(p, rows, nd, &lines),
                     APR_SUCCESS);
    assert_int_equal(lines->nelts, 2);
    assert_int_equal(APR_ARRAY_IDX(lines, 0, int), 1);
    assert_int_equal(APR_ARRAY_IDX(lines, 1, int), 3);

    /* a position inside a line, or a line past the end: not our data */
    rows = rejected(
        p,
        apr_psprintf(
            p,
            "{\"status\":{\"state\":\"DONE\",\"errors\":[{\"message\":\"row starting at "
            "position %lu\"}]}}",
            (unsigned long)starts[2] + 1));
    assert_int_equal(datos_loadjob_rejected_lines(p, rows, nd, &lines),
                     APR_NOTFOUND);
    rows = rejected(
        p,
        "{\"status\":{\"state\":\"DONE\",\"errors\":[{\"location\":\"line 6\"}]}}");
    assert_int_equal(datos_loadjob_rejected_lines(p, rows, nd, &lines),
                     APR_NOTFOUND);
    rows = rejected(
        p,
        "{\"status\":{\"state\":\"DONE\",\"errors\":[{\"location\":\"line 5\"}]}}");
    assert_int_equal(datos_loadjob_rejected_lines(p, rows, nd, &lines),
                     APR_SUCCESS);
    assert_int_equal(APR_ARRAY_IDX(lines, 0, int), 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        DT_TEST(job_id_construction),
        DT_TEST(job_id_is_order_independent),
        DT_TEST(job_id_refuses),
        DT_TEST(job_id_rule),
        DT_TEST(resource_shape),
        DT_TEST(resource_refuses),
        DT_TEST(parse_insert_answer),
        DT_TEST(parse_done_answers),
        DT_TEST(outcomes),
        DT_TEST(parse_refuses),
        DT_TEST(rejected_rows),
        DT_TEST(rejected_rows_map_to_lines),
    };
    return cmocka_run_group_tests(tests, dt_group_setup, dt_group_teardown);
}
