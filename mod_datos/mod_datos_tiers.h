/* mod_datos_tiers.h - the tiers an answer is kept in, below BigQuery: the
 * process copy, the shared tier (shmcb, memcache, redis) and the state
 * file; what is read from the last two is trusted only when sealed and
 * dated no later than now. Also the fleet's refresh lease, and the seeds
 * the parent reads from the state files at start. */
#ifndef MOD_DATOS_TIERS_H
#define MOD_DATOS_TIERS_H

#include "httpd.h"

#include "datos_answer.h"
#include "datos_trust.h"
#include "mod_datos_runtime.h"

/* One operation on a store's tiers: where to log, which pool to work in
 * (a request's, or a refresher's: never shared by two threads), and the
 * time it runs at. */
typedef struct mod_datos_op_t {
    mod_datos_store_t *st;
    server_rec *s;
    apr_pool_t *pool;
    apr_time_t now;
} mod_datos_op_t;

/* The answer this process holds now, acquired (release it with
 * mod_datos_tiers_release), or NULL. */
datos_answer_t *mod_datos_tiers_current(mod_datos_store_t *st);
void mod_datos_tiers_release(mod_datos_store_t *st, datos_answer_t *a);

/* Makes a the process copy unless a newer one is there already (then a is
 * freed): either way, returns the current answer, acquired. */
datos_answer_t *mod_datos_tiers_install(mod_datos_op_t *op, datos_answer_t *a);

/* An answer newer than `have` (fetch time; 0: none) from the shared tier,
 * or from the state file when the shared tier has none (cold, or another
 * process of the host wrote one too big for it), made the process copy
 * and returned acquired; NULL when there is none to be trusted. The tiers
 * are read only when something newer may be there: cold, another process
 * of the host stored a newer one, or (fleet tiers, which other hosts
 * write) at most once per second per process, or always with `force`. */
datos_answer_t *mod_datos_tiers_newer(mod_datos_op_t *op, apr_time_t have,
                                      int force);

/* A fetched answer stored in the shared tier and the state file, sealed
 * for each. */
void mod_datos_tiers_store(mod_datos_op_t *op, const datos_answer_t *a);

/* The fleet's refresh lease (fleet tiers only): whoever holds a live one
 * (datos_policy_lease_live) is fetching. get returns 1 and the lease when
 * a sealed one is there (live or not), 0 when none (or the tier failed);
 * put writes ours; drop removes it. */
int mod_datos_tiers_lease_get(mod_datos_op_t *op, datos_lease_t *out);
apr_status_t mod_datos_tiers_lease_put(mod_datos_op_t *op,
                                       const datos_lease_t *lease);
void mod_datos_tiers_lease_drop(mod_datos_op_t *op);

/* post_config (the parent, as root): each store's state file read and
 * checked, kept as its seed and counted as the host's newest answer;
 * child_init: the seed made each child's process copy, when nothing newer
 * came since. */
void mod_datos_tiers_seed(apr_pool_t *pconf, server_rec *s);
void mod_datos_tiers_child_init(apr_pool_t *pchild, server_rec *s);

/* Raises the host's newest fetch time to fetched (it never goes back). */
void mod_datos_tiers_host_fetched(mod_datos_store_t *st, apr_time_t fetched);

#endif
