/* fuzz_record.c - the record validator against its jansson reference.
 *
 * Both must agree on the reason and, for a valid record, on the extracted
 * values, under both unknown-field policies; every detail must be a short
 * clean line; whatever validates must encode to an NDJSON line that jansson
 * reads back to the same values. The one tolerated disagreement is
 * documented in dt_jansson.h: jansson refuses a key holding U+0000 and
 * numbers beyond its range, which RFC 8259 allows. */
#include <string.h>
#include <jansson.h>

#include "fuzz_common.h"
#include "datos_ndjson.h"
#include "datos_validate.h"
#include "dt_jansson.h"
#include "datos_time.h"
#include "datos_utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW APR_INT64_C(1705240800000000)

static void check_detail(const datos_invalid_t *why)
{
    apr_size_t n, i;

    FUZZ_CHECK(why->reason > DATOS_REASON_NONE
               && why->reason < DATOS_REASON_BIGQUERY_REJECTED);
    FUZZ_CHECK(why->detail != NULL);
    n = strlen(why->detail);
    FUZZ_CHECK(n > 0 && n <= DATOS_DETAIL_MAX_BYTES);
    FUZZ_CHECK(datos_utf8_check((const unsigned char *)why->detail, n) == n);
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)why->detail[i];
        FUZZ_CHECK(c >= 0x20 && c != 0x7f);
    }
}

/* jansson's own limits (not RFC 8259's): skip the comparison there. */
static int beyond_jansson(const uint8_t *data, size_t size)
{
    json_error_t jerr;
    json_t *j = json_loadb((const char *)data, size,
                           JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    int code;

    if (j) {
        json_decref(j);
        return 0;
    }
    code = json_error_code(&jerr);
    return code == json_error_null_byte_in_key
           || code == json_error_numeric_overflow;
}

static void check_row(const datos_row_t *r, const datos_record_opts_t *o)
{
    apr_size_t i;

    FUZZ_CHECK(r->id && r->id_len >= 1 && r->id_len <= DATOS_ID_MAX_BYTES);
    FUZZ_CHECK(datos_utf8_check((const unsigned char *)r->id, r->id_len)
               == r->id_len);
    for (i = 0; i < r->id_len; i++) {
        unsigned char c = (unsigned char)r->id[i];
        FUZZ_CHECK(c >= 0x20 && c != 0x7f);
        FUZZ_CHECK(!(c == 0xC2 && i + 1 < r->id_len
                     && (unsigned char)r->id[i + 1] < 0xA0));
    }
    if (r->contenido) {
        FUZZ_CHECK(r->contenido_len <= DATOS_CONTENIDO_MAX_BYTES);
        FUZZ_CHECK(datos_utf8_check((const unsigned char *)r->contenido,
                                    r->contenido_len)
                   == r->contenido_len);
    }
    FUZZ_CHECK(r->timestamp_us >= 0
               && r->timestamp_us <= o->now + o->max_future_skew);
}

static int same_row(const datos_row_t *a, const datos_row_t *b)
{
    return a->id_len == b->id_len && !memcmp(a->id, b->id, a->id_len)
           && (a->contenido == NULL) == (b->contenido == NULL)
           && (!a->contenido
               || (a->contenido_len == b->contenido_len
                   && !memcmp(a->contenido, b->contenido, a->contenido_len)))
           && a->timestamp_us == b->timestamp_us;
}

/* The line of r (or, when rec is given, of the checked record: its JSON
 * text copied as written) reads back as r's values. */
static void check_ndjson(apr_pool_t *p, const datos_row_t *r,
                         const datos_record_t *rec)
{
    datos_ndjson_t *nd;
    const char *line;
    apr_size_t len;
    json_error_t jerr;
    json_t *j, *v;
    apr_int64_t us = -1;

    FUZZ_CHECK(
        datos_ndjson_create(
            p, DATOS_NDJSON_MESSAGE_ID | DATOS_NDJSON_PUBLISH_TIME, 0, &nd)
        == APR_SUCCESS);
    if (rec) {
        FUZZ_CHECK(
            datos_ndjson_append_record(nd, rec, "11473219786351020", 17, NOW)
            == APR_SUCCESS);
    }
    else {
        FUZZ_CHECK(datos_ndjson_append(nd, r, "11473219786351020", 17, NOW)
                   == APR_SUCCESS);
    }
    line = datos_ndjson_data(nd, &len);
    FUZZ_CHECK(len > 0 && line[len - 1] == '\n');
    FUZZ_CHECK(memchr(line, '\n', len) == line + len - 1);
    j = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    FUZZ_CHECK(j != NULL);
    v = json_object_get(j, "id");
    FUZZ_CHECK(json_is_string(v) && json_string_length(v) == r->id_len
               && !memcmp(json_string_value(v), r->id, r->id_len));
    v = json_object_get(j, "contenido");
    if (r->contenido) {
        FUZZ_CHECK(
            json_is_string(v) && json_string_length(v) == r->contenido_len
            && !memcmp(json_string_value(v), r->contenido, r->contenido_len));
    }
    else {
        FUZZ_CHECK(json_is_null(v));
    }
    v = json_object_get(j, "timestamp");
    FUZZ_CHECK(json_is_string(v));
    FUZZ_CHECK(
        datos_ts_parse_rfc3339(json_string_value(v), json_string_length(v), &us)
        == APR_SUCCESS);
    FUZZ_CHECK(us == r->timestamp_us);
    FUZZ_CHECK(json_object_size(j) == 5);
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    int skip_oracle, policy;
    apr_pool_t *p;

    fuzz_apr_init();
    if (apr_pool_create(&p, NULL) != APR_SUCCESS) {
        abort();
    }
    skip_oracle = beyond_jansson(data, size);
    for (policy = 0; policy < 2; policy++) {
        datos_record_opts_t o;
        datos_row_t row, ref;
        datos_invalid_t why, rwhy;
        apr_status_t rv, rrv;

        datos_record_opts_init(&o, NOW);
        o.unknown = policy ? DATOS_UNKNOWN_DROP : DATOS_UNKNOWN_REJECT;
        memset(&row, 0, sizeof(row));
        memset(&ref, 0, sizeof(ref));
        rv = datos_record_validate(p, text, size, &o, &row, &why);
        FUZZ_CHECK(rv == APR_SUCCESS || rv == DATOS_EMALFORMED);
        if (rv == APR_SUCCESS) {
            datos_record_t rec;
            datos_invalid_t again;

            FUZZ_CHECK(why.reason == DATOS_REASON_NONE);
            check_row(&row, &o);
            check_ndjson(p, &row, NULL);
            FUZZ_CHECK(datos_record_check(p, text, size, &o, &rec, &again)
                       == APR_SUCCESS);
            FUZZ_CHECK(rec.contenido_len == row.contenido_len
                       && (rec.contenido_json == NULL)
                              == (row.contenido == NULL));
            check_ndjson(p, &row, &rec);
        }
        else {
            check_detail(&why);
        }
        rrv = dt_record_validate_jansson(p, text, size, &o, &ref, &rwhy);
        FUZZ_CHECK(rrv == APR_SUCCESS || rrv == DATOS_EMALFORMED);
        if (rrv != APR_SUCCESS) {
            check_detail(&rwhy);
        }
        if (skip_oracle && rwhy.reason == DATOS_REASON_NOT_JSON) {
            continue;
        }
        FUZZ_CHECK(rv == rrv);
        FUZZ_CHECK(why.reason == rwhy.reason);
        if (rv == APR_SUCCESS) {
            FUZZ_CHECK(same_row(&row, &ref));
        }
    }
    apr_pool_destroy(p);
    return 0;
}
