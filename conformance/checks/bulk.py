"""`bulk.*`: deleting sessions by id. `count` is how many were really deleted, and at
most 50 ids are taken.
"""

from __future__ import annotations

from conformance.calls import UNKNOWN_SID
from conformance.context import Context
from conformance.failures import expect_error
from conformance.registry import check
from conformance.spec import Operation


def _bulk(op: Operation) -> bool:
    return "ids" in op.body_properties()


@check("bulk.count", applies=_bulk)
def bulk_count(ctx: Context, op: Operation, variant: object) -> None:
    """`count` is how many sessions were really deleted; unknown ids are ignored."""
    call = ctx.valid_call(op)
    subject = call.subject
    assert subject is not None
    a, b = ctx.disposable(subject).id, ctx.disposable(subject).id
    first = ctx.perform(call.with_body(ids=[a, b, UNKNOWN_SID]))
    ctx.after(call, first)
    expect_error(op, "two of three ids exist", first, 200, "DELETE_SESSIONS_SUCCESS", count=2)
    again = ctx.perform(call.with_body(ids=[a]))
    expect_error(
        op,
        "an already deleted id is not counted",
        again,
        200,
        "DELETE_SESSIONS_SUCCESS",
        count=0,
    )


@check("bulk.limit-50", applies=_bulk)
def bulk_limit(ctx: Context, op: Operation, variant: object) -> None:
    """At most 50 ids: 51 is 400 BODY_TOO_LARGE_ERROR, 50 is fine."""
    call = ctx.valid_call(op)
    ids = [str(1000000000 + n) for n in range(51)]
    too_many = ctx.perform(call.with_body(ids=ids))
    expect_error(op, "51 ids are too many", too_many, 400, "BODY_TOO_LARGE_ERROR")
    fifty = ctx.perform(call.with_body(ids=ids[:50]))
    expect_error(op, "50 ids are allowed", fifty, 200, "DELETE_SESSIONS_SUCCESS", count=0)
