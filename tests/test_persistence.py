"""--state FILE: nothing lost on restart, and a bad file is never overwritten."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from mockserver.app import create_app
from mockserver.cli import main
from mockserver.clock import Clock
from mockserver.persistence import StateFileError

from .helpers import start_mock, stop


def make(path: Path, clock: Clock):  # type: ignore[no-untyped-def]
    return create_app({"STATE_FILE": str(path), "CLOCK": clock, "STATE_INTERVAL": 3600})


def login(app, username: str = "alice") -> str:  # type: ignore[no-untyped-def]
    response = app.test_client().post(
        "/api/login", json={"username": username, "password": "password"}
    )
    assert response.status_code == 201, response.json
    return str(response.json["token"])


def test_a_restarted_mock_accepts_the_tokens_it_issued(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "state.json"
    first = make(path, clock)
    token = login(first)
    first.extensions["cumulonimbus"].writer.stop()
    second = make(path, clock)
    response = second.test_client().get(
        "/api/users/me/sessions/me", headers={"Authorization": token}
    )
    assert response.status_code == 200


def test_users_kill_switches_and_revocations_survive(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "state.json"
    first = make(path, clock)
    control = first.test_client()
    control.post("/_mock/users", json={"username": "ivy", "password": "pw"})
    revoked = login(first)
    deleted = control.delete(
        "/api/users/me/sessions/all?include-self=true", headers={"Authorization": revoked}
    )
    assert deleted.status_code == 200
    control.put("/_mock/killswitches/1", json={"state": True})
    first.extensions["cumulonimbus"].writer.stop()

    second = make(path, clock).test_client()
    assert second.post("/api/login", json={"username": "ivy", "password": "pw"}).status_code == 201
    assert second.get("/_mock/killswitches").json["items"][1]["state"] is True
    assert (
        second.get("/api/users/me/sessions", headers={"Authorization": revoked}).status_code == 401
    )


def test_a_used_backup_code_stays_used(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "state.json"
    first = make(path, clock)
    client = first.test_client()
    challenge = client.post("/api/login", json={"username": "bob", "password": "password"}).json
    answer = {"token": challenge["token"], "type": "backup", "code": "0123456789abcdef0123"}
    assert client.post("/api/login", json={"2fa": answer}).status_code == 201
    first.extensions["cumulonimbus"].writer.stop()
    client = make(path, clock).test_client()
    challenge = client.post("/api/login", json={"username": "bob", "password": "password"}).json
    answer = {"token": challenge["token"], "type": "backup", "code": "0123456789abcdef0123"}
    assert client.post("/api/login", json={"2fa": answer}).status_code == 401


def test_the_file_is_written_atomically_and_privately(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "state.json"
    app = make(path, clock)
    login(app)
    assert app.extensions["cumulonimbus"].writer.flush() is True
    assert app.extensions["cumulonimbus"].writer.flush() is False  # nothing changed since
    # The state and the lock that says which mock owns it; no temporary file is left.
    assert sorted(p.name for p in tmp_path.iterdir()) == [".state.json.lock", "state.json"]
    assert path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / ".state.json.lock").stat().st_mode & 0o777 == 0o600
    assert json.loads(path.read_text())["version"] == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "not valid JSON"), ("[]", "does not hold"),
     ('{"version": 9}', "not a version 1"), ('{"version": 1, "users": []}', "malformed")],
    ids=["not-json", "not-an-object", "wrong-version", "incomplete"],
)  # fmt: skip
def test_a_bad_state_file_is_refused_and_left_untouched(
    tmp_path: Path, clock: Clock, content: str, message: str
) -> None:
    path = tmp_path / "state.json"
    path.write_text(content)
    with pytest.raises(StateFileError, match=message):
        make(path, clock)
    assert path.read_text() == content


def test_the_command_refuses_a_corrupt_state_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "state.json"
    path.write_text("garbage")
    assert main(["--state", str(path), "--port", "0"]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert path.read_text() == "garbage"


def test_the_served_mock_keeps_sessions_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    process, base = start_mock("--state", str(path))
    try:
        token = requests.post(
            f"{base}/api/login", json={"username": "alice", "password": "password"}, timeout=5
        ).json()["token"]
    finally:
        stop(process)  # SIGTERM: the mock writes its last state on the way out
    process, base = start_mock("--state", str(path))
    try:
        response = requests.get(
            f"{base}/api/users/me/sessions/me", headers={"Authorization": token}, timeout=5
        )
        assert response.status_code == 200
    finally:
        stop(process)
