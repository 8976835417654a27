/* mod_datos_httpd_errors.c - JSON for the errors httpd itself answers on the
 * module's paths.
 *
 * Some answers on /datos and /health never reach our handlers: a request
 * line that is too long (414) or malformed (400), an Expect header httpd
 * refuses (417), TRACE (405 with TraceEnable Off), access control (401,
 * 403), a body over LimitRequestBody (413). httpd builds those pages before
 * or outside the <Location> sections, so an ErrorDocument inside them does
 * not apply, and its page is HTML. Clients of an API expect
 * {"error":{"code":N,"message":"..."}} whatever went wrong.
 *
 * So the module learns, once per configuration, which URL paths map to
 * its handlers (<Location> and <LocationMatch> sections that SetHandler
 * datos or datos-health), and for an error answer on such a path it
 * supplies the JSON body and sets Content-Type and Cache-Control. TRACE on
 * those paths is refused here even with TraceEnable On, so a request's
 * cookies are never echoed.
 */
#include <string.h>

#include "apr_strings.h"
#include "apr_fnmatch.h"
#include "apr_lib.h"

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "util_cfgtree.h"
#include "util_filter.h"
#include "ap_regex.h"

#include "datos_log.h"
#include "mod_datos.h"

APLOG_USE_MODULE(datos);

#define ERROR_FILTER "DATOS_ERROR_JSON"

typedef struct {
    server_rec *s;      /* the virtual host the section is in */
    const char *prefix; /* plain <Location> path, or NULL */
    int wildcard;       /* prefix holds * ? or [ (fnmatch) */
    ap_regex_t *re;     /* <Location ~> / <LocationMatch> */
} datos_path_t;

/* Rebuilt by every configuration pass; lives in pconf. */
static apr_array_header_t *datos_paths;
static ap_filter_rec_t *error_filter;

static apr_status_t paths_reset(void *data)
{
    (void)data;
    datos_paths = NULL;
    return APR_SUCCESS;
}

/* The server a <VirtualHost> section defined, matched by where it stands
 * in the configuration files. */
static server_rec *section_server(server_rec *s, const ap_directive_t *d)
{
    server_rec *vs;

    for (; d; d = d->parent) {
        if (strcasecmp(d->directive, "<VirtualHost")) {
            continue;
        }
        for (vs = s->next; vs; vs = vs->next) {
            if (vs->defn_name && d->filename
                && vs->defn_line_number == (unsigned)d->line_num
                && !strcmp(vs->defn_name, d->filename)) {
                return vs;
            }
        }
        return NULL;
    }
    return s;
}

static int sets_our_handler(apr_pool_t *p, const ap_directive_t *d)
{
    for (; d; d = d->next) {
        if (!strcasecmp(d->directive, "SetHandler") && d->args) {
            const char *args = d->args;
            const char *h = ap_getword_conf(p, &args);
            if (!strcasecmp(h, "datos") || !strcasecmp(h, "datos-health")) {
                return 1;
            }
        }
        /* Conditional sections (<IfModule>, <If>...) that made it into the
         * tree are looked into as well. */
        if (d->first_child && d->directive[0] == '<'
            && strncasecmp(d->directive, "<Location", 9)
            && sets_our_handler(p, d->first_child)) {
            return 1;
        }
    }
    return 0;
}

static void add_section(apr_pool_t *p, server_rec *s, const ap_directive_t *d)
{
    const char *args = d->args ? d->args : "";
    char *copy = apr_pstrdup(p, args), *end;
    const char *cargs, *path;
    datos_path_t *e;
    int regex = !strcasecmp(d->directive, "<LocationMatch");
    server_rec *vs = section_server(s, d);

    if (!vs) {
        return;
    }
    end = strrchr(copy, '>');
    if (end) {
        *end = '\0';
    }
    cargs = copy;
    path = ap_getword_conf(p, &cargs);
    if (!regex && !strcmp(path, "~")) {
        regex = 1;
        path = ap_getword_conf(p, &cargs);
    }
    if (!*path) {
        return;
    }
    e = apr_array_push(datos_paths);
    memset(e, 0, sizeof(*e));
    e->s = vs;
    if (regex) {
        e->re = ap_pregcomp(p, path, AP_REG_EXTENDED);
        if (!e->re) {
            datos_paths->nelts--;
        }
        return;
    }
    e->prefix = path;
    e->wildcard = apr_fnmatch_test(path);
}

static void walk(apr_pool_t *p, server_rec *s, const ap_directive_t *d)
{
    for (; d; d = d->next) {
        if ((!strcasecmp(d->directive, "<Location")
             || !strcasecmp(d->directive, "<LocationMatch"))) {
            if (sets_our_handler(p, d->first_child)) {
                add_section(p, s, d);
            }
            continue;
        }
        if (d->first_child) {
            walk(p, s, d->first_child);
        }
    }
}

void mod_datos_httpd_errors_post_config(apr_pool_t *pconf, server_rec *s)
{
    datos_paths = apr_array_make(pconf, 4, sizeof(datos_path_t));
    apr_pool_cleanup_register(pconf, NULL, paths_reset, apr_pool_cleanup_null);
    walk(pconf, s, ap_conftree);
}

/* <Location> matching as httpd does it: a plain path matches itself and
 * what lies below it (the next byte is '/' or the end, unless the path
 * ends in '/'); wildcards match whole paths with fnmatch. */
static int path_matches(const datos_path_t *e, const char *path)
{
    apr_size_t n;

    if (e->re) {
        return !ap_regexec(e->re, path, 0, NULL, 0);
    }
    if (e->wildcard) {
        return apr_fnmatch(e->prefix, path, APR_FNM_PATHNAME) == APR_SUCCESS;
    }
    n = strlen(e->prefix);
    if (strncmp(path, e->prefix, n)) {
        return 0;
    }
    return e->prefix[n - 1] == '/' || path[n] == '/' || path[n] == '\0';
}

/* The request's path: the parsed one when httpd got that far, else what
 * can be read from the (maybe cut) request line. */
static const char *request_path(request_rec *r, int *parsed)
{
    const char *line, *sp;
    apr_size_t n;
    char *path;

    *parsed = 0;
    if (r->parsed_uri.path && *r->parsed_uri.path) {
        *parsed = 1;
        return r->parsed_uri.path;
    }
    if (r->uri && *r->uri == '/') {
        *parsed = 1;
        return r->uri;
    }
    line = r->the_request;
    if (!line || !(sp = strchr(line, ' '))) {
        return NULL;
    }
    sp++;
    n = strcspn(sp, " ?#");
    if (!n || *sp != '/') {
        return NULL;
    }
    path = apr_pstrmemdup(r->pool, sp, n);
    /* Percent escapes in the path are decoded as httpd would; a path that
     * does not decode cleanly is not ours to answer for. */
    if (ap_unescape_url(path) != OK) {
        return NULL;
    }
    return path;
}

int mod_datos_is_our_path(request_rec *r)
{
    const char *path;
    int i, parsed;

    if (r->handler
        && (!strcmp(r->handler, "datos")
            || !strcmp(r->handler, "datos-health"))) {
        return 1;
    }
    if (!datos_paths || !datos_paths->nelts
        || !(path = request_path(r, &parsed))) {
        return 0;
    }
    for (i = 0; i < datos_paths->nelts; i++) {
        const datos_path_t *e = &APR_ARRAY_IDX(datos_paths, i, datos_path_t);
        /* Before the request line was read, httpd has not picked the
         * virtual host: a section of any host may apply. */
        if (parsed && e->s != r->server) {
            continue;
        }
        if (path_matches(e, path)) {
            return 1;
        }
    }
    return 0;
}

/* JSON-safe, short: httpd's reason phrase for the status. */
static const char *status_message(request_rec *r, int status)
{
    const char *line = ap_get_status_line(status);

    (void)r;
    /* "414 Request-URI Too Long" -> "Request-URI Too Long" */
    if (line && strlen(line) > 4 && apr_isdigit(line[0])) {
        return line + 4;
    }
    return "Error";
}

static apr_status_t error_filter_fn(ap_filter_t *f, apr_bucket_brigade *bb)
{
    request_rec *r = f->r;

    /* ap_send_error_response set its text/html type after the filter was
     * inserted; the headers are not sent before this filter passes on. */
    ap_set_content_type(r, "application/json");
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    if (r->status == HTTP_METHOD_NOT_ALLOWED) {
        apr_table_setn(r->headers_out, "Allow", "GET, HEAD");
    }
    ap_remove_output_filter(f);
    return ap_pass_brigade(f->next, bb);
}

static void insert_error_filter(request_rec *r)
{
    int status = r->status;

    if (status < 400 || !mod_datos_is_our_path(r)) {
        return;
    }
    ap_custom_response(
        r, status,
        apr_psprintf(r->pool, "{\"error\":{\"code\":%d,\"message\":\"%s\"}}",
                     status, status_message(r, status)));
    ap_add_output_filter_handle(error_filter, NULL, r, r->connection);
}

/* TRACE echoes the request, cookies and all; an API path never answers it,
 * whatever TraceEnable says. Runs before core's TRACE handling. */
static int refuse_trace(request_rec *r)
{
    if (r->method_number == M_TRACE && mod_datos_is_our_path(r)) {
        return HTTP_METHOD_NOT_ALLOWED;
    }
    return DECLINED;
}

void mod_datos_httpd_errors_register_hooks(apr_pool_t *p)
{
    (void)p;
    error_filter = ap_register_output_filter(ERROR_FILTER, error_filter_fn,
                                             NULL, AP_FTYPE_PROTOCOL - 1);
    ap_hook_insert_error_filter(insert_error_filter, NULL, NULL,
                                APR_HOOK_MIDDLE);
    ap_hook_map_to_storage(refuse_trace, NULL, NULL, APR_HOOK_FIRST);
}
