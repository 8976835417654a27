"""The old service's Locust profile, against mod_datos.

The system datos replaces was measured with this scenario: each simulated
user waits 1 to 3 seconds between requests and picks GET /health (weight 2),
GET /datos (weight 5) or POST /datos (weight 1); 50 users, spawned at 10 per
second, for 2 minutes:

    /usr/bin/python3 -m locust -f tests/load/locustfile.py --headless \\
        -u 50 -r 10 -t 2m --host http://127.0.0.1:8080

`make bench` runs it so (tests/bench/bench_locust.py) and `make test` runs a
10-second smoke of it (tests/integration/test_load_smoke.py).

Environment:
  DATOS_LOAD_POST=0     leave POST /datos out (a server without ingestion)
  DATOS_INGEST_TOKEN    sent as "Authorization: Bearer <token>" on POST
  DATOS_LOAD_STATS=F    write the final figures to F as JSON (after the last
                        request, unlike --csv, whose last write comes earlier)
  DATOS_LOAD_EACH=N     end the run once every kind of request has been made N
                        times and DATOS_LOAD_SECONDS (default 0) have passed;
                        -t is then only an upper bound (the smoke test, which
                        must see each kind however slow the machine)
"""
import datetime
import json
import os
import time
import uuid

from locust import HttpUser, between, events

POST_ON = os.environ.get("DATOS_LOAD_POST", "1") != "0"
TOKEN = os.environ.get("DATOS_INGEST_TOKEN")
STATS_FILE = os.environ.get("DATOS_LOAD_STATS")
EACH = int(os.environ.get("DATOS_LOAD_EACH", "0"))
AT_LEAST = float(os.environ.get("DATOS_LOAD_SECONDS", "0"))
_environment = []


def health(user):
    with user.client.get("/health", name="GET /health", catch_response=True) as r:
        if r.status_code != 200 or r.text != '{"status":"ok"}':
            r.failure("HTTP %d %r" % (r.status_code, r.text[:80]))


def read(user):
    with user.client.get("/datos", name="GET /datos", catch_response=True) as r:
        if r.status_code != 200:
            r.failure("HTTP %d %r" % (r.status_code, r.text[:120]))
            return
        try:
            rows = r.json()["datos"]
        except (ValueError, KeyError, TypeError):
            r.failure("not a datos answer: %r" % r.text[:120])
            return
        if not isinstance(rows, list):
            r.failure("datos is not a list")


def write(user):
    now = datetime.datetime.now(datetime.timezone.utc)
    record = {"id": "locust-%s" % uuid.uuid4().hex[:16],
              "contenido": "Prueba autom\u00e1tica de carga",
              "timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
    headers = {"Content-Type": "application/json"}
    if TOKEN:
        headers["Authorization"] = "Bearer " + TOKEN
    with user.client.post("/datos", data=json.dumps(record).encode("utf-8"), headers=headers,
                          name="POST /datos", catch_response=True) as r:
        # Accepted for publishing: anything else is a failed write.
        if r.status_code != 202:
            r.failure("HTTP %d" % r.status_code)


class DatosUser(HttpUser):
    wait_time = between(1, 3)
    tasks = {health: 2, read: 5, write: 1} if POST_ON else {health: 2, read: 5}


_history = []


@events.init.add_listener
def _keep_environment(environment, **_):
    _environment.append(environment)


@events.test_start.add_listener
def _sample_every_second(environment, **_):
    """A point per second for plots: users, requests so far, the average
    so far, and the 95th percentile of the last seconds."""
    if not STATS_FILE:
        return
    import gevent

    def sample():
        t0 = time.monotonic()
        while True:
            gevent.sleep(1)
            total = environment.stats.total
            _history.append({
                "t": round(time.monotonic() - t0, 1),
                "users": environment.runner.user_count if environment.runner else 0,
                "requests": total.num_requests, "failures": total.num_failures,
                "avg_ms": total.avg_response_time,
                "p95_recent_ms": total.get_current_response_time_percentile(0.95)})

    gevent.spawn(sample)


@events.test_start.add_listener
def _end_once_each_kind_is_seen(environment, **_):
    if not EACH:
        return
    import gevent
    names = ["GET /health", "GET /datos"] + (["POST /datos"] if POST_ON else [])

    def watch():
        t0 = time.monotonic()
        while True:
            gevent.sleep(0.2)
            made = {name: e.num_requests for (name, _m), e in environment.stats.entries.items()}
            if time.monotonic() - t0 >= AT_LEAST and all(made.get(n, 0) >= EACH for n in names):
                environment.runner.quit()
                return

    gevent.spawn(watch)


@events.quit.add_listener
def _write_stats(exit_code, **_):
    if not STATS_FILE or not _environment:
        return
    stats = _environment[0].stats

    def figures(e):
        return {"requests": e.num_requests, "failures": e.num_failures,
                "avg_ms": e.avg_response_time, "median_ms": e.median_response_time,
                "p95_ms": e.get_response_time_percentile(0.95) if e.num_requests else None,
                "p99_ms": e.get_response_time_percentile(0.99) if e.num_requests else None,
                "max_ms": e.max_response_time if e.num_requests else None,
                "rps": e.total_rps}

    out = {"exit_code": exit_code,
           "stats": {name: figures(e) for (name, _method), e in stats.entries.items()},
           "failures": [{"name": f.name, "method": f.method, "error": str(f.error),
                         "count": f.occurrences} for f in stats.errors.values()],
           "history": _history}
    out["stats"]["all"] = figures(stats.total)
    with open(STATS_FILE, "w") as f:
        json.dump(out, f, indent=1)
