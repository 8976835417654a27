/* test_loader_status.c - `datos-loader --status` judged without a run:
 * every threshold of loader_status_judge at and around its edge, the run
 * history (bounded, the last success kept, load jobs per UTC day, read back
 * as written), when a journal entry is due, the lock's holder in
 * /proc/locks, and the state read from a directory. */
#include <string.h>

#include "datos_json.h"
#include "dt_support.h"
#include "loader_run.h"
#include "loader_status.h"

#define SEC(n) apr_time_from_sec(n)
/* 2026-12-07T12:00:00Z */
#define NOON APR_INT64_C(1796644800000000)

static int starts_with(const char *s, const char *prefix)
{
    return !strncmp(s, prefix, strlen(prefix));
}

#define PARSE(p, text, h) loader_history_parse(p, text, strlen(text), h)
#define WRITE(p, dir, name, text) \
    dt_write_file(p, dir, name, text, strlen(text), 0600)

static loader_run_record_t run_at(apr_time_t finished, int exit_code,
                                  const char *outcome)
{
    loader_run_record_t r;

    memset(&r, 0, sizeof(r));
    r.started = finished - SEC(4);
    r.finished = finished;
    r.exit_code = exit_code;
    r.outcome = outcome;
    r.pulled = r.loaded = 20;
    r.load_jobs = 1;
    r.drained = 1;
    return r;
}

/* A host whose last run, a minute before now, went well. */
static void fresh(apr_pool_t *p, loader_status_t *s, apr_time_t now)
{
    loader_run_record_t r = run_at(now - SEC(60), 0, "ok");

    memset(s, 0, sizeof(*s));
    s->state_dir = "/var/lib/datos-loader";
    s->lock_file = "/var/lib/datos-loader/datos-loader.lock";
    s->history_file = "/var/lib/datos-loader/history.json";
    s->journal_dir = "/var/lib/datos-loader/journal";
    s->hold_off_file = "/var/lib/datos-loader/hold-off";
    s->history_found = 1;
    s->run_interval = SEC(300);
    s->journal = apr_array_make(p, 2, sizeof(loader_status_entry_t));
    s->corrupt = apr_array_make(p, 1, sizeof(const char *));
    loader_history_init(p, &s->history);
    loader_history_add(p, &s->history, &r);
}

static const char *codes(apr_pool_t *p, const loader_verdict_t *v)
{
    const char *out = "";
    int i;

    for (i = 0; i < v->problems->nelts; i++)
        out = apr_pstrcat(
            p, out, i ? "," : "",
            APR_ARRAY_IDX(v->problems, i, loader_status_problem_t).code, NULL);
    return out;
}

static int judge(apr_pool_t *p, const loader_status_t *s, apr_time_t now,
                 const char *expect_codes)
{
    loader_verdict_t v;

    loader_status_judge(p, s, now, &v);
    assert_string_equal(codes(p, &v), expect_codes);
    return v.code;
}

static void a_fresh_host_is_ok(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    loader_status_t s;
    loader_verdict_t v;
    const char *text;

    fresh(p, &s, NOON);
    assert_int_equal(judge(p, &s, NOON, ""), LOADER_STATUS_OK);
    loader_status_judge(p, &s, NOON, &v);
    assert_int_equal(v.jobs_today, 1);
    assert_string_equal(v.day, "2026-12-07");
    text = loader_status_text(p, &s, &v, NOON);
    assert_true(starts_with(text, "DATOS-LOADER OK - last run ok at "
                                  "2026-12-07T11:59:00Z: 20 rows loaded"));
    assert_non_null(strstr(text,
                           "| load_jobs_today=1;1200;1425;0;1500 "
                           "journal_entries=0 last_success_age=60s;;900\n"));
    /* a hold-off that ended changes nothing */
    s.hold_off = 1;
    s.hold_off_until = NOON - 1;
    assert_int_equal(judge(p, &s, NOON, ""), LOADER_STATUS_OK);
}

static void no_run_yet_warns(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    loader_status_t s;

    fresh(p, &s, NOON);
    loader_history_init(p, &s.history);
    assert_int_equal(judge(p, &s, NOON, "no_runs"), LOADER_STATUS_WARNING);
}

static void the_last_run_decides(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    loader_status_t s;
    loader_run_record_t r;

    fresh(p, &s, NOON);
    r = run_at(NOON - SEC(10), 1, "failed");
    loader_history_add(p, &s.history, &r);
    assert_int_equal(judge(p, &s, NOON, "last_run_failed"),
                     LOADER_STATUS_WARNING);
    r = run_at(NOON - SEC(5), 3, "unrouted");
    loader_history_add(p, &s.history, &r);
    assert_int_equal(judge(p, &s, NOON, "last_run_unrouted"),
                     LOADER_STATUS_WARNING);
    r = run_at(NOON - SEC(4), 2, "config_error");
    loader_history_add(p, &s.history, &r);
    assert_int_equal(judge(p, &s, NOON, "last_run_config_error"),
                     LOADER_STATUS_CRITICAL);
    /* a held-off run is said by the hold-off itself */
    r = run_at(NOON - SEC(3), 1, "held_off");
    loader_history_add(p, &s.history, &r);
    s.hold_off = 1;
    s.hold_off_until = NOON + SEC(120);
    s.hold_off_delay = SEC(120);
    assert_int_equal(judge(p, &s, NOON, "hold_off"), LOADER_STATUS_WARNING);
    /* and a good run after it is OK again */
    s.hold_off = 0;
    r = run_at(NOON - SEC(1), 0, "ok");
    loader_history_add(p, &s.history, &r);
    assert_int_equal(judge(p, &s, NOON, ""), LOADER_STATUS_OK);
}

static void three_intervals_without_success_are_critical(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    loader_status_t s;
    loader_run_record_t r;
    apr_time_t last;

    fresh(p, &s, NOON);
    last = s.history.last_success;
    assert_int_equal(judge(p, &s, last + SEC(900), ""), LOADER_STATUS_OK);
    assert_int_equal(judge(p, &s, last + SEC(900) + 1, "no_success"),
                     LOADER_STATUS_CRITICAL);
    /* failed runs since do not reset it */
    r = run_at(last + SEC(800), 1, "failed");
    loader_history_add(p, &s.history, &r);
    assert_int_equal(s.history.last_success, last);
    assert_int_equal(
        judge(p, &s, last + SEC(901), "no_success,last_run_failed"),
        LOADER_STATUS_CRITICAL);
    /* a run_interval of 0 turns the check off */
    s.run_interval = 0;
    assert_int_equal(judge(p, &s, last + SEC(86400), "last_run_failed"),
                     LOADER_STATUS_WARNING);
    /* no success at all: counted from the oldest run recorded */
    s.run_interval = SEC(60);
    loader_history_init(p, &s.history);
    r = run_at(NOON, 1, "failed");
    loader_history_add(p, &s.history, &r);
    assert_int_equal(judge(p, &s, NOON + SEC(100), "last_run_failed"),
                     LOADER_STATUS_WARNING);
    assert_int_equal(
        judge(p, &s, NOON + SEC(200), "no_success,last_run_failed"),
        LOADER_STATUS_CRITICAL);
}

static void the_quota_warns_at_80_and_is_critical_at_95_percent(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    loader_status_t s;

    fresh(p, &s, NOON);
    s.history.jobs_on_day = 1199;
    assert_int_equal(judge(p, &s, NOON, ""), LOADER_STATUS_OK);
    s.history.jobs_on_day = 1200;
    assert_int_equal(judge(p, &s, NOON, "load_quota"), LOADER_STATUS_WARNING);
    s.history.jobs_on_day = 1424;
    assert_int_equal(judge(p, &s, NOON, "load_quota"), LOADER_STATUS_WARNING);
    s.history.jobs_on_day = 1425;
    assert_int_equal(judge(p, &s, NOON, "load_quota"), LOADER_STATUS_CRITICAL);
    s.run_interval = 0; /* hours pass below */
    /* yesterday's count is not today's: the day rolls over at 00:00 UTC */
    assert_int_equal(judge(p, &s, NOON + SEC(12 * 3600) - 1, "load_quota"),
                     LOADER_STATUS_CRITICAL);
    assert_int_equal(judge(p, &s, NOON + SEC(12 * 3600), ""), LOADER_STATUS_OK);
}

static loader_status_entry_t *add_entry(apr_pool_t *p, loader_status_t *s,
                                        int committed, apr_time_t settle_by)
{
    loader_status_entry_t *e = apr_array_push(s->journal);

    memset(e, 0, sizeof(*e));
    e->file = apr_psprintf(p, "datos_%d.json", s->journal->nelts);
    e->job_id = "datos_x_g0";
    e->committed = committed;
    e->messages = 20;
    e->since = settle_by - SEC(600);
    e->settle_by = settle_by;
    return e;
}

static void journal_entries_warn_then_are_critical_when_overdue(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    loader_status_t s;

    fresh(p, &s, NOON);
    add_entry(p, &s, 1, NOON + SEC(60));
    assert_int_equal(judge(p, &s, NOON, "journal_pending"),
                     LOADER_STATUS_WARNING);
    /* a run at work now: its own entry in flight is no news */
    s.lock_held = 1;
    assert_int_equal(judge(p, &s, NOON, ""), LOADER_STATUS_OK);
    s.lock_held = 0;
    assert_int_equal(judge(p, &s, NOON + SEC(60), "journal_pending"),
                     LOADER_STATUS_WARNING);
    s.run_interval = 0;
    assert_int_equal(judge(p, &s, NOON + SEC(61), "journal_overdue"),
                     LOADER_STATUS_CRITICAL);
    add_entry(p, &s, 0, NOON + SEC(600));
    assert_int_equal(
        judge(p, &s, NOON + SEC(61), "journal_overdue,journal_pending"),
        LOADER_STATUS_CRITICAL);
    /* overdue, but a run is at work: a warning */
    s.lock_held = 1;
    assert_int_equal(judge(p, &s, NOON + SEC(61), "journal_overdue"),
                     LOADER_STATUS_WARNING);
    /* a file that is not an entry */
    s.lock_held = 0;
    s.journal->nelts = 0;
    APR_ARRAY_PUSH(s.corrupt, const char *) = "/j/datos_y.json.corrupt";
    assert_int_equal(judge(p, &s, NOON, "journal_corrupt"),
                     LOADER_STATUS_WARNING);
}

static void an_entry_is_due_after_its_keep_time_and_one_interval(void **state)
{
    loader_journal_entry_t e;

    (void)state;
    memset(&e, 0, sizeof(e));
    e.written = NOON;
    e.lease = SEC(600);
    /* in doubt: its messages are back on the subscription after the lease */
    assert_int_equal(loader_status_settle_by(&e, SEC(60), SEC(300)),
                     NOON + SEC(900));
    /* an older entry without a lease takes the configured one */
    e.lease = 0;
    assert_int_equal(loader_status_settle_by(&e, SEC(60), SEC(300)),
                     NOON + SEC(360));
    /* committed: kept for redeliveries, from when it was known committed */
    e.committed = 1;
    e.committed_at = NOON + SEC(30);
    e.lease = SEC(600);
    assert_int_equal(loader_status_settle_by(&e, SEC(60), SEC(300)),
                     NOON + SEC(30) + SEC(600) + LOADER_REDELIVERY_MAX
                         + LOADER_JOURNAL_MARGIN + SEC(300));
}

static void problems_come_worst_first(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    loader_status_t s;
    loader_verdict_t v;
    loader_run_record_t r;
    const char *text;

    fresh(p, &s, NOON);
    r = run_at(NOON - SEC(1), 1, "failed");
    loader_history_add(p, &s.history, &r);
    s.hold_off = 1;
    s.hold_off_until = NOON + SEC(60);
    s.history.jobs_on_day = 1500;
    assert_int_equal(judge(p, &s, NOON, "load_quota,last_run_failed,hold_off"),
                     LOADER_STATUS_CRITICAL);
    loader_status_judge(p, &s, NOON, &v);
    text = loader_status_text(p, &s, &v, NOON);
    assert_true(
        starts_with(text, "DATOS-LOADER CRITICAL - 1500 of 1500 load jobs"));
    assert_non_null(strstr(text, "; the last run, at 2026-12-07T11:59:59Z, "
                                 "failed (exit 1, failed)"));
    assert_non_null(strstr(text, "hold-off until 2026-12-07T12:01:00Z"));
}

static void unreadable_state_is_unknown(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    loader_status_t s;
    loader_verdict_t v;
    const char *text;

    fresh(p, &s, NOON);
    s.history.jobs_on_day = 1500;
    s.unreadable = "state_dir /x is not a directory";
    assert_int_equal(judge(p, &s, NOON, "state_unreadable"),
                     LOADER_STATUS_UNKNOWN);
    loader_status_judge(p, &s, NOON, &v);
    text = loader_status_text(p, &s, &v, NOON);
    assert_string_equal(text, "DATOS-LOADER UNKNOWN - state_dir /x is not a "
                              "directory\n");
}

static void the_history_is_bounded_and_counts_jobs_per_utc_day(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    loader_history_t h;
    loader_run_record_t r;
    int i;

    loader_history_init(p, &h);
    for (i = 0; i < 30; i++) {
        /* 23:00 UTC onwards, one run every 5 minutes */
        r = run_at(NOON + SEC(11 * 3600) + SEC(300 * i), i == 29 ? 1 : 0,
                   i == 29 ? "failed" : "ok");
        r.load_jobs = 2;
        loader_history_add(p, &h, &r);
    }
    assert_int_equal(h.runs->nelts, LOADER_HISTORY_MAX);
    assert_int_equal(APR_ARRAY_IDX(h.runs, 0, loader_run_record_t).finished,
                     r.finished);
    assert_int_equal(h.last_success, r.finished - SEC(300));
    /* runs 0..11 finished on the 7th (up to 23:55), 12..29 on the 8th */
    assert_string_equal(h.jobs_day, "2026-12-08");
    assert_int_equal(h.jobs_on_day, 18 * 2);
    assert_int_equal(loader_history_jobs_today(p, &h, r.finished), 36);
    assert_int_equal(loader_history_jobs_today(p, &h, NOON), 0);
    assert_string_equal(loader_utc_day(p, NOON + SEC(12 * 3600) - 1),
                        "2026-12-07");
}

static void the_history_reads_back_as_written(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    const char *dir = dt_tmpdir(p), *why = NULL;
    loader_history_t h, back;
    loader_run_record_t r = run_at(NOON, 3, "unrouted");
    int found = -1;

    assert_int_equal(loader_history_read(p, dir, &back, &found, &why),
                     APR_SUCCESS);
    assert_int_equal(found, 0);
    loader_history_init(p, &h);
    r.unrouted = 2;
    r.dead_lettered = 5;
    loader_history_add(p, &h, &r);
    assert_int_equal(loader_history_write(p, dir, &h, &why), APR_SUCCESS);
    assert_int_equal(loader_history_read(p, dir, &back, &found, &why),
                     APR_SUCCESS);
    assert_int_equal(found, 1);
    assert_int_equal(back.runs->nelts, 1);
    assert_int_equal(back.last_success, NOON);
    assert_string_equal(back.jobs_day, "2026-12-07");
    assert_int_equal(back.jobs_on_day, 1);
    r = APR_ARRAY_IDX(back.runs, 0, loader_run_record_t);
    assert_int_equal(r.exit_code, 3);
    assert_string_equal(r.outcome, "unrouted");
    assert_int_equal(r.unrouted, 2);
    assert_int_equal(r.dead_lettered, 5);
    assert_int_equal(r.started, NOON - SEC(4));
    assert_true(r.drained);

    /* what is not a history is said, never half read */
    assert_non_null(PARSE(p, "{}", &back));
    assert_non_null(PARSE(p, "[1]", &back));
    assert_non_null(
        PARSE(p,
              "{\"version\":1,\"last_success\":0,\"load_jobs\":"
              "{\"day\":null,\"count\":0},\"runs\":[{\"started\":1}]}",
              &back));
    assert_null(PARSE(p,
                      "{\"version\":1,\"last_success\":0,\"load_jobs\":"
                      "{\"day\":null,\"count\":0},\"runs\":[]}",
                      &back));
    WRITE(p, dir, "history.json", "{\"version\":1,");
    assert_int_not_equal(loader_history_read(p, dir, &back, &found, &why),
                         APR_SUCCESS);
    assert_non_null(strstr(why, "history.json: not JSON"));
}

static void the_lock_holder_is_read_from_proc_locks(void **state)
{
    static const char locks[] =
        "1: POSIX  ADVISORY  WRITE 812 08:01:1836052 0 EOF\n"
        "2: FLOCK  ADVISORY  WRITE 2917 fd:01:1836052 0 EOF\n"
        "2: -> FLOCK  ADVISORY  WRITE 3001 fd:01:1836052 0 EOF\n"
        "3: FLOCK  ADVISORY  WRITE 4444 fd:01:99 0 EOF\n";
    long pid = 0;

    (void)state;
    assert_int_equal(loader_status_lock_holder(locks, 0xfd, 1, 1836052, &pid),
                     1);
    assert_int_equal(pid, 2917);
    /* a POSIX lock on the same inode of another device is not ours */
    assert_int_equal(loader_status_lock_holder(locks, 8, 1, 1836052, &pid), 0);
    assert_int_equal(loader_status_lock_holder(locks, 0xfd, 1, 99, &pid), 1);
    assert_int_equal(pid, 4444);
    assert_int_equal(loader_status_lock_holder("", 0xfd, 1, 99, &pid), 0);
}

static void the_state_is_read_from_its_directory(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    const char *dir = dt_tmpdir(p);
    loader_config_t c;
    loader_status_t s;
    loader_verdict_t v;
    json_t *j = NULL;
    datos_err_t err;
    const char *text;
    apr_size_t len = 0;

    loader_config_defaults(&c);
    c.state_dir = apr_pstrcat(p, dir, "/state", NULL);
    assert_int_not_equal(loader_status_collect(p, &c, &s), APR_SUCCESS);
    assert_non_null(strstr(s.unreadable, "does not exist"));

    dt_system(p, "mkdir -p %s/journal", c.state_dir);
    WRITE(p, c.state_dir, "hold-off",
          "{\"until\":1796645000000000,\"delay\":120000000}\n");
    WRITE(p, apr_pstrcat(p, c.state_dir, "/journal", NULL), "datos_ab.json",
          "{\"version\":1,\"job_id\":\"datos_ab_g0\",\"generation\":0,"
          "\"location\":\"US\",\"table\":\"p.d.t\",\"committed\":true,"
          "\"written\":1796644000000000,\"committed_at\":1796644100000000,"
          "\"lease\":600000000,\"message_ids\":[\"1\",\"2\"]}");
    WRITE(p, apr_pstrcat(p, c.state_dir, "/journal", NULL), "datos_cd.json",
          "{\"version\":1,");
    assert_int_equal(loader_status_collect(p, &c, &s), APR_SUCCESS);
    assert_null(s.unreadable);
    assert_int_equal(s.lock_held, 0);
    assert_true(s.hold_off);
    assert_int_equal(s.hold_off_until, APR_INT64_C(1796645000000000));
    assert_int_equal(s.journal->nelts, 1);
    assert_int_equal(
        APR_ARRAY_IDX(s.journal, 0, loader_status_entry_t).messages, 2);
    /* --status moves nothing aside: it only says */
    assert_int_equal(s.corrupt->nelts, 1);
    dt_read_file(p, apr_pstrcat(p, c.state_dir, "/journal/datos_cd.json", NULL),
                 &len);
    loader_status_judge(p, &s, NOON, &v);
    assert_string_equal(codes(p, &v),
                        "no_runs,hold_off,journal_pending,journal_corrupt");
    text = loader_status_json(p, &s, &v, NOON);
    datos_err_clear(&err);
    assert_int_equal(datos_json_parse(p, text, strlen(text), 1, &j, &err),
                     APR_SUCCESS);
    assert_string_equal(datos_json_str(j, "status"), "warning");
    assert_string_equal(datos_json_str(datos_json_obj(j, "hold_off"), "until"),
                        "2026-12-07T12:03:20Z");

    /* a history that cannot be read is UNKNOWN */
    WRITE(p, c.state_dir, "history.json", "[]");
    assert_int_not_equal(loader_status_collect(p, &c, &s), APR_SUCCESS);
    assert_non_null(strstr(s.unreadable, "not a version 1 history"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        DT_TEST(a_fresh_host_is_ok),
        DT_TEST(no_run_yet_warns),
        DT_TEST(the_last_run_decides),
        DT_TEST(three_intervals_without_success_are_critical),
        DT_TEST(the_quota_warns_at_80_and_is_critical_at_95_percent),
        DT_TEST(journal_entries_warn_then_are_critical_when_overdue),
        DT_TEST(an_entry_is_due_after_its_keep_time_and_one_interval),
        DT_TEST(problems_come_worst_first),
        DT_TEST(unreadable_state_is_unknown),
        DT_TEST(the_history_is_bounded_and_counts_jobs_per_utc_day),
        DT_TEST(the_history_reads_back_as_written),
        DT_TEST(the_lock_holder_is_read_from_proc_locks),
        DT_TEST(the_state_is_read_from_its_directory),
    };
    return cmocka_run_group_tests(tests, dt_group_setup, dt_group_teardown);
}
