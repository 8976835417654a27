"""The emulator clock: real time plus an offset that tests can move, or frozen.

It drives server-side time only (token expiry, CURRENT_TIMESTAMP(), creation times, insertId
windows, the streaming buffer). Anything a *client* minted with its own clock (JWT iat/exp)
is checked against the real wall clock instead; see auth.py.

Frozen, it stands still until it is advanced or set: a test that checks both sides of a
deadline ("still leased at 29.9 s, redelivered at 30 s") then does not depend on how much
real time its own requests take.
"""
import threading
import time


class Clock:
    def __init__(self):
        self._offset = 0.0
        self._frozen = None
        self._lock = threading.Lock()

    def now(self):
        frozen = self._frozen
        return frozen if frozen is not None else time.time() + self._offset

    @property
    def frozen(self):
        return self._frozen is not None

    def freeze(self):
        with self._lock:
            if self._frozen is None:
                self._frozen = time.time() + self._offset

    def thaw(self):
        with self._lock:
            if self._frozen is not None:
                self._offset = self._frozen - time.time()
                self._frozen = None

    def now_ms(self):
        return int(self.now() * 1000)

    def now_us(self):
        return int(round(self.now() * 1_000_000))

    @property
    def offset(self):
        frozen = self._frozen
        return frozen - time.time() if frozen is not None else self._offset

    def advance(self, seconds):
        with self._lock:
            if self._frozen is not None:
                self._frozen += float(seconds)
            else:
                self._offset += float(seconds)

    def set(self, epoch):
        with self._lock:
            if self._frozen is not None:
                self._frozen = float(epoch)
            else:
                self._offset = float(epoch) - time.time()

    def reset(self):
        with self._lock:
            self._offset = 0.0
            self._frozen = None
