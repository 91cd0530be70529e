"""The packages' layout stays as the README draws it: no module imports another that
(directly or not) imports it back, and neither package imports the other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("mockserver", "conformance")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path) -> set[str]:
    """The package's modules this file imports at run time, wherever in the file (an
    import inside a function closes a cycle too); imports for type checkers only do not."""
    module = _module_name(path)
    base = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for orelse in child.orelse:
                    visit(orelse)
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    parent = base.rsplit(".", child.level - 1)[0] if child.level > 1 else base
                    target = f"{parent}.{child.module}" if child.module else parent
                else:
                    target = child.module or ""
                found.add(target)
                # `from . import exceptions` imports a module, not a name.
                found.update(f"{target}.{alias.name}" for alias in child.names)
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        graph[name] = {t for t in _imports(path) if t in files and t != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return components


def test_no_import_cycle_inside_either_package() -> None:
    assert _cycles(_graph()) == []


# The one room allowed to join the two: the proxy package (issue 17) judges live traffic with
# the suite's own rules. The suite never imports the mock, without exception.
BRIDGES = {"mockserver": ("mockserver/proxy/",)}


@pytest.mark.parametrize(("package", "other"), [PACKAGES, PACKAGES[::-1]])
def test_neither_package_imports_the_other(package: str, other: str) -> None:
    importers = [
        str(path.relative_to(ROOT))
        for path in (ROOT / package).rglob("*.py")
        if any(t.split(".")[0] == other for t in _imports(path))
        and not str(path.relative_to(ROOT)).startswith(BRIDGES.get(package, ()))
    ]
    assert importers == []


def test_the_bridge_is_still_one() -> None:
    # Once the proxy stops needing the suite, the exception goes too.
    bridging = {
        str(path.relative_to(ROOT).parent) + "/"
        for path in (ROOT / "mockserver").rglob("*.py")
        if any(t.split(".")[0] == "conformance" for t in _imports(path))
    }
    assert bridging == set(BRIDGES["mockserver"])


def test_a_cycle_through_a_function_level_import_is_found() -> None:
    # The detector itself: app -> api at module level, api -> app inside a function.
    assert _cycles({"m.app": {"m.api"}, "m.api": {"m.app"}, "m.x": set()}) == [["m.api", "m.app"]]


def test_the_version_is_written_once_in_pyproject() -> None:
    import tomllib

    import conformance
    import mockserver

    with (ROOT / "pyproject.toml").open("rb") as handle:
        declared = tomllib.load(handle)["project"]["version"]
    assert mockserver.__version__ == conformance.__version__ == declared


def test_no_test_module_imports_another() -> None:
    # Shared helpers live in conftest.py, helpers.py or harness.py, never in a test module.
    offenders = [
        f"{path.relative_to(ROOT)} imports {target}"
        for path in sorted((ROOT / "tests").rglob("*.py"))
        for target in sorted(_imports(path))
        if target.startswith("tests.") and target.rpartition(".")[2].startswith("test_")
    ]
    assert offenders == []


def _readme_tree() -> set[str]:
    """The paths the README's Development tree draws: two spaces of indent per level, a
    folder ending in `/`, a line's names (before its description) separated by commas."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    development = readme[readme.index("## Development") :]
    block = development.split("```", 2)[1]
    paths: set[str] = set()
    folders: list[str] = []
    for line in block.splitlines():
        if not line.strip():
            continue
        depth = (len(line) - len(line.lstrip(" "))) // 2
        names = line.strip().split("  ", 1)[0].split(", ")
        del folders[depth:]
        for name in names:
            paths.add("".join(folders) + name)
        if names[-1].endswith("/"):
            folders.append(names[-1])
    return paths


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_the_readme_layout_names_every_module() -> None:
    drawn = _readme_tree()
    missing = [
        str(path.relative_to(ROOT))
        for package in PACKAGES
        for path in _modules(package)
        if path.name != "__init__.py" and str(path.relative_to(ROOT)) not in drawn
    ]
    assert missing == []


def test_the_readme_layout_names_no_module_that_is_gone() -> None:
    gone = [
        path
        for path in sorted(_readme_tree())
        if path.endswith(".py") and path.split("/")[0] in PACKAGES and not (ROOT / path).exists()
    ]
    assert gone == []


def test_the_readme_tree_is_read_as_drawn() -> None:
    # The parser itself: nesting, comma-separated names, a folder's own line.
    drawn = _readme_tree()
    assert {"mockserver/", "mockserver/cli.py", "mockserver/__main__.py"} <= drawn
    assert "conformance/checks/scope.py" in drawn


@pytest.mark.parametrize("package", PACKAGES)
def test_every_module_opens_with_what_it_owns(package: str) -> None:
    undocumented = [
        str(path.relative_to(ROOT))
        for path in _modules(package)
        if not ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert undocumented == []


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_is_over_about_500_lines(package: str) -> None:
    # One room per concern: a module that grows past this holds more than one.
    long = [
        f"{path.relative_to(ROOT)}: {n} lines"
        for path in _modules(package)
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > 520
    ]
    assert long == []
