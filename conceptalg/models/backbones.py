"""Backbones: an MLP for vectors and a small conv ResNet for images (docs/design.md §6).

Both use swish (SiLU) activations and no batch norm (batch statistics would couple the chains
of a sampler and the positive and negative halves of a contrastive-divergence batch); spectral
norm on every weight layer is optional and is what keeps image EBMs smooth enough to sample.
A backbone maps ``x`` to a feature vector ``h[B, F]``; an optional ``condition[B, 2*C]`` per
block applies FiLM (``h ← h·(1 + γ) + β``), which is how concept-embedding heads condition the
whole network on a concept.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

__all__ = ["MLPTrunk", "ConvTrunk", "build_backbone", "colour_blind_conv", "film_layers", "STEMS"]

#: input stems of :class:`ConvTrunk`
STEMS = ("rgb", "colour-blind")


def _maybe_sn(layer: nn.Module, enabled: bool) -> nn.Module:
    return _spectral_norm(layer) if enabled else layer


def _film(h: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
    """Feature-wise modulation; ``condition`` is ``[B, 2C]`` (gain then bias) or None."""
    if condition is None:
        return h
    gain, bias = condition.chunk(2, dim=1)  # [B, C] each
    shape = (h.shape[0], -1) + (1,) * (h.dim() - 2)
    return h * (1 + gain.reshape(shape)) + bias.reshape(shape)


def film_layers(dim: int, sizes: Sequence[int]) -> nn.ModuleList:
    """One linear map ``[B, dim] -> [B, size]`` per FiLM size, zero-initialised so that a trunk
    starts unmodulated (gain 0, bias 0: the identity modulation).

    Example:
        >>> layers = film_layers(4, [6, 8])
        >>> [tuple(layer(torch.ones(1, 4)).shape) for layer in layers]
        [(1, 6), (1, 8)]
        >>> bool((layers[0].weight == 0).all() and (layers[0].bias == 0).all())
        True
    """
    layers = nn.ModuleList(nn.Linear(dim, size) for size in sizes)
    for layer in layers:
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)
    return layers


def colour_blind_conv(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``conv`` (one input channel) applied to every channel of ``x[B, C, H, W]`` alone, then
    the maximum over channels: features that cannot tell which channels are lit.

    Example:
        >>> conv = nn.Conv2d(1, 4, 3, padding=1)
        >>> x = torch.rand(2, 3, 8, 8)
        >>> torch.equal(colour_blind_conv(conv, x), colour_blind_conv(conv, x[:, [2, 0, 1]]))
        True
    """
    b, c = x.shape[:2]
    h = conv(x.reshape(b * c, 1, *x.shape[2:]))                            # [B·C, F, H', W']
    return h.reshape(b, c, *h.shape[1:]).amax(dim=1)                       # [B, F, H', W']


class MLPTrunk(nn.Module):
    """``x[B, D] -> h[B, F]`` with swish activations; FiLM condition sizes in ``film_sizes``.

    Example:
        >>> trunk = MLPTrunk(2, hidden=(64, 64))
        >>> trunk(torch.zeros(5, 2)).shape
        torch.Size([5, 64])
    """

    def __init__(self, in_dim: int, hidden: Sequence[int] = (256, 256),
                 spectral_norm: bool = False) -> None:
        super().__init__()
        if not hidden:
            raise ValueError("hidden must list at least one layer width")
        dims = [int(in_dim), *map(int, hidden)]
        self.layers = nn.ModuleList(_maybe_sn(nn.Linear(a, b), spectral_norm)
                                    for a, b in zip(dims[:-1], dims[1:]))
        self.out_features = dims[-1]
        self.film_sizes = [2 * d for d in dims[1:]]

    def forward(self, x: torch.Tensor, conditions: Sequence[torch.Tensor] | None = None):
        h = x.flatten(1)
        for i, layer in enumerate(self.layers):
            h = nn.functional.silu(_film(layer(h), conditions[i] if conditions else None))
        return h  # [B, F]


class _ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, spectral_norm: bool) -> None:
        super().__init__()
        self.conv1 = _maybe_sn(nn.Conv2d(c_in, c_out, 3, padding=1), spectral_norm)
        self.conv2 = _maybe_sn(nn.Conv2d(c_out, c_out, 3, padding=1), spectral_norm)
        self.skip = (_maybe_sn(nn.Conv2d(c_in, c_out, 1), spectral_norm)
                     if c_in != c_out else nn.Identity())

    def forward(self, h: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        y = self.conv1(nn.functional.silu(h))
        y = self.conv2(nn.functional.silu(_film(y, condition)))
        return self.skip(h) + y


class ConvTrunk(nn.Module):
    """A small conv ResNet, ``x[B, C, H, W] -> h[B, F]`` (swish, no batch norm).

    A stride-2 input convolution halves the resolution first (the Langevin chain dominates the
    cost of training, so every layer at full resolution costs twice), then residual blocks at
    decreasing resolutions, average pooling between them, and a global average over space.

    ``stem="colour-blind"`` applies one input filter bank to each channel on its own and keeps
    the maximum over channels: features that cannot tell which channels are lit, i.e. blind to
    colour (and invariant to any permutation of the channels). Heads of factors that do not
    depend on colour (shape, size) can read such a trunk, so that they cannot learn the colours
    their values happened to come with in training (``ModelConfig.colour_blind``).

    Example:
        >>> trunk = ConvTrunk(3, width=16)
        >>> trunk(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 32])
    """

    def __init__(self, in_channels: int = 3, width: int = 32, blocks: Sequence[int] = (1, 2, 2),
                 spectral_norm: bool = True, stem: str = "rgb") -> None:
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}, got {stem!r}")
        self.colour_blind = stem == "colour-blind"
        self.stem = _maybe_sn(nn.Conv2d(1 if self.colour_blind else in_channels, width, 3,
                                        stride=2, padding=1), spectral_norm)
        channels = [width * m for m in blocks]
        self.blocks = nn.ModuleList(_ResBlock(a, b, spectral_norm)
                                    for a, b in zip([width, *channels[:-1]], channels))
        self.out_features = channels[-1]
        self.film_sizes = [2 * c for c in channels]

    def forward(self, x: torch.Tensor, conditions: Sequence[torch.Tensor] | None = None):
        h = colour_blind_conv(self.stem, x) if self.colour_blind else self.stem(x)
        for i, block in enumerate(self.blocks):
            if i:
                h = nn.functional.avg_pool2d(h, 2)
            h = block(h, conditions[i] if conditions else None)
        return nn.functional.silu(h).mean(dim=(2, 3))  # [B, F]


def build_backbone(kind: str, sample_shape: Sequence[int], **options) -> nn.Module:
    """A backbone by name: ``"mlp"`` for vectors, ``"conv"`` for ``[C, H, W]`` images."""
    if kind == "mlp":
        dim = 1
        for s in sample_shape:
            dim *= int(s)
        return MLPTrunk(dim, **options)
    if kind == "conv":
        if len(sample_shape) != 3:
            raise ValueError(f"a conv backbone needs samples shaped [C, H, W], got {tuple(sample_shape)}")
        return ConvTrunk(int(sample_shape[0]), **options)
    raise ValueError(f"backbone must be 'mlp' or 'conv', got {kind!r}")
