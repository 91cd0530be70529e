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

Buckets whose window and burst have passed are dropped a few at a time: every acquire
looks at the :data:`SWEEP_PER_ACQUIRE` oldest-visited buckets, so no request ever waits
for a walk over every bucket (a full walk of 200,000 buckets, every 10 s, was the
mock's p99: see ``benchmarks/README.md``). Workers sharing state use
:class:`mockserver.redislimiter.RedisRateLimiter`, with the same rules in Lua.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from .clock import Clock
from .exceptions import RateLimited
from .spec import Limit

BucketKey = tuple[str, str, str | None]
# A bucket: (limit id, window start or None, counted requests, times of the counted
# requests within the burst window). A tuple of numbers, not an object: 100,000 client
# addresses keep 100,000+ of them alive, and the garbage collector stops tracking a
# tuple of numbers, so they neither cost its walks nor much memory (~150 bytes each).
State = tuple[int, float | None, int, tuple[float, ...]]
# Buckets looked at per acquire; more than the one bucket an acquire can create, so the
# sweep keeps up and stale buckets live at most about one lap of the sweep.
SWEEP_PER_ACQUIRE = 3


@dataclass(slots=True)
class Ticket:
    key: BucketKey
    time: float
    limit: Limit
    # The headers as of the acquire, for a limiter that answers them at once (Redis).
    headers: dict[str, str] = field(default_factory=dict)


class Limiter(Protocol):
    """What the rules need of a limiter: this module's, or Redis's (one per worker)."""

    def acquire(self, key: BucketKey, limit: Limit) -> Ticket: ...
    def settle(self, ticket: Ticket, status: int, code: str | None) -> dict[str, str]: ...
    def release(self, ticket: Ticket) -> None: ...
    def transfer(self, held: Ticket, key: BucketKey, limit: Limit) -> Ticket: ...
    def buckets(self) -> list[dict[str, object]]: ...
    def prune(self) -> int: ...
    def reset(self) -> None: ...
    def __len__(self) -> int: ...


def headers_for(
    limit: int, window: float, start: float | None, count: int, now: float
) -> dict[str, str]:
    return {
        "RateLimit-Limit": str(limit),
        "RateLimit-Remaining": str(max(0, limit - count)),
        "RateLimit-Reset": str(max(0, math.ceil((start or 0.0) + window - now))),
    }


def refusal(
    limit: int,
    window: float,
    start: float | None,
    count: int,
    burst_times: tuple[float, ...] | list[float],
    now: float,
    burst_limit: int,
    burst_window: float,
) -> RateLimited | None:
    """The 429 for a bucket in this state, or None if a request may pass."""
    if count >= limit:
        reason = "standard"
    elif len(burst_times) >= burst_limit:
        reason = "burst"
    else:
        return None
    error = RateLimited()
    error.headers = headers_for(limit, window, start, count, now)
    if reason == "burst":
        # Until the oldest request of the burst leaves the burst window.
        clears = max(1, math.ceil(min(burst_times) + burst_window - now))
        reset = int(error.headers["RateLimit-Reset"])
        error.headers["RateLimit-Reset"] = str(min(reset, clears) if reset else clears)
    error.headers["RateLimit-Reason"] = reason
    error.headers["RateLimit-Skipped"] = "true"
    return error


class RateLimiter:
    def __init__(self, clock: Clock, burst_limit: int, burst_window: float) -> None:
        self.clock = clock
        self.burst_limit = burst_limit
        self.burst_window = burst_window
        self._lock = threading.Lock()
        self._buckets: dict[BucketKey, State] = {}
        # Every bucket's key once, oldest-visited first: the sweep's queue.
        self._sweep: deque[BucketKey] = deque()
        self._limits: list[Limit] = []
        self._limit_ids: dict[Limit, int] = {}
        self._limit_by_object: dict[int, tuple[Limit, int]] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()
            self._sweep.clear()

    def acquire(self, key: BucketKey, limit: Limit) -> Ticket:
        """Reserve a place in the bucket, or raise :class:`RateLimited` with its headers."""
        now = self.clock.now()
        with self._lock:
            self._sweep_some(now)
            limit_id, start, count, recent = self._current(key, limit, now)
            # The bucket's limit, which the request that opened its window set.
            bucket_limit = self._limits[limit_id]
            error = refusal(
                bucket_limit.limit,
                bucket_limit.window,
                start,
                count,
                recent,
                now,
                self.burst_limit,
                self.burst_window,
            )
            if error is not None:
                raise error
            if key not in self._buckets:
                self._sweep.append(key)
            self._buckets[key] = (
                limit_id,
                now if start is None else start,
                count + 1,
                (*recent, now),
            )
            return Ticket(key, now, limit)

    def settle(self, ticket: Ticket, status: int, code: str | None) -> dict[str, str]:
        """Count the ticket, or release it for an answer its limiter ignores; the
        response headers."""
        counted = ticket.limit.counts(status, code)
        now = self.clock.now()
        with self._lock:
            state = self._buckets.get(ticket.key)
            if state is None:
                return {"RateLimit-Skipped": "true"}
            if counted:
                limit_id, start, count, _ = state
                limit = self._limits[limit_id]
                return headers_for(limit.limit, limit.window, start, count, now)
            self._release(ticket, state)
        return {"RateLimit-Skipped": "true"}

    def release(self, ticket: Ticket) -> None:
        """Give the place back: the request went on to a more specific limiter."""
        with self._lock:
            state = self._buckets.get(ticket.key)
            if state is not None:
                self._release(ticket, state)

    def transfer(self, held: Ticket, key: BucketKey, limit: Limit) -> Ticket:
        """Acquire in ``key``'s bucket and, if that passed, give ``held`` back."""
        ticket = self.acquire(key, limit)
        self.release(held)
        return ticket

    def buckets(self) -> list[dict[str, object]]:
        now = self.clock.now()
        with self._lock:
            self._prune(now)
            return [
                {
                    "ip": key[0],
                    "route": key[1],
                    "user": key[2],
                    "limit": self._limits[limit_id].limit,
                    "count": count,
                    "reset": max(0.0, (start or 0.0) + self._limits[limit_id].window - now),
                }
                for key, (limit_id, start, count, _) in self._buckets.items()
            ]

    def prune(self) -> int:
        """Drop every stale bucket at once; how many were dropped (the control API's
        listing does this; requests sweep a few buckets each instead)."""
        with self._lock:
            return self._prune(self.clock.now())

    def _stale(self, state: State, now: float) -> bool:
        limit_id, start, _, recent = state
        return (start is None or now >= start + self._limits[limit_id].window) and (
            not recent or now - max(recent) > self.burst_window
        )

    def _prune(self, now: float) -> int:
        stale = [key for key, state in self._buckets.items() if self._stale(state, now)]
        for key in stale:
            del self._buckets[key]
        if stale:
            self._sweep = deque(self._buckets)
        return len(stale)

    def _sweep_some(self, now: float) -> None:
        # _stale, inlined: this runs three times per acquire.
        sweep, buckets, limits = self._sweep, self._buckets, self._limits
        burst_window = self.burst_window
        for _ in range(SWEEP_PER_ACQUIRE if len(sweep) >= SWEEP_PER_ACQUIRE else len(sweep)):
            key = sweep.popleft()
            state = buckets.get(key)
            if state is None:
                continue
            limit_id, start, _, recent = state
            if (start is None or now >= start + limits[limit_id].window) and (
                not recent or now - max(recent) > burst_window
            ):
                del buckets[key]
            else:
                sweep.append(key)

    def _limit_id(self, limit: Limit) -> int:
        # By identity first: hashing a Limit hashes all its fields, on every acquire.
        known = self._limit_by_object.get(id(limit))
        if known is not None and known[0] is limit:
            return known[1]
        limit_id = self._limit_ids.get(limit)
        if limit_id is None:
            limit_id = self._limit_ids[limit] = len(self._limits)
            self._limits.append(limit)
        self._limit_by_object[id(limit)] = (limit, limit_id)
        return limit_id

    def _current(self, key: BucketKey, limit: Limit, now: float) -> State:
        """The bucket as it stands now: a passed window closed, old burst times gone."""
        state = self._buckets.get(key)
        if state is None:
            return self._limit_id(limit), None, 0, ()
        limit_id, start, count, recent = state
        if start is not None and now >= start + self._limits[limit_id].window:
            # A fixed window: once it has passed, the next counted request starts a new one.
            start, count = None, 0
        if start is None:
            # The request that opens the window sets its limit (observed rows 53-60, 212-222).
            limit_id = self._limit_id(limit)
        window = self.burst_window
        if recent and now - recent[0] > window:
            recent = tuple(t for t in recent if now - t <= window)
        return limit_id, start, count, recent

    def _release(self, ticket: Ticket, state: State) -> None:
        limit_id, start, count, recent = state
        count = max(0, count - 1)
        if ticket.time in recent:
            times = list(recent)
            times.remove(ticket.time)
            recent = tuple(times)
        self._buckets[ticket.key] = (limit_id, None if count == 0 else start, count, recent)
