"""Seed users: the built-in demo users, or users loaded from a YAML file (``--seed``).

The file form is the control API's::

    users:
      - {username: alice, password: "...", staff: false, banned: false,
         totpSecret: null, backupCodes: []}
"""

from __future__ import annotations

from pathlib import Path

import yaml

from .records import SeedUser

DEMO_PASSWORD = "password"
# Fixed secrets and codes, so a person can follow the README by hand.
BOB_TOTP_SECRET = "JBSWY3DPEHPK3PXP"
CAROL_TOTP_SECRET = "KRSXG5CTMVRXEZLU"
DEMO_BACKUP_CODES = ("0123456789abcdef0123", "00112233445566778899", "a1b2c3d4e5f6a7b8c9d0")


def demo_users() -> list[SeedUser]:
    return [
        SeedUser("alice", DEMO_PASSWORD),
        SeedUser("bob", DEMO_PASSWORD, totp_secret=BOB_TOTP_SECRET, backup_codes=DEMO_BACKUP_CODES),
        SeedUser(
            "carol",
            DEMO_PASSWORD,
            staff=True,
            totp_secret=CAROL_TOTP_SECRET,
            backup_codes=DEMO_BACKUP_CODES,
        ),
        SeedUser("dave", DEMO_PASSWORD, staff=True),
        SeedUser("mallory", DEMO_PASSWORD, banned=True),
    ]


class SeedError(Exception):
    """A seed file that cannot be used; the message says why and where."""


def load_seed(path: str | Path) -> list[SeedUser]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise SeedError(f"cannot read seed file {path}: {error.strerror}") from error
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SeedError(f"seed file {path} is not valid YAML: {error}") from error
    if not isinstance(data, dict) or not isinstance(data.get("users"), list):
        raise SeedError(f"seed file {path} must be a mapping with a 'users' list")
    users: list[SeedUser] = []
    seen: set[str] = set()
    for index, entry in enumerate(data["users"]):
        try:
            user = SeedUser.from_dict(entry)
        except ValueError as error:
            raise SeedError(f"seed file {path}, users[{index}]: {error}") from error
        if user.username.casefold() in seen:
            raise SeedError(
                f"seed file {path}, users[{index}]: duplicate username {user.username!r}"
            )
        seen.add(user.username.casefold())
        users.append(user)
    return users
