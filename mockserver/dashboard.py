"""The dashboard at ``/_mock/`` and the API reference at ``/_mock/docs``, for people.

Both are static pages from ``mockserver/static/``: the dashboard reads and steers the mock
only through the control API's JSON endpoints (so it needs the ``X-Mock-Token`` that
``--control-token`` asks for, like any other caller), and the reference is Swagger UI,
vendored, rendering the packaged spec served at ``/_mock/openapi.yaml``::

    app = create_app()
    app.test_client().get("/_mock/docs")  # Swagger UI for openapi/sessions.yaml

The pages hold no state, so they are served without the token; everything they show or
change goes through endpoints that check it.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, send_from_directory

from .spec import spec_dir

STATIC = Path(__file__).resolve().parent / "static"
SPECS = {"openapi.yaml": "sessions.yaml", "control.yaml": "control.yaml"}

blueprint = Blueprint(
    "dashboard",
    __name__,
    url_prefix="/_mock",
    static_folder="static",
    static_url_path="/static",
)


@blueprint.route("/", methods=["GET"])  # /_mock redirects here; assets load relative to it
def dashboard() -> Response:
    return send_from_directory(STATIC / "dashboard", "index.html")


@blueprint.route("/docs", methods=["GET"])
def docs() -> Response:
    return send_from_directory(STATIC / "dashboard", "docs.html")


@blueprint.route("/<any(openapi.yaml, control.yaml):name>", methods=["GET"])
def spec_file(name: str) -> Response:
    return send_from_directory(spec_dir(), SPECS[name], mimetype="application/yaml")
