/* fuzz_envelope.c - answer envelopes from the shared cache or a state file.
 *
 * The first byte picks the mode:
 *   0 (and anything not below): the rest is an envelope as read from a
 *     cache; decoding must never crash or read out of bounds, and whatever
 *     it accepts must serve sanely and encode back to the same bytes;
 *   1: the rest is an envelope without its seal, which is computed here
 *     with the fuzz secret, so the structural checks behind the seal get
 *     explored;
 *   2: the rest describes rows; the answer built from them must encode,
 *     decode and serve exactly as the original, within envelope_max.
 */
#include <string.h>
#include <apr_strings.h>
#include <openssl/sha.h>
#include <zlib.h>

#include "fuzz_common.h"
#include "datos_answer.h"
#include "datos_trust.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define TS0 1705240800000000LL

/* Every envelope here is sealed with this (the corpus too). */
static const datos_secret_t fuzz_secret = {
    (const unsigned char *)"datos fuzz secret, thirty-two b.", 32};
static const datos_seal_t fuzz_seal = {&fuzz_secret, "datos:v1:fuzz"};

static const char *slice_bytes(apr_pool_t *p, const datos_answer_t *a, int k,
                               apr_size_t *len)
{
    apr_size_t n = datos_answer_slice_len(a, k);
    char *s = apr_palloc(p, n);

    FUZZ_CHECK(n >= 12 && n <= a->body_len);
    memcpy(s, a->body, n - 2);
    memcpy(s + n - 2, "]}", 2);
    *len = n;
    return s;
}

/* What any answer must satisfy before a request may be served from it. */
static void check_servable(const datos_answer_t *a)
{
    char gz[DATOS_ETAG_GZ_SIZE];
    int k;

    FUZZ_CHECK(a->n >= 0 && a->n <= a->max_rows);
    FUZZ_CHECK(a->body[a->body_len] == '\0');
    FUZZ_CHECK(a->row_end[0] == 10 && a->row_end[a->n] + 2 == a->body_len);
    for (k = 0; k <= a->n; k++) {
        FUZZ_CHECK(k == 0 || a->row_end[k] > a->row_end[k - 1]);
        FUZZ_CHECK(strlen(datos_answer_etag(a, k)) == DATOS_ETAG_SIZE - 1);
        datos_answer_etag_gz(a, k, gz);
        FUZZ_CHECK(strlen(gz) == DATOS_ETAG_GZ_SIZE - 1);
    }
    for (k = 0; k < a->gz_count; k++) {
        FUZZ_CHECK(a->gz[k].rows >= 0 && a->gz[k].rows <= a->n);
        FUZZ_CHECK(a->gz[k].end <= a->deflate_len);
        FUZZ_CHECK(datos_answer_gzip(a, a->gz[k].rows) == &a->gz[k]);
    }
}

/* A decoded envelope is exactly what its encoder wrote: encoding it again
 * gives the same bytes. */
static void check_reencodes(apr_pool_t *p, const datos_answer_t *a,
                            const uint8_t *bytes, size_t len)
{
    const char *again;
    apr_size_t alen;
    datos_err_t err = {0};

    FUZZ_CHECK(datos_answer_encode(p, a, &fuzz_seal, &again, &alen, &err)
               == APR_SUCCESS);
    FUZZ_CHECK(alen == len && memcmp(again, bytes, len) == 0);
}

static void decode_mode(apr_pool_t *p, const uint8_t *data, size_t size)
{
    datos_answer_t *a = NULL;
    datos_err_t err = {0};

    datos_err_clear(&err);
    if (datos_answer_decode(p, (const char *)data, size, &fuzz_seal, &a, &err)
        == APR_SUCCESS) {
        check_servable(a);
        check_reencodes(p, a, data, size);
        datos_answer_free(a);
    }
    else {
        FUZZ_CHECK(a == NULL && err.message);
    }
}

static void reseal_mode(apr_pool_t *p, const uint8_t *data, size_t size)
{
    uint8_t *b = malloc(size + DATOS_SEAL_LEN);

    memcpy(b, data, size);
    FUZZ_CHECK(datos_seal_mac(&fuzz_seal, b, size, b + size) == APR_SUCCESS);
    decode_mode(p, b, size + DATOS_SEAL_LEN);
    free(b);
}

static void inflate_check(const unsigned char *in, apr_size_t inlen,
                          const char *want, apr_size_t wantlen)
{
    z_stream zs;
    unsigned char *out = malloc(wantlen + 1);
    int zrv;

    memset(&zs, 0, sizeof(zs));
    FUZZ_CHECK(inflateInit2(&zs, 31) == Z_OK);
    zs.next_in = (Bytef *)in;
    zs.avail_in = (uInt)inlen;
    zs.next_out = out;
    zs.avail_out = (uInt)wantlen + 1;
    zrv = inflate(&zs, Z_FINISH);
    FUZZ_CHECK(zrv == Z_STREAM_END && zs.avail_in == 0);
    FUZZ_CHECK(zs.total_out == wantlen && memcmp(out, want, wantlen) == 0);
    inflateEnd(&zs);
    free(out);
}

static void build_mode(apr_pool_t *p, const uint8_t *d, size_t size)
{
    datos_answer_opts_t o;
    datos_row_t rows[64];
    datos_answer_t *a = NULL, *b = NULL;
    datos_err_t err = {0};
    const char *env;
    apr_size_t envlen, hlen, tlen, slen;
    const unsigned char *h = datos_answer_gzip_header(&hlen);
    const unsigned char *t = datos_answer_gzip_tail(&tlen);
    size_t i = 0;
    int n = 0, k;

    if (size < 2) {
        return;
    }
    memset(&o, 0, sizeof(o));
    o.max_rows = 1 + d[i++] % 48;
    o.gzip_count = d[i++] % (DATOS_ANSWER_GZIP_MAX + 1);
    o.fetched = TS0;
    o.watermark_us = TS0 - 86400000000LL;
    for (k = 0; k < o.gzip_count; k++) {
        o.gzip_limits[k] = i < size ? 1 + d[i++] % 64 : 1;
    }
    /* rows: a header byte (id length, null contenido, raw bytes or ASCII),
     * a length byte, then the contenido */
    while (i + 2 <= size && n < 64) {
        uint8_t head = d[i++];
        size_t clen = d[i++], idlen = head & 7;
        char *id, *c = NULL;

        if (idlen > size - i) {
            idlen = size - i;
        }
        id = apr_pstrmemdup(p, (const char *)d + i, idlen);
        i += idlen;
        if (clen > size - i) {
            clen = size - i;
        }
        if (!(head & 8)) {
            c = apr_pstrmemdup(p, (const char *)d + i, clen);
            if (!(head & 16)) {
                for (k = 0; k < (int)clen; k++) {
                    c[k] &= 0x7f;
                }
            }
            i += clen;
        }
        if (!(head & 16)) {
            for (k = 0; k < (int)idlen; k++) {
                id[k] &= 0x7f;
            }
        }
        rows[n].id = id;
        rows[n].id_len = idlen;
        rows[n].contenido = c;
        rows[n].contenido_len = c ? clen : 0;
        rows[n].timestamp_us = TS0 - (long long)(head >> 5) * 1000003LL * n;
        n++;
    }
    if (datos_answer_build(p, rows, n, &o, &a, &err) != APR_SUCCESS) {
        FUZZ_CHECK(a == NULL);
        return;
    }
    check_servable(a);
    FUZZ_CHECK(a->n == (n < o.max_rows ? n : o.max_rows));
    FUZZ_CHECK(datos_answer_encode(p, a, &fuzz_seal, &env, &envlen, &err)
               == APR_SUCCESS);
    FUZZ_CHECK(envlen <= datos_answer_envelope_max(a->body_len, o.max_rows,
                                                   o.gzip_count));
    FUZZ_CHECK(datos_answer_decode(p, env, envlen, &fuzz_seal, &b, &err)
               == APR_SUCCESS);
    check_servable(b);
    check_reencodes(p, b, (const uint8_t *)env, envlen);

    FUZZ_CHECK(b->n == a->n && b->body_len == a->body_len
               && memcmp(a->body, b->body, a->body_len) == 0);
    FUZZ_CHECK(b->gz_count == a->gz_count && b->deflate_len == a->deflate_len);
    for (k = -1; k <= a->n + 1; k++) {
        const datos_answer_gz_t *za = datos_answer_gzip(a, k);
        const datos_answer_gz_t *zb = datos_answer_gzip(b, k);
        const char *s = slice_bytes(p, a, k, &slen);
        unsigned char md[SHA256_DIGEST_LENGTH];
        char hex[DATOS_ETAG_SIZE];
        int j;

        FUZZ_CHECK(datos_answer_slice_len(b, k) == slen);
        FUZZ_CHECK(strcmp(datos_answer_etag(a, k), datos_answer_etag(b, k))
                   == 0);
        SHA256((const unsigned char *)s, slen, md);
        hex[0] = '"';
        for (j = 0; j < 16; j++) {
            hex[1 + 2 * j] = "0123456789abcdef"[md[j] >> 4];
            hex[2 + 2 * j] = "0123456789abcdef"[md[j] & 15];
        }
        hex[33] = '"';
        hex[34] = '\0';
        FUZZ_CHECK(strcmp(datos_answer_etag(a, k), hex) == 0);
        FUZZ_CHECK((za == NULL) == (zb == NULL));
        if (za) {
            unsigned char *g = malloc(za->len);

            FUZZ_CHECK(za->rows == zb->rows && za->end == zb->end
                       && za->len == zb->len
                       && memcmp(za->trailer, zb->trailer, 8) == 0);
            memcpy(g, h, hlen);
            memcpy(g + hlen, b->deflate, zb->end);
            memcpy(g + hlen + zb->end, t, tlen);
            memcpy(g + hlen + zb->end + tlen, zb->trailer, 8);
            FUZZ_CHECK(hlen + zb->end + tlen + 8 == zb->len);
            inflate_check(g, zb->len, s, slen);
            free(g);
        }
    }
    datos_answer_free(a);
    datos_answer_free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p;

    fuzz_apr_init();
    if (size < 1 || apr_pool_create(&p, NULL) != APR_SUCCESS) {
        return 0;
    }
    switch (data[0]) {
    case 1: reseal_mode(p, data + 1, size - 1); break;
    case 2: build_mode(p, data + 1, size - 1); break;
    default: decode_mode(p, data + 1, size - 1);
    }
    apr_pool_destroy(p);
    return 0;
}
