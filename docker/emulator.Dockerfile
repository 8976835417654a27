# The project's GCP emulator (emulator/: BigQuery, Pub/Sub, OAuth2, metadata; Python
# standard library only) for docker/compose.yaml's local stack. Development only: it accepts
# any request, so publish its port on 127.0.0.1 only. Also runs docker/dev/setup.py, which
# creates the table, topics and sample data through its REST API.
#
#   docker build -f docker/emulator.Dockerfile -t datos-emulator .      (from the repository root)
FROM debian:bookworm-slim
# openssl: the emulator makes its service-account key with `openssl genpkey` at start.
# apt-get clean: a base without Docker's apt hook (a debootstrap minbase) keeps the .deb files.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 openssl \
 && apt-get clean && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10002 emulator \
 && useradd --system --uid 10002 --gid emulator --no-create-home --shell /usr/sbin/nologin emulator \
 && install -d -o emulator -g emulator -m 0755 /var/lib/datos-emulator

WORKDIR /opt/datos
COPY emulator/ emulator/
COPY docker/dev/setup.py docker/dev/setup.py

# Datasets, tables, rows, jobs, topics, subscriptions and messages survive a restart here.
VOLUME ["/var/lib/datos-emulator"]
USER 10002:10002
EXPOSE 9050
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=10 \
  CMD ["python3", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:9050/_emulator/health', timeout=2).status != 200)"]
CMD ["python3", "emulator/server.py", "--host", "0.0.0.0", "--port", "9050", \
     "--data-dir", "/var/lib/datos-emulator"]
