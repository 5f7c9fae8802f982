"""Accuracy rules, standard errors, diversity and OR proportions (docs/design.md §8).

An evaluator turns ``N`` samples into :class:`SampleLabels`: whether each sample is *valid* (one
clean object for ``shapes``, a clean scene of 1–4 objects for ``scenes``) and, per concept, a
boolean ``[N]`` truth value. The truth of an expression follows its tree:

    T[c] = label(c)          T[~e] = ¬T[e]          T[w * e] = T[e]
    T[a & b & …] = ∧ T[·]    T[a | b | …] = ∨ T[·]    T[p[e]] = bound(p[e])

and a sample is **correct** when it is valid and ``T[expr]`` holds: every concept present,
negated ones absent, at least one disjunct of an OR present. Weights change energies, not
logic. A binding ``at(p)[e]`` is labelled by the evaluator as a whole (for scenes,
:mod:`.bindings`: ``e`` holds of the object at ``p``); labels that read no objects refuse it.
An accuracy ``p`` over ``n`` samples carries the binomial standard error ``sqrt(p(1 − p)/n)``.

Diversity looks at what the expression leaves free. A factor none of whose values the
expression mentions is free; its spread is the normalised entropy ``H(values)/log V`` of its
decoded values over the valid samples (1: all ``V`` values equally often, 0: one value). The
spread of positions is the RMS distance of the decoded centres from their mean (a uniform
centre over ``[ρ, 1 − ρ]²`` gives ``(1 − 2ρ)/√6``: 0.29 for ``ρ = 0.15``). For every OR the
achieved mixture is the fraction of the samples satisfying it in which each disjunct holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import torch
from torch import Tensor

from ..errors import UnknownConceptError
from ..expr import And, Bound, Concept, Expr, Not, Or, Weighted, as_expr, concepts

__all__ = ["SampleLabels", "Proportion", "ExpressionScore", "truth", "correct", "proportion",
           "normalised_entropy", "free_factors", "diversity", "or_proportions", "score",
           "json_safe"]


@dataclass
class SampleLabels:
    """What an evaluator read from ``N`` samples: the label function of every concept.

    ``valid`` ``[N]`` bool; ``factors`` maps each factor to its value names and ``values`` each
    factor to a LongTensor ``[N]`` of indices (-1: unreadable); ``centres`` ``[N, K, 2]`` and
    ``mask`` ``[N, K]`` locate the objects (for ``at(x, y)``, true when an object lies within
    ``radius`` of the point).

    Example:
        >>> labels = SampleLabels(torch.tensor([True, True]), {"color": ("red", "blue")},
        ...                       {"color": torch.tensor([0, 1])})
        >>> labels.concept(Concept("red")).tolist()
        [True, False]
    """

    valid: Tensor
    factors: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    values: Mapping[str, Tensor] = field(default_factory=dict)
    centres: Tensor | None = None
    mask: Tensor | None = None
    radius: float = 0.1

    def __len__(self) -> int:
        return self.valid.shape[0]

    def resolve(self, c: Concept) -> tuple[str, int]:
        """``(factor, value index)`` of a factor concept; raises UnknownConceptError."""
        if c.factor is not None:
            if c.factor in self.factors and c.name in self.factors[c.factor]:
                return c.factor, list(self.factors[c.factor]).index(c.name)
        else:
            owners = [f for f, vs in self.factors.items() if c.name in vs]
            if len(owners) == 1:
                return owners[0], list(self.factors[owners[0]]).index(c.name)
            if len(owners) > 1:
                raise UnknownConceptError(f"{c.name!r} is ambiguous here: write one of "
                                          f"{', '.join(f'{f}={c.name}' for f in owners)}")
        known = [f"{f}={v}" for f, vs in self.factors.items() for v in vs]
        if self.centres is not None:
            known.append("at(x, y)")
        raise UnknownConceptError(f"the evaluator cannot label {str(c)!r}; it labels "
                                  f"{', '.join(known) or 'nothing'}")

    def concept(self, c: Concept) -> Tensor:
        """Truth of one concept per sample, BoolTensor ``[N]`` (validity not included)."""
        if c.args is not None:
            if c.name != "at" or len(c.args) != 2 or self.centres is None:
                raise UnknownConceptError(f"the evaluator cannot label {str(c)!r}; the only "
                                          f"parametric concept it knows is at(x, y)")
            point = torch.tensor(c.args, dtype=self.centres.dtype, device=self.centres.device)
            dist = torch.linalg.vector_norm(self.centres - point, dim=-1)      # [N, K]
            return ((dist <= self.radius) & self.mask).any(1)
        factor, index = self.resolve(c)
        return self.values[factor] == index

    def bound(self, b: Bound) -> Tensor:
        """Truth of a binding ``place[body]`` per sample; these labels read no objects, so they
        refuse it (:class:`~conceptalg.evaluation.bindings.SceneLabels` reads them)."""
        raise UnknownConceptError(f"the evaluator cannot label the binding {str(b)!r}: it reads "
                                  f"no objects at places (scenes evaluators do)")


def truth(expr: Expr | str, labels: SampleLabels) -> Tensor:
    """Whether ``expr`` holds on each sample, by walking its tree (module docstring).

    Example:
        >>> from conceptalg import parse
        >>> labels = SampleLabels(torch.ones(3, dtype=torch.bool),
        ...                       {"color": ("red", "blue"), "shape": ("circle", "square")},
        ...                       {"color": torch.tensor([0, 1, 0]),
        ...                        "shape": torch.tensor([0, 0, 1])})
        >>> truth(parse("circle & ~red"), labels).tolist()
        [False, True, False]
    """
    expr = as_expr(expr)
    cache: dict[Concept, Tensor] = {}

    def walk(e: Expr) -> Tensor:
        if isinstance(e, Concept):
            if e not in cache:
                cache[e] = labels.concept(e)
            return cache[e]
        if isinstance(e, Not):
            return ~walk(e.expr)
        if isinstance(e, Weighted):
            return walk(e.expr)
        if isinstance(e, Bound):
            return labels.bound(e)
        parts = torch.stack([walk(t) for t in e.terms])                        # [T, N]
        if isinstance(e, And):
            return parts.all(0)
        if isinstance(e, Or):
            return parts.any(0)
        raise TypeError(f"no truth rule for {type(e).__name__}")

    return walk(expr)


def correct(expr: Expr | str, labels: SampleLabels) -> Tensor:
    """A sample is correct when it is valid and ``expr`` holds on it, BoolTensor ``[N]``.

    Example:
        >>> labels = SampleLabels(torch.tensor([True, False]), {"color": ("red", "blue")},
        ...                       {"color": torch.tensor([0, 0])})
        >>> correct("red", labels).tolist()
        [True, False]
    """
    return labels.valid & truth(expr, labels)


@dataclass(frozen=True)
class Proportion:
    """``successes`` of ``n`` with its binomial standard error ``sqrt(p(1 − p)/n)``.

    Example:
        >>> p = Proportion(30, 40)
        >>> round(p.value, 3), round(p.stderr, 4)
        (0.75, 0.0685)
    """

    successes: int
    n: int

    @property
    def value(self) -> float:
        return self.successes / self.n if self.n else float("nan")

    @property
    def stderr(self) -> float:
        p = self.value
        return math.sqrt(p * (1 - p) / self.n) if self.n else float("nan")

    def as_dict(self) -> dict:
        return {"value": self.value, "stderr": self.stderr, "n": self.n}

    def __str__(self) -> str:
        return f"{100 * self.value:.1f} ± {100 * self.stderr:.1f} %" if self.n else "n/a"


def proportion(hits: Tensor) -> Proportion:
    """The :class:`Proportion` of True entries of a BoolTensor.

    Example:
        >>> proportion(torch.tensor([True, False, True, True]))
        Proportion(successes=3, n=4)
    """
    return Proportion(int(hits.sum()), int(hits.numel()))


def normalised_entropy(values: Tensor, k: int) -> float:
    """``H / log k`` of the empirical distribution of ``values`` in ``0..k-1`` (-1 ignored);
    NaN without values, 0 when ``k`` is 1.

    Example:
        >>> round(normalised_entropy(torch.tensor([0, 1, 2, 0, 1, 2]), 3), 6)
        1.0
    """
    values = values[values >= 0]
    if values.numel() == 0:
        return float("nan")
    if k < 2:
        return 0.0
    p = torch.bincount(values, minlength=k).double() / values.numel()
    h = -(p[p > 0] * p[p > 0].log()).sum()
    return float(h / math.log(k))


def free_factors(expr: Expr | str, labels: SampleLabels) -> list[str]:
    """The factors none of whose values ``expr`` mentions.

    Example:
        >>> labels = SampleLabels(torch.ones(1, dtype=torch.bool),
        ...                       {"color": ("red",), "size": ("small",)},
        ...                       {"color": torch.tensor([0]), "size": torch.tensor([0])})
        >>> free_factors("~red", labels)
        ['size']
    """
    used = set()
    for c in concepts(as_expr(expr)):
        if c.args is None:
            try:
                used.add(labels.resolve(c)[0])
            except UnknownConceptError:
                pass
    return [f for f in labels.factors if f not in used]


def diversity(expr: Expr | str, labels: SampleLabels, among: Tensor | None = None) -> dict:
    """Spread of what ``expr`` leaves free, over the samples ``among`` (default: the valid
    ones): ``{"entropy": {factor: H/log V}, "centre spread": RMS distance from the mean}``.

    Example:
        >>> labels = SampleLabels(torch.ones(4, dtype=torch.bool),
        ...                       {"color": ("red", "blue"), "size": ("small", "large")},
        ...                       {"color": torch.tensor([0, 0, 0, 0]),
        ...                        "size": torch.tensor([0, 1, 0, 1])})
        >>> diversity("red", labels)
        {'entropy': {'size': 1.0}}
    """
    among = labels.valid if among is None else among
    out: dict = {"entropy": {f: normalised_entropy(labels.values[f][among],
                                                   len(labels.factors[f]))
                             for f in free_factors(expr, labels)}}
    if labels.centres is not None:
        points = labels.centres[among][labels.mask[among]]                    # [M, 2]
        out["centre spread"] = (float((points - points.mean(0)).pow(2).sum(1).mean().sqrt())
                                if points.shape[0] > 1 else float("nan"))
    return out


def or_proportions(expr: Expr | str, labels: SampleLabels) -> dict[str, dict[str, float]]:
    """For every OR in ``expr``: among the valid samples where it holds, the fraction in which
    each disjunct holds (disjuncts may overlap, so fractions can sum past 1). An OR inside a
    binding's body is about one object, not the sample, and is not reported.

    Example:
        >>> labels = SampleLabels(torch.ones(4, dtype=torch.bool), {"color": ("red", "blue")},
        ...                       {"color": torch.tensor([0, 0, 0, 1])})
        >>> or_proportions("red | blue", labels)
        {'red | blue': {'red': 0.75, 'blue': 0.25}}
    """
    out: dict[str, dict[str, float]] = {}
    stack = [as_expr(expr)]
    while stack:
        e = stack.pop()
        if isinstance(e, Or):
            parts = [labels.valid & truth(t, labels) for t in e.terms]
            held = torch.stack(parts).any(0)
            n = int(held.sum())
            out[str(e)] = {str(t): (int((p & held).sum()) / n if n else float("nan"))
                           for t, p in zip(e.terms, parts)}
        if not isinstance(e, Bound):
            stack.extend(reversed(e.children()))
    return out


@dataclass
class ExpressionScore:
    """The evaluation of one expression on ``n`` samples (see :func:`score`).

    Example:
        >>> s = score("red", SampleLabels(torch.tensor([True]), {"color": ("red",)},
        ...                               {"color": torch.tensor([0])}))
        >>> s.as_dict()["accuracy"], s.as_dict()["n"]
        (1.0, 1)
    """

    expr: str
    accuracy: Proportion
    valid: Proportion
    diversity: dict
    mixture: dict[str, dict[str, float]]

    def as_dict(self) -> dict:
        return {"expr": self.expr, "accuracy": self.accuracy.value,
                "stderr": self.accuracy.stderr, "n": self.accuracy.n,
                "valid": self.valid.value, "diversity": self.diversity,
                "or proportions": self.mixture}


def score(expr: Expr | str, labels: SampleLabels) -> ExpressionScore:
    """Accuracy (with standard error), valid fraction, diversity of the free factors among the
    correct samples, and OR proportions of ``expr`` on labelled samples.

    Example:
        >>> labels = SampleLabels(torch.tensor([True, True, False, True]),
        ...                       {"color": ("red", "blue")}, {"color": torch.tensor([0, 1, 0, 0])})
        >>> s = score("red", labels)
        >>> s.accuracy.successes, s.accuracy.n, s.valid.value
        (2, 4, 0.75)
    """
    expr = as_expr(expr)
    hits = correct(expr, labels)
    return ExpressionScore(str(expr), proportion(hits), proportion(labels.valid),
                           diversity(expr, labels, among=hits), or_proportions(expr, labels))


def json_safe(obj):
    """A copy of nested dicts/lists with NaN and infinities replaced by ``None`` (standard JSON).

    Example:
        >>> json_safe({"a": [1.0, float("nan")]})
        {'a': [1.0, None]}
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj
