"""The install path, checked offline (make test-install boots Debian and installs the real
packages; these are the parts that need no root filesystem):

- the shipped loader unit is rated 2.0 or less by `systemd-analyze security --offline=true`
  and starts on a host without node-exporter;
- the package's version is the programs' version; the cron example runs the packaged
  binary and logs to syslog;
- a loader.conf the loader cannot read, or that is missing, is refused with a message naming
  the file and the fix;
- the node_exporter textfile is readable by node_exporter under the unit's UMask=0077.
"""
import os
import re
import shutil
import subprocess

import pytest

from harness.loader import Loader, make_pipeline
from tools.httpd import REPO_ROOT, TEST_TMP

CONF = os.path.join(REPO_ROOT, "conf")
SERVICE = os.path.join(CONF, "datos-loader.service")
TIMER = os.path.join(CONF, "datos-loader.timer")
BUILD = os.path.join(REPO_ROOT, "build")


def unit(path):
    """A unit file as {section: [(key, value)...]} (keys repeat in systemd units)."""
    sections, current = {}, None
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("["):
                current = sections.setdefault(line.strip("[]"), [])
            else:
                k, _, v = line.partition("=")
                current.append((k.strip(), v.strip()))
    return sections


def values(section, key):
    return [v for k, v in section if k == key]


# ---------------------------------------------------------------- the unit

def test_loader_unit_exposure_is_2_or_less():
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing (Debian's systemd package has it)"
    p = subprocess.run([analyze, "security", "--offline=true", "--no-pager", SERVICE],
                       capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for datos-loader\.service: (\d+\.\d+)", p.stdout)
    assert m, p.stdout + p.stderr
    assert float(m.group(1)) <= 2.0, p.stdout
    # the settings the rating rests on, each worth a regression of its own
    svc = unit(SERVICE)["Service"]
    assert values(svc, "CapabilityBoundingSet") == [""]
    assert "@system-service" in values(svc, "SystemCallFilter")
    assert values(svc, "RestrictAddressFamilies") == ["AF_INET AF_INET6 AF_UNIX"]
    assert values(svc, "UMask") == ["0077"]
    assert values(svc, "User") == ["datos"] and values(svc, "StateDirectory") == ["datos-loader"]


def test_loader_unit_starts_without_node_exporter():
    """Every path the unit names outside its own state directory is optional ("-"), or the
    unit fails with 226/NAMESPACE on a host that lacks it."""
    svc = unit(SERVICE)["Service"]
    paths = [p for v in values(svc, "ReadWritePaths") + values(svc, "ReadOnlyPaths")
             for p in v.split()]
    assert paths, "the unit names no writable path: where do the metrics go?"
    assert all(p.startswith("-") for p in paths), paths


def test_timer_is_installed_not_enabled_by_the_package():
    timer = unit(TIMER)
    assert values(timer["Install"], "WantedBy") == ["timers.target"]
    with open(os.path.join(REPO_ROOT, "debian", "rules")) as f:
        rules = f.read()
    assert re.search(r"dh_installsystemd\b[^\n]*--no-enable", rules), \
        "debian/rules must install the timer disabled: one scheduler per subscription"


# ---------------------------------------------------------------- the package's files

def test_package_version_is_the_programs_version():
    with open(os.path.join(REPO_ROOT, "libdatos", "common", "datos_version.h")) as f:
        version = re.search(r'#define DATOS_VERSION "([^"]+)"', f.read()).group(1)
    with open(os.path.join(REPO_ROOT, "debian", "changelog")) as f:
        head = f.readline()
    m = re.match(r"datos \(([^)]+)\)", head)
    assert m and m.group(1).split("-")[0] == version, (head, version)


def test_cron_example_runs_the_packaged_loader_and_logs_to_syslog():
    with open(os.path.join(CONF, "datos-loader.cron")) as f:
        lines = [ln for ln in f.read().splitlines() if ln and not ln.startswith("#")]
    jobs = [ln.split(None, 6) for ln in lines if not re.match(r"^[A-Z]+=", ln)]
    assert len(jobs) == 1, jobs
    fields = jobs[0]
    assert fields[5] == "datos"
    command = fields[6]
    assert command.startswith("/usr/bin/datos-loader --config /etc/datos/loader.conf ")
    # output to syslog/the journal, never appended to a file datos may not create
    assert re.search(r"2>&1 \| logger -t datos-loader\b", command), command
    assert ">>" not in command and "/var/log" not in command
    # `make install` rewrites the path for its PREFIX; the package installs /usr/bin
    with open(os.path.join(REPO_ROOT, "debian", "rules")) as f:
        assert "debian/datos-loader/usr/bin/datos-loader" in f.read()


# ---------------------------------------------------------------- the loader's messages

def loader_binary():
    path = os.path.join(BUILD, "datos-loader")
    if not os.path.exists(path):
        pytest.skip("build/datos-loader is not built (make all)")
    return path


def test_missing_config_names_the_file_and_what_to_do():
    missing = os.path.join(TEST_TMP, "packaging", "no-such-loader.conf")
    p = subprocess.run([loader_binary(), "--config", missing], capture_output=True, text=True,
                       timeout=30, env={"PATH": "/usr/bin:/bin"})
    assert p.returncode == 2
    assert "cannot read config file %s: No such file or directory; write it" % missing \
        in p.stderr, p.stderr


def test_unreadable_config_names_the_file_and_the_chown():
    d = os.path.join(TEST_TMP, "packaging")
    os.makedirs(d, exist_ok=True)
    os.chmod(d, 0o755)
    conf = os.path.join(d, "loader.conf")
    with open(conf, "w") as f:
        f.write("project = p\n")
    os.chmod(conf, 0o600 if os.geteuid() == 0 else 0o000)
    cmd = [loader_binary(), "--config", conf]
    user = group = None
    if os.geteuid() == 0:  # root reads anything: run it as nobody, as the unit runs datos
        cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] + cmd
        user, group = "nobody", "nogroup"
    else:
        import grp
        import pwd
        user = pwd.getpwuid(os.geteuid()).pw_name
        group = grp.getgrgid(os.getegid()).gr_name
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=30,
                       env={"PATH": "/usr/bin:/bin"})
    os.chmod(conf, 0o600)
    assert p.returncode == 2
    assert "cannot read config file %s: Permission denied" % conf in p.stderr, p.stderr
    assert "readable by %s, the user running the loader" % user in p.stderr
    assert "run chown root:%s %s && chmod 0640 %s" % (group, conf, conf) in p.stderr


def test_textfile_is_readable_by_node_exporter_under_umask_0077(emulator):
    make_pipeline(emulator)
    emulator.publish("datos-topic", [b'{"id":"p1","timestamp":"2024-01-14T14:00:00Z"}'])
    loader = Loader(emulator, "packaging-umask")
    old = os.umask(0o077)  # the unit's UMask=0077, inherited by the run
    try:
        r = loader.run()
    finally:
        os.umask(old)
    assert r.rc == 0, r
    assert r.finished["rows_loaded"] == 1
    assert os.stat(loader.metrics_file).st_mode & 0o777 == 0o644
    # what the run keeps for itself stays private
    journal = os.path.join(loader.state_dir, "journal")
    assert os.stat(journal).st_mode & 0o077 == 0
