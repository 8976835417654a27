"""The series the shipped alert rules watch (conf/prometheus/datos-rules.yml),
each driven by what makes its alert fire, with the value checked, through
the real httpd, the real loader, the emulator's faults and real memcached
and redis.

test_prometheus_rules.py maps every series of the rules to the test here
(or elsewhere) that moves it, so a series nothing drives is a failure."""
import base64
import json
import os
import re
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from harness.loader import PIPELINE, Loader, make_pipeline
from harness.servers import Memcached, Redis
from datos_env import datos_conf, expected_answer, get, ready, row, seed, wait_for, write_secret

METRICS = """
<Location "/metrics">
  SetHandler datos-metrics
  Require ip 127.0.0.1
</Location>
"""

SERIES = re.compile(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)$")


def scrape(h):
    """{(name, frozenset of label pairs): value} from GET /metrics."""
    r = get(h, "/metrics")
    assert r.status_code == 200, r.text
    out = {}
    for line in r.text.splitlines():
        m = SERIES.match(line)
        if not m:
            continue
        labels = frozenset(re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def value(series, name, **labels):
    """One series' value; 0 when it is not exported (yet)."""
    return series.get((name, frozenset(labels.items())), 0.0)


def total(series, name, **labels):
    """The sum over the series of name whose labels include these."""
    want = set(labels.items())
    return sum(v for (n, ls), v in series.items() if n == name and want <= ls)


def many_rows(emulator, n=120, width=20):
    """n rows within the last day: one query (the first window) answers."""
    now_us = int(emulator.now()) * 1_000_000
    return [row("r%03d" % i, now_us - 3_600_000_000 - i * 1_000_000,
                contenido="c%d-" % i + "x" * width) for i in range(n)]


def start(httpd_factory, emulator, name, extra="", warm=True, **kw):
    """A server; warm: once its warm start (a fetch at once) is done."""
    h = httpd_factory(name)
    h.write_config(datos_conf(emulator, extra=METRICS + extra, **kw))
    h.start()
    if warm:
        ready(h)
    return h


def plain(h, path="/datos", **kw):
    return get(h, path, headers={"Accept-Encoding": "identity"}, **kw)


@pytest.fixture(autouse=True)
def no_faults_left(emulator):
    emulator.clear_faults()
    yield
    emulator.clear_faults()


# ------------------------------------------------- DatosCacheStoreFailing

def refusing_writes(kind):
    """A real fleet cache that answers reads but refuses to store an
    answer: memcached with a 1 KiB item limit (the entry is a few KiB, far
    below the 1 MiB that the module treats as simply too big), redis over
    its memory limit with no eviction (every write is refused with OOM)."""
    if kind == "memcache":
        if not shutil.which("memcached"):
            pytest.fail("memcached is not installed (make deps)")
        return Memcached(item_size="1k", extra=["-o", "slab_chunk_max=512"]).start()
    if not shutil.which("redis-server"):
        pytest.fail("redis-server is not installed (make deps)")
    return Redis(extra=["--maxmemory", "1", "--maxmemory-policy", "noeviction"]).start()


def fleet_conf(kind, address, secret):
    module = {"memcache": "socache_memcache", "redis": "socache_redis"}[kind]
    return ('LoadModule %s_module /usr/lib/apache2/modules/mod_%s.so\n'
            'DatosCache %s:%s\nDatosCacheSecretFile "%s"\nDatosFreshFor 30s\n'
            'DatosStaleWhileRevalidate 60s\n' % (module, module, kind, address, secret))


@pytest.mark.parametrize("kind", ["memcache", "redis"])
def test_a_shared_tier_that_refuses_writes_is_counted(httpd_factory, emulator, kind):
    rows = many_rows(emulator)
    seed(emulator, rows)
    cache = refusing_writes(kind)
    try:
        h = httpd_factory("series-l2-store-" + kind)
        secret, _ = write_secret(h)
        h.write_config(datos_conf(emulator, extra=METRICS + fleet_conf(kind, cache.address,
                                                                       secret)))
        # the provider's own error line, and the module's, once per process
        h.log.expect(r"AH00790|AH03478")
        h.log.expect(r"DT0301.*a write failed")
        h.start()
        ready(h)                            # the warm start fetched, and stored
        got = [plain(h, "/datos?limit=%d" % n) for n in (10, 60, 5)]
        # clients are served all along, from one fetch
        for r, n in zip(got, (10, 60, 5)):
            assert r.status_code == 200, r.text
            assert r.json()["datos"] == expected_answer(rows, n)
        assert emulator.count("bigquery.jobs.query") == 1
        after = scrape(h)
        assert value(after, "datos_backend_queries_total", outcome="ok") == 1
        # the write was refused and counted as a failure of the shared tier,
        # not as an answer too big for it nor as a failure of the state file
        assert value(after, "datos_cache_store_failures_total", tier="shared") >= 1
        assert value(after, "datos_cache_oversized_total") == 0
        assert value(after, "datos_cache_store_failures_total", tier="state_dir") == 0
        # while reads from the tier worked: it was asked, and had nothing
        assert value(after, "datos_cache_lookups_total", tier="shared", result="miss") >= 1
    finally:
        cache.stop()


def test_a_state_dir_that_cannot_be_written_is_counted(httpd_factory, emulator):
    """The state directory replaced by a regular file once httpd runs:
    writing under it fails with ENOTDIR whoever the workers run as. The next
    refresh (the answer goes stale after a second) counts it."""
    rows = many_rows(emulator)
    seed(emulator, rows)
    h = start(httpd_factory, emulator, "series-state-store", extra="DatosFreshFor 1s\n")
    h.log.expect(r"DT0305.*DatosStateDir: cannot write")
    state = h.path("state")
    shutil.rmtree(state)
    with open(state, "w") as f:
        f.write("not a directory\n")
    before = scrape(h)
    assert value(before, "datos_cache_store_failures_total", tier="state_dir") == 0
    emulator.clear_counters()
    time.sleep(1.1)                     # stale: the next request starts a refresh
    r = plain(h, "/datos?limit=20")
    assert r.status_code == 200, r.text
    assert r.json()["datos"] == expected_answer(rows, 20)
    assert wait_for(lambda: value(scrape(h), "datos_cache_store_failures_total",
                                  tier="state_dir") == 1)
    assert emulator.count("bigquery.jobs.query") == 1
    assert value(scrape(h), "datos_cache_store_failures_total", tier="shared") == 0


# ------------------------- DatosBigQueryFailing, DatosBigQueryNeedsAttention,
# ------------------------- DatosServerErrors

# What Google answers, and the outcome the fetch is counted under: the
# classes that need a human (DatosBigQueryNeedsAttention) and two that a
# retry cures (DatosBigQueryFailing only).
BACKEND_FAULTS = [
    (dict(status=403, reason="accessDenied"), "auth"),
    (dict(status=403, reason="quotaExceeded"), "quota"),
    (dict(status=400, reason="bytesBilledLimitExceeded"), "bytes_limit"),
    (dict(status=400, reason="invalidQuery"), "rejected"),
    (dict(status=429, reason="rateLimitExceeded"), "rate_limited"),
    (dict(status=500, reason="backendError"), "backend_error"),
]


def test_each_failed_fetch_is_counted_by_outcome(httpd_factory, emulator):
    """Uncached (one fetch per request), so each request is one outcome."""
    rows = many_rows(emulator)
    seed(emulator, rows)
    h = start(httpd_factory, emulator, "series-outcomes", fresh_for="0")
    h.log.expect(r"DT0201")
    for fault, outcome in BACKEND_FAULTS:
        before = scrape(h)
        emulator.add_fault(endpoint="bigquery.jobs.query", action="status", count=1, **fault)
        r = plain(h)
        assert 500 <= r.status_code <= 599, (outcome, r.status_code, r.text)
        after = scrape(h)
        for o in ("ok", "auth", "quota", "bytes_limit", "rejected", "config", "rate_limited",
                  "backend_error", "insecure_url"):
            want = 1 if o == outcome else 0
            got = value(after, "datos_backend_queries_total", outcome=o) - \
                value(before, "datos_backend_queries_total", outcome=o)
            assert got == want, (fault, o, got)
        code = str(r.status_code)
        assert value(after, "datos_http_requests_total", handler="datos", code=code) - \
            value(before, "datos_http_requests_total", handler="datos", code=code) == 1
    # and a success is counted as one, with its 200
    before = scrape(h)
    r = plain(h)
    assert r.status_code == 200
    assert r.json()["datos"] == expected_answer(rows, 10)
    after = scrape(h)
    assert value(after, "datos_backend_queries_total", outcome="ok") - \
        value(before, "datos_backend_queries_total", outcome="ok") == 1
    assert total(after, "datos_backend_queries_total") - \
        total(before, "datos_backend_queries_total") == 1
    assert value(after, "datos_http_requests_total", handler="datos", code="200") - \
        value(before, "datos_http_requests_total", handler="datos", code="200") == 1
    # every 5xx sent is in the series DatosServerErrors divides
    fivexx = sum(v for (n, ls), v in after.items()
                 if n == "datos_http_requests_total" and ("handler", "datos") in ls
                 and dict(ls)["code"].startswith("5"))
    assert fivexx == len(BACKEND_FAULTS)


def test_a_table_that_cannot_hold_the_record_is_a_config_outcome(httpd_factory, emulator):
    seed(emulator, [])
    emulator.reset()
    emulator.create_dataset("latam_dataset", location="southamerica-east1")
    emulator._api("POST", "/projects/%s/datasets/latam_dataset/tables" % emulator.project,
                  {"tableReference": {"projectId": emulator.project, "datasetId": "latam_dataset",
                                      "tableId": "datos"},
                   "schema": {"fields": [{"name": "id", "type": "STRING", "mode": "REQUIRED"},
                                         {"name": "timestamp", "type": "TIMESTAMP",
                                          "mode": "REQUIRED"}]}})
    h = start(httpd_factory, emulator, "series-config", fresh_for="0")
    h.log.expect(r"DT0201.*column contenido \(STRING\) is missing")
    got = [plain(h).status_code for _ in range(3)]
    assert all(500 <= s <= 599 for s in got), got
    after = scrape(h)
    assert value(after, "datos_backend_queries_total", outcome="config") == 3
    assert total(after, "datos_backend_queries_total") == 3


# ------------------------------------------------------- DatosAnswerStale

TABLE_LABEL = "latam_dataset.datos"


def test_the_answer_ages_while_bigquery_fails(httpd_factory, emulator):
    """The module's clock is the host's, so the answer is let grow older
    than its freshness window for real; only lower bounds are asserted,
    which a slow machine can only make truer."""
    rows = many_rows(emulator)
    seed(emulator, rows)
    h = start(httpd_factory, emulator, "series-age",
              extra="DatosFreshFor 1s\nDatosStaleWhileRevalidate 0s\nDatosStaleIfError 1h\n")
    h.log.expect(r"DT0201.*rate_limited")
    first = plain(h)
    assert first.status_code == 200
    s1 = scrape(h)
    fetched = value(s1, "datos_backend_last_success_timestamp_seconds", table=TABLE_LABEL)
    assert fetched > 0
    age1 = value(s1, "datos_cache_age_seconds", table=TABLE_LABEL)
    assert age1 >= 0
    emulator.add_fault(endpoint="bigquery.jobs.query", action="status", status=429,
                       reason="rateLimitExceeded", count=0)
    time.sleep(1.5)                    # past DatosFreshFor: a request must ask BigQuery
    r = plain(h)
    # the client is still served, the last good answer (stale-if-error)
    assert r.status_code == 200
    assert r.content == first.content
    assert "detail=stale-if-error" in r.headers["Cache-Status"]
    s2 = scrape(h)
    assert value(s2, "datos_backend_queries_total", outcome="rate_limited") >= 1
    # nothing newer came: the age counts on from the same fetch
    assert value(s2, "datos_backend_last_success_timestamp_seconds", table=TABLE_LABEL) == fetched
    age2 = value(s2, "datos_cache_age_seconds", table=TABLE_LABEL)
    assert age2 >= 1.5
    assert age2 >= age1 + 1.5
    assert age2 >= int(r.headers["Age"])
    # the traffic the rule requires alongside the age
    assert value(s2, "datos_http_requests_total", handler="datos", code="200") == 2


# --------------------------------------------------- DatosWaitingRejected

def test_requests_over_the_waiting_bound_are_counted(httpd_factory, emulator):
    """DatosMaxWaiting 1: while the warm start's fetch is held at BigQuery on
    a cold host, one request waits for it and the others find no room to wait
    and are told to come back; each such refusal is counted."""
    rows = many_rows(emulator)
    seed(emulator, rows)
    fid = emulator.add_fault(endpoint="bigquery.jobs.query", action="hold", count=0)
    try:
        h = start(httpd_factory, emulator, "series-wait-rejected", warm=False,
                  extra="DatosFreshFor 30s\nDatosMaxWaiting 1\n")
        assert wait_for(lambda: emulator.fault(fid)["held"] == 1)
        waiter = {}

        def wait_for_it():
            waiter["r"] = plain(h, timeout=60)

        t = threading.Thread(target=wait_for_it)
        t.start()
        assert wait_for(lambda: value(scrape(h), "datos_backend_waiting_requests") == 1)
        with ThreadPoolExecutor(4) as pool:
            others = list(pool.map(lambda i: plain(h, "/datos?limit=%d" % (i + 1), timeout=60),
                                   range(4)))
        emulator.release_fault(fid)
        t.join(60)
    finally:
        emulator.release_fault(fid)
    assert waiter["r"].status_code == 200
    assert waiter["r"].json()["datos"] == expected_answer(rows, 10)
    refused = [r for r in others if r.status_code == 503]
    assert refused, [r.status_code for r in others]
    for r in refused:
        assert int(r.headers["Retry-After"]) >= 1
        assert r.json()["error"]["code"] == 503
    s = scrape(h)
    # at least one count per refused client (a request over the bound that
    # then found the answer in its brief look was counted too, and served)
    assert value(s, "datos_backend_wait_rejected_total") >= len(refused)
    assert value(s, "datos_backend_wait_rejected_total") <= len(others)
    assert value(s, "datos_http_requests_total", handler="datos", code="503") == len(refused)
    assert value(s, "datos_backend_waiting_requests") == 0
    assert emulator.count("bigquery.jobs.query") == 1


# ------------------------------- DatosIngestFailing, DatosIngestPublishSlow

INGEST_TOKEN = "series-ingest-token"
INGEST_GUARD = """
<Location "/datos">
  <LimitExcept GET HEAD OPTIONS>
    Require expr "%%{HTTP:Authorization} == 'Bearer %s'"
  </LimitExcept>
</Location>
""" % INGEST_TOKEN


@pytest.fixture
def ingest_server(emulator, httpd_factory):
    make_pipeline(emulator)
    h = httpd_factory("series-ingest")
    h.write_config(datos_conf(emulator, extra=METRICS + INGEST_GUARD + (
        "DatosIngest On\nDatosPubSubURL %s\nDatosTopic projects/%s/topics/%s\n"
        "DatosTimeout 10s\nDatosColdWait 10s\n"
        % (emulator.base_url, emulator.project, PIPELINE["topic"]))))
    h.start()
    return h


def post_record(h, rid):
    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
    return requests.post(h.url("/datos"), timeout=60,
                         data=json.dumps({"id": rid, "contenido": "x", "timestamp": ts}),
                         headers={"Content-Type": "application/json",
                                  "Authorization": "Bearer " + INGEST_TOKEN})


def test_refused_publishes_are_counted_by_code(emulator, ingest_server):
    h = ingest_server
    h.log.expect(r"DT0404")
    before = scrape(h)
    assert post_record(h, "ok-1").status_code == 202
    codes = []
    for fault in (dict(status=503), dict(status=429, retry_after=3), dict(status=500)):
        emulator.add_fault(endpoint="pubsub.topics.publish", action="status", count=1, **fault)
        r = post_record(h, "refused")
        assert 500 <= r.status_code <= 599, r.text
        codes.append(str(r.status_code))
    assert post_record(h, "ok-2").status_code == 202
    after = scrape(h)

    def delta(code):
        return value(after, "datos_ingest_requests_total", code=code) - \
            value(before, "datos_ingest_requests_total", code=code)

    assert delta("202") == 2
    for code in set(codes):
        assert delta(code) == codes.count(code), (code, codes)
    assert total(after, "datos_ingest_requests_total") - \
        total(before, "datos_ingest_requests_total") == 5
    # only the two accepted records reached the topic
    got = emulator.drain(PIPELINE["subscription"])
    assert sorted(json.loads(base64.b64decode(m["message"]["data"]))["id"]
                  for m in got) == ["ok-1", "ok-2"]


def histogram_quantile(q, buckets):
    """PromQL's histogram_quantile over {upper bound: cumulative count}."""
    bounds = sorted(buckets)
    n = buckets[float("inf")]
    if n == 0:
        return float("nan")
    rank = q * n
    prev_bound, prev_count = 0.0, 0.0
    for b in bounds:
        if buckets[b] >= rank:
            if b == float("inf"):
                return bounds[-2]
            return prev_bound + (b - prev_bound) * (rank - prev_count) / (buckets[b] - prev_count)
        prev_bound, prev_count = b, buckets[b]
    return bounds[-2]


def test_a_slow_publish_lands_in_the_slow_buckets(emulator, ingest_server):
    """Pub/Sub holds the publish 3 s (the emulator's fault): the observation
    is above every bucket up to 2.5 s, so the alert's 99th percentile is
    over its 2 s threshold. Only lower bounds on the duration are used."""
    h = ingest_server
    before = scrape(h)
    emulator.add_fault(endpoint="pubsub.topics.publish", action="delay", delay_ms=3000, count=1)
    r = post_record(h, "slow")
    assert r.status_code == 202, r.text
    after = scrape(h)
    name = "datos_ingest_publish_duration_seconds_bucket"
    delta = {}
    for (n, ls), v in after.items():
        if n == name:
            le = dict(ls)["le"]
            delta[float(le)] = v - before.get((n, ls), 0.0)
    assert delta[float("inf")] == 1
    assert all(delta[b] == 0 for b in delta if b <= 2.5), delta
    assert value(after, "datos_ingest_publish_duration_seconds_count") - \
        value(before, "datos_ingest_publish_duration_seconds_count") == 1
    assert value(after, "datos_ingest_publish_duration_seconds_sum") - \
        value(before, "datos_ingest_publish_duration_seconds_sum") >= 3.0
    assert histogram_quantile(0.99, delta) > 2


# --------------------- DatosLoaderNotRunning, DatosLoaderMetricsAbsent,
# --------------------- DatosLoaderFailing, DatosLoaderQuotaExhausted,
# --------------------- DatosLoaderDeadLetteringMany

def rfc3339(epoch):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + ".%06dZ" % (
        int(round(epoch * 1e6)) % 1_000_000)


def publish_records(emulator, prefix, valid, invalid=()):
    now = emulator.now()
    msgs = [json.dumps({"id": "%s%02d" % (prefix, i), "contenido": "x",
                        "timestamp": rfc3339(now - 100 - i)}) for i in range(valid)]
    return emulator.publish(PIPELINE["topic"], msgs + list(invalid))


def timed_run(loader):
    t0 = time.time()
    r = loader.run()
    return r, t0, time.time()


def test_the_loader_textfile_follows_runs_quota_and_dead_letters(emulator):
    make_pipeline(emulator)
    table = "%s:latam_dataset.datos" % emulator.project
    invalid = ['{"id": "bad0", "timestamp": "not a time"}',
               '{"id": "bad1", "timestamp": "2024-01-14T14:00:00.5"}', "not json"]
    publish_records(emulator, "a", 6, invalid)
    loader = Loader(emulator, "series-textfile")
    # nothing before the first run: what DatosLoaderMetricsAbsent sees
    assert not os.path.exists(loader.metrics_file)

    # 1. BigQuery's daily load-job quota is spent: the run fails
    emulator.set_load_counter(table, 1500)
    r, t0, t1 = timed_run(loader)
    assert r.rc == 1, r
    assert r.one("load_quota_exhausted")
    m1 = loader.metrics()
    # the run's end, on the host's clock (time() - this is the alert's age)
    assert t0 - 0.001 <= m1["datos_loader_last_run_timestamp_seconds"] <= t1 + 0.001
    # never a success yet: the series is absent, DatosLoaderFailing's
    # `unless` branch
    assert "datos_loader_last_success_timestamp_seconds" not in m1
    assert m1['datos_loader_load_jobs_total{outcome="quota_exceeded"}'] == 1
    assert m1['datos_loader_load_jobs_total{outcome="succeeded"}'] == 0
    # every delivery counts as pulled; the invalid ones are dead-lettered
    # at once, by reason
    assert m1["datos_loader_messages_pulled_total"] == 9
    assert m1['datos_loader_messages_invalid_total{reason="bad_timestamp"}'] == 2
    assert m1['datos_loader_messages_invalid_total{reason="not_json"}'] == 1
    invalid_total = sum(v for k, v in m1.items()
                        if k.startswith("datos_loader_messages_invalid_total{"))
    assert invalid_total == 3
    # DatosLoaderDeadLetteringMany's ratio for this hour
    assert invalid_total / m1["datos_loader_messages_pulled_total"] > 0.10
    assert emulator.table_rows() == []

    # 2. the quota is back: the valid messages, given back to Pub/Sub, load
    emulator.set_load_counter(table, 0)
    r, t0, t1 = timed_run(loader)
    assert r.rc == 0, r
    m2 = loader.metrics()
    assert t0 - 0.001 <= m2["datos_loader_last_run_timestamp_seconds"] <= t1 + 0.001
    assert m2["datos_loader_last_success_timestamp_seconds"] == \
        m2["datos_loader_last_run_timestamp_seconds"]
    assert m2['datos_loader_load_jobs_total{outcome="succeeded"}'] == 1
    # counters carry on from the file
    assert m2['datos_loader_load_jobs_total{outcome="quota_exceeded"}'] == 1
    assert m2["datos_loader_messages_pulled_total"] == 9 + 6
    assert m2['datos_loader_messages_invalid_total{reason="bad_timestamp"}'] == 2
    assert m2["datos_loader_rows_loaded_total"] == 6
    assert sorted(x["id"] for x in emulator.table_rows()) == ["a%02d" % i for i in range(6)]

    # 3. quota spent again: the run fails, the last success stays where it was
    publish_records(emulator, "b", 2)
    emulator.set_load_counter(table, 1500)
    r, t0, t1 = timed_run(loader)
    assert r.rc == 1, r
    m3 = loader.metrics()
    assert t0 - 0.001 <= m3["datos_loader_last_run_timestamp_seconds"] <= t1 + 0.001
    assert m3["datos_loader_last_success_timestamp_seconds"] == \
        m2["datos_loader_last_success_timestamp_seconds"]
    assert m3["datos_loader_last_run_timestamp_seconds"] >= \
        m3["datos_loader_last_success_timestamp_seconds"]
    assert m3['datos_loader_load_jobs_total{outcome="quota_exceeded"}'] == 2
    assert m3["datos_loader_messages_pulled_total"] == 9 + 6 + 2
