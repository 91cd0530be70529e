"""What evidence must not show: session tokens and passwords, each replaced by the name of
a shell variable, so that a CI log can be kept and a redacted curl line still runs once
the variable is set::

    redactor = Redactor()
    redactor.add_password("hunter2-hunter2", "CUMULONIMBUS_PASSWORD")
    redactor.text('{"password": "hunter2-hunter2"}')   # {"password": "$CUMULONIMBUS_PASSWORD"}
    redactor.shell_word("Authorization: eyJhbGciOi.eyJzdWIi.c2ln")
    # "Authorization: $CUMULONIMBUS_TOKEN"

Tokens are found by their shape (the API's tokens are JWTs) and by value (every `token` a
response handed out); passwords by value, only where they stand as a whole quoted string,
so that the word "password" in a rule or a JSON key is never mistaken for one.
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

TOKEN = "CUMULONIMBUS_TOKEN"
PASSWORD = "CUMULONIMBUS_PASSWORD"
PASSWORD_2 = "CUMULONIMBUS_PASSWORD_2"
STAFF_PASSWORD = "CUMULONIMBUS_STAFF_PASSWORD"
STAFF_PLAIN_PASSWORD = "CUMULONIMBUS_STAFF_PLAIN_PASSWORD"
TOTP_SECRET = "CUMULONIMBUS_TOTP_SECRET"
STAFF_TOTP_SECRET = "CUMULONIMBUS_STAFF_TOTP_SECRET"
MOCK_TOKEN = "CUMULONIMBUS_MOCK_TOKEN"

# A JWT's header is base64url of `{"...`, so it starts with eyJ; the signature may be empty.
JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
# While a text is being redacted, a secret becomes \0NAME\0, so that quoting for the shell
# can tell the placeholders from the literal text around them.
_MARK = "\0"
_MARKED = re.compile(r"\0([A-Z_]+)\0")
# Characters that keep their meaning inside double quotes in a POSIX shell.
_DOUBLE_QUOTE_SPECIAL = set('"\\$`!')
# Shorter values are not redacted anywhere they occur: they would hit ordinary words.
_MIN_ANYWHERE = 12


class Redactor:
    """Knows the run's secrets and replaces them; `enabled=False` shows everything."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._anywhere: dict[str, str] = {}  # value -> variable name
        self._quoted: dict[str, str] = {}
        self._quoted_pattern: re.Pattern[str] | None = None
        self._anywhere_pattern: re.Pattern[str] | None = None

    def add_token(self, value: str | None, name: str = TOKEN) -> None:
        """A credential that is distinctive enough to be replaced wherever it occurs."""
        if value and len(value) >= _MIN_ANYWHERE:
            self._anywhere[value] = name
            self._anywhere_pattern = None
        elif value:
            self.add_password(value, name)

    def add_password(self, value: str | None, name: str = PASSWORD) -> None:
        """A secret that is replaced where it is a whole quoted string (as in JSON)."""
        if not value:
            return
        for form in {value, json.dumps(value)[1:-1]}:
            self._quoted[form] = name
        self._quoted_pattern = None

    def learn(self, body_text: str) -> None:
        """Remember the `token` a response hands out, whatever its shape."""
        try:
            body: Any = json.loads(body_text)
        except ValueError:
            return
        token = body.get("token") if isinstance(body, dict) else None
        # A JWT is found by its shape; remembering each would only slow the others down.
        if isinstance(token, str) and not JWT.fullmatch(token):
            self.add_token(token)

    def text(self, text: str) -> str:
        """`text` with every secret replaced by `$NAME`."""
        if not self.enabled or not text:
            return text
        return _MARKED.sub(r"$\1", self._mark(text))

    def value(self, value: Any) -> Any:
        """Strings redacted, inside dicts and lists too (for structured evidence)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {key: self.value(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.value(item) for item in value)
        return value

    def shell_word(self, word: str) -> str:
        """`word` quoted for a POSIX shell, secrets as variables the shell expands."""
        marked = self._mark(word) if self.enabled else word
        if _MARK not in marked:
            return shlex.quote(word)
        parts = marked.split(_MARK)  # literal, NAME, literal, NAME, ..., literal
        literals = parts[0::2]
        if not any(_DOUBLE_QUOTE_SPECIAL & set(literal) for literal in literals):
            return '"' + "".join(p if i % 2 == 0 else f"${p}" for i, p in enumerate(parts)) + '"'
        return "".join(
            f'"${p}"' if i % 2 else shlex.quote(p) for i, p in enumerate(parts) if i % 2 or p
        )

    def _mark(self, text: str) -> str:
        text = JWT.sub(lambda m: self._anywhere.get(m.group(0), TOKEN).join(_MARK * 2), text)
        if self._anywhere:
            if self._anywhere_pattern is None:
                self._anywhere_pattern = _alternation(self._anywhere)
            text = self._anywhere_pattern.sub(
                lambda m: self._anywhere[m.group(0)].join(_MARK * 2), text
            )
        if self._quoted:
            if self._quoted_pattern is None:
                # A whole string in double or single quotes, but not a JSON key.
                self._quoted_pattern = re.compile(
                    r"""(["'])(""" + _alternation(self._quoted).pattern + r""")\1(?!\s*:)"""
                )
            text = self._quoted_pattern.sub(
                lambda m: m.group(1) + self._quoted[m.group(2)].join(_MARK * 2) + m.group(1),
                text,
            )
        return text


def _alternation(values: dict[str, str]) -> re.Pattern[str]:
    # Longest first, so that a secret containing another is replaced whole.
    return re.compile("|".join(re.escape(v) for v in sorted(values, key=len, reverse=True)))
