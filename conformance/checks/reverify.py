"""`reverify.*`: identity reverification. A missing or wrong password is refused;
with a second factor, the password brings a challenge that only a right code passes;
a malformed second-factor answer is a 4xx in the API's format.
"""

from __future__ import annotations

from typing import Any

from conformance.calls import CHALLENGE, Call
from conformance.checks.common import expect_success
from conformance.context import Context
from conformance.exchange import NO_BODY, token_claims
from conformance.failures import expect_error, fail
from conformance.registry import check
from conformance.spec import Operation
from conformance.target import Account, totp


def _reverify_actor(ctx: Context, op: Operation, with_factor: bool) -> Account:
    if op.staff_only:
        return ctx.staff_with_factor()
    if with_factor:
        account = ctx.target.account("user-totp")
        return account if account is not None else ctx.staff_with_factor()
    return ctx.account("user")


def _reverify_call(
    ctx: Context, op: Operation, account: Account, placeholders: bool = False
) -> Call:
    if op.reverification == "credentials":
        return ctx.valid_call(op, subject=account, placeholders=placeholders)
    return ctx.valid_call(op, account, placeholders=placeholders)


@check(
    "reverify.missing-password", applies=lambda op: op.reverification in ("password", "credentials")
)
def reverify_missing_password(ctx: Context, op: Operation, variant: object) -> None:
    """Without `password`: 400 MISSING_FIELDS_ERROR naming password."""
    account = _reverify_actor(ctx, op, False)
    call = _reverify_call(ctx, op, account, placeholders=True).with_body(password=NO_BODY)
    exchange = ctx.send(call)
    expect_error(
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
def reverify_wrong_password(ctx: Context, op: Operation, variant: object) -> None:
    """A wrong password: 401 INVALID_PASSWORD_ERROR (404 INVALID_USER_ERROR at login)."""
    account = _reverify_actor(ctx, op, False)
    call = _reverify_call(ctx, op, account, placeholders=True).with_body(
        password="wrong-" + "x" * 8
    )
    exchange = ctx.send(call)
    if op.reverification == "credentials":
        expect_error(
            op,
            "a wrong password is an unknown user",
            exchange,
            404,
            "INVALID_USER_ERROR",
        )
    else:
        expect_error(
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
def reverify_challenge(ctx: Context, op: Operation, variant: object) -> None:
    """With a second factor: the password gets a challenge; a wrong code 401, a right one passes."""
    account = _reverify_actor(ctx, op, True)
    if not account.totp_secret:
        ctx.staff_with_factor()
    call = _reverify_call(ctx, op, account)
    first = ctx.send(call)
    now = ctx.now()
    lifetime = ctx.spec.token_lifetimes["secondFactorChallenge"]
    body = first.json if isinstance(first.json, dict) else {}
    rule = "a correct password with a second factor enrolled gets a challenge"
    expect_error(op, rule, first, 401, CHALLENGE)
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
            op,
            rule,
            "a well-formed challenge",
            first,
            f"{first.summary()}; problems: {'; '.join(problems)}",
        )
    wrong = ctx.send(
        ctx.answer_challenge(call, first, code=_wrong_code(account.totp_secret or "", now))
    )
    expect_error(
        op,
        "a wrong TOTP code is refused",
        wrong,
        401,
        "INVALID_SECOND_FACTOR_RESPONSE_ERROR",
    )
    again = ctx.send(call)
    expect_error(op, rule, again, 401, CHALLENGE)
    answered = ctx.send(ctx.answer_challenge(call, again))
    ctx.after(call, answered)
    if op.issues_tokens and answered.status == 201:
        ctx.token_from(answered, account, None)
    expect_success(op, "a right TOTP code completes the request", answered)


@check(
    "reverify.second-factor-answer",
    applies=lambda op: op.reverification in ("password", "credentials"),
    variants=lambda op: ["not-a-jwt", "other-user", "expired-challenge", "missing-code"],
    late={"expired-challenge"},
)
def reverify_second_factor_answer(ctx: Context, op: Operation, variant: str) -> None:
    """A malformed second-factor answer is a 4xx in the API's format, never a 500: a token
    that is not a JWT 400, another user's or an expired challenge 401, no code 400."""
    account = _reverify_actor(ctx, op, True)
    if not account.totp_secret:
        ctx.staff_with_factor()
    other = _other_factor_account(ctx, account) if variant == "other-user" else None
    if (
        variant == "expired-challenge"
        and not ctx.target.is_mock
        and not ctx.target.settings.run_slow
    ):
        import pytest

        pytest.skip(
            "waits 5 minutes for a challenge to expire on a real deployment: pass --run-slow"
        )
    stashed = ctx.challenges.pop(op.id, None) if variant == "expired-challenge" else None
    if stashed is not None:
        # Asked for by this check's first case, long before: the run's work in between
        # has let most of its lifetime pass.
        call, first, asked = stashed
    else:
        call = _reverify_call(ctx, op, account)
        first, asked = ctx.send(call), ctx.client_clock()
    expect_error(
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
    status, code = _malform(ctx, op, answer.body["2fa"], variant, account, other, asked)
    exchange = ctx.send(answer)
    ctx.after(answer, exchange)
    if exchange.status == 201 and op.issues_tokens:
        ctx.token_from(exchange, account, None)
    fields = (
        {"fields": lambda f: isinstance(f, list) and "code" in f}
        if code == "MISSING_FIELDS_ERROR"
        else {}
    )
    expect_error(
        op,
        f"a second-factor answer with {variant.replace('-', ' ')} is refused",
        exchange,
        status,
        code,
        **fields,
    )


def _other_factor_account(ctx: Context, account: Account) -> Account:
    """Another account with a second factor, whose challenge token the answer borrows."""
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
    return other


def _malform(
    ctx: Context,
    op: Operation,
    factor: dict[str, Any],
    variant: str,
    account: Account,
    other: Account | None,
    asked: float,
) -> tuple[int, str]:
    """Break the answer's `2fa` in place as `variant` says; the status and code due."""
    if variant == "not-a-jwt":
        factor["token"] = "not-a-jwt"
        return 400, "INVALID_SECOND_FACTOR_RESPONSE_ERROR"
    if variant == "other-user":
        assert other is not None
        theirs = ctx.send(ctx.valid_call(ctx.spec.operation("login"), subject=other))
        factor["token"] = (
            (theirs.json or {}).get("token") if isinstance(theirs.json, dict) else None
        )
        return 401, "INVALID_SECOND_FACTOR_RESPONSE_ERROR"
    if variant == "expired-challenge":
        lifetime = ctx.spec.token_lifetimes["secondFactorChallenge"]
        left = asked + lifetime + 2 - ctx.client_clock()
        if left > 0:
            ctx.target.wait(left, f"{op.id}: waiting for the challenge to expire")
        factor["code"] = totp(account.totp_secret or "", ctx.now())
        return 401, "INVALID_SECOND_FACTOR_RESPONSE_ERROR"
    factor.pop("code", None)
    return 400, "MISSING_FIELDS_ERROR"
