"""Evaluators: functions from samples to :class:`~.metrics.SampleLabels` (docs/design.md §8).

An evaluator never sees a generated sample while it is built. Two kinds:

- **the analytic decoder** (:mod:`.decoder`): exact on rendered ``shapes`` and ``scenes``
  images, it reads validity (one clean object / a clean scene), every factor and the centres.
- **per-factor classifiers** (``shapes``): one small conv net with a softmax head per factor,
  trained by cross-entropy on *real* rendered images of **every** (shape, colour) pair. Only the
  generators are denied the held-out pairs; an evaluator trained on the training split learns
  shape entangled with colour (each colour appears with two shapes only) and reads the held-out
  pairs wrongly — measured: 100 % on seen pairs, about 0 % shape accuracy on held-out ones. The
  classifier evaluator takes validity (one clean object) from the decoder and the factor values
  from the classifiers.

Each evaluator reports its own accuracy on held-out real data (:meth:`real_accuracy`), so the
numbers it produces can be read against it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..data.scenes import ScenesDataset
from ..data.shapes import DEFAULT_HOLDOUT, FACTORS, ShapesDataset, pairs
from .bindings import SceneLabels, scene_labels
from .decoder import decode_scenes, decode_shapes
from .metrics import SampleLabels

__all__ = ["FactorClassifier", "train_factor_classifiers", "classifier_accuracy",
           "DecoderEvaluator", "ScenesEvaluator", "ClassifierEvaluator", "make_evaluator",
           "EVALUATORS"]

EVALUATORS = ("decoder", "classifier")
_SHAPES_FACTORS = {f: tuple(v) for f, v in FACTORS.items()}


class FactorClassifier(nn.Module):
    """A small conv net with one softmax head per factor: ``x[B, 3, R, R] -> {factor: [B, V]}``.

    Three 3×3 convolutions (the first two of stride 2), swish, the global mean and maximum of
    every channel (the maximum is what tells a corner from a curve: with the mean alone shape
    stays near chance after 300 steps) and a linear head per factor. ``report`` holds its
    accuracy on held-out real data after training.

    Example:
        >>> net = FactorClassifier({"color": ("red", "blue")})
        >>> net(torch.zeros(2, 3, 32, 32))["color"].shape
        torch.Size([2, 2])
    """

    def __init__(self, factors: dict[str, tuple[str, ...]], width: int = 32) -> None:
        super().__init__()
        self.factors = {f: tuple(v) for f, v in factors.items()}
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.SiLU())
        self.heads = nn.ModuleDict({f: nn.Linear(4 * width, len(v))
                                    for f, v in self.factors.items()})
        self.report: dict = {}

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        h = self.features(x)                                                   # [B, 2W, r, r]
        h = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)         # [B, 4W]
        return {f: head(h) for f, head in self.heads.items()}

    @torch.no_grad()
    def predict(self, x: Tensor, batch: int = 512) -> dict[str, Tensor]:
        """Most likely value index per factor, LongTensor ``[N]`` each."""
        was = self.training
        self.eval()
        device = next(self.parameters()).device
        parts = [self(chunk.to(device)) for chunk in x.split(batch)]
        self.train(was)
        return {f: torch.cat([p[f] for p in parts]).argmax(1).cpu() for f in self.factors}


def classifier_accuracy(classifier: FactorClassifier, data: ShapesDataset) -> dict[str, float]:
    """Accuracy per factor and for all factors at once (``"all"``) on labelled real data.

    Example:
        >>> net = train_factor_classifiers(steps=300)  # doctest: +SKIP
        >>> classifier_accuracy(net, ShapesDataset(500, seed=9, split="heldout"))  # doctest: +SKIP
        {'shape': 1.0, 'color': 1.0, 'size': 1.0, 'all': 1.0}
    """
    predicted = classifier.predict(data.images)
    hits = {f: predicted[f] == data.labels[f] for f in classifier.factors}
    out = {f: float(h.float().mean()) for f, h in hits.items()}
    out["all"] = float(torch.stack(list(hits.values())).all(0).float().mean())
    return out


def train_factor_classifiers(*, steps: int = 300, n: int = 6000, batch_size: int = 64,
                             lr: float = 3e-3, noise: float = 0.05, seed: int = 0,
                             split: str = "all", holdout=DEFAULT_HOLDOUT,
                             device: str | torch.device | None = None,
                             test_n: int = 1200) -> FactorClassifier:
    """Train a :class:`FactorClassifier` on ``n`` real ``shapes`` images of ``split`` (default
    ``"all"``: every pair, see the module docstring) for ``steps`` Adam steps of cross-entropy,
    with Gaussian pixel noise of up to ``noise`` (samples are noisy). Seeded: the same
    arguments give the same network on CPU. ``report`` gets its accuracy on ``test_n`` fresh
    real images of all pairs, and separately on the held-out pairs.

    Example:
        >>> net = train_factor_classifiers(steps=300)  # doctest: +SKIP
        >>> net.report["all pairs"]["all"] > 0.95  # doctest: +SKIP
        True
    """
    device = torch.device(device or "cpu")
    data = ShapesDataset(n, seed=seed, split=split, holdout=holdout)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = FactorClassifier(_SHAPES_FACTORS).to(device)
    g = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    for _ in range(steps):
        idx = torch.randint(len(data), (batch_size,), generator=g)
        x = data.images[idx]
        sigma = noise * torch.rand(batch_size, 1, 1, 1, generator=g)
        x = (x + sigma * torch.randn(x.shape, generator=g)).clamp(0, 1).to(device)
        logits = net(x)
        loss = sum(nn.functional.cross_entropy(logits[f], data.labels[f][idx].to(device))
                   for f in net.factors)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    net.eval()
    test = ShapesDataset(test_n, seed=seed + 7919, split="all", holdout=holdout)
    held = ShapesDataset(test_n // 2, seed=seed + 7920, split="heldout", holdout=holdout) \
        if pairs("heldout", holdout) else None
    net.report = {"trained on": f"{n} real images, split {split!r}", "steps": steps,
                  "all pairs": classifier_accuracy(net, test)}
    if held is not None:
        net.report["held-out pairs"] = classifier_accuracy(net, held)
    return net


def _shapes_labels(decoding, values: dict[str, Tensor] | None = None) -> SampleLabels:
    values = decoding.labels if values is None else values
    found = torch.isfinite(decoding.centres).all(1) & decoding.valid           # [N]
    return SampleLabels(decoding.valid, _SHAPES_FACTORS, values,
                        centres=decoding.centres[:, None, :], mask=found[:, None])


@dataclass
class DecoderEvaluator:
    """``shapes`` samples labelled by the exact analytic decoder.

    Example:
        >>> from conceptalg.data.shapes import render
        >>> labels = DecoderEvaluator()(render("circle", "red", "small", 0.5, 0.5)[None])
        >>> labels.valid.tolist(), labels.concept(__import__("conceptalg").parse("red")).tolist()
        ([True], [True])
    """

    name: str = "decoder"
    seed: int = 0
    _report: dict | None = field(default=None, repr=False)

    def __call__(self, samples: Tensor) -> SampleLabels:
        return _shapes_labels(decode_shapes(samples.detach().cpu()))

    def real_accuracy(self, n: int = 600) -> dict:
        """Fraction of fresh real images (all pairs) decoded valid with every factor right."""
        if self._report is None:
            data = ShapesDataset(n, seed=self.seed + 104729, split="all")
            d = decode_shapes(data.images)
            hits = torch.stack([d.labels[f] == data.labels[f] for f in FACTORS]).all(0)
            self._report = {"all": float((hits & d.valid).float().mean()), "n": n}
        return self._report


@dataclass
class ClassifierEvaluator:
    """``shapes`` samples labelled by per-factor classifiers trained on real images; validity
    (one clean object) still comes from the decoder (a classifier always answers).

    Example:
        >>> evaluator = ClassifierEvaluator(train_factor_classifiers())  # doctest: +SKIP
        >>> evaluator(samples).concept(Concept("red"))  # doctest: +SKIP
    """

    classifier: FactorClassifier
    name: str = "classifier"

    def __call__(self, samples: Tensor) -> SampleLabels:
        samples = samples.detach().cpu()
        return _shapes_labels(decode_shapes(samples), self.classifier.predict(samples))

    def real_accuracy(self) -> dict:
        return dict(self.classifier.report)


@dataclass
class ScenesEvaluator:
    """``scenes`` samples labelled by the decoder: valid scenes of 1..4 clean objects, their
    centres (``at(x, y)`` holds with an object within ``radius``) and each object's shape and
    colour (``at(x, y)[red & circle]``: the object there is a red circle, :mod:`.bindings`).

    Example:
        >>> from conceptalg.expr import Concept
        >>> data = ScenesDataset(2, seed=0, min_objects=1, max_objects=1)
        >>> x, y = data.centres[0, 0].tolist()
        >>> ScenesEvaluator()(data.images).concept(Concept("at", args=(x, y))).tolist()
        [True, False]
    """

    radius: float = 0.1
    name: str = "decoder"
    seed: int = 0
    #: False: the looser *read* labels — every object the decoder finds counts, clean or not,
    #: and an image is valid when it holds any object (not the protocol's figure)
    clean_only: bool = True
    _report: dict | None = field(default=None, repr=False)

    def __call__(self, samples: Tensor) -> SceneLabels:
        return scene_labels(decode_scenes(samples.detach().cpu()), self.radius, self.clean_only)

    def real_accuracy(self, n: int = 300) -> dict:
        """Fraction of fresh real scenes decoded valid, with the right object count and, at
        every true centre, an object within ``radius`` of the true shape and colour."""
        if self._report is None:
            data = ScenesDataset(n, seed=self.seed + 104729)
            labels = self(data.images)
            found = []
            for k in range(data.mask.shape[1]):
                one = labels.object_at(data.centres[:, k])
                found.append((one.valid & (one.values["shape"] == data.shapes[:, k])
                              & (one.values["color"] == data.colors[:, k])) | ~data.mask[:, k])
            found = torch.stack(found).all(0)
            counts = decode_scenes(data.images).counts == data.counts
            self._report = {"all": float((labels.valid & counts & found).float().mean()), "n": n}
        return self._report


def make_evaluator(data: str, kind: str = "decoder", *, seed: int = 0, steps: int = 300,
                   device=None):
    """The evaluator of built-in ``data`` (``"shapes"`` or ``"scenes"``): ``kind`` is
    ``"decoder"`` or (``shapes`` only) ``"classifier"``, which trains the classifiers first.

    Example:
        >>> make_evaluator("scenes")
        ScenesEvaluator(radius=0.1, name='decoder', seed=0, clean_only=True)
    """
    if kind not in EVALUATORS:
        raise ValueError(f"evaluator must be one of {EVALUATORS}, got {kind!r}")
    if data == "shapes":
        if kind == "decoder":
            return DecoderEvaluator(seed=seed)
        return ClassifierEvaluator(train_factor_classifiers(steps=steps, seed=seed,
                                                            device=device))
    if data == "scenes":
        if kind != "decoder":
            raise ValueError("scenes are evaluated by the decoder only (at(x, y) needs centres)")
        return ScenesEvaluator(seed=seed)
    raise ValueError(f"no evaluator for {data!r} data: built-in evaluators exist for 'shapes' "
                     f"and 'scenes'")
