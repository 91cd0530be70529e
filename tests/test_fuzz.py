"""Schemathesis fuzzes the mock in-process: generated valid and invalid requests for every
operation, with every check and strict response validation on. The budget is small in
CI; ``FUZZ_EXAMPLES=2000 pytest tests/test_fuzz.py`` is the deeper profile."""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from mockserver.app import create_app
from mockserver.clock import Clock
from mockserver.secondfactor import totp_code
from mockserver.seed import CAROL_TOTP_SECRET
from mockserver.spec import load_document, load_spec

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
SCHEMA = schemathesis.openapi.from_dict(load_document())
# Negative data needs something to make invalid: a parameter or a body.
OPERATIONS = [
    (op.method, op.path, mode)
    for op in load_spec().operations.values()
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE or op.has_body or op.query_params or "{" in op.path
]


class Fuzzed:
    """One strict mock for the module; tokens renewed whenever a case revoked them."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.clock.freeze(True)
        self.app = create_app({"STRICT_RESPONSES": True, "CLOCK": self.clock})
        self.state = self.app.extensions["cumulonimbus"]
        self.tokens: dict[str, str] = {}

    def token(self, staff: bool) -> str:
        name = "carol" if staff else "alice"
        token = self.tokens.get(name)
        if token is None or self.state.backend.authenticate(token) is None:
            client = self.app.test_client()
            body = client.post("/api/login", json={"username": name, "password": "password"}).json
            if staff:
                code = totp_code(CAROL_TOTP_SECRET, self.clock.now())
                answer = {"token": body["token"], "type": "totp", "code": code}
                body = client.post("/api/login", json={"2fa": answer}).json
            token = self.tokens[name] = body["token"]
        return token

    def before_case(self) -> None:
        # Each case starts from calm state: no buckets, no switches, time moved on.
        self.clock.advance(2)
        self.state.backend.limiter.reset()
        self.state.backend.set_all_kill_switches(False)


@pytest.fixture(scope="module")
def fuzzed() -> Fuzzed:
    return Fuzzed()


@pytest.mark.parametrize(
    ("method", "path", "mode"), OPERATIONS, ids=[f"{m.value}-{x} {p}" for x, p, m in OPERATIONS]
)
def test_fuzz(fuzzed: Fuzzed, method: str, path: str, mode: GenerationMode) -> None:
    operation = SCHEMA[path][method]
    spec_op = next(
        o for o in fuzzed.state.spec.operations.values() if (o.method, o.path) == (method, path)
    )
    checks = [*CHECKS, negative_data_rejection] if mode is GenerationMode.NEGATIVE else CHECKS

    @given(case=operation.as_strategy(generation_mode=mode), authed=st.booleans())
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any, authed: bool) -> None:
        fuzzed.before_case()
        if authed and spec_op.authentication == "required":
            case.headers = {
                **(case.headers or {}),
                "Authorization": fuzzed.token(spec_op.staff_only),
            }
        if case.query:
            # The API ignores unknown query parameters (the spec says so); drop them so
            # that Schemathesis judges the case by what the API reads.
            case.query = {k: v for k, v in case.query.items() if k in spec_op.query_params}
        case.call_and_validate(app=fuzzed.app, checks=checks)
        assert not fuzzed.state.validator.violations, fuzzed.state.validator.violations

    run()
