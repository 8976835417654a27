"""The emulator clock: real time plus an offset that tests can move, or frozen.

It drives server-side time only (token expiry, CURRENT_TIMESTAMP(), creation times, insertId
windows, the streaming buffer). Anything a *client* minted with its own clock (JWT iat/exp)
is checked against the real wall clock instead; see auth.py.

Frozen, it stands still until it is advanced or set, but for a microsecond per reading:
no two events share a time, and a deadline reached exactly is passed, as with a running
clock. A test that checks both sides of a deadline ("still leased at 29.9 s, redelivered
at 30 s") then does not depend on how much real time its own requests take.
"""
import threading
import time


class Clock:
    def __init__(self):
        self._offset = 0.0
        self._frozen = None
        self._lock = threading.Lock()

    def now(self):
        if self._frozen is None:
            return time.time() + self._offset
        with self._lock:
            if self._frozen is None:
                return time.time() + self._offset
            self._frozen += 1               # whole microseconds
            return self._frozen / 1_000_000

    @property
    def frozen(self):
        return self._frozen is not None

    def freeze(self):
        with self._lock:
            if self._frozen is None:
                self._frozen = int(round((time.time() + self._offset) * 1_000_000))

    def thaw(self):
        with self._lock:
            if self._frozen is not None:
                self._offset = self._frozen / 1_000_000 - time.time()
                self._frozen = None

    def now_ms(self):
        return int(self.now() * 1000)

    def now_us(self):
        return int(round(self.now() * 1_000_000))

    @property
    def offset(self):
        frozen = self._frozen
        return frozen / 1_000_000 - time.time() if frozen is not None else self._offset

    def advance(self, seconds):
        with self._lock:
            if self._frozen is not None:
                self._frozen += int(round(float(seconds) * 1_000_000))
            else:
                self._offset += float(seconds)

    def set(self, epoch):
        with self._lock:
            if self._frozen is not None:
                self._frozen = int(round(float(epoch) * 1_000_000))
            else:
                self._offset = float(epoch) - time.time()

    def reset(self):
        with self._lock:
            self._offset = 0.0
            self._frozen = None
