#!/usr/bin/python3
"""`make run`: the whole system on this machine, against the GCP emulator.

Starts the emulator (state kept in .run/emulator, so a restart keeps the
data: rows, jobs, topics, subscriptions and their messages), creates
latam_dataset.datos and the Pub/Sub topic, subscription and dead-letter
topic through its REST API the first time, inserts sample rows, starts the real httpd with mod_datos on 127.0.0.1:8080
(DATOS_PORT overrides; EMULATOR_PORT picks the emulator's port, default
9050), publishes a mix of valid and invalid sample messages to the topic,
runs datos-loader every LOADER_EVERY seconds (default 5) as a scheduler
would, prints what to try, and stops everything on Ctrl-C.
"""
import subprocess
import os
import signal
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, "emulator")]

from gcpemu.client import Emulator  # noqa: E402
from gcpemu.demo import (DATASET, DLQ, LOCATION, SUBSCRIPTION, TABLE, TOPIC,  # noqa: E402
                         create_pubsub, create_resources, publish_samples, rfc3339, seed)
from tools.httpd import Httpd, REPO_ROOT  # noqa: E402

RUN_DIR = os.path.join(REPO_ROOT, ".run")
LOADER_CONF = """project = {project}
credentials = none
state_dir = {state}
metrics_file = {state}/datos_loader.prom
batch_max_age = 2s
max_seconds = 30s
"""

# make run's demo token for POST /datos (a real deployment keeps its own secret).
INGEST_TOKEN = "local-demo-token"

CONF = """
DatosProject {project}
DatosTable {dataset}.{table}
DatosCredentials none
DatosBigQueryURL {emulator}/bigquery/v2
DatosTimeout 5s
DatosFreshFor 5s
DatosStateDir "${{root}}/state"
DatosIngest On
DatosPubSubURL {emulator}
DatosTopic {topic}

<Location "/datos">
  SetHandler datos
  # POST needs the local demo token; reads stay public
  <LimitExcept GET HEAD OPTIONS>
    Require expr "%{{HTTP:Authorization}} == 'Bearer {token}'"
  </LimitExcept>
</Location>
<Location "/health">
  SetHandler datos-health
</Location>
<Location "/metrics">
  SetHandler datos-metrics
  Require local
</Location>
<Location "/datos-status">
  SetHandler datos-status
  Require local
</Location>
DatosLoaderMetricsFile "{loader_state}/datos_loader.prom"
DatosLoaderInterval {loader_every}s
"""


class Scheduler:
    """Runs datos-loader every `every` seconds, as cron or a systemd timer would."""

    def __init__(self, emu, every):
        self.emu = emu
        self.every = every
        self.state = os.path.join(RUN_DIR, "loader")
        os.makedirs(self.state, exist_ok=True)
        self.conf = os.path.join(self.state, "loader.conf")
        with open(self.conf, "w") as f:
            f.write(LOADER_CONF.format(project=emu.project, state=self.state))
        self.log = open(os.path.join(self.state, "loader.log"), "a")
        self.proc = None
        self.next = time.time()

    def tick(self):
        if self.proc is not None and self.proc.poll() is None:
            return
        if time.time() < self.next:
            return
        self.next = time.time() + self.every
        host = self.emu.base_url.split("://")[1]
        env = {"PATH": "/usr/bin:/bin", "PUBSUB_EMULATOR_HOST": host,
               "BIGQUERY_EMULATOR_HOST": self.emu.base_url}
        self.proc = subprocess.Popen(
            [os.path.join(REPO_ROOT, "build", "datos-loader"), "--config", self.conf],
            env=env, stdout=subprocess.DEVNULL, stderr=self.log)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        self.log.close()


def main():
    os.makedirs(RUN_DIR, exist_ok=True)
    port = int(os.environ.get("DATOS_PORT", "8080"))
    emu_port = int(os.environ.get("EMULATOR_PORT", "9050"))
    emu = Emulator(os.path.join(RUN_DIR, "emulator"), port=emu_port,
                   extra_args=("--data-dir", os.path.join(RUN_DIR, "emulator", "data")))
    httpd = Httpd("run", root=os.path.join(RUN_DIR, "httpd"), port=port, loglevel="info")
    stopping = []
    scheduler = None

    def stop(*_):
        stopping.append(True)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        emu.start()
        if create_resources(emu):
            print("created %s.%s in %s with %d sample rows" % (DATASET, TABLE, LOCATION, seed(emu)))
        else:
            print("using %s.%s kept from an earlier run (.run/emulator/data)" % (DATASET, TABLE))
        create_pubsub(emu)
        valid, invalid = publish_samples(emu)
        print("published %d valid and %d invalid sample messages to %s" % (valid, invalid, TOPIC))
        every = float(os.environ.get("LOADER_EVERY", "5"))
        scheduler = Scheduler(emu, every)
        httpd.write_config(CONF.format(project=emu.project, dataset=DATASET, table=TABLE,
                                       emulator=emu.base_url, topic=TOPIC,
                                       token=INGEST_TOKEN, loader_state=scheduler.state,
                                       loader_every=max(1, int(every))))
        httpd.start()
        base = httpd.base_url
        print("""
datos is running:
  emulator   %(emu)s   (BIGQUERY_EMULATOR_HOST=%(emu)s, GCE_METADATA_HOST=%(emuhost)s,
                                  PUBSUB_EMULATOR_HOST=%(emuhost)s)
  Pub/Sub    topic %(topic)s -> subscription %(sub)s, dead letters on %(dlq)s
  httpd      %(base)s   (config: .run/httpd/conf, logs: .run/httpd/logs/error.log)
  loader     every %(every)gs (config: .run/loader/loader.conf, log: .run/loader/loader.log)

Try:
  curl -s %(base)s/health
  curl -s %(base)s/datos
  curl -s '%(base)s/datos?limit=3'
  curl -si '%(base)s/datos?limit=0'
  curl -s %(emu)s/_emulator/counters
  open %(base)s/datos-status in a browser (or curl -s '%(base)s/datos-status?json')

Add rows through the emulator's BigQuery API, then ask /datos again:
  curl -s -X POST %(emu)s/bigquery/v2/projects/%(project)s/datasets/%(ds)s/tables/%(tb)s/insertAll \\
    -H 'Content-Type: application/json' \\
    -d '{"rows":[{"json":{"id":"900","contenido":"hola","timestamp":"%(ts)s"}}]}'

POST a record (or an array of them) to /datos: checked by the loader's rules, then published:
  curl -s -X POST %(base)s/datos -H 'Authorization: Bearer %(token)s' \
    -H 'Content-Type: application/json' \
    -d '{"id":"902","contenido":"desde POST","timestamp":"%(ts)s"}'
  curl -s -X POST %(base)s/datos -H 'Authorization: Bearer %(token)s' \
    -H 'Content-Type: application/json' -d '{"id":"903"}'

Or publish to the topic directly (data is base64), then look at the subscription's backlog:
  curl -s -X POST %(emu)s/v1/projects/%(project)s/topics/%(topic)s:publish \\
    -H 'Content-Type: application/json' \\
    -d '{"messages":[{"data":"'$(printf '{"id":"901","timestamp":"%(ts)s"}' | base64 -w0)'"}]}'
  curl -s %(emu)s/_emulator/pubsub/projects/%(project)s/subscriptions/%(sub)s

The loader moves it into the table within %(every)gs, and /datos shows it once its
cached answer is older than DatosFreshFor (5 s here). What it rejected, with why:
  curl -s -X POST %(emu)s/v1/projects/%(project)s/subscriptions/%(dlq)s-subscription:pull \
    -H 'Content-Type: application/json' -d '{"maxMessages":10}'
  curl -s %(base)s/metrics

Ctrl-C stops everything.""" % {
            "emu": emu.base_url, "emuhost": emu.base_url.split("://")[1], "base": base,
            "project": emu.project, "ds": DATASET, "tb": TABLE, "ts": rfc3339(time.time()),
            "topic": TOPIC, "sub": SUBSCRIPTION, "dlq": DLQ, "every": every,
            "token": INGEST_TOKEN})
        sys.stdout.flush()
        while not stopping:
            time.sleep(0.2)
            scheduler.tick()
            if not httpd.is_running():
                print("httpd stopped unexpectedly; see .run/httpd/logs/error.log")
                return 1
    finally:
        print("\nstopping...")
        try:
            if scheduler is not None:
                scheduler.stop()
            httpd.stop()
        finally:
            emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
