"""The series the shipped alert rules watch (conf/prometheus/datos-rules.yml),
each driven by what makes its alert fire, with the value checked, through
the real httpd, the real loader, the emulator's faults and real memcached
and redis.

test_prometheus_rules.py maps every series of the rules to the test here
(or elsewhere) that moves it, so a series nothing drives is a failure."""
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
from datos_env import datos_conf, expected_answer, get, row, seed, wait_for

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


def start(httpd_factory, emulator, name, extra="", **kw):
    h = httpd_factory(name)
    h.write_config(datos_conf(emulator, extra=METRICS + extra, **kw))
    h.start()
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


def fleet_conf(kind, address):
    module = {"memcache": "socache_memcache", "redis": "socache_redis"}[kind]
    return ('LoadModule %s_module /usr/lib/apache2/modules/mod_%s.so\n'
            'DatosCache %s:%s\nDatosFreshFor 30s\nDatosStaleWhileRevalidate 60s\n'
            % (module, module, kind, address))


@pytest.mark.parametrize("kind", ["memcache", "redis"])
def test_a_shared_tier_that_refuses_writes_is_counted(httpd_factory, emulator, kind):
    rows = many_rows(emulator)
    seed(emulator, rows)
    cache = refusing_writes(kind)
    try:
        h = start(httpd_factory, emulator, "series-l2-store-" + kind,
                  extra=fleet_conf(kind, cache.address))
        # the provider's own error line, and the module's, once per process
        h.log.expect(r"AH00790|AH03478")
        h.log.expect(r"DT0301.*a write failed")
        before = scrape(h)
        assert value(before, "datos_cache_store_failures_total", tier="shared") == 0
        emulator.clear_counters()
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
    writing under it fails with ENOTDIR whoever the workers run as."""
    rows = many_rows(emulator)
    seed(emulator, rows)
    h = start(httpd_factory, emulator, "series-state-store", extra="DatosFreshFor 30s\n")
    h.log.expect(r"DT0305.*DatosStateDir: cannot write")
    state = h.path("state")
    shutil.rmtree(state)
    with open(state, "w") as f:
        f.write("not a directory\n")
    before = scrape(h)
    assert value(before, "datos_cache_store_failures_total", tier="state_dir") == 0
    emulator.clear_counters()
    r = plain(h, "/datos?limit=20")
    assert r.status_code == 200, r.text
    assert r.json()["datos"] == expected_answer(rows, 20)
    assert emulator.count("bigquery.jobs.query") == 1
    after = scrape(h)
    assert value(after, "datos_cache_store_failures_total", tier="state_dir") == 1
    assert value(after, "datos_cache_store_failures_total", tier="shared") == 0
