/* datos_arena.h - memory for the bulk of a load batch in 2 MiB pages.
 *
 * The first write to each page of fresh memory faults, and on a virtual
 * machine a 4 KiB fault can cost more than the work done on the bytes in
 * it: on the 2-core VMs datos is developed on, a loader's first batch of
 * the docs/design.md section 8 mix (50,000 messages) took 350 ms of CPU,
 * 190 ms with its decoded message data in 2 MiB pages, and 90 ms once
 * its memory is no longer new. Memory from here comes
 * from mappings aligned to 2 MiB and advised for transparent huge pages,
 * so that the kernel can back them with one fault per 2 MiB. Without
 * transparent huge pages it works the same with small pages. */
#ifndef DATOS_ARENA_H
#define DATOS_ARENA_H

#include <apr_pools.h>

/* A mapping of at least size bytes (rounded up to 2 MiB, *got), aligned
 * to 2 MiB and advised for huge pages; NULL when refused. The caller
 * unmaps it (munmap(m, *got)). */
void *datos_huge_map(apr_size_t size, apr_size_t *got);

/* n bytes, 16-aligned, that live as long as p (until it is cleared or
 * destroyed), taken from huge-page mappings kept for p; NULL when memory
 * is refused. Meant for large totals: the first call for a pool maps
 * 2 MiB, later mappings double up to 32 MiB. In a build with
 * AddressSanitizer it is apr_palloc, so that the sanitizer keeps
 * checking what is written there. */
void *datos_arena_alloc(apr_pool_t *p, apr_size_t n);

#endif
