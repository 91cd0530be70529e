"""The served mock under hostile clients and an unlucky machine: stalled requests,
``kill -9``, two mocks on one state file. Real sockets against a really served mock."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from .helpers import free_port, start_mock, stop

TIMEOUT = 2.0  # the mock's --read-timeout in these tests


@pytest.fixture(scope="module")
def impatient() -> Iterator[str]:
    process, base = start_mock("--read-timeout", str(TIMEOUT))
    yield base
    stop(process)


def port_of(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


def send(base: str, data: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port_of(base)), timeout=TIMEOUT + 3)
    try:
        sock.sendall(data)
    except OSError:
        sock.close()
        raise
    return sock


def answer(sock: socket.socket) -> bytes:
    """Everything the mock sends until it closes the connection."""
    received = b""
    with sock:
        while chunk := sock.recv(65536):
            received += chunk
    return received


def half_body(path: str = "/api/login") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Content-Length: 100\r\n\r\n{"
    ).encode()


def served_quickly(base: str) -> None:
    """The API and the control API both answer at once, well inside the read timeout."""
    started = time.monotonic()
    assert requests.get(base + "/api/", timeout=TIMEOUT / 2).json()["hello"] == "world"
    assert requests.get(base + "/_mock/clock", timeout=TIMEOUT / 2).status_code == 200
    assert time.monotonic() - started < TIMEOUT / 2


def test_a_client_stalled_mid_body_does_not_hold_the_others(impatient: str) -> None:
    stalled = send(impatient, half_body())
    served_quickly(impatient)
    reply = answer(stalled)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert json.loads(body) == {"code": "REQUEST_TIMEOUT_ERROR", "message": "Request Timeout"}


def test_twenty_unfinished_bodies_leave_the_mock_serving(impatient: str) -> None:
    stalled = [send(impatient, half_body("/_mock/users")) for _ in range(20)]
    chunked = send(
        impatient,
        b"POST /api/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b'Transfer-Encoding: chunked\r\n\r\n5\r\n{"use',
    )
    served_quickly(impatient)
    for sock in [*stalled, chunked]:
        assert answer(sock).startswith(b"HTTP/1.1 408 ")


def test_a_client_stalled_in_its_headers_is_dropped(impatient: str) -> None:
    stalled = send(impatient, b"GET /api/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    served_quickly(impatient)
    started = time.monotonic()
    answer(stalled)  # closed by the mock: recv returns b"" instead of timing out
    assert time.monotonic() - started < TIMEOUT + 2


def test_a_body_over_the_cap_sent_chunked_is_413_json(impatient: str) -> None:
    chunk = b"x" * 65536
    data = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(17)) + b"0\r\n\r\n"
    sock = send(
        impatient,
        b"POST /api/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + data,
    )
    head, _, body = answer(sock).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")
    assert json.loads(body)["code"] == "BODY_TOO_LARGE_ERROR"


@pytest.mark.parametrize("chunked", [False, True], ids=["sized", "chunked"])
def test_the_body_the_server_read_is_the_body_the_api_sees(impatient: str, chunked: bool) -> None:
    # The served worker hands the body it read to the app as bytes (httpio.BODY_KEY)
    # instead of through wsgi.input: the login, the journal and the limiter see it alike.
    body = json.dumps({"username": "alice", "password": "password"}).encode()
    framing = (
        b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        if chunked
        else b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    address = f"198.51.100.{2 if chunked else 1}"
    sock = send(
        impatient,
        b"POST /api/login HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nX-Forwarded-For: %s\r\n" % address.encode() + framing,
    )
    head, _, answered = answer(sock).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 201 "), head
    assert "token" in json.loads(answered)
    entries = requests.get(impatient + "/_mock/requests", timeout=TIMEOUT).json()["items"]
    mine = [e for e in entries if e["ip"] == address]
    assert mine[-1]["requestBody"] == {"username": "alice", "password": "password"}


def spawn(port: int, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mockserver", "--port", str(port), "--quiet", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_until_up(process: subprocess.Popen[str], port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        try:
            requests.get(f"http://127.0.0.1:{port}/api/", timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.05)  # waiting for a process to bind, not for the clock
    raise AssertionError("the mock did not start within 30 s")


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_kill_9_of_the_mock_leaves_no_worker_behind(tmp_path: Path) -> None:
    port, state = free_port(), tmp_path / "state.json"
    first = spawn(port, "--state", str(state))
    wait_until_up(first, port)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    if first.stdout:
        first.stdout.close()
    deadline = time.monotonic() + 5
    while not port_is_free(port):
        assert time.monotonic() < deadline, "a worker outlived the mock and holds the port"
        time.sleep(0.05)  # waiting for a process to exit, not for the clock
    second = spawn(port, "--state", str(state))
    try:
        wait_until_up(second, port)
    finally:
        stop(second)


def test_two_mocks_cannot_share_one_state_file(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    process, _ = start_mock("--state", str(state))
    try:
        other = subprocess.run(
            [sys.executable, "-m", "mockserver", "--port", str(free_port()), "--state", str(state)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert other.returncode == 2
        assert "in use by another mock" in other.stderr
    finally:
        stop(process)


def test_the_environ_joins_repeated_headers_and_keeps_the_last_content_type() -> None:
    from types import SimpleNamespace

    from mockserver.serving import WSGIOverRSGI

    class Headers:
        def __init__(self, items: list[tuple[str, str]]) -> None:
            self._items = items

        def items(self) -> list[tuple[str, str]]:
            return self._items

    scope = SimpleNamespace(
        server="127.0.0.1:8000",
        client="127.0.0.1:5000",
        method="POST",
        path="/api/login",
        query_string="",
        http_version="1.1",
        scheme="http",
        authority="127.0.0.1:8000",
        headers=Headers(
            [
                ("x-a", "1"),
                ("content-type", "text/plain"),
                ("x-a", "2"),
                ("content-type", "application/json"),
                ("content-length", "2"),
                ("transfer-encoding", "identity"),
            ]
        ),
    )
    for _ in range(2):  # the names' keys spelt afresh, then remembered
        environ = WSGIOverRSGI(None)._environ(scope, b"{}", "2", True)
        assert environ["HTTP_X_A"] == "1,2"
        assert environ["CONTENT_TYPE"] == "application/json"
        assert environ["CONTENT_LENGTH"] == "2"
        assert "HTTP_CONTENT_TYPE" not in environ and "HTTP_TRANSFER_ENCODING" not in environ
        assert environ["HTTP_HOST"] == "127.0.0.1:8000"
