"""jobs.query / getQueryResults / jobs.get, the product's read queries, TIMESTAMP cells,
paging, the location rule, bytes processed and billed (docs/google-apis.md 2.3-2.5, 2.7)."""
import datetime

import pytest

P = "datos-local"
T = "`datos-local.latam_dataset.datos`"
QUALIFY = ("QUALIFY ROW_NUMBER() OVER (PARTITION BY id ORDER BY timestamp DESC, "
           "publish_time DESC, message_id DESC) = 1\n")
PRODUCT_LOOKBACK = ("SELECT id, contenido, timestamp FROM %s\n"
                    "WHERE timestamp >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), "
                    "INTERVAL @lookback_days DAY)\n" % T + QUALIFY +
                    "ORDER BY timestamp DESC, id ASC\nLIMIT @max_rows")
PRODUCT_ALL = ("SELECT id, contenido, timestamp FROM %s\nWHERE TRUE\n" % T + QUALIFY +
               "ORDER BY timestamp DESC, id ASC\nLIMIT @max_rows")
PRODUCT_WATERMARK = ("SELECT id, contenido, timestamp FROM %s\nWHERE timestamp >= @watermark\n"
                     % T + QUALIFY + "ORDER BY timestamp DESC, id ASC\nLIMIT @max_rows")


def iso(epoch):
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(epoch):
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime(
        "%Y-%m-%d %H:%M:%S.%f+00:00")


def cells(resp):
    return [[c["v"] for c in row["f"]] for row in resp.get("rows", [])]


def ok(r):
    assert r.status_code == 200, r.text
    return r.json()


def error(r, code, reason):
    assert r.status_code == code, r.text
    err = r.json()["error"]
    assert err["errors"][0]["reason"] == reason, err
    assert err["code"] == code
    return err


@pytest.fixture
def product_rows(datos):
    """Versions of several ids around the emulator's now; returns (now, expected answer)."""
    now = int(datos.now())
    h = 3600
    rows = [
        {"id": "a", "contenido": "a-old", "timestamp": iso(now - 2 * h), "message_id": "m1",
         "publish_time": iso(now - 2 * h)},
        {"id": "a", "contenido": "a-new", "timestamp": iso(now - 1 * h), "message_id": "m2",
         "publish_time": iso(now - 1 * h)},
        # same timestamp: the later publish_time wins
        {"id": "b", "contenido": "b-early-publish", "timestamp": iso(now - 3 * h),
         "message_id": "m9", "publish_time": iso(now - 3 * h + 5)},
        {"id": "b", "contenido": "b-late-publish", "timestamp": iso(now - 3 * h),
         "message_id": "m3", "publish_time": iso(now - 3 * h + 10)},
        # same timestamp and publish_time: the greater message_id wins
        {"id": "c", "contenido": "c-m1", "timestamp": iso(now - 3 * h), "message_id": "m1",
         "publish_time": iso(now - 3 * h)},
        {"id": "c", "contenido": "c-m2", "timestamp": iso(now - 3 * h), "message_id": "m2",
         "publish_time": iso(now - 3 * h)},
        # ties on timestamp are ordered by id in byte order: "B" < "b" < "c" < "e" < "é"
        {"id": "B", "contenido": None, "timestamp": iso(now - 3 * h)},
        {"id": "e", "contenido": "e", "timestamp": iso(now - 3 * h)},
        {"id": "\u00e9", "contenido": "\u00e9 acc", "timestamp": iso(now - 3 * h)},
        # older than a 7-day lookback
        {"id": "d", "contenido": "d-old", "timestamp": iso(now - 10 * 86400)},
    ]
    datos.insert_rows(rows)
    recent = [["a", "a-new"], ["B", None], ["b", "b-late-publish"], ["c", "c-m2"], ["e", "e"],
              ["\u00e9", "\u00e9 acc"]]
    return now, recent


def test_product_query_lookback(api, product_rows):
    now, recent = product_rows
    r = ok(api.query(PRODUCT_LOOKBACK, {"lookback_days": ("INT64", 7), "max_rows": ("INT64", 100)},
                     formatOptions={"useInt64Timestamp": True}, location="southamerica-east1"))
    assert r["kind"] == "bigquery#queryResponse"
    assert r["jobComplete"] is True
    assert r["schema"] == {"fields": [
        {"name": "id", "type": "STRING", "mode": "NULLABLE"},
        {"name": "contenido", "type": "STRING", "mode": "NULLABLE"},
        {"name": "timestamp", "type": "TIMESTAMP", "mode": "NULLABLE"}]}
    got = cells(r)
    assert [g[:2] for g in got] == recent
    assert got[0][2] == str((now - 3600) * 1_000_000)
    assert r["totalRows"] == str(len(recent))
    assert "pageToken" not in r
    ref = r["jobReference"]
    assert ref["projectId"] == P and ref["location"] == "southamerica-east1"
    assert ref["jobId"].startswith("job_")


def test_product_query_where_true_and_limit(api, product_rows):
    now, recent = product_rows
    r = ok(api.query(PRODUCT_ALL, {"max_rows": ("INT64", 100)}))
    assert [g[:2] for g in cells(r)] == recent + [["d", "d-old"]]
    r = ok(api.query(PRODUCT_ALL, {"max_rows": ("INT64", 2)}))
    assert [g[:2] for g in cells(r)] == recent[:2]
    assert r["totalRows"] == "2"


@pytest.mark.parametrize("form", ["canonical", "rfc3339"])
def test_product_query_watermark(api, product_rows, form):
    now, recent = product_rows
    wm = now - 3 * 3600
    text = canonical(wm) if form == "canonical" else iso(wm)
    r = ok(api.query(PRODUCT_WATERMARK, {"watermark": ("TIMESTAMP", text),
                                         "max_rows": ("INT64", 100)}))
    assert [g[:2] for g in cells(r)] == recent
    r = ok(api.query(PRODUCT_WATERMARK, {"watermark": ("TIMESTAMP", iso(now - 2 * 3600 + 1)),
                                         "max_rows": ("INT64", 100)}))
    assert [g[:2] for g in cells(r)] == [["a", "a-new"]]


def test_product_query_sees_clock(api, emu, product_rows):
    # CURRENT_TIMESTAMP() is the emulator clock: 7 days minus 2 hours later, the 7-day
    # window starts at now-2h, so only "a" is left.
    emu.advance_clock(7 * 86400 - 7200)
    r = ok(api.query(PRODUCT_LOOKBACK, {"lookback_days": ("INT64", 7),
                                        "max_rows": ("INT64", 100)}))
    assert [g[0] for g in cells(r)] == ["a"]


def test_timestamp_cells_float_and_int64(api, datos):
    datos.insert_rows([
        {"id": "1", "timestamp": "2024-01-14T14:00:00Z"},
        {"id": "2", "timestamp": "2024-01-14 14:00:00.123456 UTC"},
        {"id": "3", "timestamp": "2024-01-14T11:00:00.5-03:00"},
        {"id": "4", "timestamp": 1705240800.25},
    ])
    q = "SELECT id, timestamp FROM %s ORDER BY id" % T
    r = ok(api.query(q))
    assert cells(r) == [["1", "1.7052408E9"], ["2", "1.705240800123456E9"],
                        ["3", "1.7052408005E9"], ["4", "1.70524080025E9"]]
    r = ok(api.query(q, formatOptions={"useInt64Timestamp": True}))
    assert cells(r) == [["1", "1705240800000000"], ["2", "1705240800123456"],
                        ["3", "1705240800500000"], ["4", "1705240800250000"]]
    job = r["jobReference"]
    base = "/bigquery/v2/projects/%s/queries/%s" % (P, job["jobId"])
    g = ok(api.get(base, params={"location": job["location"]}))
    assert cells(g)[0][1] == "1.7052408E9"
    g = ok(api.get(base, params={"location": job["location"],
                                 "formatOptions.useInt64Timestamp": "true"}))
    assert cells(g)[0][1] == "1705240800000000"
    assert g["kind"] == "bigquery#getQueryResultsResponse"
    assert "etag" in g and "queryId" not in g


def test_java_double_formatter():
    from gcpemu.bqtypes import java_double
    cases = {1705240800.0: "1.7052408E9", 1705240800.123456: "1.705240800123456E9",
             0.0: "0.0", 1.0: "1.0", 86400.0: "86400.0", 1e7: "1.0E7", 9999999.5: "9999999.5",
             0.001: "0.001", 0.0001: "1.0E-4", -1.5e9: "-1.5E9", 123.25: "123.25",
             2e9: "2.0E9", 1.5e-7: "1.5E-7", float("nan"): "NaN", float("inf"): "Infinity"}
    for v, s in cases.items():
        assert java_double(v) == s, (v, java_double(v), s)


def test_incomplete_then_get_query_results(api, emu, datos):
    datos.insert_rows([{"id": "x", "timestamp": "2024-01-14T14:00:00Z"}])
    emu.configure(query_incomplete_polls=2)
    r = ok(api.query("SELECT id FROM %s" % T))
    assert set(r) == {"kind", "jobReference", "jobComplete"}
    assert r["jobComplete"] is False and r["kind"] == "bigquery#queryResponse"
    job = r["jobReference"]
    path = "/bigquery/v2/projects/%s/queries/%s" % (P, job["jobId"])
    jpath = "/bigquery/v2/projects/%s/jobs/%s" % (P, job["jobId"])
    loc = {"location": job["location"]}
    g = ok(api.get(path, params=loc))
    assert set(g) == {"kind", "jobReference", "jobComplete"}
    assert g["jobComplete"] is False and g["kind"] == "bigquery#getQueryResultsResponse"
    g = ok(api.get(path, params=loc))
    assert g["jobComplete"] is True and cells(g) == [["x"]] and g["totalRows"] == "1"
    j = ok(api.get(jpath, params=loc))
    assert j["status"] == {"state": "DONE"}
    # a second job: RUNNING on jobs.get until its answers are used up
    r = ok(api.query("SELECT id FROM %s" % T))
    jpath = "/bigquery/v2/projects/%s/jobs/%s" % (P, r["jobReference"]["jobId"])
    j = ok(api.get(jpath, params=loc))
    assert j["kind"] == "bigquery#job" and j["status"] == {"state": "RUNNING"}
    assert "endTime" not in j["statistics"]
    j = ok(api.get(jpath, params=loc))
    assert j["status"]["state"] == "DONE"
    assert j["configuration"]["jobType"] == "QUERY"
    assert j["statistics"]["endTime"] >= j["statistics"]["creationTime"]


def test_paging(api, datos):
    datos.insert_rows([{"id": "%02d" % i, "timestamp": "2024-01-14T14:00:00Z"}
                       for i in range(25)])
    r = ok(api.query("SELECT id FROM %s ORDER BY id" % T, maxResults=10))
    assert r["totalRows"] == "25" and len(r["rows"]) == 10 and r["pageToken"]
    ids = [c[0] for c in cells(r)]
    job = r["jobReference"]
    path = "/projects/%s/queries/%s" % (P, job["jobId"])
    token = r["pageToken"]
    pages = 1
    while token:
        g = ok(api.get(path, params={"location": job["location"], "maxResults": 10,
                                     "pageToken": token}))
        assert g["totalRows"] == "25"
        ids += [c[0] for c in cells(g)]
        token = g.get("pageToken")
        pages += 1
    assert pages == 3
    assert ids == ["%02d" % i for i in range(25)]
    g = ok(api.get(path, params={"location": job["location"], "startIndex": 20}))
    assert [c[0] for c in cells(g)] == ["20", "21", "22", "23", "24"]
    assert "pageToken" not in g
    error(api.get(path, params={"location": job["location"], "pageToken": "garbage"}), 400,
          "invalid")


def test_empty_result_omits_rows(api, datos):
    r = ok(api.query("SELECT id FROM %s WHERE id = 'none'" % T))
    assert "rows" not in r and r["totalRows"] == "0" and "pageToken" not in r


def test_location_rule(api, emu, datos):
    r = ok(api.query("SELECT 1 AS one"))
    assert r["jobReference"]["location"] == "US"
    us_job = r["jobReference"]["jobId"]
    ok(api.get("/projects/%s/queries/%s" % (P, us_job)))  # US needs no location
    ok(api.get("/projects/%s/jobs/%s" % (P, us_job)))
    r = ok(api.query("SELECT id FROM %s" % T))
    job = r["jobReference"]
    assert job["location"] == "southamerica-east1"  # the dataset's
    for path in ("/projects/%s/queries/%s" % (P, job["jobId"]),
                 "/projects/%s/jobs/%s" % (P, job["jobId"])):
        err = error(api.get(path), 404, "notFound")
        assert err["message"] == "Not found: Job %s:%s" % (P, job["jobId"])
        error(api.get(path, params={"location": "US"}), 404, "notFound")
        ok(api.get(path, params={"location": "southamerica-east1"}))
    err = error(api.query("SELECT id FROM %s" % T, location="US"), 404, "notFound")
    assert err["message"] == ("Not found: Dataset %s:latam_dataset was not found in location US"
                              % P)
    ok(api.query("SELECT id FROM %s" % T, location="southamerica-east1"))
    error(api.get("/projects/%s/jobs/job_nope" % P), 404, "notFound")


def _sbytes(s):
    return 0 if s is None else 2 + len(s.encode("utf-8"))


def test_bytes_processed_and_partition_pruning(api, datos):
    rows = [
        {"id": "a", "contenido": "xx", "timestamp": "2024-01-13T10:00:00Z"},
        {"id": "bb", "contenido": None, "timestamp": "2024-01-14T10:00:00Z"},
        {"id": "ccc", "contenido": "yyyy", "timestamp": "2024-01-14T23:59:59.999999Z"},
        {"id": "d", "contenido": "z", "timestamp": "2024-01-15T00:00:00Z",
         "publish_time": "2024-01-15T00:00:01Z"},
    ]
    datos.insert_rows(rows)

    def bytes_of(sql, params=None):
        r = ok(api.query(sql, params))
        return int(r["totalBytesProcessed"])

    ids = [_sbytes(r["id"]) for r in rows]
    cont = [_sbytes(r["contenido"]) for r in rows]
    # no filter: every partition, only referenced columns
    assert bytes_of("SELECT id FROM %s" % T) == sum(ids)
    assert bytes_of("SELECT id, contenido FROM %s" % T) == sum(ids) + sum(cont)
    assert bytes_of("SELECT COUNT(*) FROM %s" % T) == 0
    assert bytes_of("SELECT * FROM %s" % T) == sum(ids) + sum(cont) + 4 * 8 + 8
    # timestamp >= 2024-01-14: partitions 14 and 15 kept (rows 1..3)
    kept = sum(ids[1:]) + 3 * 8
    assert bytes_of("SELECT id FROM %s WHERE timestamp >= TIMESTAMP '2024-01-14'" % T) == kept
    assert bytes_of("SELECT id FROM %s WHERE timestamp >= @t" % T,
                    {"t": ("TIMESTAMP", "2024-01-14 00:00:00.000000+00:00")}) == kept
    assert bytes_of("SELECT id FROM %s WHERE TIMESTAMP '2024-01-14' <= timestamp "
                    "AND id != 'q'" % T) == kept
    # a single day
    assert bytes_of("SELECT id FROM %s WHERE timestamp BETWEEN TIMESTAMP '2024-01-14 01:00:00' "
                    "AND TIMESTAMP '2024-01-14 02:00:00'" % T) == sum(ids[1:3]) + 2 * 8
    assert bytes_of("SELECT id FROM %s WHERE timestamp < TIMESTAMP '2024-01-14'" % T) == \
        ids[0] + 8
    # not prunable: function over the column, OR at top level
    assert bytes_of("SELECT id FROM %s WHERE TIMESTAMP_TRUNC(timestamp, DAY) >= "
                    "TIMESTAMP '2024-01-15'" % T) == sum(ids) + 4 * 8
    assert bytes_of("SELECT id FROM %s WHERE timestamp >= TIMESTAMP '2024-01-15' OR id = 'a'"
                    % T) == sum(ids) + 4 * 8
    # CURRENT_TIMESTAMP-relative bounds prune too (all rows are long ago: nothing kept)
    assert bytes_of("SELECT id FROM %s WHERE timestamp >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), "
                    "INTERVAL 1 DAY)" % T) == 0


def test_bytes_billed_minimum_and_limit(api, datos):
    datos.insert_rows([{"id": "a", "timestamp": "2024-01-14T10:00:00Z"}])
    r = ok(api.query("SELECT id FROM %s" % T, maximumBytesBilled="10485760"))
    job = r["jobReference"]
    j = ok(api.get("/projects/%s/jobs/%s" % (P, job["jobId"]),
                   params={"location": job["location"]}))
    assert j["statistics"]["query"]["totalBytesBilled"] == "10485760"
    assert j["statistics"]["query"]["totalBytesProcessed"] == "3"
    assert j["statistics"]["totalBytesProcessed"] == "3"
    assert j["configuration"]["query"]["maximumBytesBilled"] == "10485760"
    err = error(api.query("SELECT id FROM %s" % T, maximumBytesBilled="10485759"), 400,
                "bytesBilledLimitExceeded")
    assert err["message"] == ("Query exceeded limit for bytes billed: 10485759. 10485760 or "
                              "higher required.")
    assert err["status"] == "INVALID_ARGUMENT"
    # a query with no table bills nothing
    ok(api.query("SELECT 1", maximumBytesBilled="1"))


def test_bytes_billed_rounds_up_to_mib(api, datos):
    big = "x" * (1024 * 1024)
    datos.insert_rows([{"id": str(i), "contenido": big, "timestamp": "2024-01-14T10:00:00Z"}
                       for i in range(12)])
    r = ok(api.query("SELECT contenido FROM %s" % T, maxResults=1))
    processed = int(r["totalBytesProcessed"])
    assert processed == 12 * (2 + len(big))
    mib = 1024 * 1024
    billed = -(-processed // mib) * mib
    assert billed == 13 * mib
    err = error(api.query("SELECT contenido FROM %s" % T, maximumBytesBilled=str(billed - 1)),
                400, "bytesBilledLimitExceeded")
    assert "%d or higher required" % billed in err["message"]
    ok(api.query("SELECT contenido FROM %s" % T, maximumBytesBilled=str(billed), maxResults=1))
    # counted at the emulator: the jobs that ran (not the refused one), with what they cost
    assert datos.query_bytes() == {"jobs": 2, "processed": 2 * processed, "billed": 2 * billed}


def test_billed_function():
    from gcpemu.bigquery import billed_bytes
    mib = 1024 * 1024
    assert billed_bytes(0, 1) == 10 * mib
    assert billed_bytes(0, 0) == 0
    assert billed_bytes(10 * mib + 1, 1) == 11 * mib
    assert billed_bytes(30 * mib, 1) == 30 * mib


def test_page_cap_10mb(api, datos):
    big = "y" * (1024 * 1024)
    datos.insert_rows([{"id": "%02d" % i, "contenido": big, "timestamp": "2024-01-14T10:00:00Z"}
                       for i in range(12)])
    r = ok(api.query("SELECT id, contenido FROM %s ORDER BY id" % T))
    assert r["totalRows"] == "12"
    assert 0 < len(r["rows"]) < 12 and r["pageToken"]


def test_request_id_returns_same_job(api, datos):
    a = ok(api.query("SELECT id FROM %s" % T, requestId="5b0c9d2e-6a0e-4f1c-9a55-5e7f6c1d2b3a"))
    b = ok(api.query("SELECT id FROM %s" % T, requestId="5b0c9d2e-6a0e-4f1c-9a55-5e7f6c1d2b3a"))
    c = ok(api.query("SELECT id FROM %s" % T, requestId="00000000-6a0e-4f1c-9a55-5e7f6c1d2b3a"))
    assert a["jobReference"] == b["jobReference"] != c["jobReference"]


def test_job_creation_optional(api, datos):
    r = ok(api.query("SELECT id FROM %s" % T, jobCreationMode="JOB_CREATION_OPTIONAL"))
    assert "jobReference" not in r and r["queryId"] and r["jobComplete"] is True
    r = ok(api.query("SELECT id FROM %s" % T, jobCreationMode="JOB_CREATION_REQUIRED"))
    assert r["jobReference"]["jobId"]


def test_dry_run(api, datos):
    datos.insert_rows([{"id": "a", "timestamp": "2024-01-14T10:00:00Z"}])
    r = ok(api.query("SELECT id FROM %s" % T, dryRun=True))
    assert r["totalBytesProcessed"] == "3" and "rows" not in r


def test_runtime_failure_surfaces_from_get_query_results(api, emu, datos):
    emu.configure(query_incomplete_polls=1)
    r = ok(api.query("SELECT id FROM %s LIMIT @n" % T, {"n": ("INT64", None)}))
    assert r["jobComplete"] is False
    job = r["jobReference"]
    loc = {"location": job["location"]}
    g = api.get("/projects/%s/queries/%s" % (P, job["jobId"]), params=loc)
    err = error(g, 400, "invalidQuery")
    assert "must not be null" in err["message"]
    j = ok(api.get("/projects/%s/jobs/%s" % (P, job["jobId"]), params=loc))
    assert j["status"]["state"] == "DONE"
    assert j["status"]["errorResult"]["reason"] == "invalidQuery"
    # without jobComplete:false answers the same query fails at once
    emu.configure(query_incomplete_polls=0)
    error(api.query("SELECT id FROM %s LIMIT @n" % T, {"n": ("INT64", None)}), 400, "invalidQuery")
