"""Kill switches on the target: read them, flip them (through the mock's control API, or
the API itself as staff on a deployment that allows it) and put back what was found.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from conformance.calls import Call

if TYPE_CHECKING:
    from conformance.sessions import Sessions


class KillSwitches:
    """The target's kill switches, as a check turns them on and the run puts them back."""

    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions
        self.target = sessions.target
        self.spec = sessions.spec

    def driver(self) -> str:
        if self.target.control is not None:
            return "control"
        if not self.target.settings.allow_kill_switches:
            pytest.skip(
                "flips kill switches, which affects every user: "
                "pass --cumulonimbus-allow-kill-switches"
            )
        self.sessions.staff_with_factor()
        return "api"

    def set(self, switch: int, state: bool) -> None:
        driver = self.driver()
        if driver == "control":
            assert self.target.control is not None
            self.target.control.set_kill_switch(switch, state)
            return
        staff = self.sessions.staff_with_factor()
        op = self.spec.operation("enableKillSwitch" if state else "disableKillSwitch")
        call = Call(
            op, staff, self.sessions.browser(staff).value, subject=staff, path={"id": str(switch)}
        )
        call.body = {"password": staff.password}
        exchange = self.sessions.perform(call)
        if exchange.status != 200:
            raise RuntimeError(f"cannot set kill switch {switch}: {exchange.summary()}")

    def states(self) -> dict[int, bool]:
        """Which kill switches are on now (so the suite puts back what it found)."""
        if self.driver() == "control":
            assert self.target.control is not None
            items = self.target.control.call("GET", "/killswitches")["items"]
        else:
            staff = self.sessions.staff_with_factor()
            exchange = self.sessions.client.request(
                "GET",
                "/killswitches",
                token=self.sessions.browser(staff).value,
                route="/killswitches",
            )
            if exchange.status != 200:
                raise RuntimeError(f"cannot read the kill switches: {exchange.summary()}")
            items = exchange.json["items"]
        return {int(item["id"]): bool(item["state"]) for item in items}

    def restore(self, before: dict[int, bool]) -> None:
        for switch, state in self.states().items():
            if before.get(switch, False) != state:
                self.set(switch, before.get(switch, False))

    @contextlib.contextmanager
    def on(self, *names: str) -> Iterator[None]:
        """Turn switches on for the block; switches that were on already stay on."""
        wanted = [self.spec.kill_switches[name] for name in names]
        before = self.states()
        flipped = [switch for switch in wanted if not before.get(switch, False)]
        try:
            for switch in flipped:
                self.set(switch, True)
            yield
        finally:
            for switch in flipped:
                self.set(switch, False)
