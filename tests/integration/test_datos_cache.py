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
    t0 = time.time()
    first = plain(h, "/datos")
    assert first.status_code == 200
    assert first.headers["Cache-Status"] == "datos; fwd=miss; stored"
    assert first.headers["Cache-Control"] == ("public, max-age=30, stale-while-revalidate=60, "
                                              "stale-if-error=3600")
    assert first.headers["Vary"] == "Accept-Encoding"
    assert first.headers["Age"] == "0"
    assert first.json()["datos"] == expected_answer(rows, 10)
    second = plain(h, "/datos?limit=100")
    elapsed = time.time() - t0
    assert second.json()["datos"] == expected_answer(rows, 100)
    m = re.fullmatch(r"datos; hit; ttl=(\d+)", second.headers["Cache-Status"])
    assert m, second.headers["Cache-Status"]
    # the answer's age, and what is left of its 30 s, in whole seconds
    age = int(second.headers["Age"])
    assert 0 <= age <= math.ceil(elapsed)
    assert int(m.group(1)) + age in (29, 30)
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
        return plain(h, "/datos?limit=%d" % (1 + i % 100), timeout=120)

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
    fresh, seconds, least = 1.0, 5.0, 600
    h = start(httpd_factory, emulator, "cache-sustained",
              extra="DatosFreshFor 1s\nDatosStaleWhileRevalidate 60s\n")
    emulator.clear_counters()
    t0 = time.time()
    stop = t0 + seconds
    served, statuses = [], []

    def load(i):
        n = 0
        # at least `seconds` of load (several windows), and at least `least` requests
        # however slow the machine
        while time.time() < stop or len(statuses) < least:
            r = plain(h, "/datos?limit=%d" % (1 + (n * 7 + i) % 100))
            assert r.status_code == 200
            statuses.append(r.headers["Cache-Status"])
            n += 1
        served.append(n)

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(load, range(6)))
    elapsed = time.time() - t0
    fetches = metric(h, "datos_backend_queries_total", outcome="ok")
    # once per window of the time the load really lasted, plus the first
    assert 1 <= fetches <= math.ceil(elapsed / fresh) + 1, (fetches, elapsed, sum(served))
    # one jobs.query per fetch: 120 recent rows fill the first window
    assert queries(emulator) == fetches
    # refreshes after the first scan only from the watermark
    bodies = [q["body"] for q in emulator.requests("bigquery.jobs.query")]
    assert "@watermark" not in bodies[0]["query"]
    assert all("timestamp >= @watermark" in b["query"] for b in bodies[1:])
    # each fetch stored the answer of the one request that made it; the others were
    # hits, or on the cold cache waited for the first fetch (collapsed)
    stored = [c for c in statuses if c.endswith("; stored")]
    collapsed = [c for c in statuses if c == "datos; fwd=miss; collapsed"]
    hits = [c for c in statuses if c.startswith("datos; hit; ")]
    assert len(stored) == fetches, (len(stored), fetches)
    assert len(collapsed) <= 5
    assert len(stored) + len(collapsed) + len(hits) == len(statuses) >= least


def test_slow_backend_serves_stale_while_one_request_refreshes(httpd_factory, emulator):
    rows = many_rows(emulator)
    seed(emulator, rows)
    h = start(httpd_factory, emulator, "cache-swr",
              extra="DatosFreshFor 1s\nDatosStaleWhileRevalidate 60s\nDatosTimeout 120s\n"
                    "DatosColdWait 120s\n")
    assert plain(h, "/datos").status_code == 200
    time.sleep(1.2)                         # past the 1 s window (stale for 60 s more)
    # The refresh's query is held until the test releases it.
    emulator.add_fault(endpoint="bigquery.jobs.query", action="delay", delay_ms=600_000,
                       count=1)
    emulator.clear_counters()
    refresher = {}

    def refresh():
        r = plain(h, "/datos", timeout=180)
        refresher["status"] = r.status_code
        refresher["cache_status"] = r.headers.get("Cache-Status")

    t = threading.Thread(target=refresh)
    t.start()
    try:
        assert wait_for(lambda: queries(emulator) == 1, timeout=60)
        with ThreadPoolExecutor(8) as pool:
            stale = list(pool.map(lambda i: plain(h, "/datos?limit=%d" % (i + 1), timeout=60),
                                  range(8)))
        # Ordering, not latency: every stale answer came while the one fetch was held.
        assert emulator.applying() == 1 and t.is_alive()
    finally:
        emulator.settle_faults()
        t.join(180)
    assert refresher["status"] == 200
    assert refresher["cache_status"] == "datos; fwd=stale; fwd-status=200; stored"
    for r in stale:
        assert r.status_code == 200
        assert re.fullmatch(r"datos; hit; ttl=-\d+", r.headers["Cache-Status"]), \
            r.headers["Cache-Status"]
    assert queries(emulator) == 1


# ---------------------------------------------------------------- workers

@pytest.mark.parametrize("mode", ["cold-cache", "uncached"])
@pytest.mark.parametrize("mpm", ["event", "prefork"])
def test_workers_stay_free_with_a_slow_backend(httpd_factory, emulator, mpm, mode):
    """BigQuery answers nothing until the test lets go; meanwhile 100 clients, more
    than MaxRequestWorkers, each ask /datos once on a new connection, and /health (a
    load balancer's probe) is answered, every time, while BigQuery still holds every
    query: the workers that wait for it are bounded, the others are told to come back.
    Were every request to wait, no worker would be left for /health until BigQuery
    answered.

    The module gives up on a fetch that receives nothing for 10 s (a stall); on a
    machine slow enough for that to happen during the test, the fetch ends with a
    logged timeout and another request may fetch: the bound on queries counts them."""
    seed(emulator, many_rows(emulator))
    h = start(httpd_factory, emulator, "cache-workers-%s-%s" % (mpm, mode), mpm=mpm,
              fresh_for="0" if mode == "uncached" else None,
              extra="DatosTimeout 120s\nDatosColdWait 120s\n")
    h.log.expect(r"DT0201.*\(timeout,")
    # More clients than workers: httpd says when it has none left for a moment (over
    # the bound, a request on a cold cache looks for the answer for a second first).
    h.log.expect(r"AH00484|AH00161")
    in_flight = 1 if mode == "cold-cache" else {"event": 64, "prefork": 32}[mpm] // 4
    emulator.add_fault(endpoint="bigquery.jobs.query", action="delay", delay_ms=600_000,
                       count=0)
    probes = []
    pool = ThreadPoolExecutor(100)
    try:
        def ask():
            return pool.submit(plain, h, "/datos", headers={"Connection": "close"},
                               timeout=180)

        # one first, alone, so that its query is surely held (again if it was told to
        # come back: a server just started may not have the idle workers a wait
        # needs yet); then the 99 others
        load = []

        def one_held():
            if not load or load[-1].done():
                load.append(ask())
            return queries(emulator) >= 1

        assert wait_for(one_held, timeout=120)
        load += [ask() for _ in range(99)]
        for _ in range(8):
            r = requests.get(h.url("/health"), timeout=60)
            probes.append(r.status_code)
        # ... and BigQuery answered nothing until every probe was answered
        asked = emulator.requests("bigquery.jobs.query")
        assert asked and all(q["status"] is None for q in asked), asked
        ended = metric(h, "datos_backend_queries_total")
        rejected = metric(h, "datos_backend_wait_rejected_total")
    finally:
        emulator.clear_faults()
        emulator.settle_faults()
        pool.shutdown(wait=True)
    assert probes == [200] * 8, probes
    # the waiting ones got the answer once BigQuery gave it; the others came back later
    assert {f.result().status_code for f in load} <= {200, 503}
    # the bound really applied: requests were turned away instead of waiting, and
    # BigQuery was not asked once per request (only by the fetches that had ended,
    # and those the bound lets run at once)
    assert rejected > 0
    assert len(asked) <= ended + in_flight, (len(asked), ended)


# ---------------------------------------------------------------- failures

def test_backend_down_serves_stale_until_stale_if_error(httpd_factory, emulator):
    """Fresh 1 s, then stale-if-error for 4 s: the answer fetched at tf is served
    until tf + 5 s while BigQuery fails, and a 503 after. The test knows tf only
    between t0 (before the first request) and t1 (after its answer), so it judges a
    request only when its whole exchange lies on one side of the boundary: waits are
    measured from t1 (a lower bound of the answer's age), deadlines from t0."""
    rows = many_rows(emulator)
    seed(emulator, rows)
    fresh, until = 1.0, 5.0                         # fresh + stale-if-error
    h = start(httpd_factory, emulator, "cache-sie",
              extra="DatosFreshFor 1s\nDatosStaleWhileRevalidate 1s\nDatosStaleIfError 4s\n")
    h.log.expect(r"DT0201.*rate_limited")
    t0 = time.time()
    first = plain(h, "/datos")
    t1 = time.time()
    assert first.status_code == 200
    emulator.add_fault(endpoint="bigquery.jobs.query", action="status", status=429,
                       reason="rateLimitExceeded", count=0)

    def at(t):
        time.sleep(max(0.0, t1 + t - time.time()))
        sent = time.time()
        r = plain(h, "/datos")
        return r, sent, time.time()

    judged = 0
    for t in (1.3, 2.6, 3.9):
        r, sent, done = at(t)
        if done - t0 >= until:
            continue                        # a stalled machine: this one may be either
        judged += 1
        assert r.status_code == 200, (t, r.text)
        assert r.content == first.content
        assert re.fullmatch(r"datos; hit; ttl=-\d+; detail=stale-if-error",
                            r.headers["Cache-Status"]), (t, r.headers["Cache-Status"])
        assert int(r.headers["Age"]) >= 1
    assert judged, "no request could be judged inside the stale-if-error window"
    r, sent, done = at(until + 0.1)         # fresh 1 s + stale-if-error 4 s are over
    assert sent - t1 > until
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
    # a back-off far longer than the 20 requests take, however slow the machine
    emulator.add_fault(endpoint="bigquery.jobs.query", action="status", status=429,
                       reason="rateLimitExceeded", retry_after="60", count=0)
    got = [plain(h, "/datos") for _ in range(20)]
    assert [r.status_code for r in got] == [503] * 20
    assert all(1 <= int(r.headers["Retry-After"]) <= 60 for r in got)
    # the first request asked; the others waited out the back-off
    assert queries(emulator) == 1
    log = open(h.log.path).read()
    assert log.count("DT0201") == 1       # the one failure, logged once
    assert "APR does not understand" not in log


def test_an_outage_logs_one_line_per_window_uncached_too(httpd_factory, emulator):
    seed(emulator, many_rows(emulator))
    h = start(httpd_factory, emulator, "cache-log-bound", fresh_for="0")
    h.log.expect(r"DT0201")
    emulator.add_fault(endpoint="bigquery.jobs.query", action="status", status=500,
                       reason="backendError", count=0)
    t0 = time.time()
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda _: plain(h, "/datos").status_code, range(40)))
    elapsed = time.time() - t0
    assert got == [502] * 40
    assert queries(emulator) >= 40        # uncached: one query per request, by design
    lines = [l for l in open(h.log.path) if "DT0201" in l]
    # at most one per process (ServerLimit 4) in each 10 s window the requests spanned
    assert 1 <= len(lines) <= 4 * (int(elapsed // 10) + 1), (lines, elapsed)
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
    r = requests.get(h.url(path), headers=headers, stream=True, timeout=120)
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
                         timeout=120)
        assert r.status_code == 304
        assert r.content == b""
        assert r.headers["ETag"] == etag
        assert r.headers["Vary"] == "Accept-Encoding"
        assert r.headers["Cache-Control"].startswith("public, max-age=")
    # the other variant's tag does not match
    r = requests.get(h.url("/datos"), headers={"Accept-Encoding": "identity",
                                               "If-None-Match": g.headers["ETag"]}, timeout=120)
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
    head = requests.head(h.url("/datos"), headers={"Accept-Encoding": "gzip"}, timeout=120)
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
    t0 = time.time()
    while time.time() < t0 + 6:
        for h in (a, b):
            r = plain(h, "/datos?limit=50")
            assert r.status_code == 200
        time.sleep(0.05)
    windows = math.ceil((time.time() - t0) / 2)          # 2 s windows: 3 unless stalled
    assert queries(emulator) <= 1 + windows + 2
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
    # at least 3.5 s (three 1 s windows) and at least 21 requests
    t0 = time.time()
    n = 0
    while time.time() < t0 + 3.5 or n <= 20:
        r = plain(h, "/datos?limit=%d" % (1 + n % 100))
        assert r.status_code == 200, r.text
        assert r.json()["datos"] == expected_answer(rows, 1 + n % 100)
        n += 1
    windows = math.ceil(time.time() - t0)                # 4 unless stalled
    # BigQuery is still asked about once per window, not per request
    assert 2 <= queries(emulator) <= 2 * windows + 2, (queries(emulator), windows, n)


# ---------------------------------------------------------------- metrics, health

def test_metrics_agree_with_what_was_done(httpd_factory, emulator):
    rows = many_rows(emulator)
    seed(emulator, rows)
    h = start(httpd_factory, emulator, "cache-metrics")
    emulator.clear_counters()
    t0 = time.time()
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
    # the fetch happened during the test's requests, and the answer is no older
    assert t0 - 1 <= metric(h, "datos_backend_last_success_timestamp_seconds") <= time.time()
    assert 0 <= metric(h, "datos_cache_age_seconds") <= time.time() - t0 + 1
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
