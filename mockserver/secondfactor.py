"""Second factors: TOTP codes (by pyotp, as the conformance suite computes them) and
single-use backup codes.

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

import pyotp

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


class _TOTP(pyotp.TOTP):
    # The service takes any non-empty base32 secret (the demo users' have 80 bits, like
    # many an authenticator's); pyotp 2.10 and later refuse under 112 bits unless told.
    min_secret_length_bits = 0


def totp_code(secret: str, now: float, offset_steps: int = 0) -> str:
    # pyotp is given the step number, not a time: its own time path goes through a local
    # naive datetime, which a daylight-saving fold can move by an hour.
    key = base64.b32encode(decode_secret(secret)).decode()
    return _TOTP(key, digits=DIGITS, interval=STEP).generate_otp(int(now // STEP) + offset_steps)


def verify_totp(secret: str, code: str, now: float) -> bool:
    # pyotp's verify() takes a symmetric window; the service accepts 2 steps back, 1 ahead.
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
