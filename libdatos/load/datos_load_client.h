/* datos_load_client.h - BigQuery load jobs over HTTP (docs/google-apis.md 2.2, 2.6,
 * 2.7): tables.get, jobs.insert with NDJSON data (multipart, or the
 * resumable protocol for large batches), jobs.get. Built on the Google
 * call layer and the pure helpers of datos_loadjob.h.
 *
 * A datos_load_client_t holds one HTTP handle (one connection, reused by every
 * call): one thread at a time. Each call makes its request(s) within
 * deadline (absolute; 0 = only the http timeout per request) and does not
 * retry (callers use datos_backoff), except that a resumable upload
 * resumes after a failed chunk (below). A 401 refreshes the token once per
 * call; refusals are classified by datos_google_classify, with Retry-After
 * in err->retry_after and messages starting with the method
 * ("jobs.insert: HTTP 409 duplicate: Already Exists: Job ...").
 */
#ifndef DATOS_LOAD_CLIENT_H
#define DATOS_LOAD_CLIENT_H

#include <apr_pools.h>
#include "datos_auth.h"
#include "datos_error.h"
#include "datos_http.h"
#include "datos_loadjob.h"
#include "datos_table.h"

#define DATOS_LOAD_CLIENT_RESUMABLE_ABOVE ((apr_size_t)5 * 1024 * 1024)
#define DATOS_LOAD_CLIENT_CHUNK_SIZE      ((apr_size_t)8 * 1024 * 1024)
#define DATOS_LOAD_CLIENT_CHUNK_UNIT      ((apr_size_t)256 * 1024)

typedef struct datos_load_client_t datos_load_client_t;

typedef struct datos_load_client_conf_t {
    const char *
        base_url; /* .../bigquery/v2; uploads go to the same root + /upload/bigquery/v2 */
    const char *project;     /* the project jobs run in */
    datos_table_ref_t table; /* table.project NULL: project */
    const char *location;    /* NULL: the table's, from tables.get */
    datos_http_opts_t http;
    datos_creds_t *creds;
    apr_size_t
        resumable_above; /* 0: default 5 MiB; bodies above use uploadType=resumable */
    apr_size_t
        chunk_size; /* resumable chunks, multiple of 256 KiB; 0: default 8 MiB */
} datos_load_client_conf_t;

/* Copies conf into p. DATOS_ECONFIG for a base_url that does not end in
 * "/bigquery/v2" (trailing '/' removed), a project that is not a project
 * id, a missing dataset or table, a chunk_size that is not a multiple of
 * 256 KiB, bad timeouts; base_url must pass datos_http_check_url with
 * http.allow_insecure (else its status, err->reason
 * DATOS_REASON_PLAIN_HTTP when only plain http broke the rule). */
apr_status_t datos_load_client_create(apr_pool_t *p,
                                      const datos_load_client_conf_t *conf,
                                      datos_load_client_t **out,
                                      datos_err_t *err);

/* tables.get: location and which loader columns exist (datos_table_info_t of datos_table.h);
 * a missing or mistyped record column is DATOS_ECONFIG naming it. The
 * location is kept for jobs when conf->location is NULL. */
apr_status_t datos_load_client_table(datos_load_client_t *bl, apr_pool_t *p,
                                     apr_time_t deadline,
                                     datos_table_info_t *info,
                                     datos_err_t *err);

/* jobs.insert of an NDJSON load with this job id (datos_loadjob_resource), the data sent without
 * copying (multipart/related, or resumable above the threshold: session POST, then PUT chunks with
 * Content-Range, following 308 + Range, resuming from the Range after a failed chunk within the
 * deadline). A 409 duplicate is DATOS_EEXISTS (then call datos_load_client_get).
 *
 * location: the job's; NULL: conf->location, else the table's from the
 * last datos_load_client_table, else none (BigQuery then runs the job in the
 * dataset's location, and says which in job->location). multipart: a
 * random boundary checked absent from data. resumable: the session URI
 * (Location) must be on the upload URL's scheme, host and port, since the
 * token goes there; a chunk that fails retryably (timeout, connection,
 * 5xx, 429) is followed, after a backoff wait, by a status probe
 * (Content-Range: bytes * / len) and the upload goes on from the Range it
 * answers, until the deadline or 10 failures in a row. *job is read from
 * the final 200/201 answer by datos_loadjob_parse. */
apr_status_t datos_load_client_insert(datos_load_client_t *bl, apr_pool_t *p,
                                      apr_time_t deadline, const char *job_id,
                                      const char *location, const char *data,
                                      apr_size_t len, datos_loadjob_t **job,
                                      datos_err_t *err);

/* jobs.get with location; 404 is DATOS_EREJECTED with http_status 404.
 * location NULL: as for datos_load_client_insert (none: no ?location=, which
 * finds only jobs in US or EU). */
apr_status_t datos_load_client_get(datos_load_client_t *bl, apr_pool_t *p,
                                   apr_time_t deadline, const char *job_id,
                                   const char *location, datos_loadjob_t **job,
                                   datos_err_t *err);

#endif
