/* datos_base64.h - base64 (RFC 4648): the bytes fields of Google's JSON
 * (docs/google-apis.md 0.2, Pub/Sub's message data) and the base64url parts
 * of a JWT. Encoding goes through APR-util's apr_base64; decoding is
 * strict (datos_base64_decode says why it is not APR's). */
#ifndef DATOS_BASE64_H
#define DATOS_BASE64_H

#include <apr_pools.h>
#include "datos_error.h"

/* The most bytes encoded in one call: APR counts lengths in an int. */
#define DATOS_BASE64_MAX ((apr_size_t)1 << 30)

/* RFC 4648 section 4, '=' padded; *outlen (may be NULL) gets the length
 * of the NUL-terminated result. NULL when len passes DATOS_BASE64_MAX. */
char *datos_base64_encode(apr_pool_t *p, const unsigned char *data,
                          apr_size_t len, apr_size_t *outlen);

/* RFC 4648 section 5 alphabet, no padding (a JWT's parts); NULL when len
 * passes DATOS_BASE64_MAX. */
char *datos_base64url_encode(apr_pool_t *p, const unsigned char *data,
                             apr_size_t len);

/* The bytes fields of docs/google-apis.md 0.2: the standard alphabet (the
 * URL-safe one is taken too), padded or not. Anything else - whitespace, a
 * stray '=', a lone trailing character - is DATOS_EMALFORMED. *out is
 * NUL-terminated (not counted in *outlen). */
apr_status_t datos_base64_decode(apr_pool_t *p, const char *in, apr_size_t len,
                                 unsigned char **out, apr_size_t *outlen);

/* Room for datos_base64_decode_to's output of len characters: the bytes,
 * the NUL and what its 16-byte stores may write past them. */
#define DATOS_BASE64_DECODE_ROOM(len) ((len) / 4 * 3 + 7)

/* The same into buf, which has DATOS_BASE64_DECODE_ROOM(len) bytes: for a
 * caller that places the bytes itself. */
apr_status_t datos_base64_decode_to(const char *in, apr_size_t len,
                                    unsigned char *buf, apr_size_t *outlen);

#endif
