/* datos_arena.c - memory for the bulk of a load batch in 2 MiB pages
 * (datos_arena.h says why). */
#include <stdint.h>
#include <sys/mman.h>
#include <apr_strings.h>

#include "datos_arena.h"

#define HUGE_PAGE ((apr_size_t)2 * 1024 * 1024)
#define CHUNK_MAX (16 * HUGE_PAGE)
#define ARENA_KEY "datos_arena"

#if defined(__SANITIZE_ADDRESS__)
#define DATOS_ARENA_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DATOS_ARENA_ASAN 1
#endif
#endif

void *datos_huge_map(apr_size_t size, apr_size_t *got)
{
    apr_size_t n = (size + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
    uintptr_t a;
    char *m;

    if (!n || n < size || n > APR_SIZE_MAX - HUGE_PAGE) {
        return NULL;
    }
    m = mmap(NULL, n + HUGE_PAGE, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        return NULL;
    }
    /* the slack before and after the aligned part goes back */
    a = ((uintptr_t)m + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1);
    if (a > (uintptr_t)m) {
        munmap(m, a - (uintptr_t)m);
    }
    if ((uintptr_t)m + HUGE_PAGE > a) {
        munmap((char *)a + n, (uintptr_t)m + HUGE_PAGE - a);
    }
#ifdef MADV_HUGEPAGE
    /* Only advice: without transparent huge pages it is refused or
     * ignored, and the memory works the same with small pages. */
    (void)madvise((void *)a, n, MADV_HUGEPAGE);
#endif
    *got = n;
    return (void *)a;
}

#ifndef DATOS_ARENA_ASAN
typedef struct chunk_t {
    struct chunk_t *next;
    apr_size_t size; /* of the mapping, this header included */
} chunk_t;

typedef struct arena_t {
    chunk_t *chunks;
    char *cur, *end;
    apr_size_t next_size;
} arena_t;

static apr_status_t arena_cleanup(void *data)
{
    arena_t *a = data;

    while (a->chunks) {
        chunk_t *c = a->chunks;
        a->chunks = c->next;
        munmap(c, c->size);
    }
    a->cur = a->end = NULL;
    return APR_SUCCESS;
}
#endif

void *datos_arena_alloc(apr_pool_t *p, apr_size_t n)
{
#ifdef DATOS_ARENA_ASAN
    return apr_palloc(p, n);
#else
    arena_t *a = NULL;
    apr_size_t want, size;
    chunk_t *c;
    void *r;

    if (n > APR_SIZE_MAX - HUGE_PAGE - sizeof(chunk_t)) {
        return NULL;
    }
    n = n ? (n + 15) & ~(apr_size_t)15 : 16;
    apr_pool_userdata_get((void **)&a, ARENA_KEY, p);
    if (!a) {
        a = apr_pcalloc(p, sizeof(*a));
        a->next_size = HUGE_PAGE;
        /* a cleanup of p unmaps every chunk, when p is cleared too */
        if (apr_pool_userdata_setn(a, ARENA_KEY, arena_cleanup, p)
            != APR_SUCCESS) {
            return NULL;
        }
    }
    if ((apr_size_t)(a->end - a->cur) < n) {
        want = n + sizeof(chunk_t) + 15;
        c = datos_huge_map(want > a->next_size ? want : a->next_size, &size);
        if (!c) {
            return NULL;
        }
        c->next = a->chunks;
        c->size = size;
        a->chunks = c;
        a->cur = (char *)c + ((sizeof(chunk_t) + 15) & ~(apr_size_t)15);
        a->end = (char *)c + size;
        if (a->next_size < CHUNK_MAX) {
            a->next_size *= 2;
        }
    }
    r = a->cur;
    a->cur += n;
    return r;
#endif
}
