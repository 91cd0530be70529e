"""The suite's pytest plugin: the target (connected once), parametrisation of the checks
from the spec, and the run object that carries the run's state through pytest's hooks.
Cases live in `cases.py`, known deviations in `deviations.py`, the summary table and the
reports in `report.py`, redaction of secrets in `redact.py`.

    pytest conformance --base-url http://127.0.0.1:8000/api
    cumulonimbus-conformance --base-url https://example.org/api --cumulonimbus-report report.md

Its options are declared by ``pytest_cumulonimbus`` (the entry point every install
registers); this plugin is registered only where the suite runs, by ``conftest.py``.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

from conformance import deviations as known
from conformance import redact
from conformance.cases import CASE_FIXTURES, cases, item_identity
from conformance.deviations import KnownDeviations
from conformance.failures import CheckFailure
from conformance.redact import Redactor
from conformance.report import Outcome, Results, json_report, markdown_report, terminal_lines
from conformance.spec import Spec, load_spec
from conformance.target import Settings, Target, TargetError
from pytest_cumulonimbus import setting

if TYPE_CHECKING:
    from conformance.context import Context
    from conformance.plan import Plan

RUN = pytest.StashKey["ConformanceRun"]()


def settings_of(config: pytest.Config) -> Settings:
    return Settings(
        base_url=config.option.base_url or "",
        username=setting(config, "username"),
        password=setting(config, "password"),
        username_2=setting(config, "username-2"),
        password_2=setting(config, "password-2"),
        staff_username=setting(config, "staff-username"),
        staff_password=setting(config, "staff-password"),
        staff_totp_secret=setting(config, "staff-totp-secret"),
        staff_plain_username=setting(config, "staff-plain-username"),
        staff_plain_password=setting(config, "staff-plain-password"),
        banned_token=setting(config, "banned-token"),
        control_token=setting(config, "mock-token"),
        allow_kill_switches=setting(config, "allow-kill-switches"),
        run_slow=setting(config, "run-slow"),
        use_control=not setting(config, "no-control"),
        show_secrets=setting(config, "show-secrets"),
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "conformance(check, operation): a conformance check case")
    run = ConformanceRun(config)
    config.stash[RUN] = run
    config.pluginmanager.register(run, "cumulonimbus-conformance-run")
    _route_progress(config)


def _route_progress(config: pytest.Config) -> None:
    """Progress lines must reach the terminal while pytest captures the test's output."""
    from conformance import pacing

    def write(line: str) -> None:
        capman = config.pluginmanager.getplugin("capturemanager")
        reporter = config.pluginmanager.getplugin("terminalreporter")
        if capman is None or reporter is None:
            print(line, file=sys.stderr)
            return
        with capman.global_and_fixture_disabled():
            reporter.write_line(line)

    pacing.progress_to(write)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for name, kind in CASE_FIXTURES.items():
        if name in metafunc.fixturenames:
            found = list(cases(kind))
            metafunc.parametrize(name, found, ids=[c.id for c in found])


def _run_order(item: pytest.Item) -> tuple[bool, bool]:
    """Where a case goes in the run: cases that delete every session of a user last
    (each one revokes the sessions the others reuse, and on a deployment every session
    revived costs a login); before them, the cases that judge a used-up rate-limit window
    renews or that an expired challenge is refused, so that the whole run's other work
    fills the window or the challenge's lifetime instead of a wait."""
    from conformance.cases import Case

    params = getattr(getattr(item, "callspec", None), "params", {})
    found = [case for case in params.values() if isinstance(case, Case)]
    deletes_everything = any(
        case.op.deletes_sessions and case.op.path.endswith("/all") for case in found
    )
    late = any(case.variant in case.check.late for case in found)
    return deletes_everything, late


def _case_of(item: pytest.Item) -> Any:
    from conformance.cases import Case

    params = getattr(getattr(item, "callspec", None), "params", {})
    return next((case for case in params.values() if isinstance(case, Case)), None)


def _logins_of(item: pytest.Item, spec: Spec) -> int:
    """The logins the plan expects a case (or a fuzz case) to spend."""
    from conformance.plan import Plan

    plan = Plan(logins=0)
    case = _case_of(item)
    if case is not None:
        plan = Plan.of([case], spec, accounts=0)
    params = getattr(getattr(item, "callspec", None), "params", {})
    if "operation_id" in params and "mode" in params:
        plan.add_generated(spec.operation(params["operation_id"]), params["mode"])
    return plan.logins


def _spread_logins(items: list[pytest.Item]) -> list[pytest.Item]:
    """The cases that spend logins, spread evenly among the others of their group.

    A deployment lets 4 logins through per 5 minutes, and the run waits whenever a case
    needs a fifth: with the login cases side by side (all of one operation's checks come
    together) the run waited out window after window while everything else it had to do
    stood still. Spread out, that other work fills the windows."""
    spec = load_spec()

    def spends_logins(item: pytest.Item) -> bool:
        return _logins_of(item, spec) > 0

    spread: list[pytest.Item] = []
    start = 0
    for end in range(1, len(items) + 1):
        if end < len(items) and _run_order(items[end]) == _run_order(items[start]):
            continue
        group = items[start:end]
        logins = [item for item in group if spends_logins(item)]
        others = [item for item in group if not spends_logins(item)]
        if logins and others:
            step = len(others) / len(logins)
            merged: list[pytest.Item] = []
            for k, item in enumerate(logins):  # each in the middle of its share
                merged += others[round(k * step) : round((k + 0.5) * step)]
                merged.append(item)
                merged += others[round((k + 0.5) * step) : round((k + 1) * step)]
            group = merged
        spread += group
        start = end
    return spread


class ConformanceRun:
    """One run of the suite: its target, its results and known deviations, and the hooks
    that fill and report them. Registered as a plugin of its own by `pytest_configure`."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.target: Target | None = None
        self.context: Context | None = None
        self.results = Results()
        path = setting(config, "known-deviations")
        self.deviations = KnownDeviations(known.load(path) if path else [])
        self.redactor = self._redactor()
        self.started: float | None = None
        self.plan: Plan | None = None
        # What the route buckets had counted when the running case began.
        self._counted_before: Counter[str] = Counter()

    @property
    def settings(self) -> Settings:
        # Read when needed: pytest-base-url fills in base_url (ini, env) in its own configure.
        return settings_of(self.config)

    def _redactor(self) -> Redactor:
        """The secrets the user gave are known from the start; the target adds the rest."""
        s = self.settings
        redactor = Redactor(enabled=not s.show_secrets)
        redactor.add_password(s.password, redact.PASSWORD)
        redactor.add_password(s.password_2, redact.PASSWORD_2)
        redactor.add_password(s.staff_password, redact.STAFF_PASSWORD)
        redactor.add_token(s.staff_totp_secret, redact.STAFF_TOTP_SECRET)
        redactor.add_password(s.staff_plain_password, redact.STAFF_PLAIN_PASSWORD)
        redactor.add_token(s.banned_token, redact.TOKEN)
        redactor.add_token(s.control_token, redact.MOCK_TOKEN)
        return redactor

    # Collection -------------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        """Before `-k` deselects: what the run could judge, and what deviations cover;
        and the run's order (`_run_order`)."""
        items.sort(key=_run_order)
        for item in items:
            identity = item_identity(item)
            if identity is not None:
                self.results.collected[item.nodeid] = identity
                self.deviations.mark(item, *identity)

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        nodeids = {item.nodeid for item in items}
        self.results.deselected |= nodeids
        self.deviations.deselected |= nodeids

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """After deselection: connect to the target once, if any conformance case is left."""
        config = self.config
        if config.option.collectonly or not any(item_identity(i) for i in session.items):
            return
        if not config.option.base_url:
            raise pytest.UsageError(
                "the conformance suite needs the API's URL: "
                "--base-url http://host:port/api (or env PYTEST_BASE_URL)"
            )
        try:
            self.target = Target.connect(self.settings, load_spec(), redactor=self.redactor)
            examples = setting(self.config, "examples") or (10 if self.target.is_mock else 25)
            self.target.settings_examples = examples
        except TargetError as exc:
            pytest.exit(f"conformance: cannot judge {config.option.base_url}: {exc}", returncode=3)
        self.started = time.monotonic()
        if not self.target.is_mock:
            # Only a deployment's logins are scarce; on the mock each case starts afresh
            # and keeps the order it was written in.
            session.items[:] = _spread_logins(session.items)
            self._announce_plan(session)

    def _announce_plan(self, session: pytest.Session) -> None:
        """Say up front what the run will spend, so a long run is expected, not a hang."""
        from conformance.cases import Case
        from conformance.pacing import progress
        from conformance.plan import Plan

        assert self.target is not None
        selected, generated = [], []
        for item in session.items:
            params = getattr(getattr(item, "callspec", None), "params", {})
            selected += [v for v in params.values() if isinstance(v, Case)]
            if "operation_id" in params and "mode" in params:
                generated.append((params["operation_id"], params["mode"]))
        roles = ("user", "target", "staff", "staff-plain")
        accounts = len({a.username for r in roles if (a := self.target.account(r)) is not None})
        spec = self.target.spec
        self.plan = Plan.of(selected, spec, accounts=accounts)
        for operation_id, mode in generated:
            self.plan.add_generated(spec.operation(operation_id), mode)
        progress(f"plan: {self.plan.line()}")

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool | None:
        """On a deployment, pytest's loop with one change: a case that needs more logins
        than the budget has left waits while the next cases of its group that need none
        go first (`schedule.next_index`). Elsewhere, pytest's own loop."""
        target = self.target
        if target is None or target.is_mock or session.config.option.collectonly:
            return None
        if session.testsfailed and not session.config.option.continue_on_collection_errors:
            raise session.Interrupted(f"{session.testsfailed} errors during collection")
        from conformance import schedule

        spec, items = target.spec, session.items
        known: dict[str, int] = {}

        def logins(item: pytest.Item) -> int:
            if item.nodeid not in known:
                known[item.nodeid] = _logins_of(item, spec)
            return known[item.nodeid]

        for index, item in enumerate(items):
            # Which case follows is decided now, as pytest must know it before this one
            # runs: the budget as it stands less what this case is expected to spend.
            room = self._login_room() - logins(item)
            after = schedule.next_index(
                items, index + 1, group=_run_order, logins=logins, room=room
            )
            if after != index + 1:
                items.insert(index + 1, items.pop(after))
            nextitem = items[index + 1] if index + 1 < len(items) else None
            item.config.hook.pytest_runtest_protocol(item=item, nextitem=nextitem)
            if session.shouldfail:
                raise session.Failed(session.shouldfail)
            if session.shouldstop:
                raise session.Interrupted(session.shouldstop)
        return True

    def _login_room(self) -> int:
        """Logins the client's address may still make in the live window, as the server
        last stated it (a whole budget when no window is live)."""
        assert self.target is not None
        client = self.target.client
        login = self.target.spec.operation("login")
        limiter = login.rate_limit
        if limiter is None:
            return 1 << 30
        state = client.live_bucket(client.bucket_key(login.label, None, login.path))
        return limiter.limit if state is None else state.remaining

    def target_or_skip(self) -> Target:
        if self.target is None:
            pytest.skip("no conformance target (collect only?)")
        return self.target

    def context_or_skip(self) -> Context:
        from conformance.context import Context

        if self.context is None:
            self.context = Context(self.target_or_skip())
        return self.context

    # Results ----------------------------------------------------------------------------

    def pytest_runtest_logstart(self, nodeid: str, location: object) -> None:
        if self.target is not None and not self.target.is_mock:
            self._counted_before = Counter(self.target.client.ledger.counted)

    def _spent(self) -> dict[str, int]:
        """What the running case has counted in route buckets so far (deployments)."""
        if self.target is None or self.target.is_mock:
            return {}
        now = self.target.client.ledger.counted
        return {
            k: n - self._counted_before[k] for k, n in now.items() if n > self._counted_before[k]
        }

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
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
        identity = item_identity(item)
        if identity is not None:
            report.user_properties.append(("conformance_check", identity[0]))
            report.user_properties.append(("conformance_operation", identity[1]))
            if call.when == "call" and (spent := self._spent()):
                report.user_properties.append(("conformance_spent", spent))
        self._redact(report)
        return report

    def _redact(self, report: pytest.TestReport) -> None:
        """Whatever leaves the run (terminal, junit, reports) passes here first."""
        text = self.redactor.text
        longrepr = report.longrepr
        if isinstance(longrepr, tuple):  # a skip: (path, line, reason)
            report.longrepr = (longrepr[0], longrepr[1], text(longrepr[2]))
        elif longrepr is not None:
            shown = str(longrepr)
            if text(shown) != shown:  # keep pytest's own rendering when nothing is secret
                report.longrepr = text(shown)
        report.sections = [(title, text(content)) for title, content in report.sections]
        report.user_properties = [
            (name, self.redactor.value(value)) for name, value in report.user_properties
        ]

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = dict(report.user_properties)
        check_id = props.get("conformance_check")
        if check_id is None:
            return
        if report.when != "call" and not (report.failed or report.skipped):
            return
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
        spent = props.get("conformance_spent")
        self.results.record(
            Outcome(
                str(check_id),
                str(props["conformance_operation"]),
                report.nodeid,
                outcome,
                message,
                failure if isinstance(failure, dict) else None,
                spent if isinstance(spent, dict) else {},
            )
        )
        self.deviations.record(report.nodeid, outcome)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        strict = setting(self.config, "strict-deviations")
        if strict and self.deviations.no_longer_happening() and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.results.outcomes:
            return
        tr = terminalreporter
        tr.write_sep("=", "conformance summary")
        target = self.target
        if target is not None and self.started is not None and not target.is_mock:
            client = target.client
            tr.write_line(
                f"took {(time.monotonic() - self.started) / 60:.1f} minutes, "
                f"{client.waited:.0f}s of them waiting for budgets; "
                f"{len(client.rate_limited)} 429 answer(s) the plan did not foresee"
            )
            tr.write_line(client.ledger.line())
            planned = f" (plan: {self.plan.spent_line()})" if self.plan is not None else ""
            tr.write_line(client.ledger.counted_line() + planned)
            if client.rate_limited:
                # Which answers they were, so that the plan (or the pacing) can be fixed.
                seen = Counter(
                    f"{e.method} {urlsplit(e.url).path} ({e.headers.get('RateLimit-Reason')})"
                    for e in client.rate_limited
                )
                tr.write_line(
                    "unforeseen 429s: " + ", ".join(f"{k} x{n}" for k, n in seen.most_common())
                )
        for line in terminal_lines(self.results, self.deviations, self.target):
            tr.write_line(line)
        gone = self.deviations.no_longer_happening()
        if gone and setting(self.config, "strict-deviations"):
            tr.write_line(
                f"{len(gone)} known deviation(s) no longer happen: the run fails "
                "(strict deviations); remove them from the file",
                red=True,
            )
        report = setting(self.config, "report")
        if report:
            Path(report).write_text(
                markdown_report(self.results, self.deviations, self.target), encoding="utf-8"
            )
            tr.write_line(f"conformance report written to {report}")
        json_path = setting(self.config, "json-report")
        if json_path:
            body = json_report(self.results, self.deviations, self.target)
            Path(json_path).write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
            tr.write_line(f"conformance JSON report written to {json_path}")

    def pytest_unconfigure(self) -> None:
        if self.context is not None:
            try:
                self.context.cleanup()
            except Exception as exc:  # clean-up must never hide the results
                print(f"[conformance] clean-up failed: {exc}")
        from conformance import pacing

        pacing.progress_to(None)  # nothing of the run outlives it


# Fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def conformance_target(request: pytest.FixtureRequest) -> Target:
    return request.config.stash[RUN].target_or_skip()


@pytest.fixture(scope="session")
def conformance_context(request: pytest.FixtureRequest) -> Context:
    return request.config.stash[RUN].context_or_skip()
