"""The control API under ``/_mock`` (see ``openapi/control.yaml``): reset, users, kill
switches, clock, rate-limit buckets and the request journal.

Only the developer's own tools may drive it, never a web page they happen to have open:
everything under ``/_mock`` refuses a request whose ``Host`` is not a loopback name (or
the address the mock was told to bind), which defeats DNS rebinding, and one whose
``Origin`` is another origin than the mock's own, which defeats cross-site requests
(even those a browser sends without asking, like a form's POST). It sends no CORS
headers, so no other origin can read it either. ``/api`` is not affected: the real
service answers any origin.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import math
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, request

from . import exceptions as err
from .clock import Clock
from .httpio import json_response
from .inputs import decimal, parse_json
from .records import SeedUser, iso
from .state import mock_state

blueprint = Blueprint("control", __name__, url_prefix="/_mock")


def _json(status: int, body: Any) -> Response:
    return json_response(status, body)


def _body() -> dict[str, Any]:
    try:
        data = parse_json(request.get_data(cache=True)) if request.is_json else None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise err.ControlBadRequest("the body must be a JSON object")
    return data


LOOPBACK_NAMES = frozenset(("localhost", "localhost.localdomain", "ip6-localhost"))


def guard(host: str | None, origin: str | None, allowed: frozenset[str] = frozenset()) -> None:
    """Refuse a control request from anywhere but this machine's own tools.

    ``host`` is the request's ``Host`` header, ``origin`` its ``Origin`` header (None
    when absent, as from curl, scripts and same-origin GETs); ``allowed`` adds names
    besides the loopback ones (the address given to ``--host``).
    """
    name = _host_name(host or "")
    if name is None or not (_is_loopback(name) or name in allowed):
        raise err.ForeignHost()
    if origin is not None:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or parts.netloc.lower() != (host or "").lower():
            raise err.ForeignOrigin()


def _host_name(host: str) -> str | None:
    """The name in a Host header, without its port; None if it is not one."""
    host = host.strip().lower()
    if host.startswith("["):
        name, bracket, rest = host[1:].partition("]")
        if not bracket or (rest and not (rest[:1] == ":" and rest[1:].isdigit())):
            return None
        return name
    name, _, port = host.partition(":")
    if port and not port.isdigit():
        return None
    return name.rstrip(".") or None


def _is_loopback(name: str) -> bool:
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_request() -> None:
    """Flask hook for everything under /_mock (the dashboard's pages too)."""
    if request.path == "/_mock" or request.path.startswith("/_mock/"):
        guard(
            request.headers.get("Host"),
            request.headers.get("Origin"),
            frozenset(current_app.config.get("CONTROL_HOSTS") or ()),
        )


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
    state = mock_state()
    state.backend.reset()
    state.journal.clear()
    state.validator.violations.clear()
    return _json(200, {"ok": True})


def _profile_body() -> dict[str, Any]:
    state = mock_state()
    name = state.backend.profile
    return {
        "profile": name,
        "available": sorted(state.context.profiles),
        "deviations": state.context.profiles[name].summary()["deviations"] if name else [],
    }


@blueprint.route("/profile", methods=["GET"])
def get_profile() -> Response:
    return _json(200, _profile_body())


@blueprint.route("/profile", methods=["PUT"])
def set_profile() -> Response:
    """Switch the behaviour profile at run time; ``null`` goes back to the contract."""
    body = _body()
    name = body.get("profile", ...)
    if set(body) != {"profile"} or not (name is None or isinstance(name, str)):
        raise err.ControlBadRequest('give {"profile": NAME} or {"profile": null}')
    known = mock_state().context.profiles
    if name is not None and name not in known:
        raise err.ControlBadRequest(
            f"unknown profile {name!r}; known: {', '.join(sorted(known)) or 'none'}"
        )
    mock_state().backend.set_profile(name)
    return _json(200, _profile_body())


@blueprint.route("/users", methods=["GET"])
def list_users() -> Response:
    backend = mock_state().backend
    with backend.lock:
        backend.prune()
        now = backend.clock.now()
        items = [user.to_control(now) for user in backend.users.values()]
    return _json(200, {"count": len(items), "items": items})


@blueprint.route("/users", methods=["POST"])
def create_user() -> Response:
    backend = mock_state().backend
    try:
        seed = SeedUser.from_dict(_body())
    except ValueError as error:
        raise err.ControlBadRequest(str(error)) from error
    user, generated = backend.add_user(seed)
    body = user.to_control(backend.clock.now())
    if generated:
        body["backupCodes"] = generated
    return _json(201, body)


@blueprint.route("/users/<username>", methods=["PATCH"])
def change_user(username: str) -> Response:
    """Ban or unban a user who may already hold sessions (a banned account cannot log in)."""
    backend = mock_state().backend
    banned = _body().get("banned")
    if not isinstance(banned, bool):
        raise err.ControlBadRequest("banned must be true or false")
    user = backend.set_banned(username, banned)
    return _json(200, user.to_control(backend.clock.now()))


@blueprint.route("/users/<username>", methods=["DELETE"])
def delete_user(username: str) -> Response:
    mock_state().backend.delete_user(username)
    return _json(200, {"ok": True})


@blueprint.route("/killswitches", methods=["GET"])
def list_kill_switches() -> Response:
    return _json(200, mock_state().backend.kill_switch_list())


@blueprint.route("/killswitches/<switch>", methods=["PUT"])
def set_kill_switch(switch: str) -> Response:
    backend = mock_state().backend
    number = decimal(switch)
    if number is None or number not in backend.kill_switches:
        return _json(404, {"code": "INVALID_KILLSWITCH_ERROR", "message": "Invalid Kill Switch"})
    state = _body().get("state")
    if not isinstance(state, bool):
        raise err.ControlBadRequest("state must be true or false")
    return _json(200, backend.set_kill_switch(number, state))


def _clock_body() -> dict[str, Any]:
    clock = mock_state().backend.clock
    now = clock.now()
    return {"now": now, "iso": iso(now), "offset": clock.offset, "frozen": clock.frozen}


@blueprint.route("/clock", methods=["GET"])
def get_clock() -> Response:
    return _json(200, _clock_body())


@blueprint.route("/clock", methods=["POST"])
def move_clock() -> Response:
    body = _body()
    clock = mock_state().backend.clock
    known = {"advance", "set", "frozen"}
    if not body or set(body) - known:
        raise err.ControlBadRequest(
            "give one or more of: advance (seconds), set (epoch seconds), frozen"
        )
    moves: dict[str, float] = {}
    for name in ("advance", "set"):
        if name in body:
            value = body[name]
            number = math.nan
            if isinstance(value, int | float) and not isinstance(value, bool):
                # OverflowError: an integer beyond any float; 1e400 parses as infinity.
                with contextlib.suppress(OverflowError):
                    number = float(value)
            if not math.isfinite(number) or number < 0:
                raise err.ControlBadRequest(f"{name} must be a number of seconds, 0 or more")
            moves[name] = number
    if "frozen" in body and not isinstance(body["frozen"], bool):
        raise err.ControlBadRequest("frozen must be true or false")
    # Checked before anything moves, so a refused request leaves the clock as it was.
    try:
        Clock.check(moves.get("set", clock.now()) + moves.get("advance", 0.0))
    except ValueError as error:
        raise err.ControlBadRequest(str(error)) from error
    if "frozen" in body:
        clock.freeze(body["frozen"])
    if "set" in moves:
        clock.set(moves["set"])
    if "advance" in moves:
        clock.advance(moves["advance"])
    return _json(200, _clock_body())


@blueprint.route("/ratelimits", methods=["GET"])
def list_rate_limits() -> Response:
    items = mock_state().backend.rate_limit_buckets()
    return _json(200, {"count": len(items), "items": items})


@blueprint.route("/ratelimits", methods=["DELETE"])
def clear_rate_limits() -> Response:
    mock_state().backend.clear_rate_limits()
    return _json(200, {"ok": True})


@blueprint.route("/requests", methods=["GET"])
def list_requests() -> Response:
    state = mock_state()
    limit = decimal(request.args.get("limit", "100"))
    if limit is None or not 1 <= limit <= 1000:
        raise err.ControlBadRequest("limit must be an integer from 1 to 1000")
    items = state.journal.items(limit)
    return _json(200, {"count": len(items), "items": items})


@blueprint.route("/requests", methods=["DELETE"])
def clear_requests() -> Response:
    mock_state().journal.clear()
    return _json(200, {"ok": True})
