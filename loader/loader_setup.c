/* loader_setup.c - what a run settles before its first call to Google, and
 * what --check-config checks: the API roots and whether plain http is
 * allowed, the credentials, the project, and the names made whole. One
 * function for both, so a configuration --check-config passes is one a
 * run accepts.
 */
#include <stddef.h>
#include <string.h>

#include <apr_strings.h>

#include "datos_auth.h"
#include "datos_endpoint.h"
#include "datos_http.h"
#include "datos_version.h"
#include "loader.h"

/* Whether a setting came from the given environment variable (the origin
 * loader_config_env records). */
static int set_by(const loader_config_t *c, const char *key, const char *var)
{
    const char *o =
        c->origin ? apr_hash_get(c->origin, key, APR_HASH_KEY_STRING) : NULL;
    return o && !strcmp(o, var);
}

static const char *insecure_hint(const datos_err_t *err)
{
    return err->reason && !strcmp(err->reason, DATOS_REASON_PLAIN_HTTP)
               ? " (allow_insecure_http = true)"
               : "";
}

/* The project the credentials name, asked over the network when only the
 * metadata server knows it. */
static apr_status_t project_online(apr_pool_t *p, const loader_config_t *c,
                                   datos_creds_t *creds, const char **project,
                                   datos_err_t *err)
{
    datos_http_opts_t opts;
    datos_http_t *http;
    apr_status_t rv;

    loader_http_opts(c, &opts);
    rv = datos_http_create(p, &opts, &http, err);
    if (rv == APR_SUCCESS)
        rv = datos_creds_project(
            creds, http, p, apr_time_now() + c->http_timeout, project, err);
    return rv;
}

void loader_http_opts(const loader_config_t *c, datos_http_opts_t *opts)
{
    datos_http_opts_default(opts);
    opts->timeout = c->http_timeout;
    opts->ca_file = c->ca_file;
    opts->allow_insecure = c->allow_insecure_http;
    opts->user_agent = "datos-loader/" DATOS_VERSION;
}

const char *loader_setup(apr_pool_t *p, loader_config_t *c, int offline,
                         loader_setup_t *out)
{
    static const struct {
        datos_api_t api;
        const char *key, *var;
        apr_size_t offset;
    } apis[] = {
        {DATOS_API_PUBSUB, "pubsub_url", "PUBSUB_EMULATOR_HOST",
         offsetof(loader_config_t, pubsub_url)},
        {DATOS_API_BIGQUERY, "bigquery_url", "BIGQUERY_EMULATOR_HOST",
         offsetof(loader_config_t, bigquery_url)},
    };
    datos_endpoint_t ep[2];
    datos_err_t err;
    const char *project = c->project, *msg;
    int creds_configured;
    apr_status_t rv;
    apr_size_t i;

    memset(out, 0, sizeof(*out));
    /* An emulator variable without explicit credentials means none, as
     * Google's client libraries have it. */
    creds_configured =
        c->credentials
        && !set_by(c, "credentials", "GOOGLE_APPLICATION_CREDENTIALS");
    for (i = 0; i < 2; i++) {
        const char *url = *(const char **)((char *)c + apis[i].offset);

        datos_err_init(&err, p);
        if (datos_endpoint_resolve(
                p, apis[i].api,
                set_by(c, apis[i].key, apis[i].var) ? NULL : url,
                c->allow_insecure_http, creds_configured, &ep[i], &err)
            != APR_SUCCESS)
            return apr_psprintf(p, "%s: %s%s", apis[i].key, err.message,
                                insecure_hint(&err));
    }
    out->pubsub_base = ep[0].base_url;
    out->pubsub_insecure = ep[0].allow_insecure;
    out->pubsub_creds_none = ep[0].creds_none;
    out->bigquery_base = ep[1].base_url;
    out->bigquery_insecure = ep[1].allow_insecure;
    out->bigquery_creds_none = ep[1].creds_none;

    datos_err_init(&err, p);
    if (datos_creds_load(
            p, ep[0].creds_none && ep[1].creds_none ? "none" : c->credentials,
            datos_scopes_bigquery_pubsub,
            DATOS_CREDS_ALLOW_USER
                | (c->allow_insecure_http ? DATOS_CREDS_ALLOW_INSECURE : 0),
            &out->creds, &err)
        != APR_SUCCESS)
        return apr_psprintf(p, "credentials: %s%s", err.message,
                            insecure_hint(&err));

    if (!project) {
        switch (datos_creds_kind(out->creds)) {
        case DATOS_CREDS_KEYFILE:
            project = datos_creds_key_project(out->creds);
            break;
        case DATOS_CREDS_USER:
            project = datos_creds_quota_project(out->creds);
            break;
        case DATOS_CREDS_METADATA:
            if (offline)
                break;
            datos_err_init(&err, p);
            if ((rv = project_online(p, c, out->creds, &project, &err))
                != APR_SUCCESS) {
                /* Unreachable now is a later run's business; a refusal is
                 * the administrator's. */
                out->retry = rv != DATOS_ECONFIG && rv != DATOS_EAUTH;
                return apr_psprintf(p, "project: the metadata server: %s",
                                    err.message);
            }
            break;
        default: break;
        }
    }
    out->project = project;
    /* Offline, a project only the metadata server knows is a stand-in:
     * the names are checked, not completed for real. */
    if ((msg = loader_config_finish(p, c,
                                    project || !offline
                                            || datos_creds_kind(out->creds)
                                                   != DATOS_CREDS_METADATA
                                        ? project
                                        : "metadata-project")))
        return msg;
    return NULL;
}
