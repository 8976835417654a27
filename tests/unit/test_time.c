/* test_time.c - TIMESTAMP cells, rendering and RFC 3339 parsing.
 * Reference values come from Python's datetime (proleptic Gregorian). */
#include <stdio.h>
#include <string.h>

#include "dt_support.h"
#include "datos_error.h"
#include "datos_time.h"

static void cell_is(const char *text, apr_int64_t want)
{
    apr_int64_t us = 12345;
    apr_status_t rv = datos_ts_parse_cell(text, strlen(text), &us);
    if (rv != APR_SUCCESS || us != want) {
        fail_msg("'%s': rv %d, got %lld, want %lld", text, rv, (long long)us,
                 (long long)want);
    }
}

static void cell_bad(const char *text)
{
    apr_int64_t us = 12345;
    apr_status_t rv = datos_ts_parse_cell(text, strlen(text), &us);
    if (rv != DATOS_EMALFORMED) {
        fail_msg("'%s' accepted (rv %d, %lld)", text, rv, (long long)us);
    }
    assert_int_equal(us, 12345); /* untouched on failure */
}

static void fmt_is(apr_int64_t us, const char *want)
{
    char buf[DATOS_TS_BUFSIZE];
    apr_size_t n = datos_ts_format(us, buf);
    assert_string_equal(buf, want);
    assert_int_equal(n, strlen(want));
}

static void rfc_is(const char *text, apr_int64_t want)
{
    apr_int64_t us = 12345;
    apr_status_t rv = datos_ts_parse_rfc3339(text, strlen(text), &us);
    if (rv != APR_SUCCESS || us != want) {
        fail_msg("'%s': rv %d, got %lld, want %lld", text, rv, (long long)us,
                 (long long)want);
    }
}

static void rfc_bad(const char *text)
{
    apr_int64_t us = 12345;
    if (datos_ts_parse_rfc3339(text, strlen(text), &us) != DATOS_EMALFORMED) {
        fail_msg("'%s' accepted (%lld)", text, (long long)us);
    }
    assert_int_equal(us, 12345);
}

static void cell_int64_form(void **state)
{
    (void)state;
    cell_is("1705240800000000", APR_INT64_C(1705240800000000));
    cell_is("1705240800123456", APR_INT64_C(1705240800123456));
    cell_is("0", 0);
    cell_is("-0", 0);
    cell_is("-1", -1);
    cell_is("000000000000000000000000000001", 1);
    cell_is("-62135596800000000", DATOS_TS_MIN_US);
    cell_is("253402300799999999", DATOS_TS_MAX_US);
}

static void cell_int64_out_of_range(void **state)
{
    (void)state;
    cell_bad("-62135596800000001");
    cell_bad("253402300800000000");
    cell_bad("9223372036854775807");
    cell_bad("9223372036854775808");
    cell_bad("-9223372036854775809");
    cell_bad("99999999999999999999999999");
}

static void cell_float_forms(void **state)
{
    (void)state;
    cell_is("1.7052408E9", APR_INT64_C(1705240800000000));
    cell_is("1.705240800123456E9", APR_INT64_C(1705240800123456));
    cell_is("1705240800.000000", APR_INT64_C(1705240800000000));
    cell_is("1705240800.5", APR_INT64_C(1705240800500000));
    cell_is("1.561017697269367E9", APR_INT64_C(1561017697269367));
    cell_is("-1.0E-6", -1);
    cell_is("1.0E-6", 1);
    cell_is("1.0e-6", 1);
    cell_is("1.0E+3", APR_INT64_C(1000000000));
    cell_is("0.0", 0);
    cell_is("-0.0", 0);
    cell_is("0.0E0", 0);
    cell_is("1.0E-300", 0);
    cell_is("0.000001", 1);
    cell_is("-6.21355968E10", DATOS_TS_MIN_US);
    cell_is("2.53402300799999999E11", DATOS_TS_MAX_US);
}

static void cell_float_rounding(void **state)
{
    (void)state;
    /* nearest microsecond, half away from zero */
    cell_is("1.5E-6", 2);
    cell_is("-1.5E-6", -2);
    cell_is("2.5E-6", 3);
    cell_is("-2.5E-6", -3);
    cell_is("1.4999E-6", 1);
    cell_is("-1.4999E-6", -1);
    cell_is("5.0E-7", 1);
    cell_is("-5.0E-7", -1);
    cell_is("4.9999999E-7", 0);
    cell_is("2.5E-7", 0);
    cell_is("1705240800.0000004999999999999999999",
            APR_INT64_C(1705240800000000));
    cell_is("1705240800.0000005", APR_INT64_C(1705240800000001));
    cell_is("1705240800.00000050000000000000000000000000000000001",
            APR_INT64_C(1705240800000001));
    cell_is("1.7052408000000015E9", APR_INT64_C(1705240800000002));
    /* rounds past the last representable microsecond */
    cell_bad("2.534023007999999995E11");
    cell_bad("-6.21355968000000005E10");
}

static void cell_garbage(void **state)
{
    (void)state;
    cell_bad("");
    cell_bad(" 1");
    cell_bad("1 ");
    cell_bad("abc");
    cell_bad("1.");
    cell_bad(".5");
    cell_bad("1e");
    cell_bad("1E+");
    cell_bad("NaN");
    cell_bad("Infinity");
    cell_bad("-Infinity");
    cell_bad("1.0E9x");
    cell_bad("--1");
    cell_bad("+1");
    cell_bad("-");
    cell_bad("1,5");
    cell_bad("0x10");
    cell_bad("1.0E300");
    cell_bad("2.534023008E11");
    cell_bad("2024-01-14T14:00:00Z");
    assert_int_equal(datos_ts_parse_cell(NULL, 0, &(apr_int64_t){0}),
                     DATOS_EMALFORMED);
    /* an embedded NUL is not the end of the text */
    assert_int_equal(datos_ts_parse_cell("1\0"
                                         "2",
                                         3, &(apr_int64_t){0}),
                     DATOS_EMALFORMED);
}

static void format_values(void **state)
{
    char buf[DATOS_TS_BUFSIZE];
    (void)state;

    fmt_is(0, "1970-01-01T00:00:00+00:00");
    fmt_is(-1, "1969-12-31T23:59:59.999999+00:00");
    fmt_is(APR_INT64_C(-1000000), "1969-12-31T23:59:59+00:00");
    fmt_is(APR_INT64_C(1705240800000000), "2024-01-14T14:00:00+00:00");
    fmt_is(APR_INT64_C(1705240800123456), "2024-01-14T14:00:00.123456+00:00");
    fmt_is(APR_INT64_C(1705240800000001), "2024-01-14T14:00:00.000001+00:00");
    fmt_is(APR_INT64_C(1705240800100000), "2024-01-14T14:00:00.100000+00:00");
    fmt_is(DATOS_TS_MIN_US, "0001-01-01T00:00:00+00:00");
    fmt_is(DATOS_TS_MAX_US, "9999-12-31T23:59:59.999999+00:00");
    assert_int_equal(datos_ts_format(DATOS_TS_MIN_US - 1, buf), 0);
    assert_int_equal(datos_ts_format(DATOS_TS_MAX_US + 1, buf), 0);
    assert_int_equal(datos_ts_format(APR_INT64_MIN, buf), 0);
    assert_int_equal(datos_ts_format(APR_INT64_MAX, buf), 0);
}

static void format_calendar_rules(void **state)
{
    (void)state;
    /* leap years, and the 100/400-year rules */
    fmt_is(APR_INT64_C(1709164800000000), "2024-02-29T00:00:00+00:00");
    fmt_is(APR_INT64_C(951782400000000), "2000-02-29T00:00:00+00:00");
    fmt_is(APR_INT64_C(-2203891201000000), "1900-02-28T23:59:59+00:00");
    fmt_is(APR_INT64_C(-2203891200000000), "1900-03-01T00:00:00+00:00");
    fmt_is(APR_INT64_C(4107456000000000), "2100-02-28T00:00:00+00:00");
    fmt_is(APR_INT64_C(4107542400000000), "2100-03-01T00:00:00+00:00");
    fmt_is(APR_INT64_C(-11670998400000000), "1600-02-29T00:00:00+00:00");
    fmt_is(APR_INT64_C(-12219292800000000), "1582-10-15T00:00:00+00:00");
    fmt_is(APR_INT64_C(-62035848000000000), "0004-02-29T12:00:00+00:00");
    fmt_is(APR_INT64_C(-62035848000000001), "0004-02-29T11:59:59.999999+00:00");
}

static void rfc3339_parse(void **state)
{
    (void)state;
    rfc_is("2024-01-14T14:00:00Z", APR_INT64_C(1705240800000000));
    rfc_is("2024-01-14t14:00:00z", APR_INT64_C(1705240800000000));
    rfc_is("2024-01-14T14:00:00.5Z", APR_INT64_C(1705240800500000));
    rfc_is("2024-01-14T14:00:00.123456Z", APR_INT64_C(1705240800123456));
    rfc_is("2024-01-14T14:00:00.000001+00:00", APR_INT64_C(1705240800000001));
    rfc_is("2024-01-14T15:00:00+01:00", APR_INT64_C(1705240800000000));
    rfc_is("2024-01-14T09:30:00-04:30", APR_INT64_C(1705240800000000));
    rfc_is("2024-01-14T14:00:00-00:00", APR_INT64_C(1705240800000000));
    rfc_is("2024-02-29T00:00:00Z", APR_INT64_C(1709164800000000));
    rfc_is("2000-02-29T00:00:00Z", APR_INT64_C(951782400000000));
    rfc_is("1969-12-31T23:59:59.999999Z", -1);
    rfc_is("0001-01-01T00:00:00Z", DATOS_TS_MIN_US);
    rfc_is("9999-12-31T23:59:59.999999Z", DATOS_TS_MAX_US);
    rfc_is("0001-01-01T00:30:00+00:30", DATOS_TS_MIN_US);
}

static void rfc3339_reject(void **state)
{
    (void)state;
    rfc_bad("");
    rfc_bad("2024-01-14T14:00:00");
    rfc_bad("2024-01-14 14:00:00Z");
    rfc_bad("2024-01-14T14:00:00.1234567Z");
    rfc_bad("2024-01-14T14:00:00.Z");
    rfc_bad("2024-13-01T00:00:00Z");
    rfc_bad("2024-00-01T00:00:00Z");
    rfc_bad("2024-01-00T00:00:00Z");
    rfc_bad("2024-01-32T00:00:00Z");
    rfc_bad("2023-02-29T00:00:00Z");
    rfc_bad("1900-02-29T00:00:00Z");
    rfc_bad("2024-01-14T24:00:00Z");
    rfc_bad("2024-01-14T23:60:00Z");
    rfc_bad("2024-01-14T23:59:60Z");
    rfc_bad("2024-01-14T14:00:00+24:00");
    rfc_bad("2024-01-14T14:00:00+01:60");
    rfc_bad("2024-01-14T14:00:00+0100");
    rfc_bad("2024-01-14T14:00:00+01:00x");
    rfc_bad("2024-01-14T14:00:00Zx");
    rfc_bad("0000-12-31T23:59:59Z");
    rfc_bad("0001-01-01T00:00:00+00:01");
    rfc_bad("9999-12-31T23:59:59.999999-00:01");
    rfc_bad("2024-1-14T14:00:00Z");
    rfc_bad("+024-01-14T14:00:00Z");
    rfc_bad("2024-01-14T14:00:00 Z");
}

/* The record's rule (docs/design.md section 3): a zone is required, with
 * or without a fraction of up to 6 digits. A fraction must not stand in
 * for the zone, whatever its length, and the length the caller gives is
 * the end of the text (the validator hands in a slice of the message). */
static void rfc_bad_n(const char *text, apr_size_t len)
{
    apr_int64_t us = 12345;
    if (datos_ts_parse_rfc3339(text, len, &us) != DATOS_EMALFORMED) {
        fail_msg("'%.*s' accepted (%lld)", (int)len, text, (long long)us);
    }
    assert_int_equal(us, 12345);
}

static void rfc3339_fraction_needs_a_zone(void **state)
{
    const apr_int64_t t = APR_INT64_C(1705240800000000);
    (void)state;

    rfc_is("2024-01-14T14:00:00.5Z", t + 500000);
    rfc_is("2024-01-14T14:00:00.5z", t + 500000);
    rfc_is("2024-01-14t14:00:00.5z", t + 500000);
    rfc_is("2024-01-14T14:00:00.5+00:00", t + 500000);
    rfc_is("2024-01-14T14:00:00.5-00:00", t + 500000);
    rfc_is("2024-01-14T11:00:00.5-03:00", t + 500000);
    rfc_is("2024-01-14T14:00:00.05Z", t + 50000);
    rfc_is("2024-01-14T14:00:00.000000Z", t);
    rfc_is("2024-01-14T14:00:00.999999+00:00", t + 999999);

    rfc_bad("2024-01-14T14:00:00.5");
    rfc_bad("2024-01-14t14:00:00.5");
    rfc_bad("2024-01-14T14:00:00.123456");
    rfc_bad("2024-01-14T14:00:00.1234567");
    rfc_bad("2024-01-14T14:00:00.1234567+00:00");
    rfc_bad("2024-01-14T14:00:00.0000000Z");
    rfc_bad("2024-01-14T14:00:00.");
    rfc_bad("2024-01-14T14:00:00.+00:00");
    rfc_bad("2024-01-14T14:00:00,5Z");
    rfc_bad("2024-01-14T14:00:00.5 ");
    rfc_bad("2024-01-14T14:00:00.5 Z");
    rfc_bad("2024-01-14T14:00:00.5x");
    rfc_bad("2024-01-14T14:00:00.5UTC");
    rfc_bad("2024-01-14T14:00:00.5ZZ");
    rfc_bad("2024-01-14T14:00:00.5Z+00:00");
    rfc_bad("2024-01-14T14:00:00.5+00");
    rfc_bad("2024-01-14T14:00:00.5+0000");
    rfc_bad("2024-01-14T14:00:00.5+00:00:00");
    rfc_bad("2024-01-14T14:00:00.5-");
    rfc_bad("2024-01-14T14:00:00.5.5Z");

    /* A zone after the given length does not count. */
    rfc_bad_n("2024-01-14T14:00:00.5Z", 21);
    rfc_bad_n("2024-01-14T14:00:00.123456Z", 26);
    rfc_bad_n("2024-01-14T14:00:00.5+00:00", 21);
    rfc_bad_n("2024-01-14T14:00:00.5+00:00", 26);
    rfc_bad_n("2024-01-14T14:00:00Z", 19);
}

/* format -> RFC 3339 parse is the identity across the whole range, and
 * every rendered value has the documented shape. */
static void round_trip_sweep(void **state)
{
    char buf[DATOS_TS_BUFSIZE];
    apr_int64_t us, back;
    apr_size_t n;
    (void)state;

    /* a prime-ish step visits every time of day, fraction and month */
    for (us = DATOS_TS_MIN_US; us <= DATOS_TS_MAX_US;
         us += APR_INT64_C(86399999977) * 97 + 13) {
        n = datos_ts_format(us, buf);
        assert_true(n == 25 || n == 32);
        assert_int_equal(datos_ts_parse_rfc3339(buf, n, &back), APR_SUCCESS);
        assert_int_equal(back, us);
        /* and the int64 cell form of the same value */
        {
            char cell[32];
            int m = snprintf(cell, sizeof(cell), "%lld", (long long)us);
            assert_int_equal(datos_ts_parse_cell(cell, (apr_size_t)m, &back),
                             APR_SUCCESS);
            assert_int_equal(back, us);
        }
    }
    n = datos_ts_format(DATOS_TS_MAX_US, buf);
    assert_int_equal(datos_ts_parse_rfc3339(buf, n, &back), APR_SUCCESS);
    assert_int_equal(back, DATOS_TS_MAX_US);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        DT_TEST(cell_int64_form),       DT_TEST(cell_int64_out_of_range),
        DT_TEST(cell_float_forms),      DT_TEST(cell_float_rounding),
        DT_TEST(cell_garbage),          DT_TEST(format_values),
        DT_TEST(format_calendar_rules), DT_TEST(rfc3339_parse),
        DT_TEST(rfc3339_reject),        DT_TEST(rfc3339_fraction_needs_a_zone),
        DT_TEST(round_trip_sweep),
    };
    return cmocka_run_group_tests(tests, dt_group_setup, dt_group_teardown);
}
