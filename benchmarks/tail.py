"""Where the mock's p99 comes from: wrk's latencies beside what the worker saw.

    .venv/bin/python benchmarks/tail.py --scenario c --duration 10

Serves ``cumulonimbus-mock`` as usual, but its worker records (1) how long each API
request spent in the app, (2) every garbage collector pause (``gc.callbacks``), (3)
every prune of expired buckets and sessions, and (4) *stalls*: gaps of more than 2 ms
between two requests while wrk kept 16 connections busy, which is time the worker's
one thread spent on something other than requests. It then prints wrk's percentiles
beside histograms of each. A p99 far above the app's own p99 is queueing behind pauses;
the pause histograms say whose.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
EDGES_MS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100)


def histogram(values_ms: list[float]) -> str:
    counts = [0] * (len(EDGES_MS) + 1)
    for value in values_ms:
        index = next((i for i, edge in enumerate(EDGES_MS) if value < edge), len(EDGES_MS))
        counts[index] += 1
    labels = [f"<{e:g}" for e in EDGES_MS] + [f">={EDGES_MS[-1]:g}"]
    return "  ".join(
        f"{label}:{count}" for label, count in zip(labels, counts, strict=True) if count
    )


def percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def serve(port: int, out: str, extra: list[str]) -> int:
    """The mock, instrumented; runs in the child process (Granian forks the worker)."""
    from mockserver import api as app_module
    from mockserver import cli
    from mockserver.models import Backend

    requests: list[float] = []
    stalls: list[float] = []
    gcs: dict[str, list[float]] = {"0": [], "1": [], "2": []}
    prunes: list[float] = []
    last_end = [0.0]
    started_gc = [0.0]
    original = app_module.answer_api

    def timed_handle(state: Any, request: Any, rest: str) -> Any:
        begin = time.perf_counter()
        if last_end[0] and begin - last_end[0] > 0.002:
            stalls.append((begin - last_end[0]) * 1000)
        try:
            return original(state, request, rest)
        finally:
            end = time.perf_counter()
            requests.append((end - begin) * 1000)
            last_end[0] = end

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started_gc[0] = time.perf_counter()
        else:
            gcs[str(info["generation"])].append((time.perf_counter() - started_gc[0]) * 1000)

    original_prune = Backend.prune

    def timed_prune(self: Backend) -> None:
        begin = time.perf_counter()
        original_prune(self)
        prunes.append((time.perf_counter() - begin) * 1000)

    def dump() -> None:
        while True:
            time.sleep(0.5)
            data = {
                "requests": requests,
                "stalls": stalls,
                "gc": gcs,
                "prunes": prunes,
                "pid": os.getpid(),
            }
            Path(out + ".tmp").write_text(json.dumps(data))
            os.replace(out + ".tmp", out)

    def reset() -> None:
        for values in (requests, stalls, prunes, *gcs.values()):
            values.clear()
        last_end[0] = 0.0

    app_module.answer_api = timed_handle
    Backend.prune = timed_prune  # type: ignore[method-assign]
    import signal

    from mockserver import serving

    original_loader = serving.GranianServer._load_in_worker

    def loader(self: Any) -> Any:
        gc.callbacks.append(on_gc)
        threading.Thread(target=dump, daemon=True).start()
        signal.signal(signal.SIGUSR1, lambda *_: reset())
        return original_loader(self)

    serving.GranianServer._load_in_worker = loader  # type: ignore[method-assign]
    return cli.main(["--port", str(port), "--quiet", *extra])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="a", choices="abc")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--prefill", type=int, default=0, metavar="N", help="N live buckets before the run"
    )
    parser.add_argument("--serve", nargs=2, metavar=("PORT", "OUT"), help=argparse.SUPPRESS)
    args, extra = parser.parse_known_args()
    if args.serve:
        return serve(int(args.serve[0]), args.serve[1], extra)

    import run

    port = run.free_port()
    out = os.path.join(tempfile.mkdtemp(), "tail.json")
    command = [sys.executable, __file__, "--serve", str(port), out, *extra]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        run.wait_until_up(process, base + "/api/")
        mock = run.Server("mock", base, "/api", "", process, 0.0)
        one, fifty = run.prepare_mock(mock)
        token = fifty if args.scenario == "b" else one
        options = argparse.Namespace(threads=1, connections=args.connections)
        if args.prefill:  # a frozen clock keeps them all live however long this takes
            run.call(base, "POST", "/_mock/clock", {"frozen": True})
            seconds = max(1, -(-args.prefill // 2500)) + 1
            run.wrk(mock, "a", token, seconds, options, 100_000, addresses=args.prefill)
            run.call(base, "POST", "/_mock/clock", {"frozen": False})
        run.wrk(mock, args.scenario, token, 2, options, 0)  # warm-up
        time.sleep(0.6)
        worker = json.loads(Path(out).read_text())["pid"]
        os.kill(worker, 10)  # SIGUSR1: forget the warm-up
        result = run.wrk(mock, args.scenario, token, args.duration, options, 50_000)
        time.sleep(1.2)
        data = json.loads(Path(out).read_text())
    finally:
        process.terminate()
        process.wait(timeout=10)
    app = data["requests"]
    print(
        f"scenario ({args.scenario}), {args.connections} connections, {args.duration} s; "
        f"load average {' '.join(Path('/proc/loadavg').read_text().split()[:3])}"
    )
    print(
        f"wrk: {result['rps']:.0f} req/s, p50 {result['p50_us'] / 1000:.2f} ms, "
        f"p90 {result['p90_us'] / 1000:.2f} ms, p99 {result['p99_us'] / 1000:.2f} ms, "
        f"max {result['max_us'] / 1000:.1f} ms"
    )
    print(
        f"in the app: {len(app)} requests, p50 {percentile(app, 0.5):.3f} ms, "
        f"p99 {percentile(app, 0.99):.3f} ms, max {max(app, default=0):.1f} ms"
    )
    print("  histogram (ms): " + histogram(app))
    stalls = data["stalls"]
    print(
        f"stalls > 2 ms between requests: {len(stalls)}, total {sum(stalls):.0f} ms, "
        f"max {max(stalls, default=0):.1f} ms"
    )
    print("  histogram (ms): " + histogram(stalls))
    for generation, pauses in data["gc"].items():
        print(
            f"gc generation {generation}: {len(pauses)} collections, total {sum(pauses):.0f} ms, "
            f"max {max(pauses, default=0):.2f} ms; histogram: {histogram(pauses)}"
        )
    prunes = data["prunes"]
    print(f"prunes: {len(prunes)}, total {sum(prunes):.0f} ms, max {max(prunes, default=0):.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
