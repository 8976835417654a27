/* mod_datos_handler.h - the handler hook: GET /datos, /health and
 * /metrics here, POST /datos handed to mod_datos_ingest.c; and the quick
 * handler, which serves /datos cache hits before httpd's walks. */
#ifndef MOD_DATOS_HANDLER_H
#define MOD_DATOS_HANDLER_H

#include "httpd.h"

/* Answers the handlers datos, datos-health, datos-metrics and
 * datos-status (SetHandler);
 * DECLINED for any other. */
int mod_datos_handler(request_rec *r);

/* The quick_handler hook: a GET or HEAD of a path the quick path may
 * serve (docs/apache.md), answered when the cache can answer it at once;
 * DECLINED otherwise, for the handler. */
int mod_datos_quick_handler(request_rec *r, int lookup);

/* post_config: each server's quick paths (DatosQuickHandler On), from the
 * configuration's sections, each logged with why it is one or not. */
void mod_datos_handler_post_config(apr_pool_t *pconf, server_rec *s);

#endif
