"""What a check works with: the sessions of `sessions.py`, a builder of valid requests
for any operation, the kill switches (`ctx.switches`), and the caches checks share.

A valid request is built from the spec: path, query, header and body parameters are
filled by name (`uid` is the subject's id, `sid` a session of the subject, `ids` a
disposable session, `password` the actor's), so a new operation using known names needs
no new code::

    call = ctx.valid_call(op)            # the caller the operation is meant for
    exchange = ctx.perform(call)         # answers a second-factor challenge if asked
"""

from __future__ import annotations

from typing import Any

from conformance.calls import UNKNOWN_SID, Call
from conformance.exchange import NO_BODY, Exchange
from conformance.sessions import Sessions
from conformance.spec import Operation
from conformance.switches import KillSwitches
from conformance.target import Account, Target


class Context(Sessions):
    """The sessions, plus the valid request of any operation and what checks share."""

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        self.switches = KillSwitches(self)
        # Every response check judges the same few exchanges of an operation (`probes`).
        self._probes: dict[str, list[tuple[str, Exchange]]] = {}
        # The sessions a paging check listed, per subject, oldest first: paging checks
        # share them instead of each creating its own (4 per 5 minutes on a deployment).
        self.paging_sessions: dict[str, list[str]] = {}
        # Route windows used up by `ratelimit.route-limit`, by operation id, until the
        # check's new-window case judges them (near the end of a deployment run).
        self.used_up: dict[str, Any] = {}
        # Second-factor challenges asked for early, by operation id, for the case that
        # answers one once it has expired (near the end of a deployment run).
        self.challenges: dict[str, tuple[Any, Exchange, float]] = {}

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

    def probes(self, op: Operation) -> list[tuple[str, Exchange]]:
        """A few representative requests for `op`: valid, anonymous, non-staff, invalid
        input. Cached per operation, so every response check judges the same exchanges."""
        if op.id in self._probes:
            return self._probes[op.id]
        results: list[tuple[str, Exchange]] = []
        call = self.valid_call(op)
        exchange = self.perform(call)
        self.after(call, exchange)
        results.append(("valid request", exchange))
        if op.authentication == "required":
            anonymous = self.valid_call(op, token=None, placeholders=True)
            results.append(("anonymous", self.send(anonymous)))
        if op.staff_only:
            user = self.account("user")
            results.append(
                ("non-staff", self.send(call.replace(token=self.browser(user).value, actor=user)))
            )
        if op.body_schema is not None:
            empty = self.valid_call(op, placeholders=True).replace(body={})
            results.append(("empty body", self.send(empty)))
        elif op.body_schema is None and call.body is NO_BODY:
            ints = [p for p in op.params_in("query") if p.schema.get("type") == "integer"]
            if ints:
                bad = self.valid_call(op, placeholders=True)
                bad.query[ints[0].name] = "not-a-number"
                results.append((f"{ints[0].name}=not-a-number", self.send(bad)))
        self._probes[op.id] = results
        return results
