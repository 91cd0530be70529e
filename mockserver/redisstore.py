"""Shared state in Redis, so several worker processes behave exactly like one.

Each request runs as one unit of work under a Redis lock (``SET NX PX`` to take it, a
compare-and-delete script to give it back): the worker loads what changed since its
last request (users, sessions, kill switches and the signing key as one snapshot; the
clock's offset), serves the request with the ordinary in-memory rules, and writes back
what it changed; rate-limit buckets are read and written one by one. The rules
themselves stay in :mod:`mockserver.models` and :mod:`mockserver.ratelimit`, unaware of
Redis::

    sync = RedisSync(redis.Redis.from_url(url), backend, prefix="cumulonimbus-mock")
    app.wsgi_app = sync.middleware(app.wsgi_app)
"""

from __future__ import annotations

import io
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

import redis

from .journal import Journal, readable
from .models import Backend
from .ratelimit import Bucket, BucketKey

log = logging.getLogger("cumulonimbus-mock")

_RELEASE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)
LOCK_TTL_MS = 30_000  # a crashed worker's lock expires instead of blocking the rest
BODY_BUFFER_MAX = 1024 * 1024 + 1  # read before the lock; larger bodies are refused anyway
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


class RedisBuckets(MutableMapping[BucketKey, Bucket]):
    """Rate-limit buckets in a Redis hash, cached for the length of one unit of work."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        self.client = client
        self.key = key
        self._cache: dict[BucketKey, Bucket | None] = {}

    @staticmethod
    def _field(key: BucketKey) -> str:
        return json.dumps(list(key))

    def begin(self) -> None:
        self._cache = {}

    def flush(self) -> None:
        writes: dict[Any, Any] = {
            self._field(k): json.dumps(b.to_dict()) for k, b in self._cache.items() if b
        }
        deletes = [self._field(k) for k, b in self._cache.items() if b is None]
        pipe = self.client.pipeline()
        if writes:
            pipe.hset(self.key, mapping=writes)
        if deletes:
            pipe.hdel(self.key, *deletes)
        pipe.execute()
        self._cache = {}

    def __getitem__(self, key: BucketKey) -> Bucket:
        if key not in self._cache:
            raw = self.client.hget(self.key, self._field(key))
            self._cache[key] = Bucket.from_dict(json.loads(raw)) if raw else None
        bucket = self._cache[key]
        if bucket is None:
            raise KeyError(key)
        return bucket

    def __setitem__(self, key: BucketKey, bucket: Bucket) -> None:
        self._cache[key] = bucket

    def __delitem__(self, key: BucketKey) -> None:
        self[key]
        self._cache[key] = None

    def _all(self) -> dict[BucketKey, Bucket]:
        for raw_key, raw in self.client.hgetall(self.key).items():
            key = tuple(json.loads(raw_key))
            if key not in self._cache:
                self._cache[key] = Bucket.from_dict(json.loads(raw))
        return {k: b for k, b in self._cache.items() if b is not None}

    def __iter__(self) -> Iterator[BucketKey]:
        return iter(list(self._all()))

    def __len__(self) -> int:
        return len(self._all())

    def clear(self) -> None:
        self.client.delete(self.key)
        self._cache = {}


class RedisJournal(Journal):
    def __init__(self, client: redis.Redis, key: str, size: int) -> None:
        super().__init__(size)
        self.client = client
        self.key = key
        self.size = size

    def append(self, entry: dict[str, Any]) -> None:
        pipe = self.client.pipeline()
        pipe.lpush(self.key, json.dumps(readable(entry), default=str))
        pipe.ltrim(self.key, 0, self.size - 1)
        pipe.execute()

    def items(self, limit: int) -> list[dict[str, Any]]:
        raw = self.client.lrange(self.key, 0, limit - 1)
        return [json.loads(item) for item in reversed(raw)]

    def clear(self) -> None:
        self.client.delete(self.key)


class RedisSync:
    def __init__(self, client: redis.Redis, backend: Backend, prefix: str) -> None:
        self.client = client
        self.backend = backend
        self.keys = {name: f"{prefix}:{name}" for name in ("lock", "state", "revision", "clock")}
        self._loaded_revision: int | None = None
        self._local = threading.Lock()  # one unit of work at a time within this worker
        buckets = backend.limiter.store
        if not isinstance(buckets, RedisBuckets):
            raise TypeError("the backend must keep its rate-limit buckets in Redis")
        self.buckets = buckets

    @contextmanager
    def unit_of_work(self) -> Iterator[None]:
        with self._local:
            token = self._acquire()
            try:
                self._load()
                revision, clock = self.backend.revision, self._clock_state()
                try:
                    yield
                finally:
                    if self.client.get(self.keys["lock"]) == token.encode():
                        self._store(revision, clock)
                    else:
                        # The lock expired under this request and another worker may have
                        # moved on: writing now would undo its changes. Drop ours instead.
                        log.error("a request outlived the Redis lock; its changes were dropped")
                        self._loaded_revision = None
            finally:
                self.client.eval(_RELEASE, 1, self.keys["lock"], token)

    def middleware(self, app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
        """WSGI middleware: the whole request, body included, is one unit of work."""

        def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            _buffer_body(environ)  # a slow client must not hold every worker's lock
            answered: list[Any] = []

            def remember(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
                answered[:] = [status, headers]
                return lambda data: None

            try:
                with self.unit_of_work():
                    body = list(app(environ, remember))
            except redis.RedisError as error:
                # Whatever this request changed never reached Redis: forget it, so the
                # next request starts again from what Redis holds.
                self._loaded_revision = None
                log.error("Redis is unavailable: %s", error)
                start_response("503 SERVICE UNAVAILABLE", list(UNAVAILABLE_HEADERS))
                return [UNAVAILABLE_BODY]
            start_response(*answered)
            return body

        return wrapped

    def _acquire(self) -> str:
        token = secrets.token_hex(8)
        while not self.client.set(self.keys["lock"], token, nx=True, px=LOCK_TTL_MS):
            time.sleep(0.0005)  # another worker holds the state; this is not waiting for time
        return token

    def _load(self) -> None:
        self.buckets.begin()
        raw_revision, raw_state, raw_clock = self.client.mget(
            self.keys["revision"], self.keys["state"], self.keys["clock"]
        )
        if raw_clock:
            offset, frozen_at = json.loads(raw_clock)
            self.backend.clock._offset, self.backend.clock._frozen_at = offset, frozen_at
        if raw_state is None:
            # The first worker to arrive publishes its state (seed users, signing key).
            self._publish()
            return
        revision = int(raw_revision or 0)
        if revision != self._loaded_revision:
            self.backend.restore(json.loads(raw_state))
            self._loaded_revision = revision

    def _store(self, revision: int, clock: tuple[float, float | None]) -> None:
        if self.backend.revision != revision:
            self._publish()
        if self._clock_state() != clock:
            self.client.set(self.keys["clock"], json.dumps(list(self._clock_state())))
        self.buckets.flush()

    def _publish(self) -> None:
        pipe = self.client.pipeline()
        pipe.set(self.keys["state"], json.dumps(self.backend.snapshot(), separators=(",", ":")))
        pipe.incr(self.keys["revision"])
        _, revision = pipe.execute()
        self._loaded_revision = int(revision)

    def _clock_state(self) -> tuple[float, float | None]:
        clock = self.backend.clock
        return clock._offset, clock._frozen_at


def _buffer_body(environ: dict[str, Any]) -> None:
    """Read the body before the lock is taken, sized or chunked (the served mock has
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


def connect(url: str) -> redis.Redis:
    """A client for ``url``, checked at once so a wrong URL fails at start, clearly."""
    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10)
    try:
        client.ping()
    except redis.RedisError as error:
        raise ConnectionError(f"cannot reach Redis at {url}: {error}") from error
    return client
