/* test_token.c - token endpoint and metadata server answers
 * (gcp-wire.md sections 3.2 and 3.4). */
#include <string.h>

#include "dt_support.h"
#include "datos_auth.h"
#include "datos_http.h"

static apr_status_t tparse(apr_pool_t *p, int status, const char *body,
                           const char **tok, apr_interval_time_t *exp,
                           datos_err_t *err)
{
    datos_err_clear(err);
    *tok = "untouched";
    *exp = -7;
    return datos_token_parse(p, status, body, strlen(body), tok, exp, err);
}

static void token_good(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    const char *tok;
    apr_interval_time_t exp;
    datos_err_t err = {0};

    assert_int_equal(tparse(p, 200, "{\"access_token\":\"ya29.c.c0AY-x_y\","
                                    "\"expires_in\":3599,\"token_type\":\"Bearer\"}",
                            &tok, &exp, &err), APR_SUCCESS);
    assert_string_equal(tok, "ya29.c.c0AY-x_y");
    assert_int_equal(exp, apr_time_from_sec(3599));

    /* expires_in as a string, token_type in another case, extra fields */
    assert_int_equal(tparse(p, 200, "{\"token_type\":\"bearer\",\"expires_in\":\"60\","
                                    "\"access_token\":\"t\",\"id_token\":\"x\"}",
                            &tok, &exp, &err), APR_SUCCESS);
    assert_string_equal(tok, "t");
    assert_int_equal(exp, apr_time_from_sec(60));
}

static void bad_200(apr_pool_t *p, const char *body, const char *needle)
{
    const char *tok;
    apr_interval_time_t exp;
    datos_err_t err = {0};

    if (tparse(p, 200, body, &tok, &exp, &err) != DATOS_EMALFORMED) {
        fail_msg("accepted: %s", body);
    }
    assert_string_equal(tok, "untouched");
    assert_int_equal(exp, -7);
    assert_non_null(err.message);
    if (!strstr(err.message, needle)) {
        fail_msg("'%s' lacks '%s'", err.message, needle);
    }
    /* whatever the shape, the token text never reaches the message */
    assert_null(strstr(err.message, "SECRET"));
}

static void token_missing_fields(void **state)
{
    apr_pool_t *p = DT_POOL(state);

    bad_200(p, "", "empty");
    bad_200(p, "{\"access_token\":\"SECRET", "not JSON");
    bad_200(p, "SECRET", "not JSON");
    bad_200(p, "[\"SECRET\"]", "not a JSON object");
    bad_200(p, "{\"expires_in\":3599,\"token_type\":\"Bearer\"}", "no access_token");
    bad_200(p, "{\"access_token\":\"\",\"expires_in\":3599,\"token_type\":\"Bearer\"}",
            "malformed access_token");
    bad_200(p, "{\"access_token\":7,\"expires_in\":3599,\"token_type\":\"Bearer\"}",
            "malformed access_token");
    bad_200(p, "{\"access_token\":\"SECRET x\",\"expires_in\":3599,\"token_type\":\"Bearer\"}",
            "malformed access_token");
    bad_200(p, "{\"access_token\":\"SECRET\\r\\nX: y\",\"expires_in\":3599,\"token_type\":\"Bearer\"}",
            "malformed access_token");
    bad_200(p, "{\"access_token\":\"SECRET\",\"token_type\":\"Bearer\"}", "no expires_in");
    bad_200(p, "{\"access_token\":\"SECRET\",\"expires_in\":0,\"token_type\":\"Bearer\"}",
            "expires_in");
    bad_200(p, "{\"access_token\":\"SECRET\",\"expires_in\":-5,\"token_type\":\"Bearer\"}",
            "expires_in");
    bad_200(p, "{\"access_token\":\"SECRET\",\"expires_in\":\"soon\",\"token_type\":\"Bearer\"}",
            "expires_in");
    bad_200(p, "{\"access_token\":\"SECRET\",\"expires_in\":3599.5,\"token_type\":\"Bearer\"}",
            "expires_in");
    bad_200(p, "{\"access_token\":\"SECRET\",\"expires_in\":true,\"token_type\":\"Bearer\"}",
            "expires_in");
    bad_200(p, "{\"access_token\":\"SECRET\",\"expires_in\":3599}", "token_type missing");
    bad_200(p, "{\"access_token\":\"SECRET\",\"expires_in\":3599,\"token_type\":\"MAC\"}",
            "token_type MAC");
}

static void token_errors(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    const char *tok;
    apr_interval_time_t exp;
    datos_err_t err = {0};

    /* OAuth shape */
    assert_int_equal(tparse(p, 400, "{\"error\":\"invalid_grant\","
                                    "\"error_description\":\"Invalid JWT Signature.\"}",
                            &tok, &exp, &err), DATOS_EAUTH);
    assert_string_equal(err.reason, "invalid_grant");
    assert_int_equal(err.http_status, 400);
    assert_string_equal(err.message, "HTTP 400 invalid_grant: Invalid JWT Signature.");
    assert_string_equal(tok, "untouched");

    assert_int_equal(tparse(p, 401, "{\"error\":\"invalid_client\"}", &tok, &exp, &err),
                     DATOS_EAUTH);
    assert_string_equal(err.reason, "invalid_client");

    /* API envelope */
    assert_int_equal(tparse(p, 403, "{\"error\":{\"code\":403,\"message\":\"denied\","
                                    "\"status\":\"PERMISSION_DENIED\"}}", &tok, &exp, &err),
                     DATOS_EAUTH);
    assert_string_equal(err.reason, "PERMISSION_DENIED");
    assert_string_equal(err.message, "HTTP 403 PERMISSION_DENIED: denied");

    /* statuses */
    assert_int_equal(tparse(p, 429, "{\"error\":\"rate_limited\"}", &tok, &exp, &err),
                     DATOS_ERATELIMIT);
    assert_int_equal(tparse(p, 500, "{\"error\":{\"code\":500,\"message\":\"x\","
                                    "\"errors\":[{\"reason\":\"backendError\"}]}}",
                            &tok, &exp, &err), DATOS_EBACKEND);
    assert_string_equal(err.reason, "backendError");
    assert_int_equal(tparse(p, 503, "<html>unavailable</html>", &tok, &exp, &err),
                     DATOS_EBACKEND);
    assert_string_equal(err.message, "HTTP 503 with a non-JSON body");
    assert_int_equal(tparse(p, 502, "", &tok, &exp, &err), DATOS_EBACKEND);
    assert_string_equal(err.message, "HTTP 502 with an empty body");
    assert_int_equal(tparse(p, 404, "{\"x\":1}", &tok, &exp, &err), DATOS_EAUTH);
    assert_int_equal(tparse(p, 302, "", &tok, &exp, &err), DATOS_EMALFORMED);
    /* an error status with a token-shaped body is still an error */
    assert_int_equal(tparse(p, 400, "{\"access_token\":\"SECRET\",\"expires_in\":1,"
                                    "\"token_type\":\"Bearer\"}", &tok, &exp, &err),
                     DATOS_EAUTH);
    assert_null(strstr(err.message, "SECRET"));
    assert_string_equal(tok, "untouched");
}

/* The cached token outlives requests, so it is the one copy a child must
 * not leave behind: when the child's pool goes, the cache goes with it. */
static void cached_token_forgotten_at_child_exit(void **state)
{
    apr_pool_t *p = DT_POOL(state), *pchild;
    dt_server_t *srv = dt_server_start();
    datos_http_opts_t opts;
    datos_http_t *http;
    datos_creds_t *c;
    datos_err_t err = {0};
    const char *key, *tok;

    key = dt_write_key_file(p, dt_tmpdir(p),
                            apr_pstrcat(p, dt_server_url(srv, p), "/token", NULL));
    datos_err_clear(&err);
    assert_int_equal(datos_creds_load(p, key, NULL, 0, &c, &err),
                     APR_SUCCESS);
    datos_http_opts_default(&opts);
    assert_int_equal(datos_http_create(p, &opts, &http, &err), APR_SUCCESS);
    dt_server_json(srv, 200, "{\"access_token\":\"first\",\"expires_in\":3600,"
                             "\"token_type\":\"Bearer\"}");
    dt_server_json(srv, 200, "{\"access_token\":\"second\",\"expires_in\":3600,"
                             "\"token_type\":\"Bearer\"}");

    assert_int_equal(apr_pool_create(&pchild, p), APR_SUCCESS);
    assert_int_equal(datos_creds_child_init(c, pchild), APR_SUCCESS);
    assert_int_equal(datos_creds_token(c, http, p, 0, 0, &tok, &err), APR_SUCCESS);
    assert_string_equal(tok, "first");
    assert_int_equal(datos_creds_token(c, http, p, 0, 0, &tok, &err), APR_SUCCESS);
    assert_string_equal(tok, "first");
    assert_int_equal(dt_server_count(srv), 1);

    apr_pool_destroy(pchild);
    /* nothing cached any more: the next caller asks the endpoint again */
    assert_int_equal(datos_creds_token(c, http, p, 0, 0, &tok, &err), APR_SUCCESS);
    assert_string_equal(tok, "second");
    assert_int_equal(dt_server_count(srv), 2);
    dt_server_stop(srv);
}

static int group_setup(void **state)
{
    if (dt_group_setup(state) != 0 || datos_http_global_init() != APR_SUCCESS) {
        return -1;
    }
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
        DT_TEST(token_good),
        DT_TEST(token_missing_fields),
        DT_TEST(token_errors),
        DT_TEST(cached_token_forgotten_at_child_exit),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
