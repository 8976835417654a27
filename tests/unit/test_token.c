/* test_token.c - token endpoint and metadata server answers
 * (docs/google-apis.md sections 3.2 and 3.4). */
#include <string.h>

#include "dt_support.h"
#include <stdlib.h>
#include <jansson.h>

#include "datos_auth.h"
#include "datos_google.h"
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

    assert_int_equal(tparse(p, 200,
                            "{\"access_token\":\"ya29.c.c0AY-x_y\","
                            "\"expires_in\":3599,\"token_type\":\"Bearer\"}",
                            &tok, &exp, &err),
                     APR_SUCCESS);
    assert_string_equal(tok, "ya29.c.c0AY-x_y");
    assert_int_equal(exp, apr_time_from_sec(3599));

    /* expires_in as a string, token_type in another case, extra fields */
    assert_int_equal(tparse(p, 200,
                            "{\"token_type\":\"bearer\",\"expires_in\":\"60\","
                            "\"access_token\":\"t\",\"id_token\":\"x\"}",
                            &tok, &exp, &err),
                     APR_SUCCESS);
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
    bad_200(p, "{\"expires_in\":3599,\"token_type\":\"Bearer\"}",
            "no access_token");
    bad_200(
        p,
        "{\"access_token\":\"\",\"expires_in\":3599,\"token_type\":\"Bearer\"}",
        "malformed access_token");
    bad_200(
        p, "{\"access_token\":7,\"expires_in\":3599,\"token_type\":\"Bearer\"}",
        "malformed access_token");
    bad_200(
        p,
        "{\"access_token\":\"SECRET x\",\"expires_in\":3599,\"token_type\":\"Bearer\"}",
        "malformed access_token");
    bad_200(
        p,
        "{\"access_token\":\"SECRET\\r\\nX: y\",\"expires_in\":3599,\"token_type\":\"Bearer\"}",
        "malformed access_token");
    bad_200(p, "{\"access_token\":\"SECRET\",\"token_type\":\"Bearer\"}",
            "no expires_in");
    bad_200(
        p,
        "{\"access_token\":\"SECRET\",\"expires_in\":0,\"token_type\":\"Bearer\"}",
        "expires_in");
    bad_200(
        p,
        "{\"access_token\":\"SECRET\",\"expires_in\":-5,\"token_type\":\"Bearer\"}",
        "expires_in");
    bad_200(
        p,
        "{\"access_token\":\"SECRET\",\"expires_in\":\"soon\",\"token_type\":\"Bearer\"}",
        "expires_in");
    bad_200(
        p,
        "{\"access_token\":\"SECRET\",\"expires_in\":3599.5,\"token_type\":\"Bearer\"}",
        "expires_in");
    bad_200(
        p,
        "{\"access_token\":\"SECRET\",\"expires_in\":true,\"token_type\":\"Bearer\"}",
        "expires_in");
    bad_200(p, "{\"access_token\":\"SECRET\",\"expires_in\":3599}",
            "token_type missing");
    bad_200(
        p,
        "{\"access_token\":\"SECRET\",\"expires_in\":3599,\"token_type\":\"MAC\"}",
        "token_type MAC");
}

static void token_errors(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    const char *tok;
    apr_interval_time_t exp;
    datos_err_t err = {0};

    /* OAuth shape */
    assert_int_equal(tparse(p, 400,
                            "{\"error\":\"invalid_grant\","
                            "\"error_description\":\"Invalid JWT Signature.\"}",
                            &tok, &exp, &err),
                     DATOS_EAUTH);
    assert_string_equal(err.reason, "invalid_grant");
    assert_int_equal(err.http_status, 400);
    assert_string_equal(err.message,
                        "HTTP 400 invalid_grant: Invalid JWT Signature.");
    assert_string_equal(tok, "untouched");

    assert_int_equal(
        tparse(p, 401, "{\"error\":\"invalid_client\"}", &tok, &exp, &err),
        DATOS_EAUTH);
    assert_string_equal(err.reason, "invalid_client");

    /* API envelope */
    assert_int_equal(tparse(p, 403,
                            "{\"error\":{\"code\":403,\"message\":\"denied\","
                            "\"status\":\"PERMISSION_DENIED\"}}",
                            &tok, &exp, &err),
                     DATOS_EAUTH);
    assert_string_equal(err.reason, "PERMISSION_DENIED");
    assert_string_equal(err.message, "HTTP 403 PERMISSION_DENIED: denied");

    /* statuses */
    assert_int_equal(
        tparse(p, 429, "{\"error\":\"rate_limited\"}", &tok, &exp, &err),
        DATOS_ERATELIMIT);
    assert_int_equal(tparse(p, 500,
                            "{\"error\":{\"code\":500,\"message\":\"x\","
                            "\"errors\":[{\"reason\":\"backendError\"}]}}",
                            &tok, &exp, &err),
                     DATOS_EBACKEND);
    assert_string_equal(err.reason, "backendError");
    assert_int_equal(
        tparse(p, 503, "<html>unavailable</html>", &tok, &exp, &err),
        DATOS_EBACKEND);
    assert_string_equal(err.message, "HTTP 503 with a non-JSON body");
    assert_int_equal(tparse(p, 502, "", &tok, &exp, &err), DATOS_EBACKEND);
    assert_string_equal(err.message, "HTTP 502 with an empty body");
    assert_int_equal(tparse(p, 404, "{\"x\":1}", &tok, &exp, &err),
                     DATOS_EAUTH);
    assert_int_equal(tparse(p, 302, "", &tok, &exp, &err), DATOS_EMALFORMED);
    /* an error status with a token-shaped body is still an error */
    assert_int_equal(tparse(p, 400,
                            "{\"access_token\":\"SECRET\",\"expires_in\":1,"
                            "\"token_type\":\"Bearer\"}",
                            &tok, &exp, &err),
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

    key = dt_write_key_file(
        p, dt_tmpdir(p), apr_pstrcat(p, dt_server_url(srv, p), "/token", NULL));
    datos_err_clear(&err);
    assert_int_equal(datos_creds_load(p, key, NULL, 0, &c, &err), APR_SUCCESS);
    datos_http_opts_default(&opts);
    assert_int_equal(datos_http_create(p, &opts, &http, &err), APR_SUCCESS);
    dt_server_json(srv, 200,
                   "{\"access_token\":\"first\",\"expires_in\":3600,"
                   "\"token_type\":\"Bearer\"}");
    dt_server_json(srv, 200,
                   "{\"access_token\":\"second\",\"expires_in\":3600,"
                   "\"token_type\":\"Bearer\"}");

    assert_int_equal(apr_pool_create(&pchild, p), APR_SUCCESS);
    assert_int_equal(datos_creds_child_init(c, pchild), APR_SUCCESS);
    assert_int_equal(datos_creds_token(c, http, p, 0, 0, &tok, &err),
                     APR_SUCCESS);
    assert_string_equal(tok, "first");
    assert_int_equal(datos_creds_token(c, http, p, 0, 0, &tok, &err),
                     APR_SUCCESS);
    assert_string_equal(tok, "first");
    assert_int_equal(dt_server_count(srv), 1);

    apr_pool_destroy(pchild);
    /* nothing cached any more: the next caller asks the endpoint again */
    assert_int_equal(datos_creds_token(c, http, p, 0, 0, &tok, &err),
                     APR_SUCCESS);
    assert_string_equal(tok, "second");
    assert_int_equal(dt_server_count(srv), 2);
    dt_server_stop(srv);
}

/* authorized_user credentials: the refresh-token grant at their token_uri
 * (docs/google-apis.md 3.5), and x-goog-user-project on the API calls they make. */
static void user_credentials_refresh_grant(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    dt_server_t *srv = dt_server_start();
    datos_http_opts_t opts;
    datos_http_t *http;
    datos_creds_t *c;
    datos_err_t err = {0};
    datos_google_op_t op;
    datos_google_call_t call;
    datos_http_resp_t *resp;
    dt_request_t *r;
    const char *tok, *path, *base = dt_server_url(srv, p);
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "client_id",
                          "764086051850-abc.apps.googleusercontent.com",
                          "client_secret", "d-FL95Q19q7MQ+SECRET",
                          "quota_project_id", "quota-proj-1", "refresh_token",
                          "1//0gSECRET-refresh", "type", "authorized_user",
                          "token_uri", apr_pstrcat(p, base, "/token", NULL));
    char *text = json_dumps(j, 0);

    path = dt_write_file(p, dt_tmpdir(p), "adc.json", text, strlen(text), 0600);
    free(text);
    json_decref(j);
    assert_int_equal(
        datos_creds_load(p, path, NULL, DATOS_CREDS_ALLOW_USER, &c, &err),
        APR_SUCCESS);
    datos_http_opts_default(&opts);
    assert_int_equal(datos_http_create(p, &opts, &http, &err), APR_SUCCESS);

    dt_server_json(
        srv, 200,
        "{\"access_token\":\"ya29.user\",\"expires_in\":3599,"
        "\"scope\":\"https://www.googleapis.com/auth/cloud-platform\","
        "\"token_type\":\"Bearer\",\"id_token\":\"x.y.z\"}");
    dt_server_json(srv, 200, "{}");
    datos_google_op_init(&op, p, http, c, 0, &err);
    memset(&call, 0, sizeof(call));
    call.what = "jobs.get";
    call.url = apr_pstrcat(p, base, "/bigquery/v2/projects/p/jobs/j", NULL);
    assert_int_equal(datos_google_call(&op, p, &call, &resp), APR_SUCCESS);
    datos_google_op_done(&op);

    r = dt_server_request(srv, p, 0);
    assert_string_equal(r->method, "POST");
    assert_string_equal(r->target, "/token");
    assert_string_equal(r->body,
                        "grant_type=refresh_token"
                        "&client_id=764086051850-abc.apps.googleusercontent.com"
                        "&client_secret=d-FL95Q19q7MQ%2BSECRET"
                        "&refresh_token=1%2F%2F0gSECRET-refresh");
    assert_string_equal(dt_request_header(p, r, "Content-Type"),
                        "application/x-www-form-urlencoded");
    assert_null(dt_request_header(p, r, "Authorization"));
    r = dt_server_request(srv, p, 1);
    assert_string_equal(dt_request_header(p, r, "Authorization"),
                        "Bearer ya29.user");
    assert_string_equal(dt_request_header(p, r, "x-goog-user-project"),
                        "quota-proj-1");

    /* a revoked login: auth error, no secret in the message */
    dt_server_json(srv, 400,
                   "{\"error\":\"invalid_grant\",\"error_description\":"
                   "\"Token has been expired or revoked.\"}");
    assert_int_equal(datos_creds_token(c, http, p, 0, 1, &tok, &err),
                     DATOS_EAUTH);
    assert_string_equal(err.reason, "invalid_grant");
    assert_string_equal(err.message,
                        apr_psprintf(p,
                                     "access token from %s/token: HTTP 400 "
                                     "invalid_grant: Token has been expired or "
                                     "revoked.",
                                     base));
    assert_null(strstr(err.message, "SECRET"));
    dt_server_stop(srv);
}

/* Only an answer that says it comes from the metadata server is trusted
 * (docs/google-apis.md 3.4); refusals are classified whatever they say. */
static void metadata_flavor_required(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    dt_server_t *srv = dt_server_start();
    datos_http_opts_t opts;
    datos_http_t *http;
    datos_creds_t *c;
    datos_err_t err = {0};
    dt_response_t r;
    const char *tok = NULL, *proj = NULL;

    setenv("GCE_METADATA_HOST",
           apr_psprintf(p, "127.0.0.1:%d", dt_server_port(srv)), 1);
    assert_int_equal(datos_creds_load(p, "metadata", NULL, 0, &c, &err),
                     APR_SUCCESS);
    datos_http_opts_default(&opts);
    assert_int_equal(datos_http_create(p, &opts, &http, &err), APR_SUCCESS);

    memset(&r, 0, sizeof(r));
    r.status = 200;
    r.body =
        "{\"access_token\":\"ya29.IMPOSTOR\",\"expires_in\":3599,\"token_type\":\"Bearer\"}";
    dt_server_push(srv, &r); /* no Metadata-Flavor */
    r.headers = "Metadata-Flavor: google-ish\r\n";
    dt_server_push(srv, &r); /* the wrong one */
    r.headers = "Metadata-Flavor: Google\r\n";
    r.body =
        "{\"access_token\":\"ya29.md\",\"expires_in\":3599,\"token_type\":\"Bearer\"}";
    dt_server_push(srv, &r);
    assert_int_equal(datos_creds_token(c, http, p, 0, 0, &tok, &err),
                     DATOS_EAUTH);
    assert_null(tok);
    assert_non_null(strstr(err.message, "no Metadata-Flavor: Google header"));
    assert_null(strstr(err.message, "IMPOSTOR"));
    assert_int_equal(datos_creds_token(c, http, p, 0, 0, &tok, &err),
                     DATOS_EAUTH);
    assert_int_equal(datos_creds_token(c, http, p, 0, 0, &tok, &err),
                     APR_SUCCESS);
    assert_string_equal(tok, "ya29.md");
    assert_string_equal(
        dt_request_header(p, dt_server_request(srv, p, 2), "Metadata-Flavor"),
        "Google");

    /* the project: the same rule */
    r.headers = "Content-Type: text/plain\r\n";
    r.body = "impostor-project";
    dt_server_push(srv, &r);
    assert_int_equal(datos_creds_project(c, http, p, 0, &proj, &err),
                     DATOS_EAUTH);
    assert_non_null(strstr(err.message, "project id from http://127.0.0.1:"));
    assert_non_null(strstr(err.message, "Metadata-Flavor"));
    /* a refusal without the header: classified like a token endpoint's */
    r.status = 503;
    r.headers = "Retry-After: 9\r\n";
    r.body = "busy";
    dt_server_push(srv, &r);
    assert_int_equal(datos_creds_project(c, http, p, 0, &proj, &err),
                     DATOS_EBACKEND);
    assert_int_equal(err.retry_after, apr_time_from_sec(9));
    r.status = 404;
    r.headers = "Metadata-Flavor: Google\r\n";
    r.body = "not found";
    dt_server_push(srv, &r);
    assert_int_equal(datos_creds_project(c, http, p, 0, &proj, &err),
                     DATOS_EAUTH);
    assert_int_equal(err.http_status, 404);
    r.status = 200;
    r.headers = "Metadata-Flavor: Google\r\n";
    r.body = "md-project-1\n";
    dt_server_push(srv, &r);
    assert_int_equal(datos_creds_project(c, http, p, 0, &proj, &err),
                     APR_SUCCESS);
    assert_string_equal(proj, "md-project-1");
    unsetenv("GCE_METADATA_HOST");
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
        DT_TEST(user_credentials_refresh_grant),
        DT_TEST(metadata_flavor_required),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
