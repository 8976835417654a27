"""The shared cache: BigQuery about once per freshness window for a whole host,
the warm start and readiness, stale-while-revalidate with the refresh off the
request path, stale-if-error, the state directory, conditional GET and gzip,
the bound on workers waiting for BigQuery, /metrics and deep health. Queries
are counted at the emulator; a refresh in flight is held there (a hold fault)
until the test lets it go, so what happens meanwhile is shown, not timed. The
fleet tiers (memcached, redis) are test_datos_fleet.py's."""
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

from datos_env import (METRICS, datos_conf, expected_answer, get, many_rows, metric, plain,
                       queries, ready, seed, wait_for)


def start(httpd_factory, emulator, name, mpm="event", extra="", warm=True, **kw):
    """A server of the suite; warm: once it is ready (its warm start done)."""
    h = httpd_factory(name, mpm=mpm)
    h.write_config(datos_conf(emulator, extra=METRICS + extra, **kw))
    h.start()
    if warm:
        ready(h)
    return h


def hold_queries(emulator):
    """BigQuery holds every query until released (release(fid))."""
    return emulator.add_fault(endpoint="bigquery.jobs.query", action="hold", count=0)


def held(emulator, fid):
    return emulator.fault(fid)["held"]


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
    # the warm start made the one fetch; requests only read it
    assert queries(emulator) == 1
    t0 = time.time()
    first = plain(h, "/datos")
    assert first.status_code == 200
    assert first.headers["Cache-Control"] == ("public, max-age=30, stale-while-revalidate=60, "
                                              "stale-if-error=3600")
    assert first.headers["Vary"] == "Accept-Encoding"
    assert first.json()["datos"] == expected_answer(rows, 10)
    second = plain(h, "/datos?limit=100")
    elapsed = time.time() - t0
    assert second.json()["datos"] == expected_answer(rows, 100)
    for r in (first, second):
        m = re.fullmatch(r"datos; hit; ttl=(\d+)", r.headers["Cache-Status"])
        assert m, r.headers["Cache-Status"]
        # the answer's age and what is left of its 30 s, in whole seconds
        age = int(r.headers["Age"])
        assert 0 <= age
        assert int(m.group(1)) + age in (29, 30)
    assert int(second.headers["Age"]) <= int(first.headers["Age"]) + math.ceil(elapsed)
    assert queries(emulator) == 1


# ---------------------------------------------------------------- the warm start

@pytest.mark.parametrize("mpm", ["event", "prefork"])
def test_a_cold_start_fetches_once_and_requests_collapse_onto_it(httpd_factory, emulator, mpm):
    """A fresh httpd fetches at once, before any request; /health?ready says
    warming until it has the answer. Requests that come meanwhile wait for that
    one fetch (bounded: over the bound they are told to come back), whatever
    their number; then every request is a hit."""
    rows = many_rows(emulator)
    seed(emulator, rows)
    fid = hold_queries(emulator)
    h = start(httpd_factory, emulator, "cache-cold-" + mpm, mpm=mpm, warm=False)
    try:
        assert wait_for(lambda: held(emulator, fid) == 1)
        r = get(h, "/health?ready")
        assert r.status_code == 503
        assert r.content == b'{"status":"warming"}'
        assert r.headers["Retry-After"] == "1"
        assert r.headers["Cache-Control"] == "no-store"
        # liveness is not readiness
        assert get(h, "/health").content == b'{"status":"ok"}'
        # (fewer at once under prefork, where a connection holds a process:
        # a waiting request needs idle workers beside it)
        n = 100 if mpm == "event" else 16
        with ThreadPoolExecutor(n) as pool:
            burst = []

            def one_waits():
                # n at once, and again in place of those told to come back (a
                # server just started may not have the idle workers a wait needs
                # yet), until one waits on the fetch
                while sum(not f.done() for f in burst) < n and len(burst) < 20 * n:
                    i = len(burst)
                    burst.append(pool.submit(plain, h, "/datos?limit=%d" % (1 + i % 100)))
                return metric(h, "datos_backend_waiting_requests") >= 1

            assert wait_for(one_waits)
            assert held(emulator, fid) == 1
            emulator.release_fault(fid)
            got = [f.result() for f in burst]
    finally:
        emulator.release_fault(fid)
    assert queries(emulator) == 1
    assert {r.status_code for r in got} <= {200, 503}
    ok = [r for r in got if r.status_code == 200]
    assert ok
    for r in ok:
        assert r.headers["Cache-Status"] in ("datos; fwd=miss; collapsed",) \
            or r.headers["Cache-Status"].startswith("datos; hit; ttl="), r.headers["Cache-Status"]
        limit = int(r.url.split("limit=")[1])
        assert r.json()["datos"] == expected_answer(rows, limit)
    for r in got:
        if r.status_code == 503:
            assert int(r.headers["Retry-After"]) >= 1
            assert r.json()["error"]["code"] == 503
    assert get(h, "/health?ready").content == b'{"status":"ready"}'
    # once in, the same burst is all hits, still the one query
    with ThreadPoolExecutor(100) as pool:
        again = list(pool.map(lambda i: plain(h, "/datos?limit=%d" % (1 + i % 100)), range(100)))
    assert [r.status_code for r in again] == [200] * 100
    assert all(r.headers["Cache-Status"].startswith("datos; hit; ttl=") for r in again)
    assert queries(emulator) == 1


def test_a_graceful_restart_is_ready_at_once_from_the_state_dir(httpd_factory, emulator):
    """The parent reads the state directory's answer at the restart and every
    new child starts with it: ready before any request, nothing asked of
    BigQuery, the answer's original age kept."""
    rows = many_rows(emulator)
    seed(emulator, rows)
    h = start(httpd_factory, emulator, "cache-graceful-warm")
    before = plain(h, "/datos")
    assert wait_for(lambda: any(n.endswith(".answer") for n in os.listdir(h.path("state"))))
    fid = hold_queries(emulator)          # a fetch now would never finish
    try:
        emulator.clear_counters()
        h.graceful()
        r = get(h, "/health?ready")
        assert r.status_code == 200 and r.content == b'{"status":"ready"}'
        after = plain(h, "/datos")
        assert after.status_code == 200
        assert after.headers["ETag"] == before.headers["ETag"]
        assert after.headers["Cache-Status"].startswith("datos; hit; ttl=")
        assert int(after.headers["Age"]) >= int(before.headers["Age"])
        assert queries(emulator) == 0
    finally:
        emulator.release_fault(fid)


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
    assert queries(emulator) == 0
    assert len(etags) == 100          # one per slice; the default is limit=10's


def test_sustained_load_refreshes_at_most_once_per_window(httpd_factory, emulator):
    rows = many_rows(emulator)
    seed(emulator, rows)
    fresh, seconds, least = 1.0, 5.0, 600
    h = start(httpd_factory, emulator, "cache-sustained",
              extra="DatosFreshFor 1s\nDatosStaleWhileRevalidate 60s\n")
    warm = metric(h, "datos_backend_queries_total", outcome="ok")
    t0 = time.time()
    stop = t0 + seconds
    statuses = []

    def load(i):
        n = 0
        # at least `seconds` of load (several windows), and at least `least`
        # requests however slow the machine
        while time.time() < stop or len(statuses) < least:
            r = plain(h, "/datos?limit=%d" % (1 + (n * 7 + i) % 100))
            assert r.status_code == 200
            statuses.append(r.headers["Cache-Status"])
            n += 1

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(load, range(6)))
    elapsed = time.time() - t0
    # a refresh the load started may still be in flight: it is counted once done
    assert wait_for(lambda: metric(h, "datos_backend_queries_total", outcome="ok")
                    == queries(emulator))
    fetches = metric(h, "datos_backend_queries_total", outcome="ok") - warm
    # once per window of the time the load really lasted, plus one in flight
    assert 1 <= fetches <= math.ceil(elapsed / fresh) + 1, (fetches, elapsed, len(statuses))
    # one jobs.query per fetch: 120 recent rows fill the first window
    assert queries(emulator) == fetches + warm
    bodies = [q["body"] for q in emulator.requests("bigquery.jobs.query")]
    # the warm start scanned the lookback; refreshes only from the watermark
    assert "@watermark" not in bodies[0]["query"]
    assert all("timestamp >= @watermark" in b["query"] for b in bodies[1:])
    # no request waited: each was a hit, fresh or stale while a refresh ran
    assert all(re.fullmatch(r"datos; hit; ttl=-?\d+", c) for c in statuses), \
        set(statuses)
    assert len(statuses) >= least


# ---------------------------------------------------------------- refresh off the request path

@pytest.mark.parametrize("mpm", ["event", "prefork"])
def test_the_request_that_finds_it_stale_is_answered_while_bigquery_is_held(httpd_factory,
                                                                             emulator, mpm):
    """The request that finds the answer stale starts the refresh and is
    answered at once, stale, while the refresh's query is still held at
    BigQuery; so are the others. None of them waits for BigQuery."""
    rows = many_rows(emulator)
    seed(emulator, rows)
    h = start(httpd_factory, emulator, "cache-swr-" + mpm, mpm=mpm,
              extra="DatosFreshFor 1s\nDatosStaleWhileRevalidate 60s\n")
    fresh = plain(h, "/datos")
    fid = hold_queries(emulator)
    emulator.clear_counters()
    try:
        assert wait_for(lambda: plain(h, "/datos").headers["Cache-Status"].startswith(
            "datos; hit; ttl=-"), interval=0.2)
        # a stale request started the refresh: its query is held now ...
        assert wait_for(lambda: held(emulator, fid) == 1)
        # ... and the requests answered meanwhile got the stale answer
        with ThreadPoolExecutor(8) as pool:
            stale = list(pool.map(lambda i: plain(h, "/datos?limit=%d" % (i + 1)), range(8)))
        assert held(emulator, fid) == 1        # still held: nobody waited for it
        for r in stale:
            assert r.status_code == 200
            assert re.fullmatch(r"datos; hit; ttl=-\d+", r.headers["Cache-Status"]), \
                r.headers["Cache-Status"]
            assert r.json()["datos"] == expected_answer(rows, len(r.json()["datos"]))
        assert stale[0].headers["ETag"] == plain(h, "/datos?limit=1").headers["ETag"]
        assert queries(emulator) == 1
        emulator.release_fault(fid)
        # the refresh lands; the next requests are fresh hits of the new answer
        assert wait_for(lambda: re.fullmatch(r"datos; hit; ttl=\d+",
                                             plain(h, "/datos").headers["Cache-Status"]))
    finally:
        emulator.release_fault(fid)
    assert queries(emulator) == 1
    assert int(plain(h, "/datos").headers["Age"]) <= int(fresh.headers["Age"]) + 60


# ---------------------------------------------------------------- workers

@pytest.mark.parametrize("mode", ["cold-cache", "uncached"])
@pytest.mark.parametrize("mpm", ["event", "prefork"])
def test_workers_stay_free_with_a_slow_backend(httpd_factory, emulator, mpm, mode):
    """BigQuery answers nothing until the test lets go; meanwhile 100 clients,
    more than MaxRequestWorkers, each ask /datos once on a new connection, and
    /health (a load balancer's probe) is answered every time: the workers that
    wait for BigQuery are bounded, the others are told to come back."""
    seed(emulator, many_rows(emulator))
    fid = hold_queries(emulator)
    h = start(httpd_factory, emulator, "cache-workers-%s-%s" % (mpm, mode), mpm=mpm,
              fresh_for="0" if mode == "uncached" else None, warm=False)
    # More clients than workers: httpd says when it has none left for a moment.
    h.log.expect(r"AH00484|AH00161")
    probes, load = [], []
    pool = ThreadPoolExecutor(100)
    try:
        def ask():
            return pool.submit(plain, h, "/datos", headers={"Connection": "close"},
                               timeout=180)

        def one_held():
            # Uncached, a request itself asks BigQuery: one first, alone (again if
            # it was told to come back: a server just started may not have the
            # idle workers a wait needs yet). Cached, the warm start's is held.
            if mode == "uncached" and (not load or load[-1].done()):
                load.append(ask())
            return held(emulator, fid) >= 1

        assert wait_for(one_held)
        load += [ask() for _ in range(100 - len(load))]
        for _ in range(8):
            probes.append(requests.get(h.url("/health"), timeout=60).status_code)
        asked = held(emulator, fid)
        rejected = metric(h, "datos_backend_wait_rejected_total")
    finally:
        emulator.release_fault(fid)
        pool.shutdown(wait=True)
    assert probes == [200] * 8, probes
    assert {f.result().status_code for f in load} <= {200, 503}
    # the bound applied: requests were turned away instead of waiting, and
    # BigQuery was asked once (the warm start), or once per waiting worker
    assert rejected > 0
    assert asked <= (1 if mode == "cold-cache" else {"event": 64, "prefork": 32}[mpm] // 4)


# ---------------------------------------------------------------- failures

def test_backend_down_serves_stale_until_stale_if_error(httpd_factory, emulator):
    """Fresh 1 s, stale-while-revalidate 1 s, stale-if-error 4 s: while
    BigQuery fails the answer fetched at tf is served until tf + 5 s, and a
    503 after. The first stale request is served stale at once (its refresh
    fails in the background); later ones say stale-if-error. tf is what the
    module reports (datos_backend_last_success_timestamp_seconds, the answer's
    fetch time); a request is judged only when its whole exchange lies on one
    side of a boundary, so a slow machine makes fewer judgements, never a
    wrong one."""
    rows = many_rows(emulator)
    seed(emulator, rows)
    fresh, until = 1.0, 5.0                         # fresh + stale-if-error
    h = start(httpd_factory, emulator, "cache-sie",
              extra="DatosFreshFor 1s\nDatosStaleWhileRevalidate 1s\nDatosStaleIfError 4s\n")
    h.log.expect(r"DT0201.*rate_limited")
    emulator.add_fault(endpoint="bigquery.jobs.query", action="status", status=429,
                       reason="rateLimitExceeded", count=0)
    first = plain(h, "/datos")
    assert first.status_code == 200
    # the warm start's fetch: the only one, since BigQuery fails from now on
    tf = metric(h, "datos_backend_last_success_timestamp_seconds")
    assert queries(emulator) == 1

    def at(t):
        time.sleep(max(0.0, tf + t - time.time()))
        sent = time.time()
        r = plain(h, "/datos")
        return r, sent, time.time()

    judged = 0
    for t in (1.3, 2.6, 3.9):
        # the first stale request's refresh failed (logged) before this one is sent
        failed = "DT0201" in open(h.log.path).read()
        r, sent, done = at(t)
        if done - tf >= until:
            continue                        # a stalled machine: this one may be either
        judged += 1
        assert r.status_code == 200, (t, r.text)
        assert r.content == first.content
        assert re.fullmatch(r"datos; hit; ttl=-\d+(; detail=stale-if-error)?",
                            r.headers["Cache-Status"]), (t, r.headers["Cache-Status"])
        if failed and sent - tf >= fresh + 1.0:
            # past stale-while-revalidate, and the refresh failed: said so
            assert r.headers["Cache-Status"].endswith("; detail=stale-if-error")
        assert int(r.headers["Age"]) >= 1
    assert judged, "no request could be judged inside the stale-if-error window"
    r, sent, done = at(until + 0.1)         # fresh 1 s + stale-if-error 4 s are over
    assert sent - tf > until
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
    assert get(h, "/health?ready").status_code == 200
    time.sleep(2.1)                        # past fresh + stale-while-revalidate
    r = plain(h, "/datos")
    assert r.status_code == 200
    assert r.content == first.content
    assert r.headers["ETag"] == first.headers["ETag"]
    assert "detail=stale-if-error" in r.headers["Cache-Status"]
    assert int(r.headers["Age"]) >= 2      # the original fetch time was kept


def test_cold_and_failing_is_a_503_with_no_query_per_request(httpd_factory, emulator):
    seed(emulator, many_rows(emulator))
    # a back-off far longer than the 20 requests take, however slow the machine
    emulator.add_fault(endpoint="bigquery.jobs.query", action="status", status=429,
                       reason="rateLimitExceeded", retry_after="60", count=0)
    h = start(httpd_factory, emulator, "cache-cold-fail", extra="DatosFreshFor 30s\n",
              warm=False)
    h.log.expect(r"DT0201.*rate_limited")
    # the warm start asked, and failed
    assert wait_for(lambda: queries(emulator) == 1 and "DT0201" in open(h.log.path).read())
    got = [plain(h, "/datos") for _ in range(20)]
    assert [r.status_code for r in got] == [503] * 20
    assert all(1 <= int(r.headers["Retry-After"]) <= 60 for r in got)
    assert get(h, "/health?ready").status_code == 503
    # the others waited out the back-off
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
    h = start(httpd_factory, emulator, "cache-bad-table", warm=False)
    h.log.expect(r"DT0201.*column contenido \(STRING\) is missing")
    assert wait_for(lambda: "DT0201" in open(h.log.path).read())
    r = plain(h, "/datos")
    assert r.status_code == 503
    assert queries(emulator) == 0
    lines = [l for l in open(h.log.path) if "DT0201" in l]
    assert len(lines) == 1 and "contenido" in lines[0]


# ---------------------------------------------------------------- conditional GET, gzip

def raw_get(h, path, headers):
    """The body as sent (no decoding), with the headers."""
    r = requests.get(h.url(path), headers=headers, stream=True, timeout=60)
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
                         timeout=60)
        assert r.status_code == 304
        assert r.content == b""
        assert r.headers["ETag"] == etag
        assert r.headers["Vary"] == "Accept-Encoding"
        assert r.headers["Cache-Control"].startswith("public, max-age=")
    # the other variant's tag does not match
    r = requests.get(h.url("/datos"), headers={"Accept-Encoding": "identity",
                                               "If-None-Match": g.headers["ETag"]}, timeout=60)
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
    head = requests.head(h.url("/datos"), headers={"Accept-Encoding": "gzip"}, timeout=60)
    assert head.headers["Content-Length"] == str(len(gbody))


# ---------------------------------------------------------------- one host, several tables

def test_virtual_hosts_serving_one_table_share_its_entry(httpd_factory, emulator):
    """Two virtual hosts of one table whose other settings differ are two
    runtimes, and one cache entry: one warm-start fetch, one state file
    (written under one mutex), the same answer on both, and while both are
    asked for a stale answer, one refresh."""
    rows = many_rows(emulator)
    seed(emulator, rows)
    h = httpd_factory("cache-vhosts-one-entry")
    other = "vhost-b.test"
    h.write_config(datos_conf(emulator, extra=METRICS + "DatosFreshFor 1s\n")
                   + "<VirtualHost *:${port}>\n  ServerName %s\n  DatosTimeout 50s\n"
                     "</VirtualHost>\n<VirtualHost *:${port}>\n  ServerName 127.0.0.1\n"
                     "</VirtualHost>\n" % other)
    h.start()
    ready(h)
    assert queries(emulator) == 1
    a = plain(h, "/datos")
    b = plain(h, "/datos", headers={"Host": other})
    assert a.status_code == b.status_code == 200
    assert a.headers["ETag"] == b.headers["ETag"]
    states = [n for n in os.listdir(h.path("state")) if n.endswith(".answer")]
    assert len(states) == 1, states
    fid = hold_queries(emulator)
    emulator.clear_counters()
    try:
        time.sleep(1.1)                     # both stale
        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(lambda i: plain(h, "/datos", headers={"Host": other}
                                                if i % 2 else {}), range(8)))
        assert all(r.status_code == 200 for r in got)
        assert wait_for(lambda: held(emulator, fid) == 1)
        assert queries(emulator) == 1
    finally:
        emulator.release_fault(fid)


# ---------------------------------------------------------------- metrics, health

def test_metrics_agree_with_what_was_done(httpd_factory, emulator):
    rows = many_rows(emulator)
    seed(emulator, rows)
    t0 = time.time()
    h = start(httpd_factory, emulator, "cache-metrics")
    for i in range(25):
        assert plain(h, "/datos?limit=%d" % (i + 1)).status_code == 200
    assert plain(h, "/datos?limit=0").status_code == 400
    assert get(h, "/health").status_code == 200
    text = get(h, "/metrics")
    assert text.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert metric(h, "datos_http_requests_total", handler="datos", code="200") == 25
    assert metric(h, "datos_http_requests_total", handler="datos", code="400") == 1
    assert metric(h, "datos_http_requests_total", handler="health", code="200") >= 1
    # the warm start's one fetch
    assert metric(h, "datos_backend_queries_total", outcome="ok") == queries(emulator) == 1
    assert metric(h, "datos_http_request_duration_seconds_count", handler="datos") == 26
    hits = metric(h, "datos_cache_lookups_total", tier="process", result="hit")
    misses = sum(metric(h, "datos_cache_lookups_total", tier="process", result=r)
                 for r in ("miss", "stale"))
    assert hits + misses == 25 and hits >= 20
    # the fetch (the warm start's) happened during the test, and the answer is no older
    assert t0 - 1 <= metric(h, "datos_backend_last_success_timestamp_seconds") <= time.time()
    assert 0 <= metric(h, "datos_cache_age_seconds") <= time.time() - t0 + 1
    assert metric(h, "datos_backend_waiting_requests") == 0
    assert metric(h, "datos_cache_entries_refused_total") == 0
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
    # liveness never touches Google, nor does readiness
    assert get(h, "/health").content == b'{"status":"ok"}'
    assert get(h, "/health?ready").content == b'{"status":"ready"}'
    r = get(h, "/health?deep=1")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/health+json"
    assert r.json()["status"] == "pass"
    assert queries(emulator) == 0
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
    assert get(h, "/health?ready").status_code == 200


def test_deep_health_fails_only_when_datos_would(httpd_factory, emulator):
    seed(emulator, many_rows(emulator))
    emulator.add_fault(endpoint="bigquery.jobs.query", action="status", status=429,
                       reason="rateLimitExceeded", count=0)
    h = start(httpd_factory, emulator, "cache-deep-fail", warm=False)
    h.log.expect(r"DT0201.*rate_limited")
    r = get(h, "/health?deep=1")
    assert r.status_code == 503
    assert r.json()["status"] == "fail"
    assert int(r.headers["Retry-After"]) >= 1
    assert plain(h, "/datos").status_code == 503
    assert get(h, "/health").status_code == 200
    assert get(h, "/health?ready").status_code == 503
