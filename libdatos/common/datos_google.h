/* datos_google.h - the one layer every Google API call goes through
 * (docs/google-apis.md 0.4, 3, 4): the bearer token, one refresh and replay after
 * a 401, the deadline, and one classifier for what Google answers when it
 * refuses (BigQuery's errors[].reason, Pub/Sub's status, the OAuth shape,
 * bodies that are none of these), with Retry-After.
 *
 * The BigQuery read path, the load client, the Pub/Sub client, the token
 * exchange and the metadata server all classify through it, so a status
 * means the same wherever it came from.
 */
#ifndef DATOS_GOOGLE_H
#define DATOS_GOOGLE_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <apr_time.h>
#include "datos_error.h"
#include "datos_http.h"
#include "datos_auth.h"

/* ------------------------------------------------------------ classifier */

typedef enum {
    /* BigQuery and Pub/Sub: the envelope decides, then the HTTP status. */
    DATOS_GOOGLE_API = 0,
    /* OAuth token endpoints and the metadata server: the HTTP status
     * decides (429 rate limited, 5xx backend, other 4xx auth). */
    DATOS_GOOGLE_TOKEN
} datos_google_source_t;

/* Maps a refusal (any status but the 2xx the caller expected) to a status,
 * with http_status, reason (errors[0].reason, else the envelope's status,
 * else the OAuth error), a message safe to log ("HTTP 404 notFound: Not
 * found: Table p:d.t", "HTTP 502 with a non-JSON body") and retry_after:
 * the larger of the one given (from the Retry-After header) and a
 * google.rpc.RetryInfo retryDelay in the envelope, clamped like
 * datos_retry_after_parse. Never copies anything from the body but the
 * message, reason and status fields. Returns err->rv (err may be NULL).
 *
 * DATOS_GOOGLE_API, first rule that applies:
 *   status UNIMPLEMENTED, reason notImplemented      DATOS_EREJECTED
 *   5xx                                              DATOS_EBACKEND
 *   reason backendError, internalError, badGateway   DATOS_EBACKEND
 *   429, reason rateLimitExceeded                    DATOS_ERATELIMIT
 *   reason quotaExceeded                             DATOS_EQUOTA
 *   reason bytesBilledLimitExceeded                  DATOS_EBYTESLIMIT
 *   reason duplicate                                 DATOS_EEXISTS
 *   status RESOURCE_EXHAUSTED                        DATOS_ERATELIMIT
 *   status UNAVAILABLE, INTERNAL, UNKNOWN, ABORTED,
 *          DEADLINE_EXCEEDED, CANCELLED, DATA_LOSS   DATOS_EBACKEND
 *   status ALREADY_EXISTS                            DATOS_EEXISTS
 *   status PERMISSION_DENIED, UNAUTHENTICATED        DATOS_EAUTH
 *   status NOT_FOUND, INVALID_ARGUMENT,
 *          FAILED_PRECONDITION, OUT_OF_RANGE         DATOS_EREJECTED
 *   401, 403                                         DATOS_EAUTH
 *   408                                              DATOS_EBACKEND
 *   other 4xx                                        DATOS_EREJECTED
 *   anything else (1xx, 3xx, a 2xx handed here)      DATOS_EBACKEND
 * DATOS_GOOGLE_TOKEN: 429 DATOS_ERATELIMIT, 5xx DATOS_EBACKEND, other 4xx
 * DATOS_EAUTH, anything else DATOS_EMALFORMED. */
apr_status_t datos_google_classify(apr_pool_t *p, datos_google_source_t src,
                                   int http_status, const char *body,
                                   apr_size_t len,
                                   apr_interval_time_t retry_after,
                                   datos_err_t *err);

/* ------------------------------------------------------------ operations */

/* One operation (a fetch, a load job insert, a pull): one handle and so
 * one connection for all its calls, one deadline, the token taken once,
 * and at most one refresh after a 401 for the whole operation. Used by one
 * thread at a time. */
typedef struct datos_google_op_t {
    apr_pool_t *pool; /* the token and, when err had none, the error texts */
    datos_http_t *http;
    datos_creds_t *creds; /* NULL: no Authorization header */
    apr_time_t deadline;  /* absolute; 0: only the handle's timeout per call */
    datos_err_t *err;     /* may be NULL */
    const char *token;    /* NULL until taken, and for credentials "none" */
    int token_taken;
    int refreshed; /* the one refresh after a 401 is spent */
    int lent_pool; /* err->pool was NULL: op_done gives it back */
} datos_google_op_t;

/* When err has no pool, the operation lends it p until op_done, so texts
 * built in the scratch pool of a failed call outlive it. */
void datos_google_op_init(datos_google_op_t *op, apr_pool_t *p,
                          datos_http_t *http, datos_creds_t *creds,
                          apr_time_t deadline, datos_err_t *err);
void datos_google_op_done(datos_google_op_t *op);

/* Takes the bearer token now (calls take it themselves when needed):
 * lets a caller order the token exchange before its first call. */
apr_status_t datos_google_op_token(datos_google_op_t *op);

typedef struct datos_google_call_t {
    const char *what;   /* the API method, prefixed to messages: "jobs.query" */
    const char *method; /* NULL: GET */
    const char *url;
    const char *body; /* NULL: none; body_len 0 means strlen(body) */
    apr_size_t body_len;
    const datos_http_seg_t *segs; /* instead of body: sent without copying */
    int nsegs;
    const char *content_type;    /* NULL with a body: application/json */
    apr_array_header_t *headers; /* more "Name: value" lines, or NULL */
    int accept[4];               /* statuses besides 2xx that are answers, not
                                  * refusals (a resumable upload's 308); 0 ends */
    apr_size_t max_response;     /* as datos_http_req_t */
    int keep_partial; /* as datos_http_req_t: DATOS_ETOOLARGE with *resp set */
} datos_google_call_t;

/* One call: sends Authorization: Bearer (and x-goog-user-project when the
 * credentials name a quota project), performs it within op->deadline; on
 * a 401 refreshes the token once per operation and replays; maps any
 * other answer that is not 2xx or accepted through datos_google_classify
 * (DATOS_GOOGLE_API, with the answer's Retry-After). Every failure's
 * message starts with "what: ". *resp is set on success, and on
 * DATOS_ETOOLARGE with keep_partial. The answer lives in cp. */
apr_status_t datos_google_call(datos_google_op_t *op, apr_pool_t *cp,
                               const datos_google_call_t *call,
                               datos_http_resp_t **resp);

#endif
