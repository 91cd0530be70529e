"""Requests and responses checked against the spec with openapi-core.

Request errors become the API's own ``400 MISSING_FIELDS_ERROR`` naming the fields (a
field of the wrong type counts as missing, as in the real service). In strict mode every
response the mock sends is validated too, and a mismatch fails loudly::

    validator = SpecValidator(spec_document)
    validator.check_request(op, path_args, query, headers, body)  # raises MissingFields

openapi-core is the reference, but it rebuilds its schema validators on every request
(about 1 ms each), so :meth:`SpecValidator.check_request` takes a faster path that must
give the same answer (``tests/test_performance_paths.py`` holds it to that): body
validators are built once per operation with openapi-core's own factory, and parameter
results are memoised by the only inputs they depend on (path and the declared query
parameters; errors on headers and path parameters are never reported).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.validation.request.validators import (
    V31RequestBodyValidator,
    V31RequestParametersValidator,
)
from openapi_core.validation.response.validators import V31ResponseValidator
from openapi_core.validation.schemas.exceptions import InvalidSchemaValue
from werkzeug.datastructures import Headers, ImmutableMultiDict, MultiDict

from .exceptions import BodyTooLarge, MissingFields
from .inputs import decimal
from .spec import Operation

log = logging.getLogger(__name__)
HOST = "http://mock.invalid"
# Stands for "an array over its maxItems" among field names; never a real field name.
TOO_MANY_ITEMS = "\0too-many-items"
# Parameter results remembered (path and query values); forgotten all at once when full.
PARAM_RESULTS_KEPT = 4096
# A schema with only these keywords accepts or refuses a value by its JSON type alone.
TYPE_ONLY = frozenset(("type", "description", "title", "example", "examples"))
# What a body schema itself may hold for its answer to depend only on which fields a
# body has and each one's JSON type (if its properties' schemas are TYPE_ONLY too).
SHAPE_ONLY = TYPE_ONLY | {"properties", "required", "anyOf"}


@dataclass
class _Request:
    """The openapi-core request protocol, built from parts we already parsed."""

    method: str
    path: str
    parameters: RequestParameters
    body: bytes | None
    content_type: str = "application/json"
    host_url: str = HOST

    @property
    def full_url_pattern(self) -> str:
        return self.host_url + self.path


@dataclass
class _Response:
    status_code: int
    data: bytes
    headers: Headers
    content_type: str = "application/json"


@dataclass
class StrictViolation:
    method: str
    path: str
    status: int
    error: str


@dataclass
class SpecValidator:
    document: dict[str, Any]
    prefix: str = "/api"
    violations: list[StrictViolation] = field(default_factory=list)

    def __post_init__(self) -> None:
        # The server URL is relative (/api); give openapi-core a host to resolve it against.
        document = {**self.document, "servers": [{"url": HOST + self.prefix}]}
        self._api = OpenAPI.from_dict(document)
        self._params = V31RequestParametersValidator(self._api.spec)
        self._body = V31RequestBodyValidator(self._api.spec)
        self._response = V31ResponseValidator(self._api.spec)
        # The fast path: per operation, openapi-core's body validator built once (None
        # where it could not be built: that operation takes the reference path), and
        # the parameter results seen so far.
        self._body_validators: dict[str, Any] = {}
        self._param_results: dict[tuple[Any, ...], list[str]] = {}
        self._integers: dict[str, tuple[str, ...]] = {}
        # Per operation, the body properties whose schema is TYPE_ONLY (None: the body's
        # answer may depend on values), and the body results seen, by the body's shape.
        self._type_only: dict[str, frozenset[str] | None] = {}
        self._body_results: dict[tuple[Any, ...], list[str]] = {}

    def _request(
        self,
        op: Operation,
        path: str,
        query: MultiDict[str, str],
        headers: Headers,
        body: Any,
    ) -> _Request:
        raw = None if body is None else json.dumps(body).encode()
        return _Request(
            method=op.method.lower(),
            path=path,
            parameters=RequestParameters(query=query, header=headers, cookie=ImmutableMultiDict()),
            body=raw,
        )

    def check_request(
        self,
        op: Operation,
        path: str,
        query: MultiDict[str, str],
        headers: Headers,
        body: Any,
    ) -> None:
        fields = self.request_fields(op, path, query, headers, body)
        wrong = [f for f in fields if f != TOO_MANY_ITEMS]
        if wrong:
            raise MissingFields(wrong)
        if fields:
            raise BodyTooLarge()

    def request_fields(
        self,
        op: Operation,
        path: str,
        query: MultiDict[str, str],
        headers: Headers,
        body: Any,
    ) -> list[str]:
        """The fields a request gets wrong, as :meth:`reference_fields` says, only faster."""
        fields = self._param_fields(op, path, query, headers)
        if op.has_body:
            validator = self._body_validator(op)
            if validator is None:
                request = self._request(op, path, query, headers, body)
                fields += [f for e in self._body.iter_errors(request) for f in _body_fields(e)]
            else:
                shape = self._shape(op, body)
                known = None if shape is None else self._body_results.get(shape)
                if known is None:
                    known = []
                    try:
                        validator.validate(body)
                    except InvalidSchemaValue as error:
                        known = _schema_errors_fields(error.schema_errors)
                    if shape is not None:
                        if len(self._body_results) >= PARAM_RESULTS_KEPT:
                            self._body_results.clear()
                        self._body_results[shape] = known
                fields += known
        return fields

    def _shape(self, op: Operation, body: Any) -> tuple[Any, ...] | None:
        """What the body's answer depends on, when that is only its fields' names and
        JSON types (a login's username and password: any strings get the same answer);
        None when a value itself matters (a second-factor answer, a number's range).
        Schema validation was a third of a login's time, and every body differs."""
        if op.operation_id not in self._type_only:
            self._type_only[op.operation_id] = self._type_only_properties(op)
        type_only = self._type_only[op.operation_id]
        if type_only is None or not isinstance(body, dict):
            return None
        shape: list[Any] = [op.operation_id]
        for name, value in body.items():
            if name not in type_only:
                return None
            shape.append((name, _json_kind(value)))
        return tuple(shape)

    def _type_only_properties(self, op: Operation) -> frozenset[str] | None:
        try:
            content = self.document["paths"][op.path][op.method.lower()]["requestBody"]
            schema = self._resolve(self._resolve(content)["content"]["application/json"]["schema"])
        except (KeyError, TypeError):
            return None
        if not set(schema) <= SHAPE_ONLY or schema.get("type") != "object":
            return None
        for branch in schema.get("anyOf", ()):
            if set(branch) != {"required"}:
                return None
        return frozenset(
            name
            for name, sub in schema.get("properties", {}).items()
            if set(self._resolve(sub)) <= TYPE_ONLY
        )

    def reference_fields(
        self,
        op: Operation,
        path: str,
        query: MultiDict[str, str],
        headers: Headers,
        body: Any,
    ) -> list[str]:
        """The fields a request gets wrong, straight from openapi-core's validators."""
        request = self._request(op, path, query, headers, body)
        fields = self._reference_param_fields(op, request)
        if op.has_body:
            for error in self._body.iter_errors(request):
                fields.extend(_body_fields(error))
        return fields

    def _reference_param_fields(self, op: Operation, request: _Request) -> list[str]:
        # openapi-core casts integers with int(), which also takes "5_0", "+5", " 5" and
        # digits of other scripts; the API takes ASCII digits only (the spec's `limit` and
        # `offset` say so).
        query = request.parameters.query
        fields = [
            name
            for name in self._integer_params(op)
            if name in query and decimal(str(query.get(name, "")).lstrip("-")) is None
        ]
        for error in self._params.iter_errors(request):
            name = getattr(error, "name", None)
            if name and name in op.query_params:
                fields.append(name)
            elif name is None:
                log.debug("parameter error without a name: %r", error)
        return fields

    def _param_fields(
        self, op: Operation, path: str, query: MultiDict[str, str], headers: Headers
    ) -> list[str]:
        # Only errors on declared query parameters are reported, so without any the
        # answer is always empty; otherwise it depends only on the path (openapi-core
        # finds the operation from it) and those parameters' values.
        if not op.query_params:
            return []
        # `in` first: MultiDict.getlist of an absent name raises and catches a KeyError.
        key = (
            op.operation_id,
            path,
            *(tuple(query.getlist(n)) if n in query else () for n in op.query_params),
        )
        fields = self._param_results.get(key)
        if fields is None:
            fields = self._reference_param_fields(op, self._request(op, path, query, headers, {}))
            if len(self._param_results) >= PARAM_RESULTS_KEPT:
                self._param_results.clear()
            self._param_results[key] = fields
        return list(fields)

    def _integer_params(self, op: Operation) -> tuple[str, ...]:
        """The operation's query parameters whose schema is an integer."""
        if op.operation_id not in self._integers:
            item = self.document["paths"][op.path]
            declared = [*item.get("parameters", []), *item[op.method.lower()].get("parameters", [])]
            names = []
            for param in map(self._resolve, declared):
                schema = self._resolve(param.get("schema", {}))
                if param.get("in") == "query" and schema.get("type") == "integer":
                    names.append(param["name"])
            self._integers[op.operation_id] = tuple(names)
        return self._integers[op.operation_id]

    def _resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            target: Any = self.document
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            node = target
        return node

    def _body_validator(self, op: Operation) -> Any:
        if op.operation_id not in self._body_validators:
            self._body_validators[op.operation_id] = self._build_body_validator(op)
        return self._body_validators[op.operation_id]

    def _build_body_validator(self, op: Operation) -> Any:
        """openapi-core's schema validator for the JSON body, as it builds per request."""
        validator = self._body
        try:
            content = self._api.spec / "paths" / op.path / op.method.lower() / "requestBody"
            schema = content / "content" / "application/json" / "schema"
            return validator.schema_validators_factory.create(
                self._api.spec,
                schema,
                format_validators=validator.format_validators,
                extra_format_validators=validator.extra_format_validators,
                forbid_unspecified_additional_properties=(
                    validator.forbid_unspecified_additional_properties
                ),
                enforce_properties_required=validator.enforce_properties_required,
            )
        except Exception as error:  # another openapi-core: its own path still works
            log.warning("no fast body validation for %s: %r", op.operation_id, error)
            return None

    def check_response(
        self,
        op: Operation,
        path: str,
        query: MultiDict[str, str],
        request_headers: Headers,
        body: Any,
        status: int,
        data: bytes,
        headers: Headers,
    ) -> str | None:
        """A description of how the response breaks the spec, or None."""
        request = self._request(op, path, query, request_headers, body)
        response = _Response(status, data, headers)
        problems = [str(e) + _causes(e) for e in self._response.iter_errors(request, response)]
        if not problems:
            return None
        message = "; ".join(problems)
        self.violations.append(StrictViolation(op.method, path, status, message))
        return message


def _json_kind(value: Any) -> str:
    """The JSON type of a parsed value, as a schema's ``type`` tells them apart (1.0 is
    an integer, 1.5 is not)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    return "array" if isinstance(value, list) else "object"


def _causes(error: BaseException) -> str:
    cause = error.__cause__
    details = [str(e.message) for e in getattr(cause, "schema_errors", ()) or ()]
    return f" ({'; '.join(details)})" if details else ""


def _body_fields(error: BaseException) -> list[str]:
    """The body fields an openapi-core body error is about."""
    schema_errors = getattr(error.__cause__, "schema_errors", None)
    if not schema_errors:
        # Missing or undecodable body: every required field is missing; the caller
        # substitutes an empty object, so this is only reached for exotic media types.
        return ["body"]
    return _schema_errors_fields(schema_errors)


def _schema_errors_fields(schema_errors: Any) -> list[str]:
    names: list[str] = []
    for schema_error in schema_errors:
        names.extend(_schema_error_fields(schema_error))
    return names


def _schema_error_fields(error: Any) -> list[str]:
    if error.validator == "maxItems":
        return [TOO_MANY_ITEMS]  # the API answers this one with BODY_TOO_LARGE_ERROR
    if error.validator in ("anyOf", "oneOf") and error.context:
        # Report what the first alternative lacks: for login, username and password.
        first = [e for e in error.context if e.schema_path and e.schema_path[0] == 0]
        return [name for e in first for name in _schema_error_fields(e)]
    path = [p for p in error.path if isinstance(p, str)]
    if error.validator == "required":
        missing = [n for n in error.validator_value if n not in (error.instance or {})]
        # Fields inside the 2fa object are named by themselves (e.g. "code").
        return missing if path[:1] in ([], ["2fa"]) else path[:1]
    if not path:
        return ["body"]
    return [path[-1]] if path[0] == "2fa" and len(path) > 1 else [path[0]]
