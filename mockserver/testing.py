"""The mock inside a Python test suite: served on a free loopback port in a thread, with a
small client for its control API. The pytest fixtures (``cumulonimbus_mock`` and friends,
in ``pytest_cumulonimbus``) are built on these; without pytest::

    with MockServer() as mock:
        requests.post(mock.base_url + "/login", json={"username": "alice", ...})
        mock.control.advance(86_401)  # a day later, at once
        mock.control.reset()

``MockControl`` also drives a mock started elsewhere (``cumulonimbus-mock``), by URL.
"""

from __future__ import annotations

import contextlib
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.serving import WSGIRequestHandler, make_server

from .app import create_app
from .models import Backend
from .records import SeedUser
from .state import EXTENSION, MockState

__all__ = ["ControlError", "MockControl", "MockServer", "SeedUser", "serve"]

Users = Iterable[SeedUser | Mapping[str, Any]] | str | Path


class ControlError(Exception):
    """The control API refused a request; ``status`` and ``body`` say how."""

    def __init__(self, status: int, body: Any) -> None:
        message = body.get("message") if isinstance(body, dict) else body
        super().__init__(f"control API answered {status}: {message}")
        self.status = status
        self.body = body


class MockControl:
    """A client for the mock's control API (``/_mock``, see ``openapi/control.yaml``).

    Only the standard library, so a test suite needs no HTTP client of ours. ``url`` is the
    mock's root (``http://127.0.0.1:8000``), not the API's base URL.
    """

    def __init__(self, url: str, token: str | None = None, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + "/_mock" + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("X-Mock-Token", self.token)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                answer = json.loads(raw)
            except ValueError:
                answer = raw.decode("utf-8", "replace")
            raise ControlError(error.code, answer) from None

    def reset(self) -> None:
        """Back to the seed users, no sessions, switches off, clock real and unfrozen."""
        self._call("POST", "/reset")

    def add_user(
        self,
        username: str,
        password: str = "password",
        *,
        staff: bool = False,
        banned: bool = False,
        totp_secret: str | None = None,
        backup_codes: Iterable[str] | None = None,
    ) -> dict[str, Any]:
        """Add a user; with a TOTP secret and no backup codes the answer carries ten new ones."""
        body: dict[str, Any] = {
            "username": username,
            "password": password,
            "staff": staff,
            "banned": banned,
            "totpSecret": totp_secret,
        }
        if backup_codes is not None:
            body["backupCodes"] = list(backup_codes)
        return dict(self._call("POST", "/users", body))

    def ban(self, username: str, banned: bool = True) -> dict[str, Any]:
        """Ban (or unban) an existing user; their sessions stay (see ``set_profile``)."""
        path = f"/users/{urllib.parse.quote(username, safe='')}"
        return dict(self._call("PATCH", path, {"banned": banned}))

    def profile(self) -> str | None:
        """The behaviour profile in force: None for the contract, or e.g. ``"5.3.0"``."""
        name = self._call("GET", "/profile")["profile"]
        return None if name is None else str(name)

    def set_profile(self, name: str | None) -> None:
        """Answer like that deployed version of the service, bugs included (None: the
        contract). A reset keeps it."""
        self._call("PUT", "/profile", {"profile": name})

    def delete_user(self, username: str) -> None:
        self._call("DELETE", f"/users/{urllib.parse.quote(username, safe='')}")

    def users(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/users")["items"])

    def set_kill_switch(self, switch: int, state: bool = True) -> dict[str, Any]:
        """Turn kill switch ``switch`` (its number, e.g. 4 for ACCOUNT_LOGIN) on or off."""
        return dict(self._call("PUT", f"/killswitches/{int(switch)}", {"state": state}))

    def kill_switches(self) -> Any:
        return self._call("GET", "/killswitches")

    def clock(self) -> dict[str, Any]:
        """``{"now": epoch, "iso": ..., "offset": seconds, "frozen": bool}``"""
        return dict(self._call("GET", "/clock"))

    def advance(self, seconds: float) -> float:
        """Move the mock's clock forward; returns its new time (epoch seconds)."""
        return float(self._call("POST", "/clock", {"advance": seconds})["now"])

    def set_time(self, epoch: float) -> float:
        return float(self._call("POST", "/clock", {"set": epoch})["now"])

    def freeze(self, frozen: bool = True) -> float:
        """Stop (or, with False, restart) the mock's clock where it stands."""
        return float(self._call("POST", "/clock", {"frozen": frozen})["now"])

    def unfreeze(self) -> float:
        return self.freeze(False)

    def clear_rate_limits(self) -> None:
        self._call("DELETE", "/ratelimits")

    def requests(self, limit: int = 100) -> list[dict[str, Any]]:
        """The mock's journal, oldest first: what your code sent and what it got."""
        return list(self._call("GET", f"/requests?limit={int(limit)}")["items"])


class _QuietHandler(WSGIRequestHandler):
    """No line per request on the test's stderr; the journal has them (``requests()``)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@contextlib.contextmanager
def serve(app: Any, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve any WSGI app (the mock, or the mock wrapped to break a rule) in a thread;
    yields its root URL."""
    server = make_server(host, port, app, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="cumulonimbus-mock", daemon=True)
    thread.start()
    try:
        name = f"[{host}]" if ":" in host else host
        yield f"http://{name}:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


class MockServer:
    """The mock, served on ``host`` (loopback) at a free port in a daemon thread.

    ``config`` is ``create_app()``'s configuration (README: "Use it from Python tests");
    ``users`` replaces the demo users (a list of :class:`SeedUser` or of the control API's
    user objects, or a seed YAML file) and ``strict`` validates every response against
    the spec, answering a 500 with ``X-Mock-Strict-Violation`` where the mock breaks it.
    """

    def __init__(
        self,
        config: Mapping[str, Any] | None = None,
        *,
        users: Users | None = None,
        strict: bool | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.config: dict[str, Any] = dict(config or {})
        if users is not None:
            self.config["SEED_USERS"] = _seed(users)
        if strict is not None:
            self.config["STRICT_RESPONSES"] = strict
        self.host = host
        self.port = port
        self.app: Flask | None = None
        self._serving: contextlib.ExitStack | None = None
        self._url: str | None = None
        self._control: MockControl | None = None

    # Life ------------------------------------------------------------------------------

    def start(self) -> MockServer:
        if self._serving is not None:
            return self
        self.app = create_app(self.config)
        with contextlib.ExitStack() as stack:
            self._url = stack.enter_context(serve(self.app, self.host, self.port))
            self._serving = stack.pop_all()
        return self

    def stop(self) -> None:
        serving, self._serving, self._url = self._serving, None, None
        if serving is None:
            return
        serving.close()
        writer = self._state.writer
        if writer is not None:
            writer.stop()

    def __enter__(self) -> MockServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # Where it is, and how to drive it --------------------------------------------------

    @property
    def url(self) -> str:
        """The mock's root: ``http://127.0.0.1:PORT`` (the control API is under ``/_mock``)."""
        if self._url is None:
            raise RuntimeError("the mock is not running: use `with MockServer() as mock:`")
        return self._url

    @property
    def base_url(self) -> str:
        """The API's base URL, the one your client is configured with: ``{url}/api``."""
        return self.url + "/api"

    @property
    def control(self) -> MockControl:
        if self._control is None or self._control.url != self.url:
            self._control = MockControl(self.url, self.config.get("CONTROL_TOKEN"))
        return self._control

    @property
    def _state(self) -> MockState:
        if self.app is None:
            raise RuntimeError("the mock is not running")
        state: MockState = self.app.extensions[EXTENSION]
        return state

    @property
    def backend(self) -> Backend:
        """The state itself, for tests that look past the HTTP API."""
        return self._state.backend

    def strict_violations(self) -> list[Any]:
        """Responses that broke the spec so far (with ``strict``); none is the norm."""
        return list(self._state.validator.violations)


def _seed(users: Users) -> list[SeedUser]:
    if isinstance(users, str | Path):
        from .seed import load_seed

        return load_seed(users)
    return [u if isinstance(u, SeedUser) else SeedUser.from_dict(dict(u)) for u in users]
