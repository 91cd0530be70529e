"""Requests and responses checked against the spec with openapi-core.

Request errors become the API's own ``400 MISSING_FIELDS_ERROR`` naming the fields (a
field of the wrong type counts as missing, as in the real service). In strict mode every
response the mock sends is validated too, and a mismatch fails loudly::

    validator = SpecValidator(spec_document)
    validator.check_request(op, path_args, query, headers, body)  # raises MissingFields
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
from werkzeug.datastructures import Headers, ImmutableMultiDict, MultiDict

from .exceptions import MissingFields
from .spec import Operation

log = logging.getLogger(__name__)
HOST = "http://mock.invalid"


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
        request = self._request(op, path, query, headers, body)
        fields: list[str] = []
        for error in self._params.iter_errors(request):
            name = getattr(error, "name", None)
            if name and name in op.query_params:
                fields.append(name)
            elif name is None:
                log.debug("parameter error without a name: %r", error)
        if op.has_body:
            for error in self._body.iter_errors(request):
                fields.extend(_body_fields(error))
        if fields:
            raise MissingFields(fields)

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
    names: list[str] = []
    for schema_error in schema_errors:
        names.extend(_schema_error_fields(schema_error))
    return names


def _schema_error_fields(error: Any) -> list[str]:
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
