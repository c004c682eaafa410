"""The shape of the code (../shared/DESIGN.md): ``spaces`` -> ``raynas``, ``trainables`` ->
``raynas``, ``spaces``; inside ``raynas`` only the CLI and the registry reach ``spaces`` or
``trainables``; no import cycle crosses packages; results are readable without Ray.

The import graph is read from the source (every ``import``, at module level or inside a
function), so a lazy import counts as much as an eager one."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("raynas", "trainables", "spaces")
#: the only modules under raynas/ that may name spaces or trainables (through the registry)
MAY_REACH_UP = ("raynas.cli", "raynas.registry")


def _modules() -> Dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _imports(path: Path, name: str, known: Set[str]) -> Set[str]:
    """Modules of the project that ``path`` imports (``from a import b`` counts ``a`` and, if it
    is a module, ``a.b``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: None if path.name == "__init__.py" else -1]
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return {m for m in found if m in known and m != name}


def import_graph() -> Dict[str, Set[str]]:
    modules = _modules()
    return {name: _imports(path, name, set(modules)) for name, path in modules.items()}


def _cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    out: List[List[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def _package(module: str, graph: Dict[str, Set[str]]) -> str:
    """The package a module belongs to (a package's ``__init__`` belongs to itself)."""
    if any(other.startswith(module + ".") for other in graph):
        return module
    return module.rpartition(".")[0] or module


def test_the_core_never_imports_spaces_or_trainables():
    graph = import_graph()
    offending = sorted(f"{module} imports {target}" for module, targets in graph.items() for target in targets
                       if module.split(".")[0] == "raynas" and not module.startswith(MAY_REACH_UP)
                       and target.split(".")[0] in ("spaces", "trainables"))
    assert not offending, "raynas/ reaches up (go through raynas.registry):\n" + "\n".join(offending)


def test_spaces_never_import_trainables():
    graph = import_graph()
    assert not [(m, t) for m, ts in graph.items() for t in ts
                if m.split(".")[0] == "spaces" and t.split(".")[0] == "trainables"]


def test_no_import_cycle_crosses_packages():
    graph = import_graph()
    crossing = [c for c in _cycles(graph) if len({_package(m, graph) for m in c}) > 1]
    assert not crossing, f"import cycles across packages: {crossing}"


def test_the_checker_sees_a_cycle_and_a_reach_up():
    """The checks above can fail: a graph with the cycles and the import the issue removed."""
    graph = {"raynas.differentiable.sweep": {"trainables.darts"}, "trainables.darts": {"raynas.differentiable.sweep"},
             "raynas.resume": {"raynas.searchers.base"}, "raynas.searchers.base": {"raynas.resume"},
             "raynas.searchers": set(), "raynas.differentiable": set(), "raynas": set(), "trainables": set()}
    assert sorted(_cycles(graph)) == [["raynas.differentiable.sweep", "trainables.darts"],
                                      ["raynas.resume", "raynas.searchers.base"]]
    assert {_package(m, graph) for m in ["raynas.resume", "raynas.searchers.base"]} == {"raynas", "raynas.searchers"}


def test_results_are_read_without_importing_ray(tmp_path):
    import pandas as pd

    from raynas.results import RESULTS_FILE, write_search_meta

    pd.DataFrame({"order": [0, 1], "arch_id": ["a", "b"], "arch": ['{"x": 1}', '{"x": 2}'], "error": [None, None],
                  "accuracy": [1.0, 2.0]}).to_parquet(tmp_path / RESULTS_FILE)
    write_search_meta(tmp_path, {"objectives": ["accuracy:max"]})
    code = ("import sys; from raynas.results import SearchResult; r = SearchResult.load(sys.argv[1]); "
            "print(r.best()['arch_id'], len(r), sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True,
                         cwd=ROOT)
    assert out.stdout.split() == ["b", "2", "[]"], out.stderr[-2000:]
