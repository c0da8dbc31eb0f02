"""Fail when autopeft's modules import each other in a cycle, function-local imports included.

import-linter's layers contract (``[tool.importlinter]`` in ``pyproject.toml``) keeps imports
pointing down between packages; this check covers what a layers contract cannot see: cycles
between modules of one package. It reads the same import graph (grimp), which counts imports
inside functions and under ``TYPE_CHECKING``, so a cycle cannot hide in a function body.
"""

from __future__ import annotations

import sys

import grimp


def cycles(package: str = "autopeft") -> list[list[str]]:
    """Every strongly connected group of more than one module, each sorted."""
    graph = grimp.build_graph(package)
    modules = sorted(graph.modules)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in modules}
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
            targets = edges.get(node, [])
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


def main() -> int:
    groups = cycles()
    for group in groups:
        print("import cycle: " + " <-> ".join(group), file=sys.stderr)
    if groups:
        print(f"{len(groups)} import cycle(s) among autopeft modules", file=sys.stderr)
        return 1
    print("import cycles: none among autopeft modules")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
