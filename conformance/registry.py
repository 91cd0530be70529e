"""Checks: plain functions registered with a stable id, and the failure they raise.

A check's id is `group.name` (e.g. `scope.denied`); the group is a column of the summary
table. `applies(op)` reads the operation's `x-` policies, so an operation or policy added
to the spec gets its checks without code; `variants(op)` splits one check on one
operation into several cases (e.g. one per kill switch)::

    @check("headers.cache-control", kind="response")
    def cache_control(ctx, op, exchange): ...

    @check("scope.denied", applies=lambda op: op.scope not in (None, BROWSER_SESSION_ONLY))
    def scope_denied(ctx, op, variant): ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conformance.client import Exchange
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


@dataclass(frozen=True)
class Check:
    id: str
    func: Callable[..., None]
    kind: str  # "response": judges one exchange; "scenario": drives its own requests
    applies: Callable[[Operation], bool]
    variants: Callable[[Operation], Iterable[Any]]
    slow: bool
    kill_switches: bool
    doc: str

    @property
    def group(self) -> str:
        return self.id.split(".", 1)[0]


REGISTRY: dict[str, Check] = {}


def check(
    check_id: str,
    *,
    kind: str = "scenario",
    applies: Callable[[Operation], bool] = lambda op: True,
    variants: Callable[[Operation], Iterable[Any]] = lambda op: [None],
    slow: bool = False,
    kill_switches: bool = False,
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register a check. `slow`: needs --cumulonimbus-run-slow on real targets;
    `kill_switches`: needs --cumulonimbus-allow-kill-switches on real targets."""

    def register(func: Callable[..., None]) -> Callable[..., None]:
        if check_id in REGISTRY:
            raise ValueError(f"check {check_id} registered twice")
        REGISTRY[check_id] = Check(
            check_id,
            func,
            kind,
            applies,
            variants,
            slow,
            kill_switches,
            (func.__doc__ or "").strip().splitlines()[0] if func.__doc__ else "",
        )
        return func

    return register


def fail(
    check_id: str,
    op: Operation,
    rule: str,
    expected: str,
    exchange: Exchange | None,
    actual: str | None = None,
) -> CheckFailure:
    return CheckFailure(
        check_id,
        str(op),
        rule,
        expected,
        actual if actual is not None else (exchange.summary() if exchange else "nothing"),
        exchange.curl() if exchange else None,
    )


def all_checks() -> list[Check]:
    # Importing the modules registers their checks.
    from conformance import policy_checks, response_checks  # noqa: F401

    return list(REGISTRY.values())
