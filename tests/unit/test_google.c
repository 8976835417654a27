/* test_google.c - the Google call layer: the one classifier of Google's
 * refusals (every Pub/Sub status, BigQuery reasons, the OAuth shape, bodies
 * that are none of these), and datos_google_call against the scripted
 * loopback server (the bearer token, one refresh after a 401, Retry-After,
 * accepted statuses, x-goog-user-project, the deadline). */
#include <stdlib.h>
#include <string.h>

#include "dt_support.h"
#include "datos_google.h"
#include "datos_google_classify.h"

#define TOKEN(t) \
    "{\"access_token\":\"" t "\",\"expires_in\":3600,\"token_type\":\"Bearer\"}"
#define PS(code, status)                                                    \
    "{\"error\":{\"code\":" #code ",\"message\":\"m\",\"status\":\"" status \
    "\"}}"
#define BQ(code, reason, status)                                             \
    "{\"error\":{\"code\":" #code                                            \
    ",\"message\":\"m\",\"errors\":[{\"message\":\"m\","                     \
    "\"domain\":\"global\",\"reason\":\"" reason "\"}],\"status\":\"" status \
    "\"}}"

typedef struct {
    int status;
    const char *body;
    apr_status_t want;
    const char *reason; /* NULL: none */
} ccase_t;

static void check_cases(apr_pool_t *p, datos_google_source_t src,
                        const ccase_t *cases, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        datos_err_t err = {0};
        apr_status_t rv = datos_google_classify(
            p, src, cases[i].status, cases[i].body, strlen(cases[i].body),
            apr_time_from_sec(3), &err);
        if (rv != cases[i].want || err.rv != rv) {
            fail_msg("case %zu (HTTP %d %s): got %s, want %s", i,
                     cases[i].status, cases[i].body, datos_status_name(rv),
                     datos_status_name(cases[i].want));
        }
        assert_int_equal(err.http_status, cases[i].status);
        assert_int_equal(err.retry_after, apr_time_from_sec(3));
        assert_non_null(err.message);
        assert_non_null(
            strstr(err.message, apr_psprintf(p, "HTTP %d", cases[i].status)));
        if (cases[i].reason) {
            assert_non_null(err.reason);
            assert_string_equal(err.reason, cases[i].reason);
        }
        else if (err.reason) {
            fail_msg("case %zu: unexpected reason %s", i, err.reason);
        }
    }
}

/* Pub/Sub says what happened in status alone (docs/google-apis.md 0.4, 1.9). */
static void pubsub_statuses(void **state)
{
    static const ccase_t cases[] = {
        {429, PS(429, "RESOURCE_EXHAUSTED"), DATOS_ERATELIMIT,
         "RESOURCE_EXHAUSTED"},
        {503, PS(503, "UNAVAILABLE"), DATOS_EBACKEND, "UNAVAILABLE"},
        {500, PS(500, "INTERNAL"), DATOS_EBACKEND, "INTERNAL"},
        {500, PS(500, "UNKNOWN"), DATOS_EBACKEND, "UNKNOWN"},
        {409, PS(409, "ABORTED"), DATOS_EBACKEND, "ABORTED"},
        {504, PS(504, "DEADLINE_EXCEEDED"), DATOS_EBACKEND,
         "DEADLINE_EXCEEDED"},
        {499, PS(499, "CANCELLED"), DATOS_EBACKEND, "CANCELLED"},
        {500, PS(500, "DATA_LOSS"), DATOS_EBACKEND, "DATA_LOSS"},
        {404, PS(404, "NOT_FOUND"), DATOS_EREJECTED, "NOT_FOUND"},
        {400, PS(400, "INVALID_ARGUMENT"), DATOS_EREJECTED, "INVALID_ARGUMENT"},
        {400, PS(400, "FAILED_PRECONDITION"), DATOS_EREJECTED,
         "FAILED_PRECONDITION"},
        {400, PS(400, "OUT_OF_RANGE"), DATOS_EREJECTED, "OUT_OF_RANGE"},
        {501, PS(501, "UNIMPLEMENTED"), DATOS_EREJECTED, "UNIMPLEMENTED"},
        {403, PS(403, "PERMISSION_DENIED"), DATOS_EAUTH, "PERMISSION_DENIED"},
        {401, PS(401, "UNAUTHENTICATED"), DATOS_EAUTH, "UNAUTHENTICATED"},
        {409, PS(409, "ALREADY_EXISTS"), DATOS_EEXISTS, "ALREADY_EXISTS"},
        /* the status decides even where the code alone would not */
        {400, PS(400, "UNAVAILABLE"), DATOS_EBACKEND, "UNAVAILABLE"},
        {400, PS(400, "RESOURCE_EXHAUSTED"), DATOS_ERATELIMIT,
         "RESOURCE_EXHAUSTED"},
        /* an unknown status: the code decides */
        {418, PS(418, "TEAPOT"), DATOS_EREJECTED, "TEAPOT"},
        {503, PS(503, "TEAPOT"), DATOS_EBACKEND, "TEAPOT"},
    };

    check_cases(DT_POOL(state), DATOS_GOOGLE_API, cases,
                sizeof(cases) / sizeof(cases[0]));
}

/* BigQuery's errors[0].reason wins over its status (docs/google-apis.md 2.10). */
static void bigquery_reasons(void **state)
{
    static const ccase_t cases[] = {
        {409, BQ(409, "duplicate", "ALREADY_EXISTS"), DATOS_EEXISTS,
         "duplicate"},
        {403, BQ(403, "rateLimitExceeded", "PERMISSION_DENIED"),
         DATOS_ERATELIMIT, "rateLimitExceeded"},
        {429, BQ(429, "rateLimitExceeded", "RESOURCE_EXHAUSTED"),
         DATOS_ERATELIMIT, "rateLimitExceeded"},
        {403, BQ(403, "quotaExceeded", "PERMISSION_DENIED"), DATOS_EQUOTA,
         "quotaExceeded"},
        {403, BQ(403, "accessDenied", "PERMISSION_DENIED"), DATOS_EAUTH,
         "accessDenied"},
        {403, BQ(403, "billingNotEnabled", "PERMISSION_DENIED"), DATOS_EAUTH,
         "billingNotEnabled"},
        {401, BQ(401, "required", "UNAUTHENTICATED"), DATOS_EAUTH, "required"},
        {400, BQ(400, "bytesBilledLimitExceeded", "INVALID_ARGUMENT"),
         DATOS_EBYTESLIMIT, "bytesBilledLimitExceeded"},
        {400, BQ(400, "invalidQuery", "INVALID_ARGUMENT"), DATOS_EREJECTED,
         "invalidQuery"},
        {400, BQ(400, "invalid", "INVALID_ARGUMENT"), DATOS_EREJECTED,
         "invalid"},
        {404, BQ(404, "notFound", "NOT_FOUND"), DATOS_EREJECTED, "notFound"},
        {500, BQ(500, "backendError", "INTERNAL"), DATOS_EBACKEND,
         "backendError"},
        {503, BQ(503, "backendError", "UNAVAILABLE"), DATOS_EBACKEND,
         "backendError"},
        {400, BQ(400, "internalError", "INVALID_ARGUMENT"), DATOS_EBACKEND,
         "internalError"},
        {502, BQ(502, "badGateway", "UNAVAILABLE"), DATOS_EBACKEND,
         "badGateway"},
        {501, BQ(501, "notImplemented", "UNIMPLEMENTED"), DATOS_EREJECTED,
         "notImplemented"},
        {403, BQ(403, "responseTooLarge", "PERMISSION_DENIED"), DATOS_EAUTH,
         "responseTooLarge"},
        /* a reason without a status, a status without a reason */
        {409,
         "{\"error\":{\"code\":409,\"errors\":[{\"reason\":\"duplicate\"}]}}",
         DATOS_EEXISTS, "duplicate"},
        {403, "{\"error\":{\"code\":403,\"errors\":[]}}", DATOS_EAUTH, NULL},
        {409,
         "{\"error\":{\"code\":409,\"errors\":[{\"reason\":\"\"}],\"status\":\"\"}}",
         DATOS_EREJECTED, NULL},
    };

    check_cases(DT_POOL(state), DATOS_GOOGLE_API, cases,
                sizeof(cases) / sizeof(cases[0]));
}

/* Bodies that are no envelope: the HTTP status decides. */
static void other_bodies(void **state)
{
    static const ccase_t api[] = {
        {502,
         "<!DOCTYPE html><html><title>Error 502 (Server Error)!!1</title></html>",
         DATOS_EBACKEND, NULL},
        {503, "", DATOS_EBACKEND, NULL},
        {504, "upstream request timeout", DATOS_EBACKEND, NULL},
        {404, "<html>Not Found</html>", DATOS_EREJECTED, NULL},
        {429, "", DATOS_ERATELIMIT, NULL},
        {409, "", DATOS_EREJECTED,
         NULL}, /* ABORTED or ALREADY_EXISTS: unknown */
        {408, "", DATOS_EBACKEND, NULL},
        {401, "", DATOS_EAUTH, NULL},
        {403, "forbidden", DATOS_EAUTH, NULL},
        {400, "[1,2]", DATOS_EREJECTED, NULL},
        {302, "", DATOS_EBACKEND, NULL},
        {200, "{}", DATOS_EBACKEND, NULL},
        /* the OAuth shape, reaching an API */
        {400, "{\"error\":\"invalid_grant\",\"error_description\":\"Bad\"}",
         DATOS_EREJECTED, "invalid_grant"},
        {401, "{\"error\":\"invalid_client\"}", DATOS_EAUTH, "invalid_client"},
    };
    static const ccase_t token[] = {
        {400,
         "{\"error\":\"invalid_grant\",\"error_description\":\"Invalid JWT Signature.\"}",
         DATOS_EAUTH, "invalid_grant"},
        {401,
         "{\"error\":\"invalid_client\",\"error_description\":\"Unauthorized\"}",
         DATOS_EAUTH, "invalid_client"},
        {400, "{\"error\":\"invalid_scope\"}", DATOS_EAUTH, "invalid_scope"},
        {429, "{\"error\":\"rate_limited\"}", DATOS_ERATELIMIT, "rate_limited"},
        {500, "{\"error\":\"internal_failure\"}", DATOS_EBACKEND,
         "internal_failure"},
        {503, "<html>unavailable</html>", DATOS_EBACKEND, NULL},
        {404, PS(404, "NOT_FOUND"), DATOS_EAUTH, "NOT_FOUND"},
        {400, PS(400, "UNAVAILABLE"), DATOS_EAUTH,
         "UNAVAILABLE"}, /* the code decides */
        {403, "Missing required header: Metadata-Flavor: Google\n", DATOS_EAUTH,
         NULL},
        {302, "", DATOS_EMALFORMED, NULL},
    };

    check_cases(DT_POOL(state), DATOS_GOOGLE_API, api,
                sizeof(api) / sizeof(api[0]));
    check_cases(DT_POOL(state), DATOS_GOOGLE_TOKEN, token,
                sizeof(token) / sizeof(token[0]));
}

/* Messages: the envelope's message, cleaned and cut; what the body was
 * when there is none; nothing else of the body. */
static void messages(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_err_t err = {0};
    const char *b;

    b = BQ(404, "notFound", "NOT_FOUND");
    datos_google_classify(p, DATOS_GOOGLE_API, 404, b, strlen(b), 0, &err);
    assert_string_equal(err.message, "HTTP 404 notFound: m");
    b = PS(404, "NOT_FOUND");
    datos_google_classify(p, DATOS_GOOGLE_API, 404, b, strlen(b), 0, &err);
    assert_string_equal(err.message, "HTTP 404 NOT_FOUND: m");
    datos_google_classify(p, DATOS_GOOGLE_API, 502, "<html>", 6, 0, &err);
    assert_string_equal(err.message, "HTTP 502 with a non-JSON body");
    datos_google_classify(p, DATOS_GOOGLE_API, 503, NULL, 0, 0, &err);
    assert_string_equal(err.message, "HTTP 503 with an empty body");
    datos_google_classify(p, DATOS_GOOGLE_API, 400, "{\"x\":1}", 7, 0, &err);
    assert_string_equal(err.message,
                        "HTTP 400 with JSON that is not an error envelope");
    b = "{\"error\":{\"code\":403,\"status\":\"PERMISSION_DENIED\"}}";
    datos_google_classify(p, DATOS_GOOGLE_API, 403, b, strlen(b), 0, &err);
    assert_string_equal(
        err.message,
        "HTTP 403 PERMISSION_DENIED with an error envelope without a message");
    b = "{\"error\":\"invalid_client\"}";
    datos_google_classify(p, DATOS_GOOGLE_TOKEN, 401, b, strlen(b), 0, &err);
    assert_string_equal(err.message, "HTTP 401 invalid_client");
    b = "{\"error\":{\"message\":\"a\\nb\\r\\u001bc\",\"status\":\"X\\nY\"}}";
    datos_google_classify(p, DATOS_GOOGLE_API, 400, b, strlen(b), 0, &err);
    assert_string_equal(err.message, "HTTP 400 X Y: a b  c");
    assert_string_equal(err.reason, "X Y");
    /* a token-shaped body at an error status: no token in the message */
    b = "{\"access_token\":\"SECRET\",\"expires_in\":1,\"token_type\":\"Bearer\"}";
    datos_google_classify(p, DATOS_GOOGLE_TOKEN, 400, b, strlen(b), 0, &err);
    assert_null(strstr(err.message, "SECRET"));
    /* a NULL err still maps */
    assert_int_equal(
        datos_google_classify(p, DATOS_GOOGLE_API, 409, "", 0, 0, NULL),
        DATOS_EREJECTED);
}

/* google.rpc.RetryInfo counts like Retry-After: the larger one wins,
 * clamped the same way. */
static void retry_info(void **state)
{
    static const struct {
        const char *delay;
        apr_interval_time_t header;
        apr_interval_time_t want;
    } cases[] = {
        {"2.5s", 0, 2500000},
        {"2.5s", 7000000, 7000000},
        {"30s", 7000000, 30000000},
        {"0.001s", 0, DATOS_RETRY_AFTER_MIN},
        {"99999999999999999999s", 0, DATOS_RETRY_AFTER_MAX},
        {"3601s", 0, DATOS_RETRY_AFTER_MAX},
        {"1.123456789s", 0, 1123456},
        {"soon", 0, 0},
        {"5", 0, 0},
        {"-5s", 4000000, 4000000},
        {"5ss", 0, 0},
    };
    apr_pool_t *p = DT_POOL(state);
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        datos_err_t err = {0};
        const char *b = apr_psprintf(
            p,
            "{\"error\":{\"code\":429,\"message\":\"slow down\",\"status\":\"RESOURCE_EXHAUSTED\","
            "\"details\":[{\"@type\":\"type.googleapis.com/google.rpc.ErrorInfo\",\"reason\":\"x\"},"
            "{\"@type\":\"type.googleapis.com/google.rpc.RetryInfo\",\"retryDelay\":\"%s\"}]}}",
            cases[i].delay);
        assert_int_equal(datos_google_classify(p, DATOS_GOOGLE_API, 429, b,
                                               strlen(b), cases[i].header,
                                               &err),
                         DATOS_ERATELIMIT);
        if (err.retry_after != cases[i].want) {
            fail_msg("retryDelay %s: %" APR_INT64_T_FMT, cases[i].delay,
                     (apr_int64_t)err.retry_after);
        }
    }
}

/* ------------------------------------------------------------ calls */

typedef struct {
    apr_pool_t *p;
    dt_server_t *srv;
    const char *base;
    datos_creds_t *creds;
    datos_http_t *http;
} fx_t;

static int fx_setup(void **state)
{
    apr_pool_t *p;
    fx_t *fx;
    datos_err_t err = {0};
    datos_http_opts_t opts;

    if (apr_pool_create(&p, NULL) != APR_SUCCESS) {
        return -1;
    }
    fx = apr_pcalloc(p, sizeof(*fx));
    fx->p = p;
    fx->srv = dt_server_start();
    fx->base = dt_server_url(fx->srv, p);
    fx->creds = dt_server_creds(p, fx->base, NULL);
    datos_http_opts_default(&opts);
    assert_int_equal(datos_http_create(p, &opts, &fx->http, &err), APR_SUCCESS);
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

static datos_google_call_t get_call(fx_t *fx, const char *what,
                                    const char *path)
{
    datos_google_call_t c;

    memset(&c, 0, sizeof(c));
    c.what = what;
    c.url = apr_pstrcat(fx->p, fx->base, path, NULL);
    return c;
}

static const char *auth_of(fx_t *fx, int i)
{
    return dt_request_header(fx->p, dt_server_request(fx->srv, fx->p, i),
                             "Authorization");
}

/* The token is taken once per operation and sent on every call. */
static void calls_carry_the_token(void **state)
{
    fx_t *fx = *state;
    datos_google_op_t op;
    datos_google_call_t c = get_call(fx, "things.get", "/v1/things");
    datos_http_resp_t *resp;
    datos_err_t err = {0};

    dt_server_json(fx->srv, 200, TOKEN("tok-1"));
    dt_server_json(fx->srv, 200, "{\"a\":1}");
    dt_server_json(fx->srv, 201, "{\"b\":2}");
    datos_google_op_init(&op, fx->p, fx->http, fx->creds,
                         apr_time_now() + apr_time_from_sec(30), &err);
    assert_int_equal(datos_google_call(&op, fx->p, &c, &resp), APR_SUCCESS);
    assert_string_equal(resp->body, "{\"a\":1}");
    c.method = "POST";
    c.body = "{\"q\":1}";
    assert_int_equal(datos_google_call(&op, fx->p, &c, &resp), APR_SUCCESS);
    assert_int_equal(resp->status, 201);
    datos_google_op_done(&op);
    assert_int_equal(dt_server_count(fx->srv), 3);
    assert_string_equal(dt_server_request(fx->srv, fx->p, 0)->target, "/token");
    assert_string_equal(auth_of(fx, 1), "Bearer tok-1");
    assert_string_equal(auth_of(fx, 2), "Bearer tok-1");
    assert_string_equal(dt_server_request(fx->srv, fx->p, 2)->body,
                        "{\"q\":1}");
    assert_string_equal(dt_request_header(fx->p,
                                          dt_server_request(fx->srv, fx->p, 2),
                                          "Content-Type"),
                        "application/json");
    /* service-account keys bill the key's project: no user project header */
    assert_null(dt_request_header(fx->p, dt_server_request(fx->srv, fx->p, 1),
                                  "x-goog-user-project"));

    /* no credentials: no Authorization at all */
    dt_server_json(fx->srv, 200, "{}");
    datos_google_op_init(&op, fx->p, fx->http, NULL, 0, &err);
    assert_int_equal(datos_google_call(&op, fx->p, &c, &resp), APR_SUCCESS);
    assert_null(auth_of(fx, 3));
}

/* A 401 refreshes the token once per operation and replays the call. */
static void unauthorized_refreshes_once(void **state)
{
    fx_t *fx = *state;
    datos_google_op_t op;
    datos_google_call_t c = get_call(fx, "things.get", "/v1/things");
    datos_http_resp_t *resp;
    datos_err_t err = {0};
    const char *denied = PS(401, "UNAUTHENTICATED");

    dt_server_json(fx->srv, 200, TOKEN("old"));
    dt_server_json(fx->srv, 401, denied);
    dt_server_json(fx->srv, 200, TOKEN("new"));
    dt_server_json(fx->srv, 200, "{\"ok\":true}");
    /* later in the same operation: a second 401 stands */
    dt_server_json(fx->srv, 401, denied);
    datos_google_op_init(&op, fx->p, fx->http, fx->creds, 0, &err);
    assert_int_equal(datos_google_call(&op, fx->p, &c, &resp), APR_SUCCESS);
    assert_string_equal(resp->body, "{\"ok\":true}");
    assert_string_equal(auth_of(fx, 1), "Bearer old");
    assert_string_equal(auth_of(fx, 3), "Bearer new");
    assert_int_equal(datos_google_call(&op, fx->p, &c, &resp), DATOS_EAUTH);
    assert_string_equal(err.message, "things.get: HTTP 401 UNAUTHENTICATED: m");
    assert_int_equal(err.http_status, 401);
    assert_string_equal(auth_of(fx, 4), "Bearer new");
    assert_int_equal(dt_server_count(fx->srv), 5);
    datos_google_op_done(&op);

    /* a 401 after the refresh, in a fresh operation: refused, no third token */
    dt_server_json(fx->srv, 401, denied);
    dt_server_json(fx->srv, 200, TOKEN("newer"));
    dt_server_json(fx->srv, 401, denied);
    datos_google_op_init(&op, fx->p, fx->http, fx->creds, 0, &err);
    assert_int_equal(datos_google_call(&op, fx->p, &c, &resp), DATOS_EAUTH);
    datos_google_op_done(&op);
    assert_int_equal(dt_server_count(fx->srv), 8);
    assert_string_equal(auth_of(fx, 5), "Bearer new"); /* the cached one */
    assert_string_equal(auth_of(fx, 7), "Bearer newer");

    /* the refresh itself refused: that error, named after the call */
    dt_server_json(fx->srv, 401, denied);
    dt_server_json(
        fx->srv, 400,
        "{\"error\":\"invalid_grant\",\"error_description\":\"gone\"}");
    datos_google_op_init(&op, fx->p, fx->http, fx->creds, 0, &err);
    assert_int_equal(datos_google_call(&op, fx->p, &c, &resp), DATOS_EAUTH);
    datos_google_op_done(&op);
    assert_string_equal(err.reason, "invalid_grant");
    assert_non_null(strstr(err.message, "things.get: access token from"));
}

/* Refusals are classified with the answer's Retry-After, and the message
 * names the call. */
static void refusals_carry_retry_after(void **state)
{
    fx_t *fx = *state;
    datos_google_op_t op;
    datos_google_call_t c =
        get_call(fx, "topics.publish", "/v1/projects/p/topics/t:publish");
    datos_http_resp_t *resp = NULL;
    datos_err_t err = {0};
    dt_response_t r;

    memset(&r, 0, sizeof(r));
    r.status = 429;
    r.headers = "Retry-After: 30\r\n";
    r.body = PS(429, "RESOURCE_EXHAUSTED");
    dt_server_push(fx->srv, &r);
    r.status = 503;
    r.headers = "Retry-After: 0\r\nContent-Type: text/html\r\n";
    r.body = "<html>busy</html>";
    dt_server_push(fx->srv, &r);
    datos_google_op_init(&op, fx->p, fx->http, NULL, 0, &err);
    assert_int_equal(datos_google_call(&op, fx->p, &c, &resp),
                     DATOS_ERATELIMIT);
    assert_null(resp);
    assert_int_equal(err.retry_after, apr_time_from_sec(30));
    assert_string_equal(err.reason, "RESOURCE_EXHAUSTED");
    assert_string_equal(err.message,
                        "topics.publish: HTTP 429 RESOURCE_EXHAUSTED: m");
    assert_int_equal(datos_google_call(&op, fx->p, &c, &resp), DATOS_EBACKEND);
    assert_int_equal(err.retry_after, DATOS_RETRY_AFTER_MIN);
    assert_string_equal(err.message,
                        "topics.publish: HTTP 503 with a non-JSON body");

    /* transport failures are named after the call too */
    c.url = "http://127.0.0.1:1/v1/x";
    assert_int_equal(datos_google_call(&op, fx->p, &c, &resp), DATOS_ECONNECT);
    assert_int_equal(
        strncmp(err.message, "topics.publish: GET http://127.0.0.1:1/v1/x", 43),
        0);
    datos_google_op_done(&op);
}

/* Statuses a caller declares are answers (a resumable upload's 308);
 * keep_partial hands out a cut answer. */
static void accepted_statuses_and_partial_answers(void **state)
{
    fx_t *fx = *state;
    datos_google_op_t op;
    datos_google_call_t c = get_call(fx, "upload", "/upload");
    datos_http_resp_t *resp = NULL;
    datos_err_t err = {0};
    char big[5000];

    dt_server_json(fx->srv, 308, "");
    dt_server_json(fx->srv, 308, "");
    memset(big, 'x', sizeof(big) - 1);
    big[0] = '{';
    big[sizeof(big) - 1] = '\0';
    dt_server_json(fx->srv, 200, big);
    datos_google_op_init(&op, fx->p, fx->http, NULL, 0, &err);
    c.accept[0] = 308;
    assert_int_equal(datos_google_call(&op, fx->p, &c, &resp), APR_SUCCESS);
    assert_int_equal(resp->status, 308);
    c.accept[0] = 0;
    assert_int_equal(datos_google_call(&op, fx->p, &c, &resp), DATOS_EBACKEND);
    assert_int_equal(err.http_status, 308);
    resp = NULL;
    c.max_response = 1000;
    c.keep_partial = 1;
    assert_int_equal(datos_google_call(&op, fx->p, &c, &resp), DATOS_ETOOLARGE);
    assert_non_null(resp);
    assert_int_equal(resp->status, 200);
    assert_true(resp->partial);
    assert_int_equal(resp->body_len, 1000);
    datos_google_op_done(&op);
}

/* The operation's deadline bounds every call; err's texts live in the
 * operation's pool while it runs, and err gets its own pool back after. */
static void deadline_and_error_pool(void **state)
{
    fx_t *fx = *state;
    datos_google_op_t op;
    datos_google_call_t c = get_call(fx, "slow.get", "/slow");
    datos_http_resp_t *resp;
    datos_err_t err = {0};
    apr_pool_t *op_pool, *cp;
    dt_response_t r;

    memset(&r, 0, sizeof(r));
    r.hang = 1;
    dt_server_push(fx->srv, &r);
    apr_pool_create(&op_pool, fx->p);
    apr_pool_create(&cp, op_pool);
    datos_google_op_init(&op, op_pool, fx->http, NULL,
                         apr_time_now() + apr_time_from_msec(300), &err);
    assert_ptr_equal(err.pool, op_pool);
    /* only the deadline ends the hang with APR_TIMEUP (DT_HANG_MS) */
    assert_int_equal(datos_google_call(&op, cp, &c, &resp), APR_TIMEUP);
    apr_pool_destroy(cp);
    /* built while the call's pool lived, kept after it is gone */
    assert_int_equal(strncmp(err.message, "slow.get: GET ", 14), 0);
    /* once the deadline is behind, nothing is sent (curl may end the first
     * call a hair before it: set it past rather than wait) */
    op.deadline = apr_time_now() - 1;
    assert_int_equal(datos_google_call(&op, fx->p, &c, &resp), APR_TIMEUP);
    assert_int_equal(dt_server_count(fx->srv), 1);
    assert_non_null(strstr(err.message, "deadline passed before the request"));
    datos_google_op_done(&op);
    assert_null(err.pool);

    /* an err with its own pool keeps it */
    datos_err_init(&err, fx->p);
    datos_google_op_init(&op, op_pool, fx->http, NULL, 1, &err);
    assert_int_equal(datos_google_call(&op, op_pool, &c, &resp), APR_TIMEUP);
    datos_google_op_done(&op);
    assert_ptr_equal(err.pool, fx->p);
    apr_pool_destroy(op_pool);
    assert_non_null(strstr(err.message, "slow.get"));
}

static int group_setup(void **state)
{
    if (dt_group_setup(state) != 0 || datos_http_global_init() != APR_SUCCESS) {
        return -1;
    }
    unsetenv("GOOGLE_APPLICATION_CREDENTIALS");
    setenv("CLOUDSDK_CONFIG", "/nonexistent/datos-test", 1);
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
        DT_TEST(pubsub_statuses),
        DT_TEST(bigquery_reasons),
        DT_TEST(other_bodies),
        DT_TEST(messages),
        DT_TEST(retry_info),
        FX_TEST(calls_carry_the_token),
        FX_TEST(unauthorized_refreshes_once),
        FX_TEST(refusals_carry_retry_after),
        FX_TEST(accepted_statuses_and_partial_answers),
        FX_TEST(deadline_and_error_pool),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
