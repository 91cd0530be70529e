"""The pytest plugin that installing cumulonimbus-contract registers (entry point ``pytest11``).

It gives any project's tests the mock as fixtures, and the conformance suite its options::

    def test_expired_session_is_refused(cumulonimbus_mock):
        ...

It is a good neighbour in someone else's test run: every option starts with
``--cumulonimbus-`` (each with an ini setting ``cumulonimbus_*`` and, where it makes sense,
an environment variable), it is a top-level module of its own (so a project's own
``conformance`` or ``mockserver`` package does not stop it loading), and it imports
neither the mock nor the suite until a fixture or the suite asks for them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from mockserver.testing import MockServer

PREFIX = "cumulonimbus"


@dataclass(frozen=True)
class Option:
    """One setting of the suite: ``--cumulonimbus-NAME``, ini ``cumulonimbus_NAME``, ``env``."""

    name: str
    kind: str  # "text", "flag" or "int"
    env: str | None
    help: str
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return f"--{PREFIX}-{self.name}"

    @property
    def dest(self) -> str:
        return f"{PREFIX}_{self.name.replace('-', '_')}"

    ini = dest


OPTIONS = [
    Option("username", "text", "CUMULONIMBUS_USERNAME", "an ordinary user's name"),
    Option("password", "text", "CUMULONIMBUS_PASSWORD", "the ordinary user's password"),
    Option(
        "username-2",
        "text",
        "CUMULONIMBUS_USERNAME_2",
        "a second ordinary user, whom staff operations act upon (optional)",
    ),
    Option("password-2", "text", "CUMULONIMBUS_PASSWORD_2", "the second user's password"),
    Option("staff-username", "text", "CUMULONIMBUS_STAFF_USERNAME", "a staff user's name"),
    Option("staff-password", "text", "CUMULONIMBUS_STAFF_PASSWORD", "the staff password"),
    Option(
        "staff-totp-secret",
        "text",
        "CUMULONIMBUS_STAFF_TOTP_SECRET",
        "the staff user's TOTP secret (base32)",
    ),
    Option(
        "staff-plain-username",
        "text",
        "CUMULONIMBUS_STAFF_PLAIN_USERNAME",
        "a staff user with no second factor enrolled (optional)",
    ),
    Option(
        "staff-plain-password",
        "text",
        "CUMULONIMBUS_STAFF_PLAIN_PASSWORD",
        "that staff user's password",
    ),
    Option(
        "banned-token",
        "text",
        "CUMULONIMBUS_BANNED_TOKEN",
        "a session token of a banned account (optional)",
    ),
    Option("mock-token", "text", "CUMULONIMBUS_MOCK_TOKEN", "the mock's --control-token"),
    Option(
        "no-control",
        "flag",
        "CUMULONIMBUS_NO_CONTROL",
        "do not use a mock control API even if the target has one",
    ),
    Option(
        "allow-kill-switches",
        "flag",
        "CUMULONIMBUS_ALLOW_KILL_SWITCHES",
        "run checks that flip kill switches on a real deployment (they affect every user)",
    ),
    Option(
        "run-slow",
        "flag",
        "CUMULONIMBUS_RUN_SLOW",
        "run rate-limit checks that must wait for windows to end on a real deployment",
    ),
    Option(
        "examples",
        "int",
        "CUMULONIMBUS_EXAMPLES",
        "generated requests per operation and mode (default: 10 on the mock, 25 elsewhere)",
        "N",
    ),
    Option("report", "text", "CUMULONIMBUS_REPORT", "write a Markdown report to FILE", "FILE"),
    Option(
        "json-report", "text", "CUMULONIMBUS_JSON_REPORT", "write a JSON report to FILE", "FILE"
    ),
    Option(
        "known-deviations",
        "text",
        "CUMULONIMBUS_KNOWN_DEVIATIONS",
        "YAML list of {check, operation, reason}: expected failures; or a service version "
        "(e.g. 5.3.0) for the list the suite ships for it",
        "FILE|VERSION",
    ),
    Option(
        "show-secrets",
        "flag",
        "CUMULONIMBUS_SHOW_SECRETS",
        "show tokens and passwords in curl lines, failures, junit and reports "
        "(default: $CUMULONIMBUS_TOKEN, $CUMULONIMBUS_PASSWORD ...)",
    ),
    Option(
        "strict-deviations",
        "flag",
        "CUMULONIMBUS_STRICT_DEVIATIONS",
        "fail the run when a known deviation no longer happens",
    ),
]
BY_NAME = {option.name: option for option in OPTIONS}
TRUE = ("1", "true", "yes", "on")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup(PREFIX, "Cumulonimbus session API (cumulonimbus-contract)")
    for option in OPTIONS:
        where = f"; ini {option.ini}" + (f", env {option.env}" if option.env else "")
        if option.kind == "flag":
            group.addoption(
                option.flag, dest=option.dest, action="store_true", default=None,
                help=f"{option.help}{where}",
            )  # fmt: skip
        else:
            group.addoption(
                option.flag, dest=option.dest, metavar=option.metavar or "VALUE",
                default=None, help=f"{option.help}{where}",
            )  # fmt: skip
        if option.kind == "flag":
            parser.addini(option.ini, option.help, type="bool", default=False)
        else:
            parser.addini(option.ini, option.help, type="string", default="")


def setting(config: pytest.Config, name: str) -> Any:
    """A suite setting: the command line, else the environment, else the ini file."""
    option = BY_NAME[name]
    value = config.getoption(option.dest)
    if value is None and option.env and os.environ.get(option.env, "") != "":
        value = os.environ[option.env]
    if value is None:
        value = config.getini(option.ini)
    if option.kind == "flag":
        return value if isinstance(value, bool) else str(value).strip().lower() in TRUE
    if option.kind == "int":
        try:
            return int(value or 0)
        except ValueError:
            raise pytest.UsageError(f"{option.flag} must be a whole number: {value!r}") from None
    return value or None


# Fixtures: the mock in your tests -----------------------------------------------------------


@pytest.fixture(scope="session")
def cumulonimbus_mock_options() -> dict[str, Any]:
    """``create_app()`` configuration for ``cumulonimbus_mock``; override it to change it.

    A narrower override (function scope) suits ``cumulonimbus_mock``; the module-scoped
    variant needs one of module scope or wider.
    """
    return {}


class _Pool:
    """One mock for the session, kept while tests ask for the same options."""

    def __init__(self) -> None:
        self.options: dict[str, Any] | None = None
        self.server: MockServer | None = None

    def get(self, options: dict[str, Any]) -> MockServer:
        from mockserver.testing import MockServer

        if self.server is not None and self.options == options:
            self.server.control.reset()
            # A reset keeps the behaviour profile; a test that switched it must not leak.
            self.server.control.set_profile(options.get("PROFILE"))
            return self.server
        self.close()
        self.server = MockServer(options).start()
        self.options = dict(options)
        return self.server

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
        self.server = self.options = None


@pytest.fixture(scope="session")
def _cumulonimbus_pool() -> Iterator[_Pool]:
    pool = _Pool()
    yield pool
    pool.close()


@pytest.fixture
def cumulonimbus_mock(
    _cumulonimbus_pool: _Pool, cumulonimbus_mock_options: dict[str, Any]
) -> MockServer:
    """The mock on a free loopback port, reset for this test: ``.base_url``, ``.control``.

    One server serves the whole session while the options stay the same; each test gets
    it reset (demo or seed users only, no sessions, switches off, the clock real time, the
    behaviour profile as configured).
    """
    return _cumulonimbus_pool.get(cumulonimbus_mock_options)


@pytest.fixture(scope="module")
def cumulonimbus_mock_module(cumulonimbus_mock_options: dict[str, Any]) -> Iterator[MockServer]:
    """A mock of the module's own, kept (not reset) from one test of the module to the next."""
    from mockserver.testing import MockServer

    with MockServer(cumulonimbus_mock_options) as server:
        yield server
