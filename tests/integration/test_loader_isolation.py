"""No single message keeps the others from loading, pulls fit any record size, the journal
holds across real lease timing, and several hosts running the cron line stay correct
(issue: poison isolation, bounded pulls, the journal, many hosts; docs/design.md section 5).

The real binary against the emulator. The subscription is terraform's where timing matters
(make_pipeline(shipped=True): its ack deadline and retry back-off), the loader keeps its
default lease (600 s), and time moves only by the emulator's clock (emu.advance_clock) and the
loader's own state (Loader.age)."""
import base64
import datetime
import json
import os
import signal
import subprocess
import time

import pytest

from harness.loader import PIPELINE, Loader, make_pipeline

LEASE = 600                 # the loader's default lease
PAST_LEASE = LEASE + 10 + 1  # past it and the shipped minimum back-off


def rfc3339(epoch):
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ")


def valid(emulator, n, prefix="v", contenido="c"):
    now = emulator.now()
    return [json.dumps({"id": "%s%05d" % (prefix, i), "contenido": contenido,
                        "timestamp": rfc3339(now - 100 - i)}) for i in range(n)]


def loaded_ids(emulator):
    return [r["message_id"] for r in emulator.table_rows()]


def check_once(emulator, valid_ids, invalid_ids=()):
    """Every valid message in the table once, every invalid one in the dead-letter topic by
    the loader, and nothing left in the subscription."""
    loaded = loaded_ids(emulator)
    assert sorted(loaded) == sorted(valid_ids), (
        "missing %d, duplicated %d" % (len(set(valid_ids) - set(loaded)),
                                       len(loaded) - len(set(loaded))))
    dead = emulator.drain(PIPELINE["dead_letter_subscription"])
    assert sorted(d["message"]["attributes"]["datos_source_message_id"] for d in dead) \
        == sorted(invalid_ids)
    emulator.advance_clock(PAST_LEASE + 600)
    assert emulator.pull(PIPELINE["subscription"]) == []


def wait_for(emulator, endpoint, calls, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if emulator.count(endpoint) >= calls:
            return True
        time.sleep(0.05)
    return False


def publish_size(topic, data_len, attrs):
    """A PublishRequest's size as Pub/Sub counts it (docs/google-apis.md 1.4)."""
    def field(n):
        k, v = 1, n
        while v >= 0x80:
            v >>= 7
            k += 1
        return 1 + k + n
    inner = field(data_len) + sum(field(field(len(k)) + field(len(v)))
                                  for k, v in attrs.items())
    return field(len(topic)) + field(inner)


# ------------------------------------------------------------------ poison isolation

def test_a_message_with_too_many_attributes_travels_in_an_envelope(emulator):
    """96 attributes of its own leave no room for the loader's five: the dead letter keeps
    what fits and carries everything, the reason and the data in a JSON envelope, and the 100
    valid messages beside it load in the same run."""
    make_pipeline(emulator)
    good = valid(emulator, 100)
    own = {"k%02d" % i: "value %d" % i for i in range(99)}
    bad_data = b'{"id": "x", "timestamp": "not a time"}'
    ids = emulator.publish(PIPELINE["topic"], good + [{"data": bad_data, "attributes": own}])
    loader = Loader(emulator, "envelope")
    r = loader.run()
    assert r.rc == 0, r
    assert r.finished["rows_loaded"] == 100
    assert r.finished["dead_lettered"] == 1 and r.finished["unrouted"] == 0
    dead = emulator.drain(PIPELINE["dead_letter_subscription"])
    assert len(dead) == 1
    attrs = dead[0]["message"]["attributes"]
    assert len(attrs) == 100
    assert attrs["datos_envelope"] == "1"
    assert attrs["datos_error"] == "bad_timestamp"
    assert attrs["datos_source_message_id"] == ids[-1]
    kept = [k for k in attrs if k.startswith("k")]
    assert kept == sorted(kept) and len(kept) == 94          # the first ones, in their order
    env = json.loads(base64.b64decode(dead[0]["message"]["data"]))
    assert env["datos_envelope"] == 1
    assert env["error"] == "bad_timestamp" and env["detail"] == attrs["datos_error_detail"]
    assert env["source_message_id"] == ids[-1]
    assert env["source_subscription"].endswith("/" + PIPELINE["subscription"])
    assert env["attributes"] == own                          # all 99, nothing lost
    assert base64.b64decode(env["data"]) == bad_data
    check_once(emulator, ids[:100])


def test_a_message_too_large_to_dead_letter_is_left_to_the_policy(emulator):
    """An invalid message so large that no dead letter of it fits one publish request: every
    run loads the valid ones, gives it back and exits 3 saying so, until the subscription's
    own policy forwards it after maxDeliveryAttempts."""
    make_pipeline(emulator, max_delivery_attempts=5)
    topic = "projects/%s/topics/%s" % (emulator.project, PIPELINE["topic"])
    attrs = {"case": "big"}
    n = 10_000_000 - 200
    while publish_size(topic, n, attrs) > 10_000_000:
        n -= 1
    big = b"x" * n                                             # not JSON
    good = valid(emulator, 100)
    ids = emulator.publish(PIPELINE["topic"], good + [{"data": big, "attributes": attrs}])
    loader = Loader(emulator, "too-large-to-dead-letter")
    runs = 0
    while emulator.subscription_stats(PIPELINE["subscription"])["backlog"] and runs < 8:
        r = loader.run()
        runs += 1
        if runs == 1:
            assert r.rc == 3, r
            assert r.finished["rows_loaded"] == 100
            assert r.finished["unrouted"] == 1 and r.finished["dead_lettered"] == 0
            refused = r.one("dead_letter_refused")
            assert refused["message_id"] == ids[-1] and refused["reason"] == "not_json"
            assert "10000000" in refused["message"]
            assert loader.metrics()["datos_loader_messages_unrouted_total"] == 1
        else:
            assert r.rc in (0, 3), r
            assert r.finished["rows_loaded"] == 0
    # five deliveries (a run may see it twice), then Pub/Sub's own dead-letter policy
    # took it, data and all
    assert 3 <= runs <= 5
    dead = emulator.drain(PIPELINE["dead_letter_subscription"])
    assert len(dead) == 1
    attrs = dead[0]["message"]["attributes"]
    assert attrs["CloudPubSubDeadLetterSourceDeliveryCount"] == "5"
    assert "datos_error" not in attrs
    assert len(base64.b64decode(dead[0]["message"]["data"])) == n
    assert sorted(loaded_ids(emulator)) == sorted(ids[:100])


@pytest.mark.parametrize("refusals", [1, 3])
def test_a_refused_dead_letter_batch_goes_one_message_at_a_time(emulator, refusals):
    """Pub/Sub refuses the batch publish (400): the loader sends the dead letters one by one,
    so only a message refused on its own stays behind."""
    make_pipeline(emulator)
    good = valid(emulator, 20)
    bad = ['{"id": "b%d", "timestamp": "never"}' % i for i in range(3)]
    ids = emulator.publish(PIPELINE["topic"], good + bad)
    # the batch, then (with 3) the first message alone and as an envelope
    emulator.add_fault(endpoint="pubsub.topics.publish", status=400, count=refusals)
    r = Loader(emulator, "one-at-a-time").run()
    emulator.clear_faults()
    if refusals == 1:
        assert r.rc == 0, r
        assert r.finished["dead_lettered"] == 3
        check_once(emulator, ids[:20], ids[20:])
    else:
        assert r.rc == 3, r
        assert r.finished["dead_lettered"] == 2 and r.finished["unrouted"] == 1
        assert r.one("dead_letter_refused")["message_id"] == ids[20]
        assert sorted(loaded_ids(emulator)) == sorted(ids[:20])
        # the next run dead-letters it
        assert Loader(emulator, "one-at-a-time-2").run().rc == 0
        check_once(emulator, ids[:20], ids[20:])


# ------------------------------------------------------------------ pulls that fit

MB = 1000 * 1000


@pytest.mark.parametrize("answers", ["google-sized", "unbounded", "unbounded-shipped"])
def test_80_records_of_1mb_load(emulator, answers):
    """80 valid records of about 1 MB: 107 MB of pull answer if the server sends them all at
    once. Answers of Google's size (about 20 MB) load in one run; an answer past the loader's
    pull_max_bytes (64 MiB) is cut after its last whole message, the rest given back, and the
    next pulls ask for fewer; with the shipped back-off the rest comes in the next run."""
    make_pipeline(emulator, shipped=answers.endswith("shipped"))
    # An answer of 107 MB can take minutes to arrive on a busy machine (the sanitizers, the
    # emulator's JSON): the clock stands still meanwhile, so no lease runs out while the
    # answer is on its way, and the loader waits for it as long as it may.
    emulator.freeze_clock()
    if answers.startswith("unbounded"):
        emulator.configure(pull_max_bytes=0)
    ids = emulator.publish(PIPELINE["topic"], valid(emulator, 80, contenido="x" * MB))
    loader = Loader(emulator, "one-mb", pull_timeout="600s", retry_deadline="600s")
    r = loader.run(timeout=900)
    assert r.rc == 0, r
    if answers == "google-sized":
        assert r.finished["rows_loaded"] == 80 and not r.named("pull_released")
    else:
        released = r.named("pull_released")
        assert released and released[0]["answer_bytes"] > 64 * 1024 * 1024, r.stderr[-6000:]
        sizes = [e["max_messages"] for e in r.named("pull_size")]
        assert sizes and sizes[0] == 500
    if answers == "unbounded-shipped":
        assert 0 < r.finished["rows_loaded"] < 80
        emulator.advance_clock(11)                 # the back-off of what was given back
        r = loader.run(timeout=900)
        assert r.rc == 0, r
    rows = emulator.table_rows()
    assert all(len(x["contenido"]) == MB for x in rows)
    emulator.configure(pull_max_bytes=20_000_000)
    check_once(emulator, ids)


def test_a_message_past_pull_max_bytes_is_dead_lettered_as_too_large(emulator):
    make_pipeline(emulator)
    good = valid(emulator, 10)
    big = valid(emulator, 1, prefix="big", contenido="y" * (900 * 1000))[0]
    ids = emulator.publish(PIPELINE["topic"], good + [big])
    loader = Loader(emulator, "too-large", pull_max_bytes="1M")
    r = loader.run()
    assert r.rc == 0, r
    assert r.finished["rows_loaded"] == 10 and r.finished["dead_lettered"] == 1
    dead = emulator.drain(PIPELINE["dead_letter_subscription"])
    assert dead[0]["message"]["attributes"]["datos_error"] == "too_large"
    assert "pull_max_bytes" in dead[0]["message"]["attributes"]["datos_error_detail"]
    assert base64.b64decode(dead[0]["message"]["data"]).decode() == big
    assert loader.metrics()['datos_loader_messages_invalid_total{reason="too_large"}'] == 1
    assert sorted(loaded_ids(emulator)) == sorted(ids[:10])


# ------------------------------------------------------------------ the journal and real timing

def test_killed_after_commit_before_acks_inside_and_after_the_lease(emulator):
    """The job committed, the run died before its acks. Runs inside the lease see nothing of
    those messages and keep the journal entry; once the lease and the back-off are over, the
    redeliveries are acked without a second load, and the entry goes."""
    make_pipeline(emulator, shipped=True)
    good = valid(emulator, 30)
    bad = ['{"id": "bad%d", "timestamp": "no"}' % i for i in range(2)]
    ids = emulator.publish(PIPELINE["topic"], good + bad)
    loader = Loader(emulator, "kill-after-commit")
    emulator.clear_counters()
    # the dead letters' ack goes through; the loaded batch's never does
    emulator.add_fault(endpoint="pubsub.subscriptions.acknowledge", status=503, count=0,
                       skip=1)
    proc = loader.start()
    try:
        assert wait_for(emulator, "pubsub.subscriptions.acknowledge", 3)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    emulator.clear_faults()
    assert sorted(loaded_ids(emulator)) == sorted(ids[:30])
    entries = loader.journal_entries()
    assert len(entries) == 1 and entries[0]["committed"] and entries[0]["committed_at"]

    for advance in (0, 100):             # inside the lease: before and after the ack deadline
        emulator.advance_clock(advance)
        r = loader.run()
        assert r.rc == 0, r
        assert r.finished["messages_pulled"] == 0 and r.finished["rows_loaded"] == 0
        assert len(loader.journal_entries()) == 1, "forgotten while its messages are leased"

    emulator.advance_clock(PAST_LEASE - 100)
    r = loader.run()
    assert r.rc == 0, r
    assert r.finished["rows_loaded"] == 0 and r.named("already_loaded")
    assert loader.journal() == []
    check_once(emulator, ids[:30], ids[30:])


def test_sigterm_during_a_poll_ends_the_run_and_the_next_settles_it(emulator):
    """A stop while the load job runs ends the run at once (the unit allows 120 s), leaving
    the job to the journal and the messages leased; the next runs settle it."""
    make_pipeline(emulator, shipped=True)
    ids = emulator.publish(PIPELINE["topic"], valid(emulator, 20))
    loader = Loader(emulator, "sigterm-poll")
    emulator.configure(load_job_running_seconds=300)
    emulator.clear_counters()
    proc = loader.start()
    try:
        assert wait_for(emulator, "bigquery.jobs.get", 1)
        os.killpg(proc.pid, signal.SIGTERM)
        r = loader.background_result(proc, timeout=100)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        emulator.configure(load_job_running_seconds=0)
    assert r.rc == 1, r
    assert r.finished.get("stopped_by_signal") is True
    assert r.one("load_in_doubt")
    assert len(loader.journal_entries()) == 1
    emulator.advance_clock(301)                         # the job is DONE; the leases hold
    r = loader.run()
    assert r.rc == 0, r
    assert r.one("journal_resolved")["committed"] is True
    assert r.finished["messages_pulled"] == 0
    assert len(loader.journal_entries()) == 1
    emulator.advance_clock(PAST_LEASE)
    r = loader.run()
    assert r.rc == 0 and r.named("already_loaded"), r
    assert loader.journal() == []
    check_once(emulator, ids)


def test_a_committed_entry_is_forgotten_once_its_messages_cannot_come_back(emulator):
    """An entry whose messages were acked before a crash (nothing comes back for it) stays
    while they could, and goes after its lease, Pub/Sub's longest back-off and a margin."""
    make_pipeline(emulator, shipped=True)
    loader = Loader(emulator, "forget")
    journal = os.path.join(loader.state_dir, "journal")
    os.makedirs(journal)
    now_us = int(time.time() * 1_000_000)
    entry = {"version": 1, "job_id": "datos_" + "ab" * 32 + "_g0", "generation": 0,
             "location": "southamerica-east1",
             "table": "%s.latam_dataset.datos" % emulator.project, "committed": True,
             "written": now_us, "committed_at": now_us, "lease": LEASE * 1_000_000,
             "message_ids": ["11000000000000999"]}
    with open(os.path.join(journal, "datos_" + "ab" * 32 + ".json"), "w") as f:
        json.dump(entry, f)
    assert loader.run().rc == 0
    assert len(loader.journal()) == 1
    loader.age(LEASE + 600 + 600 - 60)                  # not yet
    assert loader.run().rc == 0
    assert len(loader.journal()) == 1
    loader.age(120)
    r = loader.run()
    assert r.rc == 0
    assert r.one("journal_settled")["outcome"] == "forgotten"
    assert loader.journal() == []


# ------------------------------------------------------------------ many hosts

def test_four_loaders_at_once_load_every_record_once(emulator):
    """The cron line on four hosts, each with its own state: 30,000 valid and 300 invalid
    records, every valid one loaded once, every invalid one dead-lettered once."""
    make_pipeline(emulator, shipped=True)
    now = emulator.now()
    msgs = [json.dumps({"id": "m%06d" % i, "contenido": "dato %d" % i,
                        "timestamp": rfc3339(now - 600)}) for i in range(30_000)]
    msgs += ['{"id": "bad%d"}' % i for i in range(300)]
    ids = emulator.publish(PIPELINE["topic"], msgs)
    loaders = [Loader(emulator, "host%d" % i, batch_max_rows=5000, pull_timeout="600s")
               for i in range(4)]
    # Each host's first pull is held until all four have asked, so that every host takes
    # part however the machine schedules their starts.
    emulator.clear_counters()
    emulator.add_fault(endpoint="pubsub.subscriptions.pull", action="hold",
                       hold_ms=600_000, count=4)
    procs = [(ld, ld.start()) for ld in loaders]
    try:
        assert wait_for(emulator, "pubsub.subscriptions.pull", 4, timeout=300)
        emulator.release_held()
        results = [ld.background_result(p, timeout=600) for ld, p in procs]
    finally:
        emulator.settle_faults()
        for _, p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    for r in results:
        assert r.rc == 0, r
    assert sum(r.one("run_finished")["rows_loaded"] for r in results) == 30_000
    assert all(r.one("run_finished")["rows_loaded"] for r in results)
    check_once(emulator, ids[:30_000], ids[30_000:])


@pytest.mark.parametrize("batch", ["same", "with-newer-messages"])
def test_a_run_that_loses_its_lease_to_another_host_mid_job(emulator, batch):
    """Host A's load job outlives its lease (it renewed nothing for longer than the lease: a
    host suspended, or Pub/Sub unreachable from it), so Pub/Sub hands the messages to host B.
    When B's batch is A's (the redeliveries come first, and together), B's job has A's name:
    BigQuery answers 409, B waits for A's job and acks what it committed - every row once.
    When B's batch holds newer messages too, it is another job, and A's batch is loaded twice,
    each row under its message_id, which readers dedupe on (docs/design.md section 5, "Many
    hosts"). Either way nothing is lost and nothing valid is dead-lettered."""
    make_pipeline(emulator, shipped=True)
    ids = emulator.publish(PIPELINE["topic"], valid(emulator, 50))
    a = Loader(emulator, "host-a")
    b = Loader(emulator, "host-b")
    emulator.configure(load_job_running_seconds=1000)
    emulator.clear_counters()
    procs = [a.start()]
    try:
        assert wait_for(emulator, "bigquery.jobs.get", 1)    # A polls its job
        if batch != "same":
            ids += emulator.publish(PIPELINE["topic"], valid(emulator, 10, prefix="n"))
        emulator.configure(load_job_running_seconds=0)
        emulator.advance_clock(PAST_LEASE)            # A's leases are over, its job runs on
        if batch == "same":
            procs.append(b.start())
            assert wait_for(emulator, "bigquery.jobs.insert.multipart", 2)
            assert wait_for(emulator, "bigquery.jobs.get", emulator.count("bigquery.jobs.get")
                            + 1)
        else:
            rb = b.run()
            assert rb.rc == 0, rb
            assert rb.finished["rows_loaded"] == 60
        # A's job is DONE (1,000 s after it began), B's lease still holds
        emulator.advance_clock(1000 - PAST_LEASE + 10)
        ra = a.background_result(procs[0], timeout=100)
        if batch == "same":
            rb = b.background_result(procs[1], timeout=100)
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    assert ra.rc == 0 and rb.rc == 0, (ra, rb)
    loaded = loaded_ids(emulator)
    assert sorted(set(loaded)) == sorted(ids)
    if batch == "same":
        assert sorted(loaded) == sorted(ids)
        assert rb.one("batch_loaded")["job_id"] == ra.one("batch_loaded")["job_id"]
    else:
        assert len(loaded) == 110 and all(loaded.count(i) == 2 for i in ids[:50])
    assert emulator.drain(PIPELINE["dead_letter_subscription"]) == []
    assert a.journal() == [] and b.journal() == []
    emulator.advance_clock(PAST_LEASE + 600)
    assert emulator.pull(PIPELINE["subscription"]) == []


def test_an_outage_seen_by_three_hosts_at_once_dead_letters_nothing_valid(emulator):
    """BigQuery refuses every load for a long while and three hosts run the cron line. Each
    host's first failed run holds it off, so a message is delivered at most once per host
    before all of them wait: far below the policy's 5 attempts, however long the outage.
    When it ends, the backlog loads once."""
    make_pipeline(emulator, shipped=True, max_delivery_attempts=5)
    good = valid(emulator, 60)
    bad = ['{"id": "bad%d", "timestamp": "no"}' % i for i in range(3)]
    ids = emulator.publish(PIPELINE["topic"], good + bad)
    hosts = [Loader(emulator, "outage%d" % i, failure_backoff="60s",
                    failure_backoff_max="1h", retry_deadline="300ms") for i in range(3)]
    emulator.add_fault(endpoint="bigquery.jobs.insert.multipart", status=503, count=0)
    procs = [(h, h.start()) for h in hosts]
    for h, p in procs:
        assert h.background_result(p, timeout=120).rc in (0, 1)
    advance = 11
    for _ in range(6):                                 # cron ticks through the outage
        emulator.advance_clock(advance)
        advance = min(advance * 2, 600)
        for h in hosts:
            r = h.run()
            assert r.rc in (0, 1), r
            assert r.finished["rows_loaded"] == 0
    assert all(h.held_off() for h in hosts)
    stats = emulator.subscription_stats(PIPELINE["subscription"], messages=True)
    assert stats["dead_lettered"] == 0
    attempts = [m["deliveryAttempts"] for m in stats["messages"]]
    assert len(attempts) == 60 and max(attempts) <= len(hosts)
    # the outage ends; the hosts' hold-off runs out
    emulator.clear_faults()
    emulator.advance_clock(600)
    rows = 0
    for h in hosts:
        h.age(3600)
        r = h.run()
        assert r.rc == 0, r
        rows += r.finished["rows_loaded"]
    assert rows == 60
    check_once(emulator, ids[:60], ids[60:])
