/* datos_record.c - rendering rows for readers.
 *
 * Hand-written rather than through jansson: the body is built once per
 * freshness window but every ?limit must be a byte slice of it, which needs
 * the offset of each row; and ids may hold NUL bytes, which jansson's
 * C-string API cannot take.
 */
#include <string.h>
#include <apr_strings.h>

#include "datos_record.h"
#include "datos_time.h"
#include "datos_utf8.h"

/* Escaped length of a JSON string body (without the quotes), as the
 * rows are written: U+2028/U+2029 kept as they are. Sets *bad to the offset
 * of the first invalid byte and returns 0 when s is not UTF-8. */
static apr_size_t escaped_len(const char *s, apr_size_t len, apr_size_t *bad)
{
    apr_size_t n =
        datos_json_escaped_len((const unsigned char *)s, len, 0, bad);

    if (n == (apr_size_t)-1) {
        return 0;
    }
    *bad = (apr_size_t)-1;
    return n;
}

/* s was checked by escaped_len. */
static char *escape_into(char *o, const char *s, apr_size_t len)
{
    return datos_json_escape(o, (const unsigned char *)s, len, 0);
}

#define LIT(s) s, (sizeof(s) - 1)

static char *put(char *o, const char *s, apr_size_t n)
{
    memcpy(o, s, n);
    return o + n;
}

apr_status_t datos_record_render(apr_pool_t *p, const datos_row_t *rows, int n,
                                 datos_rendered_t **out, datos_err_t *err)
{
    static const char head[] = "{\"datos\":[";
    static const char k_id[] = "{\"id\":\"";
    static const char k_cont[] = "\",\"contenido\":";
    static const char k_ts[] = ",\"timestamp\":\"";
    static const char tail_row[] = "\"}";
    datos_rendered_t *r;
    apr_size_t total, *idlen, *clen, bad;
    char(*ts)[DATOS_TS_BUFSIZE];
    apr_size_t *tslen;
    char *body, *o;
    apr_status_t rv = APR_SUCCESS;
    int i;

    if (n < 0) {
        rv = datos_err_set(err, p, APR_EINVAL, 0, NULL, "negative row count");
        goto leave;
    }
    /* First pass: validate everything and size the body exactly, so a bad
     * row fails before anything is built. */
    idlen = apr_pcalloc(p, sizeof(*idlen) * (apr_size_t)(n + 1));
    clen = apr_pcalloc(p, sizeof(*clen) * (apr_size_t)(n + 1));
    tslen = apr_pcalloc(p, sizeof(*tslen) * (apr_size_t)(n + 1));
    ts = apr_pcalloc(p, sizeof(*ts) * (apr_size_t)(n + 1));
    total = sizeof(head) - 1 + 2;
    for (i = 0; i < n; i++) {
        const datos_row_t *row = &rows[i];

        idlen[i] = escaped_len(row->id ? row->id : "",
                               row->id ? row->id_len : 0, &bad);
        if (bad != (apr_size_t)-1) {
            rv = datos_err_set(
                err, p, DATOS_EMALFORMED, 0, NULL,
                "row %d: id is not valid UTF-8 (byte %" APR_SIZE_T_FMT ")", i,
                bad);
            goto leave;
        }
        if (row->contenido) {
            clen[i] = escaped_len(row->contenido, row->contenido_len, &bad);
            if (bad != (apr_size_t)-1) {
                rv = datos_err_set(err, p, DATOS_EMALFORMED, 0, NULL,
                                   "row %d: contenido is not valid UTF-8 "
                                   "(byte %" APR_SIZE_T_FMT ")",
                                   i, bad);
                goto leave;
            }
            clen[i] += 2;
        }
        else {
            clen[i] = 4; /* null */
        }
        tslen[i] = datos_ts_format(row->timestamp_us, ts[i]);
        if (!tslen[i]) {
            rv = datos_err_set(err, p, DATOS_EMALFORMED, 0, NULL,
                               "row %d: timestamp %" APR_INT64_T_FMT
                               " us is outside 0001..9999",
                               i, row->timestamp_us);
            goto leave;
        }
        total += (i ? 1 : 0) + sizeof(k_id) - 1 + idlen[i] + sizeof(k_cont) - 1
                 + clen[i] + sizeof(k_ts) - 1 + tslen[i] + sizeof(tail_row) - 1;
    }

    r = apr_pcalloc(p, sizeof(*r));
    r->row_end = apr_palloc(p, sizeof(*r->row_end) * (apr_size_t)(n + 1));
    body = apr_palloc(p, total + 1);
    o = put(body, LIT(head));
    r->row_end[0] = (apr_size_t)(o - body);
    for (i = 0; i < n; i++) {
        const datos_row_t *row = &rows[i];

        if (i) {
            *o++ = ',';
        }
        o = put(o, LIT(k_id));
        o = escape_into(o, row->id ? row->id : "", row->id ? row->id_len : 0);
        o = put(o, LIT(k_cont));
        if (row->contenido) {
            *o++ = '"';
            o = escape_into(o, row->contenido, row->contenido_len);
            *o++ = '"';
        }
        else {
            o = put(o, LIT("null"));
        }
        o = put(o, LIT(k_ts));
        o = put(o, ts[i], tslen[i]);
        o = put(o, LIT(tail_row));
        r->row_end[i + 1] = (apr_size_t)(o - body);
    }
    o = put(o, LIT("]}"));
    *o = '\0';
    r->body = body;
    r->len = (apr_size_t)(o - body);
    r->n = n;
    *out = r;

leave:
    return rv;
}

apr_status_t datos_record_row_len(const datos_row_t *row, int first,
                                  apr_size_t *len)
{
    char ts[DATOS_TS_BUFSIZE];
    apr_size_t idlen, clen, tslen, bad;

    idlen =
        escaped_len(row->id ? row->id : "", row->id ? row->id_len : 0, &bad);
    if (bad != (apr_size_t)-1) {
        return DATOS_EMALFORMED;
    }
    clen = 4; /* null */
    if (row->contenido) {
        clen = escaped_len(row->contenido, row->contenido_len, &bad) + 2;
        if (bad != (apr_size_t)-1) {
            return DATOS_EMALFORMED;
        }
    }
    tslen = datos_ts_format(row->timestamp_us, ts);
    if (!tslen) {
        return DATOS_EMALFORMED;
    }
    /* {"id":"<id>","contenido":<c>,"timestamp":"<ts>"} */
    *len = (first ? 0 : 1) + 7 + idlen + 14 + clen + 14 + tslen + 2;
    return APR_SUCCESS;
}

apr_size_t datos_rendered_len(const datos_rendered_t *r, int k)
{
    return r->row_end[k] + 2;
}
