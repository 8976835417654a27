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
 *
 * Overflow: when every entry still holds a version some reader keeps, a
 * publish puts the object in a node of the overflow list instead, and the
 * word gets the index OVERFLOW_IDX. A reader that acquires through such a
 * word takes the mutex, reads the current node (the word cannot change
 * while the mutex is held, since only writers holding it change it) and
 * counts itself there; if the word moved on meanwhile it simply tries
 * again. The increments made on an overflow word count for nothing. A
 * node goes once it is no longer current and its count is back to 0.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "datos_process_cache.h"
#include "datos_mutex.h"

#define COUNT_BITS   56
#define COUNT_MASK   ((UINT64_C(1) << COUNT_BITS) - 1)
#define OVERFLOW_IDX 0xFFu

/* Padded to a cache line each, so the readers' traffic on the word and on
 * the current entry does not also bounce the lines next to them. */
typedef struct slot_entry_t {
    _Atomic(void *) obj;
    _Atomic(int64_t) count;
    char pad[64 - sizeof(void *) - sizeof(int64_t)];
} slot_entry_t;

/* A version published while every entry was held; under the mutex. */
typedef struct overflow_t {
    void *obj;
    long count; /* readers holding it */
    struct overflow_t *next;
} overflow_t;

struct datos_process_cache_t {
    _Atomic(uint64_t) word;
    char pad[64 - sizeof(uint64_t)];
    slot_entry_t entries[DATOS_PROCESS_CACHE_ENTRIES];
    datos_process_cache_release_fn *release;
    apr_thread_mutex_t *mutex; /* writers, and readers of the overflow */
    overflow_t *overflow;      /* newest first */
    overflow_t *current;       /* the current node while the word says so */
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

/* Unlinks and frees a node that is neither current nor held; the mutex is
 * held. Returns its object, for the caller to release. */
static void *overflow_drop(datos_process_cache_t *s, overflow_t *o)
{
    overflow_t **pp = &s->overflow;
    void *obj = o->obj;

    while (*pp != o) {
        pp = &(*pp)->next;
    }
    *pp = o->next;
    free(o);
    return obj;
}

/* The old word of a publish or clear: its acquisitions move onto its
 * entry, or its overflow node stops being current. The mutex is held. */
static void retire(datos_process_cache_t *s, uint64_t old)
{
    unsigned idx = (unsigned)(old >> COUNT_BITS);
    int64_t acquired = (int64_t)(old & COUNT_MASK);
    slot_entry_t *e;

    if (!idx) {
        return; /* nothing was published */
    }
    if (idx == OVERFLOW_IDX) {
        overflow_t *o = s->current;

        s->current = NULL;
        if (o && o->count == 0) {
            void *obj = overflow_drop(s, o);
            if (s->release) {
                s->release(obj);
            }
        }
        return;
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

/* A reader whose increment landed on an overflow word. */
static void *overflow_acquire(datos_process_cache_t *s, int *retry)
{
    void *obj = NULL;
    uint64_t w;

    datos_mutex_lock(s->mutex);
    w = atomic_load_explicit(&s->word, memory_order_relaxed);
    *retry = (unsigned)(w >> COUNT_BITS) != OVERFLOW_IDX;
    if (!*retry && s->current) {
        s->current->count++;
        obj = s->current->obj;
    }
    datos_mutex_unlock(s->mutex);
    return obj;
}

void *datos_process_cache_acquire(datos_process_cache_t *s)
{
    for (;;) {
        /* Acquire: pairs with the publish's exchange (release). Every
         * acquisition is a read-modify-write, so the readers' increments
         * continue the publish's release sequence and each reader sees the
         * entry's object as the writer stored it. */
        uint64_t w =
            atomic_fetch_add_explicit(&s->word, 1, memory_order_acquire);
        unsigned idx = (unsigned)(w >> COUNT_BITS);
        void *obj;
        int retry;

        if (!idx) {
            return NULL; /* the increment counts against no entry */
        }
        if (idx != OVERFLOW_IDX) {
            return atomic_load_explicit(&s->entries[idx - 1].obj,
                                        memory_order_relaxed);
        }
        obj = overflow_acquire(s, &retry);
        if (!retry) {
            return obj;
        }
        /* A writer moved the word on since the increment: look again. */
    }
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
    if (idx && idx != OVERFLOW_IDX
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

static void overflow_release(datos_process_cache_t *s, void *obj)
{
    overflow_t *o;
    void *gone = NULL;

    datos_mutex_lock(s->mutex);
    for (o = s->overflow; o && o->obj != obj; o = o->next) {
    }
    if (o && --o->count == 0 && o != s->current) {
        gone = overflow_drop(s, o);
    }
    datos_mutex_unlock(s->mutex);
    if (gone && s->release) {
        s->release(gone);
    }
}

void datos_process_cache_release(datos_process_cache_t *s, void *obj)
{
    slot_entry_t *e;

    if (!obj) {
        return;
    }
    e = entry_of(s, obj);
    if (!e) {
        overflow_release(s, obj); /* or not acquired from this slot */
        return;
    }
    /* acq_rel: release so that the thread freeing the object sees this
     * reader's use of it; acquire in case this is that thread. */
    if (atomic_fetch_sub_explicit(&e->count, 1, memory_order_acq_rel) == 1) {
        entry_free(s, e);
    }
}

/* The current object; the mutex is held. */
static void *current_locked(datos_process_cache_t *s)
{
    unsigned idx =
        (unsigned)(atomic_load_explicit(&s->word, memory_order_relaxed)
                   >> COUNT_BITS);

    if (!idx) {
        return NULL;
    }
    if (idx == OVERFLOW_IDX) {
        return s->current ? s->current->obj : NULL;
    }
    return atomic_load_explicit(&s->entries[idx - 1].obj, memory_order_relaxed);
}

static apr_status_t publish_locked(datos_process_cache_t *s, void *obj)
{
    slot_entry_t *free_entry = NULL;
    overflow_t *o;
    uint64_t old;
    void *held;
    int i, idx = 0;

    for (o = s->overflow; o; o = o->next) {
        if (o->obj == obj) {
            return APR_EINVAL; /* published and still held: not twice */
        }
    }
    for (i = 0; i < DATOS_PROCESS_CACHE_ENTRIES; i++) {
        /* Acquire: pairs with entry_free's release store, so the entry is
         * reused only after its last holder is done with it. */
        held = atomic_load_explicit(&s->entries[i].obj, memory_order_acquire);
        if (held == obj) {
            return APR_EINVAL;
        }
        if (!held && !free_entry) {
            free_entry = &s->entries[i];
            idx = i + 1;
        }
    }
    if (free_entry) {
        /* Relaxed: the exchange below publishes it. */
        atomic_store_explicit(&free_entry->obj, obj, memory_order_relaxed);
    }
    else {
        /* Every entry is held by slow readers. */
        o = malloc(sizeof(*o));
        if (!o) {
            return APR_ENOMEM;
        }
        o->obj = obj;
        o->count = 0;
        o->next = s->overflow;
        s->overflow = o;
        idx = (int)OVERFLOW_IDX;
    }
    /* acq_rel: release publishes the entry to readers; acquire orders the
     * retirement of the old entry after every acquisition counted in it.
     * The old word is retired before the new node becomes current, so a
     * current node is never retired by mistake. */
    old = atomic_exchange_explicit(&s->word, (uint64_t)idx << COUNT_BITS,
                                   memory_order_acq_rel);
    retire(s, old);
    if (!free_entry) {
        s->current = s->overflow;
    }
    return APR_SUCCESS;
}

apr_status_t datos_process_cache_publish(datos_process_cache_t *s, void *obj)
{
    apr_status_t rv;

    if (!obj) {
        return APR_EINVAL;
    }
    datos_mutex_lock(s->mutex);
    rv = publish_locked(s, obj);
    datos_mutex_unlock(s->mutex);
    return rv;
}

apr_status_t datos_process_cache_publish_newer(
    datos_process_cache_t *s, void *obj, datos_process_cache_newer_fn *newer)
{
    apr_status_t rv;
    void *cur;

    if (!obj) {
        return APR_EINVAL;
    }
    datos_mutex_lock(s->mutex);
    cur = current_locked(s);
    if (cur && cur != obj && newer(obj, cur) <= 0) {
        rv = APR_EEXIST;
    }
    else {
        rv = publish_locked(s, obj);
    }
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
