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
 * jansson stays in the tests, as the reference the scanner is compared
 * with (tests/unit/dt_jansson.c).
 *
 * Both apply the field rules of datos_rules.c, so each rule and its
 * detail exist once; only the structure pass differs.
 */
#include <stdlib.h>
#include <string.h>
#include <apr_strings.h>

#include "datos_jsontext.h"
#include "datos_utf8.h"
#include "datos_validate.h"

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

        pos = datos_json_plain_run(s, pos, len);
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
            k = datos_jt_escape_len(s, pos, len, &d, NULL);
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

static int value_type(unsigned char c)
{
    switch (c) {
    case '{': return DATOS_VT_OBJECT;
    case '[': return DATOS_VT_ARRAY;
    case '"': return DATOS_VT_STRING;
    case 't':
    case 'f': return DATOS_VT_BOOL;
    case 'n': return DATOS_VT_NULL;
    default: return DATOS_VT_NUMBER;
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
static int scan_doc(scan_t *sc, datos_fields_t *fd, int *root)
{
    const unsigned char *s = sc->s;
    apr_size_t len = sc->len, pos = 0, end, n, shrink;
    unsigned char kinds[DATOS_RECORD_MAX_DEPTH / 8] = {0};
    int depth = 0, field = -1, esc, t;

value:
    pos = datos_jt_skip_ws(s, pos, len);
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
    else if (field >= 0 && field < DATOS_FIELD_COUNT) {
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
        pos = datos_jt_skip_ws(s, pos + 1, len);
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
        pos = datos_jt_skip_ws(s, pos + 1, len);
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
        if (field >= 0 && field < DATOS_FIELD_COUNT) {
            /* contenido stays as written: the NDJSON line copies its JSON
             * text, and only its unescaped length is needed here */
            datos_field_t *f = &fd->f[field];
            f->raw = (const char *)s + pos + 1;
            f->raw_len = end - pos - 1;
            f->len = f->raw_len - shrink;
            f->str = !esc ? f->raw
                     : field == DATOS_FIELD_CONTENIDO
                         ? NULL
                         : datos_jt_unescape(sc->p, s + pos + 1, f->raw_len,
                                             &f->len);
        }
        pos = end + 1;
        goto after;
    case 't':
    case 'f':
    case 'n':
        n = datos_jt_literal_len(s, pos, len);
        if (!n) {
            return scan_fail(sc, pos, "invalid literal");
        }
        pos += n;
        goto after;
    default:
        n = (s[pos] == '-' || datos_jt_digit(s[pos]))
                ? datos_jt_number(s, pos, len, NULL)
                : 0;
        if (!n) {
            return scan_fail(sc, pos,
                             s[pos] == '-' || datos_jt_digit(s[pos])
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
    pos = datos_jt_skip_ws(s, pos, len);
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
    pos = datos_jt_skip_ws(s, pos, len);
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
            k = datos_jt_unescape(sc->p, s + pos + 1, klen, &klen);
        }
        push_key(sc, k, klen);
        field = -1;
        if (depth == 1) {
            field = datos_rules_field_of(k, klen);
            if (field == DATOS_FIELD_UNKNOWN && !fd->n_unknown++) {
                fd->unknown = k;
                fd->unknown_len = klen;
            }
        }
    }
    pos = datos_jt_skip_ws(s, end + 1, len);
    if (pos >= len || s[pos] != ':') {
        return scan_fail(sc, pos, "':' was expected after a key");
    }
    pos++;
    goto value;

done:
    pos = datos_jt_skip_ws(s, pos, len);
    if (pos != len) {
        return scan_fail(sc, pos, "data after the JSON value");
    }
    return 0;
}

static void scan_init(scan_t *sc, datos_fields_t *fd, apr_pool_t *p,
                      const char *data, apr_size_t len, jkey_t *keys,
                      apr_size_t capkeys)
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
        return datos_rules_not_utf8(p, why, (const char *)sc->s, bad);
    }
    return datos_rules_invalid(
        p, why, DATOS_REASON_NOT_JSON,
        "the data is not JSON: %s at byte %" APR_SIZE_T_FMT "%s%s",
        sc->fail_what, sc->fail_pos, sc->fail_pos < len ? ", near " : "",
        sc->fail_pos < len
            ? datos_rules_excerpt(p, (const char *)sc->s + sc->fail_pos,
                                  len - sc->fail_pos, DATOS_EXCERPT_MAX)
            : "");
}

apr_status_t datos_record_check(apr_pool_t *p, const char *data, apr_size_t len,
                                const datos_record_opts_t *opts,
                                datos_record_t *rec, datos_invalid_t *why)
{
    jkey_t local_keys[32];
    scan_t sc;
    datos_fields_t fd;
    apr_status_t rv;
    int root = DATOS_VT_ABSENT;

    rv = datos_rules_start(p, data, len, opts, rec, why);
    if (rv != APR_SUCCESS) {
        goto leave;
    }
    scan_init(&sc, &fd, p, data, len, local_keys,
              sizeof(local_keys) / sizeof(local_keys[0]));

    if (scan_doc(&sc, &fd, &root)) {
        rv = scan_failed(p, &sc, why);
        goto leave;
    }
    if (root != DATOS_VT_OBJECT) {
        rv = datos_rules_not_object(p, why, root);
        goto leave;
    }
    if (sc.dup) {
        rv = datos_rules_invalid(
            p, why, DATOS_REASON_DUPLICATE_KEY,
            "the key %s appears twice in one object",
            datos_rules_excerpt(p, sc.dup, sc.dup_len, DATOS_EXCERPT_MAX));
        goto leave;
    }
    rv = datos_rules_check_fields(p, opts, &fd, &rec->timestamp_us, why);
    if (rv != APR_SUCCESS) {
        goto leave;
    }
    rec->id = fd.f[DATOS_FIELD_ID].str;
    rec->id_len = fd.f[DATOS_FIELD_ID].len;
    rec->id_json = fd.f[DATOS_FIELD_ID].raw;
    rec->id_json_len = fd.f[DATOS_FIELD_ID].raw_len;
    if (fd.f[DATOS_FIELD_CONTENIDO].type == DATOS_VT_STRING) {
        rec->contenido_json = fd.f[DATOS_FIELD_CONTENIDO].raw;
        rec->contenido_json_len = fd.f[DATOS_FIELD_CONTENIDO].raw_len;
        rec->contenido_len = fd.f[DATOS_FIELD_CONTENIDO].len;
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
    datos_fields_t fd;
    apr_status_t rv;
    int root = DATOS_VT_ABSENT;

    why->reason = DATOS_REASON_NONE;
    why->detail = NULL;
    *elements = NULL;
    if (!data && len) {
        why->detail = "invalid arguments";
        rv = APR_EINVAL;
        goto leave;
    }
    if (len == 0) {
        rv = datos_rules_invalid(p, why, DATOS_REASON_EMPTY_DATA,
                                 "the data is empty");
        goto leave;
    }
    scan_init(&sc, &fd, p, data, len, local_keys,
              sizeof(local_keys) / sizeof(local_keys[0]));
    sc.spans = apr_array_make(p, 16, sizeof(datos_span_t));
    if (scan_doc(&sc, &fd, &root)) {
        rv = scan_failed(p, &sc, why);
        goto leave;
    }
    if (root != DATOS_VT_ARRAY) {
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
        row->contenido =
            datos_jt_unescape(p, (const unsigned char *)rec->contenido_json,
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
