"""What a broken rule raises: `CheckFailure`, with the rule, the evidence and a curl line,
and the two ways checks build one (`fail`, `expect_error`).

A check never writes its own id: it raises a failure without one, and the registry, which
holds every check wrapped so, hands it the id of the check that ran. A failure about
another rule than the running check's (a second-factor challenge where none was due is
`reverify.challenge`, whichever check met it) names its id::

    raise fail(op, "a 429 carries RateLimit-Reason", "burst", exchange)
    expect_error(op, "a request with no token is anonymous", exchange, 401, INVALID_SESSION)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conformance.exchange import Exchange
    from conformance.spec import Operation


class CheckFailure(AssertionError):
    """A rule broken on an operation, with the evidence."""

    def __init__(
        self,
        check_id: str,
        operation: str,
        rule: str,
        expected: str,
        actual: str,
        curl: str | None = None,
    ) -> None:
        self.check_id = check_id
        self.operation = operation
        self.rule = rule
        self.expected = expected
        self.actual = actual
        self.curl = curl
        super().__init__(self.render())

    def claim(self, check_id: str) -> None:
        """The running check's id, for a failure raised without one."""
        if not self.check_id:
            self.check_id = check_id
            self.args = (self.render(),)

    def render(self) -> str:
        lines = [
            f"[{self.check_id}] {self.operation}: {self.rule}",
            f"  expected: {self.expected}",
            f"  actual:   {self.actual}",
        ]
        if self.curl:
            lines.append(f"  reproduce: {self.curl}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, str | None]:
        return {
            "check": self.check_id,
            "operation": self.operation,
            "rule": self.rule,
            "expected": self.expected,
            "actual": self.actual,
            "curl": self.curl,
        }


def fail(
    op: Operation,
    rule: str,
    expected: str,
    exchange: Exchange | None,
    actual: str | None = None,
    *,
    check_id: str = "",
) -> CheckFailure:
    """The failure of `rule` on `op`, with the exchange as evidence (its summary as the
    actual answer unless `actual` says better). Without `check_id`, the running check's."""
    return CheckFailure(
        check_id,
        str(op),
        rule,
        expected,
        actual if actual is not None else (exchange.summary() if exchange else "nothing"),
        exchange.curl() if exchange else None,
    )


FieldRule = object | Callable[[object], object]


def expect_error(
    op: Operation,
    rule: str,
    exchange: Exchange,
    status: int,
    code: str | None = None,
    **fields: FieldRule,
) -> None:
    """Raise a CheckFailure unless the exchange is `status` with error `code`, and each
    of `fields` in the body equals its value (or satisfies it, when it is callable)."""
    body = exchange.json if isinstance(exchange.json, dict) else {}
    expected = f"{status}" + (f" {code}" if code else "")
    if fields:
        expected += " with " + ", ".join(f"{k}={v!r}" for k, v in fields.items())
    ok = exchange.status == status and (code is None or body.get("code") == code)
    for name, value in fields.items():
        actual = body.get(name)
        ok = ok and bool(value(actual)) if callable(value) else ok and actual == value
    if not ok:
        raise fail(op, rule, expected, exchange)
