#!/usr/bin/python3
"""Throughput of the GCP emulator, which every test and `make run` talk to.

The emulator must serve thousands of requests per second so that load tests
of mod_datos measure httpd, not the stand-in for Google. This runs wrk
against three endpoints (datasets.get, the metadata token, and the product's
own newest-rows query on a 200-row table), with the emulator pinned to CPU 0
and wrk to CPU 1, over several rounds, and prints the median requests per
second and p99 latency of each as a Markdown table.

    /usr/bin/python3 tests/bench/bench_emulator.py [--rounds 5] [--seconds 5]
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [_REPO, os.path.join(_REPO, "emulator"), os.path.join(_REPO, "tests")]

from gcpemu.client import Emulator  # noqa: E402
from tools.httpd import TEST_TMP  # noqa: E402

QUERY = ("SELECT id, contenido, timestamp FROM `datos-local.latam_dataset.datos` "
         "WHERE timestamp >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL @lookback_days DAY) "
         "QUALIFY ROW_NUMBER() OVER (PARTITION BY id ORDER BY timestamp DESC, "
         "publish_time DESC, message_id DESC) = 1 ORDER BY timestamp DESC, id ASC "
         "LIMIT @max_rows")


def wrk(url, seconds, connections, script=None):
    cmd = ["taskset", "-c", "1", "wrk", "-t1", "-c%d" % connections, "-d%ds" % seconds,
           "--latency"]
    if script:
        cmd += ["-s", script]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise SystemExit("wrk saw %s error answers from %s" % (non2xx.group(1), url))
    return rps, float(p99.group(1)) * scale


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=50)
    args = ap.parse_args()

    emu = Emulator(os.path.join(TEST_TMP, "emulator-bench"))
    emu.start()
    try:
        subprocess.run(["taskset", "-pc", "0", str(emu.proc.pid)], check=True,
                       capture_output=True)
        emu.create_dataset("latam_dataset")
        emu.create_datos_table()
        now = emu.now()
        emu.insert_rows([{"id": "id-%03d" % i, "contenido": "dato %d" % i,
                          "timestamp": now - 60 * i} for i in range(200)])
        body = json.dumps({"query": QUERY, "useLegacySql": False, "parameterMode": "NAMED",
                           "queryParameters": [
                               {"name": "lookback_days", "parameterType": {"type": "INT64"},
                                "parameterValue": {"value": "7"}},
                               {"name": "max_rows", "parameterType": {"type": "INT64"},
                                "parameterValue": {"value": "100"}}],
                           "formatOptions": {"useInt64Timestamp": True}})
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
            f.write('wrk.method = "POST"\nwrk.body = %s\n'
                    'wrk.headers["Content-Type"] = "application/json"\n' % json.dumps(body))
            query_script = f.name
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
            f.write('wrk.headers["Metadata-Flavor"] = "Google"\n')
            meta_script = f.name
        cases = [
            ("datasets.get", emu.base_url + "/bigquery/v2/projects/datos-local/datasets/latam_dataset", None),
            ("metadata token", emu.base_url + "/computeMetadata/v1/instance/service-accounts/default/token", meta_script),
            ("jobs.query, newest 100 of 200 rows", emu.base_url + "/bigquery/v2/projects/datos-local/queries", query_script),
        ]
        results = {name: [] for name, _, _ in cases}
        for _ in range(args.rounds):
            for name, url, script in cases:  # interleaved rounds
                results[name].append(wrk(url, args.seconds, args.connections, script))
        print("| endpoint | median req/s | median p99 (ms) | rounds |")
        print("|---|---|---|---|")
        for name, _, _ in cases:
            rps = statistics.median(r for r, _ in results[name])
            p99 = statistics.median(p for _, p in results[name])
            print("| %s | %.0f | %.1f | %d |" % (name, rps, p99, len(results[name])))
    finally:
        emu.stop()


if __name__ == "__main__":
    main()
