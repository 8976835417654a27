#!/usr/bin/python3
"""Refreshes (issue 19): how many BigQuery queries a fleet of 1, 2 and 4
httpd on one redis makes per freshness window under load, with 0.4 s of
BigQuery latency; and how long the first request after the answer turned
stale takes (the one that starts the refresh) while BigQuery takes 2 s.

Queries are counted at the emulator (`jobs.query`), never guessed from
timing. The hosts run on CPU 0 (the event configuration of bench_read.py,
each its own server root and state directory); wrk, the emulator and redis
on CPU 1.

    /usr/bin/python3 tests/bench/bench_refresh.py [--windows N] [--probes N]
"""
import argparse
import http.client
import json
import os
import subprocess
import time

import benchlib as B
from benchlib import echo, section

import bench_read as R  # noqa: E402
from harness.servers import Redis  # noqa: E402

FLEET_FRESH_S = 3          # the window of the figure (1.83 per 3 s window)
FLEET_DELAY_MS = 400
FLEET_SIZES = (1, 2, 4)
FLEET_CONNECTIONS = 50     # in all, shared between the hosts
PROBE_FRESH_S = 3
PROBE_DELAY_MS = 2000


def timed_get(port, path):
    """One GET on a new connection -> (ms, status, headers)."""
    t0 = time.monotonic()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        ms = (time.monotonic() - t0) * 1000.0
        return ms, r.status, dict(r.getheaders())
    finally:
        c.close()


def host_fetches(h):
    try:
        return R.host_fetches(h)
    except Exception:  # a build whose /metrics names it otherwise
        return None


def fleet_run(n, windows, cleanup):
    """n hosts on a fresh redis, each loaded by its own wrk for `windows`
    freshness windows; -> the queries BigQuery saw."""
    section("refresh: %d host(s) on one redis, %.1f s BigQuery" % (n, FLEET_DELAY_MS / 1000.0))
    emu = R.start_emulator("fleetq-%d" % n)
    cleanup.append(emu.stop)
    emu.add_fault(path="^/bigquery/", action="delay", delay_ms=FLEET_DELAY_MS, count=0)
    rd = Redis()
    echo(rd.command())
    cleanup.append(rd.stop)
    rd.start()
    B.pin(rd.proc.pid, B.BACKEND_CPU)
    load, fleet = B.fleet_directives("redis", rd.address)
    hosts = []
    for i in range(n):
        h = B.PinnedHttpd("bench-fleetq-%d-%d" % (n, i + 1), mpm="event")
        conf = R.datos_directives(emu, fleet + "DatosFreshFor %ds\n" % FLEET_FRESH_S)
        h.write_bench_config(conf + R.DATOS_LOCATIONS, R.EVENT_ONE_CHILD,
                             extra_modules=R.LOAD_EXTRA + load)
        cleanup.append(h.stop)
        h.start()
        hosts.append(h)
    for h in hosts:
        st, _, body = R.get(h.port, "/datos")
        assert st == 200, (st, body[:200])
    fetched0 = [host_fetches(h) for h in hosts]
    emu.clear_counters()
    seconds = windows * FLEET_FRESH_S
    conns = max(1, FLEET_CONNECTIONS // n)
    procs = []
    t0 = time.monotonic()
    for h in hosts:
        cmd = B.client(["wrk", "-t1", "-c%d" % conns, "-d%ds" % seconds, "--latency",
                        "--timeout", "10s", h.url("/datos")])
        echo(cmd)
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=seconds + 60)[0] for p in procs]
    elapsed = time.monotonic() - t0
    parsed = [R.parse_wrk_text(o) for o in outs]
    queries = emu.count("bigquery.jobs.query")
    fetched = [host_fetches(h) for h in hosts]
    logs = []
    for h in hosts:
        logs += h.check_log()
        h.stop()
    rd.stop()
    emu.stop()
    return {"hosts": n, "connections_per_host": conns, "seconds": seconds,
            "elapsed": elapsed, "windows": elapsed / FLEET_FRESH_S, "queries": queries,
            "per_window": queries / (elapsed / FLEET_FRESH_S),
            "per_host_fetches": [None if a is None or b is None else b - a
                                 for a, b in zip(fetched0, fetched)],
            "rps": sum(p["rps"] for p in parsed), "p99": max(p["p99"] for p in parsed),
            "errors": sum(p["errors"] for p in parsed),
            "requests": sum(p["requests"] for p in parsed), "error_log": logs[:10]}


def fleet(windows):
    out = {"fresh_for_s": FLEET_FRESH_S, "delay_ms": FLEET_DELAY_MS,
           "connections": FLEET_CONNECTIONS, "runs": []}
    cleanup = []
    try:
        out["secret"] = "DatosCacheSecretFile" in B.fleet_directives("redis", "127.0.0.1:9")[1]
        for n in FLEET_SIZES:
            out["runs"].append(fleet_run(n, windows, cleanup))
    finally:
        for stop in reversed(cleanup):
            try:
                stop()
            except Exception as e:  # keep stopping the others
                print("cleanup: %s" % e)
    return out


def revalidate(probes):
    """The first request after the answer turned stale, alone on an idle
    httpd, while every BigQuery query takes 2 s: its latency, its
    Cache-Status, and whether a query started (counted at the emulator)."""
    section("refresh: the request that starts a refresh, BigQuery at %.0f s"
            % (PROBE_DELAY_MS / 1000.0))
    emu = R.start_emulator("revalidate")
    h = B.PinnedHttpd("bench-revalidate", mpm="event")
    out = {"fresh_for_s": PROBE_FRESH_S, "delay_ms": PROBE_DELAY_MS, "probes": []}
    try:
        h.write_bench_config(R.datos_directives(emu, "DatosFreshFor %ds\n" % PROBE_FRESH_S) +
                             R.DATOS_LOCATIONS, R.EVENT_ONE_CHILD, extra_modules=R.LOAD_EXTRA)
        h.start()
        st, _, _ = R.get(h.port, "/datos")
        assert st == 200, st
        emu.add_fault(endpoint="bigquery.jobs.query", action="delay",
                      delay_ms=PROBE_DELAY_MS, count=0)
        # From here on, each probe waits until the answer it last left is
        # stale and no refresh is in flight: the query's time, the window,
        # and a margin.
        time.sleep(PROBE_FRESH_S + 0.7)
        for i in range(probes):
            echo("# probe %d of %d: GET /datos, the answer stale, BigQuery at %d ms"
                 % (i + 1, probes, PROBE_DELAY_MS))
            before = emu.count("bigquery.jobs.query")
            t_probe = time.monotonic()
            ms, status, headers = timed_get(h.port, "/datos")
            deadline = time.monotonic() + 5
            while emu.count("bigquery.jobs.query") == before and time.monotonic() < deadline:
                time.sleep(0.05)
            out["probes"].append({"ms": ms, "status": status,
                                  "cache_status": headers.get("Cache-Status"),
                                  "age": headers.get("Age"),
                                  "queries_started": emu.count("bigquery.jobs.query") - before})
            rest = PROBE_DELAY_MS / 1000.0 + PROBE_FRESH_S + 0.7 - (time.monotonic() - t_probe)
            if i + 1 < probes and rest > 0:
                time.sleep(rest)
        out["error_log"] = h.check_log()[:10]
    finally:
        h.stop()
        emu.stop()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--windows", type=int, default=3 if B.QUICK else 12,
                    help="freshness windows of load per fleet size")
    ap.add_argument("--probes", type=int, default=2 if B.QUICK else 5)
    ap.add_argument("--parts", default="fleet,revalidate")
    ap.add_argument("--out", default=os.path.join(B.BENCH_BUILD, "data", "refresh.json"))
    args = ap.parse_args()
    parts = args.parts.split(",")
    data = {}
    if "revalidate" in parts:
        data["revalidate"] = revalidate(args.probes)
    if "fleet" in parts:
        data["fleet"] = fleet(args.windows)
    data["commands"] = B.COMMANDS
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(data, f, indent=1)
    print("wrote %s" % args.out)


if __name__ == "__main__":
    main()
