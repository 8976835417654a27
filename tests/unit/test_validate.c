/* test_validate.c - the record rules of docs/design.md section 3, both edges of
 * every bound, the order of reasons, and agreement between the scanner and
 * the jansson reference on every case. */
#include <stdio.h>
#include <string.h>

#include "dt_support.h"
#include "datos_validate.h"
#include "dt_jansson.h"
#include "datos_utf8.h"

/* 2024-01-14T14:00:00Z */
#define NOW   APR_INT64_C(1705240800000000)
#define TS_OK "\"timestamp\":\"2024-01-14T14:00:00Z\""

/* A detail is one clean line a user can read: bounded, UTF-8, no controls. */
static void check_detail(const char *d)
{
    apr_size_t i, n;

    assert_non_null(d);
    n = strlen(d);
    assert_true(n > 0 && n <= DATOS_DETAIL_MAX_BYTES);
    assert_int_equal(datos_utf8_check((const unsigned char *)d, n), n);
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)d[i];
        assert_false(c < 0x20 || c == 0x7f);
        assert_false(c == 0xC2 && i + 1 < n && (unsigned char)d[i + 1] < 0xA0);
    }
}

typedef apr_status_t (*validate_fn)(apr_pool_t *, const char *, apr_size_t,
                                    const datos_record_opts_t *, datos_row_t *,
                                    datos_invalid_t *);

static const validate_fn impls[2] = {datos_record_validate,
                                     dt_record_validate_jansson};
static const char *const impl_names[2] = {"scanner", "jansson"};

/* Both implementations give `want` for these bytes. */
static void reason_n(apr_pool_t *p, const char *data, apr_size_t len,
                     const datos_record_opts_t *o, datos_reason_t want)
{
    int i;

    for (i = 0; i < 2; i++) {
        datos_row_t row;
        datos_invalid_t why;
        apr_status_t rv;

        memset(&row, 0, sizeof(row));
        rv = impls[i](p, data, len, o, &row, &why);
        if (want == DATOS_REASON_NONE) {
            if (rv != APR_SUCCESS) {
                fail_msg("%s refused %.*s: %s (%s)", impl_names[i], (int)len,
                         data, datos_reason_name(why.reason), why.detail);
            }
            assert_int_equal(why.reason, DATOS_REASON_NONE);
            continue;
        }
        if (rv != DATOS_EMALFORMED || why.reason != want) {
            fail_msg("%s on %.*s: rv %d, reason %s (%s), want %s",
                     impl_names[i], (int)(len > 200 ? 200 : len), data, rv,
                     datos_reason_name(why.reason),
                     why.detail ? why.detail : "-", datos_reason_name(want));
        }
        check_detail(why.detail);
    }
}

static void reason_o(apr_pool_t *p, const char *json,
                     const datos_record_opts_t *o, datos_reason_t want)
{
    reason_n(p, json, strlen(json), o, want);
}

static datos_record_opts_t opts_now(void)
{
    datos_record_opts_t o;
    datos_record_opts_init(&o, NOW);
    return o;
}

static void reason(apr_pool_t *p, const char *json, datos_reason_t want)
{
    datos_record_opts_t o = opts_now();
    reason_o(p, json, &o, want);
}

/* The scanner's row for a valid record, compared with jansson's. */
static datos_row_t valid_row(apr_pool_t *p, const char *data, apr_size_t len,
                             const datos_record_opts_t *o)
{
    datos_row_t row, ref;
    datos_invalid_t why;

    if (datos_record_validate(p, data, len, o, &row, &why) != APR_SUCCESS) {
        fail_msg("refused %.*s: %s (%s)", (int)len, data,
                 datos_reason_name(why.reason), why.detail);
    }
    assert_int_equal(dt_record_validate_jansson(p, data, len, o, &ref, &why),
                     APR_SUCCESS);
    assert_int_equal(row.id_len, ref.id_len);
    assert_memory_equal(row.id, ref.id, row.id_len);
    assert_int_equal(row.contenido == NULL, ref.contenido == NULL);
    if (row.contenido) {
        assert_int_equal(row.contenido_len, ref.contenido_len);
        assert_memory_equal(row.contenido, ref.contenido, row.contenido_len);
    }
    assert_int_equal(row.timestamp_us, ref.timestamp_us);
    return row;
}

static datos_row_t valid(apr_pool_t *p, const char *json)
{
    datos_record_opts_t o = opts_now();
    return valid_row(p, json, strlen(json), &o);
}

/* ------------------------------------------------------------------ valid */

static void accepts_the_design_example(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    static const char doc[] =
        "{\"id\":\"789\",\"contenido\":\"Prueba autom\xc3\xa1tica\","
        "\"timestamp\":\"2024-01-14T14:00:00+00:00\"}";
    datos_row_t row = valid(p, doc);

    assert_int_equal(row.id_len, 3);
    assert_memory_equal(row.id, "789", 3);
    /* no escapes: the row points into the message, nothing was copied */
    assert_ptr_equal(row.id, doc + 7);
    assert_int_equal(row.contenido_len, strlen("Prueba autom\xc3\xa1tica"));
    assert_memory_equal(row.contenido, "Prueba autom\xc3\xa1tica",
                        row.contenido_len);
    assert_int_equal(row.timestamp_us, NOW);
}

static void whitespace_around_and_inside(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_row_t row = valid(p, " \r\n\t{ \"id\" : \"a\" ,\n\"timestamp\"\t:"
                               "\"2024-01-14T14:00:00Z\" }\n\t \r");

    assert_memory_equal(row.id, "a", 1);
    assert_null(row.contenido);
}

static void contenido_absent_null_or_empty(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_row_t row;

    row = valid(p, "{\"id\":\"a\"," TS_OK "}");
    assert_null(row.contenido);
    row = valid(p, "{\"contenido\":null,\"id\":\"a\"," TS_OK "}");
    assert_null(row.contenido);
    row = valid(p, "{\"id\":\"a\",\"contenido\":\"\"," TS_OK "}");
    assert_non_null(row.contenido);
    assert_int_equal(row.contenido_len, 0);
}

static void escapes_are_decoded(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    static const char want_c[] =
        "q\"b\\s/\b\f\n\r\t\0\x1f\xc3\xa9\xf0\x9f\x98\x80\xe2\x80\xa8";
    datos_row_t row = valid(
        p, "{\"id\":\"a\\\"b\\\\c\\/d\\u00e9\\ud83d\\ude00\\u20AC\","
           "\"contenido\":\"q\\\"b\\\\s\\/\\b\\f\\n\\r\\t\\u0000\\u001F\\u00E9"
           "\\uD83D\\uDE00\\u2028\","
           "\"timestamp\":\"2024-01-14T14:00:00\\u005a\"}");

    assert_int_equal(row.id_len,
                     strlen("a\"b\\c/d\xc3\xa9\xf0\x9f\x98\x80\xe2\x82\xac"));
    assert_memory_equal(row.id, "a\"b\\c/d\xc3\xa9\xf0\x9f\x98\x80\xe2\x82\xac",
                        row.id_len);
    assert_int_equal(row.contenido_len, sizeof(want_c) - 1);
    assert_memory_equal(row.contenido, want_c, sizeof(want_c) - 1);
    assert_int_equal(row.timestamp_us, NOW);
}

/* The checked record keeps the JSON text as written, for the NDJSON copy,
 * and the unescaped lengths the rules count. */
static void check_keeps_json_text(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    static const char doc[] =
        "{\"id\":\"a\\u00e9\",\"contenido\":\"l\\n\\\"q\\\" \xc3\xa9\"," TS_OK
        "}";
    datos_record_opts_t o = opts_now();
    datos_record_t rec;
    datos_invalid_t why;
    datos_row_t row;

    assert_int_equal(datos_record_check(p, doc, strlen(doc), &o, &rec, &why),
                     APR_SUCCESS);
    assert_ptr_equal(rec.id_json, doc + 7);
    assert_int_equal(rec.id_json_len, 7);
    assert_int_equal(rec.id_len, 3);
    assert_memory_equal(rec.id, "a\xc3\xa9", 3);
    assert_ptr_equal(rec.contenido_json, strstr(doc, "l\\n"));
    assert_int_equal(rec.contenido_json_len, strlen("l\\n\\\"q\\\" \xc3\xa9"));
    assert_int_equal(rec.contenido_len, strlen("l\n\"q\" \xc3\xa9"));
    assert_int_equal(rec.timestamp_us, NOW);
    datos_record_row(p, &rec, &row);
    assert_int_equal(row.contenido_len, rec.contenido_len);
    assert_memory_equal(row.contenido, "l\n\"q\" \xc3\xa9", row.contenido_len);
    assert_int_equal(row.id_len, 3);

    /* without escapes nothing is copied */
    assert_int_equal(datos_record_check(
                         p, "{\"id\":\"z\",\"contenido\":\"c\"," TS_OK "}",
                         strlen("{\"id\":\"z\",\"contenido\":\"c\"," TS_OK "}"),
                         &o, &rec, &why),
                     APR_SUCCESS);
    assert_ptr_equal(rec.id, rec.id_json);
    datos_record_row(p, &rec, &row);
    assert_ptr_equal(row.contenido, rec.contenido_json);
    /* null contenido */
    assert_int_equal(datos_record_check(
                         p, "{\"id\":\"z\",\"contenido\":null," TS_OK "}",
                         strlen("{\"id\":\"z\",\"contenido\":null," TS_OK "}"),
                         &o, &rec, &why),
                     APR_SUCCESS);
    assert_null(rec.contenido_json);
    datos_record_row(p, &rec, &row);
    assert_null(row.contenido);
}

static void record_fields_in_any_order(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_row_t row = valid(p, "{" TS_OK ",\"contenido\":\"c\",\"id\":\"z\"}");

    assert_memory_equal(row.id, "z", 1);
    assert_memory_equal(row.contenido, "c", 1);
}

/* ------------------------------------------------------------------ structure */

static void empty_data(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_record_opts_t o = opts_now();

    reason_n(p, "", 0, &o, DATOS_REASON_EMPTY_DATA);
    reason_n(p, NULL, 0, &o, DATOS_REASON_EMPTY_DATA);
    reason(p, " ", DATOS_REASON_NOT_JSON);
    reason(p, "\n\r\t ", DATOS_REASON_NOT_JSON);
}

static void not_utf8_anywhere_wins(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    static const char *const docs[] = {
        "{\"id\":\"\xff\"," TS_OK "}",
        "{\"id\":\"a\"," TS_OK ",\"contenido\":\"ok \xc3\"}", /* truncated */
        "{\"id\":\"\xc0\xaf\"," TS_OK "}",                    /* overlong */
        "{\"id\":\"\xe0\x80\xaf\"," TS_OK "}",
        "{\"id\":\"\xed\xa0\x80\"," TS_OK "}",     /* encoded surrogate */
        "{\"id\":\"\xf4\x90\x80\x80\"," TS_OK "}", /* above U+10FFFF */
        "{\"id\":\"\xf0\x80\x80\xaf\"," TS_OK "}",
        "{\"x\":{\"deep\":[\"\x80\"]},\"id\":\"a\"," TS_OK "}",
        "{\"\xfe\":1}",                 /* in a key */
        "{\"id\":\"a\"," TS_OK "}\xc3", /* after the end */
        "{,\xff}",                      /* syntax error first */
        "\xff",
        "[1,2,\xe2\x82]",
        "{\"id\":\"a\"," TS_OK ",\"id\":\"\xa0\"}", /* before a duplicate */
    };
    size_t i;

    for (i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        reason(p, docs[i], DATOS_REASON_NOT_UTF8);
    }
}

static void not_json(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    static const char *const docs[] = {
        "{",
        "}",
        "{\"id\":}",
        "{\"id\" \"a\"}",
        "{\"id\":\"a\",}",
        "{\"id\":\"a\"",
        "{}x",
        "{} {}",
        "{\"id\":'a'}",
        "{id:\"a\"}",
        "{\"a\":1 // c\n}",
        "{\"id\":\"a\x01\"}",
        "{\"id\":\"tab\tinside\"}",
        "{\"id\":\"a\nb\"}",
        "{\"id\":\"\\x41\"}",
        "{\"id\":\"\\u00G1\"}",
        "{\"id\":\"\\u12\"}",
        "{\"id\":\"\\",
        "{\"id\":\"abc",
        /* lone surrogates: not Unicode text */
        "{\"id\":\"\\ud800\"}",
        "{\"id\":\"\\udc00\"}",
        "{\"id\":\"\\ud800\\u0041\"}",
        "{\"id\":\"\\ud800\\ud800\"}",
        "{\"id\":\"\\uDBFF\\n\"}",
        "{\"id\":\"x\\ud83d\"}",
        "\xef\xbb\xbf{}", /* byte-order mark */
        "{\"a\":01}",
        "{\"a\":1.}",
        "{\"a\":-}",
        "{\"a\":.5}",
        "{\"a\":1e}",
        "{\"a\":+1}",
        "{\"a\":NaN}",
        "{\"a\":Infinity}",
        "{\"a\":0x1}",
        "{\"a\":tru}",
        "{\"a\":nul}",
        "{\"a\":truex}",
        "{\"a\":[1 2]}",
        "{\"a\":[1,]}",
        "{\"a\":[}",
        "{\"a\":{\"b\":1}",
        "{\"a\":[[]]]}",
        "{\"a\"::1}",
        "{\"a\":1,,\"b\":2}",
        "{,}",
        "{\"a\":1}}",
        "\"",
        "-0.e1",
        /* a duplicate first, a syntax error later: the syntax wins */
        "{\"id\":\"a\",\"id\":\"b\",}",
    };
    size_t i;

    datos_record_opts_t o = opts_now();

    for (i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        reason(p, docs[i], DATOS_REASON_NOT_JSON);
    }
    /* a raw NUL is neither whitespace nor allowed in a string (jansson
     * alone would take "6\0" for the number 6) */
    reason_n(p, "6\0", 2, &o, DATOS_REASON_NOT_JSON);
    reason_n(p, "{\"id\":\"a\"," TS_OK "}\0",
             strlen("{\"id\":\"a\"," TS_OK "}") + 1, &o, DATOS_REASON_NOT_JSON);
    reason_n(p, "{\"id\":\"a\0\"," TS_OK "}",
             strlen("{\"id\":\"a") + 1 + strlen("\"," TS_OK "}"), &o,
             DATOS_REASON_NOT_JSON);
}

static const char *nested(apr_pool_t *p, int arrays)
{
    char *s = apr_palloc(p, (apr_size_t)arrays * 2 + 64), *o = s;
    int i;

    o += sprintf(o, "{\"id\":\"a\"," TS_OK ",\"x\":");
    for (i = 0; i < arrays; i++) {
        *o++ = '[';
    }
    for (i = 0; i < arrays; i++) {
        *o++ = ']';
    }
    strcpy(o, "}");
    return s;
}

static void nesting_limit(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_record_opts_t o = opts_now();

    o.unknown = DATOS_UNKNOWN_DROP;
    /* the root object is level 1 */
    reason_o(p, nested(p, DATOS_RECORD_MAX_DEPTH - 1), &o, DATOS_REASON_NONE);
    reason_o(p, nested(p, DATOS_RECORD_MAX_DEPTH), &o, DATOS_REASON_NOT_JSON);
    reason_o(p, nested(p, 100000), &o, DATOS_REASON_NOT_JSON);
}

static void not_object(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    static const char *const docs[] = {
        "[]",
        "[{\"id\":\"a\"}]",
        "\"{}\"",
        "1",
        "-2.5e3",
        "null",
        "true",
        "false",
        " [ ] ",
        /* not an object comes before duplicate keys */
        "[{\"a\":1,\"a\":2}]",
    };
    size_t i;

    for (i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        reason(p, docs[i], DATOS_REASON_NOT_OBJECT);
    }
}

static void duplicate_keys_anywhere(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_record_opts_t drop = opts_now();
    static const char *const docs[] = {
        "{\"id\":\"a\",\"id\":\"a\"," TS_OK "}",
        "{\"id\":\"a\",\"\\u0069d\":\"b\"," TS_OK
        "}", /* equal once unescaped */
        "{\"id\":\"a\"," TS_OK ",\"x\":{\"k\":1,\"k\":2}}",
        "{\"id\":\"a\"," TS_OK ",\"x\":[0,{\"y\":{\"k\":1,\"j\":[],\"k\":2}}]}",
        "{\"id\":\"a\"," TS_OK ",\"x\":{\"\":1,\"\":2}}",
        /* checked before the fields: */
        "{\"x\":1,\"x\":2}",
        "{\"id\":5,\"id\":5}",
    };
    size_t i;

    drop.unknown = DATOS_UNKNOWN_DROP;
    for (i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        reason(p, docs[i], DATOS_REASON_DUPLICATE_KEY);
        reason_o(p, docs[i], &drop, DATOS_REASON_DUPLICATE_KEY);
    }
    /* same key in sibling and nested objects is fine */
    reason_o(p,
             "{\"id\":\"a\"," TS_OK ",\"x\":{\"id\":1,\"k\":{\"k\":{\"k\":1}}},"
             "\"y\":[{\"k\":1},{\"k\":2}]}",
             &drop, DATOS_REASON_NONE);
    /* keys differing only by case or by escaping to different text */
    reason_o(p,
             "{\"id\":\"a\"," TS_OK
             ",\"x\":{\"k\":1,\"K\":2,\"\\u006b\\u006b\":3}}",
             &drop, DATOS_REASON_NONE);
}

/* Objects above the pairwise-compare size take the sorting path. */
static void duplicate_in_a_large_object(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_record_opts_t drop = opts_now();
    char *doc = apr_palloc(p, 64 * 1024), *o;
    int i;

    drop.unknown = DATOS_UNKNOWN_DROP;
    o = doc + sprintf(doc, "{\"id\":\"a\"," TS_OK ",\"x\":{");
    for (i = 0; i < 1000; i++) {
        o += sprintf(o, "%s\"k%d\":%d", i ? "," : "", i, i);
    }
    strcpy(o, "}}");
    reason_o(p, doc, &drop, DATOS_REASON_NONE);
    /* the same object with k500 repeated at the end */
    strcpy(o, ",\"k500\":0}}");
    reason_o(p, doc, &drop, DATOS_REASON_DUPLICATE_KEY);
    /* and a large root object: every key unknown */
    o = doc + sprintf(doc, "{\"id\":\"a\"," TS_OK);
    for (i = 0; i < 1000; i++) {
        o += sprintf(o, ",\"u%d\":null", i);
    }
    strcpy(o, "}");
    reason_o(p, doc, &drop, DATOS_REASON_NONE);
    reason(p, doc, DATOS_REASON_UNKNOWN_FIELD);
    strcpy(o, ",\"timestamp\":\"2024-01-14T14:00:00Z\"}");
    reason_o(p, doc, &drop, DATOS_REASON_DUPLICATE_KEY);
}

/* ------------------------------------------------------------------ id */

static const char *with_id(apr_pool_t *p, const char *id_json)
{
    return apr_psprintf(p, "{\"id\":%s," TS_OK "}", id_json);
}

static const char *repeat(apr_pool_t *p, const char *unit, int n)
{
    apr_size_t k = strlen(unit);
    char *s = apr_palloc(p, k * (apr_size_t)n + 1);
    int i;

    for (i = 0; i < n; i++) {
        memcpy(s + k * (apr_size_t)i, unit, k);
    }
    s[k * (apr_size_t)n] = '\0';
    return s;
}

static void id_rules(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_row_t row;

    reason(p, "{" TS_OK "}", DATOS_REASON_MISSING_ID);
    reason(p, "{\"ID\":\"a\"," TS_OK "}", DATOS_REASON_MISSING_ID);
    reason(p, with_id(p, "789"), DATOS_REASON_BAD_ID);
    reason(p, with_id(p, "7.5e1"), DATOS_REASON_BAD_ID);
    reason(p, with_id(p, "null"), DATOS_REASON_BAD_ID);
    reason(p, with_id(p, "true"), DATOS_REASON_BAD_ID);
    reason(p, with_id(p, "{}"), DATOS_REASON_BAD_ID);
    reason(p, with_id(p, "[\"a\"]"), DATOS_REASON_BAD_ID);
    reason(p, with_id(p, "\"\""), DATOS_REASON_BAD_ID);

    /* 1 and 256 bytes are valid; 257 is too long */
    row = valid(p, with_id(p, "\"x\""));
    assert_int_equal(row.id_len, 1);
    row = valid(
        p, with_id(p, apr_pstrcat(p, "\"", repeat(p, "a", 256), "\"", NULL)));
    assert_int_equal(row.id_len, 256);
    reason(p, with_id(p, apr_pstrcat(p, "\"", repeat(p, "a", 257), "\"", NULL)),
           DATOS_REASON_ID_TOO_LONG);
    /* bytes of UTF-8, not characters and not escaped text */
    row = valid(p, with_id(p, apr_pstrcat(p, "\"", repeat(p, "\xc3\xa9", 128),
                                          "\"", NULL)));
    assert_int_equal(row.id_len, 256);
    reason(p,
           with_id(p, apr_pstrcat(p, "\"", repeat(p, "\xc3\xa9", 128), "a\"",
                                  NULL)),
           DATOS_REASON_ID_TOO_LONG);
    row = valid(p, with_id(p, apr_pstrcat(p, "\"", repeat(p, "\\u00e9", 128),
                                          "\"", NULL)));
    assert_int_equal(row.id_len, 256);
    reason(p,
           with_id(p, apr_pstrcat(p, "\"", repeat(p, "\\u00e9", 128), "\\/\"",
                                  NULL)),
           DATOS_REASON_ID_TOO_LONG);
    row = valid(
        p, with_id(p, apr_pstrcat(p, "\"", repeat(p, "\xf0\x9f\x98\x80", 64),
                                  "\"", NULL)));
    assert_int_equal(row.id_len, 256);
    /* too long is checked before control characters */
    reason(p,
           with_id(
               p, apr_pstrcat(p, "\"\\u0000", repeat(p, "a", 256), "\"", NULL)),
           DATOS_REASON_ID_TOO_LONG);
}

static void id_control_characters(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    static const char *const bad[] = {
        "\"\\u0000\"", "\"a\\u0000b\"", "\"\\n\"",     "\"a\\tb\"",
        "\"\\r\"",     "\"\\b\"",       "\"\\f\"",     "\"\\u001f\"",
        "\"\\u001F\"", "\"\x7f\"",      "\"\\u007f\"", "\"\xc2\x80\"",
        "\"\\u0080\"", "\"x\xc2\x9f\"", "\"\\u009F\"",
    };
    static const char *const fine[] = {
        "\" \"",
        "\"~\"",
        "\"\xc2\xa0\"",
        "\"\\u00a0\"",
        "\"\xe2\x80\xa8\"",
        "\"\\u2029\"",
        "\"\xef\xbf\xbf\"",
        "\"\xf4\x8f\xbf\xbf\"",
        "\"a/b\\\\c\\\"d\"",
    };
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        reason(p, with_id(p, bad[i]), DATOS_REASON_BAD_ID);
    }
    for (i = 0; i < sizeof(fine) / sizeof(fine[0]); i++) {
        valid(p, with_id(p, fine[i]));
    }
}

/* ------------------------------------------------------------------ contenido */

static void contenido_rules(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    static const char *const bad[] = {"1",  "0.5", "true",    "false",
                                      "{}", "[]",  "[\"a\"]", "{\"a\":\"b\"}"};
    char *doc;
    apr_size_t head, n;
    datos_row_t row;
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        reason(p,
               apr_psprintf(p, "{\"id\":\"a\",\"contenido\":%s," TS_OK "}",
                            bad[i]),
               DATOS_REASON_BAD_CONTENIDO);
    }
    /* exactly 1 MiB, then one byte more */
    n = DATOS_CONTENIDO_MAX_BYTES;
    doc = apr_palloc(p, n + 128);
    head = (apr_size_t)sprintf(doc, "{\"id\":\"a\",\"contenido\":\"");
    memset(doc + head, 'c', n);
    strcpy(doc + head + n, "\"," TS_OK "}");
    row = valid(p, doc);
    assert_int_equal(row.contenido_len, n);
    memset(doc + head, 'c', n + 1);
    strcpy(doc + head + n + 1, "\"," TS_OK "}");
    reason(p, doc, DATOS_REASON_CONTENIDO_TOO_LARGE);

    /* the limit is on the unescaped text: 2 MiB of "\n" escapes is 1 MiB */
    doc = apr_pstrcat(p, "{\"id\":\"a\",\"contenido\":\"",
                      repeat(p, "\\n", DATOS_CONTENIDO_MAX_BYTES),
                      "\"," TS_OK "}", NULL);
    row = valid(p, doc);
    assert_int_equal(row.contenido_len, DATOS_CONTENIDO_MAX_BYTES);
    assert_int_equal(row.contenido[0], '\n');
    doc = apr_pstrcat(p, "{\"id\":\"a\",\"contenido\":\"",
                      repeat(p, "\\u00e9", DATOS_CONTENIDO_MAX_BYTES / 2),
                      "!\"," TS_OK "}", NULL);
    reason(p, doc, DATOS_REASON_CONTENIDO_TOO_LARGE);
}

/* ------------------------------------------------------------------ timestamp */

static void ts_is(apr_pool_t *p, const char *ts, apr_int64_t want)
{
    datos_row_t row =
        valid(p, apr_psprintf(p, "{\"id\":\"a\",\"timestamp\":\"%s\"}", ts));

    if (row.timestamp_us != want) {
        fail_msg("%s: got %lld, want %lld", ts, (long long)row.timestamp_us,
                 (long long)want);
    }
}

static void ts_bad(apr_pool_t *p, const char *ts_json, datos_reason_t want)
{
    reason(p, apr_psprintf(p, "{\"id\":\"a\",\"timestamp\":%s}", ts_json),
           want);
}

static void timestamp_forms(void **state)
{
    apr_pool_t *p = DT_POOL(state);

    ts_is(p, "2024-01-14T14:00:00Z", NOW);
    ts_is(p, "2024-01-14t14:00:00z", NOW); /* RFC 3339 5.6 note */
    ts_is(p, "2024-01-14T14:00:00.1Z", NOW + 100000);
    ts_is(p, "2024-01-14T14:00:00.123456Z", NOW + 123456); /* 6 digits */
    ts_is(p, "2024-01-14T14:00:00.000001+00:00", NOW + 1);
    ts_is(p, "2024-01-14T14:00:00-00:00", NOW); /* UTC, offset unknown */
    ts_is(p, "2024-01-15T13:59:00+23:59", NOW);
    ts_is(p, "2024-01-13T14:01:00-23:59", NOW);
    ts_is(p, "2024-01-14T11:00:00-03:00", NOW);
    ts_is(p, "2024-01-14T17:00:00+03:00", NOW);
    ts_is(p, "2024-01-14T08:00:00-03:00",
          NOW - APR_INT64_C(3) * 3600 * 1000000);
    ts_is(p, "2020-02-29T00:00:00Z", APR_INT64_C(1582934400000000));

    ts_bad(p, "\"2024-01-14T14:00:00.1234567Z\"",
           DATOS_REASON_BAD_TIMESTAMP); /* 7 */
    ts_bad(p, "\"2024-01-14T14:00:00.Z\"", DATOS_REASON_BAD_TIMESTAMP);
    ts_bad(p, "\"2024-01-14 14:00:00Z\"",
           DATOS_REASON_BAD_TIMESTAMP); /* space */
    ts_bad(p, "\"2024-01-14T14:00:00\"",
           DATOS_REASON_BAD_TIMESTAMP); /* no zone */
    ts_bad(p, "\"2024-01-14T14:00Z\"", DATOS_REASON_BAD_TIMESTAMP);
    ts_bad(p, "\"2024-01-14\"", DATOS_REASON_BAD_TIMESTAMP);
    ts_bad(p, "\"2024-01-14T14:00:00+24:00\"", DATOS_REASON_BAD_TIMESTAMP);
    ts_bad(p, "\"2024-01-14T14:00:00+05:60\"", DATOS_REASON_BAD_TIMESTAMP);
    ts_bad(p, "\"2024-01-14T14:00:00+0500\"", DATOS_REASON_BAD_TIMESTAMP);
    ts_bad(p, "\"2024-01-14T14:00:00 UTC\"", DATOS_REASON_BAD_TIMESTAMP);
    ts_bad(p, "\"2016-12-31T23:59:60Z\"",
           DATOS_REASON_BAD_TIMESTAMP); /* leap second */
    ts_bad(p, "\"2023-02-29T00:00:00Z\"", DATOS_REASON_BAD_TIMESTAMP);
    ts_bad(p, "\"2024-13-01T00:00:00Z\"", DATOS_REASON_BAD_TIMESTAMP);
    ts_bad(p, "\" 2024-01-14T14:00:00Z\"", DATOS_REASON_BAD_TIMESTAMP);
    ts_bad(p, "\"2024-01-14T14:00:00Z \"", DATOS_REASON_BAD_TIMESTAMP);
    ts_bad(p, "\"2024-01-14T14:00:00Z\\u0000\"", DATOS_REASON_BAD_TIMESTAMP);
    ts_bad(p, "\"\"", DATOS_REASON_BAD_TIMESTAMP);
    ts_bad(p, "1705240800", DATOS_REASON_BAD_TIMESTAMP); /* a number */
    ts_bad(p, "null", DATOS_REASON_BAD_TIMESTAMP);
    ts_bad(p, "{}", DATOS_REASON_BAD_TIMESTAMP);
    reason(p, "{\"id\":\"a\"}", DATOS_REASON_MISSING_TIMESTAMP);
    reason(p, "{\"id\":\"a\",\"Timestamp\":\"2024-01-14T14:00:00Z\"}",
           DATOS_REASON_MISSING_TIMESTAMP);
}

/* docs/design.md section 3: RFC 3339 with a zone, fractional seconds up
 * to 6 digits. A fraction never stands in for the zone, in either
 * implementation, wherever the field sits in the record. */
static void timestamp_fraction_needs_a_zone(void **state)
{
    apr_pool_t *p = DT_POOL(state);

    ts_is(p, "2024-01-14T14:00:00.5Z", NOW + 500000);
    ts_is(p, "2024-01-14T14:00:00.5z", NOW + 500000);
    ts_is(p, "2024-01-14t14:00:00.5Z", NOW + 500000);
    ts_is(p, "2024-01-14T14:00:00.5+00:00", NOW + 500000);
    ts_is(p, "2024-01-14T11:00:00.5-03:00", NOW + 500000);
    ts_is(p, "2024-01-14T14:00:00.5\\u005a", NOW + 500000);
    ts_is(p, "2024-01-14T14:00:00.000000Z", NOW);

    ts_bad(p, "\"2024-01-14T14:00:00.5\"", DATOS_REASON_BAD_TIMESTAMP);
    ts_bad(p, "\"2024-01-14t14:00:00.5\"", DATOS_REASON_BAD_TIMESTAMP);
    ts_bad(p, "\"2024-01-14T14:00:00.123456\"", DATOS_REASON_BAD_TIMESTAMP);
    ts_bad(p, "\"2024-01-14T14:00:00.1234567\"", DATOS_REASON_BAD_TIMESTAMP);
    ts_bad(p, "\"2024-01-14T14:00:00.1234567+00:00\"",
           DATOS_REASON_BAD_TIMESTAMP);
    ts_bad(p, "\"2024-01-14T14:00:00.\"", DATOS_REASON_BAD_TIMESTAMP);
    ts_bad(p, "\"2024-01-14T14:00:00,5Z\"", DATOS_REASON_BAD_TIMESTAMP);
    ts_bad(p, "\"2024-01-14T14:00:00.5 \"", DATOS_REASON_BAD_TIMESTAMP);
    ts_bad(p, "\"2024-01-14T14:00:00.5+00\"", DATOS_REASON_BAD_TIMESTAMP);
    ts_bad(p, "\"2024-01-14T14:00:00.5\\u0000Z\"", DATOS_REASON_BAD_TIMESTAMP);
    /* the field first, a zone-like byte right after its closing quote */
    reason(p, "{\"timestamp\":\"2024-01-14T14:00:00.5\",\"id\":\"Z\"}",
           DATOS_REASON_BAD_TIMESTAMP);
    reason(p, "{\"timestamp\":\"2024-01-14T14:00:00.5\"\n,\"id\":\"a\"}",
           DATOS_REASON_BAD_TIMESTAMP);
}

static void timestamp_bounds(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_record_opts_t o = opts_now();
    const char *doc;

    /* 1970-01-01T00:00:00Z is the first valid instant */
    ts_is(p, "1970-01-01T00:00:00Z", 0);
    ts_is(p, "1970-01-01T01:00:00+01:00", 0);
    ts_bad(p, "\"1969-12-31T23:59:59.999999Z\"", DATOS_REASON_BAD_TIMESTAMP);
    ts_bad(p, "\"1970-01-01T00:59:59+01:00\"", DATOS_REASON_BAD_TIMESTAMP);
    ts_bad(p, "\"0001-01-01T00:00:00Z\"", DATOS_REASON_BAD_TIMESTAMP);

    /* now + 5 minutes is the last valid instant */
    ts_is(p, "2024-01-14T14:05:00Z", NOW + APR_INT64_C(300000000));
    ts_is(p, "2024-01-14T15:05:00+01:00", NOW + APR_INT64_C(300000000));
    ts_bad(p, "\"2024-01-14T14:05:00.000001Z\"", DATOS_REASON_FUTURE_TIMESTAMP);
    ts_bad(p, "\"9999-12-31T23:59:59.999999Z\"", DATOS_REASON_FUTURE_TIMESTAMP);

    /* the skew is an option */
    o.max_future_skew = 0;
    doc = "{\"id\":\"a\",\"timestamp\":\"2024-01-14T14:00:00Z\"}";
    reason_o(p, doc, &o, DATOS_REASON_NONE);
    doc = "{\"id\":\"a\",\"timestamp\":\"2024-01-14T14:00:00.000001Z\"}";
    reason_o(p, doc, &o, DATOS_REASON_FUTURE_TIMESTAMP);
    o.max_future_skew = apr_time_from_sec(3600);
    doc = "{\"id\":\"a\",\"timestamp\":\"2024-01-14T15:00:00Z\"}";
    reason_o(p, doc, &o, DATOS_REASON_NONE);
    doc = "{\"id\":\"a\",\"timestamp\":\"2024-01-14T15:00:00.000001Z\"}";
    reason_o(p, doc, &o, DATOS_REASON_FUTURE_TIMESTAMP);
}

/* ------------------------------------------------------------------ unknown fields */

static void unknown_fields(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_record_opts_t drop = opts_now();
    datos_invalid_t why;
    datos_row_t row;
    static const char doc[] = "{\"id\":\"a\",\"colour\":\"red\"," TS_OK
                              ",\"extra\":{\"n\":[1,2,{\"x\":null}]}}";

    drop.unknown = DATOS_UNKNOWN_DROP;
    reason(p, doc, DATOS_REASON_UNKNOWN_FIELD);
    assert_int_equal(
        datos_record_validate(p, doc, strlen(doc), &drop, &row, &why),
        APR_SUCCESS);
    assert_memory_equal(row.id, "a", 1);
    valid_row(p, doc, strlen(doc), &drop);

    {
        datos_record_opts_t o = opts_now();
        assert_int_equal(
            datos_record_validate(p, doc, strlen(doc), &o, &row, &why),
            DATOS_EMALFORMED);
        /* the first unknown field is named, the others counted */
        assert_non_null(strstr(why.detail, "\"colour\""));
        assert_non_null(strstr(why.detail, "1 more"));
    }
    /* the unknown field is checked last: other faults keep their reason
     * whatever the policy */
    reason(p, "{\"x\":1," TS_OK "}", DATOS_REASON_MISSING_ID);
    reason_o(p, "{\"x\":1," TS_OK "}", &drop, DATOS_REASON_MISSING_ID);
    reason(p, "{\"x\":1,\"id\":\"a\",\"timestamp\":\"bad\"}",
           DATOS_REASON_BAD_TIMESTAMP);
    /* dropped values must still be valid JSON */
    reason_o(p, "{\"id\":\"a\"," TS_OK ",\"x\":[1,}", &drop,
             DATOS_REASON_NOT_JSON);
}

/* ------------------------------------------------------------------ order and details */

static void reason_order(void **state)
{
    apr_pool_t *p = DT_POOL(state);

    reason(p, "{\"id\":5,\"contenido\":5,\"timestamp\":5,\"x\":5}",
           DATOS_REASON_BAD_ID);
    reason(p, "{\"id\":\"a\",\"contenido\":5,\"timestamp\":5,\"x\":5}",
           DATOS_REASON_BAD_CONTENIDO);
    reason(p, "{\"id\":\"a\",\"contenido\":\"c\",\"timestamp\":5,\"x\":5}",
           DATOS_REASON_BAD_TIMESTAMP);
    reason(p, "{\"contenido\":5}", DATOS_REASON_MISSING_ID);
    reason(p, "{\"id\":\"a\",\"contenido\":5}", DATOS_REASON_BAD_CONTENIDO);
    reason(p, "{}", DATOS_REASON_MISSING_ID);
}

static void details_are_short_and_clean(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_record_opts_t o = opts_now();
    const char *big = repeat(p, "\\u0001\xe2\x82\xac", 2000);
    const char *docs[5];
    datos_invalid_t why;
    datos_row_t row;
    int i, k;

    docs[0] = apr_psprintf(p, "{\"id\":\"a\"," TS_OK ",\"%s\":1}", big);
    docs[1] = apr_psprintf(p, "{\"id\":\"%s\"," TS_OK "}", big);
    docs[2] = apr_psprintf(p, "{\"id\":\"a\",\"timestamp\":\"%s\"}", big);
    docs[3] = apr_psprintf(
        p, "{\"id\":\"a\"," TS_OK ",\"x\":{\"%s\":1,\"%s\":2}}", big, big);
    /* jansson quotes up to 160 bytes near a syntax error, cut anywhere */
    docs[4] =
        apr_psprintf(p, "{\"id\":\"%s\x01\"}", repeat(p, "\xc3\xa9", 300));
    for (i = 0; i < 5; i++) {
        for (k = 0; k < 2; k++) {
            assert_int_equal(
                impls[k](p, docs[i], strlen(docs[i]), &o, &row, &why),
                DATOS_EMALFORMED);
            check_detail(why.detail);
            /* a short excerpt at most, never the user's whole value */
            assert_true(strlen(why.detail) < 400);
        }
    }
    /* a syntax error detail says where */
    assert_int_equal(datos_record_validate(p, "{\"id\" 1}", 8, &o, &row, &why),
                     DATOS_EMALFORMED);
    assert_non_null(strstr(why.detail, "byte 6"));
    assert_int_equal(datos_record_validate(p, "{\"a\":\"\xc3\xa9\xff\"}", 10,
                                           &o, &row, &why),
                     DATOS_EMALFORMED);
    assert_int_equal(why.reason, DATOS_REASON_NOT_UTF8);
    assert_non_null(strstr(why.detail, "byte 8"));
    check_detail(why.detail);
}

static void reason_names(void **state)
{
    static const char *const names[] = {
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
    int i;

    (void)state;
    assert_int_equal(DATOS_REASON_COUNT - 1, sizeof(names) / sizeof(names[0]));
    for (i = 0; i < DATOS_REASON_COUNT - 1; i++) {
        datos_reason_t r = datos_reason_from_name(names[i]);
        assert_int_not_equal(r, DATOS_REASON_NONE);
        assert_string_equal(datos_reason_name(r), names[i]);
    }
    assert_int_equal(datos_reason_from_name("Not_JSON"), DATOS_REASON_NONE);
    assert_int_equal(datos_reason_from_name(NULL), DATOS_REASON_NONE);
    assert_null(datos_reason_name(DATOS_REASON_COUNT));
}

/* A key holding U+0000 and out-of-range numbers are valid RFC 8259; only
 * jansson refuses them (documented in dt_jansson.h). */
static void beyond_jansson(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_record_opts_t drop = opts_now();
    static const char *const docs[] = {
        "{\"id\":\"a\"," TS_OK ",\"k\\u0000\":1}",
        "{\"id\":\"a\"," TS_OK ",\"n\":123456789012345678901234567890}",
        "{\"id\":\"a\"," TS_OK ",\"n\":1e999}",
    };
    datos_invalid_t why;
    datos_row_t row;
    size_t i;

    drop.unknown = DATOS_UNKNOWN_DROP;
    for (i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        assert_int_equal(datos_record_validate(p, docs[i], strlen(docs[i]),
                                               &drop, &row, &why),
                         APR_SUCCESS);
        assert_int_equal(dt_record_validate_jansson(p, docs[i], strlen(docs[i]),
                                                    &drop, &row, &why),
                         DATOS_EMALFORMED);
        assert_int_equal(why.reason, DATOS_REASON_NOT_JSON);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        DT_TEST(accepts_the_design_example),
        DT_TEST(whitespace_around_and_inside),
        DT_TEST(contenido_absent_null_or_empty),
        DT_TEST(escapes_are_decoded),
        DT_TEST(check_keeps_json_text),
        DT_TEST(record_fields_in_any_order),
        DT_TEST(empty_data),
        DT_TEST(not_utf8_anywhere_wins),
        DT_TEST(not_json),
        DT_TEST(nesting_limit),
        DT_TEST(not_object),
        DT_TEST(duplicate_keys_anywhere),
        DT_TEST(duplicate_in_a_large_object),
        DT_TEST(id_rules),
        DT_TEST(id_control_characters),
        DT_TEST(contenido_rules),
        DT_TEST(timestamp_forms),
        DT_TEST(timestamp_fraction_needs_a_zone),
        DT_TEST(timestamp_bounds),
        DT_TEST(unknown_fields),
        DT_TEST(reason_order),
        DT_TEST(details_are_short_and_clean),
        DT_TEST(reason_names),
        DT_TEST(beyond_jansson),
    };
    return cmocka_run_group_tests(tests, dt_group_setup, dt_group_teardown);
}
