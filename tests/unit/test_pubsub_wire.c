/* test_pubsub_wire.c - Pub/Sub request bodies and answers (docs/google-apis.md
 * section 1): base64, pull answers entry by entry, publish bodies split at
 * Google's limits, ack/modack chunks, dead-letter attributes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "dt_support.h"
#include "datos_base64.h"
#include "datos_pubsub.h"
#include "datos_pubsub_pull.h"
#include "datos_utf8.h"

#define NOW APR_INT64_C(1705240800000000)

static json_t *load(const char *body, apr_size_t len)
{
    json_error_t jerr;
    json_t *j =
        json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);

    if (!j) {
        fail_msg("not JSON: %s: %.200s", jerr.text, body);
    }
    return j;
}

/* ------------------------------------------------------------------ base64 */

static void base64_vectors(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    static const char *const plain[] = {"",     "f",     "fo",    "foo",
                                        "foob", "fooba", "foobar"};
    static const char *const coded[] = {
        "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    static const char *const unpadded[] = {
        "", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
    unsigned char *out;
    apr_size_t n;
    size_t i;

    for (i = 0; i < 7; i++) {
        assert_string_equal(datos_base64_encode(p,
                                                (const unsigned char *)plain[i],
                                                strlen(plain[i]), &n),
                            coded[i]);
        assert_int_equal(n, strlen(coded[i]));
        assert_int_equal(
            datos_base64_decode(p, coded[i], strlen(coded[i]), &out, &n),
            APR_SUCCESS);
        assert_int_equal(n, strlen(plain[i]));
        assert_string_equal((const char *)out, plain[i]);
        assert_int_equal(
            datos_base64_decode(p, unpadded[i], strlen(unpadded[i]), &out, &n),
            APR_SUCCESS);
        assert_string_equal((const char *)out, plain[i]);
    }
    /* both alphabets */
    assert_int_equal(datos_base64_decode(p, "+/+/", 4, &out, &n), APR_SUCCESS);
    assert_int_equal(n, 3);
    assert_memory_equal(out, "\xfb\xff\xbf", 3);
    assert_int_equal(datos_base64_decode(p, "-_-_", 4, &out, &n), APR_SUCCESS);
    assert_memory_equal(out, "\xfb\xff\xbf", 3);
    assert_string_equal(
        datos_base64_encode(p, (const unsigned char *)"\xfb\xff\xbf", 3, NULL),
        "+/+/");
}

static void base64_rejects(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    static const char *const bad[] = {
        "Z",    "Zg=",      "Zg===", "Zm9vY", "Zm9v!",   "Zm 9v",   "Zm9v\n",
        "=Zg=", "Zg==Zg==", "Z===",  "====",  "Zm9\x80", "Zm9v\0AA"};
    unsigned char *out = NULL;
    apr_size_t n;
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        apr_size_t len =
            i == sizeof(bad) / sizeof(bad[0]) - 1 ? 7 : strlen(bad[i]);
        if (datos_base64_decode(p, bad[i], len, &out, &n) != DATOS_EMALFORMED) {
            fail_msg("accepted \"%s\"", bad[i]);
        }
    }
}

static void base64_round_trips(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    unsigned char data[700], *out;
    apr_size_t len, n, k;
    unsigned seed = 7;

    for (len = 0; len < sizeof(data); len += 1 + len / 8) {
        const char *b64;
        for (k = 0; k < len; k++) {
            seed = seed * 1103515245u + 12345u;
            data[k] = (unsigned char)(seed >> 16);
        }
        b64 = datos_base64_encode(p, data, len, &n);
        assert_int_equal(n, (len + 2) / 3 * 4);
        assert_int_equal(datos_base64_decode(p, b64, n, &out, &k), APR_SUCCESS);
        assert_int_equal(k, len);
        assert_memory_equal(out, data, len);
    }
}

/* ------------------------------------------------------------------ pull */

static void publish_time(void **state)
{
    static const struct {
        const char *text;
        apr_int64_t us;
    } good[] = {
        {"2024-01-14T14:00:00Z", NOW},
        {"2024-01-14T14:00:00.123Z", NOW + 123000},
        {"2024-01-14T14:00:00.123456Z", NOW + 123456},
        {"2024-01-14T14:00:00.1234567Z", NOW + 123456},
        {"2024-01-14T14:00:00.123456789Z", NOW + 123456}, /* nanoseconds */
        {"2024-01-14T14:00:00.999999999Z",
         NOW + 999999}, /* truncated, not rounded */
        {"2024-01-14T14:00:00.000000999Z", NOW},
        {"2024-01-14T15:00:00.5+01:00", NOW + 500000},
        {"1969-12-31T23:59:59.999999999Z", -1}, /* toward the past */
    };
    static const char *const bad[] = {
        "2024-01-14T14:00:00.1234567890Z",
        "2024-01-14T14:00:00.123456789",
        "2024-01-14T14:00:00.Z",
        "2024-01-14 14:00:00Z",
        "",
        "2024-01-14",
        "2024-01-14T14:00:00.123456789Zjunk",
        "1705240800",
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        apr_int64_t us = 0;
        assert_int_equal(
            datos_pubsub_parse_time(good[i].text, strlen(good[i].text), &us),
            APR_SUCCESS);
        if (us != good[i].us) {
            fail_msg("%s: %lld, want %lld", good[i].text, (long long)us,
                     (long long)good[i].us);
        }
    }
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        apr_int64_t us;
        if (datos_pubsub_parse_time(bad[i], strlen(bad[i]), &us)
            != DATOS_EMALFORMED) {
            fail_msg("accepted %s", bad[i]);
        }
    }
}

static apr_array_header_t *pull(apr_pool_t *p, const char *body)
{
    apr_array_header_t *msgs = NULL;
    datos_err_t err = {0};

    datos_err_clear(&err);
    if (datos_pubsub_parse_pull(p, body, strlen(body), &msgs, &err)
        != APR_SUCCESS) {
        fail_msg("refused: %s", err.message);
    }
    return msgs;
}

#define MSG(a, i) (&APR_ARRAY_IDX((a), (i), datos_pubsub_msg_t))

static void pull_wire_example(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    apr_array_header_t *msgs = pull(
        p,
        "{\"receivedMessages\": [\n"
        "  {\"ackId\": \"UAYWLF1GSFE3GQhoUQ5PXiM_NSAoRRIJB08CKF15MEorQVh0Dj4NGXJ9\",\n"
        "   \"message\": {\"data\": \"eyJpZCI6MX0=\", \"attributes\": {\"source\": \"web\", \"schema\": \"v1\"},\n"
        "               \"messageId\": \"11473219786351020\", \"publishTime\": \"2024-01-14T14:00:00.123Z\"},\n"
        "   \"deliveryAttempt\": 1},\n"
        "  {\"ackId\": \"x2\", \"message\": {\"data\": \"eyJpZCI6Mn0=\", \"attributes\": {\"source\": \"web\"},\n"
        "   \"messageId\": \"11473219786351021\", \"publishTime\": \"2024-01-14T14:00:00.123456789Z\","
        "   \"orderingKey\": \"k1\", \"futureField\": [1]}, \"deliveryAttempt\": \"7\"}]}");
    const datos_pubsub_msg_t *m;
    const datos_attr_t *a;

    assert_int_equal(msgs->nelts, 2);
    m = MSG(msgs, 0);
    assert_null(m->problem);
    assert_string_equal(
        m->ack_id, "UAYWLF1GSFE3GQhoUQ5PXiM_NSAoRRIJB08CKF15MEorQVh0Dj4NGXJ9");
    assert_string_equal(m->message_id, "11473219786351020");
    assert_string_equal(m->publish_time, "2024-01-14T14:00:00.123Z");
    assert_int_equal(m->publish_time_us, NOW + 123000);
    assert_int_equal(m->data_len, 8);
    assert_memory_equal(m->data, "{\"id\":1}", 8);
    assert_int_equal(m->delivery_attempt, 1);
    assert_null(m->ordering_key);
    assert_int_equal(m->attributes->nelts, 2);
    a = &APR_ARRAY_IDX(m->attributes, 0, datos_attr_t);
    assert_string_equal(a->key, "source");
    assert_string_equal(a->value, "web");
    a = &APR_ARRAY_IDX(m->attributes, 1, datos_attr_t);
    assert_string_equal(a->key, "schema");
    assert_string_equal(a->value, "v1");
    m = MSG(msgs, 1);
    assert_null(m->problem);
    assert_int_equal(m->publish_time_us, NOW + 123456);
    assert_string_equal(m->publish_time, "2024-01-14T14:00:00.123456789Z");
    assert_string_equal(m->ordering_key, "k1");
    assert_int_equal(m->delivery_attempt, 7);
}

/* The copy outlives the answer it came from: every field, with the pool
 * that held the answer (and its JSON tree) destroyed. */
static void pulled_messages_outlive_their_answer(void **state)
{
    apr_pool_t *p = DT_POOL(state), *tp;
    apr_array_header_t *msgs, *copy;
    const datos_pubsub_msg_t *m;
    const datos_attr_t *a;

    apr_pool_create(&tp, p);
    msgs = pull(
        tp,
        "{\"receivedMessages\": [\n"
        "  {\"ackId\": \"a1\", \"message\": {\"data\": \"AHsA\", \"attributes\": {\"k\": \"v\\u0000w\"},\n"
        "   \"messageId\": \"m1\", \"publishTime\": \"2024-01-14T14:00:00.5Z\", \"orderingKey\": \"o\"},\n"
        "   \"deliveryAttempt\": 3},\n"
        "  {\"ackId\": \"a2\", \"message\": {\"messageId\": \"m2\", \"publishTime\": \"bad\"}}]}");
    copy = datos_pubsub_msgs_copy(p, msgs);
    apr_pool_destroy(tp);
    assert_int_equal(copy->nelts, 2);
    m = MSG(copy, 0);
    assert_string_equal(m->ack_id, "a1");
    assert_string_equal(m->message_id, "m1");
    assert_string_equal(m->publish_time, "2024-01-14T14:00:00.5Z");
    assert_int_equal(m->publish_time_us, NOW + 500000);
    assert_string_equal(m->ordering_key, "o");
    assert_int_equal(m->delivery_attempt, 3);
    assert_int_equal(m->data_len, 3);
    assert_memory_equal(m->data, "\0{\0", 4); /* NUL-terminated too */
    assert_int_equal(m->attributes->nelts, 1);
    a = &APR_ARRAY_IDX(m->attributes, 0, datos_attr_t);
    assert_string_equal(a->key, "k");
    assert_int_equal(a->value_len, 3);
    assert_memory_equal(a->value, "v\0w", 3);
    assert_null(m->problem);
    m = MSG(copy, 1);
    assert_string_equal(m->ack_id, "a2");
    assert_non_null(m->problem);
    assert_int_equal(m->data_len, 0);
    assert_int_equal(m->attributes->nelts, 0);
}

/* The data of a large answer reads back byte for byte: messages that
 * cross the 2 MiB memory it starts with, one larger than any of its later
 * pieces, many small ones after them; and again in the same pool once it
 * has been cleared. */
static void pull_large_answer_data(void **state)
{
    apr_pool_t *p = DT_POOL(state), *tp;
    const apr_size_t sizes[] = {1536 * 1024, 1536 * 1024, 9 * 1024 * 1024};
    enum {
        NBIG = 3,
        NSMALL = 200,
        N = NBIG + NSMALL
    };
    unsigned char *data[N];
    apr_size_t len[N], cap = 64, i, k;
    char *body, *o;
    int round;

    for (i = 0; i < N; i++) {
        len[i] = i < NBIG ? sizes[i] : 1000 + i;
        data[i] = apr_palloc(p, len[i]);
        for (k = 0; k < len[i]; k++) {
            data[i][k] = (unsigned char)(k * 7 + i);
        }
        cap += len[i] / 3 * 4 + 200;
    }
    body = o = apr_palloc(p, cap);
    o += sprintf(o, "{\"receivedMessages\":[");
    for (i = 0; i < N; i++) {
        apr_size_t n;
        const char *b64 = datos_base64_encode(p, data[i], len[i], &n);

        o += sprintf(o,
                     "%s{\"ackId\":\"a%d\",\"message\":{\"messageId\":\"%d\","
                     "\"publishTime\":\"2024-01-14T14:00:00Z\",\"data\":\"",
                     i ? "," : "", (int)i, (int)i);
        memcpy(o, b64, n);
        o += n;
        o += sprintf(o, "\"}}");
    }
    sprintf(o, "]}");
    apr_pool_create(&tp, p);
    for (round = 0; round < 2; round++) {
        apr_array_header_t *msgs = pull(tp, body);

        assert_int_equal(msgs->nelts, N);
        for (i = 0; i < N; i++) {
            const datos_pubsub_msg_t *m = MSG(msgs, i);

            assert_null(m->problem);
            assert_int_equal(m->data_len, len[i]);
            assert_memory_equal(m->data, data[i], len[i]);
            assert_int_equal(m->data[len[i]], 0);
        }
        apr_pool_clear(tp);
    }
    apr_pool_destroy(tp);
}

static void pull_empty_and_minimal(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    apr_array_header_t *msgs;
    const datos_pubsub_msg_t *m;

    assert_int_equal(pull(p, "{}")->nelts, 0);
    assert_int_equal(pull(p, " {\"receivedMessages\":[]} ")->nelts, 0);
    /* absent data is empty data; absent attributes, no attempt */
    msgs = pull(
        p, "{\"receivedMessages\":[{\"ackId\":\"a\",\"message\":{"
           "\"messageId\":\"1\",\"publishTime\":\"2024-01-14T14:00:00Z\"}}]}");
    assert_int_equal(msgs->nelts, 1);
    m = MSG(msgs, 0);
    assert_null(m->problem);
    assert_int_equal(m->data_len, 0);
    assert_string_equal((const char *)m->data, "");
    assert_non_null(m->attributes);
    assert_int_equal(m->attributes->nelts, 0);
    assert_int_equal(m->delivery_attempt, 0);
    /* binary data and an attribute value holding U+0000 */
    msgs = pull(
        p,
        "{\"receivedMessages\":[{\"ackId\":\"a\",\"message\":{\"data\":\"AP8A\","
        "\"attributes\":{\"k\":\"a\\u0000b\"},"
        "\"messageId\":\"1\",\"publishTime\":\"2024-01-14T14:00:00Z\"}}]}");
    m = MSG(msgs, 0);
    assert_int_equal(m->data_len, 3);
    assert_memory_equal(m->data, "\0\xff\0", 3);
    assert_int_equal(APR_ARRAY_IDX(m->attributes, 0, datos_attr_t).value_len,
                     3);
    assert_memory_equal(APR_ARRAY_IDX(m->attributes, 0, datos_attr_t).value,
                        "a\0b", 3);
}

static void pull_malformed_answers(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    static const char *const bad[] = {
        "",
        "not json",
        "[]",
        "null",
        "{\"receivedMessages\":{}}",
        "{\"receivedMessages\":\"x\"}",
        "{\"receivedMessages\":[{}]",
        "<html>502 Bad Gateway</html>",
    };
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        apr_array_header_t *msgs = NULL;
        datos_err_t err = {0};
        datos_err_clear(&err);
        assert_int_equal(
            datos_pubsub_parse_pull(p, bad[i], strlen(bad[i]), &msgs, &err),
            DATOS_EMALFORMED);
        assert_null(msgs);
        assert_int_equal(err.rv, DATOS_EMALFORMED);
        assert_non_null(err.message);
    }
}

/* One bad entry is marked; the others come back intact. */
static void pull_marks_bad_entries(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    static const char *const entries[] = {
        /* 0 good */
        "{\"ackId\":\"a0\",\"message\":{\"data\":\"eA==\",\"messageId\":\"m0\","
        "\"publishTime\":\"2024-01-14T14:00:00Z\"}}",
        /* 1 data not base64 */
        "{\"ackId\":\"a1\",\"message\":{\"data\":\"e!A=\",\"messageId\":\"m1\","
        "\"publishTime\":\"2024-01-14T14:00:00Z\"}}",
        /* 2 no ack id */
        "{\"message\":{\"data\":\"eA==\",\"messageId\":\"m2\","
        "\"publishTime\":\"2024-01-14T14:00:00Z\"}}",
        /* 3 bad publish time */
        "{\"ackId\":\"a3\",\"message\":{\"messageId\":\"m3\",\"publishTime\":\"yesterday\"}}",
        /* 4 not an object */
        "42",
        /* 5 no messageId */
        "{\"ackId\":\"a5\",\"message\":{\"publishTime\":\"2024-01-14T14:00:00Z\"}}",
        /* 6 attributes not an object */
        "{\"ackId\":\"a6\",\"message\":{\"messageId\":\"m6\",\"attributes\":[],"
        "\"publishTime\":\"2024-01-14T14:00:00Z\"}}",
        /* 7 attribute value not a string */
        "{\"ackId\":\"a7\",\"message\":{\"messageId\":\"m7\",\"attributes\":{\"n\":1},"
        "\"publishTime\":\"2024-01-14T14:00:00Z\"}}",
        /* 8 negative delivery attempt */
        "{\"ackId\":\"a8\",\"deliveryAttempt\":-1,\"message\":{\"messageId\":\"m8\","
        "\"publishTime\":\"2024-01-14T14:00:00Z\"}}",
        /* 9 ordering key not a string */
        "{\"ackId\":\"a9\",\"message\":{\"messageId\":\"m9\",\"orderingKey\":5,"
        "\"publishTime\":\"2024-01-14T14:00:00Z\"}}",
        /* 10 no message */
        "{\"ackId\":\"a10\"}",
        /* 11 empty ack id */
        "{\"ackId\":\"\",\"message\":{\"messageId\":\"m11\","
        "\"publishTime\":\"2024-01-14T14:00:00Z\"}}",
        /* 12 data not a string */
        "{\"ackId\":\"a12\",\"message\":{\"data\":7,\"messageId\":\"m12\","
        "\"publishTime\":\"2024-01-14T14:00:00Z\"}}",
        /* 13 good, last */
        "{\"ackId\":\"a13\",\"message\":{\"data\":\"eQ==\",\"messageId\":\"m13\","
        "\"publishTime\":\"2024-01-14T14:00:00.000000001Z\"}}",
    };
    const int n = (int)(sizeof(entries) / sizeof(entries[0]));
    const char *body = "{\"receivedMessages\":[";
    apr_array_header_t *msgs;
    int i;

    for (i = 0; i < n; i++) {
        body = apr_pstrcat(p, body, i ? "," : "", entries[i], NULL);
    }
    msgs = pull(p, apr_pstrcat(p, body, "]}", NULL));
    assert_int_equal(msgs->nelts, n);
    for (i = 0; i < n; i++) {
        const datos_pubsub_msg_t *m = MSG(msgs, i);
        if (i == 0 || i == n - 1) {
            assert_null(m->problem);
            assert_int_equal(m->data_len, 1);
            assert_int_equal(m->data[0], i ? 'y' : 'x');
            continue;
        }
        if (!m->problem) {
            fail_msg("entry %d not marked", i);
        }
        assert_int_equal(datos_utf8_check((const unsigned char *)m->problem,
                                          strlen(m->problem)),
                         strlen(m->problem));
        /* the ack id survives whenever the entry had one, to nack it */
        if (i == 2 || i == 4 || i == 11) {
            assert_null(m->ack_id);
        }
        else {
            assert_string_equal(m->ack_id, apr_psprintf(p, "a%d", i));
        }
    }
    assert_non_null(strstr(MSG(msgs, 1)->problem, "base64"));
    assert_non_null(strstr(MSG(msgs, 3)->problem, "publishTime"));
}

static void pull_body(void **state)
{
    apr_pool_t *p = DT_POOL(state);

    assert_string_equal(datos_pubsub_pull_body(p, 500),
                        "{\"maxMessages\":500}");
    assert_string_equal(datos_pubsub_pull_body(p, 0), "{\"maxMessages\":1}");
    assert_string_equal(datos_pubsub_pull_body(p, 5000),
                        "{\"maxMessages\":1000}");
}

/* ------------------------------------------------------------------ publish */

static apr_array_header_t *attrs_of(apr_pool_t *p, int n, ...)
{
    apr_array_header_t *a = apr_array_make(p, n, sizeof(datos_attr_t));
    va_list ap;
    int i;

    va_start(ap, n);
    for (i = 0; i < n; i++) {
        datos_attr_t *e = apr_array_push(a);
        e->key = va_arg(ap, const char *);
        e->value = va_arg(ap, const char *);
        e->value_len = strlen(e->value);
    }
    va_end(ap);
    return a;
}

#define BODY(a, i) (&APR_ARRAY_IDX((a), (i), datos_pubsub_body_t))

static void publish_exact_body(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_pubsub_out_t m[3];
    apr_array_header_t *bodies;
    datos_err_t err = {0};

    memset(m, 0, sizeof(m));
    m[0].data = (const unsigned char *)"{\"id\":1}";
    m[0].data_len = 8;
    m[0].attributes = attrs_of(p, 2, "source", "web", "schema", "v1");
    m[1].data = (const unsigned char *)"{\"id\":2}";
    m[1].data_len = 8;
    m[2].attributes = attrs_of(p, 1, "q\"k", "line\nbreak \xc3\xa9");
    assert_int_equal(datos_pubsub_publish_bodies(p, m, 3, &bodies, &err),
                     APR_SUCCESS);
    assert_int_equal(bodies->nelts, 1);
    assert_string_equal(
        BODY(bodies, 0)->body,
        "{\"messages\":[{\"data\":\"eyJpZCI6MX0=\",\"attributes\":{\"source\":\"web\","
        "\"schema\":\"v1\"}},{\"data\":\"eyJpZCI6Mn0=\"},"
        "{\"attributes\":{\"q\\\"k\":\"line\\nbreak \xc3\xa9\"}}]}");
    assert_int_equal(BODY(bodies, 0)->len, strlen(BODY(bodies, 0)->body));
    assert_int_equal(BODY(bodies, 0)->first, 0);
    assert_int_equal(BODY(bodies, 0)->count, 3);

    m[0].ordering_key = "k";
    m[1].ordering_key = "k";
    m[2].ordering_key = NULL;
    assert_int_equal(datos_pubsub_publish_bodies(p, m, 2, &bodies, &err),
                     APR_SUCCESS);
    assert_string_equal(
        BODY(bodies, 0)->body,
        "{\"messages\":[{\"data\":\"eyJpZCI6MX0=\",\"attributes\":{\"source\":\"web\","
        "\"schema\":\"v1\"},\"orderingKey\":\"k\"},{\"data\":\"eyJpZCI6Mn0=\","
        "\"orderingKey\":\"k\"}]}");

    assert_int_equal(datos_pubsub_publish_bodies(p, m, 0, &bodies, &err),
                     APR_SUCCESS);
    assert_int_equal(bodies->nelts, 0);
}

static void publish_refuses(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_pubsub_out_t m[2];
    apr_array_header_t *bodies, *many;
    datos_err_t err = {0};
    int i;

    memset(m, 0, sizeof(m));
    m[0].data = (const unsigned char *)"x";
    m[0].data_len = 1;
    /* neither data nor attributes */
    assert_int_equal(datos_pubsub_publish_bodies(p, m, 2, &bodies, &err),
                     APR_EINVAL);
    assert_non_null(strstr(err.message, "message 1"));
    /* an attribute that is not UTF-8 */
    m[1].attributes = attrs_of(p, 1, "k", "\xff");
    assert_int_equal(datos_pubsub_publish_bodies(p, m, 2, &bodies, &err),
                     APR_EINVAL);
    /* 100 attributes are allowed, 101 are not */
    many = apr_array_make(p, 101, sizeof(datos_attr_t));
    for (i = 0; i < 100; i++) {
        datos_attr_t *a = apr_array_push(many);
        a->key = apr_psprintf(p, "k%d", i);
        a->value = "v";
        a->value_len = 1;
    }
    m[1].attributes = many;
    assert_int_equal(datos_pubsub_publish_bodies(p, m, 2, &bodies, &err),
                     APR_SUCCESS);
    APR_ARRAY_PUSH(many, datos_attr_t) = APR_ARRAY_IDX(many, 0, datos_attr_t);
    assert_int_equal(datos_pubsub_publish_bodies(p, m, 2, &bodies, &err),
                     APR_EINVAL);
}

/* Every body is JSON within the limits; together they carry every message
 * once, in order, with its data. */
static void check_publish_split(apr_pool_t *p, const datos_pubsub_out_t *m,
                                int n, apr_array_header_t *bodies)
{
    int b, next = 0;

    for (b = 0; b < bodies->nelts; b++) {
        const datos_pubsub_body_t *e = BODY(bodies, b);
        json_t *j = load(e->body, e->len),
               *list = json_object_get(j, "messages");
        size_t i;

        assert_int_equal(e->first, next);
        assert_int_equal(json_array_size(list), (size_t)e->count);
        assert_true(e->count <= DATOS_PUBSUB_PUBLISH_MAX_MESSAGES);
        assert_true(e->len <= DATOS_PUBSUB_PUBLISH_MAX_BYTES || e->count == 1);
        for (i = 0; i < json_array_size(list); i++) {
            json_t *d = json_object_get(json_array_get(list, i), "data");
            const datos_pubsub_out_t *want = &m[e->first + (int)i];
            unsigned char *out;
            apr_size_t len;
            assert_int_equal(datos_base64_decode(p, json_string_value(d),
                                                 json_string_length(d), &out,
                                                 &len),
                             APR_SUCCESS);
            assert_int_equal(len, want->data_len);
            assert_memory_equal(out, want->data, len);
        }
        next += e->count;
        json_decref(j);
    }
    assert_int_equal(next, n);
}

static void publish_splits_at_limits(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    const int n = 2500;
    datos_pubsub_out_t *m = apr_pcalloc(p, sizeof(*m) * n);
    apr_array_header_t *bodies;
    unsigned char *big;
    datos_err_t err = {0};
    int i;

    /* by count */
    for (i = 0; i < n; i++) {
        m[i].data =
            (const unsigned char *)apr_psprintf(p, "{\"id\":\"%d\"}", i);
        m[i].data_len = strlen((const char *)m[i].data);
    }
    assert_int_equal(datos_pubsub_publish_bodies(p, m, n, &bodies, &err),
                     APR_SUCCESS);
    assert_int_equal(bodies->nelts, 3);
    assert_int_equal(BODY(bodies, 0)->count, 1000);
    assert_int_equal(BODY(bodies, 2)->count, 500);
    check_publish_split(p, m, n, bodies);

    /* by bytes: 4 MB of data is 5.6 MB of base64, two would pass 10 MB; an
     * 8 MB message passes it alone and still goes, alone */
    big = malloc(8 * 1000 * 1000);
    assert_non_null(big);
    memset(big, 'x', 8 * 1000 * 1000);
    for (i = 0; i < 4; i++) {
        m[i].data = big;
        m[i].data_len = i == 2 ? 8 * 1000 * 1000 : 4 * 1000 * 1000;
    }
    m[4].data_len = 10;
    assert_int_equal(datos_pubsub_publish_bodies(p, m, 5, &bodies, &err),
                     APR_SUCCESS);
    assert_int_equal(bodies->nelts, 4);
    assert_int_equal(BODY(bodies, 2)->count, 1);
    assert_true(BODY(bodies, 2)->len > DATOS_PUBSUB_PUBLISH_MAX_BYTES);
    assert_int_equal(BODY(bodies, 3)->count, 2);
    check_publish_split(p, m, 5, bodies);
    free(big);

    /* by ordering key: one key per request */
    for (i = 0; i < 5; i++) {
        m[i].data = (const unsigned char *)"d";
        m[i].data_len = 1;
    }
    m[0].ordering_key = "a";
    m[1].ordering_key = "a";
    m[2].ordering_key = "b";
    m[3].ordering_key = NULL;
    m[4].ordering_key = NULL;
    assert_int_equal(datos_pubsub_publish_bodies(p, m, 5, &bodies, &err),
                     APR_SUCCESS);
    assert_int_equal(bodies->nelts, 3);
    assert_int_equal(BODY(bodies, 0)->count, 2);
    assert_int_equal(BODY(bodies, 1)->count, 1);
    assert_int_equal(BODY(bodies, 2)->count, 2);
    assert_null(strstr(BODY(bodies, 2)->body, "orderingKey"));
}

static void publish_answer(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    static const char ok[] =
        "{\"messageIds\": [\"11473219786351020\", \"11473219786351021\"]}";
    static const char *const bad[] = {
        "{\"messageIds\":[\"1\"]}",
        "{\"messageIds\":[\"1\",\"2\",\"3\"]}",
        "{\"messageIds\":[\"1\",2]}",
        "{\"messageIds\":[\"1\",\"\"]}",
        "{}",
        "{\"messageIds\":\"1,2\"}",
        "[\"1\",\"2\"]",
        "",
        "{\"messageIds\":[\"1\",null]}",
    };
    apr_array_header_t *ids;
    datos_err_t err = {0};
    size_t i;

    assert_int_equal(
        datos_pubsub_parse_publish(p, ok, strlen(ok), 2, &ids, &err),
        APR_SUCCESS);
    assert_int_equal(ids->nelts, 2);
    assert_string_equal(APR_ARRAY_IDX(ids, 0, const char *),
                        "11473219786351020");
    assert_string_equal(APR_ARRAY_IDX(ids, 1, const char *),
                        "11473219786351021");
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        datos_err_clear(&err);
        assert_int_equal(datos_pubsub_parse_publish(p, bad[i], strlen(bad[i]),
                                                    2, &ids, &err),
                         DATOS_EMALFORMED);
        assert_non_null(err.message);
    }
}

/* ------------------------------------------------------------------ ack / modack */

static void ack_exact_bodies(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    static const char *const ids[] = {"UAYW", "UA\"X"};
    apr_array_header_t *bodies;
    datos_err_t err = {0};

    assert_int_equal(datos_pubsub_ack_bodies(p, ids, 2, &bodies, &err),
                     APR_SUCCESS);
    assert_int_equal(bodies->nelts, 1);
    assert_string_equal(BODY(bodies, 0)->body,
                        "{\"ackIds\":[\"UAYW\",\"UA\\\"X\"]}");
    assert_int_equal(datos_pubsub_modack_bodies(p, ids, 1, 0, &bodies, &err),
                     APR_SUCCESS);
    assert_string_equal(BODY(bodies, 0)->body,
                        "{\"ackIds\":[\"UAYW\"],\"ackDeadlineSeconds\":0}");
    assert_int_equal(datos_pubsub_modack_bodies(p, ids, 2, 600, &bodies, &err),
                     APR_SUCCESS);
    assert_string_equal(
        BODY(bodies, 0)->body,
        "{\"ackIds\":[\"UAYW\",\"UA\\\"X\"],\"ackDeadlineSeconds\":600}");
    assert_int_equal(datos_pubsub_modack_bodies(p, ids, 2, 601, &bodies, &err),
                     APR_EINVAL);
    assert_int_equal(datos_pubsub_modack_bodies(p, ids, 2, -1, &bodies, &err),
                     APR_EINVAL);
    assert_int_equal(datos_pubsub_ack_bodies(p, ids, 0, &bodies, &err),
                     APR_SUCCESS);
    assert_int_equal(bodies->nelts, 0);
}

static void check_ack_split(apr_pool_t *p, const char *const *ids, int n,
                            apr_array_header_t *bodies, int seconds)
{
    int b, next = 0;

    (void)p;
    for (b = 0; b < bodies->nelts; b++) {
        const datos_pubsub_body_t *e = BODY(bodies, b);
        json_t *j = load(e->body, e->len), *list = json_object_get(j, "ackIds");
        size_t i;

        assert_int_equal(e->first, next);
        assert_true(e->count >= 1 && e->count <= DATOS_PUBSUB_ACK_MAX_IDS);
        assert_true(e->len <= DATOS_PUBSUB_ACK_MAX_BYTES);
        assert_int_equal(json_array_size(list), (size_t)e->count);
        for (i = 0; i < json_array_size(list); i++) {
            assert_string_equal(json_string_value(json_array_get(list, i)),
                                ids[e->first + (int)i]);
        }
        if (seconds >= 0) {
            assert_int_equal(
                json_integer_value(json_object_get(j, "ackDeadlineSeconds")),
                seconds);
        }
        else {
            assert_int_equal(json_object_size(j), 1);
        }
        next += e->count;
        json_decref(j);
    }
    assert_int_equal(next, n);
}

static void ack_chunks(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    const int n = 6000;
    const char **ids = apr_palloc(p, sizeof(*ids) * n);
    apr_array_header_t *bodies;
    datos_err_t err = {0};
    char *longid;
    int i;

    /* by count: 164-byte ids (the documented maximum) */
    for (i = 0; i < n; i++) {
        char *s = apr_palloc(p, 165);
        memset(s, 'A' + i % 26, 164);
        snprintf(s, 165, "%d", i);
        s[strlen(s)] = '-';
        s[164] = '\0';
        ids[i] = s;
    }
    assert_int_equal(datos_pubsub_ack_bodies(p, ids, n, &bodies, &err),
                     APR_SUCCESS);
    assert_int_equal(bodies->nelts, 3);
    assert_int_equal(BODY(bodies, 0)->count, 2500);
    assert_int_equal(BODY(bodies, 2)->count, 1000);
    check_ack_split(p, ids, n, bodies, -1);
    assert_int_equal(datos_pubsub_modack_bodies(p, ids, n, 300, &bodies, &err),
                     APR_SUCCESS);
    check_ack_split(p, ids, n, bodies, 300);

    /* by bytes: ids longer than Google's are still split at 512 KiB */
    for (i = 0; i < n; i++) {
        char *s = apr_palloc(p, 401);
        memset(s, 'a', 400);
        s[400] = '\0';
        snprintf(s, 12, "%010d", i);
        s[10] = 'z';
        ids[i] = s;
    }
    assert_int_equal(datos_pubsub_ack_bodies(p, ids, n, &bodies, &err),
                     APR_SUCCESS);
    assert_true(bodies->nelts > 3);
    check_ack_split(p, ids, n, bodies, -1);

    /* an id that cannot fit any request, an empty one, one not UTF-8 */
    longid = apr_palloc(p, DATOS_PUBSUB_ACK_MAX_BYTES + 1);
    memset(longid, 'a', DATOS_PUBSUB_ACK_MAX_BYTES);
    longid[DATOS_PUBSUB_ACK_MAX_BYTES] = '\0';
    ids[1] = longid;
    assert_int_equal(datos_pubsub_ack_bodies(p, ids, 2, &bodies, &err),
                     APR_EINVAL);
    ids[1] = "";
    assert_int_equal(datos_pubsub_ack_bodies(p, ids, 2, &bodies, &err),
                     APR_EINVAL);
    ids[1] = "\xc3";
    assert_int_equal(datos_pubsub_ack_bodies(p, ids, 2, &bodies, &err),
                     APR_EINVAL);
}

/* ------------------------------------------------------------------ dead letters */

static const char *attr(const apr_array_header_t *a, const char *key,
                        int *count)
{
    const char *v = NULL;
    int i;

    *count = 0;
    for (i = 0; i < a->nelts; i++) {
        const datos_attr_t *e = &APR_ARRAY_IDX(a, i, datos_attr_t);
        if (!strcmp(e->key, key)) {
            v = e->value;
            (*count)++;
        }
    }
    return v;
}

static void deadletter_attributes(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    apr_array_header_t *msgs = pull(
        p,
        "{\"receivedMessages\":[{\"ackId\":\"a\",\"message\":{\"data\":\"eA==\","
        "\"attributes\":{\"source\":\"web\",\"datos_error\":\"not_json\",\"z\":\"last\"},"
        "\"messageId\":\"11473219786351020\",\"publishTime\":\"2024-01-14T14:00:00.123456789Z\"}}]}");
    const datos_pubsub_msg_t *m = MSG(msgs, 0);
    apr_array_header_t *out;
    datos_err_t err = {0};
    int count;

    assert_int_equal(datos_pubsub_deadletter_attrs(
                         p, m, "projects/p/subscriptions/datos-subscription",
                         DATOS_REASON_BAD_TIMESTAMP,
                         "\"timestamp\" \"x\" is not RFC 3339", &out, &err),
                     APR_SUCCESS);
    /* own attributes kept in order, the old datos_error replaced */
    assert_int_equal(out->nelts, 7);
    assert_string_equal(APR_ARRAY_IDX(out, 0, datos_attr_t).key, "source");
    assert_string_equal(APR_ARRAY_IDX(out, 1, datos_attr_t).key, "z");
    assert_string_equal(attr(out, "datos_error", &count), "bad_timestamp");
    assert_int_equal(count, 1);
    assert_string_equal(attr(out, "datos_error_detail", &count),
                        "\"timestamp\" \"x\" is not RFC 3339");
    assert_string_equal(attr(out, "datos_source_subscription", &count),
                        "projects/p/subscriptions/datos-subscription");
    assert_string_equal(attr(out, "datos_source_message_id", &count),
                        "11473219786351020");
    assert_string_equal(attr(out, "datos_source_publish_time", &count),
                        "2024-01-14T14:00:00.123456789Z");
    /* the message's own attributes are untouched */
    assert_int_equal(m->attributes->nelts, 3);
    assert_string_equal(attr(m->attributes, "datos_error", &count), "not_json");
}

static void deadletter_detail_is_one_clean_line(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    apr_array_header_t *msgs = pull(
        p,
        "{\"receivedMessages\":[{\"ackId\":\"a\",\"message\":{\"data\":\"eA==\","
        "\"messageId\":\"1\",\"publishTime\":\"2024-01-14T14:00:00Z\"}}]}");
    const datos_pubsub_msg_t *m = MSG(msgs, 0);
    char *longd = apr_palloc(p, 3001);
    apr_array_header_t *out;
    const char *d;
    datos_err_t err = {0};
    int count, i;

    assert_int_equal(datos_pubsub_deadletter_attrs(
                         p, m, "s", DATOS_REASON_BIGQUERY_REJECTED,
                         "JSON parsing error\nin row\t\x01 \xff!", &out, &err),
                     APR_SUCCESS);
    assert_string_equal(attr(out, "datos_error", &count), "bigquery_rejected");
    assert_string_equal(attr(out, "datos_error_detail", &count),
                        "JSON parsing error in row   ?!");
    /* 1,500 two-byte characters: cut at 1,024 bytes, between characters */
    for (i = 0; i < 1500; i++) {
        memcpy(longd + 2 * i, "\xc3\xa9", 2);
    }
    longd[3000] = '\0';
    assert_int_equal(datos_pubsub_deadletter_attrs(
                         p, m, "s", DATOS_REASON_NOT_JSON, longd, &out, &err),
                     APR_SUCCESS);
    d = attr(out, "datos_error_detail", &count);
    assert_int_equal(strlen(d), 1024);
    assert_int_equal(datos_utf8_check((const unsigned char *)d, 1024), 1024);
    /* one ASCII byte first: now the 1,024th byte would split a character */
    longd = apr_pstrcat(p, "x", longd, NULL);
    assert_int_equal(datos_pubsub_deadletter_attrs(
                         p, m, "s", DATOS_REASON_NOT_JSON, longd, &out, &err),
                     APR_SUCCESS);
    d = attr(out, "datos_error_detail", &count);
    assert_int_equal(strlen(d), 1023);
    assert_int_equal(datos_utf8_check((const unsigned char *)d, 1023), 1023);
    /* no detail at all is an empty one */
    assert_int_equal(datos_pubsub_deadletter_attrs(
                         p, m, "s", DATOS_REASON_NOT_JSON, NULL, &out, &err),
                     APR_SUCCESS);
    assert_string_equal(attr(out, "datos_error_detail", &count), "");
}

static void deadletter_limits(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    apr_array_header_t *msgs = pull(
        p,
        "{\"receivedMessages\":[{\"ackId\":\"a\",\"message\":{\"data\":\"eA==\","
        "\"messageId\":\"1\",\"publishTime\":\"2024-01-14T14:00:00Z\"}}]}");
    datos_pubsub_msg_t m = *MSG(msgs, 0);
    apr_array_header_t *out;
    datos_err_t err = {0};
    int i;

    m.attributes = apr_array_make(p, 96, sizeof(datos_attr_t));
    for (i = 0; i < 95; i++) {
        datos_attr_t *a = apr_array_push(m.attributes);
        a->key = apr_psprintf(p, "k%d", i);
        a->value = "v";
        a->value_len = 1;
    }
    assert_int_equal(datos_pubsub_deadletter_attrs(
                         p, &m, "s", DATOS_REASON_NOT_JSON, "d", &out, &err),
                     APR_SUCCESS);
    assert_int_equal(out->nelts, 100);
    APR_ARRAY_PUSH(m.attributes, datos_attr_t) =
        APR_ARRAY_IDX(out, 95, datos_attr_t);
    /* 95 + datos_error: that one is replaced, so still 100 */
    assert_int_equal(datos_pubsub_deadletter_attrs(
                         p, &m, "s", DATOS_REASON_NOT_JSON, "d", &out, &err),
                     APR_SUCCESS);
    APR_ARRAY_IDX(m.attributes, 95, datos_attr_t).key = "k95";
    assert_int_equal(datos_pubsub_deadletter_attrs(
                         p, &m, "s", DATOS_REASON_NOT_JSON, "d", &out, &err),
                     DATOS_ETOOLARGE);
    m.message_id = NULL;
    assert_int_equal(datos_pubsub_deadletter_attrs(
                         p, &m, "s", DATOS_REASON_NOT_JSON, "d", &out, &err),
                     APR_EINVAL);
    m = *MSG(msgs, 0);
    assert_int_equal(datos_pubsub_deadletter_attrs(
                         p, &m, "s", DATOS_REASON_NONE, "d", &out, &err),
                     APR_EINVAL);
}

/* A pulled message's dead-letter copy publishes with its data unchanged. */
static void deadletter_publishes(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    apr_array_header_t *msgs = pull(
        p,
        "{\"receivedMessages\":[{\"ackId\":\"a\",\"message\":{\"data\":\"AP8=\","
        "\"attributes\":{\"k\":\"v\\u0000w\"},"
        "\"messageId\":\"9\",\"publishTime\":\"2024-01-14T14:00:00Z\"}}]}");
    const datos_pubsub_msg_t *m = MSG(msgs, 0);
    datos_pubsub_out_t out;
    apr_array_header_t *bodies;
    datos_err_t err = {0};
    json_t *j, *msg;

    memset(&out, 0, sizeof(out));
    out.data = m->data;
    out.data_len = m->data_len;
    assert_int_equal(datos_pubsub_deadletter_attrs(
                         p, m, "projects/p/subscriptions/s",
                         DATOS_REASON_NOT_UTF8, "byte 1",
                         (apr_array_header_t **)&out.attributes, &err),
                     APR_SUCCESS);
    assert_int_equal(datos_pubsub_publish_bodies(p, &out, 1, &bodies, &err),
                     APR_SUCCESS);
    j = load(BODY(bodies, 0)->body, BODY(bodies, 0)->len);
    msg = json_array_get(json_object_get(j, "messages"), 0);
    assert_string_equal(json_string_value(json_object_get(msg, "data")),
                        "AP8=");
    assert_int_equal(json_string_length(json_object_get(
                         json_object_get(msg, "attributes"), "k")),
                     3);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(msg, "attributes"), "datos_error")),
                        "not_utf8");
    json_decref(j);
}

/* The forms of a dead letter against Pub/Sub's limits: the plain one
 * while it fits, the envelope when the attributes do not, neither when the
 * request would pass 10,000,000 bytes; the size as Pub/Sub counts it. */
static void deadletter_forms(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    static const char topic[] = "projects/p/topics/dlq";
    datos_pubsub_msg_t m;
    datos_pubsub_out_t out;
    datos_attr_t *a;
    datos_err_t err = {0};
    json_t *env, *attrs;
    json_error_t jerr;
    unsigned char *back;
    apr_size_t n;
    int i, count;

    memset(&m, 0, sizeof(m));
    m.message_id = "11473219786351020";
    m.publish_time = "2024-01-14T14:00:00.123Z";
    m.data = (const unsigned char *)"not json";
    m.data_len = 8;
    m.attributes = apr_array_make(p, 99, sizeof(datos_attr_t));
    /* the topic's field (1 + 1 + 21), the message's (1 + 1) holding the
     * data's (1 + 1 + 8): 35 bytes */
    out.data = m.data;
    out.data_len = m.data_len;
    out.attributes = NULL;
    out.ordering_key = NULL;
    assert_int_equal(datos_pubsub_publish_size(topic, &out), 2 + 21 + 2 + 10);

    for (i = 0; i < 95; i++) {
        a = apr_array_push(m.attributes);
        a->key = apr_psprintf(p, "k%02d", i);
        a->value = "v";
        a->value_len = 1;
    }
    assert_int_equal(
        datos_pubsub_deadletter(p, &m, "projects/p/subscriptions/s", topic,
                                DATOS_REASON_NOT_JSON, "d",
                                DATOS_DEADLETTER_PLAIN, &out, &err),
        APR_SUCCESS);
    assert_int_equal(out.attributes->nelts, 100);
    assert_ptr_equal(out.data, m.data);
    /* one more of its own, and the five no longer fit */
    a = apr_array_push(m.attributes);
    a->key = "k95";
    a->value = "v";
    a->value_len = 1;
    assert_int_equal(
        datos_pubsub_deadletter(p, &m, "projects/p/subscriptions/s", topic,
                                DATOS_REASON_NOT_JSON, "d",
                                DATOS_DEADLETTER_PLAIN, &out, &err),
        DATOS_ETOOLARGE);
    assert_int_equal(
        datos_pubsub_deadletter(p, &m, "projects/p/subscriptions/s", topic,
                                DATOS_REASON_NOT_JSON, "d",
                                DATOS_DEADLETTER_ENVELOPE, &out, &err),
        APR_SUCCESS);
    assert_int_equal(out.attributes->nelts, 100);
    assert_string_equal(attr(out.attributes, "datos_envelope", &count), "1");
    assert_string_equal(attr(out.attributes, "datos_error", &count),
                        "not_json");
    assert_string_equal(attr(out.attributes, "k93", &count), "v");
    assert_null(attr(out.attributes, "k94", &count)); /* 6 + 94 */
    env = json_loadb((const char *)out.data, out.data_len,
                     JSON_REJECT_DUPLICATES, &jerr);
    assert_non_null(env);
    assert_int_equal(json_integer_value(json_object_get(env, "datos_envelope")),
                     1);
    assert_string_equal(json_string_value(json_object_get(env, "error")),
                        "not_json");
    assert_string_equal(
        json_string_value(json_object_get(env, "source_message_id")),
        m.message_id);
    attrs = json_object_get(env, "attributes");
    assert_int_equal(json_object_size(attrs), 96);
    assert_int_equal(
        datos_base64_decode(p, json_string_value(json_object_get(env, "data")),
                            json_string_length(json_object_get(env, "data")),
                            &back, &n),
        APR_SUCCESS);
    assert_int_equal(n, 8);
    assert_memory_equal(back, "not json", 8);
    json_decref(env);

    /* data that fills a request leaves room for neither form */
    m.attributes->nelts = 0;
    m.data_len = 9999950;
    m.data = apr_pcalloc(p, m.data_len + 1);
    assert_int_equal(
        datos_pubsub_deadletter(p, &m, "projects/p/subscriptions/s", topic,
                                DATOS_REASON_NOT_JSON, "d",
                                DATOS_DEADLETTER_PLAIN, &out, &err),
        DATOS_ETOOLARGE);
    assert_int_equal(
        datos_pubsub_deadletter(p, &m, "projects/p/subscriptions/s", topic,
                                DATOS_REASON_NOT_JSON, "d",
                                DATOS_DEADLETTER_ENVELOPE, &out, &err),
        DATOS_ETOOLARGE);
    assert_non_null(strstr(err.message, "10000000"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        DT_TEST(base64_vectors),
        DT_TEST(base64_rejects),
        DT_TEST(base64_round_trips),
        DT_TEST(publish_time),
        DT_TEST(pull_wire_example),
        DT_TEST(pulled_messages_outlive_their_answer),
        DT_TEST(pull_large_answer_data),
        DT_TEST(pull_empty_and_minimal),
        DT_TEST(pull_malformed_answers),
        DT_TEST(pull_marks_bad_entries),
        DT_TEST(pull_body),
        DT_TEST(publish_exact_body),
        DT_TEST(publish_refuses),
        DT_TEST(publish_splits_at_limits),
        DT_TEST(publish_answer),
        DT_TEST(ack_exact_bodies),
        DT_TEST(ack_chunks),
        DT_TEST(deadletter_attributes),
        DT_TEST(deadletter_detail_is_one_clean_line),
        DT_TEST(deadletter_limits),
        DT_TEST(deadletter_publishes),
        DT_TEST(deadletter_forms),
    };
    return cmocka_run_group_tests(tests, dt_group_setup, dt_group_teardown);
}
