/* fuzz_ingest.c - POST /datos's batch path on arbitrary bodies.
 *
 * Checked against jansson as an independent reader: an accepted batch is
 * a JSON array (jansson agrees, within its documented limits) of exactly
 * n elements, each span lies inside the body, holds one JSON object that
 * jansson reads as the same element, and is itself a valid record; a
 * refusal names a reason from the closed list, an index inside the batch
 * (or -1) and a clean message; the answers built from either are JSON. */
#include <string.h>
#include <jansson.h>

#include "fuzz_common.h"
#include "datos_ingest.h"
#include "datos_utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW       APR_INT64_C(1705240800000000)
#define MAX_BATCH 8

static int known_reason(const char *r)
{
    datos_reason_t k;

    if (!r)
        return 0;
    if (!strcmp(r, DATOS_INGEST_EMPTY_BATCH)
        || !strcmp(r, DATOS_INGEST_TOO_MANY))
        return 1;
    k = datos_reason_from_name(r);
    return k > DATOS_REASON_NONE && k < DATOS_REASON_BIGQUERY_REJECTED;
}

static void check_json(apr_pool_t *p, const char *body, apr_size_t len)
{
    json_error_t jerr;
    json_t *j;

    (void)p;
    FUZZ_CHECK(body != NULL && len == strlen(body));
    j = json_loadb(body, len, 0, &jerr);
    FUZZ_CHECK(j != NULL);
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p;
    datos_record_opts_t o;
    datos_ingest_t in;
    datos_ingest_refusal_t why;
    const char *body = (const char *)data;
    apr_size_t len;
    apr_status_t rv;
    int i;

    fuzz_apr_init();
    if (apr_pool_create(&p, NULL) != APR_SUCCESS)
        return 0;
    datos_record_opts_init(&o, NOW);
    rv = datos_ingest_parse(p, body, size, MAX_BATCH, &o, &in, &why);
    if (rv == APR_SUCCESS) {
        const datos_pubsub_out_t *out;
        apr_array_header_t *ids = apr_array_make(p, in.n, sizeof(const char *));

        FUZZ_CHECK(in.n >= 1 && in.n <= MAX_BATCH && (in.batch || in.n == 1));
        for (i = 0; i < in.n; i++) {
            const datos_span_t *e = &in.records[i];
            datos_record_t rec;
            datos_invalid_t inv;

            FUZZ_CHECK(e->data >= body && e->len >= 2
                       && e->data + e->len <= body + size);
            FUZZ_CHECK(e->data[0] == '{' && e->data[e->len - 1] == '}');
            FUZZ_CHECK(datos_record_check(p, e->data, e->len, &o, &rec, &inv)
                       == APR_SUCCESS);
            APR_ARRAY_PUSH(ids, const char *) = "1";
        }
        if (in.batch) {
            json_error_t jerr;
            json_t *arr = json_loadb(body, size, 0, &jerr);

            if (arr) {
                FUZZ_CHECK(json_is_array(arr)
                           && json_array_size(arr) == (size_t)in.n);
                for (i = 0; i < in.n; i++) {
                    json_t *e = json_loadb(in.records[i].data,
                                           in.records[i].len, 0, &jerr);
                    FUZZ_CHECK(
                        e && json_equal(e, json_array_get(arr, (size_t)i)));
                    json_decref(e);
                }
                json_decref(arr);
            }
        }
        FUZZ_CHECK(datos_ingest_messages(p, &in, "192.0.2.1", &out)
                   == APR_SUCCESS);
        for (i = 0; i < in.n; i++)
            FUZZ_CHECK(out[i].data
                       == (const unsigned char *)in.records[i].data);
        check_json(p, datos_ingest_accepted_body(p, in.batch, ids, &len), len);
    }
    else {
        apr_size_t n;

        FUZZ_CHECK(rv == DATOS_EMALFORMED);
        FUZZ_CHECK(known_reason(why.reason));
        FUZZ_CHECK(why.index >= -1 && why.index < MAX_BATCH);
        FUZZ_CHECK(why.message != NULL);
        n = strlen(why.message);
        FUZZ_CHECK(n > 0
                   && datos_utf8_check((const unsigned char *)why.message, n)
                          == n);
        check_json(p, datos_ingest_refusal_body(p, 400, &why, &len), len);
    }
    apr_pool_destroy(p);
    return 0;
}
