"""The mock inside someone else's tests: `MockServer` and its control client, the pytest
fixtures and options of `pytest_cumulonimbus`, and the plugin as a good neighbour in an
unrelated project installed in the same environment."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from mockserver.records import SeedUser
from mockserver.testing import ControlError, MockControl, MockServer

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples/python-tests/test_with_the_mock.py"
ALICE = {"username": "alice", "password": "password"}


def login(base_url: str, body: dict[str, Any] = ALICE) -> requests.Response:
    return requests.post(f"{base_url}/login", json=body, timeout=10)


def assert_error(response: requests.Response, status: int, code: str, message: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    assert response.json()["message"] == message


@pytest.fixture(scope="module")
def mock() -> Any:
    with MockServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _reset(request: pytest.FixtureRequest) -> None:
    if "mock" in request.fixturenames:
        request.getfixturevalue("mock").control.reset()


# MockServer ---------------------------------------------------------------------------------


def test_the_mock_is_served_on_a_free_loopback_port(mock: MockServer) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/api", mock.base_url)
    assert login(mock.base_url).status_code == 201


def test_a_session_is_refused_once_the_clock_passes_its_expiry(mock: MockServer) -> None:
    me = {"Authorization": login(mock.base_url).json()["token"]}
    mock.control.advance(86_401)
    response = requests.get(f"{mock.base_url}/users/me/sessions", headers=me, timeout=10)
    assert_error(response, 401, "INVALID_SESSION_ERROR", "Invalid Session")


def test_an_added_user_can_log_in(mock: MockServer) -> None:
    mock.control.add_user("erin", "erin-pass")
    assert login(mock.base_url, {"username": "erin", "password": "erin-pass"}).status_code == 201


def test_reset_forgets_added_users(mock: MockServer) -> None:
    mock.control.add_user("erin", "erin-pass")
    mock.control.reset()
    response = login(mock.base_url, {"username": "erin", "password": "erin-pass"})
    assert_error(response, 404, "INVALID_USER_ERROR", "Invalid User")


def test_a_kill_switch_turns_login_off(mock: MockServer) -> None:
    mock.control.set_kill_switch(4)  # ACCOUNT_LOGIN
    assert_error(login(mock.base_url), 503, "SERVICE_UNAVAILABLE_ERROR", "Service Unavailable")


def test_a_frozen_clock_stands_still(mock: MockServer) -> None:
    frozen_at = mock.control.freeze()
    first, second = mock.control.clock(), mock.control.clock()
    assert (first["now"], second["now"], second["frozen"]) == (frozen_at, frozen_at, True)


def test_advance_moves_a_frozen_clock_by_exactly_that_much(mock: MockServer) -> None:
    frozen_at = mock.control.freeze()
    assert mock.control.advance(90) == frozen_at + 90


def test_the_journal_shows_what_the_code_under_test_sent(mock: MockServer) -> None:
    login(mock.base_url)
    last = mock.control.requests()[-1]
    assert (last["method"], last["path"], last["status"]) == ("POST", "/api/login", 201)


def test_a_refused_control_request_raises_with_status_and_body(mock: MockServer) -> None:
    with pytest.raises(ControlError) as refused:
        mock.control.set_kill_switch(999)
    assert refused.value.status == 404
    assert refused.value.body["code"] == "INVALID_KILLSWITCH_ERROR"


@pytest.mark.parametrize(
    "users",
    [[SeedUser("erin", "erin-pass")], [{"username": "erin", "password": "erin-pass"}]],
    ids=["seed-users", "control-api-objects"],
)
def test_given_users_replace_the_demo_users(users: list[Any]) -> None:
    with MockServer(users=users) as server:
        assert_error(login(server.base_url), 404, "INVALID_USER_ERROR", "Invalid User")
        erin = {"username": "erin", "password": "erin-pass"}
        assert login(server.base_url, erin).status_code == 201


def test_users_come_from_a_seed_file(tmp_path: Path) -> None:
    seed = tmp_path / "users.yaml"
    seed.write_text("users:\n  - {username: erin, password: erin-pass}\n", encoding="utf-8")
    with MockServer(users=seed) as server:
        assert [u["username"] for u in server.control.users()] == ["erin"]


def test_the_control_client_sends_the_configured_token() -> None:
    with MockServer({"CONTROL_TOKEN": "s3cret"}) as server:
        server.control.reset()
        with pytest.raises(ControlError) as refused:
            MockControl(server.url).reset()
    assert refused.value.status == 401


def test_strict_mode_records_no_violation_for_a_login() -> None:
    with MockServer(strict=True) as server:
        assert login(server.base_url).status_code == 201
        assert server.strict_violations() == []
        assert server.app is not None and server.app.config["STRICT_RESPONSES"] is True


def test_a_stopped_server_has_no_url() -> None:
    server = MockServer()
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.url


# The fixtures, in a test run of their own --------------------------------------------------


def test_each_test_gets_the_mock_reset(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        PORTS = []

        def test_adds_a_user(cumulonimbus_mock):
            cumulonimbus_mock.control.add_user("erin")
            PORTS.append(cumulonimbus_mock.url)

        def test_does_not_see_it(cumulonimbus_mock):
            names = [u["username"] for u in cumulonimbus_mock.control.users()]
            assert "erin" not in names
            assert PORTS == [cumulonimbus_mock.url]  # one server, reset, not a new one
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_a_profile_switched_by_one_test_does_not_leak_into_the_next(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        def test_switches_to_production(cumulonimbus_mock):
            cumulonimbus_mock.control.set_profile("5.3.0")
            assert cumulonimbus_mock.control.profile() == "5.3.0"

        def test_gets_the_contract_again(cumulonimbus_mock):
            assert cumulonimbus_mock.control.profile() is None
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)


@pytest.mark.parametrize(("profile", "status"), [(None, 403), ("5.3.0", 200)])
def test_a_ban_ends_sessions_only_by_the_contract(
    mock: MockServer, profile: str | None, status: int
) -> None:
    mock.control.set_profile(profile)
    try:
        token = login(mock.base_url).json()["token"]
        mock.control.ban("alice")
        me = requests.get(
            f"{mock.base_url}/users/me/sessions/me", headers={"Authorization": token}, timeout=10
        )
        assert me.status_code == status
    finally:
        mock.control.set_profile(None)  # the module's mock outlives this test


def test_the_module_scoped_mock_keeps_its_state(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_adds_a_user(cumulonimbus_mock_module):
            cumulonimbus_mock_module.control.add_user("erin")

        def test_still_sees_it(cumulonimbus_mock_module):
            names = [u["username"] for u in cumulonimbus_mock_module.control.users()]
            assert "erin" in names
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_overridden_options_reach_create_app(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import pytest
        from mockserver.records import SeedUser

        @pytest.fixture
        def cumulonimbus_mock_options():
            return {"SEED_USERS": [SeedUser("erin", "erin-pass")], "STRICT_RESPONSES": True}
        """
    )
    pytester.makepyfile(
        """
        def test_only_erin(cumulonimbus_mock):
            assert [u["username"] for u in cumulonimbus_mock.control.users()] == ["erin"]
            assert cumulonimbus_mock.app.config["STRICT_RESPONSES"] is True
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_the_readme_example_passes_in_an_empty_directory(pytester: pytest.Pytester) -> None:
    shutil.copy(EXAMPLE, pytester.path / EXAMPLE.name)
    # A subprocess: the fixture must come from the installed entry point alone.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", EXAMPLE.name)
    result.assert_outcomes(passed=1)


def test_the_readme_shows_the_example_as_it_is() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Use it from Python tests", 1)[1].split("\n## ", 1)[0]
    assert EXAMPLE.read_text(encoding="utf-8") in section


# Options ---------------------------------------------------------------------------------

SHOW_SETTINGS = """
from pytest_cumulonimbus import setting

def test_show(request):
    print("SETTINGS", setting(request.config, "run-slow"), setting(request.config, "examples"))
"""


@pytest.mark.parametrize(
    ("ini", "env", "args", "expected"),
    [
        ("", {}, [], "False 0"),
        ("cumulonimbus_run_slow = true\ncumulonimbus_examples = 7", {}, [], "True 7"),
        ("cumulonimbus_examples = 7", {"CUMULONIMBUS_EXAMPLES": "5"}, [], "False 5"),
        (
            "cumulonimbus_examples = 7",
            {"CUMULONIMBUS_EXAMPLES": "5"},
            ["--cumulonimbus-examples", "3", "--cumulonimbus-run-slow"],
            "True 3",
        ),
    ],
    ids=["defaults", "ini", "env-over-ini", "command-line-over-all"],
)
def test_a_setting_comes_from_command_line_env_or_ini(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    ini: str,
    env: dict[str, str],
    args: list[str],
    expected: str,
) -> None:
    monkeypatch.delenv("CUMULONIMBUS_EXAMPLES", raising=False)
    monkeypatch.delenv("CUMULONIMBUS_RUN_SLOW", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile(SHOW_SETTINGS)
    result = pytester.runpytest("-p", "no:cacheprovider", "-s", *args)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*SETTINGS {expected}"])


def test_every_option_of_ours_has_the_prefix_and_an_ini_setting(
    pytester: pytest.Pytester,
) -> None:
    text = "\n".join(pytester.runpytest("--help").outlines)
    section = text.split("Cumulonimbus session API (cumulonimbus-contract):", 1)[1]
    section = section.split("\n\n", 1)[0]
    flags = re.findall(r"^  (--[\w-]+)", section, re.M)
    assert flags, section
    assert [f for f in flags if not f.startswith("--cumulonimbus-")] == []
    inis = re.findall(r"^  (cumulonimbus_\w+) ", text, re.M)
    assert sorted(inis) == sorted(f[2:].replace("-", "_") for f in flags)


# A good neighbour ----------------------------------------------------------------------------


def unrelated_project(root: Path) -> Path:
    """Someone else's project: its own --run-slow and its own top-level `conformance`."""
    (root / "conformance").mkdir()
    (root / "conformance/__init__.py").write_text("OWNER = 'the unrelated project'\n")
    (root / "conftest.py").write_text(
        "def pytest_addoption(parser):\n"
        "    parser.addoption('--run-slow', action='store_true', help='their own option')\n"
    )
    (root / "test_theirs.py").write_text(
        "import sys\n"
        "import conformance\n\n"
        "def test_their_option(request):\n"
        "    assert request.config.getoption('run_slow') is True\n\n"
        "def test_their_package():\n"
        "    assert conformance.OWNER == 'the unrelated project'\n\n"
        "def test_nothing_of_ours_was_imported_at_start_up():\n"
        "    assert 'mockserver' not in sys.modules\n"
        "    assert 'conformance.plugin' not in sys.modules\n"
    )
    return root


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUMULONIMBUS_", "PYTEST_"))}
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_an_unrelated_project_runs_as_if_we_were_not_installed(tmp_path: Path) -> None:
    project = unrelated_project(tmp_path)
    done = run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--run-slow", "-q"], project
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout


def test_the_fixture_works_beside_their_own_conformance_package(tmp_path: Path) -> None:
    project = unrelated_project(tmp_path)
    shutil.copy(EXAMPLE, project / EXAMPLE.name)
    done = run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", EXAMPLE.name], project
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_conformance_command_runs_our_suite_not_theirs(tmp_path: Path) -> None:
    project = unrelated_project(tmp_path)
    command = Path(sys.executable).with_name("cumulonimbus-conformance")
    done = run([str(command), "--collect-only", "-q"], project)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"test_schema\.py::test_generated\[", done.stdout)
    assert "test_theirs.py" not in done.stdout


def test_the_readme_documents_every_create_app_key() -> None:
    from mockserver.app import DEFAULTS

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Use it from Python tests", 1)[1].split("\n## ", 1)[0]
    assert [key for key in DEFAULTS if f"`{key}`" not in section] == []
