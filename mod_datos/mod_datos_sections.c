/* mod_datos_sections.c - the one walker of httpd's configuration tree.
 *
 * httpd keeps no list of the paths a handler serves: SetHandler is a
 * per-directory setting, applied request by request. What the module must
 * know before any request (which paths are ours, whether POST there is
 * guarded) it reads from the tree the configuration files made
 * (ap_conftree), conditional sections included.
 */
#include <string.h>
#include <strings.h>

#include "apr_strings.h"
#include "apr_fnmatch.h"

#include "mod_datos_sections.h"

/* The server a section belongs to, matched by where its <VirtualHost>
 * stands in the configuration files. */
static server_rec *server_of(server_rec *s, const ap_directive_t *vhost)
{
    server_rec *vs;

    if (!vhost)
        return s;
    for (vs = s->next; vs; vs = vs->next) {
        if (vs->defn_name && vhost->filename
            && vs->defn_line_number == (unsigned)vhost->line_num
            && !strcmp(vs->defn_name, vhost->filename))
            return vs;
    }
    return NULL;
}

static const ap_directive_t *vhost_of(const ap_directive_t *d)
{
    for (; d; d = d->parent) {
        if (!strcasecmp(d->directive, "<VirtualHost"))
            return d;
    }
    return NULL;
}

/* Nested sections that made it into the tree (<If>, <IfModule>...) are
 * part of the section; another <Location> is not. */
static int inside(const ap_directive_t *d)
{
    return d->first_child && d->directive[0] == '<'
           && strncasecmp(d->directive, "<Location", 9);
}

static void collect_handlers(apr_pool_t *p, const ap_directive_t *d,
                             apr_array_header_t *handlers)
{
    for (; d; d = d->next) {
        if (!strcasecmp(d->directive, "SetHandler") && d->args) {
            const char *args = d->args;
            APR_ARRAY_PUSH(handlers, const char *) = ap_getword_conf(p, &args);
        }
        if (inside(d))
            collect_handlers(p, d->first_child, handlers);
    }
}

static void add_section(apr_pool_t *p, server_rec *s, const ap_directive_t *d,
                        apr_array_header_t *sections)
{
    char *copy = apr_pstrdup(p, d->args ? d->args : "");
    char *gt = strrchr(copy, '>');
    const char *args = copy, *path;
    mod_datos_section_t *e = apr_array_push(sections);
    int regex = !strcasecmp(d->directive, "<LocationMatch");

    if (gt)
        *gt = '\0';
    path = ap_getword_conf(p, &args);
    if (!regex && !strcmp(path, "~")) {
        regex = 1;
        path = ap_getword_conf(p, &args);
    }
    memset(e, 0, sizeof(*e));
    e->d = d;
    e->vhost = vhost_of(d);
    e->s = server_of(s, e->vhost);
    e->handlers = apr_array_make(p, 1, sizeof(const char *));
    collect_handlers(p, d->first_child, e->handlers);
    /* An empty path matches nothing. */
    if (regex && *path)
        e->re = ap_pregcomp(p, path, AP_REG_EXTENDED);
    else if (!regex) {
        e->path = path;
        e->wildcard = apr_fnmatch_test(path);
    }
}

static void walk(apr_pool_t *p, server_rec *s, const ap_directive_t *d,
                 apr_array_header_t *sections)
{
    for (; d; d = d->next) {
        if (!strcasecmp(d->directive, "<Location")
            || !strcasecmp(d->directive, "<LocationMatch")) {
            add_section(p, s, d, sections);
            continue;
        }
        if (d->first_child)
            walk(p, s, d->first_child, sections);
    }
}

apr_array_header_t *mod_datos_sections(apr_pool_t *p, server_rec *s)
{
    apr_array_header_t *sections =
        apr_array_make(p, 8, sizeof(mod_datos_section_t));

    walk(p, s, ap_conftree, sections);
    return sections;
}

int mod_datos_section_sets(const mod_datos_section_t *sec, const char *handler)
{
    int i;

    for (i = 0; i < sec->handlers->nelts; i++) {
        if (!strcasecmp(APR_ARRAY_IDX(sec->handlers, i, const char *), handler))
            return 1;
    }
    return 0;
}

int mod_datos_section_matches(const mod_datos_section_t *sec, const char *path)
{
    apr_size_t n;

    if (sec->re)
        return !ap_regexec(sec->re, path, 0, NULL, 0);
    if (!sec->path || !*sec->path)
        return 0;
    if (sec->wildcard)
        return apr_fnmatch(sec->path, path, APR_FNM_PATHNAME) == APR_SUCCESS;
    /* The next byte is '/' or the end, unless the path ends in '/'. */
    n = strlen(sec->path);
    if (strncmp(path, sec->path, n))
        return 0;
    return sec->path[n - 1] == '/' || path[n] == '/' || path[n] == '\0';
}

int mod_datos_section_covers(const mod_datos_section_t *o,
                             const mod_datos_section_t *h)
{
    if (o == h)
        return 1;
    if (o->vhost && o->vhost != h->vhost)
        return 0;
    return h->path && mod_datos_section_matches(o, h->path);
}

/* Whether the method list of a <Limit>/<LimitExcept> names method. */
static int names_method(apr_pool_t *p, const char *args, const char *method)
{
    char *copy = apr_pstrdup(p, args ? args : ""), *gt = strrchr(copy, '>');
    const char *w = copy;

    if (gt)
        *gt = '\0';
    while (*w) {
        if (!strcasecmp(ap_getword_conf(p, &w), method))
            return 1;
    }
    return 0;
}

/* Nested sections that made it into the tree (<RequireAll>, <If>,
 * <IfModule>...) are looked into; sections for other places are not. */
static int restricts(apr_pool_t *p, const ap_directive_t *d, int applies,
                     const char *method)
{
    for (; d; d = d->next) {
        const char *dir = d->directive;

        if (!strcasecmp(dir, "Require") && applies) {
            const char *a = d->args ? d->args : "";
            const char *w1 = ap_getword_conf(p, &a);
            const char *w2 = ap_getword_conf(p, &a);
            if (!(!strcasecmp(w1, "all") && !strcasecmp(w2, "granted")))
                return 1;
        }
        else if (!strcasecmp(dir, "Deny") && applies) {
            return 1;
        }
        else if (!strcasecmp(dir, "<Limit")) {
            if (restricts(p, d->first_child,
                          applies && names_method(p, d->args, method), method))
                return 1;
        }
        else if (!strcasecmp(dir, "<LimitExcept")) {
            if (restricts(p, d->first_child,
                          applies && !names_method(p, d->args, method), method))
                return 1;
        }
        else if (d->first_child && dir[0] == '<'
                 && strncasecmp(dir, "<Location", 9)
                 && strncasecmp(dir, "<Directory", 10)
                 && strncasecmp(dir, "<Files", 6)
                 && strncasecmp(dir, "<VirtualHost", 12)) {
            if (restricts(p, d->first_child, applies, method))
                return 1;
        }
    }
    return 0;
}

int mod_datos_section_restricts(apr_pool_t *p, const mod_datos_section_t *sec,
                                const char *method)
{
    return restricts(p, sec->d->first_child, 1, method);
}
