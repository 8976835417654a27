/* mod_datos_entry.c - where an answer comes from.
 *
 * Today: every request queries BigQuery (the uncached design, kept reachable
 * because benchmarks compare against it). The per-process copy and the
 * shared socache tier slot in here, in front of fetch_entry().
 */
#include "apr_strings.h"

#include "httpd.h"
#include "http_log.h"

#include "datos_bq.h"
#include "datos_log.h"
#include "mod_datos.h"

APLOG_USE_MODULE(datos);

static apr_status_t fetch_entry(request_rec *r, mod_datos_conf_t *conf,
                                apr_pool_t *p, mod_datos_entry_t *entry,
                                datos_err_t *err)
{
    datos_latest_t *latest = NULL;
    datos_rendered_t *rendered = NULL;
    apr_status_t rv;

    rv = datos_bq_fetch_latest(conf->bq, p, &latest, err);
    if (rv != APR_SUCCESS)
        goto leave;
    rv = datos_record_render(p, (const datos_row_t *)latest->rows->elts,
                             latest->rows->nelts, &rendered, err);
    if (rv != APR_SUCCESS)
        goto leave;

    if (latest->capped)
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, DATOS_LOGNO(0101)
                      "widening the lookback past %d days would exceed "
                      "DatosMaxBytesBilled; serving the %d rows found",
                      latest->window_days, latest->rows->nelts);
    if (latest->truncated)
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, DATOS_LOGNO(0102)
                      "rows reached DatosMaxPayload (%" APR_SIZE_T_FMT
                      " bytes); serving the first %d", conf->max_payload
                      > 0 ? (apr_size_t)conf->max_payload : 0,
                      latest->rows->nelts);
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, DATOS_LOGNO(0103)
                  "fetched %d rows with %d queries (%d polls), %" APR_INT64_T_FMT
                  " bytes processed, last window %d days",
                  latest->rows->nelts, latest->queries, latest->polls,
                  latest->bytes_processed, latest->window_days);

    entry->rendered = rendered;
    entry->fetched = apr_time_now();
leave:
    return rv;
}

apr_status_t mod_datos_entry_get(request_rec *r, mod_datos_conf_t *conf,
                                 mod_datos_entry_t *entry, datos_err_t *err)
{
    return fetch_entry(r, conf, r->pool, entry, err);
}
