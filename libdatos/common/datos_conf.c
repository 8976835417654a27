/* datos_conf.c - setting value parsers shared by directives and the loader
 * config. Messages say what was wrong and what is accepted, because they are
 * what an operator sees from `apache2 -t` or the loader's exit 2. */
#include <string.h>
#include <strings.h>
#include <apr_strings.h>
#include <apr_lib.h>

#include "datos_conf.h"

/* Surrounding blanks come from config files and are never meaningful. */
static const char *trim(apr_pool_t *p, const char *text, apr_size_t *len)
{
    const char *s = text, *e;

    while (*s && apr_isspace(*s)) {
        s++;
    }
    e = s + strlen(s);
    while (e > s && apr_isspace(e[-1])) {
        e--;
    }
    *len = (apr_size_t)(e - s);
    return apr_pstrmemdup(p, s, *len);
}

/* Unsigned decimal prefix; returns the number of digits, or -1 on
 * overflow. */
static int parse_digits(const char *s, apr_uint64_t *out)
{
    apr_uint64_t v = 0;
    int n = 0;

    while (apr_isdigit(s[n])) {
        unsigned d = (unsigned)(s[n] - '0');
        if (v > (APR_UINT64_MAX - d) / 10) {
            return -1;
        }
        v = v * 10 + d;
        n++;
    }
    *out = v;
    return n;
}

static const char *fmt_duration(apr_pool_t *p, apr_interval_time_t t)
{
    static const struct {
        apr_interval_time_t us;
        const char *unit;
    } units[] = {
        {APR_INT64_C(86400000000), "d"}, {APR_INT64_C(3600000000), "h"},
        {APR_INT64_C(60000000), "m"},    {APR_INT64_C(1000000), "s"},
        {APR_INT64_C(1000), "ms"},
    };
    apr_size_t i;

    for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (t != 0 && t % units[i].us == 0) {
            return apr_psprintf(p, "%" APR_INT64_T_FMT "%s", t / units[i].us,
                                units[i].unit);
        }
    }
    return apr_psprintf(p, "%" APR_INT64_T_FMT "us", t);
}

const char *datos_conf_duration(apr_pool_t *p, const char *text,
                                apr_interval_time_t default_unit,
                                apr_interval_time_t min,
                                apr_interval_time_t max,
                                apr_interval_time_t *out)
{
    const char *s, *suffix;
    apr_uint64_t n;
    apr_interval_time_t unit;
    apr_size_t len;
    int nd;

    s = trim(p, text ? text : "", &len);
    nd = parse_digits(s, &n);
    if (nd < 0) {
        return apr_psprintf(p,
                            "'%s' is out of range: must be between %s "
                            "and %s",
                            s, fmt_duration(p, min), fmt_duration(p, max));
    }
    suffix = s + nd;
    if (nd == 0) {
        return apr_psprintf(p,
                            "'%s' is not a duration: use a whole number "
                            "with a unit ms, s, m, h or d (e.g. 250ms, 5s, "
                            "7d)",
                            s);
    }
    if (!*suffix) {
        unit = default_unit;
    }
    else if (!strcasecmp(suffix, "ms")) {
        unit = APR_INT64_C(1000);
    }
    else if (!strcasecmp(suffix, "s")) {
        unit = APR_INT64_C(1000000);
    }
    else if (!strcasecmp(suffix, "m")) {
        unit = APR_INT64_C(60000000);
    }
    else if (!strcasecmp(suffix, "h")) {
        unit = APR_INT64_C(3600000000);
    }
    else if (!strcasecmp(suffix, "d")) {
        unit = APR_INT64_C(86400000000);
    }
    else {
        return apr_psprintf(p,
                            "'%s' is not a duration: unknown unit '%s' "
                            "(use ms, s, m, h or d, e.g. 250ms, 5s, 7d)",
                            s, suffix);
    }
    if (n > (apr_uint64_t)(APR_INT64_MAX / unit)
        || (apr_interval_time_t)n * unit < min
        || (apr_interval_time_t)n * unit > max) {
        return apr_psprintf(p,
                            "'%s' is out of range: must be between %s "
                            "and %s",
                            s, fmt_duration(p, min), fmt_duration(p, max));
    }
    *out = (apr_interval_time_t)n * unit;
    return NULL;
}

const char *datos_conf_size(apr_pool_t *p, const char *text, apr_int64_t min,
                            apr_int64_t max, apr_int64_t *out)
{
    const char *s, *suffix;
    apr_uint64_t n, mult = 1, base;
    apr_size_t len;
    int nd;

    s = trim(p, text ? text : "", &len);
    nd = parse_digits(s, &n);
    if (nd < 0) {
        return apr_psprintf(
            p,
            "'%s' is out of range: must be between %" APR_INT64_T_FMT
            " and %" APR_INT64_T_FMT " bytes",
            s, min, max);
    }
    suffix = s + nd;
    if (nd == 0) {
        return apr_psprintf(p,
                            "'%s' is not a size: use a whole number of "
                            "bytes, optionally with K, M, G or T (also KB, "
                            "KiB...; powers of 1024), e.g. 512K, 1MiB, 10GB",
                            s);
    }
    if (*suffix) {
        const char *rest;
        int power;
        switch (apr_tolower(*suffix)) {
        case 'k': power = 1; break;
        case 'm': power = 2; break;
        case 'g': power = 3; break;
        case 't': power = 4; break;
        case 'b': power = 0; break;
        default: power = -1; break;
        }
        rest = suffix + 1;
        if (power == 0 && !*rest) {
            base = 1;
        }
        else if (power > 0
                 && (!*rest || !strcasecmp(rest, "ib")
                     || !strcasecmp(rest, "b"))) {
            /* "MB" is 2^20 bytes, as BigQuery itself counts billed bytes:
             * "DatosMaxBytesBilled 10MB" must mean its 10 MB minimum. */
            base = 1024;
        }
        else {
            return apr_psprintf(p,
                                "'%s' is not a size: unknown unit '%s' "
                                "(use K, M, G or T, also KB/KiB..., powers "
                                "of 1024)",
                                s, suffix);
        }
        while (power-- > 0) {
            mult *= base;
        }
    }
    if (n > (apr_uint64_t)APR_INT64_MAX / mult || (apr_int64_t)(n * mult) < min
        || (apr_int64_t)(n * mult) > max) {
        return apr_psprintf(
            p,
            "'%s' is out of range: must be between %" APR_INT64_T_FMT
            " and %" APR_INT64_T_FMT " bytes",
            s, min, max);
    }
    *out = (apr_int64_t)(n * mult);
    return NULL;
}

const char *datos_conf_int(apr_pool_t *p, const char *text, apr_int64_t min,
                           apr_int64_t max, apr_int64_t *out)
{
    const char *s, *d;
    apr_uint64_t n;
    apr_size_t len;
    int nd, neg = 0;
    apr_int64_t v;

    s = trim(p, text ? text : "", &len);
    d = s;
    if (*d == '-' || *d == '+') {
        neg = *d == '-';
        d++;
    }
    nd = parse_digits(d, &n);
    if (nd == 0 || (nd > 0 && d[nd] != '\0')) {
        return apr_psprintf(p, "'%s' is not a whole number", s);
    }
    if (nd < 0 || n > (apr_uint64_t)APR_INT64_MAX) {
        return apr_psprintf(
            p,
            "'%s' is out of range: must be between %" APR_INT64_T_FMT
            " and %" APR_INT64_T_FMT,
            s, min, max);
    }
    v = neg ? -(apr_int64_t)n : (apr_int64_t)n;
    if (v < min || v > max) {
        return apr_psprintf(
            p,
            "'%s' is out of range: must be between %" APR_INT64_T_FMT
            " and %" APR_INT64_T_FMT,
            s, min, max);
    }
    *out = v;
    return NULL;
}

const char *datos_conf_flag(apr_pool_t *p, const char *text, int *out)
{
    static const char *const yes[] = {"on", "true", "yes", "1"};
    static const char *const no[] = {"off", "false", "no", "0"};
    const char *s;
    apr_size_t len, i;

    s = trim(p, text ? text : "", &len);
    for (i = 0; i < 4; i++) {
        if (!strcasecmp(s, yes[i])) {
            *out = 1;
            return NULL;
        }
        if (!strcasecmp(s, no[i])) {
            *out = 0;
            return NULL;
        }
    }
    return apr_psprintf(p,
                        "'%s' is not a flag: use On or Off (also true/"
                        "false, yes/no, 1/0)",
                        s);
}
