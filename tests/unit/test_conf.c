/* test_conf.c - setting value parsers. */
#include <string.h>

#include "dt_support.h"
#include "datos_conf.h"

#define SEC  APR_INT64_C(1000000)
#define MIN_ (60 * SEC)
#define DAY  (86400 * SEC)

static void dur_is(apr_pool_t *p, const char *text, apr_interval_time_t unit,
                   apr_interval_time_t want)
{
    apr_interval_time_t v = -1;
    const char *msg = datos_conf_duration(p, text, unit, 0, 3650 * DAY, &v);
    if (msg || v != want) {
        fail_msg("'%s': %s, got %lld", text, msg ? msg : "ok", (long long)v);
    }
}

static void dur_bad(apr_pool_t *p, const char *text, apr_interval_time_t min,
                    apr_interval_time_t max, const char *needle)
{
    apr_interval_time_t v = -1;
    const char *msg = datos_conf_duration(p, text, SEC, min, max, &v);
    if (!msg) {
        fail_msg("'%s' accepted", text);
    }
    if (!strstr(msg, needle)) {
        fail_msg("'%s': '%s' lacks '%s'", text, msg, needle);
    }
    assert_int_equal(v, -1);
}

static void durations(void **state)
{
    apr_pool_t *p = DT_POOL(state);

    dur_is(p, "250ms", SEC, 250000);
    dur_is(p, "5s", SEC, 5 * SEC);
    dur_is(p, "2m", SEC, 2 * MIN_);
    dur_is(p, "1h", SEC, 3600 * SEC);
    dur_is(p, "7d", SEC, 7 * DAY);
    dur_is(p, "7D", SEC, 7 * DAY);
    dur_is(p, "30", SEC, 30 * SEC);
    dur_is(p, "7", DAY, 7 * DAY);
    dur_is(p, " 5s ", SEC, 5 * SEC);
    dur_is(p, "0", SEC, 0);

    dur_bad(p, "", 0, DAY, "not a duration");
    dur_bad(p, "s", 0, DAY, "not a duration");
    dur_bad(p, "-5s", 0, DAY, "not a duration");
    dur_bad(p, "1.5s", 0, DAY, "unknown unit '.5s'");
    dur_bad(p, "5 s", 0, DAY, "unknown unit");
    dur_bad(p, "5sec", 0, DAY, "unknown unit 'sec'");
    dur_bad(p, "5w", 0, DAY, "ms, s, m, h or d");
    dur_bad(p, "0s", SEC, DAY, "between 1s and 1d");
    dur_bad(p, "2d", SEC, DAY, "out of range");
    dur_bad(p, "100ms", SEC, 60 * SEC, "between 1s and 1m");
    dur_bad(p, "99999999999999999999s", 0, DAY, "out of range");
    dur_bad(p, "9999999999999d", 0, APR_INT64_MAX, "out of range");
}

static void sizes(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    apr_int64_t v = -1;
    static const struct {
        const char *t;
        apr_int64_t want;
    } ok[] = {
        {"1048576", 1048576},
        {"512K", 512 * 1024},
        {"512k", 512 * 1024},
        {"512KiB", 512 * 1024},
        {"1M", 1048576},
        {"1MiB", 1048576},
        {"10G", APR_INT64_C(10) << 30},
        {"10GiB", APR_INT64_C(10) << 30},
        {"1T", APR_INT64_C(1) << 40},
        {"1TiB", APR_INT64_C(1) << 40},
        {"1kB", 1024},
        {"2MB", 2097152},
        {"10GB", APR_INT64_C(10737418240)},
        {"1TB", APR_INT64_C(1099511627776)},
        {"7B", 7},
        {" 1M ", 1048576},
    };
    size_t i;
    const char *msg;

    for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        v = -1;
        msg = datos_conf_size(p, ok[i].t, 0, APR_INT64_MAX, &v);
        if (msg || v != ok[i].want) {
            fail_msg("'%s': %s, %lld", ok[i].t, msg ? msg : "ok", (long long)v);
        }
    }
    v = -1;
    assert_non_null(msg = datos_conf_size(p, "", 0, 100, &v));
    assert_non_null(strstr(msg, "not a size"));
    assert_non_null(msg = datos_conf_size(p, "1X", 0, APR_INT64_MAX, &v));
    assert_non_null(strstr(msg, "unknown unit 'X'"));
    assert_non_null(msg = datos_conf_size(p, "1MiBs", 0, APR_INT64_MAX, &v));
    assert_non_null(msg = datos_conf_size(p, "1.5M", 0, APR_INT64_MAX, &v));
    assert_non_null(msg = datos_conf_size(p, "-1", 0, APR_INT64_MAX, &v));
    assert_non_null(msg = datos_conf_size(p, "2M", 0, 1048576, &v));
    assert_non_null(strstr(msg, "between 0 and 1048576 bytes"));
    assert_non_null(msg = datos_conf_size(p, "9999999T", 0, APR_INT64_MAX, &v));
    assert_non_null(strstr(msg, "out of range"));
    assert_non_null(
        msg = datos_conf_size(p, "99999999999999999999", 0, APR_INT64_MAX, &v));
    assert_int_equal(v, -1);
}

static void ints(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    apr_int64_t v = -1;
    const char *msg;

    assert_null(datos_conf_int(p, "42", 1, 100, &v));
    assert_int_equal(v, 42);
    assert_null(datos_conf_int(p, "-3", -5, 5, &v));
    assert_int_equal(v, -3);
    assert_null(datos_conf_int(p, "+3", -5, 5, &v));
    assert_int_equal(v, 3);
    v = -1;
    assert_non_null(msg = datos_conf_int(p, "0", 1, 100, &v));
    assert_string_equal(msg, "'0' is out of range: must be between 1 and 100");
    assert_non_null(msg = datos_conf_int(p, "101", 1, 100, &v));
    assert_non_null(msg = datos_conf_int(p, "ten", 1, 100, &v));
    assert_string_equal(msg, "'ten' is not a whole number");
    assert_non_null(datos_conf_int(p, "1e3", 1, 10000, &v));
    assert_non_null(datos_conf_int(p, "", 1, 10000, &v));
    assert_non_null(datos_conf_int(p, "-", 1, 10000, &v));
    assert_non_null(datos_conf_int(p, "99999999999999999999", 1, 10000, &v));
    assert_int_equal(v, -1);
}

static void flags(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    static const char *const on[] = {"on",  "On", "ON",  "true",
                                     "yes", "1",  " on "};
    static const char *const off[] = {"off",   "Off", "false",
                                      "FALSE", "no",  "0"};
    size_t i;
    int v;
    const char *msg;

    for (i = 0; i < sizeof(on) / sizeof(on[0]); i++) {
        v = -1;
        assert_null(datos_conf_flag(p, on[i], &v));
        assert_int_equal(v, 1);
    }
    for (i = 0; i < sizeof(off) / sizeof(off[0]); i++) {
        v = -1;
        assert_null(datos_conf_flag(p, off[i], &v));
        assert_int_equal(v, 0);
    }
    v = -1;
    assert_non_null(msg = datos_conf_flag(p, "maybe", &v));
    assert_non_null(strstr(msg, "On or Off"));
    assert_non_null(datos_conf_flag(p, "", &v));
    assert_non_null(datos_conf_flag(p, "2", &v));
    assert_int_equal(v, -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        DT_TEST(durations),
        DT_TEST(sizes),
        DT_TEST(ints),
        DT_TEST(flags),
    };
    return cmocka_run_group_tests(tests, dt_group_setup, dt_group_teardown);
}
