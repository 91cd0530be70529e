"""The state file (``--state FILE``): users, sessions, kill switches and the signing key
on disk, so a restarted mock still accepts the tokens it issued.

Writes are atomic (a temporary file in the same folder, fsync, rename), happen shortly
after each change and at shutdown. A file that cannot be read or parsed is never
overwritten: the mock refuses to start and says why::

    store = StateFile("mock-state.json")
    snapshot = store.load()          # None when the file does not exist yet
    writer = StateWriter(backend, store, interval=0.5).start()
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from .models import Backend

log = logging.getLogger("cumulonimbus-mock")


class StateFileError(Exception):
    """The state file exists but cannot be used; the message says why."""


class StateFile:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self) -> dict[str, Any] | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as error:
            raise StateFileError(f"cannot read state file {self.path}: {error}") from error
        try:
            data = json.loads(text)
        except ValueError as error:
            raise StateFileError(
                f"state file {self.path} is not valid JSON ({error}); "
                "it was left untouched: move it away or fix it"
            ) from error
        if not isinstance(data, dict):
            raise StateFileError(f"state file {self.path} does not hold a state snapshot")
        return data

    def save(self, snapshot: dict[str, Any]) -> None:
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=folder)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(snapshot, out, separators=(",", ":"))
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temporary, 0o600)  # it holds the signing key
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def restore(backend: Backend, store: StateFile) -> bool:
    """Load the file into the backend; False when there was no file yet."""
    snapshot = store.load()
    if snapshot is None:
        return False
    try:
        backend.restore(snapshot)
    except ValueError as error:
        raise StateFileError(f"state file {store.path}: {error}; it was left untouched") from error
    return True


class StateWriter:
    """Writes the backend to the file whenever its revision moved, every ``interval`` s."""

    def __init__(self, backend: Backend, store: StateFile, interval: float = 0.5) -> None:
        self.backend = backend
        self.store = store
        self.interval = interval
        self._written = -1
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="state-writer", daemon=True)

    def start(self) -> StateWriter:
        self._thread.start()
        return self

    def flush(self) -> bool:
        """Write now if anything changed; whether a write happened."""
        with self._lock:
            revision = self.backend.revision
            if revision == self._written:
                return False
            self.store.save(self.backend.snapshot())
            self._written = revision
            return True

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.flush()
            except OSError as error:  # a full disk must not kill the server; say so
                log.error("cannot write state file %s: %s", self.store.path, error)
