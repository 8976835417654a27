/* test_pubsub_client.c - the Pub/Sub calls against the scripted loopback
 * server: paths, headers and bodies byte for byte, chunking, what a
 * failure part-way says, refusals, and answers larger than the default
 * response cap. */
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "dt_support.h"
#include "datos_pubsub_client.h"

#define SUB        "projects/my-proj/subscriptions/datos-subscription"
#define TOPIC      "projects/my-proj/topics/datos-topic"
#define SUB_PATH   "/v1/projects/my-proj/subscriptions/datos-subscription"
#define TOPIC_PATH "/v1/projects/my-proj/topics/datos-topic"
#define TOKEN \
    "{\"access_token\":\"ps-tok\",\"expires_in\":3600,\"token_type\":\"Bearer\"}"

typedef struct {
    apr_pool_t *p;
    dt_server_t *srv;
    const char *base;
    datos_creds_t *creds;
    datos_pubsub_conf_t conf;
    datos_pubsub_t *ps;
} fx_t;

static int fx_setup(void **state)
{
    apr_pool_t *p;
    fx_t *fx;
    datos_err_t err = {0};

    if (apr_pool_create(&p, NULL) != APR_SUCCESS) {
        return -1;
    }
    fx = apr_pcalloc(p, sizeof(*fx));
    fx->p = p;
    fx->srv = dt_server_start();
    fx->base = dt_server_url(fx->srv, p);
    fx->creds = dt_server_creds(p, fx->base, datos_scopes_bigquery_pubsub);
    fx->conf.base_url = apr_pstrcat(p, fx->base, "/", NULL);
    datos_http_opts_default(&fx->conf.http);
    fx->conf.creds = fx->creds;
    if (datos_pubsub_create(p, &fx->conf, &fx->ps, &err) != APR_SUCCESS) {
        fail_msg("create: %s", err.message);
    }
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

static dt_request_t *req(fx_t *fx, int i)
{
    return dt_server_request(fx->srv, fx->p, i);
}

static apr_time_t soon(void)
{
    return apr_time_now() + apr_time_from_sec(10);
}

/* ids "ack-0".."ack-(n-1)", each padded to 40 bytes */
static const char *const *ack_ids(apr_pool_t *p, int n)
{
    const char **ids = apr_palloc(p, sizeof(*ids) * (apr_size_t)n);
    int i;

    for (i = 0; i < n; i++) {
        ids[i] = apr_psprintf(p, "ack-%036d", i);
    }
    return ids;
}

static void pull_request_and_answer(void **state)
{
    fx_t *fx = *state;
    apr_array_header_t *msgs;
    datos_err_t err = {0};
    const datos_pubsub_msg_t *m;
    dt_request_t *r;

    dt_server_json(fx->srv, 200, TOKEN);
    dt_server_json(
        fx->srv, 200,
        "{\"receivedMessages\":[{\"ackId\":\"UAYWLF1GSFE3\",\"message\":{\"data\":\"eyJpZCI6MX0=\","
        "\"attributes\":{\"source\":\"web\"},\"messageId\":\"11473219786351020\","
        "\"publishTime\":\"2024-01-14T14:00:00.123Z\"},\"deliveryAttempt\":2}]}");
    dt_server_json(fx->srv, 200, "{}");
    assert_int_equal(
        datos_pubsub_pull(fx->ps, fx->p, soon(), SUB, 500, &msgs, &err),
        APR_SUCCESS);
    assert_int_equal(msgs->nelts, 1);
    m = &APR_ARRAY_IDX(msgs, 0, datos_pubsub_msg_t);
    assert_string_equal(m->ack_id, "UAYWLF1GSFE3");
    assert_string_equal(m->message_id, "11473219786351020");
    assert_string_equal((const char *)m->data, "{\"id\":1}");
    assert_int_equal(m->delivery_attempt, 2);
    assert_null(m->problem);
    /* nothing available: {} */
    assert_int_equal(
        datos_pubsub_pull(fx->ps, fx->p, soon(), SUB, 5000, &msgs, &err),
        APR_SUCCESS);
    assert_int_equal(msgs->nelts, 0);

    assert_int_equal(dt_server_count(fx->srv), 3); /* one token for both */
    r = req(fx, 1);
    assert_string_equal(r->method, "POST");
    assert_string_equal(r->target, SUB_PATH ":pull");
    assert_string_equal(r->body, "{\"maxMessages\":500}");
    assert_string_equal(dt_request_header(fx->p, r, "Authorization"),
                        "Bearer ps-tok");
    assert_string_equal(dt_request_header(fx->p, r, "Content-Type"),
                        "application/json");
    assert_string_equal(req(fx, 2)->body,
                        "{\"maxMessages\":1000}"); /* clamped */
}

static void pull_refusals(void **state)
{
    fx_t *fx = *state;
    apr_array_header_t *msgs = NULL;
    datos_err_t err = {0};
    dt_response_t r;

    dt_server_json(fx->srv, 200, TOKEN);
    dt_server_json(
        fx->srv, 404,
        "{\"error\":{\"code\":404,\"message\":\"Resource not found "
        "(resource=datos-subscription).\",\"status\":\"NOT_FOUND\"}}");
    memset(&r, 0, sizeof(r));
    r.status = 429;
    r.headers = "Retry-After: 12\r\n";
    r.body =
        "{\"error\":{\"code\":429,\"message\":\"slow\",\"status\":\"RESOURCE_EXHAUSTED\"}}";
    dt_server_push(fx->srv, &r);
    dt_server_json(fx->srv, 200, "{\"receivedMessages\":7}");
    dt_server_json(fx->srv, 200, "<html>");

    assert_int_equal(
        datos_pubsub_pull(fx->ps, fx->p, soon(), SUB, 1, &msgs, &err),
        DATOS_EREJECTED);
    assert_string_equal(err.message,
                        "subscriptions.pull: HTTP 404 NOT_FOUND: Resource not "
                        "found (resource=datos-subscription).");
    assert_int_equal(
        datos_pubsub_pull(fx->ps, fx->p, soon(), SUB, 1, &msgs, &err),
        DATOS_ERATELIMIT);
    assert_int_equal(err.retry_after, apr_time_from_sec(12));
    assert_int_equal(
        datos_pubsub_pull(fx->ps, fx->p, soon(), SUB, 1, &msgs, &err),
        DATOS_EMALFORMED);
    assert_int_equal(strncmp(err.message, "subscriptions.pull: ", 20), 0);
    assert_int_equal(err.http_status, 200);
    assert_int_equal(
        datos_pubsub_pull(fx->ps, fx->p, soon(), SUB, 1, &msgs, &err),
        DATOS_EMALFORMED);

    /* names: full, of the right kind; nothing is sent otherwise */
    assert_int_equal(datos_pubsub_pull(fx->ps, fx->p, 0, "datos-subscription",
                                       1, &msgs, &err),
                     APR_EINVAL);
    assert_non_null(strstr(err.message, "projects/P/subscriptions/S"));
    assert_int_equal(datos_pubsub_pull(fx->ps, fx->p, 0, TOPIC, 1, &msgs, &err),
                     APR_EINVAL);
    assert_int_equal(datos_pubsub_pull(fx->ps, fx->p, 0,
                                       "projects//subscriptions/s", 1, &msgs,
                                       &err),
                     APR_EINVAL);
    assert_int_equal(
        datos_pubsub_pull(fx->ps, fx->p, 0, SUB "/x", 1, &msgs, &err),
        APR_EINVAL);
    assert_int_equal(datos_pubsub_pull(fx->ps, fx->p, 0, NULL, 1, &msgs, &err),
                     APR_EINVAL);
    assert_int_equal(dt_server_count(fx->srv), 5);
}

/* Ids may hold what a path must escape; the verb stays a literal colon. */
static void names_are_escaped(void **state)
{
    fx_t *fx = *state;
    apr_array_header_t *msgs;
    datos_err_t err = {0};

    dt_server_json(fx->srv, 200, TOKEN);
    dt_server_json(fx->srv, 200, "{}");
    assert_int_equal(
        datos_pubsub_pull(fx->ps, fx->p, 0,
                          "projects/example.com:proj/subscriptions/a%b+c~d", 1,
                          &msgs, &err),
        APR_SUCCESS);
    assert_string_equal(
        req(fx, 1)->target,
        "/v1/projects/example.com%3Aproj/subscriptions/a%25b%2Bc~d:pull");
}

/* A pull answer may be ~20 MB and more: the client reads past the
 * handle's usual 32 MiB cap. */
static void large_pull_answer(void **state)
{
    fx_t *fx = *state;
    apr_array_header_t *msgs;
    datos_err_t err = {0};
    apr_size_t n = (apr_size_t)36 * 1024 * 1024, head, i;
    const char *pre =
        "{\"receivedMessages\":[{\"ackId\":\"a1\",\"message\":{\"messageId\":\"1\","
        "\"publishTime\":\"2024-01-14T14:00:00Z\",\"data\":\"";
    const char *post = "\"}}]}";
    char *body;
    dt_response_t r;
    const datos_pubsub_msg_t *m;

    head = strlen(pre);
    body = malloc(head + n + strlen(post) + 1);
    assert_non_null(body);
    memcpy(body, pre, head);
    for (i = 0; i < n; i++) {
        body[head + i] = "QUJD"[i % 4]; /* "ABC" repeated */
    }
    strcpy(body + head + n, post);
    dt_server_json(fx->srv, 200, TOKEN);
    memset(&r, 0, sizeof(r));
    r.status = 200;
    r.body = body;
    dt_server_push(fx->srv, &r);
    free(body);
    assert_int_equal(datos_pubsub_pull(fx->ps, fx->p, 0, SUB, 1, &msgs, &err),
                     APR_SUCCESS);
    assert_int_equal(msgs->nelts, 1);
    m = &APR_ARRAY_IDX(msgs, 0, datos_pubsub_msg_t);
    assert_null(m->problem);
    assert_int_equal(m->data_len, n / 4 * 3);
    assert_memory_equal(m->data + m->data_len - 6, "ABCABC", 6);
}

/* 6,000 ack ids: three requests of 2,500, 2,500 and 1,000, in order. */
static void ack_chunks(void **state)
{
    fx_t *fx = *state;
    datos_err_t err = {0};
    const char *const *ids = ack_ids(fx->p, 6000);
    apr_array_header_t *bodies;
    int i;

    assert_int_equal(datos_pubsub_ack_bodies(fx->p, ids, 6000, &bodies, &err),
                     APR_SUCCESS);
    assert_int_equal(bodies->nelts, 3);
    dt_server_json(fx->srv, 200, TOKEN);
    for (i = 0; i < 3; i++) {
        dt_server_json(fx->srv, 200, "{}");
    }
    assert_int_equal(
        datos_pubsub_ack(fx->ps, fx->p, soon(), SUB, ids, 6000, &err),
        APR_SUCCESS);
    assert_int_equal(dt_server_count(fx->srv), 4);
    for (i = 0; i < 3; i++) {
        dt_request_t *r = req(fx, 1 + i);
        const datos_pubsub_body_t *b =
            &APR_ARRAY_IDX(bodies, i, datos_pubsub_body_t);
        assert_string_equal(r->target, SUB_PATH ":acknowledge");
        assert_int_equal(r->body_len, b->len);
        assert_memory_equal(r->body, b->body, b->len);
    }
    /* nothing to ack: no request */
    assert_int_equal(datos_pubsub_ack(fx->ps, fx->p, soon(), SUB, ids, 0, &err),
                     APR_SUCCESS);
    assert_int_equal(dt_server_count(fx->srv), 4);

    /* the second chunk fails: the first went through, the third is not sent */
    dt_server_json(fx->srv, 200, "{}");
    dt_server_json(fx->srv, 503,
                   "{\"error\":{\"code\":503,\"message\":\"down\","
                   "\"status\":\"UNAVAILABLE\"}}");
    assert_int_equal(
        datos_pubsub_ack(fx->ps, fx->p, soon(), SUB, ids, 6000, &err),
        DATOS_EBACKEND);
    assert_string_equal(
        err.message, "subscriptions.acknowledge: HTTP 503 UNAVAILABLE: down "
                     "(2500 of 6000 ack ids acknowledged before the failure)");
    assert_int_equal(dt_server_count(fx->srv), 6);
}

static void modack_chunks(void **state)
{
    fx_t *fx = *state;
    datos_err_t err = {0};
    const char *const *ids = ack_ids(fx->p, 2501);

    dt_server_json(fx->srv, 200, TOKEN);
    dt_server_json(fx->srv, 200, "{}");
    dt_server_json(fx->srv, 200, "{}");
    assert_int_equal(
        datos_pubsub_modack(fx->ps, fx->p, soon(), SUB, ids, 2501, 300, &err),
        APR_SUCCESS);
    assert_string_equal(req(fx, 1)->target, SUB_PATH ":modifyAckDeadline");
    assert_string_equal(
        req(fx, 2)->body,
        apr_psprintf(fx->p, "{\"ackIds\":[\"%s\"],\"ackDeadlineSeconds\":300}",
                     ids[2500]));
    /* a nack of one */
    dt_server_json(fx->srv, 400,
                   "{\"error\":{\"code\":400,\"message\":\"You have passed an "
                   "invalid ack ID\",\"status\":\"INVALID_ARGUMENT\"}}");
    assert_int_equal(
        datos_pubsub_modack(fx->ps, fx->p, soon(), SUB, ids, 1, 0, &err),
        DATOS_EREJECTED);
    assert_string_equal(
        req(fx, 3)->body,
        apr_psprintf(fx->p, "{\"ackIds\":[\"%s\"],\"ackDeadlineSeconds\":0}",
                     ids[0]));
    /* one chunk: nothing to say about chunks */
    assert_null(strstr(err.message, "before the failure"));
    /* out of range: refused before any request */
    assert_int_equal(
        datos_pubsub_modack(fx->ps, fx->p, soon(), SUB, ids, 1, 601, &err),
        APR_EINVAL);
    assert_int_equal(
        strncmp(err.message, "subscriptions.modifyAckDeadline: ", 33), 0);
    assert_int_equal(dt_server_count(fx->srv), 4);
}

static datos_pubsub_out_t *out_msgs(apr_pool_t *p, int n)
{
    datos_pubsub_out_t *m = apr_pcalloc(p, sizeof(*m) * (apr_size_t)n);
    int i;

    for (i = 0; i < n; i++) {
        const char *d = apr_psprintf(p, "{\"id\":\"%d\"}", i);
        m[i].data = (const unsigned char *)d;
        m[i].data_len = strlen(d);
    }
    return m;
}

static const char *ids_answer(apr_pool_t *p, int first, int n)
{
    const char *s = "{\"messageIds\":[";
    int i;

    for (i = 0; i < n; i++) {
        s = apr_psprintf(p, "%s%s\"%" APR_INT64_T_FMT "\"", s, i ? "," : "",
                         (apr_int64_t)11000000000000000 + first + i);
    }
    return apr_pstrcat(p, s, "]}", NULL);
}

static void publish_in_order(void **state)
{
    fx_t *fx = *state;
    datos_err_t err = {0};
    datos_pubsub_out_t *m = out_msgs(fx->p, 2500);
    apr_array_header_t *ids = NULL, *bodies;
    int i;

    assert_int_equal(datos_pubsub_publish_bodies(fx->p, m, 2500, &bodies, &err),
                     APR_SUCCESS);
    assert_int_equal(bodies->nelts, 3);
    dt_server_json(fx->srv, 200, TOKEN);
    dt_server_json(fx->srv, 200, ids_answer(fx->p, 0, 1000));
    dt_server_json(fx->srv, 200, ids_answer(fx->p, 1000, 1000));
    dt_server_json(fx->srv, 200, ids_answer(fx->p, 2000, 500));
    assert_int_equal(
        datos_pubsub_publish(fx->ps, fx->p, soon(), TOPIC, m, 2500, &ids, &err),
        APR_SUCCESS);
    assert_int_equal(ids->nelts, 2500);
    for (i = 0; i < 2500; i += 499) {
        assert_string_equal(APR_ARRAY_IDX(ids, i, const char *),
                            apr_psprintf(fx->p, "%" APR_INT64_T_FMT,
                                         (apr_int64_t)11000000000000000 + i));
    }
    for (i = 0; i < 3; i++) {
        const datos_pubsub_body_t *b =
            &APR_ARRAY_IDX(bodies, i, datos_pubsub_body_t);
        assert_string_equal(req(fx, 1 + i)->target, TOPIC_PATH ":publish");
        assert_int_equal(req(fx, 1 + i)->body_len, b->len);
        assert_memory_equal(req(fx, 1 + i)->body, b->body, b->len);
    }

    /* the second request fails: the ids of the first are handed out */
    dt_server_json(fx->srv, 200, ids_answer(fx->p, 5000, 1000));
    dt_server_json(fx->srv, 500,
                   "{\"error\":{\"code\":500,\"message\":\"oops\","
                   "\"status\":\"INTERNAL\"}}");
    assert_int_equal(
        datos_pubsub_publish(fx->ps, fx->p, soon(), TOPIC, m, 2500, &ids, &err),
        DATOS_EBACKEND);
    assert_int_equal(ids->nelts, 1000);
    assert_string_equal(APR_ARRAY_IDX(ids, 999, const char *),
                        "11000000000005999");
    assert_non_null(strstr(
        err.message, "(1000 of 2500 messages published before the failure)"));
    assert_int_equal(dt_server_count(fx->srv), 6);

    /* an answer with the wrong number of ids: which were published is unknown */
    dt_server_json(fx->srv, 200, ids_answer(fx->p, 0, 2));
    assert_int_equal(
        datos_pubsub_publish(fx->ps, fx->p, soon(), TOPIC, m, 3, &ids, &err),
        DATOS_EMALFORMED);
    assert_int_equal(ids->nelts, 0);
    assert_int_equal(strncmp(err.message, "topics.publish: ", 16), 0);
    /* an empty message is refused before any request */
    m[0].data_len = 0;
    assert_int_equal(
        datos_pubsub_publish(fx->ps, fx->p, soon(), TOPIC, m, 1, &ids, &err),
        APR_EINVAL);
    assert_int_equal(
        datos_pubsub_publish(fx->ps, fx->p, soon(), SUB, m + 1, 1, &ids, &err),
        APR_EINVAL);
    assert_int_equal(dt_server_count(fx->srv), 7);
}

/* The transport rule and the emulator: no credentials, no Authorization. */
static void create_and_emulator(void **state)
{
    fx_t *fx = *state;
    datos_pubsub_conf_t c = fx->conf;
    datos_pubsub_t *ps;
    datos_err_t err = {0};
    apr_array_header_t *msgs;

    c.base_url = "http://pubsub.example.com";
    assert_int_equal(datos_pubsub_create(fx->p, &c, &ps, &err),
                     DATOS_EINSECURE);
    assert_string_equal(err.reason, DATOS_REASON_PLAIN_HTTP);
    c.http.allow_insecure = 1;
    assert_int_equal(datos_pubsub_create(fx->p, &c, &ps, &err), APR_SUCCESS);
    c.base_url = NULL;
    assert_int_equal(datos_pubsub_create(fx->p, &c, &ps, &err), DATOS_ECONFIG);
    c.base_url = "https://pubsub.googleapis.com";
    c.http.timeout = 0;
    assert_int_equal(datos_pubsub_create(fx->p, &c, &ps, &err), DATOS_ECONFIG);

    c = fx->conf;
    c.creds = NULL;
    assert_int_equal(datos_pubsub_create(fx->p, &c, &ps, &err), APR_SUCCESS);
    dt_server_json(fx->srv, 200, "{}");
    assert_int_equal(datos_pubsub_pull(ps, fx->p, 0, SUB, 1, &msgs, &err),
                     APR_SUCCESS);
    assert_null(dt_request_header(fx->p, req(fx, 0), "Authorization"));
    assert_string_equal(req(fx, 0)->target, SUB_PATH ":pull");
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
        FX_TEST(pull_request_and_answer),
        FX_TEST(pull_refusals),
        FX_TEST(names_are_escaped),
        FX_TEST(large_pull_answer),
        FX_TEST(ack_chunks),
        FX_TEST(modack_chunks),
        FX_TEST(publish_in_order),
        FX_TEST(create_and_emulator),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
