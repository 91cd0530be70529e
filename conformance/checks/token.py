"""`token.*`: session tokens. Their lifetime (24 hours, or 10 years when asked), and
a deleted session's token refused at once.
"""

from __future__ import annotations

from conformance.checks.common import INVALID_SESSION, expect_success, issue_session
from conformance.context import Context
from conformance.exchange import token_claims, token_header
from conformance.failures import expect_error, fail
from conformance.registry import check
from conformance.spec import Operation


@check(
    "token.lifetime", applies=lambda op: op.issues_tokens, variants=lambda op: ["default", "long"]
)
def token_lifetime(ctx: Context, op: Operation, variant: str) -> None:
    """`exp` is the JWT's, 24 h (or 10 years when asked) after `iat`; the session id is `iat`."""
    exchange, token, account = issue_session(ctx, op, variant == "long")
    expect_success(op, "the token is issued", exchange)
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
    expect_success(op, "the session is deleted", deleted)
    probe = ctx.session_alive(victim.value)
    expect_error(
        op,
        f"the deleted session's token ({variant}) is refused at once",
        probe,
        401,
        INVALID_SESSION,
    )
