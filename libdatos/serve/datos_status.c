/* datos_status.c - the status page's attention list, its HTML and JSON
 * forms, and the loader's textfile read (datos_status.h).
 *
 * Both forms come from the same datos_status_t and the same attention
 * list, so a script reads what a person sees. Strings from the
 * configuration or a file (table and host names, the loader's path, an
 * error) go through one cleaner first: valid UTF-8 with no control
 * characters, at most DATOS_STATUS_TEXT_MAX bytes. Then each form escapes
 * them for itself. With every list bounded too, the largest page is a
 * sum of bounded parts, well under DATOS_STATUS_MAX_BYTES.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_strings.h>

#include "datos_status.h"
#include "datos_text.h"
#include "datos_time.h"
#include "datos_utf8.h"

#define US_PER_SEC APR_INT64_C(1000000)

/* -------------------------------------------------------------- text */

/* s as valid UTF-8 without control characters (each bad byte a '?'), cut
 * on a character boundary to DATOS_STATUS_TEXT_MAX bytes ("..." marks a
 * cut). NULL stays NULL. */
static const char *clean(apr_pool_t *p, const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    apr_size_t n, i = 0, k = 0;
    char *out;

    if (!s) {
        return NULL;
    }
    n = strlen(s);
    out = apr_palloc(p, DATOS_STATUS_TEXT_MAX + 4);
    while (i < n) {
        apr_size_t seq = datos_utf8_seq(u + i, n - i);

        if (k + (seq ? seq : 1) > DATOS_STATUS_TEXT_MAX) {
            memcpy(out + k, "...", 3);
            k += 3;
            break;
        }
        if (seq == 0 || (seq == 1 && (u[i] < 0x20 || u[i] == 0x7f))) {
            out[k++] = '?';
            i++;
            continue;
        }
        memcpy(out + k, s + i, seq);
        k += seq;
        i += seq;
    }
    out[k] = '\0';
    return out;
}

static const char *html_escape(char c)
{
    return c == '&'    ? "&amp;"
           : c == '<'  ? "&lt;"
           : c == '>'  ? "&gt;"
           : c == '"'  ? "&quot;"
           : c == '\'' ? "&#39;"
                       : NULL;
}

static void html_text(datos_text_t *o, const char *s)
{
    datos_text_escaped(o, s, html_escape);
}

/* A JSON string of text already cleaned (no control characters); NULL is
 * null. '<' is escaped too, so the document can never be read as markup. */
static const char *json_escape(char c)
{
    return c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '<' ? "\\u003c" : NULL;
}

static void json_str(datos_text_t *o, const char *s)
{
    if (!s) {
        datos_text_str(o, "null");
        return;
    }
    datos_text_str(o, "\"");
    datos_text_escaped(o, s, json_escape);
    datos_text_str(o, "\"");
}

/* ----------------------------------------------------------- numbers */

/* Microseconds as exact decimal seconds: 1500000 -> "1.5". */
static const char *seconds(char buf[32], apr_int64_t us)
{
    unsigned long long u =
        us < 0 ? 0ULL - (unsigned long long)us : (unsigned long long)us;
    unsigned long long frac = u % US_PER_SEC;
    int n = snprintf(buf, 32, "%s%llu", us < 0 ? "-" : "", u / US_PER_SEC);

    if (frac) {
        n += snprintf(buf + n, (apr_size_t)(32 - n), ".%06llu", frac);
        while (buf[n - 1] == '0') {
            buf[--n] = '\0';
        }
    }
    return buf;
}

/* A time as RFC 3339, whole seconds for a person (exact: json). */
static const char *when(char buf[DATOS_TS_BUFSIZE], apr_time_t t, int exact)
{
    if (!exact) {
        t -= t % US_PER_SEC;
    }
    if (!datos_ts_format(t, buf)) {
        strcpy(buf, "?");
    }
    return buf;
}

/* A duration for a person: "850 ms", "12.5 s", "4 min 10 s", "3 h 5 min",
 * "2 d 4 h". */
static const char *span(char buf[48], apr_interval_time_t us)
{
    apr_int64_t s;

    if (us < 0) {
        us = 0;
    }
    s = us / US_PER_SEC;
    if (us < US_PER_SEC) {
        snprintf(buf, 48, "%d ms", (int)(us / 1000));
    }
    else if (s < 120) {
        snprintf(buf, 48, "%.1f s", (double)us / US_PER_SEC);
    }
    else if (s < 7200) {
        snprintf(buf, 48, "%d min %d s", (int)(s / 60), (int)(s % 60));
    }
    else if (s < 2 * 86400) {
        snprintf(buf, 48, "%d h %d min", (int)(s / 3600), (int)(s % 3600 / 60));
    }
    else {
        snprintf(buf, 48, "%" APR_INT64_T_FMT " d %d h", s / 86400,
                 (int)(s % 86400 / 3600));
    }
    return buf;
}

/* Bytes for a person: "512 B", "10.0 MiB". */
static const char *size(char buf[48], apr_int64_t n)
{
    static const char *const unit[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)n;
    int u = -1;

    if (n < 1024) {
        snprintf(buf, 48, "%" APR_INT64_T_FMT " B", n);
        return buf;
    }
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    snprintf(buf, 48, "%.1f %s", v, unit[u]);
    return buf;
}

static apr_interval_time_t since(const datos_status_t *s, apr_time_t t)
{
    return s->now > t ? s->now - t : 0;
}

/* The newest answer the host has for the table; 0: none. */
static apr_time_t newest(const datos_status_table_t *t)
{
    apr_time_t f = t->have ? t->fetched : 0;

    return t->host_fetched > f ? t->host_fetched : f;
}

/* How an answer of this age is served, by the table's windows. */
static const char *answer_state(const datos_status_table_t *t,
                                apr_interval_time_t age)
{
    if (age < t->fresh_for) {
        return "fresh";
    }
    if (age < t->fresh_for + t->stale_while_revalidate) {
        return "stale";
    }
    if (age < t->fresh_for + t->stale_if_error) {
        return "stale_if_error";
    }
    return "expired";
}

static const char *state_words(const char *state)
{
    if (!strcmp(state, "fresh")) {
        return "fresh: served as it is";
    }
    if (!strcmp(state, "stale")) {
        return "stale: served while a refresh runs";
    }
    if (!strcmp(state, "stale_if_error")) {
        return "stale: served only while BigQuery fails";
    }
    return "expired: past its stale-if-error window, never served";
}

static int shown_tables(const datos_status_t *s)
{
    return s->ntables < DATOS_STATUS_TABLES_MAX ? s->ntables
                                                : DATOS_STATUS_TABLES_MAX;
}

/* --------------------------------------------------------- attention */

static void attend(apr_array_header_t *a, const char *what, const char *table,
                   const char *message)
{
    datos_status_attention_t *x = &APR_ARRAY_PUSH(a, datos_status_attention_t);

    x->what = what;
    x->table = table;
    x->message = message;
}

static void attend_table(apr_pool_t *p, apr_array_header_t *a,
                         const datos_status_t *s, const datos_status_table_t *t)
{
    const char *name = clean(p, t->table);
    apr_time_t f = newest(t);
    char b1[48], b2[48], b3[48], ts[DATOS_TS_BUFSIZE];

    if (t->cached && !f) {
        attend(a, "no_answer", name,
               apr_psprintf(p,
                            "No answer yet for %s: /datos answers 503 until "
                            "a BigQuery fetch succeeds.",
                            name));
    }
    else if (t->cached && since(s, f) >= t->fresh_for + t->stale_if_error) {
        attend(a, "answer_expired", name,
               apr_psprintf(p,
                            "The answer for %s is %s old, older than its "
                            "stale-if-error window (fresh for %s, then %s "
                            "while BigQuery fails): /datos answers errors "
                            "until a fetch succeeds.",
                            name, span(b1, since(s, f)), span(b2, t->fresh_for),
                            span(b3, t->stale_if_error)));
    }
    if (t->next_attempt > s->now) {
        attend(a, "bigquery_failing", name,
               apr_psprintf(p,
                            "BigQuery is failing for %s (%s); no query is "
                            "made before %s (in %s).",
                            name, t->last_failure ? t->last_failure : "error",
                            when(ts, t->next_attempt, 0),
                            span(b1, t->next_attempt - s->now)));
    }
    else if (t->nfetches > 0 && strcmp(t->fetches[0].outcome, "ok")) {
        attend(a, "bigquery_failing", name,
               apr_psprintf(p,
                            "BigQuery failed the last fetch for %s (%s), "
                            "%s ago.",
                            name, t->fetches[0].outcome,
                            span(b1, since(s, t->fetches[0].started))));
    }
}

apr_array_header_t *datos_status_attention(apr_pool_t *p,
                                           const datos_status_t *s)
{
    apr_array_header_t *a =
        apr_array_make(p, 4, sizeof(datos_status_attention_t));
    const datos_status_loader_t *l = &s->loader;
    const datos_metrics_counts_t *c = &s->counts;
    unsigned long long shared, state;
    char b1[48], b2[48];
    int i;

    for (i = 0; i < shown_tables(s); i++) {
        attend_table(p, a, s, &s->tables[i]);
    }
    shared = c->refused[DATOS_TIER_L2][DATOS_REFUSED_SEAL]
             + c->refused[DATOS_TIER_L2][DATOS_REFUSED_FUTURE];
    state = c->refused[DATOS_TIER_STATE][DATOS_REFUSED_SEAL]
            + c->refused[DATOS_TIER_STATE][DATOS_REFUSED_FUTURE];
    if (shared || state) {
        attend(a, "tier_refusing", NULL,
               apr_psprintf(p,
                            "Cache entries were refused as untrusted since "
                            "httpd started: %" APR_UINT64_T_FMT
                            " from the shared tier, %" APR_UINT64_T_FMT " "
                            "from the state files (a seal that does not "
                            "match, or a fetch time in the future).",
                            (apr_uint64_t)shared, (apr_uint64_t)state));
    }
    if (l->file) {
        if (l->error) {
            attend(a, "loader_unreadable", NULL,
                   apr_psprintf(p,
                                "The loader's metrics file %s cannot be read "
                                "(%s): has datos-loader run on this host?",
                                clean(p, l->file), clean(p, l->error)));
        }
        else if (!l->last_run) {
            attend(a, "loader_unreadable", NULL,
                   apr_psprintf(p,
                                "The loader's metrics file %s does not say "
                                "when datos-loader last ran.",
                                clean(p, l->file)));
        }
        else if (l->interval > 0 && since(s, l->last_run) > 3 * l->interval) {
            attend(a, "loader_late", NULL,
                   apr_psprintf(p,
                                "datos-loader last ran %s ago, more than 3 "
                                "intervals of %s.",
                                span(b1, since(s, l->last_run)),
                                span(b2, l->interval)));
        }
        if (l->jobs_today >= 0) {
            apr_int64_t quota =
                l->jobs_quota > 0 ? l->jobs_quota : DATOS_STATUS_LOAD_QUOTA;

            if (l->jobs_today * 100 >= quota * DATOS_STATUS_QUOTA_NEAR_PCT) {
                attend(a, "quota_near", NULL,
                       apr_psprintf(p,
                                    "datos-loader has used %" APR_INT64_T_FMT
                                    " of the %" APR_INT64_T_FMT
                                    " load jobs BigQuery allows a table a "
                                    "day.",
                                    l->jobs_today, quota));
            }
        }
    }
    return a;
}

/* -------------------------------------------------------------- HTML */

static const char *const style =
    "body{font:15px/1.4 sans-serif;margin:1.5em;color:#222}"
    "h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.5em}"
    "table{border-collapse:collapse;margin:.5em 0}"
    "th,td{border:1px solid #ccc;padding:.2em .6em;text-align:left;"
    "vertical-align:top}th{background:#f2f2f2}"
    "td.n{text-align:right}code{word-break:break-all}"
    "#attention{border:2px solid #b00;background:#fff2f2;padding:.5em 1em}"
    "#attention li{color:#900}.ok{color:#070}.bad{color:#b00}";

static void html_row(datos_text_t *o, const char *th, const char *td)
{
    datos_text_str(o, "<tr><th>");
    datos_text_str(o, th);
    datos_text_str(o, "</th><td>");
    html_text(o, td);
    datos_text_str(o, "</td></tr>");
}

static void html_fetches(datos_text_t *o, const datos_status_t *s,
                         const datos_status_table_t *t)
{
    char ts[DATOS_TS_BUFSIZE], b1[48], b2[48], b3[48];
    int i;

    datos_text_str(o, "<h3>Last fetches</h3>");
    if (!t->nfetches) {
        datos_text_str(o, "<p class=\"none\">No fetch recorded since httpd "
                          "started.</p>");
        return;
    }
    datos_text_str(o, "<table class=\"fetches\"><thead><tr><th>When (UTC)</th>"
                      "<th>Ago</th><th>Took</th><th>Pages</th><th>Rows</th>"
                      "<th>Processed</th><th>Billed</th><th>Outcome</th></tr>"
                      "</thead><tbody>");
    for (i = 0; i < t->nfetches && i < DATOS_METRICS_FETCHES; i++) {
        const datos_fetch_rec_t *f = &t->fetches[i];
        int ok = !strcmp(f->outcome, "ok");

        datos_text_printf(
            o,
            "<tr class=\"fetch\"><td>%s</td><td>%s</td><td>%s</td>"
            "<td class=\"n\">%d</td><td class=\"n\">%d</td>",
            when(ts, f->started, 0), span(b1, since(s, f->started)),
            span(b2, f->duration), f->pages, f->rows);
        datos_text_printf(o, "<td class=\"n\">%s</td>",
                          f->bytes_processed >= 0 ? size(b3, f->bytes_processed)
                                                  : "&ndash;");
        datos_text_printf(o, "<td class=\"n\">%s</td>",
                          f->bytes_billed >= 0 ? size(b3, f->bytes_billed)
                                               : "&ndash;");
        datos_text_printf(o, "<td class=\"outcome %s\">%s</td></tr>",
                          ok ? "ok" : "bad", f->outcome);
    }
    datos_text_str(o, "</tbody></table>");
}

static void html_table(apr_pool_t *p, datos_text_t *o, const datos_status_t *s,
                       const datos_status_table_t *t, int idx)
{
    char ts[DATOS_TS_BUFSIZE], b1[48];
    apr_time_t f = newest(t);
    int i;

    datos_text_printf(
        o, "<section class=\"table\" id=\"table-%d\"><h2>Table <code>", idx);
    html_text(o, clean(p, t->table));
    datos_text_str(o, "</code></h2><p>Served by ");
    for (i = 0; i < t->nhosts && i < DATOS_STATUS_HOSTS_MAX; i++) {
        datos_text_str(o, i ? ", <code>" : "<code>");
        html_text(o, clean(p, t->hosts[i]));
        datos_text_str(o, "</code>");
    }
    if (t->nhosts > DATOS_STATUS_HOSTS_MAX) {
        datos_text_printf(o, " and %d more",
                          t->nhosts - DATOS_STATUS_HOSTS_MAX);
    }
    datos_text_str(o, ".</p><table class=\"answer\">");
    if (!t->cached) {
        html_row(o, "Cache",
                 "none (DatosFreshFor 0): every request asks BigQuery");
    }
    else if (!f) {
        html_row(o, "Answer", "none yet");
    }
    else {
        html_row(o, "Age", span(b1, since(s, f)));
        html_row(o, "State", state_words(answer_state(t, since(s, f))));
        html_row(o, "Fetched (UTC)", when(ts, f, 0));
        if (t->have) {
            html_row(o, "Rows", apr_psprintf(p, "%d", t->rows));
            html_row(o, "Bytes",
                     t->bytes < 1024
                         ? size(b1, (apr_int64_t)t->bytes)
                         : apr_psprintf(p, "%" APR_SIZE_T_FMT " (%s)", t->bytes,
                                        size(b1, (apr_int64_t)t->bytes)));
            html_row(o, "ETag of GET /datos", t->etag ? clean(p, t->etag) : "");
        }
        if (!t->have || t->host_fetched > t->fetched) {
            html_row(o, "This process",
                     t->have ? "holds an older answer until its next request"
                             : "holds no answer yet");
        }
    }
    if (t->cached) {
        html_row(o, "Fresh for", span(b1, t->fresh_for));
        html_row(o, "Stale while revalidate",
                 span(b1, t->stale_while_revalidate));
        html_row(o, "Stale if error", span(b1, t->stale_if_error));
    }
    if (t->next_attempt > s->now) {
        html_row(o, "Back-off",
                 apr_psprintf(p, "after %s: no query before %s (in %s)",
                              t->last_failure ? t->last_failure : "error",
                              when(ts, t->next_attempt, 0),
                              span(b1, t->next_attempt - s->now)));
    }
    datos_text_str(o, "</table>");
    html_fetches(o, s, t);
    datos_text_str(o, "</section>");
}

static void html_counts(datos_text_t *o, const datos_status_t *s)
{
    const datos_metrics_counts_t *c = &s->counts;
    unsigned long long acc = 0, ref = 0, fail = 0;
    int t, r, code;

    datos_text_str(o, "<section id=\"hits\"><h2>Where answers come from</h2>"
                      "<table><thead><tr><th>Source</th><th>Fresh</th>"
                      "<th>Stale</th><th>Miss</th><th>Error</th></tr></thead>"
                      "<tbody>");
    datos_text_printf(
        o,
        "<tr><th>Quick path</th><td class=\"n\" id=\"hits-quick\">"
        "%llu</td><td colspan=\"3\">answers served before httpd's "
        "walks (also counted as process copy hits)</td></tr>",
        c->quick);
    for (t = 0; t < DATOS_TIER_COUNT; t++) {
        static const char *const names[DATOS_TIER_COUNT] = {
            "Process copy", "Shared tier", "State file"};
        datos_text_printf(o, "<tr><th>%s</th>", names[t]);
        for (r = 0; r < DATOS_LOOKUP_COUNT; r++) {
            datos_text_printf(o, "<td class=\"n\">%llu</td>", c->lookups[t][r]);
        }
        datos_text_str(o, "</tr>");
    }
    datos_text_printf(
        o,
        "</tbody></table><p>BigQuery fetches since httpd started: "
        "%llu succeeded, %llu failed, %llu bytes processed.</p>"
        "</section>",
        c->backend_ok, c->backend_failed, c->backend_bytes);

    datos_text_printf(
        o,
        "<section id=\"waiting\"><h2>Waiting and refusals</h2>"
        "<table><tr><th>Requests waiting on BigQuery now</th>"
        "<td class=\"n\">%lld</td></tr><tr><th>Bound on waiting "
        "requests (DatosMaxWaiting)</th><td class=\"n\">%d</td></tr>"
        "<tr><th>Refused (503) because too many waited</th>"
        "<td class=\"n\">%llu</td></tr></table></section>",
        c->waiting, s->max_waiting, c->wait_rejected);

    datos_text_str(o, "<section id=\"shared-tier\"><h2>Shared tier</h2><p>");
    if (s->tier) {
        datos_text_str(o, "DatosCache <code>");
        html_text(o, s->tier);
        datos_text_str(o, s->fleet
                              ? "</code>, shared by the fleet."
                              : "</code>, shared by this host's processes.");
    }
    else {
        datos_text_str(
            o, "None (DatosCache none): each process keeps its own copy.");
    }
    datos_text_str(o,
                   "</p><table><thead><tr><th>Tier</th><th>Store failures</th>"
                   "<th>Refused: seal</th><th>Refused: future</th></tr></thead>"
                   "<tbody>");
    for (t = DATOS_TIER_L2; t < DATOS_TIER_COUNT; t++) {
        datos_text_printf(
            o,
            "<tr><th>%s</th><td class=\"n\">%llu</td>"
            "<td class=\"n\">%llu</td><td class=\"n\">%llu</td></tr>",
            t == DATOS_TIER_L2 ? "Shared tier" : "State file",
            c->store_failures[t], c->refused[t][DATOS_REFUSED_SEAL],
            c->refused[t][DATOS_REFUSED_FUTURE]);
    }
    datos_text_printf(
        o,
        "</tbody></table><p>Answers too large for the shared tier "
        "(kept in process memory only): %llu.</p></section>",
        c->oversized);

    for (code = 0; code < 600; code++) {
        if (code >= 200 && code < 300) {
            acc += c->ingest[code];
        }
        else if (code >= 400 && code < 500) {
            ref += c->ingest[code];
        }
        else {
            fail += c->ingest[code];
        }
    }
    datos_text_printf(
        o,
        "<section id=\"ingest\"><h2>POST /datos</h2><p>%s</p>"
        "<table><tr><th>Accepted (2xx)</th><td class=\"n\">%llu</td>"
        "</tr><tr><th>Refused (4xx)</th><td class=\"n\">%llu</td></tr>"
        "<tr><th>Failed (5xx)</th><td class=\"n\">%llu</td></tr>"
        "</table></section>",
        s->ingest ? "Ingestion is on (DatosIngest On)."
                  : "Ingestion is off here (DatosIngest Off); the "
                    "counts are the host's.",
        acc, ref, fail);
}

static void html_loader(apr_pool_t *p, datos_text_t *o, const datos_status_t *s)
{
    const datos_status_loader_t *l = &s->loader;
    char ts[DATOS_TS_BUFSIZE], b1[48];

    datos_text_str(o, "<section id=\"loader\"><h2>datos-loader</h2>");
    if (!l->file) {
        datos_text_str(o, "<p>Not shown: DatosLoaderMetricsFile is not set.</p>"
                          "</section>");
        return;
    }
    datos_text_str(o, "<table>");
    html_row(o, "Metrics file", clean(p, l->file));
    if (l->error) {
        html_row(o, "Read", clean(p, l->error));
    }
    else {
        html_row(o, "Last run (UTC)",
                 l->last_run ? when(ts, l->last_run, 0) : "unknown");
        if (l->last_run) {
            html_row(o, "Age", span(b1, since(s, l->last_run)));
            html_row(o, "Outcome",
                     l->last_success == l->last_run
                         ? "succeeded"
                         : "failed (some work is left to a "
                           "later run)");
        }
        if (l->duration >= 0) {
            html_row(o, "Took", span(b1, l->duration));
        }
        html_row(o, "Backlog seen",
                 l->backlog >= 0 ? apr_psprintf(
                     p, "%" APR_INT64_T_FMT " messages", l->backlog)
                                 : "not reported");
        if (l->jobs_today >= 0) {
            html_row(o, "Load jobs today",
                     apr_psprintf(p,
                                  "%" APR_INT64_T_FMT " of %" APR_INT64_T_FMT,
                                  l->jobs_today,
                                  l->jobs_quota > 0 ? l->jobs_quota
                                                    : DATOS_STATUS_LOAD_QUOTA));
        }
        if (l->rows_loaded >= 0) {
            html_row(o, "Rows loaded (total)",
                     apr_psprintf(p, "%" APR_INT64_T_FMT, l->rows_loaded));
        }
        if (l->dead_lettered >= 0) {
            html_row(o, "Dead-lettered (total)",
                     apr_psprintf(p, "%" APR_INT64_T_FMT, l->dead_lettered));
        }
    }
    html_row(o, "Expected every", span(b1, l->interval));
    datos_text_str(o, "</table></section>");
}

char *datos_status_html(apr_pool_t *p, const datos_status_t *s, apr_size_t *len)
{
    apr_array_header_t *att = datos_status_attention(p, s);
    const char *server = clean(p, s->server ? s->server : "");
    char ts[DATOS_TS_BUFSIZE];
    datos_text_t o;
    int i;

    datos_text_init(&o, p, 8192);
    datos_text_str(
        &o, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta "
            "charset=\"utf-8\"><meta name=\"robots\" content=\"noindex\">"
            "<title>datos status: ");
    html_text(&o, server);
    datos_text_printf(&o,
                      "</title><style>%s</style></head><body><h1>datos status"
                      "</h1><p id=\"header\">",
                      style);
    html_text(&o, server);
    datos_text_printf(
        &o,
        ", %s UTC. <a id=\"refresh\" href=\"?\">Refresh</a> &middot; "
        "<a href=\"?json\">JSON</a></p>",
        when(ts, s->now, 0));

    if (att->nelts) {
        datos_text_str(
            &o, "<section id=\"attention\"><h2>Needs attention</h2><ul>");
        for (i = 0; i < att->nelts; i++) {
            const datos_status_attention_t *x =
                &APR_ARRAY_IDX(att, i, datos_status_attention_t);
            datos_text_printf(&o, "<li class=\"attention\" data-what=\"%s\">",
                              x->what);
            html_text(&o, x->message);
            datos_text_str(&o, "</li>");
        }
        datos_text_str(&o, "</ul></section>");
    }
    else {
        datos_text_str(&o, "<p id=\"all-well\" class=\"ok\">Nothing needs "
                           "attention.</p>");
    }
    for (i = 0; i < shown_tables(s); i++) {
        html_table(p, &o, s, &s->tables[i], i);
    }
    if (s->ntables > DATOS_STATUS_TABLES_MAX) {
        datos_text_printf(&o,
                          "<p id=\"tables-more\">And %d more configurations "
                          "not shown.</p>",
                          s->ntables - DATOS_STATUS_TABLES_MAX);
    }
    html_counts(&o, s);
    html_loader(p, &o, s);
    datos_text_str(&o, "</body></html>\n");
    if (len) {
        *len = o.len;
    }
    return o.buf;
}

/* -------------------------------------------------------------- JSON */

static void json_time(datos_text_t *o, apr_time_t t)
{
    char ts[DATOS_TS_BUFSIZE];

    if (t) {
        datos_text_printf(o, "\"%s\"", when(ts, t, 1));
    }
    else {
        datos_text_str(o, "null");
    }
}

static void json_secs(datos_text_t *o, apr_int64_t us)
{
    char b[32];

    datos_text_str(o, seconds(b, us));
}

/* An int64 that -1 marks unknown. */
static void json_maybe(datos_text_t *o, apr_int64_t v)
{
    if (v < 0) {
        datos_text_str(o, "null");
    }
    else {
        datos_text_printf(o, "%" APR_INT64_T_FMT, v);
    }
}

static void json_table(apr_pool_t *p, datos_text_t *o, const datos_status_t *s,
                       const datos_status_table_t *t)
{
    apr_time_t f = newest(t);
    int i;

    datos_text_str(o, "{\"table\":");
    json_str(o, clean(p, t->table));
    datos_text_str(o, ",\"hosts\":[");
    for (i = 0; i < t->nhosts && i < DATOS_STATUS_HOSTS_MAX; i++) {
        datos_text_str(o, i ? "," : "");
        json_str(o, clean(p, t->hosts[i]));
    }
    datos_text_printf(o, "],\"hosts_more\":%d,\"cached\":%s,\"windows\":{",
                      t->nhosts > DATOS_STATUS_HOSTS_MAX
                          ? t->nhosts - DATOS_STATUS_HOSTS_MAX
                          : 0,
                      t->cached ? "true" : "false");
    datos_text_str(o, "\"fresh_for\":");
    json_secs(o, t->fresh_for);
    datos_text_str(o, ",\"stale_while_revalidate\":");
    json_secs(o, t->stale_while_revalidate);
    datos_text_str(o, ",\"stale_if_error\":");
    json_secs(o, t->stale_if_error);
    datos_text_str(o, "},\"newest_fetched\":");
    json_time(o, f);
    datos_text_str(o, ",\"age\":");
    if (f) {
        json_secs(o, since(s, f));
        datos_text_str(o, ",\"state\":");
        json_str(o, t->cached ? answer_state(t, since(s, f)) : NULL);
    }
    else {
        datos_text_str(o, "null,\"state\":null");
    }
    datos_text_str(o, ",\"answer\":");
    if (t->have) {
        datos_text_str(o, "{\"fetched\":");
        json_time(o, t->fetched);
        datos_text_printf(
            o, ",\"rows\":%d,\"bytes\":%" APR_SIZE_T_FMT ",\"etag\":", t->rows,
            t->bytes);
        json_str(o, t->etag ? clean(p, t->etag) : NULL);
        datos_text_str(o, "}");
    }
    else {
        datos_text_str(o, "null");
    }
    datos_text_str(o, ",\"backoff\":");
    if (t->next_attempt > s->now) {
        datos_text_str(o, "{\"until\":");
        json_time(o, t->next_attempt);
        datos_text_str(o, ",\"last_failure\":");
        json_str(o, t->last_failure ? t->last_failure : "error");
        datos_text_str(o, "}");
    }
    else {
        datos_text_str(o, "null");
    }
    datos_text_str(o, ",\"fetches\":[");
    for (i = 0; i < t->nfetches && i < DATOS_METRICS_FETCHES; i++) {
        const datos_fetch_rec_t *r = &t->fetches[i];

        datos_text_str(o, i ? ",{\"started\":" : "{\"started\":");
        json_time(o, r->started);
        datos_text_str(o, ",\"duration\":");
        json_secs(o, r->duration);
        datos_text_printf(o, ",\"pages\":%d,\"rows\":%d,\"bytes_processed\":",
                          r->pages, r->rows);
        json_maybe(o, r->bytes_processed);
        datos_text_str(o, ",\"bytes_billed\":");
        json_maybe(o, r->bytes_billed);
        datos_text_str(o, ",\"outcome\":");
        json_str(o, r->outcome);
        datos_text_str(o, "}");
    }
    datos_text_str(o, "]}");
}

static void json_lookups(datos_text_t *o, const unsigned long long *l)
{
    int r;

    datos_text_str(o, "{");
    for (r = 0; r < DATOS_LOOKUP_COUNT; r++) {
        datos_text_printf(o, "%s\"%s\":%llu", r ? "," : "",
                          datos_metrics_lookup_name((datos_lookup_t)r), l[r]);
    }
    datos_text_str(o, "}");
}

static void json_counts(datos_text_t *o, const datos_status_t *s)
{
    const datos_metrics_counts_t *c = &s->counts;
    int t, code, first = 1;

    datos_text_printf(o, ",\"hits\":{\"quick\":%llu", c->quick);
    for (t = 0; t < DATOS_TIER_COUNT; t++) {
        datos_text_printf(o,
                          ",\"%s\":", datos_metrics_tier_name((datos_tier_t)t));
        json_lookups(o, c->lookups[t]);
    }
    datos_text_printf(o,
                      "},\"bigquery\":{\"succeeded\":%llu,\"failed\":%llu,"
                      "\"bytes_processed\":%llu}",
                      c->backend_ok, c->backend_failed, c->backend_bytes);
    datos_text_printf(
        o, ",\"waiting\":{\"now\":%lld,\"bound\":%d,\"rejected\":%llu}",
        c->waiting, s->max_waiting, c->wait_rejected);
    datos_text_str(o, ",\"shared_tier\":{\"provider\":");
    json_str(o, s->tier);
    datos_text_printf(o, ",\"fleet\":%s,\"oversized\":%llu",
                      s->fleet ? "true" : "false", c->oversized);
    for (t = DATOS_TIER_L2; t < DATOS_TIER_COUNT; t++) {
        datos_text_printf(
            o,
            ",\"%s\":{\"store_failures\":%llu,\"refused\":{\"seal\":"
            "%llu,\"future\":%llu}}",
            datos_metrics_tier_name((datos_tier_t)t), c->store_failures[t],
            c->refused[t][DATOS_REFUSED_SEAL],
            c->refused[t][DATOS_REFUSED_FUTURE]);
    }
    datos_text_printf(o, "},\"ingest\":{\"enabled\":%s,\"by_code\":{",
                      s->ingest ? "true" : "false");
    for (code = 0; code < 600; code++) {
        if (c->ingest[code]) {
            datos_text_printf(o, "%s\"%d\":%llu", first ? "" : ",", code,
                              c->ingest[code]);
            first = 0;
        }
    }
    datos_text_str(o, "}}");
}

static void json_loader(apr_pool_t *p, datos_text_t *o, const datos_status_t *s)
{
    const datos_status_loader_t *l = &s->loader;

    datos_text_str(o, ",\"loader\":");
    if (!l->file) {
        datos_text_str(o, "null");
        return;
    }
    datos_text_str(o, "{\"file\":");
    json_str(o, clean(p, l->file));
    datos_text_str(o, ",\"error\":");
    json_str(o, clean(p, l->error));
    datos_text_str(o, ",\"interval\":");
    json_secs(o, l->interval);
    datos_text_str(o, ",\"last_run\":");
    json_time(o, l->last_run);
    datos_text_str(o, ",\"age\":");
    if (l->last_run) {
        json_secs(o, since(s, l->last_run));
    }
    else {
        datos_text_str(o, "null");
    }
    datos_text_str(o, ",\"outcome\":");
    json_str(o, !l->last_run                     ? NULL
                : l->last_success == l->last_run ? "succeeded"
                                                 : "failed");
    datos_text_str(o, ",\"last_success\":");
    json_time(o, l->last_success);
    datos_text_str(o, ",\"duration\":");
    if (l->duration >= 0) {
        json_secs(o, l->duration);
    }
    else {
        datos_text_str(o, "null");
    }
    datos_text_str(o, ",\"backlog\":");
    json_maybe(o, l->backlog);
    datos_text_str(o, ",\"load_jobs_today\":");
    json_maybe(o, l->jobs_today);
    datos_text_str(o, ",\"load_jobs_quota\":");
    json_maybe(o, l->jobs_quota > 0 ? l->jobs_quota : DATOS_STATUS_LOAD_QUOTA);
    datos_text_str(o, ",\"rows_loaded\":");
    json_maybe(o, l->rows_loaded);
    datos_text_str(o, ",\"dead_lettered\":");
    json_maybe(o, l->dead_lettered);
    datos_text_str(o, "}");
}

char *datos_status_json(apr_pool_t *p, const datos_status_t *s, apr_size_t *len)
{
    apr_array_header_t *att = datos_status_attention(p, s);
    datos_text_t o;
    int i;

    datos_text_init(&o, p, 8192);
    datos_text_str(&o, "{\"server\":");
    json_str(&o, clean(p, s->server ? s->server : ""));
    datos_text_str(&o, ",\"now\":");
    json_time(&o, s->now);
    datos_text_str(&o, ",\"attention\":[");
    for (i = 0; i < att->nelts; i++) {
        const datos_status_attention_t *x =
            &APR_ARRAY_IDX(att, i, datos_status_attention_t);
        datos_text_str(&o, i ? ",{\"what\":" : "{\"what\":");
        json_str(&o, x->what);
        datos_text_str(&o, ",\"table\":");
        json_str(&o, x->table);
        datos_text_str(&o, ",\"message\":");
        json_str(&o, x->message);
        datos_text_str(&o, "}");
    }
    datos_text_str(&o, "],\"tables\":[");
    for (i = 0; i < shown_tables(s); i++) {
        datos_text_str(&o, i ? "," : "");
        json_table(p, &o, s, &s->tables[i]);
    }
    datos_text_printf(&o, "],\"tables_more\":%d",
                      s->ntables > DATOS_STATUS_TABLES_MAX
                          ? s->ntables - DATOS_STATUS_TABLES_MAX
                          : 0);
    json_counts(&o, s);
    json_loader(p, &o, s);
    datos_text_str(&o, "}\n");
    if (len) {
        *len = o.len;
    }
    return o.buf;
}

/* ----------------------------------------------------- the textfile */

void datos_status_loader_init(datos_status_loader_t *l)
{
    l->error = NULL;
    l->last_run = l->last_success = 0;
    l->duration = -1;
    l->rows_loaded = l->dead_lettered = l->backlog = -1;
    l->jobs_today = l->jobs_quota = -1;
}

/* v added to *sum, which -1 marks as not seen yet; at most INT64_MAX. */
static void sum_into(apr_int64_t *sum, double v)
{
    apr_int64_t have = *sum < 0 ? 0 : *sum, add = (apr_int64_t)v;

    *sum = add > APR_INT64_MAX - have ? APR_INT64_MAX : have + add;
}

/* Seconds as microseconds, for times up to the year 9999 (anything larger
 * is not a time the loader wrote); 0 for those. */
static apr_time_t usec(double v)
{
    return v < 253402300800.0 ? (apr_time_t)(v * US_PER_SEC) : 0;
}

void datos_status_loader_parse(const char *text, apr_size_t len,
                               datos_status_loader_t *l)
{
    const char *line = text, *end = text + len;

    while (line < end) {
        const char *nl = memchr(line, '\n', (apr_size_t)(end - line));
        const char *stop = nl ? nl : end;
        char buf[256], *sp, *rest;
        apr_size_t n = (apr_size_t)(stop - line);
        double v;

        if (n > 0 && n < sizeof(buf) && line[0] != '#') {
            memcpy(buf, line, n);
            buf[n] = '\0';
            /* "name{labels} value [timestamp]": the value follows the
             * last space of the series (labels may hold spaces). */
            sp = strrchr(buf, '}');
            sp = strchr(sp ? sp : buf, ' ');
            if (sp) {
                *sp = '\0';
                v = strtod(sp + 1, &rest);
                if (rest != sp + 1 && v >= 0 && v < 9.2e18) {
                    char *brace = strchr(buf, '{');

                    if (brace) {
                        *brace = '\0';
                    }
                    if (!strcmp(buf,
                                "datos_loader_last_run_timestamp_seconds")) {
                        l->last_run = usec(v);
                    }
                    else if (!strcmp(buf, "datos_loader_last_success_"
                                          "timestamp_seconds")) {
                        l->last_success = usec(v);
                    }
                    else if (!strcmp(buf,
                                     "datos_loader_run_duration_seconds")) {
                        l->duration =
                            v < 253402300800.0
                                ? (apr_interval_time_t)(v * US_PER_SEC)
                                : -1;
                    }
                    else if (!strcmp(buf, "datos_loader_rows_loaded_total")) {
                        sum_into(&l->rows_loaded, v);
                    }
                    else if (!strcmp(buf,
                                     "datos_loader_messages_invalid_total")) {
                        sum_into(&l->dead_lettered, v);
                    }
                    else if (!strcmp(buf, "datos_loader_backlog_messages")) {
                        sum_into(&l->backlog, v);
                    }
                    else if (!strcmp(buf, "datos_loader_load_jobs_today")) {
                        sum_into(&l->jobs_today, v);
                    }
                    else if (!strcmp(buf, "datos_loader_load_jobs_quota")) {
                        l->jobs_quota = (apr_int64_t)v;
                    }
                }
            }
        }
        line = nl ? nl + 1 : end;
    }
    /* Seconds with milliseconds, as the loader writes them: a success at
     * the end of the last run reads as the same time. */
    if (l->last_run && l->last_success
        && (l->last_run > l->last_success ? l->last_run - l->last_success
                                          : l->last_success - l->last_run)
               < 1000) {
        l->last_success = l->last_run;
    }
}
