/* datos_validate.h - the record validator (docs/design.md section 3): one
 * pass over a message's data that checks it against the record's rules
 * (datos_rules.h) without building anything. The loader and POST /datos
 * share it. */
#ifndef DATOS_VALIDATE_H
#define DATOS_VALIDATE_H

#include <apr_pools.h>
#include <apr_tables.h>
#include "datos_error.h"
#include "datos_record.h"
#include "datos_rules.h"

/* Nesting deeper than this is not_json (RFC 8259 section 9 lets a parser
 * limit it; jansson 2.14 has the same limit, which keeps it a faithful
 * oracle). */
#define DATOS_RECORD_MAX_DEPTH 2048

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

#endif
