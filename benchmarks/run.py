"""The mock and Stoplight Prism side by side, on this machine, in one run.

    make bench                                   # installs wrk and Prism if missing, then this
    .venv/bin/python benchmarks/run.py --runs 3  # medians of three runs
    .venv/bin/python benchmarks/run.py --memory  # RSS with 100,000 client addresses

Both servers mock ``openapi/sessions.yaml``; each gets a warm-up, then the same ``wrk``
load (connections, threads, duration) per scenario, with ``benchmarks/load.lua`` rotating
``X-Forwarded-For`` so that the mock's rate limiter sees every request but no address
reaches a limit. For each server and scenario the table gives requests/s, p50 and p99
latency, peak RSS (VmHWM of the process tree, reset before each scenario), non-2xx and
429 answers, and the ratio mock/Prism; then the cold start of ``cumulonimbus-mock``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SPEC = ROOT / "openapi" / "sessions.yaml"
PRISM = HERE / "node_modules" / ".bin" / "prism"
LOAD = HERE / "load.lua"
# Prism checks only that a token is there; it gets one shaped like the mock's.
PRISM_TOKEN = "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
SCENARIOS = {
    "a": "GET /users/me/sessions/me",
    "b": "GET /users/me/sessions?limit=50 (50 sessions)",
    "c": "3/4 as (a), 1/4 POST /login unknown user (404)",
}
ADDRESS_POOL = 131072  # 198.18.0.0/15


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def call(
    base: str,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def wait_until_up(process: subprocess.Popen[bytes], url: str, timeout: float = 60) -> float:
    """Seconds from now until ``url`` answers at all."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                pass
            return time.monotonic() - started
        except urllib.error.HTTPError:
            return time.monotonic() - started  # any answer counts (Prism's / is a 404)
        except OSError:
            time.sleep(0.01)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def tree(pid: int) -> list[int]:
    """The process and all its descendants."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in (task / "children").read_text().split()]
    return pids


def status_kib(pid: int, field_name: str) -> int:
    total = 0
    for member in tree(pid):
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith(field_name + ":"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def reset_peak(pid: int) -> None:
    for member in tree(pid):
        with contextlib.suppress(OSError):
            Path(f"/proc/{member}/clear_refs").write_text("5")  # resets VmHWM to VmRSS


@dataclass
class Server:
    name: str
    base: str
    prefix: str
    token: str
    process: subprocess.Popen[bytes]
    cold_start: float
    results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def mock_command(port: int, *extra: str) -> list[str]:
    executable = Path(sys.executable).parent / "cumulonimbus-mock"
    return [str(executable), "--port", str(port), "--quiet", *extra]


def start_mock(*extra: str, name: str = "mock") -> Server:
    port = free_port()
    started = time.monotonic()
    process = subprocess.Popen(mock_command(port, *extra), stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    wait_until_up(process, base + "/api/")
    return Server(name, base, "/api", "", process, time.monotonic() - started)


def start_redis() -> tuple[subprocess.Popen[bytes], str] | None:
    """A throw-away redis-server on a free loopback port, or None without one."""
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    port = free_port()
    command = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    for _ in range(400):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return process, f"redis://127.0.0.1:{port}/0"
        time.sleep(0.025)  # waiting for the server to bind
    process.kill()
    return None


def scale_out(args: argparse.Namespace, single: Server, token: str) -> str:
    """Scenario (a) on 2 workers sharing state through Redis, beside the one process:
    measured in turns (which goes first alternates), so that both see the same machine.
    Measured apart, minutes later, the ratio moved with the neighbours (0.40x in one
    run where the same code in turns gave 0.53x)."""
    redis = start_redis()
    if redis is None:
        return "2 workers + Redis: skipped (no redis-server; apt-get install redis-server)"
    process, url = redis
    workers = start_mock("--workers", "2", "--redis", url, name="mock-2w")
    try:
        one, _ = prepare_mock(workers)
        for run in range(args.runs):
            turns = [(single, token), (workers, one)]
            for server, server_token in turns if run % 2 == 0 else reversed(turns):
                measure(server, "a", server_token, args, args.runs + run, key="scale-out")
        a1, a2 = single.results["scale-out"], workers.results["scale-out"]
        return (
            f"(a), in turns: 1 process: {median(a1, 'rps'):.0f} req/s,"
            f" p99 {median(a1, 'p99_us') / 1000:.2f} ms;"
            f" 2 workers + Redis: {median(a2, 'rps'):.0f} req/s,"
            f" p99 {median(a2, 'p99_us') / 1000:.2f} ms;"
            f" 2 workers/1 process: requests/s {median(a2, 'rps') / median(a1, 'rps'):.2f}x"
            f" (goal >= 0.5x), p99 {median(a2, 'p99_us') / median(a1, 'p99_us'):.2f}x"
            " (goal <= 2x); per run: "
            + ", ".join(
                f"{r2['rps'] / r1['rps']:.2f}x/{r2['p99_us'] / r1['p99_us']:.2f}x"
                for r1, r2 in zip(a1, a2, strict=True)
            )
            + "; wrk's connections per worker, run by run: "
            + ", ".join("/".join(map(str, r["connections_per_process"])) or "?" for r in a2)
        )
    finally:
        workers.stop()
        process.terminate()
        process.wait(timeout=10)


class Keepalive:
    """One kept-alive connection for the thousands of set-up calls of :func:`growth`."""

    def __init__(self, base: str) -> None:
        import http.client

        host, port = base.removeprefix("http://").split(":")
        self.connection = http.client.HTTPConnection(host, int(port), timeout=30)

    def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        import http.client

        data = None if body is None else json.dumps(body).encode()
        sent = {"Content-Type": "application/json", **(headers or {})}
        for attempt in range(2):
            try:
                self.connection.request(method, path, body=data, headers=sent)
                response = self.connection.getresponse()
                return response.status, json.loads(response.read() or b"null")
            except (OSError, http.client.HTTPException):
                # The server closed the kept-alive connection: once more on a new one.
                self.connection.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def login(self, username: str, n: int) -> str:
        """``n`` sessions for ``username``, each from its own address; the last token."""
        token = ""
        for i in range(n):
            status, body = self.call(
                "POST",
                "/api/login",
                {"username": username, "password": "pw"},
                {"X-Forwarded-For": f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}"},
            )
            assert status == 201, (status, body)
            token = body["token"]
        return token


def growth(args: argparse.Namespace) -> list[str]:
    """Requests/s and p99 of the mock alone as sessions per user, users and live buckets
    grow (medians of ``--runs``); each row beside the first row of its group."""
    runs = [growth_rows(args) for _ in range(args.runs)]
    lines = [
        "",
        f"cost as the work grows (the mock alone, medians of {args.runs} run(s); "
        "each row beside the first of its group):",
        f"{'what':<32}{'scen.':<7}{'req/s':>8}{'p99 ms':>9}{'req/s ratio':>13}{'p99 ratio':>11}",
    ]
    firsts: dict[tuple[str, str], tuple[float, float]] = {}
    for index, (label, scenario, _) in enumerate(runs[0]):
        results = [run[index][2] for run in runs]
        rps, p99 = median(results, "rps"), median(results, "p99_us") / 1000
        first = firsts.setdefault((label.split(":")[0], scenario), (rps, p99))
        lines.append(
            f"{label:<32}({scenario}){'':<4}{rps:>8.0f}{p99:>9.2f}"
            f"{rps / first[0]:>12.2f}x{p99 / first[1]:>10.2f}x"
        )
        if "live_before" in results[0]:
            lines[-1] += f"   (live before the run: {median(results, 'live_before'):,.0f})"
    return lines


def growth_rows(args: argparse.Namespace) -> list[tuple[str, str, dict[str, Any]]]:
    rows: list[tuple[str, str, dict[str, Any]]] = []
    mock = start_mock(name="mock")
    try:
        setup = Keepalive(mock.base)
        tokens = {}
        for n in (1, 50, 5000):
            status, _ = setup.call(
                "POST", "/_mock/users", {"username": f"grow-{n}", "password": "pw"}
            )
            assert status == 201, status
            tokens[n] = setup.login(f"grow-{n}", n)
        for n in (1, 50, 5000):
            for scenario in "ab":
                rows.append(
                    (f"sessions per user: {n}", scenario, _once(mock, scenario, tokens[n], args))
                )
        setup = Keepalive(mock.base)  # the server has closed the idle one meanwhile
        status, users = setup.call("GET", "/_mock/users")
        for target in (10, 10_000):
            for i in range(users["count"], target):
                status, _ = setup.call(
                    "POST", "/_mock/users", {"username": f"user-{i}", "password": "pw"}
                )
                assert status in (201, 409), status  # 409: made by a retried call
            users["count"] = target
            rows.append((f"users: {target}", "c", _once(mock, "c", tokens[1], args)))
    finally:
        mock.stop()
    for live in (10, 1_000, 100_000):
        mock = start_mock(name="mock")
        try:
            token, _ = prepare_mock(mock)
            # A frozen clock keeps every prefilled bucket live (its window never ends)
            # however long the prefill takes; the run itself is on the moving clock.
            call(mock.base, "POST", "/_mock/clock", {"frozen": True})
            seconds = max(1, -(-live // 2500)) + 1
            wrk(mock, "a", token, seconds, args, 100_000 % ADDRESS_POOL, addresses=live)
            _, listed = call(mock.base, "GET", "/_mock/ratelimits")
            call(mock.base, "POST", "/_mock/clock", {"frozen": False})
            wrk(mock, "a", token, args.warmup, args, 60_000, addresses=20_000)
            result = wrk(mock, "a", token, args.duration, args, 0, addresses=90_000)
            result["live_before"] = listed["count"]
            rows.append((f"live buckets: {live:,} prefilled", "a", result))
        finally:
            mock.stop()
    return rows


def _once(mock: Server, scenario: str, token: str, args: argparse.Namespace) -> dict[str, Any]:
    call(mock.base, "DELETE", "/_mock/ratelimits")
    wrk(mock, scenario, token, args.warmup, args, 0)
    return wrk(mock, scenario, token, args.duration, args, 50_000)


def start_prism() -> Server:
    port = free_port()
    command = [str(PRISM), "mock", "-h", "127.0.0.1", "-p", str(port), "-v", "silent", str(SPEC)]
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, cwd=HERE)
    base = f"http://127.0.0.1:{port}"
    wait_until_up(process, base + "/")
    return Server("prism", base, "", PRISM_TOKEN, process, time.monotonic() - started)


def prepare_mock(mock: Server) -> tuple[str, str]:
    """Two users: one with one session (a, c), one with 50 sessions (b); their tokens."""
    tokens = []
    for username, sessions in (("bench-one", 1), ("bench-fifty", 50)):
        user = {"username": username, "password": "pw"}
        status, _ = call(mock.base, "POST", "/_mock/users", user)
        assert status == 201, status
        token = ""
        for i in range(sessions):
            # One login per address stays far below the 4-per-5-minutes login limit.
            status, body = call(
                mock.base,
                "POST",
                "/api/login",
                {"username": username, "password": "pw"},
                {"X-Forwarded-For": f"203.0.113.{i + 1}"},
            )
            assert status == 201, (status, body)
            token = body["token"]
        tokens.append(token)
    status, page = call(
        mock.base, "GET", "/api/users/me/sessions?limit=50", headers={"Authorization": tokens[1]}
    )
    assert status == 200 and len(page["items"]) == 50, (status, page)
    call(mock.base, "DELETE", "/_mock/ratelimits")
    return tokens[0], tokens[1]


def wrk(
    server: Server,
    scenario: str,
    token: str,
    seconds: int,
    args: argparse.Namespace,
    offset: int,
    addresses: int = ADDRESS_POOL,
) -> dict[str, Any]:
    env = {
        **os.environ,
        "BENCH_SCENARIO": scenario,
        "BENCH_PREFIX": server.prefix,
        "BENCH_TOKEN": token,
        "BENCH_ADDRESSES": str(addresses),
        "BENCH_OFFSET": str(offset),
        "BENCH_THREADS": str(args.threads),
    }
    command = [
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{seconds}s",
        "--timeout",
        "5s",
        "-s",
        str(LOAD),
        server.base,
    ]
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    line = next(x for x in output.splitlines() if x.startswith("BENCH_JSON "))
    result: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def measure(
    server: Server,
    scenario: str,
    token: str,
    args: argparse.Namespace,
    run: int,
    key: str | None = None,
) -> None:
    """One wrk measurement of ``scenario``, kept in ``server.results[key or scenario]``."""
    if server.name.startswith("mock"):
        call(server.base, "DELETE", "/_mock/ratelimits")  # each measurement starts clean
    offset = (run * 3 + "abc".index(scenario)) * 20000
    wrk(server, scenario, token, args.warmup, args, offset)
    reset_peak(server.process.pid)
    split: list[int] = []
    count = threading.Timer(min(1.0, args.duration / 2), lambda: split.extend(connections(server)))
    count.start()
    result = wrk(server, scenario, token, args.duration, args, offset + 7919)
    count.join()
    result["peak_rss_kib"] = status_kib(server.process.pid, "VmHWM")
    result["connections_per_process"] = split
    server.results.setdefault(key or scenario, []).append(result)


def connections(server: Server) -> list[int]:
    """wrk's connections as the server's processes hold them, most first (``ss``): with
    workers, the kernel spreads connections at random (SO_REUSEPORT), and a worker with
    more of them answers each later, which is the p99."""
    port = server.base.rsplit(":", 1)[1]
    try:
        listing = subprocess.run(
            ["ss", "-tnpH", "state", "established", f"( sport = :{port} )"],
            capture_output=True, text=True, timeout=10, check=False,
        ).stdout  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return []
    counts: dict[str, int] = {}
    for line in listing.splitlines():
        for pid in set(re.findall(r"pid=(\d+)", line)):
            counts[pid] = counts.get(pid, 0) + 1
    return sorted(counts.values(), reverse=True)


def median(results: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in results))


def report(
    mock: Server, prism: Server | None, scenarios: list[str], cold: list[float], load: str
) -> str:
    lines = [
        f"machine: {os.cpu_count()} cores, {platform.machine()}, Python "
        f"{platform.python_version()}; load average before: {load}, after: {_loadavg()}",
        "",
        f"{'scenario':<10}{'server':<8}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'peak RSS MiB':>14}{'non-2xx':>9}{'429s':>7}",
    ]
    for scenario in scenarios:
        for server in [mock, prism]:
            if server is None:
                continue
            results = server.results[scenario]
            lines.append(
                f"({scenario}){'':<7}{server.name:<8}{median(results, 'rps'):>10.0f}"
                f"{median(results, 'p50_us') / 1000:>9.2f}{median(results, 'p99_us') / 1000:>9.2f}"
                f"{median(results, 'peak_rss_kib') / 1024:>14.1f}"
                f"{median(results, 'non2xx'):>9.0f}{median(results, 'status429'):>7.0f}"
            )
        if prism is not None:
            ratio = median(mock.results[scenario], "rps") / median(prism.results[scenario], "rps")
            tail = median(mock.results[scenario], "p99_us") / median(
                prism.results[scenario], "p99_us"
            )
            lines.append(
                f"{'':<10}mock/Prism requests/s: {ratio:.2f}x (goal >= 2.5x), "
                f"p99: {tail:.2f}x (goal <= 1x)   ({SCENARIOS[scenario]})"
            )
    lines += [
        "",
        "cold start of cumulonimbus-mock until its first answer: "
        + ", ".join(f"{c * 1000:.0f} ms" for c in cold)
        + f" (median {statistics.median(cold) * 1000:.0f} ms)",
    ]
    if prism is not None:
        lines.append(f"cold start of Prism until its first answer: {prism.cold_start * 1e3:.0f} ms")
    return "\n".join(lines)


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def memory(args: argparse.Namespace) -> int:
    """RSS while 100,000 distinct client addresses at a time come and go."""
    mock = start_mock()
    try:
        token, _ = prepare_mock(mock)
        addresses = args.addresses
        seconds = args.memory_seconds
        print(f"{addresses} distinct X-Forwarded-For addresses per round, {seconds} s of (a) each")
        print(f"{'round':<7}{'requests':>10}{'live buckets':>14}{'RSS MiB':>9}{'peak MiB':>10}")
        samples: list[int] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.5):
                samples.append(status_kib(mock.process.pid, "VmRSS"))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        for round_ in range(args.rounds):
            result = wrk(mock, "a", token, seconds, args, round_ * addresses, addresses=addresses)
            _, buckets = call(mock.base, "GET", "/_mock/ratelimits")
            rss = status_kib(mock.process.pid, "VmRSS")
            peak = status_kib(mock.process.pid, "VmHWM")
            live = buckets["count"] if isinstance(buckets, dict) else len(buckets)
            print(
                f"{round_ + 1:<7}{result['requests']:>10}{live:>14}{rss / 1024:>9.1f}"
                f"{peak / 1024:>10.1f}"
            )
            # Past every window: the next requests prune what is left of this round.
            call(mock.base, "POST", "/_mock/clock", {"advance": 120})
        stop.set()
        sampler.join()
        print("RSS samples (MiB, every 0.5 s): " + " ".join(f"{s / 1024:.0f}" for s in samples))
    finally:
        mock.stop()
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds of load (10)")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up (3)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (1)")
    parser.add_argument("--runs", type=int, default=1, help="repeat and print medians")
    parser.add_argument("--scenarios", default="abc")
    parser.add_argument("--no-prism", action="store_true", help="measure the mock alone")
    parser.add_argument(
        "--no-redis", action="store_true", help="skip 1 process vs 2 workers + Redis"
    )
    parser.add_argument(
        "--no-growth", action="store_true", help="skip the cost-as-the-work-grows runs"
    )
    parser.add_argument("--json", metavar="FILE", help="also write every measurement here")
    parser.add_argument("--memory", action="store_true", help="the bounded-memory run instead")
    parser.add_argument("--addresses", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--memory-seconds", type=int, default=20)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is missing: run `make bench` (installs Debian's wrk)", file=sys.stderr)
        return 2
    if args.memory:
        return memory(args)
    if not args.no_prism and not PRISM.exists():
        print("Prism is missing: run `make bench` (npm ci in benchmarks/)", file=sys.stderr)
        return 2

    load = _loadavg()
    cold = []
    for _ in range(3):
        probe = start_mock()
        cold.append(probe.cold_start)
        probe.stop()
    mock = start_mock()
    prism = None if args.no_prism else start_prism()
    try:
        one, fifty = prepare_mock(mock)
        tokens = {"a": one, "b": fifty, "c": one}
        for run in range(args.runs):
            for scenario in args.scenarios:
                # Alternate who goes first, so neither always gets the cooler machine.
                order = [mock, prism] if run % 2 == 0 else [prism, mock]
                for server in order:
                    if server is None:
                        continue
                    token = tokens[scenario] if server is mock else server.token
                    measure(server, scenario, token, args, run)
        print(
            f"wrk: {args.connections} connections, {args.threads} thread(s), "
            f"{args.warmup:g} s warm-up then {args.duration:g} s per scenario and server; "
            f"medians of {args.runs} run(s)"
        )
        print(report(mock, prism, list(args.scenarios), cold, load), flush=True)
        if prism is not None:
            prism.stop()  # not beside the scale-out runs
        if not args.no_redis and "a" in args.scenarios:
            print(scale_out(args, mock, tokens["a"]), flush=True)
        if args.json:
            data = {s.name: s.results for s in (mock, prism) if s is not None}
            Path(args.json).write_text(json.dumps({"cold_start_s": cold, **data}, indent=1))
    finally:
        mock.stop()
        if prism is not None:
            prism.stop()
    if not args.no_growth:
        print("\n".join(growth(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
