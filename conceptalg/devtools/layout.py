"""The shape of the package, read from its source with ``ast`` (nothing is imported):
import circles, arrows from a higher floor into a lower one, lines per package and the longest
functions (docs/design.md §2). ``tests/test_layout.py`` asserts on the same functions; run

    python -m conceptalg.devtools.layout [--top N]

to print them (the figures of a closing note's before/after).

An import counts wherever it is written: at module level, inside a function (``lazy``), and
under ``if TYPE_CHECKING:`` (``type_checking``), which never runs but still ties two modules
together for a reader.
"""

from __future__ import annotations

import argparse
import ast
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator

__all__ = ["PACKAGE", "LOW_FLOORS", "HIGH_FLOORS", "modules", "import_graph", "cycles",
           "wrong_way", "function_lengths", "package_lines", "report"]

PACKAGE = Path(__file__).resolve().parents[1]

#: the language and the machinery below it, and the packages above them that they must not use
LOW_FLOORS = ("conceptalg.sampling", "conceptalg.compiler", "conceptalg.expr", "conceptalg.syntax")
HIGH_FLOORS = ("conceptalg.training", "conceptalg.models", "conceptalg.evaluation",
               "conceptalg.data", "conceptalg.cli", "conceptalg.inference", "conceptalg.plots")


def modules(root: Path = PACKAGE) -> dict[str, tuple[Path, bool]]:
    """Dotted module name → (file, is a package ``__init__``)."""
    found = {}
    for file in sorted(root.rglob("*.py")):
        parts = list(file.relative_to(root.parent).with_suffix("").parts)
        package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if package else parts)] = (file, package)
    return found


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _statements(body: list[ast.stmt], lazy: bool, type_checking: bool) -> Iterator[ast.stmt]:
    """The statements that run when the module is imported (``lazy``: also those in function
    bodies; ``type_checking``: also those under ``if TYPE_CHECKING:``, which never run)."""
    for node in body:
        if _is_type_checking(node):
            if type_checking:
                yield from _statements(node.body, lazy, type_checking)
            yield from _statements(node.orelse, lazy, type_checking)
            continue
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not lazy:
            continue
        yield node
        for field in ("body", "orelse", "finalbody", "handlers"):
            children = getattr(node, field, None)
            if isinstance(children, list):
                yield from _statements(children, lazy, type_checking)


def _edges(statements: Iterable[ast.stmt], name: str, package: bool, mods) -> set[str]:
    """The package modules that ``statements`` of module ``name`` import: ``from .x import y``
    is an edge to ``.x.y`` when that is a module, else to ``.x``; ``from . import x`` to
    ``.x``."""
    here = name if package else name.rpartition(".")[0]
    edges = set()
    for node in statements:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[:len(here.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                edges.add(sub if sub in mods else target)
        elif isinstance(node, ast.Import):
            edges.update(a.name for a in node.names if a.name in mods)
    return {e for e in edges if e in mods}


def import_graph(root: Path = PACKAGE, *, lazy: bool = True,
                 type_checking: bool = True) -> dict[str, set[str]]:
    """Module → the package modules it imports (by default every import: module level, in
    functions, under ``TYPE_CHECKING``)."""
    mods = modules(root)
    graph: dict[str, set[str]] = {}
    for name, (file, package) in mods.items():
        tree = ast.parse(file.read_text(encoding="utf-8"))
        body = _statements(tree.body, lazy, type_checking)
        graph[name] = _edges(body, name, package, mods) - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components with more than one module (Tarjan).

    Example:
        >>> [sorted(c) for c in cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}})]
        [['a', 'b']]
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _under(name: str, floors: Iterable[str]) -> bool:
    return any(name == f or name.startswith(f + ".") or name.startswith(f + "_")
               for f in floors)


def wrong_way(graph: dict[str, set[str]]) -> list[str]:
    """``"a -> b"`` for each import from a low floor (the language, the compiler, the samplers)
    into a higher one (training, models, evaluation, data, the command line, ...).

    Example:
        >>> wrong_way({"conceptalg.sampling.api": {"conceptalg.training.run"}})
        ['conceptalg.sampling.api -> conceptalg.training.run']
    """
    return sorted(f"{a} -> {b}" for a, targets in graph.items() if _under(a, LOW_FLOORS)
                  for b in targets if _under(b, HIGH_FLOORS))


def function_lengths(root: Path = PACKAGE) -> list[tuple[int, str]]:
    """``(lines, "path:line name")`` of every function and method, longest first; a function
    runs from its ``def`` line to its last line (a nested function counts in its parent too)."""
    found = []
    for file in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                where = f"{file.relative_to(root.parent)}:{node.lineno} {node.name}"
                found.append((node.end_lineno - node.lineno + 1, where))
    return sorted(found, key=lambda t: (-t[0], t[1]))


def package_lines(root: Path = PACKAGE) -> dict[str, int]:
    """Lines per package: each subpackage, and the top-level modules as ``conceptalg``."""
    count: Counter = Counter()
    for file in root.rglob("*.py"):
        parts = file.relative_to(root).parts
        key = root.name if len(parts) == 1 else f"{root.name}.{parts[0]}"
        count[key] += len(file.read_text(encoding="utf-8").splitlines())
    return dict(sorted(count.items()))


def report(root: Path = PACKAGE, top: int = 10) -> str:
    """The whole report as text: circles (every import, and module-level only), wrong-way
    arrows, lines per package and the ``top`` longest functions."""
    every, eager = import_graph(root), import_graph(root, lazy=False, type_checking=False)
    lines = []
    for title, graph in (("import circles (every import: module level, lazy, TYPE_CHECKING)",
                          every), ("import circles (module level only)", eager)):
        found = cycles(graph)
        lines.append(f"{title}: {len(found)}")
        lines += [f"  {' <-> '.join(sorted(c))}" for c in found]
    arrows = wrong_way(every)
    lines.append(f"wrong-way arrows (into {', '.join(LOW_FLOORS)}): {len(arrows)}")
    lines += [f"  {a}" for a in arrows]
    counts = package_lines(root)
    lines.append(f"lines per package (total {sum(counts.values())}):")
    lines += [f"  {name:<24} {n:>6}" for name, n in counts.items()]
    lengths = function_lengths(root)
    over = sum(n > 80 for n, _ in lengths)
    lines.append(f"functions over 80 lines: {over}; the {top} longest:")
    lines += [f"  {n:>4}  {where}" for n, where in lengths[:top]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m conceptalg.devtools.layout",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=10, help="longest functions to list")
    print(report(top=parser.parse_args(argv).top))


if __name__ == "__main__":
    main()
