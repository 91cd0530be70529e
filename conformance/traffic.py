"""The rules that can be judged from traffic alone: one recorded exchange, or the stream of
exchanges in one rate-limit bucket.

The suite sends its own requests and judges them with these rules; `cumulonimbus-mock
proxy` judges a front end's real traffic with the very same functions, so a violation
carries the same check id and wording wherever it was found. This module imports only
the spec reader and the response checks (no pytest, Schemathesis or Hypothesis), so a
process that is not a test run can use it::

    spec = load_spec()
    op = find_operation(spec, "GET", "/users/me/sessions")
    failures = judge_exchange(spec, op, exchange)
    tracker = RemainingTracker(spec)
    failure = tracker.observe(op, exchange, "/users/me/sessions", "127.0.0.1", user, t0, t1)

Per exchange: every check of kind "response" in the registry (documented status, JSON,
body schema, error code for the status, Cache-Control, RateLimit-* counted or skipped).
Per bucket: `RateLimit-Remaining` goes down by one per counted answer, with buckets keyed
as the spec's `x-rate-limit` says (client address, route, user).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

# Importing the response checks registers them; the scenario checks are not needed here.
from conformance.checks import errors, headers, schema
from conformance.checks.headers import RATELIMIT_HEADERS
from conformance.failures import CheckFailure, fail
from conformance.registry import REGISTRY, Check

if TYPE_CHECKING:
    from conformance.exchange import Exchange
    from conformance.spec import Operation, Spec

# The proxy reports a bucket's stream of answers under the suite's check of the same rule
# (which, running in the suite, claims the failure itself).
REMAINING_CHECK = "ratelimit.headers"
REMAINING_RULE = "RateLimit-Remaining goes down by one per counted request"
# A window's end is known only to the second (RateLimit-Reset is whole seconds, rounded):
# within this margin of it a fresh window is possible, so the step is not judged.
WINDOW_MARGIN = 1.0


@dataclass(frozen=True)
class TrafficContext:
    """What a response check may read from its context when it judges recorded traffic."""

    spec: Spec


def find_operation(spec: Spec, method: str, path: str) -> Operation | None:
    """The operation a request reaches, as the service routes it: `path` is relative to the
    base URL; a literal segment wins over a template (`/users/me/sessions/all` is the
    delete-all operation for DELETE, but the session called `all` for GET)."""
    path = unquote(path.split("?", 1)[0])
    trimmed = path.rstrip("/") or "/"
    segments = trimmed.strip("/").split("/") if trimmed != "/" else []
    best: tuple[int, Operation] | None = None
    for op in spec.operations:
        if op.method != method.upper():
            continue
        template = op.path.strip("/").split("/") if op.path.strip("/") else []
        if len(template) != len(segments):
            continue
        literals = 0
        for want, got in zip(template, segments, strict=True):
            if want.startswith("{") and want.endswith("}"):
                if not got:
                    break
            elif want == got:
                literals += 1
            else:
                break
        else:
            if best is None or literals > best[0]:
                best = (literals, op)
    return best[1] if best else None


def response_checks() -> list[Check]:
    """The checks judging one exchange, in their modules' order (importing the modules
    registered them)."""
    rank = {module.__name__: n for n, module in enumerate((schema, headers, errors))}
    found = [c for c in REGISTRY.values() if c.kind == "response"]
    return sorted(found, key=lambda c: rank[c.func.__module__])


def response_check_ids() -> list[str]:
    return [c.id for c in response_checks()]


def judge_exchange(spec: Spec, op: Operation, exchange: Exchange) -> list[CheckFailure]:
    """Every response check's verdict on one exchange: the failures, none if it conforms."""
    ctx = TrafficContext(spec)
    failures = []
    for check in response_checks():
        try:
            check.func(ctx, op, exchange)
        except CheckFailure as failure:
            failures.append(failure)
    return failures


def remaining_step(
    op: Operation, previous: Exchange, exchange: Exchange, check_id: str = ""
) -> CheckFailure | None:
    """Two counted answers in one bucket and window, in order: the second's
    RateLimit-Remaining is one less than the first's. Without `check_id`, the failure is
    the running check's."""
    r1 = int(previous.headers["RateLimit-Remaining"])
    r2 = int(exchange.headers["RateLimit-Remaining"])
    if r2 == r1 - 1:
        return None
    return fail(
        op,
        REMAINING_RULE,
        f"RateLimit-Remaining {r1} then {r1 - 1}",
        exchange,
        f"RateLimit-Remaining {r1} then {r2}",
        check_id=check_id,
    )


def _counted_values(exchange: Exchange) -> tuple[int, int, int] | None:
    """(Limit, Remaining, Reset) of an answer that says it was counted, else None."""
    headers = exchange.headers
    if exchange.status == 429 or headers.get("RateLimit-Skipped") is not None:
        return None
    values = [headers.get(n, "") for n in RATELIMIT_HEADERS]
    if not all(v.isdigit() for v in values):
        return None  # headers.ratelimit reports it; nothing to follow here
    limit, remaining, reset = (int(v) for v in values)
    return limit, remaining, reset


@dataclass
class _Last:
    exchange: Exchange
    limit: int
    remaining: int
    reset: int
    finished: float


BucketKey = tuple[str, str, str | None]


class RemainingTracker:
    """Follows RateLimit-Remaining per bucket over a stream of exchanges.

    A bucket is (client address, route, user) as the spec keys it. An answer is placed in
    a bucket only where the outside can tell which one counted it: a success reached the
    operation's own limiter (its route bucket) or, without one, the global bucket, and
    belongs to the token's user (none for an operation that forbids a session). Any other
    counted answer might have been counted in the route or the global bucket, for a user
    or for nobody, so it ends what is known of those buckets for that address instead of
    being judged (so does any answer of an operation that neither needs nor forbids a
    session: whose bucket it counts in depends on whether the token was valid).
    Answers whose requests overlapped in time may have been counted in either order: the
    lower Remaining is kept, unjudged. A step is judged only within a window (before the
    previous answer's RateLimit-Reset has run out) and between answers of the same
    RateLimit-Limit. Other clients behind the same address (a shared office
    network in front of a staging server) count in the same buckets and would show as
    violations: the proxy's README says so.
    """

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self._last: dict[BucketKey, _Last] = {}
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self._last.clear()

    def observe(
        self,
        op: Operation | None,
        exchange: Exchange,
        path: str,
        client_ip: str,
        user: str | None,
        started: float,
        finished: float,
    ) -> CheckFailure | None:
        """Follow one exchange (`path` relative to the base URL, `started`/`finished` on one
        monotonic clock); a failure if it breaks the step from the bucket's last answer."""
        values = _counted_values(exchange)
        if values is None:
            return None
        limiter = op.rate_limit if op is not None else None
        route = limiter.bucket(path) if limiter is not None else None
        glob = self.spec.global_rate_limit.route
        with self._lock:
            if (
                op is None
                or not 200 <= exchange.status < 300
                or op.authentication not in ("required", "forbidden")
            ):
                # Which bucket (and whose) counted it cannot be told from outside.
                self._forget(client_ip, {glob, route} - {None})
                return None
            key = (client_ip, route or glob, user if op.authentication == "required" else None)
            limit, remaining, reset = values
            last = self._last.get(key)
            current = _Last(exchange, limit, remaining, reset, finished)
            if last is None:
                self._last[key] = current
                return None
            if started < last.finished:
                # Overlapping requests: either may have been counted first.
                if remaining < last.remaining:
                    self._last[key] = current
                return None
            self._last[key] = current
            if limit != last.limit or started >= last.finished + last.reset - WINDOW_MARGIN:
                return None  # perhaps a new window
            return remaining_step(op, last.exchange, exchange, REMAINING_CHECK)

    def _forget(self, client_ip: str, routes: set[str | None]) -> None:
        for key in [k for k in self._last if k[0] == client_ip and k[1] in routes]:
            del self._last[key]


def client_user(token: str | None) -> str | None:
    """The user a token names (its `sub`, unverified): whose buckets its answers count in."""
    from conformance.exchange import token_claims

    sub = token_claims(token).get("sub")
    return str(sub) if sub is not None else None


def token_of(headers: dict[str, str] | Any) -> str | None:
    for name, value in headers.items():
        if name.lower() == "authorization":
            return str(value)
    return None
