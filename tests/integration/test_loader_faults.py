"""The loader loses nothing (issue: fault matrix, kill -9 at every step,
failed jobs, a poison row, quota, an outage, redrive, SIGTERM, a corrupt
journal). Every scenario ends with a check against what was published:
every valid message is in the table exactly once, every invalid one is in
the dead-letter topic, and the subscription holds nothing."""
import base64
import datetime
import json
import os
import signal
import time

import pytest

from harness.loader import PIPELINE, Loader, make_pipeline

LEASE_EXPIRY = 700          # seconds of emulator clock past any lease the loader takes


def rfc3339(epoch):
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ")


def publish_mix(emulator, valid=20, invalid=3, width=20):
    now = emulator.now()
    msgs = [json.dumps({"id": "v%04d" % i, "contenido": "c" * width,
                        "timestamp": rfc3339(now - 100 - i)}) for i in range(valid)]
    msgs += ['{"id": "bad%d", "timestamp": "not a time"}' % i for i in range(invalid)]
    ids = emulator.publish(PIPELINE["topic"], msgs)
    return ids[:valid], ids[valid:]


def check_exactly_once(emulator, valid_ids, invalid_ids):
    rows = emulator.table_rows()
    loaded = [r["message_id"] for r in rows]
    assert sorted(loaded) == sorted(valid_ids), (
        "missing %s, duplicated %s" % (sorted(set(valid_ids) - set(loaded))[:5],
                                       sorted({x for x in loaded if loaded.count(x) > 1})[:5]))
    dead = emulator.drain(PIPELINE["dead_letter_subscription"])
    sources = {d["message"]["attributes"].get("datos_source_message_id") for d in dead}
    assert sources == set(invalid_ids), (sources, invalid_ids)
    assert all(d["message"]["attributes"].get("datos_error") for d in dead)
    emulator.advance_clock(LEASE_EXPIRY)
    assert emulator.pull(PIPELINE["subscription"]) == []


def rerun_clean(emulator, loader):
    emulator.clear_faults()
    emulator.settle_faults()                      # what a held request does lands first
    emulator.configure(require_auth=False)
    emulator.advance_clock(LEASE_EXPIRY)          # leases the faulty run took lapse
    r = loader.run()
    assert r.rc == 0, r
    return r


# ---------------------------------------------------------------- the fault matrix

FAULTS = {
    "500": dict(action="status", status=500, reason="backendError"),
    "503": dict(action="status", status=503),
    "429": dict(action="status", status=429),
    "403-rate-limit": dict(action="status", status=403, reason="rateLimitExceeded"),
    # held until rerun_clean releases it, long after the loader's http_timeout
    "timeout": dict(action="hold"),
    "drop": dict(action="drop"),
    "malformed": dict(action="malformed"),
    # the request is carried out, then the connection drops before the answer:
    # the loader cannot know it happened (a job made, a publish or an ack done)
    "done-then-drop": dict(action="commit_then_drop"),
}

STEPS = {
    "pull": "pubsub.subscriptions.pull",
    "modack": "pubsub.subscriptions.modifyAckDeadline",
    "dead-letter-publish": "pubsub.topics.publish",
    "insert-multipart": "bigquery.jobs.insert.multipart",
    "insert-resumable": "bigquery.jobs.insert.resumable",
    "upload-resumable": "bigquery.jobs.insert.resumable.upload",
    "jobs.get": "bigquery.jobs.get",
    "ack": "pubsub.subscriptions.acknowledge",
    "token": "oauth2.token",
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("step", sorted(STEPS))
def test_fault_matrix(emulator, step, fault):
    make_pipeline(emulator)
    valid, invalid = publish_mix(emulator)
    settings = dict(http_timeout="1s", pull_timeout="1s", retry_deadline="1500ms")
    if step in ("insert-resumable", "upload-resumable"):
        settings["resumable_above"] = "1"
    if step == "jobs.get":
        # the job is RUNNING for a moment, so the loader has to poll it
        emulator.configure(load_job_running_seconds=1)
    if step == "token":
        settings["credentials"] = emulator.key_file
    loader = Loader(emulator, "matrix", **settings)
    emulator.add_fault(endpoint=STEPS[step], count=0, **FAULTS[fault])
    if step == "token":
        emulator.configure(require_auth=True)
    try:
        first = loader.run()
        if step == "token" and fault == "403-rate-limit":
            # the token endpoint refusing the key is a credentials error,
            # for the administrator to look at (2); the messages wait
            assert first.rc == 2, first.stderr
            assert first.one("bigquery_failed")["status"] == "auth"
        else:
            # a failed step leaves work for the next run (1); a step whose
            # failure is tolerated (lease extension) may end clean (0)
            assert first.rc in (0, 1), first.stderr
        if step in ("pull", "token", "insert-multipart", "insert-resumable",
                    "upload-resumable", "jobs.get", "dead-letter-publish") \
                and fault not in ("timeout", "done-then-drop") \
                and (step, fault) != ("token", "403-rate-limit"):
            assert first.rc == 1, first.stderr
    finally:
        emulator.configure(load_job_running_seconds=0)
    if step == "token":
        loader.write_config(credentials="none")
    rerun_clean(emulator, loader)
    check_exactly_once(emulator, valid, invalid)


# ---------------------------------------------------------------- kill -9 and SIGTERM

KILL_POINTS = {
    # step: the endpoint held (delayed) while the loader is killed in it, and how many
    # earlier calls to it go through first
    "pull": ("pubsub.subscriptions.pull", 0),
    "lease": ("pubsub.subscriptions.modifyAckDeadline", 0),
    "dead-letter-publish": ("pubsub.topics.publish", 0),
    "load-insert": ("bigquery.jobs.insert.multipart", 0),
    "load-poll": ("bigquery.jobs.get", 0),
    # the dead letters are acked first; the second ack is the loaded batch's
    "between-load-done-and-ack": ("pubsub.subscriptions.acknowledge", 1),
}


def wait_until_held(emulator, endpoint, calls, timeout=60):
    """Until the emulator has seen `calls` requests to endpoint (it counts a request
    when it arrives, before a hold fault holds it)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if emulator.count(endpoint) >= calls:
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("how", ["kill-9", "sigterm"])
@pytest.mark.parametrize("point", sorted(KILL_POINTS))
def test_killed_at_every_step(emulator, point, how):
    make_pipeline(emulator)
    valid, invalid = publish_mix(emulator, valid=50, invalid=2)
    loader = Loader(emulator, "kill", http_timeout="10s")
    if point == "load-poll":
        emulator.configure(load_job_running_seconds=1)
    endpoint, skip = KILL_POINTS[point]
    emulator.clear_counters()
    # held until the test releases it (rerun_clean), however long the kill takes
    emulator.add_fault(endpoint=endpoint, action="hold", count=1, skip=skip)
    proc = loader.start()
    try:
        assert wait_until_held(emulator, endpoint, skip + 1), \
            "the loader never reached " + point
        if how == "kill-9":
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        else:
            os.killpg(proc.pid, signal.SIGTERM)
            # the held request then completes: the run finishes its step and stops
            emulator.settle_faults()
            r = loader.background_result(proc, timeout=60)
            assert r.rc in (0, 1), r
            assert r.one("run_finished")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        emulator.configure(load_job_running_seconds=0)
    rerun_clean(emulator, loader)       # the held request completes in the emulator first
    check_exactly_once(emulator, valid, invalid)
    assert loader.journal() == [] or all(n.endswith(".json") for n in loader.journal())


# ---------------------------------------------------------------- job outcomes

def test_a_job_failed_with_backend_error_is_resubmitted_and_loads_once(emulator):
    make_pipeline(emulator)
    valid, invalid = publish_mix(emulator)
    emulator.add_fault(endpoint="bigquery.jobs.insert.multipart", action="job_error",
                       reason="backendError", count=1)
    loader = Loader(emulator, "backend-error")
    r = loader.run()
    assert r.rc == 0, r
    retry = r.one("load_job_retry")
    loaded = r.one("batch_loaded")
    assert retry["job_id"].endswith("_g0") and loaded["job_id"].endswith("_g1")
    assert retry["job_id"][:-3] == loaded["job_id"][:-3]
    check_exactly_once(emulator, valid, invalid)
    m = loader.metrics()
    assert m['datos_loader_load_jobs_total{outcome="retried"}'] == 1
    assert m['datos_loader_load_jobs_total{outcome="succeeded"}'] == 1


def test_a_poison_row_is_dead_lettered_and_the_rest_loads(emulator):
    """BigQuery refuses one row the record rules accept (the table's id is STRING(12)):
    999 rows load, the one goes to the dead-letter topic as bigquery_rejected."""
    make_pipeline(emulator)
    emulator._api("DELETE", "/projects/%s/datasets/latam_dataset/tables/datos" % emulator.project,
                  expect=(200, 204))
    from gcpemu.client import DATOS_SCHEMA
    fields = [dict(f) for f in DATOS_SCHEMA]
    fields[0]["maxLength"] = "12"
    emulator._api("POST", "/projects/%s/datasets/latam_dataset/tables" % emulator.project,
                  {"tableReference": {"projectId": emulator.project, "datasetId": "latam_dataset",
                                      "tableId": "datos"}, "schema": {"fields": fields}})
    now = emulator.now()
    msgs = [json.dumps({"id": "ok-%04d" % i, "timestamp": rfc3339(now - 60)})
            for i in range(1000)]
    msgs[617] = json.dumps({"id": "much-too-long-for-the-column", "timestamp": rfc3339(now - 60)})
    ids = emulator.publish(PIPELINE["topic"], msgs)
    loader = Loader(emulator, "poison")
    r = loader.run()
    assert r.rc == 0, r
    rows = emulator.table_rows()
    assert len(rows) == 999
    assert sorted(x["message_id"] for x in rows) == sorted(ids[:617] + ids[618:])
    dead = emulator.drain(PIPELINE["dead_letter_subscription"])
    assert len(dead) == 1
    attrs = dead[0]["message"]["attributes"]
    assert attrs["datos_error"] == "bigquery_rejected"
    assert attrs["datos_source_message_id"] == ids[617]
    assert "maximum length 12" in attrs["datos_error_detail"]
    assert base64.b64decode(dead[0]["message"]["data"]).decode() == msgs[617]
    assert loader.metrics()['datos_loader_messages_invalid_total{reason="bigquery_rejected"}'] == 1


def test_quota_exhausted_stops_and_the_messages_wait(emulator):
    make_pipeline(emulator)
    valid, invalid = publish_mix(emulator)
    emulator.set_load_counter("%s:latam_dataset.datos" % emulator.project, 1500)
    loader = Loader(emulator, "quota")
    r = loader.run()
    assert r.rc == 1, r
    assert r.one("load_quota_exhausted")
    assert emulator.table_rows() == []
    # the valid messages were given back, not dead-lettered: they wait in Pub/Sub
    waiting = emulator.pull(PIPELINE["subscription"])
    assert sorted(m["message"]["messageId"] for m in waiting) == sorted(valid)
    emulator.modify_ack_deadline(PIPELINE["subscription"], [m["ackId"] for m in waiting], 0)
    # a new day: the quota replenished
    emulator.set_load_counter("%s:latam_dataset.datos" % emulator.project, 0)
    assert loader.run().rc == 0
    check_exactly_once(emulator, valid, invalid)


def expire_hold_off(loader):
    """What the passing of time does to the loader's hold-off (state_dir/hold-off, the
    loader's own record of when it may pull again): its end moves to now. The doubling
    it keeps ("delay") is left as it is."""
    path = os.path.join(loader.state_dir, "hold-off")
    with open(path) as f:
        hold = json.load(f)
    hold["until"] = int(time.time() * 1_000_000) - 1
    with open(path, "w") as f:
        json.dump(hold, f)
    return hold["delay"]


def test_an_outage_longer_than_the_redelivery_window_dead_letters_nothing_valid(emulator):
    """The subscription forwards a message after 5 delivery attempts. BigQuery fails for
    longer than 5 cron ticks; runs after a failed one do not pull (failure_backoff), so
    no valid message reaches the dead-letter topic.

    Time is the test's own: a cron tick every 30 s of a simulated clock, 11 ticks (5
    minutes), and a hold-off the loader sets ends when that clock reaches it
    (expire_hold_off); the loader's minute-long hold-offs never end by themselves during
    the test, however slow the machine."""
    make_pipeline(emulator, max_delivery_attempts=5)
    valid, invalid = publish_mix(emulator)
    loader = Loader(emulator, "outage", failure_backoff="60s", failure_backoff_max="120s",
                    retry_deadline="300ms")
    emulator.add_fault(endpoint="bigquery.jobs.insert.multipart", action="status", status=503,
                       count=0)
    tick, clock, held_until = 30, 0, None
    pulled_at, delays = [], []
    for _ in range(11):
        if held_until is not None and clock >= held_until:
            expire_hold_off(loader)
        r = loader.run()
        assert r.rc == 1, r
        if r.named("held_off"):
            assert held_until is not None and clock < held_until, r
            assert r.finished["messages_pulled"] == 0
        else:
            assert held_until is None or clock >= held_until, r
            assert r.finished["messages_pulled"] > 0, r
            pulled_at.append(clock)
            with open(os.path.join(loader.state_dir, "hold-off")) as f:
                delay = json.load(f)["delay"] // 1_000_000
            delays.append(delay)
            held_until = clock + delay
        clock += tick
    # 11 ticks, but only 4 deliveries: at 0, then after 60 s, 120 s (doubled) and 120 s
    # (failure_backoff_max); a pull per tick would have dead-lettered every message at
    # the fifth
    assert pulled_at == [0, 60, 180, 300], pulled_at
    assert delays == [60, 120, 120, 120], delays
    emulator.clear_faults()
    expire_hold_off(loader)
    r = loader.run()
    assert r.rc == 0, r
    assert not os.path.exists(os.path.join(loader.state_dir, "hold-off"))
    check_exactly_once(emulator, valid, invalid)


def test_redrive_puts_policy_dead_letters_back(emulator):
    make_pipeline(emulator, max_delivery_attempts=5)
    now = emulator.now()
    good = [json.dumps({"id": "r%d" % i, "timestamp": rfc3339(now - 60)}) for i in range(3)]
    ids = emulator.publish(PIPELINE["topic"], [{"data": g, "attributes": {"k": "v"}}
                                               for g in good])
    # five failed deliveries: the subscription's own policy moves them
    for _ in range(6):
        got = emulator.pull(PIPELINE["subscription"])
        if got:
            emulator.modify_ack_deadline(PIPELINE["subscription"], [m["ackId"] for m in got], 0)
    assert emulator.pull(PIPELINE["subscription"]) == []
    # and one the loader rejected, which must stay
    emulator.publish(PIPELINE["topic"], ["not json"])
    loader = Loader(emulator, "redrive")
    assert loader.run().rc == 0                           # dead-letters "not json"
    r = loader.run("--redrive")
    assert r.rc == 0, r
    assert r.one("redrive_finished")
    assert loader.run().rc == 0                           # loads the three
    rows = emulator.table_rows()
    assert sorted(x["id"] for x in rows) == ["r0", "r1", "r2"]
    dead = emulator.drain(PIPELINE["dead_letter_subscription"])
    assert [d["message"]["attributes"]["datos_error"] for d in dead] == ["not_json"]
    assert loader.metrics()["datos_loader_messages_redriven_total"] == 3
    assert set(ids)            # the redriven copies are new messages with the same data


def test_a_corrupt_journal_entry_is_moved_aside_and_never_trusted(emulator):
    make_pipeline(emulator)
    valid, invalid = publish_mix(emulator)
    loader = Loader(emulator, "corrupt-journal")
    journal = os.path.join(loader.state_dir, "journal")
    os.makedirs(journal)
    with open(os.path.join(journal, "datos_feedface_g0.json"), "w") as f:
        f.write('{"version": 1, "job_id": "truncat')
    r = loader.run()
    assert r.rc == 0, r
    assert "datos_feedface_g0.json" in r.one("journal_corrupt")["message"]
    assert os.path.exists(os.path.join(journal, "datos_feedface_g0.json.corrupt"))
    check_exactly_once(emulator, valid, invalid)
