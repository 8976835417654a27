/* datos_mutex.h - the per-process thread mutex of a shared libdatos object.
 *
 * Objects such as credentials and BigQuery clients are built before httpd
 * forks and are shared by the threads of each child. Their mutex is made
 * per process (child_init) and may be absent in a single-threaded program,
 * so locking a NULL mutex is a no-op.
 */
#ifndef DATOS_MUTEX_H
#define DATOS_MUTEX_H

#include <apr_pools.h>
#include <apr_thread_mutex.h>

#if !APR_HAS_THREADS
typedef void apr_thread_mutex_t;
#endif

/* Creates *slot in p; a cleanup of p sets *slot back to NULL, so the owner
 * never locks a destroyed mutex. */
apr_status_t datos_mutex_create(apr_thread_mutex_t **slot, apr_pool_t *p);
void datos_mutex_lock(apr_thread_mutex_t *m);
void datos_mutex_unlock(apr_thread_mutex_t *m);

#endif
