/* mod_datos_config.c - the Datos* directives.
 *
 * Each value is parsed and range-checked when the directive is read, so
 * `apache2 -t` fails with a message naming it. Checks that need several
 * directives, or the key file, run in mod_datos_conf_finish (check_config).
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <string.h>
#include <unistd.h>

#include "apr_strings.h"
#include "apr_lib.h"
#include "apr_thread_proc.h"

#include <strings.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "ap_provider.h"
#include "unixd.h"

#include "datos_conf.h"
#include "datos_crypt.h"
#include "datos_http.h"
#include "datos_ids.h"
#include "datos_ingest.h"
#include "datos_pubsub.h"
#include "datos_log.h"
#include "mod_datos.h"

APLOG_USE_MODULE(datos);

#define DEFAULT_TABLE         "latam_dataset.datos"
#define DEFAULT_LIMIT         10
#define DEFAULT_LIMIT_MAX     100
#define LIMIT_CEILING         10000
#define DATOS_DEFAULT_TIMEOUT apr_time_from_sec(5)
#define DEFAULT_LOOKBACK_DAYS 7
#define DEFAULT_MAX_PAYLOAD   ((apr_int64_t)1024 * 1024)
#define DEFAULT_FRESH_FOR     apr_time_from_sec(30)
#define DEFAULT_SWR           apr_time_from_sec(60)
#define DEFAULT_SIE           apr_time_from_sec(3600)
#define DEFAULT_COLD_WAIT     apr_time_from_sec(5)
#define DEFAULT_STATE_DIR     "/var/cache/apache2/mod_datos"
#define WINDOW_MAX            apr_time_from_sec(7 * 86400)
#define DEFAULT_TOPIC         "datos-topic"
#define DEFAULT_MAX_BODY      ((apr_int64_t)1024 * 1024)
#define DEFAULT_MAX_BATCH     100

mod_datos_global_t mod_datos_global;

void *mod_datos_create_srv_conf(apr_pool_t *p, server_rec *s)
{
    mod_datos_conf_t *conf = apr_pcalloc(p, sizeof(*conf));

    (void)s;
    conf->allow_insecure = MOD_DATOS_UNSET;
    conf->limit_default = MOD_DATOS_UNSET;
    conf->limit_max = MOD_DATOS_UNSET;
    conf->timeout = MOD_DATOS_UNSET;
    conf->lookback_days = MOD_DATOS_UNSET;
    conf->max_bytes_billed = MOD_DATOS_UNSET;
    conf->max_payload = MOD_DATOS_UNSET;
    conf->fresh_for = MOD_DATOS_UNSET;
    conf->stale_while_revalidate = MOD_DATOS_UNSET;
    conf->stale_if_error = MOD_DATOS_UNSET;
    conf->cold_wait = MOD_DATOS_UNSET;
    conf->max_waiting = MOD_DATOS_UNSET;
    conf->ingest = MOD_DATOS_UNSET;
    conf->max_body = MOD_DATOS_UNSET;
    conf->max_batch = MOD_DATOS_UNSET;
    return conf;
}

#define MERGE_PTR(f) conf->f = add->f ? add->f : base->f
#define MERGE_VAL(f) conf->f = (add->f != MOD_DATOS_UNSET) ? add->f : base->f

void *mod_datos_merge_srv_conf(apr_pool_t *p, void *basev, void *addv)
{
    mod_datos_conf_t *base = basev, *add = addv;
    mod_datos_conf_t *conf = apr_pcalloc(p, sizeof(*conf));

    MERGE_PTR(project);
    MERGE_PTR(location);
    MERGE_PTR(credentials);
    MERGE_PTR(bigquery_url);
    MERGE_PTR(ca_file);
    if (add->table_name) {
        conf->table_name = add->table_name;
        conf->table = add->table;
    }
    else {
        conf->table_name = base->table_name;
        conf->table = base->table;
    }
    MERGE_VAL(allow_insecure);
    MERGE_VAL(timeout);
    MERGE_VAL(lookback_days);
    MERGE_VAL(max_bytes_billed);
    MERGE_VAL(max_payload);
    MERGE_VAL(fresh_for);
    MERGE_VAL(stale_while_revalidate);
    MERGE_VAL(stale_if_error);
    MERGE_VAL(cold_wait);
    MERGE_PTR(state_dir);
    MERGE_VAL(max_waiting);
    MERGE_VAL(ingest);
    MERGE_PTR(topic);
    MERGE_PTR(pubsub_url);
    MERGE_VAL(max_body);
    MERGE_VAL(max_batch);
    if (add->limit_max != MOD_DATOS_UNSET) {
        conf->limit_default = add->limit_default;
        conf->limit_max = add->limit_max;
    }
    else {
        conf->limit_default = base->limit_default;
        conf->limit_max = base->limit_max;
    }
    return conf;
}

static mod_datos_conf_t *cmd_conf(cmd_parms *cmd)
{
    return ap_get_module_config(cmd->server->module_config, &datos_module);
}

/* Every directive is server-wide or per virtual host, never per directory. */
static const char *check_context(cmd_parms *cmd)
{
    return ap_check_cmd_context(cmd, NOT_IN_DIR_CONTEXT);
}

static const char *fail(cmd_parms *cmd, const char *msg)
{
    return apr_pstrcat(cmd->pool, cmd->cmd->name, ": ", msg, NULL);
}

static const char *set_project(cmd_parms *cmd, void *dc, const char *arg)
{
    const char *err = check_context(cmd);

    (void)dc;
    if (err)
        return err;
    if ((err = datos_project_id_check(cmd->pool, arg)))
        return fail(cmd, err);
    cmd_conf(cmd)->project = arg;
    return NULL;
}

static const char *set_table(cmd_parms *cmd, void *dc, const char *arg)
{
    mod_datos_conf_t *conf = cmd_conf(cmd);
    const char *err = check_context(cmd);

    (void)dc;
    if (err)
        return err;
    if ((err = datos_table_parse(cmd->pool, arg, &conf->table)))
        return fail(cmd, err);
    conf->table_name = arg;
    return NULL;
}

static const char *set_location(cmd_parms *cmd, void *dc, const char *arg)
{
    const char *err = check_context(cmd);

    (void)dc;
    if (err)
        return err;
    if ((err = datos_location_check(cmd->pool, arg)))
        return fail(cmd, err);
    cmd_conf(cmd)->location = arg;
    return NULL;
}

static const char *set_credentials(cmd_parms *cmd, void *dc, const char *arg)
{
    const char *err = check_context(cmd);
    const char *path;
    apr_finfo_t finfo;
    datos_err_t derr;

    (void)dc;
    if (err)
        return err;
    if (!strcmp(arg, "metadata") || !strcmp(arg, "none")) {
        cmd_conf(cmd)->credentials = arg;
        return NULL;
    }
    path = ap_server_root_relative(cmd->pool, arg);
    if (!path)
        return fail(cmd, apr_psprintf(cmd->pool, "invalid path '%s'", arg));
    if (apr_stat(&finfo, path, APR_FINFO_TYPE, cmd->pool) != APR_SUCCESS)
        return fail(cmd, apr_psprintf(cmd->pool,
                                      "'%s' is not 'metadata', "
                                      "'none' or an existing service-account "
                                      "key file",
                                      path));
    /* Type, owner and mode now, so the error points at this line; the
     * content is read by the trial load in check_config. */
    datos_err_clear(&derr);
    if (datos_creds_check_key_file(cmd->pool, path, &derr) != APR_SUCCESS)
        return fail(cmd, derr.message);
    cmd_conf(cmd)->credentials = path;
    return NULL;
}

/* An API URL: its form now, so the error points at this line; whether
 * plain http is allowed depends on DatosAllowInsecureHTTP, known at the
 * end. */
static const char *api_url(cmd_parms *cmd, const char *arg, const char *example,
                           const char **out)
{
    const char *err = check_context(cmd);
    apr_size_t len = strlen(arg);
    const char *url;
    datos_err_t derr;

    if (err)
        return err;
    if (strncasecmp(arg, "https://", 8) && strncasecmp(arg, "http://", 7))
        return fail(cmd, apr_pstrcat(cmd->pool,
                                     "must be an http:// or "
                                     "https:// URL, e.g. ",
                                     example, NULL));
    while (len && arg[len - 1] == '/')
        len--;
    url = apr_pstrmemdup(cmd->pool, arg, len);
    datos_err_clear(&derr);
    if (datos_http_check_url(cmd->pool, url, 1, 0, &derr) != APR_SUCCESS)
        return fail(cmd, derr.message);
    *out = url;
    return NULL;
}

static const char *set_bigquery_url(cmd_parms *cmd, void *dc, const char *arg)
{
    (void)dc;
    return api_url(cmd, arg, DATOS_BQ_URL_DEFAULT,
                   &cmd_conf(cmd)->bigquery_url);
}

static const char *set_allow_insecure(cmd_parms *cmd, void *dc, int flag)
{
    const char *err = check_context(cmd);

    (void)dc;
    if (err)
        return err;
    cmd_conf(cmd)->allow_insecure = flag;
    return NULL;
}

static const char *set_ca_file(cmd_parms *cmd, void *dc, const char *arg)
{
    const char *err = check_context(cmd);
    const char *path;
    datos_err_t derr;

    (void)dc;
    if (err)
        return err;
    path = ap_server_root_relative(cmd->pool, arg);
    if (!path)
        return fail(cmd, apr_psprintf(cmd->pool, "invalid path '%s'", arg));
    datos_err_clear(&derr);
    if (datos_ca_file_check(cmd->pool, path, &derr) != APR_SUCCESS)
        return fail(cmd, derr.message);
    cmd_conf(cmd)->ca_file = path;
    return NULL;
}

static const char *set_limit(cmd_parms *cmd, void *dc, const char *def,
                             const char *max)
{
    mod_datos_conf_t *conf = cmd_conf(cmd);
    const char *err = check_context(cmd);
    apr_int64_t d, m;

    (void)dc;
    if (err)
        return err;
    if ((err = datos_conf_int(cmd->pool, def, 1, LIMIT_CEILING, &d)))
        return fail(cmd, apr_pstrcat(cmd->pool, "default: ", err, NULL));
    m = d > DEFAULT_LIMIT_MAX ? d : DEFAULT_LIMIT_MAX;
    if (max && (err = datos_conf_int(cmd->pool, max, 1, LIMIT_CEILING, &m)))
        return fail(cmd, apr_pstrcat(cmd->pool, "max: ", err, NULL));
    if (d > m)
        return fail(cmd, apr_psprintf(cmd->pool,
                                      "the default (%s) must not "
                                      "exceed the max (%s)",
                                      def, max));
    conf->limit_default = (int)d;
    conf->limit_max = (int)m;
    return NULL;
}

static const char *set_timeout(cmd_parms *cmd, void *dc, const char *arg)
{
    const char *err = check_context(cmd);
    apr_interval_time_t t;

    (void)dc;
    if (err)
        return err;
    if ((err = datos_conf_duration(cmd->pool, arg, apr_time_from_sec(1),
                                   apr_time_from_msec(100),
                                   apr_time_from_sec(120), &t)))
        return fail(cmd, err);
    cmd_conf(cmd)->timeout = t;
    return NULL;
}

static const char *set_lookback(cmd_parms *cmd, void *dc, const char *arg)
{
    const char *err = check_context(cmd);
    const apr_interval_time_t day = apr_time_from_sec(86400);
    apr_interval_time_t t;

    (void)dc;
    if (err)
        return err;
    if ((err = datos_conf_duration(cmd->pool, arg, day, day, 3650 * day, &t)))
        return fail(cmd, err);
    if (t % day)
        return fail(cmd, "must be a whole number of days (e.g. 7d)");
    cmd_conf(cmd)->lookback_days = (int)(t / day);
    return NULL;
}

static const char *set_max_bytes_billed(cmd_parms *cmd, void *dc,
                                        const char *arg)
{
    const char *err = check_context(cmd);
    apr_int64_t v;

    (void)dc;
    if (err)
        return err;
    if (!strcasecmp(arg, "off")) {
        cmd_conf(cmd)->max_bytes_billed = 0;
        return NULL;
    }
    /* BigQuery bills at least 10 MiB per table, so a smaller cap would
     * refuse every query. */
    if ((err = datos_conf_size(cmd->pool, arg, DATOS_BQ_MIN_BILLED,
                               APR_INT64_MAX, &v)))
        return fail(cmd, apr_pstrcat(cmd->pool, err,
                                     " (BigQuery bills at "
                                     "least 10 MiB per query; 'off' for no "
                                     "cap)",
                                     NULL));
    cmd_conf(cmd)->max_bytes_billed = v;
    return NULL;
}

static const char *set_max_payload(cmd_parms *cmd, void *dc, const char *arg)
{
    const char *err = check_context(cmd);
    apr_int64_t v;

    (void)dc;
    if (err)
        return err;
    if ((err = datos_conf_size(cmd->pool, arg, 4096,
                               (apr_int64_t)256 * 1024 * 1024, &v)))
        return fail(cmd, err);
    cmd_conf(cmd)->max_payload = v;
    return NULL;
}

/* A cache window: 0 allowed where it means "none". */
static const char *set_window(cmd_parms *cmd, const char *arg,
                              apr_interval_time_t min, apr_interval_time_t *out)
{
    const char *err = check_context(cmd);

    if (err)
        return err;
    if ((err = datos_conf_duration(cmd->pool, arg, apr_time_from_sec(1), min,
                                   WINDOW_MAX, out)))
        return fail(cmd, err);
    return NULL;
}

static const char *set_fresh_for(cmd_parms *cmd, void *dc, const char *arg)
{
    (void)dc;
    return set_window(cmd, arg, 0, &cmd_conf(cmd)->fresh_for);
}

static const char *set_swr(cmd_parms *cmd, void *dc, const char *arg)
{
    (void)dc;
    return set_window(cmd, arg, 0, &cmd_conf(cmd)->stale_while_revalidate);
}

static const char *set_sie(cmd_parms *cmd, void *dc, const char *arg)
{
    (void)dc;
    return set_window(cmd, arg, 0, &cmd_conf(cmd)->stale_if_error);
}

static const char *set_cold_wait(cmd_parms *cmd, void *dc, const char *arg)
{
    const char *err = check_context(cmd);
    apr_interval_time_t t;

    (void)dc;
    if (err)
        return err;
    if ((err = datos_conf_duration(cmd->pool, arg, apr_time_from_sec(1),
                                   apr_time_from_msec(100),
                                   apr_time_from_sec(300), &t)))
        return fail(cmd, err);
    cmd_conf(cmd)->cold_wait = t;
    return NULL;
}

static const char *set_state_dir(cmd_parms *cmd, void *dc, const char *arg)
{
    const char *err = check_context(cmd);
    const char *path;

    (void)dc;
    if (err)
        return err;
    if (!strcasecmp(arg, "none")) {
        cmd_conf(cmd)->state_dir = "";
        return NULL;
    }
    path = ap_server_root_relative(cmd->pool, arg);
    if (!path || !*path)
        return fail(cmd, apr_psprintf(cmd->pool, "invalid path '%s'", arg));
    cmd_conf(cmd)->state_dir = path;
    return NULL;
}

static const char *set_max_waiting(cmd_parms *cmd, void *dc, const char *arg)
{
    const char *err = check_context(cmd);
    apr_int64_t v;

    (void)dc;
    if (err)
        return err;
    if ((err = datos_conf_int(cmd->pool, arg, 1, 100000, &v)))
        return fail(cmd, err);
    cmd_conf(cmd)->max_waiting = (int)v;
    return NULL;
}

static const char *set_ingest(cmd_parms *cmd, void *dc, int flag)
{
    const char *err = check_context(cmd);

    (void)dc;
    if (err)
        return err;
    cmd_conf(cmd)->ingest = flag;
    return NULL;
}

static const char *set_topic(cmd_parms *cmd, void *dc, const char *arg)
{
    const char *err = check_context(cmd);
    const char *full;

    (void)dc;
    if (err)
        return err;
    /* The name's form now; a short name gets its project at the end. */
    if ((err =
             datos_pubsub_resource_name(cmd->pool, arg, "topics", NULL, &full)))
        return fail(cmd, err);
    cmd_conf(cmd)->topic = arg;
    return NULL;
}

static const char *set_pubsub_url(cmd_parms *cmd, void *dc, const char *arg)
{
    (void)dc;
    return api_url(cmd, arg, DATOS_PUBSUB_URL_DEFAULT,
                   &cmd_conf(cmd)->pubsub_url);
}

static const char *set_max_body(cmd_parms *cmd, void *dc, const char *arg)
{
    const char *err = check_context(cmd);
    apr_int64_t v;

    (void)dc;
    if (err)
        return err;
    /* Up to what one publish request carries, base64 and all. */
    if ((err = datos_conf_size(cmd->pool, arg, 1024,
                               (apr_int64_t)DATOS_INGEST_MAX_BODY, &v)))
        return fail(cmd, err);
    cmd_conf(cmd)->max_body = v;
    return NULL;
}

static const char *set_max_batch(cmd_parms *cmd, void *dc, const char *arg)
{
    const char *err = check_context(cmd);
    apr_int64_t v;

    (void)dc;
    if (err)
        return err;
    if ((err = datos_conf_int(cmd->pool, arg, 1, DATOS_INGEST_MAX_BATCH, &v)))
        return fail(cmd, err);
    cmd_conf(cmd)->max_batch = (int)v;
    return NULL;
}

/* One shared tier for the whole server, as mod_cache_socache has: the
 * provider must be loaded before this line (LoadModule socache_X_module). */
static const char *set_cache(cmd_parms *cmd, void *dc, const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    const char *sep, *name;
    const ap_socache_provider_t *prov;

    (void)dc;
    if (err)
        return err;
    if (!strcasecmp(arg, "none")) {
        mod_datos_global.cache_spec = "none";
        mod_datos_global.provider = NULL;
        mod_datos_global.provider_name = "none";
        return NULL;
    }
    sep = strchr(arg, ':');
    name = sep ? apr_pstrmemdup(cmd->pool, arg, (apr_size_t)(sep - arg)) : arg;
    prov = ap_lookup_provider(AP_SOCACHE_PROVIDER_GROUP, name,
                              AP_SOCACHE_PROVIDER_VERSION);
    if (!prov) {
        apr_array_header_t *names = ap_list_provider_names(
            cmd->pool, AP_SOCACHE_PROVIDER_GROUP, AP_SOCACHE_PROVIDER_VERSION);
        ap_list_provider_names_t *n = (ap_list_provider_names_t *)names->elts;
        const char *known = "";
        int i;

        for (i = 0; i < names->nelts; i++)
            known = apr_pstrcat(cmd->pool, known, i ? ", " : "",
                                n[i].provider_name, NULL);
        return fail(
            cmd,
            apr_psprintf(cmd->pool,
                         "unknown cache provider '%s' (loaded: %s; 'none' for "
                         "no shared tier). Load mod_socache_%s first, e.g. "
                         "LoadModule socache_%s_module "
                         "modules/mod_socache_%s.so",
                         name, *known ? known : "none", name, name, name));
    }
    mod_datos_global.cache_spec = arg;
    mod_datos_global.provider = prov;
    mod_datos_global.provider_name = name;
    mod_datos_global.provider_args = sep ? sep + 1 : NULL;
    return NULL;
}

const command_rec mod_datos_cmds[] = {
    AP_INIT_TAKE1("DatosProject", set_project, NULL, RSRC_CONF,
                  "Google Cloud project that runs (and pays for) the queries; "
                  "default: the credentials' project"),
    AP_INIT_TAKE1("DatosTable", set_table, NULL, RSRC_CONF,
                  "[project.]dataset.table to serve; default " DEFAULT_TABLE),
    AP_INIT_TAKE1("DatosLocation", set_location, NULL, RSRC_CONF,
                  "BigQuery location of the dataset; default: read once from "
                  "the dataset"),
    AP_INIT_TAKE1("DatosCredentials", set_credentials, NULL, RSRC_CONF,
                  "service-account key file, 'metadata' or 'none'; default: "
                  "Application Default Credentials"),
    AP_INIT_TAKE1("DatosBigQueryURL", set_bigquery_url, NULL, RSRC_CONF,
                  "BigQuery API base URL; default " DATOS_BQ_URL_DEFAULT),
    AP_INIT_FLAG("DatosAllowInsecureHTTP", set_allow_insecure, NULL, RSRC_CONF,
                 "allow plain http to non-loopback Google URLs; "
                 "default Off"),
    AP_INIT_TAKE1("DatosCACertificateFile", set_ca_file, NULL, RSRC_CONF,
                  "PEM bundle of CAs trusted for Google's endpoints; default: "
                  "the system bundle"),
    AP_INIT_TAKE12("DatosLimit", set_limit, NULL, RSRC_CONF,
                   "default and maximum ?limit; default 10 100"),
    AP_INIT_TAKE1("DatosTimeout", set_timeout, NULL, RSRC_CONF,
                  "time allowed for one BigQuery fetch; default 5s"),
    AP_INIT_TAKE1("DatosLookback", set_lookback, NULL, RSRC_CONF,
                  "days of partitions the first query scans; default 7d"),
    AP_INIT_TAKE1("DatosMaxBytesBilled", set_max_bytes_billed, NULL, RSRC_CONF,
                  "maximumBytesBilled of each query (>= 10M) or "
                  "'off'; default off"),
    AP_INIT_TAKE1("DatosMaxPayload", set_max_payload, NULL, RSRC_CONF,
                  "bytes of rows an answer may hold; default 1M"),
    AP_INIT_TAKE1("DatosCache", set_cache, NULL, RSRC_CONF,
                  "shared cache tier: socache provider[:args] (shmcb, "
                  "memcache:host:port, redis:host:port) or 'none'; default "
                  "shmcb"),
    AP_INIT_TAKE1("DatosFreshFor", set_fresh_for, NULL, RSRC_CONF,
                  "how long an answer is served without asking BigQuery; 0: "
                  "one query per request; default 30s"),
    AP_INIT_TAKE1("DatosStaleWhileRevalidate", set_swr, NULL, RSRC_CONF,
                  "how long past that a stale answer is served at once while "
                  "one request refreshes it; default 60s"),
    AP_INIT_TAKE1("DatosStaleIfError", set_sie, NULL, RSRC_CONF,
                  "how long past its freshness the last good answer is "
                  "served while BigQuery fails; default 3600s"),
    AP_INIT_TAKE1("DatosColdWait", set_cold_wait, NULL, RSRC_CONF,
                  "how long a request waits for another's fetch when there "
                  "is no answer yet; default 5s"),
    AP_INIT_TAKE1("DatosStateDir", set_state_dir, NULL, RSRC_CONF,
                  "directory keeping the last good answer across restarts, "
                  "or 'none'; default " DEFAULT_STATE_DIR),
    AP_INIT_TAKE1("DatosMaxWaiting", set_max_waiting, NULL, RSRC_CONF,
                  "requests that may wait on BigQuery at once on this host; "
                  "default: a quarter of MaxRequestWorkers"),
    AP_INIT_FLAG("DatosIngest", set_ingest, NULL, RSRC_CONF,
                 "accept POST /datos and publish the records to Pub/Sub; "
                 "who may post is decided by Require; default Off"),
    AP_INIT_TAKE1(
        "DatosTopic", set_topic, NULL, RSRC_CONF,
        "Pub/Sub topic POST /datos publishes to: a short name in "
        "the project, or projects/P/topics/T; default " DEFAULT_TOPIC),
    AP_INIT_TAKE1("DatosPubSubURL", set_pubsub_url, NULL, RSRC_CONF,
                  "Pub/Sub API root URL; default " DATOS_PUBSUB_URL_DEFAULT),
    AP_INIT_TAKE1("DatosMaxBody", set_max_body, NULL, RSRC_CONF,
                  "largest POST /datos body; default 1M, at most 7M"),
    AP_INIT_TAKE1("DatosMaxBatch", set_max_batch, NULL, RSRC_CONF,
                  "most records in one POST /datos array; default 100, at "
                  "most 1000"),
    {NULL}};

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

/* Only a refusal of plain http is lifted by DatosAllowInsecureHTTP; a
 * malformed URL stays wrong whatever it says, so it gets no hint. */
static int plain_http_refused(const datos_err_t *err)
{
    return err->reason && !strcmp(err->reason, DATOS_REASON_PLAIN_HTTP);
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
        return apr_psprintf(
            p, "DatosPubSubURL: %s%s", err.message,
            plain_http_refused(&err) ? " (DatosAllowInsecureHTTP On)" : "");
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

const char *mod_datos_conf_finish(apr_pool_t *p, apr_pool_t *ptemp,
                                  server_rec *s, mod_datos_conf_t *conf,
                                  apr_hash_t *checked)
{
    datos_endpoint_t ep;
    datos_creds_t *creds = NULL;
    datos_err_t err;
    apr_status_t rv;
    const char *msg;

    (void)s;
    if (!conf->table_name) {
        conf->table_name = DEFAULT_TABLE;
        if ((msg = datos_table_parse(p, DEFAULT_TABLE, &conf->table)))
            return msg;
    }
    if (conf->limit_max == MOD_DATOS_UNSET) {
        conf->limit_default = DEFAULT_LIMIT;
        conf->limit_max = DEFAULT_LIMIT_MAX;
    }
    if (conf->timeout == MOD_DATOS_UNSET)
        conf->timeout = DATOS_DEFAULT_TIMEOUT;
    if (conf->lookback_days == MOD_DATOS_UNSET)
        conf->lookback_days = DEFAULT_LOOKBACK_DAYS;
    if (conf->max_bytes_billed == MOD_DATOS_UNSET)
        conf->max_bytes_billed = 0;
    if (conf->max_payload == MOD_DATOS_UNSET)
        conf->max_payload = DEFAULT_MAX_PAYLOAD;
    if (conf->allow_insecure == MOD_DATOS_UNSET)
        conf->allow_insecure = 0;
    if (conf->fresh_for == MOD_DATOS_UNSET)
        conf->fresh_for = DEFAULT_FRESH_FOR;
    if (conf->stale_while_revalidate == MOD_DATOS_UNSET)
        conf->stale_while_revalidate = DEFAULT_SWR;
    if (conf->stale_if_error == MOD_DATOS_UNSET)
        conf->stale_if_error = DEFAULT_SIE;
    if (conf->cold_wait == MOD_DATOS_UNSET)
        conf->cold_wait = DEFAULT_COLD_WAIT;
    if (!conf->state_dir)
        conf->state_dir = DEFAULT_STATE_DIR;
    if (conf->max_waiting == MOD_DATOS_UNSET)
        conf->max_waiting = 0;
    if (conf->ingest == MOD_DATOS_UNSET)
        conf->ingest = 0;
    if (!conf->topic)
        conf->topic = DEFAULT_TOPIC;
    if (conf->max_body == MOD_DATOS_UNSET)
        conf->max_body = DEFAULT_MAX_BODY;
    if (conf->max_batch == MOD_DATOS_UNSET)
        conf->max_batch = DEFAULT_MAX_BATCH;

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
        return apr_psprintf(
            p, "DatosBigQueryURL: %s%s", err.message,
            plain_http_refused(&err) ? " (DatosAllowInsecureHTTP On)" : "");
    conf->bigquery_url = ep.base_url;
    conf->url_from_emulator_env = ep.from_env != NULL;
    if (ep.creds_none)
        conf->credentials = "none";

    /* Only a trial load here (apache2 -t reports a bad key); post_config
     * loads the key for real. Both run as root. Servers that share
     * credentials try them once. */
    {
        const char *ckey = apr_psprintf(
            ptemp, "%s|%d", conf->credentials ? conf->credentials : "(adc)",
            conf->allow_insecure || conf->url_from_emulator_env);

        creds = apr_hash_get(checked, ckey, APR_HASH_KEY_STRING);
        if (!creds) {
            datos_err_clear(&err);
            rv = datos_creds_load(
                ptemp, conf->credentials, datos_scopes_bigquery_pubsub,
                conf->allow_insecure || conf->url_from_emulator_env
                    ? DATOS_CREDS_ALLOW_INSECURE
                    : 0,
                &creds, &err);
            if (rv != APR_SUCCESS)
                return apr_psprintf(p, "DatosCredentials: %s%s", err.message,
                                    plain_http_refused(&err)
                                        ? " (DatosAllowInsecureHTTP On)"
                                        : "");
            apr_hash_set(checked, ckey, APR_HASH_KEY_STRING, creds);
        }
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

const char *mod_datos_conf_id(apr_pool_t *p, const mod_datos_conf_t *conf)
{
    return apr_psprintf(
        p,
        "creds=%s|project=%s|table=%s|location=%s|url=%s|insecure=%d|"
        "ca=%s|limit=%d/%d|timeout=%" APR_TIME_T_FMT "|lookback=%d|"
        "billed=%" APR_INT64_T_FMT "|payload=%" APR_INT64_T_FMT "|"
        "fresh=%" APR_TIME_T_FMT "|swr=%" APR_TIME_T_FMT "|sie=%" APR_TIME_T_FMT
        "|cold=%" APR_TIME_T_FMT "|state=%s|waiting=%d|"
        "ingest=%d|topic=%s|pubsub=%s|body=%" APR_INT64_T_FMT "|batch=%d",
        conf->credentials ? conf->credentials : "(adc)",
        conf->project ? conf->project : "", conf->table_name,
        conf->location ? conf->location : "", conf->bigquery_url,
        conf->allow_insecure || conf->url_from_emulator_env,
        conf->ca_file ? conf->ca_file : "", conf->limit_default,
        conf->limit_max, conf->timeout, conf->lookback_days,
        conf->max_bytes_billed, conf->max_payload, conf->fresh_for,
        conf->stale_while_revalidate, conf->stale_if_error, conf->cold_wait,
        conf->state_dir, conf->max_waiting, conf->ingest,
        conf->ingest ? conf->topic : "", conf->ingest ? conf->pubsub_url : "",
        conf->max_body, conf->max_batch);
}
