/* datos_pubsub_pull.h - reading subscriptions.pull answers
 * (docs/google-apis.md 1.5): the parser of a whole answer (the scanner that
 * finds the ack ids of one too large or too broken to use is
 * datos_pubsub_scan.h's). No network; the client that pulls is
 * datos_pubsub_client.h's.
 */
#ifndef DATOS_PUBSUB_PULL_H
#define DATOS_PUBSUB_PULL_H

#include <apr_pools.h>
#include <apr_tables.h>
#include "datos_error.h"
#include "datos_pubsub.h"

/* Nesting deeper than this fails an answer, as it fails jansson (its
 * JSON_PARSER_MAX_DEPTH, counted per value). */
#define DATOS_PULL_MAX_DEPTH 2048

/* Reads a subscriptions.pull answer: `{}` or {"receivedMessages":[...]}
 * into *msgs, an array of datos_pubsub_msg_t (empty for `{}`), all in p:
 * nothing points into body.
 *
 * An answer that is not RFC 8259 JSON, not an object, or whose
 * receivedMessages is not an array is DATOS_EMALFORMED as a whole: nothing
 * in it can be trusted. A defect confined to one entry (no ackId or
 * messageId, or one holding U+0000; a bad publishTime; data that is not
 * base64; attributes that are not strings or a key holding U+0000; a bad
 * deliveryAttempt or orderingKey) only marks that entry: problem names it
 * and the other
 * entries come back as usual. Failing the whole answer instead would
 * stall the subscription behind one entry forever. Marked entries must
 * not be validated, loaded, acked or dead-lettered by the loader (their
 * data may not be what was published); one with an ackId is to be nacked
 * (modifyAckDeadline 0), so Pub/Sub redelivers it and, past the
 * subscription's maxDeliveryAttempts, moves it to the subscription's own
 * dead-letter topic (docs/design.md section 5: the last resort). Unknown
 * fields are ignored; a key given twice counts with its last value, in
 * the place of its first (as jansson reads it).
 *
 * The answer is scanned once, without a tree: strings are copied (and
 * data decoded) straight into p. jansson reads everything else datos
 * receives; this is the loader's hot path (docs/design.md section 8), and
 * tests/fuzz/fuzz_pull.c holds it to jansson's reading. */
apr_status_t datos_pubsub_parse_pull(apr_pool_t *p, const char *body,
                                     apr_size_t len, apr_array_header_t **msgs,
                                     datos_err_t *err);

/* The same for an answer cut after an entry of its receivedMessages list,
 * at the offset datos_pull_scan_cut gives: it reads as if the list and
 * the answer closed there. */
apr_status_t datos_pubsub_parse_pull_cut(apr_pool_t *p, const char *body,
                                         apr_size_t len,
                                         apr_array_header_t **msgs,
                                         datos_err_t *err);

#endif
