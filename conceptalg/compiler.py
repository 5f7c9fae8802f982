"""Concept expression → normal form → flat energy program → :class:`ComposedEnergy`.

**Normal form.** Weights and negations move outward: every And/Or child is a term
``(w, sign, body)`` (:func:`conceptalg.expr.split_term`), double negations vanish, nested Ors
of weight 1 are flattened. Under ``product`` and ``guidance`` an And is a weighted sum and ``~``
a sign, so nested Ands are flattened through weights *and* negations (``c & ~(a & ~b)`` is
``c & ~a & b``, ``2 * (~a & ~b)`` is ``2 * ~a & 2 * ~b``); under ``logic`` only through weights
(``P(a ∧ b)^w = P(a)^w P(b)^w``). Repeated And terms fold into one weight.

**Semantics** (design §4; ``E_0`` is the base energy, τ = ``or_temperature``, ℓ_i OR log-weights):

- ``product``: an And is ``Σ w_i · sign_i · E[body_i]``, plus one ``E_0`` when no term is
  positive; an Or is ``−τ · logsumexp_i(ℓ_i − E[child_i] / τ)``; a negation anywhere else (the
  root, an Or child) is ``E_0 − w · E[body]``; a concept is ``E_c``.
- ``guidance``: ``E = E_0 + D`` where ``D`` follows the product rules on ``D_c = E_c − E_0`` with
  the anchor ``D_0 = 0`` (so ``~f`` is ``−D[f]``: ratio negation).
- ``logic``: ``E = E_0 − log P``, ``P(a ∧ b) = P(a)P(b)``, ``P(¬a) = 1 − P(a)``,
  ``P(a ∨ b) = 1 − (1 − P(a))(1 − P(b))``, a term ``(w, sign, body)`` is ``P(body)^w`` or
  ``(1 − P(body))^w``; computed in log space with ``log1mexp(u) = log(1 − e^u)``.

**Mixture weights.** An Or mixes its disjuncts in proportion to their partition functions
``Z_i = ∫ exp(−E_i)``, which are arbitrary for learned heads: with ℓ_i = 0 and τ = 1 disjunct
``i`` gets mass ``Z_i / Σ_j Z_j``. :meth:`ComposedEnergy.calibrate` estimates ``log Z_i / Z_0``
and returns the log-weights that equalise (or set) the proportions.

**Program.** All name resolution, validation and planning happen in the constructor; the plan is
a list of model calls (one per model: its leaves in one batched call, each distinct leaf once)
and a flat list of tensor ops over value slots. ``forward`` only runs it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from .library import SAMPLING_HINTS, Head, as_library
from .errors import CompileError, UnknownConceptError
from .expr import (And, Concept, Expr, Not, Or, Weighted, as_expr, concepts, format_number,
                   split_term)

__all__ = ["compose", "ComposedEnergy", "explain", "normal_form", "log1mexp", "SEMANTICS"]

SEMANTICS = ("product", "guidance", "logic")
_LN2 = math.log(2.0)
_BASE_KEY = "(base)"


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


# --- normal form -----------------------------------------------------------------------------

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


# --- the energy program ----------------------------------------------------------------------

class _Call:
    """One evaluation of one source: a batched model call for several heads, or one function."""

    __slots__ = ("source", "heads", "args", "outs", "batched", "any_args")

    def __init__(self, source, heads, args, outs, batched):
        self.source, self.heads = source, tuple(heads)
        self.args, self.outs = tuple(args), tuple(outs)
        self.batched, self.any_args = batched, any(a is not None for a in args)

    def __call__(self, module: nn.Module, x: Tensor, raw: list) -> None:
        B = x.shape[0]
        args = [None if a is None else
                module.get_buffer(a).to(device=x.device, dtype=x.dtype).expand(B, -1)
                for a in self.args]
        if self.batched:
            if self.any_args:
                out = self.source.concept_energies(x, list(self.heads), args)
            else:
                out = self.source.concept_energies(x, list(self.heads))
            if out.shape != (B, len(self.heads)):
                raise CompileError(f"{type(self.source).__name__}.concept_energies returned shape "
                                   f"{tuple(out.shape)} for {len(self.heads)} heads on a batch of "
                                   f"{B}; expected ({B}, {len(self.heads)})")
            for j, slot in enumerate(self.outs):
                raw[slot] = out[:, j]  # [B]
            return
        out = self.source(x) if args[0] is None else self.source(x, args[0])
        if out.dim() == 2 and out.shape[1] == 1:
            out = out[:, 0]
        if out.shape != (B,):
            name = getattr(self.source, "__qualname__", type(self.source).__name__)
            raise CompileError(f"the energy of {self.heads[0]} ({name}) returned shape "
                               f"{tuple(out.shape)} on a batch of {B}; expected ({B},)")
        raw[self.outs[0]] = out


class _Lin:
    """``out = Σ c_i · v[i]`` (+ the anchor ``E_0`` when ``anchor``)."""

    __slots__ = ("out", "ins", "coefs", "anchor")

    def __init__(self, out, ins, coefs, anchor):
        self.out, self.ins, self.coefs, self.anchor = out, tuple(ins), tuple(coefs), anchor

    def __call__(self, v: list, e0: Tensor | None) -> None:
        acc = v[self.ins[0]] if self.coefs[0] == 1.0 else v[self.ins[0]] * self.coefs[0]
        for i, c in zip(self.ins[1:], self.coefs[1:]):
            acc = acc + v[i] if c == 1.0 else (acc - v[i] if c == -1.0 else acc + c * v[i])
        if self.anchor and e0 is not None:
            acc = acc + e0
        v[self.out] = acc


class _SoftMin:
    """``out = −τ · logsumexp_i(ℓ_i − v[i] / τ)``."""

    __slots__ = ("out", "ins", "tau", "log_weights")

    def __init__(self, out, ins, tau, log_weights):
        self.out, self.ins, self.tau, self.log_weights = out, tuple(ins), tau, tuple(log_weights)

    def __call__(self, v: list, e0: Tensor | None) -> None:
        cols = []
        for i, lw in zip(self.ins, self.log_weights):
            z = -v[i] if self.tau == 1.0 else v[i] * (-1.0 / self.tau)
            cols.append(z if lw == 0.0 else z + lw)
        out = torch.logsumexp(torch.stack(cols, dim=-1), dim=-1)  # [B]
        v[self.out] = -out if self.tau == 1.0 else out * (-self.tau)


class _LogAnd:
    """``out = Σ w_i · (v[i] or log1mexp(v[i]))``: log P of a conjunction of terms."""

    __slots__ = ("out", "ins", "weights", "negs")

    def __init__(self, out, ins, weights, negs):
        self.out, self.ins, self.weights, self.negs = out, tuple(ins), tuple(weights), tuple(negs)

    def __call__(self, v: list, e0: Tensor | None) -> None:
        acc = None
        for t in _log_terms(v, self.ins, self.weights, self.negs):
            acc = t if acc is None else acc + t
        v[self.out] = acc


class _LogOr:
    """``out = log1mexp(Σ log1mexp(term_i))``: log P of a (noisy-or) disjunction of terms."""

    __slots__ = ("out", "ins", "weights", "negs")

    def __init__(self, out, ins, weights, negs):
        self.out, self.ins, self.weights, self.negs = out, tuple(ins), tuple(weights), tuple(negs)

    def __call__(self, v: list, e0: Tensor | None) -> None:
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
class _Leaf:
    text: str       # DSL spelling of the first occurrence
    head: Head
    args: tuple | None


class _Planner:
    """Lowers the normal form to ops over value slots (leaves first), sharing equal subtrees."""

    def __init__(self, leaf_slot: Callable[[Concept], int], n_leaves: int, semantics: str,
                 tau: float, log_weights: dict):
        self.leaf_slot, self.n = leaf_slot, n_leaves
        self.logic = semantics == "logic"
        self.tau, self.log_weights, self.used_weights = tau, log_weights, set()
        self.ops: list = []
        self.memo: dict = {}
        self.anchored: list[tuple[str, str]] = []  # (term text, why) for each E_0 the plan uses
        self.disjuncts: list[tuple[str, int]] = []  # (text, slot) of every Or child

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
                self.memo[key] = self._new(_Lin, [body], [t.sign * t.weight], t.sign < 0)
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
                slot = self._new(_Lin, ins, [t.sign * t.weight for t in body.terms], anchor)
        else:
            if self.logic:
                ins = [self.node(t.body) for t in body.terms]
                slot = self._new(_LogOr, ins, [t.weight for t in body.terms],
                                 [t.sign < 0 for t in body.terms])
            else:
                ins = [self.term(t, "inside an OR") for t in body.terms]
                lw = []
                for t, s in zip(body.terms, ins):
                    self.disjuncts.append((str(_to_expr(t)), s))
                    lw.append(self._log_weight(t))
                slot = self._new(_SoftMin, ins, self.tau, lw)
        self.memo[body] = slot
        return slot

    def _log_weight(self, t: _Term) -> float:
        if t in self.log_weights:
            self.used_weights.add(t)
            return self.log_weights[t]
        return 0.0


def _check_semantics(semantics: str) -> None:
    if semantics not in SEMANTICS:
        raise CompileError(f"unknown semantics {semantics!r}; choose one of "
                           f"{', '.join(SEMANTICS)}")


def _base_head(base: Any) -> Head:
    if isinstance(base, Head):
        return base
    if not callable(base):
        raise TypeError(f"base must be a callable energy E_0(x) -> [B], got {type(base).__name__}")
    return Head("base", None, base)


class ComposedEnergy(nn.Module):
    """The energy of a concept expression over a concept library: ``forward(x[B, ...]) -> E[B]``.

    Built by :func:`compose` (same arguments); see the module docstring for the semantics.
    Everything that can fail by name or structure fails here, at construction. Models that are
    ``nn.Module``s are registered as submodules, so ``.to(device)`` and ``.eval()`` reach them.

    Attributes: ``expr`` (the expression), ``semantics``, ``or_temperature``, ``normal_form``
    (an expression), ``leaves`` (DSL spellings of the distinct leaves), ``library``.

    Example:
        >>> import torch
        >>> lib = {"a": lambda x: x.pow(2).sum(-1), "b": lambda x: (x - 1).pow(2).sum(-1)}
        >>> energy = compose("a & ~b", lib)
        >>> energy
        ComposedEnergy('a & ~b', semantics='product')
        >>> energy(torch.zeros(3, 2))
        tensor([-2., -2., -2.])
    """

    def __init__(self, expr: Expr | str, concepts: Any, *, base: Callable | None = None,
                 semantics: str = "product", or_temperature: float = 1.0,
                 or_log_weights: Mapping[str, float] | Sequence[float] | None = None) -> None:
        super().__init__()
        self.expr = as_expr(expr)
        _check_semantics(semantics)
        tau = float(or_temperature)
        if not (math.isfinite(tau) and tau > 0):
            raise CompileError(f"or_temperature must be finite and > 0, got {or_temperature!r}")
        if semantics == "logic" and (tau != 1.0 or or_log_weights is not None):
            raise CompileError("or_temperature and or_log_weights apply to the product and "
                               "guidance semantics; logic's OR is 1 - (1 - P(a))(1 - P(b))")
        self.semantics, self.or_temperature = semantics, tau
        self.library = as_library(concepts)
        base_head = _base_head(base) if base is not None else getattr(self.library, "base", None)
        nf = _normal_form(self.expr, semantics != "logic")
        self.normal_form = _to_expr(nf)

        leaves, leaf_of = self._resolve_leaves()
        self._leaves: tuple[_Leaf, ...] = tuple(leaves)
        self.leaves = tuple(leaf.text for leaf in leaves)
        log_weights = self._log_weight_table(nf, or_log_weights)
        planner = _Planner(lambda c: leaf_of[c], len(leaves), semantics, tau, log_weights)
        self._root = planner.root(nf)
        unused = set(log_weights) - planner.used_weights
        if unused:
            names = ", ".join(sorted(str(_to_expr(t)) for t in unused))
            raise CompileError(f"or_log_weights names {names}, "
                               f"which {'is' if len(unused) == 1 else 'are'} not a disjunct of "
                               f"`{self.expr}`; disjuncts: "
                               f"{', '.join(sorted({d for d, _ in planner.disjuncts})) or 'none'}")
        self._ops = planner.ops
        self._n_slots = planner.n
        self._disjuncts = planner.disjuncts
        self._log_weights = log_weights
        self._check_base(base_head, planner.anchored)
        self._needs_base = base_head is not None and (
            semantics != "product" or bool(planner.anchored)
            or any(leaf.head.kind == "log_prob" for leaf in leaves))
        self._base = base_head if self._needs_base else None
        self._library_base = base_head
        self._plan_calls()
        for hint in SAMPLING_HINTS:
            value = getattr(concepts, hint, None)
            if value is None:
                value = getattr(self.library, hint, None)
            if value is not None:
                setattr(self, hint, value)

    # --- construction helpers ----------------------------------------------------------------
    def _resolve_leaves(self) -> tuple[list[_Leaf], dict[Concept, int]]:
        leaves: list[_Leaf] = []
        index: dict[tuple, int] = {}
        leaf_of: dict[Concept, int] = {}
        problems: list[str] = []
        unknown = False
        for c in concepts(self.expr):
            try:
                head = self.library.resolve(c)
            except UnknownConceptError as e:
                problems.append(str(e))
                unknown = True
                continue
            except CompileError as e:
                problems.append(str(e))
                continue
            key = (head, c.args)
            if key not in index:
                index[key] = len(leaves)
                leaves.append(_Leaf(str(c), head, c.args))
            leaf_of[c] = index[key]
        if problems:
            cls = UnknownConceptError if unknown else CompileError
            raise cls("\n".join(problems) + f"\n  in `{self.expr}`") from None
        return leaves, leaf_of

    def _log_weight_table(self, nf: _Term, or_log_weights) -> dict:
        if or_log_weights is None:
            return {}
        linear = self.semantics != "logic"
        if isinstance(or_log_weights, Mapping):
            table = {}
            for text, value in or_log_weights.items():
                term = _normal_form(as_expr(text), linear)
                table[term] = _finite(value, f"or_log_weights[{text!r}]")
            return table
        values = list(or_log_weights)
        if not (nf.weight == 1.0 and nf.sign > 0 and isinstance(nf.body, _NOr)):
            raise CompileError(f"a sequence of or_log_weights needs an OR at the root, and "
                               f"`{self.expr}` has none; pass a dict keyed by disjunct text")
        if len(values) != len(nf.body.terms):
            raise CompileError(f"or_log_weights has {len(values)} values for the "
                               f"{len(nf.body.terms)} disjuncts of `{self.normal_form}`")
        return {t: _finite(v, f"or_log_weights[{i}]")
                for i, (t, v) in enumerate(zip(nf.body.terms, values))}

    def _check_base(self, base: Head | None, anchored: list) -> None:
        if base is not None:
            if self.semantics == "logic":
                energy_leaves = [leaf.text for leaf in self._leaves if leaf.head.kind != "log_prob"]
                if energy_leaves:
                    raise CompileError(
                        f"semantics='logic' needs classifier heads (kind='log_prob', giving "
                        f"log p(c|x)); {', '.join(f'`{t}`' for t in energy_leaves)} "
                        f"{'is an energy head' if len(energy_leaves) == 1 else 'are energy heads'}"
                        f". Use semantics='product' or 'guidance', or register classifier heads")
            return
        fix = "give a base: compose(..., base=E0) or library.set_base(E0)"
        if self.semantics == "guidance":
            raise CompileError(f"semantics='guidance' needs a base energy E_0 (D_c = E_c - E_0) "
                               f"and none was given; {fix}")
        if self.semantics == "logic":
            raise CompileError(f"semantics='logic' needs a probabilistic library: classifier "
                               f"heads (kind='log_prob') over a base energy E_0, and there is no "
                               f"base; {fix}")
        if anchored:
            text, why = anchored[0]
            raise CompileError(f"`{text}` needs a base energy E_0 ({why}) in `{self.expr}`, and "
                               f"there is none. Anchor the negation: `x & ~a`, or give a base "
                               f"(compose(..., base=E0) or library.set_base(E0))")
        clf = [leaf.text for leaf in self._leaves if leaf.head.kind == "log_prob"]
        if clf:
            raise CompileError(f"classifier head `{clf[0]}` gives log p(c|x); its energy "
                               f"E_0 - log p(c|x) needs a base energy; {fix}")

    def _plan_calls(self) -> None:
        """Group leaf evaluations: one call per model (all its heads), one per function."""
        groups: dict[int, list] = {}  # id(source) -> [(head, arg buffer, raw slot)]
        calls = []
        slots: list[tuple[Head, int, str | None]] = [
            (leaf.head, i, None) for i, leaf in enumerate(self._leaves)]
        if self._base is not None:
            slots.append((self._base, len(self._leaves), None))
        modules = []
        for head, slot, _ in slots:
            arg = None
            if slot < len(self._leaves) and self._leaves[slot].args is not None:
                arg = f"_leaf_args_{slot}"
                self.register_buffer(arg, torch.tensor(self._leaves[slot].args,
                                                       dtype=torch.float64), persistent=False)
            if isinstance(head.source, nn.Module) and all(head.source is not m for m in modules):
                modules.append(head.source)
            if head.batched:
                groups.setdefault(id(head.source), []).append((head, arg, slot))
            else:
                calls.append(_Call(head.source, [head.key], [arg], [slot], False))
        for members in groups.values():
            calls.append(_Call(members[0][0].source, [h.head for h, _, _ in members],
                               [a for _, a, _ in members], [s for _, _, s in members], True))
        self._calls = calls
        self.models = nn.ModuleList(modules)
        # How each raw output becomes a slot value, by semantics and head kind.
        modes = {("product", "energy"): "E", ("product", "log_prob"): "E0-r",
                 ("guidance", "energy"): "E-E0", ("guidance", "log_prob"): "-r",
                 ("logic", "log_prob"): "r"}
        self._leaf_modes = tuple((modes[(self.semantics, leaf.head.kind)], leaf.head.temperature)
                                 for leaf in self._leaves)

    # --- running -----------------------------------------------------------------------------
    def _raw(self, x: Tensor) -> tuple[list, Tensor | None]:
        raw: list = [None] * (len(self._leaves) + 1)
        for call in self._calls:
            call(self, x, raw)
        e0 = None
        if self._base is not None:
            e0 = raw[-1] if self._base.temperature == 1.0 else raw[-1] / self._base.temperature
        return raw, e0

    def _values(self, x: Tensor) -> tuple[list, Tensor | None]:
        raw, e0 = self._raw(x)
        v: list = [None] * self._n_slots
        for i, (mode, t) in enumerate(self._leaf_modes):
            r = raw[i]
            if mode in ("E", "E-E0"):
                r = r if t == 1.0 else r / t
                v[i] = r if mode == "E" else r - e0
            elif mode == "E0-r":
                v[i] = e0 - r
            else:
                v[i] = -r if mode == "-r" else r
        anchor = e0 if self.semantics == "product" else None
        for op in self._ops:
            op(v, anchor)
        return v, e0

    def forward(self, x: Tensor) -> Tensor:
        """The composed energy ``E[B]`` of a batch ``x[B, ...]`` (at temperature 1)."""
        v, e0 = self._values(x)
        out = v[self._root]
        if self.semantics == "guidance":
            return e0 + out
        if self.semantics == "logic":
            return e0 - out
        return out

    def leaf_energies(self, x: Tensor) -> dict[str, Tensor]:
        """Each distinct leaf's energy ``E_c(x)`` (at temperature 1, ``[B]``), keyed by its DSL
        spelling, plus ``"(base)"`` for ``E_0`` when the plan uses it: which concept dominates.
        """
        raw, e0 = self._raw(x)
        out = {}
        for i, leaf in enumerate(self._leaves):
            if leaf.head.kind == "log_prob":
                out[leaf.text] = e0 - raw[i]
            else:
                out[leaf.text] = raw[i] / leaf.head.temperature
        if e0 is not None:
            out[_BASE_KEY] = e0
        return out

    @torch.no_grad()
    def calibrate(self, base_samples: Tensor,
                  proportions: Mapping[str, float] | None = None) -> dict[str, float]:
        """OR log-weights that give each disjunct the wanted share of the mixture (equal shares
        by default), estimated from ``base_samples`` drawn from ``p_0 ∝ exp(−E_0)``.

        ``log Z_i / Z_0 ≈ log mean_n exp(E_0(x_n) − E_i(x_n))`` (importance sampling from the
        base); the returned log-weight of disjunct ``i`` is ``log π_i − log Z_i / Z_0``. The
        estimates are also kept in ``self.log_partition_ratios``. Exact for τ = 1; the estimate
        is poor when a disjunct's mass lies where the base has few samples.

        Example (tests/test_compiler.py, ``test_calibrate_balances_an_or``): on the line, with
        base ``N(0, 3²)`` and disjuncts ``a = N(2, 1)`` scaled by ``e^-3`` and ``b = N(-2, 1)``,
        ``a | b`` puts 4.7 % of its mass on ``a``; with
        ``compose("a | b", lib, or_log_weights=compose("a | b", lib).calibrate(x0))`` from
        20 000 base samples (seed 0) the achieved shares are 50.6 % / 49.4 % (seeds 0-4:
        49.8-50.6 % on ``a``); the estimates of ``log Z_i / Z_0`` are -4.11 and -1.09 against
        the exact -4.10 and -1.10.
        """
        if self.semantics == "logic":
            raise CompileError("calibrate applies to the product and guidance semantics")
        if not self._disjuncts:
            raise CompileError(f"`{self.expr}` has no OR to calibrate")
        if self._library_base is None:
            raise CompileError("calibrate needs a base energy E_0: the base samples come from "
                               "exp(-E_0)")
        known = {text for text, _ in self._disjuncts}
        if proportions is not None and set(proportions) - known:
            raise CompileError(f"proportions name {sorted(set(proportions) - known)}, which are "
                               f"not disjuncts; disjuncts: {', '.join(sorted(known))}")
        v, e0 = self._values(base_samples)
        if e0 is None:  # the plan itself does not use E_0
            e0 = _evaluate_head(self._library_base, base_samples)
        n = base_samples.shape[0]
        self.log_partition_ratios: dict[str, float] = {}
        weights = {}
        for text, slot in self._disjuncts:
            d = v[slot] if self.semantics == "guidance" else v[slot] - e0
            log_z = float(torch.logsumexp(-d.double(), dim=0) - math.log(n))
            self.log_partition_ratios[text] = log_z
            share = 1.0 if proportions is None else proportions.get(text, 0.0)
            weights[text] = (math.log(share) if share > 0 else -math.inf) - log_z
        return weights

    # --- showing -----------------------------------------------------------------------------
    def __repr__(self) -> str:
        tau = f", or_temperature={format_number(self.or_temperature)}" \
            if self.or_temperature != 1.0 else ""
        return f"ComposedEnergy({str(self.expr)!r}, semantics={self.semantics!r}{tau})"

    def explain(self) -> str:
        """The normal form, the leaves (what computes each, which share a batched call) and the
        formula under the chosen semantics, as text.
        """
        lines = [f"expression:  {self.expr}",
                 f"semantics:   {self.semantics}" + (
                     f" (or_temperature {format_number(self.or_temperature)})"
                     if self.or_temperature != 1.0 else ""),
                 f"normal form: {self.normal_form}",
                 f"leaves ({len(self._leaves)}, evaluated in {len(self._calls)} "
                 f"call{'s' if len(self._calls) != 1 else ''}):"]
        sizes = {id(c.source): len(c.heads) for c in self._calls if c.batched}
        rows = [(leaf.text, leaf.head) for leaf in self._leaves]
        if self._base is not None:
            rows.append(("E_0", self._base))
        width = max(len(r[0]) for r in rows)
        for text, head in rows:
            extra = []
            if head.kind == "log_prob":
                extra.append("classifier head: log p(c|x)")
            if head.temperature != 1.0:
                extra.append(f"T={head.temperature:g}, exposed as E/T")
            if head.batched and sizes.get(id(head.source), 0) > 1:
                extra.append(f"batched: 1 call for {sizes[id(head.source)]} heads")
            note = f"  ({'; '.join(extra)})" if extra else ""
            lines.append(f"  {text:<{width}}  {head.computed_by()}{note}")
        lines.append("formula:")
        lines.extend("  " + line for line in _formula(self))
        return "\n".join(lines)


def _evaluate_head(head: Head, x: Tensor) -> Tensor:
    """One head on its own, at temperature 1 (only for calibrate; forward batches heads)."""
    raw: list = [None]
    _Call(head.source, [head.head if head.batched else head.key], [None], [0], head.batched)(
        None, x, raw)  # type: ignore[arg-type]
    return raw[0] / head.temperature


def _finite(value: Any, what: str) -> float:
    v = float(value)
    if math.isnan(v) or v == math.inf:
        raise CompileError(f"{what} must be a finite log-weight (or -inf), got {value!r}")
    return v


# --- formulas for explain() ------------------------------------------------------------------

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
        lines = ["E = E_0 + D,  D[c] = E[c] - E_0", f"D = {_fmt_linear(nf, 'D', '', lw)}"]
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
    return lines


# --- public entry points ---------------------------------------------------------------------

def compose(expr_or_text: Expr | str, concepts: Any, *, base: Callable | None = None,
            semantics: str = "product", or_temperature: float = 1.0,
            or_log_weights: Mapping[str, float] | Sequence[float] | None = None
            ) -> ComposedEnergy:
    """Compile a concept expression into one energy over a concept library (design §4).

    ``concepts`` is a :class:`~conceptalg.library.ConceptLibrary`, a trained model with the
    library interface, or a ``dict`` of energy functions (keys ``"red"``, ``"color=red"``,
    ``"at"``). ``base`` is ``E_0`` (overrides the library's). ``semantics`` is ``"product"``
    (AND = sum, OR = soft-min, NOT = subtraction anchored by ``E_0`` where needed),
    ``"guidance"`` (classifier-free guidance around ``E_0``) or ``"logic"`` (probabilities of
    classifier heads). ``or_temperature`` is τ of the soft-min. ``or_log_weights`` adds a
    log-weight to disjuncts: a dict keyed by disjunct text (``{"a": 0.0, "b & c": -1.2}``,
    matched by normal form, applied wherever that disjunct appears in an OR), or a sequence
    with one value per disjunct of a root OR.

    Raises :class:`UnknownConceptError` for names the library lacks (all of them, each with a
    did-you-mean) and :class:`CompileError` for an unanchored negation without a base, a
    semantics the library cannot support, or bad arguments.

    Example:
        >>> import torch
        >>> lib = {"a": lambda x: x.pow(2).sum(-1), "b": lambda x: (x - 1).pow(2).sum(-1)}
        >>> compose("a | b", lib, or_temperature=0.5)(torch.zeros(1, 2))
        tensor([-0.0091])
        >>> compose("~a", lib)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
          ...
        conceptalg.errors.CompileError: `~a` needs a base energy E_0 (...) ... Anchor the negation: `x & ~a`, or give a base (...)
    """
    return ComposedEnergy(expr_or_text, concepts, base=base, semantics=semantics,
                          or_temperature=or_temperature, or_log_weights=or_log_weights)


class _SymbolicLibrary:
    """Every name resolves (nothing is loaded): lets ``explain`` show a plan without a model."""

    def __init__(self, semantics: str) -> None:
        self.kind = "log_prob" if semantics == "logic" else "energy"
        self.base = Head("base", None, None)
        self._heads: dict[tuple, Head] = {}

    def resolve(self, c: Concept) -> Head:
        key = (c.name, c.factor)
        if key not in self._heads:
            self._heads[key] = Head(c.name, c.factor, None, None, self.kind, None)
        return self._heads[key]

    def names(self) -> list[str]:
        return [h.key for h in self._heads.values()]


def explain(expr_or_text: Expr | str, concepts: Any = None, *, semantics: str = "product",
            or_temperature: float = 1.0,
            or_log_weights: Mapping[str, float] | Sequence[float] | None = None) -> str:
    """``compose(...).explain()``; without ``concepts``, names are not checked and a base
    ``E_0`` is assumed, so the plan of any expression can be shown.

    Example:
        >>> print(explain("~a & ~b | c"))  # doctest: +NORMALIZE_WHITESPACE
        expression:  ~a & ~b | c
        semantics:   product
        normal form: ~a & ~b | c
        leaves (3, evaluated in 4 calls):
          a    (not loaded)
          b    (not loaded)
          c    (not loaded)
          E_0  (not loaded)
        formula:
          E = softmin(-E[a] - E[b] + E_0, E[c])
          softmin(e_1, ..., e_k) = -logsumexp_i(-e_i)
    """
    if concepts is None:
        _check_semantics(semantics)
        concepts = _SymbolicLibrary(semantics)
    return compose(expr_or_text, concepts, semantics=semantics, or_temperature=or_temperature,
                   or_log_weights=or_log_weights).explain()
