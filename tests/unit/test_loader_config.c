/* test_loader_config.c - the loader's settings: the file's syntax, every
 * kind of value with its bounds, the environment over the file, the names
 * made whole, and errors that name the key and the line. */
#include <string.h>

#include "dt_support.h"
#include "loader.h"

static const char *parse(apr_pool_t *p, const char *text, loader_config_t *c)
{
    loader_config_defaults(c);
    return loader_config_parse(p, "loader.conf", text, strlen(text), c);
}

static void assert_says(const char *msg, const char *a, const char *b)
{
    if (!msg || !strstr(msg, a) || (b && !strstr(msg, b)))
        fail_msg("message '%s' does not say '%s'%s%s", msg ? msg : "(none)", a,
                 b ? " and " : "", b ? b : "");
}

static void defaults(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    loader_config_t c;

    loader_config_defaults(&c);
    assert_int_equal(c.batch_max_rows, 100000);
    assert_int_equal(c.batch_max_bytes, 100 * 1024 * 1024);
    assert_int_equal(c.unknown_fields, DATOS_UNKNOWN_REJECT);
    assert_int_equal(c.max_future_skew, apr_time_from_sec(300));
    assert_string_equal(c.table, "latam_dataset.datos");
    assert_null(loader_config_finish(p, &c, "my-project"));
    assert_string_equal(c.subscription,
                        "projects/my-project/subscriptions/datos-subscription");
    assert_string_equal(c.dead_letter_topic,
                        "projects/my-project/topics/datos-dlq");
    assert_string_equal(c.lock_file, "/var/lib/datos-loader/datos-loader.lock");
}

static void file_syntax(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    loader_config_t c;

    assert_null(parse(
        p,
        "# a comment\n"
        "\n"
        "   project   =   my-project   \r\n"
        "subscription = projects/other-proj/subscriptions/sub.with-chars_~+%\n"
        "table = \"p-roject.ds.tb\"\n"
        "location=\"  EU \"\n"
        "batch_max_rows = 5000\n"
        "batch_max_bytes = 8M\n"
        "batch_max_age = 250ms\n"
        "max_future_skew = 0\n"
        "allow_insecure_http = yes\n"
        "unknown_fields = DROP\n"
        "metrics_file = /tmp/a#b.prom\n",
        &c));
    assert_string_equal(c.project, "my-project");
    assert_string_equal(c.table, "p-roject.ds.tb");
    assert_string_equal(c.location, "  EU ");
    assert_int_equal(c.batch_max_rows, 5000);
    assert_int_equal(c.batch_max_bytes, 8 * 1024 * 1024);
    assert_int_equal(c.batch_max_age, apr_time_from_msec(250));
    assert_int_equal(c.max_future_skew, 0);
    assert_true(c.allow_insecure_http);
    assert_int_equal(c.unknown_fields, DATOS_UNKNOWN_DROP);
    assert_string_equal(c.metrics_file, "/tmp/a#b.prom");
    /* an empty value is the default */
    assert_null(parse(p, "location =\n", &c));
    assert_null(c.location);
    /* the location given above is not one BigQuery has */
    assert_null(parse(p, "location = \"  EU \"\n", &c));
    assert_says(loader_config_finish(p, &c, "my-project"), "location", NULL);
}

static void errors_name_key_and_line(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    loader_config_t c;
    static const struct {
        const char *text, *a, *b;
    } cases[] = {
        {"batch_max_rowz = 5\n", "loader.conf:1",
         "unknown setting 'batch_max_rowz'"},
        {"\n\nbatch_max_rows = 0\n", "loader.conf:3", "batch_max_rows"},
        {"batch_max_rows = 10000001\n", "batch_max_rows", NULL},
        {"batch_max_rows = 12abc\n", "batch_max_rows", NULL},
        {"batch_max_bytes = 1023\n", "batch_max_bytes", NULL},
        {"batch_max_age = 50ms\n", "batch_max_age", NULL},
        {"lease = 9s\n", "lease", NULL},
        {"lease = 601s\n", "lease", NULL},
        {"http_timeout = forever\n", "http_timeout", NULL},
        {"allow_insecure_http = maybe\n", "allow_insecure_http", NULL},
        {"unknown_fields = keep\n", "unknown_fields", "reject"},
        {"max_messages = -1\n", "max_messages", NULL},
        {"just some words\n", "loader.conf:1", "key = value"},
        {"= value\n", "loader.conf:1", "no key"},
        {"location = \"open\n", "location", "no closing quote"},
        {"location = \"a\" b\n", "location", "after the closing quote"},
        {"table = a.b\ntable = c.d\n", "loader.conf:2", "set twice"},
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_says(parse(p, cases[i].text, &c), cases[i].a, cases[i].b);
    /* a NUL byte in the file */
    loader_config_defaults(&c);
    assert_says(loader_config_parse(p, "f", "a = b\0c\n", 7, &c), "NUL", NULL);
}

static void finish_checks(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    loader_config_t c;
    static const struct {
        const char *text, *a;
    } cases[] = {
        {"table = not_a_table\n", "table"},
        {"project = Bad_Project\n", "project"},
        {"subscription = projects/p-roject1/topics/x\n", "subscription"},
        {"subscription = projects/p-roject1\n", "subscription"},
        {"dead_letter_topic = goog-reserved\n", "dead_letter_topic"},
        {"dead_letter_topic = a b c\n", "dead_letter_topic"},
        {"dead_letter_topic = ab\n", "dead_letter_topic"},
        {"retry_initial = 10s\nretry_max = 1s\n", "retry_max"},
        {"failure_backoff = 10m\nfailure_backoff_max = 1m\n",
         "failure_backoff_max"},
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_null(parse(p, cases[i].text, &c));
        assert_says(loader_config_finish(p, &c, "my-project"), cases[i].a,
                    NULL);
    }
    /* no project at all */
    loader_config_defaults(&c);
    assert_says(loader_config_finish(p, &c, NULL), "project", NULL);
    /* the table's own project does not replace the billing project */
    assert_null(parse(p, "table = other-proj.ds.tb\n", &c));
    assert_null(loader_config_finish(p, &c, "my-project"));
    assert_string_equal(c.project, "my-project");
}

static const char *fake_env(const char *name)
{
    if (!strcmp(name, "PUBSUB_EMULATOR_HOST"))
        return "127.0.0.1:9050";
    if (!strcmp(name, "BIGQUERY_EMULATOR_HOST"))
        return "127.0.0.1:9051";
    if (!strcmp(name, "GOOGLE_CLOUD_PROJECT"))
        return "env-project";
    return NULL;
}

static const char *empty_env(const char *name)
{
    (void)name;
    return NULL;
}

static void environment_over_file(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    loader_config_t c;

    assert_null(parse(
        p, "project = file-project\npubsub_url = https://pubsub.example\n",
        &c));
    assert_null(loader_config_env(p, &c, fake_env));
    assert_string_equal(c.project, "env-project");
    /* the emulator variables replace the file's URLs; libdatos reads them */
    assert_null(c.pubsub_url);
    assert_null(c.bigquery_url);
    assert_string_equal(
        apr_hash_get(c.origin, "pubsub_url", APR_HASH_KEY_STRING),
        "PUBSUB_EMULATOR_HOST");
    assert_null(loader_config_env(p, &c, empty_env));
    assert_string_equal(c.project, "env-project");
    /* flags over both */
    assert_null(
        loader_config_set(p, &c, "max_messages", "7", "--max-messages"));
    assert_int_equal(c.max_messages, 7);
    assert_says(loader_config_set(p, &c, "max_messages", "x", "--max-messages"),
                "--max-messages", "max_messages");
}

static void every_key_is_known(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    const char *const *k;
    loader_config_t c;
    int n = 0;

    loader_config_defaults(&c);
    for (k = loader_config_keys(); *k; k++, n++) {
        /* each key parses a sensible value of its kind, or is a string */
        const char *msg = loader_config_set(p, &c, *k, "", "test");
        if (msg && !strstr(msg, *k))
            fail_msg("error for %s does not name it: %s", *k, msg);
    }
    assert_true(n >= 29);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        DT_TEST(defaults),
        DT_TEST(file_syntax),
        DT_TEST(errors_name_key_and_line),
        DT_TEST(finish_checks),
        DT_TEST(environment_over_file),
        DT_TEST(every_key_is_known),
    };
    return cmocka_run_group_tests(tests, dt_group_setup, dt_group_teardown);
}
