"""What a run found, told three ways: the summary table on the terminal, a Markdown report
for people and a JSON report for machines. All three read the same `Results`::

    results.record(Outcome("scope.denied", "getSelfSessions", nodeid, "failed", text, failure))
    terminal_lines(results, deviations, target)
    markdown_report(results, deviations, target)
    json.dumps(json_report(results, deviations, target))

Every text here comes from test reports that the plugin has already redacted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from conformance.deviations import HAPPENS, KnownDeviations
from conformance.spec import load_spec

if TYPE_CHECKING:
    from conformance.target import Target

JSON_FORMAT = "cumulonimbus-conformance-report/1"
GROUP_ORDER = [
    "schema",
    "headers",
    "errors",
    "auth",
    "scope",
    "staff",
    "reverify",
    "killswitch",
    "ratelimit",
    "token",
    "paging",
    "bulk",
    "delete-all",
    "ids",
    "fuzz",
]
LEGEND = (
    "-: no check applies; deselected: not selected (-k, -m, --deselect); "
    "not run: selected, but the run ended first"
)


@dataclass
class Outcome:
    check: str
    operation: str
    nodeid: str
    outcome: str  # passed, failed, skipped, xfailed, xpassed
    message: str = ""
    failure: dict[str, Any] | None = None
    # On a deployment: answers it spent of each route bucket's budget ({"/login": 2}).
    spent: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Cell:
    """One operation x rule group: the worst outcome of its cases, or why there are none."""

    state: str  # pass, fail, xfail, skip, not-applicable, deselected, not-run
    count: int = 0

    @property
    def text(self) -> str:
        return {
            "fail": f"FAIL {self.count}",
            "xfail": f"xfail {self.count}",
            "not-applicable": "-",
            "not-run": "not run",
        }.get(self.state, self.state)


@dataclass
class Results:
    """Outcomes of the run's check cases, and which cases were collected and deselected."""

    outcomes: dict[str, Outcome] = field(default_factory=dict)
    # Node id -> (check, operation) of every conformance case collected, before `-k`.
    collected: dict[str, tuple[str, str]] = field(default_factory=dict)
    deselected: set[str] = field(default_factory=set)

    def record(self, outcome: Outcome) -> None:
        self.outcomes[outcome.nodeid] = outcome

    def with_outcome(self, *names: str) -> list[Outcome]:
        return [o for o in self.outcomes.values() if o.outcome in names]

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for outcome in self.outcomes.values():
            counts[outcome.outcome] = counts.get(outcome.outcome, 0) + 1
        return dict(sorted(counts.items()))

    def groups(self) -> list[str]:
        """The table's columns: the rule groups of which some case ran."""
        seen = {group_of(o.check) for o in self.outcomes.values()}
        return [g for g in GROUP_ORDER if g in seen] + sorted(seen - set(GROUP_ORDER))

    def cell(self, operation: str, group: str) -> Cell:
        ran = [
            o
            for o in self.outcomes.values()
            if o.operation == operation and group_of(o.check) == group
        ]
        if ran:
            return _worst(ran)
        cases = [
            nodeid
            for nodeid, (check, op) in self.collected.items()
            if op == operation and group_of(check) == group
        ]
        if not cases:
            return Cell("not-applicable")
        if all(nodeid in self.deselected for nodeid in cases):
            return Cell("deselected")
        return Cell("not-run")

    def table(self) -> tuple[list[str], list[tuple[str, list[Cell]]]]:
        groups = self.groups()
        rows = [(op.id, [self.cell(op.id, g) for g in groups]) for op in load_spec().operations]
        return groups, rows


def group_of(check_id: str) -> str:
    return check_id.split(".", 1)[0]


def _worst(outcomes: list[Outcome]) -> Cell:
    failed = sum(o.outcome == "failed" for o in outcomes)
    xfailed = sum(o.outcome == "xfailed" for o in outcomes)
    if failed:
        return Cell("fail", failed)
    if xfailed:
        return Cell("xfail", xfailed)
    if any(o.outcome in ("passed", "xpassed") for o in outcomes):
        return Cell("pass")
    return Cell("skip")


def _text_rows(results: Results) -> tuple[list[str], list[list[str]]]:
    groups, rows = results.table()
    return ["operation", *groups], [[op, *(c.text for c in cells)] for op, cells in rows]


def _table(header: list[str], rows: list[list[str]], markdown: bool) -> list[str]:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return lines
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]


def _target_kind(target: Target) -> str:
    return "mock" if target.is_mock else "deployment"


# Terminal ---------------------------------------------------------------------------------


def terminal_lines(
    results: Results, deviations: KnownDeviations, target: Target | None
) -> list[str]:
    lines = []
    if target is not None:
        kind = "mock (control API)" if target.is_mock else "deployment"
        lines.append(f"target: {target.settings.base_url} ({kind}, version {target.version})")
    lines += _table(*_text_rows(results), markdown=False)
    lines.append(f"({LEGEND})")
    failures = results.with_outcome("failed")
    lines.append(
        f"{len(failures)} failed check case(s); ids: "
        + ", ".join(sorted({f"{o.check}@{o.operation}" for o in failures}))
        if failures
        else "no failed check cases"
    )
    for deviation, why in deviations.stale():
        lines.append(
            f"known deviation {why}: {deviation.check} on {deviation.operation} "
            f"({deviation.reason})"
        )
    return lines


# Markdown ---------------------------------------------------------------------------------


def markdown_report(results: Results, deviations: KnownDeviations, target: Target | None) -> str:
    lines = ["# Cumulonimbus session API conformance report", ""]
    if target is not None:
        kind = "mock with control API" if target.is_mock else "deployment"
        lines += [
            f"Target: `{target.settings.base_url}` ({kind}, API version {target.version})",
            "",
        ]
    lines += ["Check cases: " + ", ".join(f"{v} {k}" for k, v in results.counts().items()), ""]
    lines += ["## Summary (operations x rule groups)", ""]
    lines += _table(*_text_rows(results), markdown=True)
    lines += ["", f"_{LEGEND}_", ""]
    lines += ["## Failures", ""]
    failures = results.with_outcome("failed")
    if not failures:
        lines.append("None.")
    for outcome in failures:
        lines += [
            f"### `{outcome.check}` on `{outcome.operation}`",
            "",
            f"Test: `{outcome.nodeid}`",
            "",
        ]
        if outcome.failure:
            f = outcome.failure
            lines += [
                f"- rule: {f['rule']}",
                f"- expected: `{f['expected']}`",
                f"- actual: `{f['actual']}`",
                "",
                "```sh",
                f["curl"] or "",
                "```",
                "",
            ]
        else:
            lines += ["```", outcome.message.strip()[-3000:], "```", ""]
    if deviations.entries:
        lines += ["## Known deviations", ""]
        for outcome in results.with_outcome("xfailed"):
            lines.append(f"- {HAPPENS}: `{outcome.check}` on `{outcome.operation}`")
        stale = deviations.stale()
        for deviation, why in stale:
            lines.append(
                f"- **{why}**: `{deviation.check}` on `{deviation.operation}` ({deviation.reason})"
            )
        for deviation in deviations.entries:
            why = deviations.status(deviation)
            if why != HAPPENS and (deviation, why) not in stale:
                lines.append(
                    f"- {why}: `{deviation.check}` on `{deviation.operation}` ({deviation.reason})"
                )
        lines.append("")
    skipped = results.with_outcome("skipped")
    if skipped:
        lines += ["## Skipped", ""]
        reasons: dict[str, int] = {}
        for outcome in skipped:
            reasons[outcome.message] = reasons.get(outcome.message, 0) + 1
        lines += [f"- {n} x {reason}" for reason, n in sorted(reasons.items())]
    return "\n".join(lines) + "\n"


# JSON -------------------------------------------------------------------------------------


def json_report(
    results: Results, deviations: KnownDeviations, target: Target | None
) -> dict[str, Any]:
    """The run for machines; its shape is documented in conformance/README.md."""
    groups, rows = results.table()
    return {
        "format": JSON_FORMAT,
        "target": None
        if target is None
        else {
            "base_url": target.settings.base_url,
            "kind": _target_kind(target),
            "version": target.version,
        },
        "counts": results.counts(),
        "groups": groups,
        "summary": {
            op: {g: asdict(cell) for g, cell in zip(groups, cells, strict=True)}
            for op, cells in rows
        },
        "cases": [asdict(o) for o in results.outcomes.values()],
        "deviations": [
            {
                "check": d.check,
                "operation": d.operation,
                "reason": d.reason,
                "status": deviations.status(d),
                "cases": d.matched,
            }
            for d in deviations.entries
        ],
    }
