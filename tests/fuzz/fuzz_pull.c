/* fuzz_pull.c - subscriptions.pull answers, as Pub/Sub (or something in
 * between) could send them. Whatever parses must be usable: each entry is
 * either marked or complete; complete ones must dead-letter, publish and
 * ack into bodies jansson reads, and their data round-trips through
 * base64. */
#include <string.h>
#include <jansson.h>

#include "fuzz_common.h"
#include "datos_base64.h"
#include "datos_pubsub.h"
#include "datos_time.h"
#include "datos_utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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
    apr_array_header_t *msgs = NULL, *bodies;
    datos_pubsub_out_t *out;
    const char **acks;
    datos_err_t err = {0};
    apr_pool_t *p;
    int i, nout = 0, nacks = 0;

    fuzz_apr_init();
    if (apr_pool_create(&p, NULL) != APR_SUCCESS) {
        abort();
    }
    datos_err_clear(&err);
    if (datos_pubsub_parse_pull(p, (const char *)data, size, &msgs, &err)
        != APR_SUCCESS) {
        FUZZ_CHECK(err.rv == DATOS_EMALFORMED && err.message != NULL);
        FUZZ_CHECK(msgs == NULL);
        apr_pool_destroy(p);
        return 0;
    }
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
