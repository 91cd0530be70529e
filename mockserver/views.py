"""The operations, one function each, keyed by the spec's operationId.

Views are thin: read the call, ask the backend, return (status, body). Policies have
already run (see :mod:`mockserver.policies`).
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Any

from . import exceptions as err
from .httpio import keyed
from .models import Backend
from .policies import Call
from .records import User
from .useragent import session_name

View = Callable[[Call, Backend], tuple[int, dict[str, Any]]]
VIEWS: dict[str, View] = {}

DELETE_SESSION = {"code": "DELETE_SESSION_SUCCESS", "message": "Session Successfully Deleted"}


def view(func: View) -> View:
    VIEWS[func.__name__] = func
    return func


def _me(call: Call) -> tuple[User, str]:
    assert call.identity is not None
    return call.identity.user, call.identity.session.id


def _target(call: Call, backend: Backend) -> User:
    """The user a staff operation names; 404 for an unknown id."""
    user = backend.users.get(call.args["uid"])
    if user is None:
        raise err.InvalidUser()
    return user


def _page(call: Call, backend: Backend, user: User) -> tuple[int, dict[str, Any]]:
    query = call.query
    # `in` first: MultiDict.get of an absent name raises and catches werkzeug's
    # BadRequestKeyError, an HTTPException built on every page without an offset.
    limit = int(query["limit"]) if "limit" in query else 50
    offset = int(query["offset"]) if "offset" in query else 0
    count, sessions = backend.session_page(user, offset, limit)
    # The ids and names wholly determine the page: its body is built and encoded once.
    ids = tuple(map(_ID, sessions))
    names = tuple(map(_NAME, sessions))
    items = zip(ids, names, strict=True)
    return 200, keyed(
        ("sessions", count, ids, names),
        lambda: {"count": count, "items": [{"id": i, "name": n} for i, n in items]},
    )


_ID = attrgetter("id")
_NAME = attrgetter("name")


def _ids(call: Call) -> list[str]:
    # More than 50 ids was refused by validation (the spec's maxItems): BODY_TOO_LARGE.
    return [i.strip() for i in call.body["ids"]]


def _deleted(count: int) -> tuple[int, dict[str, Any]]:
    return 200, {
        "code": "DELETE_SESSIONS_SUCCESS",
        "message": "Sessions Successfully Deleted",
        "count": count,
    }


def _name(call: Call) -> str:
    return session_name(call.headers.get("User-Agent"), call.headers.get("X-Session-Name"))


@view
def getHello(call: Call, backend: Backend) -> tuple[int, dict[str, Any]]:
    # The version of the service the spec models, not this project's.
    return 200, {"hello": "world", "version": backend.spec.service_version}


@view
def login(call: Call, backend: Backend) -> tuple[int, dict[str, Any]]:
    answer = call.body.get("2fa")
    if isinstance(answer, dict):
        user = backend.answer_challenge(answer, undo=call.undo)
        if user.banned:  # banned since the challenge was issued
            raise err.Banned()
    else:
        user = backend.login(call.body["username"], call.body["password"])
    token, session = backend.create_session(
        user, _name(call), bool(call.body.get("rememberMe")), permission_flags=None
    )
    return 201, {"token": token, "exp": session.exp}


@view
def createScopedSession(call: Call, backend: Backend) -> tuple[int, dict[str, Any]]:
    user, _ = _me(call)
    name = call.body["name"]
    token, session = backend.create_session(
        user,
        name,
        bool(call.body.get("longLived")),
        # JSON Schema counts 32.0 as an integer; the session must hold the int.
        permission_flags=int(call.body["permissionFlags"]),
    )
    return 201, {"token": token, **session.to_api(), "usedAt": None}


@view
def getSelfSession(call: Call, backend: Backend) -> tuple[int, dict[str, Any]]:
    user, current = _me(call)
    sid = current if call.args["sid"] == "me" else call.args["sid"]
    return 200, backend.get_session(user, sid).to_api()


@view
def getUserSession(call: Call, backend: Backend) -> tuple[int, dict[str, Any]]:
    return 200, backend.get_session(_target(call, backend), call.args["sid"]).to_api()


@view
def getSelfSessions(call: Call, backend: Backend) -> tuple[int, dict[str, Any]]:
    return _page(call, backend, _me(call)[0])


@view
def getUserSessions(call: Call, backend: Backend) -> tuple[int, dict[str, Any]]:
    return _page(call, backend, _target(call, backend))


@view
def deleteSelfSession(call: Call, backend: Backend) -> tuple[int, dict[str, Any]]:
    user, current = _me(call)
    backend.delete_session(user, current if call.args["sid"] == "me" else call.args["sid"])
    return 200, dict(DELETE_SESSION)


@view
def deleteUserSession(call: Call, backend: Backend) -> tuple[int, dict[str, Any]]:
    backend.delete_session(_target(call, backend), call.args["sid"])
    return 200, dict(DELETE_SESSION)


@view
def deleteSelfSessions(call: Call, backend: Backend) -> tuple[int, dict[str, Any]]:
    user, current = _me(call)
    ids = [current if i == "me" else i for i in _ids(call)]
    return _deleted(backend.delete_sessions(user, ids))


@view
def deleteUserSessions(call: Call, backend: Backend) -> tuple[int, dict[str, Any]]:
    user = _target(call, backend)
    return _deleted(backend.delete_sessions(user, _ids(call)))


@view
def deleteAllSelfSessions(call: Call, backend: Backend) -> tuple[int, dict[str, Any]]:
    user, current = _me(call)
    include_self = call.query.get("include-self", "false") == "true"
    return _deleted(backend.delete_all_sessions(user, keep=None if include_self else current))


@view
def deleteAllUserSessions(call: Call, backend: Backend) -> tuple[int, dict[str, Any]]:
    return _deleted(backend.delete_all_sessions(_target(call, backend)))


@view
def getKillSwitches(call: Call, backend: Backend) -> tuple[int, dict[str, Any]]:
    return 200, backend.kill_switch_list()


@view
def enableKillSwitch(call: Call, backend: Backend) -> tuple[int, dict[str, Any]]:
    return 200, backend.set_kill_switch(int(call.args["id"]), True)


@view
def disableKillSwitch(call: Call, backend: Backend) -> tuple[int, dict[str, Any]]:
    return 200, backend.set_kill_switch(int(call.args["id"]), False)


@view
def disableAllKillSwitches(call: Call, backend: Backend) -> tuple[int, dict[str, Any]]:
    return 200, backend.set_all_kill_switches(False)
