"""``cumulonimbus-mock proxy``: its options, the server on loopback, and the report written
on exit (SIGTERM and Ctrl-C both end it, whatever the parent ignored).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import signal
import sys
import threading

from .forwarding import Proxy, access_log, make_proxy_server
from .report import write_report
from .upstream import Upstream

INSTALL_HINT = "install the proxy extra: pip install 'cumulonimbus-contract[proxy]'"


def main(argv: list[str]) -> int:
    """``cumulonimbus-mock proxy --upstream URL [--port P] [--report FILE]``."""
    parser = argparse.ArgumentParser(
        prog="cumulonimbus-mock proxy",
        description=(
            "Forward /api to a real server of the API and check every exchange against "
            "openapi/sessions.yaml; violations show on the dashboard at /_mock/."
        ),
    )
    parser.add_argument(
        "--upstream", required=True, metavar="URL", help="the server's API base URL (…/api)"
    )
    parser.add_argument(
        "--port", type=int, default=8000, help="port on 127.0.0.1 (default 8000; 0 picks one)"
    )
    parser.add_argument(
        "--report",
        metavar="FILE",
        help="on exit, write the suite's report of the traffic (Markdown; JSON if FILE.json)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="answer 504 when the upstream takes over S seconds (default 30)",
    )
    parser.add_argument(
        "--control-token", metavar="T", help="require header X-Mock-Token: T on /_mock/violations"
    )
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    args = parser.parse_args(argv)
    if args.report and importlib.util.find_spec("pytest") is None:
        # The suite's report module needs it; better said now than after a day's traffic.
        print(f"cumulonimbus-mock proxy: --report needs pytest; {INSTALL_HINT}", file=sys.stderr)
        return 2
    if not 0 < args.timeout <= 3600:
        parser.error("--timeout must be more than 0 and at most 3600 seconds")
    try:
        upstream = Upstream.parse(args.upstream, args.timeout)
    except ValueError as error:
        parser.error(str(error))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.quiet:
        access_log.setLevel(logging.WARNING)
    proxy = Proxy(upstream, control_token=args.control_token)
    try:
        # Loopback only: the proxy carries its users' tokens.
        server = make_proxy_server(proxy, "127.0.0.1", args.port)
    except OSError as error:
        print(
            f"cumulonimbus-mock: cannot listen on 127.0.0.1:{args.port}: {error.strerror}",
            file=sys.stderr,
        )
        return 2
    base = f"http://127.0.0.1:{server.port}"
    print(f"cumulonimbus-mock proxy listening on {base} (bound to 127.0.0.1 only)", flush=True)
    print(f"  API:       {base}/api -> {upstream.base_url}", flush=True)
    print(f"  contract:  {base}/_mock/ (violations: {base}/_mock/violations)", flush=True)
    if args.report:
        print(f"  report:    {args.report} (written on exit)", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    # Ctrl-C stops it even when started with SIGINT ignored (a parent that ignores it,
    # or `&` in a script), which Python would otherwise keep: it would never end.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        proxy.close()
        if args.report:
            write_report(proxy.checker, args.report)
            print(f"cumulonimbus-mock proxy: report written to {args.report}", flush=True)
    return 0
