/* datos_utf8.h - UTF-8 and JSON string helpers shared inside libdatos
 * (rendering, the record scanner, the NDJSON encoder, Pub/Sub bodies).
 * Internal, and header-only: static inline so the hot loops can inline
 * them. */
#ifndef DATOS_UTF8_H
#define DATOS_UTF8_H

#include <stdint.h>
#include <string.h>
#include <apr.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* Length of one well-formed UTF-8 sequence at s (RFC 3629: no overlongs,
 * no surrogates, nothing above U+10FFFF), or 0 when it is not one. */
static inline apr_size_t datos_utf8_seq(const unsigned char *s,
                                        apr_size_t avail)
{
    unsigned char c = s[0];

    if (c < 0x80) {
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        return avail >= 2 && (s[1] & 0xC0) == 0x80 ? 2 : 0;
    }
    if (c >= 0xE0 && c <= 0xEF) {
        unsigned char lo = c == 0xE0 ? 0xA0 : 0x80;
        unsigned char hi = c == 0xED ? 0x9F : 0xBF;
        return avail >= 3 && s[1] >= lo && s[1] <= hi && (s[2] & 0xC0) == 0x80
                   ? 3
                   : 0;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        unsigned char lo = c == 0xF0 ? 0x90 : 0x80;
        unsigned char hi = c == 0xF4 ? 0x8F : 0xBF;
        return avail >= 4 && s[1] >= lo && s[1] <= hi && (s[2] & 0xC0) == 0x80
                       && (s[3] & 0xC0) == 0x80
                   ? 4
                   : 0;
    }
    return 0;
}

/* Word-at-a-time scanning. The tests below are exact as booleans and their
 * lowest set bit marks the first matching byte exactly (a borrow can only
 * create false marks above a true one), so on little-endian machines the
 * count of trailing zero bits / 8 is the offset of the first match. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ \
    && (defined(__GNUC__) || defined(__clang__))
#define DATOS_SWAR 1
#define DATOS_ONES UINT64_C(0x0101010101010101)
#define DATOS_HIGH UINT64_C(0x8080808080808080)

static inline uint64_t datos_swar_load(const unsigned char *s)
{
    uint64_t x;
    memcpy(&x, s, 8);
    return x;
}

/* High bit set in each byte equal to b (and possibly above one). */
static inline uint64_t datos_swar_eq(uint64_t x, unsigned char b)
{
    uint64_t q = x ^ (DATOS_ONES * b);
    return (q - DATOS_ONES) & ~q & DATOS_HIGH;
}

/* Bytes a JSON string scanner must stop at: '"', '\\', controls below
 * 0x20 and every non-ASCII byte. */
static inline uint64_t datos_swar_json_special(uint64_t x)
{
    return (datos_swar_eq(x, '"') | datos_swar_eq(x, '\\')
            | ((x - DATOS_ONES * 0x20) & ~x) | x)
           & DATOS_HIGH;
}

static inline apr_size_t datos_swar_first(uint64_t mask)
{
    return (apr_size_t)__builtin_ctzll(mask) >> 3;
}
#endif

/* The first offset from pos on (up to len) of a byte a JSON string scanner
 * must stop at - '"', '\\', a control below 0x20 or any non-ASCII byte -
 * or len when there is none: 16 bytes at a time with SSE2 (every x86-64),
 * 8 with SWAR elsewhere. The string bodies of the pull answers and the
 * records are the loader's hot path (docs/design.md section 8). */
static inline apr_size_t datos_json_plain_run(const unsigned char *s,
                                              apr_size_t pos, apr_size_t len)
{
#ifdef __SSE2__
    const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\'),
                  space = _mm_set1_epi8(0x20);

    while (pos + 16 <= len) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(s + pos));
        /* signed: every byte from 0x80 up is below 0x20 too */
        int m = _mm_movemask_epi8(_mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, bslash)),
            _mm_cmplt_epi8(x, space)));
        if (m) {
            return pos + (apr_size_t)__builtin_ctz((unsigned)m);
        }
        pos += 16;
    }
#endif
#ifdef DATOS_SWAR
    while (pos + 8 <= len) {
        uint64_t m = datos_swar_json_special(datos_swar_load(s + pos));
        if (m) {
            return pos + datos_swar_first(m);
        }
        pos += 8;
    }
#endif
    while (pos < len && s[pos] != '"' && s[pos] != '\\' && s[pos] >= 0x20
           && s[pos] < 0x80) {
        pos++;
    }
    return pos;
}

/* Offset of the first byte of s that is not part of well-formed UTF-8, or
 * len when all of s is UTF-8. */
static inline apr_size_t datos_utf8_check(const unsigned char *s,
                                          apr_size_t len)
{
    apr_size_t i = 0, k;

    while (i < len) {
#ifdef DATOS_SWAR
        if (i + 8 <= len) {
            uint64_t m = datos_swar_load(s + i) & DATOS_HIGH;
            if (!m) {
                i += 8;
                continue;
            }
            i += datos_swar_first(m);
        }
#endif
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        k = datos_utf8_seq(s + i, len - i);
        if (!k) {
            return i;
        }
        i += k;
    }
    return len;
}

/* datos_json_escape flag: U+2028/U+2029 escaped too, for text read line
 * by line (NDJSON) or by JavaScript-derived readers, which take them for
 * line ends. */
#define DATOS_JSON_LINE_SEPARATORS 0x1

/* True when the three bytes at s are U+2028 or U+2029. */
static inline int datos_utf8_line_separator(const unsigned char *s)
{
    return s[0] == 0xE2 && s[1] == 0x80 && (s[2] == 0xA8 || s[2] == 0xA9);
}

/* The one JSON string escaper of libdatos: the body of s into o, which has
 * room for 6 * len bytes: '"', '\\' and controls below U+0020 escaped (the
 * short forms where JSON has them), U+2028/U+2029 too with
 * DATOS_JSON_LINE_SEPARATORS, everything else copied. Returns the end, or
 * NULL when s is not UTF-8. */
static inline char *datos_json_escape(char *o, const unsigned char *s,
                                      apr_size_t len, int flags)
{
    static const char hex[] = "0123456789abcdef";
    apr_size_t i = 0, k;

    while (i < len) {
        unsigned char c;
#ifdef DATOS_SWAR
        if (i + 8 <= len) {
            uint64_t m = datos_swar_json_special(datos_swar_load(s + i));
            if (!m) {
                memcpy(o, s + i, 8);
                o += 8;
                i += 8;
                continue;
            }
            k = datos_swar_first(m);
            memcpy(o, s + i, k);
            o += k;
            i += k;
        }
#endif
        c = s[i];
        if (c >= 0x80) {
            k = datos_utf8_seq(s + i, len - i);
            if (!k) {
                return NULL;
            }
            if ((flags & DATOS_JSON_LINE_SEPARATORS) && k == 3
                && datos_utf8_line_separator(s + i)) {
                memcpy(o, s[i + 2] == 0xA8 ? "\\u2028" : "\\u2029", 6);
                o += 6;
            }
            else {
                memcpy(o, s + i, k);
                o += k;
            }
            i += k;
            continue;
        }
        switch (c) {
        case '"':
            *o++ = '\\';
            *o++ = '"';
            break;
        case '\\':
            *o++ = '\\';
            *o++ = '\\';
            break;
        case '\b':
            *o++ = '\\';
            *o++ = 'b';
            break;
        case '\f':
            *o++ = '\\';
            *o++ = 'f';
            break;
        case '\n':
            *o++ = '\\';
            *o++ = 'n';
            break;
        case '\r':
            *o++ = '\\';
            *o++ = 'r';
            break;
        case '\t':
            *o++ = '\\';
            *o++ = 't';
            break;
        default:
            if (c < 0x20) {
                memcpy(o, "\\u00", 4);
                o[4] = hex[c >> 4];
                o[5] = hex[c & 15];
                o += 6;
            }
            else {
                *o++ = (char)c;
            }
        }
        i++;
    }
    return o;
}

/* The length datos_json_escape would write with the same flags, or
 * (apr_size_t)-1 when s is not UTF-8 (then *bad, when given, is the offset
 * of the first byte that is not). For bodies sized before they are built. */
static inline apr_size_t datos_json_escaped_len(const unsigned char *s,
                                                apr_size_t len, int flags,
                                                apr_size_t *bad)
{
    apr_size_t i = 0, n = 0, k;

    while (i < len) {
        unsigned char c = s[i];
        if (c >= 0x80) {
            k = datos_utf8_seq(s + i, len - i);
            if (!k) {
                if (bad) {
                    *bad = i;
                }
                return (apr_size_t)-1;
            }
            n += (flags & DATOS_JSON_LINE_SEPARATORS) && k == 3
                         && datos_utf8_line_separator(s + i)
                     ? 6
                     : k;
            i += k;
        }
        else if (c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n'
                 || c == '\r' || c == '\t') {
            n += 2;
            i++;
        }
        else {
            n += c < 0x20 ? 6 : 1;
            i++;
        }
    }
    return n;
}

#endif
