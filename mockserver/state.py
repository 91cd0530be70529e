"""Per-app state: what :func:`mockserver.app.create_app` builds and every request reads,
kept in ``app.extensions["cumulonimbus"]`` (no globals, so each test gets a fresh app)::

    state = app.extensions["cumulonimbus"]
    state.backend.reset()
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import current_app

from .journal import Journal
from .models import Backend
from .policies import Context, Pipeline
from .spec import Spec
from .validation import SpecValidator

if TYPE_CHECKING:
    from .persistence import StateWriter

EXTENSION = "cumulonimbus"


@dataclass
class MockState:
    spec: Spec
    backend: Backend
    validator: SpecValidator
    strict: bool
    journal: Journal
    pipeline: Pipeline
    context: Context
    writer: StateWriter | None = None  # with --state

    def record(self, entry: dict[str, Any]) -> None:
        self.journal.append(entry)


def mock_state() -> MockState:
    """The state of the app handling the current request."""
    state: MockState = current_app.extensions[EXTENSION]
    return state
