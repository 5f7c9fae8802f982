"""``shapes``: one anti-aliased coloured shape per 32×32 RGB image on black.

Three factors, every value a unique bare concept name:

- ``shape`` ∈ {circle, square, triangle} (square axis-aligned; triangle equilateral, apex up);
- ``color`` ∈ {red, green, blue, yellow, magenta, cyan} (RGB corners of the unit cube);
- ``size`` ∈ {small, large}: circumradius 0.15 or 0.25 of the image width.

The centre of the circumscribed circle is uniform on ``[ρ, 1 − ρ]²`` (``ρ`` the circumradius),
so every shape lies inside the image and the position says nothing about the shape. The pixel
values follow the rendering contract of :mod:`conceptalg.data.render` (coverage from the exact
signed distance, a one-pixel linear ramp). For cross-product extrapolation some (shape, colour)
pairs are held out of the training split; each shape and each colour is still seen in training.
"""

from __future__ import annotations

from typing import Iterable, Literal

import torch
from torch import Tensor
from torch.utils.data import Dataset

from .render import SHAPE_KINDS, draw

__all__ = [
    "SHAPES", "COLORS", "SIZES", "FACTORS", "CONCEPTS", "PALETTE", "RADII", "DEFAULT_HOLDOUT",
    "resolve_holdout", "pairs", "render", "render_batch", "ShapesDataset",
]

SHAPES: tuple[str, ...] = SHAPE_KINDS
COLORS: tuple[str, ...] = ("red", "green", "blue", "yellow", "magenta", "cyan")
SIZES: tuple[str, ...] = ("small", "large")
#: factor -> its values; a label is the index of the value in this tuple.
FACTORS: dict[str, tuple[str, ...]] = {"shape": SHAPES, "color": COLORS, "size": SIZES}
#: every bare concept name, factor by factor (the column order of ``concept_targets``).
CONCEPTS: tuple[str, ...] = SHAPES + COLORS + SIZES
#: RGB of each colour, rows in the order of :data:`COLORS`.
PALETTE: Tensor = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1],
                                [1, 1, 0], [1, 0, 1], [0, 1, 1]], dtype=torch.float32)
#: circumradius of each size, in units of the image width.
RADII: dict[str, float] = {"small": 0.15, "large": 0.25}
#: (shape, colour) pairs never shown in the training split: a Latin pattern, so every shape
#: keeps four colours and every colour two shapes.
DEFAULT_HOLDOUT: frozenset[tuple[str, str]] = frozenset({
    ("circle", "red"), ("square", "green"), ("triangle", "blue"),
    ("circle", "yellow"), ("square", "magenta"), ("triangle", "cyan"),
})

Split = Literal["train", "heldout", "all"]
_RADIUS = torch.tensor([RADII[s] for s in SIZES])


def resolve_holdout(holdout: Iterable[tuple[str, str]] | str | None) -> frozenset[tuple[str, str]]:
    """Check a hold-out set of (shape, colour) pairs; ``"none"``, ``None`` or ``()`` hold none out.

    Raises ``ValueError`` for an unknown value, or when the training split would lose a whole
    value (then no concept head could learn it) or be empty.

    Example:
        >>> sorted(resolve_holdout([("circle", "red")]))
        [('circle', 'red')]
    """
    if holdout is None or (isinstance(holdout, str) and holdout.lower() == "none"):
        return frozenset()
    if isinstance(holdout, str):
        raise ValueError(f"holdout must be a set of (shape, color) pairs or 'none', "
                         f"got {holdout!r}")
    result = set()
    for pair in holdout:
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise ValueError(f"holdout entries must be (shape, color) pairs, got {pair!r}")
        shape, color = pair
        if shape not in SHAPES or color not in COLORS:
            raise ValueError(f"holdout pair {tuple(pair)!r}: shape must be one of {SHAPES} and "
                             f"color one of {COLORS}")
        result.add((shape, color))
    train = [p for p in pairs("all") if p not in result]
    unseen = [s for s in SHAPES if all(p[0] != s for p in train)]
    unseen += [c for c in COLORS if all(p[1] != c for p in train)]
    if unseen:
        raise ValueError(f"holdout leaves no training example of {', '.join(unseen)}: every "
                         f"value must stay in training so that its concept can be learned")
    return frozenset(result)


def pairs(split: Split = "all", holdout=DEFAULT_HOLDOUT) -> list[tuple[str, str]]:
    """The (shape, colour) pairs drawn in ``split``, in factor order.

    Example:
        >>> len(pairs("train")), len(pairs("heldout")), len(pairs("all"))
        (12, 6, 18)
    """
    everything = [(s, c) for s in SHAPES for c in COLORS]
    if split == "all":
        return everything
    held = resolve_holdout(holdout)
    if split == "train":
        return [p for p in everything if p not in held]
    if split == "heldout":
        return [p for p in everything if p in held]
    raise ValueError(f"split must be 'train', 'heldout' or 'all', got {split!r}")


def render_batch(labels: dict[str, Tensor], centres: Tensor, resolution: int = 32) -> Tensor:
    """Render a batch: ``labels`` maps each factor to a LongTensor ``[N]`` of value indices,
    ``centres`` ``[N, 2]`` holds ``(x, y)`` in image-width units; returns ``[N, 3, R, R]``.

    Example:
        >>> import torch
        >>> lab = {"shape": torch.tensor([0]), "color": torch.tensor([0]),
        ...        "size": torch.tensor([1])}
        >>> render_batch(lab, torch.tensor([[0.5, 0.5]]))[0, :, 16, 16].tolist()
        [1.0, 0.0, 0.0]
    """
    centres = torch.as_tensor(centres, dtype=torch.float32)
    shape, color, size = (torch.as_tensor(labels[f]).long().to(centres.device) for f in FACTORS)
    return draw(shape, centres, _RADIUS.to(centres.device)[size], PALETTE.to(centres.device)[color],
                resolution, n_images=centres.shape[0])


def render(shape: str, color: str, size: str, cx: float, cy: float, resolution: int = 32) -> Tensor:
    """Render one object: an image ``[3, R, R]`` in ``[0, 1]``.

    Example:
        >>> render("square", "cyan", "small", 0.5, 0.5)[:, 16, 16].tolist()
        [0.0, 1.0, 1.0]
    """
    codes = {}
    for factor, value in (("shape", shape), ("color", color), ("size", size)):
        if value not in FACTORS[factor]:
            raise ValueError(f"{factor} must be one of {FACTORS[factor]}, got {value!r}")
        codes[factor] = torch.tensor([FACTORS[factor].index(value)])
    return render_batch(codes, torch.tensor([[float(cx), float(cy)]]), resolution)[0]


class ShapesDataset(Dataset):
    """``n`` random ``shapes`` images, deterministic from ``seed``.

    (shape, colour) pairs are uniform over the pairs of ``split`` (``"train"`` leaves out
    ``holdout``, ``"heldout"`` draws only those, ``"all"`` draws all 18); the size is uniform and
    the centre uniform where the shape fits. Attributes: ``images`` ``[N, 3, R, R]`` float32 in
    ``[0, 1]``, ``labels`` (factor -> LongTensor ``[N]`` of indices into :data:`FACTORS`),
    ``centres`` ``[N, 2]`` (x, y in ``[0, 1]``). Item ``i`` is ``(image, codes)`` with ``codes``
    the LongTensor ``[3]`` of (shape, color, size) indices.

    Example:
        >>> data = ShapesDataset(100, seed=0)
        >>> data.images.shape, len(data)
        (torch.Size([100, 3, 32, 32]), 100)
        >>> bool(data.images.max() <= 1)
        True
    """

    factors = FACTORS

    def __init__(self, n: int, seed: int = 0, split: Split = "train",
                 holdout=DEFAULT_HOLDOUT, resolution: int = 32) -> None:
        if int(n) != n or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        if int(resolution) != resolution or resolution < 4:
            raise ValueError(f"resolution must be an integer >= 4, got {resolution!r}")
        self.split, self.seed, self.resolution = split, int(seed), int(resolution)
        self.holdout = resolve_holdout(holdout)
        allowed = pairs(split, self.holdout)
        if not allowed:
            raise ValueError(f"split {split!r} is empty: the holdout holds no pairs out")
        g = torch.Generator().manual_seed(self.seed)
        n = int(n)
        table = torch.tensor([[SHAPES.index(s), COLORS.index(c)] for s, c in allowed])
        pick = table[torch.randint(len(allowed), (n,), generator=g)]           # [N, 2]
        size = torch.randint(len(SIZES), (n,), generator=g)                     # [N]
        rho = _RADIUS[size][:, None]                                            # [N, 1]
        centres = rho + (1 - 2 * rho) * torch.rand(n, 2, generator=g)           # [N, 2]
        self.labels = {"shape": pick[:, 0], "color": pick[:, 1], "size": size}
        self.centres = centres
        self.images = render_batch(self.labels, centres, self.resolution)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index):
        return self.images[index], self.codes()[index]

    def codes(self) -> Tensor:
        """The factor indices as one LongTensor ``[N, 3]`` (columns shape, color, size)."""
        return torch.stack([self.labels[f] for f in FACTORS], dim=1)

    def concept_targets(self) -> Tensor:
        """A float 0/1 matrix ``[N, 11]``: column ``k`` says whether ``CONCEPTS[k]`` holds."""
        return torch.cat([torch.nn.functional.one_hot(self.labels[f], len(v))
                          for f, v in FACTORS.items()], dim=1).float()

    def tensors(self) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        """``(images, labels, centres)``."""
        return self.images, self.labels, self.centres

    def __repr__(self) -> str:
        return (f"ShapesDataset(n={len(self)}, seed={self.seed}, split={self.split!r}, "
                f"holdout={len(self.holdout)} pairs, resolution={self.resolution})")
