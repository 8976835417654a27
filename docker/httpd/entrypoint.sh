#!/bin/sh
# Entry point of the httpd+mod_datos image: Debian's environment, then
# apache2 itself as PID 1.
#
# apache2ctl is not used because it runs apache2 as a child of a shell
# that forwards no signals: `docker stop` would wait out its timeout and
# SIGKILL the server. With exec, the signals reach httpd directly:
#   SIGWINCH  graceful stop (the image's STOPSIGNAL): in-flight requests
#             finish, bounded by GracefulShutdownTimeout
#   SIGTERM   immediate stop (what Cloud Run and Kubernetes send)
#   SIGUSR1   graceful restart (re-reads the configuration)
#
# Every DATOS_* variable that is set and not empty is also passed as
# `-D NAME`, so the configuration can test it with <IfDefine NAME> and
# read its value as ${NAME} (Apache reads both from the environment).
set -e

# Debian's way (as apache2ctl does): APACHE_CONFDIR picks the tree, its
# envvars sets APACHE_RUN_USER, APACHE_RUN_DIR... that apache2.conf reads.
# envvars reads variables that may be unset, so it comes before set -u.
APACHE_CONFDIR=${APACHE_CONFDIR:-/etc/apache2}
export APACHE_CONFDIR
. "$APACHE_CONFDIR/envvars"
set -u

for name in $(env | sed -n 's/^\(DATOS_[A-Z0-9_]*\)=..*$/\1/p'); do
    set -- "$@" -D "$name"
done

exec /usr/sbin/apache2 -d "$APACHE_CONFDIR" -DFOREGROUND "$@"
