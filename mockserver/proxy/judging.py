"""The checker: each exchange the proxy passed on, judged on a worker thread with the
conformance suite's own traffic rules (`conformance/traffic.py`: the same check ids and
wording as the suite), and the violations it keeps. The one room of the mock that reads
the suite (`BRIDGES` in `tests/test_layout.py`); it never imports pytest.
"""

from __future__ import annotations

import datetime
import json
import logging
import queue
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from requests.structures import CaseInsensitiveDict

from conformance.exchange import Exchange
from conformance.failures import CheckFailure
from conformance.redact import Redactor
from conformance.spec import Operation, Spec
from conformance.traffic import (
    REMAINING_CHECK,
    RemainingTracker,
    client_user,
    find_operation,
    judge_exchange,
    response_check_ids,
)

from .upstream import Upstream

log = logging.getLogger("cumulonimbus-mock.proxy")

MAX_VIOLATIONS = 500
UPSTREAM = "proxy.upstream"  # failures of the upstream itself, beside the spec's checks


@dataclass
class Record:
    """One exchange as the proxy saw it, queued for judging."""

    method: str
    target: str  # path and query, relative to the API's base URL
    client_ip: str
    request_headers: list[tuple[str, str]]
    request_body: bytes
    started: float
    wall: float
    status: int = 0
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    truncated: bool = False
    finished: float = 0.0
    error: str | None = None  # "unreachable" or "timeout": the upstream failed
    detail: str = ""
    submitted: bool = False
    abandoned: bool = False  # not all of it went by: counted, not judged


class Checker:
    """Judges queued exchanges on a worker thread and keeps what it found."""

    def __init__(self, spec: Spec, upstream: Upstream) -> None:
        self.spec = spec
        self.upstream = upstream
        self.tracker = RemainingTracker(spec)
        self._queue: queue.SimpleQueue[Record | None] = queue.SimpleQueue()
        self._lock = threading.Condition()
        self._submitted = 0
        self._processed = 0
        self._thread: threading.Thread | None = None
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.violations: deque[dict[str, Any]] = deque(maxlen=MAX_VIOLATIONS)
            self.exchanges = 0
            self.operations: dict[str, int] = {}
            self.failures_seen = 0
            self.next_id = 1
            # (check, operation id) pairs judged at least once, for the report's table.
            self.judged: set[tuple[str, str]] = set()
            self.failed: list[dict[str, Any]] = []
            self.first: float | None = None
            self.last: float | None = None
        self.tracker.reset()

    def start(self) -> Checker:
        self._thread = threading.Thread(target=self._run, name="contract-checker", daemon=True)
        self._thread.start()
        return self

    def begin(self) -> None:
        """An exchange has started: `drain` waits for it too, so that whoever has had an
        answer from the proxy can read its verdict at once."""
        with self._lock:
            self._submitted += 1

    def submit(self, record: Record) -> None:
        """Queue a begun exchange for judging (once; later calls do nothing)."""
        if record.submitted:
            return
        record.submitted = True
        self._queue.put(record)

    def drain(self, timeout: float) -> bool:
        """Wait until everything submitted so far is judged; False if `timeout` passed."""
        with self._lock:
            target = self._submitted
            return self._lock.wait_for(lambda: self._processed >= target, timeout)

    def stop(self, timeout: float = 10.0) -> None:
        self.drain(timeout)
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            items = list(self.violations)
            return {
                "upstream": self.upstream.base_url,
                "exchanges": self.exchanges,
                "pending": self._submitted - self._processed,
                "count": len(items),
                "items": items,
                # How many exchanges of each operation were judged (unknown paths: "-").
                "operations": dict(sorted(self.operations.items())),
            }

    def _run(self) -> None:
        while True:
            record = self._queue.get()
            if record is None:
                return
            try:
                self.judge(record)
            except Exception as error:  # a bug here must not stop the checking
                log.exception("could not judge %s %s: %s", record.method, record.target, error)
            finally:
                with self._lock:
                    self._processed += 1
                    self._lock.notify_all()

    def judge(self, record: Record) -> None:
        exchange = self._exchange(record)
        path = record.target.split("?", 1)[0]
        op = find_operation(self.spec, record.method, path)
        found: list[CheckFailure] = []
        judged: set[tuple[str, str]] = set()
        if record.error is not None:
            found.append(self._upstream_failure(record, op, exchange))
            judged.add((UPSTREAM, op.id if op else "-"))
        elif op is not None and not record.truncated and not record.abandoned:
            found += judge_exchange(self.spec, op, exchange)
            judged.update((check, op.id) for check in response_check_ids())
            token = exchange.request_headers.get("Authorization")
            step = self.tracker.observe(
                op,
                exchange,
                path,
                record.client_ip,
                client_user(token),
                record.started,
                record.finished,
            )
            judged.add((REMAINING_CHECK, op.id))
            if step is not None:
                found.append(step)
        with self._lock:
            self.exchanges += 1
            name = op.id if op else "-"
            self.operations[name] = self.operations.get(name, 0) + 1
            self.first = self.first or record.wall
            self.last = record.wall
            self.judged |= judged
            for failure in found:
                item = {
                    "id": self.next_id,
                    "time": iso_time(record.wall),
                    "request": f"{record.method} /api{record.target}",
                    "status": record.status,
                    "operationId": op.id if op else None,
                    **failure.as_dict(),
                }
                self.next_id += 1
                self.violations.append(item)
                self.failed.append(item)
        for failure in found:
            log.warning("contract violation:\n%s", failure.render())

    def _exchange(self, record: Record) -> Exchange:
        """The record in the suite's shape, with a redactor that knows this exchange's
        secrets (the token, passwords and codes it carried)."""
        redactor = Redactor()
        headers = {
            name: value
            for name, value in record.request_headers
            if not _browser_noise(name.lower())
        }
        for name, value in headers.items():
            if name.lower() in ("authorization", "cookie", "x-mock-token"):
                redactor.add_token(value)
        body_text = record.request_body.decode("utf-8", "replace") if record.request_body else None
        if body_text:
            _learn_request_secrets(redactor, body_text)
        text = bytes(record.body).decode("utf-8", "replace")
        redactor.learn(text)
        return Exchange(
            method=record.method,
            url=self.upstream.base_url + record.target,
            request_headers=headers,
            request_body=body_text,
            status=record.status,
            headers=CaseInsensitiveDict(record.response_headers),
            text=text,
            redactor=redactor,
        )

    def _upstream_failure(
        self, record: Record, op: Operation | None, exchange: Exchange
    ) -> CheckFailure:
        timeout = self.upstream.timeout
        expected = f"an answer within {timeout:g} s"
        actual = (
            f"no answer within {timeout:g} s; the client got {record.status}"
            if record.error == "timeout"
            else f"{record.detail}; the client got {record.status}"
        )
        return CheckFailure(
            UPSTREAM,
            str(op) if op else f"{record.method} /api{record.target.split('?', 1)[0]}",
            "the upstream answers",
            expected,
            actual,
            exchange.curl(),
        )


# What a browser adds to every fetch and the API never reads: left out of the curl line
# (which reproduces the exchange), so that it stays readable.
BROWSER_HEADERS = frozenset(
    ("origin", "referer", "accept-language", "cache-control", "pragma", "priority", "dnt")
)


def _browser_noise(name: str) -> bool:
    return name.startswith("sec-") or name in BROWSER_HEADERS


def _learn_request_secrets(redactor: Redactor, body_text: str) -> None:
    try:
        body = json.loads(body_text)
    except ValueError:
        return
    if not isinstance(body, dict):
        return
    password = body.get("password")
    if isinstance(password, str):
        redactor.add_password(password)
    factor = body.get("2fa")
    if isinstance(factor, dict):
        for key in ("token", "code"):
            value = factor.get(key)
            if isinstance(value, str):
                redactor.add_token(value) if key == "token" else redactor.add_password(value)


def iso_time(wall: float) -> str:
    moment = datetime.datetime.fromtimestamp(wall, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
