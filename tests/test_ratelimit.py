"""Rate limits: route limits, bursts, headers, what counts, and exactness under load."""

from __future__ import annotations

import threading

from flask import Flask

from mockserver.clock import Clock

from .conftest import Api, assert_error

RATELIMITED = ("RATELIMITED_ERROR", "You Have Been Ratelimited. Please Try Again Later.")


def login(api: Api, username: str = "alice", password: str = "password"):  # type: ignore[no-untyped-def]
    return api.call("POST", "/login", json={"username": username, "password": password})


def test_fifth_login_in_five_minutes_is_429_standard(api: Api) -> None:
    api.pace = 2  # well clear of the burst limit
    for _ in range(4):
        assert login(api).status_code == 201
    response = login(api)
    assert_error(response, 429, *RATELIMITED)
    assert response.headers["RateLimit-Reason"] == "standard"
    assert response.headers["RateLimit-Limit"] == "4"
    assert response.headers["RateLimit-Remaining"] == "0"
    assert 0 < int(response.headers["RateLimit-Reset"]) <= 300
    assert response.headers["RateLimit-Skipped"] == "true"


def test_login_limit_clears_after_five_minutes(api: Api, clock: Clock) -> None:
    api.pace = 2
    for _ in range(4):
        login(api)
    assert login(api).status_code == 429
    clock.advance(300)
    assert login(api).status_code == 201


def test_login_404s_do_not_count(api: Api) -> None:
    api.pace = 2
    for _ in range(6):
        response = login(api, password="wrong")
        assert response.status_code == 404
        assert response.headers["RateLimit-Skipped"] == "true"
    for _ in range(4):
        assert login(api).status_code == 201


def test_login_headers_count_down(api: Api) -> None:
    api.pace = 2
    remaining = [login(api).headers["RateLimit-Remaining"] for _ in range(4)]
    assert remaining == ["3", "2", "1", "0"]


def test_limits_are_per_client_ip_from_x_forwarded_for(api: Api) -> None:
    api.pace = 2
    for _ in range(4):
        login(api)
    assert login(api).status_code == 429
    assert login(api.fresh_ip()).status_code == 201


def test_only_the_first_forwarded_address_counts(api: Api) -> None:
    api.pace = 2
    for index in range(4):
        response = api.call(
            "POST", "/login", json={"username": "alice", "password": "password"},
            headers={"X-Forwarded-For": f"198.51.100.7, 10.0.0.{index}"},
        )  # fmt: skip
        assert response.status_code == 201
    blocked = api.call(
        "POST", "/login", json={"username": "alice", "password": "password"},
        headers={"X-Forwarded-For": "198.51.100.7, 10.9.9.9"},
    )  # fmt: skip
    assert blocked.status_code == 429


def test_fourth_rapid_read_within_a_second_is_429_burst(api: Api) -> None:
    token = api.login()
    api.pace = 0.1
    for _ in range(3):
        assert api.call("GET", "/users/me/sessions", token).status_code == 200
    response = api.call("GET", "/users/me/sessions", token)
    assert_error(response, 429, *RATELIMITED)
    assert response.headers["RateLimit-Reason"] == "burst"
    assert response.headers["RateLimit-Reset"] == "1"


def test_burst_clears_after_a_second(api: Api, clock: Clock) -> None:
    token = api.login()
    api.pace = 0
    for _ in range(3):
        api.call("GET", "/users/me/sessions", token)
    assert api.call("GET", "/users/me/sessions", token).status_code == 429
    clock.advance(1.01)
    assert api.call("GET", "/users/me/sessions", token).status_code == 200


def test_four_rapid_unauthenticated_requests_get_a_burst_429(api: Api) -> None:
    api.pace = 0
    statuses = [api.call("GET", "/users/me/sessions").status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]


def test_default_route_limit_is_100_per_minute(api: Api, clock: Clock) -> None:
    token = api.login()
    api.pace = 0.5
    for _ in range(100):
        assert api.call("GET", "/users/me/sessions/me", token).status_code == 200
    response = api.call("GET", "/users/me/sessions/me", token)
    assert response.status_code == 429
    assert response.headers["RateLimit-Reason"] == "standard"
    assert response.headers["RateLimit-Limit"] == "100"


def test_scoped_session_creation_is_4_per_5_minutes(api: Api) -> None:
    token = api.login()
    api.pace = 2
    body = {"name": "x", "permissionFlags": 2, "password": "password"}
    for _ in range(4):
        assert api.call("POST", "/users/me/sessions", token, json=body).status_code == 201
    response = api.call("POST", "/users/me/sessions", token, json=body)
    assert response.status_code == 429
    assert response.headers["RateLimit-Limit"] == "4"


def test_503_responses_do_not_count(api: Api, app: Flask) -> None:
    backend = app.extensions["cumulonimbus"].backend
    backend.kill_switches[4] = True
    api.pace = 2
    for _ in range(5):
        response = login(api)
        assert response.status_code == 503
        assert response.headers["RateLimit-Skipped"] == "true"
    backend.kill_switches[4] = False
    assert login(api).status_code == 201


def test_twenty_simultaneous_logins_let_exactly_three_through_then_one_more(
    app: Flask, clock: Clock
) -> None:
    """The issue's exactness check: the burst admits 3, the 4-per-5-minutes limit 1 more."""

    def attempt(results: list[int]) -> None:
        client = app.test_client()
        response = client.post(
            "/api/login",
            json={"username": "alice", "password": "password"},
            headers={"X-Forwarded-For": "203.0.113.20"},
        )
        results.append(response.status_code)

    results: list[int] = []
    barrier = threading.Barrier(20)

    def run() -> None:
        barrier.wait()
        attempt(results)

    threads = [threading.Thread(target=run) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results).count(201) == 3
    assert results.count(429) == 17

    clock.advance(1.5)  # the burst has cleared; the route limit has one place left
    later: list[int] = []
    for _ in range(3):
        attempt(later)
        clock.advance(1.5)
    assert later == [201, 429, 429]


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
