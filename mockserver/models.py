"""The mock's state and rules: users, sessions, kill switches, tokens, second factors and
the rate limiter the pipeline counts through.

One :class:`Backend` holds everything; :meth:`Backend.reset` re-runs the same set-up as
``__init__``, so a reset can never drift from a fresh start. Nothing here knows about
HTTP; the views call these methods and render what they return or raise::

    backend = Backend(spec, clock, seed_users=[SeedUser("alice", "password")])
    token, session = backend.login("alice", "password", remember=False, name="curl")
"""

from __future__ import annotations

import itertools
import math
import secrets
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from . import exceptions as err
from .clock import Clock
from .ratelimit import Limiter, RateLimiter, Ticket
from .records import Identity, SeedUser, Session, User, hash_password
from .secondfactor import hash_backup_code, new_backup_codes, verify_totp
from .sharedstate import SharedState
from .snapshot import expect, expect_id, restore_signer, restore_user, user_snapshot
from .spec import Limit, Spec
from .tokens import SECOND_FACTOR_PURPOSE, TokenSigner

# Demo users get fixed ids so that the README and scripts can name them.
SEED_ID_BASE = 1647015028626
# Users whose expired sessions each API request drops (see Backend.prune_a_little).
USERS_SWEPT_PER_REQUEST = 1


class Backend:
    def __init__(
        self,
        spec: Spec,
        clock: Clock,
        seed_users: list[SeedUser],
        signer: TokenSigner | None = None,
        issuer: str = "localhost",
        limiter: Limiter | None = None,
        shared: SharedState | None = None,
    ) -> None:
        self.spec = spec
        self.clock = clock
        self.seed_users = list(seed_users)
        # The signing key outlives resets, so a restarted mock can keep its tokens valid.
        self.signer = signer or TokenSigner.generate(issuer)
        self.lock = threading.RLock()
        self.shared = shared or SharedState()
        # Bumped by every change worth persisting; the state file writer watches it.
        self.revision = getattr(self, "revision", 0) + 1
        # The behaviour profile in force (--as-deployed), None for the contract. A reset
        # re-runs this method and keeps it: a profile is how the mock runs, not state.
        self.profile: str | None = getattr(self, "profile", None)
        self.users: dict[str, User] = {}
        self._by_name: dict[str, str] = {}  # casefolded username -> user id
        self.kill_switches: dict[int, bool] = {i: False for i in spec.kill_switch_ids.values()}
        self.limiter: Limiter = (
            RateLimiter(clock, spec.burst_limit, spec.burst_window) if limiter is None else limiter
        )
        self._last_user_ms = 0
        self._sweep: deque[str] = deque()  # user ids whose sessions are still to be swept
        for index, seed in enumerate(self.seed_users):
            self._add_user(seed, user_id=str(SEED_ID_BASE + index))

    def reset(self) -> None:
        with self.lock, self.shared.changing_global():
            lock, limiter, shared = self.lock, self.limiter, self.shared
            shared.wiped()
            self.clock.reset()
            limiter.reset()
            # A new key: the seed users come back with the same ids, so a token from
            # before the reset (even a revoked one) could otherwise match a new session.
            signer = TokenSigner.generate(self.signer.issuer)
            self.__init__(  # type: ignore[misc]
                self.spec, self.clock, self.seed_users, signer, limiter=limiter, shared=shared
            )
            # Threads already waiting on the old lock and limiter must meet new ones on
            # the same objects, so both outlive the reset.
            self.lock, self.limiter = lock, limiter

    def set_profile(self, name: str | None) -> None:
        with self.lock, self.shared.changing_global():
            self.profile = name
            self.revision += 1

    # Rate limits -------------------------------------------------------------------
    # The pipeline and the control API count through these; the limiter is the
    # backend's, reset with everything else.

    def hold_global(self, ip: str, user_id: str | None) -> Ticket:
        """Reserve the request's place in the global bucket (client IP, user)."""
        return self.limiter.acquire((ip, "*", user_id), self.spec.global_limit)

    def move_to_route(
        self, held: Ticket, ip: str, path: str, user_id: str | None, limit: Limit
    ) -> Ticket:
        """Count the request in its route's bucket instead of the one ``held`` it."""
        return self.limiter.transfer(held, (ip, limit.bucket_route(path), user_id), limit)

    def settle_rate_limits(
        self, tickets: list[Ticket], status: int, code: str | None, headers: dict[str, str]
    ) -> dict[str, str]:
        """The answer's headers with its ``RateLimit-*`` ones, once its status is known."""
        merged = dict(headers)
        for ticket in tickets:
            merged.update(self.limiter.settle(ticket, status, code))
        # Only a 429 says both how full its bucket is and that it was not counted.
        if "RateLimit-Limit" in merged and status != 429:
            merged.pop("RateLimit-Skipped", None)
        return merged

    def release_rate_limits(self, tickets: list[Ticket]) -> None:
        """Give back what a request took when it was answered before any limiter saw it
        (a profile's early answers): no bucket counts it, no RateLimit-* header shows."""
        for ticket in tickets:
            self.limiter.release(ticket)

    def rate_limit_buckets(self) -> list[dict[str, object]]:
        return self.limiter.buckets()

    def clear_rate_limits(self) -> None:
        self.limiter.reset()

    # Users -------------------------------------------------------------------------

    def add_user(self, seed: SeedUser) -> tuple[User, list[str]]:
        """Add a user; with a TOTP secret and no backup codes, ten are generated and returned."""
        with self.lock, self.shared.changing_global():
            generated: list[str] = []
            if seed.totp_secret and not seed.backup_codes:
                generated = new_backup_codes()
                seed = SeedUser(**{**seed.__dict__, "backup_codes": tuple(generated)})
            return self._add_user(seed), generated

    def _add_user(self, seed: SeedUser, user_id: str | None = None) -> User:
        if self.find_user(seed.username) is not None:
            raise err.UserExists()
        if user_id is None:
            # User ids are the creation time in ms; keep them distinct.
            ms = max(int(self.clock.now() * 1000), self._last_user_ms + 1)
            self._last_user_ms = ms
            user_id = str(ms).zfill(13)[-13:]
        salt = secrets.token_hex(8)
        user = User(
            id=user_id,
            username=seed.username,
            password_hash=hash_password(seed.password, salt),
            salt=salt,
            staff=seed.staff,
            banned=seed.banned,
            totp_secret=seed.totp_secret,
            backup_codes={hash_backup_code(c) for c in seed.backup_codes},
        )
        self.users[user.id] = user
        self._by_name[user.username.casefold()] = user.id
        self.revision += 1
        self.shared.added(user)
        return user

    def find_user(self, username: str) -> User | None:
        user_id = self._by_name.get(username.strip().casefold())
        return None if user_id is None else self.users.get(user_id)

    def set_banned(self, username: str, banned: bool) -> User:
        """Ban (or unban) a user; their existing sessions then get 403 BANNED_ERROR."""
        with self.lock:
            user = self.find_user(username)
            if user is None:
                raise err.UserNotFound()
            # A ban is a change to that user: in Redis mode it must reach the user's own
            # key, which is what other workers reload.
            with self.shared.changing_user(user):
                user.banned = banned
                self.revision += 1
            return user

    def delete_user(self, username: str) -> None:
        with self.lock, self.shared.changing_global():
            user = self.find_user(username)
            if user is None:
                raise err.UserNotFound()
            del self.users[user.id]
            del self._by_name[user.username.casefold()]
            self.revision += 1
            self.shared.deleted(user)

    # Tokens and sessions -----------------------------------------------------------

    def authenticate(self, token: str | None) -> Identity | None:
        """The caller behind a token, or None: any bad token makes a request anonymous."""
        if not token:
            return None
        claims = self.signer.verify(token)
        if claims is None or "purpose" in claims:
            return None
        now = self.clock.now()
        with self.lock:
            user = self.users.get(claims["sub"])
            if user is None:
                return None
            self.shared.fresh(user)
            session = user.sessions.get(str(claims["iat"]))
            if session is None or session.exp != claims["exp"] or session.exp <= now:
                return None
            session.used_at = now
            self.revision += 1  # usedAt is state too: other workers must see it
            self.shared.touched(user, session)
            return Identity(user, session)

    def create_session(
        self, user: User, name: str, long_lived: bool, permission_flags: int | None
    ) -> tuple[str, Session]:
        with self.lock, self.shared.changing_user(user):
            self._prune_sessions(user)
            now = self.clock.now()
            # The session id is the token's iat; two sessions of one second still differ,
            # and an id is never issued twice, even after its session was deleted.
            iat = max(int(now), user.last_session_id + 1)
            user.last_session_id = iat
            lifetime = self.spec.lifetimes["long" if long_lived else "default"]
            session = Session(
                id=str(iat),
                user_id=user.id,
                name=name,
                exp=iat + lifetime,
                permission_flags=permission_flags,
                created_at=now,
                updated_at=now,
            )
            user.add_session(session)
            self.revision += 1
            token = self.signer.sign({"sub": user.id, "iat": iat, "exp": session.exp})
            return token, session

    def session_page(self, user: User, offset: int, limit: int) -> tuple[int, list[Session]]:
        """How many live sessions, and ``limit`` of them from ``offset``, newest first,
        without building the whole list (a user may hold thousands)."""
        with self.lock:
            self.shared.fresh(user)
            self._prune_sessions(user)
            newest = reversed(user.sessions.values())
            count = len(user.sessions)
            # Clamped to the count: validation refuses < 0 but not a huge offset, which
            # islice refuses beyond sys.maxsize (found by tests/test_fuzz.py).
            first = min(max(0, offset), count)
            last = min(max(0, offset + limit), count)
            return count, list(itertools.islice(newest, first, last))

    def get_session(self, user: User, session_id: str) -> Session:
        with self.lock:
            self.shared.fresh(user)
            self._prune_sessions(user)
            session = user.sessions.get(session_id)
            if session is None:
                raise err.SessionNotFound()
            self.shared.fresh_used(user, session)
            return session

    def delete_session(self, user: User, session_id: str) -> None:
        with self.lock, self.shared.changing_user(user):
            self.get_session(user, session_id)
            del user.sessions[session_id]
            self.revision += 1

    def delete_sessions(self, user: User, session_ids: list[str]) -> int:
        with self.lock, self.shared.changing_user(user):
            self._prune_sessions(user)
            doomed = set(session_ids) & set(user.sessions)
            for session_id in doomed:
                del user.sessions[session_id]
            self.revision += 1
            return len(doomed)

    def delete_all_sessions(self, user: User, keep: str | None = None) -> int:
        with self.lock, self.shared.changing_user(user):
            return self.delete_sessions(user, [s for s in user.sessions if s != keep])

    def _prune_sessions(self, user: User) -> None:
        now = self.clock.now()
        if now < user.next_expiry:
            return
        for session_id in [sid for sid, s in user.sessions.items() if s.exp <= now]:
            del user.sessions[session_id]
        user.next_expiry = min((s.exp for s in user.sessions.values()), default=math.inf)

    def prune(self) -> None:
        """Drop every expired session and stale bucket at once."""
        with self.lock:
            for user in self.users.values():
                self._prune_sessions(user)
        self.limiter.prune()

    def prune_a_little(self) -> None:
        """Drop the expired sessions of the next USERS_SWEPT_PER_REQUEST users.

        Every API request calls this (and each acquire sweeps a few rate-limit buckets),
        so memory follows what is live while the mock is busy, and no request ever pays
        for a walk over everything: a full prune every 10 s under load was the p99.
        """
        with self.lock:
            sweep = self._sweep
            if not sweep:
                sweep.extend(self.users)  # one lap over the users, then the next
            for _ in range(min(USERS_SWEPT_PER_REQUEST, len(sweep))):
                user = self.users.get(sweep.popleft())
                if user is not None:
                    self._prune_sessions(user)

    # Second factors ----------------------------------------------------------------

    def challenge(self, user: User) -> err.SecondFactorChallengeRequired:
        now = int(self.clock.now())
        exp = now + self.spec.lifetimes["secondFactorChallenge"]
        token = self.signer.sign(
            {"sub": user.id, "iat": now, "exp": exp, "purpose": SECOND_FACTOR_PURPOSE}
        )
        return err.SecondFactorChallengeRequired(
            token=token, exp=exp, types=user.second_factor_types
        )

    def answer_challenge(
        self,
        answer: dict[str, Any],
        expected_user: User | None = None,
        undo: list[Callable[[], None]] | None = None,
    ) -> User:
        """Check a ``2fa`` answer; the user it proves, or the API error it earns.

        A backup code is used up at once (so two requests cannot both spend it); with
        ``undo``, a way to give it back is added there, for when the request fails later.
        """
        missing = [f for f in ("token", "type") if not isinstance(answer.get(f), str)]
        if missing:
            raise err.MissingFields(missing)
        token, kind, code = answer["token"], answer["type"], answer.get("code")
        if token.count(".") != 2:
            raise err.MalformedSecondFactorResponse()
        claims = self.signer.verify(token)
        now = self.clock.now()
        if claims is None or claims.get("purpose") != SECOND_FACTOR_PURPOSE or claims["exp"] <= now:
            raise err.InvalidSecondFactorResponse()
        with self.lock:
            user = self.users.get(claims["sub"])
            if user is None or (expected_user is not None and user.id != expected_user.id):
                raise err.InvalidSecondFactorResponse()
            if kind not in user.second_factor_types:
                raise err.InvalidSecondFactorMethod()
            if not isinstance(code, str):
                raise err.MissingFields(["code"])
            if kind == "totp":
                assert user.totp_secret is not None
                if not verify_totp(user.totp_secret, code.strip(), now):
                    raise err.InvalidSecondFactorResponse()
            else:
                digest = hash_backup_code(code)
                with self.shared.changing_user(user):
                    if digest not in user.backup_codes:
                        raise err.InvalidSecondFactorResponse()
                    user.backup_codes.discard(digest)  # each backup code works once
                    self.revision += 1
                if undo is not None:
                    undo.append(lambda: self._give_back(user, digest))
            return user

    def _give_back(self, user: User, digest: str) -> None:
        with self.lock, self.shared.changing_user(user):
            user.backup_codes.add(digest)
            self.revision += 1

    def reverify(
        self, user: User, body: dict[str, Any], undo: list[Callable[[], None]] | None = None
    ) -> None:
        """Identity reverification: a password, then a second factor if the user has one."""
        answer = body.get("2fa")
        if isinstance(answer, dict) and user.has_second_factor:
            self.answer_challenge(answer, expected_user=user, undo=undo)
            return
        password = body.get("password")
        if not isinstance(password, str):
            raise err.MissingFields(["password"])
        if not user.check_password(password):
            raise err.InvalidPassword()
        if user.has_second_factor:
            raise self.challenge(user)

    def login(self, username: str, password: str) -> User:
        """The user these credentials name; a challenge if they have a second factor."""
        with self.lock:
            user = self.find_user(username)
            if user is None:
                raise err.InvalidUser()
            # Banned is said before the password is checked, whatever the password
            # (observed row 15); otherwise a wrong password looks like an unknown user.
            if user.banned:
                raise err.Banned()
            if not user.check_password(password):
                raise err.InvalidUser()
            if user.has_second_factor:
                raise self.challenge(user)
            return user

    # Kill switches -----------------------------------------------------------------

    def kill_switch_list(self) -> dict[str, Any]:
        names = {v: k for k, v in self.spec.kill_switch_ids.items()}
        items = [
            {"id": i, "name": names[i], "state": state}
            for i, state in sorted(self.kill_switches.items())
        ]
        return {"count": len(items), "items": items}

    def set_kill_switch(self, switch: int, state: bool) -> dict[str, Any]:
        with self.lock, self.shared.changing_global():
            if switch not in self.kill_switches:
                raise err.InvalidEndpoint()
            self.kill_switches[switch] = state
            self.revision += 1
            return self.kill_switch_list()

    def set_all_kill_switches(self, state: bool) -> dict[str, Any]:
        with self.lock, self.shared.changing_global():
            for switch in self.kill_switches:
                self.kill_switches[switch] = state
            self.revision += 1
            return self.kill_switch_list()

    # Persistence -------------------------------------------------------------------

    SNAPSHOT_VERSION = 1

    def snapshot(self) -> dict[str, Any]:
        """Everything a restarted mock needs to accept the tokens it issued: users,
        sessions, kill switches and the signing key (not rate-limit buckets or the clock)."""
        with self.lock:
            return {
                "version": self.SNAPSHOT_VERSION,
                "issuer": self.signer.issuer,
                "signingKey": self.signer.to_jwk(),
                "killSwitches": {str(k): v for k, v in self.kill_switches.items()},
                "profile": self.profile,
                "users": [user_snapshot(u) for u in self.users.values()],
            }

    def restore(self, data: dict[str, Any]) -> None:
        """Replace the state with a snapshot; raises ValueError if it is not one.

        Every field is checked for the type and shape the rules rely on, so a snapshot
        that parses but is wrong (an ``exp`` of ``"never"``, a session id that is not a
        number, a key without its private part) is refused here, before the mock serves
        anything, rather than turning every later request into a 500.
        """
        if not isinstance(data, dict) or data.get("version") != self.SNAPSHOT_VERSION:
            raise ValueError(f"not a version {self.SNAPSHOT_VERSION} state snapshot")
        try:
            signer = restore_signer(data["signingKey"], data["issuer"])
            raw_switches = expect(data["killSwitches"], dict, "killSwitches")
            switches = {
                expect_id(k, "kill switch id"): expect(v, bool, f"kill switch {k}")
                for k, v in raw_switches.items()
            }
            users: dict[str, User] = {}
            for raw in expect(data["users"], list, "users"):
                user = restore_user(expect(raw, dict, "a user"))
                if user.id in users:
                    raise ValueError(f"user id {user.id} appears twice")
                users[user.id] = user
        except (KeyError, TypeError) as error:
            raise ValueError(f"state snapshot is incomplete or malformed: {error!r}") from error
        if set(switches) != set(self.kill_switches):
            raise ValueError("state snapshot has the wrong kill switches")
        profile = data.get("profile")
        if profile is not None and not isinstance(profile, str):
            raise ValueError("state snapshot: profile must be a name or null")
        with self.lock:
            self.signer, self.users, self.kill_switches = signer, users, switches
            self._by_name = {u.username.casefold(): u.id for u in users.values()}
            self._sweep.clear()
            self.profile = profile
            self._last_user_ms = max((int(uid) for uid in users), default=0)
            self.revision += 1
