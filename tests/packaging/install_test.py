#!/usr/bin/python3
"""make test-install: the two .deb files of `make deb` installed with apt in a Debian
bookworm booted by systemd, configured and run as an administrator would, then upgraded
and purged.

- The root filesystem: debootstrap minbase + systemd, systemd-sysv, dbus, from the mirror
  this machine's apt uses, cached in build/rootfs/ (debian_rootfs.py).
- It boots with `systemd-nspawn -b -x` (a throwaway copy: every run starts from the same
  tree) with --register=no --keep-unit, as this host's PID 1 is not systemd; commands run
  inside through `nsenter -t <its systemd> -a`. It shares the host's network, so apt
  downloads from Debian and the project's emulator (emulator/server.py, started here on
  127.0.0.1) is reached over loopback. So that Debian's apache2 does not take port 80 of
  the host before it is configured, a policy-rc.d holds apache2 back during the first
  install; Apache then listens on a free loopback port.
- Debian's packages downloaded by apt are kept in build/install-test/apt-archives for the
  next run (they come from Debian either way).

Each check prints one line; the first failure stops the run with what the container's
journal and the commands said, and exit code 1.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import debian_rootfs  # noqa: E402

REPO = debian_rootfs.REPO
sys.path.insert(0, os.path.join(REPO, "emulator"))
from gcpemu.client import Emulator  # noqa: E402

WORK = os.path.join(REPO, "build", "install-test")
DEBS = os.path.join(REPO, "build", "deb")
PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
SITE_CONF = "/etc/apache2/conf-available/datos-site.conf"
TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"
METRICS = TEXTFILE_DIR + "/datos_loader.prom"
STARTED = time.time()


class Failed(Exception):
    pass


def say(msg):
    print("[%5.1fs] %s" % (time.time() - STARTED, msg), flush=True)


def check(cond, what, detail=""):
    if not cond:
        raise Failed("%s%s" % (what, ("\n" + detail) if detail else ""))
    say("ok   " + what)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, timeout=10):
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


# ---------------------------------------------------------------- the container

class Container:
    def __init__(self, rootfs, binds):
        self.rootfs = rootfs
        self.binds = binds
        self.proc = None
        self.pid = None
        self.log_path = os.path.join(WORK, "console.log")

    def start(self):
        cmd = ["systemd-nspawn", "-D", self.rootfs, "-b", "-x", "--register=no",
               "--keep-unit", "--console=passive"]
        cmd += ["--bind=%s:%s" % b for b in self.binds]
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + 60
        while self.pid is None and time.time() < deadline:
            if self.proc.poll() is not None:
                raise Failed("systemd-nspawn exited with %s:\n%s"
                             % (self.proc.returncode, self.console()))
            for child in subprocess.run(["ps", "-o", "pid=,comm=", "--ppid",
                                         str(self.proc.pid)], capture_output=True,
                                        text=True).stdout.splitlines():
                pid, comm = child.split(None, 1)
                if comm.strip() == "systemd":
                    self.pid = int(pid)
            time.sleep(0.1)
        if self.pid is None:
            raise Failed("no systemd in the container after 60 s:\n" + self.console())
        while time.time() < deadline:
            state = self.run("systemctl is-system-running", check=False).stdout.strip()
            if state in ("running", "degraded"):
                return state
            time.sleep(0.2)
        raise Failed("the container did not finish booting:\n" + self.console())

    def console(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()[-4000:]

    def run(self, script, check=True, timeout=600, input=None):
        """A shell script inside, as root, with a clean environment."""
        p = subprocess.run(["nsenter", "-t", str(self.pid), "-a", "env", "-i", "PATH=" + PATH,
                            "LANG=C.UTF-8", "DEBIAN_FRONTEND=noninteractive", "HOME=/root",
                            "sh", "-c", script], capture_output=True, text=True,
                           timeout=timeout, input=input)
        if check and p.returncode != 0:
            raise Failed("inside: %s\nexit %d\n%s%s" % (script, p.returncode, p.stdout[-3000:],
                                                       p.stderr[-3000:]))
        return p

    def popen(self, script, out):
        return subprocess.Popen(["nsenter", "-t", str(self.pid), "-a", "env", "-i",
                                 "PATH=" + PATH, "LANG=C.UTF-8",
                                 "DEBIAN_FRONTEND=noninteractive", "sh", "-c", script],
                                stdout=out, stderr=subprocess.STDOUT)

    def path(self, p):
        """A path inside, seen from the host."""
        return "/proc/%d/root%s" % (self.pid, p)

    def write(self, path, text, mode="0644"):
        self.run("cat > %s && chmod %s %s" % (path, mode, path), input=text)

    def stat(self, path):
        """(user, group, octal mode) of a path inside, by the container's own names."""
        out = self.run("stat -c '%%U %%G %%a' %s" % path).stdout.split()
        return out[0], out[1], out[2]

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # nspawn powers the container off
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)
        self.log.close()


# ---------------------------------------------------------------- the steps

def journal_cursor(c):
    out = c.run("journalctl -n 0 --show-cursor --no-pager").stdout
    return out.strip().rsplit("-- cursor: ", 1)[-1]


def journal_since(c, cursor, identifier=None, done=None):
    """The loader's lines logged after the cursor: its unit's, or those of a syslog
    identifier (filtered here: journalctl 252 skips the first entries after --after-cursor
    when a match is given too), once its last line (run_finished, or the error that ended
    it) is in: journald files what a service wrote a moment after the service is gone."""
    deadline = time.time() + 15
    while True:
        raw = c.run("journalctl --no-pager -o json --after-cursor='%s'" % cursor).stdout
        lines = []
        for ln in raw.splitlines():
            e = json.loads(ln)
            if (e.get("SYSLOG_IDENTIFIER") == identifier if identifier else
                    "datos-loader.service" in (e.get("_SYSTEMD_UNIT"), e.get("UNIT"))):
                msg = e.get("MESSAGE")
                lines.append(msg if isinstance(msg, str) else repr(msg))
        out = "\n".join(lines)
        events = [json.loads(ln) for ln in lines if ln.startswith("{")]
        if done is None:
            finished = any(e.get("event") in ("run_finished", "config_error")
                           or e.get("level") == "error" for e in events)
        else:
            finished = done(out)
        if finished or time.time() > deadline:
            return out, events
        time.sleep(0.1)


def run_loader_unit(c):
    cursor = journal_cursor(c)
    p = c.run("systemctl start datos-loader.service", check=False, timeout=300)
    result = c.run("systemctl show -p Result -p ExecMainStatus datos-loader.service").stdout
    text, events = journal_since(c, cursor)
    return p.returncode, dict(ln.split("=", 1) for ln in result.split()), text, events


def install(c, debs):
    c.run("apt-get update -q")
    # Holds Debian's apache2 back until it is told which port to use (it shares the host's
    # network); every other start is allowed.
    c.write("/usr/sbin/policy-rc.d",
            '#!/bin/sh\ncase "$1" in apache2|apache2.service|apache-htcacheclean*) exit 101;; '
            "esac\nexit 0\n", mode="0755")
    p = c.run("apt-get install -y -q apache2 acl " + " ".join("/out/" + d for d in debs),
              timeout=900)
    say("apt-get install: %s" % (re.findall(r"\d+ newly installed", p.stdout) or ["?"])[0])
    c.run("rm /usr/sbin/policy-rc.d")


def check_installed(c):
    out = c.run("getent passwd datos", check=False).stdout.strip().split(":")
    check(len(out) == 7 and 0 < int(out[2]) < 1000 and out[6].endswith("nologin")
          and out[5] == "/var/lib/datos-loader",
          "the system user datos (uid %s, home %s, shell %s)" % tuple(
              (out + ["?"] * 7)[i] for i in (2, 5, 6)))
    check(c.run("getent group datos", check=False).returncode == 0, "the group datos")
    check(c.stat("/etc/datos/loader.conf") == ("root", "datos", "640"),
          "/etc/datos/loader.conf is root:datos 0640", str(c.stat("/etc/datos/loader.conf")))
    conffiles = c.run("dpkg-query -W -f='${Conffiles}' datos-loader").stdout
    check("/etc/datos/loader.conf" in conffiles, "loader.conf is a conffile")
    check(c.stat("/var/lib/datos-loader") == ("datos", "datos", "700"),
          "/var/lib/datos-loader is datos 0700", str(c.stat("/var/lib/datos-loader")))
    check(c.stat("/var/cache/apache2/mod_datos")[0] == "www-data",
          "/var/cache/apache2/mod_datos belongs to www-data")
    enabled = sorted(os.listdir(c.path("/etc/apache2/mods-enabled")))
    check({"datos.load", "datos.conf", "socache_shmcb.load"} <= set(enabled),
          "the module is enabled (with socache_shmcb, its Depends)", str(enabled))
    state = c.run("systemctl is-enabled datos-loader.timer", check=False).stdout.strip()
    check(state == "disabled", "systemctl is-enabled datos-loader.timer: " + state)
    check(c.run("systemctl is-active datos-loader.timer", check=False).stdout.strip()
          == "inactive", "the timer is not running")
    for page in ("/usr/share/man/man8/datos-loader.8.gz", "/usr/share/man/man5/datos.conf.5.gz"):
        check(os.path.isfile(c.path(page)), "man page " + page)
    for binary in ("/usr/bin/datos-loader", "/usr/lib/apache2/modules/mod_datos.so"):
        sections = subprocess.run(["readelf", "-SW", c.path(binary)], capture_output=True,
                                  text=True).stdout
        check(".symtab" not in sections and ".debug_info" not in sections,
              "%s is stripped (%d KB)" % (binary, os.path.getsize(c.path(binary)) // 1024))


def configure(c, emu, port):
    # Apache on a free loopback port; the site's settings in a file of its own.
    c.write("/etc/apache2/ports.conf", "Listen 127.0.0.1:%d\n" % port)
    c.run("a2dissite -q 000-default")
    c.write(SITE_CONF, """# the site's settings (docs/packages.md)
ServerName localhost
<IfModule datos_module>
    DatosProject        {project}
    DatosTable          latam_dataset.datos
    DatosLocation       southamerica-east1
    DatosCredentials    none
    DatosBigQueryURL    {url}/bigquery/v2
    DatosPubSubURL      {url}
    # every request asks BigQuery, so a row appears as soon as it is loaded
    DatosFreshFor       0
</IfModule>
""".format(project=emu.project, url=emu.base_url))
    c.run("a2enconf -q datos-site && apache2ctl -t")
    configure_loader(c, emu)


def configure_loader(c, emu):
    # The administrator's keys added to the installed file.
    c.run("cat >> /etc/datos/loader.conf", input="""
# ---------------------------------------------------------------- this site
project = {project}
credentials = none
pubsub_url = {url}
bigquery_url = {url}/bigquery/v2
metrics_file = {metrics}
""".format(project=emu.project, url=emu.base_url, metrics=METRICS))
    # node_exporter's textfile directory (its package makes it root 0755), writable by
    # the loader through an ACL, as docs/packages.md says.
    c.run("install -d -m 0755 %s && setfacl -m u:datos:rwx %s" % (TEXTFILE_DIR, TEXTFILE_DIR))


def make_pipeline(emu):
    emu.reset()
    emu.create_dataset("latam_dataset", location="southamerica-east1")
    emu.create_datos_table("latam_dataset", "datos")
    emu.create_topic("datos-topic")
    emu.create_topic("datos-dlq")
    emu.create_subscription("datos-subscription", "datos-topic", ack_deadline=60,
                            dead_letter_topic="datos-dlq", max_delivery_attempts=5)
    emu.create_subscription("datos-dlq-subscription", "datos-dlq", ack_deadline=60)


def record(i):
    return json.dumps({"id": "deb-%d" % i, "contenido": "instalado %d" % i,
                       "timestamp": "2026-01-14T14:%02d:00Z" % i}).encode()


def check_serving_and_loading(c, emu, base):
    status, _, body = http("GET", base + "/health")
    check(status == 200 and json.loads(body) == {"status": "ok"}, "GET /health answers 200")
    status, _, body = http("GET", base + "/datos")
    check(status == 200 and json.loads(body) == {"datos": []},
          "GET /datos answers 200 from the empty table", body[:300].decode(errors="replace"))

    valid = [record(i) for i in range(1, 6)]
    invalid = [b'{"id": 7}', b"not json", json.dumps({"id": "x", "timestamp": "ayer"}).encode()]
    emu.publish("datos-topic", valid + invalid)

    rc, result, text, events = run_loader_unit(c)
    check(rc == 0 and result.get("Result") == "success",
          "systemctl start datos-loader.service: one run, Result=%s" % result.get("Result"), text)
    finished = [e for e in events if e.get("event") == "run_finished"]
    check(len(finished) == 1 and finished[0]["exit_code"] == 0
          and finished[0]["rows_loaded"] == 5 and finished[0]["dead_lettered"] == 3,
          "journalctl -u datos-loader shows the run line: 5 rows loaded, 3 dead-lettered",
          text)
    all_lines = c.run("journalctl -u datos-loader --no-pager -o cat").stdout
    check('"event":"run_finished"' in all_lines, "the run line is in journalctl -u datos-loader")

    status, _, body = http("GET", base + "/datos?limit=10")
    ids = {d["id"] for d in json.loads(body).get("datos", [])} if status == 200 else set()
    check(ids == {"deb-%d" % i for i in range(1, 6)},
          "the published records are in GET /datos", body[:500].decode(errors="replace"))

    dead = emu.drain("datos-dlq-subscription")
    reasons = sorted(m["message"].get("attributes", {}).get("datos_error", "?") for m in dead)
    check(len(dead) == 3 and "?" not in reasons,
          "the 3 invalid messages are dead letters, with their reasons %s" % reasons)
    stats = emu.subscription_stats("datos-subscription")
    check(stats["backlog"] == 0 and stats["outstanding"] == 0,
          "the subscription is drained and acknowledged", str(stats))

    # Where datos-loader(8) and docs/packages.md say the state and the metrics are.
    state = sorted(os.listdir(c.path("/var/lib/datos-loader")))
    check("datos-loader.lock" in state and "journal" in state
          and not os.listdir(c.path("/var/lib/datos-loader/journal")),
          "state in /var/lib/datos-loader: the lock and an empty journal %s" % state)
    check(c.stat("/var/lib/datos-loader/journal")[:2] == ("datos", "datos"),
          "the journal belongs to datos")
    with open(c.path(METRICS)) as f:
        metrics = f.read()
    check(re.search(r"^datos_loader_rows_loaded_total 5$", metrics, re.M) is not None,
          "metrics in %s: datos_loader_rows_loaded_total 5" % METRICS, metrics[:800])
    check(c.stat(METRICS)[0] == "datos" and c.stat(METRICS)[2] == "644",
          "the textfile is readable by node_exporter (0644, under the unit's UMask=0077)",
          str(c.stat(METRICS)))


def check_cron_line(c, emu):
    """The example cron line, run as cron would run it: output in syslog/the journal."""
    with open(c.path("/usr/share/doc/datos-loader/examples/datos-loader.cron")) as f:
        lines = [ln for ln in f.read().splitlines() if ln and not ln.startswith("#")]
    env = dict(ln.split("=", 1) for ln in lines if re.match(r"^[A-Z]+=", ln))
    jobs = [ln.split(None, 6) for ln in lines if not re.match(r"^[A-Z]+=", ln)]
    check(len(jobs) == 1 and jobs[0][5] == "datos", "the cron example has one line, as datos",
          str(jobs))
    emu.publish("datos-topic", [record(6)])
    cursor = journal_cursor(c)
    c.run("runuser -u datos -- env -i SHELL=%s PATH=%s %s -c %s" % (
        env.get("SHELL", "/bin/sh"), env.get("PATH", "/usr/bin:/bin"),
        env.get("SHELL", "/bin/sh"), shlex_quote(jobs[0][6])), timeout=300)
    out, events = journal_since(c, cursor, "datos-loader")
    ran = [e for e in events if e.get("event") == "run_finished"]
    check(ran and ran[-1]["exit_code"] == 0 and ran[-1]["rows_loaded"] == 1,
          "the cron line as written: run line in the journal (journalctl -t datos-loader)",
          out[-2000:])


def shlex_quote(s):
    return "'" + s.replace("'", "'\\''") + "'"


def check_bad_input(c, emu):
    """Each refusal reaches the journal, naming the file and the fix; then it is undone."""
    conf = "/etc/datos/loader.conf"
    c.run("chgrp root " + conf)
    rc, result, text, _ = run_loader_unit(c)
    check(rc != 0 and result.get("ExecMainStatus") == "2"
          and "cannot read config file %s: Permission denied" % conf in text
          and "chown root:datos %s && chmod 0640 %s" % (conf, conf) in text,
          "an unreadable loader.conf: exit 2, the journal names the file and the fix", text)
    c.run("chgrp datos %s && mv %s %s.away" % (conf, conf, conf))
    rc, result, text, _ = run_loader_unit(c)
    check(rc != 0 and result.get("ExecMainStatus") == "2"
          and "cannot read config file %s: No such file or directory; write it" % conf in text,
          "a missing loader.conf: exit 2, the journal names the file and what to do", text)
    c.run("mv %s.away %s" % (conf, conf))

    key = "/etc/datos/key.json"
    c.write(key, json.dumps(emu.service_account()), mode="0644")
    c.run("cp -p %s %s.saved && sed -i 's|^credentials = none$|credentials = %s|' %s"
          % (conf, conf, key, conf))
    rc, result, text, _ = run_loader_unit(c)
    check(rc != 0 and "key file %s is owned by root (uid 0)" % key in text
          and "run chown datos %s" % key in text,
          "a key file owned by root: the journal names the owner and the chown", text)
    c.run("chown datos " + key)
    rc, result, text, _ = run_loader_unit(c)
    check(rc != 0 and "(mode 0644): run chmod 600 %s" % key in text,
          "a key file readable by others: the journal names the mode and the chmod", text)
    c.run("mv %s.saved %s && rm %s" % (conf, conf, key))
    check(c.stat(conf) == ("root", "datos", "640"), "loader.conf back as it was")
    c.run("systemctl reset-failed datos-loader.service")


def upgrade(c, debs, base):
    before = c.run("sha256sum /etc/datos/loader.conf").stdout.split()[0]
    apache_pid = c.run("systemctl show -p MainPID --value apache2").stdout.strip()
    uid = c.run("id -u datos").stdout.strip()
    p = c.run("apt-get install -y -q --reinstall " + " ".join("/out/" + d for d in debs),
              timeout=600)
    check(p.stdout.count("Unpacking ") == 2, "upgrade: both packages installed again")
    check(c.run("sha256sum /etc/datos/loader.conf").stdout.split()[0] == before,
          "upgrade: the administrator's loader.conf is kept")
    check(c.stat("/etc/datos/loader.conf") == ("root", "datos", "640")
          and c.run("id -u datos").stdout.strip() == uid,
          "upgrade: loader.conf still root:datos 0640, the user datos unchanged")
    check(c.run("systemctl is-enabled datos-loader.timer", check=False).stdout.strip()
          == "disabled", "upgrade: the timer still disabled")
    check(c.run("systemctl is-active apache2", check=False).stdout.strip() == "active"
          and http("GET", base + "/health")[0] == 200
          and c.run("systemctl show -p MainPID --value apache2").stdout.strip() != apache_pid,
          "upgrade: apache2 restarted by the module's scripts (a new main process), /health "
          "answers")


def start_a_slow_run(c, emu, n):
    """A run whose load job stays RUNNING (on the emulator's clock) until the clock moves."""
    emu.configure(load_job_running_seconds=120)
    emu.publish("datos-topic", [record(n)])
    c.run("systemctl start --no-block datos-loader.service")
    journal = c.path("/var/lib/datos-loader/journal")

    def entries():
        return [f for f in os.listdir(journal) if f.endswith(".json")] \
            if os.path.isdir(journal) else []

    deadline = time.time() + 120
    while time.time() < deadline and not entries():
        time.sleep(0.1)
    entries = entries()
    check(entries, "a run is in flight: its load job is in the journal")
    return entries


def purge_after_a_killed_run(c, emu, debs):
    """A run killed (kill -9) between its load job and the acknowledgements leaves its
    entry in the journal: apt purge names the job before the journal goes."""
    entries = start_a_slow_run(c, emu, 7)
    c.run("systemctl kill --signal=KILL datos-loader.service")
    deadline = time.time() + 30
    while time.time() < deadline and c.run("systemctl is-active datos-loader.service",
                                           check=False).stdout.strip() not in ("failed",
                                                                                "inactive"):
        time.sleep(0.1)
    with open(c.path("/var/lib/datos-loader/journal/" + entries[0])) as f:
        job = json.load(f)["job_id"]
    cursor = journal_cursor(c)
    p = c.run("apt-get purge -y datos-loader", timeout=300)
    check("purge removes the journal entry of load job %s" % job in p.stdout + p.stderr,
          "apt purge after a killed run names its load job %s" % job, p.stdout + p.stderr)
    logged, _ = journal_since(c, cursor, "datos-loader", done=lambda out: job in out)
    check(job in logged, "... and logs it to the journal (journalctl -t datos-loader)",
          logged)
    # The job commits; its messages, never acknowledged, come back once their lease (600 s)
    # is over, and the next loader loads them again: what the purge's message warns of.
    emu.advance_clock(700)
    emu.configure(load_job_running_seconds=0)
    c.run("apt-get install -y -q " + " ".join("/out/" + d for d in debs
                                               if d.startswith("datos-loader")), timeout=300)
    configure_loader(c, emu)


def purge_during_a_run(c, emu):
    """apt purge while a run waits on a load job: the prerm stops the timer and lets the
    run finish, so the job's messages are acknowledged and nothing is left in the journal."""
    start_a_slow_run(c, emu, 9)
    log = open(os.path.join(WORK, "purge.log"), "w")
    purge = c.popen("apt-get purge -y datos-loader", log)

    def said():
        with open(os.path.join(WORK, "purge.log")) as f:
            return "waiting for the run in progress" in f.read()
    deadline = time.time() + 60
    while time.time() < deadline and not said() and purge.poll() is None:
        time.sleep(0.1)
    state = c.run("systemctl is-active datos-loader.service", check=False).stdout.strip()
    check(said() and state in ("active", "activating") and purge.poll() is None,
          "the prerm waits while the run's job runs, without stopping it (%s)" % state)
    emu.advance_clock(130)  # the job is DONE now
    try:
        rc = purge.wait(300)
    finally:
        log.close()
    with open(os.path.join(WORK, "purge.log")) as f:
        out = f.read()
    check(rc == 0, "apt-get purge datos-loader", out[-3000:])
    check("waiting for the run in progress" in out and "journal entry" not in out,
          "the purge waited for the run; no journal entry was left behind", out[-2000:])
    emu.configure(load_job_running_seconds=0)
    ids = {r["id"] for r in emu.table_rows()}
    stats = emu.subscription_stats("datos-subscription")
    check({"deb-7", "deb-9"} <= ids and stats["backlog"] == 0 and stats["outstanding"] == 0,
          "the run's records are loaded and acknowledged", str(stats))
    out = c.run("journalctl -u datos-loader --no-pager -o cat").stdout
    last = [json.loads(ln) for ln in out.splitlines()
            if ln.startswith("{") and '"run_finished"' in ln][-1]
    check(not last.get("stopped_by_signal") and last["exit_code"] == 0
          and last["rows_loaded"] == 2,
          "its run line: it finished on its own, 2 rows loaded (the killed run's again), exit 0",
          json.dumps(last))


def purge_module_and_check_nothing_left(c, base):
    p = c.run("apt-get purge -y libapache2-mod-datos", timeout=300)
    check(c.run("systemctl is-active apache2", check=False).stdout.strip() == "active",
          "apt-get purge libapache2-mod-datos; apache2 still runs", p.stdout[-1500:])
    modules = c.run("apache2ctl -M 2>/dev/null").stdout
    check("datos_module" not in modules and http("GET", base + "/health")[0] == 404,
          "no datos module loaded, /health is a plain 404 now")
    # What the administrator added is theirs to remove.
    c.run("a2disconf -q -p datos-site && rm %s && systemctl reload apache2" % SITE_CONF)
    for what in ("passwd", "group", "shadow", "gshadow"):
        check(c.run("grep -c '^datos:' /etc/%s" % what, check=False).stdout.strip() == "0",
              "no datos in /etc/%s" % what)
    left = c.run("find / -xdev \\( -path /proc -o -path /sys -o -path /out -o "
                 "-path /var/cache/apt/archives \\) -prune -o -iname '*datos*' -print",
                 check=False).stdout.split()
    check(not left, "no file named datos anywhere", "\n".join(left))
    for path in ("/etc/datos", "/var/lib/datos-loader", "/var/cache/apache2/mod_datos", METRICS):
        check(not os.path.lexists(c.path(path)), "%s is gone" % path)
    owned = c.run("find / -xdev \\( -path /proc -o -path /sys -o -path /out \\) -prune -o "
                  "-nouser -print", check=False).stdout.split()
    check(not owned, "no file owned by the removed user", "\n".join(owned))
    state = c.run("dpkg-query -W -f='${db:Status-Abbrev}\\n' datos-loader libapache2-mod-datos",
                  check=False).stdout.split()
    check(not state, "dpkg knows neither package any more %s" % state)


def from_source(c, emu):
    """`make install` for those who build from source: the tree it installs, and the
    commands it prints for the machine that runs it (what it runs itself as root without
    DESTDIR), then the loader through the unit it installed."""
    tree = os.path.join(WORK, "out", "src-tree")
    p = subprocess.run(["make", "-s", "install", "DESTDIR=" + tree, "PREFIX=/usr/local"],
                       cwd=REPO, capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise Failed("make install DESTDIR=...:\n" + p.stdout + p.stderr)
    setup = [ln[4:] for ln in p.stdout.splitlines() if ln.startswith("    ")]
    check(len(setup) >= 4, "make install prints the %d commands to run as root" % len(setup),
          p.stdout)
    c.run("cp -a /out/src-tree/. / && " + " && ".join(setup) + " && systemctl daemon-reload")
    check(c.stat("/etc/datos/loader.conf") == ("root", "datos", "640")
          and c.stat("/var/lib/datos-loader") == ("datos", "datos", "700"),
          "from source: the user datos, loader.conf root:datos 0640, the state directory")
    c.run("cat >> /etc/datos/loader.conf", input="project = %s\ncredentials = none\n"
          "pubsub_url = %s\nbigquery_url = %s/bigquery/v2\n"
          % (emu.project, emu.base_url, emu.base_url))
    emu.publish("datos-topic", [record(8)])
    rc, result, text, events = run_loader_unit(c)
    finished = [e for e in events if e.get("event") == "run_finished"]
    check(rc == 0 and finished and finished[0]["rows_loaded"] == 1,
          "from source: /usr/local/bin/datos-loader through the installed unit", text)
    c.run("a2enmod -q datos && apache2ctl -t")
    check(True, "from source: a2enmod datos, apache2ctl -t")


def main():
    if os.geteuid() != 0:
        sys.exit("make test-install needs root (debootstrap, systemd-nspawn)")
    debs = sorted(f for f in os.listdir(DEBS) if f.endswith(".deb")) if os.path.isdir(DEBS) \
        else []
    if len(debs) != 2:
        sys.exit("build/deb/ must hold the two packages (make deb): %s" % debs)
    rootfs = debian_rootfs.rootfs("bookworm-systemd", ("systemd", "systemd-sysv", "dbus"),
                                  log=say)
    shutil.rmtree(os.path.join(WORK, "out"), ignore_errors=True)
    os.makedirs(os.path.join(WORK, "out"))
    for d in debs:
        shutil.copy(os.path.join(DEBS, d), os.path.join(WORK, "out", d))
    archives = os.path.join(WORK, "apt-archives")
    os.makedirs(os.path.join(archives, "partial"), exist_ok=True)

    emu = Emulator(os.path.join(WORK, "emulator"))
    c = Container(rootfs, [(os.path.join(WORK, "out"), "/out"),
                           (archives, "/var/cache/apt/archives")])
    ok = False
    try:
        emu.start()
        make_pipeline(emu)
        state = c.start()
        say("booted: systemd %s (%s)" % (c.run("systemctl --version").stdout.split()[1], state))
        install(c, debs)
        check_installed(c)
        port = free_port()
        base = "http://127.0.0.1:%d" % port
        configure(c, emu, port)
        c.run("systemctl start apache2")
        check(c.run("systemctl is-active apache2", check=False).stdout.strip() == "active",
              "systemctl start apache2")
        check_serving_and_loading(c, emu, base)
        check_cron_line(c, emu)
        check_bad_input(c, emu)
        upgrade(c, debs, base)
        purge_after_a_killed_run(c, emu, debs)
        purge_during_a_run(c, emu)
        purge_module_and_check_nothing_left(c, base)
        from_source(c, emu)
        ok = True
    except Failed as e:
        print("FAIL %s" % e, flush=True)
        if c.pid:
            print(c.run("journalctl --no-pager -n 60 -o short", check=False).stdout[-6000:])
    finally:
        c.stop()
        emu.stop()
    say("make test-install: %s" % ("passed" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
