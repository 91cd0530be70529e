"""The proxy's HTTP server and a request's way through it: an ``/api`` request is forwarded
upstream as the client sent it and the answer passed back as it is read, chunk by chunk,
a copy queued for the checker; anything else goes to the control side. An upstream that
fails gets the client a JSON 502 or 504 in the API's format.
"""

from __future__ import annotations

import http.client
import http.server
import io
import json
import logging
import socket
import sys
import time
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

from conformance.spec import Spec, load_spec

from .control import control_app
from .judging import Checker, Record
from .upstream import HOP_BY_HOP, ConnectionPool, Upstream, forwardable

log = logging.getLogger("cumulonimbus-mock.proxy")
access_log = logging.getLogger("cumulonimbus-mock.proxy.access")  # --quiet silences it

CACHE_CONTROL = "no-cache, no-store, must-revalidate"
MAX_KEPT = 1024 * 1024  # bytes of an answer kept for judging; a longer one is not judged

MAX_BODY = 8 * 1024 * 1024  # a request body the proxy takes (the API's own limit is 1 MB)
TOO_LARGE_BODY = b'{"code": "BODY_TOO_LARGE_ERROR", "message": "Body Too Large"}'


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
        from ..httpio import CORS_HEADERS

        self.upstream = upstream
        self.pool = ConnectionPool(upstream)
        self.checker = Checker(spec or load_spec(), upstream).start()
        self.cors = [("Access-Control-Allow-Origin", "*"), *CORS_HEADERS.items()]
        self.control = control_app(self, control_token)

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

    def _stream(
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
            complete = self._pass_on(response, record, chunked)
            if complete and chunked:
                self.wfile.write(b"0\r\n\r\n")
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

    def _pass_on(self, response: http.client.HTTPResponse, record: Record, chunked: bool) -> bool:
        """Read the body and pass each piece on: True once it all went by, False when the
        upstream failed half-way (recorded). A client that went away raises OSError."""
        while True:
            try:
                chunk = response.read1(65536)
            except TimeoutError:
                record.error, record.detail = "timeout", "the answer stopped half-way"
                return False
            except (OSError, http.client.HTTPException) as error:
                record.error, record.detail = "unreachable", f"{type(error).__name__}: {error}"
                return False
            if not chunk:
                return True
            if not record.truncated:
                if len(record.body) + len(chunk) > MAX_KEPT:
                    record.truncated = True
                else:
                    record.body += chunk
            if chunked:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            else:
                self.wfile.write(chunk)

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


def _client_ip(forwarded_for: str | None, peer: str) -> str:
    """The address the spec keys buckets by: the first X-Forwarded-For value, else the peer."""
    if forwarded_for:
        return forwarded_for.split(",")[0].strip()
    return peer
