/* loader_run.h - the state of one run, shared by its parts:
 *
 *   loader_run.c    the lock, hold-off, the loop of batches, the metrics,
 *                   --redrive
 *   loader_batch.c  a batch: pull (within a size bound), validate,
 *                   then its load and its dead letters
 *   loader_load.c   its load: the journal entry, the load job and its
 *                   outcome, the acks; the journal settled before and
 *                   after the run
 *   loader_settle.c acks, lease renewals, give-backs and dead letters
 *   loader_calls.c  each Google call with its retries, and the acks;
 *                   the stop flag SIGTERM sets
 *
 * Each file calls only those listed below it.
 *
 * docs/design.md section 5 says what a run guarantees and why.
 */
#ifndef LOADER_RUN_H
#define LOADER_RUN_H

#include "datos_auth.h"
#include "datos_backoff.h"
#include "datos_load_client.h"
#include "datos_pubsub.h"
#include "datos_pubsub_client.h"
#include "datos_table.h"
#include "datos_validate.h"
#include "loader.h"

/* Once told to stop, the calls that must still be made (acknowledging
 * committed work, giving back what was not sent anywhere) get this long
 * in all, so that a run ends well inside systemd's TimeoutStopSec (120 s
 * in conf/datos-loader.service) even with a call in flight. */
#define LOADER_STOP_GRACE apr_time_from_sec(40)

/* How long a committed journal entry is kept for messages that may still
 * come back, past its lease: Pub/Sub's largest retry back-off
 * (docs/google-apis.md 1.3), and a margin for redeliveries Pub/Sub makes
 * late ("best effort", 1.8). */
#define LOADER_REDELIVERY_MAX apr_time_from_sec(600)
#define LOADER_JOURNAL_MARGIN apr_time_from_sec(600)

/* One delivery of a message in the batch. */
typedef struct item_t {
    datos_pubsub_msg_t *m;
    datos_reason_t reason; /* DATOS_REASON_NONE: valid */
    const char *detail;
    datos_record_t rec; /* valid ones */
    apr_array_header_t
        *dup_acks; /* ack ids of other deliveries of the same message */
    int done;      /* acked or given back */
} item_t;

typedef struct batch_t {
    apr_pool_t *pool;
    apr_array_header_t *items; /* item_t */
    apr_hash_t *by_id;         /* message id -> item_t * */
    apr_int64_t bytes;
    int valid;
    int invalid;
    apr_time_t started;
    apr_time_t renew_at; /* next lease extension */
} batch_t;

typedef struct run_t {
    loader_config_t *c;
    apr_pool_t *p;
    loader_setup_t setup;
    datos_pubsub_t *ps;     /* pull, publish: a stop ends their transfers */
    datos_pubsub_t *settle; /* acknowledge, modifyAckDeadline: they finish */
    datos_load_client_t *bl;
    datos_table_info_t info;
    datos_table_ref_t table;
    const char *table_canon; /* project.dataset.table */
    const char *location;
    int columns; /* NDJSON optional columns */
    const char *journal_dir;
    apr_hash_t *committed; /* message id -> its committed journal entry */
    apr_array_header_t *committed_entries; /* (loader_load.c's) */
    apr_hash_t *returned; /* message ids given back to Pub/Sub's policy */
    int pull_max;         /* maxMessages of the next pull */
    apr_time_t started;
    apr_time_t deadline; /* no pulling after this */
    apr_time_t stop_by;  /* once stopping: the end of LOADER_STOP_GRACE */
    apr_int64_t pulled_messages;
    loader_counts_t counts;
    int stop_pulling;
    int failed;       /* exit 1 */
    int hold_off;     /* Google failed the batch: later runs hold off */
    int drained;      /* an empty pull was seen */
    int locked;       /* the run holds the lock: it writes the history */
    int held_off_now; /* did not pull: an earlier run failed */
    apr_int64_t jobs_inserted; /* load jobs BigQuery accepted (its quota) */
} run_t;

/* ------------------------------------------------------- loader_calls.c */

json_t *loader_run_event(const char *level, const char *name);
void loader_log_error(const char *event_name, const char *what, apr_status_t rv,
                      const datos_err_t *err);

/* A retry loop for one call (docs/design.md section 5, "Retries"): the
 * run's backoff, its retry log line, and the stop: a call that must finish
 * (acknowledging committed work, giving messages back) goes on for the
 * run's stop grace, any other ends at once. */
void loader_retry(run_t *r, datos_retry_t *rt, const char *what,
                  int must_finish);

/* The deadline of one HTTP attempt: http_timeout from now, and never past
 * the stop grace once stopping. */
apr_time_t loader_call_deadline(run_t *r, apr_interval_time_t timeout);

/* Waits t in short slices, returning early on a stop. */
void loader_pause(apr_interval_time_t t);

/* acknowledge (seconds < 0) or modifyAckDeadline of ids on subscription,
 * retried; must finish (see loader_retry). Logs a failure. */
apr_status_t loader_send_acks(run_t *r, const char *subscription,
                              apr_array_header_t *ids, int seconds);

/* One subscriptions.pull of up to max messages into p, holding at most
 * pull_max_bytes (a single message: up to what one message can make),
 * retried. Ack ids handed out but not read are given back at once, on
 * success and failure alike. */
apr_status_t loader_pull(run_t *r, apr_pool_t *p, const char *subscription,
                         int max, datos_pubsub_pulled_t *got, datos_err_t *err);

/* ------------------------------------------------------- loader_batch.c */

/* Pulls into a batch until it is full, the backlog is empty or the run's
 * bounds are reached; 0 when the subscription cannot be pulled. */
int loader_assemble(run_t *r, batch_t *b);

/* Validates, dead-letters and loads one batch. */
void loader_process(run_t *r, batch_t *b);

/* ------------------------------------------------------ loader_settle.c */

/* Publishes the items to the dead-letter topic (docs/design.md section 5,
 * "Dead letters"), acks those published and gives back, to the
 * subscription's own policy, those Pub/Sub refuses in any form. Not
 * APR_SUCCESS when the topic cannot be reached: the run stops. */
apr_status_t loader_dead_letter(run_t *r, item_t *const *items, int n);

apr_status_t loader_ack_items(run_t *r, item_t *const *items, int n);
void loader_renew_leases(run_t *r, batch_t *b, int force);
/* Gives the open messages of the batch back to Pub/Sub (a nack). */
void loader_give_back(run_t *r, batch_t *b);

/* -------------------------------------------------------- loader_load.c */

/* Loads n valid items as one load job (docs/design.md section 5, "Job
 * outcomes"): 1 when their messages are all acked (loaded or
 * dead-lettered as bigquery_rejected), 0 when the run must stop. */
int loader_load(run_t *r, batch_t *b, item_t **items, int n);

/* Before pulling: every job the journal says may be in flight is asked
 * about (docs/design.md section 5, "The journal"); 0 when one cannot be
 * resolved. */
int loader_resolve_journal(run_t *r);

/* A message that arrived again: 1 when a committed job of the journal
 * holds it (it is to be acked, never loaded again). */
int loader_journal_has(run_t *r, const char *message_id);
/* Its redelivery was acked: the entry has one message less to wait for. */
void loader_journal_acked(run_t *r, const char *message_id);

/* After the run: the committed entries whose messages were all acked by
 * this run are forgotten, the others rewritten with what is left, or
 * forgotten once those can no longer come back. */
void loader_settle_journal(run_t *r);

#endif
