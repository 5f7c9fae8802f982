"""Noise-aware classifiers over factor views: the heads of a guided diffusion model.

Parametric concepts of a position (``at(x, y)``) get a :class:`WindowClassifier`: a binary
classifier of "the concept holds at this point" that reads only a window of the image around
the point — local by construction, so a composition of several points guides each object by
its own pixels (local conditional scores, Bradley et al. 2025). The properties of the object at
a point (its shape, its colour: what a binding ``at(x, y)[red & circle]`` asks) get
:class:`ObjectClassifiers`: per-factor classifiers of a smaller window around the point, each
reading its factor's view of it — local and factor-local at once.

For each factor ``f`` a softmax classifier ``p(v | view_f(x̃), σ)`` of noisy data
``x̃ = x + σ ε`` (docs/design.md §6, classifier guidance): the factor's view trunk
(:mod:`.views`) reads the preconditioned input ``c_in (x̃ − μ)`` with the noise level as
per-block scale and shift, and an MLP on the features and the noise embedding gives the
logits. Factors that share a view share its trunk (one pass per view).

With the base ``E_0(x, σ)`` of the diffusion model, concept ``f=v`` has the energy
``E_0(x, σ) − log p(v | view_f(x), σ)``: Bayes' rule for the noisy law,
``∇ log p_σ(x | v) = ∇ log p_σ(x) + ∇ log p(v | x, σ)``. Training fits both the values
(cross-entropy) and the gradients (the conditional denoiser
``D_0 + σ² ∇ log p(v | x̃, σ)`` regressed on clean data, :mod:`conceptalg.training.dsm`).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import Tensor, nn

from .backbones import ConvTrunk, film_layers
from .view_trunks import trunk_key as _key
from .views import build_view_trunk

__all__ = ["NoisyClassifiers", "WindowClassifier", "ObjectClassifiers", "CLASSIFIER_DEFAULTS",
           "WINDOW_DEFAULTS", "OBJECT_DEFAULTS"]

#: the view trunks' default size (a conv trunk of width 32: 3 stages of 32/64/64 channels)
CLASSIFIER_DEFAULTS = {"width": 32, "blocks": (1, 2, 2)}


class NoisyClassifiers(nn.Module):
    """Per-factor logits ``{factor: [B, V]}`` of noisy inputs at levels ``sigma[B]``.

    ``factors`` maps factors to values, ``views`` factors to view names (missing: identity),
    ``view_modules`` factors to user modules (their trunks). ``forward`` takes the noise
    embedding ``emb[B, d]`` of the classifiers' own noise-embedding network.

    Example:
        >>> from conceptalg.models.diffusion import _NoiseEmbedding
        >>> heads = NoisyClassifiers((3, 8, 8), {"shape": ["a", "b"], "color": ["r", "g", "b"]},
        ...                          {"shape": "colour-blind", "color": "shape-blind"},
        ...                          dim=16, options={"width": 4})
        >>> logits = heads(torch.rand(2, 3, 8, 8), torch.ones(2), ["shape", "color"],
        ...                _NoiseEmbedding(16)(torch.ones(2)))
        >>> logits["shape"].shape, logits["color"].shape
        (torch.Size([2, 2]), torch.Size([2, 3]))
    """

    def __init__(self, sample_shape: Sequence[int], factors: Mapping[str, Sequence[str]],
                 views: Mapping[str, str], *, dim: int, options: Mapping | None = None,
                 view_modules: Mapping[str, nn.Module] | None = None) -> None:
        super().__init__()
        options = {**CLASSIFIER_DEFAULTS, "spectral_norm": False, **dict(options or {})}
        view_modules = dict(view_modules or {})
        self.view_of = {f: views.get(f, "identity") for f in factors}
        self.trunks = nn.ModuleDict()
        self.films = nn.ModuleDict()
        for f in factors:
            key = _key(self.view_of[f])
            if key in self.trunks:
                continue
            source = view_modules.get(f, self.view_of[f])
            trunk = build_view_trunk(source, sample_shape, **options)
            self.trunks[key] = trunk
            self.films[key] = film_layers(dim, trunk.film_sizes)
        self.heads = nn.ModuleDict()
        for f, values in factors.items():
            features = self.trunks[_key(self.view_of[f])].out_features
            self.heads[f] = nn.Sequential(nn.Linear(features + dim, features), nn.SiLU(),
                                          nn.Linear(features, len(values)))

    def forward(self, u: Tensor, sigma: Tensor, factors: Sequence[str],
                emb: Tensor) -> dict[str, Tensor]:
        """Logits of ``factors`` for preconditioned inputs ``u`` with noise embedding ``emb``
        (``sigma`` is carried for user views that want it; built-in ones read ``emb``)."""
        features: dict[str, Tensor] = {}
        out = {}
        for f in factors:
            key = _key(self.view_of[f])
            if key not in features:
                conditions = [layer(emb) for layer in self.films[key]]
                features[key] = self.trunks[key](u, conditions or None)    # [B, F]
            out[f] = self.heads[f](torch.cat([features[key], emb], dim=1))  # [B, V]
        return out


#: window heads: the window's side (a fraction of the image width), its resampled size in
#: pixels, the conv trunk's width, and the radius within which a concept holds at a point
WINDOW_DEFAULTS = {"window": 0.5, "size": 16, "width": 16, "radius": 0.1}


def window_grid(window: float, size: int) -> Tensor:
    """The sampling grid ``[S, S, 2]`` of a window of side ``window`` (a fraction of the image
    width) resampled to ``size × size``, in ``grid_sample``'s ``[-1, 1]`` units, centred at 0."""
    offsets = torch.linspace(-1, 1, int(size)) * float(window)
    gy, gx = torch.meshgrid(offsets, offsets, indexing="ij")
    return torch.stack([gx, gy], -1)


def crop(u: Tensor, point: Tensor, grid: Tensor) -> Tensor:
    """The windows ``[B, C, S, S]`` of ``u[B, C, H, W]`` around ``point[B, 2]`` (``(x, y)`` in
    ``[0, 1]``, origin top-left), bilinear, zeros outside the image."""
    centre = (2 * point.to(u.dtype) - 1)[:, None, None, :]                 # [B, 1, 1, 2]
    return nn.functional.grid_sample(u, grid.to(u.dtype) + centre, mode="bilinear",
                                     padding_mode="zeros", align_corners=False)


class WindowClassifier(nn.Module):
    """``logit P(c(p) | window(x̃, p), σ)`` ``[B]`` for a concept of a position ``p = (x, y)``
    in ``[0, 1]²`` (origin top-left, x to the right): the window of side ``window`` (a fraction
    of the width) centred at ``p``, resampled to ``size × size`` pixels (bilinear, zeros
    outside the image), read by a small conv trunk with the noise level as scale and shift.

    Example:
        >>> head = WindowClassifier(3, dim=16, width=4)
        >>> head(torch.rand(2, 3, 32, 32), torch.tensor([[0.3, 0.3], [0.9, 0.1]]),
        ...      torch.zeros(2, 16)).shape
        torch.Size([2])
    """

    def __init__(self, in_channels: int, *, dim: int, window: float = 0.5, size: int = 16,
                 width: int = 16, radius: float = 0.1) -> None:
        super().__init__()
        self.window, self.size, self.radius = float(window), int(size), float(radius)
        self.trunk = ConvTrunk(in_channels, width=width, blocks=(1, 2), spectral_norm=False)
        self.films = film_layers(dim, self.trunk.film_sizes)
        features = self.trunk.out_features
        self.head = nn.Sequential(nn.Linear(features + dim, features), nn.SiLU(),
                                  nn.Linear(features, 1))
        self.register_buffer("grid", window_grid(self.window, self.size), persistent=False)

    def crop(self, u: Tensor, point: Tensor) -> Tensor:
        """The windows ``[B, C, S, S]`` of ``u[B, C, H, W]`` around ``point[B, 2]``."""
        return crop(u, point, self.grid)

    def forward(self, u: Tensor, point: Tensor, emb: Tensor) -> Tensor:
        conditions = [layer(emb) for layer in self.films]
        h = self.trunk(self.crop(u, point), conditions)                    # [B, F]
        return self.head(torch.cat([h, emb], dim=1))[:, 0]                 # [B]


#: object heads: the window's side (a fraction of the width: small enough that a neighbour,
#: whose circumscribed circle is ≥ 0.38 away in ``scenes``, stays outside it when the object
#: sits at the point), its resampled size in pixels, and the view trunks' size
OBJECT_DEFAULTS = {"window": 0.4, "size": 16, "width": 16, "blocks": (1, 2)}


class ObjectClassifiers(nn.Module):
    """``{factor: logits [B, V]}`` of the properties of *the object at* ``point[B, 2]``: the
    window of side ``window`` around the point, resampled to ``size × size``, read by one
    :class:`NoisyClassifiers` per factor view (``views``: e.g. shape colour-blind, colour
    shape-blind). Trained on windows centred on objects, so it answers ``P(v | the object at
    p)`` — the factor probability a binding ``at(p)[E]`` multiplies by ``P(object at p)``.

    Example:
        >>> from conceptalg.models.diffusion import _NoiseEmbedding
        >>> heads = ObjectClassifiers(3, {"shape": ["a", "b"], "color": ["r", "g", "b"]},
        ...                           {"shape": "colour-blind", "color": "shape-blind"}, dim=16)
        >>> out = heads(torch.rand(2, 3, 32, 32), torch.tensor([[0.3, 0.3], [0.7, 0.6]]),
        ...             ["color"], torch.ones(2), _NoiseEmbedding(16)(torch.ones(2)))
        >>> out["color"].shape
        torch.Size([2, 3])
    """

    def __init__(self, in_channels: int, factors: Mapping[str, Sequence[str]],
                 views: Mapping[str, str], *, dim: int, options: Mapping | None = None,
                 view_modules: Mapping[str, nn.Module] | None = None) -> None:
        super().__init__()
        options = {**OBJECT_DEFAULTS, **dict(options or {})}
        self.window, self.size = float(options.pop("window")), int(options.pop("size"))
        self.register_buffer("grid", window_grid(self.window, self.size), persistent=False)
        self.classifiers = NoisyClassifiers((in_channels, self.size, self.size), factors,
                                            {f: v for f, v in views.items() if f in factors},
                                            dim=dim, options=options,
                                            view_modules=view_modules)

    def forward(self, u: Tensor, point: Tensor, factors: Sequence[str], sigma: Tensor,
                emb: Tensor) -> dict[str, Tensor]:
        window = crop(u, point.expand(u.shape[0], 2), self.grid)          # [B, C, S, S]
        return self.classifiers(window, sigma, factors, emb)
