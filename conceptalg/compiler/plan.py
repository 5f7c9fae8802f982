"""The energy program: the normal form lowered to a flat list of tensor ops over value slots.

Slots ``0 .. n_leaves − 1`` hold the leaf values (filled by the model calls, see
:mod:`conceptalg.compiler.energy`); every op reads earlier slots and writes one new slot:

- :class:`_Lin` ``Σ c_i · v[i]`` (+ ``E_0`` when anchored): product/guidance And, weights, ``~``;
- :class:`_SoftMin` ``−τ · logsumexp_i(ℓ_i − v[i] / τ)``: product/guidance Or;
- :class:`_LogAnd` / :class:`_LogOr`: log-probabilities of logic's And and (noisy-or) Or.

:func:`plan` builds the list (a :class:`Plan`), sharing equal subtrees; it is pure and cached
by its arguments (the normal form, the leaf slots, the OR temperature and log-weights), and the
ops are frozen records that only run tensors.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor

from ..expr import Concept
from .normalize import _NAnd, _Term, _to_expr

__all__ = ["log1mexp", "plan", "Plan", "linear_form"]

_LN2 = math.log(2.0)


def log1mexp(u: Tensor) -> Tensor:
    """``log(1 − exp(u))`` for ``u ≤ 0``, stable at both ends (Mächler's two branches).

    Each branch sees a clamped input, so the branch not taken never produces inf/NaN gradients.

    Example:
        >>> float(log1mexp(torch.tensor(math.log(0.25))).exp())
        0.75
    """
    small = u < -_LN2
    far = torch.log1p(-torch.exp(torch.clamp(u, max=-_LN2)))
    near = torch.log(-torch.expm1(torch.clamp(u, min=-_LN2)))
    return torch.where(small, far, near)


def _op(cls):
    """An op is a frozen record (compared and hashed by value, shown by its fields)."""
    return dataclass(frozen=True, slots=True, init=False)(cls)


def _freeze(op: Any, **fields: Any) -> None:
    for name, value in fields.items():
        object.__setattr__(op, name, value)


@_op
class _Lin:
    """``out = Σ c_i · v[i]`` (+ the anchor ``E_0`` when ``anchor``); ``negs[i]`` marks the
    inputs that are negated terms, whose coefficients a call may scale by ``g`` (a number or a
    ``[B]`` tensor: guidance's ``negation_scale``, gated by ``negation_sigmas``)."""

    out: int
    ins: tuple
    coefs: tuple
    anchor: bool
    negs: tuple

    def __init__(self, out, ins, coefs, anchor, negs=None):
        ins = tuple(ins)
        negs = tuple(bool(n) for n in negs) if negs is not None else (False,) * len(ins)
        _freeze(self, out=out, ins=ins, coefs=tuple(coefs), anchor=anchor, negs=negs)

    def __call__(self, v: list, e0: Tensor | None, g: Any = None) -> None:
        if g is not None and any(self.negs):
            acc = None
            for i, c, neg in zip(self.ins, self.coefs, self.negs):
                t = v[i] * (c * g) if neg else (v[i] if c == 1.0 else v[i] * c)
                acc = t if acc is None else acc + t
        else:
            acc = v[self.ins[0]] if self.coefs[0] == 1.0 else v[self.ins[0]] * self.coefs[0]
            for i, c in zip(self.ins[1:], self.coefs[1:]):
                acc = acc + v[i] if c == 1.0 else (acc - v[i] if c == -1.0 else acc + c * v[i])
        if self.anchor and e0 is not None:
            acc = acc + e0
        v[self.out] = acc


@_op
class _SoftMin:
    """``out = −τ · logsumexp_i(ℓ_i − v[i] / τ)``."""

    out: int
    ins: tuple
    tau: float
    log_weights: tuple

    def __init__(self, out, ins, tau, log_weights):
        _freeze(self, out=out, ins=tuple(ins), tau=tau, log_weights=tuple(log_weights))

    def __call__(self, v: list, e0: Tensor | None, g: Any = None) -> None:
        cols = []
        for i, lw in zip(self.ins, self.log_weights):
            z = -v[i] if self.tau == 1.0 else v[i] * (-1.0 / self.tau)
            cols.append(z if lw == 0.0 else z + lw)
        out = torch.logsumexp(torch.stack(cols, dim=-1), dim=-1)  # [B]
        v[self.out] = -out if self.tau == 1.0 else out * (-self.tau)


@_op
class _LogAnd:
    """``out = Σ w_i · (v[i] or log1mexp(v[i]))``: log P of a conjunction of terms."""

    out: int
    ins: tuple
    weights: tuple
    negs: tuple

    def __init__(self, out, ins, weights, negs):
        _freeze(self, out=out, ins=tuple(ins), weights=tuple(weights), negs=tuple(negs))

    def __call__(self, v: list, e0: Tensor | None, g: Any = None) -> None:
        acc = None
        for t in _log_terms(v, self.ins, self.weights, self.negs):
            acc = t if acc is None else acc + t
        v[self.out] = acc


@_op
class _LogOr:
    """``out = log1mexp(Σ log1mexp(term_i))``: log P of a (noisy-or) disjunction of terms."""

    out: int
    ins: tuple
    weights: tuple
    negs: tuple

    def __init__(self, out, ins, weights, negs):
        _freeze(self, out=out, ins=tuple(ins), weights=tuple(weights), negs=tuple(negs))

    def __call__(self, v: list, e0: Tensor | None, g: Any = None) -> None:
        acc = None
        for t in _log_terms(v, self.ins, self.weights, self.negs):
            t = log1mexp(t)
            acc = t if acc is None else acc + t
        v[self.out] = log1mexp(acc)


def _log_terms(v, ins, weights, negs):
    for i, w, neg in zip(ins, weights, negs):
        t = log1mexp(v[i]) if neg else v[i]
        yield t if w == 1.0 else t * w


@dataclass(frozen=True)
class Plan:
    """The normal form lowered to ops: ``ops`` over ``n_slots`` value slots (the leaves first),
    the ``root`` slot, each ``E_0`` anchor the plan adds as ``(term text, why)``, every OR child
    as ``(text, slot)`` (``disjuncts``) with its log-weight (``disjunct_log_weights``, as
    ``explain`` shows them; read-only), and the OR log-weight terms it used
    (``used_weights``)."""

    ops: tuple
    n_slots: int
    root: int
    anchored: tuple
    disjuncts: tuple
    disjunct_log_weights: Mapping[str, float] = field(compare=False)
    used_weights: frozenset


@functools.lru_cache(maxsize=512)
def plan(nf: _Term, leaf_slots: tuple, linear: bool, tau: float, log_weights: tuple) -> Plan:
    """Lower the normal form ``nf`` to a :class:`Plan` (pure and cached: every argument is a
    value). ``leaf_slots`` pairs each concept with its leaf's slot, ``linear`` chooses linear
    ops and soft-mins (product, guidance) or log-probabilities (logic), ``tau`` is the OR
    temperature and ``log_weights`` pairs OR children (normal-form terms) with log-weights.

    Example:
        >>> from conceptalg import parse
        >>> from conceptalg.compiler.normalize import _normal_form
        >>> a, b = parse("a"), parse("b")
        >>> plan(_normal_form(parse("a & ~b"), True), ((a, 0), (b, 1)), True, 1.0, ()).ops
        (_Lin(out=2, ins=(0, 1), coefs=(1.0, -1.0), anchor=False, negs=(False, True)),)
    """
    slots = dict(leaf_slots)
    planner = _Planner(slots.__getitem__, len(set(slots.values())), linear, tau,
                       dict(log_weights))
    root = planner.root(nf)
    return Plan(tuple(planner.ops), planner.n, root, tuple(planner.anchored),
                tuple(planner.disjuncts), dict(planner.disjunct_log_weights),
                frozenset(planner.used_weights))


class _Planner:
    """Lowers the normal form to ops over value slots (leaves first), sharing equal subtrees."""

    def __init__(self, leaf_slot: Callable[[Concept], int], n_leaves: int, linear: bool,
                 tau: float, log_weights: dict):
        self.leaf_slot, self.n = leaf_slot, n_leaves
        self.logic = not linear
        self.tau, self.log_weights, self.used_weights = tau, log_weights, set()
        self.ops: list = []
        self.memo: dict = {}
        self.anchored: list[tuple[str, str]] = []  # (term text, why) for each E_0 the plan uses
        self.disjuncts: list[tuple[str, int]] = []  # (text, slot) of every Or child
        self.disjunct_log_weights: dict[str, float] = {}  # text -> ℓ (as explain shows them)

    def _new(self, op_cls, *args) -> int:
        slot = self.n
        self.n += 1
        self.ops.append(op_cls(slot, *args))
        return slot

    def root(self, term: _Term) -> int:
        return self.term(term, "at the root")

    def term(self, t: _Term, where: str) -> int:
        if t.weight == 1.0 and t.sign > 0:
            return self.node(t.body)
        key = ("term", t)
        if key not in self.memo:
            body = self.node(t.body)
            if self.logic:
                self.memo[key] = self._new(_LogAnd, [body], [t.weight], [t.sign < 0])
            else:
                if t.sign < 0:
                    self.anchored.append((str(_to_expr(t)), f"a negation {where} is "
                                          f"E_0 - w * E[body]"))
                self.memo[key] = self._new(_Lin, [body], [t.sign * t.weight], t.sign < 0,
                                                [t.sign < 0])
        return self.memo[key]

    def node(self, body: Any) -> int:
        if isinstance(body, Concept):
            return self.leaf_slot(body)
        if body in self.memo:
            return self.memo[body]
        if isinstance(body, _NAnd):
            ins = [self.node(t.body) for t in body.terms]
            if self.logic:
                slot = self._new(_LogAnd, ins, [t.weight for t in body.terms],
                                 [t.sign < 0 for t in body.terms])
            else:
                anchor = not any(t.sign > 0 for t in body.terms)
                if anchor:
                    self.anchored.append((str(_to_expr(body)), "an AND with no positive term "
                                          "is anchored by E_0"))
                slot = self._new(_Lin, ins, [t.sign * t.weight for t in body.terms], anchor,
                                 [t.sign < 0 for t in body.terms])
        else:
            if self.logic:
                ins = [self.node(t.body) for t in body.terms]
                slot = self._new(_LogOr, ins, [t.weight for t in body.terms],
                                 [t.sign < 0 for t in body.terms])
            else:
                ins = [self.term(t, "inside an OR") for t in body.terms]
                lw = []
                for t, s in zip(body.terms, ins):
                    text = str(_to_expr(t))
                    self.disjuncts.append((text, s))
                    lw.append(self._log_weight(t))
                    self.disjunct_log_weights[text] = lw[-1]
                slot = self._new(_SoftMin, ins, self.tau, lw)
        self.memo[body] = slot
        return slot

    def _log_weight(self, t: _Term) -> float:
        if t in self.log_weights:
            self.used_weights.add(t)
            return self.log_weights[t]
        return 0.0




def linear_form(ops: Sequence, leaf_forms: list[Tensor], n_slots: int, root: int,
                anchor: Tensor | None, g: float | None = None) -> Tensor | None:
    """The root's coefficients over the atoms (each leaf's quantity and ``E_0``) when every op is
    linear, else ``None``: the same ops, run once on coefficient vectors instead of values.

    ``leaf_forms[i]`` is leaf slot ``i`` as a vector over the atoms, ``anchor`` is ``E_0``'s
    unit vector (``None`` when the plan adds no anchor), ``g`` the factor on the coefficients
    of negated terms (``None``: 1).

    Example:
        >>> e = torch.eye(3, dtype=torch.float64)  # atoms: a, b, E_0
        >>> linear_form([_Lin(2, [0, 1], [2.0, -1.0], False)], [e[0], e[1]], 3, 2, e[2]).tolist()
        [2.0, -1.0, 0.0]
    """
    if not all(isinstance(op, _Lin) for op in ops):
        return None
    v: list = list(leaf_forms) + [None] * (n_slots - len(leaf_forms))
    for op in ops:
        op(v, anchor, g)
    return v[root]
