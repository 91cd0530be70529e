"""Every check fails, naming its rule, against a server that breaks exactly that rule.

Each case wraps the real mock in a middleware that changes one thing, runs the suite's
cases for that check in a subprocess, and asserts on its output and Markdown report.
"""

from __future__ import annotations

import concurrent.futures
import copy
import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from werkzeug.wrappers import Response

from conformance.catalog import all_checks
from mockserver.app import create_app
from mockserver.spec import load_document
from tests.conformance.harness import (
    Broken,
    Ledger,
    Seen,
    SuiteRun,
    body_of,
    json_response,
    jwt_sub,
    run_suite,
    serve,
    set_body,
)

SESSION_LIST = re.compile(r"^/api/users/(me|\d{13})/sessions$")
SELF_SESSION = re.compile(r"^/api/users/me/sessions/(\d{10}|me)$")
_ips = itertools.count(1)


@dataclass(frozen=True)
class Breakage:
    check: str  # the check that must fail
    operation: str  # on this operation
    what: str  # what the broken server does
    select: str  # -k expression choosing the suite's cases to run
    request: Callable[[Seen, Ledger], Response | None] | None = None
    response: Callable[[Seen, Response, Ledger], Response | None] | None = None
    files: tuple[str, ...] = ("test_policies.py",)
    # Serve the mock from a copy of the spec changed by this function (a broken rule that
    # lives in the spec's policies rather than in one response).
    spec: Callable[[dict[str, Any]], None] | None = None


def _error(status: int, code: str, message: str, **extra: Any) -> Response:
    return json_response(status, {"code": code, "message": message, **extra})


def _code(response: Response) -> str | None:
    body = body_of(response)
    return body.get("code") if isinstance(body, dict) else None


# Response checks ---------------------------------------------------------------------------


def undocumented_status(seen: Seen, response: Response, ledger: Ledger) -> None:
    if (
        seen.method == "GET"
        and seen.path == "/api/users/me/sessions"
        and response.status_code == 400
    ):
        response.status_code = 422


def text_plain(seen: Seen, response: Response, ledger: Ledger) -> None:
    if seen.method == "GET" and SELF_SESSION.match(seen.path):
        response.headers["Content-Type"] = "text/plain"


def exp_as_string(seen: Seen, response: Response, ledger: Ledger) -> None:
    body = body_of(response)
    if seen.method == "GET" and SELF_SESSION.match(seen.path) and response.status_code == 200:
        set_body(response, {**body, "exp": str(body["exp"])})


def no_cache_control_on_401(seen: Seen, response: Response, ledger: Ledger) -> None:
    if response.status_code == 401:
        del response.headers["Cache-Control"]


def no_ratelimit_remaining(seen: Seen, response: Response, ledger: Ledger) -> None:
    del response.headers["RateLimit-Remaining"]


def forbidden_as_400(seen: Seen, response: Response, ledger: Ledger) -> None:
    if response.status_code == 403 and _code(response) == "INSUFFICIENT_PERMISSIONS_ERROR":
        response.status_code = 400


# Authentication ----------------------------------------------------------------------------


def accept_bearer(seen: Seen, ledger: Ledger) -> None:
    token = seen.headers.get("Authorization", "")
    if token.startswith("Bearer "):
        seen.headers["Authorization"] = token[len("Bearer ") :]


def login_ignores_session(seen: Seen, ledger: Ledger) -> None:
    if seen.path == "/api/login":
        seen.headers.pop("Authorization", None)


def banned_as_unknown(seen: Seen, response: Response, ledger: Ledger) -> Response | None:
    if seen.path == "/api/login" and _code(response) == "BANNED_ERROR":
        return _error(404, "INVALID_USER_ERROR", "Invalid User")
    return None


# Scopes and staff --------------------------------------------------------------------------


def _as_browser(seen: Seen, ledger: Ledger) -> None:
    token = seen.token
    if token in ledger.scoped:
        browser = ledger.browser.get(jwt_sub(token) or "")
        if browser:
            seen.headers["Authorization"] = browser


def list_ignores_scope(seen: Seen, ledger: Ledger) -> None:
    if seen.method == "GET" and seen.path == "/api/users/me/sessions":
        _as_browser(seen, ledger)


def create_ignores_browser_only(seen: Seen, ledger: Ledger) -> None:
    if seen.method == "POST" and seen.path == "/api/users/me/sessions":
        _as_browser(seen, ledger)


def scoped_refused_on_read(seen: Seen, ledger: Ledger) -> Response | None:
    if seen.method == "GET" and SELF_SESSION.match(seen.path) and seen.token in ledger.scoped:
        return _error(403, "INSUFFICIENT_PERMISSIONS_ERROR", "Insufficient Permissions")
    return None


def non_staff_listed(seen: Seen, response: Response, ledger: Ledger) -> Response | None:
    if (
        seen.method == "GET"
        and re.match(r"^/api/users/\d{13}/sessions$", seen.path)
        and _code(response) == "INSUFFICIENT_PERMISSIONS_ERROR"
        and jwt_sub(seen.token) not in ledger.staff
    ):
        return json_response(200, {"count": 0, "items": []})
    return None


def second_factor_as_forbidden(seen: Seen, response: Response, ledger: Ledger) -> Response | None:
    if _code(response) == "ENDPOINT_REQUIRES_SECOND_FACTOR_ERROR":
        return _error(403, "INSUFFICIENT_PERMISSIONS_ERROR", "Insufficient Permissions")
    return None


def unknown_user_as_session(seen: Seen, response: Response, ledger: Ledger) -> Response | None:
    if seen.path.startswith("/api/users/") and _code(response) == "INVALID_USER_ERROR":
        return _error(404, "INVALID_SESSION_ERROR", "Invalid Session")
    return None


# Identity reverification -------------------------------------------------------------------


def missing_password_as_wrong(seen: Seen, response: Response, ledger: Ledger) -> Response | None:
    body = body_of(response)
    if (
        seen.path == "/api/users/me/sessions"
        and _code(response) == "MISSING_FIELDS_ERROR"
        and "password" in body.get("fields", [])
    ):
        return _error(401, "INVALID_PASSWORD_ERROR", "Invalid Password")
    return None


def wrong_password_as_missing(seen: Seen, response: Response, ledger: Ledger) -> Response | None:
    if seen.path == "/api/users/me/sessions" and _code(response) == "INVALID_PASSWORD_ERROR":
        return _error(400, "MISSING_FIELDS_ERROR", "Missing Fields", fields=["password"])
    return None


def challenge_without_backup(seen: Seen, response: Response, ledger: Ledger) -> None:
    body = body_of(response)
    if _code(response) == "SECOND_FACTOR_CHALLENGE_REQUIRED_ERROR":
        set_body(
            response, {**body, "types": [t for t in body["types"] if t != "backup"] + ["totp"]}
        )


# Kill switches -----------------------------------------------------------------------------


def wrong_feature(seen: Seen, response: Response, ledger: Ledger) -> None:
    body = body_of(response)
    if _code(response) == "SERVICE_UNAVAILABLE_ERROR" and body.get("feature") != 8:
        set_body(response, {**body, "feature": 8})


def global_as_500(seen: Seen, response: Response, ledger: Ledger) -> Response | None:
    body = body_of(response)
    if _code(response) == "SERVICE_UNAVAILABLE_ERROR" and body.get("feature") == 8:
        return _error(500, "INTERNAL_SERVER_ERROR", "Internal Server Error")
    return None


def switches_stop_staff(seen: Seen, ledger: Ledger) -> Response | None:
    if 8 in ledger.switches_on and jwt_sub(seen.token) in ledger.staff:
        return _error(503, "SERVICE_UNAVAILABLE_ERROR", "Service Unavailable", feature=8)
    return None


# Rate limits -------------------------------------------------------------------------------


def burst_as_standard(seen: Seen, response: Response, ledger: Ledger) -> None:
    if response.status_code == 429 and response.headers.get("RateLimit-Reason") == "burst":
        response.headers["RateLimit-Reason"] = "standard"


def no_route_limit(seen: Seen, ledger: Ledger) -> None:
    if seen.method == "POST" and seen.path == "/api/users/me/sessions":
        seen.headers["X-Forwarded-For"] = f"192.168.{next(_ips) % 250}.{next(_ips) % 250}"


def _list_call(seen: Seen) -> bool:
    return seen.method == "GET" and seen.path == "/api/users/me/sessions"


def window_never_ends(seen: Seen, ledger: Ledger) -> Response | None:
    closed = ledger.memory.setdefault("closed", set())
    if _list_call(seen) and seen.headers.get("X-Forwarded-For", "") in closed:
        return _error(
            429, "RATELIMITED_ERROR", "You Have Been Ratelimited. Please Try Again Later."
        )
    return None


def close_used_up_windows(seen: Seen, response: Response, ledger: Ledger) -> None:
    if _list_call(seen) and response.status_code == 429:
        ledger.memory.setdefault("closed", set()).add(seen.headers.get("X-Forwarded-For", ""))


def login_404_counted(seen: Seen, ledger: Ledger) -> Response | None:
    if seen.path != "/api/login":
        return None
    ip = seen.headers.get("X-Forwarded-For", "")
    misses = ledger.memory.setdefault("misses", {})
    if misses.get(ip, 0) >= 4:
        return _error(
            429,
            "RATELIMITED_ERROR",
            "You Have Been Ratelimited. Please Try Again Later.",
        )
    ledger.memory.setdefault("pending", []).append(ip)
    return None


def count_login_404(seen: Seen, response: Response, ledger: Ledger) -> None:
    if seen.path == "/api/login" and response.status_code == 404:
        ip = seen.headers.get("X-Forwarded-For", "")
        misses = ledger.memory.setdefault("misses", {})
        misses[ip] = misses.get(ip, 0) + 1


def remaining_stuck(seen: Seen, response: Response, ledger: Ledger) -> None:
    if "RateLimit-Limit" in response.headers and response.status_code != 429:
        response.headers["RateLimit-Remaining"] = str(int(response.headers["RateLimit-Limit"]) - 1)


# Tokens, paging, bulk ----------------------------------------------------------------------


def exp_plus_hour(seen: Seen, response: Response, ledger: Ledger) -> None:
    if seen.path == "/api/login" and response.status_code == 201:
        body = body_of(response)
        set_body(response, {**body, "exp": body["exp"] + 3600})


def delete_is_a_no_op(seen: Seen, ledger: Ledger) -> Response | None:
    if seen.method == "DELETE" and SELF_SESSION.match(seen.path):
        return json_response(
            200, {"code": "DELETE_SESSION_SUCCESS", "message": "Session Successfully Deleted"}
        )
    return None


def _list_body(seen: Seen, response: Response) -> dict[str, Any] | None:
    body = body_of(response)
    if seen.method == "GET" and SESSION_LIST.match(seen.path) and response.status_code == 200:
        return body
    return None


def count_is_page_size(seen: Seen, response: Response, ledger: Ledger) -> None:
    body = _list_body(seen, response)
    if body is not None:
        set_body(response, {**body, "count": len(body["items"])})


def ignore_query(name: str) -> Callable[[Seen, Ledger], None]:
    def hook(seen: Seen, ledger: Ledger) -> None:
        value = seen.query.get(name, "")
        if (
            seen.method == "GET"
            and SESSION_LIST.match(seen.path)
            and value.isdigit()
            and int(value) <= 50
        ):
            del seen.query[name]

    return hook


def oldest_first(seen: Seen, response: Response, ledger: Ledger) -> None:
    body = _list_body(seen, response)
    if body is not None:
        set_body(response, {**body, "items": list(reversed(body["items"]))})


def count_requested(seen: Seen, response: Response, ledger: Ledger) -> None:
    if seen.method == "DELETE" and SESSION_LIST.match(seen.path) and response.status_code == 200:
        body = body_of(response)
        set_body(response, {**body, "count": len(seen.body.get("ids", []))})


def truncate_ids(seen: Seen, ledger: Ledger) -> None:
    if seen.method == "DELETE" and SESSION_LIST.match(seen.path) and isinstance(seen.body, dict):
        ids = seen.body.get("ids")
        if isinstance(ids, list):
            seen.body = {**seen.body, "ids": ids[:50]}


def include_self_always(seen: Seen, ledger: Ledger) -> None:
    if (
        seen.path == "/api/users/me/sessions/all"
        and seen.query.get("include-self", "false") == "false"
    ):
        seen.query["include-self"] = "true"


def same_second_same_id(seen: Seen, response: Response, ledger: Ledger) -> None:
    if (
        seen.method == "POST"
        and seen.path == "/api/users/me/sessions"
        and response.status_code == 201
    ):
        body = body_of(response)
        last = ledger.memory.get("last_id")
        ledger.memory["last_id"] = body["id"]
        if last is not None and int(body["id"]) == int(last) + 1:
            set_body(response, {**body, "id": last})


def list_without_count(seen: Seen, response: Response, ledger: Ledger) -> None:
    body = _list_body(seen, response)
    if body is not None and seen.path == "/api/users/me/sessions":
        set_body(response, {"items": body["items"]})


def accept_bad_paging(seen: Seen, response: Response, ledger: Ledger) -> Response | None:
    if (
        seen.path == "/api/users/me/sessions"
        and seen.method == "GET"
        and response.status_code == 400
    ):
        return json_response(200, {"count": 0, "items": []})
    return None


def reset_grows(seen: Seen, response: Response, ledger: Ledger) -> None:
    headers = response.headers
    if (
        seen.method == "GET"
        and seen.path == "/api/users/me/sessions"
        and response.status_code != 429
        and "RateLimit-Limit" in headers
    ):
        used = int(headers["RateLimit-Limit"]) - int(headers["RateLimit-Remaining"])
        headers["RateLimit-Reset"] = str(int(headers["RateLimit-Reset"]) - 30 + used)


def login_reset_negative(seen: Seen, response: Response, ledger: Ledger) -> None:
    if seen.path == "/api/login" and response.status_code == 201:
        response.headers["RateLimit-Reset"] = "-2"


def _html(status: int) -> Response:
    return Response(f"<html><body>{status}</body></html>", status=status, mimetype="text/html")


def staff_bulk_delete_without_body_crashes(seen: Seen, ledger: Ledger) -> Response | None:
    if (
        seen.method == "DELETE"
        and re.match(r"^/api/users/\d{13}/sessions$", seen.path)
        and seen.body is None
    ):
        return _html(500)
    return None


def patch_is_405_html(seen: Seen, ledger: Ledger) -> Response | None:
    return _html(405) if seen.method == "PATCH" else None


def banned_session_as_anonymous(seen: Seen, response: Response, ledger: Ledger) -> Response | None:
    if seen.path != "/api/login" and _code(response) == "BANNED_ERROR":
        return _error(401, "INVALID_SESSION_ERROR", "Invalid Session")
    return None


def non_jwt_answer_crashes(seen: Seen, ledger: Ledger) -> Response | None:
    answer = seen.body.get("2fa") if isinstance(seen.body, dict) else None
    token = answer.get("token") if isinstance(answer, dict) else None
    if isinstance(token, str) and token.count(".") != 2:
        return _error(500, "INTERNAL_SERVER_ERROR", "Internal Server Error")
    return None


R = "test_responses.py"
S = "test_schema.py"
BREAKAGES = [
    Breakage(
        "schema.status",
        "getSelfSessions",
        "answers 422 for a bad query",
        "schema.status-getSelfSessions",
        response=undocumented_status,
        files=(R,),
    ),
    Breakage(
        "schema.content-type",
        "getSelfSession",
        "labels a session text/plain",
        "schema.content-type-getSelfSession",
        response=text_plain,
        files=(R,),
    ),
    Breakage(
        "schema.body",
        "getSelfSession",
        "sends exp as a string",
        "schema.body-getSelfSession",
        response=exp_as_string,
        files=(R,),
    ),
    Breakage(
        "headers.cache-control",
        "getSelfSessions",
        "drops Cache-Control on 401",
        "headers.cache-control-getSelfSessions",
        response=no_cache_control_on_401,
        files=(R,),
    ),
    Breakage(
        "headers.ratelimit",
        "getSelfSessions",
        "drops RateLimit-Remaining",
        "headers.ratelimit-getSelfSessions",
        response=no_ratelimit_remaining,
        files=(R,),
    ),
    Breakage(
        "errors.code-matches-status",
        "getUserSessions",
        "sends INSUFFICIENT_PERMISSIONS_ERROR with 400",
        "errors.code-matches-status-getUserSessions",
        response=forbidden_as_400,
        files=(R,),
    ),
    Breakage(
        "auth.required",
        "getSelfSessions",
        "accepts a Bearer prefix",
        "auth.required-getSelfSessions",
        request=accept_bearer,
    ),
    Breakage(
        "auth.forbidden",
        "login",
        "ignores the session at login",
        "auth.forbidden",
        request=login_ignores_session,
    ),
    Breakage(
        "auth.banned",
        "login",
        "answers a banned user like an unknown one",
        "auth.banned",
        response=banned_as_unknown,
    ),
    Breakage(
        "scope.denied",
        "getSelfSessions",
        "ignores the scope of a list",
        "scope.denied-getSelfSessions",
        request=list_ignores_scope,
    ),
    Breakage(
        "scope.allowed",
        "getSelfSession",
        "refuses every scoped session",
        "scope.allowed-getSelfSession-",
        request=scoped_refused_on_read,
    ),
    Breakage(
        "scope.browser-only",
        "createScopedSession",
        "lets scoped sessions create sessions",
        "scope.browser-only",
        request=create_ignores_browser_only,
    ),
    Breakage(
        "staff.non-staff",
        "getUserSessions",
        "lists for non-staff",
        "staff.non-staff-getUserSessions",
        response=non_staff_listed,
    ),
    Breakage(
        "staff.no-second-factor",
        "getKillSwitches",
        "answers 403 to staff without a factor",
        "staff.no-second-factor-getKillSwitches",
        response=second_factor_as_forbidden,
    ),
    Breakage(
        "staff.unknown-user",
        "getUserSessions",
        "says INVALID_SESSION for an unknown user",
        "staff.unknown-user-getUserSessions",
        response=unknown_user_as_session,
    ),
    Breakage(
        "reverify.missing-password",
        "createScopedSession",
        "says wrong password when it is missing",
        "reverify.missing-password-createScopedSession",
        response=missing_password_as_wrong,
    ),
    Breakage(
        "reverify.wrong-password",
        "createScopedSession",
        "says missing when the password is wrong",
        "reverify.wrong-password-createScopedSession",
        response=wrong_password_as_missing,
    ),
    Breakage(
        "reverify.challenge",
        "login",
        "leaves backup out of the challenge types",
        "reverify.challenge-login",
        response=challenge_without_backup,
    ),
    Breakage(
        "killswitch.operation",
        "deleteSelfSessions",
        "names GLOBAL as the feature",
        "killswitch.operation-deleteSelfSessions",
        response=wrong_feature,
    ),
    Breakage(
        "killswitch.global",
        "getSelfSessions",
        "fails with 500 when GLOBAL is on",
        "killswitch.global-getSelfSessions",
        response=global_as_500,
    ),
    Breakage(
        "killswitch.staff-bypass",
        "getSelfSessions",
        "stops staff too",
        "killswitch.staff-bypass-getSelfSessions",
        request=switches_stop_staff,
    ),
    Breakage(
        "ratelimit.burst",
        "getSelfSessions",
        "calls a burst refusal standard",
        "ratelimit.burst-getSelfSessions",
        response=burst_as_standard,
    ),
    Breakage(
        "ratelimit.route-limit",
        "createScopedSession",
        "has no route limit on scoped sessions",
        "ratelimit.route-limit-createScopedSession",
        request=no_route_limit,
    ),
    Breakage(
        "ratelimit.route-limit",
        "getSelfSessions",
        "keeps a used-up window closed after it ends",
        "ratelimit.route-limit-getSelfSessions-new-window",
        request=window_never_ends,
        response=close_used_up_windows,
    ),
    Breakage(
        "ratelimit.login-404-not-counted",
        "login",
        "counts 404s at login",
        "ratelimit.login-404-not-counted",
        request=login_404_counted,
        response=count_login_404,
    ),
    Breakage(
        "ratelimit.headers",
        "getSelfSessions",
        "never counts RateLimit-Remaining down",
        "ratelimit.headers-getSelfSessions",
        response=remaining_stuck,
    ),
    Breakage(
        "token.lifetime",
        "login",
        "answers an exp an hour later than the token's",
        "token.lifetime-login",
        response=exp_plus_hour,
    ),
    Breakage(
        "token.revocation",
        "deleteSelfSession",
        "says a session is deleted but keeps it",
        "token.revocation-deleteSelfSession",
        request=delete_is_a_no_op,
    ),
    Breakage(
        "paging.count",
        "getSelfSessions",
        "counts the page, not the total",
        "paging.count-getSelfSessions",
        response=count_is_page_size,
    ),
    Breakage(
        "paging.limit",
        "getSelfSessions",
        "ignores limit",
        "paging.limit-getSelfSessions",
        request=ignore_query("limit"),
    ),
    Breakage(
        "paging.offset",
        "getSelfSessions",
        "ignores offset",
        "paging.offset-getSelfSessions",
        request=ignore_query("offset"),
    ),
    Breakage(
        "paging.order",
        "getUserSessions",
        "lists oldest first",
        "paging.order-getUserSessions",
        response=oldest_first,
    ),
    Breakage(
        "bulk.count",
        "deleteSelfSessions",
        "counts the ids asked for",
        "bulk.count-deleteSelfSessions",
        response=count_requested,
    ),
    Breakage(
        "bulk.limit-50",
        "deleteUserSessions",
        "silently drops ids after 50",
        "bulk.limit-50-deleteUserSessions",
        request=truncate_ids,
    ),
    Breakage(
        "delete-all.include-self",
        "deleteAllSelfSessions",
        "always deletes the caller's session",
        "delete-all.include-self-deleteAllSelfSessions-false",
        request=include_self_always,
    ),
    Breakage(
        "ids.distinct",
        "createScopedSession",
        "gives same-second sessions one id",
        "ids.distinct-createScopedSession",
        response=same_second_same_id,
    ),
    Breakage(
        "fuzz.positive",
        "getSelfSessions",
        "leaves count out of the list",
        "fuzz.positive-getSelfSessions",
        response=list_without_count,
        files=(S,),
    ),
    Breakage(
        "fuzz.negative",
        "getSelfSessions",
        "accepts invalid paging",
        "fuzz.negative-getSelfSessions",
        response=accept_bad_paging,
        files=(S,),
    ),
]


BREAKAGES += [
    Breakage(
        "ratelimit.accounting",
        "getSelfSessions",
        "lets RateLimit-Reset grow within a window",
        "ratelimit.accounting-getSelfSessions",
        response=reset_grows,
    ),
    Breakage(
        "headers.ratelimit-reset",
        "login",
        "answers a login with RateLimit-Reset: -2 (as 5.3.0 once did)",
        "headers.ratelimit-reset-login",
        response=login_reset_negative,
        files=(R,),
    ),
    Breakage(
        "body.malformed",
        "deleteUserSessions",
        "crashes (500 HTML) on a staff bulk delete with no body",
        "body.malformed-deleteUserSessions-no-body",
        request=staff_bulk_delete_without_body_crashes,
    ),
    Breakage(
        "routing.unknown-method",
        "getSelfSessions",
        "answers PATCH with an HTML 405",
        "routing.unknown-method-getSelfSessions-PATCH",
        request=patch_is_405_html,
    ),
    Breakage(
        "auth.banned-session",
        "getSelfSessions",
        "treats a banned user's session as no session",
        "auth.banned-session-getSelfSessions",
        response=banned_session_as_anonymous,
    ),
    Breakage(
        "reverify.second-factor-answer",
        "login",
        "crashes on a second-factor token that is not a JWT",
        "reverify.second-factor-answer-login-not-a-jwt",
        request=non_jwt_answer_crashes,
    ),
]


def _limits(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, op in item.items():
            if isinstance(op, dict) and op.get("x-rate-limit"):
                yield path, method, op["x-rate-limit"]


def per_method_buckets(document: dict[str, Any]) -> None:
    for path, method, limit in _limits(document):
        limit["route"] = f"{method.upper()} {path}"


def me_folded_into_sid(document: dict[str, Any]) -> None:
    for _path, _method, limit in _limits(document):
        limit.pop("literalRoutes", None)


BREAKAGES += [
    Breakage(
        "ratelimit.route-buckets",
        "getSelfSession",
        "keys buckets by method as well as path",
        "ratelimit.route-buckets-getSelfSession",
        spec=per_method_buckets,
    ),
    Breakage(
        "ratelimit.literal-route",
        "getSelfSession",
        "counts /users/me/sessions/me with /users/me/sessions/{sid}",
        "ratelimit.literal-route-getSelfSession",
        spec=me_folded_into_sid,
    ),
]


def test_every_check_has_a_breakage() -> None:
    covered = {b.check for b in BREAKAGES}
    ids = {c.id for c in all_checks()} | {"fuzz.positive", "fuzz.negative"}
    assert ids - covered == set(), "checks no broken server proves"
    assert covered - ids == set(), "breakages for unknown checks"


def _run_broken(breakage: Breakage, tmp_path: Path) -> SuiteRun:
    config: dict[str, Any] = {}
    if breakage.spec is not None:
        document = copy.deepcopy(load_document())
        breakage.spec(document)
        config["SPEC_PATH"] = str(tmp_path / "broken-spec.yaml")
        Path(config["SPEC_PATH"]).write_text(yaml.safe_dump(document), encoding="utf-8")
    app = Broken(create_app(config), request=breakage.request, response=breakage.response)
    with serve(app) as base_url:
        return run_suite(base_url, tmp_path, "-k", breakage.select, files=breakage.files)


@pytest.fixture(scope="module")
def broken_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, SuiteRun]:
    """The suite against every selected broken server, two at a time (one per core)."""
    selected = [
        item.callspec.params["breakage"]
        for item in request.session.items
        if "breakage" in getattr(getattr(item, "callspec", None), "params", {})
    ]
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        # Keyed by the selection: one check may have several broken servers.
        futures = {
            b.select: pool.submit(_run_broken, b, tmp_path_factory.mktemp(b.check))
            for b in selected
        }
        return {select: future.result() for select, future in futures.items()}


@pytest.mark.parametrize("breakage", BREAKAGES, ids=[b.check for b in BREAKAGES])
def test_check_fails_on_broken_server(breakage: Breakage, broken_runs: dict[str, SuiteRun]) -> None:
    result = broken_runs[breakage.select]
    assert result.returncode == 1, str(result)
    assert f"{breakage.check}@{breakage.operation}" in result.output, str(result)
    assert f"[{breakage.check}] {breakage.operation} (" in result.output, str(result)
    assert f"### `{breakage.check}` on `{breakage.operation}`" in result.report, result.report
    assert "reproduce: curl -i -X" in result.output, str(result)
    # Only the broken rule fails: every failed case belongs to the check under test.
    failed = re.findall(r"^### `([^`]+)` on `([^`]+)`", result.report, re.MULTILINE)
    assert failed and all(check == breakage.check for check, _op in failed), failed
