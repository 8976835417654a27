/* datos_ndjson.c - the NDJSON lines of a load job.
 *
 * One contiguous buffer rather than pool blocks: a 100 MB batch would leave
 * every outgrown block behind in a pool. The loader sizes it once, from the
 * largest line each checked record can make (datos_ndjson_record_max), so
 * it never grows while the lines are written; it doubles only for callers
 * that did not size it. The line starts are kept so that BigQuery's "row
 * starting at position N" maps back to a line, and any run of lines is one
 * byte range.
 *
 * The first write to each page of a fresh buffer faults, and on a virtual
 * machine a 4 KiB fault can cost more than the lines written into that
 * page: on the 2-core VMs datos is developed on, touching 64 MB took
 * 0.2 s of CPU in 4 KiB pages and 6 ms in 2 MiB ones, and the faults of
 * the growing buffer were more than half of make bench-record's time,
 * with the rate moving 2-3x with what the process did before (a heap
 * left large enough to reuse, or not). So a buffer of 2 MiB or more
 * is a mapping of its own, aligned to 2 MiB and advised for transparent
 * huge pages, and its pages are mapped a few MiB ahead of the writer in
 * one call (MADV_POPULATE_WRITE, Linux 5.14) rather than one fault each.
 * A mapping of its own also makes the cost independent of what the rest
 * of the process left in malloc's heap. Smaller buffers stay with malloc
 * (and with the sanitizer's checks in the tests).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "datos_arena.h"
#include "datos_ndjson.h"
#include "datos_time.h"
#include "datos_utf8.h"

#define HUGE_PAGE      ((apr_size_t)2 * 1024 * 1024)
#define MAP_AT_LEAST   HUGE_PAGE       /* buffers this large are mapped */
#define POPULATE_AHEAD (2 * HUGE_PAGE) /* mapped ahead of the writer */

struct datos_ndjson_t {
    char *buf;
    apr_size_t len, cap;
    int mapped;           /* buf is a mapping of cap bytes, not malloc's */
    apr_size_t populated; /* bytes of a mapping known to be mapped in */
    apr_size_t *starts;   /* starts[i]: offset of line i */
    apr_size_t nlines, caplines;
    int columns;
};

static void free_buffer(datos_ndjson_t *nd)
{
    if (nd->mapped) {
        munmap(nd->buf, nd->cap);
    }
    else {
        free(nd->buf);
    }
    nd->buf = NULL;
    nd->cap = 0;
    nd->mapped = 0;
    nd->populated = 0;
}

static apr_status_t ndjson_cleanup(void *data)
{
    datos_ndjson_t *nd = data;

    free_buffer(nd);
    free(nd->starts);
    nd->starts = NULL;
    return APR_SUCCESS;
}

/* Maps in the pages of a mapped buffer up to a few MiB past `upto`, in
 * one call where the kernel can. Only an optimisation: a refusal leaves
 * the pages to fault one by one. */
static void populate(datos_ndjson_t *nd, apr_size_t upto)
{
#ifdef MADV_POPULATE_WRITE
    apr_size_t to;

    if (!nd->mapped || upto <= nd->populated) {
        return;
    }
    to = (upto + POPULATE_AHEAD) & ~(HUGE_PAGE - 1);
    to = to < nd->cap ? to : nd->cap;
    (void)madvise(nd->buf + nd->populated, to - nd->populated,
                  MADV_POPULATE_WRITE);
    nd->populated = to;
#else
    (void)nd;
    (void)upto;
#endif
}

/* Room for need more bytes plus the NUL: at least double the capacity
 * when it has to grow (linear total copying), exactly what is asked for
 * the first time (a caller that sized the buffer gets that size). */
static apr_status_t reserve(datos_ndjson_t *nd, apr_size_t need)
{
    apr_status_t rv = APR_ENOMEM;
    apr_size_t want, cap;
    char *b;

    if (need > APR_SIZE_MAX / 2 - nd->len - 1) {
        goto leave;
    }
    want = nd->len + need + 1;
    if (want > nd->cap) {
        cap = nd->cap ? nd->cap * 2 : 4096;
        cap = cap < want ? want : cap;
        if (cap >= MAP_AT_LEAST) {
            b = datos_huge_map(cap, &cap);
            if (!b) {
                goto leave;
            }
            if (nd->buf) {
                memcpy(b, nd->buf, nd->len + 1);
            }
            free_buffer(nd);
            nd->mapped = 1;
        }
        else {
            b = realloc(nd->buf, cap);
            if (!b) {
                goto leave;
            }
        }
        nd->buf = b;
        nd->cap = cap;
    }
    rv = APR_SUCCESS;

leave:
    return rv;
}

apr_status_t datos_ndjson_create(apr_pool_t *p, int columns,
                                 apr_size_t initial_bytes, datos_ndjson_t **out)
{
    datos_ndjson_t *nd = apr_pcalloc(p, sizeof(*nd));
    apr_status_t rv;

    nd->columns = columns;
    apr_pool_cleanup_register(p, nd, ndjson_cleanup, apr_pool_cleanup_null);
    rv = reserve(nd, initial_bytes);
    if (rv != APR_SUCCESS) {
        goto leave;
    }
    nd->buf[0] = '\0';
    *out = nd;

leave:
    return rv;
}

/* "YYYY-MM-DDTHH:MM:SS.ffffffZ" (27 bytes), or NULL when out of range. */
static char *put_ts(char *o, apr_int64_t us)
{
    char ts[DATOS_TS_BUFSIZE];
    apr_size_t n = datos_ts_format(us, ts);

    if (!n) {
        return NULL;
    }
    memcpy(o, ts, 19);
    if (n == 32) {
        memcpy(o + 19, ts + 19, 7);
    }
    else {
        memcpy(o + 19, ".000000", 7);
    }
    o[26] = 'Z';
    return o + 27;
}

#define LIT(o, s) (memcpy((o), (s), sizeof(s) - 1), (o) + sizeof(s) - 1)

/* JSON string text that is already valid (a checked record's, as the
 * producer wrote it) copied as is, but for U+2028/U+2029, escaped as
 * datos_json_escape does with DATOS_JSON_LINE_SEPARATORS. */
static char *copy_json_text(char *o, const char *s, apr_size_t n)
{
    const char *end = s + n, *e;

    while ((e = memchr(s, 0xE2, (apr_size_t)(end - s))) != NULL) {
        if (end - e >= 3
            && datos_utf8_line_separator((const unsigned char *)e)) {
            memcpy(o, s, (apr_size_t)(e - s));
            o += e - s;
            memcpy(o, (unsigned char)e[2] == 0xA8 ? "\\u2028" : "\\u2029", 6);
            o += 6;
            s = e + 3;
        }
        else {
            memcpy(o, s, (apr_size_t)(e + 1 - s));
            o += e + 1 - s;
            s = e + 1;
        }
    }
    memcpy(o, s, (apr_size_t)(end - s));
    return o + (end - s);
}

/* One string value: escaped from its bytes, or copied when it is JSON text
 * already. NULL when the bytes are not UTF-8. */
static char *put_value(char *o, const char *s, apr_size_t n, int is_json)
{
    return is_json ? copy_json_text(o, s, n)
                   : datos_json_escape(o, (const unsigned char *)s, n,
                                       DATOS_JSON_LINE_SEPARATORS);
}

/* The longest line a row can make: its strings escaped at worst (6 bytes
 * for one of raw bytes, a control character; 2 for one of JSON text, whose
 * only change is U+2028/U+2029, 3 bytes into 6) and room for the rest.
 * 0 when that would overflow. */
static apr_size_t line_max(int columns, apr_size_t id_len,
                           apr_size_t contenido_len, int is_json,
                           apr_size_t message_id_len)
{
    if (id_len > APR_SIZE_MAX / 32 || contenido_len > APR_SIZE_MAX / 32
        || message_id_len > APR_SIZE_MAX / 32) {
        return 0;
    }
    return (is_json ? 2 : 6) * (id_len + contenido_len)
           + ((columns & DATOS_NDJSON_MESSAGE_ID) ? 6 * message_id_len : 0)
           + 160;
}

apr_size_t datos_ndjson_record_max(int columns, const datos_record_t *rec,
                                   apr_size_t message_id_len)
{
    return line_max(columns, rec->id_json_len,
                    rec->contenido_json ? rec->contenido_json_len : 0, 1,
                    message_id_len);
}

/* The line for one row; is_json says id and contenido are JSON string
 * text rather than raw bytes. */
static apr_status_t append_line(datos_ndjson_t *nd, const char *id,
                                apr_size_t id_len, const char *contenido,
                                apr_size_t contenido_len, int is_json,
                                apr_int64_t timestamp_us,
                                const char *message_id,
                                apr_size_t message_id_len,
                                apr_int64_t publish_time_us)
{
    int with_mid = nd->columns & DATOS_NDJSON_MESSAGE_ID;
    int with_pt = nd->columns & DATOS_NDJSON_PUBLISH_TIME;
    apr_size_t worst;
    apr_status_t rv;
    char *o;

    if (!id || (with_mid && !message_id)) {
        rv = DATOS_EMALFORMED;
        goto leave;
    }
    if (nd->nlines == nd->caplines) {
        apr_size_t n = nd->caplines ? nd->caplines * 2 : 1024;
        apr_size_t *s = realloc(nd->starts, n * sizeof(*s));
        if (!s) {
            rv = APR_ENOMEM;
            goto leave;
        }
        nd->starts = s;
        nd->caplines = n;
    }
    worst = line_max(nd->columns, id_len, contenido ? contenido_len : 0,
                     is_json, message_id_len);
    if (!worst) {
        rv = APR_ENOMEM;
        goto leave;
    }
    rv = reserve(nd, worst);
    if (rv != APR_SUCCESS) {
        goto leave;
    }
    /* only the pages this line may write, not the whole of a buffer
     * sized for the worst lines */
    populate(nd, nd->len + worst + 1);
    rv = DATOS_EMALFORMED;
    o = nd->buf + nd->len;
    o = LIT(o, "{\"id\":\"");
    if (!(o = put_value(o, id, id_len, is_json))) {
        goto leave;
    }
    if (contenido) {
        o = LIT(o, "\",\"contenido\":\"");
        if (!(o = put_value(o, contenido, contenido_len, is_json))) {
            goto leave;
        }
        o = LIT(o, "\",\"timestamp\":\"");
    }
    else {
        o = LIT(o, "\",\"contenido\":null,\"timestamp\":\"");
    }
    if (!(o = put_ts(o, timestamp_us))) {
        goto leave;
    }
    *o++ = '"';
    if (with_mid) {
        o = LIT(o, ",\"message_id\":\"");
        if (!(o = datos_json_escape(o, (const unsigned char *)message_id,
                                    message_id_len,
                                    DATOS_JSON_LINE_SEPARATORS))) {
            goto leave;
        }
        *o++ = '"';
    }
    if (with_pt) {
        o = LIT(o, ",\"publish_time\":\"");
        if (!(o = put_ts(o, publish_time_us))) {
            goto leave;
        }
        *o++ = '"';
    }
    o = LIT(o, "}\n");
    *o = '\0';
    nd->starts[nd->nlines++] = nd->len;
    nd->len = (apr_size_t)(o - nd->buf);
    rv = APR_SUCCESS;

leave:
    if (rv != APR_SUCCESS && nd->buf) {
        nd->buf[nd->len] = '\0'; /* whatever was written is dropped */
    }
    return rv;
}

apr_status_t datos_ndjson_append(datos_ndjson_t *nd, const datos_row_t *row,
                                 const char *message_id,
                                 apr_size_t message_id_len,
                                 apr_int64_t publish_time_us)
{
    return append_line(nd, row->id, row->id_len, row->contenido,
                       row->contenido_len, 0, row->timestamp_us, message_id,
                       message_id_len, publish_time_us);
}

apr_status_t datos_ndjson_append_record(datos_ndjson_t *nd,
                                        const datos_record_t *rec,
                                        const char *message_id,
                                        apr_size_t message_id_len,
                                        apr_int64_t publish_time_us)
{
    return append_line(nd, rec->id_json, rec->id_json_len, rec->contenido_json,
                       rec->contenido_json_len, 1, rec->timestamp_us,
                       message_id, message_id_len, publish_time_us);
}

const char *datos_ndjson_data(const datos_ndjson_t *nd, apr_size_t *len)
{
    if (len) {
        *len = nd->len;
    }
    return nd->buf;
}

int datos_ndjson_lines(const datos_ndjson_t *nd)
{
    return (int)nd->nlines;
}

apr_status_t datos_ndjson_range(const datos_ndjson_t *nd, int first, int count,
                                const char **start, apr_size_t *len)
{
    apr_status_t rv = APR_EINVAL;
    apr_size_t a, b;

    if (first < 0 || count < 0 || (apr_size_t)first > nd->nlines
        || (apr_size_t)count > nd->nlines - (apr_size_t)first) {
        goto leave;
    }
    a = (apr_size_t)first < nd->nlines ? nd->starts[first] : nd->len;
    b = (apr_size_t)(first + count) < nd->nlines ? nd->starts[first + count]
                                                 : nd->len;
    *start = nd->buf + a;
    *len = b - a;
    rv = APR_SUCCESS;

leave:
    return rv;
}

int datos_ndjson_line_at(const datos_ndjson_t *nd, apr_int64_t pos)
{
    apr_size_t lo = 0, hi = nd->nlines;

    if (pos < 0 || (apr_uint64_t)pos >= nd->len) {
        return -1;
    }
    while (lo < hi) {
        apr_size_t mid = lo + (hi - lo) / 2;
        if (nd->starts[mid] < (apr_size_t)pos) {
            lo = mid + 1;
        }
        else {
            hi = mid;
        }
    }
    return lo < nd->nlines && nd->starts[lo] == (apr_size_t)pos ? (int)lo : -1;
}

void datos_ndjson_reset(datos_ndjson_t *nd)
{
    nd->len = 0;
    nd->nlines = 0;
    if (nd->buf) {
        nd->buf[0] = '\0';
    }
}
