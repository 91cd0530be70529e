"""`body.*`: request bodies a client can get wrong (none, not JSON, not an object,
empty, wrong types) are a 4xx in the API's format, never a 500.
"""

from __future__ import annotations

import json
from typing import Any

from conformance.context import Context
from conformance.failures import expect_error, fail
from conformance.registry import check
from conformance.spec import Operation

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
            call.concrete_path(),
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
            op,
            "a refused body is counted in the global bucket",
            f"RateLimit-Limit: {ctx.spec.global_rate_limit.limit}, no RateLimit-Skipped",
            exchange,
            f"RateLimit-Limit: {exchange.headers.get('RateLimit-Limit')!r}, "
            f"RateLimit-Skipped: {exchange.headers.get('RateLimit-Skipped')!r}",
        )
