"""Checks derived from the operations' `x-` policies: authentication, scopes, staff,
identity reverification, kill switches, rate limits, tokens, paging, bulk deletes.

Each drives its own requests through a `Context` and tests one rule on its own: the
request is otherwise valid, so only the rule under test can explain the answer.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import pytest

from conformance.client import NO_BODY, Exchange, token_claims, token_header
from conformance.context import CHALLENGE, UNKNOWN_SID, UNKNOWN_UID, Context, expect_error
from conformance.registry import CheckFailure, check, fail
from conformance.response_checks import RATELIMIT_HEADERS
from conformance.spec import BROWSER_SESSION_ONLY, Operation
from conformance.target import totp
from conformance.traffic import remaining_step

INVALID_SESSION = "INVALID_SESSION_ERROR"
INSUFFICIENT = "INSUFFICIENT_PERMISSIONS_ERROR"
RATELIMITED = "RATELIMITED_ERROR"


def _is_flag(op: Operation) -> bool:
    return op.scope not in (None, BROWSER_SESSION_ONLY)


def _expect_success(check_id: str, op: Operation, rule: str, exchange: Exchange) -> None:
    if exchange.status != op.success_status:
        raise fail(check_id, op, rule, f"{op.success_status}", exchange)


# Authentication ---------------------------------------------------------------------------


@check(
    "auth.required",
    applies=lambda op: op.authentication == "required",
    variants=lambda op: ["no-token", "malformed-token", "bad-signature", "bearer-prefix"],
)
def auth_required(ctx: Context, op: Operation, variant: str) -> None:
    """A request without a valid session gets 401 INVALID_SESSION_ERROR."""
    call = ctx.valid_call(op, placeholders=True)
    good = call.token or ""
    token = {
        "no-token": None,
        "malformed-token": "not-a-token",
        "bad-signature": good.rsplit(".", 1)[0] + ".c2lnbmF0dXJl",
        "bearer-prefix": f"Bearer {good}",
    }[variant]
    exchange = ctx.send(call.replace(token=token))
    expect_error(
        "auth.required",
        op,
        f"a request with {variant} is anonymous",
        exchange,
        401,
        INVALID_SESSION,
    )


@check("auth.forbidden", applies=lambda op: op.authentication == "forbidden")
def auth_forbidden(ctx: Context, op: Operation, variant: Any) -> None:
    """A caller who is already logged in gets 401 INVALID_SESSION_ERROR."""
    user = ctx.account("user")
    call = ctx.valid_call(op).replace(token=ctx.browser(user).value)
    exchange = ctx.send(call)
    expect_error(
        "auth.forbidden", op, "a logged-in caller is refused", exchange, 401, INVALID_SESSION
    )


@check("auth.banned", applies=lambda op: op.reverification == "credentials")
def auth_banned(ctx: Context, op: Operation, variant: Any) -> None:
    """A banned user gets 403 BANNED_ERROR."""
    banned = ctx.account("banned")
    call = ctx.valid_call(op, subject=banned)
    exchange = ctx.perform(call)
    expect_error("auth.banned", op, "a banned user is refused", exchange, 403, "BANNED_ERROR")


# Scopes -----------------------------------------------------------------------------------


def _actor(ctx: Context, op: Operation) -> Any:
    return ctx.staff_with_factor() if op.staff_only else ctx.account("user")


@check("scope.denied", applies=_is_flag)
def scope_denied(ctx: Context, op: Operation, variant: Any) -> None:
    """A scoped session without the operation's flag (and without ALL) gets 403."""
    flags = ctx.spec.permission_flags
    if ctx.target.is_mock:
        # Every other flag: also catches a server that accepts a wrong one.
        mask = sum(bit for name, bit in flags.items() if name not in ("ALL", op.scope))
        what = f"every flag but {op.scope}"
    else:
        # One token for all operations (4 new sessions per 5 minutes): every flag that
        # no operation asks for. A wrong flag accepted shows up in scope.allowed.
        used = {o.scope for o in ctx.spec.operations}
        mask = sum(bit for name, bit in flags.items() if name != "ALL" and name not in used)
        what = "only flags that no operation needs"
    actor = _actor(ctx, op)
    token = ctx.scoped(actor, mask)
    call = ctx.valid_call(op, actor, token=token.value, placeholders=True)
    exchange = ctx.perform(call)
    ctx.after(call, exchange)
    expect_error(
        "scope.denied",
        op,
        f"a scoped session with {what} is refused",
        exchange,
        403,
        INSUFFICIENT,
    )


@check("scope.allowed", applies=_is_flag, variants=lambda op: [op.scope, "ALL"])
def scope_allowed(ctx: Context, op: Operation, variant: str) -> None:
    """A scoped session with the operation's flag, or with ALL, passes the scope check."""
    actor = _actor(ctx, op)
    token = ctx.scoped(actor, ctx.spec.permission_flags[variant])
    call = ctx.valid_call(op, actor, token=token.value)
    exchange = ctx.perform(call)
    ctx.after(call, exchange)
    _expect_success("scope.allowed", op, f"a scoped session with {variant} may call it", exchange)


@check("scope.browser-only", applies=lambda op: op.scope == BROWSER_SESSION_ONLY)
def scope_browser_only(ctx: Context, op: Operation, variant: Any) -> None:
    """Every scoped session, even one with ALL, gets 403 where only browser sessions may go."""
    actor = _actor(ctx, op)
    token = ctx.scoped(actor, ctx.spec.permission_flags["ALL"])
    call = ctx.valid_call(op, actor, token=token.value)
    exchange = ctx.perform(call)
    expect_error(
        "scope.browser-only", op, "a scoped session (ALL) is refused", exchange, 403, INSUFFICIENT
    )


# Staff ------------------------------------------------------------------------------------


@check("staff.non-staff", applies=lambda op: op.staff_only)
def staff_non_staff(ctx: Context, op: Operation, variant: Any) -> None:
    """A non-staff user gets 403, even on their own user id."""
    user = ctx.account("user")
    call = ctx.valid_call(op, user, subject=user, placeholders=True)
    exchange = ctx.perform(call)
    ctx.after(call, exchange)
    expect_error(
        "staff.non-staff", op, "a non-staff user is refused (own uid)", exchange, 403, INSUFFICIENT
    )


@check("staff.no-second-factor", applies=lambda op: op.staff_only)
def staff_no_second_factor(ctx: Context, op: Operation, variant: Any) -> None:
    """Staff with no second factor enrolled get 401 ENDPOINT_REQUIRES_SECOND_FACTOR_ERROR."""
    plain = ctx.account("staff-plain")
    call = ctx.valid_call(op, plain, placeholders=True)
    exchange = ctx.perform(call)
    expect_error(
        "staff.no-second-factor",
        op,
        "staff without a second factor are refused",
        exchange,
        401,
        "ENDPOINT_REQUIRES_SECOND_FACTOR_ERROR",
    )


@check("staff.unknown-user", applies=lambda op: op.staff_only and op.param("uid") is not None)
def staff_unknown_user(ctx: Context, op: Operation, variant: Any) -> None:
    """An unknown uid gets 404 INVALID_USER_ERROR."""
    call = ctx.valid_call(op, ctx.staff_with_factor(), placeholders=True)
    call.path["uid"] = UNKNOWN_UID
    exchange = ctx.perform(call)
    expect_error(
        "staff.unknown-user", op, "an unknown uid is 404", exchange, 404, "INVALID_USER_ERROR"
    )


# Identity reverification ------------------------------------------------------------------


def _reverify_actor(ctx: Context, op: Operation, with_factor: bool) -> Any:
    if op.staff_only:
        return ctx.staff_with_factor()
    if with_factor:
        account = ctx.target.account("user-totp")
        return account if account is not None else ctx.staff_with_factor()
    return ctx.account("user")


def _reverify_call(ctx: Context, op: Operation, account: Any, placeholders: bool = False) -> Any:
    if op.reverification == "credentials":
        return ctx.valid_call(op, subject=account, placeholders=placeholders)
    return ctx.valid_call(op, account, placeholders=placeholders)


@check(
    "reverify.missing-password", applies=lambda op: op.reverification in ("password", "credentials")
)
def reverify_missing_password(ctx: Context, op: Operation, variant: Any) -> None:
    """Without `password`: 400 MISSING_FIELDS_ERROR naming password."""
    account = _reverify_actor(ctx, op, False)
    call = _reverify_call(ctx, op, account, placeholders=True).with_body(password=NO_BODY)
    exchange = ctx.send(call)
    expect_error(
        "reverify.missing-password",
        op,
        "a request without password is a bad request",
        exchange,
        400,
        "MISSING_FIELDS_ERROR",
        fields=lambda f: isinstance(f, list) and "password" in f,
    )


@check(
    "reverify.wrong-password", applies=lambda op: op.reverification in ("password", "credentials")
)
def reverify_wrong_password(ctx: Context, op: Operation, variant: Any) -> None:
    """A wrong password: 401 INVALID_PASSWORD_ERROR (404 INVALID_USER_ERROR at login)."""
    account = _reverify_actor(ctx, op, False)
    call = _reverify_call(ctx, op, account, placeholders=True).with_body(
        password="wrong-" + "x" * 8
    )
    exchange = ctx.send(call)
    if op.reverification == "credentials":
        expect_error(
            "reverify.wrong-password",
            op,
            "a wrong password is an unknown user",
            exchange,
            404,
            "INVALID_USER_ERROR",
        )
    else:
        expect_error(
            "reverify.wrong-password",
            op,
            "a wrong password is refused",
            exchange,
            401,
            "INVALID_PASSWORD_ERROR",
        )


def _wrong_code(secret: str, now: float) -> str:
    accepted = {totp(secret, now + step * 30) for step in range(-3, 3)}
    code = 123456
    while f"{code:06d}" in accepted:
        code = (code + 111111) % 1000000
    return f"{code:06d}"


@check("reverify.challenge", applies=lambda op: op.reverification in ("password", "credentials"))
def reverify_challenge(ctx: Context, op: Operation, variant: Any) -> None:
    """With a second factor: the password gets a challenge; a wrong code 401, a right one passes."""
    account = _reverify_actor(ctx, op, True)
    if not account.totp_secret:
        ctx.staff_with_factor()
    call = _reverify_call(ctx, op, account)
    first = ctx.send(call)
    now = ctx.now()
    lifetime = ctx.spec.token_lifetimes.get("secondFactorChallenge", 300)
    body = first.json if isinstance(first.json, dict) else {}
    rule = "a correct password with a second factor enrolled gets a challenge"
    expect_error("reverify.challenge", op, rule, first, 401, CHALLENGE)
    types = body.get("types")
    claims = token_claims(body.get("token"))
    problems = []
    if not isinstance(types, list) or "totp" not in types or types[-1:] != ["backup"]:
        problems.append(f"types {types!r} (want the factors then 'backup')")
    if account.id and str(claims.get("sub")) != account.id:
        problems.append(f"token sub {claims.get('sub')!r} (want {account.id})")
    exp = body.get("exp")
    if not isinstance(exp, int) or abs(exp - (now + lifetime)) > 10:
        problems.append(f"exp {exp!r} (want about now + {lifetime})")
    if problems:
        raise fail(
            "reverify.challenge",
            op,
            rule,
            "a well-formed challenge",
            first,
            f"{first.summary()}; problems: {'; '.join(problems)}",
        )
    wrong = ctx.send(ctx.answer_challenge(call, first, code=_wrong_code(account.totp_secret, now)))
    expect_error(
        "reverify.challenge",
        op,
        "a wrong TOTP code is refused",
        wrong,
        401,
        "INVALID_SECOND_FACTOR_RESPONSE_ERROR",
    )
    again = ctx.send(call)
    expect_error("reverify.challenge", op, rule, again, 401, CHALLENGE)
    answered = ctx.send(ctx.answer_challenge(call, again))
    ctx.after(call, answered)
    if op.issues_tokens and answered.status == 201:
        ctx._token_from(answered, account, None)
    _expect_success("reverify.challenge", op, "a right TOTP code completes the request", answered)


# Kill switches ----------------------------------------------------------------------------


def _killswitch_call(ctx: Context, op: Operation) -> Any:
    if op.staff_only:
        # Staff bypass kill switches; an anonymous caller does not.
        return ctx.valid_call(op, placeholders=True).replace(token=None, actor=None)
    return ctx.valid_call(op, placeholders=True)


@check(
    "killswitch.operation",
    applies=lambda op: bool(op.kill_switches),
    variants=lambda op: list(op.kill_switches),
    kill_switches=True,
)
def killswitch_operation(ctx: Context, op: Operation, variant: str) -> None:
    """Each of the operation's kill switches makes it answer 503 with that `feature`."""
    call = _killswitch_call(ctx, op)
    with ctx.switches_on(variant):
        exchange = ctx.send(call)
    feature = ctx.spec.kill_switches[variant]
    expect_error(
        "killswitch.operation",
        op,
        f"kill switch {variant} ({feature}) is on",
        exchange,
        503,
        "SERVICE_UNAVAILABLE_ERROR",
        feature=feature,
    )


@check("killswitch.global", kill_switches=True)
def killswitch_global(ctx: Context, op: Operation, variant: Any) -> None:
    """With GLOBAL on every operation answers 503 with feature 8 (non-staff callers)."""
    call = _killswitch_call(ctx, op)
    with ctx.switches_on("GLOBAL"):
        exchange = ctx.send(call)
    feature = ctx.spec.kill_switches["GLOBAL"]
    expect_error(
        "killswitch.global",
        op,
        "the GLOBAL kill switch is on",
        exchange,
        503,
        "SERVICE_UNAVAILABLE_ERROR",
        feature=feature,
    )


@check(
    "killswitch.staff-bypass",
    applies=lambda op: op.authentication == "required",
    kill_switches=True,
)
def killswitch_staff_bypass(ctx: Context, op: Operation, variant: Any) -> None:
    """Kill switches (GLOBAL and the operation's own) never affect staff callers."""
    staff = ctx.staff_with_factor()
    call = ctx.valid_call(op, staff)
    names = ["GLOBAL", *op.kill_switches]
    with ctx.switches_on(*names):
        exchange = ctx.perform(call)
    ctx.after(call, exchange)
    _expect_success(
        "killswitch.staff-bypass", op, f"a staff caller passes with {', '.join(names)} on", exchange
    )


# Rate limits ------------------------------------------------------------------------------


def _spacing(ctx: Context) -> float:
    limit, window = ctx.spec.burst
    return window / limit + 0.01


def _expected_limits(ctx: Context, op: Operation, call: Any) -> set[int]:
    """The RateLimit-Limit an answer of `op` may show.

    A route bucket shared by several methods has the limit of whichever request opened
    its window (contract section 5, observed rows 212-222). On the mock each check has a
    fresh address, so `op` opens it; on a deployment the window may be live already (the
    suite itself opens `/users/me/sessions` with a read before creating scoped sessions),
    and then the opener's limit, as the server last stated it, shows too."""
    own = (op.rate_limit or ctx.spec.global_rate_limit).limit
    if ctx.target.is_mock or op.rate_limit is None:
        return {own}
    live = ctx.client.live_bucket(ctx.client.bucket_key(op.label, call.token, _path(call)))
    return {own} if live is None else {own, live.limit}


def _pinned(ctx: Context) -> str | None:
    return ctx.client.fresh_ip() if ctx.target.is_mock else None


def _burst_call(ctx: Context, op: Operation) -> Any:
    call = ctx.valid_call(op, placeholders=True)
    if op.rate_limit is not None and op.rate_limit.limit <= 10 and op.body_schema is not None:
        # A small route budget (logins, scoped sessions) would turn the burst into a
        # standard 429 on a deployment. An empty body is refused before the route's
        # limiter, and still counts (and bursts) in the global bucket.
        call = call.replace(body={})
    return call


@check("ratelimit.burst")
def ratelimit_burst(ctx: Context, op: Operation, variant: Any) -> None:
    """More than 3 requests within 1 s: the next one is 429 with RateLimit-Reason burst."""

    limit, window = ctx.spec.burst
    call = _burst_call(ctx, op)
    ip = _pinned(ctx)
    if not ctx.target.is_mock:
        ctx.client.settle(f"{op.method} {op.path}", call.token, call.body)
        ctx.client.pause(window + 0.1)
    sent: list[Exchange] = []
    started = time.monotonic()
    with ctx.target.frozen_clock():
        for _ in range(limit + 1):
            sent.append(
                ctx.client.request(
                    call.op.method,
                    _path(call),
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
                "ratelimit.burst",
                op,
                f"the first {limit} rapid requests are not refused",
                "not 429",
                early,
            )
    expect_error(
        "ratelimit.burst",
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
            "ratelimit.burst",
            op,
            "a burst 429 says so and resets within the burst window",
            f"RateLimit-Reason: burst, RateLimit-Reset <= {window:g}",
            last,
            f"429 with RateLimit-Reason: {reason!r}, RateLimit-Reset: {reset!r}",
        )


def _path(call: Any) -> str:
    path = call.op.path
    for name, value in call.path.items():
        path = path.replace("{" + name + "}", str(value))
    return path


def _send_paced(ctx: Context, call: Any, ip: str | None, count: int) -> list[Exchange]:
    """`count` requests, spaced so the burst limit never fires (moving the mock's clock)."""

    spacing = _spacing(ctx)
    results = []
    if ctx.target.control is None:
        ctx.client.settle(f"{call.op.method} {call.op.path}", call.token, call.body)
    for _ in range(count):
        results.append(
            ctx.client.request(
                call.op.method,
                _path(call),
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

    call: Any
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
    sharing = [
        other.id
        for other in ctx.spec.operations
        if other.rate_limit is not None and other.rate_limit.route == op.rate_limit.route
    ]
    accounts: list[Any] = []
    for role in ("target", "user", "staff-plain"):
        account = ctx.target.account(role)
        if account is not None and account.username not in {a.username for a in accounts}:
            accounts.append(account)
    return accounts[sharing.index(op.id) % len(accounts)] if accounts else "default"


def _use_up_window(ctx: Context, op: Operation) -> _UsedUp:
    """Send `limit + 1` counted requests in one window; the last should be refused."""
    limiter = op.rate_limit
    assert limiter is not None
    call = ctx.valid_call(op, _window_actor(ctx, op), placeholders=True)
    ip = _pinned(ctx)
    if not ctx.target.is_mock:
        # This operation must open the bucket itself: a window another method opened has
        # that method's limit (contract section 5).
        ctx.client.wait_for_full_budget(op.label, call.token, call.body, _path(call))
    with ctx.target.frozen_clock():
        sent = _send_paced(ctx, call, ip, limiter.limit + 1)
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
                "ratelimit.route-limit",
                op,
                f"request {i} of {limiter.limit} in the window is allowed",
                "not 429",
                exchange,
            )
    expect_error(
        "ratelimit.route-limit",
        op,
        f"request {limiter.limit + 1} within {limiter.window}s is refused",
        last,
        429,
        RATELIMITED,
    )
    if last.headers.get("RateLimit-Reason") != "standard":
        raise fail(
            "ratelimit.route-limit",
            op,
            "the refusal names the standard limit",
            "RateLimit-Reason: standard",
            last,
            f"429 with RateLimit-Reason: {last.headers.get('RateLimit-Reason')!r}",
        )
    return used


@check(
    "ratelimit.route-limit",
    applies=lambda op: op.rate_limit is not None,
    slow=True,
    variants=lambda op: [USED_UP, NEW_WINDOW],
)
def ratelimit_route_limit(ctx: Context, op: Operation, variant: str) -> None:
    """After `limit` counted requests the next is 429 standard; a new window passes."""
    if variant == USED_UP:
        _use_up_window(ctx, op)
        return
    # On the mock every case starts afresh (its clock is free to move); on a deployment
    # the window the used-up case spent is judged, once it has ended.
    used = None if ctx.target.is_mock else ctx.used_up.pop(op.id, None)
    if used is None:
        try:
            used = _use_up_window(ctx, op)
        except CheckFailure:
            used = ctx.used_up.pop(op.id)
    if not used.refused:
        pytest.skip("the window was never used up (see this check's used-up case)")
    left = used.ends - ctx.client_clock()
    if left > 0:
        ctx.target.wait(left, f"{op.id}: waiting for the rate-limit window to end")
    fresh = ctx.valid_call(op, used.call.actor) if op.deletes_sessions else used.call
    with ctx.target.frozen_clock():
        after = _send_paced(ctx, fresh, used.ip, 1)[0]
    if after.status == 429:
        raise fail(
            "ratelimit.route-limit",
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
def ratelimit_404_not_counted(ctx: Context, op: Operation, variant: Any) -> None:
    """404 answers (unknown user, wrong password) do not use up the route's limit."""
    limiter = op.rate_limit
    assert limiter is not None
    call = ctx.valid_call(op)
    wrong = call.with_body(password="wrong-password-" + "y" * 6)
    ip = _pinned(ctx)
    if not ctx.target.is_mock:
        # The whole budget must be free, or the last request is refused for other reasons.
        ctx.client.wait_for_full_budget(f"{op.method} {op.path}", call.token, call.body)
    with ctx.target.frozen_clock():
        misses = _send_paced(ctx, wrong, ip, limiter.limit + 2)
        for miss in misses:
            if miss.status != 404:
                raise fail(
                    "ratelimit.login-404-not-counted",
                    op,
                    "a wrong password is 404 and not counted",
                    "404",
                    miss,
                )
        hit = _send_paced(ctx, call, ip, 1)[0]
    if hit.status == 201 and call.subject is not None:
        ctx._token_from(hit, call.subject, None)
    _expect_success(
        "ratelimit.login-404-not-counted",
        op,
        f"after {limiter.limit + 2} 404s a valid request still passes",
        hit,
    )


@check("ratelimit.headers")
def ratelimit_headers_values(ctx: Context, op: Operation, variant: Any) -> None:
    """RateLimit-Limit is the bucket's limit and RateLimit-Remaining counts down."""
    call = ctx.valid_call(op)
    ip = _pinned(ctx)
    if not ctx.target.is_mock:
        ctx.open_bucket_widely(op, call.token)  # as every creation on a deployment
    # Before sending: what the server stated of the bucket before these two requests.
    limits = _expected_limits(ctx, op, call)
    with ctx.target.frozen_clock():
        first, second = _send_paced(ctx, call, ip, 2)
    ctx.after(call, first)
    window = (op.rate_limit or ctx.spec.global_rate_limit).window
    for exchange in (first, second):
        values = {name: exchange.headers.get(name, "") for name in RATELIMIT_HEADERS}
        shown = ", ".join(f"{k}: {v!r}" for k, v in values.items())
        if exchange.headers.get("RateLimit-Skipped") == "true":
            continue
        if not all(v.isdigit() for v in values.values()):
            raise fail(
                "ratelimit.headers",
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
                "ratelimit.headers",
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


# Tokens -----------------------------------------------------------------------------------


def _issue(ctx: Context, op: Operation, long: bool) -> tuple[Exchange, Any, Any]:
    if op.reverification == "credentials":
        account = ctx.account("user")
        call = ctx.valid_call(op, subject=account).with_body(rememberMe=long)
    else:
        account = ctx.account("user")
        call = ctx.valid_call(op, account).with_body(longLived=long)
    exchange = ctx.perform(call)
    token = ctx._token_from(exchange, account, None)
    return exchange, token, account


@check(
    "token.lifetime", applies=lambda op: op.issues_tokens, variants=lambda op: ["default", "long"]
)
def token_lifetime(ctx: Context, op: Operation, variant: str) -> None:
    """`exp` is the JWT's, 24 h (or 10 years when asked) after `iat`; the session id is `iat`."""
    exchange, token, account = _issue(ctx, op, variant == "long")
    _expect_success("token.lifetime", op, "the token is issued", exchange)
    body = exchange.json
    lifetime = ctx.spec.token_lifetimes["long" if variant == "long" else "default"]
    claims = token_claims(body.get("token"))
    header = token_header(body["token"]) if isinstance(body.get("token"), str) else {}
    now = ctx.now()
    slack = 5 if ctx.target.is_mock else 120
    problems = []
    if header.get("alg") != "ES256":
        problems.append(f"JWT alg {header.get('alg')!r} (want ES256)")
    iat, exp = claims.get("iat"), claims.get("exp")
    if not isinstance(iat, int) or not isinstance(exp, int):
        problems.append(f"JWT iat/exp {iat!r}/{exp!r} (want integers)")
    else:
        if body.get("exp") != exp:
            problems.append(f"body exp {body.get('exp')!r} differs from the JWT's {exp}")
        if exp - iat != lifetime:
            problems.append(f"exp - iat = {exp - iat} (want {lifetime})")
        if abs(iat - now) > slack:
            problems.append(f"iat {iat} is not now ({now:.0f})")
        if "id" in body and body["id"] != str(iat):
            problems.append(f"session id {body['id']!r} is not the JWT iat {iat}")
    if account.id and str(claims.get("sub")) != account.id:
        problems.append(f"sub {claims.get('sub')!r} (want {account.id})")
    if not problems and token is not None:
        session = ctx.session_alive(token.value)
        got = session.json if isinstance(session.json, dict) else {}
        if session.status != 200 or got.get("id") != str(iat) or got.get("exp") != exp:
            problems.append(
                f"the session reads back as {session.summary(160)} (want id {iat}, exp {exp})"
            )
    if problems:
        raise fail(
            "token.lifetime",
            op,
            f"a {variant} token lives {lifetime}s",
            f"exp = iat + {lifetime}, id = iat",
            exchange,
            f"{exchange.summary(120)}; problems: {'; '.join(problems)}",
        )


def _revocation_variants(op: Operation) -> list[str]:
    variants = ["other-session"]
    sid = op.param("sid")
    if op.is_self and (
        (sid and "me" in sid.schema.get("pattern", "")) or "ids" in op.body_properties()
    ):
        variants.append("current-session")
    return variants


@check("token.revocation", applies=lambda op: op.deletes_sessions, variants=_revocation_variants)
def token_revocation(ctx: Context, op: Operation, variant: str) -> None:
    """A deleted session's token is refused at once."""
    actor = ctx.staff_with_factor() if op.staff_only else ctx.account("user")
    subject = ctx.account("target") if op.staff_only else actor
    flags = ctx.spec.permission_flags
    victim = ctx.create_scoped(
        subject, flags["SESSION_READ"] | flags["SESSION_MODIFY"], name="victim"
    )[1]
    if victim is None:
        raise RuntimeError(f"cannot create a session for {subject}")
    call = ctx.valid_call(op, actor, subject=subject)
    target_id = victim.id
    if variant == "current-session":
        call = call.replace(token=victim.value, actor=subject)
        target_id = "me"
    if "sid" in call.path:
        call.path["sid"] = target_id
    if isinstance(call.body, dict) and "ids" in call.body:
        call.body["ids"] = [target_id]
    deleted = ctx.perform(call)
    ctx.after(call, deleted)
    _expect_success("token.revocation", op, "the session is deleted", deleted)
    probe = ctx.session_alive(victim.value)
    expect_error(
        "token.revocation",
        op,
        f"the deleted session's token ({variant}) is refused at once",
        probe,
        401,
        INVALID_SESSION,
    )


# Paging -----------------------------------------------------------------------------------


def _pages(op: Operation) -> bool:
    return op.param("limit") is not None and op.param("offset") is not None


def _paging_setup(ctx: Context, op: Operation, count: int = 3) -> tuple[Any, list[str]]:
    """A list call and `count` sessions of its subject, oldest first. The sessions are
    reused by the other paging checks while they last (sessions are scarce on real
    deployments: 4 new ones per 5 minutes)."""
    actor = ctx.staff_with_factor() if op.staff_only else ctx.account("user")
    subject = ctx.account("target") if op.staff_only else actor
    call = ctx.valid_call(op, actor, subject=subject)
    cache: dict[str, list[str]] = ctx.__dict__.setdefault("_paging_sessions", {})
    created = cache.get(subject.username, [])
    if created:
        _, listed = _items(_list(ctx, call))
        if not set(created) <= set(listed):
            created = []
    if not created:
        for _ in range(count):
            created.append(ctx.disposable(subject).id)
            # Distinct creation times, so that "newest first" has one right answer.
            if ctx.target.control is not None:
                ctx.target.control.clock(advance=1.5)
            else:
                ctx.client.pause(1.1)
        cache[subject.username] = created
    return call, created


def _list(ctx: Context, call: Any, **query: Any) -> Exchange:
    return ctx.send(call.replace(query={**call.query, **query}))


def _items(exchange: Exchange) -> tuple[int, list[str]]:
    body = exchange.json if isinstance(exchange.json, dict) else {}
    items = body.get("items")
    if not isinstance(items, list):
        items = []
    return body.get("count", -1), [str(i.get("id")) for i in items if isinstance(i, dict)]


@check("paging.count", applies=_pages)
def paging_count(ctx: Context, op: Operation, variant: Any) -> None:
    """`count` is the total number of sessions, not the page size, and grows with a new one."""
    call, created = _paging_setup(ctx, op)
    first = _list(ctx, call)
    count, ids = _items(first)
    if first.status != 200 or count != len(ids) or not set(created) <= set(ids):
        raise fail(
            "paging.count",
            op,
            "count is the total and the list holds every session",
            f"count == len(items), items include {created}",
            first,
        )
    small = _list(ctx, call, limit=1)
    small_count, _ = _items(small)
    if small_count != count:
        raise fail(
            "paging.count",
            op,
            "count is the total, whatever the page size",
            f"count {count} with limit=1",
            small,
        )


@check("paging.limit", applies=_pages)
def paging_limit(ctx: Context, op: Operation, variant: Any) -> None:
    """`limit` caps the page (0 to 50); out of range is 400."""
    call, _ = _paging_setup(ctx, op)
    for limit in (1, 2, 0):
        page = _list(ctx, call, limit=limit)
        _, ids = _items(page)
        if page.status != 200 or len(ids) != limit:
            raise fail(
                "paging.limit",
                op,
                f"limit={limit} returns {limit} items",
                f"200 with {limit} items",
                page,
            )
    for bad in (51, -1, "x"):
        page = _list(ctx, call, limit=bad)
        expect_error(
            "paging.limit",
            op,
            f"limit={bad} is a bad request",
            page,
            400,
            "MISSING_FIELDS_ERROR",
            fields=lambda f: isinstance(f, list) and "limit" in f,
        )


@check("paging.offset", applies=_pages)
def paging_offset(ctx: Context, op: Operation, variant: Any) -> None:
    """`offset` skips items of the same order; negative is 400."""
    call, _ = _paging_setup(ctx, op)
    _, full = _items(_list(ctx, call))
    for offset in (1, 2, len(full)):
        page = _list(ctx, call, offset=offset)
        _, ids = _items(page)
        if page.status != 200 or ids != full[offset : offset + 50]:
            raise fail(
                "paging.offset",
                op,
                f"offset={offset} skips {offset} items",
                f"200 with items {full[offset : offset + 50]}",
                page,
            )
    page = _list(ctx, call, offset=-1)
    expect_error(
        "paging.offset",
        op,
        "offset=-1 is a bad request",
        page,
        400,
        "MISSING_FIELDS_ERROR",
        fields=lambda f: isinstance(f, list) and "offset" in f,
    )


@check("paging.order", applies=_pages)
def paging_order(ctx: Context, op: Operation, variant: Any) -> None:
    """Sessions are listed newest first."""
    call, created = _paging_setup(ctx, op)
    page = _list(ctx, call)
    _, ids = _items(page)
    mine = [i for i in ids if i in created]
    numeric = [int(i) for i in ids if isinstance(i, str) and i.isdigit()]
    if mine != list(reversed(created)) or numeric != sorted(numeric, reverse=True):
        raise fail(
            "paging.order",
            op,
            "the newest session comes first",
            f"{list(reversed(created))} in this order, ids descending",
            page,
        )


# Bulk and delete-all ----------------------------------------------------------------------


def _bulk(op: Operation) -> bool:
    return "ids" in op.body_properties()


@check("bulk.count", applies=_bulk)
def bulk_count(ctx: Context, op: Operation, variant: Any) -> None:
    """`count` is how many sessions were really deleted; unknown ids are ignored."""
    call = ctx.valid_call(op)
    subject = call.subject
    assert subject is not None
    a, b = ctx.disposable(subject).id, ctx.disposable(subject).id
    first = ctx.perform(call.with_body(ids=[a, b, UNKNOWN_SID]))
    ctx.after(call, first)
    expect_error(
        "bulk.count", op, "two of three ids exist", first, 200, "DELETE_SESSIONS_SUCCESS", count=2
    )
    again = ctx.perform(call.with_body(ids=[a]))
    expect_error(
        "bulk.count",
        op,
        "an already deleted id is not counted",
        again,
        200,
        "DELETE_SESSIONS_SUCCESS",
        count=0,
    )


@check("bulk.limit-50", applies=_bulk)
def bulk_limit(ctx: Context, op: Operation, variant: Any) -> None:
    """At most 50 ids: 51 is 400 BODY_TOO_LARGE_ERROR, 50 is fine."""
    call = ctx.valid_call(op)
    ids = [str(1000000000 + n) for n in range(51)]
    too_many = ctx.perform(call.with_body(ids=ids))
    expect_error("bulk.limit-50", op, "51 ids are too many", too_many, 400, "BODY_TOO_LARGE_ERROR")
    fifty = ctx.perform(call.with_body(ids=ids[:50]))
    expect_error(
        "bulk.limit-50", op, "50 ids are allowed", fifty, 200, "DELETE_SESSIONS_SUCCESS", count=0
    )


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
            "delete-all.include-self",
            op,
            "include-self=yes is a bad request",
            exchange,
            400,
            "MISSING_FIELDS_ERROR",
        )
        still = ctx.session_alive(other.value)
        expect_error("delete-all.include-self", op, "a refused request deletes nothing", still, 200)
        return
    _expect_success("delete-all.include-self", op, f"include-self={variant} deletes", exchange)
    gone = ctx.session_alive(other.value)
    expect_error(
        "delete-all.include-self",
        op,
        "the caller's other sessions are deleted",
        gone,
        401,
        INVALID_SESSION,
    )
    mine = ctx.session_alive(caller.value)
    if variant == "true":
        expect_error(
            "delete-all.include-self",
            op,
            "include-self=true deletes the caller's session too",
            mine,
            401,
            INVALID_SESSION,
        )
    else:
        expect_error(
            "delete-all.include-self",
            op,
            f"include-self {variant} keeps the caller's session",
            mine,
            200,
        )


# Ids --------------------------------------------------------------------------------------


@check("ids.distinct", applies=lambda op: op.issues_tokens)
def ids_distinct(ctx: Context, op: Operation, variant: Any) -> None:
    """Two sessions created in the same second get distinct ids, and both work."""
    with ctx.target.frozen_clock(), ctx.no_same_second_retry():
        first, token_a, _ = _issue(ctx, op, False)
        second, token_b, _ = _issue(ctx, op, False)
    _expect_success("ids.distinct", op, "the first session is created", first)
    _expect_success("ids.distinct", op, "the second session is created", second)
    assert token_a is not None and token_b is not None
    if token_a.id == token_b.id:
        raise fail(
            "ids.distinct",
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
                "ids.distinct",
                op,
                "each token reads back its own session",
                f"200 with id {token.id}",
                alive,
            )


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


def _off_literal_routes(call: Any) -> Any:
    """The call on its templated route: a path parameter that would make the path a
    literal route of its own (``me``) names an unknown id instead."""
    limiter = call.op.rate_limit
    if limiter is None or limiter.bucket(_path(call)) == limiter.route:
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
def ratelimit_route_buckets(ctx: Context, op: Operation, variant: Any) -> None:
    """A bucket is a route, shared by every method on it: a request by another method on
    the same path counts in the same bucket (observed rows 123-124, 53-60)."""
    partner = _route_partner(ctx, op)
    assert partner is not None
    ip = _pinned(ctx)
    first_call = _off_literal_routes(ctx.valid_call(op, placeholders=True))
    second_call = _off_literal_routes(ctx.valid_call(partner, placeholders=True))
    with ctx.target.frozen_clock():
        (first,) = _send_paced(ctx, first_call, ip, 1)
        (second,) = _send_paced(ctx, second_call, ip, 1)
    ctx.after(first_call, first)
    ctx.after(second_call, second)
    if "true" in (first.headers.get("RateLimit-Skipped"), second.headers.get("RateLimit-Skipped")):
        return  # one of them was not counted here: nothing to compare
    r1, r2 = first.headers.get("RateLimit-Remaining"), second.headers.get("RateLimit-Remaining")
    if not (r1 and r2 and r1.isdigit() and r2.isdigit()):
        return  # headers.ratelimit judges missing headers
    if int(r2) != int(r1) - 1:
        raise fail(
            "ratelimit.route-buckets",
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
def ratelimit_literal_route(ctx: Context, op: Operation, variant: Any) -> None:
    """A literal path such as ``/users/me/sessions/me`` is a bucket of its own, apart from
    the templated route it also matches (observed rows 121-122)."""
    limiter = op.rate_limit
    assert limiter is not None
    ip = _pinned(ctx)
    call = ctx.valid_call(op, placeholders=True)
    literal = limiter.literal_routes[0]
    templated = _off_literal_routes(call)
    literal_call = call.replace()
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
        (first,) = _send_paced(ctx, templated, ip, 1)
        (second,) = _send_paced(ctx, literal_call, ip, 1)
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
            "ratelimit.literal-route",
            op,
            f"{literal} is a route of its own: its count goes on from its own last answer"
            " (limit - 1 in a new window)",
            f"RateLimit-Remaining: {shown}",
            second,
            f"RateLimit-Remaining: {remaining} (counted with {limiter.route})",
        )


# Exact rate-limit accounting ----------------------------------------------------------------


def _accounting_call(ctx: Context, op: Operation) -> Any:
    """A request of `op` that reaches its route's limiter and, where it can, creates
    nothing: at login, a caller who is already logged in (counted, observed rows 40-45)."""
    if op.authentication == "forbidden":
        return ctx.valid_call(op).replace(token=ctx.browser(ctx.account("user")).value)
    return _off_literal_routes(ctx.valid_call(op, placeholders=True))


def _early_refusal(ctx: Context, op: Operation, call: Any) -> Any:
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


@dataclass
class _Bucket:
    limit: int
    remaining: int
    reset: int


class _Ledger:
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
                "ratelimit.accounting",
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
        if before is None:
            if ctx.target.is_mock or bucket_name == "global":
                # This check opened the bucket (a fresh address on the mock): its limit.
                if ctx.target.is_mock and limit != limiter.limit:
                    broken(
                        f"RateLimit-Limit is the spec's limit of the {bucket_name} bucket",
                        f"RateLimit-Limit: {limiter.limit}",
                    )
                if ctx.target.is_mock and remaining != limit - 1:
                    broken(
                        "the first counted answer of a window leaves limit - 1",
                        f"RateLimit-Remaining: {limit - 1}",
                    )
            allowed = {
                other.rate_limit.limit
                for other in spec.operations
                if other.rate_limit is not None and other.rate_limit.route == limiter.route
            } | {limiter.limit}
            if limit not in allowed:
                broken(
                    f"RateLimit-Limit is a limit the spec gives the {bucket_name} bucket",
                    f"RateLimit-Limit one of {sorted(allowed)}",
                )
        else:
            if limit != before.limit:
                broken(
                    "RateLimit-Limit stays what opened the window",
                    f"RateLimit-Limit: {before.limit}",
                )
            if remaining != before.remaining - 1:
                broken(
                    f"each counted answer lowers RateLimit-Remaining of the {bucket_name}"
                    " bucket by exactly one",
                    f"RateLimit-Remaining: {before.remaining - 1}",
                )
            if reset > before.reset:
                broken(
                    "RateLimit-Reset never grows within a window",
                    f"RateLimit-Reset <= {before.reset}",
                )
        self.buckets[bucket_name] = _Bucket(limit, remaining, reset)


def _path_of(exchange: Exchange, ctx: Context) -> str:
    from urllib.parse import urlsplit

    base = urlsplit(ctx.client.base_url).path
    return urlsplit(exchange.url).path[len(base) :] or "/"


@check("ratelimit.accounting")
def ratelimit_accounting(ctx: Context, op: Operation, variant: Any) -> None:
    """Within a window each counted answer lowers RateLimit-Remaining by exactly one, in
    the one bucket the spec names (the route's, shared by its methods, or the global one
    for answers refused before the route's limiter); Limit is the spec's, Reset never
    grows; uncounted answers say RateLimit-Skipped and show no budget."""
    ip = _pinned(ctx)
    call = _accounting_call(ctx, op)
    if not ctx.target.is_mock:
        # A small budget (scoped sessions) is opened by a read of the same route, as the
        # run does everywhere: the sequence below then fits, and spends no 5-minute window.
        ctx.open_bucket_widely(op, call.token)
    ledger = _Ledger(ctx, op)
    # At most four answers counted in the route's bucket: within a budget of 4.
    steps: list[tuple[Operation, Any, str]] = [(op, call, "a first request")]
    early = _early_refusal(ctx, op, call) if op.rate_limit is not None else None
    if early is not None:
        steps += [(op, early, "bad input"), (op, call, "a request after bad input")]
    else:
        steps += [(op, call, "a second request")]
    partner = _accounting_partner(ctx, op)
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
    with ctx.target.frozen_clock():
        for sender, step, what in steps:
            (exchange,) = _send_paced(ctx, step, ip, 1)
            if exchange.status == 201 and sender.issues_tokens and step.subject is not None:
                ctx._token_from(exchange, step.subject, None)
            ctx.after(step, exchange)
            ledger.judge(sender, exchange, what)


# Bodies a client can get wrong --------------------------------------------------------------

BODY_VARIANTS = ["no-body", "text-plain", "malformed-json", "array", "empty-object", "wrong-types"]


def _wrong_typed(value: Any) -> Any:
    if isinstance(value, str):
        return 12345
    if isinstance(value, bool | int):
        return "not-a-" + type(value).__name__
    if isinstance(value, list):
        return "not-a-list"
    return ["not", "an", "object"]


def _body_variants(op: Operation) -> list[str]:
    # Fields of the wrong type need a field besides the reverification's own.
    fields = set(op.body_properties()) - {"password", "2fa"}
    return BODY_VARIANTS if fields else BODY_VARIANTS[:-1]


@check("body.malformed", applies=lambda op: op.body_schema is not None, variants=_body_variants)
def body_malformed(ctx: Context, op: Operation, variant: str) -> None:
    """A body a client can get wrong (none, not JSON, not an object, empty, wrong types)
    is 400 MISSING_FIELDS_ERROR in the API's format, never a 500 (decision 5), counted
    in the global bucket like any request refused before the route's limiter."""
    call = ctx.valid_call(op, placeholders=True)
    keep = {"password"} if op.reverification == "password" else set()
    if variant == "wrong-types":
        body = dict(call.body)
        wrong = [name for name in body if name not in keep]
        for name in wrong:
            body[name] = _wrong_typed(body[name])
        required = set((op.body_schema or {}).get("required", []))
        if op.reverification == "credentials":
            required |= {"username", "password"}
        expected_fields = sorted(required & set(wrong))
        # Past identity reverification (a second factor, when enrolled) to reach validation.
        exchange = ctx.perform(call.replace(body=body))
    else:
        raw = {
            "no-body": None,
            "text-plain": json.dumps(call.body),
            "malformed-json": '{"ids": [',
            "array": "[]",
            "empty-object": "{}",
        }[variant]
        headers = dict(call.headers)
        if variant == "text-plain":
            headers["Content-Type"] = "text/plain"
        exchange = ctx.client.request(
            op.method,
            _path(call),
            token=call.token,
            query=call.query or None,
            data=raw,
            headers=headers or None,
            route=op.path,
        )
        expected_fields = []
    ctx.after(call, exchange)
    body = exchange.json if isinstance(exchange.json, dict) else {}
    known = set(op.body_properties()) | {"password", "username", "2fa", "code"}
    expect_error(
        "body.malformed",
        op,
        f"a request with {variant.replace('-', ' ')} is a bad request",
        exchange,
        400,
        "MISSING_FIELDS_ERROR",
        fields=lambda f: (
            isinstance(f, list) and bool(f) and set(f) <= known and set(expected_fields) <= set(f)
        ),
    )
    if exchange.headers.get("RateLimit-Skipped") is not None or exchange.headers.get(
        "RateLimit-Limit"
    ) != str(ctx.spec.global_rate_limit.limit):
        raise fail(
            "body.malformed",
            op,
            "a refused body is counted in the global bucket",
            f"RateLimit-Limit: {ctx.spec.global_rate_limit.limit}, no RateLimit-Skipped",
            exchange,
            f"RateLimit-Limit: {exchange.headers.get('RateLimit-Limit')!r}, "
            f"RateLimit-Skipped: {exchange.headers.get('RateLimit-Skipped')!r}",
        )


# Methods a path does not have ---------------------------------------------------------------

PROBED_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "TRACE")


def _concrete(path: str) -> str:
    values = {"uid": UNKNOWN_UID, "sid": UNKNOWN_SID, "id": "8"}
    for name, value in values.items():
        path = path.replace("{" + name + "}", value)
    return path


def _matches(template: str, path: str) -> bool:
    a, b = template.strip("/").split("/"), path.strip("/").split("/")
    return len(a) == len(b) and all(x == y or x.startswith("{") for x, y in zip(a, b, strict=True))


def _absent_methods(op: Operation) -> list[str]:
    from conformance.spec import load_spec

    spec = load_spec()
    path = _concrete(op.path)
    present = {o.method for o in spec.operations if _matches(o.path, path)}
    return [m for m in PROBED_METHODS if m not in present]


def _first_on_path(op: Operation) -> bool:
    from conformance.spec import load_spec

    # The API root answers every method (contract section 1); every other path is judged
    # once, on the first operation the spec lists for it.
    if op.path == "/":
        return False
    first = next(o for o in load_spec().operations if o.path == op.path)
    return first.id == op.id and bool(_absent_methods(op))


@check("routing.unknown-method", applies=_first_on_path, variants=_absent_methods)
def routing_unknown_method(ctx: Context, op: Operation, variant: str) -> None:
    """A method the path does not have (TRACE and PATCH included) is a JSON 404
    INVALID_ENDPOINT_ERROR, counted in the global bucket."""
    exchange = ctx.client.request(variant, _concrete(op.path), route=f"{variant} {op.path}")
    expect_error(
        "routing.unknown-method",
        op,
        f"{variant} is not a method of {op.path}",
        exchange,
        404,
        "INVALID_ENDPOINT_ERROR",
        message="Invalid Endpoint",
    )
    media = exchange.headers.get("Content-Type", "").split(";")[0].strip().lower()
    limit = exchange.headers.get("RateLimit-Limit")
    if (
        media != "application/json"
        or exchange.headers.get("RateLimit-Skipped") is not None
        or (limit != str(ctx.spec.global_rate_limit.limit))
    ):
        raise fail(
            "routing.unknown-method",
            op,
            f"{variant} on {op.path} is JSON and counted in the global bucket",
            f"application/json, RateLimit-Limit: {ctx.spec.global_rate_limit.limit}",
            exchange,
            f"Content-Type {media!r}, RateLimit-Limit {limit!r}, "
            f"RateLimit-Skipped {exchange.headers.get('RateLimit-Skipped')!r}",
        )


# Banned users' existing sessions -------------------------------------------------------------


@check("auth.banned-session", applies=lambda op: op.authentication == "required")
def auth_banned_session(ctx: Context, op: Operation, variant: Any) -> None:
    """A session of a user who was banned after logging in gets 403 BANNED_ERROR."""
    token = ctx.banned_session()
    call = ctx.valid_call(op, placeholders=True).replace(token=token)
    exchange = ctx.send(call)
    expect_error(
        "auth.banned-session",
        op,
        "a banned user's existing session is refused",
        exchange,
        403,
        "BANNED_ERROR",
        message="Banned",
    )


# Second-factor answers of every malformed shape ---------------------------------------------


@check(
    "reverify.second-factor-answer",
    applies=lambda op: op.reverification in ("password", "credentials"),
    variants=lambda op: ["not-a-jwt", "other-user", "expired-challenge", "missing-code"],
)
def reverify_second_factor_answer(ctx: Context, op: Operation, variant: str) -> None:
    """A malformed second-factor answer is a 4xx in the API's format, never a 500: a token
    that is not a JWT 400, another user's or an expired challenge 401, no code 400."""
    account = _reverify_actor(ctx, op, True)
    if not account.totp_secret:
        ctx.staff_with_factor()
    other = None
    if variant == "other-user":
        other = next(
            (
                a
                for role in ("staff", "user-totp")
                if (a := ctx.target.account(role)) is not None
                and a.totp_secret
                and a.username != account.username
            ),
            None,
        )
        if other is None:
            import pytest

            pytest.skip("needs two accounts with a second factor (only the mock has them)")
    if (
        variant == "expired-challenge"
        and not ctx.target.is_mock
        and not ctx.target.settings.run_slow
    ):
        import pytest

        pytest.skip(
            "waits 5 minutes for a challenge to expire on a real deployment: pass --run-slow"
        )
    lifetime = ctx.spec.token_lifetimes.get("secondFactorChallenge", 300)
    stashed = ctx.challenges.pop(op.id, None) if variant == "expired-challenge" else None
    if stashed is not None:
        # Asked for by this check's first case, long before: the run's work in between
        # has let most of its lifetime pass.
        call, first, asked = stashed
    else:
        call = _reverify_call(ctx, op, account)
        first, asked = ctx.send(call), ctx.client_clock()
    expect_error(
        "reverify.second-factor-answer",
        op,
        "a correct password with a second factor enrolled gets a challenge",
        first,
        401,
        CHALLENGE,
    )
    if variant == "not-a-jwt" and not ctx.target.is_mock and ctx.target.settings.run_slow:
        # The expired-challenge case runs near the end of the run (`_run_order`): ask for
        # its challenge now, instead of waiting 5 minutes there.
        ctx.challenges[op.id] = (call, ctx.send(call), ctx.client_clock())
    answer = ctx.answer_challenge(call, first)
    factor = answer.body["2fa"]
    if variant == "not-a-jwt":
        factor["token"] = "not-a-jwt"
        status, code = 400, "INVALID_SECOND_FACTOR_RESPONSE_ERROR"
    elif variant == "other-user":
        assert other is not None
        login = ctx.spec.operation("login")
        theirs = ctx.send(ctx.valid_call(login, subject=other))
        factor["token"] = (
            (theirs.json or {}).get("token") if isinstance(theirs.json, dict) else None
        )
        status, code = 401, "INVALID_SECOND_FACTOR_RESPONSE_ERROR"
    elif variant == "expired-challenge":
        left = asked + lifetime + 2 - ctx.client_clock()
        if left > 0:
            ctx.target.wait(left, f"{op.id}: waiting for the challenge to expire")
        factor["code"] = totp(account.totp_secret or "", ctx.now())
        status, code = 401, "INVALID_SECOND_FACTOR_RESPONSE_ERROR"
    else:
        factor.pop("code", None)
        status, code = 400, "MISSING_FIELDS_ERROR"
    exchange = ctx.send(answer)
    ctx.after(answer, exchange)
    if exchange.status == 201 and op.issues_tokens:
        ctx._token_from(exchange, account, None)
    fields = (
        {"fields": lambda f: isinstance(f, list) and "code" in f}
        if code == "MISSING_FIELDS_ERROR"
        else {}
    )
    expect_error(
        "reverify.second-factor-answer",
        op,
        f"a second-factor answer with {variant.replace('-', ' ')} is refused",
        exchange,
        status,
        code,
        **fields,
    )
