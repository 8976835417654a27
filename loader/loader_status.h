/* loader_status.h - `datos-loader --status`: what the loader's local state
 * says, judged as a Nagios plugin judges (docs/loader.md, "Status").
 *
 *   loader_history.c  state_dir/history.json: the last runs, the time of
 *                     the last success and the load jobs of the UTC day,
 *                     rewritten whole at the end of every run
 *   loader_status.c   reads the state (never the network), judges it with
 *                     pure functions, prints the text or the JSON
 */
#ifndef LOADER_STATUS_H
#define LOADER_STATUS_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <apr_time.h>

#include "loader.h"

/* Nagios plugin exit codes. */
#define LOADER_STATUS_OK       0
#define LOADER_STATUS_WARNING  1
#define LOADER_STATUS_CRITICAL 2
#define LOADER_STATUS_UNKNOWN  3

/* Runs kept in the history: enough for a screen, bounded whatever happens. */
#define LOADER_HISTORY_MAX 20
/* BigQuery's load jobs per table per day, failures included
 * (docs/google-apis.md, quotas), and the shares of it that warn. */
#define LOADER_LOAD_JOB_QUOTA 1500
#define LOADER_QUOTA_WARNING  1200 /* 80 % */
#define LOADER_QUOTA_CRITICAL 1425 /* 95 % */
/* Runs missed before a missing success is critical. */
#define LOADER_STALE_INTERVALS 3

/* ------------------------------------------------------------- history */

typedef struct loader_run_record_t {
    apr_time_t started;
    apr_time_t finished;
    int exit_code;
    /* "ok", "unrouted" (exit 3), "failed", "held_off" (did not pull: an
     * earlier run failed), "stopped" (a signal), "config_error" */
    const char *outcome;
    apr_int64_t pulled, loaded, dead_lettered, unrouted;
    apr_int64_t load_jobs; /* jobs.insert accepted by BigQuery */
    int drained;
} loader_run_record_t;

typedef struct loader_history_t {
    apr_array_header_t *runs; /* loader_run_record_t, newest first */
    apr_time_t last_success;  /* 0: none recorded */
    const char *jobs_day;     /* "YYYY-MM-DD" (UTC) of jobs_on_day; NULL */
    apr_int64_t jobs_on_day;
} loader_history_t;

/* "YYYY-MM-DD" of t in UTC. */
const char *loader_utc_day(apr_pool_t *p, apr_time_t t);

/* An empty history. */
void loader_history_init(apr_pool_t *p, loader_history_t *h);

/* Parses the file's text; NULL or why it is not a history. */
const char *loader_history_parse(apr_pool_t *p, const char *text,
                                 apr_size_t len, loader_history_t *h);

/* Reads state_dir/history.json into h: APR_SUCCESS with *found 0 when
 * there is none yet; anything else with *why when it cannot be read. */
apr_status_t loader_history_read(apr_pool_t *p, const char *state_dir,
                                 loader_history_t *h, int *found,
                                 const char **why);

/* A run's outcome and counts as history.json and --status --json both
 * write them (each adds its own form of the times). */
void loader_run_record_json(json_t *o, const loader_run_record_t *r);

/* Adds a run, newest first, keeping LOADER_HISTORY_MAX; its load jobs count
 * for the UTC day it finished on (a new day starts from 0). */
void loader_history_add(apr_pool_t *p, loader_history_t *h,
                        const loader_run_record_t *run);

/* Writes the history atomically (a temporary file renamed over it). */
apr_status_t loader_history_write(apr_pool_t *p, const char *state_dir,
                                  const loader_history_t *h, const char **why);

/* The load jobs of the UTC day of now (0 when the history counted another
 * day). */
apr_int64_t loader_history_jobs_today(apr_pool_t *p, const loader_history_t *h,
                                      apr_time_t now);

/* -------------------------------------------------------------- status */

/* A journal entry as --status shows it. */
typedef struct loader_status_entry_t {
    const char *file;
    const char *job_id;
    int committed;
    int messages;         /* those not yet acked */
    apr_time_t since;     /* written, or first known committed */
    apr_time_t settle_by; /* a run should have settled it by then */
} loader_status_entry_t;

/* What the local state holds. */
typedef struct loader_status_t {
    const char *state_dir, *lock_file, *metrics_file; /* metrics: NULL */
    const char *history_file, *journal_dir, *hold_off_file;
    int metrics_present;
    const char *unreadable; /* why the state cannot be read: UNKNOWN */
    int history_found;
    loader_history_t history;
    int lock_held; /* 1 a run holds the lock, 0 none, -1 cannot tell */
    long lock_pid; /* its process, 0 when not known */
    int hold_off;  /* a hold-off file is there */
    apr_time_t hold_off_until;
    apr_interval_time_t hold_off_delay;
    apr_array_header_t *journal;      /* loader_status_entry_t */
    apr_array_header_t *corrupt;      /* const char *: entries moved aside */
    apr_interval_time_t run_interval; /* 0: not known, no staleness check */
} loader_status_t;

typedef struct loader_status_problem_t {
    int level; /* LOADER_STATUS_WARNING .. LOADER_STATUS_UNKNOWN */
    const char *code;
    const char *message;
} loader_status_problem_t;

typedef struct loader_verdict_t {
    int code;                     /* the exit code, LOADER_STATUS_* */
    apr_array_header_t *problems; /* loader_status_problem_t, worst first */
    apr_int64_t jobs_today;
    const char *day;
} loader_verdict_t;

/* When a run should have settled an entry: its keep time (an uncommitted
 * entry: its lease, after which its messages are back on the subscription;
 * a committed one: its lease, Pub/Sub's longest redelivery and a margin)
 * plus one run interval. */
apr_time_t loader_status_settle_by(const loader_journal_entry_t *e,
                                   apr_interval_time_t default_lease,
                                   apr_interval_time_t run_interval);

/* Judges s at now (docs/loader.md, "Status"): the thresholds live here
 * and nowhere else. Pure: no file, no clock. */
void loader_status_judge(apr_pool_t *p, const loader_status_t *s,
                         apr_time_t now, loader_verdict_t *v);

/* The holder of a flock(2) lock on the file (dev major:minor, inode) in
 * the text of /proc/locks: 1 and *pid, or 0. */
int loader_status_lock_holder(const char *proc_locks, unsigned long major,
                              unsigned long minor, unsigned long inode,
                              long *pid);

/* Reads the state the configuration points at; never the network, and
 * nothing is written, moved or locked. */
apr_status_t loader_status_collect(apr_pool_t *p, const loader_config_t *c,
                                   loader_status_t *s);

/* The Nagios text (first line "DATOS-LOADER OK - ...", performance data
 * after '|') or the JSON object (docs/schemas/loader-status.schema.json). */
const char *loader_status_text(apr_pool_t *p, const loader_status_t *s,
                               const loader_verdict_t *v, apr_time_t now);
const char *loader_status_json(apr_pool_t *p, const loader_status_t *s,
                               const loader_verdict_t *v, apr_time_t now);

/* --status: collect, judge, print on stdout; returns the exit code. A
 * configuration that could not be read (msg) is UNKNOWN. */
int loader_status(apr_pool_t *p, const loader_config_t *c, int json,
                  const char *msg);

#endif
