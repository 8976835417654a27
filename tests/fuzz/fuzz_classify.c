/* fuzz_classify.c - the one classifier of Google's refusals, fed any
 * status and body: it always answers with a status of its table, a
 * bounded message and a Retry-After inside the clamp. */
#include <string.h>

#include "fuzz_common.h"
#include "datos_google_classify.h"
#include "datos_http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int allowed(apr_status_t rv, datos_google_source_t src)
{
    if (src == DATOS_GOOGLE_TOKEN) {
        return rv == DATOS_EAUTH || rv == DATOS_EBACKEND
               || rv == DATOS_ERATELIMIT || rv == DATOS_EMALFORMED;
    }
    return rv == DATOS_EAUTH || rv == DATOS_EBACKEND || rv == DATOS_ERATELIMIT
           || rv == DATOS_EQUOTA || rv == DATOS_EBYTESLIMIT
           || rv == DATOS_EEXISTS || rv == DATOS_EREJECTED;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p;
    int status, s;

    fuzz_apr_init();
    status = fuzz_status(&data, &size, 503);
    if (apr_pool_create(&p, NULL) != APR_SUCCESS) {
        abort();
    }
    for (s = 0; s < 2; s++) {
        datos_google_source_t src = s ? DATOS_GOOGLE_TOKEN : DATOS_GOOGLE_API;
        datos_err_t err = {0};
        apr_status_t rv;
        size_t i, n;

        rv = datos_google_classify(p, src, status, (const char *)data, size, 0,
                                   &err);
        FUZZ_CHECK(rv == err.rv && allowed(rv, src));
        FUZZ_CHECK(err.http_status == status && err.message != NULL);
        n = strlen(err.message);
        /* "HTTP nnn", a 64-byte reason, a 500-byte message and their marks */
        FUZZ_CHECK(n >= 8 && n < 600);
        for (i = 0; i < n; i++) {
            FUZZ_CHECK((unsigned char)err.message[i] >= 0x20
                       && (unsigned char)err.message[i] != 0x7f);
        }
        FUZZ_CHECK(!err.reason || strlen(err.reason) <= 67);
        FUZZ_CHECK(err.retry_after == 0
                   || (err.retry_after >= DATOS_RETRY_AFTER_MIN
                       && err.retry_after <= DATOS_RETRY_AFTER_MAX));
        /* a Retry-After given is a floor */
        rv = datos_google_classify(p, src, status, (const char *)data, size,
                                   DATOS_RETRY_AFTER_MAX, &err);
        FUZZ_CHECK(err.retry_after == DATOS_RETRY_AFTER_MAX);
    }
    apr_pool_destroy(p);
    return 0;
}
