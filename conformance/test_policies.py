"""Each `x-` policy of each operation, one rule at a time (ids: check-operation-variant)."""

from conformance.cases import Case, run_case
from conformance.context import Context


def test_policy(conformance_context: Context, policy_case: Case) -> None:
    run_case(conformance_context, policy_case)
