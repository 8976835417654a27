/* datos_bq.h - BigQuery v2 REST: the read path's "newest rows" fetch.
 *
 * A datos_bq_t is created once per configuration (httpd: post_config in the
 * parent) and shared by the threads of a process; datos_bq_child_init makes
 * it safe to use after fork.
 */
#ifndef DATOS_BQ_H
#define DATOS_BQ_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <apr_time.h>
#include "datos_error.h"
#include "datos_http.h"
#include "datos_auth.h"
#include "datos_endpoint.h"
#include "datos_record.h"

/* BigQuery bills at least 10 MiB per table a query references. */
#define DATOS_BQ_MIN_BILLED ((apr_int64_t)10 * 1024 * 1024)
/* Lookback widening: window_k = lookback * factor^k, then the whole table. */
#define DATOS_BQ_WIDEN_FACTOR 8
#define DATOS_BQ_WIDEN_STEPS  3

typedef struct datos_table_ref_t {
    const char *project; /* NULL: the billing project */
    const char *dataset;
    const char *table;
} datos_table_ref_t;

/* The table-name rule, checked at configuration time:
 *   ^([a-z][a-z0-9-]{4,28}[a-z0-9]\.)?[A-Za-z0-9_]{1,1024}\.[A-Za-z0-9_]{1,1024}$
 * Returns NULL on success, else a message in p. */
const char *datos_table_parse(apr_pool_t *p, const char *name,
                              datos_table_ref_t *out);

/* `project.dataset.table`, always backtick-quoted. */
const char *datos_table_sql(apr_pool_t *p, const char *billing_project,
                            const datos_table_ref_t *t);

typedef struct datos_bq_conf_t {
    const char
        *base_url; /* up to and including "/bigquery/v2", no trailing '/' */
    const char *project; /* billing project; NULL: from the credentials */
    datos_table_ref_t table;
    const char *
        location; /* NULL: the table's, read once per process with tables.get */
    int lookback_days;            /* >= 1 */
    apr_int64_t max_bytes_billed; /* 0: unset */
    apr_size_t
        max_payload; /* pages are followed until the rows reach this many bytes */
    int max_rows;    /* rows in an answer (the largest ?limit) */
    apr_interval_time_t
        timeout; /* the whole fetch: token, location, query, polls, pages, widening */
    datos_http_opts_t
        http; /* its timeout is cut to the fetch deadline per call */
    datos_creds_t *creds;
} datos_bq_conf_t;

typedef struct datos_bq_t datos_bq_t;

/* Copies conf into p; validates base_url with the transport rule. */
apr_status_t datos_bq_create(apr_pool_t *p, const datos_bq_conf_t *conf,
                             datos_bq_t **out, datos_err_t *err);
apr_status_t datos_bq_child_init(datos_bq_t *bq, apr_pool_t *pchild);

typedef struct datos_latest_t {
    apr_array_header_t *
        rows; /* of datos_row_t: newest first, ties by id (byte order), one per id */
    int queries;                 /* jobs.query calls made */
    int polls;                   /* getQueryResults calls made */
    int window_days;             /* the last window tried; 0 = whole table */
    apr_int64_t bytes_processed; /* summed over the queries */
    int capped; /* a widening step hit maximumBytesBilled: rows are what the narrower windows found */
    int truncated; /* pages stopped at max_payload */
} datos_latest_t;

/* One fetch of the newest max_rows rows, one per id: the newest by
 * (timestamp, publish_time, message_id) wins. The first query looks back
 * lookback_days; while it yields fewer than max_rows rows the window widens
 * (DATOS_BQ_WIDEN_STEPS steps, the last being the whole table). Named
 * parameters, useLegacySql false, formatOptions.useInt64Timestamp, location,
 * maximumBytesBilled when set. jobComplete:false is polled through
 * getQueryResults and pageToken followed, all within conf->timeout. A 401
 * refreshes the token once. Errors: see datos_bq_parse_error. */
apr_status_t datos_bq_fetch_latest(datos_bq_t *bq, apr_pool_t *p,
                                   datos_latest_t **out, datos_err_t *err);

/* What tables.get tells about the table (docs/design.md 3, "Existing tables"). */
typedef struct datos_table_info_t {
    const char *location;
    int has_publish_time; /* the loader's columns, present in tables it made */
    int has_message_id;
} datos_table_info_t;

/* Parses a tables.get answer: the record's columns must be there with
 * their types (id STRING, contenido STRING not REQUIRED, timestamp
 * TIMESTAMP, none REPEATED), and publish_time TIMESTAMP / message_id
 * STRING are noted when present. A column that does not fit is
 * DATOS_ECONFIG naming it; an answer without schema or location is
 * DATOS_EMALFORMED. */
apr_status_t datos_bq_parse_table(apr_pool_t *p, const char *body,
                                  apr_size_t len, datos_table_info_t *info,
                                  datos_err_t *err);

/* The SQL the fetch sends for a window of `days` (0 = whole table). The
 * version of an id kept is the newest by timestamp, then publish_time and
 * message_id where info says the table has them (NULL: it has both); a
 * table with neither breaks ties by contenido. */
const char *datos_bq_latest_sql(apr_pool_t *p, const char *table_sql, int days,
                                const datos_table_info_t *info);

/* A refresh after a first answer (docs/design.md 4, "Queries and cost"): as
 * datos_bq_fetch_latest, but the first query scans only `timestamp >=
 * @watermark` (a TIMESTAMP parameter). While that yields fewer than
 * max_rows rows, the lookback windows wider than the watermark follow, then
 * the whole table, with the same capped/truncated rules. window_days reports
 * the watermark window as its age in whole days, rounded up. A watermark
 * of 0 (none: no rows yet, or 1970-01-01, which is every valid row anyway)
 * or outside DATOS_TS_MIN_US..DATOS_TS_MAX_US behaves exactly as
 * datos_bq_fetch_latest. */
apr_status_t datos_bq_fetch_since(datos_bq_t *bq, apr_pool_t *p,
                                  apr_int64_t watermark_us,
                                  datos_latest_t **out, datos_err_t *err);

/* The SQL of the watermark window. */
const char *datos_bq_since_sql(apr_pool_t *p, const char *table_sql,
                               const datos_table_info_t *info);

/* The watermark for the next refresh: the oldest row of an answer,
 * truncated to its UTC day; 0 when the answer has no rows. It only rises
 * as rows arrive, so the scanned partitions only shrink. */
apr_int64_t datos_bq_watermark(const datos_latest_t *l);

/* One answer of jobs.query or jobs.getQueryResults. */
typedef struct datos_bq_page_t {
    int job_complete;
    const char *job_id;
    const char *location;
    const char *page_token;            /* NULL on the last page */
    apr_int64_t total_bytes_processed; /* -1 when absent */
    apr_array_header_t *rows;          /* of datos_row_t; empty when absent */
    apr_size_t row_bytes;              /* id + contenido bytes of these rows */
} datos_bq_page_t;

/* Parses a 200 answer. Columns are found by name in schema.fields (id STRING,
 * contenido STRING, timestamp TIMESTAMP); timestamps go through
 * datos_ts_parse_cell. A complete answer without schema, a row whose cell
 * count differs from the schema, a NULL id or timestamp, a non-string cell:
 * DATOS_EMALFORMED naming the row. */
apr_status_t datos_bq_parse_page(apr_pool_t *p, const char *body,
                                 apr_size_t len, datos_bq_page_t *page,
                                 datos_err_t *err);

/* Maps a non-2xx answer (Google's envelope, or any body: HTML, empty, JSON
 * of another shape) to a status, with code, reason and message in err:
 * datos_google_classify with DATOS_GOOGLE_API (401 -> DATOS_EAUTH; 403
 * rateLimitExceeded and 429 -> DATOS_ERATELIMIT; 403 quotaExceeded ->
 * DATOS_EQUOTA; other 403 -> DATOS_EAUTH; 400 bytesBilledLimitExceeded ->
 * DATOS_EBYTESLIMIT; 409 duplicate -> DATOS_EEXISTS; 5xx and the reasons
 * backendError, internalError, badGateway -> DATOS_EBACKEND; other 4xx ->
 * DATOS_EREJECTED). retry_after is copied into err. Returns err->rv. */
apr_status_t datos_bq_parse_error(apr_pool_t *p, int http_status,
                                  const char *body, apr_size_t len,
                                  apr_interval_time_t retry_after,
                                  datos_err_t *err);

#endif
