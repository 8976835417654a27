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

# DATOS_CACHE_SECRET: the fleet's secret itself (Cloud Run's secret
# variables, Kubernetes' secretKeyRef), for platforms whose secret files
# belong to root, which this image's user could not read under the rule
# mod_datos applies to a key file (owned by the user reading it, no group
# or other bits). It is written to a file of this user, mode 0600, for
# DatosCacheSecretFile, and leaves the environment before apache2 starts.
if [ -n "${DATOS_CACHE_SECRET:-}" ]; then
    if [ -n "${DATOS_CACHE_SECRET_FILE:-}" ]; then
        echo "datos-httpd: give DATOS_CACHE_SECRET or DATOS_CACHE_SECRET_FILE, not both" >&2
        exit 2
    fi
    DATOS_CACHE_SECRET_FILE="${APACHE_RUN_DIR:-/var/run/apache2}/datos-cache.secret"
    rm -f "$DATOS_CACHE_SECRET_FILE"
    (umask 077 && printf '%s' "$DATOS_CACHE_SECRET" >"$DATOS_CACHE_SECRET_FILE")
    export DATOS_CACHE_SECRET_FILE
fi
unset DATOS_CACHE_SECRET

for name in $(env | sed -n 's/^\(DATOS_[A-Z0-9_]*\)=..*$/\1/p'); do
    set -- "$@" -D "$name"
done

exec /usr/sbin/apache2 -d "$APACHE_CONFDIR" -DFOREGROUND "$@"
