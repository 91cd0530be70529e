"""The records the backend keeps: seed users, users, sessions, and who is calling.

Plain data with the few rules that belong to one record (a password check, the API's
view of a session); the rules between records are :class:`mockserver.models.Backend`'s::

    user.check_password("password")
    session.to_api()
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .secondfactor import decode_secret


@dataclass(frozen=True)
class SeedUser:
    username: str
    password: str
    staff: bool = False
    banned: bool = False
    totp_secret: str | None = None
    backup_codes: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SeedUser:
        """From the seed file / control API form; raises ValueError with a clear message."""
        if not isinstance(data, dict):
            raise ValueError("a user must be an object")
        unknown = set(data) - {
            "username",
            "password",
            "staff",
            "banned",
            "totpSecret",
            "backupCodes",
        }
        if unknown:
            raise ValueError(f"unknown user fields: {', '.join(sorted(unknown))}")
        username, password = data.get("username"), data.get("password")
        if not isinstance(username, str) or not username.strip():
            raise ValueError("username must be a non-empty string")
        if not isinstance(password, str) or not password:
            raise ValueError("password must be a non-empty string")
        if len(username.strip()) > 64:
            raise ValueError("username must be at most 64 characters")
        for flag in ("staff", "banned"):
            if not isinstance(data.get(flag, False), bool):
                raise ValueError(f"{flag} must be true or false")
        secret = data.get("totpSecret")
        if secret is not None:
            if not isinstance(secret, str):
                raise ValueError("totpSecret must be a base32 string or null")
            decode_secret(secret)
        codes = data.get("backupCodes") or []
        if not isinstance(codes, list) or not all(
            isinstance(c, str) and len(c) == 20 and all(ch in "0123456789abcdef" for ch in c)
            for c in codes
        ):
            raise ValueError("backupCodes must be a list of 20-character lowercase hex strings")
        return cls(
            username=username.strip(),
            password=password,
            staff=bool(data.get("staff", False)),
            banned=bool(data.get("banned", False)),
            totp_secret=secret,
            backup_codes=tuple(codes),
        )


@dataclass
class User:
    id: str
    username: str
    password_hash: str
    salt: str
    staff: bool
    banned: bool
    totp_secret: str | None
    backup_codes: set[str]  # SHA-512 hex digests
    # Oldest first: ids only grow (see create_session), so newest-first is this reversed.
    sessions: dict[str, Session] = field(default_factory=dict)
    # The earliest exp among the sessions (inf with none): expired sessions are looked
    # for only once one can be, so a user with 5,000 sessions costs nothing per request.
    next_expiry: float = math.inf
    # The newest session id ever issued: ids are never reused, or a new session could
    # bring a revoked token (same sub, iat and exp) back to life.
    last_session_id: int = 0

    @property
    def has_second_factor(self) -> bool:
        return self.totp_secret is not None

    @property
    def second_factor_types(self) -> list[str]:
        return ["totp", "backup"] if self.has_second_factor else []

    def add_session(self, session: Session) -> None:
        self.sessions[session.id] = session
        self.next_expiry = min(self.next_expiry, session.exp)

    def newest_first(self) -> list[Session]:
        return list(reversed(self.sessions.values()))

    def check_password(self, password: str) -> bool:
        return hmac.compare_digest(self.password_hash, hash_password(password, self.salt))

    def to_control(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "username": self.username,
            "staff": self.staff,
            "banned": self.banned,
            "secondFactors": self.second_factor_types,
            "sessions": [
                {"id": s.id, "name": s.name, "exp": s.exp, "permissionFlags": s.permission_flags}
                for s in self.newest_first()
                if s.exp > now
            ],
        }


@dataclass
class Session:
    id: str
    user_id: str
    name: str
    exp: int
    permission_flags: int | None
    created_at: float
    updated_at: float
    used_at: float | None = None

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "exp": self.exp,
            "name": self.name,
            "permissionFlags": self.permission_flags,
            "usedAt": iso(self.used_at) if self.used_at is not None else None,
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.updated_at),
        }


@dataclass(frozen=True)
class Identity:
    """Who is calling: the user and the session their token belongs to."""

    user: User
    session: Session

    @property
    def scoped(self) -> bool:
        return self.session.permission_flags is not None


@functools.lru_cache(maxsize=4096)  # createdAt/updatedAt are formatted again and again
def iso(epoch: float) -> str:
    # As strftime("%Y-%m-%dT%H:%M:%S.") would (for years 1000-9999), at a third less:
    # usedAt is a new time on every authenticated request.
    m = datetime.fromtimestamp(epoch, UTC)
    return (
        f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}"
        f".{m.microsecond // 1000:03d}Z"
    )


def hash_password(password: str, salt: str) -> str:
    # surrogatepass: JSON can carry lone surrogates, which plain UTF-8 refuses.
    return hashlib.sha256((salt + password).encode("utf-8", "surrogatepass")).hexdigest()
