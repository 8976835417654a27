/* datos_pubsub_scan.h - the pieces of a subscriptions.pull answer too
 * large or too broken to read whole (docs/google-apis.md 1.5): their ack
 * ids, so that their leases can be released, and where the answer can be
 * cut for datos_pubsub_parse_pull_cut (datos_pubsub_pull.h).
 */
#ifndef DATOS_PUBSUB_SCAN_H
#define DATOS_PUBSUB_SCAN_H

#include <apr_pools.h>
#include <apr_tables.h>

/* Follows an answer as it arrives, in pieces of any size, keeping only the
 * ack id and the offsets of each entry of receivedMessages: what it takes
 * to release the leases of entries that were not read (past a size cap,
 * or in an answer that fails to parse, or cut short by a failed
 * transfer). It checks no syntax: its ack ids are only ever nacked, and
 * nacking something that is not a live ack id is harmless. */
typedef struct datos_pull_scan_t datos_pull_scan_t;

typedef struct datos_pull_entry_t {
    apr_size_t start;   /* offset of the entry's first byte */
    apr_size_t end;     /* offset after its last byte */
    const char *ack_id; /* NULL when it had none that could be read */
} datos_pull_entry_t;

/* A scanner; cut_limit is where the caller stops keeping bytes (the
 * answer's prefix of cut_limit bytes is what datos_pull_scan_cut
 * refers to). */
datos_pull_scan_t *datos_pull_scan_create(apr_pool_t *p, apr_size_t cut_limit);

/* The next n bytes of the answer. */
void datos_pull_scan_feed(datos_pull_scan_t *sc, const char *data,
                          apr_size_t n);

/* Every entry whose end was seen, in order (datos_pull_entry_t). */
const apr_array_header_t *datos_pull_scan_entries(const datos_pull_scan_t *sc);

/* Bytes fed so far. */
apr_size_t datos_pull_scan_bytes(const datos_pull_scan_t *sc);

/* Where the prefix of cut_limit bytes can be cut so that it ends after a
 * whole entry of receivedMessages (or right after its '['): the offset for
 * datos_pubsub_parse_pull_cut. 0 when the list did not start within the
 * prefix. Entries starting before the cut are the ones it reads. */
apr_size_t datos_pull_scan_cut(const datos_pull_scan_t *sc);

#endif
