/* datos_http.h - HTTP client on libcurl: the only file that includes curl.h
 * is datos_http.c.
 *
 * A datos_http_t wraps one CURL easy handle. It is used by one thread at a
 * time and lives in a pool (curl_easy_cleanup runs from the pool cleanup),
 * so a BigQuery fetch reuses one connection for all its calls.
 */
#ifndef DATOS_HTTP_H
#define DATOS_HTTP_H

#include <signal.h>
#include <apr_pools.h>
#include <apr_tables.h>
#include <apr_time.h>
#include "datos_error.h"

typedef struct datos_http_opts_t {
    apr_interval_time_t
        connect_timeout;         /* > 0; never rounds to curl's "0 = forever" */
    apr_interval_time_t timeout; /* whole transfer, > 0 */
    apr_interval_time_t
        low_speed_time; /* abort when slower than low_speed_limit this long; 0 = off */
    long low_speed_limit; /* bytes per second */
    apr_size_t
        max_response; /* body cap; larger answers fail with DATOS_ETOOLARGE */
    const char *ca_file; /* NULL: the system bundle */
    int allow_insecure; /* plain http to any host (emulator base URLs, explicit opt-in) */
    const char *user_agent; /* NULL: "datos/<version>" */
    const volatile sig_atomic_t
        *abort_flag; /* when set and non-zero, a transfer in progress stops
                      * (APR_EINTR): a program told to stop need not wait for
                      * a long upload or a held pull */
} datos_http_opts_t;

/* connect 3 s, total 10 s, low speed 1 B/s for 10 s, 32 MiB cap, no CA
 * file, https only. */
void datos_http_opts_default(datos_http_opts_t *opts);

/* One piece of a request body sent from the caller's memory. */
typedef struct datos_http_seg_t {
    const char *data;
    apr_size_t len;
} datos_http_seg_t;

/* Bytes of an answer past its cap (datos_http_req_t.overflow): stored is
 * what was kept (the cap's worth), more the next bytes beyond it. */
typedef void datos_http_overflow_fn(void *baton, const char *stored,
                                    apr_size_t stored_len, const char *more,
                                    apr_size_t n);

typedef struct datos_http_req_t {
    const char *method; /* "GET", "POST", "PUT", "PATCH", "DELETE" */
    const char *url;
    apr_array_header_t *
        headers; /* of const char *, "Name: value"; CR/LF in a value is refused */
    const char *body; /* NULL: no body (POST then sends Content-Length: 0) */
    apr_size_t body_len;
    const datos_http_seg_t
        *segs; /* instead of body: nsegs pieces sent in order, read by curl
                                  * straight from the caller's buffers (a 100 MB upload is
                                  * never copied); they must stay unchanged until perform
                                  * returns. Content-Length is their sum. */
    int nsegs;
    const char *content_type; /* NULL with a body: application/json */
    int metadata; /* metadata server: no proxy, connect timeout <= 2 s, plain http allowed to its host */
    apr_time_t
        deadline; /* absolute; 0 = none. The timeout used is min(opts->timeout, deadline - now) */
    int allow_insecure; /* plain http to this URL even when opts->allow_insecure is off (a token_uri
                                  * the credentials checked with their own setting) */
    apr_size_t
        max_response; /* body cap for this call when lower than opts->max_response; 0: the handle's */
    int keep_partial; /* on DATOS_ETOOLARGE, still hand out the status, headers and the bytes
                                  * received up to the cap (resp->partial set) */
    datos_http_overflow_fn
        *overflow; /* instead of failing past the cap: the bytes beyond it go
                                  * to this callback as they arrive, the call succeeds with the
                                  * first max_response bytes (resp->partial set), and a transfer
                                  * that fails hands out what it received too (*resp set) */
    void *overflow_baton;
} datos_http_req_t;

typedef struct datos_http_resp_t {
    int status;
    apr_table_t
        *headers;     /* names as received; apr_table_get is case-insensitive */
    const char *body; /* NUL-terminated copy, body_len bytes before the NUL */
    apr_size_t body_len;
    int partial; /* the body was cut at the cap (keep_partial, overflow) or,
                  * with overflow, by a failed transfer */
    apr_size_t received; /* body bytes received, kept or not */
} datos_http_resp_t;

typedef struct datos_http_t datos_http_t;

/* curl_global_init, once per process; call while single-threaded (httpd:
 * post_config in the parent; loader: main). Idempotent. */
apr_status_t datos_http_global_init(void);
void datos_http_global_cleanup(void);

apr_status_t datos_http_create(apr_pool_t *p, const datos_http_opts_t *opts,
                               datos_http_t **out, datos_err_t *err);

/* Performs one request. Any HTTP status is APR_SUCCESS with *resp set;
 * transport failures map to APR_TIMEUP, DATOS_ECONNECT, DATOS_ETOOLARGE or
 * DATOS_EINSECURE (APR_EINTR when opts.abort_flag stopped it). No
 * redirects are followed. The response lives in p. With req->keep_partial,
 * DATOS_ETOOLARGE also sets *resp, holding the bytes received up to the cap
 * (resp->partial = 1); with req->overflow, every failure after the request
 * was sent sets it too; otherwise *resp is set only on success. */
apr_status_t datos_http_perform(datos_http_t *http, apr_pool_t *p,
                                const datos_http_req_t *req,
                                datos_http_resp_t **resp, datos_err_t *err);

/* err->reason of a check_url refusal that allow_insecure would lift. */
#define DATOS_REASON_PLAIN_HTTP "plain_http"

/* The transport rule (docs/design.md section 6): https always; plain http only to
 * a loopback address, to the metadata server when `metadata` is set
 * (metadata.google.internal, 169.254.169.254, $GCE_METADATA_HOST), or when
 * allow_insecure is set. Anything else, and any scheme but http/https,
 * fails with DATOS_EINSECURE and a message naming the URL's host.
 * The URL must also be well formed: a host; no userinfo, backslash or
 * percent escape in the authority; brackets only around an IPv6 address; a
 * port, when given, of 1 to 65535. Only a refusal of plain http to a well
 * formed URL sets err->reason, to DATOS_REASON_PLAIN_HTTP: callers add the
 * name of their insecure-http setting to that message, and only to it.
 * Messages name no directive or setting of their own. */
apr_status_t datos_http_check_url(apr_pool_t *p, const char *url,
                                  int allow_insecure, int metadata,
                                  datos_err_t *err);

/* The range a Retry-After from Google is clamped to before anything acts
 * on it or passes it on to a client: a hostile or broken upstream can
 * neither make a client wait for years nor make a loader spin. */
#define DATOS_RETRY_AFTER_MIN apr_time_from_sec(1)
#define DATOS_RETRY_AFTER_MAX apr_time_from_sec(3600)

/* A Retry-After value, delay-seconds or an HTTP-date (any of its three
 * forms), parsed without overflow and clamped to [DATOS_RETRY_AFTER_MIN,
 * DATOS_RETRY_AFTER_MAX]: a date in the past is the minimum, a huge number
 * the maximum. 0 when value is NULL, empty or unparsable. */
apr_interval_time_t datos_retry_after_parse(const char *value, apr_time_t now);

/* datos_retry_after_parse of the answer's Retry-After header. */
apr_interval_time_t datos_http_retry_after(const datos_http_resp_t *resp,
                                           apr_time_t now);

/* Percent-encodes for a query string or form body (RFC 3986 unreserved
 * characters kept). */
char *datos_http_urlencode(apr_pool_t *p, const char *s);

#endif
