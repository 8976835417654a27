"""Scriptable fault plan (docs/google-apis.md 4.4): match requests by method, path regex and/or endpoint
name; let `skip` matching requests through, then affect `count` of them (0 = unlimited)."""
import contextlib
import re
import threading
import uuid

from .errors import ApiError

ACTIONS = ("status", "delay", "drop", "malformed", "truncate", "commit_then_drop", "job_error",
           "hold")
_FIELDS = {"method", "path", "endpoint", "count", "skip", "action", "status", "reason",
           "message", "retry_after", "body", "content_type", "delay_ms", "domain", "headers",
           "hold_ms"}
# A held request goes on by itself after this long (real time), so a test that
# forgets to release cannot hang the emulator.
HOLD_MS_DEFAULT = 60_000


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
        self.hold_ms = _int(spec.get("hold_ms", HOLD_MS_DEFAULT), "hold_ms")
        # hold: requests wait on this until the fault is released or removed
        self.released = threading.Event()
        self._held_lock = threading.Lock()
        self.held = 0
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
        if self.action == "hold":
            d.update({"held": self.held, "released": self.released.is_set()})
        return d

    def hold(self):
        """Waits (a hold fault) until released, removed or hold_ms passed."""
        with self._held_lock:
            self.held += 1
        try:
            self.released.wait(self.hold_ms / 1000.0)
        finally:
            with self._held_lock:
                self.held -= 1


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
        # hold faults by id until released or cleared, used up or not: a
        # request may still be held by a fault whose count ran out
        self._holds = {}
        self._lock = threading.Lock()
        # how many requests a fault is applied to right now (held, delayed, or
        # still being answered after): settle_faults() waits for none, so what a
        # held request does has landed before a test goes on
        self._applying_lock = threading.Lock()
        self.applying = 0

    @contextlib.contextmanager
    def applied(self):
        with self._applying_lock:
            self.applying += 1
        try:
            yield
        finally:
            with self._applying_lock:
                self.applying -= 1

    def add(self, spec):
        fault = Fault(spec)
        with self._lock:
            self._faults.append(fault)
            if fault.action == "hold":
                self._holds[fault.id] = fault
        return fault.id

    def clear(self):
        with self._lock:
            self._faults = []
            holds, self._holds = self._holds, {}
        for f in holds.values():
            f.released.set()

    def remove(self, fault_id):
        with self._lock:
            before = len(self._faults)
            self._faults = [f for f in self._faults if f.id != fault_id]
            removed = len(self._faults) != before
            hold = self._holds.pop(fault_id, None)
        if hold is not None:
            hold.released.set()
        return removed or hold is not None

    def release(self, fault_id):
        """Lets the requests a hold fault holds go on, and retires the fault
        (it no longer matches, so later faults can); False when there is no
        such hold fault."""
        with self._lock:
            hold = self._holds.get(fault_id)
            if hold is not None:
                self._faults = [f for f in self._faults if f is not hold]
        if hold is None:
            return False
        hold.released.set()
        return True

    def release_all(self):
        """Releases and retires every hold fault; returns how many requests a fault
        is still being applied to."""
        with self._lock:
            holds = list(self._holds.values())
            self._faults = [f for f in self._faults if f.action != "hold"]
        for f in holds:
            f.released.set()
        with self._applying_lock:
            return self.applying

    def list(self):
        with self._lock:
            return [f.describe() for f in self._faults]

    def describe(self, fault_id):
        with self._lock:
            for f in self._faults:
                if f.id == fault_id:
                    return f.describe()
            hold = self._holds.get(fault_id)
            return hold.describe() if hold is not None else None

    def state(self):
        with self._applying_lock:
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
