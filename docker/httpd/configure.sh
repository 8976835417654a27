#!/bin/sh
# Turns Debian's stock /etc/apache2 (or $APACHE_CONFDIR) into the
# container's configuration, the Debian way. The files it enables
# (mods-available/datos.*, conf-available/datos-container.conf, ports.conf)
# are put in place by the Dockerfile first.
set -eu

# mod_datos (a2enmod follows datos.load's "Depends: socache_shmcb"), and
# the socache providers a fleet-wide DatosCache (memcache:, redis:) needs.
a2enmod -q datos socache_memcache socache_redis
a2enconf -q datos-container
# security.conf would put back ServerTokens OS / ServerSignature On (it
# sorts after datos-container); the other two write to log files or
# serve CGI, neither of which the container has.
a2disconf -q security other-vhosts-access-log serve-cgi-bin
# The default site is a <VirtualHost *:80> with file logs; requests on
# ${PORT} are served by the main server configuration instead.
a2dissite -q 000-default
