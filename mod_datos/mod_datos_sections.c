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

/* ------------------------------------------------------- the quick path */

/* Containers httpd evaluates while it reads the files: what they hold
 * either made it into the configuration or did not, like any line. */
static int transparent(const char *dir)
{
    static const char *const names[] = {"<IfModule",    "<IfDefine",
                                        "<IfVersion",   "<IfFile",
                                        "<IfDirective", "<IfSection"};
    apr_size_t i;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (!strcasecmp(dir, names[i]))
            return 1;
    }
    return 0;
}

/* Access control: mod_authz_core's Require and its containers, every
 * Auth* directive, mod_access_compat's. */
static int is_access(const char *dir)
{
    return !strcasecmp(dir, "Require") || !strncasecmp(dir, "<Require", 8)
           || !strncasecmp(dir, "Auth", 4) || !strcasecmp(dir, "Allow")
           || !strcasecmp(dir, "Deny") || !strcasecmp(dir, "Order")
           || !strcasecmp(dir, "Satisfy");
}

static const char *first_arg(apr_pool_t *p, const ap_directive_t *d)
{
    const char *a = d->args ? d->args : "";

    return ap_getword_conf(p, &a);
}

static int all_granted(apr_pool_t *p, const ap_directive_t *d)
{
    const char *a = d->args ? d->args : "";
    const char *w1 = ap_getword_conf(p, &a);
    const char *w2 = ap_getword_conf(p, &a);

    return !strcasecmp(w1, "all") && !strcasecmp(w2, "granted") && !*a;
}

/* "Header set X 1 (/etc/apache2/site.conf:12)" */
static const char *described(apr_pool_t *p, const ap_directive_t *d,
                             const char *what)
{
    return apr_psprintf(p, "%s%s%s%s (%s:%d)%s%s", d->directive,
                        d->args && *d->args ? " " : "", d->args ? d->args : "",
                        d->first_child ? ">" : "",
                        d->filename ? d->filename : "?", d->line_num,
                        what ? ": " : "", what ? what : "");
}

/* What a <Location> that applies to the path holds: NULL when nothing in
 * it can make the handler's answer differ from the quick path's (the
 * datos handler, no-gzip, access control that grants GET to all, or that
 * applies to other methods only); else the directive at fault. *granted
 * is set by a "Require all granted" that applies to GET. */
static const char *location_problem(apr_pool_t *p, const ap_directive_t *d,
                                    int applies, int *granted)
{
    const char *why;

    for (; d; d = d->next) {
        const char *dir = d->directive;

        if (!strcasecmp(dir, "<Limit") || !strcasecmp(dir, "<LimitExcept")) {
            /* These scope access control by method; HEAD is GET's. */
            int names = names_method(p, d->args, "GET");
            int in = !strcasecmp(dir, "<Limit") ? names : !names;

            if ((why = location_problem(p, d->first_child, applies && in,
                                        granted)))
                return why;
        }
        else if (transparent(dir)) {
            if ((why = location_problem(p, d->first_child, applies, granted)))
                return why;
        }
        else if (is_access(dir)) {
            if (!applies)
                continue; /* another method's */
            if (!strcasecmp(dir, "Require") && all_granted(p, d))
                *granted = 1;
            else
                return described(p, d, "access control applies to GET");
        }
        else if (!strcasecmp(dir, "SetHandler")) {
            if (strcasecmp(first_arg(p, d), "datos"))
                return described(p, d, NULL);
        }
        else if (!strcasecmp(dir, "SetEnv")) {
            /* mod_deflate's switch: nothing else reads it on this path. */
            if (strcasecmp(first_arg(p, d), "no-gzip"))
                return described(p, d, NULL);
        }
        else {
            return described(p, d, NULL);
        }
    }
    return NULL;
}

/* Whether the URL path `prefix` (of Redirect, ProxyPass, ScriptAlias)
 * takes `path`, as mod_alias matches: whole segments. */
static int url_takes(const char *prefix, const char *path)
{
    apr_size_t n = strlen(prefix);

    if (!n || strncmp(path, prefix, n))
        return 0;
    return prefix[n - 1] == '/' || path[n] == '/' || path[n] == '\0';
}

/* AddOutputFilterByType filters only the types it names: JSON, or any
 * pattern, would reach the handler's answer. */
static int filters_json(apr_pool_t *p, const ap_directive_t *d)
{
    const char *a = d->args ? d->args : "";

    ap_getword_conf(p, &a); /* the filters */
    while (*a) {
        const char *type = ap_getword_conf(p, &a);
        if (!strcasecmp(type, "application/json") || strchr(type, '*'))
            return 1;
    }
    return 0;
}

/* A directive of the server's own level, or of a <Directory> or <Files>
 * section (which may apply to the path: which ones do is decided by the
 * file the path maps to, not known here): NULL, or why the handler's
 * answer could differ from the quick path's. */
static const char *directive_problem(apr_pool_t *p, const ap_directive_t *d,
                                     const char *path, int in_dir)
{
    static const char *const prefixes[] = {"Rewrite",
                                           "RedirectMatch",
                                           "ProxyPassMatch",
                                           "ScriptAliasMatch",
                                           "Expires",
                                           "Sec",
                                           "Lua"};
    const char *dir = d->directive;
    apr_size_t i;

    if (!strcasecmp(dir, "Redirect") || !strcasecmp(dir, "RedirectPermanent")
        || !strcasecmp(dir, "RedirectTemp")) {
        const char *a = d->args ? d->args : "";
        const char *w = ap_getword_conf(p, &a);
        /* Redirect [status] URL-path URL */
        if (*w != '/')
            w = ap_getword_conf(p, &a);
        return url_takes(w, path) ? described(p, d, NULL) : NULL;
    }
    if (!strcasecmp(dir, "ProxyPass") || !strcasecmp(dir, "ScriptAlias"))
        return url_takes(first_arg(p, d), path) ? described(p, d, NULL) : NULL;
    if (!strcasecmp(dir, "AddOutputFilterByType"))
        return filters_json(p, d) ? described(p, d, NULL) : NULL;
    if (strstr(dir, "Filter") || strstr(dir, "filter")
        || !strcasecmp(dir, "Action") || !strcasecmp(dir, "Header")
        || !strcasecmp(dir, "RequestHeader"))
        return described(p, d, NULL);
    for (i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        if (!strncasecmp(dir, prefixes[i], strlen(prefixes[i])))
            return described(p, d, NULL);
    }
    if ((!strcasecmp(dir, "AllowOverride")
         || !strcasecmp(dir, "AllowOverrideList"))
        && strcasecmp(first_arg(p, d), "None"))
        return described(p, d, ".htaccess files may change anything");
    if (in_dir && !strncasecmp(dir, "SSL", 3))
        return described(p, d, NULL);
    return NULL;
}

/* The contents of a <Directory> or <Files> section: directive_problem's
 * rule, and its access control: mod_access_compat's always counts (a
 * <Location>'s Require does not override it), mod_authz_core's only when
 * no <Location> grants GET to all. */
static const char *dir_problem(apr_pool_t *p, const ap_directive_t *d,
                               const char *path, int applies, int granted)
{
    const char *why;

    for (; d; d = d->next) {
        const char *dir = d->directive;

        if (!strcasecmp(dir, "<Limit") || !strcasecmp(dir, "<LimitExcept")) {
            int names = names_method(p, d->args, "GET");
            int in = !strcasecmp(dir, "<Limit") ? names : !names;
            if ((why = dir_problem(p, d->first_child, path, applies && in,
                                   granted)))
                return why;
        }
        else if (transparent(dir)) {
            if ((why = dir_problem(p, d->first_child, path, applies, granted)))
                return why;
        }
        else if (!strcasecmp(dir, "Allow") || !strcasecmp(dir, "Deny")
                 || !strcasecmp(dir, "Order") || !strcasecmp(dir, "Satisfy")) {
            if (applies)
                return described(p, d, "mod_access_compat applies to GET");
        }
        else if (!strcasecmp(dir, "Require")
                 || !strncasecmp(dir, "<Require", 8)) {
            if (applies && !granted
                && !(!strcasecmp(dir, "Require") && all_granted(p, d)))
                return described(p, d,
                                 "access control may apply to GET; a "
                                 "\"Require all granted\" in the <Location> "
                                 "overrides it");
        }
        else if (d->first_child && dir[0] == '<') {
            return described(p, d, NULL);
        }
        else if ((why = directive_problem(p, d, path, 1))) {
            return why;
        }
    }
    return NULL;
}

/* The server's own level: the top of the files, less other virtual hosts
 * (main: vhost NULL), or one <VirtualHost>'s contents. */
static const char *server_problem(apr_pool_t *p, const ap_directive_t *d,
                                  const char *path, int granted)
{
    const char *why;

    for (; d; d = d->next) {
        const char *dir = d->directive;

        if (!strncasecmp(dir, "<Location", 9)
            || !strcasecmp(dir, "<VirtualHost")
            || !strncasecmp(dir, "<Proxy", 6)) {
            continue; /* sections of their own, or of other servers */
        }
        if (!strncasecmp(dir, "<Directory", 10)
            || !strncasecmp(dir, "<Files", 6)) {
            why = dir_problem(p, d->first_child, path, 1, granted);
            if (why)
                return apr_pstrcat(p, "in ", described(p, d, NULL), ": ", why,
                                   NULL);
        }
        else if (!strcasecmp(dir, "<If") || !strcasecmp(dir, "<ElseIf")
                 || !strcasecmp(dir, "<Else")) {
            return described(p, d, "merged after every <Location>");
        }
        else if (d->first_child && dir[0] == '<') {
            if ((why = server_problem(p, d->first_child, path, granted)))
                return why;
        }
        else if ((why = directive_problem(p, d, path, 0))) {
            return why;
        }
    }
    return NULL;
}

/* The <VirtualHost> node of server s; NULL for the main server. */
static const ap_directive_t *vhost_node(const ap_directive_t *d,
                                        const server_rec *s)
{
    const ap_directive_t *found;

    if (!s->is_virtual)
        return NULL;
    for (; d; d = d->next) {
        if (!strcasecmp(d->directive, "<VirtualHost") && s->defn_name
            && d->filename && s->defn_line_number == (unsigned)d->line_num
            && !strcmp(s->defn_name, d->filename))
            return d;
        if (d->first_child && (found = vhost_node(d->first_child, s)))
            return found;
    }
    return NULL;
}

/* Whether a section applies to server s: its own, or the main server's
 * (which every virtual host inherits). */
static int of_server(const mod_datos_section_t *sec, const server_rec *s)
{
    return !sec->vhost || sec->s == s;
}

static const char *quick_problem(apr_pool_t *p,
                                 const apr_array_header_t *sections,
                                 const mod_datos_section_t *h, server_rec *s,
                                 const ap_directive_t *vhost)
{
    const char *why;
    int granted = 0, i;

    if (!h->path || h->wildcard)
        return "the quick path serves exact paths only, not patterns";
    if ((why = location_problem(p, h->d->first_child, 1, &granted)))
        return why;
    /* Every other <Location> that httpd merges for the path. */
    for (i = 0; i < sections->nelts; i++) {
        const mod_datos_section_t *o =
            &APR_ARRAY_IDX(sections, i, mod_datos_section_t);

        if (o == h || !of_server(o, s)
            || !mod_datos_section_matches(o, h->path))
            continue;
        if (!o->path && !o->re)
            continue; /* matches nothing */
        if ((why = location_problem(p, o->d->first_child, 1, &granted)))
            return apr_pstrcat(p, "in ", described(p, o->d, NULL),
                               ", which also applies: ", why, NULL);
    }
    if ((why = server_problem(p, ap_conftree, h->path, granted)))
        return why;
    if (vhost
        && (why = server_problem(p, vhost->first_child, h->path, granted)))
        return why;
    return NULL;
}

apr_array_header_t *mod_datos_quick_paths(apr_pool_t *p,
                                          const apr_array_header_t *sections,
                                          server_rec *s)
{
    apr_array_header_t *out = apr_array_make(p, 2, sizeof(mod_datos_quick_t));
    const ap_directive_t *vhost = vhost_node(ap_conftree, s);
    int i;

    for (i = 0; i < sections->nelts; i++) {
        const mod_datos_section_t *h =
            &APR_ARRAY_IDX(sections, i, mod_datos_section_t);
        mod_datos_quick_t *q;

        if (!of_server(h, s) || !mod_datos_section_sets(h, "datos"))
            continue;
        q = apr_array_push(out);
        q->sec = h;
        q->refused = quick_problem(p, sections, h, s, vhost);
    }
    return out;
}
