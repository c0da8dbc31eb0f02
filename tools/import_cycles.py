"""Fail when autopeft's modules import each other in a cycle, or against the layer order, counting
imports by name as well as ``import`` statements.

import-linter's layers contract (``[tool.importlinter]`` in ``pyproject.toml``) keeps ``import``
statements pointing down between packages. This check adds what it cannot see:

* cycles between modules of one package (it reads the same import graph, grimp, which counts
  imports inside functions and under ``TYPE_CHECKING``);
* imports by name: a string literal that names an autopeft module (``"autopeft.methods.lora"``, or
  ``"autopeft.search.samplers.mobo:MoboSampler"``) is how registries import lazily through
  ``importlib.import_module``, so each one counts as an import, for cycles and for the layers.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
_NAME = re.compile(r"^autopeft(\.\w+)+(:\w+)?$")


def import_graph(package: str = "autopeft") -> dict[str, set[str]]:
    """Module -> modules it imports: grimp's graph plus the modules named in string literals."""
    graph = grimp.build_graph(package)
    modules = set(graph.modules)
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in modules}
    for module, names in named_imports(modules).items():
        edges[module] |= names
    return edges


def named_imports(modules: set[str]) -> dict[str, set[str]]:
    """Module -> the autopeft modules its string literals name."""
    found: dict[str, set[str]] = {}
    for module in modules:
        path = _path_of(module)
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
                continue
            target = node.value.split(":")[0]
            # a module's own packages are imported before it anyway (and are named for resources)
            if _NAME.match(node.value) and target in modules and not _within(module, target):
                found.setdefault(module, set()).add(target)
    return found


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _path_of(module: str) -> Path:
    base = ROOT / module.replace(".", "/")
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module, each sorted."""
    modules = sorted(edges)
    ordered = {m: sorted(edges[m]) for m in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(root: str) -> None:  # iterative Tarjan, so deep graphs do not hit the recursion limit
        nonlocal counter
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            targets = ordered.get(node, [])
            if i < len(targets):
                work.append((node, i + 1))
                nxt = targets[i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])

    for module in modules:
        if module not in index:
            visit(module)
    return found


def layers() -> list[list[str]]:
    """The layer order of ``pyproject.toml``, top first; ``a | b`` are independent siblings."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contract = config["tool"]["importlinter"]["contracts"][0]
    return [[part.strip() for part in layer.split("|")] for layer in contract["layers"]]


def layer_violations(edges: dict[str, set[str]], order: list[list[str]]) -> list[str]:
    """Every import (statement or by name) from a layer to a higher one or to a sibling."""
    rank = {name: i for i, group in enumerate(order) for name in group}

    def place(module: str) -> tuple[int, str] | None:
        parts = module.split(".")
        if len(parts) < 2 or parts[1] not in rank:
            return None
        return rank[parts[1]], parts[1]

    bad = []
    for module in sorted(edges):
        here = place(module)
        for target in sorted(edges[module]):
            there = place(target)
            if here is None or there is None or here[1] == there[1]:
                continue
            if there[0] <= here[0]:
                bad.append(f"{module} -> {target}")
    return bad


def main() -> int:
    edges = import_graph()
    groups = cycles(edges)
    for group in groups:
        print("import cycle: " + " <-> ".join(group), file=sys.stderr)
    bad = layer_violations(edges, layers())
    for line in bad:
        print(f"import against the layer order: {line}", file=sys.stderr)
    if groups or bad:
        print(
            f"{len(groups)} import cycle(s), {len(bad)} import(s) against the layers",
            file=sys.stderr,
        )
        return 1
    print("import cycles: none among autopeft modules; imports by name follow the layers")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
