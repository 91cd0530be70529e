"""The ``cumulonimbus-mock`` command: serve the mock, or print a demo user's TOTP code.

cumulonimbus-mock --host 127.0.0.1 --port 8000 [--seed users.yaml] [--strict]
cumulonimbus-mock totp bob
cumulonimbus-mock proxy --upstream https://staging.example/api [--port 8000] [--report FILE]
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from .records import SeedUser
from .secondfactor import totp_code
from .serving import READ_TIMEOUT

if TYPE_CHECKING:
    from flask import Flask


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["totp"]:
        return _totp(argv[1:])
    if argv[:1] == ["proxy"]:
        try:
            from .proxy import main as proxy_main
        except ImportError as error:  # an install without the proxy extra
            module = (error.name or "a module").split(".")[0]
            print(
                f"cumulonimbus-mock proxy: {module} is not installed; install the proxy "
                "extra: pip install 'cumulonimbus-contract[proxy]'",
                file=sys.stderr,
            )
            return 2
        return proxy_main(argv[1:])
    return _serve(argv)


def _serve(argv: list[str]) -> int:
    args = _serve_args(argv)
    app = _build_app(args)
    if app is None:
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.quiet:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    from .serving import make_server

    try:
        server = make_server(
            args.host,
            args.port,
            app,
            threaded=True,
            workers=args.workers,
            read_timeout=args.read_timeout,
        )
    except OSError as error:
        print(
            f"cumulonimbus-mock: cannot listen on {args.host}:{args.port}: {error.strerror}",
            file=sys.stderr,
        )
        return 2
    _announce(args, app, server.port)
    _run(server, app.extensions["cumulonimbus"].writer)
    return 0


def _serve_args(argv: list[str]) -> argparse.Namespace:
    """The serve command's options, checked together (``--workers`` needs ``--redis``...)."""
    parser = argparse.ArgumentParser(
        prog="cumulonimbus-mock",
        description=(
            "A stateful mock of the Cumulonimbus session API (under /api) "
            "with a control API (under /_mock)."
        ),
        epilog=(
            "Also: 'cumulonimbus-mock totp USERNAME' prints a seed user's current TOTP code; "
            "'cumulonimbus-mock proxy --upstream URL' checks a real server's traffic."
        ),
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, loopback only)"
    )
    parser.add_argument(
        "--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)"
    )
    parser.add_argument(
        "--seed", metavar="FILE", help="load users from this YAML file instead of the demo users"
    )
    parser.add_argument(
        "--strict", action="store_true", help="validate every response against the spec"
    )
    parser.add_argument(
        "--control-token", metavar="T", help="require header X-Mock-Token: T on the control API"
    )
    parser.add_argument("--no-control", action="store_true", help="serve no control API")
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    parser.add_argument(
        "--state",
        metavar="FILE",
        help="keep users, sessions, kill switches and the signing key in FILE across restarts",
    )
    parser.add_argument(
        "--redis",
        metavar="URL",
        help="keep all state in Redis (e.g. redis://127.0.0.1:6379/0), shared by every worker",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="serve with N worker processes; needs --redis",
    )
    parser.add_argument(
        "--as-deployed",
        metavar="VERSION",
        help="answer like that deployed version of the service, bugs included, instead of "
        "like the contract (profiles: openapi/profiles/; the control API switches it)",
    )
    parser.add_argument(
        "--read-timeout",
        type=float,
        default=READ_TIMEOUT,
        metavar="S",
        help=f"drop a client that takes over S seconds to send its headers or body "
        f"(default {READ_TIMEOUT:g})",
    )
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be 1 or more")
    if args.workers > 1 and not args.redis:
        parser.error("--workers needs --redis: worker processes must share one state")
    if not 0 < args.read_timeout <= 3600:
        parser.error("--read-timeout must be more than 0 and at most 3600 seconds")
    if args.redis and args.state:
        parser.error("--state and --redis do not go together: Redis already keeps the state")
    return args


def _build_app(args: argparse.Namespace) -> Flask | None:
    """The app the options describe, or None when it cannot be built (the reason printed)."""
    from .app import create_app
    from .persistence import StateFileError
    from .profiles import ProfileError
    from .seed import SeedError, load_seed

    seed: list[SeedUser] | None = None
    if args.seed:
        try:
            seed = load_seed(args.seed)
        except SeedError as error:
            print(f"cumulonimbus-mock: {error}", file=sys.stderr)
            return None
    config = {
        "SEED_USERS": seed,
        "STRICT_RESPONSES": args.strict,
        "CONTROL": not args.no_control,
        "CONTROL_TOKEN": args.control_token,
        # The address it was told to bind is its own name too (the loopback names always are).
        "CONTROL_HOSTS": () if args.host in ("0.0.0.0", "::", "") else (args.host.lower(),),
        "ISSUER": args.host,
        "STATE_FILE": args.state,
        "REDIS_URL": args.redis,
        "PROFILE": args.as_deployed,
    }
    try:
        return create_app(config)
    except (StateFileError, ConnectionError, ProfileError) as error:
        print(f"cumulonimbus-mock: {error}", file=sys.stderr)
        return None


def _announce(args: argparse.Namespace, app: Flask, port: int) -> None:
    """Say where the mock listens and what it serves."""
    base = f"http://{args.host}:{port}"
    users = app.extensions["cumulonimbus"].backend.users.values()
    print(f"cumulonimbus-mock listening on {base} (bound to {args.host} only)", flush=True)
    print(f"  API:     {base}/api", flush=True)
    if not args.no_control:
        print(
            f"  control: {base}/_mock" + (" (needs X-Mock-Token)" if args.control_token else ""),
            flush=True,
        )
    print("  users:   " + ", ".join(u.username for u in users), flush=True)
    if args.redis:
        print(f"  workers: {args.workers}, state in Redis at {args.redis}", flush=True)
    if args.state:
        print(f"  state:   {args.state} (users, sessions, switches, signing key)", flush=True)
    if args.as_deployed:
        print(
            f"  profile: as deployed, cumulonimbus-api {args.as_deployed} (bugs included; "
            "see README 'Test against production as it is')",
            flush=True,
        )


def _run(server: Any, writer: Any) -> None:
    """Serve until Ctrl-C or SIGTERM, then write the state file a last time."""
    # SIGTERM ends the server like Ctrl-C does, so the state file gets its last write.
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
        if writer is not None:
            writer.stop()


def _totp(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="cumulonimbus-mock totp", description="Print a user's current TOTP code."
    )
    parser.add_argument("username")
    parser.add_argument("--seed", metavar="FILE", help="the seed file the mock was started with")
    parser.add_argument(
        "--at",
        type=float,
        help="epoch seconds (default: now; use the mock's clock if you moved it)",
    )
    args = parser.parse_args(argv)
    from .seed import SeedError, demo_users, load_seed

    try:
        users = load_seed(args.seed) if args.seed else demo_users()
    except SeedError as error:
        print(f"cumulonimbus-mock: {error}", file=sys.stderr)
        return 2
    user = next((u for u in users if u.username.casefold() == args.username.casefold()), None)
    if user is None:
        print(f"cumulonimbus-mock: no seed user {args.username!r}", file=sys.stderr)
        return 2
    if not user.totp_secret:
        print(f"cumulonimbus-mock: {user.username} has no TOTP second factor", file=sys.stderr)
        return 2
    print(totp_code(user.totp_secret, args.at if args.at is not None else time.time()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
