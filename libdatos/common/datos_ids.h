/* datos_ids.h - Google resource identifiers checked at configuration time. */
#ifndef DATOS_IDS_H
#define DATOS_IDS_H

#include <apr_pools.h>

/* A Google Cloud project id: ^[a-z][a-z0-9-]{4,28}[a-z0-9]$.
 * Returns NULL when valid, else a message in p. */
const char *datos_project_id_check(apr_pool_t *p, const char *id);

/* A BigQuery location: "US", "EU" or a region such as
 * "southamerica-east1" (letters, digits and '-', 2..64 bytes). */
const char *datos_location_check(apr_pool_t *p, const char *location);

#endif
