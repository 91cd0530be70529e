"""The suite's report of the traffic the proxy judged: its `Results` (one case per check and
operation judged, failed once per violation) written as the suite's Markdown report, or
its JSON one for a ``.json`` file. The report modules need pytest: imported only here.
"""

from __future__ import annotations

import json
from typing import Any

from .judging import Checker, iso_time


def report_results(checker: Checker) -> Any:
    """The traffic's verdicts as the suite's `Results`: one case per (check, operation)
    judged, failed once per violation."""
    from conformance.report import Outcome, Results

    results = Results()
    failed: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for item in checker.failed:
        operation = item["operationId"] or item["operation"]
        failed.setdefault((item["check"], operation), []).append(item)
    for check, operation in sorted(checker.judged | set(failed)):
        nodeid = f"traffic::{check}[{operation}]"
        results.collected[nodeid] = (check, operation)
        items = failed.get((check, operation))
        if not items:
            results.record(Outcome(check, operation, nodeid, "passed"))
            continue
        for n, item in enumerate(items, 1):
            failure = {k: item[k] for k in ("check", "operation", "rule", "expected", "actual")}
            failure["curl"] = item["curl"]
            results.record(
                Outcome(
                    check,
                    operation,
                    f"{nodeid}#{n} {item['request']} at {item['time']}",
                    "failed",
                    "",
                    failure,
                )
            )
    return results


def write_report(checker: Checker, path: str) -> None:
    """The suite's Markdown report (or its JSON one, for a `.json` file) of the traffic."""
    from conformance.deviations import KnownDeviations
    from conformance.report import json_report, markdown_report

    # No drain here: the caller has stopped the checker (Proxy.close), which waited once;
    # a second wait doubled the exit time when an exchange was still in flight.
    results = report_results(checker)
    deviations = KnownDeviations([])
    span = (
        f" from {iso_time(checker.first)} to {iso_time(checker.last)}"
        if checker.first and checker.last
        else ""
    )
    about = (
        f"Traffic through `cumulonimbus-mock proxy` to `{checker.upstream.base_url}`: "
        f"{checker.exchanges} exchange(s){span}."
    )
    if path.endswith(".json"):
        data = json_report(results, deviations, None)
        data["target"] = {"base_url": checker.upstream.base_url, "kind": "proxy", "version": None}
        data["traffic"] = {
            "exchanges": checker.exchanges,
            "from": checker.first,
            "to": checker.last,
        }
        text = json.dumps(data, indent=2) + "\n"
    else:
        title, *rest = markdown_report(results, deviations, None).split("\n", 1)
        text = "\n".join([title, "", about, *rest])
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
