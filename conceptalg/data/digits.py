"""``digits``: scikit-learn's bundled 8×8 handwritten digits (1 797 images, real handwriting).

The data ships inside scikit-learn (``sklearn.datasets.load_digits``), so nothing downloads;
scikit-learn is the optional extra ``conceptalg[digits]``. Pixel values 0–16 are scaled to
``[0, 1]`` (``v / 16``); images are ``[N, 1, 8, 8]``, optionally resized (bilinear) to another
resolution. One factor, ``digit``, with the concepts ``digit=0`` … ``digit=9``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["DIGITS", "FACTORS", "CONCEPTS", "DigitsDataset", "load_digits"]

DIGITS: tuple[str, ...] = tuple(str(d) for d in range(10))
FACTORS: dict[str, tuple[str, ...]] = {"digit": DIGITS}
CONCEPTS: tuple[str, ...] = tuple(f"digit={d}" for d in DIGITS)


@lru_cache(maxsize=1)
def _bundled() -> tuple[Tensor, Tensor]:
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError as error:
        raise ImportError("the digits data ship with scikit-learn, which is not installed: "
                          "pip install 'conceptalg[digits]' (or scikit-learn)") from error
    bunch = sklearn_digits()
    return (torch.as_tensor(bunch.images, dtype=torch.float32)[:, None] / 16.0,  # [N, 1, 8, 8]
            torch.as_tensor(bunch.target, dtype=torch.long))


def load_digits(resolution: int = 8) -> tuple[Tensor, Tensor]:
    """All 1 797 digits: ``(images [N, 1, R, R] float32 in [0, 1], labels LongTensor [N])``.

    Raises ``ImportError`` naming the ``conceptalg[digits]`` extra when scikit-learn is missing.

    Example:
        >>> images, labels = load_digits()
        >>> images.shape, int(labels[0])
        (torch.Size([1797, 1, 8, 8]), 0)
    """
    if int(resolution) != resolution or resolution < 1:
        raise ValueError(f"resolution must be a positive integer, got {resolution!r}")
    images, labels = _bundled()
    if resolution != images.shape[-1]:
        images = F.interpolate(images, size=(int(resolution),) * 2, mode="bilinear",
                               align_corners=False, antialias=resolution < images.shape[-1])
        images = images.clamp(0.0, 1.0)
    return images.clone(), labels.clone()


class DigitsDataset(Dataset):
    """The digits as a torch ``Dataset``, with a fixed train/test split.

    ``split="all"`` keeps every image; ``"train"`` / ``"test"`` split a permutation drawn from
    ``seed`` at ``test_fraction``. Attributes: ``images`` ``[N, 1, R, R]``, ``labels``
    ``{"digit": LongTensor[N]}``. Item ``i`` is ``(image, digit)``.

    Example:
        >>> data = DigitsDataset(split="train", resolution=16)
        >>> data.images.shape[1:], len(data) + len(DigitsDataset(split="test"))
        (torch.Size([1, 16, 16]), 1797)
    """

    factors = FACTORS

    def __init__(self, split: Literal["train", "test", "all"] = "all", resolution: int = 8,
                 seed: int = 0, test_fraction: float = 0.2) -> None:
        if split not in ("train", "test", "all"):
            raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        images, labels = load_digits(resolution)
        if split != "all":
            order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
            n_test = int(round(test_fraction * len(labels)))
            keep = order[:n_test] if split == "test" else order[n_test:]
            images, labels = images[keep], labels[keep]
        self.split, self.resolution = split, int(resolution)
        self.images, self.labels = images, {"digit": labels}

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index):
        return self.images[index], self.labels["digit"][index]

    def __repr__(self) -> str:
        return f"DigitsDataset(n={len(self)}, split={self.split!r}, resolution={self.resolution})"
