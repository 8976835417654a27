# Apache httpd 2.4 (Debian bookworm) with mod_datos: GET /datos, /health, /metrics.
#
#   docker build -f docker/httpd.Dockerfile -t datos-httpd .      (from the repository root)
#   docker run -p 8080:8080 -e DATOS_PROJECT=my-project datos-httpd
#
# Configuration: environment variables, read by /etc/apache2/conf-enabled/datos-container.conf
# through Apache's ${VAR} and <IfDefine VAR> (the entry point passes -D VAR for every DATOS_*
# variable that is set and not empty). Unset means the module's default (docs/design.md 4).
#   PORT                      port httpd listens on [8080]; a number, the HEALTHCHECK uses it
#   DATOS_PROJECT             DatosProject [the credentials' project]
#   DATOS_TABLE               DatosTable [latam_dataset.datos]
#   DATOS_LOCATION            DatosLocation [the dataset's]
#   DATOS_CREDENTIALS         DatosCredentials: a key file, "metadata" or "none" [ADC:
#                             GOOGLE_APPLICATION_CREDENTIALS, then the metadata server]. A key
#                             file is a secret mounted e.g. at /run/secrets/datos-key.json; it
#                             must be owned by uid 33 (www-data, the user httpd runs as) with
#                             mode 0600, or mod_datos refuses it. On Cloud Run and GKE prefer
#                             "metadata" (the service account of the service / Workload Identity).
#   DATOS_BIGQUERY_URL, DATOS_PUBSUB_URL, DATOS_ALLOW_INSECURE_HTTP (On|Off), DATOS_CA_FILE
#                             the API roots (an emulator, a proxy) [Google's]
#   DATOS_CACHE               DatosCache: shmcb, memcache:host:port, redis:host:port, none [shmcb]
#   DATOS_CACHE_SECRET_FILE   DatosCacheSecretFile: the fleet's secret (required with memcache:
#                             and redis:), a secret mounted e.g. at /run/secrets/datos-cache.secret,
#                             owned by uid 33 with mode 0600, the same on every container
#   DATOS_CACHE_SECRET        the fleet's secret itself, instead of a file: for platforms whose
#                             secret files belong to root (Cloud Run's second generation), which
#                             uid 33 could not read under that rule. The entry point writes it to
#                             /var/run/apache2/datos-cache.secret (uid 33, mode 0600), sets
#                             DATOS_CACHE_SECRET_FILE, and starts apache2 without the variable
#   DATOS_QUICK_HANDLER       DatosQuickHandler: On or Off [On]
#   DATOS_KEEPALIVE_LINGER    DatosKeepAliveLinger: 0 to 1s [2ms]
#   DATOS_FRESH_FOR, DATOS_STALE_IF_ERROR, DATOS_TIMEOUT, DATOS_MAX_BYTES_BILLED, DATOS_STATE_DIR
#                             the directives of the same names
#   DATOS_INGEST              any value: POST /datos on (datos.conf's <IfDefine DATOS_INGEST>);
#                             then mount the htpasswd file at /etc/apache2/datos-ingest.htpasswd
#   DATOS_TOPIC               DatosTopic [datos-topic]
# Anything else: mount a .conf file into /etc/apache2/conf-enabled/. Arguments after the image
# name go to apache2 (e.g. -DDATOS_INGEST, -e debug).
#
# Users and ports: httpd runs as www-data (uid 33) from the start and listens on 8080, instead
# of starting as root to bind 80 and dropping privileges. Nothing in the container runs as
# root, it satisfies Kubernetes' runAsNonRoot (USER is numeric) and Cloud Run's PORT; the cost
# is a port above 1024 (map it: -p 80:8080) and that a key file must belong to www-data.
#
# Stopping: apache2 is PID 1 (the entry point execs it; apache2ctl would keep a shell in front
# that forwards no signals). STOPSIGNAL is SIGWINCH, httpd's graceful stop: requests in flight
# finish, for at most GracefulShutdownTimeout (8 s, under Docker's and Cloud Run's 10 s before
# SIGKILL). SIGTERM (what Kubernetes and Cloud Run send) stops at once, cutting requests in
# flight. Because SIGWINCH is also "the terminal was resized", do not run this image with a
# TTY (docker run -t, compose tty: true): resizing the terminal would stop the server.
#
# Health: /health answers 200 {"status":"ok"} without touching Google (liveness); HEALTHCHECK
# asks it with curl, which costs only its small binary here since mod_datos already needs
# libcurl. Readiness is /health?ready (503 {"status":"warming"} until the container has an
# answer to serve, then 200 {"status":"ready"}); /health?deep=1 reports the cache's state.
# Logs: errors on stderr, access on stdout.

# ---------------------------------------------------------------- build
# The same stage as loader.Dockerfile's, so a builder reuses it for both images.
FROM debian:bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential pkg-config apache2-dev libapr1-dev libaprutil1-dev \
      libcurl4-openssl-dev libjansson-dev libssl-dev zlib1g-dev \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY libdatos/ libdatos/
COPY mod_datos/ mod_datos/
COPY loader/ loader/
COPY conf/ conf/
COPY man/ man/
RUN make -j"$(nproc)" all \
 && make install DESTDIR=/out PREFIX=/usr/local

# ---------------------------------------------------------------- runtime
FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      apache2 libcurl4 libjansson4 libssl3 zlib1g ca-certificates curl \
 && apt-get clean && rm -rf /var/lib/apt/lists/*

COPY --from=build /out/usr/lib/apache2/modules/mod_datos.so /usr/lib/apache2/modules/mod_datos.so
COPY --from=build /out/etc/apache2/mods-available/datos.load /out/etc/apache2/mods-available/datos.conf /etc/apache2/mods-available/
COPY docker/httpd/ports.conf /etc/apache2/ports.conf
COPY docker/httpd/datos-container.conf /etc/apache2/conf-available/datos-container.conf
COPY docker/httpd/configure.sh /usr/local/lib/datos/configure-apache.sh
COPY docker/httpd/entrypoint.sh /usr/local/bin/datos-httpd

# Every directory httpd writes to belongs to www-data, since it never runs as root.
RUN /usr/local/lib/datos/configure-apache.sh \
 && install -d -o www-data -g www-data -m 0755 /var/run/apache2 /var/lock/apache2 \
      /var/log/apache2 /var/cache/apache2/mod_datos

ENV PORT=8080
EXPOSE 8080
USER 33:33
STOPSIGNAL SIGWINCH
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD curl -fsS -o /dev/null "http://127.0.0.1:${PORT}/health" || exit 1
ENTRYPOINT ["/usr/local/bin/datos-httpd"]
CMD []
