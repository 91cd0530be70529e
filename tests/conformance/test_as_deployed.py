"""The known deviations shipped for cumulonimbus-api 5.3.0 are exactly what the suite
reports against a 5.3.0 server, modelled by the mock with its ``5.3.0`` profile
(``--as-deployed 5.3.0``): without the list the suite fails those checks and no others;
with ``--cumulonimbus-known-deviations 5.3.0`` it is green, and no entry is stale."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from conformance.deviations import SHIPPED, shipped
from mockserver.app import create_app
from tests.conformance.harness import AS_DEPLOYMENT, REPO, run_suite, serve

VERSION = "5.3.0"
LISTED = SHIPPED / f"{VERSION}.yaml"


def _listed() -> set[tuple[str, str]]:
    entries = yaml.safe_load(LISTED.read_text(encoding="utf-8"))
    return {(e["check"], e["operation"]) for e in entries}


def _report(tmp_path: Path, *args: str) -> tuple[Any, dict[str, Any]]:
    report = tmp_path / "report.json"
    with serve(create_app({"PROFILE": VERSION})) as base_url:
        result = run_suite(base_url, tmp_path, "--cumulonimbus-json-report", str(report), *args)
    return result, json.loads(report.read_text(encoding="utf-8"))


def test_a_list_ships_for_5_3_0() -> None:
    assert VERSION in shipped()
    for entry in yaml.safe_load(LISTED.read_text(encoding="utf-8")):
        assert set(entry) == {"check", "operation", "reason"}, entry
        assert entry["reason"].strip() and "\n" not in entry["reason"], entry


def test_as_deployed_the_suite_fails_exactly_the_listed_checks(tmp_path: Path) -> None:
    result, report = _report(tmp_path)
    assert result.returncode == 1, str(result)
    failed = {(c["check"], c["operation"]) for c in report["cases"] if c["outcome"] == "failed"}
    listed = _listed()
    new = sorted(failed - listed)
    gone = sorted(listed - failed)
    assert not new and not gone, (
        f"{LISTED.relative_to(REPO)} is out of date (new or renamed checks?).\n"
        + (
            "Add (they fail against --as-deployed 5.3.0):\n"
            + "".join(f"- check: {c}\n  operation: {o}\n  reason: ...\n" for c, o in new)
            if new
            else ""
        )
        + (
            "Remove (they pass now):\n" + "".join(f"  {c} on {o}\n" for c, o in gone)
            if gone
            else ""
        )
        # What the new failures said: a timing-dependent one is only understood from it.
        + "".join(
            f"\n{c['message']}"
            for c in report["cases"]
            if c["outcome"] == "failed" and (c["check"], c["operation"]) in new
        )
    )


def test_with_the_shipped_list_the_suite_is_green_and_no_entry_is_stale(tmp_path: Path) -> None:
    result, report = _report(
        tmp_path, "--cumulonimbus-known-deviations", VERSION, "--cumulonimbus-strict-deviations"
    )
    assert result.returncode == 0, str(result)
    stale = [(d["check"], d["operation"], d["status"]) for d in report["deviations"]]
    assert {status for *_, status in stale} == {"still happens"}, [
        s for s in stale if s[2] != "still happens"
    ]
    assert len(report["deviations"]) == len(_listed())


@pytest.mark.parametrize("value", ["4.0.0", "deviations.yaml"])
def test_neither_a_file_nor_a_shipped_version_is_a_usage_error(tmp_path: Path, value: str) -> None:
    result = run_suite("http://127.0.0.1:9/api", tmp_path, "--cumulonimbus-known-deviations", value)
    assert result.returncode == 4, str(result)
    assert f"known deviations file {value}: cannot read the file" in result.output
    assert f"(shipped lists: {VERSION})" in result.output


def _with_login_window(tmp_path: Path, seconds: int) -> str:
    """The spec with the login bucket's window cut to `seconds`: a deployment cannot move
    its clock, and a check that waits for the login window must not take 5 minutes here."""
    text = (REPO / "openapi" / "sessions.yaml").read_text(encoding="utf-8")
    block = "route: /login\n        limit: 4\n        window: 300\n"
    assert block in text, "the login limiter moved in openapi/sessions.yaml"
    path = tmp_path / "sessions.yaml"
    path.write_text(text.replace(block, block.replace("300", str(seconds))), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("spent", [0, 2, 4])
def test_on_a_deployment_the_login_burst_waits_for_room_where_empty_logins_count(
    tmp_path: Path, spent: int
) -> None:
    """5.3.0 counts a login with `{}` in the login bucket (observed row 31). Sent with two
    logins left, the burst check's series met a standard 429 at its third request (a full
    deployment run failed so, twice); it now finds out where `{}` counts and waits. With
    none spent, the probe leaves 3 of 4: one short for a series of 4 whose last must still
    find room, to be refused for the burst."""
    import requests

    app = create_app({"PROFILE": VERSION, "SPEC_PATH": _with_login_window(tmp_path, 10)})
    with serve(app) as base_url:
        # Logins of the four spent before the run (5.3.0 counts these 500s); with all
        # four spent, the check's first request meets the login limit, as it plans.
        control = base_url.removesuffix("/api") + "/_mock"
        for n in range(spent):
            if n == 3:  # past the burst window: the clock moves, no one waits
                requests.post(f"{control}/clock", json={"advance": 1.5}, timeout=5)
            answer = requests.post(f"{base_url}/login", json={}, timeout=5)
            assert answer.headers.get("RateLimit-Remaining") == str(3 - n), answer.headers
        result = run_suite(
            base_url,
            tmp_path,
            *AS_DEPLOYMENT,
            "-k",
            "ratelimit.burst-login",
        )
    assert result.returncode == 0, str(result)
    assert "0 429 answer(s) the plan did not foresee" in result.output
