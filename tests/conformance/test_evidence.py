"""What a run leaves behind for a CI log: no secrets unless asked, a JSON report beside the
Markdown one, Schemathesis' whole message, and a table that tells "no check applies" from
"deselected"."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from werkzeug.wrappers import Response

from mockserver.app import create_app
from tests.conformance.harness import (
    AS_DEPLOYMENT,
    DEMO_PASSWORD,
    Broken,
    Ledger,
    Seen,
    SuiteRun,
    body_of,
    oldest_first,
    run_suite,
    serve,
    set_body,
)

JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.")
# The mock's own user, judged as a deployment so that the test knows the password.
PASSWORD = DEMO_PASSWORD


def _scoped_session_without_name(seen: Seen, response: Response, ledger: Ledger) -> None:
    created = seen.method == "POST" and response.status_code == 201
    if created and seen.path == "/api/users/me/sessions":
        set_body(response, {k: v for k, v in body_of(response).items() if k != "name"})


def _failed_scoped_session(tmp_path: Path, *extra: str) -> dict[str, str]:
    """A failure whose evidence is a request with a token and a password, answered with a
    new token: every place the run writes it to, by name."""
    junit, report_json = tmp_path / "junit.xml", tmp_path / "report.json"
    with serve(Broken(create_app(), response=_scoped_session_without_name)) as base_url:
        result = run_suite(
            base_url,
            tmp_path,
            *AS_DEPLOYMENT,
            "-k",
            "schema.body-createScopedSession",
            "--junitxml",
            str(junit),
            "--cumulonimbus-json-report",
            str(report_json),
            *extra,
            files=("test_responses.py",),
        )
    assert result.returncode == 1, str(result)
    return {
        "terminal": result.output,
        "markdown": result.report,
        "json": report_json.read_text(),
        "junit": junit.read_text(),
    }


@pytest.fixture(scope="module")
def redacted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return _failed_scoped_session(tmp_path_factory.mktemp("redacted"))


WHERE = ["terminal", "markdown", "json", "junit"]


@pytest.mark.parametrize("where", WHERE)
def test_tokens_are_redacted_by_default(redacted: dict[str, str], where: str) -> None:
    text = redacted[where]
    assert "createScopedSession" in text
    assert JWT.search(text) is None, JWT.search(text)
    assert "$CUMULONIMBUS_TOKEN" in text


@pytest.mark.parametrize("where", WHERE)
def test_passwords_are_redacted_by_default(redacted: dict[str, str], where: str) -> None:
    text = redacted[where].replace("&quot;", '"').replace('\\"', '"')
    assert not re.search(rf'"password": *"{PASSWORD}"', text)
    assert "$CUMULONIMBUS_PASSWORD" in text


def test_the_redacted_curl_line_leaves_the_variables_to_the_shell(
    redacted: dict[str, str],
) -> None:
    """In double quotes, so the line runs once they are set (test_units runs one)."""
    assert '-H "Authorization: $CUMULONIMBUS_TOKEN"' in redacted["markdown"]
    assert """"password": "'"$CUMULONIMBUS_PASSWORD"'"}'""" in redacted["markdown"]


def test_show_secrets_shows_them(tmp_path: Path) -> None:
    shown = _failed_scoped_session(tmp_path, "--cumulonimbus-show-secrets")
    assert JWT.search(shown["markdown"]) is not None
    assert re.search(rf"-H 'Authorization: {JWT.pattern}", shown["terminal"])
    assert f'"password": "{PASSWORD}"' in shown["markdown"]


# JSON report and summary table -----------------------------------------------------------


@pytest.fixture(scope="module")
def paging_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[SuiteRun, dict[str, Any]]:
    """Only paging.order on the staff list, which lists oldest first."""
    tmp_path = tmp_path_factory.mktemp("paging")
    report_json = tmp_path / "report.json"
    with serve(Broken(create_app(), response=oldest_first)) as base_url:
        result = run_suite(
            base_url,
            tmp_path,
            "-k",
            "paging.order-getUserSessions",
            "--cumulonimbus-json-report",
            str(report_json),
        )
    assert result.returncode == 1, str(result)
    return result, json.loads(report_json.read_text())


def test_json_report_describes_the_run(paging_run: tuple[SuiteRun, dict[str, Any]]) -> None:
    result, report = paging_run
    assert report["format"] == "cumulonimbus-conformance-report/1"
    assert report["target"]["kind"] == "mock"
    assert report["target"]["base_url"].endswith("/api")
    assert report["counts"] == {"failed": 1}
    assert report["groups"] == ["paging"]
    assert report["summary"]["getUserSessions"]["paging"] == {"state": "fail", "count": 1}
    [case] = report["cases"]
    assert case["check"] == "paging.order" and case["operation"] == "getUserSessions"
    assert case["outcome"] == "failed"
    assert case["nodeid"].endswith("[paging.order-getUserSessions]")
    assert case["failure"]["curl"].startswith("curl -i -X GET ")
    assert case["failure"]["expected"] and case["failure"]["actual"]
    assert "conformance JSON report written to" in result.output


def test_json_report_tells_deselected_from_not_applicable(
    paging_run: tuple[SuiteRun, dict[str, Any]],
) -> None:
    _result, report = paging_run
    assert report["summary"]["getSelfSessions"]["paging"]["state"] == "deselected"
    assert report["summary"]["login"]["paging"]["state"] == "not-applicable"


def test_summary_table_tells_deselected_from_not_applicable(
    paging_run: tuple[SuiteRun, dict[str, Any]],
) -> None:
    result, _report = paging_run
    assert "| getUserSessions | FAIL 1 |" in result.report
    assert "| getSelfSessions | deselected |" in result.report
    assert "| login | - |" in result.report
    assert re.search(r"^getSelfSessions +deselected$", result.output, re.MULTILINE)
    assert re.search(r"^login +-$", result.output, re.MULTILINE)


# Schemathesis' messages ---------------------------------------------------------------------


def _no_cache_control(seen: Seen, response: Response, ledger: Ledger) -> None:
    del response.headers["Cache-Control"]


def test_a_fuzz_failure_keeps_schemathesis_whole_message(tmp_path: Path) -> None:
    """Schemathesis names the missing header on the message's second line."""
    with serve(Broken(create_app(), response=_no_cache_control)) as base_url:
        result = run_suite(
            base_url,
            tmp_path,
            "-k",
            "fuzz.positive-getSelfSessions",
            "--cumulonimbus-examples",
            "1",
            files=("test_schema.py",),
        )
    assert result.returncode == 1, str(result)
    assert "### `fuzz.positive` on `getSelfSessions`" in result.report
    assert "required headers are missing from the response: - `Cache-Control`" in result.report
