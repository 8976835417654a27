/* datos_pubsub_client.h - the Pub/Sub v1 REST calls (docs/google-apis.md
 * 1.4 to 1.7): publish, pull, acknowledge, modifyAckDeadline, through the
 * Google call layer, with the bodies and answers of datos_pubsub.h.
 */
#ifndef DATOS_PUBSUB_CLIENT_H
#define DATOS_PUBSUB_CLIENT_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <apr_time.h>
#include "datos_auth.h"
#include "datos_error.h"
#include "datos_http.h"
#include "datos_pubsub.h"

/* The largest pull answer read by default: 1,000 messages can make ~20 MB
 * of JSON (docs/google-apis.md 1.5), with room to spare. Other answers are
 * small. */
#define DATOS_PUBSUB_PULL_MAX_RESPONSE ((apr_size_t)64 * 1024 * 1024)
/* The largest answer one message can make: 10 MB of data in base64, 100
 * attributes of 256 + 1,024 bytes even if every byte were escaped, and
 * the rest (docs/google-apis.md 1.10), with room to spare. */
#define DATOS_PUBSUB_MESSAGE_ANSWER_MAX ((apr_size_t)16 * 1024 * 1024)

typedef struct datos_pubsub_t datos_pubsub_t;

typedef struct datos_pubsub_conf_t {
    const char *
        base_url; /* service root: https://pubsub.googleapis.com or http://host:port */
    datos_http_opts_t
        http; /* allow_insecure per the endpoint rule (datos_endpoint.h);
                                * timeout: a pull may be held by the server a while */
    datos_creds_t *creds; /* NULL: no Authorization */
} datos_pubsub_conf_t;

/* Copies conf into p. base_url must pass datos_http_check_url with
 * http.allow_insecure (trailing '/' removed), else its status; bad
 * timeouts are DATOS_ECONFIG. http.max_response is raised to
 * DATOS_PUBSUB_PULL_MAX_RESPONSE when lower. The client holds one HTTP
 * handle (one connection, reused by every call): one thread at a time. */
apr_status_t datos_pubsub_create(apr_pool_t *p, const datos_pubsub_conf_t *conf,
                                 datos_pubsub_t **out, datos_err_t *err);

/* subscription / topic: full names, "projects/P/subscriptions/S",
 * "projects/P/topics/T" (APR_EINVAL otherwise); each part is
 * percent-encoded in the path. Each function makes its request(s) once (no
 * retries: callers use datos_backoff), within deadline (absolute; 0 = only
 * the http timeout per request), allocating in p. A 401 refreshes the
 * token once per call; refusals are classified by datos_google_classify
 * (404 NOT_FOUND DATOS_EREJECTED, 429 DATOS_ERATELIMIT, 503 DATOS_EBACKEND,
 * ...) with Retry-After in err->retry_after; messages start with the
 * method ("subscriptions.pull: HTTP 404 NOT_FOUND: ..."). */

/* subscriptions.pull with {"maxMessages": max_messages} (clamped to
 * 1..1000). *msgs is read by datos_pubsub_parse_pull: an array of
 * datos_pubsub_msg_t, empty when nothing is available; entries with a
 * problem are marked, not dropped (see there). */
apr_status_t datos_pubsub_pull(
    datos_pubsub_t *ps, apr_pool_t *p, apr_time_t deadline,
    const char *subscription, int max_messages,
    apr_array_header_t **msgs /* of datos_pubsub_msg_t */, datos_err_t *err);

/* What one pull handed out, read within a bound. */
typedef struct datos_pubsub_pulled_t {
    apr_array_header_t *msgs;   /* datos_pubsub_msg_t: the entries read */
    apr_array_header_t *unread; /* const char *: ack ids of entries handed
                                 * out but not read - past the bound, in an
                                 * answer that could not be read, or cut
                                 * short by a failed transfer - for the
                                 * caller to release (modifyAckDeadline 0) */
    apr_size_t bytes;           /* the answer's size, read or not */
    int cut; /* it passed max_bytes: msgs holds the entries that
                       * came before */
} datos_pubsub_pulled_t;

/* subscriptions.pull holding at most max_bytes of the answer: a longer one
 * is read up to its last whole entry within the bound, and followed to its
 * end only for the ack ids of the rest (out->cut), so that one answer of
 * large messages neither takes unbounded memory nor strands their leases.
 * out is filled on failure too (out->unread then names every ack id seen).
 * max_bytes above the client's http.max_response is that. */
apr_status_t datos_pubsub_pull_bounded(datos_pubsub_t *ps, apr_pool_t *p,
                                       apr_time_t deadline,
                                       const char *subscription,
                                       int max_messages, apr_size_t max_bytes,
                                       datos_pubsub_pulled_t *out,
                                       datos_err_t *err);

/* subscriptions.acknowledge of n ack ids, in chunks of
 * datos_pubsub_ack_bodies (2,500 ids / 512 KiB), in order; n == 0 makes
 * no request. On a failure part-way, the chunks before it went through:
 * err->message ends with "(K of N ack ids acknowledged before the
 * failure)". Acknowledging again is harmless, so a caller may simply
 * repeat the whole call. */
apr_status_t datos_pubsub_ack(datos_pubsub_t *ps, apr_pool_t *p,
                              apr_time_t deadline, const char *subscription,
                              const char *const *ack_ids, int n,
                              datos_err_t *err);

/* subscriptions.modifyAckDeadline of n ack ids to seconds (0..600; 0 is a
 * nack), chunked and reported like datos_pubsub_ack ("(K of N ack ids
 * modified before the failure)"). */
apr_status_t datos_pubsub_modack(datos_pubsub_t *ps, apr_pool_t *p,
                                 apr_time_t deadline, const char *subscription,
                                 const char *const *ack_ids, int n, int seconds,
                                 datos_err_t *err);

/* The project of the client's credentials (datos_creds_project over the
 * client's connection): for a short topic name when no project is
 * configured. NULL with APR_SUCCESS when the credentials name none. */
apr_status_t datos_pubsub_project(datos_pubsub_t *ps, apr_pool_t *p,
                                  apr_time_t deadline, const char **project,
                                  datos_err_t *err);

/* topics.publish of n messages, in requests of datos_pubsub_publish_bodies
 * (1,000 messages / 10 MB / one ordering key each), in order. *message_ids
 * (const char *) gets one id per message published, in input order, and
 * is set on failure too: then it holds the ids of the requests that went
 * through before the failure - always a prefix of msgs, its nelts the
 * number of messages published - and err->message ends with "(K of N
 * messages published before the failure)" when there were several
 * requests. A 200 answer that cannot be read (DATOS_EMALFORMED) leaves its
 * own request's messages in doubt: probably published, ids unknown.
 * Publishing is not idempotent: resending what went through duplicates
 * it. */
apr_status_t datos_pubsub_publish(
    datos_pubsub_t *ps, apr_pool_t *p, apr_time_t deadline, const char *topic,
    const datos_pubsub_out_t *msgs, int n,
    apr_array_header_t **message_ids /* const char *, in order */,
    datos_err_t *err);

#endif
