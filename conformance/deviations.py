"""Known deviations: failures a run expects (as xfail) while they are being fixed, read from
a YAML list, and what became of each entry by the end of the run::

    - check: paging.order          # shell wildcards allowed
      operation: getUserSessions
      reason: issue 99, staff lists come oldest first

The suite ships the lists for deployed versions of the service (`known_deviations/`):
`--cumulonimbus-known-deviations 5.3.0` takes the list of cumulonimbus-api 5.3.0, any
other value is a file path.

An entry is stale when the cases it covers ran and now pass ("no longer happens"), or
when it covers no collected case at all (a typo, or a check that was renamed). An entry
whose cases were all deselected (`-k`, `-m`, `--deselect`) says nothing either way.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REQUIRED = ("check", "operation")
KEYS = (*REQUIRED, "reason")

HAPPENS = "still happens"
NO_LONGER_HAPPENS = "no longer happens"
MATCHES_NOTHING = "matches no collected check case"
DESELECTED = "deselected"
NOT_RUN = "not run"


@dataclass
class Deviation:
    check: str
    operation: str
    reason: str = "known deviation"
    # Node ids of every collected case it covers, selected or not.
    matched: list[str] = field(default_factory=list)

    def covers(self, check_id: str, operation_id: str) -> bool:
        return fnmatch.fnmatchcase(check_id, self.check) and fnmatch.fnmatchcase(
            operation_id, self.operation
        )


SHIPPED = Path(__file__).resolve().parent / "known_deviations"


def shipped() -> list[str]:
    """The versions of the service whose known deviations ship with the suite."""
    return sorted(p.stem for p in SHIPPED.glob("*.yaml"))


def resolve(value: str) -> Path:
    """A file path as given, else the shipped list of that service version."""
    given = Path(value)
    if not given.exists() and value in shipped():
        return SHIPPED / f"{value}.yaml"
    return given


def load(path: str) -> list[Deviation]:
    """The entries of a known-deviations file (or shipped list); a mistake is a usage error."""

    def usage(problem: str) -> pytest.UsageError:
        versions = ", ".join(shipped())
        return pytest.UsageError(
            f"known deviations file {path}: {problem}"
            + (f" (shipped lists: {versions})" if "cannot read" in problem else "")
        )

    try:
        text = resolve(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise usage(f"cannot read the file ({exc.strerror or exc})") from None
    try:
        entries = yaml.safe_load(text) or []
    except yaml.YAMLError as exc:
        raise usage(f"not valid YAML: {exc}") from None
    if not isinstance(entries, list):
        raise usage("expected a YAML list of {check, operation, reason}")
    found = []
    for number, entry in enumerate(entries, start=1):
        where = f"entry {number}"
        if not isinstance(entry, dict):
            raise usage(f"{where}: not a mapping of {', '.join(KEYS)}: {entry!r}")
        unknown = sorted(str(key) for key in entry if key not in KEYS)
        if unknown:
            raise usage(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(KEYS)})")
        missing = [key for key in REQUIRED if key not in entry]
        if missing:
            raise usage(f"{where}: needs {' and '.join(missing)}: {entry!r}")
        if not all(isinstance(entry[key], str) and entry[key] for key in REQUIRED):
            raise usage(f"{where}: check and operation must be non-empty strings: {entry!r}")
        found.append(
            Deviation(entry["check"], entry["operation"], str(entry.get("reason") or KEYS[2]))
        )
    return found


class KnownDeviations:
    """The entries of one run, the cases each covers and the outcomes of those cases."""

    def __init__(self, entries: list[Deviation]) -> None:
        self.entries = entries
        self.deselected: set[str] = set()
        self.outcomes: dict[str, str] = {}  # node id -> passed, failed, xfailed, ...

    def mark(self, item: pytest.Item, check_id: str, operation_id: str) -> None:
        """Expect the item to fail if an entry covers it (before any deselection)."""
        for deviation in self.entries:
            if deviation.covers(check_id, operation_id):
                deviation.matched.append(item.nodeid)
                item.add_marker(
                    pytest.mark.xfail(reason=f"known deviation: {deviation.reason}", strict=False)
                )

    def record(self, nodeid: str, outcome: str) -> None:
        self.outcomes[nodeid] = outcome

    def status(self, deviation: Deviation) -> str:
        ran = [self.outcomes[n] for n in deviation.matched if n in self.outcomes]
        if "xfailed" in ran:
            return HAPPENS
        if "xpassed" in ran:
            return NO_LONGER_HAPPENS
        if not deviation.matched:
            return MATCHES_NOTHING
        if all(n in self.deselected for n in deviation.matched):
            return DESELECTED
        return NOT_RUN  # skipped, or the run stopped before its cases

    def stale(self) -> list[tuple[Deviation, str]]:
        """Entries to drop from the file, with why."""
        found = [(d, self.status(d)) for d in self.entries]
        return [(d, why) for d, why in found if why in (NO_LONGER_HAPPENS, MATCHES_NOTHING)]

    def no_longer_happening(self) -> list[Deviation]:
        return [d for d in self.entries if self.status(d) == NO_LONGER_HAPPENS]
