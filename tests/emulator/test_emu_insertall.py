"""tabledata.insertAll (docs/google-apis.md 2.8): insertId dedup, skipInvalidRows and `stopped`,
ignoreUnknownValues, REQUIRED fields, value types, limits, the streaming buffer."""
import pytest

P = "datos-local"
PATH = "/bigquery/v2/projects/%s/datasets/latam_dataset/tables/datos/insertAll" % P
T = "`datos-local.latam_dataset.datos`"


def count_rows(api):
    r = api.query("SELECT COUNT(*) AS n FROM %s" % T)
    assert r.status_code == 200, r.text
    return int(r.json()["rows"][0]["f"][0]["v"])


def insert(api, rows, **flags):
    body = {"kind": "bigquery#tableDataInsertAllRequest", "rows": rows}
    body.update(flags)
    r = api.post(PATH, body)
    assert r.status_code == 200, r.text
    return r.json()


def errors_by_index(resp):
    return {e["index"]: e["errors"] for e in resp.get("insertErrors", [])}


def test_clean_insert(api, datos):
    r = insert(api, [{"insertId": "1", "json": {"id": "a", "timestamp": "2024-01-14T14:00:00Z"}},
                     {"json": {"id": "b", "timestamp": "2024-01-14 14:00:00 UTC",
                               "contenido": None}}])
    assert r == {"kind": "bigquery#tableDataInsertAllResponse"}
    assert count_rows(api) == 2


def test_insert_id_dedup_window(api, emu, datos):
    row = {"insertId": "evt-1", "json": {"id": "a", "timestamp": "2024-01-14T14:00:00Z"}}
    insert(api, [row])
    insert(api, [row])               # retried within the window: dropped
    insert(api, [row, dict(row)])    # duplicates inside one request too
    assert count_rows(api) == 1
    emu.advance_clock(61)            # default window 60 s of emulator clock
    insert(api, [row])
    assert count_rows(api) == 2
    emu.configure(insert_id_window=3600)
    emu.advance_clock(600)
    insert(api, [row])
    assert count_rows(api) == 2
    # rows without insertId are never deduplicated
    insert(api, [{"json": row["json"]}, {"json": row["json"]}])
    assert count_rows(api) == 4


def test_bad_row_stops_the_request(api, datos):
    rows = [{"json": {"id": "ok1", "timestamp": "2024-01-14T14:00:00Z"}},
            {"json": {"id": "bad", "timestamp": "2024-01-14T14:00:00Z", "colour": "red"}},
            {"json": {"contenido": "no id", "timestamp": "2024-01-14T14:00:00Z"}},
            {"json": {"id": "ok2", "timestamp": "2024-01-14T14:00:00Z"}}]
    r = insert(api, rows)
    assert r["kind"] == "bigquery#tableDataInsertAllResponse"
    errs = errors_by_index(r)
    assert set(errs) == {0, 1, 2, 3}
    assert errs[1] == [{"reason": "invalid", "location": "colour",
                        "message": "no such field: colour."}]
    assert errs[2][0]["reason"] == "invalid" and errs[2][0]["location"] == "id"
    assert errs[0] == [{"reason": "stopped", "message": ""}]
    assert errs[3] == [{"reason": "stopped", "message": ""}]
    assert count_rows(api) == 0


def test_skip_invalid_rows(api, datos):
    rows = [{"json": {"id": "ok1", "timestamp": "2024-01-14T14:00:00Z"}},
            {"json": {"id": 5, "timestamp": "2024-01-14T14:00:00Z"}},
            {"json": {"id": "ok2", "timestamp": "2024-01-14T14:00:00Z"}}]
    r = insert(api, rows, skipInvalidRows=True)
    errs = errors_by_index(r)
    assert list(errs) == [1]
    assert errs[1][0]["reason"] == "invalid" and errs[1][0]["location"] == "id"
    assert count_rows(api) == 2


def test_ignore_unknown_values(api, datos):
    r = insert(api, [{"json": {"id": "a", "timestamp": "2024-01-14T14:00:00Z", "colour": "red"}}],
               ignoreUnknownValues=True)
    assert "insertErrors" not in r
    assert count_rows(api) == 1


@pytest.mark.parametrize("value,ok", [
    ("2024-01-14T14:00:00Z", True),
    ("2024-01-14T14:00:00.123456+02:00", True),
    ("2024-01-14 14:00:00", True),
    ("2024-01-14 14:00:00.5 UTC", True),
    ("2024-01-14 14:00:00-03:00", True),
    (1705240800, True),
    (1705240800.123456, True),
    ("2024-13-14T14:00:00Z", False),
    ("yesterday", False),
    ("2024-01-14T14:00:00.1234567Z", False),  # more than microseconds
    (True, False),
    (None, False),                            # REQUIRED
])
def test_timestamp_inputs(api, datos, value, ok):
    r = insert(api, [{"json": {"id": "a", "timestamp": value}}])
    assert ("insertErrors" not in r) == ok, r


def test_string_must_be_a_string(api, datos):
    for bad in (12, 1.5, True, ["x"], {"x": 1}):
        r = insert(api, [{"json": {"id": "a", "contenido": bad,
                                   "timestamp": "2024-01-14T14:00:00Z"}}])
        assert errors_by_index(r)[0][0]["location"] == "contenido", bad


def test_other_types(api, emu):
    emu.create_dataset("ds")
    r = api.post("/bigquery/v2/projects/%s/datasets/ds/tables" % P, {
        "tableReference": {"tableId": "t"},
        "schema": {"fields": [{"name": "i", "type": "INTEGER"}, {"name": "f", "type": "FLOAT"},
                              {"name": "b", "type": "BOOLEAN"}, {"name": "d", "type": "DATE"},
                              {"name": "tags", "type": "STRING", "mode": "REPEATED"},
                              {"name": "rec", "type": "RECORD",
                               "fields": [{"name": "ip", "type": "STRING"},
                                          {"name": "ts", "type": "TIMESTAMP"}]}]}})
    assert r.status_code == 200
    path = "/bigquery/v2/projects/%s/datasets/ds/tables/t/insertAll" % P
    r = api.post(path, {"rows": [{"json": {"i": "9007199254740993", "f": 1.5, "b": True,
                                           "d": "2024-01-14", "tags": ["x", "y"],
                                           "rec": {"ip": "1.2.3.4", "ts": "2024-01-14T14:00:00Z"}}},
                                 {"json": {"i": 7}}]}).json()
    assert "insertErrors" not in r, r
    q = api.query("SELECT i, f, b, d, tags, rec FROM `datos-local.ds.t` ORDER BY i DESC").json()
    fields = q["schema"]["fields"]
    assert [f["type"] for f in fields] == ["INTEGER", "FLOAT", "BOOLEAN", "DATE", "STRING",
                                           "RECORD"]
    assert fields[4]["mode"] == "REPEATED"
    first = [c["v"] for c in q["rows"][0]["f"]]
    assert first[:4] == ["9007199254740993", "1.5", "true", "2024-01-14"]
    assert first[4] == [{"v": "x"}, {"v": "y"}]
    assert first[5] == {"f": [{"v": "1.2.3.4"}, {"v": "1.7052408E9"}]}
    second = [c["v"] for c in q["rows"][1]["f"]]
    assert second == ["7", None, None, None, [], None]
    bad = api.post(path, {"rows": [{"json": {"i": "seven"}}, {"json": {"b": "maybe"}},
                                   {"json": {"tags": "x"}}, {"json": {"rec": "x"}}],
                          "skipInvalidRows": True}).json()
    assert sorted(e["index"] for e in bad["insertErrors"]) == [0, 1, 2, 3]


def test_limits(api, datos):
    r = api.post(PATH, {"rows": []})
    assert r.status_code == 400 and r.json()["error"]["errors"][0]["reason"] == "invalid"
    rows = [{"json": {"id": "x", "timestamp": 0}}] * 50_001
    r = api.post(PATH, {"rows": rows})
    assert r.status_code == 400, r.text[:200]
    assert r.json()["error"]["status"] == "INVALID_ARGUMENT"
    big = "x" * (10 * 1024 * 1024 + 10)
    r = api.post(PATH, {"rows": [{"json": {"id": "x", "timestamp": 0, "contenido": big}}]})
    assert r.status_code == 400
    assert count_rows(api) == 0
    rows = [{"json": {"id": "x%d" % i, "timestamp": 0}} for i in range(50_000)]
    assert "insertErrors" not in insert(api, rows)
    assert count_rows(api) == 50_000


def test_missing_table(api, emu):
    emu.create_dataset("latam_dataset")
    r = api.post(PATH, {"rows": [{"json": {"id": "a"}}]})
    assert r.status_code == 404
    assert r.json()["error"]["message"] == "Not found: Table %s:latam_dataset.datos" % P


def test_streaming_buffer_in_tables_get(api, emu, datos):
    insert(api, [{"json": {"id": "abc", "timestamp": "2024-01-14T14:00:00Z"}}])
    t = api.get("/bigquery/v2/projects/%s/datasets/latam_dataset/tables/datos" % P).json()
    sb = t["streamingBuffer"]
    assert sb["estimatedRows"] == "1"
    assert sb["estimatedBytes"] == str(2 + 3 + 8)
    assert sb["oldestEntryTime"].isdigit()
    assert t["numRows"] == "0" and t["numBytes"] == "0"  # the buffer is excluded
    emu.advance_clock(5401)
    t = api.get("/bigquery/v2/projects/%s/datasets/latam_dataset/tables/datos" % P).json()
    assert "streamingBuffer" not in t
    assert t["numRows"] == "1" and t["numBytes"] == "13"
