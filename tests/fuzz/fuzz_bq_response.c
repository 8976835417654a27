/* fuzz_bq_response.c - jobs.query / getQueryResults answers and error
 * envelopes, as any BigQuery front end (or something pretending to be
 * one) could send them. Whatever parses must also render. */
#include <string.h>

#include "fuzz_common.h"
#include "datos_bq_page.h"
#include "datos_google_classify.h"
#include "datos_record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p;
    datos_bq_page_t page;
    datos_err_t err = {0};
    int status;

    fuzz_apr_init();
    status = fuzz_status(&data, &size, 502);
    if (apr_pool_create(&p, NULL) != APR_SUCCESS) {
        abort();
    }

    datos_err_clear(&err);
    if (datos_bq_parse_page(p, (const char *)data, size, &page, &err)
        == APR_SUCCESS) {
        apr_size_t bytes = 0;
        datos_rendered_t *r;
        int i;

        FUZZ_CHECK(page.rows != NULL);
        FUZZ_CHECK(page.job_complete || page.rows->nelts == 0);
        for (i = 0; i < page.rows->nelts; i++) {
            const datos_row_t *row = &APR_ARRAY_IDX(page.rows, i, datos_row_t);
            FUZZ_CHECK(row->id != NULL);
            bytes += row->id_len + row->contenido_len;
        }
        FUZZ_CHECK(bytes == page.row_bytes);
        /* jansson only yields valid UTF-8 and timestamps are range-checked,
         * so every parsed page must render. */
        FUZZ_CHECK(datos_record_render(p, (const datos_row_t *)page.rows->elts,
                                       page.rows->nelts, &r, &err)
                   == APR_SUCCESS);
        FUZZ_CHECK(r->len == strlen(r->body)); /* NULs come out escaped */
    }
    else {
        FUZZ_CHECK(err.rv == DATOS_EMALFORMED && err.message != NULL);
    }

    datos_err_clear(&err);
    FUZZ_CHECK(datos_google_classify(p, DATOS_GOOGLE_API, status,
                                     (const char *)data, size, 0, &err)
               == err.rv);
    FUZZ_CHECK(err.rv != APR_SUCCESS && err.message != NULL);
    FUZZ_CHECK(err.http_status == status);

    apr_pool_destroy(p);
    return 0;
}
