/* datos_answer.c - one /datos answer: rendered once, served as slices with
 * ETags and gzip variants computed here, and its byte envelope.
 *
 * Everything a request needs is computed when the answer is built (once per
 * freshness window), so serving a slice is pointer arithmetic: no hashing,
 * no compression, no JSON.
 *
 * Envelope, format version 2 (all integers little endian, no padding):
 *
 *   offset  size            field
 *   0       8               magic 89 'D' 'A' 'T' 'O' 'S' 0D 0A
 *   8       4               format version (2)
 *   12      4               flags (0)
 *   16      8               fetched, microseconds since the epoch (signed)
 *   24      8               watermark_us (signed)
 *   32      4               n, rows held
 *   36      4               max_rows
 *   40      4               gz_count
 *   44      4               reserved (0)
 *   48      8               body_len
 *   56      8               deflate_len
 *   64      8 * (n + 1)     row_end[0..n]
 *   ..      16 * (n + 1)    ETag digests (the hex text is rebuilt on decode)
 *   ..      24 * gz_count   gzip variants: rows u32, reserved u32 (0),
 *                           end u64, trailer[8] (CRC-32, length)
 *   ..      body_len        body (without its NUL)
 *   ..      deflate_len     raw deflate bytes
 *   len-32  32              seal of every byte before it: HMAC-SHA256
 *                           with the tier's secret over the cache key and
 *                           the bytes (datos_trust.h)
 *
 * Version 1 closed with a plain SHA-256, which anyone can compute: such
 * an envelope is refused like any other format.
 *
 * The magic starts with a byte above 0x7F and ends in CR LF, so a copy
 * mangled by a text-mode transfer fails at once. The envelope's length is
 * implied by its fields, and must match exactly.
 */
#include <limits.h>
#include <string.h>
#include <apr_allocator.h>
#include <apr_strings.h>
#include <openssl/evp.h>
#include <zlib.h>

#include "datos_answer.h"
#include "datos_trust.h"

#define BODY_HEAD       "{\"datos\":["
#define BODY_HEAD_LEN   10
#define SEAL_LEN        DATOS_SEAL_LEN
#define ETAG_DIGEST_LEN 16

#define ENV_VERSION    2
#define ENV_HEADER_LEN 64
#define ENV_ROW_LEN    (8 + ETAG_DIGEST_LEN)
#define ENV_GZ_LEN     24

/* zlib's default level. Compression is most of a build's time (about
 * 20-45 ms for a 1 MiB answer, against 5-8 ms at level 1), but it runs once
 * per freshness window while every hit sends its result: at level 1 a
 * text-like 1 MiB answer came out 47% larger. */
#define DEFLATE_LEVEL 6

/* The answer's allocator keeps at most this much freed memory; the answer
 * never frees anything before it goes, so this only stops a large answer's
 * blocks from lingering in a free list once its pool is destroyed. */
#define ANSWER_MAX_FREE 8192

static const unsigned char env_magic[8] = {0x89, 'D', 'A',  'T',
                                           'O',  'S', 0x0D, 0x0A};

/* No name, no time (mtime 0), so every host builds the same bytes for the
 * same rows; XFL 0 as for a default level; OS 3 (Unix) as zlib writes. */
static const unsigned char gzip_header[10] = {0x1f, 0x8b, 0x08, 0x00, 0x00,
                                              0x00, 0x00, 0x00, 0x00, 0x03};

/* A final stored block (BFINAL 1, BTYPE 00, padding to the byte boundary
 * the sync flush left), LEN 2, NLEN ~2, then the two bytes. */
static const unsigned char gzip_tail[7] = {0x01, 0x02, 0x00, 0xfd,
                                           0xff, ']',  '}'};

static const char hexdigits[] = "0123456789abcdef";

/* ----------------------------------------------------------- helpers */

static void put_u32(unsigned char *o, apr_uint32_t v)
{
    o[0] = (unsigned char)v;
    o[1] = (unsigned char)(v >> 8);
    o[2] = (unsigned char)(v >> 16);
    o[3] = (unsigned char)(v >> 24);
}

static void put_u64(unsigned char *o, apr_uint64_t v)
{
    put_u32(o, (apr_uint32_t)v);
    put_u32(o + 4, (apr_uint32_t)(v >> 32));
}

static apr_uint32_t get_u32(const unsigned char *s)
{
    return (apr_uint32_t)s[0] | (apr_uint32_t)s[1] << 8
           | (apr_uint32_t)s[2] << 16 | (apr_uint32_t)s[3] << 24;
}

static apr_uint64_t get_u64(const unsigned char *s)
{
    return (apr_uint64_t)get_u32(s) | (apr_uint64_t)get_u32(s + 4) << 32;
}

/* Overflow-checked size arithmetic: 0 when the result does not fit. */
static int mul_ok(apr_uint64_t a, apr_uint64_t b, apr_uint64_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}

static int add_ok(apr_uint64_t a, apr_uint64_t b, apr_uint64_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}

static void etag_format(char *o, const unsigned char *digest)
{
    int i;

    *o++ = '"';
    for (i = 0; i < ETAG_DIGEST_LEN; i++) {
        *o++ = hexdigits[digest[i] >> 4];
        *o++ = hexdigits[digest[i] & 15];
    }
    *o++ = '"';
    *o = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* The digest back from an ETag this file formatted. */
static void etag_digest(const char *etag, unsigned char *digest)
{
    int i;

    for (i = 0; i < ETAG_DIGEST_LEN; i++) {
        digest[i] = (unsigned char)(hexval(etag[1 + 2 * i]) << 4
                                    | hexval(etag[2 + 2 * i]));
    }
}

/* A bound on the raw deflate of len bytes with `flushes` sync flushes, at
 * any level and strategy with memLevel 8 (as compress_body sets it). zlib
 * ends a block after at most 16383 symbols, at a flush or at the end, and
 * emits each block as the cheapest of stored, fixed or dynamic codes (the
 * stored form only when it is no larger than the others, give or take
 * rounding), so no block costs more than its fixed-code form: at most 9
 * bits per byte (a literal is 8 or 9 bits, every match zlib keeps costs
 * less per byte) plus a header, an end code and rounding, under 4 bytes.
 * Every block but those a flush or the end cut covers at least 16383
 * bytes, so len >> 10 pays for their overhead; each flush adds one cut
 * block and an empty stored block (at most 6 bytes). */
static apr_uint64_t deflate_bound(apr_uint64_t len, apr_uint64_t flushes)
{
    return len + (len >> 3) + (len >> 10) + 16 * flushes + 32;
}

/* ------------------------------------------------------- the answer */

static apr_status_t answer_new(datos_answer_t **out)
{
    apr_allocator_t *alloc = NULL;
    apr_pool_t *pool = NULL;
    datos_answer_t *a;
    apr_status_t rv;

    *out = NULL;
    rv = apr_allocator_create(&alloc);
    if (rv != APR_SUCCESS) {
        goto leave;
    }
    apr_allocator_max_free_set(alloc, ANSWER_MAX_FREE);
    /* Unmanaged: no parent to lock or to outlive, so the thread that lets
     * go of the answer last may destroy it, whichever thread built it. */
    rv = apr_pool_create_unmanaged_ex(&pool, NULL, alloc);
    if (rv != APR_SUCCESS) {
        apr_allocator_destroy(alloc);
        goto leave;
    }
    apr_allocator_owner_set(alloc, pool);
    a = apr_pcalloc(pool, sizeof(*a));
    if (!a) {
        apr_pool_destroy(pool);
        rv = APR_ENOMEM;
        goto leave;
    }
    a->pool = pool;
    *out = a;

leave:
    return rv;
}

void datos_answer_free(datos_answer_t *a)
{
    if (a) {
        apr_pool_destroy(a->pool);
    }
}

/* An unmanaged pool has no abort function, so a failed allocation comes
 * back as NULL and the callers check the ones that scale with the answer. */
static void *answer_alloc(datos_answer_t *a, apr_size_t len)
{
    return apr_palloc(a->pool, len ? len : 1);
}

/* Every slice's ETag in one pass: a running digest of the body so far,
 * copied at each row end and finished with the "]}" that closes it. */
static apr_status_t compute_etags(apr_pool_t *scratch, datos_answer_t *a,
                                  datos_err_t *err)
{
    EVP_MD_CTX *run = EVP_MD_CTX_new();
    EVP_MD_CTX *fin = EVP_MD_CTX_new();
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen;
    apr_size_t prev = 0;
    char *etags;
    apr_status_t rv = APR_SUCCESS;
    int k;

    etags = answer_alloc(a, (apr_size_t)(a->n + 1) * DATOS_ETAG_SIZE);
    if (!run || !fin || !etags) {
        rv = datos_err_set(err, scratch, APR_ENOMEM, 0, NULL,
                           "no memory for the answer's ETags");
        goto leave;
    }
    if (!EVP_DigestInit_ex(run, EVP_sha256(), NULL)) {
        goto failed;
    }
    for (k = 0; k <= a->n; k++) {
        if (!EVP_DigestUpdate(run, a->body + prev, a->row_end[k] - prev)
            || !EVP_MD_CTX_copy_ex(fin, run) || !EVP_DigestUpdate(fin, "]}", 2)
            || !EVP_DigestFinal_ex(fin, md, &mdlen)) {
            goto failed;
        }
        prev = a->row_end[k];
        etag_format(etags + (apr_size_t)k * DATOS_ETAG_SIZE, md);
    }
    a->etags = etags;
    goto leave;

failed:
    rv = datos_err_set(err, scratch, APR_EGENERAL, 0, NULL,
                       "SHA-256 of the answer failed");
leave:
    EVP_MD_CTX_free(run);
    EVP_MD_CTX_free(fin);
    return rv;
}

/* The rows each gzip variant holds, sorted, each once. */
static int gzip_targets(const datos_answer_opts_t *opts, int n,
                        int targets[DATOS_ANSWER_GZIP_MAX])
{
    int count = 0, i, j, r;

    for (i = 0; i < opts->gzip_count; i++) {
        r = opts->gzip_limits[i] > n ? n : opts->gzip_limits[i];
        for (j = count; j > 0 && targets[j - 1] > r; j--) {
        }
        if (j > 0 && targets[j - 1] == r) {
            continue;
        }
        memmove(targets + j + 1, targets + j,
                sizeof(*targets) * (size_t)(count - j));
        targets[j] = r;
        count++;
    }
    return count;
}

/* Compresses the body once, up to the rows of the largest variant, with a
 * sync flush after the rows of each; a variant's stream is the bytes up to
 * its flush point plus the constant tail and its own trailer. The stream is
 * never finished: nothing past the last flush point would ever be sent. */
static apr_status_t compress_body(apr_pool_t *scratch, datos_answer_t *a,
                                  const int *targets, int count,
                                  datos_err_t *err)
{
    z_stream zs;
    int zinit = 0, zrv, j;
    unsigned char *out = NULL;
    apr_uint64_t cap;
    apr_size_t done = 0, end_in;
    uLong crc = crc32(0L, Z_NULL, 0), slice_crc;
    datos_answer_gz_t *gz;
    char *copy;
    apr_status_t rv = APR_SUCCESS;

    if (!count) {
        goto leave;
    }
    /* One byte beyond the bound, so a full buffer means the bound broke
     * rather than the end of the output falling exactly on it. */
    cap =
        deflate_bound(a->row_end[targets[count - 1]], (apr_uint64_t)count) + 1;
    gz = answer_alloc(a, sizeof(*gz) * (apr_size_t)count);
    if (cap > UINT_MAX) {
        rv = datos_err_set(err, scratch, APR_EINVAL, 0, NULL,
                           "answer too large to compress");
        goto leave;
    }
    out = apr_palloc(scratch, (apr_size_t)cap);
    if (!gz || !out) {
        rv = datos_err_set(err, scratch, APR_ENOMEM, 0, NULL,
                           "no memory to compress the answer");
        goto leave;
    }
    memset(&zs, 0, sizeof(zs));
    /* Raw deflate (negative window bits): the gzip header and trailer are
     * written per variant, since each has its own CRC and length. */
    if (deflateInit2(&zs, DEFLATE_LEVEL, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY)
        != Z_OK) {
        rv = datos_err_set(err, scratch, APR_ENOMEM, 0, NULL,
                           "deflateInit2 failed");
        goto leave;
    }
    zinit = 1;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    for (j = 0; j < count; j++) {
        end_in = a->row_end[targets[j]];
        zs.next_in = (Bytef *)(a->body + done);
        zs.avail_in = (uInt)(end_in - done);
        zrv = deflate(&zs, Z_SYNC_FLUSH);
        /* With room to spare, one call takes all input and flushes. */
        if (zrv != Z_OK || zs.avail_in != 0 || zs.avail_out == 0) {
            rv = datos_err_set(err, scratch, APR_EGENERAL, 0, NULL,
                               "deflate failed (%d) or outgrew its bound", zrv);
            goto leave;
        }
        crc = crc32_z(crc, (const Bytef *)a->body + done, end_in - done);
        done = end_in;
        slice_crc = crc32(crc, (const Bytef *)"]}", 2);
        gz[j].rows = targets[j];
        gz[j].end = (apr_size_t)(cap - zs.avail_out);
        put_u32(gz[j].trailer, (apr_uint32_t)slice_crc);
        put_u32(gz[j].trailer + 4, (apr_uint32_t)(end_in + 2));
        gz[j].len = sizeof(gzip_header) + gz[j].end + sizeof(gzip_tail) + 8;
    }
    copy = answer_alloc(a, gz[count - 1].end);
    if (!copy) {
        rv = datos_err_set(err, scratch, APR_ENOMEM, 0, NULL,
                           "no memory to compress the answer");
        goto leave;
    }
    memcpy(copy, out, gz[count - 1].end);
    a->deflate = copy;
    a->deflate_len = gz[count - 1].end;
    a->gz = gz;
    a->gz_count = count;

leave:
    if (zinit) {
        /* Z_DATA_ERROR here only says the stream was never finished. */
        deflateEnd(&zs);
    }
    return rv;
}

apr_status_t datos_answer_build(apr_pool_t *scratch, const datos_row_t *rows,
                                int n, const datos_answer_opts_t *opts,
                                datos_answer_t **out, datos_err_t *err)
{
    datos_rendered_t *r;
    datos_answer_t *a = NULL;
    int targets[DATOS_ANSWER_GZIP_MAX], count, i;
    apr_size_t *row_end;
    char *body;
    apr_status_t rv = APR_SUCCESS;

    *out = NULL;
    if (!opts || n < 0 || (n > 0 && !rows) || opts->max_rows < 1
        || opts->max_rows >= INT_MAX || opts->gzip_count < 0
        || opts->gzip_count > DATOS_ANSWER_GZIP_MAX) {
        rv = datos_err_set(err, scratch, APR_EINVAL, 0, NULL,
                           "answer options out of range");
        goto leave;
    }
    for (i = 0; i < opts->gzip_count; i++) {
        if (opts->gzip_limits[i] < 1) {
            rv = datos_err_set(err, scratch, APR_EINVAL, 0, NULL,
                               "gzip limit %d is not a row count",
                               opts->gzip_limits[i]);
            goto leave;
        }
    }
    if (n > opts->max_rows) {
        n = opts->max_rows;
    }
    /* Rendered in scratch and copied, so the answer keeps only what it
     * serves, not the renderer's working arrays. */
    rv = datos_record_render(scratch, rows, n, &r, err);
    if (rv != APR_SUCCESS) {
        goto leave;
    }
    rv = answer_new(&a);
    if (rv != APR_SUCCESS) {
        datos_err_set(err, scratch, rv, 0, NULL, "no pool for the answer");
        goto leave;
    }
    a->fetched = opts->fetched;
    a->watermark_us = opts->watermark_us;
    a->n = n;
    a->max_rows = opts->max_rows;
    body = answer_alloc(a, r->len + 1);
    row_end = answer_alloc(a, sizeof(*row_end) * (apr_size_t)(n + 1));
    if (!body || !row_end) {
        rv = datos_err_set(err, scratch, APR_ENOMEM, 0, NULL,
                           "no memory for the answer");
        goto leave;
    }
    memcpy(body, r->body, r->len + 1);
    memcpy(row_end, r->row_end, sizeof(*row_end) * (apr_size_t)(n + 1));
    a->body = body;
    a->body_len = r->len;
    a->row_end = row_end;
    rv = compute_etags(scratch, a, err);
    if (rv != APR_SUCCESS) {
        goto leave;
    }
    count = gzip_targets(opts, n, targets);
    rv = compress_body(scratch, a, targets, count, err);

leave:
    if (rv != APR_SUCCESS) {
        datos_answer_free(a);
    }
    else {
        *out = a;
    }
    return rv;
}

/* ------------------------------------------------------- serving */

static int clamp_rows(const datos_answer_t *a, int k)
{
    return k < 0 ? 0 : k > a->n ? a->n : k;
}

int datos_answer_rows(const datos_answer_t *a, int limit)
{
    return clamp_rows(a, limit);
}

apr_size_t datos_answer_slice_len(const datos_answer_t *a, int k)
{
    return a->row_end[clamp_rows(a, k)] + 2;
}

const char *datos_answer_etag(const datos_answer_t *a, int k)
{
    return a->etags + (apr_size_t)clamp_rows(a, k) * DATOS_ETAG_SIZE;
}

const datos_answer_gz_t *datos_answer_gzip(const datos_answer_t *a, int k)
{
    int i;

    k = clamp_rows(a, k);
    for (i = 0; i < a->gz_count; i++) {
        if (a->gz[i].rows == k) {
            return &a->gz[i];
        }
    }
    return NULL;
}

void datos_answer_etag_gz(const datos_answer_t *a, int k,
                          char buf[DATOS_ETAG_GZ_SIZE])
{
    memcpy(buf, datos_answer_etag(a, k), DATOS_ETAG_SIZE - 2);
    memcpy(buf + DATOS_ETAG_SIZE - 2, "-gz\"", 5);
}

const unsigned char *datos_answer_gzip_header(apr_size_t *len)
{
    *len = sizeof(gzip_header);
    return gzip_header;
}

const unsigned char *datos_answer_gzip_tail(apr_size_t *len)
{
    *len = sizeof(gzip_tail);
    return gzip_tail;
}

/* ------------------------------------------------------- envelope */

apr_size_t datos_answer_envelope_max(apr_size_t max_payload, int max_rows,
                                     int gzip_count)
{
    apr_uint64_t rows = max_rows > 0 ? (apr_uint64_t)max_rows : 0;
    apr_uint64_t g = gzip_count < 0 ? 0
                     : gzip_count > DATOS_ANSWER_GZIP_MAX
                         ? DATOS_ANSWER_GZIP_MAX
                         : (apr_uint64_t)gzip_count;
    apr_uint64_t total, part;

    /* Saturates: "no bound smaller than the largest size" is still true. */
    if (max_payload > (APR_UINT64_MAX >> 2)
        || !mul_ok(rows + 1, ENV_ROW_LEN, &part)
        || !add_ok(ENV_HEADER_LEN + SEAL_LEN + g * ENV_GZ_LEN, part, &total)
        || !add_ok(total, max_payload, &total)
        || !add_ok(total, g ? deflate_bound(max_payload, g) : 0, &total)
        || total > APR_SIZE_MAX) {
        return APR_SIZE_MAX;
    }
    return (apr_size_t)total;
}

apr_status_t datos_answer_encode(apr_pool_t *p, const datos_answer_t *a,
                                 const datos_seal_t *seal, const char **bytes,
                                 apr_size_t *len, datos_err_t *err)
{
    apr_uint64_t total =
        ENV_HEADER_LEN + SEAL_LEN + (apr_uint64_t)(a->n + 1) * ENV_ROW_LEN
        + (apr_uint64_t)a->gz_count * ENV_GZ_LEN + a->body_len + a->deflate_len;
    unsigned char *buf, *o;
    apr_status_t rv = APR_SUCCESS;
    int k;

    *bytes = NULL;
    *len = 0;
    buf = apr_palloc(p, (apr_size_t)total);
    if (!buf) {
        rv = datos_err_set(err, p, APR_ENOMEM, 0, NULL,
                           "no memory for the envelope");
        goto leave;
    }
    memcpy(buf, env_magic, sizeof(env_magic));
    put_u32(buf + 8, ENV_VERSION);
    put_u32(buf + 12, 0);
    put_u64(buf + 16, (apr_uint64_t)a->fetched);
    put_u64(buf + 24, (apr_uint64_t)a->watermark_us);
    put_u32(buf + 32, (apr_uint32_t)a->n);
    put_u32(buf + 36, (apr_uint32_t)a->max_rows);
    put_u32(buf + 40, (apr_uint32_t)a->gz_count);
    put_u32(buf + 44, 0);
    put_u64(buf + 48, a->body_len);
    put_u64(buf + 56, a->deflate_len);
    o = buf + ENV_HEADER_LEN;
    for (k = 0; k <= a->n; k++, o += 8) {
        put_u64(o, a->row_end[k]);
    }
    for (k = 0; k <= a->n; k++, o += ETAG_DIGEST_LEN) {
        etag_digest(a->etags + (apr_size_t)k * DATOS_ETAG_SIZE, o);
    }
    for (k = 0; k < a->gz_count; k++, o += ENV_GZ_LEN) {
        put_u32(o, (apr_uint32_t)a->gz[k].rows);
        put_u32(o + 4, 0);
        put_u64(o + 8, a->gz[k].end);
        memcpy(o + 16, a->gz[k].trailer, 8);
    }
    memcpy(o, a->body, a->body_len);
    o += a->body_len;
    if (a->deflate_len) {
        memcpy(o, a->deflate, a->deflate_len);
        o += a->deflate_len;
    }
    if (datos_seal_mac(seal, buf, (apr_size_t)(o - buf), o) != APR_SUCCESS) {
        rv = datos_err_set(err, p, APR_EGENERAL, 0, NULL,
                           "the envelope's seal cannot be computed");
        goto leave;
    }
    *bytes = (const char *)buf;
    *len = (apr_size_t)total;

leave:
    return rv;
}

apr_status_t datos_answer_reseal(char *bytes, apr_size_t len,
                                 const datos_seal_t *seal)
{
    unsigned char *b = (unsigned char *)bytes;

    if (!b || len < ENV_HEADER_LEN + SEAL_LEN) {
        return APR_EINVAL;
    }
    return datos_seal_mac(seal, b, len - SEAL_LEN, b + len - SEAL_LEN);
}

/* The structure of an envelope whose checksum matched, checked field by
 * field before any of it is used: returns what is wrong, or NULL. */
static const char *envelope_problem(apr_pool_t *scratch, const unsigned char *b,
                                    apr_size_t len, apr_uint64_t *body_off)
{
    apr_uint64_t n, max_rows, gz_count, body_len, deflate_len, need;
    apr_uint64_t prev, end, rows, prev_rows, prev_end, k, min_row, end_in;
    uLong crc;
    const unsigned char *row_end, *gz, *body, *defl;

    if (get_u32(b + 12) != 0 || get_u32(b + 44) != 0) {
        return "unknown flags";
    }
    n = get_u32(b + 32);
    max_rows = get_u32(b + 36);
    gz_count = get_u32(b + 40);
    body_len = get_u64(b + 48);
    deflate_len = get_u64(b + 56);
    if (max_rows < 1 || max_rows >= INT_MAX || n > max_rows) {
        return apr_psprintf(
            scratch, "%" APR_UINT64_T_FMT " rows of at most %" APR_UINT64_T_FMT,
            n, max_rows);
    }
    if (gz_count > DATOS_ANSWER_GZIP_MAX || gz_count > n + 1
        || (gz_count == 0) != (deflate_len == 0)) {
        return "gzip variants out of range";
    }
    if (!mul_ok(n + 1, ENV_ROW_LEN, &need)
        || !add_ok(need, ENV_HEADER_LEN + SEAL_LEN + gz_count * ENV_GZ_LEN,
                   &need)
        || !add_ok(need, body_len, &need) || !add_ok(need, deflate_len, &need)
        || need != len) {
        return "lengths do not add up to the envelope's size";
    }
    row_end = b + ENV_HEADER_LEN;
    gz = row_end + (n + 1) * ENV_ROW_LEN;
    body = gz + gz_count * ENV_GZ_LEN;
    defl = body + body_len;
    if (body_len < BODY_HEAD_LEN + 2
        || memcmp(body, BODY_HEAD, BODY_HEAD_LEN) != 0
        || memcmp(body + body_len - 2, "]}", 2) != 0
        || memchr(body, '\0', body_len)) {
        return "body is not a /datos document";
    }
    /* Each row starts with '{' (after a comma unless it comes first) and
     * ends with '}', so every slice is a document's rows cut whole. */
    if (get_u64(row_end) != BODY_HEAD_LEN) {
        return "first row offset is wrong";
    }
    prev = BODY_HEAD_LEN;
    for (k = 1; k <= n; k++) {
        end = get_u64(row_end + 8 * k);
        min_row = 2 + (k > 1);
        if (end > body_len - 2 || end < prev || end - prev < min_row
            || body[prev + (k > 1)] != '{' || (k > 1 && body[prev] != ',')
            || body[end - 1] != '}') {
            return apr_psprintf(scratch,
                                "row %" APR_UINT64_T_FMT " offset is wrong", k);
        }
        prev = end;
    }
    if (prev + 2 != body_len) {
        return "rows do not end where the body does";
    }
    /* The CRC-32 too (one pass over the compressed rows, far cheaper than
     * the SHA-256 already paid): a wrong one would have clients reject the
     * stream, while the plain answer stayed fine. */
    prev_rows = 0;
    prev_end = 0;
    prev = 0;
    crc = crc32(0L, Z_NULL, 0);
    for (k = 0; k < gz_count; k++) {
        const unsigned char *e = gz + k * ENV_GZ_LEN;

        rows = get_u32(e);
        end = get_u64(e + 8);
        if (get_u32(e + 4) != 0 || rows > n || (k && rows <= prev_rows)
            || end <= prev_end || end < 4 || end > deflate_len
            || (k == gz_count - 1 && end != deflate_len)
            || memcmp(defl + end - 4, "\0\0\xff\xff", 4) != 0
            || get_u32(e + 20)
                   != (apr_uint32_t)(get_u64(row_end + 8 * rows) + 2)) {
            return apr_psprintf(
                scratch, "gzip variant %" APR_UINT64_T_FMT " is inconsistent",
                k);
        }
        end_in = get_u64(row_end + 8 * rows);
        crc = crc32_z(crc, body + prev, (z_size_t)(end_in - prev));
        prev = end_in;
        if (get_u32(e + 16)
            != (apr_uint32_t)crc32(crc, (const Bytef *)"]}", 2)) {
            return apr_psprintf(
                scratch,
                "gzip variant %" APR_UINT64_T_FMT " has the wrong CRC-32", k);
        }
        prev_rows = rows;
        prev_end = end;
    }
    *body_off = (apr_uint64_t)(body - b);
    return NULL;
}

apr_status_t datos_answer_decode(apr_pool_t *scratch, const char *bytes,
                                 apr_size_t len, const datos_seal_t *seal,
                                 datos_answer_t **out, datos_err_t *err)
{
    const unsigned char *b = (const unsigned char *)bytes;
    const char *problem;
    apr_uint64_t body_off = 0;
    datos_answer_t *a = NULL;
    apr_size_t *row_end, body_len, deflate_len;
    datos_answer_gz_t *gz = NULL;
    char *body, *etags, *defl = NULL;
    const unsigned char *s;
    apr_status_t rv = APR_SUCCESS;
    int n, gz_count, k;

    *out = NULL;
    if (!b || len < ENV_HEADER_LEN + SEAL_LEN) {
        rv = datos_err_set(
            err, scratch, DATOS_EMALFORMED, 0, NULL,
            "answer envelope cut short (%" APR_SIZE_T_FMT " bytes)", len);
        goto leave;
    }
    if (memcmp(b, env_magic, sizeof(env_magic)) != 0) {
        rv = datos_err_set(err, scratch, DATOS_EMALFORMED, 0, NULL,
                           "not an answer envelope");
        goto leave;
    }
    if (get_u32(b + 8) != ENV_VERSION) {
        rv = datos_err_set(err, scratch, DATOS_EMALFORMED, 0, NULL,
                           "answer envelope format %u, this build reads %d",
                           (unsigned)get_u32(b + 8), ENV_VERSION);
        goto leave;
    }
    if (!datos_seal_check(seal, b, len - SEAL_LEN, b + len - SEAL_LEN)) {
        rv = datos_err_set(err, scratch, DATOS_EAUTH, 0, DATOS_REASON_SEAL,
                           "answer envelope's seal does not match: not "
                           "written with this secret under this key "
                           "(forged, copied from another table or host, "
                           "cut or corrupted)");
        goto leave;
    }
    problem = envelope_problem(scratch, b, len, &body_off);
    if (problem) {
        rv = datos_err_set(err, scratch, DATOS_EMALFORMED, 0, NULL,
                           "answer envelope: %s", problem);
        goto leave;
    }
    n = (int)get_u32(b + 32);
    gz_count = (int)get_u32(b + 40);
    body_len = (apr_size_t)get_u64(b + 48);
    deflate_len = (apr_size_t)get_u64(b + 56);

    rv = answer_new(&a);
    if (rv != APR_SUCCESS) {
        datos_err_set(err, scratch, rv, 0, NULL, "no pool for the answer");
        goto leave;
    }
    a->fetched = (apr_time_t)get_u64(b + 16);
    a->watermark_us = (apr_int64_t)get_u64(b + 24);
    a->n = n;
    a->max_rows = (int)get_u32(b + 36);
    row_end = answer_alloc(a, sizeof(*row_end) * (apr_size_t)(n + 1));
    etags = answer_alloc(a, (apr_size_t)(n + 1) * DATOS_ETAG_SIZE);
    body = answer_alloc(a, body_len + 1);
    if (gz_count) {
        gz = answer_alloc(a, sizeof(*gz) * (apr_size_t)gz_count);
        defl = answer_alloc(a, deflate_len);
    }
    if (!row_end || !etags || !body || (gz_count && (!gz || !defl))) {
        rv = datos_err_set(err, scratch, APR_ENOMEM, 0, NULL,
                           "no memory for the answer");
        goto leave;
    }
    s = b + ENV_HEADER_LEN;
    for (k = 0; k <= n; k++, s += 8) {
        row_end[k] = (apr_size_t)get_u64(s);
    }
    for (k = 0; k <= n; k++, s += ETAG_DIGEST_LEN) {
        etag_format(etags + (apr_size_t)k * DATOS_ETAG_SIZE, s);
    }
    for (k = 0; k < gz_count; k++, s += ENV_GZ_LEN) {
        gz[k].rows = (int)get_u32(s);
        gz[k].end = (apr_size_t)get_u64(s + 8);
        memcpy(gz[k].trailer, s + 16, 8);
        gz[k].len = sizeof(gzip_header) + gz[k].end + sizeof(gzip_tail) + 8;
    }
    memcpy(body, b + body_off, body_len);
    body[body_len] = '\0';
    if (gz_count) {
        memcpy(defl, b + body_off + body_len, deflate_len);
    }
    a->row_end = row_end;
    a->etags = etags;
    a->body = body;
    a->body_len = body_len;
    a->deflate = defl;
    a->deflate_len = deflate_len;
    a->gz = gz;
    a->gz_count = gz_count;

leave:
    if (rv != APR_SUCCESS) {
        datos_answer_free(a);
    }
    else {
        *out = a;
    }
    return rv;
}
