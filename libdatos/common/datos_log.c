/* datos_log.c - the process-wide log sink. */
#include <stdio.h>
#include <apr_strings.h>

#include "datos_error.h"
#include "datos_log.h"

static datos_log_sink_fn *log_sink;
static datos_log_level_fn *log_is_level;
static void *log_baton;

static const char *const level_names[] = {
    "emerg", "alert", "crit",   "error",  "warn",   "notice",
    "info",  "debug", "trace1", "trace2", "trace3", "trace4"};

void datos_log_set_sink(datos_log_sink_fn *sink, datos_log_level_fn *is_level,
                        void *baton)
{
    log_sink = sink;
    log_is_level = is_level;
    log_baton = baton;
}

int datos_log_is_level(datos_log_level_t level)
{
    if (log_is_level) {
        return log_is_level(log_baton, level);
    }
    return level <= DATOS_LOG_WARNING;
}

void datos_log_perror(const char *file, int line, datos_log_level_t level,
                      apr_status_t rv, apr_pool_t *p, const char *fmt, ...)
{
    apr_pool_t *scratch = NULL;
    const char *msg;
    va_list ap;

    if (!datos_log_is_level(level)) {
        return;
    }
    if (!p) {
        /* Called from places that have no pool of their own (curl's debug
         * callback); a private pool keeps the message off shared pools. */
        if (apr_pool_create(&scratch, NULL) != APR_SUCCESS) {
            return;
        }
        p = scratch;
    }
    va_start(ap, fmt);
    msg = apr_pvsprintf(p, fmt, ap);
    va_end(ap);

    if (log_sink) {
        log_sink(log_baton, file, line, level, rv, msg);
    }
    else {
        char buf[120];
        if (rv != APR_SUCCESS) {
            if (rv > DATOS_ERR_BASE && rv <= DATOS_EINSECURE) {
                apr_cpystrn(buf, datos_status_name(rv), sizeof(buf));
            }
            else {
                apr_strerror(rv, buf, sizeof(buf));
            }
            fprintf(stderr, "[datos:%s] %s (%d) %s\n",
                    (unsigned)level
                            < sizeof(level_names) / sizeof(level_names[0])
                        ? level_names[level]
                        : "?",
                    buf, (int)rv, msg);
        }
        else {
            fprintf(stderr, "[datos:%s] %s\n",
                    (unsigned)level
                            < sizeof(level_names) / sizeof(level_names[0])
                        ? level_names[level]
                        : "?",
                    msg);
        }
    }
    if (scratch) {
        apr_pool_destroy(scratch);
    }
}
