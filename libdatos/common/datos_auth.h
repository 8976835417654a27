/* datos_auth.h - Google credentials in Application Default Credentials order.
 *
 * A datos_creds_t is created once (httpd: while still root, in the parent;
 * loader: at start) and used by every thread of a process. Access tokens are
 * cached in process memory only, until shortly before they expire.
 */
#ifndef DATOS_AUTH_H
#define DATOS_AUTH_H

#include <apr_pools.h>
#include <apr_time.h>
#include "datos_error.h"
#include "datos_http.h"

#define DATOS_SCOPE_BIGQUERY    "https://www.googleapis.com/auth/bigquery"
#define DATOS_SCOPE_PUBSUB      "https://www.googleapis.com/auth/pubsub"
#define DATOS_TOKEN_URI_DEFAULT "https://oauth2.googleapis.com/token"

/* The scopes of the product's programs: both read and load BigQuery and
 * use Pub/Sub (the loader drains it, POST /datos publishes). */
extern const char *const datos_scopes_bigquery_pubsub[];

typedef enum {
    DATOS_CREDS_KEYFILE, /* service-account JSON key: JWT-bearer exchange at its token_uri */
    DATOS_CREDS_METADATA, /* GCE/GKE/Cloud Run metadata server */
    DATOS_CREDS_NONE,     /* no Authorization header (emulators) */
    DATOS_CREDS_USER /* authorized_user (gcloud auth application-default login):
                           * refresh-token grant at its token_uri */
} datos_creds_kind_t;

/* datos_creds_load flags. */
#define DATOS_CREDS_ALLOW_INSECURE \
    0x1 /* a token_uri may be plain http to any host */
#define DATOS_CREDS_ALLOW_USER \
    0x2 /* authorized_user credentials are accepted (the loader) */

typedef struct datos_creds_t datos_creds_t;

/* spec: NULL or "" = Application Default Credentials, in order:
 *   1. GOOGLE_APPLICATION_CREDENTIALS when set (unreadable is an error, no
 *      fall-through);
 *   2. the gcloud well-known file, $CLOUDSDK_CONFIG/
 *      application_default_credentials.json when CLOUDSDK_CONFIG is set,
 *      else $HOME/.config/gcloud/application_default_credentials.json
 *      (HOME unset: the effective user's home), when it exists (then
 *      unusable is an error, no fall-through);
 *   3. the metadata server.
 * "metadata"; "none"; anything else is a key file path.
 * A key file must pass datos_creds_check_key_file and be JSON without
 * duplicate keys, of type "service_account" (with a parsable private_key)
 * or, with DATOS_CREDS_ALLOW_USER, "authorized_user" (client_id,
 * client_secret, refresh_token; quota_project_id, when present, must be a
 * project id). Other types (authorized_user without the flag) are refused
 * with an error naming the type. Its token_uri (default
 * DATOS_TOKEN_URI_DEFAULT) must pass datos_http_check_url, allowing plain
 * http with DATOS_CREDS_ALLOW_INSECURE; when only plain http broke the
 * rule, err->reason is DATOS_REASON_PLAIN_HTTP. GCE_METADATA_HOST must be
 * host[:port].
 * scopes: NULL-terminated list, NULL or empty = DATOS_SCOPE_BIGQUERY; a
 * program asks for the scopes of every API it uses. The PEM text, client
 * secret and refresh token are wiped from every copy but the one kept
 * (which the pool's cleanup wipes). All failures are DATOS_ECONFIG with a
 * message naming the file (prefixed "GOOGLE_APPLICATION_CREDENTIALS: " or
 * "the gcloud application default credentials file: " when the path came
 * from there, and naming GCE_METADATA_HOST when that was the problem) but
 * no setting of the caller: the caller prefixes its own
 * ("DatosCredentials: ", "credentials: "). */
apr_status_t datos_creds_load(apr_pool_t *p, const char *spec,
                              const char *const *scopes, int flags,
                              datos_creds_t **out, datos_err_t *err);

/* The checks of the key file itself, made on the file opened (open, then
 * fstat): symlinks are followed and the final target must be a regular
 * file, owned by the effective user (the user loading the credentials:
 * root for httpd started as root), with no group or other permission bits,
 * of 1 byte to 64 KiB. The directories leading to it are not checked:
 * whoever can write one can put there only a file of their own, which the
 * owner check refuses, or a link to a file the loading user already owns
 * and keeps private. The owner of a symlink does not matter. DATOS_ECONFIG
 * with a message naming the file and, for the owner, both users by name
 * and uid. */
apr_status_t datos_creds_check_key_file(apr_pool_t *p, const char *path,
                                        datos_err_t *err);

datos_creds_kind_t datos_creds_kind(const datos_creds_t *creds);

/* "service account a@b (key /path)", "user credentials (/path)",
 * "metadata server host:port" or "none": for logs, never a secret. */
const char *datos_creds_describe(const datos_creds_t *creds);

/* The key file's project_id, NULL otherwise. */
const char *datos_creds_key_project(const datos_creds_t *creds);

/* User credentials' quota_project_id (sent as x-goog-user-project on API
 * calls), NULL otherwise. */
const char *datos_creds_quota_project(const datos_creds_t *creds);

/* Run in each process that will use creds (httpd child_init): creates the
 * thread mutex in pchild, forgets tokens inherited over fork, and wipes
 * the cached token when pchild is cleaned up (child exit). */
apr_status_t datos_creds_child_init(datos_creds_t *creds, apr_pool_t *pchild);

/* The bearer token to send: *token = NULL for DATOS_CREDS_NONE. Served from
 * the cache unless force_refresh (after an API 401) or it expires within
 * min(300 s, lifetime / 2). Refreshes are serialised per process. Failures:
 * DATOS_EAUTH (token endpoint 4xx: invalid_grant...; a metadata server
 * answer without Metadata-Flavor: Google), or the transport / 5xx / 429
 * statuses, with the OAuth error and description in err and the answer's
 * Retry-After in err->retry_after. */
apr_status_t datos_creds_token(datos_creds_t *creds, datos_http_t *http,
                               apr_pool_t *p, apr_time_t deadline,
                               int force_refresh, const char **token,
                               datos_err_t *err);

/* The project the credentials belong to: the key file's project_id, user
 * credentials' quota_project_id, or the metadata server's
 * project/project-id (asked once, cached; a 2xx answer without
 * Metadata-Flavor: Google is DATOS_EAUTH, a refusal is classified as a
 * token endpoint's, see datos_google_classify). NULL with APR_SUCCESS when
 * unknown (DATOS_CREDS_NONE, user credentials without a quota project). */
apr_status_t datos_creds_project(datos_creds_t *creds, datos_http_t *http,
                                 apr_pool_t *p, apr_time_t deadline,
                                 const char **project, datos_err_t *err);

/* Parses a token endpoint / metadata answer. 2xx: {access_token, expires_in,
 * token_type Bearer} (expires_in a number or numeric string, > 0). Other
 * statuses go through datos_google_classify as DATOS_GOOGLE_TOKEN (the
 * OAuth {error, error_description} shape or the API envelope; DATOS_EAUTH
 * for 4xx, DATOS_EBACKEND for 5xx, DATOS_ERATELIMIT for 429). A missing or
 * malformed field is DATOS_EMALFORMED. Never copies the token into err. */
apr_status_t datos_token_parse(apr_pool_t *p, int http_status, const char *body,
                               apr_size_t len, const char **token,
                               apr_interval_time_t *expires_in,
                               datos_err_t *err);

#endif
