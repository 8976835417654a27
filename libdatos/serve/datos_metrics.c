/* datos_metrics.c - counters in memory shared by every httpd process, and
 * their rendering in the Prometheus text format 0.0.4.
 *
 * The block holds no pointer (each process may map it at its own address)
 * and every field is a 64-bit C11 atomic. Counting uses relaxed atomics:
 * a scrape only needs each counter to be exact on its own, not a snapshot
 * consistent across counters. The atomics must be lock-free: a lock-based
 * fallback would keep its locks in each process's private memory and
 * serialise nothing across processes.
 *
 * Histogram buckets are stored per bucket (not cumulative) so one
 * observation is one increment; the renderer accumulates them and takes
 * _count from the same loads, so +Inf always equals _count in a scrape.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <apr_strings.h>

#include "datos_metrics.h"
#include "datos_text.h"

#if ATOMIC_LLONG_LOCK_FREE != 2
#error \
    "datos_metrics needs lock-free 64-bit atomics to share counters across processes"
#endif

#define METRICS_MAGIC   0x3174654d736f7444ULL /* "DtosMet1" little-endian */
#define METRICS_VERSION 4

/* HTTP statuses 100..599 get a slot each; slot 0 holds anything else
 * (rendered as code "0"). */
#define CODE_MIN   100
#define CODE_MAX   599
#define CODE_SLOTS (CODE_MAX - CODE_MIN + 2)

/* Room for project.dataset.table at BigQuery's limits (30 + 1024 + 1024
 * bytes and two dots); longer names are cut on a UTF-8 boundary. */
#define TABLE_NAME_SIZE 2112

#define HIST_MAX_BOUNDS 16

#define US_PER_SEC APR_INT64_C(1000000)

typedef atomic_ullong mcount_t;

typedef struct {
    mcount_t bucket[HIST_MAX_BOUNDS
                    + 1]; /* [i]: bound[i-1] < d <= bound[i]; last: above all */
    mcount_t sum_us;
} hist_t;

/* One recorded fetch. seq is 2n+1 while the table's n-th record is
 * written into the slot and 2n+2 once it is complete (0: never used), so
 * a reader that sees the same even seq before and after its reads has a
 * whole record. */
typedef struct {
    atomic_ullong seq;
    atomic_llong started, duration, bytes_processed, bytes_billed;
    atomic_llong pages, rows, outcome;
} fetch_slot_t;

typedef struct {
    char name[TABLE_NAME_SIZE];
    atomic_llong fetched;     /* apr_time_t; 0: never */
    atomic_llong success;     /* apr_time_t; 0: never */
    atomic_ullong fetch_next; /* records made so far */
    fetch_slot_t fetch[DATOS_METRICS_FETCHES];
} table_t;

/* The backend outcomes, "ok" first and "error" (anything unknown) last. */
static const char *const outcome_names[] = {
    "ok",           "timeout", "connect_error", "backend_error", "malformed",
    "rate_limited", "quota",   "auth",          "rejected",      "bytes_limit",
    "too_large",    "config",  "insecure_url",  "error"};
#define OUTCOME_COUNT (sizeof(outcome_names) / sizeof(outcome_names[0]))
#define OUTCOME_ERROR (OUTCOME_COUNT - 1)

struct datos_metrics_t {
    unsigned long long magic;
    unsigned long long version;
    mcount_t requests[DATOS_HANDLER_COUNT][CODE_SLOTS];
    hist_t request_duration[DATOS_HANDLER_COUNT];
    mcount_t lookups[DATOS_TIER_COUNT][DATOS_LOOKUP_COUNT];
    mcount_t backend[OUTCOME_COUNT];
    hist_t backend_duration;
    mcount_t backend_bytes;
    mcount_t backend_billed;
    mcount_t store_failures[DATOS_TIER_COUNT];
    mcount_t oversized;
    mcount_t refused[DATOS_TIER_COUNT][DATOS_REFUSED_COUNT];
    mcount_t wait_rejected;
    mcount_t quick;
    mcount_t linger[DATOS_LINGER_COUNT];
    mcount_t ingest[CODE_SLOTS];
    hist_t ingest_duration;
    atomic_llong tables; /* entries of table[] in use */
    table_t table[DATOS_METRICS_TABLES];
    /* Every waiting request compare-and-swaps this word twice; padding
     * keeps it off the cache lines of the counters (the block is only
     * known to be 8-aligned, so _Alignas could not promise that). */
    char pad_before[64];
    atomic_llong waiting;
    char pad_after[64 - sizeof(atomic_llong)];
};

/* Bucket upper bounds in microseconds, rendered as seconds.
 * Requests: a process-cache hit takes well under a millisecond, a cold
 * fetch up to DatosColdWait/DatosTimeout (seconds). */
static const apr_int64_t request_bounds[] = {
    500,    1000,   2500,   5000,    10000,   25000,   50000,
    100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000};
/* BigQuery jobs.query round trips: tens of milliseconds at best, seconds
 * on a cold or widened query, up to the timeout with retries. */
static const apr_int64_t backend_bounds[] = {
    50000,   100000,  250000,   500000,   1000000,
    2500000, 5000000, 10000000, 20000000, 30000000};
/* One Pub/Sub publish call: milliseconds usually, seconds when degraded. */
static const apr_int64_t ingest_bounds[] = {5000,    10000,   25000,   50000,
                                            100000,  250000,  500000,  1000000,
                                            2500000, 5000000, 10000000};
#define NBOUNDS(a) ((int)(sizeof(a) / sizeof((a)[0])))

_Static_assert(NBOUNDS(request_bounds) <= HIST_MAX_BOUNDS, "request buckets");
_Static_assert(NBOUNDS(backend_bounds) <= HIST_MAX_BOUNDS, "backend buckets");
_Static_assert(NBOUNDS(ingest_bounds) <= HIST_MAX_BOUNDS, "ingest buckets");

static const char *const handler_names[DATOS_HANDLER_COUNT] = {
    "datos", "health", "metrics", "ingest"};
static const char *const tier_names[DATOS_TIER_COUNT] = {"process", "shared",
                                                         "state_dir"};
static const char *const lookup_names[DATOS_LOOKUP_COUNT] = {"hit", "stale",
                                                             "miss", "error"};
static const char *const refused_names[DATOS_REFUSED_COUNT] = {"seal",
                                                               "future"};
static const char *const linger_names[DATOS_LINGER_COUNT] = {
    "request", "idle", "closed", "skipped"};

apr_size_t datos_metrics_size(void)
{
    /* Whole cache lines, so whatever the caller puts after the block does
     * not share the last one. */
    return (sizeof(datos_metrics_t) + 63) & ~(apr_size_t)63;
}

int datos_metrics_current(const void *mem)
{
    const datos_metrics_t *m = mem;

    return m && ((uintptr_t)mem & 7) == 0 && m->magic == METRICS_MAGIC
           && m->version == METRICS_VERSION;
}

datos_metrics_t *datos_metrics_init(void *mem)
{
    datos_metrics_t *m = mem;

    if (!m || ((uintptr_t)mem & 7) != 0) {
        return NULL;
    }
    memset(m, 0, datos_metrics_size());
    m->version = METRICS_VERSION;
    m->magic = METRICS_MAGIC;
    return m;
}

/* Longest prefix of s that fits max bytes and does not end inside a UTF-8
 * sequence, so a cut name is still valid text in a label. */
static apr_size_t utf8_prefix(const char *s, apr_size_t max)
{
    apr_size_t n = strlen(s);

    if (n <= max) {
        return n;
    }
    n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) {
        n--;
    }
    return n;
}

int datos_metrics_table(datos_metrics_t *m, const char *table)
{
    char name[TABLE_NAME_SIZE];
    apr_size_t n;
    long long used, i;

    if (!m) {
        return 0;
    }
    if (!table) {
        table = "";
    }
    n = utf8_prefix(table, sizeof(name) - 1);
    memcpy(name, table, n);
    name[n] = '\0';

    used = atomic_load_explicit(&m->tables, memory_order_acquire);
    for (i = 0; i < used; i++) {
        if (strcmp(m->table[i].name, name) == 0) {
            return (int)i;
        }
    }
    if (used == DATOS_METRICS_TABLES) {
        return DATOS_METRICS_TABLES - 1;
    }
    memcpy(m->table[used].name, name, n + 1);
    /* The name is complete before a renderer can count the entry. */
    atomic_store_explicit(&m->tables, used + 1, memory_order_release);
    return (int)used;
}

static void add(mcount_t *c, unsigned long long n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static unsigned long long get(const mcount_t *c)
{
    return atomic_load_explicit((mcount_t *)c, memory_order_relaxed);
}

static int code_slot(int code)
{
    return code >= CODE_MIN && code <= CODE_MAX ? code - CODE_MIN + 1 : 0;
}

static void observe(hist_t *h, const apr_int64_t *bounds, int nbounds,
                    apr_interval_time_t d)
{
    int i = 0;

    if (d < 0) {
        d = 0;
    }
    while (i < nbounds && d > bounds[i]) {
        i++;
    }
    add(&h->bucket[i], 1);
    add(&h->sum_us, (unsigned long long)d);
}

void datos_metrics_request(datos_metrics_t *m, datos_handler_t h, int code,
                           apr_interval_time_t duration)
{
    if (!m || (unsigned)h >= DATOS_HANDLER_COUNT) {
        return;
    }
    add(&m->requests[h][code_slot(code)], 1);
    observe(&m->request_duration[h], request_bounds, NBOUNDS(request_bounds),
            duration);
}

void datos_metrics_lookup(datos_metrics_t *m, datos_tier_t tier,
                          datos_lookup_t result)
{
    if (!m || (unsigned)tier >= DATOS_TIER_COUNT
        || (unsigned)result >= DATOS_LOOKUP_COUNT) {
        return;
    }
    add(&m->lookups[tier][result], 1);
}

static apr_size_t outcome_index(const char *outcome)
{
    apr_size_t i;

    if (outcome) {
        for (i = 0; i < OUTCOME_COUNT; i++) {
            if (strcmp(outcome, outcome_names[i]) == 0) {
                return i;
            }
        }
    }
    return OUTCOME_ERROR;
}

void datos_metrics_backend(datos_metrics_t *m, const char *outcome,
                           apr_interval_time_t duration,
                           apr_int64_t bytes_processed)
{
    if (!m) {
        return;
    }
    add(&m->backend[outcome_index(outcome)], 1);
    observe(&m->backend_duration, backend_bounds, NBOUNDS(backend_bounds),
            duration);
    if (bytes_processed > 0) {
        add(&m->backend_bytes, (unsigned long long)bytes_processed);
    }
}

void datos_metrics_backend_billed(datos_metrics_t *m, apr_int64_t bytes_billed)
{
    if (m && bytes_billed > 0) {
        add(&m->backend_billed, (unsigned long long)bytes_billed);
    }
}

void datos_metrics_store_failure(datos_metrics_t *m, datos_tier_t tier)
{
    if (!m || (unsigned)tier >= DATOS_TIER_COUNT) {
        return;
    }
    add(&m->store_failures[tier], 1);
}

void datos_metrics_oversized(datos_metrics_t *m)
{
    if (m) {
        add(&m->oversized, 1);
    }
}

void datos_metrics_linger(datos_metrics_t *m, datos_linger_t outcome)
{
    if (m && (unsigned)outcome < DATOS_LINGER_COUNT) {
        add(&m->linger[outcome], 1);
    }
}

void datos_metrics_refused(datos_metrics_t *m, datos_tier_t tier,
                           datos_refused_t why)
{
    if (!m || (unsigned)tier >= DATOS_TIER_COUNT
        || (unsigned)why >= DATOS_REFUSED_COUNT) {
        return;
    }
    add(&m->refused[tier][why], 1);
}

/* Raises *g to v; a process that stores an older time after another
 * stored a newer one must not move the gauge back. */
static void raise_to(atomic_llong *g, apr_int64_t v)
{
    long long cur = atomic_load_explicit(g, memory_order_relaxed);

    while (cur < v
           && !atomic_compare_exchange_weak_explicit(
               g, &cur, v, memory_order_relaxed, memory_order_relaxed)) {
    }
}

void datos_metrics_fetched(datos_metrics_t *m, int table, apr_time_t fetched)
{
    if (!m || table < 0 || table >= DATOS_METRICS_TABLES || fetched <= 0) {
        return;
    }
    raise_to(&m->table[table].fetched, fetched);
}

void datos_metrics_success(datos_metrics_t *m, int table, apr_time_t when)
{
    if (!m || table < 0 || table >= DATOS_METRICS_TABLES || when <= 0) {
        return;
    }
    raise_to(&m->table[table].success, when);
}

void datos_metrics_ingest(datos_metrics_t *m, int code,
                          apr_interval_time_t publish_duration)
{
    if (!m) {
        return;
    }
    add(&m->ingest[code_slot(code)], 1);
    if (publish_duration > 0) {
        observe(&m->ingest_duration, ingest_bounds, NBOUNDS(ingest_bounds),
                publish_duration);
    }
}

int datos_metrics_wait_enter(datos_metrics_t *m, int bound)
{
    long long cur;

    if (!m) {
        return 1;
    }
    /* Check and increment in one step: a load followed by an add would
     * let every racing process pass the check at bound - 1. */
    cur = atomic_load_explicit(&m->waiting, memory_order_relaxed);
    do {
        if (cur >= bound) {
            add(&m->wait_rejected, 1);
            return 0;
        }
    } while (!atomic_compare_exchange_weak_explicit(&m->waiting, &cur, cur + 1,
                                                    memory_order_relaxed,
                                                    memory_order_relaxed));
    return 1;
}

void datos_metrics_wait_leave(datos_metrics_t *m)
{
    long long cur;

    if (!m) {
        return;
    }
    /* Never below zero: an unpaired leave must not grant an extra place
     * to every later request. */
    cur = atomic_load_explicit(&m->waiting, memory_order_relaxed);
    while (cur > 0
           && !atomic_compare_exchange_weak_explicit(&m->waiting, &cur, cur - 1,
                                                     memory_order_relaxed,
                                                     memory_order_relaxed)) {
    }
}

/* ----------------------------------------------- the status page's part */

void datos_metrics_fetch_log(datos_metrics_t *m, int table,
                             const datos_fetch_rec_t *f)
{
    table_t *t;
    fetch_slot_t *s;
    unsigned long long n;

    if (!m || !f || table < 0 || table >= DATOS_METRICS_TABLES) {
        return;
    }
    t = &m->table[table];
    n = atomic_fetch_add_explicit(&t->fetch_next, 1, memory_order_relaxed);
    s = &t->fetch[n % DATOS_METRICS_FETCHES];
    atomic_store_explicit(&s->seq, 2 * n + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&s->started, f->started, memory_order_relaxed);
    atomic_store_explicit(&s->duration, f->duration, memory_order_relaxed);
    atomic_store_explicit(&s->bytes_processed, f->bytes_processed,
                          memory_order_relaxed);
    atomic_store_explicit(&s->bytes_billed, f->bytes_billed,
                          memory_order_relaxed);
    atomic_store_explicit(&s->pages, f->pages, memory_order_relaxed);
    atomic_store_explicit(&s->rows, f->rows, memory_order_relaxed);
    atomic_store_explicit(&s->outcome, (long long)outcome_index(f->outcome),
                          memory_order_relaxed);
    atomic_store_explicit(&s->seq, 2 * n + 2, memory_order_release);
}

static long long load(const atomic_llong *v)
{
    return atomic_load_explicit((atomic_llong *)v, memory_order_relaxed);
}

int datos_metrics_fetches(const datos_metrics_t *m, int table,
                          datos_fetch_rec_t *out)
{
    const table_t *t;
    unsigned long long next, n, seq;
    int k = 0;

    if (!m || !out || table < 0 || table >= DATOS_METRICS_TABLES) {
        return 0;
    }
    t = &m->table[table];
    next = atomic_load_explicit((atomic_ullong *)&t->fetch_next,
                                memory_order_acquire);
    for (n = next; n > 0 && next - n < DATOS_METRICS_FETCHES; n--) {
        const fetch_slot_t *s = &t->fetch[(n - 1) % DATOS_METRICS_FETCHES];
        datos_fetch_rec_t r;
        long long o;

        seq = atomic_load_explicit((atomic_ullong *)&s->seq,
                                   memory_order_acquire);
        if (seq != 2 * (n - 1) + 2) {
            continue; /* being written, or already written again */
        }
        r.started = load(&s->started);
        r.duration = load(&s->duration);
        r.bytes_processed = load(&s->bytes_processed);
        r.bytes_billed = load(&s->bytes_billed);
        r.pages = (int)load(&s->pages);
        r.rows = (int)load(&s->rows);
        o = load(&s->outcome);
        r.outcome = outcome_names[o >= 0 && o < (long long)OUTCOME_COUNT
                                      ? o
                                      : (long long)OUTCOME_ERROR];
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit((atomic_ullong *)&s->seq, memory_order_relaxed)
            != seq) {
            continue;
        }
        out[k++] = r;
    }
    return k;
}

void datos_metrics_quick(datos_metrics_t *m)
{
    if (m) {
        add(&m->quick, 1);
    }
}

void datos_metrics_counts(const datos_metrics_t *m, datos_metrics_counts_t *c)
{
    int t, r, i;

    memset(c, 0, sizeof(*c));
    if (!m) {
        return;
    }
    for (t = 0; t < DATOS_TIER_COUNT; t++) {
        for (r = 0; r < DATOS_LOOKUP_COUNT; r++) {
            c->lookups[t][r] = get(&m->lookups[t][r]);
        }
        for (r = 0; r < DATOS_REFUSED_COUNT; r++) {
            c->refused[t][r] = get(&m->refused[t][r]);
        }
        c->store_failures[t] = get(&m->store_failures[t]);
    }
    c->oversized = get(&m->oversized);
    c->quick = get(&m->quick);
    for (i = 0; i < DATOS_LINGER_COUNT; i++) {
        c->linger[i] = get(&m->linger[i]);
    }
    c->backend_ok = get(&m->backend[0]);
    for (i = 1; i < (int)OUTCOME_COUNT; i++) {
        c->backend_failed += get(&m->backend[i]);
    }
    c->backend_bytes = get(&m->backend_bytes);
    c->waiting = load(&m->waiting);
    c->wait_rejected = get(&m->wait_rejected);
    for (i = 0; i < CODE_SLOTS; i++) {
        c->ingest[i ? i - 1 + CODE_MIN : 0] = get(&m->ingest[i]);
    }
}

const char *datos_metrics_tier_name(datos_tier_t tier)
{
    return (unsigned)tier < DATOS_TIER_COUNT ? tier_names[tier] : "?";
}

const char *datos_metrics_lookup_name(datos_lookup_t result)
{
    return (unsigned)result < DATOS_LOOKUP_COUNT ? lookup_names[result] : "?";
}

const char *datos_metrics_refused_name(datos_refused_t why)
{
    return (unsigned)why < DATOS_REFUSED_COUNT ? refused_names[why] : "?";
}

const char *datos_metrics_linger_name(datos_linger_t outcome)
{
    return (unsigned)outcome < DATOS_LINGER_COUNT ? linger_names[outcome] : "?";
}

/* ------------------------------------------------------------ rendering */

/* Backslash, double quote and line feed are the characters the text
 * format requires escaped in a label value. */
static const char *label_escape(char c)
{
    return c == '\\' ? "\\\\" : c == '"' ? "\\\"" : c == '\n' ? "\\n" : NULL;
}

static void out_label_value(datos_text_t *o, const char *s)
{
    datos_text_escaped(o, s, label_escape);
}

/* Microseconds as decimal seconds, exact, without trailing zeros:
 * 500 -> "0.0005", 2500000 -> "2.5", 10000000 -> "10". */
static const char *seconds(char buf[32], apr_int64_t us)
{
    unsigned long long u =
        us < 0 ? 0ULL - (unsigned long long)us : (unsigned long long)us;
    unsigned long long frac = u % US_PER_SEC;
    int n;

    n = snprintf(buf, 32, "%s%llu", us < 0 ? "-" : "", u / US_PER_SEC);
    if (frac) {
        n += snprintf(buf + n, (apr_size_t)(32 - n), ".%06llu", frac);
        while (buf[n - 1] == '0') {
            buf[--n] = '\0';
        }
    }
    return buf;
}

static void out_family(datos_text_t *o, const char *name, const char *type,
                       const char *help)
{
    datos_text_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name,
                      type);
}

/* labels: NULL, or `name="value"` pairs already escaped. */
static void out_histogram(datos_text_t *o, const char *name, const char *labels,
                          const hist_t *h, const apr_int64_t *bounds,
                          int nbounds)
{
    unsigned long long cum = 0;
    const char *sep = labels ? "," : "";
    char num[32];
    int i;

    if (!labels) {
        labels = "";
    }
    for (i = 0; i < nbounds; i++) {
        cum += get(&h->bucket[i]);
        datos_text_printf(o, "%s_bucket{%s%sle=\"%s\"} %llu\n", name, labels,
                          sep, seconds(num, bounds[i]), cum);
    }
    cum += get(&h->bucket[nbounds]);
    datos_text_printf(o, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
                      cum);
    if (*labels) {
        datos_text_printf(o, "%s_sum{%s} %s\n%s_count{%s} %llu\n", name, labels,
                          seconds(num, (apr_int64_t)get(&h->sum_us)), name,
                          labels, cum);
    }
    else {
        datos_text_printf(o, "%s_sum %s\n%s_count %llu\n", name,
                          seconds(num, (apr_int64_t)get(&h->sum_us)), name,
                          cum);
    }
}

/* The series of one code-labelled counter: only the statuses seen. */
static void out_codes(datos_text_t *o, const char *name, const char *labels,
                      const mcount_t *codes)
{
    int i;

    for (i = 0; i < CODE_SLOTS; i++) {
        unsigned long long v = get(&codes[i]);
        if (v) {
            datos_text_printf(o, "%s{%s%scode=\"%d\"} %llu\n", name,
                              labels ? labels : "", labels ? "," : "",
                              i ? i - 1 + CODE_MIN : 0, v);
        }
    }
}

static void out_table_gauge(datos_text_t *o, const char *name, const table_t *t,
                            const char *value)
{
    datos_text_printf(o, "%s{table=\"", name);
    out_label_value(o, t->name);
    datos_text_printf(o, "\"} %s\n", value);
}

/* Families with a fixed label set render every series, zeros included, so
 * rate() and increase() see a counter's first step; code-labelled counters
 * render the statuses seen, and per-table gauges only a table that has a
 * value (an age of 0 for a table never fetched would read as fresh). */
char *datos_metrics_render(apr_pool_t *p, const datos_metrics_t *m,
                           apr_time_t now, apr_size_t *len)
{
    datos_text_t o;
    char num[32];
    long long tables, i;
    int h, t, r, l;

    if (len) {
        *len = 0;
    }
    /* Zeroed memory is a valid empty block; anything else is not ours. */
    if (!m
        || !((m->magic == METRICS_MAGIC && m->version == METRICS_VERSION)
             || (m->magic == 0 && m->version == 0))) {
        return NULL;
    }
    datos_text_init(&o, p, 16384);

    out_family(
        &o, "datos_http_requests_total", "counter",
        "Requests answered by the module's handlers, by handler and HTTP status sent.");
    for (h = 0; h < DATOS_HANDLER_COUNT; h++) {
        out_codes(&o, "datos_http_requests_total",
                  apr_psprintf(p, "handler=\"%s\"", handler_names[h]),
                  m->requests[h]);
    }

    out_family(&o, "datos_http_request_duration_seconds", "histogram",
               "Time the module's handlers took to answer, by handler.");
    for (h = 0; h < DATOS_HANDLER_COUNT; h++) {
        out_histogram(&o, "datos_http_request_duration_seconds",
                      apr_psprintf(p, "handler=\"%s\"", handler_names[h]),
                      &m->request_duration[h], request_bounds,
                      NBOUNDS(request_bounds));
    }

    out_family(
        &o, "datos_cache_lookups_total", "counter",
        "Cache lookups by tier and result (hit fresh, stale servable, miss, error of the tier).");
    for (t = 0; t < DATOS_TIER_COUNT; t++) {
        for (r = 0; r < DATOS_LOOKUP_COUNT; r++) {
            datos_text_printf(
                &o,
                "datos_cache_lookups_total{tier=\"%s\",result=\"%s\"} %llu\n",
                tier_names[t], lookup_names[r], get(&m->lookups[t][r]));
        }
    }

    out_family(&o, "datos_backend_queries_total", "counter",
               "BigQuery fetches by outcome: ok or the class of the failure.");
    for (i = 0; i < (long long)OUTCOME_COUNT; i++) {
        datos_text_printf(&o,
                          "datos_backend_queries_total{outcome=\"%s\"} %llu\n",
                          outcome_names[i], get(&m->backend[i]));
    }

    out_family(&o, "datos_backend_query_duration_seconds", "histogram",
               "Time each BigQuery fetch took, whatever its outcome.");
    out_histogram(&o, "datos_backend_query_duration_seconds", NULL,
                  &m->backend_duration, backend_bounds,
                  NBOUNDS(backend_bounds));

    out_family(&o, "datos_backend_bytes_processed_total", "counter",
               "Bytes BigQuery reported as processed by the module's queries.");
    datos_text_printf(&o, "datos_backend_bytes_processed_total %llu\n",
                      get(&m->backend_bytes));

    out_family(&o, "datos_backend_bytes_billed_total", "counter",
               "Bytes BigQuery billed for the module's queries (at least "
               "10 MiB a query).");
    datos_text_printf(&o, "datos_backend_bytes_billed_total %llu\n",
                      get(&m->backend_billed));

    out_family(&o, "datos_cache_store_failures_total", "counter",
               "Fetched answers a cache tier failed to store, by tier.");
    for (t = 0; t < DATOS_TIER_COUNT; t++) {
        datos_text_printf(
            &o, "datos_cache_store_failures_total{tier=\"%s\"} %llu\n",
            tier_names[t], get(&m->store_failures[t]));
    }

    out_family(
        &o, "datos_cache_oversized_total", "counter",
        "Answers larger than DatosMaxPayload, kept in process memory only.");
    datos_text_printf(&o, "datos_cache_oversized_total %llu\n",
                      get(&m->oversized));

    out_family(
        &o, "datos_cache_entries_refused_total", "counter",
        "Entries read from a cache tier and refused as untrusted: a seal that does not match (another secret, key or bytes), or a fetch time in the future.");
    for (t = DATOS_TIER_L2; t < DATOS_TIER_COUNT; t++) {
        for (r = 0; r < DATOS_REFUSED_COUNT; r++) {
            datos_text_printf(&o,
                              "datos_cache_entries_refused_total{tier=\"%s\","
                              "reason=\"%s\"} %llu\n",
                              tier_names[t], refused_names[r],
                              get(&m->refused[t][r]));
        }
    }

    tables =
        atomic_load_explicit((atomic_llong *)&m->tables, memory_order_acquire);
    if (tables > DATOS_METRICS_TABLES) {
        tables = DATOS_METRICS_TABLES;
    }
    out_family(
        &o, "datos_cache_age_seconds", "gauge",
        "Seconds since the newest answer for the table was fetched from BigQuery.");
    for (i = 0; i < tables; i++) {
        apr_int64_t f = atomic_load_explicit(
            (atomic_llong *)&m->table[i].fetched, memory_order_relaxed);
        if (f > 0) {
            out_table_gauge(&o, "datos_cache_age_seconds", &m->table[i],
                            seconds(num, now > f ? now - f : 0));
        }
    }

    out_family(
        &o, "datos_backend_last_success_timestamp_seconds", "gauge",
        "Unix time of the last successful BigQuery fetch for the table.");
    for (i = 0; i < tables; i++) {
        apr_int64_t s = atomic_load_explicit(
            (atomic_llong *)&m->table[i].success, memory_order_relaxed);
        if (s > 0) {
            out_table_gauge(&o, "datos_backend_last_success_timestamp_seconds",
                            &m->table[i], seconds(num, s));
        }
    }

    out_family(
        &o, "datos_backend_waiting_requests", "gauge",
        "Requests on this host waiting on BigQuery now, in a fetch or for another request's fetch.");
    datos_text_printf(&o, "datos_backend_waiting_requests %lld\n",
                      atomic_load_explicit((atomic_llong *)&m->waiting,
                                           memory_order_relaxed));

    out_family(
        &o, "datos_backend_wait_rejected_total", "counter",
        "Requests answered 503 because the bound on requests waiting on BigQuery was reached.");
    datos_text_printf(&o, "datos_backend_wait_rejected_total %llu\n",
                      get(&m->wait_rejected));

    out_family(
        &o, "datos_keepalive_lingers_total", "counter",
        "Waits of the worker that answered /datos for its kept-alive connection's next request (DatosKeepAliveLinger), by how they ended.");
    for (l = 0; l < DATOS_LINGER_COUNT; l++) {
        datos_text_printf(
            &o, "datos_keepalive_lingers_total{outcome=\"%s\"} %llu\n",
            linger_names[l], get(&m->linger[l]));
    }

    out_family(&o, "datos_ingest_requests_total", "counter",
               "POST /datos requests by HTTP status sent.");
    out_codes(&o, "datos_ingest_requests_total", NULL, m->ingest);

    out_family(&o, "datos_ingest_publish_duration_seconds", "histogram",
               "Time each Pub/Sub publish of an ingested body took.");
    out_histogram(&o, "datos_ingest_publish_duration_seconds", NULL,
                  &m->ingest_duration, ingest_bounds, NBOUNDS(ingest_bounds));

    if (len) {
        *len = o.len;
    }
    return o.buf;
}
