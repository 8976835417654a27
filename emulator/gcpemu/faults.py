"""Scriptable fault plan (docs/google-apis.md 4.4): match requests by method, path regex and/or endpoint
name; let `skip` matching requests through, then affect `count` of them (0 = unlimited)."""
import contextlib
import re
import threading
import time
import uuid

from .errors import ApiError

ACTIONS = ("status", "delay", "drop", "malformed", "truncate", "commit_then_drop", "job_error")
_FIELDS = {"method", "path", "endpoint", "count", "skip", "action", "status", "reason",
           "message", "retry_after", "body", "content_type", "delay_ms", "domain", "headers"}


class Fault:
    def __init__(self, spec):
        unknown = set(spec) - _FIELDS
        if unknown:
            raise ApiError(400, "Unknown fault field(s): %s" % ", ".join(sorted(unknown)))
        self.id = "f-" + uuid.uuid4().hex[:12]
        self.method = spec.get("method")
        self.method = self.method.upper() if self.method else None
        self.path = spec.get("path")
        try:
            self.path_re = re.compile(self.path) if self.path else None
        except re.error as e:
            raise ApiError(400, "Bad fault path regex: %s" % e)
        self.endpoint = spec.get("endpoint")
        self.action = spec.get("action") or ("status" if "status" in spec else
                                             "delay" if "delay_ms" in spec else None)
        if self.action not in ACTIONS:
            raise ApiError(400, "Fault action must be one of %s" % ", ".join(ACTIONS))
        self.count = _int(spec.get("count", 1), "count")
        self.skip = _int(spec.get("skip", 0), "skip")
        self.status = _int(spec.get("status", 503), "status")
        if self.action == "status" and not 100 <= self.status <= 599:
            raise ApiError(400, "Fault status must be an HTTP status code")
        self.reason = spec.get("reason")
        self.domain = spec.get("domain")
        self.message = spec.get("message")
        self.retry_after = spec.get("retry_after")
        self.body = spec.get("body")
        self.content_type = spec.get("content_type")
        self.headers = spec.get("headers") or {}
        self.delay_ms = _int(spec.get("delay_ms", 0), "delay_ms")
        self.hits = 0
        self.remaining = self.count  # 0 = unlimited
        self.spec = dict(spec)

    def matches(self, method, path, endpoint):
        if self.method and self.method != method:
            return False
        if self.endpoint and self.endpoint != endpoint:
            return False
        if self.path_re is not None and not self.path_re.search(path):
            return False
        return True

    def describe(self):
        d = dict(self.spec)
        d.update({"id": self.id, "action": self.action, "count": self.count,
                  "remaining": self.remaining if self.count else None,
                  "skip_remaining": self.skip, "hits": self.hits})
        return d


def _int(v, name):
    try:
        if isinstance(v, bool):
            raise ValueError
        return int(v)
    except (TypeError, ValueError):
        raise ApiError(400, "Fault field %s must be an integer" % name) from None


class FaultPlan:
    def __init__(self):
        self._faults = []
        self._lock = threading.Lock()
        # Requests a fault is applied to right now, and the delays they wait out: a
        # release ends every delay at once, so a test holds a request exactly as long
        # as it needs to, instead of for a guessed number of seconds.
        self._held = threading.Condition()
        self._releases = 0
        self.applying = 0

    @contextlib.contextmanager
    def applied(self):
        with self._held:
            self.applying += 1
        try:
            yield
        finally:
            with self._held:
                self.applying -= 1

    def hold(self, seconds):
        """Waits out a delay fault; returns early when release() is called."""
        deadline = time.monotonic() + seconds
        with self._held:
            releases = self._releases
            while self._releases == releases:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._held.wait(left)

    def release(self):
        """Ends the delay of every request held now; returns how many requests a fault
        is still being applied to (they go on as if their delay had run out)."""
        with self._held:
            self._releases += 1
            self._held.notify_all()
            return self.applying

    def add(self, spec):
        fault = Fault(spec)
        with self._lock:
            self._faults.append(fault)
        return fault.id

    def clear(self):
        with self._lock:
            self._faults = []

    def remove(self, fault_id):
        with self._lock:
            before = len(self._faults)
            self._faults = [f for f in self._faults if f.id != fault_id]
            return len(self._faults) != before

    def list(self):
        with self._lock:
            return [f.describe() for f in self._faults]

    def state(self):
        with self._held:
            applying = self.applying
        return {"faults": self.list(), "applying": applying}

    def take(self, method, path, endpoint):
        """The first active fault that applies to this request, consuming one use."""
        if not self._faults:
            return None
        with self._lock:
            for f in self._faults:
                if not f.matches(method, path, endpoint):
                    continue
                if f.skip > 0:
                    f.skip -= 1
                    continue
                f.hits += 1
                if f.count:
                    f.remaining -= 1
                    if f.remaining <= 0:
                        self._faults.remove(f)
                return f
        return None
