/* test_answer.c - answers: slices, ETags, gzip variants and the envelope.
 *
 * ETags are checked against SHA-256 computed here over each slice's bytes,
 * gzip variants are decompressed by zlib's inflate and by the gzip command,
 * and decoding is attacked with every cut, every flipped byte and envelopes
 * whose checksum is right but whose structure is not. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <openssl/sha.h>
#include <zlib.h>
#include <apr_hash.h>
#include <apr_thread_proc.h>
#include <apr_time.h>

#include "dt_support.h"
#include "datos_answer.h"
#include "datos_trust.h"

#define TS0 APR_INT64_C(1705240800000000)

/* The envelope layout (format version 1), as datos_answer.c documents it. */
#define ENV_HEADER 64
#define ENV_ROW    24 /* row_end u64 + 16-byte digest */
#define ENV_GZ     24
#define ENV_SHA    32

/* ------------------------------------------------------------ helpers */

static datos_row_t mkrow(const char *id, const char *c, apr_int64_t ts)
{
    datos_row_t r;

    r.id = id;
    r.id_len = strlen(id);
    r.contenido = c;
    r.contenido_len = c ? strlen(c) : 0;
    r.timestamp_us = ts;
    return r;
}

/* n varied rows: escapes, non-ASCII, nulls, fractions of a second. */
static datos_row_t *sample_rows(apr_pool_t *p, int n)
{
    datos_row_t *rows = apr_pcalloc(p, sizeof(*rows) * (apr_size_t)(n ? n : 1));
    static const char *const texts[] = {"Prueba autom\xc3\xa1tica",
                                        "",
                                        NULL,
                                        "tab\there \"quoted\" \\ done",
                                        "\xe2\x98\x83 snow",
                                        "line\nbreak",
                                        "plain text that repeats, plain text"};
    int i;

    for (i = 0; i < n; i++) {
        rows[i] = mkrow(apr_psprintf(p, "id-%04d", i), texts[i % 7],
                        TS0 - (apr_int64_t)i * 1500000);
    }
    return rows;
}

static datos_answer_opts_t opts_for(int max_rows, const int *limits, int count)
{
    datos_answer_opts_t o;
    int i;

    memset(&o, 0, sizeof(o));
    o.max_rows = max_rows;
    o.fetched = TS0 + 5000000;
    o.watermark_us = TS0 - APR_INT64_C(86400000000);
    for (i = 0; i < count; i++) {
        o.gzip_limits[i] = limits[i];
    }
    o.gzip_count = count;
    return o;
}

static datos_answer_t *build(apr_pool_t *p, const datos_row_t *rows, int n,
                             const datos_answer_opts_t *o)
{
    datos_answer_t *a = NULL;
    datos_err_t err = {0};

    datos_err_clear(&err);
    if (datos_answer_build(p, rows, n, o, &a, &err) != APR_SUCCESS) {
        fail_msg("build: %s", err.message ? err.message : "?");
    }
    assert_non_null(a);
    return a;
}

/* The plain slice of k rows as a client receives it. */
static char *slice(apr_pool_t *p, const datos_answer_t *a, int k,
                   apr_size_t *len)
{
    apr_size_t n = datos_answer_slice_len(a, k);
    char *s = apr_palloc(p, n + 1);

    memcpy(s, a->body, n - 2);
    memcpy(s + n - 2, "]}", 2);
    s[n] = '\0';
    *len = n;
    return s;
}

/* The ETag computed independently: SHA-256 of the bytes, first 16 bytes. */
static char *expected_etag(apr_pool_t *p, const char *bytes, apr_size_t len)
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    char *e = apr_palloc(p, DATOS_ETAG_SIZE);
    int i;

    SHA256((const unsigned char *)bytes, len, md);
    e[0] = '"';
    for (i = 0; i < 16; i++) {
        sprintf(e + 1 + 2 * i, "%02x", md[i]);
    }
    e[33] = '"';
    e[34] = '\0';
    return e;
}

/* The gzip stream of a variant, assembled as the module sends it. */
static unsigned char *gzip_bytes(apr_pool_t *p, const datos_answer_t *a,
                                 const datos_answer_gz_t *gz)
{
    apr_size_t hlen, tlen;
    const unsigned char *h = datos_answer_gzip_header(&hlen);
    const unsigned char *t = datos_answer_gzip_tail(&tlen);
    unsigned char *b = apr_palloc(p, gz->len);

    assert_int_equal(gz->len, hlen + gz->end + tlen + 8);
    memcpy(b, h, hlen);
    memcpy(b + hlen, a->deflate, gz->end);
    memcpy(b + hlen + gz->end, t, tlen);
    memcpy(b + hlen + gz->end + tlen, gz->trailer, 8);
    return b;
}

/* Inflates with zlib, windowBits given (31: gzip, -15: raw deflate).
 * Fails the test unless the stream ends exactly at the end of the input
 * (gzip) or consumes all of it (raw). */
static char *inflate_all(apr_pool_t *p, const unsigned char *in,
                         apr_size_t inlen, int wbits, apr_size_t *outlen)
{
    z_stream zs;
    apr_size_t cap = inlen * 4 + 1024;
    char *out = NULL;
    int zrv;

    for (;;) {
        memset(&zs, 0, sizeof(zs));
        assert_int_equal(inflateInit2(&zs, wbits), Z_OK);
        out = apr_palloc(p, cap + 1);
        zs.next_in = (Bytef *)in;
        zs.avail_in = (uInt)inlen;
        zs.next_out = (Bytef *)out;
        zs.avail_out = (uInt)cap;
        zrv = inflate(&zs, Z_FINISH);
        if (zrv == Z_BUF_ERROR && zs.avail_out == 0) {
            inflateEnd(&zs);
            cap *= 2;
            continue;
        }
        break;
    }
    if (wbits > 0) {
        /* Z_STREAM_END only once the CRC-32 and length check out. */
        if (zrv != Z_STREAM_END) {
            fail_msg("inflate: %d (%s)", zrv, zs.msg ? zs.msg : "");
        }
    }
    else {
        /* an unfinished raw stream: everything consumed, no error */
        assert_true(zrv == Z_BUF_ERROR || zrv == Z_OK);
    }
    assert_int_equal(zs.avail_in, 0);
    *outlen = cap - zs.avail_out;
    out[*outlen] = '\0';
    inflateEnd(&zs);
    return out;
}

static void assert_bytes_equal(const void *a, apr_size_t alen, const void *b,
                               apr_size_t blen)
{
    assert_int_equal(alen, blen);
    assert_memory_equal(a, b, alen);
}

/* Every observable part of two answers is the same. */
static void assert_same_answer(apr_pool_t *p, const datos_answer_t *x,
                               const datos_answer_t *y)
{
    apr_size_t xl, yl;
    char gx[DATOS_ETAG_GZ_SIZE], gy[DATOS_ETAG_GZ_SIZE];
    int k;

    assert_int_equal(x->n, y->n);
    assert_int_equal(x->max_rows, y->max_rows);
    assert_true(x->fetched == y->fetched);
    assert_true(x->watermark_us == y->watermark_us);
    assert_bytes_equal(x->body, x->body_len, y->body, y->body_len);
    assert_int_equal(y->body[y->body_len], '\0');
    assert_int_equal(x->gz_count, y->gz_count);
    for (k = -1; k <= x->n + 1; k++) {
        char *sx = slice(p, x, k, &xl), *sy = slice(p, y, k, &yl);
        const datos_answer_gz_t *zx = datos_answer_gzip(x, k);
        const datos_answer_gz_t *zy = datos_answer_gzip(y, k);

        assert_bytes_equal(sx, xl, sy, yl);
        assert_string_equal(datos_answer_etag(x, k), datos_answer_etag(y, k));
        datos_answer_etag_gz(x, k, gx);
        datos_answer_etag_gz(y, k, gy);
        assert_string_equal(gx, gy);
        assert_int_equal(datos_answer_rows(x, k), datos_answer_rows(y, k));
        assert_true((zx == NULL) == (zy == NULL));
        if (zx) {
            assert_int_equal(zx->rows, zy->rows);
            assert_bytes_equal(gzip_bytes(p, x, zx), zx->len,
                               gzip_bytes(p, y, zy), zy->len);
        }
    }
}

/* The seal every envelope of these tests is made with. */
static const datos_secret_t test_secret = {
    (const unsigned char *)"a test secret of thirty-two bytes", 32};
static const datos_seal_t test_seal = {&test_secret, "datos:v1:test"};

static const char *encode(apr_pool_t *p, const datos_answer_t *a,
                          apr_size_t *len)
{
    const char *bytes = NULL;
    datos_err_t err = {0};

    datos_err_clear(&err);
    assert_int_equal(datos_answer_encode(p, a, &test_seal, &bytes, len, &err),
                     APR_SUCCESS);
    assert_non_null(bytes);
    return bytes;
}

static apr_status_t decode(apr_pool_t *p, const char *bytes, apr_size_t len,
                           datos_answer_t **out, datos_err_t *err)
{
    return datos_answer_decode(p, bytes, len, &test_seal, out, err);
}

/* Decoding must fail, malformed or unsealed, with a message, and give
 * nothing. */
static void assert_rejected(apr_pool_t *p, const char *bytes, apr_size_t len,
                            const char *says)
{
    datos_answer_t *a = (datos_answer_t *)&a; /* must be reset to NULL */
    datos_err_t err = {0};
    apr_status_t rv;

    datos_err_clear(&err);
    rv = decode(p, bytes, len, &a, &err);
    if (rv != DATOS_EMALFORMED && rv != DATOS_EAUTH) {
        fail_msg("decode of %zu bytes: %d, expected malformed or unsealed",
                 (size_t)len, rv);
    }
    assert_null(a);
    assert_non_null(err.message);
    if (says && !strstr(err.message, says)) {
        fail_msg("\"%s\" does not say \"%s\"", err.message, says);
    }
}

/* ------------------------------------------------- slices and ETags */

static void answer_slices_and_etags(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    const int n = 12;
    datos_row_t *rows = sample_rows(p, n);
    datos_answer_opts_t o = opts_for(100, NULL, 0);
    datos_answer_t *a = build(p, rows, n, &o);
    char gz[DATOS_ETAG_GZ_SIZE];
    apr_hash_t *seen = apr_hash_make(p);
    apr_size_t len;
    int k;

    assert_int_equal(a->n, n);
    assert_int_equal(a->max_rows, 100);
    assert_true(a->fetched == o.fetched);
    assert_true(a->watermark_us == o.watermark_us);
    assert_int_equal(a->body_len, strlen(a->body));
    assert_int_equal(a->row_end[0], 10);
    for (k = 0; k <= n; k++) {
        char *s = slice(p, a, k, &len);
        const char *etag = datos_answer_etag(a, k);
        json_error_t jerr;
        json_t *j = json_loadb(s, len, JSON_REJECT_DUPLICATES, &jerr);

        if (!j) {
            fail_msg("slice %d is not JSON: %s", k, jerr.text);
        }
        assert_int_equal(json_array_size(json_object_get(j, "datos")),
                         (size_t)k);
        json_decref(j);
        assert_int_equal(len, a->row_end[k] + 2);
        assert_int_equal(strlen(etag), DATOS_ETAG_SIZE - 1);
        assert_string_equal(etag, expected_etag(p, s, len));
        datos_answer_etag_gz(a, k, gz);
        assert_string_equal(
            gz, apr_pstrcat(p, apr_pstrndup(p, etag, 33), "-gz\"", NULL));
        assert_null(apr_hash_get(seen, etag, APR_HASH_KEY_STRING));
        apr_hash_set(seen, etag, APR_HASH_KEY_STRING, etag);
        assert_int_equal(datos_answer_rows(a, k), k);
        assert_null(datos_answer_gzip(a, k));
    }
    /* The whole answer is the body as built; limits past it are clamped. */
    assert_string_equal(slice(p, a, n, &len), a->body);
    assert_int_equal(datos_answer_rows(a, n + 1), n);
    assert_int_equal(datos_answer_rows(a, 1000), n);
    assert_int_equal(datos_answer_rows(a, -3), 0);
    assert_string_equal(datos_answer_etag(a, n + 7), datos_answer_etag(a, n));
    assert_int_equal(datos_answer_slice_len(a, n + 7), a->body_len);
    assert_string_equal(slice(p, a, 0, &len), "{\"datos\":[]}");
    assert_int_equal(a->deflate_len, 0);
    assert_int_equal(a->gz_count, 0);
    datos_answer_free(a);
}

static void answer_max_rows_cuts(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_row_t *rows = sample_rows(p, 20);
    datos_answer_opts_t o = opts_for(5, NULL, 0);
    datos_answer_opts_t o20 = opts_for(20, NULL, 0);
    datos_answer_t *a = build(p, rows, 20, &o);
    datos_answer_t *full = build(p, rows, 20, &o20);
    apr_size_t len;

    assert_int_equal(a->n, 5);
    assert_int_equal(datos_answer_rows(a, 10), 5);
    /* the first five rows exactly as a longer answer renders them */
    assert_string_equal(slice(p, a, 5, &len), slice(p, full, 5, &len));
    assert_string_equal(datos_answer_etag(a, 5), datos_answer_etag(full, 5));
    datos_answer_free(a);
    datos_answer_free(full);
}

static void answer_empty(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    int limits[] = {10};
    datos_answer_opts_t o = opts_for(10, limits, 1);
    datos_answer_t *a = build(p, NULL, 0, &o);
    const datos_answer_gz_t *gz;
    apr_size_t len;
    char *plain;

    assert_int_equal(a->n, 0);
    assert_string_equal(a->body, "{\"datos\":[]}");
    assert_string_equal(datos_answer_etag(a, 5),
                        expected_etag(p, "{\"datos\":[]}", 12));
    /* a limit above the rows held means the whole answer: here no rows */
    gz = datos_answer_gzip(a, 0);
    assert_non_null(gz);
    assert_ptr_equal(datos_answer_gzip(a, 10), gz);
    assert_int_equal(gz->rows, 0);
    plain = inflate_all(p, gzip_bytes(p, a, gz), gz->len, 31, &len);
    assert_string_equal(plain, "{\"datos\":[]}");
    datos_answer_free(a);
}

/* Same rows, same bytes, same ETags on every host, whatever else differs. */
static void answer_same_rows_same_etags(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    int limits[] = {10, 3};
    datos_answer_opts_t o1 = opts_for(100, limits, 2);
    datos_answer_opts_t o2 = opts_for(100, limits, 2);
    datos_row_t *r1 = sample_rows(p, 10), *r2 = sample_rows(p, 10);
    datos_answer_t *a, *b, *c;
    int k;

    o2.fetched += APR_USEC_PER_SEC * 3600;
    o2.watermark_us += 1;
    a = build(p, r1, 10, &o1);
    b = build(p, r2, 10, &o2);
    assert_bytes_equal(a->body, a->body_len, b->body, b->body_len);
    assert_bytes_equal(a->deflate, a->deflate_len, b->deflate, b->deflate_len);
    for (k = 0; k <= 10; k++) {
        assert_string_equal(datos_answer_etag(a, k), datos_answer_etag(b, k));
    }
    assert_memory_equal(datos_answer_gzip(a, 3)->trailer,
                        datos_answer_gzip(b, 3)->trailer, 8);

    /* A change in row 5 changes the slices that hold it, and only those. */
    r2[4].contenido = "changed";
    r2[4].contenido_len = 7;
    c = build(p, r2, 10, &o2);
    for (k = 0; k <= 10; k++) {
        if (k < 5) {
            assert_string_equal(datos_answer_etag(a, k),
                                datos_answer_etag(c, k));
        }
        else {
            assert_string_not_equal(datos_answer_etag(a, k),
                                    datos_answer_etag(c, k));
        }
    }
    datos_answer_free(a);
    datos_answer_free(b);
    datos_answer_free(c);
}

static void answer_rejects_bad_input(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_row_t *rows = sample_rows(p, 3);
    int zero[] = {0}, neg[] = {2, -1};
    datos_answer_opts_t o;
    datos_answer_t *a;
    datos_err_t err = {0};

    o = opts_for(0, NULL, 0);
    a = (datos_answer_t *)&a;
    assert_int_equal(datos_answer_build(p, rows, 3, &o, &a, &err), APR_EINVAL);
    assert_null(a);
    o = opts_for(10, zero, 1);
    assert_int_equal(datos_answer_build(p, rows, 3, &o, &a, &err), APR_EINVAL);
    o = opts_for(10, neg, 2);
    assert_int_equal(datos_answer_build(p, rows, 3, &o, &a, &err), APR_EINVAL);
    o = opts_for(10, NULL, 0);
    o.gzip_count = DATOS_ANSWER_GZIP_MAX + 1;
    assert_int_equal(datos_answer_build(p, rows, 3, &o, &a, &err), APR_EINVAL);
    o = opts_for(10, NULL, 0);
    assert_int_equal(datos_answer_build(p, rows, -1, &o, &a, &err), APR_EINVAL);
    assert_int_equal(datos_answer_build(p, NULL, 2, &o, &a, &err), APR_EINVAL);
    /* a row the renderer refuses fails the build with its reason */
    rows[2].contenido = "bad \xff";
    rows[2].contenido_len = 5;
    datos_err_clear(&err);
    assert_int_equal(datos_answer_build(p, rows, 3, &o, &a, &err),
                     DATOS_EMALFORMED);
    assert_null(a);
    assert_non_null(strstr(err.message, "row 2"));
    /* ... unless it lies beyond max_rows, where rows are not kept */
    o = opts_for(2, NULL, 0);
    a = build(p, rows, 3, &o);
    assert_int_equal(a->n, 2);
    datos_answer_free(a);
}

/* ------------------------------------------------------------ gzip */

/* Each variant decompresses, through zlib and through gzip(1), to exactly
 * its plain slice, with the CRC-32 and length of that slice. */
static void check_variant(apr_pool_t *p, const char *dir,
                          const datos_answer_t *a, const datos_answer_gz_t *gz)
{
    apr_size_t plen, olen, flen;
    char *plain = slice(p, a, gz->rows, &plen);
    unsigned char *bytes = gzip_bytes(p, a, gz);
    char *out = inflate_all(p, bytes, gz->len, 31, &olen);
    uLong crc = crc32(0L, (const Bytef *)plain, (uInt)plen);
    const char *path;

    assert_bytes_equal(out, olen, plain, plen);
    assert_int_equal(gz->trailer[0] | gz->trailer[1] << 8 | gz->trailer[2] << 16
                         | (apr_uint32_t)gz->trailer[3] << 24,
                     (apr_uint32_t)crc);
    assert_int_equal(gz->trailer[4] | gz->trailer[5] << 8 | gz->trailer[6] << 16
                         | (apr_uint32_t)gz->trailer[7] << 24,
                     (apr_uint32_t)plen);
    assert_memory_equal(bytes, "\x1f\x8b\x08", 3);

    path = dt_write_file(p, dir, apr_psprintf(p, "v%d.gz", gz->rows),
                         (const char *)bytes, gz->len, 0600);
    assert_int_equal(
        dt_system(p, "gzip -dc '%s' > '%s.out' 2>'%s.err'", path, path, path),
        0);
    out = dt_read_file(p, apr_pstrcat(p, path, ".out", NULL), &flen);
    assert_bytes_equal(out, flen, plain, plen);
    /* gzip -t checks the trailer too, and says nothing when it holds */
    assert_int_equal(dt_system(p, "gzip -t '%s'", path), 0);
}

static void answer_gzip_variants(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    const char *dir = dt_tmpdir(p);
    const int n = 10;
    /* unsorted, duplicated, above n (twice: both mean all rows) */
    int limits[] = {7, 3, 3, 50, 1, 12};
    datos_answer_opts_t o = opts_for(100, limits, 6);
    datos_row_t *rows = sample_rows(p, n);
    datos_answer_t *a = build(p, rows, n, &o);
    static const int expect[] = {1, 3, 7, 10};
    apr_size_t prev_end = 0, len;
    int i, k;

    assert_int_equal(a->gz_count, 4);
    for (i = 0; i < 4; i++) {
        const datos_answer_gz_t *gz = &a->gz[i];

        assert_int_equal(gz->rows, expect[i]);
        assert_ptr_equal(datos_answer_gzip(a, expect[i]), gz);
        assert_true(gz->end > prev_end);
        /* each flush point ends a sync flush: an empty stored block */
        assert_memory_equal(a->deflate + gz->end - 4, "\0\0\xff\xff", 4);
        prev_end = gz->end;
        check_variant(p, dir, a, gz);
    }
    /* The stream stops at the last flush point. */
    assert_int_equal(a->deflate_len, a->gz[3].end);
    for (k = 0; k <= n + 2; k++) {
        int has = k == 1 || k == 3 || k == 7 || k >= 10;

        assert_true((datos_answer_gzip(a, k) != NULL) == has);
    }
    assert_ptr_equal(datos_answer_gzip(a, 1000), datos_answer_gzip(a, n));
    assert_null(datos_answer_gzip(a, 0));
    datos_answer_free(a);

    /* Rows past the largest gzip limit are not compressed at all: the raw
     * stream inflates to exactly the rows of that limit. */
    limits[0] = 2;
    o = opts_for(100, limits, 1);
    a = build(p, rows, n, &o);
    assert_int_equal(a->gz_count, 1);
    {
        char *raw = inflate_all(p, (const unsigned char *)a->deflate,
                                a->deflate_len, -15, &len);
        assert_bytes_equal(raw, len, a->body, a->row_end[2]);
    }
    check_variant(p, dir, a, datos_answer_gzip(a, 2));
    datos_answer_free(a);
}

/* Bigger rows, compressible and not, over several deflate blocks. */
static void answer_gzip_large(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    const char *dir = dt_tmpdir(p);
    const int n = 100;
    int limits[] = {100, 1, 10, 50, 99, 2, 5, 25};
    datos_answer_opts_t o = opts_for(100, limits, 8);
    datos_row_t *rows = apr_pcalloc(p, sizeof(*rows) * n);
    datos_answer_t *a;
    unsigned int seed = 7;
    int i, j;

    for (i = 0; i < n; i++) {
        apr_size_t len = 3000 + (apr_size_t)(i * 37 % 5000);
        char *c = apr_palloc(p, len + 1);

        for (j = 0; j < (int)len; j++) {
            /* odd rows random printable text, even rows repetitive */
            seed = seed * 1103515245 + 12345;
            c[j] = i % 2 ? (char)(0x20 + (seed >> 16) % 95) : "datos "[j % 6];
            if (c[j] == '"' || c[j] == '\\') {
                c[j] = '.';
            }
        }
        c[len] = '\0';
        rows[i] = mkrow(apr_psprintf(p, "%d", i), c, TS0 - i);
    }
    a = build(p, rows, n, &o);
    assert_int_equal(a->gz_count, 8);
    for (i = 0; i < a->gz_count; i++) {
        check_variant(p, dir, a, &a->gz[i]);
    }
    assert_true(a->deflate_len < a->body_len);
    datos_answer_free(a);
}

/* ------------------------------------------------------------ envelope */

static void envelope_round_trip(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    int limits[] = {4, 1, 20};
    datos_answer_opts_t o = opts_for(20, limits, 3);
    datos_row_t *rows = sample_rows(p, 9);
    datos_answer_t *a, *b;
    const char *bytes;
    apr_size_t len;
    datos_err_t err = {0};
    char *copy;

    a = build(p, rows, 9, &o);
    bytes = encode(p, a, &len);
    assert_true(len <= datos_answer_envelope_max(a->body_len, 20, 3));
    /* The decoded answer owns its bytes: the buffer may go at once. */
    copy = apr_pmemdup(p, bytes, len);
    assert_int_equal(decode(p, copy, len, &b, &err), APR_SUCCESS);
    memset(copy, 0xAA, len);
    assert_same_answer(p, a, b);
    /* and encodes to the very same bytes */
    {
        apr_size_t len2;
        const char *again = encode(p, b, &len2);
        assert_bytes_equal(bytes, len, again, len2);
    }
    datos_answer_free(b);

    /* no rows, no gzip */
    datos_answer_free(a);
    o = opts_for(5, NULL, 0);
    a = build(p, NULL, 0, &o);
    bytes = encode(p, a, &len);
    assert_int_equal(len, ENV_HEADER + ENV_ROW + 12 + ENV_SHA);
    assert_int_equal(decode(p, bytes, len, &b, &err), APR_SUCCESS);
    assert_same_answer(p, a, b);
    assert_null(b->deflate);
    datos_answer_free(a);
    datos_answer_free(b);
}

/* A small envelope to attack: two rows, one gzip variant. */
static const char *small_envelope(apr_pool_t *p, apr_size_t *len)
{
    int limits[] = {1};
    datos_answer_opts_t o = opts_for(10, limits, 1);
    datos_row_t *rows = sample_rows(p, 2);
    datos_answer_t *a = build(p, rows, 2, &o);
    const char *bytes = encode(p, a, len);

    datos_answer_free(a);
    return bytes;
}

static void envelope_rejects_cuts(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    apr_size_t len, i;
    const char *bytes = small_envelope(p, &len);
    datos_answer_t *a;
    datos_err_t err = {0};

    for (i = 0; i < len; i++) {
        /* a copy of exactly i bytes, so ASan sees any read past it */
        char *cut = malloc(i ? i : 1);

        memcpy(cut, bytes, i);
        assert_rejected(p, cut, i, NULL);
        free(cut);
    }
    assert_rejected(p, bytes, 0, "cut short");
    assert_rejected(p, NULL, 0, "cut short");
    assert_rejected(p, "", 0, "cut short");
    /* one byte too many is as wrong as one too few */
    {
        char *longer = apr_palloc(p, len + 1);
        memcpy(longer, bytes, len);
        longer[len] = 0;
        assert_rejected(p, longer, len + 1, "seal");
    }
    assert_int_equal(decode(p, bytes, len, &a, &err), APR_SUCCESS);
    datos_answer_free(a);
}

static void envelope_rejects_flipped_bytes(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    static const unsigned char masks[] = {0x01, 0x80, 0xff, 0x5a};
    apr_size_t len, i, m;
    const char *bytes = small_envelope(p, &len);
    char *bad = malloc(len);

    for (i = 0; i < len; i++) {
        for (m = 0; m < sizeof(masks); m++) {
            memcpy(bad, bytes, len);
            bad[i] = (char)(bad[i] ^ masks[m]);
            assert_rejected(p, bad, len, NULL);
        }
    }
    free(bad);
}

/* Writes the seal of everything before the last 32 bytes there, as an
 * encoder holding the secret would: what follows is then only wrong in its
 * structure. */
static void reseal(char *bytes, apr_size_t len)
{
    assert_int_equal(datos_seal_mac(&test_seal, bytes, len - ENV_SHA,
                                    (unsigned char *)bytes + len - ENV_SHA),
                     APR_SUCCESS);
}

static void put32(char *o, apr_uint32_t v)
{
    int i;
    for (i = 0; i < 4; i++) {
        o[i] = (char)(v >> (8 * i));
    }
}

static void put64(char *o, apr_uint64_t v)
{
    put32(o, (apr_uint32_t)v);
    put32(o + 4, (apr_uint32_t)(v >> 32));
}

static apr_uint64_t get64(const char *s)
{
    apr_uint64_t v = 0;
    int i;
    for (i = 7; i >= 0; i--) {
        v = v << 8 | (unsigned char)s[i];
    }
    return v;
}

/* An envelope sealed with another secret, or for another cache key (an
 * entry of another table copied over this one's), is refused as unsealed,
 * whole and intact as it is. */
static void envelope_refuses_other_seals(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    static const datos_secret_t other = {
        (const unsigned char *)"another secret, thirty-two bytes", 32};
    const datos_seal_t other_secret = {&other, "datos:v1:test"};
    const datos_seal_t other_key = {&test_secret, "datos:v1:other"};
    const datos_seal_t prefix_key = {&test_secret, "datos:v1:tes"};
    const datos_seal_t *seals[] = {&other_secret, &other_key, &prefix_key};
    apr_size_t len;
    const char *bytes = small_envelope(p, &len);
    datos_answer_t *a = (datos_answer_t *)&a;
    datos_err_t err = {0};
    size_t i;

    for (i = 0; i < sizeof(seals) / sizeof(seals[0]); i++) {
        datos_err_clear(&err);
        assert_int_equal(datos_answer_decode(p, bytes, len, seals[i], &a, &err),
                         DATOS_EAUTH);
        assert_null(a);
        assert_string_equal(err.reason, DATOS_REASON_SEAL);
        assert_non_null(strstr(err.message, "seal"));
    }
    /* every byte past the version is covered by the seal */
    {
        char *bad = apr_pmemdup(p, bytes, len);
        for (i = 12; i < len; i++) {
            memcpy(bad, bytes, len);
            bad[i] ^= 0x20;
            datos_err_clear(&err);
            assert_int_equal(decode(p, bad, len, &a, &err), DATOS_EAUTH);
        }
    }
    assert_int_equal(decode(p, bytes, len, &a, &err), APR_SUCCESS);
    datos_answer_free(a);
    /* resealed for another tier: trusted there, and only there */
    {
        char *copy = apr_pmemdup(p, bytes, len);

        assert_int_equal(datos_answer_reseal(copy, len, &other_secret),
                         APR_SUCCESS);
        assert_int_equal(
            datos_answer_decode(p, copy, len, &other_secret, &a, &err),
            APR_SUCCESS);
        datos_answer_free(a);
        assert_int_equal(decode(p, copy, len, &a, &err), DATOS_EAUTH);
        assert_int_equal(datos_answer_reseal(copy, 10, &test_seal), APR_EINVAL);
    }
}

static void envelope_rejects_other_versions(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    apr_size_t len;
    const char *bytes = small_envelope(p, &len);
    char *b = apr_pmemdup(p, bytes, len);

    put32(b + 8, 3);
    assert_rejected(p, b, len, "format 3");
    reseal(b, len); /* even when intact */
    assert_rejected(p, b, len, "format 3");
    /* format 1 closed with a plain SHA-256 anyone can compute */
    put32(b + 8, 1);
    SHA256((const unsigned char *)b, len - ENV_SHA,
           (unsigned char *)b + len - ENV_SHA);
    assert_rejected(p, b, len, "format 1");
    put32(b + 8, 0);
    reseal(b, len);
    assert_rejected(p, b, len, "format 0");
    memcpy(b, bytes, len);
    b[1] = 'd';
    reseal(b, len);
    assert_rejected(p, b, len, "not an answer envelope");
}

/* Envelopes with a correct seal and a wrong structure: the seal proves
 * only that the bytes are what some holder of the secret wrote. */
static void envelope_rejects_crafted(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    int limits[] = {1, 3};
    datos_answer_opts_t o = opts_for(10, limits, 2);
    datos_row_t *rows = sample_rows(p, 3);
    datos_answer_t *a = build(p, rows, 3, &o), *d;
    apr_size_t len;
    const char *bytes = encode(p, a, &len);
    const apr_size_t n = 3, rows_at = ENV_HEADER,
                     gz_at = ENV_HEADER + (n + 1) * ENV_ROW;
    const apr_size_t body_at = gz_at + 2 * ENV_GZ;
    char *b = apr_palloc(p, len);
    datos_err_t err = {0};

#define CRAFT(edit, says)                 \
    do {                                  \
        memcpy(b, bytes, len);            \
        edit;                             \
        reseal(b, len);                   \
        assert_rejected(p, b, len, says); \
    } while (0)

    /* resealing an unchanged envelope keeps it valid */
    memcpy(b, bytes, len);
    reseal(b, len);
    assert_int_equal(decode(p, b, len, &d, &err), APR_SUCCESS);
    datos_answer_free(d);

    /* row offsets: out of order, out of range, off by one, wrong start */
    CRAFT(
        {
            apr_uint64_t t = get64(b + rows_at + 8);
            put64(b + rows_at + 8, get64(b + rows_at + 16));
            put64(b + rows_at + 16, t);
        },
        "offset");
    CRAFT(put64(b + rows_at + 8 * n, a->body_len + 100), "offset");
    CRAFT(put64(b + rows_at + 8, a->row_end[1] - 1), "offset");
    CRAFT(put64(b + rows_at + 8, a->row_end[1] + 1), "offset");
    CRAFT(put64(b + rows_at + 8 * 2, get64(b + rows_at + 8)), "offset");
    CRAFT(put64(b + rows_at, 9), "offset");
    CRAFT(put64(b + rows_at + 8 * 2, APR_UINT64_MAX), "offset");
    /* counts that would overflow the size arithmetic, or lie */
    CRAFT(put32(b + 32, 0xffffffffu), "rows");
    CRAFT((put32(b + 32, 0xffffffffu), put32(b + 36, 0xffffffffu)), "rows");
    CRAFT(put32(b + 32, 0x0aaaaaabu), "rows");
    CRAFT((put32(b + 32, 0x0aaaaaabu), put32(b + 36, 0x7ffffffeu)), "lengths");
    CRAFT(put32(b + 32, 2), "lengths");
    CRAFT(put32(b + 36, 2), "rows");
    CRAFT(put32(b + 36, 0), "rows");
    CRAFT(put64(b + 48, APR_UINT64_MAX - 10), "lengths");
    CRAFT(put64(b + 48, a->body_len + 1), "lengths");
    CRAFT(put64(b + 56, APR_UINT64_MAX), "lengths");
    CRAFT(put64(b + 56, 0), "gzip");
    CRAFT(put32(b + 40, 9), "gzip");
    CRAFT(put32(b + 40, 3), "lengths");
    CRAFT(put32(b + 12, 1), "flags");
    CRAFT(put32(b + 44, 1), "flags");
    /* the body must be a /datos document */
    CRAFT(b[body_at + 5] = 'z', "body");
    CRAFT(b[body_at + a->body_len - 1] = ']', "body");
    CRAFT(b[body_at + 40] = '\0', "body");
    /* gzip variants: beyond the rows, out of order, past the stream, short
     * of its end, not at a flush point, a wrong length in the trailer */
    CRAFT(put32(b + gz_at, 4), "gzip variant 0");
    CRAFT(put32(b + gz_at + ENV_GZ, 1), "gzip variant 1");
    CRAFT(put32(b + gz_at + 4, 1), "gzip variant 0");
    CRAFT(put64(b + gz_at + 8, a->deflate_len + 1), "gzip variant 0");
    CRAFT(put64(b + gz_at + ENV_GZ + 8, a->deflate_len - 1), "gzip variant 1");
    CRAFT(put64(b + gz_at + 8, a->gz[0].end - 1), "gzip variant 0");
    CRAFT(put64(b + gz_at + 8, 0), "gzip variant 0");
    CRAFT(put64(b + gz_at + 8, a->gz[1].end), "gzip variant 1");
    CRAFT(b[gz_at + 20] ^= 1, "gzip variant 0");
    CRAFT(b[gz_at + 16] ^= 1, "gzip variant 0 has the wrong CRC-32");
    CRAFT(b[gz_at + ENV_GZ + 19] ^= 0x40,
          "gzip variant 1 has the wrong CRC-32");
#undef CRAFT
    datos_answer_free(a);
}

/* The retrieve buffer of a socache provider is sized by envelope_max: no
 * answer within the bounds may encode to more. Worst cases: the most rows
 * the payload holds (offsets and ETags dominate), and rows whose contents
 * do not compress (deflate output past its input). */
static void check_bound(apr_pool_t *p, const datos_row_t *rows, int n,
                        int max_rows, const int *limits, int count,
                        apr_size_t payload)
{
    datos_answer_opts_t o = opts_for(max_rows, limits, count);
    datos_answer_t *a = build(p, rows, n, &o), *b;
    apr_size_t len, max;
    const char *bytes = encode(p, a, &len);
    datos_err_t err = {0};

    /* and comes back from its envelope */
    assert_int_equal(decode(p, bytes, len, &b, &err), APR_SUCCESS);
    assert_bytes_equal(a->body, a->body_len, b->body, b->body_len);
    assert_string_equal(datos_answer_etag(a, n), datos_answer_etag(b, n));
    datos_answer_free(b);
    assert_true(a->body_len <= payload);
    max = datos_answer_envelope_max(payload, max_rows, count);
    if (getenv("DT_DEBUG")) {
        fprintf(stderr,
                "bound: %d rows, body %zu, deflate %zu, envelope %zu,"
                " max %zu (+%.2f%%)\n",
                a->n, (size_t)a->body_len, (size_t)a->deflate_len, (size_t)len,
                (size_t)max, 100.0 * (double)(max - len) / (double)len);
    }
    if (len > max) {
        fail_msg("envelope %zu > envelope_max %zu", (size_t)len, (size_t)max);
    }
    datos_answer_free(a);
}

static void envelope_max_is_a_bound(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    const apr_size_t payload = 256 * 1024;
    int limits[] = {1, 2, 3, 5, 8, 13, 21, 100000};
    int tiny, big, i;
    datos_row_t *rows;
    unsigned int seed = 12345;

    /* many tiny rows: each the smallest a row renders to, 64 bytes:
     * {"id":"","contenido":"","timestamp":"2024-01-14T14:00:00+00:00"} */
    tiny = (int)((payload - DATOS_RENDERED_EMPTY_LEN + 1) / (64 + 1));
    rows = apr_pcalloc(p, sizeof(*rows) * (apr_size_t)tiny);
    for (i = 0; i < tiny; i++) {
        rows[i] = mkrow("", "", TS0);
    }
    check_bound(p, rows, tiny, tiny, limits, 8, payload);
    check_bound(p, rows, tiny, tiny, limits, 0, payload);
    check_bound(p, rows, tiny, tiny, limits, 1, payload);

    /* incompressible contents: random bytes over the whole range UTF-8
     * allows (ASCII but the escaped ones, and 2- to 4-byte sequences) */
    big = 8;
    rows = apr_pcalloc(p, sizeof(*rows) * (apr_size_t)big);
    for (i = 0; i < big; i++) {
        apr_size_t room = (payload - 12) / (apr_size_t)big - 100, len = 0;
        unsigned char *c = apr_palloc(p, room + 1);

        while (len + 4 <= room) {
            unsigned int r = (seed = seed * 1664525 + 1013904223) >> 8;
            switch (r % 4) {
            case 0:
                c[len] = (unsigned char)(0x20 + (r >> 2) % 95);
                if (c[len] == '"' || c[len] == '\\') {
                    c[len] = 'x';
                }
                len++;
                break;
            case 1:
                c[len++] = (unsigned char)(0xc2 + (r >> 2) % 30);
                c[len++] = (unsigned char)(0x80 + (r >> 7) % 64);
                break;
            case 2:
                c[len++] = (unsigned char)(0xe1 + (r >> 2) % 12);
                c[len++] = (unsigned char)(0x80 + (r >> 6) % 64);
                c[len++] = (unsigned char)(0x80 + (r >> 12) % 64);
                break;
            default:
                c[len++] = (unsigned char)(0xf1 + (r >> 2) % 3);
                c[len++] = (unsigned char)(0x80 + (r >> 4) % 64);
                c[len++] = (unsigned char)(0x80 + (r >> 10) % 64);
                c[len++] = (unsigned char)(0x80 + (r >> 16) % 64);
            }
        }
        c[len] = '\0';
        rows[i] = mkrow(apr_psprintf(p, "%d", i), (const char *)c, TS0 - i);
    }
    check_bound(p, rows, big, big, limits, 8, payload);
    check_bound(p, rows, big, 100, limits, 8, payload);
    check_bound(p, rows, 1, 1, limits, 1, payload);

    /* the arithmetic saturates rather than wraps */
    assert_int_equal(datos_answer_envelope_max(APR_SIZE_MAX, 100, 8),
                     APR_SIZE_MAX);
    assert_true(datos_answer_envelope_max(1 << 20, 100, 8)
                < datos_answer_envelope_max(1 << 21, 100, 8));
}

/* ---------------------------------------------------- threads and speed */

static void *APR_THREAD_FUNC free_in_thread(apr_thread_t *t, void *data)
{
    datos_answer_free(data);
    apr_thread_exit(t, APR_SUCCESS);
    return NULL;
}

/* The thread that lets go of an answer last frees it. */
static void answer_freed_by_another_thread(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    int limits[] = {3};
    datos_answer_opts_t o = opts_for(10, limits, 1);
    datos_answer_t *a = build(p, sample_rows(p, 5), 5, &o);
    apr_thread_t *t;
    apr_status_t trv;

    assert_int_equal(apr_thread_create(&t, NULL, free_in_thread, a, p),
                     APR_SUCCESS);
    assert_int_equal(apr_thread_join(&trv, t), APR_SUCCESS);
}

static double ms_since(apr_time_t t0)
{
    return (double)(apr_time_now() - t0) / 1000.0;
}

/* Builds, encodes and decodes answers of the sizes the module keeps; the
 * times print with DT_DEBUG=1 (performance is judged by benchmarks, not
 * here). */
static void answer_build_sizes(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    static const apr_size_t sizes[] = {200, 10400};
    int limits[] = {10, 100, 1, 50};
    datos_answer_opts_t o = opts_for(100, limits, 4);
    unsigned int seed = 99;
    size_t s;
    int i, j;

    for (s = 0; s < 2; s++) {
        datos_row_t *rows = apr_pcalloc(p, sizeof(*rows) * 100);
        datos_answer_t *a, *b;
        const char *bytes;
        apr_size_t len;
        datos_err_t err = {0};
        apr_time_t t0;
        double tb, te, td;

        for (i = 0; i < 100; i++) {
            char *c = apr_palloc(p, sizes[s] + 1);
            for (j = 0; j < (int)sizes[s]; j++) {
                /* words from a small vocabulary: text-like, compressible */
                seed = seed * 1103515245 + 12345;
                c[j] = j % 7 == 6 ? ' ' : (char)('a' + (seed >> 16) % 12);
            }
            c[sizes[s]] = '\0';
            rows[i] = mkrow(apr_psprintf(p, "row-%d", i), c, TS0 - i * 1000);
        }
        t0 = apr_time_now();
        a = build(p, rows, 100, &o);
        tb = ms_since(t0);
        t0 = apr_time_now();
        bytes = encode(p, a, &len);
        te = ms_since(t0);
        t0 = apr_time_now();
        assert_int_equal(decode(p, bytes, len, &b, &err), APR_SUCCESS);
        td = ms_since(t0);
        assert_int_equal(b->body_len, a->body_len);
        assert_string_equal(datos_answer_etag(b, 37), datos_answer_etag(a, 37));
        if (getenv("DT_DEBUG")) {
            fprintf(stderr,
                    "answer of 100 rows, body %zu B, deflate %zu B: "
                    "build %.2f ms, encode %.2f ms (%zu B), decode %.2f ms\n",
                    (size_t)a->body_len, (size_t)a->deflate_len, tb, te,
                    (size_t)len, td);
        }
        datos_answer_free(a);
        datos_answer_free(b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        DT_TEST(answer_slices_and_etags),
        DT_TEST(answer_max_rows_cuts),
        DT_TEST(answer_empty),
        DT_TEST(answer_same_rows_same_etags),
        DT_TEST(answer_rejects_bad_input),
        DT_TEST(answer_gzip_variants),
        DT_TEST(answer_gzip_large),
        DT_TEST(envelope_round_trip),
        DT_TEST(envelope_rejects_cuts),
        DT_TEST(envelope_rejects_flipped_bytes),
        DT_TEST(envelope_rejects_other_versions),
        DT_TEST(envelope_refuses_other_seals),
        DT_TEST(envelope_rejects_crafted),
        DT_TEST(envelope_max_is_a_bound),
        DT_TEST(answer_freed_by_another_thread),
        DT_TEST(answer_build_sizes),
    };
    return cmocka_run_group_tests(tests, dt_group_setup, dt_group_teardown);
}
