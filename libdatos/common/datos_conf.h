/* datos_conf.h - parsers for setting values shared by the directives of
 * mod_datos and the loader's config file. Each returns NULL on success or a
 * message (allocated in p) saying what is wrong and what is accepted. */
#ifndef DATOS_CONF_H
#define DATOS_CONF_H

#include <apr_pools.h>
#include <apr_time.h>

/* "250ms", "5s", "2m", "1h", "7d"; a bare number is in default_unit. The
 * result must lie in [min, max]. */
const char *datos_conf_duration(apr_pool_t *p, const char *text,
                                apr_interval_time_t default_unit,
                                apr_interval_time_t min,
                                apr_interval_time_t max,
                                apr_interval_time_t *out);

/* "1048576", "512K"/"512KiB", "1M"/"1MiB", "10G"/"10GiB", "1T"/"1TiB"
 * (all powers of 1024, "MB" included, as BigQuery counts billed bytes), within
 * [min, max]. */
const char *datos_conf_size(apr_pool_t *p, const char *text, apr_int64_t min,
                            apr_int64_t max, apr_int64_t *out);

/* A decimal integer within [min, max]. */
const char *datos_conf_int(apr_pool_t *p, const char *text, apr_int64_t min,
                           apr_int64_t max, apr_int64_t *out);

/* "on"/"off", "true"/"false", "yes"/"no", "1"/"0" (any case). */
const char *datos_conf_flag(apr_pool_t *p, const char *text, int *out);

#endif
