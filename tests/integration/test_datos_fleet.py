"""Fleets: hosts sharing one memcached or redis (the real servers). BigQuery is
asked about once per freshness window for the whole fleet, whatever the number
of hosts; the tier needs its secret; an answer too big for it, or a failing
tier, costs no query per request. Forged entries are test_datos_trust.py's."""
import math
import threading
import time

import pytest
import requests

from datos_env import (METRICS, datos_conf, expected_answer, fleet_conf, get, many_rows,
                       metric, plain, queries, ready, seed, write_secret)


@pytest.fixture(autouse=True)
def no_faults_left(emulator):
    emulator.clear_faults()
    yield
    emulator.clear_faults()


def host(httpd_factory, emulator, name, kind, address, secret, fresh="2s", extra=""):
    """A fleet host, ready; secret is the fleet's secret text (the same file on
    every host)."""
    h = httpd_factory(name)
    path, _ = write_secret(h, content=secret)
    h.write_config(datos_conf(emulator, extra=METRICS + fleet_conf(kind, address, path, fresh)
                              + extra))
    h.start()
    ready(h)
    return h


def fleet_secret():
    return "a fleet secret of more than thirty-two bytes, the same everywhere\n"


@pytest.mark.parametrize("kind", ["memcache", "redis"])
def test_two_hosts_share_one_query_per_window(httpd_factory, emulator, memcached, redis, kind):
    rows = many_rows(emulator)
    seed(emulator, rows)
    address = memcached.address if kind == "memcache" else redis.address
    a = host(httpd_factory, emulator, "fleet-a-" + kind, kind, address, fleet_secret())
    # the second host's warm start finds the first one's answer: no query
    b = host(httpd_factory, emulator, "fleet-b-" + kind, kind, address, fleet_secret())
    assert queries(emulator) == 1
    ra = plain(a, "/datos")
    rb = plain(b, "/datos")
    assert ra.status_code == rb.status_code == 200
    assert ra.headers["ETag"] == rb.headers["ETag"]
    assert ra.content == rb.content
    assert ra.json()["datos"] == expected_answer(rows, 10)
    # Over three more windows both hosts keep serving, and between them they
    # ask about once per window.
    t0 = time.time()
    while time.time() < t0 + 6:
        for h in (a, b):
            r = plain(h, "/datos?limit=50")
            assert r.status_code == 200
        time.sleep(0.05)
    windows = (time.time() - t0) / 2.0
    assert queries(emulator) <= 1 + math.ceil(windows) + 1
    assert plain(a, "/datos").headers["ETag"] == plain(b, "/datos").headers["ETag"]


def test_four_hosts_make_about_one_query_per_window(httpd_factory, emulator, redis):
    """Four hosts on one redis, under a steady load, with BigQuery taking
    400 ms: the refresh lease in the shared tier makes one host fetch each
    window while the others serve stale and then read its answer. Without it,
    hosts that find the answer stale at the same moment would each fetch."""
    rows = many_rows(emulator)
    seed(emulator, rows)
    emulator.add_fault(endpoint="bigquery.jobs.query", action="delay", delay_ms=400, count=0)
    hosts = [host(httpd_factory, emulator, "fleet4-%d" % i, "redis", redis.address,
                  fleet_secret()) for i in range(4)]
    emulator.clear_counters()
    served = []
    stop = time.time() + 12

    def load(i):
        s = requests.Session()
        n = 0
        # at least 12 s (six windows), and at least 200 requests however slow
        # the machine
        while time.time() < stop or len(served) < 200:
            r = s.get(hosts[(i + n) % 4].url("/datos"),
                      headers={"Accept-Encoding": "identity"}, timeout=60)
            assert r.status_code == 200
            served.append(r.headers["Cache-Status"])
            n += 1
            time.sleep(0.01)

    t0 = time.time()
    threads = [threading.Thread(target=load, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    windows = (time.time() - t0) / 2.0
    asked = queries(emulator)
    # every host kept serving, every window, without waiting
    assert len(served) >= 200
    assert all(c.startswith("datos; hit; ttl=") for c in served), set(served)
    # about one query per window for the four (at most 1.2, and one in flight);
    # four hosts fetching on their own would make about four
    assert 1 <= asked <= 1.2 * windows + 1, (asked, windows)


def test_a_fleet_tier_needs_its_secret(httpd_factory, emulator, redis):
    h = httpd_factory("fleet-no-secret")
    h.write_config(datos_conf(emulator, extra=(
        "LoadModule socache_redis_module /usr/lib/apache2/modules/mod_socache_redis.so\n"
        "DatosCache redis:%s\n" % redis.address)))
    rc, out = h.configtest()
    assert rc != 0
    assert "DatosCacheSecretFile: required with DatosCache redis:" in out, out
    # readable by others: refused, naming the file and its mode
    path, _ = write_secret(h)
    h.write_file("cache.secret", open(path).read(), mode=0o644)
    h.write_config(datos_conf(emulator, extra=fleet_conf("redis", redis.address, path)))
    rc, out = h.configtest()
    assert rc != 0 and "DatosCacheSecretFile" in out and "mode 0644" in out, out
    # too short to be a secret (and never echoed)
    h.write_file("cache.secret", "tiny-secret\n", mode=0o600)
    rc, out = h.configtest()
    assert rc != 0 and "holds 11 bytes" in out and "at least 32" in out, out
    assert "tiny-secret" not in out


def test_an_entry_too_big_for_the_shared_tier_still_takes_one_query(httpd_factory, emulator,
                                                                      memcached):
    rows = many_rows(emulator, n=6, width=300_000)     # about 1.8 MB: over memcached's 1 MB item
    seed(emulator, rows)
    h = host(httpd_factory, emulator, "fleet-oversized", "memcache", memcached.address,
             fleet_secret(), fresh="30s", extra="DatosMaxPayload 4M\nDatosLimit 6 6\n")
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda i: plain(h, "/datos?limit=%d" % (1 + i % 6)), range(64)))
    assert all(r.status_code == 200 for r in got)
    assert queries(emulator) == 1       # the other processes read it from DatosStateDir
    assert metric(h, "datos_cache_oversized_total") >= 1


def test_a_failing_shared_tier_is_skipped(httpd_factory, emulator, memcached):
    rows = many_rows(emulator)
    seed(emulator, rows)
    h = host(httpd_factory, emulator, "fleet-l2-down", "memcache", memcached.address,
             fleet_secret(), fresh="1s")
    h.log.expect(r"DT0301")
    assert plain(h, "/datos").status_code == 200
    memcached.stop()
    t0 = time.time()
    n = 0
    while time.time() < t0 + 3.5 or n < 20:
        r = plain(h, "/datos?limit=%d" % (1 + n % 100))
        assert r.status_code == 200, r.text
        assert r.json()["datos"] == expected_answer(rows, 1 + n % 100)
        n += 1
    # BigQuery is still asked about once per window, not per request
    windows = (time.time() - t0) / 1.0
    assert 2 <= queries(emulator) <= windows + 3
    assert get(h, "/health").status_code == 200
