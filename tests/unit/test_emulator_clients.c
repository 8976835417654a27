/* test_emulator_clients.c - the libdatos clients against the project's GCP
 * emulator (emulator/server.py), where the scripted server cannot
 * show fidelity: the refresh-token grant and the metadata server of a real
 * implementation, Pub/Sub publish / pull / nack / ack, and BigQuery load
 * jobs through multipart and resumable uploads that the emulator really
 * parses and commits.
 *
 * Run by tests/integration/test_libdatos_clients.py, which starts the
 * emulator and passes (environment):
 *   BIGQUERY_EMULATOR_HOST, PUBSUB_EMULATOR_HOST   the emulator
 *   GCE_METADATA_HOST                              its metadata server
 *   DATOS_EMU_PROJECT, DATOS_EMU_DATASET           where the table is
 *   DATOS_EMU_TOPIC, DATOS_EMU_SUBSCRIPTION        full names
 *   DATOS_EMU_USER_FILE                            authorized_user credentials
 *   DATOS_EMU_RESUMABLE_ROWS                       rows of the resumable load
 * Without BIGQUERY_EMULATOR_HOST (make unit) every test is skipped. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dt_support.h"
#include "datos_load_client.h"
#include "datos_endpoint.h"
#include "datos_pubsub_client.h"

static const char *env(const char *name)
{
    const char *v = getenv(name);

    if (!v || !*v) {
        fail_msg("%s is not set", name);
    }
    return v;
}

static int have_emulator(void)
{
    const char *v = getenv("BIGQUERY_EMULATOR_HOST");
    return v && *v;
}

static datos_creds_t *user_creds(apr_pool_t *p)
{
    datos_creds_t *c;
    datos_err_t err = {0};

    /* The emulator's token_uri is plain http to loopback: no opt-in needed. */
    if (datos_creds_load(p, env("DATOS_EMU_USER_FILE"),
                         datos_scopes_bigquery_pubsub, DATOS_CREDS_ALLOW_USER,
                         &c, &err)
        != APR_SUCCESS) {
        fail_msg("user credentials: %s", err.message);
    }
    assert_int_equal(datos_creds_kind(c), DATOS_CREDS_USER);
    return c;
}

static datos_creds_t *metadata_creds(apr_pool_t *p)
{
    datos_creds_t *c;
    datos_err_t err = {0};

    if (datos_creds_load(p, "metadata", datos_scopes_bigquery_pubsub, 0, &c,
                         &err)
        != APR_SUCCESS) {
        fail_msg("metadata credentials: %s", err.message);
    }
    return c;
}

static apr_time_t soon(void)
{
    return apr_time_now() + apr_time_from_sec(30);
}

static datos_pubsub_t *pubsub(apr_pool_t *p, datos_creds_t *creds)
{
    datos_endpoint_t ep;
    datos_pubsub_conf_t conf;
    datos_pubsub_t *ps;
    datos_err_t err = {0};

    /* The emulator variable, read as every program reads it; credentials
     * are given anyway, since the emulator here requires them. */
    assert_int_equal(
        datos_endpoint_resolve(p, DATOS_API_PUBSUB, NULL, 0, 1, &ep, &err),
        APR_SUCCESS);
    assert_string_equal(ep.from_env, "PUBSUB_EMULATOR_HOST");
    memset(&conf, 0, sizeof(conf));
    conf.base_url = ep.base_url;
    datos_http_opts_default(&conf.http);
    conf.http.allow_insecure = ep.allow_insecure;
    conf.creds = creds;
    assert_int_equal(datos_pubsub_create(p, &conf, &ps, &err), APR_SUCCESS);
    return ps;
}

static datos_load_client_t *bqload(apr_pool_t *p, datos_creds_t *creds,
                                   apr_size_t above)
{
    datos_endpoint_t ep;
    datos_load_client_conf_t conf;
    datos_load_client_t *bl;
    datos_err_t err = {0};

    assert_int_equal(
        datos_endpoint_resolve(p, DATOS_API_BIGQUERY, NULL, 0, 1, &ep, &err),
        APR_SUCCESS);
    memset(&conf, 0, sizeof(conf));
    conf.base_url = ep.base_url;
    conf.project = env("DATOS_EMU_PROJECT");
    conf.table.dataset = env("DATOS_EMU_DATASET");
    conf.table.table = "datos";
    datos_http_opts_default(&conf.http);
    conf.http.allow_insecure = ep.allow_insecure;
    conf.creds = creds;
    conf.resumable_above = above;
    conf.chunk_size = DATOS_LOAD_CLIENT_CHUNK_UNIT;
    if (datos_load_client_create(p, &conf, &bl, &err) != APR_SUCCESS) {
        fail_msg("load client: %s", err.message);
    }
    return bl;
}

static const char *row(apr_pool_t *p, const char *id, int i)
{
    return apr_psprintf(
        p,
        "{\"id\":\"%s\",\"contenido\":\"{\\\"n\\\":%d}\","
        "\"timestamp\":\"2024-01-14T14:%02d:%02d.123456Z\","
        "\"message_id\":\"%d\",\"publish_time\":\"2024-01-14 14:00:00 UTC\"}\n",
        id, i, (i / 60) % 60, i % 60, 1000 + i);
}

static int ids_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void pubsub_round_trip(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_pubsub_t *ps;
    datos_pubsub_out_t out[3];
    datos_attr_t attr = {"source", "web", 3};
    apr_array_header_t *ids, *msgs, *attrs;
    const char *sub, *topic, *acks[3], *got[3], *want[3];
    datos_err_t err = {0};
    int i, tries;

    if (!have_emulator()) {
        skip();
    }
    ps = pubsub(p, user_creds(p));
    topic = env("DATOS_EMU_TOPIC");
    sub = env("DATOS_EMU_SUBSCRIPTION");
    attrs = apr_array_make(p, 1, sizeof(datos_attr_t));
    APR_ARRAY_PUSH(attrs, datos_attr_t) = attr;
    memset(out, 0, sizeof(out));
    for (i = 0; i < 3; i++) {
        const char *d =
            apr_psprintf(p, "{\"id\":\"m%d\",\"contenido\":\"x\"}", i);
        out[i].data = (const unsigned char *)d;
        out[i].data_len = strlen(d);
    }
    out[1].attributes = attrs;
    if (datos_pubsub_publish(ps, p, soon(), topic, out, 3, &ids, &err)
        != APR_SUCCESS) {
        fail_msg("publish: %s", err.message);
    }
    assert_int_equal(ids->nelts, 3);

    /* all three come back, each with its data and id */
    msgs = apr_array_make(p, 3, sizeof(datos_pubsub_msg_t));
    for (tries = 0; tries < 10 && msgs->nelts < 3; tries++) {
        apr_array_header_t *got_now;
        if (datos_pubsub_pull(ps, p, soon(), sub, 10, &got_now, &err)
            != APR_SUCCESS) {
            fail_msg("pull: %s", err.message);
        }
        apr_array_cat(msgs, got_now);
    }
    assert_int_equal(msgs->nelts, 3);
    for (i = 0; i < 3; i++) {
        const datos_pubsub_msg_t *m =
            &APR_ARRAY_IDX(msgs, i, datos_pubsub_msg_t);
        assert_null(m->problem);
        acks[i] = m->ack_id;
        got[i] = m->message_id;
        want[i] = APR_ARRAY_IDX(ids, i, const char *);
        assert_int_equal(strncmp((const char *)m->data, "{\"id\":\"m", 8), 0);
        if (!strcmp((const char *)m->data,
                    "{\"id\":\"m1\",\"contenido\":\"x\"}")) {
            assert_int_equal(m->attributes->nelts, 1);
            assert_string_equal(
                APR_ARRAY_IDX(m->attributes, 0, datos_attr_t).key, "source");
        }
    }
    qsort(got, 3, sizeof(got[0]), ids_cmp);
    qsort(want, 3, sizeof(want[0]), ids_cmp);
    for (i = 0; i < 3; i++) {
        assert_string_equal(got[i], want[i]);
    }

    /* a nack brings one back at once, under a new ack id */
    assert_int_equal(datos_pubsub_modack(ps, p, soon(), sub, acks, 1, 0, &err),
                     APR_SUCCESS);
    assert_int_equal(datos_pubsub_pull(ps, p, soon(), sub, 10, &msgs, &err),
                     APR_SUCCESS);
    assert_int_equal(msgs->nelts, 1);
    assert_string_not_equal(APR_ARRAY_IDX(msgs, 0, datos_pubsub_msg_t).ack_id,
                            acks[0]);
    acks[0] = APR_ARRAY_IDX(msgs, 0, datos_pubsub_msg_t).ack_id;
    /* extending the others' leases, then acknowledging all: nothing is left */
    assert_int_equal(
        datos_pubsub_modack(ps, p, soon(), sub, acks + 1, 2, 600, &err),
        APR_SUCCESS);
    assert_int_equal(datos_pubsub_ack(ps, p, soon(), sub, acks, 3, &err),
                     APR_SUCCESS);
    assert_int_equal(datos_pubsub_pull(ps, p, soon(), sub, 10, &msgs, &err),
                     APR_SUCCESS);
    assert_int_equal(msgs->nelts, 0);

    /* a subscription that does not exist */
    assert_int_equal(datos_pubsub_pull(ps, p, soon(),
                                       apr_pstrcat(p, sub, "-none", NULL), 1,
                                       &msgs, &err),
                     DATOS_EREJECTED);
    assert_string_equal(err.reason, "NOT_FOUND");
}

/* Metadata-server credentials: a multipart load, the same id again, jobs.get. */
static void bigquery_multipart_load(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_load_client_t *bl;
    datos_table_info_t info;
    datos_loadjob_t *job = NULL;
    datos_err_t err = {0};
    const char *data;
    int i;

    if (!have_emulator()) {
        skip();
    }
    bl = bqload(p, metadata_creds(p), 0);
    if (datos_load_client_table(bl, p, soon(), &info, &err) != APR_SUCCESS) {
        fail_msg("tables.get: %s", err.message);
    }
    assert_string_equal(info.location, "southamerica-east1");
    assert_true(info.has_message_id && info.has_publish_time);
    data = "";
    for (i = 0; i < 3; i++) {
        data =
            apr_pstrcat(p, data, row(p, apr_psprintf(p, "mp%d", i), i), NULL);
    }
    if (datos_load_client_insert(bl, p, soon(), "datos_emu_multipart_g0",
                                 info.location, data, strlen(data), &job, &err)
        != APR_SUCCESS) {
        fail_msg("jobs.insert: %s", err.message);
    }
    assert_string_equal(job->job_id, "datos_emu_multipart_g0");
    assert_int_equal(job->state, DATOS_JOB_DONE);
    assert_int_equal(datos_loadjob_outcome(job), DATOS_JOB_SUCCEEDED);
    /* the same id again: taken, whatever the data */
    assert_int_equal(
        datos_load_client_insert(bl, p, soon(), "datos_emu_multipart_g0",
                                 info.location, data, strlen(data), &job, &err),
        DATOS_EEXISTS);
    assert_string_equal(err.reason, "duplicate");
    if (datos_load_client_get(bl, p, soon(), "datos_emu_multipart_g0",
                              info.location, &job, &err)
        != APR_SUCCESS) {
        fail_msg("jobs.get: %s", err.message);
    }
    assert_int_equal(job->state, DATOS_JOB_DONE);
    assert_int_equal(job->output_rows, 3);
    /* outside US/EU the job is found only with its location */
    assert_int_equal(datos_load_client_get(bl, p, soon(),
                                           "datos_emu_multipart_g0", "US", &job,
                                           &err),
                     DATOS_EREJECTED);
    assert_int_equal(err.http_status, 404);
}

/* User credentials: above the threshold, the resumable protocol in
 * 256 KiB chunks, which the emulator keeps only in whole units. */
static void bigquery_resumable_load(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_load_client_t *bl;
    datos_loadjob_t *job = NULL;
    datos_err_t err = {0};
    int rows, i;
    apr_size_t len = 0;
    char *data, *at;

    if (!have_emulator()) {
        skip();
    }
    rows = atoi(env("DATOS_EMU_RESUMABLE_ROWS"));
    bl = bqload(p, user_creds(p), 64 * 1024);
    data = apr_palloc(p, (apr_size_t)rows * 256);
    at = data;
    for (i = 0; i < rows; i++) {
        const char *r = row(p, apr_psprintf(p, "rs%06d", i), i);
        apr_size_t n = strlen(r);
        memcpy(at, r, n);
        at += n;
        len += n;
    }
    assert_true(len > 3 * DATOS_LOAD_CLIENT_CHUNK_UNIT);
    if (datos_load_client_insert(bl, p, soon(), "datos_emu_resumable_g0", NULL,
                                 data, len, &job, &err)
        != APR_SUCCESS) {
        fail_msg("jobs.insert: %s", err.message);
    }
    assert_int_equal(job->state, DATOS_JOB_DONE);
    assert_int_equal(datos_loadjob_outcome(job), DATOS_JOB_SUCCEEDED);
    assert_int_equal(job->output_rows, rows);
    printf("resumable load: %d rows, %" APR_SIZE_T_FMT " bytes\n", rows, len);
}

static int group_setup(void **state)
{
    if (dt_group_setup(state) != 0 || datos_http_global_init() != APR_SUCCESS) {
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    datos_http_global_cleanup();
    return dt_group_teardown(state);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        DT_TEST(pubsub_round_trip),
        DT_TEST(bigquery_multipart_load),
        DT_TEST(bigquery_resumable_load),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
