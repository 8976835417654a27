/* loader_config.c - the loader's settings: the config file, then the
 * environment, then the command line, each overriding the one before.
 *
 * The file has one `key = value` per line. A line whose first non-blank
 * character is '#' is a comment; there are no comments after a value, so a
 * value may hold '#'. A value may be written in double quotes (\" and \\
 * inside), which keeps blanks at its ends. Every key below is documented
 * in conf/loader.conf.example with its default; anything else is an error
 * naming the key, so a typo never silently leaves a default in place.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <apr_strings.h>
#include <apr_lib.h>

#include "datos_conf.h"
#include "datos_ids.h"
#include "datos_pubsub.h"
#include "datos_table.h"
#include "loader.h"

#define MB ((apr_int64_t)1024 * 1024)

typedef enum {
    K_STRING,
    K_FLAG,
    K_INT,
    K_SIZE,
    K_DURATION,
    K_UNKNOWN_POLICY
} kind_t;

typedef struct {
    const char *name;
    kind_t kind;
    apr_size_t offset;
    apr_int64_t min, max;     /* K_INT, K_SIZE; K_DURATION in microseconds */
    apr_interval_time_t unit; /* K_DURATION: a bare number's unit */
} setting_t;

#define OFF(f) offsetof(loader_config_t, f)
#define SEC(n) apr_time_from_sec(n)

static const setting_t keys[] = {
    {"project", K_STRING, OFF(project), 0, 0, 0},
    {"subscription", K_STRING, OFF(subscription), 0, 0, 0},
    {"topic", K_STRING, OFF(topic), 0, 0, 0},
    {"dead_letter_topic", K_STRING, OFF(dead_letter_topic), 0, 0, 0},
    {"dead_letter_subscription", K_STRING, OFF(dead_letter_subscription), 0, 0,
     0},
    {"table", K_STRING, OFF(table), 0, 0, 0},
    {"location", K_STRING, OFF(location), 0, 0, 0},
    {"credentials", K_STRING, OFF(credentials), 0, 0, 0},
    {"pubsub_url", K_STRING, OFF(pubsub_url), 0, 0, 0},
    {"bigquery_url", K_STRING, OFF(bigquery_url), 0, 0, 0},
    {"allow_insecure_http", K_FLAG, OFF(allow_insecure_http), 0, 0, 0},
    {"ca_file", K_STRING, OFF(ca_file), 0, 0, 0},
    {"batch_max_rows", K_INT, OFF(batch_max_rows), 1, 10000000, 0},
    {"batch_max_bytes", K_SIZE, OFF(batch_max_bytes), 1024, 4096 * MB, 0},
    {"batch_max_age", K_DURATION, OFF(batch_max_age), 100000, SEC(3600),
     SEC(1)},
    {"pull_max_bytes", K_SIZE, OFF(pull_max_bytes), MB, 1024 * MB, 0},
    {"max_messages", K_INT, OFF(max_messages), 0, APR_INT64_C(1) << 40, 0},
    {"max_seconds", K_DURATION, OFF(max_seconds), SEC(1), SEC(86400), SEC(1)},
    {"unknown_fields", K_UNKNOWN_POLICY, OFF(unknown_fields), 0, 0, 0},
    {"max_future_skew", K_DURATION, OFF(max_future_skew), 0, SEC(86400),
     SEC(1)},
    {"http_timeout", K_DURATION, OFF(http_timeout), 100000, SEC(600), SEC(1)},
    {"pull_timeout", K_DURATION, OFF(pull_timeout), 100000, SEC(600), SEC(1)},
    {"retry_initial", K_DURATION, OFF(retry_initial), 1000, SEC(600), SEC(1)},
    {"retry_max", K_DURATION, OFF(retry_max), 1000, SEC(3600), SEC(1)},
    {"retry_deadline", K_DURATION, OFF(retry_deadline), 0, SEC(86400), SEC(1)},
    {"lease", K_DURATION, OFF(lease), SEC(10), SEC(600), SEC(1)},
    {"job_timeout", K_DURATION, OFF(job_timeout), SEC(1), SEC(86400), SEC(1)},
    {"failure_backoff", K_DURATION, OFF(failure_backoff), 0, SEC(86400),
     SEC(1)},
    {"failure_backoff_max", K_DURATION, OFF(failure_backoff_max), 0,
     SEC(7 * 86400), SEC(1)},
    {"resumable_above", K_SIZE, OFF(resumable_above), 0, 4096 * MB, 0},
    {"state_dir", K_STRING, OFF(state_dir), 0, 0, 0},
    {"lock_file", K_STRING, OFF(lock_file), 0, 0, 0},
    {"metrics_file", K_STRING, OFF(metrics_file), 0, 0, 0},
    {"run_interval", K_DURATION, OFF(run_interval), 0, SEC(7 * 86400), SEC(1)},
};

#define NKEYS (sizeof(keys) / sizeof(keys[0]))

const char *const *loader_config_keys(void)
{
    static const char *names[NKEYS + 1];

    if (!names[0]) {
        apr_size_t i;
        for (i = 0; i < NKEYS; i++)
            names[i] = keys[i].name;
        names[NKEYS] = NULL;
    }
    return names;
}

void loader_config_defaults(loader_config_t *c)
{
    memset(c, 0, sizeof(*c));
    c->subscription = "datos-subscription";
    c->topic = "datos-topic";
    c->dead_letter_topic = "datos-dlq";
    c->dead_letter_subscription = "datos-dlq-subscription";
    c->table = "latam_dataset.datos";
    c->batch_max_rows = 100000;
    c->batch_max_bytes = 100 * MB;
    c->batch_max_age = SEC(60);
    c->pull_max_bytes = 64 * MB;
    c->max_messages = 0; /* no bound but the time */
    c->max_seconds = SEC(300);
    c->unknown_fields = DATOS_UNKNOWN_REJECT;
    c->max_future_skew = DATOS_MAX_FUTURE_SKEW;
    c->http_timeout = SEC(60);
    c->pull_timeout = SEC(20);
    c->retry_initial = SEC(1);
    c->retry_max = SEC(32);
    c->retry_deadline = SEC(120);
    c->lease = SEC(600);
    c->job_timeout = SEC(600);
    c->failure_backoff = SEC(60);
    c->failure_backoff_max = SEC(3600);
    c->resumable_above = 5 * MB;
    c->state_dir = "/var/lib/datos-loader";
    c->run_interval = SEC(300); /* conf/datos-loader.timer, .cron */
}

static const setting_t *find_key(const char *name)
{
    apr_size_t i;

    for (i = 0; i < NKEYS; i++) {
        if (!strcmp(keys[i].name, name))
            return &keys[i];
    }
    return NULL;
}

static const char *origin_of(const loader_config_t *c, const char *key)
{
    const char *o =
        c->origin ? apr_hash_get(c->origin, key, APR_HASH_KEY_STRING) : NULL;
    return o ? o : "default";
}

/* "max (its origin) is shorter than min (its origin)". */
static const char *shorter_than(apr_pool_t *p, const loader_config_t *c,
                                const char *max, const char *min)
{
    return apr_psprintf(p, "%s (%s) is shorter than %s (%s)", max,
                        origin_of(c, max), min, origin_of(c, min));
}

const char *loader_config_set(apr_pool_t *p, loader_config_t *c,
                              const char *key, const char *value,
                              const char *origin)
{
    const setting_t *k = find_key(key);
    char *base = (char *)c;
    const char *err = NULL;

    if (!k) {
        const char *const *n;
        const char *known = "";
        for (n = loader_config_keys(); *n; n++)
            known = apr_pstrcat(p, known, *known ? ", " : "", *n, NULL);
        return apr_psprintf(p, "%s: unknown setting '%s' (known: %s)", origin,
                            key, known);
    }
    switch (k->kind) {
    case K_STRING:
        /* An empty value means "not set" (the default), e.g. location. */
        *(const char **)(base + k->offset) =
            *value ? apr_pstrdup(p, value) : NULL;
        break;
    case K_FLAG:
        err = datos_conf_flag(p, value, (int *)(base + k->offset));
        break;
    case K_INT:
        err = datos_conf_int(p, value, k->min, k->max,
                             (apr_int64_t *)(base + k->offset));
        break;
    case K_SIZE:
        err = datos_conf_size(p, value, k->min, k->max,
                              (apr_int64_t *)(base + k->offset));
        break;
    case K_DURATION:
        err = datos_conf_duration(p, value, k->unit, k->min, k->max,
                                  (apr_interval_time_t *)(base + k->offset));
        break;
    case K_UNKNOWN_POLICY:
        if (!strcasecmp(value, "reject"))
            c->unknown_fields = DATOS_UNKNOWN_REJECT;
        else if (!strcasecmp(value, "drop"))
            c->unknown_fields = DATOS_UNKNOWN_DROP;
        else
            err = "must be 'reject' or 'drop'";
        break;
    }
    if (err)
        return apr_psprintf(p, "%s: %s: %s", origin, key, err);
    if (!c->origin)
        c->origin = apr_hash_make(p);
    apr_hash_set(c->origin, apr_pstrdup(p, key), APR_HASH_KEY_STRING,
                 apr_pstrdup(p, origin));
    return NULL;
}

/* A value as written: bare (blanks at the ends dropped) or in double
 * quotes. */
static const char *value_of(apr_pool_t *p, const char *s, apr_size_t n,
                            const char **err)
{
    char *out, *o;
    apr_size_t i;

    *err = NULL;
    while (n && apr_isspace(s[n - 1]))
        n--;
    while (n && apr_isspace(*s)) {
        s++;
        n--;
    }
    if (!n || s[0] != '"')
        return apr_pstrmemdup(p, s, n);
    out = o = apr_palloc(p, n);
    for (i = 1; i < n; i++) {
        if (s[i] == '"') {
            if (i != n - 1) {
                *err = "text after the closing quote";
                return NULL;
            }
            *o = '\0';
            return out;
        }
        if (s[i] == '\\' && i + 1 < n && (s[i + 1] == '"' || s[i + 1] == '\\'))
            i++;
        *o++ = s[i];
    }
    *err = "no closing quote";
    return NULL;
}

const char *loader_config_parse(apr_pool_t *p, const char *name,
                                const char *text, apr_size_t len,
                                loader_config_t *c)
{
    apr_hash_t *seen = apr_hash_make(p);
    apr_size_t pos = 0;
    int lineno = 0;

    while (pos < len) {
        const char *line = text + pos, *eq, *nl, *err;
        apr_size_t n, klen;
        const char *key, *value, *where, *msg;

        nl = memchr(line, '\n', len - pos);
        n = nl ? (apr_size_t)(nl - line) : len - pos;
        pos += n + (nl ? 1 : 0);
        lineno++;
        if (memchr(line, '\0', n))
            return apr_psprintf(p, "%s:%d: a NUL byte", name, lineno);
        while (n && (line[n - 1] == '\r' || apr_isspace(line[n - 1])))
            n--;
        while (n && apr_isspace(*line)) {
            line++;
            n--;
        }
        if (!n || *line == '#')
            continue;
        where = apr_psprintf(p, "%s:%d", name, lineno);
        eq = memchr(line, '=', n);
        if (!eq)
            return apr_psprintf(p, "%s: expected 'key = value', got '%s'",
                                where, datos_err_text(p, line, n, 60));
        klen = (apr_size_t)(eq - line);
        while (klen && apr_isspace(line[klen - 1]))
            klen--;
        if (!klen)
            return apr_psprintf(p, "%s: no key before '='", where);
        key = apr_pstrmemdup(p, line, klen);
        value = value_of(p, eq + 1, (apr_size_t)(line + n - eq - 1), &err);
        if (!value)
            return apr_psprintf(p, "%s: %s: %s", where, key, err);
        if (apr_hash_get(seen, key, APR_HASH_KEY_STRING))
            return apr_psprintf(
                p, "%s: %s is set twice (also at %s)", where,
                datos_err_text(p, key, klen, 60),
                (const char *)apr_hash_get(seen, key, APR_HASH_KEY_STRING));
        if ((msg = loader_config_set(p, c, key, value, where)))
            return msg;
        apr_hash_set(seen, key, APR_HASH_KEY_STRING, where);
    }
    return NULL;
}

const char *loader_config_env(apr_pool_t *p, loader_config_t *c,
                              loader_getenv_fn *getenv_fn)
{
    static const struct {
        const char *var, *key;
    } env[] = {
        {"PUBSUB_EMULATOR_HOST", "pubsub_url"},
        {"BIGQUERY_EMULATOR_HOST", "bigquery_url"},
        {"GOOGLE_APPLICATION_CREDENTIALS", "credentials"},
        {"GOOGLE_CLOUD_PROJECT", "project"},
    };
    apr_size_t i;
    const char *msg;

    for (i = 0; i < sizeof(env) / sizeof(env[0]); i++) {
        const char *v = getenv_fn(env[i].var);
        if (!v || !*v)
            continue;
        /* An emulator variable replaces the configured URL; libdatos reads
         * it (datos_endpoint_resolve), so the rule lives in one place. */
        if (strstr(env[i].var, "_EMULATOR_HOST"))
            v = "";
        if ((msg = loader_config_set(p, c, env[i].key, v, env[i].var)))
            return msg;
    }
    return NULL;
}

/* A Pub/Sub resource name: a short name or "projects/P/<kind>/N". */
static const char *resource_name(apr_pool_t *p, const char *project,
                                 const char *kind, const char *setting,
                                 const char **value)
{
    const char *full, *msg;

    if ((msg = datos_pubsub_resource_name(p, *value, kind, project, &full)))
        return apr_psprintf(p, "%s: %s", setting, msg);
    if (!full)
        return apr_psprintf(p,
                            "%s: a short name needs a project (set "
                            "project, GOOGLE_CLOUD_PROJECT, or use "
                            "credentials that name one)",
                            setting);
    *value = full;
    return NULL;
}

const char *loader_config_finish(apr_pool_t *p, loader_config_t *c,
                                 const char *project_from_creds)
{
    datos_table_ref_t t;
    const char *msg;

    if (!c->project)
        c->project = project_from_creds;
    if (c->project && (msg = datos_project_id_check(p, c->project)))
        return apr_psprintf(p, "project (%s): %s", origin_of(c, "project"),
                            msg);
    if (!c->project)
        return "project: not set, and the credentials name none (set "
               "project in the config file or GOOGLE_CLOUD_PROJECT)";
    if ((msg = datos_table_parse(p, c->table, &t)))
        return apr_psprintf(p, "table (%s): %s", origin_of(c, "table"), msg);
    if (c->location && (msg = datos_location_check(p, c->location)))
        return apr_psprintf(p, "location (%s): %s", origin_of(c, "location"),
                            msg);
    if ((msg = resource_name(p, c->project, "subscriptions", "subscription",
                             &c->subscription))
        || (msg = resource_name(p, c->project, "topics", "dead_letter_topic",
                                &c->dead_letter_topic))
        || (msg = resource_name(p, c->project, "topics", "topic", &c->topic))
        || (msg = resource_name(p, c->project, "subscriptions",
                                "dead_letter_subscription",
                                &c->dead_letter_subscription)))
        return msg;
    if (c->retry_max < c->retry_initial)
        return shorter_than(p, c, "retry_max", "retry_initial");
    if (c->failure_backoff_max < c->failure_backoff)
        return shorter_than(p, c, "failure_backoff_max", "failure_backoff");
    if (!c->state_dir || !*c->state_dir)
        return "state_dir: required (the journal of load jobs lives there)";
    if (!c->lock_file)
        c->lock_file = apr_pstrcat(p, c->state_dir, "/datos-loader.lock", NULL);
    return NULL;
}
