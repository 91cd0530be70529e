"""What the scenario checks share: the error codes they expect, and the helpers
more than one rule group uses.
"""

from __future__ import annotations

from conformance.calls import Token
from conformance.context import Context
from conformance.exchange import Exchange
from conformance.failures import fail
from conformance.spec import Operation
from conformance.target import Account

INVALID_SESSION = "INVALID_SESSION_ERROR"
INSUFFICIENT = "INSUFFICIENT_PERMISSIONS_ERROR"


def expect_success(op: Operation, rule: str, exchange: Exchange) -> None:
    if exchange.status != op.success_status:
        raise fail(op, rule, f"{op.success_status}", exchange)


def issue_session(
    ctx: Context, op: Operation, long: bool
) -> tuple[Exchange, Token | None, Account]:
    if op.reverification == "credentials":
        account = ctx.account("user")
        call = ctx.valid_call(op, subject=account).with_body(rememberMe=long)
    else:
        account = ctx.account("user")
        call = ctx.valid_call(op, account).with_body(longLived=long)
    exchange = ctx.perform(call)
    token = ctx.token_from(exchange, account, None)
    return exchange, token, account
