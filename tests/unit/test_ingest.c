/* test_ingest.c - POST /datos's body rules: one record or a batch, all or
 * nothing, the index of the first bad record, the records published as
 * sent, the Content-Type rule and the answers' JSON. */
#include <string.h>

#include <jansson.h>

#include "dt_support.h"
#include "datos_ingest.h"

/* 2024-01-14T14:00:00Z */
#define NOW     APR_INT64_C(1705240800000000)
#define REC(id) "{\"id\":\"" id "\",\"timestamp\":\"2024-01-14T13:00:00Z\"}"

static apr_status_t parse(apr_pool_t *p, const char *body, int max,
                          datos_ingest_t *in, datos_ingest_refusal_t *why)
{
    datos_record_opts_t o;

    datos_record_opts_init(&o, NOW);
    return datos_ingest_parse(p, body, strlen(body), max, &o, in, why);
}

static void refused(apr_pool_t *p, const char *body, int max,
                    const char *reason, int index)
{
    datos_ingest_t in;
    datos_ingest_refusal_t why;

    if (parse(p, body, max, &in, &why) != DATOS_EMALFORMED)
        fail_msg("accepted %s", body);
    assert_string_equal(why.reason, reason);
    assert_int_equal(why.index, index);
    assert_non_null(why.message);
    assert_true(strlen(why.message) > 0);
}

static void one_record_is_published_as_sent(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_ingest_t in;
    datos_ingest_refusal_t why;
    const char *body = " \r\n{\"timestamp\":\"2024-01-14T13:00:00Z\", "
                       "\"id\":\"a\\u00e9\",\"contenido\":null}\n\t";

    assert_int_equal(parse(p, body, 100, &in, &why), APR_SUCCESS);
    assert_int_equal(in.batch, 0);
    assert_int_equal(in.n, 1);
    /* the bytes the client wrote, escapes and key order kept */
    assert_int_equal(in.records[0].len, strlen(body) - 3 - 2);
    assert_memory_equal(in.records[0].data, body + 3, in.records[0].len);
}

static void a_batch_keeps_order_and_bytes(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_ingest_t in;
    datos_ingest_refusal_t why;
    const char *body = "[ " REC("1") " ,\n" REC("2") "," REC("3") "]";

    assert_int_equal(parse(p, body, 3, &in, &why), APR_SUCCESS);
    assert_int_equal(in.batch, 1);
    assert_int_equal(in.n, 3);
    assert_int_equal(in.records[0].len, strlen(REC("1")));
    assert_memory_equal(in.records[0].data, REC("1"), strlen(REC("1")));
    assert_memory_equal(in.records[1].data, REC("2"), strlen(REC("2")));
    assert_memory_equal(in.records[2].data, REC("3"), strlen(REC("3")));

    /* a batch of one is still a batch */
    assert_int_equal(parse(p, "[" REC("x") "]", 1, &in, &why), APR_SUCCESS);
    assert_int_equal(in.batch, 1);
    assert_int_equal(in.n, 1);
}

static void the_first_bad_record_refuses_the_batch(void **state)
{
    apr_pool_t *p = DT_POOL(state);

    refused(p, "[" REC("1") ",{\"id\":\"2\"}," REC("3") "]", 100,
            "missing_timestamp", 1);
    refused(p, "[" REC("1") "," REC("2") ",7,{}]", 100, "not_object", 2);
    refused(
        p,
        "[{\"id\":\"a\",\"id\":\"b\",\"timestamp\":\"2024-01-14T13:00:00Z\"}]",
        100, "duplicate_key", 0);
    refused(
        p,
        "[" REC("1") ",{\"id\":\"2\",\"timestamp\":\"2030-01-01T00:00:00Z\"}]",
        100, "future_timestamp", 1);
    refused(
        p,
        "[" REC(
            "1") ",{\"id\":\"2\",\"x\":1,\"timestamp\":\"2024-01-14T13:00:00Z\"}]",
        100, "unknown_field", 1);
    refused(p, "[" REC("1") ",[]]", 100, "not_object", 1);
}

static void a_body_that_is_not_json_is_refused_whole(void **state)
{
    apr_pool_t *p = DT_POOL(state);

    refused(p, "", 100, "empty_data", -1);
    refused(p, "   ", 100, "not_json", -1);
    refused(p, "[" REC("1") ",", 100, "not_json", -1);
    refused(p, "[" REC("1") "] x", 100, "not_json", -1);
    refused(p, "{\"id\":\"1\"", 100, "not_json", -1);
    refused(p, "[\"\xff\"]", 100, "not_utf8", -1);
    refused(p, "\"a string\"", 100, "not_object", -1);
    refused(p, "42", 100, "not_object", -1);
    refused(p, "{\"timestamp\":\"2024-01-14T13:00:00Z\"}", 100, "missing_id",
            -1);
}

static void batch_bounds(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_ingest_t in;
    datos_ingest_refusal_t why;
    char *body = "[";
    int i;

    refused(p, "[]", 100, DATOS_INGEST_EMPTY_BATCH, -1);
    refused(p, " [ ] ", 100, DATOS_INGEST_EMPTY_BATCH, -1);
    for (i = 0; i < 101; i++)
        body = apr_pstrcat(p, body, i ? "," : "", REC("r"), NULL);
    body = apr_pstrcat(p, body, "]", NULL);
    refused(p, body, 100, DATOS_INGEST_TOO_MANY, -1);
    assert_int_equal(parse(p, body, 101, &in, &why), APR_SUCCESS);
    assert_int_equal(in.n, 101);
    assert_int_equal(parse(p, body, 0, &in, &why), APR_EINVAL);
    assert_int_equal(parse(p, body, DATOS_INGEST_MAX_BATCH + 1, &in, &why),
                     APR_EINVAL);
}

static void content_type_rule(void **state)
{
    (void)state;
    assert_true(datos_ingest_is_json("application/json"));
    assert_true(datos_ingest_is_json("Application/JSON"));
    assert_true(datos_ingest_is_json("application/json; charset=utf-8"));
    assert_true(datos_ingest_is_json("application/json;charset=\"UTF-8\""));
    assert_true(datos_ingest_is_json("application/json ; charset=utf8 ; x=y"));
    assert_false(datos_ingest_is_json(NULL));
    assert_false(datos_ingest_is_json(""));
    assert_false(datos_ingest_is_json("text/plain"));
    assert_false(datos_ingest_is_json("application/jsonx"));
    assert_false(datos_ingest_is_json("application/json-seq"));
    assert_false(datos_ingest_is_json("application/x-www-form-urlencoded"));
    assert_false(datos_ingest_is_json("application/json; charset=latin1"));
    assert_false(datos_ingest_is_json("application/json; charset"));
    assert_false(datos_ingest_is_json("application/json; charset=\"utf-8"));
    assert_false(datos_ingest_is_json("application/json, text/plain"));
}

static void messages_carry_the_ingest_attributes(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_ingest_t in;
    datos_ingest_refusal_t why;
    const datos_pubsub_out_t *out;
    const datos_attr_t *a;

    assert_int_equal(parse(p, "[" REC("1") "," REC("2") "]", 10, &in, &why),
                     APR_SUCCESS);
    assert_int_equal(datos_ingest_messages(p, &in, "192.0.2.7", &out),
                     APR_SUCCESS);
    assert_int_equal(out[1].data_len, strlen(REC("2")));
    assert_memory_equal(out[1].data, REC("2"), out[1].data_len);
    assert_int_equal(out[0].attributes->nelts, 2);
    a = (const datos_attr_t *)out[0].attributes->elts;
    assert_string_equal(a[0].key, "datos_ingest");
    assert_string_equal(a[0].value, "http");
    assert_string_equal(a[1].key, "datos_client");
    assert_string_equal(a[1].value, "192.0.2.7");
    assert_int_equal(datos_ingest_messages(p, &in, NULL, &out), APR_SUCCESS);
    assert_int_equal(out[0].attributes->nelts, 1);
}

static void answers_are_json(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    apr_array_header_t *ids = apr_array_make(p, 2, sizeof(const char *));
    datos_ingest_refusal_t why;
    apr_size_t len;
    const char *body;

    APR_ARRAY_PUSH(ids, const char *) = "11";
    body = datos_ingest_accepted_body(p, 0, ids, &len);
    assert_string_equal(body, "{\"messageId\":\"11\"}");
    assert_int_equal(len, strlen(body));
    APR_ARRAY_PUSH(ids, const char *) = "12";
    body = datos_ingest_accepted_body(p, 1, ids, &len);
    assert_string_equal(body, "{\"messageIds\":[\"11\",\"12\"]}");

    why.reason = "bad_id";
    why.index = 3;
    why.message = "record 3: the id \"a\\b\" is bad";
    body = datos_ingest_refusal_body(p, 400, &why, &len);
    assert_string_equal(
        body, "{\"error\":{\"code\":400,\"reason\":\"bad_id\","
              "\"message\":\"record 3: the id \\\"a\\\\b\\\" is bad\","
              "\"index\":3}}");
    why.index = -1;
    body = datos_ingest_refusal_body(p, 400, &why, &len);
    assert_null(strstr(body, "index"));
}

static void resource_names(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    const char *full;

    assert_null(
        datos_pubsub_resource_name(p, "datos-topic", "topics", "prj", &full));
    assert_string_equal(full, "projects/prj/topics/datos-topic");
    assert_null(
        datos_pubsub_resource_name(p, "datos-topic", "topics", NULL, &full));
    assert_null(full);
    assert_null(datos_pubsub_resource_name(p, "projects/a/topics/abc", "topics",
                                           NULL, &full));
    assert_string_equal(full, "projects/a/topics/abc");
    assert_non_null(datos_pubsub_resource_name(
        p, "projects/a/subscriptions/abc", "topics", NULL, &full));
    assert_non_null(datos_pubsub_resource_name(p, "projects//topics/abc",
                                               "topics", NULL, &full));
    assert_non_null(
        datos_pubsub_resource_name(p, "goog-x", "topics", "p", &full));
    assert_non_null(datos_pubsub_resource_name(p, "ab", "topics", "p", &full));
    assert_non_null(
        datos_pubsub_resource_name(p, "1abc", "topics", "p", &full));
    assert_non_null(
        datos_pubsub_resource_name(p, "a b c", "topics", "p", &full));
    assert_non_null(datos_pubsub_resource_name(p, "", "topics", "p", &full));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        DT_TEST(one_record_is_published_as_sent),
        DT_TEST(a_batch_keeps_order_and_bytes),
        DT_TEST(the_first_bad_record_refuses_the_batch),
        DT_TEST(a_body_that_is_not_json_is_refused_whole),
        DT_TEST(batch_bounds),
        DT_TEST(content_type_rule),
        DT_TEST(messages_carry_the_ingest_attributes),
        DT_TEST(answers_are_json),
        DT_TEST(resource_names),
    };
    return cmocka_run_group_tests(tests, dt_group_setup, dt_group_teardown);
}
