/* datos_bq_page.h - reading BigQuery's answers to jobs.query and
 * jobs.getQueryResults (docs/google-apis.md 2.3-2.5). No network. */
#ifndef DATOS_BQ_PAGE_H
#define DATOS_BQ_PAGE_H

#include <apr_pools.h>
#include <apr_tables.h>
#include "datos_error.h"
#include "datos_record.h"

/* One answer of jobs.query or jobs.getQueryResults. */
typedef struct datos_bq_page_t {
    int job_complete;
    const char *job_id;
    const char *location;
    const char *page_token;            /* NULL on the last page */
    apr_int64_t total_bytes_processed; /* -1 when absent */
    apr_int64_t total_bytes_billed;    /* -1 when absent (jobs.query only) */
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

#endif
