"""The Flask app factory: the API under ``/api`` (routes from the spec) and the control API.

    app = create_app({"STRICT_RESPONSES": True})
    client = app.test_client()
    client.post("/api/login", json={"username": "alice", "password": "password"})

Per-app state lives in ``app.extensions["cumulonimbus"]`` (a :class:`MockState`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import BadRequest, HTTPException
from werkzeug.wrappers import Request

from . import exceptions as err
from .clock import Clock
from .inputs import parse_json
from .journal import Journal
from .models import Backend, SeedUser
from .policies import Call, Context, Pipeline, build_pipeline
from .profiles import ProfileAnswer, ProfileError, load_all
from .seed import demo_users
from .spec import Spec, load_spec
from .validation import SpecValidator
from .views import VIEWS

log = logging.getLogger("cumulonimbus-mock")

CACHE_CONTROL = "no-cache, no-store, must-revalidate"
# What the service exposes to scripts on other origins (observed rows 5-7): not Reason
# nor Skipped, so a front end cannot rely on those in a browser.
EXPOSED_RATELIMIT_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")
# TRACE too: a method a path lacks is an unknown endpoint counted in the global bucket,
# whichever method it is (contract section 7).
API_METHODS = frozenset(("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "TRACE"))
CORS_HEADERS = {
    "Access-Control-Allow-Methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": (
        "Authorization, Content-Type, X-Session-Name, X-Requested-With, Accept, Cache-Control"
    ),
    "Access-Control-Expose-Headers": ", ".join(EXPOSED_RATELIMIT_HEADERS),
    "Access-Control-Max-Age": "600",
}
DEFAULTS: dict[str, Any] = {
    "SPEC_PATH": None,
    "SEED_USERS": None,  # list[SeedUser]; None means the demo users
    "STRICT_RESPONSES": False,
    "CONTROL": True,
    "CONTROL_TOKEN": None,
    "CONTROL_HOSTS": (),  # Host names the control API accepts besides the loopback ones
    "JOURNAL_SIZE": 500,
    "MAX_CONTENT_LENGTH": 1024 * 1024,
    "ISSUER": "localhost",
    "CLOCK": None,
    "STATE_FILE": None,  # keep users, sessions, switches and the key on disk
    "STATE_INTERVAL": 0.5,
    "REDIS_URL": None,  # share all state with other workers through this Redis
    "REDIS_PREFIX": "cumulonimbus-mock",
    # A behaviour profile (openapi/profiles/NAME.yaml): answer like that deployed version
    # of the service, bugs included, instead of like the contract (--as-deployed NAME).
    "PROFILE": None,
}


@dataclass
class MockState:
    spec: Spec
    backend: Backend
    validator: SpecValidator
    strict: bool
    journal: Journal
    pipeline: Pipeline
    context: Context
    writer: Any = None  # a persistence.StateWriter with --state

    def record(self, entry: dict[str, Any]) -> None:
        self.journal.append(entry)


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(DEFAULTS)
    app.config.update(config or {})
    # /api requests skip Flask's request machinery (see ApiFastPath); the rest is Flask's.
    app.wsgi_app = ApiFastPath(app, app.wsgi_app)  # type: ignore[method-assign]
    spec = load_spec(app.config["SPEC_PATH"])
    clock = app.config["CLOCK"] or Clock()
    seed = app.config["SEED_USERS"]
    journal_size = int(app.config["JOURNAL_SIZE"])
    redis_client, limiter, journal = None, None, Journal(journal_size)
    if app.config["REDIS_URL"]:
        if app.config["STATE_FILE"]:
            raise ValueError("use either a state file or Redis, not both")
        from .redisstore import RedisJournal, RedisRateLimiter, connect

        prefix = app.config["REDIS_PREFIX"]
        redis_client = connect(app.config["REDIS_URL"])
        limiter = RedisRateLimiter(redis_client, prefix, clock, spec.burst_limit, spec.burst_window)
        journal = RedisJournal(redis_client, f"{prefix}:journal", journal_size)
    backend = Backend(
        spec,
        clock,
        demo_users() if seed is None else seed,
        issuer=app.config["ISSUER"],
        limiter=limiter,
    )
    validator = SpecValidator(spec.document)
    profiles = load_all(spec)  # a profile that cannot be applied stops the mock here
    if app.config["PROFILE"] is not None and app.config["PROFILE"] not in profiles:
        raise ProfileError(
            f"unknown profile {app.config['PROFILE']!r} (known: {', '.join(profiles)})"
        )
    state = MockState(
        spec=spec,
        backend=backend,
        validator=validator,
        strict=bool(app.config["STRICT_RESPONSES"]),
        journal=journal,
        pipeline=build_pipeline(spec),  # refuses a spec whose x-policy-order is not a pipeline
        context=Context(backend, validator, VIEWS, profiles),
    )
    if redis_client is not None:
        from .redisstore import RedisJournal, RedisRateLimiter, RedisState

        assert isinstance(journal, RedisJournal)
        wire = limiter.wire if isinstance(limiter, RedisRateLimiter) else None
        shared = RedisState(redis_client, backend, app.config["REDIS_PREFIX"], journal, wire)
        shared.start()
        app.wsgi_app = shared.middleware(app.wsgi_app)  # type: ignore[method-assign]
    app.extensions["cumulonimbus"] = state
    if app.config["STATE_FILE"]:
        from .persistence import StateFile, StateWriter, restore

        store = StateFile(app.config["STATE_FILE"])
        restore(backend, store)  # raises StateFileError rather than overwrite a bad file
        state.writer = StateWriter(backend, store, float(app.config["STATE_INTERVAL"])).start()
    # The command line decides how the mock runs, whatever a state file remembered.
    backend.set_profile(app.config["PROFILE"])
    app.json.sort_keys = False  # type: ignore[attr-defined]

    # The service's router does not merge slashes, so `/api//users/...` is an unknown
    # path (a JSON 404), not a redirect with an HTML body.
    app.url_map.merge_slashes = False
    methods = sorted(API_METHODS)
    app.add_url_rule("/api", "api", _dispatch, methods=methods, strict_slashes=False)
    app.add_url_rule("/api/<path:rest>", "api", _dispatch, methods=methods)

    if app.config["CONTROL"]:
        from .control import blueprint, check_request
        from .dashboard import blueprint as dashboard

        app.before_request(check_request)  # every path under /_mock, known or not
        app.register_blueprint(blueprint)
        app.register_blueprint(dashboard)  # the pages at /_mock/ and /_mock/docs

    @app.errorhandler(err.APIError)
    def _api_error(error: err.APIError) -> Response:
        return json_response(error.status, error.to_dict(), error.headers)

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException) -> Response | HTTPException:
        if error.code is None or error.code < 400:
            return error  # a redirect (/_mock to /_mock/), not an error
        return _http_error(error)

    @app.errorhandler(Exception)
    def _crash(error: Exception) -> Response:
        log.exception("unhandled error: %s", error)
        return json_response(500, err.InternalServerError().to_dict())

    @app.after_request
    def _common_headers(response: Response) -> Response:
        if request.path == "/_mock" or request.path.startswith("/_mock/"):
            # Same origin only: no CORS headers, so no other origin can read an answer.
            response.headers["Cache-Control"] = CACHE_CONTROL
            return response
        # The API allows any origin with `*`, as the service does (observed row 5).
        api = request.path == "/api" or request.path.startswith("/api/")
        return common_headers(response, None if api else request.headers.get("Origin"))

    return app


def common_headers(response: Response, origin: str | None) -> Response:
    headers = response.headers
    # One pass over the headers instead of a set or setdefault (a scan each) per header.
    present = {name.lower() for name in headers.keys()}  # noqa: SIM118
    if "cache-control" not in present:
        headers.add("Cache-Control", CACHE_CONTROL)
    elif headers.get("Cache-Control") != CACHE_CONTROL:
        headers["Cache-Control"] = CACHE_CONTROL
    if "access-control-allow-origin" in present:
        del headers["Access-Control-Allow-Origin"]
    headers.add("Access-Control-Allow-Origin", origin or "*")
    if origin:
        headers.add("Vary", "Origin")
    for name, value in CORS_HEADERS.items():
        if name.lower() not in present:
            headers.add(name, value)
    return response


class ApiFastPath:
    """WSGI middleware: requests that Flask would route to the API go straight to it.

    Flask's request context, routing and hooks cost about as much as the API's whole
    pipeline, so ``/api/...`` requests skip them: the same :func:`handle_api` answers,
    with the same error answers and headers Flask's handlers would give. Anything Flask
    might route differently (``/api`` itself, non-ASCII paths, other methods)
    goes to Flask as before, and so does everything outside ``/api``.
    """

    def __init__(self, app: Flask, wsgi_app: Any) -> None:
        self.app = app
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path: str = environ.get("PATH_INFO", "")
        if (
            len(path) <= 5
            or not path.startswith("/api/")
            or environ.get("REQUEST_METHOD") not in API_METHODS
            or not path.isascii()
        ):
            return self.wsgi_app(environ, start_response)
        request = Request(environ)
        request.max_content_length = self.app.config["MAX_CONTENT_LENGTH"]
        try:
            response = handle_api(self.app.extensions["cumulonimbus"], request, path[5:])
        except err.APIError as error:
            response = json_response(error.status, error.to_dict(), error.headers)
        except HTTPException as error:
            response = _http_error(error)
        except Exception as error:
            log.exception("unhandled error: %s", error)
            response = json_response(500, err.InternalServerError().to_dict())
        return self._send(response, environ, start_response)

    @staticmethod
    def _send(response: Response, environ: dict[str, Any], start_response: Any) -> Any:
        """What ``common_headers`` and werkzeug's ``Response.__call__`` would send, built
        as one list: editing werkzeug's Headers one by one costs a third of a request."""
        headers = response.headers.to_wsgi_list()
        present = {name.lower() for name, _ in headers}
        if "cache-control" not in present:
            headers.append(("Cache-Control", CACHE_CONTROL))
        headers = [(n, v) for n, v in headers if n.lower() != "access-control-allow-origin"]
        # Any origin, with `*` as the service answers (observed row 5).
        headers.append(("Access-Control-Allow-Origin", "*"))
        headers.extend((n, v) for n, v in CORS_HEADERS.items() if n.lower() not in present)
        body = response.get_data()
        if response.status_code == 204:  # no body, so no length either (RFC 9110 8.6)
            headers = [(n, v) for n, v in headers if n.lower() != "content-length"]
        elif "content-length" not in present:
            headers.append(("Content-Length", str(len(body))))
        start_response(response.status, headers)
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]


def _http_error(error: HTTPException) -> Response:
    """The answer to an HTTP error werkzeug or Flask raised on the way (a 416 for a bad
    Range, say): its own status, in the API's error format, never an HTML page."""
    if error.code in (404, 405):
        return unknown_endpoint()
    if error.code == 413:
        return json_response(413, err.PayloadTooLarge().to_dict())
    status = error.code if error.code is not None and 400 <= error.code < 600 else 500
    name = (error.name or "Error").upper().replace(" ", "_").replace("'", "")
    code = name if name.endswith("_ERROR") else name + "_ERROR"
    return json_response(status, {"code": code, "message": error.name}, _headers_of(error))


def _headers_of(error: HTTPException) -> dict[str, str]:
    # Headers the error itself carries (Content-Range of a 416, Allow of a 405).
    return {
        name: value
        for name, value in error.get_headers()
        if name.lower() not in ("content-type", "content-length")
    }


def unknown_endpoint() -> Response:
    """The answer to a path outside the API (or a 404/405 raised before the pipeline ran).
    Unknown paths *under* ``/api`` never come here: the pipeline's ``routing`` step answers
    them, counted in the global bucket as the service does (observed rows 3-4)."""
    return json_response(404, err.InvalidEndpoint().to_dict(), {"RateLimit-Skipped": "true"})


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    # ASCII escapes: a string may hold a lone surrogate (JSON allows "\\ud800"), which
    # would not encode as UTF-8.
    data = json.dumps(body, separators=(",", ":"))
    listed = [("Content-Type", "application/json"), ("Cache-Control", CACHE_CONTROL)]
    if headers:
        listed.extend(headers.items())
    return Response(data, status=status, headers=listed)


def mock_state() -> MockState:
    from flask import current_app

    state: MockState = current_app.extensions["cumulonimbus"]
    return state


def client_ip(request: Request = request) -> str:
    forwarded = request.headers.get("X-Forwarded-For", "")
    first = forwarded.split(",")[0].strip()
    return first or request.remote_addr or "unknown"


def _read_body(request: Request) -> dict[str, Any]:
    """The JSON body as an object; anything else counts as an empty body (fields missing).

    Like the real service's JSON parser, a body that is not sent as JSON is not read.
    """
    if "json" not in (request.mimetype or ""):
        return {}
    raw = _body_bytes(request)
    if not raw:
        return {}
    try:
        body = parse_json(raw)
    except ValueError:  # not JSON, or nested deeper than any body of the API
        return {}
    return _trim(body) if isinstance(body, dict) else {}


def _body_bytes(request: Request) -> bytes:
    """The request body; a body cut short (a Content-Length larger than what came) is
    treated as no body, which earns the operation's MISSING_FIELDS_ERROR, not a 500."""
    try:
        return request.get_data(cache=True)
    except BadRequest:
        return b""


def _trim(value: Any) -> Any:
    # The real service trims leading and trailing white space of string fields.
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, dict):
        return {k: _trim(v) if isinstance(v, str | dict) else v for k, v in value.items()}
    return value


def _dispatch(rest: str = "") -> Response:
    return handle_api(mock_state(), request, rest)


def handle_api(state: MockState, request: Request, rest: str) -> Response:
    """One request under ``/api/``: the pipeline (routing included), rate-limit headers,
    strict check and journal. Needs no Flask request context."""
    started = time.perf_counter()
    state.backend.prune_a_little()
    if request.method == "OPTIONS":
        # CORS preflight: no body, not counted; CORS headers come from common_headers.
        preflight = Response(status=204)
        del preflight.headers["Content-Type"]
        return preflight
    limit = request.max_content_length
    if limit is not None and (request.content_length or 0) > limit:
        # Refused before anything runs, whether or not the operation takes a body.
        return json_response(413, err.PayloadTooLarge().to_dict())
    backend = state.backend
    call = Call(
        method=request.method,
        path="/" + rest,
        query=request.args,
        headers=request.headers,
        ip=client_ip(request),
        identity=backend.authenticate(request.headers.get("Authorization", "").strip() or None),
        read_body=lambda: _read_body(request),
        read_raw=lambda: (request.mimetype or "", _body_bytes(request)),
    )
    extra: dict[str, str] = {}
    profiled: ProfileAnswer | None = None
    try:
        status, body = state.pipeline.run(call, state.context)
    except ProfileAnswer as answer:
        profiled = answer
        status, body, extra = answer.status, answer.to_dict(), dict(answer.headers)
    except err.APIError as error:
        status, body, extra = error.status, error.to_dict(), dict(error.headers)
    except Exception as error:  # never a bare crash: a JSON 500, and the cause in the log
        log.exception("unhandled error in %s %s: %s", call.method, call.path, error)
        status, body = 500, err.InternalServerError().to_dict()
    if status >= 400:
        for take_back in call.undo:
            take_back()

    # All headers are known before the response exists: werkzeug's Headers are cheap to
    # build from a list and dear to edit one by one.
    code = body.get("code") if isinstance(body, dict) else None
    if profiled is not None and not profiled.counted:
        # Answered before any limiter saw it: no RateLimit-* header at all.
        for ticket in call.tickets:
            backend.limiter.release(ticket)
    else:
        for ticket in call.tickets:
            extra.update(backend.limiter.settle(ticket, status, code))
    if "RateLimit-Limit" in extra and status != 429:
        extra.pop("RateLimit-Skipped", None)
    if profiled is not None and profiled.html:
        response = Response(
            profiled.page(),
            status=status,
            headers=[("Cache-Control", CACHE_CONTROL), *extra.items()],
            content_type="text/html; charset=utf-8",
        )
    else:
        response = json_response(status, body, extra)

    # A profile answers as the service does, which the spec deliberately does not describe.
    if state.strict and call.op is not None and not call.profiled:
        response = _strict(state, call, response)
    _journal(state, request, call.op.operation_id if call.op else None, response, started)
    return response


def _strict(state: MockState, call: Call, response: Response) -> Response:
    response.headers["Cache-Control"] = CACHE_CONTROL
    problem = state.validator.check_response(
        call.operation,
        "/api" + call.path,
        call.query,
        call.headers,
        call.body if call.operation.has_body else None,
        response.status_code,
        response.get_data(),
        response.headers,
    )
    if problem is None:
        return response
    log.error(
        "STRICT: %s %s -> %s breaks the spec: %s",
        call.method,
        call.path,
        response.status_code,
        problem,
    )
    failed = json_response(500, err.InternalServerError().to_dict())
    failed.headers["X-Mock-Strict-Violation"] = problem[:500].encode("ascii", "replace").decode()
    return failed


def _journal(
    state: MockState,
    request: Request,
    operation_id: str | None,
    response: Response,
    started: float,
) -> None:
    # Bodies and headers are kept raw and made readable only when someone reads the
    # journal (see journal.readable): recording sits on every request's path.
    environ = request.environ
    has_body = request.content_length or "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "")
    raw = _body_bytes(request) if has_body else b""
    request_body: Any = (raw if len(raw) <= 4096 else "<large body>") if raw else None
    state.record(
        {
            "time": state.backend.clock.now(),
            "method": request.method,
            "path": request.path,
            "query": request.query_string.decode("latin-1"),
            "ip": client_ip(request),
            "operationId": operation_id,
            "status": response.status_code,
            "durationMs": round((time.perf_counter() - started) * 1000, 3),
            "requestHeaders": [
                (k, v) for k, v in environ.items() if k[:5] == "HTTP_" and k != "HTTP_AUTHORIZATION"
            ],
            "requestBody": request_body,
            "responseHeaders": response.headers.to_wsgi_list(),
            "responseBody": response.get_data(),
        }
    )


__all__ = ["MockState", "SeedUser", "create_app", "json_response", "mock_state"]
