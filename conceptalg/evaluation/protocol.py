"""The evaluation protocol: sample an expression from a model, label the samples, score them.

Composable diffusion's protocol (Liu et al. 2022; docs/design.md §8): for each expression draw ``n``
samples, label them with an evaluator that never saw a generated sample, and count a sample as
correct only when it is valid and the whole expression holds (:mod:`.metrics`). A *generator*
is any callable ``(expr, n, seed) -> samples``; :class:`ModelSampler` is the one for a trained
concept model (compose, then :func:`conceptalg.sample`), and a baseline with its own way of
turning an expression into samples (:mod:`.baseline`) plugs in the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from ..expr import Expr
from .metrics import ExpressionScore, score

__all__ = ["Generator", "ModelSampler", "ModelInfo", "model_info", "evaluate_expressions"]

#: ``(expr, n, seed) -> samples [n, ...]``
Generator = Callable[[Expr | str, int, int], Tensor]


@dataclass
class ModelSampler:
    """Samples of an expression composed over ``model``: ``sampler(expr, n, seed)``.

    The model's own sampler and composition defaults apply (``semantics=None``: the model's
    default semantics, ``"product"`` for a contrastive-divergence model); ``semantics``,
    ``guidance_scale``, ``sampler``, ``steps``, ``step_size`` and ``options`` (other
    :func:`conceptalg.sample` keywords) override them.

    Example:
        >>> generate = ModelSampler(model, steps=60)  # doctest: +SKIP
        >>> x = generate("red & circle", 64, seed=0)  # doctest: +SKIP
    """

    model: Any
    semantics: str | None = None
    guidance_scale: float | None = None
    sampler: str | None = None
    steps: int | None = None
    step_size: float | None = None
    device: str | torch.device | None = None
    progress: bool = False
    options: dict = field(default_factory=dict)

    def __call__(self, expr: Expr | str, n: int, seed: int = 0) -> Tensor:
        from .. import compose, sample

        energy = compose(expr, self.model, semantics=self.semantics,
                         guidance_scale=self.guidance_scale)
        kwargs = {k: v for k, v in dict(sampler=self.sampler, steps=self.steps,
                                        step_size=self.step_size).items() if v is not None}
        x = sample(energy, n, seed=seed, device=self.device, progress=self.progress,
                   **kwargs, **self.options)
        return x.detach().cpu()


@dataclass
class ModelInfo:
    """A loaded model and what its checkpoint says about its data: ``data`` is ``"shapes"``,
    ``"scenes"`` or another name, ``holdout`` the (shape, colour) pairs its training split
    held out (``None`` when unknown, or neither ``shapes`` nor ``scenes``).

    Example:
        >>> info = model_info("models/shapes")  # doctest: +SKIP
        >>> info.data, len(info.holdout)  # doctest: +SKIP
        ('shapes', 6)
    """

    model: Any
    path: Path
    step: int
    data: str
    holdout: frozenset | None
    metadata: dict = field(repr=False, default_factory=dict)

    def describe(self) -> str:
        return (f"{self.path} ({self.data}, {arm_name(self.model)} heads, step {self.step})")


def arm_name(model) -> str:
    """How benchmarks name a model's kind: its head kind, plus the factor views it declares
    (``" + views(shape=colour-blind, color=shape-blind)"``, in the config's order);
    ``dsm-energy`` / ``dsm-score`` for models trained by denoising score matching.

    Example:
        >>> from conceptalg.models import ConceptModel, ModelConfig
        >>> config = ModelConfig((3, 8, 8), {"shape": ["a", "b"], "color": ["r", "g"]},
        ...                      heads="classifier", backbone_options={"width": 4},
        ...                      views={"shape": "colour-blind", "color": "shape-blind"})
        >>> arm_name(ConceptModel(config))
        'classifier + views(shape=colour-blind, color=shape-blind)'
    """
    config = model.config
    if config.objective == "dsm":
        return f"dsm-{config.parameterization}"
    views = dict(getattr(config, "views", None) or {})
    if not views:
        return config.heads
    return f"{config.heads} + views({', '.join(f'{f}={v}' for f, v in views.items())})"


def load_arm(path, *, device=None) -> tuple[str, ModelInfo]:
    """A benchmark's model and its arm name (:func:`arm_name`, or ``"scenes"``, or ``"joint"``
    for a joint-code baseline folder written by
    :func:`~conceptalg.evaluation.baseline.save_joint`, whose step is read from a
    ``step-NNNNNN`` folder name (``None`` otherwise) and whose hold-out is the default).

    Example:
        >>> arm, info = load_arm("runs/arm-joint/step-001898")  # doctest: +SKIP
        >>> arm, info.step  # doctest: +SKIP
        ('joint', 1898)
    """
    from ..data.shapes import DEFAULT_HOLDOUT
    from .baseline import load_joint

    if (Path(path) / "joint.json").exists():
        tail = Path(path).name.split("-")[-1]
        return "joint", ModelInfo(load_joint(path, device), Path(path),
                                  int(tail) if tail.isdigit() else None, "shapes",
                                  DEFAULT_HOLDOUT)
    info = model_info(path, device=device)
    return "scenes" if info.data == "scenes" else arm_name(info.model), info


def model_info(path, *, device=None) -> ModelInfo:
    """Load a model directory and read its data spec: the data name recorded by the trainer
    (recognised from its concepts when absent) and, for ``shapes``, the hold-out — the
    checkpoint's own record when it has one, else :data:`~conceptalg.data.shapes.DEFAULT_HOLDOUT`
    (what ``conceptalg train --data shapes`` uses unless told otherwise); for ``scenes``, the
    recorded hold-out (``None`` when the checkpoint records none).

    Example:
        >>> print(model_info("models/shapes").describe())  # doctest: +SKIP
        models/shapes/ckpt-020000 (shapes, linear heads, step 20000)
    """
    from ..data.shapes import DEFAULT_HOLDOUT, FACTORS, resolve_holdout
    from ..training.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path, map_location=device or "cpu")
    model, meta = ckpt.model, ckpt.metadata
    spec = meta.get("data") or {}
    data = spec.get("name")
    if data is None or data == "custom":
        factors = {f: tuple(v) for f, v in model.config.factors.items()}
        if factors == {f: tuple(v) for f, v in FACTORS.items()}:
            data = "shapes"
        elif "at" in model.config.parametric and not factors:
            data = "scenes"
        else:
            data = data or "custom"
    holdout = None
    if data == "scenes" and "holdout" in spec:  # scenes made before the hold-out record none
        holdout = resolve_holdout([tuple(p) for p in spec["holdout"]] or None)
    if data == "shapes":
        recorded = spec.get("holdout", "default")
        holdout = DEFAULT_HOLDOUT if recorded == "default" else \
            resolve_holdout(None if recorded in (None, "none") else [tuple(p) for p in recorded])
    return ModelInfo(model, Path(ckpt.path), ckpt.step, data, holdout, meta)


def evaluate_expressions(generate: Generator, exprs: Sequence[Expr | str], evaluator, n: int,
                         *, seed: int = 0, keep_samples: bool = False
                         ) -> list[tuple[ExpressionScore, Tensor | None]]:
    """Score each expression on ``n`` samples from ``generate`` (seed ``seed + i`` for the
    ``i``-th) labelled by ``evaluator``; returns ``(score, samples or None)`` per expression.

    Example:
        >>> results = evaluate_expressions(ModelSampler(model), ["red & circle"],
        ...                                DecoderEvaluator(), 100)  # doctest: +SKIP
        >>> str(results[0][0].accuracy)  # doctest: +SKIP
        '41.0 ± 4.9 %'
    """
    out = []
    for i, expr in enumerate(exprs):
        x = generate(expr, n, seed + i)
        out.append((score(expr, evaluator(x)), x if keep_samples else None))
    return out
