"""Bindings: ``at(p)[E]`` — an object at a place, of which ``E`` holds (docs/design.md §4).

A binding is lowered before anything else is compiled: ``at(p)[E]`` becomes ``at(p) & E@p``,
where every concept ``c`` of ``E`` becomes the bound concept ``c@p`` (:class:`BoundConcept`):
the property ``c`` of *the object at* ``p``, a leaf of its own that the library resolves to the
place's object head (:meth:`conceptalg.library.ConceptLibrary.resolve_bound`) evaluated at the
place's arguments. Under ``logic`` this is exactly "P(object at p) · P(E | the object at p)":
``~at(p)[red]`` is ``1 − P(at p)·P(red@p)`` ("no red object at p") and ``at(p)[~red]`` is
``P(at p)·(1 − P(red@p))`` ("the object at p is not red"). ``product`` and ``guidance`` have no
probability of the object at a place to multiply by, so they refuse bindings.
"""

from __future__ import annotations

from ..errors import CompileError
from ..expr import And, Bound, Concept, Expr, Not, Or, Weighted

__all__ = ["BoundConcept", "lower_bindings", "has_bindings", "check_binding_semantics"]


class BoundConcept(Concept):
    """The concept ``concept`` of the object at ``place``, printed ``red@at(0.3, 0.3)``: a leaf
    whose arguments are the place's (it is evaluated at the place). Made by
    :func:`lower_bindings`; it has no syntax of its own (write ``at(0.3, 0.3)[red]``).

    Example:
        >>> b = BoundConcept(Concept("red"), Concept("at", args=(0.3, 0.3)))
        >>> str(b), b.args, b == BoundConcept(Concept("red"), Concept("at", args=(0.3, 0.3)))
        ('red@at(0.3, 0.3)', (0.3, 0.3), True)
        >>> b == Concept("red")
        False
    """

    __slots__ = ("place",)

    def __init__(self, concept: Concept, place: Concept, *, span=None) -> None:
        super().__init__(concept.name, concept.factor, span=concept.span if span is None
                         else span)
        object.__setattr__(self, "place", place)
        object.__setattr__(self, "args", place.args)  # evaluated at the place's arguments

    @property
    def concept(self) -> Concept:
        """The property without its place (``red``)."""
        return Concept(self.name, self.factor)

    def _args(self):
        return (self.concept, self.place)

    def __repr__(self) -> str:
        return f"BoundConcept({self.concept!r}, {self.place!r})"


def has_bindings(expr: Expr) -> bool:
    """Whether ``expr`` holds a binding anywhere."""
    if isinstance(expr, Bound):
        return True
    return any(has_bindings(child) for child in expr.children())


def check_binding_semantics(expr: Expr, semantics: str) -> None:
    """Refuse a binding outside ``logic`` (module docstring)."""
    if semantics != "logic" and has_bindings(expr):
        raise CompileError(f"a binding (`{_first(expr)}`) composes under semantics='logic' only "
                           f"(\"P(object at p) · P(E | the object at p)\"): {semantics} has no "
                           f"probability of the object at a place; use semantics='logic' or the "
                           f"model's own default (semantics=None)")


def _first(expr: Expr) -> Bound:
    if isinstance(expr, Bound):
        return expr
    return next(_first(c) for c in expr.children() if has_bindings(c))


def lower_bindings(expr: Expr) -> Expr:
    """``expr`` with every binding ``place[body]`` replaced by ``place & body@place``
    (module docstring); an expression without bindings comes back as it is.

    Example:
        >>> from conceptalg import parse
        >>> str(lower_bindings(parse("~at(0.3, 0.3)[red & ~circle] & at(0.7, 0.7)")))
        '~(at(0.3, 0.3) & red@at(0.3, 0.3) & ~circle@at(0.3, 0.3)) & at(0.7, 0.7)'
    """
    if not has_bindings(expr):
        return expr
    if isinstance(expr, Bound):
        return And(expr.place, _bind(expr.body, expr.place), span=expr.span)
    if isinstance(expr, Not):
        return Not(lower_bindings(expr.expr), span=expr.span)
    if isinstance(expr, Weighted):
        return Weighted(expr.weight, lower_bindings(expr.expr), span=expr.span)
    cls = And if isinstance(expr, And) else Or
    return cls(*[lower_bindings(t) for t in expr.terms], span=expr.span)


def _bind(expr: Expr, place: Concept) -> Expr:
    """``expr`` with every concept made a property of the object at ``place``."""
    if isinstance(expr, Concept):
        if expr.is_parametric:
            raise CompileError(f"`{expr}` inside `{place}[...]`: a binding's body names "
                               f"properties of the object at the place (like red, circle); "
                               f"put other places beside the binding with &")
        return BoundConcept(expr, place)
    if isinstance(expr, Not):
        return Not(_bind(expr.expr, place), span=expr.span)
    if isinstance(expr, Weighted):
        return Weighted(expr.weight, _bind(expr.expr, place), span=expr.span)
    cls = And if isinstance(expr, And) else Or
    return cls(*[_bind(t, place) for t in expr.terms], span=expr.span)
