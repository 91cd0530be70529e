"""Steps for the official JS client (run by clients/js/run-steps.mjs) and what they answer,
shared by the tests that drive the client against the mock and through the proxy."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from mockserver.secondfactor import totp_code
from mockserver.seed import BOB_TOTP_SECRET, CAROL_TOTP_SECRET

from .conftest import ROOT, START, Mock

ALICE = "1647015028626"
BOB = "1647015028627"
UNKNOWN_SID = "1234567890"


def run(mock: Mock, steps: list[dict[str, Any]], pace: float = 1.0) -> list[dict[str, Any]]:
    """Run the steps with the client; ``pace`` seconds pass on the mock's clock before each
    call, so that a test trips the burst limit only when it means to."""
    plan = {"baseURL": mock.api, "control": mock.control, "pace": pace, "steps": steps}
    finished = subprocess.run(
        ["node", str(ROOT / "clients/js/run-steps.mjs")],
        input=json.dumps(plan),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    outcomes: list[dict[str, Any]] = json.loads(finished.stdout)
    return outcomes


def ok(outcome: dict[str, Any]) -> dict[str, Any]:
    assert outcome["ok"], outcome["error"]
    return outcome


def failed(outcome: dict[str, Any], cls: str, code: str, message: str) -> dict[str, Any]:
    assert not outcome["ok"], outcome
    error: dict[str, Any] = outcome["error"]
    assert (error["class"], error.get("code"), error["message"]) == (cls, code, message)
    assert error["responseError"] is True  # every API error is a Cumulonimbus.ResponseError
    return error


def ref(path: str) -> dict[str, str]:
    return {"$": path}


def totp(secret: str) -> str:
    return totp_code(secret, START)


def login(name: str, username: str = "alice") -> dict[str, Any]:
    return {"id": name, "login": [username, "password"]}


def call(client: str, method: str, *args: Any, id: str | None = None) -> dict[str, Any]:
    step: dict[str, Any] = {"client": client, "call": method, "args": list(args)}
    if id:
        step["id"] = id
    return step


def answer(challenge: str, secret: str = BOB_TOTP_SECRET) -> dict[str, Any]:
    """A second-factor response to an earlier challenge, in the client's own shape."""
    return {"token": ref(f"{challenge}.error.token"), "type": "totp", "code": totp(secret)}


STAFF_LOGIN = [
    {"id": "carolChallenge", "login": ["carol", "password"]},
    {"id": "carol", "login": ["carol", answer("carolChallenge", CAROL_TOTP_SECRET)]},
]
