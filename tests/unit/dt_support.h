/* dt_support.h - shared support for the libdatos unit tests: pools, temp
 * files, fixtures, and a scripted loopback HTTP server that stands in for
 * Google's endpoints. Linked into every test binary. */
#ifndef DT_SUPPORT_H
#define DT_SUPPORT_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_pools.h>
#include <apr_strings.h>

#include "datos_auth.h"

/* cmocka group setup/teardown: apr_initialize / apr_terminate. */
int dt_group_setup(void **state);
int dt_group_teardown(void **state);
/* Per-test: *state is a fresh pool, destroyed afterwards. */
int dt_setup(void **state);
int dt_teardown(void **state);

#define DT_POOL(state) ((apr_pool_t *)*(state))
#define DT_TEST(f)     cmocka_unit_test_setup_teardown(f, dt_setup, dt_teardown)

/* A fresh directory under $DATOS_TEST_TMP (build/test-tmp from make),
 * removed with everything in it when p is destroyed. */
const char *dt_tmpdir(apr_pool_t *p);
/* Writes content to dir/name with the given mode; returns the path. */
const char *dt_write_file(apr_pool_t *p, const char *dir, const char *name,
                          const char *content, apr_size_t len, int mode);
/* Whole file, NUL-terminated; fails the test when unreadable. */
char *dt_read_file(apr_pool_t *p, const char *path, apr_size_t *len);
/* tests/unit/data/<name>, relative to the repository root make runs in. */
const char *dt_data_path(apr_pool_t *p, const char *name);

/* The committed test key (tests/unit/data/test_key.pem). */
const char *dt_test_key_pem(apr_pool_t *p);
/* A service-account key file for the test key, mode 0600, with the given
 * token_uri (NULL: omitted). */
const char *dt_write_key_file(apr_pool_t *p, const char *dir,
                              const char *token_uri);

/* Service-account credentials (the test key) whose token endpoint is
 * server_url's /token, as the test server scripts it; fails the test when
 * they do not load. */
datos_creds_t *dt_server_creds(apr_pool_t *p, const char *server_url,
                               const char *const *scopes);

/* Runs a shell command; returns its exit status (-1 when it did not run). */
int dt_system(apr_pool_t *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ------------------------------------------------- scripted server */

/* How long a hanging answer holds the connection before closing it: far
 * beyond any timeout a test sets, so that only a timeout that did not apply
 * lets it close (the client then sees the connection closed, not APR_TIMEUP). */
#define DT_HANG_MS 15000

typedef struct dt_response_t {
    int status;          /* 0 with raw or close_now */
    const char *headers; /* extra header lines, each ending in \r\n */
    const char *body;    /* NULL: empty */
    apr_size_t body_len; /* 0: strlen(body) */
    int delay_ms;        /* wait before answering */
    int hang;        /* read the request, answer nothing (after raw, if any) */
    int close_now;   /* read the request, close without answering */
    const char *raw; /* send these bytes verbatim instead */
} dt_response_t;

typedef struct dt_request_t {
    char *method;
    char *target; /* path and query */
    char *head;   /* all header lines */
    char *body;
    apr_size_t body_len;
} dt_request_t;

typedef struct dt_server_t dt_server_t;

/* Listens on 127.0.0.1 (ephemeral port) in a thread. Every connection
 * carries one request and gets "Connection: close", so the script order
 * is the request order. Unscripted requests get 500 "unscripted". */
dt_server_t *dt_server_start(void);
/* The same server speaking TLS with the PEM certificate chain and key
 * given; dt_server_url then says https. */
dt_server_t *dt_server_start_tls(const char *cert_file, const char *key_file);
/* Handshakes that did not complete, such as a client refusing the
 * certificate; no request is recorded for them. */
int dt_server_tls_failures(dt_server_t *s);
void dt_server_stop(dt_server_t *s);
void dt_server_push(dt_server_t *s, const dt_response_t *r);
/* Shorthand: a JSON answer with the given status. */
void dt_server_json(dt_server_t *s, int status, const char *body);
const char *dt_server_url(dt_server_t *s,
                          apr_pool_t *p); /* http(s)://127.0.0.1:N */
int dt_server_port(dt_server_t *s);
int dt_server_count(dt_server_t *s);
/* A standing answer for method + target (path and query, exactly): such
 * requests are answered without consuming the script and are not counted
 * by dt_server_count / dt_server_request, so a test can leave calls it
 * does not care about (tables.get) out of its script. Calling it again
 * for the same target replaces the answer and resets the hits. */
void dt_server_standing(dt_server_t *s, const char *method, const char *target,
                        int status, const char *body);
int dt_server_standing_hits(dt_server_t *s, const char *method,
                            const char *target);
/* Copy of request i (0-based) in p. */
dt_request_t *dt_server_request(dt_server_t *s, apr_pool_t *p, int i);
/* Header value (case-insensitive name) or NULL. */
const char *dt_request_header(apr_pool_t *p, const dt_request_t *r,
                              const char *name);

#endif
