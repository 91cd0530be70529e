"""The mock answers the observed session of cumulonimbus-api 5.3.0 row by row, twice:

- as the contract has it, where only the deliberate differences (``differences.yaml``,
  one place for all of them) may differ from the service;
- with ``--as-deployed 5.3.0`` (the profile ``openapi/profiles/5.3.0.yaml``), where no
  row may differ at all. No row needs to be set aside as timing-dependent: the replay
  moves the mock's clock a second between rows, as the observer paced them, and sends
  the one parallel pair (rows 206-207) in the order the record sorted its outcomes.

The rows depend on each other (tokens, sessions, buckets), so the whole session is
replayed once per module and mode, and each row is then judged on its own test id.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from mockserver.profiles import load_profile
from mockserver.spec import load_spec

from .replay import Replay, load_differences, load_rows, mock_app

ROWS = load_rows()
DIFFERENCES = load_differences()
README = Path(__file__).resolve().parents[2] / "README.md"
AS_DEPLOYED = "5.3.0"
MODES = [None, AS_DEPLOYED]


def expectations(profile: str | None = None) -> dict[int, dict[str, Any]]:
    """What the mock must answer: the observation, or (following the contract rather than
    the service) the listed deliberate difference."""
    expected = {row["row"]: row["expect"] for row in ROWS}
    if profile is None:
        for difference in DIFFERENCES:
            expected.update(difference["rows"])
    return expected


@pytest.fixture(scope="module", params=MODES, ids=["contract", f"as-deployed-{AS_DEPLOYED}"])
def replayed(request: pytest.FixtureRequest) -> dict[int, list[str]]:
    # Strict either way: a profile's answers are exempt, every other answer must fit the spec.
    app, clock = mock_app({"STRICT_RESPONSES": True, "PROFILE": request.param})
    replay = Replay(app, clock)
    expected = expectations(request.param)
    problems = {row["row"]: replay.run(row, expected[row["row"]]) for row in ROWS}
    violations = app.extensions["cumulonimbus"].validator.violations
    assert not violations, f"responses that broke the spec: {violations}"
    return problems


def _id(row: dict[str, Any]) -> str:
    return (
        f"row-{row['row']:03d}-" + re.sub(r"[^a-z0-9]+", "-", row["what"].lower()).strip("-")[:40]
    )


@pytest.mark.parametrize("row", ROWS, ids=[_id(r) for r in ROWS])
def test_row_answers_as_expected(row: dict[str, Any], replayed: dict[int, list[str]]) -> None:
    assert not replayed[row["row"]], f"row {row['row']} ({row['what']}): " + "; ".join(
        replayed[row["row"]]
    )


def test_the_replay_sees_a_difference() -> None:
    """The comparison can fail: a wrong expectation on the first row is reported."""
    app, clock = mock_app()
    row = ROWS[0]
    wrong = {**row["expect"], "ratelimit": {"limit": 100, "remaining": 98, "reset": True}}
    assert Replay(app, clock).run(row, wrong) == [
        "ratelimit: expected {'limit': 100, 'remaining': 98, 'reset': True}, "
        "got {'limit': 100, 'remaining': 99, 'reset': True}"
    ]


def test_the_profile_reproduces_exactly_the_deliberate_differences() -> None:
    """Every row the contract deliberately answers otherwise is one the 5.3.0 profile
    says it reproduces, and no other row."""
    profile = load_profile(AS_DEPLOYED, load_spec())
    reproduced = sorted(n for d in profile.deviations for n in d["rows"])
    differing = sorted(n for d in DIFFERENCES for n in d["rows"])
    assert reproduced == differing


def test_without_the_profile_the_differences_are_seen() -> None:
    """The as-deployed replay can fail: the contract's mock misses the service's rows."""
    app, clock = mock_app()
    replay = Replay(app, clock)
    missed = {row["row"] for row in ROWS if replay.run(row, row["expect"])}
    assert {n for d in DIFFERENCES for n in d["rows"]} <= missed


def test_every_difference_names_a_contract_decision() -> None:
    for difference in DIFFERENCES:
        assert re.fullmatch(r"(8\.\d+)(, 8\.\d+)*|§\d+", difference["decision"]), difference


def test_each_row_is_listed_once_and_exists() -> None:
    listed = [n for d in DIFFERENCES for n in d["rows"]]
    assert len(listed) == len(set(listed))
    assert set(listed) <= {row["row"] for row in ROWS}


def render_table() -> str:
    """The README's table of deliberate differences, made from ``differences.yaml``."""
    lines = [
        "| decision | the mock | the service (5.3.0) | observed rows |",
        "|---|---|---|---|",
    ]
    for d in DIFFERENCES:
        rows = ", ".join(str(n) for n in d["rows"])
        lines.append(f"| {d['decision']} | {d['mock']} | {d['service']} | {rows} |")
    return "\n".join(lines)


def test_readme_lists_every_difference() -> None:
    table = render_table()
    assert table in README.read_text(encoding="utf-8"), (
        "README's 'Differences from the service' table is out of date; it should read:\n" + table
    )
