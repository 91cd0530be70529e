"""`schema.*`, response checks: the status is documented, the body is JSON labelled
so, and it matches the schema documented for its status.
"""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Any

import jsonschema

from conformance.failures import fail
from conformance.registry import SpecView, check

if TYPE_CHECKING:
    from conformance.exchange import Exchange
    from conformance.spec import Operation


@functools.cache
def _validator(schema_json: str) -> jsonschema.protocols.Validator:

    schema = json.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema)


def validate(schema: dict[str, Any], instance: Any) -> list[str]:

    text = json.dumps(schema, sort_keys=True, default=str)
    validator = _validator(text)
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
        for error in sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    ][:5]


@check("schema.status", kind="response")
def documented_status(ctx: SpecView, op: Operation, exchange: Exchange) -> None:
    """The status code is one the operation documents."""
    if exchange.status not in op.statuses:
        raise fail(
            op,
            "the status code is documented for the operation",
            f"one of {sorted(op.statuses)}",
            exchange,
        )


@check("schema.content-type", kind="response")
def content_type(ctx: SpecView, op: Operation, exchange: Exchange) -> None:
    """Every response is JSON, labelled application/json."""
    media = exchange.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if media != "application/json" or exchange.json is None:
        raise fail(
            op,
            "every response is JSON with Content-Type application/json",
            "application/json and a JSON body",
            exchange,
            f"Content-Type {media or '(none)'}; {exchange.summary(200)}",
        )


@check("schema.body", kind="response")
def body_schema(ctx: SpecView, op: Operation, exchange: Exchange) -> None:
    """The body matches the schema documented for its status."""
    schema = op.response_schema(exchange.status)
    if schema is None:
        return  # an undocumented status is schema.status's business
    body = exchange.json
    errors = validate(schema, body) if body is not None else ["not JSON"]
    if errors:
        raise fail(
            op,
            f"the {exchange.status} body matches its documented schema",
            f"a body valid against the {exchange.status} schema",
            exchange,
            f"{exchange.summary(200)}; problems: {'; '.join(errors)}",
        )
