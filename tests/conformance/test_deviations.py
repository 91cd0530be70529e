"""Known deviations that help: a wrong file is a usage error, strict mode fails on an entry
that no longer happens, and an entry whose cases were deselected is not called stale."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conformance.harness import (
    Broken,
    SuiteRun,
    oldest_first,
    run_suite,
    serve,
)

ENTRY = "- check: paging.order\n  operation: getUserSessions\n  reason: issue 99\n"
STAFF_LIST_ORDER = "paging.order-getUserSessions"
UNREACHABLE = "http://127.0.0.1:9/api"  # never contacted: the file is read first


def _deviations(tmp_path: Path, text: str) -> str:
    path = tmp_path / "deviations.yaml"
    path.write_text(text)
    return str(path)


# The file ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "cannot read the file"),
        ("- check: [unclosed\n", "not valid YAML"),
        ("check: paging.order\n", "expected a YAML list"),
        (ENTRY + "  operaton: getSelfSessions\n", "entry 1: unknown key(s) operaton"),
        ("- check: paging.order\n  reason: x\n", "entry 1: needs operation"),
        (
            "- check: paging.order\n  operation: 3\n",
            "entry 1: check and operation must be non-empty strings",
        ),
    ],
    ids=["missing", "not-yaml", "not-a-list", "unknown-key", "missing-key", "not-a-string"],
)
def test_a_wrong_deviations_file_is_a_usage_error(
    tmp_path: Path, text: str | None, message: str
) -> None:
    path = str(tmp_path / "absent.yaml") if text is None else _deviations(tmp_path, text)
    result = run_suite(UNREACHABLE, tmp_path, "--cumulonimbus-known-deviations", path)
    assert result.returncode == 4, str(result)
    assert "INTERNALERROR" not in result.output, str(result)
    assert f"ERROR: known deviations file {path}: {message}" in result.output, str(result)


# Strict mode -------------------------------------------------------------------------------


def _run(app: Any, tmp_path: Path, deviations: str, *args: str) -> SuiteRun:
    with serve(app) as base_url:
        return run_suite(base_url, tmp_path, "--cumulonimbus-known-deviations", deviations, *args)


def test_strict_mode_fails_the_run_when_a_deviation_no_longer_happens(
    mock_app: Any, tmp_path: Path
) -> None:
    deviations = _deviations(tmp_path, ENTRY)
    result = _run(
        mock_app, tmp_path, deviations, "-k", STAFF_LIST_ORDER, "--cumulonimbus-strict-deviations"
    )
    assert result.returncode == 1, str(result)
    assert "known deviation no longer happens: paging.order on getUserSessions" in result.output
    assert "1 known deviation(s) no longer happen: the run fails" in result.output


def test_strict_mode_passes_while_the_deviation_happens(mock_app: Any, tmp_path: Path) -> None:
    deviations = _deviations(tmp_path, ENTRY)
    result = _run(
        Broken(mock_app, response=oldest_first),
        tmp_path,
        deviations,
        "-k",
        STAFF_LIST_ORDER,
        "--cumulonimbus-strict-deviations",
    )
    assert result.returncode == 0, str(result)
    assert "still happens: `paging.order` on `getUserSessions`" in result.report


# Deselection -------------------------------------------------------------------------------


def test_a_deviation_deselected_by_k_is_not_stale(mock_app: Any, tmp_path: Path) -> None:
    deviations = _deviations(tmp_path, ENTRY)
    result = _run(
        mock_app,
        tmp_path,
        deviations,
        "-k",
        "auth.required-getSelfSessions-no-token",
        "--cumulonimbus-strict-deviations",
    )
    assert result.returncode == 0, str(result)
    assert "known deviation" not in result.output, str(result)
    assert "- deselected: `paging.order` on `getUserSessions` (issue 99)" in result.report
    assert "**" not in result.report.split("## Known deviations", 1)[1]


def test_a_deviation_that_matches_no_case_is_still_stale(mock_app: Any, tmp_path: Path) -> None:
    deviations = _deviations(tmp_path, ENTRY.replace("paging.order", "paging.ordr"))
    result = _run(mock_app, tmp_path, deviations, "-k", "auth.required-getSelfSessions-no-token")
    assert result.returncode == 0, str(result)
    assert (
        "known deviation matches no collected check case: paging.ordr on getUserSessions"
        in result.output
    )
