"""Behaviour profiles: the deployed service's deviations from the contract, as data.

A profile (``openapi/profiles/NAME.yaml``) lists the places where a version of the
service does otherwise than the contract decides, each as rules attached to a step of the
request pipeline (:mod:`mockserver.policies`). With a profile on, :meth:`Profile.run_step`
runs each step instead of the pipeline, applying the rules around it; without one the
pipeline runs as before. This module is the only code that knows what a rule can say::

    profile = load_profile("5.3.0", spec)
    profile.run_step("routing", STEPS["routing"], call, ctx)

The file's header comment documents the vocabulary (``before``/``around``, ``when``,
``answer``/``route-to``/``skip``/``query-integers``/``drop-values``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from werkzeug.datastructures import MultiDict

from . import exceptions as err
from .inputs import parse_json
from .spec import Spec, spec_dir

if TYPE_CHECKING:
    from .policies import Call, Context, Step

ANY = "any"
ACTIONS = ("answer", "route-to", "skip", "query-integers", "drop-values")
BODY_KINDS = ("absent", "not-json", "malformed", "object", "array")
CALLERS = ("anonymous", "banned", "not-staff")
# Express's own error page (finalhandler, production mode): what the service sends when
# an error escapes its JSON handlers, e.g. a body its JSON parser refuses.
EXPRESS_ERROR_PAGE = (
    '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
    "<title>Error</title>\n</head>\n<body>\n<pre>{message}</pre>\n</body>\n</html>\n"
)
EXPRESS_ERROR_HEADERS = {
    "Content-Security-Policy": "default-src 'none'",
    "X-Content-Type-Options": "nosniff",
}


def profiles_dir() -> Path:
    return spec_dir() / "profiles"


def available() -> list[str]:
    """The profiles shipped beside the spec, by name."""
    return sorted(path.stem for path in profiles_dir().glob("*.yaml"))


class ProfileError(ValueError):
    """A profile file that cannot be applied: refused when the mock starts."""


class ProfileAnswer(err.APIError):
    """The service's own answer, which the contract fixes: any status, JSON or HTML."""

    def __init__(
        self, status: int, body: dict[str, Any] | None, *, html: bool, counted: bool
    ) -> None:
        super().__init__()
        self.status = status  # type: ignore[misc]  # the class default is 500
        self.body = body
        self.html = html
        self.counted = counted  # False: no RateLimit-* header, nothing counted
        if html:
            self.headers.update(EXPRESS_ERROR_HEADERS)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.body or {})

    def page(self) -> str:
        return EXPRESS_ERROR_PAGE.format(message=HTTPStatus(self.status).phrase)


def _error_classes() -> dict[str, type[err.APIError]]:
    """Error code to class, from the classes themselves (the most general per code)."""
    found: dict[str, type[err.APIError]] = {}
    pending: list[type[err.APIError]] = [err.APIError]
    while pending:
        cls = pending.pop(0)
        found.setdefault(cls.code, cls)
        pending.extend(cls.__subclasses__())
    return found


# Conditions -------------------------------------------------------------------------------


def body_kind(call: Call) -> str:
    """What the service's JSON parser makes of the body (Express, strict mode)."""
    mimetype, raw = call.read_raw()
    if not raw:
        return "absent"
    if "json" not in mimetype:
        return "not-json"
    try:
        value = parse_json(raw)
    except ValueError:
        return "malformed"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return "malformed"  # strict mode refuses a bare string or number


def _parsed(call: Call) -> Any:
    try:
        return parse_json(call.read_raw()[1])
    except ValueError:
        return None


def _second_taken(call: Call, ctx: Context) -> bool:
    """Judged after the step created a session: the service's session id is the second it
    was made in, unique across users, so a second that already had one fails. The mock
    would have given the new session another id (the next free one) instead."""
    _, body = call.result or (0, {})
    token = body.get("token") if isinstance(body, dict) else None
    claims = ctx.backend.signer.verify(token) if isinstance(token, str) else None
    if claims is None:
        return False
    with ctx.backend.lock:
        # Looked up, not authenticated: judging must not touch the session's usedAt.
        user = ctx.backend.users.get(claims["sub"])
        made = user.sessions.get(str(claims["iat"])) if user is not None else None
        if made is None:
            return False
        # The second the session was made in, not the clock's now: a second that ended
        # between making it and judging it would fail a session that had its second alone.
        second = str(int(made.created_at))
        if made.id != second:
            return True
        return sum(second in u.sessions for u in ctx.backend.users.values()) > 1


def _caller(call: Call, wanted: str) -> bool:
    if wanted == "anonymous":
        return call.identity is None
    if wanted == "banned":
        return call.identity is not None and call.identity.user.banned
    return not call.staff


def _pattern(path: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[A-Za-z_]+\})", path)
    regex = "".join(
        f"(?P<{part[1:-1]}>[^/]+)" if part.startswith("{") else re.escape(part) for part in parts
    )
    return re.compile(regex + "/?")


Condition = Callable[["Call", "Context"], bool]


# One flat branch per condition name the profile format knows: long, but one idea.
def _condition(name: str, value: Any, spec: Spec) -> Condition:  # noqa: C901
    """One `when` entry as a predicate; ProfileError for anything it cannot mean."""
    if name == "method":
        methods = {value} if isinstance(value, str) else set(value)
        return lambda call, ctx: call.method in methods
    if name == "path":
        pattern = _pattern(str(value))

        def path_matches(call: Call, ctx: Context) -> bool:
            found = pattern.fullmatch(call.path)
            if found is not None:
                call.profile_args = found.groupdict()
            return found is not None

        return path_matches
    if name == "body":
        kinds = set(value)
        if not kinds <= set(BODY_KINDS):
            raise ProfileError(f"body kinds are {BODY_KINDS}, not {sorted(kinds)}")
        return lambda call, ctx: body_kind(call) in kinds
    if name == "body-lacks":
        fields = list(value)

        def lacks(call: Call, ctx: Context) -> bool:
            body = _parsed(call)
            return not isinstance(body, dict) or not any(f in body for f in fields)

        return lacks
    if name == "not-a-list":
        fields = list(value)

        def not_a_list(call: Call, ctx: Context) -> bool:
            body = _parsed(call)
            return isinstance(body, dict) and any(
                f in body and not isinstance(body[f], list) for f in fields
            )

        return not_a_list
    if name == "caller":
        if value not in CALLERS:
            raise ProfileError(f"caller is one of {CALLERS}, not {value!r}")
        return lambda call, ctx: _caller(call, value)
    if name == "kill-switch-on":
        if value not in spec.kill_switch_ids:
            raise ProfileError(f"unknown kill switch {value!r}")
        switch = spec.kill_switch_ids[value]
        return lambda call, ctx: ctx.backend.kill_switches[switch]
    if name == "arg-not-in":
        wanted = {str(arg): {str(v) for v in values} for arg, values in dict(value).items()}
        return lambda call, ctx: any(call.args.get(a) not in vs for a, vs in wanted.items())
    if name == "second-taken":
        return _second_taken if value else (lambda call, ctx: not _second_taken(call, ctx))
    raise ProfileError(f"unknown condition {name!r}")


# Rules -------------------------------------------------------------------------------------

SKIP = "skip"


@dataclass
class Rule:
    deviation: str
    operations: frozenset[str] | None  # None: every request
    conditions: list[Condition]
    action: str
    value: Any
    # around rules: what the step must have done, None for "raised nothing".
    raises: tuple[int, str] | None = None
    around: bool = False
    _errors: dict[str, type[err.APIError]] = field(default_factory=_error_classes)

    def applies(self, call: Call, ctx: Context) -> bool:
        if self.operations is not None and (
            call.op is None or call.op.operation_id not in self.operations
        ):
            return False
        return all(condition(call, ctx) for condition in self.conditions)

    def act(self, call: Call, ctx: Context) -> str | None:
        """Apply the action; SKIP when the step must not run, else None. An answer raises."""
        call.profiled = True
        if self.action == "answer":
            raise self.answer(call, ctx)
        if self.action == "skip":
            return SKIP
        if self.action == "route-to":
            from .policies import enter

            args = {**call.profile_args, **dict(self.value.get("args") or {})}
            enter(call, ctx.backend.spec.operations[self.value["operation"]], args)
            return SKIP
        if self.action == "query-integers":
            call.query = _integers(call.query, self.value)
            return None
        if self.action == "drop-values":
            for name, dropped in self.value.items():
                values = call.body.get(name)
                if isinstance(values, list):
                    call.body[name] = [
                        v for v in values if not (isinstance(v, str) and v.strip() in dropped)
                    ]
            return None
        raise AssertionError(self.action)  # refused when the profile was loaded

    def answer(self, call: Call, ctx: Context) -> err.APIError:
        spec = self.value
        if "kill-switch" in spec:
            return err.ServiceUnavailable(ctx.backend.spec.kill_switch_ids[spec["kill-switch"]])
        if spec.get("ratelimit") == "route" and call.op is not None:
            from .policies import STEPS

            STEPS["route-rate-limit"](call, ctx)  # may itself refuse with a 429
        status = int(spec["status"])
        body = None
        if "code" in spec:
            error = self._errors[spec["code"]]
            body = {"code": error.code, "message": error.message}
        return ProfileAnswer(
            status, body, html=bool(spec.get("html")), counted=spec.get("ratelimit") != "none"
        )


def _integers(query: Any, settings: dict[str, dict[str, int]]) -> MultiDict[str, str]:
    """The query with each named parameter read as JavaScript's parseInt reads it."""
    values = MultiDict(list(query.items(multi=True)))
    for name, bounds in settings.items():
        if name not in values:
            continue
        found = re.match(r"\s*([+-]?\d+)", values.get(name, ""))
        number = int(found.group(1)) if found else None
        if number is None or number < bounds.get("min", 0):
            number = bounds["default"]
        elif "max" in bounds and number > bounds["max"]:
            number = bounds["max"]
        values.setlist(name, [str(number)])
    return values


@dataclass
class Profile:
    name: str
    service: str
    deviations: list[dict[str, Any]]
    before: dict[str, list[Rule]]
    around: dict[str, list[Rule]]

    def run_step(self, name: str, step: Step, call: Call, ctx: Context) -> None:
        for rule in self.before.get(name, ()):
            if rule.applies(call, ctx) and rule.act(call, ctx) == SKIP:
                return
        around = self.around.get(name, ())
        if not around:
            step(call, ctx)
            return
        try:
            step(call, ctx)
        except err.APIError as error:
            for rule in around:
                if rule.raises == (error.status, error.code) and rule.applies(call, ctx):
                    rule.act(call, ctx)
            raise
        # Rules about a success judge what the step did, so only now.
        for rule in around:
            if rule.raises is None and rule.applies(call, ctx):
                _discard_created_session(call, ctx)
                rule.act(call, ctx)

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "service": self.service,
            "deviations": [
                {"id": d["id"], "decision": str(d["decision"]), "service": d["service"]}
                for d in self.deviations
            ],
        }


def _discard_created_session(call: Call, ctx: Context) -> None:
    """The step succeeded but the service fails the request: the session it made is gone."""
    _, body = call.result or (0, {})
    token = body.get("token") if isinstance(body, dict) else None
    identity = ctx.backend.authenticate(token) if isinstance(token, str) else None
    if identity is not None:
        ctx.backend.delete_session(identity.user, identity.session.id)
        # Its id was never handed out: the next session may have it, as on the service.
        identity.user.last_session_id = int(identity.session.id) - 1


# Loading ------------------------------------------------------------------------------------

DEVIATION_KEYS = {"id", "decision", "mock", "service", "rows", "rules"}
RULE_KEYS = {"operations", "before", "around", "when", *ACTIONS}


def load_profile(name: str, spec: Spec, path: Path | None = None) -> Profile:
    """The profile NAME (a file beside the spec); ProfileError if it cannot be applied."""
    from .policies import STEPS

    path = path or profiles_dir() / f"{name}.yaml"
    if not path.is_file():
        raise ProfileError(f"unknown profile {name!r} (known: {', '.join(available()) or 'none'})")
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    before: dict[str, list[Rule]] = {}
    around: dict[str, list[Rule]] = {}
    deviations = data.get("deviations") or []
    for deviation in deviations:
        where = f"profile {name}, deviation {deviation.get('id')!r}"
        extra = set(deviation) - DEVIATION_KEYS
        if extra or not DEVIATION_KEYS - {"rows"} <= set(deviation):
            raise ProfileError(f"{where}: needs exactly the keys {sorted(DEVIATION_KEYS)}")
        for number, raw in enumerate(deviation["rules"], start=1):
            try:
                rule, steps = _rule(deviation["id"], raw, spec, set(STEPS))
            except ProfileError as error:
                raise ProfileError(f"{where}, rule {number}: {error}") from None
            for step in steps:
                (around if rule.around else before).setdefault(step, []).append(rule)
    return Profile(str(data["profile"]), str(data["service"]), deviations, before, around)


def _rule(  # noqa: C901 (checks each key of a rule in turn, with its own message)
    deviation: str, raw: dict[str, Any], spec: Spec, steps: set[str]
) -> tuple[Rule, list[str]]:
    unknown = set(raw) - RULE_KEYS
    if unknown:
        raise ProfileError(f"unknown keys {sorted(unknown)}")
    actions = [a for a in ACTIONS if a in raw]
    if len(actions) != 1:
        raise ProfileError(f"needs exactly one action of {ACTIONS}, has {actions}")
    if ("before" in raw) == ("around" in raw):
        raise ProfileError("needs either before: STEP or around: [STEPS]")
    names = [raw["before"]] if "before" in raw else list(raw["around"])
    if not set(names) <= steps:
        raise ProfileError(f"unknown steps {sorted(set(names) - steps)}")
    operations = raw.get("operations", ANY)
    ops = None if operations == ANY else frozenset(operations)
    if ops is not None and not ops <= set(spec.operations):
        raise ProfileError(f"unknown operations {sorted(ops - set(spec.operations))}")
    when = dict(raw.get("when") or {})
    raises: tuple[int, str] | None = None
    if "raises" in when:
        if "around" not in raw:
            raise ProfileError("raises is known only around a step")
        wanted = when.pop("raises")
        if wanted != "none":
            raises = (int(wanted["status"]), str(wanted["code"]))
    elif "around" in raw:
        raise ProfileError("an around rule says what the step raises (or none)")
    action = actions[0]
    value = raw[action]
    if action == "route-to" and value.get("operation") not in spec.operations:
        raise ProfileError(f"route-to an unknown operation {value.get('operation')!r}")
    if action == "answer" and "kill-switch" not in value and "status" not in value:
        raise ProfileError("an answer needs a status (or a kill-switch)")
    if action == "answer" and value.get("code") not in (None, *_error_classes()):
        raise ProfileError(f"unknown error code {value.get('code')!r}")
    rule = Rule(
        deviation,
        ops,
        [_condition(key, setting, spec) for key, setting in when.items()],
        action,
        value,
        raises,
        "around" in raw,
    )
    return rule, names


def load_all(spec: Spec, names: Iterable[str] | None = None) -> dict[str, Profile]:
    return {name: load_profile(name, spec) for name in (available() if names is None else names)}
