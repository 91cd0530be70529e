"""An API request from arrival to answer: the fast path past Flask, the policy pipeline
(:mod:`mockserver.policies`), the rate-limit headers, the strict check and the journal.

It needs no Flask request context, so the fast path and Flask's own route share it::

    response = handle_api(state, werkzeug_request, "users/me/sessions")
    reply = answer_api(state, werkzeug_request, "users/me/sessions")  # status, headers, bytes

The fast path uses :func:`answer_api`: a :class:`Reply` is a status, a header list and
the body's bytes, which is what the server sends; a werkzeug ``Response`` (its
``Headers`` check each header as it is added) cost about a fifth of a request.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Flask, Response, request
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import BadRequest
from werkzeug.http import HTTP_STATUS_CODES, parse_options_header
from werkzeug.wrappers import Request
from werkzeug.wsgi import get_content_length

from . import exceptions as err
from .httpio import (
    BODY_KEY,
    CACHE_CONTROL,
    client_ip,
    encode,
    error_answer,
    error_response,
    finish_headers,
    json_response,
)
from .inputs import parse_json
from .policies import Call
from .profiles import ProfileAnswer
from .state import EXTENSION, MockState, mock_state

log = logging.getLogger("cumulonimbus-mock")

# TRACE too: a method a path lacks is an unknown endpoint counted in the global bucket,
# whichever method it is (the spec's Decisions: "Unknown paths and methods").
API_METHODS = frozenset(("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "TRACE"))
# Bodies longer than this are journalled as a placeholder.
JOURNAL_BODY_BYTES = 4096
JSON_HEADERS = (("Content-Type", "application/json"), ("Cache-Control", CACHE_CONTROL))
# What finish_headers appends for any origin to a list that has none of FINISHED_NAMES.
FINISHED_ANY_ORIGIN = tuple(finish_headers([], None))
FINISHED_NAMES = frozenset(
    ("content-length", *(name.lower() for name, _ in FINISHED_ANY_ORIGIN), "vary")
)


class Reply:
    """An answer as it goes out: status, headers (before :func:`finish_headers`) and body.

    The same headers, in the same order, as :func:`~mockserver.httpio.json_response`'s
    ``Response`` (werkzeug adds Content-Length last), built without werkzeug's
    ``Headers``.
    """

    __slots__ = ("body", "headers", "plain", "status")

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        # JSON_HEADERS, headers none of which finish_headers replaces or looks for, and
        # Content-Length last (see Reply.json): the finished list is known without
        # looking at each name again.
        self.plain = False

    @classmethod
    def json(cls, status: int, body: Any, headers: dict[str, str] | None = None) -> Reply:
        data = encode(body)
        listed = list(JSON_HEADERS)
        plain = True
        if headers:
            for item in headers.items():
                name = item[0].lower()
                if name != "content-length":
                    listed.append(item)
                    plain = plain and name not in FINISHED_NAMES
        listed.append(("Content-Length", str(len(data))))
        reply = cls(status, listed, data)
        reply.plain = plain
        return reply

    @classmethod
    def of(cls, response: Response) -> Reply:
        return cls(response.status_code, response.headers.to_wsgi_list(), response.get_data())

    def response(self) -> Response:
        return Response(self.body, status=self.status, headers=self.headers)

    @property
    def status_line(self) -> str:
        return _status_line(self.status)


def _status_line(status: int) -> str:
    """As werkzeug writes it: ``200 OK``, ``599 UNKNOWN``."""
    line = _STATUS_LINES.get(status)
    if line is None:
        phrase = HTTP_STATUS_CODES.get(status, "unknown").upper()
        line = _STATUS_LINES[status] = f"{status} {phrase}"
    return line


_STATUS_LINES: dict[int, str] = {}


class ApiFastPath:
    """WSGI middleware: requests that Flask would route to the API go straight to it.

    Flask's request context, routing and hooks cost about as much as the API's whole
    pipeline, so ``/api/...`` requests skip them: the same :func:`handle_api` answers,
    with the same error answers and headers Flask's handlers would give. Anything Flask
    might route differently (``/api`` itself, non-ASCII paths, other methods)
    goes to Flask as before, and so does everything outside ``/api``.
    """

    def __init__(self, app: Flask, wsgi_app: Any) -> None:
        self.app = app
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path: str = environ.get("PATH_INFO", "")
        if (
            len(path) <= 5
            or not path.startswith("/api/")
            or environ.get("REQUEST_METHOD") not in API_METHODS
            or not path.isascii()
        ):
            return self.wsgi_app(environ, start_response)
        request = Request(environ)
        request.max_content_length = self.app.config["MAX_CONTENT_LENGTH"]
        state = self.app.extensions[EXTENSION]
        try:
            reply = answer_api(state, request, path[5:])
        except state.backend.shared.passes:
            raise  # runs again, or Redis failed: RedisState.middleware answers
        except Exception as error:
            reply = Reply.of(error_response(error))
        return self._send(reply, environ, start_response)

    @staticmethod
    def _send(reply: Reply, environ: dict[str, Any], start_response: Any) -> Any:
        """What Flask's hooks and werkzeug's ``Response.__call__`` would send, built as one
        list: editing werkzeug's Headers one by one costs a third of a request."""
        body = reply.body
        if reply.plain and reply.status != 204:
            # What finish_headers and the length check below make of it, in one step:
            # they looked at every name in lower case, a fifth of the fast path's work.
            listed = reply.headers
            headers = [listed[0], *listed[2:], *FINISHED_ANY_ORIGIN]
            start_response(reply.status_line, headers)
            return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]
        # Any origin, with `*` as the service answers (observed row 5).
        headers = finish_headers(reply.headers, None)
        if reply.status == 204:  # no body, so no length either (RFC 9110 8.6)
            headers = [(n, v) for n, v in headers if n.lower() != "content-length"]
        elif not any(n.lower() == "content-length" for n, _ in headers):
            headers.append(("Content-Length", str(len(body))))
        start_response(reply.status_line, headers)
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]


def dispatch(rest: str = "") -> Response:
    """Flask's view for what the fast path leaves to Flask (``/api`` itself, say)."""
    return handle_api(mock_state(), request, rest)


def handle_api(state: MockState, request: Request, rest: str) -> Response:
    """One request under ``/api/`` as a werkzeug ``Response`` (Flask's route)."""
    return answer_api(state, request, rest).response()


def answer_api(state: MockState, request: Request, rest: str) -> Reply:
    """One request under ``/api/``: the pipeline (routing included), rate-limit headers,
    strict check and journal. Needs no Flask request context."""
    started = time.perf_counter()
    state.backend.prune_a_little()
    if request.method == "OPTIONS":
        # CORS preflight: no body, not counted; the CORS headers come from finish_headers.
        return Reply(204, [], b"")
    environ = request.environ
    # What werkzeug's request.content_length, headers.get and args answer, read from the
    # environ directly: EnvironHeaders look a name up by rewriting it, and raise and catch
    # a KeyError for each header that is absent (Authorization on a login, say).
    length = get_content_length(environ)
    limit = request.max_content_length
    if limit is not None and (length or 0) > limit:
        # Refused before anything runs, whether or not the operation takes a body.
        return Reply.of(error_response(err.PayloadTooLarge()))
    backend = state.backend
    ip = client_ip(request)
    call = Call(
        method=request.method,
        path="/" + rest,
        query=_args(request),
        headers=request.headers,
        ip=ip,
        identity=backend.authenticate(environ.get("HTTP_AUTHORIZATION", "").strip() or None),
        read_body=lambda: _read_body(request),
        read_raw=lambda: (_mimetype(environ), _body_bytes(request)),
    )
    extra: dict[str, str] = {}
    profiled: ProfileAnswer | None = None
    try:
        status, body = state.pipeline.run(call, state.context)
    except backend.shared.passes:
        # The request runs again, or Redis failed (RedisState.middleware answers 503):
        # no settling, which would give back a place that may never have been taken.
        raise
    except ProfileAnswer as answer:  # the service's own answer, from an --as-deployed profile
        profiled = answer
        status, body, extra = answer.status, answer.to_dict(), dict(answer.headers)
    except Exception as error:  # never a bare crash: a JSON answer, and the cause in the log
        status, body, extra = error_answer(error, f"{call.method} {call.path}")
    if status >= 400:
        for take_back in call.undo:
            take_back()

    # All headers are known before the response exists: werkzeug's Headers are cheap to
    # build from a list and dear to edit one by one.
    code = body.get("code") if isinstance(body, dict) else None
    if profiled is not None and not profiled.counted:
        backend.release_rate_limits(call.tickets)
        headers = extra
    else:
        headers = backend.settle_rate_limits(call.tickets, status, code, extra)
    if profiled is not None and profiled.html:
        reply = Reply.of(
            Response(
                profiled.page(),
                status=status,
                headers=[("Cache-Control", CACHE_CONTROL), *headers.items()],
                content_type="text/html; charset=utf-8",
            )
        )
    else:
        reply = Reply.json(status, body, headers)

    # A profile answers as the service does, which the spec deliberately does not describe.
    if state.strict and call.op is not None and not call.profiled:
        reply = Reply.of(_strict(state, call, reply.response()))
    _journal(state, request, length, ip, call.op.operation_id if call.op else None, reply, started)
    return reply


# Parsed query strings and content types by their text, as werkzeug's request.args and
# request.mimetype would parse them each time: a front end repeats a few (?limit=50,
# application/json). Both values are immutable; short texts only, forgotten when full.
PARSED_KEPT = 256
PARSED_LONGEST = 256
_queries: dict[str, MultiDict[str, str]] = {}
_mimetypes: dict[str, str] = {}


def _args(request: Request) -> MultiDict[str, str]:
    text: str = request.environ.get("QUERY_STRING", "")
    args = _queries.get(text)
    if args is None:
        args = request.args  # an ImmutableMultiDict
        if len(text) <= PARSED_LONGEST:
            if len(_queries) >= PARSED_KEPT:
                _queries.clear()
            _queries[text] = args
    return args


def _mimetype(environ: dict[str, Any]) -> str:
    text: str = environ.get("CONTENT_TYPE", "")
    mimetype = _mimetypes.get(text)
    if mimetype is None:
        mimetype = parse_options_header(text)[0].lower()
        if len(text) <= PARSED_LONGEST:
            if len(_mimetypes) >= PARSED_KEPT:
                _mimetypes.clear()
            _mimetypes[text] = mimetype
    return mimetype


def _read_body(request: Request) -> dict[str, Any]:
    """The JSON body as an object; anything else counts as an empty body (fields missing).

    Like the real service's JSON parser, a body that is not sent as JSON is not read.
    """
    if "json" not in _mimetype(request.environ):
        return {}
    raw = _body_bytes(request)
    if not raw:
        return {}
    try:
        body = parse_json(raw)
    except ValueError:  # not JSON, or nested deeper than any body of the API
        return {}
    return _trim(body) if isinstance(body, dict) else {}


def _body_bytes(request: Request) -> bytes:
    """The request body; a body cut short (a Content-Length larger than what came) is
    treated as no body, which earns the operation's MISSING_FIELDS_ERROR, not a 500."""
    # The whole body, from a server that read it already: the same bytes as wsgi.input.
    body: bytes | None = request.environ.get(BODY_KEY)
    if body is not None:
        return body
    try:
        return request.get_data(cache=True)
    except BadRequest:
        return b""


def _trim(value: Any) -> Any:
    # The real service trims leading and trailing white space of string fields.
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, dict):
        return {k: _trim(v) if isinstance(v, str | dict) else v for k, v in value.items()}
    return value


def _strict(state: MockState, call: Call, response: Response) -> Response:
    """The response, or a 500 naming the problem when it breaks the spec (--strict)."""
    problem = state.validator.check_response(
        call.operation,
        "/api" + call.path,
        call.query,
        call.headers,
        call.body if call.operation.has_body else None,
        response.status_code,
        response.get_data(),
        response.headers,
    )
    if problem is None:
        return response
    log.error(
        "STRICT: %s %s -> %s breaks the spec: %s",
        call.method,
        call.path,
        response.status_code,
        problem,
    )
    violation = problem[:500].encode("ascii", "replace").decode()
    status, body, _ = error_answer(err.InternalServerError())
    return json_response(status, body, {"X-Mock-Strict-Violation": violation})


def _journal(
    state: MockState,
    request: Request,
    length: int | None,
    ip: str,
    operation_id: str | None,
    reply: Reply,
    started: float,
) -> None:
    # Bodies and headers are kept raw and made readable only when someone reads the
    # journal (see journal.readable): recording sits on every request's path.
    environ = request.environ
    has_body = length or "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "")
    raw = _body_bytes(request) if has_body else b""
    request_body: Any = (raw if len(raw) <= JOURNAL_BODY_BYTES else "<large body>") if raw else None
    state.record(
        {
            "time": state.backend.clock.now(),
            "method": request.method,
            "path": request.path,
            "query": request.query_string.decode("latin-1"),
            "ip": ip,
            "operationId": operation_id,
            "status": reply.status,
            "durationMs": round((time.perf_counter() - started) * 1000, 3),
            "requestHeaders": [
                (k, v) for k, v in environ.items() if k[:5] == "HTTP_" and k != "HTTP_AUTHORIZATION"
            ],
            "requestBody": request_body,
            "responseHeaders": reply.headers,
            "responseBody": reply.body,
        }
    )
