"""The dashboard at /_mock/ and the API reference at /_mock/docs, in headless Chromium
against the served mock (same origin), plus their routes through Flask's test client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
import yaml
from flask import Flask

from mockserver.app import create_app
from mockserver.spec import spec_dir

from .conftest import ARTIFACTS, START, Mock, serve_mock

SESSION_OPERATIONS = {
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


def screenshot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def open_dashboard(page: Any, url: str) -> None:
    page.goto(url)
    page.locator("body[data-loaded=true]").wait_for()


def message(page: Any) -> str:
    return str(page.locator("#message").inner_text())


# --- in the browser ------------------------------------------------------------------


def test_the_dashboard_shows_and_switches_the_behaviour_profile(mock: Mock, page: Any) -> None:
    open_dashboard(page, mock.control + "/")
    assert page.locator("body").get_attribute("data-profile") == ""
    try:
        page.select_option("#profile", "5.3.0")
        page.get_by_text("Now answering like the deployed service 5.3.0").wait_for()
        assert mock.call("GET", "/profile")["profile"] == "5.3.0"
        login = requests.post(mock.api + "/login", json={}, timeout=10)
        assert login.status_code == 500  # the service's bug, as deployed
        page.select_option("#profile", "")
        page.get_by_text("Now answering by the contract.").wait_for()
        assert mock.call("GET", "/profile")["profile"] is None
    finally:
        # The served mock outlives this test (a reset keeps the profile), and its journal
        # must not show the deliberate 500 to the fixture's check for server errors.
        mock.call("PUT", "/profile", {"profile": None})
        mock.call("DELETE", "/requests")


def test_a_kill_switch_toggled_in_the_dashboard_makes_the_api_answer_503(
    mock: Mock, page: Any
) -> None:
    open_dashboard(page, mock.control + "/")
    switch = page.locator('input[data-switch="4"]')
    assert not switch.is_checked()
    switch.click()
    page.get_by_text("ACCOUNT_LOGIN on: its operations answer 503").wait_for()
    assert page.locator('input[data-switch="4"]').is_checked()

    login = requests.post(
        mock.api + "/login", json={"username": "alice", "password": "password"}, timeout=10
    )
    assert login.status_code == 503
    assert login.json() == {
        "code": "SERVICE_UNAVAILABLE_ERROR",
        "message": "Service Unavailable",
        "feature": 4,
    }
    # The refused login shows up in the journal.
    page.click("#refresh")
    page.locator("#journal td.status", has_text="503").wait_for()
    screenshot(page, "dashboard-kill-switch")

    page.locator('input[data-switch="4"]').click()
    page.get_by_text("ACCOUNT_LOGIN off").wait_for()
    again = requests.post(
        mock.api + "/login", json={"username": "alice", "password": "password"}, timeout=10
    )
    assert again.status_code == 201


def test_the_dashboard_shows_users_sessions_and_buckets(mock: Mock, page: Any) -> None:
    login = requests.post(
        mock.api + "/login",
        json={"username": "dave", "password": "password"},
        headers={"X-Forwarded-For": "203.0.113.9"},
        timeout=10,
    )
    assert login.status_code == 201  # counted in the login bucket of that address
    token = requests.post(
        mock.api + "/login",
        json={"username": "alice", "password": "password"},
        headers={"X-Session-Name": "dashboard test"},
        timeout=10,
    ).json()["token"]
    requests.get(mock.api + "/users/me/sessions", headers={"Authorization": token}, timeout=10)

    open_dashboard(page, mock.control + "/")
    alice = page.locator('#users tr[data-user="alice"]')
    assert "dashboard test" in alice.inner_text()
    assert "totp" in page.locator('#users tr[data-user="bob"]').inner_text()
    buckets = page.locator("#ratelimits tbody").inner_text()
    # Buckets are routes, shared by every method on the path (observed rows 123-124).
    assert "203.0.113.9" in buckets and "/login" in buckets
    assert "/users/me/sessions" in buckets
    assert page.locator("#clock-detail").inner_text().startswith("(frozen,")
    screenshot(page, "dashboard")


def test_the_dashboard_advances_the_clock(mock: Mock, page: Any) -> None:
    open_dashboard(page, mock.control + "/")
    page.click("button[data-advance='300']")
    page.get_by_text("Clock moved 5 min ahead.").wait_for()
    assert mock.call("GET", "/clock")["now"] == START + 300
    page.fill("#advance-by", "45")
    page.click("#advance")
    page.get_by_text("Clock moved 45 s ahead.").wait_for()
    assert mock.call("GET", "/clock")["now"] == START + 345


def test_the_dashboard_resets_the_mock(mock: Mock, page: Any) -> None:
    requests.post(
        mock.api + "/login", json={"username": "alice", "password": "password"}, timeout=10
    )
    mock.call("PUT", "/killswitches/8", {"state": True})
    open_dashboard(page, mock.control + "/")
    assert page.locator('input[data-switch="8"]').is_checked()
    page.click("#reset")
    page.get_by_text("Reset: seed users").wait_for()
    assert mock.users()["alice"]["sessions"] == []
    assert not any(s["state"] for s in mock.call("GET", "/killswitches")["items"])
    assert mock.call("GET", "/clock")["frozen"] is False


@pytest.fixture
def guarded_mock() -> Iterator[str]:
    """A second served mock whose control API needs a token."""
    with serve_mock("--control-token", "s3cret") as base:
        yield base


def test_the_dashboard_respects_the_control_token(guarded_mock: str, page: Any) -> None:
    page.goto(guarded_mock + "/_mock/")
    page.get_by_text("This mock needs its control token").wait_for()
    assert page.locator("#users tbody tr").count() == 0

    page.fill("#token", "s3cret")
    page.locator("#token").dispatch_event("change")
    page.locator('#users tr[data-user="alice"]').wait_for()
    assert message(page) == ""


def test_the_dashboard_takes_the_token_once_from_the_address(guarded_mock: str, page: Any) -> None:
    open_dashboard(page, guarded_mock + "/_mock/?token=s3cret")
    assert "token" not in page.url  # taken out of the address bar and history
    page.reload()  # the tab keeps it
    page.locator("body[data-loaded=true]").wait_for()
    page.click("button[data-advance='60']")
    page.get_by_text("Clock moved 60 s ahead.").wait_for()


def test_the_docs_page_lists_the_12_session_operations(mock: Mock, page: Any) -> None:
    page.goto(mock.control + "/docs")
    page.locator(".opblock").first.wait_for()
    shown = set(page.locator(".opblock-summary-operation-id").all_inner_texts())
    assert shown >= SESSION_OPERATIONS
    tagged = page.locator("[id^='operations-sessions-'].opblock, [id^='operations-staff-'].opblock")
    assert tagged.count() == 12
    assert page.locator(".info .title").inner_text().startswith("Cumulonimbus session API")
    screenshot(page, "docs")


def test_the_docs_page_renders_the_control_api_too(mock: Mock, page: Any) -> None:
    page.goto(mock.control + "/docs?spec=control")
    page.locator(".opblock").first.wait_for()
    shown = set(page.locator(".opblock-summary-operation-id").all_inner_texts())
    assert {"reset", "setKillSwitch", "moveClock", "listRequests"} <= shown


# --- the routes ----------------------------------------------------------------------


@pytest.fixture
def app() -> Flask:
    return create_app({"TESTING": True})


@pytest.mark.parametrize(
    ("path", "mimetype"),
    [
        ("/_mock/", "text/html"),
        ("/_mock/docs", "text/html"),
        ("/_mock/static/dashboard/dashboard.js", "text/javascript"),
        ("/_mock/static/swagger-ui/swagger-ui-bundle.js", "text/javascript"),
        ("/_mock/static/swagger-ui/swagger-ui.css", "text/css"),
    ],
)
def test_pages_and_assets_are_served(app: Flask, path: str, mimetype: str) -> None:
    with app.test_client().get(path) as response:
        assert response.status_code == 200
        assert response.mimetype == mimetype


@pytest.mark.parametrize(
    ("path", "name"),
    [("/_mock/openapi.yaml", "sessions.yaml"), ("/_mock/control.yaml", "control.yaml")],
)
def test_the_specs_are_served(app: Flask, path: str, name: str) -> None:
    with app.test_client().get(path) as response:
        assert response.status_code == 200
        assert response.mimetype == "application/yaml"
        assert yaml.safe_load(response.data) == yaml.safe_load((spec_dir() / name).read_text())


def test_the_dashboard_is_at_a_trailing_slash(app: Flask) -> None:
    with app.test_client().get("/_mock?token=t") as response:
        assert response.status_code == 308
        assert response.headers["Location"].endswith("/_mock/?token=t")


def test_the_pages_load_nothing_from_elsewhere(app: Flask) -> None:
    client = app.test_client()
    for path in ("/_mock/", "/_mock/docs"):
        with client.get(path) as response:
            assert b"http://" not in response.data and b"https://" not in response.data


def test_no_control_means_no_dashboard() -> None:
    app = create_app({"TESTING": True, "CONTROL": False})
    with app.test_client().get("/_mock/") as response:
        assert response.status_code == 404
