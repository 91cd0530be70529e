"""examples/browser-app in headless Chromium: a page on one origin calling the mock on
another, through the browser's real CORS preflight."""

from __future__ import annotations

import re
from typing import Any

import requests

from mockserver.secondfactor import totp_code
from mockserver.seed import BOB_TOTP_SECRET

from .conftest import ARTIFACTS, START, Mock


def record_preflights(page: Any) -> dict[str, dict[str, Any]]:
    """Every CORS preflight the browser sends and what it got back, by request id, seen
    through the DevTools protocol (Playwright's own request events leave them out)."""
    preflights: dict[str, dict[str, Any]] = {}
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")

    def sent(event: dict[str, Any]) -> None:
        if event["request"]["method"] == "OPTIONS":
            preflights[event["requestId"]] = {"request": event["request"]}

    def received(event: dict[str, Any]) -> None:
        if event.get("type") == "Preflight" and event["requestId"] in preflights:
            preflights[event["requestId"]]["response"] = event["response"]

    cdp.on("Network.requestWillBeSent", sent)
    cdp.on("Network.responseReceived", received)
    return preflights


def rate_limit_shown(page: Any, header: str) -> str:
    return str(page.locator(f'#ratelimit tr[data-header="{header}"] td').nth(1).inner_text())


def test_log_in_list_and_revoke_a_session_across_origins(
    mock: Mock, browser_app: str, page: Any
) -> None:
    other = requests.post(
        mock.api + "/login",
        json={"username": "alice", "password": "password"},
        headers={"X-Session-Name": "alice's phone"},
        timeout=10,
    )
    assert other.status_code == 201
    preflights = record_preflights(page)

    page.goto(f"{browser_app}/?api={mock.api}")
    page.click("#login-button")
    sessions = page.locator("#sessions li")
    sessions.nth(1).wait_for()
    assert sessions.count() == 2
    assert page.locator("#session-count").inner_text() == "(2)"
    mine = page.locator("#sessions li:has(.current) .name").inner_text()
    # Named from the browser's own User-Agent, as the service's device detector does.
    assert re.fullmatch(r"(Headless )?Chrome v\d+ on GNU/Linux", mine), mine
    assert rate_limit_shown(page, "RateLimit-Limit") == "100"
    assert rate_limit_shown(page, "RateLimit-Remaining") == "99"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-app-signed-in.png"), full_page=True)

    page.locator("#sessions li", has_text="alice's phone").get_by_role("button").click()
    page.locator("#sessions li", has_text="alice's phone").wait_for(state="detached")
    assert page.locator("#session-count").inner_text() == "(1)"
    assert page.locator("#status").inner_text().startswith("GET /users/me/sessions?limit=50 → 200")
    assert [s["name"] for s in mock.users()["alice"]["sessions"]] == [mine]

    # The token in Authorization makes every call non-simple: the browser asked first.
    (delete,) = [
        p
        for p in preflights.values()
        if p["request"]["headers"].get("Access-Control-Request-Method") == "DELETE"
    ]
    assert delete["request"]["url"].startswith(mock.api + "/users/me/sessions/")
    assert delete["request"]["headers"]["Origin"] == browser_app
    assert "authorization" in delete["request"]["headers"]["Access-Control-Request-Headers"]
    assert delete["response"]["status"] == 204
    allowed = {k.lower(): v for k, v in delete["response"]["headers"].items()}
    # Any origin, answered with `*` as the service does (observed row 6).
    assert allowed["access-control-allow-origin"] == "*"
    assert "RateLimit-Remaining" in allowed["access-control-expose-headers"]


def test_log_in_with_a_second_factor(mock: Mock, browser_app: str, page: Any) -> None:
    page.goto(f"{browser_app}/?api={mock.api}")
    page.fill("#username", "bob")
    page.click("#login-button")
    page.locator("#code").wait_for()
    assert "SECOND_FACTOR_CHALLENGE_REQUIRED_ERROR" in page.locator("#status").inner_text()
    # The challenge is not counted (observed row 19), so it carries no RateLimit-Limit.
    page.fill("#code", totp_code(BOB_TOTP_SECRET, START))
    page.click("#login-button")
    page.locator("#sessions li").first.wait_for()
    assert page.locator("#session-count").inner_text() == "(1)"
    assert len(mock.users()["bob"]["sessions"]) == 1


def test_errors_show_their_code_and_message(mock: Mock, browser_app: str, page: Any) -> None:
    page.goto(f"{browser_app}/?api={mock.api}")
    page.fill("#password", "wrong")
    page.click("#login-button")
    status = page.locator("#status.error")
    status.wait_for()
    assert status.inner_text() == "POST /login → 404 INVALID_USER_ERROR: Invalid User"
