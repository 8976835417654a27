/* test_json.c - pool-bound JSON, getters, and the error helpers. */
#include <string.h>

#include "dt_support.h"
#include "datos_error.h"
#include "datos_json.h"
#include "datos_log.h"

static void parse_and_errors(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    json_t *j = NULL;
    datos_err_t err = {0};

    datos_err_clear(&err);
    assert_int_equal(datos_json_parse(p, "{\"a\":1}", 7, 0, &j, &err),
                     APR_SUCCESS);
    assert_true(json_is_object(j));
    /* exactly len bytes: what follows is not read */
    assert_int_equal(datos_json_parse(p, "[1]garbage", 3, 0, &j, &err),
                     APR_SUCCESS);
    assert_true(json_is_array(j));
    assert_int_equal(datos_json_parse(p, "\"s\\u0000t\"", 10, 0, &j, &err),
                     APR_SUCCESS);
    assert_int_equal(json_string_length(j), 3);

    j = NULL;
    assert_int_equal(datos_json_parse(p, "{\n\"a\": tru}", 11, 0, &j, &err),
                     DATOS_EMALFORMED);
    assert_null(j);
    assert_int_equal(err.rv, DATOS_EMALFORMED);
    assert_non_null(strstr(err.message, "invalid JSON: "));
    assert_non_null(strstr(err.message, "(line 2, column"));
    assert_int_equal(datos_json_parse(p, NULL, 0, 0, &j, &err),
                     DATOS_EMALFORMED);
    /* duplicates only in strict mode */
    assert_int_equal(datos_json_parse(p, "{\"a\":1,\"a\":2}", 13, 0, &j, &err),
                     APR_SUCCESS);
    assert_int_equal(datos_json_parse(p, "{\"a\":1,\"a\":2}", 13, 1, &j, &err),
                     DATOS_EMALFORMED);
    assert_non_null(strstr(err.message, "duplicate"));
}

static void getters(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    json_t *j;
    datos_err_t err = {0};
    apr_int64_t v = 99;
    const char *text =
        "{\"o\":{\"x\":1},\"a\":[1],\"s\":\"str\",\"n\":42,\"ns\":\"-9223372036854775808\","
        "\"big\":\"9223372036854775808\",\"f\":1.5,\"t\":true,\"fs\":\"false\",\"e\":\"\","
        "\"sp\":\" 1\",\"plus\":\"+1\",\"x\":\"12a\"}";

    assert_int_equal(datos_json_parse(p, text, strlen(text), 1, &j, &err),
                     APR_SUCCESS);
    assert_non_null(datos_json_obj(j, "o"));
    assert_null(datos_json_obj(j, "a"));
    assert_null(datos_json_obj(j, "missing"));
    assert_null(datos_json_obj(NULL, "o"));
    assert_non_null(datos_json_arr(j, "a"));
    assert_null(datos_json_arr(j, "o"));
    assert_string_equal(datos_json_str(j, "s"), "str");
    assert_null(datos_json_str(j, "n"));
    assert_true(datos_json_true(j, "t"));
    assert_false(datos_json_true(j, "fs"));
    assert_false(datos_json_true(j, "missing"));

    assert_int_equal(datos_json_int64(j, "n", &v), APR_SUCCESS);
    assert_int_equal(v, 42);
    assert_int_equal(datos_json_int64(j, "ns", &v), APR_SUCCESS);
    assert_true(v == APR_INT64_MIN);
    v = 99;
    assert_int_equal(datos_json_int64(j, "missing", &v), APR_NOTFOUND);
    assert_int_equal(datos_json_int64(j, "big", &v), DATOS_EMALFORMED);
    assert_int_equal(datos_json_int64(j, "f", &v), DATOS_EMALFORMED);
    assert_int_equal(datos_json_int64(j, "t", &v), DATOS_EMALFORMED);
    assert_int_equal(datos_json_int64(j, "e", &v), DATOS_EMALFORMED);
    assert_int_equal(datos_json_int64(j, "sp", &v), DATOS_EMALFORMED);
    assert_int_equal(datos_json_int64(j, "plus", &v), DATOS_EMALFORMED);
    assert_int_equal(datos_json_int64(j, "x", &v), DATOS_EMALFORMED);
    assert_int_equal(v, 99);
}

static void dump_compact_ordered(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    json_t *j = datos_json_bind(
        p, json_pack("{s:i, s:s, s:[b]}", "z", 1, "a", "\xc3\xa1", "m", 1));
    apr_size_t n = 0;
    char *s = datos_json_dump(p, j, &n);

    assert_string_equal(s, "{\"z\":1,\"a\":\"\xc3\xa1\",\"m\":[true]}");
    assert_int_equal(n, strlen(s));
    assert_null(datos_json_bind(p, NULL));
}

static void error_helpers(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_err_t err = {0};

    memset(&err, 0x33, sizeof(err));
    datos_err_clear(&err);
    assert_int_equal(err.rv, 0);
    assert_null(err.message);
    assert_int_equal(
        datos_err_set(&err, p, DATOS_EQUOTA, 403, "quotaExceeded", "x=%d", 5),
        DATOS_EQUOTA);
    assert_int_equal(err.rv, DATOS_EQUOTA);
    assert_int_equal(err.http_status, 403);
    assert_string_equal(err.reason, "quotaExceeded");
    assert_string_equal(err.message, "x=5");
    assert_int_equal(datos_err_set(NULL, p, DATOS_EAUTH, 0, NULL, "y"),
                     DATOS_EAUTH);

    assert_true(datos_status_is_retryable(APR_TIMEUP));
    assert_true(datos_status_is_retryable(DATOS_ECONNECT));
    assert_true(datos_status_is_retryable(DATOS_EBACKEND));
    assert_true(datos_status_is_retryable(DATOS_ERATELIMIT));
    assert_false(datos_status_is_retryable(DATOS_EQUOTA));
    assert_false(datos_status_is_retryable(DATOS_EAUTH));
    assert_false(datos_status_is_retryable(DATOS_EREJECTED));
    assert_false(datos_status_is_retryable(APR_SUCCESS));

    assert_string_equal(datos_status_name(APR_TIMEUP), "timeout");
    assert_string_equal(datos_status_name(DATOS_ECONNECT), "connect_error");
    assert_string_equal(datos_status_name(DATOS_EBACKEND), "backend_error");
    assert_string_equal(datos_status_name(DATOS_EMALFORMED), "malformed");
    assert_string_equal(datos_status_name(DATOS_ERATELIMIT), "rate_limited");
    assert_string_equal(datos_status_name(DATOS_EQUOTA), "quota");
    assert_string_equal(datos_status_name(DATOS_EAUTH), "auth");
    assert_string_equal(datos_status_name(DATOS_EREJECTED), "rejected");
    assert_string_equal(datos_status_name(DATOS_EBYTESLIMIT), "bytes_limit");
    assert_string_equal(datos_status_name(DATOS_ETOOLARGE), "too_large");
    assert_string_equal(datos_status_name(DATOS_ECONFIG), "config");
    assert_string_equal(datos_status_name(DATOS_EINSECURE), "insecure_url");
    assert_string_equal(datos_status_name(APR_ENOMEM), "error");

    assert_string_equal(datos_err_text(p, "a\nb\tc\x7f", 6, 100), "a b c ");
    assert_string_equal(datos_err_text(p, "abcdef", 6, 3), "abc...");
    /* never cut inside a UTF-8 sequence */
    assert_string_equal(datos_err_text(p, "ab\xc3\xa1", 4, 3), "ab...");
    assert_null(datos_err_text(p, NULL, 0, 3));
}

static int sink_calls;
static char sink_msg[256];

static void sink(void *baton, const char *file, int line,
                 datos_log_level_t level, apr_status_t rv, const char *msg)
{
    (void)baton;
    (void)file;
    (void)line;
    (void)level;
    (void)rv;
    sink_calls++;
    apr_cpystrn(sink_msg, msg, sizeof(sink_msg));
}

static int upto_debug(void *baton, datos_log_level_t level)
{
    (void)baton;
    return level <= DATOS_LOG_DEBUG;
}

static void log_sink(void **state)
{
    apr_pool_t *p = DT_POOL(state);

    datos_log_set_sink(sink, upto_debug, NULL);
    assert_true(datos_log_is_level(DATOS_LOG_DEBUG));
    assert_false(datos_log_is_level(DATOS_LOG_TRACE1));
    datos_log_perror(DATOS_LOG_MARK, DATOS_LOG_DEBUG, 0, p, "n=%d", 3);
    datos_log_perror(DATOS_LOG_MARK, DATOS_LOG_TRACE1, 0, p, "hidden");
    datos_log_perror(DATOS_LOG_MARK, DATOS_LOG_DEBUG, 0, NULL, "pool-less %s",
                     "ok");
    assert_int_equal(sink_calls, 2);
    assert_string_equal(sink_msg, "pool-less ok");
    datos_log_set_sink(NULL, NULL, NULL);
    assert_true(datos_log_is_level(DATOS_LOG_WARNING));
    assert_false(datos_log_is_level(DATOS_LOG_NOTICE));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        DT_TEST(parse_and_errors),
        DT_TEST(getters),
        DT_TEST(dump_compact_ordered),
        DT_TEST(error_helpers),
        DT_TEST(log_sink),
    };
    return cmocka_run_group_tests(tests, dt_group_setup, dt_group_teardown);
}
