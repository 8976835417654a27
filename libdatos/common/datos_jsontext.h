/* datos_jsontext.h - RFC 8259 tokens for the scanners of libdatos that read
 * JSON without building a tree: the record validator (datos_validate.c)
 * and the pull answer parser (datos_pubsub_pull.c). Internal, and
 * header-only: static inline so their loops can inline them.
 */
#ifndef DATOS_JSONTEXT_H
#define DATOS_JSONTEXT_H

#include <string.h>
#include <apr_pools.h>

/* Four hex digits at s into *out; -1 when one is not a hex digit. */
static inline int datos_jt_hex4(const unsigned char *s, unsigned *out)
{
    unsigned v = 0;
    int i;

    for (i = 0; i < 4; i++) {
        unsigned char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') {
            v |= (unsigned)(c - '0');
        }
        else if (c >= 'a' && c <= 'f') {
            v |= (unsigned)(c - 'a' + 10);
        }
        else if (c >= 'A' && c <= 'F') {
            v |= (unsigned)(c - 'A' + 10);
        }
        else {
            return -1;
        }
    }
    *out = v;
    return 0;
}

/* One escape at s[pos] == '\\': its length in bytes, or 0 when it is not
 * a valid escape (a \\u escape must not leave a lone surrogate). *out gets
 * the length of what it stands for in UTF-8, *cp (may be NULL) the code
 * point. */
static inline apr_size_t datos_jt_escape_len(const unsigned char *s,
                                             apr_size_t pos, apr_size_t len,
                                             apr_size_t *out, unsigned *cp)
{
    unsigned c, lo;

    if (pos + 1 >= len) {
        return 0;
    }
    switch (s[pos + 1]) {
    case '"':
    case '\\':
    case '/':
    case 'b':
    case 'f':
    case 'n':
    case 'r':
    case 't':
        *out = 1;
        if (cp) {
            *cp = s[pos + 1];
        }
        return 2;
    case 'u':
        if (len - pos < 6 || datos_jt_hex4(s + pos + 2, &c)) {
            return 0;
        }
        if (c >= 0xDC00 && c <= 0xDFFF) {
            return 0;
        }
        if (c < 0xD800 || c > 0xDBFF) {
            *out = c < 0x80 ? 1 : c < 0x800 ? 2 : 3;
            if (cp) {
                *cp = c;
            }
            return 6;
        }
        if (len - pos < 12 || s[pos + 6] != '\\' || s[pos + 7] != 'u'
            || datos_jt_hex4(s + pos + 8, &lo) || lo < 0xDC00 || lo > 0xDFFF) {
            return 0;
        }
        *out = 4;
        if (cp) {
            *cp = 0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00);
        }
        return 12;
    default: return 0;
    }
}

static inline void datos_jt_put_utf8(char **o, unsigned cp)
{
    unsigned char *u = (unsigned char *)*o;

    if (cp < 0x80) {
        *u++ = (unsigned char)cp;
    }
    else if (cp < 0x800) {
        *u++ = (unsigned char)(0xC0 | (cp >> 6));
        *u++ = (unsigned char)(0x80 | (cp & 0x3F));
    }
    else if (cp < 0x10000) {
        *u++ = (unsigned char)(0xE0 | (cp >> 12));
        *u++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        *u++ = (unsigned char)(0x80 | (cp & 0x3F));
    }
    else {
        *u++ = (unsigned char)(0xF0 | (cp >> 18));
        *u++ = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        *u++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        *u++ = (unsigned char)(0x80 | (cp & 0x3F));
    }
    *o = (char *)u;
}

/* Unescapes a string body a scanner accepted (its escapes are all valid).
 * Escapes never grow, so len bytes are enough; the result is
 * NUL-terminated in p and may hold U+0000. */
static inline const char *datos_jt_unescape(apr_pool_t *p,
                                            const unsigned char *s,
                                            apr_size_t len, apr_size_t *outlen)
{
    char *out = apr_palloc(p, len + 1), *o = out;
    apr_size_t i = 0;
    unsigned cp = 0, lo = 0;

    while (i < len) {
        if (s[i] != '\\') {
            *o++ = (char)s[i++];
            continue;
        }
        switch (s[i + 1]) {
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u':
            datos_jt_hex4(s + i + 2, &cp);
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                datos_jt_hex4(s + i + 8, &lo);
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                i += 6;
            }
            datos_jt_put_utf8(&o, cp);
            i += 4;
            break;
        default: *o++ = (char)s[i + 1]; break; /* " \ / */
        }
        i += 2;
    }
    *o = '\0';
    *outlen = (apr_size_t)(o - out);
    return out;
}

static inline apr_size_t datos_jt_skip_ws(const unsigned char *s,
                                          apr_size_t pos, apr_size_t len)
{
    while (pos < len
           && (s[pos] == ' ' || s[pos] == '\n' || s[pos] == '\r'
               || s[pos] == '\t')) {
        pos++;
    }
    return pos;
}

static inline int datos_jt_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* RFC 8259 number at pos: the offset after it, or 0 (a number is never
 * empty, so 0 cannot be a real end). *integer (may be NULL) tells whether
 * it has neither a fraction nor an exponent. */
static inline apr_size_t datos_jt_number(const unsigned char *s, apr_size_t pos,
                                         apr_size_t len, int *integer)
{
    int whole = 1;

    if (s[pos] == '-') {
        pos++;
    }
    if (pos >= len || !datos_jt_digit(s[pos])) {
        return 0;
    }
    if (s[pos] == '0') {
        pos++;
    }
    else {
        while (pos < len && datos_jt_digit(s[pos])) {
            pos++;
        }
    }
    if (pos < len && s[pos] == '.') {
        whole = 0;
        pos++;
        if (pos >= len || !datos_jt_digit(s[pos])) {
            return 0;
        }
        while (pos < len && datos_jt_digit(s[pos])) {
            pos++;
        }
    }
    if (pos < len && (s[pos] == 'e' || s[pos] == 'E')) {
        whole = 0;
        pos++;
        if (pos < len && (s[pos] == '+' || s[pos] == '-')) {
            pos++;
        }
        if (pos >= len || !datos_jt_digit(s[pos])) {
            return 0;
        }
        while (pos < len && datos_jt_digit(s[pos])) {
            pos++;
        }
    }
    if (integer) {
        *integer = whole;
    }
    return pos;
}

/* The length of the literal true, false or null (by its first byte)
 * standing at pos, or 0 when it is not there whole. */
static inline apr_size_t datos_jt_literal_len(const unsigned char *s,
                                              apr_size_t pos, apr_size_t len)
{
    const char *lit = s[pos] == 't' ? "true" : s[pos] == 'f' ? "false" : "null";
    apr_size_t n = strlen(lit);

    return len - pos >= n && !memcmp(s + pos, lit, n) ? n : 0;
}

#endif
