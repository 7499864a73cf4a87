"""No import cycles in the package: every import at any depth (inside functions too) counts.

An import hidden inside a function still ties two modules together; it only moves the
failure from import time to call time. The graph here is built with `ast`, without
importing anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "xray"


def module_names(package: Path) -> dict[str, Path]:
    """Module name -> file, for every .py under `package` (a package is named by its __init__)."""
    root = package.parent
    names = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _resolve(current: str, is_package: bool, level: int, module: str | None) -> str:
    """The absolute name of `from <level dots><module> import ...` written in module `current`."""
    if level == 0:
        return module or ""
    base = current.split(".") if is_package else current.split(".")[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join(base + ([module] if module else []))


def imports_of(name: str, path: Path, modules: set[str]) -> set[str]:
    """The package's modules that `name` imports (at any depth); `from a import b` counts `a.b` when it is a module."""
    found: set[str] = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(name, is_package, node.level, node.module)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        for target in targets:
            # `import a.b.c` runs a, a.b and a.b.c; the deepest one that is ours is the edge that matters.
            parts = target.split(".")
            for i in range(len(parts), 0, -1):
                candidate = ".".join(parts[:i])
                if candidate in modules:
                    if candidate != name:
                        found.add(candidate)
                    break
    return found


def import_graph(package: Path) -> dict[str, set[str]]:
    names = module_names(package)
    modules = set(names)
    return {name: imports_of(name, path, modules) for name, path in names.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each strongly connected group of more than one module (Tarjan), with one cycle through it, sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(_cycle_in(graph, group) for group in groups)


def _cycle_in(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """One cycle inside a strongly connected group, from its smallest name back to it (shortest by BFS)."""
    start = min(group)
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & group):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [*reversed(path), start]
                if w not in parent:
                    parent[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"{sorted(group)} is not strongly connected")


def describe(cycles: list[list[str]]) -> str:
    return "\n".join(" -> ".join(c) for c in cycles)


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_detector_finds_cycles_hidden_in_functions_and_relative_imports(tmp_path: Path) -> None:
    package = _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg.b import thing\n",
        "pkg/b.py": "def f():\n    from . import c\n    return c\nthing = 1\n",
        "pkg/c.py": "import pkg.a\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/x.py": "def g():\n    from ..sub import y\n",
        "pkg/sub/y.py": "from pkg.sub.x import g\n",
        "pkg/free.py": "import os\nfrom pkg import a\n",
    })
    graph = import_graph(package)
    assert graph["pkg.b"] == {"pkg.c"}  # `from . import c`: c is a submodule, not a name of pkg
    assert graph["pkg.free"] == {"pkg.a"}
    cycles = find_cycles(graph)
    assert cycles == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"], ["pkg.sub.x", "pkg.sub.y", "pkg.sub.x"]]
    assert "pkg.a -> pkg.b -> pkg.c -> pkg.a" in describe(cycles)


def test_detector_passes_a_package_that_flows_one_way(tmp_path: Path) -> None:
    package = _write(tmp_path, {
        "pkg/__init__.py": "from pkg.top import run\n",
        "pkg/base.py": "X = 1\n",
        "pkg/mid.py": "from .base import X\n",
        "pkg/top.py": "def run():\n    from pkg import mid\n    import pkg.base\n",
    })
    assert find_cycles(import_graph(package)) == []


def test_the_package_has_no_import_cycles() -> None:
    cycles = find_cycles(import_graph(PACKAGE))
    assert not cycles, "import cycles:\n" + describe(cycles)


def test_sources_and_the_dataset_reader_have_no_cycles() -> None:
    """The cycles this branch removed stay removed (sources/files <-> sources/dicos)."""
    cycles = find_cycles(import_graph(PACKAGE))
    mine = [c for c in cycles if any(m.startswith(("xray.sources", "xray.data.format", "xray.cli")) for m in c)]
    assert not mine, "import cycles:\n" + describe(mine)
