"""`datos-loader --status`, the real binary, in each state an operator meets: fresh after
a good run, in hold-off after BigQuery failed, with a journal entry waiting because the acks
failed after the load committed, near the daily load-job quota, with a run at work, and with
state it cannot read. Every call checks that the emulator saw no request (--status reads
local state only), and every --json answer is checked against
docs/schemas/loader-status.schema.json with the small validator below.

No wall clock: the loader's own clock is moved with Loader.age (its state files' times moved
back), Google's with the emulator's."""
import json
import os
import re
import signal
import time

import pytest

from harness.loader import PIPELINE, Loader, make_pipeline

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
SCHEMA_PATH = os.path.join(ROOT, "docs", "schemas", "loader-status.schema.json")
FIRST_LINE = re.compile(r"^DATOS-LOADER (OK|WARNING|CRITICAL|UNKNOWN) - \S.*$")
CODES = {"OK": 0, "WARNING": 1, "CRITICAL": 2, "UNKNOWN": 3}


# ---------------------------------------------------------------- the schema check

def schema():
    with open(SCHEMA_PATH) as f:
        return json.load(f)


TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def is_type(value, name):
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, TYPES[name])


def validate(value, sch, root, where="$"):
    """The JSON Schema keywords the status schema uses: $ref (local), type, const, enum,
    anyOf, required, properties, additionalProperties: false, items, maxItems, minimum,
    pattern. An unknown keyword fails, so the schema cannot outgrow the check."""
    errors = []
    known = {"$schema", "$defs", "title", "description", "$ref", "type", "const", "enum",
             "anyOf", "required", "properties", "additionalProperties", "items", "maxItems",
             "minimum", "pattern"}
    unknown = set(sch) - known
    assert not unknown, "schema keyword(s) the test does not check: %s" % unknown
    if "$ref" in sch:
        target = root
        for part in sch["$ref"].lstrip("#/").split("/"):
            target = target[part]
        errors += validate(value, target, root, where)
    if "type" in sch:
        names = sch["type"] if isinstance(sch["type"], list) else [sch["type"]]
        if not any(is_type(value, n) for n in names):
            return errors + ["%s: %r is not %s" % (where, value, "/".join(names))]
    if "const" in sch and value != sch["const"]:
        errors.append("%s: %r is not %r" % (where, value, sch["const"]))
    if "enum" in sch and value not in sch["enum"]:
        errors.append("%s: %r is not one of %r" % (where, value, sch["enum"]))
    if "anyOf" in sch and not any(not validate(value, s, root, where) for s in sch["anyOf"]):
        errors.append("%s: %r matches none of anyOf" % (where, value))
    if isinstance(value, dict):
        for key in sch.get("required", []):
            if key not in value:
                errors.append("%s: %s missing" % (where, key))
        props = sch.get("properties", {})
        for key, v in value.items():
            if key in props:
                errors += validate(v, props[key], root, "%s.%s" % (where, key))
            elif sch.get("additionalProperties") is False:
                errors.append("%s: %s is not in the schema" % (where, key))
    if isinstance(value, list):
        if "maxItems" in sch and len(value) > sch["maxItems"]:
            errors.append("%s: more than %d items" % (where, sch["maxItems"]))
        for i, v in enumerate(value):
            if "items" in sch:
                errors += validate(v, sch["items"], root, "%s[%d]" % (where, i))
    if "minimum" in sch and is_type(value, "number") and value < sch["minimum"]:
        errors.append("%s: %r is below %r" % (where, value, sch["minimum"]))
    if "pattern" in sch and isinstance(value, str) and not re.search(sch["pattern"], value):
        errors.append("%s: %r does not match %s" % (where, value, sch["pattern"]))
    return errors


def test_the_validator_refuses_what_the_schema_forbids():
    """The check has teeth: each kind of departure from the schema is caught."""
    s = schema()
    good = {"version": 1, "status": "ok", "exit_code": 0, "summary": "x",
            "now": "2026-12-07T12:00:00Z", "problems": [],
            "files": {"state_dir": "/s", "lock_file": "/s/l", "metrics_file": None,
                      "metrics_present": False, "history_file": "/s/h", "journal_dir": "/s/j",
                      "hold_off_file": "/s/o"},
            "lock": {"held": False, "pid": None}, "runs": [], "last_success": None,
            "run_interval_seconds": 300,
            "hold_off": {"active": False, "until": None, "delay_seconds": None},
            "journal": {"entries": [], "unreadable": []},
            "load_jobs": {"day": "2026-12-07", "today": 0, "quota": 1500, "warning_at": 1200,
                          "critical_at": 1425}}
    assert validate(good, s, s) == []
    bad = [("status", "fine"), ("exit_code", 4), ("now", "2026-12-07 12:00"),
           ("last_success", 17), ("runs", [{}]), ("extra", 1), ("problems", [{"level": "ok"}])]
    for key, value in bad:
        doc = json.loads(json.dumps(good))
        doc[key] = value
        assert validate(doc, s, s), (key, value)
    doc = json.loads(json.dumps(good))
    del doc["journal"]
    assert validate(doc, s, s)
    doc = json.loads(json.dumps(good))
    doc["load_jobs"]["today"] = -1
    assert validate(doc, s, s)


# ---------------------------------------------------------------- helpers

def status(loader, expect):
    """--status and --status --json, which must agree; both are checked as a monitoring
    system reads them. Returns (text result, JSON document)."""
    text = loader.status()
    lines = text.stdout.splitlines()
    assert lines and FIRST_LINE.match(lines[0]), text.stdout
    word = lines[0].split()[1]
    assert text.rc == CODES[word], (text.rc, text.stdout)
    js = loader.status("--json")
    doc = js.status_json
    s = schema()
    assert validate(doc, s, s) == [], (validate(doc, s, s), doc)
    assert js.rc == doc["exit_code"] == text.rc == expect, (text.stdout, doc)
    assert doc["status"] == word.lower()
    return text, doc


def codes(doc):
    return [p["code"] for p in doc["problems"]]


def publish(emulator, n=20, prefix="s"):
    now = emulator.now()
    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60))
    return emulator.publish(PIPELINE["topic"], [
        json.dumps({"id": "%s%04d" % (prefix, i), "contenido": "c", "timestamp": ts})
        for i in range(n)])


# ---------------------------------------------------------------- the states

def test_fresh_after_a_good_run_is_ok(emulator):
    make_pipeline(emulator)
    publish(emulator)
    loader = Loader(emulator, "status-fresh")
    r = loader.run()
    assert r.rc == 0, r
    text, doc = status(loader, 0)
    assert text.stdout.startswith("DATOS-LOADER OK - last run ok at ")
    assert "20 rows loaded" in text.stdout.splitlines()[0]
    assert "| load_jobs_today=1;1200;1425;0;1500 journal_entries=0 last_success_age=" \
        in text.stdout
    # where the files are, for the operator
    for path in (loader.state_dir, loader.metrics_file,
                 os.path.join(loader.state_dir, "datos-loader.lock")):
        assert path in text.stdout
    assert doc["problems"] == []
    assert doc["files"]["state_dir"] == loader.state_dir
    assert doc["files"]["metrics_file"] == loader.metrics_file
    assert doc["files"]["metrics_present"] is True
    assert doc["lock"] == {"held": False, "pid": None}
    run = doc["runs"][0]
    assert (run["outcome"], run["exit_code"], run["rows_loaded"], run["messages_pulled"],
            run["load_jobs"], run["drained"]) == ("ok", 0, 20, 20, 1, True)
    assert doc["last_success"] == run["finished"]
    assert doc["load_jobs"]["today"] == 1
    assert doc["hold_off"]["active"] is False
    assert doc["journal"] == {"entries": [], "unreadable": []}
    # a second run (nothing to load) is the newest line; the day's jobs stay 1
    assert loader.run().rc == 0
    _, doc = status(loader, 0)
    assert [x["rows_loaded"] for x in doc["runs"]] == [0, 20]
    assert doc["load_jobs"]["today"] == 1


def test_hold_off_warns_and_no_success_for_three_intervals_is_critical(emulator):
    make_pipeline(emulator)
    publish(emulator)
    loader = Loader(emulator, "status-hold-off", failure_backoff="1h",
                    failure_backoff_max="4h", retry_deadline="300ms")
    emulator.add_fault(endpoint="bigquery.jobs.insert.multipart", action="status", status=503,
                       count=0)
    try:
        first = loader.run()
        assert first.rc == 1, first
        text, doc = status(loader, 1)
        # the insert may have made the job: its entry waits for the next run to ask
        assert codes(doc) == ["last_run_failed", "hold_off", "journal_pending"]
        assert [e["committed"] for e in doc["journal"]["entries"]] == [False]
        assert "job in doubt" in text.stdout
        assert doc["hold_off"]["active"] is True
        assert doc["hold_off"]["delay_seconds"] == 3600
        assert "hold-off until %s" % doc["hold_off"]["until"] in text.stdout
        # the next run does not pull; it is recorded as held off
        second = loader.run()
        assert second.rc == 1 and second.one("held_off")
        _, doc = status(loader, 1)
        assert codes(doc) == ["hold_off"]
        assert [x["outcome"] for x in doc["runs"]] == ["held_off", "failed"]
        # the first run's job insert failed: no job reached BigQuery's quota
        assert doc["load_jobs"]["today"] == 0
    finally:
        emulator.clear_faults()
    # two hours on (run_interval 5 min): the hold-off is over, and no run has succeeded
    # for more than three intervals
    loader.age(2 * 3600)
    _, doc = status(loader, 2)
    assert codes(doc) == ["no_success"]
    assert doc["hold_off"]["active"] is False
    # a run_interval of 0 turns that check off: the held-off run was the last
    loader.write_config(run_interval="0")
    _, doc = status(loader, 0)
    loader.write_config(run_interval="5m")
    # the outage is over: the next run loads and all is well again
    emulator.advance_clock(700)
    r = loader.run()
    assert r.rc == 0, r
    _, doc = status(loader, 0)
    assert doc["runs"][0]["rows_loaded"] == 20


def test_a_journal_entry_waiting_after_failed_acks_warns_then_is_critical(emulator):
    """The load committed, then every acknowledge failed: the committed entry stays for
    the redeliveries. --status says so (WARNING), and CRITICAL once no run has settled it
    in time."""
    make_pipeline(emulator)
    valid = publish(emulator)
    loader = Loader(emulator, "status-journal", retry_deadline="300ms")
    emulator.add_fault(endpoint="pubsub.subscriptions.acknowledge", action="status", status=503,
                       count=0)
    try:
        r = loader.run()
        assert r.rc == 1, r
    finally:
        emulator.clear_faults()
    assert len(loader.journal_entries()) == 1
    text, doc = status(loader, 1)
    assert codes(doc) == ["last_run_failed", "journal_pending"]
    entry = doc["journal"]["entries"][0]
    assert entry["committed"] is True and entry["overdue"] is False
    assert entry["messages"] == len(valid)
    assert entry["file"] in text.stdout and "committed, awaiting acks" in text.stdout
    assert "journal_entries=1" in text.stdout.splitlines()[0]
    # an hour on, no run came: lease (10 min) + redeliveries (20 min) + one interval passed
    loader.age(3600)
    text, doc = status(loader, 2)
    assert codes(doc)[:2] == ["no_success", "journal_overdue"]
    assert doc["journal"]["entries"][0]["overdue"] is True
    assert "(overdue)" in text.stdout
    # the next run acks the redeliveries without loading them again, and settles it
    emulator.advance_clock(700)
    r = loader.run()
    assert r.rc == 0, r
    assert loader.journal_entries() == []
    _, doc = status(loader, 0)
    assert sorted(x["message_id"] for x in emulator.table_rows()) == sorted(valid)


def seed_jobs(loader, count):
    """The day's count as the loader keeps it in history.json, set to count (the day the
    loader wrote is kept)."""
    h = loader.history()
    h["load_jobs"]["count"] = count
    with open(os.path.join(loader.state_dir, "history.json"), "w") as f:
        json.dump(h, f)
    return h["load_jobs"]["day"]


def test_near_the_daily_load_job_quota(emulator):
    make_pipeline(emulator)
    publish(emulator, prefix="a")
    loader = Loader(emulator, "status-quota")
    assert loader.run().rc == 0
    assert loader.history()["load_jobs"]["count"] == 1
    day = seed_jobs(loader, 1199)
    _, doc = status(loader, 0)
    if doc["load_jobs"]["day"] != day:
        pytest.skip("the UTC day turned during the test")
    assert doc["load_jobs"]["today"] == 1199
    seed_jobs(loader, 1200)
    text, doc = status(loader, 1)
    assert codes(doc) == ["load_quota"]
    assert "load_jobs_today=1200;1200;1425;0;1500" in text.stdout.splitlines()[0]
    # a real run with one load job brings it to 95 %
    seed_jobs(loader, 1424)
    publish(emulator, prefix="b")
    assert loader.run().rc == 0
    if loader.history()["load_jobs"]["day"] != day:
        pytest.skip("the UTC day turned during the test")
    assert loader.history()["load_jobs"]["count"] == 1425
    # the textfile tells the status page and the dashboard the same count
    with open(loader.metrics_file) as f:
        prom = f.read()
    assert "\ndatos_loader_load_jobs_today 1425\n" in prom
    assert "\ndatos_loader_load_jobs_quota 1500\n" in prom
    assert "\ndatos_loader_last_run_drained 1\n" in prom
    text, doc = status(loader, 2)
    assert codes(doc) == ["load_quota"]
    assert text.stdout.startswith("DATOS-LOADER CRITICAL - 1425 of 1500 load jobs used today")


def test_a_run_at_work_holds_the_lock(emulator):
    make_pipeline(emulator)
    publish(emulator)
    loader = Loader(emulator, "status-lock")
    assert loader.run().rc == 0
    publish(emulator, prefix="w")
    emulator.clear_counters()
    # the run's first pull is held until the test has looked
    emulator.add_fault(endpoint="pubsub.subscriptions.pull", action="hold", hold_ms=600_000,
                       count=1)
    proc = loader.start()
    try:
        deadline = time.time() + 30
        while emulator.count("pubsub.subscriptions.pull") < 1 and time.time() < deadline:
            time.sleep(0.02)
        assert emulator.count("pubsub.subscriptions.pull") == 1, "the run never pulled"
        text, doc = status(loader, 0)
        assert doc["lock"] == {"held": True, "pid": proc.pid}
        assert "a run holds it: pid %d" % proc.pid in text.stdout
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        emulator.release_held()
        emulator.clear_faults()
    _, doc = status(loader, 0)
    assert doc["lock"]["held"] is False


def test_state_that_cannot_be_read_is_unknown(emulator):
    loader = Loader(emulator, "status-unknown")
    # no run has made the state directory yet
    text, doc = status(loader, 3)
    assert "state_dir %s does not exist" % loader.state_dir in text.stdout
    assert codes(doc) == ["state_unreadable"]
    # a directory without a history: no run recorded yet
    os.makedirs(loader.state_dir)
    _, doc = status(loader, 1)
    assert codes(doc) == ["no_runs"]
    # a history that is not one
    with open(os.path.join(loader.state_dir, "history.json"), "w") as f:
        f.write('{"version": 1, "runs": [')
    text, doc = status(loader, 3)
    assert "history.json: not JSON" in text.stdout
    # a hold-off that is not one
    os.remove(os.path.join(loader.state_dir, "history.json"))
    with open(os.path.join(loader.state_dir, "hold-off"), "w") as f:
        f.write("soon")
    status(loader, 3)
    os.remove(os.path.join(loader.state_dir, "hold-off"))
    # state_dir is a file
    os.rmdir(loader.state_dir)
    with open(loader.state_dir, "w") as f:
        f.write("")
    text, _ = status(loader, 3)
    assert "is not a directory" in text.stdout
    # a configuration that cannot be read is UNKNOWN too, said on stdout
    loader.write_config(text="state_dir = /x\nno_such_key = 1\n")
    text, doc = status(loader, 3)
    assert "configuration error" in text.stdout and "no_such_key" in text.stdout
    assert doc["files"]["state_dir"] is None


def test_status_takes_no_run_flags_and_json_needs_status(emulator):
    loader = Loader(emulator, "status-flags")
    r = loader.run("--status", "--once")
    assert r.rc == 3 and r.stdout.startswith("DATOS-LOADER UNKNOWN - configuration error: ")
    r = loader.run("--json")
    assert r.rc == 2 and r.one("config_error")
    r = loader.run("--help", config=False)
    assert "--status" in r.stdout and "--json" in r.stdout


def test_the_shipped_nrpe_check_runs_status_as_documented(emulator):
    """conf/nrpe/datos-loader.cfg's command, run with this test's config file in place of
    /etc/datos/loader.conf, is a working --status (and the sudoers line allows exactly it)."""
    with open(os.path.join(ROOT, "conf", "nrpe", "datos-loader.cfg")) as f:
        text = f.read()
    command = re.search(r"^command\[check_datos_loader\]=(.*)$", text, re.M).group(1).split()
    args = command[command.index("/usr/local/bin/datos-loader") + 1:]
    assert args == ["--config", "/etc/datos/loader.conf", "--status"]
    assert re.search(r"^#\s+nagios ALL=\(datos\) NOPASSWD: %s$" % re.escape(" ".join(
        command[command.index("/usr/local/bin/datos-loader"):])), text, re.M)
    make_pipeline(emulator)
    loader = Loader(emulator, "status-nrpe")
    assert loader.run().rc == 0
    r = loader.run(*args[2:])
    assert r.rc == 0 and r.stdout.startswith("DATOS-LOADER OK - ")
