#!/usr/bin/python3
"""The old service's scenario (issue 11, section 3): tests/load/locustfile.py,
50 users spawned at 10/s for 2 minutes, against mod_datos, with the emulator
answering at once, then with 0.5 s of latency on every BigQuery call (as
BigQuery's jobs.query takes 0.3-1 s in production). A third run, the
uncached design (DatosFreshFor 0) under that latency, is the reference for
what the old service did. Those runs start from a cold cache.

The warm start (issue 19): the 0.5 s run again on a fresh httpd, Locust
started as soon as `GET /health?ready` answers 200, as a load balancer would
send traffic; a build without readiness is reported as such and not run.

httpd on CPU 0; locust on CPU 1, with the emulator.

    /usr/bin/python3 tests/bench/bench_locust.py [--duration 2m]
"""
import argparse
import json
import os
import sys
import time

import benchlib as B
from benchlib import section

sys.path.insert(0, os.path.join(B.REPO, "tests"))
from load import server_conf  # noqa: E402

import bench_read as R  # noqa: E402

LOCUSTFILE = os.path.join(B.REPO, "tests", "load", "locustfile.py")
OUT = os.path.join(B.BENCH_BUILD, "locust")

# key, title, extra directives, BigQuery delay, start when /health?ready says so
RUNS = [
    ("cached-at-once", "mod_datos (cached), BigQuery answering at once", "", 0, False),
    ("cached-500ms", "mod_datos (cached), 0.5 s on every BigQuery call", "", 500, False),
    ("warm-500ms", "mod_datos (cached), 0.5 s on every BigQuery call, started when "
     "`/health?ready` answers 200", "", 500, True),
    ("uncached-500ms", "uncached (`DatosFreshFor 0`), 0.5 s on every BigQuery call",
     "DatosFreshFor 0\nDatosMaxWaiting 64\n", 500, False),
]
READY_TIMEOUT_S = 30


def read_stats(prefix):
    """The final figures and the per-second history the locustfile wrote
    (after the last request, unlike locust's own CSV, whose last write comes
    up to 10 s before the end; the CSV files are kept beside it)."""
    with open(prefix + ".json") as f:
        final = json.load(f)
    return final["stats"], final["failures"], final["history"]


def wait_ready(h):
    """Polls GET /health?ready until it answers 200 -> seconds since the
    start was asked, or None for a build without readiness."""
    t0 = time.monotonic()
    deadline = t0 + READY_TIMEOUT_S
    B.echo("# GET /health?ready every 20 ms until 200")
    while True:
        supported, status = B.health_ready(h.port)
        if not supported:
            return None
        if status == 200:
            return time.monotonic() - t0
        if time.monotonic() > deadline:
            raise SystemExit("/health?ready did not answer 200 within %d s" % READY_TIMEOUT_S)
        time.sleep(0.02)


def one_run(key, title, extra, delay_ms, duration, users, spawn, ready=False):
    section("locust: %s" % title)
    emu = R.start_emulator("locust-" + key)
    h = B.PinnedHttpd("bench-locust-" + key, mpm="event")
    try:
        emu.create_topic(server_conf.TOPIC)
        emu.create_subscription("locust-sub", server_conf.TOPIC)
        if delay_ms:
            emu.add_fault(path="^/bigquery/", action="delay", delay_ms=delay_ms, count=0)
        h.write_bench_config(server_conf.server_conf(emu, extra=extra), R.EVENT_ONE_CHILD)
        # Counted from before the start: a build that fetches at start
        # does so before the first request.
        emu.clear_counters()
        t_start = time.monotonic()
        h.start()
        ready_s = None
        if ready:
            if wait_ready(h) is None:
                return {"key": key, "title": title, "delay_ms": delay_ms,
                        "unavailable": B.UNAVAILABLE, "history": []}
            ready_s = time.monotonic() - t_start
        os.makedirs(OUT, exist_ok=True)
        prefix = os.path.join(OUT, key)
        with open(prefix + ".log", "w") as log:
            cmd = B.client(["/usr/bin/python3", "-m", "locust", "-f", LOCUSTFILE, "--headless",
                            "-u", str(users), "-r", str(spawn), "-t", duration,
                            "--csv", prefix, "--csv-full-history", "--only-summary",
                            "--host", h.base_url])
            env = dict(os.environ, DATOS_LOAD_STATS=prefix + ".json",
                       DATOS_INGEST_TOKEN=server_conf.INGEST_TOKEN)
            if os.path.exists(env["DATOS_LOAD_STATS"]):
                os.unlink(env["DATOS_LOAD_STATS"])
            p = B.run(cmd, check=False, stdout=log, stderr=log, capture_output=False,
                      timeout=600, env=env)
        rows, failures, history = read_stats(prefix)
        out = {"key": key, "title": title, "delay_ms": delay_ms, "rc": p.returncode,
               "stats": rows, "failures": failures, "history": history,
               "queries": emu.count("bigquery.jobs.query"),
               "published": len(emu.drain("locust-sub")), "ready_s": ready_s,
               "error_log": h.check_log()}
        return out
    finally:
        h.stop()
        emu.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", default="10s" if B.QUICK else "2m")
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--spawn-rate", type=int, default=10)
    ap.add_argument("--runs", default=",".join(r[0] for r in RUNS))
    ap.add_argument("--out", default=os.path.join(B.BENCH_BUILD, "data", "locust.json"))
    args = ap.parse_args()
    want = args.runs.split(",")
    data = {"duration": args.duration, "users": args.users, "spawn_rate": args.spawn_rate,
            "post_enabled": True, "runs": []}
    for key, title, extra, delay, ready in RUNS:
        if key in want:
            data["runs"].append(one_run(key, title, extra, delay, args.duration, args.users,
                                        args.spawn_rate, ready))
    data["commands"] = B.COMMANDS
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(data, f, indent=1)
    print("wrote %s" % args.out)


if __name__ == "__main__":
    main()
