"""Helpers the test modules share (test modules never import each other): a mock served
in a subprocess, and logins that go through a second factor."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import requests

from mockserver.clock import Clock
from mockserver.secondfactor import totp_code
from mockserver.seed import CAROL_TOTP_SECRET

from .conftest import Api, assert_error

# A served mock -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_mock(*args: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mockserver", "--port", str(port), "--quiet", "--strict", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            stop(process)
            raise AssertionError(f"the mock exited: {output}")
        try:
            requests.get(base + "/api/", timeout=1)
            return process, base
        except requests.ConnectionError:
            time.sleep(0.05)  # waiting for a process to bind, not for the clock
    stop(process)
    raise AssertionError("the mock did not start within 30 s")


def stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    process.wait(timeout=10)
    if process.stdout:
        process.stdout.close()


# Logins ------------------------------------------------------------------------------


def challenge(api: Api, username: str = "bob") -> dict:
    response = api.call("POST", "/login", json={"username": username, "password": "password"})
    assert_error(
        response, 401, "SECOND_FACTOR_CHALLENGE_REQUIRED_ERROR", "Second Factor Challenge Required"
    )
    return dict(response.json)


def staff_login(api: Api, clock: Clock, username: str = "carol") -> str:
    challenge = api.call("POST", "/login", json={"username": username, "password": "password"}).json
    code = totp_code(CAROL_TOTP_SECRET, clock.now())
    answer = {"token": challenge["token"], "type": "totp", "code": code}
    response = api.call("POST", "/login", json={"2fa": answer})
    assert response.status_code == 201, response.json
    return str(response.json["token"])
