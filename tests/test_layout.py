"""The shape of the package: no import cycles among conceptalg's modules (TYPE_CHECKING and
function-level imports included), no arrow from a higher floor into the language or the
samplers, no module over 600 lines and no function over 80 (docs/design.md §2: one
responsibility per module). Read from the source with ``ast`` by
:mod:`conceptalg.devtools.layout` (``python -m conceptalg.devtools.layout`` prints the same
figures); nothing is imported."""

from pathlib import Path

import pytest

from conceptalg.devtools.layout import (PACKAGE, cycles, function_lengths, import_graph,
                                        wrong_way)

MAX_LINES = 600
MAX_FUNCTION_LINES = 80

# Lazy (function-level) import cycles still to break, each with the reason it is still here. A
# pair that is no longer a cycle fails `test_known_lazy_cycles_are_still_cycles`: remove it.
KNOWN_LAZY_CYCLES: set = set()


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
    root = _package(tmp_path, files)
    found = lambda **kw: sorted(map(set, cycles(import_graph(root, **kw))), key=sorted)  # noqa: E731
    assert found(lazy=False, type_checking=False) == eager
    assert found(lazy=True, type_checking=False) == lazy


def _package(tmp_path: Path, files: dict) -> Path:
    root = tmp_path / "pkg"
    for name, text in {"__init__.py": "", **files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_the_checker_counts_type_checking_imports(tmp_path):
    files = next(c[1] for c in FIXTURES if c[0] == "type-checking import")
    root = _package(tmp_path, files)  # a cycle only through `if TYPE_CHECKING:`
    assert [set(c) for c in cycles(import_graph(root))] == [{"pkg.a", "pkg.b"}]


def test_the_function_measure_on_a_known_module(tmp_path):
    body = "\n".join(f"    x = {i}" for i in range(80))
    root = _package(tmp_path, {"a.py": f"def long():\n{body}\n\n\ndef short():\n    pass\n"})
    assert [n for n, _ in function_lengths(root)] == [81, 2]


# --- the package ---------------------------------------------------------------------------------

def test_no_import_cycle_among_module_level_imports():
    assert cycles(import_graph(PACKAGE, lazy=False, type_checking=False)) == []


def test_no_import_cycle_counting_imports_inside_functions_and_under_type_checking():
    """``expr`` ↔ ``syntax`` and ``cli`` ↔ ``evaluation.commands`` were lazy cycles,
    ``compiler.energy`` ↔ ``compiler.printers`` and ``models.model`` ↔ ``models.view_trunks``
    cycles through ``TYPE_CHECKING``: each idea has one home and the arrows run one way."""
    found = set(cycles(import_graph(PACKAGE)))
    assert found - KNOWN_LAZY_CYCLES == set()


def test_known_lazy_cycles_are_still_cycles():
    found = set(cycles(import_graph(PACKAGE)))
    assert KNOWN_LAZY_CYCLES <= found, "a known cycle was broken: remove it from the list"


def test_the_graph_sees_the_package():
    graph = import_graph(PACKAGE, lazy=False, type_checking=False)
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


def test_no_arrow_from_a_higher_floor_into_the_language_or_the_samplers():
    # every import counts: module level, inside functions, and under TYPE_CHECKING
    wrong = wrong_way(import_graph(PACKAGE))
    assert not wrong, "imports from a higher floor:\n" + "\n".join(wrong)


def test_no_function_over_80_lines():
    """A function runs from its ``def`` to its last line, docstring included; a longer one is
    split into named steps (``python -m conceptalg.devtools.layout`` lists the longest)."""
    long = [f"{where} ({n} lines)" for n, where in function_lengths(PACKAGE)
            if n > MAX_FUNCTION_LINES]
    assert not long, "functions over 80 lines:\n" + "\n".join(long)
