"""MixtureEnergy: an OR over heads that give only scores, sampled as a mixture of its branches.

No single energy of such an OR can be computed: its ``−logsumexp`` needs energy values. Its
disjunctive normal form (:mod:`.dnf`) writes ``exp(−E) = Σ_n c_n exp(−E_n)``; under **equal
partition functions** (every branch ``p_n ∝ exp(−E_n)`` with the same ``Z_n``, the seed's
disjunction as the equal mixture) the law is ``Σ_n π_n p_n`` with ``π_n = c_n / Σ_m c_m``:
uniform over the disjuncts, times ``exp(ℓ)`` for OR log-weights ℓ, times the multinomial count
of an OR under an integer weight. ``conceptalg.sample`` draws a branch per chain from ``π``
(seeded) and samples that chain with the branch's own :class:`ComposedEnergy` (same settings
for every branch).

Each branch is composed with the expression's semantics, base and guidance scale ``w``: under
guidance branch ``n`` is ``E_0 + w·D_n``, so the mixture is of guided branches (for ``w = 1``
and equal ``Z_n`` it is the law of the exact OR ``E_0 + softmin(D_n)``; for ``w ≠ 1`` that of
``E_0 + w·softmin_τ(D_n)`` at ``τ = 1/w``). ``or_temperature`` must stay 1: a sharpened soft
minimum is no mixture.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from torch import Tensor, nn

from ..errors import CompileError
from ..expr import Expr, Or, as_expr, format_number
from ..expr import concepts as concepts_of
from ..library import SAMPLING_HINTS, as_library
from .checks import log_weight_table, resolve_negation, resolve_semantics
from .dnf import expand, probabilities
from .energy import ComposedEnergy
from .normalize import _normal_form, _to_expr
from .printers import describe_mixture

__all__ = ["MixtureEnergy"]


class MixtureEnergy(nn.Module):
    """The mixture that an OR over score-only heads defines: ``branches`` (one
    :class:`ComposedEnergy` per disjunct of the disjunctive normal form) drawn with
    ``branch_weights`` (they sum to 1).

    Built by :func:`~conceptalg.compiler.compose` (same arguments) when an OR needs energy
    values that a head does not give; everything is checked at construction. Assumption: the
    branches' partition functions are equal, so a branch's weight is ``exp`` of its OR
    log-weights (times its multinomial count), normalised (module docstring). It has no single
    energy or score (``forward`` and ``score`` raise); ``conceptalg.sample`` chooses a branch per
    chain and samples each chain with its branch's energy.

    Attributes: ``expr``, ``semantics``, ``semantics_from_library``, ``guidance_scale``,
    ``negation_scale``, ``negation_sigmas`` (as :class:`ComposedEnergy`'s, shared by the branches),
    ``or_temperature`` (1), ``normal_form`` (the disjunctive normal form, an expression),
    ``branches``, ``branch_weights``, ``branch_log_weights`` (``log c_n``, unnormalised),
    ``leaves``, ``library``, ``sigma_aware``, ``score_only`` (True), ``reason`` (the head that
    gives only a score), and the library's sampling hints.

    Example:
        >>> import torch
        >>> from conceptalg import ConceptLibrary, compose
        >>> class Scores(torch.nn.Module):          # -grad of |x - mu_c|^2 / 2
        ...     def concept_scores(self, x, heads):
        ...         mu = {"a": 2.0, "b": -2.0}
        ...         return torch.stack([mu[h] - x for h in heads], dim=1)
        >>> lib = ConceptLibrary().add_model(Scores(), ["a", "b"], kind="score")
        >>> energy = compose("a | b", lib, or_log_weights={"a": 0.0, "b": 1.0})
        >>> energy
        MixtureEnergy('a | b', semantics='product', branches=2)
        >>> [round(w, 3) for w in energy.branch_weights]
        [0.269, 0.731]
    """

    #: no energy values: samplers that need them refuse it (``conceptalg.sampling.base``)
    score_only = True

    def __init__(self, expr: Expr | str, concepts: Any, *, base: Callable | None = None,
                 semantics: str | None = None, or_temperature: float = 1.0,
                 or_log_weights: Mapping[str, float] | Sequence[float] | None = None,
                 guidance_scale: float | None = None, negation_scale: float | None = None,
                 negation_sigmas: Sequence[float | None] | None = None,
                 reason: str = "a head") -> None:
        super().__init__()
        self.expr = as_expr(expr)
        self.library = as_library(concepts)
        self.semantics, self.semantics_from_library, self.guidance_scale = resolve_semantics(
            concepts, self.library, semantics, guidance_scale)
        self.negation_scale, self.negation_sigmas = resolve_negation(
            concepts, self.library, self.semantics, self.semantics_from_library, negation_scale,
            negation_sigmas)
        self.reason = reason
        if float(or_temperature) != 1.0:
            raise CompileError(
                f"or_temperature={format_number(float(or_temperature))} sharpens the soft "
                f"minimum of energy values, and {reason} has only a score: `{self.expr}` is "
                f"sampled as a mixture of its disjuncts (a disjunct per chain), which has no "
                f"temperature; drop or_temperature, or use a model with energy values")
        self.or_temperature = 1.0
        nf = _normal_form(self.expr, True)
        table = log_weight_table(self.expr, nf, self.semantics, or_log_weights)
        found, used = expand(nf, self.expr, self.semantics, table)
        if set(table) - used:
            names = ", ".join(sorted(str(_to_expr(t)) for t in set(table) - used))
            raise CompileError(f"or_log_weights names {names}, which is not a disjunct of an "
                               f"OR of `{self.expr}` sampled as a mixture (a disjunct of a "
                               f"negated OR becomes a conjunct by De Morgan, and has no weight)")
        self.branch_weights = tuple(probabilities(found, self.expr))
        self.branch_log_weights = tuple(d.log_weight for d in found)
        branches = []
        for d in found:
            try:
                branches.append(ComposedEnergy(d.expr, concepts, base=base, semantics=semantics,
                                               guidance_scale=guidance_scale,
                                               negation_scale=negation_scale,
                                               negation_sigmas=negation_sigmas))
            except CompileError as e:
                if type(e) is not CompileError:
                    raise
                raise CompileError(f"{e}\n  in the branch `{d.expr}` of `{self.expr}`, which "
                                   f"is sampled as a mixture (a disjunct per chain)") from None
        self.branches = nn.ModuleList(branches)
        exprs = [d.expr for d in found]
        self.normal_form = exprs[0] if len(exprs) == 1 else Or(*exprs)
        order = {t: i for i, t in
                 enumerate(dict.fromkeys(str(c) for c in concepts_of(self.expr)))}
        found_leaves = dict.fromkeys(t for b in branches for t in b.leaves)
        self.leaves = tuple(sorted(found_leaves, key=lambda t: order.get(t, len(order))))
        self.sigma_aware = any(b.sigma_aware for b in branches)
        for name in SAMPLING_HINTS:
            value = getattr(branches[0], name, None)
            if value is not None:
                setattr(self, name, value)

    def _refuse(self, what: str) -> CompileError:
        return CompileError(
            f"`{self.expr}` has no single {what}: {self.reason} has only a score, so it is "
            f"sampled as a mixture of {len(self.branches)} branches (a disjunct per chain, "
            f"under equal partition functions); conceptalg.sample draws each chain's branch, and "
            f"each branch's own energy is in .branches")

    def forward(self, x: Tensor, sigma: Any = None) -> Tensor:
        """Refused: a mixture over score-only heads has no energy values (class docstring)."""
        raise self._refuse("energy")

    def score(self, x: Tensor, sigma: Any = None) -> Tensor:
        """Refused: the score of a mixture weighs its branches by their densities, which
        score-only heads do not give."""
        raise self._refuse("score")

    def calibrate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        """Refused: calibration estimates partition functions from energy values."""
        raise CompileError(f"calibrate estimates each disjunct's partition function from its "
                           f"energy values, and {self.reason} has only a score; the mixture "
                           f"`{self.expr}` assumes them equal (set its weights with "
                           f"or_log_weights)")

    def __repr__(self) -> str:
        extra = ""
        if self.guidance_scale not in (None, 1.0):
            extra += f", guidance_scale={format_number(self.guidance_scale)}"
        return (f"MixtureEnergy({str(self.expr)!r}, semantics={self.semantics!r}{extra}, "
                f"branches={len(self.branches)})")

    def explain(self) -> str:
        """The semantics, the disjunctive normal form, the method (a disjunct per chain, under
        equal partition functions), the leaves, and each branch's weight and formula."""
        return describe_mixture(self.expr, self.normal_form, self.reason, self.leaves,
                                [branch.program for branch in self.branches],
                                self.branch_weights)
