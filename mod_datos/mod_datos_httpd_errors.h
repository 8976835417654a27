/* mod_datos_httpd_errors.h - JSON for the errors httpd itself answers on
 * the module's paths, and TRACE refused there. */
#ifndef MOD_DATOS_HTTPD_ERRORS_H
#define MOD_DATOS_HTTPD_ERRORS_H

#include "httpd.h"

/* register_hooks: the output filter and the hooks; post_config: the
 * paths that map to the module's handlers, learnt from the
 * configuration. */
void mod_datos_httpd_errors_register_hooks(apr_pool_t *p);
void mod_datos_httpd_errors_post_config(apr_pool_t *pconf, server_rec *s);

#endif
