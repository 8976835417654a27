"""A 10-second smoke of the old service's Locust scenario
(tests/load/locustfile.py) against the real httpd and the emulator, with the
configuration `make bench` runs it on (tests/load/server_conf.py): every GET
answers, none fails. `make bench` runs the full profile (50 users, 2 minutes).

POST /datos is left out unless DATOS_SMOKE_POST=1 (a server with ingestion,
switched on in tests/load/server_conf.py); then every POST must be accepted.
"""
import json
import os
import subprocess

from datos_env import row, seed
from harness.httpd import REPO_ROOT
from load import server_conf

LOCUSTFILE = os.path.join(REPO_ROOT, "tests", "load", "locustfile.py")
POST_ON = os.environ.get("DATOS_SMOKE_POST") == "1"


def test_locust_scenario_for_ten_seconds(httpd_factory, emulator, tmp_path):
    now_us = int(emulator.now()) * 1_000_000
    seed(emulator, [row("sensor-%02d" % i, now_us - (i + 1) * 60_000_000,
                        contenido="lectura %d" % i) for i in range(30)])
    emulator.create_topic(server_conf.TOPIC)
    h = httpd_factory("load-smoke")
    h.write_config(server_conf.server_conf(emulator))
    h.start()
    stats_file = tmp_path / "locust.json"
    env = dict(os.environ, DATOS_LOAD_STATS=str(stats_file),
               DATOS_LOAD_POST="1" if POST_ON else "0")
    p = subprocess.run(["/usr/bin/python3", "-m", "locust", "-f", LOCUSTFILE, "--headless",
                        "-u", "10", "-r", "10", "-t", "10s", "--only-summary",
                        "--host", h.base_url],
                       env=env, capture_output=True, text=True, timeout=180)
    assert stats_file.exists(), p.stdout[-2000:] + p.stderr[-3000:]
    got = json.loads(stats_file.read_text())
    stats = got["stats"]
    for name in ("GET /health", "GET /datos"):
        assert stats[name]["requests"] > 0, (name, stats)
        assert stats[name]["failures"] == 0, (name, got["failures"])
    if POST_ON:
        assert stats["POST /datos"]["requests"] > 0, stats
        assert stats["POST /datos"]["failures"] == 0, got["failures"]
    else:
        assert "POST /datos" not in stats
    assert got["failures"] == []
    # locust's own verdict: exit 0 when nothing failed
    assert p.returncode == 0, p.stderr[-3000:]
