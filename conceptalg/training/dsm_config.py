"""The hyper-parameters of denoising score matching (:class:`DSMConfig`, saved with every
checkpoint), their defaults by kind of data, the data's noise statistics (centre μ, scale σ_d
and the σ range of the EDM preconditioning) and the weight average's decay schedules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .. import edm
from ..sampling.settings import check_int

__all__ = ["DSMConfig", "default_dsm_config", "noise_statistics", "ema_decay",
           "AUGMENTATIONS", "CONDITIONINGS", "EMA_SCHEDULES", "NORMALISATIONS"]

#: declared symmetries the base may be trained under (``DSMConfig.augment``)
AUGMENTATIONS = (None, "channel-permutations")
#: how the data's centre μ and scale σ_d are chosen (``DSMConfig.normalisation``)
NORMALISATIONS = ("measured", "bounds")
#: what each training sample is conditioned on (``DSMConfig.conditioning``)
CONDITIONINGS = ("one", "complete")
#: the moving average's warm-up (``DSMConfig.ema_schedule``)
EMA_SCHEDULES = ("rampup", "warmup")


@dataclass
class DSMConfig:
    """Hyper-parameters of denoising score matching (saved with checkpoints).

    ``ema`` is the largest decay of the weights' moving average; ``ema_rampup`` keeps its
    half-life at that fraction of the steps so far until then (EDM's ramp-up: an average over
    the last 5 % of training, so early snapshots are not held back by the initial weights).
    ``p_mean``/``p_std``: EDM's log-normal training σ at ``σ_d = 0.5`` (shifted by
    ``ln(σ_d/0.5)`` for the data's own σ_d). ``sigma_min``/``sigma_max``: the range of levels
    the model is sampled over; ``sigma_min`` is also the level that stands for the data level
    (σ = 0). Defaults: images EDM's 0.002–80 scaled by ``σ_d/0.5``; vectors ``0.1 σ_d`` to
    ``3 σ_d`` (:func:`default_dsm_config`).
    ``sampling_levels`` and ``rho``: the default reverse-diffusion schedule recorded in the
    model's ``sampler_defaults`` (Heun on ``sampling_levels`` ρ-spaced levels).
    ``reference_batch`` > 0 regresses on the *stable target field* (Xu et al. 2023) instead of
    the sample's own clean point: the posterior mean ``E[x | x̃, c]`` estimated by self-normalised
    importance weights ``∝ exp(−‖x̃ − x_j‖²/2σ²)`` over the sample and ``reference_batch``
    other data of its concept — the same optimum, far less gradient noise where many data lie
    within σ of ``x̃`` (low-dimensional data; the default for vectors).
    ``classifier_weight`` and ``guidance_weight`` weigh the two losses of classifier heads
    (``heads="classifier"``, module docstring): cross-entropy of the labels, and the denoising
    loss of the conditional denoiser ``D_0 + σ² ∇ log p(y | x̃, σ)`` that trains their
    gradients. ``freeze_base`` trains the classifiers only, over a base trained before
    (:meth:`~conceptalg.models.GuidedDiffusionModel.over_base`).
    ``augment="channel-permutations"`` declares the data law invariant under permutations of
    the colour channels (true of ``shapes`` and ``scenes``, whose colours are closed under
    them): the base (samples drawn for "no concept") trains on images with their channels
    permuted at random, so it learns the symmetrised law; concept heads train on the data as
    it is, since a permutation changes their labels.
    ``normalisation`` chooses the centre μ and scale σ_d of the EDM preconditioning:
    ``"measured"`` takes the data's own mean and standard deviation; ``"bounds"`` takes the
    middle of the data's bounds and a quarter of their width (EDM's images: [−1, 1] with
    σ_d = 0.5, i.e. 0.5 and 0.25 on [0, 1]).
    ``conditioning``: ``"one"`` conditions each sample on one concept that holds for it (the
    base with probability ``base_fraction``); ``"complete"`` on *all* its factors' values at
    once, each dropped independently with probability ``drop_rate`` (and all of them, the base,
    with probability ``base_fraction``) —
    Okawa et al. 2023 and Farid et al. 2025 find complete conditioning drives compositional
    generalisation; it trains single concepts, pairs and the base in one objective
    (``drop_rate`` 0.2: a single concept of three factors in 0.8·0.2² ≈ 3 % per factor).
    ``independence_weight`` > 0 adds CoInD's independence penalty (Gaudi et al., ICLR 2025)
    under complete conditioning: for ``independence_batch`` samples of each batch and a random
    pair of their factors ``(i, j)``, ``λ(σ) ‖D(c_i) + D(c_j) − D(∅) − D(c_i, c_j)‖²`` at the
    same noisy input — the joint condition is made the sum of the single ones, as composition
    by summed guidance assumes (four more network passes on the sub-batch).
    ``ema_schedule``: ``"rampup"`` (above) or ``"warmup"``, the decay ``min(ema, (1+t)/(10+t))``
    (an average over the last ``1/(1 − ema)`` steps as soon as ``t`` allows).
    """

    steps: int = 7500
    batch_size: int = 64
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    ema: float = 0.999
    ema_rampup: float = 0.05
    p_mean: float = edm.P_MEAN
    p_std: float = edm.P_STD
    base_fraction: float = 0.2
    grad_clip: float = 1.0
    sigma_min: float | None = None
    sigma_max: float | None = None
    sampling_levels: int = 18
    rho: float = edm.RHO
    max_loss: float = 1e4
    reference_batch: int = 0
    classifier_weight: float = 1.0
    guidance_weight: float = 10.0
    freeze_base: bool = False
    augment: str | None = None
    normalisation: str = "measured"
    ema_schedule: str = "rampup"
    conditioning: str = "one"
    drop_rate: float = 0.2
    independence_weight: float = 0.0
    independence_batch: int = 16
    seed: int = 0
    log_every: int = 50

    def __post_init__(self) -> None:
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        for name in ("steps", "batch_size", "log_every", "sampling_levels"):
            check_int(name, getattr(self, name), 1)
        check_int("reference_batch", self.reference_batch, 0)
        check_int("seed", self.seed, 0)
        for name in ("lr", "p_std", "grad_clip", "rho", "max_loss", "ema_rampup"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if not (isinstance(self.p_mean, (int, float)) and math.isfinite(self.p_mean)):
            raise ValueError(f"p_mean must be a finite number, got {self.p_mean!r}")
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema must be in [0, 1), got {self.ema!r}")
        if not 0 <= self.base_fraction <= 1:
            raise ValueError(f"base_fraction must be in [0, 1], got {self.base_fraction!r}")
        if self.conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning must be one of {CONDITIONINGS}, got "
                             f"{self.conditioning!r}")
        if not 0 <= self.drop_rate < 1:
            raise ValueError(f"drop_rate must be in [0, 1), got {self.drop_rate!r}")
        check_int("independence_batch", self.independence_batch, 1)
        w = self.independence_weight
        if not (isinstance(w, (int, float)) and math.isfinite(w) and w >= 0):
            raise ValueError(f"independence_weight must be a finite number >= 0, got {w!r}")
        if w > 0 and self.conditioning != "complete":
            raise ValueError("independence_weight (CoInD's penalty) compares joint and single "
                             "conditions: it needs conditioning='complete'")
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(f"normalisation must be one of {NORMALISATIONS}, got "
                             f"{self.normalisation!r}")
        if self.ema_schedule not in EMA_SCHEDULES:
            raise ValueError(f"ema_schedule must be one of {EMA_SCHEDULES}, got "
                             f"{self.ema_schedule!r}")
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {self.augment!r}")
        for name in ("classifier_weight", "guidance_weight"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        for name in ("sigma_min", "sigma_max"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be None or a finite number > 0, got {value!r}")


def default_dsm_config(sample_shape, **overrides) -> DSMConfig:
    """Defaults by kind of data: EDM's image recipe (the prototype of docs/references.md: batch 64,
    Adam 1e-3, EMA 0.999, EDM's [−1, 1] scaling: ``normalisation="bounds"``) for
    ``[C, H, W]``; for vectors a larger batch and a shorter EMA (small MLPs train in a minute,
    and a 1000-step average would lag behind them) and their measured mean and deviation.
    The image choices were measured in the bisection of docs/extrapolation.md.

    Example:
        >>> default_dsm_config((2,)).batch_size, default_dsm_config((3, 32, 32)).batch_size
        (256, 64)
        >>> default_dsm_config((3, 32, 32)).normalisation
        'bounds'
    """
    if len(tuple(sample_shape)) == 3:
        return DSMConfig(**{"normalisation": "bounds", **overrides})
    # Denoising signal about a smooth density's shape falls like σ² below its own scale, so
    # vectors train (median σ ≈ 0.19 σ_d) and sample (σ_min = 0.1 σ_d) where the energies are
    # still learned; on toy2d (σ_d ≈ 1.6) composing at σ = 0.15 beat 0.1 and 0.2 in MMD².
    base: dict[str, Any] = dict(batch_size=256, lr=2e-3, ema=0.99, steps=4000, base_fraction=0.2,
                                reference_batch=1024, p_mean=-2.4, p_std=edm.P_STD)
    base.update(overrides)
    return DSMConfig(**base)


def noise_statistics(x: Tensor, config: DSMConfig,
                     bounds: tuple[float, float] | None = None) -> dict[str, Any]:
    """The model's ``noise`` entry from data ``x[N, ...]``: the centre μ (one number for images,
    one per coordinate for vectors), ``σ_d`` and the σ range — measured from the data, or from
    its ``bounds`` under ``config.normalisation="bounds"`` (the config's docstring).

    Example:
        >>> stats = noise_statistics(torch.tensor([[0.0, 2.0], [2.0, 4.0]]), DSMConfig())
        >>> stats["mean"], stats["sigma_data"]
        ([1.0, 3.0], 1.0)
        >>> images = torch.rand(4, 3, 8, 8)
        >>> stats = noise_statistics(images, DSMConfig(normalisation="bounds"), (0.0, 1.0))
        >>> stats["mean"], stats["sigma_data"], stats["sigma_max"]
        (0.5, 0.25, 40.0)
    """
    x = x.double()
    if config.normalisation == "bounds":
        if bounds is None:
            raise ValueError("normalisation='bounds' needs data with bounds (images in [0, 1]); "
                             "use normalisation='measured'")
        lo, hi = map(float, bounds)
        mean, sigma_data = torch.tensor(0.5 * (lo + hi), dtype=torch.float64), 0.25 * (hi - lo)
    else:
        mean = x.mean() if x.dim() == 4 else x.mean(0)
        sigma_data = float((x - mean).square().mean().sqrt())
    if not (math.isfinite(sigma_data) and sigma_data > 0):
        raise ValueError(f"the data has no spread (σ_d = {sigma_data}); denoising score matching "
                         f"needs data that varies")
    low, high = edm.sigma_range(sigma_data) if x.dim() == 4 else \
        (0.1 * sigma_data, 3.0 * sigma_data)
    return {"mean": float(mean) if mean.dim() == 0 else [float(m) for m in mean],
            "sigma_data": sigma_data,
            "sigma_min": config.sigma_min if config.sigma_min is not None else low,
            "sigma_max": config.sigma_max if config.sigma_max is not None else high}


def ema_decay(step: int, ema: float, rampup: float, schedule: str = "rampup") -> float:
    """The moving average's decay after ``step`` updates. ``"rampup"``:
    ``min(ema, 0.5^(1/(rampup·step)))``, a half-life of ``rampup·step`` updates until it reaches
    ``ema`` (Karras et al. 2022); ``"warmup"``: ``min(ema, (1 + step)/(10 + step))``.

    Example:
        >>> round(ema_decay(1000, 0.999, 0.05), 4), ema_decay(10 ** 6, 0.999, 0.05)
        (0.9862, 0.999)
        >>> round(ema_decay(1000, 0.999, 0.05, "warmup"), 4)
        0.9911
    """
    if schedule == "warmup":
        return min(ema, (1.0 + step) / (10.0 + step))
    return min(ema, 0.5 ** (1.0 / max(rampup * step, 1e-12)))


def _ema_update(ema: float, rampup: float, schedule: str = "rampup"):
    """``multi_avg_fn`` for :class:`torch.optim.swa_utils.AveragedModel`: one in-place step
    ``avg ← avg + (1 − d)(θ − avg)`` of every tensor, ``d`` from :func:`ema_decay`."""
    def update(averaged: list[Tensor], current: list[Tensor], num_averaged: Tensor) -> None:
        d = ema_decay(int(num_averaged), ema, rampup, schedule)
        torch._foreach_lerp_(averaged, current, 1.0 - d)
    return update
