"""Denoising score matching of noise-conditioned concept energies (design §6), the EDM recipe.

Each iteration draws a batch of data ``x``, one concept per sample (the same choice as
contrastive divergence, :mod:`.conditioning`: the base with probability ``base_fraction``), a
noise level per sample from the log-normal ``ln σ ~ N(P_mean + ln(σ_d / 0.5), P_std²)`` (EDM's
``P_mean = −1.2``, ``P_std = 1.2`` at ``σ_d = 0.5``, scaled to the data's own ``σ_d``), and
regresses the model's denoiser on the clean data:

    L = mean_i λ(σ_i) · mean_pixels (D(x_i + σ_i ε_i; σ_i, c_i) − x_i)²,
    λ(σ) = (σ² + σ_d²) / (σ σ_d)²                                  (Karras et al. 2022)

With classifier heads (``heads="classifier"``, classifier guidance) the network is the
unconditional base ``D_0`` and every factor ``f`` has a noise-aware classifier
``p(v | view_f(x̃), σ)`` (:mod:`conceptalg.models.noisy_classifier`). Each sample trains the
base as above and, for each factor with a known label ``y``, the classifier twice over: its
values by cross-entropy, and its gradient through the conditional denoiser of Bayes' rule,
``D_y = sg(D_0) + σ² ∇_x̃ log p(y | x̃, σ)`` (``sg``: no gradient into the base), regressed on
the clean sample with the same weight ``λ(σ)``. A classifier trained on values alone need not
have gradients that move samples towards its class (a noisy classifier's gradients are not
perceptually aligned: references.md); the second term fits exactly what guidance uses.

No chain runs in the loop. For the energy parameterisation ``D = x − σ² ∇_x E`` is built with
``create_graph=True``, so θ is trained through the energy's gradient (design §6;
:class:`~conceptalg.models.diffusion.DiffusionModel`). Adam; an exponential moving average of
the weights (``torch.optim.swa_utils``) is the model that samples — it is what checkpoints
store as the model, with the online weights kept beside it for an exact resume.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

from ..models.diffusion import DiffusionModel
from ..models.model import ModelConfig
from ..models.views import normalise_views, view_name
from ..sampling.settings import check_int
from .cd import TrainingDiverged
from .conditioning import ConceptChoices
from .data import ConceptData

__all__ = ["DSMConfig", "DSMTrainer", "default_dsm_config", "noise_statistics"]

_ONLINE = "online."
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
    (:meth:`~conceptalg.models.DiffusionModel.with_classifiers`).
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
    ``ema_schedule``: ``"rampup"`` (above) or ``"warmup"``, the decay ``min(ema, (1+t)/(10+t))``
    (an average over the last ``1/(1 − ema)`` steps as soon as ``t`` allows).
    """

    steps: int = 7500
    batch_size: int = 64
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    ema: float = 0.999
    ema_rampup: float = 0.05
    p_mean: float = -1.2
    p_std: float = 1.2
    base_fraction: float = 0.2
    grad_clip: float = 1.0
    sigma_min: float | None = None
    sigma_max: float | None = None
    sampling_levels: int = 18
    rho: float = 7.0
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
    """Defaults by kind of data: EDM's image recipe (the prototype of references.md: batch 64,
    Adam 1e-3, EMA 0.999) for ``[C, H, W]``; for vectors a larger batch and a shorter EMA
    (small MLPs train in a minute, and a 1000-step average would lag behind them).

    Example:
        >>> default_dsm_config((2,)).batch_size, default_dsm_config((3, 32, 32)).batch_size
        (256, 64)
    """
    if len(tuple(sample_shape)) == 3:
        return DSMConfig(**overrides)
    # Denoising signal about a smooth density's shape falls like σ² below its own scale, so
    # vectors train (median σ ≈ 0.19 σ_d) and sample (σ_min = 0.1 σ_d) where the energies are
    # still learned; on toy2d (σ_d ≈ 1.6) composing at σ = 0.15 beat 0.1 and 0.2 in MMD².
    base: dict[str, Any] = dict(batch_size=256, lr=2e-3, ema=0.99, steps=4000, base_fraction=0.2,
                                reference_batch=1024, p_mean=-2.4, p_std=1.2)
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
    scale = sigma_data / 0.5
    low, high = (0.002 * scale, 80.0 * scale) if x.dim() == 4 else \
        (0.1 * sigma_data, 3.0 * sigma_data)
    return {"mean": float(mean) if mean.dim() == 0 else [float(m) for m in mean],
            "sigma_data": sigma_data,
            "sigma_min": config.sigma_min if config.sigma_min is not None else low,
            "sigma_max": config.sigma_max if config.sigma_max is not None else high}


class DSMTrainer:
    """Trains a :class:`~conceptalg.models.diffusion.DiffusionModel` on :class:`ConceptData`
    by denoising score matching. ``trainer.model`` is the EMA model (what samples);
    ``trainer.online`` the weights the optimiser moves. ``parameterization`` is ``"energy"``
    (default: energy values, every semantics and sampler) or ``"score"`` (cheaper; scores only).

    Example:
        >>> x = torch.cat([torch.randn(200, 2) - 2, torch.randn(200, 2) + 2])
        >>> data = ConceptData.from_labels(x, ["left"] * 200 + ["right"] * 200)
        >>> trainer = DSMTrainer(data, config=default_dsm_config((2,), steps=5))
        >>> history = trainer.fit()
        >>> trainer.model.config.sampler_defaults["sampler"]   # vectors: MALA at σ_min
        'mala'
    """

    def __init__(self, data: ConceptData, *, model: DiffusionModel | None = None,
                 config: DSMConfig | None = None, parameterization: str = "energy",
                 heads: str = "film", views: Mapping[str, Any] | None = None,
                 backbone_options: dict | None = None,
                 device: str | torch.device | None = None) -> None:
        self.data = data
        self.config = config or default_dsm_config(data.sample_shape)
        cfg = self.config
        self.device = torch.device(device or "cpu")
        if model is None:
            modules = {f: v for f, v in dict(views or {}).items() if isinstance(v, nn.Module)}
            with torch.random.fork_rng(devices=[]):  # initial weights follow cfg.seed
                torch.manual_seed(cfg.seed)
                model = DiffusionModel(self._model_config(parameterization, backbone_options,
                                                          heads, views), view_modules=modules)
        elif views or heads != "film" or parameterization != "energy":
            given = model.config
            if (views and given.views != normalise_views(views, given.factors)) or \
                    (heads != "film" and heads != given.heads) or \
                    (parameterization != "energy" and parameterization != given.parameterization):
                raise ValueError("heads=, views= and parameterization= build a new model; "
                                 "with model= they come from the model's own config")
        if not isinstance(model, DiffusionModel):
            raise TypeError(f"DSMTrainer trains a DiffusionModel (objective='dsm'), got "
                            f"{type(model).__name__}")
        if tuple(model.config.sample_shape) != data.sample_shape:
            raise ValueError(f"the model takes samples {model.config.sample_shape}, the data "
                             f"has {data.sample_shape}")
        self.online = model.to(self.device)
        self.ema = AveragedModel(self.online, multi_avg_fn=_ema_update(cfg.ema, cfg.ema_rampup,
                                                                       cfg.ema_schedule),
                                 use_buffers=True)
        params = list(self.online.parameters())
        if cfg.freeze_base:
            if not self.online.guided:
                raise ValueError("freeze_base=True trains classifier heads over a trained base; "
                                 "the model has none (heads='classifier')")
            base = self.online.base_parameters()
            params = [p for p in params if all(p is not q for q in base)]
            for p in base:
                p.requires_grad_(False)
        self.optimizer = torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas)
        self.generator = torch.Generator(device="cpu").manual_seed(cfg.seed)
        self._choices = ConceptChoices(data, self.online.index)
        self._members = self._concept_members() if cfg.reference_batch else None
        guided = self.online.guided
        if cfg.augment is not None and (guided or len(data.sample_shape) != 3):
            raise ValueError("augment applies to the base of a film model on images; train the "
                             "base so, then add classifiers (DiffusionModel.with_classifiers)")
        if cfg.conditioning == "complete" and (guided or data.parametric):
            raise ValueError("conditioning='complete' conditions a film model on all of a "
                             "sample's factor values; classifier heads and parametric concepts "
                             "train one concept per sample (conditioning='one')")
        if cfg.augment == "channel-permutations" and data.spec.get("holdout"):
            raise ValueError(
                f"augment='channel-permutations' would show the base held-out pairs (a seen "
                f"green circle with its channels permuted is a red circle), and the data holds "
                f"out {len(data.spec['holdout'])} (shape, colour) pairs; train without augment, "
                f"or with holdout='none'")
        self._factors = list(self.online.config.factors) if guided else []
        self._local = list(self.online.config.parametric) if guided else []
        missing = [f for f in self._factors if f not in data.labels] + \
            [n for n in self._local if n not in data.parametric]
        if missing:
            raise ValueError(f"classifier heads need labels of every concept; the data has "
                             f"none for {missing}")
        self._labels = torch.stack([data.labels[f] for f in self._factors], 1) \
            if self._factors else torch.zeros(len(data), 0, dtype=torch.long)       # [N, F]
        self.step = 0
        self.rank = 0
        self.history: list[dict[str, float]] = []

    @property
    def model(self) -> DiffusionModel:
        """The EMA-averaged model: the one to sample from, save and ship."""
        return self.ema.module

    def _model_config(self, parameterization: str, backbone_options, heads: str = "film",
                      views=None) -> ModelConfig:
        data, cfg = self.data, self.config
        image = len(data.sample_shape) == 3
        options = dict(backbone_options or {})
        embedding_dim = int(options.pop("embedding_dim", 64))
        options.setdefault("channels" if image else "hidden",
                           (16, 32, 64) if image else (128, 128, 128))
        noise = noise_statistics(data.x, cfg, data.bounds)
        parametric = {name: int(args.shape[2]) for name, (args, _) in data.parametric.items()}
        from ..sampling import karras_sigmas
        levels = karras_sigmas(cfg.sampling_levels, noise["sigma_min"], noise["sigma_max"],
                               cfg.rho)
        # images compose as conditional diffusion does (guidance); vectors by the product of
        # experts, whose OR and NOT are the densities' own (design §4)
        composition = {"semantics": "guidance", "guidance_scale": 1.0} if image else \
            {"semantics": "product"}
        if heads == "classifier":  # exact AND/OR/NOT from the classifiers' probabilities
            composition = {"semantics": "logic", "guidance_scale": 1.0}
        views = {f: view_name(v) for f, v in dict(views or {}).items()}
        return ModelConfig(sample_shape=data.sample_shape, factors=data.factors,
                           parametric=parametric, heads=heads, views=views,
                           embedding_dim=embedding_dim,
                           backbone="unet" if image else "mlp", backbone_options=options,
                           bounds=data.bounds, objective="dsm",
                           parameterization=parameterization, noise=noise,
                           sampler_defaults=_sampler_defaults(image, parameterization, levels),
                           composition=composition)

    def _concept_members(self) -> dict[int, Tensor]:
        """Head index → the data rows its concept holds for (``-1``, the base: every row)."""
        if self.data.parametric:
            raise ValueError("reference_batch (the stable target field) needs concepts without "
                             "arguments: a parametric concept's references would need its "
                             "arguments too; use reference_batch=0")
        heads = self._choices.heads                                       # [N, C]
        members = {-1: torch.arange(len(self.data))}
        for h in range(len(self.online.head_names)):
            members[h] = (heads == h).any(1).nonzero()[:, 0]
        return members

    # --- one iteration -----------------------------------------------------------------------
    def loss(self, x: Tensor, head: Tensor, args: Tensor | None, sigma: Tensor,
             noise: Tensor, target: Tensor | None = None) -> Tensor:
        """The EDM-weighted denoising loss of one batch (module docstring); ``target`` replaces
        the clean ``x`` as the regression target (the stable target field)."""
        model = self.online
        if head.dim() == 2:  # complete conditioning: no concept kept → the base row
            base = (head < 0).all(1)
            head = head.clone()
            head[:, 0] = torch.where(base, len(model.head_names), head[:, 0])
            rows = head
        else:
            rows = torch.where(head < 0, len(model.head_names), head)
        denoised = model.denoise_for(x + _view(sigma, x) * noise, rows, args, sigma,
                                     create_graph=True)
        sd = model.sigma_data
        weight = (sigma.square() + sd ** 2) / (sigma * sd).square()                # [B]
        goal = x if target is None else target
        return (weight * (denoised - goal).square().flatten(1).mean(1)).mean()

    def guided_loss(self, x: Tensor, labels: Tensor, sigma: Tensor, noise: Tensor,
                    points: dict | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """The loss of a model with classifier heads (module docstring): the base's denoising
        loss, plus per factor the cross-entropy of its known labels (``labels[B, F]``, ``-1``
        unknown) and the denoising loss of its conditional denoiser. Returns the total and its
        parts (detached)."""
        model, cfg = self.online, self.config
        noisy = x + _view(sigma, x) * noise
        rows = torch.full((len(x),), model._base_row, device=x.device)
        sd = model.sigma_data
        weight = (sigma.square() + sd ** 2) / (sigma * sd).square()                # [B]
        if cfg.freeze_base:
            with torch.no_grad():
                denoised = model.denoise_for(noisy, rows, None, sigma)
            base = x.new_zeros(())
        else:
            denoised = model.denoise_for(noisy, rows, None, sigma, create_graph=True)
            base = (weight * (denoised - x).square().flatten(1).mean(1)).mean()
        xg = noisy.detach().requires_grad_(True)
        logits = model.factor_logits(xg, self._factors, sigma=sigma) if self._factors else {}
        ce = guide = x.new_zeros(())
        anchor = denoised.detach()
        # (log-probability of the true label [B], the samples it trains [B], the samples
        # whose conditional denoiser it trains [B]) per classifier
        terms = []
        for j, f in enumerate(self._factors):
            y = labels[:, j]
            known = y >= 0                                                        # [B]
            log_p = torch.log_softmax(logits[f], 1).gather(1, y.clamp(min=0)[:, None])[:, 0]
            terms.append((torch.where(known, log_p, 0.0), known, known))
        for name, (point, holds) in (points or {}).items():
            logit = model.local_logits(xg, name, point, sigma=sigma)              # [B]
            log_p = torch.where(holds, nn.functional.logsigmoid(logit),
                                nn.functional.logsigmoid(-logit))
            terms.append((log_p, torch.ones_like(holds), holds))  # guide where it holds
        for log_p, known, positive in terms:
            ce = ce - log_p.sum() / known.sum().clamp(min=1)
            if cfg.guidance_weight > 0:
                masked = torch.where(positive, log_p, 0.0)
                (grad,) = torch.autograd.grad(masked.sum(), xg, create_graph=True)
                d_y = anchor + _view(sigma.square(), x) * grad                  # [B, ...]
                err = weight * (d_y - x).square().flatten(1).mean(1)              # [B]
                guide = guide + (err * positive).sum() / positive.sum().clamp(min=1)
        total = base + cfg.classifier_weight * ce + cfg.guidance_weight * guide
        return total, {"denoising loss": base.detach(), "cross-entropy": ce.detach(),
                       "guidance loss": guide.detach()}

    def _query_points(self, data: ConceptData, name: str, idx: Tensor,
                      g: torch.Generator) -> tuple[Tensor, Tensor]:
        """A query point per sample for the window head ``name`` and whether the concept holds
        there (an object's point within the head's radius): half from the sample's own points
        moved by up to twice the radius (positives and near misses), half uniform in
        ``[0, 1]²``."""
        from ..data.scenes import objects_near

        args, mask = data.parametric[name]
        args, mask = args[idx], mask[idx]                                 # [B, M, 2], [B, M]
        radius = self.online.local_heads[name].radius
        b = len(idx)
        pick = torch.rand(mask.shape, generator=g).masked_fill(~mask, -1.0).argmax(1)
        own = args[torch.arange(b), pick]                                 # [B, 2]
        angle = 2 * math.pi * torch.rand(b, generator=g)
        r = 2 * radius * torch.rand(b, generator=g).sqrt()
        near = own + r[:, None] * torch.stack([angle.cos(), angle.sin()], 1)
        uniform = torch.rand(b, 2, generator=g)
        point = torch.where((torch.rand(b, generator=g) < 0.5)[:, None], near, uniform)
        point = point.clamp(0.0, 1.0)
        return point, objects_near(args, mask, point, radius)

    def _stable_targets(self, x: Tensor, head: Tensor, sigma: Tensor, noise: Tensor,
                        g: torch.Generator) -> Tensor:
        """``E[x | x̃, c]`` per sample, self-normalised over the sample and ``reference_batch``
        data of its concept (config docstring)."""
        data, r = self.data, self.config.reference_batch
        noisy = x + _view(sigma, x) * noise                               # [B, ...]
        target = torch.empty_like(x)
        for h in head.unique().tolist():
            pool = self._members[h]
            refs = data.x[pool[torch.randint(len(pool), (r,), generator=g)]]  # [R, ...]
            rows = (head == h).nonzero()[:, 0]
            own = -0.5 * noise[rows].flatten(1).square().sum(1, keepdim=True)  # [b, 1]
            d2 = torch.cdist(noisy[rows].flatten(1).double(), refs.flatten(1).double()).square()
            logits = torch.cat([own.double(), -d2 / (2 * _view(sigma[rows], d2).double() ** 2)],
                               dim=1)                                     # [b, 1 + R]
            w = torch.softmax(logits, dim=1).to(x.dtype)
            target[rows] = (w[:, :1] * x[rows].flatten(1) + w[:, 1:] @ refs.flatten(1)
                            ).reshape(x[rows].shape)
        return target

    def _batch(self) -> tuple:
        cfg, data, g = self.config, self.data, self.generator
        choices, labels = self._choices, self._labels
        if data.stream is not None:  # fresh renders, seeded by the step (exact on resume)
            data = data.batch(cfg.batch_size, self.step, self.rank)
            choices = ConceptChoices(data, self.online.index)
            labels = torch.stack([data.labels[f] for f in self._factors], 1) \
                if self._factors else torch.zeros(len(data), 0, dtype=torch.long)
            idx = torch.arange(len(data))
        else:
            idx = torch.randint(len(data), (cfg.batch_size,), generator=g)
        if cfg.conditioning == "complete":
            head, args = self._complete(data, idx, g), None                   # [B, F]
        else:
            head, args = choices.draw(idx, g, base_fraction=cfg.base_fraction)
        shift = math.log(self.online.sigma_data / 0.5)
        sigma = torch.exp(cfg.p_mean + shift + cfg.p_std * torch.randn(len(idx), generator=g))
        sigma = sigma.clamp(min=self.online.sigma_min)  # the model's own floor (and the STF's)
        noise = torch.randn((len(idx), *data.sample_shape), generator=g)
        x = data.x[idx]
        if cfg.augment == "channel-permutations":  # the base's samples, channels permuted
            perm = torch.rand(len(idx), x.shape[1], generator=g).argsort(1)   # [B, C]
            permuted = x.gather(1, perm[:, :, None, None].expand_as(x))
            x = torch.where(_view(head < 0, x), permuted, x)
        target = None
        if self._members is not None:
            target = self._stable_targets(x, head, sigma, noise, g)
        to = self.device
        if self.online.guided:  # classifier heads: every factor's label, and query points
            points = {name: [t.to(to) for t in self._query_points(data, name, idx, g)]
                      for name in self._local}
            return x.to(to), labels[idx].to(to), sigma.to(to), noise.to(to), points
        return (x.to(to), head.to(to), None if args is None else args.to(to),
                sigma.to(to), noise.to(to), None if target is None else target.to(to))

    def _complete(self, data: ConceptData, idx: Tensor, g: torch.Generator) -> Tensor:
        """Head rows ``[B, F]`` of every factor value of the samples ``idx``, each kept with
        probability ``1 − drop_rate``, none with probability ``base_fraction`` (``-1``: dropped
        or unknown; a row of ``-1`` is the base)."""
        index = self.online.index
        columns = [torch.where(data.labels[f][idx] >= 0,
                               index[f"{f}={data.factors[f][0]}"] + data.labels[f][idx], -1)
                   for f in data.factors]
        rows = torch.stack(columns, 1)                                    # [B, F]
        keep = torch.rand(rows.shape, generator=g) >= self.config.drop_rate
        keep &= (torch.rand(len(idx), generator=g) >= self.config.base_fraction)[:, None]
        return torch.where(keep, rows, -1)

    def train_step(self) -> dict[str, float]:
        """One iteration; returns its metrics (floats)."""
        cfg = self.config
        self.online.train()
        parts: dict[str, Tensor] = {}
        if self.online.guided:
            loss, parts = self.guided_loss(*self._batch())
        else:
            loss = self.loss(*self._batch())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(
            [p for group in self.optimizer.param_groups for p in group["params"]], cfg.grad_clip)
        value = float(loss.detach())
        if not (math.isfinite(value) and value < cfg.max_loss and torch.isfinite(grad_norm)):
            raise TrainingDiverged(
                f"denoising score matching diverged at step {self.step + 1}: loss {value:.4g} "
                f"(limit {cfg.max_loss:g}), gradient norm {float(grad_norm):.4g}. The weights "
                f"were not updated; lower the learning rate (lr={cfg.lr:g}).")
        self.optimizer.step()
        self.ema.update_parameters(self.online)
        self.step += 1
        values = torch.stack(list(parts.values())).tolist() if parts else []  # one host sync
        return {"step": self.step, "loss": value, "grad norm": float(grad_norm),
                **dict(zip(parts, values))}

    def fit(self, steps: int | None = None, *, progress: bool = False,
            callback: Callable[["DSMTrainer", dict], None] | None = None) -> list[dict]:
        """Run ``steps`` iterations (default: up to ``config.steps``); returns the history of
        logged metrics (the loss averaged since the last log). Raises
        :class:`TrainingDiverged` on a non-finite or exploding loss."""
        cfg = self.config
        total = cfg.steps - self.step if steps is None else int(steps)
        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=total, desc="training (dsm)", unit="it")
        last = self.history[-1] if self.history else {}
        start = time.perf_counter() - last.get("seconds", 0.0)
        cpu_start = time.process_time() - last.get("cpu seconds", 0.0)
        sums: dict[str, float] = {}
        count = 0
        try:
            for _ in range(total):
                metrics = self.train_step()
                count += 1
                for key in metrics.keys() - {"step", "grad norm"}:
                    sums[key] = sums.get(key, 0.0) + metrics[key]
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    metrics.update({k: v / count for k, v in sums.items()})  # since the last log
                    sums.clear()
                    count = 0
                    metrics["seconds"] = time.perf_counter() - start
                    metrics["cpu seconds"] = time.process_time() - cpu_start
                    self.history.append(metrics)
                    if callback is not None:
                        callback(self, metrics)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix({"loss": f"{metrics['loss']:.3g}"}, refresh=False)
        finally:
            if bar is not None:
                bar.close()
        self.model.eval()
        return self.history

    # --- checkpoints --------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        """What a checkpoint records besides tensors (JSON)."""
        return {"objective": "dsm", "train_config": asdict(self.config), "step": self.step,
                "history": self.history, "world_size": 1,
                "data": {"name": self.data.name, "n": len(self.data),
                         "factors": self.data.factors,
                         "parametric": sorted(self.data.parametric), **self.data.spec}}

    def save(self, run_dir, *, keep: int | None = 3):
        """Write a checkpoint: the EMA model as *the* model (what ``conceptalg.load`` returns),
        the online weights, optimiser and every RNG state for an exact resume."""
        from .checkpoint import rng_state_tensors, save_checkpoint

        tensors = {_ONLINE + k: v for k, v in self.online.state_dict().items()}
        tensors["ema.n_averaged"] = self.ema.n_averaged.detach().clone()
        tensors["generator"] = self.generator.get_state()
        tensors.update(rng_state_tensors())
        return save_checkpoint(run_dir, self.step, model=self.model, optimizer=self.optimizer,
                               tensors=tensors, metadata=self.metadata(), keep=keep)

    @classmethod
    def resume(cls, path, data: ConceptData, *, device=None, steps: int | None = None):
        """A trainer continuing from a checkpoint written by :meth:`save` (bitwise on CPU)."""
        from ..errors import CheckpointError
        from .checkpoint import load_checkpoint, restore_rng_state

        ckpt = load_checkpoint(path, map_location=device or "cpu")
        if ckpt.metadata.get("objective") != "dsm":
            raise CheckpointError(f"{ckpt.path}: was not written by denoising score matching "
                                  f"(objective {ckpt.metadata.get('objective', 'cd')!r}); "
                                  f"resume it with its own objective")
        settings = dict(ckpt.metadata["train_config"])
        if steps is not None:
            settings["steps"] = steps
        online = copy.deepcopy(ckpt.model)
        online.load_state_dict({k[len(_ONLINE):]: v for k, v in ckpt.tensors.items()
                                if k.startswith(_ONLINE)})
        trainer = cls(data, model=online, config=DSMConfig(**settings), device=device)
        trainer.ema.module.load_state_dict(ckpt.model.state_dict())
        trainer.ema.n_averaged.copy_(ckpt.tensors["ema.n_averaged"])
        ckpt.load_optimizer_state(trainer.optimizer)
        trainer.generator.set_state(ckpt.tensors["generator"].cpu())
        restore_rng_state(ckpt.tensors)
        trainer.step = ckpt.step
        trainer.history = list(ckpt.metadata.get("history", []))
        return trainer


def _sampler_defaults(image: bool, parameterization: str,
                      levels: list[float]) -> dict[str, Any]:
    """What ``sample()`` does with a new model by default: images (and score-only models, which
    have no energy values for an MH correction) run the reverse diffusion (Heun) down the
    ρ-spaced levels; vector energies — low-dimensional, often bounded laws — run MALA at the
    data level (``σ_min``) inside the data's bounds, exact for the learned energy."""
    if image or parameterization == "score":
        return {"sampler": "heun", "sigmas": [round(s, 6) for s in levels]}
    return {"sampler": "mala", "steps": 600}


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


def _view(v: Tensor, like: Tensor) -> Tensor:
    return v.reshape(v.shape[0], *([1] * (like.dim() - 1)))
