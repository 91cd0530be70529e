"""Run the conformance suite, in a subprocess, against the mock or a broken copy of it.

A broken server is the real mock app inside `Broken`, a WSGI middleware that changes one
thing on the way in (`request`) or out (`response`). `Ledger` remembers what went by
(tokens, staff ids, kill switches) so a breakage can be precise::

    app = Broken(create_app(), response=lambda seen, resp, ledger: ...)
    with serve(app) as base_url:
        result = run_suite(base_url, tmp_path, "-k", "scope.denied")
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from werkzeug.wrappers import Response

from mockserver.testing import serve as serve_app

REPO = Path(__file__).resolve().parents[2]
SUITE = REPO / "conformance"


@contextlib.contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve `app` on a free port of 127.0.0.1; yields the API's base URL."""
    with serve_app(app) as root:
        yield root + "/api"


# The suite judging the mock as a deployment (no control API), as its demo user alice.
DEMO_PASSWORD = "password"
AS_DEPLOYMENT = (
    "--cumulonimbus-no-control",
    "--cumulonimbus-username",
    "alice",
    "--cumulonimbus-password",
    DEMO_PASSWORD,
)


@dataclass
class SuiteRun:
    returncode: int
    output: str
    report: str

    def __str__(self) -> str:
        return f"exit {self.returncode}\n{self.output[-6000:]}"


def run_suite(base_url: str, tmp_path: Path, *args: str, files: tuple[str, ...] = ()) -> SuiteRun:
    report = tmp_path / "report.md"
    paths = [str(SUITE / f) for f in files] or [str(SUITE)]
    command = [
        sys.executable,
        "-m",
        "pytest",
        *paths,
        "--base-url",
        base_url,
        "-p",
        "no:cacheprovider",
        "-q",
        "-rN",
        "--cumulonimbus-report",
        str(report),
        *args,
    ]
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )
    text = report.read_text(encoding="utf-8") if report.exists() else ""
    return SuiteRun(done.returncode, done.stdout + done.stderr, text)


def jwt_sub(token: str | None) -> str | None:
    if not token or token.count(".") != 2:
        return None
    part = token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except ValueError:
        return None
    return str(claims.get("sub")) if isinstance(claims, dict) else None


@dataclass
class Ledger:
    """What the middleware saw: browser and scoped tokens, staff ids, switches that are on."""

    browser: dict[str, str] = field(default_factory=dict)
    scoped: set[str] = field(default_factory=set)
    staff: set[str] = field(default_factory=set)
    switches_on: set[int] = field(default_factory=set)
    memory: dict[str, Any] = field(default_factory=dict)


@dataclass
class Seen:
    """The request as the middleware saw it (and may change before the app sees it)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any

    @property
    def token(self) -> str | None:
        return self.headers.get("Authorization")

    @property
    def api(self) -> bool:
        return self.path.startswith("/api/") or self.path == "/api"


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    response = Response(json.dumps(body), status=status, mimetype="application/json")
    response.headers["Cache-Control"] = "no-cache, no-store, must-revalidate"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def body_of(response: Response) -> Any:
    try:
        return json.loads(response.get_data(as_text=True))
    except ValueError:
        return None


def set_body(response: Response, body: Any) -> None:
    response.set_data(json.dumps(body))


def oldest_first(seen: Seen, response: Response, ledger: Ledger) -> None:
    """A breakage several tests share: session lists come oldest first (paging.order)."""
    body = body_of(response)
    listed = seen.method == "GET" and seen.path.endswith("/sessions")
    if listed and response.status_code == 200 and isinstance(body, dict) and "items" in body:
        set_body(response, {**body, "items": list(reversed(body["items"]))})


RequestHook = Callable[[Seen, Ledger], Response | None]
ResponseHook = Callable[[Seen, Response, Ledger], Response | None]


class Broken:
    """The mock app with one thing changed by `request` and/or `response` hooks."""

    def __init__(
        self, app: Any, *, request: RequestHook | None = None, response: ResponseHook | None = None
    ):
        self.app = app
        self.request_hook = request
        self.response_hook = response
        self.ledger = Ledger()
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        seen = self._seen(environ)
        with self.lock:
            early = self.request_hook(seen, self.ledger) if self.request_hook and seen.api else None
        if early is not None:
            return early(environ, start_response)
        self._apply(environ, seen)
        response = Response.from_app(self.app, environ, buffered=True)
        with self.lock:
            self._learn(seen, response)
            if self.response_hook and seen.api:
                response = self.response_hook(seen, response, self.ledger) or response
        return response(environ, start_response)

    @staticmethod
    def _seen(environ: dict[str, Any]) -> Seen:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(raw)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        headers = {
            key[5:].replace("_", "-").title(): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        query = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
        return Seen(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""), query, headers, body)

    @staticmethod
    def _apply(environ: dict[str, Any], seen: Seen) -> None:
        """Write back whatever a request hook changed."""
        environ["QUERY_STRING"] = urlencode(seen.query)
        for key in [k for k in environ if k.startswith("HTTP_")]:
            del environ[key]
        for name, value in seen.headers.items():
            environ["HTTP_" + name.upper().replace("-", "_")] = value
        if seen.body is not None and not isinstance(seen.body, bytes):
            raw = json.dumps(seen.body).encode()
        else:
            raw = seen.body or b""
        environ["wsgi.input"] = io.BytesIO(raw)
        environ["CONTENT_LENGTH"] = str(len(raw))

    def _learn(self, seen: Seen, response: Response) -> None:
        body = body_of(response)
        if not isinstance(body, dict):
            return
        if seen.path == "/api/login" and response.status_code == 201:
            sub = jwt_sub(body.get("token"))
            if sub:
                self.ledger.browser[sub] = body["token"]
        elif (
            seen.path == "/api/users/me/sessions"
            and seen.method == "POST"
            and response.status_code == 201
        ):
            self.ledger.scoped.add(body.get("token"))
        elif seen.path == "/_mock/users" and seen.method == "POST" and body.get("staff"):
            self.ledger.staff.add(str(body.get("id")))
        elif seen.path.startswith("/_mock/killswitches/") and isinstance(seen.body, dict):
            switch = int(seen.path.rsplit("/", 1)[1])
            if seen.body.get("state"):
                self.ledger.switches_on.add(switch)
            else:
                self.ledger.switches_on.discard(switch)
        elif seen.path == "/_mock/reset":
            self.ledger.switches_on.clear()
