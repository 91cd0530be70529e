"""Token checks: anything but a live session's own token makes a request anonymous."""

from __future__ import annotations

import base64
import json

import pytest
from flask import Flask
from joserfc import jwt
from joserfc.jwk import ECKey

from mockserver.clock import Clock
from mockserver.models import Backend

from .conftest import Api, assert_error


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(token: str) -> dict:
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def assert_anonymous(api: Api, token: str) -> None:
    response = api.call("GET", "/users/me/sessions/me", token)
    assert_error(response, 401, "INVALID_SESSION_ERROR", "Invalid Session")


def test_no_token_is_401(api: Api) -> None:
    assert_error(
        api.call("GET", "/users/me/sessions"), 401, "INVALID_SESSION_ERROR", "Invalid Session"
    )


def test_bearer_prefix_is_not_accepted(api: Api) -> None:
    assert_anonymous(api, "Bearer " + api.login())


@pytest.mark.parametrize(
    "junk", ["x", "a.b.c", "..", "é" * 10, "A" * 65536], ids=["x", "abc", "dots", "unicode", "64k"]
)
def test_junk_tokens_are_anonymous(api: Api, junk: str) -> None:
    assert_anonymous(api, junk)


def test_alg_none_is_anonymous(api: Api) -> None:
    claims = _claims(api.login())
    assert_anonymous(api, _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(claims) + ".")


def test_another_es256_key_is_anonymous(api: Api) -> None:
    claims = _claims(api.login())
    forged = jwt.encode({"alg": "ES256"}, claims, ECKey.generate_key("P-256"))
    assert_anonymous(api, forged)


def test_payload_edited_after_signing_is_anonymous(api: Api, backend: Backend) -> None:
    head, _, sig = api.login().split(".")
    other = backend.find_user("bob")
    assert other is not None
    claims = _claims(api.login())
    claims["sub"] = other.id
    assert_anonymous(api, f"{head}.{_b64(claims)}.{sig}")


def test_expired_token_is_anonymous(api: Api, clock: Clock) -> None:
    token = api.login()
    clock.advance(86400)
    assert_anonymous(api, token)


def test_remember_me_token_survives_a_day(api: Api, clock: Clock) -> None:
    token = api.login(rememberMe=True)
    clock.advance(86400 * 30)
    assert api.call("GET", "/users/me/sessions/me", token).status_code == 200


def test_token_for_a_session_that_never_existed_is_anonymous(api: Api, backend: Backend) -> None:
    claims = _claims(api.login())
    claims["iat"] += 1000  # a validly signed token whose session does not exist
    assert_anonymous(api, backend.signer.sign(claims))


def test_deleting_the_session_revokes_its_token_at_once(api: Api) -> None:
    token = api.login()
    assert api.call("DELETE", "/users/me/sessions/me", token).status_code == 200
    assert_anonymous(api, token)


def test_a_deleted_users_token_is_anonymous(api: Api, backend: Backend) -> None:
    token = api.login()
    backend.delete_user("alice")
    assert_anonymous(api, token)


def test_a_second_factor_challenge_token_is_not_a_session_token(api: Api) -> None:
    response = api.call("POST", "/login", json={"username": "bob", "password": "password"})
    assert_anonymous(api, response.json["token"])


def test_each_authenticated_request_sets_used_at(api: Api, clock: Clock) -> None:
    token = api.login()
    first = api.call("GET", "/users/me/sessions/me", token).json["usedAt"]
    clock.advance(5)
    second = api.call("GET", "/users/me/sessions/me", token).json["usedAt"]
    assert first is not None and second > first


def test_banned_users_token_is_403(api: Api, backend: Backend) -> None:
    token = api.login()
    backend.find_user("alice").banned = True  # type: ignore[union-attr]
    assert_error(api.call("GET", "/users/me/sessions", token), 403, "BANNED_ERROR", "Banned")


def test_a_revoked_tokens_id_is_never_issued_again(api: Api) -> None:
    """Two logins in one second, the second deleted, then a third login in that same
    second: reusing the freed id would make the revoked token valid again."""
    api.pace = 0
    api.login()
    revoked = api.login()
    assert api.call("DELETE", "/users/me/sessions/me", revoked).status_code == 200
    api.fresh_ip().login()
    assert_anonymous(api, revoked)


def test_hs256_signed_with_the_public_key_is_anonymous(api: Api, backend: Backend) -> None:
    public = backend.signer.key.as_pem(private=False)
    head = _b64({"alg": "HS256", "typ": "JWT"})
    body = _b64(_claims(api.login()))
    import hashlib
    import hmac

    signature = hmac.new(public, f"{head}.{body}".encode(), hashlib.sha256).digest()
    sig = base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    assert_anonymous(api, f"{head}.{body}.{sig}")


def test_iat_in_the_future_is_anonymous(api: Api, backend: Backend) -> None:
    claims = _claims(api.login())
    claims["iat"] += 3600
    claims["exp"] += 3600
    assert_anonymous(api, backend.signer.sign(claims))


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
