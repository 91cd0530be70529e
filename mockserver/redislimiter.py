"""Rate-limit buckets in Redis, exact across workers: one hash per bucket, acquired and
released by Lua scripts with the same rules as :class:`mockserver.ratelimit.RateLimiter`
(a passed window closes, the request that opens a window sets its limit, burst times
older than the burst window are dropped), expired by Redis once window and burst are over.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

import orjson
import redis

from .clock import Clock
from .exceptions import RateLimited
from .ratelimit import BucketKey, Ticket, headers_for, refusal
from .rediswire import Wire, glob
from .sharedstate import StateMoved
from .spec import Limit

# Redis keeps a bucket this long past the end of its window and burst (real time):
# slack for a clock that was moved, so a bucket the mock's clock still needs is there.
BUCKET_SLACK_MS = 60_000


# A bucket is one string, "limit/window/start/count/recent" (recent: the burst times,
# comma-separated; start empty while no window is open), set with an expiry: one GET
# and one SET where a hash took three commands, each ~2.5 us inside a script.
#
# The rules of one bucket, as Lua functions the scripts below share. judge(raw, a):
# ``raw`` is the bucket as GET gave it (false: none); ``a`` holds now (a Python repr,
# kept as is so a release finds it), the route's limit and window, the burst limit and
# window, the slack in ms. The same rules as RateLimiter._current and acquire: a passed
# window closes, the request that opens a window sets its limit, burst times older than
# the burst window are dropped. judge returns the bucket as an acquire leaves it
# (allowed 0/1 first) and writes nothing; store writes it. acquire(key, a, r): both;
# with ``r`` (a ticket's bucket and time), a request that passes also gives that ticket
# back, as RELEASE does: the route limiter takes over from the global one in one step.
BUCKET_RULES = """
local function parse(raw)
  if not raw then return nil end
  return {string.match(raw, '^([^/]*)/([^/]*)/([^/]*)/([^/]*)/(.*)$')}
end
local function release(key, time)
  local b = parse(redis.call('GET', key))
  if not b then return 0 end
  local count = tonumber(b[4])
  if count > 0 then count = count - 1 end
  local kept, removed = {}, false
  for t in string.gmatch(b[5], '[^,]+') do
    if not removed and t == time then removed = true else kept[#kept + 1] = t end
  end
  local start = b[3]
  if count == 0 then start = '' end
  redis.call('SET', key, b[1] .. '/' .. b[2] .. '/' .. start .. '/' .. count .. '/' ..
    table.concat(kept, ','), 'KEEPTTL')
  return 1
end
local function judge(raw, a)
  local now = tonumber(a[1])
  local b = parse(raw)
  local limit, window, start, count, recent_raw
  if b then
    limit, window, start, count, recent_raw = tonumber(b[1]), tonumber(b[2]), b[3],
      tonumber(b[4]) or 0, b[5]
  else
    count = 0
  end
  if not start or start == '' then start = nil end
  if start and now >= tonumber(start) + window then start = nil; count = 0 end
  if not start then limit = tonumber(a[2]); window = tonumber(a[3]) end
  local burst_window = tonumber(a[5])
  local recent = {}
  if recent_raw then
    for t in string.gmatch(recent_raw, '[^,]+') do
      if now - tonumber(t) <= burst_window then recent[#recent + 1] = t end
    end
  end
  local allowed = 0
  if count < limit and #recent < tonumber(a[4]) then
    allowed = 1
    if not start then start = a[1] end
    count = count + 1
    recent[#recent + 1] = a[1]
  end
  return {allowed, tostring(limit), tostring(window), start or '', count,
    table.concat(recent, ',')}
end
local function store(key, a, j)
  local now = tonumber(a[1])
  local ends = math.max(tonumber(j[4]) + tonumber(j[3]), now + tonumber(a[5]))
  redis.call('SET', key, j[2] .. '/' .. j[3] .. '/' .. j[4] .. '/' .. j[5] .. '/' .. j[6],
    'PX', math.ceil((ends - now) * 1000) + tonumber(a[6]))
end
local function acquire(key, a, release_key, release_time)
  local j = judge(redis.call('GET', key), a)
  if j[1] == 1 then
    store(key, a, j)
    if release_key then release(release_key, release_time) end
  end
  return j
end
"""
# KEYS[1]: the bucket; KEYS[2], ARGV[7]: a ticket to give back if this passes (a transfer).
ACQUIRE = BUCKET_RULES + "return acquire(KEYS[1], ARGV, KEYS[2], ARGV[7])"
# KEYS[1]: the bucket. ARGV[1]: the ticket's time as ACQUIRE got it.
RELEASE = BUCKET_RULES + "return release(KEYS[1], ARGV[1])"
# A request's limits in one step, if the state its steps were judged on is still current.
# KEYS: the global revision, n user revisions, the global bucket, [the route's bucket],
# m usedAt hashes. ARGV: n, m, 1 if a route bucket is named, the revisions as the worker
# holds them (n + 1), the global acquire's arguments, [the route's], m pairs of a
# session id and its usedAt. The revisions and the buckets are read in one MGET.
# Nothing happens if a revision moved: {0}. Else usedAt is written (authentication set
# it before any limiter judged), the global acquire is judged and, if it passes and a
# route bucket is named, the route's acquire that takes over from it: {1, global,
# [route]}, as the pipeline would have had them one by one. Where the route's passes,
# the global acquire and its release leave a bucket that did not exist as if it did
# not (count 0, no window, no burst time), so one that does not exist is not created;
# one that exists is acquired and released as before (its window closed if passed, old
# burst times dropped, its expiry renewed).
GUARDED = (
    BUCKET_RULES
    + """
local n, m, routed = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3] == '1'
local last = n + 2
if routed then last = n + 3 end
local got = redis.call('MGET', unpack(KEYS, 1, last))
for i = 1, n + 1 do
  if (got[i] or '') ~= ARGV[3 + i] then return {0} end
end
local from = n + 5
local function args(at)
  return {ARGV[at], ARGV[at + 1], ARGV[at + 2], ARGV[at + 3], ARGV[at + 4], ARGV[at + 5]}
end
local used_arg = from + 6
if routed then used_arg = from + 12 end
for i = 0, m - 1 do
  redis.call('HSET', KEYS[last + 1 + i], ARGV[used_arg + 2 * i], ARGV[used_arg + 2 * i + 1])
end
local g = args(from)
local global = judge(got[n + 2], g)
if global[1] == 0 then return {1, global} end
if routed then
  local r = args(from + 6)
  local route = judge(got[n + 3], r)
  if route[1] == 1 then
    store(KEYS[n + 3], r, route)
    if got[n + 2] then
      store(KEYS[n + 2], g, global)
      release(KEYS[n + 2], g[1])
    end
  else
    store(KEYS[n + 2], g, global)
  end
  return {1, global, route}
end
store(KEYS[n + 2], g, global)
return {1, global}
"""
)


class Guard(Protocol):
    """What a deferred request's limits are guarded by (``RedisState``)."""

    def guard(self) -> tuple[list[str], list[str]]:
        """The revision keys the request's steps read, and the revisions they read."""
        ...

    def used(self) -> list[tuple[str, str, str]]:
        """The usedAt the request set, to write with its limits: (hash, session, time)."""
        ...

    def guarded(self, used_written: bool = True) -> None:
        """The guard held: the state the steps read was current when the limits were
        taken, and (``used_written``) ``used()`` was written with them."""
        ...

    def moved(self) -> None:
        """It did not: nothing was taken."""
        ...


# The methods the API's pipeline answers (mockserver.api.API_METHODS) but OPTIONS, a
# preflight that no limiter counts.
AHEAD_METHODS = frozenset(("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "TRACE"))


class RedisRateLimiter:
    """The rate limiter's interface (see :class:`mockserver.ratelimit.RateLimiter`), one
    Redis hash per bucket, each acquire and release one atomic script."""

    def __init__(
        self, client: redis.Redis, prefix: str, clock: Clock, burst_limit: int, burst_window: float
    ) -> None:
        self.client = client
        # Not ":bucket:", where earlier versions kept each bucket as a hash: a GET fails
        # on one, and a Redis a mock was upgraded on may hold some for a few minutes.
        self.prefix = f"{prefix}:buckets:"
        self._prefix = self.prefix.encode()
        self.clock = clock
        self.burst_limit = burst_limit
        self.burst_window = burst_window
        self.wire = Wire(client)
        self._acquire = client.register_script(ACQUIRE)
        self._release = client.register_script(RELEASE)
        self._guarded = client.register_script(GUARDED)
        # A deferred request (see RedisState.middleware): its global acquire waits, as
        # ``_pending``, to go with the route's acquire, or alone, in one guarded step.
        self.deferral: Guard | None = None
        self._pending: tuple[BucketKey, Limit, float, Ticket] | None = None
        self._void: Ticket | None = None  # a deferred global ticket that was refused
        self._held: tuple[BucketKey, Limit, float, Any] | None = None
        self._unclaimed: list[tuple[BucketKey, Limit, float, Any]] = []
        self._tails: dict[int, tuple[Limit, tuple[str | int, ...]]] = {}

    def _key(self, key: BucketKey) -> bytes:
        # orjson: every request names two buckets, and json.dumps cost ~3 us each.
        return self._prefix + orjson.dumps(key)

    def _args(self, now: float, limit: Limit) -> list[str | int]:
        # All but now are the limit's: formatted once (the limit is kept, so its id is
        # not reused by another while it is a key here).
        held = self._tails.get(id(limit))
        if held is None or held[0] is not limit:
            tail = (limit.limit, repr(float(limit.window)), self.burst_limit,
                    repr(float(self.burst_window)), BUCKET_SLACK_MS)  # fmt: skip
            held = self._tails[id(limit)] = (limit, tail)
        return [repr(now), *held[1]]

    # An acquire sent ahead, with the request's first round trip (see RedisState._begin):
    # the pipeline's first acquire takes its answer if it is for the same bucket; one
    # that nobody took is given back with the request's writes, waited for.

    def ahead(self, key: BucketKey, limit: Limit) -> tuple[tuple[Any, ...], float]:
        """The command that acquires in ``key``'s bucket now, and the time it uses."""
        now = self.clock.now()
        command = ("EVALSHA", self._acquire.sha, 1, self._key(key), *self._args(now, limit))
        return command, now

    def ahead_for(
        self, environ: dict[str, Any], header: str | None, signer: Any, global_limit: Limit
    ) -> tuple[tuple[Any, ...], tuple[BucketKey, Limit, float]] | None:
        """The global bucket's acquire, to send with a request's first round trip: the
        bucket the pipeline's first step will take, if the token's session is live
        (verified with the key this worker holds; that round trip tells whether the key
        is still current). A guess that turns out wrong is given back at the end."""
        method = environ.get("REQUEST_METHOD")
        if not environ.get("PATH_INFO", "").startswith("/api/") or method not in AHEAD_METHODS:
            return None
        user_id = None
        token = (header or "").strip()
        if token:
            claims = signer.verify(token)
            if claims is not None and "purpose" not in claims:
                user_id = claims["sub"]
        forwarded = environ.get("HTTP_X_FORWARDED_FOR", "").split(",")[0].strip()
        key: BucketKey = (forwarded or environ.get("REMOTE_ADDR") or "unknown", "*", user_id)
        command, now = self.ahead(key, global_limit)
        return command, (key, global_limit, now)

    def hold(self, key: BucketKey, limit: Limit, now: float, reply: Any) -> None:
        self._held = (key, limit, now, reply)

    def unclaimed(self) -> list[tuple[Any, ...]]:
        """The commands that give back what was acquired ahead and never taken."""
        leftover = [*self._unclaimed, *([self._held] if self._held else [])]
        self._held, self._unclaimed = None, []
        return [
            ("EVALSHA", self._release.sha, 1, self._key(key), repr(now))
            for key, _, now, reply in leftover
            if reply[0]  # only a passed acquire counted anything
        ]

    def forget_held(self) -> None:
        self._held, self._unclaimed = None, []
        self.deferral, self._pending, self._void = None, None, None

    # A deferred request: the pipeline's steps run on the state this worker holds, the
    # global acquire waits, and the request's limits are taken in one script that first
    # checks that state's revisions (GUARDED), when the route's acquire comes, or before
    # the operation or an answer (``resolve``). If a revision moved, nothing was taken
    # and StateMoved makes the request run again, as of the current state. Exact: every
    # acquire happens at one instant at which the state the steps read was current.

    @property
    def pending(self) -> bool:
        return self._pending is not None

    def resolve(self, route: tuple[BucketKey, Limit] | None = None) -> Ticket | None:
        """Take the deferred global ticket (and ``route``'s, giving the global one back)
        in one guarded step; the route's ticket, if one was asked for."""
        pending, deferral = self._pending, self.deferral
        if pending is None or deferral is None:
            return None
        self._pending = None
        key, limit, now, ticket = pending
        revision_keys, revisions = deferral.guard()
        used = deferral.used()
        keys: list[str | bytes] = [*revision_keys, self._key(key)]
        args: list[Any] = [len(revision_keys) - 1, len(used), int(route is not None)]
        args.extend(revisions)
        args.extend(self._args(now, limit))
        if route is not None:
            keys.append(self._key(route[0]))
            args.extend(self._args(now, route[1]))
        for hash_key, session_id, used_at in used:
            keys.append(hash_key)
            args.extend((session_id, used_at))
        reply = self.wire.script(self._guarded, keys, args)
        if not reply[0]:
            deferral.moved()
            raise StateMoved()
        deferral.guarded()
        if route is not None and len(reply) > 2 and reply[2][0]:
            # The route's passed, so the global one did (and was given back): its
            # headers would go unused.
            return self._ticket(route[0], route[1], now, reply[2])
        try:
            ticket.headers = self._ticket(key, limit, now, reply[1]).headers
        except RateLimited:
            self._void = ticket  # refused: the request holds nothing in this bucket
            raise
        if route is None:
            return None
        return self._ticket(route[0], route[1], now, reply[2])

    def acquire(self, key: BucketKey, limit: Limit, release: Ticket | None = None) -> Ticket:
        if self.deferral is not None and self._pending is None and release is None:
            now = self.clock.now()
            ticket = Ticket(key, now, limit)
            self._pending = (key, limit, now, ticket)
            return ticket
        held = self._held
        if held is not None and release is None:
            self._held = None
            if held[0] == key and held[1] is limit:
                return self._ticket(key, limit, held[2], held[3])
            self._unclaimed.append(held)
        now = self.clock.now()
        keys: list[str | bytes] = [self._key(key)]
        args = self._args(now, limit)
        if release is not None:
            keys.append(self._key(release.key))
            args.append(repr(release.time))
        return self._ticket(key, limit, now, self.wire.script(self._acquire, keys, args))

    def _ticket(self, key: BucketKey, limit: Limit, now: float, reply: Any) -> Ticket:
        allowed, raw_limit, raw_window, raw_start, count, raw_recent = reply
        bucket_limit, window = int(float(raw_limit)), float(raw_window)
        start = float(raw_start) if raw_start else None
        count = int(count)
        if not allowed:
            recent = [float(t) for t in raw_recent.split(b",") if t]
            error = refusal(
                bucket_limit, window, start, count, recent, now, self.burst_limit, self.burst_window
            )
            if error is not None:
                raise error
        return Ticket(key, now, limit, headers_for(bucket_limit, window, start, count, now))

    def settle(self, ticket: Ticket, status: int, code: str | None) -> dict[str, str]:
        if ticket is self._void:
            return {}  # a refused acquire: nothing to count or give back
        # Counted: the headers as the acquire left the bucket, with no second round trip.
        if ticket.limit.counts(status, code):
            return dict(ticket.headers)
        self.release(ticket)
        return {"RateLimit-Skipped": "true"}

    def release(self, ticket: Ticket) -> None:
        if ticket is self._void:
            return
        self.wire.script(self._release, [self._key(ticket.key)], [repr(ticket.time)])

    def transfer(self, held: Ticket, key: BucketKey, limit: Limit) -> Ticket:
        """Acquire in ``key``'s bucket and, if that passed, release ``held``: one round trip."""
        if self._pending is not None and held is self._pending[3]:
            ticket = self.resolve((key, limit))
            assert ticket is not None
            return ticket
        return self.acquire(key, limit, release=held)

    def _scan(self) -> list[bytes]:
        return list(self.client.scan_iter(match=glob(self.prefix) + "*", count=1000))

    def buckets(self) -> list[dict[str, object]]:
        now = self.clock.now()
        keys = self._scan()
        items = []
        for i in range(0, len(keys), 1000):
            chunk = keys[i : i + 1000]
            found: list[bytes | None] = self.client.mget(chunk)  # type: ignore[assignment]
            for key, raw in zip(chunk, found, strict=True):
                item = self._item(key, raw, now)
                if item is not None:
                    items.append(item)
        return items

    def _item(self, key: bytes, raw: bytes | None, now: float) -> dict[str, object] | None:
        """A bucket as the control API lists it; None if gone or stale."""
        if raw is None:
            return None  # expired since the scan
        raw_limit, raw_window, raw_start, raw_count, raw_recent = raw.split(b"/", 4)
        window = float(raw_window)
        start = float(raw_start) if raw_start else None
        recent = [float(t) for t in raw_recent.split(b",") if t]
        if (start is None or now >= start + window) and all(
            now - t > self.burst_window for t in recent
        ):
            return None  # stale: Redis has not expired it yet
        ip, route, user = json.loads(key[len(self.prefix) :])
        return {
            "ip": ip,
            "route": route,
            "user": user,
            "limit": int(float(raw_limit)),
            "count": int(raw_count),
            "reset": max(0.0, (start or 0.0) + window - now),
        }

    def prune(self) -> int:
        return 0  # Redis expires buckets itself

    def reset(self) -> None:
        keys = self._scan()
        for i in range(0, len(keys), 1000):
            self.client.delete(*keys[i : i + 1000])

    def __len__(self) -> int:
        return len(self._scan())
