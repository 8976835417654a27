/* dt_jansson.h - the record rules through jansson: the reference the
 * validator's scanner is compared with (tests/unit/test_validate.c,
 * tests/fuzz/fuzz_record.c) and the baseline of tests/bench/bench_record.c.
 * Test code only: the product validates with datos_validate.h. */
#ifndef DT_JANSSON_H
#define DT_JANSSON_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <jansson.h>
#include "datos_error.h"
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

/* A subscriptions.pull answer read through a jansson tree
 * (JSON_DECODE_ANY | JSON_ALLOW_NUL), with the entry rules of
 * datos_pubsub_parse_pull: the reference that parser is compared with
 * (tests/fuzz/fuzz_pull.c, tests/unit/test_pubsub_wire.c) and the baseline
 * of tests/bench/bench_record.c. jansson refuses more than RFC 8259 does -
 * a key holding U+0000 anywhere, an integer outside int64, a number that
 * overflows a double - so it fails some answers the product reads; on
 * every answer both read, they read the same. */
apr_status_t dt_parse_pull_jansson(apr_pool_t *p, const char *body,
                                   apr_size_t len, apr_array_header_t **msgs,
                                   datos_err_t *err);
apr_status_t dt_pull_from_json(apr_pool_t *p, const json_t *answer,
                               apr_array_header_t **msgs, datos_err_t *err);

#endif
