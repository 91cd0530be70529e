"""HTTP-level behaviour: unknown paths, JSON everywhere, Cache-Control, CORS, the root."""

from __future__ import annotations

import pytest

from .conftest import Api, assert_error


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/nope"), ("GET", "/users/me/sessions/all"), ("PATCH", "/login"), ("GET", "/login"),
     ("GET", "/users/12/sessions"), ("GET", "/users/me/sessions/abc"), ("PUT", "/killswitches/9")],
)  # fmt: skip
def test_unknown_paths_are_404_invalid_endpoint(api: Api, method: str, path: str) -> None:
    assert_error(api.call(method, path), 404, "INVALID_ENDPOINT_ERROR", "Invalid Endpoint")


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
