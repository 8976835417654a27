"""Real memcached and redis on 127.0.0.1 for the fleet-cache tests.

Debian's packages (`make deps` installs memcached and redis-server); each
server runs in the foreground on a free port with no persistence, and is
killed when the test is done with it.
"""
import os
import shutil
import signal
import socket
import subprocess
import time

from tools.httpd import TEST_TMP, free_port, port_taken


class ServerError(RuntimeError):
    pass


class _Daemon:
    name = "server"

    def __init__(self):
        self.port = free_port()
        self.proc = None
        self.dir = os.path.join(TEST_TMP, "%s-%d" % (self.name, self.port))

    def command(self):
        raise NotImplementedError

    def start(self, timeout=60, attempts=3):
        os.makedirs(self.dir, exist_ok=True)
        self.log = open(os.path.join(self.dir, "server.log"), "wb")
        self.proc = subprocess.Popen(self.command(), stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=self.dir,
                                     start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                with open(os.path.join(self.dir, "server.log"), errors="replace") as f:
                    out = f.read()
                self.stop()
                if port_taken(out) and attempts > 1:
                    # taken by another process since free_port() saw it free
                    self.port = free_port()
                    return self.start(timeout, attempts - 1)
                raise ServerError("%s exited with %s:\n%s" % (self.name, self.proc_rc, out))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise ServerError("%s did not listen on %d" % (self.name, self.port))

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc_rc = self.proc.returncode if self.proc else None
        self.proc = None
        if getattr(self, "log", None):
            self.log.close()
            self.log = None

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port


class Memcached(_Daemon):
    """memcached, and a client of its text protocol for what a test must read
    or write itself (what a host stored; what someone who can reach the cache
    could put there)."""
    name = "memcached"

    def __init__(self, item_size="1m", extra=()):
        super().__init__()
        self.item_size = item_size
        self.extra = list(extra)

    def command(self):
        exe = shutil.which("memcached") or "/usr/bin/memcached"
        cmd = [exe, "-l", "127.0.0.1", "-p", str(self.port), "-U", "0", "-m", "64",
               "-I", self.item_size]
        if os.geteuid() == 0:
            cmd += ["-u", "nobody"]
        return cmd + self.extra

    def _call(self, request):
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            s.sendall(request)
            data = b""
            while not (data.endswith(b"END\r\n") or data.endswith(b"STORED\r\n")
                       or data.endswith(b"ERROR\r\n") or data.endswith(b"NOT_STORED\r\n")):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        return data

    def get(self, key):
        """The value under key (bytes), or None."""
        data = self._call(b"get %s\r\n" % key.encode())
        if not data.startswith(b"VALUE "):
            return None
        head, rest = data.split(b"\r\n", 1)
        return rest[:int(head.split()[3])]

    def set(self, key, value, ttl=3600):
        data = self._call(b"set %s 0 %d %d\r\n%s\r\n" % (key.encode(), ttl, len(value), value))
        if data != b"STORED\r\n":
            raise ServerError("memcached set %s: %r" % (key, data))


class Redis(_Daemon):
    """redis, and a client of its protocol (RESP) for what a test must read or
    write itself."""
    name = "redis"

    def __init__(self, extra=()):
        super().__init__()
        self.extra = list(extra)

    def _call(self, *args):
        req = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            req += b"$%d\r\n%s\r\n" % (len(a), a)
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            s.sendall(req)
            f = s.makefile("rb")
            return self._reply(f)

    def _reply(self, f):
        line = f.readline().rstrip(b"\r\n")
        kind, rest = line[:1], line[1:]
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else f.read(n + 2)[:-2]
        if kind == b"*":
            return [self._reply(f) for _ in range(int(rest))]
        if kind == b"-":
            raise ServerError("redis: %s" % rest.decode())
        return int(rest) if kind == b":" else rest

    def get(self, key):
        """The value under key (bytes), or None."""
        return self._call("GET", key)

    def set(self, key, value, ttl=3600):
        self._call("SET", key, value, "EX", ttl)

    def keys(self, pattern="*"):
        return sorted(k.decode() for k in self._call("KEYS", pattern))

    def command(self):
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        return [exe, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                "--appendonly", "no", "--daemonize", "no", "--dir", self.dir] + self.extra
