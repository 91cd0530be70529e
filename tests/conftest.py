"""Fixtures: a fresh mock app per test (strict response validation on), a frozen clock,
and small helpers to log in and call the API."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from mockserver.app import create_app
from mockserver.clock import Clock
from mockserver.models import Backend

START = 1_790_000_000.0  # a fixed moment, so tests do not depend on the wall clock
_ips = itertools.count(1)


@pytest.fixture
def clock() -> Clock:
    return Clock(source=lambda: START)


@pytest.fixture
def app(clock: Clock) -> Iterator[Flask]:
    app = create_app({"STRICT_RESPONSES": True, "CLOCK": clock, "TESTING": True})
    yield app
    violations = app.extensions["cumulonimbus"].validator.violations
    assert not violations, f"responses that broke the spec: {violations}"


@pytest.fixture
def backend(app: Flask) -> Backend:
    return app.extensions["cumulonimbus"].backend  # type: ignore[no-any-return]


class Api:
    """A test client that speaks the API: each instance is one client IP."""

    def __init__(self, client: FlaskClient, clock: Clock, ip: str, pace: float = 0.4) -> None:
        self.client = client
        self.clock = clock
        self.ip = ip
        # Seconds the clock moves before each call, so that ordinary tests never trip the
        # burst limit (3 per second); rate-limit tests set it to 0.
        self.pace = pace

    def call(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> Any:
        self.clock.advance(self.pace)
        headers = {"X-Forwarded-For": self.ip, **kwargs.pop("headers", {})}
        if token is not None:
            headers["Authorization"] = token
        return self.client.open("/api" + path, method=method, headers=headers, **kwargs)

    def login(self, username: str = "alice", password: str = "password", **body: Any) -> str:
        response = self.call(
            "POST", "/login", json={"username": username, "password": password, **body}
        )
        assert response.status_code == 201, response.json
        return str(response.json["token"])

    def scoped(self, token: str, flags: int, name: str = "scoped", **body: Any) -> str:
        response = self.call(
            "POST",
            "/users/me/sessions",
            token,
            json={"name": name, "permissionFlags": flags, "password": "password", **body},
        )
        assert response.status_code == 201, response.json
        return str(response.json["token"])

    def fresh_ip(self) -> Api:
        """The same client from another address: new rate-limit buckets."""
        n = next(_ips)
        return Api(
            self.client, self.clock, f"10.{n // 62500 % 250}.{n // 250 % 250}.{n % 250}", self.pace
        )


@pytest.fixture
def api(app: Flask, clock: Clock) -> Api:
    return Api(app.test_client(), clock, f"192.0.2.{next(_ips) % 250}")


def assert_error(response: Any, status: int, code: str, message: str, **extra: Any) -> None:
    assert response.status_code == status, response.json
    assert response.json["code"] == code
    assert response.json["message"] == message
    for key, value in extra.items():
        assert response.json[key] == value
