"""The Redis plumbing the shared state and the shared limiter both use: a client checked at
start (`connect`), one pipelined connection for the commands on every request's path
(`Wire`), the request journal as one Redis list (`RedisJournal`), and a literal in a
key pattern (`glob`).
"""

from __future__ import annotations

import json
import logging
import socket
from typing import Any

import hiredis
import redis
from redis._parsers.base import BaseParser

from .journal import Journal, readable

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
                self._reader = hiredis.Reader()
                self._owed = 0
                assert sock is not None
            sock.sendall(b"".join([hiredis.pack_command(command) for command in commands]))
            if not wait:
                self._owed += len(commands)
                return []
            owed, self._owed = self._owed, 0
            replies = self._read(sock, owed + len(commands))
        except TimeoutError as error:
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

    def script(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        """``script`` (a registered :class:`redis.commands.core.Script`) by its hash,
        loaded first if Redis does not know it (a restarted Redis)."""
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        try:
            return self.run(command)[0]
        except redis.exceptions.NoScriptError:
            self.run(("SCRIPT", "LOAD", script.script))
            return self.run(command)[0]


class RedisJournal(Journal):
    """The journal as one Redis list; entries go with the request's writes (see RedisRequests)."""

    def __init__(self, client: redis.Redis, key: str, size: int) -> None:
        super().__init__(size)
        self.client = client
        self.key = key
        self.size = size
        self.pending: list[str] = []

    def append(self, entry: dict[str, Any]) -> None:
        # Raw, as the in-memory journal keeps it (bytes as latin-1 text, named in
        # RAW_BYTES), made readable only when read: decoding every answer's body to
        # store it cost more than sending it.
        raw = {k: v.decode("latin-1") if isinstance(v, bytes) else v for k, v in entry.items()}
        raw[RAW_BYTES] = [k for k, v in entry.items() if isinstance(v, bytes)]
        self.pending.append(json.dumps(raw, default=str))

    def flush(self, commands: list[tuple[Any, ...]]) -> None:
        if self.pending:
            commands.append(("LPUSH", self.key, *self.pending))
            commands.append(("LTRIM", self.key, 0, self.size - 1))
            self.pending = []

    def items(self, limit: int) -> list[dict[str, Any]]:
        entries = []
        for item in reversed(self.client.lrange(self.key, 0, limit - 1)):
            entry = json.loads(item)
            for key in entry.pop(RAW_BYTES, ()):
                entry[key] = entry[key].encode("latin-1")
            entries.append(readable(entry))
        return entries

    def clear(self) -> None:
        self.pending = []
        self.client.delete(self.key)


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
