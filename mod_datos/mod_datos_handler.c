/* mod_datos_handler.c - the HTTP contract of /datos, /health, /metrics and
 * /datos-status (whose numbers mod_datos_status.c collects).
 *
 * Every outcome is answered here, through mod_datos_reply.c: an httpd
 * HTML error page never reaches a client of the API, and a backend
 * failure is never a 500. A cache hit does no JSON work and no copy: the
 * headers were decided when the answer was built, and the body goes out
 * straight from the answer's memory.
 *
 * GET /datos is answered by one function on two paths: the quick handler
 * (httpd's quick_handler hook, before the location and directory walks,
 * as mod_cache serves its hits) for the paths where the configuration
 * shows nothing that would answer differently (mod_datos_sections.c), and
 * the handler for the rest and for whatever the quick path declines
 * (anything but an answer servable at once). Conditional requests, gzip,
 * Cache-Status and /metrics are the same on both.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "apr_strings.h"
#include "apr_lib.h"
#include "apr_buckets.h"

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "util_filter.h"

#include "datos_log.h"
#include "datos_metrics.h"
#include "datos_policy.h"
#include "datos_time.h"
#include "mod_datos_cache.h"
#include "mod_datos_handler.h"
#include "mod_datos_linger.h"
#include "mod_datos_ingest.h"
#include "mod_datos_reply.h"
#include "mod_datos_runtime.h"
#include "mod_datos_sections.h"
#include "mod_datos_status.h"

APLOG_USE_MODULE(datos);

#define HEALTH_BODY  "{\"status\":\"ok\"}"
#define READY_BODY   "{\"status\":\"ready\"}"
#define WARMING_BODY "{\"status\":\"warming\"}"
/* A load balancer asks again this soon while the host warms up. */
#define WARMING_RETRY    1
#define ALLOWED_METHODS  "GET, HEAD"
#define HEALTH_JSON_TYPE "application/health+json"
#define METRICS_TYPE     "text/plain; version=0.0.4; charset=utf-8"

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

static int method_not_allowed(request_rec *r)
{
    int post = r->handler && !strcmp(r->handler, "datos")
               && mod_datos_conf(r->server)->ingest;

    r->allowed = (AP_METHOD_BIT << M_GET);
    if (post)
        r->allowed |= (AP_METHOD_BIT << M_POST);
    apr_table_setn(r->headers_out, "Allow",
                   post ? ALLOWED_METHODS ", POST" : ALLOWED_METHODS);
    return mod_datos_send_error(
        r, HTTP_METHOD_NOT_ALLOWED,
        apr_psprintf(r->pool,
                     "method %s is not allowed; use "
                     "%s",
                     safe_text(r->pool, r->method),
                     post ? "GET, HEAD or POST" : "GET or HEAD"),
        0);
}

/* OPTIONS names what the path allows, with no body (RFC 9110 9.3.7).
 * datos.conf leaves it outside the login with GET and HEAD: it tells no
 * more than a 405 would. */
static int options_answer(request_rec *r)
{
    int post = r->handler && !strcmp(r->handler, "datos")
               && mod_datos_conf(r->server)->ingest;

    ap_discard_request_body(r);
    apr_table_setn(r->headers_out, "Allow",
                   post ? ALLOWED_METHODS ", POST" : ALLOWED_METHODS);
    r->status = HTTP_NO_CONTENT;
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

/* The query's pairs, split on '&' (empty ones skipped) and each decoded by
 * form_decode: `%6cimit=%31%30` is `limit=10`. Calls take(key, value)
 * for each; returns NULL or the error for a 400. */
typedef const char *take_fn(request_rec *r, void *baton, const char *key,
                            const char *value);

static const char *each_arg(request_rec *r, take_fn *take, void *baton)
{
    char *args, *pair, *state;

    if (!r->args || !*r->args)
        return NULL;
    args = apr_pstrdup(r->pool, r->args);
    for (pair = apr_strtok(args, "&", &state); pair;
         pair = apr_strtok(NULL, "&", &state)) {
        char *value = strchr(pair, '=');
        const char *msg;

        if (value)
            *value++ = '\0';
        if (form_decode(pair) || (value && form_decode(value)))
            return "malformed query string";
        if ((msg = take(r, baton, pair, value)))
            return msg;
    }
    return NULL;
}

typedef struct {
    const mod_datos_conf_t *conf;
    int limit;
    int seen;
} limit_arg_t;

/* ?limit=N with 1 <= N <= max; nothing else is accepted, so a typo is a
 * 400 instead of a silently different answer. */
static const char *take_limit(request_rec *r, void *baton, const char *key,
                              const char *value)
{
    limit_arg_t *la = baton;
    apr_int64_t n = 0;
    const char *p;

    if (strcmp(key, "limit"))
        return apr_psprintf(r->pool,
                            "unknown query parameter '%s'; only "
                            "'limit' is accepted",
                            safe_text(r->pool, key));
    if (la->seen++)
        return "limit is given more than once";
    if (!value || !*value)
        goto bad_limit;
    for (p = value; *p; p++) {
        if (!apr_isdigit(*p) || n > la->conf->limit_max)
            goto bad_limit;
        n = n * 10 + (*p - '0');
    }
    if (n < 1 || n > la->conf->limit_max)
        goto bad_limit;
    la->limit = (int)n;
    return NULL;
bad_limit:
    return apr_psprintf(r->pool, "limit must be an integer from 1 to %d",
                        la->conf->limit_max);
}

static const char *backend_message(int status)
{
    switch (status) {
    case HTTP_GATEWAY_TIME_OUT: return "BigQuery did not answer in time";
    case HTTP_SERVICE_UNAVAILABLE:
        return "BigQuery cannot be queried right now";
    default: return "BigQuery failed to give a usable answer";
    }
}

/* Whether the client takes gzip (RFC 9110 12.5.3): "gzip" or "x-gzip",
 * or "*" when gzip is not named, with a q-value above 0. */
static int accepts_gzip(request_rec *r)
{
    const char *ae = apr_table_get(r->headers_in, "Accept-Encoding");
    int star = 0, named = 0, gzip_ok = 0;

    while (ae && *ae) {
        const char *end = ae + strcspn(ae, ","), *semi, *q;
        const char *tok = ae, *tend;
        double qv = 1.0;

        while (tok < end && (*tok == ' ' || *tok == '\t'))
            tok++;
        semi = memchr(tok, ';', (apr_size_t)(end - tok));
        tend = semi ? semi : end;
        while (tend > tok && (tend[-1] == ' ' || tend[-1] == '\t'))
            tend--;
        if (semi
            && (q = strstr(
                    apr_pstrmemdup(r->pool, semi, (apr_size_t)(end - semi)),
                    "q="))) {
            qv = strtod(q + 2, NULL);
        }
        if ((tend - tok == 4 && !strncasecmp(tok, "gzip", 4))
            || (tend - tok == 6 && !strncasecmp(tok, "x-gzip", 6))) {
            named = 1;
            gzip_ok = qv > 0;
        }
        else if (tend - tok == 1 && *tok == '*') {
            star = qv > 0;
        }
        ae = *end ? end + 1 : end;
    }
    return named ? gzip_ok : star;
}

static void put_bucket(apr_bucket_brigade *bb, const void *data, apr_size_t len)
{
    /* Immortal: the answer outlives the request, which holds it until its
     * pool goes after the last byte is written. */
    if (len)
        APR_BRIGADE_INSERT_TAIL(
            bb, apr_bucket_immortal_create(data, len, bb->bucket_alloc));
}

/* GET /datos, on the handler's path or (quick) the quick handler's, which
 * declines whatever is not a cache hit servable at once. */
static int datos_get(request_rec *r, mod_datos_conf_t *conf, int quick)
{
    mod_datos_entry_t entry;
    const datos_answer_t *a;
    const datos_answer_gz_t *gz = NULL;
    limit_arg_t la;
    const char *msg;
    char *cache_status;
    datos_err_t err;
    apr_status_t rv;
    apr_bucket_brigade *bb;
    int k, status;

    memset(&la, 0, sizeof(la));
    la.conf = conf;
    la.limit = conf->limit_default;
    if ((msg = each_arg(r, take_limit, &la)))
        return quick ? DECLINED
                     : mod_datos_send_error(r, HTTP_BAD_REQUEST, msg, 0);

    datos_err_clear(&err);
    memset(&entry, 0, sizeof(entry));
    rv = mod_datos_entry_get(r, conf, quick, &entry, &err);
    if (rv == MOD_DATOS_DECLINED)
        return DECLINED;
    ap_discard_request_body(r);
    if (rv != APR_SUCCESS) {
        status = mod_datos_backend_status(rv);
        /* A client told to come back later need not keep a worker: under
         * prefork a kept-alive connection holds a whole process. */
        r->connection->keepalive = AP_CONN_CLOSE;
        return mod_datos_send_error(r, status, backend_message(status),
                                    mod_datos_retry_after(&err));
    }

    mod_datos_linger_arm(r, conf->keepalive_linger);
    a = entry.answer;
    k = datos_answer_rows(a, la.limit);
    if (a->gz_count && accepts_gzip(r))
        gz = datos_answer_gzip(a, k);
    ap_set_content_type(r, MOD_DATOS_JSON_TYPE);
    if (gz) {
        char *etag = apr_palloc(r->pool, DATOS_ETAG_GZ_SIZE);
        datos_answer_etag_gz(a, k, etag);
        apr_table_setn(r->headers_out, "ETag", etag);
        apr_table_setn(r->headers_out, "Content-Encoding", "gzip");
    }
    else {
        apr_table_setn(r->headers_out, "ETag", datos_answer_etag(a, k));
    }
    apr_table_setn(r->headers_out, "Cache-Control", conf->rt->cache_control);
    apr_table_setn(r->headers_out, "Age",
                   apr_psprintf(r->pool, "%" APR_INT64_T_FMT,
                                datos_policy_age(a->fetched, entry.now)));
    apr_table_setn(r->headers_out, "Vary", "Accept-Encoding");
    cache_status = apr_palloc(r->pool, DATOS_POLICY_STATUS_SIZE);
    datos_policy_cache_status(cache_status, entry.how, a->fetched,
                              conf->fresh_for, entry.now);
    apr_table_setn(r->headers_out, "Cache-Status", cache_status);

    status = ap_meets_conditions(r);
    if (status == HTTP_NOT_MODIFIED) {
        r->status = HTTP_NOT_MODIFIED;
        return OK;
    }
    if (status != OK)
        return status;

    if (gz) {
        apr_size_t hlen, tlen;
        const unsigned char *head = datos_answer_gzip_header(&hlen);
        const unsigned char *tail = datos_answer_gzip_tail(&tlen);

        ap_set_content_length(r, gz->len);
        if (r->header_only)
            return OK;
        bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
        put_bucket(bb, head, hlen);
        put_bucket(bb, a->deflate, gz->end);
        put_bucket(bb, tail, tlen);
        put_bucket(bb, gz->trailer, sizeof(gz->trailer));
    }
    else {
        apr_size_t len = datos_answer_slice_len(a, k);

        ap_set_content_length(r, len);
        if (r->header_only)
            return OK;
        bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
        put_bucket(bb, a->body, len - 2);
        put_bucket(bb, "]}", 2);
    }
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_eos_create(bb->bucket_alloc));
    rv = ap_pass_brigade(r->output_filters, bb);
    /* A client that went away is not our error to report. */
    return rv == APR_SUCCESS || r->connection->aborted ? OK : AP_FILTER_ERROR;
}

/* ------------------------------------------------------------- health */

typedef struct {
    int deep;
    int ready;
} health_arg_t;

static const char *take_health(request_rec *r, void *baton, const char *key,
                               const char *value)
{
    health_arg_t *ha = baton;

    (void)r;
    if (!strcmp(key, "deep") && value
        && (!strcmp(value, "1") || !strcmp(value, "true")))
        ha->deep = 1;
    if (!strcmp(key, "ready"))
        ha->ready = 1;
    return NULL;
}

/* Readiness for load balancers: 200 once the host has an answer to serve
 * (warm), 503 with Retry-After until then. Never touches Google. */
static int ready_health(request_rec *r, mod_datos_conf_t *conf)
{
    if (mod_datos_entry_ready(conf))
        return mod_datos_reply(r, 0, MOD_DATOS_JSON_TYPE, READY_BODY,
                               sizeof(READY_BODY) - 1);
    mod_datos_reply_retry_after(r, WARMING_RETRY);
    return mod_datos_reply(r, HTTP_SERVICE_UNAVAILABLE, MOD_DATOS_JSON_TYPE,
                           WARMING_BODY, sizeof(WARMING_BODY) - 1);
}

/* application/health+json: readiness as docs/design.md 4 defines it. */
static int deep_health(request_rec *r, mod_datos_conf_t *conf)
{
    mod_datos_entry_t entry;
    datos_err_t err;
    apr_status_t rv;
    const char *status, *output = NULL, *check, *body;
    char when[DATOS_TS_BUFSIZE];
    apr_time_t age;

    datos_err_clear(&err);
    memset(&entry, 0, sizeof(entry));
    rv = mod_datos_entry_get(r, conf, 0, &entry, &err);
    if (rv != APR_SUCCESS) {
        int code = mod_datos_backend_status(rv);

        mod_datos_reply_retry_after(r, mod_datos_retry_after(&err));
        body = apr_psprintf(r->pool,
                            "{\"status\":\"fail\",\"output\":\"%s "
                            "(/datos answers %d)\"}",
                            backend_message(code), code);
        return mod_datos_reply(r, HTTP_SERVICE_UNAVAILABLE, HEALTH_JSON_TYPE,
                               body, strlen(body));
    }
    age = entry.now > entry.answer->fetched
              ? apr_time_sec(entry.now - entry.answer->fetched)
              : 0;
    if (entry.how == DATOS_HOW_STALE || entry.how == DATOS_HOW_STALE_ERROR) {
        status = "warn";
        output = apr_psprintf(
            r->pool,
            "serving a stale answer: BigQuery "
            "last answered %" APR_TIME_T_FMT " s ago%s",
            age,
            entry.how == DATOS_HOW_STALE_ERROR ? " and is failing now" : "");
    }
    else {
        status = "pass";
    }
    datos_ts_format(apr_time_as_msec(entry.answer->fetched) * 1000, when);
    check = apr_psprintf(r->pool,
                         "{\"bigquery:answer\":[{\"componentType\":"
                         "\"datastore\",\"observedValue\":%" APR_TIME_T_FMT
                         ",\"observedUnit\":\"s\",\"status\":\"%s\","
                         "\"time\":\"%s\"}]}",
                         age, status, when);
    body = apr_psprintf(r->pool, "{\"status\":\"%s\",%s%s%s\"checks\":%s}",
                        status, output ? "\"output\":\"" : "",
                        output ? output : "", output ? "\"," : "", check);
    return mod_datos_reply(r, 0, HEALTH_JSON_TYPE, body, strlen(body));
}

static int health_handler(request_rec *r)
{
    health_arg_t ha;

    if (r->method_number != M_GET)
        return method_not_allowed(r);
    ap_discard_request_body(r);
    memset(&ha, 0, sizeof(ha));
    each_arg(r, take_health, &ha);
    if (ha.deep)
        return deep_health(r, mod_datos_conf(r->server));
    if (ha.ready)
        return ready_health(r, mod_datos_conf(r->server));
    /* Liveness: never touches Google, whatever the cache holds. */
    return mod_datos_reply(r, 0, MOD_DATOS_JSON_TYPE, HEALTH_BODY,
                           sizeof(HEALTH_BODY) - 1);
}

static int metrics_handler(request_rec *r)
{
    apr_size_t len = 0;
    char *text;

    if (r->method_number != M_GET)
        return method_not_allowed(r);
    ap_discard_request_body(r);
    text = datos_metrics_render(r->pool, mod_datos_global.metrics,
                                apr_time_now(), &len);
    if (!text)
        return mod_datos_send_error(r, HTTP_SERVICE_UNAVAILABLE,
                                    "metrics are not available", 5);
    return mod_datos_reply(r, 0, METRICS_TYPE, text, len);
}

/* Not counted in /metrics: people open it, and its requests are not
 * what the series are about. */
static int status_handler(request_rec *r)
{
    if (r->method_number == M_OPTIONS)
        return options_answer(r);
    if (r->method_number != M_GET)
        return method_not_allowed(r);
    ap_discard_request_body(r);
    return mod_datos_status(r);
}

int mod_datos_handler(request_rec *r)
{
    datos_handler_t which;
    apr_time_t start;
    int rc;

    if (!r->handler)
        return DECLINED;
    if (!strcmp(r->handler, "datos"))
        which = DATOS_HANDLER_DATOS;
    else if (!strcmp(r->handler, "datos-health"))
        which = DATOS_HANDLER_HEALTH;
    else if (!strcmp(r->handler, "datos-metrics"))
        which = DATOS_HANDLER_METRICS;
    else if (!strcmp(r->handler, "datos-status"))
        return status_handler(r);
    else
        return DECLINED;

    start = apr_time_now();
    if (r->method_number == M_OPTIONS) {
        rc = options_answer(r);
        datos_metrics_request(mod_datos_global.metrics, which, r->status,
                              apr_time_now() - start);
        return rc;
    }
    switch (which) {
    case DATOS_HANDLER_HEALTH: rc = health_handler(r); break;
    case DATOS_HANDLER_METRICS: rc = metrics_handler(r); break;
    default:
        if (r->method_number == M_POST && mod_datos_conf(r->server)->ingest) {
            /* counted by the ingestion metrics, with its publish time */
            return mod_datos_ingest(r, mod_datos_conf(r->server));
        }
        rc = r->method_number == M_GET
                 ? datos_get(r, mod_datos_conf(r->server), 0)
                 : method_not_allowed(r);
        break;
    }
    datos_metrics_request(mod_datos_global.metrics, which,
                          rc == OK ? r->status : rc, apr_time_now() - start);
    return rc;
}

/* Whether the request's target, as sent, is path with at most a query. */
static int target_is(const request_rec *r, const char *path)
{
    apr_size_t n = strlen(path);

    return !strncmp(r->unparsed_uri, path, n)
           && (r->unparsed_uri[n] == '\0' || r->unparsed_uri[n] == '?');
}

int mod_datos_quick_handler(request_rec *r, int lookup)
{
    const mod_datos_conf_t *conf = mod_datos_conf(r->server);
    apr_time_t start;
    int i, rc;

    /* GET (and HEAD) of exactly a quick path, as sent: anything httpd would
     * rewrite first (escapes, dot segments, double slashes, an absolute
     * URL) goes the normal way. */
    if (lookup || !conf->quick_paths || r->method_number != M_GET || r->proxyreq
        || !r->unparsed_uri)
        return DECLINED;
    for (i = 0; i < conf->quick_paths->nelts; i++) {
        if (target_is(r, APR_ARRAY_IDX(conf->quick_paths, i, const char *)))
            break;
    }
    if (i == conf->quick_paths->nelts)
        return DECLINED;
    start = apr_time_now();
    rc = datos_get(r, (mod_datos_conf_t *)conf, 1);
    if (rc != DECLINED) {
        datos_metrics_request(mod_datos_global.metrics, DATOS_HANDLER_DATOS,
                              rc == OK ? r->status : rc,
                              apr_time_now() - start);
        datos_metrics_quick(mod_datos_global.metrics);
    }
    return rc;
}

void mod_datos_handler_post_config(apr_pool_t *pconf, server_rec *s)
{
    apr_array_header_t *sections = mod_datos_sections(pconf, s);
    server_rec *vs;
    int i;

    for (vs = s; vs; vs = vs->next) {
        mod_datos_conf_t *conf = mod_datos_conf(vs);
        apr_array_header_t *q = mod_datos_quick_paths(pconf, sections, vs);

        conf->quick_paths = NULL;
        for (i = 0; i < q->nelts; i++) {
            const mod_datos_quick_t *e =
                &APR_ARRAY_IDX(q, i, mod_datos_quick_t);
            const char *path = e->sec->path ? e->sec->path : e->sec->d->args;

            if (conf->quick_handler <= 0) {
                ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, vs,
                             DATOS_LOGNO(0501) "%s is served by the handler: "
                                               "DatosQuickHandler Off",
                             path);
            }
            else if (e->refused) {
                ap_log_error(APLOG_MARK, APLOG_INFO, 0, vs,
                             DATOS_LOGNO(0502) "%s is served by the handler, "
                                               "not the quick path: %s",
                             path, e->refused);
            }
            else {
                if (!conf->quick_paths)
                    conf->quick_paths =
                        apr_array_make(pconf, 1, sizeof(const char *));
                APR_ARRAY_PUSH(conf->quick_paths, const char *) = path;
                ap_log_error(APLOG_MARK, APLOG_INFO, 0, vs,
                             DATOS_LOGNO(0503) "%s: cache hits are served by "
                                               "the quick path",
                             path);
            }
        }
    }
}
