/* datos_trust.c - seals (HMAC-SHA256) over cache entries, the secrets that
 * make them, and the fleet's refresh leases.
 *
 * Lease record (all integers little endian):
 *
 *   offset  size  field
 *   0       8     magic 89 'D' 'L' 'E' 'A' 'S' 0D 0A
 *   8       4     format version (1)
 *   12      4     reserved (0)
 *   16      8     taken, microseconds since the epoch (signed)
 *   24      16    token
 *   40      32    seal of the bytes before it
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <apr_strings.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "datos_crypt.h"
#include "datos_trust.h"

#define LEASE_VERSION 1
#define LEASE_BODY    40
#define LEASE_LEN     (LEASE_BODY + DATOS_SEAL_LEN)

static const unsigned char lease_magic[8] = {0x89, 'D', 'L',  'E',
                                             'A',  'S', 0x0D, 0x0A};

/* ------------------------------------------------------------- seals */

apr_status_t datos_seal_mac(const datos_seal_t *seal, const void *data,
                            apr_size_t len, unsigned char mac[DATOS_SEAL_LEN])
{
    OSSL_PARAM params[2];
    EVP_MAC *m = NULL;
    EVP_MAC_CTX *ctx = NULL;
    apr_size_t klen = strlen(seal->key);
    unsigned char prefix[4];
    size_t outl = 0;
    apr_status_t rv = APR_EGENERAL;

    /* The key's length first, so (key, data) pairs never collide. */
    prefix[0] = (unsigned char)klen;
    prefix[1] = (unsigned char)(klen >> 8);
    prefix[2] = (unsigned char)(klen >> 16);
    prefix[3] = (unsigned char)(klen >> 24);
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                                 (char *)"SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();
    ERR_clear_error();
    m = EVP_MAC_fetch(NULL, "HMAC", NULL);
    ctx = m ? EVP_MAC_CTX_new(m) : NULL;
    if (ctx && EVP_MAC_init(ctx, seal->secret->bytes, seal->secret->len, params)
        && EVP_MAC_update(ctx, prefix, sizeof(prefix))
        && EVP_MAC_update(ctx, (const unsigned char *)seal->key, klen)
        && EVP_MAC_update(ctx, data, len)
        && EVP_MAC_final(ctx, mac, &outl, DATOS_SEAL_LEN)
        && outl == DATOS_SEAL_LEN) {
        rv = APR_SUCCESS;
    }
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(m);
    ERR_clear_error();
    return rv;
}

int datos_seal_check(const datos_seal_t *seal, const void *data, apr_size_t len,
                     const unsigned char mac[DATOS_SEAL_LEN])
{
    unsigned char want[DATOS_SEAL_LEN];

    return datos_seal_mac(seal, data, len, want) == APR_SUCCESS
           && CRYPTO_memcmp(want, mac, DATOS_SEAL_LEN) == 0;
}

/* ----------------------------------------------------------- secrets */

static apr_status_t secret_wipe(void *data)
{
    datos_secret_t *s = data;

    OPENSSL_cleanse((void *)s->bytes, s->len);
    return APR_SUCCESS;
}

/* A secret of len bytes in p, wiped when p is cleaned up. */
static datos_secret_t *secret_new(apr_pool_t *p, apr_size_t len)
{
    datos_secret_t *s = apr_pcalloc(p, sizeof(*s));

    s->bytes = apr_pcalloc(p, len);
    s->len = len;
    apr_pool_cleanup_register(p, s, secret_wipe, apr_pool_cleanup_null);
    return s;
}

/* Reads exactly len bytes. */
static int read_all(int fd, unsigned char *buf, apr_size_t len)
{
    apr_size_t got = 0;

    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        got += (apr_size_t)n;
    }
    return 0;
}

apr_status_t datos_secret_read(apr_pool_t *p, const char *path,
                               datos_secret_t **out, datos_err_t *err)
{
    struct stat st;
    datos_secret_t *s = NULL;
    apr_size_t len;
    int fd = -1;
    apr_status_t rv;

    *out = NULL;
    rv = datos_private_file_open(
        p, path, "secret file", "the secret", DATOS_SECRET_MAX,
        " (a secret is at least 32 random bytes, e.g. from openssl rand "
        "-base64 48)",
        &fd, &st, err);
    if (rv != APR_SUCCESS)
        goto leave;
    s = secret_new(p, (apr_size_t)st.st_size);
    if (read_all(fd, (unsigned char *)s->bytes, s->len) != 0) {
        rv = datos_err_set(err, p, DATOS_ECONFIG, 0, NULL,
                           "cannot read secret file %s: %s", path,
                           strerror(errno ? errno : EIO));
        goto leave;
    }
    /* A trailing newline (or CR, blanks) is the editor's, not the
     * secret's: hosts whose files differ only there agree. */
    for (len = s->len; len > 0; len--) {
        unsigned char c = s->bytes[len - 1];
        if (c != '\n' && c != '\r' && c != ' ' && c != '\t')
            break;
    }
    if (len < DATOS_SECRET_MIN) {
        rv = datos_err_set(err, p, DATOS_ECONFIG, 0, NULL,
                           "secret file %s holds %" APR_SIZE_T_FMT
                           " bytes; a secret is at least %d (e.g. openssl "
                           "rand -base64 48 > %s)",
                           path, len, DATOS_SECRET_MIN, path);
        goto leave;
    }
    s->len = len;
    *out = s;

leave:
    if (fd >= 0)
        close(fd);
    return rv;
}

apr_status_t datos_secret_generate(apr_pool_t *p, datos_secret_t **out,
                                   datos_err_t *err)
{
    datos_secret_t *s = secret_new(p, DATOS_SECRET_GENERATED);

    *out = NULL;
    ERR_clear_error();
    if (RAND_bytes((unsigned char *)s->bytes, (int)s->len) != 1) {
        ERR_clear_error();
        return datos_err_set(err, p, APR_EGENERAL, 0, NULL,
                             "no random bytes for a secret");
    }
    *out = s;
    return APR_SUCCESS;
}

/* Why the file at fd cannot be the host's secret; NULL when it can. */
static const char *keep_problem(apr_pool_t *p, const struct stat *st)
{
    if (!S_ISREG(st->st_mode))
        return "it is not a regular file";
    if (st->st_uid != geteuid())
        return apr_psprintf(p, "it is owned by uid %lu, not %lu",
                            (unsigned long)st->st_uid,
                            (unsigned long)geteuid());
    if (st->st_mode & 077)
        return apr_psprintf(p, "its mode is %04o",
                            (unsigned)(st->st_mode & 07777));
    if (st->st_nlink != 1)
        return apr_psprintf(p, "it has %lu links", (unsigned long)st->st_nlink);
    if (st->st_size != DATOS_SECRET_GENERATED)
        return apr_psprintf(p, "it holds %ld bytes, not %d", (long)st->st_size,
                            DATOS_SECRET_GENERATED);
    return NULL;
}

/* Writes a new secret to path, which must not exist. */
static apr_status_t keep_create(apr_pool_t *p, const char *path,
                                datos_secret_t **out, datos_err_t *err)
{
    datos_secret_t *s = NULL;
    apr_size_t put = 0;
    apr_status_t rv;
    int fd;

    rv = datos_secret_generate(p, &s, err);
    if (rv != APR_SUCCESS)
        return rv;
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return datos_err_set(err, p, DATOS_ECONFIG, 0, NULL,
                             "cannot create %s: %s", path, strerror(errno));
    while (put < s->len) {
        ssize_t n = write(fd, s->bytes + put, s->len - put);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        put += (apr_size_t)n;
    }
    if (put != s->len || fsync(fd) != 0) {
        rv =
            datos_err_set(err, p, DATOS_ECONFIG, 0, NULL, "cannot write %s: %s",
                          path, strerror(errno ? errno : EIO));
        close(fd);
        unlink(path);
        return rv;
    }
    close(fd);
    *out = s;
    return APR_SUCCESS;
}

apr_status_t datos_secret_keep(apr_pool_t *p, const char *path,
                               datos_secret_t **out, const char **replaced,
                               datos_err_t *err)
{
    const char *problem = NULL;
    datos_secret_t *s;
    struct stat st;
    int fd;

    *out = NULL;
    *replaced = NULL;
    /* O_NOFOLLOW: whoever can write the directory may have put a link
     * there, to a file of root's that is not a secret. */
    fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0 && errno == ENOENT)
        return keep_create(p, path, out, err);
    if (fd < 0 && errno != ELOOP)
        return datos_err_set(err, p, DATOS_ECONFIG, 0, NULL,
                             "cannot open %s: %s", path, strerror(errno));
    if (fd < 0)
        problem = "it is a symbolic link";
    else if (fstat(fd, &st) != 0)
        problem =
            apr_psprintf(p, "it cannot be examined (%s)", strerror(errno));
    else
        problem = keep_problem(p, &st);
    if (!problem) {
        s = secret_new(p, DATOS_SECRET_GENERATED);
        if (read_all(fd, (unsigned char *)s->bytes, s->len) == 0) {
            close(fd);
            *out = s;
            return APR_SUCCESS;
        }
        problem = "it cannot be read";
    }
    if (fd >= 0)
        close(fd);
    if (unlink(path) != 0)
        return datos_err_set(err, p, DATOS_ECONFIG, 0, NULL,
                             "%s is not a secret this server made (%s), "
                             "and cannot be removed: %s",
                             path, problem, strerror(errno));
    *replaced = problem;
    return keep_create(p, path, out, err);
}

/* ------------------------------------------------------------- leases */

static void put_u32(unsigned char *o, apr_uint32_t v)
{
    o[0] = (unsigned char)v;
    o[1] = (unsigned char)(v >> 8);
    o[2] = (unsigned char)(v >> 16);
    o[3] = (unsigned char)(v >> 24);
}

static apr_uint32_t get_u32(const unsigned char *s)
{
    return (apr_uint32_t)s[0] | (apr_uint32_t)s[1] << 8
           | (apr_uint32_t)s[2] << 16 | (apr_uint32_t)s[3] << 24;
}

apr_status_t datos_lease_new(apr_time_t now, datos_lease_t *out)
{
    memset(out, 0, sizeof(*out));
    out->taken = now;
    ERR_clear_error();
    if (RAND_bytes(out->token, DATOS_LEASE_TOKEN_LEN) != 1) {
        ERR_clear_error();
        return APR_EGENERAL;
    }
    return APR_SUCCESS;
}

apr_status_t datos_lease_encode(apr_pool_t *p, const datos_seal_t *seal,
                                const datos_lease_t *lease, const char **bytes,
                                apr_size_t *len)
{
    unsigned char *b = apr_palloc(p, LEASE_LEN);
    apr_uint64_t t = (apr_uint64_t)lease->taken;
    apr_status_t rv;

    memcpy(b, lease_magic, sizeof(lease_magic));
    put_u32(b + 8, LEASE_VERSION);
    put_u32(b + 12, 0);
    put_u32(b + 16, (apr_uint32_t)t);
    put_u32(b + 20, (apr_uint32_t)(t >> 32));
    memcpy(b + 24, lease->token, DATOS_LEASE_TOKEN_LEN);
    rv = datos_seal_mac(seal, b, LEASE_BODY, b + LEASE_BODY);
    if (rv != APR_SUCCESS)
        return rv;
    *bytes = (const char *)b;
    *len = LEASE_LEN;
    return APR_SUCCESS;
}

apr_status_t datos_lease_decode(const datos_seal_t *seal, const char *bytes,
                                apr_size_t len, datos_lease_t *out)
{
    const unsigned char *b = (const unsigned char *)bytes;

    memset(out, 0, sizeof(*out));
    if (!b || len != LEASE_LEN || memcmp(b, lease_magic, 8) != 0
        || get_u32(b + 8) != LEASE_VERSION)
        return DATOS_EMALFORMED;
    if (!datos_seal_check(seal, b, LEASE_BODY, b + LEASE_BODY))
        return DATOS_EAUTH;
    if (get_u32(b + 12) != 0)
        return DATOS_EMALFORMED;
    out->taken = (apr_time_t)((apr_uint64_t)get_u32(b + 16)
                              | (apr_uint64_t)get_u32(b + 20) << 32);
    memcpy(out->token, b + 24, DATOS_LEASE_TOKEN_LEN);
    return APR_SUCCESS;
}
