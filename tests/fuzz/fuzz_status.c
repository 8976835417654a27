/* fuzz_status.c - GET /datos-status: the loader's textfile as any file at
 * DatosLoaderMetricsFile may hold it, and names as odd as a configuration
 * or a file may make them, rendered both ways. Both forms must stay within
 * their bound, the JSON must parse, and nothing of the input may become
 * markup. */
#include <string.h>

#include <apr_strings.h>
#include <jansson.h>

#include "fuzz_common.h"
#include "datos_status.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static datos_fetch_rec_t fetches[DATOS_METRICS_FETCHES];
    apr_pool_t *p;
    datos_status_t s;
    datos_status_table_t t;
    const char *hosts[1];
    char *text;
    const char *html, *js;
    apr_size_t hlen, jlen;
    json_t *j;
    int i;

    fuzz_apr_init();
    if (apr_pool_create(&p, NULL) != APR_SUCCESS) {
        abort();
    }
    text = apr_pstrmemdup(p, (const char *)data, size);

    memset(&s, 0, sizeof(s));
    memset(&t, 0, sizeof(t));
    s.now = apr_time_from_sec(1800000000);
    s.server = text;
    s.tables = &t;
    s.ntables = 1;
    hosts[0] = text;
    t.table = text;
    t.hosts = hosts;
    t.nhosts = 1;
    t.cached = 1;
    t.etag = text;
    t.last_failure = "timeout";
    for (i = 0; i < DATOS_METRICS_FETCHES; i++) {
        fetches[i].started = s.now - apr_time_from_sec(i);
        fetches[i].outcome = i % 2 ? "ok" : "backend_error";
        fetches[i].bytes_processed = fetches[i].bytes_billed = -1;
    }
    t.fetches = fetches;
    t.nfetches = DATOS_METRICS_FETCHES;
    datos_status_loader_init(&s.loader);
    s.loader.file = text;
    s.loader.interval = apr_time_from_sec(300);
    datos_status_loader_parse((const char *)data, size, &s.loader);
    if (size & 1) {
        s.loader.error = text;
    }

    html = datos_status_html(p, &s, &hlen);
    js = datos_status_json(p, &s, &jlen);
    FUZZ_CHECK(hlen == strlen(html) && hlen < DATOS_STATUS_MAX_BYTES);
    FUZZ_CHECK(jlen == strlen(js) && jlen < DATOS_STATUS_MAX_BYTES);
    FUZZ_CHECK(!strstr(html, "<script") && !strstr(js, "<"));
    j = json_loadb(js, jlen, 0, NULL);
    FUZZ_CHECK(j != NULL);
    json_decref(j);

    apr_pool_destroy(p);
    return 0;
}
