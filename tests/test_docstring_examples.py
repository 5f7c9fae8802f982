"""Every ``>>>`` example in the package's docstrings runs and prints what it shows: one test per
module, so a docstring example can never drift from the code (examples that cannot run here —
a GPU, torchrun, a trained model on disk — say ``# doctest: +SKIP``)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import conceptalg

MODULES = sorted(m.name for m in pkgutil.walk_packages(conceptalg.__path__, "conceptalg.")
                 if not m.name.endswith("__main__"))


def test_the_package_has_modules_with_examples():
    finder = doctest.DocTestFinder()
    with_examples = [name for name in MODULES
                     if any(t.examples for t in finder.find(importlib.import_module(name)))]
    assert len(MODULES) > 50 and len(with_examples) > 40, (len(MODULES), len(with_examples))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS,
                             verbose=False, report=True)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"
