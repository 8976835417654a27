/* datos_text.h - a text that grows in a pool, for the documents libdatos
 * writes whole (the /metrics exposition, the status page and its JSON).
 * Always NUL-terminated; memory is the pool's, so there is nothing to free.
 */
#ifndef DATOS_TEXT_H
#define DATOS_TEXT_H

#include <apr_pools.h>

typedef struct datos_text_t {
    apr_pool_t *p;
    char *buf;
    apr_size_t len;
    apr_size_t cap;
} datos_text_t;

/* An empty text with room for cap bytes before it first grows. */
void datos_text_init(datos_text_t *t, apr_pool_t *p, apr_size_t cap);

void datos_text_mem(datos_text_t *t, const char *s, apr_size_t n);
void datos_text_str(datos_text_t *t, const char *s);
void datos_text_printf(datos_text_t *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* s with every character for which esc gives a string replaced by it
 * (each format's escaping rule is then just that table). */
void datos_text_escaped(datos_text_t *t, const char *s,
                        const char *(*esc)(char c));

#endif
