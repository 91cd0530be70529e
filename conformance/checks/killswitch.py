"""`killswitch.*`: kill switches. Each of an operation's switches (and GLOBAL) makes
it answer 503 with that feature, and none affects staff callers.
"""

from __future__ import annotations

from conformance.calls import Call
from conformance.checks.common import expect_success
from conformance.context import Context
from conformance.failures import expect_error
from conformance.registry import check
from conformance.spec import Operation


def _killswitch_call(ctx: Context, op: Operation) -> Call:
    if op.staff_only:
        # Staff bypass kill switches; an anonymous caller does not.
        return ctx.valid_call(op, placeholders=True).replace(token=None, actor=None)
    return ctx.valid_call(op, placeholders=True)


@check(
    "killswitch.operation",
    applies=lambda op: bool(op.kill_switches),
    variants=lambda op: list(op.kill_switches),
    kill_switches=True,
)
def killswitch_operation(ctx: Context, op: Operation, variant: str) -> None:
    """Each of the operation's kill switches makes it answer 503 with that `feature`."""
    call = _killswitch_call(ctx, op)
    with ctx.switches.on(variant):
        exchange = ctx.send(call)
    feature = ctx.spec.kill_switches[variant]
    expect_error(
        op,
        f"kill switch {variant} ({feature}) is on",
        exchange,
        503,
        "SERVICE_UNAVAILABLE_ERROR",
        feature=feature,
    )


@check("killswitch.global", kill_switches=True)
def killswitch_global(ctx: Context, op: Operation, variant: object) -> None:
    """With GLOBAL on every operation answers 503 with feature 8 (non-staff callers)."""
    call = _killswitch_call(ctx, op)
    with ctx.switches.on("GLOBAL"):
        exchange = ctx.send(call)
    feature = ctx.spec.kill_switches["GLOBAL"]
    expect_error(
        op,
        "the GLOBAL kill switch is on",
        exchange,
        503,
        "SERVICE_UNAVAILABLE_ERROR",
        feature=feature,
    )


@check(
    "killswitch.staff-bypass",
    applies=lambda op: op.authentication == "required",
    kill_switches=True,
)
def killswitch_staff_bypass(ctx: Context, op: Operation, variant: object) -> None:
    """Kill switches (GLOBAL and the operation's own) never affect staff callers."""
    staff = ctx.staff_with_factor()
    call = ctx.valid_call(op, staff)
    names = ["GLOBAL", *op.kill_switches]
    with ctx.switches.on(*names):
        exchange = ctx.perform(call)
    ctx.after(call, exchange)
    expect_success(op, f"a staff caller passes with {', '.join(names)} on", exchange)
