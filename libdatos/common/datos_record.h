/* datos_record.h - the datos record (docs/design.md section 3) as values,
 * and its rendering for readers. The rules a message must follow are
 * datos_rules.h's, the validator datos_validate.h's, the NDJSON lines of a
 * load job datos_ndjson.h's. */
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

#endif
