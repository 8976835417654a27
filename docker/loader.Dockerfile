# datos-loader (Debian bookworm): one run drains the Pub/Sub subscription into BigQuery and
# exits (0 done, 1 some work failed and will be retried, 2 configuration or credentials).
#
#   docker build -f docker/loader.Dockerfile -t datos-loader .      (from the repository root)
#   docker run --rm -v datos-loader-state:/var/lib/datos-loader \
#     -e GOOGLE_CLOUD_PROJECT=my-project datos-loader
#
# Run it from ONE scheduler per subscription (a Cloud Run job on Cloud Scheduler, a Kubernetes
# CronJob with concurrencyPolicy: Forbid, or cron on one host), every few minutes: BigQuery's
# 1,500 load jobs per table per day are shared by every runner.
#
# !!! The journal (state_dir, /var/lib/datos-loader) MUST live on a volume that persists
# !!! across runs: a named volume, a persistent disk, a Filestore (NFS) volume on Cloud Run.
# !!! With an ephemeral one, a run killed between a load job's commit and its acks leaves no
# !!! trace, and the next run loads those messages a second time: the no-duplicate guarantee
# !!! is gone. Give each subscription its own volume, and one runner at a time (its lock file
# !!! lives there too).
#
# Configuration: /etc/datos/loader.conf (docker/loader/loader.conf; mount another over it),
# overridden by GOOGLE_CLOUD_PROJECT, GOOGLE_APPLICATION_CREDENTIALS (a key file owned by uid
# 10001 with mode 0600; on Google Cloud prefer the metadata server's service account),
# PUBSUB_EMULATOR_HOST and BIGQUERY_EMULATOR_HOST; arguments after the image name are added
# (--max-messages N, --max-seconds S, --dry-run, --redrive). Logs: JSON lines on stderr.
#
# Stopping: SIGTERM makes the loader stop pulling, finish or give back the batch in flight and
# exit; allow it the time a load job takes (docker stop -t 120, terminationGracePeriodSeconds).

# ---------------------------------------------------------------- build
# The same stage as httpd.Dockerfile's, so a builder reuses it for both images.
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
      libapr1 libaprutil1 libcurl4 libjansson4 libssl3 zlib1g ca-certificates \
 && apt-get clean && rm -rf /var/lib/apt/lists/*

# A user of its own (fixed ids, so volume ownership and key files stay valid across images).
RUN groupadd --system --gid 10001 datos \
 && useradd --system --uid 10001 --gid datos --home-dir /var/lib/datos-loader \
      --no-create-home --shell /usr/sbin/nologin datos \
 && install -d -o datos -g datos -m 0700 /var/lib/datos-loader

COPY --from=build /out/usr/local/bin/datos-loader /usr/local/bin/datos-loader
COPY docker/loader/loader.conf /etc/datos/loader.conf

# The journal: see the warning at the top. Must match state_dir in /etc/datos/loader.conf.
VOLUME ["/var/lib/datos-loader"]
USER 10001:10001
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/datos-loader", "--config", "/etc/datos/loader.conf"]
CMD []
