"""The Redis plumbing the shared state and the shared limiter both use: a client checked at
start (`connect`), one pipelined connection for the commands on every request's path
(`Wire`), the request journal as one Redis list (`RedisJournal`), and a literal in a
key pattern (`glob`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing.util
import os
import secrets
import socket
import struct
import threading
import time
import weakref
from typing import Any

import hiredis
import orjson
import redis
from redis._parsers.base import BaseParser

from .journal import BODIES, Journal, readable

log = logging.getLogger("cumulonimbus-mock")

RAW_BYTES = "_raw"  # in a journal entry kept in Redis: which of its values were bytes


class Wire:
    """One connection for the commands on every request's path, sent in one write and
    read back in order. A worker serves one request at a time, and redis-py's client
    spends more CPU per command on its pool and observability bookkeeping than the
    round trip costs (benchmarks/README.md); cold paths use the client as usual.

    redis-py opens the connection (its handshake: password, database, protocol); the
    round trips themselves are hiredis's packing and parsing straight on the socket:
    redis-py's ``pack_commands`` and ``read_response`` cost ~20 us a round trip more."""

    def __init__(self, client: redis.Redis) -> None:
        pool = client.connection_pool  # a TCP or a Unix socket connection, as the URL says
        self.connection = pool.connection_class(**pool.connection_kwargs)
        self._socket: socket.socket | None = None
        self._reader = hiredis.Reader()
        # Replies to what `send` sent and nobody read yet: the next round trip reads them
        # first, and logs an error among them (see `write_failures`).
        self._owed = 0
        # Sent writes that Redis refused, counted as the next round trip finds them.
        self.write_failures = 0
        # Writes that go ahead of every exchange's own commands, in its one write (the
        # journal's waiting entries: RedisJournal.take); their replies are owed.
        self.rider: RedisJournal | None = None

    def send(self, *commands: tuple[Any, ...]) -> None:
        """Send `commands` and go on without their replies (a request's last writes).

        Redis runs a connection's commands in order, so whatever this worker sends next
        finds them done, and they are on their way before the request is answered: a
        client that hears the answer and asks another worker reaches Redis after them.
        What is saved is a wait for the reply, with the two context switches around it,
        on every request. On loopback they are in Redis's socket before the answer
        leaves; with Redis on another host a lost segment could delay them past a
        client's next request to another worker (the README says so)."""
        self._exchange(commands, wait=False)

    def run(self, *commands: tuple[Any, ...]) -> list[Any]:
        return self._exchange(commands, wait=True)

    def _exchange(self, commands: tuple[tuple[Any, ...], ...], *, wait: bool) -> list[Any]:
        sock = self._socket
        try:
            if sock is None:
                self.connection.connect()
                sock = self._socket = self.connection._sock
                assert sock is not None
                _kernel_timeouts(sock)
                self._reader = hiredis.Reader()
                self._owed = 0
            self._write(sock, commands)
            if not wait:
                self._owed += len(commands)
                return []
            owed, self._owed = self._owed, 0
            replies = self._read(sock, owed + len(commands))
        except (TimeoutError, BlockingIOError) as error:  # BlockingIOError: _kernel_timeouts
            self._disconnect()
            raise redis.TimeoutError(f"Redis did not answer: {error}") from error
        except OSError as error:
            self._disconnect()
            raise redis.ConnectionError(f"Redis connection failed: {error}") from error
        except redis.RedisError:
            self._disconnect()
            raise
        except hiredis.ProtocolError as error:
            self._disconnect()
            raise redis.ConnectionError(f"Redis answered garbage: {error}") from error
        except BaseException:
            # Anything else mid-exchange (KeyboardInterrupt, MemoryError) may leave replies
            # on the socket or in the reader: the next round trip would read them as its own.
            self._disconnect()
            raise
        if owed and any(isinstance(reply, hiredis.ReplyError) for reply in replies[:owed]):
            # An earlier request's writes, answered already: not this request's failure
            # (a 503 here refused an innocent request, while this round trip's commands
            # had run). Said in the log; the cache of what was written is dropped.
            errors = [str(r) for r in replies[:owed] if isinstance(r, hiredis.ReplyError)]
            log.error("Redis refused a request's last writes: %s", "; ".join(errors))
            self.write_failures += 1
        for reply in replies[owed:]:
            if isinstance(reply, hiredis.ReplyError):
                # As redis-py raises it (NoScriptError for NOSCRIPT, say); the replies
                # were all read, so the connection stays in step.
                raise BaseParser.parse_error(str(reply))
        return replies[owed:]

    def _write(self, sock: socket.socket, commands: tuple[tuple[Any, ...], ...]) -> None:
        rider = self.rider
        if rider is None:
            sock.sendall(_packed(commands))
            return
        with rider.lock:  # held until the entries taken are in Redis's socket
            riders = rider.take()
            try:
                sock.sendall(_packed((*riders, *commands)))
            except BaseException:
                rider.give_back()
                raise
            self._owed += len(riders)

    def _read(self, sock: socket.socket, count: int) -> list[Any]:
        replies: list[Any] = []
        reader = self._reader
        while len(replies) < count:
            reply = reader.gets()
            if reply is False:
                data = sock.recv(65536)
                if not data:
                    raise redis.ConnectionError("Redis closed the connection")
                reader.feed(data)
                continue
            replies.append(reply)
        return replies

    def _disconnect(self) -> None:
        self._socket = None
        self._owed = 0  # what was sent and not confirmed may or may not have happened
        self.connection.disconnect()

    def script(self, script: Any, keys: list[str | bytes], args: list[Any]) -> Any:
        """``script`` (a registered :class:`redis.commands.core.Script`) by its hash,
        loaded first if Redis does not know it (a restarted Redis)."""
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        try:
            return self.run(command)[0]
        except redis.exceptions.NoScriptError:
            self.run(("SCRIPT", "LOAD", script.script))
            return self.run(command)[0]


def _packed(commands: tuple[tuple[Any, ...], ...]) -> bytes:
    """Commands as one write: hiredis packs them (redis-py's packer costs more)."""
    return b"".join([hiredis.pack_command(command) for command in commands])


def _kernel_timeouts(sock: socket.socket) -> None:
    """The socket's timeout kept by the kernel (SO_RCVTIMEO, SO_SNDTIMEO; a wait that
    runs out fails with EAGAIN), the socket itself blocking: Python polls a socket with
    a timeout before every send and recv, two more system calls per round trip. (The
    kernel's timeout bounds each send(), where Python's bounded the whole sendall: a
    peer that takes one byte a second could stretch it, not stall it.)"""
    timeout = sock.gettimeout()
    if not timeout:
        return
    seconds = int(timeout)
    micros = int((timeout - seconds) * 1_000_000)
    if not seconds and not micros:
        micros = 1  # 0 s and 0 us would mean no timeout at all
    timeval = struct.pack("ll", seconds, micros)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
    sock.settimeout(None)


def _as_text(value: Any) -> str:
    """A journal value JSON has no type for: bytes as latin-1 text, anything else as str."""
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)


class RedisJournal(Journal):
    """The journal as one Redis list, with every worker's entries.

    An entry is not sent on its own: a request's entries (``current``) wait in this
    worker once it is answered (``commit``) and go with the worker's next round trip
    (``take``, from :meth:`Wire._write`), which every request has anyway; an idle
    worker's flusher thread sends them within ``IDLE`` seconds. A reader (``items``,
    ``clear``) first asks every worker to send what waits, and waits for each to say it
    did (``barrier``). So no request pays a write of its own for the journal, and a
    reader still sees every request answered before it asked, whichever worker
    answered it.
    """

    IDLE = 0.05  # seconds an entry waits in an idle worker before its flusher sends it
    BARRIER_TIMEOUT = 2.0  # seconds a reader waits for the other workers' flushers
    RIDE_BYTES = 8192  # of entries going with one round trip (see ``take``)

    def __init__(self, client: redis.Redis, key: str, size: int) -> None:
        super().__init__(size)
        self.client = client
        self.key = key
        self.size = size
        # Pub/sub ignores the database number: the channel names it, or the flushers of
        # a mock on another database of the same server would be counted and never
        # answer here (their acks go to their own database).
        database = client.connection_pool.connection_kwargs.get("db", 0)
        self.channel = f"{key}:flush:db{database}"
        self.current: list[bytes] = []  # the request being answered (its thread only)
        self._waiting: list[bytes] = []  # answered requests', not sent yet
        # Around ``_waiting``, held until what was taken from it is in Redis's socket:
        # a flusher that finds nothing must not say so before a ride's write is there.
        self.lock = threading.Lock()
        self._taken: list[bytes] = []
        self._since = 0.0  # when the oldest waiting entry was committed (monotonic)
        self._flusher_in: int | None = None  # the process whose flusher listens

    def append(self, entry: dict[str, Any]) -> None:
        # Raw, as the in-memory journal keeps it (bytes as latin-1 text, named in
        # RAW_BYTES), made readable only when read: decoding every answer's body to
        # store it cost more than sending it. orjson: a fifth of json's CPU here; only
        # the bodies may be bytes (api._journal), which its ``default`` turns to text.
        raw = {**entry, RAW_BYTES: [k for k in BODIES if isinstance(entry.get(k), bytes)]}
        self.current.append(orjson.dumps(raw, default=_as_text))

    def drop(self) -> None:
        """Forget the current request's entries (it runs again, or was not answered)."""
        self.current = []

    def commit(self) -> None:
        """The current request was answered: its entries wait for the next ride."""
        if not self.current:
            return
        if self._flusher_in != _process[0]:
            # First in this process (a forked worker has its own). Redis down: the
            # entries wait and ride all the same; the next commit tries again.
            with contextlib.suppress(redis.RedisError, OSError):
                self._start_flusher()
        with self.lock:
            if not self._waiting:
                self._since = time.monotonic()
            self._waiting.extend(self.current)
            overflow = len(self._waiting) - self.size
            if overflow > 0:
                del self._waiting[:overflow]  # older than anything the list keeps
        self.current = []

    def take(self) -> list[tuple[Any, ...]]:
        """The commands that send the waiting entries, for a round trip to send ahead of
        its own. The caller holds ``lock`` until that write is done, and gives them back
        (``give_back``) if it failed.

        At most RIDE_BYTES of entries ride; the rest waits (the flusher sends an entry
        larger than that). Redis reads 16 KB of a connection per turn of its loop, so a
        ride is whole in Redis before a flusher's later confirmation can be read: a
        reader told "sent" reads after it. A longer write could be read in parts, the
        confirmation between them."""
        waiting, self._taken = self._waiting, []
        size = count = 0
        for entry in waiting:
            size += len(entry)
            if size > self.RIDE_BYTES:
                break
            count += 1
        if not count:
            return []
        self._taken, self._waiting = waiting[:count], waiting[count:]
        return self._commands(self._taken)

    def give_back(self) -> None:
        self._waiting[:0] = self._taken
        self._taken = []

    def _commands(self, entries: list[bytes]) -> list[tuple[Any, ...]]:
        return [("LPUSH", self.key, *entries), ("LTRIM", self.key, 0, self.size - 1)]

    def flush(self) -> None:
        """Send what waits now, on the client's own connection (not the request's)."""
        with self.lock:
            if not self._waiting:
                return
            pipe = self.client.pipeline(transaction=False)
            for command in self._commands(self._waiting):
                pipe.execute_command(*command)
            pipe.execute()
            self._waiting = []

    def barrier(self) -> None:
        """Every entry of a request answered before now is in Redis when this returns:
        each worker's flusher sends what waits there and says so (or the wait ends
        after BARRIER_TIMEOUT, said in the log)."""
        self.flush()
        ack = f"{self.key}:ack:{secrets.token_hex(8)}"
        listeners = self.client.publish(self.channel, ack)
        deadline = time.monotonic() + self.BARRIER_TIMEOUT
        for heard in range(int(listeners)):
            left = deadline - time.monotonic()
            if left <= 0 or self.client.blpop([ack], timeout=max(left, 0.01)) is None:
                log.warning(
                    "the journal may miss entries: %d of %d workers sent theirs within %.0f s",
                    heard,
                    listeners,
                    self.BARRIER_TIMEOUT,
                )
                break
        self.client.delete(ack)

    def _start_flusher(self) -> None:
        # Subscribed before the first entry waits, so a reader's barrier counts this
        # worker from then on (the confirmation is read here, once per process).
        # On a pool of its own: the app's may be closed under it when the app goes.
        pool = self.client.connection_pool
        own_pool = type(pool)(pool.connection_class, **pool.connection_kwargs)
        pubsub = redis.Redis(connection_pool=own_pool).pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(self.channel)
        pubsub.get_message(timeout=5)
        self._flusher_in = _process[0]
        threading.Thread(
            target=_flush_when_idle_or_asked,
            args=(weakref.ref(self), pubsub),
            name="journal-flusher",
            daemon=True,
        ).start()
        # Granian's workers leave through os._exit, past atexit: multiprocessing's
        # finalizers run there (as StateWriter's do), and at the main process's exit.
        multiprocessing.util.Finalize(
            self, _flush_at_exit, args=(weakref.ref(self),), exitpriority=10
        )

    def items(self, limit: int) -> list[dict[str, Any]]:
        self.barrier()
        entries = []
        for item in reversed(self.client.lrange(self.key, 0, limit - 1)):
            entry = json.loads(item)
            for key in entry.pop(RAW_BYTES, ()):
                entry[key] = entry[key].encode("latin-1")
            entries.append(readable(entry))
        return entries

    def clear(self) -> None:
        self.current = []
        self.barrier()
        self.client.delete(self.key)


# This process, as a number a fork changes (os.getpid is a system call on every request).
_process = [0]
os.register_at_fork(after_in_child=lambda: _process.__setitem__(0, _process[0] + 1))


def _flush_when_idle_or_asked(ref: weakref.ref[RedisJournal], pubsub: Any) -> None:
    """A worker's flusher: sends its waiting entries when a reader asks (and says so on
    the ack list the reader named) or once the oldest has waited IDLE seconds, which
    happens in a worker with no request to carry them (or behind an entry too large to
    ride): under load it does not take the journal's lock from a request. A reader is
    answered even when the entries could not be sent: waiting would not send them. It
    ends with its journal (an app that is gone)."""
    failing = False
    while True:
        journal = ref()
        if journal is None:
            pubsub.close()
            pubsub.connection_pool.disconnect()
            return
        wait = journal.IDLE
        if journal._waiting:
            wait -= time.monotonic() - journal._since
        del journal  # not held while waiting: the app may go
        try:
            # Timeout 0: only what is there already (entries are due).
            message = pubsub.get_message(timeout=max(wait, 0.0))
        except (redis.RedisError, OSError) as error:
            _flusher_failed(error, failing)
            failing = True
            threading.Event().wait(1)  # Redis is down: try again in a second
            continue
        journal = ref()
        if journal is None or (message is None and wait > 0):
            continue
        # Anything, not only Redis's errors: a flusher that died would cost every later
        # reader the whole barrier timeout.
        try:
            journal.flush()
            failing = False
        except Exception as error:
            _flusher_failed(error, failing)
            failing = True
        try:
            if message is not None:
                pipe = journal.client.pipeline(transaction=False)
                pipe.rpush(message["data"], 1)
                pipe.expire(message["data"], 10)
                pipe.execute()
        except Exception as error:
            _flusher_failed(error, failing)
            failing = True
        if failing:
            threading.Event().wait(1)  # not a loop that spins on a refusing Redis
        journal = None


def _flusher_failed(error: Exception, said: bool) -> None:
    if not said:
        log.error(
            "the journal could not send its entries (they wait, up to its size): %s: %s",
            type(error).__name__,
            error,
        )


def _flush_at_exit(ref: weakref.ref[RedisJournal]) -> None:
    journal = ref()
    if journal is not None:
        with contextlib.suppress(redis.RedisError):  # Redis is gone: nothing more to do
            journal.flush()


def glob(text: str) -> str:
    """``text`` as a literal in a Redis MATCH pattern (test prefixes hold brackets)."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def connect(url: str) -> redis.Redis:
    """A client for ``url``, checked at once so a wrong URL fails at start, clearly."""
    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10)
    try:
        client.ping()
    except redis.RedisError as error:
        raise ConnectionError(f"cannot reach Redis at {url}: {error}") from error
    return client
