/* mod_datos_ingest.c - POST /datos: a record (or a batch) is checked by
 * the loader's own rules and published to Pub/Sub; the loader takes it
 * from there. The write never touches BigQuery or the read cache, so the
 * read path, the batch loads and the quotas stay as they are.
 *
 * Who may post is Apache's decision (Require, in the configuration); the
 * module only warns, at `apache2 -t`, when ingestion is on and nothing
 * restricts POST where the datos handler is set.
 *
 * Each process keeps a few Pub/Sub clients (one HTTP connection each,
 * reused from request to request); a request takes one for its publish and
 * gives it back, so concurrent requests never share a connection.
 */
#include <string.h>
#include <strings.h>

#include "apr_strings.h"
#include "apr_lib.h"
#include "apr_buckets.h"
#include "apr_thread_mutex.h"

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "util_filter.h"

#include "datos_ingest.h"
#include "datos_log.h"
#include "datos_metrics.h"
#include "datos_pubsub_client.h"
#include "mod_datos_ingest.h"
#include "mod_datos_reply.h"
#include "mod_datos_runtime.h"
#include "mod_datos_sections.h"

APLOG_USE_MODULE(datos);

/* Idle clients kept per process: more would be connections held open for
 * bursts that rarely come; a request that finds none makes its own. */
#define IDLE_CLIENTS_MAX 8
/* Room for projects/<30>/topics/<255>. */
#define TOPIC_MAX 320
/* One error line per window per process, with the count of the others. */
#define ERROR_LOG_WINDOW apr_time_from_sec(10)

/* The Pub/Sub side of one runtime. */
typedef struct ingest_t {
    server_rec *s;
    datos_pubsub_conf_t psc;
    const char *topic; /* full name; NULL: ask the project first */
    const char *short_topic;

    /* Per process (child_init). */
    apr_thread_mutex_t *mutex; /* the fields below */
    datos_pubsub_t **idle;
    int nidle, idle_max;
    char topic_buf[TOPIC_MAX]; /* the full name once the project is known */
    mod_datos_log_window_t errors;
} ingest_t;

/* ingest_t *, by runtime index (NULL where DatosIngest is Off); rebuilt by
 * every post_config, in pconf. */
static apr_array_header_t *ingests;

static apr_status_t ingests_reset(void *data)
{
    (void)data;
    ingests = NULL;
    return APR_SUCCESS;
}

static ingest_t *ingest_make(apr_pool_t *pconf, const mod_datos_rt_t *rt)
{
    mod_datos_conf_t *conf = rt->conf;
    ingest_t *in;

    if (!conf->ingest)
        return NULL;
    in = apr_pcalloc(pconf, sizeof(*in));
    in->s = rt->s;
    in->psc.base_url = conf->pubsub_url;
    mod_datos_conf_http_opts(conf, conf->pubsub_url_from_emulator_env,
                             &in->psc.http);
    in->psc.creds = rt->creds;
    if (!strncmp(conf->topic, "projects/", 9))
        in->topic = conf->topic;
    else
        in->short_topic = conf->topic;
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, rt->s,
                 DATOS_LOGNO(0401) "POST /datos publishes to %s at %s",
                 conf->topic, conf->pubsub_url);
    return in;
}

int mod_datos_ingest_post_config(apr_pool_t *pconf)
{
    const apr_array_header_t *rts = mod_datos_runtimes();
    int i;

    ingests = apr_array_make(pconf, rts->nelts, sizeof(ingest_t *));
    apr_pool_cleanup_register(pconf, NULL, ingests_reset,
                              apr_pool_cleanup_null);
    for (i = 0; i < rts->nelts; i++)
        APR_ARRAY_PUSH(ingests, ingest_t *) =
            ingest_make(pconf, APR_ARRAY_IDX(rts, i, mod_datos_rt_t *));
    return OK;
}

static void child_init(apr_pool_t *pchild, ingest_t *in, int threads)
{
    datos_err_t err;
    apr_status_t rv;
    int i;

    rv = apr_thread_mutex_create(&in->mutex, APR_THREAD_MUTEX_DEFAULT, pchild);
    if (rv != APR_SUCCESS) {
        ap_log_error(
            APLOG_MARK, APLOG_CRIT, rv, in->s,
            DATOS_LOGNO(0402) "child cannot start: the ingestion mutex");
        exit(APEXIT_CHILDSICK);
    }
    in->idle_max = threads < IDLE_CLIENTS_MAX ? threads : IDLE_CLIENTS_MAX;
    if (in->idle_max < 1)
        in->idle_max = 1;
    in->idle =
        apr_pcalloc(pchild, sizeof(*in->idle) * (apr_size_t)in->idle_max);
    for (i = 0; i < in->idle_max; i++) {
        datos_err_init(&err, pchild);
        rv = datos_pubsub_create(pchild, &in->psc, &in->idle[in->nidle], &err);
        if (rv != APR_SUCCESS) {
            /* Requests make their own clients meanwhile, and report. */
            ap_log_error(APLOG_MARK, APLOG_ERR, mod_datos_log_status(rv), in->s,
                         DATOS_LOGNO(0403) "Pub/Sub client: %s",
                         err.message ? err.message : "cannot be made");
            break;
        }
        in->nidle++;
    }
}

void mod_datos_ingest_child_init(apr_pool_t *pchild)
{
    int i;

    for (i = 0; ingests && i < ingests->nelts; i++) {
        ingest_t *in = APR_ARRAY_IDX(ingests, i, ingest_t *);
        if (in)
            child_init(pchild, in, mod_datos_global.threads);
    }
}

/* ------------------------------------------------------------ a request */

typedef struct {
    int status; /* 0: accepted */
    const char *message;
    long retry_after;
} outcome_t;

static datos_pubsub_t *take_client(request_rec *r, ingest_t *in, int *pooled,
                                   datos_err_t *err)
{
    datos_pubsub_t *ps = NULL;

    *pooled = 0;
    apr_thread_mutex_lock(in->mutex);
    if (in->nidle > 0) {
        ps = in->idle[--in->nidle];
        *pooled = 1;
    }
    apr_thread_mutex_unlock(in->mutex);
    if (!ps && datos_pubsub_create(r->pool, &in->psc, &ps, err) != APR_SUCCESS)
        ps = NULL;
    return ps;
}

static void give_back(ingest_t *in, datos_pubsub_t *ps, int pooled)
{
    if (!pooled)
        return;
    apr_thread_mutex_lock(in->mutex);
    in->idle[in->nidle++] = ps;
    apr_thread_mutex_unlock(in->mutex);
}

/* The full topic name; with metadata credentials and a short name, the
 * project is asked once per process. */
static apr_status_t topic_of(request_rec *r, ingest_t *in, datos_pubsub_t *ps,
                             apr_time_t deadline, const char **topic,
                             datos_err_t *err)
{
    const char *project = NULL, *full = NULL;
    apr_status_t rv = APR_SUCCESS;

    if (in->topic) {
        *topic = in->topic;
        goto leave;
    }
    apr_thread_mutex_lock(in->mutex);
    *topic = in->topic_buf[0] ? apr_pstrdup(r->pool, in->topic_buf) : NULL;
    apr_thread_mutex_unlock(in->mutex);
    if (*topic)
        goto leave;
    rv = datos_pubsub_project(ps, r->pool, deadline, &project, err);
    if (rv != APR_SUCCESS)
        goto leave;
    if (!project
        || datos_pubsub_resource_name(r->pool, in->short_topic, "topics",
                                      project, &full)
        || !full || strlen(full) >= TOPIC_MAX) {
        rv = datos_err_set(err, r->pool, DATOS_ECONFIG, 0, NULL,
                           "DatosTopic %s: the metadata server named no "
                           "usable project; set DatosProject",
                           in->short_topic);
        goto leave;
    }
    apr_thread_mutex_lock(in->mutex);
    apr_cpystrn(in->topic_buf, full, sizeof(in->topic_buf));
    apr_thread_mutex_unlock(in->mutex);
    *topic = full;

leave:
    return rv;
}

/* Reads the whole body through the input filters (de-chunked) into one
 * buffer, refusing it as soon as it passes max. The buffer is the
 * announced Content-Length (checked against max before), or max itself
 * for a chunked body: pages never written are never resident, and no
 * outgrown copy stays in the pool, so a request holds the body once
 * (docs/apache.md, "POST /datos"). */
static int read_body(request_rec *r, apr_size_t max, apr_size_t announced,
                     char **body, apr_size_t *len, outcome_t *out)
{
    apr_bucket_brigade *bb;
    apr_size_t used = 0, cap = announced ? announced : max;
    char *buf;
    int seen_eos = 0;
    apr_status_t rv;

    bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    buf = apr_palloc(r->pool, cap + 1);
    do {
        apr_bucket *b;

        rv = ap_get_brigade(r->input_filters, bb, AP_MODE_READBYTES,
                            APR_BLOCK_READ, HUGE_STRING_LEN);
        if (rv != APR_SUCCESS) {
            /* A malformed chunk, a body over LimitRequestBody, a client
             * that stopped sending: httpd names the status. */
            out->status = ap_map_http_request_error(rv, HTTP_BAD_REQUEST);
            out->message = out->status == HTTP_REQUEST_ENTITY_TOO_LARGE
                               ? "the body is larger than this server accepts"
                               : "the request body could not be read";
            apr_brigade_cleanup(bb);
            return 0;
        }
        for (b = APR_BRIGADE_FIRST(bb); b != APR_BRIGADE_SENTINEL(bb);
             b = APR_BUCKET_NEXT(b)) {
            const char *data;
            apr_size_t n;

            if (APR_BUCKET_IS_EOS(b)) {
                seen_eos = 1;
                break;
            }
            if (APR_BUCKET_IS_METADATA(b))
                continue;
            rv = apr_bucket_read(b, &data, &n, APR_BLOCK_READ);
            if (rv != APR_SUCCESS) {
                out->status = HTTP_BAD_REQUEST;
                out->message = "the request body could not be read";
                apr_brigade_cleanup(bb);
                return 0;
            }
            if (n > max - used) {
                out->status = HTTP_REQUEST_ENTITY_TOO_LARGE;
                out->message = apr_psprintf(r->pool,
                                            "the body is larger "
                                            "than %" APR_SIZE_T_FMT " bytes "
                                            "(DatosMaxBody)",
                                            max);
                apr_brigade_cleanup(bb);
                return 0;
            }
            if (n > cap - used) {
                /* httpd's input filters keep a body to its Content-Length;
                 * more is not the body announced */
                out->status = HTTP_BAD_REQUEST;
                out->message = "the body is longer than its Content-Length";
                apr_brigade_cleanup(bb);
                return 0;
            }
            memcpy(buf + used, data, n);
            used += n;
        }
        apr_brigade_cleanup(bb);
    } while (!seen_eos);
    buf[used] = '\0';
    *body = buf;
    *len = used;
    return 1;
}

/* The Content-Length, 0 when there is none (a chunked body); httpd
 * refused a malformed one already. */
static apr_uint64_t announced_length(request_rec *r)
{
    const char *cl = apr_table_get(r->headers_in, "Content-Length");
    apr_off_t n;
    char *end;

    if (!cl || apr_strtoff(&n, cl, &end, 10) != APR_SUCCESS || *end || n < 0)
        return 0;
    return (apr_uint64_t)n;
}

static void log_failure(request_rec *r, ingest_t *in, apr_status_t rv,
                        const datos_err_t *err, int n)
{
    apr_time_t now = apr_time_now();
    int more;

    if (!mod_datos_log_window_take(&in->errors, in->mutex, now,
                                   ERROR_LOG_WINDOW, &more))
        return;
    ap_log_rerror(APLOG_MARK, APLOG_ERR, mod_datos_log_status(rv), r,
                  DATOS_LOGNO(0404) "POST /datos: %d record%s not accepted: "
                                    "%s%s",
                  n, n == 1 ? "" : "s",
                  err->message ? err->message : "Pub/Sub failed",
                  more ? apr_psprintf(r->pool,
                                      " (and %d more failed "
                                      "publishes in the last %d s)",
                                      more, (int)apr_time_sec(ERROR_LOG_WINDOW))
                       : "");
}

static const char *publish_message(int status, apr_status_t rv)
{
    switch (status) {
    case HTTP_GATEWAY_TIME_OUT:
        return "Pub/Sub did not answer in time; the record may or may not "
               "have been published";
    case HTTP_SERVICE_UNAVAILABLE:
        return "Pub/Sub cannot take records right now; nothing was published";
    default:
        return rv == DATOS_EMALFORMED
                   ? "Pub/Sub's answer could not be read; the record may have "
                     "been published"
                   : "Pub/Sub failed; nothing was published";
    }
}

static int send_refusal(request_rec *r, const datos_ingest_refusal_t *why)
{
    apr_size_t len = 0;
    const char *body =
        datos_ingest_refusal_body(r->pool, HTTP_BAD_REQUEST, why, &len);

    if (!body)
        return mod_datos_send_error(r, HTTP_BAD_REQUEST,
                                    "the body is not a valid record", 0);
    return mod_datos_reply(r, HTTP_BAD_REQUEST, MOD_DATOS_JSON_TYPE, body, len);
}

static ingest_t *ingest_of(const mod_datos_conf_t *conf)
{
    const mod_datos_rt_t *rt = conf->rt;

    if (!rt || !ingests || rt->index >= ingests->nelts)
        return NULL;
    return APR_ARRAY_IDX(ingests, rt->index, ingest_t *);
}

int mod_datos_ingest(request_rec *r, mod_datos_conf_t *conf)
{
    ingest_t *in = ingest_of(conf);
    apr_time_t start = apr_time_now(), published = 0;
    datos_record_opts_t opts;
    datos_ingest_t ing;
    datos_ingest_refusal_t why;
    const datos_pubsub_out_t *msgs;
    apr_array_header_t *ids = NULL;
    datos_pubsub_t *ps = NULL;
    const char *ce, *topic, *body_out;
    char *body = NULL;
    apr_size_t len = 0, out_len = 0;
    apr_uint64_t announced;
    datos_err_t err;
    outcome_t out;
    apr_status_t rv;
    int pooled = 0, rc = OK;

    memset(&out, 0, sizeof(out));
    datos_err_init(&err, r->pool);
    if (!in) {
        out.status = HTTP_SERVICE_UNAVAILABLE;
        out.message = "ingestion is not ready";
        out.retry_after = 5;
        goto answer;
    }
    ce = apr_table_get(r->headers_in, "Content-Encoding");
    if (ce && *ce && strcasecmp(ce, "identity")) {
        apr_table_setn(r->headers_out, "Accept-Encoding", "identity");
        out.status = HTTP_UNSUPPORTED_MEDIA_TYPE;
        out.message = "a compressed body is not accepted; send it as is";
        goto answer;
    }
    if (!datos_ingest_is_json(apr_table_get(r->headers_in, "Content-Type"))) {
        apr_table_setn(r->headers_out, "Accept-Post", "application/json");
        out.status = HTTP_UNSUPPORTED_MEDIA_TYPE;
        out.message = "the body must be application/json (UTF-8)";
        goto answer;
    }
    /* Refused before a byte is read (nor "100 Continue" sent). */
    announced = announced_length(r);
    if (announced > (apr_uint64_t)conf->max_body) {
        out.status = HTTP_REQUEST_ENTITY_TOO_LARGE;
        out.message = apr_psprintf(r->pool,
                                   "the body is larger than %" APR_INT64_T_FMT
                                   " bytes (DatosMaxBody)",
                                   conf->max_body);
        goto answer;
    }
    if (!read_body(r, (apr_size_t)conf->max_body, (apr_size_t)announced, &body,
                   &len, &out))
        goto answer;

    datos_record_opts_init(&opts, apr_time_now());
    rv = datos_ingest_parse(r->pool, body, len, conf->max_batch, &opts, &ing,
                            &why);
    if (rv != APR_SUCCESS) {
        if (rv == DATOS_EMALFORMED) {
            rc = send_refusal(r, &why);
            out.status = HTTP_BAD_REQUEST;
            goto done;
        }
        out.status = HTTP_INTERNAL_SERVER_ERROR;
        out.message = "the body could not be checked";
        goto answer;
    }

    ps = take_client(r, in, &pooled, &err);
    if (!ps) {
        rv = APR_EGENERAL;
        goto failed;
    }
    published = apr_time_now();
    rv = topic_of(r, in, ps, published + conf->timeout, &topic, &err);
    if (rv == APR_SUCCESS)
        rv = datos_ingest_messages(r->pool, &ing, r->useragent_ip, &msgs);
    if (rv == APR_SUCCESS)
        rv = datos_pubsub_publish(ps, r->pool, published + conf->timeout, topic,
                                  msgs, ing.n, &ids, &err);
    published = apr_time_now() - published;
    give_back(in, ps, pooled);
    if (rv == APR_SUCCESS && ids && ids->nelts == ing.n) {
        body_out =
            datos_ingest_accepted_body(r->pool, ing.batch, ids, &out_len);
        if (body_out) {
            rc = mod_datos_reply(r, HTTP_ACCEPTED, MOD_DATOS_JSON_TYPE,
                                 body_out, out_len);
            out.status = HTTP_ACCEPTED;
            goto done;
        }
        rv = APR_ENOMEM;
    }

failed:
    log_failure(r, in, rv, &err, ing.n);
    out.status = APR_STATUS_IS_TIMEUP(rv) ? HTTP_GATEWAY_TIME_OUT
                 : rv == DATOS_EMALFORMED || rv == APR_EGENERAL
                     ? HTTP_BAD_GATEWAY
                     : mod_datos_backend_status(rv);
    out.message = publish_message(out.status, rv);
    out.retry_after = mod_datos_retry_after(&err);

answer:
    if (out.status >= 400) {
        /* Whatever is left of an unread body is not worth reading; a
         * client told to come back later need not hold a worker. */
        r->connection->keepalive = AP_CONN_CLOSE;
        rc = mod_datos_send_error(r, out.status, out.message,
                                  out.status >= 500 ? out.retry_after : 0);
    }

done:
    datos_metrics_ingest(mod_datos_global.metrics, out.status,
                         published > 0 ? published : 0);
    datos_metrics_request(mod_datos_global.metrics, DATOS_HANDLER_INGEST,
                          out.status, apr_time_now() - start);
    return rc;
}

/* ------------------------------------------------ the access-control check */

static int ingest_anywhere(server_rec *s)
{
    for (; s; s = s->next)
        if (mod_datos_conf(s)->ingest > 0)
            return 1;
    return 0;
}

void mod_datos_ingest_check_access(apr_pool_t *ptemp, server_rec *s)
{
    apr_array_header_t *sections;
    int i, j;

    if (!ingest_anywhere(s))
        return;
    sections = mod_datos_sections(ptemp, s);
    for (i = 0; i < sections->nelts; i++) {
        const mod_datos_section_t *h =
            &APR_ARRAY_IDX(sections, i, mod_datos_section_t);
        int guarded = 0;

        if (!mod_datos_section_sets(h, "datos"))
            continue;
        /* A section at the top serves every host; any host with ingestion
         * on makes it a write path. */
        if (h->vhost && (!h->s || mod_datos_conf(h->s)->ingest <= 0))
            continue;
        for (j = 0; j < sections->nelts && !guarded; j++) {
            const mod_datos_section_t *o =
                &APR_ARRAY_IDX(sections, j, mod_datos_section_t);
            if (mod_datos_section_covers(o, h)
                && mod_datos_section_restricts(ptemp, o, "POST"))
                guarded = 1;
        }
        if (!guarded)
            ap_log_error(
                APLOG_MARK, APLOG_WARNING, 0, s,
                DATOS_LOGNO(
                    0405) "DatosIngest On, but nothing restricts POST in %s "
                          "%s (%s:%d): anyone who reaches this server can "
                          "publish records. Add, inside it, <LimitExcept GET "
                          "HEAD OPTIONS> Require ... </LimitExcept> (a "
                          "password file or a token; see datos.conf)",
                h->d->directive, h->d->args ? h->d->args : "",
                h->d->filename ? h->d->filename : "?", h->d->line_num);
    }
}
