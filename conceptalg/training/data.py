"""`ConceptData`: labelled training data in the one form the trainer reads.

A dataset is samples ``x[N, *shape]`` plus, per factor, a label per sample (the index of its
value, ``-1`` where unknown), plus, per parametric concept, the argument sets that hold for
each sample (``at``: the centres of a scene's objects, with a mask). Built-in data and the
user's own tensors both become a ``ConceptData``.

Procedural data (the built-in ``toy2d``, ``shapes`` and ``scenes``) *streams* by default: a
``ConceptData`` with a ``stream`` renders fresh training-split samples for every batch, seeded
by (data seed, step, rank), so a resumed run draws exactly the batches it would have drawn and
no two steps repeat a batch; its ``x`` is then a fixed reference sample of the same law (for
the data's statistics: mean, σ_d, bounds). ``n=`` asks for a fixed set instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["ConceptData", "builtin_data", "batch_seed", "BUILTIN_DATA", "PROCEDURAL_DATA"]

BUILTIN_DATA = ("toy2d", "shapes", "scenes", "digits")
#: built-in data that is rendered from a seed, so it can stream (fresh samples every batch)
PROCEDURAL_DATA = ("toy2d", "shapes", "scenes")
#: size of the reference sample a streamed dataset keeps for its statistics
REFERENCE_SAMPLES = {"toy2d": 20_000, "shapes": 4096, "scenes": 4096}


def batch_seed(seed: int, step: int, rank: int = 0) -> int:
    """The seed of the streamed batch of iteration ``step`` on process ``rank`` (a mix of the
    three numbers, so neighbouring steps and ranks draw unrelated batches).

    Example:
        >>> batch_seed(0, 1) == batch_seed(0, 1), batch_seed(0, 1) == batch_seed(0, 2)
        (True, False)
    """
    return int(np.random.SeedSequence([int(seed), int(step), int(rank)]).generate_state(1)[0])


@dataclass
class ConceptData:
    """Samples with factor labels (and parametric arguments) for training concept heads.

    ``labels[f][i]`` indexes ``factors[f]`` (``-1``: sample ``i`` says nothing about factor
    ``f``). ``parametric[name] = (args[N, M, n], mask[N, M])``: the argument vectors for which
    concept ``name(args)`` holds on sample ``i`` (e.g. the centres of a scene's objects).

    Example:
        >>> x = torch.rand(6, 2)
        >>> data = ConceptData.from_labels(x, {"side": ["left", "right", "left", "right",
        ...                                             "left", "right"]})
        >>> data.factors, data.labels["side"].tolist()
        ({'side': ['left', 'right']}, [0, 1, 0, 1, 0, 1])
    """

    x: Tensor
    factors: dict[str, list[str]] = field(default_factory=dict)
    labels: dict[str, Tensor] = field(default_factory=dict)
    parametric: dict[str, tuple[Tensor, Tensor]] = field(default_factory=dict)
    bounds: tuple[float, float] | None = (0.0, 1.0)
    name: str = "custom"
    #: the properties of the objects that ``parametric`` places (scenes): factor -> values,
    #: and ``object_labels[f][i, m]`` the value index of object ``m`` of sample ``i`` (the same
    #: ``[N, M]`` layout as the parametric arguments; ``-1`` unknown or padded)
    object_factors: dict[str, list[str]] = field(default_factory=dict)
    object_labels: dict[str, Tensor] = field(default_factory=dict)
    #: JSON facts about how the data was made (e.g. ``{"holdout": [[shape, colour], ...]}``),
    #: recorded in checkpoints so that evaluation knows the seen and held-out combinations.
    spec: dict = field(default_factory=dict)
    #: procedural data only: ``stream(n, seed) -> ConceptData``, ``n`` fresh training-split
    #: samples rendered from ``seed`` (module docstring); ``None`` for a fixed set
    stream: Callable[[int, int], "ConceptData"] | None = field(default=None, repr=False,
                                                                compare=False)

    def batch(self, n: int, step: int, rank: int = 0) -> "ConceptData":
        """The streamed batch of iteration ``step`` (``n`` fresh samples, reproducible from the
        data's seed, the step and the rank); streamed data only.

        Example:
            >>> data = builtin_data("shapes", n=None)
            >>> a, b = data.batch(8, step=3), data.batch(8, step=3)
            >>> torch.equal(a.x, b.x), torch.equal(a.x, data.batch(8, step=4).x)
            (True, False)
        """
        if self.stream is None:
            raise ValueError(f"{self.name!r} is a fixed set of {len(self)} samples, not a stream")
        return self.stream(int(n), batch_seed(self.spec.get("seed", 0), step, rank))

    def __post_init__(self) -> None:
        if not isinstance(self.x, Tensor) or self.x.dim() < 2:
            raise ValueError("x must be a tensor [N, *shape] with at least one sample dimension")
        n = self.x.shape[0]
        if n == 0:
            raise ValueError("the dataset is empty")
        if not torch.isfinite(self.x).all():
            raise ValueError("x contains NaN or infinite values")
        if set(self.labels) != set(self.factors):
            raise ValueError(f"labels {sorted(self.labels)} and factors {sorted(self.factors)} "
                             "must name the same factors")
        for f, lab in self.labels.items():
            if lab.shape != (n,) or lab.dtype != torch.long:
                raise ValueError(f"labels[{f!r}] must be a LongTensor [{n}], got "
                                 f"{lab.dtype} {tuple(lab.shape)}")
            if lab.numel() and (lab.min() < -1 or lab.max() >= len(self.factors[f])):
                raise ValueError(f"labels[{f!r}] must lie in -1..{len(self.factors[f]) - 1}")
        for name, (args, mask) in self.parametric.items():
            if args.dim() != 3 or args.shape[0] != n or mask.shape != args.shape[:2]:
                raise ValueError(f"parametric[{name!r}] must be (args [N, M, n], mask [N, M])")
        if set(self.object_labels) != set(self.object_factors):
            raise ValueError(f"object_labels {sorted(self.object_labels)} and object_factors "
                             f"{sorted(self.object_factors)} must name the same factors")
        if self.object_factors and len(self.parametric) != 1:
            raise ValueError("object labels describe the objects of one parametric concept; "
                             f"the data has {len(self.parametric)}")
        for f, lab in self.object_labels.items():
            args = next(iter(self.parametric.values()))[0]
            if lab.shape != args.shape[:2] or lab.dtype != torch.long:
                raise ValueError(f"object_labels[{f!r}] must be a LongTensor "
                                 f"{list(args.shape[:2])}, got {lab.dtype} {list(lab.shape)}")
        if not self.factors and not self.parametric:
            raise ValueError("the data has no labels: give at least one factor or parametric "
                             "concept")
        if self.bounds is not None:
            lo, hi = self.bounds
            if self.x.min() < lo or self.x.max() > hi:
                raise ValueError(f"samples fall outside bounds {self.bounds}: values span "
                                 f"[{float(self.x.min()):.3g}, {float(self.x.max()):.3g}]")

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def __len__(self) -> int:
        return self.x.shape[0]

    @classmethod
    def from_labels(cls, x: Tensor, labels: Mapping[str, Sequence] | Sequence[str], *,
                    factors: Mapping[str, Sequence[str]] | None = None,
                    bounds: tuple[float, float] | None = None, name: str = "custom"):
        """Build from value names (or indices into ``factors``) per factor. A plain sequence of
        names is one factor called ``concept``. ``bounds`` defaults to ``(0, 1)`` for images
        (4-D ``x`` in that range), else none."""
        if not isinstance(labels, Mapping):
            labels = {"concept": labels}
        x = torch.as_tensor(x, dtype=torch.float32)
        given = dict(factors or {})
        out_factors, out_labels = {}, {}
        for f, values in labels.items():
            if isinstance(values, Tensor) and values.dtype != torch.long:
                raise ValueError(f"labels[{f!r}] must hold value names or integer indices")
            values = values.tolist() if isinstance(values, Tensor) else list(values)
            names = [str(v) for v in given.get(f, sorted({str(v) for v in values
                                                           if not _is_index(v)}))]
            index = {v: i for i, v in enumerate(names)}
            coded = []
            for i, v in enumerate(values):
                if _is_index(v):
                    if not -1 <= int(v) < len(names):
                        raise ValueError(f"labels[{f!r}][{i}] = {v} is not an index of {names}")
                    coded.append(int(v))
                elif str(v) in index:
                    coded.append(index[str(v)])
                else:
                    raise ValueError(f"labels[{f!r}][{i}] = {v!r} is not a value of {names}")
            out_factors[f], out_labels[f] = names, torch.tensor(coded, dtype=torch.long)
        if bounds is None and x.dim() == 4 and x.min() >= 0 and x.max() <= 1:
            bounds = (0.0, 1.0)
        return cls(x, out_factors, out_labels, bounds=bounds, name=name)


def _is_index(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def builtin_data(name: str, n: int | None = None, seed: int = 0, *,
                 holdout="default") -> ConceptData:
    """One of the built-in datasets as ``ConceptData``: ``toy2d``, ``shapes`` (with its
    default (shape, colour) hold-out), ``scenes`` (parametric ``at(x, y)``) or ``digits``.
    Procedural data streams by default (``n=None``; module docstring): fresh samples every
    batch; ``n`` asks for a fixed set of ``n`` samples. ``digits`` is a fixed set (``n`` is
    ignored).

    Example:
        >>> data = builtin_data("shapes", n=None)
        >>> data.stream is not None, data.spec["stream"], len(data.batch(5, step=0))
        (True, True, 5)
    """
    if name not in BUILTIN_DATA:
        raise ValueError(f"unknown built-in data {name!r}; choose one of {BUILTIN_DATA}")
    if n is None and name in PROCEDURAL_DATA:
        data = _builtin(name, REFERENCE_SAMPLES[name], seed, holdout)
        data.spec["stream"] = True

        def stream(size: int, batch: int) -> ConceptData:
            return _builtin(name, size, batch, holdout, exact=True)

        data.stream = stream
        return data
    data = _builtin(name, n, seed, holdout)
    if name in PROCEDURAL_DATA:
        data.spec["stream"] = False
    return data


def _builtin(name: str, n: int, seed: int, holdout, exact: bool = False) -> ConceptData:
    if name == "toy2d":
        from ..data import toy2d

        names = list(toy2d.CONCEPTS)
        # a fixed set: n // k per concept; a streamed batch: exactly n, concepts balanced
        per = max(1, n // len(names)) if not exact else -(-n // len(names))
        xs = [toy2d.training_data(c, per, seed=seed + i).float() for i, c in enumerate(names)]
        labels = torch.arange(len(names)).repeat_interleave(per)
        x = torch.cat(xs)
        if exact and len(x) != n:
            keep = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]
            x, labels = x[keep], labels[keep]
        return ConceptData(x, {"concept": names}, {"concept": labels},
                           bounds=tuple(map(float, toy2d.BOUNDS)), name="toy2d",
                           spec={"seed": seed})
    if name == "shapes":
        from ..data.shapes import DEFAULT_HOLDOUT, FACTORS, ShapesDataset, resolve_holdout

        held = resolve_holdout(DEFAULT_HOLDOUT if holdout == "default" else holdout)
        ds = ShapesDataset(n, seed=seed, split="train", holdout=held)
        return ConceptData(ds.images, {f: list(v) for f, v in FACTORS.items()},
                           dict(ds.labels), name="shapes",
                           spec={"seed": seed, "holdout": sorted(map(list, held))})
    if name == "scenes":
        from ..data.scenes import ScenesDataset

        from ..data.shapes import COLORS, DEFAULT_HOLDOUT, SHAPES, resolve_holdout

        held = resolve_holdout(DEFAULT_HOLDOUT if holdout == "default" else holdout)
        ds = ScenesDataset(n, seed=seed, split="train", holdout=held)
        return ConceptData(ds.images, parametric={"at": (ds.centres, ds.mask)}, name="scenes",
                           object_factors={"shape": list(SHAPES), "color": list(COLORS)},
                           object_labels={"shape": ds.shapes, "color": ds.colors},
                           spec={"seed": seed, "holdout": sorted(map(list, held))})
    from ..data.digits import DigitsDataset

    ds = DigitsDataset(split="train", seed=seed)
    return ConceptData(ds.images, {"digit": [str(d) for d in range(10)]},
                       {"digit": ds.labels["digit"].long()}, name="digits")
