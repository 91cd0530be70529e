"""Kill switches: every operation the spec attaches a switch to, GLOBAL, staff bypass,
and the staff endpoints that flip them."""

from __future__ import annotations

import pytest

from mockserver.clock import Clock
from mockserver.models import Backend
from mockserver.spec import load_spec

from .conftest import Api, assert_error
from .helpers import staff_login

SPEC = load_spec()
NAMES = {v: k for k, v in SPEC.kill_switch_ids.items()}
# (switch, operation) for every switch the spec attaches to an operation.
ATTACHED = [(switch, op) for op in SPEC.operations.values() for switch in op.kill_switches]
BODIES = {
    "login": {"username": "alice", "password": "password"},
    "createScopedSession": {"name": "x", "permissionFlags": 2, "password": "password"},
    "deleteSelfSessions": {"ids": ["1000000000"]},
}


def request_for(op, uid: str = "1000000000000") -> tuple[str, str, dict | None]:  # type: ignore[no-untyped-def]
    path = op.path.format(sid="1000000000", uid=uid, id="4")
    return op.method, path, BODIES.get(op.operation_id)


@pytest.mark.parametrize(
    ("switch", "op"), ATTACHED, ids=[f"{NAMES[s]}-{op.operation_id}" for s, op in ATTACHED]
)
def test_each_attached_switch_makes_its_operation_503(
    api: Api, backend: Backend, switch: int, op
) -> None:  # type: ignore[no-untyped-def]
    token = None if op.authentication == "forbidden" else api.login()
    backend.set_kill_switch(switch, True)
    method, path, body = request_for(op)
    response = api.call(method, path, token, json=body)
    assert_error(response, 503, "SERVICE_UNAVAILABLE_ERROR", "Service Unavailable", feature=switch)


@pytest.mark.parametrize("switch", sorted(NAMES), ids=[NAMES[s] for s in sorted(NAMES)])
def test_each_switch_affects_only_the_operations_it_is_attached_to(
    api: Api, backend: Backend, switch: int
) -> None:
    token = api.login()
    backend.set_kill_switch(switch, True)
    for op in SPEC.operations.values():
        if (
            op.staff_only
            or op.authentication == "forbidden"
            or op.operation_id == "createScopedSession"
        ):
            continue
        method, path, body = request_for(op)
        response = api.call(method, path, token, json=body)
        hit = switch in op.kill_switches or NAMES[switch] == "GLOBAL"
        assert (response.status_code == 503) is hit, (op.operation_id, response.json)


def test_login_switch_refuses_staff_too_because_login_is_anonymous(
    api: Api, backend: Backend
) -> None:
    backend.set_kill_switch(4, True)
    response = api.call("POST", "/login", json={"username": "carol", "password": "password"})
    assert_error(response, 503, "SERVICE_UNAVAILABLE_ERROR", "Service Unavailable", feature=4)


def test_global_blocks_every_operation_for_non_staff_with_feature_8(
    api: Api, backend: Backend
) -> None:
    token = api.login()
    backend.set_kill_switch(8, True)
    for op in SPEC.operations.values():
        method, path, body = request_for(op, backend.find_user("alice").id)  # type: ignore[union-attr]
        response = api.call(
            method, path, None if op.authentication == "forbidden" else token, json=body
        )
        assert_error(response, 503, "SERVICE_UNAVAILABLE_ERROR", "Service Unavailable", feature=8)


def test_global_is_checked_before_the_operations_own_switch(api: Api, backend: Backend) -> None:
    token = api.login()
    backend.set_kill_switch(1, True)
    backend.set_kill_switch(8, True)
    response = api.call("DELETE", "/users/me/sessions/me", token)
    assert response.json["feature"] == 8


def test_global_is_checked_before_authentication(api: Api, backend: Backend) -> None:
    backend.set_kill_switch(8, True)
    response = api.call("GET", "/users/me/sessions")
    assert response.status_code == 503


def test_staff_bypass_kill_switches(api: Api, backend: Backend, clock: Clock) -> None:
    staff = staff_login(api, clock)
    backend.set_kill_switch(8, True)
    backend.set_kill_switch(1, True)
    assert api.call("GET", "/users/me/sessions", staff).status_code == 200
    assert api.call("DELETE", "/users/me/sessions/1000000000", staff).status_code == 404


def _reverified(api: Api, clock: Clock, method: str, path: str, staff: str):  # type: ignore[no-untyped-def]
    from mockserver.secondfactor import totp_code
    from mockserver.seed import CAROL_TOTP_SECRET

    challenge = api.call(method, path, staff, json={"password": "password"}).json
    answer = {
        "token": challenge["token"],
        "type": "totp",
        "code": totp_code(CAROL_TOTP_SECRET, clock.now()),
    }
    return api.call(method, path, staff, json={"2fa": answer})


def test_staff_flip_a_switch_through_the_api(api: Api, clock: Clock) -> None:
    staff = staff_login(api, clock)
    listing = api.call("GET", "/killswitches", staff).json
    assert listing["count"] == 9 and not any(item["state"] for item in listing["items"])
    response = _reverified(api, clock, "PUT", "/killswitches/4", staff)
    assert response.status_code == 200
    assert response.json["items"][4] == {"id": 4, "name": "ACCOUNT_LOGIN", "state": True}
    blocked = api.fresh_ip().call(
        "POST", "/login", json={"username": "alice", "password": "password"}
    )
    assert blocked.status_code == 503
    clock.advance(31)  # a fresh TOTP step for the next answer
    assert (
        _reverified(api, clock, "DELETE", "/killswitches", staff).json["items"][4]["state"] is False
    )


def test_kill_switch_endpoints_are_staff_only(api: Api) -> None:
    response = api.call("GET", "/killswitches", api.login())
    assert_error(response, 403, "INSUFFICIENT_PERMISSIONS_ERROR", "Insufficient Permissions")
