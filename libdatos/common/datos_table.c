/* datos_table.c - the BigQuery table of the read path and the loader: the
 * table-name rule, its SQL name, and what tables.get says about its
 * columns. No network. */
#include <string.h>
#include <strings.h>
#include <apr_strings.h>

#include "datos_json.h"
#include "datos_table.h"

static int ident_ok(const char *s, apr_size_t n)
{
    apr_size_t i;

    if (n < 1 || n > 1024) {
        return 0;
    }
    for (i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '_')) {
            return 0;
        }
    }
    return 1;
}

static const char *project_problem(const char *s, apr_size_t n)
{
    apr_size_t i;

    if (n < 6 || n > 30) {
        return "must be 6 to 30 characters";
    }
    if (!(s[0] >= 'a' && s[0] <= 'z')) {
        return "must start with a lowercase letter";
    }
    for (i = 1; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) {
            return "may hold only lowercase letters, digits and '-'";
        }
    }
    if (s[n - 1] == '-') {
        return "must not end with '-'";
    }
    return NULL;
}

const char *datos_table_parse(apr_pool_t *p, const char *name,
                              datos_table_ref_t *out)
{
    const char *part[3], *dot, *s, *why, *shown;
    apr_size_t len[3];
    int n = 0;

    if (!name || !*name) {
        return "table name is empty: use dataset.table or "
               "project.dataset.table";
    }
    shown = datos_err_text(p, name, strlen(name), 200);
    for (s = name;; s = dot + 1) {
        dot = strchr(s, '.');
        if (n == 3) {
            n++;
            break;
        }
        part[n] = s;
        len[n] = dot ? (apr_size_t)(dot - s) : strlen(s);
        n++;
        if (!dot) {
            break;
        }
    }
    if (n < 2 || n > 3) {
        return apr_psprintf(p,
                            "table name '%s' must be dataset.table or "
                            "project.dataset.table",
                            shown);
    }
    if (n == 3 && (why = project_problem(part[0], len[0])) != NULL) {
        return apr_psprintf(p, "table name '%s': the project id %s", shown,
                            why);
    }
    if (!ident_ok(part[n - 2], len[n - 2])) {
        return apr_psprintf(p,
                            "table name '%s': the dataset must be 1 to "
                            "1024 letters, digits or '_'",
                            shown);
    }
    if (!ident_ok(part[n - 1], len[n - 1])) {
        return apr_psprintf(p,
                            "table name '%s': the table must be 1 to "
                            "1024 letters, digits or '_'",
                            shown);
    }
    out->project = n == 3 ? apr_pstrmemdup(p, part[0], len[0]) : NULL;
    out->dataset = apr_pstrmemdup(p, part[n - 2], len[n - 2]);
    out->table = apr_pstrmemdup(p, part[n - 1], len[n - 1]);
    return NULL;
}

const char *datos_table_sql(apr_pool_t *p, const char *billing_project,
                            const datos_table_ref_t *t)
{
    const char *project = t->project ? t->project : billing_project;

    if (!project) {
        return apr_pstrcat(p, "`", t->dataset, ".", t->table, "`", NULL);
    }
    return apr_pstrcat(p, "`", project, ".", t->dataset, ".", t->table, "`",
                       NULL);
}

/* A column of the record: present, of its type, and in a mode that can
 * hold what the record allows. */
static const char *column_problem(apr_pool_t *p, json_t *fields,
                                  const char *name, const char *type,
                                  int nullable_only, int required, int *present)
{
    size_t i;

    *present = 0;
    for (i = 0; i < json_array_size(fields); i++) {
        json_t *f = json_array_get(fields, i);
        const char *n = datos_json_str(f, "name");
        const char *t, *m;

        if (!n || strcasecmp(n, name)) {
            continue;
        }
        *present = 1;
        t = datos_json_str(f, "type");
        m = datos_json_str(f, "mode");
        if (!t || strcasecmp(t, type)) {
            return apr_psprintf(
                p, "column %s is %s, not %s", name,
                t ? datos_err_text(p, t, strlen(t), 32) : "of no type", type);
        }
        if (m && !strcasecmp(m, "REPEATED")) {
            return apr_psprintf(p,
                                "column %s is REPEATED (an array), not "
                                "a single %s",
                                name, type);
        }
        if (nullable_only && m && !strcasecmp(m, "REQUIRED")) {
            return apr_psprintf(p,
                                "column %s is REQUIRED, but the record "
                                "allows it to be null",
                                name);
        }
        return NULL;
    }
    return required ? apr_psprintf(p, "column %s (%s) is missing", name, type)
                    : NULL;
}

apr_status_t datos_table_parse_info(apr_pool_t *p, const char *body,
                                    apr_size_t len, datos_table_info_t *info,
                                    datos_err_t *err)
{
    apr_status_t rv;
    json_t *j = NULL, *fields;
    const char *loc, *why;
    int present;
    apr_size_t i, n;

    memset(info, 0, sizeof(*info));
    rv = datos_json_parse(p, body, len, 0, &j, err);
    if (rv != APR_SUCCESS) {
        goto leave;
    }
    fields = datos_json_arr(datos_json_obj(j, "schema"), "fields");
    if (!fields) {
        rv = datos_err_set(err, p, DATOS_EMALFORMED, 200, NULL,
                           "tables.get: answer has no schema.fields");
        goto leave;
    }
    if ((why = column_problem(p, fields, "id", "STRING", 0, 1, &present))
        || (why = column_problem(p, fields, "contenido", "STRING", 1, 1,
                                 &present))
        || (why = column_problem(p, fields, "timestamp", "TIMESTAMP", 0, 1,
                                 &present))) {
        rv = datos_err_set(err, p, DATOS_ECONFIG, 200, NULL,
                           "the table does not hold the datos record: %s", why);
        goto leave;
    }
    if ((why = column_problem(p, fields, "publish_time", "TIMESTAMP", 0, 0,
                              &info->has_publish_time))
        || (why = column_problem(p, fields, "message_id", "STRING", 0, 0,
                                 &info->has_message_id))) {
        rv = datos_err_set(err, p, DATOS_ECONFIG, 200, NULL,
                           "the table's loader column does not fit: %s", why);
        goto leave;
    }
    loc = datos_json_str(j, "location");
    n = loc ? strlen(loc) : 0;
    for (i = 0; i < n; i++) {
        char c = loc[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '-' || c == '_')) {
            break;
        }
    }
    if (n == 0 || i < n || n >= 128) {
        rv = datos_err_set(err, p, DATOS_EMALFORMED, 200, NULL,
                           "tables.get: answer has no usable location");
        goto leave;
    }
    info->location = apr_pstrdup(p, loc);

leave:
    return rv;
}
