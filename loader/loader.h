/* loader.h - datos-loader: drains a Pub/Sub subscription into BigQuery load
 * jobs, dead-letters what does not fit the record, and loses nothing
 * (docs/design.md section 5).
 *
 * Files: loader_main.c (the command line, signals, --check-config),
 * loader_config.c (the config file, the environment, the flags),
 * loader_setup.c (endpoints, credentials and names, checked the same way
 * by a run and by --check-config), loader_log.c (JSON lines on stderr),
 * loader_journal.c (jobs in flight, on disk), loader_textfile.c (the
 * node_exporter textfile). One run, in four parts that share
 * loader_run.h: loader_run.c (the lock, hold-off, the loop, the metrics,
 * --redrive), loader_batch.c (pull, validate, dead-letter),
 * loader_load.c (the journal, the load job, its outcome, the acks) and
 * loader_calls.c (every Google call with its retries). Everything about
 * Google and the record is in libdatos.
 */
#ifndef LOADER_H
#define LOADER_H

#include <signal.h>
#include <stdio.h>
#include <jansson.h>
#include <apr_pools.h>
#include <apr_hash.h>
#include <apr_tables.h>
#include <apr_time.h>

#include "datos_error.h"
#include "datos_rules.h"

/* Exit codes (docs/design.md section 5, docs/loader.md). */
#define LOADER_EXIT_OK     0 /* done: the backlog drained or a bound reached */
#define LOADER_EXIT_RETRY  1 /* some work failed and will be retried */
#define LOADER_EXIT_CONFIG 2 /* configuration or credentials error */
#define LOADER_EXIT_UNROUTED \
    3 /* done, but messages that could not be dead-lettered were left to the \
       * subscription's own dead-letter policy */

/* ---------------------------------------------------------------- config */

typedef struct loader_config_t {
    /* Where */
    const char *project;      /* billing and resource project */
    const char *subscription; /* "projects/P/subscriptions/S" once resolved */
    const char *topic; /* the topic producers publish to (for --redrive) */
    const char *dead_letter_topic;        /* "projects/P/topics/T" */
    const char *dead_letter_subscription; /* for --redrive */
    const char *table;                    /* "[project.]dataset.table" */
    const char *location;                 /* NULL: the table's */
    const char *credentials; /* NULL: ADC; "metadata"; "none"; a path */
    const char
        *pubsub_url; /* service root, NULL: Google's or PUBSUB_EMULATOR_HOST */
    const char *
        bigquery_url; /* .../bigquery/v2, NULL: Google's or BIGQUERY_EMULATOR_HOST */
    int allow_insecure_http;
    const char *ca_file;

    /* How much */
    apr_int64_t batch_max_rows;
    apr_int64_t batch_max_bytes;
    apr_interval_time_t batch_max_age;
    apr_int64_t pull_max_bytes;      /* the largest pull answer held */
    apr_int64_t max_messages;        /* per run */
    apr_interval_time_t max_seconds; /* per run */
    int once;                        /* one load batch, then exit */
    int dry_run;
    int redrive;

    /* The record */
    datos_unknown_policy_t unknown_fields;
    apr_interval_time_t max_future_skew;

    /* Timeouts and retries */
    apr_interval_time_t http_timeout;
    apr_interval_time_t pull_timeout;
    apr_interval_time_t retry_initial;
    apr_interval_time_t retry_max;
    apr_interval_time_t retry_deadline;
    apr_interval_time_t lease; /* modifyAckDeadline of leased messages */
    apr_interval_time_t
        job_timeout; /* how long a load job may take to be DONE */
    apr_interval_time_t
        failure_backoff; /* runs after a failed one wait this long, */
    apr_interval_time_t
        failure_backoff_max; /* doubling per failed run up to this */
    apr_int64_t
        resumable_above; /* bytes; larger batches use resumable uploads */

    /* Files */
    const char *state_dir;
    const char *lock_file;
    const char *metrics_file; /* NULL: none */

    /* For --status: how often the timer or cron starts a run (0: not
     * known, no check that runs keep succeeding). */
    apr_interval_time_t run_interval;

    /* Where each value came from, for messages: "file:line", "environment",
     * "flag" or "default", keyed by setting name. */
    apr_hash_t *origin;
} loader_config_t;

/* Defaults for every setting. */
void loader_config_defaults(loader_config_t *c);

/* Parses the text of a config file: one `key = value` per line, `#`
 * comments, blank lines; values may be double-quoted. An unknown key, a
 * key given twice or a bad value is an error naming the key (and the line
 * number, with name as the file's name). Returns NULL or the message. */
const char *loader_config_parse(apr_pool_t *p, const char *name,
                                const char *text, apr_size_t len,
                                loader_config_t *c);

/* Sets one key as the file would (for flags and the environment); NULL or
 * a message naming the key. */
const char *loader_config_set(apr_pool_t *p, loader_config_t *c,
                              const char *key, const char *value,
                              const char *origin);

/* The environment over the file: PUBSUB_EMULATOR_HOST,
 * BIGQUERY_EMULATOR_HOST, GOOGLE_APPLICATION_CREDENTIALS,
 * GOOGLE_CLOUD_PROJECT. getenv_fn lets tests supply their own. */
typedef const char *loader_getenv_fn(const char *name);
const char *loader_config_env(apr_pool_t *p, loader_config_t *c,
                              loader_getenv_fn *getenv_fn);

/* Cross-setting checks and names made whole ("datos-subscription" ->
 * "projects/P/subscriptions/datos-subscription" once the project is
 * known); project may come from the credentials, so it is passed in when
 * the config has none. NULL or a message. */
const char *loader_config_finish(apr_pool_t *p, loader_config_t *c,
                                 const char *project_from_creds);

/* The documented keys, for --help and the example config's test. */
const char *const *loader_config_keys(void);

/* ---------------------------------------------------------------- logs */

/* One JSON object per line on stderr:
 *   {"time":"2026-11-30T01:02:03.456Z","level":"info","event":"batch_loaded",...}
 * An event is built with jansson and written whole with one write(2), so
 * lines never interleave. libdatos's own messages (warnings and up, or
 * everything with DATOS_LOADER_DEBUG=1 in the environment) arrive as
 * event "libdatos". Never a credential: libdatos masks them, and the
 * loader logs none. */
void loader_log_init(int fd);
/* A new event; add fields with jansson, then loader_emit. */
json_t *loader_event(const char *level, const char *event);
void loader_emit(json_t *ev);
/* An event with a "message" only. */
void loader_logf(const char *level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---------------------------------------------------------------- metrics */

typedef struct loader_counts_t {
    apr_int64_t pulled; /* messages received (each delivery) */
    apr_int64_t loaded; /* rows committed by load jobs */
    apr_int64_t invalid[DATOS_REASON_COUNT];
    apr_int64_t jobs_succeeded;
    apr_int64_t jobs_retried; /* DONE with a retryable error */
    apr_int64_t jobs_invalid;
    apr_int64_t jobs_quota;
    apr_int64_t jobs_failed;
    apr_int64_t dead_lettered;
    apr_int64_t unrouted; /* left to the subscription's dead-letter policy */
    apr_int64_t redriven;
} loader_counts_t;

/* What a drain run saw, for the textfile's gauges (the status page and
 * the dashboard read them). A field below 0 is unknown to the writer (a
 * redrive, a dry run) and keeps the file's previous value. */
typedef struct loader_run_seen_t {
    apr_int64_t backlog;    /* deliveries it pulled: what was waiting */
    int drained;            /* 1 when it ended on an empty pull */
    apr_int64_t jobs_today; /* load jobs this UTC day, from the history */
    apr_int64_t jobs_quota; /* BigQuery's load jobs per table per day */
} loader_run_seen_t;

/* Writes the node_exporter textfile atomically (a temporary file renamed
 * over it): counters carry on from the file's previous values; the last
 * success time is updated only when ok. */
apr_status_t loader_textfile_write(apr_pool_t *p, const char *path,
                                   const loader_counts_t *counts,
                                   const loader_run_seen_t *seen,
                                   apr_time_t started, apr_time_t finished,
                                   int ok, const char **why);

/* ---------------------------------------------------------------- journal */

/* A load job that may be in flight: written (and fsync'd) before
 * jobs.insert; once the job committed, kept until some run acknowledged
 * its messages or they can no longer come back (docs/design.md section
 * 5, "The journal"). */
typedef struct loader_journal_entry_t {
    const char *path; /* its file */
    const char *job_id;
    const char *location;
    const char *table;
    int generation;
    int committed; /* the job is known to be DONE without error */
    apr_time_t written;
    apr_time_t committed_at;         /* when a run first knew it committed; 0 */
    apr_interval_time_t lease;       /* the lease its messages were held with */
    apr_array_header_t *message_ids; /* const char *: those not yet acked */
} loader_journal_entry_t;

/* Makes dir/journal when missing. */
apr_status_t loader_journal_open(apr_pool_t *p, const char *state_dir,
                                 const char **dir, const char **why);

/* Writes an entry durably (temporary file, fsync, rename, fsync of the
 * directory). Its path is set from the batch key: one entry per batch,
 * replaced as the batch moves to a new generation. */
apr_status_t loader_journal_write(apr_pool_t *p, const char *dir,
                                  const char *batch_key,
                                  loader_journal_entry_t *e, const char **why);

/* Every entry in dir; a file that cannot be read as an entry is moved
 * aside (renamed *.corrupt) and named in *corrupt (const char *), never
 * trusted. */
apr_status_t loader_journal_list(apr_pool_t *p, const char *dir,
                                 apr_array_header_t **entries,
                                 apr_array_header_t **corrupt,
                                 const char **why);

/* The same listing, changing nothing: a file that is not an entry is
 * named in *bad and left where it is (for --status). */
apr_status_t loader_journal_peek(apr_pool_t *p, const char *dir,
                                 apr_array_header_t **entries,
                                 apr_array_header_t **bad, const char **why);

apr_status_t loader_journal_remove(apr_pool_t *p,
                                   const loader_journal_entry_t *e);

/* ---------------------------------------------------------------- run */

/* Set by SIGTERM/SIGINT: stop pulling, give back what is not yet sent
 * anywhere, leave a load job in flight to the journal, exit. */
extern volatile sig_atomic_t loader_stop;

/* Takes the run lock at path (loader_run.c; a run takes it once its
 * settings are whole, since the lock file lives in state_dir by default):
 * the descriptor (kept open for the run), -1 when another run holds it,
 * -2 on an error (logged). */
int loader_lock(apr_pool_t *p, const char *path);

/* ---------------------------------------------------------------- setup */

/* What a run resolves before its first call to Google. */
typedef struct loader_setup_t {
    const char *pubsub_base, *bigquery_base;
    int pubsub_insecure, bigquery_insecure; /* plain http allowed */
    int pubsub_creds_none, bigquery_creds_none;
    struct datos_creds_t *creds;
    const char *project; /* NULL: the metadata server's, asked at run time */
    int retry; /* the error was the network's: a later run may do (exit 1) */
} loader_setup_t;

/* The endpoints, the credentials (a key file is read and checked, never
 * exchanged) and the names made whole with the project, in that order
 * and with the same rules for a run and for --check-config. offline: the
 * project is never asked of the network; a project only the metadata
 * server knows is checked against a stand-in. NULL, or the error (naming
 * the setting): a configuration error for exit 2 unless out->retry. */
const char *loader_setup(apr_pool_t *p, loader_config_t *c, int offline,
                         loader_setup_t *out);

struct datos_http_opts_t;

/* The HTTP options every call of the loader starts from: the settings'
 * timeout, CA file, transport rule and the user agent. */
void loader_http_opts(const loader_config_t *c, struct datos_http_opts_t *opts);

/* One run; returns the exit code. */
int loader_run(apr_pool_t *p, loader_config_t *c);

/* --redrive: dead-letter messages without datos_error back to the topic. */
int loader_redrive(apr_pool_t *p, loader_config_t *c);

#endif
