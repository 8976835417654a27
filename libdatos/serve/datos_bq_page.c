/* datos_bq_page.c - reading BigQuery's answers to jobs.query and
 * jobs.getQueryResults. No network. */
#include <string.h>
#include <apr_strings.h>

#include "datos_bq_page.h"
#include "datos_json.h"
#include "datos_time.h"

static apr_status_t load_json(apr_pool_t *p, const char *body, apr_size_t len,
                              json_t **out, datos_err_t *err)
{
    json_error_t jerr;
    json_t *j = json_loadb(body ? body : "", body ? len : 0,
                           JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!j) {
        return datos_err_set(err, p, DATOS_EMALFORMED, 0, NULL,
                             "answer is not JSON: %s (line %d, column %d)",
                             jerr.text, jerr.line, jerr.column);
    }
    *out = j;
    return APR_SUCCESS;
}

/* Index of the column called name in schema.fields, or -1. */
static int column_index(json_t *fields, const char *name, const char *type,
                        int *type_ok)
{
    size_t i;

    for (i = 0; i < json_array_size(fields); i++) {
        json_t *f = json_array_get(fields, i);
        const char *n = datos_json_str(f, "name");
        if (n && !strcmp(n, name)) {
            const char *t = datos_json_str(f, "type");
            *type_ok = !t || !strcmp(t, type);
            return (int)i;
        }
    }
    *type_ok = 1;
    return -1;
}

apr_status_t datos_bq_parse_page(apr_pool_t *p, const char *body,
                                 apr_size_t len, datos_bq_page_t *page,
                                 datos_err_t *err)
{
    apr_status_t rv;
    json_t *j = NULL, *jc, *ref, *schema, *fields, *rows;
    datos_bq_page_t pg;
    const char *s;
    int ci, ic, tc, ok1, ok2, ok3;
    size_t nfields, r;

    memset(&pg, 0, sizeof(pg));
    rv = load_json(p, body, len, &j, err);
    if (rv != APR_SUCCESS) {
        goto leave;
    }
    if (!json_is_object(j)) {
        rv = datos_err_set(err, p, DATOS_EMALFORMED, 0, NULL,
                           "answer is not a JSON object");
        goto leave;
    }
    jc = json_object_get(j, "jobComplete");
    if (jc && !json_is_boolean(jc)) {
        rv = datos_err_set(err, p, DATOS_EMALFORMED, 0, NULL,
                           "jobComplete is not a boolean");
        goto leave;
    }
    pg.job_complete = json_is_true(jc);
    ref = datos_json_obj(j, "jobReference");
    if ((s = datos_json_str(ref, "jobId")) && *s) {
        pg.job_id = apr_pstrdup(p, s);
    }
    if ((s = datos_json_str(ref, "location")) && *s) {
        pg.location = apr_pstrdup(p, s);
    }
    if ((s = datos_json_str(j, "pageToken")) && *s) {
        pg.page_token = apr_pstrdup(p, s);
    }
    pg.total_bytes_processed = -1;
    if (json_object_get(j, "totalBytesProcessed")
        && datos_json_int64(j, "totalBytesProcessed", &pg.total_bytes_processed)
               != APR_SUCCESS) {
        rv = datos_err_set(err, p, DATOS_EMALFORMED, 0, NULL,
                           "totalBytesProcessed is not an int64");
        goto leave;
    }
    pg.total_bytes_billed = -1;
    if (json_object_get(j, "totalBytesBilled")
        && datos_json_int64(j, "totalBytesBilled", &pg.total_bytes_billed)
               != APR_SUCCESS) {
        rv = datos_err_set(err, p, DATOS_EMALFORMED, 0, NULL,
                           "totalBytesBilled is not an int64");
        goto leave;
    }
    pg.rows = apr_array_make(p, 0, sizeof(datos_row_t));
    if (!pg.job_complete) {
        goto done;
    }

    schema = datos_json_obj(j, "schema");
    fields = datos_json_arr(schema, "fields");
    if (!fields) {
        rv = datos_err_set(err, p, DATOS_EMALFORMED, 0, NULL,
                           "complete answer without schema.fields");
        goto leave;
    }
    nfields = json_array_size(fields);
    ic = column_index(fields, "id", "STRING", &ok1);
    ci = column_index(fields, "contenido", "STRING", &ok2);
    tc = column_index(fields, "timestamp", "TIMESTAMP", &ok3);
    if (ic < 0 || ci < 0 || tc < 0 || !ok1 || !ok2 || !ok3) {
        rv = datos_err_set(err, p, DATOS_EMALFORMED, 0, NULL, "schema lacks %s",
                           ic < 0 || !ok1   ? "id STRING"
                           : ci < 0 || !ok2 ? "contenido STRING"
                                            : "timestamp TIMESTAMP");
        goto leave;
    }
    rows = json_object_get(j, "rows");
    if (rows && !json_is_array(rows)) {
        rv = datos_err_set(err, p, DATOS_EMALFORMED, 0, NULL,
                           "rows is not an array");
        goto leave;
    }
    pg.rows =
        apr_array_make(p, (int)json_array_size(rows) + 1, sizeof(datos_row_t));
    for (r = 0; r < json_array_size(rows); r++) {
        json_t *f = datos_json_arr(json_array_get(rows, r), "f");
        json_t *vid, *vc, *vt;
        datos_row_t *row;

        if (!f || json_array_size(f) != nfields) {
            rv = datos_err_set(
                err, p, DATOS_EMALFORMED, 0, NULL, "row %d: %s", (int)r,
                f ? "cell count differs from the schema" : "no f array");
            goto leave;
        }
        vid = json_object_get(json_array_get(f, (size_t)ic), "v");
        vc = json_object_get(json_array_get(f, (size_t)ci), "v");
        vt = json_object_get(json_array_get(f, (size_t)tc), "v");
        if (!json_is_string(vid)) {
            rv = datos_err_set(
                err, p, DATOS_EMALFORMED, 0, NULL, "row %d: id is %s", (int)r,
                vid && !json_is_null(vid) ? "not a string" : "NULL");
            goto leave;
        }
        if (vc && !json_is_null(vc) && !json_is_string(vc)) {
            rv = datos_err_set(err, p, DATOS_EMALFORMED, 0, NULL,
                               "row %d: contenido is not a string", (int)r);
            goto leave;
        }
        if (!json_is_string(vt)) {
            rv = datos_err_set(
                err, p, DATOS_EMALFORMED, 0, NULL, "row %d: timestamp is %s",
                (int)r, vt && !json_is_null(vt) ? "not a string" : "NULL");
            goto leave;
        }
        row = apr_array_push(pg.rows);
        if (datos_ts_parse_cell(json_string_value(vt), json_string_length(vt),
                                &row->timestamp_us)
            != APR_SUCCESS) {
            rv = datos_err_set(err, p, DATOS_EMALFORMED, 0, NULL,
                               "row %d: timestamp '%s' is not a TIMESTAMP "
                               "value",
                               (int)r,
                               datos_err_text(p, json_string_value(vt),
                                              json_string_length(vt), 40));
            goto leave;
        }
        row->id_len = json_string_length(vid);
        row->id = apr_pstrmemdup(p, json_string_value(vid), row->id_len);
        if (json_is_string(vc)) {
            row->contenido_len = json_string_length(vc);
            row->contenido =
                apr_pstrmemdup(p, json_string_value(vc), row->contenido_len);
        }
        else {
            row->contenido = NULL;
            row->contenido_len = 0;
        }
        pg.row_bytes += row->id_len + row->contenido_len;
    }

done:
    *page = pg;

leave:
    json_decref(j);
    return rv;
}
