"""Staff operations: who may call them, and what they do."""

from __future__ import annotations

import pytest

from mockserver.clock import Clock
from mockserver.models import Backend
from mockserver.secondfactor import totp_code
from mockserver.seed import CAROL_TOTP_SECRET
from mockserver.spec import load_spec

from .conftest import Api, assert_error
from .helpers import staff_login

STAFF_OPS = [op for op in load_spec().operations.values() if op.staff_only]


def request_for(op, uid: str, sid: str = "1000000000") -> tuple[str, str, dict | None]:  # type: ignore[no-untyped-def]
    path = "/api" + op.path.format(uid=uid, sid=sid, id="4")
    body: dict | None = None
    if op.has_body:
        body = (
            {"ids": [sid]}
            if "ids" in str(op.raw["requestBody"]) or op.operation_id == "deleteUserSessions"
            else {"password": "password"}
        )
    return op.method, path.removeprefix("/api"), body


@pytest.mark.parametrize("op", STAFF_OPS, ids=[op.operation_id for op in STAFF_OPS])
def test_non_staff_get_403_even_for_their_own_id(api: Api, backend: Backend, op) -> None:  # type: ignore[no-untyped-def]
    alice = backend.find_user("alice")
    assert alice is not None
    method, path, body = request_for(op, alice.id)
    response = api.call(method, path, api.login(), json=body)
    assert_error(response, 403, "INSUFFICIENT_PERMISSIONS_ERROR", "Insufficient Permissions")


@pytest.mark.parametrize("op", STAFF_OPS, ids=[op.operation_id for op in STAFF_OPS])
def test_staff_without_second_factor_get_401(api: Api, backend: Backend, op) -> None:  # type: ignore[no-untyped-def]
    method, path, body = request_for(op, backend.find_user("alice").id)  # type: ignore[union-attr]
    response = api.call(method, path, api.login("dave"), json=body)
    assert_error(
        response, 401, "ENDPOINT_REQUIRES_SECOND_FACTOR_ERROR", "Endpoint Requires Second Factor"
    )


USER_OPS = [op for op in STAFF_OPS if "{uid}" in op.path]


@pytest.mark.parametrize("op", USER_OPS, ids=[op.operation_id for op in USER_OPS])
def test_unknown_uid_is_404_invalid_user(api: Api, clock: Clock, op) -> None:  # type: ignore[no-untyped-def]
    method, path, body = request_for(op, "1000000000000")
    staff = staff_login(api, clock)
    if op.reverification == "password":
        challenge = api.call(method, path, staff, json=body).json
        code = totp_code(CAROL_TOTP_SECRET, clock.now())
        body = {"2fa": {"token": challenge["token"], "type": "totp", "code": code}}
    response = api.call(method, path, staff, json=body)
    assert_error(response, 404, "INVALID_USER_ERROR", "Invalid User")


def test_staff_reads_a_users_sessions(api: Api, clock: Clock, backend: Backend) -> None:
    user_token = api.login()
    alice = backend.find_user("alice").id  # type: ignore[union-attr]
    staff = staff_login(api, clock)
    listing = api.call("GET", f"/users/{alice}/sessions", staff).json
    assert listing["count"] == 1
    sid = listing["items"][0]["id"]
    session = api.call("GET", f"/users/{alice}/sessions/{sid}", staff).json
    assert session["id"] == sid
    assert api.call("GET", "/users/me/sessions/me", user_token).status_code == 200


def test_staff_deletes_one_session_and_its_token_dies(
    api: Api, clock: Clock, backend: Backend
) -> None:
    user_token = api.login()
    alice = backend.find_user("alice").id  # type: ignore[union-attr]
    sid = api.call("GET", "/users/me/sessions/me", user_token).json["id"]
    staff = staff_login(api, clock)
    response = api.call("DELETE", f"/users/{alice}/sessions/{sid}", staff)
    assert response.json == {
        "code": "DELETE_SESSION_SUCCESS",
        "message": "Session Successfully Deleted",
    }
    assert api.call("GET", "/users/me/sessions/me", user_token).status_code == 401


def test_staff_unknown_session_is_404_invalid_session(
    api: Api, clock: Clock, backend: Backend
) -> None:
    alice = backend.find_user("alice").id  # type: ignore[union-attr]
    response = api.call("GET", f"/users/{alice}/sessions/1000000000", staff_login(api, clock))
    assert_error(response, 404, "INVALID_SESSION_ERROR", "Invalid Session")


def test_staff_bulk_delete_counts_only_real_sessions(
    api: Api, clock: Clock, backend: Backend
) -> None:
    user_token = api.login()
    sid = api.call("GET", "/users/me/sessions/me", user_token).json["id"]
    alice = backend.find_user("alice").id  # type: ignore[union-attr]
    response = api.call(
        "DELETE",
        f"/users/{alice}/sessions",
        staff_login(api, clock),
        json={"ids": [sid, "1000000000"]},
    )
    assert response.json["count"] == 1


def test_staff_bulk_delete_without_body_is_400_missing_ids(
    api: Api, clock: Clock, backend: Backend
) -> None:
    alice = backend.find_user("alice").id  # type: ignore[union-attr]
    response = api.call("DELETE", f"/users/{alice}/sessions", staff_login(api, clock))
    assert_error(response, 400, "MISSING_FIELDS_ERROR", "Missing Fields", fields=["ids"])


def test_staff_delete_all_needs_reverification(api: Api, clock: Clock, backend: Backend) -> None:
    alice = backend.find_user("alice").id  # type: ignore[union-attr]
    response = api.call("DELETE", f"/users/{alice}/sessions/all", staff_login(api, clock), json={})
    assert_error(response, 400, "MISSING_FIELDS_ERROR", "Missing Fields", fields=["password"])


def test_staff_delete_all_challenges_then_deletes(api: Api, clock: Clock, backend: Backend) -> None:
    user_api = api.fresh_ip()
    tokens = [user_api.login(), user_api.login()]
    alice = backend.find_user("alice").id  # type: ignore[union-attr]
    staff = staff_login(api, clock)
    challenge = api.call(
        "DELETE", f"/users/{alice}/sessions/all", staff, json={"password": "password"}
    )
    assert_error(
        challenge, 401, "SECOND_FACTOR_CHALLENGE_REQUIRED_ERROR", "Second Factor Challenge Required"
    )
    answer = {
        "token": challenge.json["token"],
        "type": "totp",
        "code": totp_code(CAROL_TOTP_SECRET, clock.now()),
    }
    response = api.call("DELETE", f"/users/{alice}/sessions/all", staff, json={"2fa": answer})
    assert response.json == {
        "code": "DELETE_SESSIONS_SUCCESS",
        "message": "Sessions Successfully Deleted",
        "count": 2,
    }
    assert all(api.call("GET", "/users/me/sessions", t).status_code == 401 for t in tokens)


def test_staff_scoped_session_needs_the_staff_flag(
    api: Api, clock: Clock, backend: Backend
) -> None:
    flags = load_spec().permission_flags
    staff = staff_login(api, clock)
    answer_needed = api.call(
        "POST",
        "/users/me/sessions",
        staff,
        json={"name": "s", "permissionFlags": flags["STAFF_READ_SESSIONS"], "password": "password"},
    ).json
    answer = {"token": answer_needed["token"], "type": "backup", "code": "0123456789abcdef0123"}
    scoped = api.call(
        "POST",
        "/users/me/sessions",
        staff,
        json={"name": "s", "permissionFlags": flags["STAFF_READ_SESSIONS"], "2fa": answer},
    ).json["token"]
    alice = backend.find_user("alice").id  # type: ignore[union-attr]
    assert api.call("GET", f"/users/{alice}/sessions", scoped).status_code == 200
    denied = api.call("DELETE", f"/users/{alice}/sessions", scoped, json={"ids": []})
    assert_error(denied, 403, "INSUFFICIENT_PERMISSIONS_ERROR", "Insufficient Permissions")


@pytest.mark.parametrize("uid", ["1", "abc", "1234567890123"])
def test_any_segment_is_routed_as_a_user_id(api: Api, clock: Clock, uid: str) -> None:
    # Observed rows 101-103: an unknown uid of any shape is INVALID_USER, never an
    # unknown path.
    response = api.call("GET", f"/users/{uid}/sessions/1234567890", staff_login(api, clock))
    assert_error(response, 404, "INVALID_USER_ERROR", "Invalid User")
