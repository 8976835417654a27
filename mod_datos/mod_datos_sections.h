/* mod_datos_sections.h - the <Location> and <LocationMatch> sections of
 * httpd's configuration tree, read once and kept as they are written, for
 * whatever a caller needs to know about the URL paths the module serves:
 * which handlers they set, which server they belong to, whether access
 * control applies, and which request paths they match. */
#ifndef MOD_DATOS_SECTIONS_H
#define MOD_DATOS_SECTIONS_H

#include "httpd.h"
#include "http_config.h"
#include "ap_regex.h"
#include "util_cfgtree.h"

typedef struct mod_datos_section_t {
    const ap_directive_t *d;     /* the section itself: file, line, content */
    const ap_directive_t *vhost; /* its <VirtualHost>; NULL: the main server */
    /* The server it applies to; NULL: a <VirtualHost> httpd did not make. */
    server_rec *s;
    const char *path; /* <Location path>, maybe a wildcard; NULL: a pattern */
    int wildcard;     /* path holds * ? or [ (fnmatch) */
    /* <LocationMatch> / <Location ~>; NULL when it does not compile. */
    ap_regex_t *re;
    /* const char *: the handler of every SetHandler in it, conditional
     * sections included. */
    apr_array_header_t *handlers;
} mod_datos_section_t;

/* Every <Location> and <LocationMatch> of the configuration s heads, in
 * the order of the files, allocated (regular expressions included) in p. */
apr_array_header_t *mod_datos_sections(apr_pool_t *p, server_rec *s);

/* Whether the section hands requests to handler (any of its SetHandler). */
int mod_datos_section_sets(const mod_datos_section_t *sec, const char *handler);

/* Whether a request for path falls in the section, as httpd matches it: a
 * plain path matches itself and what lies below it; a wildcard or a
 * pattern matches the whole path. */
int mod_datos_section_matches(const mod_datos_section_t *sec, const char *path);

/* Whether section o applies to the path section h is written for: the
 * same section, or one of the same server (or of the main server) that
 * matches h's plain path. */
int mod_datos_section_covers(const mod_datos_section_t *o,
                             const mod_datos_section_t *h);

/* Whether the section's access control restricts a request with this
 * method: a Require other than "all granted", or mod_access_compat's Deny,
 * that applies to it (not inside a <Limit> without the method, nor a
 * <LimitExcept> with it). */
int mod_datos_section_restricts(apr_pool_t *p, const mod_datos_section_t *sec,
                                const char *method);

/* The quick path's eligibility (docs/apache.md, "The quick path"): for
 * server s, each section that hands requests to the datos handler, and
 * why the quick handler may not serve its path (NULL: it may). sections
 * is mod_datos_sections()'s array. */
typedef struct mod_datos_quick_t {
    const mod_datos_section_t *sec;
    const char *refused; /* NULL: eligible, for sec->path */
} mod_datos_quick_t;

apr_array_header_t *mod_datos_quick_paths(apr_pool_t *p,
                                          const apr_array_header_t *sections,
                                          server_rec *s);

#endif
