/* datos_pubsub_client.c - the Pub/Sub v1 REST calls (docs/google-apis.md 1.4 to
 * 1.7) over the Google call layer: bodies from the wire functions of
 * datos_pubsub.c, one request per chunk, no retries. */
#include <string.h>
#include <apr_strings.h>

#include "datos_google.h"
#include "datos_pubsub_client.h"
#include "datos_pubsub_pull.h"
#include "datos_pubsub_scan.h"

/* Small answers ({} or a list of message ids) are read up to this. */
#define SMALL_ANSWER_MAX ((apr_size_t)1024 * 1024)

struct datos_pubsub_t {
    apr_pool_t *pool;
    const char *base; /* service root, no trailing '/' */
    datos_http_t *http;
    datos_creds_t *creds;
};

apr_status_t datos_pubsub_create(apr_pool_t *p, const datos_pubsub_conf_t *conf,
                                 datos_pubsub_t **out, datos_err_t *err)
{
    apr_status_t rv;
    datos_pubsub_t *ps;
    datos_http_opts_t opts;
    char *base;
    apr_size_t n;

    if (!conf->base_url || !*conf->base_url) {
        rv = datos_err_set(err, p, DATOS_ECONFIG, 0, NULL,
                           "Pub/Sub client needs a base URL");
        goto leave;
    }
    base = apr_pstrdup(p, conf->base_url);
    n = strlen(base);
    while (n > 0 && base[n - 1] == '/') {
        base[--n] = '\0';
    }
    rv = datos_http_check_url(p, base, conf->http.allow_insecure, 0, err);
    if (rv != APR_SUCCESS) {
        goto leave;
    }
    opts = conf->http;
    if (opts.max_response < DATOS_PUBSUB_PULL_MAX_RESPONSE) {
        opts.max_response = DATOS_PUBSUB_PULL_MAX_RESPONSE;
    }
    ps = apr_pcalloc(p, sizeof(*ps));
    ps->pool = p;
    ps->base = base;
    ps->creds = conf->creds;
    rv = datos_http_create(p, &opts, &ps->http, err);
    if (rv != APR_SUCCESS) {
        goto leave;
    }
    *out = ps;

leave:
    return rv;
}

/* "projects/P/<kind>/N" -> "<base>/v1/projects/P/<kind>/N<verb>", each
 * name percent-encoded; NULL when name is not of that form. */
static const char *resource_url(apr_pool_t *p, const datos_pubsub_t *ps,
                                const char *name, const char *kind,
                                const char *verb)
{
    const char *rest, *slash;
    char *project, *id;
    apr_size_t klen = strlen(kind);

    if (!name || strncmp(name, "projects/", 9)) {
        return NULL;
    }
    rest = name + 9;
    slash = strchr(rest, '/');
    if (!slash || slash == rest || strncmp(slash + 1, kind, klen)
        || slash[1 + klen] != '/') {
        return NULL;
    }
    project = apr_pstrmemdup(p, rest, (apr_size_t)(slash - rest));
    id = apr_pstrdup(p, slash + 2 + klen);
    if (!*id || strchr(id, '/')) {
        return NULL;
    }
    return apr_pstrcat(p, ps->base, "/v1/projects/",
                       datos_http_urlencode(p, project), "/", kind, "/",
                       datos_http_urlencode(p, id), verb, NULL);
}

static apr_status_t bad_name(apr_pool_t *p, const char *what, const char *name,
                             const char *form, datos_err_t *err)
{
    return datos_err_set(
        err, p, APR_EINVAL, 0, NULL, "%s: '%s' is not a full name (%s)", what,
        name ? datos_err_text(p, name, strlen(name), 200) : "(none)", form);
}

static apr_status_t post(datos_google_op_t *op, apr_pool_t *cp,
                         const char *what, const char *url, const char *body,
                         apr_size_t len, apr_size_t max_response,
                         datos_http_resp_t **resp)
{
    datos_google_call_t call;

    memset(&call, 0, sizeof(call));
    call.what = what;
    call.method = "POST";
    call.url = url;
    call.body = body;
    call.body_len = len;
    call.max_response = max_response;
    return datos_google_call(op, cp, &call, resp);
}

/* Follows the bytes of an answer past its bound. */
typedef struct pull_tap_t {
    apr_pool_t *p;
    apr_size_t bound;
    datos_pull_scan_t *sc;
} pull_tap_t;

static void pull_overflow(void *baton, const char *stored,
                          apr_size_t stored_len, const char *more, apr_size_t n)
{
    pull_tap_t *t = baton;

    if (!t->sc) {
        t->sc = datos_pull_scan_create(t->p, t->bound);
        datos_pull_scan_feed(t->sc, stored, stored_len);
    }
    datos_pull_scan_feed(t->sc, more, n);
}

/* Every ack id the scanner saw from entry `from` on into out->unread. */
static void unread_from(pull_tap_t *t, const char *body, apr_size_t len,
                        apr_size_t from, datos_pubsub_pulled_t *out)
{
    const apr_array_header_t *entries;
    int i;

    if (!t->sc) {
        t->sc = datos_pull_scan_create(t->p, t->bound);
        datos_pull_scan_feed(t->sc, body, len);
    }
    entries = datos_pull_scan_entries(t->sc);
    for (i = 0; i < entries->nelts; i++) {
        const datos_pull_entry_t *e =
            &APR_ARRAY_IDX(entries, i, datos_pull_entry_t);
        if (e->start >= from && e->ack_id) {
            APR_ARRAY_PUSH(out->unread, const char *) = e->ack_id;
        }
    }
}

apr_status_t datos_pubsub_pull_bounded(datos_pubsub_t *ps, apr_pool_t *p,
                                       apr_time_t deadline,
                                       const char *subscription,
                                       int max_messages, apr_size_t max_bytes,
                                       datos_pubsub_pulled_t *out,
                                       datos_err_t *err)
{
    static const char what[] = "subscriptions.pull";
    apr_status_t rv;
    datos_google_op_t op;
    datos_google_call_t call;
    datos_http_resp_t *resp = NULL;
    const char *url, *body;
    pull_tap_t tap;
    apr_pool_t *cp;
    apr_size_t cut;

    memset(out, 0, sizeof(*out));
    out->unread = apr_array_make(p, 4, sizeof(const char *));
    memset(&tap, 0, sizeof(tap));
    tap.p = p;
    tap.bound = max_bytes ? max_bytes : DATOS_PUBSUB_PULL_MAX_RESPONSE;
    /* The answer and its copy of the messages' data need not live as long
     * as the messages: they go with a pool of their own. */
    apr_pool_create(&cp, p);
    datos_google_op_init(&op, p, ps->http, ps->creds, deadline, err);
    url = resource_url(p, ps, subscription, "subscriptions", ":pull");
    if (!url) {
        rv = bad_name(p, what, subscription, "projects/P/subscriptions/S", err);
        goto leave;
    }
    body = datos_pubsub_pull_body(p, max_messages);
    memset(&call, 0, sizeof(call));
    call.what = what;
    call.method = "POST";
    call.url = url;
    call.body = body;
    call.body_len = strlen(body);
    call.max_response = tap.bound;
    call.overflow = pull_overflow;
    call.overflow_baton = &tap;
    rv = datos_google_call(&op, cp, &call, &resp);
    if (rv != APR_SUCCESS) {
        /* A transfer cut short: what it handed out goes back. */
        if (resp && resp->status >= 200 && resp->status <= 299) {
            out->bytes = resp->received;
            unread_from(&tap, resp->body, resp->body_len, 0, out);
        }
        goto leave;
    }
    out->bytes = resp->received;
    if (resp->partial) {
        out->cut = 1;
        cut = tap.sc ? datos_pull_scan_cut(tap.sc) : 0;
        rv = cut ? datos_pubsub_parse_pull_cut(p, resp->body, cut, &out->msgs,
                                               err)
                 : datos_err_set(err, p, DATOS_EMALFORMED, 0, NULL,
                                 "an answer of %" APR_SIZE_T_FMT
                                 " bytes whose messages do not start within "
                                 "%" APR_SIZE_T_FMT,
                                 resp->received, tap.bound);
        unread_from(&tap, resp->body, resp->body_len,
                    rv == APR_SUCCESS ? cut : 0, out);
    }
    else {
        rv = datos_pubsub_parse_pull(p, resp->body, resp->body_len, &out->msgs,
                                     err);
        if (rv != APR_SUCCESS) {
            unread_from(&tap, resp->body, resp->body_len, 0, out);
        }
    }
    if (rv != APR_SUCCESS) {
        out->msgs = NULL;
        if (err) {
            err->http_status = resp->status;
        }
        datos_err_prefix(err, p, "%s: ", what);
    }

leave:
    if (!out->msgs) {
        out->msgs = apr_array_make(p, 1, sizeof(datos_pubsub_msg_t));
    }
    datos_google_op_done(&op);
    apr_pool_destroy(cp);
    return rv;
}

apr_status_t datos_pubsub_pull(datos_pubsub_t *ps, apr_pool_t *p,
                               apr_time_t deadline, const char *subscription,
                               int max_messages, apr_array_header_t **msgs,
                               datos_err_t *err)
{
    datos_pubsub_pulled_t got;
    apr_status_t rv;

    rv = datos_pubsub_pull_bounded(ps, p, deadline, subscription, max_messages,
                                   0, &got, err);
    if (rv == APR_SUCCESS && got.cut) {
        rv = datos_err_set(err, p, DATOS_ETOOLARGE, 200, NULL,
                           "subscriptions.pull: answer of %" APR_SIZE_T_FMT
                           " bytes is larger than %" APR_SIZE_T_FMT,
                           got.bytes, DATOS_PUBSUB_PULL_MAX_RESPONSE);
    }
    if (rv == APR_SUCCESS) {
        *msgs = got.msgs;
    }
    return rv;
}

/* Reads the answer to one chunk (the ids of a publish). */
typedef apr_status_t answer_fn(apr_pool_t *p, const datos_pubsub_body_t *b,
                               const datos_http_resp_t *resp, void *baton,
                               datos_err_t *err);

/* One POST of each body to url, in order, each in a scratch pool;
 * answer (may be NULL) reads each answer. On a failure after several
 * chunks, err->message ends with "(K of N <progress> before the failure)",
 * K counting the items of the chunks that went through. */
static apr_status_t post_chunks(datos_google_op_t *op, apr_pool_t *p,
                                const char *what, const char *url,
                                const apr_array_header_t *bodies, int n,
                                const char *progress, answer_fn *answer,
                                void *baton, datos_err_t *err)
{
    apr_status_t rv = APR_SUCCESS;
    datos_http_resp_t *resp;
    apr_pool_t *cp = NULL;
    int i, done = 0;

    for (i = 0; i < bodies->nelts; i++) {
        const datos_pubsub_body_t *b =
            &APR_ARRAY_IDX(bodies, i, datos_pubsub_body_t);
        if (cp) {
            apr_pool_clear(cp);
        }
        else {
            apr_pool_create(&cp, p);
        }
        rv = post(op, cp, what, url, b->body, b->len, SMALL_ANSWER_MAX, &resp);
        if (rv == APR_SUCCESS && answer) {
            rv = answer(p, b, resp, baton, err);
        }
        if (rv != APR_SUCCESS) {
            if (err && err->message && bodies->nelts > 1) {
                err->message = apr_psprintf(err->pool,
                                            "%s (%d of %d %s before the "
                                            "failure)",
                                            err->message, done, n, progress);
            }
            break;
        }
        done += b->count;
    }
    if (cp) {
        apr_pool_destroy(cp);
    }
    return rv;
}

/* subscriptions.acknowledge, or modifyAckDeadline to seconds when modack:
 * the answers are {}. */
static apr_status_t ack_chunks(datos_pubsub_t *ps, apr_pool_t *p,
                               apr_time_t deadline, const char *subscription,
                               const char *const *ack_ids, int n, int modack,
                               int seconds, datos_err_t *err)
{
    const char *what = modack ? "subscriptions.modifyAckDeadline"
                              : "subscriptions.acknowledge";
    apr_status_t rv;
    datos_google_op_t op;
    apr_array_header_t *bodies;
    const char *url;

    rv = modack
             ? datos_pubsub_modack_bodies(p, ack_ids, n, seconds, &bodies, err)
             : datos_pubsub_ack_bodies(p, ack_ids, n, &bodies, err);
    if (rv != APR_SUCCESS) {
        datos_err_prefix(err, p, "%s: ", what);
        return rv;
    }
    datos_google_op_init(&op, p, ps->http, ps->creds, deadline, err);
    url = resource_url(p, ps, subscription, "subscriptions",
                       modack ? ":modifyAckDeadline" : ":acknowledge");
    if (!url) {
        rv = bad_name(p, what, subscription, "projects/P/subscriptions/S", err);
        goto leave;
    }
    rv = post_chunks(&op, p, what, url, bodies, n,
                     modack ? "ack ids modified" : "ack ids acknowledged", NULL,
                     NULL, err);

leave:
    datos_google_op_done(&op);
    return rv;
}

apr_status_t datos_pubsub_ack(datos_pubsub_t *ps, apr_pool_t *p,
                              apr_time_t deadline, const char *subscription,
                              const char *const *ack_ids, int n,
                              datos_err_t *err)
{
    return ack_chunks(ps, p, deadline, subscription, ack_ids, n, 0, 0, err);
}

apr_status_t datos_pubsub_modack(datos_pubsub_t *ps, apr_pool_t *p,
                                 apr_time_t deadline, const char *subscription,
                                 const char *const *ack_ids, int n, int seconds,
                                 datos_err_t *err)
{
    return ack_chunks(ps, p, deadline, subscription, ack_ids, n, 1, seconds,
                      err);
}

apr_status_t datos_pubsub_project(datos_pubsub_t *ps, apr_pool_t *p,
                                  apr_time_t deadline, const char **project,
                                  datos_err_t *err)
{
    return datos_creds_project(ps->creds, ps->http, p, deadline, project, err);
}

/* The ids of one publish request, kept in p (the answer goes with the
 * chunk's scratch pool) and added to the array baton. */
static apr_status_t publish_ids(apr_pool_t *p, const datos_pubsub_body_t *b,
                                const datos_http_resp_t *resp, void *baton,
                                datos_err_t *err)
{
    apr_array_header_t *all = baton, *ids;
    apr_status_t rv;
    int k;

    rv = datos_pubsub_parse_publish(p, resp->body, resp->body_len, b->count,
                                    &ids, err);
    if (rv != APR_SUCCESS) {
        if (err) {
            err->http_status = resp->status;
        }
        datos_err_prefix(err, p, "topics.publish: ");
        return rv;
    }
    for (k = 0; k < ids->nelts; k++) {
        APR_ARRAY_PUSH(all, const char *) = APR_ARRAY_IDX(ids, k, const char *);
    }
    return rv;
}

apr_status_t datos_pubsub_publish(datos_pubsub_t *ps, apr_pool_t *p,
                                  apr_time_t deadline, const char *topic,
                                  const datos_pubsub_out_t *msgs, int n,
                                  apr_array_header_t **message_ids,
                                  datos_err_t *err)
{
    static const char what[] = "topics.publish";
    apr_status_t rv;
    datos_google_op_t op;
    apr_array_header_t *bodies, *all;
    const char *url;

    all = apr_array_make(p, n > 0 ? n : 1, sizeof(const char *));
    *message_ids = all;
    datos_google_op_init(&op, p, ps->http, ps->creds, deadline, err);
    url = resource_url(p, ps, topic, "topics", ":publish");
    if (!url) {
        rv = bad_name(p, what, topic, "projects/P/topics/T", err);
        goto leave;
    }
    rv = datos_pubsub_publish_bodies(p, msgs, n, &bodies, err);
    if (rv != APR_SUCCESS) {
        datos_err_prefix(err, p, "%s: ", what);
        goto leave;
    }
    rv = post_chunks(&op, p, what, url, bodies, n, "messages published",
                     publish_ids, all, err);

leave:
    datos_google_op_done(&op);
    return rv;
}
