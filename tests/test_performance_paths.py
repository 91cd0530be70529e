"""The mock's fast paths give the same answers as the slow ones they stand in for.

Speed is measured by ``benchmarks/run.py``, never here: these tests only hold each
shortcut to its reference (openapi-core's request validation, a fresh ES256 check)
and check that what is remembered or pruned never changes an answer.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import Headers, MultiDict

from mockserver.clock import Clock
from mockserver.models import Backend
from mockserver.records import SeedUser
from mockserver.spec import Operation, Spec, load_spec
from mockserver.tokens import TokenSigner
from mockserver.validation import SpecValidator

SPEC = load_spec()
VALIDATOR = SpecValidator(SPEC.document)
WITH_BODY = [op for op in SPEC.operations.values() if op.has_body]
WITH_QUERY = [op for op in SPEC.operations.values() if op.query_params]
EXAMPLE_ARGS = {"uid": "1647015028626", "sid": "1687067614", "id": "4"}
FEW = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def concrete_path(op: Operation) -> str:
    path = op.path
    for name, value in EXAMPLE_ARGS.items():
        path = path.replace("{" + name + "}", value)
    return "/api" + path


def property_names(schema: Any, seen: set[str] | None = None) -> set[str]:
    """Every property name the schema mentions, through $refs and alternatives."""
    seen = set() if seen is None else seen
    if isinstance(schema, dict):
        if "$ref" in schema:
            if schema["$ref"] in seen:
                return set()
            seen.add(schema["$ref"])
            return property_names(SPEC.resolve(schema), seen)
        names = set(schema.get("properties", {}))
        for value in schema.values():
            names |= property_names(value, seen)
        return names
    if isinstance(schema, list):
        return set().union(*(property_names(item, seen) for item in schema)) if schema else set()
    return set()


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**40), max_value=2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | st.sampled_from(["me", "1687067614", "totp", "backup", "password", "a" * 65]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)


def bodies(op: Operation) -> st.SearchStrategy[dict[str, Any]]:
    schema = op.raw["requestBody"]["content"]["application/json"]["schema"]
    names = [*sorted(property_names(schema)), "unknown"]
    second_factor = st.fixed_dictionaries(
        {},
        optional={"token": json_values, "type": json_values, "code": json_values},
    )
    value = json_values | second_factor | st.lists(st.text(max_size=12), max_size=60)
    return st.dictionaries(st.sampled_from(names), value, max_size=len(names))


@pytest.mark.parametrize("op", WITH_BODY, ids=lambda op: op.operation_id)
@FEW
@given(data=st.data())
def test_body_validation_agrees_with_openapi_core(op: Operation, data: st.DataObject) -> None:
    body = data.draw(bodies(op))
    args = (op, concrete_path(op), MultiDict(), Headers(), body)
    expected = VALIDATOR.reference_fields(*args)
    assert VALIDATOR.request_fields(*args) == expected
    assert VALIDATOR.request_fields(*args) == expected  # the remembered answer, too


VALID_BODIES = [
    ("login", {"username": "alice", "password": "password"}),
    ("login", {"username": "alice", "password": "password", "rememberMe": True}),
    ("login", {"2fa": {"token": "a.b.c", "type": "totp", "code": "123456"}}),
    ("login", {"2fa": {"token": "a.b.c", "type": "totp"}, "rememberMe": False}),
    ("createScopedSession", {"name": "ci", "permissionFlags": 2, "password": "password"}),
    ("createScopedSession", {"name": "ci", "permissionFlags": "2", "longLived": True}),
    ("deleteSelfSessions", {"ids": ["me", "1687067614"]}),
    ("deleteUserSessions", {"ids": []}),
    ("enableKillSwitch", {"password": "password"}),
    ("deleteAllUserSessions", {"2fa": {"token": "a.b.c", "type": "backup", "code": "x"}}),
]


@pytest.mark.parametrize(
    ("operation_id", "body"),
    VALID_BODIES,
    ids=[f"{o}-{i}" for i, (o, _) in enumerate(VALID_BODIES)],
)
def test_body_validation_agrees_on_near_valid_bodies(operation_id: str, body: Any) -> None:
    op = SPEC.operations[operation_id]
    args = (op, concrete_path(op), MultiDict(), Headers(), body)
    assert VALIDATOR.request_fields(*args) == VALIDATOR.reference_fields(*args)


SAME_SHAPE = [
    # Bodies remembered by their fields' names and JSON types: any values of those types.
    ("login", {"username": "alice", "password": "password"}, {"username": "", "password": " "}),
    ("login", {"username": 1, "password": "x"}, {"username": 2.0, "password": "y"}),
    ("login", {"username": "a", "rememberMe": 1.5}, {"username": "b", "rememberMe": 2.5}),
    # Another type is another shape.
    ("login", {"username": "alice", "password": "x"}, {"username": ["alice"], "password": "x"}),
    ("login", {"username": "alice", "rememberMe": True}, {"username": "alice", "rememberMe": 1}),
    # Values that matter: never answered from what another body got.
    (
        "createScopedSession",
        {"name": "a", "permissionFlags": 2},
        {"name": "a", "permissionFlags": -1},
    ),
    ("login", {"2fa": {"type": "totp", "code": "1"}}, {"2fa": {"type": "nope", "code": "1"}}),
]


@pytest.mark.parametrize(
    ("operation_id", "first", "second"),
    SAME_SHAPE,
    ids=[f"{o}-{i}" for i, (o, _, _) in enumerate(SAME_SHAPE)],
)
def test_a_body_after_one_of_its_shape_agrees_with_openapi_core(
    operation_id: str, first: Any, second: Any
) -> None:
    validator = SpecValidator(SPEC.document)
    op = SPEC.operations[operation_id]
    validator.request_fields(op, concrete_path(op), MultiDict(), Headers(), first)
    args = (op, concrete_path(op), MultiDict(), Headers(), second)
    assert validator.request_fields(*args) == validator.reference_fields(*args)


def test_remembered_body_results_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    validator = SpecValidator(SPEC.document)
    monkeypatch.setattr("mockserver.validation.PARAM_RESULTS_KEPT", 3)
    op = SPEC.operations["login"]
    for kind in ("a", 1, 1.5, None, True, [], {}):
        body = {"username": kind, "password": "x"}
        validator.request_fields(op, concrete_path(op), MultiDict(), Headers(), body)
    assert len(validator._body_results) <= 3


query_values = st.lists(
    st.sampled_from(["0", "1", "50", "51", "-1", "", " 7", "+3", "1.5", "1e1", "abc", "true"])
    | st.text(max_size=6),
    max_size=3,
)


@pytest.mark.parametrize("op", WITH_QUERY, ids=lambda op: op.operation_id)
@FEW
@given(data=st.data())
def test_parameter_validation_agrees_with_openapi_core(op: Operation, data: st.DataObject) -> None:
    query: MultiDict[str, str] = MultiDict()
    for name in [*op.query_params, "unknown"]:
        for value in data.draw(query_values, label=name):
            query.add(name, value)
    path = concrete_path(op) + data.draw(st.sampled_from(["", "/"]), label="suffix")
    args = (op, path, query, Headers({"X-Session-Name": "x"}), {} if op.has_body else None)
    expected = VALIDATOR.reference_fields(*args)
    assert VALIDATOR.request_fields(*args) == expected
    assert VALIDATOR.request_fields(*args) == expected  # the remembered answer, too


def test_operations_without_query_parameters_never_report_one() -> None:
    op = SPEC.operations["getSelfSession"]
    query = MultiDict([("limit", "nope"), ("offset", "-1")])
    args = (op, concrete_path(op), query, Headers(), None)
    assert VALIDATOR.request_fields(*args) == VALIDATOR.reference_fields(*args) == []


def test_remembered_parameter_results_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    validator = SpecValidator(SPEC.document)
    monkeypatch.setattr("mockserver.validation.PARAM_RESULTS_KEPT", 3)
    op = SPEC.operations["getSelfSessions"]
    for limit in range(10):
        query = MultiDict([("limit", str(limit))])
        validator.request_fields(op, concrete_path(op), query, Headers(), None)
    assert len(validator._param_results) <= 3


# Tokens: a verified token is remembered, but the session store still decides.


@pytest.fixture
def store() -> tuple[Backend, Clock]:
    clock = Clock(source=lambda: 1_790_000_000.0)
    spec: Spec = SPEC
    return Backend(spec, clock, [SeedUser("alice", "password")]), clock


def test_remembered_token_of_a_deleted_session_is_refused(store: tuple[Backend, Clock]) -> None:
    backend, _ = store
    user = backend.login("alice", "password")
    token, session = backend.create_session(user, "a", False, None)
    assert backend.authenticate(token) is not None
    backend.delete_session(user, session.id)
    assert backend.authenticate(token) is None


def test_remembered_token_of_an_expired_session_is_refused(store: tuple[Backend, Clock]) -> None:
    backend, clock = store
    user = backend.login("alice", "password")
    token, session = backend.create_session(user, "a", False, None)
    assert backend.authenticate(token) is not None
    clock.advance(session.exp - clock.now())
    assert backend.authenticate(token) is None


def test_remembered_token_of_a_deleted_user_is_refused(store: tuple[Backend, Clock]) -> None:
    backend, _ = store
    user = backend.login("alice", "password")
    token, _ = backend.create_session(user, "a", False, None)
    assert backend.authenticate(token) is not None
    backend.delete_user("alice")
    assert backend.authenticate(token) is None


def test_remembered_claims_cannot_be_changed_by_a_caller() -> None:
    signer = TokenSigner.generate("localhost")
    token = signer.sign({"sub": "1", "iat": 1, "exp": 2})
    claims = signer.verify(token)
    assert claims is not None
    claims["sub"] = "2"
    assert signer.verify(token) == {"sub": "1", "iat": 1, "exp": 2, "iss": "localhost"}


def test_another_signers_token_is_refused_even_when_remembered_elsewhere() -> None:
    first, second = TokenSigner.generate("localhost"), TokenSigner.generate("localhost")
    token = first.sign({"sub": "1", "iat": 1, "exp": 2})
    assert first.verify(token) is not None
    assert second.verify(token) is None
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert first.verify(tampered) is None


def test_remembered_tokens_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mockserver.tokens.VERIFIED_KEPT", 3)
    signer = TokenSigner.generate("localhost")
    for i in range(10):
        assert signer.verify(signer.sign({"sub": "1", "iat": i, "exp": i + 1})) is not None
    assert len(signer._verified) <= 3


# Pruning: a few buckets and one user's sessions per request, never a walk over all.


def test_each_acquire_sweeps_a_few_stale_buckets(store: tuple[Backend, Clock]) -> None:
    from mockserver.ratelimit import SWEEP_PER_ACQUIRE

    backend, clock = store
    for i in range(50):
        backend.limiter.acquire((f"198.18.0.{i}", "*", None), SPEC.global_limit)
    clock.advance(120)  # past every window and burst
    backend.limiter.acquire(("198.18.9.9", "*", None), SPEC.global_limit)
    assert len(backend.limiter) == 50 - SWEEP_PER_ACQUIRE + 1


def test_live_buckets_survive_the_sweep(store: tuple[Backend, Clock]) -> None:
    backend, clock = store
    for i in range(5):
        backend.limiter.acquire((f"198.18.0.{i}", "*", None), SPEC.global_limit)
    clock.advance(2)  # past the burst, inside the minute
    for i in range(5, 10):
        backend.limiter.acquire((f"198.18.0.{i}", "*", None), SPEC.global_limit)
    assert len(backend.limiter) == 10
    assert backend.limiter.prune() == 0


def test_stale_buckets_stay_bounded_under_a_stream_of_new_addresses(
    store: tuple[Backend, Clock],
) -> None:
    backend, clock = store
    for i in range(3000):
        clock.advance(0.1)  # 300 s in all: each bucket is stale 60 s after it opened
        backend.limiter.acquire((f"198.18.{i // 256}.{i % 256}", "*", None), SPEC.global_limit)
    assert len(backend.limiter) < 2 * 600  # 600 opened in the last minute are live


def test_requests_sweep_expired_sessions_a_user_at_a_time(store: tuple[Backend, Clock]) -> None:
    backend, clock = store
    user = backend.login("alice", "password")
    _, session = backend.create_session(user, "short", False, None)
    clock.advance(session.exp - clock.now())  # the session's life is over
    backend.prune_a_little()
    assert session.id not in user.sessions


def test_api_requests_drive_pruning() -> None:
    from mockserver.app import create_app

    clock = Clock(source=lambda: 1_790_000_000.0)
    app = create_app({"CLOCK": clock, "TESTING": True})
    backend = app.extensions["cumulonimbus"].backend
    client = app.test_client()
    for i in range(20):
        client.get("/api/", headers={"X-Forwarded-For": f"198.18.1.{i}"})
    assert len(backend.limiter) == 20
    clock.advance(120)
    for _ in range(10):
        client.get("/api/", headers={"X-Forwarded-For": "198.18.2.1"})
        clock.advance(1)
    assert len(backend.limiter) == 1  # pruned by those requests, not by a listing


# Encoded bodies: a page's JSON is remembered by what wholly determines it.


def test_a_remembered_page_changes_with_its_sessions() -> None:
    from mockserver.app import create_app

    client = create_app({}).test_client()
    logins = [
        client.post(
            "/api/login",
            json={"username": "alice", "password": "password"},
            headers={"X-Forwarded-For": f"198.51.100.{n}", "User-Agent": agent},
        ).json["token"]
        for n, agent in enumerate(("curl/8.0", "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"))
    ]
    before = client.get("/api/users/me/sessions", headers={"Authorization": logins[0]}).json
    client.delete("/api/users/me/sessions/me", headers={"Authorization": logins[1]})
    after = client.get("/api/users/me/sessions", headers={"Authorization": logins[0]}).json
    assert (before["count"], after["count"]) == (2, 1)
    assert after["items"] == [i for i in before["items"] if i["id"] != before["items"][0]["id"]]


def test_remembered_encodings_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from mockserver import httpio

    monkeypatch.setattr(httpio, "ENCODED_KEPT", 3)
    monkeypatch.setattr(httpio, "_kept", {})
    for n in range(10):
        body = httpio.keyed(n, lambda n=n: {"n": n})
        assert httpio.encode(body) == f'{{"n":{n}}}'.encode()
        assert httpio.keyed(n, dict) is body  # built once, encoded once
    assert len(httpio._kept) <= 3


# Query strings and content types are parsed once per text, as werkzeug parses them.


def test_remembered_queries_and_mimetypes_are_werkzeugs_and_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from werkzeug.test import EnvironBuilder
    from werkzeug.wrappers import Request

    from mockserver import api

    monkeypatch.setattr(api, "PARSED_KEPT", 3)
    monkeypatch.setattr(api, "_queries", {})
    monkeypatch.setattr(api, "_mimetypes", {})
    queries = ["", "limit=50", "limit=5&offset=1&limit=7", "a=%ff&b", "x" * 300 + "=1"]
    types = ["", "application/json", "Application/JSON; charset=utf-8", "text/plain;q=1"]
    for _ in range(2):
        for query, content_type in zip(queries, [*types, "x/y"], strict=True):
            environ = EnvironBuilder(query_string=query, content_type=content_type).get_environ()
            fresh = Request(environ)
            assert api._args(Request(environ)) == fresh.args
            assert api._mimetype(environ) == fresh.mimetype
    assert len(api._queries) <= 3 and len(api._mimetypes) <= 3
    assert "x" * 300 + "=1" not in api._queries  # long texts are not kept


# A JSON reply's headers are finished in one step when nothing in them needs looking at.


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"RateLimit-Limit": "100", "RateLimit-Remaining": "99", "RateLimit-Reset": "60"},
        {"RateLimit-Skipped": "true", "Retry-After": "3"},
        {"cache-control": "private", "X-A": "1"},
        {"Access-Control-Allow-Origin": "https://x.test"},
        {"ACCESS-CONTROL-MAX-AGE": "5", "Content-Length": "999"},
        {"Vary": "Accept"},
    ],
)
@pytest.mark.parametrize("status", [200, 204, 404])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_plain_replies_are_finished_as_finish_headers_would(
    extra: dict[str, str], status: int, method: str
) -> None:
    from mockserver.api import ApiFastPath, Reply

    def sent(plain: bool) -> tuple[str, list[tuple[str, str]], list[bytes]]:
        reply = Reply.json(status, {"code": "X"}, extra)
        if not plain:
            reply.plain = False
        started: list[Any] = []
        body = ApiFastPath._send(reply, {"REQUEST_METHOD": method}, lambda *a: started.extend(a))
        return started[0], started[1], body

    assert sent(plain=True) == sent(plain=False)
