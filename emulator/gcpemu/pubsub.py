"""Pub/Sub v1 REST (docs/google-apis.md 1): topics, subscriptions, publish, pull, acknowledge,
modifyAckDeadline, with ack deadlines, redelivery, retry backoff, dead-lettering, retention
and subscription expiry all driven by the emulator clock.

Every message a subscription holds is one `Entry` keyed by its numeric message id, in one of
three states: READY (queued for delivery), LEASED (handed out, with a deadline) or DELAYED
(waiting out a retry-policy backoff). Queues and heaps index them so that pull, acknowledge
and modifyAckDeadline cost O(batch), never O(backlog): `ready` and `redeliver` (deques of
ids), `leases` (heap of deadline, id, lease generation), `delayed` (heap of available time,
id), `by_age` (heap of publish time, id; for retention). Heap and queue items whose entry
has moved on are skipped when they surface. Lease expiry, backoff and retention are applied
lazily by `tick()` at the start of every Pub/Sub request and control-API look.

An ackId names one delivery: (subscription uid, message id, lease generation) plus a check
tag, base64url. A delivery's lease ends at its deadline, on modifyAckDeadline 0 or when the
message is acknowledged; after that its ackId is stale and acknowledging it is silently
ignored (200 `{}`), as Google does without exactly-once delivery (docs/google-apis.md 1.6, 1.12).
"""
import base64
import contextlib
import hashlib
import heapq
import json
import os
import re
import struct
import threading
import time
from collections import deque

from .errors import ApiError
from .http import json_response
from .journal import Journal

PS = r"^/v1/projects/(?P<project>[^/]+)"
ID_RE = re.compile(r"^[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}$")
TOPIC_NAME_RE = re.compile(r"^projects/([^/]+)/topics/([^/]+)$")
DURATION_RE = re.compile(r"^(\d+)(?:\.(\d{1,9}))?s$")
DELETED_TOPIC = "_deleted-topic_"

MAX_PUBLISH_MESSAGES = 1000
MAX_PUBLISH_BYTES = 10_000_000
MAX_ACK_REQUEST_BYTES = 524_288
MAX_PULL_MESSAGES = 1000
MAX_ATTRIBUTES = 100
MAX_ATTR_KEY_BYTES = 256
MAX_ATTR_VALUE_BYTES = 1024
MAX_ORDERING_KEY_BYTES = 1024
MIN_ACK_DEADLINE, MAX_ACK_DEADLINE, DEFAULT_ACK_DEADLINE = 10, 600, 10
NS = 1_000_000_000
DAY = 86400
MIN_RETENTION, MAX_RETENTION, DEFAULT_RETENTION = 600, 31 * DAY, 7 * DAY
MIN_TTL, MAX_TTL, DEFAULT_TTL = DAY, 365 * DAY, 31 * DAY
MIN_ATTEMPTS, MAX_ATTEMPTS, DEFAULT_ATTEMPTS = 5, 100, 5
MAX_BACKOFF_LIMIT, DEFAULT_MIN_BACKOFF, DEFAULT_MAX_BACKOFF = 600, 10, 600
# Real message ids are decimal strings above 2**53 (docs/google-apis.md 1.4): a client that parses
# them as doubles breaks here as it would against Google.
FIRST_MESSAGE_ID = 11_000_000_000_000_000

READY, LEASED, DELAYED = 0, 1, 2
STATE_NAMES = {READY: "ready", LEASED: "outstanding", DELAYED: "delayed"}

TOPIC_FIELDS = {"name", "labels", "messageStoragePolicy", "kmsKeyName", "schemaSettings",
                "satisfiesPzs", "messageRetentionDuration", "state",
                "ingestionDataSourceSettings", "messageTransforms", "tags"}
SUBSCRIPTION_FIELDS = {
    "name", "topic", "pushConfig", "bigqueryConfig", "cloudStorageConfig",
    "ackDeadlineSeconds", "retainAckedMessages", "messageRetentionDuration", "labels",
    "enableMessageOrdering", "expirationPolicy", "filter", "deadLetterPolicy", "retryPolicy",
    "detached", "enableExactlyOnceDelivery", "topicMessageRetentionDuration", "state",
    "analyticsHubSubscriptionInfo", "messageTransforms", "tags"}
MESSAGE_FIELDS = {"data", "attributes", "messageId", "publishTime", "orderingKey"}

DLQ_ATTRS = ("CloudPubSubDeadLetterSourceDeliveryCount",
             "CloudPubSubDeadLetterSourceSubscription",
             "CloudPubSubDeadLetterSourceSubscriptionProject",
             "CloudPubSubDeadLetterSourceTopicPublishTime")


# ------------------------------------------------------------------------------------------
# wire helpers

def invalid(message):
    return ApiError(400, message, status="INVALID_ARGUMENT")


def not_found(resource_id):
    # docs/google-apis.md 1.9: the text Google sends; clients must switch on `status`.
    return ApiError(404, "Resource not found (resource=%s)." % resource_id)


def already_exists(resource_id):
    return ApiError(409, "Resource already exists in the project (resource=%s)." % resource_id)


def unimplemented(what):
    return ApiError(501, "%s is not supported by the datos GCP emulator" % what,
                    status="UNIMPLEMENTED")


def too_small(field, value, minimum):
    return invalid("The value for %s is too small. You passed %s in the request, but the "
                   "minimum value is %s." % (field, value, minimum))


def too_large(field, value, maximum):
    return invalid("The value for %s is too large. You passed %s in the request, but the "
                   "maximum value is %s." % (field, value, maximum))


def unknown_field(name, where):
    at = " at '%s'" % where if where else ""
    return invalid('Invalid JSON payload received. Unknown name "%s"%s: Cannot find field.'
                   % (name, at))


def check_fields(obj, allowed, where):
    for k in obj:
        if k not in allowed:
            raise unknown_field(k, where)


def check_id(kind, project, rid):
    if not ID_RE.match(rid) or rid.startswith("goog"):
        raise invalid("Invalid [%s] name: (name=projects/%s/%s/%s)" % (kind, project, kind, rid))


def parse_topic_name(value, where):
    if not isinstance(value, str):
        raise invalid("Invalid value at '%s' (TYPE_STRING), %s" % (where, json.dumps(value)))
    m = TOPIC_NAME_RE.match(value)
    if not m:
        raise invalid("Invalid [topics] name: (name=%s)" % value)
    check_id("topics", m.group(1), m.group(2))
    return value, m.group(2)


def int32_value(v, where):
    """proto3 JSON int32: a number or a decimal string."""
    if isinstance(v, bool):
        raise invalid("Invalid value at '%s' (TYPE_INT32), %s" % (where, json.dumps(v)))
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, str) and re.match(r"^-?\d+$", v.strip()):
        v = int(v)
    if not isinstance(v, int) or not -(1 << 31) <= v < (1 << 31):
        raise invalid("Invalid value at '%s' (TYPE_INT32), %s" % (where, json.dumps(v)))
    return v


def bool_value(v, where):
    if not isinstance(v, bool):
        raise invalid("Invalid value at '%s' (TYPE_BOOL), %s" % (where, json.dumps(v)))
    return v


def parse_duration(v, where):
    """proto3 JSON Duration ("600s", "3.5s") -> nanoseconds."""
    m = DURATION_RE.match(v) if isinstance(v, str) else None
    if not m:
        raise invalid("Invalid value at '%s' (type.googleapis.com/google.protobuf.Duration), "
                      "Illegal duration format; duration must end with 's': %s"
                      % (where, json.dumps(v)))
    return int(m.group(1)) * NS + int((m.group(2) or "").ljust(9, "0"))


def format_duration(ns):
    s, frac = divmod(ns, NS)
    if frac == 0:
        return "%ds" % s
    if frac % 1_000_000 == 0:
        return "%d.%03ds" % (s, frac // 1_000_000)
    if frac % 1000 == 0:
        return "%d.%06ds" % (s, frac // 1000)
    return "%d.%09ds" % (s, frac)


def rfc3339_us(us):
    s, frac = divmod(us, 1_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s))
    if frac == 0:
        return base + "Z"
    if frac % 1000 == 0:
        return base + ".%03dZ" % (frac // 1000)
    return base + ".%06dZ" % frac


def varint_len(n):
    size = 1
    while n >= 0x80:
        n >>= 7
        size += 1
    return size


def field_len(n):
    """Bytes of one length-delimited protobuf field (tag < 16) with an n-byte payload."""
    return 1 + varint_len(n) + n


def publish_request_size(topic, messages):
    """The protobuf-encoded size of a PublishRequest, which Google's 10 MB limit is about.
    messages: (data bytes, {key: value}, ordering key)."""
    total = field_len(len(topic.encode()))
    for data, attrs, okey in messages:
        inner = field_len(len(data)) if data else 0
        for k, v in attrs.items():
            kb, vb = len(k.encode()), len(v.encode())
            entry = (field_len(kb) if kb else 0) + (field_len(vb) if vb else 0)
            inner += field_len(entry)
        if okey:
            inner += field_len(len(okey.encode()))
        total += field_len(inner)
    return total


def ack_request_size(subscription, ack_ids, deadline=None):
    total = field_len(len(subscription.encode()))
    for a in ack_ids:
        total += field_len(len(a.encode()))
    if deadline:
        total += 1 + varint_len(deadline)
    return total


ACK_ID_LEN = struct.calcsize(">8sQI")


def make_ack_id(uid, mid, gen):
    payload = struct.pack(">8sQI", uid, mid, gen)
    tag = hashlib.blake2s(payload, digest_size=6).digest()
    return base64.urlsafe_b64encode(payload + tag).decode("ascii").rstrip("=")


def parse_ack_id(text):
    """-> (uid, message id, generation) or None when `text` is not an ackId at all."""
    if not isinstance(text, str) or len(text) != 35:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=")
    except (ValueError, TypeError):
        return None
    payload, tag = raw[:ACK_ID_LEN], raw[ACK_ID_LEN:]
    if hashlib.blake2s(payload, digest_size=6).digest() != tag:
        return None
    return struct.unpack(">8sQI", payload)


# ------------------------------------------------------------------------------------------
# state

# What a receivedMessages entry adds to its message's own JSON: the ackId, the keys and
# quotes, deliveryAttempt and the commas, compact (an answer is about this much bigger than
# its messages' text; pretty printing adds a little more).
ENTRY_OVERHEAD = 160


class Message:
    __slots__ = ("mid", "data", "attrs", "okey", "pus", "api", "size")

    def __init__(self, mid, data, attrs, okey, pus, ptime=None):
        self.mid = mid
        self.data = data
        self.attrs = attrs
        self.okey = okey
        self.pus = pus
        # the entry's size in a pull answer, for pull_max_bytes: the base64 text as it is,
        # attributes as their UTF-8 (escapes aside)
        self.size = (ENTRY_OVERHEAD + len(data or "") + len(okey or "")
                     + sum(len(k.encode()) + len(v.encode()) + 6
                           for k, v in (attrs or {}).items()))
        m = {}
        if data:
            m["data"] = data
        if attrs:
            m["attributes"] = attrs
        m["messageId"] = str(mid)
        m["publishTime"] = ptime or rfc3339_us(pus)
        if okey:
            m["orderingKey"] = okey
        self.api = m

    def dump(self):
        return [self.mid, self.data, self.attrs, self.okey, self.pus]


class Entry:
    __slots__ = ("msg", "state", "attempts", "gen", "deadline", "avail")

    def __init__(self, msg):
        self.msg = msg
        self.state = READY
        self.attempts = 0
        self.gen = 0
        self.deadline = 0.0
        self.avail = 0.0


class Topic:
    def __init__(self, name, resource, created):
        self.name = name
        self.resource = resource
        self.created = created
        self.subs = []  # names of attached subscriptions, in creation order


class Subscription:
    def __init__(self, name, resource, created, uid, last_active):
        self.name = name
        self.project = name.split("/")[1]
        self.short = name.rsplit("/", 1)[1]
        self.resource = resource
        self.created = created
        self.uid = uid
        self.last_active = last_active
        self.ack_deadline = resource["ackDeadlineSeconds"]
        self.retention = parse_duration(resource["messageRetentionDuration"], "") / NS
        ttl = resource["expirationPolicy"].get("ttl")
        self.ttl = parse_duration(ttl, "") / NS if ttl else None
        dlp = resource.get("deadLetterPolicy")
        self.dlq = dlp["deadLetterTopic"] if dlp else None
        self.max_attempts = dlp["maxDeliveryAttempts"] if dlp else None
        rp = resource.get("retryPolicy")
        self.backoff = ((parse_duration(rp["minimumBackoff"], "") / NS,
                         parse_duration(rp["maximumBackoff"], "") / NS) if rp else None)
        self.entries = {}
        self.ready = deque()
        self.redeliver = deque()
        self.leases = []
        self.delayed = []
        self.by_age = []
        self.stats = {"published": 0, "delivered": 0, "acked": 0, "dead_lettered": 0,
                      "expired": 0, "redelivered": 0}

    @property
    def topic(self):
        return self.resource["topic"]

    def add(self, msg):
        e = Entry(msg)
        self.entries[msg.mid] = e
        self.ready.append(msg.mid)
        heapq.heappush(self.by_age, (msg.pus, msg.mid))
        self.stats["published"] += 1

    def reindex(self):
        """Rebuild the queues from the entries (after loading persisted state)."""
        self.ready.clear()
        self.redeliver.clear()
        self.leases, self.delayed, self.by_age = [], [], []
        for mid in sorted(self.entries):
            e = self.entries[mid]
            if e.state == READY:
                self.ready.append(mid)
            elif e.state == LEASED:
                self.leases.append((e.deadline, mid, e.gen))
            else:
                self.delayed.append((e.avail, mid))
            self.by_age.append((e.msg.pus, mid))
        for h in (self.leases, self.delayed, self.by_age):
            heapq.heapify(h)

    def backoff_for(self, attempts):
        if self.backoff is None:
            return 0.0
        lo, hi = self.backoff
        return min(hi, lo * (2 ** max(0, attempts - 1)))

    def take(self, n, now, max_bytes=0):
        """Lease up to n ready messages, whose entries make at most max_bytes of answer
        (0: no bound; one message always): [(entry, ackId)]."""
        out = []
        size = 0
        deadline = now + self.ack_deadline
        queues = (self.redeliver, self.ready)
        for q in queues:
            while q and len(out) < n:
                mid = q[0]
                e = self.entries.get(mid)
                if e is None or e.state != READY:
                    q.popleft()
                    continue
                if max_bytes and out and size + e.msg.size > max_bytes:
                    return self._taken(out)
                q.popleft()
                size += e.msg.size
                e.state = LEASED
                e.attempts += 1
                e.gen += 1
                e.deadline = deadline
                heapq.heappush(self.leases, (deadline, mid, e.gen))
                out.append((e, make_ack_id(self.uid, mid, e.gen)))
        return self._taken(out)

    def _taken(self, out):
        self.stats["delivered"] += len(out)
        return out

    def lease_of(self, ack, now):
        """The entry an ackId still holds a live lease on, or None."""
        uid, mid, gen = ack
        if uid != self.uid:
            return None
        e = self.entries.get(mid)
        if e is None or e.state != LEASED or e.gen != gen or e.deadline <= now:
            return None
        return e

    def counts(self):
        c = {"ready": 0, "outstanding": 0, "delayed": 0}
        for e in self.entries.values():
            c[STATE_NAMES[e.state]] += 1
        return c

    def dump(self):
        entries = []
        for mid, e in self.entries.items():
            entries.append([mid, e.state, e.attempts, e.gen,
                            e.deadline if e.state == LEASED else e.avail])
        return {"name": self.name, "resource": self.resource, "created": self.created,
                "uid": self.uid.hex(), "last_active": self.last_active, "entries": entries}


class PubSubState:
    def __init__(self, clock, data_dir=None):
        self.clock = clock
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.topics = {}
        self.subs = {}
        self.next_id = FIRST_MESSAGE_ID
        self.journal = Journal(data_dir, "pubsub") if data_dir else None
        self._pending = []

    # journal ---------------------------------------------------------------------------------

    def log(self, record):
        if self.journal is not None:
            self._pending.append(record)

    def flush(self):
        """Make this request's changes durable before it is answered."""
        if self._pending:
            records, self._pending = self._pending, []
            self.journal.append(records)
            if self.journal.wants_compaction():
                self.journal.rewrite(self.dump())

    def dump(self):
        messages = {}
        subs = []
        for s in self.subs.values():
            for e in s.entries.values():
                messages[e.msg.mid] = e.msg
            subs.append(s.dump())
        return {"version": 1, "next_id": self.next_id,
                "topics": [[t.name, t.resource, t.created] for t in self.topics.values()],
                "subscriptions": subs,
                "messages": [m.dump() for m in messages.values()]}

    def load(self):
        if self.journal is None:
            return
        snap, records = self.journal.load()
        if snap:
            self.next_id = max(self.next_id, snap.get("next_id", 0))
            for name, resource, created in snap.get("topics", []):
                self._topic_create(name, resource, created)
            msgs = {}
            for mid, data, attrs, okey, pus in snap.get("messages", []):
                msgs[mid] = Message(mid, data, attrs, okey, pus)
            for sd in snap.get("subscriptions", []):
                s = self._sub_create(sd["name"], sd["resource"], sd["created"],
                                     bytes.fromhex(sd["uid"]), sd["last_active"])
                for mid, state, attempts, gen, when in sd["entries"]:
                    e = Entry(msgs[mid])
                    e.state, e.attempts, e.gen = state, attempts, gen
                    if state == LEASED:
                        e.deadline = when
                    else:
                        e.avail = when
                    s.entries[mid] = e
        for r in records:
            self._replay(r)
        for s in self.subs.values():
            s.reindex()
        self.journal.rewrite(self.dump())

    def _replay(self, r):
        op = r[0]
        if op == "tc":
            self._topic_create(r[1], r[2], r[3])
        elif op == "td":
            self._topic_delete(r[1])
        elif op == "sc":
            self._sub_create(r[1], r[2], r[3], bytes.fromhex(r[4]), r[5])
        elif op == "sd":
            self._sub_delete(r[1])
        elif op == "pub":
            msgs = [Message(*m) for m in r[2]]
            for m in msgs:
                self.next_id = max(self.next_id, m.mid + 1)
            self._fan_out(msgs, r[3])
        elif op == "lease":
            s = self.subs.get(r[1])
            if s is not None:
                s.last_active = r[2]
                for mid, gen, attempts, deadline in r[3]:
                    e = s.entries.get(mid)
                    if e is not None:
                        e.state, e.gen, e.attempts, e.deadline = LEASED, gen, attempts, deadline
        elif op in ("ack", "drop"):
            s = self.subs.get(r[1])
            if s is not None:
                if op == "ack":
                    s.last_active = r[2]
                for mid in r[-1]:
                    s.entries.pop(mid, None)
        elif op == "act":
            s = self.subs.get(r[1])
            if s is not None:
                s.last_active = r[2]

    def reset(self):
        with self.lock:
            self.topics.clear()
            self.subs.clear()
            self._pending = []
            if self.journal is not None:
                self.journal.rewrite(self.dump())
            self.cond.notify_all()

    # primitive changes (shared by requests and journal replay) --------------------------------

    def _topic_create(self, name, resource, created):
        self.topics[name] = Topic(name, resource, created)

    def _topic_delete(self, name):
        t = self.topics.pop(name, None)
        if t is None:
            return
        for sname in t.subs:
            s = self.subs.get(sname)
            if s is not None:
                s.resource["topic"] = DELETED_TOPIC

    def _sub_create(self, name, resource, created, uid, last_active):
        s = Subscription(name, resource, created, uid, last_active)
        self.subs[name] = s
        t = self.topics.get(resource["topic"])
        if t is not None:
            t.subs.append(name)
        return s

    def _sub_delete(self, name):
        s = self.subs.pop(name, None)
        if s is None:
            return
        t = self.topics.get(s.topic)
        if t is not None and name in t.subs:
            t.subs.remove(name)

    def _fan_out(self, msgs, sub_names):
        for sname in sub_names:
            s = self.subs.get(sname)
            if s is None:
                continue
            for m in msgs:
                s.add(m)

    def publish_messages(self, topic, items, now_us):
        """items: [(data b64 text, attrs, ordering key)] -> [Message]; fans out to the
        subscriptions attached now and journals it."""
        ptime = rfc3339_us(now_us)
        msgs = []
        for data, attrs, okey in items:
            msgs.append(Message(self.next_id, data, attrs, okey, now_us, ptime))
            self.next_id += 1
        subs = list(topic.subs)
        self._fan_out(msgs, subs)
        self.log(["pub", topic.name, [m.dump() for m in msgs], subs])
        self.cond.notify_all()
        return msgs

    # the clock -----------------------------------------------------------------------------

    def tick(self, now):
        """Apply what the clock made due: lease expiry (redelivery, backoff or
        dead-lettering), backoff ends, retention and subscription expiry."""
        for s in list(self.subs.values()):
            if s.ttl is not None and now - s.last_active >= s.ttl:
                self._sub_delete(s.name)
                self.log(["sd", s.name])
                continue
            forwarded = []
            leases = s.leases
            while leases and leases[0][0] <= now:
                deadline, mid, gen = heapq.heappop(leases)
                e = s.entries.get(mid)
                if e is None or e.state != LEASED or e.gen != gen or e.deadline != deadline:
                    continue
                if s.dlq is not None and e.attempts >= s.max_attempts and s.dlq in self.topics:
                    del s.entries[mid]
                    forwarded.append(e)
                    continue
                delay = s.backoff_for(e.attempts)
                if delay > 0:
                    e.state = DELAYED
                    e.avail = deadline + delay
                    heapq.heappush(s.delayed, (e.avail, mid))
                else:
                    e.state = READY
                    s.redeliver.append(mid)
                s.stats["redelivered"] += 1
            delayed = s.delayed
            while delayed and delayed[0][0] <= now:
                avail, mid = heapq.heappop(delayed)
                e = s.entries.get(mid)
                if e is None or e.state != DELAYED or e.avail != avail:
                    continue
                e.state = READY
                s.redeliver.append(mid)
            cutoff = int((now - s.retention) * 1_000_000)
            by_age = s.by_age
            while by_age and by_age[0][0] <= cutoff:
                _, mid = heapq.heappop(by_age)
                if s.entries.pop(mid, None) is not None:
                    s.stats["expired"] += 1
            if forwarded:
                self._dead_letter(s, forwarded, now)

    def _dead_letter(self, s, entries, now):
        items = []
        for e in entries:
            attrs = dict(e.msg.attrs or {})
            attrs.update({
                "CloudPubSubDeadLetterSourceDeliveryCount": str(e.attempts),
                "CloudPubSubDeadLetterSourceSubscription": s.short,
                "CloudPubSubDeadLetterSourceSubscriptionProject": s.project,
                "CloudPubSubDeadLetterSourceTopicPublishTime": e.msg.api["publishTime"]})
            items.append((e.msg.data, attrs, e.msg.okey))
        self.publish_messages(self.topics[s.dlq], items, self.clock.now_us())
        self.log(["drop", s.name, [e.msg.mid for e in entries]])
        s.stats["dead_lettered"] += len(entries)


# ------------------------------------------------------------------------------------------
# REST handlers

class PubSubApi:
    def __init__(self, app, state):
        self.app = app
        self.state = state

    def routes(self):
        t = PS + r"/topics/(?P<topic>[^/:]+)"
        s = PS + r"/subscriptions/(?P<sub>[^/:]+)"
        r = [
            ("PUT", t + "$", "pubsub.topics.create", self.topics_create),
            ("GET", t + "$", "pubsub.topics.get", self.topics_get),
            ("DELETE", t + "$", "pubsub.topics.delete", self.topics_delete),
            ("GET", PS + r"/topics$", "pubsub.topics.list", self.topics_list),
            ("GET", t + r"/subscriptions$", "pubsub.topics.subscriptions.list",
             self.topic_subscriptions),
            ("POST", t + r":publish$", "pubsub.topics.publish", self.publish),
            ("PUT", s + "$", "pubsub.subscriptions.create", self.subscriptions_create),
            ("GET", s + "$", "pubsub.subscriptions.get", self.subscriptions_get),
            ("DELETE", s + "$", "pubsub.subscriptions.delete", self.subscriptions_delete),
            ("GET", PS + r"/subscriptions$", "pubsub.subscriptions.list",
             self.subscriptions_list),
            ("POST", s + r":pull$", "pubsub.subscriptions.pull", self.pull),
            ("POST", s + r":acknowledge$", "pubsub.subscriptions.acknowledge",
             self.acknowledge),
            ("POST", s + r":modifyAckDeadline$", "pubsub.subscriptions.modifyAckDeadline",
             self.modify_ack_deadline),
        ]
        return [(m, p, e, h, "pubsub") for m, p, e, h in r]

    # helpers ------------------------------------------------------------------------------

    def respond(self, req, obj):
        pretty = req.query.get("prettyPrint", "true").lower() != "false"
        return json_response(obj, pretty=pretty)

    @staticmethod
    def int_enums(req):
        # Google's Node.js REST transport asks for `$alt=json;enum-encoding=int` (docs/google-apis.md 6).
        return "enum-encoding=int" in req.query.get("$alt", "")

    def with_state(self, req, resource):
        out = dict(resource)
        out["state"] = 1 if self.int_enums(req) else "ACTIVE"
        return out

    def now(self):
        return self.app.clock.now()

    @contextlib.contextmanager
    def locked(self):
        """Hold the state lock, apply what the clock made due, and make the request's changes
        durable before it is answered, failed requests included. Yields the time."""
        st = self.state
        with st.lock:
            try:
                now = self.now()
                st.tick(now)
                yield now
            finally:
                st.flush()

    def topic_or_404(self, name, short):
        t = self.state.topics.get(name)
        if t is None:
            raise not_found(short)
        return t

    def sub_or_404(self, name, short):
        s = self.state.subs.get(name)
        if s is None:
            raise not_found(short)
        return s

    # topics -------------------------------------------------------------------------------

    def topics_create(self, req, project, topic):
        check_id("topics", project, topic)
        name = "projects/%s/topics/%s" % (project, topic)
        body = req.json()
        check_fields(body, TOPIC_FIELDS, "")
        if body.get("name") not in (None, "", name):
            raise invalid("Invalid resource name given (name=%s). The name in the request "
                          "body must match the one in the URL." % body["name"])
        for k in ("schemaSettings", "ingestionDataSourceSettings", "messageTransforms"):
            if body.get(k):
                raise unimplemented("Topic %s" % k)
        resource = {"name": name}
        if body.get("labels"):
            resource["labels"] = _labels(body["labels"], "labels")
        for k in ("messageStoragePolicy", "kmsKeyName"):
            if body.get(k):
                resource[k] = body[k]
        if body.get("messageRetentionDuration"):
            ns = parse_duration(body["messageRetentionDuration"], "message_retention_duration")
            _duration_range("message_retention_duration", ns, MIN_RETENTION, MAX_RETENTION)
            resource["messageRetentionDuration"] = format_duration(ns)
        st = self.state
        with self.locked():
            if name in st.topics:
                raise already_exists(topic)
            st._topic_create(name, resource, self.app.clock.now_ms())
            st.log(["tc", name, resource, self.app.clock.now_ms()])
        return self.respond(req, self.with_state(req, resource))

    def topics_get(self, req, project, topic):
        check_id("topics", project, topic)
        with self.locked():
            t = self.topic_or_404("projects/%s/topics/%s" % (project, topic), topic)
            return self.respond(req, self.with_state(req, t.resource))

    def topics_delete(self, req, project, topic):
        check_id("topics", project, topic)
        name = "projects/%s/topics/%s" % (project, topic)
        st = self.state
        with self.locked():
            self.topic_or_404(name, topic)
            st._topic_delete(name)
            st.log(["td", name])
        return self.respond(req, {})

    def topics_list(self, req, project):
        st = self.state
        with self.locked():
            prefix = "projects/%s/topics/" % project
            items = [self.with_state(req, t.resource) for n, t in sorted(st.topics.items())
                     if n.startswith(prefix)]
        return self.respond(req, {"topics": items} if items else {})

    def topic_subscriptions(self, req, project, topic):
        check_id("topics", project, topic)
        with self.locked():
            t = self.topic_or_404("projects/%s/topics/%s" % (project, topic), topic)
            names = list(t.subs)
        return self.respond(req, {"subscriptions": names} if names else {})

    # publish ------------------------------------------------------------------------------

    def publish(self, req, project, topic):
        check_id("topics", project, topic)
        name = "projects/%s/topics/%s" % (project, topic)
        body = req.json()
        check_fields(body, {"topic", "messages"}, "")
        messages = body.get("messages")
        if messages is None:
            messages = []
        if not isinstance(messages, list):
            raise invalid("Invalid value at 'messages': expected a list of messages.")
        if not messages:
            raise too_small("message_count", 0, 1)
        if len(messages) > MAX_PUBLISH_MESSAGES:
            raise too_large("message_count", len(messages), MAX_PUBLISH_MESSAGES)
        items, sized = [], []
        okeys = set()
        for i, m in enumerate(messages):
            where = "messages[%d]" % i
            if not isinstance(m, dict):
                raise invalid("Invalid value at '%s': expected an object." % where)
            check_fields(m, MESSAGE_FIELDS, where)
            data_text = m.get("data") or ""
            if not isinstance(data_text, str):
                raise invalid("Invalid value at '%s.data' (TYPE_BYTES), %s"
                              % (where, json.dumps(data_text)))
            raw, data_text = _decode_bytes(data_text, where + ".data")
            attrs = m.get("attributes") or {}
            if not isinstance(attrs, dict):
                raise invalid("Invalid value at '%s.attributes': expected a map." % where)
            _check_attributes(attrs, where)
            okey = m.get("orderingKey") or ""
            if not isinstance(okey, str):
                raise invalid("Invalid value at '%s.ordering_key' (TYPE_STRING), %s"
                              % (where, json.dumps(okey)))
            if len(okey.encode()) > MAX_ORDERING_KEY_BYTES:
                raise too_large("ordering_key size", len(okey.encode()), MAX_ORDERING_KEY_BYTES)
            okeys.add(okey)
            if not raw and not attrs:
                raise invalid("One or more messages in the publish request is empty. Each "
                              "message must contain either non-empty data, or at least one "
                              "attribute.")
            items.append((data_text, attrs or None, okey or None))
            sized.append((raw, attrs, okey))
        if len(okeys) > 1:
            raise invalid("All messages in a publish request must have the same ordering key "
                          "(found %d different ones)." % len(okeys))
        size = publish_request_size(name, sized)
        if size > MAX_PUBLISH_BYTES:
            raise too_large("request_size", size, MAX_PUBLISH_BYTES)
        st = self.state
        with self.locked():
            t = self.topic_or_404(name, topic)
            msgs = st.publish_messages(t, items, self.app.clock.now_us())
        return self.respond(req, {"messageIds": [m.api["messageId"] for m in msgs]})

    # subscriptions ------------------------------------------------------------------------

    def subscriptions_create(self, req, project, sub):
        check_id("subscriptions", project, sub)
        name = "projects/%s/subscriptions/%s" % (project, sub)
        body = req.json()
        check_fields(body, SUBSCRIPTION_FIELDS, "")
        if body.get("name") not in (None, "", name):
            raise invalid("Invalid resource name given (name=%s). The name in the request "
                          "body must match the one in the URL." % body["name"])
        if "topic" not in body or body["topic"] in (None, ""):
            raise invalid("Missing required field: topic")
        topic_name, topic_short = parse_topic_name(body["topic"], "topic")
        for k in ("bigqueryConfig", "cloudStorageConfig", "messageTransforms",
                  "analyticsHubSubscriptionInfo"):
            if body.get(k):
                raise unimplemented("Subscription %s" % k)
        for k in ("enableMessageOrdering", "enableExactlyOnceDelivery", "detached"):
            if k in body and bool_value(body[k], k):
                raise unimplemented("Subscription %s" % k)
        if body.get("filter"):
            raise unimplemented("Subscription filter")
        push = body.get("pushConfig") or {}
        if not isinstance(push, dict):
            raise invalid("Invalid value at 'push_config'")
        if push.get("pushEndpoint"):
            raise unimplemented("Push delivery (pushConfig.pushEndpoint)")
        resource = {"name": name, "topic": topic_name, "pushConfig": {}}
        ack = int32_value(body.get("ackDeadlineSeconds") or 0, "ack_deadline_seconds")
        if ack == 0:
            ack = DEFAULT_ACK_DEADLINE
        if ack < MIN_ACK_DEADLINE:
            raise too_small("ack_deadline_seconds", ack, MIN_ACK_DEADLINE)
        if ack > MAX_ACK_DEADLINE:
            raise too_large("ack_deadline_seconds", ack, MAX_ACK_DEADLINE)
        resource["ackDeadlineSeconds"] = ack
        if "retainAckedMessages" in body and bool_value(body["retainAckedMessages"],
                                                        "retain_acked_messages"):
            resource["retainAckedMessages"] = True
        retention = DEFAULT_RETENTION * NS
        if body.get("messageRetentionDuration"):
            retention = parse_duration(body["messageRetentionDuration"],
                                       "message_retention_duration")
            _duration_range("message_retention_duration", retention, MIN_RETENTION,
                            MAX_RETENTION)
        resource["messageRetentionDuration"] = format_duration(retention)
        if body.get("labels"):
            resource["labels"] = _labels(body["labels"], "labels")
        ep = body.get("expirationPolicy")
        if ep is None:
            resource["expirationPolicy"] = {"ttl": format_duration(DEFAULT_TTL * NS)}
        else:
            if not isinstance(ep, dict):
                raise invalid("Invalid value at 'expiration_policy'")
            check_fields(ep, {"ttl"}, "expiration_policy")
            if ep.get("ttl"):
                ttl = parse_duration(ep["ttl"], "expiration_policy.ttl")
                _duration_range("expiration_policy.ttl", ttl, MIN_TTL, MAX_TTL)
                resource["expirationPolicy"] = {"ttl": format_duration(ttl)}
            else:
                resource["expirationPolicy"] = {}  # never expires (docs/google-apis.md 1.3)
        ttl = resource["expirationPolicy"].get("ttl")
        if ttl and parse_duration(ttl, "") < retention:
            raise invalid("Invalid expiration_policy.ttl %s: the expiration period must be at "
                          "least the message retention duration %s."
                          % (ttl, resource["messageRetentionDuration"]))
        dlq_short = None
        dlp = body.get("deadLetterPolicy")
        if dlp:
            if not isinstance(dlp, dict):
                raise invalid("Invalid value at 'dead_letter_policy'")
            check_fields(dlp, {"deadLetterTopic", "maxDeliveryAttempts"}, "dead_letter_policy")
            if not dlp.get("deadLetterTopic"):
                raise invalid("Missing required field: dead_letter_policy.dead_letter_topic")
            dlq_name, dlq_short = parse_topic_name(dlp["deadLetterTopic"],
                                                   "dead_letter_policy.dead_letter_topic")
            attempts = int32_value(dlp.get("maxDeliveryAttempts") or 0,
                                   "dead_letter_policy.max_delivery_attempts")
            if attempts == 0:
                attempts = DEFAULT_ATTEMPTS
            if attempts < MIN_ATTEMPTS:
                raise too_small("max_delivery_attempts", attempts, MIN_ATTEMPTS)
            if attempts > MAX_ATTEMPTS:
                raise too_large("max_delivery_attempts", attempts, MAX_ATTEMPTS)
            resource["deadLetterPolicy"] = {"deadLetterTopic": dlq_name,
                                            "maxDeliveryAttempts": attempts}
        rp = body.get("retryPolicy")
        if rp is not None:
            if not isinstance(rp, dict):
                raise invalid("Invalid value at 'retry_policy'")
            check_fields(rp, {"minimumBackoff", "maximumBackoff"}, "retry_policy")
            lo = parse_duration(rp["minimumBackoff"], "retry_policy.minimum_backoff") \
                if rp.get("minimumBackoff") else DEFAULT_MIN_BACKOFF * NS
            hi = parse_duration(rp["maximumBackoff"], "retry_policy.maximum_backoff") \
                if rp.get("maximumBackoff") else DEFAULT_MAX_BACKOFF * NS
            _duration_range("retry_policy.minimum_backoff", lo, 0, MAX_BACKOFF_LIMIT)
            _duration_range("retry_policy.maximum_backoff", hi, 0, MAX_BACKOFF_LIMIT)
            if lo > hi:
                raise invalid("Invalid retry_policy: minimum_backoff %s is greater than "
                              "maximum_backoff %s." % (format_duration(lo), format_duration(hi)))
            resource["retryPolicy"] = {"minimumBackoff": format_duration(lo),
                                       "maximumBackoff": format_duration(hi)}
        st = self.state
        with self.locked() as now:
            if name in st.subs:
                raise already_exists(sub)
            self.topic_or_404(topic_name, topic_short)
            if dlq_short is not None:
                self.topic_or_404(resource["deadLetterPolicy"]["deadLetterTopic"], dlq_short)
            uid = os.urandom(8)
            created = self.app.clock.now_ms()
            st._sub_create(name, resource, created, uid, now)
            st.log(["sc", name, resource, created, uid.hex(), now])
        return self.respond(req, self.with_state(req, resource))

    def subscriptions_get(self, req, project, sub):
        check_id("subscriptions", project, sub)
        with self.locked():
            s = self.sub_or_404("projects/%s/subscriptions/%s" % (project, sub), sub)
            return self.respond(req, self.with_state(req, s.resource))

    def subscriptions_delete(self, req, project, sub):
        check_id("subscriptions", project, sub)
        name = "projects/%s/subscriptions/%s" % (project, sub)
        st = self.state
        with self.locked():
            self.sub_or_404(name, sub)
            st._sub_delete(name)
            st.log(["sd", name])
        return self.respond(req, {})

    def subscriptions_list(self, req, project):
        st = self.state
        with self.locked():
            prefix = "projects/%s/subscriptions/" % project
            items = [self.with_state(req, s.resource) for n, s in sorted(st.subs.items())
                     if n.startswith(prefix)]
        return self.respond(req, {"subscriptions": items} if items else {})

    # pull / acknowledge / modifyAckDeadline ---------------------------------------------------

    def pull(self, req, project, sub):
        check_id("subscriptions", project, sub)
        name = "projects/%s/subscriptions/%s" % (project, sub)
        body = req.json()
        check_fields(body, {"subscription", "returnImmediately", "maxMessages"}, "")
        n = int32_value(body.get("maxMessages") or 0, "max_messages")
        if n <= 0:
            raise too_small("max_messages", n, 1)
        immediate = bool_value(body["returnImmediately"], "return_immediately") \
            if "returnImmediately" in body else False
        n = min(n, MAX_PULL_MESSAGES, int(self.app.settings["pull_max_messages"]))
        # docs/google-apis.md 1.5: one answer carries about 20 MB at most
        max_bytes = int(self.app.settings["pull_max_bytes"])
        wait = 0.0 if immediate else float(self.app.settings["pull_wait_seconds"])
        give_up = time.monotonic() + wait
        st = self.state
        with st.cond:
            while True:
                with self.locked() as now:
                    s = self.sub_or_404(name, sub)
                    got = s.take(n, now, max_bytes)
                    remaining = give_up - time.monotonic()
                    if got or remaining <= 0:
                        s.last_active = now
                        if got:
                            st.log(["lease", name, now, [[e.msg.mid, e.gen, e.attempts,
                                                          e.deadline] for e, _ in got]])
                        else:
                            st.log(["act", name, now])
                        break
                st.cond.wait(remaining)  # releases the lock until a publish or the end
            dead_letter = s.dlq is not None
            out = []
            for e, ack in got:
                rm = {"ackId": ack, "message": e.msg.api}
                if dead_letter:
                    rm["deliveryAttempt"] = e.attempts
                out.append(rm)
        return self.respond(req, {"receivedMessages": out} if out else {})

    def _ack_ids(self, body, name, deadline=None):
        ack_ids = body.get("ackIds")
        if ack_ids is None:
            ack_ids = []
        if not isinstance(ack_ids, list):
            raise invalid("Invalid value at 'ack_ids': expected a list of strings.")
        if not ack_ids:
            raise invalid("You have not specified an ack ID in the request.")
        parsed = []
        for a in ack_ids:
            p = parse_ack_id(a)
            if p is None:
                raise invalid("You have passed an invalid ack ID to the service (ack_id=%s)."
                              % (a if isinstance(a, str) else json.dumps(a)))
            parsed.append(p)
        size = ack_request_size(name, ack_ids, deadline)
        if size > MAX_ACK_REQUEST_BYTES:
            raise invalid("Request payload size exceeds the limit: %d bytes."
                          % MAX_ACK_REQUEST_BYTES)
        return parsed

    def acknowledge(self, req, project, sub):
        check_id("subscriptions", project, sub)
        name = "projects/%s/subscriptions/%s" % (project, sub)
        body = req.json()
        check_fields(body, {"subscription", "ackIds"}, "")
        parsed = self._ack_ids(body, name)
        st = self.state
        with self.locked() as now:
            s = self.sub_or_404(name, sub)
            done = []
            for p in parsed:
                e = s.lease_of(p, now)
                if e is not None:
                    del s.entries[p[1]]
                    done.append(p[1])
            s.stats["acked"] += len(done)
            s.last_active = now
            st.log(["ack", name, now, done])
        return self.respond(req, {})

    def modify_ack_deadline(self, req, project, sub):
        check_id("subscriptions", project, sub)
        name = "projects/%s/subscriptions/%s" % (project, sub)
        body = req.json()
        check_fields(body, {"subscription", "ackIds", "ackDeadlineSeconds"}, "")
        # proto3: an absent ackDeadlineSeconds is 0, which is a nack.
        secs = int32_value(body.get("ackDeadlineSeconds") or 0, "ack_deadline_seconds")
        if secs < 0:
            raise too_small("ack_deadline_seconds", secs, 0)
        if secs > MAX_ACK_DEADLINE:
            raise too_large("ack_deadline_seconds", secs, MAX_ACK_DEADLINE)
        parsed = self._ack_ids(body, name, secs)
        st = self.state
        with self.locked() as now:
            s = self.sub_or_404(name, sub)
            changed = []
            deadline = now + secs
            for p in parsed:
                e = s.lease_of(p, now)
                if e is None:
                    continue  # stale or unknown: ignored, as without exactly-once delivery
                e.deadline = deadline
                heapq.heappush(s.leases, (deadline, p[1], e.gen))
                changed.append([p[1], e.gen, e.attempts, deadline])
            s.last_active = now
            st.log(["lease", name, now, changed])
            if secs == 0:
                st.tick(now)  # a nack is due at once: requeue or dead-letter now
        return self.respond(req, {})

    # control API views --------------------------------------------------------------------

    def describe(self, s):
        d = {"name": s.name, "topic": s.topic, "backlog": len(s.entries)}
        d.update(s.counts())
        d.update(s.stats)
        return d

    def control_summary(self):
        st = self.state
        with self.locked():
            return {"topics": [{"name": t.name, "subscriptions": list(t.subs)}
                               for t in st.topics.values()],
                    "subscriptions": [self.describe(s) for s in st.subs.values()]}

    def control_subscription(self, name, with_messages=False, limit=1000):
        st = self.state
        with self.locked():
            s = st.subs.get(name)
            if s is None:
                raise ApiError(404, "No subscription %s" % name)
            d = self.describe(s)
            if with_messages:
                msgs = []
                for mid in sorted(s.entries)[:limit]:
                    e = s.entries[mid]
                    m = dict(e.msg.api)
                    m["state"] = STATE_NAMES[e.state]
                    m["deliveryAttempts"] = e.attempts
                    if e.state == LEASED:
                        m["leaseDeadline"] = e.deadline
                    elif e.state == DELAYED:
                        m["availableAt"] = e.avail
                    msgs.append(m)
                d["messages"] = msgs
            return d


def _decode_bytes(text, where):
    """Base64 (standard or URL-safe, padding optional) -> (bytes, canonical standard text)."""
    if not text:
        return b"", ""
    s = text.strip()
    try:
        if "-" in s or "_" in s:
            s = s.replace("-", "+").replace("_", "/")
        if len(s) % 4:
            s += "=" * (-len(s) % 4)
        raw = base64.b64decode(s, validate=True)
    except (ValueError, TypeError):
        raise invalid('Invalid value at \'%s\' (TYPE_BYTES), Base64 decoding failed for "%s"'
                      % (where, text[:64])) from None
    return raw, (s if s == text else base64.b64encode(raw).decode("ascii"))


def _check_attributes(attrs, where):
    if len(attrs) > MAX_ATTRIBUTES:
        raise too_large("attributes count", len(attrs), MAX_ATTRIBUTES)
    for k, v in attrs.items():
        if not isinstance(v, str):
            raise invalid("Invalid value at '%s.attributes[%s].value' (TYPE_STRING), %s"
                          % (where, k, json.dumps(v)))
        if not k:
            raise invalid("Invalid %s: attribute keys must not be empty." % where)
        if k.startswith("goog"):
            raise invalid("The attribute key '%s' is reserved: keys must not start with "
                          "'goog'." % k)
        if len(k.encode()) > MAX_ATTR_KEY_BYTES:
            raise too_large("attribute key size", len(k.encode()), MAX_ATTR_KEY_BYTES)
        if len(v.encode()) > MAX_ATTR_VALUE_BYTES:
            raise too_large("attribute value size", len(v.encode()), MAX_ATTR_VALUE_BYTES)


def _labels(labels, where):
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise invalid("Invalid value at '%s': labels must map strings to strings." % where)
    return dict(labels)


def _duration_range(field, ns, lo, hi):
    if ns < lo * NS:
        raise too_small(field, format_duration(ns), "%ds" % lo)
    if ns > hi * NS:
        raise too_large(field, format_duration(ns), "%ds" % hi)
