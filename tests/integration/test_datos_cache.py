"""The shared cache: BigQuery about once per freshness window for a whole host
or fleet, stale-while-revalidate, stale-if-error, the state directory,
conditional GET and gzip, the bound on workers waiting for BigQuery, /metrics
and deep health. Queries are counted at the emulator; memcached and redis are
the real servers."""
import gzip
import json
import math
import os
import re
import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from harness.servers import Memcached, Redis
from datos_env import datos_conf, expected_answer, get, row, seed, wait_for

METRICS = """
<Location "/metrics">
  SetHandler datos-metrics
  Require ip 127.0.0.1
</Location>
"""


def many_rows(emulator, n=120, width=20, prefix="r"):
    """n rows within the last day: one query (the 7-day window) answers."""
    now_us = int(emulator.now()) * 1_000_000
    return [row("%s%03d" % (prefix, i), now_us - 3_600_000_000 - i * 1_000_000,
                contenido="c%d-" % i + "x" * width) for i in range(n)]


def start(httpd_factory, emulator, name, mpm="event", extra="", **kw):
    h = httpd_factory(name, mpm=mpm)
    h.write_config(datos_conf(emulator, extra=METRICS + extra, **kw))
    h.start()
    return h


def queries(emulator):
    return emulator.count("bigquery.jobs.query")


def plain(h, path="/datos", **kw):
    headers = dict(kw.pop("headers", {}))
    headers.setdefault("Accept-Encoding", "identity")
    return get(h, path, headers=headers, **kw)


def metric(h, name, **labels):
    """The value of one series in /metrics (0 when absent)."""
    text = get(h, "/metrics").text
    want = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = ",".join(sorted((m.group(2) or "{}")[1:-1].split(","))) if m.group(2) else ""
        if not labels or got == want:
            total += float(m.group(3))
    return total


@pytest.fixture(autouse=True)
def no_faults_left(emulator):
    emulator.clear_faults()
    yield
    emulator.clear_faults()


# ---------------------------------------------------------------- headers

def test_hit_headers_and_cache_status(httpd_factory, emulator):
    rows = many_rows(emulator)
    seed(emulator, rows)
    h = start(httpd_factory, emulator, "cache-headers",
              extra="DatosFreshFor 30s\nDatosStaleWhileRevalidate 60s\nDatosStaleIfError 3600s\n")
    emulator.clear_counters()
    first = plain(h, "/datos")
    assert first.status_code == 200
    assert first.headers["Cache-Status"] == "datos; fwd=miss; stored"
    assert first.headers["Cache-Control"] == ("public, max-age=30, stale-while-revalidate=60, "
                                              "stale-if-error=3600")
    assert first.headers["Vary"] == "Accept-Encoding"
    assert first.headers["Age"] == "0"
    assert first.json()["datos"] == expected_answer(rows, 10)
    second = plain(h, "/datos?limit=100")
    assert second.json()["datos"] == expected_answer(rows, 100)
    m = re.fullmatch(r"datos; hit; ttl=(\d+)", second.headers["Cache-Status"])
    assert m and 25 <= int(m.group(1)) <= 30
    assert int(second.headers["Age"]) <= 5
    assert queries(emulator) == 1


# ---------------------------------------------------------------- one query

@pytest.mark.parametrize("mpm", ["event", "prefork"])
def test_stampede_on_a_cold_cache_makes_one_query(httpd_factory, emulator, mpm):
    rows = many_rows(emulator)
    seed(emulator, rows)
    h = start(httpd_factory, emulator, "cache-stampede-" + mpm, mpm=mpm)
    emulator.clear_counters()
    # A slow answer, so the 200 requests all arrive while it is fetched.
    emulator.add_fault(endpoint="bigquery.jobs.query", action="delay", delay_ms=700, count=0)
    go = threading.Barrier(50)

    def one(i):
        if i < 50:
            go.wait()
        return plain(h, "/datos?limit=%d" % (1 + i % 100), timeout=30)

    with ThreadPoolExecutor(200) as pool:
        got = list(pool.map(one, range(200)))
    assert queries(emulator) == 1
    statuses = [r.status_code for r in got]
    # Over the bound on waiting workers a request is told to come back,
    # at once; every other one gets the one answer.
    assert set(statuses) <= {200, 503}
    for r in got:
        if r.status_code == 503:
            assert int(r.headers["Retry-After"]) >= 1
            assert r.json()["error"]["code"] == 503
    ok = [r for r in got if r.status_code == 200]
    stored = [r for r in ok if r.headers["Cache-Status"] == "datos; fwd=miss; stored"]
    assert len(stored) == 1
    for r in ok:
        limit = int(r.url.split("limit=")[1])
        assert r.json()["datos"] == expected_answer(rows, limit)
    # Once the answer is in, the same burst is all hits, still one query.
    with ThreadPoolExecutor(200) as pool:
        again = list(pool.map(one, range(50, 250)))
    assert [r.status_code for r in again] == [200] * 200
    assert queries(emulator) == 1


def test_no_bypass_through_limit(httpd_factory, emulator):
    rows = many_rows(emulator)
    seed(emulator, rows)
    h = start(httpd_factory, emulator, "cache-limits")
    emulator.clear_counters()
    etags = set()
    for limit in list(range(1, 101)) + [None]:
        r = plain(h, "/datos" if limit is None else "/datos?limit=%d" % limit)
        assert r.status_code == 200
        assert len(r.json()["datos"]) == (10 if limit is None else limit)
        etags.add(r.headers["ETag"])
    assert queries(emulator) == 1
    assert len(etags) == 100          # one per slice; the default is limit=10's


def test_sustained_load_refreshes_at_most_once_per_window(httpd_factory, emulator):
    rows = many_rows(emulator)
    seed(emulator, rows)
    fresh, seconds = 1.0, 5.0
    h = start(httpd_factory, emulator, "cache-sustained",
              extra="DatosFreshFor 1s\nDatosStaleWhileRevalidate 60s\n")
    emulator.clear_counters()
    stop = time.time() + seconds
    served = []

    def load(i):
        n = 0
        while time.time() < stop:
            r = plain(h, "/datos?limit=%d" % (1 + (n * 7 + i) % 100))
            assert r.status_code == 200
            n += 1
        served.append(n)

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(load, range(6)))
    fetches = metric(h, "datos_backend_queries_total", outcome="ok")
    assert 1 <= fetches <= math.ceil(seconds / fresh) + 1, (fetches, sum(served))
    # one jobs.query per fetch: 120 recent rows fill the first window
    assert queries(emulator) == fetches
    # refreshes after the first scan only from the watermark
    bodies = [q["body"] for q in emulator.requests("bigquery.jobs.query")]
    assert "@watermark" not in bodies[0]["query"]
    assert all("timestamp >= @watermark" in b["query"] for b in bodies[1:])
    assert sum(served) > 50 * fetches


def test_slow_backend_serves_stale_while_one_request_refreshes(httpd_factory, emulator):
    rows = many_rows(emulator)
    seed(emulator, rows)
    h = start(httpd_factory, emulator, "cache-swr",
              extra="DatosFreshFor 1s\nDatosStaleWhileRevalidate 60s\nDatosTimeout 5s\n"
                    "DatosColdWait 6s\n")
    assert plain(h, "/datos").status_code == 200
    time.sleep(1.2)
    emulator.add_fault(endpoint="bigquery.jobs.query", action="delay", delay_ms=2500, count=1)
    emulator.clear_counters()
    refresher = {}

    def refresh():
        r = plain(h, "/datos", timeout=20)
        refresher["status"] = r.status_code
        refresher["cache_status"] = r.headers.get("Cache-Status")
        refresher["end"] = time.monotonic()

    t = threading.Thread(target=refresh)
    t.start()
    assert wait_for(lambda: queries(emulator) == 1, timeout=5)
    stale_ends, stale = [], []

    def stale_one(i):
        r = plain(h, "/datos?limit=%d" % (i + 1), timeout=20)
        stale_ends.append(time.monotonic())
        stale.append(r)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(stale_one, range(8)))
    t.join(20)
    assert refresher["status"] == 200
    assert refresher["cache_status"] == "datos; fwd=stale; fwd-status=200; stored"
    for r in stale:
        assert r.status_code == 200
        assert re.fullmatch(r"datos; hit; ttl=-\d+", r.headers["Cache-Status"]), \
            r.headers["Cache-Status"]
    # Ordering, not latency: every stale answer was complete before the one
    # fetch in flight ended.
    assert max(stale_ends) < refresher["end"]
    assert queries(emulator) == 1


# ---------------------------------------------------------------- workers

# Each of wrk's clients waits 100 ms before its next request, as clients of
# an API do, and asks on a new connection each time: the load is 200 clients,
# not a flood that would measure the machine's CPU, nor 200 keep-alive
# connections, which under prefork hold every process whatever a module does.
THINK_TIME_LUA = "function delay()\n  return 100\nend\n"


def _probe_health_under_load(h, path, seconds=4, clients=200):
    """wrk keeps `clients` connections on path (a process of its own, so the
    probes below are not slowed by the load generator); meanwhile /health is
    asked every 0.2 s with a load balancer's usual 2 s timeout."""
    script = h.write_file("wrk-think.lua", THINK_TIME_LUA)
    wrk = subprocess.Popen(["wrk", "-t2", "-c%d" % clients, "-d%ds" % seconds, "--timeout", "10s",
                            "-s", script, "-H", "Accept-Encoding: identity",
                            "-H", "Connection: close", h.url(path)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    time.sleep(0.5)
    probes = []
    stop = time.time() + seconds - 1
    while time.time() < stop:
        t0 = time.monotonic()
        try:
            r = requests.get(h.url("/health"), timeout=2)
            probes.append((r.status_code, time.monotonic() - t0))
        except requests.RequestException as e:
            probes.append((repr(e), time.monotonic() - t0))
        time.sleep(0.2)
    out, _ = wrk.communicate(timeout=60)
    return probes, out.decode("utf-8", "replace")


@pytest.mark.parametrize("mode", ["cold-cache", "uncached"])
@pytest.mark.parametrize("mpm", ["event", "prefork"])
def test_workers_stay_free_with_a_slow_backend(httpd_factory, emulator, mpm, mode):
    if not shutil.which("wrk"):
        pytest.fail("wrk is not installed (make deps)")
    seed(emulator, many_rows(emulator))
    h = start(httpd_factory, emulator, "cache-workers-%s-%s" % (mpm, mode), mpm=mpm,
              fresh_for="0" if mode == "uncached" else None)
    emulator.add_fault(endpoint="bigquery.jobs.query", action="delay", delay_ms=1500, count=0)
    probes, report = _probe_health_under_load(h, "/datos")
    assert len(probes) >= 8, (probes, report)
    slow = [p for p in probes if p[0] != 200 or p[1] >= 1.5]
    assert not slow, (probes, report)
    # the bound really applied: BigQuery was not asked once per request
    assert queries(emulator) <= (1 if mode == "cold-cache" else 200), report


# ---------------------------------------------------------------- failures

def test_backend_down_serves_stale_until_stale_if_error(httpd_factory, emulator):
    rows = many_rows(emulator)
    seed(emulator, rows)
    h = start(httpd_factory, emulator, "cache-sie",
              extra="DatosFreshFor 1s\nDatosStaleWhileRevalidate 1s\nDatosStaleIfError 3s\n")
    h.log.expect(r"DT0201.*rate_limited")
    t0 = time.time()
    first = plain(h, "/datos")
    assert first.status_code == 200
    emulator.add_fault(endpoint="bigquery.jobs.query", action="status", status=429,
                       reason="rateLimitExceeded", count=0)

    def at(t):
        time.sleep(max(0.0, t0 + t - time.time()))
        return plain(h, "/datos")

    for t in (1.3, 2.4, 3.5):
        r = at(t)
        assert r.status_code == 200, (t, r.text)
        assert r.content == first.content
        assert re.fullmatch(r"datos; hit; ttl=-\d+; detail=stale-if-error",
                            r.headers["Cache-Status"]), (t, r.headers["Cache-Status"])
        assert int(r.headers["Age"]) >= 1
    r = at(4.6)                           # fresh 1 s + stale-if-error 3 s are over
    assert r.status_code == 503
    assert r.headers["Cache-Control"] == "no-store"
    assert int(r.headers["Retry-After"]) >= 1
    # Failures back off: a handful of attempts, never one per request.
    assert queries(emulator) <= 6


def test_backend_down_then_graceful_is_seeded_from_the_state_dir(httpd_factory, emulator):
    rows = many_rows(emulator)
    seed(emulator, rows)
    h = start(httpd_factory, emulator, "cache-seed",
              extra="DatosFreshFor 1s\nDatosStaleWhileRevalidate 1s\nDatosStaleIfError 1h\n")
    h.log.expect(r"DT0201.*rate_limited")
    first = plain(h, "/datos")
    assert first.status_code == 200
    assert wait_for(lambda: any(n.endswith(".answer") for n in os.listdir(h.path("state"))))
    emulator.add_fault(endpoint="bigquery.jobs.query", action="status", status=429,
                       reason="rateLimitExceeded", count=0)
    h.graceful()                           # empties shmcb and every process copy
    time.sleep(2.1)                        # past fresh + stale-while-revalidate
    r = plain(h, "/datos")
    assert r.status_code == 200
    assert r.content == first.content
    assert r.headers["ETag"] == first.headers["ETag"]
    assert "detail=stale-if-error" in r.headers["Cache-Status"]
    assert int(r.headers["Age"]) >= 2      # the original fetch time was kept


def test_cold_and_failing_is_a_503_with_no_query_per_request(httpd_factory, emulator):
    seed(emulator, many_rows(emulator))
    h = start(httpd_factory, emulator, "cache-cold-fail", extra="DatosFreshFor 30s\n")
    h.log.expect(r"DT0201.*rate_limited")
    emulator.clear_counters()
    emulator.add_fault(endpoint="bigquery.jobs.query", action="status", status=429,
                       reason="rateLimitExceeded", retry_after="3", count=0)
    got = [plain(h, "/datos") for _ in range(20)]
    assert [r.status_code for r in got] == [503] * 20
    assert all(1 <= int(r.headers["Retry-After"]) <= 3 for r in got)
    # the first request asked; the others waited out the back-off
    assert queries(emulator) == 1
    log = open(h.log.path).read()
    assert log.count("DT0201") <= 4       # one per process and window
    assert "APR does not understand" not in log


def test_an_outage_logs_one_line_per_window_uncached_too(httpd_factory, emulator):
    seed(emulator, many_rows(emulator))
    h = start(httpd_factory, emulator, "cache-log-bound", fresh_for="0")
    h.log.expect(r"DT0201")
    emulator.add_fault(endpoint="bigquery.jobs.query", action="status", status=500,
                       reason="backendError", count=0)
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda _: plain(h, "/datos").status_code, range(40)))
    assert got == [502] * 40
    assert queries(emulator) >= 40        # uncached: one query per request, by design
    lines = [l for l in open(h.log.path) if "DT0201" in l]
    assert 1 <= len(lines) <= 4, lines    # at most one per process in a 10 s window
    assert all("APR does not understand" not in l for l in lines)
    assert all("backend_error" in l for l in lines)


def test_a_table_missing_a_record_column_is_a_503_naming_it(httpd_factory, emulator):
    seed(emulator, [])
    emulator.reset()
    emulator.create_dataset("latam_dataset", location="southamerica-east1")
    emulator._api("POST", "/projects/%s/datasets/latam_dataset/tables" % emulator.project,
                  {"tableReference": {"projectId": emulator.project, "datasetId": "latam_dataset",
                                      "tableId": "datos"},
                   "schema": {"fields": [{"name": "id", "type": "STRING", "mode": "REQUIRED"},
                                         {"name": "timestamp", "type": "TIMESTAMP",
                                          "mode": "REQUIRED"}]}})
    h = start(httpd_factory, emulator, "cache-bad-table")
    h.log.expect(r"DT0201.*column contenido \(STRING\) is missing")
    r = plain(h, "/datos")
    assert r.status_code == 503
    assert queries(emulator) == 0
    lines = [l for l in open(h.log.path) if "DT0201" in l]
    assert len(lines) == 1 and "contenido" in lines[0]


# ---------------------------------------------------------------- conditional GET, gzip

def raw_get(h, path, headers):
    """The body as sent (no decoding), with the headers."""
    r = requests.get(h.url(path), headers=headers, stream=True, timeout=10)
    body = r.raw.read(decode_content=False)
    return r, body


def test_conditional_get_for_plain_and_gzip(httpd_factory, emulator):
    rows = many_rows(emulator)
    seed(emulator, rows)
    h = start(httpd_factory, emulator, "cache-conditional")
    p, pbody = raw_get(h, "/datos", {"Accept-Encoding": "identity"})
    g, gbody = raw_get(h, "/datos", {"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in p.headers
    assert g.headers["Content-Encoding"] == "gzip"
    assert re.fullmatch(r'"[0-9a-f]{32}"', p.headers["ETag"])
    assert g.headers["ETag"] == p.headers["ETag"][:-1] + '-gz"'
    assert int(g.headers["Content-Length"]) == len(gbody) < len(pbody)
    assert gzip.decompress(gbody) == pbody
    assert json.loads(pbody)["datos"] == expected_answer(rows, 10)
    # also with the gzip command, which checks CRC and length
    assert subprocess.run(["gzip", "-dc"], input=gbody, capture_output=True).stdout == pbody
    for headers, etag in (({"Accept-Encoding": "identity"}, p.headers["ETag"]),
                          ({"Accept-Encoding": "gzip"}, g.headers["ETag"])):
        r = requests.get(h.url("/datos"), headers=dict(headers, **{"If-None-Match": etag}),
                         timeout=10)
        assert r.status_code == 304
        assert r.content == b""
        assert r.headers["ETag"] == etag
        assert r.headers["Vary"] == "Accept-Encoding"
        assert r.headers["Cache-Control"].startswith("public, max-age=")
    # the other variant's tag does not match
    r = requests.get(h.url("/datos"), headers={"Accept-Encoding": "identity",
                                               "If-None-Match": g.headers["ETag"]}, timeout=10)
    assert r.status_code == 200
    # the largest limit has a gzip variant too; other limits are sent plain
    g100, b100 = raw_get(h, "/datos?limit=100", {"Accept-Encoding": "gzip;q=1, identity;q=0.5"})
    assert g100.headers["Content-Encoding"] == "gzip"
    assert json.loads(gzip.decompress(b100))["datos"] == expected_answer(rows, 100)
    g7, b7 = raw_get(h, "/datos?limit=7", {"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in g7.headers
    assert json.loads(b7)["datos"] == expected_answer(rows, 7)
    # q=0 refuses gzip
    n, nb = raw_get(h, "/datos", {"Accept-Encoding": "gzip;q=0, *"})
    assert "Content-Encoding" not in n.headers
    head = requests.head(h.url("/datos"), headers={"Accept-Encoding": "gzip"}, timeout=10)
    assert head.headers["Content-Length"] == str(len(gbody))


# ---------------------------------------------------------------- fleets

@pytest.fixture
def memcached():
    if not shutil.which("memcached"):
        pytest.fail("memcached is not installed (make deps)")
    m = Memcached().start()
    yield m
    m.stop()


@pytest.fixture
def redis():
    if not shutil.which("redis-server"):
        pytest.fail("redis-server is not installed (make deps)")
    r = Redis().start()
    yield r
    r.stop()


def fleet_conf(kind, address, fresh="2s"):
    module = {"memcache": "socache_memcache", "redis": "socache_redis"}[kind]
    return ('LoadModule %s_module /usr/lib/apache2/modules/mod_%s.so\n'
            'DatosCache %s:%s\nDatosFreshFor %s\nDatosStaleWhileRevalidate 60s\n'
            % (module, module, kind, address, fresh))


@pytest.mark.parametrize("kind", ["memcache", "redis"])
def test_two_hosts_share_one_query_per_window(httpd_factory, emulator, memcached, redis, kind):
    rows = many_rows(emulator)
    seed(emulator, rows)
    address = memcached.address if kind == "memcache" else redis.address
    a = start(httpd_factory, emulator, "fleet-a-" + kind, extra=fleet_conf(kind, address))
    b = start(httpd_factory, emulator, "fleet-b-" + kind, extra=fleet_conf(kind, address))
    emulator.clear_counters()
    ra = plain(a, "/datos")
    rb = plain(b, "/datos")
    assert ra.status_code == rb.status_code == 200
    assert queries(emulator) == 1
    assert ra.headers["ETag"] == rb.headers["ETag"]
    assert ra.content == rb.content
    # Over three more windows, both hosts keep serving; between them they
    # ask about once per window (two hosts that look at the same moment
    # may both fetch: the documented race).
    stop = time.time() + 6
    while time.time() < stop:
        for h in (a, b):
            r = plain(h, "/datos?limit=50")
            assert r.status_code == 200
        time.sleep(0.05)
    assert queries(emulator) <= 1 + 3 + 2
    assert plain(a, "/datos").headers["ETag"] == plain(b, "/datos").headers["ETag"]


def test_an_entry_too_big_for_the_shared_tier_still_takes_one_query(httpd_factory, emulator,
                                                                      memcached):
    rows = many_rows(emulator, n=6, width=300_000)     # about 1.8 MB: over memcached's 1 MB item
    seed(emulator, rows)
    h = start(httpd_factory, emulator, "fleet-oversized",
              extra=fleet_conf("memcache", memcached.address, fresh="30s")
              + "DatosMaxPayload 4M\nDatosLimit 6 6\n")
    emulator.clear_counters()
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda i: plain(h, "/datos?limit=%d" % (1 + i % 6)), range(64)))
    assert all(r.status_code == 200 for r in got)
    assert queries(emulator) == 1       # the other processes read it from DatosStateDir
    assert metric(h, "datos_cache_oversized_total") >= 1


def test_a_failing_shared_tier_is_skipped(httpd_factory, emulator, memcached):
    rows = many_rows(emulator)
    seed(emulator, rows)
    h = start(httpd_factory, emulator, "fleet-l2-down",
              extra=fleet_conf("memcache", memcached.address, fresh="1s"))
    h.log.expect(r"DT0301")
    assert plain(h, "/datos").status_code == 200
    memcached.stop()
    stop = time.time() + 3.5
    n = 0
    while time.time() < stop:
        r = plain(h, "/datos?limit=%d" % (1 + n % 100))
        assert r.status_code == 200, r.text
        assert r.json()["datos"] == expected_answer(rows, 1 + n % 100)
        n += 1
    assert n > 20
    # BigQuery is still asked about once per window, not per request
    assert 2 <= queries(emulator) <= 10


# ---------------------------------------------------------------- metrics, health

def test_metrics_agree_with_what_was_done(httpd_factory, emulator):
    rows = many_rows(emulator)
    seed(emulator, rows)
    h = start(httpd_factory, emulator, "cache-metrics")
    emulator.clear_counters()
    for i in range(25):
        assert plain(h, "/datos?limit=%d" % (i + 1)).status_code == 200
    assert plain(h, "/datos?limit=0").status_code == 400
    assert get(h, "/health").status_code == 200
    text = get(h, "/metrics")
    assert text.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert metric(h, "datos_http_requests_total", handler="datos", code="200") == 25
    assert metric(h, "datos_http_requests_total", handler="datos", code="400") == 1
    assert metric(h, "datos_http_requests_total", handler="health", code="200") == 1
    assert metric(h, "datos_backend_queries_total", outcome="ok") == queries(emulator) == 1
    assert metric(h, "datos_http_request_duration_seconds_count", handler="datos") == 26
    hits = metric(h, "datos_cache_lookups_total", tier="process", result="hit")
    misses = sum(metric(h, "datos_cache_lookups_total", tier="process", result=r)
                 for r in ("miss", "stale"))
    assert hits + misses == 25 and hits >= 20
    assert metric(h, "datos_backend_last_success_timestamp_seconds") > time.time() - 60
    assert 0 <= metric(h, "datos_cache_age_seconds") < 60
    assert metric(h, "datos_backend_waiting_requests") == 0
    promtool = shutil.which("promtool")
    if promtool:
        p = subprocess.run([promtool, "check", "metrics"], input=text.content,
                           capture_output=True)
        assert p.returncode == 0, p.stdout + p.stderr


def test_deep_health_reports_readiness(httpd_factory, emulator):
    rows = many_rows(emulator)
    seed(emulator, rows)
    h = start(httpd_factory, emulator, "cache-deep-health",
              extra="DatosFreshFor 1s\nDatosStaleWhileRevalidate 1s\nDatosStaleIfError 1h\n")
    h.log.expect(r"DT0201.*rate_limited")
    emulator.clear_counters()
    # liveness never touches Google
    assert get(h, "/health").content == b'{"status":"ok"}'
    assert queries(emulator) == 0
    # a cold cache: deep health triggers the one fetch and reports it
    r = get(h, "/health?deep=1")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/health+json"
    assert r.json()["status"] == "pass"
    assert queries(emulator) == 1
    # BigQuery down, the last answer still servable: warn, still 200
    emulator.add_fault(endpoint="bigquery.jobs.query", action="status", status=429,
                       reason="rateLimitExceeded", count=0)
    time.sleep(2.2)
    r = get(h, "/health?deep=1")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "warn"
    assert body["checks"]["bigquery:answer"][0]["observedValue"] >= 2
    assert plain(h, "/datos").status_code == 200


def test_deep_health_fails_only_when_datos_would(httpd_factory, emulator):
    seed(emulator, many_rows(emulator))
    h = start(httpd_factory, emulator, "cache-deep-fail")
    h.log.expect(r"DT0201.*rate_limited")
    emulator.add_fault(endpoint="bigquery.jobs.query", action="status", status=429,
                       reason="rateLimitExceeded", count=0)
    r = get(h, "/health?deep=1")
    assert r.status_code == 503
    assert r.json()["status"] == "fail"
    assert int(r.headers["Retry-After"]) >= 1
    assert plain(h, "/datos").status_code == 503
    assert get(h, "/health").status_code == 200
