"""What httpd answers itself on /datos and /health is JSON too.

Some requests never reach the module's handlers: TRACE (refused, never
echoed, with TraceEnable On or Off), a request line that is too long (414)
or malformed (400), an Expect httpd refuses (417), a header over the limit,
access control (403). On the module's paths each answer is
{"error":{"code":N,"message":"..."}} with Content-Type application/json and
Cache-Control no-store; other paths keep httpd's own pages."""
import json
import os
import socket

import pytest

from tools.httpd import REPO_ROOT
from datos_env import contract_rows, datos_conf, seed

EXTRA = """
<Location "/private-datos">
  SetHandler datos
  Require ip 192.0.2.1
</Location>
<LocationMatch "^/api/v[0-9]+/datos$">
  SetHandler datos
</LocationMatch>
"""


def raw(h, data, timeout=120):
    """Sends bytes, returns (status, headers, body) of the first answer."""
    with socket.create_connection(("127.0.0.1", h.port), timeout=timeout) as s:
        s.sendall(data)
        buf = b""
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            buf += chunk
            head, sep, rest = buf.partition(b"\r\n\r\n")
            if sep:
                hdrs = parse_headers(head)
                n = int(hdrs.get("content-length", "-1"))
                if n >= 0 and len(rest) >= n:
                    break
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    return status, parse_headers(head), body


def parse_headers(head):
    out = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        k, _, v = line.partition(":")
        out[k.strip().lower()] = v.strip()
    return out


def assert_json_error(status, headers, body, code):
    assert status == code, (status, body[:300])
    assert headers["content-type"] == "application/json", headers
    assert headers.get("cache-control") == "no-store"
    doc = json.loads(body)
    assert doc["error"]["code"] == code
    assert isinstance(doc["error"]["message"], str) and doc["error"]["message"]
    assert set(doc) == {"error"} and set(doc["error"]) == {"code", "message"}
    assert int(headers["content-length"]) == len(body)


@pytest.fixture(scope="module")
def seeded(emulator):
    """The table, seeded once for the module: a reset while the module's
    servers run would take it from under them."""
    seed(emulator, contract_rows(emulator.now()))


@pytest.fixture(scope="module", params=["Off", "On"])
def server(request, emulator, seeded):
    from tools.httpd import Httpd, register_server, unregister_server
    h = Httpd("errors-trace-" + request.param.lower())
    h.write_config(datos_conf(emulator, extra=EXTRA), trace_enable=request.param)
    h.write_file("htdocs/static.txt", "static\n")
    h.start()
    register_server(h)
    yield h
    unregister_server(h)
    h.stop()


@pytest.mark.parametrize("path", ["/datos", "/health", "/datos?limit=3", "/api/v2/datos"])
def test_trace_is_refused_and_never_echoed(server, path):
    h = server
    status, headers, body = raw(h, ("TRACE %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                    "Cookie: session=SECRET-COOKIE\r\n"
                                    "Authorization: Bearer SECRET-TOKEN\r\n\r\n" % path).encode())
    assert_json_error(status, headers, body, 405)
    assert headers["allow"] == "GET, HEAD"
    assert b"SECRET" not in body


def test_uri_too_long_is_json(server):
    h = server
    h.log.expect(r"AH00565")       # httpd's own "request failed: URI too long"
    status, headers, body = raw(h, ("GET /datos?limit=%s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                                    % ("1" * 9000)).encode())
    assert_json_error(status, headers, body, 414)


def test_malformed_request_line_is_json(server):
    h = server
    h.log.expect(r"AH00126|AH02418|AH10388|Invalid URI|request line")
    status, headers, body = raw(h, b"GET /health HTTP/1.1 extra\r\nHost: 127.0.0.1\r\n\r\n")
    assert_json_error(status, headers, body, 400)


def test_header_too_large_is_json(server):
    h = server
    h.log.expect(r"AH00561|exceeds server limit")
    status, headers, body = raw(h, ("GET /datos HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: %s\r\n\r\n"
                                    % ("x" * 9000)).encode())
    assert_json_error(status, headers, body, 400)


def test_refused_expectation_is_json(server):
    h = server
    status, headers, body = raw(h, b"GET /datos HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                   b"Expect: something-else\r\n\r\n")
    assert_json_error(status, headers, body, 417)


def test_access_control_refusal_is_json(server):
    h = server
    h.log.expect(r"AH01630")        # mod_authz_core's "client denied by server configuration"
    status, headers, body = raw(h, b"GET /private-datos HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert_json_error(status, headers, body, 403)


def test_head_error_has_json_headers_and_no_body(server):
    h = server
    status, headers, body = raw(h, b"HEAD /datos HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                   b"Expect: nope\r\nConnection: close\r\n\r\n")
    assert status == 417
    assert headers["content-type"] == "application/json"
    assert body == b""


def test_other_paths_keep_httpds_pages(server):
    h = server
    status, headers, body = raw(h, b"GET /static.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                   b"Expect: something-else\r\n\r\n")
    assert status == 417
    assert headers["content-type"].startswith("text/html")
    # A path that only starts like ours is not ours (<Location> matches
    # whole path segments).
    status, headers, body = raw(h, b"GET /datosx HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                   b"Expect: something-else\r\n\r\n")
    assert status == 417
    assert headers["content-type"].startswith("text/html")


def test_the_shipped_conf_refuses_trace(emulator, seeded, httpd_factory):
    """conf/datos.conf as Debian's a2enmod would include it, next to the
    administrator's DatosProject and credentials."""
    h = httpd_factory("errors-shipped-conf")
    with open(os.path.join(REPO_ROOT, "conf", "datos.conf")) as f:
        shipped = f.read()
    h.write_file("conf/datos.conf", shipped)
    h.write_config("DatosProject datos-local\nDatosCredentials none\n"
                   "DatosBigQueryURL %s/bigquery/v2\nDatosStateDir \"${root}/state\"\n"
                   "Include \"${root}/conf/datos.conf\"\n"
                   % emulator.base_url, trace_enable="On")
    h.start()
    status, headers, body = raw(h, b"TRACE /datos HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                   b"Cookie: c=SECRET\r\n\r\n")
    assert_json_error(status, headers, body, 405)
    # TraceEnable Off from the shipped file applies server-wide.
    status, headers, body = raw(h, b"TRACE /elsewhere HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                   b"Cookie: c=SECRET\r\n\r\n")
    assert status == 405
    assert b"SECRET" not in body
    status, headers, body = raw(h, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert status == 200 and json.loads(body) == {"status": "ok"}
