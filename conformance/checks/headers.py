"""`headers.*`, response checks: Cache-Control, and RateLimit-* headers on counted
answers (RateLimit-Skipped on others), with a Reset within the window.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conformance.failures import fail
from conformance.registry import SpecView, check

if TYPE_CHECKING:
    from conformance.exchange import Exchange
    from conformance.spec import Operation


CACHE_CONTROL = "no-cache, no-store, must-revalidate"
RATELIMIT_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")


@check("headers.cache-control", kind="response")
def cache_control(ctx: SpecView, op: Operation, exchange: Exchange) -> None:
    """Every response carries Cache-Control: no-cache, no-store, must-revalidate."""
    value = exchange.headers.get("Cache-Control")
    if value is None or value.replace(" ", "") != CACHE_CONTROL.replace(" ", ""):
        raise fail(
            op,
            "every response carries the no-cache Cache-Control header",
            f"Cache-Control: {CACHE_CONTROL}",
            exchange,
            f"{exchange.status} with Cache-Control: {value!r}",
        )


def _uncounted(ctx: SpecView, op: Operation, exchange: Exchange) -> bool:
    """Whether the spec says this answer is not counted: its limiter ignores the status or
    the code, or it is a 503 (kill switches refuse before any route limiter, so the global
    limiter judges them)."""
    limiter = op.rate_limit or ctx.spec.global_rate_limit
    body = exchange.json if isinstance(exchange.json, dict) else {}
    if exchange.status == 503 and 503 in ctx.spec.global_rate_limit.ignore_statuses:
        return True
    return not limiter.counts(exchange.status, body.get("code"))


@check("headers.ratelimit", kind="response")
def ratelimit_headers(ctx: SpecView, op: Operation, exchange: Exchange) -> None:
    """Counted responses carry RateLimit-Limit/Remaining/Reset, others RateLimit-Skipped."""
    headers = exchange.headers
    present = {name: headers.get(name) for name in RATELIMIT_HEADERS}
    skipped = headers.get("RateLimit-Skipped")
    shown = ", ".join(
        f"{k}: {v}" for k, v in {**present, "RateLimit-Skipped": skipped}.items() if v is not None
    )
    problem = None
    if exchange.status == 429:
        if any(v is None or not v.isdigit() for v in present.values()):
            problem = "a 429 carries RateLimit-Limit, -Remaining and -Reset (whole numbers)"
        elif skipped != "true":
            problem = "a 429 is not counted: RateLimit-Skipped: true"
        elif headers.get("RateLimit-Reason") not in ("standard", "burst"):
            problem = "a 429 carries RateLimit-Reason: standard or burst"
    elif _uncounted(ctx, op, exchange):
        if skipped != "true":
            problem = f"a {exchange.status} is not counted here: RateLimit-Skipped: true"
    elif skipped is not None and skipped != "true":
        problem = "RateLimit-Skipped is only ever `true`"
    elif skipped is None:
        if any(v is None or not v.isdigit() for v in present.values()):
            problem = (
                "a counted response carries RateLimit-Limit, -Remaining and -Reset (whole numbers)"
            )
        elif int(present["RateLimit-Remaining"] or 0) > int(present["RateLimit-Limit"] or 0):
            problem = "RateLimit-Remaining never exceeds RateLimit-Limit"
    if problem:
        raise fail(
            op,
            problem,
            problem.split(": ", 1)[-1],
            exchange,
            f"{exchange.status} with {shown or 'no RateLimit-* headers'}",
        )


def _windows(ctx: SpecView, op: Operation) -> dict[int, float]:
    """Limit -> window of every limiter an answer of `op` may show: its own, those of the
    other methods on its route (one may have opened the bucket), and the global one."""
    spec = ctx.spec
    limiters = [spec.global_rate_limit]
    if op.rate_limit is not None:
        limiters += [
            other.rate_limit
            for other in spec.operations
            if other.rate_limit is not None and other.rate_limit.route == op.rate_limit.route
        ]
    return {limiter.limit: limiter.window for limiter in limiters}


@check("headers.ratelimit-reset", kind="response")
def ratelimit_reset(ctx: SpecView, op: Operation, exchange: Exchange) -> None:
    """RateLimit-Reset is whole seconds, never negative and never beyond the window of the
    limit shown (a 2-second-old login window answered `-2` on 5.3.0)."""
    reset = exchange.headers.get("RateLimit-Reset")
    if reset is None:
        return  # whether it must be there is headers.ratelimit's business
    windows = _windows(ctx, op)
    limit = exchange.headers.get("RateLimit-Limit", "")
    window = windows.get(int(limit)) if limit.isdigit() else None
    if window is None:
        window = max(windows.values())
    if not reset.strip().isdigit() or int(reset) > window:
        raise fail(
            op,
            "RateLimit-Reset counts the whole seconds left in the window",
            f"0 <= RateLimit-Reset <= {window:g}",
            exchange,
            f"{exchange.status} with RateLimit-Limit: {limit!r}, RateLimit-Reset: {reset!r}",
        )
