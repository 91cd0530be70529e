"""The rules judged from traffic alone (conformance/traffic.py): routing a recorded request
to its operation, one exchange judged by the suite's response checks, and RateLimit-Remaining
followed per bucket over a stream."""

from __future__ import annotations

import pytest
from requests.structures import CaseInsensitiveDict

from conformance.exchange import Exchange
from conformance.registry import REGISTRY
from conformance.spec import load_spec
from conformance.traffic import (
    REMAINING_RULE,
    RemainingTracker,
    find_operation,
    judge_exchange,
    response_check_ids,
)

SPEC = load_spec()
CACHE = {"Cache-Control": "no-cache, no-store, must-revalidate"}
LIST_BODY = '{"count": 1, "items": [{"id": "1790000011", "name": "Firefox v120 on Linux"}]}'


def exchange(
    remaining: int | None = 99,
    *,
    status: int = 200,
    body: str = LIST_BODY,
    limit: int = 100,
    path: str = "/users/me/sessions",
    method: str = "GET",
    **headers: str,
) -> Exchange:
    values = {"Content-Type": "application/json", **CACHE}
    if remaining is None:
        values["RateLimit-Skipped"] = "true"
    else:
        values.update(
            {
                "RateLimit-Limit": str(limit),
                "RateLimit-Remaining": str(remaining),
                "RateLimit-Reset": "60",
            }
        )
    values.update({k.replace("_", "-"): v for k, v in headers.items()})
    return Exchange(
        method,
        "https://staging.example/api" + path,
        {"Authorization": "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiIxNjQ3MDE1MDI4NjI2In0.c2ln"},
        None,
        status,
        CaseInsensitiveDict(values),
        body,
    )


@pytest.mark.parametrize(
    ("method", "path", "operation"),
    [
        ("DELETE", "/users/me/sessions/all", "deleteAllSelfSessions"),
        ("GET", "/users/me/sessions/all", "getSelfSession"),
        ("GET", "/users/me/sessions/me", "getSelfSession"),
        ("GET", "/users/me/sessions/", "getSelfSessions"),
        ("GET", "/users/me/sessions?limit=5", "getSelfSessions"),
        ("GET", "/users/1647015028626/sessions", "getUserSessions"),
        ("DELETE", "/users/1647015028626/sessions/all", "deleteAllUserSessions"),
        ("GET", "/", "getHello"),
        ("PATCH", "/users/me/sessions", None),
        ("GET", "/users//sessions", None),
        ("GET", "/users/me/sessionz", None),
    ],
    ids=lambda value: str(value),
)
def test_a_request_is_routed_as_the_service_routes_it(
    method: str, path: str, operation: str | None
) -> None:
    op = find_operation(SPEC, method, path)
    assert (op.id if op else None) == operation


def test_the_response_checks_are_the_suites_registered_ones() -> None:
    assert (
        set(response_check_ids())
        == {c.id for c in REGISTRY.values() if c.kind == "response"}
        >= {"schema.status", "schema.body", "headers.cache-control", "headers.ratelimit"}
    )


def test_a_conforming_exchange_has_no_failures() -> None:
    assert judge_exchange(SPEC, SPEC.operation("getSelfSessions"), exchange()) == []


def test_a_missing_cache_control_fails_with_the_suites_wording() -> None:
    broken = exchange()
    del broken.headers["Cache-Control"]
    (failure,) = judge_exchange(SPEC, SPEC.operation("getSelfSessions"), broken)
    assert failure.check_id == "headers.cache-control"
    assert failure.rule == "every response carries the no-cache Cache-Control header"
    assert failure.actual == "200 with Cache-Control: None"


def test_a_503_without_feature_breaks_the_body_schema() -> None:
    body = '{"code": "SERVICE_UNAVAILABLE_ERROR", "message": "Service Unavailable"}'
    (failure,) = judge_exchange(
        SPEC, SPEC.operation("getSelfSessions"), exchange(None, status=503, body=body)
    )
    assert failure.check_id == "schema.body"
    assert "feature" in failure.actual


def test_evidence_shows_no_token() -> None:
    broken = exchange()
    del broken.headers["Cache-Control"]
    broken.redactor.enabled = True
    (failure,) = judge_exchange(SPEC, SPEC.operation("getSelfSessions"), broken)
    assert failure.curl is not None
    assert "Authorization: $CUMULONIMBUS_TOKEN" in failure.curl
    assert "eyJ" not in failure.curl


# RateLimit-Remaining over a stream -------------------------------------------------------

LIST = SPEC.operation("getSelfSessions")
USER = "1647015028626"


def follow(tracker: RemainingTracker, *steps: tuple[Exchange, float, float], **kw: str) -> list:
    ip = kw.get("ip", "127.0.0.1")
    user = kw.get("user", USER)
    found = []
    for ex, started, finished in steps:
        op = find_operation(SPEC, ex.method, ex.url.split("/api", 1)[1])
        path = ex.url.split("/api", 1)[1].split("?")[0]
        found.append(tracker.observe(op, ex, path, ip, user, started, finished))
    return found


def test_remaining_going_down_by_one_is_fine() -> None:
    found = follow(RemainingTracker(SPEC), (exchange(remaining=99), 0, 1), (exchange(98), 2, 3))
    assert found == [None, None]


def test_remaining_that_does_not_go_down_fails_with_the_suites_wording() -> None:
    _, failure = follow(
        RemainingTracker(SPEC), (exchange(remaining=99), 0, 1), (exchange(99), 2, 3)
    )
    assert failure is not None
    assert (failure.check_id, failure.rule) == ("ratelimit.headers", REMAINING_RULE)
    assert (failure.expected, failure.actual) == (
        "RateLimit-Remaining 99 then 98",
        "RateLimit-Remaining 99 then 99",
    )


def test_methods_on_one_route_share_the_bucket() -> None:
    delete = exchange(
        remaining=98,
        method="DELETE",
        body='{"code": "DELETE_SESSIONS_SUCCESS", "message": "Sessions Successfully Deleted", '
        '"count": 0}',
    )
    _, failure = follow(RemainingTracker(SPEC), (exchange(remaining=99), 0, 1), (delete, 2, 3))
    assert failure is None
    delete.headers["RateLimit-Remaining"] = "99"
    _, failure = follow(RemainingTracker(SPEC), (exchange(remaining=99), 0, 1), (delete, 2, 3))
    assert failure is not None


def test_a_literal_route_is_a_bucket_of_its_own() -> None:
    session = (
        '{"id": "1790000011", "exp": 1790086411, "name": "x", "permissionFlags": null, '
        '"usedAt": null, "createdAt": "2026-09-21T12:00:11.000Z", '
        '"updatedAt": "2026-09-21T12:00:11.000Z"}'
    )
    current = exchange(remaining=99, path="/users/me/sessions/me", body=session)
    other = exchange(remaining=99, path="/users/me/sessions/1790000011", body=session)
    assert follow(RemainingTracker(SPEC), (current, 0, 1), (other, 2, 3)) == [None, None]


@pytest.mark.parametrize(
    ("second", "ip", "user", "started"),
    [
        pytest.param(exchange(99), "10.0.0.2", USER, 2, id="another-address"),
        pytest.param(exchange(99), "127.0.0.1", "1647015028627", 2, id="another-user"),
        pytest.param(exchange(99), "127.0.0.1", USER, 0.5, id="overlapping-requests"),
        pytest.param(exchange(99), "127.0.0.1", USER, 61, id="window-may-have-ended"),
        pytest.param(exchange(99, limit=4), "127.0.0.1", USER, 2, id="another-limit"),
        pytest.param(exchange(remaining=None), "127.0.0.1", USER, 2, id="not-counted"),
    ],
)
def test_steps_that_cannot_be_judged_are_not(
    second: Exchange, ip: str, user: str, started: float
) -> None:
    tracker = RemainingTracker(SPEC)
    follow(tracker, (exchange(remaining=99), 0, 1))
    (found,) = follow(tracker, (second, started, started + 0.1), ip=ip, user=user)
    assert found is None


def test_an_error_ends_what_is_known_of_the_bucket() -> None:
    """A 401 may have counted in the global bucket or the route's: not judged, and the
    next success starts afresh."""
    unauthorized = exchange(
        50, status=401, body='{"code": "INVALID_SESSION_ERROR", "message": "Invalid Session"}'
    )
    found = follow(
        RemainingTracker(SPEC),
        (exchange(remaining=99), 0, 1),
        (unauthorized, 2, 3),
        (exchange(remaining=40), 4, 5),
    )
    assert found == [None, None, None]


def test_reset_forgets_every_bucket() -> None:
    tracker = RemainingTracker(SPEC)
    follow(tracker, (exchange(remaining=99), 0, 1))
    tracker.reset()
    assert follow(tracker, (exchange(remaining=99), 2, 3)) == [None]


def test_the_traffic_rules_load_without_test_tools_or_the_mock() -> None:
    """The proxy imports them in a server process: no pytest, Schemathesis, Hypothesis,
    and (as for all of conformance/) never the mock."""
    import subprocess
    import sys

    code = (
        "import sys, conformance.traffic\n"
        "heavy = {'pytest', '_pytest', 'schemathesis', 'hypothesis', 'mockserver'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"
