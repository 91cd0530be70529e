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
from conformance.spec import Spec

# (logins, scoped sessions) a case spends beyond the cached browser sessions, by check id
# and, where it matters, by the kind of operation. Estimates: the run says what it used.
_SESSIONS = {
    "scope.allowed": (0, 1),
    "scope.browser-only": (0, 1),
    "token.revocation": (0, 1),
    "delete-all.include-self": (0, 2),
    "bulk.count": (0, 2),
}
# Checks that must use up a route's budget and wait for its window to end.
_WINDOWS = {"ratelimit.route-limit"}


def _spends(case: Case) -> tuple[int, int, float]:
    """What one case spends: logins, scoped sessions, and a window it must see end."""
    check, op = case.check.id, case.op
    # A session-issuing operation that asks for credentials is a login.
    by_login = op.reverification == "credentials"
    if check in ("token.lifetime", "ids.distinct", "reverify.challenge") and op.issues_tokens:
        count = 2 if check == "ids.distinct" else 1
        return (count, 0, 0.0) if by_login else (0, count, 0.0)
    if check in _WINDOWS and op.rate_limit is not None:
        # The used-up case spends the whole budget; the new-window case, near the end of
        # the run, one more.
        spent = (op.rate_limit.limit if case.variant == "used-up" else 1) * op.issues_tokens
        window = op.rate_limit.window
        return (spent, 0, window) if by_login else (0, spent, window)
    if check == "ratelimit.login-404-not-counted":
        return 1, 0, 0.0
    if check == "ratelimit.accounting" and op.issues_tokens:
        # Measured by the JSON report's `spent`: three counted answers either way.
        return (3, 0, 0.0) if by_login else (0, 3, 0.0)
    if check == "ratelimit.headers" and op.issues_tokens and by_login:
        return 2, 0, 0.0
    if op.deletes_sessions and check in ("schema.status", "killswitch.staff-bypass"):
        return 0, 1, 0.0  # a session for the valid request to delete
    logins, scoped = _SESSIONS.get(check, (0, 0))
    return logins, scoped, 0.0


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
