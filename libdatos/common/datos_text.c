/* datos_text.c - see datos_text.h. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "datos_text.h"

void datos_text_init(datos_text_t *t, apr_pool_t *p, apr_size_t cap)
{
    t->p = p;
    t->cap = cap > 16 ? cap : 16;
    t->buf = apr_palloc(p, t->cap);
    t->len = 0;
    t->buf[0] = '\0';
}

/* Room for need more bytes and the NUL. Growth doubles, so a document of
 * n bytes costs O(n) copies in all. */
static void grow(datos_text_t *t, apr_size_t need)
{
    apr_size_t cap = t->cap;
    char *buf;

    if (t->len + need < t->cap)
        return;
    while (t->len + need >= cap)
        cap *= 2;
    buf = apr_palloc(t->p, cap);
    memcpy(buf, t->buf, t->len + 1);
    t->buf = buf;
    t->cap = cap;
}

void datos_text_mem(datos_text_t *t, const char *s, apr_size_t n)
{
    grow(t, n);
    memcpy(t->buf + t->len, s, n);
    t->len += n;
    t->buf[t->len] = '\0';
}

void datos_text_str(datos_text_t *t, const char *s)
{
    datos_text_mem(t, s, strlen(s));
}

void datos_text_printf(datos_text_t *t, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
        t->buf[t->len] = '\0';
        return;
    }
    if ((apr_size_t)n >= t->cap - t->len) {
        grow(t, (apr_size_t)n);
        va_start(ap, fmt);
        vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
    }
    t->len += (apr_size_t)n;
}

void datos_text_escaped(datos_text_t *t, const char *s,
                        const char *(*esc)(char c))
{
    const char *run = s, *e;

    for (; *s; s++) {
        if ((e = esc(*s))) {
            datos_text_mem(t, run, (apr_size_t)(s - run));
            datos_text_str(t, e);
            run = s + 1;
        }
    }
    datos_text_mem(t, run, (apr_size_t)(s - run));
}
