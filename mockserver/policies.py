"""The request pipeline: the named steps every API request passes, in the spec's order.

The order is not written here: it is the spec's ``components.x-policy-order``, and
:func:`build_pipeline` turns each name into its step, refusing a spec that names an
unknown step, leaves one out, or puts a step that needs the operation before routing::

    pipeline = build_pipeline(spec)
    status, body = pipeline.run(call, backend)

Each step reads its settings from the operation's ``x-`` extensions and raises an API
error to refuse. The steps, in the order the service applies them (the spec's "Policies"
and "Decisions" say why):

- ``global-rate-limit``: hold the request against the global bucket (IP, user);
- ``global-kill-switch``: GLOBAL answers 503 before anything else, unknown paths too;
- ``routing``: find the operation, or ``404 INVALID_ENDPOINT_ERROR`` (counted globally);
- ``authentication``: ``x-authentication: required`` refuses anonymous and banned callers;
- ``kill-switches``: the operation's switches (staff pass);
- ``staff-only``, ``scope``, ``identity-reverification``, ``validation``;
- ``route-rate-limit``: the operation's own limiter, which then counts the request
  instead of the global bucket;
- ``anonymous-only``: ``x-authentication: forbidden`` (login) refuses a logged-in caller
  only here, after the route limiter, so that refusal is counted in the login bucket
  (observed row 16);
- ``operation``: the view.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from werkzeug.datastructures import Headers, MultiDict

from . import exceptions as err
from .models import Backend
from .ratelimit import Ticket
from .records import Identity
from .spec import BROWSER_SESSION_ONLY, Operation, Spec
from .validation import SpecValidator

if TYPE_CHECKING:
    from .profiles import Profile

# The steps before routing know no operation; every other step needs one.
BEFORE_ROUTING = frozenset(("global-rate-limit", "global-kill-switch"))


@dataclass
class Call:
    """One API request as the pipeline and the views see it."""

    method: str
    path: str  # without the /api prefix, e.g. /users/me/sessions/me
    query: MultiDict[str, str]
    headers: Headers
    ip: str
    identity: Identity | None
    read_body: Callable[[], dict[str, Any]] = dict
    # The body as sent, (mimetype, bytes): what a behaviour profile judges bodies by.
    read_raw: Callable[[], tuple[str, bytes]] = lambda: ("", b"")
    op: Operation | None = None
    args: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)
    tickets: list[Ticket] = field(default_factory=list)
    # What to take back if the request fails after a step had an effect (a backup
    # code spent in reverification, say).
    undo: list[Callable[[], None]] = field(default_factory=list)
    result: tuple[int, dict[str, Any]] | None = None
    # Set when a behaviour profile changed anything: the answer may then break the spec.
    profiled: bool = False
    profile_args: dict[str, str] = field(default_factory=dict)

    @property
    def operation(self) -> Operation:
        assert self.op is not None, "a step that needs the operation ran before routing"
        return self.op

    @property
    def user_id(self) -> str | None:
        return self.identity.user.id if self.identity else None

    @property
    def staff(self) -> bool:
        return bool(self.identity and self.identity.user.staff)


@dataclass
class Context:
    backend: Backend
    validator: SpecValidator | None
    views: dict[str, Callable[[Call, Backend], tuple[int, dict[str, Any]]]]
    # The profiles the backend may name (``Backend.profile``), loaded and checked once.
    profiles: dict[str, Profile] = field(default_factory=dict)


Step = Callable[[Call, Context], None]


def global_rate_limit(call: Call, ctx: Context) -> None:
    # Held here until the request reaches its route's own limiter (if it has one).
    call.tickets.append(ctx.backend.hold_global(call.ip, call.user_id))


def global_kill_switch(call: Call, ctx: Context) -> None:
    switch = ctx.backend.spec.kill_switch_ids["GLOBAL"]
    if ctx.backend.kill_switches[switch] and not call.staff:
        raise err.ServiceUnavailable(switch)


def routing(call: Call, ctx: Context) -> None:
    spec = ctx.backend.spec
    matched = spec.match(call.method, "/api" + call.path)
    if matched is None and call.path.strip("/") == "":
        matched = (spec.operations["getHello"], {})  # the root answers any method
    if matched is None:
        raise err.InvalidEndpoint()
    enter(call, *matched)


def enter(call: Call, op: Operation, args: dict[str, str]) -> None:
    """The request is for ``op``: routing's result, or where a profile routes it."""
    call.op, call.args = op, args
    # Routing forgives trailing slashes (as the service's router does); every later step,
    # the validators and --strict included, sees the operation's own path.
    trimmed = call.path.rstrip("/")
    call.path = trimmed + "/" if call.op.path.endswith("/") else trimmed
    if call.op.has_body:
        call.body = call.read_body()


def authentication(call: Call, ctx: Context) -> None:
    if call.operation.authentication != "required":
        return
    if call.identity is None:
        raise err.InvalidSession()
    if call.identity.user.banned:
        raise err.Banned()


def kill_switches(call: Call, ctx: Context) -> None:
    if call.staff:
        return
    for switch in call.operation.kill_switches:
        if ctx.backend.kill_switches[switch]:
            raise err.ServiceUnavailable(switch)


def staff_only(call: Call, ctx: Context) -> None:
    identity = call.identity
    if call.operation.staff_only and identity is not None:
        if not identity.user.staff:
            raise err.InsufficientPermissions()
        if not identity.user.has_second_factor:
            raise err.EndpointRequiresSecondFactor()


def scope(call: Call, ctx: Context) -> None:
    identity, op = call.identity, call.operation
    if identity is None or not identity.scoped or op.scope is None:
        return
    if op.scope == BROWSER_SESSION_ONLY:
        raise err.InsufficientPermissions()
    flags = ctx.backend.spec.permission_flags
    if not (identity.session.permission_flags or 0) & (flags[op.scope] | flags["ALL"]):
        raise err.InsufficientPermissions()


def identity_reverification(call: Call, ctx: Context) -> None:
    # Scoped sessions skip reverification; login checks credentials as its operation.
    identity = call.identity
    if call.operation.reverification == "password" and identity and not identity.scoped:
        ctx.backend.reverify(identity.user, call.body, undo=call.undo)


def validation(call: Call, ctx: Context) -> None:
    op = call.operation
    if ctx.validator is not None:
        ctx.validator.check_request(
            op, "/api" + call.path, call.query, call.headers, call.body if op.has_body else None
        )


def route_rate_limit(call: Call, ctx: Context) -> None:
    limit = call.operation.rate_limit
    if limit is None:
        return
    # Counted here, not in the global bucket; a refusal here leaves the global ticket
    # held, to be settled (uncounted, as a 429) with the answer.
    ticket = ctx.backend.move_to_route(call.tickets[-1], call.ip, call.path, call.user_id, limit)
    call.tickets[-1] = ticket


def anonymous_only(call: Call, ctx: Context) -> None:
    if call.operation.authentication == "forbidden" and call.identity is not None:
        raise err.InvalidSession()


def operation(call: Call, ctx: Context) -> None:
    call.result = ctx.views[call.operation.operation_id](call, ctx.backend)


STEPS: dict[str, Step] = {
    "global-rate-limit": global_rate_limit,
    "global-kill-switch": global_kill_switch,
    "routing": routing,
    "authentication": authentication,
    "kill-switches": kill_switches,
    "staff-only": staff_only,
    "scope": scope,
    "identity-reverification": identity_reverification,
    "validation": validation,
    "route-rate-limit": route_rate_limit,
    "anonymous-only": anonymous_only,
    "operation": operation,
}


@dataclass(frozen=True)
class Pipeline:
    steps: tuple[tuple[str, Step], ...]

    def run(self, call: Call, ctx: Context) -> tuple[int, dict[str, Any]]:
        name = ctx.backend.profile
        if name is None:
            shared = ctx.backend.shared
            *steps, (_, operation) = self.steps  # build_pipeline: the operation is last
            try:
                for _, step in steps:
                    step(call, ctx)
                # With Redis, the state the steps read is checked here, with the limits
                # (a refused global acquire answers instead of any later step).
                shared.current()
            except shared.passes:
                raise  # runs again, or a Redis error: nothing more asked of Redis
            except Exception:
                shared.current()
                raise
            operation(call, ctx)
        else:
            # A behaviour profile (--as-deployed) applies its rules around the steps.
            profile = ctx.profiles[name]
            for step_name, step in self.steps:
                profile.run_step(step_name, step, call, ctx)
        assert call.result is not None
        return call.result

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.steps)


def build_pipeline(spec: Spec) -> Pipeline:
    """The spec's ``x-policy-order`` as steps; a spec that cannot be one is refused."""
    order = spec.policy_order
    unknown = [name for name in order if name not in STEPS]
    missing = [name for name in STEPS if name not in order]
    problems = []
    if unknown:
        problems.append(f"unknown steps {unknown}")
    if missing:
        problems.append(f"missing steps {missing}")
    if len(set(order)) != len(order):
        problems.append("a step is named twice")
    if not problems:
        routed = order.index("routing")
        late = [name for name in order[:routed] if name not in BEFORE_ROUTING]
        if late:
            problems.append(f"{late} need the operation, so must come after routing")
        if order.index("route-rate-limit") < order.index("global-rate-limit"):
            problems.append("the route limiter takes over from the global one, so comes after it")
        if order[-1] != "operation":
            problems.append("the operation must be the last step")
    if problems:
        raise ValueError("components.x-policy-order: " + "; ".join(problems))
    return Pipeline(tuple((name, STEPS[name]) for name in order))
