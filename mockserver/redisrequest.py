"""A request's way through Redis mode, around the rules: how it starts (deferred, or with
one round trip that reads the revisions), where its limits are taken with a check that
the state it was judged on is current (``current``) and usedAt is written, how it ends
(its journal entry left to ride with the next round trip), and the answer when Redis
is gone. :class:`RedisRequests` is the half of :class:`mockserver.redisstore.RedisState`
that the WSGI middleware runs; the other half keeps the state itself (loading,
publishing, locks).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import threading
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any

import redis

from .models import Backend
from .ratelimit import BucketKey
from .redislimiter import ACQUIRE, AHEAD_METHODS, GUARDED, RELEASE, RedisRateLimiter
from .rediswire import RedisJournal, Wire
from .sharedstate import StateMoved
from .spec import Limit

log = logging.getLogger("cumulonimbus-mock")

BODY_BUFFER_MAX = 1024 * 1024 + 1  # read before any lock; larger bodies are refused anyway
# Without Redis there is no state to answer from: every feature is unavailable, which
# the API says as the GLOBAL kill switch's 503 (feature 8), in its own error format.
UNAVAILABLE_BODY = json.dumps(
    {"code": "SERVICE_UNAVAILABLE_ERROR", "message": "Service Unavailable", "feature": 8},
    separators=(",", ":"),
).encode()
UNAVAILABLE_HEADERS = (
    ("Content-Type", "application/json"),
    ("Cache-Control", "no-cache, no-store, must-revalidate"),
    ("Content-Length", str(len(UNAVAILABLE_BODY))),
    ("Retry-After", "1"),
    ("RateLimit-Skipped", "true"),
    ("Access-Control-Allow-Origin", "*"),
)


class RedisRequests:
    """The request side of :class:`mockserver.redisstore.RedisState` (its first base)."""

    # Set by RedisState.__init__; the state side's methods are declared below.
    backend: Backend
    wire: Wire
    journal: RedisJournal
    keys: dict[str, str]
    _local: threading.RLock
    _grev: int | None
    _revs: dict[str, int]
    _fresh: set[str]
    _touched: set[tuple[str, str]]
    _used: dict[tuple[str, str], float]
    _written_used: dict[tuple[str, str], float]
    # A deferred request (see middleware): the users its steps read, each checked with
    # the global revision when its limits are taken.
    _deferred: bool
    _read: dict[str, None]
    # A Redis error is not answered where it happens: the API's handlers let it pass to
    # the middleware (503, and the copy forgotten). Nothing more is asked of Redis for
    # the request: a release would give back a place that may never have been taken.
    passes: tuple[type[Exception], ...] = (StateMoved, redis.RedisError)

    def _rev_key(self, user_id: str) -> str:
        raise NotImplementedError

    def _used_key(self, user_id: str) -> str:
        raise NotImplementedError

    def _load_global(self) -> None:
        raise NotImplementedError

    def _sync_users(self, user_ids: list[str]) -> None:
        raise NotImplementedError

    def changing_global(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    def middleware(self, app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
        """WSGI middleware: sync what changed, serve, then leave the journal entry to ride."""

        def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            _buffer_body(environ)  # a slow client must not hold a lock
            answered: list[Any] = []

            def remember(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
                answered[:] = [status, headers]
                return lambda data: None

            path = environ.get("PATH_INFO", "")
            try:
                with self._local:
                    try:
                        if path == "/_mock" or path.startswith("/_mock/"):
                            self._begin(environ)
                            # The control API changes and reads everything: it runs
                            # under the global lock, with every user current.
                            with self.changing_global():
                                self._sync_users(list(self.backend.users))
                                body = list(app(environ, remember))
                        elif self._defer(environ):
                            try:
                                body = list(app(environ, remember))
                                self.current()
                            except StateMoved:
                                # Nothing was taken or written: again, as of now, without
                                # what the first run queued (usedAt, a journal entry).
                                self._undefer()
                                self._used = {}
                                self.journal.drop()
                                _rewind_body(environ)
                                self._begin(environ)
                                body = list(app(environ, remember))
                        else:
                            self._begin(environ)
                            body = list(app(environ, remember))
                    except redis.RedisError:
                        raise  # answered below, without the request's writes or releases
                    except BaseException:
                        self._end()
                        raise
                    self._end()
            except redis.RedisError as error:
                # What this request changed may not have reached Redis: forget the
                # copy, so the next request starts again from what Redis holds. Nothing
                # more is asked of Redis for it (see ``passes``): what it queued (usedAt,
                # an ahead acquire nobody claimed) is dropped, what it took counts.
                self._forget()
                log.error("Redis is unavailable: %s", error)
                start_response("503 SERVICE UNAVAILABLE", list(UNAVAILABLE_HEADERS))
                return [UNAVAILABLE_BODY]
            start_response(*answered)
            return body

        return wrapped

    def _defer(self, environ: dict[str, Any]) -> bool:
        """Whether this API request runs deferred: its steps on the state this worker
        holds, with no round trip before them, and its limits taken in one step guarded
        by the revisions of what the steps read (RedisRateLimiter.resolve). A request a
        profile may answer, or that no limiter counts, starts as before (``_begin``)."""
        limiter, path = self.backend.limiter, environ.get("PATH_INFO", "")
        if (
            not isinstance(limiter, RedisRateLimiter)
            or self.backend.profile is not None
            # What the API's fast path answers (api.ApiFastPath), OPTIONS aside.
            or len(path) <= 5
            or not path.startswith("/api/")
            or not path.isascii()
            or environ.get("REQUEST_METHOD") not in AHEAD_METHODS
        ):
            return False
        self._fresh.clear()
        self._touched.clear()
        self._read.clear()
        self._deferred = True
        limiter.deferral = self
        return True

    def _undefer(self) -> None:
        self._deferred = False
        self._read.clear()
        if isinstance(self.backend.limiter, RedisRateLimiter):
            self.backend.limiter.forget_held()

    def guard(self) -> tuple[list[str], list[str]]:
        revs = self._revs
        return (
            [self.keys["grev"], *(self._rev_key(user_id) for user_id in self._read)],
            [
                "" if self._grev is None else str(self._grev),
                *(str(revs[u]) if u in revs else "" for u in self._read),
            ],
        )

    def used(self) -> list[tuple[str, str, str]]:
        return [
            (self._used_key(user_id), session_id, repr(used))
            for (user_id, session_id), used in self._used.items()
        ]

    def guarded(self, used_written: bool = True) -> None:
        self._fresh.update(self._read)
        if used_written:  # by the guarded step; else it is sent at the end, as before
            self._written_used.update(self._used)
            self._used = {}
        self._undefer()

    def moved(self) -> None:
        self._undefer()

    def current(self) -> None:
        """Before the operation, an answer, or any other read or change of Redis: a
        deferred request's limits are taken now, if its state is still current."""
        if not self._deferred:
            return
        limiter = self.backend.limiter
        assert isinstance(limiter, RedisRateLimiter)
        if limiter.pending:
            limiter.resolve()  # guarded() or moved(), then StateMoved
            return
        # No limiter ran (an answer before the pipeline): the guard alone.
        keys, held = self.guard()
        found = self.wire.run(("MGET", *keys))[0]
        if [(raw or b"").decode() for raw in found] != held:
            self._undefer()
            raise StateMoved()
        self.guarded(used_written=False)

    def _begin(self, environ: dict[str, Any]) -> None:
        self._fresh.clear()
        self._touched.clear()
        header = environ.get("HTTP_AUTHORIZATION")
        sub = _unverified_sub(header)
        commands: list[tuple[Any, ...]] = [("MGET", self.keys["grev"], self._rev_key(sub or ""))]
        ahead = self._acquire_ahead(environ, header)
        if ahead is not None:
            commands.append(ahead[0])
        try:
            replies = self.wire.run(*commands)
        except redis.exceptions.NoScriptError:  # a restarted Redis: nothing was acquired
            self.wire.run(*(("SCRIPT", "LOAD", s) for s in (ACQUIRE, RELEASE, GUARDED)))
            replies = self.wire.run(*commands)
        results = replies[0]
        limiter = self.backend.limiter
        if ahead is not None and isinstance(limiter, RedisRateLimiter):
            limiter.hold(*ahead[1], replies[1])
        if revision(results[0]) != self._grev:
            if isinstance(limiter, RedisRateLimiter):
                # The clock, the key or the switches moved: acquire again, as of now.
                for command in limiter.unclaimed():
                    self.wire.run(command)
            self._load_global()
        elif sub is not None and sub in self.backend.users:
            if revision(results[1]) != self._revs.get(sub):
                self._sync_users([sub])
            self._fresh.add(sub)

    def _acquire_ahead(
        self, environ: dict[str, Any], header: str | None
    ) -> tuple[tuple[Any, ...], tuple[BucketKey, Limit, float]] | None:
        limiter, backend = self.backend.limiter, self.backend
        if not isinstance(limiter, RedisRateLimiter) or backend.profile is not None:
            return None  # a profile may answer before any limiter
        return limiter.ahead_for(environ, header, backend.signer, backend.spec.global_limit)

    def _end(self) -> None:
        commands: list[tuple[Any, ...]] = [
            ("HSET", self._used_key(user_id), session_id, repr(used))
            for (user_id, session_id), used in self._used.items()
        ]
        limiter = self.backend.limiter
        if isinstance(limiter, RedisRateLimiter):
            commands.extend(limiter.unclaimed())
        if commands:
            self.wire.send(*commands)  # confirmed by this worker's next round trip
        # Once nothing can fail the answer any more: a journal entry for a request
        # answered 503 after all would say what the client never heard.
        self.journal.commit()  # sent with this worker's next round trip
        if len(self._written_used) > 100_000 or self.wire.write_failures:
            # Only a cache of what need not be sent again; after a refused write, a
            # usedAt it holds may never have reached Redis.
            self.wire.write_failures = 0
            self._written_used.clear()
        self._written_used.update(self._used)
        self._used = {}

    def _forget(self) -> None:
        self._undefer()
        self._grev = -1  # no revision: the next request reloads everything
        self._revs.clear()
        self._used = {}
        self._written_used.clear()
        self.journal.drop()


def _unverified_sub(header: str | None) -> str | None:
    """The ``sub`` a token claims, unverified: only which user to check for changes in
    the request's first round trip; ``Backend.authenticate`` verifies the token."""
    if not header:
        return None
    parts = header.strip().split(".")
    if len(parts) != 3 or len(parts[1]) > 2048:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    sub = payload.get("sub") if isinstance(payload, dict) else None
    return sub if isinstance(sub, str) and sub.isascii() and sub.isdigit() else None


def _rewind_body(environ: dict[str, Any]) -> None:
    """The body again from its start, for a request that runs again (it was buffered)."""
    body = environ.get("wsgi.input")
    if isinstance(body, io.BytesIO):
        body.seek(0)


def _buffer_body(environ: dict[str, Any]) -> None:
    """Read the body before any lock is taken, sized or chunked (the served mock has
    already read it; other WSGI servers may not have)."""
    raw_length = environ.get("CONTENT_LENGTH") or ""
    if raw_length:
        if not (raw_length.isascii() and raw_length.isdigit()):
            return
        length = int(raw_length)
        if 0 < length <= BODY_BUFFER_MAX:
            data = environ["wsgi.input"].read(length)
            environ["wsgi.input"] = io.BytesIO(data)
            environ["CONTENT_LENGTH"] = str(len(data))
    elif environ.get("wsgi.input_terminated"):
        data = environ["wsgi.input"].read(BODY_BUFFER_MAX)
        environ["wsgi.input"] = io.BytesIO(data)
        if data:
            environ["CONTENT_LENGTH"] = str(len(data))


def revision(raw: bytes | str | int | None) -> int | None:
    """A revision as Redis holds it (None: no such key)."""
    return None if raw is None else int(raw)
