/* datos_version.h - the version string sent as User-Agent and reported by
 * mod_datos and the loader. */
#ifndef DATOS_VERSION_H
#define DATOS_VERSION_H

#define DATOS_VERSION "0.1.0"

#endif
