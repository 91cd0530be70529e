"""A request before it is sent (`Call`), a session the suite holds (`Token`), and the
well-known values both are built from.

A `Call` is plain data: `Context.valid_call` fills one from the spec, a check changes
the one thing its rule is about (`call.replace(token=None)`, `call.with_body(...)`) and
`Context.send` sends it.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from conformance.exchange import NO_BODY
from conformance.spec import Operation
from conformance.target import Account

CHALLENGE = "SECOND_FACTOR_CHALLENGE_REQUIRED_ERROR"
SELF_ROUTE = "/users/me/sessions/{sid}"
# Well-formed ids that no deployment has (placeholders, and for the unknown-user rule).
UNKNOWN_UID = "1000000000001"
UNKNOWN_SID = "1000000001"


@dataclass
class Token:
    value: str
    id: str
    exp: int
    account: Account
    flags: int | None = None
    # Set when something may have deleted the session: check before trusting it again.
    dirty: bool = False


@dataclass
class Call:
    """A request for one operation, before it is sent."""

    op: Operation
    actor: Account | None
    token: str | None
    subject: Account | None = None
    path: dict[str, str] = field(default_factory=dict)
    query: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = NO_BODY

    def concrete_path(self) -> str:
        """The operation's path with this call's path parameters filled in."""
        path = self.op.path
        for name, value in self.path.items():
            path = path.replace("{" + name + "}", str(value))
        return path

    def replace(self, **changes: Any) -> Call:
        return dataclasses.replace(copy.deepcopy(self), **changes)

    def with_body(self, **fields: Any) -> Call:
        body = dict(self.body) if isinstance(self.body, dict) else {}
        for name, value in fields.items():
            if value is NO_BODY:
                body.pop(name, None)
            else:
                body[name] = value
        return self.replace(body=body)
