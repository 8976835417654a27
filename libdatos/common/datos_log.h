/* datos_log.h - log sink shared by mod_datos and datos-loader.
 *
 * libdatos never includes httpd.h, so it cannot call ap_log_error itself.
 * Each program installs a sink: mod_datos forwards to ap_log_error (so
 * "LogLevel datos:trace3" works), the loader writes JSON lines to stderr.
 * Levels use the same numbers as httpd's APLOG_* so the module can pass
 * them through unchanged.
 */
#ifndef DATOS_LOG_H
#define DATOS_LOG_H

#include <apr_pools.h>
#include <apr_errno.h>

typedef enum {
    DATOS_LOG_EMERG = 0,
    DATOS_LOG_ALERT,
    DATOS_LOG_CRIT,
    DATOS_LOG_ERR,
    DATOS_LOG_WARNING,
    DATOS_LOG_NOTICE,
    DATOS_LOG_INFO,
    DATOS_LOG_DEBUG,
    DATOS_LOG_TRACE1,
    DATOS_LOG_TRACE2,
    DATOS_LOG_TRACE3,
    DATOS_LOG_TRACE4
} datos_log_level_t;

#define DATOS_LOG_MARK __FILE__, __LINE__

/* Log ids ("DT0001: ...") let tests accept an expected line by number, the
 * way httpd's own tests use AH numbers. */
#define DATOS_LOGNO(n) "DT" #n ": "

typedef void datos_log_sink_fn(void *baton, const char *file, int line,
                               datos_log_level_t level, apr_status_t rv,
                               const char *msg);
typedef int datos_log_level_fn(void *baton, datos_log_level_t level);

/* Process-global; set once at start-up, before any thread exists.
 * Without a sink, messages at WARNING and above go to stderr. */
void datos_log_set_sink(datos_log_sink_fn *sink, datos_log_level_fn *is_level,
                        void *baton);

int datos_log_is_level(datos_log_level_t level);

/* Formats with apr_pvsprintf into p (a scratch sub-pool when p is NULL).
 * Messages must never contain keys, tokens or JWT assertions. */
void datos_log_perror(const char *file, int line, datos_log_level_t level,
                      apr_status_t rv, apr_pool_t *p, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

#endif
