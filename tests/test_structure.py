"""The shape of the code: no import cycle between mcbench's modules, and the foundations (`mcbench.base`) a leaf.

Every import of an mcbench module counts, those inside functions included (an import moved into a function
hides a cycle from Python, not from the design). Modules are named as they import: pyproject.toml's package-dir
maps `optimizer/` to `mcbench.optimizer` and so on.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[1]
BASE = "mcbench.base"


def _folders() -> dict[str, str]:
    """import name of a package -> its folder, `mcbench` itself included."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    return {"mcbench": "mcbench", **setuptools["package-dir"]}


def _modules() -> dict[str, Path]:
    out = {}
    for package, folder in _folders().items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            name = ".".join([package, *parts])
            out.setdefault(name, path)  # mcbench/ does not hold the mapped folders, so no name comes twice
    return out


def _imported(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The mcbench modules a file imports anywhere in it (absolute and relative imports; `from pkg import mod`)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    named = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            named |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            named.add(base)
            named |= {f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules}
    out = set()
    for module in named:
        while module and module not in modules:  # `mcbench.x.y.attr` -> the module that holds it
            module = module.rpartition(".")[0]
        if module and module != name:
            out.add(module)
    return out


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imported(path, name, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a path that starts and ends at the same module, or None (depth first, no recursion)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if start in state:
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_the_walk_sees_imports_inside_functions_and_finds_a_cycle():
    graph = import_graph()
    assert "mcbench.base.errors" in graph["mcbench.optimizer.intake"]  # a top-level import
    assert "mcbench.optimizer.intake_torch" in graph["mcbench.optimizer.targets"]  # one inside a method
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_between_mcbench_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_foundations_import_nothing_else_of_mcbench():
    graph = import_graph()
    base = {name for name in graph if name == BASE or name.startswith(BASE + ".")}
    assert {"mcbench.base.errors", "mcbench.base.settings", "mcbench.base.imports", "mcbench.base.text"} <= base
    for name in sorted(base):
        outside = sorted(m for m in graph[name] if m not in base)
        assert not outside, f"{name} imports {outside}"


def test_the_packages_are_layered():
    """reports reads results only, optimizer knows no measurement, bench no app: each imports the foundations and
    the layers below it (mcbench -> reports, bench -> optimizer -> base)."""
    allowed = {"mcbench.reports": {"mcbench.reports"}, "mcbench.optimizer": {"mcbench.optimizer"},
               "mcbench.bench": {"mcbench.bench", "mcbench.optimizer", "mcbench.reports"}}
    for name, imported in import_graph().items():
        layer = next((p for p in allowed if name == p or name.startswith(p + ".")), None)
        if layer is None:
            continue
        wrong = sorted(m for m in imported
                       if not m.startswith(BASE) and not any(m == a or m.startswith(a + ".") for a in allowed[layer]))
        assert not wrong, f"{name} imports {wrong}"


MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 60  # the house's middle scale (docs/development.md)


def test_no_product_module_over_400_lines_and_no_function_over_60():
    """A module that outgrows one job, or a function that outgrows one screen, fails here with its size."""
    long_modules, long_functions = [], []
    for name, path in _modules().items():
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > MAX_MODULE_LINES:
            long_modules.append(f"{name} ({text.count(chr(10))} lines)")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long_functions.append(f"{name}.{node.name} ({length} lines)")
    assert not long_modules and not long_functions, f"too long: {', '.join(long_modules + long_functions)}"
