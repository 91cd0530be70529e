"""`paging.*`: session lists. `count` is the total, `limit` and `offset` page
through it within their ranges, newest first.
"""

from __future__ import annotations

from typing import Any

from conformance.calls import Call
from conformance.context import Context
from conformance.exchange import Exchange
from conformance.failures import expect_error, fail
from conformance.registry import check
from conformance.spec import Operation


def _pages(op: Operation) -> bool:
    return op.param("limit") is not None and op.param("offset") is not None


def _paging_setup(ctx: Context, op: Operation, count: int = 3) -> tuple[Any, list[str]]:
    """A list call and `count` sessions of its subject, oldest first. The sessions are
    reused by the other paging checks while they last (sessions are scarce on real
    deployments: 4 new ones per 5 minutes)."""
    actor = ctx.staff_with_factor() if op.staff_only else ctx.account("user")
    subject = ctx.account("target") if op.staff_only else actor
    call = ctx.valid_call(op, actor, subject=subject)
    cache = ctx.paging_sessions
    created = cache.get(subject.username, [])
    if created:
        _, listed = _items(_list(ctx, call))
        if not set(created) <= set(listed):
            created = []
    if not created:
        for _ in range(count):
            created.append(ctx.disposable(subject).id)
            # Distinct creation times, so that "newest first" has one right answer.
            if ctx.target.control is not None:
                ctx.target.control.clock(advance=1.5)
            else:
                ctx.client.pause(1.1)
        cache[subject.username] = created
    return call, created


def _list(ctx: Context, call: Call, **query: Any) -> Exchange:
    return ctx.send(call.replace(query={**call.query, **query}))


def _items(exchange: Exchange) -> tuple[int, list[str]]:
    body = exchange.json if isinstance(exchange.json, dict) else {}
    items = body.get("items")
    if not isinstance(items, list):
        items = []
    return body.get("count", -1), [str(i.get("id")) for i in items if isinstance(i, dict)]


@check("paging.count", applies=_pages)
def paging_count(ctx: Context, op: Operation, variant: object) -> None:
    """`count` is the total number of sessions, not the page size, and grows with a new one."""
    call, created = _paging_setup(ctx, op)
    first = _list(ctx, call)
    count, ids = _items(first)
    if first.status != 200 or count != len(ids) or not set(created) <= set(ids):
        raise fail(
            op,
            "count is the total and the list holds every session",
            f"count == len(items), items include {created}",
            first,
        )
    small = _list(ctx, call, limit=1)
    small_count, _ = _items(small)
    if small_count != count:
        raise fail(
            op,
            "count is the total, whatever the page size",
            f"count {count} with limit=1",
            small,
        )


@check("paging.limit", applies=_pages)
def paging_limit(ctx: Context, op: Operation, variant: object) -> None:
    """`limit` caps the page (0 to 50); out of range is 400."""
    call, _ = _paging_setup(ctx, op)
    for limit in (1, 2, 0):
        page = _list(ctx, call, limit=limit)
        _, ids = _items(page)
        if page.status != 200 or len(ids) != limit:
            raise fail(
                op,
                f"limit={limit} returns {limit} items",
                f"200 with {limit} items",
                page,
            )
    for bad in (51, -1, "x"):
        page = _list(ctx, call, limit=bad)
        expect_error(
            op,
            f"limit={bad} is a bad request",
            page,
            400,
            "MISSING_FIELDS_ERROR",
            fields=lambda f: isinstance(f, list) and "limit" in f,
        )


@check("paging.offset", applies=_pages)
def paging_offset(ctx: Context, op: Operation, variant: object) -> None:
    """`offset` skips items of the same order; negative is 400."""
    call, _ = _paging_setup(ctx, op)
    _, full = _items(_list(ctx, call))
    for offset in (1, 2, len(full)):
        page = _list(ctx, call, offset=offset)
        _, ids = _items(page)
        if page.status != 200 or ids != full[offset : offset + 50]:
            raise fail(
                op,
                f"offset={offset} skips {offset} items",
                f"200 with items {full[offset : offset + 50]}",
                page,
            )
    page = _list(ctx, call, offset=-1)
    expect_error(
        op,
        "offset=-1 is a bad request",
        page,
        400,
        "MISSING_FIELDS_ERROR",
        fields=lambda f: isinstance(f, list) and "offset" in f,
    )


@check("paging.order", applies=_pages)
def paging_order(ctx: Context, op: Operation, variant: object) -> None:
    """Sessions are listed newest first."""
    call, created = _paging_setup(ctx, op)
    page = _list(ctx, call)
    _, ids = _items(page)
    mine = [i for i in ids if i in created]
    numeric = [int(i) for i in ids if isinstance(i, str) and i.isdigit()]
    if mine != list(reversed(created)) or numeric != sorted(numeric, reverse=True):
        raise fail(
            op,
            "the newest session comes first",
            f"{list(reversed(created))} in this order, ids descending",
            page,
        )
