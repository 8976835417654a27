/* datos_bq.c - BigQuery v2 REST for the read path: the newest rows.
 *
 * One fetch runs entirely within conf->timeout: credentials, the dataset's
 * location (once per process), jobs.query, getQueryResults polls and pages,
 * and the widening of the lookback window. Each fetch is one operation of
 * the Google call layer (datos_google.h) with its own curl handle in the
 * caller's pool; the datos_bq_t itself is read-only after create except
 * for the table cache, which has its own mutex. The table's name and
 * columns are datos_table.c's, reading the answers datos_bq_page.c's.
 */
#include <stdlib.h>
#include <string.h>
#include <apr_general.h>
#include <apr_hash.h>
#include <apr_strings.h>

#include "datos_bq.h"
#include "datos_bq_page.h"
#include "datos_google.h"
#include "datos_mutex.h"
#include "datos_json.h"
#include "datos_log.h"
#include "datos_time.h"

#define POLL_PAUSE_FIRST     (20 * 1000)
#define POLL_PAUSE_MAX       (500 * 1000)
#define QUERY_TIMEOUT_MS_MAX 10000
/* An answer page may be this much larger than twice the byte budget: the
 * JSON around each row (cell objects, the schema) takes room the rendered
 * rows do not. */
#define PAGE_CAP_SLACK ((apr_size_t)1024 * 1024)
/* TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL n DAY) fails once it would
 * leave year 1; windows that wide are the whole table anyway. */
#define WINDOW_DAYS_MAX 700000

struct datos_bq_t {
    apr_pool_t *pool;
    datos_bq_conf_t conf;
#if APR_HAS_THREADS
    apr_thread_mutex_t *mutex;
#endif
    /* What tables.get said, once per process: the location to query in
     * and which of the loader's columns the table has. */
    int info_known;
    char location[128];
    int has_publish_time;
    int has_message_id;
};


apr_int64_t datos_bq_watermark(const datos_latest_t *l)
{
    apr_int64_t oldest = 0, day = APR_INT64_C(86400000000);
    int i;

    if (!l || !l->rows || !l->rows->nelts) {
        return 0;
    }
    for (i = 0; i < l->rows->nelts; i++) {
        apr_int64_t ts = APR_ARRAY_IDX(l->rows, i, datos_row_t).timestamp_us;
        if (i == 0 || ts < oldest) {
            oldest = ts;
        }
    }
    /* Floor to the UTC day: the window then covers whole partitions, and
     * the value only moves when a day's worth of rows has passed. */
    return (oldest / day - (oldest % day < 0 ? 1 : 0)) * day;
}

/* ------------------------------------------------------------ create */

apr_status_t datos_bq_create(apr_pool_t *p, const datos_bq_conf_t *conf,
                             datos_bq_t **out, datos_err_t *err)
{
    datos_bq_t *bq;
    datos_bq_conf_t *c;
    apr_status_t rv = DATOS_ECONFIG;
    char *base;
    apr_size_t n;

    if (!conf->base_url || !conf->table.dataset || !conf->table.table) {
        datos_err_set(err, p, rv, 0, NULL,
                      "BigQuery client needs a base URL and a table");
        goto leave;
    }
    if (conf->lookback_days < 1 || conf->max_rows < 1 || conf->timeout <= 0) {
        datos_err_set(err, p, rv, 0, NULL,
                      "BigQuery client needs lookback_days >= 1, max_rows "
                      ">= 1 and a positive timeout");
        goto leave;
    }
    if (conf->http.timeout <= 0 || conf->http.connect_timeout <= 0) {
        datos_err_set(err, p, rv, 0, NULL,
                      "BigQuery client needs positive HTTP timeouts");
        goto leave;
    }
    if (conf->max_bytes_billed < 0
        || (conf->max_bytes_billed > 0
            && conf->max_bytes_billed < DATOS_BQ_MIN_BILLED)) {
        datos_err_set(err, p, rv, 0, NULL,
                      "maximum bytes billed %" APR_INT64_T_FMT " is below "
                      "the %" APR_INT64_T_FMT " bytes BigQuery bills for any "
                      "query: every query would fail",
                      conf->max_bytes_billed, DATOS_BQ_MIN_BILLED);
        goto leave;
    }
    rv = datos_http_check_url(p, conf->base_url, conf->http.allow_insecure, 0,
                              err);
    if (rv != APR_SUCCESS) {
        goto leave;
    }

    bq = apr_pcalloc(p, sizeof(*bq));
    bq->pool = p;
    bq->conf = *conf;
    c = &bq->conf;
    base = apr_pstrdup(p, conf->base_url);
    n = strlen(base);
    while (n > 0 && base[n - 1] == '/') {
        base[--n] = '\0';
    }
    c->base_url = base;
    c->project = conf->project ? apr_pstrdup(p, conf->project) : NULL;
    c->table.project =
        conf->table.project ? apr_pstrdup(p, conf->table.project) : NULL;
    c->table.dataset = apr_pstrdup(p, conf->table.dataset);
    c->table.table = apr_pstrdup(p, conf->table.table);
    c->location = conf->location && *conf->location
                      ? apr_pstrdup(p, conf->location)
                      : NULL;
    c->http.ca_file =
        conf->http.ca_file ? apr_pstrdup(p, conf->http.ca_file) : NULL;
    c->http.user_agent =
        conf->http.user_agent ? apr_pstrdup(p, conf->http.user_agent) : NULL;
    if (!c->max_payload) {
        c->max_payload = (apr_size_t)1024 * 1024;
    }
    *out = bq;

leave:
    return rv;
}

apr_status_t datos_bq_child_init(datos_bq_t *bq, apr_pool_t *pchild)
{
    return datos_mutex_create(&bq->mutex, pchild);
}

static void bq_lock(datos_bq_t *bq)
{
    datos_mutex_lock(bq->mutex);
}

static void bq_unlock(datos_bq_t *bq)
{
    datos_mutex_unlock(bq->mutex);
}

/* -------------------------------------------------------------- SQL */

/* Which version of an id wins: the newest by timestamp, then by the
 * loader's publish_time and message_id where the table has them. A table
 * without either (the system this one replaces wrote only the three record
 * columns) breaks the remaining ties by contenido, so every host still
 * picks the same row. */
static const char *version_order(const datos_table_info_t *info)
{
    if (!info || (info->has_publish_time && info->has_message_id)) {
        return "timestamp DESC, publish_time DESC, message_id DESC";
    }
    if (info->has_publish_time) {
        return "timestamp DESC, publish_time DESC";
    }
    if (info->has_message_id) {
        return "timestamp DESC, message_id DESC";
    }
    return "timestamp DESC, contenido DESC";
}

const char *datos_bq_latest_sql(apr_pool_t *p, const char *table_sql, int days,
                                const datos_table_info_t *info)
{
    return apr_pstrcat(
        p, "SELECT id, contenido, timestamp FROM ", table_sql, " WHERE ",
        days > 0 ? "timestamp >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), "
                   "INTERVAL @lookback_days DAY)"
                 : "TRUE",
        " QUALIFY ROW_NUMBER() OVER (PARTITION BY id ORDER BY ",
        version_order(info),
        ") = 1"
        " ORDER BY timestamp DESC, id ASC LIMIT @max_rows",
        NULL);
}

const char *datos_bq_since_sql(apr_pool_t *p, const char *table_sql,
                               const datos_table_info_t *info)
{
    return apr_pstrcat(p, "SELECT id, contenido, timestamp FROM ", table_sql,
                       " WHERE timestamp >= @watermark"
                       " QUALIFY ROW_NUMBER() OVER (PARTITION BY id ORDER BY ",
                       version_order(info),
                       ") = 1"
                       " ORDER BY timestamp DESC, id ASC LIMIT @max_rows",
                       NULL);
}

/* -------------------------------------------------------------- fetch */

typedef struct {
    datos_bq_t *bq;
    apr_pool_t *p;
    datos_google_op_t op; /* handle, token, the one refresh, deadline */
    apr_time_t deadline;
    const char *billing;
    const char *location;
    datos_table_info_t info;
    datos_latest_t *out;
    datos_err_t *err;
} fetch_t;

/* One query's filter: the lookback window of `days` (0 = whole table), or
 * everything since `watermark` when since is set. */
typedef struct {
    int since;
    apr_int64_t watermark;
    int days;
} window_t;

/* One API call of the fetch. */
static apr_status_t bq_call(fetch_t *f, apr_pool_t *cp, const char *what,
                            const char *method, const char *url,
                            const char *body, apr_size_t max_response,
                            datos_http_resp_t **out)
{
    datos_google_call_t call;

    memset(&call, 0, sizeof(call));
    call.what = what;
    call.method = method;
    call.url = url;
    call.body = body;
    call.max_response = max_response;
    call.keep_partial = max_response > 0;
    return datos_google_call(&f->op, cp, &call, out);
}

/* tables.get, once per process: the table's location (unless configured)
 * and its columns. A failure is not remembered, so the next fetch asks
 * again (a table fixed by its owner works without a restart). */
static apr_status_t table_info(fetch_t *f)
{
    datos_bq_t *bq = f->bq;
    apr_status_t rv = APR_SUCCESS;
    apr_pool_t *cp = NULL;
    datos_http_resp_t *resp;
    datos_table_info_t info;
    const char *url, *project;

    /* Held across the call, which the fetch deadline bounds: the table is
     * asked about once per process even when several threads start a
     * fetch at once. */
    bq_lock(bq);
    if (!bq->info_known) {
        apr_pool_create(&cp, f->p);
        project = bq->conf.table.project ? bq->conf.table.project : f->billing;
        url = apr_pstrcat(cp, bq->conf.base_url, "/projects/",
                          datos_http_urlencode(cp, project), "/datasets/",
                          datos_http_urlencode(cp, bq->conf.table.dataset),
                          "/tables/",
                          datos_http_urlencode(cp, bq->conf.table.table), NULL);
        rv = bq_call(f, cp, "tables.get", "GET", url, NULL, 0, &resp);
        if (rv != APR_SUCCESS) {
            goto leave;
        }
        rv = datos_table_parse_info(cp, resp->body, resp->body_len, &info,
                                    f->err);
        if (rv != APR_SUCCESS) {
            goto leave;
        }
        apr_cpystrn(bq->location, info.location, sizeof(bq->location));
        bq->has_publish_time = info.has_publish_time;
        bq->has_message_id = info.has_message_id;
        bq->info_known = 1;
        if (!bq->has_publish_time || !bq->has_message_id) {
            datos_log_perror(
                DATOS_LOG_MARK, DATOS_LOG_INFO, 0, cp,
                "table %s.%s has no %s column: ties between "
                "versions of an id are broken by %s",
                bq->conf.table.dataset, bq->conf.table.table,
                !bq->has_publish_time ? "publish_time" : "message_id",
                bq->has_publish_time || bq->has_message_id ? "the column it has"
                                                           : "contenido");
        }
    }
    f->location =
        apr_pstrdup(f->p, bq->conf.location ? bq->conf.location : bq->location);
    f->info.location = f->location;
    f->info.has_publish_time = bq->has_publish_time;
    f->info.has_message_id = bq->has_message_id;

leave:
    if (cp) {
        apr_pool_destroy(cp);
    }
    bq_unlock(bq);
    return rv;
}

static apr_status_t new_request_id(apr_pool_t *p, const char **out)
{
    unsigned char b[16];
    apr_status_t rv;

    rv = apr_generate_random_bytes(b, sizeof(b));
    if (rv != APR_SUCCESS) {
        return rv;
    }
    b[6] = (unsigned char)((b[6] & 0x0F) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3F) | 0x80); /* RFC 4122 variant */
    *out = apr_psprintf(p,
                        "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
                        "%02x%02x%02x%02x%02x%02x",
                        b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8],
                        b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
    return APR_SUCCESS;
}

static json_t *int64_param(const char *name, apr_int64_t v)
{
    char buf[32];

    apr_snprintf(buf, sizeof(buf), "%" APR_INT64_T_FMT, v);
    return json_pack("{s:s, s:{s:s}, s:{s:s}}", "name", name, "parameterType",
                     "type", "INT64", "parameterValue", "value", buf);
}

/* Milliseconds left before the deadline, for timeoutMs (the server's long
 * poll must end before our own transfer timeout). 0 when none are left. */
static long remaining_ms(fetch_t *f)
{
    apr_interval_time_t left = f->deadline - apr_time_now();

    if (left <= 0) {
        return 0;
    }
    left /= 1000;
    if (left < 1) {
        left = 1;
    }
    return left > QUERY_TIMEOUT_MS_MAX ? QUERY_TIMEOUT_MS_MAX : (long)left;
}

/* A TIMESTAMP parameter in BigQuery's canonical text, as the client
 * libraries send it: "2024-01-14 00:00:00.000000+00:00". */
static const char *timestamp_param(apr_pool_t *p, apr_int64_t us)
{
    char buf[DATOS_TS_BUFSIZE];
    apr_size_t n = datos_ts_format(us, buf);

    if (!n) {
        return NULL;
    }
    buf[10] = ' ';
    if (n == 25) { /* no fraction: add one */
        return apr_pstrcat(p, apr_pstrmemdup(p, buf, 19), ".000000+00:00",
                           NULL);
    }
    return apr_pstrdup(p, buf);
}

static apr_status_t query_body(fetch_t *f, apr_pool_t *cp, const window_t *w,
                               const char **out)
{
    datos_bq_conf_t *c = &f->bq->conf;
    json_t *q, *params;
    const char *rid, *s, *table, *sql;
    apr_status_t rv;
    long tmo = remaining_ms(f);

    if (!tmo) {
        rv = datos_err_set(f->err, f->p, APR_TIMEUP, 0, NULL,
                           "jobs.query: fetch deadline passed");
        goto leave;
    }
    rv = new_request_id(cp, &rid);
    if (rv != APR_SUCCESS) {
        rv = datos_err_set(f->err, f->p, rv, 0, NULL,
                           "jobs.query: no random bytes for requestId");
        goto leave;
    }
    table = datos_table_sql(cp, f->billing, &c->table);
    params = datos_json_bind(cp, json_array());
    if (w->since) {
        const char *wm = timestamp_param(cp, w->watermark);
        if (!wm) {
            rv = datos_err_set(f->err, f->p, APR_EINVAL, 0, NULL,
                               "jobs.query: watermark out of range");
            goto leave;
        }
        json_array_append_new(
            params, json_pack("{s:s, s:{s:s}, s:{s:s}}", "name", "watermark",
                              "parameterType", "type", "TIMESTAMP",
                              "parameterValue", "value", wm));
        sql = datos_bq_since_sql(cp, table, &f->info);
    }
    else {
        if (w->days > 0) {
            json_array_append_new(params,
                                  int64_param("lookback_days", w->days));
        }
        sql = datos_bq_latest_sql(cp, table, w->days, &f->info);
    }
    json_array_append_new(params, int64_param("max_rows", c->max_rows));
    /* Keys in the order of docs/google-apis.md 2.3, so requests read the same in
     * traces and emulator logs. */
    q = datos_json_bind(cp, json_object());
    json_object_set_new(q, "query", json_string(sql));
    json_object_set_new(q, "useLegacySql", json_false());
    json_object_set_new(q, "parameterMode", json_string("NAMED"));
    json_object_set(q, "queryParameters", params);
    json_object_set_new(q, "location", json_string(f->location));
    json_object_set_new(q, "timeoutMs", json_integer(tmo));
    json_object_set_new(q, "maxResults", json_integer(c->max_rows));
    json_object_set_new(q, "formatOptions",
                        json_pack("{s:b}", "useInt64Timestamp", 1));
    if (c->max_bytes_billed > 0) {
        json_object_set_new(q, "maximumBytesBilled",
                            json_string(apr_psprintf(cp, "%" APR_INT64_T_FMT,
                                                     c->max_bytes_billed)));
    }
    json_object_set_new(q, "requestId", json_string(rid));
    s = q ? datos_json_dump(cp, q, NULL) : NULL;
    if (!s) {
        rv = datos_err_set(f->err, f->p, APR_ENOMEM, 0, NULL,
                           "jobs.query: cannot build the request");
        goto leave;
    }
    *out = s;

leave:
    return rv;
}

static const char *results_url(fetch_t *f, apr_pool_t *cp, const char *job_id,
                               const char *location, const char *page_token,
                               apr_int64_t start_index, int max_results)
{
    datos_bq_conf_t *c = &f->bq->conf;
    const char *at = "";

    if (page_token) {
        at = apr_pstrcat(
            cp, "&pageToken=", datos_http_urlencode(cp, page_token), NULL);
    }
    else if (start_index > 0) {
        at = apr_psprintf(cp, "&startIndex=%" APR_INT64_T_FMT, start_index);
    }
    return apr_psprintf(cp,
                        "%s/projects/%s/queries/%s?location=%s"
                        "&timeoutMs=%ld&maxResults=%d"
                        "&formatOptions.useInt64Timestamp=true%s",
                        c->base_url, datos_http_urlencode(cp, f->billing),
                        datos_http_urlencode(cp, job_id),
                        datos_http_urlencode(cp, location), remaining_ms(f),
                        max_results, at);
}

/* The jobReference of an answer cut at the size cap. BigQuery writes it
 * before the rows, so the start of the body names the job even when the
 * rows do not fit; without it the rows cannot be asked for in smaller
 * pages. Only a flat object of short strings is accepted. */
static apr_status_t salvage_job(apr_pool_t *cp, const datos_http_resp_t *resp,
                                const char **job_id, const char **location)
{
    const char *key = "\"jobReference\"", *at, *open, *close;
    json_t *j = NULL;
    json_error_t jerr;
    apr_status_t rv = DATOS_EMALFORMED;
    const char *id, *loc;
    apr_size_t head = resp->body_len < 65536 ? resp->body_len : 65536;

    at = apr_pstrmemdup(cp, resp->body, head);
    at = strstr(at, key);
    if (!at) {
        goto leave;
    }
    open = strchr(at + strlen(key), '{');
    close = open ? strchr(open, '}') : NULL;
    if (!open || !close || close - open > 2048) {
        goto leave;
    }
    j = json_loadb(open, (size_t)(close - open + 1), 0, &jerr);
    id = datos_json_str(j, "jobId");
    loc = datos_json_str(j, "location");
    if (!id || !*id) {
        goto leave;
    }
    *job_id = apr_pstrdup(cp, id);
    if (loc && *loc) {
        *location = apr_pstrdup(cp, loc);
    }
    rv = APR_SUCCESS;

leave:
    json_decref(j);
    return rv;
}

/* One window's walk through the answer of its query job. */
typedef struct {
    fetch_t *f;
    const window_t *w;
    apr_pool_t *wp; /* the rows kept live here */
    apr_array_header_t *rows;
    apr_size_t budget; /* bytes the rows may take in a /datos body */
    apr_size_t used;
    apr_size_t page_cap; /* largest answer body read into memory */
    int page_rows;       /* maxResults; halved when a page is too big */
    const char *job_id;
    const char *location;
    const char *page_token;
    apr_int64_t next_index; /* rows of the answer read so far */
    apr_hash_t *tokens;     /* every pageToken seen */
    int pages;
    int counted;   /* totalBytesProcessed taken */
    int truncated; /* rows left out at the byte budget */
    int done;
} walk_t;

/* An answer that must name its job, to poll it or to page through it. */
static apr_status_t need_job(const walk_t *wk, int http_status,
                             const char *what)
{
    if (wk->job_id && wk->location) {
        return APR_SUCCESS;
    }
    return datos_err_set(wk->f->err, wk->f->p, DATOS_EMALFORMED, http_status,
                         NULL, "query answer %s", what);
}

/* Takes the page's rows in order while they fit the byte budget. The
 * first row that does not fit ends the answer: it and every row after it
 * are left out whole, never cut. */
static apr_status_t take_rows(walk_t *wk, const datos_bq_page_t *page)
{
    int i;

    for (i = 0; i < page->rows->nelts; i++) {
        datos_row_t row = APR_ARRAY_IDX(page->rows, i, datos_row_t);
        apr_size_t len;

        if (datos_record_row_len(&row, wk->rows->nelts == 0, &len)
            != APR_SUCCESS) {
            return datos_err_set(wk->f->err, wk->f->p, DATOS_EMALFORMED, 200,
                                 NULL,
                                 "row %" APR_INT64_T_FMT " of the "
                                 "answer cannot be rendered (invalid UTF-8 "
                                 "or a timestamp out of range)",
                                 wk->next_index + i);
        }
        if (len > wk->budget - wk->used) {
            wk->truncated = 1;
            wk->done = 1;
            break;
        }
        wk->used += len;
        row.id = apr_pstrmemdup(wk->wp, row.id, row.id_len);
        if (row.contenido) {
            row.contenido =
                apr_pstrmemdup(wk->wp, row.contenido, row.contenido_len);
        }
        APR_ARRAY_PUSH(wk->rows, datos_row_t) = row;
    }
    wk->next_index += page->rows->nelts;
    /* More pages only help while rows are missing and one more could fit;
     * a page's rows are kept whole even past max_rows, since an upstream
     * that breaks the SQL's order or uniqueness is put right afterwards. */
    if (wk->rows->nelts >= wk->f->bq->conf.max_rows) {
        wk->done = 1;
    }
    else if (page->page_token
             && wk->budget - wk->used < DATOS_RENDERED_ROW_MIN) {
        wk->truncated = 1;
        wk->done = 1;
    }
    return APR_SUCCESS;
}

/* What one query cost: BigQuery's own figure when the answer gives it
 * (jobs.query's does), else its on-demand rule (docs/google-apis.md 2.3):
 * the bytes processed rounded up to a MiB, and at least 10 MiB for the
 * table the query reads. */
static apr_int64_t billed(apr_int64_t reported, apr_int64_t processed)
{
    const apr_int64_t mib = 1024 * 1024;

    if (reported >= 0) {
        return reported;
    }
    if (processed < 0) {
        processed = 0;
    }
    processed = (processed + mib - 1) / mib * mib;
    return processed > DATOS_BQ_MIN_BILLED ? processed : DATOS_BQ_MIN_BILLED;
}

/* Pages of an answer are bounded: a token never comes back, and there are
 * never more pages than rows asked for plus a few empty ones. An upstream
 * that breaks either would otherwise keep the fetch busy until its
 * deadline. */
static apr_status_t next_token(walk_t *wk, const char *token)
{
    fetch_t *f = wk->f;
    int limit = f->bq->conf.max_rows + 8;

    if (apr_hash_get(wk->tokens, token, APR_HASH_KEY_STRING)) {
        return datos_err_set(f->err, f->p, DATOS_EMALFORMED, 200, NULL,
                             "getQueryResults: the answer repeats a "
                             "pageToken after %d pages",
                             wk->pages);
    }
    if (wk->pages >= limit) {
        return datos_err_set(f->err, f->p, DATOS_EMALFORMED, 200, NULL,
                             "getQueryResults: more than %d pages for %d "
                             "rows",
                             limit, f->bq->conf.max_rows);
    }
    token = apr_pstrdup(wk->wp, token);
    apr_hash_set(wk->tokens, token, APR_HASH_KEY_STRING, token);
    wk->page_token = token;
    return APR_SUCCESS;
}

/* One window: jobs.query, then getQueryResults until the job is complete
 * and the pages are read, or the rows reach max_rows or the byte budget.
 * An answer larger than the page cap is asked for again in pages of half
 * as many rows (by startIndex), down to single rows; a single row larger
 * than the cap cannot fit the budget and ends the answer. */
static apr_status_t run_window(fetch_t *f, apr_pool_t *wp, const window_t *w,
                               apr_array_header_t **rows_out, int *truncated)
{
    datos_bq_conf_t *c = &f->bq->conf;
    apr_status_t rv = APR_SUCCESS;
    apr_interval_time_t pause = POLL_PAUSE_FIRST;
    apr_pool_t *cp = NULL;
    walk_t wk;
    int first = 1;

    memset(&wk, 0, sizeof(wk));
    wk.f = f;
    wk.w = w;
    wk.wp = wp;
    wk.rows = apr_array_make(wp, c->max_rows < 64 ? c->max_rows : 64,
                             sizeof(datos_row_t));
    wk.budget = c->max_payload > DATOS_RENDERED_EMPTY_LEN
                    ? c->max_payload - DATOS_RENDERED_EMPTY_LEN
                    : 0;
    wk.page_cap = 2 * c->max_payload + PAGE_CAP_SLACK;
    wk.page_rows = c->max_rows;
    wk.location = f->location;
    wk.tokens = apr_hash_make(wp);

    *truncated = 0;
    while (!wk.done) {
        datos_http_resp_t *resp = NULL;
        datos_bq_page_t page;
        const char *url, *body = NULL, *what;

        if (cp) {
            apr_pool_destroy(cp);
        }
        apr_pool_create(&cp, f->p);
        if (first) {
            rv = query_body(f, cp, w, &body);
            if (rv != APR_SUCCESS) {
                goto leave;
            }
            url = apr_pstrcat(cp, c->base_url, "/projects/",
                              datos_http_urlencode(cp, f->billing), "/queries",
                              NULL);
            what = "jobs.query";
            f->out->queries++;
            rv = bq_call(f, cp, what, "POST", url, body, wk.page_cap, &resp);
        }
        else {
            if (!remaining_ms(f)) {
                rv = datos_err_set(f->err, f->p, APR_TIMEUP, 0, NULL,
                                   "getQueryResults: fetch deadline passed");
                goto leave;
            }
            url = results_url(f, cp, wk.job_id, wk.location, wk.page_token,
                              wk.next_index, wk.page_rows);
            what = "getQueryResults";
            f->out->polls++;
            rv = bq_call(f, cp, what, "GET", url, NULL, wk.page_cap, &resp);
        }
        if (rv == DATOS_ETOOLARGE && resp && resp->status == 200) {
            /* Ask again for fewer rows from where the answer stands. */
            if (first
                && salvage_job(cp, resp, &wk.job_id, &wk.location)
                       == APR_SUCCESS) {
                wk.job_id = apr_pstrdup(wp, wk.job_id);
                wk.location = apr_pstrdup(wp, wk.location);
            }
            if (!wk.job_id || !wk.location) {
                rv = datos_err_set(f->err, f->p, DATOS_ETOOLARGE, 200, NULL,
                                   "%s: answer larger than %" APR_SIZE_T_FMT
                                   " bytes names no job to page through",
                                   what, wk.page_cap);
                goto leave;
            }
            first = 0;
            wk.page_token = NULL;
            rv = APR_SUCCESS;
            if (wk.page_rows <= 1) {
                wk.truncated = 1;
                break;
            }
            wk.page_rows /= 2;
            continue;
        }
        if (rv != APR_SUCCESS) {
            goto leave;
        }
        wk.pages++;
        f->out->pages++;
        rv = datos_bq_parse_page(cp, resp->body, resp->body_len, &page, f->err);
        if (rv != APR_SUCCESS) {
            if (f->err) {
                f->err->http_status = resp->status;
            }
            datos_err_prefix(f->err, cp, "%s: ", what);
            goto leave;
        }
        first = 0;
        if (page.job_id) {
            wk.job_id = apr_pstrdup(wp, page.job_id);
        }
        if (page.location) {
            wk.location = apr_pstrdup(wp, page.location);
        }
        if (!page.job_complete) {
            rv = need_job(&wk, resp->status,
                          "is incomplete and names no job to poll");
            if (rv != APR_SUCCESS) {
                goto leave;
            }
            if (apr_time_now() + pause >= f->deadline) {
                rv = datos_err_set(
                    f->err, f->p, APR_TIMEUP, 0, NULL,
                    "query job %s not complete before the "
                    "fetch deadline",
                    datos_err_text(f->p, wk.job_id, strlen(wk.job_id), 100));
                goto leave;
            }
            apr_sleep(pause);
            pause = pause * 2 > POLL_PAUSE_MAX ? POLL_PAUSE_MAX : pause * 2;
            continue;
        }
        pause = POLL_PAUSE_FIRST;
        if (!wk.counted) {
            /* Every page repeats the job's total; count it once. */
            wk.counted = 1;
            if (page.total_bytes_processed > 0) {
                f->out->bytes_processed += page.total_bytes_processed;
            }
            f->out->bytes_billed +=
                billed(page.total_bytes_billed, page.total_bytes_processed);
        }
        rv = take_rows(&wk, &page);
        if (rv != APR_SUCCESS) {
            goto leave;
        }
        if (wk.done || !page.page_token) {
            break;
        }
        rv = need_job(&wk, resp->status, "has a pageToken but names no job");
        if (rv != APR_SUCCESS) {
            goto leave;
        }
        rv = next_token(&wk, page.page_token);
        if (rv != APR_SUCCESS) {
            goto leave;
        }
    }
    *truncated = wk.truncated;
    *rows_out = wk.rows;

leave:
    if (cp) {
        apr_pool_destroy(cp);
    }
    return rv;
}

typedef struct {
    datos_row_t row;
    int pos;
} sort_row_t;

static int row_cmp(const void *a, const void *b)
{
    const sort_row_t *x = a, *y = b;
    apr_size_t n;
    int c;

    if (x->row.timestamp_us != y->row.timestamp_us) {
        return x->row.timestamp_us > y->row.timestamp_us ? -1 : 1;
    }
    n = x->row.id_len < y->row.id_len ? x->row.id_len : y->row.id_len;
    c = n ? memcmp(x->row.id, y->row.id, n) : 0;
    if (c) {
        return c;
    }
    if (x->row.id_len != y->row.id_len) {
        return x->row.id_len < y->row.id_len ? -1 : 1;
    }
    return x->pos - y->pos;
}

/* The SQL already answers newest first, one row per id; the order and the
 * uniqueness are re-established here so the contract holds whatever the
 * server (or an emulator) does with ties and pages. */
static apr_array_header_t *normalise_rows(apr_pool_t *p,
                                          const apr_array_header_t *in,
                                          int max_rows)
{
    apr_array_header_t *out =
        apr_array_make(p, in->nelts ? in->nelts : 1, sizeof(datos_row_t));
    sort_row_t *s;
    apr_hash_t *seen = apr_hash_make(p);
    int i;

    if (!in->nelts) {
        return out;
    }
    s = apr_palloc(p, sizeof(*s) * (apr_size_t)in->nelts);
    for (i = 0; i < in->nelts; i++) {
        s[i].row = APR_ARRAY_IDX(in, i, datos_row_t);
        s[i].pos = i;
    }
    qsort(s, (size_t)in->nelts, sizeof(*s), row_cmp);
    for (i = 0; i < in->nelts && out->nelts < max_rows; i++) {
        apr_ssize_t klen = (apr_ssize_t)s[i].row.id_len;
        const void *key = klen ? (const void *)s[i].row.id : "";
        if (apr_hash_get(seen, key, klen)) {
            continue;
        }
        apr_hash_set(seen, key, klen, key);
        APR_ARRAY_PUSH(out, datos_row_t) = s[i].row;
    }
    return out;
}

#define DAY_US APR_INT64_C(86400000000)

static apr_status_t fetch_rows(datos_bq_t *bq, apr_pool_t *p, int since,
                               apr_int64_t watermark, datos_latest_t **out,
                               datos_err_t *err)
{
    datos_bq_conf_t *c = &bq->conf;
    apr_status_t rv;
    fetch_t f;
    datos_http_t *http;
    datos_latest_t *res;
    apr_pool_t *best_pool = NULL, *wp = NULL;
    apr_array_header_t *best = NULL;
    window_t plan[DATOS_BQ_WIDEN_STEPS + 2];
    apr_int64_t days, since_days = 0;
    int nplan = 0, step, k;

    memset(&f, 0, sizeof(f));
    f.bq = bq;
    f.p = p;
    f.err = err;
    f.deadline = apr_time_now() + c->timeout;
    res = apr_pcalloc(p, sizeof(*res));
    f.out = res;

    /* The windows, narrowest first: each one's rows are a superset of the
     * previous one's, so a wider answer simply replaces a narrower one. */
    memset(plan, 0, sizeof(plan));
    if (since) {
        apr_int64_t age = apr_time_now() - watermark;
        since_days = age <= 0 ? 1 : (age + DAY_US - 1) / DAY_US;
        plan[nplan].since = 1;
        plan[nplan].watermark = watermark;
        plan[nplan].days = since_days > WINDOW_DAYS_MAX ? 0 : (int)since_days;
        nplan++;
    }
    days = c->lookback_days;
    for (k = 0; k < DATOS_BQ_WIDEN_STEPS && days <= WINDOW_DAYS_MAX; k++) {
        if (!since || days > since_days) {
            plan[nplan++].days = (int)days;
        }
        days *= DATOS_BQ_WIDEN_FACTOR;
    }
    plan[nplan++].days = 0; /* the whole table */

    rv = datos_http_create(p, &c->http, &http, err);
    if (rv != APR_SUCCESS) {
        goto leave;
    }
    /* Messages of calls made in scratch pools are kept in p. */
    datos_google_op_init(&f.op, p, http, c->creds, f.deadline, err);
    f.billing = c->project;
    if (!f.billing && c->creds) {
        rv =
            datos_creds_project(c->creds, http, p, f.deadline, &f.billing, err);
        if (rv != APR_SUCCESS) {
            goto leave;
        }
    }
    if (!f.billing) {
        rv = datos_err_set(err, p, DATOS_ECONFIG, 0, NULL,
                           "no project to bill the query to: set the "
                           "project, or use credentials that name one");
        goto leave;
    }
    rv = datos_google_op_token(&f.op);
    if (rv != APR_SUCCESS) {
        goto leave;
    }
    rv = table_info(&f);
    if (rv != APR_SUCCESS) {
        goto leave;
    }

    for (step = 0; step < nplan; step++) {
        apr_array_header_t *rows = NULL;
        int truncated = 0;

        res->window_days = plan[step].days;
        apr_pool_create(&wp, p);
        rv = run_window(&f, wp, &plan[step], &rows, &truncated);
        if (rv != APR_SUCCESS) {
            apr_pool_destroy(wp);
            wp = NULL;
            if (rv == DATOS_EBYTESLIMIT && step > 0) {
                /* The narrower window's rows are a correct (if short)
                 * answer; serving them beats failing on cost. */
                res->capped = 1;
                rv = APR_SUCCESS;
                break;
            }
            goto leave;
        }
        if (best_pool) {
            apr_pool_destroy(best_pool);
        }
        best_pool = wp;
        wp = NULL;
        best = rows;
        res->truncated = truncated;
        datos_log_perror(
            DATOS_LOG_MARK, DATOS_LOG_DEBUG, 0, p, "%s %d days: %d rows%s",
            plan[step].since ? "watermark window" : "window", plan[step].days,
            rows->nelts, truncated ? " (payload cap reached)" : "");
        if (rows->nelts >= c->max_rows || truncated || plan[step].days == 0) {
            break;
        }
    }
    res->rows = normalise_rows(
        p, best ? best : apr_array_make(p, 0, sizeof(datos_row_t)),
        c->max_rows);
    *out = res;

leave:
    datos_google_op_done(&f.op);
    return rv;
}

apr_status_t datos_bq_fetch_latest(datos_bq_t *bq, apr_pool_t *p,
                                   datos_latest_t **out, datos_err_t *err)
{
    return fetch_rows(bq, p, 0, 0, out, err);
}

apr_status_t datos_bq_fetch_since(datos_bq_t *bq, apr_pool_t *p,
                                  apr_int64_t watermark_us,
                                  datos_latest_t **out, datos_err_t *err)
{
    if (watermark_us == 0 || watermark_us < DATOS_TS_MIN_US
        || watermark_us > DATOS_TS_MAX_US) {
        return fetch_rows(bq, p, 0, 0, out, err);
    }
    return fetch_rows(bq, p, 1, watermark_us, out, err);
}
