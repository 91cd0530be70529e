"""The proxy's control side, a small Flask app: the dashboard page at ``/_mock/`` and the
violations found so far at ``/_mock/violations`` (read, or cleared with DELETE), behind
the same loopback and token guard as the mock's control API.
"""

from __future__ import annotations

import hmac
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, request, send_from_directory

from .. import exceptions as err
from ..control import guard

if TYPE_CHECKING:
    from .forwarding import Proxy

CACHE_CONTROL = "no-cache, no-store, must-revalidate"


def control_app(proxy: Proxy, control_token: str | None) -> Flask:
    """The control side's WSGI app, for `proxy`."""
    static = Path(__file__).resolve().parent.parent / "static"
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
