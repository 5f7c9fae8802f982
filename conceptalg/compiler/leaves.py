"""The leaves of an expression: what each distinct concept resolves to.

Resolution asks the library for each concept's :class:`~conceptalg.heads.Head` and makes one
:class:`Leaf` per distinct (head, arguments): two spellings of one head (``red`` and
``color=red``) are one leaf, evaluated once. The energy program reads leaves by their index
(slots ``0 .. n_leaves − 1``, :mod:`.plan`); the calls that evaluate them are grouped by
:mod:`.calls`. A property of the object at a place (a binding's leaf,
:class:`.bindings.BoundConcept`) resolves through the library's ``resolve_bound`` and is
evaluated at the place's arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import CompileError, ConceptArgumentError, UnknownConceptError
from ..expr import Concept, Expr, concepts
from ..heads import Head
from ..syntax import argument_position, error_position
from .bindings import BoundConcept

__all__ = ["Leaf", "resolve_leaves"]


@dataclass(frozen=True)
class Leaf:
    """One distinct leaf of an expression: ``text`` (the DSL spelling of its first occurrence),
    the ``head`` that computes it, and its numeric ``args`` (``None``: not parametric).

    Example:
        >>> from conceptalg import parse
        >>> from conceptalg.library import ConceptLibrary
        >>> lib = ConceptLibrary({"color=red": abs, "at": lambda x, a: x})
        >>> leaves, leaf_of = resolve_leaves(parse("red & at(0.5) & color=red"), lib)
        >>> [(leaf.text, leaf.head.key, leaf.args) for leaf in leaves]
        [('red', 'color=red', None), ('at(0.5)', 'at', (0.5,))]
        >>> sorted(leaf_of.values())  # red and color=red are one leaf
        [0, 0, 1]
    """

    text: str
    head: Head
    args: tuple | None


def resolve_leaves(expr: Expr, library: Any, text: str | None = None, *,
                   shown: Expr | None = None) -> tuple[list[Leaf], dict[Concept, int]]:
    """The distinct leaves (one per head and arguments) and each concept's leaf index; every
    unknown name is reported at once (a property bound to a place that failed is not reported
    again), naming ``shown`` (default ``expr``: the expression as the user wrote it, before
    bindings were lowered). When only arguments are wrong, the first such concept is a
    :class:`ConceptArgumentError` placed in ``text`` (the expression's source, if it was text)
    under the concept or its offending argument."""
    leaves: list[Leaf] = []
    index: dict[tuple, int] = {}
    leaf_of: dict[Concept, int] = {}
    problems: list[str] = []
    misfits: list[tuple[Concept, ConceptArgumentError]] = []
    failed: set[Concept] = set()
    unknown = False
    for c in concepts(expr):
        if isinstance(c, BoundConcept) and c.place in failed:
            continue
        try:
            head = _resolve(library, c)
        except UnknownConceptError as e:
            problems.append(str(e))
            unknown = True
            failed.add(c)
            continue
        except ConceptArgumentError as e:
            problems.append(e.message)
            misfits.append((c, e))
            failed.add(c)
            continue
        except CompileError as e:
            problems.append(str(e))
            failed.add(c)
            continue
        key = (head, c.args)
        if key not in index:
            index[key] = len(leaves)
            leaves.append(Leaf(str(c), head, c.args))
        leaf_of[c] = index[key]
    if misfits and len(misfits) == len(problems):
        raise _placed(*misfits[0], text) from None
    if problems:
        cls = UnknownConceptError if unknown else CompileError
        raise cls("\n".join(problems) + f"\n  in `{expr if shown is None else shown}`") from None
    return leaves, leaf_of


def _resolve(library: Any, c: Concept) -> Head:
    """``c``'s head: a property of the object at a place (:class:`.bindings.BoundConcept`)
    through the library's ``resolve_bound``, any other concept through ``resolve``."""
    if not isinstance(c, BoundConcept):
        return library.resolve(c)
    resolve_bound = getattr(library, "resolve_bound", None)
    if resolve_bound is None:
        raise UnknownConceptError(f"`{c.place}[...]`: {type(library).__name__} has no "
                                  f"properties of objects, so nothing can be bound to a place")
    return resolve_bound(c.concept, c.place)


def _placed(c: Concept, e: ConceptArgumentError, text: str | None) -> ConceptArgumentError:
    """``e`` with the line, column and caret of ``c`` (or of its offending argument) in
    ``text``; as it is when there is no text or ``c`` has no span."""
    if text is None or c.span is None:
        return e
    pos = c.span[0] if e.argument is None else argument_position(text, c.span, e.argument)
    return ConceptArgumentError(e.message, argument=e.argument, **error_position(text, pos))


