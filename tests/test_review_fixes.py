"""Behaviours a second reading of the mock found wrong; each test fails on the old code."""

from __future__ import annotations

from flask import Flask

from mockserver.clock import Clock
from mockserver.models import Backend

from .conftest import Api, assert_error
from .helpers import challenge

BACKUP = "00112233445566778899"


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


def test_a_token_from_before_a_reset_never_works_after_it(app: Flask, api: Api) -> None:
    api.pace = 0
    before = api.login()
    assert api.call("DELETE", "/users/me/sessions/me", before).status_code == 200
    app.test_client().post("/_mock/reset")
    api.login()  # same user, same second: the same sub, iat and exp as the revoked token
    assert_error(
        api.call("GET", "/users/me/sessions/me", before),
        401,
        "INVALID_SESSION_ERROR",
        "Invalid Session",
    )


def test_lone_surrogates_in_strings_are_no_500(api: Api) -> None:
    token = api.login()
    body = '{"name": "\\ud800", "permissionFlags": 1, "password": "password"}'
    created = api.call(
        "POST", "/users/me/sessions", token, data=body, content_type="application/json"
    )
    assert created.status_code == 201
    assert api.call("GET", "/users/me/sessions", token).status_code == 200
    login = '{"username": "alice", "password": "\\ud800"}'
    response = api.fresh_ip().call("POST", "/login", data=login, content_type="application/json")
    assert_error(response, 404, "INVALID_USER_ERROR", "Invalid User")


def test_a_backup_code_is_not_spent_by_a_request_that_fails(api: Api, backend: Backend) -> None:
    bob = backend.find_user("bob")
    assert bob is not None
    first = challenge(api)["token"]
    session = api.call(
        "POST", "/login", json={"2fa": {"token": first, "type": "backup", "code": BACKUP}}
    )
    token = session.json["token"]
    codes = len(bob.backup_codes)
    asked = api.call(
        "POST",
        "/users/me/sessions",
        token,
        json={"password": "password", "name": "x", "permissionFlags": 1},
    )
    answer = {"token": asked.json["token"], "type": "backup", "code": "a1b2c3d4e5f6a7b8c9d0"}
    failed = api.call("POST", "/users/me/sessions", token, json={"2fa": answer})  # no name
    assert_error(
        failed, 400, "MISSING_FIELDS_ERROR", "Missing Fields", fields=["name", "permissionFlags"]
    )
    assert len(bob.backup_codes) == codes
    done = api.call(
        "POST", "/users/me/sessions", token, json={"2fa": answer, "name": "x", "permissionFlags": 1}
    )
    assert done.status_code == 201
    assert len(bob.backup_codes) == codes - 1


def test_a_webauthn_answer_for_a_user_without_webauthn_is_a_method_error(api: Api) -> None:
    token = challenge(api)["token"]
    response = api.call(
        "POST", "/login", json={"2fa": {"token": token, "type": "webauthn", "code": {"id": "x"}}}
    )
    assert_error(
        response, 400, "INVALID_SECOND_FACTOR_METHOD_ERROR", "Invalid Second Factor Method"
    )


def test_too_many_ids_is_a_validation_answer_before_the_route_limit(api: Api) -> None:
    token = api.login()
    api.pace = 0
    for _ in range(3):
        api.call("DELETE", "/users/me/sessions", token, json={"ids": []})
    blocked = api.call("DELETE", "/users/me/sessions", token, json={"ids": []})
    assert blocked.status_code == 429  # the route's burst is used up ...
    ids = [str(1_000_000_000 + i) for i in range(51)]
    response = api.call("DELETE", "/users/me/sessions", token, json={"ids": ids})
    assert_error(
        response, 400, "BODY_TOO_LARGE_ERROR", "Body Too Large"
    )  # ... validation comes first


def test_an_oversized_body_is_refused_before_the_operation_runs(api: Api) -> None:
    token = api.login()
    response = api.call(
        "DELETE",
        "/users/me/sessions/me",
        token,
        data="x" * (1024 * 1024 + 10),
        content_type="text/plain",
    )
    assert_error(response, 413, "BODY_TOO_LARGE_ERROR", "Body Too Large")
    assert api.call("GET", "/users/me/sessions/me", token).status_code == 200


def test_a_body_cut_short_is_a_400_not_a_500(api: Api) -> None:
    response = api.call(
        "POST", "/login", data='{"username": "alice"', content_type="application/json",
        environ_overrides={"CONTENT_LENGTH": "500"},
    )  # fmt: skip
    assert_error(
        response, 400, "MISSING_FIELDS_ERROR", "Missing Fields", fields=["username", "password"]
    )


def test_a_user_banned_after_the_challenge_gets_no_session(
    api: Api, backend: Backend, clock: Clock
) -> None:
    token = challenge(api)["token"]
    backend.find_user("bob").banned = True  # type: ignore[union-attr]
    response = api.call(
        "POST", "/login", json={"2fa": {"token": token, "type": "backup", "code": BACKUP}}
    )
    assert_error(response, 403, "BANNED_ERROR", "Banned")
