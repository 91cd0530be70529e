"""Fixtures for testing the conformance suite: a fresh mock app, served on a free port."""

from __future__ import annotations

from typing import Any

import pytest

from mockserver.app import create_app


@pytest.fixture
def mock_app() -> Any:
    return create_app()
