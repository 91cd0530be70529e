"""The spec, read once: operations, their policies (the ``x-`` extensions) and routes.

Everything the mock knows about paths and rules comes from here; there is no second,
hand-written route table::

    spec = load_spec()
    op, params = spec.match("DELETE", "/users/me/sessions/all")
    op.kill_switches  # (1,)  ACCOUNT_MODIFY
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import BaseConverter, Map, Rule

POLICY_EXTENSIONS = (
    "x-authentication",
    "x-scope",
    "x-staff-only",
    "x-kill-switches",
    "x-rate-limit",
    "x-identity-reverification",
)
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
BROWSER_SESSION_ONLY = "BROWSER_SESSION_ONLY"
# The rules for the x- extensions, shipped beside the spec; the suite applies the same file.
EXTENSIONS_SCHEMA = "extensions.schema.json"
# Routed paths remembered; forgotten all at once when full.
MATCHES_KEPT = 4096


def spec_dir() -> Path:
    """The folder with the YAML specs: in the package when installed, else the checkout's."""
    here = Path(__file__).resolve().parent
    packaged = here / "openapi"
    return packaged if packaged.is_dir() else here.parent / "openapi"


@dataclass(frozen=True)
class Limit:
    """One limiter's settings: ``limit`` counted requests per ``window`` seconds.

    ``route`` names the bucket, as the service routes paths: every method on one path
    shares it (GET and DELETE ``/users/me/sessions/{sid}`` count together), and a path in
    ``literal_routes`` (``/users/me/sessions/me``) is a route of its own. Answers with a
    status in ``ignore_statuses`` or an error code in ``ignore_codes`` are not counted.
    """

    limit: int
    window: float
    ignore_statuses: frozenset[int] = frozenset()
    ignore_codes: frozenset[str] = frozenset()
    route: str = "*"
    literal_routes: frozenset[str] = frozenset()

    @classmethod
    def from_spec(cls, data: dict[str, Any]) -> Limit:
        """A limiter as ``extensions.schema.json`` allows it (the global one has no route)."""
        return cls(
            limit=int(data["limit"]),
            window=float(data["window"]),
            ignore_statuses=frozenset(int(s) for s in data.get("ignoreStatuses", ())),
            ignore_codes=frozenset(str(c) for c in data.get("ignoreCodes", ())),
            route=str(data.get("route", "*")),
            literal_routes=frozenset(data.get("literalRoutes", ())),
        )

    def bucket_route(self, path: str) -> str:
        """The route a concrete path (without the ``/api`` prefix) is counted under."""
        trimmed = path.rstrip("/") or "/"
        return trimmed if trimmed in self.literal_routes else self.route

    def counts(self, status: int, code: str | None) -> bool:
        """Whether an answer is counted (a 429 never is)."""
        return (
            status != 429 and status not in self.ignore_statuses and code not in self.ignore_codes
        )


@dataclass(frozen=True)
class Operation:
    operation_id: str
    method: str
    path: str  # the spec's template, e.g. /users/{uid}/sessions
    authentication: str  # required | forbidden | none
    scope: str | None
    staff_only: bool
    kill_switches: tuple[int, ...]
    rate_limit: Limit | None
    reverification: str  # none | password | credentials
    has_body: bool
    query_params: tuple[str, ...]
    raw: dict[str, Any]


class _PatternConverter(BaseConverter):
    """A path segment constrained by the parameter's ``pattern`` in the spec."""

    def __init__(self, url_map: Map, pattern: str) -> None:
        super().__init__(url_map)
        self.regex = pattern.removeprefix("^").removesuffix("$")


class SpecError(ValueError):
    """A spec the mock cannot serve: it breaks ``extensions.schema.json``, or an operation
    names a scope or kill switch the spec does not define."""


@functools.cache
def _extensions_validator() -> Draft202012Validator:
    with (spec_dir() / EXTENSIONS_SCHEMA).open(encoding="utf-8") as handle:
        return Draft202012Validator(json.load(handle))


def check_extensions(document: dict[str, Any]) -> None:
    """Refuse a spec whose ``x-`` extensions break ``extensions.schema.json``, or name a
    scope or kill switch that ``components`` does not define."""
    errors = sorted(map(_deepest, _extensions_validator().iter_errors(document)), key=_where)
    problems = [f"{_where(e) or '(root)'}: {e.message}" for e in errors]
    if not errors:
        problems = _unknown_names(document)
    if problems:
        raise SpecError(f"the spec breaks {EXTENSIONS_SCHEMA}: " + "; ".join(problems[:10]))


def _unknown_names(document: dict[str, Any]) -> list[str]:
    components = document["components"]
    scopes = {*components["x-permission-flags"], BROWSER_SESSION_ONLY}
    problems = []
    for path, method, operation in _operations(document):
        where = f"paths.{path}.{method}"
        if operation["x-scope"] is not None and operation["x-scope"] not in scopes:
            problems.append(f"{where}.x-scope: unknown scope {operation['x-scope']!r}")
        for name in operation["x-kill-switches"]:
            if name not in components["x-kill-switches"]:
                problems.append(f"{where}.x-kill-switches: unknown kill switch {name!r}")
    return problems


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, item[method])
        for path, item in document["paths"].items()
        for method in HTTP_METHODS
        if method in item
    ]


def _where(error: ValidationError) -> str:
    return ".".join(str(part) for part in error.absolute_path)


def _deepest(error: ValidationError) -> ValidationError:
    # "not valid under any of the given schemas" says little; the deepest miss says more.
    while error.context:
        error = max(error.context, key=lambda e: (len(e.absolute_path), e.validator != "type"))
    return error


class Spec:
    def __init__(self, document: dict[str, Any], prefix: str = "/api") -> None:
        check_extensions(document)
        self.document = document
        components = document["components"]
        self.permission_flags: dict[str, int] = dict(components["x-permission-flags"])
        self.kill_switch_ids: dict[str, int] = dict(components["x-kill-switches"])
        limits = components["x-rate-limits"]
        self.global_limit = Limit.from_spec(limits["global"])
        self.burst_limit = int(limits["burst"]["limit"])
        self.burst_window = float(limits["burst"]["window"])
        self.lifetimes: dict[str, int] = dict(components["x-token-lifetimes"])
        self.policy_order: tuple[str, ...] = tuple(components["x-policy-order"])
        # The version of the service whose behaviour the spec describes (``GET /``).
        self.service_version = str(document["info"]["x-service-version"])
        self.operations: dict[str, Operation] = {}
        rules = []
        for path, item in document["paths"].items():
            shared = item.get("parameters", [])
            for method in HTTP_METHODS:
                if method not in item:
                    continue
                op = self._operation(path, method, item[method], shared)
                self.operations[op.operation_id] = op
                rules.append(
                    Rule(
                        prefix
                        + self._werkzeug_path(path, shared + item[method].get("parameters", [])),
                        methods=[method.upper()],
                        endpoint=op.operation_id,
                        strict_slashes=False,
                    )
                )
        self._map = Map(rules, converters={"pattern": _PatternConverter})
        self._adapter = self._map.bind("localhost")
        # Routing a path is deterministic and werkzeug's matcher is a hot spot: remember.
        self._matched: dict[tuple[str, str], tuple[Operation, dict[str, str]] | None] = {}

    def resolve(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Follow a local ``$ref``."""
        while "$ref" in obj:
            node: Any = self.document
            for part in obj["$ref"].removeprefix("#/").split("/"):
                node = node[part]
            obj = node
        return obj

    def _operation(
        self, path: str, method: str, data: dict[str, Any], shared: list[dict[str, Any]]
    ) -> Operation:
        params = [self.resolve(p) for p in shared + data.get("parameters", [])]
        limit = data["x-rate-limit"]
        return Operation(
            operation_id=data["operationId"],
            method=method.upper(),
            path=path,
            authentication=data["x-authentication"],
            scope=data["x-scope"],
            staff_only=bool(data["x-staff-only"]),
            kill_switches=tuple(self.kill_switch_ids[name] for name in data["x-kill-switches"]),
            rate_limit=Limit.from_spec(limit) if limit else None,
            reverification=data["x-identity-reverification"],
            has_body="requestBody" in data,
            query_params=tuple(p["name"] for p in params if p["in"] == "query"),
            raw=data,
        )

    def _werkzeug_path(self, path: str, params: list[dict[str, Any]]) -> str:
        patterns = {}
        for param in map(self.resolve, params):
            if param["in"] == "path":
                patterns[param["name"]] = param["schema"].get("pattern", "^[^/]+$")

        def convert(match: re.Match[str]) -> str:
            name = match.group(1)
            return f"<pattern({patterns[name]!r}):{name}>"

        return re.sub(r"\{([^}]+)\}", convert, path)

    def match(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
        """The operation for a request path (with the ``/api`` prefix), or None."""
        key = (method, path)
        try:
            found = self._matched[key]
        except KeyError:
            found = self._match(method, path)
            if len(self._matched) >= MATCHES_KEPT:
                self._matched.clear()
            self._matched[key] = found
        return None if found is None else (found[0], dict(found[1]))

    def _match(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
        try:
            endpoint, args = self._adapter.match(path, method=method)
        except (NotFound, MethodNotAllowed):
            return None
        except Exception:  # a redirect for a missing slash, or a path werkzeug refuses
            return None
        return self.operations[str(endpoint)], dict(args)


@functools.cache
def load_document(path: str | None = None) -> dict[str, Any]:
    with open(path or spec_dir() / "sessions.yaml", encoding="utf-8") as handle:
        document: dict[str, Any] = yaml.safe_load(handle)
        return document


def load_spec(path: str | None = None) -> Spec:
    return Spec(load_document(path))
