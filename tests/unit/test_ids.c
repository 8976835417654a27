/* test_ids.c - project ids and locations checked at configuration time. */
#include <string.h>

#include "dt_support.h"
#include "datos_ids.h"

static void project_ids(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    const char *good[] = {"datos-local", "abcdef", "my-project-123",
                          "a23456789012345678901234567890"};
    struct {
        const char *id;
        const char *needle;
    } bad[] = {
        {"", "6 to 30"},
        {"abcde", "6 to 30"},
        {"a234567890123456789012345678901", "6 to 30"},
        {"1project", "lowercase letter"},
        {"-project", "lowercase letter"},
        {"Project", "lowercase letter"},
        {"my_project", "only lowercase"},
        {"my.project", "only lowercase"},
        {"my-projecT", "only lowercase"},
        {"project-", "end with"},
    };
    size_t i;

    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        const char *msg = datos_project_id_check(p, good[i]);
        if (msg) {
            fail_msg("'%s' refused: %s", good[i], msg);
        }
    }
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *msg = datos_project_id_check(p, bad[i].id);
        if (!msg || !strstr(msg, bad[i].needle)) {
            fail_msg("'%s': got '%s', wanted '%s'", bad[i].id,
                     msg ? msg : "(accepted)", bad[i].needle);
        }
    }
    assert_non_null(datos_project_id_check(p, NULL));
}

static void locations(void **state)
{
    apr_pool_t *p = DT_POOL(state);

    assert_null(datos_location_check(p, "US"));
    assert_null(datos_location_check(p, "EU"));
    assert_null(datos_location_check(p, "southamerica-east1"));
    assert_non_null(datos_location_check(p, "x"));
    assert_non_null(datos_location_check(p, ""));
    assert_non_null(datos_location_check(p, NULL));
    assert_non_null(datos_location_check(p, "us/east"));
    assert_non_null(datos_location_check(p, "us east"));
    assert_non_null(datos_location_check(
        p,
        "a234567890123456789012345678901234567890123456789012345678901234x"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        DT_TEST(project_ids),
        DT_TEST(locations),
    };
    return cmocka_run_group_tests(tests, dt_group_setup, dt_group_teardown);
}
