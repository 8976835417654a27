/* datos_ndjson.h - the NDJSON lines of a load job (docs/design.md section
 * 3): checked records, or rows, one line each in one contiguous buffer. */
#ifndef DATOS_NDJSON_H
#define DATOS_NDJSON_H

#include <apr_pools.h>
#include "datos_error.h"
#include "datos_record.h"
#include "datos_validate.h"

/* Optional columns of the destination table (docs/design.md section 3,
 * "Existing tables"): a line carries them only when the flag is set. */
#define DATOS_NDJSON_MESSAGE_ID   0x1
#define DATOS_NDJSON_PUBLISH_TIME 0x2

/* The data part of a load job: one line per row,
 *   {"id":"..","contenido":".."|null,"timestamp":"2024-01-14T14:00:00.000000Z"
 *    [,"message_id":".."][,"publish_time":"...Z"]}\n
 * in one contiguous buffer of initial_bytes, grown by doubling when a line
 * does not fit (linear total cost; freed by a cleanup of the pool), so a
 * 100 MB batch is one slice for the upload, and any run of lines
 * [first, first + count) is a contiguous byte range for resubmitting part
 * of a batch. Strings are escaped as JSON:
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
/* The longest line datos_ndjson_append_record can make of rec, for a
 * buffer of these columns (0 when beyond any size): a buffer created with
 * the sum of these for a set of records as initial_bytes holds all their
 * lines without growing. */
apr_size_t datos_ndjson_record_max(int columns, const datos_record_t *rec,
                                   apr_size_t message_id_len);
/* Empties the buffer, keeping its memory. */
void datos_ndjson_reset(datos_ndjson_t *nd);

#endif
