"""Runs the real Debian httpd (/usr/sbin/apache2) from a generated configuration.

Never systemd, apache2ctl or /etc/apache2: the server root, configuration,
logs, pid file and runtime files all live in one folder of the build tree.
That folder and every parent must be traversable by the worker user (httpd
drops to nobody when started as root), otherwise every URL answers 403; this
is why it is not under pytest's tmp_path (/tmp/pytest-of-root is 0700).

The error log is tracked from an offset: `check_log()` returns the lines added
since the last check that are warnings or worse, that report a dead child, or
that come from a sanitizer, minus the patterns a test said it expects.
"""
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import zlib
from string import Template

APACHE2 = "/usr/sbin/apache2"
MODULES_DIR = "/usr/lib/apache2/modules"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD_DIR = os.path.join(REPO_ROOT, "build")


def _test_run():
    """(folder name, index) of this test process: the build under test and the pytest-xdist
    worker, so that parallel workers, and the release and ASan suites run side by side,
    never share a folder or a port."""
    kind = "asan" if os.environ.get("DATOS_SANITIZE") == "1" else "release"
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    m = re.fullmatch(r"gw(\d+)", worker)
    number = int(m.group(1)) if m else 0
    return "%s-%s" % (kind, worker or "main"), number * 2 + (kind == "asan")


# Everything a test writes: build/test-tmp/<release|asan>-<worker> under pytest (one
# folder per worker and build), build/test-tmp for the tools (make run, benchmarks).
TEST_TMP = os.path.join(BUILD_DIR, "test-tmp")
if "pytest" in sys.modules or os.environ.get("PYTEST_XDIST_WORKER"):
    TEST_TMP = os.path.join(TEST_TMP, _test_run()[0])

MPMS = ("event", "worker", "prefork")

# Lines that fail a test unless expected: any level from warn up, a child
# that died, or a sanitizer report that reached the error log.
_BAD_LEVEL = re.compile(r"^\[[^\]]*\] \[[^\]]*:(warn|error|crit|alert|emerg)\] ")
_DEAD_CHILD = re.compile(
    r"exit signal|AH00052|AH00060|AH00061|still did not exit|"
    r"AddressSanitizer|UndefinedBehaviorSanitizer|runtime error:|LeakSanitizer"
)

BASE_TEMPLATE = """\
ServerRoot "${root}"
ServerName 127.0.0.1
Listen 127.0.0.1:${port}
PidFile "${root}/run/httpd.pid"
DefaultRuntimeDir "${root}/run"
ErrorLog "${root}/logs/error.log"
LogLevel ${loglevel}
LogFormat "%h %l %u %t \\"%r\\" %>s %b %D" timed
CustomLog "${root}/logs/access.log" timed
${user_group}
LoadModule mpm_${mpm}_module ${modules_dir}/mod_mpm_${mpm}.so
LoadModule authz_core_module ${modules_dir}/mod_authz_core.so
LoadModule authz_host_module ${modules_dir}/mod_authz_host.so
LoadModule mime_module ${modules_dir}/mod_mime.so
LoadModule dir_module ${modules_dir}/mod_dir.so
LoadModule socache_shmcb_module ${modules_dir}/mod_socache_shmcb.so
${load_datos}
TypesConfig /etc/mime.types
TraceEnable ${trace_enable}
${mpm_tuning}
DocumentRoot "${root}/htdocs"
<Directory "${root}/htdocs">
  Require all granted
</Directory>
Include "${root}/conf/test.conf"
"""

# Small but real pools: enough threads/processes to exercise concurrency on a
# 2-core machine without hundreds of idle threads.
MPM_TUNING = {
    "event": "StartServers 2\nServerLimit 4\nThreadsPerChild 16\nMaxRequestWorkers 64\n"
             "MinSpareThreads 8\nMaxSpareThreads 48\n",
    "worker": "StartServers 2\nServerLimit 4\nThreadsPerChild 16\nMaxRequestWorkers 64\n"
              "MinSpareThreads 8\nMaxSpareThreads 48\n",
    "prefork": "StartServers 4\nMinSpareServers 2\nMaxSpareServers 8\nMaxRequestWorkers 32\n",
}


# Listening ports come from below the kernel's ephemeral range, where no outgoing
# connection takes them between the check here and the server's bind, each test process
# from its own block (by worker and build, shifted by the checkout's path so that two
# checkouts testing at once rarely share one), walked from a random start.
_PORT_LOW = 10000
_PORT_BLOCKS = 40
_ports = {"given": set(), "next": None}


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _port_block():
    size = (_ephemeral_low() - _PORT_LOW) // _PORT_BLOCKS
    block = (zlib.crc32(REPO_ROOT.encode()) + _test_run()[1]) % _PORT_BLOCKS
    return _PORT_LOW + block * size, size


def _bindable(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port():
    """A port nothing listens on, not handed out before by this process."""
    start, size = _port_block()
    if _ports["next"] is None:
        _ports["next"] = random.randrange(size)
    for _ in range(size):
        port = start + _ports["next"] % size
        _ports["next"] += 1
        if port not in _ports["given"] and _bindable(port):
            _ports["given"].add(port)
            return port
    _ports["given"].clear()  # every port was handed out once: start over
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_taken(text):
    """Whether a server's output says its port was taken meanwhile."""
    return "Address already in use" in text


def module_path(sanitize=None):
    """The mod_datos.so under test: the ASan+UBSan build when DATOS_SANITIZE=1."""
    if sanitize is None:
        sanitize = os.environ.get("DATOS_SANITIZE") == "1"
    return os.path.join(BUILD_DIR, "asan" if sanitize else "", "mod_datos.so")


def sanitizer_runtime():
    out = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True,
                         text=True, check=True).stdout.strip()
    if not os.path.isabs(out):
        raise RuntimeError("libasan.so not found (gcc -print-file-name=libasan.so gave %r)" % out)
    return os.path.realpath(out)


# Servers whose error logs the test suite checks after every test.
ACTIVE_SERVERS = []


def register_server(h):
    """Puts a server under the per-test error-log gate."""
    if h not in ACTIVE_SERVERS:
        ACTIVE_SERVERS.append(h)


def unregister_server(h):
    if h in ACTIVE_SERVERS:
        ACTIVE_SERVERS.remove(h)


class HttpdError(AssertionError):
    pass


class ErrorLog:
    """An error log read from an offset, so each test sees only its own lines."""

    def __init__(self, path):
        self.path = path
        self.offset = 0
        self.expected = []

    def _read_new(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        # Only whole lines: a line being written is read next time.
        cut = data.rfind(b"\n") + 1
        self.offset += cut
        return data[:cut].decode("utf-8", "replace").splitlines()

    def skip_to_end(self):
        self._read_new()

    def expect(self, pattern):
        """Accept lines matching pattern (a regex) until reset_expected()."""
        self.expected.append(re.compile(pattern))

    def reset_expected(self):
        self.expected = []

    def new_lines(self):
        return self._read_new()

    @staticmethod
    def is_bad(line):
        return bool(_BAD_LEVEL.search(line) or _DEAD_CHILD.search(line))

    def unexpected(self, lines):
        return [l for l in lines if self.is_bad(l) and not any(p.search(l) for p in self.expected)]


class Httpd:
    """One httpd server root under build/test-tmp/<name>.

    Typical use:
        h = Httpd("health", mpm="event")
        h.write_config('<Location "/health">\\n SetHandler datos-health\\n</Location>')
        h.start(); ...; h.stop()
    """

    def __init__(self, name, mpm="event", load_datos=True, sanitize=None, env=None,
                 loglevel="notice", port=None, root=None):
        if mpm not in MPMS:
            raise ValueError("unknown MPM %r" % mpm)
        self.name = name
        self.mpm = mpm
        self.root = root or os.path.join(TEST_TMP, "httpd-" + name)
        self.port = port or free_port()
        self.loglevel = loglevel
        self.sanitize = (os.environ.get("DATOS_SANITIZE") == "1") if sanitize is None else sanitize
        self.module = module_path(self.sanitize) if load_datos else None
        self.extra_env = dict(env or {})
        self.log = ErrorLog(os.path.join(self.root, "logs", "error.log"))
        self._fixed_port = port is not None
        self._config = None
        self._prepare_root()

    # ------------------------------------------------------------ layout
    def _prepare_root(self):
        if os.path.isdir(self.root):
            self._kill_leftover()
            shutil.rmtree(self.root)
        for sub in ("conf", "logs", "run", "htdocs", "state"):
            os.makedirs(os.path.join(self.root, sub), mode=0o755, exist_ok=True)
        # Every parent must be traversable by the worker user.
        path = self.root
        while path.startswith(REPO_ROOT + os.sep):
            os.chmod(path, os.stat(path).st_mode | 0o755)
            path = os.path.dirname(path)
        if os.geteuid() == 0:
            # The worker user writes the module's state there.
            os.chown(os.path.join(self.root, "state"), 65534, 65534)

    def _kill_leftover(self):
        pid = self.pid()
        if pid:
            self._kill_group(pid)

    @staticmethod
    def _kill_group(pid):
        # httpd -k start makes its parent a session (and group) leader, so
        # the group holds every child: none is left orphaned.
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    @property
    def base_url(self):
        return "http://127.0.0.1:%d" % self.port

    def url(self, path):
        return self.base_url + path

    def write_file(self, rel, content, mode=0o644):
        p = self.path(rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(content)
        os.chmod(p, mode)
        return p

    def render(self, test_conf="", **overrides):
        vals = {
            "root": self.root,
            "port": self.port,
            "mpm": self.mpm,
            "modules_dir": MODULES_DIR,
            "loglevel": self.loglevel,
            "user_group": "User nobody\nGroup nogroup" if os.geteuid() == 0 else "",
            "load_datos": ('LoadModule datos_module "%s"' % self.module) if self.module else "",
            "mpm_tuning": MPM_TUNING[self.mpm],
            # As the shipped conf/datos.conf: a test that needs TRACE on
            # passes trace_enable="On".
            "trace_enable": "Off",
        }
        vals.update(overrides)
        return Template(BASE_TEMPLATE).substitute(vals), Template(test_conf).safe_substitute(vals)

    def write_config(self, test_conf="", **overrides):
        """Writes conf/httpd.conf and conf/test.conf (test_conf may use ${root}, ${port})."""
        main, test = self.render(test_conf, **overrides)
        self.write_file("conf/httpd.conf", main)
        self.write_file("conf/test.conf", test)
        self._config = (test_conf, overrides)
        return self.path("conf/httpd.conf")

    # ------------------------------------------------------------ processes
    def environ(self):
        env = {"PATH": "/usr/sbin:/usr/bin:/bin", "LANG": "C"}
        if self.sanitize:
            env["LD_PRELOAD"] = sanitizer_runtime()
            env["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=0:log_path=%s" % self.path("logs", "asan")
            env["UBSAN_OPTIONS"] = "print_stacktrace=1:log_path=%s" % self.path("logs", "ubsan")
        env.update(self.extra_env)
        return env

    def _apache2(self, *args, timeout=60):
        return subprocess.run([APACHE2, "-d", self.root, "-f", self.path("conf/httpd.conf")] + list(args),
                              env=self.environ(), capture_output=True, text=True, timeout=timeout)

    def configtest(self):
        """`apache2 -t`: returns (returncode, combined output)."""
        r = self._apache2("-t")
        return r.returncode, (r.stdout + r.stderr)

    def pid(self):
        try:
            with open(self.path("run", "httpd.pid")) as f:
                return int(f.read().strip())
        except (FileNotFoundError, ValueError):
            return None

    def is_running(self):
        pid = self.pid()
        if not pid:
            return False
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False

    def _port_open(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def start(self, timeout=60):
        for attempt in range(3):
            since = os.path.getsize(self.log.path) if os.path.exists(self.log.path) else 0
            r = self._apache2("-k", "start")
            taken = port_taken(r.stdout + r.stderr + self._log_since(since))
            if r.returncode == 0 or not taken or self._fixed_port or not self._config \
                    or attempt == 2:
                break
            # Another process took the port after free_port() saw it free: another one.
            self.port = free_port()
            self.write_config(self._config[0], **self._config[1])
        if r.returncode != 0:
            raise HttpdError("apache2 -k start failed (rc %d):\n%s%s\n%s" % (
                r.returncode, r.stdout, r.stderr, self.tail_log()))
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.is_running() and self._port_open():
                return
            if self.pid() is None and time.time() > deadline - timeout + 20:
                break
            time.sleep(0.05)
        raise HttpdError("httpd did not come up on port %d:\n%s" % (self.port, self.tail_log()))

    def _log_since(self, offset):
        try:
            with open(self.log.path, "rb") as f:
                f.seek(offset)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def _wait_log(self, pattern, since, timeout):
        deadline = time.time() + timeout
        rx = re.compile(pattern)
        while time.time() < deadline:
            try:
                with open(self.log.path, "rb") as f:
                    f.seek(since)
                    if rx.search(f.read().decode("utf-8", "replace")):
                        return True
            except FileNotFoundError:
                pass
            time.sleep(0.05)
        return False

    def children(self):
        """The pids of the parent's children (its worker processes)."""
        parent = self.pid()
        out = set()
        if not parent:
            return out
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % name) as f:
                    stat = f.read()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2:].split()
            if int(fields[1]) == parent and fields[0] != "Z":
                out.add(int(name))
        return out

    def wait_children(self, n, timeout=30):
        """The children once there are n of them. The parent binds its port before it
        forks, so a server that answers a connect may not have its children yet."""
        deadline = time.time() + timeout
        kids = self.children()
        while len(kids) != n and time.time() < deadline:
            time.sleep(0.05)
            kids = self.children()
        if len(kids) != n:
            raise HttpdError("%d children, not %d:\n%s" % (len(kids), n, self.tail_log()))
        return kids

    def graceful(self, timeout=60):
        """`-k graceful`, then waits until the new generation says it is resuming and
        the old generation's processes are gone: after it, no request can reach a
        process that still holds the old configuration or the old cache."""
        old = self.children()
        since = os.path.getsize(self.log.path) if os.path.exists(self.log.path) else 0
        r = self._apache2("-k", "graceful")
        if r.returncode != 0:
            raise HttpdError("apache2 -k graceful failed:\n%s%s" % (r.stdout, r.stderr))
        if not self._wait_log(r"AH00292|resuming normal operations", since, timeout):
            raise HttpdError("httpd did not finish its graceful restart:\n%s" % self.tail_log())
        deadline = time.time() + timeout
        while old & self.children():
            if time.time() > deadline:
                raise HttpdError("the old generation (%s) did not exit after a graceful "
                                 "restart:\n%s" % (sorted(old & self.children()),
                                                    self.tail_log()))
            time.sleep(0.05)
        # The new children need a moment to accept; the listener stays open.
        deadline = time.time() + 5
        while time.time() < deadline and not self._port_open():
            time.sleep(0.05)

    def stop(self, timeout=30):
        pid = self.pid()
        if not pid or not self.is_running():
            return
        # What `-k stop` does, without needing the configuration to parse:
        # a test may have left a broken one behind.
        os.kill(pid, signal.SIGTERM)
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            self._kill_group(pid)
            raise HttpdError("httpd did not stop within %ss" % timeout)
        try:
            os.unlink(self.path("run", "httpd.pid"))
        except FileNotFoundError:
            pass

    def restart(self):
        self.stop()
        self.start()

    # ------------------------------------------------------------ checks
    def tail_log(self, n=40):
        try:
            with open(self.log.path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except FileNotFoundError:
            return "(no error log)"

    def sanitizer_reports(self):
        logs = self.path("logs")
        out = []
        for name in sorted(os.listdir(logs)):
            if name.startswith(("asan", "ubsan")):
                with open(os.path.join(logs, name), errors="replace") as f:
                    out.append("%s:\n%s" % (name, f.read()))
        return out

    def check_log(self):
        """Returns the unexpected lines and sanitizer reports since the last check."""
        bad = self.log.unexpected(self.log.new_lines())
        return bad + self.sanitizer_reports()

    def assert_clean_log(self):
        bad = self.check_log()
        if bad:
            raise HttpdError("unexpected lines in %s:\n%s" % (self.log.path, "\n".join(bad)))
