"""cumulonimbus-mock: a stateful, in-memory mock of the Cumulonimbus session API.

The routes and policies come from ``openapi/sessions.yaml``; see :func:`mockserver.app.create_app`.
"""

__version__ = "0.1.0"
