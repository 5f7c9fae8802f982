"""Contrastive-divergence training of concept heads (docs/design.md §6), the one home of the CD loop.

Each iteration draws a batch of data ``x+`` and, per sample, one concept that holds for it (a
factor value, a parametric concept with one of its argument sets, or — with probability
``base_fraction`` — the base ``E_0``). Negatives ``x−`` start from a per-concept replay buffer
(95 %) or uniform noise (5 %) and run ``langevin_steps`` of short-run Langevin dynamics
``x ← x − λ∇E(x) + σξ`` on that concept's energy (each pixel's move capped at ``move_clip``,
clamped to the data bounds). The loss (Du & Mordatch 2019; Du et al. 2020, 2021) is

    L = mean E(x+) − mean E(x−) + α (mean E(x+)² + mean E(x−)²)  [+ KL term] [+ entropy term]

with the KL term of improved CD: the last Langevin step is made differentiable, the chain's
end point is scored by the energy with frozen parameters, so its gradient reaches θ only
through that step. The entropy term pushes negatives away from their nearest neighbours in the
buffer. Adam with β1 = 0 and parameter-gradient clipping. Classifier heads (JEM) train their
classifiers by cross-entropy and only the base ``E_0`` by CD.

The dynamics define the energies' temperature ``T = σ²/(2λ)``; the trained model records it so
that composed energies are exposed at ``T = 1`` (docs/design.md §4). The hyper-parameters are a
:class:`TrainConfig` (:mod:`.cd_config`); a resumed run with another number of processes
re-deals the saved buffers (:func:`.distributed.redeal`).

Under ``torchrun`` (an initialised process group, :mod:`.distributed`) every rank runs this
loop on its own batch of ``batch_size`` (global batch ``batch_size × world_size``) with its own
generator, replay buffers and chains; the loss's forward goes through DistributedDataParallel,
which averages the gradients, while the chains call the bare module (gradients w.r.t. ``x``
only, nothing for DDP to reduce). Logged metrics are averages over the ranks.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor

from ..errors import TrainingDiverged
from ..models.model import ConceptModel, ModelConfig
from ..models.views import view_name
from ..sampling.base import Bounds
from ..sampling.buffer import ReplayBuffer
from ..sampling.langevin import Langevin
from .. import distributed as _dist
from .cd_config import TrainConfig, default_train_config
from .conditioning import ConceptChoices
from .data import ConceptData
from .run import TrainingRun

__all__ = ["TrainConfig", "Trainer", "TrainingDiverged", "default_train_config"]


@dataclass
class _Batch:
    x: Tensor           # [B, *shape] positives (with data noise)
    head: Tensor        # [B] head index, -1 = base
    args: Tensor | None  # [B, n] parametric arguments (zeros where unused)
    labels: dict[str, Tensor]  # factor -> [B] value index (-1 unknown), for classifier heads


class Trainer(TrainingRun):
    """Trains a :class:`ConceptModel` on :class:`ConceptData` by contrastive divergence.

    In a process group (``torchrun`` + :func:`.distributed.from_environment`) it trains on
    every rank — ``distributed=None`` joins an initialised group, ``False`` ignores it, ``True``
    requires one; ``fit`` and ``save`` must then be called on every rank (rank 0 writes).
    A new model gets ``heads``, ``backbone`` (default: conv for images, MLP for vectors),
    ``backbone_options`` and ``views``: ``{factor: view}``, the view (a name of
    :data:`~conceptalg.models.views.VIEWS` or an ``nn.Module``, used as it is) that factor's
    heads read (:class:`~conceptalg.models.ModelConfig`); ``colour_blind`` names factors whose
    view is ``"colour-blind"`` (an older spelling).

    Example:
        >>> from conceptalg.training import ConceptData, Trainer, builtin_data, default_train_config
        >>> x = torch.cat([torch.randn(200, 2) - 2, torch.randn(200, 2) + 2]).clamp(-5, 5)
        >>> data = ConceptData.from_labels(x, ["left"] * 200 + ["right"] * 200,
        ...                                bounds=(-5.0, 5.0))
        >>> trainer = Trainer(data, config=default_train_config((2,), steps=20))
        >>> history = trainer.fit()
        >>> sorted(trainer.model.as_concept_library().names())
        ['concept=left', 'concept=right']
        >>> shapes = builtin_data("shapes", n=64)
        >>> trainer = Trainer(shapes, heads="classifier", backbone_options={"width": 4},
        ...                   views={"shape": "colour-blind", "color": "shape-blind"})
        >>> trainer.model.config.views
        {'shape': 'colour-blind', 'color': 'shape-blind'}
    """

    def __init__(self, data: ConceptData, *, model: ConceptModel | None = None,
                 config: TrainConfig | None = None, heads: str = "linear",
                 backbone: str | None = None, backbone_options: dict | None = None,
                 device: str | torch.device | None = None,
                 train_only: list[str] | None = None,
                 distributed: bool | None = None,
                 colour_blind: Sequence[str] = (),
                 views: Mapping[str, str | torch.nn.Module] | None = None) -> None:
        self.data = data
        self.config = config or default_train_config(data.sample_shape)
        cfg = self.config
        self._join(distributed, device)
        if model is None:
            with torch.random.fork_rng(devices=[]):  # initial weights follow cfg.seed
                torch.manual_seed(cfg.seed)
                modules = {f: v for f, v in dict(views or {}).items()
                           if isinstance(v, torch.nn.Module)}
                model = ConceptModel(self._model_config(heads, backbone, backbone_options,
                                                        colour_blind, views), modules)
        self.model = model.to(self.device)
        mc = model.config
        if tuple(mc.sample_shape) != data.sample_shape:
            raise ValueError(f"the model takes samples {mc.sample_shape}, the data has "
                             f"{data.sample_shape}")
        self._check_concepts(mc)
        mc.temperature = cfg.temperature
        mc.sampler_defaults = cfg.sampler_defaults()
        mc.bounds = data.bounds
        self.train_only = None if train_only is None else list(train_only)
        params = self._freeze_all_but(self.train_only) if train_only else list(model.parameters())
        self.optimizer = torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas)
        self.generator = torch.Generator(device="cpu").manual_seed(
            _dist.rank_seed(cfg.seed, self.rank))
        lo, hi = data.bounds if data.bounds is not None else (-3.0, 3.0)
        n_heads = len(model.head_names) + 1  # + base, stored last
        per_head = max(64, cfg.buffer_size // n_heads)
        self.buffers = [ReplayBuffer(per_head, data.sample_shape, reinit=cfg.reinit,
                                     bounds=(lo, hi), device=self.device)
                        for _ in range(n_heads)]
        self.bounds = Bounds(lo, hi) if data.bounds is not None else None
        self.kernel = Langevin(noise_scale=cfg.noise_scale,
                               grad_clip=None if cfg.move_clip is None
                               else cfg.move_clip / cfg.step_size)
        self.step = 0
        self.history: list[dict[str, float]] = []
        self._good_state = copy.deepcopy(self.model.state_dict())
        self._good_step = 0
        self._choices = ConceptChoices(data, model.index, self.train_only)
        self._energies = self.model.energies_for  # the loss's forward; DDP-wrapped when distributed
        self._ddp: torch.nn.Module | None = None

    # --- set-up ---------------------------------------------------------------------------
    def _model_config(self, heads, backbone, backbone_options, colour_blind=(),
                      views=None) -> ModelConfig:
        data = self.data
        image = len(data.sample_shape) == 3
        backbone = backbone or ("conv" if image else "mlp")
        options = dict(backbone_options or {})
        if backbone == "mlp":
            options.setdefault("hidden", (128, 128))
        parametric = {name: int(args.shape[2]) for name, (args, _) in data.parametric.items()}
        if parametric and heads == "linear":
            heads = "film"  # the only head kind that takes arguments
        return ModelConfig(sample_shape=data.sample_shape, factors=data.factors,
                           parametric=parametric, heads=heads, backbone=backbone,
                           backbone_options=options, bounds=data.bounds,
                           init_bank=self.config.init_bank, colour_blind=tuple(colour_blind),
                           views={f: view_name(v) for f, v in dict(views or {}).items()})

    def _check_concepts(self, mc: ModelConfig) -> None:
        for f, values in self.data.factors.items():
            if mc.factors.get(f) != values:
                raise ValueError(f"the model's factor {f!r} is {mc.factors.get(f)}, the data's "
                                 f"is {values}")
        for name in self.data.parametric:
            if name not in mc.parametric:
                raise ValueError(f"the model has no parametric concept {name!r}")

    def _freeze_all_but(self, names: list[str]) -> list[torch.nn.Parameter]:
        """Freeze the trunk and every head but ``names`` (a new head on a frozen trunk):
        parameters outside those heads stop requiring grad; rows of shared per-head tables
        that belong to other heads get zero gradient."""
        unknown = [n for n in names if n not in self.model.index]
        if unknown:
            raise ValueError(f"train_only names unknown heads {unknown}; the model's heads are "
                             f"{self.model.head_names} (add them first with with_concepts)")
        rows = self.model.head_rows(names)
        params = []
        for key, p in self.model.named_parameters():
            if key not in rows:
                p.requires_grad_(False)
                continue
            keep = torch.zeros(p.shape[0], dtype=torch.bool, device=p.device)
            keep[rows[key]] = True
            p.register_hook(lambda g, keep=keep: g * keep.view(-1, *([1] * (g.dim() - 1))))
            params.append(p)
        return params

    def _start_distributed(self) -> None:
        """Before the first step of a multi-process run: check that every rank has the same
        set-up (a ``ValueError`` on every rank otherwise), then wrap the loss's forward in DDP."""
        from torch.nn.parallel import DistributedDataParallel

        data = self.data
        rows = torch.linspace(0, len(data) - 1, min(len(data), 64)).long()
        digest = hashlib.sha256(data.x[rows].double().cpu().numpy().tobytes())
        for f in sorted(data.labels):
            digest.update(data.labels[f].cpu().numpy().tobytes())
        setup = {"train_config": asdict(self.config), "model": self.model.config.to_dict(),
                 "train_only": self.train_only, "step": self.step,
                 "data": {"name": data.name, "n": len(data), "sample_shape": data.sample_shape,
                          "factors": data.factors, "parametric": sorted(data.parametric),
                          "bounds": data.bounds, "fingerprint": digest.hexdigest()}}
        with _dist.guard(self.dist, "comparing the ranks' set-ups at start"):
            _dist.check_same_setup(setup, self.dist)
        mc = self.model.config
        # FiLM argument networks without parametric data never enter the loss, nor does a view's
        # trunk in a step that draws none of its heads (linear, FiLM): let DDP look for unused
        # parameters only then (every other parameter gets a gradient each step).
        unused = (mc.heads == "film" and bool(mc.parametric) and not data.parametric) or \
            (bool(mc.views) and mc.heads != "classifier")
        # Buffers (spectral-norm vectors) evolve identically on every rank: no broadcast before
        # each forward (it would edit, in place, tensors the chains' graphs may still hold).
        no_sync = "forward_sync_buffers" if "forward_sync_buffers" in \
            inspect.signature(DistributedDataParallel).parameters else "broadcast_buffers"
        with _dist.guard(self.dist, "wrapping the model in DistributedDataParallel"):
            self._ddp = DistributedDataParallel(
                _EnergiesFor(self.model), find_unused_parameters=unused,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                **{no_sync: False})
        self._energies = self._ddp

    # --- one iteration --------------------------------------------------------------------
    def _batch(self) -> _Batch:
        cfg, data, g = self.config, self.data, self.generator
        choices = self._choices
        if data.stream is not None:  # fresh renders, seeded by the step (exact on resume)
            data = data.batch(cfg.batch_size, self.step, self.rank)
            choices = ConceptChoices(data, self.model.index, self.train_only)
            idx = torch.arange(len(data))
        else:
            idx = torch.randint(len(data), (cfg.batch_size,), generator=g)
        x = data.x[idx].to(self.device)
        if cfg.data_noise > 0:
            x = x + cfg.data_noise * torch.randn(x.shape, generator=g).to(self.device)
            if self.bounds is not None:
                x = self.bounds.clamp(x)
        base = "sometimes"
        if self.model.config.heads == "classifier":
            base = "always"  # classifiers train by cross-entropy; CD trains E_0 only
        elif self.train_only:
            base = "never"  # the base head is frozen
        head, args = choices.draw(idx, g, base_fraction=cfg.base_fraction, base=base)
        args = None if args is None else args.to(self.device)
        labels = {f: lab[idx].to(self.device) for f, lab in data.labels.items()}
        return _Batch(x, head.to(self.device), args, labels)

    def _negatives(self, batch: _Batch) -> tuple[Tensor, Tensor | None]:
        """Short-run Langevin from the replay buffers; returns ``x−`` and (for the KL term)
        the differentiable last step."""
        cfg, g = self.config, self.generator
        n_heads = len(self.buffers)
        slot = torch.where(batch.head < 0, n_heads - 1, batch.head).cpu()   # [B]
        x0 = torch.empty_like(batch.x)
        for h in slot.unique().tolist():
            rows = (slot == h).nonzero()[:, 0]
            x0[rows.to(self.device)] = self.buffers[h].sample(len(rows), g)

        def energy(x):
            return self.model.energies_for(x, batch.head, batch.args)

        was_training = self.model.training
        self.model.eval()  # chains never update spectral-norm state
        try:
            kernel = self.kernel.build_kernel(energy, bounds=self.bounds)
            state = kernel.init(x0, cfg.step_size)
            noise_gen = torch.Generator(device=self.device).manual_seed(
                int(torch.randint(2 ** 62, (1,), generator=g)))
            for _ in range(cfg.langevin_steps):
                state, _ = kernel.step(noise_gen, state)
            x_neg = state.x.detach()
            x_kl = None
            if cfg.kl_weight > 0:
                # improved CD: one more step, differentiable w.r.t. θ through ∇E
                with torch.enable_grad():
                    x = x_neg.clone().requires_grad_(True)
                    (grad,) = torch.autograd.grad(energy(x).sum(), x, create_graph=True)
                    if cfg.move_clip is not None:
                        limit = cfg.move_clip / cfg.step_size
                        grad = grad.clamp(-limit, limit)
                    x_kl = x - cfg.step_size * grad
                    if self.bounds is not None:
                        x_kl = self.bounds.clamp(x_kl)
        finally:
            self.model.train(was_training)
        for h in slot.unique().tolist():
            rows = (slot == h).nonzero()[:, 0].to(self.device)
            self.buffers[h].push(x_neg[rows])
        return x_neg, x_kl

    def train_step(self) -> dict[str, float]:
        """One CD iteration; returns its metrics (floats)."""
        cfg, model = self.config, self.model
        if self.dist is not None and self._ddp is None:
            self._start_distributed()
        model.train()
        batch = self._batch()
        x_neg, x_kl = self._negatives(batch)
        b = batch.x.shape[0]
        both = torch.cat([batch.x, x_neg])
        heads = torch.cat([batch.head, batch.head])
        args = None if batch.args is None else torch.cat([batch.args, batch.args])
        energies = self._energies(both, heads, args)                     # [2B]
        e_pos, e_neg = energies[:b], energies[b:]
        cd = e_pos.mean() - e_neg.mean()
        reg = cfg.alpha * (e_pos.pow(2).mean() + e_neg.pow(2).mean())
        loss = cd + reg
        terms = {}
        if x_kl is not None:
            # the chains' end point, scored with frozen θ; the gradient reaches θ only through
            # the differentiable last step (built on the bare module: DDP reduces it all the same)
            frozen = _FrozenParameters(model)
            with frozen:
                e_kl = model.energies_for(x_kl, batch.head, batch.args)
            kl = e_kl.mean()
            if cfg.entropy_weight > 0:
                kl = kl - cfg.entropy_weight * self._entropy(x_kl, batch.head)
            loss = loss + cfg.kl_weight * kl
            terms["kl"] = kl
        if model.config.heads == "classifier":
            ce = self._cross_entropy(batch.x, batch.labels)
            loss = loss + cfg.ce_weight * ce
            terms["cross entropy"] = ce
        self.optimizer.zero_grad(set_to_none=True)
        if self.dist is None:
            loss.backward()
        else:
            with _dist.guard(self.dist, f"averaging the gradients of step {self.step + 1}"):
                loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(
            [p for p in model.parameters() if p.requires_grad], cfg.grad_clip)
        ok = bool(torch.isfinite(loss.detach())) and bool(torch.isfinite(grad_norm)) and \
            float(energies.detach().abs().max()) < cfg.max_energy
        values = {**terms, "loss": loss, "E+": e_pos.mean(), "E-": e_neg.mean(), "E+ - E-": cd}
        values = {k: v.detach() for k, v in values.items()}
        if self.dist is not None:  # every rank must take the same decision and log the same
            values, ok = self._average(values, ok)
        if not ok:
            self._diverged(values)
        if self.step % cfg.log_every == 0:  # θ_t passed the check: remember it before stepping
            self._good_state = copy.deepcopy(self.model.state_dict())
            self._good_step = self.step
        self.optimizer.step()
        self.step += 1
        metrics = {k: values[k].item() for k in terms}
        metrics.update({"step": self.step, **{k: values[k].item() for k in values
                                              if k not in terms},
                        "grad norm": grad_norm.item()})
        return metrics

    def _average(self, values: dict[str, Tensor], ok: bool) -> tuple[dict[str, Tensor], bool]:
        """Means over the ranks of ``values``, and whether every rank's step was healthy (one
        all-reduce)."""
        packed = torch.stack([*(v.double() for v in values.values()),
                              torch.tensor(0.0 if ok else 1.0, dtype=torch.float64,
                                           device=self.device)])
        with _dist.guard(self.dist, f"averaging the metrics of step {self.step + 1}"):
            _dist.dist.all_reduce(packed)
        means = packed[:-1] / self.world_size
        return dict(zip(values, means)), bool(packed[-1] == 0)

    def _cross_entropy(self, x: Tensor, labels) -> Tensor:
        logits = self.model.classifier_logits(x)
        total = x.new_zeros(())
        for f, lab in labels.items():
            if bool((lab >= 0).any()):
                total = total + torch.nn.functional.cross_entropy(logits[f], lab,
                                                                  ignore_index=-1)
            elif self.dist is not None:
                # DDP waits for a gradient of every parameter on every rank: give this
                # classifier an exact zero rather than none
                total = total + 0.0 * logits[f].sum()
        return total

    def _entropy(self, x: Tensor, head: Tensor) -> Tensor:
        """Mean log distance from each negative to its nearest buffer sample (of its head)."""
        ref = torch.cat([buf.samples[:min(len(buf), 100)] for buf in self.buffers])
        if ref.shape[0] == 0:
            return x.new_zeros(())
        d = torch.cdist(x.flatten(1), ref.flatten(1).to(x))              # [B, R]
        return torch.log(d.min(1).values + 1e-6).mean()

    def _diverged(self, values: dict[str, Tensor]) -> None:
        self.model.load_state_dict(self._good_state)
        raise TrainingDiverged(
            f"training diverged at step {self.step + 1}: loss {values['loss'].item():.4g}, mean "
            f"E+ {values['E+'].item():.4g}, mean E- {values['E-'].item():.4g} (limit |E| < "
            f"{self.config.max_energy:g}). The weights of step {self._good_step} were restored. "
            "Lower the learning rate, raise alpha (the energy penalty) or the data noise, or "
            "keep spectral norm on.")

    # --- the lifecycle's hooks (TrainingRun) ----------------------------------------------
    def _postfix(self, metrics: dict[str, float]) -> dict[str, str]:
        return {"E+": f"{metrics['E+']:.3g}", "E-": f"{metrics['E-']:.3g}"}

    def _after_fit(self) -> None:
        self._refresh_init_bank()
        self.model.eval()

    def _before_save(self) -> None:
        self._refresh_init_bank()

    def rank_state(self) -> dict[str, Tensor]:
        """This rank's replay buffers and generator (what :meth:`save` gathers)."""
        return self.state_tensors()

    def state_tensors(self) -> dict[str, Tensor]:
        """Replay buffers and the trainer's generator state, for checkpoints."""
        out = {"generator": self.generator.get_state()}
        for i, buf in enumerate(self.buffers):
            for k, v in buf.state_dict().items():
                out[f"buffer.{i}.{k}"] = v
        return out

    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        self.generator.set_state(tensors["generator"].cpu())
        for i, buf in enumerate(self.buffers):
            prefix = f"buffer.{i}."
            buf.load_state_dict({k[len(prefix):]: v for k, v in tensors.items()
                                 if k.startswith(prefix)})

    def metadata(self) -> dict[str, Any]:
        """What a checkpoint records besides tensors (JSON)."""
        return {"train_config": asdict(self.config), "step": self.step,
                "train_only": self.train_only, "history": self.history,
                "world_size": self.world_size,
                "data": {"name": self.data.name, "n": len(self.data),
                         "factors": self.data.factors,
                         "parametric": sorted(self.data.parametric), **self.data.spec}}

    def _refresh_init_bank(self) -> None:
        """Set the model's bank of start images (when it has one) to the newest samples of
        the base replay buffer, padded with uniform noise while the buffer is still short."""
        k = self.model.config.init_bank
        if not k:
            return
        rows = self.buffers[-1].state_dict()["samples"][-k:]
        if len(rows) < k:  # its own generator: saving must not change the run's random draws
            g = torch.Generator(device="cpu").manual_seed(self.step)
            lo, hi = self.data.bounds if self.data.bounds is not None else (-3.0, 3.0)
            pad = lo + (hi - lo) * torch.rand(k - len(rows), *self.data.sample_shape, generator=g)
            rows = torch.cat([pad.to(rows.device), rows])
        self.model.fill_init_bank(rows)

    @classmethod
    def resume(cls, path, data: ConceptData, *, device=None, steps: int | None = None,
               distributed: bool | None = None):
        """A trainer continuing from a checkpoint (a run directory's ``latest`` or a
        checkpoint directory) on ``data``; bitwise-exact on CPU with the same number of
        processes. ``steps`` overrides the total number of iterations recorded in the
        checkpoint. Resuming with another number of processes re-deals the saved replay
        buffers over the new ranks (it continues the run, not bitwise); every rank reads the
        checkpoint, so it must be on a file system they all see."""
        from .checkpoint import load_checkpoint, restore_rng_state

        ckpt = load_checkpoint(path, map_location=device or "cpu")
        settings = dict(ckpt.metadata["train_config"])
        if steps is not None:
            settings["steps"] = steps
        trainer = cls(data, model=ckpt.model, config=TrainConfig(**settings), device=device,
                      train_only=ckpt.metadata.get("train_only"), distributed=distributed)
        ckpt.load_optimizer_state(trainer.optimizer)
        trainer._load_rank_state(ckpt.tensors, int(ckpt.metadata.get("world_size", 1)))
        restore_rng_state(ckpt.tensors)
        trainer.step = ckpt.step
        trainer.history = list(ckpt.metadata.get("history", []))
        trainer._good_state = copy.deepcopy(trainer.model.state_dict())
        trainer._good_step = trainer.step
        return trainer


    def _load_rank_state(self, tensors: dict[str, Tensor], saved_world: int) -> None:
        """Restore this rank's buffers and generator from a checkpoint of ``saved_world`` ranks.
        With the same number of ranks each takes its own; otherwise each head's samples of all
        saved ranks are merged by age and dealt round-robin over the new ranks (a rank that did
        not exist keeps its freshly seeded generator)."""
        ranks = self.saved_ranks(tensors, saved_world)
        if saved_world == self.world_size:
            self.load_state_tensors(ranks[self.rank])
            return
        if self.rank < saved_world:
            self.generator.set_state(ranks[self.rank]["generator"].cpu())
        for i, buf in enumerate(self.buffers):
            parts = [state[f"buffer.{i}.samples"] for state in ranks]
            buf.load_state_dict({"samples": _dist.redeal(parts, self.rank, self.world_size)})



class _EnergiesFor(torch.nn.Module):
    """``model.energies_for`` as a module's ``forward``: the call DistributedDataParallel wraps
    (DDP hooks ``forward`` only)."""

    def __init__(self, model: ConceptModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, head: Tensor, args: Tensor | None = None) -> Tensor:
        return self.model.energies_for(x, head, args)


class _FrozenParameters:
    """Context: parameters do not require grad (gradients still flow through inputs)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.params = [p for p in model.parameters() if p.requires_grad]

    def __enter__(self):
        for p in self.params:
            p.requires_grad_(False)

    def __exit__(self, *exc):
        for p in self.params:
            p.requires_grad_(True)
