"""The packages' layout stays as the README draws it: no module imports another that
(directly or not) imports it back, and neither package imports the other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("mockserver", "conformance")
# issue 16: conformance split pending. The check registry imports the check modules, which
# import the registry to register themselves (and policy_checks imports the context, which
# imports the registry). These two edges are allowed until the split; any other cycle fails.
KNOWN_CYCLE_EDGES = frozenset(
    {
        ("conformance.registry", "conformance.policy_checks"),
        ("conformance.registry", "conformance.response_checks"),
    }
)


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
    graph = _graph()
    for importer, imported in KNOWN_CYCLE_EDGES:
        graph[importer].discard(imported)
    assert _cycles(graph) == []


def test_the_known_cycle_edges_still_exist() -> None:
    # Once the conformance split removes one, it must leave the allowlist too.
    graph = _graph()
    assert [edge for edge in sorted(KNOWN_CYCLE_EDGES) if edge[1] not in graph[edge[0]]] == []


# The one module allowed to join the two: the proxy (issue 17) judges live traffic with the
# suite's own rules. It belongs in a package of its own (issue 16 follow-up), after which
# this goes. The suite never imports the mock, without exception.
BRIDGES = {"mockserver": frozenset({"proxy.py"})}


@pytest.mark.parametrize(("package", "other"), [PACKAGES, PACKAGES[::-1]])
def test_neither_package_imports_the_other(package: str, other: str) -> None:
    importers = [
        path.name
        for path in (ROOT / package).rglob("*.py")
        if any(t.split(".")[0] == other for t in _imports(path))
        and path.name not in BRIDGES.get(package, frozenset())
    ]
    assert importers == []


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


def test_the_readme_layout_names_every_module() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = readme[readme.index("## Development") :]
    missing = [
        f"{package}/{path.name}"
        for package in PACKAGES
        for path in sorted((ROOT / package).glob("*.py"))
        if path.name != "__init__.py" and path.name not in layout
    ]
    assert missing == []


@pytest.mark.parametrize("package", PACKAGES)
def test_every_module_opens_with_what_it_owns(package: str) -> None:
    undocumented = [
        path.name
        for path in sorted((ROOT / package).glob("*.py"))
        if not ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert undocumented == []
