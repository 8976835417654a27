/* datos_process_cache.h - the current version of an immutable object, shared by the
 * threads of a process without a lock on the read side.
 *
 * A reader acquires the object published now and releases it when done
 * with it; a writer publishes a new object in its place. An object
 * replaced by a newer one is released (its release function runs) once
 * the last reader that acquired it lets go, so a reader may keep using it
 * for as long as it needs (a slow client) while newer versions come and
 * go. Acquire and release are a few atomic operations, never a lock, so a
 * cache hit never waits for a writer or another reader.
 *
 * The implementation is a split reference count: the slot word holds the
 * index of the current entry and a count of acquisitions made through it;
 * publishing moves that count onto the entry being replaced, whose own
 * count readers decrement as they release. Writers are serialised by the
 * slot's own thread mutex; readers take it only in the overflow below.
 *
 * The table holds DATOS_PROCESS_CACHE_ENTRIES versions. When slow readers
 * hold every one of them, a publish still succeeds: the new version goes
 * to an overflow list whose readers count under the mutex (a short lock
 * instead of a lock-free increment) until a table entry is free again. So
 * readers always find the newest version, however many old ones are held.
 */
#ifndef DATOS_PROCESS_CACHE_H
#define DATOS_PROCESS_CACHE_H

#include <apr_pools.h>
#include <apr_errno.h>

/* Versions the lock-free table holds (the current one and those still
 * read); more go to the overflow list. */
#define DATOS_PROCESS_CACHE_ENTRIES 64

typedef struct datos_process_cache_t datos_process_cache_t;

typedef void datos_process_cache_release_fn(void *obj);

/* Creates an empty slot in p. release runs once for every published object
 * when it is no longer current and no reader holds it, and for the current
 * one when p is cleaned up (or datos_process_cache_clear runs). release may run in
 * any thread: a writer's, or the reader that lets go last. By the time p is
 * cleaned up no reader may still hold an object (the slot goes with p). */
apr_status_t datos_process_cache_create(apr_pool_t *p,
                                        datos_process_cache_release_fn *release,
                                        datos_process_cache_t **out);

/* The current object, held until datos_process_cache_release; NULL when nothing is
 * published (then nothing needs releasing). Lock-free. */
void *datos_process_cache_acquire(datos_process_cache_t *s);
void datos_process_cache_release(datos_process_cache_t *s, void *obj);

/* Makes obj current. APR_EINVAL for NULL, or for an object the slot still
 * holds (current, or replaced but not yet released): each object is
 * published once. APR_ENOMEM when the overflow list cannot grow. On
 * failure obj is not published and the caller still owns it. */
apr_status_t datos_process_cache_publish(datos_process_cache_t *s, void *obj);

/* Orders two objects: > 0 when a is newer than b. */
typedef int datos_process_cache_newer_fn(const void *a, const void *b);

/* As publish, but only when obj is newer than the current object (by
 * newer, decided under the writers' mutex, so two writers cannot step the
 * slot back to an older version): APR_EEXIST when the current one is as
 * new or newer (obj is then not published; the caller still owns it). */
apr_status_t datos_process_cache_publish_newer(
    datos_process_cache_t *s, void *obj, datos_process_cache_newer_fn *newer);

/* Unpublishes the current object (released once its readers are done). */
void datos_process_cache_clear(datos_process_cache_t *s);

#endif
