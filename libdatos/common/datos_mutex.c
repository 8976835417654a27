/* datos_mutex.c - the per-process thread mutex of a shared libdatos object. */
#include "datos_mutex.h"

static apr_status_t slot_clear(void *data)
{
    *(apr_thread_mutex_t **)data = NULL;
    return APR_SUCCESS;
}

apr_status_t datos_mutex_create(apr_thread_mutex_t **slot, apr_pool_t *p)
{
#if APR_HAS_THREADS
    apr_status_t rv =
        apr_thread_mutex_create(slot, APR_THREAD_MUTEX_DEFAULT, p);

    if (rv != APR_SUCCESS) {
        *slot = NULL;
        return rv;
    }
#else
    *slot = NULL;
#endif
    apr_pool_cleanup_register(p, slot, slot_clear, apr_pool_cleanup_null);
    return APR_SUCCESS;
}

void datos_mutex_lock(apr_thread_mutex_t *m)
{
#if APR_HAS_THREADS
    if (m) {
        apr_thread_mutex_lock(m);
    }
#else
    (void)m;
#endif
}

void datos_mutex_unlock(apr_thread_mutex_t *m)
{
#if APR_HAS_THREADS
    if (m) {
        apr_thread_mutex_unlock(m);
    }
#else
    (void)m;
#endif
}
