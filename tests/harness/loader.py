"""Runs the real datos-loader binary (build/datos-loader, or the ASan+UBSan one
at build/asan/datos-loader when DATOS_SANITIZE=1) against the emulator.

Each Loader has its own folder under build/test-tmp with its config file, its
state directory (journal, lock) and its metrics file; a run returns the exit
code and the JSON log events it wrote on stderr.
"""
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import time

from tools.httpd import BUILD_DIR, TEST_TMP, sanitizer_runtime

PIPELINE = {
    "topic": "datos-topic",
    "subscription": "datos-subscription",
    "dead_letter_topic": "datos-dlq",
    "dead_letter_subscription": "datos-dlq-subscription",
}


def loader_path(sanitize=None):
    if sanitize is None:
        sanitize = os.environ.get("DATOS_SANITIZE") == "1"
    return os.path.join(BUILD_DIR, "asan" if sanitize else "", "datos-loader")


class Result:
    def __init__(self, rc, stdout, stderr, seconds, rusage):
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.seconds = seconds
        self.rusage = rusage
        self.events = []
        self.garbage = []
        for line in stderr.splitlines():
            try:
                ev = json.loads(line)
                if not isinstance(ev, dict):
                    raise ValueError
                self.events.append(ev)
            except ValueError:
                self.garbage.append(line)

    def named(self, name):
        return [e for e in self.events if e.get("event") == name]

    def one(self, name):
        got = self.named(name)
        assert len(got) == 1, (name, self.stderr[-3000:])
        return got[0]

    @property
    def finished(self):
        return self.one("run_finished")

    def __repr__(self):
        return "<loader rc=%s %s>" % (self.rc, self.stderr[-2000:])


class LoaderError(AssertionError):
    pass


class Loader:
    def __init__(self, emulator, name, sanitize=None, **settings):
        self.emulator = emulator
        self.name = name
        self.dir = os.path.join(TEST_TMP, "loader-" + name)
        if os.path.isdir(self.dir):
            shutil.rmtree(self.dir)
        os.makedirs(self.dir)
        self.state_dir = os.path.join(self.dir, "state")
        self.metrics_file = os.path.join(self.dir, "datos_loader.prom")
        self.config_file = os.path.join(self.dir, "loader.conf")
        self.sanitize = (os.environ.get("DATOS_SANITIZE") == "1") if sanitize is None else sanitize
        self.binary = loader_path(self.sanitize)
        self.settings = {
            "project": emulator.project,
            "credentials": "none",
            "state_dir": self.state_dir,
            "metrics_file": self.metrics_file,
            "retry_initial": "50ms",
            "retry_max": "500ms",
            "retry_deadline": "5s",
            # budgets no busy machine runs out of; the fault tests set short ones
            "http_timeout": "60s",
            "pull_timeout": "5s",
            "max_seconds": "600s",
            # Most tests rerun at once after a failed run; the outage test sets it.
            "failure_backoff": "0",
        }
        self.settings.update(PIPELINE)
        self.settings.update(settings)
        self.write_config()

    def write_config(self, text=None, **settings):
        self.settings.update(settings)
        if text is None:
            text = "".join("%s = %s\n" % (k, v) for k, v in self.settings.items()
                           if v is not None)
        with open(self.config_file, "w") as f:
            f.write(text)
        return self.config_file

    def environ(self, extra=None):
        host = "127.0.0.1:%d" % self.emulator.port
        env = {"PATH": "/usr/bin:/bin", "LANG": "C", "HOME": self.dir,
               "PUBSUB_EMULATOR_HOST": host,
               "BIGQUERY_EMULATOR_HOST": "http://" + host}
        if self.sanitize:
            env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0:log_path=%s" % \
                os.path.join(self.dir, "asan")
            env["UBSAN_OPTIONS"] = "print_stacktrace=1:log_path=%s" % os.path.join(self.dir, "ubsan")
        env.update(extra or {})
        return {k: v for k, v in env.items() if v is not None}

    def command(self, *args, config=True):
        cmd = [self.binary]
        if config:
            cmd += ["--config", self.config_file]
        return cmd + list(args)

    def run(self, *args, timeout=180, env=None, config=True, check_sanitizer=True):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        p = subprocess.run(self.command(*args, config=config), env=self.environ(env),
                           capture_output=True, text=True, timeout=timeout)
        seconds = time.monotonic() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        usage = {"user": after.ru_utime - before.ru_utime,
                 "sys": after.ru_stime - before.ru_stime,
                 "maxrss_kb": after.ru_maxrss}
        r = Result(p.returncode, p.stdout, p.stderr, seconds, usage)
        if check_sanitizer:
            self.assert_no_sanitizer_report()
        assert not r.garbage, "non-JSON lines on stderr:\n" + "\n".join(r.garbage[:20])
        return r

    def start(self, *args, env=None):
        """A run in the background (for overlap, SIGTERM and kill -9 tests)."""
        self._err = open(os.path.join(self.dir, "background.stderr"), "w")
        return subprocess.Popen(self.command(*args), env=self.environ(env),
                                stdout=subprocess.DEVNULL, stderr=self._err,
                                start_new_session=True)

    def background_result(self, proc, timeout=60):
        rc = proc.wait(timeout)
        self._err.close()
        with open(os.path.join(self.dir, "background.stderr")) as f:
            return Result(rc, "", f.read(), 0, {})

    def sanitizer_reports(self):
        out = []
        for name in sorted(os.listdir(self.dir)):
            if name.startswith(("asan", "ubsan")):
                with open(os.path.join(self.dir, name), errors="replace") as f:
                    out.append("%s:\n%s" % (name, f.read()))
        return out

    def assert_no_sanitizer_report(self):
        reports = self.sanitizer_reports()
        if reports:
            raise LoaderError("sanitizer reports:\n" + "\n".join(reports))

    def journal(self):
        d = os.path.join(self.state_dir, "journal")
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def journal_entries(self):
        d = os.path.join(self.state_dir, "journal")
        out = []
        for name in self.journal():
            if name.endswith(".json"):
                with open(os.path.join(d, name)) as f:
                    out.append(json.load(f))
        return out

    def age(self, seconds):
        """The loader's own clock moved on by `seconds`, as emulator.advance_clock moves
        Google's: every time the loader keeps in its state directory (the hold-off's end, the
        journal's times) is moved back as much, so a test need not wait in real time."""
        us = int(seconds * 1_000_000)
        path = os.path.join(self.state_dir, "hold-off")
        if os.path.exists(path):
            with open(path) as f:
                h = json.load(f)
            h["until"] -= us
            with open(path, "w") as f:
                json.dump(h, f)
        path = os.path.join(self.state_dir, "history.json")
        if os.path.exists(path):
            with open(path) as f:
                h = json.load(f)
            if h["last_success"]:
                h["last_success"] -= us
            for run in h["runs"]:
                run["started"] -= us
                run["finished"] -= us
            with open(path, "w") as f:
                json.dump(h, f)
        d = os.path.join(self.state_dir, "journal")
        for e in self.journal_entries():
            for k in ("written", "committed_at"):
                if e.get(k):
                    e[k] -= us
            name = e["job_id"].rsplit("_", 1)[0] + ".json"
            with open(os.path.join(d, name), "w") as f:
                json.dump(e, f)

    def status(self, *args, env=None):
        """`datos-loader --status` (args: "--json"): the Result, with .status_json parsed when
        --json was given. The emulator must see no request from it: --status reads local
        state only."""
        before = self.emulator.counters()
        r = self.run("--status", *args, env=env)
        assert self.emulator.counters() == before, "--status called the emulator"
        assert r.stderr == "", r.stderr
        r.status_json = json.loads(r.stdout) if "--json" in args else None
        return r

    def history(self):
        with open(os.path.join(self.state_dir, "history.json")) as f:
            return json.load(f)

    def held_off(self):
        return os.path.exists(os.path.join(self.state_dir, "hold-off"))

    def metrics(self):
        out = {}
        with open(self.metrics_file) as f:
            for line in f:
                if line.startswith("#") or not line.strip():
                    continue
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out


TERRAFORM = os.path.join(os.path.dirname(__file__), "..", "..", "terraform", "modules", "datos")


def shipped_subscription():
    """The loader subscription as terraform/modules/datos creates it: the ack deadline and the
    dead-letter policy's attempts (variables.tf defaults) and the retry policy's back-off
    (pubsub.tf), in seconds."""
    with open(os.path.join(TERRAFORM, "pubsub.tf")) as f:
        tf = f.read()
    with open(os.path.join(TERRAFORM, "variables.tf")) as f:
        variables = f.read()
    sub = tf[tf.index('resource "google_pubsub_subscription" "loader"'):]
    policy = sub[sub.index("retry_policy"):]

    def default(name):
        block = variables[variables.index('variable "%s"' % name):]
        return int(re.search(r"default\s*=\s*(\d+)", block).group(1))

    return {"ack_deadline": default("ack_deadline_seconds"),
            "max_delivery_attempts": default("max_delivery_attempts"),
            "min_backoff": int(re.search(r'minimum_backoff\s*=\s*"(\d+)s"', policy).group(1)),
            "max_backoff": int(re.search(r'maximum_backoff\s*=\s*"(\d+)s"', policy).group(1))}


def make_pipeline(emulator, loader_columns=True, max_delivery_attempts=100, ack_deadline=60,
                  shipped=False):
    """The product's resources, created through the emulator's REST API as on Google Cloud:
    dataset, table (of either shape), topic, subscription with its dead-letter policy,
    the dead-letter topic and a subscription on it to read what the loader rejected.
    shipped=True gives the subscription terraform's settings, retry back-off included
    (shipped_subscription); max_delivery_attempts still applies when given otherwise."""
    retry = {}
    if shipped:
        tf = shipped_subscription()
        ack_deadline = tf["ack_deadline"]
        retry = {"min_backoff": tf["min_backoff"], "max_backoff": tf["max_backoff"]}
        if max_delivery_attempts == 100:
            max_delivery_attempts = tf["max_delivery_attempts"]
    emulator.reset()
    emulator.create_dataset("latam_dataset", location="southamerica-east1")
    emulator.create_datos_table("latam_dataset", "datos", loader_columns=loader_columns)
    emulator.create_topic(PIPELINE["topic"])
    emulator.create_topic(PIPELINE["dead_letter_topic"])
    emulator.create_subscription(PIPELINE["subscription"], PIPELINE["topic"],
                                 ack_deadline=ack_deadline,
                                 dead_letter_topic=PIPELINE["dead_letter_topic"],
                                 max_delivery_attempts=max_delivery_attempts, **retry)
    emulator.create_subscription(PIPELINE["dead_letter_subscription"],
                                 PIPELINE["dead_letter_topic"], ack_deadline=60)
