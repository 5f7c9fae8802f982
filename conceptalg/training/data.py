"""`ConceptData`: labelled training data in the one form the trainer reads.

A dataset is samples ``x[N, *shape]`` plus, per factor, a label per sample (the index of its
value, ``-1`` where unknown), plus, per parametric concept, the argument sets that hold for
each sample (``at``: the centres of a scene's objects, with a mask). Built-in data and the
user's own tensors both become a ``ConceptData``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch
from torch import Tensor

__all__ = ["ConceptData", "builtin_data", "BUILTIN_DATA"]

BUILTIN_DATA = ("toy2d", "shapes", "scenes", "digits")


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
    #: JSON facts about how the data was made (e.g. ``{"holdout": [[shape, colour], ...]}``),
    #: recorded in checkpoints so that evaluation knows the seen and held-out combinations.
    spec: dict = field(default_factory=dict)

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


def builtin_data(name: str, n: int = 20_000, seed: int = 0, *, holdout="default") -> ConceptData:
    """One of the built-in datasets as ``ConceptData``: ``toy2d``, ``shapes`` (with its
    default (shape, colour) hold-out), ``scenes`` (parametric ``at(x, y)``) or ``digits``."""
    if name == "toy2d":
        from ..data import toy2d

        names = list(toy2d.CONCEPTS)
        per = max(1, n // len(names))
        xs = [toy2d.training_data(c, per, seed=seed + i).float() for i, c in enumerate(names)]
        labels = torch.arange(len(names)).repeat_interleave(per)
        return ConceptData(torch.cat(xs), {"concept": names}, {"concept": labels},
                           bounds=tuple(map(float, toy2d.BOUNDS)), name="toy2d")
    if name == "shapes":
        from ..data.shapes import DEFAULT_HOLDOUT, FACTORS, ShapesDataset, resolve_holdout

        held = resolve_holdout(DEFAULT_HOLDOUT if holdout == "default" else holdout)
        ds = ShapesDataset(n, seed=seed, split="train", holdout=held)
        return ConceptData(ds.images, {f: list(v) for f, v in FACTORS.items()},
                           dict(ds.labels), name="shapes",
                           spec={"seed": seed, "holdout": sorted(map(list, held))})
    if name == "scenes":
        from ..data.scenes import ScenesDataset

        ds = ScenesDataset(n, seed=seed)
        return ConceptData(ds.images, parametric={"at": (ds.centres, ds.mask)}, name="scenes")
    if name == "digits":
        from ..data.digits import DigitsDataset

        ds = DigitsDataset(split="train", seed=seed)
        return ConceptData(ds.images, {"digit": [str(d) for d in range(10)]},
                           {"digit": ds.labels["digit"].long()}, name="digits")
    raise ValueError(f"unknown built-in data {name!r}; choose one of {BUILTIN_DATA}")
