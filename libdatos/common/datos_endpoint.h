/* datos_endpoint.h - where a program talks to Google's APIs: the default
 * URLs, the emulator-environment rule and the "plain http allowed"
 * decision, made once for every program (docs/design.md section 6, docs/google-apis.md
 * 1.11 and 2.11).
 *
 * Messages name no setting of a program: callers prefix their own
 * ("DatosBigQueryURL: ", "bigquery_url: ") and, when err->reason is
 * DATOS_REASON_PLAIN_HTTP, name their insecure-http setting.
 */
#ifndef DATOS_ENDPOINT_H
#define DATOS_ENDPOINT_H

#include <apr_pools.h>
#include "datos_error.h"

#define DATOS_BQ_URL_DEFAULT     "https://bigquery.googleapis.com/bigquery/v2"
#define DATOS_PUBSUB_URL_DEFAULT "https://pubsub.googleapis.com"

typedef enum {
    DATOS_API_BIGQUERY, /* base: the API root, ".../bigquery/v2" */
    DATOS_API_PUBSUB    /* base: the service root; clients add "/v1/..." */
} datos_api_t;

typedef struct datos_endpoint_t {
    const char *base_url; /* no trailing '/' */
    const char *from_env; /* the emulator variable it came from, else NULL */
    int allow_insecure; /* plain http allowed: the explicit setting, or from_env */
    int creds_none;     /* from_env without explicit credentials: use none */
} datos_endpoint_t;

/* The emulator variable of an API: "BIGQUERY_EMULATOR_HOST",
 * "PUBSUB_EMULATOR_HOST". */
const char *datos_endpoint_env(datos_api_t api);

/* Decides an API's base URL, in order:
 *   1. configured, when not NULL or "" (trailing '/' removed);
 *   2. the emulator variable, when set and not empty, as Google's client
 *      libraries read it: BIGQUERY_EMULATOR_HOST is a root URL, with or
 *      without a scheme (none: http://), to which "/bigquery/v2" is
 *      appended; PUBSUB_EMULATOR_HOST is host:port without a scheme, to
 *      which "http://" is prepended (a value with a scheme is taken as it
 *      is). Such a base allows plain http, and without explicit
 *      credentials (creds_configured 0) the credentials default to none:
 *      emulators take no tokens;
 *   3. the default URL.
 * Plain http is allowed by allow_insecure (the program's explicit setting)
 * or by the emulator variable. The result must pass datos_http_check_url
 * with that decision: else its status and message (plus " (from
 * VARIABLE)" when the URL came from one) with err->reason
 * DATOS_REASON_PLAIN_HTTP when only plain http broke the rule. */
apr_status_t datos_endpoint_resolve(apr_pool_t *p, datos_api_t api,
                                    const char *configured, int allow_insecure,
                                    int creds_configured, datos_endpoint_t *out,
                                    datos_err_t *err);

#endif
