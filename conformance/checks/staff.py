"""`staff.*`: staff-only operations. A non-staff user, or staff without a second
factor, is refused; an unknown user id is 404.
"""

from __future__ import annotations

from conformance.calls import UNKNOWN_UID
from conformance.checks.common import INSUFFICIENT
from conformance.context import Context
from conformance.failures import expect_error
from conformance.registry import check
from conformance.spec import Operation


@check("staff.non-staff", applies=lambda op: op.staff_only)
def staff_non_staff(ctx: Context, op: Operation, variant: object) -> None:
    """A non-staff user gets 403, even on their own user id."""
    user = ctx.account("user")
    call = ctx.valid_call(op, user, subject=user, placeholders=True)
    exchange = ctx.perform(call)
    ctx.after(call, exchange)
    expect_error(op, "a non-staff user is refused (own uid)", exchange, 403, INSUFFICIENT)


@check("staff.no-second-factor", applies=lambda op: op.staff_only)
def staff_no_second_factor(ctx: Context, op: Operation, variant: object) -> None:
    """Staff with no second factor enrolled get 401 ENDPOINT_REQUIRES_SECOND_FACTOR_ERROR."""
    plain = ctx.account("staff-plain")
    call = ctx.valid_call(op, plain, placeholders=True)
    exchange = ctx.perform(call)
    expect_error(
        op,
        "staff without a second factor are refused",
        exchange,
        401,
        "ENDPOINT_REQUIRES_SECOND_FACTOR_ERROR",
    )


@check("staff.unknown-user", applies=lambda op: op.staff_only and op.param("uid") is not None)
def staff_unknown_user(ctx: Context, op: Operation, variant: object) -> None:
    """An unknown uid gets 404 INVALID_USER_ERROR."""
    call = ctx.valid_call(op, ctx.staff_with_factor(), placeholders=True)
    call.path["uid"] = UNKNOWN_UID
    exchange = ctx.perform(call)
    expect_error(op, "an unknown uid is 404", exchange, 404, "INVALID_USER_ERROR")
