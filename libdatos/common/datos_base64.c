/* datos_base64.c - base64 (RFC 4648): APR-util encodes; the decoder is
 * our own, strict, and fast (see datos_base64_decode). */
#include <string.h>
#include <apr_base64.h>
#include <apr_strings.h>

#include "datos_base64.h"

char *datos_base64_encode(apr_pool_t *p, const unsigned char *data,
                          apr_size_t len, apr_size_t *outlen)
{
    char *out;
    int n;

    if (len > DATOS_BASE64_MAX) {
        return NULL;
    }
    out = apr_palloc(p, (apr_size_t)apr_base64_encode_len((int)len));
    /* APR counts the NUL it writes. */
    n = apr_base64_encode_binary(out, data, (int)len) - 1;
    if (outlen) {
        *outlen = (apr_size_t)n;
    }
    return out;
}

char *datos_base64url_encode(apr_pool_t *p, const unsigned char *data,
                             apr_size_t len)
{
    apr_size_t n, i;
    char *out = datos_base64_encode(p, data, len, &n);

    if (!out) {
        return NULL;
    }
    while (n > 0 && out[n - 1] == '=') {
        out[--n] = '\0';
    }
    for (i = 0; i < n; i++) {
        if (out[i] == '+') {
            out[i] = '-';
        }
        else if (out[i] == '/') {
            out[i] = '_';
        }
    }
    return out;
}

/* The sextet of a character of either alphabet, 64 for anything else;
 * evaluated at compile time to fill the tables below. */
#define B64V(c)                                  \
    ((c) >= 'A' && (c) <= 'Z'   ? (c) - 'A'      \
     : (c) >= 'a' && (c) <= 'z' ? (c) - 'a' + 26 \
     : (c) >= '0' && (c) <= '9' ? (c) - '0' + 52 \
     : (c) == '+' || (c) == '-' ? 62             \
     : (c) == '/' || (c) == '_' ? 63             \
                                : 64)
/* One table per position in a quad, the sextet already shifted into place
 * and anything invalid marked in bit 24: a quad is four lookups OR-ed. */
#define B64_BAD 0x01000000u
#define B64T(c, shift) \
    (B64V(c) == 64 ? B64_BAD : (apr_uint32_t)B64V(c) << (shift))
#define B64_D0(c)    B64T(c, 18)
#define B64_D1(c)    B64T(c, 12)
#define B64_D2(c)    B64T(c, 6)
#define B64_D3(c)    B64T(c, 0)
#define B64_R4(f, i) f(i), f((i) + 1), f((i) + 2), f((i) + 3)
#define B64_R16(f, i) \
    B64_R4(f, i), B64_R4(f, (i) + 4), B64_R4(f, (i) + 8), B64_R4(f, (i) + 12)
#define B64_R64(f, i)                                          \
    B64_R16(f, i), B64_R16(f, (i) + 16), B64_R16(f, (i) + 32), \
        B64_R16(f, (i) + 48)
#define B64_R256(f) \
    B64_R64(f, 0), B64_R64(f, 64), B64_R64(f, 128), B64_R64(f, 192)

static const apr_uint32_t b64_d0[256] = {B64_R256(B64_D0)};
static const apr_uint32_t b64_d1[256] = {B64_R256(B64_D1)};
static const apr_uint32_t b64_d2[256] = {B64_R256(B64_D2)};
static const apr_uint32_t b64_d3[256] = {B64_R256(B64_D3)};

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define DATOS_B64_SSSE3 1
#include <tmmintrin.h>

/* 16 characters of the standard alphabet into 12 bytes at o (which has
 * room for 16), 0 when one of them is not in it (the URL-safe alphabet
 * and the reason are then the scalar loop's business). Each character is
 * judged by a table of its low nibble AND-ed with one of its high nibble
 * (a bit per class of high nibble: 2, 3, 4 or 6, 5 or 7, any other; the
 * low-nibble table sets the classes where that low nibble is not a base64
 * character), its value is itself plus an offset picked by its high
 * nibble ('/' shares '+''s and moves one slot down), and the 4 x 6 bits of
 * each 32-bit lane are packed by two multiply-adds and one shuffle.
 * SSSE3, chosen at run time: every x86-64 of the last fifteen years. */
__attribute__((target("ssse3"))) static int decode16(const unsigned char *s,
                                                     unsigned char *o)
{
    const __m128i lo_lut =
        _mm_setr_epi8(0x15, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
                      0x11, 0x13, 0x1A, 0x1B, 0x1B, 0x1B, 0x1A);
    const __m128i hi_lut =
        _mm_setr_epi8(0x10, 0x10, 0x01, 0x02, 0x04, 0x08, 0x04, 0x08, 0x10,
                      0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10);
    const __m128i offsets =
        _mm_setr_epi8(0, 16, 19, 4, -65, -65, -71, -71, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m128i order =
        _mm_setr_epi8(2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1);
    const __m128i nibble = _mm_set1_epi8(0x0F);
    __m128i x = _mm_loadu_si128((const __m128i *)(const void *)s);
    __m128i hi = _mm_and_si128(_mm_srli_epi32(x, 4), nibble);
    __m128i lo = _mm_and_si128(x, nibble);
    __m128i bad = _mm_and_si128(_mm_shuffle_epi8(lo_lut, lo),
                                _mm_shuffle_epi8(hi_lut, hi));
    __m128i v;

    if (_mm_movemask_epi8(_mm_cmpeq_epi8(bad, _mm_setzero_si128())) != 0xFFFF) {
        return 0;
    }
    v = _mm_add_epi8(
        x,
        _mm_shuffle_epi8(
            offsets, _mm_add_epi8(hi, _mm_cmpeq_epi8(x, _mm_set1_epi8('/')))));
    v = _mm_maddubs_epi16(v, _mm_set1_epi32(0x01400140));
    v = _mm_madd_epi16(v, _mm_set1_epi32(0x00011000));
    _mm_storeu_si128((__m128i *)(void *)o, _mm_shuffle_epi8(v, order));
    return 1;
}

static int have_ssse3(void)
{
    static int known = -1;

    if (known < 0) {
        known = __builtin_cpu_supports("ssse3") ? 1 : 0;
    }
    return known;
}
#endif

/* Not apr_base64_decode: APR's decoder takes a C string and stops at the
 * first byte outside the standard alphabet, decoding what came before it,
 * so data with a stray space, a second '=' or any other junk would come
 * out silently cut, and the URL-safe alphabet that Google's parsers accept
 * (docs/google-apis.md 0.2) would come out empty. Data that is not base64
 * must mark its message, never load half of it, so the check is strict
 * here. It is also the loader's hot path (message data is most of what a
 * pull answer carries): whole quads go through the tables, the invalid
 * mark OR-ed across all of them and tested once, in one pass where a
 * check before APR's decoder would make two. */
apr_status_t datos_base64_decode_to(const char *in, apr_size_t len,
                                    unsigned char *buf, apr_size_t *outlen)
{
    const unsigned char *s = (const unsigned char *)in;
    apr_size_t n = len, pad = 0, quads, i;
    apr_status_t rv = APR_SUCCESS;
    apr_uint32_t bad = 0, v;
    unsigned char *o;

    while (n > 0 && s[n - 1] == '=' && pad < 2) {
        n--;
        pad++;
    }
    if ((pad && len % 4 != 0) || n % 4 == 1) {
        rv = DATOS_EMALFORMED;
        goto leave;
    }
    o = buf;
    quads = n / 4;
    i = 0;
#ifdef DATOS_B64_SSSE3
    /* 16 characters a time while 16 bytes may be written; a block with a
     * character of the other alphabet, or a stray one, is left to the
     * quads below. */
    if (quads >= 4 && have_ssse3()) {
        for (; i + 4 <= quads; i += 4, s += 16, o += 12) {
            if (!decode16(s, o)) {
                break;
            }
        }
    }
#endif
    for (; i < quads; i++, s += 4, o += 3) {
        v = b64_d0[s[0]] | b64_d1[s[1]] | b64_d2[s[2]] | b64_d3[s[3]];
        bad |= v;
        o[0] = (unsigned char)(v >> 16);
        o[1] = (unsigned char)(v >> 8);
        o[2] = (unsigned char)v;
    }
    if (n % 4) {
        v = b64_d0[s[0]] | b64_d1[s[1]] | (n % 4 == 3 ? b64_d2[s[2]] : 0);
        bad |= v;
        *o++ = (unsigned char)(v >> 16);
        if (n % 4 == 3) {
            *o++ = (unsigned char)(v >> 8);
        }
    }
    if (bad & B64_BAD) {
        rv = DATOS_EMALFORMED;
        goto leave;
    }
    *o = '\0';
    *outlen = (apr_size_t)(o - buf);

leave:
    return rv;
}

apr_status_t datos_base64_decode(apr_pool_t *p, const char *in, apr_size_t len,
                                 unsigned char **out, apr_size_t *outlen)
{
    unsigned char *buf = apr_palloc(p, DATOS_BASE64_DECODE_ROOM(len));
    apr_status_t rv = datos_base64_decode_to(in, len, buf, outlen);

    if (rv == APR_SUCCESS) {
        *out = buf;
    }
    return rv;
}
