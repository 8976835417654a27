/* datos_crypt.h - private keys, RS256 JWTs and CA bundles on OpenSSL.
 *
 * OpenSSL is shared with mod_ssl and libcurl in the same process: never call
 * its global cleanup functions; clear the thread's error queue before each
 * operation and drain all of it into one message on failure.
 */
#ifndef DATOS_CRYPT_H
#define DATOS_CRYPT_H

#include <sys/stat.h>
#include <apr_pools.h>
#include <apr_time.h>
#include <openssl/evp.h>
#include "datos_error.h"

/* PEM (PKCS#8 or traditional RSA) to EVP_PKEY, freed by a cleanup of p.
 * Errors (DATOS_ECONFIG) carry OpenSSL's whole error queue, never the key. */
apr_status_t datos_pkey_from_pem(apr_pool_t *p, const char *pem, apr_size_t len,
                                 EVP_PKEY **out, datos_err_t *err);

/* JWS compact serialisation: b64url(header) "." b64url(claims) "."
 * b64url(RSASSA-PKCS1-v1_5 SHA-256 signature), signed with EVP_DigestSign. */
apr_status_t datos_jwt_sign_rs256(apr_pool_t *p, EVP_PKEY *key,
                                  const char *header_json,
                                  const char *claims_json, const char **jwt,
                                  datos_err_t *err);

/* The JWT-bearer assertion of docs/google-apis.md 3.2: header {alg, typ, kid},
 * claims {iss, scope, aud, iat, exp}, iat = now - 10 s (clock skew), exp =
 * iat + 3600. */
apr_status_t datos_jwt_assertion(apr_pool_t *p, EVP_PKEY *key, const char *kid,
                                 const char *iss, const char *scope,
                                 const char *aud, apr_time_t now,
                                 const char **jwt, datos_err_t *err);

/* A CA bundle curl can use: a regular file (symlinks followed) the caller
 * can read, parsed as OpenSSL's CA-file loader parses it, holding at least
 * one certificate. DATOS_ECONFIG with a message naming the file. */
apr_status_t datos_ca_file_check(apr_pool_t *p, const char *path,
                                 datos_err_t *err);

/* Opens a file only its reader may use (a key, a secret) and judges the
 * file actually opened (open, then fstat, so nothing can be swapped in
 * between): symlinks are followed and the final target must be a regular
 * file, owned by the effective user (the one reading it: root for httpd
 * started as root), with no group or other permission bits, of 1 byte to
 * max. An owner can read the file whatever its mode, and can replace it.
 * The directories leading to it are not checked: whoever can write one can
 * put there only a file of their own, which the owner check refuses, or a
 * link to a file the reading user already owns and keeps private.
 * DATOS_ECONFIG with a message naming the file as `what` ("key file") and
 * its content as `whose` ("the credentials"), both users by name and uid
 * for the owner, and size_hint after a wrong size. On success *fdp is
 * open. */
apr_status_t datos_private_file_open(apr_pool_t *p, const char *path,
                                     const char *what, const char *whose,
                                     apr_off_t max, const char *size_hint,
                                     int *fdp, struct stat *st,
                                     datos_err_t *err);

/* Lowercase hex SHA-256 of data (65 bytes with the NUL). */
void datos_sha256_hex(const void *data, apr_size_t len, char out[65]);

#endif
