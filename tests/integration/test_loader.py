"""datos-loader, the real binary, against the emulator's Pub/Sub and BigQuery:
publish to read through mod_datos, dead-lettering by reason, a 100,000-message
backlog in one run and one job, the run lock, the settings and their errors."""
import base64
import datetime
import fcntl
import json
import os
import re
import sys

import pytest

from harness.loader import PIPELINE, Loader, make_pipeline
from datos_env import SHAPES, datos_conf, expected_answer, get, row

REASONS = ["empty_data", "not_utf8", "not_json", "not_object", "duplicate_key", "missing_id",
           "bad_id", "id_too_long", "bad_contenido", "contenido_too_large",
           "missing_timestamp", "bad_timestamp", "future_timestamp", "unknown_field"]


def rfc3339(epoch):
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ")


def record(rid, ts, contenido="x", **extra):
    doc = {"id": rid, "contenido": contenido, "timestamp": rfc3339(ts)}
    doc.update(extra)
    return json.dumps(doc, ensure_ascii=False).encode("utf-8")


def us(epoch):
    return int(round(epoch * 1_000_000))


def invalid_messages(now):
    """One message per reason code, each deserving it."""
    ts = rfc3339(now - 60)
    return {
        "empty_data": {"data": b"", "attributes": {"case": "empty_data"}},
        "not_utf8": b'{"id":"\xff\xfe","timestamp":"%s"}' % ts.encode(),
        "not_json": b'{"id": "a", "timestamp": ',
        "not_object": b'[{"id":"a"}]',
        "duplicate_key": ('{"id":"a","id":"b","timestamp":"%s"}' % ts).encode(),
        "missing_id": ('{"contenido":"x","timestamp":"%s"}' % ts).encode(),
        "bad_id": ('{"id":42,"timestamp":"%s"}' % ts).encode(),
        "id_too_long": ('{"id":"%s","timestamp":"%s"}' % ("i" * 257, ts)).encode(),
        "bad_contenido": ('{"id":"c","contenido":{"a":1},"timestamp":"%s"}' % ts).encode(),
        "contenido_too_large": ('{"id":"c","contenido":"%s","timestamp":"%s"}'
                                % ("x" * (1024 * 1024 + 1), ts)).encode(),
        "missing_timestamp": b'{"id":"t","contenido":"x"}',
        "bad_timestamp": b'{"id":"t","timestamp":"yesterday"}',
        "future_timestamp": ('{"id":"t","timestamp":"%s"}' % rfc3339(now + 86400)).encode(),
        "unknown_field": ('{"id":"u","timestamp":"%s","colour":"red"}' % ts).encode(),
    }


@pytest.fixture(params=SHAPES)
def shape(request):
    return request.param


def test_published_records_reach_datos(emulator, httpd_factory, shape):
    make_pipeline(emulator, loader_columns=(shape == "loader-table"))
    now = emulator.now()
    sent = []
    for i in range(25):
        sent.append(row("id-%02d" % i, us(now - 600 - i), contenido="v1 %d" % i))
    for i in range(5):                       # newer versions of five ids
        sent.append(row("id-%02d" % i, us(now - 100 - i), contenido="v2 %d" % i))
    ids = emulator.publish(PIPELINE["topic"],
                           [{"data": json.dumps({"id": r["id"], "contenido": r["contenido"],
                                                 "timestamp": rfc3339(r["ts_us"] / 1e6)}),
                             "attributes": {"producer": "test"}} for r in sent])
    loader = Loader(emulator, "publish-" + shape)
    r = loader.run()
    assert r.rc == 0, r
    assert r.finished["rows_loaded"] == 30
    assert r.finished["load_jobs"] == 1
    assert len(r.named("batch_loaded")) == 1
    rows = emulator.table_rows()
    assert len(rows) == 30
    if shape == "loader-table":
        assert sorted(x["message_id"] for x in rows) == sorted(ids)
        assert all(x["publish_time"] for x in rows)
        assert not r.named("table_missing_loader_columns")
    else:
        assert set(rows[0]) == {"id", "contenido", "timestamp"}
        hint = r.one("table_missing_loader_columns")["message"]
        assert "ALTER TABLE" in hint and "ADD COLUMN IF NOT EXISTS message_id STRING" in hint
    # nothing left behind, nothing dead-lettered
    assert emulator.pull(PIPELINE["subscription"]) == []
    assert emulator.pull(PIPELINE["dead_letter_subscription"]) == []
    assert loader.journal() == []
    # and /datos shows them, one row per id, through the real httpd
    h = httpd_factory("loader-read-" + shape)
    h.write_config(datos_conf(emulator))
    h.start()
    got = get(h, "/datos?limit=100").json()["datos"]
    # the loader stored every timestamp at microsecond precision
    expected = expected_answer([row(x["id"], x["ts_us"], x["contenido"]) for x in sent], 100,
                               shape)
    assert got == expected
    assert len(got) == 25
    m = loader.metrics()
    assert m["datos_loader_rows_loaded_total"] == 30
    assert m["datos_loader_messages_pulled_total"] == 30
    assert m['datos_loader_load_jobs_total{outcome="succeeded"}'] == 1
    assert m["datos_loader_last_success_timestamp_seconds"] > 0


def test_every_invalid_message_is_dead_lettered_unchanged(emulator):
    make_pipeline(emulator)
    now = emulator.now()
    bad = invalid_messages(now)
    messages, by_id = [], {}
    for reason, m in bad.items():
        m = m if isinstance(m, dict) else {"data": m}
        m.setdefault("attributes", {})
        m["attributes"] = dict(m["attributes"], case=reason, source="test")
        messages.append(m)
    messages.append({"data": record("ok-1", now - 10), "attributes": {"case": "valid"}})
    messages.append({"data": record("ok-2", now - 20, contenido=None),
                     "attributes": {"case": "valid"}})
    ids = emulator.publish(PIPELINE["topic"], messages)
    for mid, m in zip(ids, messages):
        by_id[mid] = m
    loader = Loader(emulator, "deadletter")
    r = loader.run()
    assert r.rc == 0, r
    assert r.finished["rows_loaded"] == 2
    assert r.finished["dead_lettered"] == len(bad)
    assert sorted(x["id"] for x in emulator.table_rows()) == ["ok-1", "ok-2"]
    dead = emulator.drain(PIPELINE["dead_letter_subscription"])
    assert len(dead) == len(bad)
    seen = set()
    sub = "projects/%s/subscriptions/%s" % (emulator.project, PIPELINE["subscription"])
    for d in dead:
        msg = d["message"]
        attrs = msg["attributes"]
        source = attrs["datos_source_message_id"]
        original = by_id[source]
        assert base64.b64decode(msg.get("data", "")) == original["data"]      # unchanged
        for k, v in original["attributes"].items():                          # kept
            assert attrs[k] == v
        assert attrs["datos_error"] == original["attributes"]["case"]
        assert 0 < len(attrs["datos_error_detail"].encode()) <= 1024
        assert attrs["datos_source_subscription"] == sub
        assert attrs["datos_source_publish_time"]
        seen.add(attrs["datos_error"])
    assert seen == set(REASONS)
    m = loader.metrics()
    for reason in REASONS:
        assert m['datos_loader_messages_invalid_total{reason="%s"}' % reason] == 1
    assert emulator.pull(PIPELINE["subscription"]) == []


def test_unknown_fields_can_be_dropped(emulator):
    make_pipeline(emulator)
    now = emulator.now()
    emulator.publish(PIPELINE["topic"], [record("extra", now - 5, colour="red")])
    r = Loader(emulator, "drop-unknown", unknown_fields="drop").run()
    assert r.rc == 0, r
    assert [x["id"] for x in emulator.table_rows()] == ["extra"]


def test_a_backlog_of_100000_drains_in_one_run_with_one_load_job(emulator, capsys):
    make_pipeline(emulator)
    now = emulator.now()
    base = rfc3339(now - 3600)
    emulator.publish(PIPELINE["topic"],
                     [('{"id":"m%06d","contenido":"dato %d","timestamp":"%s"}'
                       % (i, i, base)).encode() for i in range(100_000)])
    loader = Loader(emulator, "backlog-100k")
    r = loader.run(timeout=600)
    assert r.rc == 0, r
    assert r.finished["rows_loaded"] == 100_000
    assert r.finished["load_jobs"] == 1
    assert r.finished["drained"] is True
    loads = [j for j in emulator.jobs() if j.get("type", j.get("jobType")) in ("LOAD", "load")]
    assert len(loads) == 1, loads
    assert len(emulator.table_rows()) == 100_000
    assert emulator.pull(PIPELINE["subscription"]) == []
    with capsys.disabled():
        sys.stdout.write("\n[loader 100k backlog: %.1f s wall, %.1f s user + %.1f s sys, "
                         "peak RSS of the test's children %d MiB]\n"
                         % (r.seconds, r.rusage["user"], r.rusage["sys"],
                            r.rusage["maxrss_kb"] // 1024))


def test_an_overlapping_run_exits_at_once(emulator):
    make_pipeline(emulator)
    emulator.publish(PIPELINE["topic"], [record("x", emulator.now() - 5)])
    loader = Loader(emulator, "overlap")
    os.makedirs(loader.state_dir, exist_ok=True)
    with open(os.path.join(loader.state_dir, "datos-loader.lock"), "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        emulator.clear_counters()
        # a run waiting for the lock would never end: run() would time out
        r = loader.run(timeout=120)
    assert r.rc == 0, r
    assert r.named("run_skipped")
    assert emulator.count("pubsub.subscriptions.pull") == 0
    assert emulator.table_rows() == []
    # once the lock is free, the next run does the work
    assert loader.run().rc == 0
    assert [x["id"] for x in emulator.table_rows()] == ["x"]


@pytest.mark.parametrize("text,names", [
    ("batch_max_rowz = 5\n", "batch_max_rowz"),
    ("batch_max_rows = -1\n", "batch_max_rows"),
    ("batch_max_rows = lots\n", "batch_max_rows"),
    ("batch_max_age = 5 fortnights\n", "batch_max_age"),
    ("unknown_fields = keep\n", "unknown_fields"),
    ("allow_insecure_http = perhaps\n", "allow_insecure_http"),
    ("table = no-dots\n", "table"),
    ("subscription = projects/datos-local/topics/wrong\n", "subscription"),
    ("project = Not_A_Project\n", "project"),
    ("lease = 2s\n", "lease"),
    ("retry_initial = 10s\nretry_max = 1s\n", "retry_max"),
    ("max_seconds = 60\nmax_seconds = 30\n", "max_seconds"),
    ("no equals sign here\n", "key = value"),
    ('location = "unterminated\n', "location"),
])
def test_a_bad_setting_is_exit_2_naming_it(emulator, text, names):
    make_pipeline(emulator)
    loader = Loader(emulator, "bad-config")
    base = "".join("%s = %s\n" % (k, v) for k, v in loader.settings.items()
                   if k not in text.split("=")[0])
    loader.write_config(text=base + text)
    r = loader.run()
    assert r.rc == 2, r
    err = r.one("config_error")["message"]
    assert names in err, err
    assert "loader.conf" in err or names in ("table", "subscription", "project", "retry_max"), err


def test_flags_override_and_are_checked(emulator):
    make_pipeline(emulator)
    loader = Loader(emulator, "flags")
    r = loader.run("--max-messages", "abc")
    assert r.rc == 2 and "--max-messages" in r.one("config_error")["message"]
    r = loader.run("--no-such-flag", check_sanitizer=True)
    assert r.rc == 2
    emulator.publish(PIPELINE["topic"], [record("f%d" % i, emulator.now() - 5) for i in range(5)])
    r = loader.run("--max-messages", "2", "--once")
    assert r.rc == 0, r
    assert r.finished["messages_pulled"] == 2
    assert len(emulator.table_rows()) == 2


def test_environment_overrides_the_file(emulator):
    make_pipeline(emulator)
    emulator.publish(PIPELINE["topic"], [record("env", emulator.now() - 5)])
    loader = Loader(emulator, "env", project="some-other-proj")
    r = loader.run(env={"GOOGLE_CLOUD_PROJECT": emulator.project})
    assert r.rc == 0, r
    assert [x["id"] for x in emulator.table_rows()] == ["env"]


def test_dry_run_loads_publishes_and_acks_nothing(emulator):
    make_pipeline(emulator)
    now = emulator.now()
    emulator.publish(PIPELINE["topic"], [record("d1", now - 5), b"not json"])
    loader = Loader(emulator, "dry-run")
    r = loader.run("--dry-run")
    assert r.rc == 0, r
    assert [e["reason"] for e in r.named("dry_run_invalid")] == ["not_json"]
    assert emulator.table_rows() == []
    assert emulator.pull(PIPELINE["dead_letter_subscription"]) == []
    # both are available again at once (nacked, not left to their leases)
    assert len(emulator.pull(PIPELINE["subscription"])) == 2


def test_a_table_missing_a_record_column_is_exit_2(emulator):
    make_pipeline(emulator)
    emulator._api("DELETE", "/projects/%s/datasets/latam_dataset/tables/datos" % emulator.project,
                  expect=(200, 204))
    emulator._api("POST", "/projects/%s/datasets/latam_dataset/tables" % emulator.project,
                  {"tableReference": {"projectId": emulator.project, "datasetId": "latam_dataset",
                                      "tableId": "datos"},
                   "schema": {"fields": [{"name": "id", "type": "STRING"},
                                         {"name": "timestamp", "type": "STRING"},
                                         {"name": "contenido", "type": "STRING"}]}})
    r = Loader(emulator, "bad-table").run()
    assert r.rc == 2, r
    assert "timestamp" in json.dumps(r.events)


def test_version_and_help(emulator):
    loader = Loader(emulator, "version")
    r = loader.run("--version", config=False)
    assert r.rc == 0 and r.stdout.startswith("datos-loader ")
    r = loader.run("--help", config=False)
    assert r.rc == 0
    for key in ("batch_max_rows", "dead_letter_topic", "retry_deadline", "metrics_file"):
        assert key in r.stdout


def test_the_example_config_documents_every_key(emulator):
    loader = Loader(emulator, "example")
    help_text = loader.run("--help", config=False).stdout
    keys = help_text.split("Settings:")[1].split("(conf/")[0].split()
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "conf",
                           "loader.conf.example")) as f:
        example = f.read()
    for key in keys:
        assert re.search(r"^#?%s =" % re.escape(key), example, re.M), key
    # and the example, as shipped, is a valid configuration
    make_pipeline(emulator)
    loader.write_config(text=example + "".join("%s = %s\n" % (k, v)
                                               for k, v in loader.settings.items()))
    assert loader.run().rc == 0
