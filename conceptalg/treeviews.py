"""Structured views of a concept expression: a JSON-ready dict (:func:`to_dict`, and back with
:func:`from_dict`) and an indented outline (:func:`format_tree`), as ``conceptalg parse``
prints them."""

from __future__ import annotations

from .expr import And, Bound, Concept, Expr, Not, Or, Weighted, _concept_text, format_number

__all__ = ["to_dict", "from_dict", "format_tree"]

def to_dict(expr: Expr) -> dict:
    """A JSON-ready dict of the tree (``{"type": "And", "terms": [...]}``; spans included).

    Example:
        >>> from conceptalg import parse
        >>> d = to_dict(parse("at(1, 2)[red]"))
        >>> d["type"], d["place"]["args"], d["body"]["name"], d["span"]
        ('Bound', [1.0, 2.0], 'red', [0, 13])
    """
    out: dict = {"type": type(expr).__name__}
    if isinstance(expr, Concept):
        out["name"] = expr.name
        if expr.factor is not None:
            out["factor"] = expr.factor
        if expr.args is not None:
            out["args"] = list(expr.args)
    elif isinstance(expr, Weighted):
        out["weight"] = expr.weight
        out["expr"] = to_dict(expr.expr)
    elif isinstance(expr, Not):
        out["expr"] = to_dict(expr.expr)
    elif isinstance(expr, Bound):
        out["place"] = to_dict(expr.place)
        out["body"] = to_dict(expr.body)
    else:
        out["terms"] = [to_dict(t) for t in expr.children()]
    if expr.span is not None:
        out["span"] = list(expr.span)
    return out


def from_dict(data: dict) -> Expr:
    """Inverse of :func:`to_dict`."""
    kind = data["type"]
    span = data.get("span")
    if kind == "Concept":
        return Concept(data["name"], data.get("factor"), data.get("args"), span=span)
    if kind == "Weighted":
        return Weighted(data["weight"], from_dict(data["expr"]), span=span)
    if kind == "Not":
        return Not(from_dict(data["expr"]), span=span)
    if kind == "Bound":
        return Bound(from_dict(data["place"]), from_dict(data["body"]), span=span)
    if kind in ("And", "Or"):
        cls = And if kind == "And" else Or
        return cls(*[from_dict(t) for t in data["terms"]], span=span)
    raise ValueError(f"unknown node type {kind!r}")


def format_tree(expr: Expr, indent: str = "  ") -> str:
    """An indented outline of the tree, one node per line; a binding's line names its place
    and its body is indented below it, as a weight's line names the weight.

    Example:
        >>> from conceptalg import parse
        >>> print(format_tree(parse("2*~red & circle")))
        And
          Weighted 2
            Not
              Concept red
          Concept circle
        >>> print(format_tree(parse("~at(0.3, 0.3)[red & circle]")))
        Not
          Bound at(0.3, 0.3)
            And
              Concept red
              Concept circle
    """
    lines: list[str] = []
    stack: list[tuple[Expr, int]] = [(expr, 0)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, Concept):
            label = f"Concept {_concept_text(node)}"
        elif isinstance(node, Weighted):
            label = f"Weighted {format_number(node.weight)}"
        elif isinstance(node, Bound):
            label = f"Bound {_concept_text(node.place)}"
        else:
            label = type(node).__name__
        lines.append(indent * level + label)
        children = (node.body,) if isinstance(node, Bound) else node.children()
        stack.extend((child, level + 1) for child in reversed(children))
    return "\n".join(lines)
