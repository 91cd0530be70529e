"""Rate limiting: fixed-window buckets with a burst limit, exact under concurrency.

A bucket is keyed by (client IP, route, user id or None), where the route is the path as
the service routes it, shared by every method on that path (see ``spec.Limit``). Where
methods with different limits share a route, the request that opens the bucket's window
sets its limit and window until the window ends. A request first
*acquires* a ticket, which reserves its place in the bucket under a lock, so that 20
simultaneous requests cannot all slip through; when the response is known the ticket is
*settled*: counted, or released again if the status is one the limiter ignores (and a
429 is never counted)::

    limiter = RateLimiter(clock, burst_limit=3, burst_window=1.0)
    ticket = limiter.acquire(("127.0.0.1", "/login", None), Limit(4, 300))
    headers = limiter.settle(ticket, 201, None)  # RateLimit-Limit/-Remaining/-Reset
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

from .clock import Clock
from .exceptions import RateLimited
from .spec import Limit

BucketKey = tuple[str, str, str | None]


@dataclass(slots=True)  # one per client address and route: keep them small
class Bucket:
    limit: Limit
    start: float | None = None  # the window starts at the first counted request
    count: int = 0
    recent: deque[float] = field(default_factory=deque)  # times of counted requests, for bursts

    def reset_at(self) -> float:
        return (self.start or 0.0) + self.limit.window

    def to_dict(self) -> dict[str, Any]:
        limit = self.limit
        return {
            "limit": [
                limit.limit,
                limit.window,
                sorted(limit.ignore_statuses),
                sorted(limit.ignore_codes),
                limit.route,
                sorted(limit.literal_routes),
            ],
            "start": self.start,
            "count": self.count,
            "recent": list(self.recent),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Bucket:
        limit, window, ignore, codes, route, literal = data["limit"]
        return cls(
            Limit(
                int(limit),
                float(window),
                frozenset(ignore),
                frozenset(codes),
                route,
                frozenset(literal),
            ),
            data["start"],
            int(data["count"]),
            deque(data["recent"]),
        )


@dataclass(slots=True)
class Ticket:
    key: BucketKey
    time: float
    limit: Limit


class RateLimiter:
    def __init__(
        self,
        clock: Clock,
        burst_limit: int,
        burst_window: float,
        buckets: MutableMapping[BucketKey, Bucket] | None = None,
    ) -> None:
        self.clock = clock
        self.burst_limit = burst_limit
        self.burst_window = burst_window
        self._lock = threading.Lock()
        # A plain dict in one process; a Redis-backed mapping when workers share state.
        self._buckets: MutableMapping[BucketKey, Bucket] = {} if buckets is None else buckets

    @property
    def store(self) -> MutableMapping[BucketKey, Bucket]:
        return self._buckets

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()

    def acquire(self, key: BucketKey, limit: Limit) -> Ticket:
        """Reserve a place in the bucket, or raise :class:`RateLimited` with its headers."""
        now = self.clock.now()
        with self._lock:
            bucket = self._bucket(key, limit, now)
            burst_count = sum(1 for t in bucket.recent if now - t <= self.burst_window)
            reason = None
            # The bucket's limit, which the request that opened its window set.
            if bucket.count >= bucket.limit.limit:
                reason = "standard"
            elif burst_count >= self.burst_limit:
                reason = "burst"
            if reason is not None:
                error = RateLimited()
                error.headers = self._headers(bucket, now)
                if reason == "burst":
                    # Until the oldest request of the burst leaves the burst window.
                    oldest = min(t for t in bucket.recent if now - t <= self.burst_window)
                    clears = max(1, math.ceil(oldest + self.burst_window - now))
                    reset = int(error.headers["RateLimit-Reset"])
                    error.headers["RateLimit-Reset"] = str(min(reset, clears) if reset else clears)
                error.headers["RateLimit-Reason"] = reason
                error.headers["RateLimit-Skipped"] = "true"
                raise error
            if bucket.start is None:
                bucket.start = now
            bucket.count += 1
            bucket.recent.append(now)
            return Ticket(key, now, limit)

    def settle(self, ticket: Ticket, status: int, code: str | None) -> dict[str, str]:
        """Count the ticket, or release it for an answer its limiter ignores; the
        response headers."""
        counted = ticket.limit.counts(status, code)
        now = self.clock.now()
        with self._lock:
            bucket = self._buckets.get(ticket.key)
            if counted and bucket is not None:
                return self._headers(bucket, now)
            if bucket is not None:
                self._release(bucket, ticket)
        return {"RateLimit-Skipped": "true"}

    def release(self, ticket: Ticket) -> None:
        """Give the place back: the request went on to a more specific limiter."""
        with self._lock:
            bucket = self._buckets.get(ticket.key)
            if bucket is not None:
                self._release(bucket, ticket)

    def buckets(self) -> list[dict[str, object]]:
        now = self.clock.now()
        with self._lock:
            self._prune(now)
            return [
                {
                    "ip": key[0],
                    "route": key[1],
                    "user": key[2],
                    "limit": bucket.limit.limit,
                    "count": bucket.count,
                    "reset": max(0.0, bucket.reset_at() - now),
                }
                for key, bucket in self._buckets.items()
            ]

    def prune(self) -> int:
        """Drop buckets whose window and burst have both passed; how many were dropped."""
        with self._lock:
            return self._prune(self.clock.now())

    def _prune(self, now: float) -> int:
        stale = [
            key
            for key, bucket in self._buckets.items()
            if (bucket.start is None or now >= bucket.reset_at())
            and all(now - t > self.burst_window for t in bucket.recent)
        ]
        for key in stale:
            del self._buckets[key]
        return len(stale)

    def _bucket(self, key: BucketKey, limit: Limit, now: float) -> Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = Bucket(limit)
        elif bucket.start is not None and now >= bucket.reset_at():
            # A fixed window: once it has passed, the next counted request starts a new one.
            bucket.start, bucket.count = None, 0
        if bucket.start is None:
            # The request that opens the window sets its limit (observed rows 53-60, 212-222).
            bucket.limit = limit
        while bucket.recent and now - bucket.recent[0] > self.burst_window:
            bucket.recent.popleft()
        return bucket

    @staticmethod
    def _release(bucket: Bucket, ticket: Ticket) -> None:
        if bucket.count > 0:
            bucket.count -= 1
        if ticket.time in bucket.recent:
            bucket.recent.remove(ticket.time)
        if bucket.count == 0:
            bucket.start = None

    @staticmethod
    def _headers(bucket: Bucket, now: float) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(bucket.limit.limit),
            "RateLimit-Remaining": str(max(0, bucket.limit.limit - bucket.count)),
            "RateLimit-Reset": str(max(0, math.ceil(bucket.reset_at() - now))),
        }
