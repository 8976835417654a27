/* datos_pubsub.h - Pub/Sub v1 REST wire formats (docs/google-apis.md
 * section 1): the limits, and pure functions that build request bodies and
 * read answers (no network), shared by the loader and POST /datos. The
 * client that sends them is datos_pubsub_client.h's.
 */
#ifndef DATOS_PUBSUB_H
#define DATOS_PUBSUB_H

#include <apr_pools.h>
#include <apr_tables.h>
#include "datos_error.h"
#include "datos_rules.h"

/* docs/google-apis.md 1.4, 1.6, 1.7, 1.10. */
#define DATOS_PUBSUB_PUBLISH_MAX_MESSAGES 1000
#define DATOS_PUBSUB_PUBLISH_MAX_BYTES    10000000 /* counted on the JSON body */
#define DATOS_PUBSUB_ACK_MAX_IDS          2500
#define DATOS_PUBSUB_ACK_MAX_BYTES        524288 /* counted on the JSON body */
#define DATOS_PUBSUB_MAX_ATTRIBUTES       100
#define DATOS_PUBSUB_MODACK_MAX_SECONDS   600

/* One attribute (map<string,string>). value may hold U+0000, hence its
 * length; both strings are NUL-terminated UTF-8. */
typedef struct datos_attr_t {
    const char *key;
    const char *value;
    apr_size_t value_len;
} datos_attr_t;

/* A topic or subscription as configured: the full name
 * "projects/P/<kind>/N", or a short name N completed with project. kind is
 * "topics" or "subscriptions". N follows Google's rule: 3 to 255
 * characters, a letter first, then letters, digits and - _ . ~ + %, never
 * starting with "goog". Returns NULL when the name is good, with *full the
 * full name, or NULL for a short name given without a project (the caller
 * learns the project later, or refuses it). Otherwise a message naming no
 * setting (callers prefix theirs). */
const char *datos_pubsub_resource_name(apr_pool_t *p, const char *value,
                                       const char *kind, const char *project,
                                       const char **full);

/* {"maxMessages":N}; N is clamped to 1..1000 (the most one pull returns). */
const char *datos_pubsub_pull_body(apr_pool_t *p, int max_messages);

/* One entry of a subscriptions.pull answer. */
typedef struct datos_pubsub_msg_t {
    const char *ack_id; /* NULL only when problem says the entry had none */
    const char *message_id;
    const char *publish_time; /* as sent: RFC 3339, up to 9 fraction digits */
    apr_int64_t publish_time_us; /* UTC microseconds, the nanoseconds truncated
                                   * (toward the past, as the digits are dropped) */
    const unsigned char *data;   /* decoded, NUL-terminated; "" when absent */
    apr_size_t data_len;
    apr_array_header_t
        *attributes; /* of datos_attr_t, in the answer's order; never NULL */
    const char *ordering_key; /* NULL when absent */
    int delivery_attempt;     /* 0 when absent (no dead-letter policy) */
    const char *problem;      /* NULL, or why this entry cannot be processed */
} datos_pubsub_msg_t;

/* A copy of pulled messages (an array of datos_pubsub_msg_t) in p, with
 * everything they point to, and nothing else: a pull's answer and the JSON
 * tree it was read from (several times the size of the messages) can then
 * go with a short-lived pool while the messages wait for their load. */
apr_array_header_t *datos_pubsub_msgs_copy(apr_pool_t *p,
                                           const apr_array_header_t *msgs);

/* Parses RFC 3339 as Pub/Sub sends it (proto3 Timestamp: Z or an offset,
 * 0 to 9 fraction digits), keeping microseconds: digits past the sixth are
 * dropped, which rounds toward the past. DATOS_EMALFORMED otherwise. */
apr_status_t datos_pubsub_parse_time(const char *text, apr_size_t len,
                                     apr_int64_t *us);

/* A message to publish. */
typedef struct datos_pubsub_out_t {
    const unsigned char *data; /* may be empty when there are attributes */
    apr_size_t data_len;
    const apr_array_header_t *attributes; /* of datos_attr_t; NULL: none */
    const char *ordering_key;             /* NULL: none */
} datos_pubsub_out_t;

/* One request body and the slice of the input messages it carries. */
typedef struct datos_pubsub_body_t {
    const char *body; /* NUL-terminated JSON */
    apr_size_t len;
    int first; /* index of its first message */
    int count; /* messages (ackIds) in it */
} datos_pubsub_body_t;

/* topics.publish bodies {"messages":[{"data":"<base64>","attributes":{..},
 * "orderingKey":".."},..]} for n messages, in order, split so that each
 * request holds at most 1,000 messages, at most 10,000,000 bytes of JSON,
 * and one ordering key (docs/google-apis.md 1.4); a message too large to share a
 * request goes alone (the server then judges it). "data" is omitted when
 * empty. *bodies is an array of datos_pubsub_body_t (empty when n is 0).
 * APR_EINVAL names the first message with neither data nor attributes,
 * more than 100 attributes, or a string that is not UTF-8. */
apr_status_t datos_pubsub_publish_bodies(apr_pool_t *p,
                                         const datos_pubsub_out_t *msgs, int n,
                                         apr_array_header_t **bodies,
                                         datos_err_t *err);

/* Reads a topics.publish answer {"messageIds":["..",..]}: *ids is an
 * array of const char *, one per message in request order. Any other shape,
 * an empty or non-string id, or a count other than expected is
 * DATOS_EMALFORMED: the caller cannot tell which messages were published. */
apr_status_t datos_pubsub_parse_publish(apr_pool_t *p, const char *body,
                                        apr_size_t len, int expected,
                                        apr_array_header_t **ids,
                                        datos_err_t *err);

/* subscriptions.acknowledge bodies {"ackIds":[..]} for n ack ids, in
 * order, at most 2,500 ids and 524,288 bytes each (docs/google-apis.md 1.6, 1.7).
 * APR_EINVAL for an empty id, one that is not UTF-8, or one too long to
 * fit a request. Empty *bodies for n == 0. */
apr_status_t datos_pubsub_ack_bodies(apr_pool_t *p, const char *const *ack_ids,
                                     int n, apr_array_header_t **bodies,
                                     datos_err_t *err);

/* subscriptions.modifyAckDeadline bodies
 * {"ackIds":[..],"ackDeadlineSeconds":S}, chunked as above; S in 0..600
 * (0 is a nack), else APR_EINVAL. */
apr_status_t datos_pubsub_modack_bodies(apr_pool_t *p,
                                        const char *const *ack_ids, int n,
                                        int seconds,
                                        apr_array_header_t **bodies,
                                        datos_err_t *err);

/* Attributes of a message POST /datos published (docs/design.md section 4). */
#define DATOS_ATTR_INGEST "datos_ingest" /* "http" */
#define DATOS_ATTR_CLIENT "datos_client" /* the client's address */

/* Attribute names added to a dead-lettered message (docs/design.md section 3). */
#define DATOS_ATTR_ERROR               "datos_error"
#define DATOS_ATTR_ERROR_DETAIL        "datos_error_detail"
#define DATOS_ATTR_SOURCE_SUBSCRIPTION "datos_source_subscription"
#define DATOS_ATTR_SOURCE_MESSAGE_ID   "datos_source_message_id"
#define DATOS_ATTR_SOURCE_PUBLISH_TIME "datos_source_publish_time"

/* The attribute marking a dead letter whose data is the envelope below. */
#define DATOS_ATTR_ENVELOPE "datos_envelope"

/* The size of a PublishRequest of the one message out to topic, as Pub/Sub
 * counts its 10,000,000 bytes: the protobuf encoding (docs/google-apis.md
 * 1.4), not the JSON of the REST body. */
apr_size_t datos_pubsub_publish_size(const char *topic,
                                     const datos_pubsub_out_t *out);

typedef enum datos_deadletter_form_t {
    /* data unchanged; m's own attributes and the five datos_* ones */
    DATOS_DEADLETTER_PLAIN = 0,
    /* when those do not fit: the data is a JSON envelope holding the
     * original data (base64), every attribute and the reason,
     *   {"datos_envelope":1,"error":"..","detail":"..",
     *    "source_subscription":"..","source_message_id":"..",
     *    "source_publish_time":"..","attributes":{..},
     *    ["ordering_key":"..",]"data":"<base64>"}
     * and the attributes are the five datos_* ones, datos_envelope = "1",
     * then as many of m's own, in their order, as fit in Pub/Sub's 100
     * (docs/design.md section 5, "Dead letters") */
    DATOS_DEADLETTER_ENVELOPE
} datos_deadletter_form_t;

/* m's dead-letter copy to topic, in the given form, into *out (its data
 * and attributes in p; no ordering key). DATOS_ETOOLARGE when that form
 * cannot be published as Pub/Sub requires: more than 100 attributes, or a
 * request of more than 10,000,000 bytes (datos_pubsub_publish_size); the
 * errors of datos_pubsub_deadletter_attrs otherwise. */
apr_status_t datos_pubsub_deadletter(apr_pool_t *p, const datos_pubsub_msg_t *m,
                                     const char *subscription,
                                     const char *topic, datos_reason_t reason,
                                     const char *detail,
                                     datos_deadletter_form_t form,
                                     datos_pubsub_out_t *out, datos_err_t *err);

/* The attributes of m's dead-letter copy: m's own attributes in their
 * order, then datos_error (the reason's name), datos_error_detail (detail
 * made one clean line: controls become spaces, bytes that are not UTF-8
 * become '?', cut on a character boundary to at most 1,024 bytes),
 * datos_source_subscription, datos_source_message_id and
 * datos_source_publish_time (as Pub/Sub sent it). An attribute of m with
 * one of those five names is replaced, not repeated: a message that was
 * dead-lettered, redriven and failed again carries the latest error.
 * DATOS_ETOOLARGE when the result would pass Pub/Sub's 100 attributes;
 * APR_EINVAL when m has no message id or publish time, or the reason is
 * DATOS_REASON_NONE. *attrs is an array of datos_attr_t. */
apr_status_t datos_pubsub_deadletter_attrs(
    apr_pool_t *p, const datos_pubsub_msg_t *m, const char *subscription,
    datos_reason_t reason, const char *detail, apr_array_header_t **attrs,
    datos_err_t *err);

#endif
