"""The spec as the suite sees it: operations with their `x-` policies, and response schemas.

Everything the suite checks is derived from `openapi/sessions.yaml`; this module is the
only place that reads it::

    spec = load_spec()
    op = spec.operation("getSelfSessions")
    op.scope, op.kill_switches, op.rate_limit
"""

from __future__ import annotations

import copy
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

SPEC_NAME = "sessions.yaml"
# The rules for the x- extensions, shipped beside the spec; the mock applies the same file.
EXTENSIONS_SCHEMA = "extensions.schema.json"
BROWSER_SESSION_ONLY = "BROWSER_SESSION_ONLY"


def spec_dir() -> Path:
    """Where the YAML lives: inside the installed package, else the checkout's `openapi/`."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "openapi", here.parent / "openapi"):
        if (candidate / SPEC_NAME).is_file():
            return candidate
    raise FileNotFoundError(f"{SPEC_NAME} not found beside {here}")


def spec_path(name: str = SPEC_NAME) -> Path:
    return spec_dir() / name


class SpecError(ValueError):
    """A spec the suite cannot judge by: it breaks ``extensions.schema.json``, or an
    operation names a scope or kill switch the spec does not define."""


def check_extensions(raw: dict[str, Any]) -> None:
    """Refuse a spec whose `x-` extensions break `extensions.schema.json` (the same rules
    the mock applies), so the suite never fills in a default the mock would refuse."""
    with spec_path(EXTENSIONS_SCHEMA).open(encoding="utf-8") as fh:
        validator = Draft202012Validator(json.load(fh))
    errors = sorted(map(_deepest, validator.iter_errors(raw)), key=_where)
    problems = [f"{_where(e) or '(root)'}: {e.message}" for e in errors]
    if not errors:
        components = raw["components"]
        scopes = {*components["x-permission-flags"], BROWSER_SESSION_ONLY}
        for path, item in raw["paths"].items():
            for method in set(METHODS) & set(item):
                op, where = item[method], f"paths.{path}.{method}"
                if op["x-scope"] is not None and op["x-scope"] not in scopes:
                    problems.append(f"{where}.x-scope: unknown scope {op['x-scope']!r}")
                problems += [
                    f"{where}.x-kill-switches: unknown kill switch {name!r}"
                    for name in op["x-kill-switches"]
                    if name not in components["x-kill-switches"]
                ]
    if problems:
        raise SpecError(f"the spec breaks {EXTENSIONS_SCHEMA}: " + "; ".join(problems[:10]))


def _where(error: ValidationError) -> str:
    return ".".join(str(part) for part in error.absolute_path)


def _deepest(error: ValidationError) -> ValidationError:
    # "not valid under any of the given schemas" says little; the deepest miss says more.
    while error.context:
        error = max(error.context, key=lambda e: (len(e.absolute_path), e.validator != "type"))
    return error


def _resolve(node: Any, root: dict[str, Any], seen: tuple[str, ...] = ()) -> Any:
    """Inline every local `$ref`; the spec has no recursive schemas."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            if ref in seen:
                raise ValueError(f"recursive $ref {ref}")
            target: Any = root
            for part in ref[2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            merged = {k: v for k, v in node.items() if k != "$ref"}
            resolved = _resolve(target, root, (*seen, ref))
            return {**resolved, **merged} if merged else resolved
        return {k: _resolve(v, root, seen) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, root, seen) for v in node]
    return node


@dataclass(frozen=True)
class RateLimit:
    """A limiter as the spec declares it. Its bucket is named by ``route``, shared by every
    method on that path; a concrete path listed in ``literal_routes`` is a bucket of its own."""

    limit: int
    window: float
    ignore_statuses: tuple[int, ...] = ()
    ignore_codes: tuple[str, ...] = ()
    route: str = "*"
    literal_routes: tuple[str, ...] = ()

    @classmethod
    def from_spec(cls, data: dict[str, Any] | None) -> RateLimit | None:
        if not data:
            return None
        return cls(
            limit=int(data["limit"]),
            window=float(data["window"]),
            ignore_statuses=tuple(int(s) for s in data.get("ignoreStatuses", ())),
            ignore_codes=tuple(str(c) for c in data.get("ignoreCodes", ())),
            route=str(data.get("route", "*")),
            literal_routes=tuple(data.get("literalRoutes", ())),
        )

    def bucket(self, path: str) -> str:
        """The bucket a concrete path (relative to the base URL) is counted in."""
        trimmed = path.split("?")[0].rstrip("/") or "/"
        return trimmed if trimmed in self.literal_routes else self.route

    def counts(self, status: int, code: str | None) -> bool:
        return (
            status != 429 and status not in self.ignore_statuses and code not in self.ignore_codes
        )


@dataclass(frozen=True)
class Parameter:
    name: str
    location: str
    required: bool
    schema: dict[str, Any]


@dataclass(frozen=True)
class Operation:
    """One operation and its declared policies."""

    id: str
    method: str
    path: str
    authentication: str
    scope: str | None
    staff_only: bool
    kill_switches: tuple[str, ...]
    rate_limit: RateLimit | None
    reverification: str
    parameters: tuple[Parameter, ...]
    body_schema: dict[str, Any] | None
    body_required: bool
    responses: dict[str, dict[str, Any]] = field(repr=False)

    def __str__(self) -> str:
        return f"{self.id} ({self.label})"

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"

    def param(self, name: str) -> Parameter | None:
        return next((p for p in self.parameters if p.name == name), None)

    def params_in(self, location: str) -> list[Parameter]:
        return [p for p in self.parameters if p.location == location]

    @property
    def statuses(self) -> set[int]:
        return {int(s) for s in self.responses if s.isdigit()}

    @property
    def success_status(self) -> int:
        return min(s for s in self.statuses if 200 <= s < 300)

    def response(self, status: int) -> dict[str, Any] | None:
        return self.responses.get(str(status))

    def response_schema(self, status: int) -> dict[str, Any] | None:
        response = self.response(status)
        if response is None:
            return None
        media = response.get("content", {}).get("application/json")
        return None if media is None else media.get("schema")

    def body_properties(self) -> dict[str, Any]:
        properties: dict[str, Any] = (self.body_schema or {}).get("properties", {})
        return properties

    @property
    def issues_tokens(self) -> bool:
        """The operation answers a new token and its `exp` (login, scoped sessions)."""
        schema = self.response_schema(self.success_status) or {}
        props = schema.get("properties", {})
        return "token" in props and "exp" in props

    def passes_route_limiter(self, status: int, code: str | None) -> bool:
        """Whether an answer of this operation came from a step after its route's limiter
        (`x-policy-order`), and so counts in the route's bucket; answers from earlier
        steps (authentication, kill switches, staff, scope, identity reverification,
        validation) count in the global bucket instead."""
        if self.rate_limit is None or status in (429, 503) or code == "INVALID_ENDPOINT_ERROR":
            return False
        if code in ("MISSING_FIELDS_ERROR", "BODY_TOO_LARGE_ERROR"):
            return False  # validation, or reverification's missing password
        if self.reverification == "credentials":
            return True  # the credential check itself comes after the limiter
        if status in (401, 403):
            return False  # authentication, staff, scope, reverification
        return not (status == 400 and self.reverification == "password")

    def refused_by_validation(self, body: Any, *, has_body: bool = True) -> bool:
        """Whether the spec's validation step refuses this body. That step comes before
        the route's limiter (`x-policy-order`), so such a request costs no route budget:
        a deployment run need not wait for one to send it."""
        if self.body_schema is None:
            return False
        if not has_body:
            return self.body_required
        import jsonschema  # only when a run paces generated requests

        return not jsonschema.Draft202012Validator(self.body_schema).is_valid(body)

    @property
    def deletes_sessions(self) -> bool:
        return self.method == "DELETE" and "/sessions" in self.path

    @property
    def is_self(self) -> bool:
        return "/users/me/" in self.path


@dataclass(frozen=True)
class Spec:
    document: dict[str, Any] = field(repr=False)
    operations: tuple[Operation, ...]
    permission_flags: dict[str, int]
    kill_switches: dict[str, int]
    rate_limits: dict[str, RateLimit]
    burst: tuple[int, float]
    token_lifetimes: dict[str, int]

    def operation(self, operation_id: str) -> Operation:
        for op in self.operations:
            if op.id == operation_id:
                return op
        raise KeyError(operation_id)

    @property
    def global_rate_limit(self) -> RateLimit:
        return self.rate_limits["global"]

    @functools.cached_property
    def error_codes(self) -> dict[str, tuple[set[int], str]]:
        """Every error code the spec documents: the statuses it goes with, and its message."""
        codes: dict[str, tuple[set[int], str]] = {}
        for op in self.operations:
            for status in op.statuses:
                for schema in _alternatives(op.response_schema(status)):
                    props = schema.get("properties", {})
                    code = props.get("code", {}).get("const")
                    message = props.get("message", {}).get("const")
                    if isinstance(code, str) and code.endswith("_ERROR"):
                        statuses, _ = codes.setdefault(code, (set(), message))
                        statuses.add(status)
        return codes


def _alternatives(schema: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not schema:
        return []
    for key in ("oneOf", "anyOf"):
        if key in schema:
            return [alt for sub in schema[key] for alt in _alternatives(sub)]
    return [schema]


def _operation(
    path: str, method: str, data: dict[str, Any], path_params: list[dict[str, Any]]
) -> Operation:
    params: dict[tuple[str, str], Parameter] = {}
    for raw in [*path_params, *data.get("parameters", [])]:
        p = Parameter(raw["name"], raw["in"], bool(raw.get("required")), raw.get("schema", {}))
        params[(p.name, p.location)] = p
    body = data.get("requestBody")
    body_schema = None
    if body:
        body_schema = body.get("content", {}).get("application/json", {}).get("schema")
    return Operation(
        id=data["operationId"],
        method=method.upper(),
        path=path,
        authentication=data["x-authentication"],
        scope=data["x-scope"],
        staff_only=bool(data["x-staff-only"]),
        kill_switches=tuple(data["x-kill-switches"]),
        rate_limit=RateLimit.from_spec(data["x-rate-limit"]),
        reverification=data["x-identity-reverification"],
        parameters=tuple(params.values()),
        body_schema=body_schema,
        body_required=bool(body and body.get("required")),
        responses=data.get("responses", {}),
    )


METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def parse_spec(raw: dict[str, Any]) -> Spec:
    check_extensions(raw)
    document = _resolve(copy.deepcopy(raw), raw)
    operations = []
    for path, item in document.get("paths", {}).items():
        for method in METHODS:
            if method in item:
                operations.append(
                    _operation(path, method, item[method], item.get("parameters", []))
                )
    components = document["components"]
    limits = {
        name: RateLimit.from_spec(value)
        for name, value in components["x-rate-limits"].items()
        if name != "burst"
    }
    burst = components["x-rate-limits"]["burst"]
    return Spec(
        document=document,
        operations=tuple(operations),
        permission_flags=dict(components["x-permission-flags"]),
        kill_switches=dict(components["x-kill-switches"]),
        rate_limits={k: v for k, v in limits.items() if v is not None},
        burst=(int(burst["limit"]), float(burst["window"])),
        token_lifetimes=dict(components["x-token-lifetimes"]),
    )


def load_raw(name: str = SPEC_NAME) -> dict[str, Any]:
    with spec_path(name).open(encoding="utf-8") as fh:
        raw: dict[str, Any] = yaml.safe_load(fh)
        return raw


@functools.cache
def load_spec() -> Spec:
    return parse_spec(load_raw())
