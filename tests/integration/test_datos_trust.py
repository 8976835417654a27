"""Nobody who can write to the fleet's memcached or redis, or to a host's state
directory, chooses what the hosts serve. Entries written there by hand (as an
attacker, or a host with another table or a clock running ahead, would write
them) are refused, counted and logged, and never served; a lease that never
ends does not stop the fleet's refreshes. The envelope and its seal are built
here independently of the module (docs/design.md 4.3): HMAC-SHA256 with the
secret over the cache key's length (4 bytes, little endian), the key and the
envelope's bytes; the fetch time is at offset 16."""
import hashlib
import hmac
import os
import shutil
import struct
import threading
import time

import pytest

from datos_env import (DATASET, METRICS, datos_conf, expected_answer, fleet_conf, get,
                       many_rows, metric, plain, ready, row, seed, wait_for, write_secret)

SEAL = 32


def socache_key(cache_key):
    """How mod_socache_memcache/redis name the entry of an id: namespace, ':',
    the id in hex."""
    return "mod-datos:" + cache_key.encode().hex()


def cache_key(h):
    """The server's cache key ("datos:v1:<hex>"), from its state file's name."""
    [name] = [n for n in os.listdir(h.path("state")) if n.endswith(".answer")]
    return "datos:v1:" + name[:-len(".answer")]


def sealed(envelope, secret, key):
    body = envelope[:-SEAL]
    mac = hmac.new(secret, struct.pack("<I", len(key)) + key.encode() + body,
                   hashlib.sha256).digest()
    return body + mac


def dated(envelope, fetched_us):
    return envelope[:16] + struct.pack("<q", fetched_us) + envelope[24:]


def lease(taken_us, secret, key, token=b"t" * 16):
    body = b"\x89DLEAS\r\n" + struct.pack("<II", 1, 0) + struct.pack("<q", taken_us) + token
    return sealed(body + b"\0" * SEAL, secret, key)


def other_table(emulator, rows):
    """A second table of the dataset, with rows of its own."""
    emulator.create_datos_table(DATASET, "otra")
    emulator.insert_rows([r.wire() for r in rows], DATASET, "otra")


class Overwriter:
    """Writes value under key again and again, as a persistent attacker would,
    until stopped."""

    def __init__(self, store, key, values):
        self.store, self.key, self.values = store, key, values
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self):
        i = 0
        while not self.stop.is_set():
            self.store.set(self.key, self.values[i % len(self.values)], ttl=3600)
            i += 1
            self.stop.wait(0.1)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


@pytest.fixture(autouse=True)
def no_faults_left(emulator):
    emulator.clear_faults()
    yield
    emulator.clear_faults()


def fleet_host(httpd_factory, emulator, name, kind, store, secret, table=None, fresh="1s",
               timeout="60s"):
    h = httpd_factory(name)
    path, key = write_secret(h, content=secret)
    extra = METRICS + fleet_conf(kind, store.address, path, fresh)
    if table:
        extra += "DatosTable %s.%s\n" % (DATASET, table)
    h.write_config(datos_conf(emulator, extra=extra, timeout=timeout))
    h.start()
    ready(h)
    return h, key


# ---------------------------------------------------------------- the fleet tier

@pytest.mark.parametrize("kind", ["memcache", "redis"])
def test_forged_fleet_entries_are_never_served(httpd_factory, emulator, memcached, redis, kind):
    """An entry of another table, sealed with another secret, or with the
    fleet's own secret but for another key, or changed by a byte, written over
    the victim's entry again and again: the victim refuses every one and
    serves its own table's rows, every time."""
    store = memcached if kind == "memcache" else redis
    mine = many_rows(emulator, prefix="v")
    theirs = many_rows(emulator, prefix="x")
    seed(emulator, mine)
    other_table(emulator, theirs)
    victim, secret = fleet_host(httpd_factory, emulator, "trust-victim-" + kind, kind, store,
                                "the fleet's own secret, long enough to be one\n")
    victim.log.expect(r"DT0308 .*is refused: answer envelope's seal does not match")
    # a host of another table and another secret, on the same tier
    other, _ = fleet_host(httpd_factory, emulator, "trust-other-" + kind, kind, store,
                          "another fleet's secret, long enough to be one\n", table="otra")
    key_v, key_x = cache_key(victim), cache_key(other)
    assert key_v != key_x
    entry_x = store.get(socache_key(key_x))
    entry_v = store.get(socache_key(key_v))
    assert entry_x and entry_v
    forged = [
        entry_x,                                   # another table, another secret
        sealed(entry_x, secret, key_x),            # the fleet's secret, another key
        entry_v[:100] + bytes([entry_v[100] ^ 1]) + entry_v[101:],   # a byte changed
    ]
    want = expected_answer(mine, 10)
    served = 0
    with Overwriter(store, socache_key(key_v), forged):
        t0 = time.time()
        while served < 80 or time.time() < t0 + 4:
            r = plain(victim, "/datos")
            assert r.status_code == 200
            assert r.json()["datos"] == want, "served an entry it did not write"
            served += 1
            time.sleep(0.02)
    refused = metric(victim, "datos_cache_entries_refused_total", tier="shared", reason="seal")
    assert refused >= 1                    # the forged entries were read, and refused


def test_a_future_dated_entry_does_not_freeze_the_fleet(httpd_factory, emulator, redis):
    """An entry sealed with the fleet's secret (a host whose clock runs a day
    ahead wrote it) says it was fetched tomorrow: taken, it would stay fresh
    for a day on every host. It is refused, and the fleet keeps refreshing:
    a row added to the table shows."""
    rows = many_rows(emulator)
    seed(emulator, rows)
    victim, secret = fleet_host(httpd_factory, emulator, "trust-future", "redis", redis,
                                "the fleet's own secret, long enough to be one\n")
    victim.log.expect(r"DT0308 .*fetched \d+ s from now")
    key = cache_key(victim)
    entry = redis.get(socache_key(key))
    tomorrow = int((time.time() + 86400) * 1_000_000)
    forged = sealed(dated(entry, tomorrow), secret, key)
    with Overwriter(redis, socache_key(key), [forged]):
        late = row("a-late-row", int(time.time() * 1_000_000), contenido="added later")
        emulator.insert_rows([late.wire()])
        assert wait_for(lambda: plain(victim, "/datos").json()["datos"][0]["id"] == "a-late-row")
    assert metric(victim, "datos_cache_entries_refused_total", tier="shared",
                  reason="future") >= 1


def test_a_lease_that_never_ends_does_not_stop_refreshes(httpd_factory, emulator, redis):
    """Refresh leases written over the fleet's lease again and again: one sealed
    with another secret, one dated tomorrow, one taken now and never dropped (a
    host that died while fetching). None stops the refreshes for longer than
    DatosTimeout: a row added to the table shows."""
    rows = many_rows(emulator)
    seed(emulator, rows)
    victim, secret = fleet_host(httpd_factory, emulator, "trust-lease", "redis", redis,
                                "the fleet's own secret, long enough to be one\n",
                                timeout="2s")
    victim.log.expect(r"DT0309 .*refresh lease .* is refused")
    lease_key = cache_key(victim) + ":refreshing"
    now_us = int(time.time() * 1_000_000)
    leases = [lease(now_us, b"not the fleet's secret, but long enough", lease_key),
              lease(now_us + 86400 * 1_000_000, secret, lease_key)]
    with Overwriter(redis, socache_key(lease_key), leases):
        late = row("a-late-row", int(time.time() * 1_000_000), contenido="added later")
        emulator.insert_rows([late.wire()])
        assert wait_for(lambda: plain(victim, "/datos").json()["datos"][0]["id"] == "a-late-row")
    assert metric(victim, "datos_cache_entries_refused_total", tier="shared",
                  reason="seal") >= 1
    # a lease taken now and written again and again, by a host with the secret
    later = row("b-later-row", int(time.time() * 1_000_000) + 1, contenido="added later still")

    def fresh_lease():
        return lease(int(time.time() * 1_000_000), secret, lease_key)

    stop = threading.Event()

    def keep_leasing():
        while not stop.is_set():
            redis.set(socache_key(lease_key), fresh_lease(), ttl=3600)
            stop.wait(0.1)

    t = threading.Thread(target=keep_leasing)
    t.start()
    try:
        emulator.insert_rows([later.wire()])
        assert wait_for(lambda: plain(victim, "/datos").json()["datos"][0]["id"] == "b-later-row")
    finally:
        stop.set()
        t.join()


# ---------------------------------------------------------------- the state directory

def test_forged_state_files_are_never_served(httpd_factory, emulator):
    """A host's state file replaced by another host's (another table, another
    secret), or by the file of another table of the same host (its own
    secret, another key): the host starts without it (warming), counts and
    logs it, and serves only what it fetches itself."""
    mine = many_rows(emulator, prefix="v")
    theirs = many_rows(emulator, prefix="x")
    seed(emulator, mine)
    other_table(emulator, theirs)
    other = httpd_factory("trust-state-other")
    other.write_config(datos_conf(emulator, extra="DatosTable %s.otra\n" % DATASET))
    other.start()
    ready(other)
    # the state file is written after the answer becomes servable
    assert wait_for(lambda: [n for n in os.listdir(other.path("state"))
                             if n.endswith(".answer")])
    [their_file] = [n for n in os.listdir(other.path("state")) if n.endswith(".answer")]

    h = httpd_factory("trust-state-victim")
    # two virtual hosts of two tables, one state directory (one secret)
    h.write_config(datos_conf(emulator, extra=METRICS)
                   + "<VirtualHost *:${port}>\n  ServerName otra.test\n"
                     "  DatosTable %s.otra\n</VirtualHost>\n"
                     "<VirtualHost *:${port}>\n  ServerName 127.0.0.1\n</VirtualHost>\n"
                   % DATASET)
    h.start()
    ready(h)
    assert wait_for(lambda: len([n for n in os.listdir(h.path("state"))
                                 if n.endswith(".answer")]) == 2)
    key = cache_key_of_table(h, other, their_file)
    mine_file = h.path("state", key + ".answer")
    sibling = h.path("state", their_file)
    h.stop()
    for forged in (other.path("state", their_file), sibling):
        shutil.copyfile(forged, mine_file + ".forged")
        os.replace(mine_file + ".forged", mine_file)
        fid = emulator.add_fault(endpoint="bigquery.jobs.query", action="hold", count=0)
        try:
            h.start()
            h.log.expect(r"DT0308 DatosStateDir: .* is refused")
            # the seed was refused: warming, while its own fetch is held
            assert wait_for(lambda: emulator.fault(fid)["held"] >= 1)
            assert get(h, "/health?ready").status_code == 503
            assert metric(h, "datos_cache_entries_refused_total", tier="state_dir",
                          reason="seal") >= 1
            emulator.release_fault(fid)
            ready(h)
            assert plain(h, "/datos").json()["datos"] == expected_answer(mine, 10)
        finally:
            emulator.release_fault(fid)
            h.stop()


def cache_key_of_table(h, other, their_file):
    """The victim's own file for the main table: the one that is not the
    other table's (both servers name a table's file alike)."""
    [name] = [n for n in os.listdir(h.path("state"))
              if n.endswith(".answer") and n != their_file]
    return name[:-len(".answer")]


def test_the_state_directory_secret_is_the_servers_alone(httpd_factory, emulator):
    """The state directory's secret is made at the first start, readable by the
    user httpd starts as only; one that anyone else could have made (here:
    readable by all) is replaced, and the answers sealed before are not taken."""
    rows = many_rows(emulator)
    seed(emulator, rows)
    h = httpd_factory("trust-state-secret")
    h.write_config(datos_conf(emulator, extra=METRICS))
    h.start()
    ready(h)
    key = h.path("state", "hmac.key")
    st = os.stat(key)
    assert st.st_uid == os.geteuid() and st.st_mode & 0o777 == 0o600
    assert st.st_size == 32
    first = plain(h, "/datos")
    h.stop()
    os.chmod(key, 0o644)
    fid = emulator.add_fault(endpoint="bigquery.jobs.query", action="hold", count=0)
    try:
        h.start()
        h.log.expect(r"DT0021 DatosStateDir: .*hmac.key was not a secret this server made")
        h.log.expect(r"DT0308 DatosStateDir: .* is refused")
        assert wait_for(lambda: emulator.fault(fid)["held"] >= 1)
        assert get(h, "/health?ready").status_code == 503
        assert os.stat(key).st_mode & 0o777 == 0o600
    finally:
        emulator.release_fault(fid)
    ready(h)
    assert plain(h, "/datos").content == first.content
