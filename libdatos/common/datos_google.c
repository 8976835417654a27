/* datos_google.c - the Google API call layer: token, one refresh after a
 * 401, the deadline; refusals go through datos_google_classify. */
#include <string.h>
#include <apr_strings.h>

#include "datos_google.h"
#include "datos_google_classify.h"
#include "datos_log.h"

void datos_google_op_init(datos_google_op_t *op, apr_pool_t *p,
                          datos_http_t *http, datos_creds_t *creds,
                          apr_time_t deadline, datos_err_t *err)
{
    memset(op, 0, sizeof(*op));
    op->pool = p;
    op->http = http;
    op->creds = creds;
    op->deadline = deadline;
    op->err = err;
    if (err && !err->pool) {
        err->pool = p;
        op->lent_pool = 1;
    }
}

void datos_google_op_done(datos_google_op_t *op)
{
    if (op->lent_pool && op->err) {
        op->err->pool = NULL;
        op->lent_pool = 0;
    }
}

apr_status_t datos_google_op_token(datos_google_op_t *op)
{
    apr_status_t rv = APR_SUCCESS;

    if (op->creds && !op->token_taken) {
        rv = datos_creds_token(op->creds, op->http, op->pool, op->deadline, 0,
                               &op->token, op->err);
        if (rv == APR_SUCCESS) {
            op->token_taken = 1;
        }
    }
    return rv;
}

apr_status_t datos_google_call(datos_google_op_t *op, apr_pool_t *cp,
                               const datos_google_call_t *call,
                               datos_http_resp_t **out)
{
    apr_status_t rv;
    datos_http_req_t req;
    datos_http_resp_t *resp;
    const char *quota = op->creds ? datos_creds_quota_project(op->creds) : NULL;
    int i, accepted;

    rv = datos_google_op_token(op);
    if (rv != APR_SUCCESS) {
        goto leave;
    }
    for (;;) {
        memset(&req, 0, sizeof(req));
        req.method = call->method;
        req.url = call->url;
        req.deadline = op->deadline;
        req.headers = apr_array_make(cp, 4, sizeof(const char *));
        if (op->token) {
            APR_ARRAY_PUSH(req.headers, const char *) =
                apr_pstrcat(cp, "Authorization: Bearer ", op->token, NULL);
        }
        if (quota) {
            /* User credentials bill API calls to a quota project. */
            APR_ARRAY_PUSH(req.headers, const char *) =
                apr_pstrcat(cp, "x-goog-user-project: ", quota, NULL);
        }
        for (i = 0; call->headers && i < call->headers->nelts; i++) {
            APR_ARRAY_PUSH(req.headers, const char *) =
                APR_ARRAY_IDX(call->headers, i, const char *);
        }
        if (call->body) {
            req.body = call->body;
            req.body_len = call->body_len ? call->body_len : strlen(call->body);
        }
        req.segs = call->segs;
        req.nsegs = call->nsegs;
        req.content_type = call->content_type;
        req.max_response = call->max_response;
        req.keep_partial = call->keep_partial;
        req.overflow = call->overflow;
        req.overflow_baton = call->overflow_baton;
        resp = NULL;
        rv = datos_http_perform(op->http, cp, &req, &resp, op->err);
        if (rv != APR_SUCCESS && resp) {
            /* The caller decides what a cut answer is worth. */
            *out = resp;
            goto leave;
        }
        if (rv != APR_SUCCESS) {
            goto leave;
        }
        if (resp->status != 401 || !op->token || op->refreshed) {
            break;
        }
        /* The token may have been revoked or expired early: one fresh
         * one per operation, then the 401 stands. */
        op->refreshed = 1;
        datos_log_perror(DATOS_LOG_MARK, DATOS_LOG_DEBUG, 0, cp,
                         "%s: HTTP 401, refreshing the access token",
                         call->what);
        rv = datos_creds_token(op->creds, op->http, op->pool, op->deadline, 1,
                               &op->token, op->err);
        if (rv != APR_SUCCESS) {
            goto leave;
        }
    }
    accepted = resp->status >= 200 && resp->status <= 299;
    for (i = 0; !accepted && i < 4 && call->accept[i]; i++) {
        accepted = resp->status == call->accept[i];
    }
    if (!accepted) {
        rv = datos_google_classify(
            cp, DATOS_GOOGLE_API, resp->status, resp->body, resp->body_len,
            datos_http_retry_after(resp, apr_time_now()), op->err);
        goto leave;
    }
    *out = resp;

leave:
    if (rv != APR_SUCCESS) {
        datos_err_prefix(op->err, op->pool, "%s: ", call->what);
    }
    return rv;
}
