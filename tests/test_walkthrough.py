"""A scripted walk through all 12 operations as the contract describes them, on one
mock, from a user created through the control API."""

from __future__ import annotations

from flask import Flask

from mockserver.clock import Clock
from mockserver.secondfactor import totp_code
from mockserver.seed import CAROL_TOTP_SECRET

from .conftest import Api


def test_walk_through_all_twelve_operations(app: Flask, api: Api, clock: Clock) -> None:
    control = app.test_client()
    user = control.post("/_mock/users", json={"username": "walker", "password": "pw"}).json
    uid = user["id"]
    api.pace = 2

    # 1. login, 2. scoped sessions
    login = api.call("POST", "/login", json={"username": "walker", "password": "pw"})
    assert login.status_code == 201
    token = login.json["token"]
    read_only = api.call(
        "POST",
        "/users/me/sessions",
        token,
        json={"name": "read", "permissionFlags": 32, "password": "pw"},
    )
    assert read_only.status_code == 201 and read_only.json["permissionFlags"] == 32
    clock.advance(1)
    extra = [
        api.call(
            "POST",
            "/users/me/sessions",
            token,
            json={"name": f"e{i}", "permissionFlags": 1, "password": "pw"},
        )
        for i in range(2)
    ]
    assert [r.status_code for r in extra] == [201, 201]
    # The creations opened the /users/me/sessions bucket at 4 per 5 minutes, and listing
    # shares it (observed rows 53-60): wait out the window, as a client would have to.
    clock.advance(300)

    # 3. read the current session and one by id; 5. list and page
    me = api.call("GET", "/users/me/sessions/me", token).json
    assert me["id"] == str(login.json["exp"] - 86400)
    assert (
        api.call("GET", f"/users/me/sessions/{read_only.json['id']}", token).json["name"] == "read"
    )
    listing = api.call("GET", "/users/me/sessions", token).json
    assert listing["count"] == 4
    page = api.call("GET", "/users/me/sessions?limit=2&offset=2", token).json
    assert page["items"] == listing["items"][2:4]

    # scope refusal: the read-only session cannot delete
    denied = api.call(
        "DELETE", f"/users/me/sessions/{extra[0].json['id']}", read_only.json["token"]
    )
    assert denied.status_code == 403 and denied.json["code"] == "INSUFFICIENT_PERMISSIONS_ERROR"

    # 7. delete one; its token is refused at once
    deleted = api.call("DELETE", f"/users/me/sessions/{extra[0].json['id']}", token)
    assert deleted.json == {
        "code": "DELETE_SESSION_SUCCESS",
        "message": "Session Successfully Deleted",
    }
    assert api.call("GET", "/users/me/sessions/me", extra[0].json["token"]).status_code == 401

    # 9. delete many, unknown ids ignored
    many = api.call(
        "DELETE", "/users/me/sessions", token, json={"ids": [extra[1].json["id"], "1000000000"]}
    )
    assert many.json == {
        "code": "DELETE_SESSIONS_SUCCESS",
        "message": "Sessions Successfully Deleted",
        "count": 1,
    }

    # 11. delete all but the current one, then with include-self
    assert api.call("DELETE", "/users/me/sessions/all", token).json["count"] == 1
    assert api.call("GET", "/users/me/sessions", token).json["count"] == 1
    assert api.call("DELETE", "/users/me/sessions/all?include-self=true", token).json["count"] == 1
    assert api.call("GET", "/users/me/sessions", token).status_code == 401

    # staff refusal for an ordinary user, then the staff variants as carol
    again = api.fresh_ip()
    again.pace = 2
    token = again.call("POST", "/login", json={"username": "walker", "password": "pw"}).json[
        "token"
    ]
    refused = again.call("GET", f"/users/{uid}/sessions", token)
    assert refused.status_code == 403 and refused.json["code"] == "INSUFFICIENT_PERMISSIONS_ERROR"
    challenge = again.call(
        "POST", "/login", json={"username": "carol", "password": "password"}
    ).json
    answer = {
        "token": challenge["token"],
        "type": "totp",
        "code": totp_code(CAROL_TOTP_SECRET, clock.now()),
    }
    staff = again.call("POST", "/login", json={"2fa": answer}).json["token"]

    # 6. list, 4. read, 8. delete one, 10. delete many, 12. delete all (reverified)
    theirs = again.call("GET", f"/users/{uid}/sessions", staff).json
    assert theirs["count"] == 1
    sid = theirs["items"][0]["id"]
    assert again.call("GET", f"/users/{uid}/sessions/{sid}", staff).json["id"] == sid
    assert again.call("DELETE", f"/users/{uid}/sessions/{sid}", staff).status_code == 200
    assert again.call("GET", "/users/me/sessions", token).status_code == 401
    assert (
        again.call("DELETE", f"/users/{uid}/sessions", staff, json={"ids": [sid]}).json["count"]
        == 0
    )
    token = (
        api.fresh_ip()
        .call("POST", "/login", json={"username": "walker", "password": "pw"})
        .json["token"]
    )
    first = again.call("DELETE", f"/users/{uid}/sessions/all", staff, json={"password": "password"})
    assert first.json["code"] == "SECOND_FACTOR_CHALLENGE_REQUIRED_ERROR"
    clock.advance(30)
    answer = {
        "token": first.json["token"],
        "type": "totp",
        "code": totp_code(CAROL_TOTP_SECRET, clock.now()),
    }
    all_gone = again.call("DELETE", f"/users/{uid}/sessions/all", staff, json={"2fa": answer})
    assert all_gone.json == {
        "code": "DELETE_SESSIONS_SUCCESS",
        "message": "Sessions Successfully Deleted",
        "count": 1,
    }
    assert again.call("GET", "/users/me/sessions", token).status_code == 401
