"""The disjunctive normal form of an expression: the branches of the mixture an OR defines.

Under ``product`` and ``guidance`` (τ = 1) an OR is ``−log Σ_i exp(ℓ_i − E_i)`` and an AND a sum
of energies, so ``exp(−E)`` of an expression is a sum of products. Distributing every AND over
every OR gives

    exp(−E(x)) = Σ_n c_n · exp(−E_n(x)),

each ``E_n`` the energy of a conjunction of weighted, possibly negated concepts (a *disjunct*)
and ``c_n`` the product of the OR weights ``exp(ℓ)`` met on its way (OR log-weights, default 0).
An OR under an integer weight k is a k-fold AND with itself: ``2 * (a | b)`` is
``2*a | a & b | 2*b`` with ``c = 1, 2, 1`` (the multinomial coefficients). Identical disjuncts
merge, their ``c`` adding; repeated terms inside one fold into a weight (``a & a`` is ``2*a``).

With ``Z_n = ∫ exp(−E_n)`` the law is the mixture ``Σ_n c_n Z_n p_n / Σ_m c_m Z_m`` of the
branches ``p_n ∝ exp(−E_n)``. **Assumption: equal partition functions** ``Z_n`` — the seed's
disjunction ``Σ_n exp(−E(x|c_n))`` read as the equal mixture — so that branch ``n`` has weight
``c_n / Σ_m c_m``. A model that gives only scores cannot tell the ``Z_n`` apart; one with energy
values keeps the exact OR (``ComposedEnergy``), whose masses are ``∝ c_n Z_n``.

**A negated OR** is rewritten by De Morgan, ``~(a | b)`` → ``~a & ~b``, under ``product``, whose
NOT reads as a complement. Under ``guidance`` NOT is the ratio ``p_0 / p(f|x)``, not a complement
(docs/design.md §4): De Morgan's law does not hold there and a negated mixture is no mixture, so
such an OR is refused. ``logic`` has no DNF: its OR is exact on probabilities.

Pure: no tensors. :func:`expand` works on the normal form (:mod:`.normalize`); :func:`disjuncts`
is the same from text, for people.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

from ..errors import CompileError
from ..expr import And, Concept, Expr, as_expr, format_number
from .checks import log_weight_table
from .normalize import _NAnd, _Term, _check_semantics, _merge, _normal_form, _to_expr

__all__ = ["Disjunct", "expand", "disjuncts", "DE_MORGAN", "MAX_DISJUNCTS"]

#: the semantics whose NOT reads as a complement, so De Morgan's law rewrites a negated OR
DE_MORGAN = ("product",)
#: the most branches a mixture may have (each is composed, and sampled on its own)
MAX_DISJUNCTS = 1024


@dataclass(frozen=True)
class Disjunct:
    """One branch: a conjunction ``terms`` (normal-form terms over concepts) and ``log c``."""

    terms: tuple  # of _Term with Concept bodies
    log_weight: float

    @property
    def expr(self) -> Expr:
        parts = [_to_expr(t) for t in self.terms]
        return parts[0] if len(parts) == 1 else And(*parts)


def _logaddexp(a: float, b: float) -> float:
    hi, lo = max(a, b), min(a, b)
    return hi if lo == -math.inf else hi + math.log1p(math.exp(lo - hi))


class _Expander:
    """Distributes ANDs over ORs, term by term; each call returns ``[(log c, terms), ...]``."""

    def __init__(self, expr: Expr, semantics: str, log_weights: Mapping):
        self.expr, self.semantics, self.log_weights = expr, semantics, log_weights
        self.used: set = set()

    def term(self, t: _Term) -> list:
        body = t.body
        if isinstance(body, Concept):
            return [(0.0, (t,))]
        if isinstance(body, _NAnd):  # weight and sign distribute (a linear semantics' AND)
            return self.conjunction([_Term(t.weight * c.weight, t.sign * c.sign, c.body)
                                     for c in body.terms])
        if t.sign < 0:
            return self.conjunction(self._de_morgan(t))
        branches = []
        for child in body.terms:
            lw = self._log_weight(child)
            branches.extend((lw + c, terms) for c, terms in self.term(child))
        branches = _merged(branches)
        if t.weight == 1.0:
            return branches
        if len(branches) == 1:  # (c·exp(−E))^w = c^w·exp(−w·E): any weight scales one branch
            (c, terms), = branches
            return [(t.weight * c, tuple(_Term(t.weight * u.weight, u.sign, u.body)
                                         for u in terms))]
        if t.weight > MAX_DISJUNCTS:  # (Σ of ≥ 2 branches)^k has more than k disjuncts
            self._too_many()
        if t.weight != int(t.weight):
            w = format_number(t.weight)
            plain = " | ".join(str(_to_expr(_Term(t.weight * c.weight, c.sign, c.body)))
                               for c in body.terms)
            raise CompileError(
                f"`{_to_expr(t)}` raises an OR to the power {w}, (Σ_i exp(-E_i))^{w}, which is a "
                f"mixture of its disjuncts only for a whole number (2 * (a | b) is "
                f"2*a | a & b | 2*b); a score-only model samples an OR as a mixture, so give the "
                f"OR a whole weight or weight its disjuncts instead (`{plain}`)")
        return self.product([branches] * int(t.weight))

    def conjunction(self, terms: Sequence[_Term]) -> list:
        return self.product([self.term(t) for t in terms])

    def product(self, factors: Sequence[list]) -> list:
        out: list = [(0.0, ())]
        for factor in factors:
            if len(out) * len(factor) > MAX_DISJUNCTS * 4:
                self._too_many()
            out = _merged([(c1 + c2, t1 + t2) for c1, t1 in out for c2, t2 in factor])
        return out

    def _de_morgan(self, t: _Term) -> list:
        """``~(w * (a | b))`` → ``~(w*a) & ~(w*b)``, where the semantics' NOT is a complement."""
        flipped = [_Term(t.weight * c.weight, -c.sign, c.body) for c in t.body.terms]
        if self.semantics not in DE_MORGAN:
            rewrite = " & ".join(str(_to_expr(c)) for c in flipped)
            raise CompileError(
                f"`{self.expr}` negates an OR, `{_to_expr(t)}`; a score-only model samples an OR "
                f"as a mixture of its disjuncts, and a negated mixture is no mixture. Under "
                f"semantics={self.semantics!r} NOT is the ratio p_0/p(f|x), not a complement "
                f"(docs/design.md §4), so De Morgan's law does not rewrite it. Write the "
                f"conjunction of the negations if that is what you mean (`{rewrite}`), or "
                f"use semantics='product', under which De Morgan applies")
        return flipped

    def _log_weight(self, t: _Term) -> float:
        if t in self.log_weights:
            self.used.add(t)
            return self.log_weights[t]
        return 0.0

    def _too_many(self):
        raise CompileError(f"`{self.expr}` has more than {MAX_DISJUNCTS} disjuncts once its "
                           f"ANDs are distributed over its ORs, and a score-only model samples "
                           f"each as a branch of a mixture; factor the expression, or use a "
                           f"model with energy values (its OR needs no expansion)")


def _merged(branches: list) -> list:
    """Fold repeated terms inside each conjunction, then merge identical conjunctions (their
    weights add); first-seen order."""
    out: dict[frozenset, list] = {}
    for c, terms in branches:
        terms = _merge(terms)
        key = frozenset(terms)
        if key in out:
            out[key][0] = _logaddexp(out[key][0], c)
        else:
            out[key] = [c, terms]
    return [(c, terms) for c, terms in out.values()]


def expand(nf: _Term, expr: Expr, semantics: str, log_weights: Mapping) -> tuple[tuple, set]:
    """The disjuncts of the linear normal form ``nf`` of ``expr`` (a tuple of :class:`Disjunct`)
    and the OR log-weight terms used; ``log_weights`` is keyed by normal-form term
    (:func:`~conceptalg.compiler.checks.log_weight_table`). Raises :class:`CompileError` for a
    negated OR where De Morgan does not apply, a non-integer weight on an OR, or more than
    :data:`MAX_DISJUNCTS` disjuncts."""
    if semantics == "logic":
        raise CompileError("semantics='logic' has no mixture form: its OR is exact on "
                           "probabilities, 1 - (1 - P(a))(1 - P(b))")
    expander = _Expander(expr, semantics, log_weights)
    found = expander.term(nf)
    if len(found) > MAX_DISJUNCTS:
        expander._too_many()
    return tuple(Disjunct(terms, c) for c, terms in found), expander.used


def disjuncts(expr_or_text: Expr | str, semantics: str = "product",
              or_log_weights: Mapping[str, float] | Sequence[float] | None = None
              ) -> list[tuple[Expr, float]]:
    """The branches of ``expr`` as a mixture: ``[(conjunction, weight), ...]``, the weights
    summing to 1 under the assumption of equal partition functions (module docstring).

    Example:
        >>> [(str(e), w) for e, w in disjuncts("(a | b) & c")]
        [('a & c', 0.5), ('b & c', 0.5)]
        >>> [(str(e), w) for e, w in disjuncts("2 * (a | b)")]
        [('2 * a', 0.25), ('a & b', 0.5), ('2 * b', 0.25)]
        >>> [str(e) for e, _ in disjuncts("~(a | b) & c")]
        ['~a & ~b & c']
    """
    expr = as_expr(expr_or_text)
    _check_semantics(semantics)
    nf = _normal_form(expr, semantics != "logic")
    table = log_weight_table(expr, nf, semantics, or_log_weights)
    found, _ = expand(nf, expr, semantics, table)
    return [(d.expr, w) for d, w in zip(found, probabilities(found, expr))]


def probabilities(found: Sequence[Disjunct], expr: Expr) -> list[float]:
    """The branch weights ``c_n / Σ_m c_m`` (equal partition functions)."""
    top = max(d.log_weight for d in found)
    if top == -math.inf:
        raise CompileError(f"every disjunct of `{expr}` has the OR log-weight -inf: the mixture "
                           f"has no branch to draw")
    weights = [math.exp(d.log_weight - top) for d in found]
    total = sum(weights)
    return [w / total for w in weights]
