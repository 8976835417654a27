/* fuzz_timestamp.c - TIMESTAMP cells and RFC 3339 text: whatever parses
 * must render, and rendering must parse back to the same instant. */
#include <stdio.h>
#include <string.h>

#include "fuzz_common.h"
#include "datos_error.h"
#include "datos_time.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int is_int64_form(const uint8_t *d, size_t n)
{
    size_t i = n && d[0] == '-' ? 1 : 0;

    if (i == n) {
        return 0;
    }
    for (; i < n; i++) {
        if (d[i] < '0' || d[i] > '9') {
            return 0;
        }
    }
    return 1;
}

static void check_renders(apr_int64_t us)
{
    char buf[DATOS_TS_BUFSIZE];
    apr_int64_t back = 0;
    apr_size_t n = datos_ts_format(us, buf);

    FUZZ_CHECK(n == 25 || n == 32);
    FUZZ_CHECK(strlen(buf) == n);
    FUZZ_CHECK(datos_ts_parse_rfc3339(buf, n, &back) == APR_SUCCESS);
    FUZZ_CHECK(back == us);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    apr_int64_t us = 0;

    fuzz_apr_init();
    if (datos_ts_parse_cell(text, size, &us) == APR_SUCCESS) {
        FUZZ_CHECK(us >= DATOS_TS_MIN_US && us <= DATOS_TS_MAX_US);
        check_renders(us);
        if (is_int64_form(data, size)) {
            /* the exact form: its canonical text means the same value */
            char cell[32];
            apr_int64_t again = 1;
            int m = snprintf(cell, sizeof(cell), "%lld", (long long)us);
            FUZZ_CHECK(datos_ts_parse_cell(cell, (apr_size_t)m, &again)
                       == APR_SUCCESS);
            FUZZ_CHECK(again == us);
        }
    }
    else {
        FUZZ_CHECK(us == 0);
    }
    us = 0;
    if (datos_ts_parse_rfc3339(text, size, &us) == APR_SUCCESS) {
        check_renders(us);
    }
    return 0;
}
