/* datos_loadjob.h - BigQuery load jobs of the loader (docs/design.md section 5;
 * docs/google-apis.md 2.6, 2.7, 2.10): pure helpers that name a job, describe it
 * and read what BigQuery says about it. No network. */
#ifndef DATOS_LOADJOB_H
#define DATOS_LOADJOB_H

#include <apr_pools.h>
#include <apr_tables.h>
#include "datos_error.h"
#include "datos_ndjson.h"

/* BigQuery's jobId rule: [A-Za-z0-9_-], at most 1,024 characters. */
#define DATOS_JOB_ID_MAX 1024

/* The deterministic job id of a load batch:
 *   datos_<h>_g<generation>
 * where h is the lowercase hex SHA-256 (all 64 digits: the id stays under
 * 90 characters, far inside BigQuery's 1,024, and a collision - which would
 * make a batch look already loaded - stays out of reach) of
 *   "datos-load-v1" | table | id_1 | ... | id_m
 * each part preceded by its length as 8 bytes big-endian, the ids being
 * the distinct message ids sorted in byte order (strcmp). So the same set
 * of messages gives the same id whatever the order they were pulled in or
 * how often one was redelivered into the batch. table is the caller's
 * canonical "project.dataset.table". APR_EINVAL when n < 1, an id is NULL
 * or empty, or generation < 0. */
apr_status_t datos_loadjob_id(apr_pool_t *p, const char *table,
                              const char *const *message_ids, int n,
                              int generation, const char **job_id);

/* The same in two steps, for a batch tried under several generations:
 * the key "datos_<h>" (the hash, computed once per set of messages), then
 * each generation's id from it. */
apr_status_t datos_loadjob_key(apr_pool_t *p, const char *table,
                               const char *const *message_ids, int n,
                               const char **key);
const char *datos_loadjob_generation(apr_pool_t *p, const char *key,
                                     int generation);

/* True when id follows BigQuery's jobId rule. */
int datos_loadjob_id_valid(const char *id);

typedef struct datos_loadjob_conf_t {
    const char *project; /* the project the job runs (and bills) in */
    const char *job_id;
    const char *location; /* NULL: omitted (BigQuery then uses the dataset's) */
    const char *table_project; /* NULL: project */
    const char *dataset;
    const char *table;
} datos_loadjob_conf_t;

/* The Job resource of jobs.insert for an NDJSON load (the JSON part of the
 * multipart upload, docs/google-apis.md 2.6), compact, keys in this order:
 *   {"jobReference":{"projectId":..,"jobId":..[,"location":..]},
 *    "configuration":{"load":{"destinationTable":{"projectId":..,
 *      "datasetId":..,"tableId":..},"sourceFormat":"NEWLINE_DELIMITED_JSON",
 *      "writeDisposition":"WRITE_APPEND","createDisposition":"CREATE_NEVER",
 *      "maxBadRecords":0,"ignoreUnknownValues":false}}}
 * No schema: the table exists and keeps its own. APR_EINVAL when a name is
 * missing or the job id breaks BigQuery's rule. */
apr_status_t datos_loadjob_resource(apr_pool_t *p,
                                    const datos_loadjob_conf_t *c,
                                    const char **json, apr_size_t *len,
                                    datos_err_t *err);

typedef enum datos_job_state_t {
    DATOS_JOB_PENDING = 1,
    DATOS_JOB_RUNNING,
    DATOS_JOB_DONE
} datos_job_state_t;

typedef struct datos_job_error_t {
    const char *reason; /* NULL when absent */
    const char *message;
    const char *location;
} datos_job_error_t;

typedef struct datos_loadjob_t {
    const char *project; /* jobReference, NULL when absent */
    const char *job_id;
    const char *location;
    datos_job_state_t state;
    const datos_job_error_t *error_result; /* NULL: none (DONE = success) */
    apr_array_header_t *errors; /* of datos_job_error_t; never NULL */
    apr_int64_t output_rows;    /* statistics.load.outputRows, -1 when absent */
    apr_int64_t bad_records;    /* statistics.load.badRecords, -1 when absent */
} datos_loadjob_t;

/* Reads the 200 answer of jobs.insert or jobs.get (refusals are
 * datos_google_classify's). DATOS_EMALFORMED when it is not a JSON object,
 * status.state is missing or not PENDING/RUNNING/DONE, errorResult or
 * errors[] have the wrong shape, or outputRows/badRecords is present but
 * not an int64. */
apr_status_t datos_loadjob_parse(apr_pool_t *p, const char *body,
                                 apr_size_t len, datos_loadjob_t **out,
                                 datos_err_t *err);

/* What the loader does next with a parsed job (docs/design.md section 5). */
typedef enum datos_job_outcome_t {
    DATOS_JOB_UNFINISHED = 0, /* PENDING or RUNNING: poll again */
    DATOS_JOB_SUCCEEDED,      /* DONE without errorResult: ack */
    DATOS_JOB_RETRY,          /* backendError, internalError, rateLimitExceeded
                                 * and their job* forms: resubmit as k + 1 */
    DATOS_JOB_INVALID,        /* invalid: find the rejected rows */
    DATOS_JOB_QUOTA,          /* quotaExceeded: stop pulling, exit 1 */
    DATOS_JOB_FAILED          /* any other reason: not retried */
} datos_job_outcome_t;

datos_job_outcome_t datos_loadjob_outcome(const datos_loadjob_t *job);

/* A row BigQuery names as rejected. */
typedef struct datos_rejected_t {
    apr_int64_t position; /* byte offset of the row in the NDJSON data, or -1 */
    apr_int64_t line;     /* 1-based line number, or -1 */
    const char *message;  /* the error that named it */
} datos_rejected_t;

/* The rows named in errorResult and errors[] of a failed load, each once,
 * ordered by position then line. The form docs/google-apis.md 2.7 documents is a
 * message holding "row starting at position N" (N: the byte offset where
 * the row starts, e.g. "JSON parsing error in row starting at position 0:
 * No such field: colour."); a location of the form "line N" is read too.
 * Summaries such as "Rows: 1; errors: 1" name no row and are skipped. An
 * empty result means the errors name no row: the loader must bisect. */
apr_status_t datos_loadjob_rejected(apr_pool_t *p, const datos_loadjob_t *job,
                                    apr_array_header_t **rows);

/* The 0-based NDJSON lines of rejected rows, sorted and distinct.
 * APR_NOTFOUND when one of them matches no line of nd (a position that is
 * not a line start, a line beyond the last): the errors do not describe
 * this data, so the loader must bisect instead. */
apr_status_t datos_loadjob_rejected_lines(apr_pool_t *p,
                                          const apr_array_header_t *rows,
                                          const datos_ndjson_t *nd,
                                          apr_array_header_t **lines);

#endif
