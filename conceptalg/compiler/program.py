"""The compiled program of an expression: a frozen value that :class:`~.energy.ComposedEnergy`
runs and :mod:`.printers` shows.

:func:`compile_program` turns (expression, library, options) into a :class:`Program`: the
settings in force (the semantics object of :mod:`.semantics`, guidance scale ``w``, negation
scale and levels, OR temperature), the leaves (:mod:`.leaves`), the ops over value slots and
their root (:mod:`.plan`), the model calls (:mod:`.calls`), and — when the energy is linear in
its atoms — the root's coefficient on each atom, which ``score`` uses. Everything that can fail
by name or structure fails here (:mod:`.checks`), in a fixed order: semantics, negation
options, OR temperature, base, names and arguments, OR log-weights, scores, base.

**Caching.** A library is in general not hashable (a ``dict`` of functions is wrapped in a new
library on every call) and it is mutable (``set_base``, ``add_model``), so a key on its identity
would either never hit or give a stale program. The program is therefore built once per
:class:`ComposedEnergy`; the part that is a pure function of values — the normal form
(cached by expression) and its lowering to ops (:func:`.plan.plan`, cached by normal form, leaf
slots, OR temperature and log-weights) — is cached, like einops' recipe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from ..errors import CompileError
from ..expr import Expr, as_expr
from ..heads import Head
from ..library import as_library
from .bindings import check_binding_semantics, lower_bindings
from .calls import Call, plan_calls
from .checks import (base_head, check_base, check_or_temperature, check_scores, log_weight_table,
                     resolve_negation, resolve_semantics)
from .leaves import Leaf, resolve_leaves
from .normalize import _normal_form, _Term, _to_expr
from .plan import Plan, _Lin, _SoftMin, linear_form, plan
from .semantics import Semantics, semantics_named

__all__ = ["Program", "compile_program"]

#: a leaf's value as a vector over the atoms (the leaves, then ``E_0``), by mode
_FORMS: Mapping[str, Callable[[Tensor, int, Tensor], Tensor]] = {
    "E": lambda eye, i, e0: eye[i], "E-E0": lambda eye, i, e0: eye[i] - e0,
    "E0-r": lambda eye, i, e0: e0 - eye[i], "-r": lambda eye, i, e0: -eye[i]}


@dataclass(frozen=True, eq=False)
class Program:
    """What an expression compiles to over a library (module docstring).

    Settings: ``expr``, ``library``, ``semantics`` (a :class:`~.semantics.Semantics`),
    ``semantics_from_library``, ``guidance_scale`` (``w`` under guidance and logic, else
    ``None``), ``negation_scale`` and ``negation_sigmas`` (guidance, else ``None``),
    ``or_temperature``. Structure: ``nf`` (the normal form), ``leaves``, ``log_weights`` (OR
    log-weights by normal-form term), ``ops`` over ``n_slots`` slots with ``root``,
    ``disjuncts`` (``(text, slot)`` of every OR child) and ``disjunct_log_weights``. Running:
    ``base`` (the ``E_0`` the program uses, else ``None``), ``library_base`` (the library's,
    used or not), ``calls``, ``modules`` (the ``nn.Module`` sources), ``arg_buffers``
    (``(name, args)`` of parametric arguments, kept as buffers by the runner), ``leaf_modes``
    (``(mode, temperature)`` per leaf, :mod:`.semantics`), ``negation_gated`` (negated terms
    take ``negation_scale`` or ``negation_sigmas``), ``no_energy`` (why there is no energy
    value, else ``None``), ``linear_terms`` (by regime ``"on"``/``"off"``: the atoms ``score``
    differentiates and reads as scores, with their factors and calls; ``None`` when the energy
    is not linear in its atoms), ``only_call`` (the one call that is the whole energy, if so).
    The mappings in it are read-only by convention (plain dicts, so that a composed energy can
    be copied).

    Example:
        >>> prog = compile_program("a & ~b", {"a": abs, "b": abs})
        >>> prog.semantics, [leaf.text for leaf in prog.leaves], prog.root
        (PRODUCT, ['a', 'b'], 2)
        >>> prog.linear_terms["on"][0]  # ((atom, coefficient), ...) differentiated by autograd
        ((0, 1.0), (1, -1.0))
    """

    expr: Expr
    library: Any
    semantics: Semantics
    semantics_from_library: bool
    guidance_scale: float | None
    negation_scale: float | None
    negation_sigmas: tuple[float, float] | None
    or_temperature: float
    nf: _Term
    leaves: tuple[Leaf, ...]
    log_weights: Mapping[_Term, float]
    ops: tuple
    n_slots: int
    root: int
    disjuncts: tuple[tuple[str, int], ...]
    disjunct_log_weights: Mapping[str, float]
    base: Head | None
    library_base: Head | None
    calls: tuple[Call, ...]
    modules: tuple[nn.Module, ...]
    arg_buffers: tuple[tuple[str, tuple], ...]
    leaf_modes: tuple[tuple[str, float], ...]
    negation_gated: bool
    no_energy: str | None
    linear_terms: Mapping[str, tuple] | None
    only_call: Call | None

    @property
    def normal_form(self) -> Expr:
        return _to_expr(self.nf)

    @property
    def score_only(self) -> bool:
        """Some leaf or the needed base gives only a score: no energy values."""
        return self.no_energy is not None

    @property
    def sigma_aware(self) -> bool:
        """Some leaf or the base takes ``sigma``."""
        return any(call.sigma_aware for call in self.calls)

    @property
    def has_or(self) -> bool:
        return any(isinstance(op, _SoftMin) for op in self.ops)

    def factor(self, regime: Any) -> Any:
        """The factor ``g`` on the negated terms' coefficients in a regime: ``"on"`` (inside
        ``negation_sigmas``), ``"off"``, or a ``[B]`` tensor (1 where on); ``None`` means 1."""
        return _negation_factor(self.negation_gated, self.negation_scale, regime)


def compile_program(expr_or_text: Expr | str, concepts: Any, *, base: Callable | None = None,
                    semantics: str | None = None, or_temperature: float = 1.0,
                    or_log_weights: Mapping[str, float] | Sequence[float] | None = None,
                    guidance_scale: float | None = None, negation_scale: float | None = None,
                    negation_sigmas: Sequence[float | None] | None = None) -> Program:
    """The :class:`Program` of an expression over ``concepts`` (the arguments of
    :func:`~conceptalg.compiler.compose`); raises what ``compose`` documents."""
    expr = as_expr(expr_or_text)
    library = as_library(concepts)
    name, from_library, w = resolve_semantics(concepts, library, semantics, guidance_scale)
    sem = semantics_named(name)
    nu, levels = resolve_negation(concepts, library, name, from_library, negation_scale,
                                  negation_sigmas)
    tau = check_or_temperature(or_temperature, name, or_log_weights)
    library_base = base_head(base) if base is not None else getattr(library, "base", None)
    check_binding_semantics(expr, name)
    lowered_expr = lower_bindings(expr)  # at(p)[E] -> at(p) & E@p (.bindings)
    nf = _normal_form(lowered_expr, sem.linear)
    leaves, leaf_of = resolve_leaves(lowered_expr, library,
                                     expr_or_text if isinstance(expr_or_text, str) else None,
                                     shown=expr)
    log_weights = log_weight_table(lowered_expr, nf, name, or_log_weights)
    lowered = plan(nf, tuple(leaf_of.items()), sem.linear, tau, tuple(log_weights.items()))
    _check_log_weights_used(expr, log_weights, lowered)
    needs_base = library_base is not None and (
        sem.needs_base or bool(lowered.anchored)
        or any(leaf.head.kind == "log_prob" for leaf in leaves))
    used_base = library_base if needs_base else None
    has_or = any(isinstance(op, _SoftMin) for op in lowered.ops)
    no_energy = check_scores(expr, name, leaves, used_base, has_or)
    check_base(expr, name, leaves, library_base, list(lowered.anchored))

    calls, modules, arg_buffers = plan_calls(tuple(leaves), used_base)
    leaf_modes = tuple((sem.modes[leaf.head.kind], leaf.head.temperature) for leaf in leaves)
    negates = any(isinstance(op, _Lin) and any(op.negs) for op in lowered.ops)
    gated = negates and (nu not in (None, 1.0) or levels is not None)
    # One energy leaf read as it is (mode "E" at T = 1, no base): forward is that one call,
    # with none of the slot machinery (sampler overhead on small energies).
    only_call = calls[0] if (len(calls) == 1 and not lowered.ops and lowered.root == 0
                             and used_base is None and leaf_modes == (("E", 1.0),)) else None
    linear_terms = _linear_terms(sem, leaves, leaf_modes, lowered, used_base, calls, w,
                                 gated, nu, levels)
    return Program(expr, library, sem, from_library, w, nu, levels, tau, nf, tuple(leaves),
                   dict(log_weights), lowered.ops, lowered.n_slots,
                   lowered.root, lowered.disjuncts, lowered.disjunct_log_weights, used_base,
                   library_base, calls, modules, arg_buffers, leaf_modes, gated, no_energy,
                   linear_terms, only_call)


def _check_log_weights_used(expr: Expr, log_weights: Mapping, lowered: Plan) -> None:
    unused = set(log_weights) - lowered.used_weights
    if unused:
        names = ", ".join(sorted(str(_to_expr(t)) for t in unused))
        raise CompileError(f"or_log_weights names {names}, "
                           f"which {'is' if len(unused) == 1 else 'are'} not a disjunct of "
                           f"`{expr}`; disjuncts: "
                           f"{', '.join(sorted({d for d, _ in lowered.disjuncts})) or 'none'}")


def _negation_factor(gated: bool, nu: float | None, regime: Any) -> Any:
    if not gated:
        return None
    if isinstance(regime, Tensor):
        return regime * nu
    if regime == "off":
        return 0.0
    return None if nu == 1.0 else nu


def _linear_terms(sem: Semantics, leaves: Sequence[Leaf], leaf_modes: tuple, lowered: Plan,
                  base: Head | None, calls: tuple[Call, ...], w: float | None, gated: bool,
                  nu: float | None, levels: tuple | None) -> Mapping[str, tuple] | None:
    """The root's coefficient on each atom, when the energy is linear in them: which raw
    outputs ``score`` differentiates (with their factors) and which it reads as scores — once
    with the negated terms as they count inside ``negation_sigmas`` (``"on"``) and, when a
    range is set, once without them (``"off"``). ``None`` when some op is not linear."""
    if not sem.linear:
        return None
    n = len(leaves)
    eye = torch.eye(n + 1, dtype=torch.float64)  # atoms: the leaves, then E_0
    e0 = eye[n]
    anchor = e0 if sem.anchors and base is not None else None
    leaf_forms = [_FORMS[m](eye, i, e0) for i, (m, _) in enumerate(leaf_modes)]
    regimes = {"on": _negation_factor(gated, nu, "on")}
    if gated and levels is not None:
        regimes["off"] = 0.0
    terms = {}
    heads = [leaf.head for leaf in leaves] + [base]
    for regime, g in regimes.items():
        root = linear_form(lowered.ops, leaf_forms, lowered.n_slots, lowered.root,
                           anchor, g)
        if root is None:
            return None
        terms[regime] = _atom_terms(sem.energy(root, e0, w), heads, calls)
    return terms


def _atom_terms(root: Tensor, heads: list, calls: tuple[Call, ...]) -> tuple:
    """``(grad terms, score terms, grad calls, score calls)`` of root coefficients ``root``:
    ``(atom, factor)`` pairs, and the calls that compute them."""
    grad, score = [], []
    for i, (head, c) in enumerate(zip(heads, root.tolist())):
        if c == 0.0 or head is None:
            continue
        if head.kind == "score":
            score.append((i, c / head.temperature))
        else:  # an energy is read at temperature 1; a log-probability as it is
            grad.append((i, c / head.temperature if head.kind == "energy" else c))
    used_grad, used_score = {i for i, _ in grad}, {i for i, _ in score}
    return (tuple(grad), tuple(score),
            tuple(c for c in calls if not c.scores and used_grad & set(c.outs)),
            tuple(c for c in calls if c.scores and used_score & set(c.outs)))
