"""The server behind the proxy: its base URL (`Upstream`), idle keep-alive connections to
it (`ConnectionPool`), and which of a client's headers are passed on.
"""

from __future__ import annotations

import http.client
import select
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

# Per connection, not per message (RFC 9110 7.6.1): never passed on in either direction.
HOP_BY_HOP = frozenset(
    (
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    )
)
IDLE_CONNECTIONS = 16


@dataclass(frozen=True)
class Upstream:
    scheme: str
    host: str
    port: int
    base_path: str  # the API's base path on the upstream, without a trailing slash
    timeout: float = 30.0

    @classmethod
    def parse(cls, url: str, timeout: float = 30.0) -> Upstream:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"--upstream must be an http:// or https:// URL, not {url!r}")
        if parts.query or parts.fragment:
            raise ValueError("--upstream takes a base URL, without a query or fragment")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname, port, parts.path.rstrip("/"), timeout)

    @property
    def base_url(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        netloc = host if self.port == default else f"{host}:{self.port}"
        return f"{self.scheme}://{netloc}{self.base_path}"

    @property
    def host_header(self) -> str:
        return urlsplit(self.base_url).netloc


class ConnectionPool:
    """Idle keep-alive connections to the upstream, shared by the serving threads."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def take(self) -> http.client.HTTPConnection:
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._new()
            if _still_open(conn):
                return conn
            conn.close()

    def give(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < IDLE_CONNECTIONS:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _new(self) -> http.client.HTTPConnection:
        up = self.upstream
        if up.scheme == "https":
            return http.client.HTTPSConnection(up.host, up.port, timeout=up.timeout)
        return http.client.HTTPConnection(up.host, up.port, timeout=up.timeout)


def _still_open(conn: http.client.HTTPConnection) -> bool:
    """An idle connection the server has closed (or sent anything on) is readable: using it
    would fail half-way, and retrying could send a request twice, so it is dropped before."""
    sock = conn.sock
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


def forwardable(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The client's headers that go upstream: all but hop-by-hop ones, Host and the length
    (both set for the upstream connection)."""
    skip = HOP_BY_HOP | {"host", "content-length"}
    return [(n, v) for n, v in headers if n.lower() not in skip]
