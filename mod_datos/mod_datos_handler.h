/* mod_datos_handler.h - the handler hook: GET /datos, /health and
 * /metrics here, POST /datos handed to mod_datos_ingest.c. */
#ifndef MOD_DATOS_HANDLER_H
#define MOD_DATOS_HANDLER_H

#include "httpd.h"

/* Answers the handlers datos, datos-health and datos-metrics (SetHandler);
 * DECLINED for any other. */
int mod_datos_handler(request_rec *r);

#endif
