"""Scale-out: workers sharing their state through Redis behave exactly like one process."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from werkzeug.test import Client

from mockserver.app import create_app

from .helpers import free_port, start_mock, stop

ROOT = Path(__file__).resolve().parent.parent


def run_redis(port: int, folder: Path) -> subprocess.Popen[bytes]:
    """A throwaway redis-server on ``port``, answering once this returns."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed; .ci/run installs Debian's redis-server")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    import redis

    client = redis.Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            threading.Event().wait(0.025)  # waiting for a process to bind, not for the clock
    client.close()
    return process


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    process = run_redis(port, tmp_path_factory.mktemp("redis"))
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    return f"test-{request.node.name}"


def redis_then_memory(redis_url: str, prefix: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The configurations a test compares: state in Redis, then one process in memory."""
    return {"REDIS_URL": redis_url, "REDIS_PREFIX": prefix}, {}


def test_two_apps_on_one_redis_share_users_sessions_switches_and_clock(
    redis_url: str, prefix: str
) -> None:
    config = {"REDIS_URL": redis_url, "REDIS_PREFIX": prefix, "STRICT_RESPONSES": True}
    first, second = create_app(config).test_client(), create_app(config).test_client()
    assert first.post("/_mock/users", json={"username": "kim", "password": "pw"}).status_code == 201
    token = second.post("/api/login", json={"username": "kim", "password": "pw"}).json["token"]
    assert (
        first.get("/api/users/me/sessions/me", headers={"Authorization": token}).status_code == 200
    )
    assert (
        second.delete("/api/users/me/sessions/me", headers={"Authorization": token}).status_code
        == 200
    )
    assert (
        first.get("/api/users/me/sessions/me", headers={"Authorization": token}).status_code == 401
    )
    first.put("/_mock/killswitches/4", json={"state": True})
    assert second.post("/api/login", json={"username": "kim", "password": "pw"}).status_code == 503
    before = second.get("/_mock/clock").json["now"]
    first.post("/_mock/clock", json={"advance": 3600})
    assert second.get("/_mock/clock").json["now"] - before >= 3600
    assert second.get("/_mock/requests").json["count"] >= 4  # one journal for both


def test_rate_limits_are_shared_between_apps(redis_url: str, prefix: str) -> None:
    config = {"REDIS_URL": redis_url, "REDIS_PREFIX": prefix}
    apps = [create_app(config).test_client() for _ in range(2)]
    apps[0].post("/_mock/clock", json={"frozen": True})
    statuses = [
        apps[n % 2]
        .get("/api/users/me/sessions", headers={"X-Forwarded-For": "198.51.100.1"})
        .status_code
        for n in range(4)
    ]
    assert statuses == [401, 401, 401, 429]


def test_a_token_revoked_elsewhere_is_counted_as_anonymous(redis_url: str, prefix: str) -> None:
    # The global bucket's acquire goes ahead with the first round trip, for the user the
    # token names; when the session turns out revoked, that place is given back.
    config = {"REDIS_URL": redis_url, "REDIS_PREFIX": prefix}
    first, second = create_app(config).test_client(), create_app(config).test_client()
    first.post("/_mock/clock", json={"frozen": True})
    token = first.post("/api/login", json={"username": "alice", "password": "password"}).json[
        "token"
    ]
    first.get("/api/users/me/sessions/me", headers={"Authorization": token})  # held by `first`
    second.delete("/api/users/me/sessions/me", headers={"Authorization": token})
    response = first.get(
        "/api/users/me/sessions/me",
        headers={"Authorization": token, "X-Forwarded-For": "198.51.100.7"},
    )
    assert response.status_code == 401
    buckets = {
        (b["route"], b["user"]): b["count"]
        for b in first.get("/_mock/ratelimits").json["items"]
        if b["ip"] == "198.51.100.7"
    }
    assert buckets == {("*", None): 1}


def test_a_request_judged_on_state_that_moved_runs_again_and_counts_as_one_mock(
    redis_url: str, prefix: str
) -> None:
    # `second` judges its requests on the state it holds, and takes their limits in one
    # step that first checks that state is current; here it is not (a kill switch and a
    # ban went through `first`), so the requests run again: the buckets and the journal
    # are those of one mock in memory that saw the same calls.
    counts = []
    for config in redis_then_memory(redis_url, prefix):
        first = create_app(config).test_client()
        second = create_app(config).test_client() if config else first
        first.post("/_mock/clock", json={"frozen": True})
        token = second.post(
            "/api/login",
            json={"username": "alice", "password": "password"},
            headers={"X-Forwarded-For": "198.51.100.9"},
        ).json["token"]
        me = {"Authorization": token, "X-Forwarded-For": "198.51.100.8"}
        assert second.get("/api/users/me/sessions/me", headers=me).status_code == 200
        first.put("/_mock/killswitches/4", json={"state": True})
        login = {"username": "carol", "password": "password"}
        answer = second.post("/api/login", json=login, headers={"X-Forwarded-For": "198.51.100.9"})
        assert answer.status_code == 503
        first.patch("/_mock/users/alice", json={"banned": True})
        assert second.get("/api/users/me/sessions/me", headers=me).status_code == 403
        buckets = first.get("/_mock/ratelimits").json["items"]
        journal = first.get("/_mock/requests").json["items"]
        counts.append(
            (
                sorted((b["ip"], b["route"], b["user"], b["count"]) for b in buckets),
                [(e["path"], e["status"]) for e in journal],  # each request once
            )
        )
    assert counts[0] == counts[1]


def test_a_request_takes_its_limits_in_its_first_round_trip(redis_url: str, prefix: str) -> None:
    # The state check, usedAt, the global acquire and the route's in one script; the
    # journal entry waits for the worker's next round trip: one round trip, no other write.
    app = create_app({"REDIS_URL": redis_url, "REDIS_PREFIX": prefix})
    client = app.test_client()
    token = client.post("/api/login", json={"username": "alice", "password": "password"}).json[
        "token"
    ]
    wire = app.extensions["cumulonimbus"].backend.shared.wire
    trips, sent = [], []
    run, send = wire.run, wire.send
    wire.run = lambda *commands: trips.append(commands) or run(*commands)  # type: ignore[method-assign]
    wire.send = lambda *commands: sent.append(commands) or send(*commands)  # type: ignore[method-assign]
    answer = client.get(
        "/api/users/me/sessions/me",
        headers={"Authorization": token, "X-Forwarded-For": "198.51.100.10"},
    )
    del wire.run, wire.send
    assert answer.status_code == 200 and answer.headers["RateLimit-Remaining"]
    assert len(trips) == 1 and sent == []
    assert [command[0] for command in trips[0]] == ["EVALSHA"]


def test_a_requests_writes_are_in_redis_when_another_worker_is_asked_next(
    redis_url: str, prefix: str
) -> None:
    # Sent without waiting, yet before the answer: a client that hears it and asks
    # another worker finds usedAt and the journal entry there.
    first = create_app({"REDIS_URL": redis_url, "REDIS_PREFIX": prefix}).test_client()
    second = create_app({"REDIS_URL": redis_url, "REDIS_PREFIX": prefix}).test_client()
    login = {"username": "alice", "password": "password"}
    token = first.post("/api/login", json=login).json["token"]
    first.post("/_mock/clock", json={"advance": 5})
    for n in range(50):
        # A new address each time: no burst window fills.
        headers = {"Authorization": token, "X-Forwarded-For": f"198.51.100.{n + 1}"}
        used = first.get("/api/users/me/sessions/me", headers=headers)
        assert used.status_code == 200
        [last] = second.get("/_mock/requests?limit=1").json["items"]
        assert (last["ip"], last["path"]) == (headers["X-Forwarded-For"], used.request.path)
        seen = second.get("/api/users/me/sessions/me", headers=headers)
        assert seen.json["usedAt"] >= used.json["usedAt"]


def test_a_refused_write_sent_without_waiting_is_logged_and_fails_no_later_round_trip(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    import redis

    from mockserver.rediswire import Wire

    wire = Wire(redis.Redis.from_url(redis_url))
    wire.send(("SET", "cumulonimbus-test:wire", "x"), ("HSET", "cumulonimbus-test:wire", "a", "1"))
    # The next round trip is another request's: its own replies, in step, and no error
    # of its own (an earlier request's writes, already answered, are not its failure).
    with caplog.at_level("ERROR", logger="cumulonimbus-mock"):
        assert wire.run(("ECHO", "mine")) == [b"mine"]
    assert "Redis refused a request's last writes: WRONGTYPE" in caplog.text
    assert wire.write_failures == 1
    wire.send(("DEL", "cumulonimbus-test:wire"))
    assert wire.run(("EXISTS", "cumulonimbus-test:wire")) == [0]
    wire.connection.disconnect()


def test_a_request_after_a_refused_journal_write_is_answered(redis_url: str, prefix: str) -> None:
    # The journal's key holds a string: each request's LPUSH is refused. Every request
    # is answered as if Redis had taken it (the log says what was lost), none is refused
    # for another's writes, and the control API still moves the clock.
    import redis

    app = create_app({"REDIS_URL": redis_url, "REDIS_PREFIX": prefix})
    client = app.test_client()
    with redis.Redis.from_url(redis_url) as raw:
        raw.set(f"{prefix}:journal", "not a list")
    for n in range(4):
        headers = {"X-Forwarded-For": f"198.51.100.{n + 1}"}
        assert client.get("/api/", headers=headers).status_code == 200
    before = client.get("/_mock/clock").json["now"]
    assert client.post("/_mock/clock", json={"advance": 60}).status_code == 200
    assert client.get("/_mock/clock").json["now"] >= before + 60


def test_a_dropped_redis_connection_answers_503_and_gives_back_nothing_never_taken(
    redis_url: str, prefix: str
) -> None:
    # The connection dies while a request's limits are taken (its deferred global place
    # goes with the guarded step): the middleware's 503, the copy forgotten, and no
    # release of the global place the step never took (which would take another's).
    import redis

    app = create_app({"REDIS_URL": redis_url, "REDIS_PREFIX": prefix})
    client = app.test_client()
    client.post("/_mock/clock", json={"frozen": True})
    headers = {"X-Forwarded-For": "203.0.113.7"}
    for _ in range(2):
        assert client.get("/api/nope", headers=headers).status_code == 404
    client.post("/_mock/clock", json={"advance": 2})  # past the burst window
    shared = app.extensions["cumulonimbus"].backend.shared
    host, port = shared.wire._socket.getsockname()[:2]
    with redis.Redis.from_url(redis_url) as raw:
        assert raw.client_kill(f"{host}:{port}")
    answer = client.get("/api/nope", headers=headers)
    assert answer.status_code == 503
    assert answer.json["code"] == "SERVICE_UNAVAILABLE_ERROR"
    assert shared._grev == -1  # forgotten: the next request reloads everything
    counts = [item["count"] for item in client.get("/_mock/ratelimits").json["items"]]
    assert counts == [2]
    assert client.get("/api/nope", headers=headers).headers["RateLimit-Remaining"] == "97"


def test_a_timeout_after_the_guarded_step_ran_answers_503_and_counts_the_route_place(
    redis_url: str, prefix: str
) -> None:
    # Redis ran the step (the route's place taken, the global one given back) but its
    # reply never came: 503, nothing given back (the reply is unknown), and the place
    # counts until its route window ends, when Redis expires the bucket.
    import redis

    app = create_app({"REDIS_URL": redis_url, "REDIS_PREFIX": prefix})
    client = app.test_client()
    token = client.post("/api/login", json={"username": "alice", "password": "password"}).json[
        "token"
    ]
    shared = app.extensions["cumulonimbus"].backend.shared
    wire, guarded = shared.wire, app.extensions["cumulonimbus"].backend.limiter._guarded.sha
    run, trips = wire.run, []

    def late(*commands: Any) -> list[Any]:
        trips.append(commands)
        replies = run(*commands)
        if any(command[:2] == ("EVALSHA", guarded) for command in commands):
            raise redis.TimeoutError("Redis did not answer")
        return replies

    wire.run = late  # type: ignore[method-assign]
    answer = client.get(
        "/api/users/me/sessions/me",
        headers={"Authorization": token, "X-Forwarded-For": "198.51.100.10"},
    )
    del wire.run  # the class's again: no cycle to keep the connection for the collector
    assert answer.status_code == 503 and shared._grev == -1
    assert trips[-1][0][:2] == ("EVALSHA", guarded)  # nothing more asked of Redis
    items = client.get("/_mock/ratelimits").json["items"]
    [place] = [item for item in items if item["ip"] == "198.51.100.10"]
    assert place["route"] != "*" and place["count"] == 1 and place["reset"] > 0


def test_a_redis_error_in_the_control_api_answers_503(
    redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis

    app = create_app({"REDIS_URL": redis_url, "REDIS_PREFIX": prefix})
    client = app.test_client()
    limiter = app.extensions["cumulonimbus"].backend.limiter

    def gone(*args: Any, **kwargs: Any) -> Any:
        raise redis.ConnectionError("gone")

    monkeypatch.setattr(limiter.client, "scan_iter", gone)
    answer = client.get("/_mock/ratelimits")
    assert answer.status_code == 503
    assert answer.json["code"] == "SERVICE_UNAVAILABLE_ERROR"


def test_a_round_trip_broken_by_any_exception_leaves_no_reply_for_the_next(
    redis_url: str,
) -> None:
    import redis

    from mockserver.rediswire import Wire

    wire = Wire(redis.Redis.from_url(redis_url))
    assert wire.run(("PING",)) == [b"PONG"]

    class Interrupt(BaseException):
        """As KeyboardInterrupt, which pytest would take for the user's."""

    class Interrupted:  # the first read is interrupted, its reply left on the socket
        def __init__(self, reader: Any) -> None:
            self.reader, self.interrupted = reader, False

        def feed(self, data: bytes) -> None:
            self.reader.feed(data)

        def gets(self) -> Any:
            if not self.interrupted:
                self.interrupted = True
                raise Interrupt
            return self.reader.gets()

    wire._reader = Interrupted(wire._reader)  # type: ignore[assignment]
    with pytest.raises(Interrupt):
        wire.run(("ECHO", "first"))
    assert wire.run(("ECHO", "second")) == [b"second"]
    wire.connection.disconnect()


def test_the_journal_in_redis_reads_as_the_one_in_memory(redis_url: str, prefix: str) -> None:
    entries = []
    for config in redis_then_memory(redis_url, prefix):
        client = create_app(config).test_client()
        client.post("/api/login", json={"username": "nobody", "password": "é"})
        entry = client.get("/_mock/requests").json["items"][-1]
        entries.append({k: v for k, v in entry.items() if k not in ("time", "durationMs")})
    assert entries[0] == entries[1]
    assert entries[0]["requestBody"] == {"username": "nobody", "password": "é"}
    assert entries[0]["responseBody"]["code"] == "INVALID_USER_ERROR"


def _journal_of(app: Any) -> Any:
    return app.extensions["cumulonimbus"].journal


def test_a_reader_sees_the_entries_another_worker_still_holds(redis_url: str, prefix: str) -> None:
    # `first` keeps its entry (its flusher would wait an hour); the reader's barrier
    # has every worker send what it holds before the journal is read.
    import redis

    config = {"REDIS_URL": redis_url, "REDIS_PREFIX": prefix}
    first_app, second = create_app(config), create_app(config).test_client()
    _journal_of(first_app).IDLE = 3600
    first = first_app.test_client()
    assert first.get("/api/", headers={"X-Forwarded-For": "198.51.100.21"}).status_code == 200
    with redis.Redis.from_url(redis_url) as raw:
        assert raw.llen(f"{prefix}:journal") == 0  # no write of its own for the entry
    [entry] = second.get("/_mock/requests").json["items"]
    assert (entry["path"], entry["ip"]) == ("/api/", "198.51.100.21")


def test_a_round_trip_takes_along_at_most_ride_bytes_of_entries(redis_url: str) -> None:
    # More could reach Redis in parts, a flusher's confirmation read between them.
    import redis

    from mockserver.rediswire import RedisJournal

    journal = RedisJournal(redis.Redis.from_url(redis_url), "cumulonimbus-test:ride", 100)
    journal._waiting = [b"a" * 3000, b"b" * 3000, b"c" * 3000, b"d"]
    [push, trim] = journal.take()
    assert push == ("LPUSH", "cumulonimbus-test:ride", b"a" * 3000, b"b" * 3000)
    assert trim == ("LTRIM", "cumulonimbus-test:ride", 0, 99)
    assert journal._waiting == [b"c" * 3000, b"d"]
    journal._waiting = [b"x" * 9000]
    assert journal.take() == []  # larger than a ride: the flusher sends it
    journal.give_back()  # after a failed write of nothing taken: nothing comes back twice
    assert journal._waiting == [b"x" * 9000]


def test_an_idle_workers_entries_reach_redis_without_a_reader(redis_url: str, prefix: str) -> None:
    import redis

    app = create_app({"REDIS_URL": redis_url, "REDIS_PREFIX": prefix})
    _journal_of(app).IDLE = 0.01
    assert app.test_client().get("/api/").status_code == 200
    with redis.Redis.from_url(redis_url) as raw:
        for _ in range(500):  # its flusher thread, on real time: at most 5 s
            if raw.llen(f"{prefix}:journal") == 1:
                break
            threading.Event().wait(0.01)
        assert raw.llen(f"{prefix}:journal") == 1


def test_clearing_the_journal_clears_what_other_workers_hold(redis_url: str, prefix: str) -> None:
    config = {"REDIS_URL": redis_url, "REDIS_PREFIX": prefix}
    first_app, second = create_app(config), create_app(config).test_client()
    _journal_of(first_app).IDLE = 3600
    first = first_app.test_client()
    first.get("/api/", headers={"X-Forwarded-For": "198.51.100.22"})
    assert second.delete("/_mock/requests").status_code == 200
    first.get("/api/", headers={"X-Forwarded-For": "198.51.100.23"})  # takes along what waits
    assert [e["ip"] for e in second.get("/_mock/requests").json["items"]] == ["198.51.100.23"]


def test_a_reader_does_not_wait_long_for_a_worker_that_never_answers(
    redis_url: str, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    import redis

    app = create_app({"REDIS_URL": redis_url, "REDIS_PREFIX": prefix})
    journal = _journal_of(app)
    journal.BARRIER_TIMEOUT = 0.2
    with redis.Redis.from_url(redis_url) as raw:
        stuck = raw.pubsub()
        stuck.subscribe(journal.channel)  # a worker that hears the call and never answers
        stuck.get_message(timeout=5)
        with caplog.at_level("WARNING", logger="cumulonimbus-mock"):
            assert app.test_client().get("/_mock/requests").status_code == 200
        stuck.close()
    assert "the journal may miss entries: 0 of 1 workers" in caplog.text


def test_a_reader_does_not_count_a_mock_on_another_database_of_the_server(
    redis_url: str, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Pub/sub ignores database numbers: without the number in the channel, the other
    # mock's flusher was counted and its answer went to its own database (2 s, a warning).
    other = create_app({"REDIS_URL": redis_url[:-1] + "1", "REDIS_PREFIX": prefix})
    assert other.test_client().get("/api/").status_code == 200  # its flusher listens
    reader = create_app({"REDIS_URL": redis_url, "REDIS_PREFIX": prefix}).test_client()
    with caplog.at_level("WARNING", logger="cumulonimbus-mock"):
        assert reader.get("/_mock/requests").json["count"] == 0
    assert "may miss entries" not in caplog.text


def test_a_request_answered_503_at_its_last_write_leaves_no_journal_entry(
    redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis

    # A behaviour profile's requests are not deferred: usedAt is sent at the end.
    config = {"REDIS_URL": redis_url, "REDIS_PREFIX": prefix, "PROFILE": "5.3.0"}
    app = create_app(config)
    client = app.test_client()
    token = client.post("/api/login", json={"username": "alice", "password": "password"}).json[
        "token"
    ]
    client.delete("/_mock/requests")
    wire = app.extensions["cumulonimbus"].backend.shared.wire

    def broken(*commands: Any) -> None:
        raise redis.ConnectionError("gone")

    monkeypatch.setattr(wire, "send", broken)
    answer = client.get(
        "/api/users/me/sessions/me", headers={"Authorization": token, "X-Forwarded-For": "10.1.1.1"}
    )
    monkeypatch.undo()
    assert answer.status_code == 503
    assert client.get("/_mock/requests").json["items"] == []


def test_a_usedat_the_guard_alone_checked_is_still_written_at_the_end(
    redis_url: str, prefix: str
) -> None:
    # A deferred request answered before any limiter (no script took usedAt along): the
    # guard's round trip alone, and usedAt still to send.
    app = create_app({"REDIS_URL": redis_url, "REDIS_PREFIX": prefix})
    shared = app.extensions["cumulonimbus"].backend.shared
    with shared._local:
        shared._deferred, shared._used = True, {("1", "2"): 5.0}
        shared.current()
        assert shared._used == {("1", "2"): 5.0} and ("1", "2") not in shared._written_used
        shared._used = {}


def test_a_global_bucket_whose_window_passed_lists_as_one_process_shows_it(
    redis_url: str, prefix: str
) -> None:
    # A route's request takes over from the global bucket; where that bucket exists, its
    # passed window is closed as the global acquire and release in one process close it.
    listings = []
    for config in redis_then_memory(redis_url, prefix):
        client = create_app(config).test_client()
        client.post("/_mock/clock", json={"frozen": True})
        ip = {"X-Forwarded-For": "198.51.100.31"}
        client.get("/api/nope", headers=ip)  # counted in the global bucket
        client.post("/_mock/clock", json={"advance": 59.8})
        client.get("/api/nope", headers=ip)
        client.post("/_mock/clock", json={"advance": 0.4})  # the window has passed
        client.post("/api/login", json={"username": "alice", "password": "no"}, headers=ip)
        listings.append(
            sorted(
                (b["route"], b["count"], round(b["reset"], 3))
                for b in client.get("/_mock/ratelimits").json["items"]
                if b["ip"] == ip["X-Forwarded-For"]
            )
        )
    assert listings[0] == listings[1]
    assert [count for route, count, _ in listings[0] if route == "*"] == [0]


def test_a_forked_workers_waiting_entries_reach_redis_when_it_ends(
    redis_url: str, prefix: str
) -> None:
    # Granian's workers end through os._exit, past atexit handlers.
    import multiprocessing

    import redis

    app = create_app({"REDIS_URL": redis_url, "REDIS_PREFIX": prefix})
    _journal_of(app).IDLE = 3600

    def worker() -> None:
        assert app.test_client().get("/api/").status_code == 200

    child = multiprocessing.get_context("fork").Process(target=worker)
    child.start()
    child.join(timeout=30)
    assert child.exitcode == 0
    with redis.Redis.from_url(redis_url) as raw:
        assert raw.llen(f"{prefix}:journal") == 1


def test_a_flusher_whose_flush_fails_still_answers_a_reader(
    redis_url: str, prefix: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Waiting would not send the entries; a flusher that died would cost every reader
    # the whole timeout.
    config = {"REDIS_URL": redis_url, "REDIS_PREFIX": prefix}
    failing_app, reader = create_app(config), create_app(config).test_client()
    assert failing_app.test_client().get("/api/").status_code == 200  # its flusher listens

    def broken() -> None:
        raise RuntimeError("not a Redis error")

    monkeypatch.setattr(_journal_of(failing_app), "flush", broken)
    for _ in range(2):  # the second call finds the flusher alive
        with caplog.at_level("WARNING", logger="cumulonimbus-mock"):
            assert reader.get("/_mock/requests").status_code == 200
        assert "may miss entries" not in caplog.text
    assert "could not send its entries (they wait, up to its size): RuntimeError" in caplog.text


def test_a_redis_that_stops_answering_fails_the_round_trip_at_the_socket_timeout(
    tmp_path: Path,
) -> None:
    import signal

    import redis

    from mockserver.rediswire import Wire

    port = free_port()
    process = run_redis(port, tmp_path)
    try:
        wire = Wire(redis.Redis(port=port, socket_timeout=0.3))
        assert wire.run(("PING",)) == [b"PONG"]
        # The kernel keeps the timeout: no poll() before each send and receive.
        assert wire._socket is not None and wire._socket.gettimeout() is None
        process.send_signal(signal.SIGSTOP)
        try:
            with pytest.raises(redis.TimeoutError, match="Redis did not answer"):
                wire.run(("PING",))
        finally:
            process.send_signal(signal.SIGCONT)
        assert wire.run(("PING",)) == [b"PONG"]  # on a new connection
        wire.connection.disconnect()
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_reset_through_one_app_resets_the_other(redis_url: str, prefix: str) -> None:
    config = {"REDIS_URL": redis_url, "REDIS_PREFIX": prefix}
    first, second = create_app(config).test_client(), create_app(config).test_client()
    first.post("/_mock/users", json={"username": "lee", "password": "pw"})
    second.post("/_mock/reset")
    names = [u["username"] for u in first.get("/_mock/users").json["items"]]
    assert names == ["alice", "bob", "carol", "dave", "mallory"]


@pytest.fixture(scope="module")
def two_workers(redis_url: str) -> Iterator[str]:
    process, base = start_mock("--workers", "2", "--redis", redis_url)
    yield base
    stop(process)


def test_twenty_simultaneous_logins_through_two_workers_let_three_through(two_workers: str) -> None:
    base = two_workers
    requests.post(f"{base}/_mock/reset", timeout=10)
    requests.post(f"{base}/_mock/clock", json={"frozen": True}, timeout=10)
    barrier = threading.Barrier(20)
    results: list[int] = []

    def login() -> None:
        barrier.wait()
        response = requests.post(
            f"{base}/api/login",
            json={"username": "alice", "password": "password"},
            headers={"X-Forwarded-For": "203.0.113.9"},
            timeout=30,
        )
        results.append(response.status_code)

    threads = [threading.Thread(target=login) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(201) == 3 and results.count(429) == 17
    later = []
    for _ in range(2):
        requests.post(f"{base}/_mock/clock", json={"advance": 1.5}, timeout=10)
        later.append(
            requests.post(
                f"{base}/api/login",
                json={"username": "alice", "password": "password"},
                headers={"X-Forwarded-For": "203.0.113.9"},
                timeout=10,
            ).status_code
        )
    assert later == [201, 429]  # the burst has cleared; then the 4-per-5-minutes limit


def test_the_conformance_suite_passes_against_two_workers(two_workers: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "conformance", "--base-url", f"{two_workers}/api",
         "-q", "-p", "no:cacheprovider"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "no failed check cases" in result.stdout


def test_with_redis_down_clients_get_a_json_503_and_then_recover(tmp_path: Path) -> None:
    port = free_port()
    server = run_redis(port, tmp_path)
    app = create_app({"REDIS_URL": f"redis://127.0.0.1:{port}/0", "REDIS_PREFIX": "outage"})
    client = app.test_client()
    login = {"username": "alice", "password": "password"}
    assert client.post("/api/login", json=login).status_code == 201
    server.terminate()
    server.wait(timeout=10)
    try:
        for method, path in (("POST", "/api/login"), ("GET", "/_mock/users")):
            response = client.open(path, method=method, json=login)
            assert response.status_code == 503
            assert response.mimetype == "application/json"
            assert response.json["code"] == "SERVICE_UNAVAILABLE_ERROR"
            assert response.json["message"] == "Service Unavailable"
    finally:
        server = run_redis(port, tmp_path)
    try:
        assert client.post("/api/login", json=login).status_code == 201
        assert client.get("/_mock/users").status_code == 200
    finally:
        app.extensions["cumulonimbus"].backend.limiter.client.close()
        server.terminate()
        server.wait(timeout=10)


def test_a_slow_chunked_body_holds_no_worker_and_no_lock(two_workers: str) -> None:
    import socket

    port = int(two_workers.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as stalled:
        stalled.sendall(
            b"POST /api/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b'Transfer-Encoding: chunked\r\n\r\n5\r\n{"use'
        )
        # Both workers answer at once (a fresh connection each) while the body is pending.
        for _ in range(4):
            response = requests.get(f"{two_workers}/_mock/clock", timeout=2)
            assert response.status_code == 200
        assert requests.get(f"{two_workers}/api/", timeout=2).status_code == 200


class Alternating:
    """A load balancer as a WSGI app: each request goes to the next mock in turn."""

    HOP_BY_HOP = frozenset(("connection", "transfer-encoding", "keep-alive"))

    def __init__(self, bases: list[str]) -> None:
        self.bases = bases
        self.turn = itertools.count()
        self.sent: list[str] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        base = self.bases[next(self.turn) % len(self.bases)]
        self.sent.append(base)
        query = environ.get("QUERY_STRING")
        # PATH_INFO is decoded (as latin-1): quote it again, or a generated id holding
        # `#` or `?` would cut the path short (GET .../sessions/%23x became the list).
        path = urllib.parse.quote(environ["PATH_INFO"].encode("latin-1"), safe="/:@!$&'()*+,;=~")
        url = base + path + (f"?{query}" if query else "")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        headers = {
            key[5:].replace("_", "-").title(): value
            for key, value in environ.items()
            if key.startswith("HTTP_") and key != "HTTP_HOST"
        }
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        answer = requests.request(
            environ["REQUEST_METHOD"],
            url,
            data=environ["wsgi.input"].read(length) if length else None,
            headers=headers,
            allow_redirects=False,
            timeout=30,
        )
        start_response(
            f"{answer.status_code} {answer.reason}",
            [(k, v) for k, v in answer.raw.headers.items() if k.lower() not in self.HOP_BY_HOP],
        )
        return [answer.content]


@pytest.fixture(scope="module")
def two_processes(redis_url: str) -> Iterator[list[str]]:
    """Two separate mocks on one Redis, as on two machines (their own database)."""
    shared = redis_url.rsplit("/", 1)[0] + "/1"
    first, first_base = start_mock("--redis", shared)
    second, second_base = start_mock("--redis", shared)
    yield [first_base, second_base]
    stop(first)
    stop(second)


def test_two_processes_share_one_login_limit(two_processes: list[str]) -> None:
    balancer = Alternating(two_processes)
    client = Client(balancer)
    client.post("/_mock/reset")
    client.post("/_mock/clock", json={"frozen": True})
    login = {"username": "alice", "password": "password"}
    statuses = [
        client.post(
            "/api/login", json=login, headers={"X-Forwarded-For": "203.0.113.7"}
        ).status_code
        for _ in range(4)
    ]
    assert statuses == [201, 201, 201, 429]  # the burst of 3, counted across both
    assert set(balancer.sent) == set(two_processes)


def test_the_conformance_suite_passes_against_two_processes_behind_an_alternating_client(
    two_processes: list[str], tmp_path: Path
) -> None:
    from tests.conformance.harness import run_suite, serve

    balancer = Alternating(two_processes)
    with serve(balancer) as base_url:
        result = run_suite(base_url, tmp_path)
    assert result.returncode == 0, str(result)
    assert "no failed check cases" in result.output
    assert len(set(balancer.sent)) == 2 and len(balancer.sent) > 100
