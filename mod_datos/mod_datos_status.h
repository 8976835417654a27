/* mod_datos_status.h - GET /datos-status (SetHandler datos-status): what
 * the module is doing, as a page for a person or JSON (?json) for
 * scripts. */
#ifndef MOD_DATOS_STATUS_H
#define MOD_DATOS_STATUS_H

#include "httpd.h"

/* Answers a GET or HEAD of the status page from what the host keeps in
 * memory and the loader's textfile; never asks Google. Returns OK. */
int mod_datos_status(request_rec *r);

#endif
