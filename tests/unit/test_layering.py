"""The package's imports run one way: interfaces -> analysis -> flows -> engines -> vision and
storage -> core, each package importing only from packages below it or from itself, with no
circle between modules; and infra/ imports nothing of the runtime. Read from the source with
``ast`` (imports inside functions count too), so nothing is imported to check it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "layers" / "facerec"
# A package may import from packages of a lower rank and from itself.
RANKS = {"core": 0, "vision": 1, "storage": 1, "engines": 2, "flows": 3, "analysis": 4}
RANKS["interfaces"] = 5
TOP = 6  # facerec/__init__.py and __main__.py


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """The facerec modules ``path`` imports (``from facerec.x import y`` counts as x.y when
    that is a module, else x)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        found |= {name for name in names if name.split(".")[0] == "facerec"}
    return found


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}
GRAPH = {
    name: {imported for imported in imports_of(path) if imported in MODULES} - {name}
    for name, path in MODULES.items()
}


def rank(module: str) -> int:
    parts = module.split(".")
    return RANKS[parts[1]] if len(parts) > 2 or parts[1] in RANKS else TOP


def package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or parts[1] in RANKS else "facerec"


def test_every_module_belongs_to_a_layer():
    loose = [name for name in MODULES if name.count(".") == 1 and package(name) == "facerec"]
    assert sorted(loose) == ["facerec.__main__"]


def upward(graph: dict[str, set[str]], module: str) -> list[str]:
    """What ``module`` imports from another package of its own rank or above."""
    return sorted(
        imported
        for imported in graph[module]
        if package(imported) != package(module) and rank(imported) >= rank(module)
    )


def circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (its modules in order, the first repeated), or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for imported in sorted(graph[module]):
            if state.get(imported) == 1:
                return [*path[path.index(imported) :], imported]
            if imported not in state and (found := visit(imported)):
                return found
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (found := visit(module)):
            return found
    return None


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down_or_stay_in_the_package(module):
    assert upward(GRAPH, module) == [], f"{module} imports from its own layer or above"


def test_no_import_circle():
    assert circle(GRAPH) is None


def test_the_checks_find_a_planted_circle_and_upward_import(tmp_path):
    planted = tmp_path / "m.py"
    planted.write_text(
        "from facerec.interfaces.http import ApiError\n"
        "def later():\n    import facerec.core.errors\n"
    )
    assert imports_of(planted) == {
        "facerec.interfaces.http",
        "facerec.interfaces.http.ApiError",
        "facerec.core.errors",
    }
    graph = {
        "facerec.flows.enrol": {"facerec.interfaces.cli", "facerec.core.errors"},
        "facerec.interfaces.cli": {"facerec.flows.enrol"},
        "facerec.core.errors": set(),
    }
    assert upward(graph, "facerec.flows.enrol") == ["facerec.interfaces.cli"]
    assert upward(graph, "facerec.interfaces.cli") == []
    assert circle(graph) == ["facerec.flows.enrol", "facerec.interfaces.cli", "facerec.flows.enrol"]
