"""POST /datos: a record (or a batch) checked by the loader's rules and
published to Pub/Sub, behind Apache's own access control.

Every test runs the real httpd against the emulator's Pub/Sub, and reads
what was published back from the subscription: a 202 means the message is
there with its attributes; any refusal means nothing is."""
import base64
import datetime
import json
import os
import re
import subprocess
import time

import pytest
import requests

from tools.httpd import REPO_ROOT
from harness.loader import PIPELINE, Loader, make_pipeline
from datos_env import PROJECT, datos_conf, get, ready, wait_for

TOKEN = "ingest-test-token-5f2c"
AUTH = {"Authorization": "Bearer " + TOKEN}
JSON = {"Content-Type": "application/json"}

GUARD = """
<Location "/datos">
  <LimitExcept GET HEAD OPTIONS>
    Require expr "%%{HTTP:Authorization} == 'Bearer %s'"
  </LimitExcept>
</Location>
<Location "/metrics">
  SetHandler datos-metrics
  Require local
</Location>
""" % TOKEN


def ingest_conf(emulator, extra="", guard=GUARD, **kw):
    lines = ["DatosIngest On", "DatosPubSubURL %s" % emulator.base_url, extra]
    return datos_conf(emulator, extra="\n".join(lines) + "\n" + guard, **kw)


def rfc3339(epoch):
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ")


def record(rid, contenido="hola", age=60):
    return {"id": rid, "contenido": contenido, "timestamp": rfc3339(time.time() - age)}


def post(h, body, headers=None, **kw):
    hdrs = dict(JSON, **AUTH)
    hdrs.update(headers or {})
    if not isinstance(body, (bytes, str)) and not callable(getattr(body, "__next__", None)):
        body = json.dumps(body)
    return requests.post(h.url("/datos"), data=body, headers=hdrs, timeout=120, **kw)


def published(emulator):
    """Everything on the subscription now: [(messageId, data bytes, attributes)]."""
    got = emulator.drain(PIPELINE["subscription"])
    return [(m["message"]["messageId"], base64.b64decode(m["message"].get("data", "")),
             m["message"].get("attributes", {})) for m in got]


def assert_error(r, code, reason=None, index=None):
    assert r.status_code == code, (r.status_code, r.text[:300])
    assert r.headers["Content-Type"] == "application/json"
    assert r.headers["Cache-Control"] == "no-store"
    doc = r.json()
    assert doc["error"]["code"] == code and doc["error"]["message"]
    if reason is not None:
        assert doc["error"]["reason"] == reason, doc
    if index is not None:
        assert doc["error"]["index"] == index, doc
    elif reason is not None:
        assert "index" not in doc["error"], doc
    return doc


@pytest.fixture(scope="module")
def server(emulator):
    from tools.httpd import Httpd, register_server, unregister_server
    make_pipeline(emulator)
    h = Httpd("ingest")
    h.write_config(ingest_conf(emulator, extra="DatosMaxBody 2M\nDatosMaxBatch 5"))
    h.start()
    register_server(h)
    ready(h)          # its warm start done before a test resets the emulator
    yield h
    unregister_server(h)
    h.stop()


@pytest.fixture
def pipeline(emulator, server):
    """A clean topic and subscription for each test, the server kept."""
    make_pipeline(emulator)
    return server


# ---------------------------------------------------------------- accepted

def test_a_record_is_published_with_its_attributes(emulator, pipeline):
    h = pipeline
    body = ('{"id": "sensor-7", "contenido": "caf\\u00e9 23\\u00b0C",\n'
            ' "timestamp": "%s"}\n' % rfc3339(time.time() - 30))
    r = post(h, body)
    assert r.status_code == 202, r.text
    assert r.headers["Content-Type"] == "application/json"
    assert r.headers["Cache-Control"] == "no-store"
    mid = r.json()["messageId"]
    assert set(r.json()) == {"messageId"}
    [(got_id, data, attrs)] = published(emulator)
    assert got_id == mid
    assert data == body.strip().encode()            # the bytes the client wrote
    assert attrs == {"datos_ingest": "http", "datos_client": "127.0.0.1"}


def test_a_batch_is_published_in_one_request_in_order(emulator, pipeline):
    h = pipeline
    emulator.clear_counters()
    recs = [record("b%d" % i, contenido="x" * i) for i in range(5)]
    r = post(h, recs)
    assert r.status_code == 202, r.text
    ids = r.json()["messageIds"]
    assert len(ids) == 5 and len(set(ids)) == 5
    assert emulator.count("pubsub.topics.publish") == 1
    got = {mid: json.loads(data) for mid, data, _ in published(emulator)}
    assert [got[i] for i in ids] == recs


def test_a_chunked_body_is_read_whole(emulator, pipeline):
    h = pipeline
    text = json.dumps([record("c1"), record("c2", contenido="y" * 100000)]).encode()

    def chunks():
        for i in range(0, len(text), 7000):
            yield text[i:i + 7000]

    r = post(h, chunks())
    assert r.status_code == 202, r.text
    assert len(r.json()["messageIds"]) == 2
    assert sorted(json.loads(d)["id"] for _, d, _ in published(emulator)) == ["c1", "c2"]


def test_json_with_a_utf8_charset_is_accepted(emulator, pipeline):
    r = post(pipeline, record("cs"), headers={"Content-Type": "application/json; charset=UTF-8"})
    assert r.status_code == 202, r.text
    assert len(published(emulator)) == 1


# ---------------------------------------------------------------- refused: 400

def reason_cases():
    now = time.time()
    ts = rfc3339(now - 60)
    return {
        "empty_data": b"",
        "not_utf8": b'{"id":"\xff","timestamp":"%s"}' % ts.encode(),
        "not_json": b'{"id": "a", "timestamp": ',
        "not_object": b'"just a string"',
        "duplicate_key": ('{"id":"a","id":"b","timestamp":"%s"}' % ts).encode(),
        "missing_id": ('{"timestamp":"%s"}' % ts).encode(),
        "bad_id": ('{"id":42,"timestamp":"%s"}' % ts).encode(),
        "id_too_long": ('{"id":"%s","timestamp":"%s"}' % ("i" * 257, ts)).encode(),
        "bad_contenido": ('{"id":"a","contenido":7,"timestamp":"%s"}' % ts).encode(),
        "contenido_too_large": ('{"id":"a","contenido":"%s","timestamp":"%s"}'
                                % ("c" * (1024 * 1024 + 1), ts)).encode(),
        "missing_timestamp": b'{"id":"a"}',
        "bad_timestamp": b'{"id":"a","timestamp":"2024-01-14 14:00:00"}',
        "future_timestamp": ('{"id":"a","timestamp":"%s"}' % rfc3339(now + 3600)).encode(),
        "unknown_field": ('{"id":"a","timestamp":"%s","colour":"red"}' % ts).encode(),
        "empty_batch": b"[]",
        "too_many_records": json.dumps([record("t%d" % i) for i in range(6)]).encode(),
    }


@pytest.mark.parametrize("reason", sorted(reason_cases()))
def test_every_reason_is_a_400_and_nothing_is_published(emulator, pipeline, reason):
    r = post(pipeline, reason_cases()[reason])
    assert_error(r, 400, reason)
    assert published(emulator) == []


def test_a_batch_names_its_first_bad_record_and_publishes_none(emulator, pipeline):
    recs = [record("ok0"), record("ok1"), {"id": "late"}, {"id": 5, "timestamp": "x"}]
    r = post(pipeline, recs)
    doc = assert_error(r, 400, "missing_timestamp", index=2)
    assert doc["error"]["message"].startswith("record 2:")
    assert published(emulator) == []


# ---------------------------------------------------------------- memory

def child_memory(pid):
    """VmRSS and VmHWM (the child's peak) in bytes, from /proc."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) * 1024
    return out


def only_child(h):
    """The one child of a ServerLimit 1 prefork server."""
    (child,) = h.wait_children(1)
    return child


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_large_post_costs_at_most_twice_its_body_beyond_the_publish_request(
        emulator, httpd_factory, framing, capsys):
    """POST /datos of 7 records of 1 MB: the one child that serves it grows by at most twice
    the body, beyond the publish request it sends (its peak RSS, VmHWM, against its RSS just
    before). The body is read into one buffer and encoded once, straight into the request."""
    if os.environ.get("DATOS_SANITIZE") == "1":
        pytest.skip("the sanitizer's shadow memory and quarantine are not the module's")
    make_pipeline(emulator)
    h = httpd_factory("ingest-memory", mpm="prefork")
    h.write_config(ingest_conf(emulator, extra="DatosMaxBody 7M\nDatosMaxBatch 10"),
                   mpm_tuning="StartServers 1\nMinSpareServers 1\nMaxSpareServers 1\n"
                              "ServerLimit 1\nMaxRequestWorkers 1\n")
    h.start()
    child = only_child(h)
    for i in range(5):                                  # every code path once, small
        assert post(h, record("warm-%d" % i)).status_code == 202
    body = json.dumps([record("m%d" % i, contenido="k" * 1_000_000) for i in range(7)])
    assert 7_000_000 < len(body) <= 7 * 1024 * 1024
    before = child_memory(child)
    raw = body.encode()
    data = raw if framing == "content-length" else \
        (raw[i:i + 65536] for i in range(0, len(raw), 65536))
    r = post(h, data)
    assert r.status_code == 202, r.text[:300]
    after = child_memory(child)
    assert only_child(h) == child
    # the publish request: each record's base64 and a little JSON around it
    publish = sum((len(json.dumps(x).encode()) + 2) // 3 * 4 + 100 for x in json.loads(body))
    grew = after["VmHWM"] - before["VmRSS"]
    with capsys.disabled():
        print("\n[POST /datos %s: body %.1f MB, publish request %.1f MB, child grew %.1f MB]"
              % (framing, len(body) / 1e6, publish / 1e6, grew / 1e6))
    assert grew <= 2 * len(body) + publish, (grew, len(body), publish)
    assert len(published(emulator)) == 5 + 7


# ---------------------------------------------------------------- refused: 413, 415

def test_a_body_over_the_limit_is_413_before_it_is_read(emulator, pipeline):
    big = b'{"id":"a","contenido":"' + b"z" * (2 * 1024 * 1024) + b'"}'
    r = post(pipeline, big)
    assert_error(r, 413)
    assert "DatosMaxBody" in r.json()["error"]["message"]
    assert r.headers.get("Connection") == "close"
    assert published(emulator) == []


def test_a_chunked_body_over_the_limit_is_413(emulator, pipeline):
    def chunks():
        yield b'[{"id":"a","contenido":"'
        for _ in range(300):
            yield b"q" * 8192
        yield b'","timestamp":"2024-01-01T00:00:00Z"}]'

    r = post(pipeline, chunks())
    assert_error(r, 413)
    assert published(emulator) == []


@pytest.mark.parametrize("ctype", [None, "text/plain", "application/x-www-form-urlencoded",
                                   "application/json; charset=latin1", "application/jsonl"])
def test_a_body_that_is_not_json_by_its_type_is_415(emulator, pipeline, ctype):
    hdrs = dict(AUTH)
    if ctype:
        hdrs["Content-Type"] = ctype
    r = requests.post(pipeline.url("/datos"), data=json.dumps(record("t")).encode(),
                      headers=hdrs, timeout=120)
    assert_error(r, 415)
    assert r.headers["Accept-Post"] == "application/json"
    assert published(emulator) == []


def test_a_compressed_body_is_415(emulator, pipeline):
    r = post(pipeline, b"\x1f\x8b\x08\x00", headers={"Content-Encoding": "gzip"})
    assert_error(r, 415)
    assert r.headers["Accept-Encoding"] == "identity"
    assert published(emulator) == []


def test_options_names_post_without_credentials(pipeline, emulator):
    """OPTIONS is outside the login (LimitExcept GET HEAD OPTIONS) and publishes nothing."""
    r = requests.options(pipeline.url("/datos"), timeout=10)
    assert r.status_code == 204, r.text
    assert r.headers["Allow"] == "GET, HEAD, POST"
    assert published(emulator) == []


def test_other_methods_are_405_naming_post(pipeline):
    r = requests.put(pipeline.url("/datos"), data=b"{}", headers=dict(JSON, **AUTH), timeout=120)
    assert_error(r, 405)
    assert r.headers["Allow"] == "GET, HEAD, POST"


# ---------------------------------------------------------------- Pub/Sub failures

FAULTS = [
    # (fault, status the client gets, Retry-After expected)
    (dict(action="status", status=503), 502, None),
    (dict(action="status", status=429, retry_after=7), 503, "7"),
    (dict(action="status", status=500), 502, None),
    (dict(action="status", status=403, reason="PERMISSION_DENIED"), 503, None),
    (dict(action="malformed"), 502, None),
    (dict(action="drop"), 502, None),
    # held past the publish timeout until the test releases it
    (dict(action="hold"), 504, None),
]


@pytest.mark.parametrize("fault,code,retry_after", FAULTS,
                         ids=["503", "429", "500", "403", "malformed", "drop", "timeout"])
def test_publish_failures_are_never_accepted(emulator, pipeline, httpd_factory, fault, code,
                                             retry_after):
    h = pipeline
    if fault["action"] == "hold":
        # a 1 s budget, on a server of its own: only this publish can be cut short
        h = httpd_factory("ingest-1s")
        h.write_config(ingest_conf(emulator, extra="DatosMaxBody 2M\nDatosMaxBatch 5",
                                   timeout="1s"))
        h.start()
        ready(h)
    h.log.expect(r"DT0404")                 # one error line for the failed publish
    # libcurl sends a request again, once, when a kept-alive connection turns
    # out closed before any answer: a drop must happen twice to be seen.
    emulator.add_fault(endpoint="pubsub.topics.publish",
                             count=2 if fault["action"] == "drop" else 1, **fault)
    r = post(h, record("f1"))
    assert_error(r, code)
    assert "messageId" not in r.text
    assert int(r.headers["Retry-After"]) >= 1
    if retry_after:
        assert r.headers["Retry-After"] == retry_after
    if fault["action"] == "hold":
        assert "may or may not" in r.json()["error"]["message"]
        emulator.settle_faults()            # the held publish lands in the emulator
    # the next one goes through (a drop's second count is left over when the connection was
    # a new one, which libcurl does not send again)
    emulator.clear_faults()
    r = post(h, record("f2"))
    assert r.status_code == 202, r.text


# ---------------------------------------------------------------- access control

def test_posting_needs_the_token_reading_does_not(emulator, pipeline):
    h = pipeline
    h.log.expect(r"AH01630")                # authz_core's note of each refusal
    r = requests.post(h.url("/datos"), data=json.dumps(record("x")), headers=JSON, timeout=120)
    assert_error(r, 403)
    r = requests.post(h.url("/datos"), data=json.dumps(record("x")),
                      headers=dict(JSON, Authorization="Bearer wrong"), timeout=120)
    assert_error(r, 403)
    assert published(emulator) == []
    r = requests.get(h.url("/health"), timeout=120)
    assert r.status_code == 200


def shipped_conf(emulator, h, users):
    with open(os.path.join(REPO_ROOT, "conf", "datos.conf")) as f:
        shipped = f.read()
    shipped = shipped.replace("/etc/apache2/datos-ingest.htpasswd", users)
    h.write_file("conf/datos.conf", shipped)
    modules = "\n".join("LoadModule %s_module /usr/lib/apache2/modules/mod_%s.so" % (m, m)
                        for m in ("authn_core", "authn_file", "auth_basic", "authz_user"))
    return ("%s\nDefine DATOS_INGEST\nDatosProject %s\nDatosCredentials none\n"
            "DatosBigQueryURL %s/bigquery/v2\nDatosPubSubURL %s\n"
            "DatosStateDir \"${root}/state\"\nInclude \"${root}/conf/datos.conf\"\n"
            % (modules, PROJECT, emulator.base_url, emulator.base_url))


def test_the_shipped_conf_asks_for_a_password_to_post(emulator, httpd_factory):
    make_pipeline(emulator)
    h = httpd_factory("ingest-shipped")
    users = h.path("conf", "ingest.htpasswd")
    os.makedirs(os.path.dirname(users), exist_ok=True)
    subprocess.run(["htpasswd", "-c", "-b", "-B", users, "sensor-1", "s3cret-pass"],
                   check=True, capture_output=True)
    os.chmod(users, 0o644)
    h.write_config(shipped_conf(emulator, h, users))
    rc, out = h.configtest()
    assert rc == 0 and "DT0405" not in out, out
    h.start()
    ready(h)
    h.log.expect(r"AH01617|AH01618")        # mod_auth_basic's own notes of a bad user/password
    r = requests.post(h.url("/datos"), data=json.dumps(record("s1")), headers=JSON, timeout=120)
    assert_error(r, 401)
    assert r.headers["WWW-Authenticate"].startswith("Basic")
    r = requests.post(h.url("/datos"), data=json.dumps(record("s1")), headers=JSON,
                      auth=("sensor-1", "wrong"), timeout=120)
    assert_error(r, 401)
    assert published(emulator) == []
    r = requests.post(h.url("/datos"), data=json.dumps(record("s1")), headers=JSON,
                      auth=("sensor-1", "s3cret-pass"), timeout=120)
    assert r.status_code == 202, r.text
    [(mid, data, attrs)] = published(emulator)
    assert mid == r.json()["messageId"] and json.loads(data)["id"] == "s1"
    # reads stay public
    assert requests.get(h.url("/health"), timeout=120).status_code == 200
    assert requests.get(h.url("/datos"), timeout=120).status_code in (200, 503)


def test_without_the_define_the_shipped_conf_refuses_post(emulator, httpd_factory):
    make_pipeline(emulator)
    h = httpd_factory("ingest-shipped-off")
    conf = shipped_conf(emulator, h, "/nonexistent").replace("Define DATOS_INGEST\n", "")
    h.write_config(conf)
    h.start()
    ready(h)
    r = requests.post(h.url("/datos"), data=json.dumps(record("x")), headers=JSON, timeout=120)
    assert_error(r, 405)
    assert r.headers["Allow"] == "GET, HEAD"


@pytest.mark.parametrize("guard,warns", [
    ("", True),
    ('<Location "/datos">\n  Require all granted\n</Location>\n', True),
    ('<Location "/datos">\n  <Limit GET>\n    Require ip 127.0.0.1\n  </Limit>\n</Location>\n',
     True),
    ('<Location "/datos">\n  <Limit POST>\n    Require ip 127.0.0.1\n  </Limit>\n</Location>\n',
     False),
    ('<Location "/">\n  Require ip 127.0.0.1\n</Location>\n', False),
    ('<LocationMatch "^/dat">\n  <RequireAll>\n    Require ip 127.0.0.1\n  </RequireAll>\n'
     '</LocationMatch>\n', False),
    (GUARD, False),
], ids=["nothing", "all-granted", "limit-get-only", "limit-post", "parent-location",
        "locationmatch-requireall", "token"])
def test_apache2_t_warns_when_nothing_guards_post(emulator, httpd_factory, guard, warns):
    h = httpd_factory("ingest-configtest")
    h.write_config(ingest_conf(emulator, guard=guard))
    rc, out = h.configtest()
    assert rc == 0 and "Syntax OK" in out, out
    assert ("DT0405" in out) == warns, out
    if warns:
        assert "anyone who reaches this server can publish" in out


# ---------------------------------------------------------------- metrics

def test_ingest_metrics_count_codes_and_publish_time(emulator, pipeline):
    h = pipeline

    def metrics():
        text = requests.get(h.url("/metrics"), timeout=120).text
        out = {}
        for line in text.splitlines():
            m = re.match(r"^(datos_ingest_\S+) (\S+)$", line)
            if m:
                out[m.group(1)] = float(m.group(2))
        return out

    before = metrics()
    assert post(h, record("m1")).status_code == 202
    assert post(h, b"nope").status_code == 400
    after = metrics()

    def delta(k):
        return after.get(k, 0) - before.get(k, 0)

    assert delta('datos_ingest_requests_total{code="202"}') == 1
    assert delta('datos_ingest_requests_total{code="400"}') == 1
    assert delta("datos_ingest_publish_duration_seconds_count") == 1
    published(emulator)


# ---------------------------------------------------------------- end to end

def test_post_then_the_loader_then_get_shows_the_record(emulator, httpd_factory):
    """The whole write path: POST (with malformed bodies among the good ones),
    one loader run, and /datos shows exactly the good records."""
    make_pipeline(emulator)
    h = httpd_factory("ingest-e2e")
    h.write_config(ingest_conf(emulator, fresh_for="0"))
    h.start()
    good = [record("e2e-%d" % i, contenido="valor %d" % i, age=10 + i) for i in range(3)]
    assert post(h, good[0]).status_code == 202
    assert post(h, good[1:]).status_code == 202
    for bad in (b"{", b'{"id":"x"}', b"[1]", b'{"id":"y","timestamp":"yesterday"}'):
        assert post(h, bad).status_code == 400
    loader = Loader(emulator, "ingest-e2e")
    r = loader.run()
    assert r.rc == 0, r
    assert r.finished["rows_loaded"] == 3
    assert emulator.pull(PIPELINE["dead_letter_subscription"]) == []
    got = get(h, "/datos?limit=10").json()["datos"]
    assert [x["id"] for x in got] == ["e2e-0", "e2e-1", "e2e-2"]
    assert [x["contenido"] for x in got] == ["valor 0", "valor 1", "valor 2"]
