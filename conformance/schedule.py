"""The order a deployment run takes its cases in, decided as it goes.

The service lets 4 logins through per 5 minutes per address. A case that needs a login
while that budget is spent would make the whole run wait; the cases after it that need
none go first instead, so their work fills the window (the issue's "interleave checks
that use different buckets"). A case only moves within its group of the run's order
(`plugin._run_order`): cases judged late stay late::

    after = next_index(items, i + 1, group=_run_order, logins=spends, room=room_after)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

Item = TypeVar("Item")


def next_index(
    items: Sequence[Item],
    start: int,
    *,
    group: Callable[[Item], Any],
    logins: Callable[[Item], int],
    room: int,
) -> int:
    """The index (from `start`) of the case to run next: `items[start]`, unless it needs
    more logins than the budget has `room` for; then the first case of its group that
    needs none. With no such case, `items[start]` all the same: it waits for the window."""
    if start >= len(items) or logins(items[start]) <= room:
        return start
    first = group(items[start])
    for index in range(start + 1, len(items)):
        item = items[index]
        if group(item) != first:
            break
        if logins(item) == 0:
            return index
    return start
