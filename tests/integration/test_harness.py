"""Proves the httpd harness on a configuration that serves a static file,
before any test relies on it for mod_datos."""

import time

import pytest
import requests

from tools.httpd import ErrorLog, HttpdError, MPMS

STATIC_CONF = """
<Directory "${root}/htdocs/private">
  Require all denied
</Directory>
"""


@pytest.mark.parametrize("mpm", MPMS)
def test_static_file_is_served_under_each_mpm(httpd_factory, mpm):
    h = httpd_factory("static-" + mpm, mpm=mpm, load_datos=False)
    h.write_file("htdocs/hello.json", '{"hello":"world"}\n')
    h.write_config(STATIC_CONF)
    h.start()
    r = requests.get(h.url("/hello.json"), timeout=120)
    assert r.status_code == 200
    assert r.json() == {"hello": "world"}
    assert r.headers["Content-Type"] == "application/json"
    # The children really dropped to the worker user and could still read
    # the tree: a 403 here would mean a parent folder is not traversable.
    assert requests.get(h.url("/missing.json"), timeout=120).status_code == 404


def test_graceful_restart_picks_up_new_configuration(httpd_factory):
    h = httpd_factory("static-graceful", load_datos=False)
    h.write_file("htdocs/a.txt", "first\n")
    h.write_config(STATIC_CONF)
    h.start()
    first_pid = h.pid()
    assert requests.get(h.url("/a.txt"), timeout=120).text == "first\n"
    assert requests.get(h.url("/"), timeout=120).status_code in (403, 404)
    h.write_config(STATIC_CONF + "DirectoryIndex a.txt\n")
    h.graceful()
    assert h.pid() == first_pid  # same parent, new generation
    assert requests.get(h.url("/"), timeout=120).text == "first\n"


def test_log_gate_sees_an_error_line(httpd_factory):
    h = httpd_factory("static-denied", load_datos=False)
    h.write_config(STATIC_CONF)
    h.write_file("htdocs/private/secret.txt", "no\n")
    h.start()
    h.log.skip_to_end()
    assert requests.get(h.url("/private/secret.txt"), timeout=120).status_code == 403
    # mod_authz_core logs the denial as an [error] line: the gate must see it.
    bad = []
    deadline = time.time() + 60
    while not bad and time.time() < deadline:
        bad += h.check_log()
        time.sleep(0.05)
    assert any("AH01630" in line for line in bad), bad
    h.log.expect(r"AH01630")
    assert requests.get(h.url("/private/secret.txt"), timeout=120).status_code == 403


def test_log_gate_classifies_lines(tmp_path):
    log = ErrorLog(str(tmp_path / "error.log"))
    lines = [
        "[Thu Nov 27 10:00:00.000000 2026] [core:notice] [pid 1] AH00094: Command line: 'apache2'",
        "[Thu Nov 27 10:00:00.000000 2026] [datos:warn] [pid 2:tid 3] DT0101: capped",
        "[Thu Nov 27 10:00:00.000000 2026] [mpm_event:notice] [pid 1] AH00052: child pid 7 exit signal Segmentation fault (11)",
        "[Thu Nov 27 10:00:00.000000 2026] [datos:error] [pid 2:tid 3] [client 127.0.0.1:5] DT0201: failed",
        "[Thu Nov 27 10:00:00.000000 2026] [datos:info] [pid 2] DT0004: serving",
    ]
    (tmp_path / "error.log").write_text("\n".join(lines) + "\n")
    log.expect("DT0201")
    bad = log.unexpected(log.new_lines())
    assert bad == [lines[1], lines[2]]
    assert log.new_lines() == []  # the offset moved past what was read


def test_configtest_reports_a_bad_directive(httpd_factory):
    h = httpd_factory("static-bad", load_datos=False)
    h.write_config("NoSuchDirective on\n")
    rc, out = h.configtest()
    assert rc != 0
    assert "NoSuchDirective" in out
    with pytest.raises(HttpdError):
        h.start(timeout=5)
