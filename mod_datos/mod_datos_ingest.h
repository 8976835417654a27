/* mod_datos_ingest.h - POST /datos: records checked and published to
 * Pub/Sub, with the Pub/Sub clients each runtime keeps for it. */
#ifndef MOD_DATOS_INGEST_H
#define MOD_DATOS_INGEST_H

#include "httpd.h"

#include "mod_datos_config.h"

/* post_config, after the runtimes: the Pub/Sub side of each runtime whose
 * configuration has DatosIngest On; child_init: its connections. Errors
 * are logged here; a non-OK return stops httpd. */
int mod_datos_ingest_post_config(apr_pool_t *pconf);
void mod_datos_ingest_child_init(apr_pool_t *pchild);

/* POST /datos. */
int mod_datos_ingest(request_rec *r, mod_datos_conf_t *conf);

/* check_config: warns (so `apache2 -t` shows it) about every section that
 * hands requests to the datos handler on a server with DatosIngest On
 * while nothing in httpd's own access control restricts POST there. */
void mod_datos_ingest_check_access(apr_pool_t *ptemp, server_rec *s);

#endif
