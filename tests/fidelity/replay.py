"""Replay an observed session of the real service against the mock, row by row.

The observed session (``observed-5.3.0.yaml``, made by ``convert.py`` from the Markdown
record) names tokens and session ids symbolically (``alice-main``); the replay keeps a
table from those symbols to what the mock really issued, sends each row from the client
address its group used, moves the mock's clock between rows as the observer's pacing
did, and summarises each answer in the observer's terms (status, code, message, extra
fields, RateLimit-* headers, body shape), so that the two can be compared field by field::

    replay = Replay(app, clock)
    for row in load_rows():
        problems = replay.run(row, row["expect"])
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from flask import Flask

from mockserver.clock import Clock
from mockserver.records import SeedUser
from mockserver.secondfactor import totp_code

HERE = Path(__file__).resolve().parent
OBSERVED = HERE / "observed-5.3.0.yaml"
DIFFERENCES = HERE / "differences.yaml"
START = 1_790_000_000.0
# Seconds between rows: the observer paced its requests at least a second apart (rows
# 1-5 share one address and none is refused for a burst; rows 216-220 create five sessions
# without the service's 500 for two in one second), except in groups marked rapid.
PACE = 1.0
SECRETS = {"bob": "JBSWY3DPEHPK3PXP", "dave": "KRSXG5CTMVRXEZLU"}
DAVE_BACKUP = "50246179a50d7418dce1"
RATELIMIT = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")


def seed_users() -> list[SeedUser]:
    """The five users of the observed session, with the roles its preamble gives."""
    return [
        SeedUser("alice", "alice-password-1"),
        SeedUser("bob", "bob-password-1", staff=True, totp_secret=SECRETS["bob"]),
        SeedUser("carol", "carol-password-1", banned=True),
        SeedUser(
            "dave", "dave-password-1", totp_secret=SECRETS["dave"], backup_codes=(DAVE_BACKUP,)
        ),
        SeedUser("erin", "erin-password-1", staff=True),
    ]


def load_rows() -> list[dict[str, Any]]:
    with open(OBSERVED, encoding="utf-8") as handle:
        rows: list[dict[str, Any]] = yaml.safe_load(handle)["rows"]
    return rows


def load_differences() -> list[dict[str, Any]]:
    with open(DIFFERENCES, encoding="utf-8") as handle:
        differences: list[dict[str, Any]] = yaml.safe_load(handle)["differences"]
    return differences


def _claims(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    def part(text: str) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        return value

    header, payload, _ = token.split(".")
    return part(header), part(payload)


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


@dataclass
class Replay:
    app: Flask
    clock: Clock
    tokens: dict[str, str] = field(default_factory=dict)  # symbol -> token
    ids: dict[str, str] = field(default_factory=dict)  # symbol -> session id
    challenges: dict[str, str] = field(default_factory=dict)  # username -> latest token
    uids: dict[str, str] = field(default_factory=dict)
    addresses: dict[str, str] = field(default_factory=dict)
    last: dict[str, Any] = field(default_factory=dict)  # the latest answer, summarised

    def __post_init__(self) -> None:
        self.client = self.app.test_client()
        backend = self.app.extensions["cumulonimbus"].backend
        self.uids = {u.username: u.id for u in backend.users.values()}
        self.names = {v: k for k, v in self.uids.items()}

    # Requests ------------------------------------------------------------------------

    def _address(self, row: dict[str, Any], index: int) -> str:
        key = row["ip"] if row["ip"] != "own" else f"own-{row['row']}-{index}"
        if key not in self.addresses:
            n = len(self.addresses) + 1
            self.addresses[key] = f"127.1.{n // 250}.{n % 250 + 1}"
        return self.addresses[key]

    def _fill(self, value: Any, user: str | None) -> Any:
        """Symbols to the values the mock issued."""
        if isinstance(value, dict):
            return {k: self._fill(v, user) for k, v in value.items()}
        if isinstance(value, list):
            return [self._fill(v, user) for v in value]
        if not isinstance(value, str):
            return value
        if value == "<51 ids>":
            return [str(1_000_000_000 + i) for i in range(51)]
        if value == "<challenge>":
            return self.challenges.get(user or "", "no-challenge-yet")
        if value == "<totp>":
            return totp_code(SECRETS[user or ""], self.clock.now())
        for kind, table in (("sid", self.ids), ("uid", self.uids)):
            while "{" + kind + ":" in value:
                start = value.index("{" + kind + ":")
                end = value.index("}", start)
                symbol = value[start + len(kind) + 2 : end]
                value = value[:start] + table.get(symbol, f"unknown-{symbol}") + value[end + 1 :]
        return value

    def _authorization(self, auth: Any) -> str | None:
        if auth is None:
            return None
        if isinstance(auth, str):
            return self.tokens.get(auth, f"unknown-token-{auth}")
        if "raw" in auth:
            return str(auth["raw"])
        if "alg-none" in auth:
            _, claims = _claims(self.tokens[auth["alg-none"]])
            return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
        if "challenge-token" in auth:
            return self.challenges[auth["challenge-token"]]
        raise ValueError(f"unknown auth {auth!r}")

    def send(self, row: dict[str, Any], request: dict[str, Any], index: int = 0) -> Any:
        user = request.get("user", row.get("user"))
        headers = {"X-Forwarded-For": self._address(row, index)}
        headers.update(request.get("headers", {}))
        token = self._authorization(request.get("auth"))
        if token is not None:
            headers["Authorization"] = token
        kwargs: dict[str, Any] = {}
        if "json" in request:
            kwargs["json"] = self._fill(request["json"], user)
        elif "data" in request:
            kwargs["data"] = request["data"]
            kwargs["content_type"] = request["contentType"]
        path = "/api" + self._fill(request["path"], user)
        return self.client.open(path, method=request["method"], headers=headers, **kwargs)

    # Answers -------------------------------------------------------------------------

    def _symbol(self, sid: str) -> str:
        for symbol, known in self.ids.items():
            if known == sid:
                return symbol
        return sid

    def _remember(self, request: dict[str, Any], expect: dict[str, Any], body: Any) -> None:
        """A session the row created gets the symbol the observation gave it."""
        token = body.get("token") if isinstance(body, dict) else None
        if not token or body.get("code"):
            return
        shape = expect.get("body", {})
        symbol = shape.get("sid") or shape.get("id")
        if not symbol or symbol == "(one of the pair)":
            symbol = request.get("headers", {}).get("X-Session-Name")
        if symbol:
            self.tokens[symbol] = token
            self.ids[symbol] = str(_claims(token)[1]["iat"])

    def summarise(self, response: Any, expect: dict[str, Any]) -> dict[str, Any]:
        """The answer in the observer's terms, limited to what the expectation states."""
        got: dict[str, Any] = {"status": response.status_code}
        content_type = response.headers.get("Content-Type", "")
        if "html" in content_type:
            got["html"] = True
        body = response.get_json(silent=True)
        if response.status_code == 204 and not response.get_data():
            got["empty"] = True
        if isinstance(body, dict) and "code" in body and not str(body["code"]).endswith("_SUCCESS"):
            got["code"], got["message"] = body["code"], body.get("message")
            for key in ("fields", "types", "feature", "count"):
                if key in body:
                    got[key] = body[key]
            if body["code"] == "SECOND_FACTOR_CHALLENGE_REQUIRED_ERROR":
                _, claims = _claims(body["token"])
                got["challenge"] = {"ttl": claims["exp"] - claims["iat"]}
                self.challenges[self.names.get(claims["sub"], claims["sub"])] = body["token"]
        elif isinstance(body, dict) and "code" in body:
            got["code"], got["message"] = body["code"], body.get("message")
            if "count" in body:
                got["count"] = body["count"]
        got["ratelimit"] = self._ratelimit(response)
        if "body" in expect and isinstance(body, dict):
            got["body"] = self._shape(body, expect["body"])
        if "cors" in expect:
            exposed = response.headers.get("Access-Control-Expose-Headers", "")
            got["cors"] = {
                "allow-origin": response.headers.get("Access-Control-Allow-Origin"),
                "exposed": sorted(
                    h.strip().lower()
                    for h in exposed.split(",")
                    if h.strip().lower().startswith("ratelimit-")
                ),
            }
        return got

    @staticmethod
    def _ratelimit(response: Any) -> Any:
        headers = response.headers
        if not any(k.lower().startswith("ratelimit-") for k in headers.keys()):  # noqa: SIM118
            return "none"
        skipped = headers.get("RateLimit-Skipped") == "true"
        if skipped and "RateLimit-Limit" not in headers:
            return "skipped"
        found: dict[str, Any] = {}
        if "RateLimit-Limit" in headers:
            found["limit"] = int(headers["RateLimit-Limit"])
        if "RateLimit-Remaining" in headers:
            found["remaining"] = int(headers["RateLimit-Remaining"])
        if "RateLimit-Reset" in headers:
            found["reset"] = True
        if "RateLimit-Reason" in headers:
            found["reason"] = headers["RateLimit-Reason"]
        if skipped:
            found["skipped"] = True
        return found

    def _shape(self, body: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
        shape: dict[str, Any] = {}
        if "hello" in body:
            return {"body": body}
        if "items" in body and "count" in body and "state" in (body["items"] or [{}])[0]:
            return {
                "count": body["count"],
                "n": len(body["items"]),
                "on": [i["id"] for i in body["items"] if i["state"]],
                "item keys": sorted(body["items"][0]),
            }
        if "items" in body:
            return {
                "count": body["count"],
                "n": len(body["items"]),
                "item keys": sorted(body["items"][0]) if body["items"] else [],
                "ids": [self._symbol(i["id"]) for i in body["items"]],
            }
        if "token" in body and "id" not in body:  # a login
            header, claims = _claims(body["token"])
            shape = {
                "keys": sorted(body),
                "alg": header["alg"],
                "claims": sorted(claims),
                "lifetime": claims["exp"] - claims["iat"],
                "exp = token exp": body["exp"] == claims["exp"],
                "sid": wanted.get("sid"),
            }
            return shape
        if "id" not in body:
            return {"keys": sorted(body)}
        shape = {
            "keys": sorted(body),
            "id": self._symbol(body["id"]),
            "types": {
                k: {"str": "str", "int": "int", "NoneType": "null"}[type(body[k]).__name__]
                for k in ("id", "exp", "name", "permissionFlags")
            },
            "name": body["name"],
            "permissionFlags": body["permissionFlags"],
            "usedAt": "null" if body["usedAt"] is None else "ts",
            "createdAt/updatedAt": "ts/ts" if body["createdAt"] and body["updatedAt"] else "?",
            "lifetime": body["exp"] - int(body["id"]),
        }
        if "token" in body:
            shape["id = token iat"] = str(_claims(body["token"])[1]["iat"]) == body["id"]
        if wanted.get("truncated"):
            shape = {k: shape[k] for k in ("id", "name")}
            shape["truncated"] = True
        return shape

    def run(self, row: dict[str, Any], expect: dict[str, Any]) -> list[str]:
        """Send the row and compare its answer with ``expect``; the differences found."""
        self.clock.advance(row.get("advance", PACE))
        request = row["request"]
        response = self.send(row, request)
        body = response.get_json(silent=True)
        self._remember(request, expect, body)
        got = self.last = self.summarise(response, expect)
        problems = []
        for key in sorted(set(expect) | set(got)):
            want = expect.get(key)
            have = got.get(key)
            if key in ("html", "empty") and want is None and not have:
                continue
            if expect.get("unrecorded") and key in ("code", "message", "count", "unrecorded"):
                continue
            if want != have:
                problems.append(f"{key}: expected {want!r}, got {have!r}")
        return problems


def mock_app(config: dict[str, Any] | None = None) -> tuple[Flask, Clock]:
    from mockserver.app import create_app

    clock = Clock(source=lambda: START)
    app = create_app(
        {"SEED_USERS": seed_users(), "CLOCK": clock, "TESTING": True, **(config or {})}
    )
    return app, clock
