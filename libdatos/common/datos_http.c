/* datos_http.c - HTTP client on libcurl. The only file that includes
 * curl.h, so the rest of libdatos (and mod_datos) never sees a CURLcode. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <apr_strings.h>
#include <apr_lib.h>
#include <curl/curl.h>

#include "datos_http.h"
#include "datos_log.h"
#include "datos_time.h"
#include "datos_version.h"

struct datos_http_t {
    apr_pool_t *pool;
    CURL *curl;
    datos_http_opts_t opts;
    char errbuf[CURL_ERROR_SIZE];
};

/* The metadata server answers within milliseconds when it exists at all;
 * a long connect timeout would only delay the failure off GCE. */
#define METADATA_CONNECT_TIMEOUT apr_time_from_sec(2)

static int global_done;

apr_status_t datos_http_global_init(void)
{
    curl_version_info_data *info;

    if (global_done) {
        return APR_SUCCESS;
    }
    /* CURLOPT_PROTOCOLS_STR exists from 7.85.0 on; refusing older libraries
     * here beats silently allowing every protocol. */
    info = curl_version_info(CURLVERSION_NOW);
    if (!info || info->version_num < 0x075500) {
        return APR_ENOTIMPL;
    }
    if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK) {
        return APR_EGENERAL;
    }
    global_done = 1;
    return APR_SUCCESS;
}

void datos_http_global_cleanup(void)
{
    if (global_done) {
        curl_global_cleanup();
        global_done = 0;
    }
}

void datos_http_opts_default(datos_http_opts_t *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->connect_timeout = apr_time_from_sec(3);
    opts->timeout = apr_time_from_sec(10);
    opts->low_speed_time = apr_time_from_sec(10);
    opts->low_speed_limit = 1;
    opts->max_response = (apr_size_t)32 * 1024 * 1024;
}

static apr_status_t http_cleanup(void *data)
{
    datos_http_t *http = data;

    if (http->curl) {
        curl_easy_cleanup(http->curl);
        http->curl = NULL;
    }
    return APR_SUCCESS;
}

apr_status_t datos_http_create(apr_pool_t *p, const datos_http_opts_t *opts,
                               datos_http_t **out, datos_err_t *err)
{
    apr_status_t rv = APR_SUCCESS;
    datos_http_t *http;

    if (opts->connect_timeout <= 0 || opts->timeout <= 0) {
        rv = datos_err_set(err, p, DATOS_ECONFIG, 0, NULL,
                           "HTTP timeouts must be positive");
        goto leave;
    }
    http = apr_pcalloc(p, sizeof(*http));
    http->pool = p;
    http->opts = *opts;
    if (!http->opts.max_response) {
        http->opts.max_response = (apr_size_t)32 * 1024 * 1024;
    }
    http->opts.ca_file = opts->ca_file ? apr_pstrdup(p, opts->ca_file) : NULL;
    http->opts.user_agent = apr_pstrdup(
        p, opts->user_agent ? opts->user_agent : "datos/" DATOS_VERSION);
    http->curl = curl_easy_init();
    if (!http->curl) {
        rv = datos_err_set(err, p, APR_ENOMEM, 0, NULL,
                           "cannot create a curl handle");
        goto leave;
    }
    apr_pool_cleanup_register(p, http, http_cleanup, apr_pool_cleanup_null);
    *out = http;

leave:
    return rv;
}

/* ------------------------------------------------------------------ URLs */

typedef enum {
    HOST_OTHER,
    HOST_LOOPBACK,
    HOST_METADATA
} host_class_t;

typedef struct {
    int https;
    const char *host; /* without brackets, lowercase */
} url_parts_t;

/* ASCII only, independent of the process locale. */
static int ascii_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9');
}

static int host_char_ok(char c)
{
    return ascii_alnum((unsigned char)c) || c == '.' || c == '-' || c == '_'
           || c == ':';
}

/* Just enough of RFC 3986 to find the host the way curl will. Anything
 * unusual in the authority (percent escapes, backslashes, spaces) is
 * refused: those are how "looks like loopback" tricks are built. A port
 * outside 1..65535 and brackets around anything but an IPv6 address are
 * refused too: the value could never work, and parsers disagree on what it
 * means (a port truncated to 16 bits, "[127.0.0.1]" as a name). */
static apr_status_t url_split(apr_pool_t *p, const char *url, url_parts_t *u,
                              const char **why)
{
    const char *a, *end, *at, *h, *he;
    char *host;
    apr_size_t i;
    struct in6_addr a6;

    if (!strncasecmp(url, "https://", 8)) {
        u->https = 1;
        a = url + 8;
    }
    else if (!strncasecmp(url, "http://", 7)) {
        u->https = 0;
        a = url + 7;
    }
    else {
        *why = "only http and https URLs are allowed";
        return DATOS_EINSECURE;
    }
    end = a + strcspn(a, "/?#");
    /* Userinfo is never needed here, and URL parsers disagree on which '@'
     * (or backslash) ends it: refusing it removes the ambiguity. */
    at = memchr(a, '@', (apr_size_t)(end - a));
    if (at || memchr(a, '\\', (apr_size_t)(end - a))) {
        *why = "credentials or backslashes in the authority";
        return DATOS_EINSECURE;
    }
    h = a;
    if (h < end && *h == '[') {
        he = memchr(h, ']', (apr_size_t)(end - h));
        if (!he || (he + 1 != end && he[1] != ':')) {
            *why = "malformed IPv6 host";
            return DATOS_EINSECURE;
        }
        host = apr_pstrmemdup(p, h + 1, (apr_size_t)(he - h - 1));
        if (inet_pton(AF_INET6, host, &a6) != 1) {
            *why = "brackets hold only an IPv6 address";
            return DATOS_EINSECURE;
        }
        he++;
    }
    else {
        he = h;
        while (he < end && *he != ':') {
            he++;
        }
        host = apr_pstrmemdup(p, h, (apr_size_t)(he - h));
    }
    if (he < end) { /* ":port" */
        const char *q = he + 1;
        long port = 0;

        if (*he != ':' || q == end) {
            *why = "no port after ':'";
            return DATOS_EINSECURE;
        }
        for (; q < end; q++) {
            if (!apr_isdigit(*q)) {
                *why = "malformed port";
                return DATOS_EINSECURE;
            }
            port = port * 10 + (*q - '0');
            if (port > 65535) {
                break;
            }
        }
        if (port < 1 || port > 65535) {
            *why = "the port must be 1 to 65535";
            return DATOS_EINSECURE;
        }
    }
    if (!*host) {
        *why = "no host";
        return DATOS_EINSECURE;
    }
    for (i = 0; host[i]; i++) {
        if (!host_char_ok(host[i])) {
            *why = "unexpected character in the host";
            return DATOS_EINSECURE;
        }
        host[i] = (char)apr_tolower(host[i]);
    }
    u->host = host;
    return APR_SUCCESS;
}

/* GCE_METADATA_HOST is "host" or "host:port" (tests point it at a fake). */
static const char *metadata_env_host(apr_pool_t *p)
{
    const char *env = getenv("GCE_METADATA_HOST");
    url_parts_t u;
    const char *why;

    if (!env || !*env) {
        return NULL;
    }
    if (url_split(p, apr_pstrcat(p, "http://", env, NULL), &u, &why)
        != APR_SUCCESS) {
        return NULL;
    }
    return u.host;
}

static host_class_t host_classify(apr_pool_t *p, const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    const char *md;

    if (!strcmp(host, "localhost") || !strcmp(host, "localhost.")) {
        return HOST_LOOPBACK;
    }
    /* inet_pton takes dotted quads only, so "127.1" or "2130706433" never
     * pass as loopback even though a resolver might map them there. */
    if (inet_pton(AF_INET, host, &a4) == 1) {
        if ((ntohl(a4.s_addr) >> 24) == 127) {
            return HOST_LOOPBACK;
        }
    }
    else if (inet_pton(AF_INET6, host, &a6) == 1) {
        if (IN6_IS_ADDR_LOOPBACK(&a6)) {
            return HOST_LOOPBACK;
        }
        if (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127) {
            return HOST_LOOPBACK;
        }
    }
    if (!strcmp(host, "metadata.google.internal")
        || !strcmp(host, "169.254.169.254")) {
        return HOST_METADATA;
    }
    md = metadata_env_host(p);
    if (md && !strcmp(host, md)) {
        return HOST_METADATA;
    }
    return HOST_OTHER;
}

static apr_status_t check_url(apr_pool_t *p, const char *url,
                              int allow_insecure, int metadata,
                              host_class_t *cls, datos_err_t *err)
{
    url_parts_t u;
    const char *why = NULL;
    apr_status_t rv = DATOS_EINSECURE;
    host_class_t c;

    if (!url) {
        datos_err_set(err, p, rv, 0, NULL, "no URL");
        goto leave;
    }
    if (url_split(p, url, &u, &why) != APR_SUCCESS) {
        datos_err_set(err, p, rv, 0, NULL, "URL refused (%s): %s", why,
                      datos_err_text(p, url, strlen(url), 200));
        goto leave;
    }
    c = host_classify(p, u.host);
    if (!u.https && !allow_insecure && c != HOST_LOOPBACK
        && !(metadata && c == HOST_METADATA)) {
        /* The only refusal that allowing insecure http lifts, so the only
         * one whose reason tells callers to name their setting for it. */
        datos_err_set(err, p, rv, 0, DATOS_REASON_PLAIN_HTTP,
                      "plain http to %s is not allowed: use https or a "
                      "loopback address, or allow insecure http for an "
                      "emulator",
                      u.host);
        goto leave;
    }
    *cls = c;
    rv = APR_SUCCESS;

leave:
    return rv;
}

apr_status_t datos_http_check_url(apr_pool_t *p, const char *url,
                                  int allow_insecure, int metadata,
                                  datos_err_t *err)
{
    host_class_t cls;
    return check_url(p, url, allow_insecure, metadata, &cls, err);
}

/* Messages name the request without its query string: short, and free of
 * page tokens or scopes. */
static const char *url_for_log(apr_pool_t *p, const char *url)
{
    apr_size_t n = strcspn(url, "?#");
    return datos_err_text(p, url, n, 200);
}

/* ------------------------------------------------------------ callbacks */

/* An answer's body: grown with realloc, so a large answer never leaves
 * the copies it outgrew in the pool (a 64 MiB pull answer cost twice
 * that), and freed with the pool. */
typedef struct {
    char *data;
} body_buf_t;

static apr_status_t body_buf_free(void *data)
{
    body_buf_t *b = data;

    free(b->data);
    b->data = NULL;
    return APR_SUCCESS;
}

typedef struct {
    apr_pool_t *p;
    body_buf_t *buf;
    char *data;
    apr_size_t len, cap, max, received;
    int too_large;
    int keep_partial;
    int cut;
    int oom;
    datos_http_overflow_fn *overflow;
    void *overflow_baton;
    const volatile sig_atomic_t *abort_flag;
    apr_table_t *headers;
} xfer_t;

/* The response of a transfer: what arrived, NUL-terminated in place. */
static datos_http_resp_t *response(apr_pool_t *p, xfer_t *x, long status,
                                   int partial)
{
    datos_http_resp_t *r = apr_pcalloc(p, sizeof(*r));

    r->status = (int)status;
    r->headers = x->headers;
    r->body = x->data ? x->data : "";
    r->body_len = x->len;
    r->received = x->received;
    r->partial = partial;
    if (x->data) {
        x->data[x->len] = '\0';
    }
    return r;
}

/* Room for n more bytes and a NUL; 0 when memory ran out. */
static int xfer_reserve(xfer_t *x, apr_size_t n)
{
    apr_size_t cap;
    char *d;

    if (x->len + n + 1 <= x->cap) {
        return 1;
    }
    cap = x->cap ? x->cap : 4096;
    while (cap < x->len + n + 1) {
        cap *= 2;
    }
    if (cap > x->max + 1) {
        cap = x->max + 1;
    }
    if (!x->buf) {
        x->buf = apr_pcalloc(x->p, sizeof(*x->buf));
        apr_pool_cleanup_register(x->p, x->buf, body_buf_free,
                                  apr_pool_cleanup_null);
    }
    d = realloc(x->buf->data, cap);
    if (!d) {
        x->oom = 1;
        return 0;
    }
    x->buf->data = x->data = d;
    x->cap = cap;
    return 1;
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    xfer_t *x = userdata;
    apr_size_t n = size * nmemb, all = n;

    x->received += n;
    /* Enforced here, on decoded bytes, so a small gzip body cannot expand
     * past the cap either. */
    if (n > x->max - x->len) {
        if (x->overflow) {
            /* What fits is kept; the rest goes to the caller, which reads
             * what it needs of it as it passes. */
            apr_size_t keep = x->max - x->len;
            if (keep && xfer_reserve(x, keep)) {
                memcpy(x->data + x->len, ptr, keep);
                x->len += keep;
            }
            x->cut = 1;
            x->overflow(x->overflow_baton, x->data ? x->data : "", x->len,
                        ptr + keep, n - keep);
            return x->oom ? 0 : all;
        }
        x->too_large = 1;
        if (!x->keep_partial || x->len == x->max) {
            return 0;
        }
        /* Keep what fits, so a caller can still read the start. */
        n = x->max - x->len;
        x->cut = 1;
    }
    if (!xfer_reserve(x, n)) {
        return 0;
    }
    memcpy(x->data + x->len, ptr, n);
    x->len += n;
    return x->cut && !x->overflow ? 0 : all;
}

/* Stops a transfer once the program was told to stop. */
static int progress_cb(void *userdata, curl_off_t dltotal, curl_off_t dlnow,
                       curl_off_t ultotal, curl_off_t ulnow)
{
    const xfer_t *x = userdata;

    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    return x->abort_flag && *x->abort_flag ? 1 : 0;
}

static size_t header_cb(char *buf, size_t size, size_t nitems, void *userdata)
{
    xfer_t *x = userdata;
    apr_size_t n = size * nitems, k;
    const char *colon;
    char *name, *value;

    if (n >= 5 && !strncmp(buf, "HTTP/", 5)) {
        /* A new response starts (after a proxy CONNECT or a 1xx): only the
         * last one's headers are the answer's. */
        apr_table_clear(x->headers);
        return n;
    }
    colon = memchr(buf, ':', n);
    if (!colon || colon == buf) {
        return n;
    }
    name = apr_pstrmemdup(x->p, buf, (apr_size_t)(colon - buf));
    k = (apr_size_t)(colon - buf) + 1;
    while (k < n && (buf[k] == ' ' || buf[k] == '\t')) {
        k++;
    }
    while (n > k
           && (buf[n - 1] == '\r' || buf[n - 1] == '\n' || buf[n - 1] == ' '
               || buf[n - 1] == '\t')) {
        n--;
    }
    value = apr_pstrmemdup(x->p, buf + k, n - k);
    apr_table_add(x->headers, name, value);
    return size * nitems;
}

/* Names whose values grant access: form fields (the JWT-bearer assertion,
 * the refresh-token grant's client secret and refresh token) and the same
 * names as JSON members. */
static const char *const secret_names[] = {"assertion",     "refresh_token",
                                           "client_secret", "access_token",
                                           "private_key",   NULL};

/* Where the value after a secret name at s[i] starts: "name=" (a form
 * field or query parameter) or "\"name\"" then ':' (JSON). Returns the
 * length of the name part, or 0 when s[i] starts no secret. */
static apr_size_t secret_at(const char *s, apr_size_t i, apr_size_t n)
{
    int k;

    for (k = 0; secret_names[k]; k++) {
        apr_size_t l = strlen(secret_names[k]);
        if (n - i > l && !strncasecmp(s + i, secret_names[k], l)
            && s[i + l] == '='
            && (i == 0 || s[i - 1] == '&' || s[i - 1] == '?'
                || s[i - 1] == ' ')) {
            return l + 1;
        }
        if (n - i > l + 2 && s[i] == '"'
            && !strncasecmp(s + i + 1, secret_names[k], l)
            && s[i + 1 + l] == '"') {
            apr_size_t j = i + l + 2;
            while (j < n && (s[j] == ' ' || s[j] == '\t')) {
                j++;
            }
            if (j < n && s[j] == ':') {
                j++;
                while (j < n && (s[j] == ' ' || s[j] == '\t')) {
                    j++;
                }
                return j - i;
            }
        }
    }
    return 0;
}

/* Masks the secret parts of outgoing text, line by line: Authorization
 * values (bearer tokens) whole, and the value of every secret_names entry,
 * as a form field or a JSON member, up to its end (a form's '&', a JSON
 * string's closing quote) or the end of what was handed over. */
static char *mask_secrets(apr_pool_t *p, const char *data, apr_size_t len)
{
    char *s = apr_pstrmemdup(p, data, len);
    const char *line = s;
    char *out = apr_pcalloc(p, 1);

    while (*line) {
        apr_size_t n = strcspn(line, "\r\n"), i;
        char *l = apr_pstrmemdup(p, line, n);
        char *m = apr_palloc(p, n * 2 + 16);
        apr_size_t o = 0;

        if (!strncasecmp(l, "authorization:", 14)
            || !strncasecmp(l, "proxy-authorization:", 20)) {
            l[strchr(l, ':') - l + 1] = '\0';
            l = apr_pstrcat(p, l, " [redacted]", NULL);
            n = strlen(l);
        }
        else {
            for (i = 0; i < n;) {
                apr_size_t name = secret_at(l, i, n);
                if (!name) {
                    m[o++] = l[i++];
                    continue;
                }
                memcpy(m + o, l + i, name);
                o += name;
                i += name;
                if (i < n && l[i] == '"') { /* a JSON string */
                    m[o++] = l[i++];
                    while (i < n && l[i] != '"') {
                        i += l[i] == '\\' && i + 1 < n ? 2 : 1;
                    }
                }
                else {
                    i += strcspn(l + i, "&, }");
                }
                memcpy(m + o, "[redacted]", 10);
                o += 10;
            }
            m[o] = '\0';
            l = m;
        }
        out = apr_pstrcat(p, out, *out ? " | " : "", l, NULL);
        line += strcspn(line, "\r\n");
        while (*line == '\r' || *line == '\n') {
            line++;
        }
    }
    return out;
}

static int debug_cb(CURL *handle, curl_infotype type, char *data, size_t size,
                    void *userdata)
{
    const int *body_loggable = userdata;
    apr_pool_t *p;
    (void)handle;

    if (apr_pool_create(&p, NULL) != APR_SUCCESS) {
        return 0;
    }
    switch (type) {
    case CURLINFO_TEXT: {
        const char *nl = memchr(data, '\n', size);
        datos_log_perror(
            DATOS_LOG_MARK, DATOS_LOG_TRACE4, 0, p, "curl: %s",
            datos_err_text(p, data, nl ? (apr_size_t)(nl - data) : size, 400));
        break;
    }
    case CURLINFO_HEADER_OUT:
        datos_log_perror(DATOS_LOG_MARK, DATOS_LOG_TRACE4, 0, p, "curl >> %s",
                         mask_secrets(p, data, size));
        break;
    case CURLINFO_HEADER_IN:
        datos_log_perror(DATOS_LOG_MARK, DATOS_LOG_TRACE4, 0, p, "curl << %s",
                         datos_err_text(p, data, size, 400));
        break;
    case CURLINFO_DATA_OUT:
        /* JSON bodies are queries, worth seeing; form bodies carry the
         * signed assertion, possibly split over several chunks, so only
         * their size is logged. */
        if (body_loggable && *body_loggable) {
            const char *m = mask_secrets(p, data, size > 400 ? 400 : size);
            datos_log_perror(DATOS_LOG_MARK, DATOS_LOG_TRACE4, 0, p,
                             "curl >> %" APR_SIZE_T_FMT " body bytes: %s",
                             (apr_size_t)size,
                             datos_err_text(p, m, strlen(m), 400));
        }
        else {
            datos_log_perror(DATOS_LOG_MARK, DATOS_LOG_TRACE4, 0, p,
                             "curl >> %" APR_SIZE_T_FMT " body bytes",
                             (apr_size_t)size);
        }
        break;
    case CURLINFO_DATA_IN:
        /* Answers may hold access tokens: sizes only. */
        datos_log_perror(DATOS_LOG_MARK, DATOS_LOG_TRACE4, 0, p,
                         "curl << %" APR_SIZE_T_FMT " body bytes",
                         (apr_size_t)size);
        break;
    default: break;
    }
    apr_pool_destroy(p);
    return 0;
}

/* A body sent from the caller's segments: curl asks for the next bytes
 * (read_cb) and, when it must send the body again on a new connection,
 * to start over (seek_cb). */
typedef struct {
    const datos_http_seg_t *segs;
    int nsegs;
    int seg;        /* segment being read */
    apr_size_t off; /* offset in it */
} body_src_t;

static size_t read_cb(char *buf, size_t size, size_t nitems, void *userdata)
{
    body_src_t *b = userdata;
    size_t room = size * nitems, n = 0;

    while (n < room && b->seg < b->nsegs) {
        const datos_http_seg_t *sg = &b->segs[b->seg];
        apr_size_t k = sg->len - b->off;

        if (k > room - n) {
            k = room - n;
        }
        if (k) {
            memcpy(buf + n, sg->data + b->off, k);
        }
        n += k;
        b->off += k;
        if (b->off == sg->len) {
            b->seg++;
            b->off = 0;
        }
    }
    return n;
}

static int seek_cb(void *userdata, curl_off_t offset, int origin)
{
    body_src_t *b = userdata;
    int i;

    if (origin != SEEK_SET || offset < 0) {
        return CURL_SEEKFUNC_CANTSEEK;
    }
    for (i = 0; i < b->nsegs; i++) {
        if ((curl_off_t)b->segs[i].len > offset) {
            break;
        }
        offset -= (curl_off_t)b->segs[i].len;
    }
    if (i == b->nsegs && offset > 0) {
        return CURL_SEEKFUNC_FAIL;
    }
    b->seg = i;
    b->off = (apr_size_t)offset;
    return CURL_SEEKFUNC_OK;
}

/* ------------------------------------------------------------- perform */

/* curl reads 0 as "no timeout": round up, never down to 0. */
static long to_ms(apr_interval_time_t t)
{
    apr_int64_t ms = (t + 999) / 1000;
    if (ms < 1) {
        ms = 1;
    }
    if (ms > 0x7fffffffL) {
        ms = 0x7fffffffL;
    }
    return (long)ms;
}

static apr_status_t map_curl(CURLcode cc, const xfer_t *x)
{
    switch (cc) {
    case CURLE_OK: return APR_SUCCESS;
    case CURLE_OPERATION_TIMEDOUT: return APR_TIMEUP;
    case CURLE_WRITE_ERROR:
        return x->too_large ? DATOS_ETOOLARGE
               : x->oom     ? APR_ENOMEM
                            : DATOS_ECONNECT;
    case CURLE_FILESIZE_EXCEEDED: return DATOS_ETOOLARGE;
    case CURLE_ABORTED_BY_CALLBACK: return APR_EINTR;
    case CURLE_OUT_OF_MEMORY: return APR_ENOMEM;
    case CURLE_URL_MALFORMAT:
        /* check_url passed it, so curl reads the URL differently. */
        return DATOS_EINSECURE;
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_GOT_NOTHING:
    default:
        /* TLS failures, bad encodings, protocol errors: the answer could
         * not be had from this peer, which callers treat as unreachable. */
        return DATOS_ECONNECT;
    }
}

static apr_status_t add_header(apr_pool_t *p, struct curl_slist **list,
                               const char *h, datos_err_t *err)
{
    struct curl_slist *n;

    if (strpbrk(h, "\r\n")) {
        /* Header injection; the name alone is safe to report. */
        return datos_err_set(err, p, APR_EINVAL, 0, NULL,
                             "HTTP header %s contains CR or LF: refused",
                             datos_err_text(p, h, strcspn(h, ":\r\n"), 64));
    }
    n = curl_slist_append(*list, h);
    if (!n) {
        return datos_err_set(err, p, APR_ENOMEM, 0, NULL,
                             "cannot build the request headers");
    }
    *list = n;
    return APR_SUCCESS;
}

#define SETOPT(opt, val)                                      \
    do {                                                      \
        cc = curl_easy_setopt(c, opt, val);                   \
        if (cc != CURLE_OK) {                                 \
            rv = datos_err_set(err, p, APR_EGENERAL, 0, NULL, \
                               "curl option %s: %s", #opt,    \
                               curl_easy_strerror(cc));       \
            goto leave;                                       \
        }                                                     \
    } while (0)

apr_status_t datos_http_perform(datos_http_t *http, apr_pool_t *p,
                                const datos_http_req_t *req,
                                datos_http_resp_t **resp, datos_err_t *err)
{
    apr_status_t rv;
    CURL *c = http->curl;
    CURLcode cc;
    struct curl_slist *hdrs = NULL;
    xfer_t x;
    host_class_t cls;
    apr_interval_time_t timeout, connect_timeout;
    const char *method = req->method ? req->method : "GET";
    int has_body = req->body != NULL || req->nsegs > 0, body_loggable = 0;
    long status = 0;
    datos_http_resp_t *r;
    body_src_t src;
    curl_off_t body_total = 0;
    int i;

    memset(&x, 0, sizeof(x));
    memset(&src, 0, sizeof(src));
    if (req->body && req->nsegs > 0) {
        rv = datos_err_set(err, p, APR_EINVAL, 0, NULL,
                           "a request has either a body or segments");
        goto leave;
    }
    for (i = 0; i < req->nsegs; i++) {
        if (!req->segs[i].data && req->segs[i].len) {
            rv = datos_err_set(err, p, APR_EINVAL, 0, NULL,
                               "body segment %d has no data", i);
            goto leave;
        }
        body_total += (curl_off_t)req->segs[i].len;
    }
    rv =
        check_url(p, req->url, http->opts.allow_insecure || req->allow_insecure,
                  req->metadata, &cls, err);
    if (rv != APR_SUCCESS) {
        goto leave;
    }

    timeout = http->opts.timeout;
    if (req->deadline) {
        apr_interval_time_t left = req->deadline - apr_time_now();
        if (left <= 0) {
            rv = datos_err_set(err, p, APR_TIMEUP, 0, NULL,
                               "%s %s: deadline passed before the request",
                               method, url_for_log(p, req->url));
            goto leave;
        }
        if (left < timeout) {
            timeout = left;
        }
    }
    connect_timeout = http->opts.connect_timeout;
    if (req->metadata && connect_timeout > METADATA_CONNECT_TIMEOUT) {
        connect_timeout = METADATA_CONNECT_TIMEOUT;
    }
    if (connect_timeout > timeout) {
        connect_timeout = timeout;
    }

    x.p = p;
    x.keep_partial = req->keep_partial;
    x.overflow = req->overflow;
    x.overflow_baton = req->overflow_baton;
    x.abort_flag = http->opts.abort_flag;
    x.max = http->opts.max_response;
    if (req->max_response && req->max_response < x.max) {
        x.max = req->max_response;
    }
    x.headers = apr_table_make(p, 16);
    http->errbuf[0] = '\0';

    /* A handle keeps its connections across resets, so the calls of one
     * fetch share a connection, while no option leaks from one request into
     * the next. */
    curl_easy_reset(c);
    SETOPT(CURLOPT_URL, req->url);
    SETOPT(CURLOPT_NOSIGNAL, 1L);
    SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
    SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
    SETOPT(CURLOPT_CONNECTTIMEOUT_MS, to_ms(connect_timeout));
    SETOPT(CURLOPT_TIMEOUT_MS, to_ms(timeout));
    if (http->opts.low_speed_time > 0 && http->opts.low_speed_limit > 0) {
        /* curl counts this in whole seconds. */
        long secs = (long)((http->opts.low_speed_time + APR_USEC_PER_SEC - 1)
                           / APR_USEC_PER_SEC);
        SETOPT(CURLOPT_LOW_SPEED_LIMIT, http->opts.low_speed_limit);
        SETOPT(CURLOPT_LOW_SPEED_TIME, secs);
    }
    if (!req->keep_partial && !req->overflow) {
        /* Refused from the Content-Length, before any body byte. */
        SETOPT(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)x.max);
    }
    if (http->opts.ca_file) {
        SETOPT(CURLOPT_CAINFO, http->opts.ca_file);
    }
    SETOPT(CURLOPT_SSL_VERIFYPEER, 1L);
    SETOPT(CURLOPT_SSL_VERIFYHOST, 2L);
    SETOPT(CURLOPT_ACCEPT_ENCODING, "");
    SETOPT(CURLOPT_USERAGENT, http->opts.user_agent);
    SETOPT(CURLOPT_ERRORBUFFER, http->errbuf);
    SETOPT(CURLOPT_WRITEFUNCTION, write_cb);
    SETOPT(CURLOPT_WRITEDATA, &x);
    SETOPT(CURLOPT_HEADERFUNCTION, header_cb);
    SETOPT(CURLOPT_HEADERDATA, &x);
    if (x.abort_flag) {
        SETOPT(CURLOPT_XFERINFOFUNCTION, progress_cb);
        SETOPT(CURLOPT_XFERINFODATA, &x);
        SETOPT(CURLOPT_NOPROGRESS, 0L);
    }
    if (req->metadata || cls == HOST_LOOPBACK) {
        /* A proxy from the environment must never see metadata requests,
         * and cannot reach our loopback anyway. */
        SETOPT(CURLOPT_NOPROXY, "*");
    }
    if (datos_log_is_level(DATOS_LOG_TRACE4)) {
        body_loggable =
            has_body
            && (!req->content_type
                || !strncasecmp(req->content_type, "application/json", 16));
        SETOPT(CURLOPT_DEBUGFUNCTION, debug_cb);
        SETOPT(CURLOPT_DEBUGDATA, &body_loggable);
        SETOPT(CURLOPT_VERBOSE, 1L);
    }

    if (!strcmp(method, "GET")) {
        SETOPT(CURLOPT_HTTPGET, 1L);
    }
    else if (!strcmp(method, "POST")) {
        SETOPT(CURLOPT_POST, 1L);
    }
    else if (!strcmp(method, "HEAD")) {
        SETOPT(CURLOPT_NOBODY, 1L);
    }
    else if (!strcmp(method, "PUT") || !strcmp(method, "PATCH")
             || !strcmp(method, "DELETE")) {
        SETOPT(CURLOPT_CUSTOMREQUEST, method);
    }
    else {
        rv = datos_err_set(err, p, APR_EINVAL, 0, NULL,
                           "unsupported HTTP method %s",
                           datos_err_text(p, method, strlen(method), 16));
        goto leave;
    }
    if (req->nsegs > 0) {
        src.segs = req->segs;
        src.nsegs = req->nsegs;
        SETOPT(CURLOPT_READFUNCTION, read_cb);
        SETOPT(CURLOPT_READDATA, &src);
        SETOPT(CURLOPT_SEEKFUNCTION, seek_cb);
        SETOPT(CURLOPT_SEEKDATA, &src);
        if (!strcmp(method, "POST")) {
            SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, body_total);
        }
        else {
            /* PUT and the custom methods: curl's upload, sized up front so
             * it sends Content-Length rather than chunks. */
            SETOPT(CURLOPT_UPLOAD, 1L);
            SETOPT(CURLOPT_INFILESIZE_LARGE, body_total);
            SETOPT(CURLOPT_CUSTOMREQUEST, method);
        }
    }
    else if (has_body) {
        SETOPT(CURLOPT_POSTFIELDS, req->body);
        SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    }
    else if (!strcmp(method, "POST") || !strcmp(method, "PUT")
             || !strcmp(method, "PATCH")) {
        /* Google front ends answer 411 to a body-less POST without a
         * length. */
        SETOPT(CURLOPT_POSTFIELDS, "");
        SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
        if ((rv = add_header(p, &hdrs, "Content-Length: 0", err))
            || (rv = add_header(p, &hdrs, "Content-Type:", err))) {
            goto leave;
        }
    }

    /* No 100-continue round trip before the body. */
    if ((rv = add_header(p, &hdrs, "Expect:", err))) {
        goto leave;
    }
    if (has_body) {
        const char *ct =
            req->content_type ? req->content_type : "application/json";
        if ((rv = add_header(
                 p, &hdrs, apr_pstrcat(p, "Content-Type: ", ct, NULL), err))) {
            goto leave;
        }
    }
    for (i = 0; req->headers && i < req->headers->nelts; i++) {
        const char *h = APR_ARRAY_IDX(req->headers, i, const char *);
        if ((rv = add_header(p, &hdrs, h, err))) {
            goto leave;
        }
    }
    SETOPT(CURLOPT_HTTPHEADER, hdrs);

    datos_log_perror(DATOS_LOG_MARK, DATOS_LOG_TRACE1, 0, p,
                     "%s %s (timeout %ld ms)", method, url_for_log(p, req->url),
                     to_ms(timeout));
    cc = curl_easy_perform(c);
    if (cc != CURLE_OK) {
        rv = map_curl(cc, &x);
        if (rv == DATOS_ETOOLARGE) {
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
            rv = datos_err_set(err, p, rv, (int)status, NULL,
                               "%s %s: response larger than %" APR_SIZE_T_FMT
                               " bytes",
                               method, url_for_log(p, req->url), x.max);
            if (req->keep_partial) {
                r = response(p, &x, status, 1);
                *resp = r;
            }
        }
        else {
            rv = datos_err_set(err, p, rv, 0, NULL, "%s %s: %s", method,
                               url_for_log(p, req->url),
                               rv == APR_EINTR   ? "stopped"
                               : http->errbuf[0] ? http->errbuf
                                                 : curl_easy_strerror(cc));
            if (req->overflow) {
                /* What arrived before the failure, for the caller to
                 * learn what it was handed out. */
                curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
                r = response(p, &x, status, 1);
                *resp = r;
            }
        }
        goto leave;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);

    r = response(p, &x, status, x.cut);
    datos_log_perror(DATOS_LOG_MARK, DATOS_LOG_TRACE1, 0, p,
                     "%s %s: HTTP %d, %" APR_SIZE_T_FMT " bytes", method,
                     url_for_log(p, req->url), r->status, r->body_len);
    *resp = r;

leave:
    /* The handle must not keep pointers into this call's stack and pool. */
    curl_easy_reset(c);
    curl_slist_free_all(hdrs);
    return rv;
}

#undef SETOPT

apr_interval_time_t datos_retry_after_parse(const char *value, apr_time_t now)
{
    apr_size_t start = 0, end, i;
    apr_int64_t secs = 0, when;

    if (!value) {
        return 0;
    }
    end = strlen(value);
    while (start < end && (value[start] == ' ' || value[start] == '\t')) {
        start++;
    }
    while (end > start && (value[end - 1] == ' ' || value[end - 1] == '\t')) {
        end--;
    }
    if (start == end) {
        return 0;
    }
    if (apr_isdigit(value[start])) {
        /* delay-seconds: any number of digits, so the value saturates at the
         * cap instead of overflowing. */
        for (i = start; i < end; i++) {
            if (!apr_isdigit(value[i])) {
                return 0;
            }
            if (secs <= apr_time_sec(DATOS_RETRY_AFTER_MAX)) {
                secs = secs * 10 + (value[i] - '0');
            }
        }
    }
    else {
        if (datos_http_date_parse(value + start, end - start, &when)
            != APR_SUCCESS) {
            return 0;
        }
        /* Both sides are within years 1970..9999 in seconds: no overflow. */
        secs = when - apr_time_sec(now);
    }
    if (secs < apr_time_sec(DATOS_RETRY_AFTER_MIN)) {
        secs = apr_time_sec(DATOS_RETRY_AFTER_MIN);
    }
    if (secs > apr_time_sec(DATOS_RETRY_AFTER_MAX)) {
        secs = apr_time_sec(DATOS_RETRY_AFTER_MAX);
    }
    return apr_time_from_sec(secs);
}

apr_interval_time_t datos_http_retry_after(const datos_http_resp_t *resp,
                                           apr_time_t now)
{
    if (!resp || !resp->headers) {
        return 0;
    }
    return datos_retry_after_parse(apr_table_get(resp->headers, "Retry-After"),
                                   now);
}

char *datos_http_urlencode(apr_pool_t *p, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    apr_size_t n = strlen(s), i;
    char *out = apr_palloc(p, n * 3 + 1), *o = out;

    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (ascii_alnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
            *o++ = (char)c;
        }
        else {
            *o++ = '%';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    *o = '\0';
    return out;
}
