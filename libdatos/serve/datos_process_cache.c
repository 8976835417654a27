/* datos_process_cache.c - the current version of an immutable object, read without
 * a lock: a split reference count over a small table of entries.
 *
 * The slot word packs the index (plus one; 0 means nothing published) of
 * the current entry in its top 8 bits and, in the 56 bits below, the number
 * of acquisitions made through it since it was published. A reader
 * acquires with one fetch_add on the word: the value it gets back names the
 * entry, and its increment is already counted there, so the entry cannot be
 * released until that reader lets go.
 *
 * Each entry holds an object and an internal count that readers decrement
 * when they release. While the entry is current nobody adds to it, so it
 * only goes down from 0 (minus the releases so far). A publish swaps the
 * word for the new entry's and adds the old word's acquisition count to the
 * old entry: the count is then acquisitions - releases >= 0, and exactly
 * one operation brings it to 0 — the publish itself when every reader has
 * already gone, or the last reader's release. That operation frees the
 * entry (object pointer back to NULL) and runs the release function, once.
 *
 * Invariants:
 *   - an entry is free iff its object pointer is NULL; only a writer (under
 *     the mutex) fills a free entry, only the operation that brings its
 *     count to 0 empties it, and a free entry's count is 0;
 *   - a live object sits in exactly one entry (publish refuses an object
 *     still in the table), so a reader finds the entry it acquired from by
 *     the object's address, even after newer publishes moved on;
 *   - before the count reaches 0 a decrement never sees 1, because the
 *     count stays <= 0 until the publish adds the acquisitions.
 *
 * The acquisition count cannot overflow in practice: 2^56 acquisitions of
 * one version at ten million a second take over two centuries.
 */
#include <stdatomic.h>
#include <stdint.h>

#include "datos_process_cache.h"
#include "datos_mutex.h"

#define COUNT_BITS 56
#define COUNT_MASK ((UINT64_C(1) << COUNT_BITS) - 1)

/* Padded to a cache line each, so the readers' traffic on the word and on
 * the current entry does not also bounce the lines next to them. */
typedef struct slot_entry_t {
    _Atomic(void *) obj;
    _Atomic(int64_t) count;
    char pad[64 - sizeof(void *) - sizeof(int64_t)];
} slot_entry_t;

struct datos_process_cache_t {
    _Atomic(uint64_t) word;
    char pad[64 - sizeof(uint64_t)];
    slot_entry_t entries[DATOS_PROCESS_CACHE_ENTRIES];
    datos_process_cache_release_fn *release;
    apr_thread_mutex_t *mutex; /* writers only */
};

/* Runs once per object, in whichever thread brought its count to 0. */
static void entry_free(datos_process_cache_t *s, slot_entry_t *e)
{
    /* Relaxed: the operation that brought the count to 0 was acq_rel,
     * after the release of every other holder and of the publish that
     * stored obj. The release store pairs with the acquire load of a
     * writer looking for a free entry, so a writer reuses the entry only
     * once this thread is done reading it. */
    void *obj = atomic_load_explicit(&e->obj, memory_order_relaxed);

    atomic_store_explicit(&e->obj, NULL, memory_order_release);
    if (s->release) {
        s->release(obj);
    }
}

/* The old word of a publish or clear: its acquisitions move onto its entry. */
static void retire(datos_process_cache_t *s, uint64_t old)
{
    unsigned idx = (unsigned)(old >> COUNT_BITS);
    int64_t acquired = (int64_t)(old & COUNT_MASK);
    slot_entry_t *e;

    if (!idx) {
        return; /* nothing was published */
    }
    e = &s->entries[idx - 1];
    /* acq_rel: whoever reaches 0 must see every reader's use of the object
     * (their release decrements) before the release function runs. */
    if (atomic_fetch_add_explicit(&e->count, acquired, memory_order_acq_rel)
            + acquired
        == 0) {
        entry_free(s, e);
    }
}

static apr_status_t slot_cleanup(void *data)
{
    datos_process_cache_clear(data);
    return APR_SUCCESS;
}

apr_status_t datos_process_cache_create(apr_pool_t *p,
                                        datos_process_cache_release_fn *release,
                                        datos_process_cache_t **out)
{
    datos_process_cache_t *s = apr_pcalloc(p, sizeof(*s));
    apr_status_t rv;
    int i;

    *out = NULL;
    atomic_init(&s->word, 0);
    for (i = 0; i < DATOS_PROCESS_CACHE_ENTRIES; i++) {
        atomic_init(&s->entries[i].obj, NULL);
        atomic_init(&s->entries[i].count, 0);
    }
    s->release = release;
    rv = datos_mutex_create(&s->mutex, p);
    if (rv != APR_SUCCESS) {
        goto leave;
    }
    /* Registered after the mutex, so it runs before the mutex goes. */
    apr_pool_cleanup_register(p, s, slot_cleanup, apr_pool_cleanup_null);
    *out = s;

leave:
    return rv;
}

void *datos_process_cache_acquire(datos_process_cache_t *s)
{
    /* Acquire: pairs with the publish's exchange (release). Every
     * acquisition is a read-modify-write, so the readers' increments
     * continue the publish's release sequence and each reader sees the
     * entry's object as the writer stored it. */
    uint64_t w = atomic_fetch_add_explicit(&s->word, 1, memory_order_acquire);
    unsigned idx = (unsigned)(w >> COUNT_BITS);

    if (!idx) {
        return NULL; /* the increment counts against no entry: harmless */
    }
    return atomic_load_explicit(&s->entries[idx - 1].obj, memory_order_relaxed);
}

/* The entry holding obj. Relaxed loads suffice: the holder's own entry
 * keeps obj until this release, and any older entry that held the same
 * address was emptied before that address could be published again (the
 * publish checks, or the object was freed and reallocated), which happens
 * before this reader acquired it. */
static slot_entry_t *entry_of(datos_process_cache_t *s, void *obj)
{
    unsigned idx =
        (unsigned)(atomic_load_explicit(&s->word, memory_order_relaxed)
                   >> COUNT_BITS);
    int i;

    /* Usually the object is still the current one. */
    if (idx
        && atomic_load_explicit(&s->entries[idx - 1].obj, memory_order_relaxed)
               == obj) {
        return &s->entries[idx - 1];
    }
    for (i = 0; i < DATOS_PROCESS_CACHE_ENTRIES; i++) {
        if (atomic_load_explicit(&s->entries[i].obj, memory_order_relaxed)
            == obj) {
            return &s->entries[i];
        }
    }
    return NULL;
}

void datos_process_cache_release(datos_process_cache_t *s, void *obj)
{
    slot_entry_t *e;

    if (!obj) {
        return;
    }
    e = entry_of(s, obj);
    if (!e) {
        return; /* not acquired from this slot */
    }
    /* acq_rel: release so that the thread freeing the object sees this
     * reader's use of it; acquire in case this is that thread. */
    if (atomic_fetch_sub_explicit(&e->count, 1, memory_order_acq_rel) == 1) {
        entry_free(s, e);
    }
}

apr_status_t datos_process_cache_publish(datos_process_cache_t *s, void *obj)
{
    slot_entry_t *free_entry = NULL;
    uint64_t old;
    apr_status_t rv = APR_SUCCESS;
    void *held;
    int i, idx = 0;

    if (!obj) {
        return APR_EINVAL;
    }
    datos_mutex_lock(s->mutex);
    for (i = 0; i < DATOS_PROCESS_CACHE_ENTRIES; i++) {
        /* Acquire: pairs with entry_free's release store, so the entry is
         * reused only after its last holder is done with it. */
        held = atomic_load_explicit(&s->entries[i].obj, memory_order_acquire);
        if (held == obj) {
            rv = APR_EINVAL; /* published and still held: not twice */
            goto leave;
        }
        if (!held && !free_entry) {
            free_entry = &s->entries[i];
            idx = i + 1;
        }
    }
    if (!free_entry) {
        rv = APR_EAGAIN;
        goto leave;
    }
    /* Relaxed: the exchange below publishes it. */
    atomic_store_explicit(&free_entry->obj, obj, memory_order_relaxed);
    /* acq_rel: release publishes the entry to readers; acquire orders the
     * retirement of the old entry after every acquisition counted in it. */
    old = atomic_exchange_explicit(&s->word, (uint64_t)idx << COUNT_BITS,
                                   memory_order_acq_rel);
    retire(s, old);

leave:
    datos_mutex_unlock(s->mutex);
    return rv;
}

void datos_process_cache_clear(datos_process_cache_t *s)
{
    uint64_t old;

    datos_mutex_lock(s->mutex);
    old = atomic_exchange_explicit(&s->word, 0, memory_order_acq_rel);
    retire(s, old);
    datos_mutex_unlock(s->mutex);
}
