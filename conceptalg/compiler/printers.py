"""Printers for humans: the text of ``explain()`` (leaves and formula).

Reads compiled programs (:class:`~conceptalg.compiler.program.Program`): one for
:meth:`ComposedEnergy.explain` (:func:`describe`), one per branch for
:meth:`MixtureEnergy.explain` (:func:`describe_mixture`). It imports neither module that runs
them, and nothing here is used to compute energies.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..expr import Concept, Expr, format_number
from .bindings import has_bindings
from .normalize import _NAnd, _NOr, _Term
from .plan import _LogOr
from .program import Program

__all__ = ["describe", "describe_mixture"]


def _num(w: float) -> str:
    return format_number(w)


def _fmt_linear(node: Any, sym: str, anchor: str, log_weights: dict) -> str:
    if isinstance(node, Concept):
        return f"{sym}[{node}]"
    if isinstance(node, _Term):
        if node.weight == 1.0 and node.sign > 0:
            return _fmt_linear(node.body, sym, anchor, log_weights)
        inner = _fmt_linear(node.body, sym, anchor, log_weights)
        inner = inner if node.weight == 1.0 else f"{_num(node.weight)}*{inner}"
        if node.sign > 0:
            return inner
        return f"{anchor} - {inner}" if anchor else f"-{inner}"
    if isinstance(node, _NAnd):
        parts = []
        for i, t in enumerate(node.terms):
            inner = _fmt_linear(t.body, sym, anchor, log_weights)
            inner = inner if t.weight == 1.0 else f"{_num(t.weight)}*{inner}"
            if i == 0:
                parts.append(inner if t.sign > 0 else f"-{inner}")
            else:
                parts.append(f"{'+' if t.sign > 0 else '-'} {inner}")
        if anchor and not any(t.sign > 0 for t in node.terms):
            parts.append(f"+ {anchor}")
        return " ".join(parts)
    children = []
    for t in node.terms:
        text = _fmt_linear(t, sym, anchor, log_weights)
        if log_weights:
            text += f" @ {_num(log_weights.get(t, 0.0))}"
        children.append(text)
    return f"softmin({', '.join(children)})"


def _is_plain(t: _Term) -> bool:
    return t.weight == 1.0 and t.sign > 0


def _fmt_prob(node: Any) -> str:
    if isinstance(node, Concept):
        return f"P[{node}]"
    if isinstance(node, _Term):
        core = _fmt_prob(node.body)
        if isinstance(node.body, _NOr):
            core = f"({core})"
        if node.sign < 0:
            core = f"(1 - {core})"
        elif isinstance(node.body, (_NAnd, _NOr)) and node.weight != 1.0:
            core = f"({core})"
        return core if node.weight == 1.0 else f"{core}^{_num(node.weight)}"
    if isinstance(node, _NAnd):
        return " * ".join(_fmt_prob(t) for t in node.terms)
    return "1 - " + "*".join(f"(1 - {_fmt_prob(t)})" for t in node.terms)


def _product_formula(program: Program) -> list[str]:
    return [f"E = {_fmt_linear(program.nf, 'E', 'E_0', program.log_weights)}"]


def _guidance_formula(program: Program) -> list[str]:
    w = program.guidance_scale
    scaled = "D" if w == 1.0 else f"{_num(w)}*D"
    lines = [f"E = E_0 + {scaled},  D[c] = E[c] - E_0",
             f"D = {_fmt_linear(program.nf, 'D', '', program.log_weights)}"]
    if program.negation_gated:
        lines.append(_negation_line(program))
    return lines


def _logic_formula(program: Program) -> list[str]:
    nf = program.nf
    return ["E = E_0 - log P   (computed in log space; log(1 - P) = log1mexp(log P))",
            f"P = {_fmt_prob(nf.body if _is_plain(nf) else nf)}",
            "P[c] = p(c|x), a classifier head"]


#: the formula's first lines, by semantics
_FORMULAS = {"product": _product_formula, "guidance": _guidance_formula,
             "logic": _logic_formula}


def _formula(program: Program) -> list[str]:
    lines = _FORMULAS[program.semantics.name](program)
    if not program.semantics.linear:
        return lines
    lw = program.log_weights
    if program.has_or:
        tau = program.or_temperature
        scaled = "e_i" if tau == 1.0 else f"e_i/{_num(tau)}"
        outer = "-" if tau == 1.0 else f"-{_num(tau)}*"
        if lw:
            lines.append(f"softmin(e_1 @ l_1, ..., e_k @ l_k) = {outer}logsumexp_i(l_i - {scaled})"
                         f"   (l_i: OR log-weights)")
        else:
            lines.append(f"softmin(e_1, ..., e_k) = {outer}logsumexp_i(-{scaled})")
    if program.score_only:
        lines.append("score only: E has no values here; ComposedEnergy.score gives -grad_x E")
    return lines


def _sigma_range(bounds: tuple[float, float]) -> str:
    lo, hi = bounds
    return f"{_num(lo)} <= σ" + ("" if hi == float("inf") else f" <= {_num(hi)}")


def _negation_line(program: Program) -> str:
    """How guidance's negated terms are weighted, and at which noise levels they count."""
    nu, bounds = program.negation_scale, program.negation_sigmas
    parts = []
    if nu != 1.0:
        parts.append(f"weight x {_num(nu)} (negation_scale)")
    if bounds is not None:
        parts.append(f"counted only at {_sigma_range(bounds)} (negation_sigmas; dropped at "
                     f"other levels)")
    return "negated terms: " + ", ".join(parts)


def _view(head: Any) -> str | None:
    """The factor view a model head reads (``ModelConfig.views``), or ``None`` for the identity
    view and for sources that declare none."""
    name = head.head if isinstance(head.head, str) else head.key
    factor = name.split("=", 1)[0] if "=" in name else None
    view_of = getattr(getattr(head.source, "config", None), "view_of", None)
    if factor is None or not callable(view_of):
        return None
    view = view_of(factor)
    return view if isinstance(view, str) and view != "identity" else None


def _semantics_line(program: Program) -> str:
    notes = []
    if program.semantics_from_library:
        notes.append("the library's default")
    if program.guidance_scale is not None:
        notes.append(f"guidance scale {_num(program.guidance_scale)}")
    if program.negation_scale not in (None, 1.0):
        notes.append(f"negation scale {_num(program.negation_scale)}")
    if program.negation_sigmas is not None:
        notes.append(f"negations at {_sigma_range(program.negation_sigmas)}")
    if program.or_temperature != 1.0:
        notes.append(f"or_temperature {_num(program.or_temperature)}")
    return (f"semantics:   {program.semantics.name}"
            + (f" ({'; '.join(notes)})" if notes else ""))


def _leaf_lines(rows: list, sizes: dict) -> list[str]:
    """One line per leaf ``(text, head)``: what computes it and how (``sizes``: heads per
    batched call)."""
    width = max(len(r[0]) for r in rows)
    lines = []
    for text, head in rows:
        extra = []
        size = sizes.get((id(head.source), head.method), 0)
        if head.kind == "log_prob":
            extra.append("classifier head: log p(c|x)")
        view = _view(head)
        if view is not None:
            extra.append(f"view: {view}")
        if head.kind == "score":
            extra.append("score only: -grad E")
        if head.sigma_aware:
            extra.append("σ-aware")
        if head.temperature != 1.0:
            extra.append(f"T={head.temperature:g}, exposed as E/T")
        if head.batched and size > 1:
            extra.append(f"batched: 1 call for {size} heads")
        note = f"  ({'; '.join(extra)})" if extra else ""
        lines.append(f"  {text:<{width}}  {head.computed_by()}{note}")
    return lines


def _leaf_rows(program: Program) -> list:
    rows = [(leaf.text, leaf.head) for leaf in program.leaves]
    if program.base is not None:
        rows.append(("E_0", program.base))
    return rows


def _or_method(program: Program) -> list[str]:
    """How the ORs of a single energy are computed, and their weights."""
    if not program.semantics.linear:
        if not any(isinstance(op, _LogOr) for op in program.ops):
            return []
        return ["OR method:   exact noisy-or of probabilities, "
                "P(a | b) = 1 - (1 - P(a))(1 - P(b)) (no branch weights)"]
    if not program.disjuncts:
        return []
    tau = program.or_temperature
    if tau == 1.0:
        mass = ["disjunct i carries mass ∝ exp(l_i)·Z_i, Z_i = ∫exp(-E_i) not assumed equal",
                "(calibrate() estimates them)"]
    else:
        mass = ["a sharpened soft minimum: no mixture of the disjuncts"]
    lines = [f"OR method:   exact -τ logsumexp of energies (τ = {_num(tau)})",
             *(f"             {line}" for line in mass),
             "OR weights (l_i, the log-weight of disjunct i):"]
    rows = program.disjunct_log_weights
    width = max(len(_num(v)) for v in rows.values())
    lines.extend(f"  l = {_num(v):<{width}}  {text}" for text, v in rows.items())
    return lines


def describe(program: Program) -> str:
    """The text of :meth:`ComposedEnergy.explain`: expression, the semantics in force, normal
    form, the leaves (what computes each, which share a batched call, which take ``sigma`` or
    give only a score), the formula and, for an OR, the method and its weights.

    Example:
        >>> from conceptalg.compiler.program import compile_program
        >>> print(describe(compile_program("2 * a", {"a": abs})))
        expression:  2 * a
        semantics:   product
        normal form: 2 * a
        leaves (1, evaluated in 1 call):
          a  function abs
        formula:
          E = 2*E[a]
    """
    calls = program.calls
    lines = [f"expression:  {program.expr}", _semantics_line(program),
             f"normal form: {program.normal_form}",
             *(["bindings:    at(p)[E] = at(p) & E@p: an object at p, of which E holds "
                "(E@p: the object heads, reading a window around p)"]
               if has_bindings(program.expr) else []),
             f"leaves ({len(program.leaves)}, evaluated in {len(calls)} "
             f"call{'s' if len(calls) != 1 else ''}):"]
    sizes = {(id(c.source), c.method): len(c.heads) for c in calls if c.batched}
    lines.extend(_leaf_lines(_leaf_rows(program), sizes))
    lines.append("formula:")
    lines.extend("  " + line for line in _formula(program))
    lines.extend(_or_method(program))
    return "\n".join(lines)


def describe_mixture(expr: Expr, normal_form: Expr, reason: str, leaves: Sequence[str],
                     branches: Sequence[Program], weights: Sequence[float]) -> str:
    """The text of :meth:`MixtureEnergy.explain`: expression, semantics, the disjunctive normal
    form, the method and its assumption, the leaves of all branches (``leaves``, in order) and
    each branch's weight and formula. The branches share the mixture's settings, so the first
    one's give the semantics line; ``reason`` names the head that gives only a score."""
    k = len(branches)
    lines = [f"expression:  {expr}", _semantics_line(branches[0]),
             f"normal form: {normal_form}   (disjunctive: {k} branch"
             f"{'es' if k != 1 else ''})",
             "OR method:   mixture: a disjunct per chain, under equal partition functions",
             f"             ({reason} has only a score: the exact -logsumexp of "
             f"energies is out of reach)",
             "             a chain draws branch n with weight c_n / Σ_m c_m (c_n: exp of its OR",
             "             log-weights times its multinomial count) and runs on branch n's energy"]
    rows: dict = {}
    sizes: dict = {}
    for branch in branches:
        for text, head in _leaf_rows(branch):
            rows.setdefault(text, head)
        sizes.update({(id(c.source), c.method): len(c.heads) for c in branch.calls
                      if c.batched})
    order = {text: i for i, text in enumerate((*leaves, "E_0"))}
    rows = sorted(rows.items(), key=lambda r: order.get(r[0], len(order)))
    lines.append(f"leaves ({len(leaves)}):")
    lines.extend(_leaf_lines(rows, sizes))
    lines.append(f"branches ({k}):")
    width = max(len(f"{w:.4g}") for w in weights)
    for n, (branch, w) in enumerate(zip(branches, weights), 1):
        lines.append(f"  {n}. weight {w:<{width}.4g}  {branch.expr}")
        lines.extend(f"       {line}" for line in _formula(branch)
                     if not line.startswith("score only"))
    lines.append("score only: the mixture has no single E or score; conceptalg.sample draws "
                 "each chain's branch")
    return "\n".join(lines)
