/* fuzz_headers.c - header values read from Google's answers. Retry-After
 * (delay-seconds or any HTTP-date form) must never produce a value outside
 * the documented range, whatever the clock says; a parsed HTTP-date must
 * lie in the years it claims to accept. */
#include <string.h>

#include "fuzz_common.h"
#include "datos_http.h"
#include "datos_time.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* 1970-01-01, a 2024 instant and 9999-12-31T23:59:59Z. */
static const apr_int64_t clocks[] = {0, 1705240800, 253402300799LL};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text;
    apr_int64_t when = -1;
    size_t i;

    fuzz_apr_init();
    /* Header values reach the parser as C strings (curl's header callback
     * copies them), so an embedded NUL ends the value. */
    text = malloc(size + 1);
    if (!text) {
        return 0;
    }
    memcpy(text, data, size);
    text[size] = '\0';

    for (i = 0; i < sizeof(clocks) / sizeof(clocks[0]); i++) {
        apr_interval_time_t v =
            datos_retry_after_parse(text, apr_time_from_sec(clocks[i]));
        FUZZ_CHECK(
            v == 0
            || (v >= DATOS_RETRY_AFTER_MIN && v <= DATOS_RETRY_AFTER_MAX));
        FUZZ_CHECK(v % APR_USEC_PER_SEC == 0);
    }
    if (datos_http_date_parse(text, strlen(text), &when) == APR_SUCCESS) {
        FUZZ_CHECK(when >= 0 && when <= 253402300800LL);
    }
    free(text);
    return 0;
}
