"""`ids.*`: session ids. Two sessions created in the same second get distinct ids."""

from __future__ import annotations

from conformance.checks.common import expect_success, issue_session
from conformance.context import Context
from conformance.failures import fail
from conformance.registry import check
from conformance.spec import Operation


@check("ids.distinct", applies=lambda op: op.issues_tokens)
def ids_distinct(ctx: Context, op: Operation, variant: object) -> None:
    """Two sessions created in the same second get distinct ids, and both work."""
    with ctx.target.frozen_clock(), ctx.no_same_second_retry():
        first, token_a, _ = issue_session(ctx, op, False)
        second, token_b, _ = issue_session(ctx, op, False)
    expect_success(op, "the first session is created", first)
    expect_success(op, "the second session is created", second)
    assert token_a is not None and token_b is not None
    if token_a.id == token_b.id:
        raise fail(
            op,
            "sessions created in the same second get distinct ids",
            "two different ids",
            second,
            f"both have id {token_a.id}",
        )
    for token in (token_a, token_b):
        alive = ctx.session_alive(token.value)
        body = alive.json if isinstance(alive.json, dict) else {}
        if alive.status != 200 or body.get("id") != token.id:
            raise fail(
                op,
                "each token reads back its own session",
                f"200 with id {token.id}",
                alive,
            )
