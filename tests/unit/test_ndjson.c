/* test_ndjson.c - the NDJSON lines of a load job: exact bytes, escaping
 * that jansson reads back to the same values, optional columns, growth,
 * line ranges and positions. */
#include <stdio.h>
#include <string.h>
#include <jansson.h>

#include "dt_support.h"
#include "datos_ndjson.h"

#define NOW APR_INT64_C(1705240800000000)

static datos_row_t mkrow(const char *id, apr_size_t id_len, const char *c,
                         apr_size_t c_len, apr_int64_t ts)
{
    datos_row_t r;
    r.id = id;
    r.id_len = id_len;
    r.contenido = c;
    r.contenido_len = c_len;
    r.timestamp_us = ts;
    return r;
}

static apr_size_t len0(const char *s)
{
    return s ? strlen(s) : 0;
}

#define ROW(id, c, ts) mkrow(id, strlen(id), c, len0(c), ts)

static const char *all(datos_ndjson_t *nd)
{
    return datos_ndjson_data(nd, NULL);
}

static void exact_lines(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_ndjson_t *nd;
    datos_row_t r;

    assert_int_equal(datos_ndjson_create(p, 0, 0, &nd), APR_SUCCESS);
    r = ROW("789", "Prueba autom\xc3\xa1tica", NOW);
    assert_int_equal(datos_ndjson_append(nd, &r, "ignored", 7, 1), APR_SUCCESS);
    r = ROW("790", NULL, NOW + 123456);
    assert_int_equal(datos_ndjson_append(nd, &r, NULL, 0, 0), APR_SUCCESS);
    assert_string_equal(
        all(nd), "{\"id\":\"789\",\"contenido\":\"Prueba autom\xc3\xa1tica\","
                 "\"timestamp\":\"2024-01-14T14:00:00.000000Z\"}\n"
                 "{\"id\":\"790\",\"contenido\":null,"
                 "\"timestamp\":\"2024-01-14T14:00:00.123456Z\"}\n");
    assert_int_equal(datos_ndjson_lines(nd), 2);
}

static void optional_columns(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_ndjson_t *both, *mid, *pt;
    datos_row_t r = ROW("a", "c", 0);

    assert_int_equal(
        datos_ndjson_create(
            p, DATOS_NDJSON_MESSAGE_ID | DATOS_NDJSON_PUBLISH_TIME, 16, &both),
        APR_SUCCESS);
    assert_int_equal(datos_ndjson_create(p, DATOS_NDJSON_MESSAGE_ID, 0, &mid),
                     APR_SUCCESS);
    assert_int_equal(datos_ndjson_create(p, DATOS_NDJSON_PUBLISH_TIME, 0, &pt),
                     APR_SUCCESS);
    assert_int_equal(
        datos_ndjson_append(both, &r, "11473219786351020", 17, NOW + 1),
        APR_SUCCESS);
    assert_int_equal(
        datos_ndjson_append(mid, &r, "11473219786351020", 17, NOW + 1),
        APR_SUCCESS);
    assert_int_equal(datos_ndjson_append(pt, &r, NULL, 0, NOW + 1),
                     APR_SUCCESS);
    assert_string_equal(
        all(both),
        "{\"id\":\"a\",\"contenido\":\"c\",\"timestamp\":\"1970-01-01T00:00:00.000000Z\","
        "\"message_id\":\"11473219786351020\","
        "\"publish_time\":\"2024-01-14T14:00:00.000001Z\"}\n");
    assert_string_equal(
        all(mid),
        "{\"id\":\"a\",\"contenido\":\"c\",\"timestamp\":\"1970-01-01T00:00:00.000000Z\","
        "\"message_id\":\"11473219786351020\"}\n");
    assert_string_equal(
        all(pt),
        "{\"id\":\"a\",\"contenido\":\"c\",\"timestamp\":\"1970-01-01T00:00:00.000000Z\","
        "\"publish_time\":\"2024-01-14T14:00:00.000001Z\"}\n");
    /* the message_id column needs a message id */
    assert_int_equal(datos_ndjson_append(mid, &r, NULL, 0, 0),
                     DATOS_EMALFORMED);
    assert_int_equal(datos_ndjson_lines(mid), 1);
}

/* Each line read back by jansson holds exactly the row's values. */
static void line_round_trips(const char *line, apr_size_t len,
                             const datos_row_t *r)
{
    json_error_t jerr;
    json_t *j, *v;

    assert_true(len > 0 && line[len - 1] == '\n');
    j = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!j) {
        fail_msg("not JSON: %s: %.*s", jerr.text, (int)len, line);
    }
    v = json_object_get(j, "id");
    assert_true(json_is_string(v));
    assert_int_equal(json_string_length(v), r->id_len);
    assert_memory_equal(json_string_value(v), r->id, r->id_len);
    v = json_object_get(j, "contenido");
    if (r->contenido) {
        assert_true(json_is_string(v));
        assert_int_equal(json_string_length(v), r->contenido_len);
        assert_memory_equal(json_string_value(v), r->contenido,
                            r->contenido_len);
    }
    else {
        assert_true(json_is_null(v));
    }
    assert_true(json_is_string(json_object_get(j, "timestamp")));
    json_decref(j);
}

static void escaping_round_trips(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    char every_ascii[128];
    static const char tricky[] =
        "\"quoted\" back\\slash /slash \xe2\x80\xa8 ls \xe2\x80\xa9 ps "
        "\xe2\x80\xa7\xe2\x80\xaa near \xc2\x80\xc2\x9f c1 \x7f del "
        "\xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf \xef\xbb\xbf bom </script>";
    datos_ndjson_t *nd;
    datos_row_t rows[4];
    const char *line;
    apr_size_t len, i;
    int k;

    for (i = 0; i < sizeof(every_ascii); i++) {
        every_ascii[i] = (char)i;
    }
    rows[0] = mkrow("id \xc3\xa9 \"q\" \\ \xe2\x80\xa8",
                    strlen("id \xc3\xa9 \"q\" \\ \xe2\x80\xa8"), every_ascii,
                    sizeof(every_ascii), NOW);
    rows[1] = mkrow("x", 1, tricky, sizeof(tricky) - 1, NOW);
    rows[2] = mkrow("\xf0\x9f\x98\x80", 4, "", 0, 0);
    rows[3] = mkrow("y", 1, NULL, 0, NOW);
    assert_int_equal(datos_ndjson_create(p, 0, 0, &nd), APR_SUCCESS);
    for (k = 0; k < 4; k++) {
        assert_int_equal(datos_ndjson_append(nd, &rows[k], NULL, 0, 0),
                         APR_SUCCESS);
    }
    for (k = 0; k < 4; k++) {
        assert_int_equal(datos_ndjson_range(nd, k, 1, &line, &len),
                         APR_SUCCESS);
        line_round_trips(line, len, &rows[k]);
    }
    line = datos_ndjson_data(nd, &len);
    /* one line per row: no raw control byte but the line ends, and the
     * Unicode line and paragraph separators escaped */
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)line[i];
        assert_false(c < 0x20 && c != '\n');
    }
    assert_null(strstr(line, "\xe2\x80\xa8"));
    assert_null(strstr(line, "\xe2\x80\xa9"));
    assert_non_null(
        strstr(line, "\\u2028 ls \\u2029 ps \xe2\x80\xa7\xe2\x80\xaa"));
    assert_non_null(strstr(line, "\\u0000\\u0001"));
    assert_non_null(strstr(line, "\\b\\t\\n\\u000b\\f\\r"));
}

/* Specials at every offset of an 8-byte word, in long strings. */
static void escaping_at_every_offset(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    static const char *const specials[] = {"\"",
                                           "\\",
                                           "\n",
                                           "\x01",
                                           "\xc3\xa9",
                                           "\xe2\x80\xa8",
                                           "\xf0\x9f\x98\x80",
                                           "\x7f"};
    datos_ndjson_t *nd;
    char buf[64];
    const char *line;
    apr_size_t len;
    size_t s;
    int off, k = 0;

    assert_int_equal(datos_ndjson_create(p, 0, 0, &nd), APR_SUCCESS);
    for (s = 0; s < sizeof(specials) / sizeof(specials[0]); s++) {
        for (off = 0; off < 24; off++) {
            datos_row_t r;
            apr_size_t n = strlen(specials[s]);

            memset(buf, 'a', sizeof(buf));
            memcpy(buf + off, specials[s], n);
            r = mkrow("id", 2, buf, 40, NOW);
            assert_int_equal(datos_ndjson_append(nd, &r, NULL, 0, 0),
                             APR_SUCCESS);
            assert_int_equal(datos_ndjson_range(nd, k++, 1, &line, &len),
                             APR_SUCCESS);
            line_round_trips(line, len, &r);
        }
    }
}

static void refuses_bad_rows_without_a_trace(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    static const char *const bad[] = {
        "\xff", "ok\xc3", "\xed\xa0\x80", "\xc0\xaf",
        "a long prefix of ascii bytes \xf4\x90\x80\x80"};
    datos_ndjson_t *nd;
    datos_row_t r = ROW("a", "c", NOW);
    const char *before;
    apr_size_t first_len, len;
    size_t i;

    assert_int_equal(datos_ndjson_create(p, DATOS_NDJSON_MESSAGE_ID, 0, &nd),
                     APR_SUCCESS);
    assert_int_equal(datos_ndjson_append(nd, &r, "1", 1, 0), APR_SUCCESS);
    before = apr_pstrdup(p, datos_ndjson_data(nd, &first_len));
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        datos_row_t b = ROW(bad[i], "c", NOW);
        assert_int_equal(datos_ndjson_append(nd, &b, "1", 1, 0),
                         DATOS_EMALFORMED);
        b = ROW("a", bad[i], NOW);
        assert_int_equal(datos_ndjson_append(nd, &b, "1", 1, 0),
                         DATOS_EMALFORMED);
        assert_int_equal(datos_ndjson_append(nd, &r, bad[i], strlen(bad[i]), 0),
                         DATOS_EMALFORMED);
    }
    /* out of BigQuery's range */
    r.timestamp_us = APR_INT64_C(253402300800000000);
    assert_int_equal(datos_ndjson_append(nd, &r, "1", 1, 0), DATOS_EMALFORMED);
    r.timestamp_us = NOW;
    assert_string_equal(datos_ndjson_data(nd, &len), before);
    assert_int_equal(len, first_len);
    assert_int_equal(datos_ndjson_lines(nd), 1);
    assert_int_equal(datos_ndjson_append(nd, &r, "2", 1, 0), APR_SUCCESS);
    assert_int_equal(datos_ndjson_lines(nd), 2);
}

static void timestamps(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    static const struct {
        apr_int64_t us;
        const char *text;
    } cases[] = {
        {0, "1970-01-01T00:00:00.000000Z"},
        {1, "1970-01-01T00:00:00.000001Z"},
        {NOW + 999999, "2024-01-14T14:00:00.999999Z"},
        {-1, "1969-12-31T23:59:59.999999Z"},
        {APR_INT64_C(253402300799999999), "9999-12-31T23:59:59.999999Z"},
        {APR_INT64_C(-62135596800000000), "0001-01-01T00:00:00.000000Z"},
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        datos_ndjson_t *nd;
        datos_row_t r = ROW("a", NULL, cases[i].us);
        char want[160];

        assert_int_equal(
            datos_ndjson_create(p, DATOS_NDJSON_PUBLISH_TIME, 0, &nd),
            APR_SUCCESS);
        assert_int_equal(datos_ndjson_append(nd, &r, NULL, 0, cases[i].us),
                         APR_SUCCESS);
        snprintf(want, sizeof(want),
                 "{\"id\":\"a\",\"contenido\":null,\"timestamp\":\"%s\","
                 "\"publish_time\":\"%s\"}\n",
                 cases[i].text, cases[i].text);
        assert_string_equal(all(nd), want);
    }
}

/* 200,000 rows from an empty buffer: every line is where the offsets say,
 * runs of lines are byte ranges, and positions map back to lines. */
static void grows_and_slices(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    const int n = 200000;
    datos_ndjson_t *nd;
    apr_size_t *starts = apr_palloc(p, sizeof(*starts) * (apr_size_t)(n + 1));
    apr_size_t len, total = 0;
    const char *data, *s;
    char id[32];
    int i;

    assert_int_equal(datos_ndjson_create(p, 0, 0, &nd), APR_SUCCESS);
    for (i = 0; i < n; i++) {
        datos_row_t r;
        int k = snprintf(id, sizeof(id), "row-%d", i);
        r = mkrow(id, (apr_size_t)k, i % 3 ? "contenido" : NULL, i % 3 ? 9 : 0,
                  NOW + i);
        starts[i] = total;
        assert_int_equal(datos_ndjson_append(nd, &r, NULL, 0, 0), APR_SUCCESS);
        data = datos_ndjson_data(nd, &total);
    }
    starts[n] = total;
    assert_int_equal(datos_ndjson_lines(nd), n);
    data = datos_ndjson_data(nd, &len);
    assert_int_equal(len, total);
    assert_int_equal(strlen(data), len);
    for (i = 0; i < n; i += 997) {
        char want[32];
        snprintf(want, sizeof(want), "{\"id\":\"row-%d\"", i);
        assert_memory_equal(data + starts[i], want, strlen(want));
        assert_int_equal(datos_ndjson_line_at(nd, (apr_int64_t)starts[i]), i);
        assert_int_equal(datos_ndjson_line_at(nd, (apr_int64_t)starts[i] + 1),
                         -1);
        assert_int_equal(
            datos_ndjson_range(nd, i, 3 < n - i ? 3 : n - i, &s, &len),
            APR_SUCCESS);
        assert_ptr_equal(s, data + starts[i]);
        assert_int_equal(len, starts[i + (3 < n - i ? 3 : n - i)] - starts[i]);
    }
    assert_int_equal(datos_ndjson_range(nd, 0, n, &s, &len), APR_SUCCESS);
    assert_int_equal(len, total);
    assert_int_equal(datos_ndjson_range(nd, n, 0, &s, &len), APR_SUCCESS);
    assert_int_equal(len, 0);
    assert_int_equal(datos_ndjson_range(nd, n, 1, &s, &len), APR_EINVAL);
    assert_int_equal(datos_ndjson_range(nd, -1, 1, &s, &len), APR_EINVAL);
    assert_int_equal(datos_ndjson_range(nd, 1, n, &s, &len), APR_EINVAL);
    assert_int_equal(datos_ndjson_line_at(nd, -1), -1);
    assert_int_equal(datos_ndjson_line_at(nd, (apr_int64_t)total), -1);
    assert_int_equal(datos_ndjson_line_at(nd, 0), 0);

    datos_ndjson_reset(nd);
    assert_int_equal(datos_ndjson_lines(nd), 0);
    assert_string_equal(datos_ndjson_data(nd, &len), "");
    assert_int_equal(len, 0);
}

/* What the validator accepts encodes to a line carrying the same values. */
static void validated_rows_encode(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    static const char *const docs[] = {
        "{\"id\":\"a\\u0041\\ud83d\\ude00\",\"contenido\":\"\\u0000\\u2028\\\"\","
        "\"timestamp\":\"2024-01-14T14:00:00.5-03:00\"}",
        "{\"id\":\"\xc3\xa9\",\"timestamp\":\"1970-01-01T00:00:00Z\"}",
    };
    static const char *const stamps[] = {"2024-01-14T17:00:00.500000Z",
                                         "1970-01-01T00:00:00.000000Z"};
    datos_record_opts_t o;
    datos_ndjson_t *nd;
    size_t i;

    datos_record_opts_init(&o, NOW + APR_INT64_C(86400000000));
    assert_int_equal(datos_ndjson_create(p, 0, 0, &nd), APR_SUCCESS);
    for (i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        datos_invalid_t why;
        datos_row_t r;
        const char *line;
        apr_size_t len;

        assert_int_equal(
            datos_record_validate(p, docs[i], strlen(docs[i]), &o, &r, &why),
            APR_SUCCESS);
        assert_int_equal(datos_ndjson_append(nd, &r, NULL, 0, 0), APR_SUCCESS);
        assert_int_equal(datos_ndjson_range(nd, (int)i, 1, &line, &len),
                         APR_SUCCESS);
        line_round_trips(line, len, &r);
        assert_non_null(strstr(line, stamps[i]));
    }
}

/* A checked record's line copies the producer's JSON text: escapes stay as
 * written, values read back the same, U+2028/U+2029 still escaped. */
static void record_lines_copy_json_text(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    static const char *const docs[] = {
        "{\"id\":\"a\\u00e9\\/b\",\"contenido\":\"x\\n\\\"y\\\"\\u0000 \xe2\x80\xa8"
        " \\u2029 \xe2\x80\xa9\xe2\x80\xa7\",\"timestamp\":\"2024-01-14T14:00:00Z\"}",
        "{\"timestamp\":\"2024-01-14T14:00:00.25+01:00\",\"id\":\"\xf0\x9f\x98\x80\"}",
        "{\"id\":\"\\ud83d\\ude00\",\"contenido\":\"\",\"timestamp\":\"1970-01-01T00:00:00Z\"}",
    };
    datos_record_opts_t o;
    datos_ndjson_t *nd;
    size_t i;

    datos_record_opts_init(&o, NOW);
    assert_int_equal(datos_ndjson_create(p, DATOS_NDJSON_MESSAGE_ID, 0, &nd),
                     APR_SUCCESS);
    for (i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        datos_invalid_t why;
        datos_record_t rec;
        datos_row_t row;
        const char *line;
        apr_size_t len;

        assert_int_equal(
            datos_record_check(p, docs[i], strlen(docs[i]), &o, &rec, &why),
            APR_SUCCESS);
        assert_int_equal(datos_ndjson_append_record(nd, &rec, "m\"1", 3, 0),
                         APR_SUCCESS);
        assert_int_equal(datos_ndjson_range(nd, (int)i, 1, &line, &len),
                         APR_SUCCESS);
        datos_record_row(p, &rec, &row);
        line_round_trips(line, len, &row);
        assert_non_null(strstr(line, "\"message_id\":\"m\\\"1\""));
        assert_null(strstr(line, "\xe2\x80\xa8"));
        assert_null(strstr(line, "\xe2\x80\xa9"));
    }
    assert_string_equal(
        datos_ndjson_data(nd, NULL),
        "{\"id\":\"a\\u00e9\\/b\",\"contenido\":\"x\\n\\\"y\\\"\\u0000 \\u2028"
        " \\u2029 \\u2029\xe2\x80\xa7\",\"timestamp\":\"2024-01-14T14:00:00.000000Z\","
        "\"message_id\":\"m\\\"1\"}\n"
        "{\"id\":\"\xf0\x9f\x98\x80\",\"contenido\":null,"
        "\"timestamp\":\"2024-01-14T13:00:00.250000Z\",\"message_id\":\"m\\\"1\"}\n"
        "{\"id\":\"\\ud83d\\ude00\",\"contenido\":\"\",\"timestamp\":\"1970-01-01T00:00:00.000000Z\","
        "\"message_id\":\"m\\\"1\"}\n");
}

/* The bound the loader sizes its buffer with holds for the worst lines
 * (contenido all U+2028, the one text a record's line makes longer; a
 * message id of control characters), so a buffer created with the sum
 * never moves while their lines are written, whether it is small or
 * large enough to be a mapping of its own. */
static void records_fit_their_bound(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    const apr_size_t seps[] = {0, 1, 100, 349525}; /* the last: ~1 MiB */
    const char mid[] = "\x01\x02\x1f";
    int columns = DATOS_NDJSON_MESSAGE_ID | DATOS_NDJSON_PUBLISH_TIME, big;
    datos_record_opts_t o;

    datos_record_opts_init(&o, NOW);
    for (big = 0; big < 2; big++) {
        datos_record_t recs[4];
        apr_size_t bound = 0, i, before = 0, len;
        datos_ndjson_t *nd;
        const char *data;

        for (i = 0; i < 4; i++) {
            apr_size_t n = big ? seps[i] : seps[i] % 1000, k;
            char *doc = apr_palloc(p, 3 * n + 128), *d = doc;
            datos_invalid_t why;

            d += sprintf(d, "{\"id\":\"\xe2\x80\xa8%d\",\"contenido\":\"",
                         (int)i);
            for (k = 0; k < n; k++) {
                memcpy(d, "\xe2\x80\xa8", 3);
                d += 3;
            }
            d += sprintf(d, "\",\"timestamp\":\"2024-01-14T14:00:00Z\"}");
            assert_int_equal(datos_record_check(p, doc, (apr_size_t)(d - doc),
                                                &o, &recs[i], &why),
                             APR_SUCCESS);
            bound += datos_ndjson_record_max(columns, &recs[i], 3);
        }
        assert_int_equal(datos_ndjson_create(p, columns, bound, &nd),
                         APR_SUCCESS);
        data = datos_ndjson_data(nd, NULL);
        for (i = 0; i < 4; i++) {
            assert_int_equal(
                datos_ndjson_append_record(nd, &recs[i], mid, 3, NOW),
                APR_SUCCESS);
            assert_ptr_equal(datos_ndjson_data(nd, &len), data);
            assert_true(len - before
                        <= datos_ndjson_record_max(columns, &recs[i], 3));
            before = len;
        }
        assert_true(len > (big ? 2000000 : 3000));
        assert_null(strstr(data, "\xe2\x80\xa8"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        DT_TEST(exact_lines),
        DT_TEST(optional_columns),
        DT_TEST(escaping_round_trips),
        DT_TEST(escaping_at_every_offset),
        DT_TEST(refuses_bad_rows_without_a_trace),
        DT_TEST(timestamps),
        DT_TEST(grows_and_slices),
        DT_TEST(validated_rows_encode),
        DT_TEST(record_lines_copy_json_text),
        DT_TEST(records_fit_their_bound),
    };
    return cmocka_run_group_tests(tests, dt_group_setup, dt_group_teardown);
}
