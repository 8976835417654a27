/* datos_record.h - the datos record (docs/design.md section 3): rendering rows
 * for readers, validating a message's data (the loader and POST /datos share
 * one implementation), and the NDJSON lines of a load job. */
#ifndef DATOS_RECORD_H
#define DATOS_RECORD_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <apr_time.h>
#include "datos_error.h"

typedef struct datos_row_t {
    const char *id; /* valid UTF-8, may contain NUL bytes */
    apr_size_t id_len;
    const char *contenido; /* NULL renders as JSON null */
    apr_size_t contenido_len;
    apr_int64_t timestamp_us;
} datos_row_t;

/* The /datos body for up to n rows, rendered once:
 *   {"datos":[{"id":"789","contenido":"Prueba","timestamp":"2024-01-14T14:00:00+00:00"},...]}
 * The body for the first k rows (0 <= k <= n) is body[0 .. row_end[k]) followed
 * by the two bytes "]}", so every ?limit is a slice without re-rendering.
 * row_end[0] is the offset just after "[". Strings are escaped as JSON
 * (non-ASCII UTF-8 kept as is, control characters and '"' '\\' escaped);
 * invalid UTF-8 fails with DATOS_EMALFORMED. */
typedef struct datos_rendered_t {
    const char *body; /* full document for all n rows, NUL-terminated */
    apr_size_t len;
    apr_size_t *row_end; /* n + 1 offsets */
    int n;
} datos_rendered_t;

apr_status_t datos_record_render(apr_pool_t *p, const datos_row_t *rows, int n,
                                 datos_rendered_t **out, datos_err_t *err);

/* The body of an answer with no rows, {"datos":[]}: every answer is this
 * long plus the rows' own lengths. */
#define DATOS_RENDERED_EMPTY_LEN 12
/* The smallest row: {"id":"","contenido":"","timestamp":"<25 bytes>"}. */
#define DATOS_RENDERED_ROW_MIN 64

/* Exactly the bytes datos_record_render gives the row, with the comma
 * that separates it from the previous one unless it comes first, so a
 * fetch can keep rows within a byte budget before rendering them.
 * DATOS_EMALFORMED when the row cannot be rendered. */
apr_status_t datos_record_row_len(const datos_row_t *row, int first,
                                  apr_size_t *len);

/* Length of the body for the first k rows: row_end[k] + 2. */
apr_size_t datos_rendered_len(const datos_rendered_t *r, int k);

/* ------------------------------------------------------------------ validation */

/* The closed list of reasons a message is invalid (docs/design.md section 3).
 * DATOS_REASON_BIGQUERY_REJECTED is never produced by the validator: the
 * loader assigns it to rows a load job refused. */
typedef enum datos_reason_t {
    DATOS_REASON_NONE = 0,
    DATOS_REASON_EMPTY_DATA,
    DATOS_REASON_NOT_UTF8,
    DATOS_REASON_NOT_JSON,
    DATOS_REASON_NOT_OBJECT,
    DATOS_REASON_DUPLICATE_KEY,
    DATOS_REASON_MISSING_ID,
    DATOS_REASON_BAD_ID,
    DATOS_REASON_ID_TOO_LONG,
    DATOS_REASON_BAD_CONTENIDO,
    DATOS_REASON_CONTENIDO_TOO_LARGE,
    DATOS_REASON_MISSING_TIMESTAMP,
    DATOS_REASON_BAD_TIMESTAMP,
    DATOS_REASON_FUTURE_TIMESTAMP,
    DATOS_REASON_UNKNOWN_FIELD,
    DATOS_REASON_BIGQUERY_REJECTED,
    DATOS_REASON_COUNT
} datos_reason_t;

/* "empty_data", "not_utf8", ... "bigquery_rejected"; "none" for
 * DATOS_REASON_NONE; NULL outside the enum. */
const char *datos_reason_name(datos_reason_t r);
/* The reason with that exact name, or DATOS_REASON_NONE. */
datos_reason_t datos_reason_from_name(const char *name);

#define DATOS_ID_MAX_BYTES        256
#define DATOS_CONTENIDO_MAX_BYTES (1024 * 1024)
#define DATOS_DETAIL_MAX_BYTES    1024
#define DATOS_MAX_FUTURE_SKEW     apr_time_from_sec(300)
/* Nesting deeper than this is not_json (RFC 8259 section 9 lets a parser
 * limit it; jansson 2.14 has the same limit, which keeps it a faithful
 * oracle). */
#define DATOS_RECORD_MAX_DEPTH 2048

typedef enum datos_unknown_policy_t {
    DATOS_UNKNOWN_REJECT = 0, /* a field not in the record: unknown_field */
    DATOS_UNKNOWN_DROP        /* ignored (its value must still be valid JSON) */
} datos_unknown_policy_t;

typedef struct datos_record_opts_t {
    apr_time_t now; /* the future bound is now + max_future_skew */
    apr_interval_time_t max_future_skew; /* >= 0 */
    datos_unknown_policy_t unknown;
} datos_record_opts_t;

/* Defaults: max_future_skew 5 minutes, unknown fields rejected. */
void datos_record_opts_init(datos_record_opts_t *o, apr_time_t now);

typedef struct datos_invalid_t {
    datos_reason_t reason; /* DATOS_REASON_NONE when valid */
    const char *detail;    /* NUL-terminated UTF-8 without control
                                 * characters, <= DATOS_DETAIL_MAX_BYTES; quotes
                                 * at most 40 bytes of any user value */
} datos_invalid_t;

/* A message that passed the record rules, as the loader needs it: the
 * values to check and the JSON text to copy. Pointers go into the data
 * checked (or p for an id with escapes); none is NUL-terminated. */
typedef struct datos_record_t {
    const char *id; /* unescaped UTF-8, no control characters */
    apr_size_t id_len;
    const char *id_json; /* the id as written: its JSON string body
                                   * between the quotes, escapes kept */
    apr_size_t id_json_len;
    const char *contenido_json; /* likewise; NULL when null or absent */
    apr_size_t contenido_json_len;
    apr_size_t contenido_len; /* unescaped length (what the limit counts) */
    apr_int64_t timestamp_us; /* UTC microseconds */
} datos_record_t;

/* Checks one message's data (already base64-decoded) against the record
 * rules without building anything: contenido is not unescaped. Returns
 * APR_SUCCESS and fills *rec, or DATOS_EMALFORMED and fills *why
 * (APR_EINVAL for bad arguments). *why is always set.
 *
 * Rules and the order they are checked in, so that a message breaking
 * several gets one deterministic reason:
 *  1. empty_data    data has zero bytes (whitespace only is not_json).
 *  2. not_utf8      any byte sequence anywhere that is not RFC 3629 UTF-8
 *                   (overlongs, surrogates D800-DFFF, > U+10FFFF, truncated).
 *  3. not_json      not exactly one RFC 8259 JSON text with optional
 *                   whitespace (space, tab, CR, LF) around it. Also: a raw
 *                   control byte inside a string, an unknown escape, a \u
 *                   escape leaving a lone surrogate (the text would not be
 *                   Unicode; "\ud800" alone or followed by anything but a
 *                   low-surrogate escape), a byte-order mark, nesting deeper
 *                   than DATOS_RECORD_MAX_DEPTH. Numbers are checked for
 *                   syntax only, never for range.
 *  4. not_object    the JSON text is not an object.
 *  5. duplicate_key two equal keys (compared after unescaping, so "a" and
 *                   "\u0061" are equal) in any object of the document,
 *                   nested ones included, whatever the unknown-field policy.
 *  6. id            missing_id when absent; bad_id when not a string (null
 *                   and numbers included) or empty; id_too_long when longer
 *                   than 256 bytes of UTF-8 (after unescaping); bad_id when
 *                   it holds a control character: U+0000-U+001F or
 *                   U+007F-U+009F, whether raw or escaped ("\u0000", "\n").
 *  7. contenido     optional, string or null; bad_contenido for any other
 *                   type; contenido_too_large above 1 MiB (1,048,576 bytes
 *                   of UTF-8 after unescaping). Control characters allowed.
 *  8. timestamp     missing_timestamp when absent; bad_timestamp when not a
 *                   string or not RFC 3339 section 5.6 date-time: "T" or "t"
 *                   between date and time (a space is refused: the note in
 *                   RFC 3339 allowing it is outside the grammar), zone "Z",
 *                   "z" or +-hh:mm (hh <= 23, mm <= 59; "-00:00" is UTC),
 *                   1 to 6 fraction digits when a '.' is present, seconds
 *                   00-59 (no leap second); bad_timestamp also when the
 *                   instant is before 1970-01-01T00:00:00Z; future_timestamp
 *                   when it is later than now + max_future_skew (exactly
 *                   now + skew is valid).
 *  9. unknown_field a top-level key other than id, contenido, timestamp,
 *                   under DATOS_UNKNOWN_REJECT; checked last so that a
 *                   message's reason does not depend on the policy unless
 *                   unknown fields are its only fault.
 * The detail names the first unknown field, the duplicate key or the byte
 * offset of a syntax or encoding error, with short excerpts only. */
apr_status_t datos_record_check(apr_pool_t *p, const char *data, apr_size_t len,
                                const datos_record_opts_t *opts,
                                datos_record_t *rec, datos_invalid_t *why);

/* A range of bytes of some data. */
typedef struct datos_span_t {
    const char *data;
    apr_size_t len;
} datos_span_t;

/* The elements of a JSON array, as ranges of data (each without the
 * whitespace around it), in order, by the same scanner and the same JSON
 * rules as datos_record_check: *elements (of datos_span_t, possibly empty)
 * and APR_SUCCESS when data is one well-formed JSON text whose root is an
 * array; APR_ENOENT when it is well-formed but not an array;
 * DATOS_EMALFORMED with *why (empty_data, not_utf8 or not_json, as
 * datos_record_check would say) when it is not well-formed. Elements are
 * not judged as records here: each goes through datos_record_check. */
apr_status_t datos_json_array_elements(apr_pool_t *p, const char *data,
                                       apr_size_t len,
                                       apr_array_header_t **elements,
                                       datos_invalid_t *why);

/* The values of a checked record: contenido unescaped into p when it holds
 * escapes, else pointing at the data; NULL when null or absent. */
void datos_record_row(apr_pool_t *p, const datos_record_t *rec,
                      datos_row_t *row);

/* datos_record_check then datos_record_row: the rules above, the values out
 * (row->id and row->contenido not NUL-terminated; contenido may hold
 * U+0000). */
apr_status_t datos_record_validate(apr_pool_t *p, const char *data,
                                   apr_size_t len,
                                   const datos_record_opts_t *opts,
                                   datos_row_t *row, datos_invalid_t *why);

/* The same rules through jansson (JSON_REJECT_DUPLICATES): the reference
 * the fast scanner is fuzzed against, and the baseline of the benchmark.
 * Two jansson limits make it stricter than RFC 8259: a key holding U+0000
 * and a number outside double/int64 range are not_json here, while
 * datos_record_validate checks only their syntax. Rows point into p. */
apr_status_t datos_record_validate_jansson(apr_pool_t *p, const char *data,
                                           apr_size_t len,
                                           const datos_record_opts_t *opts,
                                           datos_row_t *row,
                                           datos_invalid_t *why);

/* ------------------------------------------------------------------ NDJSON */

/* Optional columns of the destination table (docs/design.md section 3,
 * "Existing tables"): a line carries them only when the flag is set. */
#define DATOS_NDJSON_MESSAGE_ID   0x1
#define DATOS_NDJSON_PUBLISH_TIME 0x2

/* The data part of a load job: one line per row,
 *   {"id":"..","contenido":".."|null,"timestamp":"2024-01-14T14:00:00.000000Z"
 *    [,"message_id":".."][,"publish_time":"...Z"]}\n
 * in one contiguous buffer grown by doubling with realloc (linear total
 * cost; freed by a cleanup of the pool), so a 100 MB batch is one slice for
 * the upload, and any run of lines [first, first + count) is a contiguous
 * byte range for resubmitting part of a batch. Strings are escaped as JSON:
 * '"', '\\', controls below U+0020 and U+2028/U+2029 are escaped, all
 * other UTF-8 is kept as is. contenido NULL is written as null (BigQuery
 * loads null and an absent key alike for a NULLABLE column; null keeps the
 * line self-describing). Timestamps always carry six fraction digits and Z. */
typedef struct datos_ndjson_t datos_ndjson_t;

apr_status_t datos_ndjson_create(apr_pool_t *p, int columns,
                                 apr_size_t initial_bytes,
                                 datos_ndjson_t **out);

/* Appends one line. message_id (message_id_len bytes) and publish_time_us
 * are used only when the matching column flag is set. Fails without
 * changing the buffer: DATOS_EMALFORMED when a string is not UTF-8 or a
 * timestamp is outside 0001..9999 (or message_id is NULL while its column
 * is on), APR_ENOMEM when the buffer cannot grow. */
apr_status_t datos_ndjson_append(datos_ndjson_t *nd, const datos_row_t *row,
                                 const char *message_id,
                                 apr_size_t message_id_len,
                                 apr_int64_t publish_time_us);

/* The whole buffer (every line ends in '\n'); NUL-terminated. */
const char *datos_ndjson_data(const datos_ndjson_t *nd, apr_size_t *len);
int datos_ndjson_lines(const datos_ndjson_t *nd);
/* Bytes of lines [first, first + count); APR_EINVAL when out of range. */
apr_status_t datos_ndjson_range(const datos_ndjson_t *nd, int first, int count,
                                const char **start, apr_size_t *len);
/* The 0-based line starting exactly at byte offset pos (as BigQuery reports
 * "row starting at position N"), or -1 when no line starts there. */
int datos_ndjson_line_at(const datos_ndjson_t *nd, apr_int64_t pos);
/* Appends the line of a checked record, copying its JSON string text as
 * the producer wrote it (it is valid JSON string text, escapes and all;
 * only U+2028/U+2029 get escaped): no unescaping and re-escaping of
 * contenido on the loader's hot path. Same failures as datos_ndjson_append
 * (the record's strings are known to be UTF-8). */
apr_status_t datos_ndjson_append_record(datos_ndjson_t *nd,
                                        const datos_record_t *rec,
                                        const char *message_id,
                                        apr_size_t message_id_len,
                                        apr_int64_t publish_time_us);
/* Empties the buffer, keeping its memory. */
void datos_ndjson_reset(datos_ndjson_t *nd);

#endif
