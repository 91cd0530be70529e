"""Fixtures for the real-client tests: one served mock for the module (a subprocess, as a
front-end developer runs it), reset before each test with its clock frozen, and the
requirement checks that skip on a developer machine but fail in CI."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
# A multiple of 30 s, so that a TOTP code computed for START stays valid for every step of
# a test (the mock accepts codes up to two steps old).
START = 1_790_000_010


def require(condition: bool, reason: str) -> None:
    """Skip a test whose tools are missing on a developer machine; fail it in CI."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.05)  # waiting for a process to bind its port, not for a clock
    raise AssertionError(f"{url} did not answer within 30 s")


@dataclass
class Mock:
    """A served mock: its base URL and a few control API calls."""

    base: str

    @property
    def api(self) -> str:
        return self.base + "/api"

    @property
    def control(self) -> str:
        return self.base + "/_mock"

    def call(self, method: str, path: str, body: Any = None) -> Any:
        response = requests.request(method, self.control + path, json=body, timeout=10)
        assert response.ok, (method, path, response.status_code, response.text)
        return response.json()

    def journal(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.call("GET", "/requests?limit=1000")["items"]
        return items

    def users(self) -> dict[str, dict[str, Any]]:
        return {user["username"]: user for user in self.call("GET", "/users")["items"]}


@contextlib.contextmanager
def serve_mock(*args: str) -> Iterator[str]:
    """``python -m mockserver`` in a subprocess on a free port; yields its base URL."""
    port = free_port()
    command = [sys.executable, "-m", "mockserver", "--port", str(port), "--quiet", *args]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(base + "/api/", process)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def served_mock() -> Iterator[Mock]:
    with serve_mock("--strict") as base:
        yield Mock(base)


@pytest.fixture
def mock(served_mock: Mock) -> Iterator[Mock]:
    served_mock.call("POST", "/reset")
    served_mock.call("POST", "/clock", {"set": START, "frozen": True})
    yield served_mock
    # The mock runs with --strict: a response that broke the spec became a 500.
    broken = [
        (entry["method"], entry["path"], entry["responseHeaders"].get("X-Mock-Strict-Violation"))
        for entry in served_mock.journal()
        if entry["status"] >= 500 and entry["status"] != 503
    ]
    assert not broken, f"the mock answered with server errors: {broken}"


def node_ready() -> tuple[bool, str]:
    if shutil.which("node") is None:
        return False, "node is not installed"
    if not (ROOT / "clients/js/node_modules/cumulonimbus-wrapper").is_dir():
        return False, "the JS client is not installed: run `npm ci --prefix clients/js`"
    return True, ""


def chromium_ready() -> tuple[bool, str]:
    if not CHROMIUM.exists():
        return False, f"{CHROMIUM} is missing: install Debian's chromium package"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False, "Playwright is not installed: pip install -e '.[test]'"
    return True, ""


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these Chromium keeps calling out to the network, which is closed here.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (a fresh profile directory per launch)."""
    ready, reason = chromium_ready()
    require(ready, reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-final.png"), full_page=True)
        context.close()
    assert not errors, f"the page threw: {errors}"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def browser_app() -> Iterator[str]:
    """examples/browser-app served as static files from its own port (its own origin)."""
    handler = functools.partial(_QuietHandler, directory=str(ROOT / "examples/browser-app"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
