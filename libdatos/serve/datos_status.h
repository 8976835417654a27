/* datos_status.h - GET /datos-status: what the module is doing, for a
 * person (HTML) and for scripts (JSON), from numbers mod_datos collects.
 *
 * Everything here is pure: the glue fills a datos_status_t from the
 * metrics block, its stores and the loader's textfile, and these
 * functions decide what needs attention and render it. Nothing asks
 * Google. Every string is cut to a bound and escaped, and the lists are
 * bounded, so the page stays under DATOS_STATUS_MAX_BYTES whatever the
 * configuration and the history hold. The JSON form is described by
 * docs/schemas/datos-status.schema.json and docs/status.md.
 */
#ifndef DATOS_STATUS_H
#define DATOS_STATUS_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <apr_time.h>

#include "datos_metrics.h"

/* Tables shown (the rest are counted), virtual hosts named per table, and
 * bytes of any one name or message. */
#define DATOS_STATUS_TABLES_MAX 16
#define DATOS_STATUS_HOSTS_MAX  8
#define DATOS_STATUS_TEXT_MAX   256
/* Neither form is ever larger. */
#define DATOS_STATUS_MAX_BYTES (512 * 1024)

/* The loader's daily load jobs quota (BigQuery: 1,500 per table per
 * day), and the share of it that needs attention. */
#define DATOS_STATUS_LOAD_QUOTA      1500
#define DATOS_STATUS_QUOTA_NEAR_PCT  80
#define DATOS_STATUS_LOADER_INTERVAL apr_time_from_sec(300)

typedef struct datos_status_table_t {
    const char *table;  /* project.dataset.table as configured */
    const char **hosts; /* the virtual hosts serving it */
    int nhosts;         /* all of them (only some may be named) */
    int cached;         /* DatosFreshFor > 0 */
    apr_interval_time_t fresh_for, stale_while_revalidate, stale_if_error;
    /* The answer this process holds (have), and the newest any process of
     * the host fetched (0: none). */
    int have;
    apr_time_t fetched;
    int rows;
    apr_size_t bytes;
    const char *etag;
    apr_time_t host_fetched;
    /* A back-off after a failed fetch: no query before next_attempt. */
    apr_time_t next_attempt;    /* 0: none */
    const char *last_failure;   /* its datos_status_name() */
    datos_fetch_rec_t *fetches; /* newest first */
    int nfetches;
} datos_status_table_t;

typedef struct datos_status_loader_t {
    const char *file;             /* DatosLoaderMetricsFile; NULL: not set */
    apr_interval_time_t interval; /* DatosLoaderInterval */
    const char *error;            /* the file could not be read: why */
    /* From the textfile; -1 (times: 0) when it does not say. */
    apr_time_t last_run, last_success;
    apr_interval_time_t duration;
    apr_int64_t rows_loaded, dead_lettered, backlog, jobs_today, jobs_quota;
} datos_status_loader_t;

typedef struct datos_status_t {
    apr_time_t now;
    const char *server; /* the host's name */
    datos_status_table_t *tables;
    int ntables;
    datos_metrics_counts_t counts;
    const char *tier; /* DatosCache's provider; NULL: none */
    int fleet;
    int ingest; /* DatosIngest On in this virtual host */
    int max_waiting;
    datos_status_loader_t loader;
} datos_status_t;

/* One thing that needs attention. what: "no_answer", "answer_expired",
 * "bigquery_failing", "tier_refusing", "loader_unreadable", "loader_late",
 * "quota_near". table: its table, or NULL. message: in words. */
typedef struct datos_status_attention_t {
    const char *what;
    const char *table;
    const char *message;
} datos_status_attention_t;

/* What needs attention, most urgent first (of datos_status_attention_t). */
apr_array_header_t *datos_status_attention(apr_pool_t *p,
                                           const datos_status_t *s);

/* The page and the JSON document, in p; *len their length. */
char *datos_status_html(apr_pool_t *p, const datos_status_t *s,
                        apr_size_t *len);
char *datos_status_json(apr_pool_t *p, const datos_status_t *s,
                        apr_size_t *len);

/* Reads the loader's Prometheus textfile (what datos-loader writes to its
 * metrics_file) into l's numbers; the fields it does not find stay
 * unknown. Never fails: a line it cannot read is skipped. */
void datos_status_loader_parse(const char *text, apr_size_t len,
                               datos_status_loader_t *l);
/* l with every number unknown. */
void datos_status_loader_init(datos_status_loader_t *l);

#endif
