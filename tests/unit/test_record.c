/* test_record.c - rendering /datos bodies: escaping, UTF-8 validation and
 * the per-limit slices. */
#include <string.h>
#include <jansson.h>

#include "dt_support.h"
#include "datos_record.h"

#define TS0 APR_INT64_C(1705240800000000)

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

static void render_example(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_row_t rows[2];
    datos_rendered_t *r;
    datos_err_t err = {0};

    rows[0] = ROW("789", "Prueba autom\xc3\xa1tica", TS0);
    rows[1] = ROW("790", NULL, TS0 - 1500000);
    datos_err_clear(&err);
    assert_int_equal(datos_record_render(p, rows, 2, &r, &err), APR_SUCCESS);
    assert_string_equal(
        r->body,
        "{\"datos\":[{\"id\":\"789\",\"contenido\":\"Prueba autom\xc3\xa1tica\","
        "\"timestamp\":\"2024-01-14T14:00:00+00:00\"},"
        "{\"id\":\"790\",\"contenido\":null,"
        "\"timestamp\":\"2024-01-14T13:59:58.500000+00:00\"}]}");
    assert_int_equal(r->len, strlen(r->body));
    assert_int_equal(r->n, 2);
}

static void render_empty(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_rendered_t *r;
    datos_err_t err = {0};

    assert_int_equal(datos_record_render(p, NULL, 0, &r, &err), APR_SUCCESS);
    assert_string_equal(r->body, "{\"datos\":[]}");
    assert_int_equal(r->row_end[0], 10);
    assert_int_equal(datos_rendered_len(r, 0), 12);
}

static void render_escaping(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_row_t rows[1];
    datos_rendered_t *r;
    datos_err_t err = {0};
    static const char id[] = "a\"b\\c\0d";
    static const char c[] =
        "tab\tnl\nnr\rbs\bff\f\x01\x1f\x7f/</script>\xe2\x80\xa8\xf0\x9f\x98\x80";

    rows[0] = mkrow(id, sizeof(id) - 1, c, sizeof(c) - 1, 0);
    assert_int_equal(datos_record_render(p, rows, 1, &r, &err), APR_SUCCESS);
    assert_string_equal(
        r->body,
        "{\"datos\":[{\"id\":\"a\\\"b\\\\c\\u0000d\",\"contenido\":"
        "\"tab\\tnl\\nnr\\rbs\\bff\\f\\u0001\\u001f\x7f/</script>\xe2\x80\xa8\xf0\x9f\x98\x80\","
        "\"timestamp\":\"1970-01-01T00:00:00+00:00\"}]}");
}

/* Every slice is a valid JSON document holding exactly the first k rows,
 * as jansson reads it back. */
static void render_slices(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_row_t rows[5];
    datos_rendered_t *r;
    datos_err_t err = {0};
    int k;

    rows[0] = ROW("e", "x", TS0 + 4);
    rows[1] = ROW("d", "", TS0 + 3);
    rows[2] = ROW("c", NULL, TS0 + 2);
    rows[3] = ROW("b", "\xc3\xb1", TS0 + 1);
    rows[4] = ROW("a", "z\n", TS0);
    assert_int_equal(datos_record_render(p, rows, 5, &r, &err), APR_SUCCESS);
    assert_int_equal(r->row_end[5] + 2, r->len);
    for (k = 0; k <= 5; k++) {
        apr_size_t n = datos_rendered_len(r, k);
        char *slice = apr_palloc(p, n + 1);
        json_error_t jerr;
        json_t *j, *arr;

        assert_int_equal(n, r->row_end[k] + 2);
        memcpy(slice, r->body, r->row_end[k]);
        memcpy(slice + r->row_end[k], "]}", 2);
        slice[n] = '\0';
        j = json_loadb(slice, n, JSON_REJECT_DUPLICATES, &jerr);
        if (!j) {
            fail_msg("slice %d is not JSON: %s: %s", k, jerr.text, slice);
        }
        arr = json_object_get(j, "datos");
        assert_int_equal(json_array_size(arr), (size_t)k);
        if (k) {
            assert_string_equal(json_string_value(json_object_get(
                                    json_array_get(arr, (size_t)k - 1), "id")),
                                rows[k - 1].id);
        }
        json_decref(j);
    }
}

static void bad_utf8(apr_pool_t *p, const char *bytes, apr_size_t n, int in_id)
{
    datos_row_t rows[2];
    datos_rendered_t *r = NULL;
    datos_err_t err = {0};

    rows[0] = ROW("ok", "fine", TS0);
    rows[1] =
        in_id ? mkrow(bytes, n, "c", 1, TS0) : mkrow("id", 2, bytes, n, TS0);
    datos_err_clear(&err);
    assert_int_equal(datos_record_render(p, rows, 2, &r, &err),
                     DATOS_EMALFORMED);
    assert_null(r);
    assert_non_null(strstr(err.message, "row 1"));
    assert_non_null(strstr(err.message, in_id ? "id" : "contenido"));
}

static void render_rejects_bad_utf8(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    static const char *const bad[] = {
        "\x80",             /* stray continuation */
        "\xc3",             /* truncated */
        "\xc3\x28",         /* bad continuation */
        "\xc0\xaf",         /* overlong '/' */
        "\xc1\xbf",         /* overlong */
        "\xe0\x80\xaf",     /* overlong 3-byte */
        "\xed\xa0\x80",     /* UTF-16 surrogate U+D800 */
        "\xed\xbf\xbf",     /* surrogate U+DFFF */
        "\xf0\x80\x80\xaf", /* overlong 4-byte */
        "\xf4\x90\x80\x80", /* above U+10FFFF */
        "\xf5\x80\x80\x80",
        "\xff",
        "abc\xe2\x82", /* truncated at the end */
    };
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        bad_utf8(p, bad[i], strlen(bad[i]), 0);
        bad_utf8(p, bad[i], strlen(bad[i]), 1);
    }
}

static void render_accepts_edge_utf8(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    static const char c[] =
        "\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80"
        "\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf";
    datos_row_t rows[1];
    datos_rendered_t *r;
    datos_err_t err = {0};

    rows[0] = mkrow("i", 1, c, sizeof(c) - 1, TS0);
    assert_int_equal(datos_record_render(p, rows, 1, &r, &err), APR_SUCCESS);
    assert_non_null(strstr(r->body, c));
}

static void render_bad_timestamp(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_row_t rows[1];
    datos_rendered_t *r;
    datos_err_t err = {0};

    rows[0] = ROW("i", "c", APR_INT64_C(253402300800000000));
    assert_int_equal(datos_record_render(p, rows, 1, &r, &err),
                     DATOS_EMALFORMED);
    assert_non_null(strstr(err.message, "timestamp"));
}

static void row_len_matches_render(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_row_t rows[4];
    datos_rendered_t *r;
    datos_err_t err = {0};
    apr_size_t len, sum = DATOS_RENDERED_EMPTY_LEN;
    int i;

    rows[0] = ROW("789", "Prueba autom\xc3\xa1tica \"q\" \\ \n \x01", TS0);
    rows[1] = ROW("", NULL, TS0 - 2000000);
    rows[2] = mkrow("a\0b", 3, "x", 1, TS0 - 7);
    rows[3] = ROW("\xe2\x98\x83", "", -62135596800000000LL);
    assert_int_equal(datos_record_render(p, rows, 4, &r, &err), APR_SUCCESS);
    for (i = 0; i < 4; i++) {
        assert_int_equal(datos_record_row_len(&rows[i], i == 0, &len),
                         APR_SUCCESS);
        assert_int_equal(len, r->row_end[i + 1] - r->row_end[i]);
        sum += len;
    }
    assert_int_equal(sum, r->len);
    assert_int_equal(datos_record_row_len(&rows[1], 1, &len), APR_SUCCESS);
    assert_int_equal(len, DATOS_RENDERED_ROW_MIN
                              + 2); /* null is 2 bytes longer than "" */
    rows[1].contenido = "";
    assert_int_equal(datos_record_row_len(&rows[1], 1, &len), APR_SUCCESS);
    assert_int_equal(len, DATOS_RENDERED_ROW_MIN);
    rows[0].id = "\xff";
    rows[0].id_len = 1;
    assert_int_equal(datos_record_row_len(&rows[0], 1, &len), DATOS_EMALFORMED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        DT_TEST(render_example),
        DT_TEST(render_empty),
        DT_TEST(row_len_matches_render),
        DT_TEST(render_escaping),
        DT_TEST(render_slices),
        DT_TEST(render_rejects_bad_utf8),
        DT_TEST(render_accepts_edge_utf8),
        DT_TEST(render_bad_timestamp),
    };
    return cmocka_run_group_tests(tests, dt_group_setup, dt_group_teardown);
}
