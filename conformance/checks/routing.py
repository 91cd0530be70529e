"""`routing.*`: a method a path does not have is a JSON 404 in the API's format."""

from __future__ import annotations

from conformance.calls import UNKNOWN_SID, UNKNOWN_UID
from conformance.context import Context
from conformance.failures import expect_error, fail
from conformance.registry import check
from conformance.spec import Operation

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
            op,
            f"{variant} on {op.path} is JSON and counted in the global bucket",
            f"application/json, RateLimit-Limit: {ctx.spec.global_rate_limit.limit}",
            exchange,
            f"Content-Type {media!r}, RateLimit-Limit {limit!r}, "
            f"RateLimit-Skipped {exchange.headers.get('RateLimit-Skipped')!r}",
        )
