"""The emulator clock: real time plus an offset that tests can move.

It drives server-side time only (token expiry, CURRENT_TIMESTAMP(), creation times, insertId
windows, the streaming buffer). Anything a *client* minted with its own clock (JWT iat/exp)
is checked against the real wall clock instead; see auth.py.
"""
import threading
import time


class Clock:
    def __init__(self):
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self):
        return time.time() + self._offset

    def now_ms(self):
        return int(self.now() * 1000)

    def now_us(self):
        return int(round(self.now() * 1_000_000))

    @property
    def offset(self):
        return self._offset

    def advance(self, seconds):
        with self._lock:
            self._offset += float(seconds)

    def set(self, epoch):
        with self._lock:
            self._offset = float(epoch) - time.time()

    def reset(self):
        with self._lock:
            self._offset = 0.0
