"""Check cases: one check on one operation (and variant), drawn from the spec, and how one
is run so that its failure reads as the rule, the evidence and a curl line::

    for case in cases("scenario"):
        run_case(ctx, case)          # in test_policies.py, one pytest test per case
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests

from conformance.catalog import all_checks
from conformance.context import Context
from conformance.exchange import TargetUnreachable
from conformance.failures import CheckFailure
from conformance.registry import Check
from conformance.spec import Operation, load_spec


@dataclass(frozen=True)
class Case:
    check: Check
    op: Operation
    variant: object

    @property
    def id(self) -> str:
        suffix = "" if self.variant is None else f"-{self.variant}"
        return f"{self.check.id}-{self.op.id}{suffix}"


def cases(kind: str) -> Iterator[Case]:
    spec = load_spec()
    for chk in all_checks():
        if chk.kind != kind:
            continue
        for op in spec.operations:
            if chk.applies(op):
                for variant in chk.variants(op):
                    yield Case(chk, op, variant)


CASE_FIXTURES = {"policy_case": "scenario", "response_case": "response"}


def item_identity(item: pytest.Item) -> tuple[str, str] | None:
    """(check id, operation id) of a conformance test item; None for any other test."""
    marker = item.get_closest_marker("conformance")
    if marker is not None:
        return marker.args[0], marker.args[1]
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None
    for name in CASE_FIXTURES:
        case = callspec.params.get(name)
        if isinstance(case, Case):
            return case.check.id, case.op.id
    return None


def run_case(ctx: Context, case: Case) -> None:
    """Run one check on one operation, turning its failure into a readable test failure."""
    target = ctx.target
    chk, op = case.check, case.op
    if not target.is_mock:
        if chk.slow and not target.settings.run_slow:
            pytest.skip(
                "waits for rate-limit windows on a real deployment: pass --cumulonimbus-run-slow"
            )
        if chk.kill_switches and not target.settings.allow_kill_switches:
            pytest.skip(
                "flips kill switches, which affects every user: "
                "pass --cumulonimbus-allow-kill-switches"
            )
    flips = flips_switches(op)
    before = ctx.switches.states() if flips else {}
    try:
        if chk.kind == "response":
            for _label, exchange in ctx.probes(op):
                chk.func(ctx, op, exchange)
        else:
            chk.func(ctx, op, case.variant)
    except (TargetUnreachable, requests.ConnectionError) as lost:
        target_lost(lost)
    except CheckFailure as failure:
        raise_failure(failure)
    finally:
        if flips:
            ctx.switches.restore(before)


def raise_failure(failure: CheckFailure) -> None:
    """Fail the test with the rule, the evidence and the curl line: a traceback would not
    help. The plugin reads `conformance` for the reports (and redacts both)."""
    exc = pytest.fail.Exception(failure.render(), pytrace=False)
    exc.conformance = failure.as_dict()  # type: ignore[attr-defined]
    raise exc from None


def target_lost(exc: Exception) -> None:
    """The target stopped answering mid-run: one clear stop, not a failure per check."""
    pytest.exit(f"conformance: the target stopped answering: {exc}", returncode=3)


def run_case_errors(ctx: Context, op: Operation) -> None:
    """Skip an operation whose valid requests would flip kill switches on a real target."""
    if (
        flips_switches(op)
        and not ctx.target.is_mock
        and not ctx.target.settings.allow_kill_switches
    ):
        pytest.skip(
            "flips kill switches, which affects every user: pass --cumulonimbus-allow-kill-switches"
        )


def flips_switches(op: Operation) -> bool:
    """An operation that changes kill switches itself (on a real deployment: needs the flag)."""
    return op.path.startswith("/killswitches") and op.method != "GET"
