"""Proxy mode: forward a front end's `/api` traffic to a real server, and judge it by the spec.

``cumulonimbus-mock proxy --upstream https://staging.example/api`` listens on loopback. Every
``/api`` request goes upstream as the client sent it, and the answer comes back as it is
read, chunk by chunk. A copy of each exchange goes on a queue; a worker thread judges it
afterwards with the conformance suite's own traffic rules (``conformance/traffic.py``:
the same check ids and wording as the suite), so checking never delays an answer::

    proxy = Proxy(Upstream.parse("http://127.0.0.1:9000/api"))
    server = make_proxy_server(proxy, port=8000)   # /api forwarded, /_mock/ the dashboard
    proxy.checker.drain(1.0)
    proxy.checker.snapshot()["items"]              # the violations found so far

What the proxy changes, on purpose: the ``Host`` header names the upstream (a virtual
host could not answer otherwise); hop-by-hop headers (``Connection``, ``Keep-Alive``,
``Transfer-Encoding``...) belong to each connection and are not passed on; CORS is the
mock's (any origin, RateLimit-* exposed, preflights answered here with 204 and never sent
upstream), so a browser app can point at the proxy whatever the upstream allows. Nothing
is added: no ``X-Forwarded-For``, no ``Via``. An upstream that cannot be reached, or does
not answer within ``timeout`` seconds, gets the client a JSON ``502`` or ``504`` in the
API's error format, and the failure is recorded beside the violations.
"""

from __future__ import annotations

import datetime
import http.client
import http.server
import importlib.util
import io
import json
import logging
import queue
import select
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote, urlsplit

from requests.structures import CaseInsensitiveDict

from conformance.client import Exchange
from conformance.redact import Redactor
from conformance.registry import CheckFailure
from conformance.spec import Spec, load_spec
from conformance.traffic import (
    REMAINING_CHECK,
    RemainingTracker,
    client_user,
    find_operation,
    judge_exchange,
    response_check_ids,
)

log = logging.getLogger("cumulonimbus-mock.proxy")
access_log = logging.getLogger("cumulonimbus-mock.proxy.access")  # --quiet silences it

CACHE_CONTROL = "no-cache, no-store, must-revalidate"
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
MAX_KEPT = 1024 * 1024  # bytes of an answer kept for judging; a longer one is not judged
MAX_VIOLATIONS = 500
MAX_BODY = 8 * 1024 * 1024  # a request body the proxy takes (the API's own limit is 1 MB)
TOO_LARGE_BODY = b'{"code": "BODY_TOO_LARGE_ERROR", "message": "Body Too Large"}'
IDLE_CONNECTIONS = 16
INSTALL_HINT = "install the proxy extra: pip install 'cumulonimbus-contract[proxy]'"
UPSTREAM = "proxy.upstream"  # failures of the upstream itself, beside the spec's checks


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


@dataclass
class Record:
    """One exchange as the proxy saw it, queued for judging."""

    method: str
    target: str  # path and query, relative to the API's base URL
    client_ip: str
    request_headers: list[tuple[str, str]]
    request_body: bytes
    started: float
    wall: float
    status: int = 0
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    truncated: bool = False
    finished: float = 0.0
    error: str | None = None  # "unreachable" or "timeout": the upstream failed
    detail: str = ""
    submitted: bool = False
    abandoned: bool = False  # not all of it went by: counted, not judged


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


class Checker:
    """Judges queued exchanges on a worker thread and keeps what it found."""

    def __init__(self, spec: Spec, upstream: Upstream) -> None:
        self.spec = spec
        self.upstream = upstream
        self.tracker = RemainingTracker(spec)
        self._queue: queue.SimpleQueue[Record | None] = queue.SimpleQueue()
        self._lock = threading.Condition()
        self._submitted = 0
        self._processed = 0
        self._thread: threading.Thread | None = None
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.violations: deque[dict[str, Any]] = deque(maxlen=MAX_VIOLATIONS)
            self.exchanges = 0
            self.operations: dict[str, int] = {}
            self.failures_seen = 0
            self.next_id = 1
            # (check, operation id) pairs judged at least once, for the report's table.
            self.judged: set[tuple[str, str]] = set()
            self.failed: list[dict[str, Any]] = []
            self.first: float | None = None
            self.last: float | None = None
        self.tracker.reset()

    def start(self) -> Checker:
        self._thread = threading.Thread(target=self._run, name="contract-checker", daemon=True)
        self._thread.start()
        return self

    def begin(self) -> None:
        """An exchange has started: `drain` waits for it too, so that whoever has had an
        answer from the proxy can read its verdict at once."""
        with self._lock:
            self._submitted += 1

    def submit(self, record: Record) -> None:
        """Queue a begun exchange for judging (once; later calls do nothing)."""
        if record.submitted:
            return
        record.submitted = True
        self._queue.put(record)

    def drain(self, timeout: float) -> bool:
        """Wait until everything submitted so far is judged; False if `timeout` passed."""
        with self._lock:
            target = self._submitted
            return self._lock.wait_for(lambda: self._processed >= target, timeout)

    def stop(self, timeout: float = 10.0) -> None:
        self.drain(timeout)
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            items = list(self.violations)
            return {
                "upstream": self.upstream.base_url,
                "exchanges": self.exchanges,
                "pending": self._submitted - self._processed,
                "count": len(items),
                "items": items,
                # How many exchanges of each operation were judged (unknown paths: "-").
                "operations": dict(sorted(self.operations.items())),
            }

    def _run(self) -> None:
        while True:
            record = self._queue.get()
            if record is None:
                return
            try:
                self.judge(record)
            except Exception as error:  # a bug here must not stop the checking
                log.exception("could not judge %s %s: %s", record.method, record.target, error)
            finally:
                with self._lock:
                    self._processed += 1
                    self._lock.notify_all()

    def judge(self, record: Record) -> None:
        exchange = self._exchange(record)
        path = record.target.split("?", 1)[0]
        op = find_operation(self.spec, record.method, path)
        found: list[CheckFailure] = []
        judged: set[tuple[str, str]] = set()
        if record.error is not None:
            found.append(self._upstream_failure(record, op, exchange))
            judged.add((UPSTREAM, op.id if op else "-"))
        elif op is not None and not record.truncated and not record.abandoned:
            found += judge_exchange(self.spec, op, exchange)
            judged.update((check, op.id) for check in response_check_ids())
            token = exchange.request_headers.get("Authorization")
            step = self.tracker.observe(
                op,
                exchange,
                path,
                record.client_ip,
                client_user(token),
                record.started,
                record.finished,
            )
            judged.add((REMAINING_CHECK, op.id))
            if step is not None:
                found.append(step)
        with self._lock:
            self.exchanges += 1
            name = op.id if op else "-"
            self.operations[name] = self.operations.get(name, 0) + 1
            self.first = self.first or record.wall
            self.last = record.wall
            self.judged |= judged
            for failure in found:
                item = {
                    "id": self.next_id,
                    "time": _iso(record.wall),
                    "request": f"{record.method} /api{record.target}",
                    "status": record.status,
                    "operationId": op.id if op else None,
                    **failure.as_dict(),
                }
                self.next_id += 1
                self.violations.append(item)
                self.failed.append(item)
        for failure in found:
            log.warning("contract violation:\n%s", failure.render())

    def _exchange(self, record: Record) -> Exchange:
        """The record in the suite's shape, with a redactor that knows this exchange's
        secrets (the token, passwords and codes it carried)."""
        redactor = Redactor()
        headers = {
            name: value
            for name, value in record.request_headers
            if not _browser_noise(name.lower())
        }
        for name, value in headers.items():
            if name.lower() in ("authorization", "cookie", "x-mock-token"):
                redactor.add_token(value)
        body_text = record.request_body.decode("utf-8", "replace") if record.request_body else None
        if body_text:
            _learn_request_secrets(redactor, body_text)
        text = bytes(record.body).decode("utf-8", "replace")
        redactor.learn(text)
        return Exchange(
            method=record.method,
            url=self.upstream.base_url + record.target,
            request_headers=headers,
            request_body=body_text,
            status=record.status,
            headers=CaseInsensitiveDict(record.response_headers),
            text=text,
            redactor=redactor,
        )

    def _upstream_failure(self, record: Record, op: Any, exchange: Exchange) -> CheckFailure:
        timeout = self.upstream.timeout
        expected = f"an answer within {timeout:g} s"
        actual = (
            f"no answer within {timeout:g} s; the client got {record.status}"
            if record.error == "timeout"
            else f"{record.detail}; the client got {record.status}"
        )
        return CheckFailure(
            UPSTREAM,
            str(op) if op else f"{record.method} /api{record.target.split('?', 1)[0]}",
            "the upstream answers",
            expected,
            actual,
            exchange.curl(),
        )


# What a browser adds to every fetch and the API never reads: left out of the curl line
# (which reproduces the exchange), so that it stays readable.
BROWSER_HEADERS = frozenset(
    ("origin", "referer", "accept-language", "cache-control", "pragma", "priority", "dnt")
)


def _browser_noise(name: str) -> bool:
    return name.startswith("sec-") or name in BROWSER_HEADERS


def _learn_request_secrets(redactor: Redactor, body_text: str) -> None:
    try:
        body = json.loads(body_text)
    except ValueError:
        return
    if not isinstance(body, dict):
        return
    password = body.get("password")
    if isinstance(password, str):
        redactor.add_password(password)
    factor = body.get("2fa")
    if isinstance(factor, dict):
        for key in ("token", "code"):
            value = factor.get(key)
            if isinstance(value, str):
                redactor.add_token(value) if key == "token" else redactor.add_password(value)


def _iso(wall: float) -> str:
    moment = datetime.datetime.fromtimestamp(wall, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _error_body(code: str, message: str) -> bytes:
    return json.dumps({"code": code, "message": message}).encode()


BAD_GATEWAY = (502, "BAD_GATEWAY_ERROR", "Bad Gateway")
GATEWAY_TIMEOUT = (504, "GATEWAY_TIMEOUT_ERROR", "Gateway Timeout")


class Proxy:
    """What the serving threads share: the upstream, its idle connections, the checker
    and the control side (the dashboard page and ``/_mock/violations``)."""

    def __init__(
        self,
        upstream: Upstream,
        spec: Spec | None = None,
        control_token: str | None = None,
    ) -> None:
        from .httpio import CORS_HEADERS

        self.upstream = upstream
        self.pool = ConnectionPool(upstream)
        self.checker = Checker(spec or load_spec(), upstream).start()
        self.cors = [("Access-Control-Allow-Origin", "*"), *CORS_HEADERS.items()]
        self.control = _control_app(self, control_token)

    def close(self) -> None:
        self.checker.stop()
        self.pool.close()


class ProxyServer(http.server.ThreadingHTTPServer):
    """One thread per client connection; connections are kept alive between requests."""

    daemon_threads = True
    proxy: Proxy
    read_timeout: float

    @property
    def port(self) -> int:
        return int(self.server_address[1])


def make_proxy_server(
    proxy: Proxy, host: str = "127.0.0.1", port: int = 8000, read_timeout: float = 10.0
) -> ProxyServer:
    """The proxy's HTTP server. Python's own, not werkzeug's (which closes every connection
    after one answer) nor the mock's Granian front (which buffers whole answers): keep-alive
    and streaming are what keep the added latency under a millisecond."""
    server = ProxyServer((host, port), ProxyHandler)
    server.proxy = proxy
    server.read_timeout = read_timeout
    return server


class ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ProxyServer

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.read_timeout)  # a stalled client ends its thread
        # Headers and body go out in separate writes: without this, Nagle's algorithm
        # and the client's delayed ACK could hold the body back for 40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_any(self) -> None:
        proxy = self.server.proxy
        path = self.path.split("?", 1)[0]
        declared = self.headers.get("Content-Length", "0").strip()
        if declared.isdigit() and int(declared) > MAX_BODY:
            # Held in memory to be forwarded and judged: refused unread, as the mock does.
            self.close_connection = True
            headers = [("Content-Type", "application/json"), ("Cache-Control", CACHE_CONTROL)]
            headers += [*proxy.cors, ("Connection", "close")]
            self._answer(413, "Content Too Large", headers, TOO_LARGE_BODY)
            return
        try:
            body = self._read_body()
        except ValueError:
            self.send_error(400)
            return
        if path == "/api" or path.startswith("/api/"):
            self._forward(proxy, body)
        else:
            self._control(proxy, body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_any

    # Forwarding -----------------------------------------------------------------------

    def _forward(self, proxy: Proxy, body: bytes) -> None:
        method = self.command
        if method == "OPTIONS":
            # A preflight is the browser asking the proxy; answered like the mock does.
            self._answer(204, "No Content", [("Cache-Control", CACHE_CONTROL), *proxy.cors], b"")
            return
        upstream = proxy.upstream
        target = self.path[4:] or "/"
        headers = list(self.headers.items())
        # As the exchange is judged and reproduced: curl names the upstream's host itself.
        kept = [(n, v) for n, v in headers if n.lower() not in HOP_BY_HOP and n.lower() != "host"]
        forwarded = forwardable(headers)
        forwarded.append(("Host", upstream.host_header))
        if body or "content-length" in {n.lower() for n, _ in headers}:
            forwarded.append(("Content-Length", str(len(body))))
        record = Record(
            method,
            target,
            _client_ip(self.headers.get("X-Forwarded-For"), self.client_address[0]),
            kept,
            body,
            time.monotonic(),
            time.time(),
        )
        proxy.checker.begin()
        try:
            self._exchange(proxy, record, forwarded)
        finally:
            if not record.finished:  # the client went away (or the proxy failed) half-way
                record.finished = time.monotonic()
                record.abandoned = True
            proxy.checker.submit(record)

    def _exchange(self, proxy: Proxy, record: Record, forwarded: list[tuple[str, str]]) -> None:
        method, target, upstream = record.method, record.target, proxy.upstream
        conn = proxy.pool.take()
        try:
            conn.putrequest(
                method, upstream.base_path + target, skip_host=True, skip_accept_encoding=True
            )
            for name, value in forwarded:
                conn.putheader(name, value)
            conn.endheaders(record.request_body or None)
            response = conn.getresponse()
        except TimeoutError:
            conn.close()
            self._failed(proxy, record, GATEWAY_TIMEOUT, "timeout", "")
            return
        except (OSError, http.client.HTTPException) as error:
            conn.close()
            detail = f"{type(error).__name__}: {error}".rstrip(": ")
            self._failed(proxy, record, BAD_GATEWAY, "unreachable", detail)
            return
        record.status = response.status
        record.response_headers = [
            (n, v) for n, v in response.getheaders() if n.lower() not in HOP_BY_HOP
        ]
        out = [
            (n, v)
            for n, v in record.response_headers
            if not n.lower().startswith("access-control-")
        ]
        out += proxy.cors
        bodiless = method == "HEAD" or response.status in (204, 304) or response.status < 200
        chunked = not bodiless and response.getheader("Content-Length") is None
        if chunked:
            out.append(("Transfer-Encoding", "chunked"))
        self.send_response_only(response.status, response.reason)
        for name, value in out:
            self.send_header(name, value)
        self.end_headers()
        self._stream(proxy, conn, response, record, chunked)

    def _stream(  # noqa: PLR0912 - issue 16: one read-and-pass-on loop; split pending
        self,
        proxy: Proxy,
        conn: http.client.HTTPConnection,
        response: http.client.HTTPResponse,
        record: Record,
        chunked: bool,
    ) -> None:
        """The answer's body, passed on as it arrives (a copy kept for judging)."""
        complete = False
        try:
            while True:
                try:
                    chunk = response.read1(65536)
                except TimeoutError:
                    record.error, record.detail = "timeout", "the answer stopped half-way"
                    break
                except (OSError, http.client.HTTPException) as error:
                    record.error, record.detail = "unreachable", f"{type(error).__name__}: {error}"
                    break
                if not chunk:
                    complete = True
                    if chunked:
                        self.wfile.write(b"0\r\n\r\n")
                    break
                if not record.truncated:
                    if len(record.body) + len(chunk) > MAX_KEPT:
                        record.truncated = True
                    else:
                        record.body += chunk
                if chunked:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                else:
                    self.wfile.write(chunk)
        except OSError:
            self.close_connection = True  # the client went away: the body is not all here
            record.abandoned = True
        finally:
            if not complete:
                self.close_connection = True  # the client cannot tell where the body ended
            record.finished = time.monotonic()
            if complete and not response.will_close:
                # read1 leaves a fully read answer open; the connection takes no new
                # request until it is closed (which keeps the socket).
                response.close()
                proxy.pool.give(conn)
            else:
                conn.close()
            proxy.checker.submit(record)

    def _failed(
        self, proxy: Proxy, record: Record, answer: tuple[int, str, str], error: str, detail: str
    ) -> None:
        status, code, message = answer
        record.status, record.error, record.detail = status, error, detail
        record.finished = time.monotonic()
        proxy.checker.submit(record)
        headers = [
            ("Content-Type", "application/json"),
            ("Cache-Control", CACHE_CONTROL),
            # Nothing was counted: the server never answered.
            ("RateLimit-Skipped", "true"),
            *proxy.cors,
        ]
        self._answer(status, message, headers, _error_body(code, message))

    # The control side and plumbing -----------------------------------------------------

    def _control(self, proxy: Proxy, body: bytes) -> None:
        path, _, query = self.path.partition("?")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": self.command,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote(path).encode("utf-8", "surrogateescape").decode("latin-1"),
            "QUERY_STRING": query,
            "SERVER_NAME": str(self.server.server_address[0]),
            "SERVER_PORT": str(self.server.port),
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": self.client_address[0],
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body),
            "wsgi.url_scheme": "http",
            "wsgi.version": (1, 0),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for name, value in self.headers.items():
            key = name.upper().replace("-", "_")
            if key == "CONTENT_TYPE":
                environ[key] = value
            elif key != "CONTENT_LENGTH":
                key = "HTTP_" + key
                environ[key] = f"{environ[key]},{value}" if key in environ else value
        started: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc: Any = None) -> Any:
            started[:] = [status, headers]
            return lambda data: None

        result = proxy.control(environ, start_response)
        try:
            data = b"".join(result)
        finally:
            getattr(result, "close", lambda: None)()
        status, headers = started
        code, _, reason = status.partition(" ")
        headers = [(n, v) for n, v in headers if n.lower() != "content-length"]
        self._answer(int(code), reason, headers, data)

    def _answer(
        self, status: int, reason: str, headers: list[tuple[str, str]], data: bytes
    ) -> None:
        self.send_response_only(status, reason)
        for name, value in headers:
            self.send_header(name, value)
        if status != 204:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data and self.command != "HEAD":
            self.wfile.write(data)

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return _read_chunked(self.rfile)
        if length is None:
            return b""
        if not length.strip().isdigit():
            raise ValueError("bad Content-Length")
        return bytes(self.rfile.read(int(length)))

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # What http.server refuses before the proxy runs, in the API's format (as the mock's
        # werkzeug server answers it).
        phrase = HTTPStatus(code).phrase if code in HTTPStatus._value2member_map_ else ""
        name = phrase.upper().replace(" ", "_").replace("-", "_") or f"HTTP_{code}"
        self.close_connection = True
        data = _error_body(f"{name}_ERROR", phrase)
        headers = [
            ("Content-Type", "application/json"),
            ("Cache-Control", CACHE_CONTROL),
            ("Connection", "close"),
        ]
        self._answer(code, phrase, headers, data)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # The request line holds no secrets here (tokens travel in headers).
        access_log.info('%s "%s" %s', self.client_address[0], self.requestline, code)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)

    def send_response_only(self, code: int, message: str | None = None) -> None:
        self.log_request(code)
        super().send_response_only(code, message)


def _read_chunked(stream: Any) -> bytes:
    body = bytearray()
    while True:
        line = stream.readline(65537)
        size = int(line.split(b";", 1)[0].strip() or b"x", 16)
        if size == 0:
            while stream.readline(65537) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return bytes(body)
        body += stream.read(size)
        if len(body) > MAX_BODY:
            raise ValueError("chunked body too large")
        stream.readline(3)


def forwardable(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The client's headers that go upstream: all but hop-by-hop ones, Host and the length
    (both set for the upstream connection)."""
    skip = HOP_BY_HOP | {"host", "content-length"}
    return [(n, v) for n, v in headers if n.lower() not in skip]


def _client_ip(forwarded_for: str | None, peer: str) -> str:
    """The address the spec keys buckets by: the first X-Forwarded-For value, else the peer."""
    if forwarded_for:
        return forwarded_for.split(",")[0].strip()
    return peer


# The control side: dashboard page and violations ---------------------------------------


def _control_app(proxy: Proxy, control_token: str | None) -> Any:
    import hmac
    from pathlib import Path

    from flask import Flask, Response, request, send_from_directory

    from . import exceptions as err
    from .control import guard

    static = Path(__file__).resolve().parent / "static"
    app = Flask("cumulonimbus-proxy", static_folder=str(static), static_url_path="/_mock/static")

    def answer(status: int, body: Any) -> Response:
        response = Response(json.dumps(body), status=status, mimetype="application/json")
        response.headers["Cache-Control"] = CACHE_CONTROL
        return response

    @app.before_request
    def _guard() -> None:
        # The same defences as the mock's control API: loopback names and its own origin only.
        guard(request.headers.get("Host"), request.headers.get("Origin"))
        given = request.headers.get("X-Mock-Token", "")
        stateful = request.path == "/_mock/violations"
        if (
            stateful
            and control_token
            and not hmac.compare_digest(given.encode(), control_token.encode())
        ):
            raise err.InvalidMockToken()

    @app.errorhandler(err.APIError)
    def _api_error(error: err.APIError) -> Response:
        return answer(error.status, error.to_dict())

    @app.errorhandler(404)
    def _not_found(error: Exception) -> Response:
        return answer(404, {"code": "INVALID_ENDPOINT_ERROR", "message": "Invalid Endpoint"})

    @app.errorhandler(405)
    def _not_allowed(error: Exception) -> Response:
        return answer(404, {"code": "INVALID_ENDPOINT_ERROR", "message": "Invalid Endpoint"})

    @app.route("/_mock/", methods=["GET"])
    def dashboard() -> Response:
        response = send_from_directory(static / "dashboard", "contract.html")
        response.headers["Cache-Control"] = CACHE_CONTROL
        return response

    @app.route("/_mock", methods=["GET"])
    def dashboard_slash() -> Response:
        return Response(status=308, headers={"Location": "/_mock/"})

    @app.route("/_mock/violations", methods=["GET"])
    def violations() -> Response:
        # What was sent before this request is judged by now (or within a second).
        proxy.checker.drain(1.0)
        return answer(200, proxy.checker.snapshot())

    @app.route("/_mock/violations", methods=["DELETE"])
    def clear_violations() -> Response:
        proxy.checker.drain(1.0)
        proxy.checker.reset()
        return answer(200, proxy.checker.snapshot())

    return app


# Serving and the report -------------------------------------------------------------------


def report_results(checker: Checker) -> Any:
    """The traffic's verdicts as the suite's `Results`: one case per (check, operation)
    judged, failed once per violation."""
    from conformance.report import Outcome, Results

    results = Results()
    failed: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for item in checker.failed:
        operation = item["operationId"] or item["operation"]
        failed.setdefault((item["check"], operation), []).append(item)
    for check, operation in sorted(checker.judged | set(failed)):
        nodeid = f"traffic::{check}[{operation}]"
        results.collected[nodeid] = (check, operation)
        items = failed.get((check, operation))
        if not items:
            results.record(Outcome(check, operation, nodeid, "passed"))
            continue
        for n, item in enumerate(items, 1):
            failure = {k: item[k] for k in ("check", "operation", "rule", "expected", "actual")}
            failure["curl"] = item["curl"]
            results.record(
                Outcome(
                    check,
                    operation,
                    f"{nodeid}#{n} {item['request']} at {item['time']}",
                    "failed",
                    "",
                    failure,
                )
            )
    return results


def write_report(checker: Checker, path: str) -> None:
    """The suite's Markdown report (or its JSON one, for a `.json` file) of the traffic."""
    from conformance.deviations import KnownDeviations
    from conformance.report import json_report, markdown_report

    # No drain here: the caller has stopped the checker (Proxy.close), which waited once;
    # a second wait doubled the exit time when an exchange was still in flight.
    results = report_results(checker)
    deviations = KnownDeviations([])
    span = (
        f" from {_iso(checker.first)} to {_iso(checker.last)}"
        if checker.first and checker.last
        else ""
    )
    about = (
        f"Traffic through `cumulonimbus-mock proxy` to `{checker.upstream.base_url}`: "
        f"{checker.exchanges} exchange(s){span}."
    )
    if path.endswith(".json"):
        data = json_report(results, deviations, None)
        data["target"] = {"base_url": checker.upstream.base_url, "kind": "proxy", "version": None}
        data["traffic"] = {
            "exchanges": checker.exchanges,
            "from": checker.first,
            "to": checker.last,
        }
        text = json.dumps(data, indent=2) + "\n"
    else:
        title, *rest = markdown_report(results, deviations, None).split("\n", 1)
        text = "\n".join([title, "", about, *rest])
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def main(argv: list[str]) -> int:
    """``cumulonimbus-mock proxy --upstream URL [--port P] [--report FILE]``."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(
        prog="cumulonimbus-mock proxy",
        description=(
            "Forward /api to a real server of the API and check every exchange against "
            "openapi/sessions.yaml; violations show on the dashboard at /_mock/."
        ),
    )
    parser.add_argument(
        "--upstream", required=True, metavar="URL", help="the server's API base URL (…/api)"
    )
    parser.add_argument(
        "--port", type=int, default=8000, help="port on 127.0.0.1 (default 8000; 0 picks one)"
    )
    parser.add_argument(
        "--report",
        metavar="FILE",
        help="on exit, write the suite's report of the traffic (Markdown; JSON if FILE.json)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="answer 504 when the upstream takes over S seconds (default 30)",
    )
    parser.add_argument(
        "--control-token", metavar="T", help="require header X-Mock-Token: T on /_mock/violations"
    )
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    args = parser.parse_args(argv)
    if args.report and importlib.util.find_spec("pytest") is None:
        # The suite's report module needs it; better said now than after a day's traffic.
        print(f"cumulonimbus-mock proxy: --report needs pytest; {INSTALL_HINT}", file=sys.stderr)
        return 2
    if not 0 < args.timeout <= 3600:
        parser.error("--timeout must be more than 0 and at most 3600 seconds")
    try:
        upstream = Upstream.parse(args.upstream, args.timeout)
    except ValueError as error:
        parser.error(str(error))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.quiet:
        access_log.setLevel(logging.WARNING)
    proxy = Proxy(upstream, control_token=args.control_token)
    try:
        # Loopback only: the proxy carries its users' tokens.
        server = make_proxy_server(proxy, "127.0.0.1", args.port)
    except OSError as error:
        print(
            f"cumulonimbus-mock: cannot listen on 127.0.0.1:{args.port}: {error.strerror}",
            file=sys.stderr,
        )
        return 2
    base = f"http://127.0.0.1:{server.port}"
    print(f"cumulonimbus-mock proxy listening on {base} (bound to 127.0.0.1 only)", flush=True)
    print(f"  API:       {base}/api -> {upstream.base_url}", flush=True)
    print(f"  contract:  {base}/_mock/ (violations: {base}/_mock/violations)", flush=True)
    if args.report:
        print(f"  report:    {args.report} (written on exit)", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    # Ctrl-C stops it even when started with SIGINT ignored (a parent that ignores it,
    # or `&` in a script), which Python would otherwise keep: it would never end.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        proxy.close()
        if args.report:
            write_report(proxy.checker, args.report)
            print(f"cumulonimbus-mock proxy: report written to {args.report}", flush=True)
    return 0
