"""The budget a deployment run needs, planned before it starts: how many logins and
scoped sessions the selected check cases spend, and the least time the service's limits
allow for them (4 logins per 5 minutes per address; the `/users/me/sessions` bucket,
opened by a read, lets scoped sessions come at the read's 100 per minute)::

    plan = Plan.of(selected_cases, spec)
    print(plan.line())   # needs 9 logins and 31 scoped sessions: at least 10 minutes
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from conformance.cases import Case
from conformance.spec import Operation, Spec

# (logins, scoped sessions) a case spends beyond the cached browser sessions, by check id
# and, where it matters, by the kind of operation. Estimates: the run says what it used.
_SESSIONS = {
    "scope.allowed": (0, 1),
    "scope.browser-only": (0, 1),
    "token.revocation": (0, 1),
    "delete-all.include-self": (0, 2),
    "bulk.count": (0, 2),
}
# Logins a case spends on the login operation itself, beyond the sessions it is about:
# refused attempts the login bucket still counts (a caller already logged in, a wrong
# second-factor code) and the valid login a response check judges. Measured by the JSON
# report's `spent` in a full run.
_LOGIN_ATTEMPTS = {
    "auth.forbidden": 1,
    "reverify.second-factor-answer": 1,
    "schema.status": 1,
    "ratelimit.login-404-not-counted": 1,
    "ratelimit.headers": 2,
    "ratelimit.accounting": 2,
}


def _relogin(case: Case) -> int:
    """A login again for a case whose request deletes every session of an account, the
    suite's browser session included, when the next case of that account needs it: a
    scoped session deleting its own user's others (both variants), staff deleting the
    target's (once: the second variant finds no browser session left), include-self=true.
    The account's last such delete in a run needs none: within one of what a run counts."""
    check, op, variant = case.check.id, case.op, case.variant
    if not op.path.endswith("/all"):
        return 0
    if check == "scope.allowed":
        return 1 if op.is_self or variant == op.scope else 0
    return 1 if check == "delete-all.include-self" and variant == "true" else 0


# Generated requests a fuzz case sends on a deployment into a scarce route budget (see
# `Client.scarce`); the rest of them are held back and reported.
SCARCE_EXAMPLES = 2
# Checks that must use up a route's budget and wait for its window to end.
_WINDOWS = {"ratelimit.route-limit"}


def _spends(case: Case) -> tuple[int, int, float]:
    """What one case spends: logins, scoped sessions, and a window it must see end."""
    check, op = case.check.id, case.op
    # A session-issuing operation that asks for credentials is a login.
    by_login = op.reverification == "credentials"
    if check in ("token.lifetime", "ids.distinct", "reverify.challenge") and op.issues_tokens:
        # reverify.challenge: the wrong code's answer counts as well as the right one's.
        count = 2 if check == "ids.distinct" or (check == "reverify.challenge" and by_login) else 1
        return (count, 0, 0.0) if by_login else (0, count, 0.0)
    if check in _WINDOWS and op.rate_limit is not None:
        # The used-up case spends the whole budget; the new-window case, near the end of
        # the run, one more.
        spent = (op.rate_limit.limit if case.variant == "used-up" else 1) * op.issues_tokens
        window = op.rate_limit.window
        return (spent, 0, window) if by_login else (0, spent, window)
    if by_login and check in _LOGIN_ATTEMPTS:
        return _LOGIN_ATTEMPTS[check], 0, 0.0
    if check == "ratelimit.accounting" and op.issues_tokens:
        return 0, 3, 0.0
    if check == "ratelimit.accounting" and op.id == "getSelfSessions":
        # Its series counts in the scoped sessions' bucket of an account the run has not
        # used yet (see windows._window_actor): that account's first login.
        return 1, 0, 0.0
    if relogin := _relogin(case):
        return relogin, _SESSIONS[check][1], 0.0
    if op.deletes_sessions and check in (
        "schema.status",
        "killswitch.staff-bypass",
        "ratelimit.literal-route",
    ):
        return 0, 1, 0.0  # a session for the valid request to delete
    logins, scoped = _SESSIONS.get(check, (0, 0))
    return logins, scoped, 0.0


def _scarce(op: Operation) -> bool:
    """As `Client.scarce` on a deployment: a small budget every account shares."""
    limiter = op.rate_limit
    return op.authentication == "forbidden" and limiter is not None and limiter.limit <= 10


@dataclass
class Plan:
    logins: int = 0
    scoped: int = 0
    windows: float = 0.0  # the longest window some check must see end
    login_limit: int = 4
    login_window: float = 300.0

    @classmethod
    def of(cls, cases: Iterable[Case], spec: Spec, accounts: int = 1) -> Plan:
        login = spec.operation("login").rate_limit
        plan = cls(logins=accounts)
        if login is not None:
            plan.login_limit, plan.login_window = login.limit, login.window
        masks: set[str] = set()
        paging: set[str] = set()
        for case in cases:
            if case.check.id == "scope.denied":
                masks.add("denied")
            elif case.check.id.startswith("paging."):
                paging.add("staff" if case.op.staff_only else "user")
            else:
                logins, scoped, window = _spends(case)
                plan.logins += logins
                plan.scoped += scoped
                # The windows overlap the run's other work: the longest bounds the run.
                plan.windows = max(plan.windows, window)
        plan.scoped += len(masks) + 3 * len(paging)
        return plan

    def add_generated(self, op: Operation, mode: str) -> None:
        """A fuzz case: positive generated logins count (`SCARCE_EXAMPLES` at most);
        negative ones are refused before the login bucket."""
        if mode == "positive" and _scarce(op) and op.issues_tokens:
            self.logins += SCARCE_EXAMPLES

    @property
    def seconds(self) -> float:
        """The least wall time the login budget and the windows allow."""
        login_windows = max(0, math.ceil(self.logins / self.login_limit) - 1)
        return max(login_windows * self.login_window, self.windows)

    def spent_line(self) -> str:
        return f"{self.logins} logins, {self.scoped} scoped sessions"

    def line(self) -> str:
        return (
            f"needs {self.logins} logins and {self.scoped} scoped sessions: "
            f"at least {math.ceil(self.seconds / 60)} minutes"
        )
