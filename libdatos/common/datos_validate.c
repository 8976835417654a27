/* datos_validate.c - the record validator (docs/design.md section 3).
 *
 * The loader must validate and encode at least 250,000 messages per second
 * per core (docs/design.md section 8). jansson builds a tree, allocates every
 * value and reads its input one byte at a time through a stream callback,
 * which is several times too slow on the benchmark mix (make bench-record
 * prints both). So the record gets its own single-pass RFC 8259 scanner: it
 * builds nothing, skips string bodies a word at a time, remembers where the
 * three record fields are, and unescapes only an id, a timestamp or a key
 * that holds escapes. contenido is never unescaped on the loader's path:
 * its JSON text is valid as written, so the NDJSON line copies it, and the
 * size rule needs only its unescaped length, counted during the scan.
 * jansson stays as datos_record_validate_jansson, the oracle the fuzz target
 * compares the scanner with.
 *
 * Both share check_fields(), so the field rules and their details exist
 * once; only the structure pass differs.
 */
#include <stdlib.h>
#include <string.h>
#include <apr_strings.h>
#include <jansson.h>

#include "datos_json.h"
#include "datos_record.h"
#include "datos_time.h"
#include "datos_utf8.h"

/* Bytes of a user value quoted in a detail. */
#define EXCERPT_MAX 40

static const char *const reason_names[DATOS_REASON_COUNT] = {
    "none",
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
};

const char *datos_reason_name(datos_reason_t r)
{
    return (int)r >= 0 && r < DATOS_REASON_COUNT ? reason_names[r] : NULL;
}

datos_reason_t datos_reason_from_name(const char *name)
{
    int i;

    for (i = 1; name && i < DATOS_REASON_COUNT; i++) {
        if (!strcmp(name, reason_names[i])) {
            return (datos_reason_t)i;
        }
    }
    return DATOS_REASON_NONE;
}

void datos_record_opts_init(datos_record_opts_t *o, apr_time_t now)
{
    o->now = now;
    o->max_future_skew = DATOS_MAX_FUTURE_SKEW;
    o->unknown = DATOS_UNKNOWN_REJECT;
}

/* ------------------------------------------------------------------ details */

static const char hexdigits[] = "0123456789abcdef";

static char *put_u(char *o, unsigned cp)
{
    memcpy(o, "\\u", 2);
    o[2] = hexdigits[(cp >> 12) & 15];
    o[3] = hexdigits[(cp >> 8) & 15];
    o[4] = hexdigits[(cp >> 4) & 15];
    o[5] = hexdigits[cp & 15];
    return o + 6;
}

/* A short quoted copy of a user value for a detail: at most max bytes of
 * s, cut on a character boundary ("..." marks the cut), with
 * quotes, backslashes and every control character (C0, DEL, C1) escaped, so
 * the detail stays one clean line. Bytes that are not UTF-8 (only raw input
 * near a syntax error, or jansson's text, can hold them) come out as
 * \\u00XX of the byte. */
static const char *excerpt_n(apr_pool_t *p, const char *s, apr_size_t len,
                             apr_size_t max)
{
    const unsigned char *u = (const unsigned char *)s;
    apr_size_t n = len > max ? max : len, i = 0, k;
    char *out = apr_palloc(p, n * 6 + 8), *o = out;

    while (n < len && n > 0 && (u[n] & 0xC0) == 0x80) {
        n--;
    }
    *o++ = '"';
    while (i < n) {
        unsigned char c = u[i];
        if (c == '"' || c == '\\') {
            *o++ = '\\';
            *o++ = (char)c;
            i++;
        }
        else if (c < 0x20 || c == 0x7f) {
            o = put_u(o, c);
            i++;
        }
        else if (c < 0x80) {
            *o++ = (char)c;
            i++;
        }
        else if (!(k = datos_utf8_seq(u + i, n - i))) {
            o = put_u(o, c);
            i++;
        }
        else if (k == 2 && c == 0xC2 && u[i + 1] < 0xA0) {
            o = put_u(o, u[i + 1]); /* C1 control U+0080-U+009F */
            i += 2;
        }
        else {
            memcpy(o, u + i, k);
            o += k;
            i += k;
        }
    }
    *o++ = '"';
    if (n < len) {
        memcpy(o, "...", 3);
        o += 3;
    }
    *o = '\0';
    return out;
}

static const char *excerpt(apr_pool_t *p, const char *s, apr_size_t len)
{
    return excerpt_n(p, s, len, EXCERPT_MAX);
}

static apr_status_t invalid(apr_pool_t *p, datos_invalid_t *why,
                            datos_reason_t reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Fills *why; the detail is cut to DATOS_DETAIL_MAX_BYTES on a UTF-8
 * boundary (the texts here stay far below it; the cut is the guarantee). */
static apr_status_t invalid(apr_pool_t *p, datos_invalid_t *why,
                            datos_reason_t reason, const char *fmt, ...)
{
    va_list ap;
    char *d;
    apr_size_t n;

    va_start(ap, fmt);
    d = apr_pvsprintf(p, fmt, ap);
    va_end(ap);
    n = strlen(d);
    if (n > DATOS_DETAIL_MAX_BYTES) {
        n = DATOS_DETAIL_MAX_BYTES;
        while (n > 0 && ((unsigned char)d[n] & 0xC0) == 0x80) {
            n--;
        }
        d[n] = '\0';
    }
    why->reason = reason;
    why->detail = d;
    return DATOS_EMALFORMED;
}

/* ------------------------------------------------------------------ field rules */

enum {
    F_ID,
    F_CONTENIDO,
    F_TIMESTAMP,
    F_NFIELDS,
    F_UNKNOWN = F_NFIELDS
};
enum {
    T_ABSENT = 0,
    T_STRING,
    T_NULL,
    T_NUMBER,
    T_BOOL,
    T_OBJECT,
    T_ARRAY
};

typedef struct field_t {
    int type;
    const char *str; /* T_STRING: the unescaped value; NULL when left
                           * escaped (the scanner's contenido) */
    apr_size_t len;  /* T_STRING: length of the unescaped value */
    const char *raw; /* T_STRING, scanner only: the JSON string body */
    apr_size_t raw_len;
} field_t;

/* What a structure pass found in a well-formed object. */
typedef struct found_t {
    field_t f[F_NFIELDS];
    const char *unknown; /* the first unknown top-level key, unescaped */
    apr_size_t unknown_len;
    int n_unknown;
} found_t;

static const char *type_name(int t)
{
    switch (t) {
    case T_STRING: return "a string";
    case T_NULL: return "null";
    case T_NUMBER: return "a number";
    case T_BOOL: return "a boolean";
    case T_OBJECT: return "an object";
    case T_ARRAY: return "an array";
    default: return "absent";
    }
}

static int field_of(const char *k, apr_size_t n)
{
    if (n == 2 && !memcmp(k, "id", 2)) {
        return F_ID;
    }
    if (n == 9 && !memcmp(k, "contenido", 9)) {
        return F_CONTENIDO;
    }
    if (n == 9 && !memcmp(k, "timestamp", 9)) {
        return F_TIMESTAMP;
    }
    return F_UNKNOWN;
}

/* Offset of the first control character (U+0000-U+001F, U+007F-U+009F) in
 * UTF-8 text, or len. */
static apr_size_t find_control(const char *s, apr_size_t len, unsigned *cp)
{
    const unsigned char *u = (const unsigned char *)s;
    apr_size_t i;

    for (i = 0; i < len; i++) {
        if (u[i] < 0x20 || u[i] == 0x7f) {
            *cp = u[i];
            return i;
        }
        if (u[i] == 0xC2 && i + 1 < len && u[i + 1] >= 0x80
            && u[i + 1] <= 0x9F) {
            *cp = u[i + 1];
            return i;
        }
    }
    return len;
}

/* The field rules, in their order. On success *ts_us is the timestamp. */
static apr_status_t check_fields(apr_pool_t *p, const datos_record_opts_t *o,
                                 const found_t *fd, apr_int64_t *ts_us,
                                 datos_invalid_t *why)
{
    const field_t *id = &fd->f[F_ID], *c = &fd->f[F_CONTENIDO],
                  *ts = &fd->f[F_TIMESTAMP];
    apr_status_t rv = APR_SUCCESS;
    apr_int64_t us, limit;
    apr_size_t at;
    unsigned cp;

    if (id->type == T_ABSENT) {
        rv = invalid(p, why, DATOS_REASON_MISSING_ID,
                     "the record has no \"id\" field");
        goto leave;
    }
    if (id->type != T_STRING) {
        rv = invalid(p, why, DATOS_REASON_BAD_ID,
                     "\"id\" must be a string, not %s", type_name(id->type));
        goto leave;
    }
    if (id->len == 0) {
        rv = invalid(p, why, DATOS_REASON_BAD_ID, "\"id\" is empty");
        goto leave;
    }
    if (id->len > DATOS_ID_MAX_BYTES) {
        rv = invalid(p, why, DATOS_REASON_ID_TOO_LONG,
                     "\"id\" is %" APR_SIZE_T_FMT " bytes of UTF-8, more "
                     "than %d; it starts %s",
                     id->len, DATOS_ID_MAX_BYTES, excerpt(p, id->str, id->len));
        goto leave;
    }
    at = find_control(id->str, id->len, &cp);
    if (at < id->len) {
        rv = invalid(p, why, DATOS_REASON_BAD_ID,
                     "\"id\" %s holds the control character U+%04X at byte "
                     "%" APR_SIZE_T_FMT,
                     excerpt(p, id->str, id->len), cp, at);
        goto leave;
    }

    if (c->type == T_STRING) {
        if (c->len > DATOS_CONTENIDO_MAX_BYTES) {
            rv = invalid(p, why, DATOS_REASON_CONTENIDO_TOO_LARGE,
                         "\"contenido\" is %" APR_SIZE_T_FMT " bytes of "
                         "UTF-8, more than %d",
                         c->len, DATOS_CONTENIDO_MAX_BYTES);
            goto leave;
        }
    }
    else if (c->type != T_ABSENT && c->type != T_NULL) {
        rv = invalid(p, why, DATOS_REASON_BAD_CONTENIDO,
                     "\"contenido\" must be a string or null, not %s",
                     type_name(c->type));
        goto leave;
    }

    if (ts->type == T_ABSENT) {
        rv = invalid(p, why, DATOS_REASON_MISSING_TIMESTAMP,
                     "the record has no \"timestamp\" field");
        goto leave;
    }
    if (ts->type != T_STRING) {
        rv = invalid(p, why, DATOS_REASON_BAD_TIMESTAMP,
                     "\"timestamp\" must be an RFC 3339 string, not %s",
                     type_name(ts->type));
        goto leave;
    }
    if (datos_ts_parse_rfc3339(ts->str, ts->len, &us) != APR_SUCCESS) {
        rv = invalid(p, why, DATOS_REASON_BAD_TIMESTAMP,
                     "\"timestamp\" %s is not RFC 3339 "
                     "(YYYY-MM-DDTHH:MM:SS[.ffffff] and Z or +-hh:mm, at "
                     "most 6 fraction digits)",
                     excerpt(p, ts->str, ts->len));
        goto leave;
    }
    if (us < 0) {
        rv = invalid(p, why, DATOS_REASON_BAD_TIMESTAMP,
                     "\"timestamp\" %s is before 1970-01-01T00:00:00Z",
                     excerpt(p, ts->str, ts->len));
        goto leave;
    }
    limit = o->now > APR_INT64_MAX - o->max_future_skew
                ? APR_INT64_MAX
                : o->now + o->max_future_skew;
    if (us > limit) {
        char now[DATOS_TS_BUFSIZE];
        if (!datos_ts_format(o->now, now)) {
            strcpy(now, "out of range");
        }
        rv = invalid(p, why, DATOS_REASON_FUTURE_TIMESTAMP,
                     "\"timestamp\" %s is more than %" APR_INT64_T_FMT
                     " s in the future (now is %s)",
                     excerpt(p, ts->str, ts->len),
                     (apr_int64_t)apr_time_sec(o->max_future_skew), now);
        goto leave;
    }

    if (fd->n_unknown && o->unknown == DATOS_UNKNOWN_REJECT) {
        rv = invalid(p, why, DATOS_REASON_UNKNOWN_FIELD,
                     "unknown field %s%s; the record has only \"id\", "
                     "\"contenido\" and \"timestamp\"",
                     excerpt(p, fd->unknown, fd->unknown_len),
                     fd->n_unknown > 1
                         ? apr_psprintf(p, " and %d more", fd->n_unknown - 1)
                         : "");
        goto leave;
    }

    *ts_us = us;
    why->reason = DATOS_REASON_NONE;
    why->detail = NULL;

leave:
    return rv;
}

/* ------------------------------------------------------------------ the scanner */

typedef struct jkey_t {
    const char *s; /* NULL marks where an object's keys start */
    apr_size_t len;
} jkey_t;

typedef struct scan_t {
    apr_pool_t *p;
    const unsigned char *s;
    apr_size_t len;
    jkey_t *keys; /* keys of every open object, innermost last */
    apr_size_t nkeys, capkeys;
    const char *dup; /* the first duplicate key found, or NULL */
    apr_size_t dup_len;
    datos_reason_t fail; /* NOT_JSON or NOT_UTF8 once the scan failed */
    apr_size_t fail_pos;
    const char *fail_what;
    apr_array_header_t *spans; /* when set: a root array's elements */
    apr_size_t span_start;
} scan_t;

static int scan_fail(scan_t *sc, apr_size_t pos, const char *what)
{
    sc->fail = DATOS_REASON_NOT_JSON;
    sc->fail_pos = pos;
    sc->fail_what = what;
    return -1;
}

static int hex4(const unsigned char *s, unsigned *out)
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
 * the length of what it stands for in UTF-8. */
static apr_size_t escape_len(const unsigned char *s, apr_size_t pos,
                             apr_size_t len, apr_size_t *out)
{
    unsigned cp, lo;

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
    case 't': *out = 1; return 2;
    case 'u':
        if (len - pos < 6 || hex4(s + pos + 2, &cp)) {
            return 0;
        }
        if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return 0;
        }
        if (cp < 0xD800 || cp > 0xDBFF) {
            *out = cp < 0x80 ? 1 : cp < 0x800 ? 2 : 3;
            return 6;
        }
        if (len - pos < 12 || s[pos + 6] != '\\' || s[pos + 7] != 'u'
            || hex4(s + pos + 8, &lo) || lo < 0xDC00 || lo > 0xDFFF) {
            return 0;
        }
        *out = 4;
        return 12;
    default: return 0;
    }
}

/* The string whose body starts at pos: *end is the offset of its closing
 * quote, *esc whether it holds escapes, *shrink how many bytes shorter
 * than the body its unescaped value is. */
static int scan_string(scan_t *sc, apr_size_t pos, apr_size_t *end, int *esc,
                       apr_size_t *shrink)
{
    const unsigned char *s = sc->s;
    apr_size_t len = sc->len, k, d = 0;

    *esc = 0;
    *shrink = 0;
    for (;;) {
        unsigned char c;
#ifdef DATOS_SWAR
        if (pos + 8 <= len) {
            uint64_t m = datos_swar_json_special(datos_swar_load(s + pos));
            if (!m) {
                pos += 8;
                continue;
            }
            pos += datos_swar_first(m);
        }
#endif
        if (pos >= len) {
            return scan_fail(sc, pos, "unterminated string");
        }
        c = s[pos];
        /* non-ASCII first: in running text it is the usual stop, and most
         * of it is two-byte Latin */
        if (c >= 0x80) {
            if (c >= 0xC2 && c <= 0xDF && pos + 1 < len
                && (s[pos + 1] & 0xC0) == 0x80) {
                pos += 2;
                continue;
            }
            k = datos_utf8_seq(s + pos, len - pos);
            if (!k) {
                sc->fail = DATOS_REASON_NOT_UTF8;
                sc->fail_pos = pos;
                return -1;
            }
            pos += k;
        }
        else if (c == '"') {
            *end = pos;
            return 0;
        }
        else if (c == '\\') {
            k = escape_len(s, pos, len, &d);
            if (!k) {
                return scan_fail(sc, pos,
                                 "invalid escape (or a lone "
                                 "surrogate) in a string");
            }
            *esc = 1;
            *shrink += k - d;
            pos += k;
        }
        else if (c < 0x20) {
            return scan_fail(sc, pos, "control character inside a string");
        }
        else {
            pos++;
        }
    }
}

static void put_utf8(char **o, unsigned cp)
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

/* Unescapes a string body that scan_string accepted. Escapes never grow,
 * so len bytes are enough. */
static const char *unescape(apr_pool_t *p, const unsigned char *s,
                            apr_size_t len, apr_size_t *outlen)
{
    char *out = apr_palloc(p, len + 1), *o = out;
    apr_size_t i = 0;
    unsigned cp, lo;

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
            hex4(s + i + 2, &cp);
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                hex4(s + i + 8, &lo);
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                i += 6;
            }
            put_utf8(&o, cp);
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

static void push_key(scan_t *sc, const char *k, apr_size_t len)
{
    if (sc->nkeys == sc->capkeys) {
        jkey_t *grown = apr_palloc(sc->p, sizeof(*grown) * sc->capkeys * 2);
        memcpy(grown, sc->keys, sizeof(*grown) * sc->nkeys);
        sc->keys = grown;
        sc->capkeys *= 2;
    }
    sc->keys[sc->nkeys].s = k;
    sc->keys[sc->nkeys].len = len;
    sc->nkeys++;
}

static int key_cmp(const void *a, const void *b)
{
    const jkey_t *x = a, *y = b;

    if (x->len != y->len) {
        return x->len < y->len ? -1 : 1;
    }
    return memcmp(x->s, y->s, x->len);
}

/* Pops the innermost object's keys, checking them for duplicates first
 * (until one is found: the reason is the same whatever comes after). Small
 * objects are compared pairwise; large ones sorted, so a hostile object
 * with many keys costs n log n, not n squared. */
static void close_object(scan_t *sc)
{
    apr_size_t start = sc->nkeys, n, i, j;
    jkey_t *k;

    while (sc->keys[start - 1].s) {
        start--;
    }
    k = sc->keys + start;
    n = sc->nkeys - start;
    if (!sc->dup && n > 1) {
        if (n <= 16) {
            for (i = 1; i < n && !sc->dup; i++) {
                for (j = 0; j < i; j++) {
                    if (k[i].len == k[j].len
                        && !memcmp(k[i].s, k[j].s, k[i].len)) {
                        sc->dup = k[i].s;
                        sc->dup_len = k[i].len;
                        break;
                    }
                }
            }
        }
        else {
            qsort(k, n, sizeof(*k), key_cmp);
            for (i = 1; i < n; i++) {
                if (!key_cmp(&k[i - 1], &k[i])) {
                    sc->dup = k[i].s;
                    sc->dup_len = k[i].len;
                    break;
                }
            }
        }
    }
    sc->nkeys = start - 1; /* the marker goes too */
}

static apr_size_t skip_ws(const unsigned char *s, apr_size_t pos,
                          apr_size_t len)
{
    while (pos < len
           && (s[pos] == ' ' || s[pos] == '\n' || s[pos] == '\r'
               || s[pos] == '\t')) {
        pos++;
    }
    return pos;
}

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* RFC 8259 number at pos: the offset after it, or 0 (a number is never
 * empty, so 0 cannot be a real end). */
static apr_size_t scan_number(const unsigned char *s, apr_size_t pos,
                              apr_size_t len)
{
    if (s[pos] == '-') {
        pos++;
    }
    if (pos >= len || !is_digit(s[pos])) {
        return 0;
    }
    if (s[pos] == '0') {
        pos++;
    }
    else {
        while (pos < len && is_digit(s[pos])) {
            pos++;
        }
    }
    if (pos < len && s[pos] == '.') {
        pos++;
        if (pos >= len || !is_digit(s[pos])) {
            return 0;
        }
        while (pos < len && is_digit(s[pos])) {
            pos++;
        }
    }
    if (pos < len && (s[pos] == 'e' || s[pos] == 'E')) {
        pos++;
        if (pos < len && (s[pos] == '+' || s[pos] == '-')) {
            pos++;
        }
        if (pos >= len || !is_digit(s[pos])) {
            return 0;
        }
        while (pos < len && is_digit(s[pos])) {
            pos++;
        }
    }
    return pos;
}

static int value_type(unsigned char c)
{
    switch (c) {
    case '{': return T_OBJECT;
    case '[': return T_ARRAY;
    case '"': return T_STRING;
    case 't':
    case 'f': return T_BOOL;
    case 'n': return T_NULL;
    default: return T_NUMBER;
    }
}

#define KIND_SET(k, d, obj)                                    \
    ((obj) ? ((k)[(d) >> 3] |= (unsigned char)(1u << ((d)&7))) \
           : ((k)[(d) >> 3] &= (unsigned char)~(1u << ((d)&7))))
#define KIND_OBJ(k, d) ((k)[(d) >> 3] & (1u << ((d)&7)))

/* One pass over the whole document. Returns 0 when it is one well-formed
 * JSON text; fd then holds the top-level fields (when the root is an
 * object), *root its type, sc->dup the first duplicate key. An iterative
 * state machine with a bit per open container, so nesting costs no C
 * stack. */
static int scan_doc(scan_t *sc, found_t *fd, int *root)
{
    const unsigned char *s = sc->s;
    apr_size_t len = sc->len, pos = 0, end, n, shrink;
    unsigned char kinds[DATOS_RECORD_MAX_DEPTH / 8] = {0};
    int depth = 0, field = -1, esc, t;

value:
    pos = skip_ws(s, pos, len);
    if (pos >= len) {
        return scan_fail(sc, pos, "a value was expected");
    }
    if (sc->spans && depth == 1 && !KIND_OBJ(kinds, 0)) {
        sc->span_start = pos;
    }
    t = value_type(s[pos]);
    if (depth == 0) {
        *root = t;
    }
    else if (field >= 0 && field < F_NFIELDS) {
        fd->f[field].type = t;
    }
    switch (s[pos]) {
    case '{':
        if (depth == DATOS_RECORD_MAX_DEPTH) {
            return scan_fail(sc, pos, "nesting deeper than 2048 levels");
        }
        KIND_SET(kinds, depth, 1);
        depth++;
        push_key(sc, NULL, 0);
        pos = skip_ws(s, pos + 1, len);
        if (pos < len && s[pos] == '}') {
            pos++;
            close_object(sc);
            depth--;
            goto after;
        }
        goto key;
    case '[':
        if (depth == DATOS_RECORD_MAX_DEPTH) {
            return scan_fail(sc, pos, "nesting deeper than 2048 levels");
        }
        KIND_SET(kinds, depth, 0);
        depth++;
        pos = skip_ws(s, pos + 1, len);
        if (pos < len && s[pos] == ']') {
            pos++;
            depth--;
            goto after;
        }
        field = -1;
        goto value;
    case '"':
        if (scan_string(sc, pos + 1, &end, &esc, &shrink)) {
            return -1;
        }
        if (field >= 0 && field < F_NFIELDS) {
            /* contenido stays as written: the NDJSON line copies its JSON
             * text, and only its unescaped length is needed here */
            field_t *f = &fd->f[field];
            f->raw = (const char *)s + pos + 1;
            f->raw_len = end - pos - 1;
            f->len = f->raw_len - shrink;
            f->str = !esc ? f->raw
                     : field == F_CONTENIDO
                         ? NULL
                         : unescape(sc->p, s + pos + 1, f->raw_len, &f->len);
        }
        pos = end + 1;
        goto after;
    case 't':
        if (len - pos < 4 || memcmp(s + pos, "true", 4)) {
            return scan_fail(sc, pos, "invalid literal");
        }
        pos += 4;
        goto after;
    case 'f':
        if (len - pos < 5 || memcmp(s + pos, "false", 5)) {
            return scan_fail(sc, pos, "invalid literal");
        }
        pos += 5;
        goto after;
    case 'n':
        if (len - pos < 4 || memcmp(s + pos, "null", 4)) {
            return scan_fail(sc, pos, "invalid literal");
        }
        pos += 4;
        goto after;
    default:
        n = (s[pos] == '-' || is_digit(s[pos])) ? scan_number(s, pos, len) : 0;
        if (!n) {
            return scan_fail(sc, pos,
                             s[pos] == '-' || is_digit(s[pos])
                                 ? "invalid number"
                                 : "a value was expected");
        }
        pos = n;
        goto after;
    }

after:
    field = -1;
    if (depth == 0) {
        goto done;
    }
    if (sc->spans && depth == 1 && !KIND_OBJ(kinds, 0)) {
        datos_span_t *e = apr_array_push(sc->spans);
        e->data = (const char *)s + sc->span_start;
        e->len = pos - sc->span_start;
    }
    pos = skip_ws(s, pos, len);
    if (pos >= len) {
        return scan_fail(sc, pos, "unexpected end of data");
    }
    if (KIND_OBJ(kinds, depth - 1)) {
        if (s[pos] == ',') {
            pos++;
            goto key;
        }
        if (s[pos] == '}') {
            pos++;
            close_object(sc);
            depth--;
            goto after;
        }
        return scan_fail(sc, pos, "',' or '}' was expected");
    }
    if (s[pos] == ',') {
        pos++;
        goto value;
    }
    if (s[pos] == ']') {
        pos++;
        depth--;
        goto after;
    }
    return scan_fail(sc, pos, "',' or ']' was expected");

key:
    pos = skip_ws(s, pos, len);
    if (pos >= len || s[pos] != '"') {
        return scan_fail(sc, pos, "a string key was expected");
    }
    if (scan_string(sc, pos + 1, &end, &esc, &shrink)) {
        return -1;
    }
    {
        const char *k = (const char *)s + pos + 1;
        apr_size_t klen = end - pos - 1;

        if (esc) {
            k = unescape(sc->p, s + pos + 1, klen, &klen);
        }
        push_key(sc, k, klen);
        field = -1;
        if (depth == 1) {
            field = field_of(k, klen);
            if (field == F_UNKNOWN && !fd->n_unknown++) {
                fd->unknown = k;
                fd->unknown_len = klen;
            }
        }
    }
    pos = skip_ws(s, end + 1, len);
    if (pos >= len || s[pos] != ':') {
        return scan_fail(sc, pos, "':' was expected after a key");
    }
    pos++;
    goto value;

done:
    pos = skip_ws(s, pos, len);
    if (pos != len) {
        return scan_fail(sc, pos, "data after the JSON value");
    }
    return 0;
}

static void scan_init(scan_t *sc, found_t *fd, apr_pool_t *p, const char *data,
                      apr_size_t len, jkey_t *keys, apr_size_t capkeys)
{
    memset(sc, 0, sizeof(*sc));
    memset(fd, 0, sizeof(*fd));
    sc->p = p;
    sc->s = (const unsigned char *)data;
    sc->len = len;
    sc->keys = keys;
    sc->capkeys = capkeys;
}

/* Why a scan failed, as a reason and a detail. */
static apr_status_t scan_failed(apr_pool_t *p, const scan_t *sc,
                                datos_invalid_t *why)
{
    apr_size_t bad, len = sc->len;

    /* A syntax error may come before the first bad byte: not_utf8 is
     * about the whole data, so look at all of it. */
    bad = sc->fail == DATOS_REASON_NOT_UTF8 ? sc->fail_pos
                                            : datos_utf8_check(sc->s, len);
    if (bad < len) {
        return invalid(p, why, DATOS_REASON_NOT_UTF8,
                       "the data is not UTF-8 (byte %" APR_SIZE_T_FMT
                       " is 0x%02x)",
                       bad, sc->s[bad]);
    }
    return invalid(
        p, why, DATOS_REASON_NOT_JSON,
        "the data is not JSON: %s at byte %" APR_SIZE_T_FMT "%s%s",
        sc->fail_what, sc->fail_pos, sc->fail_pos < len ? ", near " : "",
        sc->fail_pos < len
            ? excerpt(p, (const char *)sc->s + sc->fail_pos, len - sc->fail_pos)
            : "");
}

static const char *root_name(int t)
{
    switch (t) {
    case T_ARRAY: return "an array";
    case T_STRING: return "a string";
    case T_NUMBER: return "a number";
    case T_BOOL: return "a boolean";
    case T_NULL: return "null";
    default: return "not an object";
    }
}

apr_status_t datos_record_check(apr_pool_t *p, const char *data, apr_size_t len,
                                const datos_record_opts_t *opts,
                                datos_record_t *rec, datos_invalid_t *why)
{
    jkey_t local_keys[32];
    scan_t sc;
    found_t fd;
    apr_status_t rv;
    int root = T_ABSENT;

    why->reason = DATOS_REASON_NONE;
    why->detail = NULL;
    if (!opts || !rec || (!data && len) || opts->max_future_skew < 0) {
        why->detail = "invalid arguments";
        rv = APR_EINVAL;
        goto leave;
    }
    if (len == 0) {
        rv = invalid(p, why, DATOS_REASON_EMPTY_DATA,
                     "the message data is "
                     "empty");
        goto leave;
    }
    scan_init(&sc, &fd, p, data, len, local_keys,
              sizeof(local_keys) / sizeof(local_keys[0]));

    if (scan_doc(&sc, &fd, &root)) {
        rv = scan_failed(p, &sc, why);
        goto leave;
    }
    if (root != T_OBJECT) {
        rv = invalid(p, why, DATOS_REASON_NOT_OBJECT,
                     "the data is %s, not a JSON object", root_name(root));
        goto leave;
    }
    if (sc.dup) {
        rv = invalid(p, why, DATOS_REASON_DUPLICATE_KEY,
                     "the key %s appears twice in one object",
                     excerpt(p, sc.dup, sc.dup_len));
        goto leave;
    }
    rv = check_fields(p, opts, &fd, &rec->timestamp_us, why);
    if (rv != APR_SUCCESS) {
        goto leave;
    }
    rec->id = fd.f[F_ID].str;
    rec->id_len = fd.f[F_ID].len;
    rec->id_json = fd.f[F_ID].raw;
    rec->id_json_len = fd.f[F_ID].raw_len;
    if (fd.f[F_CONTENIDO].type == T_STRING) {
        rec->contenido_json = fd.f[F_CONTENIDO].raw;
        rec->contenido_json_len = fd.f[F_CONTENIDO].raw_len;
        rec->contenido_len = fd.f[F_CONTENIDO].len;
    }
    else {
        rec->contenido_json = NULL;
        rec->contenido_json_len = 0;
        rec->contenido_len = 0;
    }

leave:
    return rv;
}

apr_status_t datos_json_array_elements(apr_pool_t *p, const char *data,
                                       apr_size_t len,
                                       apr_array_header_t **elements,
                                       datos_invalid_t *why)
{
    jkey_t local_keys[32];
    scan_t sc;
    found_t fd;
    apr_status_t rv;
    int root = T_ABSENT;

    why->reason = DATOS_REASON_NONE;
    why->detail = NULL;
    *elements = NULL;
    if (!data && len) {
        why->detail = "invalid arguments";
        rv = APR_EINVAL;
        goto leave;
    }
    if (len == 0) {
        rv = invalid(p, why, DATOS_REASON_EMPTY_DATA, "the data is empty");
        goto leave;
    }
    scan_init(&sc, &fd, p, data, len, local_keys,
              sizeof(local_keys) / sizeof(local_keys[0]));
    sc.spans = apr_array_make(p, 16, sizeof(datos_span_t));
    if (scan_doc(&sc, &fd, &root)) {
        rv = scan_failed(p, &sc, why);
        goto leave;
    }
    if (root != T_ARRAY) {
        rv = APR_ENOENT;
        goto leave;
    }
    *elements = sc.spans;
    rv = APR_SUCCESS;

leave:
    return rv;
}

void datos_record_row(apr_pool_t *p, const datos_record_t *rec,
                      datos_row_t *row)
{
    row->id = rec->id;
    row->id_len = rec->id_len;
    row->timestamp_us = rec->timestamp_us;
    row->contenido_len = rec->contenido_len;
    if (!rec->contenido_json) {
        row->contenido = NULL;
    }
    else if (rec->contenido_json_len == rec->contenido_len) {
        row->contenido = rec->contenido_json; /* no escapes: same bytes */
    }
    else {
        row->contenido = unescape(p, (const unsigned char *)rec->contenido_json,
                                  rec->contenido_json_len, &row->contenido_len);
    }
}

apr_status_t datos_record_validate(apr_pool_t *p, const char *data,
                                   apr_size_t len,
                                   const datos_record_opts_t *opts,
                                   datos_row_t *row, datos_invalid_t *why)
{
    datos_record_t rec;
    apr_status_t rv;

    if (!row) {
        why->reason = DATOS_REASON_NONE;
        why->detail = "invalid arguments";
        rv = APR_EINVAL;
        goto leave;
    }
    rv = datos_record_check(p, data, len, opts, &rec, why);
    if (rv == APR_SUCCESS) {
        datos_record_row(p, &rec, row);
    }

leave:
    return rv;
}


/* ------------------------------------------------------------------ jansson */

static int jtype(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return T_OBJECT;
    case JSON_ARRAY: return T_ARRAY;
    case JSON_STRING: return T_STRING;
    case JSON_INTEGER:
    case JSON_REAL: return T_NUMBER;
    case JSON_TRUE:
    case JSON_FALSE: return T_BOOL;
    default: return T_NULL;
    }
}

apr_status_t datos_record_validate_jansson(apr_pool_t *p, const char *data,
                                           apr_size_t len,
                                           const datos_record_opts_t *opts,
                                           datos_row_t *row,
                                           datos_invalid_t *why)
{
    const size_t flags = JSON_DECODE_ANY | JSON_ALLOW_NUL;
    json_error_t jerr;
    json_t *j, *v;
    const char *k;
    found_t fd;
    apr_size_t bad;
    apr_status_t rv;

    why->reason = DATOS_REASON_NONE;
    why->detail = NULL;
    if (!opts || !row || (!data && len) || opts->max_future_skew < 0) {
        why->detail = "invalid arguments";
        rv = APR_EINVAL;
        goto leave;
    }
    if (len == 0) {
        rv = invalid(p, why, DATOS_REASON_EMPTY_DATA,
                     "the message data is "
                     "empty");
        goto leave;
    }
    bad = datos_utf8_check((const unsigned char *)data, len);
    if (bad < len) {
        rv = invalid(p, why, DATOS_REASON_NOT_UTF8,
                     "the data is not UTF-8 (byte %" APR_SIZE_T_FMT
                     " is 0x%02x)",
                     bad, (unsigned char)data[bad]);
        goto leave;
    }
    /* jansson takes a raw NUL right after a top-level number for the end
     * of input ("6\0" parses); JSON allows U+0000 only escaped. */
    if (memchr(data, '\0', len)) {
        rv = invalid(
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
            rv = obj ? invalid(p, why, DATOS_REASON_DUPLICATE_KEY,
                               "a key appears twice in one object")
                     : invalid(p, why, DATOS_REASON_NOT_OBJECT,
                               "the data is not a JSON object");
            goto leave;
        }
    }
    if (!j) {
        /* jansson quotes the input near the error and may cut it inside
         * a character: its text is made clean like any excerpt. */
        rv = invalid(p, why, DATOS_REASON_NOT_JSON,
                     "the data is not JSON at byte %d: jansson says %s",
                     jerr.position,
                     excerpt_n(p, jerr.text, strlen(jerr.text), 200));
        goto leave;
    }
    datos_json_bind(p, j);
    if (!json_is_object(j)) {
        rv = invalid(p, why, DATOS_REASON_NOT_OBJECT,
                     "the data is %s, not a JSON object", root_name(jtype(j)));
        goto leave;
    }
    memset(&fd, 0, sizeof(fd));
    json_object_foreach(j, k, v)
    {
        apr_size_t klen = strlen(k);
        int f = field_of(k, klen);

        if (f == F_UNKNOWN) {
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
    rv = check_fields(p, opts, &fd, &row->timestamp_us, why);
    if (rv != APR_SUCCESS) {
        goto leave;
    }
    row->id = fd.f[F_ID].str;
    row->id_len = fd.f[F_ID].len;
    row->contenido =
        fd.f[F_CONTENIDO].type == T_STRING ? fd.f[F_CONTENIDO].str : NULL;
    row->contenido_len = row->contenido ? fd.f[F_CONTENIDO].len : 0;

leave:
    return rv;
}
