/* datos_google_classify.c - what Google's refusals mean: one classifier for
 * BigQuery's errors[].reason, Pub/Sub's status, the OAuth shape and bodies
 * that are none of these. Below the credentials and the call layer, which
 * both classify through it. */
#include <string.h>
#include <apr_strings.h>

#include "datos_google_classify.h"
#include "datos_http.h"
#include "datos_json.h"

static int is(const char *s, const char *what)
{
    return s && !strcmp(s, what);
}

static int is_any(const char *s, const char *const *list)
{
    int i;

    for (i = 0; s && list[i]; i++) {
        if (!strcmp(s, list[i])) {
            return 1;
        }
    }
    return 0;
}

/* docs/google-apis.md 0.4: the canonical code names, by what a client does next. */
static const char *const status_retry[] = {
    "UNAVAILABLE",       "INTERNAL",  "UNKNOWN",   "ABORTED",
    "DEADLINE_EXCEEDED", "CANCELLED", "DATA_LOSS", NULL};
static const char *const status_rejected[] = {"NOT_FOUND", "INVALID_ARGUMENT",
                                              "FAILED_PRECONDITION",
                                              "OUT_OF_RANGE", NULL};
static const char *const status_auth[] = {"PERMISSION_DENIED",
                                          "UNAUTHENTICATED", NULL};

static apr_status_t classify_api(int http_status, const char *reason,
                                 const char *status)
{
    /* A 501 is the one 5xx that asking again cannot change. */
    if (is(status, "UNIMPLEMENTED") || is(reason, "notImplemented")) {
        return DATOS_EREJECTED;
    }
    if (http_status >= 500 && http_status <= 599) {
        return DATOS_EBACKEND;
    }
    if (is(reason, "backendError") || is(reason, "internalError")
        || is(reason, "badGateway")) {
        return DATOS_EBACKEND;
    }
    if (http_status == 429 || is(reason, "rateLimitExceeded")) {
        return DATOS_ERATELIMIT;
    }
    if (is(reason, "quotaExceeded")) {
        return DATOS_EQUOTA;
    }
    if (is(reason, "bytesBilledLimitExceeded")) {
        return DATOS_EBYTESLIMIT;
    }
    if (is(reason, "duplicate")) {
        return DATOS_EEXISTS;
    }
    /* Pub/Sub sends no errors[]; BigQuery's status agrees with its
     * reason wherever the reasons above did not decide. */
    if (is(status, "RESOURCE_EXHAUSTED")) {
        return DATOS_ERATELIMIT;
    }
    if (is_any(status, status_retry)) {
        return DATOS_EBACKEND;
    }
    if (is(status, "ALREADY_EXISTS")) {
        return DATOS_EEXISTS;
    }
    if (is_any(status, status_auth)) {
        return DATOS_EAUTH;
    }
    if (is_any(status, status_rejected)) {
        return DATOS_EREJECTED;
    }
    if (http_status == 401 || http_status == 403) {
        return DATOS_EAUTH;
    }
    if (http_status == 408) {
        return DATOS_EBACKEND;
    }
    if (http_status >= 400 && http_status <= 499) {
        return DATOS_EREJECTED;
    }
    /* 1xx/3xx (redirects are not followed) or a 2xx handed here: not an
     * answer the caller can use. */
    return DATOS_EBACKEND;
}

static apr_status_t classify_token(int http_status)
{
    if (http_status == 429) {
        return DATOS_ERATELIMIT;
    }
    if (http_status >= 500 && http_status <= 599) {
        return DATOS_EBACKEND;
    }
    if (http_status >= 400 && http_status <= 499) {
        return DATOS_EAUTH;
    }
    return DATOS_EMALFORMED;
}

/* A proto3 Duration ("1.5s") as sent in google.rpc.RetryInfo, clamped like
 * a Retry-After; 0 when it is not one. */
static apr_interval_time_t duration_retry(const char *s)
{
    apr_int64_t secs = 0, frac = 0, scale = APR_USEC_PER_SEC;
    const char *c = s;

    if (!s || *c < '0' || *c > '9') {
        return 0;
    }
    for (; *c >= '0' && *c <= '9'; c++) {
        if (secs <= apr_time_sec(DATOS_RETRY_AFTER_MAX)) {
            secs = secs * 10 + (*c - '0');
        }
    }
    if (*c == '.') {
        for (c++; *c >= '0' && *c <= '9'; c++) {
            if (scale > 1) {
                scale /= 10;
                frac += (*c - '0') * scale;
            }
        }
    }
    if (c[0] != 's' || c[1] != '\0') {
        return 0;
    }
    if (secs >= apr_time_sec(DATOS_RETRY_AFTER_MAX)) {
        return DATOS_RETRY_AFTER_MAX;
    }
    if (apr_time_from_sec(secs) + frac < DATOS_RETRY_AFTER_MIN) {
        return DATOS_RETRY_AFTER_MIN;
    }
    return apr_time_from_sec(secs) + frac;
}

static apr_interval_time_t retry_info(json_t *e)
{
    json_t *details = datos_json_arr(e, "details");
    apr_interval_time_t best = 0;
    size_t i;

    for (i = 0; i < json_array_size(details); i++) {
        json_t *d = json_array_get(details, i);
        static const char suffix[] = "google.rpc.RetryInfo";
        const char *type = datos_json_str(d, "@type");
        apr_size_t n = type ? strlen(type) : 0;
        apr_interval_time_t t;

        if (n < sizeof(suffix) - 1
            || strcmp(type + n - (sizeof(suffix) - 1), suffix)) {
            continue;
        }
        t = duration_retry(datos_json_str(d, "retryDelay"));
        if (t > best) {
            best = t;
        }
    }
    return best;
}

apr_status_t datos_google_classify(apr_pool_t *p, datos_google_source_t src,
                                   int http_status, const char *body,
                                   apr_size_t len,
                                   apr_interval_time_t retry_after,
                                   datos_err_t *err)
{
    datos_err_t local = {0};
    json_t *j = NULL, *e = NULL;
    json_error_t jerr;
    const char *reason = NULL, *status = NULL, *msg = NULL, *shown = NULL;
    apr_interval_time_t hint;
    apr_status_t rv;

    if (!err) {
        err = &local;
    }
    /* Not through datos_json_parse: jansson's message quotes the text near
     * the error, which in a token endpoint's answer could be a token. */
    if (body && len) {
        j = json_loadb(body, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    }
    if (json_is_object(j)) {
        e = json_object_get(j, "error");
    }
    if (json_is_object(e)) { /* the API envelope */
        json_t *errs = datos_json_arr(e, "errors");
        if (json_array_size(errs) > 0) {
            reason = datos_json_str(json_array_get(errs, 0), "reason");
        }
        status = datos_json_str(e, "status");
        msg = datos_json_str(e, "message");
        hint = retry_info(e);
        if (hint > retry_after) {
            retry_after = hint;
        }
    }
    else if (json_is_string(e)) { /* OAuth: {error, error_description} */
        reason = json_string_value(e);
        msg = datos_json_str(j, "error_description");
    }
    if (reason && !*reason) {
        reason = NULL;
    }
    if (status && !*status) {
        status = NULL;
    }

    rv = src == DATOS_GOOGLE_TOKEN ? classify_token(http_status)
                                   : classify_api(http_status, reason, status);

    shown = reason ? reason : status;
    if (shown) {
        shown = datos_err_text(p, shown, strlen(shown), 64);
    }
    if (msg && *msg) {
        datos_err_set(err, p, rv, http_status, shown, "HTTP %d%s%s: %s",
                      http_status, shown ? " " : "", shown ? shown : "",
                      datos_err_text(p, msg, strlen(msg), 500));
    }
    else if (json_is_string(e) && shown) {
        datos_err_set(err, p, rv, http_status, shown, "HTTP %d %s", http_status,
                      shown);
    }
    else {
        datos_err_set(err, p, rv, http_status, shown, "HTTP %d%s%s with %s",
                      http_status, shown ? " " : "", shown ? shown : "",
                      !len ? "an empty body"
                      : e  ? "an error envelope without a message"
                      : j  ? "JSON that is not an error envelope"
                           : "a non-JSON body");
    }
    err->retry_after = retry_after;
    json_decref(j);
    return rv;
}
