"""The peers of the read path in `make bench`: the old service's bytes
behind nginx `proxy_cache` and behind Varnish, configured as an operator
would for a cached JSON API, with the freshness mod_datos ships (30 s) and
serving stale while one background fetch refreshes.

Everything is written under build/ at bench time and listens on free ports
of 127.0.0.1; Debian's own configurations and services are never used. The
caches run on the server CPU with httpd, the origin on the other CPU (it
stands in for the old service on another machine).
"""
import datetime
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import benchlib as B
from benchlib import echo

from tools.httpd import TEST_TMP, free_port  # noqa: E402

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
VARNISHD = shutil.which("varnishd") or "/usr/sbin/varnishd"
ORIGIN = os.path.join(B.HERE, "bench_origin.py")
FRESH_S = 30      # mod_datos's DatosFreshFor default
GRACE_S = 60      # and its DatosStaleWhileRevalidate


def old_service_body(rows, limit=10):
    """What the old service sent for these rows: the newest `limit`, newest
    first, as FastAPI's JSONResponse renders {"datos": [...]} (json.dumps,
    UTF-8, no spaces), each timestamp a UTC datetime's isoformat()."""
    def iso(ts):
        d = datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ")
        return d.replace(tzinfo=datetime.timezone.utc).isoformat()

    newest = sorted(rows, key=lambda r: (r["timestamp"], r["id"]), reverse=True)[:limit]
    out = {"datos": [{"id": r["id"], "contenido": r["contenido"],
                      "timestamp": iso(r["timestamp"])} for r in newest]}
    return json.dumps(out, ensure_ascii=False, allow_nan=False, indent=None,
                      separators=(",", ":")).encode("utf-8")


def _listening(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _traversable(path):
    """Every parent inside the build tree readable by the workers' users
    (nginx's and Varnish's drop root, as httpd's do)."""
    while path.startswith(B.REPO + os.sep):
        os.chmod(path, os.stat(path).st_mode | 0o755)
        path = os.path.dirname(path)


class Daemon:
    """A foreground server started under taskset in its own session, so
    stop() reaches every process it forked."""

    name = "daemon"

    def __init__(self, cpu):
        self.cpu = cpu
        self.port = free_port()
        self.dir = os.path.join(TEST_TMP, "bench-" + self.name)
        if os.path.isdir(self.dir):
            shutil.rmtree(self.dir)
        os.makedirs(self.dir)
        _traversable(self.dir)
        self.proc = None

    def command(self):
        raise NotImplementedError

    def start(self, timeout=30):
        cmd = ["taskset", "-c", self.cpu] + self.command()
        echo(cmd)
        self.log = open(os.path.join(self.dir, "stdout.log"), "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit("%s exited with %s:\n%s" % (self.name, self.proc.returncode,
                                                             self.output()))
            if _listening(self.port):
                return self
            time.sleep(0.1)
        self.stop()
        raise SystemExit("%s did not listen on %d:\n%s" % (self.name, self.port, self.output()))

    def output(self):
        try:
            with open(os.path.join(self.dir, "stdout.log"), errors="replace") as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if self.proc:
            # Whatever the group still holds (a worker the master left).
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.proc = None

    @property
    def url(self):
        return "http://127.0.0.1:%d/datos" % self.port


class OldOrigin(Daemon):
    name = "old-origin"

    def __init__(self, body_file):
        super().__init__(B.BACKEND_CPU)
        self.body_file = body_file

    def command(self):
        return ["/usr/bin/python3", ORIGIN, "--port", str(self.port), "--body", self.body_file]


NGINX_CONF = """# Written by tests/bench/bench_peers.py: nginx proxy_cache in front of the
# old service, as for a cached JSON API. One worker, as httpd runs one child
# on the one CPU both get; keep-alive requests unbounded as in httpd's
# benchmark configuration (MaxKeepAliveRequests 0).
worker_processes 1;
daemon off;
pid %(dir)s/nginx.pid;
error_log %(dir)s/error.log warn;
%(user)s
events {
    worker_connections 4096;
}
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 5s;
    keepalive_requests 1000000000;
    default_type application/octet-stream;
    client_body_temp_path %(dir)s/client_body;
    proxy_temp_path %(dir)s/proxy_temp;
    fastcgi_temp_path %(dir)s/fastcgi_temp;
    uwsgi_temp_path %(dir)s/uwsgi_temp;
    scgi_temp_path %(dir)s/scgi_temp;

    proxy_cache_path %(dir)s/cache levels=1:2 keys_zone=datos:10m max_size=100m
                     inactive=10m use_temp_path=off;

    upstream old_service {
        server 127.0.0.1:%(origin)d;
        keepalive 16;
    }

    server {
        listen 127.0.0.1:%(port)d;

        location /datos {
            proxy_pass http://old_service;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache datos;
            proxy_cache_valid 200 %(fresh)ds;
            # Stale while one background subrequest refreshes, and when the
            # origin fails; one request fills a cold cache.
            proxy_cache_use_stale updating error timeout http_500 http_502 http_503 http_504;
            proxy_cache_background_update on;
            proxy_cache_lock on;
            proxy_cache_revalidate on;
            add_header X-Cache-Status $upstream_cache_status;
        }
    }
}
"""


class Nginx(Daemon):
    name = "nginx"

    def __init__(self, origin_port):
        super().__init__(B.SERVER_CPU)
        self.conf_path = os.path.join(self.dir, "nginx.conf")
        self.conf = NGINX_CONF % {
            "dir": self.dir, "port": self.port, "origin": origin_port, "fresh": FRESH_S,
            "user": "user nobody nogroup;" if os.geteuid() == 0 else ""}
        with open(self.conf_path, "w") as f:
            f.write(self.conf)

    def command(self):
        return [NGINX, "-p", self.dir + "/", "-c", self.conf_path, "-e",
                os.path.join(self.dir, "error.log")]

    @staticmethod
    def version():
        p = subprocess.run([NGINX, "-v"], capture_output=True, text=True)
        return (p.stderr or p.stdout).strip().replace("nginx version: ", "")

    @staticmethod
    def is_hit(headers):
        return headers.get("X-Cache-Status") == "HIT"


VARNISH_VCL = """vcl 4.1;
# Written by tests/bench/bench_peers.py: Varnish in front of the old service,
# its default VCL (appended by varnishd) with the freshness mod_datos ships
# and grace, so that a stale object is served while one background fetch
# refreshes it.

backend old_service {
    .host = "127.0.0.1";
    .port = "%(origin)d";
}

sub vcl_backend_response {
    set beresp.ttl = %(fresh)ds;
    set beresp.grace = %(grace)ds;
}
"""


class Varnish(Daemon):
    name = "varnish"

    def __init__(self, origin_port):
        super().__init__(B.SERVER_CPU)
        self.vcl_path = os.path.join(self.dir, "default.vcl")
        self.conf = VARNISH_VCL % {"origin": origin_port, "fresh": FRESH_S, "grace": GRACE_S}
        with open(self.vcl_path, "w") as f:
            f.write(self.conf)
        os.chmod(self.vcl_path, 0o644)

    def command(self):
        # -F: in the foreground; -n: its working directory under build/;
        # -s malloc: the storage a small JSON object needs.
        return [VARNISHD, "-F", "-a", "127.0.0.1:%d" % self.port, "-f", self.vcl_path,
                "-n", os.path.join(self.dir, "work"), "-s", "malloc,64m"]

    @staticmethod
    def version():
        """'Varnish 7.1.1', from varnishd -V's 'varnishd (varnish-7.1.1 revision ...)'."""
        p = subprocess.run([VARNISHD, "-V"], capture_output=True, text=True)
        m = re.search(r"varnish-([\w.]+)", (p.stderr or "") + (p.stdout or ""))
        return "Varnish " + m.group(1) if m else "Varnish ?"

    @staticmethod
    def is_hit(headers):
        # A hit names the request and the one that stored the object.
        return len(headers.get("X-Varnish", "").split()) == 2


def fetch(url):
    host, rest = url[len("http://"):].split("/", 1)
    c = http.client.HTTPConnection(host, timeout=10)
    try:
        c.request("GET", "/" + rest)
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        c.close()


def warm(cache, want_sha256, tries=20):
    """Requests through the cache until one is a hit with the right bytes;
    -> its headers."""
    for _ in range(tries):
        st, headers, body = fetch(cache.url)
        if st != 200:
            raise SystemExit("%s answered %d: %r" % (cache.name, st, body[:200]))
        if hashlib.sha256(body).hexdigest() != want_sha256:
            raise SystemExit("%s sent other bytes than /datos" % cache.name)
        if cache.is_hit(headers):
            return headers
        time.sleep(0.1)
    raise SystemExit("%s never answered from its cache" % cache.name)


def available():
    """(nginx, varnishd) found, as make bench-deps installs them."""
    return os.path.exists(NGINX), os.path.exists(VARNISHD)
