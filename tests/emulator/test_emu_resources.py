"""Datasets, tables, envelopes and JSON shapes (docs/google-apis.md 0.2, 0.4, 2.1, 2.2, 2.10)."""
import re

import pytest

P = "datos-local"


def check_envelope(resp, code, reason, status):
    assert resp.status_code == code, resp.text
    assert resp.headers["Content-Type"] == "application/json; charset=UTF-8"
    body = resp.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert set(err) == {"code", "message", "errors", "status"}
    assert err["code"] == code
    assert err["status"] == status
    assert isinstance(err["message"], str) and err["message"]
    assert len(err["errors"]) == 1
    item = err["errors"][0]
    assert item["reason"] == reason
    assert item["domain"] in ("global", "usageLimits")
    assert item["message"]
    return err


@pytest.mark.parametrize("prefix", ["/bigquery/v2", ""])
def test_dataset_round_trip_both_prefixes(api, prefix):
    r = api.post(prefix + "/projects/%s/datasets" % P,
                 {"datasetReference": {"projectId": P, "datasetId": "analytics"},
                  "location": "southamerica-east1", "labels": {"team": "data"},
                  "defaultTableExpirationMs": 7776000000})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/json; charset=UTF-8"
    d = r.json()
    assert d["kind"] == "bigquery#dataset"
    assert d["id"] == "%s:analytics" % P
    assert d["datasetReference"] == {"projectId": P, "datasetId": "analytics"}
    assert d["location"] == "southamerica-east1"
    assert d["labels"] == {"team": "data"}
    assert d["defaultTableExpirationMs"] == "7776000000"  # int64 -> string
    assert re.fullmatch(r"\d{13}", d["creationTime"])
    assert isinstance(d["lastModifiedTime"], str)
    assert d["etag"] and d["selfLink"].endswith("/projects/%s/datasets/analytics" % P)
    g = api.get(prefix + "/projects/%s/datasets/analytics" % P)
    assert g.status_code == 200
    assert g.json()["creationTime"] == d["creationTime"]
    assert g.json()["location"] == "southamerica-east1"


def test_dataset_default_location_is_us(api):
    r = api.post("/bigquery/v2/projects/%s/datasets" % P,
                 {"datasetReference": {"datasetId": "d_us"}})
    assert r.json()["location"] == "US"


def test_dataset_duplicate_and_missing(api):
    body = {"datasetReference": {"datasetId": "dup"}}
    assert api.post("/bigquery/v2/projects/%s/datasets" % P, body).status_code == 200
    err = check_envelope(api.post("/bigquery/v2/projects/%s/datasets" % P, body), 409,
                         "duplicate", "ALREADY_EXISTS")
    assert err["message"] == "Already Exists: Dataset %s:dup" % P
    err = check_envelope(api.get("/bigquery/v2/projects/%s/datasets/nope" % P), 404,
                         "notFound", "NOT_FOUND")
    assert err["message"] == "Not found: Dataset %s:nope" % P


def test_dataset_bad_id(api):
    check_envelope(api.post("/bigquery/v2/projects/%s/datasets" % P,
                            {"datasetReference": {"datasetId": "bad-id"}}),
                   400, "invalid", "INVALID_ARGUMENT")


def test_table_round_trip(api, emu):
    emu.create_dataset("latam_dataset")
    body = {"tableReference": {"projectId": P, "datasetId": "latam_dataset", "tableId": "events"},
            "schema": {"fields": [
                {"name": "event_ts", "type": "TIMESTAMP", "mode": "REQUIRED"},
                {"name": "user_id", "type": "STRING"},
                {"name": "n", "type": "INT64"},
                {"name": "tags", "type": "STRING", "mode": "REPEATED"},
                {"name": "meta", "type": "RECORD", "fields": [{"name": "ip", "type": "STRING"}]}]},
            "timePartitioning": {"type": "DAY", "field": "event_ts", "expirationMs": 7776000000},
            "requirePartitionFilter": True,
            "clustering": {"fields": ["user_id"]}}
    r = api.post("/projects/%s/datasets/latam_dataset/tables" % P, body)
    assert r.status_code == 200, r.text
    t = r.json()
    assert t["kind"] == "bigquery#table"
    assert t["id"] == "%s:latam_dataset.events" % P
    assert t["type"] == "TABLE"
    assert t["location"] == "southamerica-east1"  # from the dataset
    assert t["timePartitioning"] == {"type": "DAY", "field": "event_ts",
                                     "expirationMs": "7776000000"}
    assert t["clustering"] == {"fields": ["user_id"]}
    assert t["requirePartitionFilter"] is True
    fields = t["schema"]["fields"]
    assert fields[0] == {"name": "event_ts", "type": "TIMESTAMP", "mode": "REQUIRED"}
    assert fields[1] == {"name": "user_id", "type": "STRING", "mode": "NULLABLE"}
    assert fields[2]["type"] == "INTEGER"  # legacy type names on the wire
    assert fields[3]["mode"] == "REPEATED"
    assert fields[4]["type"] == "RECORD" and fields[4]["fields"][0]["name"] == "ip"
    assert t["numRows"] == "0" and t["numBytes"] == "0"
    assert "streamingBuffer" not in t  # absent when empty
    g = api.get("/bigquery/v2/projects/%s/datasets/latam_dataset/tables/events" % P).json()
    assert g["schema"] == t["schema"]
    assert g["creationTime"] == t["creationTime"]


def test_table_defaults_omitted(api, emu):
    emu.create_dataset("ds")
    t = api.post("/projects/%s/datasets/ds/tables" % P,
                 {"tableReference": {"tableId": "plain"},
                  "schema": {"fields": [{"name": "a", "type": "STRING"}]}}).json()
    for absent in ("timePartitioning", "clustering", "requirePartitionFilter",
                   "streamingBuffer"):
        assert absent not in t


def test_table_errors(api, emu):
    err = check_envelope(api.post("/projects/%s/datasets/missing/tables" % P,
                                  {"tableReference": {"tableId": "t"}}),
                         404, "notFound", "NOT_FOUND")
    assert err["message"] == "Not found: Dataset %s:missing" % P
    emu.create_dataset("ds")
    body = {"tableReference": {"tableId": "t"},
            "schema": {"fields": [{"name": "a", "type": "STRING"}]}}
    assert api.post("/projects/%s/datasets/ds/tables" % P, body).status_code == 200
    err = check_envelope(api.post("/projects/%s/datasets/ds/tables" % P, body), 409,
                         "duplicate", "ALREADY_EXISTS")
    assert err["message"] == "Already Exists: Table %s:ds.t" % P
    err = check_envelope(api.get("/projects/%s/datasets/ds/tables/nope" % P), 404, "notFound",
                         "NOT_FOUND")
    assert err["message"] == "Not found: Table %s:ds.nope" % P


@pytest.mark.parametrize("tp,cl", [
    ({"type": "WEEK", "field": "ts"}, None),
    ({"type": "DAY", "field": "s"}, None),          # STRING cannot partition
    ({"type": "DAY", "field": "missing"}, None),
    ({"type": "DAY", "field": "rep"}, None),        # repeated
    (None, {"fields": ["a", "b", "c", "d", "s"]}),  # > 4
    (None, {"fields": ["nope"]}),
    (None, {"fields": ["rec"]}),                    # not a simple type
    (None, {"fields": ["f"]}),                      # FLOAT64 not clusterable
])
def test_partitioning_and_clustering_validation(api, emu, tp, cl):
    emu.create_dataset("ds")
    body = {"tableReference": {"tableId": "t"},
            "schema": {"fields": [
                {"name": "ts", "type": "TIMESTAMP"}, {"name": "s", "type": "STRING"},
                {"name": "a", "type": "STRING"}, {"name": "b", "type": "STRING"},
                {"name": "c", "type": "STRING"}, {"name": "d", "type": "STRING"},
                {"name": "f", "type": "FLOAT"},
                {"name": "rep", "type": "TIMESTAMP", "mode": "REPEATED"},
                {"name": "rec", "type": "RECORD", "fields": [{"name": "x", "type": "STRING"}]}]}}
    if tp:
        body["timePartitioning"] = tp
    if cl:
        body["clustering"] = cl
    check_envelope(api.post("/projects/%s/datasets/ds/tables" % P, body), 400, "invalid",
                   "INVALID_ARGUMENT")


def test_partition_on_date_and_hour(api, emu):
    emu.create_dataset("ds")
    for i, (ptype, ftype) in enumerate([("HOUR", "TIMESTAMP"), ("MONTH", "DATE"),
                                        ("YEAR", "TIMESTAMP")]):
        r = api.post("/projects/%s/datasets/ds/tables" % P,
                     {"tableReference": {"tableId": "t%d" % i},
                      "schema": {"fields": [{"name": "k", "type": ftype}]},
                      "timePartitioning": {"type": ptype, "field": "k"}})
        assert r.status_code == 200, r.text


def test_bad_json_body_is_parse_error(api):
    r = api.req("POST", "/bigquery/v2/projects/%s/datasets" % P, raw=b'{"datasetReference": ',
                headers={"Content-Type": "application/json"})
    check_envelope(r, 400, "parseError", "INVALID_ARGUMENT")
    r = api.req("POST", "/bigquery/v2/projects/%s/datasets" % P, raw=b"[1, 2]",
                headers={"Content-Type": "application/json"})
    check_envelope(r, 400, "parseError", "INVALID_ARGUMENT")


def test_unknown_body_field_refused(api):
    err = check_envelope(api.post("/bigquery/v2/projects/%s/datasets" % P,
                                  {"datasetReference": {"datasetId": "x"}, "colour": "red"}),
                         400, "invalid", "INVALID_ARGUMENT")
    assert 'Unknown name "colour"' in err["message"]


def test_unknown_path_and_wrong_method(api):
    check_envelope(api.get("/bigquery/v2/projects/%s/nothing" % P), 404, "notFound", "NOT_FOUND")
    check_envelope(api.get("/nothing/at/all"), 404, "notFound", "NOT_FOUND")
    check_envelope(api.req("PUT", "/bigquery/v2/projects/%s/queries" % P, body={}), 404,
                   "notFound", "NOT_FOUND")


def test_unknown_query_parameters_ignored(api, emu):
    emu.create_dataset("ds")
    r = api.get("/bigquery/v2/projects/%s/datasets/ds" % P,
                params={"prettyPrint": "false", "alt": "json", "$.xgafv": "2",
                        "fields": "id,location"})
    assert r.status_code == 200
    assert "\n" not in r.text  # prettyPrint=false is compact
    assert r.json()["id"] == "%s:ds" % P
    pretty = api.get("/bigquery/v2/projects/%s/datasets/ds" % P)
    assert "\n" in pretty.text  # Google pretty-prints by default


def test_delete_table_and_dataset(api, emu):
    emu.create_dataset("ds")
    api.post("/projects/%s/datasets/ds/tables" % P, {"tableReference": {"tableId": "t"}})
    check_envelope(api.req("DELETE", "/bigquery/v2/projects/%s/datasets/ds" % P), 400,
                   "resourceInUse", "INVALID_ARGUMENT")
    r = api.req("DELETE", "/bigquery/v2/projects/%s/datasets/ds/tables/t" % P)
    assert r.status_code == 204 and r.content == b""
    r = api.req("DELETE", "/bigquery/v2/projects/%s/datasets/ds" % P)
    assert r.status_code == 204
    assert api.get("/bigquery/v2/projects/%s/datasets/ds" % P).status_code == 404
