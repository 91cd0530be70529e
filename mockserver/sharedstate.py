"""Where the mock's rules meet state that other processes share: the hooks `Backend` calls
where state is read or changed. In one process they do nothing; with ``--redis``,
:class:`mockserver.redisstore.RedisState` fills them in.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from .records import Session, User


class StateMoved(Exception):
    """The shared state a request's steps were judged on moved before its limits were
    taken: nothing was taken or written, and the request runs again on the current
    state (see RedisState.middleware). Never an answer: the API's handlers let it pass."""


class SharedState:
    """Where the rules meet state that other processes share; in one process, nowhere.

    :class:`mockserver.redisstore.RedisState` fills these in: ``fresh`` reloads a user
    another worker changed, ``changing_user``/``changing_global`` make one change atomic
    on its own Redis keys, ``touched`` queues a session's new usedAt. The rules below
    call them at the points where state is read or changed, and stay unaware of Redis.
    """

    # What the API's handlers let pass instead of answering: a request that runs again,
    # and (RedisState) a Redis error, which the middleware answers as 503 for the whole
    # request, with nothing given back that it may not have taken.
    passes: tuple[type[Exception], ...] = (StateMoved,)

    def current(self) -> None:
        """Before the operation runs, and before an answer that a step refused: what the
        steps read must be known current by then (Redis checks it with the limits)."""

    def fresh(self, user: User) -> None:
        """Before reading ``user``'s sessions or codes."""

    def fresh_used(self, user: User, session: Session) -> None:
        """Before showing ``session``'s usedAt."""

    def touched(self, user: User, session: Session) -> None:
        """``session`` was just used."""

    @contextmanager
    def changing_user(self, user: User) -> Iterator[None]:
        yield

    @contextmanager
    def changing_global(self) -> Iterator[None]:
        """Around a change of the users list, the kill switches, the key or the clock."""
        yield

    def added(self, user: User) -> None:
        pass

    def deleted(self, user: User) -> None:
        pass

    def wiped(self) -> None:
        """Everything was reset."""
