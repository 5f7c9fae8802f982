"""Which concept each training sample trains: the per-sample choice both objectives share.

Every iteration of contrastive divergence and of denoising score matching draws a batch of
data and, per sample, one concept that holds for it — a factor value, or a parametric concept
with one of its argument sets — or, with probability ``base_fraction``, the base ``E_0`` ("no
concept"). So every head sees exactly the data of its concept, and the base sees all data.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .data import ConceptData

__all__ = ["ConceptChoices"]


class ConceptChoices:
    """The concepts that hold for each sample of ``data``, as head indices of a model whose
    heads are ``index`` (name → row); ``train_only`` restricts the choice to those heads.

    Example:
        >>> data = ConceptData.from_labels(torch.zeros(4, 2), ["a", "b", "a", "b"])
        >>> choices = ConceptChoices(data, {"concept=a": 0, "concept=b": 1})
        >>> g = torch.Generator().manual_seed(0)
        >>> head, args = choices.draw(torch.tensor([0, 1]), g, base_fraction=0.0)
        >>> head.tolist(), args
        ([0, 1], None)
    """

    def __init__(self, data: ConceptData, index: dict[str, int],
                 train_only: Sequence[str] | None = None) -> None:
        self.data, self.index = data, index
        columns, slots = [], []
        for f, labels in data.labels.items():
            first = index[f"{f}={data.factors[f][0]}"]
            columns.append(torch.where(labels >= 0, first + labels, -2))
            slots.append(torch.zeros_like(labels))
        for name, (_, mask) in data.parametric.items():
            m = mask.shape[1]
            columns.append(torch.where(mask, index[name], -2))           # [N, M]
            slots.append(torch.arange(m).expand_as(mask))
        heads = torch.cat([c.reshape(len(data), -1) for c in columns], dim=1)
        slot = torch.cat([s.reshape(len(data), -1) for s in slots], dim=1)
        if train_only:
            allowed = torch.tensor([index[n] for n in train_only])
            heads = torch.where(torch.isin(heads, allowed), heads, -2)
        self.heads, self.slots = heads, slot                              # [N, C] each (-2: pad)

    def draw(self, idx: Tensor, generator: torch.Generator, *, base_fraction: float,
             base: str = "sometimes") -> tuple[Tensor, Tensor | None]:
        """For the samples ``idx`` ``[B]``: a head index per sample (``-1`` = the base) and,
        when the data has parametric concepts, their arguments ``[B, n]`` (zeros where unused).
        ``base`` is ``"sometimes"`` (probability ``base_fraction``, and always for a sample no
        concept holds for), ``"always"`` or ``"never"``. Draws its random numbers from
        ``generator`` in a fixed order."""
        options = self.heads[idx]                                         # [B, C]
        valid = options >= 0
        score = torch.rand(options.shape, generator=generator).masked_fill(~valid, -1.0)
        pick = score.argmax(1)                                            # [B]
        head = options[torch.arange(len(idx)), pick]
        use_base = (torch.rand(len(idx), generator=generator) < base_fraction) | ~valid.any(1)
        if base == "always":
            use_base[:] = True
        elif base == "never":
            use_base[:] = False
        head = torch.where(use_base, -1, head)
        args = None
        parametric = self.data.parametric
        if parametric:
            n_args = next(iter(parametric.values()))[0].shape[2]
            args = torch.zeros(len(idx), n_args)
            slot = self.slots[idx, pick]
            for name, (all_args, _) in parametric.items():
                rows = head == self.index[name]
                args[rows] = all_args[idx[rows], slot[rows]]
        return head, args
