/* datos_crypt.c - private keys, RS256 JWTs and CA bundles on OpenSSL. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <apr_strings.h>
#include <apr_user.h>
#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include "datos_base64.h"
#include "datos_crypt.h"
#include "datos_json.h"

/* OpenSSL's error queue is per thread and shared with mod_ssl and libcurl:
 * one failure can leave several entries, and the first is rarely the useful
 * one, so all of them go into the message and the queue is left empty. */
static const char *openssl_errors(apr_pool_t *p)
{
    const char *msg = NULL;
    unsigned long e;
    char buf[256];

    while ((e = ERR_get_error()) != 0) {
        ERR_error_string_n(e, buf, sizeof(buf));
        msg = msg ? apr_pstrcat(p, msg, "; ", buf, NULL) : apr_pstrdup(p, buf);
    }
    return msg ? msg : "no OpenSSL error reported";
}

static apr_status_t pkey_cleanup(void *data)
{
    EVP_PKEY_free((EVP_PKEY *)data);
    return APR_SUCCESS;
}

/* A passphrase-protected key must fail, never prompt on the terminal. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

apr_status_t datos_pkey_from_pem(apr_pool_t *p, const char *pem, apr_size_t len,
                                 EVP_PKEY **out, datos_err_t *err)
{
    apr_status_t rv = APR_SUCCESS;
    EVP_PKEY *pkey = NULL;
    BIO *bio = NULL;

    ERR_clear_error();
    if (len > (apr_size_t)APR_INT32_MAX) {
        rv = datos_err_set(err, p, DATOS_ECONFIG, 0, NULL,
                           "private key is too large");
        goto leave;
    }
    bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio) {
        rv = datos_err_set(err, p, DATOS_ECONFIG, 0, NULL,
                           "cannot read private key: %s", openssl_errors(p));
        goto leave;
    }
    pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
    if (!pkey) {
        rv = datos_err_set(err, p, DATOS_ECONFIG, 0, NULL,
                           "cannot parse private key: %s", openssl_errors(p));
        goto leave;
    }
    if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_RSA) {
        rv = datos_err_set(err, p, DATOS_ECONFIG, 0, NULL,
                           "private key is not an RSA key (RS256 needs one)");
        goto leave;
    }
    apr_pool_cleanup_register(p, pkey, pkey_cleanup, apr_pool_cleanup_null);
    *out = pkey;
    pkey = NULL;

leave:
    EVP_PKEY_free(pkey);
    BIO_free(bio);
    return rv;
}

apr_status_t datos_jwt_sign_rs256(apr_pool_t *p, EVP_PKEY *key,
                                  const char *header_json,
                                  const char *claims_json, const char **jwt,
                                  datos_err_t *err)
{
    apr_status_t rv = APR_SUCCESS;
    EVP_MD_CTX *ctx = NULL;
    unsigned char *sig;
    size_t siglen = 0;
    const char *input;

    input = apr_pstrcat(
        p,
        datos_base64url_encode(p, (const unsigned char *)header_json,
                               strlen(header_json)),
        ".",
        datos_base64url_encode(p, (const unsigned char *)claims_json,
                               strlen(claims_json)),
        NULL);

    ERR_clear_error();
    /* One context per signature: the key is shared read-only by threads,
     * a digest context is not. */
    ctx = EVP_MD_CTX_new();
    if (!ctx || EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key) != 1
        || EVP_DigestSign(ctx, NULL, &siglen, (const unsigned char *)input,
                          strlen(input))
               != 1) {
        rv = datos_err_set(err, p, DATOS_ECONFIG, 0, NULL,
                           "cannot sign the JWT: %s", openssl_errors(p));
        goto leave;
    }
    sig = apr_palloc(p, siglen);
    if (EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *)input,
                       strlen(input))
        != 1) {
        rv = datos_err_set(err, p, DATOS_ECONFIG, 0, NULL,
                           "cannot sign the JWT: %s", openssl_errors(p));
        goto leave;
    }
    *jwt = apr_pstrcat(p, input, ".", datos_base64url_encode(p, sig, siglen),
                       NULL);

leave:
    EVP_MD_CTX_free(ctx);
    return rv;
}

apr_status_t datos_jwt_assertion(apr_pool_t *p, EVP_PKEY *key, const char *kid,
                                 const char *iss, const char *scope,
                                 const char *aud, apr_time_t now,
                                 const char **jwt, datos_err_t *err)
{
    apr_status_t rv;
    json_t *header = NULL, *claims = NULL;
    const char *hs, *cs;
    /* Backdated against clock skew between us and Google, as golang/oauth2
     * does; exp - iat stays at the 3600 s Google allows. */
    json_int_t iat = (json_int_t)apr_time_sec(now) - 10;

    header =
        json_pack("{s:s, s:s, s:s}", "alg", "RS256", "typ", "JWT", "kid", kid);
    claims = json_pack("{s:s, s:s, s:s, s:I, s:I}", "iss", iss, "scope", scope,
                       "aud", aud, "iat", iat, "exp", iat + 3600);
    hs = header ? datos_json_dump(p, header, NULL) : NULL;
    cs = claims ? datos_json_dump(p, claims, NULL) : NULL;
    if (!hs || !cs) {
        rv = datos_err_set(err, p, DATOS_ECONFIG, 0, NULL,
                           "cannot build the JWT: kid, iss, scope and aud "
                           "must be valid UTF-8 strings");
        goto leave;
    }
    rv = datos_jwt_sign_rs256(p, key, hs, cs, jwt, err);

leave:
    json_decref(header);
    json_decref(claims);
    return rv;
}

/* "nobody (uid 65534)", or "uid 1234" for a uid without a name. */
static const char *uid_text(apr_pool_t *p, uid_t uid)
{
    char *name = NULL;

    if (apr_uid_name_get(&name, (apr_uid_t)uid, p) == APR_SUCCESS && name) {
        return apr_psprintf(p, "%s (uid %lu)", name, (unsigned long)uid);
    }
    return apr_psprintf(p, "uid %lu", (unsigned long)uid);
}

apr_status_t datos_private_file_open(apr_pool_t *p, const char *path,
                                     const char *what, const char *whose,
                                     apr_off_t max, const char *size_hint,
                                     int *fdp, struct stat *st,
                                     datos_err_t *err)
{
    apr_status_t rv = APR_SUCCESS;
    uid_t me = geteuid();
    int fd;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        rv =
            datos_err_set(err, p, DATOS_ECONFIG, 0, NULL,
                          "cannot open %s %s: %s", what, path, strerror(errno));
        goto leave;
    }
    if (fstat(fd, st) != 0) {
        rv =
            datos_err_set(err, p, DATOS_ECONFIG, 0, NULL,
                          "cannot stat %s %s: %s", what, path, strerror(errno));
        goto leave;
    }
    if (!S_ISREG(st->st_mode)) {
        rv = datos_err_set(err, p, DATOS_ECONFIG, 0, NULL,
                           "%s %s is not a regular file", what, path);
        goto leave;
    }
    if (st->st_uid != me) {
        char *name = NULL;
        if (apr_uid_name_get(&name, (apr_uid_t)me, p) != APR_SUCCESS || !name) {
            name = apr_psprintf(p, "%lu", (unsigned long)me);
        }
        rv = datos_err_set(err, p, DATOS_ECONFIG, 0, NULL,
                           "%s %s is owned by %s: %s must be owned by %s, "
                           "the user loading them (run chown %s %s)",
                           what, path, uid_text(p, st->st_uid), whose,
                           uid_text(p, me), name, path);
        goto leave;
    }
    if (st->st_mode & 077) {
        rv = datos_err_set(err, p, DATOS_ECONFIG, 0, NULL,
                           "%s %s is readable or writable by group or "
                           "others (mode %04o): run chmod 600 %s",
                           what, path, (unsigned)(st->st_mode & 07777), path);
        goto leave;
    }
    if (st->st_size <= 0 || st->st_size > max) {
        rv = datos_err_set(err, p, DATOS_ECONFIG, 0, NULL, "%s %s is %s%s",
                           what, path, st->st_size <= 0 ? "empty" : "too large",
                           size_hint ? size_hint : "");
        goto leave;
    }
    *fdp = fd;
    fd = -1;

leave:
    if (fd >= 0) {
        close(fd);
    }
    return rv;
}

void datos_sha256_hex(const void *data, apr_size_t len, char out[65])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[SHA256_DIGEST_LENGTH];
    int i;

    SHA256((const unsigned char *)data, len, md);
    for (i = 0; i < SHA256_DIGEST_LENGTH; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[64] = '\0';
}

apr_status_t datos_ca_file_check(apr_pool_t *p, const char *path,
                                 datos_err_t *err)
{
    apr_status_t rv = APR_SUCCESS;
    STACK_OF(X509_INFO) *infos = NULL;
    struct stat st;
    FILE *f = NULL;
    BIO *bio = NULL;
    int fd, i, certs = 0;

    ERR_clear_error();
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        rv = datos_err_set(err, p, DATOS_ECONFIG, 0, NULL, "cannot open %s: %s",
                           path, strerror(errno));
        goto leave;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rv = datos_err_set(err, p, DATOS_ECONFIG, 0, NULL,
                           "%s is not a regular file (a PEM file of CA "
                           "certificates is expected)",
                           path);
        goto leave;
    }
    f = fdopen(fd, "r");
    if (!f) {
        rv = datos_err_set(err, p, DATOS_ECONFIG, 0, NULL, "cannot read %s: %s",
                           path, strerror(errno));
        goto leave;
    }
    fd = -1; /* closed with f */
    bio = BIO_new_fp(f, BIO_NOCLOSE);
    if (!bio) {
        rv = datos_err_set(err, p, APR_ENOMEM, 0, NULL, "cannot read %s: %s",
                           path, openssl_errors(p));
        goto leave;
    }
    /* The reader OpenSSL's own CA-file loader uses (and so curl's): a
     * file it cannot parse, or one without a certificate, would fail every
     * https request instead of the configuration check. */
    infos = PEM_X509_INFO_read_bio(bio, NULL, no_passphrase, NULL);
    if (!infos) {
        rv = datos_err_set(err, p, DATOS_ECONFIG, 0, NULL,
                           "%s is not a PEM file OpenSSL can read: %s", path,
                           openssl_errors(p));
        goto leave;
    }
    for (i = 0; i < sk_X509_INFO_num(infos); i++) {
        if (sk_X509_INFO_value(infos, i)->x509) {
            certs++;
        }
    }
    if (!certs) {
        rv = datos_err_set(err, p, DATOS_ECONFIG, 0, NULL,
                           "%s holds no PEM certificate (-----BEGIN "
                           "CERTIFICATE-----)",
                           path);
        goto leave;
    }

leave:
    sk_X509_INFO_pop_free(infos, X509_INFO_free);
    BIO_free(bio);
    if (f) {
        fclose(f);
    }
    if (fd >= 0) {
        close(fd);
    }
    ERR_clear_error();
    return rv;
}
