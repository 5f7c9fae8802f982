"""The abstract syntax tree of concept expressions.

Six immutable, hashable node kinds: :class:`Concept` (a leaf), :class:`Not`, :class:`Weighted`,
:class:`And`, :class:`Or` and :class:`Bound` (``at(0.3, 0.3)[red & circle]``: properties bound
to the object at a place). Every node may carry the source ``span`` ``(start, end)`` it was
parsed from; spans are ignored by ``==`` and ``hash``. ``And``/``Or`` flatten children of their
own kind and ``Weighted`` multiplies nested weights, so the parser, the Python operators
(``&``, ``|``, ``~``, ``w * e``) and the printer agree: ``parse(str(e)) == e``.

``str(e)`` prints canonical DSL text; ``repr(e)`` prints the constructor form.
"""

from __future__ import annotations

import math
import re
from typing import Callable, Iterator, Sequence

__all__ = [
    "Expr", "Concept", "Not", "Weighted", "And", "Or", "Bound",
    "simplify", "concepts", "format_number", "RESERVED",
]

RESERVED = frozenset({"and", "or", "not"})
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_NUMBER_RE = re.compile(r"([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?\Z")

def is_name(text: str) -> bool:
    """True when ``text`` can be written as a bare concept name (an identifier, not reserved)."""
    return bool(_NAME_RE.match(text)) and text not in RESERVED


def format_number(value: float) -> str:
    """The shortest text that the grammar reads back as exactly ``value`` (``2``, ``0.5``, ``1e+22``)."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _check_weight(weight: object) -> float:
    try:
        if isinstance(weight, (bool, str, bytes)):
            raise TypeError
        w = float(weight)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TypeError(f"a weight must be a real number, got {weight!r}") from None
    if not math.isfinite(w):
        raise ValueError(f"weight must be finite, got {w!r}")
    if w <= 0:
        raise ValueError(f"weight must be > 0, got {w!r} (negate a concept with ~, not a "
                         "negative weight)")
    return w


class Expr:
    """Base class of every node. Immutable; equality and hash ignore ``span``."""

    __slots__ = ("span", "_hash")
    _PRECEDENCE = 0  # binding strength used by the printer: Or 1, And 2, unary 3, atom 4

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} nodes are immutable")

    def __delattr__(self, name):
        raise AttributeError(f"{type(self).__name__} nodes are immutable")

    def _init_span(self, span) -> None:
        object.__setattr__(self, "span", None if span is None else (int(span[0]), int(span[1])))
        object.__setattr__(self, "_hash", None)

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if type(self) is not type(other):
            return NotImplemented
        return hash(self) == hash(other) and self._args() == other._args()  # type: ignore

    def __hash__(self) -> int:
        h = self._hash
        if h is None:
            h = hash((type(self).__name__, self._args()))
            object.__setattr__(self, "_hash", h)
        return h

    def __reduce__(self):
        return (_rebuild, (type(self), self._args(), self.span))

    def _args(self) -> tuple:  # the constructor's arguments: equality, hash and pickling
        raise NotImplementedError

    def children(self) -> tuple["Expr", ...]:
        """The direct sub-expressions of this node (empty for a concept)."""
        return ()

    # --- Python operators build the same trees as the parser -------------------------------
    def __and__(self, other: "Expr | str") -> "And":
        return And(self, as_expr(other))

    def __rand__(self, other: "Expr | str") -> "And":
        return And(as_expr(other), self)

    def __or__(self, other: "Expr | str") -> "Or":
        return Or(self, as_expr(other))

    def __ror__(self, other: "Expr | str") -> "Or":
        return Or(as_expr(other), self)

    def __invert__(self) -> "Not":
        return Not(self)

    def __mul__(self, weight: float) -> "Weighted":
        if isinstance(weight, Expr):
            raise TypeError("a weight multiplies one term by a number; combine concepts with &")
        return Weighted(weight, self)

    __rmul__ = __mul__

    def __str__(self) -> str:
        return _to_text(self)


def _rebuild(cls, args, span):
    return cls(*args, span=span)


# The parser (conceptalg.syntax) builds these nodes, so this module must not import it: the
# parser registers itself here instead (``import conceptalg`` always imports it), and the
# operators and constructors read text through it (``Concept("a") & "b | c"``).
_read_text: Callable[[str], "Expr"] | None = None


def register_parser(parse: Callable[[str], "Expr"]) -> None:
    """Make :func:`as_expr` read text with ``parse`` (``conceptalg.syntax`` registers its
    ``parse`` when imported; nothing else needs to call this).

    Example:
        >>> from conceptalg.syntax import parse
        >>> register_parser(parse)
        >>> Concept("a") & "b | c"
        And(Concept('a'), Or(Concept('b'), Concept('c')))
    """
    global _read_text
    _read_text = parse


def as_expr(value: "Expr | str") -> Expr:
    """``value`` itself if it is an expression, else its text parsed (a ``TypeError`` for
    anything else).

    Example:
        >>> as_expr("red & ~blue") == And(Concept("red"), Not(Concept("blue")))
        True
    """
    if isinstance(value, Expr):
        return value
    if isinstance(value, str):
        if _read_text is None:  # only when this module is loaded outside its package
            raise RuntimeError("reading expression text needs conceptalg.syntax: import "
                               "conceptalg first")
        return _read_text(value)
    raise TypeError(f"expected a concept expression or its text, got {type(value).__name__} "
                    f"{value!r}")


class Concept(Expr):
    """A leaf: a concept name, optionally qualified by a factor or given numeric arguments.

    ``Concept("red")`` is ``red``; ``Concept("red", factor="color")`` is ``color=red``;
    ``Concept("at", args=(0.3, -0.7))`` is the parametric concept ``at(0.3, -0.7)``.
    ``key`` is the name a plain ``dict`` of energies uses: ``"red"``, ``"color=red"``, ``"at"``.

    Example:
        >>> str(Concept("red", factor="color") & Concept("at", args=(0.5, 0.25)))
        'color=red & at(0.5, 0.25)'
    """

    __slots__ = ("name", "factor", "args")
    _PRECEDENCE = 4

    def __init__(self, name: str, factor: str | None = None,
                 args: Sequence[float] | None = None, *, span=None) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a concept name must be a non-empty string, got {name!r}")
        if "\n" in name:
            raise ValueError(f"a concept name cannot contain a line break, got {name!r}")
        if factor is not None:
            if not isinstance(factor, str) or not is_name(factor):
                raise ValueError(f"a factor must be an identifier that is not a reserved word, "
                                 f"got {factor!r}")
            if args is not None:
                raise ValueError("a concept cannot have both a factor and arguments")
        if args is not None:
            if not is_name(name):
                raise ValueError(f"a parametric concept needs an identifier name, got {name!r}")
            checked = []
            for a in args:
                try:
                    if isinstance(a, (bool, str)):
                        raise TypeError
                    a = float(a)
                except (TypeError, ValueError):
                    raise TypeError(f"arguments of {name}(...) must be numbers, got {a!r}") from None
                if not math.isfinite(a):
                    raise ValueError(f"arguments of {name}(...) must be finite, got {a!r}")
                checked.append(a)
            args = tuple(checked)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "factor", factor)
        object.__setattr__(self, "args", args)
        self._init_span(span)

    @property
    def key(self) -> str:
        """The lookup key: ``name``, ``factor=name`` or (parametric) just ``name``."""
        return f"{self.factor}={self.name}" if self.factor is not None else self.name

    @property
    def is_parametric(self) -> bool:
        return self.args is not None

    def _args(self):
        return (self.name, self.factor, self.args)

    def __getitem__(self, body: "Expr | str") -> "Bound":
        """``at(0.3, 0.3)[red & circle]`` in Python: the object at this place, of which
        ``body`` holds (:class:`Bound`)."""
        return Bound(self, body)

    def __repr__(self) -> str:
        extra = ""
        if self.factor is not None:
            extra = f", factor={self.factor!r}"
        if self.args is not None:
            extra = f", args={self.args!r}"
        return f"Concept({self.name!r}{extra})"


class Not(Expr):
    """Negation ``~e``. ``Not(Not(e))`` is kept as written; :func:`simplify` removes it."""

    __slots__ = ("expr",)
    _PRECEDENCE = 3

    def __init__(self, expr: Expr, *, span=None) -> None:
        object.__setattr__(self, "expr", _check_node(expr, "Not"))
        self._init_span(span)

    def children(self):
        return (self.expr,)

    def _args(self):
        return (self.expr,)

    def __repr__(self) -> str:
        return f"Not({self.expr!r})"


class Weighted(Expr):
    """A term scaled by a finite positive weight, ``w * e``. Nested weights multiply.

    Example:
        >>> Weighted(2, Weighted(3, Concept("a"))) == Weighted(6, Concept("a"))
        True
    """

    __slots__ = ("weight", "expr")
    _PRECEDENCE = 3

    def __init__(self, weight: float, expr: Expr, *, span=None) -> None:
        w = _check_weight(weight)
        expr = _check_node(expr, "Weighted")
        if isinstance(expr, Weighted):
            w = _check_weight(w * expr.weight)
            expr = expr.expr
        object.__setattr__(self, "weight", w)
        object.__setattr__(self, "expr", expr)
        self._init_span(span)

    def children(self):
        return (self.expr,)

    def _args(self):
        return (self.weight, self.expr)

    def __repr__(self) -> str:
        return f"Weighted({self.weight!r}, {self.expr!r})"


class _Nary(Expr):
    __slots__ = ("terms",)
    _SYMBOL = ""

    def __init__(self, *terms: Expr, span=None) -> None:
        if len(terms) == 1 and isinstance(terms[0], (list, tuple)):
            terms = tuple(terms[0])
        flat: list[Expr] = []
        for t in terms:
            t = _check_node(t, type(self).__name__)
            if type(t) is type(self):
                flat.extend(t.terms)  # type: ignore[attr-defined]
            else:
                flat.append(t)
        if len(flat) < 2:
            raise ValueError(f"{type(self).__name__} needs at least 2 terms, got {len(flat)}")
        object.__setattr__(self, "terms", tuple(flat))
        self._init_span(span)

    def children(self):
        return self.terms

    def _args(self):
        return self.terms

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(map(repr, self.terms))})"

    def __iter__(self) -> Iterator[Expr]:
        return iter(self.terms)

    def __len__(self) -> int:
        return len(self.terms)


class And(_Nary):
    """Conjunction ``a & b & ...`` (sum of energies under the product semantics)."""

    __slots__ = ()
    _PRECEDENCE = 2
    _SYMBOL = " & "


class Or(_Nary):
    """Disjunction ``a | b | ...`` (a soft minimum, ``-logsumexp(-E)``, of energies)."""

    __slots__ = ()
    _PRECEDENCE = 1
    _SYMBOL = " | "


class Bound(Expr):
    """A binding ``place[body]``: "an object at ``place`` of which ``body`` holds" —
    ``at(0.3, 0.3)[red & circle]`` is a red circle at (0.3, 0.3). ``place`` is a parametric
    concept that names a place (whether it does is the concept library's to say, at compose
    time); ``body`` is any expression without a binding in it. A bound term composes like an
    atom (``~at(p)[red]`` is "no red object at p"; ``at(p)[~red]`` "the object at p is not
    red"). Semantics: docs/design.md §4.

    Example:
        >>> b = Concept("at", args=(0.3, 0.3))[Concept("red") & Concept("circle")]
        >>> str(b), str(~b & Concept("at", args=(0.7, 0.7)))
        ('at(0.3, 0.3)[red & circle]', '~at(0.3, 0.3)[red & circle] & at(0.7, 0.7)')
    """

    __slots__ = ("place", "body")
    _PRECEDENCE = 4

    def __init__(self, place: Concept, body: Expr, *, span=None) -> None:
        if isinstance(place, Concept) and place.args == ():
            raise ValueError(f"{place!s} names no place: a place needs arguments, like "
                             f"at(0.3, 0.3)[red]; got {place!s}[...]")
        if not isinstance(place, Concept) or not place.args:
            raise ValueError(f"only a concept that names a place takes a body of properties, "
                             f"like at(0.3, 0.3)[red]; got {place!s}[...]"
                             if isinstance(place, Expr) else
                             f"a binding's place must be a parametric Concept, got {place!r}")
        body = _check_node(body, "Bound")
        nested = next((n for n in _walk(body) if isinstance(n, Bound)), None)
        if nested is not None:
            raise ValueError(f"a binding cannot hold another binding: {nested!s} inside "
                             f"{place!s}[...]; bind each object at its own place, joined by &")
        object.__setattr__(self, "place", place)
        object.__setattr__(self, "body", body)
        self._init_span(span)

    def children(self):
        return (self.place, self.body)

    def _args(self):
        return (self.place, self.body)

    def __repr__(self) -> str:
        return f"Bound({self.place!r}, {self.body!r})"


def _walk(expr: Expr) -> Iterator[Expr]:
    """Every node of ``expr``, depth first."""
    stack = [expr]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(node.children()))


NODE_TYPES = (Concept, Not, Weighted, And, Or, Bound)


def _check_node(value, where: str) -> Expr:
    if isinstance(value, str):
        return as_expr(value)
    if not isinstance(value, Expr):
        raise TypeError(f"{where} takes concept expressions, got {type(value).__name__} {value!r}")
    return value


# --- printing ------------------------------------------------------------------------------

def _concept_text(c: Concept) -> str:
    place = getattr(c, "place", None)  # a property of the object at a place (the compiler's)
    if place is not None:
        return f"{_concept_text(Concept(c.name, c.factor))}@{_concept_text(place)}"
    name = c.name
    if c.args is not None:
        return f"{name}({', '.join(format_number(a) for a in c.args)})"
    if c.factor is not None:
        value = name if (is_name(name) or _NUMBER_RE.match(name)) else _quote(name)
        return f"{c.factor}={value}"
    return name if is_name(name) else _quote(name)


def _to_text(e: Expr) -> str:
    if isinstance(e, Concept):
        return _concept_text(e)
    if isinstance(e, Not):
        return "~" + _wrap(e.expr, 3)
    if isinstance(e, Weighted):
        return f"{format_number(e.weight)} * {_wrap(e.expr, 3)}"
    if isinstance(e, Bound):
        return f"{_concept_text(e.place)}[{_to_text(e.body)}]"
    assert isinstance(e, _Nary)
    # a child of the same precedence is parenthesised: it can only be a nested And in an And
    # built by hand without flattening, which the constructors prevent, or an Or in an And.
    return e._SYMBOL.join(_wrap(t, e._PRECEDENCE + 1) for t in e.terms)


def _wrap(e: Expr, min_precedence: int) -> str:
    text = _to_text(e)
    return text if e._PRECEDENCE >= min_precedence else f"({text})"


# --- tree functions ------------------------------------------------------------------------

def concepts(expr: Expr) -> list[Concept]:
    """The distinct leaves of ``expr`` in order of first appearance (spans ignored). A
    binding's place and the leaves of its body are all listed: each is a concept to look up.

    Example:
        >>> from conceptalg import parse
        >>> [str(c) for c in concepts(parse("red & ~(blue | red) & at(0.5, 0.5)[red & square]"))]
        ['red', 'blue', 'at(0.5, 0.5)', 'square']
    """
    seen: dict[Concept, None] = {}
    stack = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, Concept):
            seen.setdefault(node, None)
        else:
            stack.extend(reversed(node.children()))
    return list(seen)


def split_term(e: Expr) -> tuple[float, int, Expr]:
    """Peel weights and negations off ``e``: ``(w, sign, body)`` with ``body`` a concept, a
    binding, an And or an Or.

    ``2 * ~(3 * a)`` gives ``(6.0, -1, a)``; ``~~a`` gives ``(1.0, +1, a)``; a binding is an
    atom, so ``~at(p)[2 * red]`` gives ``(1.0, -1, at(p)[2 * red])``. This is the
    "weights outward" step of the normal form (docs/design.md §4).
    """
    w, sign = 1.0, 1
    while True:
        if isinstance(e, Weighted):
            w *= e.weight
            e = e.expr
        elif isinstance(e, Not):
            sign = -sign
            e = e.expr
        else:
            return w, sign, e


def _term(w: float, sign: int, body: Expr) -> Expr:
    core = body if sign > 0 else Not(body)
    return core if w == 1.0 else Weighted(w, core)


def simplify(expr: Expr) -> Expr:
    """An equivalent, simpler tree: weights folded and moved outside negations, double
    negations removed, weight 1 dropped, repeated And terms folded into one weight
    (``a & a`` → ``2 * a``: AND is not idempotent, so repeats are never dropped). A binding is
    an atom whose body is simplified in place: its weights stay inside the brackets.

    Example:
        >>> from conceptalg import parse
        >>> str(simplify(parse("~~a & 2*~(3*b) & a")))
        '2 * a & 6 * ~b'
        >>> str(simplify(parse("at(1, 2)[~~red & red] & ~~at(1, 2)[2 * red]")))
        '2 * at(1, 2)[2 * red]'
    """
    w, sign, body = split_term(expr)
    if isinstance(body, And):
        totals: dict[tuple[int, Expr], float] = {}

        def add(term: Expr, scale: float) -> None:
            tw, ts, tb = split_term(term)
            if ts > 0 and isinstance(tb, And):  # `a & 2*(b & c)`: a positive weighted And
                for sub in tb.terms:            # merges, its weight on each of its terms
                    add(sub, scale * tw)        # (exact in every semantics: (P_b P_c)^2)
            else:
                totals[(ts, tb)] = totals.get((ts, tb), 0.0) + scale * tw

        for t in body.terms:
            add(simplify(t), 1.0)
        terms = [_term(tw, ts, tb) for (ts, tb), tw in totals.items()]
        body = terms[0] if len(terms) == 1 else And(*terms)
        if len(terms) == 1:  # the And folded into a single weighted term
            tw, ts, body = split_term(body)
            w, sign = w * tw, sign * ts
    elif isinstance(body, Or):
        body = Or(*[simplify(t) for t in body.terms])
    elif isinstance(body, Bound):
        body = Bound(body.place, simplify(body.body))
    return _term(w, sign, body)
