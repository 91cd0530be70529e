"""The request journal: the most recent API requests and their responses, bounded.

One process keeps it in memory; workers sharing state keep it in Redis
(:class:`mockserver.redisstore.RedisJournal`), so ``GET /_mock/requests`` sees them all.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any


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
            return list(self._entries)[-limit:]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
