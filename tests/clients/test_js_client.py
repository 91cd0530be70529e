"""The official JavaScript client (cumulonimbus-wrapper, pinned in clients/js/) against the
served mock: every session method it has, what it returns, its rate-limit data and the
error classes it throws. The client runs unchanged in Node; each test hands
``clients/js/run-steps.mjs`` a list of steps and judges the JSON it prints."""

from __future__ import annotations

from typing import Any

import pytest

from mockserver.seed import BOB_TOTP_SECRET, CAROL_TOTP_SECRET, DEMO_BACKUP_CODES

from .conftest import START, Mock, node_ready, require
from .jssteps import (
    ALICE,
    BOB,
    STAFF_LOGIN,
    UNKNOWN_SID,
    answer,
    call,
    failed,
    login,
    ok,
    ref,
    run,
    totp,
)

pytestmark = pytest.mark.usefixtures("node")

TEN_YEARS = 315_576_000
DEFAULT_LIMIT = {"limit": 100, "remaining": 99, "reset": 60}


@pytest.fixture(scope="module")
def node() -> None:
    ready, reason = node_ready()
    require(ready, reason)


def last_request(mock: Mock) -> dict[str, Any]:
    return [e for e in mock.journal() if e["path"].startswith("/api/")][-1]


# --- static login --------------------------------------------------------------------


def test_login_returns_a_client_for_a_new_browser_session(mock: Mock) -> None:
    outcomes = run(mock, [login("a"), call("a", "getSelfSession")])
    assert ok(outcomes[0])["token"].count(".") == 2
    current = ok(outcomes[1])
    assert current["status"] == 200
    assert current["result"]["permissionFlags"] is None
    # Node's fetch sends the client's own User-Agent, which no device detector knows.
    assert current["result"]["name"] == "Unknown Browser on an Unknown OS"
    assert current["ratelimit"] == DEFAULT_LIMIT


def test_login_sends_the_token_as_is_without_bearer(mock: Mock) -> None:
    outcomes = run(mock, [login("a"), call("a", "getSelfSessions", {})])
    ok(outcomes[1])
    entry = last_request(mock)
    assert entry["status"] == 200
    assert entry["requestHeaders"]["User-Agent"] == "Cumulonimbus-Wrapper/5.1.0"


@pytest.mark.parametrize(
    "second_factor",
    [
        pytest.param({"type": "totp", "code": totp(BOB_TOTP_SECRET)}, id="totp"),
        pytest.param({"type": "backup", "code": DEMO_BACKUP_CODES[0]}, id="backup-code"),
    ],
)
def test_login_answers_a_second_factor_challenge(mock: Mock, second_factor: dict[str, str]) -> None:
    outcomes = run(
        mock,
        [
            {"id": "challenge", "login": ["bob", "password"]},
            {"id": "b", "login": ["bob", {"token": ref("challenge.error.token"), **second_factor}]},
            call("b", "getSelfSession"),
        ],
    )
    challenge = failed(
        outcomes[0],
        "SecondFactorChallengeRequiredError",
        "SECOND_FACTOR_CHALLENGE_REQUIRED_ERROR",
        "Second Factor Challenge Required",
    )
    assert challenge["types"] == ["totp", "backup"]
    assert challenge["exp"] == START + 1 + 300
    # The challenge is not counted (RateLimit-Skipped, observed row 19): the client sees
    # no rate-limit data on it.
    assert challenge["ratelimit"] is None
    ok(outcomes[1])
    assert ok(outcomes[2])["result"]["id"] == mock.users()["bob"]["sessions"][0]["id"]


def test_login_with_remember_me_lasts_ten_years(mock: Mock) -> None:
    outcomes = run(mock, [{"id": "a", "login": ["alice", "password", True]}])
    ok(outcomes[0])
    (session,) = mock.users()["alice"]["sessions"]
    assert session["exp"] == START + 1 + TEN_YEARS


# --- createScopedSession -------------------------------------------------------------


def test_create_scoped_session(mock: Mock) -> None:
    outcomes = run(
        mock,
        [
            login("a"),
            call("a", "createScopedSession", "ci", 32, "password", True, id="scoped"),
            {"id": "s", "token": ref("scoped.result.token")},
            call("s", "getSelfSession"),
        ],
    )
    created = ok(outcomes[1])
    assert created["status"] == 201
    result = created["result"]
    assert (result["name"], result["permissionFlags"], result["usedAt"]) == ("ci", 32, None)
    assert result["exp"] == START + 2 + TEN_YEARS
    assert created["ratelimit"] == {"limit": 4, "remaining": 3, "reset": 300}
    assert ok(outcomes[3])["result"]["id"] == result["id"]


def test_a_scoped_session_is_refused_what_its_flags_do_not_allow(mock: Mock) -> None:
    outcomes = run(
        mock,
        [
            login("a"),
            call("a", "createScopedSession", "read only", 32, "password", id="scoped"),
            {"id": "s", "token": ref("scoped.result.token")},
            call("s", "deleteSelfSession"),
        ],
    )
    failed(
        outcomes[3], "ResponseError", "INSUFFICIENT_PERMISSIONS_ERROR", "Insufficient Permissions"
    )
    assert last_request(mock)["status"] == 403


def test_create_scoped_session_with_a_second_factor(mock: Mock) -> None:
    outcomes = run(
        mock,
        [
            {"id": "challenge", "login": ["bob", "password"]},
            {"id": "b", "login": ["bob", answer("challenge")]},
            call("b", "createScopedSession", "uploader", 2, "password", id="again"),
            call("b", "createScopedSession", "uploader", 2, answer("again")),
        ],
    )
    failed(
        outcomes[2],
        "SecondFactorChallengeRequiredError",
        "SECOND_FACTOR_CHALLENGE_REQUIRED_ERROR",
        "Second Factor Challenge Required",
    )
    assert ok(outcomes[3])["result"]["permissionFlags"] == 2


def test_create_scoped_session_without_a_name_is_a_missing_fields_error(mock: Mock) -> None:
    outcomes = run(mock, [login("a"), call("a", "createScopedSession", None, 32, "password")])
    error = failed(outcomes[1], "MissingFieldsError", "MISSING_FIELDS_ERROR", "Missing Fields")
    assert error["fields"] == ["name"]


# --- getSelfSession(s) ---------------------------------------------------------------


def test_get_self_session_by_id(mock: Mock) -> None:
    outcomes = run(
        mock,
        [
            login("a"),
            login("b"),
            call("b", "getSelfSession", id="b"),
            call("a", "getSelfSession", ref("b.result.id")),
        ],
    )
    other = ok(outcomes[2])["result"]
    seen = ok(outcomes[3])
    assert seen["result"] == other  # reading a session by id does not touch its usedAt
    # Both clients are alice from one address, but /users/me/sessions/me (read by "b") is a
    # route of its own, apart from /users/me/sessions/{sid} (observed rows 121-122).
    assert seen["ratelimit"] == {"limit": 100, "remaining": 99, "reset": 60}


def test_get_self_sessions_with_limit_and_offset(mock: Mock) -> None:
    outcomes = run(
        mock,
        [
            login("a"),
            login("b"),
            login("c"),
            call("a", "getSelfSessions", {}),
            call("a", "getSelfSessions", {"limit": 1, "offset": 1}),
        ],
    )
    everything = ok(outcomes[3])["result"]
    assert everything["count"] == 3
    ids = [item["id"] for item in everything["items"]]
    assert ids == sorted(ids, reverse=True)  # newest first
    page = ok(outcomes[4])
    assert page["result"] == {"count": 3, "items": [everything["items"][1]]}
    assert page["ratelimit"] == {"limit": 100, "remaining": 98, "reset": 59}
    assert last_request(mock)["query"] == "limit=1&offset=1"


def test_get_self_sessions_without_options_throws_in_the_client(mock: Mock) -> None:
    """Client quirk: ``getSelfSessions()`` with no argument fails before sending anything."""
    outcomes = run(mock, [login("a"), call("a", "getSelfSessions")])
    assert outcomes[1]["error"]["class"] == "TypeError"
    assert last_request(mock)["operationId"] == "login"


# --- deletes -------------------------------------------------------------------------


def test_delete_self_session_by_id(mock: Mock) -> None:
    outcomes = run(
        mock,
        [
            login("a"),
            login("b"),
            call("b", "getSelfSession", id="b"),
            call("a", "deleteSelfSession", ref("b.result.id")),
            call("a", "getSelfSession", ref("b.result.id")),
        ],
    )
    assert ok(outcomes[3])["result"] == {
        "code": "DELETE_SESSION_SUCCESS",
        "message": "Session Successfully Deleted",
    }
    failed(outcomes[4], "ResponseError", "INVALID_SESSION_ERROR", "Invalid Session")
    assert last_request(mock)["status"] == 404


@pytest.mark.parametrize("sid", ["999", "abc", "all"])
def test_an_unknown_session_id_of_any_shape_is_invalid_session(mock: Mock, sid: str) -> None:
    # Observed rows 73-75: the service routes any segment as an id, so the client sees
    # the same error class as for a well-formed id that names nothing.
    outcomes = run(mock, [login("a"), call("a", "getSelfSession", sid)])
    failed(outcomes[1], "ResponseError", "INVALID_SESSION_ERROR", "Invalid Session")
    assert last_request(mock)["status"] == 404


def test_delete_current_session_revokes_the_clients_token(mock: Mock) -> None:
    outcomes = run(mock, [login("a"), call("a", "deleteSelfSession"), call("a", "getSelfSession")])
    ok(outcomes[1])
    error = failed(outcomes[2], "ResponseError", "INVALID_SESSION_ERROR", "Invalid Session")
    assert error["ratelimit"]["limit"] == 100
    assert last_request(mock)["status"] == 401


def test_delete_self_sessions(mock: Mock) -> None:
    outcomes = run(
        mock,
        [
            login("a"),
            login("b"),
            login("c"),
            call("b", "getSelfSession", id="b"),
            call("c", "getSelfSession", id="c"),
            call("a", "deleteSelfSessions", [ref("b.result.id"), ref("c.result.id"), UNKNOWN_SID]),
        ],
    )
    assert ok(outcomes[5])["result"] == {
        "code": "DELETE_SESSIONS_SUCCESS",
        "message": "Sessions Successfully Deleted",
        "count": 2,
    }
    assert len(mock.users()["alice"]["sessions"]) == 1


def test_delete_all_self_sessions_keeps_the_current_one(mock: Mock) -> None:
    outcomes = run(
        mock,
        [login("a"), login("b"), login("c"), call("a", "deleteAllSelfSessions")],
    )
    assert ok(outcomes[3])["result"]["count"] == 2
    assert len(mock.users()["alice"]["sessions"]) == 1
    assert last_request(mock)["query"] == ""


def test_delete_all_self_sessions_include_self_is_sent_as_include_self_camel_case(
    mock: Mock,
) -> None:
    """Client quirk: ``deleteAllSelfSessions(true)`` sends ``?includeSelf=true``, which the
    service does not read (it reads ``include-self``), so the current session stays."""
    outcomes = run(
        mock,
        [
            login("a"),
            login("b"),
            call("a", "deleteAllSelfSessions", True),
            call("a", "getSelfSession"),
        ],
    )
    assert ok(outcomes[2])["result"]["count"] == 1
    ok(outcomes[3])
    entry = [e for e in mock.journal() if e["operationId"] == "deleteAllSelfSessions"][-1]
    assert entry["query"] == "includeSelf=true"


# --- staff ---------------------------------------------------------------------------


def test_staff_get_user_sessions_with_limit_and_offset(mock: Mock) -> None:
    outcomes = run(
        mock,
        [
            login("a"),
            login("b"),
            *STAFF_LOGIN,
            call("carol", "getUserSessions", ALICE, {"limit": 1, "offset": 1}),
        ],
    )
    page = ok(outcomes[-1])
    alice = mock.users()["alice"]["sessions"]
    assert page["result"]["count"] == 2
    assert [item["id"] for item in page["result"]["items"]] == [
        min(session["id"] for session in alice)
    ]
    # Staff operations have no route limiter: the global bucket (100 a minute) answers.
    assert page["ratelimit"] == DEFAULT_LIMIT


def test_staff_get_user_session(mock: Mock) -> None:
    outcomes = run(
        mock,
        [
            login("a"),
            call("a", "getSelfSession", id="mine"),
            *STAFF_LOGIN,
            call("carol", "getUserSession", ALICE, ref("mine.result.id")),
        ],
    )
    seen = ok(outcomes[-1])["result"]
    assert seen["id"] == outcomes[1]["result"]["id"]
    assert seen["name"] == "Unknown Browser on an Unknown OS"


def test_staff_delete_user_session(mock: Mock) -> None:
    outcomes = run(
        mock,
        [
            login("a"),
            call("a", "getSelfSession", id="mine"),
            *STAFF_LOGIN,
            call("carol", "deleteUserSession", ALICE, ref("mine.result.id")),
            call("a", "getSelfSession"),
        ],
    )
    assert ok(outcomes[-2])["result"]["code"] == "DELETE_SESSION_SUCCESS"
    failed(outcomes[-1], "ResponseError", "INVALID_SESSION_ERROR", "Invalid Session")


def test_staff_delete_user_sessions(mock: Mock) -> None:
    outcomes = run(
        mock,
        [
            login("a"),
            login("b"),
            call("a", "getSelfSession", id="mine"),
            *STAFF_LOGIN,
            call("carol", "deleteUserSessions", ALICE, [ref("mine.result.id"), UNKNOWN_SID]),
        ],
    )
    assert ok(outcomes[-1])["result"]["count"] == 1
    assert len(mock.users()["alice"]["sessions"]) == 1


def test_staff_delete_all_user_sessions_reverifies_with_a_second_factor(mock: Mock) -> None:
    outcomes = run(
        mock,
        [
            login("a"),
            login("b"),
            *STAFF_LOGIN,
            call("carol", "deleteAllUserSessions", ALICE, "password", id="again"),
            call("carol", "deleteAllUserSessions", ALICE, answer("again", CAROL_TOTP_SECRET)),
        ],
    )
    challenge = failed(
        outcomes[-2],
        "SecondFactorChallengeRequiredError",
        "SECOND_FACTOR_CHALLENGE_REQUIRED_ERROR",
        "Second Factor Challenge Required",
    )
    assert challenge["types"] == ["totp", "backup"]
    assert ok(outcomes[-1])["result"]["count"] == 2
    assert mock.users()["alice"]["sessions"] == []


# --- the errors the client throws ----------------------------------------------------

ERRORS = [
    pytest.param(
        [{"id": "x", "token": "not-a-token"}, call("x", "getSelfSessions", {})],
        401,
        ("INVALID_SESSION_ERROR", "Invalid Session"),
        id="401-no-valid-session",
    ),
    pytest.param(
        [login("d", "dave"), call("d", "getUserSessions", ALICE, {})],
        401,
        ("ENDPOINT_REQUIRES_SECOND_FACTOR_ERROR", "Endpoint Requires Second Factor"),
        id="401-staff-without-second-factor",
    ),
    pytest.param(
        [login("a"), call("a", "createScopedSession", "x", 32, "wrong")],
        401,
        ("INVALID_PASSWORD_ERROR", "Invalid Password"),
        id="401-wrong-password-on-reverification",
    ),
    pytest.param(
        [login("a"), call("a", "getUserSessions", BOB, {})],
        403,
        ("INSUFFICIENT_PERMISSIONS_ERROR", "Insufficient Permissions"),
        id="403-not-staff",
    ),
    pytest.param(
        [login("m", "mallory")],
        403,
        ("BANNED_ERROR", "Banned"),
        id="403-banned",
    ),
    pytest.param(
        [{"id": "n", "login": ["nobody", "password"]}],
        404,
        ("INVALID_USER_ERROR", "Invalid User"),
        id="404-unknown-user-at-login",
    ),
    pytest.param(
        [login("a"), call("a", "getSelfSession", UNKNOWN_SID)],
        404,
        ("INVALID_SESSION_ERROR", "Invalid Session"),
        id="404-unknown-session",
    ),
    pytest.param(
        [*STAFF_LOGIN, call("carol", "getUserSession", "1000000000000", UNKNOWN_SID)],
        404,
        ("INVALID_USER_ERROR", "Invalid User"),
        id="404-unknown-user-for-staff",
    ),
]


@pytest.mark.parametrize(("steps", "status", "error"), ERRORS)
def test_api_errors_are_response_errors(
    mock: Mock, steps: list[dict[str, Any]], status: int, error: tuple[str, str]
) -> None:
    outcomes = run(mock, steps)
    failed(outcomes[-1], "ResponseError", *error)
    assert last_request(mock)["status"] == status


def test_route_rate_limit_429_is_a_response_error_with_its_ratelimit(mock: Mock) -> None:
    steps = [login("a")] + [
        call("a", "createScopedSession", f"s{n}", 32, "password") for n in range(5)
    ]
    outcomes = run(mock, steps)
    assert [o["ok"] for o in outcomes[1:]] == [True] * 4 + [False]
    error = failed(
        outcomes[-1],
        "ResponseError",
        "RATELIMITED_ERROR",
        "You Have Been Ratelimited. Please Try Again Later.",
    )
    assert error["ratelimit"] == {"limit": 4, "remaining": 0, "reset": 296}
    assert last_request(mock)["status"] == 429
    assert last_request(mock)["responseHeaders"]["RateLimit-Reason"] == "standard"


def test_burst_429_is_a_response_error(mock: Mock) -> None:
    outcomes = run(mock, [login("a")] + [call("a", "getSelfSessions", {}) for _ in range(4)], 0)
    assert [o["ok"] for o in outcomes[1:]] == [True, True, True, False]
    error = failed(
        outcomes[-1],
        "ResponseError",
        "RATELIMITED_ERROR",
        "You Have Been Ratelimited. Please Try Again Later.",
    )
    assert error["ratelimit"]["limit"] == 100
    assert error["ratelimit"]["reset"] <= 1
    assert last_request(mock)["responseHeaders"]["RateLimit-Reason"] == "burst"


@pytest.mark.parametrize(
    ("switch", "before", "step"),
    [
        pytest.param(1, [login("a")], call("a", "deleteSelfSession"), id="ACCOUNT_MODIFY"),
        pytest.param(4, [], login("a"), id="ACCOUNT_LOGIN"),
        pytest.param(8, [], login("a"), id="GLOBAL"),
    ],
)
def test_kill_switch_503_is_a_response_error(
    mock: Mock, switch: int, before: list[dict[str, Any]], step: dict[str, Any]
) -> None:
    toggle = {"control": ["PUT", f"/killswitches/{switch}", {"state": True}]}
    outcomes = run(mock, [*before, toggle, step])
    error = failed(
        outcomes[-1], "ResponseError", "SERVICE_UNAVAILABLE_ERROR", "Service Unavailable"
    )
    assert error["feature"] == switch
    assert error["ratelimit"] is None  # a 503 is not counted: RateLimit-Skipped instead
    assert last_request(mock)["status"] == 503
