/* dt_server.c - a scripted HTTP/1.1 server on 127.0.0.1 for the unit
 * tests: it stands in for Google's token, metadata and BigQuery endpoints
 * (as mod_auth_openidc's test/http_server.c does for its tests), replays
 * queued answers in order and records every request it saw. It speaks
 * plain HTTP, or HTTPS with a certificate the test made, so the client's
 * peer verification is tested against a real handshake.
 *
 * Plain malloc and pthreads: the server thread must not share an APR pool
 * with the test thread. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "dt_support.h"

typedef struct {
    dt_response_t r; /* strings owned (malloc) */
} script_t;

struct dt_server_t {
    int lfd;
    int wake[2]; /* written to stop the thread */
    int port;
    pthread_t thread;
    pthread_mutex_t mu;
    script_t *script;
    int nscript, capscript, next;
    dt_request_t *reqs;
    int nreqs, capreqs;
    /* Standing answers: a request for one of these targets is answered
     * at once, recorded apart, and leaves the script alone. */
    struct {
        char *method, *target;
        dt_response_t r;
        int hits;
    } standing[8];
    int nstanding;
    SSL_CTX *tls;     /* NULL: plain HTTP */
    int tls_failures; /* handshakes that did not complete */
};

/* One accepted connection, plain or TLS. */
typedef struct {
    dt_server_t *s;
    int fd;
    SSL *ssl;
} conn_t;

static char *xstrndup(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (!d) {
        abort();
    }
    if (n) {
        memcpy(d, s, n);
    }
    d[n] = '\0';
    return d;
}

static char *xstrdup0(const char *s)
{
    return s ? xstrndup(s, strlen(s)) : NULL;
}

/* Waits until fd is readable, or the server is told to stop, or ms pass
 * (-1: forever). Returns 1 readable, 0 timeout, -1 stop. */
static int wait_readable(dt_server_t *s, int fd, int ms)
{
    struct pollfd pf[2];

    pf[0].fd = fd;
    pf[0].events = POLLIN;
    pf[1].fd = s->wake[0];
    pf[1].events = POLLIN;
    for (;;) {
        int n = poll(pf, 2, ms);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return -1;
        }
        if (n == 0) {
            return 0;
        }
        if (pf[1].revents) {
            return -1;
        }
        return 1;
    }
}

/* As wait_readable, counting bytes TLS has already decrypted. */
static int conn_wait(conn_t *c, int ms)
{
    if (c->ssl && SSL_pending(c->ssl) > 0) {
        return 1;
    }
    return wait_readable(c->s, c->fd, ms);
}

static ssize_t conn_recv(conn_t *c, char *b, size_t n)
{
    if (c->ssl) {
        int r = SSL_read(c->ssl, b, (int)n);
        return r > 0 ? r : -1;
    }
    return recv(c->fd, b, n, 0);
}

static int write_all(conn_t *c, const char *b, size_t n)
{
    while (n > 0) {
        ssize_t w;
        if (c->ssl) {
            int r = SSL_write(c->ssl, b, (int)n);
            w = r > 0 ? r : -1;
        }
        else {
            w = send(c->fd, b, n, MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR) {
                continue;
            }
        }
        if (w <= 0) {
            return -1;
        }
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads one request; returns 0 on success, -1 on EOF/stop/garbage. */
static int read_request(conn_t *c, dt_request_t *req)
{
    size_t cap = 8192, len = 0, need = 0, hdr_end = 0;
    char *buf = malloc(cap);
    const char *cl, *sp1, *sp2;

    if (!buf) {
        abort();
    }
    for (;;) {
        ssize_t n;
        char *e;

        if (hdr_end && len >= hdr_end + need) {
            break;
        }
        if (conn_wait(c, 10000) != 1) {
            free(buf);
            return -1;
        }
        if (len + 4096 > cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            if (!buf) {
                abort();
            }
        }
        n = conn_recv(c, buf + len, cap - len - 1);
        if (n <= 0) {
            free(buf);
            return -1;
        }
        len += (size_t)n;
        buf[len] = '\0';
        if (!hdr_end && (e = strstr(buf, "\r\n\r\n")) != NULL) {
            hdr_end = (size_t)(e - buf) + 4;
            cl = NULL;
            for (const char *l = buf; l && l < buf + hdr_end;
                 l = strstr(l, "\r\n") ? strstr(l, "\r\n") + 2 : NULL) {
                if (!strncasecmp(l, "Content-Length:", 15)) {
                    cl = l + 15;
                    break;
                }
            }
            need = cl ? (size_t)strtoul(cl, NULL, 10) : 0;
        }
    }
    sp1 = memchr(buf, ' ', hdr_end);
    sp2 = sp1 ? memchr(sp1 + 1, ' ', hdr_end - (size_t)(sp1 + 1 - buf)) : NULL;
    if (!sp1 || !sp2) {
        free(buf);
        return -1;
    }
    req->method = xstrndup(buf, (size_t)(sp1 - buf));
    req->target = xstrndup(sp1 + 1, (size_t)(sp2 - sp1 - 1));
    {
        const char *h = strstr(buf, "\r\n") + 2;
        req->head = xstrndup(h, (size_t)(buf + hdr_end - h));
    }
    req->body = xstrndup(buf + hdr_end, need);
    req->body_len = need;
    free(buf);
    return 0;
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200: return "OK";
    case 204: return "No Content";
    case 302: return "Found";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    default: return "Status";
    }
}

static void send_answer(conn_t *c, const dt_response_t *r)
{
    char head[1024];
    size_t blen;

    if (r->delay_ms > 0
        && wait_readable(c->s, c->s->wake[0], r->delay_ms) < 0) {
        return;
    }
    if (r->raw) {
        write_all(c, r->raw, strlen(r->raw));
    }
    if (r->hang) {
        char tmp[256];
        /* Until the client gives up (EOF) or the test ends, but no longer
         * than DT_HANG_MS: a client whose timeout did not work then sees
         * the connection closed, not a timeout, and its test fails rather
         * than hangs. */
        while (conn_wait(c, DT_HANG_MS) == 1
               && conn_recv(c, tmp, sizeof(tmp)) > 0) {
        }
        return;
    }
    if (r->close_now || r->raw) {
        return;
    }
    blen = r->body ? (r->body_len ? r->body_len : strlen(r->body)) : 0;
    snprintf(head, sizeof(head),
             "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\nConnection: close\r\n"
             "%s%s\r\n",
             r->status, reason_phrase(r->status), blen,
             r->headers ? r->headers : "",
             r->headers && strcasestr(r->headers, "Content-Type:")
                 ? ""
                 : "Content-Type: application/json; charset=UTF-8\r\n");
    if (write_all(c, head, strlen(head)) == 0 && blen) {
        write_all(c, r->body, blen);
    }
}

static void serve_connection(conn_t *c)
{
    dt_server_t *s = c->s;
    dt_request_t req;
    dt_response_t r;
    script_t *sc = NULL;
    char *own = NULL;

    memset(&req, 0, sizeof(req));
    if (read_request(c, &req) != 0) {
        return;
    }
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->nstanding; i++) {
        if (!strcmp(req.method, s->standing[i].method)
            && !strcmp(req.target, s->standing[i].target)) {
            s->standing[i].hits++;
            r = s->standing[i].r;
            /* A copy: the test may replace this answer (and free its
             * body) while it is still being sent. */
            r.body = own = xstrdup0(r.body);
            pthread_mutex_unlock(&s->mu);
            free(req.method);
            free(req.target);
            free(req.head);
            free(req.body);
            send_answer(c, &r);
            free(own);
            return;
        }
    }
    if (s->nreqs == s->capreqs) {
        s->capreqs = s->capreqs ? s->capreqs * 2 : 16;
        s->reqs = realloc(s->reqs, sizeof(*s->reqs) * (size_t)s->capreqs);
        if (!s->reqs) {
            abort();
        }
    }
    s->reqs[s->nreqs++] = req;
    if (s->next < s->nscript) {
        sc = &s->script[s->next++];
        r = sc->r;
    }
    pthread_mutex_unlock(&s->mu);

    if (!sc) {
        memset(&r, 0, sizeof(r));
        r.status = 500;
        r.body = "unscripted";
    }
    send_answer(c, &r);
}

/* The handshake, bounded so a client that stalls in it cannot hold the
 * server thread past the test. A client that refuses the certificate
 * ends here: counted, and no request is recorded. */
static int tls_accept(conn_t *c)
{
    struct timeval tv = {10, 0};

    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    c->ssl = SSL_new(c->s->tls);
    if (c->ssl && SSL_set_fd(c->ssl, c->fd) == 1 && SSL_accept(c->ssl) == 1) {
        return 1;
    }
    ERR_clear_error();
    SSL_free(c->ssl);
    c->ssl = NULL;
    pthread_mutex_lock(&c->s->mu);
    c->s->tls_failures++;
    pthread_mutex_unlock(&c->s->mu);
    return 0;
}

static void *server_main(void *arg)
{
    dt_server_t *s = arg;

    for (;;) {
        int fd, one = 1;
        if (wait_readable(s, s->lfd, -1) != 1) {
            break;
        }
        fd = accept(s->lfd, NULL, NULL);
        if (fd < 0) {
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        {
            conn_t c = {s, fd, NULL};
            if (s->tls && !tls_accept(&c)) {
                close(fd);
                continue;
            }
            serve_connection(&c);
            if (c.ssl) {
                SSL_shutdown(c.ssl);
                SSL_free(c.ssl);
            }
        }
        shutdown(fd, SHUT_WR);
        close(fd);
    }
    return NULL;
}

static dt_server_t *server_start(SSL_CTX *tls)
{
    dt_server_t *s = calloc(1, sizeof(*s));
    struct sockaddr_in a;
    socklen_t alen = sizeof(a);
    int one = 1;

    assert_non_null(s);
    s->tls = tls;
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s->lfd >= 0);
    setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(s->lfd, 16), 0);
    assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&a, &alen), 0);
    s->port = ntohs(a.sin_port);
    assert_int_equal(pipe(s->wake), 0);
    pthread_mutex_init(&s->mu, NULL);
    assert_int_equal(pthread_create(&s->thread, NULL, server_main, s), 0);
    return s;
}

dt_server_t *dt_server_start(void)
{
    return server_start(NULL);
}

dt_server_t *dt_server_start_tls(const char *cert_file, const char *key_file)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

    /* A client that hangs up mid-write must not kill the test binary. */
    signal(SIGPIPE, SIG_IGN);
    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_use_certificate_chain_file(ctx, cert_file), 1);
    assert_int_equal(
        SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM), 1);
    assert_int_equal(SSL_CTX_check_private_key(ctx), 1);
    return server_start(ctx);
}

int dt_server_tls_failures(dt_server_t *s)
{
    int n;

    pthread_mutex_lock(&s->mu);
    n = s->tls_failures;
    pthread_mutex_unlock(&s->mu);
    return n;
}

void dt_server_stop(dt_server_t *s)
{
    int i;

    if (!s) {
        return;
    }
    assert_int_equal(write(s->wake[1], "x", 1), 1);
    pthread_join(s->thread, NULL);
    close(s->lfd);
    close(s->wake[0]);
    close(s->wake[1]);
    for (i = 0; i < s->nscript; i++) {
        free((char *)s->script[i].r.headers);
        free((char *)s->script[i].r.body);
        free((char *)s->script[i].r.raw);
    }
    free(s->script);
    for (i = 0; i < s->nreqs; i++) {
        free(s->reqs[i].method);
        free(s->reqs[i].target);
        free(s->reqs[i].head);
        free(s->reqs[i].body);
    }
    free(s->reqs);
    for (i = 0; i < s->nstanding; i++) {
        free(s->standing[i].method);
        free(s->standing[i].target);
        free((char *)s->standing[i].r.body);
    }
    pthread_mutex_destroy(&s->mu);
    SSL_CTX_free(s->tls);
    free(s);
}

void dt_server_push(dt_server_t *s, const dt_response_t *r)
{
    script_t *sc;

    pthread_mutex_lock(&s->mu);
    if (s->nscript == s->capscript) {
        s->capscript = s->capscript ? s->capscript * 2 : 16;
        s->script =
            realloc(s->script, sizeof(*s->script) * (size_t)s->capscript);
        if (!s->script) {
            abort();
        }
    }
    sc = &s->script[s->nscript++];
    sc->r = *r;
    sc->r.headers = xstrdup0(r->headers);
    if (r->body) {
        size_t n = r->body_len ? r->body_len : strlen(r->body);
        sc->r.body = xstrndup(r->body, n);
        sc->r.body_len = n;
    }
    sc->r.raw = xstrdup0(r->raw);
    pthread_mutex_unlock(&s->mu);
}

void dt_server_json(dt_server_t *s, int status, const char *body)
{
    dt_response_t r;

    memset(&r, 0, sizeof(r));
    r.status = status;
    r.body = body;
    dt_server_push(s, &r);
}

const char *dt_server_url(dt_server_t *s, apr_pool_t *p)
{
    return apr_psprintf(p, "%s://127.0.0.1:%d", s->tls ? "https" : "http",
                        s->port);
}

int dt_server_port(dt_server_t *s)
{
    return s->port;
}

int dt_server_count(dt_server_t *s)
{
    int n;

    pthread_mutex_lock(&s->mu);
    n = s->nreqs;
    pthread_mutex_unlock(&s->mu);
    return n;
}

dt_request_t *dt_server_request(dt_server_t *s, apr_pool_t *p, int i)
{
    dt_request_t *r = apr_pcalloc(p, sizeof(*r));

    pthread_mutex_lock(&s->mu);
    assert_true(i < s->nreqs);
    r->method = apr_pstrdup(p, s->reqs[i].method);
    r->target = apr_pstrdup(p, s->reqs[i].target);
    r->head = apr_pstrdup(p, s->reqs[i].head);
    r->body = apr_pstrmemdup(p, s->reqs[i].body, s->reqs[i].body_len);
    r->body_len = s->reqs[i].body_len;
    pthread_mutex_unlock(&s->mu);
    return r;
}

const char *dt_request_header(apr_pool_t *p, const dt_request_t *r,
                              const char *name)
{
    size_t nl = strlen(name);
    const char *l = r->head;

    while (l && *l) {
        const char *e = strstr(l, "\r\n");
        if (!e) {
            break;
        }
        if ((size_t)(e - l) > nl && !strncasecmp(l, name, nl) && l[nl] == ':') {
            const char *v = l + nl + 1;
            while (*v == ' ') {
                v++;
            }
            return apr_pstrmemdup(p, v, (size_t)(e - v));
        }
        l = e + 2;
    }
    return NULL;
}

void dt_server_standing(dt_server_t *s, const char *method, const char *target,
                        int status, const char *body)
{
    int i;

    pthread_mutex_lock(&s->mu);
    for (i = 0; i < s->nstanding; i++) {
        if (!strcmp(s->standing[i].method, method)
            && !strcmp(s->standing[i].target, target)) {
            break;
        }
    }
    if (i == s->nstanding) {
        assert_true(s->nstanding
                    < (int)(sizeof(s->standing) / sizeof(s->standing[0])));
        s->nstanding++;
        s->standing[i].method = xstrdup0(method);
        s->standing[i].target = xstrdup0(target);
    }
    else {
        free((char *)s->standing[i].r.body);
    }
    memset(&s->standing[i].r, 0, sizeof(s->standing[i].r));
    s->standing[i].r.status = status;
    s->standing[i].r.body = xstrdup0(body);
    s->standing[i].hits = 0;
    pthread_mutex_unlock(&s->mu);
}

int dt_server_standing_hits(dt_server_t *s, const char *method,
                            const char *target)
{
    int i, n = 0;

    pthread_mutex_lock(&s->mu);
    for (i = 0; i < s->nstanding; i++) {
        if (!strcmp(s->standing[i].method, method)
            && !strcmp(s->standing[i].target, target)) {
            n = s->standing[i].hits;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}
