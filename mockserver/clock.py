"""The mock's clock: real time plus an offset, optionally frozen.

Every rule that depends on time (token expiry, rate-limit windows, TOTP) reads it from
one :class:`Clock`, so tests move time instead of sleeping::

    clock = Clock()
    clock.advance(300)  # five minutes later, at once
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


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
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            if self._frozen_at is not None:
                self._frozen_at += seconds
            else:
                self._offset += seconds

    def set(self, epoch: float) -> None:
        with self._lock:
            if self._frozen_at is not None:
                self._frozen_at = float(epoch)
            else:
                self._offset = float(epoch) - self._source()

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
