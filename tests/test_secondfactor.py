"""Second factors: the challenge at login, TOTP and backup answers, and every error."""

from __future__ import annotations

import base64
import json

import pytest

from mockserver.clock import Clock
from mockserver.models import Backend
from mockserver.secondfactor import hash_backup_code, totp_code, verify_totp
from mockserver.seed import BOB_TOTP_SECRET

from .conftest import Api, assert_error
from .helpers import challenge

BACKUP = "0123456789abcdef0123"
SECOND_BACKUP = "00112233445566778899"  # bob's second code


def answer(api: Api, token: str, kind: str, code: str | None, **body: object):  # type: ignore[no-untyped-def]
    fields = {"token": token, "type": kind}
    if code is not None:
        fields["code"] = code
    return api.call("POST", "/login", json={"2fa": fields, **body})


def test_rfc6238_reference_vector() -> None:
    secret = base64.b32encode(b"12345678901234567890").decode()
    assert totp_code(secret, 59) == "287082"
    assert totp_code(secret, 1111111109) == "081804"


def test_totp_accepts_two_steps_back_and_one_ahead() -> None:
    now = 1_790_000_000
    assert verify_totp(BOB_TOTP_SECRET, totp_code(BOB_TOTP_SECRET, now - 60), now)
    assert verify_totp(BOB_TOTP_SECRET, totp_code(BOB_TOTP_SECRET, now + 30), now)
    assert not verify_totp(BOB_TOTP_SECRET, totp_code(BOB_TOTP_SECRET, now - 90), now)
    assert not verify_totp(BOB_TOTP_SECRET, totp_code(BOB_TOTP_SECRET, now + 60), now)


def test_backup_codes_are_kept_as_sha512_digests(backend) -> None:  # type: ignore[no-untyped-def]
    bob = backend.find_user("bob")
    assert hash_backup_code(BACKUP) in bob.backup_codes
    assert BACKUP not in bob.backup_codes


def test_challenge_body_has_a_five_minute_token_and_the_types(api: Api, clock: Clock) -> None:
    body = challenge(api)
    assert body["types"] == ["totp", "backup"]
    assert body["exp"] == int(clock.now()) + 300
    assert "challenge" not in body
    payload = body["token"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["exp"] == body["exp"]


def test_totp_answer_logs_in(api: Api, clock: Clock) -> None:
    token = challenge(api)["token"]
    response = answer(api, token, "totp", totp_code(BOB_TOTP_SECRET, clock.now()), rememberMe=True)
    assert response.status_code == 201
    assert response.json["exp"] - int(clock.now()) == 315576000


def test_backup_code_works_exactly_once(api: Api) -> None:
    assert answer(api, challenge(api)["token"], "backup", BACKUP).status_code == 201
    again = answer(api, challenge(api)["token"], "backup", BACKUP)
    assert_error(
        again, 401, "INVALID_SECOND_FACTOR_RESPONSE_ERROR", "Invalid Second Factor Response"
    )


def test_wrong_code_is_401(api: Api) -> None:
    response = answer(api, challenge(api)["token"], "totp", "000000")
    assert_error(
        response, 401, "INVALID_SECOND_FACTOR_RESPONSE_ERROR", "Invalid Second Factor Response"
    )


def test_expired_challenge_is_401(api: Api, clock: Clock) -> None:
    token = challenge(api)["token"]
    clock.advance(301)
    response = answer(api, token, "totp", totp_code(BOB_TOTP_SECRET, clock.now()))
    assert_error(
        response, 401, "INVALID_SECOND_FACTOR_RESPONSE_ERROR", "Invalid Second Factor Response"
    )


def test_unparseable_challenge_token_is_400(api: Api) -> None:
    response = answer(api, "not-a-token", "totp", "123456")
    assert_error(
        response, 400, "INVALID_SECOND_FACTOR_RESPONSE_ERROR", "Invalid Second Factor Response"
    )


def test_a_session_token_is_not_a_challenge_token(api: Api, clock: Clock) -> None:
    session = api.login()
    response = answer(api.fresh_ip(), session, "totp", totp_code(BOB_TOTP_SECRET, clock.now()))
    assert_error(
        response, 401, "INVALID_SECOND_FACTOR_RESPONSE_ERROR", "Invalid Second Factor Response"
    )


@pytest.mark.parametrize("kind", ["webauthn", "sms"])
def test_a_method_the_user_lacks_is_400(api: Api, kind: str) -> None:
    response = answer(api, challenge(api)["token"], kind, "123456")
    assert_error(
        response, 400, "INVALID_SECOND_FACTOR_METHOD_ERROR", "Invalid Second Factor Method"
    )


def test_no_code_is_400_missing_code(api: Api) -> None:
    response = answer(api, challenge(api)["token"], "totp", None)
    assert_error(response, 400, "MISSING_FIELDS_ERROR", "Missing Fields", fields=["code"])


def test_challenges_are_not_counted_but_answers_are(api: Api, clock: Clock) -> None:
    # Observed rows 40-44: four challenges leave the login budget whole; the answer is
    # the first counted login.
    api.pace = 2
    for _ in range(4):
        response = api.call("POST", "/login", json={"username": "bob", "password": "password"})
        assert response.json["code"] == "SECOND_FACTOR_CHALLENGE_REQUIRED_ERROR"
        assert response.headers["RateLimit-Skipped"] == "true"
        assert "RateLimit-Limit" not in response.headers
    token = challenge(api)["token"]
    response = answer(api, token, "totp", totp_code(BOB_TOTP_SECRET, clock.now()))
    assert response.status_code == 201
    assert response.headers["RateLimit-Limit"] == "4"
    assert response.headers["RateLimit-Remaining"] == "3"


def test_wrong_answers_count_against_the_login_limit(api: Api) -> None:
    # Observed row 22: a wrong code is a counted login, so guessing meets the limiter.
    api.pace = 2
    token = challenge(api)["token"]
    for _ in range(4):
        assert answer(api, token, "totp", "000000").status_code == 401
    assert answer(api, token, "totp", "000000").status_code == 429


def test_scoped_session_creation_with_second_factor(api: Api, clock: Clock) -> None:
    token = challenge(api)["token"]
    session = answer(api, token, "totp", totp_code(BOB_TOTP_SECRET, clock.now())).json["token"]
    body = {"name": "ci", "permissionFlags": 2}
    first = api.call("POST", "/users/me/sessions", session, json={**body, "password": "password"})
    assert first.json["code"] == "SECOND_FACTOR_CHALLENGE_REQUIRED_ERROR"
    second_factor = {"token": first.json["token"], "type": "backup", "code": BACKUP}
    created = api.call("POST", "/users/me/sessions", session, json={**body, "2fa": second_factor})
    assert created.status_code == 201


def test_a_backup_code_is_not_spent_by_a_request_that_fails(api: Api, backend: Backend) -> None:
    bob = backend.find_user("bob")
    assert bob is not None
    first = challenge(api)["token"]
    session = api.call(
        "POST", "/login", json={"2fa": {"token": first, "type": "backup", "code": SECOND_BACKUP}}
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


def test_a_user_banned_after_the_challenge_gets_no_session(
    api: Api, backend: Backend, clock: Clock
) -> None:
    token = challenge(api)["token"]
    backend.find_user("bob").banned = True  # type: ignore[union-attr]
    response = api.call(
        "POST", "/login", json={"2fa": {"token": token, "type": "backup", "code": SECOND_BACKUP}}
    )
    assert_error(response, 403, "BANNED_ERROR", "Banned")
