"""The mock's clock: real time plus an offset, optionally frozen.

Every rule that depends on time (token expiry, rate-limit windows, TOTP) reads it from
one :class:`Clock`, so tests move time instead of sleeping::

    clock = Clock()
    clock.advance(300)  # five minutes later, at once
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

# The last second that dates can show (9999-12-31T23:59:59Z): every time the mock writes
# as a date (createdAt, usedAt, ...) must stay at or before it.
MAX_EPOCH = 253_402_300_799.0


class Clock:
    def __init__(self, source: Callable[[], float] = time.time) -> None:
        self._source = source
        self._lock = threading.Lock()
        self._offset = 0.0
        self._frozen_at: float | None = None

    def now(self) -> float:
        frozen = self._frozen_at
        return frozen if frozen is not None else self._source() + self._offset

    @property
    def offset(self) -> float:
        return self.now() - self._source()

    @property
    def frozen(self) -> bool:
        return self._frozen_at is not None

    def advance(self, seconds: float) -> None:
        """Move forward; ValueError (and no move) if that leaves the dates' range."""
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError("the clock only moves forward, by a finite number of seconds")
        with self._lock:
            self.check(self.now() + seconds)
            if self._frozen_at is not None:
                self._frozen_at += seconds
            else:
                self._offset += seconds

    def set(self, epoch: float) -> None:
        """Jump to ``epoch``; ValueError (and no move) if it is outside the dates' range."""
        epoch = float(epoch)
        with self._lock:
            self.check(epoch)
            if self._frozen_at is not None:
                self._frozen_at = epoch
            else:
                self._offset = epoch - self._source()

    @staticmethod
    def check(epoch: float) -> None:
        """ValueError unless ``epoch`` is a time the mock can show as a date."""
        if not (math.isfinite(epoch) and 0 <= epoch <= MAX_EPOCH):
            raise ValueError(f"the clock must stay between 0 and {MAX_EPOCH:.0f} (year 9999)")

    def freeze(self, frozen: bool) -> None:
        with self._lock:
            if frozen and self._frozen_at is None:
                self._frozen_at = self._source() + self._offset
            elif not frozen and self._frozen_at is not None:
                # Time resumes from where it stood, not from where real time is.
                self._offset = self._frozen_at - self._source()
                self._frozen_at = None

    def reset(self) -> None:
        with self._lock:
            self._offset = 0.0
            self._frozen_at = None
