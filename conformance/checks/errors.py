"""`errors.*`, response checks: an error body's code and message are the ones the
spec pairs with its status.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conformance.failures import fail
from conformance.registry import SpecView, check

if TYPE_CHECKING:
    from conformance.exchange import Exchange
    from conformance.spec import Operation


@check("errors.code-matches-status", kind="response")
def code_matches_status(ctx: SpecView, op: Operation, exchange: Exchange) -> None:
    """An error body's `code` and `message` are ones the spec pairs with that status."""
    body = exchange.json if isinstance(exchange.json, dict) else {}
    code = body.get("code")
    if exchange.status < 400:
        if isinstance(code, str) and code.endswith("_ERROR"):
            raise fail(
                op,
                "a success status carries no error code",
                "no *_ERROR code",
                exchange,
            )
        return
    known = ctx.spec.error_codes.get(code) if isinstance(code, str) else None
    if known is None:
        raise fail(
            op,
            "an error body carries a documented *_ERROR code",
            f"one of the documented codes for {exchange.status}",
            exchange,
        )
    statuses, message = known
    if exchange.status not in statuses:
        raise fail(
            op,
            f"{code} goes with status {'/'.join(map(str, sorted(statuses)))}",
            f"{'/'.join(map(str, sorted(statuses)))} {code}",
            exchange,
        )
    if message is not None and body.get("message") != message:
        raise fail(
            op,
            f"{code} has the message {message!r}",
            f"{exchange.status} {code} {message!r}",
            exchange,
        )
