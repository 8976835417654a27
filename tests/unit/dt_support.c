/* dt_support.c - pools, temp files and fixtures for the unit tests. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <apr_file_io.h>
#include <jansson.h>

#include "dt_support.h"

int dt_group_setup(void **state)
{
    (void)state;
    return apr_initialize() == APR_SUCCESS ? 0 : -1;
}

int dt_group_teardown(void **state)
{
    (void)state;
    apr_terminate();
    return 0;
}

int dt_setup(void **state)
{
    apr_pool_t *p;

    if (apr_pool_create(&p, NULL) != APR_SUCCESS) {
        return -1;
    }
    *state = p;
    return 0;
}

int dt_teardown(void **state)
{
    apr_pool_destroy(DT_POOL(state));
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Each test's files go when its pool does. */
static apr_status_t tmpdir_cleanup(void *data)
{
    nftw((const char *)data, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return APR_SUCCESS;
}

const char *dt_tmpdir(apr_pool_t *p)
{
    static unsigned counter;
    const char *base = getenv("DATOS_TEST_TMP");
    char *dir;

    if (!base || !*base) {
        base = "/tmp";
    }
    assert_int_equal(apr_dir_make_recursive(base, APR_FPROT_OS_DEFAULT, p),
                     APR_SUCCESS);
    dir = apr_psprintf(p, "%s/dt-%ld-%u", base, (long)getpid(), ++counter);
    assert_int_equal(apr_dir_make_recursive(dir, APR_FPROT_OS_DEFAULT, p),
                     APR_SUCCESS);
    apr_pool_cleanup_register(p, dir, tmpdir_cleanup, apr_pool_cleanup_null);
    return dir;
}

const char *dt_write_file(apr_pool_t *p, const char *dir, const char *name,
                          const char *content, apr_size_t len, int mode)
{
    const char *path = apr_pstrcat(p, dir, "/", name, NULL);
    int fd;

    unlink(path);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, len), (ssize_t)len);
    close(fd);
    /* chmod after writing: the umask must not decide the test's mode. */
    assert_int_equal(chmod(path, (mode_t)mode), 0);
    return path;
}

char *dt_read_file(apr_pool_t *p, const char *path, apr_size_t *len)
{
    struct stat st;
    char *buf;
    int fd = open(path, O_RDONLY);
    ssize_t n;

    assert_true(fd >= 0);
    assert_int_equal(fstat(fd, &st), 0);
    buf = apr_palloc(p, (apr_size_t)st.st_size + 1);
    n = read(fd, buf, (size_t)st.st_size);
    close(fd);
    assert_int_equal(n, st.st_size);
    buf[n] = '\0';
    if (len) {
        *len = (apr_size_t)n;
    }
    return buf;
}

const char *dt_data_path(apr_pool_t *p, const char *name)
{
    const char *base = getenv("DATOS_TEST_DATA");
    return apr_pstrcat(p, base && *base ? base : "tests/unit/data", "/", name,
                       NULL);
}

const char *dt_test_key_pem(apr_pool_t *p)
{
    return dt_read_file(p, dt_data_path(p, "test_key.pem"), NULL);
}

const char *dt_write_key_file(apr_pool_t *p, const char *dir,
                              const char *token_uri)
{
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "type",
                          "service_account", "project_id", "datos-test-project",
                          "private_key_id", "0123456789abcdef", "private_key",
                          dt_test_key_pem(p), "client_email",
                          "loader@datos-test-project.iam.gserviceaccount.com",
                          "client_id", "1234567890");
    char *text;
    const char *path;

    assert_non_null(j);
    if (token_uri) {
        json_object_set_new(j, "token_uri", json_string(token_uri));
    }
    text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(j);
    assert_non_null(text);
    path = dt_write_file(p, dir, "key.json", text, strlen(text), 0600);
    free(text);
    return path;
}

datos_creds_t *dt_server_creds(apr_pool_t *p, const char *server_url,
                               const char *const *scopes)
{
    datos_creds_t *creds = NULL;
    datos_err_t err = {0};
    const char *key = dt_write_key_file(
        p, dt_tmpdir(p), apr_pstrcat(p, server_url, "/token", NULL));

    if (datos_creds_load(p, key, scopes, 0, &creds, &err) != APR_SUCCESS) {
        fail_msg("creds: %s", err.message);
    }
    return creds;
}

int dt_system(apr_pool_t *p, const char *fmt, ...)
{
    va_list ap;
    const char *cmd;
    int rc;

    va_start(ap, fmt);
    cmd = apr_pvsprintf(p, fmt, ap);
    va_end(ap);
    rc = system(cmd);
    if (rc == -1 || !WIFEXITED(rc)) {
        return -1;
    }
    return WEXITSTATUS(rc);
}
