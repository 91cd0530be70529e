"""Rate-limit windows as the `ratelimit.*` checks fill them: a paced series of requests
(the mock's clock moved, a deployment waited on), one address per check on the mock, and a
route window used up and kept for the case that judges its renewal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from conformance.calls import Call
from conformance.context import Context
from conformance.exchange import Exchange
from conformance.failures import expect_error, fail
from conformance.spec import Operation

RATELIMITED = "RATELIMITED_ERROR"


def _spacing(ctx: Context) -> float:
    limit, window = ctx.spec.burst
    return window / limit + 0.01


def pinned(ctx: Context) -> str | None:
    return ctx.client.fresh_ip() if ctx.target.is_mock else None


def send_paced(ctx: Context, call: Call, ip: str | None, count: int) -> list[Exchange]:
    """`count` requests, spaced so the burst limit never fires (moving the mock's clock)."""

    spacing = _spacing(ctx)
    results = []
    if ctx.target.control is None:
        ctx.client.settle(call.op.label, call.token, call.body)
    for _ in range(count):
        results.append(
            ctx.client.request(
                call.op.method,
                call.concrete_path(),
                token=call.token,
                query=call.query or None,
                json_body=call.body,
                headers=call.headers or None,
                route=call.op.path,
                ip=ip,
                retry_rate_limited=False,
                pace=False,
            )
        )
        if ctx.target.control is not None:
            ctx.target.control.clock(advance=spacing)
        else:
            ctx.client.pause(spacing)
    return results


# On a deployment the two halves of `ratelimit.route-limit` run apart: the window is used
# up where the check's place in the run comes, and judged to renew near the end of the
# run, so that the run's other work fills the window instead of a wait.
USED_UP, NEW_WINDOW = "used-up", "new-window"


@dataclass
class _UsedUp:
    """A route window a check used up: the call, its address and when the window ends."""

    call: Call
    ip: str | None
    ends: float  # time.monotonic() (on the mock: the mock's clock) when the window ends
    refused: bool  # the request past the limit was refused


def _window_actor(ctx: Context, op: Operation) -> Any:
    """Who uses up `op`'s window on a deployment. Buckets are per address and user, and
    /users/me/sessions is shared by three methods: each of them spends a different
    account's bucket where the run has several, instead of first waiting out the window
    the previous one used up (4 per 5 minutes, once scoped sessions have used it)."""
    if ctx.target.is_mock or op.authentication == "forbidden" or op.rate_limit is None:
        return "default"
    # The smallest budget (scoped sessions, 4 per 5 minutes) takes the first account that
    # is not the run's default one: a used-up window of the default account's would hold
    # up every later check that counts in its bucket (ratelimit.accounting met a 429).
    sharing = [
        other.id
        for other in sorted(
            ctx.spec.operations,
            key=lambda other: other.rate_limit.limit if other.rate_limit is not None else 0,
        )
        if other.rate_limit is not None and other.rate_limit.route == op.rate_limit.route
    ]
    accounts: list[Any] = []
    for role in ("target", "staff-plain", "user"):
        account = ctx.target.account(role)
        if account is not None and account.username not in {a.username for a in accounts}:
            accounts.append(account)
    return accounts[sharing.index(op.id) % len(accounts)] if accounts else "default"


def use_up_window(ctx: Context, op: Operation) -> _UsedUp:
    """Send `limit + 1` counted requests in one window; the last should be refused."""
    limiter = op.rate_limit
    assert limiter is not None
    call = ctx.valid_call(op, _window_actor(ctx, op), placeholders=True)
    ip = pinned(ctx)
    if not ctx.target.is_mock:
        # This operation must open the bucket itself: a window another method opened has
        # that method's limit (contract section 5).
        ctx.client.wait_for_full_budget(op.label, call.token, call.body, call.concrete_path())
    with ctx.target.frozen_clock():
        sent = send_paced(ctx, call, ip, limiter.limit + 1)
    ctx.after(call, sent[0])
    last = sent[-1]
    reset = last.headers.get("RateLimit-Reset", "")
    fits = reset.isdigit() and int(reset) <= limiter.window
    wait = int(reset) + 1 if fits else limiter.window + 1
    used = _UsedUp(call, ip, ctx.client_clock() + wait, last.status == 429)
    ctx.used_up[op.id] = used
    for i, exchange in enumerate(sent[:-1], 1):
        if exchange.status == 429:
            raise fail(
                op,
                f"request {i} of {limiter.limit} in the window is allowed",
                "not 429",
                exchange,
            )
    expect_error(
        op,
        f"request {limiter.limit + 1} within {limiter.window}s is refused",
        last,
        429,
        RATELIMITED,
    )
    if last.headers.get("RateLimit-Reason") != "standard":
        raise fail(
            op,
            "the refusal names the standard limit",
            "RateLimit-Reason: standard",
            last,
            f"429 with RateLimit-Reason: {last.headers.get('RateLimit-Reason')!r}",
        )
    return used
