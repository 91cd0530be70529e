"""The state file (``--state FILE``): users, sessions, kill switches and the signing key
on disk, so a restarted mock still accepts the tokens it issued.

Writes are atomic (a temporary file in the same folder, fsync, rename), happen shortly
after each change and at shutdown. A file that cannot be read or parsed, or that parses
but does not hold a valid state, is never overwritten: the mock refuses to start and
says why. One mock at a time owns a state file: it holds a lock beside it (``.NAME.lock``,
released by the kernel however the mock ends), so a second mock on the same file refuses
to start instead of silently overwriting the first one's users::

    store = StateFile("mock-state.json")
    store.claim()                    # StateFileError if another mock has it
    snapshot = store.load()          # None when the file does not exist yet
    writer = StateWriter(backend, store, interval=0.5).start()
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from .models import Backend

log = logging.getLogger("cumulonimbus-mock")

# A mock stopped a moment ago may still be writing its last state: wait this long for it.
CLAIM_PATIENCE = 3.0  # seconds


class StateFileError(Exception):
    """The state file exists but cannot be used; the message says why."""


class StateFile:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(f".{self.path.name}.lock")
        self._temporary_prefix = f".{self.path.name}.tmp-"
        self._lock_fd: int | None = None

    def claim(self, patience: float = CLAIM_PATIENCE) -> None:
        """Make this process (and the workers it forks) the file's only writer, and clear
        what a crash mid-write left behind. Raises StateFileError when another mock has
        the file or its folder cannot be written."""
        if self._lock_fd is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as error:
            raise StateFileError(
                f"cannot write beside state file {self.path}: {error.strerror or error}"
            ) from error
        deadline = time.monotonic() + patience
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    owner = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
                    os.close(fd)
                    raise StateFileError(
                        f"state file {self.path} is in use by another mock (pid {owner}); "
                        "give each mock its own --state file"
                    ) from None
                time.sleep(0.05)  # another process's last write, not the mock's clock
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd
        self._remove_leftovers()

    def release(self) -> None:
        """Give up this process's hold on the file. Workers forked while it was held
        keep holding it until they end (the lock belongs to the open file)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _remove_leftovers(self) -> None:
        # Temporary files of an interrupted write (each holds the signing key); with the
        # lock held, no one else is writing one. Older versions named them NAME.XXXXXXXX.
        legacy = re.compile(re.escape(f".{self.path.name}.") + r"[a-z0-9_]{8}")
        for leftover in self.path.parent.iterdir():
            name = leftover.name
            if name.startswith(self._temporary_prefix) or legacy.fullmatch(name):
                with contextlib.suppress(OSError):
                    leftover.unlink()

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
        handle, temporary = tempfile.mkstemp(prefix=self._temporary_prefix, dir=folder)
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
    """Claim the file and load it into the backend; False when there was no file yet."""
    store.claim()
    try:
        return _restore(backend, store)
    except BaseException:
        store.release()
        raise


def _restore(backend: Backend, store: StateFile) -> bool:
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

    def stop(self, release: bool = True) -> None:
        """Stop writing, after a last write; ``release=False`` keeps the claim on the
        file (for workers about to be forked, which write from then on)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        try:
            self.flush()
        finally:
            if release:
                self.store.release()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.flush()
            except OSError as error:  # a full disk must not kill the server; say so
                log.error("cannot write state file %s: %s", self.store.path, error)
