"""Scoped sessions: creation, and the scope check on every operation."""

from __future__ import annotations

import pytest

from mockserver.spec import load_spec

from .conftest import Api, assert_error

SPEC = load_spec()
FLAGS = SPEC.permission_flags
# Operations a scoped session of an ordinary user can reach with the right flag.
SELF_OPS = [op for op in SPEC.operations.values() if op.scope in ("SESSION_READ", "SESSION_MODIFY")]
REQUESTS = {
    "getSelfSession": ("GET", "/users/me/sessions/me", None),
    "getSelfSessions": ("GET", "/users/me/sessions", None),
    "deleteSelfSession": ("DELETE", "/users/me/sessions/1000000000", None),
    "deleteSelfSessions": ("DELETE", "/users/me/sessions", {"ids": ["1000000000"]}),
    "deleteAllSelfSessions": ("DELETE", "/users/me/sessions/all", None),
}


def test_create_scoped_session_answers_201_with_the_session(api: Api) -> None:
    token = api.login()
    response = api.call(
        "POST", "/users/me/sessions", token,
        json={"name": " Upload Only Token ", "permissionFlags": 2, "password": "password"},
    )  # fmt: skip
    assert response.status_code == 201
    body = response.json
    assert body["name"] == "Upload Only Token"
    assert body["permissionFlags"] == 2
    assert body["usedAt"] is None
    assert body["exp"] - int(body["id"]) == 86400


def test_long_lived_scoped_session_lasts_10_years(api: Api) -> None:
    token = api.login()
    body = api.call(
        "POST", "/users/me/sessions", token,
        json={"name": "ci", "permissionFlags": 1, "longLived": True, "password": "password"},
    ).json  # fmt: skip
    assert body["exp"] - int(body["id"]) == 315576000


def test_create_scoped_session_without_password_is_400(api: Api) -> None:
    token = api.login()
    response = api.call(
        "POST", "/users/me/sessions", token, json={"name": "x", "permissionFlags": 2}
    )
    assert_error(response, 400, "MISSING_FIELDS_ERROR", "Missing Fields", fields=["password"])


def test_create_scoped_session_with_wrong_password_is_401(api: Api) -> None:
    token = api.login()
    response = api.call(
        "POST",
        "/users/me/sessions",
        token,
        json={"name": "x", "permissionFlags": 2, "password": "no"},
    )
    assert_error(response, 401, "INVALID_PASSWORD_ERROR", "Invalid Password")


def test_create_scoped_session_with_missing_fields_is_400(api: Api) -> None:
    token = api.login()
    response = api.call("POST", "/users/me/sessions", token, json={"password": "password"})
    assert_error(
        response, 400, "MISSING_FIELDS_ERROR", "Missing Fields", fields=["name", "permissionFlags"]
    )


@pytest.mark.parametrize("flags", [1, FLAGS["SESSION_READ"] | FLAGS["SESSION_MODIFY"], 2])
def test_scoped_sessions_may_not_create_sessions(api: Api, flags: int) -> None:
    scoped = api.scoped(api.login(), flags)
    response = api.call(
        "POST",
        "/users/me/sessions",
        scoped,
        json={"name": "x", "permissionFlags": 1, "password": "password"},
    )
    assert_error(response, 403, "INSUFFICIENT_PERMISSIONS_ERROR", "Insufficient Permissions")


@pytest.mark.parametrize("op", SELF_OPS, ids=[op.operation_id for op in SELF_OPS])
def test_scoped_session_without_the_flag_is_403(api: Api, op) -> None:  # type: ignore[no-untyped-def]
    other = FLAGS["SESSION_MODIFY"] if op.scope == "SESSION_READ" else FLAGS["SESSION_READ"]
    scoped = api.scoped(api.login(), other | FLAGS["UPLOAD_FILE"])
    method, path, body = REQUESTS[op.operation_id]
    response = api.call(method, path, scoped, json=body)
    assert_error(response, 403, "INSUFFICIENT_PERMISSIONS_ERROR", "Insufficient Permissions")


@pytest.mark.parametrize("grant", ["flag", "ALL"])
@pytest.mark.parametrize("op", SELF_OPS, ids=[op.operation_id for op in SELF_OPS])
def test_scoped_session_with_the_flag_or_all_passes(api: Api, op, grant: str) -> None:  # type: ignore[no-untyped-def]
    scoped = api.scoped(api.login(), FLAGS[op.scope if grant == "flag" else "ALL"])
    method, path, body = REQUESTS[op.operation_id]
    response = api.call(method, path, scoped, json=body)
    assert response.status_code in (200, 404), response.json  # 404: the id is unknown, scope passed
    if response.status_code == 404:
        assert response.json["code"] == "INVALID_SESSION_ERROR"


def test_scoped_session_reads_its_own_flags(api: Api) -> None:
    scoped = api.scoped(api.login(), FLAGS["SESSION_READ"])
    body = api.call("GET", "/users/me/sessions/me", scoped).json
    assert body["permissionFlags"] == FLAGS["SESSION_READ"]


def test_an_integral_float_permission_flags_is_stored_as_an_integer(api: Api) -> None:
    token = api.login()
    body = '{"name": "n", "permissionFlags": 32.0, "password": "password"}'
    created = api.call(
        "POST", "/users/me/sessions", token, data=body, content_type="application/json"
    )
    assert created.status_code == 201
    assert created.json["permissionFlags"] == 32 and isinstance(
        created.json["permissionFlags"], int
    )
    assert api.call("GET", "/users/me/sessions", created.json["token"]).status_code == 200
