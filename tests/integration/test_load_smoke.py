"""A smoke of the old service's Locust scenario (tests/load/locustfile.py) for
ten seconds, and until each kind of request has been made three times,
against the real httpd and the emulator, with the
configuration `make bench` runs it on (tests/load/server_conf.py): every GET
answers, every POST /datos with the token is accepted (202) and its record
reaches the topic, none fails. `make bench` runs the full profile (50 users,
2 minutes).
"""
import json
import os
import subprocess

from datos_env import row, seed
from gcpemu.client import message_data
from tools.httpd import REPO_ROOT
from load import server_conf

LOCUSTFILE = os.path.join(REPO_ROOT, "tests", "load", "locustfile.py")


def test_locust_scenario_for_ten_seconds(httpd_factory, emulator, tmp_path):
    now_us = int(emulator.now()) * 1_000_000
    seed(emulator, [row("sensor-%02d" % i, now_us - (i + 1) * 60_000_000,
                        contenido="lectura %d" % i) for i in range(30)])
    emulator.create_topic(server_conf.TOPIC)
    emulator.create_subscription("load-smoke-sub", server_conf.TOPIC)
    h = httpd_factory("load-smoke")
    # a fetch budget no busy machine runs out of (the shipped default is 5 s)
    h.write_config(server_conf.server_conf(emulator, extra="DatosTimeout 60s\n"))
    h.start()
    stats_file = tmp_path / "locust.json"
    # ten seconds, and then until each kind of request has been made three times
    # (the scenario picks them at random: a slow machine makes fewer)
    env = dict(os.environ, DATOS_LOAD_STATS=str(stats_file),
               DATOS_INGEST_TOKEN=server_conf.INGEST_TOKEN,
               DATOS_LOAD_EACH="3", DATOS_LOAD_SECONDS="10")
    p = subprocess.run(["/usr/bin/python3", "-m", "locust", "-f", LOCUSTFILE, "--headless",
                        "-u", "10", "-r", "10", "-t", "300s", "--only-summary",
                        "--host", h.base_url],
                       env=env, capture_output=True, text=True, timeout=600)
    assert stats_file.exists(), p.stdout[-2000:] + p.stderr[-3000:]
    got = json.loads(stats_file.read_text())
    stats = got["stats"]
    for name in ("GET /health", "GET /datos", "POST /datos"):
        assert stats[name]["requests"] >= 3, (name, stats)
        assert stats[name]["failures"] == 0, (name, got["failures"])
    assert got["failures"] == []
    # every write httpd accepted is in the topic, once, with the ingestion
    # attributes; Locust does not count a request its end cut short, which
    # httpd may still have answered
    with open(h.path("logs", "access.log")) as f:
        accepted = sum(1 for line in f if '"POST /datos HTTP/1.1" 202 ' in line)
    published = [m["message"] for m in emulator.drain("load-smoke-sub")]
    assert len(published) == accepted >= stats["POST /datos"]["requests"], \
        (len(published), accepted, stats)
    assert all(m["attributes"].get("datos_ingest") == "http" for m in published)
    ids = [json.loads(message_data(m))["id"] for m in published]
    assert len(set(ids)) == len(ids)
    # locust's own verdict: exit 0 when nothing failed
    assert p.returncode == 0, p.stderr[-3000:]
