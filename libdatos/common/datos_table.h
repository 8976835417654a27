/* datos_table.h - the BigQuery table of the read path and the loader: the
 * table-name rule, its SQL name, and what tables.get says about it. No
 * network. */
#ifndef DATOS_TABLE_H
#define DATOS_TABLE_H

#include <apr_pools.h>
#include "datos_error.h"

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
apr_status_t datos_table_parse_info(apr_pool_t *p, const char *body,
                                    apr_size_t len, datos_table_info_t *info,
                                    datos_err_t *err);

#endif
