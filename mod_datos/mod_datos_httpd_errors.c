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
#include "apr_lib.h"

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "util_filter.h"

#include "mod_datos_httpd_errors.h"
#include "mod_datos_reply.h"
#include "mod_datos_sections.h"

#define ERROR_FILTER "DATOS_ERROR_JSON"

/* The sections (const mod_datos_section_t *) that hand requests to our
 * handlers; rebuilt by every configuration pass, in pconf. */
static apr_array_header_t *datos_paths;
static ap_filter_rec_t *error_filter;

static apr_status_t paths_reset(void *data)
{
    (void)data;
    datos_paths = NULL;
    return APR_SUCCESS;
}

static int is_ours(const char *handler)
{
    return handler
           && (!strcmp(handler, "datos") || !strcmp(handler, "datos-health"));
}

void mod_datos_httpd_errors_post_config(apr_pool_t *pconf, server_rec *s)
{
    apr_array_header_t *sections = mod_datos_sections(pconf, s);
    int i;

    datos_paths = apr_array_make(pconf, 4, sizeof(const mod_datos_section_t *));
    apr_pool_cleanup_register(pconf, NULL, paths_reset, apr_pool_cleanup_null);
    for (i = 0; i < sections->nelts; i++) {
        const mod_datos_section_t *e =
            &APR_ARRAY_IDX(sections, i, mod_datos_section_t);

        if (e->s
            && (mod_datos_section_sets(e, "datos")
                || mod_datos_section_sets(e, "datos-health")))
            APR_ARRAY_PUSH(datos_paths, const mod_datos_section_t *) = e;
    }
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

/* Whether r is for a path that maps to the module's handlers. */
static int is_our_path(request_rec *r)
{
    const char *path;
    int i, parsed;

    if (is_ours(r->handler)) {
        return 1;
    }
    if (!datos_paths || !datos_paths->nelts
        || !(path = request_path(r, &parsed))) {
        return 0;
    }
    for (i = 0; i < datos_paths->nelts; i++) {
        const mod_datos_section_t *e =
            APR_ARRAY_IDX(datos_paths, i, const mod_datos_section_t *);
        /* Before the request line was read, httpd has not picked the
         * virtual host: a section of any host may apply. */
        if (parsed && e->s != r->server) {
            continue;
        }
        if (mod_datos_section_matches(e, path)) {
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
    mod_datos_reply_headers(r, MOD_DATOS_JSON_TYPE);
    if (r->status == HTTP_METHOD_NOT_ALLOWED) {
        apr_table_setn(r->headers_out, "Allow", "GET, HEAD");
    }
    ap_remove_output_filter(f);
    return ap_pass_brigade(f->next, bb);
}

static void insert_error_filter(request_rec *r)
{
    int status = r->status;

    if (status < 400 || !is_our_path(r)) {
        return;
    }
    ap_custom_response(
        r, status,
        mod_datos_error_body(r->pool, status, status_message(r, status)));
    ap_add_output_filter_handle(error_filter, NULL, r, r->connection);
}

/* TRACE echoes the request, cookies and all; an API path never answers it,
 * whatever TraceEnable says. Runs before core's TRACE handling. */
static int refuse_trace(request_rec *r)
{
    if (r->method_number == M_TRACE && is_our_path(r)) {
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
