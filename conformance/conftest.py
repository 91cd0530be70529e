"""Loads the conformance plugin when the suite runs from a checkout (`pytest conformance`).

An installed distribution registers the same plugin through the `pytest11` entry point;
registering it twice is avoided here.
"""

import pytest

from conformance import plugin


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    if not pluginmanager.is_registered(plugin):
        pluginmanager.register(plugin, "cumulonimbus_conformance")
