"""The suite's sessions on the target: accounts, sending (second-factor challenges
answered), logins, cached browser and scoped sessions, disposable sessions, and deleting
every session the suite created when the run ends.

Logins are scarce on a real deployment (4 per 5 minutes), so sessions are cached per
account (and scope set) and only checked again when something may have deleted them.
`Context` (in `context.py`) builds on this with the valid request of any operation.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import pytest

from conformance.calls import CHALLENGE, SELF_ROUTE, Call, Token
from conformance.exchange import NO_BODY, Exchange, token_claims
from conformance.failures import CheckFailure
from conformance.spec import Operation, Spec
from conformance.target import Account, Target, totp

# A challenge where no second factor is enrolled breaks this rule, whichever check met it.
CHALLENGE_CHECK = "reverify.challenge"


class Sessions:
    """The suite's sessions on one target, and how requests reach it."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.spec: Spec = target.spec
        self.client = target.client
        self._browser: dict[str, Token] = {}
        self._scoped: dict[tuple[str, int, bool], Token] = {}
        self.created: list[Token] = []
        self._banned_token: str | None = None
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
        return self.client.request(
            call.op.method,
            call.concrete_path(),
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
                CHALLENGE_CHECK,
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
        token = self.token_from(exchange, account, None)
        return exchange, token

    def token_from(self, exchange: Exchange, account: Account, flags: int | None) -> Token | None:
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
                # A revoked token makes its request anonymous, counted in the address's
                # windows: pace the check of it against both (a burst 429 of the run's own
                # making met the check after anonymous auth.required requests).
                self.client.good_tokens.discard(token.value)

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
        return exchange, self.token_from(exchange, account, flags)

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

    # Clean-up ---------------------------------------------------------------------------
    def _sooner_one_by_one(self, bulk: Operation, keeper: Token, count: int) -> bool:
        """Whether deleting `count` sessions one by one (another route's bucket, 3 a
        second) ends before the bulk route's budget comes back. Scoped-session creations
        can leave that shared bucket spent for 5 minutes at the run's end: a 5.3.0 run
        waited 4.7 minutes after its summary to tidy up."""
        key = self.client.bucket_key(bulk.label, keeper.value, bulk.path)
        return count <= 50 and self.client.bucket_delay(key) > count / 3 + 1

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
            if self._sooner_one_by_one(op, keeper, len(ids)):
                single = self.spec.operation("deleteSelfSession")
                for sid in ids:
                    self.send(Call(single, account, keeper.value, path={"sid": sid}))
                ids = []
            for start in range(0, len(ids), 50):
                self.send(Call(op, account, keeper.value, body={"ids": ids[start : start + 50]}))
            self.client.request(
                "DELETE", "/users/me/sessions/me", token=keeper.value, route=SELF_ROUTE
            )
