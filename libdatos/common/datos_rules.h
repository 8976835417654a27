/* datos_rules.h - the record's rules (docs/design.md section 3): the
 * closed list of reasons a message is invalid, the limits, the options of
 * a check and the detail of a refusal. The validator (datos_validate.h)
 * applies them; the loader and POST /datos name the reasons.
 */
#ifndef DATOS_RULES_H
#define DATOS_RULES_H

#include <apr_pools.h>
#include <apr_time.h>
#include <string.h>
#include "datos_error.h"

/* The closed list of reasons a message is invalid (docs/design.md section 3).
 * The last two are never produced by the validator: the loader assigns
 * DATOS_REASON_BIGQUERY_REJECTED to rows a load job refused, and
 * DATOS_REASON_TOO_LARGE to a message whose pull answer alone is larger
 * than its pull_max_bytes. */
typedef enum datos_reason_t {
    DATOS_REASON_NONE = 0,
    DATOS_REASON_EMPTY_DATA,
    DATOS_REASON_NOT_UTF8,
    DATOS_REASON_NOT_JSON,
    DATOS_REASON_NOT_OBJECT,
    DATOS_REASON_DUPLICATE_KEY,
    DATOS_REASON_MISSING_ID,
    DATOS_REASON_BAD_ID,
    DATOS_REASON_ID_TOO_LONG,
    DATOS_REASON_BAD_CONTENIDO,
    DATOS_REASON_CONTENIDO_TOO_LARGE,
    DATOS_REASON_MISSING_TIMESTAMP,
    DATOS_REASON_BAD_TIMESTAMP,
    DATOS_REASON_FUTURE_TIMESTAMP,
    DATOS_REASON_UNKNOWN_FIELD,
    DATOS_REASON_BIGQUERY_REJECTED,
    DATOS_REASON_TOO_LARGE,
    DATOS_REASON_COUNT
} datos_reason_t;

/* "empty_data", "not_utf8", ... "bigquery_rejected", "too_large"; "none" for
 * DATOS_REASON_NONE; NULL outside the enum. */
const char *datos_reason_name(datos_reason_t r);
/* The reason with that exact name, or DATOS_REASON_NONE. */
datos_reason_t datos_reason_from_name(const char *name);

#define DATOS_ID_MAX_BYTES        256
#define DATOS_CONTENIDO_MAX_BYTES (1024 * 1024)
#define DATOS_DETAIL_MAX_BYTES    1024
#define DATOS_MAX_FUTURE_SKEW     apr_time_from_sec(300)

typedef enum datos_unknown_policy_t {
    DATOS_UNKNOWN_REJECT = 0, /* a field not in the record: unknown_field */
    DATOS_UNKNOWN_DROP        /* ignored (its value must still be valid JSON) */
} datos_unknown_policy_t;

typedef struct datos_record_opts_t {
    apr_time_t now; /* the future bound is now + max_future_skew */
    apr_interval_time_t max_future_skew; /* >= 0 */
    datos_unknown_policy_t unknown;
} datos_record_opts_t;

/* Defaults: max_future_skew 5 minutes, unknown fields rejected. */
void datos_record_opts_init(datos_record_opts_t *o, apr_time_t now);

typedef struct datos_invalid_t {
    datos_reason_t reason; /* DATOS_REASON_NONE when valid */
    const char *detail;    /* NUL-terminated UTF-8 without control
                                 * characters, <= DATOS_DETAIL_MAX_BYTES; quotes
                                 * at most 40 bytes of any user value */
} datos_invalid_t;

/* ------------------------------------------------------------------ field rules
 *
 * Internal to the record's validators: the scanner of datos_validate.c and
 * the jansson reference the tests compare it with. Each finds the top-level
 * fields its own way; the rules and their details are written once, here.
 */

/* The record's fields, DATOS_FIELD_UNKNOWN for any other key. */
enum {
    DATOS_FIELD_ID,
    DATOS_FIELD_CONTENIDO,
    DATOS_FIELD_TIMESTAMP,
    DATOS_FIELD_COUNT,
    DATOS_FIELD_UNKNOWN = DATOS_FIELD_COUNT
};

/* The type of a JSON value as a field was found with. */
enum {
    DATOS_VT_ABSENT = 0,
    DATOS_VT_STRING,
    DATOS_VT_NULL,
    DATOS_VT_NUMBER,
    DATOS_VT_BOOL,
    DATOS_VT_OBJECT,
    DATOS_VT_ARRAY
};

typedef struct datos_field_t {
    int type;        /* DATOS_VT_* */
    const char *str; /* a string: the unescaped value; NULL when left
                      * escaped (the scanner's contenido) */
    apr_size_t len;  /* a string: length of the unescaped value */
    const char *raw; /* a string, scanner only: the JSON string body */
    apr_size_t raw_len;
} datos_field_t;

/* What a structure pass found in a well-formed object. */
typedef struct datos_fields_t {
    datos_field_t f[DATOS_FIELD_COUNT];
    const char *unknown; /* the first unknown top-level key, unescaped */
    apr_size_t unknown_len;
    int n_unknown;
} datos_fields_t;

/* The field a top-level key names. Inline: the scanner asks for every key. */
static inline int datos_rules_field_of(const char *k, apr_size_t n)
{
    if (n == 2 && !memcmp(k, "id", 2)) {
        return DATOS_FIELD_ID;
    }
    if (n == 9 && !memcmp(k, "contenido", 9)) {
        return DATOS_FIELD_CONTENIDO;
    }
    if (n == 9 && !memcmp(k, "timestamp", 9)) {
        return DATOS_FIELD_TIMESTAMP;
    }
    return DATOS_FIELD_UNKNOWN;
}

/* "a string", "null", "a number", "a boolean", "an object", "an array";
 * "absent" for DATOS_VT_ABSENT. */
const char *datos_rules_type_name(int type);

/* Bytes of a user value quoted in a detail. */
#define DATOS_EXCERPT_MAX 40

/* A short quoted copy of a user value for a detail: at most max bytes of
 * s, cut on a character boundary ("..." marks the cut), with quotes,
 * backslashes and every control character (C0, DEL, C1) escaped, so the
 * detail stays one clean line. */
const char *datos_rules_excerpt(apr_pool_t *p, const char *s, apr_size_t len,
                                apr_size_t max);

/* Fills *why with reason and the detail fmt makes, cut to
 * DATOS_DETAIL_MAX_BYTES on a character boundary. Returns
 * DATOS_EMALFORMED. */
apr_status_t datos_rules_invalid(apr_pool_t *p, datos_invalid_t *why,
                                 datos_reason_t reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* What a validator does first: *why cleared; APR_EINVAL (detail "invalid
 * arguments") when opts or out (the caller's result) is NULL, data is NULL
 * with a length, or the skew is negative; then rule 1, empty_data.
 * APR_SUCCESS when the data goes on to the structure pass. */
apr_status_t datos_rules_start(apr_pool_t *p, const char *data, apr_size_t len,
                               const datos_record_opts_t *opts, const void *out,
                               datos_invalid_t *why);

/* Rule 2: byte bad of data is not UTF-8. */
apr_status_t datos_rules_not_utf8(apr_pool_t *p, datos_invalid_t *why,
                                  const char *data, apr_size_t bad);

/* Rule 4: the root is a value of type (DATOS_VT_*), not an object. */
apr_status_t datos_rules_not_object(apr_pool_t *p, datos_invalid_t *why,
                                    int type);

/* Rules 6 to 9 on the fields of a well-formed object without duplicate
 * keys, in their order. APR_SUCCESS with *ts_us the timestamp and *why
 * saying none, else DATOS_EMALFORMED with *why. */
apr_status_t datos_rules_check_fields(apr_pool_t *p,
                                      const datos_record_opts_t *o,
                                      const datos_fields_t *fd,
                                      apr_int64_t *ts_us, datos_invalid_t *why);

#endif
