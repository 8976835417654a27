/* mod_datos_linger.h - the worker that answered /datos waits a moment for
 * the kept-alive connection's next request (DatosKeepAliveLinger). */
#ifndef MOD_DATOS_LINGER_H
#define MOD_DATOS_LINGER_H

#include "httpd.h"

/* register_hooks: the connection input filter; child_init: what the MPM
 * allows (whether it is async, half its threads). */
void mod_datos_linger_register_hooks(apr_pool_t *p);
void mod_datos_linger_child_init(apr_pool_t *pchild);
/* After the answer r sends, its connection's next check for a request
 * waits up to wait for one (nothing when wait <= 0, or the MPM keeps its
 * worker on the connection anyway). */
void mod_datos_linger_arm(request_rec *r, apr_interval_time_t wait);

#endif
