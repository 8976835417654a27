/* bench_record.c - the loader's per-message work, docs/design.md section 8:
 * ">= 250,000 messages per second per core" for what the loader itself
 * does with a message, from the bytes of the pull answer to NDJSON: the
 * pull answer parse, base64, validation and the NDJSON line.
 *
 * The mix: message data sizes drawn 90% from 100-300 B, 9% from 1-4 KiB, 1%
 * exactly 64 KiB (in shuffled order); 10% of the messages invalid, spread
 * over ten reasons. Each message is a real Pub/Sub pull entry (150-byte
 * ackId, 17-digit messageId, nanosecond publishTime, one attribute, base64
 * data), 1,000 to a pull answer, as Pub/Sub returns at most.
 *
 * Timed, from canned pull answer bodies (the HTTP bodies, as bytes), in
 * the loader's order (loader_assemble, then rows_make): reading each
 * answer with datos_pubsub_parse_pull (ack ids, message ids, publish
 * times, attributes, base64 decoding of the data) and checking every
 * message (datos_record_check); then making the load buffer at the size
 * the checked records can need (datos_ndjson_record_max) and appending
 * each valid one as an NDJSON line with message_id and publish_time
 * (datos_ndjson_append_record). Two more rows are printed for comparison:
 * the same with the answers read through a jansson tree, as the loader did
 * before datos_pubsub_pull.c (dt_parse_pull_jansson), and with the jansson
 * reference validator (dt_record_validate_jansson + datos_ndjson_append).
 *
 * Every round checks the counts of valid and invalid messages and the NDJSON
 * size, so a broken pipeline cannot post a good figure. Rounds interleave
 * the pipelines; medians are printed. Each round starts a new pool, as a
 * loader's batch does: its decoded message data (datos_arena) and its
 * load buffer are new memory, so their first touch is in every round; the
 * rest of the pool's memory (ids, arrays) comes back from APR's allocator
 * as a loader's second batch gets its first's. A loader's first batch in
 * a fresh process also faults that rest in: the warm-up round of the
 * first row is that, and its rate is printed below the table (not in the
 * median). Run pinned (make bench-record uses
 * taskset -c 1):
 *
 *     build/bench/bench_record [--messages N] [--rounds R] [--only 0|1|2]
 *
 * --only runs one pipeline (by row number), for profiling (callgrind).
 */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <jansson.h>
#include <apr_general.h>
#include <apr_strings.h>

#include "datos_base64.h"
#include "datos_ndjson.h"
#include "datos_pubsub.h"
#include "datos_pubsub_pull.h"
#include "datos_validate.h"
#include "dt_jansson.h"

#define NOW      APR_INT64_C(1705241100000000) /* 2024-01-14T14:05:00Z */
#define PER_PULL 1000

typedef struct msg_t {
    char *data;
    apr_size_t len;
    int valid;
} msg_t;

static unsigned long long rng = 88172645463325252ULL;

static unsigned long long next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static unsigned pick(unsigned lo, unsigned hi)
{
    return lo + (unsigned)(next_rand() % (hi - lo + 1));
}

/* Text for contenido, exactly n bytes of UTF-8: Spanish words, an accent
 * now and then, and in longer texts an escaped quote and newline. */
static void fill_text(char *o, apr_size_t n)
{
    static const char *const words[] = {
        "prueba ",
        "autom\xc3\xa1tica ",
        "n\xc3\xbamero ",
        "datos ",
        "sensor ",
        "lectura ",
        "estaci\xc3\xb3n ",
        "temperatura ",
        "ma\xc3\xb1"
        "ana ",
        "valor ",
        "\\\"ok\\\" ",
        "l\xc3\xadnea\\n",
    };
    apr_size_t i = 0;

    while (i < n) {
        const char *w = words[next_rand() % (n > 200 ? 12 : 10)];
        apr_size_t k = strlen(w);
        if (i + k > n) {
            memset(o + i, 'x', n - i);
            break;
        }
        memcpy(o + i, w, k);
        i += k;
    }
}

/* One record of about `size` bytes; kind < 0 is valid, 0..9 an invalid
 * variant. */
static msg_t make_record(int serial, apr_size_t size, int kind)
{
    static const char ts_ok[] = "2024-01-14T13:59:58.123456Z";
    char head[512], tail[128], *buf;
    apr_size_t hn, tn, cn;
    const char *ts = ts_ok;
    msg_t m;

    switch (kind) {
    case 0: ts = "2030-01-01T00:00:00Z"; break;         /* future */
    case 5: ts = "2024-01-14 13:59:58Z"; break;         /* space */
    case 9: ts = "2024-01-14T13:59:58.1234567Z"; break; /* 7 digits */
    default: break;
    }
    if (kind == 1) {
        hn = (apr_size_t)snprintf(head, sizeof(head), "{\"contenido\":\"");
    }
    else if (kind == 4) {
        hn = (apr_size_t)snprintf(
            head, sizeof(head),
            "{\"id\":\"s-%d\",\"id\":\"d\",\"contenido\":\"", serial);
    }
    else if (kind == 6) {
        hn = (apr_size_t)snprintf(
            head, sizeof(head), "{\"id\":\"%0300d\",\"contenido\":\"", serial);
    }
    else if (kind == 8) {
        hn = (apr_size_t)snprintf(head, sizeof(head),
                                  "{\"id\":\"s-%d\",\"contenido\":12,"
                                  "\"x\":\"",
                                  serial);
    }
    else {
        hn = (apr_size_t)snprintf(head, sizeof(head),
                                  "{\"id\":\"sensor-%d\",\"contenido\":\"",
                                  serial);
    }
    tn = (apr_size_t)snprintf(tail, sizeof(tail), "\",\"timestamp\":\"%s\"%s}",
                              ts, kind == 2 ? ",\"colour\":\"red\"" : "");
    cn = size > hn + tn + 1 ? size - hn - tn : 1;
    buf = malloc(hn + cn + tn + 1);
    memcpy(buf, head, hn);
    fill_text(buf + hn, cn);
    if (kind == 7) {
        buf[hn + cn / 2] = (char)0xff; /* not UTF-8 */
    }
    memcpy(buf + hn + cn, tail, tn);
    m.len = hn + cn + tn;
    if (kind == 3) {
        m.len--; /* not JSON */
    }
    buf[m.len] = '\0';
    m.data = buf;
    m.valid = kind < 0;
    return m;
}

typedef struct bench_t {
    int n;
    msg_t *msgs;
    int pulls;
    char **texts; /* pull answer bodies */
    apr_size_t *text_len;
    apr_size_t data_bytes, text_bytes;
    int valid;
    apr_size_t ndjson_bytes
        [3]; /* per pipeline, from its first run; checked in later ones */
} bench_t;

static void build(bench_t *b, apr_pool_t *p)
{
    int i, k;

    b->msgs = calloc((size_t)b->n, sizeof(msg_t));
    for (i = 0; i < b->n; i++) {
        int cls = i % 100,
            kind = next_rand() % 10 == 0 ? (int)(next_rand() % 10) : -1;
        apr_size_t size = cls < 90   ? pick(100, 300)
                          : cls < 99 ? pick(1024, 4096)
                                     : 65536;
        b->msgs[i] = make_record(i, size, kind);
        b->data_bytes += b->msgs[i].len;
        b->valid += b->msgs[i].valid;
    }
    /* shuffle so the large messages do not come at a fixed stride */
    for (i = b->n - 1; i > 0; i--) {
        int j = (int)(next_rand() % (unsigned long long)(i + 1));
        msg_t t = b->msgs[i];
        b->msgs[i] = b->msgs[j];
        b->msgs[j] = t;
    }
    b->pulls = (b->n + PER_PULL - 1) / PER_PULL;
    b->texts = calloc((size_t)(unsigned)b->pulls, sizeof(char *));
    b->text_len = calloc((size_t)(unsigned)b->pulls, sizeof(apr_size_t));
    for (k = 0; k < b->pulls; k++) {
        apr_size_t cap = 64, len;
        char *t, *o;
        int first = k * PER_PULL,
            last = first + PER_PULL < b->n ? first + PER_PULL : b->n;

        for (i = first; i < last; i++) {
            cap += b->msgs[i].len / 3 * 4 + 512;
        }
        t = malloc(cap);
        o = t + sprintf(t, "{\"receivedMessages\":[");
        for (i = first; i < last; i++) {
            const char *b64 =
                datos_base64_encode(p, (const unsigned char *)b->msgs[i].data,
                                    b->msgs[i].len, &len);
            o += sprintf(
                o,
                "%s{\"ackId\":\"UAYWLF1GSFE3GQhoUQ5PXiM_NSAoRRIJB08CKF15MEorQVh0"
                "Dj4NGXJ9YV0RYVFJTFUiVCYTFWIJBlEfABJ7XFcYDSEUTVNoDFo3CU9iXH4"
                "PXlBaQ3tUXFkJdm1lJ2%08d\",\"message\":{\"data\":\"",
                i > first ? "," : "", i);
            memcpy(o, b64, len);
            o += len;
            o += sprintf(
                o,
                "\",\"attributes\":{\"source\":\"web\"},\"messageId\":\"%017d\","
                "\"publishTime\":\"2024-01-14T14:00:00.%09dZ\"},\"deliveryAttempt\":1}",
                11473219 + i, i);
        }
        o += sprintf(o, "]}");
        b->texts[k] = t;
        b->text_len[k] = (apr_size_t)(o - t);
        b->text_bytes += b->text_len[k];
        apr_pool_clear(p);
    }
}

/* The thread's CPU time: "per core" is the work one core does, and on a
 * shared machine the wall clock would also count the time the scheduler
 * gave the pinned CPU to other programs. */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

enum {
    SCANNER,
    JANSSON_PULL,
    JANSSON,
    NPIPES
};
static const char *const pipe_names[NPIPES] = {
    "pull body bytes -> parse -> validate (scanner) -> NDJSON",
    "pull body bytes -> jansson tree (before) -> validate (scanner) -> NDJSON",
    "pull body bytes -> parse -> validate (jansson reference) -> NDJSON",
};

/* A message that passed, kept for the NDJSON as the loader keeps its
 * batch's items. */
typedef struct kept_t {
    const datos_pubsub_msg_t *m;
    datos_record_t rec; /* SCANNER, JANSSON_PULL */
    datos_row_t row;    /* JANSSON */
} kept_t;

/* One pass over all messages, in the loader's order (loader_assemble,
 * then rows_make): every answer read and every message checked, then the
 * NDJSON buffer made once at the size the checked records can need and
 * their lines written. Returns the seconds it took. */
static double run(bench_t *b, int pipe)
{
    datos_record_opts_t o;
    apr_pool_t *p;
    apr_array_header_t *kept;
    datos_ndjson_t *nd;
    int k, i, valid = 0, invalid = 0,
              columns = DATOS_NDJSON_MESSAGE_ID | DATOS_NDJSON_PUBLISH_TIME;
    apr_size_t nbytes, bound = 0;
    double t0, t1;

    datos_record_opts_init(&o, NOW);
    if (apr_pool_create(&p, NULL) != APR_SUCCESS) {
        exit(2);
    }
    t0 = now_s();
    kept = apr_array_make(p, 64, sizeof(kept_t));
    for (k = 0; k < b->pulls; k++) {
        apr_array_header_t *msgs;
        datos_err_t err;
        apr_status_t rv;

        datos_err_clear(&err);
        if (pipe == JANSSON_PULL) {
            rv = dt_parse_pull_jansson(p, b->texts[k], b->text_len[k], &msgs,
                                       &err);
        }
        else {
            rv = datos_pubsub_parse_pull(p, b->texts[k], b->text_len[k], &msgs,
                                         &err);
        }
        if (rv != APR_SUCCESS) {
            fprintf(stderr, "bench: pull answer refused: %s\n", err.message);
            exit(2);
        }
        for (i = 0; i < msgs->nelts; i++) {
            const datos_pubsub_msg_t *m =
                &APR_ARRAY_IDX(msgs, i, datos_pubsub_msg_t);
            datos_invalid_t why;
            kept_t *kp = apr_array_push(kept);

            if (m->problem) {
                fprintf(stderr, "bench: %s\n", m->problem);
                exit(2);
            }
            kp->m = m;
            if (pipe == JANSSON) {
                rv = dt_record_validate_jansson(
                    p, (const char *)m->data, m->data_len, &o, &kp->row, &why);
            }
            else {
                rv = datos_record_check(p, (const char *)m->data, m->data_len,
                                        &o, &kp->rec, &why);
            }
            if (rv != APR_SUCCESS) {
                kept->nelts--;
                invalid++;
                continue;
            }
            valid++;
        }
    }
    /* The jansson reference gives rows, for which libdatos has no size
     * bound: its buffer grows as the lines come. */
    for (i = 0; pipe != JANSSON && i < kept->nelts; i++) {
        const kept_t *kp = &APR_ARRAY_IDX(kept, i, kept_t);
        bound += datos_ndjson_record_max(columns, &kp->rec,
                                         strlen(kp->m->message_id));
    }
    if (datos_ndjson_create(p, columns, bound, &nd) != APR_SUCCESS) {
        exit(2);
    }
    for (i = 0; i < kept->nelts; i++) {
        const kept_t *kp = &APR_ARRAY_IDX(kept, i, kept_t);
        const datos_pubsub_msg_t *m = kp->m;
        apr_status_t rv =
            pipe == JANSSON
                ? datos_ndjson_append(nd, &kp->row, m->message_id,
                                      strlen(m->message_id), m->publish_time_us)
                : datos_ndjson_append_record(nd, &kp->rec, m->message_id,
                                             strlen(m->message_id),
                                             m->publish_time_us);
        if (rv != APR_SUCCESS) {
            fprintf(stderr, "bench: NDJSON append failed\n");
            exit(2);
        }
    }
    t1 = now_s();
    datos_ndjson_data(nd, &nbytes);
    if (valid != b->valid || invalid != b->n - b->valid
        || datos_ndjson_lines(nd) != valid
        || (b->ndjson_bytes[pipe] && nbytes != b->ndjson_bytes[pipe])) {
        fprintf(
            stderr,
            "bench: %s: %d valid / %d invalid, %lu NDJSON bytes; want %d / %d, "
            "%lu\n",
            pipe_names[pipe], valid, invalid, (unsigned long)nbytes, b->valid,
            b->n - b->valid, (unsigned long)b->ndjson_bytes[pipe]);
        exit(1);
    }
    b->ndjson_bytes[pipe] = nbytes;
    apr_pool_destroy(p);
    return t1 - t0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    bench_t b;
    apr_pool_t *p;
    double secs[NPIPES][64], rate[64], scanner = 0, first = 0;
    int rounds = 7, only = -1, r, k, i, cpus;
    cpu_set_t set;

    memset(&b, 0, sizeof(b));
    b.n = 50000;
    for (i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--messages")) {
            b.n = atoi(argv[i + 1]);
        }
        else if (!strcmp(argv[i], "--rounds")) {
            rounds = atoi(argv[i + 1]);
        }
        else if (!strcmp(argv[i], "--only")) {
            only = atoi(argv[i + 1]);
        }
    }
    if (b.n < 100 || rounds < 1 || rounds > 64 || only >= NPIPES) {
        fprintf(stderr,
                "usage: bench_record [--messages N>=100] [--rounds 1..64] "
                "[--only 0..2]\n");
        return 2;
    }
    if (apr_initialize() != APR_SUCCESS
        || apr_pool_create(&p, NULL) != APR_SUCCESS) {
        return 2;
    }
    build(&b, p);
    cpus = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : -1;

    for (k = 0; k < NPIPES; k++) {
        if (only < 0 || k == only) {
            double t = run(&b, k); /* warm-up; fixes the NDJSON sizes */
            first = k == SCANNER ? t : first;
        }
    }
    for (r = 0; r < rounds; r++) {
        for (k = 0; k < NPIPES; k++) {
            int pipe = (k + r) % NPIPES; /* interleaved, rotating order */
            secs[pipe][r] = only < 0 || pipe == only ? run(&b, pipe) : 1e300;
        }
    }

    printf("# Loader parse + validate + encode throughput\n\n");
    printf(
        "%d messages (%d pull answers of up to %d), %.1f MB of message data, "
        "%.1f MB of pull JSON; %d valid, %d invalid (%.1f%%); %.1f MB of NDJSON. "
        "%d rounds, medians of CPU time; process allowed on %d CPU(s)%s.\n\n",
        b.n, b.pulls, PER_PULL, b.data_bytes / 1e6, b.text_bytes / 1e6, b.valid,
        b.n - b.valid, 100.0 * (b.n - b.valid) / b.n,
        b.ndjson_bytes[SCANNER] / 1e6, rounds, cpus,
        cpus == 1 ? " (pinned)" : "");
    printf(
        "| pipeline | msg/s | MB/s message data | MB/s pull JSON | slowest/fastest round |\n");
    printf("|---|---|---|---|---|\n");
    for (k = 0; k < NPIPES; k++) {
        double med, lo = 1e300, hi = 0;
        if (only >= 0 && k != only) {
            continue;
        }
        for (r = 0; r < rounds; r++) {
            rate[r] = b.n / secs[k][r];
            lo = rate[r] < lo ? rate[r] : lo;
            hi = rate[r] > hi ? rate[r] : hi;
        }
        med = median(rate, rounds);
        printf("| %s | %.0f | %.0f | %.0f | %.2f |\n", pipe_names[k], med,
               med * (double)b.data_bytes / b.n / 1e6,
               med * (double)b.text_bytes / b.n / 1e6, lo / hi);
        if (k == SCANNER) {
            scanner = med;
        }
    }
    if (first > 0) {
        printf(
            "\nThe first row's warm-up round, the first in this process (all of "
            "its pool memory new, as in a loader's first batch): %.0f msg/s; "
            "not in the median.\n",
            b.n / first);
    }
    printf(
        "\nTarget (docs/design.md 8): >= 250000 msg/s per core for the first row: %s\n",
        scanner >= 250000 ? "met" : "NOT MET");
    return scanner >= 250000 ? 0 : 1;
}
