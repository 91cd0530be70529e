"""Proxy mode (``cumulonimbus-mock proxy``): forwarding, failures of the upstream, CORS,
the violations it finds and shows, and its report. The upstream is the mock (or a broken
or tiny stand-in) served on loopback; the proxy runs in this process."""

from __future__ import annotations

import contextlib
import http.server
import json
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from werkzeug.wrappers import Request, Response

from mockserver.app import create_app
from mockserver.proxy import Proxy, Upstream, make_proxy_server, write_report
from tests.conformance.harness import Broken, serve

ROOT = Path(__file__).resolve().parent.parent
ALICE = {"username": "alice", "password": "password"}


@dataclass
class Running:
    proxy: Proxy
    base: str  # the proxy's base URL, without /api
    upstream: str  # the upstream's API base URL

    @property
    def api(self) -> str:
        return self.base + "/api"

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1])

    def violations(self) -> dict[str, Any]:
        response = requests.get(self.base + "/_mock/violations", timeout=5)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data


@contextlib.contextmanager
def proxy_for(upstream: str, timeout: float = 5.0, **kw: Any) -> Iterator[Running]:
    proxy = Proxy(Upstream.parse(upstream, timeout), **kw)
    server = make_proxy_server(proxy, port=0)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Running(proxy, f"http://127.0.0.1:{server.port}", upstream)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        proxy.close()


@contextlib.contextmanager
def proxied(app: Any, timeout: float = 5.0, **kw: Any) -> Iterator[Running]:
    with serve(app) as upstream, proxy_for(upstream, timeout, **kw) as running:
        yield running


class Echo:
    """An upstream that records what reached it and answers with fixed headers."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        self.seen.append(
            {
                "method": request.method,
                "target": environ.get("RAW_URI") or environ.get("REQUEST_URI"),
                "headers": dict(request.headers),
                "body": request.get_data(),
            }
        )
        response = Response(
            b'{"teapot": true}',
            status=418,
            headers={"X-Upstream": "yes", "Access-Control-Allow-Origin": "https://one.example"},
            content_type="application/json",
        )
        return response(environ, start_response)


def test_a_request_goes_upstream_as_the_client_sent_it() -> None:
    echo = Echo()
    with proxied(echo) as running:
        requests.post(
            running.api + "/users/me/sessions?x=1&x=2",
            data=b'{"name": "ci", "password": "p"}',
            headers={
                "Authorization": "tok",
                "X-Session-Name": "laptop",
                "Content-Type": "application/json",
            },
            timeout=5,
        )
    (seen,) = echo.seen
    assert seen["method"] == "POST"
    assert seen["target"] == "/api/users/me/sessions?x=1&x=2"
    assert seen["body"] == b'{"name": "ci", "password": "p"}'
    headers = seen["headers"]
    assert (headers["Authorization"], headers["X-Session-Name"]) == ("tok", "laptop")
    assert headers["Host"] == running.upstream.split("/")[2]
    # Nothing the client did not send.
    assert not {"X-Forwarded-For", "Via", "Forwarded"} & set(headers)


def test_the_answer_comes_back_as_the_upstream_sent_it_with_the_mocks_cors() -> None:
    with proxied(Echo()) as running:
        response = requests.get(running.api + "/", timeout=5)
    assert response.status_code == 418
    assert response.content == b'{"teapot": true}'
    assert response.headers["X-Upstream"] == "yes"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "RateLimit-Remaining" in response.headers["Access-Control-Expose-Headers"]


def test_a_preflight_is_answered_by_the_proxy_and_not_sent_upstream() -> None:
    echo = Echo()
    with proxied(echo) as running:
        response = requests.options(
            running.api + "/users/me/sessions",
            headers={
                "Origin": "http://localhost:5173",
                "Access-Control-Request-Method": "DELETE",
                "Access-Control-Request-Headers": "authorization",
            },
            timeout=5,
        )
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Authorization" in response.headers["Access-Control-Allow-Headers"]
    assert echo.seen == []


def test_the_answer_is_streamed() -> None:
    """The first chunk reaches the client while the upstream still holds the second."""
    release = threading.Event()

    def slow(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [("Content-Type", "application/json")])

        def chunks() -> Iterator[bytes]:
            yield b'{"first": '
            release.wait(10)
            yield b"true}"

        return chunks()

    with proxied(slow) as running:
        response = requests.get(running.api + "/", stream=True, timeout=10)
        chunks = response.iter_content(chunk_size=None)
        first = next(chunks)
        release.set()
        rest = b"".join(chunks)
    assert first == b'{"first": '
    assert first + rest == b'{"first": true}'


def test_an_unreachable_upstream_is_a_json_502_and_is_recorded() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the proxy connects
    with proxy_for(f"http://127.0.0.1:{port}/api") as running:
        response = requests.get(running.api + "/users/me/sessions", timeout=5)
        violations = running.violations()
    assert response.status_code == 502
    assert response.json() == {"code": "BAD_GATEWAY_ERROR", "message": "Bad Gateway"}
    assert response.headers["Cache-Control"] == "no-cache, no-store, must-revalidate"
    (item,) = violations["items"]
    assert (item["check"], item["operationId"], item["status"]) == (
        "proxy.upstream",
        "getSelfSessions",
        502,
    )
    assert "ConnectionRefusedError" in item["actual"]


def test_a_slow_upstream_is_a_json_504_and_is_recorded() -> None:
    release = threading.Event()

    def stuck(environ: dict[str, Any], start_response: Any) -> Any:
        release.wait(10)
        return Response("{}", content_type="application/json")(environ, start_response)

    with proxied(stuck, timeout=0.2) as running:
        response = requests.get(running.api + "/users/me/sessions", timeout=5)
        release.set()
        (item,) = running.violations()["items"]
    assert response.status_code == 504
    assert response.json() == {"code": "GATEWAY_TIMEOUT_ERROR", "message": "Gateway Timeout"}
    assert (item["check"], item["expected"]) == ("proxy.upstream", "an answer within 0.2 s")


def _without_cache_control(seen: Any, response: Response, ledger: Any) -> None:
    del response.headers["Cache-Control"]


def test_a_violation_is_shown_with_the_suites_wording_and_no_secrets() -> None:
    with proxied(Broken(create_app(), response=_without_cache_control)) as running:
        login = requests.post(running.api + "/login", json=ALICE, timeout=5)
        token = login.json()["token"]
        requests.get(running.api + "/users/me/sessions", headers={"Authorization": token})
        data = running.violations()
    assert data["exchanges"] == 2
    assert [(v["check"], v["operationId"]) for v in data["items"]] == [
        ("headers.cache-control", "login"),
        ("headers.cache-control", "getSelfSessions"),
    ]
    first, second = data["items"]
    assert first["rule"] == "every response carries the no-cache Cache-Control header"
    assert first["expected"] == "Cache-Control: no-cache, no-store, must-revalidate"
    assert first["request"] == "POST /api/login"
    assert "$CUMULONIMBUS_PASSWORD" in first["curl"]
    assert second["curl"].startswith(f"curl -i -X GET {running.upstream}/users/me/sessions")
    assert "Authorization: $CUMULONIMBUS_TOKEN" in second["curl"]
    assert token not in json.dumps(data)
    assert token.split(".")[1] not in json.dumps(data)


def test_clearing_the_violations() -> None:
    with proxied(Broken(create_app(), response=_without_cache_control)) as running:
        requests.get(running.api + "/", timeout=5)
        assert running.violations()["count"] == 1
        cleared = requests.delete(running.base + "/_mock/violations", timeout=5).json()
        again = running.violations()
    assert (cleared["count"], cleared["exchanges"]) == (0, 0)
    assert (again["count"], again["items"]) == (0, [])


def test_the_mock_through_the_proxy_breaks_nothing() -> None:
    with proxied(create_app()) as running:
        token = requests.post(running.api + "/login", json=ALICE, timeout=5).json()["token"]
        for path in ("/users/me/sessions", "/users/me/sessions/me", "/users/me/sessions/1"):
            requests.get(running.api + path, headers={"Authorization": token}, timeout=5)
        requests.get(running.api + "/users/me/sessions", timeout=5)  # 401
        data = running.violations()
    assert data["exchanges"] == 5
    assert data["items"] == []


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        pytest.param({"Host": "attacker.example"}, "FORBIDDEN_HOST_ERROR", id="foreign-host"),
        pytest.param({"Origin": "https://attacker.example"}, "FORBIDDEN_ORIGIN_ERROR", id="origin"),
    ],
)
def test_the_violations_are_for_this_machine_only(headers: dict[str, str], code: str) -> None:
    with proxied(Echo()) as running:
        response = requests.get(running.base + "/_mock/violations", headers=headers, timeout=5)
    assert response.status_code == 403
    assert response.json()["code"] == code
    assert "Access-Control-Allow-Origin" not in response.headers


def test_the_control_token_guards_the_violations() -> None:
    with proxied(Echo(), control_token="s3cret") as running:
        refused = requests.get(running.base + "/_mock/violations", timeout=5)
        allowed = requests.get(
            running.base + "/_mock/violations", headers={"X-Mock-Token": "s3cret"}, timeout=5
        )
    assert (refused.status_code, refused.json()["code"]) == (401, "INVALID_MOCK_TOKEN_ERROR")
    assert allowed.status_code == 200


def test_the_dashboard_page_is_served() -> None:
    with proxied(Echo()) as running:
        page = requests.get(running.base + "/_mock/", timeout=5)
        script = requests.get(running.base + "/_mock/static/dashboard/contract.js", timeout=5)
    assert page.status_code == 200
    assert 'id="contract-panel"' in page.text
    assert script.status_code == 200


@pytest.mark.parametrize("name", ["report.md", "report.json"])
def test_the_report_is_the_suites(tmp_path: Path, name: str) -> None:
    with proxied(Broken(create_app(), response=_without_cache_control)) as running:
        requests.get(running.api + "/", timeout=5)
        path = tmp_path / name
        assert running.proxy.checker.drain(10.0)  # as Proxy.close does before the report
        write_report(running.proxy.checker, str(path))
    text = path.read_text()
    if name.endswith(".json"):
        data = json.loads(text)
        assert data["format"] == "cumulonimbus-conformance-report/1"
        failed = [c for c in data["cases"] if c["outcome"] == "failed"]
        assert [(c["check"], c["operation"]) for c in failed] == [
            ("headers.cache-control", "getHello")
        ]
        assert data["summary"]["getHello"]["headers"] == {"state": "fail", "count": 1}
        assert data["summary"]["getHello"]["schema"] == {"state": "pass", "count": 0}
    else:
        assert text.startswith("# Cumulonimbus session API conformance report\n")
        assert f"Traffic through `cumulonimbus-mock proxy` to `{running.upstream}`" in text
        assert "### `headers.cache-control` on `getHello`" in text
        assert "| getHello | pass | FAIL 1 |" in text


def readme_block() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Check a front end's traffic.*?```sh\n(.*?)```", text, re.S)
    assert block, "the README has a sh block under its proxy mode section"
    return [line for line in block.group(1).splitlines() if not line.startswith("#")]


def test_ctrl_c_stops_the_proxy_even_when_started_with_sigint_ignored() -> None:
    """A parent that ignores SIGINT (a test runner, `&` in a script) passes that on; the
    proxy must still end on Ctrl-C rather than run on."""
    from tests.clients.conftest import free_port, wait_for

    port = free_port()
    command = [sys.executable, "-m", "mockserver", "proxy", "--upstream", "http://127.0.0.1:9/api"]
    process = subprocess.Popen(
        [*command, "--port", str(port), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/_mock/violations", process)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_readme_commands_work(tmp_path: Path) -> None:
    """The README's proxy lines, run for real: the command (upstream and port replaced by
    a served mock and a free port), its curl lines, then Ctrl-C and the report."""
    from tests.clients.conftest import free_port, wait_for

    command, *curls = readme_block()
    assert command.startswith("cumulonimbus-mock proxy --upstream https://staging.example/api")
    assert all(line.startswith("curl ") for line in curls) and len(curls) == 2
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with serve(Broken(create_app(), response=_without_cache_control)) as upstream:
        argv = shlex.split(command.replace("https://staging.example/api", upstream))
        argv[0:1] = [sys.executable, "-m", "mockserver"]
        process = subprocess.Popen(
            [*argv, "--port", str(port), "--quiet"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            wait_for(base + "/_mock/violations", process)
            assert requests.get(base + "/api/", timeout=5).status_code == 200
            outputs = [
                subprocess.run(
                    ["bash", "-c", line.split("  #")[0].replace("http://127.0.0.1:8000", base)],
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=True,
                ).stdout
                for line in curls
            ]
        finally:
            process.send_signal(signal.SIGINT)  # Ctrl-C
            # The proxy waits up to 10 s for exchanges in flight, then 10 s for its
            # checker thread: a generous bound, not a measure of its speed.
            try:
                output, _ = process.communicate(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()  # not left running, nor its pipe open, for the next test
                process.communicate()
                raise
    assert process.returncode == 0, output
    assert f"listening on {base} (bound to 127.0.0.1 only)" in output
    assert "[headers.cache-control] getHello (GET /)" in output  # logged as found
    shown, cleared = (json.loads(o) for o in outputs)
    assert [v["check"] for v in shown["items"]] == ["headers.cache-control"]
    assert cleared["items"] == []
    report = (tmp_path / "contract.md").read_text()
    assert report.startswith("# Cumulonimbus session API conformance report")


def test_the_readme_shows_the_contract_panel() -> None:
    path = "docs/proxy-contract.png"
    assert f"]({path})" in (ROOT / "README.md").read_text()
    assert (ROOT / path).stat().st_size < 200_000


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--upstream", "ftp://x/api"], "must be an http:// or https:// URL"),
        (["--upstream", "http://x/api", "--timeout", "0"], "--timeout must be more than 0"),
    ],
)
def test_bad_options_are_refused(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from mockserver.cli import main

    with pytest.raises(SystemExit) as exit:
        main(["proxy", *argv])
    assert exit.value.code == 2
    assert message in capsys.readouterr().err


class _KeepAlive(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    connections: set[int] = set()

    def do_GET(self) -> None:
        _KeepAlive.connections.add(self.client_address[1])
        body = b'{"hello": "world", "version": "5.3.0"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_the_upstream_connection_is_kept_alive_between_requests() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _KeepAlive)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        upstream = f"http://127.0.0.1:{server.server_address[1]}/api"
        with proxy_for(upstream) as running, requests.Session() as session:
            statuses = [session.get(running.api + "/").status_code for _ in range(3)]
    finally:
        server.shutdown()
        server.server_close()
    assert statuses == [200, 200, 200]
    assert len(_KeepAlive.connections) == 1


def test_a_body_too_large_to_hold_is_refused_unread() -> None:
    echo = Echo()
    with proxied(echo) as running, socket.create_connection(("127.0.0.1", running.port)) as sock:
        sock.sendall(
            b"POST /api/login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 99999999\r\n\r\n{"
        )
        answer = sock.makefile("rb").read()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")
    assert json.loads(body) == {"code": "BODY_TOO_LARGE_ERROR", "message": "Body Too Large"}
    assert echo.seen == []


def test_without_the_proxy_extra_the_command_says_what_to_install() -> None:
    code = (
        "import sys\n"
        "sys.modules['requests'] = None  # as in an install of the [mock] extra alone\n"
        "from mockserver.cli import main\n"
        "sys.exit(main(['proxy', '--upstream', 'http://127.0.0.1:9/api']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert "requests is not installed" in done.stderr
    assert "pip install 'cumulonimbus-contract[proxy]'" in done.stderr
