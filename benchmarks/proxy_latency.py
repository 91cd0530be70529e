"""The latency `cumulonimbus-mock proxy` adds: the same requests to the mock directly and
through the proxy in front of it, one at a time, on kept-alive connections.

    .venv/bin/python benchmarks/proxy_latency.py              # 2000 requests each way
    .venv/bin/python benchmarks/proxy_latency.py --requests 500

Both servers run as a developer runs them (`cumulonimbus-mock --quiet`, `cumulonimbus-mock
proxy --upstream ... --quiet`), each in its own process, on loopback. One login, then
`GET /api/users/me/sessions/me` alternating between the two paths, each request from its
own `X-Forwarded-For` address so that no rate limit is reached (the mock counts every
request, and the proxy follows every bucket). Prints p50, p90 and p99 of each path and the
added p50, and checks that the proxy found no violations in that traffic.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{process.args} exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.05)  # waiting for a process to bind its port
    raise SystemExit(f"{url} did not answer within 30 s")


def start(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "mockserver", *args, "--quiet"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="per path (default 2000)")
    args = parser.parse_args()
    mock_port, proxy_port = free_port(), free_port()
    mock = start("--port", str(mock_port))
    proxy = None
    try:
        wait_for(f"http://127.0.0.1:{mock_port}/api/", mock)
        proxy = start(
            "proxy", "--upstream", f"http://127.0.0.1:{mock_port}/api", "--port", str(proxy_port)
        )
        wait_for(f"http://127.0.0.1:{proxy_port}/_mock/violations", proxy)
        login = urllib.request.Request(
            f"http://127.0.0.1:{mock_port}/api/login",
            data=json.dumps({"username": "alice", "password": "password"}).encode(),
            headers={"Content-Type": "application/json", "X-Forwarded-For": "198.18.255.255"},
        )
        token = json.loads(urllib.request.urlopen(login).read())["token"]
        paths = {
            "direct": http.client.HTTPConnection("127.0.0.1", mock_port),
            "proxy": http.client.HTTPConnection("127.0.0.1", proxy_port),
        }
        timings: dict[str, list[float]] = {name: [] for name in paths}
        for i in range(args.requests * 2 + 200):
            name = ("direct", "proxy")[i % 2]
            conn = paths[name]
            headers = {
                "Authorization": token,
                "X-Forwarded-For": f"198.18.{i // 256 % 256}.{i % 256}",
            }
            started = time.perf_counter()
            conn.request("GET", "/api/users/me/sessions/me", headers=headers)
            response = conn.getresponse()
            response.read()
            elapsed = (time.perf_counter() - started) * 1000
            assert response.status == 200, response.status
            if i >= 200:  # the first hundred each way warm up both servers
                timings[name].append(elapsed)
        report = json.loads(
            urllib.request.urlopen(f"http://127.0.0.1:{proxy_port}/_mock/violations").read()
        )
    finally:
        for process in (proxy, mock):
            if process is not None:
                process.terminate()
                process.wait(timeout=20)
    print(f"{args.requests} requests each way, one at a time, kept-alive connections")
    print(f"{'path':8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    for name, values in timings.items():
        print(
            f"{name:8} {statistics.median(values):8.3f} {percentile(values, 90):8.3f} "
            f"{percentile(values, 99):8.3f} {statistics.fmean(values):8.3f}"
        )
    added = statistics.median(timings["proxy"]) - statistics.median(timings["direct"])
    print(f"added p50: {added:.3f} ms (target: under 1 ms)")
    print(f"violations found by the proxy: {report['count']} in {report['exchanges']} exchanges")
    return 0 if added < 1.0 and report["count"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
