/* datos_json.c - pool-owned jansson values and tolerant getters. */
#include <stdlib.h>
#include <string.h>
#include <apr_strings.h>

#include "datos_json.h"

static apr_status_t json_cleanup(void *data)
{
    json_decref((json_t *)data);
    return APR_SUCCESS;
}

json_t *datos_json_bind(apr_pool_t *p, json_t *j)
{
    if (j) {
        apr_pool_cleanup_register(p, j, json_cleanup, apr_pool_cleanup_null);
    }
    return j;
}

apr_status_t datos_json_parse(apr_pool_t *p, const char *buf, apr_size_t len,
                              int strict, json_t **out, datos_err_t *err)
{
    apr_status_t rv = APR_SUCCESS;
    json_error_t jerr;
    json_t *j;
    /* Google strings may carry U+0000 (a record id may), and a body that is
     * valid JSON but not an object is a shape error for the caller to name,
     * not a syntax error. */
    size_t flags = JSON_DECODE_ANY | JSON_ALLOW_NUL;

    if (strict) {
        flags |= JSON_REJECT_DUPLICATES;
    }
    j = json_loadb(buf ? buf : "", buf ? len : 0, flags, &jerr);
    if (!j) {
        rv = datos_err_set(err, p, DATOS_EMALFORMED, 0, NULL,
                           "invalid JSON: %s (line %d, column %d)", jerr.text,
                           jerr.line, jerr.column);
        goto leave;
    }
    *out = datos_json_bind(p, j);

leave:
    return rv;
}

char *datos_json_dump(apr_pool_t *p, const json_t *j, apr_size_t *len)
{
    char *s, *copy;
    apr_size_t n;

    s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    if (!s) {
        return NULL;
    }
    n = strlen(s);
    copy = apr_pstrmemdup(p, s, n);
    free(s);
    if (len) {
        *len = n;
    }
    return copy;
}

json_t *datos_json_obj(const json_t *obj, const char *key)
{
    json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    return json_is_object(v) ? v : NULL;
}

json_t *datos_json_arr(const json_t *obj, const char *key)
{
    json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    return json_is_array(v) ? v : NULL;
}

const char *datos_json_str(const json_t *obj, const char *key)
{
    json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Strict decimal: optional '-', digits only, no blanks, no overflow. */
static apr_status_t int64_from_text(const char *s, apr_size_t len,
                                    apr_int64_t *out)
{
    apr_uint64_t v = 0, limit;
    apr_size_t i = 0;
    int neg = 0;

    if (len > 0 && s[0] == '-') {
        neg = 1;
        i = 1;
    }
    if (i == len) {
        return DATOS_EMALFORMED;
    }
    limit = neg ? (apr_uint64_t)APR_INT64_MAX + 1 : (apr_uint64_t)APR_INT64_MAX;
    for (; i < len; i++) {
        unsigned d;
        if (s[i] < '0' || s[i] > '9') {
            return DATOS_EMALFORMED;
        }
        d = (unsigned)(s[i] - '0');
        if (v > (limit - d) / 10) {
            return DATOS_EMALFORMED;
        }
        v = v * 10 + d;
    }
    if (neg) {
        *out = v == (apr_uint64_t)APR_INT64_MAX + 1 ? APR_INT64_MIN
                                                    : -(apr_int64_t)v;
    }
    else {
        *out = (apr_int64_t)v;
    }
    return APR_SUCCESS;
}

apr_status_t datos_json_int64(const json_t *obj, const char *key,
                              apr_int64_t *out)
{
    json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;

    if (!v) {
        return APR_NOTFOUND;
    }
    if (json_is_integer(v)) {
        *out = (apr_int64_t)json_integer_value(v);
        return APR_SUCCESS;
    }
    if (json_is_string(v)) {
        return int64_from_text(json_string_value(v), json_string_length(v),
                               out);
    }
    return DATOS_EMALFORMED;
}

int datos_json_true(const json_t *obj, const char *key)
{
    json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    return json_is_true(v);
}
