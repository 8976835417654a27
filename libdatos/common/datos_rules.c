/* datos_rules.c - the record's rules (docs/design.md section 3): the
 * reasons, the options, the details, and the field rules that the
 * validator's scanner (datos_validate.c) and the jansson reference of the
 * tests share, so that each rule and its detail exist once.
 */
#include <stdarg.h>
#include <string.h>
#include <apr_strings.h>

#include "datos_rules.h"
#include "datos_time.h"
#include "datos_utf8.h"

static const char *const reason_names[DATOS_REASON_COUNT] = {
    "none",
    "empty_data",
    "not_utf8",
    "not_json",
    "not_object",
    "duplicate_key",
    "missing_id",
    "bad_id",
    "id_too_long",
    "bad_contenido",
    "contenido_too_large",
    "missing_timestamp",
    "bad_timestamp",
    "future_timestamp",
    "unknown_field",
    "bigquery_rejected",
    "too_large",
};

const char *datos_reason_name(datos_reason_t r)
{
    return (int)r >= 0 && r < DATOS_REASON_COUNT ? reason_names[r] : NULL;
}

datos_reason_t datos_reason_from_name(const char *name)
{
    int i;

    for (i = 1; name && i < DATOS_REASON_COUNT; i++) {
        if (!strcmp(name, reason_names[i])) {
            return (datos_reason_t)i;
        }
    }
    return DATOS_REASON_NONE;
}

void datos_record_opts_init(datos_record_opts_t *o, apr_time_t now)
{
    o->now = now;
    o->max_future_skew = DATOS_MAX_FUTURE_SKEW;
    o->unknown = DATOS_UNKNOWN_REJECT;
}

/* ------------------------------------------------------------------ details */

static const char hexdigits[] = "0123456789abcdef";

static char *put_u(char *o, unsigned cp)
{
    memcpy(o, "\\u", 2);
    o[2] = hexdigits[(cp >> 12) & 15];
    o[3] = hexdigits[(cp >> 8) & 15];
    o[4] = hexdigits[(cp >> 4) & 15];
    o[5] = hexdigits[cp & 15];
    return o + 6;
}

/* Bytes that are not UTF-8 (only raw input near a syntax error, or
 * jansson's text, can hold them) come out as \\u00XX of the byte. */
const char *datos_rules_excerpt(apr_pool_t *p, const char *s, apr_size_t len,
                                apr_size_t max)
{
    const unsigned char *u = (const unsigned char *)s;
    apr_size_t n = len > max ? max : len, i = 0, k;
    char *out = apr_palloc(p, n * 6 + 8), *o = out;

    while (n < len && n > 0 && (u[n] & 0xC0) == 0x80) {
        n--;
    }
    *o++ = '"';
    while (i < n) {
        unsigned char c = u[i];
        if (c == '"' || c == '\\') {
            *o++ = '\\';
            *o++ = (char)c;
            i++;
        }
        else if (c < 0x20 || c == 0x7f) {
            o = put_u(o, c);
            i++;
        }
        else if (c < 0x80) {
            *o++ = (char)c;
            i++;
        }
        else if (!(k = datos_utf8_seq(u + i, n - i))) {
            o = put_u(o, c);
            i++;
        }
        else if (k == 2 && c == 0xC2 && u[i + 1] < 0xA0) {
            o = put_u(o, u[i + 1]); /* C1 control U+0080-U+009F */
            i += 2;
        }
        else {
            memcpy(o, u + i, k);
            o += k;
            i += k;
        }
    }
    *o++ = '"';
    if (n < len) {
        memcpy(o, "...", 3);
        o += 3;
    }
    *o = '\0';
    return out;
}

static const char *excerpt(apr_pool_t *p, const char *s, apr_size_t len)
{
    return datos_rules_excerpt(p, s, len, DATOS_EXCERPT_MAX);
}

/* The texts here stay far below DATOS_DETAIL_MAX_BYTES; the cut is the
 * guarantee. */
apr_status_t datos_rules_invalid(apr_pool_t *p, datos_invalid_t *why,
                                 datos_reason_t reason, const char *fmt, ...)
{
    va_list ap;
    char *d;
    apr_size_t n;

    va_start(ap, fmt);
    d = apr_pvsprintf(p, fmt, ap);
    va_end(ap);
    n = strlen(d);
    if (n > DATOS_DETAIL_MAX_BYTES) {
        n = DATOS_DETAIL_MAX_BYTES;
        while (n > 0 && ((unsigned char)d[n] & 0xC0) == 0x80) {
            n--;
        }
        d[n] = '\0';
    }
    why->reason = reason;
    why->detail = d;
    return DATOS_EMALFORMED;
}

/* ------------------------------------------------------------------ field rules */

const char *datos_rules_type_name(int type)
{
    switch (type) {
    case DATOS_VT_STRING: return "a string";
    case DATOS_VT_NULL: return "null";
    case DATOS_VT_NUMBER: return "a number";
    case DATOS_VT_BOOL: return "a boolean";
    case DATOS_VT_OBJECT: return "an object";
    case DATOS_VT_ARRAY: return "an array";
    default: return "absent";
    }
}

apr_status_t datos_rules_start(apr_pool_t *p, const char *data, apr_size_t len,
                               const datos_record_opts_t *opts, const void *out,
                               datos_invalid_t *why)
{
    why->reason = DATOS_REASON_NONE;
    why->detail = NULL;
    if (!opts || !out || (!data && len) || opts->max_future_skew < 0) {
        why->detail = "invalid arguments";
        return APR_EINVAL;
    }
    if (len == 0) {
        return datos_rules_invalid(p, why, DATOS_REASON_EMPTY_DATA,
                                   "the message data is empty");
    }
    return APR_SUCCESS;
}

apr_status_t datos_rules_not_utf8(apr_pool_t *p, datos_invalid_t *why,
                                  const char *data, apr_size_t bad)
{
    return datos_rules_invalid(p, why, DATOS_REASON_NOT_UTF8,
                               "the data is not UTF-8 (byte %" APR_SIZE_T_FMT
                               " is 0x%02x)",
                               bad, (unsigned char)data[bad]);
}

apr_status_t datos_rules_not_object(apr_pool_t *p, datos_invalid_t *why,
                                    int type)
{
    return datos_rules_invalid(p, why, DATOS_REASON_NOT_OBJECT,
                               "the data is %s, not a JSON object",
                               datos_rules_type_name(type));
}

/* Offset of the first control character (U+0000-U+001F, U+007F-U+009F) in
 * UTF-8 text, or len. */
static apr_size_t find_control(const char *s, apr_size_t len, unsigned *cp)
{
    const unsigned char *u = (const unsigned char *)s;
    apr_size_t i;

    for (i = 0; i < len; i++) {
        if (u[i] < 0x20 || u[i] == 0x7f) {
            *cp = u[i];
            return i;
        }
        if (u[i] == 0xC2 && i + 1 < len && u[i + 1] >= 0x80
            && u[i + 1] <= 0x9F) {
            *cp = u[i + 1];
            return i;
        }
    }
    return len;
}

/* Rules 6 and 8 begin alike: the field is required, as a string. */
static apr_status_t need_string(apr_pool_t *p, datos_invalid_t *why,
                                const datos_field_t *f, const char *name,
                                const char *string, datos_reason_t missing,
                                datos_reason_t bad)
{
    if (f->type == DATOS_VT_ABSENT) {
        return datos_rules_invalid(p, why, missing,
                                   "the record has no \"%s\" field", name);
    }
    if (f->type != DATOS_VT_STRING) {
        return datos_rules_invalid(p, why, bad, "\"%s\" must be %s, not %s",
                                   name, string,
                                   datos_rules_type_name(f->type));
    }
    return APR_SUCCESS;
}

apr_status_t datos_rules_check_fields(apr_pool_t *p,
                                      const datos_record_opts_t *o,
                                      const datos_fields_t *fd,
                                      apr_int64_t *ts_us, datos_invalid_t *why)
{
    const datos_field_t *id = &fd->f[DATOS_FIELD_ID],
                        *c = &fd->f[DATOS_FIELD_CONTENIDO],
                        *ts = &fd->f[DATOS_FIELD_TIMESTAMP];
    apr_status_t rv = APR_SUCCESS;
    apr_int64_t us, limit;
    apr_size_t at;
    unsigned cp;

    rv = need_string(p, why, id, "id", "a string", DATOS_REASON_MISSING_ID,
                     DATOS_REASON_BAD_ID);
    if (rv != APR_SUCCESS) {
        goto leave;
    }
    if (id->len == 0) {
        rv =
            datos_rules_invalid(p, why, DATOS_REASON_BAD_ID, "\"id\" is empty");
        goto leave;
    }
    if (id->len > DATOS_ID_MAX_BYTES) {
        rv = datos_rules_invalid(
            p, why, DATOS_REASON_ID_TOO_LONG,
            "\"id\" is %" APR_SIZE_T_FMT " bytes of UTF-8, more "
            "than %d; it starts %s",
            id->len, DATOS_ID_MAX_BYTES, excerpt(p, id->str, id->len));
        goto leave;
    }
    at = find_control(id->str, id->len, &cp);
    if (at < id->len) {
        rv = datos_rules_invalid(
            p, why, DATOS_REASON_BAD_ID,
            "\"id\" %s holds the control character U+%04X at byte "
            "%" APR_SIZE_T_FMT,
            excerpt(p, id->str, id->len), cp, at);
        goto leave;
    }

    if (c->type == DATOS_VT_STRING) {
        if (c->len > DATOS_CONTENIDO_MAX_BYTES) {
            rv = datos_rules_invalid(p, why, DATOS_REASON_CONTENIDO_TOO_LARGE,
                                     "\"contenido\" is %" APR_SIZE_T_FMT
                                     " bytes of "
                                     "UTF-8, more than %d",
                                     c->len, DATOS_CONTENIDO_MAX_BYTES);
            goto leave;
        }
    }
    else if (c->type != DATOS_VT_ABSENT && c->type != DATOS_VT_NULL) {
        rv = datos_rules_invalid(
            p, why, DATOS_REASON_BAD_CONTENIDO,
            "\"contenido\" must be a string or null, not %s",
            datos_rules_type_name(c->type));
        goto leave;
    }

    rv =
        need_string(p, why, ts, "timestamp", "an RFC 3339 string",
                    DATOS_REASON_MISSING_TIMESTAMP, DATOS_REASON_BAD_TIMESTAMP);
    if (rv != APR_SUCCESS) {
        goto leave;
    }
    if (datos_ts_parse_rfc3339(ts->str, ts->len, &us) != APR_SUCCESS) {
        rv = datos_rules_invalid(
            p, why, DATOS_REASON_BAD_TIMESTAMP,
            "\"timestamp\" %s is not RFC 3339 "
            "(YYYY-MM-DDTHH:MM:SS[.ffffff] and Z or +-hh:mm, at "
            "most 6 fraction digits)",
            excerpt(p, ts->str, ts->len));
        goto leave;
    }
    if (us < 0) {
        rv = datos_rules_invalid(
            p, why, DATOS_REASON_BAD_TIMESTAMP,
            "\"timestamp\" %s is before 1970-01-01T00:00:00Z",
            excerpt(p, ts->str, ts->len));
        goto leave;
    }
    limit = o->now > APR_INT64_MAX - o->max_future_skew
                ? APR_INT64_MAX
                : o->now + o->max_future_skew;
    if (us > limit) {
        char now[DATOS_TS_BUFSIZE];
        if (!datos_ts_format(o->now, now)) {
            strcpy(now, "out of range");
        }
        rv = datos_rules_invalid(
            p, why, DATOS_REASON_FUTURE_TIMESTAMP,
            "\"timestamp\" %s is more than %" APR_INT64_T_FMT
            " s in the future (now is %s)",
            excerpt(p, ts->str, ts->len),
            (apr_int64_t)apr_time_sec(o->max_future_skew), now);
        goto leave;
    }

    if (fd->n_unknown && o->unknown == DATOS_UNKNOWN_REJECT) {
        rv = datos_rules_invalid(
            p, why, DATOS_REASON_UNKNOWN_FIELD,
            "unknown field %s%s; the record has only \"id\", "
            "\"contenido\" and \"timestamp\"",
            excerpt(p, fd->unknown, fd->unknown_len),
            fd->n_unknown > 1
                ? apr_psprintf(p, " and %d more", fd->n_unknown - 1)
                : "");
        goto leave;
    }

    *ts_us = us;
    why->reason = DATOS_REASON_NONE;
    why->detail = NULL;

leave:
    return rv;
}
