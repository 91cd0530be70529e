"""Unit tests of the suite's pieces that need no server."""

from __future__ import annotations

import collections
import itertools
import subprocess
import time
import types
from typing import Any

from conformance.cases import cases
from conformance.client import Client
from conformance.exchange import Exchange, token_claims
from conformance.failures import CheckFailure
from conformance.pacing import Pacer
from conformance.redact import Redactor
from conformance.spec import RateLimit, load_spec
from conformance.target import control_root, totp


def test_totp_matches_rfc_6238() -> None:
    # RFC 6238 appendix B, SHA-1, T = 59 s: 94287082 (8 digits).
    assert totp("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", 59) == "287082"


def test_control_api_sits_beside_the_api() -> None:
    assert control_root("http://127.0.0.1:8000/api") == "http://127.0.0.1:8000/_mock"
    assert control_root("https://h.example/x/api/") == "https://h.example/x/_mock"


def test_pacer_waits_for_the_oldest_of_the_last_three() -> None:
    pacer = Pacer()
    key = (("route",), 3, 1.0)
    for t in (0.0, 0.1, 0.2):
        pacer._sent[key[0]].append(t)
    assert pacer.delay([key], 0.5) == 0.5
    assert pacer.delay([key], 1.05) == 0


def test_pacer_books_its_waits_under_the_window_that_held_the_request_back() -> None:
    slept: list[float] = []
    pacer = Pacer(sleep=slept.append)
    full = (("global", "alice"), 1, 60.0)
    free = (("route", "/login", "alice"), 3, 1.0)
    pacer._sent[full[0]].append(time.monotonic() - 59.9)  # frees up in 0.1 s
    pacer.acquire([full, free], "GET /")
    assert slept and pacer.ledger.seconds["100-per-minute pacing"] == sum(slept)
    assert pacer.ledger.seconds["burst pacing"] == 0


def test_token_claims_reads_the_payload() -> None:
    token = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiIxNjQ3MDE1MDI4NjI2IiwiaWF0IjoxfQ.c2ln"
    assert token_claims(token) == {"sub": "1647015028626", "iat": 1}
    assert token_claims("garbage") == {}


def test_curl_reproduces_the_request() -> None:
    exchange = Exchange(
        "DELETE",
        "http://h/api/users/me/sessions",
        {"Authorization": "t.o.k", "User-Agent": "x"},
        '{"ids": ["me"]}',
        200,
        collections.defaultdict(str),
        "{}",  # type: ignore[arg-type]
    )
    assert exchange.curl() == (
        "curl -i -X DELETE http://h/api/users/me/sessions -H 'Authorization: t.o.k' "
        '--data-raw \'{"ids": ["me"]}\''
    )


def test_a_failure_names_check_operation_expectation_and_curl() -> None:
    text = CheckFailure(
        "scope.denied", "getSelfSessions (GET /x)", "rule", "403", "200 {}", "curl x"
    ).render()
    assert text.splitlines() == [
        "[scope.denied] getSelfSessions (GET /x): rule",
        "  expected: 403",
        "  actual:   200 {}",
        "  reproduce: curl x",
    ]


def test_checks_follow_the_spec_policies() -> None:
    spec = load_spec()
    found = {(c.check.id, c.op.id) for c in cases("scenario")}
    staff_ops = {op.id for op in spec.operations if op.staff_only}
    assert {op for check, op in found if check == "staff.non-staff"} == staff_ops
    switched = {op.id for op in spec.operations if op.kill_switches}
    assert {op for check, op in found if check == "killswitch.operation"} == switched
    assert ("scope.browser-only", "createScopedSession") in found
    assert ("ratelimit.login-404-not-counted", "login") in found
    assert not any(check == "scope.denied" and op == "login" for check, op in found)


LOGIN = RateLimit(4, 300.0, (404,), ("SECOND_FACTOR_CHALLENGE_REQUIRED_ERROR",), route="/login")
SCOPED = RateLimit(4, 300.0, (500, 501, 503), route="/users/me/sessions")
LIST = RateLimit(100, 60.0, (500, 501, 503), route="/users/me/sessions")


def _client() -> Client:
    return Client(
        "http://h/api",
        route_limits={
            "POST /login": LOGIN,
            "POST /users/me/sessions": SCOPED,
            "GET /users/me/sessions": LIST,
        },
    )


def _headers(limit: int, remaining: int, reset: int, **extra: str) -> dict[str, str]:
    return {
        "RateLimit-Limit": str(limit),
        "RateLimit-Remaining": str(remaining),
        "RateLimit-Reset": str(reset),
        **extra,
    }


def test_client_keeps_to_the_route_budgets_of_the_spec() -> None:
    """A second-factor answer counts in the login bucket like any login."""
    client = _client()
    for body in ({"username": "u"}, {"2fa": {"token": "t"}}):
        keys = client._keys("POST /login", None, body, "/login")
        login = [k for k in keys if k[0][0] == "route-limit"]
        assert login == [(("route-limit", "/login", "anonymous"), 4, 300.0)]


def test_methods_on_one_route_share_one_bucket() -> None:
    client = _client()
    assert client.bucket_key("POST /users/me/sessions", None, "/users/me/sessions") == (
        client.bucket_key("GET /users/me/sessions", None, "/users/me/sessions")
    )


def test_client_counts_a_route_budget_only_when_the_route_counted() -> None:
    client = _client()
    key = ("route-limit", "/login", "anonymous")
    client.learn(None, 400, route="POST /login", body={}, headers=_headers(100, 99, 60))
    assert key not in client.buckets
    client.learn(None, 201, route="POST /login", body={}, headers=_headers(4, 0, 120))
    assert client.buckets[key].remaining == 0
    assert 119 < client.bucket_delay(key) <= 121


def test_a_bucket_opened_by_a_read_has_the_read_budget_for_every_method() -> None:
    """Opened by a GET (100 per minute), scoped-session creations are not held to 4."""
    client = _client()
    key = client.bucket_key("POST /users/me/sessions", None, "/users/me/sessions")
    client.learn(None, 200, route="GET /users/me/sessions", headers=_headers(100, 99, 60))
    for remaining in (98, 97, 96, 95):
        client.learn(
            None, 201, route="POST /users/me/sessions", headers=_headers(100, remaining, 59)
        )
    assert client.bucket_delay(key) == 0


def test_a_bucket_opened_by_a_small_budget_holds_its_reads_back() -> None:
    client = _client()
    key = client.bucket_key("GET /users/me/sessions", None, "/users/me/sessions")
    client.learn(None, 201, route="POST /users/me/sessions", headers=_headers(4, 0, 290))
    assert client.bucket_delay(key) > 280


def test_an_unpaced_series_waits_for_a_window_with_room_for_all_of_it() -> None:
    """ratelimit.accounting sends its series unpaced: with 1 of 4 left it must wait for
    the next window, with 2 left a series of 2 fits."""
    client = _client()
    key = client.bucket_key("GET /users/me/sessions", None, "/users/me/sessions")
    client.learn(None, 201, route="POST /users/me/sessions", headers=_headers(4, 1, 290))
    assert client.bucket_delay(key, room=1) == 0
    assert client.bucket_delay(key, room=2) > 280
    client.learn(None, 201, route="POST /users/me/sessions", headers=_headers(4, 2, 290))
    assert client.bucket_delay(key, room=2) == 0


def test_an_uncounted_answer_leaves_the_bucket_alone() -> None:
    client = _client()
    skipped = {"RateLimit-Skipped": "true"}
    client.learn(None, 404, route="POST /login", headers=skipped)
    assert client.buckets == {}


def test_a_body_the_validation_step_refuses_costs_no_route_budget() -> None:
    login = load_spec().operation("login")
    assert login.refused_by_validation({"username": 1})
    assert login.refused_by_validation([], has_body=True)
    assert login.refused_by_validation(None, has_body=False)
    assert not login.refused_by_validation({"username": "u", "password": "p"})


def test_a_deployment_run_does_not_send_a_generated_login_into_a_spent_window() -> None:
    client = _client()
    login = load_spec().operation("login")
    client.learn(None, 401, route="POST /login", headers=_headers(4, 0, 290))
    valid = {"username": "u", "password": "p"}
    assert client.budget_spent_for(login, None, valid)
    # Refused by validation before the route's limiter: still worth sending.
    assert not client.budget_spent_for(login, None, {"username": 1})


def test_a_generated_login_is_sent_while_its_window_has_budget() -> None:
    client = _client()
    login = load_spec().operation("login")
    client.learn(None, 401, route="POST /login", headers=_headers(4, 2, 290))
    assert not client.budget_spent_for(login, None, {"username": "u", "password": "p"})


JWT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiIxNjQ3MDE1MDI4NjI2IiwiaWF0IjoxfQ.c2lnbmF0dXJl"


def _redacted_exchange(redactor: Redactor) -> Exchange:
    return Exchange(
        "POST",
        "http://h/api/users/me/sessions",
        {"Authorization": JWT, "User-Agent": "x"},
        '{"password": "it\'s a secret", "name": "password"}',
        201,
        collections.defaultdict(str),  # type: ignore[arg-type]
        f'{{"token": "{JWT}", "name": "password"}}',
        redactor=redactor,
    )


def test_evidence_names_secrets_by_variable() -> None:
    redactor = Redactor()
    redactor.add_password("it's a secret", "CUMULONIMBUS_PASSWORD")
    exchange = _redacted_exchange(redactor)
    assert exchange.summary() == ('201 {"token": "$CUMULONIMBUS_TOKEN", "name": "password"}')
    curl = exchange.curl()
    assert JWT not in curl and "secret" not in curl
    assert '"Authorization: $CUMULONIMBUS_TOKEN"' in curl


def test_a_password_is_only_redacted_as_a_whole_value() -> None:
    redactor = Redactor()
    redactor.add_password("password")
    text = '{"password": "password"} a wrong password is refused; "passwords"'
    assert redactor.text(text) == (
        '{"password": "$CUMULONIMBUS_PASSWORD"} a wrong password is refused; "passwords"'
    )


def test_a_redacted_curl_line_runs_once_the_variables_are_set() -> None:
    """The shell expands the variables back into exactly the request that was sent."""
    redactor = Redactor()
    redactor.add_password("it's a secret", "CUMULONIMBUS_PASSWORD")
    exchange = _redacted_exchange(redactor)
    words = exchange.curl().removeprefix("curl ")
    done = subprocess.run(
        ["bash", "-c", f"printf '%s\\n' {words}"],
        env={"CUMULONIMBUS_TOKEN": JWT, "CUMULONIMBUS_PASSWORD": "it's a secret"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.splitlines() == [
        "-i",
        "-X",
        "POST",
        "http://h/api/users/me/sessions",
        "-H",
        f"Authorization: {JWT}",
        "--data-raw",
        '{"password": "it\'s a secret", "name": "password"}',
    ]


def test_show_secrets_leaves_the_evidence_as_sent() -> None:
    redactor = Redactor(enabled=False)
    redactor.add_password("it's a secret")
    exchange = _redacted_exchange(redactor)
    assert JWT in exchange.curl() and JWT in exchange.summary()
    assert "it" in exchange.curl() and "secret" in exchange.curl()


def test_a_token_of_any_shape_that_a_response_handed_out_is_redacted() -> None:
    redactor = Redactor()
    redactor.learn('{"token": "opaque-token-0123456789"}')
    assert redactor.text("Authorization: opaque-token-0123456789") == (
        "Authorization: $CUMULONIMBUS_TOKEN"
    )


def test_the_readme_lists_every_check_against_a_contract_rule() -> None:
    import re
    from pathlib import Path

    from conformance.catalog import all_checks

    readme = (Path(__file__).resolve().parents[2] / "conformance" / "README.md").read_text()
    table = readme.split("### The contract's rules and the checks that cover them", 1)[1]
    rows = [line for line in table.splitlines() if line.startswith("| ") and "`" in line]
    listed = {i for row in rows for i in re.findall(r"`([a-z0-9-]+\.[a-z0-9-]+)`", row)}
    registered = {c.id for c in all_checks()} | {"fuzz.positive", "fuzz.negative"}
    assert registered - listed == set(), "checks the README's table does not list"
    assert listed - registered == set(), "ids in the README's table that are no check"


def _paced_client() -> Client:
    spec = load_spec()
    limits = {op.label: op.rate_limit for op in spec.operations if op.rate_limit is not None}
    # As the target wires it: 4xx answers here come before the route's limiter.
    return Client(
        "http://127.0.0.1:9/api",
        route_limits=limits,
        passes_route_limiter=lambda label, status, code: status < 400,
    )


def _answered(client: Client, route: str, path: str, status: int) -> None:
    sent = client.pace(route, "t.o.k", None, path=path)
    headers = {"RateLimit-Limit": "100", "RateLimit-Remaining": "90", "RateLimit-Reset": "50"}
    client.learn("t.o.k", status, route=route, headers=headers, path=path, sent=sent)


def _delay(client: Client, route: str, path: str) -> float:
    keys = [k for k in client._keys(route, "t.o.k", None, path) if k[0][0] != "route-limit"]
    return client.pacer.delay(keys, time.monotonic())


def test_requests_counted_in_their_route_bucket_leave_other_routes_free() -> None:
    client = _paced_client()
    for _ in range(3):
        _answered(client, "GET /users/me/sessions", "/users/me/sessions", 200)
    # The route's own burst window is full; another route of the same user is not.
    assert _delay(client, "GET /users/me/sessions", "/users/me/sessions") > 0
    assert _delay(client, "GET /users/me/sessions/{sid}", "/users/me/sessions/1") == 0


def test_methods_of_one_route_share_its_burst_window_even_without_a_path() -> None:
    # Generated requests were paced by their method's label: three GETs of
    # /users/me/sessions/{sid} left a DELETE of the same bucket free to go, and the
    # server answered it with a burst 429.
    client = _paced_client()
    for _ in range(3):
        sent = client.pace("GET /users/me/sessions/{sid}", "t.o.k", None)
        client.learn("t.o.k", 200, route="GET /users/me/sessions/{sid}", sent=sent)
    assert _delay(client, "DELETE /users/me/sessions/{sid}", "/users/me/sessions/1") > 0


def test_a_literal_route_a_template_also_matches_keeps_that_routes_burst_window_too() -> None:
    # 5.3.0 routes DELETE /users/me/sessions/all by the {sid} template and counts it in
    # that bucket: fuzzed GETs of {sid} right after fuzzed delete-alls met a burst 429.
    client = _paced_client()
    for _ in range(3):
        _answered(client, "DELETE /users/me/sessions/all", "/users/me/sessions/all", 200)
    assert _delay(client, "GET /users/me/sessions/{sid}", "/users/me/sessions/1") > 0


def test_a_path_its_limiter_lists_as_its_own_route_leaves_the_template_route_free() -> None:
    # `me` is a bucket of its own on the service (observed rows 121-130): no shared window.
    client = _paced_client()
    for _ in range(3):
        _answered(client, "GET /users/me/sessions/{sid}", "/users/me/sessions/me", 200)
    assert _delay(client, "GET /users/me/sessions/{sid}", "/users/me/sessions/1") == 0


def test_a_token_that_may_be_revoked_is_paced_as_anonymous_too() -> None:
    # After a delete-all, the check of the suite's browser session went as alice only,
    # while the server counted it as anonymous in a burst window already full.
    import types

    from conformance.calls import Token
    from conformance.sessions import Sessions
    from conformance.target import Account

    client = _paced_client()
    target: Any = types.SimpleNamespace(spec=load_spec(), client=client)
    sessions = Sessions(target)
    token = Token("h.eyJzdWIiOiI3In0.s", "1", 0, Account("user", "alice", "pw"))
    sessions._browser["alice"] = token
    client.good_tokens.add(token.value)
    assert client._identities(token.value) == ["7"]
    sessions.forget()
    assert client._identities(token.value) == ["7", "anonymous"]


def _tidied(bulk_budget_back_in: float) -> list[str]:
    """What the clean-up sends for alice's 3 created sessions and her browser session,
    with the bulk-delete bucket's budget back in that many seconds (0: not spent)."""
    from conformance.calls import Token
    from conformance.pacing import BucketState
    from conformance.sessions import Sessions
    from conformance.target import Account

    client = _paced_client()
    target: Any = types.SimpleNamespace(
        spec=load_spec(), client=client, control=None, is_mock=False
    )
    sessions = Sessions(target)
    alice = Account("user", "alice", "pw")
    keeper = Token("h.eyJzdWIiOiI3In0.s", "1", 0, alice)
    sessions._browser["alice"] = keeper
    sessions.created = [keeper, *(Token(f"t{i}", str(10 + i), 0, alice) for i in range(3))]
    sessions._alive = lambda token: True  # type: ignore[method-assign]
    sent: list[str] = []
    sessions.send = lambda call, **kw: sent.append(call.op.id)  # type: ignore[method-assign,assignment,return-value]
    client.request = lambda method, path, **kw: sent.append(f"{method} {path}")  # type: ignore[method-assign,assignment,return-value]
    if bulk_budget_back_in:
        key = client.bucket_key("DELETE /users/me/sessions", keeper.value, "/users/me/sessions")
        client.buckets[key] = BucketState(4, 0, time.monotonic() + bulk_budget_back_in)
    sessions.cleanup()
    return sent


def test_the_clean_up_deletes_in_bulk_when_the_bulk_budget_is_there() -> None:
    assert _tidied(0) == ["deleteSelfSessions", "DELETE /users/me/sessions/me"]


def test_the_clean_up_deletes_one_by_one_rather_than_wait_minutes_for_the_bulk_budget() -> None:
    # A 5.3.0 run waited 4.7 minutes after its summary for the bucket that scoped-session
    # creations had spent; three deletes of another route take about a second.
    assert _tidied(200) == ["deleteSelfSession"] * 3 + ["DELETE /users/me/sessions/me"]
    assert _tidied(0.5) == ["deleteSelfSessions", "DELETE /users/me/sessions/me"]


def test_a_case_short_of_logins_lets_the_next_case_that_needs_none_go_first() -> None:
    from conformance.schedule import next_index

    # (group, logins) per case; the budget has room for one login.
    items = [("a", 2), ("a", 1), ("a", 0), ("b", 0)]

    def pick(start: int, room: int) -> int:
        return next_index(items, start, group=lambda i: i[0], logins=lambda i: i[1], room=room)

    assert pick(0, room=1) == 2  # two logins do not fit: the first case needing none
    assert pick(1, room=1) == 1  # one fits
    assert pick(0, room=2) == 0
    # Never out of its group (late cases stay late): no case in reach, so it waits.
    assert (
        next_index([("a", 1), ("b", 0)], 0, group=lambda i: i[0], logins=lambda i: i[1], room=0)
        == 0
    )
    assert pick(4, room=0) == 4  # past the end


_TOKEN_WINDOWS = [
    ("route", "/users/me/sessions", "token"),
    ("identity", "token"),
    ("global", "token"),
]


def test_server_errors_the_spec_says_are_not_counted_still_keep_the_route_burst() -> None:
    client = _paced_client()
    for _ in range(3):
        sent = client.pace("GET /users/me/sessions", "t.o.k", None, path="/users/me/sessions")
        client.learn("t.o.k", 500, route="GET /users/me/sessions", sent=sent)
    # Counted in the global windows (as the spec says) and, as a server may, the route's.
    sent = client.pacer._sent
    assert [len(sent[(kind, *rest)]) for kind, *rest in _TOKEN_WINDOWS] == [3, 3, 3]


def test_requests_refused_before_their_route_limiter_fill_the_users_global_burst() -> None:
    client = _paced_client()
    for _ in range(3):
        _answered(client, "GET /users/me/sessions", "/users/me/sessions", 400)
    # Counted in the global bucket: every route of that user waits for the burst.
    assert _delay(client, "GET /users/me/sessions/{sid}", "/users/me/sessions/1") > 0


def test_each_check_lives_in_the_module_of_its_group() -> None:
    # So that `-k scope` runs one file: checks/scope.py (delete-all: checks/delete_all.py).
    from conformance.catalog import all_checks

    misplaced = [
        f"{c.id} in {c.func.__module__}"
        for c in all_checks()
        if c.func.__module__ != f"conformance.checks.{c.group.replace('-', '_')}"
    ]
    assert misplaced == []


def test_a_check_id_is_written_once_in_its_decorator() -> None:
    # The registry hands a check its id: a copy in a check module could drift from it.
    import ast
    from pathlib import Path

    from conformance.catalog import all_checks

    ids = {c.id for c in all_checks()}
    checks = Path(__file__).resolve().parents[2] / "conformance" / "checks"
    written = []
    for path in sorted(checks.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        decorators = {
            id(node)
            for func in ast.walk(tree)
            if isinstance(func, ast.FunctionDef)
            for decorator in func.decorator_list
            for node in ast.walk(decorator)
        }
        written += [
            (node.value, id(node) in decorators)
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and node.value in ids
        ]
    assert sorted(written) == sorted((i, True) for i in ids)


def test_a_failure_without_an_id_gets_the_running_checks() -> None:
    from conformance.failures import fail
    from conformance.registry import Check, check

    @check("unit.claims")
    def claims(ctx: object, op: object, variant: object) -> None:
        raise fail(load_spec().operation("login"), "a rule", "this", None, "that")

    from conformance.registry import REGISTRY

    registered: Check = REGISTRY.pop("unit.claims")
    try:
        registered.func(None, None, None)
    except CheckFailure as failure:
        assert failure.check_id == "unit.claims"
        assert str(failure).startswith("[unit.claims] login (POST /login): a rule")
    else:
        raise AssertionError("the check did not fail")


class _Item:
    """What the run order reads of a collected case."""

    def __init__(self, case: object) -> None:
        self.callspec = types.SimpleNamespace(params={"scenario": case})


def test_cases_that_spend_logins_are_spread_through_the_run() -> None:
    from conformance.plan import Plan
    from conformance.plugin import _run_order, _spread_logins

    spec = load_spec()
    items: list[Any] = [_Item(case) for case in cases("scenario")]
    items.sort(key=_run_order)
    spread = _spread_logins(items)
    assert sorted(map(id, spread)) == sorted(map(id, items))  # nothing lost or doubled
    first_group = [item for item in spread if _run_order(item) == (False, False)]
    logins = [
        i
        for i, item in enumerate(first_group)
        if Plan.of([item.callspec.params["scenario"]], spec, accounts=0).logins > 0
    ]
    # Side by side they made the run wait out one login window after another.
    assert len(logins) >= 3
    fair_share = len(first_group) / len(logins)
    assert min(b - a for a, b in itertools.pairwise(logins)) > fair_share / 2
