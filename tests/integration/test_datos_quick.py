"""The quick path: /datos cache hits answered from httpd's quick_handler hook,
before the location and directory walks, only where the configuration shows
nothing that would answer differently (docs/apache.md, "The quick path").
Which path answered is read from a second access log that records the handler
(%R: "-" when the quick handler answered, "datos" when the handler did)."""
import gzip
import http.client
import re

import pytest
import requests

from datos_env import (METRICS, datos_conf, get, many_rows, metric, plain, ready, seed,
                       wait_for)

HANDLERS_LOG = 'CustomLog "${root}/logs/handlers.log" "%R %r %>s"\n'
INFO = "LogLevel notice datos:info\n"
MODULES = "/usr/lib/apache2/modules"


def start(httpd_factory, emulator, name, extra="", handlers=None):
    """A server whose handlers.log tells which path answered. handlers: the
    <Location> sections for the datos handlers (datos_conf's by default)."""
    h = httpd_factory(name)
    conf = datos_conf(emulator, extra=METRICS + HANDLERS_LOG + INFO + extra)
    if handlers is not None:
        conf = conf.replace('<Location "/datos">\n  SetHandler datos\n</Location>\n', handlers)
    h.write_config(conf)
    h.start()
    ready(h)
    return h


def paths_taken(h):
    """(handler, method, target as sent, status) of each request in
    handlers.log so far."""
    out = []
    with open(h.path("logs", "handlers.log")) as f:
        for line in f:
            handler, method, target, _, status = line.split()
            out.append((handler, method, target, status))
    return out


def answered_by(h, method="GET", path="/datos"):
    """The handler field of the last logged request for path."""
    # the access log is written after the answer: wait until it is there
    wait_for(lambda: any(e[1] == method and e[2] == path for e in paths_taken(h)))
    return [e for e in paths_taken(h) if e[1] == method and e[2] == path][-1][0]


@pytest.fixture(autouse=True)
def no_faults_left(emulator):
    emulator.clear_faults()
    yield
    emulator.clear_faults()


def test_hits_take_the_quick_path_and_the_rest_the_handler(httpd_factory, emulator):
    rows = many_rows(emulator)
    seed(emulator, rows)
    h = start(httpd_factory, emulator, "quick-paths")
    assert "DT0503" in open(h.log.path).read()      # "/datos: ... served by the quick path"
    assert plain(h, "/datos").status_code == 200
    assert answered_by(h, path="/datos") == "-"
    assert plain(h, "/datos?limit=7").status_code == 200
    assert answered_by(h, path="/datos?limit=7") == "-"
    assert requests.head(h.url("/datos"), timeout=60).status_code == 200
    assert answered_by(h, method="HEAD") == "-"
    # not a hit: the handler answers, as it always did
    r = plain(h, "/datos?limit=abc")
    assert r.status_code == 400 and r.json()["error"]["code"] == 400
    assert answered_by(h, path="/datos?limit=abc") == "datos"
    # only the exact path, as sent: httpd decodes the rest first
    for path in ("/dat%6fs", "/datos/", "//datos", "/./datos"):
        c = http.client.HTTPConnection("127.0.0.1", h.port, timeout=60)
        c.request("GET", path)
        c.getresponse().read()
        c.close()
        assert answered_by(h, path=path) != "-", path
    r = requests.post(h.url("/datos"), data=b"{}", timeout=60)
    assert r.status_code == 405
    assert answered_by(h, method="POST") == "datos"
    # /metrics counts both paths alike: three quick 200s, four of the handler
    assert metric(h, "datos_http_requests_total", handler="datos", code="200") == 7
    assert metric(h, "datos_http_requests_total", handler="datos", code="400") == 1


def test_the_quick_path_answers_as_the_handler_does(httpd_factory, emulator):
    """The same requests to a server with the quick path and one without: the
    same statuses, bodies and headers (but the Date, and the age the two
    servers' answers have)."""
    rows = many_rows(emulator)
    seed(emulator, rows)
    quick = start(httpd_factory, emulator, "quick-on")
    slow = start(httpd_factory, emulator, "quick-off", extra="DatosQuickHandler Off\n")
    etag = plain(quick, "/datos").headers["ETag"]
    gz_etag = get(quick, "/datos", headers={"Accept-Encoding": "gzip"}).headers["ETag"]
    assert plain(slow, "/datos").headers["ETag"] == etag
    assert get(slow, "/datos", headers={"Accept-Encoding": "gzip"}).headers["ETag"] == gz_etag
    cases = [("GET", "/datos", {"Accept-Encoding": "identity"}),
             ("GET", "/datos?limit=100", {"Accept-Encoding": "identity"}),
             ("GET", "/datos?limit=1", {"Accept-Encoding": "gzip"}),
             ("GET", "/datos", {"Accept-Encoding": "gzip"}),
             ("GET", "/datos", {"Accept-Encoding": "gzip;q=0, *"}),
             ("HEAD", "/datos", {"Accept-Encoding": "gzip"}),
             ("GET", "/datos", {"Accept-Encoding": "identity", "If-None-Match": etag}),
             ("GET", "/datos", {"Accept-Encoding": "gzip", "If-None-Match": gz_etag}),
             ("GET", "/datos", {"Accept-Encoding": "identity", "If-None-Match": gz_etag}),
             ("GET", "/datos", {"Accept-Encoding": "identity", "If-None-Match": "*"}),
             ("GET", "/datos", {"Accept-Encoding": "identity", "If-Match": '"nope"'}),
             ("GET", "/datos?limit=0", {}),
             ("GET", "/datos?limit=5&limit=6", {})]
    skip = {"Date", "Age", "Cache-Status", "Keep-Alive", "Connection"}
    for method, path, headers in cases:
        a = requests.request(method, quick.url(path), headers=headers, stream=True, timeout=60)
        b = requests.request(method, slow.url(path), headers=headers, stream=True, timeout=60)
        ab = a.raw.read(decode_content=False)
        bb = b.raw.read(decode_content=False)
        assert (a.status_code, ab) == (b.status_code, bb), (method, path, headers)
        ha = {k: v for k, v in a.headers.items() if k not in skip}
        hb = {k: v for k, v in b.headers.items() if k not in skip}
        assert ha == hb, (method, path, headers)
        if a.status_code == 200:
            assert re.fullmatch(r"datos; hit; ttl=\d+", a.headers["Cache-Status"])
            assert re.fullmatch(r"datos; hit; ttl=\d+", b.headers["Cache-Status"])
        if a.headers.get("Content-Encoding") == "gzip" and method == "GET" \
                and a.status_code == 200:
            assert gzip.decompress(ab).startswith(b'{"datos":[')
    assert {e[0] for e in paths_taken(slow) if e[2].startswith("/datos")} == {"datos"}
    assert "-" in {e[0] for e in paths_taken(quick)}
    for code in ("200", "304", "400", "412"):
        assert metric(quick, "datos_http_requests_total", handler="datos", code=code) \
            == metric(slow, "datos_http_requests_total", handler="datos", code=code), code


# Configurations under which the handler's answer could differ from a cache hit's:
# the quick path must stay off /datos, and the answer be the handler's.
GRANTED = '<Location "/datos">\n  SetHandler datos\n  Require all granted\n</Location>\n'
NOT_QUICK = {
    "require-ip": ('<Location "/datos">\n  SetHandler datos\n  Require ip 10.9.9.9\n'
                   '</Location>\n', "", 403),
    "directory-denies": (None, '<Directory "${root}/htdocs">\n  Require ip 10.9.9.9\n'
                               '</Directory>\n<Location "/health">\n  Require all granted\n'
                               '</Location>\n', 403),
    "rewrite": (None, "LoadModule rewrite_module %s/mod_rewrite.so\nRewriteEngine On\n"
                      "RewriteRule ^/datos$ /health [PT]\n" % MODULES, 200),
    "header": (None, "LoadModule headers_module %s/mod_headers.so\n"
                     "Header always set X-Site datos-test\n" % MODULES, 200),
    "if": (None, "LoadModule headers_module %s/mod_headers.so\n"
                 "<If \"%%{REQUEST_URI} == '/datos'\">\n  Header set X-If yes\n</If>\n"
           % MODULES, 200),
    "off": (None, "DatosQuickHandler Off\n", 200),
}


@pytest.mark.parametrize("case", sorted(NOT_QUICK))
def test_where_the_handler_could_answer_differently_the_quick_path_stays_off(
        httpd_factory, emulator, case):
    rows = many_rows(emulator)
    seed(emulator, rows)
    handlers, extra, status = NOT_QUICK[case]
    h = start(httpd_factory, emulator, "quick-not-" + case, extra=extra, handlers=handlers)
    if status == 403:
        h.log.expect(r"AH01630")            # authz_core's note of the refusal
    r = plain(h, "/datos")
    assert r.status_code == status
    if status == 200:
        # (a request refused before a handler was chosen logs none either)
        assert answered_by(h) in ("datos", "datos-health")
    log = open(h.log.path).read()
    if case != "off":
        assert "DT0502" in log, log           # "... served by the handler, not the quick path: why"
    if case == "rewrite":
        assert r.content == b'{"status":"ok"}'
    if case == "header":
        assert r.headers["X-Site"] == "datos-test"
    if case == "if":
        assert r.headers["X-If"] == "yes"


def test_a_location_that_grants_reads_to_all_keeps_the_quick_path(httpd_factory, emulator):
    """A restriction in a <Directory> is overridden by the <Location>'s own
    "Require all granted"; access control for other methods (ingestion behind
    a password) leaves reads on the quick path."""
    rows = many_rows(emulator)
    seed(emulator, rows)
    handlers = ('<Location "/datos">\n  SetHandler datos\n  Require all granted\n'
                '  <IfModule mod_env.c>\n    SetEnv no-gzip 1\n  </IfModule>\n</Location>\n'
                '<Location "/datos">\n  <LimitExcept GET HEAD OPTIONS>\n'
                '    Require ip 10.9.9.9\n  </LimitExcept>\n</Location>\n')
    extra = ('<Directory "${root}/htdocs">\n  Require ip 10.9.9.9\n</Directory>\n'
             '<Location "/health">\n  Require all granted\n</Location>\n')
    h = start(httpd_factory, emulator, "quick-granted", extra=extra, handlers=handlers)
    assert plain(h, "/datos").status_code == 200
    assert answered_by(h) == "-"
