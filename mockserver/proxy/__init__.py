"""Proxy mode: forward a front end's `/api` traffic to a real server, and judge it by the spec.

``cumulonimbus-mock proxy --upstream https://staging.example/api`` listens on loopback. Every
``/api`` request goes upstream as the client sent it, and the answer comes back as it is
read, chunk by chunk. A copy of each exchange goes on a queue; a worker thread judges it
afterwards with the conformance suite's own traffic rules (``conformance/traffic.py``:
the same check ids and wording as the suite), so checking never delays an answer::

    proxy = Proxy(Upstream.parse("http://127.0.0.1:9000/api"))
    server = make_proxy_server(proxy, port=8000)   # /api forwarded, /_mock/ the dashboard
    proxy.checker.drain(1.0)
    proxy.checker.snapshot()["items"]              # the violations found so far

What the proxy changes, on purpose: the ``Host`` header names the upstream (a virtual
host could not answer otherwise); hop-by-hop headers (``Connection``, ``Keep-Alive``,
``Transfer-Encoding``...) belong to each connection and are not passed on; CORS is the
mock's (any origin, RateLimit-* exposed, preflights answered here with 204 and never sent
upstream), so a browser app can point at the proxy whatever the upstream allows. Nothing
is added: no ``X-Forwarded-For``, no ``Via``. An upstream that cannot be reached, or does
not answer within ``timeout`` seconds, gets the client a JSON ``502`` or ``504`` in the
API's error format, and the failure is recorded beside the violations.

The package's rooms: `upstream.py` (the server behind, its connections, what is passed
on), `forwarding.py` (the HTTP server and the request path), `judging.py` (the checker:
the only room that reads the suite's rules), `control.py` (the dashboard and
``/_mock/violations``), `report.py` (the suite's report of the traffic) and `cli.py`
(``cumulonimbus-mock proxy``).
"""

from .cli import main
from .forwarding import Proxy, ProxyServer, make_proxy_server
from .report import write_report
from .upstream import Upstream

__all__ = ["Proxy", "ProxyServer", "Upstream", "main", "make_proxy_server", "write_report"]
