"""The policy pipeline every API request passes before its operation runs.

The order is the spec's ``x-policy-order``: global rate limit, GLOBAL kill switch,
authentication, the operation's kill switches, staff check, scope check, identity
reverification, validation, route rate limit. Each step reads its settings from the
operation's ``x-`` extensions and raises an API error to refuse.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from werkzeug.datastructures import Headers, MultiDict

from . import exceptions as err
from .models import Backend, Identity
from .ratelimit import Ticket
from .spec import BROWSER_SESSION_ONLY, Operation
from .validation import SpecValidator


@dataclass
class Call:
    """One API request as the policies and views see it."""

    op: Operation
    path: str
    args: dict[str, str]
    query: MultiDict[str, str]
    headers: Headers
    body: dict[str, Any]
    ip: str
    identity: Identity | None
    tickets: list[Ticket] = field(default_factory=list)
    # What to take back if the request fails after a policy had an effect (a backup
    # code spent in reverification, say).
    undo: list[Callable[[], None]] = field(default_factory=list)

    @property
    def answers_challenge(self) -> bool:
        return isinstance(self.body.get("2fa"), dict)


def run(call: Call, backend: Backend, validator: SpecValidator | None) -> None:
    op, identity, spec = call.op, call.identity, backend.spec
    user = identity.user if identity else None
    staff = bool(user and user.staff)
    limiter = backend.limiter

    # Every request is held against the global bucket until it reaches its route's own.
    call.tickets.append(
        limiter.acquire((call.ip, "*", user.id if user else None), spec.global_limit)
    )

    global_switch = spec.kill_switch_ids["GLOBAL"]
    if backend.kill_switches[global_switch] and not staff:
        raise err.ServiceUnavailable(global_switch)

    if op.authentication == "required":
        if identity is None:
            raise err.InvalidSession()
        if identity.user.banned:
            raise err.Banned()
    elif op.authentication == "forbidden" and identity is not None:
        raise err.InvalidSession()

    if not staff:
        for switch in op.kill_switches:
            if backend.kill_switches[switch]:
                raise err.ServiceUnavailable(switch)

    if op.staff_only and identity is not None:
        if not identity.user.staff:
            raise err.InsufficientPermissions()
        if not identity.user.has_second_factor:
            raise err.EndpointRequiresSecondFactor()

    if identity is not None and identity.scoped and op.scope is not None:
        flags = identity.session.permission_flags or 0
        if op.scope == BROWSER_SESSION_ONLY:
            raise err.InsufficientPermissions()
        wanted = spec.permission_flags[op.scope] | spec.permission_flags["ALL"]
        if not flags & wanted:
            raise err.InsufficientPermissions()

    # Scoped sessions skip reverification; login checks credentials as its operation.
    if op.reverification == "password" and identity is not None and not identity.scoped:
        backend.reverify(identity.user, call.body, undo=call.undo)

    if validator is not None:
        validator.check_request(
            op, call.path, call.query, call.headers, call.body if op.has_body else None
        )

    limit = op.rate_limit
    if limit is not None and not (limit.skip_second_factor_answers and call.answers_challenge):
        # Each operation has its own limiter, as in the real service (GET and POST of
        # one path do not share a bucket).
        key = (call.ip, f"{op.method} {op.path}", user.id if user else None)
        ticket = limiter.acquire(key, limit)
        limiter.release(call.tickets.pop())
        call.tickets.append(ticket)
