"""Retry-After values from Google never reach a client outside 1..3600 s.

BigQuery, the token endpoint and the metadata server can each send a
Retry-After with an error. Whatever its form (seconds, any HTTP-date form)
or its value (past, far future, beyond any integer type, garbage), the
module parses it without overflow (the ASan+UBSan build proves that) and the
client gets a whole number of seconds within the documented range."""
import email.utils
import json
import math
import os
import time

import pytest

from tools.httpd import TEST_TMP
from datos_env import contract_rows, datos_conf, get, ready, seed

DEFAULT_RETRY_AFTER = 5      # what the module says when the upstream gave none we can use
LO, HI = 1, 3600


def http_date(offset):
    return email.utils.formatdate(time.time() + offset, usegmt=True)


def rfc850(offset):
    return time.strftime("%A, %d-%b-%y %H:%M:%S GMT", time.gmtime(time.time() + offset))


def asctime(offset):
    return time.asctime(time.gmtime(time.time() + offset))


# A date 300 s ahead: what is left of it when the module reads it, in whole seconds (the
# date itself has whole seconds), so at least 299 less the whole seconds since it was
# made, and at most 301.
IN_300_S = "300 s from when the date was made"

# (name, value as a function of nothing, the expected client value or a range)
VALUES = [
    ("seconds", lambda: "120", (120, 120)),
    ("ten-years", lambda: "315359999", (HI, HI)),
    ("beyond-int64", lambda: "9" * 40, (HI, HI)),
    ("zero", lambda: "0", (LO, LO)),
    ("imf-date", lambda: http_date(300), IN_300_S),
    ("rfc850-date", lambda: rfc850(300), IN_300_S),
    ("asctime-date", lambda: asctime(300), IN_300_S),
    ("past-date", lambda: http_date(-86400), (LO, LO)),
    ("year-9999", lambda: "Fri, 31 Dec 9999 23:59:59 GMT", (HI, HI)),
    ("year-300000", lambda: "Sun, 14 Jan 300000 14:00:30 GMT",
     (DEFAULT_RETRY_AFTER, DEFAULT_RETRY_AFTER)),
    ("negative", lambda: "-5", (DEFAULT_RETRY_AFTER, DEFAULT_RETRY_AFTER)),
    ("garbage", lambda: "soon, maybe", (DEFAULT_RETRY_AFTER, DEFAULT_RETRY_AFTER)),
]

UPSTREAMS = ["bigquery", "token", "metadata"]
ENDPOINTS = {"bigquery": "bigquery.jobs.query", "token": "oauth2.token",
             "metadata": "metadata.token"}


@pytest.fixture(scope="module")
def rows(emulator):
    rows = contract_rows(emulator.now())
    seed(emulator, rows)
    yield rows
    emulator.configure(require_auth=False)


def key_file(emulator):
    with open(emulator.key_file) as f:
        key = json.load(f)
    os.makedirs(os.path.join(TEST_TMP, "keys"), exist_ok=True)
    path = os.path.join(TEST_TMP, "keys", "retry-after.json")
    with open(path, "w") as f:
        json.dump(key, f)
    os.chmod(path, 0o600)
    return path


@pytest.fixture(scope="module", params=UPSTREAMS)
def server(request, rows, emulator):
    from tools.httpd import Httpd, register_server, unregister_server
    upstream = request.param
    env = None
    if upstream == "bigquery":
        creds, project = "none", "datos-local"
    elif upstream == "token":
        creds, project = key_file(emulator), "datos-local"
    else:
        creds, project = "metadata", "datos-local"
        env = {"GCE_METADATA_HOST": "127.0.0.1:%d" % emulator.port}
    h = Httpd("retry-after-" + upstream, env=env)
    h.write_config(datos_conf(emulator, credentials=creds, project=project,
                              extra="DatosLocation southamerica-east1\n", fresh_for="0"))
    h.start()
    register_server(h)
    # The warm start's fetch is done before a test adds its fault, so the
    # 429 each test sets is the one the next request's fetch meets.
    ready(h)
    yield upstream, h
    unregister_server(h)
    h.stop()


@pytest.fixture(autouse=True)
def no_faults_left(emulator):
    emulator.clear_faults()
    yield
    emulator.clear_faults()


@pytest.mark.parametrize("name,value,expected", VALUES, ids=[v[0] for v in VALUES])
def test_client_retry_after_is_parsed_and_clamped(server, emulator, name, value, expected):
    upstream, h = server
    h.log.expect(r"DT0201")
    made = time.time()
    emulator.add_fault(endpoint=ENDPOINTS[upstream], count=0, action="status", status=429,
                       reason="rateLimitExceeded", retry_after=value())
    r = get(h, "/datos")
    if expected == IN_300_S:
        expected = (299 - math.ceil(time.time() - made), 301)
    assert r.status_code == 503, r.text
    assert r.headers["Content-Type"] == "application/json"
    assert r.json()["error"]["code"] == 503
    ra = r.headers["Retry-After"]
    assert ra.isdigit(), ra
    assert LO <= int(ra) <= HI
    assert expected[0] <= int(ra) <= expected[1], (name, ra)
