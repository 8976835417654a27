"""BigQuery load jobs (docs/google-apis.md 2.6, 2.7, 2.9): multipart and resumable uploads, the job
timeline on the emulator clock, all-or-nothing commits, per-row errors, maxBadRecords,
dispositions, 409 duplicate, the per-table daily quota, forced failures, tabledata.list,
persistence across restarts."""
import json
import os
import shutil

import pytest

from emu_support import TEST_TMP
from gcpemu.client import Emulator, ndjson

P = "datos-local"
LOC = "southamerica-east1"
UPLOAD = "/upload/bigquery/v2/projects/%s/jobs" % P
JOBS = "/bigquery/v2/projects/%s/jobs" % P
DATOS = {"projectId": P, "datasetId": "latam_dataset", "tableId": "datos"}
ROWS = [{"id": "1", "contenido": "hola", "timestamp": "2024-01-14T14:00:00.123456Z"},
        {"id": "2", "contenido": None, "timestamp": "2024-01-14 14:00:01 UTC"},
        {"id": "3", "timestamp": "2024-01-14T11:00:02-03:00", "message_id": "m3",
         "publish_time": "2024-01-14T14:00:03Z"}]


def job_body(job_id=None, location=None, **load):
    cfg = {"destinationTable": dict(DATOS), "sourceFormat": "NEWLINE_DELIMITED_JSON"}
    cfg.update(load)
    ref = {"projectId": P}
    if job_id:
        ref["jobId"] = job_id
    if location:
        ref["location"] = location
    return {"jobReference": ref, "configuration": {"load": cfg}}


def multipart(meta, data, boundary="bq_0d9f3c", json_type="application/json; charset=UTF-8"):
    meta = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
    b = boundary.encode()
    return (b"--" + b + b"\r\nContent-Type: " + json_type.encode() + b"\r\n\r\n" + meta +
            b"\r\n--" + b + b"\r\nContent-Type: application/octet-stream\r\n\r\n" + data +
            b"\r\n--" + b + b"--\r\n")


def insert(api, meta, data, boundary="bq_0d9f3c", **kw):
    return api.req("POST", UPLOAD, raw=multipart(meta, data, boundary, **kw),
                   params={"uploadType": "multipart"},
                   headers={"Content-Type": "multipart/related; boundary=" + boundary})


def get_job(api, job_id, location=LOC):
    params = {"location": location} if location else None
    return api.get("%s/%s" % (JOBS, job_id), params=params)


def bq_err(r, code, status, reason, message=None):
    assert r.status_code == code, r.text
    e = r.json()["error"]
    assert set(e) == {"code", "message", "errors", "status"}
    assert e["code"] == code and e["status"] == status
    assert e["errors"] == [{"message": e["message"], "domain": "global", "reason": reason}]
    if message is not None:
        assert e["message"] == message
    return e


def cells(emu, **kw):
    return [(r["id"], r["contenido"], r["timestamp"]) for r in emu.table_rows(**kw)]


# multipart, the job resource ---------------------------------------------------------------

def test_multipart_load_shape(api, datos):
    before_ms = int(datos.now() * 1000)
    r = insert(api, dict(job_body("load_events_1"), configuration={
        "load": job_body()["configuration"]["load"], "labels": {"loader": "cron"}}),
        ndjson(ROWS))
    assert r.status_code == 200, r.text
    job = r.json()
    now_ms = int(datos.now() * 1000)
    assert job["kind"] == "bigquery#job"
    assert job["id"] == "%s:%s.load_events_1" % (P, LOC)
    assert job["jobReference"] == {"projectId": P, "jobId": "load_events_1", "location": LOC}
    assert job["configuration"] == {"jobType": "LOAD", "labels": {"loader": "cron"}, "load": {
        "destinationTable": DATOS, "sourceFormat": "NEWLINE_DELIMITED_JSON"}}
    assert job["status"] == {"state": "DONE"}  # no pending/running time configured
    stats = job["statistics"]
    assert set(stats) == {"creationTime", "startTime", "endTime", "load"}
    assert all(isinstance(stats[k], str) for k in ("creationTime", "startTime", "endTime"))
    assert before_ms <= int(stats["creationTime"]) <= now_ms
    assert stats["load"] == {"inputFiles": "1", "inputFileBytes": str(len(ndjson(ROWS))),
                             "outputRows": "3", "outputBytes": stats["load"]["outputBytes"],
                             "badRecords": "0"}
    # outputBytes: the BigQuery sizes of what was stored (STRING 2 + bytes, TIMESTAMP 8)
    assert stats["load"]["outputBytes"] == str((3 + 6 + 8) + (3 + 8) + (3 + 8 + 4 + 8))
    assert job["user_email"].endswith(".iam.gserviceaccount.com")
    assert job["selfLink"].endswith("/jobs/load_events_1?location=" + LOC)
    # rows are there, TIMESTAMP text forms normalised to UTC microseconds
    assert cells(datos) == [("1", "hola", "1705240800123456"), ("2", None, "1705240801000000"),
                            ("3", None, "1705240802000000")]
    assert datos.table_rows()[2]["publish_time"] == "1705240803000000"
    # jobs.get: the location rule, then the same resource
    bq_err(get_job(api, "load_events_1", location=None), 404, "NOT_FOUND", "notFound",
           "Not found: Job %s:load_events_1" % P)
    g = get_job(api, "load_events_1").json()
    assert g == job
    assert datos.count("bigquery.jobs.insert.multipart") == 1
    # the table counts the rows at once: load jobs do not use the streaming buffer
    t = api.get("/bigquery/v2/projects/%s/datasets/latam_dataset/tables/datos" % P).json()
    assert t["numRows"] == "3" and "streamingBuffer" not in t


def test_generated_job_id_and_bare_paths(api, datos):
    meta = {"configuration": {"load": job_body()["configuration"]["load"]}}
    r = insert(api, meta, ndjson(ROWS[:1]))
    assert r.status_code == 200, r.text
    jid = r.json()["jobReference"]["jobId"]
    assert jid and r.json()["jobReference"]["location"] == LOC
    # jobs.get answers on the bare /projects path too (what Google's Node.js client uses)
    r = api.get("/projects/%s/jobs/%s" % (P, jid), params={"location": LOC})
    assert r.status_code == 200 and r.json()["status"]["state"] == "DONE"


def test_job_timeline_on_the_emulator_clock(api, datos):
    datos.configure(load_job_pending_seconds=5, load_job_running_seconds=10)
    r = insert(api, job_body("slow_load"), ndjson(ROWS))
    job = r.json()
    created = int(job["statistics"]["creationTime"])
    assert job["status"] == {"state": "PENDING"}
    assert job["statistics"] == {"creationTime": str(created)}
    assert datos.table_rows() == []
    datos.advance_clock(4.9)
    assert get_job(api, "slow_load").json()["status"] == {"state": "PENDING"}
    datos.advance_clock(0.1)
    j = get_job(api, "slow_load").json()
    assert j["status"] == {"state": "RUNNING"}
    assert j["statistics"] == {"creationTime": str(created), "startTime": str(created + 5000)}
    assert datos.table_rows() == []  # nothing is visible before DONE
    datos.advance_clock(9.9)
    assert get_job(api, "slow_load").json()["status"] == {"state": "RUNNING"}
    datos.advance_clock(0.1)
    # a query sees the rows as soon as the job's DONE time has come, even before a jobs.get
    q = datos.query("SELECT COUNT(*) AS n FROM `latam_dataset.datos`")
    assert q["rows"] == [{"f": [{"v": "3"}]}]
    j = get_job(api, "slow_load").json()
    assert j["status"] == {"state": "DONE"}
    assert j["statistics"]["endTime"] == str(created + 15000)
    assert j["statistics"]["load"]["outputRows"] == "3"


# bad data -------------------------------------------------------------------------------------

def test_bad_row_fails_the_whole_job(api, datos):
    data = ndjson(ROWS[:1]) + b'{"id": "x", "timestamp": "2024-01-14T14:00:00Z", "colour": 1}\n' \
        + ndjson(ROWS[1:])
    r = insert(api, job_body("bad_load"), data)
    assert r.status_code == 200  # a failed job is still HTTP 200
    job = r.json()
    pos = len(ndjson(ROWS[:1]))
    giving_up = ("Error while reading data, error message: JSON table encountered too many "
                 "errors, giving up. Rows: 2; errors: 1. Please look into the errors[] "
                 "collection for more details.")
    assert job["status"] == {
        "state": "DONE",
        "errorResult": {"reason": "invalid", "message": giving_up, "location": "file-00000000"},
        "errors": [
            {"reason": "invalid", "message": giving_up, "location": "file-00000000"},
            {"reason": "invalid", "location": "file-00000000",
             "message": "Error while reading data, error message: JSON parsing error in row "
                        "starting at position %d: No such field: colour." % pos}]}
    assert job["statistics"]["load"]["outputRows"] == "0"
    assert job["statistics"]["load"]["badRecords"] == "1"
    assert datos.table_rows() == []  # nothing of the job was loaded
    assert get_job(api, "bad_load").json()["status"] == job["status"]


@pytest.mark.parametrize("line,detail", [
    (b'{"contenido": "no id", "timestamp": "2024-01-14T14:00:00Z"}', "Missing required field"),
    (b'{"id": 7, "timestamp": "2024-01-14T14:00:00Z"}', "Cannot convert value to string"),
    (b'{"id": "a", "timestamp": "yesterday"}', "timestamp"),
    (b'{"id": "a", "timestamp": "2024-01-14T14:00:00.1234567Z"}', "timestamp"),
    (b'{"id": "a", "timestamp": "2024-01-14T14:00:00Z"', "JSON parsing error"),
    (b'["id", "a"]', "Expected a JSON object"),
    (b'{"id": "\xff", "timestamp": "2024-01-14T14:00:00Z"}', "UTF-8"),
    (b'{"id": ["a"], "timestamp": "2024-01-14T14:00:00Z"}', "id"),
])
def test_row_checks_against_the_table_schema(api, datos, line, detail):
    r = insert(api, job_body(), ndjson(ROWS[:1]) + line + b"\n")
    status = r.json()["status"]
    assert status["errorResult"]["reason"] == "invalid"
    row_err = status["errors"][1]["message"]
    assert ("row starting at position %d: " % len(ndjson(ROWS[:1]))) in row_err
    assert detail in row_err
    assert datos.table_rows() == []


def test_timestamp_text_forms(api, datos):
    forms = ["2024-01-14T14:00:00Z", "2024-01-14T14:00:00.5Z", "2024-01-14 14:00:00",
             "2024-01-14 14:00:00 UTC", "2024-01-14 14:00:00.000001+00:00",
             "2024-01-14T16:00:00+02:00", "2024-01-14T14:00", "2024-01-14", 1705240800]
    rows = [{"id": str(i), "timestamp": f} for i, f in enumerate(forms)]
    job = insert(api, job_body(), ndjson(rows)).json()
    assert "errorResult" not in job["status"], job["status"]
    got = {r["id"]: r["timestamp"] for r in datos.table_rows()}
    assert got == {"0": "1705240800000000", "1": "1705240800500000", "2": "1705240800000000",
                   "3": "1705240800000000", "4": "1705240800000001", "5": "1705240800000000",
                   "6": "1705240800000000", "7": "1705190400000000", "8": "1705240800000000"}


def test_ignore_unknown_values(api, datos):
    data = b'{"id": "a", "timestamp": "2024-01-14T14:00:00Z", "colour": "red"}\n'
    job = insert(api, job_body(ignoreUnknownValues=True), data).json()
    assert job["status"] == {"state": "DONE"}
    assert job["configuration"]["load"]["ignoreUnknownValues"] is True
    assert cells(datos) == [("a", None, "1705240800000000")]


def test_max_bad_records(api, datos):
    bad1 = b'{"id": "b1", "timestamp": "2024-01-14T14:00:00Z", "colour": 1}\n'
    bad2 = b'{"id": 2, "timestamp": "2024-01-14T14:00:00Z"}\n'
    data = ndjson(ROWS[:1]) + bad1 + ndjson(ROWS[1:2]) + bad2 + ndjson(ROWS[2:])
    # one tolerated, two found: the job gives up at the second
    job = insert(api, job_body("tolerate_1", maxBadRecords=1), data).json()
    assert job["status"]["errorResult"]["reason"] == "invalid"
    assert "Rows: 4; errors: 2." in job["status"]["errorResult"]["message"]
    assert job["statistics"]["load"]["badRecords"] == "2"
    assert datos.table_rows() == []
    # two tolerated: exactly the good rows go in, the bad ones are listed, no errorResult
    job = insert(api, job_body("tolerate_2", maxBadRecords=2), data).json()
    st = job["status"]
    assert st["state"] == "DONE" and "errorResult" not in st
    p1 = len(ndjson(ROWS[:1]))
    p2 = p1 + len(bad1) + len(ndjson(ROWS[1:2]))
    assert [e["message"].split(": ", 2)[1] for e in st["errors"]] == [
        "JSON parsing error in row starting at position %d" % p1,
        "JSON parsing error in row starting at position %d" % p2]
    assert job["statistics"]["load"]["outputRows"] == "3"
    assert job["statistics"]["load"]["badRecords"] == "2"
    assert job["configuration"]["load"]["maxBadRecords"] == 2
    assert [c[0] for c in cells(datos)] == ["1", "2", "3"]


def test_blank_lines_and_crlf(api, datos):
    data = b'\n{"id": "a", "timestamp": "2024-01-14T14:00:00Z"}\r\n\n  \n' \
           b'{"id": "b", "timestamp": "2024-01-14T14:00:00Z"}'
    job = insert(api, job_body(), data).json()
    assert job["status"] == {"state": "DONE"}
    assert job["statistics"]["load"]["outputRows"] == "2"
    empty = insert(api, job_body(), b"").json()
    assert empty["status"] == {"state": "DONE"}
    assert empty["statistics"]["load"]["outputRows"] == "0"


# dispositions and schemas -------------------------------------------------------------------

def test_write_dispositions(api, datos):
    insert(api, job_body(), ndjson(ROWS))
    job = insert(api, job_body(writeDisposition="WRITE_EMPTY"), ndjson(ROWS[:1])).json()
    assert job["status"]["errorResult"] == {
        "reason": "duplicate", "message": "Already Exists: Table %s:latam_dataset.datos" % P}
    assert len(datos.table_rows()) == 3
    job = insert(api, job_body(writeDisposition="WRITE_TRUNCATE"), ndjson(ROWS[1:2])).json()
    assert job["status"] == {"state": "DONE"}
    assert [c[0] for c in cells(datos)] == ["2"]
    q = datos.query("SELECT COUNT(*) AS n FROM `latam_dataset.datos`")
    assert q["rows"] == [{"f": [{"v": "1"}]}]
    t = api.get("/bigquery/v2/projects/%s/datasets/latam_dataset/tables/datos" % P).json()
    assert t["numRows"] == "1"
    assert t["timePartitioning"] == {"type": "DAY", "field": "timestamp"}  # kept
    job = insert(api, job_body(writeDisposition="WRITE_APPEND"), ndjson(ROWS[2:])).json()
    assert [c[0] for c in cells(datos)] == ["2", "3"]
    r = insert(api, job_body(writeDisposition="WRITE_SOMETIMES"), ndjson(ROWS))
    bq_err(r, 400, "INVALID_ARGUMENT", "invalid")


def test_create_dispositions(api, emu):
    emu.create_dataset("latam_dataset", location=LOC)
    fresh = dict(DATOS, tableId="fresh")
    never = job_body(createDisposition="CREATE_NEVER")
    never["configuration"]["load"]["destinationTable"] = fresh
    job = insert(api, never, ndjson(ROWS)).json()
    assert job["status"]["errorResult"] == {
        "reason": "notFound", "message": "Not found: Table %s:latam_dataset.fresh" % P}
    no_schema = job_body()
    no_schema["configuration"]["load"]["destinationTable"] = fresh
    job = insert(api, no_schema, ndjson(ROWS)).json()
    assert job["status"]["errorResult"] == {"reason": "invalid",
                                            "message": "No schema specified on job or table."}
    schema = {"fields": [{"name": "id", "type": "STRING", "mode": "REQUIRED"},
                         {"name": "n", "type": "INT64"},
                         {"name": "timestamp", "type": "TIMESTAMP", "mode": "REQUIRED"}]}
    bad = job_body(schema=schema, timePartitioning={"type": "DAY", "field": "timestamp"})
    bad["configuration"]["load"]["destinationTable"] = fresh
    job = insert(api, bad, b'{"id": "a", "n": "x", "timestamp": "2024-01-14T14:00:00Z"}\n').json()
    assert job["status"]["errorResult"]["reason"] == "invalid"
    # a failed job creates nothing
    bq_err(api.get("/bigquery/v2/projects/%s/datasets/latam_dataset/tables/fresh" % P), 404,
           "NOT_FOUND", "notFound")
    good = job_body(schema=schema, timePartitioning={"type": "DAY", "field": "timestamp"})
    good["configuration"]["load"]["destinationTable"] = fresh
    job = insert(api, good, b'{"id": "a", "n": "12", "timestamp": "2024-01-14T14:00:00Z"}\n'
                            b'{"id": "b", "n": 13, "timestamp": "2024-01-14T14:00:00Z"}\n').json()
    assert job["status"] == {"state": "DONE"}, job["status"]
    assert job["configuration"]["load"]["schema"]["fields"][1] == {
        "name": "n", "type": "INTEGER", "mode": "NULLABLE"}
    t = api.get("/bigquery/v2/projects/%s/datasets/latam_dataset/tables/fresh" % P).json()
    assert t["schema"] == job["configuration"]["load"]["schema"]
    assert t["timePartitioning"] == {"type": "DAY", "field": "timestamp"}
    assert [r["n"] for r in emu.table_rows(table="fresh")] == ["12", "13"]


def test_a_given_schema_must_match_the_table(api, datos):
    fields = [{"name": "id", "type": "STRING", "mode": "REQUIRED"},
              {"name": "contenido", "type": "STRING", "mode": "NULLABLE"},
              {"name": "timestamp", "type": "TIMESTAMP", "mode": "REQUIRED"},
              {"name": "message_id", "type": "STRING"},
              {"name": "publish_time", "type": "TIMESTAMP"}]
    job = insert(api, job_body(schema={"fields": fields}), ndjson(ROWS)).json()
    assert job["status"] == {"state": "DONE"}  # the same schema (modes defaulted) is fine
    cases = [
        (fields[:4], "Field publish_time is missing in new schema"),
        (fields + [{"name": "extra", "type": "STRING"}], "Cannot add fields (field: extra)"),
        ([dict(fields[0], type="INT64")] + fields[1:],
         "Field id has changed type from STRING to INTEGER"),
        ([dict(fields[0], mode="NULLABLE")] + fields[1:],
         "Field id has changed mode from REQUIRED to NULLABLE"),
    ]
    for given, problem in cases:
        job = insert(api, job_body(schema={"fields": given}), ndjson(ROWS)).json()
        assert job["status"]["errorResult"] == {
            "reason": "invalid",
            "message": "Provided Schema does not match Table %s:latam_dataset.datos. %s"
                       % (P, problem)}
    assert len(datos.table_rows()) == 3


# duplicates, quota, forced failures -----------------------------------------------------------

def test_reused_job_id_is_409_even_after_a_failed_job(api, datos):
    job = insert(api, job_body("load_g0"), b'{"id": 1}\n').json()
    assert job["status"]["errorResult"]["reason"] == "invalid"
    expected = "Already Exists: Job %s:%s.load_g0" % (P, LOC)
    bq_err(insert(api, job_body("load_g0"), ndjson(ROWS)), 409, "ALREADY_EXISTS", "duplicate",
           expected)
    # the resumable and metadata paths refuse it as well
    r = api.post(UPLOAD, job_body("load_g0"), params={"uploadType": "resumable"})
    bq_err(r, 409, "ALREADY_EXISTS", "duplicate", expected)
    bq_err(api.post(JOBS, job_body("load_g0")), 409, "ALREADY_EXISTS", "duplicate", expected)
    assert datos.table_rows() == []
    # the next generation goes in
    assert insert(api, job_body("load_g1"), ndjson(ROWS)).json()["status"] == {"state": "DONE"}
    assert len(datos.table_rows()) == 3
    # a query job's id is taken too
    q = datos.query("SELECT 1 AS x")
    bq_err(insert(api, job_body(q["jobReference"]["jobId"]), ndjson(ROWS)), 409,
           "ALREADY_EXISTS", "duplicate")


def test_retry_after_a_lost_answer_sees_409_then_the_job(api, datos):
    datos.add_fault(endpoint="bigquery.jobs.insert.multipart", action="commit_then_drop")
    with pytest.raises(Exception):
        datos.load_rows(ROWS, job_id="load_lost")
    r = insert(api, job_body("load_lost"), ndjson(ROWS))
    bq_err(r, 409, "ALREADY_EXISTS", "duplicate")
    j = get_job(api, "load_lost").json()
    assert j["status"] == {"state": "DONE"} and j["statistics"]["load"]["outputRows"] == "3"
    assert len(datos.table_rows()) == 3  # loaded once


def test_per_table_daily_load_quota(api, datos):
    datos.set_clock(1705276800 - 60)  # 2024-01-14T23:59:00Z
    datos.configure(load_jobs_per_table_per_day=2)
    assert insert(api, job_body("q1"), ndjson(ROWS[:1])).json()["status"] == {"state": "DONE"}
    failed = insert(api, job_body("q2"), b'{"id": 5}\n').json()  # failures count
    assert failed["status"]["errorResult"]["reason"] == "invalid"
    job = insert(api, job_body("q3"), ndjson(ROWS[1:2])).json()
    assert job["status"] == {
        "state": "DONE",
        "errorResult": {"reason": "quotaExceeded", "location": "load_job_per_table.long",
                        "message": "Quota exceeded: Your table exceeded quota for imports or "
                                   "query appends per table. For more information, see "
                                   "https://cloud.google.com/bigquery/docs/troubleshoot-quotas"},
        "errors": [{"reason": "quotaExceeded", "location": "load_job_per_table.long",
                    "message": job["status"]["errorResult"]["message"]}]}
    assert [c[0] for c in cells(datos)] == ["1"]
    c = datos.load_counters()
    assert c["limit"] == 2 and c["today"] == "2024-01-14"
    assert c["counters"] == [{"table": "%s:latam_dataset.datos" % P, "day": "2024-01-14",
                              "count": 2}]
    # another table has its own count
    datos.create_datos_table(table="other")
    other = job_body("q4")
    other["configuration"]["load"]["destinationTable"]["tableId"] = "other"
    assert insert(api, other, ndjson(ROWS[:1])).json()["status"] == {"state": "DONE"}
    # the emulator clock's next UTC day starts a new count
    datos.advance_clock(60)
    assert insert(api, job_body("q5"), ndjson(ROWS[2:])).json()["status"] == {"state": "DONE"}
    assert [c[0] for c in cells(datos)] == ["1", "3"]


def test_default_quota_is_1500(api, datos):
    assert datos.load_counters()["limit"] == 1500
    datos.set_load_counter("%s:latam_dataset.datos" % P, 1499)
    assert insert(api, job_body("at_1499"), ndjson(ROWS[:1])).json()["status"] == \
        {"state": "DONE"}
    job = insert(api, job_body("at_1500"), ndjson(ROWS[1:2])).json()
    assert job["status"]["errorResult"]["reason"] == "quotaExceeded"


@pytest.mark.parametrize("reason", ["backendError", "internalError", "rateLimitExceeded",
                                    "jobBackendError"])
def test_forced_job_failures(api, datos, reason):
    datos.add_fault(endpoint="bigquery.jobs.insert.multipart", action="job_error",
                    reason=reason)
    job = insert(api, job_body("forced_g0"), ndjson(ROWS)).json()
    assert job["status"]["state"] == "DONE"
    assert job["status"]["errorResult"]["reason"] == reason
    assert job["status"]["errorResult"]["message"]
    assert job["status"]["errors"] == [job["status"]["errorResult"]]
    assert datos.table_rows() == []
    # the loader's resubmission with a new job id goes through
    assert insert(api, job_body("forced_g1"), ndjson(ROWS)).json()["status"] == \
        {"state": "DONE"}
    assert len(datos.table_rows()) == 3


def test_forced_failure_with_a_timeline_and_message(api, datos):
    datos.configure(load_job_running_seconds=30)
    datos.add_fault(endpoint="bigquery.jobs.insert.resumable", action="job_error",
                    reason="rateLimitExceeded", message="Exceeded rate limits: too many "
                                                        "table update operations")
    job = datos.load_rows(ROWS, job_id="rl_g0", upload="resumable")
    assert job["status"] == {"state": "RUNNING"}
    datos.advance_clock(30)
    j = datos.get_job("rl_g0", LOC)
    assert j["status"]["errorResult"] == {
        "reason": "rateLimitExceeded",
        "message": "Exceeded rate limits: too many table update operations"}
    # on the request that finishes a resumable upload, too
    datos.configure(load_job_running_seconds=0)
    datos.add_fault(endpoint="bigquery.jobs.insert.resumable.upload", action="job_error",
                    reason="internalError")
    job = datos.load_rows(ROWS, job_id="ie_g0", upload="resumable")
    assert job["status"]["errorResult"]["reason"] == "internalError"
    assert datos.table_rows() == []


# request checks -------------------------------------------------------------------------------

def test_request_refusals(api, datos):
    good = ndjson(ROWS)
    r = api.req("POST", UPLOAD, raw=multipart(job_body(), good), params={"uploadType": "multipart"},
                headers={"Content-Type": "application/json"})
    bq_err(r, 400, "INVALID_ARGUMENT", "invalid")
    r = api.req("POST", UPLOAD, raw=multipart(job_body(), good).replace(b"\r\n", b"\n"),
                params={"uploadType": "multipart"},
                headers={"Content-Type": "multipart/related; boundary=bq_0d9f3c"})
    bq_err(r, 400, "INVALID_ARGUMENT", "invalid")
    one_part = b"--b\r\nContent-Type: application/json\r\n\r\n" + \
        json.dumps(job_body()).encode() + b"\r\n--b--\r\n"
    r = api.req("POST", UPLOAD, raw=one_part, params={"uploadType": "multipart"},
                headers={"Content-Type": "multipart/related; boundary=b"})
    bq_err(r, 400, "INVALID_ARGUMENT", "invalid")
    bq_err(insert(api, job_body(), good, json_type="text/plain"), 400, "INVALID_ARGUMENT",
           "invalid")
    bq_err(insert(api, b"{not json", good), 400, "INVALID_ARGUMENT", "invalid")
    r = api.req("POST", UPLOAD, raw=multipart(job_body(), good),
                headers={"Content-Type": "multipart/related; boundary=bq_0d9f3c"})
    bq_err(r, 400, "INVALID_ARGUMENT", "invalid",
           "Upload requests must include an uploadType URL parameter and a URL path beginning "
           "with /upload/")
    assert datos.count("bigquery.jobs.insert.upload") == 1
    bq_err(insert(api, dict(job_body(), colour=1), good), 400, "INVALID_ARGUMENT", "invalid",
           'Invalid JSON payload received. Unknown name "colour" at \'job\': Cannot find field.')
    bq_err(insert(api, job_body(colour=1), good), 400, "INVALID_ARGUMENT", "invalid")
    bq_err(insert(api, job_body(fieldDelimiter=","), good), 400, "INVALID_ARGUMENT", "invalid",
           "Only CSV imports may specify a field delimiter.")
    bq_err(insert(api, job_body("bad id!"), good), 400, "INVALID_ARGUMENT", "invalid")
    bq_err(insert(api, job_body(maxBadRecords=-1), good), 400, "INVALID_ARGUMENT", "invalid")
    no_dest = job_body()
    del no_dest["configuration"]["load"]["destinationTable"]
    bq_err(insert(api, no_dest, good), 400, "INVALID_ARGUMENT", "invalid")
    csv = job_body()
    del csv["configuration"]["load"]["sourceFormat"]  # BigQuery's default is CSV
    bq_err(insert(api, csv, good), 501, "UNIMPLEMENTED", "notImplemented")
    bq_err(insert(api, job_body(autodetect=True), good), 501, "UNIMPLEMENTED", "notImplemented")
    assert insert(api, job_body(autodetect=False), good).status_code == 200
    other = job_body()
    other["configuration"]["load"]["destinationTable"]["datasetId"] = "nope"
    bq_err(insert(api, other, good), 404, "NOT_FOUND", "notFound",
           "Not found: Dataset %s:nope was not found in location US" % P)
    bq_err(insert(api, job_body(location="US"), good), 404, "NOT_FOUND", "notFound",
           "Not found: Dataset %s:latam_dataset was not found in location US" % P)
    assert insert(api, job_body(location=LOC), good).status_code == 200
    bq_err(api.post(JOBS, dict(job_body(), configuration={"load": dict(
        job_body()["configuration"]["load"], sourceUris=["gs://b/f.json"])})), 501,
        "UNIMPLEMENTED", "notImplemented")
    assert len(datos.table_rows()) == 6  # the two accepted loads


def test_getqueryresults_refuses_a_load_job(api, datos):
    insert(api, job_body("a_load"), ndjson(ROWS))
    r = api.get("/bigquery/v2/projects/%s/queries/a_load" % P, params={"location": LOC})
    bq_err(r, 400, "INVALID_ARGUMENT", "invalid")


# resumable uploads ------------------------------------------------------------------------------

def start_session(api, meta, length=None):
    headers = {"X-Upload-Content-Type": "application/octet-stream"}
    if length is not None:
        headers["X-Upload-Content-Length"] = str(length)
    r = api.req("POST", UPLOAD, body=meta, params={"uploadType": "resumable"}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.content == b""
    loc = r.headers["Location"]
    assert loc.startswith(api.base + UPLOAD + "?uploadType=resumable&upload_id=")
    assert r.headers["X-GUploader-UploadID"] == loc.split("upload_id=")[1]
    return loc


def put(api, url, data=b"", content_range=None):
    headers = {"Content-Range": content_range} if content_range else {}
    return api.s.put(url, data=data, headers=headers, allow_redirects=False, timeout=30)


def big_rows(n):
    return [{"id": "id-%05d" % i, "contenido": "x" * 200,
             "timestamp": "2024-01-14T14:00:00Z"} for i in range(n)]


def test_resumable_single_put(api, datos):
    data = ndjson(ROWS)
    url = start_session(api, job_body("resumable_1"), len(data))
    assert datos.table_rows() == []
    r = put(api, url, data)
    assert r.status_code == 200, r.text
    assert r.json()["jobReference"]["jobId"] == "resumable_1"
    assert r.json()["status"] == {"state": "DONE"}
    assert len(datos.table_rows()) == 3
    # after completion a probe answers the job again, never a second load
    r = put(api, url, b"", "bytes */%d" % len(data))
    assert r.status_code == 200 and r.json()["jobReference"]["jobId"] == "resumable_1"
    assert len(datos.table_rows()) == 3
    assert datos.count("bigquery.jobs.insert.resumable") == 1
    assert datos.count("bigquery.jobs.insert.resumable.upload") == 2


def test_resumable_chunks_probe_and_resume(api, datos):
    data = ndjson(big_rows(3000))  # about 750 KB: three 256 KiB chunks and a tail
    chunk = 256 * 1024
    assert len(data) > 2 * chunk
    url = start_session(api, job_body("chunked_1"))
    r = put(api, url, b"", "bytes */*")
    assert r.status_code == 308 and "Range" not in r.headers  # nothing yet
    r = put(api, url, data[:chunk], "bytes 0-%d/*" % (chunk - 1))
    assert r.status_code == 308 and r.headers["Range"] == "bytes=0-%d" % (chunk - 1)
    # a chunk that is not a multiple of 256 KiB: only whole units are kept
    part = data[chunk:chunk + chunk + 1000]
    r = put(api, url, part, "bytes %d-%d/*" % (chunk, chunk + len(part) - 1))
    assert r.status_code == 308 and r.headers["Range"] == "bytes=0-%d" % (2 * chunk - 1)
    # a gap is refused; a probe says where to resume
    r = put(api, url, data[3 * chunk:4 * chunk], "bytes %d-%d/*" % (3 * chunk, 4 * chunk - 1))
    bq_err(r, 400, "INVALID_ARGUMENT", "invalid")
    r = put(api, url, b"", "bytes */%d" % len(data))
    assert r.status_code == 308 and r.headers["Range"] == "bytes=0-%d" % (2 * chunk - 1)
    # a non-final chunk under 256 KiB is refused
    r = put(api, url, data[2 * chunk:2 * chunk + 1000], "bytes %d-%d/*"
            % (2 * chunk, 2 * chunk + 999))
    bq_err(r, 400, "INVALID_ARGUMENT", "invalid")
    assert "262144" in r.json()["error"]["message"]
    # resending bytes already received is harmless
    r = put(api, url, data[chunk:2 * chunk], "bytes %d-%d/*" % (chunk, 2 * chunk - 1))
    assert r.status_code == 308 and r.headers["Range"] == "bytes=0-%d" % (2 * chunk - 1)
    assert datos.table_rows() == []
    r = put(api, url, data[2 * chunk:], "bytes %d-%d/%d" % (2 * chunk, len(data) - 1, len(data)))
    assert r.status_code == 200, r.text
    assert r.json()["statistics"]["load"]["inputFileBytes"] == str(len(data))
    rows = datos.table_rows()
    assert [r["id"] for r in rows] == ["id-%05d" % i for i in range(3000)]


def test_resumable_harness_chunking(datos):
    rows = big_rows(2500)
    job = datos.load_rows(rows, job_id="harness_chunks", upload="resumable",
                          chunk_size=256 * 1024)
    assert job["status"] == {"state": "DONE"}
    assert len(datos.table_rows()) == 2500
    assert datos.count("bigquery.jobs.insert.resumable.upload") == 3


def test_resumable_errors(api, datos):
    data = ndjson(ROWS)
    url = start_session(api, job_body("resumable_len"), len(data) + 1)
    r = put(api, url, data)
    bq_err(r, 400, "INVALID_ARGUMENT", "invalid")  # not what X-Upload-Content-Length said
    r = put(api, url.replace("upload_id=", "upload_id=x"), data)
    bq_err(r, 404, "NOT_FOUND", "notFound")
    url = start_session(api, job_body())
    r = put(api, url, data, "bytes 0-%d/%d" % (len(data), len(data)))  # length mismatch
    bq_err(r, 400, "INVALID_ARGUMENT", "invalid")
    r = put(api, url, data, "bytes=0-1/2")
    bq_err(r, 400, "INVALID_ARGUMENT", "invalid")
    # the job id is checked again when the data is complete
    url = start_session(api, job_body("raced"))
    insert(api, job_body("raced"), data)
    bq_err(put(api, url, data), 409, "ALREADY_EXISTS", "duplicate")
    bq_err(put(api, url, b"", "bytes */%d" % len(data)), 409, "ALREADY_EXISTS", "duplicate")
    assert len(datos.table_rows()) == 3


# tabledata.list, control, reset ----------------------------------------------------------------

def test_tabledata_list_paging(api, datos):
    datos.load_rows(big_rows(25))
    path = "/bigquery/v2/projects/%s/datasets/latam_dataset/tables/datos/data" % P
    r = api.get(path, params={"maxResults": 10}).json()
    assert r["kind"] == "bigquery#tableDataList" and r["totalRows"] == "25"
    assert len(r["rows"]) == 10 and r["pageToken"] and r["etag"]
    assert r["rows"][0]["f"][2]["v"] == "1.7052408E9"  # float seconds unless asked
    ids = [row["f"][0]["v"] for row in r["rows"]]
    while "pageToken" in r:
        r = api.get(path, params={"maxResults": 10, "pageToken": r["pageToken"],
                                  "formatOptions.useInt64Timestamp": "true"}).json()
        ids += [row["f"][0]["v"] for row in r["rows"]]
    assert ids == ["id-%05d" % i for i in range(25)]
    assert r["rows"][-1]["f"][2]["v"] == "1705240800000000"
    r = api.get(path, params={"startIndex": 24, "selectedFields": "timestamp,id"}).json()
    assert r["rows"] == [{"f": [{"v": "1.7052408E9"}, {"v": "id-00024"}]}]
    assert "pageToken" not in r
    empty = api.get(path.replace("datos", "nope")).status_code
    assert empty == 404


def test_control_job_views(api, datos):
    datos.configure(load_job_pending_seconds=10)
    insert(api, job_body("pending_one"), ndjson(ROWS))
    jobs = datos.jobs()
    assert [(j["jobId"], j["jobType"], j["state"]) for j in jobs] == [
        ("pending_one", "LOAD", "PENDING")]
    assert jobs[0]["destinationTable"] == "%s:latam_dataset.datos" % P
    one = datos._call("GET", "/_emulator/bigquery/jobs/%s/pending_one" % P)
    assert one["state"] == "PENDING" and one["job"]["status"] == {"state": "PENDING"}
    datos.advance_clock(10)
    assert datos._call("GET", "/_emulator/bigquery/jobs/%s/pending_one" % P)["state"] == "DONE"
    assert len(datos.table_rows()) == 3
    assert api.get("/_emulator/bigquery/jobs/%s/nope" % P).status_code == 404


def test_reset_clears_load_state(api, datos):
    datos.configure(load_job_pending_seconds=60)
    insert(api, job_body("before_reset"), ndjson(ROWS))
    datos.reset()
    assert datos.jobs() == []
    assert datos.load_counters()["counters"] == []
    assert api.get("/_emulator/config").json()["load_job_pending_seconds"] == 0
    datos.create_dataset("latam_dataset", location=LOC)
    datos.create_datos_table()
    datos.advance_clock(120)
    assert datos.table_rows() == []  # the pending job did not come back
    assert insert(api, job_body("before_reset"), ndjson(ROWS)).status_code == 200


def test_auth_applies_to_uploads(api, datos):
    datos.configure(require_auth=True)
    r = insert(api, job_body(), ndjson(ROWS))
    bq_err_401 = r.json()["error"]
    assert r.status_code == 401 and bq_err_401["errors"][0]["reason"] == "required"
    job = datos.load_rows(ROWS, job_id="with_auth")  # the harness signs a JWT
    assert job["status"] == {"state": "DONE"}
    job = datos.load_rows(ROWS, job_id="with_auth_resumable", upload="resumable")
    assert job["status"] == {"state": "DONE"}


def test_ten_thousand_rows_in_one_job(datos):
    rows = [{"id": "id-%05d" % i, "contenido": "dato %d" % i,
             "timestamp": "2024-01-14T14:%02d:%02dZ" % (i // 60 % 60, i % 60),
             "message_id": str(11000000000000000 + i),
             "publish_time": "2024-01-14T15:00:00.000001Z"} for i in range(10_000)]
    job = datos.load_rows(rows, job_id="big_one")
    assert job["statistics"]["load"]["outputRows"] == "10000"
    q = datos.query("SELECT COUNT(DISTINCT id) AS n, MIN(publish_time) AS p "
                    "FROM `latam_dataset.datos`", formatOptions={"useInt64Timestamp": True})
    assert q["rows"] == [{"f": [{"v": "10000"}, {"v": "1705244400000001"}]}]


# persistence ------------------------------------------------------------------------------------

def test_jobs_survive_a_restart():
    work = os.path.join(TEST_TMP, "emulator-load-persist")
    shutil.rmtree(work, ignore_errors=True)
    data = os.path.join(work, "data")
    emu = Emulator(work, extra_args=("--data-dir", data, "--load-jobs-per-table-per-day", "3"))
    emu.start()
    try:
        emu.create_dataset("latam_dataset", location=LOC)
        emu.create_datos_table()
        emu.load_rows(ROWS[:1], job_id="done_before")
        failed = emu.load_rows([{"id": 1}], job_id="failed_before")
        assert failed["status"]["errorResult"]["reason"] == "invalid"
        emu.configure(load_job_running_seconds=60)
        pending = emu.load_rows(ROWS[1:], job_id="running_at_stop")
        assert pending["status"] == {"state": "RUNNING"}
        q = emu.query("SELECT id FROM `latam_dataset.datos`", location=LOC)
        clock = emu.now()
    finally:
        emu.stop()
    emu = Emulator(work, extra_args=("--data-dir", data, "--load-jobs-per-table-per-day", "3",
                                     "--load-job-running-seconds", "60"))
    emu.start()
    try:
        emu.set_clock(clock)
        assert emu.get_job("done_before", LOC)["statistics"]["load"]["outputRows"] == "1"
        assert emu.get_job("failed_before", LOC)["status"]["errorResult"]["reason"] == \
            "invalid"
        assert emu.get_job("running_at_stop", LOC)["status"] == {"state": "RUNNING"}
        assert [r["id"] for r in emu.table_rows()] == ["1"]
        emu.advance_clock(60)
        j = emu.get_job("running_at_stop", LOC)
        assert j["status"] == {"state": "DONE"}, j["status"]
        assert [r["id"] for r in emu.table_rows()] == ["1", "2", "3"]
        # ids stay taken, the day's count goes on, query jobs answer again
        with pytest.raises(Exception, match="409"):
            emu.load_rows(ROWS, job_id="failed_before")
        quota = emu.load_rows(ROWS, job_id="fourth")
        assert quota["status"]["errorResult"]["reason"] == "quotaExceeded"
        r = emu._api("GET", "/projects/%s/queries/%s?location=%s"
                     % (P, q["jobReference"]["jobId"], LOC))
        assert r["rows"] == [{"f": [{"v": "1"}]}] and r["jobComplete"] is True
        assert not [f for f in os.listdir(data) if f.endswith(".ndjson")]  # data consumed
    finally:
        emu.stop()


def test_a_string_longer_than_its_max_length_rejects_the_row(api, emu):
    """STRING(L) columns: BigQuery refuses the row, by position, in loads and insertAll."""
    emu.reset()
    emu.create_dataset("latam_dataset", location=LOC)
    emu._api("POST", "/projects/%s/datasets/latam_dataset/tables" % P,
             {"tableReference": {"projectId": P, "datasetId": "latam_dataset", "tableId": "datos"},
              "schema": {"fields": [{"name": "id", "type": "STRING", "mode": "REQUIRED",
                                     "maxLength": "8"},
                                    {"name": "contenido", "type": "STRING"},
                                    {"name": "timestamp", "type": "TIMESTAMP",
                                     "mode": "REQUIRED"}]}})
    good = b'{"id": "12345678", "timestamp": "2024-01-14T14:00:00Z"}\n'
    bad = b'{"id": "123456789", "timestamp": "2024-01-14T14:00:00Z"}\n'
    r = insert(api, job_body(), good + bad)
    status = r.json()["status"]
    assert status["errorResult"]["reason"] == "invalid"
    assert ("row starting at position %d: Field id: STRING(8) has maximum length 8 but got a "
            "value with length 9" % len(good)) in status["errors"][1]["message"]
    assert emu.table_rows() == []
    r = insert(api, job_body(), good)
    assert "errorResult" not in r.json()["status"]
    assert [x["id"] for x in emu.table_rows()] == ["12345678"]
