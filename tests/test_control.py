"""The control API under /_mock: reset, users, switches, clock, buckets, journal, token."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from mockserver.app import create_app
from mockserver.secondfactor import totp_code

from .conftest import Api, assert_error


def control(app: Flask) -> FlaskClient:
    return app.test_client()


def test_create_user_answers_201_with_its_id(app: Flask, api: Api) -> None:
    response = control(app).post("/_mock/users", json={"username": "erin", "password": "pw"})
    assert response.status_code == 201
    body = response.json
    assert body["username"] == "erin" and len(body["id"]) == 13 and body["id"].isdigit()
    assert (
        api.call("POST", "/login", json={"username": "erin", "password": "pw"}).status_code == 201
    )


def test_created_user_with_totp_secret_gets_the_challenge_and_ten_backup_codes(
    app: Flask, api: Api
) -> None:
    secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
    body = (
        control(app)
        .post("/_mock/users", json={"username": "fay", "password": "pw", "totpSecret": secret})
        .json
    )
    assert len(body["backupCodes"]) == 10
    challenge = api.call("POST", "/login", json={"username": "fay", "password": "pw"}).json
    now = control(app).get("/_mock/clock").json["now"]
    answer = {"token": challenge["token"], "type": "totp", "code": totp_code(secret, now)}
    assert api.call("POST", "/login", json={"2fa": answer}).status_code == 201


def test_duplicate_username_is_409(app: Flask) -> None:
    response = control(app).post("/_mock/users", json={"username": "ALICE", "password": "pw"})
    assert response.status_code == 409
    assert response.json["code"] == "USER_EXISTS_ERROR"


def test_bad_user_bodies_are_400_with_a_reason(app: Flask) -> None:
    client = control(app)
    for body in (
        {"username": "x"},
        {"username": "", "password": "p"},
        {"username": "x", "password": "p", "totpSecret": "!!"},
        [1],
    ):
        response = client.post("/_mock/users", json=body)
        assert response.status_code == 400, body
        assert response.json["code"] == "INVALID_REQUEST_ERROR"
        assert response.json["message"]


def test_reset_returns_to_the_seed_state(app: Flask, api: Api) -> None:
    client = control(app)
    token = api.login()
    client.post("/_mock/users", json={"username": "gus", "password": "pw"})
    client.put("/_mock/killswitches/8", json={"state": True})
    client.post("/_mock/clock", json={"advance": 1000})
    assert client.post("/_mock/reset").json == {"ok": True}
    usernames = [u["username"] for u in client.get("/_mock/users").json["items"]]
    assert usernames == ["alice", "bob", "carol", "dave", "mallory"]
    assert not any(s["state"] for s in client.get("/_mock/killswitches").json["items"])
    assert client.get("/_mock/requests").json["count"] == 0
    assert client.get("/_mock/ratelimits").json["count"] == 0
    assert api.call("GET", "/users/me/sessions", token).status_code == 401


def test_kill_switch_control_makes_login_503_with_feature_4(app: Flask, api: Api) -> None:
    response = control(app).put("/_mock/killswitches/4", json={"state": True})
    assert response.json["items"][4]["state"] is True
    login = api.call("POST", "/login", json={"username": "alice", "password": "password"})
    assert_error(login, 503, "SERVICE_UNAVAILABLE_ERROR", "Service Unavailable", feature=4)


def test_kill_switch_control_refuses_bad_ids_and_states(app: Flask) -> None:
    client = control(app)
    assert client.put("/_mock/killswitches/9", json={"state": True}).status_code == 404
    assert client.put("/_mock/killswitches/1", json={"state": "on"}).status_code == 400


def test_clock_advance_expires_tokens(app: Flask, api: Api) -> None:
    token = api.login()
    before = control(app).get("/_mock/clock").json["now"]
    after = control(app).post("/_mock/clock", json={"advance": 86400}).json["now"]
    assert after - before >= 86400
    assert api.call("GET", "/users/me/sessions", token).status_code == 401


def test_clock_set_and_bad_bodies(app: Flask) -> None:
    client = control(app)
    assert client.post("/_mock/clock", json={"set": 2_000_000_000}).json["now"] >= 2_000_000_000
    for body in ({}, {"advance": -1}, {"advance": "1"}, {"jump": 1}, {"frozen": 1}):
        assert client.post("/_mock/clock", json=body).status_code == 400, body


def test_clock_can_be_frozen(app: Flask) -> None:
    client = control(app)
    frozen = client.post("/_mock/clock", json={"frozen": True}).json
    assert frozen["frozen"] is True
    assert client.get("/_mock/clock").json["now"] == frozen["now"]


def test_clearing_rate_limits_lets_a_limited_client_in_again(app: Flask, api: Api) -> None:
    api.pace = 2
    for _ in range(4):
        api.login()
    assert (
        api.call("POST", "/login", json={"username": "alice", "password": "password"}).status_code
        == 429
    )
    buckets = control(app).get("/_mock/ratelimits").json
    assert any(b["route"] == "/login" and b["count"] == 4 for b in buckets["items"])
    control(app).delete("/_mock/ratelimits")
    assert (
        api.call("POST", "/login", json={"username": "alice", "password": "password"}).status_code
        == 201
    )


def test_journal_records_requests_without_tokens_and_is_bounded(clock) -> None:  # type: ignore[no-untyped-def]
    app = create_app({"CLOCK": clock, "JOURNAL_SIZE": 3})
    client = app.test_client()
    for _ in range(5):
        client.get("/api/users/me/sessions", headers={"Authorization": "secret-token"})
    journal = client.get("/_mock/requests").json
    assert journal["count"] == 3
    entry = journal["items"][-1]
    # The burst limiter refuses before routing, so a 429 names no operation.
    assert (entry["operationId"], entry["status"]) in (("getSelfSessions", 401), (None, 429))
    assert "Authorization" not in entry["requestHeaders"]
    client.delete("/_mock/requests")
    assert client.get("/_mock/requests").json["count"] == 0


def test_control_token_is_required_when_set(clock) -> None:  # type: ignore[no-untyped-def]
    app = create_app({"CLOCK": clock, "CONTROL_TOKEN": "s3cret"})
    client = app.test_client()
    refused = client.post("/_mock/reset")
    assert refused.status_code == 401 and refused.json["code"] == "INVALID_MOCK_TOKEN_ERROR"
    assert client.post("/_mock/reset", headers={"X-Mock-Token": "s3cret"}).status_code == 200


def test_no_control_removes_the_control_api(clock) -> None:  # type: ignore[no-untyped-def]
    app = create_app({"CLOCK": clock, "CONTROL": False})
    response = app.test_client().post("/_mock/reset")
    assert response.status_code == 404


def test_control_answers_match_control_yaml(app: Flask, api: Api) -> None:
    """Every control endpoint's answer is valid against openapi/control.yaml."""
    from openapi_core import OpenAPI
    from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
    from werkzeug.test import EnvironBuilder
    from werkzeug.wrappers import Request

    from mockserver.spec import spec_dir

    spec = OpenAPI.from_file_path(str(spec_dir() / "control.yaml"))
    api.login()
    HAL = {"username": "hal", "password": "p"}
    calls = [
        ("GET", "/_mock/users", None), ("POST", "/_mock/users", HAL),
        ("GET", "/_mock/killswitches", None), ("PUT", "/_mock/killswitches/1", {"state": True}),
        ("GET", "/_mock/clock", None), ("POST", "/_mock/clock", {"advance": 1}),
        ("GET", "/_mock/ratelimits", None), ("GET", "/_mock/requests", None),
        ("DELETE", "/_mock/requests", None), ("DELETE", "/_mock/ratelimits", None),
        ("PATCH", "/_mock/users/hal", {"banned": True}),
        ("POST", "/_mock/users", HAL), ("POST", "/_mock/reset", None),
        ("GET", "/_mock/profile", None), ("PUT", "/_mock/profile", {"profile": "5.3.0"}),
        ("PUT", "/_mock/profile", {"profile": None}),
        ("PATCH", "/_mock/users/hal", {"banned": True}),
    ]  # fmt: skip
    client = app.test_client()
    for method, path, body in calls:
        response = client.open(path, method=method, json=body)
        environ = EnvironBuilder(
            method=method, path=path, base_url="http://localhost/", json=body
        ).get_environ()
        request = WerkzeugOpenAPIRequest(Request(environ))
        spec.validate_response(request, WerkzeugOpenAPIResponse(response))


def _control_operations() -> list[tuple[str, str]]:
    import yaml

    from mockserver.spec import spec_dir

    document = yaml.safe_load((spec_dir() / "control.yaml").read_text())
    return [
        (method.upper(), "/_mock" + path.replace("{id}", "1").replace("{username}", "alice"))
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if operation.get("security") != []  # the pages and specs hold no state
    ]


@pytest.mark.parametrize(("method", "path"), _control_operations())
def test_every_stateful_control_endpoint_refuses_without_the_token(
    clock, method: str, path: str
) -> None:  # type: ignore[no-untyped-def]
    app = create_app({"CLOCK": clock, "CONTROL_TOKEN": "s3cret"})
    client = app.test_client()
    for headers in ({}, {"X-Mock-Token": "wrong"}):
        response = client.open(path, method=method, json={}, headers=headers)
        assert response.status_code == 401, (method, path)
        assert response.json["code"] == "INVALID_MOCK_TOKEN_ERROR"
    state = app.extensions["cumulonimbus"].backend
    assert [u.username for u in state.users.values()] == [
        "alice",
        "bob",
        "carol",
        "dave",
        "mallory",
    ]


def test_a_user_banned_through_the_control_api_loses_their_sessions(app: Flask, api: Api) -> None:
    token = api.login()
    client = app.test_client()
    response = client.patch("/_mock/users/alice", json={"banned": True})
    assert response.status_code == 200 and response.json["banned"] is True
    refused = client.get("/api/users/me/sessions", headers={"Authorization": token})
    assert refused.status_code == 403
    assert refused.json == {"code": "BANNED_ERROR", "message": "Banned"}
