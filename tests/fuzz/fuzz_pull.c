/* fuzz_pull.c - subscriptions.pull answers, as Pub/Sub (or something in
 * between) could send them. The parser of the loader's hot path
 * (datos_pubsub_pull.c) must read every answer as the jansson reference
 * does (tests/unit/dt_jansson.c), except where jansson refuses what RFC
 * 8259 allows (a key holding U+0000, numbers out of its range) or takes
 * what it does not (a raw NUL byte after a number or a literal). The
 * scanner that releases the leases of answers too large to read must find
 * the same ack ids whatever pieces the answer arrives in, and an answer
 * cut where it says must read as the start of the whole one. Whatever
 * parses must be usable: each entry is either marked or complete;
 * complete ones must dead-letter, publish and ack into bodies jansson
 * reads, and their data round-trips through base64. */
#include <string.h>
#include <jansson.h>

#include "fuzz_common.h"
#include "datos_base64.h"
#include "datos_pubsub.h"
#include "datos_pubsub_pull.h"
#include "datos_pubsub_scan.h"
#include "datos_time.h"
#include "datos_utf8.h"
#include "dt_jansson.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int same_str(const char *a, const char *b)
{
    return a == b || (a && b && !strcmp(a, b));
}

static int same_msg(const datos_pubsub_msg_t *a, const datos_pubsub_msg_t *b)
{
    int k;

    if (!same_str(a->ack_id, b->ack_id) || !same_str(a->problem, b->problem)
        || !same_str(a->message_id, b->message_id)
        || !same_str(a->publish_time, b->publish_time)
        || !same_str(a->ordering_key, b->ordering_key)
        || a->publish_time_us != b->publish_time_us
        || a->delivery_attempt != b->delivery_attempt
        || a->data_len != b->data_len || memcmp(a->data, b->data, a->data_len)
        || a->attributes->nelts != b->attributes->nelts) {
        return 0;
    }
    for (k = 0; k < a->attributes->nelts; k++) {
        const datos_attr_t *x = &APR_ARRAY_IDX(a->attributes, k, datos_attr_t);
        const datos_attr_t *y = &APR_ARRAY_IDX(b->attributes, k, datos_attr_t);
        if (strcmp(x->key, y->key) || x->value_len != y->value_len
            || memcmp(x->value, y->value, x->value_len)) {
            return 0;
        }
    }
    return 1;
}

/* jansson refuses these where RFC 8259 does not. */
static int jansson_only_refusal(const char *message)
{
    return message
           && (strstr(message, "NUL byte in object key")
               || strstr(message, "too big integer")
               || strstr(message, "too big negative integer")
               || strstr(message, "real number overflow"));
}

static datos_pull_scan_t *scan_in_pieces(apr_pool_t *p, const uint8_t *data,
                                         size_t size, apr_size_t limit,
                                         unsigned seed)
{
    datos_pull_scan_t *sc = datos_pull_scan_create(p, limit);
    size_t off = 0;

    while (off < size) {
        size_t n = 1 + (seed = seed * 1103515245u + 12345u) % 97;
        if (n > size - off) {
            n = size - off;
        }
        datos_pull_scan_feed(sc, (const char *)data + off, n);
        off += n;
    }
    return sc;
}

static int scanned_ack(const datos_pull_scan_t *sc, const char *ack,
                       apr_size_t from)
{
    const apr_array_header_t *e = datos_pull_scan_entries(sc);
    int i;

    for (i = 0; i < e->nelts; i++) {
        const datos_pull_entry_t *x = &APR_ARRAY_IDX(e, i, datos_pull_entry_t);
        if (x->start >= from && x->ack_id && !strcmp(x->ack_id, ack)) {
            return 1;
        }
    }
    return 0;
}

/* The scanner against the parser: the same entries whatever the pieces,
 * every plain ack id the parser read, and a cut that reads as a prefix. */
static void check_scanner(apr_pool_t *p, const uint8_t *data, size_t size,
                          const apr_array_header_t *msgs)
{
    datos_pull_scan_t *whole = datos_pull_scan_create(p, size), *pieces;
    const apr_array_header_t *a, *b;
    apr_array_header_t *cut_msgs;
    apr_size_t limit, cut;
    datos_err_t err;
    const char *list;
    int i, plain, one_list;

    datos_pull_scan_feed(whole, (const char *)data, size);
    pieces = scan_in_pieces(p, data, size, size, (unsigned)size);
    a = datos_pull_scan_entries(whole);
    b = datos_pull_scan_entries(pieces);
    FUZZ_CHECK(a->nelts == b->nelts);
    for (i = 0; i < a->nelts; i++) {
        const datos_pull_entry_t *x = &APR_ARRAY_IDX(a, i, datos_pull_entry_t);
        const datos_pull_entry_t *y = &APR_ARRAY_IDX(b, i, datos_pull_entry_t);
        FUZZ_CHECK(x->start == y->start && x->end == y->end
                   && same_str(x->ack_id, y->ack_id));
        FUZZ_CHECK(x->start < x->end && x->end <= size);
    }
    FUZZ_CHECK(datos_pull_scan_cut(whole) == datos_pull_scan_cut(pieces));
    FUZZ_CHECK(datos_pull_scan_bytes(pieces) == size);
    if (!msgs) {
        return;
    }
    /* Escapes and a second list are where the scanner need not follow
     * (its ack ids are only ever released). */
    plain = !memchr(data, '\\', size);
    list = plain ? memmem(data, size, "receivedMessages", 16) : NULL;
    one_list = list
               && !memmem(list + 16,
                          size - (apr_size_t)(list + 16 - (const char *)data),
                          "receivedMessages", 16);
    if (!plain) {
        return;
    }
    for (i = 0; i < msgs->nelts; i++) {
        const datos_pubsub_msg_t *m =
            &APR_ARRAY_IDX(msgs, i, datos_pubsub_msg_t);
        if (m->ack_id && strlen(m->ack_id) <= 256) {
            FUZZ_CHECK(scanned_ack(whole, m->ack_id, 0));
        }
    }
    if (!one_list) {
        return;
    }
    limit =
        size > 1 ? (apr_size_t)(data[size - 1] * 131u + size / 3) % size : 0;
    pieces = scan_in_pieces(p, data, size, limit, (unsigned)limit);
    cut = datos_pull_scan_cut(pieces);
    if (!cut) {
        return;
    }
    FUZZ_CHECK(cut <= limit);
    datos_err_clear(&err);
    FUZZ_CHECK(
        datos_pubsub_parse_pull_cut(p, (const char *)data, cut, &cut_msgs, &err)
        == APR_SUCCESS);
    FUZZ_CHECK(cut_msgs->nelts <= msgs->nelts);
    for (i = 0; i < msgs->nelts; i++) {
        const datos_pubsub_msg_t *m =
            &APR_ARRAY_IDX(msgs, i, datos_pubsub_msg_t);
        if (i < cut_msgs->nelts) {
            FUZZ_CHECK(
                same_msg(m, &APR_ARRAY_IDX(cut_msgs, i, datos_pubsub_msg_t)));
        }
        else if (m->ack_id && strlen(m->ack_id) <= 256) {
            /* past the cut: released */
            FUZZ_CHECK(scanned_ack(pieces, m->ack_id, cut));
        }
    }
}


static void check_bodies(const apr_array_header_t *bodies, int n)
{
    int i, next = 0;

    for (i = 0; i < bodies->nelts; i++) {
        const datos_pubsub_body_t *b =
            &APR_ARRAY_IDX(bodies, i, datos_pubsub_body_t);
        json_error_t jerr;
        json_t *j = json_loadb(b->body, b->len,
                               JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
        FUZZ_CHECK(j != NULL);
        FUZZ_CHECK(strlen(b->body) == b->len);
        FUZZ_CHECK(b->first == next && b->count >= 1);
        next += b->count;
        json_decref(j);
    }
    FUZZ_CHECK(next == n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_array_header_t *msgs = NULL, *jmsgs = NULL, *bodies;
    datos_pubsub_out_t *out;
    const char **acks;
    datos_err_t err = {0}, jerr = {0};
    apr_status_t rv, jrv;
    apr_pool_t *p;
    int i, nout = 0, nacks = 0;

    fuzz_apr_init();
    if (apr_pool_create(&p, NULL) != APR_SUCCESS) {
        abort();
    }
    datos_err_clear(&err);
    rv = datos_pubsub_parse_pull(p, (const char *)data, size, &msgs, &err);
    datos_err_clear(&jerr);
    jrv = dt_parse_pull_jansson(p, (const char *)data, size, &jmsgs, &jerr);
    if (rv != APR_SUCCESS) {
        FUZZ_CHECK(err.rv == DATOS_EMALFORMED && err.message != NULL);
        FUZZ_CHECK(msgs == NULL);
        /* jansson skips a raw NUL byte right after a number or a literal
         * (its reader takes NUL for the end of its buffer); RFC 8259 and
         * the parser do not. */
        FUZZ_CHECK(jrv != APR_SUCCESS || memchr(data, 0, size));
        check_scanner(p, data, size, NULL);
        apr_pool_destroy(p);
        return 0;
    }
    if (jrv != APR_SUCCESS) {
        FUZZ_CHECK(jansson_only_refusal(jerr.message));
    }
    else {
        FUZZ_CHECK(jmsgs->nelts == msgs->nelts);
        for (i = 0; i < msgs->nelts; i++) {
            FUZZ_CHECK(same_msg(&APR_ARRAY_IDX(msgs, i, datos_pubsub_msg_t),
                                &APR_ARRAY_IDX(jmsgs, i, datos_pubsub_msg_t)));
        }
    }
    check_scanner(p, data, size, msgs);
    out = apr_pcalloc(p, sizeof(*out) * (apr_size_t)(msgs->nelts + 1));
    acks = apr_pcalloc(p, sizeof(*acks) * (apr_size_t)(msgs->nelts + 1));
    for (i = 0; i < msgs->nelts; i++) {
        const datos_pubsub_msg_t *m =
            &APR_ARRAY_IDX(msgs, i, datos_pubsub_msg_t);
        apr_array_header_t *attrs;
        unsigned char *back;
        apr_size_t n;
        const char *b64;

        FUZZ_CHECK(m->attributes != NULL && m->data != NULL);
        FUZZ_CHECK(m->data[m->data_len] == '\0');
        if (m->ack_id) {
            FUZZ_CHECK(*m->ack_id);
            acks[nacks++] = m->ack_id;
        }
        if (m->problem) {
            FUZZ_CHECK(datos_utf8_check((const unsigned char *)m->problem,
                                        strlen(m->problem))
                       == strlen(m->problem));
            continue;
        }
        FUZZ_CHECK(m->ack_id && m->message_id && *m->message_id
                   && m->publish_time);
        FUZZ_CHECK(m->publish_time_us >= DATOS_TS_MIN_US
                   && m->publish_time_us <= DATOS_TS_MAX_US);
        FUZZ_CHECK(m->delivery_attempt >= 0);
        b64 = datos_base64_encode(p, m->data, m->data_len, &n);
        FUZZ_CHECK(datos_base64_decode(p, b64, n, &back, &n) == APR_SUCCESS);
        FUZZ_CHECK(n == m->data_len && !memcmp(back, m->data, n));

        datos_err_clear(&err);
        if (datos_pubsub_deadletter_attrs(p, m, "projects/p/subscriptions/s",
                                          DATOS_REASON_NOT_JSON, "detail",
                                          &attrs, &err)
            != APR_SUCCESS) {
            FUZZ_CHECK(err.rv == DATOS_ETOOLARGE);
            continue;
        }
        FUZZ_CHECK(attrs->nelts <= DATOS_PUBSUB_MAX_ATTRIBUTES);
        out[nout].data = m->data;
        out[nout].data_len = m->data_len;
        out[nout].attributes = attrs;
        out[nout].ordering_key = m->ordering_key;
        nout++;
    }
    FUZZ_CHECK(datos_pubsub_publish_bodies(p, out, nout, &bodies, &err)
               == APR_SUCCESS);
    check_bodies(bodies, nout);
    FUZZ_CHECK(datos_pubsub_ack_bodies(p, acks, nacks, &bodies, &err)
               == APR_SUCCESS);
    check_bodies(bodies, nacks);
    FUZZ_CHECK(datos_pubsub_modack_bodies(p, acks, nacks, 0, &bodies, &err)
               == APR_SUCCESS);
    check_bodies(bodies, nacks);
    apr_pool_destroy(p);
    return 0;
}
