"""conceptalg: compositional generation with energy-based models.

Write a concept expression (``smiling & ~male | glasses``), compose the energies of trained
concept heads into one energy, and sample from ``p(x) ∝ exp(-E(x))``.

Example:
    >>> import conceptalg
    >>> str(conceptalg.parse("red&circle|~blue"))
    'red & circle | ~blue'

``import conceptalg`` and :func:`parse` do not import torch: the tensor side of the API
(``compose``, ``sample``, ``load``, ``train``, ``infer``, ...) is loaded on first use.
"""

from importlib import import_module

from .errors import (CheckpointError, CompileError, ConceptAlgError, ConceptArgumentError,
                     ConceptSyntaxError, SamplerError, UnknownConceptError)
from .expr import And, Bound, Concept, Expr, Not, Or, Weighted, concepts, simplify
from .syntax import parse

__version__ = "0.1.0"

# Public names whose modules import torch: resolved lazily by __getattr__ (PEP 562).
# (The library module is `library.py`, not `concepts.py`: importing a submodule binds its name
# on the package, which would shadow the public function `concepts(expr)`.)
_LAZY = {
    "compose": "conceptalg.compiler",
    "ComposedEnergy": "conceptalg.compiler",
    "MixtureEnergy": "conceptalg.compiler",
    "ConceptLibrary": "conceptalg.library",
    "sample": "conceptalg.sampling",
    "load": "conceptalg.training.checkpoint",
    "train": "conceptalg.training",
    "infer": "conceptalg.inference",
}

__all__ = [
    "parse", "simplify", "concepts",
    "Expr", "Concept", "And", "Or", "Not", "Weighted", "Bound",
    "ConceptAlgError", "ConceptSyntaxError", "UnknownConceptError", "CompileError",
    "ConceptArgumentError", "SamplerError", "CheckpointError",
    *_LAZY,
]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'conceptalg' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
