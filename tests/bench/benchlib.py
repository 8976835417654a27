"""Shared pieces of `make bench`: printed commands, pinning, wrk and ab runs
parsed into numbers, per-round ratios, and Markdown tables.

Every external command goes through run() (or echo() for one started by the
harness), which prints it before it runs and keeps it for results.md.
"""
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [REPO, os.path.join(REPO, "emulator"), os.path.join(REPO, "tests")]

from tools.httpd import APACHE2, BUILD_DIR, Httpd  # noqa: E402

BENCH_BUILD = os.path.join(BUILD_DIR, "bench")
QUICK = os.environ.get("BENCH_QUICK") == "1"

# httpd alone on one CPU; the load generator on the other, with the
# stand-ins for what runs on other machines in production (the emulator in
# place of BigQuery, memcached), so their work never takes httpd's CPU.
SERVER_CPU = "0"
CLIENT_CPU = "1"
BACKEND_CPU = CLIENT_CPU

# A SIGTERM (make interrupted, a timeout) still runs the finally blocks
# that stop every server started.
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

COMMANDS = []          # (section, command line) in the order they ran
_section = ["setup"]


def section(name):
    _section[0] = name
    print("\n==== %s" % name, flush=True)


def echo(cmd):
    line = cmd if isinstance(cmd, str) else shlex.join(str(c) for c in cmd)
    print("+ " + line, flush=True)
    COMMANDS.append((_section[0], line))
    return line


def run(cmd, check=True, timeout=None, **kw):
    echo(cmd)
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    p = subprocess.run(cmd, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise SystemExit("command failed (rc %d): %s\n%s%s" % (
            p.returncode, shlex.join(cmd), p.stdout or "", p.stderr or ""))
    return p


def pin(pid, cpu=SERVER_CPU):
    """Pins a running process and all its threads. A thread that ends while
    taskset walks them (the emulator's per-request threads) fails the walk:
    it is walked again, new threads inheriting the pinned ones' CPU."""
    for _ in range(4):
        p = run(["taskset", "-a", "-p", "-c", cpu, str(pid)], check=False)
        if p.returncode == 0 or "No such process" not in (p.stderr or ""):
            break
    if p.returncode != 0:
        raise SystemExit("command failed (rc %d): taskset -a -p -c %s %d\n%s"
                         % (p.returncode, cpu, pid, p.stderr))


def client(cmd, cpu=CLIENT_CPU):
    return ["taskset", "-c", cpu] + list(cmd)


class PinnedHttpd(Httpd):
    """The harness's httpd, started under taskset so every child inherits
    the CPU; its apache2 commands are printed."""

    cpu = SERVER_CPU

    def _apache2(self, *args, timeout=60):
        cmd = ["taskset", "-c", self.cpu, APACHE2, "-d", self.root, "-f",
               self.path("conf/httpd.conf")] + list(args)
        echo(cmd)
        return subprocess.run(cmd, env=self.environ(), capture_output=True, text=True,
                              timeout=timeout)

    def write_bench_config(self, test_conf, mpm_tuning, access_log=False, extra_modules=""):
        """The harness's configuration with a fixed MPM tuning; the access log
        (a disk write per request, the same for every handler) off unless asked."""
        main, test = self.render(test_conf, mpm_tuning=mpm_tuning)
        if not access_log:
            main = re.sub(r"(?m)^CustomLog .*$", "# CustomLog off for the benchmark", main)
        main = main.replace("TypesConfig /etc/mime.types",
                            extra_modules + "TypesConfig /etc/mime.types")
        self.write_file("conf/httpd.conf", main)
        self.write_file("conf/test.conf", test)

    def children(self):
        """Pids of the worker processes (the parent's children), sorted."""
        return sorted(super().children())

    def wait_children(self, n, timeout=30):
        return sorted(super().wait_children(n, timeout))


def proc_status(pid, key):
    """A kB field of /proc/<pid>/status (VmRSS, VmHWM...), as an int."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def proc_cpu_seconds(pid):
    """user + system CPU seconds of a process (threads included)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- load generators

def _ms(value, unit):
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url, seconds, connections, headers=(), timeout_s=10):
    """wrk, one thread on the client CPU. -> dict with rps, p50/p90/p99 and
    max (ms), requests, errors (non-2xx/3xx answers + socket errors)."""
    cmd = ["wrk", "-t1", "-c%d" % connections, "-d%ds" % seconds, "--latency",
           "--timeout", "%ds" % timeout_s]
    for h in headers:
        cmd += ["-H", h]
    out = run(client(cmd + [url]), timeout=seconds + 60).stdout
    res = {"tool": "wrk", "connections": connections}
    res["rps"] = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    res["requests"] = int(re.search(r"(\d+) requests in", out).group(1))
    m = re.search(r"^\s+Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)\b", out, re.M)
    if m:
        res["max"] = _ms(m.group(1), m.group(2))
    for pct in ("50", "75", "90", "99"):
        m = re.search(r"\s%s%%\s+([\d.]+)(us|ms|s)\b" % pct, out)
        res["p" + pct] = _ms(m.group(1), m.group(2))
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    res["errors"] = errors
    res["raw"] = out
    return res


def ab(url, seconds, connections, headers=(), requests=None):
    """ab -k on the client CPU, bounded by time (or by a request count).
    -> dict with rps, p50/p90/p99 (ms, from ab's CSV, 3 decimals), requests,
    errors (failed + non-2xx), and the Length failures apart."""
    with tempfile.NamedTemporaryFile(suffix=".csv", delete=False) as f:
        csv = f.name
    cmd = ["ab", "-k", "-q", "-c", str(connections)]
    if requests is None:
        # -t implies -n 50000; a later -n lifts that bound so time decides.
        cmd += ["-t", str(seconds), "-n", "5000000"]
    else:
        cmd += ["-n", str(requests)]
    for h in headers:
        cmd += ["-H", h]
    cmd += ["-e", csv, url]
    out = run(client(cmd), timeout=(seconds or 600) + 120).stdout
    res = {"tool": "ab", "connections": connections}
    res["rps"] = float(re.search(r"Requests per second:\s+([\d.]+)", out).group(1))
    res["requests"] = int(re.search(r"Complete requests:\s+(\d+)", out).group(1))
    failed = int(re.search(r"Failed requests:\s+(\d+)", out).group(1))
    m = re.search(r"\(Connect: (\d+), Receive: (\d+), Length: (\d+), Exceptions: (\d+)\)", out)
    res["length_failures"] = int(m.group(3)) if m else 0
    m = re.search(r"Non-2xx responses:\s+(\d+)", out)
    res["non2xx"] = int(m.group(1)) if m else 0
    res["errors"] = failed + res["non2xx"]
    pcts = {}
    with open(csv) as f:
        next(f)
        for line in f:
            p, t = line.strip().split(",")
            pcts[int(p)] = float(t)
    os.unlink(csv)
    for pct in (50, 75, 90, 99):
        res["p%d" % pct] = pcts[pct]
    res["raw"] = out
    return res


# ---------------------------------------------------------------- figures

def mmm(values):
    """(median, min, max) of a list."""
    values = list(values)
    return statistics.median(values), min(values), max(values)


def fmt_mmm(values, digits=2):
    med, lo, hi = mmm(values)
    f = "%%.%df" % digits
    return (f + " (" + f + "-" + f + ")") % (med, lo, hi)


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        out.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(out) + "\n"


def machine():
    """A few lines on where the figures come from."""
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) // 1024
    try:
        with open("/etc/debian_version") as f:
            debian = f.read().strip()
    except OSError:
        debian = "?"
    versions = {}
    for name, pkg in (("apache2", "apache2-bin"), ("wrk", "wrk"), ("ab", "apache2-utils"),
                      ("locust", "python3-locust"), ("memcached", "memcached"),
                      ("redis", "redis-server"), ("nginx", "nginx"), ("varnish", "varnish"),
                      ("gnuplot", "gnuplot-nox")):
        p = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg],
                           capture_output=True, text=True)
        versions[name] = "%s %s" % (pkg, p.stdout.strip() if p.returncode == 0 else "missing")
    load = os.getloadavg()
    return {"cpu": cpu, "cpus": os.cpu_count(), "mem_mb": mem, "debian": debian,
            "kernel": platform.release(), "versions": versions,
            "load": "%.2f %.2f %.2f" % load,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def have(tool):
    return shutil.which(tool) is not None


# ---------------------------------------------------------------- what the module can do
# The bench runs on builds from before and after a feature lands: it asks
# the module (apache2 -t on a probe configuration) instead of assuming, and
# reports "not available in this build" for what it does not know.

UNAVAILABLE = "not available in this build"
_SUPPORTS = {}


def secret_file():
    """A fleet secret for DatosCacheSecretFile: random bytes, owned by the
    user that starts httpd, mode 0600 (the rule of a key file)."""
    import base64
    path = os.path.join(BENCH_BUILD, "fleet-secret")
    if not os.path.exists(path):
        os.makedirs(BENCH_BUILD, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(base64.b64encode(os.urandom(48)).decode() + "\n")
    os.chmod(path, 0o600)
    return path


def datos_supports(directive, args, needs=""):
    """Whether mod_datos.so knows `directive args` (with the lines `needs`
    before it, e.g. a LoadModule the value calls for): `apache2 -t` on a
    configuration with it. An unknown directive is False; any other
    refusal stops the bench, as it is a mistake of the probe."""
    key = (directive, args)
    if key in _SUPPORTS:
        return _SUPPORTS[key]
    from tools.httpd import Httpd as _Httpd
    h = _Httpd("bench-probe", mpm="event")
    h.write_config(needs + "DatosProject datos-local\nDatosTable latam_dataset.datos\n"
                   "DatosCredentials none\nDatosBigQueryURL http://127.0.0.1:9/bigquery/v2\n"
                   "DatosStateDir \"${root}/state\"\n%s %s\n" % (directive, args))
    rc, out = h.configtest()
    echo("%s -t  # with %s %s: rc %d" % (APACHE2, directive, args, rc))
    if rc == 0:
        _SUPPORTS[key] = True
    elif re.search(r"Invalid command '%s'" % re.escape(directive), out):
        _SUPPORTS[key] = False
    else:
        raise SystemExit("the probe of %s failed for another reason:\n%s" % (directive, out))
    return _SUPPORTS[key]


def quick_handler_supported():
    """DatosQuickHandler (cache hits from quick_handler)."""
    return datos_supports("DatosQuickHandler", "On")


def fleet_directives(kind, address):
    """The lines that put a host on a shared memcached or redis: the
    socache provider, DatosCache, and DatosCacheSecretFile where the module
    has it (then required with a fleet provider)."""
    module = {"memcache": "socache_memcache", "redis": "socache_redis"}[kind]
    load = "LoadModule %s_module /usr/lib/apache2/modules/mod_%s.so\n" % (module, module)
    lines = "DatosCache %s:%s\n" % (kind, address)
    if datos_supports("DatosCacheSecretFile", '"%s"' % secret_file(),
                      needs=load + "DatosCache %s:127.0.0.1:9\n" % kind):
        lines += 'DatosCacheSecretFile "%s"\n' % secret_file()
    return load, lines


def health_ready(port):
    """GET /health?ready -> (supported, status). A build without readiness
    answers it as plain /health ({"status":"ok"})."""
    import http.client
    import json
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", "/health?ready")
        r = c.getresponse()
        body = r.read()
    finally:
        c.close()
    try:
        status = json.loads(body).get("status")
    except ValueError:
        status = None
    return status in ("ready", "warming"), r.status
