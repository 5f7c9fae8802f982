"""`ConceptModel`: a backbone plus concept heads, usable directly as a concept library.

Three kinds of heads (docs/design.md §6), all computing ``[B, K]`` outputs for K requested heads in one
call (the batching protocol of :class:`conceptalg.library.ConceptEnergyModel`):

- ``linear``: one linear energy head per concept on a shared trunk,
  ``E_k(x) = w_k · h(x) + b_k``. The trunk runs once for any number of heads.
- ``film``: concept-embedding conditioning. Each concept (and each parametric concept's
  arguments, through Fourier features and an MLP) has an embedding that modulates every block
  of the trunk (FiLM, Du et al. 2020); ``E(x | c) = w · h(x; c) + b``. One trunk pass per
  requested head, but the only kind that handles ``at(x, y)``.
- ``classifier``: an unconditional base EBM ``E_0(x) = w_0 · h(x) + b_0`` plus a softmax
  classifier per factor; head ``factor=value`` outputs ``log p(value | x)`` and
  ``E_c = E_0 − log p(c | x)`` (JEM). Probabilistic, so ``semantics="logic"`` works.

Every model also has a base head ``E_0`` (named ``BASE``): for linear and FiLM heads an
unconditional head trained on all data, so negations have an anchor.

Heads of a factor with a declared view (``ModelConfig.views``, :mod:`.views`) read that view's
trunk instead of the shared one: e.g. colour-blind shape heads cannot learn which colours their
values came with in training, which is what lets them recognise unseen (shape, colour) pairs
(``bench/shortcut.py``). The base head and parametric concepts read the shared trunk.
The configuration is a dataclass saved with checkpoints; ``ConceptModel(config)`` rebuilds the
same network.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any, Sequence

import torch
from torch import nn

from .backbones import _film, build_backbone, film_layers
from .config import (BASE, COMPOSITION_KEYS, HEAD_KINDS, OBJECTIVES,  # noqa: F401 (re-exported)
                     PARAMETERIZATIONS, ModelConfig)
from .view_trunks import build_view_trunks, group_by_view, trunk_key, ungroup

__all__ = ["ModelConfig", "ConceptModel", "ConfigHints", "BASE", "HEAD_KINDS", "OBJECTIVES",
           "PARAMETERIZATIONS"]


def fourier_features(t: torch.Tensor, bands: int = 6) -> torch.Tensor:
    """``[B, n] -> [B, n·2·bands]`` sin/cos features at frequencies 2^k·π (how parametric
    concepts' arguments enter a network).

    Example:
        >>> fourier_features(torch.zeros(3, 2)).shape
        torch.Size([3, 24])
    """
    freqs = (2.0 ** torch.arange(bands, device=t.device, dtype=t.dtype)) * math.pi
    angles = t.unsqueeze(-1) * freqs  # [B, n, bands]
    return torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(1)


_fourier = fourier_features


class ConfigHints:
    """What every trained model reads from its :class:`ModelConfig`: the sampling hints
    (``sample_shape``, ``bounds``, ``sampler_defaults``) for :func:`conceptalg.sample`, and where
    a classifier head's value sits among its factor's values."""

    config: ModelConfig

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return self.config.sample_shape

    @property
    def bounds(self) -> tuple[float, float] | None:
        return self.config.bounds

    @property
    def sampler_defaults(self) -> dict[str, Any]:
        return dict(self.config.sampler_defaults)

    def _value(self, name: str) -> tuple[str, int]:
        """``(factor, index of the value)`` of the classifier head ``factor=value``."""
        factor, sep, value = name.partition("=")
        values = self.config.factors.get(factor, []) if sep else []
        if value not in values:
            raise KeyError(f"{type(self).__name__} has no classifier head {name!r}; heads: "
                           f"{self.config.concept_names}")
        return factor, values.index(value)


class ConceptModel(ConfigHints, nn.Module):
    """A trained (or trainable) concept model; ``compose`` accepts it as a concept library.
    ``view_modules`` (``{factor: nn.Module}``) are the instances of user views in
    ``config.views``; without them those are rebuilt from their import paths.

    Example:
        >>> cfg = ModelConfig(sample_shape=(2,), factors={"side": ["left", "right"]},
        ...                   backbone="mlp", backbone_options={"hidden": (32, 32)}, bounds=None)
        >>> model = ConceptModel(cfg)
        >>> model.concept_energies(torch.zeros(4, 2), ["side=left", "side=right"]).shape
        torch.Size([4, 2])
        >>> import conceptalg
        >>> energy = conceptalg.compose("left & ~right", model)
    """

    def __init__(self, config: ModelConfig,
                 view_modules: dict[str, nn.Module] | None = None) -> None:
        super().__init__()
        self.config = config
        self.trunk = build_backbone(config.backbone, config.sample_shape,
                                    **config.backbone_options)
        features = self.trunk.out_features
        self.head_names = config.concept_names
        self.index = {name: i for i, name in enumerate(self.head_names)}
        n = len(self.head_names)
        # the trunks of factor views (docs/design.md §6): colour-blind under its historical name,
        # the others by view; a trunk whose features are not `features` wide gets a linear
        # neck to that width, so that every kind of head keeps one table for all its heads
        trunks = build_view_trunks(config, view_modules)
        self.blind_trunk = trunks.pop("colour-blind", None)
        self.view_trunks = nn.ModuleDict({trunk_key(v): t for v, t in trunks.items()})
        # the view each head row reads (the base, last, reads the model's own trunk)
        self._row_views = [config.view_of(name.split("=", 1)[0]) if "=" in name
                           else "identity" for name in self.head_names] + ["identity"]
        self._views = list(dict.fromkeys(self._row_views))
        self.register_buffer("_row_view_ids", torch.tensor(
            [self._views.index(v) for v in self._row_views]), persistent=False)
        if config.heads == "linear":
            self.energy = nn.Linear(features, n + 1)  # row n is the base head
        elif config.heads == "film":
            d = config.embedding_dim
            self.embedding = nn.Embedding(n + 1, d)  # row n is the base (no concept)
            self.arg_nets = nn.ModuleDict({
                name: nn.Sequential(nn.Linear(k * 12, d), nn.SiLU(), nn.Linear(d, d))
                for name, k in config.parametric.items()})
            self.film = film_layers(d, self.trunk.film_sizes)
            self.energy = nn.Linear(features, 1)
        else:
            self.energy = nn.Linear(features, 1)  # E_0
            self.classifiers = nn.ModuleDict({
                f: nn.Linear(features, len(values)) for f, values in config.factors.items()})
        self.necks = nn.ModuleDict()
        self.view_film = nn.ModuleDict()
        for view in dict.fromkeys(config.views.values()):
            key, trunk = trunk_key(view), self._trunk(view)
            if trunk.out_features != features:
                self.necks[key] = nn.Linear(trunk.out_features, features)
            if config.heads == "film":  # a view that takes no conditions: FiLM on its output
                self.view_film[key] = film_layers(config.embedding_dim,
                                                  trunk.film_sizes or [2 * features])
        if config.init_bank:  # half precision: starting points need no more
            self.register_buffer("init_bank", torch.zeros(config.init_bank, *config.sample_shape,
                                                          dtype=torch.float16))

    # --- the batching protocol ----------------------------------------------------------
    def concept_energies(self, x: torch.Tensor, heads: Sequence[str],
                         args: Sequence[torch.Tensor | None] | None = None) -> torch.Tensor:
        """Raw head outputs ``[B, K]`` for ``heads`` (energies, or ``log p(c|x)`` for
        classifier heads); ``BASE`` names the base energy. ``args`` (aligned with ``heads``)
        gives ``[B, n]`` arguments for parametric heads. Each trunk the heads read (their
        factors' views) runs once."""
        kind = self.config.heads
        if kind == "linear":
            row_list = [self._row(h) for h in heads]
            rows = torch.tensor(row_list, device=x.device)
            w, b = self.energy.weight[rows], self.energy.bias[rows]
            if not self.config.views:
                return self.trunk(x) @ w.T + b  # [B, K]: the trunk once for all heads
            groups = group_by_view([self._row_views[r] for r in row_list])
            return ungroup([self._features(view, x) @ w[ks].T                 # [B, K_v]
                            for view, ks in groups.items()], groups) + b
        if kind == "classifier":
            needed = list(dict.fromkeys(self._value(n)[0] for n in heads if n != BASE))
            h = self.trunk(x) if BASE in heads else None  # [B, F]
            log_probs = {f: torch.log_softmax(logits, dim=1)
                         for f, logits in self._logits(x, needed, h).items()}
            columns = []
            for name in heads:
                if name == BASE:
                    columns.append(self.energy(h)[:, 0])
                else:
                    f, j = self._value(name)
                    columns.append(log_probs[f][:, j])
            return torch.stack(columns, dim=1)  # [B, K]
        # film: one conditioned pass per head, batched as [K_v·B] through each view's trunk
        b = x.shape[0]
        groups = group_by_view([self._row_views[self._row(name)] for name in heads])
        parts = []
        for view, ks in groups.items():
            e = torch.cat([self._embed(heads[k], None if args is None else args[k], b, x)
                           for k in ks])                                  # [K_v·B, d]
            xs = x.repeat((len(ks),) + (1,) * (x.dim() - 1))                 # [K_v·B, ...]
            out = self.energy(self._features(view, xs, e))[:, 0]
            parts.append(out.reshape(len(ks), b).T)                          # [B, K_v]
        return ungroup(parts, groups)

    def energies_for(self, x: torch.Tensor, head_index: torch.Tensor,
                     args: torch.Tensor | None = None) -> torch.Tensor:
        """One head per row: ``E[i] = head[head_index[i]](x[i])`` (``-1`` = base); used by
        contrastive-divergence training, where every chain targets its own concept. For
        classifier heads this is ``E_0`` for every row (only the base is trained by CD)."""
        kind = self.config.heads
        n = len(self.head_names)
        rows = torch.where(head_index < 0, torch.full_like(head_index, n), head_index)
        if kind == "classifier":
            return self.energy(self.trunk(x))[:, 0]
        e = None
        if kind == "film":
            e = self.embedding(rows)  # [B, d]
            if args is not None and self.config.parametric:
                for name, net in self.arg_nets.items():
                    mask = rows == self.index[name]
                    e = torch.where(mask[:, None], e + net(_fourier(args)), e)
        h = self._row_features(x, rows, e)                                   # [B, F]
        if kind == "linear":
            return (h * self.energy.weight[rows]).sum(1) + self.energy.bias[rows]  # [B]
        return self.energy(h)[:, 0]

    def _row_features(self, x: torch.Tensor, rows: torch.Tensor,
                      e: torch.Tensor | None) -> torch.Tensor:
        """``[B, F]``: each row's features from the trunk of its head's view, each trunk run
        once over its rows (with views, one host sync to count them)."""
        if not self.config.views:
            return self._features("identity", x, e)
        ids = self._row_view_ids[rows]                                       # [B]
        counts = torch.bincount(ids, minlength=len(self._views)).tolist()
        order = torch.argsort(ids, stable=True)                              # rows by view
        parts, start = [], 0
        for view, count in zip(self._views, counts):
            if count == len(ids):
                return self._features(view, x, e)
            if count:
                where = order[start:start + count]
                parts.append(self._features(view, x[where], None if e is None else e[where]))
                start += count
        return torch.cat(parts)[torch.argsort(order)]                        # [B, F]

    def _trunk(self, view: str) -> nn.Module:
        if view == "identity":
            return self.trunk
        return self.blind_trunk if view == "colour-blind" else self.view_trunks[trunk_key(view)]

    def _features(self, view: str, x: torch.Tensor,
                  e: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` seen through ``view``: features ``[B, F]`` of its trunk (brought to width
        ``F`` by its neck), FiLM-conditioned by concept embeddings ``e[B, d]`` when given."""
        if view == "identity":
            return self.trunk(x, None if e is None else [layer(e) for layer in self.film])
        key, trunk = trunk_key(view), self._trunk(view)
        conditions = None if e is None else [layer(e) for layer in self.view_film[key]]
        h = trunk(x, conditions if trunk.film_sizes else None)
        if key in self.necks:
            h = self.necks[key](h)
        if conditions is not None and not trunk.film_sizes:
            h = _film(h, conditions[0])  # a view that takes no conditions: FiLM its output
        return h

    def classifier_logits(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-factor logits ``{factor: [B, V]}`` (classifier heads only)."""
        if self.config.heads != "classifier":
            raise ValueError("classifier_logits needs heads='classifier'")
        return self._logits(x, list(self.classifiers))

    def _logits(self, x: torch.Tensor, factors: Sequence[str],
                h: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Logits of ``factors``, running only the trunks they read, each once (``h``: the
        model's own trunk's features, when the caller has them already)."""
        groups = group_by_view([self.config.view_of(f) for f in factors])
        out = {}
        for view, ks in groups.items():
            hv = h if view == "identity" and h is not None else self._features(view, x)
            out.update({factors[k]: self.classifiers[factors[k]](hv) for k in ks})
        return {f: out[f] for f in factors}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The base energy ``E_0(x)`` (an unconditional EBM), ``[B]``."""
        return self.concept_energies(x, [BASE])[:, 0]

    def with_concepts(self, factors: dict[str, Sequence[str]]) -> "ConceptModel":
        """A copy with extra factor values (new heads), sharing nothing but copied weights:
        the trunk and every existing head keep their trained values, new heads start fresh.
        Train only the new heads with ``Trainer(..., train_only=[...])`` (a frozen trunk).

        Example:
            >>> cfg = ModelConfig(sample_shape=(2,), factors={"side": ["left"]},
            ...                   backbone="mlp", backbone_options={"hidden": (8,)})
            >>> bigger = ConceptModel(cfg).with_concepts({"side": ["right"], "tone": ["dark"]})
            >>> bigger.head_names
            ['side=left', 'side=right', 'tone=dark']
        """
        merged = {f: list(v) for f, v in self.config.factors.items()}
        for f, values in factors.items():
            old = merged.setdefault(f, [])
            clash = sorted(set(old) & set(values))
            if clash:
                raise ValueError(f"factor {f!r} already has {clash}")
            old.extend(values)
        config = dataclasses.replace(self.config, factors=merged)
        users = {f: self._trunk(v).module for f, v in config.views.items()
                 if v.startswith("module:")}  # user views: copies of these very modules
        new = ConceptModel(config, copy.deepcopy(users)).to(next(self.parameters()).device)
        state = new.state_dict()
        for key, value in self.state_dict().items():
            target = state[key]
            if target.shape == value.shape:
                state[key] = value.clone()
            elif key.startswith("classifiers."):  # a factor's new values come last
                target[:len(value)] = value
            else:  # a per-concept table grew: copy the old rows to their new positions
                rows = self._row_map(new)
                target[rows["new"]] = value[rows["old"]]
        new.load_state_dict(state)
        return new

    def _row_map(self, new: "ConceptModel") -> dict[str, list[int]]:
        names = self.head_names + [BASE]
        return {"old": list(range(len(names))),
                "new": [new._row(n) for n in names]}

    def head_rows(self, names: Sequence[str]) -> dict[str, list[int]]:
        """Which rows of which parameters belong to the heads ``names`` (for freezing)."""
        if self.config.heads == "classifier":
            out: dict[str, list[int]] = {}
            for name in names:
                f, j = self._value(name)
                out.setdefault(f"classifiers.{f}.weight", []).append(j)
                out.setdefault(f"classifiers.{f}.bias", []).append(j)
            return out
        rows = [self._row(n) for n in names]
        table = "energy" if self.config.heads == "linear" else "embedding"
        out = {f"{table}.weight": rows}
        if table == "energy":
            out["energy.bias"] = rows
        return out

    # --- the concept-library interface ---------------------------------------------------
    def as_concept_library(self):
        """A :class:`~conceptalg.library.ConceptLibrary` over this model's heads (energies
        exposed at temperature 1), carrying the model's sampling hints."""
        from ..library import ConceptLibrary

        cfg = self.config
        lib = ConceptLibrary()
        kind = "log_prob" if cfg.heads == "classifier" else "energy"
        heads = {name: None for name in self.head_names}
        head_temperature = 1.0 if kind == "log_prob" else cfg.temperature
        lib.add_model(self, heads, kind=kind, parametric=dict(cfg.parametric),
                      temperature=head_temperature)
        lib.set_base(self, BASE, temperature=cfg.temperature)
        lib.sample_shape = cfg.sample_shape
        lib.bounds = cfg.bounds
        lib.sampler_defaults = dict(cfg.sampler_defaults)
        lib.init_samples = self.init_samples
        return lib

    @property
    def init_samples(self):
        """``init_samples(n, generator, device) -> [n, *sample_shape]``: ``n`` starting points
        drawn with replacement from the stored bank (the sampler's default start), or ``None``
        when the model stores none (``config.init_bank == 0``)."""
        if not self.config.init_bank:
            return None

        def draw(n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
            bank = self.init_bank
            where = generator.device if generator is not None else bank.device
            rows = torch.randint(len(bank), (n,), generator=generator, device=where)
            return bank[rows.to(bank.device)].to(device=device or bank.device,
                                                  dtype=torch.float32)
        return draw

    def fill_init_bank(self, samples: torch.Tensor) -> None:
        """Store ``samples`` ``[M, *sample_shape]`` as the starting bank (the first
        ``config.init_bank`` rows; ``M`` must be at least that), clamped to the bounds."""
        k = self.config.init_bank
        shape = tuple(self.config.sample_shape)
        if not k:
            raise ValueError("this model stores no init bank: build it with "
                             "ModelConfig(init_bank=N)")
        if samples.dim() != len(shape) + 1 or tuple(samples.shape[1:]) != shape \
                or len(samples) < k:
            raise ValueError(f"fill_init_bank needs at least {k} samples shaped {list(shape)}, "
                             f"got {list(samples.shape)}")
        x = samples[:k].detach().float()
        if not torch.isfinite(x).all():
            raise ValueError("fill_init_bank: the samples hold non-finite values")
        if self.config.bounds is not None:
            x = x.clamp(*self.config.bounds)
        self.init_bank.copy_(x.to(self.init_bank.dtype))

    def _row(self, name: str) -> int:
        if name == BASE:
            return len(self.head_names)
        try:
            return self.index[name]
        except KeyError:
            raise KeyError(f"{type(self).__name__} has no head {name!r}; heads: "
                           f"{self.head_names}") from None

    def _embed(self, name: str, args: torch.Tensor | None, b: int, x: torch.Tensor):
        e = self.embedding.weight[self._row(name)].expand(b, -1)  # [B, d]
        if name in self.config.parametric:
            if args is None:
                raise ValueError(f"parametric head {name!r} needs arguments")
            e = e + self.arg_nets[name](_fourier(args.to(x.dtype).expand(b, -1)))
        return e

    def extra_repr(self) -> str:
        cfg = self.config
        return (f"heads={cfg.heads!r}, concepts={len(self.head_names)}, "
                + (f"views={cfg.views}, " if cfg.views else "")
                + f"sample_shape={cfg.sample_shape}, temperature={cfg.temperature:g}")
