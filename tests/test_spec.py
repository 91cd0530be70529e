"""The spec: valid OpenAPI 3.1, every operation declares every policy, and the policies
say what the contract's operation table says."""

from __future__ import annotations

import pytest
from openapi_spec_validator import validate
from openapi_spec_validator.readers import read_from_filename

from mockserver.spec import HTTP_METHODS, POLICY_EXTENSIONS, load_document, load_spec, spec_dir

# The session API's policy table, row by row, written out by hand so that a change to the
# spec's x- extensions must be made twice on purpose: scope, staff, kill switches, route limit.
CONTRACT = {
    ("POST", "/login"): (None, False, ["ACCOUNT_LOGIN"], (4, 300)),
    ("POST", "/users/me/sessions"): (
        "BROWSER_SESSION_ONLY",
        False,
        ["ACCOUNT_MODIFY", "ACCOUNT_LOGIN"],
        (4, 300),
    ),
    ("GET", "/users/me/sessions/{sid}"): ("SESSION_READ", False, [], (100, 60)),
    ("GET", "/users/{uid}/sessions/{sid}"): ("STAFF_READ_SESSIONS", True, [], None),
    ("GET", "/users/me/sessions"): ("SESSION_READ", False, [], (100, 60)),
    ("GET", "/users/{uid}/sessions"): ("STAFF_READ_SESSIONS", True, [], None),
    ("DELETE", "/users/me/sessions/{sid}"): (
        "SESSION_MODIFY",
        False,
        ["ACCOUNT_MODIFY"],
        (100, 60),
    ),
    ("DELETE", "/users/{uid}/sessions/{sid}"): ("STAFF_MODIFY_SESSIONS", True, [], None),
    ("DELETE", "/users/me/sessions"): ("SESSION_MODIFY", False, ["ACCOUNT_MODIFY"], (100, 60)),
    ("DELETE", "/users/{uid}/sessions"): ("STAFF_MODIFY_SESSIONS", True, [], None),
    ("DELETE", "/users/me/sessions/all"): ("SESSION_MODIFY", False, ["ACCOUNT_MODIFY"], (100, 60)),
    ("DELETE", "/users/{uid}/sessions/all"): ("STAFF_MODIFY_SESSIONS", True, [], None),
}
REVERIFIED = {
    ("POST", "/login"),
    ("POST", "/users/me/sessions"),
    ("DELETE", "/users/{uid}/sessions/all"),
}


def _operations() -> list[tuple[str, str, dict]]:
    document = load_document()
    return [
        (method.upper(), path, item[method])
        for path, item in document["paths"].items()
        for method in HTTP_METHODS
        if method in item
    ]


def test_spec_is_valid_openapi_31() -> None:
    document, _ = read_from_filename(str(spec_dir() / "sessions.yaml"))
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_control_spec_is_valid_openapi_31() -> None:
    document, _ = read_from_filename(str(spec_dir() / "control.yaml"))
    validate(document)


@pytest.mark.parametrize(
    ("method", "path", "operation"), _operations(), ids=[f"{m} {p}" for m, p, _ in _operations()]
)
def test_every_operation_declares_every_policy(method: str, path: str, operation: dict) -> None:
    missing = [ext for ext in POLICY_EXTENSIONS if ext not in operation]
    assert not missing, f"{method} {path} lacks {missing}"


@pytest.mark.parametrize(("key", "row"), CONTRACT.items(), ids=[f"{m} {p}" for m, p in CONTRACT])
def test_policies_match_the_contract_table(key: tuple[str, str], row: tuple) -> None:
    scope, staff, switches, limit = row
    operation = load_document()["paths"][key[1]][key[0].lower()]
    assert operation["x-scope"] == scope
    assert operation["x-staff-only"] is staff
    assert operation["x-kill-switches"] == switches
    declared = operation["x-rate-limit"]
    assert (None if declared is None else (declared["limit"], declared["window"])) == limit
    expected = (
        "credentials" if key[1] == "/login" else ("password" if key in REVERIFIED else "none")
    )
    assert operation["x-identity-reverification"] == expected


def test_the_spec_has_the_twelve_session_operations() -> None:
    session_ops = {(m, p) for m, p, _ in _operations() if p.startswith(("/login", "/users"))}
    assert session_ops == set(CONTRACT)


def test_every_operation_documents_rate_limit_and_unavailable_answers() -> None:
    for method, path, operation in _operations():
        assert {"429", "500", "503"} <= set(operation["responses"]), f"{method} {path}"


def test_every_operation_has_an_example_for_its_success_answer() -> None:
    spec = load_spec()
    for op in spec.operations.values():
        if op.operation_id.endswith("KillSwitches") or "KillSwitch" in op.operation_id:
            continue
        success = next(code for code in op.raw["responses"] if code.startswith("2"))
        response = spec.resolve(op.raw["responses"][success])
        assert "example" in response["content"]["application/json"], op.operation_id


def test_permission_flags_and_kill_switches_are_tabled() -> None:
    spec = load_spec()
    assert spec.permission_flags["SESSION_READ"] == 32
    assert spec.permission_flags["STAFF_MODIFY_LOGLEVEL"] == 1048576
    assert spec.kill_switch_ids == {
        "ACCOUNT_CREATE": 0, "ACCOUNT_MODIFY": 1, "ACCOUNT_DELETE": 2, "ACCOUNT_EMAIL_VERIFY": 3,
        "ACCOUNT_LOGIN": 4, "FILE_CREATE": 5, "FILE_MODIFY": 6, "FILE_DELETE": 7, "GLOBAL": 8,
    }  # fmt: skip


def test_fixed_paths_are_never_session_ids() -> None:
    spec = load_spec()
    assert (
        spec.match("DELETE", "/api/users/me/sessions/all")[0].operation_id
        == "deleteAllSelfSessions"
    )  # type: ignore[index]
    # GET has no route of its own there: `all` is looked up as a session id (row 75).
    assert spec.match("GET", "/api/users/me/sessions/all")[1] == {"sid": "all"}  # type: ignore[index]
    assert spec.match("GET", "/api/users/me/sessions/me")[0].operation_id == "getSelfSession"  # type: ignore[index]


def test_an_operation_without_a_policy_is_refused_at_load() -> None:
    import copy

    from mockserver.spec import Spec

    document = copy.deepcopy(load_document())
    del document["paths"]["/login"]["post"]["x-scope"]
    with pytest.raises(ValueError, match="x-scope"):
        Spec(document)
