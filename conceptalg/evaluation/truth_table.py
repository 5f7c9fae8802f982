"""The truth table of an image model: each expression sampled, each sample checked against the
expression's truth by the exact decoder, and each OR's branches against their weights.

A sample **holds** when it is valid — one clean object for ``shapes``, a valid scene of 1–4
clean objects for ``scenes`` (:mod:`conceptalg.evaluation.decoder`) — and the expression is
true of its decoded labels (:func:`~conceptalg.evaluation.metrics.correct`: ``~`` is absence,
``|`` at least one disjunct, weights change energies, not logic; ``at(x, y)`` holds with an
object within 0.1 of the point). The truth rate over ``n`` samples carries the binomial
standard error ``sqrt(p(1 − p)/n)``.

An OR that a score-only model samples as a mixture (:class:`~conceptalg.compiler.MixtureEnergy`)
draws a branch per chain; its branch counts are tested against the branch weights by Pearson's
χ² (:func:`chi2_p`), and each branch's own truth rate (its chains against its conjunction) is
kept. An OR composed exactly (``logic``'s noisy-or over classifier heads) has no branches: only
which disjuncts hold is reported. An expression the compiler refuses is a row with the
refusal's message — never rewritten.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from ..errors import CompileError
from .metrics import Proportion, SampleLabels, correct, or_proportions, proportion

__all__ = ["TruthRow", "chi2_p", "evaluator_for", "holds", "truth_row"]


def chi2_p(counts: Sequence[int], weights: Sequence[float]) -> float:
    """The p-value of Pearson's χ² test of ``counts`` against the probabilities ``weights``
    (``k − 1`` degrees of freedom over the cells of positive weight; 1.0 for one cell).

    Example:
        >>> round(chi2_p([50, 50], [0.5, 0.5]), 6), round(chi2_p([90, 10], [0.5, 0.5]), 12)
        (1.0, 0.0)
    """
    from scipy import stats

    total = sum(counts)
    cells = [(o, w * total) for o, w in zip(counts, weights) if w > 0]
    if len(cells) < 2 or total == 0:
        return 1.0
    chi2 = sum((o - e) ** 2 / e for o, e in cells)
    return float(stats.chi2.sf(chi2, df=len(cells) - 1))


def evaluator_for(data: str) -> Callable[[Tensor], SampleLabels]:
    """The exact decoder's labels for ``data`` (``"shapes"`` or ``"scenes"``).

    Example:
        >>> evaluator_for("scenes")
        ScenesEvaluator(radius=0.1, name='decoder', seed=0, clean_only=True)
    """
    from .classifiers import make_evaluator

    return make_evaluator(data, "decoder")


def holds(expr: Any, images: Tensor, data: str = "shapes") -> Tensor:
    """Whether each image ``[N, 3, R, R]`` is valid and ``expr`` is true of its decoded labels,
    BoolTensor ``[N]`` (module docstring).

    Example:
        >>> from conceptalg.data.shapes import render
        >>> x = torch.stack([render("circle", "green", "large", 0.5, 0.5),
        ...                  render("circle", "red", "large", 0.5, 0.5)])
        >>> holds("circle & ~red", x).tolist()
        [True, False]
    """
    return correct(expr, evaluator_for(data)(images))


@dataclass
class TruthRow:
    """One expression of the truth table: its samples, which hold, and (ORs sampled as a
    mixture) its branches. ``refused`` is the compiler's message when it refused the
    expression (then there are no samples)."""

    expr: str
    n: int
    samples: Tensor | None = None
    truth: Tensor | None = None           # [n] bool: valid and the expression holds
    valid: Tensor | None = None           # [n] bool
    seconds: float | None = None
    refused: str | None = None
    branches: list[str] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    branch: Tensor | None = None          # [n] each chain's branch
    branch_truth: Tensor | None = None    # [n] bool: valid and the chain's own branch holds
    disjuncts: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    labels: SampleLabels | None = field(default=None, repr=False)   # the decoder's reading

    @property
    def rate(self) -> Proportion:
        return proportion(self.truth) if self.truth is not None else Proportion(0, 0)

    @property
    def counts(self) -> list[int]:
        if self.branch is None:
            return []
        return torch.bincount(self.branch, minlength=len(self.branches)).tolist()

    @property
    def p(self) -> float | None:
        """χ² p-value of the branch counts against the weights (``None``: no branches)."""
        return chi2_p(self.counts, self.weights) if self.branches else None

    def as_dict(self) -> dict:
        out: dict[str, Any] = {"expr": self.expr, "n": self.n, **self.settings}
        if self.refused is not None:
            return {**out, "refused": self.refused}
        rate = self.rate
        out.update(truth=rate.value, stderr=rate.stderr, holds=rate.successes,
                   valid=proportion(self.valid).value, seconds=self.seconds)
        if self.branches:
            out["branches"] = [
                {"branch": b, "weight": w, "count": c,
                 "branch holds": (proportion(self.branch_truth[self.branch == k]).as_dict()
                                  if c else None)}
                for k, (b, w, c) in enumerate(zip(self.branches, self.weights, self.counts))]
            out["chi2 p"] = self.p
        if self.disjuncts:
            out["disjuncts hold (among the samples that hold)"] = self.disjuncts
        return out


def truth_row(model: Any, expr: str, n: int, seed: int, data: str = "shapes",
              **compose_options: Any) -> TruthRow:
    """Sample ``expr`` ``n`` times from ``model`` (its own sampler defaults, ``seed``) with
    ``compose(expr, model, **compose_options)`` and check every sample (module docstring). A
    :class:`~conceptalg.errors.CompileError` at composition is the row's ``refused``."""
    import conceptalg
    from ..sampling.mixture import is_mixture

    settings = {k: v for k, v in compose_options.items() if v is not None}
    try:
        energy = conceptalg.compose(expr, model, **compose_options)
    except CompileError as e:
        return TruthRow(expr, n, refused=str(e), settings=settings)
    mixture = is_mixture(energy)
    start = time.perf_counter()
    out = conceptalg.sample(energy, n, seed=seed, return_info=mixture)
    seconds = time.perf_counter() - start
    x, info = out if mixture else (out, None)
    labels = evaluator_for(data)(x)
    row = TruthRow(expr, n, samples=x.detach().cpu(), truth=correct(expr, labels),
                   valid=labels.valid.clone(), seconds=seconds, settings=settings, labels=labels,
                   disjuncts={k: {d: (None if math.isnan(v) else v) for d, v in ds.items()}
                              for k, ds in or_proportions(expr, labels).items()})
    if info is not None:
        row.branches, row.weights = list(info["branches"]), list(info["branch weights"])
        row.branch = info["branch"].cpu()
        own = torch.stack([correct(b, labels) for b in row.branches])          # [K, n]
        row.branch_truth = own[row.branch, torch.arange(n)]
    return row
