"""DatosKeepAliveLinger: after a /datos answer under the event MPM, the worker
that answered waits a moment for the kept-alive connection's next request and
reads it itself, instead of handing the connection back to the MPM's listener
thread (docs/apache.md, "Kept-alive connections").

Which worker read a request, and how many requests its connection had carried
before, is read from an access log with httpd's %{tid}P and %k; how each wait
ended, from datos_keepalive_lingers_total in /metrics."""
import http.client
import json
import os
import socket
import ssl
import subprocess

import pytest

from datos_env import (METRICS, contract_rows, datos_conf, expected_answer, many_rows, metric,
                       ready, seed, wait_for)

CONNS_LOG = 'CustomLog "${root}/logs/conns.log" "%{tid}P %k %U%q %>s"\n'
OUTCOMES = ("request", "idle", "closed", "skipped")
# One child of four threads: at most two may wait at once.
FOUR_THREADS = ("StartServers 1\nServerLimit 1\nThreadLimit 4\nThreadsPerChild 4\n"
                "MaxRequestWorkers 4\nMinSpareThreads 1\nMaxSpareThreads 4\n")


@pytest.fixture(scope="module")
def rows(emulator):
    rows = contract_rows(emulator.now())
    seed(emulator, rows)
    return rows


def start(httpd_factory, emulator, name, linger=None, mpm="event", extra="", **overrides):
    h = httpd_factory(name, mpm=mpm)
    conf = METRICS + CONNS_LOG + extra
    if linger is not None:
        conf += "DatosKeepAliveLinger %s\n" % linger
    h.write_config(datos_conf(emulator, extra=conf), **overrides)
    h.start()
    ready(h)
    return h


def lingers(h):
    return {o: int(metric(h, "datos_keepalive_lingers_total", outcome=o)) for o in OUTCOMES}


def logged(h, n):
    """The first n requests for /datos in the access log, as (thread,
    requests its connection carried before, target, status), once there
    are n."""
    path = h.path("logs", "conns.log")

    def lines():
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [tuple(line.split()) for line in f if line.split()[2].startswith("/datos")]

    assert wait_for(lambda: len(lines()) >= n)
    return lines()[:n]


def fetch(conn, path):
    conn.request("GET", path, headers={"Accept-Encoding": "identity"})
    r = conn.getresponse()
    return r.status, r.read()


def body_of(rows, limit):
    return {"datos": expected_answer(rows, limit)}


def test_back_to_back_requests_are_read_by_the_worker_that_answered(rows, httpd_factory,
                                                                     emulator):
    h = start(httpd_factory, emulator, "linger-on", linger="1s")
    c = http.client.HTTPConnection("127.0.0.1", h.port, timeout=60)
    for i in range(20):
        status, body = fetch(c, "/datos?limit=%d" % (1 + i % 5))
        assert status == 200
        assert json.loads(body) == body_of(rows, 1 + i % 5)
    # A wait ends (and is counted) before the request that ends it is
    # answered. A request that reached httpd before its check needed no wait
    # (the same worker reads it, as a pipelined one) and is not counted.
    seen = lingers(h)
    c.close()
    assert seen["request"] >= 1 and seen["skipped"] == 0, seen
    assert sum(seen.values()) <= 19, seen
    # one connection: the keep-alive count runs 0..19, and its requests
    # changed thread only where a wait ended without one
    log = logged(h, 20)
    assert [int(x[1]) for x in log] == list(range(20))
    changes = sum(1 for a, b in zip(log, log[1:]) if a[0] != b[0])
    assert changes <= seen["idle"], (log, seen)


def test_a_client_slower_than_the_wait_is_served_through_the_mpm(rows, httpd_factory,
                                                                  emulator):
    h = start(httpd_factory, emulator, "linger-idle", linger="1ms")
    c = http.client.HTTPConnection("127.0.0.1", h.port, timeout=60)
    assert fetch(c, "/datos")[0] == 200
    # nothing sent until the worker gave the connection back
    assert wait_for(lambda: lingers(h)["idle"] == 1), lingers(h)
    status, body = fetch(c, "/datos?limit=2")
    assert status == 200 and json.loads(body) == body_of(rows, 2)
    c.close()
    # the same connection carried it (its second request)
    assert [x[1] for x in logged(h, 2)] == ["0", "1"]


def read_response(f):
    """(status, body) of one HTTP/1.1 response with a Content-Length."""
    status = int(f.readline().split()[1])
    length = 0
    while True:
        line = f.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    return status, f.read(length)


def test_pipelined_requests_are_answered_in_order(rows, httpd_factory, emulator):
    h = start(httpd_factory, emulator, "linger-pipeline", linger="1s")
    s = socket.create_connection(("127.0.0.1", h.port), timeout=60)
    reqs = b"".join(b"GET /datos?limit=%d HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Accept-Encoding: identity\r\n\r\n" % n for n in (1, 2, 3))
    s.sendall(reqs)
    f = s.makefile("rb")
    for n in (1, 2, 3):
        status, body = read_response(f)
        assert status == 200
        assert json.loads(body) == body_of(rows, n)
    # the first two found their next request waiting: only the last one
    # waits, for a second, with nothing coming
    assert wait_for(lambda: lingers(h)["idle"] == 1), lingers(h)
    assert sum(lingers(h).values()) == 1, lingers(h)
    f.close()
    s.close()


def test_a_client_slow_to_take_the_answer_is_left_to_the_mpm(rows, httpd_factory, emulator):
    """Small socket buffers on both sides and answers of over 300 KB, which
    httpd does not force out before the request ends (FlushMaxThreshold
    above them): a write that does not block sends at most about 64 KB
    (one segment of the loopback), so the worker cannot send all of it and
    does not wait for the next request (the MPM finishes the write without
    a worker)."""
    seed(emulator, many_rows(emulator, n=120, width=4000, prefix="slow"))
    try:
        h = start(httpd_factory, emulator, "linger-slow", linger="1s",
                  extra="SendBufferSize 4096\nFlushMaxThreshold 16777216\n")
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(60)
        s.connect(("127.0.0.1", h.port))
        f = s.makefile("rb")
        for i in range(2):
            s.sendall(b"GET /datos?limit=100 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      b"Accept-Encoding: identity\r\n\r\n")
            status, body = read_response(f)
            assert status == 200 and len(body) > 300_000
            assert len(json.loads(body)["datos"]) == 100
            # Had the first answer's worker waited with the rest of the
            # answer still in httpd, the client could not have asked again:
            # the wait would have ended with nothing, after a second, before
            # the second answer. (Once all of an answer is out, a wait is
            # what it is for: the second request may end one.)
            seen = lingers(h)
            assert seen["idle"] == 0 and seen["closed"] == 0, (i, seen)
        f.close()
        s.close()
        # the big answers went out on one connection
        assert [x[1] for x in logged(h, 2)] == ["0", "1"]
    finally:
        seed(emulator, rows)


@pytest.mark.parametrize("mpm,linger", [("event", "0"), ("worker", None), ("prefork", None)])
def test_no_wait_when_off_or_when_the_mpm_keeps_its_worker(rows, httpd_factory, emulator, mpm,
                                                           linger):
    h = start(httpd_factory, emulator, "linger-none-%s" % mpm, linger=linger, mpm=mpm)
    c = http.client.HTTPConnection("127.0.0.1", h.port, timeout=60)
    for _ in range(5):
        assert fetch(c, "/datos")[0] == 200
    c.close()
    assert [x[1] for x in logged(h, 5)] == ["0", "1", "2", "3", "4"]
    assert sum(lingers(h).values()) == 0


def test_at_most_half_the_threads_wait(rows, httpd_factory, emulator):
    """Four threads: two connections whose workers wait leave the third
    connection's answer without a wait, and a fourth client is served."""
    h = start(httpd_factory, emulator, "linger-half", linger="1s", mpm_tuning=FOUR_THREADS)
    counted = 0
    for attempt in range(5):
        conns = [http.client.HTTPConnection("127.0.0.1", h.port, timeout=60) for _ in range(3)]
        for c in conns:
            assert fetch(c, "/datos")[0] == 200
        other = http.client.HTTPConnection("127.0.0.1", h.port, timeout=60)
        assert fetch(other, "/datos?limit=1")[0] == 200
        other.close()
        for c in conns:
            c.close()
        # the three each asked once, so each answer's check found nothing
        # and was counted (the fourth's is, unless its close came first)
        counted += 3
        assert wait_for(lambda: sum(lingers(h).values()) >= counted), lingers(h)
        counted = sum(lingers(h).values())
        # a machine too slow to answer three requests within the second
        # two of them wait would skip nothing: try again
        if lingers(h)["skipped"]:
            break
    assert lingers(h)["skipped"] >= 1, lingers(h)


def test_graceful_restart_and_stop_while_a_worker_waits(rows, httpd_factory, emulator):
    h = start(httpd_factory, emulator, "linger-stop", linger="1s")
    c = http.client.HTTPConnection("127.0.0.1", h.port, timeout=60)
    assert fetch(c, "/datos")[0] == 200
    h.graceful()
    ready(h)
    c2 = http.client.HTTPConnection("127.0.0.1", h.port, timeout=60)
    assert fetch(c2, "/datos")[0] == 200
    h.stop()
    c.close()
    c2.close()


def test_over_tls(rows, httpd_factory, emulator):
    h = httpd_factory("linger-tls")
    key, cert = h.path("conf", "server.key"), h.path("conf", "server.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    tls = ("LoadModule ssl_module /usr/lib/apache2/modules/mod_ssl.so\n"
           "LoadModule socache_shmcb_module /usr/lib/apache2/modules/mod_socache_shmcb.so\n"
           "SSLEngine on\nSSLCertificateFile %s\nSSLCertificateKeyFile %s\n" % (cert, key))
    h.write_config(datos_conf(emulator, extra=METRICS + CONNS_LOG + "DatosKeepAliveLinger 1s\n"
                              + tls))
    h.start()
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE

    def on_tls():
        try:
            c = http.client.HTTPSConnection("127.0.0.1", h.port, timeout=60, context=ctx)
            st = fetch(c, "/health?ready")[0]
            c.close()
            return st == 200
        except OSError:
            return False

    assert wait_for(on_tls)
    c = http.client.HTTPSConnection("127.0.0.1", h.port, timeout=60, context=ctx)
    for i in range(10):
        status, body = fetch(c, "/datos?limit=3")
        assert status == 200 and json.loads(body) == body_of(rows, 3)
    c.close()
    seen = lingers_tls(h, ctx)
    assert seen["request"] >= 1 and sum(seen.values()) <= 10, seen


def lingers_tls(h, ctx):
    c = http.client.HTTPSConnection("127.0.0.1", h.port, timeout=60, context=ctx)
    status, body = fetch(c, "/metrics")
    c.close()
    assert status == 200
    out = {}
    for line in body.decode().splitlines():
        if line.startswith("datos_keepalive_lingers_total{"):
            out[line.split('"')[1]] = int(float(line.split()[-1]))
    return out
