"""Conformance suite for the Cumulonimbus session API: `pytest conformance --base-url URL`.

It judges any server from the outside, from `openapi/sessions.yaml` alone.
"""

__version__ = "0.1.0"
