"""Response rules (status, content type, body schema, headers, error codes) on each
operation's representative requests."""

from conformance.cases import Case, run_case
from conformance.context import Context


def test_response(conformance_context: Context, response_case: Case) -> None:
    run_case(conformance_context, response_case)
