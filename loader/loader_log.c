/* loader_log.c - JSON lines on stderr, one object per event, so that a log
 * shipper (journald, Cloud Logging's agent) reads fields, not prose. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <apr_strings.h>
#include <apr_time.h>

#include "datos_log.h"
#include "datos_time.h"
#include "loader.h"

static int log_fd = 2;
static int libdatos_debug;

static const char *level_name(datos_log_level_t level)
{
    return level <= DATOS_LOG_ERR       ? "error"
           : level == DATOS_LOG_WARNING ? "warning"
           : level <= DATOS_LOG_INFO    ? "info"
                                        : "debug";
}

static void sink(void *baton, const char *file, int line,
                 datos_log_level_t level, apr_status_t rv, const char *msg)
{
    json_t *ev = loader_event(level_name(level), "libdatos");

    (void)baton;
    json_object_set_new(ev, "message", json_string(msg ? msg : ""));
    json_object_set_new(ev, "source", json_sprintf("%s:%d", file, line));
    if (rv)
        json_object_set_new(ev, "status", json_string(datos_status_name(rv)));
    loader_emit(ev);
}

static int is_level(void *baton, datos_log_level_t level)
{
    (void)baton;
    return level <= (libdatos_debug ? DATOS_LOG_DEBUG : DATOS_LOG_WARNING);
}

void loader_log_init(int fd)
{
    const char *dbg = getenv("DATOS_LOADER_DEBUG");

    log_fd = fd;
    libdatos_debug = dbg && *dbg && strcmp(dbg, "0");
    datos_log_set_sink(sink, is_level, NULL);
}

json_t *loader_event(const char *level, const char *event)
{
    char ts[DATOS_TS_BUFSIZE];
    apr_time_t now = apr_time_now();
    json_t *ev = json_object();

    /* Milliseconds are enough for a log line: rendered from the
     * microsecond clock, then cut. */
    datos_ts_format(now - now % 1000 + 1, ts);
    if (strlen(ts) == 32) /* ...SS.ffffff+00:00 -> ...SS.fffZ */
        memcpy(ts + 23, "Z", 2);
    json_object_set_new(ev, "time", json_string(ts));
    json_object_set_new(ev, "level", json_string(level));
    json_object_set_new(ev, "event", json_string(event));
    return ev;
}

void loader_emit(json_t *ev)
{
    char *text =
        json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
    size_t n, off = 0;

    json_decref(ev);
    if (!text)
        return;
    n = strlen(text);
    text = realloc(text, n + 2);
    if (!text)
        return;
    text[n++] = '\n';
    while (off < n) {
        ssize_t w = write(log_fd, text + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    free(text);
}

void loader_logf(const char *level, const char *event, const char *fmt, ...)
{
    json_t *ev = loader_event(level, event);
    char buf[2048];
    va_list ap;

    va_start(ap, fmt);
    apr_vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    json_object_set_new(ev, "message", json_string(buf));
    loader_emit(ev);
}
