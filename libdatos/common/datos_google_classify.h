/* datos_google_classify.h - the one classifier of what Google answers when
 * it refuses (docs/google-apis.md 0.4): BigQuery's errors[].reason, Pub/Sub's
 * status, the OAuth shape, bodies that are none of these, with Retry-After.
 *
 * The credentials (token exchange, metadata server) and the call layer
 * (datos_google.h: the BigQuery read path, the load client, the Pub/Sub
 * client) classify through it, so a status means the same wherever it came
 * from.
 */
#ifndef DATOS_GOOGLE_CLASSIFY_H
#define DATOS_GOOGLE_CLASSIFY_H

#include <apr_pools.h>
#include <apr_time.h>
#include "datos_error.h"

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

#endif
