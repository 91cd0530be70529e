"""The pytest plugin: options, the target (connected once), parametrisation of the checks
from the spec, known deviations, and the summary table / Markdown report.

    pytest conformance --base-url http://127.0.0.1:8000/api
    pytest --pyargs conformance --base-url https://example.org/api --conformance-report report.md
"""

from __future__ import annotations

import fnmatch
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from conformance.client import TargetUnreachable
from conformance.registry import Check, CheckFailure, all_checks
from conformance.spec import Operation, load_spec
from conformance.target import Settings, Target, TargetError

OPTIONS = [
    # (option, dest, env, help)
    ("--cumulonimbus-username", "cn_username", "CUMULONIMBUS_USERNAME", "an ordinary user's name"),
    (
        "--cumulonimbus-password",
        "cn_password",
        "CUMULONIMBUS_PASSWORD",
        "the ordinary user's password",
    ),
    (
        "--cumulonimbus-staff-username",
        "cn_staff_username",
        "CUMULONIMBUS_STAFF_USERNAME",
        "a staff user's name",
    ),
    (
        "--cumulonimbus-staff-password",
        "cn_staff_password",
        "CUMULONIMBUS_STAFF_PASSWORD",
        "the staff password",
    ),
    (
        "--cumulonimbus-staff-totp-secret",
        "cn_staff_totp",
        "CUMULONIMBUS_STAFF_TOTP_SECRET",
        "the staff user's TOTP secret (base32)",
    ),
    (
        "--mock-control-token",
        "cn_control_token",
        "CUMULONIMBUS_MOCK_TOKEN",
        "the mock's --control-token",
    ),
]
STATE = pytest.StashKey["Run"]()
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


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("cumulonimbus", "Cumulonimbus session API conformance")
    for option, dest, env, text in OPTIONS:
        group.addoption(option, dest=dest, default=os.environ.get(env), help=f"{text} (env {env})")
    group.addoption(
        "--no-control",
        action="store_true",
        default=False,
        help="do not use a mock control API even if the target has one",
    )
    group.addoption(
        "--allow-kill-switches",
        action="store_true",
        default=_env_flag("CUMULONIMBUS_ALLOW_KILL_SWITCHES"),
        help="run checks that flip kill switches on a real deployment (they affect every user)",
    )
    group.addoption(
        "--run-slow",
        action="store_true",
        default=_env_flag("CUMULONIMBUS_RUN_SLOW"),
        help="run rate-limit checks that must wait for windows to end on a real deployment",
    )
    group.addoption(
        "--conformance-report",
        dest="conformance_report",
        metavar="FILE",
        default=os.environ.get("CUMULONIMBUS_REPORT"),
        help="write a Markdown report to FILE",
    )
    group.addoption(
        "--known-deviations",
        dest="known_deviations",
        metavar="FILE",
        default=os.environ.get("CUMULONIMBUS_KNOWN_DEVIATIONS"),
        help="YAML list of {check, operation, reason}: expected failures",
    )
    group.addoption(
        "--conformance-examples",
        dest="conformance_examples",
        type=int,
        default=int(os.environ.get("CUMULONIMBUS_EXAMPLES", "0") or 0),
        help="generated requests per operation and mode (default: 10 on the mock, 25 elsewhere)",
    )


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes", "on")


@dataclass
class Deviation:
    check: str
    operation: str
    reason: str
    matched: list[str] = field(default_factory=list)
    happened: bool = False


@dataclass
class Outcome:
    check: str
    operation: str
    nodeid: str
    outcome: str  # passed, failed, skipped, xfailed, xpassed
    message: str = ""
    failure: dict[str, Any] | None = None


@dataclass
class Run:
    config: pytest.Config
    target: Target | None = None
    error: str | None = None
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    deviations: list[Deviation] = field(default_factory=list)
    context: Any = None

    def settings(self) -> Settings:
        o = self.config.option
        return Settings(
            base_url=o.base_url or "",
            username=o.cn_username,
            password=o.cn_password,
            staff_username=o.cn_staff_username,
            staff_password=o.cn_staff_password,
            staff_totp_secret=o.cn_staff_totp,
            control_token=o.cn_control_token,
            allow_kill_switches=o.allow_kill_switches,
            run_slow=o.run_slow,
            use_control=not o.no_control,
        )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "conformance(check, operation): a conformance check case")
    run = Run(config)
    path = config.option.known_deviations
    if path:
        entries = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or []
        if not isinstance(entries, list):
            raise pytest.UsageError(f"{path}: expected a YAML list of {{check, operation, reason}}")
        for entry in entries:
            if not isinstance(entry, dict) or not {"check", "operation"} <= set(entry):
                raise pytest.UsageError(f"{path}: each entry needs check and operation: {entry!r}")
            run.deviations.append(
                Deviation(
                    str(entry["check"]),
                    str(entry["operation"]),
                    str(entry.get("reason", "known deviation")),
                )
            )
    config.stash[STATE] = run
    _route_progress(config)


def _route_progress(config: pytest.Config) -> None:
    """Progress lines must reach the terminal while pytest captures the test's output."""
    from conformance import client

    def write(line: str) -> None:
        capman = config.pluginmanager.getplugin("capturemanager")
        reporter = config.pluginmanager.getplugin("terminalreporter")
        if capman is None or reporter is None:
            print(line, file=sys.stderr)
            return
        with capman.global_and_fixture_disabled():
            reporter.write_line(line)

    client.PROGRESS_SINK[0] = write


# Parametrisation ------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    check: Check
    op: Operation
    variant: Any

    @property
    def id(self) -> str:
        suffix = "" if self.variant is None else f"-{self.variant}"
        return f"{self.check.id}-{self.op.id}{suffix}"


def cases(kind: str) -> Iterator[Case]:
    spec = load_spec()
    for chk in all_checks():
        if chk.kind != kind:
            continue
        for op in spec.operations:
            if chk.applies(op):
                for variant in chk.variants(op):
                    yield Case(chk, op, variant)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for name, kind in (("policy_case", "scenario"), ("response_case", "response")):
        if name in metafunc.fixturenames:
            found = list(cases(kind))
            metafunc.parametrize(name, found, ids=[c.id for c in found])


def _item_identity(item: pytest.Item) -> tuple[str, str] | None:
    marker = item.get_closest_marker("conformance")
    if marker is not None:
        return marker.args[0], marker.args[1]
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None
    for name in ("policy_case", "response_case"):
        case = callspec.params.get(name)
        if isinstance(case, Case):
            return case.check.id, case.op.id
    return None


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    run: Run = config.stash[STATE]
    ours = [item for item in items if _item_identity(item) is not None]
    if not ours:
        return
    for item in ours:
        identity = _item_identity(item)
        assert identity is not None
        check_id, op_id = identity
        for deviation in run.deviations:
            if fnmatch.fnmatchcase(check_id, deviation.check) and fnmatch.fnmatchcase(
                op_id, deviation.operation
            ):
                deviation.matched.append(item.nodeid)
                item.add_marker(
                    pytest.mark.xfail(reason=f"known deviation: {deviation.reason}", strict=False)
                )
    if config.option.collectonly:
        return
    if not config.option.base_url:
        raise pytest.UsageError(
            "the conformance suite needs the API's URL: "
            "--base-url http://host:port/api (or env PYTEST_BASE_URL)"
        )
    try:
        run.target = Target.connect(run.settings(), load_spec())
        examples = config.option.conformance_examples or (10 if run.target.is_mock else 25)
        run.target.settings_examples = examples
    except TargetError as exc:
        pytest.exit(f"conformance: cannot judge {config.option.base_url}: {exc}", returncode=3)


def target_of(config: pytest.Config) -> Target:
    run: Run = config.stash[STATE]
    if run.target is None:
        pytest.skip("no conformance target (collect only?)")
    return run.target


def context_of(config: pytest.Config) -> Any:
    from conformance.context import Context

    run: Run = config.stash[STATE]
    if run.context is None:
        run.context = Context(target_of(config))
    return run.context


def pytest_unconfigure(config: pytest.Config) -> None:
    run = config.stash.get(STATE, None)
    if run is not None and run.context is not None:
        try:
            run.context.cleanup()
        except Exception as exc:  # clean-up must never hide the results
            print(f"[conformance] clean-up failed: {exc}")


# Results ----------------------------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if call.excinfo is not None:
        value = call.excinfo.value
        details = (
            value.as_dict()
            if isinstance(value, CheckFailure)
            else getattr(value, "conformance", None)
        )
        if details:
            report.user_properties.append(("conformance_failure", details))
    identity = _item_identity(item)
    if identity is not None:
        report.user_properties.append(("conformance_check", identity[0]))
        report.user_properties.append(("conformance_operation", identity[1]))
    return report


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    props = dict(report.user_properties)
    check_id = props.get("conformance_check")
    if check_id is None:
        return
    if report.when != "call" and not (report.failed or report.skipped):
        return
    config = _CONFIG.get("config")
    if config is None:
        return
    run: Run = config.stash[STATE]
    if hasattr(report, "wasxfail"):
        outcome = "xpassed" if report.passed else "xfailed"
    else:
        outcome = report.outcome
    message = ""
    if report.failed:
        message = str(report.longrepr)
    elif report.skipped and isinstance(report.longrepr, tuple):
        message = str(report.longrepr[2])
    failure = props.get("conformance_failure")
    run.outcomes[report.nodeid] = Outcome(
        str(check_id),
        str(props["conformance_operation"]),
        report.nodeid,
        outcome,
        message,
        failure if isinstance(failure, dict) else None,
    )
    for deviation in run.deviations:
        if report.nodeid in deviation.matched and outcome == "xfailed":
            deviation.happened = True


_CONFIG: dict[str, pytest.Config] = {}


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    _CONFIG["config"] = session.config


def _cell(outcomes: list[Outcome]) -> str:
    if not outcomes:
        return "-"
    failed = sum(o.outcome == "failed" for o in outcomes)
    xfailed = sum(o.outcome == "xfailed" for o in outcomes)
    passed = sum(o.outcome in ("passed", "xpassed") for o in outcomes)
    if failed:
        return f"FAIL {failed}"
    if xfailed:
        return f"xfail {xfailed}"
    if passed:
        return "pass"
    return "skip"


def summary(run: Run) -> tuple[list[str], list[list[str]]]:
    spec = load_spec()
    by: dict[tuple[str, str], list[Outcome]] = {}
    for outcome in run.outcomes.values():
        group = outcome.check.split(".", 1)[0]
        by.setdefault((outcome.operation, group), []).append(outcome)
    groups = [g for g in GROUP_ORDER if any(k[1] == g for k in by)]
    groups += sorted({k[1] for k in by} - set(groups))
    rows = []
    for op in spec.operations:
        rows.append([op.id, *[_cell(by.get((op.id, g), [])) for g in groups]])
    return ["operation", *groups], rows


def _table(header: list[str], rows: list[list[str]], markdown: bool) -> list[str]:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return lines
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True))
        for row in [header, *rows]
    ]


def _stale_deviations(run: Run) -> list[tuple[Deviation, str]]:
    """Listed deviations to drop: one whose cases now pass, or one that matched nothing."""
    stale = []
    for deviation in run.deviations:
        seen = [run.outcomes[n] for n in deviation.matched if n in run.outcomes]
        if deviation.happened:
            continue
        if any(o.outcome == "xpassed" for o in seen):
            stale.append((deviation, "no longer happens"))
        elif not seen:
            stale.append((deviation, "matches no check case that ran"))
    return stale


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    run: Run = config.stash[STATE]
    if not run.outcomes:
        return
    header, rows = summary(run)
    tr = terminalreporter
    tr.write_sep("=", "conformance summary")
    if run.target is not None:
        kind = "mock (control API)" if run.target.is_mock else "deployment"
        tr.write_line(
            f"target: {run.target.settings.base_url} ({kind}, version {run.target.version})"
        )
    for line in _table(header, rows, markdown=False):
        tr.write_line(line)
    failures = [o for o in run.outcomes.values() if o.outcome == "failed"]
    tr.write_line(
        f"{len(failures)} failed check case(s); ids: "
        + ", ".join(sorted({f"{o.check}@{o.operation}" for o in failures}))
        if failures
        else "no failed check cases"
    )
    for deviation, why in _stale_deviations(run):
        tr.write_line(
            f"known deviation {why}: {deviation.check} on {deviation.operation} "
            f"({deviation.reason})"
        )
    path = config.option.conformance_report
    if path:
        Path(path).write_text(markdown_report(run), encoding="utf-8")
        tr.write_line(f"conformance report written to {path}")


def markdown_report(run: Run) -> str:
    header, rows = summary(run)
    counts: dict[str, int] = {}
    for outcome in run.outcomes.values():
        counts[outcome.outcome] = counts.get(outcome.outcome, 0) + 1
    lines = ["# Cumulonimbus session API conformance report", ""]
    if run.target is not None:
        kind = "mock with control API" if run.target.is_mock else "deployment"
        lines += [
            f"Target: `{run.target.settings.base_url}` ({kind}, API version {run.target.version})",
            "",
        ]
    lines += ["Check cases: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())), ""]
    lines += ["## Summary (operations x rule groups)", ""]
    lines += _table(header, rows, markdown=True)
    failures = [o for o in run.outcomes.values() if o.outcome == "failed"]
    lines += ["", "## Failures", ""]
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
            text = outcome.message.strip()
            lines += ["```", text[-3000:], "```", ""]
    xfails = [o for o in run.outcomes.values() if o.outcome == "xfailed"]
    stale = _stale_deviations(run)
    if run.deviations:
        lines += ["## Known deviations", ""]
        for outcome in xfails:
            lines.append(f"- still happens: `{outcome.check}` on `{outcome.operation}`")
        for deviation, why in stale:
            lines.append(
                f"- **{why}**: `{deviation.check}` on `{deviation.operation}` ({deviation.reason})"
            )
        lines.append("")
    skipped = [o for o in run.outcomes.values() if o.outcome == "skipped"]
    if skipped:
        lines += ["## Skipped", ""]
        reasons: dict[str, int] = {}
        for outcome in skipped:
            reasons[outcome.message] = reasons.get(outcome.message, 0) + 1
        lines += [f"- {n} x {reason}" for reason, n in sorted(reasons.items())]
    return "\n".join(lines) + "\n"


# Fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def conformance_target(request: pytest.FixtureRequest) -> Target:
    return target_of(request.config)


@pytest.fixture(scope="session")
def conformance_context(request: pytest.FixtureRequest) -> Any:
    return context_of(request.config)


def run_case(ctx: Any, case: Case) -> None:
    """Run one check on one operation, turning its failure into a readable test failure."""
    from conformance.context import Context

    assert isinstance(ctx, Context)
    target = ctx.target
    chk, op = case.check, case.op
    if not target.is_mock:
        if chk.slow and not target.settings.run_slow:
            pytest.skip("waits for rate-limit windows on a real deployment: pass --run-slow")
        if chk.kill_switches and not target.settings.allow_kill_switches:
            pytest.skip("flips kill switches, which affects every user: pass --allow-kill-switches")
    flips = flips_switches(op)
    before = ctx.switch_states() if flips else {}
    try:
        if chk.kind == "response":
            from conformance.response_checks import probes

            for _label, exchange in probes(ctx, op):
                chk.func(ctx, op, exchange)
        else:
            chk.func(ctx, op, case.variant)
    except (TargetUnreachable, requests.ConnectionError) as lost:
        target_lost(lost)
    except CheckFailure as failure:
        # The rule, the evidence and the curl line say it all; a traceback would not help.
        exc = pytest.fail.Exception(failure.render(), pytrace=False)
        exc.conformance = failure.as_dict()  # type: ignore[attr-defined]
        raise exc from None
    finally:
        if flips:
            ctx.restore_switches(before)


def target_lost(exc: Exception) -> None:
    """The target stopped answering mid-run: one clear stop, not a failure per check."""
    pytest.exit(f"conformance: the target stopped answering: {exc}", returncode=3)


def run_case_errors(ctx: Any, op: Operation) -> None:
    """Skip an operation whose valid requests would flip kill switches on a real target."""
    if (
        flips_switches(op)
        and not ctx.target.is_mock
        and not ctx.target.settings.allow_kill_switches
    ):
        pytest.skip("flips kill switches, which affects every user: pass --allow-kill-switches")


def flips_switches(op: Operation) -> bool:
    """An operation that changes kill switches itself (on a real deployment: needs the flag)."""
    return op.path.startswith("/killswitches") and op.method != "GET"
