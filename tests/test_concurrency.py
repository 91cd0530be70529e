"""Many clients at once against a real threaded server: no 5xx, and afterwards the state
is exactly consistent with what the clients saw."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from werkzeug.serving import make_server

from mockserver.app import create_app

USERS = 6
ROUNDS = 12  # per user: a bounded amount of work, not a bounded time


@pytest.fixture
def server() -> Iterator[tuple[str, object]]:
    app = create_app({"STRICT_RESPONSES": True})
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.port}", app
    httpd.shutdown()
    thread.join(timeout=10)
    assert not app.extensions["cumulonimbus"].validator.violations


def test_concurrent_logins_creates_lists_and_deletes_stay_consistent(server) -> None:  # type: ignore[no-untyped-def]
    base, _app = server
    addresses = (f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}" for i in itertools.count(1))
    lock = threading.Lock()

    def ip() -> dict[str, str]:
        # A fresh client address per request keeps every rate limit out of the way.
        with lock:
            return {"X-Forwarded-For": next(addresses)}

    for n in range(USERS):
        response = requests.post(
            f"{base}/_mock/users", json={"username": f"u{n}", "password": "pw"}, timeout=10
        )
        assert response.status_code == 201

    statuses: list[int] = []

    def work(n: int) -> tuple[set[str], set[str], list[str]]:
        session = requests.Session()
        created: set[str] = set()
        deleted: set[str] = set()
        dead_tokens: list[str] = []
        login = session.post(
            f"{base}/api/login",
            json={"username": f"u{n}", "password": "pw"},
            headers=ip(),
            timeout=10,
        )
        statuses.append(login.status_code)
        token = login.json()["token"]
        created.add(
            session.get(
                f"{base}/api/users/me/sessions/me",
                headers={"Authorization": token, **ip()},
                timeout=10,
            ).json()["id"]
        )
        for round_ in range(ROUNDS):
            body = {"name": f"r{round_}", "permissionFlags": 1, "password": "pw"}
            made = session.post(
                f"{base}/api/users/me/sessions",
                json=body,
                headers={"Authorization": token, **ip()},
                timeout=10,
            )
            statuses.append(made.status_code)
            created.add(made.json()["id"])
            listing = session.get(
                f"{base}/api/users/me/sessions",
                headers={"Authorization": token, **ip()},
                timeout=10,
            )
            statuses.append(listing.status_code)
            if round_ % 3 == 0:
                gone = session.delete(
                    f"{base}/api/users/me/sessions/{made.json()['id']}",
                    headers={"Authorization": token, **ip()},
                    timeout=10,
                )
                statuses.append(gone.status_code)
                deleted.add(made.json()["id"])
                dead_tokens.append(made.json()["token"])
        return created, deleted, dead_tokens

    with ThreadPoolExecutor(max_workers=USERS) as pool:
        results = list(pool.map(work, range(USERS)))

    assert all(status < 500 for status in statuses), sorted(set(statuses))
    assert set(statuses) <= {200, 201}, sorted(set(statuses))
    users = {
        u["username"]: u for u in requests.get(f"{base}/_mock/users", timeout=10).json()["items"]
    }
    for n, (created, deleted, dead_tokens) in enumerate(results):
        listed = {s["id"] for s in users[f"u{n}"]["sessions"]}
        assert listed == created - deleted
        assert len(created) == ROUNDS + 1  # every session got its own id
        for token in dead_tokens:
            refused = requests.get(
                f"{base}/api/users/me/sessions/me",
                headers={"Authorization": token, **ip()},
                timeout=10,
            )
            assert refused.status_code == 401


def test_rate_limit_counts_stay_exact_under_concurrent_requests(server) -> None:  # type: ignore[no-untyped-def]
    base, _app = server
    requests.post(f"{base}/_mock/clock", json={"frozen": True}, timeout=10)
    barrier = threading.Barrier(30)
    statuses: list[int] = []

    def hello() -> None:
        barrier.wait()
        statuses.append(
            requests.get(
                f"{base}/api/", headers={"X-Forwarded-For": "192.0.2.77"}, timeout=10
            ).status_code
        )

    threads = [threading.Thread(target=hello) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses.count(200) == 3 and statuses.count(429) == 27
    buckets = requests.get(f"{base}/_mock/ratelimits", timeout=10).json()["items"]
    (bucket,) = [b for b in buckets if b["ip"] == "192.0.2.77"]
    assert bucket["count"] == 3  # the 27 refusals were not counted
