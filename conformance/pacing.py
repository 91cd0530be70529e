"""Keeping within a deployment's rate limits, and saying so: sliding windows of send times
(`Pacer`), a request on its way (`Sent`), a route bucket as the server last stated it
(`BucketState`), where a run's time went (`Ledger`), and the progress line a long wait
prints (`progress`; a run points it at pytest's terminal with `progress_to`, and back
when it ends).
"""

from __future__ import annotations

import collections
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# A rate-limit window the suite keeps: its kind (`global`, `route`, `identity`...) first,
# then what identifies it.
WindowKey = tuple[Any, ...]


def _write(line: str) -> None:
    stream = sys.__stderr__
    if stream is not None:
        stream.write(line + "\n")
        stream.flush()


# Where progress lines go; the pytest plugin points it past output capturing.
PROGRESS_SINK: list[Callable[[str], None]] = [_write]


def progress_to(sink: Callable[[str], None] | None) -> None:
    """Where progress lines go while a run lasts; None: stderr again."""
    PROGRESS_SINK[0] = sink or _write


def progress(message: str) -> None:
    """A line on the terminal while the suite waits, so a long wait is not a hang."""
    PROGRESS_SINK[0](f"[conformance] {message}")


@dataclass
class BucketState:
    """A route bucket as the server last described it (RateLimit-* of a counted answer)."""

    limit: int
    remaining: int
    resets_at: float  # time.monotonic() when its window ends


class Ledger:
    """Where a deployment run's time went, by cause, and how many requests each identity
    sent: the run ends with it, so a slow run says what made it slow."""

    # The causes, in the order the summary names them.
    CAUSES = (
        "requests",
        "100-per-minute pacing",
        "burst pacing",
        "route budgets",
        "windows and expiry",
        "spacing within checks",
        "429 back-off",
    )

    def __init__(self) -> None:
        self.seconds: dict[str, float] = collections.defaultdict(float)
        self.sent: collections.Counter[str] = collections.Counter()
        # Answers each route bucket counted (by bucket name, e.g. "/login"): what the run
        # spent of the budgets its plan estimated.
        self.counted: collections.Counter[str] = collections.Counter()

    def add(self, cause: str, seconds: float) -> None:
        self.seconds[cause] += seconds

    def line(self) -> str:
        parts = [f"{cause} {self.seconds[cause]:.0f}s" for cause in self.CAUSES]
        busiest = ", ".join(f"{who} {n}" for who, n in self.sent.most_common(4))
        return (
            f"time by cause: {'; '.join(parts)}. Requests sent: {sum(self.sent.values())}"
            f" ({busiest})"
        )

    def counted_line(self) -> str:
        spent = ", ".join(f"{bucket} {n}" for bucket, n in sorted(self.counted.items()))
        return f"counted in route buckets: {spent or 'none'}"


@dataclass
class Sent:
    """A request on its way: the windows it was paced against and when it went. Its answer
    decides which of them it counted in (`Client.learn`)."""

    route: str
    keys: list[tuple[WindowKey, int, float]]
    at: float


class Pacer:
    """Sliding windows of send times: waits until a new request fits every window."""

    def __init__(
        self, sleep: Callable[[float], None] = time.sleep, ledger: Ledger | None = None
    ) -> None:
        self._sent: dict[WindowKey, collections.deque[float]] = collections.defaultdict(
            collections.deque
        )
        self._lock = threading.Lock()
        self._sleep = sleep
        self.ledger = ledger or Ledger()

    def delay(self, keys: list[tuple[WindowKey, int, float]], now: float) -> float:
        return self._delay(keys, now)[0]

    def _delay(self, keys: list[tuple[WindowKey, int, float]], now: float) -> tuple[float, str]:
        """The wait before a request fits every window, and the kind of window that
        holds it back longest."""
        wait, kind = 0.0, ""
        for key, limit, window in keys:
            times = self._sent[key]
            while times and times[0] <= now - window:
                times.popleft()
            if len(times) >= limit and times[-limit] + window - now > wait:
                wait, kind = times[-limit] + window - now, key[0]
        return wait, kind

    def acquire(self, keys: list[tuple[WindowKey, int, float]], label: str) -> float:
        """Wait until a request fits every window; the time it may go. Nothing is counted
        yet: the answer says which windows the request counted in (`record`)."""
        while True:
            with self._lock:
                now = time.monotonic()
                wait, kind = self._delay(keys, now)
                if wait <= 0:
                    return now
            if wait > 5:
                progress(f"waiting {wait:.0f}s to stay within the rate limit ({label})")
            # In slices, so that the progress line keeps coming during long waits.
            pause = min(wait + 0.05, 10.0)
            self.ledger.add("100-per-minute pacing" if kind == "global" else "burst pacing", pause)
            self._sleep(pause)

    def record(self, key: WindowKey, at: float | None = None) -> None:
        with self._lock:
            self._sent[key].append(time.monotonic() if at is None else at)
