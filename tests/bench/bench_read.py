#!/usr/bin/python3
"""The read path (issue 11, sections 1, 2 and 5): /datos as a cache hit
against a trivial handler sending the same bytes from memory, the same bytes
as a static file, and the uncached design with 300 ms of BigQuery latency;
the peers (issue 19): the old service's bytes behind nginx proxy_cache and
behind Varnish, and a trivial quick_handler with the same bytes; how cost
grows with limit, gzip and connections; two httpd on one memcached; what
BigQuery is asked, counted at the emulator; and an httpd child's memory over
1,000,000 cached requests.

One httpd (event MPM, one child of 128 threads, pinned to CPU 0 with the
emulators and memcached) serves every handler; wrk and ab run on CPU 1.
Each figure that matters is a ratio taken inside a round; rounds interleave
the handlers in a rotating order, and the median of the per-round ratios is
quoted with the smallest and largest.

    /usr/bin/python3 tests/bench/bench_read.py [--rounds N] [--seconds S]
"""
import argparse
import hashlib
import http.client
import json
import os
import random
import re
import time

import benchlib as B
import bench_peers as P
from benchlib import echo, section

from gcpemu.client import PYTHON, SERVER, Emulator  # noqa: E402
from tools.httpd import MODULES_DIR, TEST_TMP, free_port  # noqa: E402
from harness.servers import Memcached  # noqa: E402

DATASET, TABLE, PROJECT = "latam_dataset", "datos", "datos-local"
BENCH_MODULE = os.path.join(B.BENCH_BUILD, "mod_bench_bytes.so")

# One child, so its L1 copy, its memory and its allocator are the ones
# measured; 256 threads leave room for 200 connections each with a request
# pending (a closed-loop load generator always has one), and for 50 requests
# waiting on BigQuery in the uncached case (DatosMaxWaiting set to match).
EVENT_ONE_CHILD = """StartServers 1
ServerLimit 1
ThreadLimit 256
ThreadsPerChild 256
MaxRequestWorkers 256
MinSpareThreads 1
MaxSpareThreads 256
MaxConnectionsPerChild 0
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 5
"""

WORDS = ("prueba", "autom\u00e1tica", "n\u00famero", "datos", "sensor", "lectura",
         "estaci\u00f3n", "temperatura", "ma\u00f1ana", "valor", "humedad", "presi\u00f3n",
         "norte", "sur", "registro", "se\u00f1al")


def text(rng, n):
    out = []
    while len(" ".join(out)) < n:
        out.append(rng.choice(WORDS))
    return " ".join(out)[:n].rstrip()


def rfc3339_us(us):
    secs, frac = divmod(int(us), 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + ".%06dZ" % frac


def table_rows(now):
    """The served table: 200 recent rows (the last ~3 hours: what /datos
    shows), and 40 older rows a day for 30 days (what a scan outside the
    watermark reads). Fixed seed: every run serves the same bytes."""
    rng = random.Random(11)
    now_us = int(now) * 1_000_000
    rows = []
    for i in range(200):
        ts = now_us - 60_000_000 - i * 53_000_000 - rng.randrange(1_000_000)
        rows.append({"id": "sensor-%04d" % i, "contenido": text(rng, rng.randrange(30, 180)),
                     "timestamp": rfc3339_us(ts), "message_id": "%017d" % (9_000_000 + i),
                     "publish_time": rfc3339_us(ts + 1_500_000)})
    for day in range(1, 31):
        for j in range(40):
            ts = now_us - day * 86_400_000_000 - j * 1_000_000_000
            rows.append({"id": "old-%02d-%02d" % (day, j), "contenido": text(rng, 120),
                         "timestamp": rfc3339_us(ts), "message_id": "%017d" % (day * 100 + j),
                         "publish_time": rfc3339_us(ts + 1_000_000)})
    return rows


_ROWS = []


def emulator_command(emu):
    """The command Emulator.start() runs (emulator/gcpemu/client.py)."""
    return [PYTHON, SERVER, "--port", "0", "--port-file", emu.port_file,
            "--project", emu.project, "--write-service-account-key", emu.key_file]


def start_emulator(name):
    """An emulator with the table; every emulator of a run gets the same
    rows, so every case serves the same bytes."""
    emu = Emulator(os.path.join(TEST_TMP, "bench-emu-" + name))
    echo(emulator_command(emu))
    emu.start()
    try:
        B.pin(emu.proc.pid, B.BACKEND_CPU)
        emu.reset()
        emu.create_dataset(DATASET, location="southamerica-east1")
        emu.create_datos_table(DATASET, TABLE)
        if not _ROWS:
            _ROWS.extend(table_rows(emu.now()))
        emu.insert_rows(_ROWS, DATASET, TABLE)
    except BaseException:
        emu.stop()  # not yet in any cleanup list
        raise
    return emu


def datos_directives(emu, extra=""):
    return ("DatosProject %s\nDatosTable %s.%s\nDatosCredentials none\n"
            "DatosLocation southamerica-east1\nDatosBigQueryURL %s/bigquery/v2\n"
            "DatosTimeout 5s\nDatosStateDir \"${root}/state\"\n%s"
            % (PROJECT, DATASET, TABLE, emu.base_url, extra))


DATOS_LOCATIONS = """
<Location "/datos">
  SetHandler datos
  SetEnv no-gzip 1
</Location>
<Location "/health">
  SetHandler datos-health
</Location>
<Location "/metrics">
  SetHandler datos-metrics
  Require ip 127.0.0.1
</Location>
"""

LOAD_EXTRA = ("LoadModule env_module %s/mod_env.so\n" % MODULES_DIR)


def get(port, path, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", path, headers=headers or {})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, dict(r.getheaders()), body


# The variants whose bytes the trivial handler copies: (name, /datos query, gzip).
VARIANTS = [("10", "/datos", False), ("100", "/datos?limit=100", False),
            ("10gz", "/datos", True), ("100gz", "/datos?limit=100", True)]
COPIED_HEADERS = ("Content-Type", "ETag", "Cache-Control", "Age", "Vary", "Cache-Status",
                  "Content-Encoding")


class Bench:
    def __init__(self, rounds, seconds, short_seconds):
        self.rounds = rounds
        self.seconds = seconds
        self.short = short_seconds
        self.data = {"rounds": rounds, "seconds": seconds, "short_seconds": short_seconds,
                     "mpm": "event, one child: " + EVENT_ONE_CHILD.strip().replace("\n", ", ")}
        self.cleanup = []

    # ------------------------------------------------------------ set-up
    def setup(self):
        section("read path: set-up")
        self.emu_a = start_emulator("cached")
        self.emu_d = start_emulator("uncached")
        self.cleanup += [self.emu_a.stop, self.emu_d.stop]
        # The design datos replaces: BigQuery answering every request in 300 ms.
        self.emu_d.add_fault(endpoint="bigquery.jobs.query", action="delay", delay_ms=300,
                             count=0)
        h = B.PinnedHttpd("bench-read", mpm="event")
        self.h = h
        self.port = h.port
        self.port_d = free_port()
        self.port_l = free_port()
        self.cleanup.append(h.stop)
        h.write_bench_config(self.main_conf(with_bench=False), EVENT_ONE_CHILD,
                             extra_modules=LOAD_EXTRA)
        h.start()
        # One request fills the cache (and the state file the next start reads).
        for _ in range(2):
            st, _, _ = get(self.port, "/datos")
            assert st == 200, st
        self.capture()
        h.stop()
        h.write_bench_config(self.main_conf(with_bench=True), EVENT_ONE_CHILD,
                             extra_modules=LOAD_EXTRA + "LoadModule bench_bytes_module %s\n"
                             % BENCH_MODULE)
        h.start()
        self.check_same_bytes()
        B.pin(h.pid())
        with open(h.path("conf/httpd.conf")) as f:
            self.data["httpd_conf"] = f.read()
        with open(h.path("conf/test.conf")) as f:
            self.data["httpd_conf"] += "\n# conf/test.conf\n" + f.read()

    def main_conf(self, with_bench):
        conf = datos_directives(self.emu_a) + DATOS_LOCATIONS
        # (d): the same locations on a second port, whose virtual host asks
        # BigQuery (the slow emulator) on every request.
        conf += ("Listen 127.0.0.1:%d\n<VirtualHost 127.0.0.1:%d>\n%s"
                 "DatosFreshFor 0\nDatosMaxWaiting 64\n</VirtualHost>\n"
                 % (self.port_d, self.port_d, datos_directives(self.emu_d)))
        # (l): the same answers with DatosKeepAliveLinger 0, so every next
        # request on a kept-alive connection goes through the event MPM's
        # listener. The settings differ in nothing that makes another
        # runtime, so (l) serves the cache (a) serves.
        conf += ("Listen 127.0.0.1:%d\n<VirtualHost 127.0.0.1:%d>\n%s"
                 "DatosKeepAliveLinger 0\n</VirtualHost>\n"
                 % (self.port_l, self.port_l, datos_directives(self.emu_a)))
        if with_bench:
            # /bench/<variant> from the handler hook; /bench/quick/10 the
            # same bytes and headers as /bench/10 from quick_handler (no
            # handler there: a request the quick handler left would be a 404).
            locations = [("/bench/" + name, name, False) for name, _, _ in VARIANTS]
            locations.append(("/bench/quick/10", "10", True))
            for path, name, quick in locations:
                v = self.variants[name]
                conf += '<Location "%s">\n' % path
                conf += "  BenchBytesQuick On\n" if quick else "  SetHandler bench-bytes\n"
                conf += '  BenchBytesFile "%s"\n' % v["file"]
                for k in COPIED_HEADERS:
                    if k in v["headers"]:
                        conf += '  BenchBytesHeader %s "%s"\n' % (
                            k, v["headers"][k].replace("\\", "\\\\").replace('"', '\\"'))
                conf += "</Location>\n"
        return conf

    def capture(self):
        """The exact bytes and headers of each /datos variant, for the trivial
        handler and the static file."""
        self.variants = {}
        out = os.path.join(B.BENCH_BUILD, "bytes")
        os.makedirs(out, exist_ok=True)
        for name, path, gz in VARIANTS:
            hdrs = {"Accept-Encoding": "gzip"} if gz else {}
            st, headers, body = get(self.port, path, hdrs)
            assert st == 200 and (headers.get("Content-Encoding") == "gzip") == gz, headers
            f = os.path.join(out, "datos-%s.body" % name)
            with open(f, "wb") as fh:
                fh.write(body)
            os.chmod(f, 0o644)
            self.variants[name] = {"file": f, "headers": headers, "bytes": len(body),
                                   "sha256": hashlib.sha256(body).hexdigest()}
            if not gz:
                self.h.write_file("htdocs/datos-%s.json" % name, "")
                with open(self.h.path("htdocs/datos-%s.json" % name), "wb") as fh:
                    fh.write(body)
        self.data["bytes"] = {k: v["bytes"] for k, v in self.variants.items()}
        self.data["headers_10"] = {k: v for k, v in self.variants["10"]["headers"].items()
                                   if k not in ("Date", "Server")}

    def check_same_bytes(self):
        """Every handler compared sends the same body, or the comparison is void."""
        for name, path, gz in VARIANTS:
            hdrs = {"Accept-Encoding": "gzip"} if gz else {}
            want = self.variants[name]["sha256"]
            urls = [(self.port, path), (self.port, "/bench/" + name)]
            if name == "10":
                urls.append((self.port, "/bench/quick/10"))
            if not gz:
                urls += [(self.port, "/datos-%s.json" % name), (self.port_d, path)]
            for port, p in urls:
                st, headers, body = get(port, p, hdrs)
                assert st == 200, (p, st, body[:200])
                assert hashlib.sha256(body).hexdigest() == want, ("different bytes", port, p)
        st, headers, _ = get(self.port, "/bench/10")
        self.data["bench_headers_10"] = {k: v for k, v in headers.items()
                                         if k not in ("Date", "Server")}
        st, headers, _ = get(self.port, "/bench/quick/10")
        self.data["quick_headers_10"] = {k: v for k, v in headers.items()
                                         if k not in ("Date", "Server")}

    def url(self, path, port=None):
        return "http://127.0.0.1:%d%s" % (port or self.port, path)

    # ------------------------------------------------------------ runs
    def run_case(self, tool, url, conns, seconds, headers=()):
        if tool == "ab":
            return B.ab(url, seconds, conns, headers)
        return B.wrk(url, seconds, conns, headers)

    def rounds_of(self, pairs, tools, seconds, settle=0):
        """pairs: [((key, url, headers), (key, url, headers))], the cases
        compared by a ratio; tools: [(key, tool, conns)]. Every round runs
        each tool over all cases, the two of a pair back to back (so what
        disturbs the machine at that moment disturbs both), with the order
        of the pairs rotated and which of a pair goes first alternated.
        settle: seconds of the same case, not measured, before each run, so
        that each run measures the case and not the switch to it (which
        switching() measures)."""
        res = {(t, c[0]): [] for t, _, _ in tools for pair in pairs for c in pair}
        for r in range(self.rounds):
            echo("# round %d of %d" % (r + 1, self.rounds))
            for tkey, tool, conns in tools:
                k = r % len(pairs)
                for pair in pairs[k:] + pairs[:k]:
                    for ckey, url, hdrs in (reversed(pair) if r % 2 else pair):
                        if settle:
                            self.run_case(tool, url, conns, settle, hdrs)
                            if ckey == "d":
                                self.quiesce()
                        t0 = time.time()
                        x = self.run_case(tool, url, conns, seconds, hdrs)
                        x["start"], x["end"] = t0, time.time()
                        res[(tkey, ckey)].append(x)
                        if ckey == "d":
                            self.quiesce()
        return res

    def quiesce(self, timeout=10):
        """After the uncached case, the requests the load generator left in
        flight still wait on BigQuery: the next run starts once none does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _, _, body = get(self.port, "/metrics")
            for line in body.decode().splitlines():
                if line.startswith("datos_backend_waiting_requests "):
                    if float(line.split()[1]) == 0:
                        return
            time.sleep(0.05)
        raise SystemExit("requests still wait on BigQuery %ds after the run" % timeout)

    def main_comparison(self):
        section("read path: (a) hit, (b) trivial handler, (c) static file, (d) uncached")
        pairs = [(("a", self.url("/datos"), ()), ("b", self.url("/bench/10"), ())),
                 (("c", self.url("/datos-10.json"), ()), ("d", self.url("/datos", self.port_d), ()))]
        tools = [("wrk50", "wrk", 50), ("wrk1", "wrk", 1), ("ab50", "ab", 50)]
        # Warm-up: every thread has served each handler before the clock.
        for pair in pairs:
            for _, url, _ in pair:
                B.wrk(url, 1 if B.QUICK else 2, 50)
        self.quiesce()
        self.emu_a.clear_counters()
        self.emu_d.clear_counters()
        res = self.rounds_of(pairs, tools, self.seconds, settle=1)
        self.mark_refreshes(res)
        self.data["settle_s"] = 1
        self.data["main"] = {"%s/%s" % k: [strip(x) for x in v] for k, v in res.items()}
        self.count_requests(res, "a", "d")

    def switching(self, repeats=5):
        """The first second of /datos right after the CPU was saturated by
        requests that hand every connection back to the MPM (b): with the
        linger (a) and without (l). The threads that served (b) carry the
        CPU time they used into the scheduler's choices, and under the
        linger each connection keeps its thread, so (a) shows a transient
        its steady state does not."""
        section("read path: switching from the handler (b) to /datos, 1 s")
        out = {"a": [], "l": []}
        for _ in range(repeats):
            for key, url in (("a", self.url("/datos")), ("l", self.url("/datos", self.port_l))):
                B.wrk(self.url("/bench/10"), 2, 50)
                out[key].append(strip(B.wrk(url, 1, 50)))
        self.data["switching"] = out

    def peers(self):
        """The old service's bytes behind nginx proxy_cache and behind Varnish,
        each with a warm cache and on the server CPU, against (a), (b) and a
        trivial quick_handler (q) with the same bytes: one wrk -t1 -c50 run
        of each case per round, in a rotating order."""
        section("read path: peers, nginx proxy_cache and Varnish; the quick handler")
        nginx_ok, varnish_ok = P.available()
        if not (nginx_ok and varnish_ok):
            raise SystemExit("nginx or varnishd is missing: make bench-deps installs them")
        want = self.variants["10"]["sha256"]
        old = P.old_service_body(_ROWS, 10)
        if hashlib.sha256(old).hexdigest() != want:
            raise SystemExit("the old service's rendering of the rows differs from /datos: "
                             "the comparison would be void")
        body = os.path.join(B.BENCH_BUILD, "bytes", "old-service-10.body")
        with open(body, "wb") as f:
            f.write(old)
        os.chmod(body, 0o644)
        quick = B.quick_handler_supported()
        origin = P.OldOrigin(body)
        self.cleanup.append(origin.stop)
        origin.start()
        nginx, varnish = P.Nginx(origin.port), P.Varnish(origin.port)
        self.cleanup += [nginx.stop, varnish.stop]
        nginx.start()
        varnish.start()
        headers = {"n": P.warm(nginx, want), "v": P.warm(varnish, want)}
        cases = [("a", self.url("/datos")), ("l", self.url("/datos", self.port_l)),
                 ("b", self.url("/bench/10")),
                 ("q", self.url("/bench/quick/10")), ("n", nginx.url), ("v", varnish.url)]
        for _, url in cases:
            B.wrk(url, 1 if B.QUICK else 2, 50)
        res = {("wrk50", c): [] for c, _ in cases}
        lingers = linger_counts(self.port)
        for r in range(self.rounds):
            echo("# round %d of %d" % (r + 1, self.rounds))
            k = r % len(cases)
            order = cases[k:] + cases[:k]
            for key, url in (reversed(order) if r % 2 else order):
                t0 = time.time()
                x = B.wrk(url, self.seconds, 50)
                x["start"], x["end"] = t0, time.time()
                res[("wrk50", key)].append(x)
        self.mark_refreshes(res)
        self.count_requests(res, "a", None)
        lingers = {k: v - lingers.get(k, 0) for k, v in linger_counts(self.port).items()}
        # Still hits after the runs, and what each peer logged.
        after = {"n": P.warm(nginx, want), "v": P.warm(varnish, want)}
        with open(os.path.join(nginx.dir, "error.log"), errors="replace") as f:
            nginx_log = [line.strip() for line in f
                         if re.search(r"\[(warn|error|crit|alert|emerg)\]", line)]
        self.data["peers"] = {
            "runs": {c: [strip(x) for x in v] for (_, c), v in res.items()},
            "quick_handler": quick,
            "versions": {"nginx": P.Nginx.version(), "varnish": P.Varnish.version()},
            "headers": {k: {h: v for h, v in hs.items() if h.lower() not in ("date",)}
                        for k, hs in headers.items()},
            "still_hits": {k: bool(v) for k, v in after.items()},
            "nginx_conf": nginx.conf, "varnish_vcl": varnish.conf,
            "nginx_log": nginx_log[:20], "bytes": len(old),
            "fresh_s": P.FRESH_S, "grace_s": P.GRACE_S, "lingers": lingers}
        for d in (varnish, nginx, origin):
            d.stop()

    def profile(self):
        """Where the child's CPU goes while serving (a) and (b): perf
        samples by shared object, for one more run of each."""
        import re
        import subprocess
        section("read path: perf profile of (a) and (b)")
        if not B.have("perf"):
            self.data["profile"] = None
            return
        kids = self.h.children()
        out = {}
        for key, path in (("a", "/datos"), ("b", "/bench/10")):
            data = os.path.join(B.BENCH_BUILD, "perf-%s.data" % key)
            cmd = B.client(["wrk", "-t1", "-c50", "-d%ds" % (self.seconds + 2), self.url(path)])
            echo(cmd)
            load = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
            try:
                time.sleep(1)
                rec = B.run(["perf", "record", "-F", "999", "-o", data, "-p",
                             ",".join(str(k) for k in kids), "--", "sleep",
                             str(self.seconds)], check=False)
            finally:
                load.wait()
            if rec.returncode != 0:
                self.data["profile"] = {"error": (rec.stderr or "")[-300:]}
                return
            rep = B.run(["perf", "report", "-i", data, "--sort", "dso", "--stdio"],
                        check=False)
            shares = []
            for line in rep.stdout.splitlines():
                m = re.match(r"^\s+([\d.]+)%\s+(\S+)", line)
                if m:
                    shares.append((m.group(2), float(m.group(1))))
            out[key] = shares
        self.data["profile"] = out

    def mark_refreshes(self, res):
        """Marks each /datos run with the BigQuery refreshes made while it
        ran (the emulator logs the wall time of each request)."""
        walls = [q["wall"] for q in self.emu_a.requests("bigquery.jobs.query")]
        for (_, c), runs in res.items():
            if c.startswith("a"):
                for x in runs:
                    x["refreshes"] = sum(1 for w in walls if x["start"] <= w <= x["end"])

    def count_requests(self, res, a, d):
        for (t, c), runs in res.items():
            if c == a:
                self.req_a += sum(x["requests"] for x in runs)
            elif c == d:
                self.req_d += sum(x["requests"] for x in runs)

    def growth(self):
        section("read path: growth with limit, gzip and connections")
        gz = ("Accept-Encoding: gzip",)
        pairs = [(("a10", self.url("/datos"), ()), ("b10", self.url("/bench/10"), ())),
                 (("a100", self.url("/datos?limit=100"), ()),
                  ("b100", self.url("/bench/100"), ())),
                 (("a10gz", self.url("/datos"), gz), ("b10gz", self.url("/bench/10gz"), gz)),
                 (("a100gz", self.url("/datos?limit=100"), gz),
                  ("b100gz", self.url("/bench/100gz"), gz))]
        res = self.rounds_of(pairs, [("wrk50", "wrk", 50)], self.short)
        conns = [(("a", self.url("/datos"), ()), ("b", self.url("/bench/10"), ()))]
        res2 = self.rounds_of(conns, [("wrk1", "wrk", 1), ("wrk200", "wrk", 200)], self.short)
        self.mark_refreshes(res)
        self.mark_refreshes(res2)
        self.data["growth"] = {"%s/%s" % k: [strip(x) for x in v] for k, v in res.items()}
        self.data["growth"].update({"%s/%s" % k: [strip(x) for x in v]
                                    for k, v in res2.items()})
        for (t, c), runs in list(res.items()) + list(res2.items()):
            if c.startswith("a"):
                self.req_a += sum(x["requests"] for x in runs)

    def fleet(self):
        section("read path: fleet mode, two httpd on one memcached")
        emu = start_emulator("fleet")
        self.cleanup.append(emu.stop)
        mc = Memcached()
        echo(mc.command())
        mc.start()
        self.cleanup.append(mc.stop)
        B.pin(mc.proc.pid, B.BACKEND_CPU)
        hosts = []
        for i in (1, 2):
            h = B.PinnedHttpd("bench-fleet-%d" % i, mpm="event")
            load, fleet = B.fleet_directives("memcache", mc.address)
            conf = datos_directives(emu, fleet + "DatosFreshFor 2s\n") + DATOS_LOCATIONS
            h.write_bench_config(conf, EVENT_ONE_CHILD, extra_modules=LOAD_EXTRA + load)
            h.start()
            self.cleanup.append(h.stop)
            hosts.append(h)
        for h in hosts:
            assert get(h.port, "/datos")[0] == 200
            B.wrk(self.url("/datos", h.port), 1, 25)
        emu.clear_counters()
        fetched0 = [host_fetches(h) for h in hosts]
        single, fleet = [], []
        load_seconds = 0.0
        for r in range(self.rounds):
            echo("# round %d of %d" % (r + 1, self.rounds))
            order = [0, 1] if r % 2 == 0 else [1, 0]
            for which in order:
                if which == 0:
                    single.append(strip(B.wrk(self.url("/datos"), self.short, 50)))
                    self.req_a += single[-1]["requests"]
                else:
                    t0 = time.monotonic()
                    fleet.append(self.two_wrk([self.url("/datos", h.port) for h in hosts]))
                    load_seconds += time.monotonic() - t0
        qb = emu.query_bytes()
        self.data["fleet"] = {"single": single, "fleet": fleet, "fresh_for_s": 2,
                              "queries": emu.count("bigquery.jobs.query"),
                              "per_host_fetches": [host_fetches(h) - f0
                                                   for h, f0 in zip(hosts, fetched0)],
                              "fleet_runs": len(fleet),
                              "query_bytes": qb, "load_seconds": load_seconds}
        for h in hosts:
            h.stop()
        mc.stop()
        emu.stop()

    def two_wrk(self, urls):
        """wrk on each host at once, 25 connections each, both on the client CPU."""
        import subprocess
        procs = []
        for u in urls:
            cmd = B.client(["wrk", "-t1", "-c25", "-d%ds" % self.short, "--latency", u])
            echo(cmd)
            procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
        outs = [p.communicate()[0] for p in procs]
        parsed = [parse_wrk_text(o) for o in outs]
        return {"rps": sum(p["rps"] for p in parsed),
                "p99": max(p["p99"] for p in parsed),
                "p50": max(p["p50"] for p in parsed),
                "errors": sum(p["errors"] for p in parsed),
                "requests": sum(p["requests"] for p in parsed),
                "per_host_rps": [p["rps"] for p in parsed]}

    # ------------------------------------------------------------ cost
    def cost(self):
        section("cost: BigQuery queries and bytes, counted at the emulator")
        out = {"a_bench": {"requests": self.req_a, **self.qa}}
        # (d) by an exact count of requests (a timed run leaves requests in
        # flight that BigQuery sees and the load generator does not count).
        d_requests = 500 if B.QUICK else 2000
        self.h.start()
        self.emu_d.clear_counters()
        r = B.ab(self.url("/datos", self.port_d), None, 50, requests=d_requests)
        out["d_exact"] = {"requests": r["requests"], "errors": r["errors"],
                          "queries": self.emu_d.count("bigquery.jobs.query"),
                          **self.emu_d.query_bytes()}
        self.h.stop()
        # 10,000 requests from a cold start, the shipped freshness (30 s).
        h = B.PinnedHttpd("bench-cost-cold", mpm="event")
        h.write_bench_config(datos_directives(self.emu_a) + DATOS_LOCATIONS, EVENT_ONE_CHILD,
                             extra_modules=LOAD_EXTRA)
        h.start()
        self.cleanup.append(h.stop)
        self.emu_a.clear_counters()
        r = B.ab(self.url("/datos", h.port), None, 50, requests=10000)
        out["a_cold_10k"] = {"requests": r["requests"], "errors": r["errors"],
                             "queries": self.emu_a.count("bigquery.jobs.query"),
                             **self.emu_a.query_bytes()}
        h.stop()
        # Refreshes under the watermark: freshness 1 s, so a 10-second run
        # makes about ten; the first query of the run is the cold one.
        h = B.PinnedHttpd("bench-cost-watermark", mpm="event")
        h.write_bench_config(datos_directives(self.emu_a, "DatosFreshFor 1s\n") +
                             DATOS_LOCATIONS, EVENT_ONE_CHILD, extra_modules=LOAD_EXTRA)
        h.start()
        self.cleanup.append(h.stop)
        self.emu_a.clear_counters()
        assert get(h.port, "/datos")[0] == 200
        cold = self.emu_a.query_bytes()
        self.emu_a.clear_counters()
        r = B.ab(self.url("/datos", h.port), 10 if not B.QUICK else 4, 50)
        wm = self.emu_a.query_bytes()
        wm_queries = [q["body"]["query"] for q in self.emu_a.requests("bigquery.jobs.query")]
        out["a_watermark"] = {"requests": r["requests"], "errors": r["errors"],
                              "queries": self.emu_a.count("bigquery.jobs.query"), **wm,
                              "all_with_watermark": all("@watermark" in q for q in wm_queries),
                              "cold": cold}
        self.length_failures(h)
        h.stop()
        self.data["cost"] = out

    def length_failures(self, h):
        """ab counts a 200 whose body length differs from the first answer's
        as a failed request ("Length"). A refresh that brings new rows does
        exactly that: a row written to the table while ab runs against a
        1-second freshness shows it."""
        import threading

        def write_row():
            time.sleep(2)
            now_us = int(self.emu_a.now() * 1_000_000)
            self.emu_a.insert_rows([{"id": "nuevo-1", "contenido": "fila escrita durante ab",
                                     "timestamp": rfc3339_us(now_us)}], DATASET, TABLE)

        t = threading.Thread(target=write_row)
        t.start()
        echo("# a row is written to the table 2 s into the next run")
        r = B.ab(self.url("/datos", h.port), 5 if not B.QUICK else 4, 50)
        t.join()
        self.data["length_demo"] = {"requests": r["requests"], "failed": r["errors"],
                                    "length_failures": r["length_failures"],
                                    "non2xx": r["non2xx"]}

    # ------------------------------------------------------------ memory
    def memory(self, n):
        """An httpd child's VmRSS over n cache hits, with a freshness longer
        than the run so that every request is a hit; then the same child
        over refreshes (freshness 1 s), which is where memory does move."""
        section("memory: one httpd child over %d cached requests" % n)
        h = B.PinnedHttpd("bench-memory", mpm="event")
        h.write_bench_config(datos_directives(self.emu_a, "DatosFreshFor 1h\n") +
                             DATOS_LOCATIONS, EVENT_ONE_CHILD, extra_modules=LOAD_EXTRA)
        h.start()
        self.cleanup.append(h.stop)
        child = h.wait_children(1)[0]
        assert get(h.port, "/datos")[0] == 200
        rss0 = B.proc_status(child, "VmRSS")
        B.ab(self.url("/datos", h.port), None, 50, requests=20000)
        rss50 = B.proc_status(child, "VmRSS")
        # 50 connections keep some 50 of the 256 threads busy; the others
        # take their first request now and then, each growing the child by
        # its first allocations. 256 at once make every thread serve first.
        B.ab(self.url("/datos", h.port), None, 256, requests=50000)
        rss1 = B.proc_status(child, "VmRSS")
        self.emu_a.clear_counters()
        t0 = time.monotonic()
        r = B.ab(self.url("/datos", h.port), None, 50, requests=n)
        secs = time.monotonic() - t0
        rss2 = B.proc_status(child, "VmRSS")
        hwm = B.proc_status(child, "VmHWM")
        assert h.children() == [child], "the child changed during the run"
        self.data["memory"] = {"requests": n, "rss_first_hit_kb": rss0, "rss_warm50_kb": rss50,
                               "rss_warm_kb": rss1,
                               "rss_after_kb": rss2, "hwm_kb": hwm, "errors": r["errors"],
                               "rps": r["rps"], "seconds": secs,
                               "queries": self.emu_a.count("bigquery.jobs.query"),
                               "length_failures": r["length_failures"]}
        h.stop()
        # The same child over refreshes: each is made by whichever worker
        # thread takes the request, and the first refresh a thread makes
        # leaves its working set in that thread's allocator and malloc arena.
        h = B.PinnedHttpd("bench-memory-refresh", mpm="event")
        h.write_bench_config(datos_directives(self.emu_a, "DatosFreshFor 1s\n") +
                             DATOS_LOCATIONS, EVENT_ONE_CHILD, extra_modules=LOAD_EXTRA)
        h.start()
        self.cleanup.append(h.stop)
        child = h.wait_children(1)[0]
        assert get(h.port, "/datos")[0] == 200
        B.ab(self.url("/datos", h.port), None, 50, requests=20000)
        self.emu_a.clear_counters()
        points = [(0, B.proc_status(child, "VmRSS"))]
        steps, step_s = (2, 2) if B.QUICK else (8, 5)
        for _ in range(steps):
            B.ab(self.url("/datos", h.port), step_s, 50)
            points.append((self.emu_a.count("bigquery.jobs.query"),
                           B.proc_status(child, "VmRSS")))
        self.data["memory_refresh"] = {"points": points, "threads": 256}
        h.stop()

    def run(self, memory_requests, parts):
        self.req_a = self.req_d = 0
        try:
            self.setup()
            if "main" in parts:
                self.main_comparison()
            if "peers" in parts:
                self.peers()
            if "switching" in parts:
                self.switching()
            if "profile" in parts:
                self.profile()
            if "growth" in parts:
                self.growth()
            if "fleet" in parts:
                self.fleet()
            self.qa = {"queries": self.emu_a.count("bigquery.jobs.query"),
                       **self.emu_a.query_bytes()}
            self.qd = {"queries": self.emu_d.count("bigquery.jobs.query"),
                       **self.emu_d.query_bytes()}
            self.data["error_log"] = self.h.check_log()
            # the main server idles from here on: its refreshes are not counted
            self.h.stop()
            if "cost" in parts:
                self.cost()
            if "memory" in parts:
                self.memory(memory_requests)
        finally:
            for stop in reversed(self.cleanup):
                try:
                    stop()
                except Exception as e:  # keep stopping the others
                    print("cleanup: %s" % e)
        return self.data


def host_fetches(h):
    """BigQuery fetches this httpd made, from its /metrics."""
    _, _, body = get(h.port, "/metrics")
    return sum(float(line.split()[1]) for line in body.decode().splitlines()
               if line.startswith("datos_backend_queries_total{"))


def linger_counts(port):
    """datos_keepalive_lingers_total by outcome, from /metrics."""
    _, _, body = get(port, "/metrics")
    return {m.group(1): int(m.group(2)) for m in re.finditer(
        r'^datos_keepalive_lingers_total\{outcome="(\w+)"\} (\d+)$', body.decode(), re.M)}


def parse_wrk_text(out):
    import re
    res = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
           "requests": int(re.search(r"(\d+) requests in", out).group(1))}
    for pct in ("50", "90", "99"):
        m = re.search(r"\s%s%%\s+([\d.]+)(us|ms|s)\b" % pct, out)
        res["p" + pct] = B._ms(m.group(1), m.group(2))
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    res["errors"] = errors
    return res


def strip(x):
    return {k: v for k, v in x.items() if k != "raw"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2 if B.QUICK else 5)
    ap.add_argument("--seconds", type=int, default=1 if B.QUICK else 4)
    ap.add_argument("--short-seconds", type=int, default=1 if B.QUICK else 2)
    ap.add_argument("--memory-requests", type=int, default=50_000 if B.QUICK else 1_000_000)
    ap.add_argument("--parts",
                    default="main,peers,switching,profile,growth,fleet,cost,memory")
    ap.add_argument("--out", default=os.path.join(B.BENCH_BUILD, "data", "read.json"))
    args = ap.parse_args()
    if not os.path.exists(BENCH_MODULE):
        raise SystemExit("%s is missing: make bench builds it" % BENCH_MODULE)
    data = Bench(args.rounds, args.seconds, args.short_seconds).run(args.memory_requests,
                                                                   args.parts.split(","))
    data["commands"] = B.COMMANDS
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(data, f, indent=1)
    print("wrote %s" % args.out)


if __name__ == "__main__":
    main()
