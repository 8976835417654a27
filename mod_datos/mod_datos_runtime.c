/* mod_datos_runtime.c - one runtime per distinct configuration and one
 * store per cache entry, built once in post_config and attached in
 * child_init (as mod_md keeps one module-wide runtime), with the shared
 * tier, the secrets of its seals and the memory every process of the host
 * shares.
 *
 * Servers whose Datos* settings are the same (virtual hosts that set none
 * of them, typically) share one runtime: one load of the key, one token
 * cache, one BigQuery client. Runtimes whose settings shape the same
 * answer (the same table, limits, lookback, caps: the entry key) share
 * one store: one process copy, one cache entry, one state file, one
 * refresh mutex, so two virtual hosts never fetch the same answer twice
 * nor write one file under two mutexes. The store fetches with the client
 * of the first runtime that uses it.
 */
#include <errno.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "apr_strings.h"
#include "apr_hash.h"
#include "apr_shm.h"
#include "apr_file_io.h"

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "ap_mpm.h"
#include "ap_provider.h"
#include "mpm_common.h"
#include "unixd.h"
#include "util_mutex.h"

#include "datos_crypt.h"
#include "datos_http.h"
#include "datos_log.h"
#include "mod_datos_runtime.h"

APLOG_USE_MODULE(datos);

#define SHM_METRICS_KEY "mod_datos_metrics_shm"
#define SHMCB_MIN_SIZE  ((apr_size_t)8 * 1024 * 1024)
#define SHMCB_MAX_SIZE  ((apr_size_t)512 * 1024 * 1024)

mod_datos_global_t mod_datos_global;

/* The runtimes and stores of the running configuration, in the order
 * they were made; rebuilt by every post_config. */
static apr_array_header_t *runtimes, *stores;

const apr_array_header_t *mod_datos_runtimes(void)
{
    return runtimes;
}

const apr_array_header_t *mod_datos_stores(void)
{
    return stores;
}

static apr_status_t runtimes_reset(void *data)
{
    (void)data;
    runtimes = stores = NULL;
    memset(&mod_datos_global, 0, sizeof(mod_datos_global));
    return APR_SUCCESS;
}

int mod_datos_runtime_pre_config(apr_pool_t *pconf)
{
    apr_status_t rv;

    /* The DSO may stay loaded across restarts: nothing of the last
     * configuration survives into this one. */
    runtimes = stores = NULL;
    memset(&mod_datos_global, 0, sizeof(mod_datos_global));
    apr_pool_cleanup_register(pconf, NULL, runtimes_reset,
                              apr_pool_cleanup_null);
    if ((rv = ap_mutex_register(pconf, MOD_DATOS_REFRESH_MUTEX, NULL,
                                APR_LOCK_DEFAULT, 0))
            != APR_SUCCESS
        || (rv = ap_mutex_register(pconf, MOD_DATOS_CACHE_MUTEX, NULL,
                                   APR_LOCK_DEFAULT, 0))
               != APR_SUCCESS) {
        ap_log_perror(
            APLOG_MARK, APLOG_CRIT, rv, pconf,
            DATOS_LOGNO(0010) "cannot register the mod_datos mutex types");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    return OK;
}

/* The cache entry's name, the same on every host of a fleet configured
 * alike: what decides the answer's bytes, hashed. */
static const char *entry_key(apr_pool_t *p, const mod_datos_conf_t *conf)
{
    char hex[65];
    const char *what = apr_psprintf(
        p, "%s|%s|%s|%s|%d|%d|%d|%" APR_INT64_T_FMT "|%" APR_INT64_T_FMT,
        conf->bigquery_url, conf->project ? conf->project : "",
        conf->table_name, conf->location ? conf->location : "",
        conf->limit_default, conf->limit_max, conf->lookback_days,
        conf->max_bytes_billed, conf->max_payload);

    datos_sha256_hex(what, strlen(what), hex);
    hex[32] = '\0';
    return apr_pstrcat(p, "datos:v1:", hex, NULL);
}

/* DatosStateDir, made as root and handed to the children's user, and its
 * secret, made or read as root: the file is root's alone (mode 0600), so
 * the children, which may write the directory, can remove or replace it
 * but never read it nor make one this accepts. A directory that cannot be
 * had is logged and done without: the module still works, it only loses
 * its answers at a restart. Directories already prepared in this pass are
 * in done (path -> secret). */
static datos_secret_t *state_dir(apr_pool_t *pconf, apr_pool_t *ptemp,
                                 server_rec *s, const char *dir,
                                 apr_hash_t *done)
{
    datos_secret_t *secret = apr_hash_get(done, dir, APR_HASH_KEY_STRING);
    const char *replaced = NULL, *key;
    datos_err_t err;
    apr_status_t rv;

    if (secret)
        return secret;
    rv = apr_dir_make_recursive(dir, APR_FPROT_OS_DEFAULT, pconf);
    if (rv != APR_SUCCESS && !APR_STATUS_IS_EEXIST(rv)) {
        ap_log_error(
            APLOG_MARK, APLOG_WARNING, rv, s,
            DATOS_LOGNO(
                0011) "DatosStateDir %s cannot be created; answers will not "
                      "survive a restart (DatosStateDir none silences this)",
            dir);
        return NULL;
    }
    if (geteuid() == 0 && ap_unixd_config.user_id != 0
        && chown(dir, ap_unixd_config.user_id, ap_unixd_config.group_id) != 0) {
        ap_log_error(
            APLOG_MARK, APLOG_WARNING, errno, s,
            DATOS_LOGNO(
                0012) "DatosStateDir %s cannot be given to user %s; answers "
                      "will not survive a restart",
            dir, ap_unixd_config.user_name);
        return NULL;
    }
    key = apr_pstrcat(ptemp, dir, "/" MOD_DATOS_STATE_SECRET, NULL);
    datos_err_clear(&err);
    if (datos_secret_keep(pconf, key, &secret, &replaced, &err)
        != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                     DATOS_LOGNO(0020) "DatosStateDir: %s; answers will not "
                                       "survive a restart",
                     err.message);
        return NULL;
    }
    if (replaced)
        ap_log_error(
            APLOG_MARK, APLOG_WARNING, 0, s,
            DATOS_LOGNO(
                0021) "DatosStateDir: %s was not a secret this server made "
                      "(%s): a new one replaces it, and answers kept before "
                      "are not trusted",
            key, replaced);
    apr_hash_set(done, apr_pstrdup(pconf, dir), APR_HASH_KEY_STRING, secret);
    return secret;
}

static void answer_options(mod_datos_rt_t *rt, const mod_datos_conf_t *conf)
{
    datos_answer_opts_t *o = &rt->answer_opts;

    memset(o, 0, sizeof(*o));
    o->max_rows = conf->limit_max;
    o->gzip_limits[o->gzip_count++] = conf->limit_default;
    if (conf->limit_max != conf->limit_default)
        o->gzip_limits[o->gzip_count++] = conf->limit_max;
}

static mod_datos_rt_t *runtime_make(apr_pool_t *pconf, server_rec *s,
                                    mod_datos_conf_t *conf, const char *id)
{
    mod_datos_rt_t *rt = apr_pcalloc(pconf, sizeof(*rt));
    datos_bq_conf_t bqc;
    datos_err_t err;
    apr_status_t rv;
    int insecure = conf->allow_insecure || conf->url_from_emulator_env;

    rt->index = runtimes->nelts;
    rt->id = apr_pstrdup(pconf, id);
    rt->conf = conf;
    rt->s = s;

    /* The key is read here, while the process is still root, so it may be
     * readable by root only. */
    datos_err_clear(&err);
    rv = datos_creds_load(
        pconf, conf->credentials, datos_scopes_bigquery_pubsub,
        insecure ? DATOS_CREDS_ALLOW_INSECURE : 0, &rt->creds, &err);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s,
                     DATOS_LOGNO(0007) "DatosCredentials: %s", err.message);
        return NULL;
    }

    memset(&bqc, 0, sizeof(bqc));
    bqc.base_url = conf->bigquery_url;
    bqc.project = conf->project ? conf->project : conf->table.project;
    bqc.table = conf->table;
    bqc.location = conf->location;
    bqc.lookback_days = conf->lookback_days;
    bqc.max_bytes_billed = conf->max_bytes_billed;
    bqc.max_payload = (apr_size_t)conf->max_payload;
    bqc.max_rows = conf->limit_max;
    bqc.timeout = conf->timeout;
    bqc.creds = rt->creds;
    mod_datos_conf_http_opts(conf, conf->url_from_emulator_env, &bqc.http);
    datos_err_clear(&err);
    rv = datos_bq_create(pconf, &bqc, &rt->bq, &err);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s,
                     DATOS_LOGNO(0003) "BigQuery client for %s: %s",
                     conf->table_name, err.message);
        return NULL;
    }

    answer_options(rt, conf);
    rt->cache_control =
        conf->fresh_for > 0
            ? apr_psprintf(pconf,
                           "public, max-age=%" APR_TIME_T_FMT
                           ", stale-while-revalidate=%" APR_TIME_T_FMT
                           ", stale-if-error=%" APR_TIME_T_FMT,
                           apr_time_sec(conf->fresh_for),
                           apr_time_sec(conf->stale_while_revalidate),
                           apr_time_sec(conf->stale_if_error))
            : "no-cache";
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                 DATOS_LOGNO(0004) "serving %s from %s with %s (%s)",
                 conf->table_name, conf->bigquery_url,
                 datos_creds_describe(rt->creds),
                 conf->fresh_for > 0
                     ? apr_psprintf(pconf, "fresh for %" APR_TIME_T_FMT " ms",
                                    apr_time_as_msec(conf->fresh_for))
                     : "uncached: one query per request");
    return rt;
}

/* The store of the entry key of a cached runtime: found, or made. */
static mod_datos_store_t *store_for(apr_pool_t *pconf, apr_pool_t *ptemp,
                                    mod_datos_rt_t *rt, apr_hash_t *by_key,
                                    apr_hash_t *dirs)
{
    const mod_datos_conf_t *conf = rt->conf;
    const char *key = entry_key(pconf, conf);
    mod_datos_store_t *st = apr_hash_get(by_key, key, APR_HASH_KEY_STRING);

    if (st)
        return st;
    st = apr_pcalloc(pconf, sizeof(*st));
    st->index = stores->nelts;
    st->key = key;
    st->lease_key = apr_pstrcat(pconf, key, ":refreshing", NULL);
    st->rt = rt;
    st->answer_opts = rt->answer_opts;
    st->envelope_max =
        datos_answer_envelope_max((apr_size_t)conf->max_payload,
                                  conf->limit_max, st->answer_opts.gzip_count);
    st->l2_seal.key = key;
    st->state_seal.key = key;
    if (conf->state_dir && *conf->state_dir) {
        datos_secret_t *secret =
            state_dir(pconf, ptemp, rt->s, conf->state_dir, dirs);
        if (secret) {
            st->state_seal.secret = secret;
            /* "datos:v1:<hex>" -> "<hex>.answer" */
            st->state_file = apr_pstrcat(pconf, conf->state_dir, "/", key + 9,
                                         ".answer", NULL);
        }
    }
    apr_hash_set(by_key, key, APR_HASH_KEY_STRING, st);
    APR_ARRAY_PUSH(stores, mod_datos_store_t *) = st;
    return st;
}

/* The shared tier's secret: DatosCacheSecretFile's for a fleet (read here,
 * as root), else one made for this configuration. */
static int l2_secret(apr_pool_t *pconf, server_rec *s)
{
    mod_datos_global_t *g = &mod_datos_global;
    const char *file = mod_datos_cache_conf.secret_file;
    datos_err_t err;
    apr_status_t rv;
    int i;

    datos_err_clear(&err);
    if (g->fleet)
        rv = datos_secret_read(pconf, file, &g->l2_secret, &err);
    else
        rv = datos_secret_generate(pconf, &g->l2_secret, &err);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s,
                     DATOS_LOGNO(0019) "DatosCacheSecretFile: %s", err.message);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    for (i = 0; i < stores->nelts; i++)
        APR_ARRAY_IDX(stores, i, mod_datos_store_t *)->l2_seal.secret =
            g->l2_secret;
    return OK;
}

/* One block of anonymous shared memory, made before the fork. The
 * metrics' block is kept for the life of the parent, so counters and the
 * last success survive a graceful restart (the reload logrotate does every
 * day); the runtimes' host state is made anew with each configuration. */
static void *shared_block(apr_pool_t *pool, server_rec *s, const char *what,
                          apr_size_t size, int keep, int *created)
{
    apr_shm_t *shm = NULL;
    apr_status_t rv;
    void *base;

    *created = 0;
    if (keep) {
        void *data = NULL;
        apr_pool_userdata_get(&data, SHM_METRICS_KEY, s->process->pool);
        if (data && apr_shm_size_get(data) >= size)
            return apr_shm_baseaddr_get(data);
        pool = s->process->pool;
    }
    rv = apr_shm_create(&shm, size, NULL, pool);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s,
                     DATOS_LOGNO(0013) "cannot create %" APR_SIZE_T_FMT
                                       " bytes of shared "
                                       "memory for %s",
                     size, what);
        return NULL;
    }
    base = apr_shm_baseaddr_get(shm);
    memset(base, 0, size);
    *created = 1;
    if (keep)
        apr_pool_userdata_set(shm, SHM_METRICS_KEY, apr_pool_cleanup_null,
                              s->process->pool);
    return base;
}

/* MaxRequestWorkers and the threads of a process, as the MPM reports. */
static void mpm_workers(int *threads, int *workers)
{
    int t = 0, d = 0;

    if (ap_mpm_query(AP_MPMQ_MAX_THREADS, &t) != APR_SUCCESS || t < 1)
        t = 1;
    if (ap_mpm_query(AP_MPMQ_MAX_DAEMONS, &d) != APR_SUCCESS || d < 1)
        d = 1;
    *threads = t;
    *workers = t * d;
}

static apr_status_t socache_destroy(void *data)
{
    server_rec *s = data;

    if (mod_datos_global.cache && mod_datos_global.provider)
        mod_datos_global.provider->destroy(mod_datos_global.cache, s);
    mod_datos_global.cache = NULL;
    return APR_SUCCESS;
}

/* The shared tier: DatosCache, else shmcb sized to hold every runtime's
 * largest entry a few times over in one subcache. */
static int socache_setup(apr_pool_t *pconf, apr_pool_t *ptemp, server_rec *s)
{
    mod_datos_global_t *g = &mod_datos_global;
    const mod_datos_cache_conf_t *cc = &mod_datos_cache_conf;
    struct ap_socache_hints hints;
    apr_size_t largest = 0, total = 0, size;
    const char *errmsg, *args;
    apr_status_t rv;
    int i;

    g->provider = cc->provider;
    g->provider_name = cc->provider_name;
    if (cc->spec && !cc->provider)
        return OK; /* DatosCache none */
    for (i = 0; i < stores->nelts; i++) {
        mod_datos_store_t *st = APR_ARRAY_IDX(stores, i, mod_datos_store_t *);
        total += st->envelope_max;
        if (st->envelope_max > largest)
            largest = st->envelope_max;
    }
    if (!largest)
        return OK; /* nothing is cached */
    args = cc->provider_args;
    if (!g->provider) {
        g->provider = ap_lookup_provider(AP_SOCACHE_PROVIDER_GROUP, "shmcb",
                                         AP_SOCACHE_PROVIDER_VERSION);
        if (!g->provider) {
            ap_log_error(
                APLOG_MARK, APLOG_EMERG, 0, s,
                DATOS_LOGNO(
                    0014) "DatosCache: the default shared tier is shmcb, and "
                          "mod_socache_shmcb is not loaded: add LoadModule "
                          "socache_shmcb_module modules/mod_socache_shmcb.so "
                          "(a2enmod socache_shmcb), or set DatosCache none");
            return HTTP_INTERNAL_SERVER_ERROR;
        }
        g->provider_name = "shmcb";
    }
    if (!strcasecmp(g->provider_name, "shmcb")
        && (!args || !strchr(args, '('))) {
        /* shmcb wants room for five objects of the size hinted in a
         * subcache; its own default (512000 bytes) holds no answer. */
        size = total * 8;
        size = size < SHMCB_MIN_SIZE   ? SHMCB_MIN_SIZE
               : size > SHMCB_MAX_SIZE ? SHMCB_MAX_SIZE
                                       : size;
        args = apr_psprintf(
            ptemp, "%s(%" APR_SIZE_T_FMT ")",
            args && *args ? args
                          : ap_runtime_dir_relative(ptemp, "mod_datos_cache"),
            size);
    }
    g->fleet = !strcasecmp(g->provider_name, "memcache")
               || !strcasecmp(g->provider_name, "redis");
    errmsg = g->provider->create(&g->cache, args, ptemp, pconf);
    if (errmsg) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s,
                     DATOS_LOGNO(0015) "DatosCache %s: %s", g->provider_name,
                     errmsg);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    /* One subcache large enough for the largest entry: shmcb refuses an
     * object larger than a subcache, and spreads keys over subcaches by
     * their first byte, which every "datos:" key shares anyway. */
    memset(&hints, 0, sizeof(hints));
    hints.avg_id_len = 48;
    hints.avg_obj_size =
        (unsigned int)(largest > 0x7fffffff ? 0x7fffffff : largest);
    hints.expiry_interval = apr_time_from_sec(30);
    rv = g->provider->init(g->cache, "mod-datos", &hints, s, pconf);
    if (rv != APR_SUCCESS) {
        ap_log_error(
            APLOG_MARK, APLOG_EMERG, rv, s,
            DATOS_LOGNO(0016) "DatosCache %s: the provider failed to start",
            g->provider_name);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    apr_pool_cleanup_register(pconf, s, socache_destroy, apr_pool_cleanup_null);
    if (g->provider->flags & AP_SOCACHE_FLAG_NOTMPSAFE) {
        rv = ap_global_mutex_create(&g->cache_mutex, NULL,
                                    MOD_DATOS_CACHE_MUTEX, NULL, s, pconf, 0);
        if (rv != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s,
                         DATOS_LOGNO(0017) "cannot create the %s mutex",
                         MOD_DATOS_CACHE_MUTEX);
            return HTTP_INTERNAL_SERVER_ERROR;
        }
    }
    return OK;
}

int mod_datos_runtime_post_config(apr_pool_t *pconf, apr_pool_t *ptemp,
                                  server_rec *s)
{
    apr_hash_t *registry = apr_hash_make(ptemp);
    apr_hash_t *by_key = apr_hash_make(ptemp);
    apr_hash_t *dirs = apr_hash_make(ptemp);
    mod_datos_global_t *g = &mod_datos_global;
    mod_datos_host_t *hosts = NULL;
    server_rec *vs;
    int i, threads, workers, status, created;
    apr_status_t rv;
    void *mem;

    runtimes = apr_array_make(pconf, 2, sizeof(mod_datos_rt_t *));
    stores = apr_array_make(pconf, 2, sizeof(mod_datos_store_t *));
    for (vs = s; vs; vs = vs->next) {
        mod_datos_conf_t *conf = mod_datos_conf(vs);
        const char *id = mod_datos_conf_id(ptemp, conf);
        mod_datos_rt_t *rt = apr_hash_get(registry, id, APR_HASH_KEY_STRING);

        if (!rt) {
            rt = runtime_make(pconf, vs, conf, id);
            if (!rt)
                return HTTP_INTERNAL_SERVER_ERROR;
            if (conf->fresh_for > 0)
                rt->store = store_for(pconf, ptemp, rt, by_key, dirs);
            APR_ARRAY_PUSH(runtimes, mod_datos_rt_t *) = rt;
            apr_hash_set(registry, rt->id, APR_HASH_KEY_STRING, rt);
        }
        conf->rt = rt;
    }

    mem = shared_block(pconf, s, "metrics", datos_metrics_size(), 1, &created);
    if (!mem)
        return HTTP_INTERNAL_SERVER_ERROR;
    /* A block kept from an older module's layout starts over. */
    g->metrics =
        created || !datos_metrics_current(mem) ? datos_metrics_init(mem) : mem;
    if (stores->nelts) {
        hosts = shared_block(
            pconf, s, "the cache's host state",
            sizeof(mod_datos_host_t) * (apr_size_t)stores->nelts, 0, &created);
        if (!hosts)
            return HTTP_INTERNAL_SERVER_ERROR;
    }

    status = socache_setup(pconf, ptemp, s);
    if (status == OK && g->cache)
        status = l2_secret(pconf, s);
    if (status != OK)
        return status;

    mpm_workers(&threads, &workers);
    g->threads = threads;
    g->max_waiting = 0;
    for (i = 0; i < runtimes->nelts; i++) {
        mod_datos_rt_t *rt = APR_ARRAY_IDX(runtimes, i, mod_datos_rt_t *);

        rt->metrics_table =
            datos_metrics_table(g->metrics, rt->conf->table_name);
        if (rt->conf->max_waiting > g->max_waiting)
            g->max_waiting = rt->conf->max_waiting;
    }
    for (i = 0; i < stores->nelts; i++) {
        mod_datos_store_t *st = APR_ARRAY_IDX(stores, i, mod_datos_store_t *);

        st->host = &hosts[i];
        st->metrics_table = st->rt->metrics_table;
        rv = ap_global_mutex_create(
            &st->refresh_mutex, NULL, MOD_DATOS_REFRESH_MUTEX,
            apr_psprintf(pconf, "%d", st->index), s, pconf, 0);
        if (rv != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s,
                         DATOS_LOGNO(0018) "cannot create the %s mutex for %s",
                         MOD_DATOS_REFRESH_MUTEX, st->rt->conf->table_name);
            return HTTP_INTERNAL_SERVER_ERROR;
        }
    }
    /* Workers that wait on BigQuery are bounded, so /health and cache hits
     * always find one: a quarter of MaxRequestWorkers on the host, half of
     * a process's threads in any one process. */
    if (!g->max_waiting)
        g->max_waiting = workers / 4 > 1 ? workers / 4 : 1;
    g->max_waiting_process = threads / 2 > 1 ? threads / 2 : 1;
    g->idle_reserve = workers / 16 > 1 ? workers / 16 : 1;
    if (ap_mpm_query(AP_MPMQ_HARD_LIMIT_DAEMONS, &g->server_limit)
        != APR_SUCCESS)
        g->server_limit = 0;
    if (ap_mpm_query(AP_MPMQ_HARD_LIMIT_THREADS, &g->thread_limit)
        != APR_SUCCESS)
        g->thread_limit = 0;
    if (g->max_waiting_process > g->max_waiting)
        g->max_waiting_process = g->max_waiting;
    return OK;
}

static void child_fail(server_rec *s, apr_status_t rv, const char *what)
{
    /* A lock that cannot be had would turn single-flight into a
     * stampede, or a cache into a data race: no child runs without it. */
    ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                 DATOS_LOGNO(0005) "child cannot start: %s", what);
    exit(APEXIT_CHILDSICK);
}

static void release_answer(void *obj)
{
    datos_answer_free(obj);
}

void mod_datos_runtime_child_init(apr_pool_t *pchild, server_rec *s)
{
    mod_datos_global_t *g = &mod_datos_global;
    apr_status_t rv;
    int i;

    if (!runtimes)
        return;
    if (g->cache_mutex) {
        rv = apr_global_mutex_child_init(
            &g->cache_mutex, apr_global_mutex_lockfile(g->cache_mutex), pchild);
        if (rv != APR_SUCCESS)
            child_fail(s, rv, "the " MOD_DATOS_CACHE_MUTEX " mutex");
    }
    for (i = 0; i < runtimes->nelts; i++) {
        mod_datos_rt_t *rt = APR_ARRAY_IDX(runtimes, i, mod_datos_rt_t *);

        if ((rv = datos_creds_child_init(rt->creds, pchild)) != APR_SUCCESS)
            child_fail(s, rv, "the credentials' mutex");
        if ((rv = datos_bq_child_init(rt->bq, pchild)) != APR_SUCCESS)
            child_fail(s, rv, "the BigQuery client's mutex");
        if ((rv = apr_thread_mutex_create(&rt->proc_mutex,
                                          APR_THREAD_MUTEX_DEFAULT, pchild))
            != APR_SUCCESS)
            child_fail(s, rv, "a process mutex");
    }
    for (i = 0; i < stores->nelts; i++) {
        mod_datos_store_t *st = APR_ARRAY_IDX(stores, i, mod_datos_store_t *);

        rv = apr_global_mutex_child_init(
            &st->refresh_mutex, apr_global_mutex_lockfile(st->refresh_mutex),
            pchild);
        if (rv != APR_SUCCESS)
            child_fail(s, rv, "the " MOD_DATOS_REFRESH_MUTEX " mutex");
        if ((rv = datos_process_cache_create(pchild, release_answer, &st->l1))
            != APR_SUCCESS)
            child_fail(s, rv, "the process copy of the answer");
        if ((rv = apr_thread_mutex_create(&st->proc_mutex,
                                          APR_THREAD_MUTEX_DEFAULT, pchild))
            != APR_SUCCESS)
            child_fail(s, rv, "a process mutex");
    }
}
