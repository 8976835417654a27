/* test_table.c - the table-name rule and the SQL built from it. */
#include <string.h>

#include "dt_support.h"
#include "datos_bq.h"

static void good(apr_pool_t *p, const char *name, const char *project,
                 const char *dataset, const char *table)
{
    datos_table_ref_t t;
    const char *msg = datos_table_parse(p, name, &t);

    if (msg) {
        fail_msg("'%s' refused: %s", name, msg);
    }
    if (project) {
        assert_string_equal(t.project, project);
    }
    else {
        assert_null(t.project);
    }
    assert_string_equal(t.dataset, dataset);
    assert_string_equal(t.table, table);
}

static void bad(apr_pool_t *p, const char *name, const char *needle)
{
    datos_table_ref_t t;
    const char *msg;

    memset(&t, 0, sizeof(t));
    msg = datos_table_parse(p, name, &t);
    if (!msg) {
        fail_msg("'%s' accepted", name);
    }
    if (needle && !strstr(msg, needle)) {
        fail_msg("'%s': message '%s' lacks '%s'", name, msg, needle);
    }
    assert_null(t.dataset); /* out untouched */
}

static void table_valid(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    char *long_ident = apr_palloc(p, 1025);

    good(p, "latam_dataset.datos", NULL, "latam_dataset", "datos");
    good(p, "my-proj.latam_dataset.datos", "my-proj", "latam_dataset", "datos");
    good(p, "abcdef.d.t", "abcdef", "d", "t"); /* 6 chars */
    good(p, "a23456789012345678901234567890.d.t",
         "a23456789012345678901234567890", "d", "t"); /* 30 chars */
    good(p, "p-1-2-3.D_1.T_2", "p-1-2-3", "D_1", "T_2");
    good(p, "_x.9", NULL, "_x", "9");
    memset(long_ident, 'a', 1024);
    long_ident[1024] = '\0';
    good(p, apr_pstrcat(p, long_ident, ".", long_ident, NULL), NULL, long_ident,
         long_ident);
}

static void table_invalid(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    char *long_ident = apr_palloc(p, 1026);

    bad(p, NULL, "empty");
    bad(p, "", "empty");
    bad(p, "datos", "dataset.table");
    bad(p, "a.b.c.d", "dataset.table");
    bad(p, ".t", "dataset");
    bad(p, "d.", "table");
    bad(p, "..", NULL);
    bad(p, "my-proj..t", "dataset");
    bad(p, ".d.t", "project");
    bad(p, "abcde.d.t", "6 to 30");                           /* 5 chars */
    bad(p, "a234567890123456789012345678901.d.t", "6 to 30"); /* 31 chars */
    bad(p, "1proj-x.d.t", "lowercase letter");
    bad(p, "-proj-x.d.t", "lowercase letter");
    bad(p, "proj-x-.d.t", "end with '-'");
    bad(p, "My-proj.d.t", "lowercase letter");
    bad(p, "my-Proj.d.t", "lowercase");
    bad(p, "my_proj.d.t", "lowercase");
    bad(p, "my-proj.da-ta.t", "dataset");
    bad(p, "d.t-1", "table");
    bad(p, "d.t 1", "table");
    bad(p, "d.`t`", "table");
    bad(p, "d.t`; DROP TABLE x; --", "table");
    bad(p, "`p.d.t`", NULL);
    bad(p, "d.t\n", "table");
    bad(p, "d.t\xc3\xa1", "table");
    bad(p, "example.com:proj.d.t", NULL);
    memset(long_ident, 'a', 1025);
    long_ident[1025] = '\0';
    bad(p, apr_pstrcat(p, "d.", long_ident, NULL), "table");
    bad(p, apr_pstrcat(p, long_ident, ".t", NULL), "dataset");
}

static void table_sql_quoting(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_table_ref_t t;

    assert_null(datos_table_parse(p, "latam_dataset.datos", &t));
    assert_string_equal(datos_table_sql(p, "bill-proj", &t),
                        "`bill-proj.latam_dataset.datos`");
    assert_null(datos_table_parse(p, "data-proj.latam_dataset.datos", &t));
    assert_string_equal(datos_table_sql(p, "bill-proj", &t),
                        "`data-proj.latam_dataset.datos`");
}

static void latest_sql_shape(void **state)
{
    apr_pool_t *p = DT_POOL(state);

    assert_string_equal(
        datos_bq_latest_sql(p, "`p.d.t`", 7, NULL),
        "SELECT id, contenido, timestamp FROM `p.d.t` WHERE timestamp >= "
        "TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL @lookback_days DAY) "
        "QUALIFY ROW_NUMBER() OVER (PARTITION BY id ORDER BY timestamp DESC, "
        "publish_time DESC, message_id DESC) = 1 ORDER BY timestamp DESC, "
        "id ASC LIMIT @max_rows");
    assert_string_equal(
        datos_bq_latest_sql(p, "`p.d.t`", 0, NULL),
        "SELECT id, contenido, timestamp FROM `p.d.t` WHERE TRUE "
        "QUALIFY ROW_NUMBER() OVER (PARTITION BY id ORDER BY timestamp DESC, "
        "publish_time DESC, message_id DESC) = 1 ORDER BY timestamp DESC, "
        "id ASC LIMIT @max_rows");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        DT_TEST(table_valid),
        DT_TEST(table_invalid),
        DT_TEST(table_sql_quoting),
        DT_TEST(latest_sql_shape),
    };
    return cmocka_run_group_tests(tests, dt_group_setup, dt_group_teardown);
}
