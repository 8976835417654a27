/* mod_datos_linger.c - the worker that answered /datos waits a moment for
 * the kept-alive connection's next request (DatosKeepAliveLinger).
 *
 * Under the event MPM, a worker that has answered hands a kept-alive
 * connection back to the listener thread, which polls it. The client's
 * next request then costs two epoll changes, a wake-up of the listener, a
 * hand-off through the worker queue and a wake-up of another worker. A
 * cache hit is a few microseconds of work, so for a client that asks again
 * at once (a load balancer reusing its connections under load, a poller)
 * the hand-off costs more than the answer. Varnish's workers wait for the
 * next request on a session the same way (its timeout_linger, 50 ms by
 * default) before they give it to the waiter.
 *
 * Right after a response httpd checks, with a non-blocking speculative
 * read of the connection (ap_check_pipeline), whether the client has
 * pipelined its next request; if so the same worker reads it at once.
 * After a /datos answer that read passes this connection input filter.
 * When nothing is there yet, the filter writes what the core output
 * filter may still hold of the response (it keeps what the socket did not
 * take, and may keep a small response for the MPM to flush; a client
 * sends its next request only once it has this one), without blocking, as
 * the MPM would have; when all of it went out, it polls the socket for up
 * to DatosKeepAliveLinger. If the request comes, the read returns it and
 * httpd goes on as for a pipelined request. Otherwise the connection goes
 * to the MPM as it would have, DatosKeepAliveLinger later.
 *
 * A client slow to take the answer is left to the MPM, which waits for
 * it without a worker. A waiting worker holds a thread, not the CPU. At
 * most half of a process's threads wait at once, so the rest stay for new
 * connections; only the event MPM hands connections off (a worker or
 * prefork thread already waits on its connection), HTTP/2 streams are not
 * connections of their own, and nothing waits while the server stops.
 */
#include <string.h>

#include "apr_atomic.h"
#include "apr_poll.h"

#include "httpd.h"
#include "http_config.h"
#include "http_connection.h"
#include "http_core.h"
#include "ap_mpm.h"
#include "util_filter.h"

#include "datos_metrics.h"

#include "mod_datos_linger.h"
#include "mod_datos_runtime.h"

#define LINGER_FILTER "DATOS_LINGER"

typedef struct {
    apr_interval_time_t armed; /* > 0: wait that long on the next check */
} linger_ctx_t;

static ap_filter_rec_t *linger_filter;
/* Per process, set in child_init: whether the MPM hands connections off,
 * and how many of its threads may wait at once. */
static int mpm_is_async;
static apr_uint32_t lingering_max;
static apr_uint32_t lingering;

/* Whether a connection's next check may wait now; takes a place among
 * the waiting threads when it may. */
static int may_wait(void)
{
    int state;

    if (ap_mpm_query(AP_MPMQ_MPM_STATE, &state) == APR_SUCCESS
        && state == AP_MPMQ_STOPPING)
        return 0;
    if (apr_atomic_inc32(&lingering) >= lingering_max) {
        apr_atomic_dec32(&lingering);
        datos_metrics_linger(mod_datos_global.metrics, DATOS_LINGER_SKIPPED);
        return 0;
    }
    return 1;
}

/* Writes what the response still has buffered without blocking, as the
 * MPM does when the request is done (the last filter, core's, called with
 * no brigade); 1 when all of it went out. A client slow to take it is the
 * MPM's to wait for, without a worker. */
static int response_sent(conn_rec *c)
{
    ap_filter_t *last = c->output_filters;

    while (last->next)
        last = last->next;
    return last->frec->filter_func.out_func(last, NULL) == APR_SUCCESS
           && !c->aborted && !c->data_in_output_filters;
}

/* Polls for the next request for up to wait; returns the outcome. */
static datos_linger_t wait_for_request(conn_rec *c, apr_interval_time_t wait)
{
    apr_pollfd_t pfd;
    apr_int32_t n;
    apr_time_t deadline = apr_time_now() + wait;
    apr_status_t rv;

    memset(&pfd, 0, sizeof(pfd));
    pfd.reqevents = APR_POLLIN;
    pfd.desc_type = APR_POLL_SOCKET;
    pfd.desc.s = ap_get_conn_socket(c);
    pfd.p = c->pool;
    do {
        rv = apr_poll(&pfd, 1, &n, wait);
        wait = deadline - apr_time_now();
    } while (APR_STATUS_IS_EINTR(rv) && wait > 0);
    return rv == APR_SUCCESS && n > 0 ? DATOS_LINGER_REQUEST
                                      : DATOS_LINGER_IDLE;
}

static apr_status_t linger_in(ap_filter_t *f, apr_bucket_brigade *bb,
                              ap_input_mode_t mode, apr_read_type_e block,
                              apr_off_t readbytes)
{
    linger_ctx_t *ctx = f->ctx;
    apr_interval_time_t wait = ctx->armed;
    datos_linger_t outcome;
    apr_status_t rv;

    /* Only the first read after an answer may wait, and only when it is
     * httpd's check for a next request. */
    ctx->armed = 0;
    rv = ap_get_brigade(f->next, bb, mode, block, readbytes);
    if (wait <= 0 || mode != AP_MODE_SPECULATIVE || block != APR_NONBLOCK_READ
        || f->c->aborted || f->c->keepalive == AP_CONN_CLOSE
        || !(APR_STATUS_IS_EAGAIN(rv)
             || (rv == APR_SUCCESS && APR_BRIGADE_EMPTY(bb)))
        || !response_sent(f->c) || !may_wait())
        return rv;

    outcome = wait_for_request(f->c, wait);
    apr_atomic_dec32(&lingering);
    if (outcome == DATOS_LINGER_REQUEST) {
        apr_brigade_cleanup(bb);
        rv = ap_get_brigade(f->next, bb, mode, block, readbytes);
        if (APR_STATUS_IS_EAGAIN(rv))
            /* readable, but not a whole byte for httpd (a TLS record
             * cut short): the MPM polls for the rest */
            outcome = DATOS_LINGER_IDLE;
        else if (rv != APR_SUCCESS || APR_BRIGADE_EMPTY(bb))
            /* readable with nothing to read: the client closed */
            outcome = DATOS_LINGER_CLOSED;
    }
    datos_metrics_linger(mod_datos_global.metrics, outcome);
    return rv;
}

void mod_datos_linger_arm(request_rec *r, apr_interval_time_t wait)
{
    conn_rec *c = r->connection;
    linger_ctx_t *ctx;
    ap_filter_t *f;

    if (wait <= 0 || !mpm_is_async || c->master || !c->cs)
        return;
    for (f = c->input_filters; f; f = f->next) {
        if (f->frec == linger_filter) {
            ((linger_ctx_t *)f->ctx)->armed = wait;
            return;
        }
    }
    ctx = apr_pcalloc(c->pool, sizeof(*ctx));
    ctx->armed = wait;
    ap_add_input_filter_handle(linger_filter, ctx, NULL, c);
}

void mod_datos_linger_child_init(apr_pool_t *pchild)
{
    int threads = 0;

    (void)pchild;
    if (ap_mpm_query(AP_MPMQ_IS_ASYNC, &mpm_is_async) != APR_SUCCESS)
        mpm_is_async = 0;
    if (ap_mpm_query(AP_MPMQ_MAX_THREADS, &threads) != APR_SUCCESS)
        threads = 0;
    lingering_max = threads >= 2 ? (apr_uint32_t)threads / 2 : 1;
    lingering = 0;
}

void mod_datos_linger_register_hooks(apr_pool_t *p)
{
    (void)p;
    linger_filter = ap_register_input_filter(LINGER_FILTER, linger_in, NULL,
                                             AP_FTYPE_CONNECTION);
}
