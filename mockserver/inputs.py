"""Reading what clients send, strictly and within bounds: JSON bodies and decimal numbers.

Everything a client sends passes through here before any rule sees it, so the rules can
rely on what they get: a JSON value nested at most ``MAX_JSON_DEPTH`` levels deep (the
rules, the validator and the journal all walk bodies recursively), and integers written
the one way the API documents, ASCII digits::

    parse_json(b'{"ids": ["1"]}')  # {'ids': ['1']}
    parse_json(b"[" * 100 + b"]" * 100)  # ValueError: nested too deeply
    decimal("50")  # 50
    decimal("5_0"), decimal("+5"), decimal(" 5"), decimal("\u0665")  # all None
"""

from __future__ import annotations

import json
from typing import Any

# The API's deepest body is two levels (a "2fa" object in a body, ids in an array).
MAX_JSON_DEPTH = 64
# Longer than any number the API takes; int() of thousands of digits is slow or refused.
MAX_DIGITS = 20


def parse_json(raw: bytes | str) -> Any:
    """The JSON value in ``raw``; ValueError if it is not JSON or is nested too deeply."""
    try:
        value = json.loads(raw)
    except RecursionError as error:  # deeper than the parser's own stack allows
        raise ValueError("JSON nested too deeply") from error
    if _deeper_than(value, MAX_JSON_DEPTH):
        raise ValueError(f"JSON nested more than {MAX_JSON_DEPTH} levels deep")
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    # Iterative, so that measuring a deep value cannot itself run out of stack.
    stack = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        current, depth = stack.pop()
        if depth > limit:
            return True
        children = current.values() if isinstance(current, dict) else current
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def decimal(text: str, max_digits: int = MAX_DIGITS) -> int | None:
    """A non-negative integer written in ASCII digits (``"0"``, ``"050"``), or None.

    Python's ``int()`` also takes ``"5_0"``, ``"+5"``, ``" 5"`` and digits of other
    scripts (Arabic-Indic, full-width); the API does not, and neither does this.
    """
    if not (0 < len(text) <= max_digits and text.isascii() and text.isdigit()):
        return None
    return int(text)
