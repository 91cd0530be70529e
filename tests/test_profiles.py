"""Behaviour profiles (``--as-deployed``): off by default, switched by the control API,
kept by a reset, applied by one mechanism from the profile file, refused when malformed.

What the 5.3.0 profile answers row by row is proven by the fidelity replay
(tests/fidelity/test_replay.py); here are the behaviours no observed row shows.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from mockserver.app import create_app
from mockserver.clock import Clock
from mockserver.profiles import ProfileError, load_profile
from mockserver.spec import load_spec

from .conftest import Api, assert_error

AS_DEPLOYED = "5.3.0"


@pytest.fixture
def deployed(clock: Clock) -> Flask:
    return create_app({"CLOCK": clock, "TESTING": True, "PROFILE": AS_DEPLOYED})


def _profile(app: Flask, name: str | None) -> Any:
    return app.test_client().put("/_mock/profile", json={"profile": name})


def _empty_login(api: Api) -> Any:
    return api.call("POST", "/login", json={})


# Off, on, switched, kept -------------------------------------------------------------------


def test_without_the_flag_the_mock_follows_the_contract(app: Flask, api: Api) -> None:
    assert app.test_client().get("/_mock/profile").json == {
        "profile": None,
        "available": [AS_DEPLOYED],
        "deviations": [],
    }
    assert_error(_empty_login(api), 400, "MISSING_FIELDS_ERROR", "Missing Fields")


def test_with_the_profile_the_service_s_500_comes_back(deployed: Flask, clock: Clock) -> None:
    api = Api(deployed.test_client(), clock, "192.0.2.1")
    response = _empty_login(api)
    assert_error(response, 500, "INTERNAL_SERVER_ERROR", "Internal Server Error")
    # Counted in the login bucket, as the service counts it (observed row 31).
    assert response.headers["RateLimit-Limit"] == "4"
    assert response.headers["RateLimit-Remaining"] == "3"


def test_the_control_api_switches_the_profile_at_run_time(app: Flask, api: Api) -> None:
    switched = _profile(app, AS_DEPLOYED)
    assert switched.status_code == 200
    assert switched.json["profile"] == AS_DEPLOYED
    assert "login-without-credentials" in {d["id"] for d in switched.json["deviations"]}
    assert _empty_login(api.fresh_ip()).status_code == 500
    assert _profile(app, None).json["profile"] is None
    assert _empty_login(api.fresh_ip()).status_code == 400


def test_a_reset_keeps_the_profile(deployed: Flask, clock: Clock) -> None:
    assert deployed.test_client().post("/_mock/reset").status_code == 200
    assert deployed.test_client().get("/_mock/profile").json["profile"] == AS_DEPLOYED
    assert _empty_login(Api(deployed.test_client(), clock, "192.0.2.2")).status_code == 500


@pytest.mark.parametrize(
    "body",
    [{"profile": "4.0.0"}, {"profile": 5}, {}, {"profile": AS_DEPLOYED, "more": 1}],
    ids=["unknown", "not-a-name", "empty", "extra-key"],
)
def test_the_control_api_refuses_what_is_not_a_profile(app: Flask, body: Any) -> None:
    response = app.test_client().put("/_mock/profile", json=body)
    assert response.status_code == 400
    assert response.json["code"] == "INVALID_REQUEST_ERROR"
    assert app.test_client().get("/_mock/profile").json["profile"] is None


def test_an_unknown_profile_stops_the_mock(clock: Clock) -> None:
    with pytest.raises(ProfileError, match=re.escape("unknown profile '4.0.0' (known: 5.3.0)")):
        create_app({"CLOCK": clock, "PROFILE": "4.0.0"})


# Behaviours no observed row shows ----------------------------------------------------------


def _ban(app: Flask, username: str, banned: bool = True) -> None:
    response = app.test_client().patch(f"/_mock/users/{username}", json={"banned": banned})
    assert response.status_code == 200 and response.json["banned"] is banned


def test_by_the_contract_a_ban_ends_existing_sessions(app: Flask, api: Api) -> None:
    token = api.login()
    _ban(app, "alice")
    assert_error(api.call("GET", "/users/me/sessions/me", token), 403, "BANNED_ERROR", "Banned")


def test_as_deployed_a_banned_user_s_sessions_keep_working(deployed: Flask, clock: Clock) -> None:
    api = Api(deployed.test_client(), clock, "192.0.2.3", pace=1.0)
    token = api.login()
    _ban(deployed, "alice")
    assert api.call("GET", "/users/me/sessions/me", token).status_code == 200
    assert api.call("GET", "/users/me/sessions", token).status_code == 200
    # Only a new login is refused.
    refused = api.call("POST", "/login", json={"username": "alice", "password": "password"})
    assert_error(refused, 403, "BANNED_ERROR", "Banned")


def test_an_html_error_page_carries_no_rate_limit_and_counts_nowhere(
    deployed: Flask, clock: Clock
) -> None:
    api = Api(deployed.test_client(), clock, "192.0.2.4", pace=1.0)
    page = api.call("POST", "/login", data="username=alice", content_type="text/plain")
    assert page.status_code == 500
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "<pre>Internal Server Error</pre>" in page.get_data(as_text=True)
    assert not [h for h in page.headers.keys() if h.lower().startswith("ratelimit-")]  # noqa: SIM118
    # The global bucket of this address is untouched: the next refusal is its first.
    after = api.call("GET", "/users/me/sessions")
    assert after.headers["RateLimit-Remaining"] == "99"


def test_two_sessions_in_one_second_fail_and_leave_no_session(
    deployed: Flask, clock: Clock
) -> None:
    api = Api(deployed.test_client(), clock, "192.0.2.5", pace=0)
    clock.advance(1)
    api.login()
    second = api.call("POST", "/login", json={"username": "bob", "password": "password"})
    assert second.status_code == 401  # bob's challenge first: no session yet, no 500
    refused = api.call("POST", "/login", json={"username": "dave", "password": "password"})
    assert_error(refused, 500, "INTERNAL_SERVER_ERROR", "Internal Server Error")
    users = deployed.test_client().get("/_mock/users").json["items"]
    assert [u["sessions"] for u in users if u["username"] == "dave"] == [[]]
    clock.advance(1)
    assert (
        api.call("POST", "/login", json={"username": "dave", "password": "password"}).status_code
        == 201
    )


@pytest.mark.parametrize("start", [0.5 + k / 100 for k in range(50)])
def test_a_session_alone_in_its_second_is_not_failed_when_the_second_ends_meanwhile(
    start: float,
) -> None:
    """The rule judges the second the session was made in: a clock that ticks into the
    next second while the request is judged must not turn a lone session into a 500.
    Every read of this clock moves it on by 10 ms; one of the starts puts the end of the
    second between making the session and judging it."""
    ticks = iter(1_700_000_000 + start + 0.01 * n for n in range(10_000))
    ticking = Clock(source=lambda: next(ticks))
    app = create_app({"CLOCK": ticking, "TESTING": True, "PROFILE": AS_DEPLOYED})
    api = Api(app.test_client(), ticking, "192.0.2.6", pace=0)
    answer = api.call("POST", "/login", json={"username": "alice", "password": "password"})
    assert answer.status_code == 201, answer.get_json()


# The profile file --------------------------------------------------------------------------


def test_the_shipped_profile_loads() -> None:
    profile = load_profile(AS_DEPLOYED, load_spec())
    assert profile.name == AS_DEPLOYED
    assert profile.before and profile.around


GOOD_RULE = "  - {operations: [login], before: validation, answer: {status: 500}}\n"


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (GOOD_RULE.replace("validation", "validate"), "unknown steps \\['validate'\\]"),
        (GOOD_RULE.replace("[login]", "[logon]"), "unknown operations \\['logon'\\]"),
        (GOOD_RULE.replace("answer: {status: 500}", "skip: true, answer: {status: 500}"),
         "needs exactly one action"),
        (GOOD_RULE.replace("before: validation, ", ""), "needs either before"),
        (GOOD_RULE.replace("answer:", "when: {moon: full}, answer:"), "unknown condition 'moon'"),
        (GOOD_RULE.replace("{status: 500}", "{status: 500, code: NOPE_ERROR}"),
         "unknown error code 'NOPE_ERROR'"),
        (GOOD_RULE.replace("before: validation", "around: [operation]"),
         "an around rule says what the step raises"),
    ],
    ids=["step", "operation", "two-actions", "no-step", "condition", "code", "around"],
)  # fmt: skip
def test_a_profile_that_cannot_be_applied_is_refused(
    tmp_path: Path, rule: str, message: str
) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(
        "profile: x\nservice: x\ndeviations:\n- id: d\n  decision: '8.5'\n  mock: m\n"
        "  service: s\n  rows: []\n  rules:\n" + rule
    )
    with pytest.raises(ProfileError, match="profile x, deviation 'd', rule 1: " + message):
        load_profile("x", load_spec(), path)


def test_a_good_rule_loads(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(
        "profile: x\nservice: x\ndeviations:\n- id: d\n  decision: '8.5'\n  mock: m\n"
        "  service: s\n  rows: []\n  rules:\n" + GOOD_RULE
    )
    assert [r.deviation for r in load_profile("x", load_spec(), path).before["validation"]] == ["d"]


# The README --------------------------------------------------------------------------------

README = Path(__file__).resolve().parents[1] / "README.md"


def render_profile_table(name: str = AS_DEPLOYED) -> str:
    """The README's table of what ``--as-deployed NAME`` changes, made from the profile."""
    profile = load_profile(name, load_spec())
    lines = [
        "| deviation | contract decision | by the contract "
        f"| as deployed ({name}) | observed rows |",
        "|---|---|---|---|---|",
    ]
    for d in profile.deviations:
        rows = ", ".join(str(n) for n in d["rows"]) or "-"
        lines.append(f"| `{d['id']}` | {d['decision']} | {d['mock']} | {d['service']} | {rows} |")
    return "\n".join(lines)


def test_readme_shows_what_the_profile_changes() -> None:
    table = render_profile_table()
    assert table in README.read_text(encoding="utf-8"), (
        "README's 'Test against production as it is' table is out of date; it should read:\n"
        + table
    )
