"""`scope.*`: scoped sessions. A session without the operation's flag (or ALL) is
refused, one with it passes, and browser-session-only operations refuse every scoped
session.
"""

from __future__ import annotations

from conformance.checks.common import INSUFFICIENT, expect_success
from conformance.context import Context
from conformance.failures import expect_error
from conformance.registry import check
from conformance.spec import BROWSER_SESSION_ONLY, Operation
from conformance.target import Account


def _is_flag(op: Operation) -> bool:
    return op.scope not in (None, BROWSER_SESSION_ONLY)


def _actor(ctx: Context, op: Operation) -> Account:
    return ctx.staff_with_factor() if op.staff_only else ctx.account("user")


@check("scope.denied", applies=_is_flag)
def scope_denied(ctx: Context, op: Operation, variant: object) -> None:
    """A scoped session without the operation's flag (and without ALL) gets 403."""
    flags = ctx.spec.permission_flags
    if ctx.target.is_mock:
        # Every other flag: also catches a server that accepts a wrong one.
        mask = sum(bit for name, bit in flags.items() if name not in ("ALL", op.scope))
        what = f"every flag but {op.scope}"
    else:
        # One token for all operations (4 new sessions per 5 minutes): every flag that
        # no operation asks for. A wrong flag accepted shows up in scope.allowed.
        used = {o.scope for o in ctx.spec.operations}
        mask = sum(bit for name, bit in flags.items() if name != "ALL" and name not in used)
        what = "only flags that no operation needs"
    actor = _actor(ctx, op)
    token = ctx.scoped(actor, mask)
    call = ctx.valid_call(op, actor, token=token.value, placeholders=True)
    exchange = ctx.perform(call)
    ctx.after(call, exchange)
    expect_error(
        op,
        f"a scoped session with {what} is refused",
        exchange,
        403,
        INSUFFICIENT,
    )


@check("scope.allowed", applies=_is_flag, variants=lambda op: [op.scope, "ALL"])
def scope_allowed(ctx: Context, op: Operation, variant: str) -> None:
    """A scoped session with the operation's flag, or with ALL, passes the scope check."""
    actor = _actor(ctx, op)
    token = ctx.scoped(actor, ctx.spec.permission_flags[variant])
    call = ctx.valid_call(op, actor, token=token.value)
    exchange = ctx.perform(call)
    ctx.after(call, exchange)
    expect_success(op, f"a scoped session with {variant} may call it", exchange)


@check("scope.browser-only", applies=lambda op: op.scope == BROWSER_SESSION_ONLY)
def scope_browser_only(ctx: Context, op: Operation, variant: object) -> None:
    """Every scoped session, even one with ALL, gets 403 where only browser sessions may go."""
    actor = _actor(ctx, op)
    token = ctx.scoped(actor, ctx.spec.permission_flags["ALL"])
    call = ctx.valid_call(op, actor, token=token.value)
    exchange = ctx.perform(call)
    expect_error(op, "a scoped session (ALL) is refused", exchange, 403, INSUFFICIENT)
