"""Second factors: TOTP codes and single-use backup codes.

TOTP is RFC 6238 with SHA-1, 6 digits and a 30 s step; a code from 2 steps back to 1
step ahead is accepted. Backup codes are 10 random bytes as 20 hex characters, kept
only as SHA-512 hex digests::

    totp_code("JBSWY3DPEHPK3PXP", clock.now())     # '123456'
    verify_totp("JBSWY3DPEHPK3PXP", "123456", clock.now())
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import struct

STEP = 30
DIGITS = 6
STEPS_BACK = 2
STEPS_AHEAD = 1
BACKUP_CODE_COUNT = 10


def decode_secret(secret: str) -> bytes:
    """A base32 secret as bytes; spaces, case and missing padding are forgiven."""
    cleaned = secret.replace(" ", "").upper()
    cleaned += "=" * (-len(cleaned) % 8)
    try:
        raw = base64.b32decode(cleaned)
    except (binascii.Error, ValueError) as error:
        raise ValueError("a TOTP secret must be base32") from error
    if not raw:
        raise ValueError("a TOTP secret must not be empty")
    return raw


def totp_code(secret: str, now: float, offset_steps: int = 0) -> str:
    counter = int(now // STEP) + offset_steps
    digest = hmac.new(decode_secret(secret), struct.pack(">Q", counter), hashlib.sha1).digest()
    start = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[start : start + 4])[0] & 0x7FFFFFFF
    return str(value % 10**DIGITS).zfill(DIGITS)


def verify_totp(secret: str, code: str, now: float) -> bool:
    if not (isinstance(code, str) and len(code) == DIGITS and code.isdigit()):
        return False
    return any(
        hmac.compare_digest(totp_code(secret, now, step), code)
        for step in range(-STEPS_BACK, STEPS_AHEAD + 1)
    )


def new_backup_codes() -> list[str]:
    return [secrets.token_hex(10) for _ in range(BACKUP_CODE_COUNT)]


def hash_backup_code(code: str) -> str:
    return hashlib.sha512(code.strip().lower().encode("utf-8", "surrogatepass")).hexdigest()
