"""`auth.*`: who may call an operation at all. A missing, malformed or forged session
is anonymous; a caller already logged in may not log in; a banned user, or a session of
a user banned since, is refused.
"""

from __future__ import annotations

from conformance.checks.common import INVALID_SESSION
from conformance.context import Context
from conformance.failures import expect_error
from conformance.registry import check
from conformance.spec import Operation


@check(
    "auth.required",
    applies=lambda op: op.authentication == "required",
    variants=lambda op: ["no-token", "malformed-token", "bad-signature", "bearer-prefix"],
)
def auth_required(ctx: Context, op: Operation, variant: str) -> None:
    """A request without a valid session gets 401 INVALID_SESSION_ERROR."""
    call = ctx.valid_call(op, placeholders=True)
    good = call.token or ""
    token = {
        "no-token": None,
        "malformed-token": "not-a-token",
        "bad-signature": good.rsplit(".", 1)[0] + ".c2lnbmF0dXJl",
        "bearer-prefix": f"Bearer {good}",
    }[variant]
    exchange = ctx.send(call.replace(token=token))
    expect_error(
        op,
        f"a request with {variant} is anonymous",
        exchange,
        401,
        INVALID_SESSION,
    )


@check("auth.forbidden", applies=lambda op: op.authentication == "forbidden")
def auth_forbidden(ctx: Context, op: Operation, variant: object) -> None:
    """A caller who is already logged in gets 401 INVALID_SESSION_ERROR."""
    user = ctx.account("user")
    call = ctx.valid_call(op).replace(token=ctx.browser(user).value)
    exchange = ctx.send(call)
    expect_error(op, "a logged-in caller is refused", exchange, 401, INVALID_SESSION)


@check("auth.banned", applies=lambda op: op.reverification == "credentials")
def auth_banned(ctx: Context, op: Operation, variant: object) -> None:
    """A banned user gets 403 BANNED_ERROR."""
    banned = ctx.account("banned")
    call = ctx.valid_call(op, subject=banned)
    exchange = ctx.perform(call)
    expect_error(op, "a banned user is refused", exchange, 403, "BANNED_ERROR")


@check("auth.banned-session", applies=lambda op: op.authentication == "required")
def auth_banned_session(ctx: Context, op: Operation, variant: object) -> None:
    """A session of a user who was banned after logging in gets 403 BANNED_ERROR."""
    token = ctx.banned_session()
    call = ctx.valid_call(op, placeholders=True).replace(token=token)
    exchange = ctx.send(call)
    expect_error(
        op,
        "a banned user's existing session is refused",
        exchange,
        403,
        "BANNED_ERROR",
        message="Banned",
    )
