"""The HTTP server behind ``cumulonimbus-mock``: Granian, with the app in one worker.

werkzeug's development server answers about a thousand requests a second and spends
much of that in its own HTTP parsing; Granian parses HTTP in Rust and calls the WSGI
app from one Python thread, so the mock's own code sets the pace. The object returned
has the shape of werkzeug's ``make_server`` result, so the command line drives either::

    server = make_server("127.0.0.1", 8000, app)
    server.port          # the bound port (a free one for port 0)
    server.serve_forever()  # until SIGINT or SIGTERM

Granian runs the app in a worker process forked from this one, after the app was
built: all state lives in that worker. A ``--state`` writer thread does not survive a
fork, so the parent stops its own (after a last write) and the worker starts a fresh
one that writes once more when the worker exits. ``CUMULONIMBUS_MOCK_SERVER=werkzeug``
brings back werkzeug's threaded server.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import threading
import time
from typing import Any

from flask import Flask

GC_FREEZE_EVERY = 1.0  # seconds
GC_FULL_EVERY_ROUNDS = 600


def make_server(host: str, port: int, app: Flask, threaded: bool = True) -> Any:
    if os.environ.get("CUMULONIMBUS_MOCK_SERVER", "granian") == "werkzeug":
        from werkzeug.serving import make_server as werkzeug_server

        return werkzeug_server(host, port, app, threaded=threaded)
    return GranianServer(host, port, app)


class GranianServer:
    def __init__(self, host: str, port: int, app: Flask) -> None:
        # Bind once now, so that a busy port fails here (OSError, as with werkzeug) and
        # port 0 gets its number; Granian binds the same address again when it starts.
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
            self.port = int(probe.getsockname()[1])
        self.host = host
        self.app = app
        # `--quiet` quietens werkzeug's request log; the same switch governs Granian's.
        self.access_log = logging.getLogger("werkzeug").isEnabledFor(logging.INFO)

    def serve_forever(self) -> None:
        from granian.constants import Interfaces
        from granian.log import LogLevels
        from granian.server import Server

        writer = getattr(self.app.extensions.get("cumulonimbus"), "writer", None)
        if writer is not None:
            writer.stop()  # a last write here; the worker writes from now on
        server = Server(
            "cumulonimbus-mock",
            address=self.host,
            port=self.port,
            interface=Interfaces.WSGI,
            workers=1,
            runtime_threads=1,
            blocking_threads=1,  # the app's state is guarded by locks, but one is fastest
            log_level=LogLevels.warning,
            log_access=self.access_log,
        )
        server.serve(target_loader=self._load_in_worker, wrap_loader=False)

    def _load_in_worker(self) -> Flask:
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
        return self.app

    def shutdown(self) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # Granian stops its worker, then returns

    def server_close(self) -> None:
        pass


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
