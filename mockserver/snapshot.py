"""A saved state written out and read back (``--state`` files, Redis): one user as kept
(`user_snapshot`), and every field checked on the way back, so a malformed snapshot is
refused with what is wrong rather than half restored::

    user = restore_user(raw)  # ValueError("state snapshot is malformed: ...")
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from .clock import MAX_EPOCH
from .records import Session, User
from .secondfactor import decode_secret
from .tokens import TokenSigner


def expect(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    # bool is an int to isinstance; a number field holding true is as wrong as "never".
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise ValueError(f"{what} must be a number, not {value!r}")
    if not isinstance(value, kind):
        raise ValueError(f"state snapshot is malformed: {what} is {value!r}")
    return value


def expect_id(value: Any, what: str) -> int:
    text = str(expect(value, (str, int), what))
    if not (text.isascii() and text.isdigit() and len(text) <= 20):
        raise ValueError(f"state snapshot is malformed: {what} {value!r} is not a number")
    return int(text)


def expect_time(value: Any, what: str) -> float:
    number = float(expect(value, (int, float), what))
    if not 0 <= number <= MAX_EPOCH:
        raise ValueError(f"state snapshot is malformed: {what} {value!r} is out of range")
    return number


def expect_exp(value: Any) -> int:
    exp = int(expect(value, int, "exp"))
    if exp < 0:
        raise ValueError(f"state snapshot is malformed: exp {value!r} is out of range")
    return exp


def restore_signer(key: Any, issuer: Any) -> TokenSigner:
    try:
        signer = TokenSigner.from_jwk(
            expect(key, dict, "signingKey"), expect(issuer, str, "issuer")
        )
    except ValueError:
        raise
    except Exception as error:
        raise ValueError(f"state snapshot's signing key cannot be used: {error}") from error
    if not signer.key.is_private or signer.key.curve_name != "P-256":
        raise ValueError("state snapshot's signing key must be a private P-256 key")
    return signer


def restore_user(raw: dict[str, Any]) -> User:
    user_id = str(expect_id(raw["id"], "user id"))
    totp_secret = raw["totpSecret"]
    if totp_secret is not None:
        decode_secret(expect(totp_secret, str, "totpSecret"))
    digests = expect(raw["backupCodeDigests"], list, "backupCodeDigests")
    for digest in digests:
        if not (isinstance(digest, str) and len(digest) == 128 and digest.isascii()):
            raise ValueError("state snapshot is malformed: a backup code digest is not SHA-512")
    username = expect(raw["username"], str, "username")
    if not username.strip():
        raise ValueError("state snapshot is malformed: a username is empty")
    user = User(
        id=user_id,
        username=username,
        password_hash=expect(raw["passwordHash"], str, "passwordHash"),
        salt=expect(raw["salt"], str, "salt"),
        staff=expect(raw["staff"], bool, "staff"),
        banned=expect(raw["banned"], bool, "banned"),
        totp_secret=totp_secret,
        backup_codes=set(digests),
        last_session_id=expect_id(raw["lastSessionId"], "lastSessionId"),
    )
    sessions = [
        restore_session(expect(session, dict, "a session"), user_id)
        for session in expect(raw["sessions"], list, f"sessions of user {user_id}")
    ]
    for restored in sorted(sessions, key=lambda s: int(s.id)):  # oldest first, as kept
        if restored.id in user.sessions:
            raise ValueError(f"session id {restored.id} appears twice")
        user.add_session(restored)
        # Ids are never issued twice (see create_session), whatever the file says.
        user.last_session_id = max(user.last_session_id, int(restored.id))
    return user


def restore_session(raw: dict[str, Any], user_id: str) -> Session:
    unknown = set(raw) - {f.name for f in fields(Session)}
    if unknown:
        raise ValueError(f"state snapshot is malformed: unknown session fields {sorted(unknown)}")
    session_id = str(expect_id(raw["id"], "session id"))
    if str(raw["user_id"]) != user_id:
        raise ValueError(f"state snapshot is malformed: session {session_id} is filed wrongly")
    flags = raw["permission_flags"]
    if flags is not None and not 0 <= expect(flags, int, "permission_flags") < 2**32:
        raise ValueError(f"state snapshot is malformed: permission_flags {flags!r}")
    used_at = raw.get("used_at")
    return Session(
        id=session_id,
        user_id=user_id,
        name=expect(raw["name"], str, "session name"),
        exp=expect_exp(raw["exp"]),
        permission_flags=flags,
        created_at=expect_time(raw["created_at"], "created_at"),
        updated_at=expect_time(raw["updated_at"], "updated_at"),
        used_at=None if used_at is None else expect_time(used_at, "used_at"),
    )


def user_snapshot(user: User) -> dict[str, Any]:
    """One user as the state file (and Redis, one key per user) keeps them."""
    return {
        "id": user.id,
        "username": user.username,
        "passwordHash": user.password_hash,
        "salt": user.salt,
        "staff": user.staff,
        "banned": user.banned,
        "totpSecret": user.totp_secret,
        "backupCodeDigests": sorted(user.backup_codes),
        "lastSessionId": user.last_session_id,
        "sessions": [dict(vars(s)) for s in user.sessions.values()],
    }
