"""Pub/Sub v1 (docs/google-apis.md 1): shapes, limits at both edges, clock-driven lease expiry and
redelivery, nacks, retry backoff, dead-lettering, retention, subscription expiry, fan-out,
auth, faults, a backlog drained in batches, persistence across restarts."""
import base64
import calendar
import json
import os
import re
import shutil
import threading
import time

import pytest

from emu_support import TEST_TMP
from gcpemu.client import Emulator, message_data

P = "datos-local"
V1 = "/v1/projects/%s" % P
JAN14 = 1705240800  # 2024-01-14T14:00:00Z


def tpath(t):
    return "%s/topics/%s" % (V1, t)


def spath(s):
    return "%s/subscriptions/%s" % (V1, s)


def tname(t):
    return "projects/%s/topics/%s" % (P, t)


def b64(data):
    return base64.b64encode(data).decode()


def publish_time(text, lo, hi):
    """An RFC 3339 UTC time with 0, 3, 6 or 9 fraction digits, between lo and hi (emulator
    clock: when the clock was set, and a reading taken after the message was stamped)."""
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d{3}|\.\d{6}|\.\d{9})?Z$", text)
    assert m, text
    epoch = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
    assert lo - 0.001 <= epoch + float(m.group(2) or 0) <= hi, (text, lo, hi)
    return text


def err(r, code, status, message=None):
    """The Pub/Sub error envelope: code, message, status and nothing else (docs/google-apis.md 1.9)."""
    assert r.status_code == code, r.text
    body = r.json()
    assert list(body) == ["error"]
    e = body["error"]
    assert set(e) == {"code", "message", "status"}, e
    assert e["code"] == code and e["status"] == status
    if message is not None:
        assert e["message"] == message
    return e


def varint_len(n):
    size = 1
    while n >= 0x80:
        n >>= 7
        size += 1
    return size


def field(n):
    """Bytes of one length-delimited protobuf field with an n-byte payload (tag < 16)."""
    return 1 + varint_len(n) + n


@pytest.fixture
def topic(emu):
    emu.create_topic("orders")
    return "orders"


def publish_raw(api, topic, messages):
    return api.post(tpath(topic) + ":publish", {"messages": messages})


def pull(api, sub, n=1000, immediate=True):
    r = api.post(spath(sub) + ":pull", {"maxMessages": n, "returnImmediately": immediate})
    assert r.status_code == 200, r.text
    return r.json().get("receivedMessages", [])


# topics ------------------------------------------------------------------------------------

def test_topic_create_get_delete(api, emu):
    r = api.req("PUT", tpath("orders"), body={})
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json; charset=UTF-8"
    assert r.json() == {"name": tname("orders"), "state": "ACTIVE"}
    r = api.req("PUT", tpath("orders-2"), body={"labels": {"env": "prod"},
                                                "messageRetentionDuration": "86400s"})
    assert r.json() == {"name": tname("orders-2"), "labels": {"env": "prod"},
                        "messageRetentionDuration": "86400s", "state": "ACTIVE"}
    assert api.get(tpath("orders-2")).json() == r.json()
    err(api.req("PUT", tpath("orders"), body={}), 409, "ALREADY_EXISTS",
        "Resource already exists in the project (resource=orders).")
    r = api.req("DELETE", tpath("orders"))
    assert r.status_code == 200 and r.json() == {}
    err(api.get(tpath("orders")), 404, "NOT_FOUND", "Resource not found (resource=orders).")
    err(api.req("DELETE", tpath("orders")), 404, "NOT_FOUND")
    # a PUT with an empty body (curl -X PUT) is a topic with defaults
    r = api.req("PUT", tpath("bare"), raw=b"")
    assert r.json() == {"name": tname("bare"), "state": "ACTIVE"}
    assert emu.count("pubsub.topics.create") == 4 and emu.count("pubsub.topics.get") == 2


@pytest.mark.parametrize("rid,ok", [
    ("abc", True), ("a" * 255, True), ("a-b_c.d~e+f%g", True),
    ("ab", False), ("a" * 256, False), ("1abc", False), ("goog-topic", False),
    ("a b c", False), ("abc*", False)])
def test_resource_name_rules(api, rid, ok):
    r = api.req("PUT", tpath(rid), body={})
    if ok:
        assert r.status_code == 200, r.text
        assert r.json()["name"] == tname(rid)
    else:
        err(r, 400, "INVALID_ARGUMENT", "Invalid [topics] name: (name=%s)" % tname(rid))


def test_topic_body_checks(api):
    err(api.req("PUT", tpath("orders"), body={"colour": "red"}), 400, "INVALID_ARGUMENT",
        'Invalid JSON payload received. Unknown name "colour": Cannot find field.')
    err(api.req("PUT", tpath("orders"), body={"messageRetentionDuration": "599s"}), 400,
        "INVALID_ARGUMENT")
    err(api.req("PUT", tpath("orders"), body={"messageRetentionDuration": "1 day"}), 400,
        "INVALID_ARGUMENT")
    err(api.req("PUT", tpath("orders"), body={"schemaSettings": {"schema": "x"}}), 501,
        "UNIMPLEMENTED")
    err(api.req("PUT", tpath("orders"), body={"name": tname("other")}), 400,
        "INVALID_ARGUMENT")


def test_lists(api, emu, topic):
    emu.create_topic("billing")
    emu.create_subscription("orders-a", topic)
    emu.create_subscription("orders-b", topic)
    assert [t["name"] for t in api.get(V1 + "/topics").json()["topics"]] == \
        [tname("billing"), tname("orders")]
    assert [s["name"] for s in api.get(V1 + "/subscriptions").json()["subscriptions"]] == \
        ["projects/%s/subscriptions/orders-a" % P, "projects/%s/subscriptions/orders-b" % P]
    assert api.get(tpath(topic) + "/subscriptions").json() == {"subscriptions": [
        "projects/%s/subscriptions/orders-a" % P, "projects/%s/subscriptions/orders-b" % P]}
    assert api.get(tpath("billing") + "/subscriptions").json() == {}
    assert api.get("/v1/projects/other/topics").json() == {}


# subscriptions -----------------------------------------------------------------------------

def test_subscription_defaults(api, topic):
    r = api.req("PUT", spath("orders-loader"), body={"topic": tname(topic)})
    assert r.status_code == 200, r.text
    assert r.json() == {"name": "projects/%s/subscriptions/orders-loader" % P,
                        "topic": tname(topic), "pushConfig": {}, "ackDeadlineSeconds": 10,
                        "messageRetentionDuration": "604800s",
                        "expirationPolicy": {"ttl": "2678400s"}, "state": "ACTIVE"}
    assert api.get(spath("orders-loader")).json() == r.json()


def test_subscription_full_config_echo(api, emu, topic):
    emu.create_topic("orders-dlq")
    body = {"topic": tname(topic), "ackDeadlineSeconds": 120,
            "messageRetentionDuration": "86400s", "retainAckedMessages": False,
            "expirationPolicy": {}, "enableMessageOrdering": False,
            "enableExactlyOnceDelivery": False, "labels": {"team": "datos"},
            "deadLetterPolicy": {"deadLetterTopic": tname("orders-dlq"),
                                 "maxDeliveryAttempts": 10},
            "retryPolicy": {"minimumBackoff": "3.5s", "maximumBackoff": "600s"}}
    r = api.req("PUT", spath("orders-loader"), body=body)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "name": "projects/%s/subscriptions/orders-loader" % P, "topic": tname(topic),
        "pushConfig": {}, "ackDeadlineSeconds": 120, "messageRetentionDuration": "86400s",
        "labels": {"team": "datos"}, "expirationPolicy": {},
        "deadLetterPolicy": {"deadLetterTopic": tname("orders-dlq"), "maxDeliveryAttempts": 10},
        "retryPolicy": {"minimumBackoff": "3.500s", "maximumBackoff": "600s"},
        "state": "ACTIVE"}
    # defaults filled in: 0 attempts is 5, an empty retry policy is 10 s .. 600 s
    r = api.req("PUT", spath("orders-other"), body={
        "topic": tname(topic), "deadLetterPolicy": {"deadLetterTopic": tname("orders-dlq")},
        "retryPolicy": {}, "ackDeadlineSeconds": 0})
    assert r.json()["deadLetterPolicy"]["maxDeliveryAttempts"] == 5
    assert r.json()["retryPolicy"] == {"minimumBackoff": "10s", "maximumBackoff": "600s"}
    assert r.json()["ackDeadlineSeconds"] == 10
    # enum-encoding=int, as Google's Node.js REST transport asks for it (docs/google-apis.md 6)
    r = api.get(spath("orders-other"), params={"$alt": "json;enum-encoding=int"})
    assert r.json()["state"] == 1


@pytest.mark.parametrize("change,ok", [
    ({"ackDeadlineSeconds": 9}, False), ({"ackDeadlineSeconds": 10}, True),
    ({"ackDeadlineSeconds": 600}, True), ({"ackDeadlineSeconds": 601}, False),
    ({"ackDeadlineSeconds": "60"}, True), ({"ackDeadlineSeconds": "x"}, False),
    ({"messageRetentionDuration": "599s"}, False), ({"messageRetentionDuration": "600s"}, True),
    ({"messageRetentionDuration": "2678400s"}, True),
    ({"messageRetentionDuration": "2678401s"}, False),
    ({"deadLetterPolicy": {"deadLetterTopic": tname("dlq-topic"), "maxDeliveryAttempts": 4}},
     False),
    ({"deadLetterPolicy": {"deadLetterTopic": tname("dlq-topic"), "maxDeliveryAttempts": 5}},
     True),
    ({"deadLetterPolicy": {"deadLetterTopic": tname("dlq-topic"), "maxDeliveryAttempts": 100}},
     True),
    ({"deadLetterPolicy": {"deadLetterTopic": tname("dlq-topic"), "maxDeliveryAttempts": 101}},
     False),
    ({"retryPolicy": {"minimumBackoff": "0s", "maximumBackoff": "0s"}}, True),
    ({"retryPolicy": {"minimumBackoff": "601s"}}, False),
    ({"retryPolicy": {"minimumBackoff": "60s", "maximumBackoff": "30s"}}, False),
    ({"expirationPolicy": {"ttl": "86399s"}, "messageRetentionDuration": "600s"}, False),
    ({"expirationPolicy": {"ttl": "86400s"}, "messageRetentionDuration": "86400s"}, True),
    ({"expirationPolicy": {"ttl": "86400s"}}, False),  # shorter than the 7-day retention
    ({"expirationPolicy": {"ttl": "31536000s"}}, True),
    ({"expirationPolicy": {"ttl": "31536001s"}}, False),
    ({"topic": "orders"}, False), ({"colour": 1}, False),
])
def test_subscription_validation_edges(api, emu, topic, change, ok):
    emu.create_topic("dlq-topic")
    body = dict({"topic": tname(topic)}, **change)
    r = api.req("PUT", spath("orders-loader"), body=body)
    if ok:
        assert r.status_code == 200, r.text
    else:
        err(r, 400, "INVALID_ARGUMENT")


def test_subscription_refusals(api, emu, topic):
    err(api.req("PUT", spath("orders-loader"), body={"topic": tname("nope")}), 404,
        "NOT_FOUND", "Resource not found (resource=nope).")
    err(api.req("PUT", spath("orders-loader"), body={
        "topic": tname(topic), "deadLetterPolicy": {"deadLetterTopic": tname("no-dlq")}}),
        404, "NOT_FOUND", "Resource not found (resource=no-dlq).")
    err(api.req("PUT", spath("orders-loader"), body={}), 400, "INVALID_ARGUMENT")
    for unsupported in ({"enableMessageOrdering": True}, {"enableExactlyOnceDelivery": True},
                        {"filter": 'attributes.k = "v"'},
                        {"pushConfig": {"pushEndpoint": "https://example.com/push"}}):
        err(api.req("PUT", spath("orders-loader"), body=dict(topic=tname(topic), **unsupported)),
            501, "UNIMPLEMENTED")
    emu.create_subscription("orders-loader", topic)
    err(api.req("PUT", spath("orders-loader"), body={"topic": tname(topic)}), 409,
        "ALREADY_EXISTS", "Resource already exists in the project (resource=orders-loader).")
    r = api.req("DELETE", spath("orders-loader"))
    assert r.status_code == 200 and r.json() == {}
    err(api.get(spath("orders-loader")), 404, "NOT_FOUND",
        "Resource not found (resource=orders-loader).")
    emu.create_subscription("other-sub", topic)
    emu.publish(topic, [b"x"])
    ack_id = emu.pull("other-sub")[0]["ackId"]
    err(api.post(spath("orders-loader") + ":pull", {"maxMessages": 1}), 404, "NOT_FOUND",
        "Resource not found (resource=orders-loader).")
    for verb in (":acknowledge", ":modifyAckDeadline"):
        err(api.post(spath("orders-loader") + verb, {"ackIds": [ack_id]}), 404, "NOT_FOUND")
    # an unknown path or method under /v1 answers in the Pub/Sub shape
    err(api.get(V1 + "/snapshots"), 404, "NOT_FOUND")
    err(api.post(tpath(topic), {}), 404, "NOT_FOUND")


# publish / pull / ack ----------------------------------------------------------------------

def test_publish_pull_ack_shapes(api, emu, topic):
    emu.create_subscription("orders-loader", topic)
    emu.set_clock(JAN14)
    r = publish_raw(api, topic, [
        {"data": b64(b'{"id":1}'), "attributes": {"source": "web", "schema": "v1"}},
        {"data": b64(b'{"id":2}')},
        {"attributes": {"only": "attributes"}}])
    assert r.status_code == 200, r.text
    ids = r.json()["messageIds"]
    assert list(r.json()) == ["messageIds"] and len(ids) == 3
    assert all(isinstance(i, str) and i.isdigit() for i in ids)
    assert int(ids[0]) > 2 ** 53 and [int(i) for i in ids] == \
        list(range(int(ids[0]), int(ids[0]) + 3))
    r = api.post(spath("orders-loader") + ":pull", {"maxMessages": 10})
    assert r.status_code == 200
    got = r.json()["receivedMessages"]
    assert [set(m) for m in got] == [{"ackId", "message"}] * 3  # no dead-letter policy
    published = publish_time(got[0]["message"]["publishTime"], JAN14, emu.now())  # the emulator clock
    assert got[0]["message"] == {"data": b64(b'{"id":1}'),
                                 "attributes": {"source": "web", "schema": "v1"},
                                 "messageId": ids[0], "publishTime": published}
    assert got[2]["message"] == {"attributes": {"only": "attributes"}, "messageId": ids[2],
                                 "publishTime": published}
    assert len({m["ackId"] for m in got}) == 3 and all(len(m["ackId"]) <= 164 for m in got)
    r = api.post(spath("orders-loader") + ":acknowledge", {"ackIds": [m["ackId"] for m in got]})
    assert r.status_code == 200 and r.json() == {}
    # nothing left: the body is exactly {}
    r = api.post(spath("orders-loader") + ":pull", {"maxMessages": 10,
                                                    "returnImmediately": True},
                 params={"prettyPrint": "false"})
    assert r.status_code == 200 and r.text == "{}"
    assert emu.subscription_stats("orders-loader")["backlog"] == 0
    assert emu.counters()["pubsub.subscriptions.pull"] == 2
    assert emu.counters()["pubsub.topics.publish"] == 1
    assert emu.counters()["pubsub.subscriptions.acknowledge"] == 1


def test_publish_time_fraction_and_ordering_key(api, emu, topic):
    emu.create_subscription("orders-loader", topic)
    emu.set_clock(JAN14 + 0.123)
    publish_raw(api, topic, [{"data": b64(b"a"), "orderingKey": "k1"},
                             {"data": b64(b"b"), "orderingKey": "k1"}])
    got = pull(api, "orders-loader")
    publish_time(got[0]["message"]["publishTime"], JAN14, emu.now())
    assert got[1]["message"]["publishTime"] == got[0]["message"]["publishTime"]
    assert [m["message"]["orderingKey"] for m in got] == ["k1", "k1"]


def test_url_safe_and_unpadded_base64_is_accepted(api, emu, topic):
    emu.create_subscription("orders-loader", topic)
    data = b"\xfb\xff\xfe binary"
    urlsafe = base64.urlsafe_b64encode(data).decode().rstrip("=")
    assert publish_raw(api, topic, [{"data": urlsafe}]).status_code == 200
    got = pull(api, "orders-loader")
    assert got[0]["message"]["data"] == base64.b64encode(data).decode()  # standard, padded
    assert message_data(got[0]) == data


def test_fan_out_to_subscriptions_existing_at_publish_time(emu, topic):
    emu.publish(topic, [b"lost: no subscription yet"])
    emu.create_subscription("sub-a", topic)
    emu.publish(topic, [b"m1"])
    emu.create_subscription("sub-b", topic)
    emu.publish(topic, [b"m2"])
    a = emu.drain("sub-a")
    b = emu.drain("sub-b")
    assert [message_data(m) for m in a] == [b"m1", b"m2"]
    assert [message_data(m) for m in b] == [b"m2"]
    # the same message id reaches both subscriptions, with different ackIds
    assert a[1]["message"]["messageId"] == b[0]["message"]["messageId"]
    assert a[1]["ackId"] != b[0]["ackId"]


def test_publish_message_count_edges(api, emu, topic):
    emu.create_subscription("orders-loader", topic)
    ok = publish_raw(api, topic, [{"data": b64(b"%d" % i)} for i in range(1000)])
    assert ok.status_code == 200 and len(ok.json()["messageIds"]) == 1000
    err(publish_raw(api, topic, [{"data": b64(b"%d" % i)} for i in range(1001)]), 400,
        "INVALID_ARGUMENT", "The value for message_count is too large. You passed 1001 in the "
                            "request, but the maximum value is 1000.")
    err(publish_raw(api, topic, []), 400, "INVALID_ARGUMENT",
        "The value for message_count is too small. You passed 0 in the request, but the "
        "minimum value is 1.")
    assert emu.subscription_stats("orders-loader")["backlog"] == 1000


def test_publish_request_size_edges(api, emu, topic):
    """10,000,000 bytes of PublishRequest (protobuf size, docs/google-apis.md 1.4) pass, one more fails."""
    emu.create_subscription("orders-loader", topic)
    name = tname(topic)
    # one message whose data makes the request exactly 10,000,000 bytes
    overhead = field(len(name))
    n = 10_000_000 - overhead
    data_len = n - 1 - varint_len(n)  # the outer field around the message
    data_len -= 1 + varint_len(data_len)  # the data field inside the message
    data_len = next(d for d in range(data_len, data_len + 8)
                    if overhead + field(field(d)) == 10_000_000)
    assert overhead + field(field(data_len)) == 10_000_000
    r = publish_raw(api, topic, [{"data": b64(b"x" * data_len)}])
    assert r.status_code == 200, r.text[:300]
    err(publish_raw(api, topic, [{"data": b64(b"x" * (data_len + 1))}]), 400,
        "INVALID_ARGUMENT", "The value for request_size is too large. You passed 10000001 in "
                            "the request, but the maximum value is 10000000.")
    got = pull(api, "orders-loader")
    assert len(message_data(got[0])) == data_len


@pytest.mark.parametrize("message,ok", [
    ({}, False), ({"data": ""}, False), ({"attributes": {}}, False),
    ({"data": "!!!not base64"}, False), ({"data": 5}, False),
    ({"attributes": {"k%d" % i: "v" for i in range(100)}}, True),
    ({"attributes": {"k%d" % i: "v" for i in range(101)}}, False),
    ({"attributes": {"k" * 256: "v"}}, True), ({"attributes": {"k" * 257: "v"}}, False),
    ({"attributes": {"k": "v" * 1024}}, True), ({"attributes": {"k": "v" * 1025}}, False),
    ({"attributes": {"googKey": "v"}}, False), ({"attributes": {"k": 5}}, False),
    ({"data": "YQ==", "orderingKey": "o" * 1024}, True),
    ({"data": "YQ==", "orderingKey": "o" * 1025}, False),
    ({"data": "YQ==", "colour": "red"}, False),
    ({"data": "YQ==", "messageId": "1", "publishTime": "2020-01-01T00:00:00Z"}, True),
])
def test_publish_message_rules(api, topic, message, ok):
    r = publish_raw(api, topic, [message])
    if ok:
        assert r.status_code == 200, r.text
    else:
        err(r, 400, "INVALID_ARGUMENT")


def test_publish_refusals(api, topic):
    err(publish_raw(api, topic, [{"data": "YQ==", "orderingKey": "a"},
                                 {"data": "YQ==", "orderingKey": "b"}]), 400,
        "INVALID_ARGUMENT")
    err(publish_raw(api, topic, [{"data": "YQ==", "orderingKey": "a"}, {"data": "YQ=="}]),
        400, "INVALID_ARGUMENT")
    err(publish_raw(api, "missing", [{"data": "YQ=="}]), 404, "NOT_FOUND",
        "Resource not found (resource=missing).")
    err(api.req("POST", tpath(topic) + ":publish", raw=b"{not json",
                headers={"Content-Type": "application/json"}), 400, "INVALID_ARGUMENT")


def test_pull_max_messages(api, emu, topic):
    emu.create_subscription("orders-loader", topic)
    emu.publish(topic, [b"m%d" % i for i in range(1200)])
    for bad in ({}, {"maxMessages": 0}, {"maxMessages": -1}, {"maxMessages": "x"}):
        err(api.post(spath("orders-loader") + ":pull", bad), 400, "INVALID_ARGUMENT")
    assert len(pull(api, "orders-loader", n=1)) == 1
    assert len(pull(api, "orders-loader", n=1500)) == 1000  # at most 1,000 per pull
    assert len(pull(api, "orders-loader", n="150")) == 150  # int32 as a string
    emu.configure(pull_max_messages=7)  # "fewer than available" knob
    assert len(pull(api, "orders-loader", n=100)) == 7
    assert emu.subscription_stats("orders-loader") == dict(
        emu.subscription_stats("orders-loader"), backlog=1200, outstanding=1158, ready=42)


def test_pull_without_return_immediately_waits_for_a_publish(emu, topic):
    emu.create_subscription("orders-loader", topic)
    emu.configure(pull_wait_seconds=30)
    result = {}

    def waiting_pull():
        result["got"] = emu.pull("orders-loader", return_immediately=False)

    t = threading.Thread(target=waiting_pull)
    t.start()
    while emu.count("pubsub.subscriptions.pull") == 0:
        t.join(0.01)
    emu.publish(topic, [b"wake up"])
    t.join(20)
    assert not t.is_alive()
    assert [message_data(m) for m in result["got"]] == [b"wake up"]


def test_pull_without_return_immediately_answers_empty_when_nothing_comes(api, emu, topic):
    emu.create_subscription("orders-loader", topic)
    emu.configure(pull_wait_seconds=0.2)
    r = api.post(spath("orders-loader") + ":pull", {"maxMessages": 5},
                 params={"prettyPrint": "false"})
    assert r.status_code == 200 and r.text == "{}"


# leases, redelivery, nacks -----------------------------------------------------------------

def test_lease_expiry_redelivers_with_a_new_ack_id(api, emu, topic):
    emu.create_subscription("orders-loader", topic, ack_deadline=30)
    emu.publish(topic, [b"hello"])
    first = pull(api, "orders-loader")
    assert len(first) == 1
    emu.advance_clock(29.9)
    assert pull(api, "orders-loader") == []  # still leased
    emu.advance_clock(0.1)
    second = pull(api, "orders-loader")
    assert [m["message"]["messageId"] for m in second] == [first[0]["message"]["messageId"]]
    assert second[0]["ackId"] != first[0]["ackId"]
    # the expired ackId is silently ignored: 200 {}, the message stays
    r = api.post(spath("orders-loader") + ":acknowledge", {"ackIds": [first[0]["ackId"]]})
    assert r.status_code == 200 and r.json() == {}
    assert emu.subscription_stats("orders-loader")["backlog"] == 1
    r = api.post(spath("orders-loader") + ":modifyAckDeadline",
                 {"ackIds": [first[0]["ackId"]], "ackDeadlineSeconds": 600})
    assert r.status_code == 200 and r.json() == {}
    emu.advance_clock(30)  # the stale modack did not extend the live lease
    third = pull(api, "orders-loader")
    assert len(third) == 1
    emu.ack("orders-loader", [third[0]["ackId"]])
    emu.ack("orders-loader", [third[0]["ackId"]])  # acking twice is fine
    assert emu.subscription_stats("orders-loader")["backlog"] == 0
    emu.advance_clock(3600)
    assert pull(api, "orders-loader") == []  # acked messages never come back


def test_ack_of_an_expired_lease_does_not_ack(api, emu, topic):
    emu.create_subscription("orders-loader", topic, ack_deadline=10)
    emu.publish(topic, [b"late"])
    got = pull(api, "orders-loader")
    emu.advance_clock(10)
    emu.ack("orders-loader", [got[0]["ackId"]])  # deadline passed before the ack
    again = pull(api, "orders-loader")
    assert [message_data(m) for m in again] == [b"late"]


def test_modify_ack_deadline_extends_from_now(api, emu, topic):
    emu.create_subscription("orders-loader", topic, ack_deadline=10)
    emu.publish(topic, [b"slow"])
    got = pull(api, "orders-loader")
    emu.advance_clock(8)
    emu.modify_ack_deadline("orders-loader", [got[0]["ackId"]], 20)  # until t = 28
    emu.advance_clock(19.9)
    assert pull(api, "orders-loader") == []
    emu.ack("orders-loader", [got[0]["ackId"]])  # the same ackId still holds the lease
    emu.advance_clock(600)
    assert pull(api, "orders-loader") == []
    # shortening works too
    emu.publish(topic, [b"short"])
    got = pull(api, "orders-loader")
    emu.modify_ack_deadline("orders-loader", [got[0]["ackId"]], 1)
    emu.advance_clock(1)
    assert [message_data(m) for m in pull(api, "orders-loader")] == [b"short"]


def test_modify_ack_deadline_zero_is_a_nack(api, emu, topic):
    emu.create_topic("orders-dlq")
    emu.create_subscription("orders-loader", topic, ack_deadline=600,
                            dead_letter_topic="orders-dlq", max_delivery_attempts=5)
    emu.publish(topic, [b"nack me"])
    got = pull(api, "orders-loader")
    assert got[0]["deliveryAttempt"] == 1
    emu.modify_ack_deadline("orders-loader", [got[0]["ackId"]], 0)
    again = pull(api, "orders-loader")  # at once: no retry policy, no clock movement
    assert again[0]["message"]["messageId"] == got[0]["message"]["messageId"]
    assert again[0]["deliveryAttempt"] == 2
    assert again[0]["ackId"] != got[0]["ackId"]
    # the nacked ackId is dead
    emu.ack("orders-loader", [got[0]["ackId"]])
    assert emu.subscription_stats("orders-loader")["outstanding"] == 1


@pytest.mark.parametrize("seconds,ok", [(-1, False), (0, True), (600, True), (601, False)])
def test_modify_ack_deadline_range(api, emu, topic, seconds, ok):
    emu.create_subscription("orders-loader", topic)
    emu.publish(topic, [b"x"])
    got = pull(api, "orders-loader")
    r = api.post(spath("orders-loader") + ":modifyAckDeadline",
                 {"ackIds": [got[0]["ackId"]], "ackDeadlineSeconds": seconds})
    if ok:
        assert r.status_code == 200 and r.json() == {}
    else:
        err(r, 400, "INVALID_ARGUMENT")


def test_ack_id_list_rules(api, emu, topic):
    emu.create_subscription("orders-loader", topic)
    emu.publish(topic, [b"x"])
    got = pull(api, "orders-loader")
    for verb in (":acknowledge", ":modifyAckDeadline"):
        for body in ({}, {"ackIds": []}):
            err(api.post(spath("orders-loader") + verb, body), 400, "INVALID_ARGUMENT",
                "You have not specified an ack ID in the request.")
        err(api.post(spath("orders-loader") + verb, {"ackIds": ["not-an-ack-id"]}), 400,
            "INVALID_ARGUMENT", "You have passed an invalid ack ID to the service "
                                "(ack_id=not-an-ack-id).")
    # a malformed ackId fails the whole request: the good one was not acked
    assert emu.subscription_stats("orders-loader")["backlog"] == 1
    ack_id = got[0]["ackId"]
    # the 512 KiB request limit (docs/google-apis.md 1.7), at both edges
    sub = "projects/%s/subscriptions/orders-loader" % P
    per = field(len(ack_id))
    count = (524_288 - field(len(sub))) // per
    assert field(len(sub)) + count * per <= 524_288 < field(len(sub)) + (count + 1) * per
    r = api.post(spath("orders-loader") + ":acknowledge", {"ackIds": [ack_id] * count})
    assert r.status_code == 200, r.text[:200]
    err(api.post(spath("orders-loader") + ":acknowledge", {"ackIds": [ack_id] * (count + 1)}),
        400, "INVALID_ARGUMENT", "Request payload size exceeds the limit: 524288 bytes.")
    assert count > 2500  # what Google's clients send per call always fits
    assert emu.subscription_stats("orders-loader")["backlog"] == 0


def test_ack_ids_belong_to_their_subscription(api, emu, topic):
    emu.create_subscription("sub-a", topic)
    emu.create_subscription("sub-b", topic)
    emu.publish(topic, [b"x"])
    a = pull(api, "sub-a")
    pull(api, "sub-b")
    emu.ack("sub-b", [a[0]["ackId"]])  # another subscription's ackId: ignored
    assert emu.subscription_stats("sub-b")["backlog"] == 1
    # a subscription deleted and created again does not honour the old ackIds
    emu.delete_subscription("sub-a")
    emu.create_subscription("sub-a", topic)
    emu.ack("sub-a", [a[0]["ackId"]])
    assert emu.subscription_stats("sub-a")["backlog"] == 0  # new: got nothing published


# delivery attempts and dead-lettering -----------------------------------------------------

def test_delivery_attempt_only_with_a_dead_letter_policy(api, emu, topic):
    emu.create_topic("orders-dlq")
    emu.create_subscription("plain", topic, ack_deadline=10)
    emu.create_subscription("with-dlq", topic, ack_deadline=10, dead_letter_topic="orders-dlq")
    emu.publish(topic, [b"x"])
    for attempt in (1, 2, 3):
        p = pull(api, "plain")
        d = pull(api, "with-dlq")
        assert "deliveryAttempt" not in p[0]
        assert d[0]["deliveryAttempt"] == attempt
        emu.advance_clock(10)


def test_dead_letter_forwarding_after_max_attempts(api, emu, topic):
    emu.create_topic("orders-dlq")
    emu.create_subscription("dlq-reader", "orders-dlq", never_expire=True)
    emu.create_subscription("orders-loader", topic, ack_deadline=60,
                            dead_letter_topic="orders-dlq", max_delivery_attempts=5)
    emu.set_clock(JAN14)
    ids = emu.publish(topic, [{"data": b"poison", "attributes": {"source": "web"}},
                              {"data": b"fine"}])
    published = None
    seen = []
    for attempt in range(1, 6):
        got = pull(api, "orders-loader")
        poison = [m for m in got if message_data(m) == b"poison"]
        assert [m["deliveryAttempt"] for m in poison] == [attempt]
        published = poison[0]["message"]["publishTime"]
        seen.append(poison[0]["ackId"])
        fine = [m for m in got if message_data(m) == b"fine"]
        if fine:
            emu.ack("orders-loader", [fine[0]["ackId"]])
        if attempt % 2:  # nack, or let the deadline pass: both count
            emu.modify_ack_deadline("orders-loader", [poison[0]["ackId"]], 0)
        else:
            emu.advance_clock(60)
        if attempt < 5:
            assert pull(api, "dlq-reader") == []
    assert len(set(seen)) == 5
    # past maxDeliveryAttempts: forwarded to the dead-letter topic, dropped from the source
    assert pull(api, "orders-loader") == []
    stats = emu.subscription_stats("orders-loader")
    assert stats["backlog"] == 0 and stats["dead_lettered"] == 1
    dlq = pull(api, "dlq-reader")
    assert len(dlq) == 1
    m = dlq[0]["message"]
    assert base64.b64decode(m["data"]) == b"poison"
    assert m["attributes"] == {
        "source": "web",
        "CloudPubSubDeadLetterSourceDeliveryCount": "5",
        "CloudPubSubDeadLetterSourceSubscription": "orders-loader",
        "CloudPubSubDeadLetterSourceSubscriptionProject": P,
        "CloudPubSubDeadLetterSourceTopicPublishTime": published}
    publish_time(published, JAN14, JAN14 + 120)
    publish_time(m["publishTime"], JAN14 + 120, emu.now())  # stamped when forwarded
    assert m["messageId"] != ids[0]  # a new message on the dead-letter topic
    assert "deliveryAttempt" not in dlq[0]  # the reader has no dead-letter policy


def test_retry_policy_backoff(api, emu, topic):
    emu.create_subscription("orders-loader", topic, ack_deadline=30, min_backoff=10,
                            max_backoff=25)
    emu.publish(topic, [b"x"])
    got = pull(api, "orders-loader")
    emu.modify_ack_deadline("orders-loader", [got[0]["ackId"]], 0)  # 1st failure: 10 s
    assert pull(api, "orders-loader") == []
    emu.advance_clock(9.9)
    assert pull(api, "orders-loader") == []
    assert emu.subscription_stats("orders-loader")["delayed"] == 1
    emu.advance_clock(0.1)
    got = pull(api, "orders-loader")
    assert len(got) == 1
    emu.advance_clock(30)  # 2nd failure by deadline expiry: 20 s after the deadline
    emu.advance_clock(19.9)
    assert pull(api, "orders-loader") == []
    emu.advance_clock(0.1)
    got = pull(api, "orders-loader")
    assert len(got) == 1
    emu.modify_ack_deadline("orders-loader", [got[0]["ackId"]], 0)  # 3rd: 40 s, capped at 25
    emu.advance_clock(24.9)
    assert pull(api, "orders-loader") == []
    emu.advance_clock(0.1)
    assert len(pull(api, "orders-loader")) == 1


def test_no_retry_policy_redelivers_at_once(api, emu, topic):
    emu.create_subscription("orders-loader", topic)
    emu.publish(topic, [b"x"])
    got = pull(api, "orders-loader")
    emu.modify_ack_deadline("orders-loader", [got[0]["ackId"]], 0)
    assert len(pull(api, "orders-loader")) == 1


def test_redelivered_messages_come_before_the_rest_of_the_backlog(api, emu, topic):
    emu.create_subscription("orders-loader", topic, ack_deadline=10)
    emu.publish(topic, [b"m%d" % i for i in range(10)])
    first = pull(api, "orders-loader", n=5)
    emu.advance_clock(10)
    again = pull(api, "orders-loader", n=5)
    assert [m["message"]["messageId"] for m in again] == \
        [m["message"]["messageId"] for m in first]


# retention and expiry ----------------------------------------------------------------------

def test_retention_discards_unacked_messages(api, emu, topic):
    emu.create_subscription("orders-loader", topic, retention=600)
    emu.publish(topic, [b"old"])
    emu.advance_clock(300)
    emu.publish(topic, [b"young"])
    pull(api, "orders-loader")  # both leased, neither acked
    emu.advance_clock(300)  # the first is now 600 s old
    stats = emu.subscription_stats("orders-loader")
    assert stats["backlog"] == 1 and stats["expired"] == 1
    emu.advance_clock(300)
    assert emu.subscription_stats("orders-loader")["backlog"] == 0
    assert pull(api, "orders-loader") == []


def test_subscription_expiry_after_inactivity(api, emu, topic):
    emu.create_subscription("short-lived", topic, retention=86400, expiration_ttl=86400)
    emu.create_subscription("forever", topic, never_expire=True)
    emu.create_subscription("default-ttl", topic)
    emu.advance_clock(86399)
    pull(api, "short-lived")  # activity restarts the countdown
    emu.advance_clock(86399)
    assert api.get(spath("short-lived")).status_code == 200  # get is not activity
    emu.advance_clock(1)
    err(api.get(spath("short-lived")), 404, "NOT_FOUND")
    emu.advance_clock(31 * 86400)
    err(api.get(spath("default-ttl")), 404, "NOT_FOUND")  # 31 days idle by default
    emu.advance_clock(400 * 86400)
    assert api.get(spath("forever")).status_code == 200


def test_deleted_topic_leaves_its_subscriptions(api, emu, topic):
    emu.create_subscription("orders-loader", topic)
    emu.publish(topic, [b"kept"])
    emu.delete_topic(topic)
    assert api.get(spath("orders-loader")).json()["topic"] == "_deleted-topic_"
    assert [message_data(m) for m in pull(api, "orders-loader")] == [b"kept"]
    err(publish_raw(api, topic, [{"data": "YQ=="}]), 404, "NOT_FOUND")
    emu.create_topic(topic)  # a new topic of the same name does not feed the old subscription
    emu.publish(topic, [b"new"])
    emu.advance_clock(600)  # the unacked "kept" comes back; "new" never arrives
    assert [message_data(m) for m in pull(api, "orders-loader")] == [b"kept"]


# a backlog in batches ----------------------------------------------------------------------

def test_backlog_drained_in_batches(api, emu, topic):
    emu.create_subscription("orders-loader", topic, ack_deadline=60)
    payloads = [json.dumps({"id": str(i), "timestamp": "2024-01-14T14:00:00Z"}).encode()
                for i in range(5000)]
    ids = emu.publish(topic, payloads)
    assert len(ids) == 5000 and len(set(ids)) == 5000
    assert emu.count("pubsub.topics.publish") == 5  # 1,000 per request
    stats = emu.subscription_stats("orders-loader")
    assert stats["backlog"] == stats["ready"] == 5000
    seen = {}
    while True:
        got = pull(api, "orders-loader")
        if not got:
            break
        assert len(got) <= 1000
        ack_ids = [m["ackId"] for m in got]
        # extend every lease of the batch in one call, then ack the whole batch
        r = api.post(spath("orders-loader") + ":modifyAckDeadline",
                     {"ackIds": ack_ids, "ackDeadlineSeconds": 600})
        assert r.status_code == 200
        emu.advance_clock(120)  # beyond the 60 s deadline, within the extension
        r = api.post(spath("orders-loader") + ":acknowledge", {"ackIds": ack_ids})
        assert r.status_code == 200
        for m in got:
            seen[m["message"]["messageId"]] = message_data(m)
    assert sorted(seen) == sorted(ids)
    assert sorted(seen.values()) == sorted(payloads)
    assert emu.subscription_stats("orders-loader")["backlog"] == 0
    emu.advance_clock(3600)
    assert pull(api, "orders-loader") == []


# auth and faults ---------------------------------------------------------------------------

def test_require_auth_applies_to_pubsub(api, emu, topic):
    emu.configure(require_auth=True)
    r = api.get(tpath(topic))
    err(r, 401, "UNAUTHENTICATED")
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    err(api.get(tpath(topic), headers={"Authorization": "Bearer ya29.unknown"}), 401,
        "UNAUTHENTICATED")
    md = api.get("/computeMetadata/v1/instance/service-accounts/default/token",
                 headers={"Metadata-Flavor": "Google"})
    assert md.headers["Metadata-Flavor"] == "Google"
    auth = {"Authorization": "Bearer " + md.json()["access_token"]}
    assert api.get(tpath(topic), headers=auth).status_code == 200
    # the harness signs its own JWT with the Pub/Sub audience
    emu.create_subscription("orders-loader", topic)
    emu.publish(topic, [b"x"])
    assert len(emu.pull("orders-loader")) == 1
    assert "oauth2.token" not in emu.counters()


def test_faults_on_pubsub_routes(api, emu, topic):
    emu.create_subscription("orders-loader", topic)
    emu.add_fault(endpoint="pubsub.subscriptions.pull", status=503, count=1)
    emu.add_fault(endpoint="pubsub.subscriptions.acknowledge", status=429, retry_after=3)
    err(api.post(spath("orders-loader") + ":pull", {"maxMessages": 1}), 503, "UNAVAILABLE")
    r = api.post(spath("orders-loader") + ":acknowledge", {"ackIds": ["x"]})
    err(r, 429, "RESOURCE_EXHAUSTED")
    assert r.headers["Retry-After"] == "3"
    # commit the publish, then drop the connection: a retry duplicates (docs/google-apis.md 1.12)
    emu.add_fault(endpoint="pubsub.topics.publish", action="commit_then_drop")
    with pytest.raises(Exception):
        emu.publish(topic, [b"once"])
    emu.publish(topic, [b"once"])
    got = pull(api, "orders-loader")
    assert [message_data(m) for m in got] == [b"once", b"once"]
    assert got[0]["message"]["messageId"] != got[1]["message"]["messageId"]
    emu.add_fault(endpoint="pubsub.subscriptions.modifyAckDeadline", action="drop")
    with pytest.raises(Exception):
        emu.modify_ack_deadline("orders-loader", [got[0]["ackId"]], 60)
    assert emu.requests("pubsub.subscriptions.modifyAckDeadline")[-1]["status"] is None


def test_reset_clears_pubsub(api, emu, topic):
    emu.create_subscription("orders-loader", topic)
    emu.publish(topic, [b"x"])
    emu.reset()
    err(api.get(tpath(topic)), 404, "NOT_FOUND")
    err(api.get(spath("orders-loader")), 404, "NOT_FOUND")
    assert emu._call("GET", "/_emulator/pubsub") == {"topics": [], "subscriptions": []}


def test_control_views(api, emu, topic):
    emu.create_subscription("orders-loader", topic, ack_deadline=20)
    emu.publish(topic, [{"data": b"a", "attributes": {"k": "v"}}, b"b"])
    pull(api, "orders-loader", n=1)
    d = emu.subscription_stats("orders-loader", messages=True)
    assert d["backlog"] == 2 and d["outstanding"] == 1 and d["ready"] == 1
    assert [(m["state"], m["deliveryAttempts"]) for m in d["messages"]] == \
        [("outstanding", 1), ("ready", 0)]
    assert d["messages"][0]["attributes"] == {"k": "v"}
    assert d["messages"][0]["leaseDeadline"] > emu.now()
    summary = emu._call("GET", "/_emulator/pubsub")
    assert summary["topics"] == [{"name": tname(topic),
                                  "subscriptions": ["projects/%s/subscriptions/orders-loader"
                                                    % P]}]
    assert api.get("/_emulator/pubsub/projects/%s/subscriptions/nope" % P).status_code == 404
    assert "pubsub.subscriptions.get" not in emu.counters()  # control calls are not counted


# persistence --------------------------------------------------------------------------------

def start_persistent(work, data):
    emu = Emulator(work, extra_args=("--data-dir", data))
    emu.start()
    return emu


def test_persistence_across_restart():
    work = os.path.join(TEST_TMP, "emulator-pubsub-persist")
    shutil.rmtree(work, ignore_errors=True)
    data = os.path.join(work, "data")
    emu = start_persistent(work, data)
    try:
        emu.create_topic("orders")
        emu.create_topic("orders-dlq")
        emu.create_subscription("orders-loader", "orders", ack_deadline=600,
                                dead_letter_topic="orders-dlq", max_delivery_attempts=5,
                                min_backoff=30, max_backoff=60)
        ids = emu.publish("orders", [b"acked", b"leased", b"nacked", b"ready"])
        got = emu.pull("orders-loader", max_messages=3)
        assert [message_data(m) for m in got] == [b"acked", b"leased", b"nacked"]
        emu.ack("orders-loader", [got[0]["ackId"]])
        emu.modify_ack_deadline("orders-loader", [got[2]["ackId"]], 0)  # backoff 30 s
        before = emu.subscription_stats("orders-loader")
        clock = emu.now()
    finally:
        emu.stop()
    files = sorted(os.listdir(data))
    assert "pubsub.json" in files and "pubsub.journal" in files
    assert not [f for f in files if f.endswith(".tmp")]
    emu = start_persistent(work, data)
    try:
        emu.set_clock(clock)
        assert emu.get_subscription("orders-loader")["deadLetterPolicy"]["maxDeliveryAttempts"] \
            == 5
        after = emu.subscription_stats("orders-loader")
        for k in ("backlog", "ready", "outstanding", "delayed"):
            assert after[k] == before[k], k
        assert (after["backlog"], after["outstanding"], after["delayed"]) == (3, 1, 1)
        # the lease taken before the restart still holds, and its ackId still works
        assert [message_data(m) for m in emu.pull("orders-loader")] == [b"ready"]
        emu.ack("orders-loader", [got[1]["ackId"]])
        assert emu.subscription_stats("orders-loader")["backlog"] == 2
        emu.advance_clock(30)  # the backoff of the nack survived too
        again = emu.pull("orders-loader")
        assert [(message_data(m), m["deliveryAttempt"]) for m in again] == [(b"nacked", 2)]
        new = emu.publish("orders", [b"after restart"])
        assert int(new[0]) > max(int(i) for i in ids)  # ids never repeat
        emu.reset()
    finally:
        emu.stop()
    emu = start_persistent(work, data)
    try:
        assert emu._call("GET", "/_emulator/pubsub") == {"topics": [], "subscriptions": []}
    finally:
        emu.stop()


def test_published_messages_survive_a_kill():
    """Every answered publish, pull and ack is on disk before the answer: kill -9 loses
    nothing that was acknowledged to a client."""
    work = os.path.join(TEST_TMP, "emulator-pubsub-kill")
    shutil.rmtree(work, ignore_errors=True)
    data = os.path.join(work, "data")
    emu = start_persistent(work, data)
    try:
        emu.create_topic("orders")
        emu.create_subscription("orders-loader", "orders", ack_deadline=600)
        emu.publish("orders", [b"m%d" % i for i in range(2500)])
        got = emu.pull("orders-loader", max_messages=1000)
        emu.ack("orders-loader", [m["ackId"] for m in got[:400]])
        emu.proc.kill()
        emu.proc.wait(10)
    finally:
        emu.stop()
    emu = start_persistent(work, data)
    try:
        s = emu.subscription_stats("orders-loader")
        assert (s["backlog"], s["outstanding"], s["ready"]) == (2100, 600, 1500)
        rest = emu.drain("orders-loader")
        assert len(rest) == 1500
    finally:
        emu.stop()
