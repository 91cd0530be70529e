"""`delete-all.*`: deleting every session of a user. Only `include-self=true`
deletes the caller's own.
"""

from __future__ import annotations

from conformance.checks.common import INVALID_SESSION, expect_success
from conformance.context import Context
from conformance.failures import expect_error
from conformance.registry import check
from conformance.spec import Operation


@check(
    "delete-all.include-self",
    applies=lambda op: op.param("include-self") is not None,
    variants=lambda op: ["false", "true", "absent", "invalid"],
)
def delete_all_include_self(ctx: Context, op: Operation, variant: str) -> None:
    """Only include-self=true deletes the caller's session; other values than true/false are 400."""
    user = ctx.account("user")
    flags = ctx.spec.permission_flags
    if variant == "true":
        caller = ctx.create_scoped(
            user, flags["SESSION_READ"] | flags["SESSION_MODIFY"], name="caller"
        )[1]
    else:
        # The browser session calls when it is meant to survive: on a deployment, each
        # browser session deleted costs a login (4 per 5 minutes).
        caller = ctx.browser(user)
    other = ctx.disposable(user)
    if caller is None:
        raise RuntimeError("cannot create a session")
    call = ctx.valid_call(op, user, token=caller.value)
    call.query.pop("include-self", None)
    if variant != "absent":
        call.query["include-self"] = {"invalid": "yes"}.get(variant, variant)
    exchange = ctx.send(call)
    ctx.forget(user)
    if variant == "invalid":
        expect_error(
            op,
            "include-self=yes is a bad request",
            exchange,
            400,
            "MISSING_FIELDS_ERROR",
        )
        still = ctx.session_alive(other.value)
        expect_error(op, "a refused request deletes nothing", still, 200)
        return
    expect_success(op, f"include-self={variant} deletes", exchange)
    gone = ctx.session_alive(other.value)
    expect_error(
        op,
        "the caller's other sessions are deleted",
        gone,
        401,
        INVALID_SESSION,
    )
    mine = ctx.session_alive(caller.value)
    if variant == "true":
        expect_error(
            op,
            "include-self=true deletes the caller's session too",
            mine,
            401,
            INVALID_SESSION,
        )
    else:
        expect_error(
            op,
            f"include-self {variant} keeps the caller's session",
            mine,
            200,
        )
