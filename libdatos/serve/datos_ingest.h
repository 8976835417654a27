/* datos_ingest.h - the rules of POST /datos (docs/design.md section 4): what
 * body is accepted, how it becomes Pub/Sub messages, and the JSON answers.
 *
 * A body is one record (a JSON object) or a batch (a JSON array of
 * records). Every record is judged by datos_record_check, the loader's own
 * validator, so a record the module accepts is one the loader will load.
 * A batch is all or nothing: the first invalid record refuses it whole.
 * Records are published exactly as sent (the whitespace around each one
 * trimmed), so the loader sees the bytes the client wrote.
 */
#ifndef DATOS_INGEST_H
#define DATOS_INGEST_H

#include <apr_pools.h>
#include <apr_tables.h>
#include "datos_error.h"
#include "datos_validate.h"
#include "datos_pubsub.h"

/* Refusals of a whole batch, beside the record reasons of datos_rules.h. */
#define DATOS_INGEST_EMPTY_BATCH "empty_batch"
#define DATOS_INGEST_TOO_MANY    "too_many_records"

/* The most records one batch may hold: Pub/Sub's 1,000 messages per
 * publish request, so that a batch is one request, published or not. */
#define DATOS_INGEST_MAX_BATCH DATOS_PUBSUB_PUBLISH_MAX_MESSAGES
/* The largest body: its records, base64 encoded (4/3) with their
 * attributes, stay under one publish request's 10,000,000 bytes. */
#define DATOS_INGEST_MAX_BODY ((apr_size_t)7 * 1024 * 1024)

typedef struct datos_ingest_t {
    int batch;                   /* the body was a JSON array */
    int n;                       /* records, >= 1 */
    const datos_span_t *records; /* n records, each as sent */
} datos_ingest_t;

typedef struct datos_ingest_refusal_t {
    const char *reason;  /* a datos_reason_name(), or one of the two above */
    int index;           /* the record at fault in a batch (0-based), else -1 */
    const char *message; /* one clean line, user values quoted short */
} datos_ingest_refusal_t;

/* Judges a body of len bytes. max_batch (1..DATOS_INGEST_MAX_BATCH) bounds
 * a batch. APR_SUCCESS fills *in; DATOS_EMALFORMED fills *why:
 *   - a body that is not one well-formed JSON text: empty_data, not_utf8 or
 *     not_json, index -1;
 *   - an array: empty_batch when it holds nothing, too_many_records past
 *     max_batch (index -1), else the first record that fails
 *     datos_record_check, with its index;
 *   - anything else: the body as one record, by datos_record_check
 *     (not_object for a string, number...), index -1.
 * APR_EINVAL for bad arguments. Everything points into body or p. */
apr_status_t datos_ingest_parse(apr_pool_t *p, const char *body, apr_size_t len,
                                int max_batch, const datos_record_opts_t *opts,
                                datos_ingest_t *in,
                                datos_ingest_refusal_t *why);

/* Whether a request's Content-Type is JSON: the media type
 * application/json (any case, RFC 9110 8.3.1), parameters allowed, but a
 * charset parameter, when present, must be utf-8 (RFC 8259 section 8.1:
 * JSON exchanged between systems is UTF-8). NULL or "" is not. */
int datos_ingest_is_json(const char *content_type);

/* The messages of an accepted body: each record as data, with the
 * attributes datos_ingest=http and datos_client=client (the client's
 * address; omitted when NULL or empty). *out gets in->n messages. */
apr_status_t datos_ingest_messages(apr_pool_t *p, const datos_ingest_t *in,
                                   const char *client,
                                   const datos_pubsub_out_t **out);

/* {"messageId":"..."} for one record, {"messageIds":[...]} for a batch, in
 * the order of the records; ids is an array of const char *. */
const char *datos_ingest_accepted_body(apr_pool_t *p, int batch,
                                       const apr_array_header_t *ids,
                                       apr_size_t *len);

/* {"error":{"code":400,"reason":"...","message":"...","index":N}} (index
 * only for a record of a batch), escaped by jansson. */
const char *datos_ingest_refusal_body(apr_pool_t *p, int code,
                                      const datos_ingest_refusal_t *why,
                                      apr_size_t *len);

#endif
