"""The README's "Use it from a front end" snippet, run in Node against a served mock."""

from __future__ import annotations

import re
import subprocess

import pytest

from .conftest import ROOT, Mock, node_ready, require


def readme_snippet() -> str:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Use it from a front end.*?```js\n(.*?)```", text, re.S)
    assert block, "the README has a js block under 'Use it from a front end'"
    return block.group(1)


def test_the_readme_snippet_works(mock: Mock) -> None:
    ready, reason = node_ready()
    require(ready, reason)
    snippet = readme_snippet()
    assert "http://127.0.0.1:8000/api" in snippet
    # Fed on stdin from clients/js, the snippet's import resolves to the pinned client.
    finished = subprocess.run(
        ["node", "--input-type=module"],
        input=snippet.replace("http://127.0.0.1:8000/api", mock.api),
        cwd=ROOT / "clients/js",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.strip() == (
        "1 Unknown Browser on an Unknown OS { limit: 100, remaining: 99, reset: 60 }"
    )


@pytest.mark.parametrize("path", ["docs/dashboard.png", "docs/browser-app.png"])
def test_the_readme_screenshots_exist(path: str) -> None:
    assert f"]({path})" in (ROOT / "README.md").read_text()
    assert (ROOT / path).stat().st_size < 200_000
