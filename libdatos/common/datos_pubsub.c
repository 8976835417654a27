/* datos_pubsub.c - Pub/Sub v1 REST wire formats (docs/google-apis.md section 1).
 *
 * Request bodies are written by hand, sized exactly before they are built:
 * a publish body can reach 10 MB of base64 and its size decides where the
 * requests split, so it is computed anyway. The small answers (publish)
 * are read with jansson; pull answers are datos_pubsub_pull.c's.
 */
#include <stdio.h>
#include <string.h>
#include <apr_base64.h>
#include <apr_strings.h>
#include <apr_lib.h>
#include <strings.h>

#include "datos_base64.h"
#include "datos_json.h"
#include "datos_pubsub.h"
#include "datos_time.h"
#include "datos_utf8.h"

/* ------------------------------------------------------------------ pull */

const char *datos_pubsub_resource_name(apr_pool_t *p, const char *value,
                                       const char *kind, const char *project,
                                       const char **full)
{
    const char *name;
    apr_size_t i, n, klen = strlen(kind);

    *full = NULL;
    if (!value || !*value)
        return apr_psprintf(p, "an empty name is not a Pub/Sub %s name", kind);
    if (!strncmp(value, "projects/", 9)) {
        const char *rest = value + 9, *slash = strchr(rest, '/');

        if (!slash || slash == rest || strncmp(slash + 1, kind, klen)
            || slash[1 + klen] != '/')
            return apr_psprintf(p, "'%s' is not projects/PROJECT/%s/NAME",
                                datos_err_text(p, value, strlen(value), 120),
                                kind);
        name = slash + 2 + klen;
    }
    else {
        name = value;
    }
    n = strlen(name);
    if (n < 3 || n > 255 || !apr_isalpha(name[0])
        || !strncasecmp(name, "goog", 4))
        return apr_psprintf(p,
                            "'%s' must be 3 to 255 characters, start "
                            "with a letter, and not start with 'goog'",
                            datos_err_text(p, name, n, 120));
    for (i = 0; i < n; i++) {
        if (!apr_isalnum(name[i]) && !strchr("-_.~+%", name[i]))
            return apr_psprintf(p,
                                "'%s' may hold only letters, digits "
                                "and - _ . ~ + %%",
                                datos_err_text(p, name, n, 120));
    }
    if (name != value)
        *full = value;
    else if (project)
        *full = apr_psprintf(p, "projects/%s/%s/%s", project, kind, value);
    return NULL;
}

const char *datos_pubsub_pull_body(apr_pool_t *p, int max_messages)
{
    if (max_messages < 1) {
        max_messages = 1;
    }
    if (max_messages > 1000) {
        max_messages = 1000;
    }
    return apr_psprintf(p, "{\"maxMessages\":%d}", max_messages);
}

apr_status_t datos_pubsub_parse_time(const char *text, apr_size_t len,
                                     apr_int64_t *us)
{
    apr_status_t rv = DATOS_EMALFORMED;
    char buf[48];
    apr_size_t i = 19, n, digits;

    /* YYYY-MM-DDTHH:MM:SS, then the fraction, then the zone */
    if (!text || len < 20 || len >= sizeof(buf)) {
        goto leave;
    }
    memcpy(buf, text, 19);
    n = 19;
    if (text[i] == '.') {
        buf[n++] = text[i++];
        for (digits = 0; i < len && text[i] >= '0' && text[i] <= '9';
             i++, digits++) {
            if (digits < 6) {
                buf[n++] = text[i];
            }
        }
        if (digits > 9) {
            goto leave;
        }
    }
    memcpy(buf + n, text + i, len - i);
    n += len - i;
    rv = datos_ts_parse_rfc3339(buf, n, us);

leave:
    return rv;
}

static const char *dup_or_null(apr_pool_t *p, const char *s)
{
    return s ? apr_pstrdup(p, s) : NULL;
}

apr_array_header_t *datos_pubsub_msgs_copy(apr_pool_t *p,
                                           const apr_array_header_t *msgs)
{
    apr_array_header_t *out = apr_array_make(
        p, msgs->nelts > 0 ? msgs->nelts : 1, sizeof(datos_pubsub_msg_t));
    int i, k;

    for (i = 0; i < msgs->nelts; i++) {
        const datos_pubsub_msg_t *m =
            &APR_ARRAY_IDX(msgs, i, datos_pubsub_msg_t);
        datos_pubsub_msg_t *c = apr_array_push(out);
        unsigned char *data;

        *c = *m;
        c->ack_id = dup_or_null(p, m->ack_id);
        c->message_id = dup_or_null(p, m->message_id);
        c->publish_time = dup_or_null(p, m->publish_time);
        c->ordering_key = dup_or_null(p, m->ordering_key);
        c->problem = dup_or_null(p, m->problem);
        data = apr_palloc(p, m->data_len + 1);
        if (m->data_len)
            memcpy(data, m->data, m->data_len);
        data[m->data_len] = '\0';
        c->data = data;
        c->attributes = apr_array_make(
            p, m->attributes && m->attributes->nelts ? m->attributes->nelts : 1,
            sizeof(datos_attr_t));
        for (k = 0; m->attributes && k < m->attributes->nelts; k++) {
            const datos_attr_t *a =
                &APR_ARRAY_IDX(m->attributes, k, datos_attr_t);
            datos_attr_t *ca = apr_array_push(c->attributes);

            ca->key = apr_pstrdup(p, a->key);
            ca->value = apr_pstrmemdup(p, a->value, a->value_len);
            ca->value_len = a->value_len;
        }
    }
    return out;
}

/* ------------------------------------------------------------------ request bodies */

/* An exactly sized body under construction. */
typedef struct body_t {
    char *buf, *o;
} body_t;

static void body_start(apr_pool_t *p, body_t *b, apr_size_t size)
{
    b->buf = apr_palloc(p, size + 1);
    b->o = b->buf;
}

static void put(body_t *b, const char *s, apr_size_t n)
{
    memcpy(b->o, s, n);
    b->o += n;
}

static void put_str(body_t *b, const char *s, apr_size_t n)
{
    *b->o++ = '"';
    b->o = datos_json_escape(b->o, (const unsigned char *)s, n,
                             DATOS_JSON_LINE_SEPARATORS);
    *b->o++ = '"';
}

static void body_push(apr_array_header_t *bodies, body_t *b, int first,
                      int count)
{
    datos_pubsub_body_t *e = apr_array_push(bodies);

    *b->o = '\0';
    e->body = b->buf;
    e->len = (apr_size_t)(b->o - b->buf);
    e->first = first;
    e->count = count;
}

/* Quoted JSON length of a string, or 0 when it is not UTF-8 (a quoted
 * string is never empty). */
static apr_size_t quoted_len(const char *s, apr_size_t n)
{
    apr_size_t k = datos_json_escaped_len((const unsigned char *)s, n,
                                          DATOS_JSON_LINE_SEPARATORS, NULL);
    return k == (apr_size_t)-1 ? 0 : k + 2;
}

static int same_key(const char *a, const char *b)
{
    return a == b || (a && b && !strcmp(a, b));
}

/* Bytes of one message object in a publish body, or 0 with *why set. */
static apr_size_t message_size(const datos_pubsub_out_t *m, const char **why)
{
    apr_size_t size = 2, k; /* {} */
    int i, nattr = m->attributes ? m->attributes->nelts : 0;
    int fields = 0;

    if (!m->data_len && !nattr) {
        *why = "has neither data nor attributes";
        return 0;
    }
    if (nattr > DATOS_PUBSUB_MAX_ATTRIBUTES) {
        *why = "has more than 100 attributes";
        return 0;
    }
    if (m->data_len > DATOS_BASE64_MAX) {
        *why = "has more data than can be encoded";
        return 0;
    }
    if (m->data_len) {
        size += sizeof("\"data\":") - 1 + (m->data_len + 2) / 3 * 4 + 2;
        fields++;
    }
    if (nattr) {
        size += (fields++ ? 1 : 0) + sizeof("\"attributes\":{}") - 1
                + (apr_size_t)(nattr - 1);
        for (i = 0; i < nattr; i++) {
            const datos_attr_t *a =
                &APR_ARRAY_IDX(m->attributes, i, datos_attr_t);
            apr_size_t kk = a->key ? quoted_len(a->key, strlen(a->key)) : 0;
            apr_size_t kv = a->value ? quoted_len(a->value, a->value_len) : 0;
            if (!kk || !kv) {
                *why = "has an attribute that is not UTF-8 text";
                return 0;
            }
            size += kk + 1 + kv;
        }
    }
    if (m->ordering_key) {
        k = quoted_len(m->ordering_key, strlen(m->ordering_key));
        if (!k) {
            *why = "has an ordering key that is not UTF-8";
            return 0;
        }
        size += (fields ? 1 : 0) + sizeof("\"orderingKey\":") - 1 + k;
    }
    return size;
}

/* Writes item k of items into a body under construction. */
typedef void put_item_fn(apr_pool_t *p, body_t *b, const void *items, int k);

/* Request bodies head,item,item,...,tail for n items of the given sizes,
 * in order, split so that each holds at most max_items items and max_bytes
 * bytes (one item at least, whatever its size), and, for messages
 * (keyed), one ordering key. */
static apr_array_header_t *split_bodies(
    apr_pool_t *p, const apr_size_t *sizes, int n, const char *head,
    const char *tail, int max_items, apr_size_t max_bytes,
    const datos_pubsub_out_t *keyed, put_item_fn *put_item, const void *items)
{
    const apr_size_t frame = strlen(head) + strlen(tail);
    apr_array_header_t *out = apr_array_make(p, 1, sizeof(datos_pubsub_body_t));
    int first, i, k;

    for (first = 0; first < n; first = i) {
        apr_size_t total = frame + sizes[first];
        body_t b;

        for (i = first + 1;
             i < n && i - first < max_items && total + 1 + sizes[i] <= max_bytes
             && (!keyed
                 || same_key(keyed[i].ordering_key, keyed[first].ordering_key));
             i++) {
            total += 1 + sizes[i];
        }
        body_start(p, &b, total);
        put(&b, head, strlen(head));
        for (k = first; k < i; k++) {
            if (k > first) {
                *b.o++ = ',';
            }
            put_item(p, &b, items, k);
        }
        put(&b, tail, strlen(tail));
        body_push(out, &b, first, i - first);
    }
    return out;
}

static void put_message(apr_pool_t *p, body_t *b, const void *items, int k)
{
    const datos_pubsub_out_t *m = (const datos_pubsub_out_t *)items + k;
    int i, nattr = m->attributes ? m->attributes->nelts : 0, fields = 0;

    (void)p;
    *b->o++ = '{';
    if (m->data_len) {
        /* straight into the body: a copy of 10 MB of base64 less per
         * request (the NUL APR writes after it falls where the quote
         * goes) */
        put(b, "\"data\":\"", 8);
        b->o += apr_base64_encode_binary(b->o, m->data, (int)m->data_len) - 1;
        *b->o++ = '"';
        fields++;
    }
    if (nattr) {
        if (fields++) {
            *b->o++ = ',';
        }
        put(b, "\"attributes\":{", 14);
        for (i = 0; i < nattr; i++) {
            const datos_attr_t *a =
                &APR_ARRAY_IDX(m->attributes, i, datos_attr_t);
            if (i) {
                *b->o++ = ',';
            }
            put_str(b, a->key, strlen(a->key));
            *b->o++ = ':';
            put_str(b, a->value, a->value_len);
        }
        *b->o++ = '}';
    }
    if (m->ordering_key) {
        if (fields) {
            *b->o++ = ',';
        }
        put(b, "\"orderingKey\":", 14);
        put_str(b, m->ordering_key, strlen(m->ordering_key));
    }
    *b->o++ = '}';
}

apr_status_t datos_pubsub_publish_bodies(apr_pool_t *p,
                                         const datos_pubsub_out_t *msgs, int n,
                                         apr_array_header_t **bodies,
                                         datos_err_t *err)
{
    static const char head[] = "{\"messages\":[", tail[] = "]}";
    apr_size_t *sizes;
    apr_status_t rv = APR_SUCCESS;
    int i;

    if (n < 0 || (n && !msgs)) {
        rv = datos_err_set(err, p, APR_EINVAL, 0, NULL, "no messages");
        goto leave;
    }
    sizes = apr_palloc(p, sizeof(*sizes) * (apr_size_t)(n + 1));
    for (i = 0; i < n; i++) {
        const char *why = NULL;
        sizes[i] = message_size(&msgs[i], &why);
        if (!sizes[i]) {
            rv = datos_err_set(err, p, APR_EINVAL, 0, NULL,
                               "message %d to publish %s", i, why);
            goto leave;
        }
    }
    *bodies =
        split_bodies(p, sizes, n, head, tail, DATOS_PUBSUB_PUBLISH_MAX_MESSAGES,
                     DATOS_PUBSUB_PUBLISH_MAX_BYTES, msgs, put_message, msgs);

leave:
    return rv;
}

apr_status_t datos_pubsub_parse_publish(apr_pool_t *p, const char *body,
                                        apr_size_t len, int expected,
                                        apr_array_header_t **ids,
                                        datos_err_t *err)
{
    apr_array_header_t *out;
    apr_status_t rv;
    json_t *j, *list;
    size_t i;

    rv = datos_json_parse(p, body, len, 0, &j, err);
    if (rv != APR_SUCCESS) {
        goto leave;
    }
    list = datos_json_arr(j, "messageIds");
    if (!list) {
        rv = datos_err_set(err, p, DATOS_EMALFORMED, 0, NULL,
                           "publish answer has no messageIds array");
        goto leave;
    }
    if (expected < 0 || json_array_size(list) != (size_t)expected) {
        rv = datos_err_set(err, p, DATOS_EMALFORMED, 0, NULL,
                           "publish answer has %lu message ids for %d messages",
                           (unsigned long)json_array_size(list), expected);
        goto leave;
    }
    out = apr_array_make(p, expected ? expected : 1, sizeof(const char *));
    for (i = 0; i < json_array_size(list); i++) {
        json_t *v = json_array_get(list, i);
        if (!json_is_string(v) || !json_string_length(v)) {
            rv = datos_err_set(err, p, DATOS_EMALFORMED, 0, NULL,
                               "publish answer: messageIds[%lu] is not an id",
                               (unsigned long)i);
            goto leave;
        }
        APR_ARRAY_PUSH(out, const char *) =
            apr_pstrmemdup(p, json_string_value(v), json_string_length(v));
    }
    *ids = out;

leave:
    return rv;
}

static void put_ack_id(apr_pool_t *p, body_t *b, const void *items, int k)
{
    const char *const *ids = items;

    (void)p;
    put_str(b, ids[k], strlen(ids[k]));
}

/* ack and modack share the shape: {"ackIds":[..]<more>}. */
static apr_status_t ack_bodies(apr_pool_t *p, const char *const *ids, int n,
                               const char *more, apr_array_header_t **bodies,
                               datos_err_t *err)
{
    static const char head[] = "{\"ackIds\":[";
    const char *tail = apr_pstrcat(p, "]", more, "}", NULL);
    const apr_size_t frame = sizeof(head) - 1 + strlen(tail);
    apr_size_t *sizes;
    apr_status_t rv = APR_SUCCESS;
    int i;

    if (n < 0 || (n && !ids)) {
        rv = datos_err_set(err, p, APR_EINVAL, 0, NULL, "no ack ids");
        goto leave;
    }
    sizes = apr_palloc(p, sizeof(*sizes) * (apr_size_t)(n + 1));
    for (i = 0; i < n; i++) {
        sizes[i] = ids[i] && *ids[i] ? quoted_len(ids[i], strlen(ids[i])) : 0;
        if (!sizes[i] || frame + sizes[i] > DATOS_PUBSUB_ACK_MAX_BYTES) {
            rv = datos_err_set(err, p, APR_EINVAL, 0, NULL,
                               "ack id %d is empty, not UTF-8 or too long", i);
            goto leave;
        }
    }
    *bodies = split_bodies(p, sizes, n, head, tail, DATOS_PUBSUB_ACK_MAX_IDS,
                           DATOS_PUBSUB_ACK_MAX_BYTES, NULL, put_ack_id, ids);

leave:
    return rv;
}

apr_status_t datos_pubsub_ack_bodies(apr_pool_t *p, const char *const *ack_ids,
                                     int n, apr_array_header_t **bodies,
                                     datos_err_t *err)
{
    return ack_bodies(p, ack_ids, n, "", bodies, err);
}

apr_status_t datos_pubsub_modack_bodies(apr_pool_t *p,
                                        const char *const *ack_ids, int n,
                                        int seconds,
                                        apr_array_header_t **bodies,
                                        datos_err_t *err)
{
    apr_status_t rv;

    if (seconds < 0 || seconds > DATOS_PUBSUB_MODACK_MAX_SECONDS) {
        rv = datos_err_set(err, p, APR_EINVAL, 0, NULL,
                           "ack deadline %d s is outside 0..600", seconds);
        goto leave;
    }
    rv = ack_bodies(p, ack_ids, n,
                    apr_psprintf(p, ",\"ackDeadlineSeconds\":%d", seconds),
                    bodies, err);

leave:
    return rv;
}

/* ------------------------------------------------------------------ dead letters */

/* One clean line of at most max bytes: controls (C0, DEL) become spaces,
 * bytes that are not UTF-8 become '?', the cut falls between characters. */
static const char *clean_line(apr_pool_t *p, const char *s, apr_size_t max,
                              apr_size_t *outlen)
{
    const unsigned char *u = (const unsigned char *)(s ? s : "");
    apr_size_t len = strlen((const char *)u), i = 0, n = 0, k;
    char *out = apr_palloc(p, (len < max ? len : max) + 1);

    while (i < len) {
        unsigned char c = u[i];
        k = c < 0x80 ? 1 : datos_utf8_seq(u + i, len - i);
        if (n + (k ? k : 1) > max) {
            break;
        }
        if (!k) {
            out[n++] = '?';
            i++;
        }
        else if (k == 1) {
            out[n++] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
            i++;
        }
        else {
            memcpy(out + n, u + i, k);
            n += k;
            i += k;
        }
    }
    out[n] = '\0';
    *outlen = n;
    return out;
}

static int is_ours(const char *key)
{
    return !strcmp(key, DATOS_ATTR_ERROR)
           || !strcmp(key, DATOS_ATTR_ERROR_DETAIL)
           || !strcmp(key, DATOS_ATTR_SOURCE_SUBSCRIPTION)
           || !strcmp(key, DATOS_ATTR_SOURCE_MESSAGE_ID)
           || !strcmp(key, DATOS_ATTR_SOURCE_PUBLISH_TIME)
           || !strcmp(key, DATOS_ATTR_ENVELOPE);
}

static void add_attr(apr_array_header_t *a, const char *key, const char *value,
                     apr_size_t len)
{
    datos_attr_t *e = apr_array_push(a);
    e->key = key;
    e->value = value;
    e->value_len = len;
}

apr_status_t datos_pubsub_deadletter_attrs(
    apr_pool_t *p, const datos_pubsub_msg_t *m, const char *subscription,
    datos_reason_t reason, const char *detail, apr_array_header_t **attrs,
    datos_err_t *err)
{
    const char *name = datos_reason_name(reason), *d;
    apr_array_header_t *out;
    apr_status_t rv = APR_SUCCESS;
    apr_size_t dlen;
    int i, own = m->attributes ? m->attributes->nelts : 0;

    if (reason == DATOS_REASON_NONE || !name || !m->message_id
        || !m->publish_time || !subscription) {
        rv = datos_err_set(err, p, APR_EINVAL, 0, NULL,
                           "a dead letter needs a reason, the message id, its "
                           "publish time and the subscription");
        goto leave;
    }
    out = apr_array_make(p, own + 5, sizeof(datos_attr_t));
    for (i = 0; i < own; i++) {
        const datos_attr_t *a = &APR_ARRAY_IDX(m->attributes, i, datos_attr_t);
        if (!is_ours(a->key)) {
            *(datos_attr_t *)apr_array_push(out) = *a;
        }
    }
    if (out->nelts + 5 > DATOS_PUBSUB_MAX_ATTRIBUTES) {
        rv = datos_err_set(err, p, DATOS_ETOOLARGE, 0, NULL,
                           "message %s has %d attributes: with the 5 of a dead "
                           "letter it would pass Pub/Sub's limit of %d",
                           m->message_id, out->nelts,
                           DATOS_PUBSUB_MAX_ATTRIBUTES);
        goto leave;
    }
    d = clean_line(p, detail, DATOS_DETAIL_MAX_BYTES, &dlen);
    add_attr(out, DATOS_ATTR_ERROR, name, strlen(name));
    add_attr(out, DATOS_ATTR_ERROR_DETAIL, d, dlen);
    add_attr(out, DATOS_ATTR_SOURCE_SUBSCRIPTION, subscription,
             strlen(subscription));
    add_attr(out, DATOS_ATTR_SOURCE_MESSAGE_ID, m->message_id,
             strlen(m->message_id));
    add_attr(out, DATOS_ATTR_SOURCE_PUBLISH_TIME, m->publish_time,
             strlen(m->publish_time));
    *attrs = out;

leave:
    return rv;
}

/* ------------------------------------------------------------------ sizes */

static apr_size_t varint_len(apr_size_t n)
{
    apr_size_t k = 1;

    while (n >= 0x80) {
        n >>= 7;
        k++;
    }
    return k;
}

/* A length-delimited protobuf field (tag < 16) holding n bytes. */
static apr_size_t field_len(apr_size_t n)
{
    return 1 + varint_len(n) + n;
}

apr_size_t datos_pubsub_publish_size(const char *topic,
                                     const datos_pubsub_out_t *out)
{
    apr_size_t inner = out->data_len ? field_len(out->data_len) : 0;
    int i;

    for (i = 0; out->attributes && i < out->attributes->nelts; i++) {
        const datos_attr_t *a =
            &APR_ARRAY_IDX(out->attributes, i, datos_attr_t);
        apr_size_t k = strlen(a->key), entry;

        entry = (k ? field_len(k) : 0)
                + (a->value_len ? field_len(a->value_len) : 0);
        inner += field_len(entry);
    }
    if (out->ordering_key && *out->ordering_key) {
        inner += field_len(strlen(out->ordering_key));
    }
    return field_len(strlen(topic)) + field_len(inner);
}

/* ------------------------------------------------------------------ envelopes */

static void put_member(body_t *b, int first, const char *key, const char *s,
                       apr_size_t n)
{
    if (!first) {
        *b->o++ = ',';
    }
    put_str(b, key, strlen(key));
    *b->o++ = ':';
    put_str(b, s, n);
}

static apr_size_t member_len(const char *key, const char *s, apr_size_t n)
{
    apr_size_t k = quoted_len(key, strlen(key)), v = quoted_len(s, n);

    return k && v ? 1 + k + 1 + v : 0;
}

/* The envelope's JSON text; NULL when a string is not UTF-8. */
static const char *envelope(apr_pool_t *p, const datos_pubsub_msg_t *m,
                            const apr_array_header_t *dl, apr_size_t *len)
{
    static const char *const names[] = {
        "error", "detail", "source_subscription", "source_message_id",
        "source_publish_time"};
    apr_size_t size = sizeof("{\"datos_envelope\":1}") - 1, b64 = 0, k;
    int i, nattr = m->attributes ? m->attributes->nelts : 0;
    const char *enc = NULL;
    body_t b;

    for (i = 0; i < 5; i++) {
        const datos_attr_t *a = &APR_ARRAY_IDX(dl, i, datos_attr_t);
        if (!(k = member_len(names[i], a->value, a->value_len))) {
            return NULL;
        }
        size += k;
    }
    size += sizeof(",\"attributes\":{}") - 1
            + (nattr ? (apr_size_t)(nattr - 1) : 0);
    for (i = 0; i < nattr; i++) {
        const datos_attr_t *a = &APR_ARRAY_IDX(m->attributes, i, datos_attr_t);
        if (!(k = member_len(a->key, a->value, a->value_len))) {
            return NULL;
        }
        size += k - 1;
    }
    if (m->ordering_key) {
        if (!(k = member_len("ordering_key", m->ordering_key,
                             strlen(m->ordering_key)))) {
            return NULL;
        }
        size += k;
    }
    if (m->data_len) {
        enc = datos_base64_encode(p, m->data, m->data_len, &b64);
        if (!enc) {
            return NULL;
        }
        size += sizeof(",\"data\":\"\"") - 1 + b64;
    }
    body_start(p, &b, size);
    put(&b, "{\"datos_envelope\":1", 19);
    for (i = 0; i < 5; i++) {
        const datos_attr_t *a = &APR_ARRAY_IDX(dl, i, datos_attr_t);
        put_member(&b, 0, names[i], a->value, a->value_len);
    }
    put(&b, ",\"attributes\":{", 15);
    for (i = 0; i < nattr; i++) {
        const datos_attr_t *a = &APR_ARRAY_IDX(m->attributes, i, datos_attr_t);
        put_member(&b, i == 0, a->key, a->value, a->value_len);
    }
    *b.o++ = '}';
    if (m->ordering_key) {
        put_member(&b, 0, "ordering_key", m->ordering_key,
                   strlen(m->ordering_key));
    }
    if (m->data_len) {
        put(&b, ",\"data\":\"", 9);
        put(&b, enc, b64);
        *b.o++ = '"';
    }
    *b.o++ = '}';
    *b.o = '\0';
    *len = (apr_size_t)(b.o - b.buf);
    return b.buf;
}

apr_status_t datos_pubsub_deadletter(apr_pool_t *p, const datos_pubsub_msg_t *m,
                                     const char *subscription,
                                     const char *topic, datos_reason_t reason,
                                     const char *detail,
                                     datos_deadletter_form_t form,
                                     datos_pubsub_out_t *out, datos_err_t *err)
{
    apr_array_header_t *attrs = NULL, *env;
    apr_status_t rv;
    const char *text;
    apr_size_t len, size;
    int i, own;

    memset(out, 0, sizeof(*out));
    if (form == DATOS_DEADLETTER_PLAIN) {
        rv = datos_pubsub_deadletter_attrs(p, m, subscription, reason, detail,
                                           &attrs, err);
        if (rv != APR_SUCCESS) {
            return rv;
        }
        out->data = m->data;
        out->data_len = m->data_len;
        out->attributes = attrs;
    }
    else {
        /* The five of a plain dead letter, computed on the message without
         * its own attributes (they cannot be too many then). */
        datos_pubsub_msg_t bare = *m;

        bare.attributes = NULL;
        rv = datos_pubsub_deadletter_attrs(p, &bare, subscription, reason,
                                           detail, &attrs, err);
        if (rv != APR_SUCCESS) {
            return rv;
        }
        text = envelope(p, m, attrs, &len);
        if (!text) {
            return datos_err_set(err, p, APR_EINVAL, 0, NULL,
                                 "message %s: a string of it is not UTF-8",
                                 m->message_id);
        }
        env = apr_array_make(p, DATOS_PUBSUB_MAX_ATTRIBUTES,
                             sizeof(datos_attr_t));
        for (i = 0; i < attrs->nelts; i++) {
            *(datos_attr_t *)apr_array_push(env) =
                APR_ARRAY_IDX(attrs, i, datos_attr_t);
        }
        add_attr(env, DATOS_ATTR_ENVELOPE, "1", 1);
        own = m->attributes ? m->attributes->nelts : 0;
        for (i = 0; i < own && env->nelts < DATOS_PUBSUB_MAX_ATTRIBUTES; i++) {
            const datos_attr_t *a =
                &APR_ARRAY_IDX(m->attributes, i, datos_attr_t);
            if (!is_ours(a->key)) {
                *(datos_attr_t *)apr_array_push(env) = *a;
            }
        }
        out->data = (const unsigned char *)text;
        out->data_len = len;
        out->attributes = env;
    }
    size = datos_pubsub_publish_size(topic, out);
    if (size > DATOS_PUBSUB_PUBLISH_MAX_BYTES) {
        return datos_err_set(
            err, p, DATOS_ETOOLARGE, 0, NULL,
            "message %s: its dead letter%s would make a "
            "publish request of %" APR_SIZE_T_FMT " bytes, past Pub/Sub's %d",
            m->message_id, form == DATOS_DEADLETTER_ENVELOPE ? " envelope" : "",
            size, DATOS_PUBSUB_PUBLISH_MAX_BYTES);
    }
    return APR_SUCCESS;
}
