/* test_trust.c - seals over cache entries, the secrets behind them (the
 * fleet's file, a host's own kept in its state directory) and the fleet's
 * refresh leases. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dt_support.h"
#include "datos_trust.h"

static const datos_secret_t S1 = {
    (const unsigned char *)"0123456789abcdef0123456789abcdef", 32};
static const datos_secret_t S2 = {
    (const unsigned char *)"0123456789abcdef0123456789abcdeF", 32};

static void seals(void **state)
{
    const datos_seal_t a = {&S1, "datos:v1:aaaa"};
    const datos_seal_t b = {&S2, "datos:v1:aaaa"};
    const datos_seal_t c = {&S1, "datos:v1:aaab"};
    /* the key and the data are not simply concatenated */
    const datos_seal_t d = {&S1, "datos:v1:aaa"};
    unsigned char ma[DATOS_SEAL_LEN], mb[DATOS_SEAL_LEN], mc[DATOS_SEAL_LEN],
        md[DATOS_SEAL_LEN], again[DATOS_SEAL_LEN];

    (void)state;
    assert_int_equal(datos_seal_mac(&a, "bytes", 5, ma), APR_SUCCESS);
    assert_int_equal(datos_seal_mac(&a, "bytes", 5, again), APR_SUCCESS);
    assert_memory_equal(ma, again, DATOS_SEAL_LEN);
    assert_int_equal(datos_seal_mac(&b, "bytes", 5, mb), APR_SUCCESS);
    assert_int_equal(datos_seal_mac(&c, "bytes", 5, mc), APR_SUCCESS);
    assert_int_equal(datos_seal_mac(&d, "abytes", 6, md), APR_SUCCESS);
    assert_memory_not_equal(ma, mb, DATOS_SEAL_LEN);
    assert_memory_not_equal(ma, mc, DATOS_SEAL_LEN);
    assert_memory_not_equal(ma, md, DATOS_SEAL_LEN);
    assert_true(datos_seal_check(&a, "bytes", 5, ma));
    assert_false(datos_seal_check(&b, "bytes", 5, ma));
    assert_false(datos_seal_check(&c, "bytes", 5, ma));
    assert_false(datos_seal_check(&a, "bytez", 5, ma));
    assert_false(datos_seal_check(&a, "byte", 4, ma));
    /* Independent of this code: HMAC-SHA256 with key "Jefe" (RFC 4231's
     * test case 2) over the empty cache key's 4-byte length and the data,
     * as `printf '\0\0\0\0what do ya want for nothing?' | openssl dgst
     * -sha256 -hmac Jefe` computes it. */
    {
        const datos_secret_t jefe = {(const unsigned char *)"Jefe", 4};
        const datos_seal_t e = {&jefe, ""};
        unsigned char me[DATOS_SEAL_LEN];
        static const unsigned char want[DATOS_SEAL_LEN] = {
            0xd4, 0xc4, 0x3f, 0x08, 0x9c, 0x60, 0x29, 0x6f, 0xa7, 0x95, 0x53,
            0xf2, 0x82, 0xab, 0x9c, 0x3e, 0x38, 0x57, 0x90, 0x0a, 0x90, 0x55,
            0x5c, 0x8d, 0x7a, 0xbb, 0xa6, 0x02, 0xf4, 0xa2, 0xbb, 0xd5};

        assert_int_equal(
            datos_seal_mac(&e, "what do ya want for nothing?", 28, me),
            APR_SUCCESS);
        assert_memory_equal(me, want, DATOS_SEAL_LEN);
    }
}

/* ------------------------------------------------- the fleet's secret file */

static void secret_file(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    const char *dir = dt_tmpdir(p);
    const char *good = "0123456789abcdef0123456789abcdefXYZ";
    datos_secret_t *s = NULL;
    datos_err_t err = {0};
    const char *path;

    path = dt_write_file(p, dir, "good", apr_pstrcat(p, good, "\n \r\n", NULL),
                         strlen(good) + 4, 0600);
    assert_int_equal(datos_secret_read(p, path, &s, &err), APR_SUCCESS);
    /* trailing white space is not part of it */
    assert_int_equal(s->len, strlen(good));
    assert_memory_equal(s->bytes, good, s->len);

    path = dt_write_file(p, dir, "short", "0123456789abcdef0123456789abcde\n",
                         32, 0600);
    datos_err_clear(&err);
    assert_int_equal(datos_secret_read(p, path, &s, &err), DATOS_ECONFIG);
    assert_null(s);
    assert_non_null(strstr(err.message, "at least 32"));
    assert_null(strstr(err.message, "0123456789"));

    path = dt_write_file(p, dir, "open", good, strlen(good), 0640);
    datos_err_clear(&err);
    assert_int_equal(datos_secret_read(p, path, &s, &err), DATOS_ECONFIG);
    assert_non_null(strstr(err.message, "mode 0640"));
    assert_non_null(strstr(err.message, "secret file"));

    datos_err_clear(&err);
    assert_int_equal(
        datos_secret_read(p, apr_pstrcat(p, dir, "/none", NULL), &s, &err),
        DATOS_ECONFIG);
    assert_non_null(strstr(err.message, "cannot open secret file"));

    if (geteuid() == 0) {
        path = dt_write_file(p, dir, "theirs", good, strlen(good), 0600);
        assert_int_equal(chown(path, 65534, 65534), 0);
        datos_err_clear(&err);
        assert_int_equal(datos_secret_read(p, path, &s, &err), DATOS_ECONFIG);
        assert_non_null(strstr(err.message, "the secret must be owned by"));
    }
}

/* ------------------------------------------------- a host's own secret */

static datos_secret_t *keep(apr_pool_t *p, const char *path,
                            const char **replaced)
{
    datos_secret_t *s = NULL;
    datos_err_t err = {0};

    datos_err_clear(&err);
    if (datos_secret_keep(p, path, &s, replaced, &err) != APR_SUCCESS)
        fail_msg("keep %s: %s", path, err.message);
    assert_int_equal(s->len, DATOS_SECRET_GENERATED);
    return s;
}

static void host_secret_made_once_and_kept(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    const char *dir = dt_tmpdir(p);
    const char *path = apr_pstrcat(p, dir, "/hmac.key", NULL);
    const char *replaced = "unset";
    datos_secret_t *a, *b;
    struct stat st;

    a = keep(p, path, &replaced);
    assert_null(replaced);
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_uid, geteuid());
    b = keep(p, path, &replaced);
    assert_null(replaced);
    assert_memory_equal(a->bytes, b->bytes, DATOS_SECRET_GENERATED);
    /* another host (directory) makes another secret */
    {
        const char *other = apr_pstrcat(p, dt_tmpdir(p), "/hmac.key", NULL);
        datos_secret_t *c = keep(p, other, &replaced);
        assert_memory_not_equal(a->bytes, c->bytes, DATOS_SECRET_GENERATED);
    }
}

/* Whoever can write the directory (httpd's children) can remove the file
 * or put another there; they cannot make one the server takes. */
static void host_secret_replaced_when_not_its_own(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    const char *dir = dt_tmpdir(p);
    const char *path = apr_pstrcat(p, dir, "/hmac.key", NULL);
    const char *target = apr_pstrcat(p, dir, "/target", NULL);
    const char *known = "known to the writer, 32 bytes..";
    const char *replaced = NULL;
    datos_secret_t *a, *b;
    struct stat st;

    a = keep(p, path, &replaced);

    /* a file the writer knows, with a loose mode */
    unlink(path);
    dt_write_file(p, dir, "hmac.key", known, 32, 0644);
    b = keep(p, path, &replaced);
    assert_non_null(replaced);
    assert_non_null(strstr(replaced, "mode"));
    assert_memory_not_equal(b->bytes, known, 32);
    assert_memory_not_equal(b->bytes, a->bytes, 32);

    /* a link to a file of the server's user: not followed, not changed */
    unlink(path);
    dt_write_file(p, dir, "target", known, 32, 0600);
    assert_int_equal(symlink(target, path), 0);
    b = keep(p, path, &replaced);
    assert_non_null(strstr(replaced, "symbolic link"));
    assert_memory_not_equal(b->bytes, known, 32);
    assert_string_equal(dt_read_file(p, target, NULL), known);
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));

    /* a hard link to it */
    unlink(path);
    assert_int_equal(link(target, path), 0);
    b = keep(p, path, &replaced);
    assert_non_null(strstr(replaced, "links"));
    assert_memory_not_equal(b->bytes, known, 32);
    assert_string_equal(dt_read_file(p, target, NULL), known);

    /* cut short (a crash while it was written) */
    unlink(path);
    dt_write_file(p, dir, "hmac.key", known, 7, 0600);
    b = keep(p, path, &replaced);
    assert_non_null(strstr(replaced, "holds 7 bytes"));

    /* another user's */
    if (geteuid() == 0) {
        unlink(path);
        dt_write_file(p, dir, "hmac.key", known, 32, 0600);
        assert_int_equal(chown(path, 65534, 65534), 0);
        b = keep(p, path, &replaced);
        assert_non_null(strstr(replaced, "owned by uid 65534"));
        assert_memory_not_equal(b->bytes, known, 32);
    }
    /* and what it made it keeps */
    a = keep(p, path, &replaced);
    assert_null(replaced);
}

static void generated_secrets_differ(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_secret_t *a = NULL, *b = NULL;
    datos_err_t err = {0};

    assert_int_equal(datos_secret_generate(p, &a, &err), APR_SUCCESS);
    assert_int_equal(datos_secret_generate(p, &b, &err), APR_SUCCESS);
    assert_int_equal(a->len, DATOS_SECRET_GENERATED);
    assert_memory_not_equal(a->bytes, b->bytes, a->len);
}

/* ------------------------------------------------------------- leases */

static void leases(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    const datos_seal_t seal = {&S1, "datos:v1:aaaa:refreshing"};
    const datos_seal_t other = {&S2, "datos:v1:aaaa:refreshing"};
    const datos_seal_t moved = {&S1, "datos:v1:bbbb:refreshing"};
    datos_lease_t l, m, back;
    const char *bytes;
    apr_size_t len, i;
    char *bad;

    (void)state;
    assert_int_equal(datos_lease_new(1705240800000000LL, &l), APR_SUCCESS);
    assert_int_equal(datos_lease_new(1705240800000000LL, &m), APR_SUCCESS);
    assert_memory_not_equal(l.token, m.token, DATOS_LEASE_TOKEN_LEN);
    assert_int_equal(datos_lease_encode(p, &seal, &l, &bytes, &len),
                     APR_SUCCESS);
    assert_int_equal(datos_lease_decode(&seal, bytes, len, &back), APR_SUCCESS);
    assert_int_equal(back.taken, l.taken);
    assert_memory_equal(back.token, l.token, DATOS_LEASE_TOKEN_LEN);
    assert_int_equal(datos_lease_decode(&other, bytes, len, &back),
                     DATOS_EAUTH);
    assert_int_equal(datos_lease_decode(&moved, bytes, len, &back),
                     DATOS_EAUTH);
    assert_int_equal(datos_lease_decode(&seal, bytes, len - 1, &back),
                     DATOS_EMALFORMED);
    assert_int_equal(datos_lease_decode(&seal, "1", 1, &back),
                     DATOS_EMALFORMED);
    assert_int_equal(datos_lease_decode(&seal, NULL, 0, &back),
                     DATOS_EMALFORMED);
    bad = apr_pmemdup(p, bytes, len);
    for (i = 0; i < len; i++) {
        memcpy(bad, bytes, len);
        bad[i] ^= 1;
        assert_true(datos_lease_decode(&seal, bad, len, &back) != APR_SUCCESS);
    }
    /* the ends of time come back as written; obeying them is the policy's */
    l.taken = APR_INT64_MAX;
    assert_int_equal(datos_lease_encode(p, &seal, &l, &bytes, &len),
                     APR_SUCCESS);
    assert_int_equal(datos_lease_decode(&seal, bytes, len, &back), APR_SUCCESS);
    assert_int_equal(back.taken, APR_INT64_MAX);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        DT_TEST(seals),
        DT_TEST(secret_file),
        DT_TEST(host_secret_made_once_and_kept),
        DT_TEST(host_secret_replaced_when_not_its_own),
        DT_TEST(generated_secrets_differ),
        DT_TEST(leases),
    };

    return cmocka_run_group_tests(tests, dt_group_setup, dt_group_teardown);
}
