"""Shared helpers of the emulator's own tests (a uniquely named module, so tests can import
it without clashing with other suites' conftest modules)."""
import os

import requests

from gcpemu.client import REPO, query_body

# Everything these tests write goes under build/test-tmp, in a folder of this process.
TEST_TMP = os.path.join(REPO, "build", "test-tmp", "emulator-tests-%d" % os.getpid())


class Api:
    """Raw HTTP against the emulator (keep-alive session)."""

    def __init__(self, emu):
        self.emu = emu
        self.base = emu.base_url
        self.s = requests.Session()

    def req(self, method, path, body=None, raw=None, headers=None, params=None, timeout=30):
        kw = {"headers": dict(headers or {}), "params": params, "timeout": timeout}
        if body is not None:
            kw["json"] = body
        elif raw is not None:
            kw["data"] = raw
        return self.s.request(method, self.base + path, **kw)

    def get(self, path, **kw):
        return self.req("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.req("POST", path, body=body, **kw)

    def query(self, sql, params=None, project="datos-local", prefix="/bigquery/v2", **extra):
        return self.post("%s/projects/%s/queries" % (prefix, project),
                         query_body(sql, params, **extra))
