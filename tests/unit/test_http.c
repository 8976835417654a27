/* test_http.c - the libcurl client against the scripted loopback server:
 * timeouts, caps, redirects, the transport rule, header hygiene. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "dt_support.h"
#include "datos_http.h"
#include "datos_log.h"

typedef struct {
    apr_pool_t *p;
    dt_server_t *srv;
    datos_http_opts_t opts;
} fx_t;

static int fx_setup(void **state)
{
    apr_pool_t *p;
    fx_t *fx;

    if (apr_pool_create(&p, NULL) != APR_SUCCESS) {
        return -1;
    }
    fx = apr_pcalloc(p, sizeof(*fx));
    fx->p = p;
    fx->srv = dt_server_start();
    datos_http_opts_default(&fx->opts);
    *state = fx;
    return 0;
}

static int fx_teardown(void **state)
{
    fx_t *fx = *state;
    dt_server_stop(fx->srv);
    apr_pool_destroy(fx->p);
    return 0;
}

#define FX_TEST(f) cmocka_unit_test_setup_teardown(f, fx_setup, fx_teardown)

static int group_setup(void **state)
{
    if (dt_group_setup(state) != 0 || datos_http_global_init() != APR_SUCCESS) {
        return -1;
    }
    /* The transport rule must hold with a proxy in the environment too. */
    setenv("http_proxy", "http://127.0.0.1:9", 1);
    return 0;
}

static int group_teardown(void **state)
{
    datos_http_global_cleanup();
    return dt_group_teardown(state);
}

static apr_status_t run(fx_t *fx, datos_http_req_t *req,
                        datos_http_resp_t **resp, datos_err_t *err)
{
    datos_http_t *http;

    datos_err_clear(err);
    assert_int_equal(datos_http_create(fx->p, &fx->opts, &http, err),
                     APR_SUCCESS);
    *resp = NULL;
    return datos_http_perform(http, fx->p, req, resp, err);
}

static void get_ok(void **state)
{
    fx_t *fx = *state;
    datos_http_req_t req;
    datos_http_resp_t *resp;
    datos_err_t err = {0};
    dt_response_t r;
    dt_request_t *seen;

    memset(&r, 0, sizeof(r));
    r.status = 200;
    r.headers = "X-Test: a b \r\nSet-Thing: 1\r\n";
    r.body = "{\"ok\":true}";
    dt_server_push(fx->srv, &r);
    memset(&req, 0, sizeof(req));
    req.method = "GET";
    req.url =
        apr_pstrcat(fx->p, dt_server_url(fx->srv, fx->p), "/v1/x?a=1", NULL);
    req.headers = apr_array_make(fx->p, 1, sizeof(const char *));
    APR_ARRAY_PUSH(req.headers, const char *) = "X-Custom: yes";

    assert_int_equal(run(fx, &req, &resp, &err), APR_SUCCESS);
    assert_int_equal(resp->status, 200);
    assert_string_equal(resp->body, "{\"ok\":true}");
    assert_int_equal(resp->body_len, 11);
    assert_string_equal(apr_table_get(resp->headers, "x-test"), "a b");
    assert_string_equal(apr_table_get(resp->headers, "Content-Type"),
                        "application/json; charset=UTF-8");

    assert_int_equal(dt_server_count(fx->srv), 1);
    seen = dt_server_request(fx->srv, fx->p, 0);
    assert_string_equal(seen->method, "GET");
    assert_string_equal(seen->target, "/v1/x?a=1");
    assert_string_equal(dt_request_header(fx->p, seen, "X-Custom"), "yes");
    assert_string_equal(dt_request_header(fx->p, seen, "User-Agent"),
                        "datos/0.1.0");
    assert_non_null(
        strstr(dt_request_header(fx->p, seen, "Accept-Encoding"), "gzip"));
    assert_null(dt_request_header(fx->p, seen, "Expect"));
    assert_null(dt_request_header(fx->p, seen, "Content-Length"));
}

static void post_bodies(void **state)
{
    fx_t *fx = *state;
    datos_http_req_t req;
    datos_http_resp_t *resp;
    datos_err_t err = {0};
    dt_request_t *seen;

    dt_server_json(fx->srv, 200, "{}");
    dt_server_json(fx->srv, 204, NULL);
    dt_server_json(fx->srv, 200, "{}");
    memset(&req, 0, sizeof(req));
    req.method = "POST";
    req.url = apr_pstrcat(fx->p, dt_server_url(fx->srv, fx->p), "/q", NULL);
    req.body = "{\"query\":\"SELECT 1\"}";
    req.body_len = strlen(req.body);
    assert_int_equal(run(fx, &req, &resp, &err), APR_SUCCESS);
    seen = dt_server_request(fx->srv, fx->p, 0);
    assert_string_equal(seen->method, "POST");
    assert_string_equal(seen->body, "{\"query\":\"SELECT 1\"}");
    assert_string_equal(dt_request_header(fx->p, seen, "Content-Type"),
                        "application/json");
    assert_string_equal(dt_request_header(fx->p, seen, "Content-Length"), "20");
    assert_null(dt_request_header(fx->p, seen, "Expect"));

    /* body-less POST: an explicit Content-Length: 0, once */
    req.body = NULL;
    req.body_len = 0;
    assert_int_equal(run(fx, &req, &resp, &err), APR_SUCCESS);
    assert_int_equal(resp->status, 204);
    assert_int_equal(resp->body_len, 0);
    assert_string_equal(resp->body, "");
    seen = dt_server_request(fx->srv, fx->p, 1);
    assert_string_equal(seen->method, "POST");
    assert_string_equal(dt_request_header(fx->p, seen, "Content-Length"), "0");
    assert_non_null(strstr(seen->head, "Content-Length: 0\r\n"));
    assert_null(
        strstr(strstr(seen->head, "Content-Length") + 1, "Content-Length"));
    assert_null(dt_request_header(fx->p, seen, "Content-Type"));

    /* a form body keeps its own content type */
    req.body = "grant_type=x&assertion=y";
    req.body_len = strlen(req.body);
    req.content_type = "application/x-www-form-urlencoded";
    assert_int_equal(run(fx, &req, &resp, &err), APR_SUCCESS);
    seen = dt_server_request(fx->srv, fx->p, 2);
    assert_string_equal(dt_request_header(fx->p, seen, "Content-Type"),
                        "application/x-www-form-urlencoded");
    assert_string_equal(seen->body, "grant_type=x&assertion=y");
}

static void other_methods(void **state)
{
    fx_t *fx = *state;
    datos_http_req_t req;
    datos_http_resp_t *resp;
    datos_err_t err = {0};

    dt_server_json(fx->srv, 200, "{}");
    dt_server_json(fx->srv, 200, "{}");
    memset(&req, 0, sizeof(req));
    req.url = apr_pstrcat(fx->p, dt_server_url(fx->srv, fx->p), "/r", NULL);
    req.method = "PUT";
    req.body = "{}";
    req.body_len = 2;
    assert_int_equal(run(fx, &req, &resp, &err), APR_SUCCESS);
    assert_string_equal(dt_server_request(fx->srv, fx->p, 0)->method, "PUT");
    req.method = "DELETE";
    req.body = NULL;
    req.body_len = 0;
    assert_int_equal(run(fx, &req, &resp, &err), APR_SUCCESS);
    assert_string_equal(dt_server_request(fx->srv, fx->p, 1)->method, "DELETE");
    req.method = "TRACE";
    assert_int_equal(run(fx, &req, &resp, &err), APR_EINVAL);
    assert_int_equal(dt_server_count(fx->srv), 2);
}

static void timeout_never_answers(void **state)
{
    fx_t *fx = *state;
    datos_http_req_t req;
    datos_http_resp_t *resp;
    datos_err_t err = {0};
    dt_response_t r;
    apr_time_t t0;

    memset(&r, 0, sizeof(r));
    r.hang = 1;
    dt_server_push(fx->srv, &r);
    dt_server_push(fx->srv, &r);
    fx->opts.timeout = apr_time_from_msec(300);
    memset(&req, 0, sizeof(req));
    req.method = "GET";
    req.url = apr_pstrcat(fx->p, dt_server_url(fx->srv, fx->p), "/slow", NULL);

    /* The server hangs far longer than the timeout, then closes: only the
     * timeout gives APR_TIMEUP. It cannot fire early either: a lower bound,
     * which a busy machine only makes easier to meet. */
    t0 = apr_time_now();
    assert_int_equal(run(fx, &req, &resp, &err), APR_TIMEUP);
    assert_true(apr_time_now() - t0 >= apr_time_from_msec(250));
    assert_null(resp);
    assert_int_equal(err.rv, APR_TIMEUP);
    assert_non_null(strstr(err.message, "GET http://127.0.0.1:"));
    assert_non_null(strstr(err.message, "timed out"));

    /* a near deadline cuts a long timeout short: the 30 s timeout would
     * outlast the server's hang, which would end in a closed connection */
    fx->opts.timeout = apr_time_from_sec(30);
    req.deadline = apr_time_now() + apr_time_from_msec(200);
    assert_int_equal(run(fx, &req, &resp, &err), APR_TIMEUP);
    assert_non_null(strstr(err.message, "timed out"));
}

static void low_speed_stall(void **state)
{
    fx_t *fx = *state;
    datos_http_req_t req;
    datos_http_resp_t *resp;
    datos_err_t err = {0};
    dt_response_t r;
    apr_time_t t0;

    /* Headers and a few bytes, then silence: the stall limit ends it, as
     * curl says; the 20 s transfer timeout cannot, the server closing the
     * connection (DT_HANG_MS) before it. */
    memset(&r, 0, sizeof(r));
    r.raw = "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n{\"rows\":[";
    r.hang = 1;
    dt_server_push(fx->srv, &r);
    fx->opts.timeout = apr_time_from_sec(20);
    fx->opts.low_speed_time = apr_time_from_msec(300); /* rounds up to 1 s */
    fx->opts.low_speed_limit = 100;
    memset(&req, 0, sizeof(req));
    req.method = "GET";
    req.url = apr_pstrcat(fx->p, dt_server_url(fx->srv, fx->p), "/stall", NULL);
    t0 = apr_time_now();
    assert_int_equal(run(fx, &req, &resp, &err), APR_TIMEUP);
    assert_non_null(strstr(err.message, "too slow"));
    /* 300 ms rounded up, never down to 0 (which curl reads as "off"): a
     * lower bound, which a busy machine only makes easier to meet */
    assert_non_null(strstr(err.message, "the last 1 seconds"));
    assert_true(apr_time_now() - t0 >= apr_time_from_msec(900));
}

static void deadline_passed(void **state)
{
    fx_t *fx = *state;
    datos_http_req_t req;
    datos_http_resp_t *resp;
    datos_err_t err = {0};

    memset(&req, 0, sizeof(req));
    req.method = "GET";
    req.url = apr_pstrcat(fx->p, dt_server_url(fx->srv, fx->p), "/x", NULL);
    req.deadline = apr_time_now() - 1;
    assert_int_equal(run(fx, &req, &resp, &err), APR_TIMEUP);
    assert_non_null(strstr(err.message, "deadline passed"));
    /* time for a request sent by mistake to reach the server's count */
    usleep(50000);
    assert_int_equal(dt_server_count(fx->srv), 0);
}

static void tiny_timeouts_do_not_mean_forever(void **state)
{
    fx_t *fx = *state;
    datos_http_req_t req;
    datos_http_resp_t *resp;
    datos_err_t err = {0};
    dt_response_t r;

    /* 1 us would round to curl's "0 = no timeout" if truncated. */
    memset(&r, 0, sizeof(r));
    r.hang = 1;
    dt_server_push(fx->srv, &r);
    fx->opts.timeout = 1;
    fx->opts.connect_timeout = 1;
    memset(&req, 0, sizeof(req));
    req.method = "GET";
    req.url = apr_pstrcat(fx->p, dt_server_url(fx->srv, fx->p), "/x", NULL);
    assert_int_equal(run(fx, &req, &resp, &err), APR_TIMEUP);
}

static void response_cap(void **state)
{
    fx_t *fx = *state;
    datos_http_req_t req;
    datos_http_resp_t *resp;
    datos_err_t err = {0};
    dt_response_t r;
    char *big = apr_palloc(fx->p, 5001);
    const char *raw;

    memset(big, 'x', 5000);
    big[5000] = '\0';
    fx->opts.max_response = 1000;
    memset(&req, 0, sizeof(req));
    req.method = "GET";
    req.url = apr_pstrcat(fx->p, dt_server_url(fx->srv, fx->p), "/big", NULL);

    /* with a Content-Length */
    memset(&r, 0, sizeof(r));
    r.status = 200;
    r.body = big;
    dt_server_push(fx->srv, &r);
    assert_int_equal(run(fx, &req, &resp, &err), DATOS_ETOOLARGE);
    assert_non_null(strstr(err.message, "larger than 1000 bytes"));

    /* without one: the write callback stops it */
    memset(&r, 0, sizeof(r));
    raw = apr_pstrcat(fx->p, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
                      big, NULL);
    r.raw = raw;
    dt_server_push(fx->srv, &r);
    assert_int_equal(run(fx, &req, &resp, &err), DATOS_ETOOLARGE);

    /* exactly at the cap is fine */
    big[1000] = '\0';
    dt_server_json(fx->srv, 200, big);
    assert_int_equal(run(fx, &req, &resp, &err), APR_SUCCESS);
    assert_int_equal(resp->body_len, 1000);
}

static void no_redirects(void **state)
{
    fx_t *fx = *state;
    datos_http_req_t req;
    datos_http_resp_t *resp;
    datos_err_t err = {0};
    dt_response_t r;

    memset(&r, 0, sizeof(r));
    r.status = 302;
    r.headers =
        apr_psprintf(fx->p, "Location: http://127.0.0.1:%d/elsewhere\r\n",
                     dt_server_port(fx->srv));
    dt_server_push(fx->srv, &r);
    dt_server_json(fx->srv, 200, "{\"followed\":true}");
    memset(&req, 0, sizeof(req));
    req.method = "GET";
    req.url = apr_pstrcat(fx->p, dt_server_url(fx->srv, fx->p), "/start", NULL);
    assert_int_equal(run(fx, &req, &resp, &err), APR_SUCCESS);
    assert_int_equal(resp->status, 302);
    assert_non_null(apr_table_get(resp->headers, "Location"));
    /* a followed redirect would have been answered, so counted, before
     * run() returned */
    assert_int_equal(dt_server_count(fx->srv), 1);
}

static void transport_rule_refuses_without_connecting(void **state)
{
    fx_t *fx = *state;
    datos_http_req_t req;
    datos_http_resp_t *resp;
    datos_err_t err = {0};

    /* refused before curl runs: a lookup or connection would have ended in
     * another error than DATOS_EINSECURE */
    memset(&req, 0, sizeof(req));
    req.method = "GET";
    req.url = "http://bigquery.example.com/bigquery/v2/projects/p/queries";
    assert_int_equal(run(fx, &req, &resp, &err), DATOS_EINSECURE);
    assert_non_null(strstr(
        err.message, "plain http to bigquery.example.com is not allowed"));
    req.url = "ftp://127.0.0.1/x";
    assert_int_equal(run(fx, &req, &resp, &err), DATOS_EINSECURE);
    req.url = "file:///etc/passwd";
    assert_int_equal(run(fx, &req, &resp, &err), DATOS_EINSECURE);
    /* the metadata host only for metadata requests */
    req.url =
        "http://metadata.google.internal/computeMetadata/v1/project/project-id";
    assert_int_equal(run(fx, &req, &resp, &err), DATOS_EINSECURE);
    /* opted-in per request (a token_uri the credentials checked) */
    dt_server_json(fx->srv, 200, "{}");
    req.url = apr_pstrcat(fx->p, dt_server_url(fx->srv, fx->p), "/ok", NULL);
    req.allow_insecure = 1;
    assert_int_equal(run(fx, &req, &resp, &err), APR_SUCCESS);
}

static void url_ok(apr_pool_t *p, const char *url, int insecure, int metadata)
{
    datos_err_t err = {0};
    datos_err_clear(&err);
    if (datos_http_check_url(p, url, insecure, metadata, &err) != APR_SUCCESS) {
        fail_msg("%s refused: %s", url, err.message);
    }
}

static void url_bad(apr_pool_t *p, const char *url, int insecure, int metadata)
{
    datos_err_t err = {0};
    datos_err_clear(&err);
    if (datos_http_check_url(p, url, insecure, metadata, &err)
        != DATOS_EINSECURE) {
        fail_msg("%s accepted", url);
    }
    assert_non_null(err.message);
}

static void check_url_matrix(void **state)
{
    fx_t *fx = *state;
    apr_pool_t *p = fx->p;

    url_ok(p, "https://bigquery.googleapis.com/bigquery/v2", 0, 0);
    url_ok(p, "HTTPS://oauth2.googleapis.com/token", 0, 0);
    url_ok(p, "https://[2001:db8::1]:8443/x", 0, 0);
    url_ok(p, "http://127.0.0.1:8080/x", 0, 0);
    url_ok(p, "http://127.255.3.4/", 0, 0);
    url_ok(p, "HTTP://LOCALHOST:9/", 0, 0);
    url_ok(p, "http://localhost", 0, 0);
    url_ok(p, "http://[::1]:8080/x", 0, 0);
    url_ok(p, "http://[::ffff:127.0.0.1]/", 0, 0);
    url_ok(p, "http://emulator:8080/bigquery/v2", 1, 0);
    url_ok(p, "http://metadata.google.internal/computeMetadata/v1/", 0, 1);
    url_ok(p, "http://169.254.169.254/computeMetadata/v1/", 0, 1);

    url_bad(p, "http://emulator:8080/bigquery/v2", 0, 0);
    url_bad(p, "http://10.0.0.1/", 0, 0);
    url_bad(p, "http://169.254.169.254/", 0, 0);
    url_bad(p, "http://metadata.google.internal/", 0, 0);
    url_bad(p, "http://example.com/", 0, 1);
    url_bad(p, "http://127.1/", 0, 0);
    url_bad(p, "http://2130706433/", 0, 0);
    url_bad(p, "http://0x7f000001/", 0, 0);
    url_bad(p, "http://127.0.0.1.nip.io/", 0, 0);
    url_bad(p, "http://localhost.evil.example/", 0, 0);
    url_bad(p, "http://127.0.0.1@evil.example/", 0, 0);
    url_bad(p, "http://user@127.0.0.1/", 0, 0);
    url_bad(p, "https://user:pw@bigquery.googleapis.com/", 0, 0);
    url_bad(p, "http://evil.example#@127.0.0.1/", 0, 0);
    url_bad(p, "http://evil.example\\@127.0.0.1/", 0, 0);
    url_bad(p, "http://%31%32%37.0.0.1/", 0, 0);
    url_bad(p, "http://[::2]/", 0, 0);
    url_bad(p, "http://[::1/", 0, 0);
    url_bad(p, "http://127.0.0.1:80a/", 0, 0);
    url_bad(p, "http://127.0.0.1:/", 0, 0);
    url_bad(p, "http:///x", 1, 0);
    url_bad(p, "http:/127.0.0.1/", 0, 0);
    url_bad(p, "ftp://127.0.0.1/", 1, 0);
    url_bad(p, "gopher://127.0.0.1/", 1, 0);
    url_bad(p, "127.0.0.1:8080", 1, 0);
    url_bad(p, "", 1, 0);
    url_bad(p, NULL, 1, 0);

    setenv("GCE_METADATA_HOST", "fake-md.internal:8123", 1);
    url_ok(p, "http://fake-md.internal:8123/computeMetadata/v1/", 0, 1);
    url_bad(p, "http://fake-md.internal:8123/computeMetadata/v1/", 0, 0);
    unsetenv("GCE_METADATA_HOST");
    url_bad(p, "http://fake-md.internal:8123/computeMetadata/v1/", 0, 1);
}

/* The form of the authority: a port curl would reject or wrap, and
 * brackets around anything but an IPv6 address, fail at configuration time
 * instead of on every request. */
static void check_url_ports_and_brackets(void **state)
{
    fx_t *fx = *state;
    apr_pool_t *p = fx->p;
    datos_err_t err = {0};

    url_ok(p, "http://127.0.0.1:1/x", 0, 0);
    url_ok(p, "http://127.0.0.1:65535/x", 0, 0);
    url_ok(p, "https://bigquery.googleapis.com:443/bigquery/v2", 0, 0);
    url_ok(p, "http://[::1]/x", 0, 0);
    url_ok(p, "http://[::1]:65535", 0, 0);
    url_ok(p, "https://[2001:DB8::1]/", 0, 0);

    url_bad(p, "http://127.0.0.1:0/x", 0, 0);
    url_bad(p, "http://127.0.0.1:00000/x", 0, 0);
    url_bad(p, "http://127.0.0.1:65536/x", 0, 0);
    url_bad(p, "http://127.0.0.1:99999999999/x", 0, 0);
    url_bad(p, "http://127.0.0.1:99999999999999999999999/x", 0, 0);
    url_bad(p, "http://127.0.0.1:/x", 0, 0);
    url_bad(p, "http://[::1]:/x", 0, 0);
    url_bad(p, "https://[::1]:0", 0, 0);
    url_bad(p, "http://[127.0.0.1]/x", 0, 0);
    url_bad(p, "http://[127.0.0.1]:8080/x", 1, 0);
    url_bad(p, "https://[bigquery.googleapis.com]/", 0, 0);
    url_bad(p, "http://[]/", 1, 0);
    url_bad(p, "http://[v1.fe80::1]/", 1, 0);

    datos_err_clear(&err);
    assert_int_equal(
        datos_http_check_url(p, "https://localhost:99999999999/x", 0, 0, &err),
        DATOS_EINSECURE);
    assert_non_null(strstr(err.message, "1 to 65535"));
    datos_err_clear(&err);
    assert_int_equal(
        datos_http_check_url(p, "http://[127.0.0.1]/x", 0, 0, &err),
        DATOS_EINSECURE);
    assert_non_null(strstr(err.message, "IPv6"));
}

/* Only a refusal that insecure http would lift says so (reason
 * DATOS_REASON_PLAIN_HTTP); a malformed URL stays refused whatever the
 * setting, so its message must not send the reader to that setting. */
static void check_url_says_when_insecure_http_would_help(void **state)
{
    fx_t *fx = *state;
    apr_pool_t *p = fx->p;
    static const char *const malformed[] = {
        "https://user@bigquery.googleapis.com/bigquery/v2",
        "http://user:pw@127.0.0.1/",
        "http:///bigquery/v2",
        "http://bigquery.example.com:99999999999/",
        "http://[10.0.0.1]/",
        "ftp://bigquery.example.com/",
    };
    datos_err_t err = {0};
    size_t i;

    for (i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
        datos_err_clear(&err);
        assert_int_equal(datos_http_check_url(p, malformed[i], 0, 0, &err),
                         DATOS_EINSECURE);
        if (err.reason) {
            fail_msg("%s: reason %s", malformed[i], err.reason);
        }
        assert_null(strstr(err.message, "insecure"));
        assert_null(strstr(err.message, "AllowInsecure"));
    }
    datos_err_clear(&err);
    assert_int_equal(
        datos_http_check_url(p, "http://bigquery.example.com/bigquery/v2", 0, 0,
                             &err),
        DATOS_EINSECURE);
    assert_non_null(err.reason);
    assert_string_equal(err.reason, DATOS_REASON_PLAIN_HTTP);
    /* libdatos names no directive: the module and the loader add their own */
    assert_null(strstr(err.message, "DatosAllowInsecureHTTP"));
    assert_non_null(strstr(err.message, "plain http to bigquery.example.com"));
}

static void header_crlf_refused(void **state)
{
    fx_t *fx = *state;
    datos_http_req_t req;
    datos_http_resp_t *resp;
    datos_err_t err = {0};

    dt_server_json(fx->srv, 200, "{}");
    memset(&req, 0, sizeof(req));
    req.method = "GET";
    req.url = apr_pstrcat(fx->p, dt_server_url(fx->srv, fx->p), "/x", NULL);
    req.headers = apr_array_make(fx->p, 1, sizeof(const char *));
    APR_ARRAY_PUSH(req.headers, const char *) =
        "Authorization: Bearer abc\r\nX-Evil: 1";
    assert_int_equal(run(fx, &req, &resp, &err), APR_EINVAL);
    assert_non_null(strstr(err.message, "Authorization"));
    assert_null(strstr(err.message, "abc")); /* not the value */
    APR_ARRAY_IDX(req.headers, 0, const char *) = "X-A: b\nc";
    assert_int_equal(run(fx, &req, &resp, &err), APR_EINVAL);
    usleep(50000);
    assert_int_equal(dt_server_count(fx->srv), 0);
}

static void connection_failures(void **state)
{
    fx_t *fx = *state;
    datos_http_req_t req;
    datos_http_resp_t *resp;
    datos_err_t err = {0};
    dt_response_t r;
    struct sockaddr_in a;
    socklen_t alen = sizeof(a);
    int fd, port;

    /* a port nobody listens on */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    port = ntohs(a.sin_port);
    close(fd);
    memset(&req, 0, sizeof(req));
    req.method = "GET";
    req.url = apr_psprintf(fx->p, "http://127.0.0.1:%d/x", port);
    assert_int_equal(run(fx, &req, &resp, &err), DATOS_ECONNECT);
    assert_non_null(strstr(err.message, "GET http://127.0.0.1:"));

    req.url = apr_pstrcat(fx->p, dt_server_url(fx->srv, fx->p), "/x", NULL);
    /* closed without a word */
    memset(&r, 0, sizeof(r));
    r.close_now = 1;
    dt_server_push(fx->srv, &r);
    assert_int_equal(run(fx, &req, &resp, &err), DATOS_ECONNECT);
    /* a body cut short */
    memset(&r, 0, sizeof(r));
    r.raw =
        "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{\"short\":";
    dt_server_push(fx->srv, &r);
    assert_int_equal(run(fx, &req, &resp, &err), DATOS_ECONNECT);
    /* not HTTP at all */
    memset(&r, 0, sizeof(r));
    r.raw = "SSH-2.0-OpenSSH_9.2\r\n";
    dt_server_push(fx->srv, &r);
    assert_int_equal(run(fx, &req, &resp, &err), DATOS_ECONNECT);
}

/* A body given as segments goes out as their concatenation, with one
 * Content-Length and no chunking: the shape of a multipart load (head,
 * megabytes of NDJSON, tail) sent without building it in memory. */
static void segment_bodies(void **state)
{
    fx_t *fx = *state;
    datos_http_req_t req;
    datos_http_resp_t *resp;
    datos_err_t err = {0};
    datos_http_seg_t segs[4];
    apr_size_t big = (apr_size_t)5 * 1024 * 1024 + 7, i;
    char *data = apr_palloc(fx->p, big), *want;
    dt_request_t *seen;

    for (i = 0; i < big; i++) {
        data[i] = (char)('a' + (i * 7 + i / 1000) % 26);
    }
    data[big / 2] = '\0'; /* bytes, not a C string */
    segs[0].data = "--b\r\nhead\r\n\r\n";
    segs[0].len = strlen(segs[0].data);
    segs[1].data = data;
    segs[1].len = big;
    segs[2].data = ""; /* empty pieces are skipped */
    segs[2].len = 0;
    segs[3].data = "\r\n--b--\r\n";
    segs[3].len = strlen(segs[3].data);
    want = apr_pstrcat(fx->p, segs[0].data, NULL);

    dt_server_json(fx->srv, 200, "{}");
    dt_server_json(fx->srv, 308, "");
    memset(&req, 0, sizeof(req));
    req.method = "POST";
    req.url =
        apr_pstrcat(fx->p, dt_server_url(fx->srv, fx->p), "/upload", NULL);
    req.segs = segs;
    req.nsegs = 4;
    req.content_type = "multipart/related; boundary=b";
    assert_int_equal(run(fx, &req, &resp, &err), APR_SUCCESS);
    assert_int_equal(resp->status, 200);
    seen = dt_server_request(fx->srv, fx->p, 0);
    assert_string_equal(seen->method, "POST");
    assert_int_equal(seen->body_len, segs[0].len + big + segs[3].len);
    assert_memory_equal(seen->body, want, segs[0].len);
    assert_memory_equal(seen->body + segs[0].len, data, big);
    assert_memory_equal(seen->body + segs[0].len + big, segs[3].data,
                        segs[3].len);
    assert_string_equal(
        dt_request_header(fx->p, seen, "Content-Length"),
        apr_psprintf(fx->p, "%" APR_SIZE_T_FMT, seen->body_len));
    assert_string_equal(dt_request_header(fx->p, seen, "Content-Type"),
                        "multipart/related; boundary=b");
    assert_null(dt_request_header(fx->p, seen, "Transfer-Encoding"));
    assert_null(dt_request_header(fx->p, seen, "Expect"));

    /* PUT (a resumable upload's chunk): the same, with its own headers */
    req.method = "PUT";
    req.segs = segs + 1;
    req.nsegs = 1;
    req.content_type = "application/octet-stream";
    req.headers = apr_array_make(fx->p, 1, sizeof(const char *));
    APR_ARRAY_PUSH(req.headers, const char *) =
        "Content-Range: bytes 0-5242886/*";
    assert_int_equal(run(fx, &req, &resp, &err), APR_SUCCESS);
    assert_int_equal(resp->status, 308);
    seen = dt_server_request(fx->srv, fx->p, 1);
    assert_string_equal(seen->method, "PUT");
    assert_int_equal(seen->body_len, big);
    assert_memory_equal(seen->body, data, big);
    assert_string_equal(dt_request_header(fx->p, seen, "Content-Length"),
                        "5242887");
    assert_string_equal(dt_request_header(fx->p, seen, "Content-Range"),
                        "bytes 0-5242886/*");
    assert_null(dt_request_header(fx->p, seen, "Transfer-Encoding"));

    /* a body and segments at once is a caller's mistake */
    req.body = "x";
    assert_int_equal(run(fx, &req, &resp, &err), APR_EINVAL);
    assert_int_equal(dt_server_count(fx->srv), 2);
}

static void handle_reuse(void **state)
{
    fx_t *fx = *state;
    datos_http_req_t req;
    datos_http_resp_t *resp;
    datos_http_t *http;
    datos_err_t err = {0};
    int i;

    datos_err_clear(&err);
    assert_int_equal(datos_http_create(fx->p, &fx->opts, &http, &err),
                     APR_SUCCESS);
    memset(&req, 0, sizeof(req));
    req.url = apr_pstrcat(fx->p, dt_server_url(fx->srv, fx->p), "/x", NULL);
    for (i = 0; i < 3; i++) {
        dt_server_json(fx->srv, 200 + i, "{}");
    }
    req.method = "POST";
    req.body = "{}";
    req.body_len = 2;
    assert_int_equal(datos_http_perform(http, fx->p, &req, &resp, &err),
                     APR_SUCCESS);
    assert_int_equal(resp->status, 200);
    /* nothing from the POST leaks into the next GET */
    req.method = "GET";
    req.body = NULL;
    req.body_len = 0;
    assert_int_equal(datos_http_perform(http, fx->p, &req, &resp, &err),
                     APR_SUCCESS);
    assert_int_equal(resp->status, 201);
    assert_string_equal(dt_server_request(fx->srv, fx->p, 1)->method, "GET");
    assert_int_equal(dt_server_request(fx->srv, fx->p, 1)->body_len, 0);
    assert_int_equal(datos_http_perform(http, fx->p, &req, &resp, &err),
                     APR_SUCCESS);
    assert_int_equal(resp->status, 202);
}

static char *trace_text;
static apr_pool_t *trace_pool;

static void trace_sink(void *baton, const char *file, int line,
                       datos_log_level_t level, apr_status_t rv,
                       const char *msg)
{
    (void)baton;
    (void)file;
    (void)line;
    (void)level;
    (void)rv;
    trace_text =
        apr_pstrcat(trace_pool, trace_text ? trace_text : "", msg, "\n", NULL);
}

static int trace_all(void *baton, datos_log_level_t level)
{
    (void)baton;
    (void)level;
    return 1;
}

/* curl's verbose output reaches the log only through the sink, and never
 * with a bearer token, an assertion or a token answer in it. */
static void trace_masks_secrets(void **state)
{
    fx_t *fx = *state;
    datos_http_req_t req;
    datos_http_resp_t *resp;
    datos_err_t err = {0};

    trace_pool = fx->p;
    trace_text = NULL;
    datos_log_set_sink(trace_sink, trace_all, NULL);
    dt_server_json(
        fx->srv, 200,
        "{\"access_token\":\"ya29.SECRET-ANSWER\",\"expires_in\":3599}");
    memset(&req, 0, sizeof(req));
    req.method = "POST";
    req.url = apr_pstrcat(fx->p, dt_server_url(fx->srv, fx->p), "/token", NULL);
    req.body =
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"
        "&assertion=eyJhbGciOiJSUzI1NiJ9.SECRET-CLAIMS.SECRET-SIG";
    req.body_len = strlen(req.body);
    req.content_type = "application/x-www-form-urlencoded";
    req.headers = apr_array_make(fx->p, 1, sizeof(const char *));
    APR_ARRAY_PUSH(req.headers, const char *) =
        "Authorization: Bearer ya29.SECRET-BEARER";
    assert_int_equal(run(fx, &req, &resp, &err), APR_SUCCESS);
    datos_log_set_sink(NULL, NULL, NULL);

    assert_non_null(trace_text);
    assert_non_null(strstr(trace_text, "POST /token HTTP/1.1"));
    assert_non_null(strstr(trace_text, "Authorization: [redacted]"));
    assert_null(strstr(trace_text, "assertion="));
    assert_non_null(strstr(trace_text, "body bytes"));
    assert_null(strstr(trace_text, "SECRET"));
    assert_null(strstr(trace_text, "eyJ"));
    /* the server did get the real thing */
    assert_non_null(
        strstr(dt_server_request(fx->srv, fx->p, 0)->body, "SECRET-SIG"));
}

/* The refresh-token grant's secrets stay out of the trace too, and a JSON
 * body that is logged has its secret members masked. */
static void trace_masks_user_credentials(void **state)
{
    fx_t *fx = *state;
    datos_http_req_t req;
    datos_http_resp_t *resp;
    datos_err_t err = {0};

    trace_pool = fx->p;
    trace_text = NULL;
    datos_log_set_sink(trace_sink, trace_all, NULL);
    dt_server_json(
        fx->srv, 200,
        "{\"access_token\":\"ya29.SECRET-ANSWER\",\"expires_in\":3599}");
    dt_server_json(fx->srv, 200, "{}");
    memset(&req, 0, sizeof(req));
    req.method = "POST";
    req.url = apr_pstrcat(fx->p, dt_server_url(fx->srv, fx->p), "/token", NULL);
    req.body =
        "grant_type=refresh_token&client_id=123.apps&client_secret=SECRET-CS"
        "&refresh_token=1%2F%2FSECRET-RT";
    req.body_len = strlen(req.body);
    req.content_type = "application/x-www-form-urlencoded";
    assert_int_equal(run(fx, &req, &resp, &err), APR_SUCCESS);
    req.url = apr_pstrcat(fx->p, dt_server_url(fx->srv, fx->p),
                          "/json?x=1&access_token=SECRET-Q", NULL);
    req.body =
        "{\"refresh_token\": \"SECRET-J\\\"x\", \"client_secret\":\"SECRET-K\",\"keep\":\"shown\"}";
    req.body_len = strlen(req.body);
    req.content_type = NULL;
    assert_int_equal(run(fx, &req, &resp, &err), APR_SUCCESS);
    datos_log_set_sink(NULL, NULL, NULL);

    assert_non_null(trace_text);
    assert_non_null(strstr(trace_text, "POST /token HTTP/1.1"));
    assert_null(strstr(trace_text, "SECRET"));
    assert_non_null(strstr(trace_text, "access_token=[redacted]"));
    assert_non_null(strstr(trace_text, "\"refresh_token\": \"[redacted]\""));
    assert_non_null(strstr(trace_text, "\"client_secret\":\"[redacted]\""));
    assert_non_null(strstr(trace_text, "\"keep\":\"shown\""));
    assert_non_null(
        strstr(dt_server_request(fx->srv, fx->p, 0)->body, "SECRET-RT"));
}

static void retry_after(void **state)
{
    fx_t *fx = *state;
    datos_http_resp_t resp;
    apr_time_t now =
        apr_time_from_sec(1705240800); /* Sun, 14 Jan 2024 14:00:00 GMT */
    const apr_interval_time_t lo = DATOS_RETRY_AFTER_MIN;
    const apr_interval_time_t hi = DATOS_RETRY_AFTER_MAX;
    static const struct {
        const char *value;
        apr_int64_t secs; /* -1: the minimum, -2: the maximum */
    } cases[] = {
        {"120", 120},
        {" 7 ", 7},
        {"0", -1},
        {"3600", 3600},
        {"3601", -2},
        {"315359999", -2},
        {"99999999999999999999999999999999999999", -2},
        {"Sun, 14 Jan 2024 14:00:30 GMT", 30},
        {"Sunday, 14-Jan-24 14:00:30 GMT", 30},
        {"Sun Jan 14 14:00:30 2024", 30},
        {"Sun Jan 14 14:01:00 2024", 60},
        {"Sun, 14 Jan 2024 13:00:00 GMT", -1}, /* past */
        {"Thu, 01 Jan 1970 00:00:00 GMT", -1},
        {"Fri, 31 Dec 9999 23:59:59 GMT", -2},
        {"Mon, 14 Jan 2025 14:00:00 GMT", -2},
        {"soon", 0},
        {"-5", 0},
        {"+5", 0},
        {"5s", 0},
        {"1.5", 0},
        {"", 0},
        {"Sun, 14 Jan 300000 14:00:30 GMT", 0}, /* year out of range */
        {"Sun, 14 Jan 2024 14:00:30 UTC", 0},
        {"Sun, 14 Jan 2024 24:00:30 GMT", 0},
        {"Sun, 30 Feb 2024 14:00:30 GMT", 0},
        {"Sun, 14 Foo 2024 14:00:30 GMT", 0},
        {"Sun,  14 Jan 2024 14:00:30 GMT", 0},
        {"Sun, 14 Jan 1969 14:00:30 GMT", 0},
        {"Xyz, 14 Jan 2024 14:00:30 GMT", 0},
        {"Sun Jan 14 14:00:30 2024 extra", 0},
    };
    size_t i;

    memset(&resp, 0, sizeof(resp));
    resp.headers = apr_table_make(fx->p, 2);
    assert_int_equal(datos_http_retry_after(&resp, now), 0);
    assert_int_equal(datos_http_retry_after(NULL, now), 0);
    apr_table_set(resp.headers, "retry-after", "Sun, 14 Jan 2024 14:00:30 GMT");
    assert_int_equal(datos_http_retry_after(&resp, now), apr_time_from_sec(30));
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        apr_interval_time_t want = cases[i].secs == -1 ? lo
                                   : cases[i].secs == -2
                                       ? hi
                                       : apr_time_from_sec(cases[i].secs);
        apr_interval_time_t got = datos_retry_after_parse(cases[i].value, now);
        if (got != want) {
            fail_msg("Retry-After '%s': got %" APR_INT64_T_FMT
                     " us, want %" APR_INT64_T_FMT,
                     cases[i].value, (apr_int64_t)got, (apr_int64_t)want);
        }
    }
    assert_int_equal(datos_retry_after_parse(NULL, now), 0);
    /* Whatever the clock says, a date never produces a value outside the
     * range (the year-9999 date against the epoch, and the reverse). */
    assert_int_equal(
        datos_retry_after_parse("Fri, 31 Dec 9999 23:59:59 GMT", 0), hi);
    assert_int_equal(datos_retry_after_parse("Thu, 01 Jan 1970 00:00:00 GMT",
                                             apr_time_from_sec(253402300799LL)),
                     lo);
}

static void urlencode(void **state)
{
    fx_t *fx = *state;

    assert_string_equal(datos_http_urlencode(fx->p, "AZaz09-._~"),
                        "AZaz09-._~");
    assert_string_equal(
        datos_http_urlencode(fx->p,
                             "https://www.googleapis.com/auth/bigquery,x y"),
        "https%3A%2F%2Fwww.googleapis.com%2Fauth%2Fbigquery%2Cx%20y");
    assert_string_equal(datos_http_urlencode(fx->p, "\xc3\xa1+&="),
                        "%C3%A1%2B%26%3D");
    assert_string_equal(datos_http_urlencode(fx->p, ""), "");
}

/* ------------------------------------------------------------------ TLS */

/* Certificates made for this run with the openssl command, so no private
 * key is ever committed: a CA the client is told to trust, a rogue CA it
 * is not, and server certificates for 127.0.0.1 from each, one from the
 * trusted CA for another name, and one signed by itself. */
static apr_pool_t *pki_pool;
static const char *pki;

static const char *pki_file(apr_pool_t *p, const char *name)
{
    return apr_pstrcat(p, pki, "/", name, NULL);
}

static void make_ca(const char *name)
{
    if (dt_system(pki_pool,
                  "cd '%s' && openssl req -x509 -newkey ec -pkeyopt "
                  "ec_paramgen_curve:P-256 -nodes -days 2 -subj "
                  "'/CN=datos unit test %s' -keyout %s.key -out %s.pem "
                  ">>openssl.log 2>&1",
                  pki, name, name, name)
        != 0) {
        fail_msg("openssl could not make CA %s (see %s/openssl.log)", name,
                 pki);
    }
}

/* A server certificate for san, issued by ca (NULL: signed by itself). */
static void make_server_cert(const char *name, const char *cn, const char *san,
                             const char *ca)
{
    int rc;

    if (!ca) {
        rc = dt_system(pki_pool,
                       "cd '%s' && openssl req -x509 -newkey ec -pkeyopt "
                       "ec_paramgen_curve:P-256 -nodes -days 2 -subj '/CN=%s' "
                       "-addext 'subjectAltName=%s' -keyout %s.key -out %s.pem "
                       ">>openssl.log 2>&1",
                       pki, cn, san, name, name);
    }
    else {
        rc = dt_system(
            pki_pool,
            "cd '%s' && printf 'subjectAltName=%%s\\n' '%s' >%s.ext && "
            "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
            "-subj '/CN=%s' -keyout %s.key -out %s.csr >>openssl.log 2>&1 && "
            "openssl x509 -req -in %s.csr -CA %s.pem -CAkey %s.key "
            "-CAcreateserial -days 2 -extfile %s.ext -out %s.pem "
            ">>openssl.log 2>&1",
            pki, san, name, cn, name, name, name, ca, ca, name, name);
    }
    if (rc != 0) {
        fail_msg("openssl could not make certificate %s (see %s/openssl.log)",
                 name, pki);
    }
}

static int tls_group_setup(void **state)
{
    if (group_setup(state) != 0
        || apr_pool_create(&pki_pool, NULL) != APR_SUCCESS) {
        return -1;
    }
    pki = dt_tmpdir(pki_pool);
    make_ca("ca");
    make_ca("rogue-ca");
    make_server_cert("good", "127.0.0.1", "IP:127.0.0.1,DNS:localhost", "ca");
    make_server_cert("elsewhere", "datos-elsewhere.test",
                     "DNS:datos-elsewhere.test", "ca");
    make_server_cert("rogue", "127.0.0.1", "IP:127.0.0.1", "rogue-ca");
    make_server_cert("self", "127.0.0.1", "IP:127.0.0.1", NULL);
    return 0;
}

static int tls_group_teardown(void **state)
{
    apr_pool_destroy(pki_pool);
    return group_teardown(state);
}

/* One GET to a TLS server presenting cert, with ca_file as the client's
 * trust (NULL: the system bundle). */
static apr_status_t tls_get(fx_t *fx, const char *cert, const char *ca_file,
                            datos_http_resp_t **resp, datos_err_t *err)
{
    datos_http_req_t req;
    apr_status_t rv;

    dt_server_stop(fx->srv);
    fx->srv = dt_server_start_tls(
        pki_file(fx->p, apr_pstrcat(fx->p, cert, ".pem", NULL)),
        pki_file(fx->p, apr_pstrcat(fx->p, cert, ".key", NULL)));
    dt_server_json(fx->srv, 200, "{\"over\":\"tls\"}");
    fx->opts.ca_file = ca_file ? pki_file(fx->p, ca_file) : NULL;
    memset(&req, 0, sizeof(req));
    req.method = "GET";
    req.url = apr_pstrcat(fx->p, dt_server_url(fx->srv, fx->p), "/v1/x", NULL);
    assert_true(!strncmp(req.url, "https://127.0.0.1:", 18));
    rv = run(fx, &req, resp, err);
    return rv;
}

/* Nothing reaches the server, and the message names the URL and says
 * what was wrong with the peer. An untrusted issuer fails the handshake
 * itself; the name is checked by the client once the handshake is done,
 * so the server sees a connection closed before any request. */
static void refused(fx_t *fx, const char *cert, const char *ca_file,
                    const char *why, int in_handshake)
{
    datos_http_resp_t *resp;
    datos_err_t err = {0};
    apr_status_t rv = tls_get(fx, cert, ca_file, &resp, &err);
    int i;

    if (rv != DATOS_ECONNECT) {
        fail_msg("%s with CA %s: rv %d (%s), want a refusal", cert,
                 ca_file ? ca_file : "bundle", rv,
                 err.message ? err.message : "-");
    }
    assert_null(resp);
    assert_int_equal(dt_server_count(fx->srv), 0);
    /* The server sees the client's alert in its own time: a generous
     * deadline, never a measured duration. */
    for (i = 0; in_handshake && i < 1000 && !dt_server_tls_failures(fx->srv);
         i++) {
        apr_sleep(apr_time_from_msec(10));
    }
    assert_int_equal(dt_server_tls_failures(fx->srv), in_handshake);
    assert_non_null(err.message);
    assert_non_null(strstr(err.message, "GET https://127.0.0.1:"));
    if (!strstr(err.message, why)) {
        fail_msg("%s with CA %s: message '%s' does not say '%s'", cert,
                 ca_file ? ca_file : "bundle", err.message, why);
    }
}

static void tls_trusted_through_the_ca_file(void **state)
{
    fx_t *fx = *state;
    datos_http_resp_t *resp;
    datos_err_t err = {0};
    dt_request_t *seen;

    if (tls_get(fx, "good", "ca.pem", &resp, &err) != APR_SUCCESS) {
        fail_msg("refused: %s", err.message);
    }
    assert_int_equal(resp->status, 200);
    assert_string_equal(resp->body, "{\"over\":\"tls\"}");
    assert_int_equal(dt_server_tls_failures(fx->srv), 0);
    assert_int_equal(dt_server_count(fx->srv), 1);
    seen = dt_server_request(fx->srv, fx->p, 0);
    assert_string_equal(seen->target, "/v1/x");
}

static void tls_untrusted_issuer_refused(void **state)
{
    fx_t *fx = *state;

    /* the private CA is in no system bundle */
    refused(fx, "good", NULL, "certificate", 1);
    /* another CA than the server's */
    refused(fx, "good", "rogue-ca.pem", "certificate", 1);
    /* a server whose issuer is not the configured CA */
    refused(fx, "rogue", "ca.pem", "certificate", 1);
    refused(fx, "self", "ca.pem", "certificate", 1);
}

static void tls_name_mismatch_refused(void **state)
{
    fx_t *fx = *state;

    /* issued by the trusted CA, for another host */
    refused(fx, "elsewhere", "ca.pem", "name", 0);
    refused(fx, "elsewhere", "ca.pem", "'127.0.0.1'", 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        FX_TEST(get_ok),
        FX_TEST(post_bodies),
        FX_TEST(other_methods),
        FX_TEST(timeout_never_answers),
        FX_TEST(low_speed_stall),
        FX_TEST(deadline_passed),
        FX_TEST(tiny_timeouts_do_not_mean_forever),
        FX_TEST(response_cap),
        FX_TEST(no_redirects),
        FX_TEST(transport_rule_refuses_without_connecting),
        FX_TEST(check_url_matrix),
        FX_TEST(check_url_ports_and_brackets),
        FX_TEST(check_url_says_when_insecure_http_would_help),
        FX_TEST(header_crlf_refused),
        FX_TEST(connection_failures),
        FX_TEST(handle_reuse),
        FX_TEST(trace_masks_secrets),
        FX_TEST(trace_masks_user_credentials),
        FX_TEST(segment_bodies),
        FX_TEST(retry_after),
        FX_TEST(urlencode),
    };
    const struct CMUnitTest tls_tests[] = {
        FX_TEST(tls_trusted_through_the_ca_file),
        FX_TEST(tls_untrusted_issuer_refused),
        FX_TEST(tls_name_mismatch_refused),
    };
    int failed = cmocka_run_group_tests(tests, group_setup, group_teardown);

    return failed
           + cmocka_run_group_tests_name("tls", tls_tests, tls_group_setup,
                                         tls_group_teardown);
}
