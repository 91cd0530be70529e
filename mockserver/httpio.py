"""HTTP plumbing: JSON responses, the headers every answer carries, the client's address,
and the one mapping from an error to its answer.

Nothing else builds an error response: the Flask handlers, the API's fast path and the
request pipeline all go through :func:`error_answer`::

    status, body, headers = error_answer(err.InvalidSession())  # 401, {...}, {}
    response = json_response(status, body, headers)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from flask import Response
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request

from . import exceptions as err

log = logging.getLogger("cumulonimbus-mock")

CACHE_CONTROL = "no-cache, no-store, must-revalidate"
# What the service exposes to scripts on other origins (observed rows 5-7): not Reason
# nor Skipped, so a front end cannot rely on those in a browser.
EXPOSED_RATELIMIT_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")
CORS_HEADERS = {
    "Access-Control-Allow-Methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": (
        "Authorization, Content-Type, X-Session-Name, X-Requested-With, Accept, Cache-Control"
    ),
    "Access-Control-Expose-Headers": ", ".join(EXPOSED_RATELIMIT_HEADERS),
    "Access-Control-Max-Age": "600",
}
# The environ key under which a server that has read the whole body hands it over as
# bytes (serving.WSGIOverRSGI): reading it back through werkzeug's input stream cost
# about a tenth of a login.
BODY_KEY = "cumulonimbus.body"
# Set by finish_headers whatever the response said.
_REPLACED = frozenset(("cache-control", "access-control-allow-origin"))

Answer = tuple[int, dict[str, Any], dict[str, str]]
# Bodies kept by their key (see keyed), each encoded once; forgotten all at once when full.
ENCODED_KEPT = 256
_kept: dict[Any, KeyedBody] = {}


class KeyedBody(dict[str, Any]):
    """A body with a key that determines it wholly, so that its JSON is encoded once:
    a page of 50 sessions took longer to encode than the rest of its request, and a
    front end polls the same page again and again. Shared by every answer with its key
    (see :func:`keyed`), so nothing may change it."""

    __slots__ = ("data", "key")

    def __init__(self, key: Any, body: dict[str, Any]) -> None:
        super().__init__(body)
        self.key = key
        self.data: bytes | None = None


def keyed(key: Any, build: Callable[[], dict[str, Any]]) -> KeyedBody:
    """The body ``key`` determines, built by ``build`` only the first time: rebuilding
    a page's 50 items cost as much as looking its encoding up."""
    body = _kept.get(key)
    if body is None:
        if len(_kept) >= ENCODED_KEPT:
            _kept.clear()
        body = _kept[key] = KeyedBody(key, build())
    return body


def encode(body: Any) -> bytes:
    """The body as the API sends JSON. ASCII escapes: a string may hold a lone
    surrogate (JSON allows "\\ud800"), which would not encode as UTF-8."""
    if type(body) is KeyedBody:
        data = body.data
        if data is None:
            data = body.data = json.dumps(body, separators=(",", ":")).encode()
        return data
    return json.dumps(body, separators=(",", ":")).encode()


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    # ASCII escapes: a string may hold a lone surrogate (JSON allows "\\ud800"), which
    # would not encode as UTF-8.
    data = json.dumps(body, separators=(",", ":"))
    listed = [("Content-Type", "application/json"), ("Cache-Control", CACHE_CONTROL)]
    if headers:
        listed.extend(headers.items())
    return Response(data, status=status, headers=listed)


def finish_headers(listed: list[tuple[str, str]], origin: str | None) -> list[tuple[str, str]]:
    """The headers every ``/api`` answer (and every page outside ``/_mock``) goes out with:
    no caching, and CORS for ``origin`` (``None`` for any origin, as ``*``).

    Works on a WSGI header list: werkzeug's Headers are cheap to build from a list and
    dear to edit one by one, and this runs on every request.
    """
    present = {name.lower() for name, _ in listed}
    headers = [(n, v) for n, v in listed if n.lower() not in _REPLACED]
    headers.append(("Cache-Control", CACHE_CONTROL))
    headers.append(("Access-Control-Allow-Origin", origin or "*"))
    if origin:
        headers.append(("Vary", "Origin"))
    headers.extend((n, v) for n, v in CORS_HEADERS.items() if n.lower() not in present)
    return headers


def client_ip(request: Request) -> str:
    """The client's address as the service keys its buckets: the first X-Forwarded-For
    value, else the peer's address."""
    environ = request.environ  # what request.headers and remote_addr read, directly
    forwarded: str = environ.get("HTTP_X_FORWARDED_FOR", "")
    first = forwarded.split(",")[0].strip()
    return first or environ.get("REMOTE_ADDR") or "unknown"


def error_answer(error: BaseException, where: str = "") -> Answer:
    """Status, body and headers for any error raised while answering: an API error as
    itself, an HTTP error werkzeug raised in the API's format, anything else a JSON 500
    (and the cause in the log), never an HTML page."""
    if isinstance(error, err.APIError):
        return error.status, error.to_dict(), dict(error.headers)
    if isinstance(error, HTTPException):
        return _http_error(error)
    log.exception("unhandled error%s: %s", f" in {where}" if where else "", error)
    return 500, err.InternalServerError().to_dict(), {}


def error_response(error: BaseException, where: str = "") -> Response:
    return json_response(*error_answer(error, where))


def _unknown_endpoint() -> Answer:
    """The answer to a path outside the API (or a 404/405 raised before the pipeline ran).
    Unknown paths *under* ``/api`` never come here: the pipeline's ``routing`` step answers
    them, counted in the global bucket as the service does (observed rows 3-4)."""
    return 404, err.InvalidEndpoint().to_dict(), {"RateLimit-Skipped": "true"}


def _http_error(error: HTTPException) -> Answer:
    """An HTTP error werkzeug or Flask raised on the way (a 416 for a bad Range, say): its
    own status, in the API's error format."""
    if error.code in (404, 405):
        return _unknown_endpoint()
    if error.code == 413:
        return error_answer(err.PayloadTooLarge())
    status = error.code if error.code is not None and 400 <= error.code < 600 else 500
    name = (error.name or "Error").upper().replace(" ", "_").replace("'", "")
    code = name if name.endswith("_ERROR") else name + "_ERROR"
    # Headers the error itself carries (Content-Range of a 416, Allow of a 405).
    headers = {
        name: value
        for name, value in error.get_headers()
        if name.lower() not in ("content-type", "content-length")
    }
    return status, {"code": code, "message": error.name}, headers
