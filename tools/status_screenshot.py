#!/usr/bin/python3
"""`make docs`: docs/status-page.png, GET /datos-status as a browser shows it.

Runs the real parts on this machine: the emulator with make run's demo data,
one datos-loader run (its textfile is the page's loader section), and httpd
with mod_datos serving /datos-status. The answer is refreshed once, then
BigQuery is made to fail, so the picture shows the attention section, a
fetch history with both outcomes and the loader's last run. Headless
Chromium (Debian's chromium) takes the screenshot. Everything is stopped at
the end; nothing is left running.

Usage: tools/status_screenshot.py [output.png]
"""
import os
import shutil
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, "emulator")]

from gcpemu.client import Emulator  # noqa: E402
from gcpemu.demo import (DATASET, TABLE, create_pubsub, create_resources,  # noqa: E402
                         publish_samples, seed)
from tools.httpd import Httpd, REPO_ROOT  # noqa: E402

# Outside the checkout, so the picture shows a path any reader could have
# rather than where this tree happens to be.
WORK = "/tmp/datos-docs-status"
LOADER_CONF = """project = {project}
credentials = none
state_dir = {state}
metrics_file = {state}/datos_loader.prom
batch_max_age = 1s
max_seconds = 30s
"""
CONF = """
DatosProject {project}
DatosTable {dataset}.{table}
DatosCredentials none
DatosBigQueryURL {emulator}/bigquery/v2
DatosTimeout 5s
DatosFreshFor 1s
DatosStaleWhileRevalidate 10m
DatosStateDir none
DatosLoaderMetricsFile "{loader_file}"
<Location "/datos">
  SetHandler datos
</Location>
<Location "/health">
  SetHandler datos-health
</Location>
<Location "/datos-status">
  SetHandler datos-status
  Require local
</Location>
"""


def wait_for(predicate, timeout=60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    raise SystemExit("status_screenshot: gave up waiting")


def get(url):
    import urllib.request
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read()
    except Exception as e:  # an HTTP error status is an answer too
        return getattr(e, "code", 0), b""


def run_loader(emu, state):
    os.makedirs(state, exist_ok=True)
    conf = os.path.join(state, "loader.conf")
    with open(conf, "w") as f:
        f.write(LOADER_CONF.format(project=emu.project, state=state))
    host = emu.base_url.split("://")[1]
    env = {"PATH": "/usr/bin:/bin", "PUBSUB_EMULATOR_HOST": host,
           "BIGQUERY_EMULATOR_HOST": emu.base_url}
    subprocess.run([os.path.join(REPO_ROOT, "build", "datos-loader"), "--config", conf],
                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120,
                   check=False)
    return os.path.join(state, "datos_loader.prom")


def screenshot(url, out, home):
    os.makedirs(home, exist_ok=True)
    env = dict(os.environ, HOME=home)
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)
    # --no-sandbox: Chromium's sandbox will not start as root.
    subprocess.run([shutil.which("chromium") or "chromium", "--headless", "--no-sandbox",
                    "--disable-gpu", "--no-first-run", "--hide-scrollbars",
                    "--user-data-dir=" + os.path.join(home, "profile"),
                    "--window-size=1000,2000", "--screenshot=" + out, url],
                   env=env, check=True, timeout=120,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main():
    out = os.path.abspath(sys.argv[1] if len(sys.argv) > 1
                          else os.path.join(REPO, "docs", "status-page.png"))
    shutil.rmtree(WORK, ignore_errors=True)
    emu = Emulator(os.path.join(WORK, "emulator"))
    httpd = Httpd("docs-status", root=os.path.join(WORK, "httpd"))
    try:
        emu.start()
        create_resources(emu)
        seed(emu)
        create_pubsub(emu)
        publish_samples(emu)
        loader_file = run_loader(emu, os.path.join(WORK, "loader"))
        httpd.write_config(CONF.format(project=emu.project, dataset=DATASET, table=TABLE,
                                       emulator=emu.base_url, loader_file=loader_file))
        httpd.start()
        wait_for(lambda: get(httpd.url("/health?ready"))[0] == 200)
        # One refresh after the warm start: the answer turns stale after 1 s.
        asked = emu.count("bigquery.jobs.query")
        wait_for(lambda: get(httpd.url("/datos"))[0] == 200
                 and emu.count("bigquery.jobs.query") > asked)
        # Then BigQuery fails: the next refresh fails, and the host backs off.
        emu.add_fault(endpoint="bigquery.jobs.query", count=0, action="status", status=500,
                      reason="backendError")
        failed = emu.count("bigquery.jobs.query")
        wait_for(lambda: get(httpd.url("/datos"))[0] == 200
                 and emu.count("bigquery.jobs.query") > failed
                 and b"bigquery_failing" in get(httpd.url("/datos-status?json"))[1])
        screenshot(httpd.url("/datos-status"), out, os.path.join(WORK, "chromium"))
        print("status_screenshot: wrote %s" % os.path.relpath(out, REPO))
    finally:
        try:
            httpd.stop()
        finally:
            emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
