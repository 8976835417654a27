"""Control API: faults (every action), counters, request log, clock, config, reset;
persistence with --data-dir; keep-alive throughput (functional bound)."""
import http.client
import json
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from emu_support import TEST_TMP
from gcpemu.client import Emulator, EmulatorError

P = "datos-local"
DS = "/bigquery/v2/projects/%s/datasets" % P


def conn(emu, timeout=10):
    return http.client.HTTPConnection("127.0.0.1", emu.port, timeout=timeout)


def create_ds_raw(c, name):
    body = json.dumps({"datasetReference": {"datasetId": name}})
    c.request("POST", DS, body=body, headers={"Content-Type": "application/json"})
    return c.getresponse()


def test_status_fault_with_retry_after(api, emu):
    fid = emu.add_fault(endpoint="bigquery.datasets.get", action="status", status=503,
                        reason="backendError", retry_after=2, count=2)
    assert fid
    emu.create_dataset("ds")
    for _ in range(2):
        r = api.get(DS + "/ds")
        assert r.status_code == 503
        assert r.headers["Retry-After"] == "2"
        err = r.json()["error"]
        assert err["status"] == "UNAVAILABLE" and err["code"] == 503
        assert err["errors"][0] == {"message": err["message"], "domain": "global",
                                    "reason": "backendError"}
    assert api.get(DS + "/ds").status_code == 200
    assert emu.count("bigquery.datasets.get") == 3  # faulted requests are counted
    assert emu.faults() == []


def test_rate_limit_fault_shape(api, emu):
    emu.add_fault(path=r"/queries$", method="POST", status=403, reason="rateLimitExceeded")
    r = api.query("SELECT 1")
    assert r.status_code == 403
    err = r.json()["error"]
    assert err["status"] == "PERMISSION_DENIED"
    assert err["errors"][0]["domain"] == "usageLimits"
    assert err["errors"][0]["reason"] == "rateLimitExceeded"
    assert err["message"].startswith("Exceeded rate limits")
    assert api.query("SELECT 1").status_code == 200


def test_html_body_fault(api, emu):
    emu.add_fault(endpoint="bigquery.jobs.query", status=502,
                  body="<html><body>Bad Gateway</body></html>", content_type="text/html")
    r = api.query("SELECT 1")
    assert r.status_code == 502
    assert r.headers["Content-Type"] == "text/html"
    assert r.text == "<html><body>Bad Gateway</body></html>"


def test_skip_method_and_unlimited(api, emu):
    emu.add_fault(endpoint="bigquery.jobs.query", status=500, skip=1, count=0)
    assert api.query("SELECT 1").status_code == 200
    for _ in range(3):
        r = api.query("SELECT 1")
        assert r.status_code == 500 and r.json()["error"]["status"] == "INTERNAL"
    listed = emu.faults()
    assert len(listed) == 1 and listed[0]["hits"] == 3 and listed[0]["count"] == 0
    emu.clear_faults()
    assert emu.faults() == []
    assert api.query("SELECT 1").status_code == 200
    emu.add_fault(path="/datasets", method="DELETE", status=500)
    assert api.get(DS + "/nope").status_code == 404  # GET does not match
    assert len(emu.faults()) == 1


def test_delay_fault(api, emu):
    # lower bounds: a busy machine only lengthens a delay
    emu.add_fault(endpoint="bigquery.jobs.query", action="delay", delay_ms=400)
    t0 = time.time()
    r = api.query("SELECT 1")
    assert r.status_code == 200
    assert time.time() - t0 >= 0.4
    emu.add_fault(endpoint="bigquery.jobs.query", status=503, delay_ms=200)
    t0 = time.time()
    assert api.query("SELECT 1").status_code == 503
    assert time.time() - t0 >= 0.2


def test_hold_fault_waits_for_release(api, emu):
    """A held request answers only once released: what a test needs to prove
    behaviour while BigQuery is busy, without timing anything."""
    fid = emu.add_fault(endpoint="bigquery.jobs.query", action="hold")
    done = []
    t = threading.Thread(target=lambda: done.append(api.query("SELECT 1")))
    t.start()
    deadline = time.time() + 10
    while emu.fault(fid)["held"] != 1 and time.time() < deadline:
        time.sleep(0.01)
    assert emu.fault(fid)["held"] == 1
    # held, however long the test looks; other endpoints are not
    assert emu.count("bigquery.jobs.query") == 1
    assert api.get(DS + "/nope").status_code == 404
    t.join(0.3)
    assert t.is_alive() and not done
    emu.release_fault(fid)
    t.join(10)
    assert done and done[0].status_code == 200
    f = emu.fault(fid)
    assert (f["held"], f["released"], f["hits"]) == (0, True, 1)
    # released, it is retired: later queries meet the next fault, or none
    assert api.query("SELECT 1").status_code == 200
    fid = emu.add_fault(endpoint="bigquery.jobs.query", action="hold", count=0,
                        hold_ms=100)
    emu.release_fault(fid)
    emu.add_fault(endpoint="bigquery.jobs.query", status=503)
    assert api.query("SELECT 1").status_code == 503
    assert emu.fault(fid)["hits"] == 0


def test_hold_fault_let_go_by_clear_and_by_its_limit(api, emu):
    emu.add_fault(endpoint="bigquery.jobs.query", action="hold", count=0)
    done = []
    t = threading.Thread(target=lambda: done.append(api.query("SELECT 1")))
    t.start()
    deadline = time.time() + 10
    while not any(f.get("held") for f in emu.faults()) and time.time() < deadline:
        time.sleep(0.01)
    emu.clear_faults()
    t.join(10)
    assert done and done[0].status_code == 200
    # hold_ms bounds a hold nobody releases
    emu.add_fault(endpoint="bigquery.jobs.query", action="hold", hold_ms=50)
    assert api.query("SELECT 1").status_code == 200
    with pytest.raises(EmulatorError):
        emu.release_fault("f-nosuchfault")


def test_settle_faults_releases_every_hold_and_waits_for_the_answers(api, emu):
    """settle_faults() lets every held request go on and returns once each has been
    answered: what they do has landed before the test goes on."""
    fid = emu.add_fault(endpoint="bigquery.jobs.query", action="hold", count=2)
    with ThreadPoolExecutor(2) as pool:
        held = [pool.submit(api.query, "SELECT %d AS n" % i) for i in (1, 2)]
        deadline = time.time() + 60
        while emu.applying() < 2 and time.time() < deadline:
            time.sleep(0.02)
        assert emu.applying() == 2 and emu.fault(fid)["held"] == 2
        assert not any(f.done() for f in held)
        assert [q["status"] for q in emu.requests("bigquery.jobs.query")] == [None, None]
        emu.settle_faults()
        assert emu.applying() == 0
        answers = [f.result(timeout=60) for f in held]
    assert [q["status"] for q in emu.requests("bigquery.jobs.query")] == [200, 200]
    assert sorted(r.json()["rows"][0]["f"][0]["v"] for r in answers) == ["1", "2"]
    assert emu.release_held() == 0                  # nothing held: nothing to release
    assert emu.faults() == []                       # the hold fault was retired


def test_drop_fault(emu):
    emu.add_fault(endpoint="bigquery.datasets.insert", action="drop")
    c = conn(emu)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        create_ds_raw(c, "dropped")
    c.close()
    c = conn(emu)
    c.request("GET", DS + "/dropped")
    assert c.getresponse().status == 404  # nothing was committed
    log = emu.requests("bigquery.datasets.insert")
    assert log[-1]["status"] is None


def test_commit_then_drop_fault(emu):
    emu.add_fault(endpoint="bigquery.datasets.insert", action="commit_then_drop")
    c = conn(emu)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        create_ds_raw(c, "committed")
    c = conn(emu)
    c.request("GET", DS + "/committed")
    assert c.getresponse().status == 200  # the change happened
    c = conn(emu)
    r = create_ds_raw(c, "committed")
    assert r.status == 409  # a retry sees the duplicate
    assert emu.requests("bigquery.datasets.insert")[0]["status"] is None


def test_malformed_fault(api, emu):
    emu.add_fault(endpoint="bigquery.jobs.query", action="malformed")
    r = api.query("SELECT 1")
    assert r.status_code == 200
    with pytest.raises(ValueError):
        json.loads(r.text)


def test_truncate_fault(emu):
    emu.create_dataset("ds")
    emu.add_fault(endpoint="bigquery.datasets.get", action="truncate")
    c = conn(emu)
    c.request("GET", DS + "/ds?prettyPrint=false")
    r = c.getresponse()
    assert r.status == 200
    length = int(r.getheader("Content-Length"))
    with pytest.raises(http.client.IncompleteRead) as e:
        r.read()
    assert 0 < len(e.value.partial) < length


def test_bad_fault_spec(api, emu):
    r = api.post("/_emulator/faults", {"action": "explode"})
    assert r.status_code == 400
    r = api.post("/_emulator/faults", {"action": "status", "status": 503, "colour": 1})
    assert r.status_code == 400


def test_counters_and_request_log(api, emu):
    emu.create_dataset("ds")
    api.get(DS + "/ds", params={"prettyPrint": "false"}, headers={"X-Test": "1"})
    api.query("SELECT @x AS x", {"x": ("INT64", 5)}, location="US",
              maximumBytesBilled="10485760", formatOptions={"useInt64Timestamp": True})
    api.get("/nowhere")
    c = emu.counters()
    assert c == {"bigquery.datasets.insert": 1, "bigquery.datasets.get": 1,
                 "bigquery.jobs.query": 1, "unknown": 1}
    q = emu.requests("bigquery.jobs.query")
    assert len(q) == 1
    e = q[0]
    assert set(e) == {"time", "wall", "method", "path", "query", "endpoint", "headers", "body",
                      "status"}
    assert e["method"] == "POST" and e["path"] == "/bigquery/v2/projects/%s/queries" % P
    assert e["status"] == 200
    assert e["body"]["queryParameters"][0]["parameterValue"] == {"value": "5"}
    assert e["body"]["location"] == "US"
    assert e["body"]["maximumBytesBilled"] == "10485760"
    assert e["body"]["formatOptions"] == {"useInt64Timestamp": True}
    g = emu.requests("bigquery.datasets.get")[0]
    assert g["query"] == {"prettyPrint": "false"}
    assert g["headers"]["X-Test"] == "1"
    assert len(emu.requests()) == 4
    assert emu.requests("unknown")[0]["status"] == 404
    # the one query job, which references no table: nothing processed, nothing billed
    assert emu.query_bytes() == {"jobs": 1, "processed": 0, "billed": 0}
    emu.clear_counters()
    assert emu.counters() == {} and emu.requests() == []
    assert emu.query_bytes() == {"jobs": 0, "processed": 0, "billed": 0}


def test_clock(api, emu):
    emu.reset()                                     # running, as it starts
    # Each reading lies between real-time readings taken before and after it.
    before = time.time()
    now = emu.now()
    assert before - 0.001 <= now <= time.time() + 0.001
    emu.advance_clock(3600)
    c = api.get("/_emulator/clock").json()
    assert abs(c["offset"] - 3600) < 0.01
    assert before + 3600 - 0.001 <= c["now"] <= time.time() + 3600 + 0.01
    set_at = time.time()
    emu.set_clock(1705240800)
    assert 1705240800 <= emu.now() <= 1705240800 + (time.time() - set_at) + 0.001
    d = emu.create_dataset("ds")
    r = api.query("SELECT CURRENT_TIMESTAMP() AS now",
                  formatOptions={"useInt64Timestamp": True}).json()
    since = time.time() - set_at
    assert 1705240800000 <= int(d["creationTime"]) <= 1705240800000 + since * 1000 + 1
    assert 1705240800 * 10 ** 6 <= int(r["rows"][0]["f"][0]["v"]) \
        <= (1705240800 + since) * 10 ** 6 + 1
    assert r["schema"]["fields"][0] == {"name": "now", "type": "TIMESTAMP", "mode": "NULLABLE"}
    assert api.post("/_emulator/clock", {"jump": 1}).status_code == 400


def test_frozen_clock(api, emu):
    """Frozen (the suite's fixture does it), the clock moves only when told to, but for
    a microsecond per reading."""
    c = api.get("/_emulator/clock").json()
    assert c["frozen"] is True
    a, b = emu.now(), emu.now()
    assert 0 < b - a < 0.001
    assert 1.5 < emu.advance_clock(1.5) - b < 1.501
    time.sleep(0.05)
    assert 1.5 < emu.now() - b < 1.501
    assert 1705240800 < emu.set_clock(1705240800) < 1705240800.001
    d = emu.create_dataset("ds")
    assert d["creationTime"] == "1705240800000"
    # thawed, it runs on from where it stood
    before = time.time()
    emu.freeze_clock(False)
    assert api.get("/_emulator/clock").json()["frozen"] is False
    assert 1705240800 <= emu.now() <= 1705240800 + (time.time() - before) + 0.001
    emu.freeze_clock()
    emu.reset()                                     # a reset runs it from real time again
    before = time.time()
    c = api.get("/_emulator/clock").json()
    assert c["frozen"] is False and before - 0.001 <= c["now"] <= time.time() + 0.001
    assert api.post("/_emulator/clock", {"freeze": "yes"}).status_code == 400


def test_config_and_reset(api, emu):
    cfg = api.get("/_emulator/config").json()
    assert cfg["require_auth"] is False and cfg["token_expires_in"] == 3599
    assert cfg["query_incomplete_polls"] == 0 and cfg["insert_id_window"] == 60
    emu.configure(query_incomplete_polls=3, token_expires_in=10)
    assert api.get("/_emulator/config").json()["query_incomplete_polls"] == 3
    assert api.post("/_emulator/config", {"nope": 1}).status_code == 400
    assert api.post("/_emulator/config", {"require_auth": "yes"}).status_code == 400
    emu.create_dataset("ds")
    emu.add_fault(endpoint="bigquery.jobs.query", status=503, count=0)
    emu.advance_clock(100)
    emu.reset()
    assert api.get("/_emulator/config").json() == cfg
    assert emu.faults() == [] and emu.counters() == {}
    assert abs(api.get("/_emulator/clock").json()["offset"]) < 0.001
    assert api.get(DS + "/ds").status_code == 404


def test_control_api_errors(api):
    assert api.get("/_emulator/nothing").status_code == 404
    assert api.req("POST", "/_emulator/reset", raw=b"{bad").status_code in (200, 400)


def test_persistence_across_restart():
    work = os.path.join(TEST_TMP, "emulator-persist")
    shutil.rmtree(work, ignore_errors=True)
    data = os.path.join(work, "data")
    emu = Emulator(work, extra_args=("--data-dir", data))
    emu.start()
    try:
        emu.create_dataset("latam_dataset")
        emu.create_datos_table()
        emu.insert_rows([{"id": "a", "contenido": "uno", "timestamp": "2024-01-14T14:00:00Z"},
                         {"id": "b", "timestamp": "2024-01-15T14:00:00.5Z"}])
    finally:
        emu.stop()
    assert os.path.exists(os.path.join(data, "bigquery.json"))
    emu = Emulator(work, extra_args=("--data-dir", data))
    emu.start()
    try:
        t = emu._api("GET", "/projects/%s/datasets/latam_dataset/tables/datos" % P)
        assert t["timePartitioning"] == {"type": "DAY", "field": "timestamp"}
        assert t["location"] == "southamerica-east1"
        r = emu.query("SELECT id, contenido, timestamp FROM `latam_dataset.datos` ORDER BY id",
                      formatOptions={"useInt64Timestamp": True})
        assert [[c["v"] for c in row["f"]] for row in r["rows"]] == [
            ["a", "uno", "1705240800000000"], ["b", None, "1705327200500000"]]
        r = emu.query("SELECT id FROM `latam_dataset.datos` WHERE timestamp >= "
                      "TIMESTAMP '2024-01-15'")
        assert r["totalBytesProcessed"] == str(3 + 8)  # partition stats survived too
        emu.reset()
    finally:
        emu.stop()
    emu = Emulator(work, extra_args=("--data-dir", data))
    emu.start()
    try:
        assert emu._api("GET", "/projects/%s/datasets/latam_dataset" % P, expect=(404,))
    finally:
        emu.stop()


def test_keep_alive_throughput(emu):
    """2,000 requests over a few keep-alive connections all complete (a functional bound,
    not a timing assertion); the request log keeps the last 2,000."""
    emu.create_dataset("ds")
    results = []
    lock = threading.Lock()

    def worker(n):
        c = conn(emu)
        ok = 0
        for _ in range(n):
            c.request("GET", DS + "/ds?prettyPrint=false")
            r = c.getresponse()
            r.read()
            if r.status == 200:
                ok += 1
            assert r.getheader("Connection") != "close"
        c.close()
        with lock:
            results.append(ok)

    threads = [threading.Thread(target=worker, args=(500,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sum(results) == 2000
    assert emu.count("bigquery.datasets.get") == 2000
    assert len(emu.requests()) == 2000  # ring buffer: the datasets.insert fell out
