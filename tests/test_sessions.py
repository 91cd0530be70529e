"""Reading, paging and deleting one's own sessions."""

from __future__ import annotations

import pytest

from mockserver.clock import Clock

from .conftest import Api, assert_error


def many_sessions(api: Api, count: int) -> str:
    """A token, plus ``count - 1`` more sessions of alice created through scoped sessions."""
    token = api.login()
    for index in range(count - 1):
        api.scoped(token, 1, name=f"s{index}")
        if index % 3 == 2:
            api.clock.advance(300)  # the scoped-session limit is 4 per 5 minutes
    return token


def test_get_current_session_by_me(api: Api) -> None:
    token = api.login()
    body = api.call("GET", "/users/me/sessions/me", token).json
    assert set(body) == {"id", "exp", "name", "permissionFlags", "usedAt", "createdAt", "updatedAt"}
    assert body["permissionFlags"] is None


def test_get_session_by_id(api: Api) -> None:
    token = api.login()
    sid = api.call("GET", "/users/me/sessions/me", token).json["id"]
    assert api.call("GET", f"/users/me/sessions/{sid}", token).json["id"] == sid


def test_unknown_session_id_is_404_invalid_session(api: Api) -> None:
    response = api.call("GET", "/users/me/sessions/1000000000", api.login())
    assert_error(response, 404, "INVALID_SESSION_ERROR", "Invalid Session")


def test_another_users_session_id_is_not_found(api: Api, clock: Clock) -> None:
    alice = api.login()
    clock.advance(10)  # a different second, so the two ids differ
    daves = api.fresh_ip().login("dave")
    sid = api.call("GET", "/users/me/sessions/me", daves).json["id"]
    response = api.call("GET", f"/users/me/sessions/{sid}", alice)
    assert_error(response, 404, "INVALID_SESSION_ERROR", "Invalid Session")


def test_list_is_newest_first_with_total_count(api: Api) -> None:
    token = many_sessions(api, 5)
    body = api.call("GET", "/users/me/sessions", token).json
    assert body["count"] == 5
    ids = [int(item["id"]) for item in body["items"]]
    assert ids == sorted(ids, reverse=True)
    assert set(body["items"][0]) == {"id", "name"}


def test_limit_and_offset_page_through_the_list(api: Api) -> None:
    token = many_sessions(api, 5)
    everything = api.call("GET", "/users/me/sessions", token).json["items"]
    page = api.call("GET", "/users/me/sessions?limit=2&offset=1", token).json
    assert page["count"] == 5
    assert page["items"] == everything[1:3]


def test_an_offset_past_any_size_gives_an_empty_page(api: Api) -> None:
    query = "offset=27879413481191415808&limit=23"  # beyond sys.maxsize
    body = api.call("GET", f"/users/me/sessions?{query}", api.login()).json
    assert body == {"count": 1, "items": []}


def test_limit_zero_gives_only_the_count(api: Api) -> None:
    body = api.call("GET", "/users/me/sessions?limit=0", api.login()).json
    assert body == {"count": 1, "items": []}


@pytest.mark.parametrize(
    ("query", "field"),
    [("limit=51", "limit"), ("limit=-1", "limit"), ("limit=abc", "limit"), ("offset=-1", "offset"),
     ("offset=1.5", "offset")],
)  # fmt: skip
def test_limit_or_offset_out_of_range_is_400(api: Api, query: str, field: str) -> None:
    response = api.call("GET", f"/users/me/sessions?{query}", api.login())
    assert_error(response, 400, "MISSING_FIELDS_ERROR", "Missing Fields", fields=[field])


def test_expired_sessions_are_neither_listed_nor_counted(api: Api, clock: Clock) -> None:
    short = api.login()
    long = api.login(rememberMe=True)
    clock.advance(86401)
    body = api.call("GET", "/users/me/sessions", long).json
    assert body["count"] == 1
    assert api.call("GET", "/users/me/sessions/me", short).status_code == 401


def test_delete_one_session_by_id(api: Api) -> None:
    token = api.login()
    other = api.login()
    sid = api.call("GET", "/users/me/sessions/me", other).json["id"]
    response = api.call("DELETE", f"/users/me/sessions/{sid}", token)
    assert response.json == {
        "code": "DELETE_SESSION_SUCCESS",
        "message": "Session Successfully Deleted",
    }
    assert api.call("GET", "/users/me/sessions/me", other).status_code == 401
    assert api.call("GET", "/users/me/sessions/me", token).status_code == 200


def test_delete_unknown_session_is_404(api: Api) -> None:
    response = api.call("DELETE", "/users/me/sessions/1000000000", api.login())
    assert_error(response, 404, "INVALID_SESSION_ERROR", "Invalid Session")


def test_bulk_delete_counts_what_was_deleted_and_me_is_the_current(api: Api) -> None:
    token = api.login()
    other = api.login()
    sid = api.call("GET", "/users/me/sessions/me", other).json["id"]
    response = api.call(
        "DELETE", "/users/me/sessions", token, json={"ids": ["me", sid, "1000000000"]}
    )
    assert response.json == {
        "code": "DELETE_SESSIONS_SUCCESS",
        "message": "Sessions Successfully Deleted",
        "count": 2,
    }
    assert api.call("GET", "/users/me/sessions/me", token).status_code == 401


def test_bulk_delete_of_more_than_50_ids_is_400_body_too_large(api: Api) -> None:
    ids = [str(1_000_000_000 + i) for i in range(51)]
    response = api.call("DELETE", "/users/me/sessions", api.login(), json={"ids": ids})
    assert_error(response, 400, "BODY_TOO_LARGE_ERROR", "Body Too Large")


def test_bulk_delete_of_exactly_50_ids_is_fine(api: Api) -> None:
    ids = [str(1_000_000_000 + i) for i in range(50)]
    response = api.call("DELETE", "/users/me/sessions", api.login(), json={"ids": ids})
    assert response.json["count"] == 0


@pytest.mark.parametrize("body", [{}, {"ids": "me"}, {"ids": [1, 2]}, {"ids": None}])
def test_bulk_delete_with_bad_ids_is_400_missing_ids(api: Api, body: dict) -> None:
    response = api.call("DELETE", "/users/me/sessions", api.login(), json=body)
    assert_error(response, 400, "MISSING_FIELDS_ERROR", "Missing Fields", fields=["ids"])


def test_delete_all_keeps_the_current_session_by_default(api: Api) -> None:
    token = many_sessions(api, 3)
    response = api.call("DELETE", "/users/me/sessions/all", token)
    assert response.json["count"] == 2
    assert api.call("GET", "/users/me/sessions", token).json["count"] == 1


def test_delete_all_with_include_self_false_keeps_the_current_session(api: Api) -> None:
    token = many_sessions(api, 2)
    assert api.call("DELETE", "/users/me/sessions/all?include-self=false", token).json["count"] == 1
    assert api.call("GET", "/users/me/sessions/me", token).status_code == 200


def test_delete_all_with_include_self_true_deletes_everything(api: Api) -> None:
    token = many_sessions(api, 3)
    assert api.call("DELETE", "/users/me/sessions/all?include-self=true", token).json["count"] == 3
    assert api.call("GET", "/users/me/sessions/me", token).status_code == 401


@pytest.mark.parametrize("value", ["yes", "1", "TRUE", ""])
def test_include_self_other_than_true_or_false_is_400(api: Api, value: str) -> None:
    token = api.login()
    response = api.call("DELETE", f"/users/me/sessions/all?include-self={value}", token)
    assert_error(response, 400, "MISSING_FIELDS_ERROR", "Missing Fields", fields=["include-self"])
    assert api.call("GET", "/users/me/sessions/me", token).status_code == 200
