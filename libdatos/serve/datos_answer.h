/* datos_answer.h - one /datos answer, built once per refresh and served as
 * slices, and its byte envelope for the shared cache and the state file.
 *
 * An answer holds the rows rendered once at the largest limit, the offset
 * where each row ends (every ?limit=k is the first row_end[k] bytes plus
 * "]}"), the strong ETag of every slice, computed when the answer is built,
 * gzip variants for a few limits, the time BigQuery answered and the
 * watermark of the next refresh. It never changes once built, so any
 * number of threads may serve it at once with no lock.
 *
 * Gzip and slices: a gzip stream cannot be cut at an arbitrary row. The
 * body is compressed once, with a sync flush (which ends a deflate block
 * on a byte boundary) after the rows of each limit listed in
 * datos_answer_opts_t.gzip_limits; the gzip stream of such a slice is the
 * compressed bytes up to its flush point, a final stored block holding
 * "]}", and the slice's own CRC-32 and length. Limits with no flush point
 * are served uncompressed. Serving never compresses anything.
 */
#ifndef DATOS_ANSWER_H
#define DATOS_ANSWER_H

#include <apr_pools.h>
#include <apr_time.h>
#include "datos_error.h"
#include "datos_record.h"
#include "datos_trust.h"

/* A quoted strong ETag: '"' + 32 lowercase hex digits + '"', and the
 * gzip variant's '"' + 32 hex + "-gz" + '"'. Sizes include the NUL. */
#define DATOS_ETAG_SIZE    35
#define DATOS_ETAG_GZ_SIZE 38

/* Most limits an answer keeps a gzip flush point for. */
#define DATOS_ANSWER_GZIP_MAX 8

typedef struct datos_answer_opts_t {
    int max_rows;       /* the largest ?limit; rows beyond it are not kept */
    apr_time_t fetched; /* when BigQuery answered */
    apr_int64_t watermark_us; /* for the next refresh (datos_bq_watermark) */
    int gzip_limits
        [DATOS_ANSWER_GZIP_MAX]; /* limits with a gzip variant (1..max_rows; any order,
                                             * duplicates ignored; a limit above the rows held
                                             * means the whole answer) */
    int gzip_count;              /* 0: no gzip variant at all */
} datos_answer_opts_t;

/* One gzip variant, for the slice of `rows` rows. Its bytes are, in order:
 * the 10-byte gzip header datos_answer_gzip_header(), deflate[0..end) of
 * the answer, the 7-byte final block datos_answer_gzip_tail(), and its own
 * 8-byte trailer (CRC-32 and length of the slice, little endian). */
typedef struct datos_answer_gz_t {
    int rows;
    apr_size_t end; /* bytes of deflate[] this slice uses */
    unsigned char trailer[8];
    apr_size_t len; /* total bytes of the gzip stream */
} datos_answer_gz_t;

typedef struct datos_answer_t {
    apr_pool_t
        *pool; /* owns the answer: an unmanaged pool with its own allocator,
                                 * so whichever thread lets go of it last may free it */
    apr_time_t fetched;
    apr_int64_t watermark_us;
    int n; /* rows held */
    int max_rows;
    const char *body; /* the whole document for n rows, NUL-terminated */
    apr_size_t body_len;
    const apr_size_t *row_end; /* n + 1 offsets; row_end[0] is just after '[' */
    const char *etags;   /* n + 1 quoted ETags, DATOS_ETAG_SIZE bytes apart */
    const char *deflate; /* the compressed body (raw deflate, sync-flushed) */
    apr_size_t deflate_len;
    const datos_answer_gz_t *gz; /* gz_count variants, by increasing rows */
    int gz_count;
} datos_answer_t;

/* Builds an answer in a pool of its own from rows already in the order
 * they are served: renders them with datos_record_render, computes every
 * slice's ETag and the gzip variants. Rows beyond opts->max_rows are left
 * out. scratch takes temporary work and err's text. APR_EINVAL for options
 * out of range (max_rows < 1, a gzip limit < 1, gzip_count outside
 * 0..DATOS_ANSWER_GZIP_MAX); DATOS_EMALFORMED for a row that cannot be
 * rendered. The same rows give the same body and ETags on every host. */
apr_status_t datos_answer_build(apr_pool_t *scratch, const datos_row_t *rows,
                                int n, const datos_answer_opts_t *opts,
                                datos_answer_t **out, datos_err_t *err);

/* Frees an answer (its pool); NULL-safe. Any thread may call it. */
void datos_answer_free(datos_answer_t *a);

/* The slice ?limit=limit serves: min(limit, n) rows (0 for a negative
 * limit). The functions below taking k clamp it the same way, so k beyond
 * n means the whole answer. */
int datos_answer_rows(const datos_answer_t *a, int limit);

/* The body of the slice of k rows is body[0..datos_answer_slice_len(a,k) - 2)
 * followed by "]}". */
apr_size_t datos_answer_slice_len(const datos_answer_t *a, int k);

/* The quoted strong ETag of the slice of k rows (NUL-terminated). */
const char *datos_answer_etag(const datos_answer_t *a, int k);

/* The gzip variant of the slice of k rows, NULL when there is none. */
const datos_answer_gz_t *datos_answer_gzip(const datos_answer_t *a, int k);

/* Writes the gzip ETag of the slice of k rows: the plain one with "-gz"
 * before the closing quote. buf must hold DATOS_ETAG_GZ_SIZE bytes. */
void datos_answer_etag_gz(const datos_answer_t *a, int k,
                          char buf[DATOS_ETAG_GZ_SIZE]);

/* The constant parts of every gzip variant. */
const unsigned char *datos_answer_gzip_header(apr_size_t *len);
const unsigned char *datos_answer_gzip_tail(apr_size_t *len);

/* ------------------------------------------------------------ envelope */

/* The answer as bytes, for a socache provider or the state file: a magic
 * and format version, the fetch time, the watermark, the offsets, the
 * ETags, the gzip variants and the body, closed by the seal of everything
 * before it (with seal's secret, for seal's cache key). The bytes live in
 * p. */
apr_status_t datos_answer_encode(apr_pool_t *p, const datos_answer_t *a,
                                 const datos_seal_t *seal, const char **bytes,
                                 apr_size_t *len, datos_err_t *err);

/* Seals again, for another tier, an envelope datos_answer_encode made:
 * its last DATOS_SEAL_LEN bytes are replaced by seal's. */
apr_status_t datos_answer_reseal(char *bytes, apr_size_t len,
                                 const datos_seal_t *seal);

/* The largest envelope an answer within these bounds can take, for the
 * retrieve buffer of a socache provider: any answer whose body is at most
 * max_payload bytes, with at most max_rows rows and gzip_count gzip limits.
 * Saturates at APR_SIZE_MAX rather than wrapping. */
apr_size_t datos_answer_envelope_max(apr_size_t max_payload, int max_rows,
                                     int gzip_count);

/* Reads an envelope back into an answer in a pool of its own, taking its
 * own copy of the bytes (scratch as for datos_answer_build). Nothing is
 * trusted before the seal matches: an envelope sealed with another secret
 * or for another key, or changed in any byte, is DATOS_EAUTH with reason
 * DATOS_REASON_SEAL. Anything else but an intact envelope of this format
 * version (cut short, another version, offsets out of order or out of
 * range) is DATOS_EMALFORMED. Both with a message saying what is wrong.
 * The fetch time is returned as written: whether it may be believed is
 * the caller's rule (datos_policy_fetched_ok). */
apr_status_t datos_answer_decode(apr_pool_t *scratch, const char *bytes,
                                 apr_size_t len, const datos_seal_t *seal,
                                 datos_answer_t **out, datos_err_t *err);

#endif
