"""What a check works with: sessions (cached per account and scope set), a builder of
valid requests for any operation, identity reverification, kill switches, clean-up.

A valid request is built from the spec: path, query, header and body parameters are
filled by name (`uid` is the subject's id, `sid` a session of the subject, `ids` a
disposable session, `password` the actor's), so a new operation using known names needs
no new code::

    call = ctx.valid_call(op)            # the caller the operation is meant for
    exchange = ctx.perform(call)         # answers a second-factor challenge if asked
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from conformance.client import NO_BODY, Exchange, token_claims
from conformance.registry import CheckFailure, fail
from conformance.spec import Operation, Spec
from conformance.target import Account, Target, totp

CHALLENGE = "SECOND_FACTOR_CHALLENGE_REQUIRED_ERROR"
SELF_ROUTE = "/users/me/sessions/{sid}"
# Well-formed ids that no deployment has (placeholders, and for the unknown-user rule).
UNKNOWN_UID = "1000000000001"
UNKNOWN_SID = "1000000001"


@dataclass
class Token:
    value: str
    id: str
    exp: int
    account: Account
    flags: int | None = None
    # Set when something may have deleted the session: check before trusting it again.
    dirty: bool = False


@dataclass
class Call:
    """A request for one operation, before it is sent."""

    op: Operation
    actor: Account | None
    token: str | None
    subject: Account | None = None
    path: dict[str, str] = field(default_factory=dict)
    query: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = NO_BODY

    def replace(self, **changes: Any) -> Call:
        return dataclasses.replace(copy.deepcopy(self), **changes)

    def with_body(self, **fields: Any) -> Call:
        body = dict(self.body) if isinstance(self.body, dict) else {}
        for name, value in fields.items():
            if value is NO_BODY:
                body.pop(name, None)
            else:
                body[name] = value
        return self.replace(body=body)


class Context:
    def __init__(self, target: Target) -> None:
        self.target = target
        self.spec: Spec = target.spec
        self.client = target.client
        self._browser: dict[str, Token] = {}
        self._scoped: dict[tuple[str, int, bool], Token] = {}
        self.created: list[Token] = []
        self._banned_token: str | None = None
        # Route windows used up by `ratelimit.route-limit`, by operation id, until the
        # check's new-window case judges them (near the end of a deployment run).
        self.used_up: dict[str, Any] = {}
        # Second-factor challenges asked for early, by operation id, for the case that
        # answers one once it has expired (near the end of a deployment run).
        self.challenges: dict[str, tuple[Any, Exchange, float]] = {}
        # cumulonimbus-api 5.3.0 answers 500 to a session created in a second that already
        # has one (contract 8.8 fixes it). Every check but the one about exactly that waits
        # for the next second and asks once more, so the bug fails one check, not each
        # check that happens to need a session right after another.
        self.retry_same_second = True

    # Accounts ---------------------------------------------------------------------------
    def account(self, role: str, why: str = "") -> Account:
        account = self.target.account(role)
        if account is None:
            hint = {
                "user": "set CUMULONIMBUS_USERNAME and CUMULONIMBUS_PASSWORD",
                "staff": "set CUMULONIMBUS_STAFF_USERNAME and CUMULONIMBUS_STAFF_PASSWORD",
            }.get(role, "only available against a target with the control API")
            pytest.skip(f"needs a {role} account{' ' + why if why else ''}: {hint}")
        return account

    def staff_with_factor(self) -> Account:
        staff = self.account("staff")
        if not staff.totp_secret:
            pytest.skip("needs the staff account's TOTP secret (CUMULONIMBUS_STAFF_TOTP_SECRET)")
        return staff

    def now(self) -> float:
        return self.target.now()

    def client_clock(self) -> float:
        """The clock rate-limit windows are timed by: the mock's (which checks move), or
        a monotonic one on a deployment."""
        return self.target.now() if self.target.control is not None else time.monotonic()

    def banned_session(self) -> str:
        """A session token of a user banned after logging in: on the mock, an account
        banned through the control API; on a deployment, CUMULONIMBUS_BANNED_TOKEN."""
        if self._banned_token is not None:
            return self._banned_token
        control = self.target.control
        if control is not None:
            account = self.account("banned-later")
            token = self.browser(account).value
            control.ban(account)
            self._browser.pop(account.username, None)
            self._banned_token = token
            return token
        given = self.target.settings.banned_token
        if not given:
            pytest.skip(
                "needs a session of a banned account: set CUMULONIMBUS_BANNED_TOKEN "
                "(or --cumulonimbus-banned-token)"
            )
        self._banned_token = given
        return given

    # Sending ----------------------------------------------------------------------------
    def send(
        self, call: Call, *, ip: str | None = None, retry_rate_limited: bool = True
    ) -> Exchange:
        exchange = self._send(call, ip, retry_rate_limited)
        if self.retry_same_second and call.op.issues_tokens and exchange.status == 500:
            self.target.wait(1.0, "a 500 for a second session in one second (contract 8.8)")
            exchange = self._send(call, ip, retry_rate_limited)
        return exchange

    def _send(self, call: Call, ip: str | None, retry_rate_limited: bool) -> Exchange:
        if not self.target.is_mock:
            # Every scoped-session creation, not only those made for other checks: one
            # that opened the 4-per-5-minutes window itself held the whole
            # `/users/me/sessions` route (list, bulk delete) to 4 for 5 minutes.
            self.open_bucket_widely(call.op, call.token)
        path = call.op.path
        for name, value in call.path.items():
            path = path.replace("{" + name + "}", str(value))
        return self.client.request(
            call.op.method,
            path,
            token=call.token,
            query=call.query or None,
            json_body=call.body,
            headers=call.headers or None,
            route=call.op.path,
            ip=ip,
            retry_rate_limited=retry_rate_limited,
        )

    def answer_challenge(self, call: Call, challenge: Exchange, code: str | None = None) -> Call:
        account = call.actor if call.op.reverification == "password" else call.subject
        if account is None or not account.totp_secret:
            raise CheckFailure(
                "reverify.challenge",
                str(call.op),
                "a second-factor challenge came for an account with no second factor",
                "no challenge",
                challenge.summary(),
                challenge.curl(),
            )
        answer = {
            "token": (challenge.json or {}).get("token"),
            "type": "totp",
            "code": code if code is not None else totp(account.totp_secret, self.now()),
        }
        if call.op.reverification == "credentials":
            remember = call.body.get("rememberMe", False) if isinstance(call.body, dict) else False
            return call.replace(body={"2fa": answer, "rememberMe": remember})
        return call.with_body(password=NO_BODY, **{"2fa": answer})

    def perform(
        self, call: Call, *, ip: str | None = None, retry_rate_limited: bool = True
    ) -> Exchange:
        """Send; when a second-factor challenge comes back, answer it with TOTP."""
        exchange = self.send(call, ip=ip, retry_rate_limited=retry_rate_limited)
        if (
            call.op.reverification != "none"
            and exchange.status == 401
            and exchange.code == CHALLENGE
        ):
            exchange = self.send(
                self.answer_challenge(call, exchange), ip=ip, retry_rate_limited=retry_rate_limited
            )
        return exchange

    @contextlib.contextmanager
    def no_same_second_retry(self) -> Iterator[None]:
        """For the check about sessions created in one second: take the first answer."""
        self.retry_same_second = False
        try:
            yield
        finally:
            self.retry_same_second = True

    # Sessions ---------------------------------------------------------------------------
    def login(
        self, account: Account, *, remember: bool = False, ip: str | None = None
    ) -> tuple[Exchange, Token | None]:
        op = self.spec.operation("login")
        call = Call(op, None, None, subject=account, headers={"X-Session-Name": "conformance"})
        call.body = {
            "username": account.username,
            "password": account.password,
            "rememberMe": remember,
        }
        exchange = self.perform(call, ip=ip)
        token = self._token_from(exchange, account, None)
        return exchange, token

    def _token_from(self, exchange: Exchange, account: Account, flags: int | None) -> Token | None:
        body = exchange.json
        if exchange.status != 201 or not isinstance(body, dict) or "token" not in body:
            return None
        claims = token_claims(body["token"])
        if account.id is None and claims.get("sub"):
            account.id = str(claims["sub"])
        token = Token(
            body["token"],
            str(body.get("id") or claims.get("iat")),
            int(body.get("exp", 0)),
            account,
            flags,
        )
        self.created.append(token)
        return token

    def browser(self, account: Account) -> Token:
        """A cached browser session of `account` (logins are scarce on real targets)."""
        token = self._browser.get(account.username)
        if token is not None and not self._alive(token):
            token = None
        if token is None:
            exchange, token = self.login(account)
            if token is None:
                raise RuntimeError(
                    f"cannot log in as {account}: {exchange.summary()}\n"
                    f"  reproduce: {exchange.curl()}"
                )
            self._browser[account.username] = token
        return token

    def _alive(self, token: Token) -> bool:
        if not token.dirty:
            return True
        exchange = self.client.request(
            "GET", "/users/me/sessions/me", token=token.value, route=SELF_ROUTE
        )
        token.dirty = False
        return exchange.status == 200

    def forget(self, account: Account | None = None) -> None:
        """Mark cached tokens as possibly revoked (after deleting sessions)."""
        for token in [*self._browser.values(), *self._scoped.values()]:
            if account is None or token.account.username == account.username:
                token.dirty = True

    def create_scoped(
        self, account: Account, flags: int, *, long_lived: bool = False, name: str = "conformance"
    ) -> tuple[Exchange, Token | None]:
        op = self.spec.operation("createScopedSession")
        call = Call(op, account, self.browser(account).value, subject=account)
        call.body = {
            "name": name,
            "permissionFlags": flags,
            "longLived": long_lived,
            "password": account.password,
        }
        exchange = self.perform(call)
        return exchange, self._token_from(exchange, account, flags)

    def scoped(self, account: Account, flags: int, *, long_lived: bool = False) -> Token:
        key = (account.username, flags, long_lived)
        token = self._scoped.get(key)
        if token is not None and not self._alive(token):
            token = None
        if token is None:
            exchange, token = self.create_scoped(account, flags, long_lived=long_lived)
            if token is None:
                raise RuntimeError(
                    f"cannot create a scoped session for {account}: {exchange.summary()}\n"
                    f"  reproduce: {exchange.curl()}"
                )
            self._scoped[key] = token
        return token

    def _login_is_sooner(self, account: Account) -> bool:
        browser = self.browser(account).value
        client = self.client
        login = client.bucket_delay(client.bucket_key("POST /login", None, "/login"))
        scoped = client.bucket_delay(
            client.bucket_key("POST /users/me/sessions", browser, "/users/me/sessions")
        )
        return login < scoped

    def open_bucket_widely(self, op: Operation, token: str | None) -> None:
        """Before a request of a small budget (4 scoped sessions per 5 minutes), open its
        route's bucket with a read of a larger one when no window is live.

        The request that opens a bucket sets its limit for the whole window, for every
        method on the route (contract section 5, observed rows 212-222): opened by
        `GET /users/me/sessions` (100 per minute), scoped-session creations count
        against 100 for that minute instead of 4 per 5 minutes, and the reads that
        follow them are not refused."""
        limiter = op.rate_limit
        if limiter is None:
            return
        client = self.client
        key = client.bucket_key(op.label, token, op.path)
        state = client.buckets.get(key) if key is not None else None
        # A window about to end is as good as none: open the next one ourselves.
        if state is not None and state.resets_at - time.monotonic() > 3:
            return
        reads = [
            other
            for other in self.spec.operations
            if other.method == "GET"
            and other.rate_limit is not None
            and other.rate_limit.route == limiter.route
            and other.rate_limit.limit > limiter.limit
            and "{" not in other.path
        ]
        if reads:
            query = {"limit": 0} if reads[0].param("limit") is not None else None
            client.request("GET", reads[0].path, token=token, query=query, route=reads[0].path)

    def disposable(self, account: Account) -> Token:
        """A new session of `account` that a check may delete."""
        flags = self.spec.permission_flags.get("SESSION_READ", 0)
        if not self.target.is_mock and self._login_is_sooner(account):
            # Two budgets (4 logins per 5 minutes, 4 scoped sessions per 5 minutes per
            # user): take whichever is free first.
            exchange, token = self.login(account)
        else:
            exchange, token = self.create_scoped(account, flags, name="conformance disposable")
        if token is None:
            raise RuntimeError(
                f"cannot create a session for {account}: {exchange.summary()}\n"
                f"  reproduce: {exchange.curl()}"
            )
        return token

    def session_alive(self, token: str) -> Exchange:
        return self.client.request("GET", "/users/me/sessions/me", token=token, route=SELF_ROUTE)

    # Valid requests ---------------------------------------------------------------------
    def default_actor(self, op: Operation) -> Account | None:
        if op.authentication in ("forbidden", "none"):
            return None
        return self.account("staff" if op.staff_only else "user")

    def default_subject(self, op: Operation, actor: Account | None) -> Account:
        if op.staff_only:
            return self.account("target")
        if actor is not None:
            return actor
        return self.account("user")

    def valid_call(
        self,
        op: Operation,
        actor: Account | str | None = "default",
        *,
        token: str | str | None = "browser",
        subject: Account | None = None,
        placeholders: bool = False,
    ) -> Call:
        """A request that a correct server answers with the operation's success status.

        With `placeholders`, sessions to delete are well-formed unknown ids instead of new
        sessions: enough for checks that expect a refusal (a server that ignored the rule
        would answer 404 or 200, either of which fails the check), and it spares the
        session-creation budget of real deployments.
        """
        if actor == "default":
            actor = self.default_actor(op)
        assert not isinstance(actor, str)
        if subject is None:
            subject = self.default_subject(op, actor)
        if token == "browser":
            token = self.browser(actor).value if actor is not None else None
        call = Call(op, actor, token, subject=subject)
        for param in op.parameters:
            value = self._param_value(op, param.name, param.location, subject, placeholders)
            if value is None:
                continue
            {"path": call.path, "query": call.query, "header": call.headers}[param.location][
                param.name
            ] = value
        if op.body_schema is not None:
            call.body = self._body(op, actor, subject, placeholders)
        return call

    def _param_value(
        self, op: Operation, name: str, location: str, subject: Account, placeholders: bool
    ) -> Any:
        if location == "path" and name == "uid":
            if subject.id is None:
                self.browser(subject)
            return subject.id
        if location == "path" and name == "sid":
            if op.method == "GET":
                return "me" if op.is_self else self.browser(subject).id
            return UNKNOWN_SID if placeholders else self.disposable(subject).id
        if location == "path" and name == "id":
            return str(self.spare_switch())
        if location == "query" and name == "include-self":
            return "false"
        if location == "header" and name.lower() == "x-session-name":
            return "conformance"
        return None

    def _body(
        self, op: Operation, actor: Account | None, subject: Account, placeholders: bool
    ) -> dict[str, Any]:
        schema = op.body_schema or {}
        props = schema.get("properties", {})
        wanted = set(schema.get("required", []))
        if op.reverification in ("password", "credentials"):
            wanted.add("password")
        if "username" in props and op.reverification == "credentials":
            wanted.add("username")
        body: dict[str, Any] = {}
        for name in props:
            if name not in wanted:
                continue
            if name == "username":
                body[name] = subject.username
            elif name == "password":
                who = subject if op.reverification == "credentials" else actor
                body[name] = who.password if who else ""
            elif name == "ids":
                body[name] = [UNKNOWN_SID if placeholders else self.disposable(subject).id]
            elif name == "permissionFlags":
                body[name] = self.spec.permission_flags.get("SESSION_READ", 0)
            elif name == "name":
                body[name] = "conformance"
            elif props[name].get("type") == "boolean":
                body[name] = False
        return body

    def spare_switch(self) -> int:
        used = {name for op in self.spec.operations for name in op.kill_switches} | {"GLOBAL"}
        spare = [v for k, v in self.spec.kill_switches.items() if k not in used]
        return max(spare) if spare else max(self.spec.kill_switches.values())

    def after(self, call: Call, exchange: Exchange) -> None:
        """Keep the token cache honest after a request that may have deleted sessions."""
        if call.op.deletes_sessions and exchange.status == 200:
            self.forget(call.subject if call.op.staff_only else call.actor)
            if call.op.staff_only and call.subject is not None:
                self.forget(call.subject)

    # Kill switches ----------------------------------------------------------------------
    def switch_driver(self) -> str:
        if self.target.control is not None:
            return "control"
        if not self.target.settings.allow_kill_switches:
            pytest.skip(
                "flips kill switches, which affects every user: "
                "pass --cumulonimbus-allow-kill-switches"
            )
        self.staff_with_factor()
        return "api"

    def set_switch(self, switch: int, state: bool) -> None:
        driver = self.switch_driver()
        if driver == "control":
            assert self.target.control is not None
            self.target.control.set_kill_switch(switch, state)
            return
        staff = self.staff_with_factor()
        op = self.spec.operation("enableKillSwitch" if state else "disableKillSwitch")
        call = Call(op, staff, self.browser(staff).value, subject=staff, path={"id": str(switch)})
        call.body = {"password": staff.password}
        exchange = self.perform(call)
        if exchange.status != 200:
            raise RuntimeError(f"cannot set kill switch {switch}: {exchange.summary()}")

    def switch_states(self) -> dict[int, bool]:
        """Which kill switches are on now (so the suite puts back what it found)."""
        if self.switch_driver() == "control":
            assert self.target.control is not None
            items = self.target.control.call("GET", "/killswitches")["items"]
        else:
            staff = self.staff_with_factor()
            exchange = self.client.request(
                "GET", "/killswitches", token=self.browser(staff).value, route="/killswitches"
            )
            if exchange.status != 200:
                raise RuntimeError(f"cannot read the kill switches: {exchange.summary()}")
            items = exchange.json["items"]
        return {int(item["id"]): bool(item["state"]) for item in items}

    def restore_switches(self, before: dict[int, bool]) -> None:
        for switch, state in self.switch_states().items():
            if before.get(switch, False) != state:
                self.set_switch(switch, before.get(switch, False))

    @contextlib.contextmanager
    def switches_on(self, *names: str) -> Iterator[None]:
        """Turn switches on for the block; switches that were on already stay on."""
        wanted = [self.spec.kill_switches[name] for name in names]
        before = self.switch_states()
        flipped = [switch for switch in wanted if not before.get(switch, False)]
        try:
            for switch in flipped:
                self.set_switch(switch, True)
            yield
        finally:
            for switch in flipped:
                self.set_switch(switch, False)

    # Clean-up ---------------------------------------------------------------------------
    def cleanup(self) -> None:
        """Delete every session the suite created (real targets; the mock is reset)."""
        if self.target.control is not None:
            return
        by_account: dict[str, list[Token]] = {}
        for token in self.created:
            by_account.setdefault(token.account.username, []).append(token)
        op = self.spec.operation("deleteSelfSessions")
        for tokens in by_account.values():
            account = tokens[0].account
            try:
                keeper = self.browser(account)
            except RuntimeError:
                continue
            ids = [t.id for t in tokens if t.id != keeper.id]
            for start in range(0, len(ids), 50):
                self.send(Call(op, account, keeper.value, body={"ids": ids[start : start + 50]}))
            self.client.request(
                "DELETE", "/users/me/sessions/me", token=keeper.value, route=SELF_ROUTE
            )


def expect_error(
    check_id: str,
    op: Operation,
    rule: str,
    exchange: Exchange,
    status: int,
    code: str | None = None,
    **fields: Any,
) -> None:
    """Raise a CheckFailure unless the exchange is `status` with error `code` (and fields)."""
    body = exchange.json if isinstance(exchange.json, dict) else {}
    expected = f"{status}" + (f" {code}" if code else "")
    if fields:
        expected += " with " + ", ".join(f"{k}={v!r}" for k, v in fields.items())
    ok = exchange.status == status and (code is None or body.get("code") == code)
    for name, value in fields.items():
        actual = body.get(name)
        ok = ok and bool(value(actual)) if callable(value) else ok and actual == value
    if not ok:
        raise fail(check_id, op, rule, expected, exchange)
