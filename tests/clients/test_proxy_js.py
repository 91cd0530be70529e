"""Proxy mode with the official JS client (cumulonimbus-wrapper) as the front end: in front
of a server that breaks one rule, the proxy reports that rule's violation and nothing
else; in front of the mock, all twelve session operations pass without one."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from werkzeug.wrappers import Response

from mockserver.app import create_app
from mockserver.proxy import Proxy, Upstream, make_proxy_server
from tests.conformance.harness import Broken, Ledger, Seen, body_of, serve, set_body

from .conftest import ARTIFACTS, START, Mock, node_ready, require
from .jssteps import ALICE, STAFF_LOGIN, UNKNOWN_SID, answer, call, login, ok, ref, run

pytestmark = pytest.mark.usefixtures("node")


@pytest.fixture(scope="module")
def node() -> None:
    ready, reason = node_ready()
    require(ready, reason)


@contextlib.contextmanager
def proxied(app: Any) -> Iterator[tuple[Mock, str]]:
    """`app` served as the upstream, its clock frozen at START, the proxy in front of it.
    Yields a Mock whose API is the proxy's (its control API is the upstream's own) and the
    proxy's base URL."""
    with serve(app) as upstream:
        base = upstream.removesuffix("/api")
        requests.post(base + "/_mock/clock", json={"set": START, "frozen": True}, timeout=5)
        proxy = Proxy(Upstream.parse(upstream, 10))
        server = make_proxy_server(proxy, port=0)
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        front = f"http://127.0.0.1:{server.port}"
        try:
            yield ProxiedMock(base, front + "/api"), front
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)
            proxy.close()


class ProxiedMock(Mock):
    def __init__(self, base: str, api: str) -> None:
        super().__init__(base)
        self._api = api

    @property
    def api(self) -> str:
        return self._api


def violations(front: str) -> dict[str, Any]:
    data: dict[str, Any] = requests.get(front + "/_mock/violations", timeout=5).json()
    return data


# Servers that break one rule -------------------------------------------------------------


def no_cache_control_on_lists(seen: Seen, response: Response, ledger: Ledger) -> None:
    if seen.method == "GET" and seen.path == "/api/users/me/sessions":
        del response.headers["Cache-Control"]


def exp_as_string(seen: Seen, response: Response, ledger: Ledger) -> None:
    body = body_of(response)
    if seen.path == "/api/users/me/sessions/me" and response.status_code == 200:
        set_body(response, {**body, "exp": str(body["exp"])})


def remaining_stuck(seen: Seen, response: Response, ledger: Ledger) -> None:
    if seen.path == "/api/users/me/sessions/me" and "RateLimit-Remaining" in response.headers:
        response.headers["RateLimit-Remaining"] = "99"


def no_feature(seen: Seen, response: Response, ledger: Ledger) -> None:
    body = body_of(response)
    if response.status_code == 503 and isinstance(body, dict):
        set_body(response, {k: v for k, v in body.items() if k != "feature"})


LIST = call("a", "getSelfSessions", {})
CURRENT = call("a", "getSelfSession")


# (Not named `breakage`: tests/conformance/test_breakages.py gathers every test
# parametrised by that name in the session.)
@pytest.mark.parametrize(
    ("broken", "steps", "expected"),
    [
        pytest.param(
            no_cache_control_on_lists,
            [login("a"), LIST, CURRENT],
            ("headers.cache-control", "getSelfSessions"),
            id="headers.cache-control",
        ),
        pytest.param(
            exp_as_string,
            [login("a"), LIST, CURRENT],
            ("schema.body", "getSelfSession"),
            id="schema.body",
        ),
        pytest.param(
            remaining_stuck,
            [login("a"), CURRENT, CURRENT],
            ("ratelimit.headers", "getSelfSession"),
            id="ratelimit.headers-remaining",
        ),
        pytest.param(
            no_feature,
            [{"control": ["PUT", "/killswitches/4", {"state": True}]}, login("a")],
            ("schema.body", "login"),
            id="schema.body-503-feature",
        ),
    ],
)
def test_the_broken_rule_and_only_it_is_reported(
    broken: Any, steps: list[dict[str, Any]], expected: tuple[str, str]
) -> None:
    with proxied(Broken(create_app(), response=broken)) as (mock, front):
        outcomes = run(mock, steps)
        data = violations(front)
    assert len(outcomes) == len(steps)
    assert [(v["check"], v["operationId"]) for v in data["items"]] == [expected], data["items"]


def test_the_mock_through_the_proxy_passes_all_twelve_operations() -> None:
    steps = [
        login("a"),
        login("b"),
        call("a", "getSelfSession", id="mine"),
        call("a", "createScopedSession", "ci", 32, "password", id="scoped"),
        call("a", "getSelfSessions", {"limit": 10, "offset": 0}),
        call("a", "deleteSelfSession", ref("scoped.result.id")),
        call("a", "deleteSelfSessions", [UNKNOWN_SID]),
        *STAFF_LOGIN,
        call("carol", "getUserSessions", ALICE, {}),
        call("carol", "getUserSession", ALICE, ref("mine.result.id")),
        call("carol", "deleteUserSessions", ALICE, [UNKNOWN_SID]),
        call("a", "deleteAllSelfSessions"),
        call("carol", "deleteUserSession", ALICE, ref("mine.result.id")),
        login("c"),
        call("carol", "deleteAllUserSessions", ALICE, "password", id="again"),
        call("carol", "deleteAllUserSessions", ALICE, answer("again", "KRSXG5CTMVRXEZLU")),
    ]
    with proxied(create_app()) as (mock, front):
        outcomes = run(mock, steps)
        data = violations(front)
    refused = [o["error"]["code"] for o in outcomes if not o["ok"]]
    # Carol's login and her delete-all each ask for a second factor first.
    assert refused == ["SECOND_FACTOR_CHALLENGE_REQUIRED_ERROR"] * 2
    ok(outcomes[-1])
    assert data["items"] == []
    assert set(data["operations"]) >= {
        "login",
        "createScopedSession",
        "getSelfSession",
        "getUserSession",
        "getSelfSessions",
        "getUserSessions",
        "deleteSelfSession",
        "deleteUserSession",
        "deleteSelfSessions",
        "deleteUserSessions",
        "deleteAllSelfSessions",
        "deleteAllUserSessions",
    }


# A browser app through the proxy, and the dashboard's Contract panel ---------------------


def two_breakages(seen: Seen, response: Response, ledger: Ledger) -> None:
    exp_as_string(seen, response, ledger)
    no_cache_control_on_lists(seen, response, ledger)


def test_a_browser_app_through_the_proxy_and_the_contract_panel(
    browser_app: str, page: Any
) -> None:
    """The example browser app, on its own origin, works through the proxy (CORS as the
    mock's); the dashboard then lists what the broken upstream got wrong, without the
    token."""
    with proxied(Broken(create_app(), response=two_breakages)) as (mock, front):
        page.goto(f"{browser_app}/?api={mock.api}")
        page.click("#login-button")
        page.locator("#sessions li").first.wait_for()
        page.goto(front + "/_mock/")
        rows = page.locator("#violations tbody tr[data-check]")
        rows.nth(1).wait_for()
        summaries = page.locator("#violations details summary")
        for i in range(summaries.count()):
            summaries.nth(i).click()  # the curl lines, shown
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "proxy-contract.png"), full_page=True)
        checks = sorted(rows.nth(i).get_attribute("data-check") for i in range(rows.count()))
        text = page.locator("body").inner_text()
        data = violations(front)
    assert checks == ["headers.cache-control", "schema.body"]
    assert sorted((v["check"], v["operationId"]) for v in data["items"]) == [
        ("headers.cache-control", "getSelfSessions"),
        ("schema.body", "getSelfSession"),
    ]
    assert "2 violation(s)" in text
    assert "$CUMULONIMBUS_TOKEN" in text
    assert "curl -i -X GET" in text
    assert "eyJ" not in text  # every token is a JWT, and none is shown
