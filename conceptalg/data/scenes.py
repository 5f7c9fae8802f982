"""``scenes``: 1–4 small, non-overlapping objects per 32×32 RGB image; the concept ``at(x, y)``.

Each object has a random shape and colour (the vocabulary of :mod:`conceptalg.data.shapes`):
a (shape, colour) pair uniform over the pairs of ``split`` — ``"all"`` (shape and colour
independent and uniform), ``"train"`` (the pairs outside ``holdout``, by default the six that
``shapes`` holds out: no object of a held-out pair is ever drawn) or ``"heldout"`` (only those)
— the small size (circumradius ``ρ = 0.15`` of the width) and a centre in ``[ρ, 1 − ρ]²``, so it
lies inside the image. Objects keep their circumscribed circles at least ``gap`` (default 0.08
of the width, 2.56 px at 32 px) apart; at 32 px that leaves more than √2 px between the non-zero
pixels of two objects, so they never touch, not even diagonally. ``at(x, y)`` holds when an
object is centred at ``(x, y)`` (image-width units, origin top-left, ``x`` to the right); the
evaluator accepts an object within 0.1 of the point (:func:`objects_near`).

Centres are placed one object at a time by rejection sampling (``tries`` candidates per object;
an image whose next object finds no room is restarted, at most ``restarts`` times), so the
positions are uniform given the earlier objects rather than jointly uniform.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset

from .render import draw
from .shapes import COLORS, DEFAULT_HOLDOUT, PALETTE, RADII, SHAPES, pairs

__all__ = ["MAX_OBJECTS", "SCENE_SIZE", "SCENE_GAP", "ScenesDataset", "objects_near"]

MAX_OBJECTS = 4
SCENE_SIZE = "small"
SCENE_GAP = 0.08


def objects_near(centres: Tensor, mask: Tensor, points: Tensor, radius: float = 0.1) -> Tensor:
    """Whether each scene has an object within ``radius`` of each query point.

    ``centres`` ``[N, K, 2]`` and ``mask`` ``[N, K]`` describe the objects; ``points`` is
    ``[2]`` (one query for all scenes), ``[N, 2]`` (one per scene), ``[N, Q, 2]`` or
    ``[1, Q, 2]`` (``Q`` queries for all scenes). Returns a BoolTensor ``[N]`` or ``[N, Q]``.

    Example:
        >>> import torch
        >>> c = torch.tensor([[[0.3, 0.7], [0.0, 0.0]]]); m = torch.tensor([[True, False]])
        >>> objects_near(c, m, torch.tensor([0.32, 0.66])).tolist()
        [True]
    """
    points = torch.as_tensor(points, dtype=centres.dtype, device=centres.device)
    single = points.dim() < 3
    points = points.reshape(-1, 1, 2) if points.dim() == 1 else points
    points = points[:, None, :] if points.dim() == 2 else points              # [N|1, Q, 2]
    dist = torch.linalg.vector_norm(centres[:, None, :, :] - points[:, :, None, :], dim=-1)
    near = ((dist <= radius) & mask[:, None, :]).any(-1)                      # [N, Q]
    return near[:, 0] if single else near


class ScenesDataset(Dataset):
    """``n`` random scenes of ``min_objects``–``max_objects`` objects, deterministic from
    ``seed``.

    Each object's (shape, colour) pair is uniform over the pairs of ``split`` (module
    docstring; ``holdout`` as in :func:`conceptalg.data.shapes.resolve_holdout`).

    Attributes: ``images`` ``[N, 3, R, R]`` float32 in ``[0, 1]``; ``counts`` LongTensor ``[N]``
    (uniform on ``min_objects..max_objects``); ``centres`` ``[N, K, 2]`` (x, y) with ``K =
    max_objects``, zero where ``mask`` ``[N, K]`` is False; ``shapes`` and ``colors`` LongTensor
    ``[N, K]`` of indices into ``SHAPES`` / ``COLORS``, -1 where padded. Item ``i`` is
    ``(image, centres, mask)``.

    Example:
        >>> data = ScenesDataset(50, seed=0)
        >>> data.images.shape, data.centres.shape, int(data.counts.max()) <= 4
        (torch.Size([50, 3, 32, 32]), torch.Size([50, 4, 2]), True)
        >>> train = ScenesDataset(50, seed=0, split="train")   # no circle is red
        >>> bool(((train.shapes == 0) & (train.colors == 0)).any())
        False
    """

    def __init__(self, n: int, seed: int = 0, resolution: int = 32, min_objects: int = 1,
                 max_objects: int = MAX_OBJECTS, gap: float = SCENE_GAP, tries: int = 64,
                 restarts: int = 200, split: str = "all", holdout=DEFAULT_HOLDOUT) -> None:
        if int(n) != n or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        if not 1 <= min_objects <= max_objects:
            raise ValueError(f"need 1 <= min_objects <= max_objects, got {min_objects} and "
                             f"{max_objects}")
        if gap < 0:
            raise ValueError(f"gap must be >= 0, got {gap}")
        allowed = pairs(split, holdout)   # checks split and holdout
        if not allowed:
            raise ValueError(f"split {split!r} is empty: the holdout holds no pairs out")
        self.seed, self.resolution, self.gap = int(seed), int(resolution), float(gap)
        self.split = split
        self.holdout = frozenset() if split == "all" else frozenset(
            p for p in pairs("all") if p not in pairs("train", holdout))
        n, k = int(n), int(max_objects)
        g = torch.Generator().manual_seed(self.seed)
        self.counts = torch.randint(min_objects, k + 1, (n,), generator=g)
        self.mask = torch.arange(k)[None, :] < self.counts[:, None]             # [N, K]
        if split == "all":  # independent draws (the layout of the earlier releases)
            shapes = torch.randint(len(SHAPES), (n, k), generator=g)
            colors = torch.randint(len(COLORS), (n, k), generator=g)
        else:
            table = torch.tensor([[SHAPES.index(s), COLORS.index(c)] for s, c in allowed])
            pick = table[torch.randint(len(allowed), (n, k), generator=g)]       # [N, K, 2]
            shapes, colors = pick[..., 0], pick[..., 1]
        self.shapes = shapes.masked_fill(~self.mask, -1)
        self.colors = colors.masked_fill(~self.mask, -1)
        self.centres = self._place(g, tries, restarts) * self.mask[..., None]  # [N, K, 2]
        self.images = self._draw()

    def _place(self, g: torch.Generator, tries: int, restarts: int) -> Tensor:
        n, k = self.mask.shape
        rho = RADII[SCENE_SIZE]
        min_dist = 2 * rho + self.gap
        centres = torch.zeros(n, k, 2)
        pending = torch.ones(n, dtype=torch.bool)
        for _ in range(restarts):
            index = pending.nonzero().reshape(-1)
            if index.numel() == 0:
                return centres
            m = index.numel()
            placed = torch.zeros(m, k, 2)
            ok = torch.ones(m, dtype=torch.bool)
            rows = torch.arange(m)
            for j in range(k):
                cand = rho + (1 - 2 * rho) * torch.rand(m, tries, 2, generator=g)  # [m, T, 2]
                good = torch.ones(m, tries, dtype=torch.bool)
                if j:
                    dist = torch.cdist(cand, placed[:, :j])                           # [m, T, j]
                    good = (dist >= min_dist).all(-1)
                placed[:, j] = cand[rows, good.byte().argmax(1)]
                ok &= good.any(1) | ~self.mask[index, j]
            centres[index[ok]] = placed[ok]
            pending[index[ok]] = False
        if pending.any():
            raise RuntimeError(f"could not place {int(self.counts.max())} objects with gap "
                               f"{self.gap} in {int(pending.sum())} scenes after {restarts} "
                               f"restarts: lower max_objects or gap")
        return centres

    def _draw(self) -> Tensor:
        n, k = self.mask.shape
        image = torch.arange(n)[:, None].expand(n, k)[self.mask]               # [M]
        return draw(self.shapes[self.mask], self.centres[self.mask],
                    torch.full((image.numel(),), RADII[SCENE_SIZE]),
                    PALETTE[self.colors[self.mask]], self.resolution, image=image, n_images=n)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index):
        return self.images[index], self.centres[index], self.mask[index]

    def __repr__(self) -> str:
        return (f"ScenesDataset(n={len(self)}, seed={self.seed}, resolution={self.resolution}, "
                f"max_objects={self.mask.shape[1]}, gap={self.gap}, split={self.split!r})")
