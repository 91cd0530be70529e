"""The deployment under test: its URL, its control API if it has one, accounts and time.

`Target.connect()` probes the API root once, so a wrong URL or a server that is down is
one clear error; it finds this project's mock by its control API at `/_mock` beside
`/api`, in which case the suite resets it and creates the accounts it needs itself.
"""

from __future__ import annotations

import base64
import contextlib
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pyotp
import requests

from conformance import redact
from conformance.client import Client
from conformance.exchange import TargetUnreachable
from conformance.pacing import progress
from conformance.redact import Redactor
from conformance.spec import Spec


class TargetError(Exception):
    """The target cannot be judged at all (down, wrong URL, unusable credentials)."""


class _TOTP(pyotp.TOTP):
    # Deployments hand out secrets of 80 bits (10 bytes, as the suite's own accounts have);
    # pyotp 2.10 and later refuse under 112 bits unless told.
    min_secret_length_bits = 0


def totp(secret: str, now: float, step: int = 30, digits: int = 6) -> str:
    """RFC 6238 with SHA-1, as the API uses; pyotp is given the step number, not a time,
    since its own time path goes through a local naive datetime."""
    key = secret.upper().replace(" ", "")
    return _TOTP(key, digits=digits, interval=step).generate_otp(int(now // step))


@dataclass
class Account:
    role: str
    username: str
    password: str
    staff: bool = False
    totp_secret: str | None = None
    id: str | None = None
    banned: bool = False

    @property
    def has_second_factor(self) -> bool:
        return bool(self.totp_secret)

    def __str__(self) -> str:
        return f"{self.role} ({self.username})"


@dataclass
class Settings:
    """What the user told the suite (options or environment)."""

    base_url: str
    username: str | None = None
    password: str | None = None
    # A second ordinary user (CUMULONIMBUS_USERNAME_2): the subject of staff operations.
    username_2: str | None = None
    password_2: str | None = None
    staff_username: str | None = None
    staff_password: str | None = None
    staff_totp_secret: str | None = None
    # A staff account with no second factor enrolled (staff.no-second-factor checks).
    staff_plain_username: str | None = None
    staff_plain_password: str | None = None
    # A session token of a banned account (auth.banned-session checks).
    banned_token: str | None = None
    control_token: str | None = None
    allow_kill_switches: bool = False
    run_slow: bool = False
    use_control: bool = True
    show_secrets: bool = False


def control_root(base_url: str) -> str:
    """`http://h:8000/api` -> `http://h:8000/_mock`: the control API sits beside the API."""
    parts = urlsplit(base_url.rstrip("/"))
    parent = parts.path.rsplit("/", 1)[0]
    return urlunsplit((parts.scheme, parts.netloc, parent + "/_mock", "", ""))


class Control:
    """This project's mock control API (`openapi/control.yaml`)."""

    def __init__(self, root: str, token: str | None = None) -> None:
        self.root = root
        self.session = requests.Session()
        if token:
            self.session.headers["X-Mock-Token"] = token

    def call(self, method: str, path: str, body: Any = None) -> Any:
        response = self.session.request(method, self.root + path, json=body, timeout=15)
        if response.status_code >= 400:
            raise TargetError(
                f"control API {method} {path} answered {response.status_code}: "
                f"{response.text[:200]}"
            )
        return response.json()

    @classmethod
    def probe(cls, root: str, token: str | None) -> Control | None:
        try:
            response = requests.get(
                root + "/clock", timeout=5, headers={"X-Mock-Token": token} if token else {}
            )
        except requests.RequestException:
            return None
        if response.status_code == 401 and not token:
            raise TargetError(
                f"{root} is a control API that needs a token: pass --cumulonimbus-mock-token"
            )
        try:
            body = response.json()
        except ValueError:
            return None
        if response.status_code == 200 and isinstance(body, dict) and "now" in body:
            return cls(root, token)
        return None

    def reset(self) -> None:
        self.call("POST", "/reset")

    def create_user(self, account: Account) -> Account:
        created = self.call(
            "POST",
            "/users",
            {
                "username": account.username,
                "password": account.password,
                "staff": account.staff,
                "banned": account.banned,
                "totpSecret": account.totp_secret,
            },
        )
        account.id = created["id"]
        return account

    def now(self) -> float:
        return float(self.call("GET", "/clock")["now"])

    def clock(self, **change: Any) -> float:
        return float(self.call("POST", "/clock", change)["now"])

    def set_kill_switch(self, switch: int, state: bool) -> None:
        self.call("PUT", f"/killswitches/{switch}", {"state": state})

    def ban(self, account: Account) -> None:
        self.call("PATCH", f"/users/{account.username}", {"banned": True})
        account.banned = True


@dataclass
class Target:
    settings: Settings
    spec: Spec
    client: Client
    control: Control | None
    accounts: dict[str, Account] = field(default_factory=dict)
    version: str | None = None
    settings_examples: int = 6

    @property
    def is_mock(self) -> bool:
        return self.control is not None

    @classmethod
    def connect(cls, settings: Settings, spec: Spec, redactor: Redactor | None = None) -> Target:
        base = settings.base_url.rstrip("/")
        control = None
        if settings.use_control:
            control = Control.probe(control_root(base), settings.control_token)
        global_limit = spec.global_rate_limit
        labels = {op.label: op for op in spec.operations}
        client = Client(
            base,
            rotate_ips=control is not None,
            burst=(spec.burst[0], spec.burst[1]),
            global_limit=(global_limit.limit, global_limit.window),
            route_limits={
                op.label: op.rate_limit for op in spec.operations if op.rate_limit is not None
            },
            passes_route_limiter=lambda label, status, code: (
                label in labels and labels[label].passes_route_limiter(status, code)
            ),
            redactor=redactor or Redactor(enabled=not settings.show_secrets),
        )
        client.redactor.add_token(settings.control_token, redact.MOCK_TOKEN)
        target = cls(settings, spec, client, control)
        target.version = target._check_root()
        if control is not None:
            control.reset()
            target._create_accounts()
        else:
            target._accounts_from_settings()
        for account in target.accounts.values():
            target._keep_secret(account)
        return target

    def _keep_secret(self, account: Account) -> None:
        """Evidence names an account's secrets by the variables a deployment run sets."""
        redactor = self.client.redactor
        staff = account.staff
        variable = redact.STAFF_PASSWORD if staff else redact.PASSWORD
        if account.role == "staff-plain":
            variable = redact.STAFF_PLAIN_PASSWORD
        elif (
            account.role == "target"
            and self.control is None
            and account.username != (self.settings.username)
        ):
            variable = redact.PASSWORD_2
        redactor.add_password(account.password, variable)
        redactor.add_token(
            account.totp_secret, redact.STAFF_TOTP_SECRET if staff else redact.TOTP_SECRET
        )

    def _check_root(self) -> str:
        try:
            exchange = self.client.request("GET", "/", route="/")
        except TargetUnreachable as exc:
            raise TargetError(f"the target does not answer: {exc}") from None
        body = exchange.json
        if exchange.status != 200 or not isinstance(body, dict) or body.get("hello") != "world":
            raise TargetError(
                f"{exchange.url} does not look like the Cumulonimbus API root "
                f'(expected 200 {{"hello": "world", ...}}, got {exchange.summary(120)}); '
                "is --base-url right? It must end in /api."
            )
        return str(body.get("version"))

    def _create_accounts(self) -> None:
        assert self.control is not None
        tag = secrets.token_hex(3)

        def make(role: str, **kw: Any) -> None:
            secret = (
                base64.b32encode(secrets.token_bytes(10)).decode()
                if kw.pop("totp", False)
                else None
            )
            account = Account(
                role,
                f"conformance-{role}-{tag}",
                secrets.token_urlsafe(12),
                totp_secret=secret,
                **kw,
            )
            assert self.control is not None
            self.accounts[role] = self.control.create_user(account)

        make("user")
        make("target")
        make("staff", staff=True, totp=True)
        make("staff-plain", staff=True)
        make("user-totp", totp=True)
        make("banned", banned=True)
        # Banned after logging in: the account whose existing session auth.banned-session
        # uses (contract section 2).
        make("banned-later")

    def _accounts_from_settings(self) -> None:
        s = self.settings
        if s.username and s.password:
            self.accounts["user"] = Account("user", s.username, s.password)
            # The user staff operations act upon: a second account when one is given, so
            # that a staff delete-all does not revoke the first user's session (and cost
            # a login); else the first user.
            if s.username_2 and s.password_2:
                self.accounts["target"] = Account("target", s.username_2, s.password_2)
            else:
                self.accounts["target"] = self.accounts["user"]
        if s.staff_username and s.staff_password:
            self.accounts["staff"] = Account(
                "staff",
                s.staff_username,
                s.staff_password,
                staff=True,
                totp_secret=s.staff_totp_secret,
            )

        if s.staff_plain_username and s.staff_plain_password:
            self.accounts["staff-plain"] = Account(
                "staff-plain", s.staff_plain_username, s.staff_plain_password, staff=True
            )

    def account(self, role: str) -> Account | None:
        return self.accounts.get(role)

    # Time: the mock's clock when there is one, else ours.
    def now(self) -> float:
        return self.control.now() if self.control else time.time()

    def wait(self, seconds: float, why: str) -> None:
        """Let `seconds` pass: move the mock's clock, or really wait (with a progress line)."""
        if self.control is not None:
            self.control.clock(advance=seconds)
            return
        self.client.ledger.add("windows and expiry", seconds)
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            progress(f"{why}: waiting {left:.0f}s")
            time.sleep(min(left, 10))

    @contextlib.contextmanager
    def frozen_clock(self) -> Iterator[None]:
        if self.control is None:
            yield
            return
        self.control.clock(frozen=True)
        try:
            yield
        finally:
            self.control.clock(frozen=False)
