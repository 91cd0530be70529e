"""One request and its answer as the suite recorded them (`Exchange`: the status, the
body, a one-line summary and the curl command that reproduces it, secrets redacted), the
absence of a body (`NO_BODY`), a target that stopped answering, and a session token's
claims read without verifying them.
"""

from __future__ import annotations

import base64
import json
import shlex
from dataclasses import dataclass, field
from typing import Any

import requests

from conformance.redact import Redactor


class _NoBody:
    """Marks a request without a body (survives deepcopy, unlike a bare object())."""

    def __copy__(self) -> _NoBody:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> _NoBody:
        return self

    def __repr__(self) -> str:
        return "NO_BODY"


NO_BODY: Any = _NoBody()


class TargetUnreachable(Exception):
    """The target did not answer at all (connection refused, DNS, timeout)."""


@dataclass
class Exchange:
    """One request and its response, enough to judge and to reproduce."""

    method: str
    url: str
    request_headers: dict[str, str]
    request_body: str | None
    status: int
    headers: requests.structures.CaseInsensitiveDict[str] = field(repr=False)
    text: str = field(repr=False)
    # Evidence (curl line, summary) shows no secrets unless the run asks to show them.
    redactor: Redactor = field(default_factory=lambda: Redactor(enabled=False), repr=False)

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.text)
        except ValueError:
            return None

    @property
    def code(self) -> str | None:
        body = self.json
        return body.get("code") if isinstance(body, dict) else None

    def curl(self) -> str:
        parts = ["curl", "-i", "-X", self.method, shlex.quote(self.url)]
        for name, value in self.request_headers.items():
            if name.lower() in {
                "user-agent",
                "accept-encoding",
                "accept",
                "connection",
                "content-length",
            }:
                continue
            parts += ["-H", self.redactor.shell_word(f"{name}: {value}")]
        if self.request_body is not None:
            parts += ["--data-raw", self.redactor.shell_word(self.request_body)]
        return " ".join(parts)

    def summary(self, limit: int = 300) -> str:
        # Redacted before it is cut, so that no part of a secret survives the cut.
        body = self.redactor.text(self.text.strip().replace("\n", " "))
        if len(body) > limit:
            body = body[:limit] + "..."
        return f"{self.status} {body}"


def token_claims(token: str | None) -> dict[str, Any]:
    """The JWT payload, unverified (the suite only needs `sub`, `iat`, `exp`)."""
    if not token or token.count(".") != 2:
        return {}
    payload = token.split(".")[1]
    try:
        decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        claims = json.loads(decoded)
    except ValueError:
        return {}
    return claims if isinstance(claims, dict) else {}


def token_header(token: str) -> dict[str, Any]:
    head = token.split(".")[0]
    try:
        value = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
