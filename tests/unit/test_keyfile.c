/* test_keyfile.c - loading credentials: key file checks and the ADC order. */
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <jansson.h>

#include "dt_support.h"
#include "datos_auth.h"

static const char *key_json(apr_pool_t *p, const char *drop, const char *type)
{
    json_t *j = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:s}", "type",
        type ? type : "service_account", "project_id", "datos-test-project",
        "private_key_id", "0123456789abcdef", "private_key", dt_test_key_pem(p),
        "client_email", "loader@datos-test-project.iam.gserviceaccount.com",
        "token_uri", "https://oauth2.googleapis.com/token");
    char *s;
    const char *out;

    if (drop) {
        json_object_del(j, drop);
    }
    s = json_dumps(j, JSON_PRESERVE_ORDER);
    out = apr_pstrdup(p, s);
    free(s);
    json_decref(j);
    return out;
}

static apr_status_t load(apr_pool_t *p, const char *spec, int insecure,
                         datos_creds_t **c, datos_err_t *err)
{
    *c = NULL;
    datos_err_clear(err);
    return datos_creds_load(p, spec, NULL,
                            insecure ? DATOS_CREDS_ALLOW_INSECURE : 0, c, err);
}

static apr_status_t load_user(apr_pool_t *p, const char *spec, int flags,
                              datos_creds_t **c, datos_err_t *err)
{
    *c = NULL;
    datos_err_clear(err);
    return datos_creds_load(p, spec, datos_scopes_bigquery_pubsub, flags, c,
                            err);
}

/* What gcloud auth application-default login writes (secrets marked). */
static const char *user_json(apr_pool_t *p, const char *drop,
                             const char *token_uri, const char *quota)
{
    json_t *j = json_pack(
        "{s:s, s:s, s:s, s:s}", "client_id",
        "764086051850-6qr4p6gpi6hn506pt8ejuq83di341hur.apps.googleusercontent.com",
        "client_secret", "d-FL95Q19q7MQmFpd7hHD0Ty-SECRET", "refresh_token",
        "1//0gSECRET-refresh-token", "type", "authorized_user");
    char *s;
    const char *out;

    if (token_uri) {
        json_object_set_new(j, "token_uri", json_string(token_uri));
    }
    if (quota) {
        json_object_set_new(j, "quota_project_id", json_string(quota));
    }
    if (drop) {
        json_object_del(j, drop);
    }
    s = json_dumps(j, JSON_PRESERVE_ORDER);
    out = apr_pstrdup(p, s);
    free(s);
    json_decref(j);
    return out;
}

static void refused(apr_pool_t *p, const char *spec, const char *needle)
{
    datos_creds_t *c;
    datos_err_t err = {0};

    if (load(p, spec, 0, &c, &err) != DATOS_ECONFIG) {
        fail_msg("%s accepted", spec);
    }
    assert_null(c);
    assert_non_null(err.message);
    if (!strstr(err.message, needle)) {
        fail_msg("'%s' lacks '%s'", err.message, needle);
    }
    /* no key material in the message, whatever went wrong */
    assert_null(strstr(err.message, "BEGIN PRIVATE KEY"));
    assert_null(strstr(err.message, "MII"));
}

static void keyfile_good(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    const char *dir = dt_tmpdir(p), *path, *link;
    datos_creds_t *c;
    datos_err_t err = {0};

    path = dt_write_file(p, dir, "good.json", key_json(p, NULL, NULL),
                         strlen(key_json(p, NULL, NULL)), 0600);
    assert_int_equal(load(p, path, 0, &c, &err), APR_SUCCESS);
    assert_int_equal(datos_creds_kind(c), DATOS_CREDS_KEYFILE);
    assert_string_equal(datos_creds_key_project(c), "datos-test-project");
    assert_string_equal(
        datos_creds_describe(c),
        apr_psprintf(p,
                     "service account loader@datos-test-project."
                     "iam.gserviceaccount.com (key %s)",
                     path));
    /* read-only for the owner is fine too */
    assert_int_equal(chmod(path, 0400), 0);
    assert_int_equal(load(p, path, 0, &c, &err), APR_SUCCESS);
    /* a symlink (Kubernetes secret volumes) to a private file is fine */
    link = apr_pstrcat(p, dir, "/link.json", NULL);
    assert_int_equal(symlink(path, link), 0);
    assert_int_equal(load(p, link, 0, &c, &err), APR_SUCCESS);
}

static void keyfile_mode(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    const char *dir = dt_tmpdir(p), *k = key_json(p, NULL, NULL), *path;

    path = dt_write_file(p, dir, "k644.json", k, strlen(k), 0644);
    refused(p, path, "(mode 0644): run chmod 600");
    refused(p, path, path);
    path = dt_write_file(p, dir, "k640.json", k, strlen(k), 0640);
    refused(p, path, "mode 0640");
    path = dt_write_file(p, dir, "k604.json", k, strlen(k), 0604);
    refused(p, path, "mode 0604");
    path = dt_write_file(p, dir, "k620.json", k, strlen(k), 0620);
    refused(p, path, "group or others");
}

/* The uid httpd's children run as on Debian: a key they own could be
 * replaced or read by a compromised child. */
#define OTHER_UID 65534

static const char *uid_text(apr_pool_t *p, uid_t uid)
{
    struct passwd *pw = getpwuid(uid);
    return apr_psprintf(p, "%s (uid %u)", pw ? pw->pw_name : "?",
                        (unsigned)uid);
}

static void keyfile_owner(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    const char *dir, *path, *link, *good, *goodlink, *want;
    datos_creds_t *c;
    datos_err_t err = {0};

    if (geteuid() != 0) {
        skip(); /* chown to another user needs root */
    }
    dir = dt_tmpdir(p);
    want = uid_text(p, OTHER_UID);
    path = dt_write_key_file(p, dir, NULL);
    assert_int_equal(chown(path, OTHER_UID, OTHER_UID), 0);
    /* mode 0600, owned by the children's user: refused, naming the owner */
    refused(p, path, apr_psprintf(p, "owned by %s", want));
    refused(p, path, path);
    refused(p, path, uid_text(p, 0));

    /* a symlink is judged by the file it leads to */
    link = apr_pstrcat(p, dir, "/link.json", NULL);
    assert_int_equal(symlink(path, link), 0);
    refused(p, link, apr_psprintf(p, "owned by %s", want));

    /* the link's own owner does not matter: only the target can be read */
    good = dt_write_file(p, dir, "good.json", key_json(p, NULL, NULL),
                         strlen(key_json(p, NULL, NULL)), 0600);
    goodlink = apr_pstrcat(p, dir, "/goodlink.json", NULL);
    assert_int_equal(symlink(good, goodlink), 0);
    assert_int_equal(lchown(goodlink, OTHER_UID, OTHER_UID), 0);
    assert_int_equal(load(p, goodlink, 0, &c, &err), APR_SUCCESS);

    /* the same rule for Application Default Credentials */
    setenv("GOOGLE_APPLICATION_CREDENTIALS", path, 1);
    assert_int_equal(load(p, NULL, 0, &c, &err), DATOS_ECONFIG);
    assert_null(c);
    if (!strstr(err.message, apr_psprintf(p, "owned by %s", want))
        || !strstr(err.message, "GOOGLE_APPLICATION_CREDENTIALS")) {
        fail_msg("'%s'", err.message);
    }
    unsetenv("GOOGLE_APPLICATION_CREDENTIALS");

    /* the file check on its own, as the module runs it on the directive */
    datos_err_clear(&err);
    assert_int_equal(datos_creds_check_key_file(p, path, &err), DATOS_ECONFIG);
    assert_non_null(strstr(err.message, want));
    datos_err_clear(&err);
    assert_int_equal(datos_creds_check_key_file(p, goodlink, &err),
                     APR_SUCCESS);
}

static void keyfile_symlink_to_bad_file(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    const char *dir = dt_tmpdir(p), *k = key_json(p, NULL, NULL), *path, *link;
    datos_err_t err = {0};

    path = dt_write_file(p, dir, "open.json", k, strlen(k), 0644);
    link = apr_pstrcat(p, dir, "/link.json", NULL);
    assert_int_equal(symlink(path, link), 0);
    refused(p, link, "(mode 0644)");
    datos_err_clear(&err);
    assert_int_equal(datos_creds_check_key_file(p, link, &err), DATOS_ECONFIG);
    assert_non_null(strstr(err.message, "mode 0644"));

    link = apr_pstrcat(p, dir, "/dirlink.json", NULL);
    assert_int_equal(symlink(dir, link), 0);
    refused(p, link, "not a regular file");
    link = apr_pstrcat(p, dir, "/dangling.json", NULL);
    assert_int_equal(symlink(apr_pstrcat(p, dir, "/gone.json", NULL), link), 0);
    refused(p, link, "cannot open key file");
}

static void keyfile_not_regular_or_missing(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    const char *dir = dt_tmpdir(p);

    refused(p, dir, "not a regular file");
    refused(p, apr_pstrcat(p, dir, "/nope.json", NULL), "cannot open key file");
    refused(p, dt_write_file(p, dir, "empty.json", "", 0, 0600), "empty");
}

static void keyfile_wrong_type(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    const char *dir = dt_tmpdir(p);
    static const char *const types[] = {
        "authorized_user",
        "external_account",
        "impersonated_service_account",
        "external_account_authorized_user",
        "gdch_service_account",
    };
    size_t i;

    for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        const char *k = key_json(p, NULL, types[i]);
        const char *path =
            dt_write_file(p, dir, apr_pstrcat(p, types[i], ".json", NULL), k,
                          strlen(k), 0600);
        refused(
            p, path,
            apr_psprintf(p, "of type \"%s\"; only service-account", types[i]));
    }
    {
        const char *k = key_json(p, "type", NULL);
        refused(p, dt_write_file(p, dir, "notype.json", k, strlen(k), 0600),
                "has no \"type\"");
    }
}

static void keyfile_missing_fields(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    const char *dir = dt_tmpdir(p);
    static const char *const fields[] = {"client_email", "private_key",
                                         "private_key_id"};
    size_t i;

    for (i = 0; i < 3; i++) {
        const char *k = key_json(p, fields[i], NULL);
        const char *path =
            dt_write_file(p, dir, apr_pstrcat(p, fields[i], ".json", NULL), k,
                          strlen(k), 0600);
        refused(p, path, apr_pstrcat(p, "lacks ", fields[i], NULL));
    }
}

static void keyfile_bad_content(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    const char *dir = dt_tmpdir(p), *k;
    /* A syntax error right inside the key: jansson's own message would
     * quote the text around it. */
    static const char broken[] =
        "{\"type\": \"service_account\",\n \"private_key\": \"-----BEGIN PRIVATE KEY-----\\n"
        "MIIEvQIBADANBgkqhkiG9w0B SECRETKEYBYTES \\q\"}";
    static const char badpem[] =
        "{\"type\":\"service_account\",\"client_email\":\"a@b\",\"private_key_id\":\"k\","
        "\"private_key\":\"-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANSECRET\\n-----END PRIVATE KEY-----\\n\"}";

    refused(p,
            dt_write_file(p, dir, "broken.json", broken, strlen(broken), 0600),
            "not valid JSON (line 2");
    refused(p,
            dt_write_file(p, dir, "broken.json", broken, strlen(broken), 0600),
            "column");
    {
        datos_creds_t *c;
        datos_err_t err = {0};
        const char *path =
            dt_write_file(p, dir, "broken.json", broken, strlen(broken), 0600);
        load(p, path, 0, &c, &err);
        assert_null(strstr(err.message, "SECRET"));
        path =
            dt_write_file(p, dir, "badpem.json", badpem, strlen(badpem), 0600);
        assert_int_equal(load(p, path, 0, &c, &err), DATOS_ECONFIG);
        assert_non_null(strstr(err.message, "private_key"));
        assert_null(strstr(err.message, "SECRET"));
    }
    refused(p, dt_write_file(p, dir, "arr.json", "[1]", 3, 0600),
            "not a JSON object");
    /* a duplicate key is named as such; the key's name may be quoted, its
     * value never */
    k = "{\"type\":\"service_account\",\"type\":\"authorized_user\"}";
    refused(p, dt_write_file(p, dir, "dup.json", k, strlen(k), 0600),
            "duplicate object key near '\"type\"' (line 1");
    {
        static const char dup[] =
            "{\"type\":\"service_account\",\"client_email\":\"a@b\",\n"
            "\"private_key\":\"-----BEGIN PRIVATE KEY-----\\nMIIEvQ SECRETONE\",\n"
            "\"private_key\":\"-----BEGIN PRIVATE KEY-----\\nMIIEvQ SECRETTWO\"}";
        datos_creds_t *c;
        datos_err_t err = {0};

        assert_int_equal(
            load(p, dt_write_file(p, dir, "dup2.json", dup, strlen(dup), 0600),
                 0, &c, &err),
            DATOS_ECONFIG);
        assert_non_null(strstr(err.message, "duplicate object key"));
        assert_non_null(strstr(err.message, "private_key"));
        assert_non_null(strstr(err.message, "line 3"));
        assert_null(strstr(err.message, "not valid JSON"));
        assert_null(strstr(err.message, "SECRET"));
        assert_null(strstr(err.message, "BEGIN"));
    }
}

static void keyfile_token_uri_rule(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    const char *dir = dt_tmpdir(p), *path;
    datos_creds_t *c;
    datos_err_t err = {0};

    path = dt_write_key_file(p, dir, "http://oauth.example.com/token");
    refused(p, path, "token_uri refused");
    assert_int_equal(load(p, path, 1, &c, &err), APR_SUCCESS); /* opted in */
    path = dt_write_key_file(p, dir, "http://127.0.0.1:1/token");
    assert_int_equal(load(p, path, 0, &c, &err), APR_SUCCESS);
    path = dt_write_key_file(p, dir, "ftp://127.0.0.1/token");
    refused(p, path, "token_uri refused");
    /* a malformed token_uri is refused for its form, which insecure http
     * would not change: no pointer to that setting */
    path = dt_write_key_file(p, dir,
                             "https://oauth2.googleapis.com:99999999999/token");
    refused(p, path, "1 to 65535");
    assert_int_equal(load(p, path, 1, &c, &err), DATOS_ECONFIG);
    assert_null(err.reason);
    path =
        dt_write_key_file(p, dir, "https://user@oauth2.googleapis.com/token");
    refused(p, path, "token_uri refused");
    assert_int_equal(load(p, path, 1, &c, &err), DATOS_ECONFIG);
    assert_null(err.reason);
    assert_null(strstr(err.message, "insecure"));
    path = dt_write_key_file(p, dir, "http://[127.0.0.1]:8080/token");
    refused(p, path, "IPv6");
    /* plain http to a remote host: the one refusal insecure http lifts */
    path = dt_write_key_file(p, dir, "http://oauth.example.com/token");
    assert_int_equal(load(p, path, 0, &c, &err), DATOS_ECONFIG);
    assert_non_null(err.reason);
    assert_string_equal(err.reason, DATOS_REASON_PLAIN_HTTP);
    /* absent: Google's default */
    path = dt_write_key_file(p, dir, NULL);
    assert_int_equal(load(p, path, 0, &c, &err), APR_SUCCESS);
}

static void adc_order(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    const char *dir = dt_tmpdir(p), *path;
    datos_creds_t *c;
    datos_err_t err = {0};

    path = dt_write_key_file(p, dir, NULL);
    setenv("GOOGLE_APPLICATION_CREDENTIALS", path, 1);
    assert_int_equal(load(p, NULL, 0, &c, &err), APR_SUCCESS);
    assert_int_equal(datos_creds_kind(c), DATOS_CREDS_KEYFILE);
    assert_int_equal(load(p, "", 0, &c, &err), APR_SUCCESS);
    assert_int_equal(datos_creds_kind(c), DATOS_CREDS_KEYFILE);

    /* set but unusable: an error, never a fall-through to the metadata server */
    setenv("GOOGLE_APPLICATION_CREDENTIALS",
           apr_pstrcat(p, dir, "/missing.json", NULL), 1);
    assert_int_equal(load(p, NULL, 0, &c, &err), DATOS_ECONFIG);
    assert_non_null(strstr(err.message, "missing.json"));

    unsetenv("GOOGLE_APPLICATION_CREDENTIALS");
    setenv("GCE_METADATA_HOST", "127.0.0.1:8999", 1);
    assert_int_equal(load(p, NULL, 0, &c, &err), APR_SUCCESS);
    assert_int_equal(datos_creds_kind(c), DATOS_CREDS_METADATA);
    assert_string_equal(datos_creds_describe(c),
                        "metadata server 127.0.0.1:8999");
    assert_null(datos_creds_key_project(c));
    /* a malformed metadata host is named with what is wrong with it */
    setenv("GCE_METADATA_HOST", "127.0.0.1:99999999999", 1);
    assert_int_equal(load(p, NULL, 0, &c, &err), DATOS_ECONFIG);
    assert_non_null(strstr(err.message, "GCE_METADATA_HOST"));
    assert_non_null(strstr(err.message, "1 to 65535"));
    assert_null(err.reason);
    setenv("GCE_METADATA_HOST", "[127.0.0.1]:8999", 1);
    assert_int_equal(load(p, "metadata", 0, &c, &err), DATOS_ECONFIG);
    assert_non_null(strstr(err.message, "IPv6"));
    unsetenv("GCE_METADATA_HOST");
    assert_int_equal(load(p, "metadata", 0, &c, &err), APR_SUCCESS);
    assert_string_equal(datos_creds_describe(c),
                        "metadata server metadata.google.internal");

    assert_int_equal(load(p, "none", 0, &c, &err), APR_SUCCESS);
    assert_int_equal(datos_creds_kind(c), DATOS_CREDS_NONE);
    assert_string_equal(datos_creds_describe(c), "none");
    {
        const char *tok = "x";
        assert_int_equal(datos_creds_token(c, NULL, p, 0, 0, &tok, &err),
                         APR_SUCCESS);
        assert_null(tok);
        assert_int_equal(datos_creds_project(c, NULL, p, 0, &tok, &err),
                         APR_SUCCESS);
        assert_null(tok);
    }
}

/* authorized_user credentials: taken only when the caller allows them
 * (the loader), refused by name otherwise (the module). */
static void keyfile_authorized_user(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    const char *dir = dt_tmpdir(p), *path, *proj;
    datos_creds_t *c;
    datos_err_t err = {0};
    const char *k;
    static const char *const fields[] = {"client_id", "client_secret",
                                         "refresh_token"};
    size_t i;

    k = user_json(p, NULL, NULL, "quota-proj-1");
    path = dt_write_file(p, dir, "adc.json", k, strlen(k), 0600);
    assert_int_equal(load_user(p, path, DATOS_CREDS_ALLOW_USER, &c, &err),
                     APR_SUCCESS);
    assert_int_equal(datos_creds_kind(c), DATOS_CREDS_USER);
    assert_string_equal(datos_creds_describe(c),
                        apr_psprintf(p, "user credentials (%s)", path));
    assert_string_equal(datos_creds_quota_project(c), "quota-proj-1");
    assert_null(datos_creds_key_project(c));
    assert_int_equal(datos_creds_project(c, NULL, p, 0, &proj, &err),
                     APR_SUCCESS);
    assert_string_equal(proj, "quota-proj-1");

    /* the module's load: refused, naming the type */
    assert_int_equal(load_user(p, path, 0, &c, &err), DATOS_ECONFIG);
    assert_null(c);
    assert_non_null(strstr(
        err.message, "of type \"authorized_user\"; only service-account"));
    assert_null(strstr(err.message, "SECRET"));
    /* the loader's error for other types names both it takes */
    k = key_json(p, NULL, "external_account");
    assert_int_equal(
        load_user(p, dt_write_file(p, dir, "ext.json", k, strlen(k), 0600),
                  DATOS_CREDS_ALLOW_USER, &c, &err),
        DATOS_ECONFIG);
    assert_non_null(strstr(err.message, "\"external_account\""));
    assert_non_null(
        strstr(err.message, "and user credentials (\"authorized_user\")"));

    /* without a quota project: no project, no header */
    k = user_json(p, NULL, NULL, NULL);
    path = dt_write_file(p, dir, "noquota.json", k, strlen(k), 0600);
    assert_int_equal(load_user(p, path, DATOS_CREDS_ALLOW_USER, &c, &err),
                     APR_SUCCESS);
    assert_null(datos_creds_quota_project(c));
    assert_int_equal(datos_creds_project(c, NULL, p, 0, &proj, &err),
                     APR_SUCCESS);
    assert_null(proj);

    /* missing fields are named, the secrets never shown */
    for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        k = user_json(p, fields[i], NULL, NULL);
        path = dt_write_file(p, dir, "missing.json", k, strlen(k), 0600);
        assert_int_equal(load_user(p, path, DATOS_CREDS_ALLOW_USER, &c, &err),
                         DATOS_ECONFIG);
        assert_non_null(
            strstr(err.message, apr_psprintf(p, "lacks %s", fields[i])));
        assert_null(strstr(err.message, "SECRET"));
    }
    /* the quota project becomes a header: only a project id */
    k = user_json(p, NULL, NULL, "Bad Project\r\nX: y");
    path = dt_write_file(p, dir, "quota.json", k, strlen(k), 0600);
    assert_int_equal(load_user(p, path, DATOS_CREDS_ALLOW_USER, &c, &err),
                     DATOS_ECONFIG);
    assert_non_null(strstr(err.message, "quota_project_id"));
    /* token_uri under the transport rule, as for keys */
    k = user_json(p, NULL, "http://oauth.example.com/token", NULL);
    path = dt_write_file(p, dir, "uri.json", k, strlen(k), 0600);
    assert_int_equal(load_user(p, path, DATOS_CREDS_ALLOW_USER, &c, &err),
                     DATOS_ECONFIG);
    assert_string_equal(err.reason, DATOS_REASON_PLAIN_HTTP);
    assert_int_equal(
        load_user(p, path, DATOS_CREDS_ALLOW_USER | DATOS_CREDS_ALLOW_INSECURE,
                  &c, &err),
        APR_SUCCESS);
    /* and the file checks of keys: mode */
    k = user_json(p, NULL, NULL, NULL);
    path = dt_write_file(p, dir, "open.json", k, strlen(k), 0640);
    assert_int_equal(load_user(p, path, DATOS_CREDS_ALLOW_USER, &c, &err),
                     DATOS_ECONFIG);
    assert_non_null(strstr(err.message, "chmod 600"));
}

/* ADC: GOOGLE_APPLICATION_CREDENTIALS, then the gcloud well-known file
 * ($CLOUDSDK_CONFIG, else ~/.config/gcloud), then the metadata server. */
static void adc_well_known_file(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    const char *cfg = dt_tmpdir(p), *home = dt_tmpdir(p), *other = dt_tmpdir(p);
    const char *saved_home =
        getenv("HOME") ? apr_pstrdup(p, getenv("HOME")) : NULL;
    const char *k, *wk, *gac;
    datos_creds_t *c;
    datos_err_t err = {0};

    unsetenv("GOOGLE_APPLICATION_CREDENTIALS");
    setenv("GCE_METADATA_HOST", "127.0.0.1:8999", 1);
    setenv("CLOUDSDK_CONFIG", cfg, 1);
    /* nothing there: the metadata server */
    assert_int_equal(load_user(p, NULL, DATOS_CREDS_ALLOW_USER, &c, &err),
                     APR_SUCCESS);
    assert_int_equal(datos_creds_kind(c), DATOS_CREDS_METADATA);

    /* a service-account key there */
    k = key_json(p, NULL, NULL);
    wk = dt_write_file(p, cfg, "application_default_credentials.json", k,
                       strlen(k), 0600);
    assert_int_equal(load_user(p, NULL, 0, &c, &err), APR_SUCCESS);
    assert_int_equal(datos_creds_kind(c), DATOS_CREDS_KEYFILE);
    assert_non_null(strstr(datos_creds_describe(c), wk));

    /* GOOGLE_APPLICATION_CREDENTIALS comes first */
    gac = dt_write_key_file(p, other, NULL);
    setenv("GOOGLE_APPLICATION_CREDENTIALS", gac, 1);
    assert_int_equal(load_user(p, NULL, 0, &c, &err), APR_SUCCESS);
    assert_non_null(strstr(datos_creds_describe(c), gac));
    unsetenv("GOOGLE_APPLICATION_CREDENTIALS");

    /* what gcloud auth application-default login leaves: the loader takes
     * it, the module refuses it by name, and neither falls through to the
     * metadata server */
    k = user_json(p, NULL, NULL, "quota-proj-1");
    dt_write_file(p, cfg, "application_default_credentials.json", k, strlen(k),
                  0600);
    assert_int_equal(load_user(p, NULL, DATOS_CREDS_ALLOW_USER, &c, &err),
                     APR_SUCCESS);
    assert_int_equal(datos_creds_kind(c), DATOS_CREDS_USER);
    assert_int_equal(load_user(p, "", 0, &c, &err), DATOS_ECONFIG);
    assert_non_null(strstr(
        err.message, "the gcloud application default credentials file: "));
    assert_non_null(strstr(err.message, "\"authorized_user\""));
    assert_non_null(strstr(err.message, wk));
    /* unusable (readable by others): an error, no fall-through */
    assert_int_equal(chmod(wk, 0644), 0);
    assert_int_equal(load_user(p, NULL, DATOS_CREDS_ALLOW_USER, &c, &err),
                     DATOS_ECONFIG);
    assert_non_null(strstr(err.message, "group or others"));
    /* explicit "metadata" is not ADC: the file is not looked at */
    assert_int_equal(load_user(p, "metadata", 0, &c, &err), APR_SUCCESS);
    assert_int_equal(datos_creds_kind(c), DATOS_CREDS_METADATA);

    /* without CLOUDSDK_CONFIG: $HOME/.config/gcloud */
    unsetenv("CLOUDSDK_CONFIG");
    setenv("HOME", home, 1);
    assert_int_equal(load_user(p, NULL, DATOS_CREDS_ALLOW_USER, &c, &err),
                     APR_SUCCESS);
    assert_int_equal(datos_creds_kind(c), DATOS_CREDS_METADATA);
    assert_int_equal(dt_system(p, "mkdir -p %s/.config/gcloud", home), 0);
    k = user_json(p, NULL, NULL, NULL);
    wk = dt_write_file(p, apr_pstrcat(p, home, "/.config/gcloud", NULL),
                       "application_default_credentials.json", k, strlen(k),
                       0600);
    assert_int_equal(load_user(p, NULL, DATOS_CREDS_ALLOW_USER, &c, &err),
                     APR_SUCCESS);
    assert_int_equal(datos_creds_kind(c), DATOS_CREDS_USER);
    assert_non_null(strstr(datos_creds_describe(c), wk));

    if (saved_home) {
        setenv("HOME", saved_home, 1);
    }
    else {
        unsetenv("HOME");
    }
    setenv("CLOUDSDK_CONFIG", "/nonexistent/datos-test", 1);
    unsetenv("GCE_METADATA_HOST");
}

static int group_setup(void **state)
{
    /* no gcloud well-known file from the environment the tests run in */
    setenv("CLOUDSDK_CONFIG", "/nonexistent/datos-test", 1);
    return dt_group_setup(state);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        DT_TEST(keyfile_good),
        DT_TEST(keyfile_mode),
        DT_TEST(keyfile_owner),
        DT_TEST(keyfile_symlink_to_bad_file),
        DT_TEST(keyfile_not_regular_or_missing),
        DT_TEST(keyfile_wrong_type),
        DT_TEST(keyfile_missing_fields),
        DT_TEST(keyfile_bad_content),
        DT_TEST(keyfile_token_uri_rule),
        DT_TEST(adc_order),
        DT_TEST(keyfile_authorized_user),
        DT_TEST(adc_well_known_file),
    };
    return cmocka_run_group_tests(tests, group_setup, dt_group_teardown);
}
