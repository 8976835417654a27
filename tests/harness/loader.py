"""Runs the real datos-loader binary (build/datos-loader, or the ASan+UBSan one
at build/asan/datos-loader when DATOS_SANITIZE=1) against the emulator.

Each Loader has its own folder under build/test-tmp with its config file, its
state directory (journal, lock) and its metrics file; a run returns the exit
code and the JSON log events it wrote on stderr.
"""
import json
import os
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

    def metrics(self):
        out = {}
        with open(self.metrics_file) as f:
            for line in f:
                if line.startswith("#") or not line.strip():
                    continue
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out


def make_pipeline(emulator, loader_columns=True, max_delivery_attempts=100, ack_deadline=60):
    """The product's resources, created through the emulator's REST API as on Google Cloud:
    dataset, table (of either shape), topic, subscription with its dead-letter policy,
    the dead-letter topic and a subscription on it to read what the loader rejected."""
    emulator.reset()
    emulator.create_dataset("latam_dataset", location="southamerica-east1")
    emulator.create_datos_table("latam_dataset", "datos", loader_columns=loader_columns)
    emulator.create_topic(PIPELINE["topic"])
    emulator.create_topic(PIPELINE["dead_letter_topic"])
    emulator.create_subscription(PIPELINE["subscription"], PIPELINE["topic"],
                                 ack_deadline=ack_deadline,
                                 dead_letter_topic=PIPELINE["dead_letter_topic"],
                                 max_delivery_attempts=max_delivery_attempts)
    emulator.create_subscription(PIPELINE["dead_letter_subscription"],
                                 PIPELINE["dead_letter_topic"], ack_deadline=60)
