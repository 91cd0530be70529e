"""Conformance suite for the Cumulonimbus session API: `pytest conformance --base-url URL`.

It judges any server from the outside, from `openapi/sessions.yaml` alone.
"""

from importlib.metadata import PackageNotFoundError, version

# The version lives once, in pyproject.toml; the installed distribution's metadata has it.
try:
    __version__ = version("cumulonimbus-contract")
except PackageNotFoundError:  # imported from a checkout that was never installed
    __version__ = "0+unknown"
