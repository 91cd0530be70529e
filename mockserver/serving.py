"""The HTTP server behind ``cumulonimbus-mock``: Granian, serving the app in worker processes.

werkzeug's development server answers about a thousand requests a second and spends
much of that in its own HTTP parsing; Granian parses HTTP in Rust, so the mock's own
code sets the pace. The object returned has the shape of werkzeug's ``make_server``
result, so the command line drives either::

    server = make_server("127.0.0.1", 8000, app, read_timeout=10)
    server.port          # the bound port (a free one for port 0)
    server.serve_forever()  # until SIGINT or SIGTERM

**No client can hold the app.** Granian's WSGI interface hands the app a body that it
reads on the app's one thread, so a client that stops half-way through its body used
to freeze every other client. Here Granian speaks RSGI to :class:`WSGIOverRSGI`, which
reads each body on the event loop (many at once, each with a deadline) and calls the
WSGI app only with a body that has fully arrived. A client that stalls for longer than
``read_timeout`` seconds, in its headers (Granian's own timer) or in its body (ours),
is answered ``408`` and dropped; other clients are served meanwhile.

**Workers end with the mock.** Granian runs the app in worker processes forked after
the app was built: all state lives there. Each worker asks the kernel to end it when
the process that started it dies (``PR_SET_PDEATHSIG`` on Linux; elsewhere a thread
watches the parent), so ``kill -9`` of the mock leaves no worker behind holding the
port or writing the state file. A ``--state`` writer thread does not survive a fork,
so the parent stops its own (after a last write) and each worker starts a fresh one
that writes once more when the worker exits. ``CUMULONIMBUS_MOCK_SERVER=werkzeug``
brings back werkzeug's threaded server (one thread per connection, the same timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import io
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any

from flask import Flask

from .httpio import BODY_KEY

log = logging.getLogger("cumulonimbus-mock")

GC_FREEZE_EVERY = 1.0  # seconds
GC_FULL_EVERY_ROUNDS = 600
READ_TIMEOUT = 10.0  # seconds a client may take to send its headers, and its body
PARENT_POLL = 0.25  # seconds, where the kernel cannot watch the parent for us
PR_SET_PDEATHSIG = 1
REQUEST_TIMEOUT_BODY = json.dumps(
    {"code": "REQUEST_TIMEOUT_ERROR", "message": "Request Timeout"}, separators=(",", ":")
).encode()
INTERNAL_ERROR_BODY = json.dumps(
    {"code": "INTERNAL_SERVER_ERROR", "message": "Internal Server Error"}, separators=(",", ":")
).encode()
ERROR_HEADERS = [
    ("Content-Type", "application/json"),
    ("Cache-Control", "no-cache, no-store, must-revalidate"),
]


def make_server(
    host: str,
    port: int,
    app: Flask,
    threaded: bool = True,
    workers: int = 1,
    read_timeout: float = READ_TIMEOUT,
) -> Any:
    if os.environ.get("CUMULONIMBUS_MOCK_SERVER", "granian") == "werkzeug":
        from werkzeug.serving import WSGIRequestHandler
        from werkzeug.serving import make_server as werkzeug_server

        class Handler(WSGIRequestHandler):
            timeout = read_timeout  # socket timeout: a stalled client ends its own thread

            def send_error(
                self, code: int, message: str | None = None, explain: Any = None
            ) -> None:
                # What http.server refuses before the app runs, in the API's format.
                phrase = HTTPStatus(code).phrase if code in HTTPStatus._value2member_map_ else ""
                name = phrase.upper().replace(" ", "_").replace("-", "_") or f"HTTP_{code}"
                body = json.dumps({"code": f"{name}_ERROR", "message": phrase}).encode()
                self.close_connection = True
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

        return werkzeug_server(host, port, app, threaded=threaded, request_handler=Handler)
    return GranianServer(host, port, app, workers=workers, read_timeout=read_timeout)


class GranianServer:
    def __init__(
        self,
        host: str,
        port: int,
        app: Flask,
        workers: int = 1,
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        # Bind once now, so that a busy port fails here (OSError, as with werkzeug) and
        # port 0 gets its number; Granian binds the same address again when it starts.
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
            self.port = int(probe.getsockname()[1])
        self.host = host
        self.app = app
        self.workers = workers
        self.read_timeout = read_timeout
        # `--quiet` quietens werkzeug's request log; the same switch governs Granian's.
        self.access_log = logging.getLogger("werkzeug").isEnabledFor(logging.INFO)

    def serve_forever(self) -> None:
        from granian.constants import Interfaces, TaskImpl
        from granian.http import HTTP1Settings
        from granian.log import LogLevels
        from granian.server import Server

        writer = getattr(self.app.extensions.get("cumulonimbus"), "writer", None)
        if writer is not None:
            writer.stop(release=False)  # a last write here; the workers write from now on
        self._parent = os.getpid()
        server = Server(
            "cumulonimbus-mock",
            address=self.host,
            port=self.port,
            interface=Interfaces.RSGI,
            workers=self.workers,
            runtime_threads=1,
            websockets=False,
            # Granian's timer for the request line and headers (milliseconds).
            http1_settings=HTTP1Settings(header_read_timeout=max(1, int(self.read_timeout * 1000))),
            log_level=LogLevels.warning,
            log_access=self.access_log,
            # Granian's own task instead of an asyncio Task per request: about a fifth
            # less CPU per request outside the app (benchmarks/README.md). Granian has
            # it only before Python 3.12.
            task_impl=TaskImpl.rust if sys.version_info < (3, 12) else TaskImpl.asyncio,
        )
        server.serve(target_loader=self._load_in_worker, wrap_loader=False)

    def _load_in_worker(self) -> WSGIOverRSGI:
        _end_with_parent(self._parent)
        state = self.app.extensions.get("cumulonimbus")
        writer = getattr(state, "writer", None)
        if writer is not None:
            import multiprocessing.util

            from .persistence import StateWriter

            fresh = StateWriter(writer.backend, writer.store, writer.interval).start()
            state.writer = fresh  # type: ignore[union-attr]
            # Runs when the worker process ends (Granian passes SIGTERM on to it).
            multiprocessing.util.Finalize(fresh, fresh.stop, exitpriority=10)
        threading.Thread(target=_collect_garbage, name="gc-policy", daemon=True).start()
        return WSGIOverRSGI(
            self.app,
            read_timeout=self.read_timeout,
            max_body=self.app.config.get("MAX_CONTENT_LENGTH"),
            multiprocess=self.workers > 1,
        )

    def shutdown(self) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # Granian stops its workers, then returns

    def server_close(self) -> None:
        pass


class WSGIOverRSGI:
    """An RSGI application that runs a WSGI app once the request body is in.

    The body is read on the event loop with a deadline of ``read_timeout`` seconds and
    at most ``max_body + 1`` bytes of it (enough for the app to see that it is too
    large and answer 413 itself); a body declared larger than ``max_body`` is not read
    at all. The WSGI app then runs on the loop's thread, one request at a time, as
    Granian's WSGI interface ran it.
    """

    def __init__(
        self,
        app: Any,
        read_timeout: float = READ_TIMEOUT,
        max_body: int | None = None,
        multiprocess: bool = False,
    ) -> None:
        self.app = app
        self.read_timeout = read_timeout
        self.max_body = max_body
        self.base_environ: dict[str, Any] = {
            "SCRIPT_NAME": "",
            "wsgi.version": (1, 0),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": multiprocess,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
            "SERVER_SOFTWARE": "cumulonimbus-mock (Granian)",
        }

    async def __call__(self, scope: Any, protocol: Any) -> None:
        if scope.proto != "http":
            return
        headers = scope.headers
        declared = headers.get("content-length")
        complete = True
        body = b""
        if declared is not None or "transfer-encoding" in headers:
            limit = self.max_body
            too_large = (
                limit is not None
                and declared is not None
                and declared.isdigit()
                and int(declared) > limit
            )
            if not too_large:
                try:
                    # wait_for, not asyncio.timeout: the latter needs the current asyncio
                    # Task, and Granian runs this coroutine as its own (Rust) task.
                    if declared is not None and "transfer-encoding" not in headers:
                        # A length within the limit: the whole body in one read (one
                        # wake-up of this loop, where chunk by chunk takes two or more).
                        body = await asyncio.wait_for(protocol(), self.read_timeout)
                    else:
                        body, complete = await asyncio.wait_for(
                            _read_body(protocol, limit), self.read_timeout
                        )
                except TimeoutError:
                    protocol.response_bytes(
                        408, [*ERROR_HEADERS, ("Connection", "close")], REQUEST_TIMEOUT_BODY
                    )
                    return
            else:
                complete = False
        environ = self._environ(scope, body, declared, complete)
        status, response_headers, data = self._call(environ)
        if not complete:
            # The rest of the body was never read: this connection cannot carry another.
            response_headers.append(("Connection", "close"))
        protocol.response_bytes(status, response_headers, data)

    def _environ(
        self, scope: Any, body: bytes, declared: str | None, complete: bool
    ) -> dict[str, Any]:
        environ = dict(self.base_environ)
        server_host, _, server_port = scope.server.rpartition(":")
        client_host, _, client_port = scope.client.rpartition(":")
        environ.update(
            {
                "REQUEST_METHOD": scope.method,
                # PEP 3333: the path's bytes, percent-decoded, as a latin-1 string.
                "PATH_INFO": scope.path.encode("utf-8", "surrogateescape").decode("latin-1"),
                "QUERY_STRING": scope.query_string,
                "SERVER_NAME": server_host.strip("[]"),
                "SERVER_PORT": server_port,
                "SERVER_PROTOCOL": f"HTTP/{scope.http_version}",
                "REMOTE_ADDR": client_host.strip("[]"),
                "REMOTE_PORT": client_port,
                "wsgi.url_scheme": scope.scheme,
                "wsgi.input": io.BytesIO(body),
            }
        )
        keys = _ENVIRON_KEYS
        for name, value in scope.headers.items():
            key = keys.get(name)
            if key is None:
                key = _environ_key(name)
            if not key:  # Content-Length and Transfer-Encoding: set below from the body
                continue
            if key in environ and key != "CONTENT_TYPE":  # the last Content-Type wins
                value = f"{environ[key]},{value}"
            environ[key] = value
        if "HTTP_HOST" not in environ and scope.authority:
            environ["HTTP_HOST"] = scope.authority
        # What the app reads is what arrived; a body left unread keeps its declared size,
        # so the app still refuses it as too large.
        if complete:
            if body or declared is not None:
                environ["CONTENT_LENGTH"] = str(len(body))
            environ[BODY_KEY] = body  # all of it, as wsgi.input holds it
        else:
            environ["CONTENT_LENGTH"] = declared if declared is not None else str(len(body))
        return environ

    def _call(self, environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
        started: list[Any] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            started[:] = [status, headers]
            return lambda data: None

        try:
            result: Iterable[bytes] = self.app(environ, start_response)
            try:
                data = b"".join(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except Exception as error:  # the app's own handlers should have answered
            log.exception("unhandled error outside the app's handlers: %s", error)
            return 500, list(ERROR_HEADERS), INTERNAL_ERROR_BODY
        status, headers = started
        return int(status.split(" ", 1)[0]), list(headers), data


# Header names as environ keys, by name: every request sends the same few, and spelling
# each anew (upper, replace, concatenate) was a tenth of building the environ.
ENVIRON_KEYS_KEPT = 256
_ENVIRON_KEYS: dict[str, str] = {}


def _environ_key(name: str) -> str:
    """``HTTP_X_FORWARDED_FOR`` for ``x-forwarded-for``; ``CONTENT_TYPE`` without the
    prefix (PEP 3333); "" for the body's framing, which the environ states itself."""
    key = name.upper().replace("-", "_")
    if key in ("CONTENT_LENGTH", "TRANSFER_ENCODING"):
        key = ""
    elif key != "CONTENT_TYPE":
        key = "HTTP_" + key
    if len(_ENVIRON_KEYS) >= ENVIRON_KEYS_KEPT:
        _ENVIRON_KEYS.clear()
    _ENVIRON_KEYS[name] = key
    return key


async def _read_body(protocol: Any, limit: int | None) -> tuple[bytes, bool]:
    """The body, and whether all of it was read (not when it passed ``limit``)."""
    parts: list[bytes] = []
    size = 0
    async for chunk in protocol:
        parts.append(chunk)
        size += len(chunk)
        if limit is not None and size > limit:
            return b"".join(parts), False
    return b"".join(parts), True


def _end_with_parent(parent: int) -> None:
    """Make this worker process end (SIGTERM, so it still writes its state) when
    ``parent`` dies, however it dies."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) == 0:
                if os.getppid() != parent:  # it died before we asked
                    os.kill(os.getpid(), signal.SIGTERM)
                return
    threading.Thread(target=_watch_parent, args=(parent,), name="parent-watch", daemon=True).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL)  # polling the parent, not waiting for the mock's clock
    os.kill(os.getpid(), signal.SIGTERM)


def _collect_garbage() -> None:
    """Keep the cyclic garbage collector's pauses short while the mock is busy.

    Each client address leaves rate-limit buckets that live for a minute, so under load
    hundreds of thousands of objects are alive and every full collection walks them
    all (100-300 ms pauses; p99 latency followed them). Once a second, young garbage
    is collected and the survivors frozen (taken out of the collector's walks; plain
    reference counting still frees them); every ten minutes the collector looks at
    everything once, so that even cyclic garbage frozen by chance is freed.
    """
    gc.collect()
    gc.freeze()
    rounds = 0
    while True:
        time.sleep(GC_FREEZE_EVERY)
        rounds += 1
        if rounds % GC_FULL_EVERY_ROUNDS == 0:
            gc.unfreeze()
            gc.collect()
        else:
            gc.collect(1)
        gc.freeze()
