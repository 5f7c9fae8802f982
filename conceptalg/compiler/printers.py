"""Printers for humans: the text of :meth:`ComposedEnergy.explain` (leaves and formula).

Reads the normal form and the plan of a :class:`~conceptalg.compiler.energy.ComposedEnergy`
(which calls :func:`describe`; this module never imports it); nothing here is used to compute
energies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..expr import Concept, format_number
from .normalize import _NAnd, _NOr, _Term, _normal_form
from .plan import _SoftMin

if TYPE_CHECKING:
    from .energy import ComposedEnergy

__all__ = ["describe"]


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


def _formula(energy: ComposedEnergy) -> list[str]:
    nf = _normal_form(energy.expr, energy.semantics != "logic")
    if energy.semantics == "logic":
        return ["E = E_0 - log P   (computed in log space; log(1 - P) = log1mexp(log P))",
                f"P = {_fmt_prob(nf.body if _is_plain(nf) else nf)}",
                "P[c] = p(c|x), a classifier head"]
    lw = energy._log_weights
    if energy.semantics == "guidance":
        w = energy.guidance_scale
        scaled = "D" if w == 1.0 else f"{_num(w)}*D"
        lines = [f"E = E_0 + {scaled},  D[c] = E[c] - E_0", f"D = {_fmt_linear(nf, 'D', '', lw)}"]
    else:
        lines = [f"E = {_fmt_linear(nf, 'E', 'E_0', lw)}"]
    if any(isinstance(op, _SoftMin) for op in energy._ops):
        tau = energy.or_temperature
        scaled = "e_i" if tau == 1.0 else f"e_i/{_num(tau)}"
        outer = "-" if tau == 1.0 else f"-{_num(tau)}*"
        if lw:
            lines.append(f"softmin(e_1 @ l_1, ..., e_k @ l_k) = {outer}logsumexp_i(l_i - {scaled})"
                         f"   (l_i: OR log-weights)")
        else:
            lines.append(f"softmin(e_1, ..., e_k) = {outer}logsumexp_i(-{scaled})")
    if energy.score_only:
        lines.append("score only: E has no values here; ComposedEnergy.score gives -grad_x E")
    return lines


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


def describe(energy: ComposedEnergy) -> str:
    """The text of :meth:`ComposedEnergy.explain`: expression, the semantics in force, normal
    form, the leaves (what computes each, which share a batched call, which take ``sigma`` or
    give only a score) and the formula."""
    notes = []
    if energy.semantics_from_library:
        notes.append("the library's default")
    if energy.guidance_scale is not None:
        notes.append(f"guidance scale {_num(energy.guidance_scale)}")
    if energy.or_temperature != 1.0:
        notes.append(f"or_temperature {_num(energy.or_temperature)}")
    lines = [f"expression:  {energy.expr}",
             f"semantics:   {energy.semantics}" + (f" ({'; '.join(notes)})" if notes else ""),
             f"normal form: {energy.normal_form}",
             f"leaves ({len(energy._leaves)}, evaluated in {len(energy._calls)} "
             f"call{'s' if len(energy._calls) != 1 else ''}):"]
    sizes = {(id(c.source), c.method): len(c.heads) for c in energy._calls if c.batched}
    rows = [(leaf.text, leaf.head) for leaf in energy._leaves]
    if energy._base is not None:
        rows.append(("E_0", energy._base))
    width = max(len(r[0]) for r in rows)
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
    lines.append("formula:")
    lines.extend("  " + line for line in _formula(energy))
    return "\n".join(lines)
