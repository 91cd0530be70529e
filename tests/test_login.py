"""POST /login: credentials, lifetimes, names, refusals."""

from __future__ import annotations

import base64
import json

import pytest

from mockserver.models import Backend

from .conftest import START, Api, assert_error

CHROME_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)


def claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def header(token: str) -> dict:
    part = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def test_login_answers_201_with_token_and_exp(api: Api) -> None:
    response = api.call("POST", "/login", json={"username": "alice", "password": "password"})
    assert response.status_code == 201
    assert set(response.json) == {"token", "exp"}
    assert claims(response.json["token"])["exp"] == response.json["exp"]


def test_token_is_an_es256_jwt_with_the_contract_claims(api: Api, backend: Backend) -> None:
    token = api.login()
    assert header(token) == {"alg": "ES256", "typ": "JWT"}
    body = claims(token)
    assert set(body) == {"sub", "iat", "exp", "iss"}
    assert body["sub"] == backend.find_user("alice").id  # type: ignore[union-attr]


def test_session_lasts_24_hours_by_default(api: Api) -> None:
    body = claims(api.login())
    assert body["exp"] - body["iat"] == 86400


def test_remember_me_lasts_10_years(api: Api) -> None:
    body = claims(api.login(rememberMe=True))
    assert body["exp"] - body["iat"] == 315576000


def test_session_id_is_the_tokens_iat(api: Api) -> None:
    token = api.login()
    session = api.call("GET", "/users/me/sessions/me", token).json
    assert session["id"] == str(claims(token)["iat"])
    assert session["id"] == str(int(START + api.pace))


def test_username_is_case_insensitive_and_trimmed(api: Api) -> None:
    response = api.call("POST", "/login", json={"username": "  ALICE ", "password": "password"})
    assert response.status_code == 201


def test_unknown_user_is_404_invalid_user(api: Api) -> None:
    response = api.call("POST", "/login", json={"username": "nobody", "password": "password"})
    assert_error(response, 404, "INVALID_USER_ERROR", "Invalid User")


def test_wrong_password_is_404_invalid_user_like_an_unknown_user(api: Api) -> None:
    response = api.call("POST", "/login", json={"username": "alice", "password": "wrong"})
    assert_error(response, 404, "INVALID_USER_ERROR", "Invalid User")


def test_banned_user_is_403(api: Api) -> None:
    response = api.call("POST", "/login", json={"username": "mallory", "password": "password"})
    assert_error(response, 403, "BANNED_ERROR", "Banned")


def test_login_while_logged_in_is_401_invalid_session(api: Api) -> None:
    token = api.login()
    response = api.call("POST", "/login", token, json={"username": "alice", "password": "password"})
    assert_error(response, 401, "INVALID_SESSION_ERROR", "Invalid Session")


def test_empty_body_is_400_missing_username_and_password(api: Api) -> None:
    response = api.call("POST", "/login", json={})
    assert_error(
        response, 400, "MISSING_FIELDS_ERROR", "Missing Fields", fields=["username", "password"]
    )


def test_no_body_at_all_is_400_missing_fields(api: Api) -> None:
    response = api.call("POST", "/login")
    assert_error(
        response, 400, "MISSING_FIELDS_ERROR", "Missing Fields", fields=["username", "password"]
    )


def test_invalid_json_counts_as_an_empty_body(api: Api) -> None:
    response = api.call("POST", "/login", data="{not json", content_type="application/json")
    assert_error(
        response, 400, "MISSING_FIELDS_ERROR", "Missing Fields", fields=["username", "password"]
    )


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"username": 5, "password": "password"}, ["username"]),
        ({"username": "alice", "password": None}, ["password"]),
        ({"username": ["alice"], "password": 1}, ["username", "password"]),
        ({"username": "alice", "password": "password", "rememberMe": "yes"}, ["rememberMe"]),
    ],
    ids=["username-number", "password-null", "both-wrong", "rememberMe-string"],
)
def test_a_field_of_the_wrong_type_counts_as_missing(
    api: Api, body: dict, fields: list[str]
) -> None:
    response = api.call("POST", "/login", json=body)
    assert_error(response, 400, "MISSING_FIELDS_ERROR", "Missing Fields", fields=fields)


def session_name_after_login(api: Api, headers: dict[str, str]) -> str:
    response = api.call(
        "POST", "/login", json={"username": "alice", "password": "password"}, headers=headers
    )
    assert response.status_code == 201
    return str(api.call("GET", "/users/me/sessions/me", response.json["token"]).json["name"])


def test_session_name_comes_from_x_session_name(api: Api) -> None:
    headers = {"X-Session-Name": "My laptop", "User-Agent": CHROME_WINDOWS}
    assert session_name_after_login(api, headers) == "My laptop"


def test_session_name_is_derived_from_the_user_agent(api: Api) -> None:
    # As the live service named it (observed row 79): OS version kept, majors only.
    headers = {"User-Agent": CHROME_WINDOWS}
    assert session_name_after_login(api, headers) == "Chrome v120 on Windows v10"


@pytest.mark.parametrize(
    "user_agent",
    ["Cumulonimbus-Wrapper/5.1.0", ""],
    ids=["unrecognised", "empty"],
)
def test_an_unknown_user_agent_is_an_unknown_browser_on_an_unknown_os(
    api: Api, user_agent: str
) -> None:
    headers = {"User-Agent": user_agent}
    assert session_name_after_login(api, headers) == "Unknown Browser on an Unknown OS"


def test_a_huge_user_agent_is_named_from_its_start(api: Api) -> None:
    # issue 12 item 6: 400 KB of this took 5.4 s and was stored whole as the name.
    headers = {"User-Agent": CHROME_WINDOWS + " Version/1" * 40000}
    assert session_name_after_login(api, headers) == "Chrome v120 on Windows v10"


def test_two_logins_in_the_same_second_get_distinct_ids(api: Api) -> None:
    api.pace = 0
    first, second = claims(api.login())["iat"], claims(api.login())["iat"]
    assert first != second
