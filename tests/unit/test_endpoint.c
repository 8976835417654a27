/* test_endpoint.c - base URLs: the configured one, the emulator variables
 * as Google's client libraries read them, the defaults, and the decision
 * on plain http. */
#include <stdlib.h>
#include <string.h>

#include "dt_support.h"
#include "datos_endpoint.h"
#include "datos_http.h"

static apr_status_t resolve(apr_pool_t *p, datos_api_t api,
                            const char *configured, int insecure, int creds,
                            datos_endpoint_t *ep, datos_err_t *err)
{
    datos_err_clear(err);
    memset(ep, 0x5a, sizeof(*ep));
    return datos_endpoint_resolve(p, api, configured, insecure, creds, ep, err);
}

static void defaults(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_endpoint_t ep;
    datos_err_t err = {0};

    unsetenv("BIGQUERY_EMULATOR_HOST");
    unsetenv("PUBSUB_EMULATOR_HOST");
    assert_int_equal(resolve(p, DATOS_API_BIGQUERY, NULL, 0, 0, &ep, &err),
                     APR_SUCCESS);
    assert_string_equal(ep.base_url,
                        "https://bigquery.googleapis.com/bigquery/v2");
    assert_null(ep.from_env);
    assert_false(ep.allow_insecure);
    assert_false(ep.creds_none);
    assert_int_equal(resolve(p, DATOS_API_PUBSUB, "", 1, 0, &ep, &err),
                     APR_SUCCESS);
    assert_string_equal(ep.base_url, "https://pubsub.googleapis.com");
    assert_true(ep.allow_insecure); /* the explicit setting */
    assert_null(ep.from_env);
    assert_string_equal(datos_endpoint_env(DATOS_API_BIGQUERY),
                        "BIGQUERY_EMULATOR_HOST");
    assert_string_equal(datos_endpoint_env(DATOS_API_PUBSUB),
                        "PUBSUB_EMULATOR_HOST");
}

/* BIGQUERY_EMULATOR_HOST is a root URL with or without a scheme;
 * PUBSUB_EMULATOR_HOST is host:port. Either allows plain http and, without
 * explicit credentials, means no credentials. */
static void emulator_variables(void **state)
{
    static const struct {
        datos_api_t api;
        const char *var, *value, *want;
    } cases[] = {
        {DATOS_API_BIGQUERY, "BIGQUERY_EMULATOR_HOST",
         "http://emu.example:9050", "http://emu.example:9050/bigquery/v2"},
        {DATOS_API_BIGQUERY, "BIGQUERY_EMULATOR_HOST", "emu.example:9050",
         "http://emu.example:9050/bigquery/v2"},
        {DATOS_API_BIGQUERY, "BIGQUERY_EMULATOR_HOST", "http://127.0.0.1:9050/",
         "http://127.0.0.1:9050/bigquery/v2"},
        {DATOS_API_BIGQUERY, "BIGQUERY_EMULATOR_HOST", "https://emu.example",
         "https://emu.example/bigquery/v2"},
        {DATOS_API_PUBSUB, "PUBSUB_EMULATOR_HOST", "localhost:8085",
         "http://localhost:8085"},
        {DATOS_API_PUBSUB, "PUBSUB_EMULATOR_HOST", "emu.example:8085",
         "http://emu.example:8085"},
        {DATOS_API_PUBSUB, "PUBSUB_EMULATOR_HOST", "http://[::1]:8085",
         "http://[::1]:8085"},
    };
    apr_pool_t *p = DT_POOL(state);
    datos_endpoint_t ep;
    datos_err_t err = {0};
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        unsetenv("BIGQUERY_EMULATOR_HOST");
        unsetenv("PUBSUB_EMULATOR_HOST");
        setenv(cases[i].var, cases[i].value, 1);
        if (resolve(p, cases[i].api, NULL, 0, 0, &ep, &err) != APR_SUCCESS) {
            fail_msg("%s=%s: %s", cases[i].var, cases[i].value, err.message);
        }
        assert_string_equal(ep.base_url, cases[i].want);
        assert_string_equal(ep.from_env, cases[i].var);
        assert_true(ep.allow_insecure);
        assert_true(ep.creds_none);
        /* explicit credentials stay */
        assert_int_equal(resolve(p, cases[i].api, NULL, 0, 1, &ep, &err),
                         APR_SUCCESS);
        assert_false(ep.creds_none);
        /* the other API's variable has no say */
        assert_int_equal(resolve(p,
                                 cases[i].api == DATOS_API_PUBSUB
                                     ? DATOS_API_BIGQUERY
                                     : DATOS_API_PUBSUB,
                                 NULL, 0, 0, &ep, &err),
                         APR_SUCCESS);
        assert_null(ep.from_env);
        assert_int_equal(strncmp(ep.base_url, "https://", 8), 0);
    }
    unsetenv("PUBSUB_EMULATOR_HOST");
    setenv("BIGQUERY_EMULATOR_HOST", "", 1); /* empty: unset */
    assert_int_equal(resolve(p, DATOS_API_BIGQUERY, NULL, 0, 0, &ep, &err),
                     APR_SUCCESS);
    assert_null(ep.from_env);
    unsetenv("BIGQUERY_EMULATOR_HOST");
}

/* A configured URL wins over the variable and needs the explicit setting
 * for plain http to anything but loopback. */
static void configured_url(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_endpoint_t ep;
    datos_err_t err = {0};

    setenv("BIGQUERY_EMULATOR_HOST", "emu.example:9050", 1);
    assert_int_equal(resolve(p, DATOS_API_BIGQUERY,
                             "https://bq.example/bigquery/v2//", 0, 0, &ep,
                             &err),
                     APR_SUCCESS);
    assert_string_equal(ep.base_url, "https://bq.example/bigquery/v2");
    assert_null(ep.from_env);
    assert_false(ep.creds_none);
    assert_int_equal(resolve(p, DATOS_API_BIGQUERY,
                             "http://bq.example/bigquery/v2", 0, 0, &ep, &err),
                     DATOS_EINSECURE);
    assert_string_equal(err.reason, DATOS_REASON_PLAIN_HTTP);
    assert_non_null(strstr(err.message, "plain http to bq.example"));
    assert_null(strstr(err.message, "from BIGQUERY_EMULATOR_HOST"));
    assert_int_equal(resolve(p, DATOS_API_BIGQUERY,
                             "http://bq.example/bigquery/v2", 1, 0, &ep, &err),
                     APR_SUCCESS);
    assert_true(ep.allow_insecure);
    assert_int_equal(resolve(p, DATOS_API_BIGQUERY,
                             "http://127.0.0.1:1/bigquery/v2", 0, 0, &ep, &err),
                     APR_SUCCESS);
    assert_false(ep.allow_insecure); /* loopback needs no permission */
    unsetenv("BIGQUERY_EMULATOR_HOST");
}

/* A variable that cannot be a URL is refused and named; no setting would
 * make it usable, so no hint about insecure http. */
static void malformed_variables(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_endpoint_t ep;
    datos_err_t err = {0};

    setenv("BIGQUERY_EMULATOR_HOST", "emu.example:99999999", 1);
    assert_int_equal(resolve(p, DATOS_API_BIGQUERY, NULL, 1, 0, &ep, &err),
                     DATOS_EINSECURE);
    assert_non_null(strstr(err.message, "1 to 65535"));
    assert_non_null(strstr(err.message, "(from BIGQUERY_EMULATOR_HOST)"));
    assert_null(err.reason);
    unsetenv("BIGQUERY_EMULATOR_HOST");
    setenv("PUBSUB_EMULATOR_HOST", "user@emu.example:8085", 1);
    assert_int_equal(resolve(p, DATOS_API_PUBSUB, NULL, 0, 0, &ep, &err),
                     DATOS_EINSECURE);
    assert_non_null(strstr(err.message, "(from PUBSUB_EMULATOR_HOST)"));
    setenv("PUBSUB_EMULATOR_HOST", "ftp://emu.example", 1);
    assert_int_equal(resolve(p, DATOS_API_PUBSUB, NULL, 0, 0, &ep, &err),
                     DATOS_EINSECURE);
    unsetenv("PUBSUB_EMULATOR_HOST");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        DT_TEST(defaults),
        DT_TEST(emulator_variables),
        DT_TEST(configured_url),
        DT_TEST(malformed_variables),
    };
    return cmocka_run_group_tests(tests, dt_group_setup, dt_group_teardown);
}
