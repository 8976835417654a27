"""Fixtures of the integration suites: the real httpd, the emulator, and the
error-log gate every test passes through."""
import os
import shutil

import pytest

from tools.httpd import ACTIVE_SERVERS, Httpd, TEST_TMP, register_server, unregister_server
from harness.servers import Memcached, Redis

try:  # the emulator's client; absent only in a broken checkout
    from gcpemu.client import Emulator
except ImportError:  # pragma: no cover
    Emulator = None

@pytest.fixture
def httpd_factory():
    """Creates Httpd servers for one test and stops them after it."""
    made = []

    def make(name, **kw):
        h = Httpd(name, **kw)
        made.append(h)
        register_server(h)
        return h

    yield make
    for h in made:
        h.stop()
        unregister_server(h)


@pytest.fixture(autouse=True)
def error_log_gate(request):
    """Fails a test whose servers logged an unexpected [warn]/[error] line,
    lost a child, or produced a sanitizer report."""
    for h in ACTIVE_SERVERS:
        h.log.skip_to_end()
        h.log.reset_expected()
    yield
    problems = []
    for h in list(ACTIVE_SERVERS):
        bad = h.check_log()
        if bad:
            problems.append("%s (%s):\n  %s" % (h.name, h.log.path, "\n  ".join(bad)))
    for h in ACTIVE_SERVERS:
        h.log.reset_expected()
    if problems:
        pytest.fail("unexpected httpd log lines:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def memcached():
    """A real memcached on 127.0.0.1, for one test."""
    if not shutil.which("memcached"):
        pytest.fail("memcached is not installed (make deps)")
    m = Memcached().start()
    yield m
    m.stop()


@pytest.fixture
def redis():
    """A real redis on 127.0.0.1, for one test."""
    if not shutil.which("redis-server"):
        pytest.fail("redis-server is not installed (make deps)")
    r = Redis().start()
    yield r
    r.stop()


@pytest.fixture(scope="session")
def emulator():
    if Emulator is None:
        pytest.fail("emulator/gcpemu/client.py is missing")
    emu = Emulator(os.path.join(TEST_TMP, "emulator-integration"))
    emu.start()
    yield emu
    emu.stop()


@pytest.fixture(scope="session", autouse=True)
def no_server_left_behind():
    """After the suite, no httpd started from the test tree may still run."""
    yield
    leftovers = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if "apache2" in cmd and TEST_TMP + os.sep in cmd:
            leftovers.append("%s: %s" % (pid, cmd))
    assert not leftovers, "httpd processes left running:\n" + "\n".join(leftovers)
