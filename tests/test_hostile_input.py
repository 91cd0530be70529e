"""Hostile input of every kind gets a clear JSON error in the API's own format: never a
500, a redirect with an HTML body, or a broken mock afterwards (issue 12)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from mockserver.app import create_app
from mockserver.clock import Clock
from mockserver.persistence import StateFileError

from .conftest import Api, assert_error


def nested(levels: int, leaf: str = "1") -> str:
    return '{"a":' * levels + leaf + "}" * levels


# Control API --------------------------------------------------------------------------

FOREIGN_ORIGINS = ["http://evil.example", "http://127.0.0.1:5173", "null", "http://localhost"]


@pytest.mark.parametrize("origin", FOREIGN_ORIGINS)
def test_the_control_api_refuses_other_origins(app: Flask, origin: str) -> None:
    client = app.test_client()
    response = client.post("/_mock/reset", headers={"Origin": origin, "Host": "127.0.0.1:8000"})
    assert_error(response, 403, "FORBIDDEN_ORIGIN_ERROR", "Forbidden Origin")
    assert "Access-Control-Allow-Origin" not in response.headers


def test_a_foreign_preflight_learns_nothing(app: Flask) -> None:
    response = app.test_client().options(
        "/_mock/users",
        headers={
            "Origin": "http://evil.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-mock-token, content-type",
        },
    )
    assert response.status_code == 403
    assert not [h for h in response.headers if h[0].lower().startswith("access-control")]


def test_the_control_api_answers_its_own_origin_without_cors_headers(app: Flask) -> None:
    response = app.test_client().post(
        "/_mock/clock",
        json={"frozen": True},
        headers={"Origin": "http://127.0.0.1:8000", "Host": "127.0.0.1:8000"},
    )
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "10.0.0.8:8000", "x:y"])
def test_the_control_api_refuses_foreign_host_names(app: Flask, host: str) -> None:
    # DNS rebinding: a page of evil.example, its name now resolving to 127.0.0.1.
    for path in ("/_mock/requests", "/_mock/", "/_mock/nope"):
        response = app.test_client().get(path, headers={"Host": host})
        assert_error(response, 403, "FORBIDDEN_HOST_ERROR", "Forbidden Host")


@pytest.mark.parametrize("host", ["localhost:8000", "127.0.0.1", "127.0.0.2:1", "[::1]:8000"])
def test_the_control_api_answers_loopback_names(app: Flask, host: str) -> None:
    assert app.test_client().get("/_mock/clock", headers={"Host": host}).status_code == 200


def test_the_api_still_answers_any_origin(api: Api) -> None:
    response = api.call("GET", "/", headers={"Origin": "http://evil.example"})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] in ("*", "http://evil.example")
    preflight = api.call(
        "OPTIONS", "/users/me/sessions", headers={"Origin": "http://evil.example"}
    ).headers["Access-Control-Allow-Headers"]
    assert "x-mock-token" not in preflight.lower()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("GET", "/_mock/requests?limit=%C2%B2", None),
     ("GET", "/_mock/requests?limit=" + "9" * 5000, None),
     ("GET", "/_mock/requests?limit=+5", None),
     ("POST", "/_mock/clock", '{"set": 3e11}'),
     ("POST", "/_mock/clock", '{"advance": 1e400}'),
     ("POST", "/_mock/clock", '{"set": ' + "9" * 400 + "}"),
     ("POST", "/_mock/clock", "[" * 100000 + "]" * 100000),
     ("POST", "/_mock/users", nested(100000))],
    ids=["superscript-limit", "5000-digit-limit", "signed-limit", "clock-past-9999",
         "infinite-advance", "huge-integer", "deep-array", "deep-object"],
)  # fmt: skip
def test_bad_control_input_is_a_400_and_changes_nothing(
    app: Flask, api: Api, method: str, path: str, body: str | None
) -> None:
    client = app.test_client()
    before = client.get("/_mock/clock").json
    response = client.open(path, method=method, data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.json["code"] == "INVALID_REQUEST_ERROR"
    assert client.get("/_mock/clock").json["now"] == before["now"]
    assert api.call("GET", "/").status_code == 200


def test_an_unknown_kill_switch_in_other_digits_is_404(app: Flask) -> None:
    response = app.test_client().put("/_mock/killswitches/%C2%B2", json={"state": True})
    assert_error(response, 404, "INVALID_KILLSWITCH_ERROR", "Invalid Kill Switch")


def test_the_journal_still_reads_after_a_deep_body(app: Flask, api: Api) -> None:
    api.call("POST", "/login", data="[" * 2000 + "]" * 2000, content_type="application/json")
    response = app.test_client().get("/_mock/requests")
    assert response.status_code == 200
    assert isinstance(response.json["items"][-1]["requestBody"], str)


# The API ------------------------------------------------------------------------------


@pytest.mark.parametrize("levels", [500, 100000])
def test_deeply_nested_login_bodies_are_400_missing_fields(api: Api, levels: int) -> None:
    body = '{"username":"alice","password":"password","x":' + nested(levels) + "}"
    response = api.call("POST", "/login", data=body, content_type="application/json")
    assert_error(response, 400, "MISSING_FIELDS_ERROR", "Missing Fields")


def test_a_deep_second_factor_answer_is_400(api: Api) -> None:
    response = api.call(
        "POST", "/login", data='{"2fa":' + nested(500) + "}", content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json["code"].endswith("_ERROR")


@pytest.mark.parametrize(
    ("method", "path"),
    [("DELETE", "/users/me/sessions/me/"), ("GET", "/users/me/sessions/me/"),
     ("DELETE", "/users/me/sessions/all/"), ("GET", "/users/me/sessions/")],
)  # fmt: skip
def test_a_trailing_slash_is_the_same_operation_and_passes_strict_checks(
    api: Api, method: str, path: str
) -> None:
    # The app fixture runs --strict and fails the test on any response it flags.
    response = api.call(method, path, api.login())
    assert response.status_code == 200, response.json
    assert "X-Mock-Strict-Violation" not in response.headers


def test_a_trailing_slash_does_not_skip_query_validation(api: Api) -> None:
    response = api.call("GET", "/users/me/sessions/?limit=abc", api.login())
    assert_error(response, 400, "MISSING_FIELDS_ERROR", "Missing Fields", fields=["limit"])


@pytest.mark.parametrize("method", ["GET", "DELETE"])
@pytest.mark.parametrize("path", ["//users/me/sessions", "/users//me/sessions"])
def test_doubled_slashes_are_an_unknown_path_not_a_redirect(
    api: Api, method: str, path: str
) -> None:
    response = api.call(method, path, api.login(), json={"ids": []})
    assert_error(response, 404, "INVALID_ENDPOINT_ERROR", "Invalid Endpoint")


@pytest.mark.parametrize(
    "value",
    ["5_0", "+5", "%205", "5%20", "%D9%A5", "%EF%BC%95", "0x5", "5.0", ""],
    ids=["underscore", "plus", "leading-space", "trailing-space", "arabic-indic",
         "full-width", "hex", "decimal-point", "empty"],
)  # fmt: skip
@pytest.mark.parametrize("name", ["limit", "offset"])
def test_query_integers_are_ascii_digits_only(api: Api, name: str, value: str) -> None:
    response = api.call("GET", f"/users/me/sessions?{name}={value}", api.login())
    assert_error(response, 400, "MISSING_FIELDS_ERROR", "Missing Fields", fields=[name])


def test_a_repeated_query_integer_uses_the_first_value(api: Api) -> None:
    token = api.login()
    api.login()
    response = api.call("GET", "/users/me/sessions?limit=1&limit=2", token)
    assert response.status_code == 200
    assert len(response.json["items"]) == 1


def test_leading_zeros_are_still_a_number(api: Api) -> None:
    response = api.call("GET", "/users/me/sessions?limit=05&offset=00", api.login())
    assert response.status_code == 200


def test_http_errors_raised_on_the_way_are_json_not_500(app: Flask) -> None:
    response = app.test_client().get("/_mock/docs", headers={"Range": "bytes=99999999-"})
    assert_error(
        response,
        416,
        "REQUESTED_RANGE_NOT_SATISFIABLE_ERROR",
        "Requested Range Not Satisfiable",
    )


# State files ----------------------------------------------------------------------------


def saved_state(tmp_path: Path, clock: Clock) -> tuple[Path, dict[str, Any]]:
    path = tmp_path / "state.json"
    app = create_app({"STATE_FILE": str(path), "CLOCK": clock, "STATE_INTERVAL": 3600})
    client = app.test_client()
    client.post("/api/login", json={"username": "alice", "password": "password"})
    app.extensions["cumulonimbus"].writer.stop()
    return path, json.loads(path.read_text())


def alice(data: dict[str, Any]) -> dict[str, Any]:
    return next(u for u in data["users"] if u["username"] == "alice")


BREAKAGES = {
    "exp-never": lambda d: alice(d)["sessions"][0].update(exp="never"),
    "session-id-word": lambda d: alice(d)["sessions"][0].update(id="abc"),
    "used-at-text": lambda d: alice(d)["sessions"][0].update(used_at="yesterday"),
    "flags-text": lambda d: alice(d)["sessions"][0].update(permission_flags="all"),
    "staff-text": lambda d: alice(d).update(staff="false"),
    "user-id-word": lambda d: alice(d).update(id="alice"),
    "public-key-only": lambda d: d["signingKey"].pop("d"),
    "switch-text": lambda d: d["killSwitches"].update({"4": "on"}),
    "digests-not-list": lambda d: alice(d).update(backupCodeDigests="x"),
}


@pytest.mark.parametrize("name", BREAKAGES)
def test_a_state_file_that_parses_but_is_wrong_is_refused_untouched(
    tmp_path: Path, clock: Clock, name: str
) -> None:
    path, data = saved_state(tmp_path, clock)
    BREAKAGES[name](data)
    path.write_text(json.dumps(data))
    written = path.read_text()
    with pytest.raises(StateFileError, match=r"malformed|private|number"):
        create_app({"STATE_FILE": str(path), "CLOCK": clock})
    assert path.read_text() == written


def test_a_state_folder_that_cannot_be_written_is_refused_at_start(
    tmp_path: Path, clock: Clock
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises(StateFileError, match="cannot write"):
        create_app({"STATE_FILE": str(blocker / "state.json"), "CLOCK": clock})


def test_leftovers_of_an_interrupted_write_are_removed(tmp_path: Path, clock: Clock) -> None:
    path, _ = saved_state(tmp_path, clock)
    leftovers = [tmp_path / ".state.json.tmp-abc123", tmp_path / ".state.json.k2j4_x9q"]
    keep = tmp_path / ".state.json.backup-of-mine"
    for file in [*leftovers, keep]:
        file.write_text("{}")
    app = create_app({"STATE_FILE": str(path), "CLOCK": clock})
    app.extensions["cumulonimbus"].writer.stop()
    assert not any(file.exists() for file in leftovers)
    assert keep.exists()


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
