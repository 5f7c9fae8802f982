"""The normal form of a concept expression: the shape the energy program is planned from.

Weights and negations move outward: every And/Or child is a term ``(w, sign, body)``
(:func:`conceptalg.expr.split_term`), double negations vanish, nested Ors of weight 1 are
flattened. Under ``product`` and ``guidance`` an And is a weighted sum and ``~`` a sign, so
nested Ands are flattened through weights *and* negations (``c & ~(a & ~b)`` is ``c & ~a & b``,
``2 * (~a & ~b)`` is ``2 * ~a & 2 * ~b``); under ``logic`` only through weights
(``P(a ∧ b)^w = P(a)^w P(b)^w``). Repeated And terms fold into one weight (``a & a`` is
``2 * a``). Pure: no tensors, cached by expression.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from ..errors import CompileError
from ..expr import And, Concept, Expr, Not, Or, Weighted, as_expr, split_term

__all__ = ["normal_form", "SEMANTICS"]

SEMANTICS = ("product", "guidance", "logic")


def _check_semantics(semantics: str) -> None:
    if semantics not in SEMANTICS:
        raise CompileError(f"unknown semantics {semantics!r}; choose one of "
                           f"{', '.join(SEMANTICS)}")


@dataclass(frozen=True)
class _Term:
    weight: float
    sign: int
    body: Any  # Concept | _NAnd | _NOr


@dataclass(frozen=True)
class _NAnd:
    terms: tuple  # of _Term


@dataclass(frozen=True)
class _NOr:
    terms: tuple  # of _Term


@functools.lru_cache(maxsize=512)
def _normal_form(expr: Expr, linear: bool) -> _Term:
    return _nf_term(expr, linear)


def _nf_term(e: Expr, linear: bool) -> _Term:
    w, s, body = split_term(e)
    if isinstance(body, Concept):
        return _Term(w, s, body)
    if isinstance(body, Or):
        return _Term(w, s, _NOr(tuple(_or_children(body, linear))))
    if s > 0 or linear:  # the weight (and, when linear, the sign) distributes over the And
        terms = _merge(_and_children(body, w, s, linear))
        return terms[0] if len(terms) == 1 else _Term(1.0, 1, _NAnd(terms))
    return _Term(w, s, _NAnd(_merge(_and_children(body, 1.0, 1, linear))))


def _and_children(node: And, w: float, s: int, linear: bool):
    for t in node.terms:
        tw, ts, tb = split_term(t)
        weight, sign = w * tw, s * ts
        if isinstance(tb, And):
            if sign > 0 or linear:
                yield from _and_children(tb, weight, sign, linear)
            else:
                yield _Term(weight, sign, _NAnd(_merge(_and_children(tb, 1.0, 1, linear))))
        elif isinstance(tb, Or):
            yield _Term(weight, sign, _NOr(tuple(_or_children(tb, linear))))
        else:
            yield _Term(weight, sign, tb)


def _or_children(node: Or, linear: bool):
    for t in node.terms:
        term = _nf_term(t, linear)
        if term.weight == 1.0 and term.sign > 0 and isinstance(term.body, _NOr):
            yield from term.body.terms
        else:
            yield term


def _merge(terms) -> tuple:
    """Fold repeated terms with the same sign and body into one weight (``a & a`` → ``2 * a``)."""
    totals: dict[tuple, float] = {}
    for t in terms:
        totals[(t.sign, t.body)] = totals.get((t.sign, t.body), 0.0) + t.weight
    return tuple(_Term(w, s, b) for (s, b), w in totals.items())


def _to_expr(node: Any) -> Expr:
    if isinstance(node, _Term):
        core = _to_expr(node.body)
        core = core if node.sign > 0 else Not(core)
        return core if node.weight == 1.0 else Weighted(node.weight, core)
    if isinstance(node, _NAnd):
        parts = [_to_expr(t) for t in node.terms]
        return parts[0] if len(parts) == 1 else And(*parts)
    if isinstance(node, _NOr):
        return Or(*[_to_expr(t) for t in node.terms])
    return node


def normal_form(expr: Expr | str, semantics: str = "product") -> Expr:
    """The normal form of ``expr`` under ``semantics``, as an expression (module docstring).

    Example:
        >>> str(normal_form("c & ~(a & ~b) | ~~d"))
        'c & ~a & b | d'
        >>> str(normal_form("c & ~(a & ~b)", "logic"))
        'c & ~(a & ~b)'
    """
    expr = as_expr(expr)
    _check_semantics(semantics)
    return _to_expr(_normal_form(expr, semantics != "logic"))

