"""conceptalg: compositional generation with energy-based models.

Write a concept expression (``smiling & ~male | glasses``), compose the energies of trained
concept heads into one energy, and sample from ``p(x) ∝ exp(-E(x))``.

Example:
    >>> import conceptalg
    >>> str(conceptalg.parse("red&circle|~blue"))
    'red & circle | ~blue'
"""

from .errors import (CheckpointError, CompileError, ConceptAlgError, ConceptSyntaxError,
                     SamplerError, UnknownConceptError)
from .expr import And, Concept, Expr, Not, Or, Weighted, concepts, simplify
from .syntax import parse

__version__ = "0.1.0"

__all__ = [
    "parse", "simplify", "concepts",
    "Expr", "Concept", "And", "Or", "Not", "Weighted",
    "ConceptAlgError", "ConceptSyntaxError", "UnknownConceptError", "CompileError",
    "SamplerError", "CheckpointError",
]
