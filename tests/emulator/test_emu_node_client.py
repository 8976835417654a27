"""Google's official Node.js BigQuery client, unchanged, against the emulator
(BIGQUERY_EMULATOR_HOST): what it sends must be accepted, what it gets must parse. Queries
and streaming inserts (bq_client.js), load jobs and tabledata.list (bq_load.js)."""
import json
import os
import shutil
import subprocess

import pytest

from emu_support import TEST_TMP
from gcpemu.client import REPO

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node", "bq_client.js")
LOAD_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node", "bq_load.js")
MODULE = os.path.join(REPO, "node_modules", "@google-cloud", "bigquery")

pytestmark = [
    pytest.mark.skipif(not os.path.isdir(MODULE),
                       reason="node_modules/@google-cloud/bigquery is absent: run `npm ci` "
                              "(make deps) first"),
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (make deps)"),
]


def run_client(emu, dataset, script=SCRIPT, **extra_env):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "HOME": os.environ.get("HOME", "/root"),
           "BIGQUERY_EMULATOR_HOST": emu.base_url,
           # keep the client's credential probing on loopback (no 169.254.169.254)
           "GCE_METADATA_HOST": "127.0.0.1:%d" % emu.port,
           "DATOS_PROJECT": emu.project, "DATOS_DATASET": dataset}
    env.update(extra_env)
    p = subprocess.run(["node", script], env=env, capture_output=True, text=True, timeout=60,
                       cwd=REPO)
    assert p.returncode == 0, "node client failed:\n%s\n%s" % (p.stdout, p.stderr)
    return json.loads(p.stdout.strip().splitlines()[-1])


EXPECTED_ROWS = [
    {"id": "1", "contenido": "hola nuevo", "timestamp": "2024-01-14T15:00:00.000Z"},
    {"id": "2", "contenido": None, "timestamp": "2024-01-14T13:00:00.000Z"},
]


def test_node_client_round_trip(emu):
    out = run_client(emu, "node_ds")
    assert out["dataset"] == {"id": "node_ds", "location": "southamerica-east1",
                              "kind": "bigquery#dataset"}
    assert out["table"]["id"] == "%s:node_ds.datos" % emu.project
    assert out["table"]["timePartitioning"] == {"type": "DAY", "field": "timestamp"}
    assert out["table"]["clustering"] == {"fields": ["id"]}
    assert out["rows"] == EXPECTED_ROWS
    assert out["paged"] == ["1", "1", "2", "3"]
    assert out["count"] == 4
    # what the client put on the wire (docs/google-apis.md 6)
    queries = emu.requests("bigquery.jobs.query")
    assert queries and all(q["path"] == "/projects/%s/queries" % emu.project for q in queries)
    first = queries[0]
    assert first["query"].get("prettyPrint") == "false"
    assert first["body"]["useLegacySql"] is False
    assert first["body"]["formatOptions"] == {"useInt64Timestamp": True}
    assert first["body"]["requestId"]
    assert first["body"]["location"] == "southamerica-east1"
    assert "Authorization" not in first["headers"]
    # the paged query was continued with getQueryResults + pageToken
    pages = emu.requests("bigquery.jobs.getQueryResults")
    assert any("pageToken" in r["query"] for r in pages)
    assert all(r["query"].get("location") == "southamerica-east1" for r in pages)
    assert all(r["status"] == 200 for r in emu.requests())
    inserts = emu.requests("bigquery.tabledata.insertAll")
    assert all(row.get("insertId") for row in inserts[0]["body"]["rows"])


def test_node_client_polls_incomplete_jobs(emu):
    emu.configure(query_incomplete_polls=2)
    out = run_client(emu, "node_polls")
    assert out["rows"] == EXPECTED_ROWS
    assert out["count"] == 4
    # every query job answered jobComplete:false twice, then the client got its rows
    assert emu.count("bigquery.jobs.getQueryResults") >= 2 * emu.count("bigquery.jobs.query")


def test_node_client_load_jobs(emu):
    folder = os.path.join(TEST_TMP, "node-load")
    os.makedirs(folder, exist_ok=True)
    good = os.path.join(folder, "good.json")
    bad = os.path.join(folder, "bad.json")
    with open(good, "w") as f:
        f.write('{"id": "1", "contenido": "hola", "timestamp": "2024-01-14T14:00:00.123456Z"}\n'
                '{"id": "2", "contenido": null, "timestamp": "2024-01-14 14:00:01 UTC"}\n'
                '{"id": "3", "timestamp": "2024-01-14T14:00:02Z"}\n')
    with open(bad, "w") as f:
        f.write('{"id": "4", "timestamp": "2024-01-14T14:00:00Z"}\n'
                '{"id": "5", "colour": "red", "timestamp": "2024-01-14T14:00:00Z"}\n')
    out = run_client(emu, "node_load", LOAD_SCRIPT, DATOS_GOOD_FILE=good, DATOS_BAD_FILE=bad)
    assert out["load"] == {"state": "DONE", "error": None, "outputRows": "3",
                           "jobId": "node_load_g0", "location": "southamerica-east1"}
    # a DONE job with errorResult becomes an error in the client, with every row error
    assert out["bad"]["reasons"] == ["invalid", "invalid"]
    assert "No such field: colour." in out["bad"]["message"]
    assert out["duplicate"] == {"message": "Already Exists: Job %s:southamerica-east1."
                                           "node_load_g0" % emu.project,
                                "code": 409, "reasons": ["duplicate"]}
    assert out["rows"] == [
        {"id": "1", "contenido": "hola", "timestamp": "2024-01-14T14:00:00.123456000Z"},
        {"id": "2", "contenido": None, "timestamp": "2024-01-14T14:00:01.000Z"},
        {"id": "3", "contenido": None, "timestamp": "2024-01-14T14:00:02.000Z"}]
    assert out["pages"] == 2
    # what the client put on the wire: a multipart upload, then jobs.get with the location
    up = emu.requests("bigquery.jobs.insert.multipart")
    assert len(up) == 3 and [r["status"] for r in up] == [200, 200, 409]
    assert up[0]["query"] == {"uploadType": "multipart"}
    assert up[0]["headers"]["content-type"].startswith("multipart/related; boundary=")
    assert all(r["query"].get("location") == "southamerica-east1"
               for r in emu.requests("bigquery.jobs.get"))
    assert any("pageToken" in r["query"] for r in emu.requests("bigquery.tabledata.list"))
    assert [r["id"] for r in emu.table_rows("node_load", "datos")] == ["1", "2", "3"]
