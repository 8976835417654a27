/* test_crypt.c - base64url, private keys, RS256 JWTs, SHA-256 and CA
 * bundles. */
#include <string.h>
#include <unistd.h>
#include <openssl/err.h>

#include "dt_support.h"
#include <apr_strings.h>
#include "datos_base64.h"
#include "datos_crypt.h"

/* The JWT-bearer assertion for the committed test key at a fixed time,
 * computed independently with the openssl and basenc commands:
 *   printf %s "$header" | basenc --base64url | tr -d = ...
 *   printf %s "$input" | openssl dgst -sha256 -sign test_key.pem
 * RSASSA-PKCS1-v1_5 is deterministic, so the whole token is pinned. */
static const char expected_jwt[] =
    "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6IjAxMjM0NTY3ODlhYmNk"
    "ZWYifQ.eyJpc3MiOiJsb2FkZXJAZGF0b3MtdGVzdC1wcm9qZWN0LmlhbS5nc2Vyd"
    "mljZWFjY291bnQuY29tIiwic2NvcGUiOiJodHRwczovL3d3dy5nb29nbGVhcGlzL"
    "mNvbS9hdXRoL2JpZ3F1ZXJ5IiwiYXVkIjoiaHR0cHM6Ly9vYXV0aDIuZ29vZ2xlY"
    "XBpcy5jb20vdG9rZW4iLCJpYXQiOjE3MDUyNDA3OTAsImV4cCI6MTcwNTI0NDM5M"
    "H0.zjqBlh1Z5CJec7v0zN1TkgK_nVcXCnzdaa8g5OJtQPOuLkfcN9xz5zpFxKecQ"
    "oaGXSCVrMXUnFtDD4aAORGYlZycaNROegg90Yl421_UoUOvbgj8gt2xyysIQDlzP"
    "iOkl4ak5DVER15DtP8tbDf5ctsJ7VET5vi3mEyMuZUGoUKsHtk3-zJzJ6eYy1DLF"
    "If_5-HbYloZB4u70HcL0umgNxZoek510svFxapLxER_zTtbnegr1NeFdyfWqLya7"
    "d1dNtTVEh73TUqUgVhGPquTcdh5qGj8UDgHBUvkvtUsVO9FtIA6tUWXSuCaMeN2N"
    "wDSv3oSD3LrtgohHB2rRDV0Ew";

#define FIXED_NOW apr_time_from_sec(1705240800) /* 2024-01-14T14:00:00Z */

static void b64_encodes(const char *in, const char *out)
{
    apr_pool_t *p;
    apr_pool_create(&p, NULL);
    assert_string_equal(
        datos_base64url_encode(p, (const unsigned char *)in, strlen(in)), out);
    apr_pool_destroy(p);
}

static void b64url_rfc4648_vectors(void **state)
{
    (void)state;
    /* RFC 4648 section 10, padding stripped as section 5 / RFC 7515 do. */
    b64_encodes("", "");
    b64_encodes("f", "Zg");
    b64_encodes("fo", "Zm8");
    b64_encodes("foo", "Zm9v");
    b64_encodes("foob", "Zm9vYg");
    b64_encodes("fooba", "Zm9vYmE");
    b64_encodes("foobar", "Zm9vYmFy");
}

static void b64url_alphabet(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    static const unsigned char bytes[] = {0xfb, 0xff, 0xbf};
    /* Standard base64 is "+/+/", the url alphabet "-_-_". */
    assert_string_equal(datos_base64url_encode(p, bytes, 3), "-_-_");
}

static void b64url_rfc7515_examples(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    /* RFC 7515 appendix A.1: the JOSE header and payload with their CRLFs. */
    static const char header[] = "{\"typ\":\"JWT\",\r\n \"alg\":\"HS256\"}";
    static const char payload[] = "{\"iss\":\"joe\",\r\n \"exp\":1300819380,"
                                  "\r\n \"http://example.com/is_root\":true}";
    unsigned char *out;
    apr_size_t n;

    assert_string_equal(datos_base64url_encode(p, (const unsigned char *)header,
                                               strlen(header)),
                        "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9");
    assert_string_equal(
        datos_base64url_encode(p, (const unsigned char *)payload,
                               strlen(payload)),
        "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6"
        "Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ");
    /* RFC 7515 appendix C: octets 3, 236, 255, 224, 193 <-> "A-z_4ME". */
    assert_int_equal(datos_base64_decode(p, "A-z_4ME", 7, &out, &n),
                     APR_SUCCESS);
    assert_int_equal(n, 5);
    assert_int_equal(out[0], 3);
    assert_int_equal(out[1], 236);
    assert_int_equal(out[2], 255);
    assert_int_equal(out[3], 224);
    assert_int_equal(out[4], 193);
    assert_int_equal(out[5], 0);
}

static void b64url_decode_forms(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    unsigned char *out;
    apr_size_t n;

    /* url-safe, standard, padded, unpadded */
    assert_int_equal(datos_base64_decode(p, "Zm9vYmE", 7, &out, &n),
                     APR_SUCCESS);
    assert_memory_equal(out, "fooba", 5);
    assert_int_equal(n, 5);
    assert_int_equal(datos_base64_decode(p, "Zm9vYmE=", 8, &out, &n),
                     APR_SUCCESS);
    assert_int_equal(n, 5);
    assert_int_equal(datos_base64_decode(p, "Zg==", 4, &out, &n), APR_SUCCESS);
    assert_int_equal(n, 1);
    assert_int_equal(out[0], 'f');
    assert_int_equal(datos_base64_decode(p, "+/+/", 4, &out, &n), APR_SUCCESS);
    assert_int_equal(n, 3);
    assert_int_equal(out[0], 0xfb);
    assert_int_equal(datos_base64_decode(p, "", 0, &out, &n), APR_SUCCESS);
    assert_int_equal(n, 0);

    /* rejected */
    assert_int_equal(datos_base64_decode(p, "Zm9v!", 5, &out, &n),
                     DATOS_EMALFORMED);
    assert_int_equal(datos_base64_decode(p, "Z", 1, &out, &n),
                     DATOS_EMALFORMED);
    assert_int_equal(datos_base64_decode(p, "Zg=", 3, &out, &n),
                     DATOS_EMALFORMED);
    assert_int_equal(datos_base64_decode(p, "Zg===", 5, &out, &n),
                     DATOS_EMALFORMED);
    assert_int_equal(datos_base64_decode(p, "Z=g=", 4, &out, &n),
                     DATOS_EMALFORMED);
    assert_int_equal(datos_base64_decode(p, "Zm 9v", 5, &out, &n),
                     DATOS_EMALFORMED);
}

/* Long data goes 16 characters at a time where the CPU allows: every
 * length and alignment, both alphabets (a URL-safe block falls back), and
 * one stray byte at every position, against APR's encoder. */
static void b64_decode_long(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    unsigned char data[200], *out;
    apr_size_t n, len, k, i;

    for (i = 0; i < sizeof(data); i++)
        data[i] = (unsigned char)(i * 37 + 11);
    for (len = 0; len <= sizeof(data); len += 7) {
        char *b64 = datos_base64_encode(p, data, len, &n), *url;

        assert_int_equal(datos_base64_decode(p, b64, n, &out, &k), APR_SUCCESS);
        assert_int_equal(k, len);
        assert_memory_equal(out, data, len);
        url = apr_pstrmemdup(p, b64, n);
        for (i = 0; i < n; i++)
            url[i] = url[i] == '+' ? '-' : url[i] == '/' ? '_' : url[i];
        assert_int_equal(datos_base64_decode(p, url, n, &out, &k), APR_SUCCESS);
        assert_int_equal(k, len);
        assert_memory_equal(out, data, len);
        for (i = 0; i < n && b64[i] != '='; i++) {
            char *bad = apr_pstrmemdup(p, b64, n);
            bad[i] = (char)(i % 3 == 0 ? 0xC3 : i % 3 == 1 ? '.' : '"');
            assert_int_equal(datos_base64_decode(p, bad, n, &out, &k),
                             DATOS_EMALFORMED);
        }
    }
}

static void pkey_good_and_bad(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    const char *pem = dt_test_key_pem(p);
    EVP_PKEY *key = NULL;
    datos_err_t err = {0};
    static const char garbage[] =
        "-----BEGIN PRIVATE KEY-----\nTUlJRXZRSUJBREFOQmdrcWhraUc5dzBC\n"
        "-----END PRIVATE KEY-----\n";

    datos_err_clear(&err);
    assert_int_equal(datos_pkey_from_pem(p, pem, strlen(pem), &key, &err),
                     APR_SUCCESS);
    assert_non_null(key);
    assert_int_equal(EVP_PKEY_get_bits(key), 2048);

    key = NULL;
    assert_int_equal(
        datos_pkey_from_pem(p, garbage, strlen(garbage), &key, &err),
        DATOS_ECONFIG);
    assert_null(key);
    assert_non_null(err.message);
    /* OpenSSL's reasons are there; the key text is not; and the thread's
     * error queue is left empty for mod_ssl. */
    assert_non_null(strstr(err.message, "cannot parse private key"));
    assert_null(strstr(err.message, "TUlJRXZR"));
    assert_int_equal(ERR_peek_error(), 0);

    assert_int_equal(datos_pkey_from_pem(p, "not a pem", 9, &key, &err),
                     DATOS_ECONFIG);
    assert_int_equal(ERR_peek_error(), 0);
}

static void pkey_not_rsa(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    const char *dir = dt_tmpdir(p), *path;
    char *pem;
    apr_size_t len;
    EVP_PKEY *key = NULL;
    datos_err_t err = {0};

    path = apr_pstrcat(p, dir, "/ec.pem", NULL);
    assert_int_equal(dt_system(p,
                               "openssl genpkey -algorithm EC -pkeyopt "
                               "ec_paramgen_curve:P-256 -out %s 2>/dev/null",
                               path),
                     0);
    pem = dt_read_file(p, path, &len);
    datos_err_clear(&err);
    assert_int_equal(datos_pkey_from_pem(p, pem, len, &key, &err),
                     DATOS_ECONFIG);
    assert_non_null(strstr(err.message, "not an RSA key"));
}

static void jwt_assertion_pinned(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    const char *pem = dt_test_key_pem(p);
    EVP_PKEY *key;
    datos_err_t err = {0};
    const char *jwt;

    datos_err_clear(&err);
    assert_int_equal(datos_pkey_from_pem(p, pem, strlen(pem), &key, &err),
                     APR_SUCCESS);
    assert_int_equal(
        datos_jwt_assertion(p, key, "0123456789abcdef",
                            "loader@datos-test-project.iam.gserviceaccount.com",
                            "https://www.googleapis.com/auth/bigquery",
                            "https://oauth2.googleapis.com/token", FIXED_NOW,
                            &jwt, &err),
        APR_SUCCESS);
    assert_string_equal(jwt, expected_jwt);
}

static void jwt_parts_and_openssl_verify(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    const char *pem = dt_test_key_pem(p), *dir = dt_tmpdir(p);
    EVP_PKEY *key;
    datos_err_t err = {0};
    const char *jwt, *dot1, *dot2;
    unsigned char *hdr, *claims, *sig;
    apr_size_t hn, cn, sn;

    datos_err_clear(&err);
    assert_int_equal(datos_pkey_from_pem(p, pem, strlen(pem), &key, &err),
                     APR_SUCCESS);
    assert_int_equal(datos_jwt_assertion(p, key, "kid-\"1\"", "a@b.example",
                                         "s1 s2", "http://127.0.0.1:9/token",
                                         apr_time_from_sec(1000000000), &jwt,
                                         &err),
                     APR_SUCCESS);
    dot1 = strchr(jwt, '.');
    assert_non_null(dot1);
    dot2 = strchr(dot1 + 1, '.');
    assert_non_null(dot2);
    assert_null(strchr(dot2 + 1, '.'));
    assert_null(strchr(jwt, '='));

    assert_int_equal(
        datos_base64_decode(p, jwt, (apr_size_t)(dot1 - jwt), &hdr, &hn),
        APR_SUCCESS);
    assert_string_equal(
        (char *)hdr,
        "{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"kid-\\\"1\\\"\"}");
    assert_int_equal(datos_base64_decode(p, dot1 + 1,
                                         (apr_size_t)(dot2 - dot1 - 1), &claims,
                                         &cn),
                     APR_SUCCESS);
    /* iat backdated 10 s, exp = iat + 3600 */
    assert_string_equal((char *)claims,
                        "{\"iss\":\"a@b.example\",\"scope\":\"s1 s2\","
                        "\"aud\":\"http://127.0.0.1:9/token\","
                        "\"iat\":999999990,\"exp\":1000003590}");
    assert_int_equal(
        datos_base64_decode(p, dot2 + 1, strlen(dot2 + 1), &sig, &sn),
        APR_SUCCESS);
    assert_int_equal(sn, 256);

    /* An independent verifier: the openssl command with the public half. */
    dt_write_file(p, dir, "input", jwt, (apr_size_t)(dot2 - jwt), 0600);
    dt_write_file(p, dir, "sig", (const char *)sig, sn, 0600);
    assert_int_equal(dt_system(p,
                               "openssl dgst -sha256 -verify %s -signature "
                               "%s/sig %s/input >/dev/null 2>&1",
                               dt_data_path(p, "test_key.pub.pem"), dir, dir),
                     0);
    /* and it does refuse a tampered input */
    dt_write_file(p, dir, "input", "x", 1, 0600);
    assert_int_not_equal(dt_system(p,
                                   "openssl dgst -sha256 -verify %s "
                                   "-signature %s/sig %s/input >/dev/null 2>&1",
                                   dt_data_path(p, "test_key.pub.pem"), dir,
                                   dir),
                         0);
}

static void jwt_sign_generic(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    const char *pem = dt_test_key_pem(p);
    EVP_PKEY *key;
    datos_err_t err = {0};
    const char *a, *b;

    datos_err_clear(&err);
    assert_int_equal(datos_pkey_from_pem(p, pem, strlen(pem), &key, &err),
                     APR_SUCCESS);
    assert_int_equal(datos_jwt_sign_rs256(p, key, "{}", "{\"a\":1}", &a, &err),
                     APR_SUCCESS);
    assert_int_equal(datos_jwt_sign_rs256(p, key, "{}", "{\"a\":1}", &b, &err),
                     APR_SUCCESS);
    assert_string_equal(a, b); /* deterministic, fresh context each time */
    assert_memory_equal(a, "e30.eyJhIjoxfQ.", 15);
}

static void sha256_vectors(void **state)
{
    char hex[65];
    (void)state;

    datos_sha256_hex("", 0, hex);
    assert_string_equal(
        hex,
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    datos_sha256_hex("abc", 3, hex);
    assert_string_equal(
        hex,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void ca_refused(apr_pool_t *p, const char *path, const char *needle)
{
    datos_err_t err = {0};

    datos_err_clear(&err);
    if (datos_ca_file_check(p, path, &err) != DATOS_ECONFIG) {
        fail_msg("%s accepted", path);
    }
    if (!strstr(err.message, needle) || !strstr(err.message, path)) {
        fail_msg("'%s' lacks '%s' or the path", err.message, needle);
    }
    /* the check leaves no stale entry in the shared OpenSSL error queue */
    assert_int_equal(ERR_peek_error(), 0);
}

static void ca_file_check(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    const char *dir = dt_tmpdir(p), *ca, *bundle, *link, *text;
    static const char empty_cert[] =
        "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n";
    datos_err_t err = {0};

    /* a real certificate (and a bundle with a comment and two of them),
     * also behind a symlink */
    ca = apr_pstrcat(p, dir, "/ca.pem", NULL);
    assert_int_equal(dt_system(p,
                               "openssl req -x509 -newkey ec -pkeyopt "
                               "ec_paramgen_curve:prime256v1 -nodes -days 2 "
                               "-subj /CN=datos-unit -keyout %s/ca.key -out %s "
                               "2>/dev/null",
                               dir, ca),
                     0);
    datos_err_clear(&err);
    assert_int_equal(datos_ca_file_check(p, ca, &err), APR_SUCCESS);
    text = dt_read_file(p, ca, NULL);
    text = apr_pstrcat(p, "# private CA\n", text, text, NULL);
    bundle = dt_write_file(p, dir, "bundle.pem", text, strlen(text), 0644);
    assert_int_equal(datos_ca_file_check(p, bundle, &err), APR_SUCCESS);
    link = apr_pstrcat(p, dir, "/link.pem", NULL);
    assert_int_equal(symlink(bundle, link), 0);
    assert_int_equal(datos_ca_file_check(p, link, &err), APR_SUCCESS);

    ca_refused(p, dir, "not a regular file");
    link = apr_pstrcat(p, dir, "/dirlink.pem", NULL);
    assert_int_equal(symlink(dir, link), 0);
    ca_refused(p, link, "not a regular file");
    ca_refused(p, apr_pstrcat(p, dir, "/missing.pem", NULL), "cannot open");
    ca_refused(p, dt_write_file(p, dir, "empty.pem", "", 0, 0644),
               "no PEM certificate");
    ca_refused(p, dt_write_file(p, dir, "text.pem", "hello\n", 6, 0644),
               "no PEM certificate");
    /* a private key is PEM, but no certificate */
    ca_refused(p, dt_data_path(p, "test_key.pem"), "no PEM certificate");
    ca_refused(p,
               dt_write_file(p, dir, "broken.pem", empty_cert,
                             strlen(empty_cert), 0644),
               "not a PEM file OpenSSL can read");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        DT_TEST(b64url_rfc4648_vectors),
        DT_TEST(b64url_alphabet),
        DT_TEST(b64url_rfc7515_examples),
        DT_TEST(b64url_decode_forms),
        DT_TEST(b64_decode_long),
        DT_TEST(pkey_good_and_bad),
        DT_TEST(pkey_not_rsa),
        DT_TEST(jwt_assertion_pinned),
        DT_TEST(jwt_parts_and_openssl_verify),
        DT_TEST(jwt_sign_generic),
        DT_TEST(sha256_vectors),
        DT_TEST(ca_file_check),
    };
    return cmocka_run_group_tests(tests, dt_group_setup, dt_group_teardown);
}
