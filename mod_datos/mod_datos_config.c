/* mod_datos_config.c - the Datos* directives, from one table of settings.
 *
 * Each row of mod_datos_cmds is a directive: its name, its help text, and
 * a setting_t saying what kind of value it takes, its limits, its default
 * and the fields it sets. One setter parses every directive by its row,
 * and the same rows initialise, merge and default a server's
 * configuration and name it for the runtime registry, so a directive
 * cannot be read and then forgotten on the way. Each value is parsed and
 * range-checked when the directive is read, so `apache2 -t` fails with a
 * message naming it; checks that need several directives, or the key
 * file, run in mod_datos_conf_finish (check_config).
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "apr_strings.h"
#include "apr_thread_proc.h"

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "ap_provider.h"
#include "unixd.h"

#include "datos_auth.h"
#include "datos_conf.h"
#include "datos_crypt.h"
#include "datos_endpoint.h"
#include "datos_ids.h"
#include "datos_ingest.h"
#include "datos_log.h"
#include "datos_pubsub.h"
#include "datos_trust.h"
#include "mod_datos_config.h"

APLOG_USE_MODULE(datos);

#define DEFAULT_TABLE     "latam_dataset.datos"
#define DEFAULT_LIMIT     "10"
#define DEFAULT_LIMIT_MAX 100
#define LIMIT_CEILING     10000
#define DEFAULT_STATE_DIR "/var/cache/apache2/mod_datos"
#define DEFAULT_TOPIC     "datos-topic"
#define MIB               ((apr_int64_t)1024 * 1024)
#define MSEC(n)           apr_time_from_msec(n)
#define SEC(n)            apr_time_from_sec(n)
#define WINDOW_MAX        SEC(7 * 86400)

mod_datos_cache_conf_t mod_datos_cache_conf;

/* ------------------------------------------------------- the table */

typedef enum {
    K_FLAG,     /* On | Off */
    K_NAME,     /* a name, judged by check() */
    K_URL,      /* an http:// or https:// API URL */
    K_PATH,     /* a path (relative to ServerRoot), or the word */
    K_DURATION, /* 250ms, 5s, 2m, 1h, 7d; a bare number counts unit */
    K_DAYS,     /* a duration of whole days, kept as the count of days */
    K_SIZE,     /* bytes, 512K, 1M, 10G, or the word */
    K_COUNT,    /* a whole number */
    K_CUSTOM    /* parse() */
} kind_t;

/* How the fields of a row are kept, which says when they are set. */
typedef enum {
    S_NONE, /* module-wide: no field in a server's configuration */
    S_PTR,  /* const char *, NULL until set */
    S_INT,  /* int, MOD_DATOS_UNSET until set */
    S_INT64 /* apr_int64_t / apr_interval_time_t, likewise */
} store_t;

/* Parses a directive's argument (and its second one, if it takes two)
 * into conf; returns NULL or what is wrong, without the directive's
 * name. */
typedef const char *parse_fn(apr_pool_t *p, mod_datos_conf_t *conf,
                             const char *a1, const char *a2);

typedef struct setting_t {
    kind_t kind;
    store_t store;
    apr_size_t offset; /* the field whose value says whether it was set */
    /* The fields the directive sets, which merge copies together. */
    apr_size_t first, span;
    apr_int64_t min, max;     /* K_DURATION (us), K_DAYS, K_SIZE, K_COUNT */
    apr_interval_time_t unit; /* K_DURATION: what a bare number counts */
    const char *word;         /* K_PATH ("none": kept as ""), K_SIZE ("off") */
    apr_int64_t word_value;   /* K_SIZE: what the word stands for */
    /* K_NAME, K_PATH: NULL, or what is wrong with the value. */
    const char *(*check)(apr_pool_t *p, const char *value);
    const char *example; /* K_URL: for the message about a wrong one */
    const char *hint;    /* K_SIZE: added to the message about a value */
    parse_fn *parse;     /* K_CUSTOM */
    apr_int64_t def;     /* the default of S_INT and S_INT64 fields */
    /* Else a default written as the directive would be, and parsed like
     * it; NULL: none. */
    const char *def_str;
} setting_t;

#define OFF(f) offsetof(mod_datos_conf_t, f)
#define END(f) (OFF(f) + sizeof(((mod_datos_conf_t *)0)->f))
#define FIELDS(pres, fst, lst) \
    .offset = OFF(pres), .first = OFF(fst), .span = END(lst) - OFF(fst)
#define FIELD(f) FIELDS(f, f, f)
#define ROW(...) ((void *)&(const setting_t){__VA_ARGS__})

static const char *set_flag(cmd_parms *cmd, void *dc, int flag);
static const char *set_take1(cmd_parms *cmd, void *dc, const char *a1);
static const char *set_take12(cmd_parms *cmd, void *dc, const char *a1,
                              const char *a2);

/* A directive of one argument, whose row says the rest. */
#define ONE_ARG(name, help, ...) \
    AP_INIT_TAKE1(name, set_take1, ROW(__VA_ARGS__), RSRC_CONF, help)

/* The rows, by kind. */
#define ONOFF(name, fld, dflt, help)                                    \
    AP_INIT_FLAG(                                                       \
        name, set_flag,                                                 \
        ROW(.kind = K_FLAG, .store = S_INT, FIELD(fld), .def = (dflt)), \
        RSRC_CONF, help)
#define NAME(name, fld, chk, dflt, help)                            \
    ONE_ARG(name, help, .kind = K_NAME, .store = S_PTR, FIELD(fld), \
            .check = (chk), .def_str = (dflt))
#define URL(name, fld, ex, help)                                   \
    ONE_ARG(name, help, .kind = K_URL, .store = S_PTR, FIELD(fld), \
            .example = (ex))
#define PATH(name, fld, wd, chk, dflt, help)                        \
    ONE_ARG(name, help, .kind = K_PATH, .store = S_PTR, FIELD(fld), \
            .word = (wd), .check = (chk), .def_str = (dflt))
#define DURATION(name, fld, u, lo, hi, dflt, help)                        \
    ONE_ARG(name, help, .kind = K_DURATION, .store = S_INT64, FIELD(fld), \
            .unit = (u), .min = (lo), .max = (hi), .def = (dflt))
#define DAYS(name, fld, lo, hi, dflt, help)                         \
    ONE_ARG(name, help, .kind = K_DAYS, .store = S_INT, FIELD(fld), \
            .min = (lo), .max = (hi), .def = (dflt))
#define SIZE(name, fld, lo, hi, wd, wv, hnt, dflt, help)                \
    ONE_ARG(name, help, .kind = K_SIZE, .store = S_INT64, FIELD(fld),   \
            .min = (lo), .max = (hi), .word = (wd), .word_value = (wv), \
            .hint = (hnt), .def = (dflt))
#define COUNT(name, fld, lo, hi, dflt, help)                         \
    ONE_ARG(name, help, .kind = K_COUNT, .store = S_INT, FIELD(fld), \
            .min = (lo), .max = (hi), .def = (dflt))
/* Custom parsing of 1 or 12 (one or two) arguments into the fields from
 * fst to lst, of which pres says whether the directive was given. */
#define CUSTOM(n, name, st, pres, fst, lst, fn, dflt, help)    \
    AP_INIT_TAKE##n(name, set_take##n,                         \
                    ROW(.kind = K_CUSTOM, .store = (st),       \
                        FIELDS(pres, fst, lst), .parse = (fn), \
                        .def_str = (dflt)),                    \
                    RSRC_CONF, help)
/* Module-wide: only outside <VirtualHost>, and no field. */
#define GLOBAL(name, fn, help) \
    ONE_ARG(name, help, .kind = K_CUSTOM, .store = S_NONE, .parse = (fn))

static parse_fn parse_table, parse_credentials, parse_limit, parse_cache,
    parse_cache_secret;
static const char *topic_check(apr_pool_t *p, const char *value);
static const char *ca_file_check(apr_pool_t *p, const char *path);

const command_rec mod_datos_cmds[] = {
    NAME("DatosProject", project, datos_project_id_check, NULL,
         "Google Cloud project that runs (and pays for) the queries; "
         "default: the credentials' project"),
    CUSTOM(1, "DatosTable", S_PTR, table_name, table_name, table, parse_table,
           DEFAULT_TABLE,
           "[project.]dataset.table to serve; default " DEFAULT_TABLE),
    NAME("DatosLocation", location, datos_location_check, NULL,
         "BigQuery location of the dataset; default: read once from the "
         "dataset"),
    CUSTOM(1, "DatosCredentials", S_PTR, credentials, credentials, credentials,
           parse_credentials, NULL,
           "service-account key file, 'metadata' or 'none'; default: "
           "Application Default Credentials"),
    URL("DatosBigQueryURL", bigquery_url, DATOS_BQ_URL_DEFAULT,
        "BigQuery API base URL; default " DATOS_BQ_URL_DEFAULT),
    ONOFF("DatosAllowInsecureHTTP", allow_insecure, 0,
          "allow plain http to non-loopback Google URLs; default Off"),
    PATH("DatosCACertificateFile", ca_file, NULL, ca_file_check, NULL,
         "PEM bundle of CAs trusted for Google's endpoints; default: the "
         "system bundle"),
    CUSTOM(12, "DatosLimit", S_INT, limit_max, limit_default, limit_max,
           parse_limit, DEFAULT_LIMIT,
           "default and maximum ?limit; default 10 100"),
    DURATION("DatosTimeout", timeout, SEC(1), MSEC(100), SEC(120), SEC(5),
             "time allowed for one BigQuery fetch; default 5s"),
    DAYS("DatosLookback", lookback_days, 1, 3650, 7,
         "days of partitions the first query scans; default 7d"),
    /* BigQuery bills at least 10 MiB per table, so a smaller cap would
     * refuse every query. */
    SIZE("DatosMaxBytesBilled", max_bytes_billed, DATOS_BQ_MIN_BILLED,
         APR_INT64_MAX, "off", 0,
         " (BigQuery bills at least 10 MiB per query; 'off' for no cap)", 0,
         "maximumBytesBilled of each query (>= 10M) or 'off'; default off"),
    SIZE("DatosMaxPayload", max_payload, 4096, 256 * MIB, NULL, 0, NULL, MIB,
         "bytes of rows an answer may hold; default 1M"),
    GLOBAL("DatosCache", parse_cache,
           "shared cache tier: socache provider[:args] (shmcb, "
           "memcache:host:port, redis:host:port) or 'none'; default shmcb"),
    /* The cache windows: 0 where it means "none". */
    GLOBAL("DatosCacheSecretFile", parse_cache_secret,
           "file of the secret (32 bytes or more, mode 0600) every host of a "
           "fleet seals the entries it shares with; required with memcache "
           "and redis"),
    DURATION("DatosFreshFor", fresh_for, SEC(1), 0, WINDOW_MAX, SEC(30),
             "how long an answer is served without asking BigQuery; 0: one "
             "query per request; default 30s"),
    DURATION("DatosStaleWhileRevalidate", stale_while_revalidate, SEC(1), 0,
             WINDOW_MAX, SEC(60),
             "how long past that a stale answer is served at once while one "
             "request refreshes it; default 60s"),
    DURATION("DatosStaleIfError", stale_if_error, SEC(1), 0, WINDOW_MAX,
             SEC(3600),
             "how long past its freshness the last good answer is served "
             "while BigQuery fails; default 3600s"),
    DURATION("DatosColdWait", cold_wait, SEC(1), MSEC(100), SEC(300), SEC(5),
             "how long a request waits for another's fetch when there is no "
             "answer yet; default 5s"),
    PATH("DatosStateDir", state_dir, "none", NULL, DEFAULT_STATE_DIR,
         "directory keeping the last good answer across restarts, or "
         "'none'; default " DEFAULT_STATE_DIR),
    COUNT("DatosMaxWaiting", max_waiting, 1, 100000, 0,
          "requests that may wait on BigQuery at once on this host; "
          "default: a quarter of MaxRequestWorkers"),
    ONOFF("DatosQuickHandler", quick_handler, 1,
          "serve cache hits before httpd's location and directory walks, "
          "where the configuration shows nothing that would answer "
          "differently; default On"),
    DURATION("DatosKeepAliveLinger", keepalive_linger, MSEC(1), 0, SEC(1),
             MSEC(2),
             "how long the worker that answered /datos waits for the "
             "kept-alive connection's next request before handing it back "
             "to the event MPM; 0: not at all; default 2ms"),
    ONOFF("DatosIngest", ingest, 0,
          "accept POST /datos and publish the records to Pub/Sub; who may "
          "post is decided by Require; default Off"),
    NAME("DatosTopic", topic, topic_check, DEFAULT_TOPIC,
         "Pub/Sub topic POST /datos publishes to: a short name in the "
         "project, or projects/P/topics/T; default " DEFAULT_TOPIC),
    URL("DatosPubSubURL", pubsub_url, DATOS_PUBSUB_URL_DEFAULT,
        "Pub/Sub API root URL; default " DATOS_PUBSUB_URL_DEFAULT),
    /* Up to what one publish request carries, base64 and all. */
    SIZE("DatosMaxBody", max_body, 1024, (apr_int64_t)DATOS_INGEST_MAX_BODY,
         NULL, 0, NULL, MIB,
         "largest POST /datos body; default 1M, at most 7M"),
    COUNT("DatosMaxBatch", max_batch, 1, DATOS_INGEST_MAX_BATCH, 100,
          "most records in one POST /datos array; default 100, at most 1000"),
    PATH("DatosLoaderMetricsFile", loader_metrics_file, "none", NULL, "none",
         "datos-loader's metrics textfile (its metrics_file), read by "
         "GET /datos-status, or 'none'; default none"),
    DURATION("DatosLoaderInterval", loader_interval, SEC(1), SEC(1), WINDOW_MAX,
             SEC(300),
             "how often datos-loader runs; /datos-status asks for attention "
             "after 3 intervals without a run; default 5m"),
    {NULL}};

/* The fields no directive sets: worked out after the merge. */
static const apr_size_t derived[] = {OFF(url_from_emulator_env),
                                     OFF(pubsub_url_from_emulator_env), OFF(rt),
                                     OFF(quick_paths)};

#define NROWS (sizeof(mod_datos_cmds) / sizeof(mod_datos_cmds[0]) - 1)

static const setting_t *row_at(apr_size_t i)
{
    return mod_datos_cmds[i].cmd_data;
}

/* ------------------------------------------------- the field values */

static void *at(mod_datos_conf_t *conf, apr_size_t offset)
{
    return (char *)conf + offset;
}

static int is_set(const mod_datos_conf_t *conf, const setting_t *row)
{
    const void *f = (const char *)conf + row->offset;

    switch (row->store) {
    case S_PTR: return *(const char *const *)f != NULL;
    case S_INT: return *(const int *)f != MOD_DATOS_UNSET;
    case S_INT64: return *(const apr_int64_t *)f != MOD_DATOS_UNSET;
    default: return 0;
    }
}

/* Every field of the row unset; NULL ones are already (pcalloc). */
static void unset(mod_datos_conf_t *conf, const setting_t *row)
{
    apr_size_t o, end = row->first + row->span;

    if (row->store == S_INT) {
        for (o = row->first; o < end; o += sizeof(int))
            *(int *)at(conf, o) = MOD_DATOS_UNSET;
    }
    else if (row->store == S_INT64) {
        for (o = row->first; o < end; o += sizeof(apr_int64_t))
            *(apr_int64_t *)at(conf, o) = MOD_DATOS_UNSET;
    }
}

static void store_num(mod_datos_conf_t *conf, const setting_t *row,
                      apr_int64_t v)
{
    if (row->store == S_INT)
        *(int *)at(conf, row->offset) = (int)v;
    else
        *(apr_int64_t *)at(conf, row->offset) = v;
}

static void store_str(mod_datos_conf_t *conf, const setting_t *row,
                      const char *v)
{
    *(const char **)at(conf, row->offset) = v;
}

/* ---------------------------------------------------------- parsing */

static const char *parse(apr_pool_t *p, const setting_t *row,
                         mod_datos_conf_t *conf, const char *a1, const char *a2)
{
    const char *err = NULL, *path;
    apr_int64_t v = 0;
    apr_size_t len;
    datos_err_t derr;

    switch (row->kind) {
    case K_CUSTOM: return row->parse(p, conf, a1, a2);
    case K_FLAG: store_num(conf, row, !strcasecmp(a1, "On")); return NULL;
    case K_NAME:
        if ((err = row->check(p, a1)))
            return err;
        store_str(conf, row, a1);
        return NULL;
    case K_URL:
        /* Its form now, so the error points at this line; whether plain
         * http is allowed depends on DatosAllowInsecureHTTP, known at the
         * end. */
        if (strncasecmp(a1, "https://", 8) && strncasecmp(a1, "http://", 7))
            return apr_pstrcat(p, "must be an http:// or https:// URL, e.g. ",
                               row->example, NULL);
        for (len = strlen(a1); len && a1[len - 1] == '/';)
            len--;
        path = apr_pstrmemdup(p, a1, len);
        datos_err_clear(&derr);
        if (datos_http_check_url(p, path, 1, 0, &derr) != APR_SUCCESS)
            return derr.message;
        store_str(conf, row, path);
        return NULL;
    case K_PATH:
        if (row->word && !strcasecmp(a1, row->word)) {
            store_str(conf, row, "");
            return NULL;
        }
        path = ap_server_root_relative(p, a1);
        if (!path || !*path)
            return apr_psprintf(p, "invalid path '%s'", a1);
        if (row->check && (err = row->check(p, path)))
            return err;
        store_str(conf, row, path);
        return NULL;
    case K_DURATION:
        if ((err =
                 datos_conf_duration(p, a1, row->unit, row->min, row->max, &v)))
            return err;
        break;
    case K_DAYS: {
        const apr_interval_time_t day = SEC(86400);

        if ((err = datos_conf_duration(p, a1, day, row->min * day,
                                       row->max * day, &v)))
            return err;
        if (v % day)
            return "must be a whole number of days (e.g. 7d)";
        v /= day;
        break;
    }
    case K_SIZE:
        if (row->word && !strcasecmp(a1, row->word)) {
            v = row->word_value;
            break;
        }
        if ((err = datos_conf_size(p, a1, row->min, row->max, &v)))
            return row->hint ? apr_pstrcat(p, err, row->hint, NULL) : err;
        break;
    case K_COUNT:
        if ((err = datos_conf_int(p, a1, row->min, row->max, &v)))
            return err;
        break;
    }
    store_num(conf, row, v);
    return NULL;
}

static const char *set(cmd_parms *cmd, const char *a1, const char *a2)
{
    const setting_t *row = cmd->info;
    const char *err;

    /* Every directive is server-wide or per virtual host, never per
     * directory; a module-wide one only outside <VirtualHost>. */
    err = ap_check_cmd_context(cmd, row->store == S_NONE ? GLOBAL_ONLY
                                                         : NOT_IN_DIR_CONTEXT);
    if (err)
        return err;
    err = parse(cmd->pool, row, mod_datos_conf(cmd->server), a1, a2);
    return err ? apr_pstrcat(cmd->pool, cmd->cmd->name, ": ", err, NULL) : NULL;
}

static const char *set_flag(cmd_parms *cmd, void *dc, int flag)
{
    (void)dc;
    return set(cmd, flag ? "On" : "Off", NULL);
}

static const char *set_take1(cmd_parms *cmd, void *dc, const char *a1)
{
    (void)dc;
    return set(cmd, a1, NULL);
}

static const char *set_take12(cmd_parms *cmd, void *dc, const char *a1,
                              const char *a2)
{
    (void)dc;
    return set(cmd, a1, a2);
}

/* -------------------------------------------------- special parsing */

static const char *topic_check(apr_pool_t *p, const char *value)
{
    const char *full;

    /* The name's form now; a short name gets its project at the end. */
    return datos_pubsub_resource_name(p, value, "topics", NULL, &full);
}

static const char *ca_file_check(apr_pool_t *p, const char *path)
{
    datos_err_t derr;

    datos_err_clear(&derr);
    return datos_ca_file_check(p, path, &derr) == APR_SUCCESS ? NULL
                                                              : derr.message;
}

static const char *parse_table(apr_pool_t *p, mod_datos_conf_t *conf,
                               const char *arg, const char *a2)
{
    const char *err;

    (void)a2;
    if ((err = datos_table_parse(p, arg, &conf->table)))
        return err;
    conf->table_name = arg;
    return NULL;
}

static const char *parse_credentials(apr_pool_t *p, mod_datos_conf_t *conf,
                                     const char *arg, const char *a2)
{
    const char *path;
    apr_finfo_t finfo;
    datos_err_t derr;

    (void)a2;
    if (!strcmp(arg, "metadata") || !strcmp(arg, "none")) {
        conf->credentials = arg;
        return NULL;
    }
    path = ap_server_root_relative(p, arg);
    if (!path)
        return apr_psprintf(p, "invalid path '%s'", arg);
    if (apr_stat(&finfo, path, APR_FINFO_TYPE, p) != APR_SUCCESS)
        return apr_psprintf(p,
                            "'%s' is not 'metadata', 'none' or an existing "
                            "service-account key file",
                            path);
    /* Type, owner and mode now, so the error points at this line; the
     * content is read by the trial load in check_config. */
    datos_err_clear(&derr);
    if (datos_creds_check_key_file(p, path, &derr) != APR_SUCCESS)
        return derr.message;
    conf->credentials = path;
    return NULL;
}

static const char *parse_limit(apr_pool_t *p, mod_datos_conf_t *conf,
                               const char *def, const char *max)
{
    const char *err;
    apr_int64_t d, m;

    if ((err = datos_conf_int(p, def, 1, LIMIT_CEILING, &d)))
        return apr_pstrcat(p, "default: ", err, NULL);
    m = d > DEFAULT_LIMIT_MAX ? d : DEFAULT_LIMIT_MAX;
    if (max && (err = datos_conf_int(p, max, 1, LIMIT_CEILING, &m)))
        return apr_pstrcat(p, "max: ", err, NULL);
    if (d > m)
        return apr_psprintf(p, "the default (%s) must not exceed the max (%s)",
                            def, max);
    conf->limit_default = (int)d;
    conf->limit_max = (int)m;
    return NULL;
}

/* One shared tier for the whole server, as mod_cache_socache has: the
 * provider must be loaded before this line (LoadModule socache_X_module). */
static const char *parse_cache(apr_pool_t *p, mod_datos_conf_t *conf,
                               const char *arg, const char *a2)
{
    mod_datos_cache_conf_t *cc = &mod_datos_cache_conf;
    const char *sep, *name;
    const ap_socache_provider_t *prov;

    (void)conf;
    (void)a2;
    if (!strcasecmp(arg, "none")) {
        cc->spec = "none";
        cc->provider = NULL;
        cc->provider_name = "none";
        return NULL;
    }
    sep = strchr(arg, ':');
    name = sep ? apr_pstrmemdup(p, arg, (apr_size_t)(sep - arg)) : arg;
    prov = ap_lookup_provider(AP_SOCACHE_PROVIDER_GROUP, name,
                              AP_SOCACHE_PROVIDER_VERSION);
    if (!prov) {
        apr_array_header_t *names = ap_list_provider_names(
            p, AP_SOCACHE_PROVIDER_GROUP, AP_SOCACHE_PROVIDER_VERSION);
        ap_list_provider_names_t *n = (ap_list_provider_names_t *)names->elts;
        const char *known = "";
        int i;

        for (i = 0; i < names->nelts; i++)
            known =
                apr_pstrcat(p, known, i ? ", " : "", n[i].provider_name, NULL);
        return apr_psprintf(p,
                            "unknown cache provider '%s' (loaded: %s; 'none' "
                            "for no shared tier). Load mod_socache_%s first, "
                            "e.g. LoadModule socache_%s_module "
                            "modules/mod_socache_%s.so",
                            name, *known ? known : "none", name, name, name);
    }
    cc->spec = arg;
    cc->provider = prov;
    cc->provider_name = name;
    cc->provider_args = sep ? sep + 1 : NULL;
    return NULL;
}

/* The key file rule of DatosCredentials; the content read once now (as
 * root), so a short secret fails apache2 -t. post_config reads it again. */
static const char *parse_cache_secret(apr_pool_t *p, mod_datos_conf_t *conf,
                                      const char *arg, const char *a2)
{
    const char *path = ap_server_root_relative(p, arg);
    datos_secret_t *secret;
    datos_err_t derr;

    (void)conf;
    (void)a2;
    if (!path)
        return apr_psprintf(p, "invalid path '%s'", arg);
    datos_err_clear(&derr);
    if (datos_secret_read(p, path, &secret, &derr) != APR_SUCCESS)
        return derr.message;
    mod_datos_cache_conf.secret_file = path;
    return NULL;
}

int mod_datos_cache_is_fleet(const char *provider_name)
{
    return provider_name
           && (!strcasecmp(provider_name, "memcache")
               || !strcasecmp(provider_name, "redis"));
}

const char *mod_datos_cache_conf_check(apr_pool_t *p)
{
    const mod_datos_cache_conf_t *cc = &mod_datos_cache_conf;

    if (cc->provider && mod_datos_cache_is_fleet(cc->provider_name)
        && !cc->secret_file)
        return apr_psprintf(
            p,
            "DatosCacheSecretFile: required with DatosCache %s: every host "
            "seals the entries the fleet shares with that secret, so nobody "
            "else who can write to %s can choose what the hosts serve (make "
            "one with openssl rand -base64 48 > "
            "/etc/apache2/datos-cache.secret; chmod 600, the same file on "
            "every host)",
            cc->spec, cc->provider_name);
    return NULL;
}

/* ---------------------------------------- create, merge, check */

/* Each field of the configuration is set by exactly one row, or derived:
 * a field added without a row would be neither initialised nor merged,
 * and a virtual host would lose its value without a word. */
const char *mod_datos_config_pre_config(apr_pool_t *pconf)
{
    static const struct {
        const char *name;
        apr_size_t offset, size;
    } fields[] = {
#define MOD_DATOS_CONF_FIELD(type, name) {#name, OFF(name), sizeof(type)},
        MOD_DATOS_CONF_FIELDS(MOD_DATOS_CONF_FIELD)
#undef MOD_DATOS_CONF_FIELD
    };
    apr_size_t f, i;

    memset(&mod_datos_cache_conf, 0, sizeof(mod_datos_cache_conf));
    for (f = 0; f < sizeof(fields) / sizeof(fields[0]); f++) {
        int owners = 0;

        for (i = 0; i < NROWS; i++) {
            const setting_t *row = row_at(i);
            if (row->store != S_NONE && fields[f].offset >= row->first
                && fields[f].offset + fields[f].size <= row->first + row->span)
                owners++;
        }
        for (i = 0; i < sizeof(derived) / sizeof(derived[0]); i++)
            owners += derived[i] == fields[f].offset;
        if (owners != 1)
            return apr_psprintf(pconf,
                                "field %s of the server configuration is set "
                                "by %d rows of the settings table (and the "
                                "derived fields); it must be one",
                                fields[f].name, owners);
    }
    return NULL;
}

void *mod_datos_create_srv_conf(apr_pool_t *p, server_rec *s)
{
    mod_datos_conf_t *conf = apr_pcalloc(p, sizeof(*conf));
    apr_size_t i;

    (void)s;
    for (i = 0; i < NROWS; i++)
        unset(conf, row_at(i));
    return conf;
}

/* A virtual host's directive wins over the main server's, all the fields
 * it sets together (DatosLimit's two values, DatosTable's parts). */
void *mod_datos_merge_srv_conf(apr_pool_t *p, void *basev, void *addv)
{
    mod_datos_conf_t *base = basev, *add = addv;
    mod_datos_conf_t *conf = apr_pcalloc(p, sizeof(*conf));
    apr_size_t i;

    for (i = 0; i < NROWS; i++) {
        const setting_t *row = row_at(i);
        const mod_datos_conf_t *from = is_set(add, row) ? add : base;

        if (row->store != S_NONE)
            memcpy(at(conf, row->first), (const char *)from + row->first,
                   row->span);
    }
    return conf;
}

/* ---------------------------------------------------------- finish */

/* curl reads the CA file in the children, after they took User and Group:
 * a bundle only root can read passes every check made as root, then fails
 * each https request. A forked probe with the children's identity asks the
 * kernel (mode bits, ACLs, every directory on the way) instead of guessing.
 * NULL when they can read it, or when there is nothing to tell (not
 * started as root, or the probe itself failed). */
static const char *children_cannot_read(apr_pool_t *p, const char *path)
{
    const unixd_config_rec *u = &ap_unixd_config;
    apr_proc_t proc;
    apr_exit_why_e why;
    apr_status_t rv;
    int code;

    if (geteuid() != 0 || !u->user_name || u->user_id == 0
        || u->user_id == (uid_t)-1)
        return NULL;
    rv = apr_proc_fork(&proc, p);
    if (rv == APR_INCHILD) {
        int fd;

        if (setgid(u->group_id) != 0
            || initgroups(u->user_name, u->group_id) != 0
            || setuid(u->user_id) != 0)
            _exit(255);
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        _exit(fd >= 0 ? 0 : errno > 0 && errno < 255 ? errno : EACCES);
    }
    if (rv != APR_INPARENT)
        return NULL;
    do {
        rv = apr_proc_wait(&proc, &code, &why, APR_WAIT);
    } while (APR_STATUS_IS_EINTR(rv));
    if (rv != APR_CHILD_DONE || why != APR_PROC_EXIT || code == 0
        || code == 255)
        return NULL;
    return apr_psprintf(p,
                        "%s cannot be read by %s (uid %lu), the User "
                        "httpd's children run as and read it as: %s",
                        path, u->user_name, (unsigned long)u->user_id,
                        strerror(code));
}

/* "Directive: message", with the way out when only plain http was
 * refused: DatosAllowInsecureHTTP lifts that refusal, while a malformed
 * URL stays wrong whatever it says, so it gets no hint. */
static const char *refusal(apr_pool_t *p, const char *directive,
                           const datos_err_t *err)
{
    int plain = err->reason && !strcmp(err->reason, DATOS_REASON_PLAIN_HTTP);

    return apr_psprintf(p, "%s: %s%s", directive, err->message,
                        plain ? " (DatosAllowInsecureHTTP On)" : "");
}

/* DatosIngest On: where to publish, resolved as the BigQuery side is. A
 * record must fit a body: the record rules allow 1 MiB of contenido, so a
 * smaller DatosMaxBody only narrows what is accepted, which is the
 * administrator's call. */
static const char *ingest_finish(apr_pool_t *p, mod_datos_conf_t *conf,
                                 datos_creds_t *creds)
{
    datos_endpoint_t ep;
    datos_err_t err;
    const char *project, *full, *msg;

    datos_err_clear(&err);
    if (datos_endpoint_resolve(p, DATOS_API_PUBSUB, conf->pubsub_url,
                               conf->allow_insecure, conf->credentials != NULL,
                               &ep, &err)
        != APR_SUCCESS)
        return refusal(p, "DatosPubSubURL", &err);
    conf->pubsub_url = ep.base_url;
    conf->pubsub_url_from_emulator_env = ep.from_env != NULL;
    project = conf->project         ? conf->project
              : conf->table.project ? conf->table.project
              : datos_creds_key_project(creds)
                  ? datos_creds_key_project(creds)
                  : datos_creds_quota_project(creds);
    if ((msg = datos_pubsub_resource_name(p, conf->topic, "topics", project,
                                          &full)))
        return apr_pstrcat(p, "DatosTopic: ", msg, NULL);
    if (full)
        conf->topic = full;
    else if (datos_creds_kind(creds) != DATOS_CREDS_METADATA)
        return apr_psprintf(p,
                            "DatosTopic: the short name '%s' needs a "
                            "project: set DatosProject, or give the full "
                            "name projects/PROJECT/topics/%s",
                            conf->topic, conf->topic);
    return NULL;
}

/* The defaults, as the rows give them. */
static const char *defaults(apr_pool_t *p, mod_datos_conf_t *conf)
{
    apr_size_t i;
    const char *msg;

    for (i = 0; i < NROWS; i++) {
        const setting_t *row = row_at(i);

        if (row->store == S_NONE || is_set(conf, row))
            continue;
        if (row->def_str) {
            if ((msg = parse(p, row, conf, row->def_str, NULL)))
                return apr_pstrcat(p, mod_datos_cmds[i].name, ": ", msg, NULL);
        }
        else if (row->store != S_PTR) {
            store_num(conf, row, row->def);
        }
    }
    return NULL;
}

const char *mod_datos_conf_finish(apr_pool_t *p, apr_pool_t *ptemp,
                                  server_rec *s, mod_datos_conf_t *conf,
                                  apr_hash_t *checked)
{
    datos_endpoint_t ep;
    datos_creds_t *creds = NULL;
    datos_err_t err;
    apr_status_t rv;
    const char *msg, *ckey;
    int insecure;

    if ((msg = defaults(p, conf)))
        return msg;
    if (conf->ca_file && (msg = children_cannot_read(ptemp, conf->ca_file)))
        return apr_pstrcat(p, "DatosCACertificateFile: ", msg, NULL);

    /* libdatos's rule: an explicit DatosBigQueryURL, else
     * BIGQUERY_EMULATOR_HOST (plain http, credentials none unless
     * configured), else Google's URL. */
    datos_err_clear(&err);
    rv = datos_endpoint_resolve(p, DATOS_API_BIGQUERY, conf->bigquery_url,
                                conf->allow_insecure, conf->credentials != NULL,
                                &ep, &err);
    if (rv != APR_SUCCESS)
        return refusal(p, "DatosBigQueryURL", &err);
    conf->bigquery_url = ep.base_url;
    conf->url_from_emulator_env = ep.from_env != NULL;
    if (ep.creds_none)
        conf->credentials = "none";

    /* Only a trial load here (apache2 -t reports a bad key); post_config
     * loads the key for real. Both run as root. Servers that share
     * credentials try them once. */
    insecure = conf->allow_insecure || conf->url_from_emulator_env;
    ckey =
        apr_psprintf(ptemp, "%s|%d",
                     conf->credentials ? conf->credentials : "(adc)", insecure);
    creds = apr_hash_get(checked, ckey, APR_HASH_KEY_STRING);
    if (!creds) {
        datos_err_clear(&err);
        rv = datos_creds_load(
            ptemp, conf->credentials, datos_scopes_bigquery_pubsub,
            insecure ? DATOS_CREDS_ALLOW_INSECURE : 0, &creds, &err);
        if (rv != APR_SUCCESS)
            return refusal(p, "DatosCredentials", &err);
        apr_hash_set(checked, ckey, APR_HASH_KEY_STRING, creds);
    }
    if (conf->ingest && (msg = ingest_finish(p, conf, creds)))
        return msg;
    if (!conf->project && !conf->table.project
        && datos_creds_kind(creds) == DATOS_CREDS_NONE)
        return "DatosProject: required with DatosCredentials none (there is "
               "no key file or metadata server to take it from)";
    if (conf->fresh_for > 0 && conf->cold_wait < conf->timeout)
        ap_log_error(
            APLOG_MARK, APLOG_WARNING, 0, s,
            DATOS_LOGNO(
                0008) "DatosColdWait (%" APR_TIME_T_FMT " ms) is shorter "
                      "than DatosTimeout (%" APR_TIME_T_FMT " ms): on a cold "
                      "cache, requests may give up on a fetch that would "
                      "still succeed",
            apr_time_as_msec(conf->cold_wait), apr_time_as_msec(conf->timeout));
    return NULL;
}

/* Every row's value, so that servers differ when any setting does. Plain
 * http counts as allowed however it was (DatosAllowInsecureHTTP or the
 * emulator's variable), and the Pub/Sub side only with DatosIngest On. */
const char *mod_datos_conf_id(apr_pool_t *p, const mod_datos_conf_t *conf)
{
    mod_datos_conf_t n = *conf;
    const char *id = "";
    apr_size_t i, o;

    n.allow_insecure = conf->allow_insecure || conf->url_from_emulator_env;
    if (!n.ingest)
        n.topic = n.pubsub_url = NULL;
    /* Only the status page reads these: no reason for another runtime. */
    n.loader_metrics_file = NULL;
    n.loader_interval = 0;
    /* Read from the configuration by each request, never by the runtime. */
    n.keepalive_linger = 0;
    for (i = 0; i < NROWS; i++) {
        const setting_t *row = row_at(i);

        const char *name = mod_datos_cmds[i].name, *v;

        switch (row->store) {
        case S_PTR:
            v = *(const char **)at(&n, row->offset);
            id = apr_pstrcat(p, id, name, "=", v ? v : "(unset)", "|", NULL);
            break;
        case S_INT:
            for (o = row->first; o < row->first + row->span; o += sizeof(int))
                id = apr_psprintf(p, "%s%s=%d|", id, name,
                                  *(const int *)at(&n, o));
            break;
        case S_INT64:
            id = apr_psprintf(p, "%s%s=%" APR_INT64_T_FMT "|", id, name,
                              *(const apr_int64_t *)at(&n, row->offset));
            break;
        default: break;
        }
    }
    return id;
}

void mod_datos_conf_http_opts(const mod_datos_conf_t *conf,
                              int from_emulator_env, datos_http_opts_t *opts)
{
    datos_http_opts_default(opts);
    opts->timeout = conf->timeout;
    /* BigQuery sends a query's first byte only once the query is done or
     * its timeoutMs (up to 10 s) is over: a stall guard of 10 s would cut
     * a fetch that DatosTimeout still allows. */
    opts->low_speed_time = conf->timeout;
    if (opts->connect_timeout > conf->timeout)
        opts->connect_timeout = conf->timeout;
    opts->ca_file = conf->ca_file;
    opts->allow_insecure = conf->allow_insecure || from_emulator_env;
    opts->user_agent = "mod_datos/" AP_SERVER_BASEREVISION;
}
