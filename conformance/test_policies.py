"""Each `x-` policy of each operation, one rule at a time (ids: check-operation-variant)."""

from typing import Any

from conformance.cases import Case, run_case


def test_policy(conformance_context: Any, policy_case: Case) -> None:
    run_case(conformance_context, policy_case)
