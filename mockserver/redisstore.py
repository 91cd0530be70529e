"""Shared state in Redis, so several workers (or processes on several machines) behave
exactly like one mock, and scale.

There is no global lock. Each piece of state is changed atomically on its own keys:

- **rate-limit buckets**: one Redis hash per bucket, acquired and released by Lua
  scripts, so limits stay exact across workers (:mod:`mockserver.redislimiter`);
- **users and their sessions**: one key per user (the user as the state file keeps
  it) beside its revision (a number never used twice). A change takes that user's lock,
  reloads the user if another worker changed it, applies the ordinary rules and writes
  the user back in one script that checks the lock and the revision
  (:data:`COMMIT_USER`);
- **usedAt**: one hash per user, ``session id -> time``, written with the request's
  limits (in the same script) only when the time moved, so reads never rewrite a user;
- **the journal**: one list; a request's entry rides with its worker's next round trip,
  and a reader first has every worker send what it holds (:class:`RedisJournal`);
- **everything else** (the users list, kill switches, the signing key, the clock):
  one JSON value and a revision, changed under a global lock that only such changes
  (and the control API) take.

Every worker keeps a copy of the state in an ordinary :class:`~mockserver.models.Backend`.
An API request's steps run on that copy, and its rate limits are taken in one script
that first checks the revisions of what the steps read (the global one and each user
read); if one moved, nothing is taken and the request runs again on the current state
(see ``middleware``). Other requests (the control API, a behaviour profile's) start
with one round trip that reads the global revision and the caller's user revision (the
token's ``sub``, read before it is verified: a hint, not a trust decision), reloading
only what changed. The rules stay in :mod:`mockserver.models`
and :mod:`mockserver.ratelimit`; they call :class:`RedisState` through the
:class:`~mockserver.sharedstate.SharedState` hooks::

    state = RedisState(client, backend, "cumulonimbus-mock", journal)
    state.start()
    app.wsgi_app = state.middleware(app.wsgi_app)
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis

from . import exceptions as err
from .clock import Clock
from .models import Backend
from .records import Session, User
from .redislimiter import ACQUIRE, GUARDED, RELEASE
from .redisrequest import RedisRequests, revision
from .rediswire import RedisJournal, Wire, glob
from .sharedstate import SharedState
from .snapshot import restore_signer, restore_user, user_snapshot

log = logging.getLogger("cumulonimbus-mock")

LOCK_TTL_MS = 30_000  # a crashed worker's lock expires instead of blocking the rest
# KEYS: the user's lock, the user, the users list, the revision counter, the user's revision.
# ARGV: the lock token, the user id, the user's data, the revision the change began from.
# -1: the lock was lost; -2: the user was deleted; -3: the user changed under the lock
# (a reset); else the new revision. The lock is given back in every case.
COMMIT_USER = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local result
if redis.call('HEXISTS', KEYS[3], ARGV[2]) == 0 then
  result = -2
elseif (redis.call('GET', KEYS[5]) or '') ~= ARGV[4] then
  result = -3
else
  result = redis.call('INCR', KEYS[4])
  redis.call('SET', KEYS[2], ARGV[3])
  redis.call('SET', KEYS[5], result)
end
redis.call('DEL', KEYS[1])
return result
"""
UNLOCK = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
)


class RedisState(RedisRequests, SharedState):
    def __init__(
        self,
        client: redis.Redis,
        backend: Backend,
        prefix: str,
        journal: RedisJournal,
        wire: Wire | None = None,
    ) -> None:
        self.client = client
        self.wire = wire or Wire(client)
        self.wire.rider = journal  # the journal's entries go with the next round trip
        self.backend = backend
        self.journal = journal
        self.prefix = prefix
        self.keys = {
            name: f"{prefix}:{name}" for name in ("seq", "grev", "global", "users", "lock:global")
        }
        self._commit = client.register_script(COMMIT_USER)
        self._unlock = client.register_script(UNLOCK)
        self._local = threading.RLock()  # one request at a time within this worker
        self._grev: int | None = None  # the global revision this worker holds
        self._revs: dict[str, int] = {}  # user id -> revision of the data held
        self._jwk: dict[str, Any] | None = None
        self._fresh: set[str] = set()  # users known to be current in this request
        self._user_locks: dict[str, str] = {}
        self._global_token: str | None = None
        self._added: dict[str, User] = {}
        self._deleted: set[str] = set()
        self._wipe = False
        self._used: dict[tuple[str, str], float] = {}  # usedAt to write at the end
        self._written_used: dict[tuple[str, str], float] = {}
        self._touched: set[tuple[str, str]] = set()
        self._deferred = False
        self._read: dict[str, None] = {}
        backend.shared = self

    def _user_key(self, user_id: str) -> str:
        return f"{self.prefix}:user:{user_id}"

    def _rev_key(self, user_id: str) -> str:
        return f"{self.prefix}:rev:{user_id}"

    def _used_key(self, user_id: str) -> str:
        return f"{self.prefix}:used:{user_id}"

    # Start (the requests: mockserver.redisrequest) ----------------------------------

    def start(self) -> None:
        """Publish this worker's state if Redis holds none yet, else load Redis's."""
        # Not on the Wire: this runs before the fork, and its connection would be shared.
        for script in (ACQUIRE, RELEASE, GUARDED):
            self.client.script_load(script)
        with self._local, self._locked(self.keys["lock:global"]):
            if self.client.exists(self.keys["global"]):
                self._load_global()
            else:
                self._added = dict(self.backend.users)
                self._publish_global()

    # The hooks the rules call ------------------------------------------------------

    def fresh(self, user: User) -> None:
        if user.id in self._fresh or user.id in self._user_locks:
            return
        if self._deferred:
            self._read[user.id] = None  # checked when the limits are taken
            return
        self._sync_users([user.id])
        self._fresh.add(user.id)

    def fresh_used(self, user: User, session: Session) -> None:
        if (user.id, session.id) in self._touched:
            return  # this request set it
        self.current()
        raw = self.client.hget(self._used_key(user.id), session.id)
        if raw is not None:
            session.used_at = float(raw)

    def touched(self, user: User, session: Session) -> None:
        key = (user.id, session.id)
        self._touched.add(key)
        if session.used_at is not None and self._written_used.get(key) != session.used_at:
            self._used[key] = session.used_at

    @contextmanager
    def changing_user(self, user: User) -> Iterator[None]:
        self.current()  # nothing is written before the state the request read is known current
        if user.id in self._user_locks:
            yield
            return
        lock = f"{self.prefix}:lock:user:{user.id}"
        token = self._take(lock)
        self._user_locks[user.id] = token
        committed = False
        try:
            self._sync_users([user.id])
            before = self.backend.revision
            yield
            if self.backend.revision != before:
                data = json.dumps(user_snapshot(user), separators=(",", ":"))
                expected = self._revs.get(user.id)
                result = int(
                    self._commit(
                        keys=[
                            lock,
                            self._user_key(user.id),
                            self.keys["users"],
                            self.keys["seq"],
                            self._rev_key(user.id),
                        ],
                        args=[token, user.id, data, "" if expected is None else str(expected)],
                    )
                )
                committed = True
                if result == -2:
                    raise err.InvalidSession()  # deleted by another worker meanwhile
                if result < 0:
                    self._forget()
                    raise redis.RedisError("a user changed under its lock; the change was dropped")
                self._revs[user.id] = result
        finally:
            del self._user_locks[user.id]
            if not committed:
                self._unlock(keys=[lock], args=[token])

    @contextmanager
    def changing_global(self) -> Iterator[None]:
        self.current()
        if self._global_token is not None:
            yield
            return
        with self._locked(self.keys["lock:global"]) as token:
            self._global_token = token
            try:
                if revision(self.client.get(self.keys["grev"])) != self._grev:
                    self._load_global()
                before = (self.backend.revision, _clock_state(self.backend.clock))
                self._added, self._deleted, self._wipe = {}, set(), False
                yield
                after = (self.backend.revision, _clock_state(self.backend.clock))
                if after != before or self._added or self._deleted or self._wipe:
                    self._publish_global()
            finally:
                self._global_token = None

    def added(self, user: User) -> None:
        self._added[user.id] = user
        self._deleted.discard(user.id)

    def deleted(self, user: User) -> None:
        self._added.pop(user.id, None)
        self._deleted.add(user.id)

    def wiped(self) -> None:
        self._wipe = True

    # Loading and publishing --------------------------------------------------------

    def _load_global(self) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.get(self.keys["grev"])
        pipe.get(self.keys["global"])
        pipe.hgetall(self.keys["users"])
        raw_rev, raw_global, index = pipe.execute()
        backend = self.backend
        if raw_global is None:  # flushed by hand: publish what this worker holds
            self._added = dict(backend.users)
            if self._global_token is not None:
                self._publish_global()
            else:
                with self._locked(self.keys["lock:global"]):
                    self._publish_global()
            return
        data = json.loads(raw_global)
        with backend.lock:
            if data["signingKey"] != self._jwk:
                backend.signer = restore_signer(data["signingKey"], data["issuer"])
                self._jwk = data["signingKey"]
            backend.kill_switches = {int(k): v for k, v in data["killSwitches"].items()}
            backend.profile = data.get("profile")  # the behaviour profile (--as-deployed)
            backend.clock._offset, backend.clock._frozen_at = data["clock"]
            ids = {key.decode(): value.decode() for key, value in index.items()}
            for user_id in [u for u in backend.users if u not in ids]:
                del backend.users[user_id]
                self._revs.pop(user_id, None)
            self._sync_users(list(ids))
            backend._by_name = {u.username.casefold(): u.id for u in backend.users.values()}
            backend._last_user_ms = max((int(u) for u in backend.users), default=0)
            backend._sweep.clear()
        self._grev = revision(raw_rev)
        self._fresh.update(backend.users)

    def _sync_users(self, user_ids: list[str]) -> None:
        """Reload the users among ``user_ids`` whose revision in Redis moved."""
        if not user_ids:
            return
        revs = self.client.mget([self._rev_key(user_id) for user_id in user_ids])
        stale = [
            user_id
            for user_id, rev in zip(user_ids, revs, strict=True)
            if rev is not None and (revision(rev) != self._revs.get(user_id))
        ]
        if not stale:
            return
        pipe = self.client.pipeline(transaction=True)  # each user's data with its revision
        for user_id in stale:
            pipe.get(self._user_key(user_id))
            pipe.get(self._rev_key(user_id))
        loaded = pipe.execute()
        backend = self.backend
        for index, user_id in enumerate(stale):
            raw, rev = loaded[2 * index], loaded[2 * index + 1]
            if raw is None or rev is None:
                continue
            fresh = restore_user(json.loads(raw))
            held = backend.users.get(user_id)
            if held is None:
                backend.users[user_id] = fresh
                backend._by_name[fresh.username.casefold()] = user_id
            else:
                # In place: the request may already hold this object (its Identity).
                for name, value in vars(fresh).items():
                    setattr(held, name, value)
            self._revs[user_id] = int(rev)

    def _publish_global(self) -> None:
        backend, keys = self.backend, self.keys
        if self._wipe:
            protected = {keys["seq"].encode(), keys["grev"].encode()}
            doomed = [
                key
                for key in self.client.scan_iter(match=glob(self.prefix) + ":*", count=1000)
                if key not in protected and not key.startswith(f"{self.prefix}:lock:".encode())
            ]
            for i in range(0, len(doomed), 1000):
                self.client.delete(*doomed[i : i + 1000])
            self._revs.clear()
            self._written_used.clear()
            self._added = dict(backend.users)
        users = list(self._added.values())
        top = int(self.client.incrby(keys["seq"], len(users) + 1))
        pipe = self.client.pipeline(transaction=True)
        pipe.set(keys["global"], json.dumps(self._global_snapshot(), separators=(",", ":")))
        for i, user in enumerate(users):
            rev = top - len(users) + i
            data = json.dumps(user_snapshot(user), separators=(",", ":"))
            pipe.set(self._user_key(user.id), data)
            pipe.set(self._rev_key(user.id), rev)
            pipe.hset(keys["users"], user.id, user.username)
            self._revs[user.id] = rev
        for user_id in self._deleted:
            pipe.hdel(keys["users"], user_id)
            pipe.delete(self._user_key(user_id), self._rev_key(user_id), self._used_key(user_id))
            self._revs.pop(user_id, None)
        pipe.set(keys["grev"], top)
        pipe.execute()
        self._grev = top
        self._jwk = backend.signer.to_jwk()
        self._added, self._deleted, self._wipe = {}, set(), False

    def _global_snapshot(self) -> dict[str, Any]:
        backend = self.backend
        return {
            "issuer": backend.signer.issuer,
            "signingKey": backend.signer.to_jwk(),
            "killSwitches": {str(k): v for k, v in backend.kill_switches.items()},
            "profile": backend.profile,
            "clock": list(_clock_state(backend.clock)),
        }

    # Locks -------------------------------------------------------------------------

    def _take(self, key: str) -> str:
        token = secrets.token_hex(8)
        while not self.client.set(key, token, nx=True, px=LOCK_TTL_MS):
            time.sleep(0.0005)  # another worker is changing this state; not the mock's clock
        return token

    @contextmanager
    def _locked(self, key: str) -> Iterator[str]:
        token = self._take(key)
        try:
            yield token
        finally:
            self._unlock(keys=[key], args=[token])


def _clock_state(clock: Clock) -> tuple[float, float | None]:
    return clock._offset, clock._frozen_at
