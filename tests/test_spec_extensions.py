"""The spec's x- extensions are read one way: the mock and the suite both apply
openapi/extensions.schema.json and refuse, with the same message, a spec that breaks it."""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conformance.spec import SpecError as SuiteSpecError
from conformance.spec import parse_spec
from mockserver.spec import Spec, SpecError, load_document

ROOT = Path(__file__).resolve().parent.parent
Edit = Callable[[dict[str, Any]], None]


def _login(document: dict[str, Any]) -> dict[str, Any]:
    operation: dict[str, Any] = document["paths"]["/login"]["post"]
    return operation


BROKEN: dict[str, tuple[Edit, str]] = {
    "a policy left out": (
        lambda d: _login(d).pop("x-scope"),
        "paths./login.post: 'x-scope' is a required property",
    ),
    "a window that is not a number": (
        lambda d: _login(d)["x-rate-limit"].update(window="5m"),
        "paths./login.post.x-rate-limit.window: '5m' is not of type 'number'",
    ),
    "a route limiter without its route": (
        lambda d: _login(d)["x-rate-limit"].pop("route"),
        "paths./login.post.x-rate-limit: 'route' is a required property",
    ),
    "an unknown authentication": (
        lambda d: _login(d).update({"x-authentication": "optional"}),
        "paths./login.post.x-authentication: 'optional' is not one of",
    ),
    "no burst limit": (
        lambda d: d["components"]["x-rate-limits"].pop("burst"),
        "components.x-rate-limits: 'burst' is a required property",
    ),
    "an unknown kill switch": (
        lambda d: _login(d).update({"x-kill-switches": ["ACCOUNT_LGOIN"]}),
        "paths./login.post.x-kill-switches: unknown kill switch 'ACCOUNT_LGOIN'",
    ),
    "an unknown scope": (
        lambda d: d["paths"]["/users/me/sessions"]["get"].update({"x-scope": "SESSION_RAED"}),
        "paths./users/me/sessions.get.x-scope: unknown scope 'SESSION_RAED'",
    ),
}


def _broken(edit: Edit) -> dict[str, Any]:
    document = copy.deepcopy(load_document())
    edit(document)
    return document


@pytest.mark.parametrize(("edit", "message"), BROKEN.values(), ids=list(BROKEN))
def test_the_mock_refuses_a_spec_that_breaks_the_extension_rules(edit: Edit, message: str) -> None:
    with pytest.raises(SpecError, match=r"breaks extensions\.schema\.json") as refused:
        Spec(_broken(edit))
    assert message in str(refused.value)


@pytest.mark.parametrize(("edit", "message"), BROKEN.values(), ids=list(BROKEN))
def test_the_suite_refuses_a_spec_that_breaks_the_extension_rules(edit: Edit, message: str) -> None:
    with pytest.raises(SuiteSpecError, match=r"breaks extensions\.schema\.json") as refused:
        parse_spec(_broken(edit))
    assert message in str(refused.value)


def test_both_readers_read_a_fractional_window_as_the_same_number() -> None:
    document = _broken(lambda d: _login(d)["x-rate-limit"].update(window=2.5))
    mock = Spec(document).operations["login"].rate_limit
    suite = parse_spec(document).operation("login").rate_limit
    assert mock is not None and suite is not None
    assert (mock.limit, mock.window) == (suite.limit, suite.window) == (4, 2.5)


def test_both_packages_ship_the_extension_schema_beside_the_spec() -> None:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        pyproject = tomllib.load(handle)
    shipped = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert shipped["openapi"] == "mockserver/openapi"  # the whole folder, schema included
    assert shipped["openapi/extensions.schema.json"] == "conformance/openapi/extensions.schema.json"


def test_both_readers_read_every_policy_of_the_shipped_spec_alike() -> None:
    document = load_document()
    mock, suite = Spec(document), parse_spec(document)
    names = {number: name for name, number in mock.kill_switch_ids.items()}
    for op in suite.operations:
        ours = mock.operations[op.id]
        assert (op.method, op.path) == (ours.method, ours.path)
        assert (op.authentication, op.scope, op.staff_only, op.reverification) == (
            ours.authentication,
            ours.scope,
            ours.staff_only,
            ours.reverification,
        )
        assert op.kill_switches == tuple(names[n] for n in ours.kill_switches)
        limit, theirs = op.rate_limit, ours.rate_limit
        assert (limit is None) == (theirs is None), op.id
        if limit is not None and theirs is not None:
            assert (limit.limit, limit.window, limit.route) == (
                theirs.limit,
                theirs.window,
                theirs.route,
            )
            assert set(limit.ignore_statuses) == theirs.ignore_statuses
            assert set(limit.ignore_codes) == theirs.ignore_codes
            assert set(limit.literal_routes) == theirs.literal_routes
    assert suite.burst == (mock.burst_limit, mock.burst_window)
    assert suite.token_lifetimes == mock.lifetimes
    assert len(suite.operations) == len(mock.operations)
