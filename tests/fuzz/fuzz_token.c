/* fuzz_token.c - token endpoint and metadata server answers. A token that
 * parses is safe to put in a header; a failure never echoes the body. */
#include <string.h>

#include "fuzz_common.h"
#include "datos_auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p;
    datos_err_t err = {0};
    const char *token = NULL;
    apr_interval_time_t expires = 0;
    apr_status_t rv;
    int status;

    fuzz_apr_init();
    status = fuzz_status(&data, &size, 200);
    if (apr_pool_create(&p, NULL) != APR_SUCCESS) {
        abort();
    }
    datos_err_clear(&err);
    rv = datos_token_parse(p, status, (const char *)data, size, &token,
                           &expires, &err);
    if (rv == APR_SUCCESS) {
        size_t i, n;

        FUZZ_CHECK(status >= 200 && status <= 299);
        FUZZ_CHECK(token != NULL && expires > 0);
        n = strlen(token);
        FUZZ_CHECK(n > 0);
        for (i = 0; i < n; i++) {
            FUZZ_CHECK((unsigned char)token[i] > 0x20
                       && (unsigned char)token[i] < 0x7f);
        }
    }
    else {
        FUZZ_CHECK(token == NULL && expires == 0);
        FUZZ_CHECK(err.rv == rv && err.message != NULL);
        FUZZ_CHECK(rv == DATOS_EMALFORMED || rv == DATOS_EAUTH
                   || rv == DATOS_EBACKEND || rv == DATOS_ERATELIMIT);
    }
    apr_pool_destroy(p);
    return 0;
}
