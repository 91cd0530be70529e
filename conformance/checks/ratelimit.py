"""`ratelimit.*`: rate limits, from the outside. Bursts, a route's limit and its
window, answers that are not counted, RateLimit-* values, buckets shared by every method
on a route (a literal path being a route of its own), and accounting answer by answer.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from conformance.calls import CHALLENGE, Call
from conformance.checks.common import expect_success
from conformance.checks.headers import RATELIMIT_HEADERS
from conformance.checks.ledger import Ledger
from conformance.checks.windows import (
    NEW_WINDOW,
    RATELIMITED,
    USED_UP,
    pinned,
    send_paced,
    use_up_window,
)
from conformance.context import Context
from conformance.exchange import Exchange
from conformance.failures import CheckFailure, expect_error, fail
from conformance.registry import check
from conformance.spec import Operation
from conformance.traffic import remaining_step


def _expected_limits(ctx: Context, op: Operation, call: Call) -> set[int]:
    """The RateLimit-Limit an answer of `op` may show.

    A route bucket shared by several methods has the limit of whichever request opened
    its window (contract section 5, observed rows 212-222). On the mock each check has a
    fresh address, so `op` opens it; on a deployment the window may be live already (the
    suite itself opens `/users/me/sessions` with a read before creating scoped sessions),
    and then the opener's limit, as the server last stated it, shows too."""
    own = (op.rate_limit or ctx.spec.global_rate_limit).limit
    if ctx.target.is_mock or op.rate_limit is None:
        return {own}
    live = ctx.client.live_bucket(ctx.client.bucket_key(op.label, call.token, call.concrete_path()))
    return {own} if live is None else {own, live.limit}


def _small_budget(op: Operation) -> bool:
    return op.rate_limit is not None and op.rate_limit.limit <= 10 and op.body_schema is not None


def _burst_call(ctx: Context, op: Operation) -> Call:
    call = ctx.valid_call(op, placeholders=True)
    if _small_budget(op):
        # A small route budget (logins, scoped sessions) would turn the burst into a
        # standard 429 on a deployment. An empty body is refused before the route's
        # limiter, and still counts (and bursts) in the global bucket.
        call = call.replace(body={})
    return call


def _room_for_the_series(ctx: Context, op: Operation, call: Call, count: int) -> None:
    """On a deployment, make sure the empty-body series cannot meet a standard 429.

    The spec says `{}` is refused before the route's limiter; 5.3.0 answers a login with
    `{}` 500 and counts it in the login bucket (observed row 31), so a series sent when
    two logins were left met a standard 429 at its third request. One request first
    tells where the server counts it: where it shows the route's own limit, or is
    refused by the route's limit (a 429 this check plans for), wait until that bucket
    has room for the series. A server that keeps to the spec costs one request more: the
    probe is not held back by the route's budget, which it does not touch there."""
    ctx.client.settle(op.label, call.token, call.body)
    probe = ctx.client.request(
        call.op.method,
        call.concrete_path(),
        token=call.token,
        json_body=call.body,
        headers=call.headers or None,
        route=op.path,
        retry_rate_limited=False,
        pace=False,
    )
    assert op.rate_limit is not None
    own = (
        str(op.rate_limit.limit) if op.rate_limit.limit != ctx.spec.global_rate_limit.limit else ""
    )
    # Counted there, or refused by its limit (a 429 is never counted, so it says Skipped).
    reached_route = probe.headers.get("RateLimit-Skipped") != "true" or (
        probe.status == 429 and probe.headers.get("RateLimit-Reason") == "standard"
    )
    if reached_route and probe.headers.get("RateLimit-Limit") == own:
        ctx.client.wait_for_room(op.label, call.token, call.concrete_path(), count)


@check("ratelimit.burst")
def ratelimit_burst(ctx: Context, op: Operation, variant: object) -> None:
    """More than 3 requests within 1 s: the next one is 429 with RateLimit-Reason burst."""

    limit, window = ctx.spec.burst
    call = _burst_call(ctx, op)
    ip = pinned(ctx)
    if not ctx.target.is_mock:
        if _small_budget(op):
            # Every request of the series reaches the route's limiter there, and the
            # limit is judged before the burst: the last needs room too, or its 429
            # says `standard` (a fresh window less the probe is one short).
            _room_for_the_series(ctx, op, call, limit + 1)
        ctx.client.settle(op.label, call.token, call.body)
        ctx.client.pause(window + 0.1)
    sent: list[Exchange] = []
    started = time.monotonic()
    with ctx.target.frozen_clock():
        for _ in range(limit + 1):
            sent.append(
                ctx.client.request(
                    call.op.method,
                    call.concrete_path(),
                    token=call.token,
                    query=call.query or None,
                    json_body=call.body,
                    headers=call.headers or None,
                    route=op.path,
                    ip=ip,
                    retry_rate_limited=False,
                    pace=False,
                )
            )
    ctx.after(call, sent[0])
    if not ctx.target.is_mock and time.monotonic() - started > window * 0.8:
        import pytest

        pytest.skip("the network is too slow to send a burst within the burst window")
    last = sent[-1]
    for early in sent[:-1]:
        if early.status == 429:
            raise fail(
                op,
                f"the first {limit} rapid requests are not refused",
                "not 429",
                early,
            )
    expect_error(
        op,
        f"request {limit + 1} within {window:g}s is refused",
        last,
        429,
        RATELIMITED,
    )
    reason = last.headers.get("RateLimit-Reason")
    reset = last.headers.get("RateLimit-Reset", "")
    if reason != "burst" or not reset.isdigit() or int(reset) > max(1, int(window)):
        raise fail(
            op,
            "a burst 429 says so and resets within the burst window",
            f"RateLimit-Reason: burst, RateLimit-Reset <= {window:g}",
            last,
            f"429 with RateLimit-Reason: {reason!r}, RateLimit-Reset: {reset!r}",
        )


@check(
    "ratelimit.route-limit",
    applies=lambda op: op.rate_limit is not None,
    slow=True,
    variants=lambda op: [USED_UP, NEW_WINDOW],
    late={NEW_WINDOW},
)
def ratelimit_route_limit(ctx: Context, op: Operation, variant: str) -> None:
    """After `limit` counted requests the next is 429 standard; a new window passes."""
    if variant == USED_UP:
        use_up_window(ctx, op)
        return
    # On the mock every case starts afresh (its clock is free to move); on a deployment
    # the window the used-up case spent is judged, once it has ended.
    used = None if ctx.target.is_mock else ctx.used_up.pop(op.id, None)
    if used is None:
        try:
            used = use_up_window(ctx, op)
        except CheckFailure:
            used = ctx.used_up.pop(op.id)
    if not used.refused:
        pytest.skip("the window was never used up (see this check's used-up case)")
    left = used.ends - ctx.client_clock()
    if left > 0:
        ctx.target.wait(left, f"{op.id}: waiting for the rate-limit window to end")
    fresh = ctx.valid_call(op, used.call.actor) if op.deletes_sessions else used.call
    with ctx.target.frozen_clock():
        after = send_paced(ctx, fresh, used.ip, 1)[0]
    if after.status == 429:
        raise fail(
            op,
            "after RateLimit-Reset seconds a new window starts",
            "not 429",
            after,
        )


@check(
    "ratelimit.login-404-not-counted",
    applies=lambda op: op.rate_limit is not None and 404 in op.rate_limit.ignore_statuses,
    slow=True,
)
def ratelimit_404_not_counted(ctx: Context, op: Operation, variant: object) -> None:
    """404 answers (unknown user, wrong password) do not use up the route's limit."""
    limiter = op.rate_limit
    assert limiter is not None
    call = ctx.valid_call(op)
    wrong = call.with_body(password="wrong-password-" + "y" * 6)
    ip = pinned(ctx)
    if not ctx.target.is_mock:
        # The whole budget must be free, or the last request is refused for other reasons.
        ctx.client.wait_for_full_budget(op.label, call.token, call.body)
    with ctx.target.frozen_clock():
        misses = send_paced(ctx, wrong, ip, limiter.limit + 2)
        for miss in misses:
            if miss.status != 404:
                raise fail(
                    op,
                    "a wrong password is 404 and not counted",
                    "404",
                    miss,
                )
        hit = send_paced(ctx, call, ip, 1)[0]
    if hit.status == 201 and call.subject is not None:
        ctx.token_from(hit, call.subject, None)
    expect_success(
        op,
        f"after {limiter.limit + 2} 404s a valid request still passes",
        hit,
    )


@check("ratelimit.headers")
def ratelimit_headers_values(ctx: Context, op: Operation, variant: object) -> None:
    """RateLimit-Limit is the bucket's limit and RateLimit-Remaining counts down."""
    call = ctx.valid_call(op)
    ip = pinned(ctx)
    if not ctx.target.is_mock:
        ctx.open_bucket_widely(op, call.token)  # as every creation on a deployment
    # Before sending: what the server stated of the bucket before these two requests.
    limits = _expected_limits(ctx, op, call)
    with ctx.target.frozen_clock():
        first, second = send_paced(ctx, call, ip, 2)
    ctx.after(call, first)
    window = (op.rate_limit or ctx.spec.global_rate_limit).window
    for exchange in (first, second):
        values = {name: exchange.headers.get(name, "") for name in RATELIMIT_HEADERS}
        shown = ", ".join(f"{k}: {v!r}" for k, v in values.items())
        if exchange.headers.get("RateLimit-Skipped") == "true":
            continue
        if not all(v.isdigit() for v in values.values()):
            raise fail(
                op,
                "a counted response carries the RateLimit-* headers",
                "RateLimit-Limit, -Remaining, -Reset",
                exchange,
                f"{exchange.status} with {shown}",
            )
        if (
            int(values["RateLimit-Limit"]) not in limits
            or not 0 <= int(values["RateLimit-Reset"]) <= window
        ):
            shown_limits = " or ".join(str(limit) for limit in sorted(limits))
            raise fail(
                op,
                "RateLimit-Limit and -Reset describe the operation's limiter",
                f"RateLimit-Limit: {shown_limits}, RateLimit-Reset <= {window}",
                exchange,
                f"{exchange.status} with {shown}",
            )
    if "true" in (first.headers.get("RateLimit-Skipped"), second.headers.get("RateLimit-Skipped")):
        return
    # The same rule the proxy applies to real traffic (conformance/traffic.py).
    failure = remaining_step(op, first, second)
    if failure is not None:
        raise failure


def _route_partner(ctx: Context, op: Operation) -> Operation | None:
    """Another method on the same rate-limit route, preferring a read."""
    limiter = op.rate_limit
    if limiter is None:
        return None
    others = [
        other
        for other in ctx.spec.operations
        if other.rate_limit is not None
        and other.rate_limit.route == limiter.route
        and other.method != op.method
    ]
    others.sort(key=lambda other: other.method != "GET")
    return others[0] if others else None


def _off_literal_routes(call: Call) -> Call:
    """The call on its templated route: a path parameter that would make the path a
    literal route of its own (``me``) names an unknown id instead."""
    limiter = call.op.rate_limit
    if limiter is None or limiter.bucket(call.concrete_path()) == limiter.route:
        return call
    return call.replace(path={name: "1234567890" for name in call.path})


def _has_route_partner(op: Operation) -> bool:
    from conformance.spec import load_spec

    limiter = op.rate_limit
    return limiter is not None and any(
        other.rate_limit is not None
        and other.rate_limit.route == limiter.route
        and other.method != op.method
        for other in load_spec().operations
    )


@check("ratelimit.route-buckets", applies=_has_route_partner)
def ratelimit_route_buckets(ctx: Context, op: Operation, variant: object) -> None:
    """A bucket is a route, shared by every method on it: a request by another method on
    the same path counts in the same bucket (observed rows 123-124, 53-60)."""
    partner = _route_partner(ctx, op)
    assert partner is not None
    ip = pinned(ctx)
    first_call = _off_literal_routes(ctx.valid_call(op, placeholders=True))
    second_call = _off_literal_routes(ctx.valid_call(partner, placeholders=True))
    with ctx.target.frozen_clock():
        (first,) = send_paced(ctx, first_call, ip, 1)
        (second,) = send_paced(ctx, second_call, ip, 1)
    ctx.after(first_call, first)
    ctx.after(second_call, second)
    if "true" in (first.headers.get("RateLimit-Skipped"), second.headers.get("RateLimit-Skipped")):
        return  # one of them was not counted here: nothing to compare
    r1, r2 = first.headers.get("RateLimit-Remaining"), second.headers.get("RateLimit-Remaining")
    if not (r1 and r2 and r1.isdigit() and r2.isdigit()):
        return  # headers.ratelimit judges missing headers
    if int(r2) != int(r1) - 1:
        raise fail(
            op,
            f"{partner.method} on the same route ({op.rate_limit.route}) counts in the same"  # type: ignore[union-attr]
            " bucket",
            f"RateLimit-Remaining: {int(r1) - 1} after {r1}",
            second,
            f"RateLimit-Remaining: {r2} after {op.method}'s {r1}",
        )


@check(
    "ratelimit.literal-route",
    applies=lambda op: op.rate_limit is not None and bool(op.rate_limit.literal_routes),
)
def ratelimit_literal_route(ctx: Context, op: Operation, variant: object) -> None:
    """A literal path such as ``/users/me/sessions/me`` is a bucket of its own, apart from
    the templated route it also matches (observed rows 121-122)."""
    limiter = op.rate_limit
    assert limiter is not None
    ip = pinned(ctx)
    call = ctx.valid_call(op, placeholders=True)
    literal = limiter.literal_routes[0]
    templated = _off_literal_routes(call)
    literal_call = call.replace()
    if op.deletes_sessions and not ctx.target.is_mock and call.actor is not None:
        # `me` deletes the caller's session: with the suite's browser session that costs
        # a login to replace (4 per 5 minutes); a session of the same user counts in the
        # same bucket.
        literal_call = call.replace(token=ctx.disposable(call.actor).value)
    for name in literal_call.path:
        literal_call.path[name] = literal.rsplit("/", 1)[-1]
    # On a deployment earlier checks may have counted in the literal bucket already, in a
    # window still live: its count goes on from what the server last stated (the mock
    # gives this check a fresh address, so there the window is new).
    before = (
        None
        if ctx.target.is_mock
        else ctx.client.live_bucket(ctx.client.bucket_key(op.label, call.token, literal))
    )
    with ctx.target.frozen_clock():
        (first,) = send_paced(ctx, templated, ip, 1)
        (second,) = send_paced(ctx, literal_call, ip, 1)
    ctx.after(templated, first)
    ctx.after(literal_call, second)
    if second.headers.get("RateLimit-Skipped") == "true":
        return
    limit, remaining = (
        second.headers.get("RateLimit-Limit"),
        second.headers.get("RateLimit-Remaining"),
    )
    if not (limit and remaining and limit.isdigit() and remaining.isdigit()):
        return
    # A window that ended meanwhile starts again at limit - 1.
    expected = {int(limit) - 1} | ({before.remaining - 1} if before is not None else set())
    if int(remaining) not in expected:
        shown = " or ".join(str(value) for value in sorted(expected))
        raise fail(
            op,
            f"{literal} is a route of its own: its count goes on from its own last answer"
            " (limit - 1 in a new window)",
            f"RateLimit-Remaining: {shown}",
            second,
            f"RateLimit-Remaining: {remaining} (counted with {limiter.route})",
        )


def _accounting_call(ctx: Context, op: Operation) -> Call:
    """A request of `op` that reaches its route's limiter and, where it can, creates
    nothing: at login, a caller who is already logged in (counted, observed rows 40-45)."""
    if op.authentication == "forbidden":
        return ctx.valid_call(op).replace(token=ctx.browser(ctx.account("user")).value)
    return _off_literal_routes(ctx.valid_call(op, placeholders=True))


def _early_refusal(ctx: Context, op: Operation, call: Call) -> Call | None:
    """The same caller's request refused before the route's limiter (bad input)."""
    ints = [p for p in op.params_in("query") if p.schema.get("type") == "integer"]
    if ints:
        return call.replace(query={**call.query, ints[0].name: "not-a-number"})
    if op.body_schema is not None:
        return call.replace(body={})
    return None


def _accounting_partner(ctx: Context, op: Operation) -> Operation | None:
    """Another method on the same route; one that creates nothing comes first."""
    limiter = op.rate_limit
    if limiter is None:
        return None
    others = [
        other
        for other in ctx.spec.operations
        if other.rate_limit is not None
        and other.rate_limit.route == limiter.route
        and other.method != op.method
    ]
    others.sort(key=lambda other: (other.issues_tokens, other.method != "GET"))
    return others[0] if others else None


@check("ratelimit.accounting")
def ratelimit_accounting(ctx: Context, op: Operation, variant: object) -> None:
    """Within a window each counted answer lowers RateLimit-Remaining by exactly one, in
    the one bucket the spec names (the route's, shared by its methods, or the global one
    for answers refused before the route's limiter); Limit is the spec's, Reset never
    grows; uncounted answers say RateLimit-Skipped and show no budget."""
    ip = pinned(ctx)
    call = _accounting_call(ctx, op)
    partner = _accounting_partner(ctx, op)
    if not ctx.target.is_mock and op.rate_limit is not None:
        # The series is sent unpaced, so the caller's route bucket must have room for its
        # counted requests (two, and two more with a partner): an earlier check may have
        # used this account's window up, and the series would meet a 429 of its own making.
        counted = 4 if partner is not None else 2
        ctx.client.wait_for_room(op.label, call.token, call.concrete_path(), counted)
        # A small budget (scoped sessions) is opened by a read of the same route, as the
        # run does everywhere: the sequence below then fits, and spends no 5-minute window.
        ctx.open_bucket_widely(op, call.token)
    # At most four answers counted in the route's bucket: within a budget of 4.
    steps: list[tuple[Operation, Any, str]] = [(op, call, "a first request")]
    early = _early_refusal(ctx, op, call) if op.rate_limit is not None else None
    if early is not None:
        steps += [(op, early, "bad input"), (op, call, "a request after bad input")]
    else:
        steps += [(op, call, "a second request")]
    if partner is not None:
        other = _off_literal_routes(ctx.valid_call(partner, placeholders=True))
        other = other.replace(token=call.token) if other.actor == call.actor else other
        steps += [
            (partner, other, f"{partner.method} on the same route"),
            (op, call, f"a request after {partner.method}"),
        ]
    limiter = op.rate_limit
    if limiter is not None and op.reverification == "credentials":
        anonymous = ctx.valid_call(op)
        if 404 in limiter.ignore_statuses:
            steps.append((op, anonymous.with_body(password="wrong-" + "z" * 8), "a wrong password"))
        totp_user = ctx.target.account("user-totp")
        if CHALLENGE in limiter.ignore_codes and totp_user is not None:
            steps.append((op, ctx.valid_call(op, subject=totp_user), "a challenge"))
    ledger = Ledger(ctx, op)
    with ctx.target.frozen_clock():
        for sender, step, what in steps:
            (exchange,) = send_paced(ctx, step, ip, 1)
            if exchange.status == 201 and sender.issues_tokens and step.subject is not None:
                ctx.token_from(exchange, step.subject, None)
            ctx.after(step, exchange)
            ledger.judge(sender, exchange, what)
