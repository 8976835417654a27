/* fuzz_common.h - shared by the libFuzzer targets: APR set up once, and the
 * optional "NNN\n" prefix that lets a corpus file carry an HTTP status. */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include <stdint.h>
#include <stdlib.h>
#include <apr_general.h>
#include <apr_pools.h>

#define FUZZ_CHECK(cond)      \
    do {                      \
        if (!(cond))          \
            __builtin_trap(); \
    } while (0)

static inline void fuzz_apr_init(void)
{
    static int done;

    if (!done) {
        if (apr_initialize() != APR_SUCCESS) {
            abort();
        }
        atexit(apr_terminate);
        done = 1;
    }
}

/* "404\n<body>" -> status 404 and the body after the newline; anything
 * else -> the fallback status and the whole input. */
static inline int fuzz_status(const uint8_t **data, size_t *size, int fallback)
{
    const uint8_t *d = *data;

    if (*size >= 4 && d[0] >= '1' && d[0] <= '5' && d[1] >= '0' && d[1] <= '9'
        && d[2] >= '0' && d[2] <= '9' && d[3] == '\n') {
        *data += 4;
        *size -= 4;
        return (d[0] - '0') * 100 + (d[1] - '0') * 10 + (d[2] - '0');
    }
    return fallback;
}

#endif
