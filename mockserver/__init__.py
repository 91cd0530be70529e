"""cumulonimbus-mock: a stateful, in-memory mock of the Cumulonimbus session API.

The routes and policies come from ``openapi/sessions.yaml``; see :func:`mockserver.app.create_app`.
"""

from importlib.metadata import PackageNotFoundError, version

# The version lives once, in pyproject.toml; the installed distribution's metadata has it.
try:
    __version__ = version("cumulonimbus-contract")
except PackageNotFoundError:  # imported from a checkout that was never installed
    __version__ = "0+unknown"
