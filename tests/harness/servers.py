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


class Redis(_Daemon):
    name = "redis"

    def __init__(self, extra=()):
        super().__init__()
        self.extra = list(extra)

    def command(self):
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        return [exe, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                "--appendonly", "no", "--daemonize", "no", "--dir", self.dir] + self.extra
