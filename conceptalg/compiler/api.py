"""The compiler's entry points: :func:`compose` and :func:`explain`.

``compose`` builds a :class:`~conceptalg.compiler.energy.ComposedEnergy` — one energy, with the
exact OR ``−τ logsumexp`` — or, for an OR over heads that give only scores, which no single
energy can be computed from, a :class:`~conceptalg.compiler.mixture.MixtureEnergy`: the mixture
that the expression's disjunctive normal form defines under equal partition functions
(:mod:`.dnf`), which ``conceptalg.sample`` draws a disjunct per chain from.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from ..expr import Concept, Expr
from ..heads import Head
from .checks import OrNeedsEnergyValues
from .energy import ComposedEnergy
from .mixture import MixtureEnergy
from .normalize import _check_semantics
from .semantics import semantics_named

__all__ = ["compose", "explain"]


def compose(expr_or_text: Expr | str, concepts: Any, *, base: Callable | None = None,
            semantics: str | None = None, or_temperature: float = 1.0,
            or_log_weights: Mapping[str, float] | Sequence[float] | None = None,
            guidance_scale: float | None = None, negation_scale: float | None = None,
            negation_sigmas: Sequence[float | None] | None = None
            ) -> ComposedEnergy | MixtureEnergy:
    """Compile a concept expression into one energy over a concept library (docs/design.md §4).

    ``concepts`` is a :class:`~conceptalg.library.ConceptLibrary`, a trained model with the
    library interface, or a ``dict`` of energy functions (keys ``"red"``, ``"color=red"``,
    ``"at"``). ``base`` is ``E_0`` (overrides the library's). ``semantics`` is ``"product"``
    (AND = sum, OR = soft-min, NOT = subtraction anchored by ``E_0`` where needed),
    ``"guidance"`` (classifier-free guidance around ``E_0``: ``E = E_0 + w·D``, ``w`` =
    ``guidance_scale``) or ``"logic"`` (probabilities of classifier heads); ``None`` means the
    library's ``default_semantics`` (a trained model records one), else ``"product"``;
    ``guidance_scale=None`` means the library's ``guidance_scale``, else 1.
    Under ``guidance``, ``negation_scale`` ``ν`` multiplies the weight of every negated term
    (``c & ~r`` is ``D = D[c] − ν·D[r]``; default the library's, else 1) and
    ``negation_sigmas=(lo, hi)`` counts negated terms only at noise levels ``lo ≤ σ ≤ hi``
    (``hi`` ``None``: no bound; outside, they are dropped; default the library's, else every
    level): a negation that only steers the coarse levels leaves the fine ones to the data.
    ``or_temperature`` is τ of the soft-min. ``or_log_weights`` adds a log-weight to disjuncts:
    a dict keyed by disjunct text (``{"a": 0.0, "b & c": -1.2}``, matched by normal form,
    applied wherever that disjunct appears in an OR), or a sequence with one value per disjunct
    of a root OR.

    Leaves whose energies take ``sigma`` are evaluated at the noise level given to ``forward``
    and ``score``; heads that give only scores (``kind="score"``) compose where the energy is
    linear in its concepts (then only ``score`` is available). An OR over such heads has no
    energy to compute: it is returned as a :class:`MixtureEnergy`, the mixture of the branches
    of its disjunctive normal form under equal partition functions (weights ``exp(ℓ)`` times
    multinomial counts, normalised), which ``conceptalg.sample`` draws a branch per chain from.

    Raises :class:`UnknownConceptError` for names the library lacks (all of them, each with a
    did-you-mean); :class:`~conceptalg.errors.ConceptArgumentError` (a :class:`CompileError`)
    for a concept written with the wrong arguments — a parametric one with none, with a number
    other than its library declares or one outside its declared range, or arguments to a
    concept that takes none — with the line, column and a caret when the expression is text;
    and :class:`CompileError` for an unanchored negation without a base, a semantics the
    library cannot support, energy values needed from a score-only head (under logic), an OR
    over score-only heads that is no mixture (a negated OR under guidance, an OR under a weight
    that is not a whole number, an ``or_temperature`` other than 1), or bad arguments.

    Example:
        >>> import torch
        >>> lib = {"a": lambda x: x.pow(2).sum(-1), "b": lambda x: (x - 1).pow(2).sum(-1)}
        >>> compose("a | b", lib, or_temperature=0.5)(torch.zeros(1, 2))
        tensor([-0.0091])
        >>> compose("~a", lib)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
          ...
        conceptalg.errors.CompileError: `~a` needs a base energy E_0 (...) ... Anchor the negation: `x & ~a`, or give a base (...)
    """
    settings = dict(base=base, semantics=semantics, or_temperature=or_temperature,
                    or_log_weights=or_log_weights, guidance_scale=guidance_scale,
                    negation_scale=negation_scale, negation_sigmas=negation_sigmas)
    try:
        return ComposedEnergy(expr_or_text, concepts, **settings)
    except OrNeedsEnergyValues as e:
        return MixtureEnergy(expr_or_text, concepts, reason=e.what, **settings)


class _SymbolicLibrary:
    """Every name resolves (nothing is loaded): lets ``explain`` show a plan without a model."""

    def __init__(self, semantics: str) -> None:
        self.kind = "energy" if semantics_named(semantics).linear else "log_prob"
        self.base = Head("base", None, None)
        self._heads: dict[tuple, Head] = {}

    def resolve(self, c: Concept) -> Head:
        key = (c.name, c.factor)
        if key not in self._heads:
            self._heads[key] = Head(c.name, c.factor, None, None, self.kind, None)
        return self._heads[key]

    def resolve_bound(self, c: Concept, place: Concept) -> Head:
        key = (c.name, c.factor, place.name)
        if key not in self._heads:
            self._heads[key] = Head(c.name, c.factor, None, None, "log_prob", True)
        return self._heads[key]

    def names(self) -> list[str]:
        return [h.key for h in self._heads.values()]


def explain(expr_or_text: Expr | str, concepts: Any = None, *, semantics: str | None = None,
            or_temperature: float = 1.0,
            or_log_weights: Mapping[str, float] | Sequence[float] | None = None,
            guidance_scale: float | None = None, negation_scale: float | None = None,
            negation_sigmas: Sequence[float | None] | None = None) -> str:
    """``compose(...).explain()`` (same arguments); without ``concepts``, names are not checked
    and a base ``E_0`` is assumed, so the plan of any expression can be shown (``semantics=None``
    is then ``"product"``).

    Example:
        >>> print(explain("~a & ~b | c"))  # doctest: +NORMALIZE_WHITESPACE
        expression:  ~a & ~b | c
        semantics:   product
        normal form: ~a & ~b | c
        leaves (3, evaluated in 4 calls):
          a    (not loaded)
          b    (not loaded)
          c    (not loaded)
          E_0  (not loaded)
        formula:
          E = softmin(-E[a] - E[b] + E_0, E[c])
          softmin(e_1, ..., e_k) = -logsumexp_i(-e_i)
        OR method:   exact -τ logsumexp of energies (τ = 1)
                     disjunct i carries mass ∝ exp(l_i)·Z_i, Z_i = ∫exp(-E_i) not assumed equal
                     (calibrate() estimates them)
        OR weights (l_i, the log-weight of disjunct i):
          l = 0  ~a & ~b
          l = 0  c
    """
    if concepts is None:
        semantics = "product" if semantics is None else semantics
        _check_semantics(semantics)
        concepts = _SymbolicLibrary(semantics)
    return compose(expr_or_text, concepts, semantics=semantics, or_temperature=or_temperature,
                   or_log_weights=or_log_weights, guidance_scale=guidance_scale,
                   negation_scale=negation_scale, negation_sigmas=negation_sigmas).explain()
