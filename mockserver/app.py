"""The Flask app factory: it only builds (state, stores, routes, handlers) and serves nothing
itself; requests go through :mod:`mockserver.api` and :mod:`mockserver.control`.

    app = create_app({"STRICT_RESPONSES": True})
    client = app.test_client()
    client.post("/api/login", json={"username": "alice", "password": "password"})

Per-app state lives in ``app.extensions["cumulonimbus"]`` (a :class:`MockState`).
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, request
from werkzeug.datastructures import Headers
from werkzeug.exceptions import HTTPException

from .api import API_METHODS, ApiFastPath, dispatch
from .clock import Clock
from .httpio import CACHE_CONTROL, error_response, finish_headers
from .journal import Journal
from .models import Backend
from .policies import Context, build_pipeline
from .profiles import ProfileError, load_all
from .records import SeedUser
from .seed import demo_users
from .spec import load_spec
from .state import EXTENSION, MockState, mock_state
from .validation import SpecValidator
from .views import VIEWS

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


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(DEFAULTS)
    app.config.update(config or {})
    if app.config["REDIS_URL"] and app.config["STATE_FILE"]:
        raise ValueError("use either a state file or Redis, not both")
    # /api requests skip Flask's request machinery (see ApiFastPath); the rest is Flask's.
    app.wsgi_app = ApiFastPath(app, app.wsgi_app)  # type: ignore[method-assign]
    app.extensions[EXTENSION] = _build_state(app)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    _add_routes(app)
    _add_handlers(app)
    return app


def _build_state(app: Flask) -> MockState:
    """The one state of this app, in memory, on Redis (``REDIS_URL``) or restored from a
    state file (``STATE_FILE``)."""
    config = app.config
    spec = load_spec(config["SPEC_PATH"])
    seed = config["SEED_USERS"]
    journal_size = int(config["JOURNAL_SIZE"])
    clock = config["CLOCK"] or Clock()
    redis_client: Any = None
    limiter: Any = None
    journal = Journal(journal_size)
    if config["REDIS_URL"]:
        from .redislimiter import RedisRateLimiter
        from .rediswire import RedisJournal, connect

        prefix = config["REDIS_PREFIX"]
        redis_client = connect(config["REDIS_URL"])
        limiter = RedisRateLimiter(redis_client, prefix, clock, spec.burst_limit, spec.burst_window)
        journal = RedisJournal(redis_client, f"{prefix}:journal", journal_size)
    backend = Backend(
        spec,
        clock,
        demo_users() if seed is None else seed,
        issuer=config["ISSUER"],
        limiter=limiter,
    )
    validator = SpecValidator(spec.document)
    profiles = _load_profiles(spec, config["PROFILE"])
    state = MockState(
        spec=spec,
        backend=backend,
        validator=validator,
        strict=bool(config["STRICT_RESPONSES"]),
        journal=journal,
        pipeline=build_pipeline(spec),  # refuses a spec whose x-policy-order is not a pipeline
        context=Context(backend, validator, VIEWS, profiles),
    )
    if redis_client is not None:
        from .redislimiter import RedisRateLimiter
        from .redisstore import RedisState
        from .rediswire import RedisJournal

        assert isinstance(journal, RedisJournal)
        wire = limiter.wire if isinstance(limiter, RedisRateLimiter) else None
        shared = RedisState(redis_client, backend, config["REDIS_PREFIX"], journal, wire)
        shared.start()
        app.wsgi_app = shared.middleware(app.wsgi_app)  # type: ignore[method-assign]
    if config["STATE_FILE"]:
        from .persistence import StateFile, StateWriter, restore

        store = StateFile(config["STATE_FILE"])
        restore(backend, store)  # raises StateFileError rather than overwrite a bad file
        state.writer = StateWriter(backend, store, float(config["STATE_INTERVAL"])).start()
    # The command line decides how the mock runs, whatever a state file remembered.
    backend.set_profile(config["PROFILE"])
    return state


def _load_profiles(spec: Any, wanted: str | None) -> dict[str, Any]:
    """Every shipped profile; one that cannot be applied, or an unknown ``PROFILE``,
    stops the mock here rather than at the first request it would change."""
    profiles = load_all(spec)
    if wanted is not None and wanted not in profiles:
        raise ProfileError(f"unknown profile {wanted!r} (known: {', '.join(profiles)})")
    return profiles


def _add_routes(app: Flask) -> None:
    # The service's router does not merge slashes, so `/api//users/...` is an unknown
    # path (a JSON 404), not a redirect with an HTML body.
    app.url_map.merge_slashes = False
    methods = sorted(API_METHODS)
    app.add_url_rule("/api", "api", dispatch, methods=methods, strict_slashes=False)
    app.add_url_rule("/api/<path:rest>", "api", dispatch, methods=methods)
    if app.config["CONTROL"]:
        from .control import blueprint, check_request
        from .dashboard import blueprint as dashboard

        app.before_request(check_request)  # every path under /_mock, known or not
        app.register_blueprint(blueprint)
        app.register_blueprint(dashboard)  # the pages at /_mock/ and /_mock/docs


def _add_handlers(app: Flask) -> None:
    @app.errorhandler(Exception)
    def _error(error: Exception) -> Response | HTTPException:
        if isinstance(error, HTTPException) and (error.code is None or error.code < 400):
            return error  # a redirect (/_mock to /_mock/), not an error
        # A Redis error in the control API or a page: RedisState.middleware answers it
        # (503, the copy forgotten). Flask hands it here twice, the second time wrapped.
        cause = getattr(error, "original_exception", None) or error
        if isinstance(cause, app.extensions[EXTENSION].backend.shared.passes):
            raise cause
        return error_response(error)

    app.after_request(_common_headers)


def _common_headers(response: Response) -> Response:
    if request.path == "/_mock" or request.path.startswith("/_mock/"):
        # Same origin only: no CORS headers, so no other origin can read an answer.
        response.headers["Cache-Control"] = CACHE_CONTROL
        return response
    # The API allows any origin with `*`, as the service does (observed row 5).
    api = request.path == "/api" or request.path.startswith("/api/")
    origin = None if api else request.headers.get("Origin")
    response.headers = Headers(finish_headers(response.headers.to_wsgi_list(), origin))
    return response


__all__ = ["MockState", "SeedUser", "create_app", "mock_state"]
