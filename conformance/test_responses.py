"""Response rules (status, content type, body schema, headers, error codes) on each
operation's representative requests."""

from typing import Any

from conformance.cases import Case, run_case


def test_response(conformance_context: Any, response_case: Case) -> None:
    run_case(conformance_context, response_case)
