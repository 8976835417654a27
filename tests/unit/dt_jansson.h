/* dt_jansson.h - the record rules through jansson: the reference the
 * validator's scanner is compared with (tests/unit/test_validate.c,
 * tests/fuzz/fuzz_record.c) and the baseline of tests/bench/bench_record.c.
 * Test code only: the product validates with datos_validate.h. */
#ifndef DT_JANSSON_H
#define DT_JANSSON_H

#include <apr_pools.h>
#include "datos_record.h"
#include "datos_rules.h"

/* The rules of datos_record_check through jansson (JSON_REJECT_DUPLICATES),
 * with the same field rules (datos_rules.h). Two jansson limits make it
 * stricter than RFC 8259: a key holding U+0000 and a number outside
 * double/int64 range are not_json here, while datos_record_validate checks
 * only their syntax. Rows point into p. */
apr_status_t dt_record_validate_jansson(apr_pool_t *p, const char *data,
                                        apr_size_t len,
                                        const datos_record_opts_t *opts,
                                        datos_row_t *row, datos_invalid_t *why);

#endif
