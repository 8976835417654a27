/* mod_datos_status.c - GET /datos-status (SetHandler datos-status): the
 * numbers the page shows, collected from what this host already keeps.
 *
 * Everything comes from memory or a local file: the metrics block (the
 * counters and each table's last fetches, shared by every process), each
 * store's host state, the answer this process holds, and the loader's
 * textfile when DatosLoaderMetricsFile names it. The page never asks
 * Google, never looks at the shared tier (a fleet's memcached or redis
 * is network I/O) and never asks the refresher for anything, so opening
 * it changes nothing it reports. Deciding what needs attention and the
 * rendering are libdatos's (datos_status.h), unit-tested without httpd.
 */
#include <string.h>

#include "apr_atomic.h"
#include "apr_file_io.h"
#include "apr_strings.h"

#include "httpd.h"
#include "http_log.h"
#include "http_main.h"
#include "http_protocol.h"

#include "datos_error.h"
#include "datos_log.h"
#include "datos_status.h"
#include "mod_datos_config.h"
#include "mod_datos_runtime.h"
#include "mod_datos_status.h"
#include "mod_datos_tiers.h"

APLOG_USE_MODULE(datos);

#define HTML_TYPE "text/html; charset=utf-8"
/* The textfile is a few kilobytes; more than this is not the loader's. */
#define LOADER_FILE_MAX (256 * 1024)
/* No script, no frame, nothing fetched: the page is one document with its
 * own style. */
#define STATUS_CSP                                                     \
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; " \
    "form-action 'none'; frame-ancestors 'none'"

static const char *host_name(apr_pool_t *p, const server_rec *vs)
{
    apr_port_t port = vs->port;

    const char *name = vs->server_hostname ? vs->server_hostname : "*";

    if (!port && vs->addrs)
        port = vs->addrs->host_port;
    /* The main server listens where Listen says: no port of its own. */
    return port ? apr_psprintf(p, "%s:%u", name, (unsigned)port) : name;
}

/* The process copy of a store, read and let go at once: its fields are
 * copied, nothing of it is kept. */
static void answer_of(apr_pool_t *p, mod_datos_rt_t *rt,
                      datos_status_table_t *t)
{
    mod_datos_store_t *st = rt->store;
    datos_answer_t *a;
    apr_status_t last;

    if (!st)
        return;
    a = mod_datos_tiers_current(st);
    if (a) {
        t->have = 1;
        t->fetched = a->fetched;
        t->rows = a->n;
        t->bytes = a->body_len;
        t->etag = apr_pstrdup(
            p, datos_answer_etag(
                   a, datos_answer_rows(a, rt->conf->limit_default)));
        mod_datos_tiers_release(st, a);
    }
    t->host_fetched = (apr_time_t)apr_atomic_read64(&st->host->fetched);
    t->next_attempt = (apr_time_t)apr_atomic_read64(&st->host->next_attempt);
    last = (apr_status_t)apr_atomic_read64(&st->host->last_status);
    t->last_failure = last != APR_SUCCESS ? datos_status_name(last) : NULL;
}

static void tables_of(request_rec *r, datos_status_t *s)
{
    const apr_array_header_t *rts = mod_datos_runtimes();
    server_rec *vs;
    int i;

    s->ntables = rts ? rts->nelts : 0;
    s->tables =
        apr_pcalloc(r->pool, sizeof(*s->tables) * (apr_size_t)(s->ntables + 1));
    for (i = 0; i < s->ntables && i < DATOS_STATUS_TABLES_MAX; i++) {
        mod_datos_rt_t *rt = APR_ARRAY_IDX(rts, i, mod_datos_rt_t *);
        datos_status_table_t *t = &s->tables[i];

        t->table = rt->conf->table_name;
        t->hosts =
            apr_pcalloc(r->pool, sizeof(const char *) * DATOS_STATUS_HOSTS_MAX);
        for (vs = ap_server_conf; vs; vs = vs->next) {
            if (mod_datos_conf(vs)->rt != rt)
                continue;
            if (t->nhosts < DATOS_STATUS_HOSTS_MAX)
                t->hosts[t->nhosts] = host_name(r->pool, vs);
            t->nhosts++;
        }
        t->cached = rt->store != NULL;
        t->fresh_for = rt->conf->fresh_for;
        t->stale_while_revalidate = rt->conf->stale_while_revalidate;
        t->stale_if_error = rt->conf->stale_if_error;
        answer_of(r->pool, rt, t);
        t->fetches = apr_palloc(r->pool, sizeof(datos_fetch_rec_t)
                                             * DATOS_METRICS_FETCHES);
        t->nfetches = datos_metrics_fetches(mod_datos_global.metrics,
                                            rt->metrics_table, t->fetches);
    }
}

/* The loader's textfile, whole; a file that cannot be read is reported
 * on the page (the loader may simply not have run yet), not logged. */
static void loader_of(request_rec *r, const mod_datos_conf_t *conf,
                      datos_status_loader_t *l)
{
    apr_file_t *f = NULL;
    apr_finfo_t fi;
    apr_size_t got = 0;
    apr_status_t rv;
    char *buf, why[120];

    datos_status_loader_init(l);
    l->interval = conf->loader_interval;
    if (!conf->loader_metrics_file || !*conf->loader_metrics_file)
        return;
    l->file = conf->loader_metrics_file;
    rv = apr_file_open(&f, l->file, APR_FOPEN_READ, 0, r->pool);
    if (rv == APR_SUCCESS)
        rv = apr_file_info_get(&fi, APR_FINFO_SIZE, f);
    if (rv == APR_SUCCESS && fi.size > LOADER_FILE_MAX) {
        l->error = "larger than a loader's metrics file";
        goto leave;
    }
    if (rv == APR_SUCCESS) {
        buf = apr_palloc(r->pool, (apr_size_t)fi.size + 1);
        rv = apr_file_read_full(f, buf, (apr_size_t)fi.size, &got);
        if (rv == APR_EOF)
            rv = APR_SUCCESS;
        buf[got] = '\0';
    }
    if (rv != APR_SUCCESS) {
        l->error = apr_pstrdup(r->pool, apr_strerror(rv, why, sizeof(why)));
        goto leave;
    }
    datos_status_loader_parse(buf, got, l);
leave:
    if (f)
        apr_file_close(f);
}

/* Whether the query holds a key "json" (?json, ?json=1, ?a=b&json).
 * Keys are compared as sent: a page for people and scripts has no need of
 * the form encoding's other spellings. */
static int wants_json(const request_rec *r)
{
    const char *a = r->args;

    while (a && *a) {
        apr_size_t n = strcspn(a, "&");

        if ((n == 4 || (n > 4 && a[4] == '=')) && !strncmp(a, "json", 4))
            return 1;
        a += n;
        if (*a)
            a++;
    }
    return 0;
}

int mod_datos_status(request_rec *r)
{
    const mod_datos_conf_t *conf = mod_datos_conf(r->server);
    const mod_datos_global_t *g = &mod_datos_global;
    datos_status_t s;
    apr_size_t len = 0;
    const char *body;
    /* Unknown parameters are ignored: the page has nothing to refuse. */
    int json = wants_json(r);

    memset(&s, 0, sizeof(s));
    s.now = apr_time_now();
    s.server = r->server->server_hostname;
    datos_metrics_counts(g->metrics, &s.counts);
    s.tier = g->cache ? g->provider_name : NULL;
    s.fleet = g->fleet;
    s.ingest = conf->ingest > 0;
    s.max_waiting = g->max_waiting;
    tables_of(r, &s);
    loader_of(r, conf, &s.loader);

    body = json ? datos_status_json(r->pool, &s, &len)
                : datos_status_html(r->pool, &s, &len);
    apr_table_setn(r->headers_out, "Content-Security-Policy", STATUS_CSP);
    apr_table_setn(r->headers_out, "X-Content-Type-Options", "nosniff");
    return mod_datos_reply(r, 0, json ? MOD_DATOS_JSON_TYPE : HTML_TYPE, body,
                           len);
}
