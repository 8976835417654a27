/* dt_jansson.c - the record rules through jansson, the reference the
 * validator's scanner is compared with. Only the structure pass is its
 * own: the field rules and their details are datos_rules.c's, as the
 * scanner's are. And the pull answer read through a jansson tree, as the
 * loader read it before datos_pubsub_pull.c: the reference of that
 * parser. */
#include <string.h>
#include <apr_strings.h>
#include <jansson.h>

#include "datos_base64.h"
#include "datos_json.h"
#include "datos_pubsub.h"
#include "datos_utf8.h"
#include "dt_jansson.h"

static int jtype(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return DATOS_VT_OBJECT;
    case JSON_ARRAY: return DATOS_VT_ARRAY;
    case JSON_STRING: return DATOS_VT_STRING;
    case JSON_INTEGER:
    case JSON_REAL: return DATOS_VT_NUMBER;
    case JSON_TRUE:
    case JSON_FALSE: return DATOS_VT_BOOL;
    default: return DATOS_VT_NULL;
    }
}

apr_status_t dt_record_validate_jansson(apr_pool_t *p, const char *data,
                                        apr_size_t len,
                                        const datos_record_opts_t *opts,
                                        datos_row_t *row, datos_invalid_t *why)
{
    const size_t flags = JSON_DECODE_ANY | JSON_ALLOW_NUL;
    json_error_t jerr;
    json_t *j, *v;
    const char *k;
    datos_fields_t fd;
    apr_size_t bad;
    apr_status_t rv;

    rv = datos_rules_start(p, data, len, opts, row, why);
    if (rv != APR_SUCCESS) {
        goto leave;
    }
    bad = datos_utf8_check((const unsigned char *)data, len);
    if (bad < len) {
        rv = datos_rules_not_utf8(p, why, data, bad);
        goto leave;
    }
    /* jansson takes a raw NUL right after a top-level number for the end
     * of input ("6\0" parses); JSON allows U+0000 only escaped. */
    if (memchr(data, '\0', len)) {
        rv = datos_rules_invalid(
            p, why, DATOS_REASON_NOT_JSON,
            "the data is not JSON: a raw NUL byte at byte %" APR_SIZE_T_FMT,
            (apr_size_t)((const char *)memchr(data, '\0', len) - data));
        goto leave;
    }
    j = json_loadb(data, len, flags | JSON_REJECT_DUPLICATES, &jerr);
    if (!j && json_error_code(&jerr) == json_error_duplicate_key) {
        /* jansson stops at the first duplicate; what comes after it decides
         * between not_json, not_object and duplicate_key. */
        j = json_loadb(data, len, flags, &jerr);
        if (j) {
            int obj = json_is_object(j);
            json_decref(j);
            rv = datos_rules_invalid(p, why,
                                     obj ? DATOS_REASON_DUPLICATE_KEY
                                         : DATOS_REASON_NOT_OBJECT,
                                     obj ? "a key appears twice in one object"
                                         : "the data is not a JSON object");
            goto leave;
        }
    }
    if (!j) {
        /* jansson quotes the input near the error and may cut it inside
         * a character: its text is made clean like any excerpt. */
        rv = datos_rules_invalid(
            p, why, DATOS_REASON_NOT_JSON,
            "the data is not JSON at byte %d: jansson says %s", jerr.position,
            datos_rules_excerpt(p, jerr.text, strlen(jerr.text), 200));
        goto leave;
    }
    datos_json_bind(p, j);
    if (!json_is_object(j)) {
        rv = datos_rules_not_object(p, why, jtype(j));
        goto leave;
    }
    memset(&fd, 0, sizeof(fd));
    json_object_foreach(j, k, v)
    {
        apr_size_t klen = strlen(k);
        int f = datos_rules_field_of(k, klen);

        if (f == DATOS_FIELD_UNKNOWN) {
            if (!fd.n_unknown++) {
                fd.unknown = k;
                fd.unknown_len = klen;
            }
            continue;
        }
        fd.f[f].type = jtype(v);
        if (json_is_string(v)) {
            fd.f[f].str = json_string_value(v);
            fd.f[f].len = json_string_length(v);
        }
    }
    rv = datos_rules_check_fields(p, opts, &fd, &row->timestamp_us, why);
    if (rv != APR_SUCCESS) {
        goto leave;
    }
    row->id = fd.f[DATOS_FIELD_ID].str;
    row->id_len = fd.f[DATOS_FIELD_ID].len;
    row->contenido = fd.f[DATOS_FIELD_CONTENIDO].type == DATOS_VT_STRING
                         ? fd.f[DATOS_FIELD_CONTENIDO].str
                         : NULL;
    row->contenido_len = row->contenido ? fd.f[DATOS_FIELD_CONTENIDO].len : 0;

leave:
    return rv;
}

/* ------------------------------------------------------------ pull answers */

/* deliveryAttempt: an int32, as a number or (proto3 JSON allows it) a
 * decimal string; -1 for anything else. */
static apr_int64_t attempt_value(const json_t *v)
{
    apr_int64_t n = 0;
    const char *s;

    if (json_is_integer(v)) {
        n = (apr_int64_t)json_integer_value(v);
        return n >= 0 && n <= APR_INT32_MAX ? n : -1;
    }
    if (!json_is_string(v) || !json_string_length(v)) {
        return -1;
    }
    for (s = json_string_value(v); *s; s++) {
        if (*s < '0' || *s > '9' || n > APR_INT32_MAX) {
            return -1;
        }
        n = n * 10 + (*s - '0');
    }
    return n <= APR_INT32_MAX ? n : -1;
}

/* Fills m from one receivedMessages entry; the first defect found goes to
 * m->problem and stops the entry (the ack id is read first, so a marked
 * entry keeps it whenever it has one). Members are found by walking each
 * object once rather than by lookups: a 1,000-message answer is mostly
 * out of cache, and each lookup walks a hash bucket. */
static void read_entry(apr_pool_t *p, const json_t *e, int index,
                       datos_pubsub_msg_t *m)
{
    const json_t *ack = NULL, *attempt = NULL, *msg = NULL, *id = NULL,
                 *time = NULL, *data = NULL, *attrs = NULL, *okey = NULL, *v;
    const char *key;
    apr_int64_t n;

    memset(m, 0, sizeof(*m));
    m->data = (const unsigned char *)"";
    if (!json_is_object(e)) {
        m->attributes = apr_array_make(p, 0, sizeof(datos_attr_t));
        m->problem =
            apr_psprintf(p, "receivedMessages[%d] is not an object", index);
        return;
    }
    json_object_foreach((json_t *)e, key, v)
    {
        if (!strcmp(key, "ackId")) {
            ack = v;
        }
        else if (!strcmp(key, "message")) {
            msg = v;
        }
        else if (!strcmp(key, "deliveryAttempt")) {
            attempt = v;
        }
    }
    if (json_is_object(msg)) {
        json_object_foreach((json_t *)msg, key, v)
        {
            switch (key[0]) {
            case 'd': data = strcmp(key, "data") ? data : v; break;
            case 'a': attrs = strcmp(key, "attributes") ? attrs : v; break;
            case 'm': id = strcmp(key, "messageId") ? id : v; break;
            case 'p': time = strcmp(key, "publishTime") ? time : v; break;
            case 'o': okey = strcmp(key, "orderingKey") ? okey : v; break;
            default: break;
            }
        }
    }
    m->attributes = apr_array_make(
        p, json_is_object(attrs) ? (int)json_object_size(attrs) : 0,
        sizeof(datos_attr_t));

    if (!json_is_string(ack) || !json_string_length(ack)
        || strlen(json_string_value(ack)) != json_string_length(ack)) {
        m->problem =
            apr_psprintf(p, "receivedMessages[%d] has no ackId", index);
        return;
    }
    m->ack_id =
        apr_pstrmemdup(p, json_string_value(ack), json_string_length(ack));

    n = attempt ? attempt_value(attempt) : 0;
    if (n < 0) {
        m->problem = apr_psprintf(p,
                                  "receivedMessages[%d].deliveryAttempt is "
                                  "not a count",
                                  index);
        return;
    }
    m->delivery_attempt = (int)n;

    if (!json_is_object(msg)) {
        m->problem = apr_psprintf(p,
                                  "receivedMessages[%d] has no message "
                                  "object",
                                  index);
        return;
    }
    if (!json_is_string(id) || !json_string_length(id)
        || strlen(json_string_value(id)) != json_string_length(id)) {
        m->problem = apr_psprintf(p,
                                  "receivedMessages[%d].message has no "
                                  "messageId",
                                  index);
        return;
    }
    m->message_id =
        apr_pstrmemdup(p, json_string_value(id), json_string_length(id));

    if (!json_is_string(time)
        || datos_pubsub_parse_time(json_string_value(time),
                                   json_string_length(time),
                                   &m->publish_time_us)
               != APR_SUCCESS) {
        m->problem = apr_psprintf(p, "message %s has no valid publishTime",
                                  m->message_id);
        return;
    }
    m->publish_time =
        apr_pstrmemdup(p, json_string_value(time), json_string_length(time));

    if (data) {
        unsigned char *bytes;
        if (!json_is_string(data)
            || datos_base64_decode(p, json_string_value(data),
                                   json_string_length(data), &bytes,
                                   &m->data_len)
                   != APR_SUCCESS) {
            m->problem = apr_psprintf(p, "message %s: data is not base64",
                                      m->message_id);
            return;
        }
        m->data = bytes;
    }

    if (attrs && !json_is_object(attrs)) {
        m->problem = apr_psprintf(p, "message %s: attributes is not an object",
                                  m->message_id);
        return;
    }
    if (attrs) {
        json_object_foreach((json_t *)attrs, key, v)
        {
            datos_attr_t *a;
            if (!json_is_string(v)) {
                m->problem = apr_psprintf(p,
                                          "message %s: attribute value is "
                                          "not a string",
                                          m->message_id);
                return;
            }
            a = apr_array_push(m->attributes);
            a->key = apr_pstrdup(p, key);
            a->value_len = json_string_length(v);
            a->value = apr_pstrmemdup(p, json_string_value(v), a->value_len);
        }
    }

    if (okey && !json_is_string(okey)) {
        m->problem = apr_psprintf(p, "message %s: orderingKey is not a string",
                                  m->message_id);
        return;
    }
    m->ordering_key = okey ? apr_pstrmemdup(p, json_string_value(okey),
                                            json_string_length(okey))
                           : NULL;
}

apr_status_t dt_pull_from_json(apr_pool_t *p, const json_t *answer,
                               apr_array_header_t **msgs, datos_err_t *err)
{
    apr_array_header_t *out;
    apr_status_t rv = APR_SUCCESS;
    const json_t *list;
    size_t i, n;

    if (!json_is_object(answer)) {
        rv = datos_err_set(err, p, DATOS_EMALFORMED, 0, NULL,
                           "pull answer is not a JSON object");
        goto leave;
    }
    list = json_object_get(answer, "receivedMessages");
    if (list && !json_is_array(list)) {
        rv = datos_err_set(err, p, DATOS_EMALFORMED, 0, NULL,
                           "pull answer: receivedMessages is not an array");
        goto leave;
    }
    n = list ? json_array_size(list) : 0;
    if (n > (size_t)APR_INT32_MAX) {
        rv = datos_err_set(err, p, DATOS_EMALFORMED, 0, NULL,
                           "pull answer has too many messages");
        goto leave;
    }
    out = apr_array_make(p, n ? (int)n : 1, sizeof(datos_pubsub_msg_t));
    for (i = 0; i < n; i++) {
        read_entry(p, json_array_get(list, i), (int)i, apr_array_push(out));
    }
    *msgs = out;

leave:
    return rv;
}

apr_status_t dt_parse_pull_jansson(apr_pool_t *p, const char *body,
                                   apr_size_t len, apr_array_header_t **msgs,
                                   datos_err_t *err)
{
    apr_status_t rv;
    json_t *j;

    rv = datos_json_parse(p, body, len, 0, &j, err);
    if (rv != APR_SUCCESS) {
        goto leave;
    }
    rv = dt_pull_from_json(p, j, msgs, err);

leave:
    return rv;
}
