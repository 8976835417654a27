/* test_status.c - GET /datos-status's pure parts: the fetch history kept
 * in the metrics block (also across forked processes), what needs
 * attention, the HTML and JSON forms (escaped, valid, bounded however
 * much the configuration and history hold) and the loader's textfile. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "dt_support.h"
#include "datos_metrics.h"
#include "datos_status.h"

#define SEC(s) apr_time_from_sec(s)
#define NOW    (SEC(1800000000))

static datos_metrics_t *map_block(void)
{
    void *mem = mmap(NULL, datos_metrics_size(), PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);

    assert_true(mem != MAP_FAILED);
    return datos_metrics_init(mem);
}

static void unmap_block(datos_metrics_t *m)
{
    munmap(m, datos_metrics_size());
}

static datos_fetch_rec_t rec(int i, const char *outcome)
{
    datos_fetch_rec_t f;

    memset(&f, 0, sizeof(f));
    f.started = NOW - SEC(100 - i);
    f.duration = 1000 * i;
    f.pages = i;
    f.rows = i;
    f.bytes_processed = 1000 * (apr_int64_t)i;
    f.bytes_billed = 10485760;
    f.outcome = outcome;
    return f;
}

/* ------------------------------------------------------------ the ring */

static void fetch_ring_keeps_the_last_20_newest_first(void **state)
{
    datos_metrics_t *m = map_block();
    datos_fetch_rec_t out[DATOS_METRICS_FETCHES], f;
    int t = datos_metrics_table(m, "d.t"), i, n;

    (void)state;
    assert_int_equal(datos_metrics_fetches(m, t, out), 0);
    for (i = 1; i <= 25; i++) {
        f = rec(i, i == 25 ? "timeout" : "ok");
        datos_metrics_fetch_log(m, t, &f);
    }
    n = datos_metrics_fetches(m, t, out);
    assert_int_equal(n, DATOS_METRICS_FETCHES);
    for (i = 0; i < n; i++) {
        assert_int_equal(out[i].pages, 25 - i);
        assert_int_equal(out[i].rows, 25 - i);
        assert_int_equal(out[i].bytes_processed, 1000 * (25 - i));
        assert_int_equal(out[i].started, NOW - SEC(100 - (25 - i)));
        assert_string_equal(out[i].outcome, i ? "ok" : "timeout");
    }
    /* Another table's history is its own; a table out of range none. */
    assert_int_equal(
        datos_metrics_fetches(m, datos_metrics_table(m, "d.u"), out), 0);
    f = rec(1, "no such outcome");
    datos_metrics_fetch_log(m, DATOS_METRICS_TABLES, &f);
    datos_metrics_fetch_log(m, -1, &f);
    datos_metrics_fetch_log(NULL, t, &f);
    assert_int_equal(datos_metrics_fetches(m, -1, out), 0);
    datos_metrics_fetch_log(m, datos_metrics_table(m, "d.u"), &f);
    assert_int_equal(
        datos_metrics_fetches(m, datos_metrics_table(m, "d.u"), out), 1);
    assert_string_equal(out[0].outcome, "error");
    unmap_block(m);
}

/* Processes record at once into one table: every record read back is
 * whole (its fields from one writer), and the newest 20 are there. */
static void fetch_ring_records_whole_across_processes(void **state)
{
    datos_metrics_t *m = map_block();
    datos_fetch_rec_t out[DATOS_METRICS_FETCHES];
    int t = datos_metrics_table(m, "d.t"), k, i, n, status;
    pid_t pid[4];

    (void)state;
    for (k = 0; k < 4; k++) {
        pid[k] = fork();
        assert_true(pid[k] >= 0);
        if (pid[k] == 0) {
            for (i = 0; i < 500; i++) {
                datos_fetch_rec_t f = rec(k * 1000 + i, "ok");
                datos_metrics_fetch_log(m, t, &f);
                if (i % 7 == 0) {
                    n = datos_metrics_fetches(m, t, out);
                    while (n-- > 0) {
                        if (out[n].rows != out[n].pages
                            || out[n].bytes_processed != 1000 * out[n].rows) {
                            _exit(1);
                        }
                    }
                }
            }
            _exit(0);
        }
    }
    for (k = 0; k < 4; k++) {
        assert_int_equal(waitpid(pid[k], &status, 0), pid[k]);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    n = datos_metrics_fetches(m, t, out);
    assert_int_equal(n, DATOS_METRICS_FETCHES);
    for (i = 0; i < n; i++) {
        assert_int_equal(out[i].rows, out[i].pages);
        assert_int_equal(out[i].bytes_processed, 1000 * out[i].rows);
    }
    unmap_block(m);
}

static void counts_read_the_block(void **state)
{
    datos_metrics_t *m = map_block();
    datos_metrics_counts_t c;

    (void)state;
    datos_metrics_quick(m);
    datos_metrics_quick(m);
    datos_metrics_lookup(m, DATOS_TIER_L2, DATOS_LOOKUP_STALE);
    datos_metrics_refused(m, DATOS_TIER_STATE, DATOS_REFUSED_FUTURE);
    datos_metrics_ingest(m, 202, 10);
    datos_metrics_ingest(m, 413, 0);
    datos_metrics_ingest(m, 42, 0);
    datos_metrics_backend(m, "ok", 1, 100);
    datos_metrics_backend(m, "timeout", 1, 0);
    datos_metrics_wait_enter(m, 0);
    datos_metrics_counts(m, &c);
    assert_int_equal(c.quick, 2);
    assert_int_equal(c.lookups[DATOS_TIER_L2][DATOS_LOOKUP_STALE], 1);
    assert_int_equal(c.refused[DATOS_TIER_STATE][DATOS_REFUSED_FUTURE], 1);
    assert_int_equal(c.ingest[202], 1);
    assert_int_equal(c.ingest[413], 1);
    assert_int_equal(c.ingest[0], 1);
    assert_int_equal(c.backend_ok, 1);
    assert_int_equal(c.backend_failed, 1);
    assert_int_equal(c.backend_bytes, 100);
    assert_int_equal(c.wait_rejected, 1);
    /* The page's counter is not a series of /metrics. */
    assert_null(
        strstr(datos_metrics_render(DT_POOL(state), m, NOW, NULL), "quick"));
    unmap_block(m);
    datos_metrics_counts(NULL, &c);
    assert_int_equal(c.quick, 0);
}

/* ------------------------------------------------------- a status */

static datos_fetch_rec_t fetches[DATOS_METRICS_FETCHES];

/* One healthy table, fetched 10 s ago, with the loader run a minute ago. */
static void healthy(apr_pool_t *p, datos_status_t *s, datos_status_table_t *t)
{
    static const char *hosts[] = {"api.example:443"};
    int i;

    memset(s, 0, sizeof(*s));
    memset(t, 0, sizeof(*t));
    s->now = NOW;
    s->server = "api.example";
    s->tables = t;
    s->ntables = 1;
    s->tier = "shmcb";
    s->max_waiting = 16;
    t->table = "latam_dataset.datos";
    t->hosts = hosts;
    t->nhosts = 1;
    t->cached = 1;
    t->fresh_for = SEC(30);
    t->stale_while_revalidate = SEC(60);
    t->stale_if_error = SEC(3600);
    t->have = 1;
    t->fetched = t->host_fetched = NOW - SEC(10);
    t->rows = 10;
    t->bytes = 2048;
    t->etag = "\"0123456789abcdef0123456789abcdef\"";
    for (i = 0; i < 3; i++) {
        fetches[i] = rec(90 - i, "ok");
    }
    t->fetches = fetches;
    t->nfetches = 3;
    datos_status_loader_init(&s->loader);
    s->loader.file = "/var/lib/datos-loader/datos_loader.prom";
    s->loader.interval = SEC(300);
    s->loader.last_run = s->loader.last_success = NOW - SEC(60);
    (void)p;
}

static const char *whats(apr_pool_t *p, const datos_status_t *s)
{
    apr_array_header_t *a = datos_status_attention(p, s);
    const char *out = "";
    int i;

    for (i = 0; i < a->nelts; i++) {
        const datos_status_attention_t *x =
            &APR_ARRAY_IDX(a, i, datos_status_attention_t);
        out = apr_pstrcat(p, out, i ? " " : "", x->what, NULL);
    }
    return out;
}

static const char *first_message(apr_pool_t *p, const datos_status_t *s)
{
    apr_array_header_t *a = datos_status_attention(p, s);

    assert_true(a->nelts > 0);
    return APR_ARRAY_IDX(a, 0, datos_status_attention_t).message;
}

static void attention_says_what_needs_it(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_status_table_t t;
    datos_status_t s;

    healthy(p, &s, &t);
    assert_string_equal(whats(p, &s), "");

    /* No answer at all, and BigQuery backing off. */
    t.have = 0;
    t.host_fetched = 0;
    t.next_attempt = NOW + SEC(5);
    t.last_failure = "backend_error";
    assert_string_equal(whats(p, &s), "no_answer bigquery_failing");
    assert_non_null(strstr(first_message(p, &s), "latam_dataset.datos"));

    /* An answer past fresh + stale-if-error: expired, even held. */
    healthy(p, &s, &t);
    t.fetched = t.host_fetched = NOW - SEC(30 + 3600);
    assert_string_equal(whats(p, &s), "answer_expired");
    assert_non_null(strstr(first_message(p, &s), "60 min 30 s old"));
    t.fetched = t.host_fetched = NOW - SEC(30 + 3600) + 1;
    assert_string_equal(whats(p, &s), "");
    /* The host's newest counts, whatever this process holds. */
    t.fetched = NOW - SEC(99999);
    t.host_fetched = NOW - SEC(5);
    assert_string_equal(whats(p, &s), "");

    /* The last fetch failed, no back-off running (it ended). */
    healthy(p, &s, &t);
    fetches[0].outcome = "timeout";
    t.next_attempt = NOW - 1;
    assert_string_equal(whats(p, &s), "bigquery_failing");
    assert_non_null(strstr(first_message(p, &s), "(timeout)"));
    fetches[0].outcome = "ok";

    /* Uncached: never "no answer". */
    healthy(p, &s, &t);
    t.cached = 0;
    t.have = 0;
    t.host_fetched = 0;
    assert_string_equal(whats(p, &s), "");

    /* Refused entries, of either tier. */
    healthy(p, &s, &t);
    s.counts.refused[DATOS_TIER_L2][DATOS_REFUSED_SEAL] = 3;
    assert_string_equal(whats(p, &s), "tier_refusing");
    assert_non_null(strstr(first_message(p, &s), "3 from the shared tier"));
    s.counts.refused[DATOS_TIER_L2][DATOS_REFUSED_SEAL] = 0;
    s.counts.refused[DATOS_TIER_STATE][DATOS_REFUSED_FUTURE] = 1;
    assert_string_equal(whats(p, &s), "tier_refusing");
}

static void attention_watches_the_loader(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_status_table_t t;
    datos_status_t s;

    healthy(p, &s, &t);
    s.loader.last_run = NOW - 3 * SEC(300);
    assert_string_equal(whats(p, &s), "");
    s.loader.last_run = NOW - 3 * SEC(300) - 1;
    assert_string_equal(whats(p, &s), "loader_late");
    assert_non_null(strstr(first_message(p, &s), "3 intervals of 5 min 0 s"));

    s.loader.last_run = 0;
    assert_string_equal(whats(p, &s), "loader_unreadable");
    s.loader.error = "No such file or directory";
    assert_string_equal(whats(p, &s), "loader_unreadable");
    assert_non_null(strstr(first_message(p, &s), "No such file"));

    /* Near the quota: 80 % of it, the default 1,500 or the exported one. */
    healthy(p, &s, &t);
    s.loader.jobs_today = 1199;
    assert_string_equal(whats(p, &s), "");
    s.loader.jobs_today = 1200;
    assert_string_equal(whats(p, &s), "quota_near");
    assert_non_null(strstr(first_message(p, &s), "1200 of the 1500"));
    s.loader.jobs_quota = 2000;
    assert_string_equal(whats(p, &s), "");

    /* Not configured: nothing about the loader, whatever it holds. */
    s.loader.file = NULL;
    s.loader.error = "x";
    s.loader.jobs_today = 5000;
    assert_string_equal(whats(p, &s), "");
}

/* ------------------------------------------------------------- forms */

static json_t *parse_json(const char *text, apr_size_t len)
{
    json_error_t e;
    json_t *j = json_loadb(text, len, 0, &e);

    if (!j) {
        fail_msg("not JSON: %s at %d", e.text, e.position);
    }
    return j;
}

static void forms_show_the_same_data(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_status_table_t t;
    datos_status_t s;
    apr_size_t hlen, jlen;
    const char *html, *js;
    json_t *j, *tab, *f;

    healthy(p, &s, &t);
    t.next_attempt = NOW + SEC(2);
    t.last_failure = "quota";
    fetches[0].bytes_processed = -1;
    html = datos_status_html(p, &s, &hlen);
    js = datos_status_json(p, &s, &jlen);
    assert_int_equal(hlen, strlen(html));
    assert_int_equal(jlen, strlen(js));

    assert_true(!strncmp(html, "<!DOCTYPE html>", 15));
    assert_null(strstr(html, "<script"));
    assert_null(strstr(html, "http://"));
    assert_null(strstr(html, "https://"));
    assert_non_null(strstr(html, "<li class=\"attention\" "
                                 "data-what=\"bigquery_failing\">"));
    assert_true(strstr(html, "id=\"attention\"")
                < strstr(html, "id=\"table-0\""));
    assert_non_null(strstr(html, "<td>10.0 s</td>")); /* the age */
    assert_non_null(strstr(html, "2048 (2.0 KiB)"));
    assert_non_null(
        strstr(html, "&quot;0123456789abcdef0123456789abcdef&quot;"));
    assert_non_null(strstr(html, "<td class=\"n\">&ndash;</td>"));

    j = parse_json(js, jlen);
    assert_string_equal(json_string_value(json_object_get(j, "server")),
                        "api.example");
    assert_string_equal(json_string_value(json_object_get(j, "now")),
                        "2027-01-15T08:00:00+00:00");
    assert_int_equal(json_array_size(json_object_get(j, "attention")), 1);
    tab = json_array_get(json_object_get(j, "tables"), 0);
    assert_string_equal(json_string_value(json_object_get(tab, "state")),
                        "fresh");
    assert_true(json_number_value(json_object_get(tab, "age")) == 10);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(tab, "backoff"), "last_failure")),
                        "quota");
    assert_int_equal(json_array_size(json_object_get(tab, "fetches")), 3);
    f = json_array_get(json_object_get(tab, "fetches"), 0);
    assert_true(json_is_null(json_object_get(f, "bytes_processed")));
    assert_int_equal(json_integer_value(json_object_get(f, "bytes_billed")),
                     10485760);
    assert_true(json_number_value(json_object_get(f, "duration")) == 0.09);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(j, "loader"), "outcome")),
                        "succeeded");
    assert_true(
        json_is_null(json_object_get(json_object_get(j, "loader"), "backlog")));
    json_decref(j);
    fetches[0].bytes_processed = 1000;

    /* Without a loader file: null, and the page says why. */
    s.loader.file = NULL;
    js = datos_status_json(p, &s, &jlen);
    j = parse_json(js, jlen);
    assert_true(json_is_null(json_object_get(j, "loader")));
    json_decref(j);
    assert_non_null(strstr(datos_status_html(p, &s, NULL),
                           "DatosLoaderMetricsFile is not set"));
}

static void names_are_escaped_and_cleaned(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    static const char *hosts[] = {"<script>alert(1)</script>:80",
                                  "a\"b'c&d:443", "bad\xff\x01utf8:80"};
    datos_status_table_t t;
    datos_status_t s;
    const char *html, *js;
    apr_size_t jlen;
    json_t *j, *h;

    healthy(p, &s, &t);
    t.table = "d.t<img src=x onerror=alert(1)>";
    t.hosts = hosts;
    t.nhosts = 3;
    s.server = "\"><script>";
    s.loader.error = "</td><script>x</script>";
    html = datos_status_html(p, &s, NULL);
    assert_null(strstr(html, "<script"));
    assert_null(strstr(html, "<img"));
    assert_non_null(strstr(html, "&lt;script&gt;alert(1)&lt;/script&gt;:80"));
    assert_non_null(strstr(html, "a&quot;b&#39;c&amp;d:443"));
    assert_non_null(strstr(html, "bad??utf8:80"));

    js = datos_status_json(p, &s, &jlen);
    assert_null(strstr(js, "<"));
    j = parse_json(js, jlen);
    h = json_object_get(json_array_get(json_object_get(j, "tables"), 0),
                        "hosts");
    assert_string_equal(json_string_value(json_array_get(h, 0)),
                        "<script>alert(1)</script>:80");
    assert_string_equal(json_string_value(json_array_get(h, 2)),
                        "bad??utf8:80");
    json_decref(j);
}

/* The worst a configuration and a history can hold: every table slot
 * used and more, names at their longest and all needing escapes, every
 * fetch kept, every attention item. Both forms stay under the bound and
 * the JSON stays valid. */
static void the_page_is_bounded(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_status_table_t *t;
    datos_status_t s;
    const char **hosts;
    char *name, *mb;
    apr_size_t hlen, jlen, n = 5000;
    datos_fetch_rec_t many[DATOS_METRICS_FETCHES];
    const char *js;
    json_t *j;
    int i;

    name = apr_palloc(p, n + 1);
    memset(name, '&', n);
    name[n] = '\0';
    /* A multi-byte name cut on a character boundary. */
    mb = apr_palloc(p, 3 * 1000 + 1);
    for (i = 0; i < 1000; i++) {
        memcpy(mb + 3 * i, "\xe2\x98\x83", 3); /* U+2603 */
    }
    mb[3000] = '\0';
    hosts = apr_palloc(p, sizeof(*hosts) * 100);
    for (i = 0; i < 100; i++) {
        hosts[i] = name;
    }
    for (i = 0; i < DATOS_METRICS_FETCHES; i++) {
        many[i] = rec(i, "insecure_url");
        many[i].bytes_processed = APR_INT64_MAX;
        many[i].duration = APR_INT64_MAX / 2;
    }
    healthy(p, &s, apr_palloc(p, sizeof(*t)));
    t = apr_pcalloc(p, sizeof(*t) * 40);
    for (i = 0; i < 40; i++) {
        t[i].table = i % 2 ? name : mb;
        t[i].hosts = hosts;
        t[i].nhosts = 100;
        t[i].cached = 1;
        t[i].fresh_for = SEC(1);
        t[i].next_attempt = NOW + SEC(7 * 86400);
        t[i].last_failure = "insecure_url";
        t[i].etag = name;
        t[i].fetches = many;
        t[i].nfetches = DATOS_METRICS_FETCHES;
    }
    s.tables = t;
    s.ntables = 40;
    s.server = name;
    s.tier = "memcache";
    s.loader.file = name;
    s.loader.error = name;
    s.loader.jobs_today = 1500;
    /* Counters at their largest a JSON reader takes (int64). */
    s.counts.refused[DATOS_TIER_L2][DATOS_REFUSED_SEAL] = ~0ULL >> 1;
    for (i = 0; i < 600; i++) {
        s.counts.ingest[i] = ~0ULL >> 1;
    }

    datos_status_html(p, &s, &hlen);
    js = datos_status_json(p, &s, &jlen);
    j = parse_json(js, jlen);
    assert_true(hlen < DATOS_STATUS_MAX_BYTES);
    assert_true(jlen < DATOS_STATUS_MAX_BYTES);
    assert_int_equal(json_array_size(json_object_get(j, "tables")),
                     DATOS_STATUS_TABLES_MAX);
    assert_int_equal(json_integer_value(json_object_get(j, "tables_more")), 24);
    assert_int_equal(
        json_array_size(json_object_get(
            json_array_get(json_object_get(j, "tables"), 1), "hosts")),
        DATOS_STATUS_HOSTS_MAX);
    /* 16 tables x (no answer + failing), refused, unreadable, quota. */
    assert_int_equal(json_array_size(json_object_get(j, "attention")), 35);
    /* Cut names: 256 bytes at most, then "...". */
    assert_int_equal(
        strlen(json_string_value(json_object_get(
            json_array_get(json_object_get(j, "tables"), 1), "table"))),
        259);
    assert_int_equal(
        strlen(json_string_value(json_object_get(
            json_array_get(json_object_get(j, "tables"), 0), "table"))),
        255 + 3);
    json_decref(j);
}

/* -------------------------------------------------------- the textfile */

static void loader_textfile_is_read(void **state)
{
    /* As loader_textfile.c writes it, with a line or two it does not. */
    static const char text[] =
        "# HELP datos_loader_last_run_timestamp_seconds When the last run "
        "of datos-loader ended.\n"
        "# TYPE datos_loader_last_run_timestamp_seconds gauge\n"
        "datos_loader_last_run_timestamp_seconds 1800000000.250\n"
        "datos_loader_last_success_timestamp_seconds 1800000000.250\n"
        "datos_loader_run_duration_seconds 1.500\n"
        "datos_loader_rows_loaded_total 120\n"
        "datos_loader_messages_invalid_total{reason=\"not_json\"} 2\n"
        "datos_loader_messages_invalid_total{reason=\"a b\"} 3\n"
        "datos_loader_load_jobs_total{outcome=\"succeeded\"} 4\n"
        "datos_loader_backlog_messages 17\n"
        "datos_loader_load_jobs_today 12\n"
        "garbage without a value\n"
        "datos_loader_rows_loaded_total not-a-number\n"
        "datos_loader_run_duration_seconds -5\n"
        "\n";
    datos_status_loader_t l;

    (void)state;
    datos_status_loader_init(&l);
    datos_status_loader_parse(text, sizeof(text) - 1, &l);
    assert_int_equal(l.last_run, SEC(1800000000) + 250000);
    assert_int_equal(l.last_success, l.last_run);
    assert_int_equal(l.duration, 1500000);
    assert_int_equal(l.rows_loaded, 120);
    assert_int_equal(l.dead_lettered, 5);
    assert_int_equal(l.backlog, 17);
    assert_int_equal(l.jobs_today, 12);
    assert_int_equal(l.jobs_quota, -1);

    /* A failed last run: the success is older. */
    datos_status_loader_init(&l);
    datos_status_loader_parse(
        "datos_loader_last_run_timestamp_seconds 1800000600.000\n"
        "datos_loader_last_success_timestamp_seconds 1800000000.000",
        strlen("datos_loader_last_run_timestamp_seconds 1800000600.000\n"
               "datos_loader_last_success_timestamp_seconds 1800000000.000"),
        &l);
    assert_true(l.last_success < l.last_run);
    assert_int_equal(l.rows_loaded, -1);

    /* Values no loader writes: times past the year 9999 are not times,
     * and sums stop at the largest int64. */
    datos_status_loader_init(&l);
    datos_status_loader_parse(
        "datos_loader_last_run_timestamp_seconds 9e18\n"
        "datos_loader_run_duration_seconds 1e15\n"
        "datos_loader_rows_loaded_total 9e18\n"
        "datos_loader_rows_loaded_total 9e18\n",
        strlen("datos_loader_last_run_timestamp_seconds 9e18\n"
               "datos_loader_run_duration_seconds 1e15\n"
               "datos_loader_rows_loaded_total 9e18\n"
               "datos_loader_rows_loaded_total 9e18\n"),
        &l);
    assert_int_equal(l.last_run, 0);
    assert_int_equal(l.duration, -1);
    assert_int_equal(l.rows_loaded, APR_INT64_MAX);

    /* Nothing readable: everything unknown. */
    datos_status_loader_init(&l);
    datos_status_loader_parse("\x00\xff\n{}", 4, &l);
    assert_int_equal(l.last_run, 0);
    assert_int_equal(l.backlog, -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        DT_TEST(fetch_ring_keeps_the_last_20_newest_first),
        DT_TEST(fetch_ring_records_whole_across_processes),
        DT_TEST(counts_read_the_block),
        DT_TEST(attention_says_what_needs_it),
        DT_TEST(attention_watches_the_loader),
        DT_TEST(forms_show_the_same_data),
        DT_TEST(names_are_escaped_and_cleaned),
        DT_TEST(the_page_is_bounded),
        DT_TEST(loader_textfile_is_read),
    };
    return cmocka_run_group_tests(tests, dt_group_setup, dt_group_teardown);
}
