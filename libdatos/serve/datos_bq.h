/* datos_bq.h - BigQuery v2 REST: the read path's "newest rows" fetch.
 *
 * A datos_bq_t is created once per configuration (httpd: post_config in the
 * parent) and shared by the threads of a process; datos_bq_child_init makes
 * it safe to use after fork. The table's name and columns are
 * datos_table.h's, the parsing of the answers datos_bq_page.h's.
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
#include "datos_table.h"

/* BigQuery bills at least 10 MiB per table a query references. */
#define DATOS_BQ_MIN_BILLED ((apr_int64_t)10 * 1024 * 1024)
/* Lookback widening: window_k = lookback * factor^k, then the whole table. */
#define DATOS_BQ_WIDEN_FACTOR 8
#define DATOS_BQ_WIDEN_STEPS  3

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
    /* Summed over the queries: what BigQuery reported with a query's
     * answer, else its on-demand rule applied to the bytes processed
     * (rounded up to a MiB, at least DATOS_BQ_MIN_BILLED). */
    apr_int64_t bytes_billed;
    int pages;  /* answers read: jobs.query, polls and pages together */
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
 * refreshes the token once. Refusals: datos_google_classify. */
apr_status_t datos_bq_fetch_latest(datos_bq_t *bq, apr_pool_t *p,
                                   datos_latest_t **out, datos_err_t *err);

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

#endif
