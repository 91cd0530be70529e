import requests


def test_a_session_ends_after_a_day(cumulonimbus_mock):
    api = cumulonimbus_mock.base_url  # http://127.0.0.1:<free port>/api
    login = requests.post(f"{api}/login", json={"username": "alice", "password": "password"})
    me = {"Authorization": login.json()["token"]}
    assert requests.get(f"{api}/users/me/sessions", headers=me).json()["count"] == 1
    cumulonimbus_mock.control.advance(86_401)  # a day and a second later, at once
    assert requests.get(f"{api}/users/me/sessions", headers=me).status_code == 401
