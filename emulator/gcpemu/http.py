"""HTTP/1.1 plumbing: a fast stdlib server (Nagle off, daemon threads, big backlog, quiet on
client resets, keep-alive) and the request/response objects handlers see."""
import gzip
import json
import socket
import sys
import time
import urllib.parse
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_REASONS = {200: "OK", 201: "Created", 204: "No Content", 206: "Partial Content",
            308: "Resume Incomplete", 400: "Bad Request", 401: "Unauthorized",
            403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
            411: "Length Required", 412: "Precondition Failed", 413: "Payload Too Large",
            429: "Too Many Requests", 499: "Client Closed Request",
            500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
            503: "Service Unavailable", 504: "Gateway Timeout"}

_date_cache = [0, ""]


def http_date():
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0] = now
        _date_cache[1] = formatdate(now, usegmt=True)
    return _date_cache[1]


class BadBody(Exception):
    pass


class Request:
    __slots__ = ("method", "raw_path", "path", "query", "query_multi", "headers", "body",
                 "client", "params", "endpoint", "_json", "log_entry", "forced_job_error")

    def __init__(self, method, raw_path, headers, body, client):
        self.method = method
        self.raw_path = raw_path
        split = urllib.parse.urlsplit(raw_path)
        self.path = urllib.parse.unquote(split.path)
        pairs = urllib.parse.parse_qsl(split.query, keep_blank_values=True)
        self.query_multi = {}
        for k, v in pairs:
            self.query_multi.setdefault(k, []).append(v)
        self.query = {k: v[-1] for k, v in self.query_multi.items()}
        self.headers = headers
        self.body = body
        self.client = client
        self.params = {}
        self.endpoint = "unknown"
        self._json = None
        self.log_entry = None
        self.forced_job_error = None

    def header(self, name, default=None):
        return self.headers.get(name, default)

    def json(self, required=True):
        """The body parsed as a JSON object. Raises BadBody for bad JSON."""
        if self._json is None:
            if not self.body.strip():
                self._json = {}
            else:
                try:
                    self._json = json.loads(self.body.decode("utf-8"))
                except UnicodeDecodeError:
                    raise BadBody("Invalid JSON payload received. Invalid UTF-8.") from None
                except ValueError as e:
                    raise BadBody("Invalid JSON payload received. %s" % e) from None
                if not isinstance(self._json, dict):
                    raise BadBody("Invalid JSON payload received. Expected an object.")
        return self._json

    def query_bool(self, name):
        v = self.query.get(name)
        return v is not None and v.lower() in ("true", "1")

    def body_for_log(self):
        if not self.body:
            return None
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            try:
                return self.body.decode("utf-8")
            except UnicodeDecodeError:
                return "<%d bytes of binary data>" % len(self.body)


class Response:
    """mode: normal | drop (close, no answer) | truncate (full Content-Length, half a body)."""
    __slots__ = ("status", "headers", "body", "mode")

    def __init__(self, status=200, body=b"", content_type=None, headers=None, mode="normal"):
        self.status = int(status)
        self.headers = dict(headers or {})
        if content_type:
            self.headers["Content-Type"] = content_type
        self.body = body if isinstance(body, bytes) else body.encode("utf-8")
        self.mode = mode


def json_bytes(obj, pretty=False):
    if pretty:
        return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def json_response(obj, status=200, headers=None, pretty=False):
    return Response(status, json_bytes(obj, pretty), "application/json; charset=UTF-8", headers)


class EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 2048
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, addr, app):
        self.app = app
        super().__init__(addr, Handler)

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, socket.timeout, OSError)):
            return  # client went away: quiet
        super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "datos-gcp-emulator"
    sys_version = ""
    timeout = 300  # idle keep-alive connections are closed after this many seconds

    def log_message(self, fmt, *args):
        if getattr(self.server.app, "verbose", False):
            sys.stderr.write("%s - %s\n" % (self.address_string(), fmt % args))

    def _read_body(self):
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            chunks = []
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise ConnectionError("eof in chunked body")
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while True:  # trailers
                        t = self.rfile.readline(65537)
                        if not t or t in (b"\r\n", b"\n"):
                            break
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
            body = b"".join(chunks)
        else:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length > 0 else b""
            if len(body) < length:
                raise ConnectionError("short body")
        if self.headers.get("Content-Encoding", "").lower() == "gzip" and body:
            body = gzip.decompress(body)
        return body

    def _serve(self):
        try:
            body = self._read_body()
        except (ValueError, OSError, EOFError):
            self.close_connection = True
            return
        headers = {k: v for k, v in self.headers.items()}
        req = Request(self.command, self.path, _CIHeaders(headers), body, self.client_address)
        resp = self.server.app.handle(req)
        self._send(resp)

    def _send(self, resp):
        if resp.mode == "drop":
            self._abort()
            return
        body = resp.body
        head = ["HTTP/1.1 %d %s" % (resp.status, _REASONS.get(resp.status, "Status"))]
        hdrs = resp.headers
        if "Content-Type" not in hdrs and body:
            hdrs["Content-Type"] = "application/json; charset=UTF-8"
        hdrs.setdefault("Date", http_date())
        hdrs.setdefault("Server", "datos-gcp-emulator")
        hdrs["Content-Length"] = str(len(body))
        if self.close_connection:
            hdrs["Connection"] = "close"
        for k, v in hdrs.items():
            head.append("%s: %s" % (k, v))
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        if self.command != "HEAD":
            if resp.mode == "truncate":
                data += body[:len(body) // 2]
            else:
                data += body
        try:
            self.wfile.write(data)
        except OSError:
            self.close_connection = True
            return
        if resp.mode == "truncate":
            self._abort()

    def _abort(self):
        self.close_connection = True
        try:
            self.wfile.flush()
        except OSError:
            pass
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve


class _CIHeaders(dict):
    """Case-insensitive header lookup that still lists headers as received."""

    def __init__(self, d):
        super().__init__(d)
        self._lower = {k.lower(): v for k, v in d.items()}

    def get(self, name, default=None):
        return self._lower.get(name.lower(), default)

    def __contains__(self, name):
        return name.lower() in self._lower
