/* datos_auth.c - Google credentials: service-account keys (JWT-bearer
 * exchange), the metadata server, and a per-process token cache.
 *
 * The key is read once, while the caller can still read a 0600 file
 * (httpd: as root in the parent), and only the parsed EVP_PKEY is kept.
 *
 * The cached token lives in malloc'd memory owned by the credentials, not
 * in a pool, so a long-running process does not grow a pool per hour. That
 * copy is wiped when it is replaced, when a child starts (the one inherited
 * over fork), when the child's pool is cleaned up at exit, and when the
 * credentials' pool is. What is not wiped: the copies one request works
 * with -- the string datos_creds_token returns, the Authorization header
 * built from it, the token endpoint's answer, the signed assertion, and
 * curl's own buffers. They live in the caller's pool or in curl, and are
 * freed, not cleared, when those are; so freed memory of a process that
 * served requests may still hold recent tokens, each valid an hour at most.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <apr_strings.h>
#include <apr_user.h>
#include <apr_tables.h>
#include <openssl/crypto.h>

#include "datos_auth.h"
#include "datos_google_classify.h"
#include "datos_mutex.h"
#include "datos_crypt.h"
#include "datos_ids.h"
#include "datos_json.h"
#include "datos_log.h"

#define KEYFILE_MAX (64 * 1024)
#define MD_TOKEN_PATH \
    "/computeMetadata/v1/instance/service-accounts/default/token"
#define MD_PROJECT_PATH    "/computeMetadata/v1/project/project-id"
#define REFRESH_MARGIN_MAX apr_time_from_sec(300)
#define WELL_KNOWN_FILE    "application_default_credentials.json"

struct datos_creds_t {
    apr_pool_t *pool;
    datos_creds_kind_t kind;
    const char *describe;
    const char *scopes; /* space-separated */
    int allow_insecure;
    int allow_user;

    /* DATOS_CREDS_KEYFILE */
    const char *key_path;
    const char *client_email;
    const char *key_id;
    const char *token_uri;
    const char *project_id;
    EVP_PKEY *pkey;

    /* DATOS_CREDS_USER: the refresh-token grant at token_uri. The two
     * secrets live in the credentials' pool and are wiped with it. */
    const char *client_id;
    char *client_secret;
    char *refresh_token;
    const char *quota_project;

    /* DATOS_CREDS_METADATA */
    const char *md_base; /* http://host[:port] */

    /* Per-process state, guarded by mutex once child_init made one. */
#if APR_HAS_THREADS
    apr_thread_mutex_t *mutex;
#endif
    char *token; /* malloc'd, wiped on release */
    apr_time_t token_expiry;
    apr_interval_time_t token_lifetime;
    char md_project[256]; /* metadata project/project-id, "" until asked */
};

const char *const datos_scopes_bigquery_pubsub[] = {DATOS_SCOPE_BIGQUERY,
                                                    DATOS_SCOPE_PUBSUB, NULL};

/* ------------------------------------------------------------ helpers */

static void token_forget(datos_creds_t *c)
{
    if (c->token) {
        OPENSSL_cleanse(c->token, strlen(c->token));
        free(c->token);
        c->token = NULL;
    }
    c->token_expiry = 0;
    c->token_lifetime = 0;
}

static void wipe(char *s)
{
    if (s) {
        OPENSSL_cleanse(s, strlen(s));
    }
}

static apr_status_t creds_cleanup(void *data)
{
    datos_creds_t *c = data;

    token_forget(c);
    wipe(c->client_secret);
    wipe(c->refresh_token);
    return APR_SUCCESS;
}

static void creds_lock(datos_creds_t *c)
{
    datos_mutex_lock(c->mutex);
}

static void creds_unlock(datos_creds_t *c)
{
    datos_mutex_unlock(c->mutex);
}

/* The scope list as the JWT's scope claim wants it: space-separated. */
static const char *scopes_join(apr_pool_t *p, const char *const *scopes)
{
    const char *out = NULL;
    int i;

    for (i = 0; scopes && scopes[i]; i++) {
        if (!*scopes[i]) {
            continue;
        }
        out = out ? apr_pstrcat(p, out, " ", scopes[i], NULL)
                  : apr_pstrdup(p, scopes[i]);
    }
    return out ? out : DATOS_SCOPE_BIGQUERY;
}

/* "a b c" -> "a,b,c" for the metadata server's scopes parameter. */
static const char *scopes_csv(apr_pool_t *p, const char *scopes)
{
    char *s = apr_pstrdup(p, scopes), *tok, *last = NULL;
    const char *out = NULL;

    for (tok = apr_strtok(s, " \t", &last); tok;
         tok = apr_strtok(NULL, " \t", &last)) {
        out = out ? apr_pstrcat(p, out, ",", tok, NULL) : tok;
    }
    return out ? out : "";
}

/* --------------------------------------------------------------- load */

/* The rule of a key file (docs/design.md 6): datos_private_file_open's. */
static apr_status_t key_file_open(apr_pool_t *p, const char *path, int *fdp,
                                  struct stat *st, datos_err_t *err)
{
    return datos_private_file_open(
        p, path, "key file", "the credentials", KEYFILE_MAX,
        " (a service-account key is a few KB of JSON)", fdp, st, err);
}

apr_status_t datos_creds_check_key_file(apr_pool_t *p, const char *path,
                                        datos_err_t *err)
{
    struct stat st;
    int fd = -1;
    apr_status_t rv;

    rv = key_file_open(p, path, &fd, &st, err);
    if (rv == APR_SUCCESS) {
        close(fd);
    }
    return rv;
}

static apr_status_t read_key_file(apr_pool_t *p, const char *path, char **buf,
                                  apr_size_t *len, datos_err_t *err)
{
    apr_status_t rv;
    struct stat st;
    char *data = NULL;
    apr_size_t got = 0;
    int fd = -1;

    rv = key_file_open(p, path, &fd, &st, err);
    if (rv != APR_SUCCESS) {
        goto leave;
    }
    data = malloc((size_t)st.st_size + 1);
    if (!data) {
        rv = datos_err_set(err, p, APR_ENOMEM, 0, NULL,
                           "cannot read key file %s: out of memory", path);
        goto leave;
    }
    while (got < (apr_size_t)st.st_size) {
        ssize_t n = read(fd, data + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            rv = datos_err_set(err, p, DATOS_ECONFIG, 0, NULL,
                               "cannot read key file %s: %s", path,
                               n < 0 ? strerror(errno) : "short read");
            goto leave;
        }
        got += (apr_size_t)n;
    }
    data[got] = '\0';
    *buf = data;
    *len = got;
    data = NULL;

leave:
    if (data) {
        OPENSSL_cleanse(data, (size_t)st.st_size + 1);
        free(data);
    }
    if (fd >= 0) {
        close(fd);
    }
    return rv;
}

static const char *req_string(json_t *j, const char *key)
{
    const char *s = datos_json_str(j, key);
    return s && *s ? s : NULL;
}

/* A token_uri passes the transport rule with the credentials' own
 * insecure-http setting; only plain http to a remote host keeps its
 * reason, since only that refusal the setting would lift. */
static apr_status_t token_uri_check(apr_pool_t *p, datos_creds_t *c,
                                    const char *path, datos_err_t *err)
{
    datos_err_t kerr = {0};
    apr_status_t rv;

    rv = datos_http_check_url(p, c->token_uri, c->allow_insecure, 0, &kerr);
    if (rv != APR_SUCCESS) {
        rv = datos_err_set(err, p, DATOS_ECONFIG, 0, kerr.reason,
                           "key file %s: token_uri refused: %s", path,
                           kerr.message);
    }
    return rv;
}

static apr_status_t service_account(apr_pool_t *p, datos_creds_t *c, json_t *j,
                                    const char *path, datos_err_t *err)
{
    apr_status_t rv;
    const char *pem, *token_uri;
    EVP_PKEY *pkey;
    datos_err_t kerr = {0};

    c->kind = DATOS_CREDS_KEYFILE;
    c->client_email = req_string(j, "client_email");
    c->key_id = req_string(j, "private_key_id");
    pem = req_string(j, "private_key");
    if (!c->client_email || !c->key_id || !pem) {
        rv = datos_err_set(err, p, DATOS_ECONFIG, 0, NULL,
                           "key file %s lacks %s", path,
                           !c->client_email ? "client_email"
                           : !c->key_id     ? "private_key_id"
                                            : "private_key");
        goto leave;
    }
    c->client_email = apr_pstrdup(p, c->client_email);
    c->key_id = apr_pstrdup(p, c->key_id);
    token_uri = req_string(j, "token_uri");
    c->token_uri =
        apr_pstrdup(p, token_uri ? token_uri : DATOS_TOKEN_URI_DEFAULT);
    if (req_string(j, "project_id")) {
        c->project_id = apr_pstrdup(p, req_string(j, "project_id"));
    }
    rv = token_uri_check(p, c, path, err);
    if (rv != APR_SUCCESS) {
        goto leave;
    }
    rv = datos_pkey_from_pem(p, pem, strlen(pem), &pkey, &kerr);
    if (rv != APR_SUCCESS) {
        rv = datos_err_set(err, p, DATOS_ECONFIG, 0, NULL,
                           "key file %s: private_key: %s", path, kerr.message);
        goto leave;
    }
    c->pkey = pkey;
    c->key_path = apr_pstrdup(p, path);
    c->describe =
        apr_psprintf(p, "service account %s (key %s)", c->client_email, path);

leave:
    return rv;
}

/* gcloud auth application-default login writes these: an OAuth client
 * and a refresh token of the user who logged in. */
static apr_status_t authorized_user(apr_pool_t *p, datos_creds_t *c, json_t *j,
                                    const char *path, datos_err_t *err)
{
    apr_status_t rv;
    const char *id, *secret, *refresh, *token_uri, *quota;

    c->kind = DATOS_CREDS_USER;
    id = req_string(j, "client_id");
    secret = req_string(j, "client_secret");
    refresh = req_string(j, "refresh_token");
    if (!id || !secret || !refresh) {
        rv = datos_err_set(err, p, DATOS_ECONFIG, 0, NULL,
                           "key file %s lacks %s", path,
                           !id       ? "client_id"
                           : !secret ? "client_secret"
                                     : "refresh_token");
        goto leave;
    }
    token_uri = req_string(j, "token_uri");
    c->token_uri =
        apr_pstrdup(p, token_uri ? token_uri : DATOS_TOKEN_URI_DEFAULT);
    rv = token_uri_check(p, c, path, err);
    if (rv != APR_SUCCESS) {
        goto leave;
    }
    quota = req_string(j, "quota_project_id");
    if (quota && datos_project_id_check(p, quota)) {
        /* It becomes a request header: only a well-formed project id. */
        rv = datos_err_set(err, p, DATOS_ECONFIG, 0, NULL,
                           "key file %s: quota_project_id '%s' is not a "
                           "project id",
                           path, datos_err_text(p, quota, strlen(quota), 64));
        goto leave;
    }
    c->client_id = apr_pstrdup(p, id);
    c->client_secret = apr_pstrdup(p, secret);
    c->refresh_token = apr_pstrdup(p, refresh);
    c->quota_project = quota ? apr_pstrdup(p, quota) : NULL;
    c->key_path = apr_pstrdup(p, path);
    c->describe = apr_psprintf(p, "user credentials (%s)", path);

leave:
    return rv;
}

static void json_wipe(json_t *j, const char *key)
{
    json_t *v = json_object_get(j, key);

    if (json_is_string(v)) {
        OPENSSL_cleanse((void *)json_string_value(v), json_string_length(v));
    }
}

static apr_status_t load_key_file(apr_pool_t *p, datos_creds_t *c,
                                  const char *path, datos_err_t *err)
{
    apr_status_t rv;
    char *buf = NULL;
    apr_size_t len = 0;
    json_t *j = NULL;
    json_error_t jerr;
    const char *type;

    rv = read_key_file(p, path, &buf, &len, err);
    if (rv != APR_SUCCESS) {
        goto leave;
    }
    /* jansson's message quotes the text near the error, which here could
     * be part of the private key: only the position is reported. A
     * duplicate key is the exception: the text quoted is the key's name
     * (the lexer stops right after it), never a value. */
    j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!j && json_error_code(&jerr) == json_error_duplicate_key) {
        rv = datos_err_set(err, p, DATOS_ECONFIG, 0, NULL,
                           "key file %s: %s (line %d, column %d)", path,
                           datos_err_text(p, jerr.text, strlen(jerr.text), 120),
                           jerr.line, jerr.column);
        goto leave;
    }
    if (!j) {
        rv = datos_err_set(err, p, DATOS_ECONFIG, 0, NULL,
                           "key file %s is not valid JSON (line %d, column "
                           "%d)",
                           path, jerr.line, jerr.column);
        goto leave;
    }
    if (!json_is_object(j)) {
        rv = datos_err_set(err, p, DATOS_ECONFIG, 0, NULL,
                           "key file %s is not a JSON object", path);
        goto leave;
    }
    type = datos_json_str(j, "type");
    if (!type) {
        rv = datos_err_set(err, p, DATOS_ECONFIG, 0, NULL,
                           "key file %s has no \"type\": expected a "
                           "service-account key (\"type\": "
                           "\"service_account\")",
                           path);
        goto leave;
    }
    if (!strcmp(type, "service_account")) {
        rv = service_account(p, c, j, path, err);
    }
    else if (!strcmp(type, "authorized_user") && c->allow_user) {
        rv = authorized_user(p, c, j, path, err);
    }
    else {
        rv = datos_err_set(err, p, DATOS_ECONFIG, 0, NULL,
                           "key file %s holds credentials of type \"%s\"; "
                           "only service-account keys (\"service_account\") "
                           "%sare supported",
                           path, datos_err_text(p, type, strlen(type), 64),
                           c->allow_user ? "and user credentials "
                                           "(\"authorized_user\") "
                                         : "");
    }

leave:
    if (j) {
        /* The secrets inside jansson's copy are wiped before it is freed. */
        json_wipe(j, "private_key");
        json_wipe(j, "client_secret");
        json_wipe(j, "refresh_token");
        json_decref(j);
    }
    if (buf) {
        OPENSSL_cleanse(buf, len);
        free(buf);
    }
    return rv;
}

/* The gcloud well-known file: $CLOUDSDK_CONFIG, else ~/.config/gcloud.
 * NULL when there is no home to look in. */
static const char *well_known_path(apr_pool_t *p)
{
    const char *dir = getenv("CLOUDSDK_CONFIG");
    const char *home = getenv("HOME");
    char *pwhome = NULL;

    if (dir && *dir) {
        return apr_pstrcat(p, dir, "/" WELL_KNOWN_FILE, NULL);
    }
    if (!home || !*home) {
        char *user = NULL;
        if (apr_uid_name_get(&user, (apr_uid_t)geteuid(), p) != APR_SUCCESS
            || apr_uid_homepath_get(&pwhome, user, p) != APR_SUCCESS) {
            return NULL;
        }
        home = pwhome;
    }
    return apr_pstrcat(p, home, "/.config/gcloud/" WELL_KNOWN_FILE, NULL);
}

apr_status_t datos_creds_load(apr_pool_t *p, const char *spec,
                              const char *const *scopes, int flags,
                              datos_creds_t **out, datos_err_t *err)
{
    apr_status_t rv = APR_SUCCESS;
    datos_creds_t *c;
    const char *path = NULL, *env = NULL, *wk = NULL;
    datos_err_t kerr = {0};

    c = apr_pcalloc(p, sizeof(*c));
    c->pool = p;
    c->scopes = scopes_join(p, scopes);
    c->allow_insecure = (flags & DATOS_CREDS_ALLOW_INSECURE) != 0;
    c->allow_user = (flags & DATOS_CREDS_ALLOW_USER) != 0;
    apr_pool_cleanup_register(p, c, creds_cleanup, apr_pool_cleanup_null);

    if (!spec || !*spec) {
        /* Application Default Credentials: a set variable, then an
         * existing well-known file, is the answer even when unusable (no
         * silent fall-through to other credentials). */
        struct stat st;

        env = getenv("GOOGLE_APPLICATION_CREDENTIALS");
        if (env && *env) {
            path = env;
        }
        else if ((wk = well_known_path(p)) != NULL
                 && (stat(wk, &st) == 0
                     || (errno != ENOENT && errno != ENOTDIR))) {
            path = wk;
        }
        else {
            c->kind = DATOS_CREDS_METADATA;
        }
    }
    else if (!strcmp(spec, "metadata")) {
        c->kind = DATOS_CREDS_METADATA;
    }
    else if (!strcmp(spec, "none")) {
        c->kind = DATOS_CREDS_NONE;
        c->describe = "none";
    }
    else {
        path = spec;
    }

    if (path) {
        rv = load_key_file(p, c, path, err);
        if (rv != APR_SUCCESS) {
            if (path == env) {
                datos_err_prefix(err, p, "GOOGLE_APPLICATION_CREDENTIALS: ");
            }
            else if (path == wk) {
                datos_err_prefix(err, p,
                                 "the gcloud application default "
                                 "credentials file: ");
            }
            goto leave;
        }
    }
    else if (c->kind == DATOS_CREDS_METADATA) {
        const char *host = getenv("GCE_METADATA_HOST");
        if (!host || !*host) {
            host = "metadata.google.internal";
        }
        c->md_base = apr_pstrcat(p, "http://", host, NULL);
        rv = datos_http_check_url(p, c->md_base, 0, 1, &kerr);
        if (rv != APR_SUCCESS) {
            /* Only GCE_METADATA_HOST can make it fail, and only by its
             * form: insecure http would not help, so no reason is kept. */
            rv = datos_err_set(err, p, DATOS_ECONFIG, 0, NULL,
                               "metadata server address %s "
                               "(GCE_METADATA_HOST) is not usable: %s",
                               datos_err_text(p, host, strlen(host), 100),
                               kerr.message);
            goto leave;
        }
        c->describe = apr_psprintf(p, "metadata server %s", host);
    }
    *out = c;

leave:
    return rv;
}

datos_creds_kind_t datos_creds_kind(const datos_creds_t *creds)
{
    return creds->kind;
}

const char *datos_creds_describe(const datos_creds_t *creds)
{
    return creds->describe;
}

const char *datos_creds_key_project(const datos_creds_t *creds)
{
    return creds->kind == DATOS_CREDS_KEYFILE ? creds->project_id : NULL;
}

const char *datos_creds_quota_project(const datos_creds_t *creds)
{
    return creds->kind == DATOS_CREDS_USER ? creds->quota_project : NULL;
}

/* Registered after the mutex, so it runs before the mutex goes: a thread
 * still refreshing finishes before the token is wiped. */
static apr_status_t creds_child_cleanup(void *data)
{
    datos_creds_t *c = data;

    creds_lock(c);
    token_forget(c);
    creds_unlock(c);
    return APR_SUCCESS;
}

apr_status_t datos_creds_child_init(datos_creds_t *creds, apr_pool_t *pchild)
{
    apr_status_t rv;

    /* A token minted before fork is shared with siblings and the parent;
     * each process keeps its own. */
    token_forget(creds);
    rv = datos_mutex_create(&creds->mutex, pchild);
    if (rv != APR_SUCCESS) {
        goto leave;
    }
    /* The credentials' pool outlives the child (httpd: pconf), so the
     * token would otherwise stay in memory until the process is gone. */
    apr_pool_cleanup_register(pchild, creds, creds_child_cleanup,
                              apr_pool_cleanup_null);

leave:
    return rv;
}

/* -------------------------------------------------------------- tokens */

static int token_chars_ok(const char *s, apr_size_t len)
{
    apr_size_t i;

    for (i = 0; i < len; i++) {
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f) {
            return 0;
        }
    }
    return len > 0;
}

apr_status_t datos_token_parse(apr_pool_t *p, int http_status, const char *body,
                               apr_size_t len, const char **token,
                               apr_interval_time_t *expires_in,
                               datos_err_t *err)
{
    apr_status_t rv = APR_SUCCESS;
    json_t *j = NULL, *v;
    json_error_t jerr;
    apr_int64_t secs = 0;
    const char *type;

    memset(&jerr, 0, sizeof(jerr));

    if (http_status < 200 || http_status > 299) {
        rv = datos_google_classify(p, DATOS_GOOGLE_TOKEN, http_status, body,
                                   len, 0, err);
        goto leave;
    }
    /* Not through datos_json_parse: jansson's message quotes the text near
     * the error, which in a token answer may be the token. */
    j = len ? json_loadb(body, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr)
            : NULL;
    if (!j) {
        rv = datos_err_set(err, p, DATOS_EMALFORMED, http_status, NULL,
                           len ? "token answer is not JSON (line %d, column %d)"
                               : "token answer is empty",
                           jerr.line, jerr.column);
        goto leave;
    }
    if (!json_is_object(j)) {
        rv = datos_err_set(err, p, DATOS_EMALFORMED, http_status, NULL,
                           "token answer is not a JSON object");
        goto leave;
    }
    v = json_object_get(j, "access_token");
    if (!json_is_string(v)
        || !token_chars_ok(json_string_value(v), json_string_length(v))) {
        rv = datos_err_set(err, p, DATOS_EMALFORMED, http_status, NULL,
                           "token answer has %s access_token",
                           v ? "a malformed" : "no");
        goto leave;
    }
    if (datos_json_int64(j, "expires_in", &secs) != APR_SUCCESS || secs <= 0
        || secs > APR_INT64_C(10) * 365 * 86400) {
        rv = datos_err_set(err, p, DATOS_EMALFORMED, http_status, NULL,
                           "token answer has %s expires_in",
                           json_object_get(j, "expires_in") ? "a malformed"
                                                            : "no");
        goto leave;
    }
    type = datos_json_str(j, "token_type");
    if (!type || strcasecmp(type, "Bearer")) {
        rv = datos_err_set(err, p, DATOS_EMALFORMED, http_status, NULL,
                           "token answer has token_type %s, not Bearer",
                           type ? datos_err_text(p, type, strlen(type), 32)
                                : "missing");
        goto leave;
    }
    *token = apr_pstrmemdup(p, json_string_value(v), json_string_length(v));
    *expires_in = apr_time_from_sec(secs);

leave:
    json_decref(j);
    return rv;
}

/* The metadata server's answers count only when they say they are its
 * (docs/google-apis.md 3.4): anything else on that address - a captive portal, a
 * proxy, a local service - must not hand out tokens or a project. Only
 * answers that would be used are judged; a refusal is classified anyway. */
static apr_status_t metadata_flavor(apr_pool_t *p, const datos_creds_t *c,
                                    const datos_http_resp_t *resp,
                                    datos_err_t *err)
{
    const char *flavor;

    if (resp->status < 200 || resp->status > 299) {
        return APR_SUCCESS;
    }
    flavor = apr_table_get(resp->headers, "Metadata-Flavor");
    if (flavor && !strcmp(flavor, "Google")) {
        return APR_SUCCESS;
    }
    return datos_err_set(err, p, DATOS_EAUTH, resp->status, NULL,
                         "the answer from %s has no Metadata-Flavor: Google "
                         "header: it is not the metadata server, and is not "
                         "trusted",
                         c->md_base);
}

static apr_status_t fetch_token(datos_creds_t *c, datos_http_t *http,
                                apr_pool_t *p, apr_time_t deadline,
                                const char **token,
                                apr_interval_time_t *expires_in,
                                datos_err_t *err)
{
    apr_status_t rv;
    datos_http_req_t req;
    datos_http_resp_t *resp = NULL;
    const char *where;

    memset(&req, 0, sizeof(req));
    req.deadline = deadline;
    req.headers = apr_array_make(p, 1, sizeof(const char *));
    if (c->kind == DATOS_CREDS_KEYFILE) {
        const char *jwt;
        rv = datos_jwt_assertion(p, c->pkey, c->key_id, c->client_email,
                                 c->scopes, c->token_uri, apr_time_now(), &jwt,
                                 err);
        if (rv != APR_SUCCESS) {
            goto leave;
        }
        req.method = "POST";
        req.url = c->token_uri;
        req.body = apr_pstrcat(p,
                               "grant_type=urn%3Aietf%3Aparams%3Aoauth"
                               "%3Agrant-type%3Ajwt-bearer&assertion=",
                               datos_http_urlencode(p, jwt), NULL);
        req.body_len = strlen(req.body);
        req.content_type = "application/x-www-form-urlencoded";
        req.allow_insecure = c->allow_insecure;
        where = c->token_uri;
    }
    else if (c->kind == DATOS_CREDS_USER) {
        /* The refresh-token grant (RFC 6749 6); the scopes are the ones
         * the user consented to at login, so none are sent. */
        req.method = "POST";
        req.url = c->token_uri;
        req.body = apr_pstrcat(
            p, "grant_type=refresh_token&client_id=",
            datos_http_urlencode(p, c->client_id),
            "&client_secret=", datos_http_urlencode(p, c->client_secret),
            "&refresh_token=", datos_http_urlencode(p, c->refresh_token), NULL);
        req.body_len = strlen(req.body);
        req.content_type = "application/x-www-form-urlencoded";
        req.allow_insecure = c->allow_insecure;
        where = c->token_uri;
    }
    else {
        req.method = "GET";
        req.url = apr_pstrcat(p, c->md_base, MD_TOKEN_PATH, "?scopes=",
                              datos_http_urlencode(p, scopes_csv(p, c->scopes)),
                              NULL);
        req.metadata = 1;
        APR_ARRAY_PUSH(req.headers, const char *) = "Metadata-Flavor: Google";
        where = c->md_base;
    }
    rv = datos_http_perform(http, p, &req, &resp, err);
    if (rv != APR_SUCCESS) {
        goto leave;
    }
    if (c->kind == DATOS_CREDS_METADATA) {
        rv = metadata_flavor(p, c, resp, err);
    }
    if (rv == APR_SUCCESS) {
        rv = datos_token_parse(p, resp->status, resp->body, resp->body_len,
                               token, expires_in, err);
    }
    if (rv != APR_SUCCESS && err) {
        apr_interval_time_t ra = datos_http_retry_after(resp, apr_time_now());
        datos_err_prefix(err, p, "access token from %s: ", where);
        if (ra > err->retry_after) {
            err->retry_after = ra;
        }
    }

leave:
    return rv;
}

apr_status_t datos_creds_token(datos_creds_t *creds, datos_http_t *http,
                               apr_pool_t *p, apr_time_t deadline,
                               int force_refresh, const char **token,
                               datos_err_t *err)
{
    apr_status_t rv = APR_SUCCESS;
    apr_time_t start;
    apr_interval_time_t margin, expires_in = 0;
    const char *fresh = NULL;
    char *copy;

    if (creds->kind == DATOS_CREDS_NONE) {
        *token = NULL;
        return APR_SUCCESS;
    }
    /* Held across the exchange: concurrent requests wait for one refresh
     * instead of each minting a token. */
    creds_lock(creds);
    start = apr_time_now();
    if (!force_refresh && creds->token) {
        margin = creds->token_lifetime / 2;
        if (margin > REFRESH_MARGIN_MAX) {
            margin = REFRESH_MARGIN_MAX;
        }
        if (start < creds->token_expiry - margin) {
            *token = apr_pstrdup(p, creds->token);
            goto leave;
        }
    }
    rv = fetch_token(creds, http, p, deadline, &fresh, &expires_in, err);
    if (rv != APR_SUCCESS) {
        goto leave;
    }
    copy = strdup(fresh);
    if (!copy) {
        rv = datos_err_set(err, p, APR_ENOMEM, 0, NULL,
                           "out of memory storing the access token");
        goto leave;
    }
    token_forget(creds);
    creds->token = copy;
    creds->token_lifetime = expires_in;
    creds->token_expiry = start + expires_in;
    datos_log_perror(DATOS_LOG_MARK, DATOS_LOG_DEBUG, 0, p,
                     "new access token from %s, valid %" APR_INT64_T_FMT " s",
                     creds->describe, (apr_int64_t)apr_time_sec(expires_in));
    *token = fresh;

leave:
    creds_unlock(creds);
    return rv;
}

apr_status_t datos_creds_project(datos_creds_t *creds, datos_http_t *http,
                                 apr_pool_t *p, apr_time_t deadline,
                                 const char **project, datos_err_t *err)
{
    apr_status_t rv = APR_SUCCESS;
    datos_http_req_t req;
    datos_http_resp_t *resp = NULL;
    apr_size_t n, i;
    const char *b;

    if (creds->kind == DATOS_CREDS_KEYFILE) {
        *project = creds->project_id;
        return APR_SUCCESS;
    }
    if (creds->kind == DATOS_CREDS_USER) {
        *project = creds->quota_project;
        return APR_SUCCESS;
    }
    if (creds->kind != DATOS_CREDS_METADATA) {
        *project = NULL;
        return APR_SUCCESS;
    }
    creds_lock(creds);
    if (creds->md_project[0]) {
        *project = apr_pstrdup(p, creds->md_project);
        goto leave;
    }
    memset(&req, 0, sizeof(req));
    req.method = "GET";
    req.url = apr_pstrcat(p, creds->md_base, MD_PROJECT_PATH, NULL);
    req.metadata = 1;
    req.deadline = deadline;
    req.headers = apr_array_make(p, 1, sizeof(const char *));
    APR_ARRAY_PUSH(req.headers, const char *) = "Metadata-Flavor: Google";
    rv = datos_http_perform(http, p, &req, &resp, err);
    if (rv != APR_SUCCESS) {
        goto leave;
    }
    if (resp->status != 200) {
        rv = datos_google_classify(
            p, DATOS_GOOGLE_TOKEN, resp->status, resp->body, resp->body_len,
            datos_http_retry_after(resp, apr_time_now()), err);
        datos_err_prefix(err, p, "project id from %s: ", creds->md_base);
        goto leave;
    }
    rv = metadata_flavor(p, creds, resp, err);
    if (rv != APR_SUCCESS) {
        datos_err_prefix(err, p, "project id from %s: ", creds->md_base);
        goto leave;
    }
    b = resp->body;
    n = resp->body_len;
    while (n > 0 && (b[n - 1] == '\n' || b[n - 1] == '\r' || b[n - 1] == ' ')) {
        n--;
    }
    for (i = 0; i < n; i++) {
        if ((unsigned char)b[i] <= 0x20 || (unsigned char)b[i] >= 0x7f) {
            break;
        }
    }
    if (n == 0 || i < n || n >= sizeof(creds->md_project)) {
        rv = datos_err_set(err, p, DATOS_EMALFORMED, resp->status, NULL,
                           "project id from %s is not a project id",
                           creds->md_base);
        goto leave;
    }
    memcpy(creds->md_project, b, n);
    creds->md_project[n] = '\0';
    *project = apr_pstrdup(p, creds->md_project);

leave:
    creds_unlock(creds);
    return rv;
}
