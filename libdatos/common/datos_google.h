/* datos_google.h - the one layer every Google API call goes through
 * (docs/google-apis.md 0.4, 3, 4): the bearer token, one refresh and replay
 * after a 401, the deadline, and refusals mapped by datos_google_classify
 * (datos_google_classify.h). The BigQuery read path, the load client and
 * the Pub/Sub client call through it.
 */
#ifndef DATOS_GOOGLE_H
#define DATOS_GOOGLE_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <apr_time.h>
#include "datos_error.h"
#include "datos_http.h"
#include "datos_auth.h"

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
    datos_http_overflow_fn *overflow; /* as datos_http_req_t: the bytes past
                                       * max_response, and *resp set on a
                                       * failed transfer too */
    void *overflow_baton;
} datos_google_call_t;

/* One call: sends Authorization: Bearer (and x-goog-user-project when the
 * credentials name a quota project), performs it within op->deadline; on
 * a 401 refreshes the token once per operation and replays; maps any
 * other answer that is not 2xx or accepted through datos_google_classify
 * (DATOS_GOOGLE_API, with the answer's Retry-After). Every failure's
 * message starts with "what: ". *resp is set on success, on
 * DATOS_ETOOLARGE with keep_partial, and on a failed transfer with
 * overflow (what arrived of the answer). The answer lives in cp. */
apr_status_t datos_google_call(datos_google_op_t *op, apr_pool_t *cp,
                               const datos_google_call_t *call,
                               datos_http_resp_t **resp);

#endif
