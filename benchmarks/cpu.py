"""CPU per request of the mock, in-process: no wrk, no sockets, no other process.

    .venv/bin/python benchmarks/cpu.py                  # a, b, login-404, c; µs per request
    .venv/bin/python benchmarks/cpu.py --profile b      # cProfile of scenario b
    .venv/bin/python benchmarks/cpu.py --redis redis://127.0.0.1:6390/0 a   # Redis mode

The app is built as ``cumulonimbus-mock`` builds it and prepared as ``benchmarks/run.py``
prepares it (a user with one session, one with 50 from distinct addresses). Each request
goes through what the worker's Python thread runs for it: ``WSGIOverRSGI`` turns an
RSGI-like scope into a WSGI environ and calls the app (Granian's own Rust side is not
here). Addresses walk 198.18.0.0/15 as ``load.lua`` does, so every request goes through
the rate limiter and opens buckets, and none is refused. Time is ``time.thread_time``,
best of several batches: on a shared machine the least disturbed batch is the closest to
the request's own cost, where requests per second measure the neighbours too.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mockserver.app import create_app
from mockserver.serving import WSGIOverRSGI


class Headers(dict[str, str]):
    """Granian's scope headers: lower-case names, ``get``, ``in`` and ``items``."""


class Scope:
    proto = "http"
    http_version = "1.1"
    scheme = "http"
    server = "127.0.0.1:8000"
    client = "127.0.0.1:50000"
    authority = None

    def __init__(self, method: str, path: str, query: str, headers: dict[str, str]) -> None:
        self.method = method
        self.path = path
        self.query_string = query
        self.headers = Headers(headers)


class Driver:
    def __init__(self, redis_url: str | None = None) -> None:
        config: dict[str, object] = {"ISSUER": "127.0.0.1", "CONTROL_HOSTS": ("127.0.0.1",)}
        if redis_url:
            config["REDIS_URL"] = redis_url
        self.app = create_app(config)
        self.rsgi = WSGIOverRSGI(self.app, max_body=self.app.config["MAX_CONTENT_LENGTH"])
        self.sent = 0
        self.one, self.fifty = self._prepare()

    def call(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b""
    ) -> tuple[int, bytes]:
        path, _, query = path.partition("?")
        headers = {"host": "127.0.0.1:8000", **headers}
        if body:
            headers["content-length"] = str(len(body))
        scope = Scope(method, path, query, headers)
        environ = self.rsgi._environ(scope, body, headers.get("content-length"), True)
        status, _, data = self.rsgi._call(environ)
        return status, data

    def _prepare(self) -> tuple[str, str]:
        tokens = []
        for username, sessions in (("bench-one", 1), ("bench-fifty", 50)):
            user = json.dumps({"username": username, "password": "pw"}).encode()
            json_type = {"content-type": "application/json"}
            status, _ = self.call("POST", "/_mock/users", json_type, user)
            assert status == 201, status
            token = ""
            for i in range(sessions):
                headers = {**json_type, "x-forwarded-for": f"203.0.113.{i + 1}"}
                status, data = self.call("POST", "/api/login", headers, user)
                assert status == 201, (status, data)
                token = json.loads(data)["token"]
            tokens.append(token)
        status, data = self.call(
            "GET", "/api/users/me/sessions?limit=50", {"authorization": tokens[1]}
        )
        assert status == 200 and len(json.loads(data)["items"]) == 50, status
        self.call("DELETE", "/_mock/ratelimits", {})
        return tokens[0], tokens[1]

    def address(self) -> str:
        index = self.sent % 131072
        self.sent += 1
        return f"198.{18 + index // 65536}.{index // 256 % 256}.{index % 256}"

    def request(self, kind: str) -> tuple[str, str, dict[str, str], bytes]:
        """One request of ``kind``: a (sessions/me), b (the 50-session page), login
        (unknown user, 404)."""
        headers = {"x-forwarded-for": self.address()}
        if kind == "login":
            headers["content-type"] = "application/json"
            headers["prefer"] = "code=404"
            body = f'{{"username":"nobody-0-{self.sent}","password":"wrong"}}'.encode()
            return "POST", "/api/login", headers, body
        if kind == "b":
            headers["authorization"] = self.fifty
            return "GET", "/api/users/me/sessions?limit=50", headers, b""
        headers["authorization"] = self.one
        return "GET", "/api/users/me/sessions/me", headers, b""

    def batch(self, kinds: list[str]) -> float:
        """CPU seconds for one pass over ``kinds``; requests are built beforehand."""
        requests = [self.request(kind) for kind in kinds]
        call = self.call
        expected = {"a": 200, "b": 200, "login": 404}
        started = time.thread_time()
        statuses = [call(m, p, h, b)[0] for m, p, h, b in requests]
        spent = time.thread_time() - started
        for kind, status in zip(kinds, statuses, strict=True):
            assert status == expected[kind], (kind, status)
        return spent


SCENARIOS = {
    "a": ["a"],
    "b": ["b"],
    "login": ["login"],
    "c": ["a", "a", "a", "login"],
}


def measure(driver: Driver, scenario: str, requests: int, batches: int) -> float:
    kinds = (SCENARIOS[scenario] * requests)[:requests]
    driver.batch(kinds[: max(50, requests // 10)])  # warm the caches
    best = min(driver.batch(kinds) for _ in range(batches))
    return best / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="per batch")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--profile", choices=sorted(SCENARIOS), help="cProfile one scenario")
    parser.add_argument("--top", type=int, default=45)
    parser.add_argument(
        "--redis", metavar="URL", help="keep the state in this Redis (its database is flushed)"
    )
    parser.add_argument("scenarios", nargs="*", default=["a", "b", "login", "c"])
    args = parser.parse_args()
    # The served worker freezes survivors once a second (serving._collect_garbage).
    gc.collect()
    gc.freeze()
    if args.redis:
        import redis

        redis.Redis.from_url(args.redis).flushdb()
    driver = Driver(args.redis)
    if args.profile:
        kinds = (SCENARIOS[args.profile] * args.requests)[: args.requests]
        driver.batch(kinds)
        profile = cProfile.Profile(time.thread_time)
        profile.enable()
        for _ in range(args.batches):
            driver.batch(kinds)
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)
        return
    for scenario in args.scenarios:
        cost = measure(driver, scenario, args.requests, args.batches)
        print(f"{scenario:6} {cost:7.1f} µs CPU per request")


if __name__ == "__main__":
    main()
