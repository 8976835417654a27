/* datos_json.h - pool-owned jansson values.
 *
 * jansson is process-global (Debian's mod_md loads it too): never change its
 * allocator, and tie every json_t we own to a pool so the decref cannot be
 * forgotten on an error path.
 */
#ifndef DATOS_JSON_H
#define DATOS_JSON_H

#include <apr_pools.h>
#include <jansson.h>
#include "datos_error.h"

/* Registers json_decref(j) as a cleanup of p; returns j (NULL-safe). */
json_t *datos_json_bind(apr_pool_t *p, json_t *j);

/* Parses exactly len bytes (JSON_REJECT_DUPLICATES when strict). On failure
 * returns DATOS_EMALFORMED with jansson's text, line and column in err. */
apr_status_t datos_json_parse(apr_pool_t *p, const char *buf, apr_size_t len,
                              int strict, json_t **out, datos_err_t *err);

/* Compact, keys in insertion order; result NUL-terminated in p. */
char *datos_json_dump(apr_pool_t *p, const json_t *j, apr_size_t *len);

/* Member getters: NULL / the fallback when absent or of another type. */
json_t *datos_json_obj(const json_t *obj, const char *key);
json_t *datos_json_arr(const json_t *obj, const char *key);
const char *datos_json_str(const json_t *obj, const char *key);
/* An int64 sent as a JSON string ("42", as Google does) or a number.
 * APR_NOTFOUND when absent; DATOS_EMALFORMED for any other type, a string
 * that is not a plain decimal, or an overflow. */
apr_status_t datos_json_int64(const json_t *obj, const char *key,
                              apr_int64_t *out);
int datos_json_true(const json_t *obj, const char *key);

#endif
