"""The shape of the package: no import cycles among conceptalg's modules, no module over 600
lines (docs/design.md §2: one responsibility per module). Read from the source with ``ast``; nothing is
imported."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "conceptalg"
MAX_LINES = 600

# Lazy (function-level) import cycles still to break, each with the reason it is still here. A
# pair that is no longer a cycle fails `test_known_lazy_cycles_are_still_cycles`: remove it.
KNOWN_LAZY_CYCLES: set = set()


def modules(root: Path) -> dict[str, tuple[Path, bool]]:
    """Dotted module name → (file, is a package ``__init__``)."""
    found = {}
    for file in sorted(root.rglob("*.py")):
        parts = list(file.relative_to(root.parent).with_suffix("").parts)
        package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if package else parts)] = (file, package)
    return found


def _statements(body: list[ast.stmt], lazy: bool):
    """The statements that run when the module is imported (``lazy``: also those in function
    bodies); ``if TYPE_CHECKING:`` blocks never run."""
    for node in body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from _statements(node.orelse, lazy)
            continue
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not lazy:
            continue
        yield node
        for field in ("body", "orelse", "finalbody", "handlers"):
            children = getattr(node, field, None)
            if isinstance(children, list):
                yield from _statements(children, lazy)


def import_graph(root: Path, *, lazy: bool) -> dict[str, set[str]]:
    """Module → the package modules it imports: ``from .x import y`` is an edge to ``.x.y`` when
    that is a module, else to ``.x``; ``from . import x`` to ``.x``."""
    mods = modules(root)
    graph: dict[str, set[str]] = {}
    for name, (file, package) in mods.items():
        body = _statements(ast.parse(file.read_text(encoding="utf-8")).body, lazy)
        graph[name] = _edges(body, name, package, mods) - {name}
    return graph


def _edges(statements, name: str, package: bool, mods) -> set[str]:
    """The package modules that ``statements`` of module ``name`` import."""
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


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
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


# --- the checker, on small packages with known answers ------------------------------------------

FIXTURES = [
    ("no cycle", {"a.py": "from . import b\n", "b.py": "import os\n"}, [], []),
    ("module-level cycle", {"a.py": "from .b import f\n", "b.py": "from .a import g\n"},
     [{"pkg.a", "pkg.b"}], [{"pkg.a", "pkg.b"}]),
    ("lazy cycle", {"a.py": "from .b import f\n",
                    "b.py": "def g():\n    from .a import h\n    return h\n"},
     [], [{"pkg.a", "pkg.b"}]),
    ("type-checking import", {"a.py": "from .b import f\n",
                              "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                      "    from .a import A\n"}, [], []),
    ("subpackage and parent", {"sub/__init__.py": "from .c import f\n",
                               "sub/c.py": "from .. import a\n",
                               "a.py": "from .sub import c\n"},
     [{"pkg.a", "pkg.sub.c"}], [{"pkg.a", "pkg.sub.c"}]),
    ("three-module ring", {"a.py": "from .b import x\n", "b.py": "from .c import x\n",
                           "c.py": "def f():\n    from . import a\n"},
     [], [{"pkg.a", "pkg.b", "pkg.c"}]),
]


@pytest.mark.parametrize("files, eager, lazy", [c[1:] for c in FIXTURES],
                         ids=[c[0] for c in FIXTURES])
def test_cycle_checker_on_known_packages(tmp_path, files, eager, lazy):
    root = tmp_path / "pkg"
    for name, text in {"__init__.py": "", **files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    assert sorted(map(set, cycles(import_graph(root, lazy=False))), key=sorted) == eager
    assert sorted(map(set, cycles(import_graph(root, lazy=True))), key=sorted) == lazy


# --- the package ---------------------------------------------------------------------------------

def test_no_import_cycle_among_module_level_imports():
    assert cycles(import_graph(PACKAGE, lazy=False)) == []


def test_no_import_cycle_counting_imports_inside_functions():
    """``expr`` ↔ ``syntax`` and ``cli`` ↔ ``evaluation.commands`` were lazy cycles: each idea
    has one home and the arrows run one way."""
    found = set(cycles(import_graph(PACKAGE, lazy=True)))
    assert found - KNOWN_LAZY_CYCLES == set()


def test_known_lazy_cycles_are_still_cycles():
    found = set(cycles(import_graph(PACKAGE, lazy=True)))
    assert KNOWN_LAZY_CYCLES <= found, "a known cycle was broken: remove it from the list"


def test_the_graph_sees_the_package():
    graph = import_graph(PACKAGE, lazy=False)
    assert {"conceptalg.expr", "conceptalg.errors"} <= graph["conceptalg.syntax"]
    assert "conceptalg.cli_args" in graph["conceptalg.evaluation.commands"]


FILES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("file", FILES, ids=[str(f.relative_to(PACKAGE)) for f in FILES])
def test_no_module_over_600_lines(file):
    n = len(file.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"{file.relative_to(PACKAGE.parent)} has {n} lines; split it"


def test_loading_a_model_imports_no_trainer():
    """``conceptalg.load`` reads checkpoints without importing the training loops (a user who
    only samples a shipped model never loads them)."""
    import subprocess
    import sys

    code = ("import sys, conceptalg; conceptalg.load('models/shapes'); "
            "print(sorted(m for m in sys.modules if m.startswith('conceptalg.training.')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = eval(done.stdout)
    assert not {"conceptalg.training.cd", "conceptalg.training.dsm"} & set(loaded), loaded


#: the language and the machinery below it, and the packages above them that they must not use
LOW_FLOORS = ("conceptalg.sampling", "conceptalg.compiler", "conceptalg.expr", "conceptalg.syntax")
HIGH_FLOORS = ("conceptalg.training", "conceptalg.models", "conceptalg.evaluation",
               "conceptalg.data", "conceptalg.cli", "conceptalg.inference", "conceptalg.plots")


def _under(name: str, floors) -> bool:
    return any(name == f or name.startswith(f + ".") or name.startswith(f + "_")
               for f in floors)


def test_no_arrow_from_a_higher_floor_into_the_language_or_the_samplers():
    # every import counts: module level, inside functions, and under TYPE_CHECKING
    graph = import_graph(PACKAGE, lazy=True)
    for file in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(file.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                parts = list(file.relative_to(PACKAGE.parent).with_suffix("").parts)
                name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
                sub = _edges(node.body, name, parts[-1] == "__init__", modules(PACKAGE))
                graph.setdefault(name, set()).update(sub)
    wrong = sorted(f"{a} -> {b}" for a, targets in graph.items() if _under(a, LOW_FLOORS)
                   for b in targets if _under(b, HIGH_FLOORS))
    assert not wrong, "imports from a higher floor:\n" + "\n".join(wrong)
