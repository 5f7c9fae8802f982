"""Noise-aware classifiers over factor views: the heads of a guided diffusion model.

For each factor ``f`` a softmax classifier ``p(v | view_f(x̃), σ)`` of noisy data
``x̃ = x + σ ε`` (design §6, classifier guidance): the factor's view trunk
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

from .views import build_view_trunk

__all__ = ["NoisyClassifiers", "CLASSIFIER_DEFAULTS"]

#: the view trunks' default size (a conv trunk of width 32: 3 stages of 32/64/64 channels)
CLASSIFIER_DEFAULTS = {"width": 32, "blocks": (1, 2, 2)}


class NoisyClassifiers(nn.Module):
    """Per-factor logits ``{factor: [B, V]}`` of noisy inputs at levels ``sigma[B]``.

    ``factors`` maps factors to values, ``views`` factors to view names (missing: identity),
    ``view_modules`` factors to user modules (their trunks). ``embedding`` is the noise
    embedding ``σ[B] -> [B, d]`` shared with the denoiser's network.

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
            self.films[key] = nn.ModuleList(nn.Linear(dim, size) for size in trunk.film_sizes)
            for layer in self.films[key]:  # start as the identity modulation
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
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


def _key(view: str) -> str:
    """A ModuleDict key for a view name (no dots)."""
    return view.replace(".", "_").replace(":", "_")
