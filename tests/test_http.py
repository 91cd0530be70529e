"""HTTP-level behaviour: unknown paths, JSON everywhere, Cache-Control, CORS, the root."""

from __future__ import annotations

import pytest

from .conftest import Api, assert_error


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/nope"), ("PATCH", "/login"), ("GET", "/login"), ("PATCH", "/users/me/sessions"),
     ("PUT", "/killswitches/9")],
)  # fmt: skip
def test_unknown_paths_are_404_invalid_endpoint(api: Api, method: str, path: str) -> None:
    assert_error(api.call(method, path), 404, "INVALID_ENDPOINT_ERROR", "Invalid Endpoint")


def test_unknown_paths_count_in_the_global_bucket(api: Api) -> None:
    # Observed rows 1-5: hello and unknown paths share the anonymous global bucket.
    api.call("GET", "/")
    response = api.call("GET", "/nope")
    assert response.headers["RateLimit-Limit"] == "100"
    assert response.headers["RateLimit-Remaining"] == "98"
    assert "RateLimit-Skipped" not in response.headers


@pytest.mark.parametrize("sid", ["all", "abc", "999", "\uff4d\uff45", "1" * 5000])
def test_any_segment_is_routed_as_a_session_id(api: Api, sid: str) -> None:
    # Observed rows 72-75: the service looks any segment up as an id, `all` too for GET.
    response = api.call("GET", f"/users/me/sessions/{sid}", api.login())
    assert_error(response, 404, "INVALID_SESSION_ERROR", "Invalid Session")


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE", "PUT"])
def test_the_root_says_hello_for_any_method(api: Api, method: str) -> None:
    response = api.call(method, "/")
    assert response.status_code == 200
    assert response.json["hello"] == "world"
    assert isinstance(response.json["version"], str)


@pytest.mark.parametrize("path", ["/", "/login", "/users/me/sessions", "/nope"])
def test_every_response_is_json_and_not_cached(api: Api, path: str) -> None:
    response = api.call("GET", path)
    assert response.headers["Cache-Control"] == "no-cache, no-store, must-revalidate"
    assert response.mimetype == "application/json"


def test_cors_allows_any_origin_and_exposes_rate_limit_headers(api: Api) -> None:
    response = api.call("GET", "/users/me/sessions", headers={"Origin": "http://localhost:5173"})
    assert response.headers["Access-Control-Allow-Origin"] in ("*", "http://localhost:5173")
    exposed = response.headers["Access-Control-Expose-Headers"]
    for name in ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"):
        assert name in exposed


def test_preflight_is_204_without_rate_limit_headers(api: Api) -> None:
    response = api.call(
        "OPTIONS",
        "/users/me/sessions",
        headers={
            "Origin": "http://localhost:5173",
            "Access-Control-Request-Method": "DELETE",
            "Access-Control-Request-Headers": "authorization, content-type, x-session-name",
        },
    )
    assert response.status_code == 204
    allowed = response.headers["Access-Control-Allow-Headers"].lower()
    for name in ("authorization", "content-type", "x-session-name"):
        assert name in allowed
    assert not [h for h in response.headers if h[0].lower().startswith("ratelimit")]


def test_body_over_one_megabyte_is_a_json_error(api: Api) -> None:
    response = api.call(
        "POST", "/login", data="x" * (1024 * 1024 + 1), content_type="application/json"
    )
    assert_error(response, 413, "BODY_TOO_LARGE_ERROR", "Body Too Large")


HOSTILE_BODIES = {
    "invalid-utf8": (b'\xff\xfe{"username":"a"}', "application/json"),
    "deep-nesting": ("[" * 100000 + "]" * 100000, "application/json"),
    "not-json-content-type": ('{"username":"alice","password":"password"}', "text/plain"),
    "json-array": ('[{"username":"alice","password":"password"}]', "application/json"),
    "null": ("null", "application/json"),
    "numbers-as-strings": (
        '{"username":"alice","password":"password","rememberMe":"1"}',
        "application/json",
    ),
}


@pytest.mark.parametrize("name", HOSTILE_BODIES)
def test_hostile_login_bodies_get_a_json_400(api: Api, name: str) -> None:
    data, content_type = HOSTILE_BODIES[name]
    response = api.call("POST", "/login", data=data, content_type=content_type)
    assert response.status_code == 400
    assert response.json["code"] == "MISSING_FIELDS_ERROR"


def test_duplicate_keys_take_the_last_value(api: Api) -> None:
    body = '{"username":"alice","password":"wrong","password":"password"}'
    assert api.call("POST", "/login", data=body, content_type="application/json").status_code == 201


def test_ten_thousand_ids_are_body_too_large(api: Api) -> None:
    response = api.call("DELETE", "/users/me/sessions", api.login(), json={"ids": ["1"] * 10000})
    assert_error(response, 400, "BODY_TOO_LARGE_ERROR", "Body Too Large")


def test_an_encoded_slash_in_an_id_is_an_unknown_path(api: Api) -> None:
    response = api.call("GET", "/users/me/sessions/%2F..%2F", api.login())
    assert_error(response, 404, "INVALID_ENDPOINT_ERROR", "Invalid Endpoint")


def test_huge_and_repeated_query_parameters_are_400(api: Api) -> None:
    response = api.call(
        "GET", "/users/me/sessions?limit=1&limit=2&offset=" + "9" * 5000, api.login()
    )
    assert_error(response, 400, "MISSING_FIELDS_ERROR", "Missing Fields", fields=["offset"])


def test_permission_flags_beyond_32_bits_are_refused(api: Api) -> None:
    body = {"name": "x", "permissionFlags": 2**40, "password": "password"}
    response = api.call("POST", "/users/me/sessions", api.login(), json=body)
    assert_error(
        response, 400, "MISSING_FIELDS_ERROR", "Missing Fields", fields=["permissionFlags"]
    )


def test_the_413_answer_is_valid_against_the_spec(api: Api, app) -> None:  # type: ignore[no-untyped-def]
    from openapi_core import OpenAPI
    from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
    from werkzeug.test import EnvironBuilder
    from werkzeug.wrappers import Request

    from mockserver.spec import load_document

    document = {**load_document(), "servers": [{"url": "http://localhost/api"}]}
    data = "x" * (1024 * 1024 + 1)
    response = api.call("POST", "/login", data=data, content_type="application/json")
    environ = EnvironBuilder(
        method="POST", path="/api/login", base_url="http://localhost/", data=data,
        content_type="application/json",
    ).get_environ()  # fmt: skip
    OpenAPI.from_dict(document).validate_response(
        WerkzeugOpenAPIRequest(Request(environ)), WerkzeugOpenAPIResponse(response)
    )


def test_a_path_flask_cannot_route_still_says_it_was_not_counted(api: Api) -> None:
    # Non-ASCII goes through Flask, whose path rule cannot match a newline.
    response = api.call("GET", "/users/%C3%A9%0A/sessions/all")
    assert_error(response, 404, "INVALID_ENDPOINT_ERROR", "Invalid Endpoint")
    assert response.headers["RateLimit-Skipped"] == "true"
