"""The exact check of bindings on decoded scenes (docs/design.md §8).

A binding ``at(p)[E]`` is about one object: the decoded object nearest ``p``. With ``c*`` its
centre and ``shape*``, ``colour*`` its decoded labels,

    T[at(p)[E]] = (|c* − p| ≤ r)  ∧  E(shape*, colour*)

where ``E`` is read by the truth rules of :mod:`.metrics` on that object alone (shape and
colour names, bare ``red`` or qualified ``color=red``; ``&``, ``|``, ``~``; weights ignored).
``~at(p)[E]`` is the complement ("no object at p of which E holds"), a plain ``at(p)`` holds
when any object lies within ``r``, and ``&``, ``|``, ``~`` combine terms as everywhere. In a
valid scene the objects' centres are at least ``2ρ + gap = 0.38`` apart, more than ``2r = 0.2``,
so the nearest object is the only one that can be within ``r``. A sample counts when the scene
is valid (1–4 clean objects, :func:`~.decoder.decode_scenes`) and the whole expression holds
(:func:`~.metrics.correct` on :class:`SceneLabels`).

For reports, :func:`check_bindings` says per sample why each binding failed: ``invalid scene``,
``position`` (no object within ``r``), or the parts of ``E`` that fail on the object there —
``shape`` (the conjuncts of ``E`` about shape alone), ``colour`` (about colour alone) and
``shape & colour`` (conjuncts that mix the two, like ``red | circle``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import torch
from torch import Tensor

from ..data.shapes import COLORS, SHAPES
from ..errors import UnknownConceptError
from ..expr import And, Bound, Concept, Expr, Weighted, as_expr, concepts
from .decoder import ScenesDecoding
from .metrics import SampleLabels, truth

__all__ = ["OBJECT_FACTORS", "PARTS", "SceneLabels", "scene_labels", "bindings", "BindingCheck",
           "BindingReport", "check_bindings"]

#: the properties a binding's body may name: factor -> values (label = index in the tuple)
OBJECT_FACTORS: dict[str, tuple[str, ...]] = {"shape": SHAPES, "color": COLORS}
#: the parts of a body a failure is put down to, by the object factors its conjuncts mention
PARTS: dict[frozenset, str] = {frozenset({"shape"}): "shape", frozenset({"color"}): "colour",
                               frozenset({"shape", "color"}): "shape & colour"}


@dataclass
class SceneLabels(SampleLabels):
    """What a scenes evaluator read from ``N`` samples, objects included: besides validity and
    the centres ``[N, K, 2]`` / ``mask`` ``[N, K]`` of :class:`~.metrics.SampleLabels`,
    ``objects`` maps ``shape`` and ``color`` to LongTensor ``[N, K]`` value indices of each
    object (-1 in unused slots), which a binding's body is read on (:meth:`bound`).

    Example:
        >>> from conceptalg.data.scenes import ScenesDataset
        >>> from conceptalg.evaluation.decoder import decode_scenes
        >>> data = ScenesDataset(1, seed=0, min_objects=1, max_objects=1)
        >>> x, y = data.centres[0, 0].tolist()
        >>> shape, colour = SHAPES[data.shapes[0, 0]], COLORS[data.colors[0, 0]]
        >>> labels = scene_labels(decode_scenes(data.images))
        >>> at = Concept("at", args=(x, y))
        >>> labels.bound(at[Concept(shape) & Concept(colour)]).tolist()
        [True]
        >>> labels.bound(at[~Concept(colour)]).tolist()
        [False]
    """

    objects: Mapping[str, Tensor] = field(default_factory=dict)
    object_factors: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: dict(OBJECT_FACTORS))

    def nearest(self, point) -> tuple[Tensor, Tensor]:
        """``(index, near)``, each ``[N]``: the slot of the object nearest ``point`` (-1 in a
        sample without objects) and whether it lies within ``radius`` of the point. ``point``
        is ``(x, y)`` for every sample or a tensor ``[N, 2]``, one point per sample."""
        p = torch.as_tensor(point, dtype=self.centres.dtype, device=self.centres.device)
        dist = torch.linalg.vector_norm(self.centres - p.reshape(-1, 1, 2), dim=-1)  # [N, K]
        dist = torch.where(self.mask, dist, torch.full_like(dist, float("inf")))
        best, index = dist.min(1)                                              # [N], [N]
        found = torch.isfinite(best)
        return torch.where(found, index, torch.full_like(index, -1)), found & (best <= self.radius)

    def object_at(self, point) -> SampleLabels:
        """The labels of the object at ``point`` (the nearest, :meth:`nearest`): ``valid`` says
        it lies within ``radius``, ``values`` are its shape and colour (-1 without one)."""
        index, near = self.nearest(point)
        slot = index.clamp(min=0)[:, None]                                     # [N, 1]
        values = {f: torch.where(index >= 0, v.gather(1, slot)[:, 0], torch.full_like(index, -1))
                  for f, v in self.objects.items()}
        return SampleLabels(near, self.object_factors, values)

    def bound(self, b: Bound) -> Tensor:
        """``b`` = ``at(p)[E]`` per sample: an object within ``radius`` of ``p``, the nearest,
        of which ``E`` holds (module docstring). BoolTensor ``[N]``, validity not included."""
        one = self.object_at(_point(b))
        return one.valid & truth(_body(b), one)


def _point(b: Bound) -> tuple[float, float]:
    place = b.place
    if place.name != "at" or len(place.args) != 2:
        raise UnknownConceptError(f"the evaluator cannot label {str(b)!r}: the only place it "
                                  f"knows is at(x, y)")
    return place.args


def _body(b: Bound) -> Expr:
    place = next((c for c in concepts(b.body) if c.args is not None), None)
    if place is not None:
        raise UnknownConceptError(f"the evaluator cannot label {str(b)!r}: a binding's body "
                                  f"names properties of one object (shape, colour), not "
                                  f"{place!s}")
    return b.body


def scene_labels(decoding: ScenesDecoding, radius: float = 0.1,
                 clean_only: bool = True) -> SceneLabels:
    """The :class:`SceneLabels` of decoded scenes. ``clean_only`` (the protocol's figure): only
    valid scenes hold objects; ``False``: every object the decoder found counts, clean or not,
    and a scene with any object is valid (the looser *read* figure).

    Example:
        >>> from conceptalg.data.scenes import ScenesDataset
        >>> from conceptalg.evaluation.decoder import decode_scenes
        >>> labels = scene_labels(decode_scenes(ScenesDataset(3, seed=0).images))
        >>> labels.valid.tolist(), labels.objects["color"].shape
        ([True, True, True], torch.Size([3, 4]))
    """
    if clean_only:
        valid, mask = decoding.valid, decoding.mask & decoding.valid[:, None]
    else:
        valid, mask = decoding.counts >= 1, decoding.mask
    objects = {"shape": decoding.shapes.masked_fill(~mask, -1),
               "color": decoding.colors.masked_fill(~mask, -1)}
    return SceneLabels(valid, {}, {}, centres=decoding.centres, mask=mask, radius=radius,
                       objects=objects)


def bindings(expr: Expr | str) -> list[Bound]:
    """The distinct bindings of ``expr``, in order of first appearance (negated ones too).

    Example:
        >>> at = lambda x, y: Concept("at", args=(x, y))
        >>> expr = at(0.3, 0.3)[Concept("red")] & ~at(0.7, 0.7)[Concept("circle")]
        >>> [str(b) for b in bindings(expr)]
        ['at(0.3, 0.3)[red]', 'at(0.7, 0.7)[circle]']
    """
    seen: dict[Bound, None] = {}
    stack = [as_expr(expr)]
    while stack:
        node = stack.pop()
        if isinstance(node, Bound):
            seen.setdefault(node, None)
        else:
            stack.extend(reversed(node.children()))
    return list(seen)


def _parts(body: Expr, labels: SampleLabels) -> dict[str, Expr]:
    """The body's top-level conjuncts grouped into :data:`PARTS` by the factors they mention."""
    while isinstance(body, Weighted):
        body = body.expr
    groups: dict[str, list[Expr]] = {}
    for term in (body.terms if isinstance(body, And) else (body,)):
        factors = frozenset(labels.resolve(c)[0] for c in concepts(term))
        groups.setdefault(PARTS.get(factors, "shape & colour"), []).append(term)
    return {part: groups[part][0] if len(groups[part]) == 1 else And(*groups[part])
            for part in PARTS.values() if part in groups}


@dataclass
class BindingCheck:
    """One binding ``at(p)[E]`` checked on ``N`` samples (all ``[N]``): ``valid`` (the scene),
    ``near`` (an object within ``radius`` of ``p``), ``shape``/``color`` (the decoded labels of
    the object nearest ``p``, -1 without one), ``parts`` (part name → whether that part of
    ``E`` holds of the object, :data:`PARTS`) and ``holds`` (the binding's truth, validity not
    included: ``near`` and all of ``E``).

    Example:
        >>> check = check_bindings(expr, labels).checks[0]  # doctest: +SKIP
        >>> check.reasons()  # doctest: +SKIP
        ['ok', 'colour', 'position']
    """

    binding: Bound
    valid: Tensor
    near: Tensor
    shape: Tensor
    color: Tensor
    parts: dict[str, Tensor]
    holds: Tensor

    def reasons(self) -> list[str]:
        """Per sample: ``ok``, ``invalid scene``, ``position``, or the failing parts joined by
        ``", "`` (``shape``, ``colour``, ``shape & colour``)."""
        out = []
        for i in range(self.valid.shape[0]):
            if not self.valid[i]:
                out.append("invalid scene")
            elif not self.near[i]:
                out.append("position")
            elif self.holds[i]:
                out.append("ok")
            else:
                out.append(", ".join(p for p, ok in self.parts.items() if not ok[i]))
        return out

    def describe(self, i: int) -> str:
        """The object read at the binding's point in sample ``i``: ``"red circle"``, or ``"-"``
        when there is none within ``radius``."""
        if not self.near[i]:
            return "-"
        return f"{COLORS[int(self.color[i])]} {SHAPES[int(self.shape[i])]}"


@dataclass
class BindingReport:
    """An expression checked on ``N`` scenes: ``valid`` ``[N]`` (the scene), ``correct``
    ``[N]`` (valid and the whole expression holds — the protocol's figure) and one
    :class:`BindingCheck` per binding.

    Example:
        >>> report = check_bindings(expr, labels)  # doctest: +SKIP
        >>> report.correct.float().mean()  # doctest: +SKIP
    """

    expr: Expr
    valid: Tensor
    correct: Tensor
    checks: list[BindingCheck]

    def failures(self) -> dict[str, int]:
        """How often each reason of :meth:`BindingCheck.reasons` (other than ``ok``) occurs
        over all bindings and samples."""
        counts: dict[str, int] = {}
        for check in self.checks:
            for reason in check.reasons():
                if reason != "ok":
                    counts[reason] = counts.get(reason, 0) + 1
        return counts


def check_bindings(expr: Expr | str, labels: SceneLabels) -> BindingReport:
    """Check ``expr`` on labelled scenes: whether each sample counts, and each binding's detail.

    Example:
        >>> from conceptalg.data.scenes import ScenesDataset
        >>> from conceptalg.evaluation.decoder import decode_scenes
        >>> data = ScenesDataset(1, seed=0, min_objects=1, max_objects=1)
        >>> at = Concept("at", args=tuple(data.centres[0, 0].tolist()))
        >>> wrong = COLORS[(int(data.colors[0, 0]) + 1) % len(COLORS)]
        >>> report = check_bindings(at[Concept(SHAPES[data.shapes[0, 0]]) & Concept(wrong)],
        ...                         scene_labels(decode_scenes(data.images)))
        >>> report.correct.tolist(), report.checks[0].reasons()
        ([False], ['colour'])
    """
    expr = as_expr(expr)
    checks = []
    for b in bindings(expr):
        one = labels.object_at(_point(b))
        parts = {part: one.valid & truth(e, one) for part, e in _parts(_body(b), one).items()}
        holds = one.valid & truth(b.body, one)
        checks.append(BindingCheck(b, labels.valid, one.valid, one.values["shape"],
                                   one.values["color"], parts, holds))
    return BindingReport(expr, labels.valid, labels.valid & truth(expr, labels), checks)
