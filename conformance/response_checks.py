"""Checks that judge one response on its own: documented status, content type, body
schema, Cache-Control, RateLimit-* headers, error codes that belong to the status.

They run on each operation's probe requests (see `probes`) and, wrapped as Schemathesis
checks, on every generated request.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import jsonschema

from conformance.registry import check, fail

if TYPE_CHECKING:
    from conformance.client import Exchange
    from conformance.spec import Operation

CACHE_CONTROL = "no-cache, no-store, must-revalidate"
RATELIMIT_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")


@functools.cache
def _validator(schema_json: str) -> jsonschema.protocols.Validator:
    import json

    schema = json.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema)


def validate(schema: dict[str, Any], instance: Any) -> list[str]:
    import json

    text = json.dumps(schema, sort_keys=True, default=str)
    validator = _validator(text)
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
        for error in sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    ][:5]


@check("schema.status", kind="response")
def documented_status(ctx: Any, op: Operation, exchange: Exchange) -> None:
    """The status code is one the operation documents."""
    if exchange.status not in op.statuses:
        raise fail(
            "schema.status",
            op,
            "the status code is documented for the operation",
            f"one of {sorted(op.statuses)}",
            exchange,
        )


@check("schema.content-type", kind="response")
def content_type(ctx: Any, op: Operation, exchange: Exchange) -> None:
    """Every response is JSON, labelled application/json."""
    media = exchange.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if media != "application/json" or exchange.json is None:
        raise fail(
            "schema.content-type",
            op,
            "every response is JSON with Content-Type application/json",
            "application/json and a JSON body",
            exchange,
            f"Content-Type {media or '(none)'}; {exchange.summary(200)}",
        )


@check("schema.body", kind="response")
def body_schema(ctx: Any, op: Operation, exchange: Exchange) -> None:
    """The body matches the schema documented for its status."""
    schema = op.response_schema(exchange.status)
    if schema is None:
        return  # an undocumented status is schema.status's business
    body = exchange.json
    errors = validate(schema, body) if body is not None else ["not JSON"]
    if errors:
        raise fail(
            "schema.body",
            op,
            f"the {exchange.status} body matches its documented schema",
            f"a body valid against the {exchange.status} schema",
            exchange,
            f"{exchange.summary(200)}; problems: {'; '.join(errors)}",
        )


@check("headers.cache-control", kind="response")
def cache_control(ctx: Any, op: Operation, exchange: Exchange) -> None:
    """Every response carries Cache-Control: no-cache, no-store, must-revalidate."""
    value = exchange.headers.get("Cache-Control")
    if value is None or value.replace(" ", "") != CACHE_CONTROL.replace(" ", ""):
        raise fail(
            "headers.cache-control",
            op,
            "every response carries the no-cache Cache-Control header",
            f"Cache-Control: {CACHE_CONTROL}",
            exchange,
            f"{exchange.status} with Cache-Control: {value!r}",
        )


def _uncounted(ctx: Any, op: Operation, exchange: Exchange) -> bool:
    """Whether the spec says this answer is not counted: its limiter ignores the status or
    the code, or it is a 503 (kill switches refuse before any route limiter, so the global
    limiter judges them)."""
    limiter = op.rate_limit or ctx.spec.global_rate_limit
    body = exchange.json if isinstance(exchange.json, dict) else {}
    if exchange.status == 503 and 503 in ctx.spec.global_rate_limit.ignore_statuses:
        return True
    return not limiter.counts(exchange.status, body.get("code"))


@check("headers.ratelimit", kind="response")
def ratelimit_headers(ctx: Any, op: Operation, exchange: Exchange) -> None:
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
            "headers.ratelimit",
            op,
            problem,
            problem.split(": ", 1)[-1],
            exchange,
            f"{exchange.status} with {shown or 'no RateLimit-* headers'}",
        )


def _windows(ctx: Any, op: Operation) -> dict[int, float]:
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
def ratelimit_reset(ctx: Any, op: Operation, exchange: Exchange) -> None:
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
            "headers.ratelimit-reset",
            op,
            "RateLimit-Reset counts the whole seconds left in the window",
            f"0 <= RateLimit-Reset <= {window:g}",
            exchange,
            f"{exchange.status} with RateLimit-Limit: {limit!r}, RateLimit-Reset: {reset!r}",
        )


@check("errors.code-matches-status", kind="response")
def code_matches_status(ctx: Any, op: Operation, exchange: Exchange) -> None:
    """An error body's `code` and `message` are ones the spec pairs with that status."""
    body = exchange.json if isinstance(exchange.json, dict) else {}
    code = body.get("code")
    if exchange.status < 400:
        if isinstance(code, str) and code.endswith("_ERROR"):
            raise fail(
                "errors.code-matches-status",
                op,
                "a success status carries no error code",
                "no *_ERROR code",
                exchange,
            )
        return
    known = ctx.spec.error_codes.get(code) if isinstance(code, str) else None
    if known is None:
        raise fail(
            "errors.code-matches-status",
            op,
            "an error body carries a documented *_ERROR code",
            f"one of the documented codes for {exchange.status}",
            exchange,
        )
    statuses, message = known
    if exchange.status not in statuses:
        raise fail(
            "errors.code-matches-status",
            op,
            f"{code} goes with status {'/'.join(map(str, sorted(statuses)))}",
            f"{'/'.join(map(str, sorted(statuses)))} {code}",
            exchange,
        )
    if message is not None and body.get("message") != message:
        raise fail(
            "errors.code-matches-status",
            op,
            f"{code} has the message {message!r}",
            f"{exchange.status} {code} {message!r}",
            exchange,
        )


def probes(ctx: Any, op: Operation) -> list[tuple[str, Exchange]]:
    """A few representative requests for `op`: valid, anonymous, non-staff, invalid input.
    Cached per operation, so every response check judges the same exchanges."""
    cache: dict[str, list[tuple[str, Exchange]]] = ctx.__dict__.setdefault("_probes", {})
    if op.id in cache:
        return cache[op.id]
    from conformance.client import NO_BODY

    results: list[tuple[str, Exchange]] = []
    call = ctx.valid_call(op)
    exchange = ctx.perform(call)
    ctx.after(call, exchange)
    results.append(("valid request", exchange))
    if op.authentication == "required":
        anonymous = ctx.valid_call(op, token=None, placeholders=True)
        results.append(("anonymous", ctx.send(anonymous)))
    if op.staff_only:
        user = ctx.account("user")
        results.append(
            ("non-staff", ctx.send(call.replace(token=ctx.browser(user).value, actor=user)))
        )
    if op.body_schema is not None:
        empty = ctx.valid_call(op, placeholders=True).replace(body={})
        results.append(("empty body", ctx.send(empty)))
    elif op.body_schema is None and call.body is NO_BODY:
        ints = [p for p in op.params_in("query") if p.schema.get("type") == "integer"]
        if ints:
            bad = ctx.valid_call(op, placeholders=True)
            bad.query[ints[0].name] = "not-a-number"
            results.append((f"{ints[0].name}=not-a-number", ctx.send(bad)))
    cache[op.id] = results
    return results
