/* datos_endpoint.c - base URLs: configured, from an emulator variable, or
 * Google's default. */
#include <stdlib.h>
#include <string.h>
#include <apr_strings.h>

#include "datos_endpoint.h"
#include "datos_http.h"

const char *datos_endpoint_env(datos_api_t api)
{
    return api == DATOS_API_PUBSUB ? "PUBSUB_EMULATOR_HOST"
                                   : "BIGQUERY_EMULATOR_HOST";
}

static char *trim_slashes(apr_pool_t *p, const char *s)
{
    char *t = apr_pstrdup(p, s);
    apr_size_t n = strlen(t);

    while (n > 0 && t[n - 1] == '/') {
        t[--n] = '\0';
    }
    return t;
}

apr_status_t datos_endpoint_resolve(apr_pool_t *p, datos_api_t api,
                                    const char *configured, int allow_insecure,
                                    int creds_configured, datos_endpoint_t *out,
                                    datos_err_t *err)
{
    apr_status_t rv;
    const char *var = datos_endpoint_env(api);
    const char *env = getenv(var);
    datos_endpoint_t ep;

    memset(&ep, 0, sizeof(ep));
    if (configured && *configured) {
        ep.base_url = trim_slashes(p, configured);
    }
    else if (env && *env) {
        /* The convention of Google's client libraries: an emulator host in
         * the environment replaces the API root and takes no tokens. */
        const char *root = trim_slashes(p, env);
        int scheme = strstr(root, "://") != NULL;

        ep.base_url =
            apr_pstrcat(p, scheme ? "" : "http://", root,
                        api == DATOS_API_BIGQUERY ? "/bigquery/v2" : "", NULL);
        ep.from_env = var;
        ep.creds_none = !creds_configured;
    }
    else {
        ep.base_url = api == DATOS_API_PUBSUB ? DATOS_PUBSUB_URL_DEFAULT
                                              : DATOS_BQ_URL_DEFAULT;
    }
    ep.allow_insecure = allow_insecure || ep.from_env;

    rv = datos_http_check_url(p, ep.base_url, ep.allow_insecure, 0, err);
    if (rv != APR_SUCCESS) {
        if (ep.from_env && err && err->message) {
            err->message = apr_pstrcat(err->pool ? err->pool : p, err->message,
                                       " (from ", var, ")", NULL);
        }
        goto leave;
    }
    *out = ep;

leave:
    return rv;
}
