/* mod_bench_bytes.c - the ceiling of the read-path benchmark (tests/bench).
 *
 * A test-only handler that writes a body read once, when the configuration
 * is read, from memory, with headers fixed in the configuration: the least
 * work an httpd module can do to send the bytes /datos sends. The benchmark
 * copies both the body and the headers from a real /datos answer, so the
 * two handlers put the same bytes on the wire. Never installed.
 *
 *     <Location "/bench/10">
 *         SetHandler bench-bytes
 *         BenchBytesFile /path/to/body
 *         BenchBytesHeader ETag "\"abc\""
 *     </Location>
 *
 * Content-Type and Content-Encoding are headers like any other here, set
 * through httpd's own fields so its filters see them as a handler's.
 *
 * `BenchBytesQuick On` in a <Location> serves that exact path from the
 * quick_handler hook instead, before the location and directory walks, as
 * mod_cache serves its hits: the ceiling of a module that answers there.
 * The paths are collected while the configuration is read; a request for
 * another path, or with a method other than GET or HEAD, falls through.
 */
#include <string.h>
#include <strings.h>

#include "apr_strings.h"
#include "apr_file_io.h"
#include "apr_hash.h"
#include "apr_tables.h"

#include "httpd.h"
#include "http_config.h"
#include "http_protocol.h"
#include "http_request.h"

module AP_MODULE_DECLARE_DATA bench_bytes_module;

typedef struct {
    const char *body;
    apr_size_t len;
    const char *content_type;
    apr_array_header_t *headers; /* of const char *: name, value, ... */
} bench_conf_t;

/* The paths served from quick_handler: path -> the <Location>'s
 * bench_conf_t, which later directives of that section still fill in. */
typedef struct {
    apr_hash_t *quick;
} bench_server_t;

static void *create_server_conf(apr_pool_t *p, server_rec *s)
{
    bench_server_t *sc = apr_pcalloc(p, sizeof(*sc));

    (void)s;
    sc->quick = apr_hash_make(p);
    return sc;
}

static void *create_dir_conf(apr_pool_t *p, char *dir)
{
    bench_conf_t *c = apr_pcalloc(p, sizeof(*c));

    (void)dir;
    c->headers = apr_array_make(p, 8, sizeof(const char *));
    return c;
}

static const char *set_file(cmd_parms *cmd, void *dconf, const char *path)
{
    bench_conf_t *c = dconf;
    apr_file_t *f;
    apr_finfo_t fi;
    apr_size_t n;
    char *buf;

    if (apr_file_open(&f, path, APR_READ | APR_BINARY, 0, cmd->pool)
            != APR_SUCCESS
        || apr_file_info_get(&fi, APR_FINFO_SIZE, f) != APR_SUCCESS)
        return apr_psprintf(cmd->pool, "BenchBytesFile: cannot read %s", path);
    n = (apr_size_t)fi.size;
    buf = apr_palloc(cmd->pool, n + 1);
    if (n && apr_file_read_full(f, buf, n, NULL) != APR_SUCCESS)
        return apr_psprintf(cmd->pool, "BenchBytesFile: cannot read %s", path);
    apr_file_close(f);
    c->body = buf;
    c->len = n;
    return NULL;
}

static const char *set_header(cmd_parms *cmd, void *dconf, const char *name,
                              const char *value)
{
    bench_conf_t *c = dconf;

    if (!strcasecmp(name, "Content-Type")) {
        c->content_type = apr_pstrdup(cmd->pool, value);
        return NULL;
    }
    APR_ARRAY_PUSH(c->headers, const char *) = apr_pstrdup(cmd->pool, name);
    APR_ARRAY_PUSH(c->headers, const char *) = apr_pstrdup(cmd->pool, value);
    return NULL;
}

static const char *set_quick(cmd_parms *cmd, void *dconf, int on)
{
    bench_server_t *sc =
        ap_get_module_config(cmd->server->module_config, &bench_bytes_module);

    if (!cmd->path || !cmd->directive->parent
        || strcasecmp(cmd->directive->parent->directive, "<Location"))
        return "BenchBytesQuick: only in a <Location> with a plain path";
    apr_hash_set(sc->quick, apr_pstrdup(cmd->pool, cmd->path),
                 APR_HASH_KEY_STRING, on ? dconf : NULL);
    return NULL;
}

/* The response both hooks send. */
static int send_bytes(request_rec *r, const bench_conf_t *c)
{
    int i;

    if (!c->body)
        return HTTP_NOT_FOUND;
    if (c->content_type)
        ap_set_content_type(r, c->content_type);
    for (i = 0; i + 1 < c->headers->nelts; i += 2)
        apr_table_setn(r->headers_out,
                       APR_ARRAY_IDX(c->headers, i, const char *),
                       APR_ARRAY_IDX(c->headers, i + 1, const char *));
    ap_set_content_length(r, c->len);
    if (!r->header_only)
        ap_rwrite(c->body, (int)c->len, r);
    return OK;
}

static int bench_handler(request_rec *r)
{
    if (!r->handler || strcmp(r->handler, "bench-bytes"))
        return DECLINED;
    if (r->method_number != M_GET)
        return HTTP_METHOD_NOT_ALLOWED;
    return send_bytes(
        r, ap_get_module_config(r->per_dir_config, &bench_bytes_module));
}

static int bench_quick_handler(request_rec *r, int lookup)
{
    const bench_server_t *sc;
    const bench_conf_t *c;

    if (lookup || r->method_number != M_GET || !r->uri)
        return DECLINED;
    sc = ap_get_module_config(r->server->module_config, &bench_bytes_module);
    c = apr_hash_get(sc->quick, r->uri, APR_HASH_KEY_STRING);
    if (!c || !c->body)
        return DECLINED;
    return send_bytes(r, c);
}

static const command_rec bench_cmds[] = {
    AP_INIT_TAKE1("BenchBytesFile", set_file, NULL, ACCESS_CONF,
                  "file whose bytes the handler sends"),
    AP_INIT_TAKE2("BenchBytesHeader", set_header, NULL, ACCESS_CONF,
                  "a response header: name and value"),
    AP_INIT_FLAG("BenchBytesQuick", set_quick, NULL, ACCESS_CONF,
                 "serve this <Location>'s path from quick_handler"),
    {NULL}};

static void register_hooks(apr_pool_t *p)
{
    (void)p;
    ap_hook_handler(bench_handler, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_quick_handler(bench_quick_handler, NULL, NULL, APR_HOOK_MIDDLE);
}

AP_DECLARE_MODULE(bench_bytes) = {STANDARD20_MODULE_STUFF,
                                  create_dir_conf,
                                  NULL,
                                  create_server_conf,
                                  NULL,
                                  bench_cmds,
                                  register_hooks,
                                  AP_MODULE_FLAG_NONE};
