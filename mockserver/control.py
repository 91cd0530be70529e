"""The control API under ``/_mock`` (see ``openapi/control.yaml``): reset, users, kill
switches, clock, rate-limit buckets and the request journal."""

from __future__ import annotations

import hmac
from typing import Any

from flask import Blueprint, Response, current_app, request

from . import exceptions as err
from .models import SeedUser, iso

blueprint = Blueprint("control", __name__, url_prefix="/_mock")


def _state() -> Any:
    return current_app.extensions["cumulonimbus"]


def _json(status: int, body: Any) -> Response:
    from .app import json_response

    return json_response(status, body)


def _body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise err.ControlBadRequest("the body must be a JSON object")
    return data


@blueprint.before_request
def _check_token() -> None:
    if request.method == "OPTIONS":
        return
    expected = current_app.config.get("CONTROL_TOKEN")
    given = request.headers.get("X-Mock-Token", "")
    if expected and not hmac.compare_digest(given.encode(), str(expected).encode()):
        raise err.InvalidMockToken()


@blueprint.route("/reset", methods=["POST"])
def reset() -> Response:
    state = _state()
    state.backend.reset()
    state.journal.clear()
    state.validator.violations.clear()
    return _json(200, {"ok": True})


@blueprint.route("/users", methods=["GET"])
def list_users() -> Response:
    backend = _state().backend
    with backend.lock:
        backend.prune()
        now = backend.clock.now()
        items = [user.to_control(now) for user in backend.users.values()]
    return _json(200, {"count": len(items), "items": items})


@blueprint.route("/users", methods=["POST"])
def create_user() -> Response:
    backend = _state().backend
    try:
        seed = SeedUser.from_dict(_body())
    except ValueError as error:
        raise err.ControlBadRequest(str(error)) from error
    user, generated = backend.add_user(seed)
    body = user.to_control(backend.clock.now())
    if generated:
        body["backupCodes"] = generated
    return _json(201, body)


@blueprint.route("/users/<username>", methods=["DELETE"])
def delete_user(username: str) -> Response:
    _state().backend.delete_user(username)
    return _json(200, {"ok": True})


@blueprint.route("/killswitches", methods=["GET"])
def list_kill_switches() -> Response:
    return _json(200, _state().backend.kill_switch_list())


@blueprint.route("/killswitches/<switch>", methods=["PUT"])
def set_kill_switch(switch: str) -> Response:
    backend = _state().backend
    if not switch.isdigit() or int(switch) not in backend.kill_switches:
        return _json(404, {"code": "INVALID_KILLSWITCH_ERROR", "message": "Invalid Kill Switch"})
    state = _body().get("state")
    if not isinstance(state, bool):
        raise err.ControlBadRequest("state must be true or false")
    return _json(200, backend.set_kill_switch(int(switch), state))


def _clock_body() -> dict[str, Any]:
    clock = _state().backend.clock
    now = clock.now()
    return {"now": now, "iso": iso(now), "offset": clock.offset, "frozen": clock.frozen}


@blueprint.route("/clock", methods=["GET"])
def get_clock() -> Response:
    return _json(200, _clock_body())


@blueprint.route("/clock", methods=["POST"])
def move_clock() -> Response:
    body = _body()
    clock = _state().backend.clock
    known = {"advance", "set", "frozen"}
    if not body or set(body) - known:
        raise err.ControlBadRequest(
            "give one or more of: advance (seconds), set (epoch seconds), frozen"
        )
    for name in ("advance", "set"):
        value = body.get(name)
        if name in body and (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or value < 0
            or value != value
        ):
            raise err.ControlBadRequest(f"{name} must be a number of seconds, 0 or more")
    if "frozen" in body and not isinstance(body["frozen"], bool):
        raise err.ControlBadRequest("frozen must be true or false")
    if "frozen" in body:
        clock.freeze(body["frozen"])
    if "set" in body:
        clock.set(float(body["set"]))
    if "advance" in body:
        clock.advance(float(body["advance"]))
    return _json(200, _clock_body())


@blueprint.route("/ratelimits", methods=["GET"])
def list_rate_limits() -> Response:
    items = _state().backend.limiter.buckets()
    return _json(200, {"count": len(items), "items": items})


@blueprint.route("/ratelimits", methods=["DELETE"])
def clear_rate_limits() -> Response:
    _state().backend.limiter.reset()
    return _json(200, {"ok": True})


@blueprint.route("/requests", methods=["GET"])
def list_requests() -> Response:
    state = _state()
    raw = request.args.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise err.ControlBadRequest("limit must be an integer from 1 to 1000")
    items = state.journal.items(int(raw))
    return _json(200, {"count": len(items), "items": items})


@blueprint.route("/requests", methods=["DELETE"])
def clear_requests() -> Response:
    _state().journal.clear()
    return _json(200, {"ok": True})
