/* dt_jansson.c - the record rules through jansson, the reference the
 * validator's scanner is compared with. Only the structure pass is its
 * own: the field rules and their details are datos_rules.c's, as the
 * scanner's are. */
#include <string.h>
#include <jansson.h>

#include "datos_json.h"
#include "datos_utf8.h"
#include "dt_jansson.h"

static int jtype(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return DATOS_VT_OBJECT;
    case JSON_ARRAY: return DATOS_VT_ARRAY;
    case JSON_STRING: return DATOS_VT_STRING;
    case JSON_INTEGER:
    case JSON_REAL: return DATOS_VT_NUMBER;
    case JSON_TRUE:
    case JSON_FALSE: return DATOS_VT_BOOL;
    default: return DATOS_VT_NULL;
    }
}

apr_status_t dt_record_validate_jansson(apr_pool_t *p, const char *data,
                                        apr_size_t len,
                                        const datos_record_opts_t *opts,
                                        datos_row_t *row, datos_invalid_t *why)
{
    const size_t flags = JSON_DECODE_ANY | JSON_ALLOW_NUL;
    json_error_t jerr;
    json_t *j, *v;
    const char *k;
    datos_fields_t fd;
    apr_size_t bad;
    apr_status_t rv;

    rv = datos_rules_start(p, data, len, opts, row, why);
    if (rv != APR_SUCCESS) {
        goto leave;
    }
    bad = datos_utf8_check((const unsigned char *)data, len);
    if (bad < len) {
        rv = datos_rules_not_utf8(p, why, data, bad);
        goto leave;
    }
    /* jansson takes a raw NUL right after a top-level number for the end
     * of input ("6\0" parses); JSON allows U+0000 only escaped. */
    if (memchr(data, '\0', len)) {
        rv = datos_rules_invalid(
            p, why, DATOS_REASON_NOT_JSON,
            "the data is not JSON: a raw NUL byte at byte %" APR_SIZE_T_FMT,
            (apr_size_t)((const char *)memchr(data, '\0', len) - data));
        goto leave;
    }
    j = json_loadb(data, len, flags | JSON_REJECT_DUPLICATES, &jerr);
    if (!j && json_error_code(&jerr) == json_error_duplicate_key) {
        /* jansson stops at the first duplicate; what comes after it decides
         * between not_json, not_object and duplicate_key. */
        j = json_loadb(data, len, flags, &jerr);
        if (j) {
            int obj = json_is_object(j);
            json_decref(j);
            rv = datos_rules_invalid(p, why,
                                     obj ? DATOS_REASON_DUPLICATE_KEY
                                         : DATOS_REASON_NOT_OBJECT,
                                     obj ? "a key appears twice in one object"
                                         : "the data is not a JSON object");
            goto leave;
        }
    }
    if (!j) {
        /* jansson quotes the input near the error and may cut it inside
         * a character: its text is made clean like any excerpt. */
        rv = datos_rules_invalid(
            p, why, DATOS_REASON_NOT_JSON,
            "the data is not JSON at byte %d: jansson says %s", jerr.position,
            datos_rules_excerpt(p, jerr.text, strlen(jerr.text), 200));
        goto leave;
    }
    datos_json_bind(p, j);
    if (!json_is_object(j)) {
        rv = datos_rules_not_object(p, why, jtype(j));
        goto leave;
    }
    memset(&fd, 0, sizeof(fd));
    json_object_foreach(j, k, v)
    {
        apr_size_t klen = strlen(k);
        int f = datos_rules_field_of(k, klen);

        if (f == DATOS_FIELD_UNKNOWN) {
            if (!fd.n_unknown++) {
                fd.unknown = k;
                fd.unknown_len = klen;
            }
            continue;
        }
        fd.f[f].type = jtype(v);
        if (json_is_string(v)) {
            fd.f[f].str = json_string_value(v);
            fd.f[f].len = json_string_length(v);
        }
    }
    rv = datos_rules_check_fields(p, opts, &fd, &row->timestamp_us, why);
    if (rv != APR_SUCCESS) {
        goto leave;
    }
    row->id = fd.f[DATOS_FIELD_ID].str;
    row->id_len = fd.f[DATOS_FIELD_ID].len;
    row->contenido = fd.f[DATOS_FIELD_CONTENIDO].type == DATOS_VT_STRING
                         ? fd.f[DATOS_FIELD_CONTENIDO].str
                         : NULL;
    row->contenido_len = row->contenido ? fd.f[DATOS_FIELD_CONTENIDO].len : 0;

leave:
    return rv;
}
