/* datos_ingest.c - POST /datos's body rules, messages and answers. */
#include <string.h>
#include <strings.h>

#include <apr_strings.h>
#include <apr_lib.h>
#include <jansson.h>

#include "datos_ingest.h"
#include "datos_json.h"

static apr_status_t refuse(datos_ingest_refusal_t *why, const char *reason,
                           int index, const char *message)
{
    why->reason = reason;
    why->index = index;
    why->message = message;
    return DATOS_EMALFORMED;
}

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

apr_status_t datos_ingest_parse(apr_pool_t *p, const char *body, apr_size_t len,
                                int max_batch, const datos_record_opts_t *opts,
                                datos_ingest_t *in, datos_ingest_refusal_t *why)
{
    apr_array_header_t *elements = NULL;
    datos_invalid_t inv;
    datos_record_t rec;
    datos_span_t *one;
    apr_status_t rv;
    int i;

    memset(in, 0, sizeof(*in));
    why->reason = NULL;
    why->index = -1;
    why->message = NULL;
    if ((!body && len) || !opts || max_batch < 1
        || max_batch > DATOS_INGEST_MAX_BATCH) {
        rv = APR_EINVAL;
        goto leave;
    }
    rv = datos_json_array_elements(p, body, len, &elements, &inv);
    if (rv == DATOS_EMALFORMED) {
        rv = refuse(why, datos_reason_name(inv.reason), -1, inv.detail);
        goto leave;
    }
    if (rv == APR_ENOENT) {
        /* One record: judged whole, published without the whitespace
         * around it. */
        while (len && is_ws(*body)) {
            body++;
            len--;
        }
        while (len && is_ws(body[len - 1]))
            len--;
        rv = datos_record_check(p, body, len, opts, &rec, &inv);
        if (rv == DATOS_EMALFORMED) {
            rv = refuse(why, datos_reason_name(inv.reason), -1, inv.detail);
            goto leave;
        }
        if (rv != APR_SUCCESS)
            goto leave;
        one = apr_palloc(p, sizeof(*one));
        one->data = body;
        one->len = len;
        in->batch = 0;
        in->n = 1;
        in->records = one;
        goto leave;
    }
    if (rv != APR_SUCCESS)
        goto leave;

    if (elements->nelts == 0) {
        rv = refuse(why, DATOS_INGEST_EMPTY_BATCH, -1,
                    "the batch is an empty array; send at least one record");
        goto leave;
    }
    if (elements->nelts > max_batch) {
        rv = refuse(why, DATOS_INGEST_TOO_MANY, -1,
                    apr_psprintf(p,
                                 "the batch holds %d records; at most %d "
                                 "are accepted in one request",
                                 elements->nelts, max_batch));
        goto leave;
    }
    for (i = 0; i < elements->nelts; i++) {
        const datos_span_t *e = &APR_ARRAY_IDX(elements, i, datos_span_t);

        rv = datos_record_check(p, e->data, e->len, opts, &rec, &inv);
        if (rv == DATOS_EMALFORMED) {
            rv = refuse(why, datos_reason_name(inv.reason), i,
                        apr_psprintf(p, "record %d: %s", i, inv.detail));
            goto leave;
        }
        if (rv != APR_SUCCESS)
            goto leave;
    }
    in->batch = 1;
    in->n = elements->nelts;
    in->records = (const datos_span_t *)elements->elts;

leave:
    return rv;
}

/* The value of a parameter, unquoted (RFC 9110 5.6.6: token or
 * quoted-string); NULL when malformed. *end is past it. */
static const char *param_value(apr_pool_t *p, const char *s, const char **end)
{
    if (*s == '"') {
        char *out = apr_palloc(p, strlen(s) + 1), *o = out;

        for (s++; *s && *s != '"'; s++) {
            if (*s == '\\' && s[1])
                s++;
            *o++ = *s;
        }
        if (*s != '"')
            return NULL;
        *o = '\0';
        *end = s + 1;
        return out;
    }
    *end = s + strcspn(s, "; \t");
    return apr_pstrmemdup(p, s, (apr_size_t)(*end - s));
}

int datos_ingest_is_json(const char *content_type)
{
    static const char type[] = "application/json";
    apr_pool_t *p;
    const char *s = content_type;
    int ok = 0;

    if (!s)
        return 0;
    while (*s == ' ' || *s == '\t')
        s++;
    if (strncasecmp(s, type, sizeof(type) - 1))
        return 0;
    s += sizeof(type) - 1;
    if (apr_pool_create(&p, NULL) != APR_SUCCESS)
        return 0;
    for (;;) {
        const char *name, *value, *end;
        apr_size_t n;

        while (*s == ' ' || *s == '\t')
            s++;
        if (!*s) {
            ok = 1;
            break;
        }
        if (*s != ';')
            break;
        s++;
        while (*s == ' ' || *s == '\t')
            s++;
        name = s;
        n = strcspn(s, "=; \t");
        if (!n || s[n] != '=')
            break;
        value = param_value(p, s + n + 1, &end);
        if (!value)
            break;
        if (n == 7 && !strncasecmp(name, "charset", 7)
            && strcasecmp(value, "utf-8") && strcasecmp(value, "utf8"))
            break;
        s = end;
    }
    apr_pool_destroy(p);
    return ok;
}

apr_status_t datos_ingest_messages(apr_pool_t *p, const datos_ingest_t *in,
                                   const char *client,
                                   const datos_pubsub_out_t **out)
{
    datos_pubsub_out_t *msgs;
    apr_array_header_t *attrs;
    datos_attr_t *a;
    apr_status_t rv = APR_SUCCESS;
    int i;

    *out = NULL;
    if (!in || in->n < 1 || !in->records) {
        rv = APR_EINVAL;
        goto leave;
    }
    /* Every message carries the same attributes: one array serves all. */
    attrs = apr_array_make(p, 2, sizeof(datos_attr_t));
    a = apr_array_push(attrs);
    a->key = DATOS_ATTR_INGEST;
    a->value = "http";
    a->value_len = 4;
    if (client && *client) {
        a = apr_array_push(attrs);
        a->key = DATOS_ATTR_CLIENT;
        a->value = client;
        a->value_len = strlen(client);
    }
    msgs = apr_pcalloc(p, sizeof(*msgs) * (apr_size_t)in->n);
    for (i = 0; i < in->n; i++) {
        msgs[i].data = (const unsigned char *)in->records[i].data;
        msgs[i].data_len = in->records[i].len;
        msgs[i].attributes = attrs;
    }
    *out = msgs;

leave:
    return rv;
}

const char *datos_ingest_accepted_body(apr_pool_t *p, int batch,
                                       const apr_array_header_t *ids,
                                       apr_size_t *len)
{
    json_t *doc = datos_json_bind(p, json_object());
    int i;

    if (!doc)
        return NULL;
    if (batch) {
        json_t *arr = json_array();

        for (i = 0; ids && i < ids->nelts; i++)
            json_array_append_new(
                arr, json_string(APR_ARRAY_IDX(ids, i, const char *)));
        json_object_set_new(doc, "messageIds", arr);
    }
    else {
        json_object_set_new(
            doc, "messageId",
            json_string(ids && ids->nelts ? APR_ARRAY_IDX(ids, 0, const char *)
                                          : ""));
    }
    return datos_json_dump(p, doc, len);
}

const char *datos_ingest_refusal_body(apr_pool_t *p, int code,
                                      const datos_ingest_refusal_t *why,
                                      apr_size_t *len)
{
    json_t *doc = datos_json_bind(p, json_object());
    json_t *e = json_object();

    if (!doc || !e) {
        json_decref(e);
        return NULL;
    }
    json_object_set_new(e, "code", json_integer(code));
    json_object_set_new(e, "reason",
                        json_string(why->reason ? why->reason : "invalid"));
    json_object_set_new(e, "message",
                        json_string(why->message ? why->message : ""));
    if (why->index >= 0)
        json_object_set_new(e, "index", json_integer(why->index));
    json_object_set_new(doc, "error", e);
    return datos_json_dump(p, doc, len);
}
