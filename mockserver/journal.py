"""The request journal: the most recent API requests and their responses, bounded.

One process keeps it in memory; workers sharing state keep it in Redis
(:class:`mockserver.rediswire.RedisJournal`), so ``GET /_mock/requests`` sees them all.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from .inputs import parse_json

BODIES = ("requestBody", "responseBody")


def readable(entry: dict[str, Any]) -> dict[str, Any]:
    """An entry as JSON shows it: recording keeps raw bytes and header lists (WSGI
    environ keys for the request), as that is cheaper on every request's path."""
    decoded = dict(entry)
    request_headers = entry.get("requestHeaders")
    if isinstance(request_headers, list):
        decoded["requestHeaders"] = {_header_name(key): value for key, value in request_headers}
    if isinstance(entry.get("responseHeaders"), list):
        decoded["responseHeaders"] = dict(entry["responseHeaders"])
    for key in BODIES:
        raw = entry.get(key)
        if isinstance(raw, bytes):
            try:
                decoded[key] = parse_json(raw)
            except ValueError:
                decoded[key] = raw[:200].decode("utf-8", "replace")
    return decoded


def _header_name(key: str) -> str:
    if key.startswith("HTTP_"):
        key = key[5:]
    return "-".join(part.capitalize() for part in key.split("_"))


class Journal:
    def __init__(self, size: int) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=size)
        self._lock = threading.Lock()

    def append(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._entries.append(entry)

    def items(self, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` entries, oldest first."""
        with self._lock:
            entries = list(self._entries)[-limit:]
        return [readable(entry) for entry in entries]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
