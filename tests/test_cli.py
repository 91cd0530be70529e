"""The command line and the README's quick start, run for real in a subprocess."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from mockserver.cli import main
from mockserver.secondfactor import totp_code
from mockserver.seed import BOB_TOTP_SECRET

from .helpers import start_mock, stop

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def mock() -> Iterator[str]:
    process, base = start_mock()
    yield base
    stop(process)


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Quick start.*?```sh\n(.*?)```", text, re.S)
    assert block, "the README has a Quick start with a sh block"
    return [line for line in block.group(1).splitlines() if line.startswith("curl")]


def test_readme_quick_start_works(mock: str) -> None:
    """Runs the README's curl commands with the documented base URL replaced by the test's."""
    commands = readme_commands()
    assert commands
    env = {**os.environ}
    outputs = []
    for command in commands:
        command = command.replace("http://127.0.0.1:8000", mock)
        result = subprocess.run(
            ["bash", "-c", command], capture_output=True, text=True, env=env, timeout=30
        )
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout)
        match = re.search(r'"token":"([^"]+)"', result.stdout)
        if match:
            env["TOKEN"] = match.group(1)
    assert '"count":1' in outputs[-1]


def test_served_mock_walks_login_list_and_logout(mock: str) -> None:
    login = requests.post(
        f"{mock}/api/login", json={"username": "alice", "password": "password"}, timeout=5
    )
    assert login.status_code == 201
    token = login.json()["token"]
    listing = requests.get(
        f"{mock}/api/users/me/sessions", headers={"Authorization": token}, timeout=5
    )
    assert listing.json()["count"] == 1
    assert requests.delete(
        f"{mock}/api/users/me/sessions/me", headers={"Authorization": token}, timeout=5
    ).ok
    assert (
        requests.get(
            f"{mock}/api/users/me/sessions", headers={"Authorization": token}, timeout=5
        ).status_code
        == 401
    )


def test_seed_file_replaces_the_demo_users(tmp_path: Path) -> None:
    seed = tmp_path / "users.yaml"
    seed.write_text('users:\n  - {username: zoe, password: "pw", staff: true, totpSecret: null}\n')
    process, base = start_mock("--seed", str(seed))
    try:
        ok = requests.post(
            f"{base}/api/login", json={"username": "zoe", "password": "pw"}, timeout=5
        )
        assert ok.status_code == 201
        gone = requests.post(
            f"{base}/api/login", json={"username": "alice", "password": "password"}, timeout=5
        )
        assert gone.status_code == 404
    finally:
        stop(process)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("users: [{username: x}]", "password"),
        ("users: {}", "'users' list"),
        (": : :", "not valid YAML"),
    ],
    ids=["no-password", "not-a-list", "bad-yaml"],
)
def test_bad_seed_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    seed = tmp_path / "users.yaml"
    seed.write_text(content)
    assert main(["--seed", str(seed)]) == 2
    assert message in capsys.readouterr().err


def test_missing_seed_file_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seed", "/nonexistent/users.yaml"]) == 2
    assert "cannot read seed file" in capsys.readouterr().err


def test_totp_command_prints_the_current_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["totp", "bob", "--at", "1790000000"]) == 0
    assert capsys.readouterr().out.strip() == totp_code(BOB_TOTP_SECRET, 1790000000)


def test_totp_command_for_a_user_without_totp_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["totp", "alice"]) == 2
    assert "no TOTP" in capsys.readouterr().err


def test_control_token_protects_the_served_control_api() -> None:
    process, base = start_mock("--control-token", "t0k")
    try:
        assert requests.post(f"{base}/_mock/reset", timeout=5).status_code == 401
        assert requests.post(f"{base}/_mock/reset", headers={"X-Mock-Token": "t0k"}, timeout=5).ok
    finally:
        stop(process)


def test_the_mock_binds_loopback_by_default_and_says_so() -> None:
    process, _ = start_mock()
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert "bound to 127.0.0.1 only" in first
    finally:
        stop(process)


def test_as_deployed_serves_the_profile_and_says_so() -> None:
    process, base = start_mock("--as-deployed", "5.3.0")
    try:
        assert requests.get(f"{base}/_mock/profile", timeout=5).json()["profile"] == "5.3.0"
        login = requests.post(f"{base}/api/login", json={}, timeout=5)
        assert login.status_code == 500 and login.json()["code"] == "INTERNAL_SERVER_ERROR"
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(5)]
        assert any("profile: as deployed, cumulonimbus-api 5.3.0" in line for line in lines)
    finally:
        stop(process)


def test_an_unknown_as_deployed_version_is_a_clear_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--as-deployed", "4.0.0"]) == 2
    assert "unknown profile '4.0.0' (known: 5.3.0)" in capsys.readouterr().err
