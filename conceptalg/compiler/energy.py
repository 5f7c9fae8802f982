"""ComposedEnergy: the composed energy ``E(x, σ)`` of an expression, and its score ``−∇_x E``.

The constructor compiles the expression into a frozen
:class:`~conceptalg.compiler.program.Program` (:func:`~conceptalg.compiler.program.compile_program`:
resolution, checks, ops, calls, coefficients) and keeps the arguments of parametric leaves as
buffers; ``forward`` and ``score`` only run that program on tensors, and the semantics object
in it (:mod:`.semantics`) says what the root value means. Atoms are what the leaves give at
temperature 1 — ``E_c`` for energy and score heads, ``log p(c|x)`` for classifier heads — plus
``E_0``. When every op is linear (product or guidance without an OR) the root is
``Σ_i a_i · atom_i``; the coefficients ``a_i`` are in the program, so
``score = Σ_i a_i · (−∇ atom_i)`` can mix heads that give energies (differentiated by autograd)
and heads that give only scores (``concept_scores``). The text of ``explain()`` comes from
:mod:`.printers`, which reads the program; :func:`~conceptalg.compiler.compose` (in :mod:`.api`)
builds this class, or a mixture for an OR over score-only heads.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from ..errors import CompileError
from ..expr import Expr, format_number
from ..library import SAMPLING_HINTS
from .calls import as_sigma, evaluate_head
from .checks import check_scores
from .printers import describe
from .program import Program, compile_program

__all__ = ["ComposedEnergy"]

_BASE_KEY = "(base)"


class ComposedEnergy(nn.Module):
    """The energy of a concept expression over a concept library:
    ``forward(x[B, ...], sigma=None) -> E[B]`` and ``score(x, sigma=None) -> −∇_x E [B, ...]``.

    Built by :func:`~conceptalg.compiler.compose` (same arguments); see
    :mod:`conceptalg.compiler` for the semantics. Everything that can fail by name or structure
    fails here, at construction (:func:`~conceptalg.compiler.program.compile_program`); an OR
    over a head that gives only scores raises
    :class:`~conceptalg.compiler.checks.OrNeedsEnergyValues` (``compose`` makes it a mixture).
    Models that are ``nn.Module``s are registered as submodules, so ``.to(device)`` and
    ``.eval()`` reach them.

    Attributes: ``program`` (the compiled :class:`~conceptalg.compiler.program.Program` this
    module runs), ``expr`` (the expression), ``semantics`` (its name), ``semantics_from_library``
    (True when it is the library's default), ``guidance_scale`` (``w`` under guidance and logic,
    else ``None``), ``negation_scale`` and ``negation_sigmas`` (under guidance, else ``None``),
    ``or_temperature``, ``normal_form`` (an expression), ``leaves`` (DSL spellings of the
    distinct leaves), ``library``, ``sigma_aware`` (some leaf or the base takes ``sigma``),
    ``score_only`` (some leaf or the needed base gives only a score: no ``forward``).

    Example:
        >>> import torch
        >>> from conceptalg import compose
        >>> lib = {"a": lambda x: x.pow(2).sum(-1), "b": lambda x: (x - 1).pow(2).sum(-1)}
        >>> energy = compose("a & ~b", lib)
        >>> energy
        ComposedEnergy('a & ~b', semantics='product')
        >>> energy(torch.zeros(3, 2))
        tensor([-2., -2., -2.])
        >>> energy.score(torch.zeros(1, 2))  # -grad(|x|² - |x - 1|²) = -2
        tensor([[-2., -2.]])
    """

    #: ``forward``/``score`` take ``sigma`` as a plain number too (no per-call value check)
    sigma_accepts_number = True

    def __init__(self, expr: Expr | str, concepts: Any, *, base: Callable | None = None,
                 semantics: str | None = None, or_temperature: float = 1.0,
                 or_log_weights: Mapping[str, float] | Sequence[float] | None = None,
                 guidance_scale: float | None = None, negation_scale: float | None = None,
                 negation_sigmas: Sequence[float | None] | None = None) -> None:
        super().__init__()
        program = compile_program(expr, concepts, base=base, semantics=semantics,
                                  or_temperature=or_temperature, or_log_weights=or_log_weights,
                                  guidance_scale=guidance_scale, negation_scale=negation_scale,
                                  negation_sigmas=negation_sigmas)
        self.program = program
        self.expr, self.library = program.expr, program.library
        self.semantics = program.semantics.name
        self.semantics_from_library = program.semantics_from_library
        self.guidance_scale = program.guidance_scale
        self.negation_scale, self.negation_sigmas = program.negation_scale, program.negation_sigmas
        self.or_temperature = program.or_temperature
        self.normal_form = program.normal_form
        self.leaves = tuple(leaf.text for leaf in program.leaves)
        self.score_only, self.sigma_aware = program.score_only, program.sigma_aware
        for name, args in program.arg_buffers:
            self.register_buffer(name, torch.tensor(args, dtype=torch.float64), persistent=False)
        self.models = nn.ModuleList(program.modules)
        for name in SAMPLING_HINTS:
            value = getattr(concepts, name, None)
            if value is None:
                value = getattr(self.library, name, None)
            if value is not None:
                setattr(self, name, value)

    # --- negated terms under guidance ---------------------------------------------------------
    def _regime(self, sigma: Any, s: Tensor | None) -> Any:
        """Whether the negated terms count at the level given: ``"on"``, ``"off"``, or (a
        tensor of levels) a ``[B]`` tensor, 1 where they do. ``sigma`` is what the caller
        passed (a number decides on the host), ``s`` the levels as a tensor."""
        p = self.program
        if not p.negation_gated or p.negation_sigmas is None:
            return "on"
        lo, hi = p.negation_sigmas
        if sigma is None or isinstance(sigma, numbers.Real):
            level = 0.0 if sigma is None else float(sigma)
            return "on" if lo <= level <= hi else "off"
        return ((s >= lo) & (s <= hi)).to(s.dtype)  # [B]

    def _mixed_terms(self, on: Tensor) -> tuple:
        """The linear terms for per-sample regimes, ``on`` ``[B]`` (1: inside
        ``negation_sigmas``, 0: outside): each factor is a ``[B]`` tensor."""
        terms = self.program.linear_terms
        (g1, s1, gc1, sc1), (g0, s0, gc0, sc0) = terms["on"], terms["off"]

        def mix(a, b):
            a, b = dict(a), dict(b)
            return tuple((i, on * a.get(i, 0.0) + (1 - on) * b.get(i, 0.0))
                         for i in dict.fromkeys([*a, *b]))

        calls = lambda x, y: tuple(c for c in self.program.calls if c in x or c in y)  # noqa: E731
        return mix(g1, g0), mix(s1, s0), calls(gc1, gc0), calls(sc1, sc0)

    # --- running -----------------------------------------------------------------------------
    def _sigma(self, sigma: Any, x: Tensor) -> Tensor | None:
        if sigma is None and not self.program.sigma_aware:
            return None
        return as_sigma(sigma, x)

    def _raw(self, x: Tensor, sigma: Tensor | None) -> tuple[list, Tensor | None]:
        p = self.program
        raw: list = [None] * (len(p.leaves) + 1)
        for call in p.calls:
            call(self, x, sigma, raw)
        e0 = None
        if p.base is not None:
            e0 = raw[-1] if p.base.temperature == 1.0 else raw[-1] / p.base.temperature
        return raw, e0

    def _values(self, x: Tensor, sigma: Tensor | None,
                regime: Any = "on") -> tuple[list, Tensor | None]:
        p = self.program
        raw, e0 = self._raw(x, sigma)
        v: list = [None] * p.n_slots
        for i, (mode, t) in enumerate(p.leaf_modes):
            r = raw[i]
            if mode in ("E", "E-E0"):
                r = r if t == 1.0 else r / t
                v[i] = r if mode == "E" else r - e0
            elif mode == "E0-r":
                v[i] = e0 - r
            else:
                v[i] = -r if mode == "-r" else r
        anchor = e0 if p.semantics.anchors else None
        g = p.factor(regime)
        for op in p.ops:
            op(v, anchor, g)
        return v, e0

    def _energy(self, x: Tensor, sigma: Tensor | None, regime: Any = "on") -> Tensor:
        v, e0 = self._values(x, sigma, regime)
        p = self.program
        return p.semantics.energy(v[p.root], e0, p.guidance_scale)

    def forward(self, x: Tensor, sigma: float | Tensor | None = None) -> Tensor:
        """The composed energy ``E[B]`` of a batch ``x[B, ...]`` at noise level ``sigma`` (at
        temperature 1).

        ``sigma`` is a number or a tensor ``[B]`` (``None``: 0, the data level); σ-aware leaves
        and base receive it as ``sigma=s[B]``, the others ignore it. A bad ``sigma`` raises
        :class:`ValueError` (a tensor's values are checked with one host sync; a number costs
        none). Raises :class:`CompileError` when the energy is ``score_only``.
        """
        p = self.program
        if p.no_energy is not None:
            raise CompileError(p.no_energy)
        s = self._sigma(sigma, x)
        if p.only_call is not None:
            raw = [None]
            p.only_call(self, x, s, raw)
            return raw[0]
        return self._energy(x, s, self._regime(sigma, s))

    def score(self, x: Tensor, sigma: float | Tensor | None = None) -> Tensor:
        """The composed score ``−∇_x E(x, σ)``, ``[B, *shape]`` (``sigma`` as in ``forward``).

        For a linear energy (product or guidance without an OR) it is ``Σ_i a_i · (−∇ atom_i)``:
        score heads contribute their ``concept_scores``, the others ``−∇`` by autograd with
        respect to ``x`` only (one backward pass for all of them). Otherwise (an OR, or logic;
        then no head is score-only) it differentiates ``forward``. No graph reaches ``x``
        through the autograd part; score heads keep theirs.

        Example:
            >>> from conceptalg import compose
            >>> lib = {"a": lambda x, sigma: x.pow(2).sum(-1) / (2 * (1 + sigma ** 2))}
            >>> compose("2 * a", lib).score(torch.ones(1, 2), sigma=1.0)  # -2 x / (1 + σ²)
            tensor([[-1., -1.]])
        """
        p = self.program
        s = self._sigma(sigma, x)
        if not p.semantics.linear and p.base.kind == "score":
            return self._probability_score(x, s)
        regime = self._regime(sigma, s)
        if p.linear_terms is None:
            with torch.enable_grad():
                xg = x.detach().requires_grad_(True)
                (g,) = torch.autograd.grad(self._energy(xg, s, regime).sum(), xg)
            return -g
        if isinstance(regime, Tensor):
            grad_terms, score_terms, grad_calls, score_calls = self._mixed_terms(regime)
        else:
            grad_terms, score_terms, grad_calls, score_calls = p.linear_terms[regime]
        raw: list = [None] * (len(p.leaves) + 1)
        out = None
        if score_terms:
            for call in score_calls:
                call(self, x, s, raw)
            for i, c in score_terms:
                if isinstance(c, Tensor):  # one factor per sample
                    c = c.reshape(-1, *([1] * (raw[i].dim() - 1)))
                out = raw[i] * c if out is None else out + raw[i] * c  # [B, *shape]
        if grad_terms:
            with torch.enable_grad():
                xg = x.detach().requires_grad_(True)
                for call in grad_calls:
                    call(self, xg, s, raw)
                total = None
                for i, c in grad_terms:
                    total = raw[i] * c if total is None else total + raw[i] * c  # [B]
                (g,) = torch.autograd.grad(total.sum(), xg)
            out = -g if out is None else out - g
        return torch.zeros_like(x) if out is None else out

    def _probability_score(self, x: Tensor, sigma: Tensor | None) -> Tensor:
        """``s_0 + w ∇_x log P(expr | x)`` for classifier heads over a base that gives only a
        score (logic): the probabilities' part by autograd, the base's as it is."""
        p = self.program
        raw: list = [None] * (len(p.leaves) + 1)
        for call in p.calls:
            if call.scores:
                call(self, x, sigma, raw)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            for call in p.calls:
                if not call.scores:
                    call(self, xg, sigma, raw)
            v: list = [None] * p.n_slots
            v[:len(p.leaves)] = raw[:len(p.leaves)]
            for op in p.ops:
                op(v, None)
            (g,) = torch.autograd.grad(v[p.root].sum(), xg)
        s0 = raw[-1] if p.base.temperature == 1.0 else raw[-1] / p.base.temperature
        return s0 + (g if p.guidance_scale == 1.0 else p.guidance_scale * g)

    def leaf_energies(self, x: Tensor, sigma: float | Tensor | None = None) -> dict[str, Tensor]:
        """Each distinct leaf's energy ``E_c(x, σ)`` (at temperature 1, ``[B]``), keyed by its
        DSL spelling, plus ``"(base)"`` for ``E_0`` when the plan uses it: which concept
        dominates. Raises :class:`CompileError` when the energy is ``score_only``.
        """
        p = self.program
        if p.no_energy is not None:
            raise CompileError(p.no_energy)
        raw, e0 = self._raw(x, self._sigma(sigma, x))
        out = {}
        for i, leaf in enumerate(p.leaves):
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
        by default), estimated from ``base_samples`` drawn from ``p_0 ∝ exp(−E_0)`` (at the
        data level, σ = 0).

        ``log Z_i / Z_0 ≈ log mean_n exp(E_0(x_n) − E_i(x_n))`` (importance sampling from the
        base); the returned log-weight of disjunct ``i`` is ``log π_i − log Z_i / Z_0``. The
        estimates are also kept in ``self.log_partition_ratios``. Exact for τ = 1; the estimate
        is poor when a disjunct's mass lies where the base has few samples. Under guidance with
        scale ``w``, disjunct ``i`` is the energy ``E_0 + w·D_i`` (a mixture exactly when
        ``τ = 1/w``).

        Example (tests/test_compiler.py, ``test_calibrate_balances_an_or``): on the line, with
        base ``N(0, 3²)`` and disjuncts ``a = N(2, 1)`` scaled by ``e^-3`` and ``b = N(-2, 1)``,
        ``a | b`` puts 4.7 % of its mass on ``a``; with
        ``compose("a | b", lib, or_log_weights=compose("a | b", lib).calibrate(x0))`` from
        20 000 base samples (seed 0) the achieved shares are 50.6 % / 49.4 % (seeds 0-4:
        49.8-50.6 % on ``a``); the estimates of ``log Z_i / Z_0`` are -4.11 and -1.09 against
        the exact -4.10 and -1.10.
        """
        p = self.program
        if p.no_energy is not None:
            raise CompileError(p.no_energy)
        if not p.semantics.linear:
            raise CompileError("calibrate applies to the product and guidance semantics")
        if not p.disjuncts:
            raise CompileError(f"`{p.expr}` has no OR to calibrate")
        if p.library_base is None:
            raise CompileError("calibrate needs a base energy E_0: the base samples come from "
                               "exp(-E_0)")
        if p.library_base.kind == "score":
            raise CompileError(check_scores(p.expr, p.semantics.name, [], p.library_base, False))
        known = {text for text, _ in p.disjuncts}
        if proportions is not None and set(proportions) - known:
            raise CompileError(f"proportions name {sorted(set(proportions) - known)}, which are "
                               f"not disjuncts; disjuncts: {', '.join(sorted(known))}")
        sigma = self._sigma(None, base_samples)
        v, e0 = self._values(base_samples, sigma, self._regime(None, sigma))
        if e0 is None:  # the plan itself does not use E_0
            base = p.library_base
            e0 = evaluate_head(base, base_samples, as_sigma(None, base_samples)
                               if base.sigma_aware else None)
        n = base_samples.shape[0]
        self.log_partition_ratios: dict[str, float] = {}
        weights = {}
        for text, slot in p.disjuncts:
            d = p.semantics.disjunct_excess(v[slot], e0, p.guidance_scale)
            log_z = float(torch.logsumexp(-d.double(), dim=0) - math.log(n))
            self.log_partition_ratios[text] = log_z
            share = 1.0 if proportions is None else proportions.get(text, 0.0)
            weights[text] = (math.log(share) if share > 0 else -math.inf) - log_z
        return weights

    # --- showing -----------------------------------------------------------------------------
    def __repr__(self) -> str:
        extra = ""
        if self.guidance_scale not in (None, 1.0):
            extra += f", guidance_scale={format_number(self.guidance_scale)}"
        if self.negation_scale not in (None, 1.0):
            extra += f", negation_scale={format_number(self.negation_scale)}"
        if self.negation_sigmas is not None:
            extra += f", negation_sigmas={_range_text(self.negation_sigmas)}"
        if self.or_temperature != 1.0:
            extra += f", or_temperature={format_number(self.or_temperature)}"
        return f"ComposedEnergy({str(self.expr)!r}, semantics={self.semantics!r}{extra})"

    def explain(self) -> str:
        """The semantics in force, the normal form, the leaves (what computes each, which share
        a batched call, which take ``sigma`` or give only a score) and the formula, as text.
        """
        return describe(self.program)


def _range_text(bounds: tuple[float, float]) -> str:
    lo, hi = bounds
    return f"({format_number(lo)}, {'None' if hi == math.inf else format_number(hi)})"
