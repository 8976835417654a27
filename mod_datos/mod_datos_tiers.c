/* mod_datos_tiers.c - where an answer is kept, below BigQuery.
 *
 * Tiers, nearest first:
 *   L1  the process copy, an immutable answer in a lock-free slot; it
 *       only moves forward (an older answer never replaces a newer one);
 *   L2  the socache provider (shmcb for a host, memcache/redis for a
 *       fleet), read only when L1 is stale or cold and something newer
 *       may be there, written by whoever fetched;
 *   the state file (DatosStateDir), the last good answer on disk, which
 *       seeds every child at start and at a graceful restart, and carries
 *       answers too big for L2 between the host's processes.
 *
 * Trust: whoever can write to memcached or redis, or to the state
 * directory, must not choose what the hosts serve. Every entry is sealed
 * (datos_trust.h) with the tier's secret over its cache key and its
 * bytes, and its fetch time may not lie in the future
 * (datos_policy_fetched_ok). An entry that fails either is refused: never
 * served, counted (datos_cache_entries_refused_total) and logged once per
 * window per process. The next fetch overwrites it.
 */
#include <string.h>

#include "apr_atomic.h"
#include "apr_strings.h"
#include "apr_file_io.h"

#include "httpd.h"
#include "http_log.h"

#include "datos_file.h"
#include "datos_log.h"
#include "datos_policy.h"
#include "mod_datos_tiers.h"

APLOG_USE_MODULE(datos);

/* A shared tier that failed is left alone this long. */
#define L2_BACKOFF apr_time_from_sec(30)
/* A fleet tier is looked at no more than this often while stale, since
 * another host's refresh leaves no trace on this one. */
#define FLEET_LOOK_EVERY apr_time_from_sec(1)
/* Lines about a run of events: one per window per process, at least this
 * long. */
#define LOG_WINDOW_MIN apr_time_from_sec(10)

/* ------------------------------------------------------------- helpers */

static apr_interval_time_t fresh_for(const mod_datos_store_t *st)
{
    return st->rt->conf->fresh_for;
}

static apr_interval_time_t log_window(const mod_datos_store_t *st)
{
    return fresh_for(st) > LOG_WINDOW_MIN ? fresh_for(st) : LOG_WINDOW_MIN;
}

/* Whether this event gets its line; in the parent (no process mutex yet)
 * every one does. */
static int log_take(mod_datos_store_t *st, mod_datos_log_window_t *w,
                    apr_time_t now, int *more)
{
    *more = 0;
    if (!st->proc_mutex)
        return 1;
    return mod_datos_log_window_take(w, st->proc_mutex, now, log_window(st),
                                     more);
}

static const char *more_text(apr_pool_t *p, int more)
{
    return more ? apr_psprintf(p,
                               " (%d more in this process since the last "
                               "report)",
                               more)
                : "";
}

void mod_datos_tiers_host_fetched(mod_datos_store_t *st, apr_time_t fetched)
{
    apr_uint64_t cur = apr_atomic_read64(&st->host->fetched);

    while (cur < (apr_uint64_t)fetched) {
        apr_uint64_t seen =
            apr_atomic_cas64(&st->host->fetched, (apr_uint64_t)fetched, cur);
        if (seen == cur)
            break;
        cur = seen;
    }
}

static void lock_proc(mod_datos_store_t *st)
{
    if (st->proc_mutex)
        apr_thread_mutex_lock(st->proc_mutex);
}

static void unlock_proc(mod_datos_store_t *st)
{
    if (st->proc_mutex)
        apr_thread_mutex_unlock(st->proc_mutex);
}

/* ------------------------------------------------------------------ L1 */

datos_answer_t *mod_datos_tiers_current(mod_datos_store_t *st)
{
    return st->l1 ? datos_process_cache_acquire(st->l1) : NULL;
}

void mod_datos_tiers_release(mod_datos_store_t *st, datos_answer_t *a)
{
    if (a)
        datos_process_cache_release(st->l1, a);
}

static int answer_newer(const void *a, const void *b)
{
    apr_time_t fa = ((const datos_answer_t *)a)->fetched;
    apr_time_t fb = ((const datos_answer_t *)b)->fetched;

    return fa > fb ? 1 : fa < fb ? -1 : 0;
}

datos_answer_t *mod_datos_tiers_install(mod_datos_op_t *op, datos_answer_t *a)
{
    mod_datos_store_t *st = op->st;
    apr_status_t rv;

    rv = datos_process_cache_publish_newer(st->l1, a, answer_newer);
    if (rv != APR_SUCCESS) {
        /* APR_EEXIST: as new or newer is there already; else no memory. */
        if (rv != APR_EEXIST)
            ap_log_error(APLOG_MARK, APLOG_ERR, rv, op->s,
                         DATOS_LOGNO(0307) "cannot keep an answer of %s in "
                                           "this process",
                         st->rt->conf->table_name);
        datos_answer_free(a);
    }
    return mod_datos_tiers_current(st);
}

/* ------------------------------------------------------ what is trusted */

/* An entry read from the shared tier or the state file: decoded when its
 * seal matches and its fetch time is not in the future, counted; NULL when
 * it is not usable (refused, logged once per window; or another format
 * version, or damage behind a good seal, logged). */
static datos_answer_t *decode(mod_datos_op_t *op, apr_pool_t *tmp,
                              datos_tier_t tier, const char *bytes,
                              apr_size_t len)
{
    mod_datos_store_t *st = op->st;
    const datos_seal_t *seal =
        tier == DATOS_TIER_L2 ? &st->l2_seal : &st->state_seal;
    const char *where =
        tier == DATOS_TIER_L2
            ? apr_psprintf(tmp, "DatosCache %s: the entry under %s",
                           mod_datos_global.provider_name, st->key)
            : apr_psprintf(tmp, "DatosStateDir: %s", st->state_file);
    datos_metrics_t *m = mod_datos_global.metrics;
    datos_answer_t *a = NULL;
    datos_refused_t why = DATOS_REFUSED_SEAL;
    const char *problem = NULL;
    datos_err_t err;
    apr_status_t rv;
    int more;

    datos_err_clear(&err);
    rv = datos_answer_decode(tmp, bytes, len, seal, &a, &err);
    if (rv == APR_SUCCESS && !datos_policy_fetched_ok(a->fetched, op->now)) {
        why = DATOS_REFUSED_FUTURE;
        problem = a->fetched <= 0
                      ? "its fetch time is not a time"
                      : apr_psprintf(tmp,
                                     "it says it was fetched %" APR_INT64_T_FMT
                                     " s from now, more than this host's clock "
                                     "allows",
                                     (a->fetched - op->now) / APR_USEC_PER_SEC);
        datos_answer_free(a);
        a = NULL;
    }
    else if (rv == DATOS_EAUTH) {
        problem = err.message;
    }
    else if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, op->s,
                     DATOS_LOGNO(0302) "%s is not usable (%s); ignored", where,
                     err.message);
        if (tier == DATOS_TIER_L2)
            datos_metrics_lookup(m, tier, DATOS_LOOKUP_MISS);
        return NULL;
    }
    if (problem) {
        datos_metrics_refused(m, tier, why);
        if (log_take(st, &st->refused, op->now, &more))
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, op->s,
                         DATOS_LOGNO(0308) "%s is refused: %s. It is not "
                                           "served, and the next fetch "
                                           "replaces it%s",
                         where, problem, more_text(tmp, more));
        return NULL;
    }
    datos_metrics_lookup(m, tier,
                         op->now < datos_time_add(a->fetched, fresh_for(st))
                             ? DATOS_LOOKUP_HIT
                             : DATOS_LOOKUP_STALE);
    return a;
}

/* ------------------------------------------------------------------ L2 */

static int l2_usable(mod_datos_op_t *op)
{
    apr_time_t until;

    if (!mod_datos_global.cache)
        return 0;
    lock_proc(op->st);
    until = op->st->l2_down_until;
    unlock_proc(op->st);
    return op->now >= until;
}

static void l2_failed(mod_datos_op_t *op, apr_status_t rv, const char *what)
{
    int log;

    lock_proc(op->st);
    log = op->now >= op->st->l2_down_until;
    op->st->l2_down_until = op->now + L2_BACKOFF;
    unlock_proc(op->st);
    datos_metrics_lookup(mod_datos_global.metrics, DATOS_TIER_L2,
                         DATOS_LOOKUP_ERROR);
    if (log)
        ap_log_error(
            APLOG_MARK, APLOG_WARNING, rv, op->s,
            DATOS_LOGNO(
                0301) "DatosCache %s: %s failed; the shared tier is skipped "
                      "for %d s (answers come from this process and "
                      "BigQuery)",
            mod_datos_global.provider_name, what,
            (int)apr_time_sec(L2_BACKOFF));
}

static void cache_lock(void)
{
    if (mod_datos_global.cache_mutex)
        apr_global_mutex_lock(mod_datos_global.cache_mutex);
}

static void cache_unlock(void)
{
    if (mod_datos_global.cache_mutex)
        apr_global_mutex_unlock(mod_datos_global.cache_mutex);
}

/* What the shared tier holds under key, in tmp: APR_SUCCESS, a NOTFOUND
 * status, or the provider's failure (not logged). */
static apr_status_t l2_retrieve(mod_datos_op_t *op, apr_pool_t *tmp,
                                const char *key, apr_size_t max,
                                unsigned char **buf, unsigned int *len)
{
    mod_datos_global_t *g = &mod_datos_global;
    apr_status_t rv;

    *len = (unsigned int)max;
    *buf = apr_palloc(tmp, max);
    cache_lock();
    rv = g->provider->retrieve(g->cache, op->s, (const unsigned char *)key,
                               (unsigned int)strlen(key), *buf, len, tmp);
    cache_unlock();
    return rv;
}

static datos_answer_t *l2_get(mod_datos_op_t *op)
{
    unsigned char *buf;
    unsigned int len;
    apr_status_t rv;
    datos_answer_t *a = NULL;
    apr_pool_t *tmp;

    if (!l2_usable(op))
        return NULL;
    apr_pool_create(&tmp, op->pool);
    rv = l2_retrieve(op, tmp, op->st->key, op->st->envelope_max, &buf, &len);
    if (APR_STATUS_IS_NOTFOUND(rv))
        datos_metrics_lookup(mod_datos_global.metrics, DATOS_TIER_L2,
                             DATOS_LOOKUP_MISS);
    else if (rv != APR_SUCCESS)
        l2_failed(op, rv, "a read");
    else
        a = decode(op, tmp, DATOS_TIER_L2, (const char *)buf, len);
    apr_pool_destroy(tmp);
    return a;
}

static apr_status_t l2_store(mod_datos_op_t *op, const char *key,
                             const void *data, apr_size_t len,
                             apr_time_t expiry)
{
    mod_datos_global_t *g = &mod_datos_global;
    apr_status_t rv;

    /* Providers take an absolute expiry, and memcache/redis need it at
     * least a second ahead. */
    if (expiry < op->now + apr_time_from_sec(2))
        expiry = op->now + apr_time_from_sec(2);
    cache_lock();
    rv = g->provider->store(g->cache, op->s, (const unsigned char *)key,
                            (unsigned int)strlen(key), expiry,
                            (unsigned char *)data, (unsigned int)len, op->pool);
    cache_unlock();
    return rv;
}

/* Once per window per process: an answer the shared tier cannot take
 * stays in this process (and the state file) for its window. */
static void oversized(mod_datos_op_t *op, apr_size_t len, apr_status_t rv)
{
    mod_datos_store_t *st = op->st;
    int log;

    lock_proc(st);
    log = op->now >= st->oversize_logged + fresh_for(st);
    if (log)
        st->oversize_logged = op->now;
    unlock_proc(st);
    datos_metrics_oversized(mod_datos_global.metrics);
    if (log)
        ap_log_error(
            APLOG_MARK, APLOG_INFO, rv, op->s,
            DATOS_LOGNO(
                0303) "DatosCache %s cannot hold the %" APR_SIZE_T_FMT
                      "-byte answer of %s; it is kept in each process (and "
                      "DatosStateDir) for its window",
            mod_datos_global.provider_name, len, st->rt->conf->table_name);
}

static void l2_put(mod_datos_op_t *op, const datos_answer_t *a,
                   const char *bytes, apr_size_t len)
{
    const mod_datos_conf_t *conf = op->st->rt->conf;
    datos_policy_windows_t w = {conf->fresh_for, conf->stale_while_revalidate,
                                conf->stale_if_error, conf->cold_wait};
    apr_status_t rv;

    if (!l2_usable(op))
        return;
    rv = l2_store(op, op->st->key, bytes, len,
                  datos_policy_keep_until(&w, a->fetched));
    if (rv == APR_SUCCESS)
        return;
    /* shmcb says ENOSPC for an object larger than a subcache; memcached
     * refuses items over its item size (1 MiB by default) with a plain
     * error. */
    if (APR_STATUS_IS_ENOSPC(rv)
        || (mod_datos_global.fleet && len >= 1024 * 1024 - 4096))
        oversized(op, len, rv);
    else {
        datos_metrics_store_failure(mod_datos_global.metrics, DATOS_TIER_L2);
        l2_failed(op, rv, "a write");
    }
}

/* ---------------------------------------------------------- state file */

static datos_answer_t *state_read(mod_datos_op_t *op)
{
    mod_datos_store_t *st = op->st;
    apr_pool_t *tmp;
    apr_file_t *f = NULL;
    apr_finfo_t fi;
    datos_answer_t *a = NULL;
    apr_status_t rv;
    char *buf;
    apr_size_t len;

    if (!st->state_file)
        return NULL;
    apr_pool_create(&tmp, op->pool);
    rv = apr_file_open(&f, st->state_file, APR_FOPEN_READ, 0, tmp);
    if (rv != APR_SUCCESS) {
        if (!APR_STATUS_IS_ENOENT(rv))
            datos_metrics_lookup(mod_datos_global.metrics, DATOS_TIER_STATE,
                                 DATOS_LOOKUP_ERROR);
        goto leave;
    }
    if (apr_file_info_get(&fi, APR_FINFO_SIZE, f) != APR_SUCCESS || fi.size <= 0
        || (apr_size_t)fi.size > st->envelope_max)
        goto leave;
    len = (apr_size_t)fi.size;
    buf = apr_palloc(tmp, len);
    if (apr_file_read_full(f, buf, len, &len) == APR_SUCCESS)
        a = decode(op, tmp, DATOS_TIER_STATE, buf, len);
leave:
    if (f)
        apr_file_close(f);
    apr_pool_destroy(tmp);
    return a;
}

/* Written next to the file and renamed over it, so a reader or a crash
 * never sees half an answer. */
static void state_write(mod_datos_op_t *op, const char *bytes, apr_size_t len)
{
    apr_status_t rv;

    rv = datos_file_replace(op->pool, op->st->state_file, bytes, len,
                            APR_FPROT_UREAD | APR_FPROT_UWRITE);
    if (rv != APR_SUCCESS) {
        datos_metrics_store_failure(mod_datos_global.metrics, DATOS_TIER_STATE);
        ap_log_error(
            APLOG_MARK, APLOG_WARNING, rv, op->s,
            DATOS_LOGNO(
                0305) "DatosStateDir: cannot write %s; the last good answer "
                      "will not survive a restart",
            op->st->state_file);
    }
}

/* --------------------------------------------------------- both of them */

void mod_datos_tiers_store(mod_datos_op_t *op, const datos_answer_t *a)
{
    mod_datos_store_t *st = op->st;
    int l2 = mod_datos_global.cache != NULL;
    const char *bytes;
    apr_size_t len;

    if (!l2 && !st->state_file)
        return;
    if (datos_answer_encode(op->pool, a, l2 ? &st->l2_seal : &st->state_seal,
                            &bytes, &len, NULL)
        != APR_SUCCESS)
        return;
    if (l2)
        l2_put(op, a, bytes, len);
    if (st->state_file
        && (!l2
            || datos_answer_reseal((char *)bytes, len, &st->state_seal)
                   == APR_SUCCESS))
        state_write(op, bytes, len);
}

datos_answer_t *mod_datos_tiers_newer(mod_datos_op_t *op, apr_time_t have,
                                      int force)
{
    mod_datos_store_t *st = op->st;
    apr_uint64_t host = apr_atomic_read64(&st->host->fetched);
    datos_answer_t *b = NULL;
    int cold = !have;
    int behind = cold || host > (apr_uint64_t)have;
    int look = force || behind;

    if (!look && mod_datos_global.fleet) {
        lock_proc(st);
        look = op->now >= st->l2_checked + FLEET_LOOK_EVERY;
        if (look)
            st->l2_checked = op->now;
        unlock_proc(st);
    }
    if (!look)
        return NULL;
    if (mod_datos_global.cache)
        b = l2_get(op);
    if (b && b->fetched <= have) {
        datos_answer_free(b);
        b = NULL;
    }
    if (!b && behind) {
        b = state_read(op);
        if (b && b->fetched <= have) {
            datos_answer_free(b);
            b = NULL;
        }
        if (b && cold && mod_datos_global.cache) {
            /* Seeded from disk: the shared tier gets it too, with its
             * original fetch time, so the other processes need not read
             * the file. */
            const char *bytes;
            apr_size_t len;
            if (datos_answer_encode(op->pool, b, &st->l2_seal, &bytes, &len,
                                    NULL)
                == APR_SUCCESS)
                l2_put(op, b, bytes, len);
        }
    }
    if (!b)
        return NULL;
    mod_datos_tiers_host_fetched(st, b->fetched);
    datos_metrics_fetched(mod_datos_global.metrics, st->metrics_table,
                          b->fetched);
    return mod_datos_tiers_install(op, b);
}

/* -------------------------------------------------------------- leases */

int mod_datos_tiers_lease_get(mod_datos_op_t *op, datos_lease_t *out)
{
    mod_datos_store_t *st = op->st;
    unsigned char *buf;
    unsigned int len;
    apr_status_t rv;
    apr_pool_t *tmp;
    int found = 0, more;

    if (!mod_datos_global.fleet || !l2_usable(op))
        return 0;
    apr_pool_create(&tmp, op->pool);
    rv = l2_retrieve(op, tmp, st->lease_key, 256, &buf, &len);
    if (rv == APR_SUCCESS) {
        rv = datos_lease_decode(&st->l2_seal, (const char *)buf, len, out);
        found = rv == APR_SUCCESS;
        if (rv == DATOS_EAUTH) {
            /* Someone without the secret tries to stop the refreshes. */
            datos_metrics_refused(mod_datos_global.metrics, DATOS_TIER_L2,
                                  DATOS_REFUSED_SEAL);
            if (log_take(st, &st->refused, op->now, &more))
                ap_log_error(
                    APLOG_MARK, APLOG_WARNING, 0, op->s,
                    DATOS_LOGNO(0309) "DatosCache %s: the refresh lease "
                                      "under %s is refused: its seal does "
                                      "not match; it is ignored%s",
                    mod_datos_global.provider_name, st->lease_key,
                    more_text(tmp, more));
        }
    }
    apr_pool_destroy(tmp);
    return found;
}

apr_status_t mod_datos_tiers_lease_put(mod_datos_op_t *op,
                                       const datos_lease_t *lease)
{
    mod_datos_store_t *st = op->st;
    const char *bytes;
    apr_size_t len;
    apr_status_t rv;

    if (!mod_datos_global.fleet || !l2_usable(op))
        return APR_EINVAL;
    rv = datos_lease_encode(op->pool, &st->l2_seal, lease, &bytes, &len);
    if (rv == APR_SUCCESS)
        rv = l2_store(op, st->lease_key, bytes, len,
                      datos_time_add(lease->taken, st->rt->conf->timeout));
    return rv;
}

void mod_datos_tiers_lease_drop(mod_datos_op_t *op)
{
    mod_datos_global_t *g = &mod_datos_global;
    mod_datos_store_t *st = op->st;

    if (!g->fleet || !l2_usable(op))
        return;
    g->provider->remove(g->cache, op->s, (const unsigned char *)st->lease_key,
                        (unsigned int)strlen(st->lease_key), op->pool);
}

/* --------------------------------------------------------------- seeds */

static apr_status_t seed_free(void *data)
{
    mod_datos_store_t *st = data;

    datos_answer_free(st->seed);
    st->seed = NULL;
    return APR_SUCCESS;
}

void mod_datos_tiers_seed(apr_pool_t *pconf, server_rec *s)
{
    const apr_array_header_t *stores = mod_datos_stores();
    int i;

    for (i = 0; stores && i < stores->nelts; i++) {
        mod_datos_store_t *st = APR_ARRAY_IDX(stores, i, mod_datos_store_t *);
        mod_datos_op_t op;
        apr_pool_t *tmp;

        if (!st->state_file)
            continue;
        apr_pool_create(&tmp, pconf);
        op.st = st;
        op.s = s;
        op.pool = tmp;
        op.now = apr_time_now();
        st->seed = state_read(&op);
        apr_pool_destroy(tmp);
        if (!st->seed)
            continue;
        st->seed_pool = pconf;
        apr_pool_cleanup_register(pconf, st, seed_free, apr_pool_cleanup_null);
        mod_datos_tiers_host_fetched(st, st->seed->fetched);
        datos_metrics_fetched(mod_datos_global.metrics, st->metrics_table,
                              st->seed->fetched);
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                     DATOS_LOGNO(0310) "DatosStateDir: %s starts from %s, "
                                       "fetched %" APR_INT64_T_FMT " s ago",
                     st->rt->conf->table_name, st->state_file,
                     datos_policy_age(st->seed->fetched, op.now));
    }
}

void mod_datos_tiers_child_init(apr_pool_t *pchild, server_rec *s)
{
    const apr_array_header_t *stores = mod_datos_stores();
    int i;

    (void)pchild;
    (void)s;
    for (i = 0; stores && i < stores->nelts; i++) {
        mod_datos_store_t *st = APR_ARRAY_IDX(stores, i, mod_datos_store_t *);
        datos_answer_t *seed = st->seed;

        if (!seed)
            continue;
        /* This process's copy of the parent's memory is its own now: the
         * process copy frees it, not pconf. */
        apr_pool_cleanup_kill(st->seed_pool, st, seed_free);
        st->seed = NULL;
        if ((apr_uint64_t)seed->fetched < apr_atomic_read64(&st->host->fetched)
            || datos_process_cache_publish_newer(st->l1, seed, answer_newer)
                   != APR_SUCCESS)
            datos_answer_free(seed);
    }
}
