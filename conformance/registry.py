"""The check registry: plain functions registered under a stable id, and the `Check` that
runs one and hands its id to the failure it raises.

A check's id is `group.name` (e.g. `scope.denied`); the group names the module of
`conformance/checks/` that holds it and a column of the summary table. The id is written
once, in the decorator: the registry holds each function wrapped so that a failure it
raises without an id gets the check's (see `failures.py`). `applies(op)` reads the
operation's `x-` policies, so an operation or policy added to the spec gets its checks
without code; `variants(op)` splits one check on one operation into several cases (e.g.
one per kill switch)::

    @check("headers.cache-control", kind="response")
    def cache_control(ctx, op, exchange): ...

    @check("scope.denied", applies=lambda op: op.scope not in (None, BROWSER_SESSION_ONLY))
    def scope_denied(ctx, op, variant): ...

This module imports no check: `conformance/catalog.py` imports them all.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from conformance.failures import CheckFailure

if TYPE_CHECKING:
    from conformance.spec import Operation, Spec

CheckFunc = Callable[..., None]


class SpecView(Protocol):
    """What a response check reads of its context: the spec. The suite's `Context` and
    the proxy's `TrafficContext` both offer it, so one check judges either's exchanges."""

    @property
    def spec(self) -> Spec: ...


@dataclass(frozen=True)
class Check:
    id: str
    func: CheckFunc  # the check as registered: a failure it raises without an id gets this one
    kind: str  # "response": judges one exchange; "scenario": drives its own requests
    applies: Callable[[Operation], bool]
    variants: Callable[[Operation], Iterable[object]]
    slow: bool
    kill_switches: bool
    # Variants that run near the end of a run, so its other work fills the wait they
    # judge (a window's renewal, a challenge's expiry) instead of a wait in place.
    late: frozenset[object] = frozenset()

    @property
    def group(self) -> str:
        return self.id.split(".", 1)[0]


def _claiming(check_id: str, func: CheckFunc) -> CheckFunc:
    """`func`, handing `check_id` to each failure it raises without one."""

    @functools.wraps(func)
    def run(*args: object) -> None:
        try:
            func(*args)
        except CheckFailure as failure:
            failure.claim(check_id)
            raise

    return run


REGISTRY: dict[str, Check] = {}


def check(
    check_id: str,
    *,
    kind: str = "scenario",
    applies: Callable[[Operation], bool] = lambda op: True,
    variants: Callable[[Operation], Iterable[object]] = lambda op: [None],
    slow: bool = False,
    kill_switches: bool = False,
    late: Iterable[object] = (),
) -> Callable[[CheckFunc], CheckFunc]:
    """Register a check. `slow`: needs --cumulonimbus-run-slow on real targets;
    `kill_switches`: needs --cumulonimbus-allow-kill-switches on real targets; `late`:
    the variants the run orders near its end."""

    def register(func: CheckFunc) -> CheckFunc:
        if check_id in REGISTRY:
            raise ValueError(f"check {check_id} registered twice")
        claiming = _claiming(check_id, func)
        REGISTRY[check_id] = Check(
            check_id, claiming, kind, applies, variants, slow, kill_switches, frozenset(late)
        )
        return func

    return register
