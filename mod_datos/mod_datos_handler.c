/* mod_datos_handler.c - the HTTP contract of GET /health and GET /datos.
 *
 * Our handlers answer every outcome themselves, as JSON: an httpd HTML
 * error page never reaches a client of the API, and a backend failure is
 * never a 500.
 */
#include <string.h>

#include "apr_strings.h"
#include "apr_md5.h"
#include "apr_lib.h"

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"

#include "datos_log.h"
#include "mod_datos.h"

APLOG_USE_MODULE(datos);

#define HEALTH_BODY "{\"status\":\"ok\"}"
#define ALLOWED_METHODS "GET, HEAD"
#define JSON_TYPE "application/json"
/* When BigQuery gave no Retry-After, clients wait this long. */
#define DEFAULT_RETRY_AFTER_SEC 5

/* Client-supplied text echoed in an error message: a short run of plain
 * characters, so the message needs no JSON escaping. */
static const char *safe_text(apr_pool_t *p, const char *s)
{
    apr_size_t len = strlen(s), i;
    char *out;

    if (len > 64)
        len = 64;
    out = apr_pstrmemdup(p, s, len);
    for (i = 0; i < len; i++) {
        if (!apr_isalnum(out[i]) && !strchr("_.-", out[i]))
            out[i] = '?';
    }
    return out;
}

static void write_body(request_rec *r, const char *body, apr_size_t len)
{
    ap_set_content_length(r, len);
    if (!r->header_only && len)
        ap_rwrite(body, (int)len, r);
}

/* {"error":{"code":N,"message":"..."}}; messages are ours, plain ASCII. */
static int send_error(request_rec *r, int status, const char *message,
                      apr_interval_time_t retry_after)
{
    const char *body = apr_psprintf(r->pool,
                                    "{\"error\":{\"code\":%d,\"message\":\"%s\"}}",
                                    status, message);

    r->status = status;
    ap_set_content_type(r, JSON_TYPE);
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    if (status == HTTP_METHOD_NOT_ALLOWED)
        apr_table_setn(r->headers_out, "Allow", ALLOWED_METHODS);
    if (retry_after > 0)
        apr_table_setn(r->headers_out, "Retry-After",
                       apr_psprintf(r->pool, "%" APR_TIME_T_FMT,
                                    (retry_after + APR_USEC_PER_SEC - 1)
                                        / APR_USEC_PER_SEC));
    write_body(r, body, strlen(body));
    return OK;
}

static int method_not_allowed(request_rec *r)
{
    r->allowed = (AP_METHOD_BIT << M_GET);
    return send_error(r, HTTP_METHOD_NOT_ALLOWED,
                      apr_psprintf(r->pool, "method %s is not allowed; use "
                                   "GET or HEAD",
                                   safe_text(r->pool, r->method)),
                      0);
}

static int health_handler(request_rec *r)
{
    if (r->method_number != M_GET)
        return method_not_allowed(r);
    ap_discard_request_body(r);
    ap_set_content_type(r, JSON_TYPE);
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    write_body(r, HEALTH_BODY, sizeof(HEALTH_BODY) - 1);
    return OK;
}

/* Decodes one key or value of the query string in place, by the one rule
 * of HTML forms (application/x-www-form-urlencoded): '+' is a space and
 * %XX a byte. A '%' not followed by two hex digits, or a byte that decodes
 * to NUL, makes the whole query malformed. Returns 0 on success. */
static int form_decode(char *s)
{
    char *o = s;

    for (; *s; s++) {
        if (*s == '+') {
            *o++ = ' ';
        }
        else if (*s == '%') {
            int hi, lo;

            if (!apr_isxdigit(s[1]) || !apr_isxdigit(s[2])) {
                return -1;
            }
            hi = apr_isdigit(s[1]) ? s[1] - '0' : apr_tolower(s[1]) - 'a' + 10;
            lo = apr_isdigit(s[2]) ? s[2] - '0' : apr_tolower(s[2]) - 'a' + 10;
            if (!hi && !lo) {
                return -1;
            }
            *o++ = (char)(hi * 16 + lo);
            s += 2;
        }
        else {
            *o++ = *s;
        }
    }
    *o = '\0';
    return 0;
}

/* ?limit=N with 1 <= N <= max; nothing else is accepted, so a typo is a
 * 400 instead of a silently different answer. Pairs are split on '&'
 * (empty ones skipped), then key and value are each decoded by
 * form_decode: `%6cimit=%31%30` is `limit=10`. Returns NULL or the error. */
static const char *parse_args(request_rec *r, const mod_datos_conf_t *conf,
                              int *limit)
{
    char *args, *pair, *state;
    int seen = 0;

    *limit = conf->limit_default;
    if (!r->args || !*r->args)
        return NULL;
    args = apr_pstrdup(r->pool, r->args);
    for (pair = apr_strtok(args, "&", &state); pair;
         pair = apr_strtok(NULL, "&", &state)) {
        char *value = strchr(pair, '=');
        const char *p;
        apr_int64_t n = 0;

        if (value)
            *value++ = '\0';
        if (form_decode(pair) || (value && form_decode(value)))
            return "malformed query string";
        if (strcmp(pair, "limit"))
            return apr_psprintf(r->pool, "unknown query parameter '%s'; only "
                                "'limit' is accepted",
                                safe_text(r->pool, pair));
        if (seen++)
            return "limit is given more than once";
        if (!value || !*value)
            goto bad_limit;
        for (p = value; *p; p++) {
            if (!apr_isdigit(*p) || n > conf->limit_max)
                goto bad_limit;
            n = n * 10 + (*p - '0');
        }
        if (n < 1 || n > conf->limit_max)
            goto bad_limit;
        *limit = (int)n;
    }
    return NULL;
bad_limit:
    return apr_psprintf(r->pool, "limit must be an integer from 1 to %d",
                        conf->limit_max);
}

/* Strong ETag of the slice served: a digest of exactly its bytes. */
static const char *slice_etag(apr_pool_t *p, const datos_rendered_t *rd,
                              int k)
{
    unsigned char digest[APR_MD5_DIGESTSIZE];
    apr_md5_ctx_t ctx;
    char hex[2 * APR_MD5_DIGESTSIZE + 1];
    int i;

    apr_md5_init(&ctx);
    apr_md5_update(&ctx, rd->body, rd->row_end[k]);
    apr_md5_update(&ctx, "]}", 2);
    apr_md5_final(digest, &ctx);
    for (i = 0; i < APR_MD5_DIGESTSIZE; i++)
        apr_snprintf(hex + 2 * i, 3, "%02x", digest[i]);
    return apr_pstrcat(p, "\"", hex, "\"", NULL);
}

/* If-None-Match uses the weak comparison (RFC 9110 13.1.2). */
static int etag_matches(const char *header, const char *etag)
{
    const char *opaque = etag;
    apr_size_t olen = strlen(etag);
    const char *p = header;

    while (*p) {
        const char *start;

        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '*')
            return 1;
        if (!strncmp(p, "W/", 2))
            p += 2;
        start = p;
        while (*p && *p != ',')
            p++;
        while (p > start && (p[-1] == ' ' || p[-1] == '\t'))
            p--;
        if ((apr_size_t)(p - start) == olen && !strncmp(start, opaque, olen))
            return 1;
        while (*p && *p != ',')
            p++;
    }
    return 0;
}

static int backend_status(apr_status_t rv)
{
    if (APR_STATUS_IS_TIMEUP(rv))
        return HTTP_GATEWAY_TIME_OUT;
    switch (rv) {
    case DATOS_ERATELIMIT:
    case DATOS_EQUOTA:
    case DATOS_EAUTH:
    case DATOS_EBYTESLIMIT:
    case DATOS_ECONFIG:
        return HTTP_SERVICE_UNAVAILABLE;
    default:
        return HTTP_BAD_GATEWAY;
    }
}

static const char *backend_message(int status)
{
    switch (status) {
    case HTTP_GATEWAY_TIME_OUT:
        return "BigQuery did not answer in time";
    case HTTP_SERVICE_UNAVAILABLE:
        return "BigQuery cannot be queried right now";
    default:
        return "BigQuery failed to give a usable answer";
    }
}

static int datos_get(request_rec *r, mod_datos_conf_t *conf)
{
    mod_datos_entry_t entry;
    const datos_rendered_t *rd;
    const char *msg, *etag, *inm;
    datos_err_t err;
    apr_status_t rv;
    int limit, k, status;

    if ((msg = parse_args(r, conf, &limit)))
        return send_error(r, HTTP_BAD_REQUEST, msg, 0);
    ap_discard_request_body(r);

    datos_err_clear(&err);
    rv = mod_datos_entry_get(r, conf, &entry, &err);
    if (rv != APR_SUCCESS) {
        status = backend_status(rv);
        ap_log_rerror(APLOG_MARK, APLOG_ERR, rv, r, DATOS_LOGNO(0201)
                      "BigQuery fetch for %s failed (%s, HTTP %d%s%s): %s; "
                      "answering %d", conf->table_name,
                      datos_status_name(rv), err.http_status,
                      err.reason ? " " : "", err.reason ? err.reason : "",
                      err.message ? err.message : "no detail", status);
        return send_error(r, status, backend_message(status),
                          err.retry_after > 0 ? err.retry_after
                          : apr_time_from_sec(DEFAULT_RETRY_AFTER_SEC));
    }

    rd = entry.rendered;
    k = limit < rd->n ? limit : rd->n;
    etag = slice_etag(r->pool, rd, k);
    ap_set_content_type(r, JSON_TYPE);
    apr_table_setn(r->headers_out, "ETag", etag);
    /* Every request is a fresh BigQuery answer in this mode. */
    apr_table_setn(r->headers_out, "Cache-Control", "no-cache");

    inm = apr_table_get(r->headers_in, "If-None-Match");
    if (inm && etag_matches(inm, etag)) {
        r->status = HTTP_NOT_MODIFIED;
        return OK;
    }
    ap_set_content_length(r, rd->row_end[k] + 2);
    if (!r->header_only) {
        ap_rwrite(rd->body, (int)rd->row_end[k], r);
        ap_rwrite("]}", 2, r);
    }
    return OK;
}

int mod_datos_handler(request_rec *r)
{
    mod_datos_conf_t *conf;

    if (!r->handler)
        return DECLINED;
    if (!strcmp(r->handler, "datos-health"))
        return health_handler(r);
    if (strcmp(r->handler, "datos"))
        return DECLINED;
    if (r->method_number != M_GET)
        return method_not_allowed(r);
    conf = mod_datos_conf(r->server);
    return datos_get(r, conf);
}
