"""Generated requests (Schemathesis v4 + Hypothesis) for every operation, valid and invalid,
sent with a cached session of the account the operation is meant for; each response is
judged by Schemathesis's schema checks and by the suite's own response checks."""

from __future__ import annotations

import functools
import time
import zlib
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from requests.structures import CaseInsensitiveDict
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core import NotSet
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from conformance.calls import UNKNOWN_SID
from conformance.cases import raise_failure, run_case_errors, target_lost
from conformance.catalog import all_checks
from conformance.context import Context
from conformance.exchange import Exchange, TargetUnreachable, token_claims
from conformance.failures import CheckFailure
from conformance.pacing import progress
from conformance.plan import SCARCE_EXAMPLES
from conformance.redact import Redactor
from conformance.spec import Operation, load_raw, load_spec

SCHEMATHESIS_CHECKS = {
    "positive": [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
    ],
    "negative": [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        negative_data_rejection,
    ],
}


@functools.cache
def st_schema() -> Any:
    return schemathesis.openapi.from_dict(load_raw())


def _params() -> list[Any]:
    params = []
    for op in load_spec().operations:
        # Without parameters or a body there is nothing to make invalid.
        modes = ("positive", "negative") if op.parameters or op.body_schema else ("positive",)
        for mode in modes:
            check_id = f"fuzz.{mode}"
            params.append(
                pytest.param(
                    op.id,
                    mode,
                    id=f"{check_id}-{op.id}",
                    marks=pytest.mark.conformance(check_id, op.id),
                )
            )
    return params


def _exchange(response: Any, redactor: Redactor) -> Exchange:
    request = response.request
    body = request.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    return Exchange(
        method=str(request.method),
        url=str(request.url),
        request_headers=dict(request.headers),
        request_body=body,
        status=response.status_code,
        headers=CaseInsensitiveDict(
            {k: ", ".join(v) if isinstance(v, list) else v for k, v in response.headers.items()}
        ),
        text=response.text,
        redactor=redactor,
    )


@pytest.mark.parametrize(("operation_id", "mode"), _params())
def test_generated(conformance_context: Context, operation_id: str, mode: str) -> None:
    ctx = conformance_context
    op = load_spec().operation(operation_id)
    run_case_errors(ctx, op)
    operation = st_schema()[op.path][op.method]
    strategy = operation.as_strategy(
        generation_mode=GenerationMode.POSITIVE if mode == "positive" else GenerationMode.NEGATIVE,
        **_fixed_parameters(ctx, op),
    )
    actor = ctx.default_actor(op)
    client = ctx.client

    @hypothesis.settings(
        max_examples=ctx.target.settings_examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
        report_multiple_bugs=False,
    )
    # The examples depend on the operation and mode only. `derandomize` alone seeds from
    # the digest of this function's source, so any edit here changed which requests were
    # generated, and with them which known deviations of a live server the run meets.
    @hypothesis.seed(zlib.crc32(f"{op.id}:{mode}".encode()))
    @hypothesis.given(case=strategy)
    def run(case: Any) -> None:
        token = ctx.browser(actor).value if actor is not None else None
        has_body = not isinstance(case.body, NotSet)
        _keep_own_session(ctx, op, case.body)
        body = case.body if has_body else None
        if client.budget_spent_for(op, token, body, has_body=has_body):
            unsent.append(1)
            return
        if client.scarce(op) and not op.refused_by_validation(body, has_body=has_body):
            # On a deployment a 4-per-5-minutes budget is worth more to the checks that
            # need it than to the fifth generated login: a full run's fuzzing of login
            # spent 22 logins, about 25 minutes of windows.
            if len(scarce_sent) >= SCARCE_EXAMPLES:
                unsent.append(1)
                return
            scarce_sent.append(1)
        response, exchange = _send(ctx, op, case, token)
        if op.deletes_sessions and response.status_code == 200:
            ctx.forget(None)
        _judge(ctx, op, mode, case, response, exchange)

    unsent: list[int] = []
    scarce_sent: list[int] = []
    try:
        run()
    except (TargetUnreachable, requests.ConnectionError) as lost:
        target_lost(lost)
    except CheckFailure as failure:
        raise_failure(failure)
    finally:
        if unsent:
            progress(
                f"{op.label}: {len(unsent)} generated request(s) not sent, since they would "
                "count in a route budget that is spent for now or scarce"
            )


def _fixed_parameters(ctx: Context, op: Operation) -> dict[str, Any]:
    """What generated requests keep fixed. On a deployment, deleting the suite's own
    session costs a login (4 per 5 minutes): keep them off `me` and off include-self=true."""
    fixed: dict[str, Any] = {}
    if not ctx.target.is_mock and op.deletes_sessions and op.is_self:
        if op.param("sid") is not None:
            fixed["path_parameters"] = {"sid": UNKNOWN_SID}
        if op.param("include-self") is not None:
            fixed["query"] = {"include-self": "false"}
    return fixed


def _keep_own_session(ctx: Context, op: Operation, body: Any) -> None:
    """On a deployment, a generated bulk delete of the caller's own sessions names an
    unknown id where it named `me` (the spec's own example does): deleting the suite's
    session costs a login to replace, and a full run's fuzzing spent 4 of them (5 minutes
    of the 4-per-5-minutes budget). The mock, where logins are free, still gets `me`."""
    if ctx.target.is_mock or not (op.deletes_sessions and op.is_self) or not isinstance(body, dict):
        return
    ids = body.get("ids")
    if isinstance(ids, list):
        body["ids"] = [UNKNOWN_SID if item == "me" else item for item in ids]


def _send(ctx: Context, op: Operation, case: Any, token: str | None) -> tuple[Any, Exchange]:
    """Send a generated request as the suite sends its own: paced on a deployment (backing
    off on 429), from a fresh address on the mock, recorded and learnt from."""
    client = ctx.client
    if token is not None:
        case.headers = {**(case.headers or {}), "Authorization": token}
    extra = {"X-Forwarded-For": client.fresh_ip()} if client.rotate_ips else {}
    body = case.body if isinstance(case.body, dict) else None
    for _attempt in range(4):
        sent = None
        if not client.rotate_ips:
            sent = client.pace(op.label, token, body, path=case.formatted_path)
        started = time.monotonic()
        response = case.call(base_url=client.base_url, headers=extra, session=client.session)
        client.ledger.add("requests", time.monotonic() - started)
        client.ledger.sent[token_claims(token).get("sub") or "anonymous"] += 1
        exchange = _exchange(response, client.redactor)
        client.redactor.learn(exchange.text)
        client.learn(
            token,
            response.status_code,
            route=op.label,
            body=body,
            headers=exchange.headers,
            code=exchange.code,
            sent=sent,
            path=case.formatted_path,
        )
        if response.status_code != 429 or client.rotate_ips:
            break
        reset = response.headers.get("RateLimit-Reset", ["1"])
        value = reset[0] if isinstance(reset, list) else reset
        wait = float(value) + 0.1 if str(value).isdigit() else 1.0
        if wait > 5:
            progress(f"rate limited during generated requests; waiting {wait:.0f}s")
        client.rate_limited.append(exchange)
        client.waited += wait
        client.pause(wait, "429 back-off")
    return response, exchange


def _judge(
    ctx: Context, op: Operation, mode: str, case: Any, response: Any, exchange: Exchange
) -> None:
    """Judge a generated request's answer by Schemathesis' checks and the suite's response
    checks (but the two Schemathesis already covers), as `fuzz.<mode>`.

    A path parameter outside its pattern is an unknown path; the spec lists that 404
    INVALID_ENDPOINT_ERROR on each operation with path parameters, so every answer is
    judged by the spec alone."""
    check_id = f"fuzz.{mode}"
    try:
        case.validate_response(response, checks=_checks_for(mode, exchange))
    except FailureGroup as group:
        problems = "; ".join(_whole(failure) for failure in group.exceptions)
        raise CheckFailure(
            check_id,
            str(op),
            f"a generated {mode} request is answered as the spec says ({problems})",
            "a response the spec allows",
            exchange.summary(),
            exchange.curl(),
        ) from None
    covered = ("schema.status", "schema.body")
    for chk in all_checks():
        if chk.kind != "response" or chk.id in covered:
            continue
        try:
            chk.func(ctx, op, exchange)
        except CheckFailure as failure:
            raise CheckFailure(
                check_id,
                str(op),
                f"a generated {mode} request: {failure.check_id}: {failure.rule}",
                failure.expected,
                failure.actual,
                failure.curl,
            ) from None


def _checks_for(mode: str, exchange: Exchange) -> list[Any]:
    checks = SCHEMATHESIS_CHECKS[mode]
    if exchange.status == 503 and exchange.code == "SERVICE_UNAVAILABLE_ERROR":
        # A kill switch someone else turned on: documented, not a server error.
        checks = [check for check in checks if check is not not_a_server_error]
    return checks


def _whole(failure: Any) -> str:
    """Schemathesis' title and its whole message on one line: the message's later lines
    carry the details (e.g. which headers are missing), so none may be dropped."""
    lines = [line.strip() for line in str(failure.message).splitlines() if line.strip()]
    return ": ".join([failure.title, " ".join(lines)]) if lines else str(failure.title)
