"""The suite as a whole: passes against the mock, fails once and clearly on a wrong
target, honours known deviations, runs with --pyargs."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.conformance.harness import (
    AS_DEPLOYMENT,
    REPO,
    Broken,
    body_of,
    json_response,
    oldest_first,
    run_suite,
    serve,
    set_body,
)


def test_passes_against_the_mock(mock_app: Any, tmp_path: Path) -> None:
    started = time.monotonic()
    with serve(mock_app) as base_url:
        result = run_suite(base_url, tmp_path)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, str(result)
    assert "no failed check cases" in result.output
    assert "FAIL" not in result.report
    assert "| getSelfSessions | pass |" in result.report
    assert elapsed < 120, f"the suite took {elapsed:.0f}s against the mock"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_target_that_is_down_is_one_clear_error(tmp_path: Path) -> None:
    result = run_suite(f"http://127.0.0.1:{_free_port()}/api", tmp_path)
    assert result.returncode == 3, str(result)
    assert "cannot judge" in result.output and "does not answer" in result.output
    assert "failed" not in result.output


def test_a_wrong_url_is_one_clear_error(mock_app: Any, tmp_path: Path) -> None:
    with serve(mock_app) as base_url:
        result = run_suite(base_url.replace("/api", "/nothing-here"), tmp_path)
    assert result.returncode == 3, str(result)
    assert "does not look like the Cumulonimbus API root" in result.output


def test_a_known_deviation_is_an_expected_failure(mock_app: Any, tmp_path: Path) -> None:
    deviations = tmp_path / "deviations.yaml"
    deviations.write_text(
        "- check: paging.order\n"
        "  operation: getUserSessions\n"
        "  reason: issue 99, lists oldest first\n"
    )
    with serve(Broken(mock_app, response=oldest_first)) as base_url:
        result = run_suite(
            base_url,
            tmp_path,
            "-k",
            "paging.order-getUserSessions",
            "--cumulonimbus-known-deviations",
            str(deviations),
        )
    assert result.returncode == 0, str(result)
    assert "xfail" in result.report
    assert "still happens: `paging.order` on `getUserSessions`" in result.report


def test_a_known_deviation_that_no_longer_happens_is_reported(
    mock_app: Any, tmp_path: Path
) -> None:
    deviations = tmp_path / "deviations.yaml"
    deviations.write_text(
        "- check: paging.order\n  operation: getUserSessions\n  reason: issue 99\n"
    )
    with serve(mock_app) as base_url:
        result = run_suite(
            base_url,
            tmp_path,
            "-k",
            "paging.order-getUserSessions",
            "--cumulonimbus-known-deviations",
            str(deviations),
        )
    assert result.returncode == 0, str(result)
    assert "known deviation no longer happens: paging.order on getUserSessions" in result.output
    assert "**no longer happens**" in result.report


def test_runs_with_pyargs(mock_app: Any, tmp_path: Path) -> None:
    with serve(mock_app) as base_url:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "--pyargs",
                "conformance",
                "--base-url",
                base_url,
                "-p",
                "no:cacheprovider",
                "-q",
                "-k",
                "getHello",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "conformance summary" in done.stdout


def test_without_base_url_says_how_to_give_one(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", str(REPO / "conformance"), "-p", "no:cacheprovider", "-q"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 4, done.stdout + done.stderr
    assert "--base-url" in done.stdout + done.stderr


def test_paced_and_tidy_on_a_deployment(mock_app: Any, tmp_path: Path) -> None:
    """Judged without its control API, the mock is a deployment with real rate limits:
    the suite must stay under them and delete the sessions it created."""
    control = mock_app.test_client()
    with serve(mock_app) as base_url:
        result = run_suite(
            base_url,
            tmp_path,
            *AS_DEPLOYMENT,
            "--cumulonimbus-examples",
            "3",
            "-k",
            "(getHello or auth.required-getSelfSessions or paging.count-getSelfSessions)"
            " and not burst",
        )
    assert result.returncode == 0, str(result)
    assert "deployment" in result.output
    # The budget is announced up front and the run met no 429 it had not planned for.
    assert "plan: needs 1 logins and 3 scoped sessions" in result.output
    assert "0 429 answer(s) the plan did not foresee" in result.output
    # ... and says where its time went, and who sent how many requests.
    assert "time by cause: requests " in result.output
    assert "Requests sent: " in result.output
    journal = control.get("/_mock/requests?limit=1000").get_json()["items"]
    assert [e for e in journal if e["status"] == 429] == []
    assert any(e["path"].endswith("/login") and e["status"] == 201 for e in journal)
    users = {u["username"]: u for u in control.get("/_mock/users").get_json()["items"]}
    assert users["alice"]["sessions"] == []
    # Checks that need what only the control API can provide were skipped, not failed.
    assert "skip" in result.report


def test_deployment_fuzzing_holds_back_logins_beyond_the_window(
    mock_app: Any, tmp_path: Path
) -> None:
    """Generated logins past the fourth in 5 minutes are held back, not waited for."""
    control = mock_app.test_client()
    with serve(mock_app) as base_url:
        result = run_suite(
            base_url,
            tmp_path,
            "--cumulonimbus-no-control",
            "--cumulonimbus-examples",
            "8",
            "-k",
            "fuzz.positive-login",
        )
    assert result.returncode == 0, str(result)
    assert "POST /login: " in result.output
    assert "generated request(s) not sent" in result.output
    journal = control.get("/_mock/requests?limit=1000").get_json()["items"]
    logins = [e for e in journal if e["path"].endswith("/login")]
    assert [e for e in logins if e["status"] == 429] == []
    # Uncounted answers (an unknown user's 404) cost nothing; counted ones stop at 4.
    counted = [e for e in logins if "RateLimit-Skipped" not in e["responseHeaders"]]
    assert 0 < len(counted) <= 4


def _items_without_names(seen: Any, response: Any, ledger: Any) -> None:
    body = body_of(response)
    if seen.method == "GET" and seen.path.endswith("/sessions") and response.status_code == 200:
        set_body(response, {**body, "items": [{"id": i["id"]} for i in body["items"]]})


def test_an_unannounced_breakage_is_caught(mock_app: Any, tmp_path: Path) -> None:
    """No check is written for list items without `name`; the suite still catches it,
    names the rule and the operation, and shows how to reproduce it."""
    junit = tmp_path / "junit.xml"
    with serve(Broken(mock_app, response=_items_without_names)) as base_url:
        result = run_suite(base_url, tmp_path, "--junitxml", str(junit))
    assert result.returncode == 1, str(result)
    assert "### `schema.body` on `getSelfSessions`" in result.report
    assert "### `fuzz.positive` on `getSelfSessions`" in result.report
    assert "'name' is a required property" in result.report
    assert "curl -i -X GET" in result.report
    assert "schema.body-getSelfSessions" in junit.read_text()


def _deployment_run(app: Any, tmp_path: Path, selection: str, *more: str) -> Any:
    """The suite judging `app` as a deployment (no control API), as alice."""
    with serve(app) as base_url:
        return run_suite(
            base_url,
            tmp_path,
            *AS_DEPLOYMENT,
            *more,
            "-k",
            selection,
        )


def test_a_deployment_run_says_what_each_case_spent_of_the_login_budget(
    mock_app: Any, tmp_path: Path
) -> None:
    """The plan estimates logins; the run counts them, per case in the JSON report and in
    all at the end, so an estimate that is off shows where."""
    report = tmp_path / "run.json"
    result = _deployment_run(
        mock_app,
        tmp_path,
        "token.lifetime-login",
        "--cumulonimbus-json-report",
        str(report),
    )
    assert result.returncode == 0, str(result)
    cases = json.loads(report.read_text(encoding="utf-8"))["cases"]
    # Each case logs in once (default and long-lived).
    assert [case["spent"].get("/login") for case in cases] == [1, 1]
    assert "counted in route buckets: /login 2, " in result.output
    assert "(plan: 3 logins, 0 scoped sessions)" in result.output


def test_the_plan_counts_the_logins_that_checks_spend_beside_their_sessions(
    mock_app: Any, tmp_path: Path
) -> None:
    """Refused logins the login bucket still counts, the login a response check judges,
    and the login again after deleting every session of an account: the plan's estimate
    is what the run counted (it used to leave them out, and a full run spent half as many
    logins again as it announced)."""
    result = _deployment_run(
        mock_app,
        tmp_path,
        "auth.forbidden-login or schema.status-login or delete-all.include-self",
    )
    assert result.returncode == 0, str(result)
    counted = re.search(r"counted in route buckets: /login (\d+),", result.output)
    planned = re.search(r"\(plan: (\d+) logins", result.output)
    assert counted is not None and planned is not None, result.output
    assert (counted.group(1), planned.group(1)) == ("4", "4")


def test_fuzzing_login_on_a_deployment_leaves_the_login_budget_to_the_checks(
    mock_app: Any, tmp_path: Path
) -> None:
    """Generated logins that would count take at most two of the 4 logins per 5 minutes
    the whole run shares; the others are held back and said so."""
    report = tmp_path / "run.json"
    result = _deployment_run(
        mock_app, tmp_path, "fuzz.positive-login", "--cumulonimbus-json-report", str(report)
    )
    assert result.returncode == 0, str(result)
    [case] = json.loads(report.read_text(encoding="utf-8"))["cases"]
    assert case["spent"].get("/login", 0) <= 2, case["spent"]
    assert "generated request(s) not sent" in result.output


def _logins_by_case(app: Any, tmp_path: Path, selection: str) -> dict[str, int]:
    """Logins each selected case spent in a deployment run (JSON report's `spent`)."""
    report = tmp_path / "run.json"
    result = _deployment_run(app, tmp_path, selection, "--cumulonimbus-json-report", str(report))
    assert result.returncode == 0, str(result)
    cases = json.loads(report.read_text(encoding="utf-8"))["cases"]
    return {f"{c['check']} {c['operation']}": c["spent"].get("/login", 0) for c in cases}


def test_fuzzing_bulk_deletes_on_a_deployment_keeps_the_suites_own_session(
    mock_app: Any, tmp_path: Path
) -> None:
    """Generated bulk deletes of the caller's sessions name no `me` on a deployment: the
    suite's one login serves both modes (it used to log in again 4 times)."""
    cases = _logins_by_case(
        mock_app, tmp_path, "fuzz.positive-deleteSelfSessions or fuzz.negative-deleteSelfSessions"
    )
    assert len(cases) == 2, cases
    assert sum(cases.values()) == 1, cases


def test_the_literal_route_check_deletes_me_with_a_session_of_its_own_on_a_deployment(
    mock_app: Any, tmp_path: Path
) -> None:
    """`DELETE /users/me/sessions/me` sent with the suite's browser session deleted it,
    and the next case logged in again: one login of 4 per 5 minutes for nothing."""
    cases = _logins_by_case(
        mock_app,
        tmp_path,
        "ratelimit.literal-route-deleteSelfSession or schema.status-getSelfSessions",
    )
    assert len(cases) == 2, cases
    assert sum(cases.values()) == 1, cases


def test_a_used_up_scoped_session_window_is_not_the_default_accounts(
    mock_app: Any, tmp_path: Path
) -> None:
    """On a deployment with a second account, ratelimit.route-limit uses up the 4 scoped
    sessions per 5 minutes of that account, not alice's: the accounting check after it
    counts in alice's /users/me/sessions bucket, and met a 429 of the run's own making."""
    added = mock_app.test_client().post(
        "/_mock/users", json={"username": "erin", "password": "password"}
    )
    assert added.status_code == 201, added.get_json()
    result = _deployment_run(
        mock_app,
        tmp_path,
        "ratelimit.route-limit-createScopedSession-used-up or ratelimit.accounting-getSelfSessions",
        "--cumulonimbus-run-slow",
        "--cumulonimbus-username-2",
        "erin",
        "--cumulonimbus-password-2",
        "password",
    )
    assert result.returncode == 0, str(result)
    control = mock_app.test_client()
    journal = control.get("/_mock/requests?limit=1000").get_json()["items"]
    assert [e["method"] for e in journal if e["status"] == 429] == ["POST"], journal
    # The case this is about happened: the scoped-session window used up was erin's.
    users = {u["username"]: u for u in control.get("/_mock/users").get_json()["items"]}
    assert len(users["erin"]["sessions"]) >= 4, users["erin"]


def test_a_bucket_the_suite_opened_with_a_read_shows_the_reads_limit(
    mock_app: Any, tmp_path: Path
) -> None:
    """On a deployment the suite opens `/users/me/sessions` with a read before it creates
    scoped sessions, so later creations in that minute show the read's limit (100):
    `ratelimit.headers` must expect the opener's limit, not the creation's 4."""
    result = _deployment_run(
        mock_app,
        tmp_path,
        "scope.allowed-getSelfSession-SESSION_READ or ratelimit.headers-createScopedSession",
    )
    assert result.returncode == 0, str(result)
    # The case this is about happened: creations counted against the read's 100.
    assert "RateLimit-Limit: 100" in _journal_limits(mock_app, "POST", "/users/me/sessions")


def test_the_literal_route_check_follows_a_window_earlier_checks_opened(
    mock_app: Any, tmp_path: Path
) -> None:
    """On a deployment earlier checks have already counted in `/users/me/sessions/me`;
    `ratelimit.literal-route` goes on from the server's last count instead of expecting a
    new window."""
    result = _deployment_run(
        mock_app,
        tmp_path,
        "ratelimit.headers-getSelfSession or ratelimit.literal-route-getSelfSession",
    )
    assert result.returncode == 0, str(result)
    # The case this is about happened: `me` had counted before the literal-route check.
    assert _journal_limits(mock_app, "GET", "/users/me/sessions/me").count("Limit") >= 3


def _journal_limits(mock_app: Any, method: str, path: str) -> str:
    journal = mock_app.test_client().get("/_mock/requests?limit=1000").get_json()["items"]
    return " ".join(
        f"RateLimit-Limit: {e.get('responseHeaders', {}).get('RateLimit-Limit')}"
        for e in journal
        if e["method"] == method and e["path"].endswith(path)
    )


def test_an_unforeseen_429_is_named_in_the_summary(mock_app: Any, tmp_path: Path) -> None:
    """A 429 the pacing did not plan for says which request met it and why, so the plan
    or the pacing can be put right."""
    refused: list[str] = []

    def refuse_one_list(seen: Any, ledger: Any) -> Any:
        if seen.method == "GET" and seen.path == "/api/users/me/sessions" and not refused:
            refused.append(seen.path)
            headers = {"RateLimit-Reset": "1", "RateLimit-Reason": "burst"}
            message = "You Have Been Ratelimited. Please Try Again Later."
            return json_response(429, {"code": "RATELIMITED_ERROR", "message": message}, headers)
        return None

    broken = Broken(mock_app, request=refuse_one_list)
    result = _deployment_run(broken, tmp_path, "paging.count-getSelfSessions")
    assert "1 429 answer(s) the plan did not foresee" in result.output, str(result)
    assert "unforeseen 429s: GET /api/users/me/sessions (burst) x1" in result.output
