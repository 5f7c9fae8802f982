"""Denoising score matching of noise-conditioned concept energies (docs/design.md §6), the EDM recipe.

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
perceptually aligned: docs/references.md); the second term fits exactly what guidance uses.

Under ``torchrun`` (an initialised process group, :mod:`.distributed`) every rank draws its
own batch (streamed data: seeded by the step and the rank; a fixed set: its own generator), and
the gradients are averaged over the ranks before each optimiser step — one all-reduce of the
flattened gradients, so the step is the one a single process would take on the union of the
ranks' batches. The weights, the moving average and the optimiser state stay identical on
every rank; rank 0 writes checkpoints (with every rank's generator state), and a checkpoint
resumes on any number of processes.

No chain runs in the loop. For the energy parameterisation ``D = x − σ² ∇_x E`` is built with
``create_graph=True``, so θ is trained through the energy's gradient (docs/design.md §6;
:class:`~conceptalg.models.diffusion.DiffusionModel`). Adam; an exponential moving average of
the weights (``torch.optim.swa_utils``) is the model that samples — it is what checkpoints
store as the model, with the online weights kept beside it for an exact resume.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict
from typing import Any, Mapping

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

from .. import distributed as _dist
from .. import edm
from ..errors import TrainingDiverged
from ..models.build import build_model
from ..models.diffusion import DiffusionModel
from ..models.guided import GuidedDiffusionModel
from ..models.model import ModelConfig
from ..models.views import normalise_views, view_name
from .conditioning import ConceptChoices
from .data import ConceptData
from .run import TrainingRun
from .dsm_config import (AUGMENTATIONS, CONDITIONINGS, EMA_SCHEDULES, NORMALISATIONS,
                         DSMConfig, _ema_update, default_dsm_config, ema_decay,
                         noise_statistics)

#: the image network a new model gets (docs/extrapolation.md: at equal steps no layout drew
#: held-out pairs measurably better, and this one costs the step of the prototype's net, 0.77×
#: the older layout's); a checkpoint without these keys keeps the older layout
#: (``decoder="full"``, ``zero_init=True``, ``embedding_dim=64``, ``noise_embedding="wide"``)
IMAGE_NET = {"decoder": "light", "zero_init": False, "embedding_dim": 128,
             "noise_embedding": "positional"}

__all__ = ["DSMConfig", "DSMTrainer", "IMAGE_NET", "default_dsm_config", "noise_statistics",
           "ema_decay", "AUGMENTATIONS", "CONDITIONINGS", "EMA_SCHEDULES", "NORMALISATIONS"]

_ONLINE = "online."


class DSMTrainer(TrainingRun):
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
                 device: str | torch.device | None = None,
                 distributed: bool | None = None) -> None:
        self.data = data
        self.config = config or default_dsm_config(data.sample_shape)
        cfg = self.config
        self._join(distributed, device)
        if model is None:
            modules = {f: v for f, v in dict(views or {}).items() if isinstance(v, nn.Module)}
            with torch.random.fork_rng(devices=[]):  # initial weights follow cfg.seed
                torch.manual_seed(cfg.seed)
                model = build_model(self._model_config(parameterization, backbone_options,
                                                       heads, views), view_modules=modules)
        elif views or heads != "film" or parameterization != "energy":
            given = model.config
            factors = {**given.factors, **given.object_factors}
            if (views and given.views != normalise_views(views, factors)) or \
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
        self.generator = torch.Generator(device="cpu").manual_seed(
            _dist.rank_seed(cfg.seed, self.rank))
        self._choices = ConceptChoices(data, self.online.index)
        self._members = self._concept_members() if cfg.reference_batch else None
        guided = self.online.guided
        if cfg.augment is not None and (guided or len(data.sample_shape) != 3):
            raise ValueError("augment applies to the base of a film model on images; train the "
                             "base so, then add classifiers (GuidedDiffusionModel.over_base)")
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
        self._objects = list(self.online.config.object_factors) if guided else []
        missing = [f for f in self._factors if f not in data.labels] + \
            [n for n in self._local if n not in data.parametric] + \
            [f for f in self._objects if f not in data.object_labels]
        if missing:
            raise ValueError(f"classifier heads need labels of every concept; the data has "
                             f"none for {missing}")
        self._labels = self._label_matrix(data)                                  # [N, F]
        self.step = 0
        self.history: list[dict[str, float]] = []
        self._setup_checked = self.dist is None

    @property
    def model(self) -> DiffusionModel | GuidedDiffusionModel:
        """The EMA-averaged model: the one to sample from, save and ship."""
        return self.ema.module

    def _model_config(self, parameterization: str, backbone_options, heads: str = "film",
                      views=None) -> ModelConfig:
        data, cfg = self.data, self.config
        image = len(data.sample_shape) == 3
        options = dict(backbone_options or {})
        embedding_dim = int(options.pop("embedding_dim", IMAGE_NET["embedding_dim"] if image
                                        else 64))
        options.setdefault("channels" if image else "hidden",
                           (16, 32, 64) if image else (128, 128, 128))
        if image:  # written into the config: a model saved without them is the older layout
            for key, value in IMAGE_NET.items():
                if key != "embedding_dim":
                    options.setdefault(key, value)
        noise = noise_statistics(data.x, cfg, data.bounds)
        parametric = {name: int(args.shape[2]) for name, (args, _) in data.parametric.items()}
        levels = edm.karras_sigmas(cfg.sampling_levels, noise["sigma_min"], noise["sigma_max"],
                               cfg.rho)
        # images compose as conditional diffusion does (guidance); vectors by the product of
        # experts, whose OR and NOT are the densities' own (docs/design.md §4)
        composition = {"semantics": "guidance", "guidance_scale": 1.0} if image else \
            {"semantics": "product"}
        if heads == "classifier":  # exact AND/OR/NOT from the classifiers' probabilities
            composition = {"semantics": "logic", "guidance_scale": 1.0}
        views = {f: view_name(v) for f, v in dict(views or {}).items()}
        objects = data.object_factors if heads == "classifier" else {}
        return ModelConfig(sample_shape=data.sample_shape, factors=data.factors,
                           parametric=parametric, object_factors=objects, heads=heads,
                           views=views,
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
        weight = edm.loss_weight(sigma, model.sigma_data)                        # [B]
        goal = x if target is None else target
        return (weight * (denoised - goal).square().flatten(1).mean(1)).mean()

    def guided_loss(self, x: Tensor, labels: Tensor, sigma: Tensor, noise: Tensor,
                    points: dict | None = None,
                    objects: dict | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """The loss of a model with classifier heads (module docstring): the base's denoising
        loss, plus per factor the cross-entropy of its known labels (``labels[B, F]``, ``-1``
        unknown) and the denoising loss of its conditional denoiser; the same for each window
        head at its query ``points`` and, for each place's object heads, at the centre of one
        object per sample (``objects[place] = (point[B, 2], labels[B, F_obj])``). Returns the
        total and its parts (detached)."""
        model, cfg = self.online, self.config
        noisy = x + _view(sigma, x) * noise
        rows = torch.full((len(x),), model._base_row, device=x.device)
        weight = edm.loss_weight(sigma, model.sigma_data)                        # [B]
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
        for place, (point, object_labels) in (objects or {}).items():
            logits = model.object_logits(xg, place, point, self._objects, sigma=sigma)
            for j, f in enumerate(self._objects):
                y = object_labels[:, j]
                known = y >= 0
                log_p = torch.log_softmax(logits[f], 1).gather(1, y.clamp(min=0)[:, None])[:, 0]
                terms.append((torch.where(known, log_p, 0.0), known, known))
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

    def _object_points(self, data: ConceptData, name: str, idx: Tensor,
                       g: torch.Generator) -> tuple[Tensor, Tensor]:
        """One object per sample for the object heads of place ``name``: its centre moved by
        up to a quarter of the window head's radius (a sampled object is rarely exactly at its
        point), and its labels ``[B, F_obj]``."""
        args, mask = data.parametric[name]
        args, mask = args[idx], mask[idx]                                 # [B, M, 2], [B, M]
        b = len(idx)
        pick = torch.rand(mask.shape, generator=g).masked_fill(~mask, -1.0).argmax(1)
        rows = torch.arange(b)
        shift = self.online.local_heads[name].radius / 4
        point = args[rows, pick] + shift * (2 * torch.rand(b, 2, generator=g) - 1)
        labels = torch.stack([data.object_labels[f][idx][rows, pick] for f in self._objects], 1)
        return point.clamp(0.0, 1.0), labels

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
            labels = self._label_matrix(data)
            idx = torch.arange(len(data))
        else:
            idx = torch.randint(len(data), (cfg.batch_size,), generator=g)
        if cfg.conditioning == "complete":
            head, args = self._complete(data, idx, g), None                   # [B, F]
        else:
            head, args = choices.draw(idx, g, base_fraction=cfg.base_fraction)
        sigma = edm.training_sigmas(len(idx), g, self.online.sigma_data, p_mean=cfg.p_mean,
                                    p_std=cfg.p_std)
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
            objects = {name: [t.to(to) for t in self._object_points(data, name, idx, g)]
                       for name in self._local if self._objects}
            return x.to(to), labels[idx].to(to), sigma.to(to), noise.to(to), points, objects
        return (x.to(to), head.to(to), None if args is None else args.to(to),
                sigma.to(to), noise.to(to), None if target is None else target.to(to))

    def _label_matrix(self, data: ConceptData) -> Tensor:
        """The classifier heads' labels ``[N, F]`` (one column per factor, ``-1`` unknown)."""
        if not self._factors:
            return torch.zeros(len(data), 0, dtype=torch.long)
        return torch.stack([data.labels[f] for f in self._factors], 1)

    def _complete(self, data: ConceptData, idx: Tensor, g: torch.Generator) -> Tensor:
        """Head rows ``[B, F]`` of every factor value of the samples ``idx``, each kept with
        probability ``1 − drop_rate``, none with probability ``base_fraction`` (``-1``: dropped
        or unknown; a row of ``-1`` is the base)."""
        index = self.online.index
        columns = [torch.where(data.labels[f][idx] >= 0,
                               index[f"{f}={data.factors[f][0]}"] + data.labels[f][idx], -1)
                   for f in data.factors]
        rows = torch.stack(columns, 1)                                    # [B, F]
        self._full_rows = rows          # every factor's row: what CoInD's penalty compares
        keep = torch.rand(rows.shape, generator=g) >= self.config.drop_rate
        keep &= (torch.rand(len(idx), generator=g) >= self.config.base_fraction)[:, None]
        return torch.where(keep, rows, -1)

    def independence_loss(self, x: Tensor, full: Tensor, sigma: Tensor, noise: Tensor,
                          g: torch.Generator) -> Tensor:
        """CoInD's penalty on the first ``independence_batch`` samples (config docstring):
        ``λ(σ) ‖D(c_i) + D(c_j) − D(∅) − D(c_i, c_j)‖²`` for a random pair of factors ``(i, j)``
        of each sample, all four at the sample's own noisy input and level."""
        model, b = self.online, min(self.config.independence_batch, len(x))
        full = full[:b].to(x.device)                                      # [b, F]
        pick = torch.rand(full.shape, generator=g).argsort(1)[:, :2].to(x.device)
        ri, rj = full.gather(1, pick[:, :1]), full.gather(1, pick[:, 1:])   # [b, 1] each
        none = torch.full_like(ri, -1)
        base = torch.full_like(ri, len(model.head_names))
        rows = torch.cat([torch.cat(pair, 1) for pair in
                          ((ri, rj), (ri, none), (none, rj), (base, none))])   # [4b, 2]
        noisy = (x[:b] + _view(sigma[:b], x) * noise[:b]).repeat(4, 1, 1, 1)
        d = model.denoise_for(noisy, rows, None, sigma[:b].repeat(4), create_graph=True)
        d_ij, d_i, d_j, d_0 = d.chunk(4)
        gap = (d_i + d_j - d_0 - d_ij).square().flatten(1).mean(1)        # [b]
        return (edm.loss_weight(sigma[:b], model.sigma_data) * gap).mean()

    def train_step(self) -> dict[str, float]:
        """One iteration; returns its metrics (floats)."""
        cfg = self.config
        self.online.train()
        parts: dict[str, Tensor] = {}
        if self.online.guided:
            loss, parts = self.guided_loss(*self._batch())
        else:
            batch = self._batch()
            loss = self.loss(*batch)
            if cfg.independence_weight > 0:
                x, _, _, sigma, noise, _ = batch
                penalty = self.independence_loss(x, self._full_rows, sigma, noise,
                                                  self.generator)
                parts = {"denoising loss": loss.detach(), "independence": penalty.detach()}
                loss = loss + cfg.independence_weight * penalty
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        if self.dist is not None:
            loss, parts = self._average_gradients(params, loss.detach(), parts)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
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

    def _average_gradients(self, params: list[nn.Parameter], loss: Tensor,
                           parts: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Average the gradients, the loss and its logged parts over the ranks (one
        all-reduce; a parameter without a gradient counts as zero on that rank). The first
        call checks that every rank has the same set-up."""
        if not self._setup_checked:
            self._check_setup()
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        dtype = grads[0].dtype
        has = torch.tensor([float(p.grad is not None) for p in params], dtype=dtype,
                           device=grads[0].device)                         # [P]
        flat = torch.cat([g.reshape(-1) for g in grads] + [loss.reshape(1).to(dtype)] +
                         [v.reshape(1).to(dtype) for v in parts.values()] + [has])
        with _dist.guard(self.dist, f"averaging the gradients of step {self.step + 1}"):
            _dist.dist.all_reduce(flat)
        used = flat[-len(params):] > 0   # a gradient on some rank (else none, as alone)
        flat = flat[:-len(params)] / self.world_size
        offset = 0
        for p, g, u in zip(params, grads, used.tolist()):
            n = g.numel()
            p.grad = flat[offset:offset + n].view_as(p).clone() if u else None
            offset += n
        return flat[offset], dict(zip(parts, flat[offset + 1:]))

    def _check_setup(self) -> None:
        setup = {"train_config": asdict(self.config), "model": self.online.config.to_dict(),
                 "step": self.step, "data": self.metadata()["data"]}
        with _dist.guard(self.dist, "comparing the ranks' set-ups at start"):
            _dist.check_same_setup(setup, self.dist)
        self._setup_checked = True

    # --- the lifecycle's hooks (TrainingRun) ----------------------------------------------
    progress_name = "training (dsm)"
    averaged_logs = True

    def _after_fit(self) -> None:
        self.model.eval()

    def rank_state(self) -> dict[str, Tensor]:
        """This rank's generator (what :meth:`save` gathers; the weights are alike on every
        rank)."""
        return {"generator": self.generator.get_state()}

    def shared_state(self) -> dict[str, Tensor]:
        """The online weights and the average's count beside the EMA model (an exact
        resume)."""
        tensors = {_ONLINE + k: v for k, v in self.online.state_dict().items()}
        tensors["ema.n_averaged"] = self.ema.n_averaged.detach().clone()
        return tensors

    # --- checkpoints --------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        """What a checkpoint records besides tensors (JSON)."""
        return {"objective": "dsm", "train_config": asdict(self.config), "step": self.step,
                "history": self.history, "world_size": self.world_size,
                "data": {"name": self.data.name, "n": len(self.data),
                         "factors": self.data.factors,
                         "parametric": sorted(self.data.parametric), **self.data.spec}}

    @classmethod
    def resume(cls, path, data: ConceptData, *, device=None, steps: int | None = None,
               distributed: bool | None = None):
        """A trainer continuing from a checkpoint written by :meth:`save`: bitwise on CPU with
        the same number of processes; with another number the weights, average and optimiser
        continue exactly and each rank that existed takes its own generator back (a new rank
        starts its own seeded one)."""
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
        trainer = cls(data, model=online, config=DSMConfig(**settings), device=device,
                      distributed=distributed)
        trainer.ema.module.load_state_dict(ckpt.model.state_dict())
        trainer.ema.n_averaged.copy_(ckpt.tensors["ema.n_averaged"])
        ckpt.load_optimizer_state(trainer.optimizer)
        key = "generator" if trainer.rank == 0 else f"rank.{trainer.rank}.generator"
        if key in ckpt.tensors:  # a rank the saved run did not have keeps its fresh seed
            trainer.generator.set_state(ckpt.tensors[key].cpu())
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


def _view(v: Tensor, like: Tensor) -> Tensor:
    return v.reshape(v.shape[0], *([1] * (like.dim() - 1)))
