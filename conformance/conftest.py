"""Loads the suite's plugin where the suite runs: `pytest conformance` from a checkout, or
`pytest --pyargs conformance` (`cumulonimbus-conformance`) from an install.

The options come from `pytest_cumulonimbus`, which an install registers through its
entry point before the command line is parsed; a checkout that is not installed gets it
here. The run's hooks are registered only here, so an unrelated project in the same
environment pays nothing for them.
"""

import pytest

import pytest_cumulonimbus


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    if not pluginmanager.is_registered(pytest_cumulonimbus):
        pluginmanager.register(pytest_cumulonimbus, "cumulonimbus")


def pytest_configure(config: pytest.Config) -> None:
    from conformance import plugin

    if not config.pluginmanager.is_registered(plugin):
        config.pluginmanager.register(plugin, "cumulonimbus-conformance")
