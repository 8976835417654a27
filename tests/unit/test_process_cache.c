/* test_process_cache.c - the lock-free slot: who sees which version, when each
 * version is released, and the same under threads hammering it. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <apr_thread_proc.h>
#include <apr_time.h>

#include "dt_support.h"
#include "datos_answer.h"
#include "datos_process_cache.h"

#define LIVE 0x600DF00Du
#define DEAD 0xDEADBEEFu

typedef struct tobj_t {
    unsigned magic;
    int id;
} tobj_t;

/* What the release function saw, for the single-threaded tests. */
static int released_ids[1024];
static int released_count;

static void record_release(void *obj)
{
    tobj_t *o = obj;

    assert_int_equal(o->magic, LIVE);
    o->magic = DEAD;
    released_ids[released_count++] = o->id;
}

static tobj_t *tobj(apr_pool_t *p, int id)
{
    tobj_t *o = apr_pcalloc(p, sizeof(*o));

    o->magic = LIVE;
    o->id = id;
    return o;
}

static datos_process_cache_t *new_slot(apr_pool_t *p,
                                       datos_process_cache_release_fn *fn)
{
    datos_process_cache_t *s = NULL;

    released_count = 0;
    assert_int_equal(datos_process_cache_create(p, fn, &s), APR_SUCCESS);
    assert_non_null(s);
    return s;
}

static void slot_empty(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_process_cache_t *s = new_slot(p, record_release);

    assert_null(datos_process_cache_acquire(s));
    datos_process_cache_release(s, NULL);
    datos_process_cache_clear(s);
    assert_null(datos_process_cache_acquire(s));
    assert_int_equal(released_count, 0);
    assert_int_equal(datos_process_cache_publish(s, NULL), APR_EINVAL);
}

static void slot_replaced_version_waits_for_readers(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_process_cache_t *s = new_slot(p, record_release);
    tobj_t *a = tobj(p, 1), *b = tobj(p, 2), *c = tobj(p, 3);
    void *r1, *r2, *r3;

    assert_int_equal(datos_process_cache_publish(s, a), APR_SUCCESS);
    r1 = datos_process_cache_acquire(s);
    r2 = datos_process_cache_acquire(s);
    assert_ptr_equal(r1, a);
    assert_ptr_equal(r2, a);
    datos_process_cache_release(s, r2); /* released while current */

    assert_int_equal(datos_process_cache_publish(s, b), APR_SUCCESS);
    assert_int_equal(released_count, 0); /* r1 still holds a */
    r3 = datos_process_cache_acquire(s);
    assert_ptr_equal(r3, b);
    assert_int_equal(a->magic, LIVE);

    datos_process_cache_release(s, r1); /* the last holder of a */
    assert_int_equal(released_count, 1);
    assert_int_equal(released_ids[0], 1);

    /* b replaced while held, then c cleared with no holder */
    assert_int_equal(datos_process_cache_publish(s, c), APR_SUCCESS);
    assert_int_equal(released_count, 1);
    datos_process_cache_clear(s);
    assert_int_equal(released_count, 2);
    assert_int_equal(released_ids[1], 3);
    assert_null(datos_process_cache_acquire(s));
    datos_process_cache_release(s, r3);
    assert_int_equal(released_count, 3);
    assert_int_equal(released_ids[2], 2);
    datos_process_cache_clear(s);
    assert_int_equal(released_count, 3);
}

/* A version nobody acquired is released by the publish that replaces it. */
static void slot_unread_version_released_at_once(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_process_cache_t *s = new_slot(p, record_release);
    int i;

    for (i = 0; i < 500; i++) {
        assert_int_equal(datos_process_cache_publish(s, tobj(p, i)),
                         APR_SUCCESS);
        assert_int_equal(released_count, i);
        if (i % 2) {
            datos_process_cache_release(s, datos_process_cache_acquire(s));
        }
    }
    assert_int_equal(released_ids[498], 498);
}

static void slot_clear_waits_for_readers(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_process_cache_t *s = new_slot(p, record_release);
    tobj_t *a = tobj(p, 7);
    void *r;

    assert_int_equal(datos_process_cache_publish(s, a), APR_SUCCESS);
    r = datos_process_cache_acquire(s);
    datos_process_cache_clear(s);
    assert_int_equal(released_count, 0);
    assert_null(datos_process_cache_acquire(s));
    /* the cleared object may be published again once released, not before */
    assert_int_equal(datos_process_cache_publish(s, a), APR_EINVAL);
    datos_process_cache_release(s, r);
    assert_int_equal(released_count, 1);
    a->magic = LIVE;
    assert_int_equal(datos_process_cache_publish(s, a), APR_SUCCESS);
    assert_ptr_equal(datos_process_cache_acquire(s), a);
    datos_process_cache_release(s, a);
}

static void slot_refuses_object_twice(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_process_cache_t *s = new_slot(p, record_release);
    tobj_t *a = tobj(p, 1), *b = tobj(p, 2);
    void *r;

    assert_int_equal(datos_process_cache_publish(s, a), APR_SUCCESS);
    assert_int_equal(datos_process_cache_publish(s, a),
                     APR_EINVAL); /* current */
    r = datos_process_cache_acquire(s);
    assert_int_equal(datos_process_cache_publish(s, b), APR_SUCCESS);
    assert_int_equal(datos_process_cache_publish(s, a),
                     APR_EINVAL); /* still held */
    assert_ptr_equal(datos_process_cache_acquire(s), b);
    datos_process_cache_release(s, b);
    datos_process_cache_release(s, r);
    assert_int_equal(released_count, 1);
}

/* Every entry held by a slow reader: a publish still makes the new version
 * current (in the overflow), so readers never fall back to an older one;
 * versions published while full are released like any other, and entries
 * are reused once readers let go. */
static void slot_full_still_publishes(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_process_cache_t *s = new_slot(p, record_release);
    void *held[DATOS_PROCESS_CACHE_ENTRIES];
    tobj_t *x1 = tobj(p, 1001), *x2 = tobj(p, 1002), *x3 = tobj(p, 1003);
    void *r1, *r2, *r;
    int i, round, before;

    for (round = 0; round < 3; round++) {
        int base = round * 100;

        before = released_count;
        for (i = 0; i < DATOS_PROCESS_CACHE_ENTRIES; i++) {
            assert_int_equal(datos_process_cache_publish(s, tobj(p, base + i)),
                             APR_SUCCESS);
            held[i] = datos_process_cache_acquire(s);
        }
        assert_int_equal(released_count, before);
        /* full: the next versions still become current */
        x1->magic = x2->magic = x3->magic = LIVE;
        assert_int_equal(datos_process_cache_publish(s, x1), APR_SUCCESS);
        r1 = datos_process_cache_acquire(s);
        assert_ptr_equal(r1, x1);
        assert_int_equal(datos_process_cache_publish(s, x1), APR_EINVAL);
        assert_int_equal(datos_process_cache_publish(s, x2), APR_SUCCESS);
        assert_int_equal(x1->magic, LIVE); /* r1 holds it */
        r2 = datos_process_cache_acquire(s);
        assert_ptr_equal(r2, x2);
        /* x3 replaces x2 while r2 holds it; nobody holds x3 */
        assert_int_equal(datos_process_cache_publish(s, x3), APR_SUCCESS);
        assert_int_equal(released_count, before);
        datos_process_cache_release(s, r1);
        assert_int_equal(x1->magic, DEAD);
        datos_process_cache_release(s, r2);
        assert_int_equal(x2->magic, DEAD);
        assert_int_equal(released_count, before + 2);
        r = datos_process_cache_acquire(s);
        assert_ptr_equal(r, x3);
        datos_process_cache_release(s, r);
        assert_int_equal(x3->magic, LIVE);
        /* readers let go in an order unrelated to publication */
        for (i = 0; i < DATOS_PROCESS_CACHE_ENTRIES; i += 2) {
            datos_process_cache_release(s, held[i]);
        }
        for (i = 1; i < DATOS_PROCESS_CACHE_ENTRIES; i += 2) {
            datos_process_cache_release(s, held[i]);
        }
        assert_int_equal(released_count,
                         before + 2 + DATOS_PROCESS_CACHE_ENTRIES);
        /* the table is free again: the next version is lock-free */
        assert_int_equal(datos_process_cache_publish(s, tobj(p, base + 99)),
                         APR_SUCCESS);
        assert_int_equal(x3->magic, DEAD);
        r = datos_process_cache_acquire(s);
        assert_int_equal(((tobj_t *)r)->id, base + 99);
        datos_process_cache_release(s, r);
        datos_process_cache_clear(s);
        assert_int_equal(released_count,
                         before + 4 + DATOS_PROCESS_CACHE_ENTRIES);
    }
}

/* Cleared while full and an overflow version is held: released when its
 * reader lets go. */
static void slot_full_clear_releases_overflow(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_process_cache_t *s = new_slot(p, record_release);
    void *held[DATOS_PROCESS_CACHE_ENTRIES];
    tobj_t *x = tobj(p, 500);
    void *r;
    int i;

    for (i = 0; i < DATOS_PROCESS_CACHE_ENTRIES; i++) {
        assert_int_equal(datos_process_cache_publish(s, tobj(p, i)),
                         APR_SUCCESS);
        held[i] = datos_process_cache_acquire(s);
    }
    assert_int_equal(datos_process_cache_publish(s, x), APR_SUCCESS);
    r = datos_process_cache_acquire(s);
    datos_process_cache_clear(s);
    assert_null(datos_process_cache_acquire(s));
    assert_int_equal(x->magic, LIVE);
    datos_process_cache_release(s, r);
    assert_int_equal(x->magic, DEAD);
    for (i = 0; i < DATOS_PROCESS_CACHE_ENTRIES; i++) {
        datos_process_cache_release(s, held[i]);
    }
    assert_int_equal(released_count, DATOS_PROCESS_CACHE_ENTRIES + 1);
}

static int tobj_newer(const void *a, const void *b)
{
    return ((const tobj_t *)a)->id - ((const tobj_t *)b)->id;
}

/* A writer that fetched an older version than the current one cannot step
 * the slot back to it: it is refused, and stays the caller's. */
static void slot_never_steps_back(void **state)
{
    apr_pool_t *p = DT_POOL(state);
    datos_process_cache_t *s = new_slot(p, record_release);
    tobj_t *v5 = tobj(p, 5), *v3 = tobj(p, 3), *v5b = tobj(p, 5);
    tobj_t *v7 = tobj(p, 7);
    void *held[DATOS_PROCESS_CACHE_ENTRIES], *r;
    int i;

    assert_int_equal(datos_process_cache_publish_newer(s, v5, tobj_newer),
                     APR_SUCCESS);
    assert_int_equal(datos_process_cache_publish_newer(s, v3, tobj_newer),
                     APR_EEXIST);
    assert_int_equal(datos_process_cache_publish_newer(s, v5b, tobj_newer),
                     APR_EEXIST);
    assert_int_equal(v3->magic, LIVE);
    r = datos_process_cache_acquire(s);
    assert_ptr_equal(r, v5);
    datos_process_cache_release(s, r);
    assert_int_equal(datos_process_cache_publish_newer(s, v7, tobj_newer),
                     APR_SUCCESS);
    assert_int_equal(released_count, 1);
    /* the same while every entry is held (the overflow) */
    for (i = 0; i < DATOS_PROCESS_CACHE_ENTRIES; i++) {
        assert_int_equal(
            datos_process_cache_publish_newer(s, tobj(p, 10 + i), tobj_newer),
            APR_SUCCESS);
        held[i] = datos_process_cache_acquire(s);
    }
    assert_int_equal(
        datos_process_cache_publish_newer(s, tobj(p, 200), tobj_newer),
        APR_SUCCESS);
    assert_int_equal(
        datos_process_cache_publish_newer(s, tobj(p, 150), tobj_newer),
        APR_EEXIST);
    r = datos_process_cache_acquire(s);
    assert_int_equal(((tobj_t *)r)->id, 200);
    datos_process_cache_release(s, r);
    for (i = 0; i < DATOS_PROCESS_CACHE_ENTRIES; i++) {
        datos_process_cache_release(s, held[i]);
    }
    /* an empty slot takes anything */
    datos_process_cache_clear(s);
    assert_int_equal(
        datos_process_cache_publish_newer(s, tobj(p, 1), tobj_newer),
        APR_SUCCESS);
}

static void slot_pool_cleanup_releases_current(void **state)
{
    apr_pool_t *p = DT_POOL(state), *sub;
    datos_process_cache_t *s;
    tobj_t *a = tobj(p, 1), *b = tobj(p, 2);

    assert_int_equal(apr_pool_create(&sub, p), APR_SUCCESS);
    s = new_slot(sub, record_release);
    assert_int_equal(datos_process_cache_publish(s, a), APR_SUCCESS);
    datos_process_cache_release(s, datos_process_cache_acquire(s));
    assert_int_equal(datos_process_cache_publish(s, b), APR_SUCCESS);
    assert_int_equal(released_count, 1);
    apr_pool_destroy(sub);
    assert_int_equal(released_count, 2);
    assert_int_equal(b->magic, DEAD);
}

/* ------------------------------------------------------------ threads */

#define READERS 8
#define HOLDS   32 /* versions a reader may keep at once */

typedef struct stress_t {
    datos_process_cache_t *slot;
    atomic_int stop;
    atomic_long errors;
    atomic_long released;
    atomic_long acquired;
    atomic_long nulls;
    int answers; /* objects are datos answers */
} stress_t;

static stress_t *stress_now; /* for the release functions */

typedef struct sobj_t {
    unsigned magic;
    long id;
} sobj_t;

static void stress_release(void *obj)
{
    sobj_t *o = obj;

    if (o->magic != LIVE) {
        atomic_fetch_add(&stress_now->errors, 1);
    }
    o->magic = DEAD;
    atomic_fetch_add(&stress_now->released, 1);
    free(o); /* so ASan sees any use after the release */
}

static void answer_release(void *obj)
{
    atomic_fetch_add(&stress_now->released, 1);
    datos_answer_free(obj);
}

/* What a reader checks on an object it holds: live, and never older than
 * one it acquired before (publication order is the word's order). */
static long check_held(stress_t *st, void *obj)
{
    if (st->answers) {
        datos_answer_t *a = obj;
        /* the answer's id is its fetch time; its body must be intact */
        if (a->n != 3 || memcmp(a->body, "{\"datos\":[", 10) != 0
            || strlen(datos_answer_etag(a, 2)) != DATOS_ETAG_SIZE - 1) {
            atomic_fetch_add(&st->errors, 1);
        }
        return (long)a->fetched;
    }
    if (((sobj_t *)obj)->magic != LIVE) {
        atomic_fetch_add(&st->errors, 1);
    }
    return ((sobj_t *)obj)->id;
}

static void *APR_THREAD_FUNC reader(apr_thread_t *t, void *data)
{
    stress_t *st = data;
    void *held[HOLDS] = {0};
    long last = -1, id;
    unsigned int seed = (unsigned int)(apr_uintptr_t)t;
    int i, loops = 0;

    while (!atomic_load(&st->stop)) {
        void *o = datos_process_cache_acquire(st->slot);

        loops++;
        if (o) {
            atomic_fetch_add(&st->acquired, 1);
            id = check_held(st, o);
            if (id < last) {
                atomic_fetch_add(&st->errors, 1);
            }
            last = id;
        }
        else {
            atomic_fetch_add(&st->nulls, 1);
        }
        seed = seed * 1103515245 + 12345;
        /* Mostly a quick hit; sometimes keep it a while (a slow client),
         * across publishes, while holding others: with 8 readers keeping
         * up to 32 versions each, the writer also finds every entry held.
         * Holds turn over even while the slot is empty, as requests end. */
        i = (int)((seed >> 16) % (64 * HOLDS));
        if (i < HOLDS) {
            if (held[i]) {
                check_held(st, held[i]);
                datos_process_cache_release(st->slot, held[i]);
            }
            held[i] = o;
        }
        else if (o) {
            check_held(st, o);
            datos_process_cache_release(st->slot, o);
        }
        if (loops % 64 == 0) {
            apr_thread_yield();
        }
    }
    for (i = 0; i < HOLDS; i++) {
        if (held[i]) {
            check_held(st, held[i]);
            datos_process_cache_release(st->slot, held[i]);
        }
    }
    apr_thread_exit(t, APR_SUCCESS);
    return NULL;
}

static void *make_obj(apr_pool_t *scratch, stress_t *st, long id)
{
    if (st->answers) {
        datos_row_t rows[3];
        datos_answer_opts_t o;
        datos_answer_t *a;
        datos_err_t err = {0};
        int i;

        memset(&o, 0, sizeof(o));
        o.max_rows = 10;
        o.fetched = id;
        o.gzip_limits[0] = 2;
        o.gzip_count = 1;
        for (i = 0; i < 3; i++) {
            rows[i].id = "x";
            rows[i].id_len = 1;
            rows[i].contenido = apr_psprintf(scratch, "version %ld", id);
            rows[i].contenido_len = strlen(rows[i].contenido);
            rows[i].timestamp_us = 1000000 * (apr_int64_t)i;
        }
        assert_int_equal(datos_answer_build(scratch, rows, 3, &o, &a, &err),
                         APR_SUCCESS);
        return a;
    }
    else {
        sobj_t *o = malloc(sizeof(*o));
        o->magic = LIVE;
        o->id = id;
        return o;
    }
}

static void run_stress(apr_pool_t *p, int answers, long publishes)
{
    stress_t st;
    apr_thread_t *threads[READERS];
    apr_pool_t *scratch;
    apr_status_t trv;
    long published = 0, clears = 0, id;
    apr_time_t t0 = apr_time_now();
    int i;

    memset(&st, 0, sizeof(st));
    atomic_init(&st.stop, 0);
    atomic_init(&st.errors, 0);
    atomic_init(&st.released, 0);
    atomic_init(&st.acquired, 0);
    atomic_init(&st.nulls, 0);
    st.answers = answers;
    stress_now = &st;
    assert_int_equal(
        datos_process_cache_create(p, answers ? answer_release : stress_release,
                                   &st.slot),
        APR_SUCCESS);
    assert_int_equal(apr_pool_create(&scratch, p), APR_SUCCESS);
    for (i = 0; i < READERS; i++) {
        assert_int_equal(apr_thread_create(&threads[i], NULL, reader, &st, p),
                         APR_SUCCESS);
    }
    for (id = 0; id < publishes; id++) {
        void *o = make_obj(scratch, &st, id);

        /* even while readers hold every entry of the table */
        assert_int_equal(datos_process_cache_publish(st.slot, o), APR_SUCCESS);
        published++;
        if (id % 1000 == 999) {
            datos_process_cache_clear(st.slot);
            clears++;
        }
        if (id % 16 == 0) {
            apr_pool_clear(scratch);
            apr_thread_yield(); /* let readers hold several versions */
        }
    }
    atomic_store(&st.stop, 1);
    for (i = 0; i < READERS; i++) {
        assert_int_equal(apr_thread_join(&trv, threads[i]), APR_SUCCESS);
    }
    /* Readers are gone: all but the current one are released already. */
    assert_int_equal(atomic_load(&st.released),
                     published - (publishes % 1000 ? 1 : 0));
    datos_process_cache_clear(st.slot);
    assert_int_equal(atomic_load(&st.released), published);
    assert_int_equal(atomic_load(&st.errors), 0);
    assert_true(atomic_load(&st.acquired) > 0);
    if (getenv("DT_DEBUG")) {
        fprintf(stderr,
                "stress (%s): %ld publishes, %ld clears, "
                "%ld acquisitions, %ld empty, %.0f ms\n",
                answers ? "answers" : "objects", published, clears,
                (long)atomic_load(&st.acquired), (long)atomic_load(&st.nulls),
                (double)(apr_time_now() - t0) / 1000.0);
    }
    apr_pool_destroy(scratch);
}

static void slot_stress_objects(void **state)
{
    run_stress(DT_POOL(state), 0, 100500);
}

/* Answers built by one thread, served and freed by others. */
static void slot_stress_answers(void **state)
{
    run_stress(DT_POOL(state), 1, 5000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        DT_TEST(slot_empty),
        DT_TEST(slot_replaced_version_waits_for_readers),
        DT_TEST(slot_unread_version_released_at_once),
        DT_TEST(slot_clear_waits_for_readers),
        DT_TEST(slot_refuses_object_twice),
        DT_TEST(slot_full_still_publishes),
        DT_TEST(slot_full_clear_releases_overflow),
        DT_TEST(slot_never_steps_back),
        DT_TEST(slot_pool_cleanup_releases_current),
        DT_TEST(slot_stress_objects),
        DT_TEST(slot_stress_answers),
    };
    return cmocka_run_group_tests(tests, dt_group_setup, dt_group_teardown);
}
