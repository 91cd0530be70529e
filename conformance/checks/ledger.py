"""What `ratelimit.accounting` saw of its buckets, judged answer by answer: the one
bucket the spec names for each answer, its limit, a Remaining that goes down by exactly
one per counted answer, a Reset that never grows, and uncounted answers that say so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from conformance.checks.headers import RATELIMIT_HEADERS
from conformance.context import Context
from conformance.exchange import Exchange
from conformance.failures import fail
from conformance.spec import Operation, RateLimit

# Raises the check's failure: a rule and what it expected.
Broken = Callable[[str, str], None]


@dataclass
class _Bucket:
    limit: int
    remaining: int
    reset: int


class Ledger:
    """What one check saw of its buckets, judged answer by answer."""

    def __init__(self, ctx: Context, op: Operation) -> None:
        self.ctx = ctx
        self.op = op
        self.buckets: dict[str, _Bucket] = {}

    def judge(self, sender: Operation, exchange: Exchange, what: str) -> None:
        ctx, op = self.ctx, self.op
        spec = ctx.spec
        headers = exchange.headers
        skipped = headers.get("RateLimit-Skipped")
        values = {name: headers.get(name) for name in RATELIMIT_HEADERS}
        shown = ", ".join(
            f"{k}: {v}" for k, v in {**values, "RateLimit-Skipped": skipped}.items() if v
        )

        def broken(rule: str, expected: str) -> None:
            raise fail(
                op,
                f"{what}: {rule}",
                expected,
                exchange,
                f"{exchange.status} {exchange.code or ''} with {shown or 'no RateLimit-* headers'}",
            )

        if exchange.status == 429:
            broken("a request the budget allows is not refused", "not 429")
        in_route = sender.passes_route_limiter(exchange.status, exchange.code)
        limiter = (sender.rate_limit if in_route else None) or spec.global_rate_limit
        bucket_name = limiter.bucket(_path_of(exchange, ctx)) if in_route else "global"
        counted = limiter.counts(exchange.status, exchange.code)
        if exchange.status == 503 and 503 in spec.global_rate_limit.ignore_statuses:
            counted = False
        if not counted:
            if skipped != "true" or values["RateLimit-Limit"] or values["RateLimit-Remaining"]:
                broken(
                    "an answer that is not counted says so, and shows no budget",
                    "RateLimit-Skipped: true, no RateLimit-Limit or -Remaining",
                )
            return
        if skipped is not None:
            broken("a counted answer does not also say it was skipped", "no RateLimit-Skipped")
        if not all(v is not None and v.isdigit() for v in values.values()):
            broken("a counted answer shows its budget", "RateLimit-Limit, -Remaining, -Reset")
        limit = int(values["RateLimit-Limit"] or 0)
        remaining = int(values["RateLimit-Remaining"] or 0)
        reset = int(values["RateLimit-Reset"] or 0)
        before = self.buckets.get(bucket_name)
        if before is not None and not ctx.target.is_mock and reset > before.reset:
            # A deployment's window may end between two requests: a new one starts.
            before = None
        seen = _Bucket(limit, remaining, reset)
        if before is None:
            self._opens(broken, limiter, bucket_name, seen)
        else:
            self._follows(broken, before, bucket_name, seen)
        self.buckets[bucket_name] = seen

    def _opens(self, broken: Broken, limiter: RateLimit, bucket_name: str, seen: _Bucket) -> None:
        """The first counted answer this check saw in a window of the bucket."""
        ctx, limit = self.ctx, seen.limit
        if ctx.target.is_mock or bucket_name == "global":
            # This check opened the bucket (a fresh address on the mock): its limit.
            if ctx.target.is_mock and limit != limiter.limit:
                broken(
                    f"RateLimit-Limit is the spec's limit of the {bucket_name} bucket",
                    f"RateLimit-Limit: {limiter.limit}",
                )
            if ctx.target.is_mock and seen.remaining != limit - 1:
                broken(
                    "the first counted answer of a window leaves limit - 1",
                    f"RateLimit-Remaining: {limit - 1}",
                )
        allowed = {
            other.rate_limit.limit
            for other in ctx.spec.operations
            if other.rate_limit is not None and other.rate_limit.route == limiter.route
        } | {limiter.limit}
        if limit not in allowed:
            broken(
                f"RateLimit-Limit is a limit the spec gives the {bucket_name} bucket",
                f"RateLimit-Limit one of {sorted(allowed)}",
            )

    def _follows(self, broken: Broken, before: _Bucket, bucket_name: str, seen: _Bucket) -> None:
        """A counted answer after another in the same window of the bucket."""
        if seen.limit != before.limit:
            broken(
                "RateLimit-Limit stays what opened the window",
                f"RateLimit-Limit: {before.limit}",
            )
        if seen.remaining != before.remaining - 1:
            broken(
                f"each counted answer lowers RateLimit-Remaining of the {bucket_name}"
                " bucket by exactly one",
                f"RateLimit-Remaining: {before.remaining - 1}",
            )
        if seen.reset > before.reset:
            broken(
                "RateLimit-Reset never grows within a window",
                f"RateLimit-Reset <= {before.reset}",
            )


def _path_of(exchange: Exchange, ctx: Context) -> str:
    from urllib.parse import urlsplit

    base = urlsplit(ctx.client.base_url).path
    return urlsplit(exchange.url).path[len(base) :] or "/"
