"""Scenario (a) on one process and on 2 workers sharing state through Redis, back to back,
with the CPU each request cost (the mock's process tree and redis-server, from /proc):
a quicker look at scale-out than ``run.py`` (no Prism), for before/after comparisons.

    .venv/bin/python benchmarks/scaleout.py --seconds 5 --rounds 3
    .venv/bin/python benchmarks/scaleout.py --unix      # Redis on a Unix socket

CPU per request is the figure to compare when other work shares the machine: requests/s
moves with the neighbours' load, CPU per answered request much less.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import run  # benchmarks/run.py, beside this file

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User and system time of these processes (all their threads)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICK


def start_redis(unix: bool) -> tuple[subprocess.Popen[bytes], str]:
    folder = tempfile.mkdtemp()
    socket_path = f"{folder}/redis.sock"
    port = 0 if unix else run.free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--unixsocket", socket_path, "--dir", folder],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(400):
        if Path(socket_path).exists():
            break
        time.sleep(0.025)  # waiting for the server to start
    return process, f"unix://{socket_path}" if unix else f"redis://127.0.0.1:{port}/0"


def measure(
    server: run.Server, token: str, redis_pid: int | None, args: argparse.Namespace, offset: int
) -> str:
    mock_pids = run.tree(server.process.pid)
    redis_pids = [redis_pid] if redis_pid else []
    run.call(server.base, "DELETE", "/_mock/ratelimits")
    mock0, redis0 = cpu_seconds(mock_pids), cpu_seconds(redis_pids)
    split: list[int] = []
    when = min(1.0, args.seconds / 2)
    count = threading.Timer(when, lambda: split.extend(run.connections(server)))
    count.start()
    result = run.wrk(server, "a", token, args.seconds, args, offset)
    count.join()
    mock_us = (cpu_seconds(mock_pids) - mock0) / result["requests"] * 1e6
    redis_us = (cpu_seconds(redis_pids) - redis0) / result["requests"] * 1e6
    return (
        f"{result['rps']:8.0f} req/s  p99 {result['p99_us'] / 1000:6.2f} ms  CPU per request:"
        f" mock {mock_us:4.0f} us, redis-server {redis_us:4.0f} us,"
        f" total {mock_us + redis_us:4.0f} us; connections {'/'.join(map(str, split)) or '?'}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--unix", action="store_true", help="Redis on a Unix socket")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    redis, url = start_redis(args.unix)
    single = workers = None
    try:
        single = run.start_mock(name="mock")
        workers = run.start_mock("--workers", "2", "--redis", url, name="mock-2w")
        targets = [
            ("1 process          ", single, run.prepare_mock(single)[0], None),
            ("2 workers + Redis  ", workers, run.prepare_mock(workers)[0], redis.pid),
        ]
        for _, server, token, _ in targets:
            run.wrk(server, "a", token, 2, args, 100_000)  # warm-up
        for number in range(args.rounds):
            for name, server, token, redis_pid in targets:
                offset = 7919 * (2 * number + 1 + (redis_pid is not None))
                line = measure(server, token, redis_pid, args, offset)
                print(f"round {number + 1} {name}{line}", flush=True)
    finally:
        for server in (single, workers):
            if server is not None:
                server.stop()
        redis.terminate()
        redis.wait(timeout=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
