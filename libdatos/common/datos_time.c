/* datos_time.c - TIMESTAMP cells, rendering and RFC 3339 parsing.
 *
 * Everything is int64 microseconds since 1970-01-01T00:00:00Z over
 * BigQuery's range 0001..9999. gmtime/timegm are avoided: their range and
 * time_t width vary by platform, and they cannot be trusted for years
 * before 1900 or negative values on every libc.
 */
#include <string.h>

#include "datos_error.h"
#include "datos_time.h"

#define US_PER_SEC  APR_INT64_C(1000000)
#define SEC_PER_DAY APR_INT64_C(86400)

/* Floor division: C truncates toward zero, which would put -1 us on
 * 1970-01-01 instead of 1969-12-31. */
static apr_int64_t floor_div(apr_int64_t a, apr_int64_t b)
{
    apr_int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

/* Proleptic Gregorian calendar in 400-year eras (146097 days each), with
 * the year starting in March so the leap day falls at its end. */
static apr_int64_t days_from_civil(apr_int64_t y, int m, int d)
{
    apr_int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = floor_div(y, 400);
    yoe = y - era * 400;
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(apr_int64_t z, apr_int64_t *y, int *m, int *d)
{
    apr_int64_t era, doe, yoe, doy, mp;

    z += 719468;
    era = floor_div(z, 146097);
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int is_leap(apr_int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(apr_int64_t y, int m)
{
    static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* The useInt64Timestamp form: exact, optional '-', digits only. */
static apr_status_t parse_int64_us(const char *s, apr_size_t len,
                                   apr_int64_t *us)
{
    apr_uint64_t v = 0;
    apr_size_t i = 0;
    int neg = 0;

    if (s[0] == '-') {
        neg = 1;
        i = 1;
    }
    if (i == len) {
        return DATOS_EMALFORMED;
    }
    for (; i < len; i++) {
        if (!is_digit(s[i])) {
            return DATOS_EMALFORMED;
        }
        v = v * 10 + (apr_uint64_t)(s[i] - '0');
        /* Far beyond either bound already: stop before v can wrap. */
        if (v > (apr_uint64_t)APR_INT64_C(1000000000000000000)) {
            return DATOS_EMALFORMED;
        }
    }
    if (neg ? v > (apr_uint64_t)-DATOS_TS_MIN_US
            : v > (apr_uint64_t)DATOS_TS_MAX_US) {
        return DATOS_EMALFORMED;
    }
    *us = neg ? -(apr_int64_t)v : (apr_int64_t)v;
    return APR_SUCCESS;
}

/* The float-seconds forms ("1.7052408E9", "1705240800.000000"). A double
 * cannot hold a present-day value to the microsecond, so the decimal text
 * itself is scaled: value = mantissa * 10^(exponent - fraction digits)
 * seconds. The result needs at most 18 integer digits at microsecond scale
 * plus one more to round on (half away from zero: the first dropped digit
 * alone decides), so only the first MANT_KEEP significant digits are kept;
 * the others still count for the scale. */
#define MANT_KEEP 20

static apr_status_t parse_float_us(const char *s, apr_size_t len,
                                   apr_int64_t *us)
{
    char digits[MANT_KEEP];
    apr_size_t i = 0, start;
    apr_int64_t nd = 0, frac_digits = 0, exp10 = 0, keep, k;
    apr_uint64_t v = 0;
    int neg = 0, eneg = 0;

    if (s[i] == '-') {
        neg = 1;
        i++;
    }
    for (start = i; i < len && is_digit(s[i]); i++) {
        if (nd == 0 && s[i] == '0') {
            continue; /* leading zeros carry no scale */
        }
        if (nd < MANT_KEEP) {
            digits[nd] = s[i];
        }
        nd++;
    }
    if (i == start) {
        return DATOS_EMALFORMED;
    }
    if (i < len && s[i] == '.') {
        for (start = ++i; i < len && is_digit(s[i]); i++) {
            frac_digits++;
            if (nd == 0 && s[i] == '0') {
                continue;
            }
            if (nd < MANT_KEEP) {
                digits[nd] = s[i];
            }
            nd++;
        }
        if (i == start) {
            return DATOS_EMALFORMED;
        }
    }
    if (i < len && (s[i] == 'E' || s[i] == 'e')) {
        i++;
        if (i < len && (s[i] == '-' || s[i] == '+')) {
            eneg = s[i] == '-';
            i++;
        }
        for (start = i; i < len && is_digit(s[i]); i++) {
            if (exp10
                < 1000000) { /* saturate: any such value is out of range or 0 */
                exp10 = exp10 * 10 + (s[i] - '0');
            }
        }
        if (i == start) {
            return DATOS_EMALFORMED;
        }
        if (eneg) {
            exp10 = -exp10;
        }
    }
    if (i != len) {
        return DATOS_EMALFORMED;
    }
    /* Digits left of the point once scaled to microseconds. */
    keep = nd + exp10 - frac_digits + 6;
    if (nd == 0 || keep < 0) {
        v = 0;
    }
    else if (keep > 18) {
        return DATOS_EMALFORMED; /* >= 10^18 us: beyond year 9999 */
    }
    else {
        for (k = 0; k < keep; k++) {
            v = v * 10 + (apr_uint64_t)(k < nd ? digits[k] - '0' : 0);
        }
        if (keep < nd && digits[keep] >= '5') {
            v++;
        }
    }
    if (neg ? v > (apr_uint64_t)-DATOS_TS_MIN_US
            : v > (apr_uint64_t)DATOS_TS_MAX_US) {
        return DATOS_EMALFORMED;
    }
    *us = neg ? -(apr_int64_t)v : (apr_int64_t)v;
    return APR_SUCCESS;
}

apr_status_t datos_ts_parse_cell(const char *text, apr_size_t len,
                                 apr_int64_t *us)
{
    apr_size_t i;

    if (!text || len == 0) {
        return DATOS_EMALFORMED;
    }
    for (i = 0; i < len; i++) {
        if (!is_digit(text[i]) && !(i == 0 && text[i] == '-')) {
            return parse_float_us(text, len, us);
        }
    }
    return parse_int64_us(text, len, us);
}

static void put2(char *b, int v)
{
    b[0] = (char)('0' + v / 10);
    b[1] = (char)('0' + v % 10);
}

apr_size_t datos_ts_format(apr_int64_t us, char buf[DATOS_TS_BUFSIZE])
{
    apr_int64_t secs, days, sod, year;
    int month, day, frac, n;

    if (us < DATOS_TS_MIN_US || us > DATOS_TS_MAX_US) {
        return 0;
    }
    secs = floor_div(us, US_PER_SEC);
    frac = (int)(us - secs * US_PER_SEC);
    days = floor_div(secs, SEC_PER_DAY);
    sod = secs - days * SEC_PER_DAY;
    civil_from_days(days, &year, &month, &day);

    buf[0] = (char)('0' + year / 1000);
    buf[1] = (char)('0' + year / 100 % 10);
    buf[2] = (char)('0' + year / 10 % 10);
    buf[3] = (char)('0' + year % 10);
    buf[4] = '-';
    put2(buf + 5, month);
    buf[7] = '-';
    put2(buf + 8, day);
    buf[10] = 'T';
    put2(buf + 11, (int)(sod / 3600));
    buf[13] = ':';
    put2(buf + 14, (int)(sod / 60 % 60));
    buf[16] = ':';
    put2(buf + 17, (int)(sod % 60));
    n = 19;
    if (frac) {
        int k;
        buf[n++] = '.';
        for (k = 5; k >= 0; k--) {
            buf[n + k] = (char)('0' + frac % 10);
            frac /= 10;
        }
        n += 6;
    }
    memcpy(buf + n, "+00:00", 7);
    return (apr_size_t)n + 6;
}

static int fixed_digits(const char *s, int n)
{
    int v = 0, i;
    for (i = 0; i < n; i++) {
        if (!is_digit(s[i])) {
            return -1;
        }
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

apr_status_t datos_ts_parse_rfc3339(const char *text, apr_size_t len,
                                    apr_int64_t *us)
{
    int year, month, day, hour, min, sec, oh = 0, om = 0, frac = 0, nf = 0;
    apr_int64_t v, offset = 0;
    apr_size_t i;

    /* YYYY-MM-DDTHH:MM:SS is 19 bytes; the shortest zone is "Z". */
    if (!text || len < 20) {
        return DATOS_EMALFORMED;
    }
    if (text[4] != '-' || text[7] != '-' || (text[10] != 'T' && text[10] != 't')
        || text[13] != ':' || text[16] != ':') {
        return DATOS_EMALFORMED;
    }
    year = fixed_digits(text, 4);
    month = fixed_digits(text + 5, 2);
    day = fixed_digits(text + 8, 2);
    hour = fixed_digits(text + 11, 2);
    min = fixed_digits(text + 14, 2);
    sec = fixed_digits(text + 17, 2);
    if (year < 1 || month < 1 || month > 12 || day < 1
        || day > days_in_month(year, month) || hour < 0 || hour > 23 || min < 0
        || min > 59 || sec < 0 || sec > 59) {
        return DATOS_EMALFORMED;
    }
    i = 19;
    if (text[i] == '.') {
        i++;
        while (i < len && is_digit(text[i])) {
            if (++nf > 6) {
                return DATOS_EMALFORMED;
            }
            frac = frac * 10 + (text[i] - '0');
            i++;
        }
        if (nf == 0) {
            return DATOS_EMALFORMED;
        }
        for (int k = nf; k < 6; k++) {
            frac *= 10;
        }
    }
    if (i < len && (text[i] == 'Z' || text[i] == 'z')) {
        i++;
    }
    else if (i < len && (text[i] == '+' || text[i] == '-')) {
        int sign = text[i] == '-' ? -1 : 1;
        if (len - i != 6 || text[i + 3] != ':') {
            return DATOS_EMALFORMED;
        }
        oh = fixed_digits(text + i + 1, 2);
        om = fixed_digits(text + i + 4, 2);
        if (oh < 0 || oh > 23 || om < 0 || om > 59) {
            return DATOS_EMALFORMED;
        }
        offset = sign * ((apr_int64_t)oh * 3600 + om * 60);
        i += 6;
    }
    else {
        return DATOS_EMALFORMED;
    }
    if (i != len) {
        return DATOS_EMALFORMED;
    }
    v = (days_from_civil(year, month, day) * SEC_PER_DAY + hour * 3600
         + min * 60 + sec - offset)
            * US_PER_SEC
        + frac;
    if (v < DATOS_TS_MIN_US || v > DATOS_TS_MAX_US) {
        return DATOS_EMALFORMED;
    }
    *us = v;
    return APR_SUCCESS;
}

/* ------------------------------------------------------------ HTTP-date */

static int month_from_name(const char *s)
{
    static const char names[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    int m;

    for (m = 0; m < 12; m++) {
        if (!memcmp(s, names + 3 * m, 3)) {
            return m + 1;
        }
    }
    return 0;
}

static int weekday_ok(const char *s, apr_size_t n)
{
    static const char *const days[] = {"Monday",   "Tuesday", "Wednesday",
                                       "Thursday", "Friday",  "Saturday",
                                       "Sunday"};
    int i;

    for (i = 0; i < 7; i++) {
        apr_size_t full = strlen(days[i]);
        if ((n == 3 || n == full) && !memcmp(s, days[i], n)) {
            return 1;
        }
    }
    return 0;
}

/* "HH:MM:SS" */
static int clock_ok(const char *s, int *h, int *m, int *sec)
{
    if (s[2] != ':' || s[5] != ':') {
        return 0;
    }
    *h = fixed_digits(s, 2);
    *m = fixed_digits(s + 3, 2);
    *sec = fixed_digits(s + 6, 2);
    /* 60 is a leap second, which HTTP-date allows. */
    return *h >= 0 && *h <= 23 && *m >= 0 && *m <= 59 && *sec >= 0
           && *sec <= 60;
}

apr_status_t datos_http_date_parse(const char *text, apr_size_t len,
                                   apr_int64_t *epoch_sec)
{
    const char *comma, *s;
    apr_size_t wlen;
    int year, month, day, h, m, sec;

    if (!text) {
        return DATOS_EMALFORMED;
    }
    comma = memchr(text, ',', len);
    wlen = comma ? (apr_size_t)(comma - text) : 3;
    if (len < wlen || !weekday_ok(text, wlen)) {
        return DATOS_EMALFORMED;
    }
    if (comma && wlen == 3) {
        /* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
        s = comma + 1;
        if ((apr_size_t)(text + len - s) != 25 || s[0] != ' ' || s[3] != ' '
            || s[7] != ' ' || s[12] != ' ' || memcmp(s + 21, " GMT", 4)) {
            return DATOS_EMALFORMED;
        }
        day = fixed_digits(s + 1, 2);
        month = month_from_name(s + 4);
        year = fixed_digits(s + 8, 4);
        if (!clock_ok(s + 13, &h, &m, &sec)) {
            return DATOS_EMALFORMED;
        }
    }
    else if (comma) {
        /* obsolete RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT" */
        s = comma + 1;
        if ((apr_size_t)(text + len - s) != 23 || s[0] != ' ' || s[3] != '-'
            || s[7] != '-' || s[10] != ' ' || memcmp(s + 19, " GMT", 4)) {
            return DATOS_EMALFORMED;
        }
        day = fixed_digits(s + 1, 2);
        month = month_from_name(s + 4);
        year = fixed_digits(s + 8, 2);
        if (year < 0) {
            return DATOS_EMALFORMED;
        }
        /* RFC 9110 5.6.7: a two-digit year more than 50 years ahead is in
         * the past century. Read against 2000 as a fixed pivot: the form
         * died decades ago, so only its old uses matter. */
        year += year < 70 ? 2000 : 1900;
        if (!clock_ok(s + 11, &h, &m, &sec)) {
            return DATOS_EMALFORMED;
        }
    }
    else {
        /* asctime: "Sun Nov  6 08:49:37 1994" */
        if (len != 24 || text[3] != ' ' || text[7] != ' ' || text[10] != ' '
            || text[19] != ' ') {
            return DATOS_EMALFORMED;
        }
        month = month_from_name(text + 4);
        day = text[8] == ' ' ? fixed_digits(text + 9, 1)
                             : fixed_digits(text + 8, 2);
        year = fixed_digits(text + 20, 4);
        if (!clock_ok(text + 11, &h, &m, &sec)) {
            return DATOS_EMALFORMED;
        }
    }
    if (year < 1970 || month < 1 || day < 1
        || day > days_in_month(year, month)) {
        return DATOS_EMALFORMED;
    }
    *epoch_sec = days_from_civil(year, month, day) * SEC_PER_DAY
                 + (apr_int64_t)h * 3600 + m * 60 + sec;
    return APR_SUCCESS;
}
