"""The HTTP side of the suite: a paced `requests` client that records every exchange.

A real deployment enforces rate limits (3 requests per second per bucket, 100 per
minute per client and user, 4 logins per 5 minutes), so the client paces itself per
(route, identity) and per identity, keeps to the login budget and backs off on 429.
Against this project's mock, it instead gives every request its own `X-Forwarded-For`
address (fresh buckets), unless a test pins one::

    client = Client("http://127.0.0.1:8000/api", rotate_ips=True)
    exchange = client.request("GET", "/users/me/sessions", token=token, route="/users/me/sessions")
    exchange.status, exchange.json, exchange.curl()
"""

from __future__ import annotations

import functools
import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import requests

from conformance.exchange import NO_BODY, Exchange, TargetUnreachable, token_claims
from conformance.pacing import BucketState, Ledger, Pacer, Sent, WindowKey, progress
from conformance.redact import Redactor

if TYPE_CHECKING:
    from conformance.spec import Operation, RateLimit


USER_AGENT = "cumulonimbus-conformance/1 (python-requests)"
# A generated request that would wait longer than this for its route's budget is not
# sent on a deployment (see `Client.budget_spent_for`).
UNSENT_AFTER_SECONDS = 10.0


@functools.cache
def _template(route: str) -> re.Pattern[str]:
    """A route template (`/users/me/sessions/{sid}`) as a pattern of the paths it routes."""
    parts = re.split(r"(\{[^}/]+\})", route)
    return re.compile("".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts))


def _ips() -> Iterator[str]:
    for n in itertools.count(1):
        yield f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


class Client:
    """Sends API requests; paces them on real targets, isolates them on the mock."""

    def __init__(
        self,
        base_url: str,
        *,
        rotate_ips: bool = False,
        timeout: float = 15.0,
        burst: tuple[int, float] = (3, 1.0),
        global_limit: tuple[int, float] = (100, 60.0),
        route_limits: dict[str, RateLimit] | None = None,
        passes_route_limiter: Callable[[str, int, str | None], bool] | None = None,
        on_rate_limited: Callable[[float], None] | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        self.rotate_ips = rotate_ips
        self.timeout = timeout
        # A little wider than the server's window: it stamps requests when they arrive.
        self.burst = (burst[0], burst[1] + 0.15)
        # Stay a little under the real limits: other clients may share them.
        self.global_limit = (max(1, global_limit[0] - 5), global_limit[1])
        self.stated_global_limit = global_limit[0]
        # "METHOD /route/template" -> the operation's limiter, whose `route` names the
        # bucket it shares with the route's other methods.
        self.route_limits = route_limits or {}
        # (route label, status, code) -> whether the answer counted in the route bucket
        # rather than the global one; without it, the limit the answer shows decides.
        self.passes_route_limiter = passes_route_limiter
        self.ledger = Ledger()
        self.pacer = Pacer(ledger=self.ledger)
        self.exchanges: list[Exchange] = []
        self.good_tokens: set[str] = set()
        # ("route-limit", bucket route, identity) -> what the server last said of it.
        self.buckets: dict[WindowKey, BucketState] = {}
        # Seconds spent waiting for budgets and after 429s (the run's report says so).
        self.waited = 0.0
        self.rate_limited: list[Exchange] = []
        self._ips = _ips()
        self._ip_lock = threading.Lock()
        self.on_rate_limited = on_rate_limited or self._sleep_for
        self.redactor = redactor or Redactor()

    def pause(self, seconds: float, cause: str = "spacing within checks") -> None:
        """Really wait (a deployment's clock cannot be moved), and say so in the ledger."""
        self.ledger.add(cause, seconds)
        time.sleep(seconds)

    def fresh_ip(self) -> str:
        with self._ip_lock:
            return next(self._ips)

    @staticmethod
    def _sleep_for(seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if left > 5:
                progress(f"rate limited; waiting {left:.0f}s (RateLimit-Reset)")
            time.sleep(min(left, 10.0))

    def url(self, path: str, query: dict[str, Any] | None = None) -> str:
        url = self.base_url + path
        if query:
            url += "?" + urlencode(query)
        return url

    def _identities(self, token: str | None) -> list[str]:
        # A token the server has not yet accepted may make the request anonymous (bad
        # signature, revoked): count it against both identities until it is known good.
        who = token_claims(token).get("sub") or "token" if token else "anonymous"
        return [who] if token is None or token in self.good_tokens else [who, "anonymous"]

    def bucket_key(self, route: str, token: str | None, path: str = "") -> WindowKey | None:
        """The server's route bucket a request would count in: (route, identity), one per
        route whatever the method (`/users/me/sessions/me` is its own); None without a
        route limiter (then only the global bucket applies)."""
        limiter = self.route_limits.get(route)
        if limiter is None:
            return None
        bucket = limiter.bucket(path) if path else limiter.route
        return ("route-limit", bucket, self._identities(token)[0])

    def _shadowing_routes(self, path: str, bucket: str) -> list[str]:
        """The templated routes other than `bucket` that `path` also matches, where their
        limiter does not list it as a route of its own: a server that routes by the
        template counts it there. 5.3.0 answers `DELETE /users/me/sessions/all` with the
        `{sid}` route and counts it in that bucket; paced only as `/all`, it let fuzzed
        `GET /users/me/sessions/{sid}` requests after it into a burst 429. Such a path
        keeps both burst windows: a third of a second at most, never a burst."""
        if "{" in path:  # a template, not a concrete path
            return []
        trimmed = path.split("?")[0].rstrip("/") or "/"
        found: list[str] = []
        for limiter in self.route_limits.values():
            if (
                limiter.route != bucket
                and limiter.route not in found
                and trimmed not in limiter.literal_routes
                and _template(limiter.route).fullmatch(trimmed)
            ):
                found.append(limiter.route)
        return found

    def _keys(
        self, route: str, token: str | None, body: Any, path: str = ""
    ) -> list[tuple[WindowKey, int, float]]:
        identities = self._identities(token)
        limiter = self.route_limits.get(route)
        # The server's bucket: one per route, shared by its methods (`me` is its own). A
        # request of unknown path still shares its route's: keyed by the method's label,
        # generated GETs and the DELETE after them kept separate burst windows, and met
        # the server's burst 429 of their shared bucket.
        bucket = route if limiter is None else limiter.bucket(path) if path else limiter.route
        shadowed = path or (limiter.route if limiter is not None else "")
        buckets = [bucket, *self._shadowing_routes(shadowed, bucket)] if shadowed else [bucket]
        keys: list[tuple[WindowKey, int, float]] = []
        for identity in dict.fromkeys(identities):
            keys += [(("route", name, identity), self.burst[0], self.burst[1]) for name in buckets]
            keys += [
                (("identity", identity), self.burst[0], self.burst[1]),
                (("global", identity), self.global_limit[0], self.global_limit[1]),
            ]
        if limiter is not None:
            keys.append((("route-limit", bucket, identities[0]), limiter.limit, limiter.window))
        return keys

    def pace(
        self, route: str, token: str | None, body: Any, *, wait: bool = True, path: str = ""
    ) -> Sent:
        """Wait until a request fits every window it might count in (with wait=False, send
        at once); pass what this returns to `learn` with the answer.

        Nothing is counted before the answer, which says where the request counted: in
        its route's bucket, or in the global one (no route limiter, or refused before it:
        bad input, no session). Counting every request in every window made the client
        keep to 3 requests per second per user across all routes, and that pacing was
        most of a deployment run's time."""
        keys = [k for k in self._keys(route, token, body, path) if k[0][0] != "route-limit"]
        if not wait:
            return Sent(route, keys, time.monotonic())
        key = self.bucket_key(route, token, path)
        if key is not None:
            self._wait_for_budget(key, route)
        return Sent(route, keys, self.pacer.acquire(keys, route))

    def _count(self, sent: Sent, status: int, headers: Any, code: str | None) -> None:
        """Count an answered request in the windows the server counted it in."""
        skipped = headers is not None and headers.get("RateLimit-Skipped") == "true"
        limiter = self.route_limits.get(sent.route)
        in_route = limiter is not None and (
            self.passes_route_limiter is None or self.passes_route_limiter(sent.route, status, code)
        )
        # An uncounted answer (a 429, a login 404) still keeps its route's burst window:
        # that costs a third of a second at most, and never risks a burst.
        kinds = {"route"} if in_route or skipped or status == 429 else {"identity", "global"}
        if status >= 500 and limiter is not None and not skipped:
            # The spec says a 5xx is not counted, yet a server may count it all the same
            # (5.3.0 does, for logins: its burst series after malformed logins met a 429
            # at its first request). Uncertain: keep the route's burst window as well.
            kinds.add("route")
        for key, _limit, _window in sent.keys:
            if key[0] in kinds:
                self.pacer.record(key, sent.at)

    def bucket_delay(self, key: WindowKey | None, *, whole: bool = False, room: int = 0) -> float:
        """Seconds until a request may count in the route bucket `key` (with `whole`: until
        the bucket's window is over, so that the next request opens a new one).

        The server's own count (its last RateLimit-* headers for the bucket) decides: a
        bucket shared by methods with different limits has the limit of whichever request
        opened its window, which only the server knows. A bucket with no live window
        costs nothing to enter: the request opens a new one."""
        state = self.buckets.get(key) if key is not None else None
        now = time.monotonic()
        if state is None or now >= state.resets_at:
            return 0.0
        # Small budgets are used in full; large ones keep a margin for others.
        margin = 0 if state.limit <= 10 else 5
        if whole or state.remaining <= max(margin, room - 1):
            return state.resets_at - now
        return 0.0

    def live_bucket(self, key: WindowKey | None) -> BucketState | None:
        """The route bucket as the server last stated it, while that window lasts (None
        when no window is known to be live: the next request opens one)."""
        state = self.buckets.get(key) if key is not None else None
        return state if state is not None and time.monotonic() < state.resets_at else None

    def budget_spent_for(
        self, op: Operation, token: str | None, body: Any, *, has_body: bool = True
    ) -> bool:
        """On a deployment, whether a generated request would count in a route bucket
        with no budget left for a while (then it is better not sent: waiting out a login
        window per example is what made a full run take an hour). Requests the
        validation step refuses come before the route's limiter and cost nothing there,
        so those are always sent."""
        if self.rotate_ips or op.rate_limit is None:
            return False
        if op.refused_by_validation(body, has_body=has_body):
            return False
        return self.bucket_delay(self.bucket_key(op.label, token)) > UNSENT_AFTER_SECONDS

    def scarce(self, op: Operation) -> bool:
        """On a deployment, whether `op` counts in a small budget of the client's address
        that every account shares (4 logins per 5 minutes), which generated requests must
        not use up. Scoped sessions are not: the run opens their bucket at 100 a minute."""
        return (
            not self.rotate_ips
            and op.authentication == "forbidden"
            and op.rate_limit is not None
            and op.rate_limit.limit <= 10
        )

    def wait_for_full_budget(
        self, route: str, token: str | None, body: Any, path: str = ""
    ) -> None:
        """Wait until the route's bucket has no live window: the next request opens one."""
        key = self.bucket_key(route, token, path)
        self._wait_for_budget(key, route, whole=True)

    def wait_for_room(self, route: str, token: str | None, path: str, count: int) -> None:
        """Wait until the route's bucket can take `count` more counted requests in its live
        window, or has none (the next request opens one): for a series sent unpaced."""
        self._wait_for_budget(self.bucket_key(route, token, path), route, room=count)

    def _wait_for_budget(
        self, key: WindowKey | None, route: str, *, whole: bool = False, room: int = 0
    ) -> None:
        while (wait := self.bucket_delay(key, whole=whole, room=room)) > 0:
            if wait > 5:
                progress(f"waiting {wait:.0f}s for the {route} budget")
            self.waited += min(wait + 0.05, 10.0)
            self.ledger.add("route budgets", min(wait + 0.05, 10.0))
            self.pacer._sleep(min(wait + 0.05, 10.0))

    def _bucket_limits(self, bucket_route: str) -> set[str]:
        """Every limit a request on this route may show: each of its methods' own."""
        return {str(lim.limit) for lim in self.route_limits.values() if lim.route == bucket_route}

    def settle(self, route: str, token: str | None, body: Any) -> None:
        """Wait, without counting, until the burst windows are empty (for checks that
        send a series spaced at the burst rate: one earlier request still in a window
        would make the series' third the window's fourth)."""
        keys = [
            (key, 1, window)
            for key, _limit, window in self._keys(route, token, body)
            if key[0] in ("route", "identity")
        ]
        while (wait := self.pacer.delay(keys, time.monotonic())) > 0:
            self.ledger.add("spacing within checks", wait + 0.05)
            time.sleep(wait + 0.05)

    def learn(
        self,
        token: str | None,
        status: int,
        *,
        route: str | None = None,
        body: Any = None,
        headers: Any = None,
        path: str = "",
        code: str | None = None,
        sent: Sent | None = None,
    ) -> None:
        """What a response tells: the token works (or not), which windows the request
        counted in (`sent`, from `pace`), and the route bucket's state (limit, what is
        left, when its window ends) when the answer counted there."""
        if sent is not None:
            self._count(sent, status, headers, code)
        if token is not None:
            if status == 401:
                self.good_tokens.discard(token)
            elif status != 429:
                self.good_tokens.add(token)
        limiter = self.route_limits.get(route or "")
        if limiter is None or headers is None:
            return
        limit, remaining = headers.get("RateLimit-Limit"), headers.get("RateLimit-Remaining")
        reset = str(headers.get("RateLimit-Reset", ""))
        if not (str(limit).isdigit() and str(remaining).isdigit() and reset.isdigit()):
            return
        skipped = headers.get("RateLimit-Skipped") == "true"
        standard = status == 429 and headers.get("RateLimit-Reason") == "standard"
        if skipped and not standard:
            return
        # Counted in the route's bucket, whichever of its methods opened the window (and
        # so set the limit it shows); a global-bucket answer shows the global limit.
        if str(limit) not in self._bucket_limits(limiter.route):
            return
        # A limit only the route has shows the answer counted there, whatever the spec
        # says of its status: 5.3.0 counts the 500 of a login with `{}` in the login
        # bucket, and a client that did not believe it spent logins it did not know of.
        own_limit = str(limit) != str(self.stated_global_limit)
        if (
            not standard
            and not own_limit
            and self.passes_route_limiter is not None
            and not self.passes_route_limiter(route or "", status, code)
        ):
            return
        key = self.bucket_key(route or "", token, path)
        assert key is not None
        if not standard:
            self.ledger.counted[key[1]] += 1
        self.buckets[key] = BucketState(
            int(limit), 0 if standard else int(remaining), time.monotonic() + int(reset) + 0.5
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        query: dict[str, Any] | None = None,
        json_body: Any = NO_BODY,
        data: str | None = None,
        headers: dict[str, str] | None = None,
        route: str | None = None,
        ip: str | None = None,
        retry_rate_limited: bool = True,
        pace: bool = True,
    ) -> Exchange:
        """Send one request. `ip` pins X-Forwarded-For (mock only); `route` keys the pacing."""
        send_headers: dict[str, str] = {}
        if token is not None:
            send_headers["Authorization"] = token
        body: str | None = data
        if json_body is not NO_BODY:
            body = json.dumps(json_body)
            send_headers["Content-Type"] = "application/json"
        elif data is not None:
            send_headers["Content-Type"] = "application/json"
        if self.rotate_ips:
            send_headers["X-Forwarded-For"] = ip or self.fresh_ip()
        send_headers.update(headers or {})
        url = self.url(path, query)
        for _attempt in range(5):
            sent = (
                None
                if self.rotate_ips
                else self.pace(f"{method} {route or path}", token, json_body, wait=pace, path=path)
            )
            started = time.monotonic()
            try:
                response = self.session.request(
                    method, url, headers=send_headers, data=body, timeout=self.timeout
                )
            except requests.RequestException as exc:
                raise TargetUnreachable(f"{method} {url}: {exc}") from exc
            finally:
                self.ledger.add("requests", time.monotonic() - started)
            self.ledger.sent[self._identities(token)[0]] += 1
            prepared = {
                name: value.decode() if isinstance(value, bytes) else value
                for name, value in response.request.headers.items()
            }
            exchange = Exchange(
                method=method,
                url=url,
                request_headers=prepared,
                request_body=body,
                status=response.status_code,
                headers=response.headers,
                text=response.text,
                redactor=self.redactor,
            )
            self.redactor.learn(response.text)
            self.exchanges.append(exchange)
            self.learn(
                token,
                response.status_code,
                route=f"{method} {route or path}",
                body=json_body,
                headers=response.headers,
                path=path,
                code=exchange.code,
                sent=sent,
            )
            if response.status_code != 429 or not retry_rate_limited:
                return exchange
            # A 429 the client did not ask for: the plan was wrong (or others share the
            # budget); the run's summary counts them.
            self.rate_limited.append(exchange)
            reset = response.headers.get("RateLimit-Reset", "1")
            pause = float(reset) + 0.1 if reset.isdigit() else 1.0
            self.waited += pause
            self.ledger.add("429 back-off", pause)
            self.on_rate_limited(pause)
        return exchange
