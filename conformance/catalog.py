"""Every check of the suite, in the order the cases and the summary list them: the response
groups first, then the scenario groups, each module's checks in the order it defines them.

Importing a check module registers its checks. The registry imports no check and every
check imports the registry, so this module, which no check imports, is where they meet::

    for chk in all_checks(): ...
"""

from __future__ import annotations

from conformance.checks import (
    auth,
    body,
    bulk,
    delete_all,
    errors,
    headers,
    ids,
    killswitch,
    paging,
    ratelimit,
    reverify,
    routing,
    schema,
    scope,
    staff,
    token,
)
from conformance.registry import REGISTRY, Check

MODULES = (
    schema,
    headers,
    errors,
    auth,
    scope,
    staff,
    reverify,
    killswitch,
    ratelimit,
    token,
    paging,
    bulk,
    delete_all,
    ids,
    body,
    routing,
)


def all_checks() -> list[Check]:
    rank = {module.__name__: n for n, module in enumerate(MODULES)}
    return sorted(REGISTRY.values(), key=lambda chk: rank[chk.func.__module__])
