/* loader_main.c - the datos-loader command: settings, signals and the exit
 * code (0 done, 1 some work failed and will be retried, 2 configuration or
 * credentials, 3 done but some messages were left to the subscription's
 * dead-letter policy).
 *
 *   datos-loader [--config FILE] [--once] [--dry-run] [--max-messages N]
 *                [--max-seconds S] [--redrive] [--check-config]
 *                [--status [--json]] [--version] [--help]
 *
 * --status reads the local state only and exits as a Nagios plugin does
 * (loader_status.c): 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <apr_file_io.h>
#include <apr_user.h>

#include "datos_auth.h"
#include "datos_http.h"
#include "datos_version.h"
#include "loader.h"
#include "loader_status.h"

#define DEFAULT_CONFIG "/etc/datos/loader.conf"

static void on_signal(int sig)
{
    (void)sig;
    loader_stop = 1;
}

static void usage(FILE *out)
{
    const char *const *k;

    fprintf(
        out,
        "usage: datos-loader [--config FILE] [--once] [--dry-run]\n"
        "                    [--max-messages N] [--max-seconds S] [--redrive]\n"
        "                    [--check-config] [--status [--json]] [--version]\n"
        "                    [--help]\n"
        "\n"
        "Drains a Pub/Sub subscription into BigQuery with load jobs; messages\n"
        "that do not fit the record go to the dead-letter topic. One run drains\n"
        "the backlog (within --max-messages and --max-seconds) and exits:\n"
        "0 done, 1 some work failed and will be retried, 2 configuration error,\n"
        "3 done, but messages that could not be dead-lettered were left to the\n"
        "subscription's own dead-letter policy.\n"
        "\n"
        "  --config FILE     settings, one `key = value` per line (default\n"
        "                    " DEFAULT_CONFIG " when it exists)\n"
        "  --once            load one batch, then exit\n"
        "  --dry-run         validate and report; load, publish and ack nothing\n"
        "                    (every message pulled is nacked: a delivery attempt)\n"
        "  --max-messages N  stop pulling after N messages (0: no bound)\n"
        "  --max-seconds S   stop pulling after S seconds\n"
        "  --redrive         put dead-letter messages without datos_error (the\n"
        "                    subscription's own policy moved them) back on the topic\n"
        "  --check-config    check the settings as a run would, without the\n"
        "                    network; print one line: valid (exit 0) or the\n"
        "                    error (exit 2)\n"
        "  --status          what this host's state says: the last runs, the\n"
        "                    journal, hold-off, load jobs today, the files;\n"
        "                    local files only, no network. Exit 0 OK, 1 WARNING,\n"
        "                    2 CRITICAL, 3 UNKNOWN, as a Nagios/Icinga check\n"
        "  --json            with --status: one JSON object instead of the text\n"
        "\n"
        "The environment overrides the file: PUBSUB_EMULATOR_HOST,\n"
        "BIGQUERY_EMULATOR_HOST, GOOGLE_APPLICATION_CREDENTIALS,\n"
        "GOOGLE_CLOUD_PROJECT. Flags override both. Settings:\n ");
    for (k = loader_config_keys(); *k; k++)
        fprintf(out, " %s", *k);
    fprintf(out,
            "\n(conf/loader.conf.example documents each with its default)\n");
}

/* What to do about a config file that cannot be read: its reader is
 * whoever runs the loader (the unit's User=), never root. */
static const char *read_fix(apr_pool_t *p, const char *path, apr_status_t rv)
{
    char *user = NULL, *group = NULL;
    apr_uid_t uid;
    apr_gid_t gid;

    if (APR_STATUS_IS_ENOENT(rv))
        return "; write it (datos-loader(8) and loader.conf.example document "
               "every key) or give its path with --config";
    if (!APR_STATUS_IS_EACCES(rv) || apr_uid_current(&uid, &gid, p)
        || apr_uid_name_get(&user, uid, p) || apr_gid_name_get(&group, gid, p))
        return "";
    return apr_psprintf(p,
                        "; it must be readable by %s, the user running the "
                        "loader, and by no one else but root: run chown "
                        "root:%s %s && chmod 0640 %s",
                        user, group, path, path);
}

static const char *read_file(apr_pool_t *p, const char *path, char **text,
                             apr_size_t *len)
{
    apr_file_t *f = NULL;
    apr_finfo_t fi;
    apr_status_t rv;
    char buf[256];

    rv = apr_file_open(&f, path, APR_FOPEN_READ, 0, p);
    if (rv == APR_SUCCESS)
        rv = apr_file_info_get(&fi, APR_FINFO_SIZE | APR_FINFO_TYPE, f);
    if (rv == APR_SUCCESS && fi.filetype != APR_REG)
        return apr_psprintf(p, "config file %s is not a regular file", path);
    if (rv == APR_SUCCESS && fi.size > 1024 * 1024)
        return apr_psprintf(p, "config file %s is larger than 1 MiB", path);
    if (rv == APR_SUCCESS) {
        *text = apr_palloc(p, (apr_size_t)fi.size + 1);
        rv = apr_file_read_full(f, *text, (apr_size_t)fi.size, len);
        if (rv == APR_EOF)
            rv = APR_SUCCESS;
        (*text)[*len] = '\0';
    }
    if (f)
        apr_file_close(f);
    if (rv != APR_SUCCESS)
        return apr_psprintf(p, "cannot read config file %s: %s%s", path,
                            apr_strerror(rv, buf, sizeof(buf)),
                            read_fix(p, path, rv));
    return NULL;
}

/* --check-config: the verdict also goes to stdout as one plain line, for
 * the operator at a terminal (stderr carries the JSON event as always). */
static int check_only;

/* --status (--json): a configuration that cannot be read is UNKNOWN (3),
 * said on stdout, where a monitoring system reads it. */
static int status_only, status_json;
static apr_pool_t *status_pool;
static loader_config_t *status_config;

static int config_error(const char *msg)
{
    json_t *ev;

    if (status_only)
        return loader_status(status_pool, status_config, status_json, msg);
    ev = loader_event("error", "config_error");

    json_object_set_new(ev, "message", json_string(msg));
    loader_emit(ev);
    if (check_only)
        printf("datos-loader: configuration error: %s\n", msg);
    return LOADER_EXIT_CONFIG;
}

/* What a run checks before its first call to Google (loader_setup, as a
 * run calls it), minus the network. The journal directory is not
 * created. */
static int check_config(apr_pool_t *p, loader_config_t *c, const char *path)
{
    loader_setup_t su;
    const char *msg;

    if ((msg = loader_setup(p, c, 1, &su)))
        return config_error(msg);
    printf("datos-loader: configuration valid: %s; credentials: %s; "
           "project: %s\n",
           path ? path : "no config file (defaults and the environment)",
           datos_creds_describe(su.creds),
           su.project ? su.project
                      : "the metadata server's, asked at run time");
    return LOADER_EXIT_OK;
}

static const char *env_get(const char *name)
{
    return getenv(name);
}

int main(int argc, const char *const *argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"once", no_argument, NULL, 'o'},
        {"dry-run", no_argument, NULL, 'n'},
        {"max-messages", required_argument, NULL, 'm'},
        {"max-seconds", required_argument, NULL, 's'},
        {"redrive", no_argument, NULL, 'r'},
        {"check-config", no_argument, NULL, 'k'},
        {"status", no_argument, NULL, 'S'},
        {"json", no_argument, NULL, 'J'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    apr_pool_t *p;
    loader_config_t c;
    const char *config = NULL, *path = NULL, *msg;
    const char *flag_messages = NULL, *flag_seconds = NULL;
    struct sigaction sa;
    int opt, rc;

    if (apr_app_initialize(&argc, &argv, NULL) != APR_SUCCESS
        || apr_pool_create(&p, NULL) != APR_SUCCESS) {
        fputs("datos-loader: cannot initialise APR\n", stderr);
        return LOADER_EXIT_CONFIG;
    }
    loader_log_init(2);
    loader_config_defaults(&c);
    status_pool = p;
    status_config = &c;
    opterr = 0;
    while ((opt = getopt_long(argc, (char *const *)argv, "c:onm:s:rkVh",
                              longopts, NULL))
           != -1) {
        switch (opt) {
        case 'c': config = optarg; break;
        case 'o': c.once = 1; break;
        case 'n': c.dry_run = 1; break;
        case 'm': flag_messages = optarg; break;
        case 's': flag_seconds = optarg; break;
        case 'r': c.redrive = 1; break;
        case 'k': check_only = 1; break;
        case 'S': status_only = 1; break;
        case 'J': status_json = 1; break;
        case 'V':
            printf("datos-loader %s\n", DATOS_VERSION);
            return LOADER_EXIT_OK;
        case 'h': usage(stdout); return LOADER_EXIT_OK;
        default:
            /* stderr carries JSON lines only: the usage is --help's. */
            return config_error(apr_psprintf(
                p, "%s: unknown option or missing value (see --help)",
                optind > 0 && optind <= argc ? argv[optind - 1] : "?"));
        }
    }
    if (optind < argc)
        return config_error(
            apr_psprintf(p, "unexpected argument '%s'", argv[optind]));
    if (status_json && !status_only)
        return config_error("--json goes with --status");
    if (status_only && (check_only || c.redrive || c.once || c.dry_run))
        return config_error("--status goes alone (with --config and --json)");

    if (config || access(DEFAULT_CONFIG, F_OK) == 0) {
        char *text = NULL;
        apr_size_t len = 0;

        path = config ? config : DEFAULT_CONFIG;

        if ((msg = read_file(p, path, &text, &len))
            || (msg = loader_config_parse(p, path, text, len, &c)))
            return config_error(msg);
    }
    if ((msg = loader_config_env(p, &c, env_get)))
        return config_error(msg);
    if ((flag_messages
         && (msg = loader_config_set(p, &c, "max_messages", flag_messages,
                                     "--max-messages")))
        || (flag_seconds
            && (msg = loader_config_set(p, &c, "max_seconds", flag_seconds,
                                        "--max-seconds"))))
        return config_error(msg);

    if (status_only) {
        rc = loader_status(p, &c, status_json, NULL);
        apr_pool_destroy(p);
        apr_terminate();
        return rc;
    }
    if (datos_http_global_init() != APR_SUCCESS)
        return config_error("cannot initialise libcurl");
    if (check_only) {
        rc = check_config(p, &c, path);
        datos_http_global_cleanup();
        apr_pool_destroy(p);
        apr_terminate();
        return rc;
    }

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    rc = c.redrive ? loader_redrive(p, &c) : loader_run(p, &c);
    datos_http_global_cleanup();
    apr_pool_destroy(p);
    apr_terminate();
    return rc;
}
